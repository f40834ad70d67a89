/* test_ops_conv_onednn.c — conv2d through oneDNN (src/kernels/cpu/conv_onednn.c) against the
 * readable reference kernel (cpu_conv2d_reference_fwd/_bwd: im2col + OpenBLAS, itself checked
 * against a double-precision loop and a PyTorch fixture in test_ops_dense.c), forward, dx, dw and
 * db, on the same inputs, over a table of shapes, with 1 and 2 OpenMP threads. Each side runs on
 * a copy of the CPU backend table holding one kernel pair, so the choice rule and
 * $RUNEXP_CPU_CONV play no part here; the registered pair and the switch have their own tests.
 * Skips, saying so, in a build without oneDNN (libdnnl-dev, which `make deps` installs). */
#include "gradcheck.h"
#include "kernels/cpu/cpu.h"
#include <omp.h>

static rx_backend reference_backend, onednn_backend;

static rx_ctx *ctx_with(rx_backend *be, rx_kernel_fn fwd, rx_kernel_fn bwd) {
    *be = *rx_backend_cpu();
    be->fwd[RX_OP_CONV2D] = fwd;
    be->bwd[RX_OP_CONV2D] = bwd;
    rx_ctx *c = NULL;
    cr_assert_eq(rx_ctx_create(be, NULL, 16u << 20, &c), RX_OK);
    return c;
}

static rx_ctx *reference_ctx(void) { return ctx_with(&reference_backend, cpu_conv2d_reference_fwd, cpu_conv2d_reference_bwd); }
static rx_ctx *onednn_ctx(void) { return ctx_with(&onednn_backend, cpu_conv2d_onednn_fwd, cpu_conv2d_onednn_bwd); }

static void skip_without_onednn(void) {
#ifndef RX_HAVE_ONEDNN
    cr_skip_test("built without oneDNN (libdnnl-dev; `make deps` installs it): %s", cpu_conv2d_impl());
#endif
}

/* x [B,Ci,H,W], w [Co,Ci,kh,kw], optional b [Co]; grads: bit 0 x, bit 1 w, bit 2 b need a gradient */
typedef struct { int B, Ci, H, W, Co, kh, kw, stride, pad, bias, grads; } conv_case;
#define ALL_GRADS 7

static int64_t conv_out(int in, int k, int s, int p) { return (in + 2 * p - k) / s + 1; }

static float *host(rx_ctx *c, const rx_tensor *t) {
    float *h = malloc(t->numel * sizeof(float));
    cr_assert_eq(rx_tensor_to_host(c, t, h), RX_OK);
    return h;
}

typedef struct { float *out, *out_nograd, *grad[3]; } conv_run;

/* one backend on a case: a forward without grad, then forward + backward with seed gradient R;
 * the input gradients start from g0 (not zero), so a backward that overwrites shows */
static conv_run run_case(rx_ctx *c, const conv_case *k, float *const in[3], float *const g0[3], const float *R) {
    const int64_t shapes[3][4] = {{k->B, k->Ci, k->H, k->W}, {k->Co, k->Ci, k->kh, k->kw}, {k->Co}};
    const int ndims[3] = {4, 4, 1};
    rx_tensor *t[3] = {0};
    for (int i = 0; i < (k->bias ? 3 : 2); i++) {
        t[i] = rx_param(c, NULL, ndims[i], shapes[i], (k->grads >> i) & 1);
        cr_assert(t[i], "%s", rx_last_error());
        cr_assert_eq(rx_tensor_from_host(c, t[i], in[i]), RX_OK);
        if (t[i]->grad) cr_assert_eq(rx_tensor_from_host(c, t[i]->grad, g0[i]), RX_OK);
    }
    conv_run r = {0};
    rx_set_grad_enabled(c, 0);
    rx_tensor *y = rx_conv2d(c, t[0], t[1], t[2], k->stride, k->pad);
    cr_assert(y, "%s", rx_last_error());
    r.out_nograd = host(c, y);
    rx_step_end(c);
    rx_set_grad_enabled(c, 1);
    y = rx_conv2d(c, t[0], t[1], t[2], k->stride, k->pad);
    cr_assert(y, "%s", rx_last_error());
    r.out = host(c, y);
    rx_tensor *seed = rx_from_host(c, y->ndim, y->shape, R);
    cr_assert_eq(rx_backward_with(c, y, seed), RX_OK, "%s", rx_last_error());
    for (int i = 0; i < 3; i++) r.grad[i] = t[i] && t[i]->grad ? host(c, t[i]->grad) : NULL;
    rx_step_end(c);
    return r;
}

/* max |a - b| (NaN included) and max |b - base| */
static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (d > m || d != d) m = d;
    }
    return m;
}

/* Tolerance: both sides sum the same products in float, in different orders (oneDNN's blocked
 * micro-kernels against OpenBLAS's). With random-sign terms the rounding grows like
 * sqrt(terms) * 2^-24 of the result's scale: ~4e-6 for the longest sums here (backward-weights
 * over B·Ho·Wo = 5·16·16 = 1280 terms; forward over Ci·kh·kw = 576). 5e-5 leaves over 10x room and
 * is far below any indexing or accumulation mistake (a wrong tap, a missed += are O(1) errors).
 * Gradients are measured against the largest value the reference's backward added (O(10) here);
 * the g0 start values are 0.1 N(0,1), so a backward that overwrites instead of adding is off by
 * ~1e-2 of that, 200x the tolerance. */
static const double TOL = 5e-5;

static void check_case(const conv_case *k) {
    const int64_t Ho = conv_out(k->H, k->kh, k->stride, k->pad), Wo = conv_out(k->W, k->kw, k->stride, k->pad);
    const int64_t numel[3] = {(int64_t)k->B * k->Ci * k->H * k->W, (int64_t)k->Co * k->Ci * k->kh * k->kw, k->Co};
    const int64_t ny = k->B * k->Co * Ho * Wo;
    float *in[3], *g0[3], *R = malloc(ny * sizeof(float));
    for (int i = 0; i < 3; i++) {
        in[i] = malloc(numel[i] * sizeof(float));
        g0[i] = malloc(numel[i] * sizeof(float));
        rx_rng_normal(80 + i, RX_STREAM(RX_RNG_TEST, 1), 0, in[i], numel[i]);
        rx_rng_normal(90 + i, RX_STREAM(RX_RNG_TEST, 2), 0, g0[i], numel[i]);
        for (int64_t j = 0; j < numel[i]; j++) g0[i][j] *= 0.1f;
    }
    rx_rng_normal(99, RX_STREAM(RX_RNG_TEST, 3), 0, R, ny);
    rx_ctx *fast = onednn_ctx(), *ref = reference_ctx();
    conv_run f = run_case(fast, k, in, g0, R), r = run_case(ref, k, in, g0, R);
    char what[160];
    snprintf(what, sizeof what, "x [%d,%d,%d,%d] w [%d,%d,%d,%d] stride %d pad %d bias %d grads %d threads %d", k->B,
             k->Ci, k->H, k->W, k->Co, k->Ci, k->kh, k->kw, k->stride, k->pad, k->bias, k->grads, omp_get_max_threads());
    const double eo = rx_rel_err(f.out, r.out, ny), en = rx_rel_err(f.out_nograd, r.out_nograd, ny);
    cr_expect_leq(eo, TOL, "%s: forward rel err %g", what, eo);
    cr_expect_leq(en, TOL, "%s: forward without grad rel err %g", what, en);
    static const char *const names[3] = {"dx", "dw", "db"};
    for (int i = 0; i < (k->bias ? 3 : 2); i++) {
        if (!((k->grads >> i) & 1)) continue;
        const double added = max_diff(r.grad[i], g0[i], numel[i]);
        cr_assert_gt(added, 0.0, "%s: the reference added nothing to %s", what, names[i]);
        const double e = max_diff(f.grad[i], r.grad[i], numel[i]) / added;
        cr_expect_leq(e, TOL, "%s: %s rel err %g", what, names[i], e);
    }
    for (int i = 0; i < 3; i++) { free(f.grad[i]); free(r.grad[i]); free(in[i]); free(g0[i]); }
    free(f.out); free(f.out_nograd); free(r.out); free(r.out_nograd); free(R);
    rx_ctx_destroy(fast);
    rx_ctx_destroy(ref);
}

/* the U-Nets' shapes (3x3 pad 1, 1x1 shortcuts, stride-2 downsampling, 3-channel input) and edges */
static const conv_case cases[] = {
    {5, 16, 8, 8, 32, 1, 1, 1, 0, 1, ALL_GRADS},    /* 1x1 (a resnet shortcut) */
    {1, 3, 16, 16, 32, 3, 3, 1, 1, 1, 6},           /* the stem: C = 3, batch 1, no dx (an image) */
    {5, 64, 8, 8, 64, 3, 3, 1, 1, 1, ALL_GRADS},    /* 3x3 pad 1 at 64 channels, batch 5 */
    {5, 32, 16, 16, 32, 3, 3, 2, 1, 1, ALL_GRADS},  /* stride-2 downsample */
    {5, 7, 9, 11, 5, 3, 3, 1, 1, 1, ALL_GRADS},     /* odd sizes and channels */
    {3, 5, 7, 9, 4, 3, 3, 2, 1, 1, ALL_GRADS},      /* odd sizes, stride 2 */
    {2, 4, 8, 8, 6, 1, 1, 2, 0, 1, ALL_GRADS},      /* 1x1 stride 2: the last input row unused */
    {2, 2, 10, 11, 3, 3, 3, 3, 0, 0, ALL_GRADS},    /* stride 3, ragged edge, no bias */
    {2, 2, 6, 5, 3, 5, 3, 1, 2, 1, ALL_GRADS},      /* non-square 5x3 kernel, pad 2 */
    {5, 32, 8, 8, 16, 3, 3, 1, 1, 1, 3},            /* bias frozen: dx, dw only */
    {1, 8, 4, 4, 8, 3, 3, 1, 1, 1, 5},              /* weights frozen: dx, db only */
};

Test(conv_onednn, matches_reference_one_thread) {
    skip_without_onednn();
    omp_set_num_threads(1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
}

Test(conv_onednn, matches_reference_two_threads) {
    skip_without_onednn();
    omp_set_num_threads(2);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
}

/* each of oneDNN's layouts for every shape, whatever the rule picks: plain NCHW / OIHW, and the
 * blocked layouts oneDNN chooses, with their reorders (the variable is read once per process,
 * and Criterion runs each test in its own) */
Test(conv_onednn, matches_reference_plain_layout) {
    skip_without_onednn();
    setenv("RUNEXP_CPU_CONV", "onednn-plain", 1);
    omp_set_num_threads(2);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
}

Test(conv_onednn, matches_reference_blocked_layout) {
    skip_without_onednn();
    setenv("RUNEXP_CPU_CONV", "onednn-blocked", 1);
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
    }
}

/* more shapes than the primitive table holds (96): entries are evicted and rebuilt, and a shape
 * seen again after eviction still gives the reference's numbers */
Test(conv_onednn, primitive_table_eviction) {
    skip_without_onednn();
    omp_set_num_threads(2);
    rx_ctx *fast = onednn_ctx(), *ref = reference_ctx();
    rx_set_grad_enabled(fast, 0);
    rx_set_grad_enabled(ref, 0);
    for (int round = 0; round < 2; round++)
        for (int co = 1; co <= 110; co++) {
            rx_ctx *cs[2] = {fast, ref};
            float *out[2];
            for (int s = 0; s < 2; s++) {
                rx_tensor *x = rx_param(cs[s], NULL, RX_SHAPE(2, 3, 5, 5), 0), *w = rx_param(cs[s], NULL, RX_SHAPE(co, 3, 3, 3), 0);
                rx_test_randn(cs[s], x, 7, 1.0f);
                rx_test_randn(cs[s], w, 100 + co, 1.0f);
                rx_tensor *y = rx_conv2d(cs[s], x, w, NULL, 1, 1);
                cr_assert(y, "%s", rx_last_error());
                out[s] = host(cs[s], y);
                rx_step_end(cs[s]);
            }
            const double e = rx_rel_err(out[0], out[1], 2 * co * 25);
            cr_expect_leq(e, TOL, "round %d, Co %d: rel err %g", round, co, e);
            free(out[0]);
            free(out[1]);
        }
    rx_ctx_destroy(fast);
    rx_ctx_destroy(ref);
}

/* The registered kernels under $RUNEXP_CPU_CONV (read once per process; Criterion runs each test
 * in its own): `reference` gives the reference's numbers bit for bit, `onednn` oneDNN's. */
static void registered_equals_on(const char *env, const conv_case *kp, rx_kernel_fn fwd, rx_kernel_fn bwd) {
    setenv("RUNEXP_CPU_CONV", env, 1);
    omp_set_num_threads(2);
    const conv_case k = *kp;
    const int64_t Ho = conv_out(k.H, k.kh, k.stride, k.pad), Wo = conv_out(k.W, k.kw, k.stride, k.pad);
    const int64_t nx = (int64_t)k.B * k.Ci * k.H * k.W, nw = (int64_t)k.Co * k.Ci * k.kh * k.kw, ny = k.B * k.Co * Ho * Wo;
    float *in[3] = {malloc(nx * 4), malloc(nw * 4), malloc(k.Co * 4)}, *g0[3] = {calloc(nx, 4), calloc(nw, 4), calloc(k.Co, 4)};
    float *R = malloc(ny * 4);
    rx_rng_normal(1, RX_STREAM(RX_RNG_TEST, 1), 0, in[0], nx);
    rx_rng_normal(2, RX_STREAM(RX_RNG_TEST, 1), 0, in[1], nw);
    rx_rng_normal(3, RX_STREAM(RX_RNG_TEST, 1), 0, in[2], k.Co);
    rx_rng_normal(4, RX_STREAM(RX_RNG_TEST, 1), 0, R, ny);
    rx_ctx *registered = rx_test_cpu_ctx(), *explicit = ctx_with(&reference_backend, fwd, bwd);
    conv_run a = run_case(registered, &k, in, g0, R), b = run_case(explicit, &k, in, g0, R);
    cr_expect_eq(memcmp(a.out, b.out, ny * 4), 0, "RUNEXP_CPU_CONV=%s: forward differs from that kernel's", env);
    cr_expect_eq(memcmp(a.grad[0], b.grad[0], nx * 4), 0, "RUNEXP_CPU_CONV=%s: dx differs", env);
    cr_expect_eq(memcmp(a.grad[1], b.grad[1], nw * 4), 0, "RUNEXP_CPU_CONV=%s: dw differs", env);
    cr_expect_eq(memcmp(a.grad[2], b.grad[2], k.Co * 4), 0, "RUNEXP_CPU_CONV=%s: db differs", env);
    for (int i = 0; i < 3; i++) { free(a.grad[i]); free(b.grad[i]); free(in[i]); free(g0[i]); }
    free(a.out); free(a.out_nograd); free(b.out); free(b.out_nograd); free(R);
    rx_ctx_destroy(registered);
    rx_ctx_destroy(explicit);
}

static void registered_equals(const char *env, rx_kernel_fn fwd, rx_kernel_fn bwd) {
    const conv_case k = {3, 8, 9, 9, 16, 3, 3, 1, 1, 1, ALL_GRADS};
    registered_equals_on(env, &k, fwd, bwd);
}

Test(conv_onednn, env_reference_runs_the_reference) {
    registered_equals("reference", cpu_conv2d_reference_fwd, cpu_conv2d_reference_bwd);
}

Test(conv_onednn, env_onednn_runs_onednn) {
    skip_without_onednn();
    registered_equals("onednn", cpu_conv2d_onednn_fwd, cpu_conv2d_onednn_bwd);
}

/* auto's rule (conv_onednn.c, auto_uses_onednn): the reference for a pointwise conv and for fewer
 * than 8 input channels, oneDNN for the rest; checked by bit-identity with each kernel pair */
Test(conv_onednn, auto_rule_pointwise_runs_the_reference) {
    skip_without_onednn();
    const conv_case k = {4, 16, 8, 8, 32, 1, 1, 1, 0, 1, ALL_GRADS};
    registered_equals_on("auto", &k, cpu_conv2d_reference_fwd, cpu_conv2d_reference_bwd);
}

Test(conv_onednn, auto_rule_stem_runs_the_reference) {
    skip_without_onednn();
    const conv_case k = {4, 3, 8, 8, 32, 3, 3, 1, 1, 1, ALL_GRADS};
    registered_equals_on("auto", &k, cpu_conv2d_reference_fwd, cpu_conv2d_reference_bwd);
}

Test(conv_onednn, auto_rule_3x3_runs_onednn) {
    skip_without_onednn();
    const conv_case k = {4, 8, 8, 8, 16, 3, 3, 2, 1, 1, ALL_GRADS};
    registered_equals_on("auto", &k, cpu_conv2d_onednn_fwd, cpu_conv2d_onednn_bwd);
}

Test(conv_onednn, env_bad_value_is_an_error_naming_it) {
    setenv("RUNEXP_CPU_CONV", "fastest", 1);
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = rx_param(c, NULL, RX_SHAPE(1, 2, 4, 4), 0), *w = rx_param(c, NULL, RX_SHAPE(2, 2, 3, 3), 0);
    cr_expect_null(rx_conv2d(c, x, w, NULL, 1, 1));
    cr_expect(strstr(rx_last_error(), "RUNEXP_CPU_CONV=fastest: expected auto, reference, onednn"), "%s", rx_last_error());
    rx_ctx_destroy(c);
}

/* which of oneDNN's implementations the quickstart's shapes get (logged; the bench notes quote them) */
Test(conv_onednn, implementations_of_quickstart_shapes) {
    skip_without_onednn();
    omp_set_num_threads(2);
    rx_ctx *c = onednn_ctx();
    static const int shapes[][6] = {{32, 3, 32, 32, 3, 1}, {32, 32, 32, 32, 3, 1}, {32, 64, 16, 16, 3, 1}, {32, 32, 32, 32, 1, 1},
                                    {32, 32, 32, 32, 3, 2}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int *s = shapes[i];
        rx_tensor *x = rx_param(c, NULL, RX_SHAPE(s[0], s[1], s[2], s[3]), 1), *w = rx_param(c, NULL, RX_SHAPE(32, s[1], s[4], s[4]), 1);
        rx_tensor *y = rx_conv2d(c, x, w, NULL, s[5], s[4] / 2);
        cr_assert(y, "%s", rx_last_error());
        for (int pass = 0; pass < 3; pass++) {
            const char *impl = cpu_conv2d_onednn_impl_name(c, c->tape, pass);
            cr_expect(impl && strcmp(impl, "unsupported"), "x [%d,%d,%d,%d] k%d s%d pass %d: %s", s[0], s[1], s[2], s[3], s[4],
                      s[5], pass, impl ? impl : rx_last_error());
            cr_log_info("x [%d,%d,%d,%d] k%d s%d pass %d: %s", s[0], s[1], s[2], s[3], s[4], s[5], pass, impl);
        }
        rx_step_end(c);
    }
    rx_ctx_destroy(c);
}
