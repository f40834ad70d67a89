/* fuzz target: the JPEG decoder from memory (rx_jpeg_decode: TurboJPEG, the EXIF orientation
 * parser, CMYK conversion, orientation), every want_channels value (0..4) chosen by the
 * input's length. */
#include "fuzz_util.h"

#include "core/status.h"
#include "io/jpeg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *img = NULL;
    int C, H, W;
    (void)rx_jpeg_exif_orientation(data, size);
    if (rx_jpeg_decode("in.jpg", data, size, (int)(size % 5), &img, &C, &H, &W) == RX_OK) {
        fz_touch_free(img, C, H, W);
    }
    rx_clear_error();
    return 0;
}
