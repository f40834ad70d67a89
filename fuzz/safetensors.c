/* fuzz target: the safetensors reader (rx_st_open validates the whole file), then every
 * tensor read back as f32 and raw bytes. */
#include "fuzz_util.h"
#include "core/status.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("w.safetensors", data, size);
    rx_st_file *f = NULL;
    if (rx_st_open(path, &f) == RX_OK) {
        for (int i = 0; i < rx_st_count(f); i++) {
            const rx_st_tensor *t = rx_st_tensor_at(f, i);
            int64_t n = t->numel;
            if (n <= 0 || n > (1 << 20)) continue;
            float *buf = malloc((size_t)n * sizeof *buf);
            if (buf) rx_st_read_f32(f, t->name, buf, n);
            free(buf);
            int64_t v;
            rx_st_read_i64_scalar(f, t->name, &v);
        }
        rx_st_close(f);
    }
    rx_clear_error();
    return 0;
}
