/* fuzz target: the MNIST idx readers through rx_dataset_load (dataset/mnist, split test).
 * The input is two files: a 2-byte big-endian length L, then L bytes of
 * t10k-images-idx3-ubyte.gz and the rest as t10k-labels-idx1-ubyte.gz (each gzipped or
 * plain, as the reader accepts both), under <root>/mnist/. */
#include "fuzz_util.h"
#include "core/params.h"
#include "core/status.h"
#include "data/dataset.h"
#include "registry/components.h"

static rx_params *params;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!params) {
        if (rx_params_from_defaults(rx_comp_dataset_mnist.name, rx_comp_dataset_mnist.params, &params) != RX_OK) abort();
        char text[256];
        snprintf(text, sizeof text, "\"%s\"", fz_dir());
        if (rx_params_set(params, "root", text) != RX_OK) abort();
    }
    if (size < 2) return 0;
    size_t L = (size_t)data[0] << 8 | data[1];
    data += 2, size -= 2;
    if (L > size) L = size;
    fz_write("mnist/t10k-images-idx3-ubyte.gz", data, L);
    fz_write("mnist/t10k-labels-idx1-ubyte.gz", data + L, size - L);
    rx_dataset *d = NULL;
    if (rx_dataset_load(&rx_comp_dataset_mnist, params, "test", &d) == RX_OK) rx_dataset_free(d);
    rx_clear_error();
    return 0;
}
