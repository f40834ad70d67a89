/* transform.h — per-image transforms and chains of them.
 *
 * A transform maps one float image x [C,H,W] (values in [0,1] straight from the uint8 data,
 * or already normalized) to another, y [C',H',W']. Random transforms (random_crop,
 * random_flip) draw from Philox with key `seed` and a counter made from `sample_key`, so the
 * choice for an image depends only on (seed, epoch, dataset index, chain position) — not on
 * batch size, batch position or thread.
 *
 * sample_key = RX_SAMPLE_KEY(epoch, index): epoch in the high 32 bits, dataset index low. */
#ifndef RX_DATA_TRANSFORM_H
#define RX_DATA_TRANSFORM_H

#include <stdint.h>
#include "core/component.h"
#include "core/philox.h"
#include "core/status.h"

#define RX_SAMPLE_KEY(epoch, index) (((uint64_t)(uint32_t)(epoch) << 32) | (uint32_t)(index))

typedef struct rx_transform_impl {
    rx_status (*out_shape)(const rx_params *p, int c, int h, int w, int *oc, int *oh, int *ow);
    /* in [c,h,w] -> out [oc,oh,ow] (shape from out_shape); in and out never alias. */
    rx_status (*apply)(const rx_params *p, const float *in, int c, int h, int w, float *out, uint64_t seed,
                       uint64_t sample_key);
    int augmentation;   /* random data augmentation (flip, random crop): left out when evaluating */
} rx_transform_impl;

/* Word `draw` (0..15) of the random stream of one image for one random transform.
 * Stream: RX_RNG_DATA | RX_DATA_TRANSFORM (core/philox.h) and the epoch;
 * counter: dataset index * 16 + draw. */
static inline uint32_t rx_transform_rand(uint64_t seed, uint64_t sample_key, int draw) {
    uint64_t stream = RX_STREAM(RX_RNG_DATA, RX_DATA_TRANSFORM | (sample_key >> 32));
    return rx_rng_u32(seed, stream, (sample_key & 0xFFFFFFFFull) * 16 + (uint64_t)(draw & 15));
}

/* ---- chains ------------------------------------------------------------------------ */

typedef struct rx_transform_step {
    const rx_component *comp;   /* kind RX_KIND_TRANSFORM */
    const rx_params    *params; /* resolved against comp->params; not owned */
} rx_transform_step;

typedef struct rx_transform_chain {
    const rx_transform_step *steps;  /* applied in order; not owned */
    int n;
} rx_transform_chain;

/* Output shape of the chain for input [c,h,w], and the largest intermediate image (floats),
 * input included. chain may be NULL (= identity). */
rx_status rx_transform_chain_shape(const rx_transform_chain *t, int c, int h, int w, int *oc, int *oh, int *ow,
                                   int64_t *max_elems);

/* uint8 image [c,h,w] -> x/255 -> each step -> out [oc,oh,ow]. work: 2 * max_elems floats.
 * Step k gets its own Philox key (seed mixed with k), so two random steps never share draws. */
rx_status rx_transform_chain_apply(const rx_transform_chain *t, const uint8_t *in, int c, int h, int w, float *out,
                                   float *work, uint64_t seed, uint64_t sample_key);

/* The antialiased bilinear resize itself (torchvision resize(antialias=True) on tensors =
 * ATen upsample_bilinear2d_aa; PIL's separable filter): x [c,h,w] -> y [c,oh,ow]. For
 * upsampling it equals plain bilinear with align_corners=False. tmp: c*h*ow floats. */
rx_status rx_resize_bilinear_aa(const float *x, int c, int h, int w, float *y, int oh, int ow, float *tmp);

/* For transform implementations: the output size from the INT parameters `size` (height)
 * and `width` (null = size, a square). */
rx_status rx_transform_size_param(const rx_params *p, int *h, int *w);

#endif
