// embed.cu — CUDA embedding lookup and sinusoidal timestep embedding, as cpu/embed.c.
// Node layout (op_embed.c): embedding in = {table, idx}; timestep_embedding in = {t},
// i[0] = dim, i[1] = flip_sin_to_cos, f[0] = downscale_freq_shift, f[1] = scale, f[2] = max_period.
// Also the check that float-held indices are whole numbers in range (embedding, cross_entropy).
#include "kernels/cuda/cuda_common.h"

// ---- index check: the first position whose value is not a whole number in [0, limit) -------------

__global__ void first_bad_index_kernel(const float *v, int64_t n, float limit, unsigned long long *first) {
    RX_CUDA_LOOP(i, n) {
        const float x = v[i];
        if (!(x >= 0.0f && x < limit && x == floorf(x))) atomicMin(first, (unsigned long long)i);   // min: order-free
    }
}

// *first = the lowest bad position, or -1; *value = the value there. Waits for the stream.
rx_status rx_cuda_check_indices(rx_ctx *c, const float *v, int64_t n, int64_t limit, int64_t *first, float *value) {
    rx_cuda_state *st = rx_cuda(c);
    *first = -1;
    if (n <= 0) return RX_OK;
    RX_CUDA_TRY(cudaMemsetAsync(st->dev_flag, 0xff, sizeof *st->dev_flag, st->stream));
    first_bad_index_kernel<<<rx_cuda_blocks(n), RX_CUDA_THREADS, 0, st->stream>>>(v, n, (float)limit, st->dev_flag);
    RX_CUDA_LAUNCH_CHECK();
    unsigned long long *h = (unsigned long long *)st->host_pinned;
    RX_CUDA_TRY(cudaMemcpyAsync(h, st->dev_flag, sizeof *h, cudaMemcpyDeviceToHost, st->stream));
    RX_CUDA_TRY(cudaStreamSynchronize(st->stream));
    if (*h == ~0ull) return RX_OK;
    *first = (int64_t)*h;
    RX_CUDA_TRY(cudaMemcpyAsync(value, v + *first, sizeof *value, cudaMemcpyDeviceToHost, st->stream));
    RX_CUDA_TRY(cudaStreamSynchronize(st->stream));
    return RX_OK;
}

// The deferred form: check number k of the context marks (k << 32 | i) for its lowest bad i; the
// lowest mark over all checks since the last report is the first bad index in stream order.
__global__ void mark_bad_index_kernel(const float *v, int64_t n, float limit, unsigned long long tag,
                                      unsigned long long *mark) {
    RX_CUDA_LOOP(i, n) {
        const float x = v[i];
        if (!(x >= 0.0f && x < limit && x == floorf(x))) atomicMin(mark, tag | (unsigned long long)i);
    }
}

// then the value at the mark, when the mark is this check's (an earlier check's mark stays)
__global__ void mark_bad_value_kernel(const float *v, unsigned k, unsigned long long *mark) {
    const unsigned long long m = mark[0];
    if (threadIdx.x == 0 && m != ~0ull && (unsigned)(m >> 32) == k) memcpy(&mark[1], &v[m & 0xffffffffull], sizeof(float));
}

rx_status rx_cuda_check_indices_deferred(rx_ctx *c, const float *v, int64_t n, int64_t limit, const char *what) {
    rx_cuda_state *st = rx_cuda(c);
    if (n <= 0) return RX_OK;
    if (n > 0xffffffffll) {   // positions past 32 bits: the waiting check
        int64_t bad;
        float value;
        RX_TRY(rx_cuda_check_indices(c, v, n, limit, &bad, &value));
        if (bad < 0) return RX_OK;
        char msg[256];
        snprintf(msg, sizeof msg, what, (long long)bad, (double)value);
        return rx_fail(RX_ERR_ARG, "%s", msg);
    }
    const unsigned k = st->checks++;
    snprintf(st->check_what[k % RX_CUDA_CHECK_RING], sizeof st->check_what[0], "%s", what);
    mark_bad_index_kernel<<<rx_cuda_blocks(n), RX_CUDA_THREADS, 0, st->stream>>>(
        v, n, (float)limit, (unsigned long long)k << 32, st->bad_index);
    RX_CUDA_LAUNCH_CHECK();
    mark_bad_value_kernel<<<1, 32, 0, st->stream>>>(v, k, st->bad_index);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

// ---- embedding: table [V,D], idx [N] -> y [N,D], y[i] = table[idx[i]] -------------------------------

namespace {

struct embedding_fwd_op {
    float *y;
    const float *table, *idx;
    int64_t D;
    int64_t V;
    __device__ void operator()(int64_t e) const {
        const int64_t i = e / D, d = e - i * D;
        const float x = idx[i];   // a bad index (reported later, see the check) reads nothing: NaN
        y[e] = x >= 0.0f && x < (float)V && x == floorf(x) ? table[(int64_t)x * D + d] : NAN;
    }
};

// dtable[idx[i]] += dy[i]: one thread per column, rows in index order (repeated indices add up in
// the CPU's order, without atomics). idx gets no gradient.
struct embedding_bwd_op {
    float *gt;
    const float *gy, *idx;
    int64_t N, D, V;
    __device__ void operator()(int64_t d) const {
        for (int64_t i = 0; i < N; i++) {
            const float x = idx[i];   // a bad index writes nothing (the forward's check reports it)
            if (x >= 0.0f && x < (float)V && x == floorf(x)) gt[(int64_t)x * D + d] += gy[i * D + d];
        }
    }
};

}  // namespace

extern "C" rx_status cuda_embedding_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *T = n->in[0], *I = n->in[1];
    const int64_t V = T->shape[0], D = T->shape[1], N = I->numel;
    // checked without waiting for the device (a wait per forward would be a host sync per step):
    // the next read from the device reports a bad index (rx_cuda_deferred_errors)
    char what[192];
    snprintf(what, sizeof what, "embedding: idx[%%lld] = %%g is not a row of table %s (whole numbers in [0, %lld))",
             shape_text(T).s, (long long)V);
    RX_TRY(rx_cuda_check_indices_deferred(c, I->data, N, V, what));
    return rx_cuda_foreach(c, N * D, embedding_fwd_op{n->out->data, T->data, I->data, D, V});
}

extern "C" rx_status cuda_embedding_bwd(rx_ctx *c, rx_node *n) {
    float *gt = cuda_in_grad(n, 0);
    if (!gt) return RX_OK;
    const int64_t V = n->in[0]->shape[0], D = n->in[0]->shape[1], N = n->in[1]->numel;
    return rx_cuda_foreach(c, D, embedding_bwd_op{gt, n->out->grad->data, n->in[1]->data, N, D, V});
}

// ---- timestep embedding (diffusers get_timestep_embedding) ------------------------------------------
//   freq_k = exp(-ln(max_period) · k / (half - shift)),  arg_k = scale · t · freq_k
//   y = [sin(arg), cos(arg)] ([cos, sin] with flip), one zero column when dim is odd.
// The float products are the CPU's; exp, sin and cos are evaluated in double and rounded once,
// which is what glibc's expf/sinf/cosf return (correctly rounded, but for rare halfway cases):
// CUDA's own float versions are off by up to 2 ulp, and an ulp of the frequency is ~6e-5 rad
// of the argument at t ~ 1000.

namespace {

struct timestep_embedding_op {
    float *y;
    const float *t;
    int64_t dim, half;
    int flip;
    float neg_log_max_period, denom, scale;
    __device__ void operator()(int64_t e) const {   // e over [N, half]
        const int64_t i = e / half, k = e - i * half;
        const float freq = (float)exp((double)(neg_log_max_period * (float)k / denom));
        const float arg = scale * (t[i] * freq);
        float *yr = y + i * dim;
        yr[(flip ? half : 0) + k] = (float)sin((double)arg);
        yr[(flip ? 0 : half) + k] = (float)cos((double)arg);
    }
};

struct zero_last_column {
    float *y;
    int64_t dim;
    __device__ void operator()(int64_t i) const { y[i * dim + dim - 1] = 0.0f; }
};

}  // namespace

extern "C" rx_status cuda_timestep_embedding_fwd(rx_ctx *c, rx_node *n) {
    const int64_t N = n->in[0]->shape[0], dim = n->i[0], half = dim / 2;
    timestep_embedding_op op;
    op.y = n->out->data;
    op.t = n->in[0]->data;
    op.dim = dim;
    op.half = half;
    op.flip = (int)n->i[1];
    op.neg_log_max_period = (float)-log((double)n->f[2]);   // as cpu/embed.c (torch's float rounding)
    op.denom = (float)((double)half - n->f[0]);
    op.scale = n->f[1];
    if (half > 0) RX_TRY(rx_cuda_foreach(c, N * half, op));
    if (dim % 2) RX_TRY(rx_cuda_foreach(c, N, zero_last_column{n->out->data, dim}));
    return RX_OK;
}

// no gradient flows to t (cpu/embed.c says why)
extern "C" rx_status cuda_timestep_embedding_bwd(rx_ctx *c, rx_node *n) { return RX_OK; }
