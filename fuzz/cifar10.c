/* fuzz target: the CIFAR-10 reader from cifar-10-binary.tar.gz (the tar.gz reader: our gzip
 * reader under libarchive's tar) through rx_dataset_load (dataset/cifar10, split test); the
 * input is <root>/cifar10/cifar-10-binary.tar.gz. */
#include "fuzz_util.h"
#include "core/params.h"
#include "core/status.h"
#include "data/dataset.h"
#include "registry/components.h"

static rx_params *params;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!params) {
        if (rx_params_from_defaults(rx_comp_dataset_cifar10.name, rx_comp_dataset_cifar10.params, &params) != RX_OK)
            abort();
        char text[256];
        snprintf(text, sizeof text, "\"%s\"", fz_dir());
        if (rx_params_set(params, "root", text) != RX_OK) abort();
    }
    fz_write("cifar10/cifar-10-binary.tar.gz", data, size);
    rx_dataset *d = NULL;
    if (rx_dataset_load(&rx_comp_dataset_cifar10, params, "test", &d) == RX_OK) rx_dataset_free(d);
    rx_clear_error();
    return 0;
}
