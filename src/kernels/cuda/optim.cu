// optim.cu — the multi-tensor AdamW + EMA step (backend.h's adamw_multi): every parameter of
// the model in three launches, whatever their number, and no host synchronisation.
//
//   1. mt_sumsq_kernel    one block per chunk: Σ g² of the chunk (double)      -> part[k]
//   2. mt_norm_kernel     one block: Σ parts in index order -> grad_sumsq, clip factor, the
//                         non-finite flag (all in rx_mt_scalars, device memory)
//   3. mt_update_kernel   one block per chunk: AdamW with the clip factor read from the
//                         scalars, then e = d e + (1-d) p; nothing when the flag is set
//
// The per-tensor path (util.cu) needed a Σ g² read back to the host per parameter tensor
// (a stream sync each) and 2-3 launches per tensor. Same formulas, in the same float order,
// as backend_cpu.c's cpu_adamw and cpu_ema; the sums are fixed-order (deterministic).
#include "kernels/cuda/cuda_common.h"

namespace {

constexpr int MT_THREADS = 256;

__global__ void mt_sumsq_kernel(const rx_mt_chunk *table, double *part) {
    const rx_mt_chunk ch = table[blockIdx.x];
    double s = 0;
    if (ch.g)
        for (int64_t i = threadIdx.x; i < ch.n; i += blockDim.x) s += (double)ch.g[i] * ch.g[i];
    s = rx_block_sum(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void mt_norm_kernel(const double *part, int n_parts, float max_norm, rx_mt_scalars *sc) {
    double s = 0;
    for (int k = threadIdx.x; k < n_parts; k += blockDim.x) s += part[k];
    s = rx_block_sum(s);
    if (threadIdx.x == 0) {
        sc->grad_sumsq = s;
        sc->clip_scale = rx_clip_factor(sqrt(s), max_norm);
        sc->nonfinite = !isfinite(s);
        if (sc->nonfinite && sc->first_bad_step == 0) sc->first_bad_step = sc->step;
    }
}

struct mt_consts {
    float beta1, beta2, eps, weight_decay;
};

// torch.optim.AdamW as cpu_adamw (bias corrections from t), then the EMA as cpu_ema
__global__ void mt_update_kernel(const rx_mt_chunk *table, mt_consts k, const rx_mt_scalars *sc) {
    if (sc->nonfinite) return;
    const rx_mt_chunk ch = table[blockIdx.x];
    const float lr = sc->lr, scale = sc->clip_scale, d = sc->ema_decay;
    const float bc1 = 1.0f - powf(k.beta1, (float)sc->step);
    const float bc2 = 1.0f - powf(k.beta2, (float)sc->step);
    const float step_size = lr / bc1, bc2_sqrt = sqrtf(bc2), decay = 1.0f - lr * k.weight_decay;
    for (int64_t i = threadIdx.x; i < ch.n; i += blockDim.x) {
        float pi = ch.p[i];
        if (ch.g) {
            const float gi = ch.g[i] * scale;
            pi *= decay;
            const float mi = k.beta1 * ch.m[i] + (1.0f - k.beta1) * gi;
            const float vi = k.beta2 * ch.v[i] + (1.0f - k.beta2) * gi * gi;
            const float denom = sqrtf(vi) / bc2_sqrt + k.eps;
            pi -= step_size * mi / denom;
            ch.p[i] = pi;
            ch.m[i] = mi;
            ch.v[i] = vi;
        }
        if (ch.ema) ch.ema[i] = d * ch.ema[i] + (1.0f - d) * pi;
    }
}

}  // namespace

rx_status rx_cuda_adamw_multi(rx_ctx *c, const rx_mt_args *a) {
    if (a->n_chunks <= 0) return RX_OK;
    if (a->n_chunks > 0x7fffffff / 2) return rx_fail(RX_ERR_ARG, "adamw: %d chunks", a->n_chunks);
    rx_cuda_state *st = rx_cuda(c);
    // the partial sums share the reductions' scratch slot: a training step has grown it
    // already (a graph captured after warm-up allocates nothing here)
    void *buf;
    RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_PARTIAL, (size_t)a->n_chunks * sizeof(double), &buf));
    double *part = (double *)buf;
    mt_sumsq_kernel<<<a->n_chunks, MT_THREADS, 0, st->stream>>>(a->table, part);
    RX_CUDA_LAUNCH_CHECK();
    mt_norm_kernel<<<1, 1024, 0, st->stream>>>(part, a->n_chunks, a->max_norm, a->scalars);
    RX_CUDA_LAUNCH_CHECK();
    const mt_consts k = {a->beta1, a->beta2, a->eps, a->weight_decay};
    mt_update_kernel<<<a->n_chunks, MT_THREADS, 0, st->stream>>>(a->table, k, a->scalars);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}
