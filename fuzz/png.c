/* fuzz target: the PNG readers, both: rx_png_read from a file (libpng's simplified API, the
 * path the samples and fixtures take) and rx_png_decode from memory (the imagefolder and
 * webdataset path: 16-bit, palette, gray + alpha), every want_channels value (0..4) chosen by
 * the input's length. */
#include "fuzz_util.h"
#include "core/status.h"
#include "io/png.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("in.png", data, size);
    uint8_t *img = NULL;
    int C, H, W;
    if (rx_png_read(path, (int)(size % 5), &img, &C, &H, &W) == RX_OK) fz_touch_free(img, C, H, W);
    rx_clear_error();
    img = NULL;
    if (rx_png_decode("in.png", data, size, (int)(size % 5), &img, &C, &H, &W) == RX_OK) fz_touch_free(img, C, H, W);
    rx_clear_error();
    return 0;
}
