/* embed.c — CPU embedding lookup and sinusoidal timestep embedding. */
#include "cpu.h"
#include <math.h>
#include <omp.h>
#include <string.h>

/* ---- embedding: table [V,D], idx [N] -> y [N,D], y[i] = table[idx[i]] -------------------------
 * Indices arrive as floats (ops.h); a value that is not a whole number in [0, V) is an error
 * naming the position and value, never a read outside the table. */
rx_status cpu_embedding_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *T = n->in[0], *I = n->in[1];
    const int64_t V = T->shape[0], D = T->shape[1], N = I->numel;
    const float *idx = I->data;
    for (int64_t i = 0; i < N; i++) {
        const float v = idx[i];
        if (!(v >= 0.0f && v < (float)V && v == floorf(v)))
            return rx_fail(RX_ERR_ARG, "embedding: idx[%lld] = %g is not a row of table %s (whole numbers in [0, %lld))",
                           (long long)i, v, RX_SHAPE_STR(T), (long long)V);
    }
    float *y = n->out->data;
    #pragma omp parallel for schedule(static) if (N * D > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < N; i++) memcpy(y + i * D, T->data + (int64_t)idx[i] * D, (size_t)D * sizeof(float));
    return RX_OK;
}

/* dtable[idx[i]] += dy[i]. Repeated indices add up; each thread owns a range of columns, so the
 * scatter needs no atomics and sums in index order whatever the thread count. idx gets no gradient. */
rx_status cpu_embedding_bwd(rx_ctx *c, rx_node *n) {
    float *gt = cpu_in_grad(n, 0);
    if (!gt) return RX_OK;
    const int64_t D = n->in[0]->shape[1], N = n->in[1]->numel;
    const float *idx = n->in[1]->data, *gy = n->out->grad->data;
    #pragma omp parallel if (N * D > RX_OMP_MIN_WORK && D >= 16)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t d0 = D * t / nt, d1 = D * (t + 1) / nt;
        for (int64_t i = 0; i < N; i++) {
            float *dst = gt + (int64_t)idx[i] * D;
            const float *src = gy + i * D;
            for (int64_t d = d0; d < d1; d++) dst[d] += src[d];
        }
    }
    return RX_OK;
}

/* ---- timestep embedding (diffusers.models.embeddings.get_timestep_embedding) -----------------
 *   half = dim / 2,  freq_k = exp(-ln(max_period) · k / (half - shift)),  k = 0 .. half-1
 *   arg_k = scale · t · freq_k,  y = [sin(arg), cos(arg)]  ([cos, sin] when flip_sin_to_cos),
 *   plus one zero column when dim is odd.
 * Computed in float in the same order as diffusers (float32 tensors), so the arguments round
 * alike: at t ~ 1000 an argument's last bit is ~6e-5 rad. */
rx_status cpu_timestep_embedding_fwd(rx_ctx *c, rx_node *n) {
    const int64_t N = n->in[0]->shape[0], dim = n->i[0], half = dim / 2;
    const int flip = (int)n->i[1];
    const float scale = n->f[1];
    /* as torch: the Python doubles -ln(max_period) and (half - shift) rounded to float once */
    const float neg_log_max_period = (float)-log((double)n->f[2]), denom = (float)((double)half - n->f[0]);
    const float *t = n->in[0]->data;
    float *y = n->out->data;
    for (int64_t i = 0; i < N; i++) {
        float *yr = y + i * dim;
        float *first = yr + (flip ? half : 0), *second = yr + (flip ? 0 : half);   /* sin, cos */
        for (int64_t k = 0; k < half; k++) {
            const float freq = expf(neg_log_max_period * (float)k / denom);
            const float arg = scale * (t[i] * freq);
            first[k] = sinf(arg);
            second[k] = cosf(arg);
        }
        if (dim % 2) yr[dim - 1] = 0.0f;
    }
    return RX_OK;
}

/* No gradient: t holds timesteps (integers in DDPM, sampled times in flow matching) — data,
 * not parameters — and diffusers never differentiates through this embedding either; the
 * learnable part is the MLP that follows it. The kernel exists so the op is complete. */
rx_status cpu_timestep_embedding_bwd(rx_ctx *c, rx_node *n) { return RX_OK; }
