/* dataset_image.h — one decoded image into a data set's uint8 array, the same way for every
 * data set of files (imagefolder, webdataset), so the same images give the same rx_dataset. */
#ifndef RX_DATA_DATASET_IMAGE_H
#define RX_DATA_DATASET_IMAGE_H

#include <stdint.h>
#include "core/status.h"

/* src planar [nc,h,w] (nc 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) -> dst [C,H,W], C 1 or 3:
 * gray is repeated; colour becomes luma 0.2989 R + 0.587 G + 0.114 B (torchvision's
 * Grayscale); alpha is dropped. size = 0: the image must already be H x W (else RX_ERR_FORMAT
 * naming `name` and saying to set size:); size = S (= H = W): the shorter side is resized to S
 * (antialiased bilinear, torchvision Resize(S)) and the centre S x S cropped. */
rx_status rx_dataset_image_store(uint8_t *dst, int C, int H, int W, const uint8_t *src, int nc, int h, int w, int size,
                                 const char *name);

#endif
