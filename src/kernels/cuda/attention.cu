// attention.cu — CUDA softmax (last dim) and scaled dot-product attention, forward and backward,
// as cpu/attention.c. Node layout (op_attention.c): softmax in = {x}; attention in = {q, k, v},
// f[0] = scale (resolved). Leading dims of q, k, v are one batch of BH independent heads.
//
// attention, per head (q [Nq,D], k [Nk,D], v [Nk,Dv]):
//   S = scale q kᵀ [Nq,Nk];  P = softmax_rows(S);  o = P v [Nq,Dv]
// backward:
//   dv += Pᵀ do;  dP = do vᵀ;  dS = P ⊙ (dP - rowsum(dP ⊙ P)) · scale;  dq += dS k;  dk += dSᵀ q
// The GEMMs are cuBLAS strided-batched over heads. With grad, the forward keeps P for every
// head (saved[0], [BH,Nq,Nk]) as the CPU does; scores that are not kept (no grad) and dS in
// backward live in the context's scratch, a chunk of heads at a time (ATTN_CHUNK_BYTES).
#include "kernels/cuda/cuda_common.h"

static const size_t ATTN_CHUNK_BYTES = (size_t)256 << 20;

// ---- softmax over rows of n (one block per row, grid-stride) ---------------------------------------

__global__ void softmax_rows_kernel(const float *x, float *y, int64_t R, int64_t n) {
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float mx = -INFINITY;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, xr[j]);
        mx = rx_block_max_f(mx);
        double s = 0;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += expf(xr[j] - mx);
        const float inv = 1.0f / (float)rx_block_sum(s);
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) yr[j] = expf(xr[j] - mx) * inv;
        // x may be y (in place, no __restrict__): each thread reads x[j] before writing y[j]
    }
}

// dx += y ⊙ (dy - Σ dy ⊙ y) per row; with `scale_out` (attention's dS): dx = scale · y ⊙ (dy - Σ)
__global__ void softmax_rows_bwd_kernel(const float *__restrict__ y, const float *dy, float *dx, int64_t R, int64_t n,
                                        int overwrite, float scale) {
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        const float *yr = y + r * n, *dyr = dy + r * n;
        float *dxr = dx + r * n;
        double d = 0;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) d += (double)dyr[j] * yr[j];
        const float dot = (float)rx_block_sum(d);
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
            if (overwrite) dxr[j] = scale * yr[j] * (dyr[j] - dot);   // dy may be dx: read before write, same thread
            else dxr[j] += yr[j] * (dyr[j] - dot);
        }
    }
}

static unsigned rows_grid(int64_t rows) { return (unsigned)(rows < 1 ? 1 : rows > (1 << 20) ? (1 << 20) : rows); }
static int row_threads(int64_t n) { return n >= 1024 ? 256 : n >= 256 ? 128 : 64; }

static rx_status softmax_rows(rx_ctx *c, const float *x, float *y, int64_t R, int64_t n) {
    if (R == 0 || n == 0) return RX_OK;
    softmax_rows_kernel<<<rows_grid(R), row_threads(n), 0, rx_cuda(c)->stream>>>(x, y, R, n);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

extern "C" rx_status cuda_softmax_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *x = n->in[0];
    const int64_t D = x->shape[x->ndim - 1];
    return softmax_rows(c, x->data, n->out->data, D ? x->numel / D : 0, D);
}

extern "C" rx_status cuda_softmax_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    const int64_t D = n->out->shape[n->out->ndim - 1], R = D ? n->out->numel / D : 0;
    if (R == 0) return RX_OK;
    softmax_rows_bwd_kernel<<<rows_grid(R), row_threads(D), 0, rx_cuda(c)->stream>>>(n->out->data, n->out->grad->data, gx,
                                                                                     R, D, 0, 1.0f);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

// ---- attention: q [BH,Nq,D], k [BH,Nk,D], v [BH,Nk,Dv] -> o [BH,Nq,Dv] ------------------------------

typedef struct { int64_t BH, Nq, Nk, D, Dv; } attn_dims;

static attn_dims attn_dims_of(const rx_node *n) {
    const rx_tensor *q = n->in[0], *v = n->in[2];
    const int nd = q->ndim;
    attn_dims d;
    d.Nq = q->shape[nd - 2];
    d.D = q->shape[nd - 1];
    d.Nk = v->shape[nd - 2];
    d.Dv = v->shape[nd - 1];
    d.BH = 1;
    for (int i = 0; i < nd - 2; i++) d.BH *= q->shape[i];
    return d;
}

// heads per chunk so that a chunk's [heads, Nq, Nk] buffer stays under ATTN_CHUNK_BYTES
static int64_t heads_per_chunk(const attn_dims *d) {
    const size_t per_head = (size_t)(d->Nq * d->Nk) * sizeof(float);
    int64_t h = per_head ? (int64_t)(ATTN_CHUNK_BYTES / per_head) : d->BH;
    if (h < 1) h = 1;
    return h < d->BH ? h : d->BH;
}

extern "C" rx_status cuda_attention_fwd(rx_ctx *c, rx_node *n) {
    const attn_dims d = attn_dims_of(n);
    const float scale = n->f[0];
    const float *q = n->in[0]->data, *k = n->in[1]->data, *v = n->in[2]->data;
    float *o = n->out->data;
    int keep = 0;   // P is needed for backward only when this node will be recorded on the tape
    for (int i = 0; i < 3; i++) keep |= c->grad_enabled && n->in[i]->requires_grad;
    const int64_t NN = d.Nq * d.Nk;
    float *P_all = nullptr;
    int64_t chunk = d.BH;
    if (keep) {
        rx_tensor *P_t = cuda_empty3(c, d.BH, d.Nq, d.Nk);
        if (!P_t) return c->err;
        n->saved[0] = P_t;
        P_all = P_t->data;
    } else {
        chunk = heads_per_chunk(&d);
        void *buf;
        RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_WORK, (size_t)(chunk * NN) * sizeof(float), &buf));
        P_all = (float *)buf;
    }
    for (int64_t h0 = 0; h0 < d.BH; h0 += chunk) {
        const int64_t hc = d.BH - h0 < chunk ? d.BH - h0 : chunk;
        float *P = keep ? P_all + h0 * NN : P_all;
        // S = scale q kᵀ, softmax in place, o = P v
        RX_TRY(rx_cuda_sgemm(c, 0, 1, d.Nq, d.Nk, d.D, scale, q + h0 * d.Nq * d.D, d.Nq * d.D, k + h0 * d.Nk * d.D,
                             d.Nk * d.D, 0.0f, P, NN, hc));
        RX_TRY(softmax_rows(c, P, P, hc * d.Nq, d.Nk));
        RX_TRY(rx_cuda_sgemm(c, 0, 0, d.Nq, d.Dv, d.Nk, 1.0f, P, NN, v + h0 * d.Nk * d.Dv, d.Nk * d.Dv, 0.0f,
                             o + h0 * d.Nq * d.Dv, d.Nq * d.Dv, hc));
    }
    return RX_OK;
}

extern "C" rx_status cuda_attention_bwd(rx_ctx *c, rx_node *n) {
    const attn_dims d = attn_dims_of(n);
    const float scale = n->f[0];
    const float *q = n->in[0]->data, *k = n->in[1]->data, *v = n->in[2]->data;
    if (!n->saved[0]) return rx_fail(RX_ERR_INTERNAL, "attention backward: forward kept no probabilities");
    const float *dout = n->out->grad->data, *P = n->saved[0]->data;
    float *gq = cuda_in_grad(n, 0), *gk = cuda_in_grad(n, 1), *gv = cuda_in_grad(n, 2);
    const int64_t NN = d.Nq * d.Nk;
    // dv += Pᵀ do   [Nk,Dv]
    if (gv) RX_TRY(rx_cuda_sgemm(c, 1, 0, d.Nk, d.Dv, d.Nq, 1.0f, P, NN, dout, d.Nq * d.Dv, 1.0f, gv, d.Nk * d.Dv, d.BH));
    if (!gq && !gk) return RX_OK;
    const int64_t chunk = heads_per_chunk(&d);
    void *buf;
    RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_WORK, (size_t)(chunk * NN) * sizeof(float), &buf));
    float *dS = (float *)buf;
    for (int64_t h0 = 0; h0 < d.BH; h0 += chunk) {
        const int64_t hc = d.BH - h0 < chunk ? d.BH - h0 : chunk;
        const float *Ph = P + h0 * NN, *doh = dout + h0 * d.Nq * d.Dv;
        // dP = do vᵀ   [Nq,Nk]
        RX_TRY(rx_cuda_sgemm(c, 0, 1, d.Nq, d.Nk, d.Dv, 1.0f, doh, d.Nq * d.Dv, v + h0 * d.Nk * d.Dv, d.Nk * d.Dv, 0.0f,
                             dS, NN, hc));
        // dS = scale P ⊙ (dP - rowsum(dP ⊙ P)), in place
        if (hc * d.Nq > 0 && d.Nk > 0) {
            softmax_rows_bwd_kernel<<<rows_grid(hc * d.Nq), row_threads(d.Nk), 0, rx_cuda(c)->stream>>>(Ph, dS, dS, hc * d.Nq,
                                                                                                        d.Nk, 1, scale);
            RX_CUDA_LAUNCH_CHECK();
        }
        // dq += dS k  [Nq,D];  dk += dSᵀ q  [Nk,D]
        if (gq)
            RX_TRY(rx_cuda_sgemm(c, 0, 0, d.Nq, d.D, d.Nk, 1.0f, dS, NN, k + h0 * d.Nk * d.D, d.Nk * d.D, 1.0f,
                                 gq + h0 * d.Nq * d.D, d.Nq * d.D, hc));
        if (gk)
            RX_TRY(rx_cuda_sgemm(c, 1, 0, d.Nk, d.D, d.Nq, 1.0f, dS, NN, q + h0 * d.Nq * d.D, d.Nq * d.D, 1.0f,
                                 gk + h0 * d.Nk * d.D, d.Nk * d.D, hc));
    }
    return RX_OK;
}
