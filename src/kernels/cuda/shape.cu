// shape.cu — CUDA concat, permute, nearest 2x upsample, 2x average pool, global average pool,
// unpatchify and slice, forward and backward. Node layout as cpu/shape.c (see op_shape.c):
//   concat in = {a, b}; permute in = {x}, i[0..ndim-1] = perm; upsample_nearest2x / avgpool2x /
//   global_avgpool in = {x}; unpatchify in = {x}, i[0] = channels, i[1] = h, i[2] = w, i[3] = p;
//   slice in = {x}, i[0] = dim, i[1] = start, i[2] = len.
//
// One thread per element of the side that is written. Each op is a bijection between output
// elements and (some) input elements, or every written element sums its own fixed inputs, so
// backward scatters (dx[src(i)] += dy[i]) never collide: no atomics, deterministic.
#include "kernels/cuda/cuda_common.h"

namespace {

// ---- concat along dim 1: per sample, y holds a's block (na) then b's block (nb) ----------------

struct concat_fwd_op {
    float *y;
    const float *a, *b;
    int64_t na, nb;
    __device__ void operator()(int64_t i) const {
        const int64_t s = i / (na + nb), r = i - s * (na + nb);
        y[i] = r < na ? a[s * na + r] : b[s * nb + (r - na)];
    }
};

struct concat_bwd_op {
    float *ga, *gb;
    const float *gy;
    int64_t na, nb;
    __device__ void operator()(int64_t i) const {
        const int64_t s = i / (na + nb), r = i - s * (na + nb);
        if (r < na) { if (ga) ga[s * na + r] += gy[i]; }
        else if (gb) gb[s * nb + (r - na)] += gy[i];
    }
};

// ---- permute: y = x.permute(perm): output coords -> source offset ---------------------------------

struct permute_geom {
    int nd;
    int64_t out_shape[RX_MAX_DIMS];
    int64_t src_stride[RX_MAX_DIMS];   // source stride of output dim d (= stride of source dim perm[d])
};

__device__ __forceinline__ int64_t permute_src(const permute_geom &g, int64_t i) {
    int64_t off = 0;
    for (int d = g.nd - 1; d >= 0; d--) {
        const int64_t q = i / g.out_shape[d];
        off += (i - q * g.out_shape[d]) * g.src_stride[d];
        i = q;
    }
    return off;
}

struct permute_fwd_op {
    float *y;
    const float *x;
    permute_geom g;
    __device__ void operator()(int64_t i) const { y[i] = x[permute_src(g, i)]; }
};

struct permute_bwd_op {   // dx = dy.permute(inverse): the same map, scattered
    float *gx;
    const float *gy;
    permute_geom g;
    __device__ void operator()(int64_t i) const { gx[permute_src(g, i)] += gy[i]; }
};

// ---- nearest 2x upsample: y[.., 2i+di, 2j+dj] = x[.., i, j];  x viewed as [rows, W] -------------

struct upsample_fwd_op {
    float *y;
    const float *x;
    int64_t W;   // input width; output rows have 2W
    __device__ void operator()(int64_t i) const {
        const int64_t orow = i / (2 * W), ocol = i - orow * (2 * W);
        y[i] = x[(orow / 2) * W + ocol / 2];
    }
};

struct upsample_bwd_op {   // dx[r, j] += Σ of dy over its 2x2 block (the CPU's order of additions)
    float *gx;
    const float *gy;
    int64_t W;
    __device__ void operator()(int64_t i) const {
        const int64_t r = i / W, j = i - r * W;
        const float *g0 = gy + 2 * r * (2 * W), *g1 = g0 + 2 * W;
        gx[i] += (g0[2 * j] + g0[2 * j + 1]) + (g1[2 * j] + g1[2 * j + 1]);
    }
};

// ---- 2x average pool: y[.., i, j] = ¼ Σ x[.., 2i+di, 2j+dj];  y viewed as [rows, W] ----------------

struct avgpool_fwd_op {
    float *y;
    const float *x;
    int64_t W;   // output width
    __device__ void operator()(int64_t i) const {
        const int64_t r = i / W, j = i - r * W;
        const float *x0 = x + 2 * r * (2 * W), *x1 = x0 + 2 * W;
        y[i] = 0.25f * ((x0[2 * j] + x0[2 * j + 1]) + (x1[2 * j] + x1[2 * j + 1]));
    }
};

struct avgpool_bwd_op {   // dx[2i+di, 2j+dj] += ¼ dy[i, j]
    float *gx;
    const float *gy;
    int64_t W;   // output width; input rows have 2W
    __device__ void operator()(int64_t i) const {
        const int64_t irow = i / (2 * W), icol = i - irow * (2 * W);
        gx[i] += 0.25f * gy[(irow / 2) * W + icol / 2];
    }
};

// ---- global average pool: [planes, HW] -> [planes], mean in double --------------------------------

struct gap_bwd_op {
    float *gx;
    const float *gy;
    int64_t HW;
    __device__ void operator()(int64_t i) const { gx[i] += gy[i / HW] / (float)HW; }
};

// ---- unpatchify (DiT): x [B, h*w, p*p*C] -> y [B, C, h*p, w*p] ----------------------------------
// y[n, c, hi*p + pi, wi*p + qi] = x[n, hi*w + wi, (pi*p + qi)*C + c]

struct unpatchify_geom {
    int64_t C, h, w, p;
};

__device__ __forceinline__ int64_t unpatchify_src(const unpatchify_geom &g, int64_t i) {
    const int64_t Wy = g.w * g.p, Hy = g.h * g.p;
    const int64_t col = i % Wy, row = (i / Wy) % Hy, ch = (i / (Wy * Hy)) % g.C, b = i / (Wy * Hy * g.C);
    const int64_t hi = row / g.p, pi = row % g.p, wi = col / g.p, qi = col % g.p;
    return ((b * g.h + hi) * g.w + wi) * (g.p * g.p * g.C) + (pi * g.p + qi) * g.C + ch;
}

struct unpatchify_fwd_op {
    float *y;
    const float *x;
    unpatchify_geom g;
    __device__ void operator()(int64_t i) const { y[i] = x[unpatchify_src(g, i)]; }
};

struct unpatchify_bwd_op {
    float *gx;
    const float *gy;
    unpatchify_geom g;
    __device__ void operator()(int64_t i) const { gx[unpatchify_src(g, i)] += gy[i]; }
};

// ---- slice (torch.narrow): outer index o is the block x[(o·size + start)·inner, + len·inner) -------

struct slice_geom {
    int64_t size, start, len, inner;
};

__device__ __forceinline__ int64_t slice_src(const slice_geom &g, int64_t i) {
    const int64_t blk = g.len * g.inner, o = i / blk;
    return (o * g.size + g.start) * g.inner + (i - o * blk);
}

struct slice_fwd_op {
    float *y;
    const float *x;
    slice_geom g;
    __device__ void operator()(int64_t i) const { y[i] = x[slice_src(g, i)]; }
};

struct slice_bwd_op {
    float *gx;
    const float *gy;
    slice_geom g;
    __device__ void operator()(int64_t i) const { gx[slice_src(g, i)] += gy[i]; }
};

}  // namespace

// one warp per plane: lanes stride over its HW values (double), the warp adds them up
__global__ void global_avgpool_kernel(const float *x, float *y, int64_t planes, int64_t HW) {
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t pl = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); pl < planes; pl += warps) {
        const float *xp = x + pl * HW;
        double s = 0;
        for (int64_t i = lane; i < HW; i += 32) s += xp[i];
        s = rx_warp_sum(s);
        if (lane == 0) y[pl] = (float)(s / (double)HW);
    }
}

static void concat_sizes(const rx_node *n, int64_t *na, int64_t *nb) {
    const int64_t B = n->in[0]->shape[0];
    *na = B ? n->in[0]->numel / B : 0;
    *nb = B ? n->in[1]->numel / B : 0;
}

extern "C" rx_status cuda_concat_fwd(rx_ctx *c, rx_node *n) {
    int64_t na, nb;
    concat_sizes(n, &na, &nb);
    return rx_cuda_foreach(c, n->out->numel, concat_fwd_op{n->out->data, n->in[0]->data, n->in[1]->data, na, nb});
}

extern "C" rx_status cuda_concat_bwd(rx_ctx *c, rx_node *n) {
    float *ga = cuda_in_grad(n, 0), *gb = cuda_in_grad(n, 1);
    if (!ga && !gb) return RX_OK;
    int64_t na, nb;
    concat_sizes(n, &na, &nb);
    return rx_cuda_foreach(c, n->out->numel, concat_bwd_op{ga, gb, n->out->grad->data, na, nb});
}

static permute_geom permute_geom_of(const rx_node *n) {
    const rx_tensor *x = n->in[0];
    permute_geom g;
    memset(&g, 0, sizeof g);
    g.nd = x->ndim;
    int64_t stride[RX_MAX_DIMS], st = 1;
    for (int d = x->ndim - 1; d >= 0; d--) { stride[d] = st; st *= x->shape[d]; }
    for (int d = 0; d < x->ndim; d++) {
        g.out_shape[d] = x->shape[n->i[d]];
        g.src_stride[d] = stride[n->i[d]];
    }
    return g;
}

extern "C" rx_status cuda_permute_fwd(rx_ctx *c, rx_node *n) {
    return rx_cuda_foreach(c, n->out->numel, permute_fwd_op{n->out->data, n->in[0]->data, permute_geom_of(n)});
}

extern "C" rx_status cuda_permute_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    return rx_cuda_foreach(c, n->out->numel, permute_bwd_op{gx, n->out->grad->data, permute_geom_of(n)});
}

extern "C" rx_status cuda_upsample_nearest2x_fwd(rx_ctx *c, rx_node *n) {
    return rx_cuda_foreach(c, n->out->numel, upsample_fwd_op{n->out->data, n->in[0]->data, n->in[0]->shape[3]});
}

extern "C" rx_status cuda_upsample_nearest2x_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    return rx_cuda_foreach(c, n->in[0]->numel, upsample_bwd_op{gx, n->out->grad->data, n->in[0]->shape[3]});
}

extern "C" rx_status cuda_avgpool2x_fwd(rx_ctx *c, rx_node *n) {
    return rx_cuda_foreach(c, n->out->numel, avgpool_fwd_op{n->out->data, n->in[0]->data, n->out->shape[3]});
}

extern "C" rx_status cuda_avgpool2x_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    return rx_cuda_foreach(c, n->in[0]->numel, avgpool_bwd_op{gx, n->out->grad->data, n->out->shape[3]});
}

extern "C" rx_status cuda_global_avgpool_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *X = n->in[0];
    const int64_t planes = X->shape[0] * X->shape[1], HW = X->shape[2] * X->shape[3];
    if (planes == 0) return RX_OK;
    global_avgpool_kernel<<<rx_cuda_blocks(planes * 32), RX_CUDA_THREADS, 0, rx_cuda(c)->stream>>>(X->data, n->out->data,
                                                                                                  planes, HW);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

extern "C" rx_status cuda_global_avgpool_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    const rx_tensor *X = n->in[0];
    return rx_cuda_foreach(c, X->numel, gap_bwd_op{gx, n->out->grad->data, X->shape[2] * X->shape[3]});
}

static unpatchify_geom unpatchify_geom_of(const rx_node *n) {
    unpatchify_geom g;
    g.C = n->i[0];
    g.h = n->i[1];
    g.w = n->i[2];
    g.p = n->i[3];
    return g;
}

extern "C" rx_status cuda_unpatchify_fwd(rx_ctx *c, rx_node *n) {
    return rx_cuda_foreach(c, n->out->numel, unpatchify_fwd_op{n->out->data, n->in[0]->data, unpatchify_geom_of(n)});
}

extern "C" rx_status cuda_unpatchify_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    return rx_cuda_foreach(c, n->out->numel, unpatchify_bwd_op{gx, n->out->grad->data, unpatchify_geom_of(n)});
}

static slice_geom slice_geom_of(const rx_node *n) {
    const rx_tensor *X = n->in[0];
    const int d = (int)n->i[0];
    slice_geom g;
    g.size = X->shape[d];
    g.start = n->i[1];
    g.len = n->i[2];
    g.inner = 1;
    for (int k = d + 1; k < X->ndim; k++) g.inner *= X->shape[k];
    return g;
}

extern "C" rx_status cuda_slice_fwd(rx_ctx *c, rx_node *n) {
    return rx_cuda_foreach(c, n->out->numel, slice_fwd_op{n->out->data, n->in[0]->data, slice_geom_of(n)});
}

extern "C" rx_status cuda_slice_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    return rx_cuda_foreach(c, n->out->numel, slice_bwd_op{gx, n->out->grad->data, slice_geom_of(n)});
}
