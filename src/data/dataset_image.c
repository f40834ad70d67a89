/* dataset_image.c — see dataset_image.h. Float in [0,1] through the resize, rounded back to
 * bytes once, as torchvision's ToTensor -> Resize -> CenterCrop -> (x * 255).round(). */
#include "data/dataset_image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/transform.h"

// Planar bytes [nc,hw] -> planar floats [C,hw] in [0,1].
static void to_float(const uint8_t *src, size_t hw, int nc, int C, float *dst) {
    const int colour = nc >= 3;
    for (size_t i = 0; i < hw; i++) {
        if (C == 3) {
            for (int c = 0; c < 3; c++) dst[c * hw + i] = src[(colour ? c : 0) * hw + i] / 255.0f;
        } else {
            dst[i] = colour ? (0.2989f * src[i] + 0.587f * src[hw + i] + 0.114f * src[2 * hw + i]) / 255.0f
                            : src[i] / 255.0f;
        }
    }
}

static uint8_t to_byte(float v) { return (uint8_t)lrintf(fminf(fmaxf(v, 0.0f), 1.0f) * 255.0f); }

rx_status rx_dataset_image_store(uint8_t *dst, int C, int H, int W, const uint8_t *src, int nc, int h, int w, int size,
                                 const char *name) {
    if (!size && (h != H || w != W))
        return rx_fail(RX_ERR_FORMAT, "%s is %dx%d but the first image is %dx%d; set size: to resize them all", name, w,
                       h, W, H);
    // shorter side -> size (torchvision Resize(int): the longer side is int(size * long / short))
    int rh = h, rw = w;
    if (size) {
        if (h <= w) rh = size, rw = (int)((int64_t)size * w / h);
        else rw = size, rh = (int)((int64_t)size * h / w);
    }
    // one allocation for the three buffers, once per image of a data set (io/jpeg.c says why
    // fewer large allocations per image matter with glibc)
    const size_t n_planar = (size_t)C * h * w, n_resized = (size_t)C * rh * rw, n_tmp = (size_t)C * h * rw;
    float *planar = malloc((n_planar + n_resized + n_tmp) * sizeof *planar);
    float *resized = planar ? planar + n_planar : NULL, *tmp = planar ? resized + n_resized : NULL;
    rx_status st = RX_OK;
    if (!planar) st = rx_fail(RX_ERR_OOM, "%s: out of memory", name);
    if (st == RX_OK) {
        to_float(src, (size_t)h * w, nc, C, planar);
        if (rh != h || rw != w) st = rx_resize_bilinear_aa(planar, C, h, w, resized, rh, rw, tmp);
        else memcpy(resized, planar, (size_t)C * h * w * sizeof *planar);
    }
    if (st == RX_OK) {  // centre crop (identity when size = 0); torchvision's rounding of the offsets
        const int top = (int)nearbyint((rh - H) / 2.0), left = (int)nearbyint((rw - W) / 2.0);
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    dst[((size_t)c * H + y) * W + x] = to_byte(resized[((size_t)c * rh + top + y) * rw + left + x]);
    }
    free(planar);
    return st;
}
