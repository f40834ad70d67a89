/* dense.c — CPU kernels of the GEMM-backed ops: conv2d (im2col + sgemm), linear, matmul.
 *
 * Threading: one pool, OpenMP's (the build links OpenBLAS's OpenMP variant, which keeps a
 * GEMM called from inside one of our parallel regions on the calling thread; see cpu.h).
 * The kernels split the work themselves:
 *   - many independent GEMMs (the images of a batch, the entries of a batched matmul):
 *     OpenMP over them, one whole GEMM per thread, per-thread workspaces;
 *   - one GEMM (linear, or a batch smaller than the team): its rows (or columns) split into
 *     one slab per thread.
 * Each op opens as few parallel regions as it can: on a loaded machine every region start
 * can cost a time slice. Workspaces (im2col columns, weight-gradient partials) come from
 * the step arena. */
#include "cpu.h"
#include <cblas.h>
#include <omp.h>
#include <string.h>

/* below ~1 MFLOP waking the team costs more than it saves */
static const double PARALLEL_MIN_FLOPS = 1e6;

/* true when OpenMP over `count` independent items of `flops` total work keeps every thread busy */
static int parallel_over(int64_t count, double flops) {
    const int nt = omp_get_max_threads();
    return nt > 1 && count >= nt && flops >= PARALLEL_MIN_FLOPS && !omp_in_parallel();
}

static void sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                B, ldb, beta, C, ldc);
}

/* C [M,N] = alpha op(A) op(B) + beta C with op(A) [M,K] (A stored [K,M] when ta), op(B) [K,N]
 * (B stored [N,K] when tb), on the whole team: the longer of M and N is cut into one slab per
 * thread (multiples of 16, the micro-kernel's tile), each a single-threaded sgemm. */
static void sgemm_split(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                        int ldb, float beta, float *C, int ldc) {
    const int nt = omp_get_max_threads();
    if (nt == 1 || omp_in_parallel() || 2.0 * M * N * K < PARALLEL_MIN_FLOPS || (M < 32 && N < 32)) {
        sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    const int by_rows = M >= N, len = by_rows ? M : N;
    #pragma omp parallel
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        const int lo = (int)((int64_t)len * t / T) & ~15, hi = t == T - 1 ? len : (int)((int64_t)len * (t + 1) / T) & ~15;
        if (hi > lo) {
            if (by_rows)   /* rows lo..hi of op(A) and of C */
                sgemm(ta, tb, hi - lo, N, K, alpha, ta ? A + lo : A + (int64_t)lo * lda, lda, B, ldb, beta,
                      C + (int64_t)lo * ldc, ldc);
            else           /* columns lo..hi of op(B) and of C */
                sgemm(ta, tb, M, hi - lo, K, alpha, A, lda, tb ? B + (int64_t)lo * ldb : B + lo, ldb, beta, C + lo, ldc);
        }
    }
}

/* C[i] = alpha op(A[i]) op(B[i]) + beta C[i] for i < count, row-major contiguous matrices
 * (shapes as in sgemm_split); sA, sB, sC: element strides between consecutive matrices. */
static void sgemm_batched(int64_t count, int ta, int tb, int M, int N, int K, float alpha, const float *A, int64_t sA,
                          const float *B, int64_t sB, float beta, float *C, int64_t sC) {
    if (count == 0 || M == 0 || N == 0) return;
    if (K == 0) {   /* empty sum: C = beta C (BLAS rejects a leading dimension of 0) */
        for (int64_t e = 0; e < count * M * N; e++) C[(e / (M * N)) * sC + e % (M * N)] *= beta;
        return;
    }
    const int lda = ta ? M : K, ldb = tb ? K : N;
    if (parallel_over(count, 2.0 * M * N * K * count)) {
        #pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < count; i++)
            sgemm(ta, tb, M, N, K, alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, N);
    } else {
        for (int64_t i = 0; i < count; i++)
            sgemm_split(ta, tb, M, N, K, alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, N);
    }
}

/* gb[o] += Σ_r g[r, o] for g [R, O] (R may be B·tokens). Each thread sums whole rows of its
 * share (contiguous reads; column blocks would defeat the prefetcher) in float, flushed to a
 * double accumulator every 64 rows; the partials are combined in thread order. */
static rx_status add_column_sums(rx_ctx *c, const float *g, int64_t R, int64_t O, float *gb) {
    enum { FLUSH_ROWS = 64 };
    const int T = R * O >= RX_OMP_MIN_WORK && !omp_in_parallel() ? omp_get_max_threads() : 1;
    rx_tensor *ws = rx_empty(c, RX_SHAPE(3 * T * O));   /* T·O doubles, then T·O floats */
    if (!ws) return c->err;
    double *acc_all = (double *)ws->data;
    float *row_all = ws->data + 2 * T * O;
    int teams = 1;
    #pragma omp parallel num_threads(T) if (T > 1)
    {
        const int t = omp_get_thread_num(), nth = omp_get_num_threads();
        if (t == 0) teams = nth;
        double *acc = acc_all + t * O;
        float *row = row_all + t * O;
        for (int64_t o = 0; o < O; o++) acc[o] = 0.0;
        for (int64_t r0 = R * t / nth, r_end = R * (t + 1) / nth; r0 < r_end; r0 += FLUSH_ROWS) {
            const int64_t r1 = r0 + FLUSH_ROWS < r_end ? r0 + FLUSH_ROWS : r_end;
            memset(row, 0, O * sizeof(float));
            for (int64_t r = r0; r < r1; r++)
                for (int64_t o = 0; o < O; o++) row[o] += g[r * O + o];
            for (int64_t o = 0; o < O; o++) acc[o] += row[o];
        }
    }
    for (int64_t o = 0; o < O; o++) {
        double s = 0;
        for (int t = 0; t < teams; t++) s += acc_all[t * O + o];
        gb[o] += (float)s;
    }
    return cpu_ws_free(c, ws);
}

/* ---- conv2d ---------------------------------------------------------------------------- */

/* The readable reference; the registered cpu_conv2d_fwd/_bwd (conv_onednn.c) run oneDNN's
 * convolutions instead when the build has them, and this when $RUNEXP_CPU_CONV=reference. */

typedef struct {
    int64_t B, Ci, H, W;       /* x [B,Ci,H,W]     */
    int64_t Co, kh, kw;        /* w [Co,Ci,kh,kw]  */
    int64_t Ho, Wo, stride, pad;
    int64_t K, P;              /* GEMM sizes: K = Ci·kh·kw (w as [Co,K]), P = Ho·Wo pixels */
} conv_geom;

static conv_geom conv_geom_of(const rx_node *n) {
    const rx_tensor *x = n->in[0], *w = n->in[1], *y = n->out;
    conv_geom g = {
        .B = x->shape[0], .Ci = x->shape[1], .H = x->shape[2], .W = x->shape[3],
        .Co = w->shape[0], .kh = w->shape[2], .kw = w->shape[3],
        .Ho = y->shape[2], .Wo = y->shape[3], .stride = n->i[0], .pad = n->i[1],
    };
    g.K = g.Ci * g.kh * g.kw;
    g.P = g.Ho * g.Wo;
    return g;
}

/* 1×1, stride 1, no padding: x [Ci,H·W] already is the column matrix — a plain GEMM */
static int conv_is_pointwise(const conv_geom *g) {
    return g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad == 0;
}

static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* output columns ow whose input column iw = ow·s - pad + j lies in [0, W): [*lo, *hi) */
static void conv_valid_cols(const conv_geom *g, int64_t j, int64_t *lo, int64_t *hi) {
    const int64_t s = g->stride;
    int64_t l = -floor_div(j - g->pad, s);             /* ceil((pad - j) / s) */
    int64_t h = floor_div(g->W - 1 + g->pad - j, s) + 1;
    *lo = l < 0 ? 0 : (l > g->Wo ? g->Wo : l);
    *hi = h > g->Wo ? g->Wo : (h < *lo ? *lo : h);
}

/* col [K, P] from one image x [Ci,H,W]:
 * col[(ci,i,j), (oh,ow)] = x[ci, oh·s - pad + i, ow·s - pad + j], zero outside the image */
static void im2col(const conv_geom *g, const float *x, float *col) {
    const int64_t s = g->stride, Wo = g->Wo, kk = g->kh * g->kw;
    #pragma omp parallel for schedule(static) if (!omp_in_parallel() && g->Ci > 1 && g->K * g->P >= RX_OMP_MIN_WORK)
    for (int64_t ci = 0; ci < g->Ci; ci++) {
        const float *xc = x + ci * g->H * g->W;
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                float *row = col + (ci * kk + i * g->kw + j) * g->P;
                int64_t lo, hi;
                conv_valid_cols(g, j, &lo, &hi);
                for (int64_t oh = 0; oh < g->Ho; oh++) {
                    float *dst = row + oh * Wo;
                    const int64_t ih = oh * s - g->pad + i;
                    if (ih < 0 || ih >= g->H) { memset(dst, 0, Wo * sizeof(float)); continue; }
                    const float *src = xc + ih * g->W - g->pad + j;   /* src[ow·s] = x[ci, ih, ow·s - pad + j] */
                    for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                    if (s == 1) memcpy(dst + lo, src + lo, (hi - lo) * sizeof(float));
                    else for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[ow * s];
                    for (int64_t ow = hi; ow < Wo; ow++) dst[ow] = 0.0f;
                }
            }
    }
}

/* the adjoint of im2col: gx [Ci,H,W] += scatter of col [K, P] (threads own channels, so no races) */
static void col2im_add(const conv_geom *g, const float *col, float *gx) {
    const int64_t s = g->stride, Wo = g->Wo, kk = g->kh * g->kw;
    #pragma omp parallel for schedule(static) if (!omp_in_parallel() && g->Ci > 1 && g->K * g->P >= RX_OMP_MIN_WORK)
    for (int64_t ci = 0; ci < g->Ci; ci++) {
        float *gc = gx + ci * g->H * g->W;
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const float *row = col + (ci * kk + i * g->kw + j) * g->P;
                int64_t lo, hi;
                conv_valid_cols(g, j, &lo, &hi);
                for (int64_t oh = 0; oh < g->Ho; oh++) {
                    const int64_t ih = oh * s - g->pad + i;
                    if (ih < 0 || ih >= g->H) continue;
                    const float *src = row + oh * Wo;
                    float *dst = gc + ih * g->W - g->pad + j;   /* dst[ow·s] = gx[ci, ih, ow·s - pad + j] */
                    if (s == 1) for (int64_t ow = lo; ow < hi; ow++) dst[ow] += src[ow];
                    else for (int64_t ow = lo; ow < hi; ow++) dst[ow * s] += src[ow];
                }
            }
    }
}

/* one image: y [Co,P] = w [Co,K] · col [K,P] + b. Inside the per-image team each call is
 * single-threaded; called alone (batch smaller than the team) im2col and the GEMM use the team. */
static void conv_fwd_image(const conv_geom *g, const float *x, const float *w, const float *bias, float *y, float *col) {
    const float *cols = x;
    if (col) { im2col(g, x, col); cols = col; }
    if (bias)   /* y starts as the bias, the GEMM adds into it: one pass over y */
        for (int64_t co = 0; co < g->Co; co++)
            for (int64_t p = 0; p < g->P; p++) y[co * g->P + p] = bias[co];
    sgemm_split(0, 0, g->Co, g->P, g->K, 1.0f, w, g->K, cols, g->P, bias ? 1.0f : 0.0f, y, g->P);
}

/* the workspace the two kernels below take, in floats (kernels/plan.c places it): per thread (when
 * the batch spreads over the threads) a column matrix [K,P], none for a pointwise conv; backward
 * adds the gw [Co,K] partials of threads > 0 and a double gb [Co] partial per thread */
int64_t cpu_conv2d_reference_workspace(const rx_node *n, int backward) {
    const conv_geom g = conv_geom_of(n);
    const int slots = parallel_over(g.B, 2.0 * g.B * g.Co * g.K * g.P) ? omp_get_max_threads() : 1;
    int64_t floats = conv_is_pointwise(&g) ? 0 : slots * g.K * g.P;
    if (backward) floats += (slots - 1) * g.Co * g.K + slots * 2 * g.Co;
    return floats;
}

rx_status cpu_conv2d_reference_fwd(rx_ctx *c, rx_node *n) {
    const conv_geom g = conv_geom_of(n);
    const float *x = n->in[0]->data, *w = n->in[1]->data, *bias = n->in[2] ? n->in[2]->data : NULL;
    float *y = n->out->data;
    if (n->out->numel == 0) return RX_OK;
    const int par = parallel_over(g.B, 2.0 * g.B * g.Co * g.K * g.P), slots = par ? omp_get_max_threads() : 1;
    float *col = NULL;
    rx_tensor *ws = NULL;
    if (!conv_is_pointwise(&g)) {
        ws = rx_empty(c, RX_SHAPE(slots, g.K * g.P));   /* one column matrix per thread */
        if (!ws) return c->err;
        col = ws->data;
    }
    #pragma omp parallel for schedule(static) if (par)
    for (int64_t b = 0; b < g.B; b++)
        conv_fwd_image(&g, x + b * g.Ci * g.H * g.W, w, bias, y + b * g.Co * g.P,
                       col ? col + omp_get_thread_num() * g.K * g.P : NULL);
    return cpu_ws_free(c, ws);
}

/* one image's backward, into this thread's accumulators:
 *   gb [Co] += Σ_p gy [Co,P]                       (double)
 *   gw [Co,K] += gy [Co,P] · colᵀ [P,K]
 *   gx [Ci,H,W] += col2im(wᵀ [K,Co] · gy [Co,P])   (pointwise: the GEMM adds into gx directly) */
static void conv_bwd_image(const conv_geom *g, const float *x, const float *w, const float *gy, float *gx, float *gw,
                           double *gb, float *col) {
    if (gb)
        for (int64_t co = 0; co < g->Co; co++) {
            float s = 0;   /* P ≤ a few thousand terms per image: float is enough here */
            for (int64_t p = 0; p < g->P; p++) s += gy[co * g->P + p];
            gb[co] += s;
        }
    if (gw) {
        const float *cols = x;
        if (col) { im2col(g, x, col); cols = col; }
        sgemm_split(0, 1, g->Co, g->K, g->P, 1.0f, gy, g->P, cols, g->P, 1.0f, gw, g->K);
    }
    if (gx) {
        if (!col) {
            sgemm_split(1, 0, g->K, g->P, g->Co, 1.0f, w, g->K, gy, g->P, 1.0f, gx, g->P);
            return;
        }
        sgemm_split(1, 0, g->K, g->P, g->Co, 1.0f, w, g->K, gy, g->P, 0.0f, col, g->P);
        col2im_add(g, col, gx);
    }
}

rx_status cpu_conv2d_reference_bwd(rx_ctx *c, rx_node *n) {
    const conv_geom g = conv_geom_of(n);
    const float *x = n->in[0]->data, *w = n->in[1]->data, *gy = n->out->grad->data;
    float *gx = cpu_in_grad(n, 0), *gw = cpu_in_grad(n, 1), *gb = cpu_in_grad(n, 2);
    if (n->out->numel == 0 || (!gx && !gw && !gb)) return RX_OK;
    const int par = parallel_over(g.B, 2.0 * g.B * g.Co * g.K * g.P), slots = par ? omp_get_max_threads() : 1;
    /* per thread: a column matrix; for threads t > 0 a gw partial [Co,K] (thread 0 adds into gw
     * itself); for every thread a gb partial [Co] in double (two floats each) */
    float *col = NULL, *gw_part = NULL;
    double *gb_part = NULL;
    rx_tensor *ws_col = NULL, *ws_gw = NULL, *ws_gb = NULL;   /* given back in reverse order */
    if (!conv_is_pointwise(&g) && (gx || gw)) {
        ws_col = rx_empty(c, RX_SHAPE(slots, g.K * g.P));
        if (!ws_col) return c->err;
        col = ws_col->data;
    }
    if (gw && slots > 1) {
        ws_gw = rx_empty(c, RX_SHAPE(slots - 1, g.Co * g.K));
        if (!ws_gw) return c->err;
        gw_part = ws_gw->data;
    }
    if (gb) {
        ws_gb = rx_empty(c, RX_SHAPE(slots, 2 * g.Co));   /* 64-byte aligned: fine for double */
        if (!ws_gb) return c->err;
        gb_part = (double *)ws_gb->data;
    }
    int teams = 1;
    #pragma omp parallel if (par)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        float *my_gw = gw && t > 0 ? gw_part + (t - 1) * g.Co * g.K : gw;
        double *my_gb = gb ? gb_part + t * g.Co : NULL;
        if (t > 0 && my_gw) memset(my_gw, 0, g.Co * g.K * sizeof(float));
        if (my_gb) memset(my_gb, 0, g.Co * sizeof(double));
        if (t == 0) teams = T;
        for (int64_t b = g.B * t / T; b < g.B * (t + 1) / T; b++)
            conv_bwd_image(&g, x + b * g.Ci * g.H * g.W, w, gy + b * g.Co * g.P, gx ? gx + b * g.Ci * g.H * g.W : NULL,
                           my_gw, my_gb, col ? col + t * g.K * g.P : NULL);
    }
    /* the partials are small next to the GEMMs: summed here, without another parallel region */
    for (int t = 1; t < teams && gw; t++) {
        const float *part = gw_part + (t - 1) * g.Co * g.K;
        for (int64_t e = 0; e < g.Co * g.K; e++) gw[e] += part[e];
    }
    if (gb)
        for (int64_t co = 0; co < g.Co; co++) {
            double s = 0;
            for (int t = 0; t < teams; t++) s += gb_part[t * g.Co + co];
            gb[co] += (float)s;
        }
    RX_TRY(cpu_ws_free(c, ws_gb));
    RX_TRY(cpu_ws_free(c, ws_gw));
    return cpu_ws_free(c, ws_col);
}

/* ---- linear ------------------------------------------------------------------------------ */

/* x [R, in] (R = all leading dims), w [out, in]: y [R, out] = x wᵀ + b */
rx_status cpu_linear_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    const int64_t in = w->shape[1], out = w->shape[0], R = x->numel / in;
    float *y = n->out->data;
    if (b) {   /* y starts as the bias rows; the GEMM adds x wᵀ */
        const float *bd = b->data;
        for (int64_t r = 0; r < R; r++) memcpy(y + r * out, bd, out * sizeof(float));
    }
    sgemm_batched(1, 0, 1, R, out, in, 1.0f, x->data, 0, w->data, 0, b ? 1.0f : 0.0f, y, 0);
    return RX_OK;
}

/* gx [R,in] += gy [R,out] · w [out,in];  gw [out,in] += gyᵀ [out,R] · x [R,in];  gb += Σ_r gy[r] */
rx_status cpu_linear_bwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *x = n->in[0], *w = n->in[1];
    const int64_t in = w->shape[1], out = w->shape[0], R = x->numel / in;
    const float *gy = n->out->grad->data;
    float *gx = cpu_in_grad(n, 0), *gw = cpu_in_grad(n, 1), *gb = cpu_in_grad(n, 2);
    if (gx) sgemm_batched(1, 0, 0, R, in, out, 1.0f, gy, 0, w->data, 0, 1.0f, gx, 0);
    if (gw) sgemm_batched(1, 1, 0, out, in, R, 1.0f, gy, 0, x->data, 0, 1.0f, gw, 0);
    if (gb) RX_TRY(add_column_sums(c, gy, R, out, gb));
    return RX_OK;
}

/* ---- matmul ------------------------------------------------------------------------------ */

typedef struct { int64_t batch, M, N, K; int ta, tb; } matmul_geom;

static matmul_geom matmul_geom_of(const rx_node *n) {
    const rx_tensor *a = n->in[0], *y = n->out;
    const int nd = a->ndim;
    matmul_geom g = {.batch = 1, .M = y->shape[nd - 2], .N = y->shape[nd - 1], .ta = (int)n->i[0], .tb = (int)n->i[1]};
    g.K = g.ta ? a->shape[nd - 2] : a->shape[nd - 1];
    for (int d = 0; d < nd - 2; d++) g.batch *= y->shape[d];
    return g;
}

/* y [.., M, N] = op(a) [.., M, K] · op(b) [.., K, N] */
rx_status cpu_matmul_fwd(rx_ctx *c, rx_node *n) {
    const matmul_geom g = matmul_geom_of(n);
    sgemm_batched(g.batch, g.ta, g.tb, g.M, g.N, g.K, 1.0f, n->in[0]->data, g.M * g.K, n->in[1]->data, g.K * g.N,
                  0.0f, n->out->data, g.M * g.N);
    return RX_OK;
}

/* With A = op(a), B = op(b): gA = gy Bᵀ, gB = Aᵀ gy; a stored transposed gets gAᵀ = B gyᵀ,
 * b stored transposed gets gBᵀ = gyᵀ A. Each case is one sgemm on the stored matrices. */
rx_status cpu_matmul_bwd(rx_ctx *c, rx_node *n) {
    const matmul_geom g = matmul_geom_of(n);
    const float *a = n->in[0]->data, *b = n->in[1]->data, *gy = n->out->grad->data;
    float *ga = cpu_in_grad(n, 0), *gb = cpu_in_grad(n, 1);
    const int64_t sa = g.M * g.K, sb = g.K * g.N, sy = g.M * g.N;
    if (ga) {
        if (!g.ta) sgemm_batched(g.batch, 0, !g.tb, g.M, g.K, g.N, 1.0f, gy, sy, b, sb, 1.0f, ga, sa);  /* [M,K] */
        else       sgemm_batched(g.batch, g.tb, 1, g.K, g.M, g.N, 1.0f, b, sb, gy, sy, 1.0f, ga, sa);   /* [K,M] */
    }
    if (gb) {
        if (!g.tb) sgemm_batched(g.batch, !g.ta, 0, g.K, g.N, g.M, 1.0f, a, sa, gy, sy, 1.0f, gb, sb);  /* [K,N] */
        else       sgemm_batched(g.batch, 1, g.ta, g.N, g.K, g.M, 1.0f, gy, sy, a, sa, 1.0f, gb, sb);   /* [N,K] */
    }
    return RX_OK;
}

