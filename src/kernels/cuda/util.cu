// util.cu — the backend.h utilities on the device: fill, axpy, sum of squares, the fused
// AdamW update and the EMA update. Same formulas, in the same float order, as backend_cpu.c.
#include "kernels/cuda/cuda_common.h"

namespace {

struct fill_op {
    float *dst;
    float v;
    __device__ void operator()(int64_t i) const { dst[i] = v; }
};

struct axpy_op {   // y += a x
    float *y;
    const float *x;
    float a;
    __device__ void operator()(int64_t i) const { y[i] += a * x[i]; }
};

struct square_term {   // x_i² in double
    const float *x;
    __device__ double operator()(int64_t i) const { return (double)x[i] * x[i]; }
};

struct store_double {
    double *out;
    __device__ void operator()(double s) const { *out = s; }
};

// torch.optim.AdamW, as cpu_adamw: the bias corrections are computed once on the host
struct adamw_op {
    float *p, *m, *v;
    const float *g;
    float beta1, beta2, eps, grad_scale, step_size, bc2_sqrt, decay;
    __device__ void operator()(int64_t i) const {
        const float gi = g[i] * grad_scale;
        float pi = p[i] * decay;
        const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        const float denom = sqrtf(vi) / bc2_sqrt + eps;
        pi -= step_size * mi / denom;
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
};

struct ema_op {   // e = d e + (1-d) p
    float *e;
    const float *p;
    float decay;
    __device__ void operator()(int64_t i) const { e[i] = decay * e[i] + (1.0f - decay) * p[i]; }
};

}  // namespace

rx_status rx_cuda_fill(rx_ctx *c, float *dst, float v, int64_t n) { return rx_cuda_foreach(c, n, fill_op{dst, v}); }

rx_status rx_cuda_axpy(rx_ctx *c, float *y, float a, const float *x, int64_t n) {
    return rx_cuda_foreach(c, n, axpy_op{y, x, a});
}

// The result goes to the host, so this waits for the stream (once per call).
rx_status rx_cuda_sumsq(rx_ctx *c, const float *x, int64_t n, double *out) {
    rx_cuda_state *st = rx_cuda(c);
    double *dev_result = (double *)st->dev_flag;   // one 8-byte device word, free between calls
    RX_TRY(rx_cuda_reduce(c, n, square_term{x}, store_double{dev_result}));
    RX_CUDA_TRY(cudaMemcpyAsync(st->host_pinned, dev_result, sizeof(double), cudaMemcpyDeviceToHost, st->stream));
    RX_CUDA_TRY(cudaStreamSynchronize(st->stream));
    memcpy(out, st->host_pinned, sizeof(double));
    return RX_OK;
}

rx_status rx_cuda_adamw(rx_ctx *c, float *p, const float *g, float *m, float *v, int64_t n, const rx_adamw_args *a) {
    const float bc1 = 1.0f - powf(a->beta1, (float)a->step);
    const float bc2 = 1.0f - powf(a->beta2, (float)a->step);
    adamw_op op;
    op.p = p;
    op.m = m;
    op.v = v;
    op.g = g;
    op.beta1 = a->beta1;
    op.beta2 = a->beta2;
    op.eps = a->eps;
    op.grad_scale = a->grad_scale;
    op.step_size = a->lr / bc1;
    op.bc2_sqrt = sqrtf(bc2);
    op.decay = 1.0f - a->lr * a->weight_decay;
    return rx_cuda_foreach(c, n, op);
}

rx_status rx_cuda_ema(rx_ctx *c, float *ema, const float *p, float decay, int64_t n) {
    return rx_cuda_foreach(c, n, ema_op{ema, p, decay});
}
