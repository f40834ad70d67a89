// elementwise.cu — CUDA add/sub/mul with NumPy broadcasting, scale, silu, gelu, modulate, residual_add and
// dropout, forward and backward. Node layout as cpu/elementwise.c (see op_elementwise.c):
//   add/sub/mul in = {a, b};  scale in = {x}, f[0] = alpha, f[1] = beta;  silu in = {x};
//   gelu in = {x}, i[0] = approximate_tanh;  modulate in = {x, shift, scale};
//   dropout in = {x}, f[0] = p, i[0] = Philox stream, i[1] = seed.
//
// Broadcasting uses the CPU's plan: output dims of size 1 dropped, neighbouring dims in which
// a and b are each kept-or-broadcast alike merged (at most 5 dims remain), and per operand an
// element stride per dim (0 = broadcast). A thread turns its output index into the two
// operand offsets with at most 5 divisions (32-bit ones when the tensor allows).
//
// Backward of a broadcast operand is a reduction of dy over its broadcast dims, without
// atomics (deterministic): each element of the operand's gradient is the sum of its own
// parts, in a fixed order (see cuda_common.h).
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/philox_device.h"
extern "C" {
#include "core/philox.h"   // RX_STREAM, RX_DROPOUT_INDEX: dropout's stream as op_elementwise.c makes it
}
#include <limits.h>

// ---- the broadcast plan (cpu/elementwise.c's bcast_plan_make) -------------------------------

struct bcast_plan {
    int nd;
    int64_t n[RX_MAX_DIMS];
    int64_t s[2][RX_MAX_DIMS];   // element strides of a (0) and b (1); 0 = broadcast
};

// size of dim d of the output, as seen by t (right-aligned; missing leading dims are 1)
static int64_t dim_as_out(const rx_tensor *t, int out_nd, int d) {
    const int k = d - (out_nd - t->ndim);
    return k < 0 ? 1 : t->shape[k];
}

static void bcast_plan_make(const rx_tensor *a, const rx_tensor *b, const rx_tensor *y, bcast_plan *p) {
    int keep[2][RX_MAX_DIMS], m = 0;
    for (int d = 0; d < y->ndim; d++) {
        if (y->shape[d] == 1) continue;
        const int k0 = dim_as_out(a, y->ndim, d) != 1, k1 = dim_as_out(b, y->ndim, d) != 1;
        if (m > 0 && keep[0][m - 1] == k0 && keep[1][m - 1] == k1) {
            p->n[m - 1] *= y->shape[d];
        } else {
            p->n[m] = y->shape[d];
            keep[0][m] = k0;
            keep[1][m] = k1;
            m++;
        }
    }
    if (m == 0) { p->n[0] = 1; keep[0][0] = keep[1][0] = 1; m = 1; }   // one element
    p->nd = m;
    for (int k = 0; k < 2; k++) {
        int64_t st = 1;
        for (int d = m - 1; d >= 0; d--) {
            p->s[k][d] = keep[k][d] ? st : 0;
            if (keep[k][d]) st *= p->n[d];
        }
    }
    for (int d = m; d < RX_MAX_DIMS; d++) { p->n[d] = 1; p->s[0][d] = p->s[1][d] = 0; }
}

// offsets of a and b for output index i (IT: 32-bit when every index fits)
template <typename IT>
__host__ __device__ __forceinline__ void plan_offsets(const bcast_plan &p, IT i, IT &oa, IT &ob) {
    oa = 0;
    ob = 0;
    for (int d = p.nd - 1; d >= 0; d--) {
        const IT nd = (IT)p.n[d], q = i / nd, r = i - q * nd;
        oa += r * (IT)p.s[0][d];
        ob += r * (IT)p.s[1][d];
        i = q;
    }
}

enum { BIN_ADD, BIN_SUB, BIN_MUL };

template <int OP, typename IT>
__global__ void binary_fwd_kernel(bcast_plan p, const float *__restrict__ a, const float *__restrict__ b,
                                  float *__restrict__ y, IT n) {
    for (IT i = (IT)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (IT)blockDim.x * gridDim.x) {
        IT oa, ob;
        plan_offsets<IT>(p, i, oa, ob);
        const float av = a[oa], bv = b[ob];
        y[i] = OP == BIN_ADD ? av + bv : OP == BIN_SUB ? av - bv : av * bv;
    }
}

template <int OP>
static rx_status binary_fwd(rx_ctx *c, rx_node *n) {
    bcast_plan p;
    bcast_plan_make(n->in[0], n->in[1], n->out, &p);
    const int64_t N = n->out->numel;
    if (N == 0) return RX_OK;
    cudaStream_t s = rx_cuda(c)->stream;
    if (N <= INT_MAX)
        binary_fwd_kernel<OP, uint32_t><<<rx_cuda_blocks(N), RX_CUDA_THREADS, 0, s>>>(p, n->in[0]->data, n->in[1]->data,
                                                                                    n->out->data, (uint32_t)N);
    else
        binary_fwd_kernel<OP, int64_t><<<rx_cuda_blocks(N), RX_CUDA_THREADS, 0, s>>>(p, n->in[0]->data, n->in[1]->data,
                                                                                   n->out->data, N);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

extern "C" rx_status cuda_add_fwd(rx_ctx *c, rx_node *n) { return binary_fwd<BIN_ADD>(c, n); }
extern "C" rx_status cuda_sub_fwd(rx_ctx *c, rx_node *n) { return binary_fwd<BIN_SUB>(c, n); }
extern "C" rx_status cuda_mul_fwd(rx_ctx *c, rx_node *n) { return binary_fwd<BIN_MUL>(c, n); }

// ---- add / sub / mul backward -----------------------------------------------------------------
// gx (operand k) += reduce over the dims where x is broadcast of gy ⊙ f, f = sign (add, sub)
// or the other operand (mul). The plan's dims split into kept (x has them) and summed ones;
// ik is the linear index over the kept dims (last fastest), which is also x's own offset
// (x is contiguous in its kept dims), and is the linear index over the summed dims.

struct grad_geom {
    int nk_d, ns_d;
    int kept[RX_MAX_DIMS], summed[RX_MAX_DIMS];
    int64_t n[RX_MAX_DIMS];
    int64_t ostride[RX_MAX_DIMS];   // output (= gy) strides
    int64_t fstride[RX_MAX_DIMS];   // the other operand's strides (mul)
    int64_t nk, ns;
};

static grad_geom grad_geom_of(const bcast_plan &p, int k) {
    grad_geom g;
    memset(&g, 0, sizeof g);
    int64_t st = 1;
    for (int d = p.nd - 1; d >= 0; d--) { g.ostride[d] = st; st *= p.n[d]; }
    g.nk = g.ns = 1;
    for (int d = 0; d < p.nd; d++) {
        g.n[d] = p.n[d];
        g.fstride[d] = p.s[1 - k][d];
        if (p.s[k][d]) { g.kept[g.nk_d++] = d; g.nk *= p.n[d]; }
        else           { g.summed[g.ns_d++] = d; g.ns *= p.n[d]; }
    }
    return g;
}

// gy and other-operand offsets of the element with kept index ik and summed index is
__host__ __device__ __forceinline__ void grad_offsets(const grad_geom &g, int64_t ik, int64_t is, int64_t &oo, int64_t &of) {
    oo = 0;
    of = 0;
    for (int e = g.nk_d - 1; e >= 0; e--) {
        const int d = g.kept[e];
        const int64_t q = ik / g.n[d], r = ik - q * g.n[d];
        oo += r * g.ostride[d];
        of += r * g.fstride[d];
        ik = q;
    }
    for (int e = g.ns_d - 1; e >= 0; e--) {
        const int d = g.summed[e];
        const int64_t q = is / g.n[d], r = is - q * g.n[d];
        oo += r * g.ostride[d];
        of += r * g.fstride[d];
        is = q;
    }
}

struct grad_term {   // gy ⊙ f at (ik, is)
    grad_geom g;
    const float *gy, *other;
    float sign;
    __host__ __device__ double operator()(int64_t is, int64_t ik) const {   // (r, j) order of rx_cuda_colsum
        int64_t oo, of;
        grad_offsets(g, ik, is, oo, of);
        return other ? (double)gy[oo] * other[of] : (double)(sign * gy[oo]);
    }
};

struct add_sum_to {   // gx[j] += sum
    float *gx;
    __device__ void operator()(int64_t j, double s) const { gx[j] += (float)s; }
};

struct part_reader {   // part [G, D] read as (g, j)
    const double *part;
    int64_t D;
    __device__ double operator()(int64_t g, int64_t j) const { return part[g * D + j]; }
};

// x has the output's shape: one pass, gx[i] += gy[i] f
__global__ void grad_same_shape_kernel(grad_term t, float *gx, int64_t N) {
    RX_CUDA_LOOP(i, N) gx[i] += (float)t(0, i);
}

// the last dim is summed: block (ik, group) sums its share of the summed indices, threads
// taking consecutive is (consecutive gy addresses along the last dim)
__global__ void grad_rows_parts_kernel(grad_term t, int64_t per, double *part) {
    const int64_t ik = blockIdx.x, g = blockIdx.y, ns = t.g.ns, nk = t.g.nk;
    const int64_t i0 = g * per, i1 = i0 + per < ns ? i0 + per : ns;
    double s = 0;
    for (int64_t is = i0 + threadIdx.x; is < i1; is += blockDim.x) s += t(is, ik);
    s = rx_block_sum(s);
    if (threadIdx.x == 0) part[g * nk + ik] = s;
}

static rx_status binary_bwd_operand(rx_ctx *c, const bcast_plan &p, int k, float *gx, const float *gy,
                                    const float *other, float sign, int64_t N) {
    if (N == 0) return RX_OK;
    grad_term t;
    t.g = grad_geom_of(p, k);
    t.gy = gy;
    t.other = other;
    t.sign = sign;
    if (t.g.ns == 1) {   // nothing broadcast: the kept index is the output index
        grad_same_shape_kernel<<<rx_cuda_blocks(N), RX_CUDA_THREADS, 0, rx_cuda(c)->stream>>>(t, gx, N);
        RX_CUDA_LAUNCH_CHECK();
        return RX_OK;
    }
    if (p.s[k][p.nd - 1] != 0)   // last dim kept: threads own gx elements, coalesced along it
        return rx_cuda_colsum(c, t.g.ns, t.g.nk, t, add_sum_to{gx});
    // last dim summed: one block per gx element and group, then the groups in order
    const int64_t nk = t.g.nk, ns = t.g.ns;
    if (nk > INT_MAX) return rx_fail(RX_ERR_ARG, "broadcast gradient over %lld elements", (long long)nk);
    int64_t G = (2048 + nk - 1) / nk;
    const int64_t gmax = ns / 1024 > 0 ? ns / 1024 : 1;   // at least ~4 terms per thread
    if (G > gmax) G = gmax;
    if (G > 65535) G = 65535;
    const int64_t per = (ns + G - 1) / G;
    void *buf;
    RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_WORK, (size_t)(G * nk) * sizeof(double), &buf));
    double *part = (double *)buf;
    grad_rows_parts_kernel<<<dim3((unsigned)nk, (unsigned)G), RX_CUDA_THREADS, 0, rx_cuda(c)->stream>>>(t, per, part);
    RX_CUDA_LAUNCH_CHECK();
    return rx_cuda_colsum(c, G, nk, part_reader{part, nk}, add_sum_to{gx});
}

// d(a ± b) = (dy, ±dy);  d(a b) = (dy b, dy a)
template <int OP>
static rx_status binary_bwd(rx_ctx *c, rx_node *n) {
    bcast_plan p;
    bcast_plan_make(n->in[0], n->in[1], n->out, &p);
    const float *gy = n->out->grad->data;
    float *ga = cuda_in_grad(n, 0), *gb = cuda_in_grad(n, 1);
    const int mul = OP == BIN_MUL;
    if (ga) RX_TRY(binary_bwd_operand(c, p, 0, ga, gy, mul ? n->in[1]->data : nullptr, 1.0f, n->out->numel));
    if (gb) RX_TRY(binary_bwd_operand(c, p, 1, gb, gy, mul ? n->in[0]->data : nullptr, OP == BIN_SUB ? -1.0f : 1.0f,
                                      n->out->numel));
    return RX_OK;
}

extern "C" rx_status cuda_add_bwd(rx_ctx *c, rx_node *n) { return binary_bwd<BIN_ADD>(c, n); }
extern "C" rx_status cuda_sub_bwd(rx_ctx *c, rx_node *n) { return binary_bwd<BIN_SUB>(c, n); }
extern "C" rx_status cuda_mul_bwd(rx_ctx *c, rx_node *n) { return binary_bwd<BIN_MUL>(c, n); }

// ---- scale, silu, gelu: one element per thread ------------------------------------------------

#define GELU_K0 0.7978845608028654f   // √(2/π)
#define GELU_K1 0.044715f
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

namespace {

struct scale_fwd_op {   // y = alpha x + beta
    float *y;
    const float *x;
    float alpha, beta;
    __device__ void operator()(int64_t i) const { y[i] = alpha * x[i] + beta; }
};

struct silu_fwd_op {   // y = x σ(x)
    float *y;
    const float *x;
    __device__ void operator()(int64_t i) const { y[i] = x[i] / (1.0f + expf(-x[i])); }
};

struct silu_bwd_op {   // dx += dy σ(x) (1 + x (1 - σ(x)))
    float *gx;
    const float *x, *gy;
    __device__ void operator()(int64_t i) const {
        const float s = 1.0f / (1.0f + expf(-x[i]));
        gx[i] += gy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
};

struct exp_fwd_op {   // y = e^x
    float *y;
    const float *x;
    __device__ void operator()(int64_t i) const { y[i] = expf(x[i]); }
};

struct exp_bwd_op {   // dx += dy y
    float *gx;
    const float *y, *gy;
    __device__ void operator()(int64_t i) const { gx[i] += gy[i] * y[i]; }
};

struct abs_fwd_op {   // y = |x|
    float *y;
    const float *x;
    __device__ void operator()(int64_t i) const { y[i] = fabsf(x[i]); }
};

struct abs_bwd_op {   // dx += dy sign(x), 0 at 0
    float *gx;
    const float *x, *gy;
    __device__ void operator()(int64_t i) const { gx[i] += x[i] > 0.0f ? gy[i] : x[i] < 0.0f ? -gy[i] : 0.0f; }
};

// exact: y = x Φ(x) = ½ x erfc(-x/√2);  tanh: y = x σ(2u), u = √(2/π) (x + 0.044715 x³)
struct gelu_fwd_op {
    float *y;
    const float *x;
    int tanh_approx;
    __device__ void operator()(int64_t i) const {
        const float v = x[i];
        if (tanh_approx) {
            const float u = GELU_K0 * (v + GELU_K1 * v * v * v);
            y[i] = v / (1.0f + expf(-2.0f * u));
        } else {
            y[i] = 0.5f * v * erfcf(-v * INV_SQRT2);
        }
    }
};

struct gelu_bwd_op {
    float *gx;
    const float *x, *gy;
    int tanh_approx;
    __device__ void operator()(int64_t i) const {
        const float v = x[i];
        if (tanh_approx) {
            const float u = GELU_K0 * (v + GELU_K1 * v * v * v);
            const float s = 1.0f / (1.0f + expf(-2.0f * u)), du = GELU_K0 * (1.0f + 3.0f * GELU_K1 * v * v);
            gx[i] += gy[i] * (s + 2.0f * v * s * (1.0f - s) * du);
        } else {
            const float cdf = 0.5f * erfcf(-v * INV_SQRT2), pdf = INV_SQRT_2PI * expf(-0.5f * v * v);
            gx[i] += gy[i] * (cdf + v * pdf);
        }
    }
};

}  // namespace

extern "C" rx_status cuda_scale_fwd(rx_ctx *c, rx_node *n) {
    return rx_cuda_foreach(c, n->out->numel, scale_fwd_op{n->out->data, n->in[0]->data, n->f[0], n->f[1]});
}

extern "C" rx_status cuda_scale_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (gx) return rx_cuda_axpy(c, gx, n->f[0], n->out->grad->data, n->out->numel);
    return RX_OK;
}

extern "C" rx_status cuda_silu_fwd(rx_ctx *c, rx_node *n) {
    return rx_cuda_foreach(c, n->out->numel, silu_fwd_op{n->out->data, n->in[0]->data});
}

extern "C" rx_status cuda_silu_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    return rx_cuda_foreach(c, n->out->numel, silu_bwd_op{gx, n->in[0]->data, n->out->grad->data});
}

extern "C" rx_status cuda_exp_fwd(rx_ctx *c, rx_node *n) {
    return rx_cuda_foreach(c, n->out->numel, exp_fwd_op{n->out->data, n->in[0]->data});
}

extern "C" rx_status cuda_exp_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    return rx_cuda_foreach(c, n->out->numel, exp_bwd_op{gx, n->out->data, n->out->grad->data});
}

extern "C" rx_status cuda_abs_fwd(rx_ctx *c, rx_node *n) {
    return rx_cuda_foreach(c, n->out->numel, abs_fwd_op{n->out->data, n->in[0]->data});
}

extern "C" rx_status cuda_abs_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    return rx_cuda_foreach(c, n->out->numel, abs_bwd_op{gx, n->in[0]->data, n->out->grad->data});
}

extern "C" rx_status cuda_gelu_fwd(rx_ctx *c, rx_node *n) {
    return rx_cuda_foreach(c, n->out->numel, gelu_fwd_op{n->out->data, n->in[0]->data, (int)n->i[0]});
}

extern "C" rx_status cuda_gelu_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    return rx_cuda_foreach(c, n->out->numel, gelu_bwd_op{gx, n->in[0]->data, n->out->grad->data, (int)n->i[0]});
}

// ---- modulate (adaLN): x [B,N,D], shift [B,D], scale [B,D] -> y = x (1 + scale) + shift ------------
// backward: dx = dy (1 + scale);  dshift[b,d] = Σ_n dy;  dscale[b,d] = Σ_n dy x

namespace {

struct modulate_fwd_op {
    float *y;
    const float *x, *shift, *scale;
    int64_t N, D;
    __device__ void operator()(int64_t i) const {
        const int64_t d = i % D, b = i / (N * D);
        y[i] = x[i] * (1.0f + scale[b * D + d]) + shift[b * D + d];
    }
};

struct modulate_gx_op {
    float *gx;
    const float *gy, *scale;
    int64_t N, D;
    __device__ void operator()(int64_t i) const {
        const int64_t d = i % D, b = i / (N * D);
        gx[i] += gy[i] * (1.0f + scale[b * D + d]);
    }
};

// one thread per (b, d): the sums over the N tokens (consecutive threads: consecutive d)
struct modulate_param_grads_op {
    float *gshift, *gscale;
    const float *gy, *x;
    int64_t N, D;
    __device__ void operator()(int64_t bd) const {
        const int64_t b = bd / D, d = bd % D;
        double s_shift = 0, s_scale = 0;
        for (int64_t t = 0; t < N; t++) {
            const int64_t o = (b * N + t) * D + d;
            s_shift += gy[o];
            s_scale += (double)gy[o] * x[o];
        }
        if (gshift) gshift[bd] += (float)s_shift;
        if (gscale) gscale[bd] += (float)s_scale;
    }
};

}  // namespace

extern "C" rx_status cuda_modulate_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *X = n->in[0];
    return rx_cuda_foreach(c, X->numel, modulate_fwd_op{n->out->data, X->data, n->in[1]->data, n->in[2]->data,
                                                       X->shape[1], X->shape[2]});
}

extern "C" rx_status cuda_modulate_bwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *X = n->in[0];
    const int64_t B = X->shape[0], N = X->shape[1], D = X->shape[2];
    const float *gy = n->out->grad->data;
    float *gx = cuda_in_grad(n, 0), *gshift = cuda_in_grad(n, 1), *gscale = cuda_in_grad(n, 2);
    if (gx) RX_TRY(rx_cuda_foreach(c, X->numel, modulate_gx_op{gx, gy, n->in[2]->data, N, D}));
    if (gshift || gscale) RX_TRY(rx_cuda_foreach(c, B * D, modulate_param_grads_op{gshift, gscale, gy, X->data, N, D}));
    return RX_OK;
}

// ---- dropout (inverted): y = x · keep / (1 - p) ---------------------------------------------------
// keep_i = (u_i >= p), u_i the uniform of word i of Philox stream i[0] under seed i[1]: the CPU's
// mask exactly (element i is word i%4 of block i/4), recomputed in backward. With dropout's step on
// the device (CUDA graphs, graph.cu) the stream's step comes from that word, its call number from
// i[0]'s low 16 bits (RX_DROPOUT_INDEX): the same stream, read at run time instead of baked in.

namespace {

struct dropout_op {   // one thread per Philox block: 4 elements
    float *y;
    const float *x;
    uint64_t seed, stream;
    const unsigned long long *step;   // NULL: stream as given
    float p, keep_scale;
    int64_t n;
    int accumulate;
    __device__ void operator()(int64_t blk) const {
        uint32_t w[4];
        const uint64_t s = step ? RX_STREAM(RX_RNG_DROPOUT, RX_DROPOUT_INDEX(*step, stream & 0xFFFF)) : stream;
        rx_philox_block(seed, s, (uint64_t)blk, w);
        for (int k = 0; k < 4; k++) {
            const int64_t i = blk * 4 + k;
            if (i >= n) break;
            const float m = rx_philox_uniform(w[k]) >= p ? keep_scale : 0.0f;
            if (accumulate) y[i] += x[i] * m;
            else y[i] = x[i] * m;
        }
    }
};

}  // namespace

static rx_status dropout_apply(rx_ctx *c, const rx_node *n, const float *x, float *y, int accumulate) {
    dropout_op op;
    op.y = y;
    op.x = x;
    op.seed = (uint64_t)n->i[1];
    op.stream = (uint64_t)n->i[0];
    op.step = rx_cuda(c)->dropout_step_on ? rx_cuda(c)->dropout_step : nullptr;
    op.p = n->f[0];
    op.keep_scale = op.p < 1.0f ? 1.0f / (1.0f - op.p) : 0.0f;
    op.n = n->out->numel;
    op.accumulate = accumulate;
    return rx_cuda_foreach(c, (op.n + 3) / 4, op);
}

extern "C" rx_status cuda_dropout_fwd(rx_ctx *c, rx_node *n) { return dropout_apply(c, n, n->in[0]->data, n->out->data, 0); }

extern "C" rx_status cuda_dropout_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    return dropout_apply(c, n, n->out->grad->data, gx, 1);
}

// ---- residual_add: y = (a + (b + bias[c])) s;  da = db = s dy,  dbias[c] = s Σ_{b,spatial} dy --------
// a, b [B,C,S], bias [C] or NULL, f[0] = s. Backward with a bias gradient: one block per (b,c) row
// writes da, db and the row's Σ dy; the rows are then added over b in order (deterministic).

namespace {

struct residual_add_fwd_op {
    float *y;
    const float *a, *b, *bias;
    float s;
    int64_t C, S;
    __device__ void operator()(int64_t i) const {
        y[i] = (a[i] + (b[i] + (bias ? bias[(i / S) % C] : 0.0f))) * s;
    }
};

struct residual_add_grad_op {   // da += s dy, db += s dy
    float *ga, *gb;
    const float *dy;
    float s;
    __device__ void operator()(int64_t i) const {
        const float g = s * dy[i];
        if (ga) ga[i] += g;
        if (gb) gb[i] += g;
    }
};

struct residual_add_bias_grad_op {   // dbias[c] += s Σ_b rows[b,c]
    float *gbias;
    const double *rows;
    float s;
    int64_t B, C;
    __device__ void operator()(int64_t ch) const {
        double t = 0;
        for (int64_t b = 0; b < B; b++) t += rows[b * C + ch];
        gbias[ch] += (float)(s * t);
    }
};

}  // namespace

__global__ void residual_add_rows_bwd_kernel(const float *__restrict__ dy, float *__restrict__ ga,
                                             float *__restrict__ gb, double *rows, float s, int64_t BC, int64_t S) {
    for (int64_t bc = blockIdx.x; bc < BC; bc += gridDim.x) {
        const float *dys = dy + bc * S;
        double t = 0;
        for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
            const float g = s * dys[i];
            if (ga) ga[bc * S + i] += g;
            if (gb) gb[bc * S + i] += g;
            t += dys[i];
        }
        t = rx_block_sum(t);
        if (threadIdx.x == 0) rows[bc] = t;
    }
}

extern "C" rx_status cuda_residual_add_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *a = n->in[0];
    const int64_t C = a->shape[1], BC = a->shape[0] * C, S = BC ? a->numel / BC : 1;
    return rx_cuda_foreach(c, a->numel, residual_add_fwd_op{n->out->data, a->data, n->in[1]->data,
                                                            n->in[2] ? n->in[2]->data : nullptr, n->f[0], C, S});
}

extern "C" rx_status cuda_residual_add_bwd(rx_ctx *c, rx_node *n) {
    float *ga = cuda_in_grad(n, 0), *gb = cuda_in_grad(n, 1), *gbias = cuda_in_grad(n, 2);
    const rx_tensor *a = n->in[0];
    const int64_t B = a->shape[0], C = a->shape[1], BC = B * C, S = BC ? a->numel / BC : 1;
    const float *dy = n->out->grad->data;
    if (!gbias) return ga || gb ? rx_cuda_foreach(c, a->numel, residual_add_grad_op{ga, gb, dy, n->f[0]}) : RX_OK;
    if (BC == 0) return RX_OK;
    void *buf;
    RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_PARTIAL, (size_t)BC * sizeof(double), &buf));
    double *rows = (double *)buf;
    const unsigned grid = (unsigned)(BC > (1 << 20) ? (1 << 20) : BC);
    residual_add_rows_bwd_kernel<<<grid, S >= 1024 ? 256 : 128, 0, rx_cuda(c)->stream>>>(dy, ga, gb, rows, n->f[0], BC, S);
    RX_CUDA_LAUNCH_CHECK();
    return rx_cuda_foreach(c, C, residual_add_bias_grad_op{gbias, rows, n->f[0], B, C});
}
