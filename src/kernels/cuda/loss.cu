// loss.cu — CUDA sum, mean, mse_loss and cross_entropy, forward and backward, as cpu/loss.c.
// Every output is one number: per-example sums are block reductions in double, and the
// examples are added in order by a deterministic reduction (cuda_common.h). The upstream
// gradient dL is read on the device (no copy to the host).
//   mse:  saved[0] = mse_b [B], saved[1] = the gradient for dL = 1;  cross_entropy: saved[0] = softmax [B,K]
#include "kernels/cuda/cuda_common.h"

namespace {

struct value_of {   // f(i) = x[i]
    const float *x;
    __device__ double operator()(int64_t i) const { return x[i]; }
};

struct store_scaled {   // out[0] = (float)(sum / div)
    float *out;
    double div;
    __device__ void operator()(double s) const { out[0] = (float)(s / div); }
};

struct add_upstream {   // gx += dL (sum)
    float *gx;
    const float *dL;
    __device__ void operator()(int64_t i) const { gx[i] += dL[0]; }
};

struct add_upstream_mean {   // gx += dL / n, the quotient rounded once as the CPU's
    float *gx;
    const float *dL;
    double n;
    __device__ void operator()(int64_t i) const { gx[i] += (float)(dL[0] / n); }
};

}  // namespace

extern "C" rx_status cuda_sum_fwd(rx_ctx *c, rx_node *n) {
    return rx_cuda_reduce(c, n->in[0]->numel, value_of{n->in[0]->data}, store_scaled{n->out->data, 1.0});
}

extern "C" rx_status cuda_sum_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    return rx_cuda_foreach(c, n->in[0]->numel, add_upstream{gx, n->out->grad->data});
}

extern "C" rx_status cuda_mean_fwd(rx_ctx *c, rx_node *n) {
    return rx_cuda_reduce(c, n->in[0]->numel, value_of{n->in[0]->data},
                          store_scaled{n->out->data, (double)n->in[0]->numel});
}

extern "C" rx_status cuda_mean_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    return rx_cuda_foreach(c, n->in[0]->numel, add_upstream_mean{gx, n->out->grad->data, (double)n->in[0]->numel});
}

// ---- mse_loss: pred, target [B,M], weight [B] or NULL ------------------------------------------------
//   L = 1/B Σ_b w_b mse_b,  mse_b = 1/M Σ_j (pred - target)²
//   dpred = dL 2 w_b (pred - target) / (B M) = -dtarget;  dw_b = dL mse_b / B
// One kernel computes the loss and, when the node will be on the tape, the gradient for dL = 1,
// g1 = 2 w_b (pred - target) / (B M), in the same pass over pred and target (saved[1]); the backward
// scales it by dL (pred and target are not read again; with dL = 1, the training loss, the result
// equals the unfused dL-first rounding bit for bit).

// One block per example (grid-stride): mse_b in double and as float (saved for dw) and, with g1,
// the example's gradient. The block that finishes last adds w_b mse_b over the examples (in a
// fixed order: the result does not depend on which block that is) and writes L.
__global__ void mse_loss_fused_kernel(const float *__restrict__ p, const float *__restrict__ t,
                                      const float *__restrict__ w, int64_t B, int64_t M, float *mse, double *mse_d,
                                      float *__restrict__ g1, float *loss, unsigned *blocks_done) {
    for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
        const float *pb = p + b * M, *tb = t + b * M;
        const float coef = (float)(2.0 * (w ? w[b] : 1.0f) / ((double)B * (double)M));
        double s = 0;
        for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
            const float d = pb[j] - tb[j];
            s += (double)d * d;
            if (g1) g1[b * M + j] = coef * d;
        }
        s = rx_block_sum(s) / (double)M;
        if (threadIdx.x == 0) {
            mse[b] = (float)s;
            mse_d[b] = s;
        }
    }
    __shared__ unsigned is_last;
    if (threadIdx.x == 0) {
        __threadfence();   // this block's mse_d is visible to every block before it is counted
        is_last = atomicAdd(blocks_done, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    const volatile double *md = mse_d;   // the other blocks' values, from memory (not a stale cache line)
    double L = 0;
    for (int64_t b = threadIdx.x; b < B; b += blockDim.x) L += (w ? (double)w[b] : 1.0) * md[b];
    L = rx_block_sum(L);
    if (threadIdx.x == 0) {
        loss[0] = (float)(L / (double)B);
        *blocks_done = 0;
    }
}

namespace {

struct mse_pred_grad {   // gpred += dL g1, gtarget -= dL g1
    float *gp, *gt;
    const float *g1, *dL;
    __device__ void operator()(int64_t i) const {
        const float d = dL[0] * g1[i];
        if (gp) gp[i] += d;
        if (gt) gt[i] -= d;
    }
};

struct mse_weight_grad {   // dw_b += dL mse_b / B (float, as the CPU)
    float *gw;
    const float *mse, *dL;
    int64_t B;
    __device__ void operator()(int64_t b) const { gw[b] += dL[0] * mse[b] / (float)B; }
};

}  // namespace

static unsigned rows_grid(int64_t rows) { return (unsigned)(rows < 1 ? 1 : rows > (1 << 20) ? (1 << 20) : rows); }

extern "C" rx_status cuda_mse_loss_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *pred = n->in[0];
    const int64_t B = pred->shape[0], M = pred->numel / B;
    const int64_t sh[1] = {B};
    rx_tensor *mse_t = rx_empty(c, 1, sh);
    if (!mse_t) return c->err;
    n->saved[0] = mse_t;
    // the gradient for dL = 1 when rx_node_run will record the node (an input needs a gradient)
    int taped = 0;
    for (int i = 0; i < n->n_in; i++) taped |= c->grad_enabled && n->in[i] && n->in[i]->requires_grad;
    rx_tensor *g1_t = taped ? rx_empty_like(c, pred) : nullptr;
    if (taped && !g1_t) return c->err;
    n->saved[1] = g1_t;
    // the work slot: the per-example doubles, then the count of finished blocks (zeroed here; the
    // kernel's last block sets it back to 0)
    const size_t count_at = (size_t)B * sizeof(double);
    void *buf;
    RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_WORK, count_at + sizeof(unsigned), &buf));
    unsigned *blocks_done = (unsigned *)((char *)buf + count_at);
    RX_CUDA_TRY(cudaMemsetAsync(blocks_done, 0, sizeof(unsigned), rx_cuda(c)->stream));
    mse_loss_fused_kernel<<<rows_grid(B), 512, 0, rx_cuda(c)->stream>>>(
        pred->data, n->in[1]->data, n->in[2] ? n->in[2]->data : nullptr, B, M, mse_t->data, (double *)buf,
        g1_t ? g1_t->data : nullptr, n->out->data, blocks_done);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

extern "C" rx_status cuda_mse_loss_bwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *pred = n->in[0];
    const int64_t B = pred->shape[0];
    const float *dL = n->out->grad->data;
    float *gp = cuda_in_grad(n, 0), *gt = cuda_in_grad(n, 1), *gw = cuda_in_grad(n, 2);
    if (gw) RX_TRY(rx_cuda_foreach(c, B, mse_weight_grad{gw, n->saved[0]->data, dL, B}));
    if (!gp && !gt) return RX_OK;
    if (!n->saved[1]) return rx_fail(RX_ERR_INTERNAL, "mse_loss: backward of a forward that was not taped");
    return rx_cuda_foreach(c, pred->numel, mse_pred_grad{gp, gt, n->saved[1]->data, dL});
}

// ---- cross_entropy: logits [B,K], labels [B] -> L = 1/B Σ_b (logsumexp(logits_b) - logits_b[y_b]) ----
//   dlogits_b = dL (softmax(logits_b) - onehot(y_b)) / B. Labels get no gradient.

// one block per row: the softmax (saved) and the row's loss term in double
__global__ void cross_entropy_rows_kernel(const float *__restrict__ x, const float *__restrict__ labels, int64_t B,
                                          int64_t K, float *__restrict__ prob, double *loss_b) {
    for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
        const float *xb = x + b * K;
        float *pb = prob + b * K;
        float mx = -INFINITY;
        for (int64_t j = threadIdx.x; j < K; j += blockDim.x) mx = fmaxf(mx, xb[j]);
        mx = rx_block_max_f(mx);
        double s = 0;
        for (int64_t j = threadIdx.x; j < K; j += blockDim.x) s += expf(xb[j] - mx);
        s = rx_block_sum(s);
        const float inv = (float)(1.0 / s);
        for (int64_t j = threadIdx.x; j < K; j += blockDim.x) pb[j] = expf(xb[j] - mx) * inv;
        if (threadIdx.x == 0) loss_b[b] = log(s) + mx - xb[(int64_t)labels[b]];
    }
}

namespace {

struct double_of {
    const double *v;
    __device__ double operator()(int64_t i) const { return v[i]; }
};

struct cross_entropy_grad {   // gx += a prob, then -= a at the label (the CPU's two roundings)
    float *gx;
    const float *prob, *labels, *dL;
    int64_t B, K;
    __device__ void operator()(int64_t i) const {
        const int64_t b = i / K, j = i - b * K;
        const float a = dL[0] / (float)B;
        float g = gx[i] + a * prob[i];
        if (j == (int64_t)labels[b]) g -= a;
        gx[i] = g;
    }
};

}  // namespace

extern "C" rx_status cuda_cross_entropy_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *lg = n->in[0];
    const int64_t B = lg->shape[0], K = lg->shape[1];
    int64_t bad;
    float value = 0;
    RX_TRY(rx_cuda_check_indices(c, n->in[1]->data, B, K, &bad, &value));
    if (bad >= 0)   // a bad label is a data bug: say which row and value
        return rx_fail(RX_ERR_ARG, "cross_entropy: label %g of row %lld is not a class index in [0,%lld)", value,
                       (long long)bad, (long long)K);
    rx_tensor *prob_t = cuda_empty2(c, B, K);
    if (!prob_t) return c->err;
    n->saved[0] = prob_t;
    void *buf;
    RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_WORK, (size_t)B * sizeof(double), &buf));
    double *loss_b = (double *)buf;
    cross_entropy_rows_kernel<<<rows_grid(B), K >= 1024 ? 256 : 64, 0, rx_cuda(c)->stream>>>(lg->data, n->in[1]->data, B,
                                                                                             K, prob_t->data, loss_b);
    RX_CUDA_LAUNCH_CHECK();
    return rx_cuda_reduce(c, B, double_of{loss_b}, store_scaled{n->out->data, (double)B});
}

extern "C" rx_status cuda_cross_entropy_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    const int64_t B = n->in[0]->shape[0], K = n->in[0]->shape[1];
    return rx_cuda_foreach(c, B * K,
                           cross_entropy_grad{gx, n->saved[0]->data, n->in[1]->data, n->out->grad->data, B, K});
}
