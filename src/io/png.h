/* png.h — 8-bit PNG images and sample grids (libpng).
 *
 * Images in memory are planar, like tensors: [C,H,W] (grids: [N,C,H,W]).
 * Float input is mapped to bytes by clamp + round:
 *     RX_PNG_RANGE_SIGNED  x in [-1, 1] -> round((x + 1) / 2 * 255)   (diffusion model output)
 *     RX_PNG_RANGE_UNIT    x in [ 0, 1] -> round(x * 255)
 * NaN maps to 0. C = 1 writes gray, C = 3 RGB (also 2 = gray+alpha, 4 = RGBA).
 * Every write is atomic (temp file + fsync + rename). */
#ifndef RX_PNG_H
#define RX_PNG_H

#include <stddef.h>
#include <stdint.h>
#include "core/status.h"

typedef enum {
    RX_PNG_RANGE_SIGNED,   /* [-1, 1] */
    RX_PNG_RANGE_UNIT,     /* [0, 1]  */
} rx_png_range;

/* One float value -> byte, as described above. */
uint8_t rx_png_to_byte(float x, rx_png_range range);

/* img [C,H,W] float, C in 1..4. */
rx_status rx_png_write_f32(const char *path, const float *img, int C, int H, int W, rx_png_range range);
/* img [C,H,W] bytes, C in 1..4. */
rx_status rx_png_write_u8(const char *path, const uint8_t *img, int C, int H, int W);

/* A rows x cols grid of N images (row-major: image i at row i / cols, column
 * i % cols; N <= rows * cols, empty cells are padding). `pad` pixels of padding
 * separate the cells and surround the grid (as torchvision's make_grid), filled
 * with pad_value (in the images' range). Output size:
 *     H_out = rows * (H + pad) + pad,   W_out = cols * (W + pad) + pad. */
typedef struct rx_png_grid {
    int          rows, cols;
    int          pad;
    float        pad_value;
    rx_png_range range;
} rx_png_grid;

/* imgs [N,C,H,W] float. */
rx_status rx_png_write_grid_f32(const char *path, const float *imgs, int N, int C, int H, int W,
                                const rx_png_grid *grid);

/* Read any PNG into malloc'd bytes *out [C,H,W] (free with free()).
 * Gray, gray+alpha, RGB, RGBA, palette (-> RGB, or RGBA with transparency),
 * 1/2/4-bit gray (-> 8-bit) and 16-bit (-> 8-bit, scaled with rounding) are all
 * accepted; interlaced too. want_channels = 0 keeps the file's channel count;
 * 1, 2, 3 or 4 converts: colour -> gray with BT.601 luma
 * (0.299 R + 0.587 G + 0.114 B, as PIL's convert("L")), gray -> RGB by copying,
 * alpha dropped (not composited) or added as 255.
 * Not a PNG / corrupt: RX_ERR_FORMAT naming the file. */
rx_status rx_png_read(const char *path, int want_channels, uint8_t **out, int *C, int *H, int *W);

/* The same from bytes in memory, for data sets (io/image.h): `name` is for messages, and
 * 16-bit samples become 8-bit by their high byte (v >> 8), as PIL reads 16-bit RGB(A) PNGs,
 * so that imagefolder and webdataset give torchvision's pixels. (For 16-bit gray PIL's
 * convert("RGB") clips every value above 255 to 255, whitening nearly every image; the high
 * byte is taken there too.) */
rx_status rx_png_decode(const char *name, const uint8_t *buf, size_t len, int want_channels, uint8_t **out, int *C,
                        int *H, int *W);

#endif
