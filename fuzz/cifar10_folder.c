/* fuzz target: the CIFAR-10 extracted-folder reader (cifar-10-batches-bin/) through
 * rx_dataset_load (dataset/cifar10, split test). A batch file must be exactly 30,730,000 bytes
 * (anything else is refused before reading), so the fuzzer does not write it: it is written
 * once, valid, and the input patches a few label bytes in place (pwrite), undone after the load. Input layout:
 *     byte 0        k: how many label patches follow (k mod 8)
 *     k x 3 bytes   record index (16 bits, mod 10,000) and the label byte to put there
 *     the rest      batches.meta.txt (class names, one a line; absent when empty)
 * so both the label check and the class-name parser see arbitrary bytes. */
#include "fuzz_util.h"
#include <fcntl.h>
#include "core/params.h"
#include "core/status.h"
#include "data/dataset.h"
#include "registry/components.h"

enum { PER_FILE = 10000, RECORD = 3073 };

static rx_params *params;
static uint8_t *batch;   // the valid test batch: labels i mod 10, pixels i*7 mod 251
static char batch_path[512], meta_path[512];
static int batch_fd = -1;

static void write_file(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f)) abort();
}

static void setup(void) {
    if (rx_params_from_defaults(rx_comp_dataset_cifar10.name, rx_comp_dataset_cifar10.params, &params) != RX_OK)
        abort();
    char text[256];
    snprintf(text, sizeof text, "\"%s\"", fz_dir());
    if (rx_params_set(params, "root", text) != RX_OK) abort();
    batch = malloc((size_t)PER_FILE * RECORD);
    if (!batch) abort();
    for (size_t i = 0; i < (size_t)PER_FILE * RECORD; i++) batch[i] = (uint8_t)(i * 7 % 251);
    for (int r = 0; r < PER_FILE; r++) batch[(size_t)r * RECORD] = (uint8_t)(r % 10);
    snprintf(batch_path, sizeof batch_path, "%s/cifar-10-batches-bin", fz_dir());
    if (mkdir(batch_path, 0700) != 0) abort();
    snprintf(meta_path, sizeof meta_path, "%s/batches.meta.txt", batch_path);
    strncat(batch_path, "/test_batch.bin", sizeof batch_path - strlen(batch_path) - 1);
    write_file(batch_path, batch, (size_t)PER_FILE * RECORD);
    if ((batch_fd = open(batch_path, O_WRONLY)) < 0) abort();
}

static void put_byte(size_t at, uint8_t v) {
    if (pwrite(batch_fd, &v, 1, (off_t)at) != 1) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!params) setup();
    size_t k = size ? data[0] % 8 : 0, at = 1;
    size_t where[8];
    for (size_t i = 0; i < k && at + 3 <= size; i++, at += 3) {
        where[i] = (size_t)((data[at] | data[at + 1] << 8) % PER_FILE) * RECORD;
        put_byte(where[i], data[at + 2]);
    }
    k = at > 1 ? (at - 1) / 3 : 0;
    if (at < size) write_file(meta_path, data + at, size - at);
    else unlink(meta_path);
    rx_dataset *d = NULL;
    if (rx_dataset_load(&rx_comp_dataset_cifar10, params, "test", &d) == RX_OK) rx_dataset_free(d);
    rx_clear_error();
    for (size_t i = 0; i < k; i++) put_byte(where[i], batch[where[i]]);   // the valid batch again
    return 0;
}
