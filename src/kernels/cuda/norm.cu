// norm.cu — CUDA group_norm, group_norm_silu and layer_norm, forward and backward, as cpu/norm.c.
// Node layout (op_norm.c): in = {x, gamma|NULL, beta|NULL}, f[0] = eps; group_norm(_silu) i[0] = groups;
// group_norm_silu in[3] = shift [B,C] or NULL.
// The forward saves mean and rstd per normalised run: saved[0], saved[1] ([B,G] or [R]).
//
//   xhat = (x - mu) rstd,  rstd = 1/sqrt(var + eps) (biased variance, two-pass: Σ (x - mu)²)
//   y = xhat gamma + beta
//   dx = rstd (dyg - mean(dyg) - xhat mean(dyg xhat)),  dyg = dy gamma
//   dgamma += Σ dy xhat,  dbeta += Σ dy
//
// Statistics are block reductions in double (cuda_common.h), one block per run.
#include "kernels/cuda/cuda_common.h"

enum { NORM_THREADS = 256 };

// ---- group_norm: x [B,C,S]; group (b,g) is the contiguous run x[b, g·Cg:(g+1)·Cg, :] ------------

// one block per group (grid-stride over the B·G groups)
__global__ void group_norm_fwd_kernel(const float *__restrict__ x, const float *__restrict__ gamma,
                                      const float *__restrict__ beta, float *__restrict__ y, float *mean, float *rstd,
                                      int64_t BG, int64_t G, int64_t Cg, int64_t S, float eps) {
    const int64_t n = Cg * S;
    for (int64_t bg = blockIdx.x; bg < BG; bg += gridDim.x) {
        const float *xg = x + bg * n;
        float *yg = y + bg * n;
        double s = 0;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += xg[i];
        const float mu = (float)(rx_block_sum(s) / (double)n);
        double v = 0;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const double d = (double)(xg[i] - mu);
            v += d * d;
        }
        const float rs = (float)(1.0 / sqrt(rx_block_sum(v) / (double)n + eps));
        if (threadIdx.x == 0) {
            mean[bg] = mu;
            rstd[bg] = rs;
        }
        const int64_t g = bg % G;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const int64_t ch = g * Cg + i / S;
            // y = (x - mu) rstd gamma + beta = x a + b
            const float a = rs * (gamma ? gamma[ch] : 1.0f);
            const float b = (beta ? beta[ch] : 0.0f) - mu * a;
            yg[i] = xg[i] * a + b;
        }
    }
}

// One block per group: per channel dsx = Σ_s dy x and ds = Σ_s dy (kept for dgamma/dbeta), then
// (with gx) dx = rstd gamma dy + q x + r from the group means
//   m1 = Σ_c gamma_c ds_c / n,  m2 = rstd Σ_c gamma_c (dsx_c - mu ds_c) / n
//   q = -rstd² m2,  r = -rstd m1 + rstd² m2 mu
__global__ void group_norm_bwd_kernel(const float *__restrict__ x, const float *__restrict__ dy,
                                      const float *__restrict__ gamma, const float *mean, const float *rstd,
                                      float *__restrict__ gx, double *dsx, double *ds, int64_t BG, int64_t G, int64_t Cg,
                                      int64_t S) {
    const int64_t n = Cg * S, C = G * Cg;
    for (int64_t bg = blockIdx.x; bg < BG; bg += gridDim.x) {
        const int64_t b = bg / G, g = bg % G;
        for (int64_t k = 0; k < Cg; k++) {
            const int64_t bc = b * C + g * Cg + k;
            const float *xs = x + bc * S, *dys = dy + bc * S;
            double sx = 0, sd = 0;
            for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
                sx += (double)dys[i] * xs[i];
                sd += dys[i];
            }
            sx = rx_block_sum(sx);
            sd = rx_block_sum(sd);
            if (threadIdx.x == 0) {
                dsx[bc] = sx;
                ds[bc] = sd;
            }
        }
        if (!gx) continue;
        __syncthreads();   // thread 0's dsx/ds stores are visible to the block after this
        const double mu = mean[bg], rs = rstd[bg];
        double s1 = 0, s2 = 0;   // every thread sums the Cg channels in the same order
        for (int64_t k = 0; k < Cg; k++) {
            const int64_t ch = g * Cg + k, bc = b * C + ch;
            const double gm = gamma ? gamma[ch] : 1.0;
            s1 += gm * ds[bc];
            s2 += gm * (dsx[bc] - mu * ds[bc]);
        }
        const double inv_n = 1.0 / (double)n, m1 = s1 * inv_n, m2 = rs * s2 * inv_n;
        const float q = (float)(-rs * rs * m2), r = (float)(-rs * m1 + rs * rs * m2 * mu);
        const int64_t off = bg * n;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const int64_t ch = g * Cg + i / S;
            const float a = (float)rs * (gamma ? gamma[ch] : 1.0f);
            gx[off + i] += a * dy[off + i] + q * x[off + i] + r;
        }
    }
}

namespace {

// dgamma[c] += Σ_b rstd (dsx - mu ds),  dbeta[c] += Σ_b ds  (one thread per channel)
struct group_norm_affine_grads {
    float *ggamma, *gbeta;
    const double *dsx, *ds;
    const float *mean, *rstd;
    int64_t B, C, G, Cg;
    __device__ void operator()(int64_t ch) const {
        double sg = 0, sb = 0;
        for (int64_t b = 0; b < B; b++) {
            const int64_t bg = b * G + ch / Cg, bc = b * C + ch;
            sg += (double)rstd[bg] * (dsx[bc] - (double)mean[bg] * ds[bc]);
            sb += ds[bc];
        }
        if (ggamma) ggamma[ch] += (float)sg;
        if (gbeta) gbeta[ch] += (float)sb;
    }
};

}  // namespace

typedef struct { int64_t B, C, S, G, Cg; } gn_dims;

static gn_dims gn_dims_of(const rx_node *n) {
    const rx_tensor *x = n->in[0];
    gn_dims d;
    d.B = x->shape[0];
    d.C = x->shape[1];
    d.G = n->i[0];
    d.S = (d.B * d.C != 0) ? x->numel / (d.B * d.C) : 0;
    d.Cg = d.C / d.G;
    return d;
}

static unsigned rows_grid(int64_t rows) { return (unsigned)(rows < 1 ? 1 : rows > (1 << 20) ? (1 << 20) : rows); }

// the per-(sample, group) mean and 1/std a group-norm forward saves for its backward [B,G]
static rx_status gn_save_stats(rx_ctx *c, rx_node *n, const gn_dims *d) {
    n->saved[0] = cuda_empty2(c, d->B, d->G);
    n->saved[1] = cuda_empty2(c, d->B, d->G);
    return n->saved[0] && n->saved[1] ? RX_OK : c->err;
}

extern "C" rx_status cuda_group_norm_fwd(rx_ctx *c, rx_node *n) {
    const gn_dims d = gn_dims_of(n);
    RX_TRY(gn_save_stats(c, n, &d));
    const int64_t BG = d.B * d.G;
    if (BG == 0) return RX_OK;
    group_norm_fwd_kernel<<<rows_grid(BG), NORM_THREADS, 0, rx_cuda(c)->stream>>>(
        n->in[0]->data, n->in[1] ? n->in[1]->data : nullptr, n->in[2] ? n->in[2]->data : nullptr, n->out->data,
        n->saved[0]->data, n->saved[1]->data, BG, d.G, d.Cg, d.S, n->f[0]);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

extern "C" rx_status cuda_group_norm_bwd(rx_ctx *c, rx_node *n) {
    const gn_dims d = gn_dims_of(n);
    float *gx = cuda_in_grad(n, 0), *ggamma = cuda_in_grad(n, 1), *gbeta = cuda_in_grad(n, 2);
    const int64_t BG = d.B * d.G, BC = d.B * d.C;
    if (BG == 0 || (!gx && !ggamma && !gbeta)) return RX_OK;
    const float *gamma = n->in[1] ? n->in[1]->data : nullptr;
    const float *mean = n->saved[0]->data, *rstd = n->saved[1]->data;
    void *buf;
    RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_PARTIAL, (size_t)(2 * BC) * sizeof(double), &buf));
    double *dsx = (double *)buf, *ds = dsx + BC;
    group_norm_bwd_kernel<<<rows_grid(BG), NORM_THREADS, 0, rx_cuda(c)->stream>>>(
        n->in[0]->data, n->out->grad->data, gamma, mean, rstd, gx, dsx, ds, BG, d.G, d.Cg, d.S);
    RX_CUDA_LAUNCH_CHECK();
    if (ggamma || gbeta)
        RX_TRY(rx_cuda_foreach(c, d.C, group_norm_affine_grads{ggamma, gbeta, dsx, ds, mean, rstd, d.B, d.C, d.G, d.Cg}));
    return RX_OK;
}

// ---- group_norm_silu: y = silu(z), z = (u - mu) rstd gamma + beta, u = x + shift[b,c] -------------------
// As cpu/norm.c: per channel k of group (b,g), z = x a_k + c_k, a_k = rstd gamma_k,
// c_k = (shift_k - mu) a_k + beta_k; neither u nor z is stored. Backward recomputes z, and with
// dz = dy σ(z) (1 + z (1 - σ(z))), ds_k = Σ_s dz, dd_k = Σ_s dz (u - mu), sx_k = Σ_s x:
//   m1 = Σ_k gamma_k ds_k / n,  m2 = rstd Σ_k gamma_k dd_k / n,  q = -rstd² m2,  r = -rstd m1
//   dx = a_k dz + q (u - mu) + r;  dshift_k = a_k ds_k + q (sx_k + S (shift_k - mu)) + S r
//   dgamma += Σ_b rstd dd_k,  dbeta += Σ_b ds_k

__device__ __forceinline__ float gns_silu_grad(float dy, float z) {   // dy · silu'(z)
    const float sg = 1.0f / (1.0f + expf(-z));
    return dy * sg * (1.0f + z * (1.0f - sg));
}

// one block per group (grid-stride over the B·G groups)
__global__ void group_norm_silu_fwd_kernel(const float *__restrict__ x, const float *__restrict__ gamma,
                                           const float *__restrict__ beta, const float *__restrict__ shift,
                                           float *__restrict__ y, float *mean, float *rstd, int64_t BG, int64_t G,
                                           int64_t Cg, int64_t S, float eps) {
    const int64_t n = Cg * S, C = G * Cg;
    for (int64_t bg = blockIdx.x; bg < BG; bg += gridDim.x) {
        const int64_t b = bg / G, g = bg % G;
        const float *xg = x + bg * n, *tg = shift ? shift + b * C + g * Cg : nullptr;   // [Cg,S], [Cg]
        float *yg = y + bg * n;
        double s = 0;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += (double)xg[i] + (tg ? (double)tg[i / S] : 0.0);
        const float mu = (float)(rx_block_sum(s) / (double)n);
        double v = 0;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const double d = (double)xg[i] + (tg ? (double)tg[i / S] : 0.0) - (double)mu;
            v += d * d;
        }
        const float rs = (float)(1.0 / sqrt(rx_block_sum(v) / (double)n + eps));
        if (threadIdx.x == 0) {
            mean[bg] = mu;
            rstd[bg] = rs;
        }
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const int64_t k = i / S, ch = g * Cg + k;
            const float a = rs * (gamma ? gamma[ch] : 1.0f);
            const float cz = ((tg ? tg[k] : 0.0f) - mu) * a + (beta ? beta[ch] : 0.0f);
            const float z = xg[i] * a + cz;
            yg[i] = z / (1.0f + expf(-z));
        }
    }
}

// one block per group: per channel ds, dd, sx (kept in `sums` [3,B·C] for dgamma/dbeta), then
// (with gx or gshift) dx from the recomputed dz and dshift from the closed form
__global__ void group_norm_silu_bwd_kernel(const float *__restrict__ x, const float *__restrict__ dy,
                                           const float *__restrict__ gamma, const float *__restrict__ beta,
                                           const float *__restrict__ shift, const float *mean, const float *rstd,
                                           float *__restrict__ gx, float *__restrict__ gshift, double *sums,
                                           int64_t BG, int64_t G, int64_t Cg, int64_t S) {
    const int64_t n = Cg * S, C = G * Cg, BC = (BG / G) * C;
    double *ds = sums, *dd = sums + BC, *sx = sums + 2 * BC;
    for (int64_t bg = blockIdx.x; bg < BG; bg += gridDim.x) {
        const int64_t b = bg / G, g = bg % G;
        const float mu = mean[bg], rs = rstd[bg];
        for (int64_t k = 0; k < Cg; k++) {
            const int64_t ch = g * Cg + k, bc = b * C + ch;
            const float tm = (shift ? shift[bc] : 0.0f) - mu, a = rs * (gamma ? gamma[ch] : 1.0f);
            const float cz = tm * a + (beta ? beta[ch] : 0.0f);
            const float *xs = x + bc * S, *dys = dy + bc * S;
            double s1 = 0, s2 = 0, s3 = 0;
            for (int64_t i = threadIdx.x; i < S; i += blockDim.x) {
                const float v = gns_silu_grad(dys[i], xs[i] * a + cz);
                s1 += v;
                s2 += (double)v * (xs[i] + tm);
                s3 += xs[i];
            }
            s1 = rx_block_sum(s1);
            s2 = rx_block_sum(s2);
            s3 = rx_block_sum(s3);
            if (threadIdx.x == 0) {
                ds[bc] = s1;
                dd[bc] = s2;
                sx[bc] = s3;
            }
        }
        if (!gx && !gshift) continue;
        __syncthreads();   // thread 0's sums are visible to the block after this
        double t1 = 0, t2 = 0;   // every thread sums the Cg channels in the same order
        for (int64_t k = 0; k < Cg; k++) {
            const int64_t ch = g * Cg + k, bc = b * C + ch;
            const double gm = gamma ? gamma[ch] : 1.0;
            t1 += gm * ds[bc];
            t2 += gm * dd[bc];
        }
        const double m1 = t1 / (double)n, m2 = rs * t2 / (double)n;
        const float q = (float)(-(double)rs * rs * m2), r = (float)(-(double)rs * m1);
        if (gshift)
            for (int64_t k = threadIdx.x; k < Cg; k += blockDim.x) {
                const int64_t ch = g * Cg + k, bc = b * C + ch;
                const float tm = (shift ? shift[bc] : 0.0f) - mu, a = rs * (gamma ? gamma[ch] : 1.0f);
                gshift[bc] += (float)(a * ds[bc] + q * (sx[bc] + (double)tm * S) + (double)r * S);
            }
        if (!gx) continue;
        const int64_t off = bg * n;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const int64_t k = i / S, ch = g * Cg + k, bc = b * C + ch;
            const float tm = (shift ? shift[bc] : 0.0f) - mu, a = rs * (gamma ? gamma[ch] : 1.0f);
            const float cz = tm * a + (beta ? beta[ch] : 0.0f);
            const float dz = gns_silu_grad(dy[off + i], x[off + i] * a + cz);
            gx[off + i] += a * dz + q * x[off + i] + (q * tm + r);
        }
    }
}

namespace {

// dgamma[c] += Σ_b rstd dd,  dbeta[c] += Σ_b ds  (one thread per channel)
struct group_norm_silu_affine_grads {
    float *ggamma, *gbeta;
    const double *ds, *dd;
    const float *rstd;
    int64_t B, C, G, Cg;
    __device__ void operator()(int64_t ch) const {
        double sg = 0, sb = 0;
        for (int64_t b = 0; b < B; b++) {
            const int64_t bg = b * G + ch / Cg, bc = b * C + ch;
            sg += (double)rstd[bg] * dd[bc];
            sb += ds[bc];
        }
        if (ggamma) ggamma[ch] += (float)sg;
        if (gbeta) gbeta[ch] += (float)sb;
    }
};

}  // namespace

extern "C" rx_status cuda_group_norm_silu_fwd(rx_ctx *c, rx_node *n) {
    const gn_dims d = gn_dims_of(n);
    RX_TRY(gn_save_stats(c, n, &d));
    const int64_t BG = d.B * d.G;
    if (BG == 0) return RX_OK;
    group_norm_silu_fwd_kernel<<<rows_grid(BG), NORM_THREADS, 0, rx_cuda(c)->stream>>>(
        n->in[0]->data, n->in[1] ? n->in[1]->data : nullptr, n->in[2] ? n->in[2]->data : nullptr,
        n->in[3] ? n->in[3]->data : nullptr, n->out->data, n->saved[0]->data, n->saved[1]->data, BG, d.G, d.Cg, d.S, n->f[0]);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

extern "C" rx_status cuda_group_norm_silu_bwd(rx_ctx *c, rx_node *n) {
    const gn_dims d = gn_dims_of(n);
    float *gx = cuda_in_grad(n, 0), *ggamma = cuda_in_grad(n, 1), *gbeta = cuda_in_grad(n, 2);
    float *gshift = cuda_in_grad(n, 3);
    const int64_t BG = d.B * d.G, BC = d.B * d.C;
    if (BG == 0 || (!gx && !ggamma && !gbeta && !gshift)) return RX_OK;
    void *buf;
    RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_PARTIAL, (size_t)(3 * BC) * sizeof(double), &buf));
    double *sums = (double *)buf;   // ds, dd, sx: [3, B·C]
    group_norm_silu_bwd_kernel<<<rows_grid(BG), NORM_THREADS, 0, rx_cuda(c)->stream>>>(
        n->in[0]->data, n->out->grad->data, n->in[1] ? n->in[1]->data : nullptr, n->in[2] ? n->in[2]->data : nullptr,
        n->in[3] ? n->in[3]->data : nullptr, n->saved[0]->data, n->saved[1]->data, gx, gshift, sums, BG, d.G, d.Cg,
        d.S);
    RX_CUDA_LAUNCH_CHECK();
    if (ggamma || gbeta)
        RX_TRY(rx_cuda_foreach(c, d.C, group_norm_silu_affine_grads{ggamma, gbeta, sums, sums + BC, n->saved[1]->data,
                                                                    d.B, d.C, d.G, d.Cg}));
    return RX_OK;
}

// ---- layer_norm: x [R,D]; each row is a run of D elements -------------------------------------------

__global__ void layer_norm_fwd_kernel(const float *__restrict__ x, const float *__restrict__ gamma,
                                      const float *__restrict__ beta, float *__restrict__ y, float *mean, float *rstd,
                                      int64_t R, int64_t D, float eps) {
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        const float *xr = x + r * D;
        float *yr = y + r * D;
        double s = 0;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) s += xr[j];
        const float mu = (float)(rx_block_sum(s) / (double)D);
        double v = 0;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
            const double dd = (double)(xr[j] - mu);
            v += dd * dd;
        }
        const float rs = (float)(1.0 / sqrt(rx_block_sum(v) / (double)D + eps));
        if (threadIdx.x == 0) {
            mean[r] = mu;
            rstd[r] = rs;
        }
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
            if (gamma || beta) yr[j] = (xr[j] - mu) * rs * (gamma ? gamma[j] : 1.0f) + (beta ? beta[j] : 0.0f);
            else yr[j] = (xr[j] - mu) * rs;
        }
    }
}

// dx = rstd (g - m1 - xhat m2), g = dy gamma, m1 = mean(g), m2 = mean(g xhat)
__global__ void layer_norm_bwd_kernel(const float *__restrict__ x, const float *__restrict__ dy,
                                      const float *__restrict__ gamma, const float *mean, const float *rstd,
                                      float *__restrict__ gx, int64_t R, int64_t D) {
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        const float *xr = x + r * D, *dyr = dy + r * D;
        const float mu = mean[r], rs = rstd[r];
        double s1 = 0, s2 = 0;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
            const float g = gamma ? dyr[j] * gamma[j] : dyr[j];
            s1 += g;
            s2 += (double)g * (xr[j] - mu);
        }
        const float m1 = (float)(rx_block_sum(s1) / (double)D);
        const float m2 = (float)(rx_block_sum(s2) * rs / (double)D);
        float *gxr = gx + r * D;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
            const float g = gamma ? dyr[j] * gamma[j] : dyr[j];
            gxr[j] += rs * (g - m1 - (xr[j] - mu) * rs * m2);
        }
    }
}

namespace {

struct ln_dy_xhat {   // dy xhat at (r, j): the dgamma terms
    const float *x, *dy, *mean, *rstd;
    int64_t D;
    __device__ double operator()(int64_t r, int64_t j) const {
        return (double)dy[r * D + j] * ((x[r * D + j] - mean[r]) * rstd[r]);
    }
};

struct ln_dy {   // dy at (r, j): the dbeta terms
    const float *dy;
    int64_t D;
    __device__ double operator()(int64_t r, int64_t j) const { return dy[r * D + j]; }
};

struct add_to_float {   // out[j] += sum
    float *out;
    __device__ void operator()(int64_t j, double s) const { out[j] += (float)s; }
};

}  // namespace

extern "C" rx_status cuda_layer_norm_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *xt = n->in[0];
    const int64_t D = xt->shape[xt->ndim - 1], R = xt->numel / D;
    const int64_t sh[1] = {R};
    rx_tensor *mean_t = rx_empty(c, 1, sh), *rstd_t = rx_empty(c, 1, sh);
    if (!mean_t || !rstd_t) return c->err;
    n->saved[0] = mean_t;
    n->saved[1] = rstd_t;
    if (R == 0) return RX_OK;
    layer_norm_fwd_kernel<<<rows_grid(R), D >= 512 ? 256 : 128, 0, rx_cuda(c)->stream>>>(
        xt->data, n->in[1] ? n->in[1]->data : nullptr, n->in[2] ? n->in[2]->data : nullptr, n->out->data, mean_t->data,
        rstd_t->data, R, D, n->f[0]);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

extern "C" rx_status cuda_layer_norm_bwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *xt = n->in[0];
    const int64_t D = xt->shape[xt->ndim - 1], R = xt->numel / D;
    float *gx = cuda_in_grad(n, 0), *ggamma = cuda_in_grad(n, 1), *gbeta = cuda_in_grad(n, 2);
    if (R == 0) return RX_OK;
    const float *dy = n->out->grad->data, *mean = n->saved[0]->data, *rstd = n->saved[1]->data;
    if (gx) {
        layer_norm_bwd_kernel<<<rows_grid(R), D >= 512 ? 256 : 128, 0, rx_cuda(c)->stream>>>(
            xt->data, dy, n->in[1] ? n->in[1]->data : nullptr, mean, rstd, gx, R, D);
        RX_CUDA_LAUNCH_CHECK();
    }
    if (ggamma) RX_TRY(rx_cuda_colsum(c, R, D, ln_dy_xhat{xt->data, dy, mean, rstd, D}, add_to_float{ggamma}));
    if (gbeta) RX_TRY(rx_cuda_colsum(c, R, D, ln_dy{dy, D}, add_to_float{gbeta}));
    return RX_OK;
}
