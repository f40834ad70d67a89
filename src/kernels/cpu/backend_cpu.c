/* backend_cpu.c — the CPU backend's table: kernels from ops.def, memory, optimizer updates. */
#include "cpu.h"
#include <math.h>
#include <string.h>

static rx_status cpu_copy(rx_ctx *c, void *dst, const void *src, size_t bytes) {
    if (dst != src) memmove(dst, src, bytes);
    return RX_OK;
}

static rx_status cpu_fill(rx_ctx *c, float *dst, float v, int64_t n) {
    #pragma omp parallel for if (n > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < n; i++) dst[i] = v;
    return RX_OK;
}

static rx_status cpu_axpy(rx_ctx *c, float *y, float a, const float *x, int64_t n) {
    #pragma omp parallel for if (n > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
    return RX_OK;
}

static rx_status cpu_sumsq(rx_ctx *c, const float *x, int64_t n, double *out) {
    double s = 0;
    #pragma omp parallel for reduction(+ : s) if (n > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    *out = s;
    return RX_OK;
}

/* torch.optim.AdamW (decoupled weight decay, bias-corrected moments) */
static rx_status cpu_adamw(rx_ctx *c, float *p, const float *g, float *m, float *v, int64_t n, const rx_adamw_args *a) {
    const float bc1 = 1.0f - powf(a->beta1, (float)a->step);
    const float bc2 = 1.0f - powf(a->beta2, (float)a->step);
    const float step_size = a->lr / bc1;
    const float bc2_sqrt = sqrtf(bc2);
    const float decay = 1.0f - a->lr * a->weight_decay;
    #pragma omp parallel for if (n > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * a->grad_scale;
        p[i] *= decay;
        m[i] = a->beta1 * m[i] + (1.0f - a->beta1) * gi;
        v[i] = a->beta2 * v[i] + (1.0f - a->beta2) * gi * gi;
        float denom = sqrtf(v[i]) / bc2_sqrt + a->eps;
        p[i] -= step_size * m[i] / denom;
    }
    return RX_OK;
}

static rx_status cpu_ema(rx_ctx *c, float *ema, const float *p, float decay, int64_t n) {
    #pragma omp parallel for if (n > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < n; i++) ema[i] = decay * ema[i] + (1.0f - decay) * p[i];
    return RX_OK;
}

static rx_status cpu_sync(rx_ctx *c) { return RX_OK; }

static const rx_backend cpu_backend = {
    .name = "cpu",
    .mem = {.device = RX_DEV_CPU, .to_device = cpu_copy, .to_host = cpu_copy, .copy = cpu_copy, .fill = cpu_fill},
    .fwd = {
#define OP(ID, name, family, reads) [RX_OP_##ID] = cpu_##name##_fwd,
#include "kernels/ops.def"
#undef OP
    },
    .bwd = {
#define OP(ID, name, family, reads) [RX_OP_##ID] = cpu_##name##_bwd,
#include "kernels/ops.def"
#undef OP
    },
    .axpy = cpu_axpy,
    .sumsq = cpu_sumsq,
    .adamw = cpu_adamw,
    .ema = cpu_ema,
    .sync = cpu_sync,
};

const rx_backend *rx_backend_cpu(void) { return &cpu_backend; }
