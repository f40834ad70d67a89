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

/* The multi-tensor step, as the reference functions above applied chunk after chunk (on the
 * CPU the "device" table and scalars are host memory). */
static rx_status cpu_adamw_multi(rx_ctx *c, const rx_mt_args *a) {
    rx_mt_scalars *s = a->scalars;
    double sumsq = 0;
    for (int k = 0; k < a->n_chunks; k++) {
        const rx_mt_chunk *ch = &a->table[k];
        double part = 0;
        if (ch->g) RX_TRY(cpu_sumsq(c, ch->g, ch->n, &part));
        sumsq += part;
    }
    s->grad_sumsq = sumsq;
    s->clip_scale = rx_clip_factor(sqrt(sumsq), a->max_norm);
    s->nonfinite = !isfinite(sumsq);
    if (s->nonfinite) {
        if (!s->first_bad_step) s->first_bad_step = s->step;
        return RX_OK;
    }
    const rx_adamw_args args = {.lr = s->lr, .beta1 = a->beta1, .beta2 = a->beta2, .eps = a->eps,
                                .weight_decay = a->weight_decay, .grad_scale = s->clip_scale, .step = s->step};
    for (int k = 0; k < a->n_chunks; k++) {
        const rx_mt_chunk *ch = &a->table[k];
        if (ch->g) RX_TRY(cpu_adamw(c, ch->p, ch->g, ch->m, ch->v, ch->n, &args));
        if (ch->ema) RX_TRY(cpu_ema(c, ch->ema, ch->p, s->ema_decay, ch->n));
    }
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
    .adamw_multi = cpu_adamw_multi,
    .sync = cpu_sync,
};

const rx_backend *rx_backend_cpu(void) { return &cpu_backend; }
