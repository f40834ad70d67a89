/* guidance.c — guidance wraps the network callback the sampler calls.
 *
 * none: the network, unchanged.
 * cfg (classifier-free guidance, Ho & Salimans 2022): ONE batched network call on
 *   [x; x] with [labels; null], then out = o_u + s (o_c - o_u) on the raw output
 *   (eps, v, x0 or velocity, as diffusers' pipelines do).
 *   rescale phi (Lin et al. 2023, diffusers' rescale_noise_cfg): with std over each image,
 *     out = phi * out * std(o_c)/std(out) + (1 - phi) * out.
 *   interval [lo, hi] (Kynkaanniemi et al. 2024): guidance only where the normalized model time
 *     t/T (1 = pure noise; flow: sigma) lies in [lo, hi]; elsewhere the conditional output, and
 *     those images are not evaluated twice. */
#include "diffusion/diffusion.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

rx_status rx_guided_init(rx_guided *g, const rx_guidance_impl *impl, const rx_params *params, rx_denoise_fn inner,
                         void *inner_ctx, int d, int null_label, const rx_schedule *s) {
    memset(g, 0, sizeof *g);
    if (!impl || !inner || d < 1 || !s)
        return rx_fail(RX_ERR_ARG, "guidance: impl, network, d >= 1 (got %d) and schedule are required", d);
    g->impl = impl;
    g->params = params;
    g->inner = inner;
    g->inner_ctx = inner_ctx;
    g->d = d;
    g->null_label = null_label;
    g->time_scale = s->num_train_timesteps;
    return RX_OK;
}

void rx_guided_free(rx_guided *g) {
    if (!g) return;
    free(g->x2);
    free(g->out2);
    free(g->t2);
    free(g->labels2);
    g->x2 = g->out2 = g->t2 = NULL;
    g->labels2 = NULL;
    g->cap = 0;
}

rx_status rx_guided_denoise(void *ctx, int n, const float *x, const float *t, const int32_t *labels, float *out) {
    rx_guided *g = ctx;
    return g->impl->denoise(g, n, x, t, labels, out);
}

static rx_status ensure_rows(rx_guided *g, int rows) {
    if (rows <= g->cap) return RX_OK;
    rx_guided_free(g);
    size_t nd = (size_t)rows * (size_t)g->d;
    g->x2 = malloc(nd * sizeof *g->x2);
    g->out2 = malloc(nd * sizeof *g->out2);
    g->t2 = malloc((size_t)rows * sizeof *g->t2);
    g->labels2 = malloc((size_t)rows * sizeof *g->labels2);
    if (!g->x2 || !g->out2 || !g->t2 || !g->labels2) {
        rx_guided_free(g);
        return rx_fail(RX_ERR_OOM, "guidance/cfg: %d rows x %d", rows, g->d);
    }
    g->cap = rows;
    return RX_OK;
}

static rx_status none_denoise(rx_guided *g, int n, const float *x, const float *t, const int32_t *labels, float *out) {
    return g->inner(g->inner_ctx, n, x, t, labels, out);
}

// population std of v [d]
static double std_of(const float *v, int d) {
    double mean = 0, var = 0;
    for (int j = 0; j < d; j++) mean += v[j];
    mean /= d;
    for (int j = 0; j < d; j++) var += (v[j] - mean) * (v[j] - mean);
    return sqrt(var / d);
}

static rx_status cfg_denoise(rx_guided *g, int n, const float *x, const float *t, const int32_t *labels, float *out) {
    if (!labels) return rx_fail(RX_ERR_ARG, "guidance/cfg: needs class labels (the model is unconditional?)");
    const double scale = rx_param_float(g->params, "scale"), phi = rx_param_float(g->params, "rescale");
    int n_iv = 0;
    const double *iv = rx_param_float_list(g->params, "interval", &n_iv);
    if (n_iv != 2 || !(iv[0] <= iv[1]))
        return rx_fail(RX_ERR_CONFIG, "guidance/cfg: interval must be [lo, hi] with lo <= hi (%d values given)", n_iv);
    const double lo = iv[0], hi = iv[1];
    const int d = g->d;
    const size_t row = (size_t)d * sizeof(float);

    // rows 0..n-1 conditional; then one null-label row per image inside the interval
    RX_TRY(ensure_rows(g, 2 * n));
    memcpy(g->x2, x, (size_t)n * row);
    memcpy(g->t2, t, (size_t)n * sizeof *t);
    memcpy(g->labels2, labels, (size_t)n * sizeof *labels);
    int rows = n;
    for (int i = 0; i < n; i++) {
        double u = t[i] / g->time_scale;
        if (scale == 1.0 || u < lo || u > hi) continue;   // scale 1 is the conditional output
        memcpy(g->x2 + (size_t)rows * d, x + (size_t)i * d, row);
        g->t2[rows] = t[i];
        g->labels2[rows] = g->null_label;
        rows++;
    }
    RX_TRY(g->inner(g->inner_ctx, rows, g->x2, g->t2, g->labels2, g->out2));

    int k = n;
    for (int i = 0; i < n; i++) {
        const float *oc = g->out2 + (size_t)i * d;
        float *o = out + (size_t)i * d;
        double u = t[i] / g->time_scale;
        if (scale == 1.0 || u < lo || u > hi) { memcpy(o, oc, row); continue; }
        const float *ou = g->out2 + (size_t)k++ * d;
        for (int j = 0; j < d; j++) o[j] = (float)(ou[j] + scale * ((double)oc[j] - ou[j]));
        if (phi > 0) {
            double sc = std_of(oc, d), sg = std_of(o, d);
            if (sg > 0) {
                double f = phi * sc / sg + (1 - phi);   // phi * o*sc/sg + (1-phi) * o
                for (int j = 0; j < d; j++) o[j] = (float)(o[j] * f);
            }
        }
    }
    return RX_OK;
}

const rx_param_spec rx_guidance_none_params[] = {{0}};
const rx_param_spec rx_guidance_cfg_params[] = {
    {"scale", RX_P_FLOAT, "7.5", 0, 100, NULL, "guidance scale s: o_u + s (o_c - o_u); 1 = conditional, no guidance"},
    {"rescale", RX_P_FLOAT, "0.0", 0, 1, NULL, "guidance rescale phi (Lin et al. 2023; 0.7 suggested); 0 = off"},
    {"interval", RX_P_FLOAT_LIST, "[0.0, 1.0]", 0, 1, NULL,
     "[lo, hi] of normalized time t/T (1 = pure noise) where guidance applies (Kynkaanniemi et al. 2024)"},
    {0}};

static const rx_guidance_impl none_impl = {none_denoise, 0};
static const rx_guidance_impl cfg_impl = {cfg_denoise, 1};

const rx_component rx_comp_guidance_none = {
    RX_KIND_GUIDANCE, "none", "no guidance: the network output as is", rx_guidance_none_params, &none_impl, NULL};
const rx_component rx_comp_guidance_cfg = {
    RX_KIND_GUIDANCE, "cfg", "classifier-free guidance (Ho & Salimans 2022), optional rescale and interval",
    rx_guidance_cfg_params, &cfg_impl, NULL};
