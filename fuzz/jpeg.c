/* fuzz target: the JPEG decoder from memory (rx_jpeg_decode: TurboJPEG, the EXIF orientation
 * parser, CMYK conversion, orientation), every want_channels value (0..4) chosen by the
 * input's length. */
#include <stdint.h>
#include <stdlib.h>

#include "core/status.h"
#include "io/jpeg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *img = NULL;
    int C, H, W;
    (void)rx_jpeg_exif_orientation(data, size);
    if (rx_jpeg_decode("in.jpg", data, size, (int)(size % 5), &img, &C, &H, &W) == RX_OK) {
        volatile uint8_t sink = 0;
        size_t n = (size_t)C * H * W;
        for (size_t i = 0; i < n; i += 97) sink ^= img[i];   // touch the whole buffer
        if (n) sink ^= img[n - 1];
        (void)sink;
        free(img);
    }
    rx_clear_error();
    return 0;
}
