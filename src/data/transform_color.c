/* transform_color.c — per-pixel value and channel transforms: normalize, to_rgb, to_gray. */
#include "data/transform.h"

#include <math.h>
#include <string.h>

// ---- normalize: y_c = (x_c - mean_c) / std_c -------------------------------------------

static const rx_param_spec normalize_params[] = {
    {"mean", RX_P_FLOAT_LIST, "[0.5]", RX_NO_RANGE, NULL, "per channel, or one value for all"},
    {"std", RX_P_FLOAT_LIST, "[0.5]", RX_NO_RANGE, NULL, "per channel, or one value for all; default maps [0,1] to [-1,1]"},
    {0}};

// mean/std for channel k of c: a list of 1 value broadcasts.
static rx_status normalize_check(const rx_params *p, int c) {
    const char *names[2] = {"mean", "std"};
    for (int k = 0; k < 2; k++) {
        int n = 0;
        const double *v = rx_param_float_list(p, names[k], &n);
        if (n != 1 && n != c)
            return rx_fail(RX_ERR_SHAPE, "%s: %s has %d values for an image of %d channels (give 1 or %d)", p->component,
                           names[k], n, c, c);
        for (int j = 0; k == 1 && j < n; j++)
            if (!(fabs(v[j]) > 0) || !isfinite(v[j]))
                return rx_fail(RX_ERR_CONFIG, "%s: std[%d] = %g must be finite and nonzero", p->component, j, v[j]);
    }
    return RX_OK;
}

static rx_status normalize_shape(const rx_params *p, int c, int h, int w, int *oc, int *oh, int *ow) {
    RX_TRY(normalize_check(p, c));
    *oc = c, *oh = h, *ow = w;
    return RX_OK;
}

static rx_status normalize_apply(const rx_params *p, const float *in, int c, int h, int w, float *out, uint64_t seed,
                                 uint64_t sample_key) {
    RX_TRY(normalize_check(p, c));
    int nm = 0, ns = 0;
    const double *mean = rx_param_float_list(p, "mean", &nm), *sd = rx_param_float_list(p, "std", &ns);
    const int64_t hw = (int64_t)h * w;
    for (int ch = 0; ch < c; ch++) {
        const float m = (float)mean[nm == 1 ? 0 : ch], inv = (float)(1.0 / sd[ns == 1 ? 0 : ch]);
        const float *x = in + ch * hw;
        float *y = out + ch * hw;
        for (int64_t i = 0; i < hw; i++) y[i] = (x[i] - m) * inv;
    }
    return RX_OK;
}

// ---- to_rgb: gray -> 3 equal channels; gray+alpha -> gray -> RGB; RGBA -> RGB (alpha dropped)

static const rx_param_spec no_params[] = {{0}};

static rx_status to_rgb_shape(const rx_params *p, int c, int h, int w, int *oc, int *oh, int *ow) {
    if (c < 1 || c > 4) return rx_fail(RX_ERR_SHAPE, "to_rgb: %d channels (expected 1 to 4)", c);
    *oc = 3, *oh = h, *ow = w;
    return RX_OK;
}

static rx_status to_rgb_apply(const rx_params *p, const float *in, int c, int h, int w, float *out, uint64_t seed,
                              uint64_t sample_key) {
    const int64_t hw = (int64_t)h * w;
    for (int k = 0; k < 3; k++)  // gray (c <= 2) feeds all three; colour keeps its own plane
        memcpy(out + k * hw, in + (c <= 2 ? 0 : k) * hw, (size_t)hw * sizeof *out);
    return RX_OK;
}

// ---- to_gray: ITU-R 601-2 luma, as torchvision rgb_to_grayscale ---------------------------

static const rx_param_spec to_gray_params[] = {
    {"channels", RX_P_INT, "1", 1, 3, NULL, "1, or 3 equal channels (torchvision num_output_channels)"},
    {0}};

static rx_status to_gray_shape(const rx_params *p, int c, int h, int w, int *oc, int *oh, int *ow) {
    int64_t n = rx_param_int(p, "channels");
    if (c < 1 || c > 4) return rx_fail(RX_ERR_SHAPE, "to_gray: %d channels (expected 1 to 4)", c);
    if (n != 1 && n != 3) return rx_fail(RX_ERR_CONFIG, "to_gray: channels must be 1 or 3, got %lld", (long long)n);
    *oc = (int)n, *oh = h, *ow = w;
    return RX_OK;
}

static rx_status to_gray_apply(const rx_params *p, const float *in, int c, int h, int w, float *out, uint64_t seed,
                               uint64_t sample_key) {
    const int64_t hw = (int64_t)h * w;
    const int n = (int)rx_param_int(p, "channels");
    if (c <= 2) {
        memcpy(out, in, (size_t)hw * sizeof *out);  // gray (alpha dropped)
    } else {
        const float *r = in, *g = in + hw, *b = in + 2 * hw;
        for (int64_t i = 0; i < hw; i++) out[i] = 0.2989f * r[i] + 0.587f * g[i] + 0.114f * b[i];
    }
    for (int k = 1; k < n; k++) memcpy(out + k * hw, out, (size_t)hw * sizeof *out);
    return RX_OK;
}

static const rx_transform_impl normalize_impl = {normalize_shape, normalize_apply},
                               to_rgb_impl = {to_rgb_shape, to_rgb_apply}, to_gray_impl = {to_gray_shape, to_gray_apply};

const rx_component rx_comp_transform_normalize = {
    RX_KIND_TRANSFORM, "normalize", "(x - mean) / std per channel; the default maps [0,1] to [-1,1]", normalize_params,
    &normalize_impl, NULL};
const rx_component rx_comp_transform_to_rgb = {
    RX_KIND_TRANSFORM, "to_rgb", "3 channels: gray is repeated, alpha is dropped", no_params, &to_rgb_impl, NULL};
const rx_component rx_comp_transform_to_gray = {
    RX_KIND_TRANSFORM, "to_gray", "luma 0.2989 R + 0.587 G + 0.114 B (torchvision Grayscale)", to_gray_params,
    &to_gray_impl, "grayscale"};
