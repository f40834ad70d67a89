/* image.c — the format table of image.h. A new format is a decoder in its own file and a
 * row here. */
#include "io/image.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/fsutil.h"
#include "io/jpeg.h"
#include "io/png.h"

static const struct { const char *ext; rx_image_decode_fn decode; } formats[] = {
    {".png", rx_png_decode},
    {".jpg", rx_jpeg_decode},
    {".jpeg", rx_jpeg_decode},
};

rx_image_decode_fn rx_image_decoder(const char *name) {
    const size_t n = strlen(name);
    for (size_t k = 0; k < sizeof formats / sizeof formats[0]; k++) {
        const size_t e = strlen(formats[k].ext);
        if (n > e && !strcasecmp(name + n - e, formats[k].ext)) return formats[k].decode;
    }
    return NULL;
}

const char *rx_image_extensions(void) { return ".png, .jpg, .jpeg"; }

rx_status rx_image_read(const char *path, int want_channels, uint8_t **out, int *C, int *H, int *W) {
    *out = NULL;
    rx_image_decode_fn decode = rx_image_decoder(path);
    if (!decode) return rx_fail(RX_ERR_ARG, "%s: not an image file this reads (%s)", path, rx_image_extensions());
    char *buf;
    size_t n;
    RX_TRY(rx_fs_read_file(path, &buf, &n));
    rx_status s = decode(path, (const uint8_t *)buf, n, want_channels, out, C, H, W);
    free(buf);
    return s;
}
