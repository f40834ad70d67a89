/* Dense ops: conv2d, linear, matmul — forward and backward.
 * References: naive loops in double precision written out here from the definitions
 * (PyTorch Conv2d = cross-correlation, Linear y = x wᵀ + b, matmul with transposes),
 * a PyTorch fixture (tests/fixtures/ops_dense.json from gen_ops_dense.py: torch float64),
 * and central finite differences (gradcheck.h). Every conv shape runs with 1 and 2 OpenMP
 * threads so that both the sequential (threaded BLAS) and the per-image paths are checked. */
#include <jansson.h>
#include <omp.h>
#include "gradcheck.h"

static rx_tensor *param_randn(rx_ctx *c, int ndim, const int64_t *shape, uint64_t seed, float scale) {
    rx_tensor *t = rx_param(c, NULL, ndim, shape, 1);
    cr_assert(t, "%s", rx_last_error());
    rx_test_randn(c, t, seed, scale);
    return t;
}

static float *host(rx_ctx *c, const rx_tensor *t) {
    float *h = malloc(t->numel * sizeof(float));
    cr_assert_eq(rx_tensor_to_host(c, t, h), RX_OK);
    return h;
}

/* max |a - ref| / max |ref| against a double reference */
static double rel_err_d(const float *a, const double *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - ref[i]);
        if (d > num || d != d) num = d;
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    return num / (den > 1e-30 ? den : 1e-30);
}

/* ---- conv2d reference -------------------------------------------------------------------- */

typedef struct { int B, Ci, H, W, Co, kh, kw, stride, pad, bias; } conv_case;

static int conv_ho(const conv_case *k) { return (k->H + 2 * k->pad - k->kh) / k->stride + 1; }
static int conv_wo(const conv_case *k) { return (k->W + 2 * k->pad - k->kw) / k->stride + 1; }

/* y[b,co,oh,ow] = b[co] + Σ_{ci,i,j} w[co,ci,i,j] x[b,ci,oh·s-p+i, ow·s-p+j] (zero outside);
 * with gy given, the adjoints: gx[b,ci,ih,iw] = Σ gy·w, gw[co,ci,i,j] = Σ gy·x, gb[co] = Σ gy. */
static void conv_ref(const conv_case *k, const float *x, const float *w, const float *b, const float *gy, double *y,
                     double *gx, double *gw, double *gb) {
    const int Ho = conv_ho(k), Wo = conv_wo(k);
    if (gx) memset(gx, 0, sizeof(double) * k->B * k->Ci * k->H * k->W);
    if (gw) memset(gw, 0, sizeof(double) * k->Co * k->Ci * k->kh * k->kw);
    if (gb) memset(gb, 0, sizeof(double) * k->Co);
    for (int bi = 0; bi < k->B; bi++)
        for (int co = 0; co < k->Co; co++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    const int yi = ((bi * k->Co + co) * Ho + oh) * Wo + ow;
                    double acc = b ? b[co] : 0.0;
                    if (gb) gb[co] += gy[yi];
                    for (int ci = 0; ci < k->Ci; ci++)
                        for (int i = 0; i < k->kh; i++)
                            for (int j = 0; j < k->kw; j++) {
                                const int ih = oh * k->stride - k->pad + i, iw = ow * k->stride - k->pad + j;
                                if (ih < 0 || ih >= k->H || iw < 0 || iw >= k->W) continue;
                                const int xi = ((bi * k->Ci + ci) * k->H + ih) * k->W + iw;
                                const int wi = ((co * k->Ci + ci) * k->kh + i) * k->kw + j;
                                acc += (double)w[wi] * x[xi];
                                if (gx) gx[xi] += (double)gy[yi] * w[wi];
                                if (gw) gw[wi] += (double)gy[yi] * x[xi];
                            }
                    if (y) y[yi] = acc;
                }
}

static const conv_case conv_cases[] = {
    {3, 5, 7, 9, 4, 3, 3, 2, 1, 1},   /* the odd one: stride 2, pad 1 */
    {2, 6, 5, 3, 5, 1, 1, 1, 0, 1},   /* pointwise: a plain GEMM, no im2col */
    {4, 3, 8, 8, 8, 3, 3, 1, 1, 0},   /* 3×3 same, no bias */
    {2, 2, 6, 5, 3, 5, 3, 1, 2, 1},   /* non-square 5×3 kernel, pad 2 */
    {3, 4, 7, 7, 2, 1, 1, 2, 0, 1},   /* 1×1 stride 2: goes through im2col */
    {1, 16, 6, 6, 4, 3, 3, 1, 1, 1},  /* B = 1 */
    {2, 3, 8, 6, 4, 4, 4, 2, 1, 1},   /* even kernel, stride 2 (down-sampling) */
    {2, 2, 10, 11, 3, 3, 3, 3, 0, 0}, /* stride 3 leaves a ragged edge */
};
enum { N_CONV_CASES = sizeof conv_cases / sizeof conv_cases[0] };
/* above the 1 MFLOP per call where cpu/dense.c starts running images on separate threads
 * (per-thread im2col buffers and weight-gradient partials), or, for one image, cutting each
 * GEMM into per-thread slabs */
static const conv_case conv_cases_threaded[] = {
    {4, 16, 15, 17, 12, 3, 3, 1, 1, 1},
    {3, 64, 9, 11, 32, 1, 1, 1, 0, 1},
    {3, 16, 17, 15, 24, 3, 3, 2, 1, 0},
    {2, 8, 12, 9, 20, 5, 3, 1, 2, 1},
    {3, 32, 16, 16, 32, 3, 3, 1, 1, 1},   /* U-Net-like layer: long GEMM sums */
    {1, 32, 16, 16, 40, 3, 3, 1, 1, 1},   /* one image: its GEMMs are cut into per-thread slabs */
    {1, 48, 9, 9, 24, 1, 1, 1, 0, 1},     /* one image, pointwise (K=48 < P=81 rows: cut by columns) */
};
enum { N_CONV_CASES_THREADED = sizeof conv_cases_threaded / sizeof conv_cases_threaded[0] };

typedef struct { int stride, pad; } conv_args;

static rx_tensor *f_conv(rx_ctx *c, rx_tensor **in, void *ud) {
    const conv_args *a = ud;
    return rx_conv2d(c, in[0], in[1], in[2], a->stride, a->pad);
}

static void make_conv(rx_ctx *c, const conv_case *k, uint64_t seed, rx_tensor **in) {
    in[0] = param_randn(c, RX_SHAPE(k->B, k->Ci, k->H, k->W), seed, 1.0f);
    in[1] = param_randn(c, RX_SHAPE(k->Co, k->Ci, k->kh, k->kw), seed + 1, 0.5f);
    in[2] = k->bias ? param_randn(c, RX_SHAPE(k->Co), seed + 2, 1.0f) : NULL;
}

/* forward and all three gradients against conv_ref, with gradients pre-filled with 1 so that
 * a kernel that overwrites instead of adding is caught */
static void check_conv_case(const conv_case *k, int threads) {
    omp_set_num_threads(threads);
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[3];
    make_conv(c, k, 100 + threads, in);
    for (int j = 0; j < 3; j++) if (in[j]) rx_tensor_fill(c, in[j]->grad, 1.0f);
    rx_tensor *y = rx_conv2d(c, in[0], in[1], in[2], k->stride, k->pad);
    cr_assert(y, "%s", rx_last_error());
    const int Ho = conv_ho(k), Wo = conv_wo(k);
    cr_assert(y->ndim == 4 && y->shape[0] == k->B && y->shape[1] == k->Co && y->shape[2] == Ho && y->shape[3] == Wo,
              "y %s", RX_SHAPE_STR(y));
    const int64_t ny = y->numel, nx = in[0]->numel, nw = in[1]->numel;
    float *gy = malloc(ny * sizeof(float));
    rx_rng_normal(7, RX_STREAM(RX_RNG_TEST, 1), 0, gy, ny);
    rx_tensor *seed = rx_from_host(c, RX_SHAPE(k->B, k->Co, Ho, Wo), gy);
    float *x = host(c, in[0]), *w = host(c, in[1]), *b = in[2] ? host(c, in[2]) : NULL, *yh = host(c, y);
    cr_assert_eq(rx_backward_with(c, y, seed), RX_OK, "%s", rx_last_error());
    double *yr = malloc(ny * sizeof(double)), *gxr = malloc(nx * sizeof(double)), *gwr = malloc(nw * sizeof(double));
    double *gbr = malloc(k->Co * sizeof(double));
    conv_ref(k, x, w, b, gy, yr, gxr, gwr, gbr);
    for (int64_t i = 0; i < nx; i++) gxr[i] += 1.0;
    for (int64_t i = 0; i < nw; i++) gwr[i] += 1.0;
    for (int i = 0; i < k->Co; i++) gbr[i] += 1.0;
    float *gx = host(c, in[0]->grad), *gw = host(c, in[1]->grad);
#define CONV_EXPECT(name, e) cr_expect((e) < 2e-6, "conv B=%d Ci=%d %dx%d Co=%d k=%dx%d s=%d p=%d threads=%d: %s rel err %g", k->B, k->Ci, k->H, k->W, k->Co, k->kh, k->kw, k->stride, \
                                       k->pad, threads, name, (e))
    CONV_EXPECT("y", rel_err_d(yh, yr, ny));
    CONV_EXPECT("gx", rel_err_d(gx, gxr, nx));
    CONV_EXPECT("gw", rel_err_d(gw, gwr, nw));
    if (b) {
        float *gb = host(c, in[2]->grad);
        CONV_EXPECT("gb", rel_err_d(gb, gbr, k->Co));
        free(gb);
    }
#undef CONV_EXPECT
    free(gy); free(x); free(w); free(b); free(yh); free(yr); free(gxr); free(gwr); free(gbr); free(gx); free(gw);
    rx_ctx_destroy(c);
}

Test(ops_dense, conv2d_matches_reference_one_thread) {
    for (int i = 0; i < N_CONV_CASES; i++) check_conv_case(&conv_cases[i], 1);
}

Test(ops_dense, conv2d_matches_reference_two_threads) {
    for (int i = 0; i < N_CONV_CASES; i++) check_conv_case(&conv_cases[i], 2);
}

Test(ops_dense, conv2d_threaded_sizes_match_reference) {
    for (int i = 0; i < N_CONV_CASES_THREADED; i++) {
        check_conv_case(&conv_cases_threaded[i], 2);
        check_conv_case(&conv_cases_threaded[i], 1);
    }
}

Test(ops_dense, conv2d_gradcheck) {
    rx_ctx *c = rx_test_cpu_ctx();
    const int picks[] = {0, 1, 3, 6};   /* stride 2 pad 1; pointwise; 5×3 pad 2; 4×4 stride 2 */
    for (size_t p = 0; p < sizeof picks / sizeof picks[0]; p++) {
        const conv_case *k = &conv_cases[picks[p]];
        rx_tensor *in[3];
        make_conv(c, k, 200 + p, in);
        conv_args a = {k->stride, k->pad};
        rx_gradcheck(c, f_conv, &a, 3, in, 1e-2, 2e-3, 2e-3, 60);
    }
    rx_ctx_destroy(c);
}

/* ---- linear ------------------------------------------------------------------------------ */

static rx_tensor *f_linear(rx_ctx *c, rx_tensor **in, void *ud) { return rx_linear(c, in[0], in[1], in[2]); }

/* y[r,o] = b[o] + Σ_i x[r,i] w[o,i]; gx = gy w, gw = gyᵀ x, gb = Σ_r gy; x [L0,L1,I] */
static void check_linear(int L0, int L1, int I, int O, int threads) {
    omp_set_num_threads(threads);
    rx_ctx *c = rx_test_cpu_ctx();
    const int R = L0 * L1;
    rx_tensor *x = param_randn(c, RX_SHAPE(L0, L1, I), 1, 1.0f), *w = param_randn(c, RX_SHAPE(O, I), 2, 0.5f),
              *b = param_randn(c, RX_SHAPE(O), 3, 1.0f);
    rx_tensor_fill(c, x->grad, 1.0f);
    rx_tensor_fill(c, w->grad, 1.0f);
    rx_tensor_fill(c, b->grad, 1.0f);
    rx_tensor *y = rx_linear(c, x, w, b);
    cr_assert(y, "%s", rx_last_error());
    cr_assert(y->ndim == 3 && y->shape[0] == L0 && y->shape[1] == L1 && y->shape[2] == O, "y %s", RX_SHAPE_STR(y));
    float *gy = malloc(R * O * sizeof(float));
    rx_rng_normal(9, RX_STREAM(RX_RNG_TEST, 2), 0, gy, R * O);
    float *xh = host(c, x), *wh = host(c, w), *bh = host(c, b), *yh = host(c, y);
    cr_assert_eq(rx_backward_with(c, y, rx_from_host(c, RX_SHAPE(L0, L1, O), gy)), RX_OK, "%s", rx_last_error());
    double *yr = malloc(R * O * sizeof(double)), *gxr = malloc(R * I * sizeof(double)),
           *gwr = malloc(O * I * sizeof(double)), *gbr = malloc(O * sizeof(double));
    for (int i = 0; i < R * I; i++) gxr[i] = 1.0;
    for (int i = 0; i < O * I; i++) gwr[i] = 1.0;
    for (int o = 0; o < O; o++) gbr[o] = 1.0;
    for (int r = 0; r < R; r++)
        for (int o = 0; o < O; o++) {
            double acc = bh[o];
            for (int i = 0; i < I; i++) {
                acc += (double)xh[r * I + i] * wh[o * I + i];
                gxr[r * I + i] += (double)gy[r * O + o] * wh[o * I + i];
                gwr[o * I + i] += (double)gy[r * O + o] * xh[r * I + i];
            }
            yr[r * O + o] = acc;
            gbr[o] += gy[r * O + o];
        }
    float *gx = host(c, x->grad), *gw = host(c, w->grad), *gb = host(c, b->grad);
    cr_expect_lt(rel_err_d(yh, yr, R * O), 2e-6, "linear R=%d I=%d O=%d threads=%d: y", R, I, O, threads);
    cr_expect_lt(rel_err_d(gx, gxr, R * I), 2e-6, "linear R=%d I=%d O=%d threads=%d: gx", R, I, O, threads);
    cr_expect_lt(rel_err_d(gw, gwr, O * I), 2e-6, "linear R=%d I=%d O=%d threads=%d: gw", R, I, O, threads);
    cr_expect_lt(rel_err_d(gb, gbr, O), 2e-6, "linear R=%d I=%d O=%d threads=%d: gb", R, I, O, threads);
    free(gy); free(xh); free(wh); free(bh); free(yh); free(yr); free(gxr); free(gwr); free(gbr);
    free(gx); free(gw); free(gb);
    rx_ctx_destroy(c);
}

Test(ops_dense, linear_matches_reference) {
    check_linear(2, 3, 7, 5, 2);
    /* 2·200·64·48 flops: above the 1 MFLOP where one GEMM is cut into per-thread slabs */
    check_linear(4, 50, 64, 48, 2);
    check_linear(4, 50, 64, 48, 1);
    check_linear(2, 10, 48, 640, 2);   /* more columns than rows: cut by columns */
    check_linear(8, 100, 16, 96, 2);   /* bias gradient over 800 rows: summed by both threads */
}

Test(ops_dense, linear_gradcheck) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[3] = {param_randn(c, RX_SHAPE(3, 2, 5), 11, 1.0f), param_randn(c, RX_SHAPE(4, 5), 12, 0.5f),
                        param_randn(c, RX_SHAPE(4), 13, 1.0f)};
    rx_gradcheck(c, f_linear, NULL, 3, in, 1e-2, 2e-3, 2e-3, 100);
    /* a single vector x [5] (no leading dims), no bias */
    rx_tensor *v[3] = {param_randn(c, RX_SHAPE(5), 14, 1.0f), in[1], NULL};
    rx_gradcheck(c, f_linear, NULL, 3, v, 1e-2, 2e-3, 2e-3, 100);
    rx_ctx_destroy(c);
}

/* ---- matmul ------------------------------------------------------------------------------ */

typedef struct { int ta, tb; } mm_args;

static rx_tensor *f_matmul(rx_ctx *c, rx_tensor **in, void *ud) {
    const mm_args *a = ud;
    return rx_matmul(c, in[0], in[1], a->ta, a->tb);
}

/* backward against the double reference for shapes too big for finite differences:
 * with A = op(a), B = op(b), gy random: gA = gy Bᵀ, gB = Aᵀ gy, mapped back through the transposes */
static void check_matmul_grads(rx_ctx *c, rx_tensor **in, int ta, int tb, int64_t nb, int64_t M, int64_t K, int64_t N) {
    for (int j = 0; j < 2; j++) rx_tensor_fill(c, in[j]->grad, 0.0f);
    rx_tensor *y = rx_matmul(c, in[0], in[1], ta, tb);
    cr_assert(y, "%s", rx_last_error());
    float *gy = malloc(y->numel * sizeof(float));
    rx_rng_normal(5, RX_STREAM(RX_RNG_TEST, 3), 0, gy, y->numel);
    cr_assert_eq(rx_backward_with(c, y, rx_from_host(c, y->ndim, y->shape, gy)), RX_OK, "%s", rx_last_error());
    float *a = host(c, in[0]), *b = host(c, in[1]), *ga = host(c, in[0]->grad), *gb = host(c, in[1]->grad);
    double *gar = calloc(nb * M * K, sizeof(double)), *gbr = calloc(nb * K * N, sizeof(double));
    for (int64_t n = 0; n < nb; n++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t p = 0; p < N; p++) {
                const double g = gy[(n * M + m) * N + p];
                for (int64_t k = 0; k < K; k++) {
                    const int64_t ia = n * M * K + (ta ? k * M + m : m * K + k);
                    const int64_t ib = n * K * N + (tb ? p * K + k : k * N + p);
                    gar[ia] += g * b[ib];
                    gbr[ib] += g * a[ia];
                }
            }
    cr_expect_lt(rel_err_d(ga, gar, nb * M * K), 2e-6, "matmul ta=%d tb=%d M=%lld K=%lld N=%lld: ga", ta, tb,
                 (long long)M, (long long)K, (long long)N);
    cr_expect_lt(rel_err_d(gb, gbr, nb * K * N), 2e-6, "matmul ta=%d tb=%d M=%lld K=%lld N=%lld: gb", ta, tb,
                 (long long)M, (long long)K, (long long)N);
    free(gy); free(a); free(b); free(ga); free(gb); free(gar); free(gbr);
}

/* y[n,m,p] = Σ_k A[n,m,k] B[n,k,p] with A = a or aᵀ, B = b or bᵀ per batch entry */
static void check_matmul(int ta, int tb, int nd, const int64_t *batch, int64_t M, int64_t K, int64_t N, int threads) {
    omp_set_num_threads(threads);
    rx_ctx *c = rx_test_cpu_ctx();
    int64_t sa[4], sb[4], nb = 1;
    for (int d = 0; d < nd - 2; d++) { sa[d] = sb[d] = batch[d]; nb *= batch[d]; }
    sa[nd - 2] = ta ? K : M; sa[nd - 1] = ta ? M : K;
    sb[nd - 2] = tb ? N : K; sb[nd - 1] = tb ? K : N;
    rx_tensor *in[2] = {param_randn(c, nd, sa, 21, 1.0f), param_randn(c, nd, sb, 22, 1.0f)};
    rx_tensor *y = rx_matmul(c, in[0], in[1], ta, tb);
    cr_assert(y, "%s", rx_last_error());
    cr_assert(y->ndim == nd && y->shape[nd - 2] == M && y->shape[nd - 1] == N, "y %s", RX_SHAPE_STR(y));
    float *a = host(c, in[0]), *b = host(c, in[1]), *yh = host(c, y);
    double *yr = malloc(nb * M * N * sizeof(double));
    for (int64_t n = 0; n < nb; n++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t p = 0; p < N; p++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++) {
                    const float av = ta ? a[n * M * K + k * M + m] : a[n * M * K + m * K + k];
                    const float bv = tb ? b[n * K * N + p * K + k] : b[n * K * N + k * N + p];
                    acc += (double)av * bv;
                }
                yr[(n * M + m) * N + p] = acc;
            }
    cr_expect_lt(rel_err_d(yh, yr, nb * M * N), 2e-6, "matmul ta=%d tb=%d nd=%d M=%lld threads=%d", ta, tb, nd,
                 (long long)M, threads);
    rx_step_end(c);
    mm_args args = {ta, tb};
    if (M * K * N <= 1000) rx_gradcheck(c, f_matmul, &args, 2, in, 1e-2, 2e-3, 2e-3, 200);
    else check_matmul_grads(c, in, ta, tb, nb, M, K, N);
    free(a); free(b); free(yh); free(yr);
    rx_ctx_destroy(c);
}

Test(ops_dense, matmul_all_transposes_2d_3d_4d) {
    const int64_t b3[] = {3}, b4[] = {2, 3};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_matmul(ta, tb, 2, NULL, 4, 5, 3, 2);
            check_matmul(ta, tb, 3, b3, 4, 5, 3, 2);
            check_matmul(ta, tb, 3, b3, 4, 5, 3, 1);
            check_matmul(ta, tb, 4, b4, 4, 5, 3, 2);
            /* 4 × 2·48·40·56 flops: above the 1 MFLOP where batch entries run on separate threads */
            check_matmul(ta, tb, 4, b4, 48, 40, 56, 2);
            /* one GEMM above 1 MFLOP: cut into per-thread slabs of rows, or of columns */
            check_matmul(ta, tb, 2, NULL, 600, 64, 20, 2);
            check_matmul(ta, tb, 2, NULL, 20, 64, 600, 2);
        }
}

/* ---- PyTorch fixture ----------------------------------------------------------------------- */

static rx_tensor *fixture_param(rx_ctx *c, json_t *cs, const char *key) {
    json_t *t = json_object_get(cs, key);
    cr_assert(t, "fixture: no %s", key);
    json_t *sh = json_object_get(t, "shape"), *data = json_object_get(t, "data");
    int64_t shape[RX_MAX_DIMS];
    const int nd = (int)json_array_size(sh);
    for (int d = 0; d < nd; d++) shape[d] = json_integer_value(json_array_get(sh, d));
    rx_tensor *p = rx_param(c, key, nd, shape, 1);
    cr_assert(p && (size_t)p->numel == json_array_size(data));
    float *h = malloc(p->numel * sizeof(float));
    for (int64_t i = 0; i < p->numel; i++) h[i] = (float)json_number_value(json_array_get(data, i));
    rx_tensor_from_host(c, p, h);
    free(h);
    return p;
}

static void expect_close_to_fixture(rx_ctx *c, const char *name, const char *key, const rx_tensor *t, json_t *cs) {
    rx_tensor *ref = fixture_param(c, cs, key);
    cr_assert_eq(ref->numel, t->numel, "%s %s: %s vs %s", name, key, RX_SHAPE_STR(t), RX_SHAPE_STR(ref));
    float *a = host(c, t), *r = host(c, ref);
    const double e = rx_rel_err(a, r, t->numel);
    cr_expect_lt(e, 2e-6, "%s %s: rel err %g against torch", name, key, e);
    free(a); free(r);
}

Test(ops_dense, torch_fixture) {
    json_error_t jerr;
    json_t *root = json_load_file("tests/fixtures/ops_dense.json", 0, &jerr);
    cr_assert(root, "tests/fixtures/ops_dense.json: %s (run tests/fixtures/gen_ops_dense.py)", jerr.text);
    json_t *cases = json_object_get(root, "cases");
    const char *name;
    json_t *cs;
    int seen = 0;
    json_object_foreach(cases, name, cs) {
        rx_ctx *c = rx_test_cpu_ctx();
        rx_tensor *y = NULL, *in[3] = {0};
        const char *keys[3] = {"x", "w", "b"};
        if (!strncmp(name, "conv2d", 6) || !strcmp(name, "linear")) {
            for (int j = 0; j < 3; j++) in[j] = fixture_param(c, cs, keys[j]);
            y = !strcmp(name, "linear") ? rx_linear(c, in[0], in[1], in[2])
                : rx_conv2d(c, in[0], in[1], in[2], (int)json_integer_value(json_object_get(cs, "stride")),
                            (int)json_integer_value(json_object_get(cs, "pad")));
        } else {
            keys[0] = "a"; keys[1] = "b";
            for (int j = 0; j < 2; j++) in[j] = fixture_param(c, cs, keys[j]);
            y = rx_matmul(c, in[0], in[1], (int)json_integer_value(json_object_get(cs, "trans_a")),
                          (int)json_integer_value(json_object_get(cs, "trans_b")));
        }
        cr_assert(y, "%s: %s", name, rx_last_error());
        expect_close_to_fixture(c, name, "y", y, cs);
        rx_tensor *r = fixture_param(c, cs, "r");
        cr_assert_eq(rx_backward_with(c, y, r), RX_OK, "%s", rx_last_error());
        char gkey[16];
        for (int j = 0; j < 3; j++)
            if (in[j]) {
                snprintf(gkey, sizeof gkey, "grad_%s", keys[j]);
                expect_close_to_fixture(c, name, gkey, in[j]->grad, cs);
            }
        rx_ctx_destroy(c);
        seen++;
    }
    cr_expect_eq(seen, 4, "fixture cases");
    json_decref(root);
}

/* ---- bad input ------------------------------------------------------------------------------- */

#define EXPECT_FAIL(c, call, code, text)                                                          \
    do {                                                                                          \
        rx_ctx_clear_error(c);                                                                    \
        cr_expect_null(call);                                                                     \
        cr_expect_eq(rx_ctx_status(c), code, "%s", rx_last_error());                              \
        cr_expect(strstr(rx_last_error(), text), "got \"%s\", expected \"%s\"", rx_last_error(), text); \
    } while (0)

Test(ops_dense, shape_errors_name_op_and_shapes) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = rx_param(c, NULL, RX_SHAPE(2, 3, 8, 8), 0), *w = rx_param(c, NULL, RX_SHAPE(4, 5, 3, 3), 0),
              *w3 = rx_param(c, NULL, RX_SHAPE(4, 3, 3, 3), 0), *w5 = rx_param(c, NULL, RX_SHAPE(4, 3, 11, 11), 0),
              *b5 = rx_param(c, NULL, RX_SHAPE(5), 0), *x3 = rx_param(c, NULL, RX_SHAPE(3, 8, 8), 0);
    rx_tensor *a = rx_param(c, NULL, RX_SHAPE(2, 6), 0), *wl = rx_param(c, NULL, RX_SHAPE(4, 5), 0),
              *wl6 = rx_param(c, NULL, RX_SHAPE(4, 6), 0);
    rx_tensor *m1 = rx_param(c, NULL, RX_SHAPE(2, 3, 4), 0), *m2 = rx_param(c, NULL, RX_SHAPE(2, 5, 6), 0),
              *m3 = rx_param(c, NULL, RX_SHAPE(3, 4, 6), 0), *m4 = rx_param(c, NULL, RX_SHAPE(2, 4, 6), 0);
    cr_assert(m4, "%s", rx_last_error());   /* parameters are made before any error: a failed context makes none */
    EXPECT_FAIL(c, rx_conv2d(c, x, w, NULL, 1, 1), RX_ERR_SHAPE,
                "conv2d: x [2,3,8,8] and w [4,5,3,3]: channels differ (3 vs 5)");
    EXPECT_FAIL(c, rx_conv2d(c, x, w3, b5, 1, 1), RX_ERR_SHAPE, "conv2d: bias [5] for w [4,3,3,3]: expected [4]");
    EXPECT_FAIL(c, rx_conv2d(c, x3, w3, NULL, 1, 1), RX_ERR_SHAPE,
                "conv2d: x [3,8,8] and w [4,3,3,3]: expected x [B,Ci,H,W]");
    EXPECT_FAIL(c, rx_conv2d(c, x, w5, NULL, 1, 1), RX_ERR_SHAPE,
                "conv2d: x [2,3,8,8] with pad 1 is smaller than the kernel of w [4,3,11,11]");
    EXPECT_FAIL(c, rx_conv2d(c, x, w3, NULL, 0, 1), RX_ERR_ARG, "conv2d: stride 0 must be >= 1");
    EXPECT_FAIL(c, rx_conv2d(c, x, w3, NULL, 1, -1), RX_ERR_ARG, "pad -1 >= 0");

    EXPECT_FAIL(c, rx_linear(c, a, wl, NULL), RX_ERR_SHAPE, "linear: x [2,6] and w [4,5]: in features differ (6 vs 5)");
    EXPECT_FAIL(c, rx_linear(c, a, x, NULL), RX_ERR_SHAPE, "linear: w [2,3,8,8]: expected [out,in]");
    EXPECT_FAIL(c, rx_linear(c, a, wl6, b5), RX_ERR_SHAPE, "linear: bias [5] for w [4,6]: expected [4]");

    EXPECT_FAIL(c, rx_matmul(c, m1, m2, 0, 0), RX_ERR_SHAPE, "matmul: a [2,3,4] and b [2,5,6]: inner dims differ (4 vs 5)");
    EXPECT_FAIL(c, rx_matmul(c, m1, m2, 1, 0), RX_ERR_SHAPE,
                "matmul: a [2,3,4] (transposed) and b [2,5,6]: inner dims differ (3 vs 5)");
    EXPECT_FAIL(c, rx_matmul(c, m1, m3, 0, 0), RX_ERR_SHAPE, "matmul: a [2,3,4] and b [3,4,6]: batch dim 0 differs");
    EXPECT_FAIL(c, rx_matmul(c, m1, wl, 0, 0), RX_ERR_SHAPE, "matmul: a [2,3,4] and b [4,5]: expected both 2-D to 4-D");
    /* errors are sticky: a later valid op also returns NULL until the error is cleared */
    rx_ctx_clear_error(c);
    cr_assert_not_null(rx_matmul(c, m1, m4, 0, 0), "%s", rx_last_error());
    cr_assert_null(rx_matmul(c, m1, m2, 0, 0));
    cr_expect_null(rx_matmul(c, m1, m4, 0, 0), "sticky");
    rx_ctx_clear_error(c);
    cr_expect_not_null(rx_matmul(c, m1, m4, 0, 0), "%s", rx_last_error());
    rx_ctx_destroy(c);
}
