/* test_ops_attention.c — softmax and scaled dot-product attention (src/kernels/cpu/attention.c).
 * Forward reference: the formulas softmax(x)_j = e^{x_j - max} / Σ e^{x - max} and
 * o = softmax(q kᵀ · scale) v (PyTorch F.scaled_dot_product_attention without mask/dropout),
 * computed in double in this file. Backward reference: central finite differences.
 * The registered attention kernels (tiled, FlashAttention-2) are also compared, forward and
 * backward, with the readable reference kernels (cpu_attention_reference_fwd/_bwd) on the same
 * inputs, at shapes around the tile sizes (64, 128 or 256 queries, 256 keys). */
#include "gradcheck.h"
#include "kernels/cpu/cpu.h"
#include <omp.h>

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

// ---------------------------------------------------------------------------- fast kernels against the reference

/* the CPU backend with the attention reference kernels in place of the registered ones */
static rx_backend reference_backend;

static rx_ctx *reference_ctx(void) {
    reference_backend = *rx_backend_cpu();
    reference_backend.fwd[RX_OP_ATTENTION] = cpu_attention_reference_fwd;
    reference_backend.bwd[RX_OP_ATTENTION] = cpu_attention_reference_bwd;
    rx_ctx *c = NULL;
    cr_assert_eq(rx_ctx_create(&reference_backend, NULL, 16u << 20, &c), RX_OK);
    return c;
}

/* q [lead,Nq,D], k [lead,Nk,D], v [lead,Nk,Dv]; grads: bit i set when input i needs a gradient */
typedef struct {
    int nd;
    int64_t lead[2], Nq, Nk, D, Dv;
    int grads;
    float scale;
} attn_case;

#define ALL_GRADS 7

/* outputs and input gradients of one backend on a case's inputs (host copies, malloc'd) */
typedef struct { float *out, *out_nograd, *grad[3]; } attn_run;

/* Runs the front-end on c: a forward without grad, then forward + backward with seed R. Input
 * gradients start from g0 (not zero), so a backward that overwrites instead of adding shows. */
static attn_run run_case(rx_ctx *c, const attn_case *k, float *const x[3], float *const g0[3], const float *R) {
    const int64_t dims[3][2] = {{k->Nq, k->D}, {k->Nk, k->D}, {k->Nk, k->Dv}};
    rx_tensor *in[3];
    for (int i = 0; i < 3; i++) {
        int64_t shape[4];
        for (int j = 0; j < k->nd - 2; j++) shape[j] = k->lead[j];
        shape[k->nd - 2] = dims[i][0];
        shape[k->nd - 1] = dims[i][1];
        in[i] = rx_param(c, NULL, k->nd, shape, (k->grads >> i) & 1);
        cr_assert(in[i], "%s", rx_last_error());
        cr_assert_eq(rx_tensor_from_host(c, in[i], x[i]), RX_OK);
        if (in[i]->grad) cr_assert_eq(rx_tensor_from_host(c, in[i]->grad, g0[i]), RX_OK);
    }
    attn_run r = {0};
    rx_set_grad_enabled(c, 0);
    rx_tensor *o = rx_attention(c, in[0], in[1], in[2], k->scale);
    cr_assert(o, "%s", rx_last_error());
    r.out_nograd = host(c, o);
    rx_step_end(c);
    rx_set_grad_enabled(c, 1);
    o = rx_attention(c, in[0], in[1], in[2], k->scale);
    cr_assert(o, "%s", rx_last_error());
    r.out = host(c, o);
    rx_tensor *seed = rx_from_host(c, o->ndim, o->shape, R);
    cr_assert_eq(rx_backward_with(c, o, seed), RX_OK, "%s", rx_last_error());
    for (int i = 0; i < 3; i++) r.grad[i] = in[i]->grad ? host(c, in[i]->grad) : NULL;
    rx_step_end(c);
    return r;
}

static void free_run(attn_run *r) {
    free(r->out);
    free(r->out_nograd);
    for (int i = 0; i < 3; i++) free(r->grad[i]);
}

/* max |b - base|: the largest value a backward added to `base` */
static double max_added(const float *b, const float *base, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)b[i] - base[i]));
    return m;
}

/* max |a - b|, NaN included */
static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (d > m || d != d) m = d;
    }
    return m;
}

/* the registered kernels against the reference kernels on one case: rx_rel_err of the output
 * (with and without grad) within tol_out; for the input gradients, max |difference| relative to
 * the largest value the reference's backward added to any of them within tol_grad. (Relative to
 * the gradients' common scale: one input's gradient can be zero in exact arithmetic, e.g. dq with
 * a single key, and then each side has only rounding residue.) The gradients start from small
 * random values, so a backward that overwrites instead of adding is caught. */
static void check_against_reference(const attn_case *k, double tol_out, double tol_grad) {
    int64_t BH = 1;
    for (int j = 0; j < k->nd - 2; j++) BH *= k->lead[j];
    const int64_t numel[3] = {BH * k->Nq * k->D, BH * k->Nk * k->D, BH * k->Nk * k->Dv}, no = BH * k->Nq * k->Dv;
    float *x[3], *g0[3], *R = malloc(no * sizeof(float));
    for (int i = 0; i < 3; i++) {
        x[i] = malloc(numel[i] * sizeof(float));
        g0[i] = malloc(numel[i] * sizeof(float));
        rx_rng_normal(50 + i, RX_STREAM(RX_RNG_TEST, 1), 0, x[i], numel[i]);
        rx_rng_normal(60 + i, RX_STREAM(RX_RNG_TEST, 2), 0, g0[i], numel[i]);
        for (int64_t j = 0; j < numel[i]; j++) g0[i][j] *= 1e-3f;   // small: their rounding stays below tol_grad
    }
    rx_rng_normal(70, RX_STREAM(RX_RNG_TEST, 3), 0, R, no);
    rx_ctx *fast = rx_test_cpu_ctx(), *ref = reference_ctx();
    attn_run f = run_case(fast, k, x, g0, R), r = run_case(ref, k, x, g0, R);
    char what[128];
    snprintf(what, sizeof what, "BH=%lld Nq=%lld Nk=%lld D=%lld Dv=%lld grads=%d", (long long)BH, (long long)k->Nq,
             (long long)k->Nk, (long long)k->D, (long long)k->Dv, k->grads);
    const double eo = rx_rel_err(f.out, r.out, no), en = rx_rel_err(f.out_nograd, r.out_nograd, no);
    cr_expect_leq(eo, tol_out, "%s: output rel err %g", what, eo);
    cr_expect_leq(en, tol_out, "%s: output without grad rel err %g", what, en);
    double scale = 1e-30;
    for (int i = 0; i < 3; i++)
        if ((k->grads >> i) & 1) scale = fmax(scale, max_added(r.grad[i], g0[i], numel[i]));
    for (int i = 0; i < 3; i++) {
        if (!((k->grads >> i) & 1)) continue;
        const double e = max_diff(f.grad[i], r.grad[i], numel[i]) / scale;
        cr_expect_leq(e, tol_grad, "%s: gradient of input %d rel err %g", what, i, e);
    }
    free_run(&f);
    free_run(&r);
    for (int i = 0; i < 3; i++) { free(x[i]); free(g0[i]); }
    free(R);
    rx_ctx_destroy(fast);
    rx_ctx_destroy(ref);
}

/* float sums in a different order (tiles, the online rescaling, D = rowsum(dO ⊙ O) in place of
 * rowsum(dP ⊙ P)): errors of a few float ulps of the largest value */
static const double TOL_OUT = 2e-6, TOL_GRAD = 5e-6;

/* Tiles with two threads: the forward takes 256 query rows a task, or 128 or 64 when that leaves
 * a thread without two tasks; the backward 128 query rows against 256 keys. */
static const attn_case shape_cases[] = {
    {4, {1, 1}, 1, 1, 8, 8, ALL_GRADS, 0.0f},          // N = 1
    {4, {2, 1}, 1, 300, 16, 16, ALL_GRADS, 0.0f},      // one query; keys over two tiles (256 + 44)
    {4, {1, 1}, 300, 1, 8, 8, ALL_GRADS, 0.0f},        // one key; queries over five tiles of 64
    {4, {2, 3}, 65, 257, 8, 8, ALL_GRADS, 0.0f},       // one key past a key tile
    {4, {1, 2}, 129, 70, 32, 24, ALL_GRADS, 0.0f},     // one query past a tile of 128; Nq != Nk, Dv != D
    {4, {2, 2}, 257, 100, 16, 16, ALL_GRADS, 0.0f},    // one query past a tile of 256
    {4, {2, 4}, 200, 200, 64, 64, ALL_GRADS, 0.3f},    // explicit scale
    {3, {3}, 77, 91, 40, 40, ALL_GRADS, 0.0f},         // 3-D [B,N,D]
};

Test(attention, matches_reference_around_tile_sizes) {
    omp_set_num_threads(2);   // the tiles above
    for (size_t i = 0; i < sizeof shape_cases / sizeof shape_cases[0]; i++)
        check_against_reference(&shape_cases[i], TOL_OUT, TOL_GRAD);
}

Test(attention, matches_reference_head_dims_8_to_128) {
    static const attn_case cases[] = {
        {4, {2, 2}, 100, 100, 8, 8, ALL_GRADS, 0.0f},
        {4, {2, 2}, 100, 100, 16, 16, ALL_GRADS, 0.0f},
        {4, {2, 2}, 100, 100, 72, 72, ALL_GRADS, 0.0f},   // DiT-XL's head width
        {4, {1, 1}, 513, 513, 128, 128, ALL_GRADS, 0.0f}, // one head: its keys split over the threads
        {4, {2, 1}, 96, 300, 128, 64, ALL_GRADS, 0.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_against_reference(&cases[i], TOL_OUT, TOL_GRAD);
}

Test(attention, matches_reference_1_to_32_heads) {
    static const attn_case cases[] = {
        {4, {1, 1}, 150, 150, 16, 16, ALL_GRADS, 0.0f},
        {4, {1, 3}, 150, 150, 16, 16, ALL_GRADS, 0.0f},
        {4, {1, 8}, 70, 70, 32, 32, ALL_GRADS, 0.0f},
        {4, {2, 32}, 40, 40, 8, 8, ALL_GRADS, 0.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_against_reference(&cases[i], TOL_OUT, TOL_GRAD);
}

/* some inputs without grad: the backward skips those products and still adds the others */
Test(attention, matches_reference_partial_grads) {
    static const int masks[] = {1, 2, 4, 1 | 4, 2 | 4};   // q; k; v; q and v; k and v
    for (size_t i = 0; i < sizeof masks / sizeof masks[0]; i++) {
        attn_case k = {4, {1, 2}, 90, 270, 16, 12, masks[i], 0.0f};
        check_against_reference(&k, TOL_OUT, TOL_GRAD);
        k.lead[1] = 1;   // one head: split keys, dq from partials
        check_against_reference(&k, TOL_OUT, TOL_GRAD);
    }
}

/* more threads than heads: each head's keys are split over threads (dq partials summed in
 * order). Four threads on any machine, so that 1, 2 and 3 heads all take that path. */
Test(attention, matches_reference_fewer_heads_than_threads) {
    omp_set_num_threads(4);
    for (int64_t h = 1; h <= 3; h++) {
        const attn_case k = {4, {1, h}, 140, 300, 32, 32, ALL_GRADS, 0.0f};
        check_against_reference(&k, TOL_OUT, TOL_GRAD);
    }
}

/* the backward's split keys and dynamic schedule give the same bits run after run */
Test(attention, backward_is_deterministic) {
    omp_set_num_threads(4);
    const attn_case k = {4, {1, 3}, 140, 300, 32, 32, ALL_GRADS, 0.0f};
    const int64_t numel[3] = {3 * 140 * 32, 3 * 300 * 32, 3 * 300 * 32}, no = 3 * 140 * 32;
    float *x[3], *g0[3], *R = malloc(no * sizeof(float));
    for (int i = 0; i < 3; i++) {
        x[i] = malloc(numel[i] * sizeof(float));
        g0[i] = calloc(numel[i], sizeof(float));
        rx_rng_normal(80 + i, RX_STREAM(RX_RNG_TEST, 1), 0, x[i], numel[i]);
    }
    rx_rng_normal(90, RX_STREAM(RX_RNG_TEST, 3), 0, R, no);
    rx_ctx *c = rx_test_cpu_ctx();
    attn_run a = run_case(c, &k, x, g0, R), b = run_case(c, &k, x, g0, R);
    for (int i = 0; i < 3; i++)
        cr_expect(!memcmp(a.grad[i], b.grad[i], numel[i] * sizeof(float)), "gradient of input %d differs between runs", i);
    free_run(&a);
    free_run(&b);
    for (int i = 0; i < 3; i++) { free(x[i]); free(g0[i]); }
    free(R);
    rx_ctx_destroy(c);
}

/* No [heads,Nq,Nk] tensor: at 4 heads of 1024 tokens P alone would be 16 MiB. Bound for the step
 * arena over forward + backward: the output, its gradient, LSE and D ([BH,Nq] each) and the
 * per-thread score tiles (one [256,256] in the forward, two [128,256] in the backward), with
 * 1 MiB to spare; the reference kernels take more than P. */
Test(attention, keeps_no_scores_matrix) {
    const int64_t B = 1, H = 4, N = 1024, D = 32, P_bytes = B * H * N * N * 4;
    const double bound = 2.0 * B * H * N * D * 4 + 2.0 * B * H * N * 4 +
                         omp_get_max_threads() * (256.0 * 256 + 2.0 * 128 * 256) * 4 + (1 << 20);
    for (int reference = 0; reference < 2; reference++) {
        rx_ctx *c = reference ? reference_ctx() : rx_test_cpu_ctx();
        rx_tensor *in[3];
        for (int i = 0; i < 3; i++) {
            in[i] = rx_param(c, NULL, RX_SHAPE(B, H, N, D), 1);
            rx_test_randn(c, in[i], 100 + i, 1.0f);
        }
        rx_step_end(c);
        const size_t before = rx_arena_data_peak(c->step);
        rx_tensor *o = rx_attention(c, in[0], in[1], in[2], 0.0f);
        cr_assert(o, "%s", rx_last_error());
        cr_assert_eq(rx_backward_with(c, o, rx_full(c, o->ndim, o->shape, 1.0f)), RX_OK, "%s", rx_last_error());
        const double used = (double)rx_arena_data_peak(c->step);
        cr_expect(before == 0, "the step arena was used before the op (%zu bytes)", before);
        if (reference)
            cr_expect_gt(used, (double)P_bytes, "the reference keeps P: %.0f bytes, P is %lld", used, (long long)P_bytes);
        else
            cr_expect_leq(used, bound, "step arena peak %.0f bytes over forward + backward, bound %.0f (P would be %lld)",
                          used, bound, (long long)P_bytes);
        rx_ctx_destroy(c);
    }
}
