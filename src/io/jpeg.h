/* jpeg.h — reading JPEG images (libjpeg-turbo's TurboJPEG API), as io/png.h reads PNGs.
 *
 * Output is planar bytes [C,H,W], like rx_png_read. What a file decodes to, chosen to give
 * the pixels PIL gives for Image.open(f) then ImageOps.exif_transpose then convert("RGB")
 * (the torchvision ImageFolder loader, plus the orientation torchvision leaves out):
 *     YCbCr / RGB JPEG  -> RGB (C = 3); libjpeg's accurate integer IDCT and fancy upsampling,
 *                          the defaults of both TurboJPEG and PIL, so bytes match PIL's
 *     grayscale JPEG    -> C = 1
 *     CMYK / YCCK JPEG  -> RGB (C = 3) as PIL: it reads every CMYK JPEG as inverted (Adobe's
 *                          convention, rawmode "CMYK;I"), then R = K' - K' * C' / 255 (rounded
 *                          as its MULDIV255) with C' = 255 - stored C and K' = stored K
 *     EXIF orientation  -> applied (APP1 "Exif" IFD0 tag 0x0112, values 1..8), as
 *                          ImageOps.exif_transpose: 2 mirror, 3 rotate 180, 4 flip, 5 transpose,
 *                          6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise
 * want_channels = 0 keeps C; 1..4 converts as rx_png_read does (gray -> copies, colour ->
 * BT.601 luma with PIL's rounding, alpha added as 255).
 * A truncated or corrupt file is RX_ERR_FORMAT naming the file and libjpeg's reason; of
 * libjpeg's warnings only "extraneous bytes before marker" is tolerated (PIL loads those
 * files too; the pixels are intact), every other warning (premature end of data, bad
 * Huffman code, ...) refuses the file, as PIL refuses truncated files. */
#ifndef RX_JPEG_H
#define RX_JPEG_H

#include <stddef.h>
#include <stdint.h>
#include "core/status.h"

/* Larger images are refused (RX_ERR_FORMAT) before anything is allocated: PIL's limit, twice
 * Image.MAX_IMAGE_PIXELS, where it raises DecompressionBombError. */
#define RX_JPEG_MAX_PIXELS (2LL * 89478485)
/* at least one bit per 8x8 block (Huffman coding): a larger promise is a truncated file */
#define RX_JPEG_MAX_PIXELS_PER_BYTE 512

/* Decode a JPEG held in memory; `name` (a path, or "shard.tar:key.jpg") is for messages.
 * *out is malloc'd [C,H,W]; free with free(). */
rx_status rx_jpeg_decode(const char *name, const uint8_t *buf, size_t len, int want_channels, uint8_t **out,
                         int *C, int *H, int *W);

/* From a file: rx_image_read (io/image.h), which picks this decoder by extension. */

/* The EXIF orientation (1..8) of a JPEG in memory; 1 when it has none or it is unreadable
 * (PIL ignores a broken EXIF block the same way). */
int rx_jpeg_exif_orientation(const uint8_t *buf, size_t len);

/* Apply orientation `o` (1..8, meaning above) to interleaved bytes [h][w][nc]: *dst is
 * malloc'd, of size w x h (5..8 swap the sides; *oh, *ow say which). */
rx_status rx_jpeg_orient(const uint8_t *src, int h, int w, int nc, int o, uint8_t **dst, int *oh, int *ow);

#endif
