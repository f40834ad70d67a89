/* fuzz target: rx_dataset_load(dataset/webdataset, train) on one tar shard (libarchive's tar
 * reader, key grouping, .cls parsing, image decoding by extension), size 0 or 8 chosen by the
 * input's length. */
#include "fuzz_util.h"
#include "core/params.h"
#include "core/status.h"
#include "data/dataset.h"
#include "registry/components.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("s.tar", data, size);
    char urls[600];
    snprintf(urls, sizeof urls, "[\"%s\"]", path);
    rx_params *p = NULL;
    if (rx_params_from_defaults("dataset/webdataset", rx_comp_dataset_webdataset.params, &p)) abort();
    if (rx_params_set(p, "urls", urls) || rx_params_set(p, "size", size % 2 ? "8" : "0")) abort();
    rx_dataset *d = NULL;
    if (rx_dataset_load(&rx_comp_dataset_webdataset, p, "train", &d) == RX_OK) {
        volatile uint8_t sink = 0;
        size_t n = (size_t)d->n * d->channels * d->height * d->width;
        for (size_t i = 0; i < n; i += 97) sink ^= d->pixels[i];
        if (n) sink ^= d->pixels[n - 1];
        (void)sink;
        rx_dataset_free(d);
    }
    rx_params_free(p);
    rx_clear_error();
    return 0;
}
