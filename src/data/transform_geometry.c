/* transform_geometry.c — pad, center_crop, random_crop, random_flip (torchvision semantics).
 *
 * All crops and pads are one operation: copy an oh x ow window whose top-left corner sits at
 * input (y0, x0), where the window may hang over the border; outside pixels come from the
 * border mode (torchvision padding_mode):
 *     constant  fill value               edge       nearest border pixel   (a a | a b c | c c)
 *     reflect   mirror, edge not doubled (c b | a b c | b a)
 *     symmetric mirror, edge doubled     (b a | a b c | c b)                                */
#include "data/transform.h"

#include <math.h>
#include <string.h>

typedef enum { BORDER_CONSTANT, BORDER_EDGE, BORDER_REFLECT, BORDER_SYMMETRIC, BORDER_COUNT } border_mode;
static const char *const border_names[BORDER_COUNT] = {"constant", "edge", "reflect", "symmetric"};
#define BORDER_CHOICES "constant|edge|reflect|symmetric"

static border_mode border_param(const rx_params *p, const char *name) {
    const char *s = rx_param_str(p, name);
    for (int k = 0; k < BORDER_COUNT; k++)
        if (s && !strcmp(s, border_names[k])) return (border_mode)k;
    return BORDER_CONSTANT;  // the spec's CHOICE check makes this unreachable
}

// Source index for position i of an axis of length n, or -1 for "use the fill value".
static int border_index(int i, int n, border_mode m) {
    if (i >= 0 && i < n) return i;
    switch (m) {
    case BORDER_CONSTANT: return -1;
    case BORDER_EDGE: return i < 0 ? 0 : n - 1;
    case BORDER_REFLECT: {
        if (n == 1) return 0;
        int period = 2 * n - 2, r = ((i % period) + period) % period;
        return r < n ? r : period - r;
    }
    case BORDER_SYMMETRIC: {
        int period = 2 * n, r = ((i % period) + period) % period;
        return r < n ? r : period - 1 - r;
    }
    default: return -1;
    }
}

// out [c,oh,ow] = window of in [c,h,w] with top-left at (y0, x0), border filled per mode.
static void crop_with_border(const float *in, int c, int h, int w, float *out, int oh, int ow, int y0, int x0,
                             border_mode mode, float fill) {
    int inside_x = x0 >= 0 && x0 + ow <= w;
    for (int ch = 0; ch < c; ch++) {
        const float *src = in + (size_t)ch * h * w;
        for (int y = 0; y < oh; y++) {
            float *dst = out + ((size_t)ch * oh + y) * ow;
            int sy = border_index(y0 + y, h, mode);
            if (sy < 0) {
                for (int x = 0; x < ow; x++) dst[x] = fill;
            } else if (inside_x) {
                memcpy(dst, src + (size_t)sy * w + x0, (size_t)ow * sizeof *dst);
            } else {
                for (int x = 0; x < ow; x++) {
                    int sx = border_index(x0 + x, w, mode);
                    dst[x] = sx < 0 ? fill : src[(size_t)sy * w + sx];
                }
            }
        }
    }
}

// The same padding on every side (the parameter table keeps it in [0, 4096]).
static int padding_param(const rx_params *p) { return (int)rx_param_int(p, "padding"); }

// ---- pad -------------------------------------------------------------------------------

static const rx_param_spec pad_params[] = {
    {"padding", RX_P_INT, "2", 0, 4096, NULL, "pixels added on every side"},
    {"fill", RX_P_FLOAT, "0.0", RX_NO_RANGE, NULL, "value outside the image (mode constant)"},
    {"mode", RX_P_CHOICE, "constant", RX_NO_RANGE, BORDER_CHOICES, "how the border is filled"},
    {0}};

static rx_status pad_shape(const rx_params *p, int c, int h, int w, int *oc, int *oh, int *ow) {
    const int pad = padding_param(p);
    *oc = c, *oh = h + 2 * pad, *ow = w + 2 * pad;
    return RX_OK;
}

static rx_status pad_apply(const rx_params *p, const float *in, int c, int h, int w, float *out, uint64_t seed,
                           uint64_t sample_key) {
    const int pad = padding_param(p);
    crop_with_border(in, c, h, w, out, h + 2 * pad, w + 2 * pad, -pad, -pad, border_param(p, "mode"),
                     (float)rx_param_float(p, "fill"));
    return RX_OK;
}

// ---- center_crop -----------------------------------------------------------------------

static const rx_param_spec center_crop_params[] = {
    {"size", RX_P_INT, "32", 1, 65536, NULL, "crop height, and width unless `width` is given; larger than the image pads with 0"},
    {"width", RX_P_INT, "null", 1, 65536, NULL, "crop width; null = size (a square)"},
    {0}};

static rx_status center_crop_shape(const rx_params *p, int c, int h, int w, int *oc, int *oh, int *ow) {
    *oc = c;
    return rx_transform_size_param(p, oh, ow);
}

// torchvision center_crop: top = round((h - th) / 2) with Python's round-half-even (nearbyint);
// a crop larger than the image first pads (th - h) // 2 on the top/left with zeros.
static int center_offset(int n, int m) { return n >= m ? (int)nearbyint((n - m) / 2.0) : -((m - n) / 2); }

static rx_status center_crop_apply(const rx_params *p, const float *in, int c, int h, int w, float *out,
                                   uint64_t seed, uint64_t sample_key) {
    int th = 0, tw = 0;
    RX_TRY(rx_transform_size_param(p, &th, &tw));
    crop_with_border(in, c, h, w, out, th, tw, center_offset(h, th), center_offset(w, tw), BORDER_CONSTANT, 0.0f);
    return RX_OK;
}

// ---- random_crop -----------------------------------------------------------------------

static const rx_param_spec random_crop_params[] = {
    {"size", RX_P_INT, "32", 1, 65536, NULL, "crop height, and width unless `width` is given"},
    {"width", RX_P_INT, "null", 1, 65536, NULL, "crop width; null = size (a square)"},
    {"padding", RX_P_INT, "0", 0, 4096, NULL, "pixels added on every side before cropping"},
    {"fill", RX_P_FLOAT, "0.0", RX_NO_RANGE, NULL, "value outside the image (padding_mode constant)"},
    {"padding_mode", RX_P_CHOICE, "constant", RX_NO_RANGE, BORDER_CHOICES, "how the padding is filled"},
    {0}};

static rx_status random_crop_shape(const rx_params *p, int c, int h, int w, int *oc, int *oh, int *ow) {
    const int pad = padding_param(p);
    RX_TRY(rx_transform_size_param(p, oh, ow));
    const int ph = h + 2 * pad, pw = w + 2 * pad;
    if (*oh > ph || *ow > pw)
        return rx_fail(RX_ERR_SHAPE, "%s: crop %dx%d is larger than the padded image %dx%d", p->component, *oh, *ow, ph,
                       pw);
    *oc = c;
    return RX_OK;
}

// Uniform integer in [0, n) from one 32-bit word (multiply-shift; bias < n / 2^32).
static int uniform_below(uint32_t u, int n) { return (int)(((uint64_t)u * (uint64_t)n) >> 32); }

static rx_status random_crop_apply(const rx_params *p, const float *in, int c, int h, int w, float *out,
                                   uint64_t seed, uint64_t sample_key) {
    int th = 0, tw = 0, oc;
    RX_TRY(random_crop_shape(p, c, h, w, &oc, &th, &tw));
    const int pad = padding_param(p), ph = h + 2 * pad, pw = w + 2 * pad;
    // top-left corner in the padded image, uniform over every valid position (torchvision get_params)
    int top = uniform_below(rx_transform_rand(seed, sample_key, 0), ph - th + 1);
    int left = uniform_below(rx_transform_rand(seed, sample_key, 1), pw - tw + 1);
    crop_with_border(in, c, h, w, out, th, tw, top - pad, left - pad, border_param(p, "padding_mode"),
                     (float)rx_param_float(p, "fill"));
    return RX_OK;
}

// ---- random_flip -----------------------------------------------------------------------

static const rx_param_spec random_flip_params[] = {
    {"p", RX_P_FLOAT, "0.5", 0, 1, NULL, "probability of a horizontal flip"},
    {0}};

static rx_status same_shape(const rx_params *p, int c, int h, int w, int *oc, int *oh, int *ow) {
    *oc = c, *oh = h, *ow = w;
    return RX_OK;
}

static rx_status random_flip_apply(const rx_params *p, const float *in, int c, int h, int w, float *out,
                                   uint64_t seed, uint64_t sample_key) {
    int flip = rx_u32_to_uniform(rx_transform_rand(seed, sample_key, 0)) < rx_param_float(p, "p");
    for (int64_t r = 0; r < (int64_t)c * h; r++) {  // r: one row of one channel
        const float *src = in + r * w;
        float *dst = out + r * w;
        if (flip)
            for (int x = 0; x < w; x++) dst[x] = src[w - 1 - x];
        else
            memcpy(dst, src, (size_t)w * sizeof *dst);
    }
    return RX_OK;
}

// ---- descriptors -----------------------------------------------------------------------

static const rx_transform_impl pad_impl = {pad_shape, pad_apply}, center_crop_impl = {center_crop_shape, center_crop_apply},
                               random_crop_impl = {random_crop_shape, random_crop_apply, 1},
                               random_flip_impl = {same_shape, random_flip_apply, 1};

const rx_component rx_comp_transform_pad = {
    RX_KIND_TRANSFORM, "pad", "pad the border (e.g. MNIST 28 -> 32 with padding [2])", pad_params, &pad_impl, NULL};
const rx_component rx_comp_transform_center_crop = {
    RX_KIND_TRANSFORM, "center_crop", "crop the centre (torchvision CenterCrop)", center_crop_params, &center_crop_impl,
    NULL};
const rx_component rx_comp_transform_random_crop = {
    RX_KIND_TRANSFORM, "random_crop", "crop at a random position after optional padding (torchvision RandomCrop)",
    random_crop_params, &random_crop_impl, NULL};
const rx_component rx_comp_transform_random_flip = {
    RX_KIND_TRANSFORM, "random_flip", "flip left-right with probability p (torchvision RandomHorizontalFlip)",
    random_flip_params, &random_flip_impl, "random_horizontal_flip"};
