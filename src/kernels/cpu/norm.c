/* norm.c — CPU group_norm, group_norm_silu (fused with the silu after it) and layer_norm, forward
 * and backward.
 *
 * Both normalise contiguous runs of n elements: xhat = (x - mu) * rstd, rstd = 1/sqrt(var + eps)
 * with the biased variance, then y = xhat * gamma + beta per channel (group_norm) or per
 * feature (layer_norm). The forward saves mu and rstd per run (saved[0], saved[1]).
 *
 * Backward, per run, with dyg = dy * gamma (dyg = dy without affine):
 *   dx = rstd * (dyg - mean(dyg) - xhat * mean(dyg * xhat))
 *   dgamma += Σ dy * xhat,  dbeta += Σ dy      (summed over every run the channel appears in)
 *
 * Statistics are sums over up to C/G * H * W elements (1e4..1e5), so they are accumulated
 * in float over short blocks (vectorized with omp simd) and the blocks in double; the
 * variance is two-pass (Σ (x - mu)²) so a large mean does not cancel it. */
#include "cpu.h"
#include "exp_vec.h"
#include <math.h>
#include <omp.h>

enum { BLOCK = 512 };   /* float partial sums stay exact to ~1e-7 relative over this many terms */

/* Σ x */
static double sum_f(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        int64_t i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
        float b = 0;
        #pragma omp simd reduction(+ : b)
        for (int64_t i = i0; i < i1; i++) b += x[i];
        s += b;
    }
    return s;
}

/* Σ (x - mu)² */
static double sum_sq_dev(const float *x, int64_t n, float mu) {
    double s = 0;
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        int64_t i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
        float b = 0;
        #pragma omp simd reduction(+ : b)
        for (int64_t i = i0; i < i1; i++) b += (x[i] - mu) * (x[i] - mu);
        s += b;
    }
    return s;
}

/* Σ a x and Σ a in one pass over a */
static void sum_prod_and_sum(const float *a, const float *x, int64_t n, double *sax, double *sa) {
    double s1 = 0, s2 = 0;
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        int64_t i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
        float p = 0, q = 0;
        #pragma omp simd reduction(+ : p, q)
        for (int64_t i = i0; i < i1; i++) { p += a[i] * x[i]; q += a[i]; }
        s1 += p;
        s2 += q;
    }
    *sax = s1;
    *sa = s2;
}

/* Σ a (x - mu) */
static double sum_prod_dev(const float *a, const float *x, int64_t n, float mu) {
    double s = 0;
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        int64_t i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
        float p = 0;
        #pragma omp simd reduction(+ : p)
        for (int64_t i = i0; i < i1; i++) p += a[i] * (x[i] - mu);
        s += p;
    }
    return s;
}

/* mean and rstd of one run of n elements */
static void run_stats(const float *x, int64_t n, float eps, float *mean, float *rstd) {
    const double mu = sum_f(x, n) / (double)n;
    const double var = sum_sq_dev(x, n, (float)mu) / (double)n;
    *mean = (float)mu;
    *rstd = (float)(1.0 / sqrt(var + eps));
}

/* scratch from the step arena (host memory on the CPU backend) */
static void *scratch(rx_ctx *c, size_t bytes) { return rx_arena_data(c->step, bytes ? bytes : 1); }
/* given back when the kernel returns: backward would pile up every norm's partials otherwise */
static rx_status scratch_free(rx_ctx *c, void *p, size_t bytes) { return p ? rx_arena_free(c->step, p, bytes ? bytes : 1) : RX_OK; }

// ----------------------------------------------------------------------------
// group_norm: x [B,C,S] (S = product of spatial dims), G groups of Cg = C/G channels.
// Group (b,g) is the contiguous run x[b, g*Cg:(g+1)*Cg, :] of n = Cg*S elements.

typedef struct { int64_t B, C, S, G, Cg; } gn_dims;

static gn_dims gn_dims_of(const rx_node *n) {
    const rx_tensor *x = n->in[0];
    gn_dims d = {.B = x->shape[0], .C = x->shape[1], .G = n->i[0]};
    d.S = (d.B * d.C != 0) ? x->numel / (d.B * d.C) : 0;
    d.Cg = d.C / d.G;
    return d;
}

/* the per-(sample, group) mean and 1/std a group-norm forward saves for its backward [B,G] */
static rx_status gn_save_stats(rx_ctx *c, rx_node *n, const gn_dims *d) {
    n->saved[0] = rx_empty(c, RX_SHAPE(d->B, d->G));
    n->saved[1] = rx_empty(c, RX_SHAPE(d->B, d->G));
    return n->saved[0] && n->saved[1] ? RX_OK : c->err;
}

rx_status cpu_group_norm_fwd(rx_ctx *c, rx_node *n) {
    const gn_dims d = gn_dims_of(n);
    const float eps = n->f[0];
    const float *x = n->in[0]->data;
    const float *gamma = n->in[1] ? n->in[1]->data : NULL, *beta = n->in[2] ? n->in[2]->data : NULL;
    float *y = n->out->data;
    RX_TRY(gn_save_stats(c, n, &d));
    float *mean = n->saved[0]->data, *rstd = n->saved[1]->data;

    #pragma omp parallel for schedule(static) if (n->in[0]->numel >= RX_OMP_MIN_WORK)
    for (int64_t bg = 0; bg < d.B * d.G; bg++) {
        const int64_t g = bg % d.G;
        const float *xg = x + bg * d.Cg * d.S;   // [Cg,S]
        float *yg = y + bg * d.Cg * d.S;
        run_stats(xg, d.Cg * d.S, eps, &mean[bg], &rstd[bg]);
        for (int64_t k = 0; k < d.Cg; k++) {
            const int64_t ch = g * d.Cg + k;
            // y = (x - mu) rstd gamma + beta = x a + b
            const float a = rstd[bg] * (gamma ? gamma[ch] : 1.0f);
            const float b = (beta ? beta[ch] : 0.0f) - mean[bg] * a;
            const float *xs = xg + k * d.S;
            float *ys = yg + k * d.S;
            #pragma omp simd
            for (int64_t s = 0; s < d.S; s++) ys[s] = xs[s] * a + b;
        }
    }
    return RX_OK;
}

// dx = rstd gamma_c dy + q x + r, from the group means
//   m1 = mean(dyg) = Σ_c gamma_c ds_c / n,  m2 = mean(dyg xhat) = rstd Σ_c gamma_c (dsx_c - mu ds_c) / n
//   q = -rstd² m2,  r = -rstd m1 + rstd² m2 mu
static void group_norm_dx(const gn_dims *dp, const float *x, const float *dy, const float *gamma, const float *mean,
                          const float *rstd, const double *dsx, const double *ds, int par, float *gx) {
    const gn_dims d = *dp;
    const double inv_n = 1.0 / (double)(d.Cg * d.S);
    #pragma omp parallel for schedule(static) if (par)
    for (int64_t bg = 0; bg < d.B * d.G; bg++) {
        const int64_t b = bg / d.G, g = bg % d.G;
        const double mu = mean[bg], rs = rstd[bg];
        double s1 = 0, s2 = 0;
        for (int64_t k = 0; k < d.Cg; k++) {
            const int64_t ch = g * d.Cg + k, bc = b * d.C + ch;
            const double gm = gamma ? gamma[ch] : 1.0;
            s1 += gm * ds[bc];
            s2 += gm * (dsx[bc] - mu * ds[bc]);
        }
        const double m1 = s1 * inv_n, m2 = rs * s2 * inv_n;
        const float q = (float)(-rs * rs * m2), r = (float)(-rs * m1 + rs * rs * m2 * mu);
        for (int64_t k = 0; k < d.Cg; k++) {
            const int64_t ch = g * d.Cg + k, off = (b * d.C + ch) * d.S;
            const float a = (float)rs * (gamma ? gamma[ch] : 1.0f);
            const float *xs = x + off, *dys = dy + off;
            float *gxs = gx + off;
            #pragma omp simd
            for (int64_t s = 0; s < d.S; s++) gxs[s] += a * dys[s] + q * xs[s] + r;
        }
    }
}

rx_status cpu_group_norm_bwd(rx_ctx *c, rx_node *n) {
    const gn_dims d = gn_dims_of(n);
    const float *x = n->in[0]->data, *dy = n->out->grad->data;
    const float *gamma = n->in[1] ? n->in[1]->data : NULL;
    const float *mean = n->saved[0]->data, *rstd = n->saved[1]->data;
    float *gx = cpu_in_grad(n, 0), *ggamma = cpu_in_grad(n, 1), *gbeta = cpu_in_grad(n, 2);
    const int64_t BC = d.B * d.C;

    // per (b,c): dsx = Σ_s dy x, ds = Σ_s dy
    double *dsx = scratch(c, (size_t)BC * sizeof(double)), *ds = scratch(c, (size_t)BC * sizeof(double));
    if (!dsx || !ds) return RX_ERR_OOM;
    const int par = n->in[0]->numel >= RX_OMP_MIN_WORK;
    #pragma omp parallel for schedule(static) if (par)
    for (int64_t bc = 0; bc < BC; bc++) sum_prod_and_sum(dy + bc * d.S, x + bc * d.S, d.S, &dsx[bc], &ds[bc]);

    // dgamma[c] = Σ_b rstd (dsx - mu ds),  dbeta[c] = Σ_b ds
    if (ggamma || gbeta) {
        for (int64_t ch = 0; ch < d.C; ch++) {
            double sg = 0, sb = 0;
            for (int64_t b = 0; b < d.B; b++) {
                const int64_t bg = b * d.G + ch / d.Cg, bc = b * d.C + ch;
                sg += rstd[bg] * (dsx[bc] - mean[bg] * ds[bc]);
                sb += ds[bc];
            }
            if (ggamma) ggamma[ch] += (float)sg;
            if (gbeta) gbeta[ch] += (float)sb;
        }
    }
    if (gx) group_norm_dx(&d, x, dy, gamma, mean, rstd, dsx, ds, par, gx);
    RX_TRY(scratch_free(c, dsx, (size_t)BC * sizeof(double)));
    return scratch_free(c, ds, (size_t)BC * sizeof(double));
}

// ----------------------------------------------------------------------------
// group_norm_silu: y = silu(z), z = (u - mu) rstd gamma + beta, u = x + shift[b,c] (shift constant
// over a channel's S elements). Same runs as group_norm; the statistics are u's, and neither u nor
// z is stored: per channel k of a group, z = x a_k + c_k with a_k = rstd gamma_k and
// c_k = (shift_k - mu) a_k + beta_k, so the backward recomputes z from x in the same loop.
//
// Backward per group, dz = dy σ(z) (1 + z (1 - σ(z))) (silu's derivative, as cpu_silu_bwd) and
// per channel ds_k = Σ_s dz, dd_k = Σ_s dz (u - mu); group_norm's backward with dz for dy:
//   m1 = Σ_k gamma_k ds_k / n,  m2 = rstd Σ_k gamma_k dd_k / n
//   du = a_k dz + q (u - mu) + r,  q = -rstd² m2,  r = -rstd m1;   dx = du
//   dshift_k = Σ_s du = a_k ds_k + q (Σ_s x + S (shift_k - mu)) + S r;   dgamma += Σ_b rstd dd_k,  dbeta += Σ_b ds_k

/* mean and rstd of u = x + shift over group (b,g) [Cg,S]: the shift moves each channel's sums */
static void gns_stats(const gn_dims *d, const float *xg, const float *tg, float eps, float *mean, float *rstd) {
    const int64_t n = d->Cg * d->S;
    double su = 0;
    for (int64_t k = 0; k < d->Cg; k++) su += sum_f(xg + k * d->S, d->S) + (tg ? (double)tg[k] * d->S : 0.0);
    const float mu = (float)(su / (double)n);
    double sv = 0;
    for (int64_t k = 0; k < d->Cg; k++) sv += sum_sq_dev(xg + k * d->S, d->S, mu - (tg ? tg[k] : 0.0f));
    *mean = mu;
    *rstd = (float)(1.0 / sqrt(sv / (double)n + eps));
}

rx_status cpu_group_norm_silu_fwd(rx_ctx *c, rx_node *n) {
    const gn_dims d = gn_dims_of(n);
    const float *x = n->in[0]->data;
    const float *gamma = n->in[1] ? n->in[1]->data : NULL, *beta = n->in[2] ? n->in[2]->data : NULL;
    const float *shift = n->in[3] ? n->in[3]->data : NULL;   // [B,C]
    float *y = n->out->data;
    RX_TRY(gn_save_stats(c, n, &d));
    float *mean = n->saved[0]->data, *rstd = n->saved[1]->data;

    #pragma omp parallel for schedule(static) if (n->in[0]->numel >= RX_OMP_MIN_WORK)
    for (int64_t bg = 0; bg < d.B * d.G; bg++) {
        const int64_t b = bg / d.G, g = bg % d.G;
        const float *xg = x + bg * d.Cg * d.S, *tg = shift ? shift + b * d.C + g * d.Cg : NULL;   // [Cg,S], [Cg]
        float *yg = y + bg * d.Cg * d.S;
        gns_stats(&d, xg, tg, n->f[0], &mean[bg], &rstd[bg]);
        for (int64_t k = 0; k < d.Cg; k++) {
            const int64_t ch = g * d.Cg + k;
            const float a = rstd[bg] * (gamma ? gamma[ch] : 1.0f);
            const float cz = ((tg ? tg[k] : 0.0f) - mean[bg]) * a + (beta ? beta[ch] : 0.0f);
            const float *xs = xg + k * d.S;
            float *ys = yg + k * d.S;
            #pragma omp simd
            for (int64_t s = 0; s < d.S; s++) {
                const float z = xs[s] * a + cz;
                ys[s] = z / (1.0f + exp_vec(-z));
            }
        }
    }
    return RX_OK;
}

/* dz [S] of one channel at the recomputed z = x a + cz, with Σ dz, Σ dz (u - mu) (u - mu = x + tm)
 * and Σ x */
static void gns_channel_dz(const float *xs, const float *dys, int64_t S, float a, float cz, float tm, float *dz,
                           double *ds, double *dd, double *sx) {
    double s1 = 0, s2 = 0, s3 = 0;
    for (int64_t i0 = 0; i0 < S; i0 += BLOCK) {
        const int64_t i1 = i0 + BLOCK < S ? i0 + BLOCK : S;
        float p = 0, q = 0, w = 0;
        #pragma omp simd reduction(+ : p, q, w)
        for (int64_t i = i0; i < i1; i++) {
            const float z = xs[i] * a + cz, sg = 1.0f / (1.0f + exp_vec(-z));
            const float v = dys[i] * sg * (1.0f + z * (1.0f - sg));
            dz[i] = v;
            p += v;
            q += v * (xs[i] + tm);
            w += xs[i];
        }
        s1 += p;
        s2 += q;
        s3 += w;
    }
    *ds = s1;
    *dd = s2;
    *sx = s3;
}

rx_status cpu_group_norm_silu_bwd(rx_ctx *c, rx_node *n) {
    const gn_dims d = gn_dims_of(n);
    float *gx = cpu_in_grad(n, 0), *ggamma = cpu_in_grad(n, 1), *gbeta = cpu_in_grad(n, 2), *gshift = cpu_in_grad(n, 3);
    if (!gx && !ggamma && !gbeta && !gshift) return RX_OK;
    const float *x = n->in[0]->data, *dy = n->out->grad->data;
    const float *gamma = n->in[1] ? n->in[1]->data : NULL, *beta = n->in[2] ? n->in[2]->data : NULL;
    const float *shift = n->in[3] ? n->in[3]->data : NULL;
    const float *mean = n->saved[0]->data, *rstd = n->saved[1]->data;
    const int64_t BC = d.B * d.C, run = d.Cg * d.S;
    const int nt = n->in[0]->numel >= RX_OMP_MIN_WORK ? omp_get_max_threads() : 1;

    // per (b,c): ds, dd, Σ x (double); per thread: the dz of the group it works on
    double *ds = scratch(c, (size_t)BC * sizeof(double)), *dd = scratch(c, (size_t)BC * sizeof(double));
    double *sx = scratch(c, (size_t)BC * sizeof(double));
    float *dz_all = scratch(c, (size_t)nt * run * sizeof(float));
    if (!ds || !dd || !sx || !dz_all) return RX_ERR_OOM;
    #pragma omp parallel num_threads(nt)
    {
        float *dz = dz_all + (int64_t)omp_get_thread_num() * run;
        #pragma omp for schedule(static)
        for (int64_t bg = 0; bg < d.B * d.G; bg++) {
            const int64_t b = bg / d.G, g = bg % d.G, off = bg * run;
            const float mu = mean[bg], rs = rstd[bg];
            double s1 = 0, s2 = 0;
            for (int64_t k = 0; k < d.Cg; k++) {
                const int64_t ch = g * d.Cg + k, bc = b * d.C + ch;
                const float tm = (shift ? shift[bc] : 0.0f) - mu, a = rs * (gamma ? gamma[ch] : 1.0f);
                const float cz = tm * a + (beta ? beta[ch] : 0.0f);
                gns_channel_dz(x + off + k * d.S, dy + off + k * d.S, d.S, a, cz, tm, dz + k * d.S, &ds[bc], &dd[bc],
                               &sx[bc]);
                const double gm = gamma ? gamma[ch] : 1.0;
                s1 += gm * ds[bc];
                s2 += gm * dd[bc];
            }
            if (!gx && !gshift) continue;
            const double m1 = s1 / (double)run, m2 = rs * s2 / (double)run;
            const float q = (float)(-(double)rs * rs * m2), r = (float)(-(double)rs * m1);
            for (int64_t k = 0; k < d.Cg; k++) {
                const int64_t ch = g * d.Cg + k, bc = b * d.C + ch;
                const float tm = (shift ? shift[bc] : 0.0f) - mu, a = rs * (gamma ? gamma[ch] : 1.0f);
                if (gshift) gshift[bc] += (float)(a * ds[bc] + q * (sx[bc] + (double)tm * d.S) + (double)r * d.S);
                if (!gx) continue;
                const float rk = q * tm + r;   // du = a dz + q x + rk
                const float *xs = x + off + k * d.S, *dzs = dz + k * d.S;
                float *gxs = gx + off + k * d.S;
                #pragma omp simd
                for (int64_t s = 0; s < d.S; s++) gxs[s] += a * dzs[s] + q * xs[s] + rk;
            }
        }
    }
    if (ggamma || gbeta) {
        for (int64_t ch = 0; ch < d.C; ch++) {
            double sg = 0, sb = 0;
            for (int64_t b = 0; b < d.B; b++) {
                const int64_t bg = b * d.G + ch / d.Cg, bc = b * d.C + ch;
                sg += rstd[bg] * dd[bc];
                sb += ds[bc];
            }
            if (ggamma) ggamma[ch] += (float)sg;
            if (gbeta) gbeta[ch] += (float)sb;
        }
    }
    RX_TRY(scratch_free(c, dz_all, (size_t)nt * run * sizeof(float)));
    RX_TRY(scratch_free(c, sx, (size_t)BC * sizeof(double)));
    RX_TRY(scratch_free(c, dd, (size_t)BC * sizeof(double)));
    return scratch_free(c, ds, (size_t)BC * sizeof(double));
}

// ----------------------------------------------------------------------------
// layer_norm: x [R,D] (R = product of leading dims); each row is a run of D elements.

rx_status cpu_layer_norm_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *xt = n->in[0];
    const int64_t D = xt->shape[xt->ndim - 1], R = xt->numel / D;
    const float eps = n->f[0];
    const float *x = xt->data;
    const float *gamma = n->in[1] ? n->in[1]->data : NULL, *beta = n->in[2] ? n->in[2]->data : NULL;
    float *y = n->out->data;
    rx_tensor *mean_t = rx_empty(c, RX_SHAPE(R)), *rstd_t = rx_empty(c, RX_SHAPE(R));
    if (!mean_t || !rstd_t) return c->err;
    n->saved[0] = mean_t;
    n->saved[1] = rstd_t;
    float *mean = mean_t->data, *rstd = rstd_t->data;

    #pragma omp parallel for schedule(static) if (xt->numel >= RX_OMP_MIN_WORK)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * D;
        float *yr = y + r * D;
        run_stats(xr, D, eps, &mean[r], &rstd[r]);
        const float mu = mean[r], rs = rstd[r];
        if (gamma || beta) {
            #pragma omp simd
            for (int64_t j = 0; j < D; j++)
                yr[j] = (xr[j] - mu) * rs * (gamma ? gamma[j] : 1.0f) + (beta ? beta[j] : 0.0f);
        } else {
            #pragma omp simd
            for (int64_t j = 0; j < D; j++) yr[j] = (xr[j] - mu) * rs;
        }
    }
    return RX_OK;
}

rx_status cpu_layer_norm_bwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *xt = n->in[0];
    const int64_t D = xt->shape[xt->ndim - 1], R = xt->numel / D;
    const float *x = xt->data, *dy = n->out->grad->data;
    const float *gamma = n->in[1] ? n->in[1]->data : NULL;
    const float *mean = n->saved[0]->data, *rstd = n->saved[1]->data;
    float *gx = cpu_in_grad(n, 0), *ggamma = cpu_in_grad(n, 1), *gbeta = cpu_in_grad(n, 2);

    // dgamma/dbeta are sums over rows: each thread owns a partial [2,D] in double, added at the end
    const int nt = xt->numel >= RX_OMP_MIN_WORK ? omp_get_max_threads() : 1;
    double *part = NULL;
    if (ggamma || gbeta) {
        part = scratch(c, (size_t)nt * 2 * D * sizeof(double));
        if (!part) return RX_ERR_OOM;
        for (int64_t i = 0; i < (int64_t)nt * 2 * D; i++) part[i] = 0;
    }
    float *dyg_all = gamma && gx ? scratch(c, (size_t)nt * D * sizeof(float)) : NULL;
    if (gamma && gx && !dyg_all) return RX_ERR_OOM;

    #pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num();
        double *pg = part ? part + (int64_t)t * 2 * D : NULL, *pb = pg ? pg + D : NULL;
        float *dyg = dyg_all ? dyg_all + (int64_t)t * D : NULL;
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++) {
            const float *xr = x + r * D, *dyr = dy + r * D;
            const float mu = mean[r], rs = rstd[r];
            if (pg) {
                for (int64_t j = 0; j < D; j++) {
                    pg[j] += (double)dyr[j] * ((xr[j] - mu) * rs);
                    pb[j] += dyr[j];
                }
            }
            if (!gx) continue;
            // dx = rstd (dyg - m1 - xhat m2), m1 = mean(dyg), m2 = mean(dyg xhat)
            const float *g = dyr;
            if (gamma) {
                #pragma omp simd
                for (int64_t j = 0; j < D; j++) dyg[j] = dyr[j] * gamma[j];
                g = dyg;
            }
            const float m1 = (float)(sum_f(g, D) / D);
            const float m2 = (float)(sum_prod_dev(g, xr, D, mu) * rs / D);
            float *gxr = gx + r * D;
            #pragma omp simd
            for (int64_t j = 0; j < D; j++) gxr[j] += rs * (g[j] - m1 - (xr[j] - mu) * rs * m2);
        }
    }
    if (part) {
        for (int64_t j = 0; j < D; j++) {
            double sg = 0, sb = 0;
            for (int t = 0; t < nt; t++) { sg += part[(int64_t)t * 2 * D + j]; sb += part[(int64_t)t * 2 * D + D + j]; }
            if (ggamma) ggamma[j] += (float)sg;
            if (gbeta) gbeta[j] += (float)sb;
        }
    }
    RX_TRY(scratch_free(c, dyg_all, dyg_all ? (size_t)nt * D * sizeof(float) : 0));
    return scratch_free(c, part, part ? (size_t)nt * 2 * D * sizeof(double) : 0);
}
