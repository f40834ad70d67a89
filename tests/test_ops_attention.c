/* test_ops_attention.c — softmax and scaled dot-product attention (src/kernels/cpu/attention.c).
 * Forward reference: the formulas softmax(x)_j = e^{x_j - max} / Σ e^{x - max} and
 * o = softmax(q kᵀ · scale) v (PyTorch F.scaled_dot_product_attention without mask/dropout),
 * computed in double in this file. Backward reference: central finite differences. */
#include "gradcheck.h"

static float *host(rx_ctx *c, const rx_tensor *t) {
    float *h = malloc(t->numel * sizeof(float));
    cr_assert_eq(rx_tensor_to_host(c, t, h), RX_OK);
    return h;
}

/* softmax of each row of x [R,n] in double */
static void softmax_ref(const float *x, int64_t R, int64_t n, double *y) {
    for (int64_t r = 0; r < R; r++) {
        double mx = x[r * n], s = 0;
        for (int64_t j = 1; j < n; j++) mx = fmax(mx, x[r * n + j]);
        for (int64_t j = 0; j < n; j++) s += exp(x[r * n + j] - mx);
        for (int64_t j = 0; j < n; j++) y[r * n + j] = exp(x[r * n + j] - mx) / s;
    }
}

/* o [BH,Nq,Dv] = softmax(q kᵀ scale) v in double */
static void attention_ref(const float *q, const float *k, const float *v, int64_t BH, int64_t Nq, int64_t Nk,
                          int64_t D, int64_t Dv, double scale, float *o) {
    double *s = malloc(Nk * sizeof(double));
    for (int64_t h = 0; h < BH; h++)
        for (int64_t i = 0; i < Nq; i++) {
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < Nk; j++) {
                double d = 0;
                for (int64_t e = 0; e < D; e++) d += (double)q[(h * Nq + i) * D + e] * k[(h * Nk + j) * D + e];
                s[j] = d * scale;
                mx = fmax(mx, s[j]);
            }
            for (int64_t j = 0; j < Nk; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
            for (int64_t e = 0; e < Dv; e++) {
                double acc = 0;
                for (int64_t j = 0; j < Nk; j++) acc += s[j] * v[(h * Nk + j) * Dv + e];
                o[(h * Nq + i) * Dv + e] = (float)(acc / sum);
            }
        }
    free(s);
}

// ---------------------------------------------------------------------------- softmax

static rx_tensor *f_softmax(rx_ctx *c, rx_tensor **in, void *ud) { return rx_softmax(c, in[0]); }

Test(softmax, forward_matches_formula_and_is_stable) {
    rx_ctx *c = rx_test_cpu_ctx();
    const int64_t R = 3 * 5, n = 37;
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(3, 5, 37), 0);
    rx_test_randn(c, x, 1, 4.0f);
    float *xh = host(c, x);
    for (int j = 0; j < n; j++) xh[j] += 1000.0f;        // row 0 near 1000: naive exp overflows
    for (int j = 0; j < n; j++) xh[n + j] -= 1000.0f;    // row 1 near -1000: naive exp underflows
    xh[2 * n + 3] = -200.0f;                             // an entry far below its row's max
    rx_tensor_from_host(c, x, xh);
    rx_tensor *y = rx_softmax(c, x);
    cr_assert(y, "%s", rx_last_error());
    float *yh = host(c, y);
    double *ref = malloc(R * n * sizeof(double));
    softmax_ref(xh, R, n, ref);
    double worst = 0;
    for (int64_t i = 0; i < R * n; i++) worst = fmax(worst, fabs(yh[i] - ref[i]) / fmax(ref[i], 1e-30));
    cr_expect_lt(worst, 2e-6, "softmax elementwise relative error %g", worst);
    for (int64_t r = 0; r < R; r++) {
        double s = 0;
        for (int j = 0; j < n; j++) s += yh[r * n + j];
        cr_expect(fabs(s - 1) < 1e-5, "row %lld sums to %.8f", (long long)r, s);
    }
    free(xh); free(yh); free(ref);
    rx_ctx_destroy(c);
}

/* the vectorized exp over its whole range: softmax([0, -t])[1] = e^-t / (1 + e^-t) for
 * t in [0, 86], relative to libm's double exp */
Test(softmax, exp_accurate_over_range) {
    rx_ctx *c = rx_test_cpu_ctx();
    enum { R = 1000 };
    float x[2 * R], y[2 * R];
    for (int r = 0; r < R; r++) { x[2 * r] = 0.0f; x[2 * r + 1] = -86.0f * r / (R - 1); }
    rx_tensor *yt = rx_softmax(c, rx_from_host(c, RX_SHAPE(R, 2), x));
    cr_assert(yt, "%s", rx_last_error());
    rx_tensor_to_host(c, yt, y);
    double worst = 0;
    for (int r = 0; r < R; r++) {
        const double e = exp((double)x[2 * r + 1]), ref = e / (1 + e);
        worst = fmax(worst, fabs(y[2 * r + 1] - ref) / ref);
    }
    cr_expect_lt(worst, 1e-6, "worst relative error of e^-t: %g", worst);
    rx_ctx_destroy(c);
}

/* long rows past the threading threshold, compared with the same formula */
Test(softmax, forward_large_threaded) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(64, 1000), 0);
    rx_test_randn(c, x, 2, 10.0f);
    float *xh = host(c, x);
    rx_tensor *y = rx_softmax(c, x);
    cr_assert(y);
    float *yh = host(c, y);
    double *ref = malloc(64 * 1000 * sizeof(double));
    softmax_ref(xh, 64, 1000, ref);
    float *rf = malloc(64 * 1000 * sizeof(float));
    for (int i = 0; i < 64000; i++) rf[i] = (float)ref[i];
    cr_expect_lt(rx_rel_err(yh, rf, 64000), 1e-6);
    free(xh); free(yh); free(ref); free(rf);
    rx_ctx_destroy(c);
}

Test(softmax, backward_gradcheck) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(3, 4, 7), 1);
    rx_test_randn(c, x, 3, 2.0f);
    rx_gradcheck(c, f_softmax, NULL, 1, &x, 1e-2, 2e-4, 2e-3, 200);
    rx_ctx_destroy(c);
}

// ---------------------------------------------------------------------------- attention

typedef struct { float scale; } attn_args;

static rx_tensor *f_attention(rx_ctx *c, rx_tensor **in, void *ud) {
    return rx_attention(c, in[0], in[1], in[2], ((const attn_args *)ud)->scale);
}

/* forward against attention_ref for q [lead,Nq,D], k [lead,Nk,D], v [lead,Nk,Dv] */
static void check_attention_forward(int nd, const int64_t *lead, int64_t Nq, int64_t Nk, int64_t D, int64_t Dv,
                                    float scale, int grad, double tol) {
    rx_ctx *c = rx_test_cpu_ctx();
    int64_t qs[5], ks[5], vs[5], BH = 1;
    for (int i = 0; i < nd - 2; i++) { qs[i] = ks[i] = vs[i] = lead[i]; BH *= lead[i]; }
    qs[nd - 2] = Nq; qs[nd - 1] = D;
    ks[nd - 2] = Nk; ks[nd - 1] = D;
    vs[nd - 2] = Nk; vs[nd - 1] = Dv;
    rx_tensor *q = rx_param(c, "q", nd, qs, grad), *k = rx_param(c, "k", nd, ks, grad), *v = rx_param(c, "v", nd, vs, grad);
    rx_test_randn(c, q, 10, 1.0f);
    rx_test_randn(c, k, 11, 1.0f);
    rx_test_randn(c, v, 12, 1.0f);
    float *qh = host(c, q), *kh = host(c, k), *vh = host(c, v);
    rx_tensor *o = rx_attention(c, q, k, v, scale);
    cr_assert(o, "%s", rx_last_error());
    cr_expect_eq(o->ndim, nd);
    cr_expect_eq(o->shape[nd - 2], Nq);
    cr_expect_eq(o->shape[nd - 1], Dv);
    float *oh = host(c, o), *ref = malloc(BH * Nq * Dv * sizeof(float));
    attention_ref(qh, kh, vh, BH, Nq, Nk, D, Dv, scale > 0 ? scale : 1.0 / sqrt((double)D), ref);
    double e = rx_rel_err(oh, ref, BH * Nq * Dv);
    cr_expect_lt(e, tol, "attention [%lld heads, %lldx%lld, D=%lld] rel err %g", (long long)BH, (long long)Nq,
                 (long long)Nk, (long long)D, e);
    free(qh); free(kh); free(vh); free(oh); free(ref);
    rx_ctx_destroy(c);
}

Test(attention, forward_matches_formula) {
    check_attention_forward(4, (int64_t[]){2, 3}, 7, 11, 5, 4, 0.0f, 1, 2e-6);      // default 1/sqrt(D), Dv != D
    check_attention_forward(4, (int64_t[]){2, 3}, 7, 11, 5, 4, 0.0f, 0, 2e-6);      // no grad: per-thread scratch
    check_attention_forward(4, (int64_t[]){1, 2}, 9, 9, 8, 8, 0.7f, 1, 2e-6);       // explicit scale
    check_attention_forward(3, (int64_t[]){3}, 6, 13, 4, 6, 0.0f, 1, 2e-6);         // 3-D [B,N,D]
    check_attention_forward(4, (int64_t[]){2, 4}, 32, 40, 16, 16, 0.0f, 1, 2e-6);   // heads run in parallel
    check_attention_forward(4, (int64_t[]){2, 4}, 32, 40, 16, 16, 0.0f, 0, 2e-6);
}

/* 32x32 tokens: one head per sgemm (OpenBLAS threads it), serial head loop */
Test(attention, forward_1024_tokens) {
    check_attention_forward(4, (int64_t[]){2, 1}, 1024, 1024, 32, 32, 0.0f, 0, 1e-5);
}

Test(attention, backward_gradcheck) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[3] = {rx_param(c, "q", RX_SHAPE(2, 2, 5, 3), 1), rx_param(c, "k", RX_SHAPE(2, 2, 6, 3), 1),
                        rx_param(c, "v", RX_SHAPE(2, 2, 6, 4), 1)};
    for (int i = 0; i < 3; i++) rx_test_randn(c, in[i], 20 + i, 1.0f);
    attn_args a = {0.0f};
    rx_gradcheck(c, f_attention, &a, 3, in, 1e-2, 5e-4, 2e-3, 200);
    a.scale = 0.3f;
    rx_gradcheck(c, f_attention, &a, 3, in, 1e-2, 5e-4, 2e-3, 200);
    rx_ctx_destroy(c);
}

/* one head (the serial path: OpenMP over softmax rows), and k without grad */
Test(attention, backward_gradcheck_one_head_partial_grads) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[3] = {rx_param(c, "q", RX_SHAPE(1, 1, 70, 4), 1), rx_param(c, "k", RX_SHAPE(1, 1, 90, 4), 0),
                        rx_param(c, "v", RX_SHAPE(1, 1, 90, 3), 1)};
    for (int i = 0; i < 3; i++) rx_test_randn(c, in[i], 30 + i, 1.0f);
    attn_args a = {0.0f};
    rx_gradcheck(c, f_attention, &a, 3, in, 1e-2, 5e-4, 2e-3, 60);
    rx_ctx_destroy(c);
}

/* enough small heads to run them side by side on OpenMP threads (one dS buffer per thread) */
Test(attention, backward_gradcheck_heads_in_parallel) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[3] = {rx_param(c, "q", RX_SHAPE(2, 4, 32, 16), 1), rx_param(c, "k", RX_SHAPE(2, 4, 40, 16), 1),
                        rx_param(c, "v", RX_SHAPE(2, 4, 40, 16), 1)};
    for (int i = 0; i < 3; i++) rx_test_randn(c, in[i], 40 + i, 1.0f);
    attn_args a = {0.0f};
    rx_gradcheck(c, f_attention, &a, 3, in, 1e-2, 1e-3, 2e-3, 24);
    rx_ctx_destroy(c);
}

Test(attention, shape_errors_name_op_and_shapes) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *q = rx_param(c, "q", RX_SHAPE(2, 4, 16, 8), 0), *k = rx_param(c, "k", RX_SHAPE(2, 4, 16, 6), 0);
    rx_tensor *v = rx_param(c, "v", RX_SHAPE(2, 4, 15, 8), 0), *k2 = rx_param(c, "k2", RX_SHAPE(2, 3, 16, 8), 0);
    rx_tensor *k3 = rx_param(c, "k3", RX_SHAPE(2, 4, 16, 8), 0);
    cr_expect_null(rx_attention(c, q, k, k, 0));
    cr_expect(strstr(rx_last_error(), "attention: q [2,4,16,8] and k [2,4,16,6]: head dim differs"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_attention(c, q, k3, v, 0));
    cr_expect(strstr(rx_last_error(), "attention: k [2,4,16,8] and v [2,4,15,8]: number of keys differs"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_attention(c, q, k2, k2, 0));
    cr_expect(strstr(rx_last_error(), "attention: q [2,4,16,8], k [2,3,16,8], v [2,3,16,8]: batch/head dims differ"), "%s", rx_last_error());
    rx_ctx_destroy(c);
}
