/* transform_resize.c — bilinear resize with antialias, as torchvision's
 * transforms.functional.resize(tensor, size, antialias=True) = ATen upsample_bilinear2d_aa
 * (align_corners=False), which is PIL's separable "triangle filter" resampling.
 *
 * One axis, input length n -> output length m, scale s = n / m. Output pixel i is centred at
 * input coordinate c = s (i + 0.5). When shrinking (s > 1) the triangle filter is stretched by
 * s so that every input pixel contributes (that is the antialias); when enlarging it has
 * radius 1 and the result is plain bilinear interpolation:
 *     support = s >= 1 ? s : 1,   invscale = s >= 1 ? 1/s : 1
 *     taps j in [max(int(c - support + 0.5), 0), min(int(c + support + 0.5), n))
 *     w_j = tri((j - c + 0.5) * invscale), tri(t) = max(0, 1 - |t|), then normalized to sum 1.
 * Without antialias the filter is never stretched (support = 1, invscale = 1), which is
 * torch's plain bilinear (src = s (i + 0.5) - 0.5, clamped at the borders).
 * The 2-D resize filters rows (W) first, then columns (H), like ATen; an axis whose size does
 * not change is skipped (its weights would be the identity). */
#include "data/transform.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int    *start;   // [m] first tap; start + taps <= n
    float  *w;       // [m, stride] normalized weights, taps of them used
    int     stride;  // the bound on taps (row stride of w)
    int     taps;    // taps per output, the same for every output (zero-padded) so loops are regular
} axis_weights;

static int axis_max_taps(int n, int m, int antialias) {
    double s = (double)n / m, support = (antialias && s >= 1.0) ? s : 1.0;
    return (int)ceil(support) * 2 + 1;
}

// Fills aw (arrays sized by the caller: m starts, m * stride weights).
static void axis_compute(int n, int m, int antialias, axis_weights *aw) {
    double s = (double)n / m;
    int stretch = antialias && s >= 1.0;
    double support = stretch ? s : 1.0, invscale = stretch ? 1.0 / s : 1.0;
    aw->taps = 1;
    for (int i = 0; i < m; i++) {
        double center = s * (i + 0.5);
        int64_t lo = (int64_t)(center - support + 0.5), hi = (int64_t)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > n) hi = n;
        int cnt = (int)(hi - lo);
        if (cnt > aw->stride) cnt = aw->stride;
        float *w = aw->w + (size_t)i * aw->stride;
        double total = 0;
        for (int j = 0; j < cnt; j++) {
            double t = fabs((j + lo - center + 0.5) * invscale);
            w[j] = (float)(t < 1.0 ? 1.0 - t : 0.0);
            total += w[j];
        }
        for (int j = 0; j < cnt && total != 0; j++) w[j] = (float)(w[j] / total);
        for (int j = cnt; j < aw->stride; j++) w[j] = 0;
        aw->start[i] = (int)lo;
        if (cnt > aw->taps) aw->taps = cnt;
    }
    // Pad every output to `taps` taps (taps <= n, since each count is): outputs near the right
    // border start earlier, their weights shifted right behind zeros.
    for (int i = 0; i < m; i++) {
        int shift = aw->start[i] + aw->taps - n;
        if (shift <= 0) continue;
        float *w = aw->w + (size_t)i * aw->stride;
        memmove(w + shift, w, (size_t)(aw->taps - shift) * sizeof *w);
        for (int j = 0; j < shift; j++) w[j] = 0;
        aw->start[i] -= shift;
    }
}

static rx_status resize_impl(const float *x, int c, int h, int w, float *y, int oh, int ow, float *tmp,
                             int antialias) {
    if (c < 1 || h < 1 || w < 1 || oh < 1 || ow < 1)
        return rx_fail(RX_ERR_SHAPE, "resize: bad sizes [%d,%d,%d] -> [%d,%d]", c, h, w, oh, ow);
    int tx = axis_max_taps(w, ow, antialias), ty = axis_max_taps(h, oh, antialias);
    size_t ints = (size_t)ow + (size_t)oh, floats = (size_t)ow * tx + (size_t)oh * ty;
    void *mem = malloc(ints * sizeof(int) + floats * sizeof(float));
    if (!mem) return rx_fail(RX_ERR_OOM, "resize: out of memory for filter weights");
    int *ip = mem;
    float *fp = (float *)(ip + ints);
    axis_weights ax = {ip, fp, tx, 0}, ay = {ip + ow, fp + (size_t)ow * tx, ty, 0};
    axis_compute(w, ow, antialias, &ax);
    axis_compute(h, oh, antialias, &ay);

    // rows: x [c,h,w] -> tmp [c,h,ow]   (skipped when the width does not change)
    const float *rows = x;
    if (ow != w) {
        // output column outermost: the rows are independent sums, so they pipeline (one row's
        // short dependent chain of taps would otherwise stall on add latency)
        const int K = ax.taps;
        const int64_t R = (int64_t)c * h;
        for (int i = 0; i < ow; i++) {
            const float *wi = ax.w + (size_t)i * tx, *xi = x + ax.start[i];
            for (int64_t r = 0; r < R; r++) {
                const float *s = xi + r * w;
                float acc = 0;
                for (int j = 0; j < K; j++) acc += wi[j] * s[j];
                tmp[r * ow + i] = acc;
            }
        }
        rows = tmp;
    }
    // columns: rows [c,h,ow] -> y [c,oh,ow]
    if (oh != h) {
        for (int ch = 0; ch < c; ch++) {
            const float *src = rows + (size_t)ch * h * ow;
            float *dst = y + (size_t)ch * oh * ow;
            for (int i = 0; i < oh; i++) {
                const float *wi = ay.w + (size_t)i * ty;
                float *restrict out = dst + (size_t)i * ow;
                for (int k = 0; k < ow; k++) out[k] = 0;
                for (int j = 0; j < ay.taps; j++) {  // accumulate whole rows: contiguous, vectorizes
                    const float *restrict srow = src + (size_t)(ay.start[i] + j) * ow;
                    const float wj = wi[j];
                    for (int k = 0; k < ow; k++) out[k] += wj * srow[k];
                }
            }
        }
    } else {
        memcpy(y, rows, (size_t)c * h * ow * sizeof *y);
    }
    free(mem);
    return RX_OK;
}

rx_status rx_resize_bilinear_aa(const float *x, int c, int h, int w, float *y, int oh, int ow, float *tmp) {
    return resize_impl(x, c, h, w, y, oh, ow, tmp, 1);
}

// ---- the component ---------------------------------------------------------------------

static const rx_param_spec resize_params[] = {
    {"size", RX_P_INT, "64", 1, 65536, NULL, "output height, and width unless `width` is given"},
    {"width", RX_P_INT, "null", 1, 65536, NULL, "output width; null = size (a square)"},
    {"antialias", RX_P_BOOL, "true", RX_NO_RANGE, NULL,
     "filter when shrinking (torchvision antialias=True); no effect when enlarging"},
    {0}};

static rx_status resize_shape(const rx_params *p, int c, int h, int w, int *oc, int *oh, int *ow) {
    *oc = c;
    return rx_transform_size_param(p, oh, ow);
}

static rx_status resize_apply(const rx_params *p, const float *in, int c, int h, int w, float *out, uint64_t seed,
                              uint64_t sample_key) {
    int oh = 0, ow = 0;
    RX_TRY(rx_transform_size_param(p, &oh, &ow));
    float *tmp = ow != w ? malloc((size_t)c * h * ow * sizeof *tmp) : NULL;
    if (ow != w && !tmp) return rx_fail(RX_ERR_OOM, "resize: out of memory");
    rx_status st = resize_impl(in, c, h, w, out, oh, ow, tmp, rx_param_bool(p, "antialias"));
    free(tmp);
    return st;
}

static const rx_transform_impl resize_impl_vt = {resize_shape, resize_apply};
const rx_component rx_comp_transform_resize = {
    RX_KIND_TRANSFORM, "resize",
    "bilinear resize to size; antialiased when shrinking (= torchvision Resize on tensors, antialias=True)",
    resize_params, &resize_impl_vt, NULL};
