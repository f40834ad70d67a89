/* image.h — decoding an image file by its name: the one table of formats the data sets read.
 *
 *     .png          io/png.h   rx_png_decode  (16-bit -> high byte, as PIL)
 *     .jpg, .jpeg   io/jpeg.h  rx_jpeg_decode (EXIF orientation applied, CMYK -> RGB, as PIL)
 *
 * Extensions match case-insensitively. Output is planar bytes [C,H,W] as the file stores
 * them (C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), or converted when want_channels is 1..4. */
#ifndef RX_IMAGE_H
#define RX_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include "core/status.h"

typedef rx_status (*rx_image_decode_fn)(const char *name, const uint8_t *buf, size_t len, int want_channels,
                                        uint8_t **out, int *C, int *H, int *W);

/* The decoder for a file name (a path, or a tar member name) by its extension; NULL when the
 * extension is none of the table's. */
rx_image_decode_fn rx_image_decoder(const char *name);

/* The extensions above, for messages: ".png, .jpg, .jpeg". */
const char *rx_image_extensions(void);

/* Read a whole file and decode it by its name. Missing: RX_ERR_IO; an extension not in the
 * table: RX_ERR_ARG; corrupt: RX_ERR_FORMAT naming the file. */
rx_status rx_image_read(const char *path, int want_channels, uint8_t **out, int *C, int *H, int *W);

#endif
