/* test_ops_norm.c — group_norm and layer_norm (src/kernels/cpu/norm.c).
 * Forward reference: the defining formula (PyTorch GroupNorm / LayerNorm: biased variance,
 * eps inside the square root) computed in double in this file. Backward reference: central
 * finite differences (tests/gradcheck.h). group_norm_silu: the unfused chain of those ops, and
 * finite differences. */
#include "gradcheck.h"

/* y = (x - mean) / sqrt(var + eps) * gamma + beta over runs of `n` elements; `ch_of(i)` gives
 * the affine index of element i of a run (channel for group_norm, feature for layer_norm) */
static void norm_ref(const float *x, int64_t runs, int64_t n, int64_t per_ch, int64_t n_ch_in_run, int64_t ch_period,
                     const float *gamma, const float *beta, double eps, float *y) {
    for (int64_t r = 0; r < runs; r++) {
        const float *xr = x + r * n;
        double m = 0, v = 0;
        for (int64_t i = 0; i < n; i++) m += xr[i];
        m /= n;
        for (int64_t i = 0; i < n; i++) v += (xr[i] - m) * (xr[i] - m);
        v /= n;
        for (int64_t i = 0; i < n; i++) {
            // channel of element i: run r covers channels (r % ch_period) * n_ch_in_run + i / per_ch
            const int64_t ch = (r % ch_period) * n_ch_in_run + i / per_ch;
            double yi = (xr[i] - m) / sqrt(v + eps);
            if (gamma) yi *= gamma[ch];
            if (beta) yi += beta[ch];
            y[r * n + i] = (float)yi;
        }
    }
}

static float *host(rx_ctx *c, const rx_tensor *t) {
    float *h = malloc(t->numel * sizeof(float));
    cr_assert_eq(rx_tensor_to_host(c, t, h), RX_OK);
    return h;
}

// ---------------------------------------------------------------------------- group_norm

typedef struct { int groups; int affine; } gn_args;

static rx_tensor *f_group_norm(rx_ctx *c, rx_tensor **in, void *ud) {
    const gn_args *a = ud;
    return rx_group_norm(c, in[0], a->affine ? in[1] : NULL, a->affine ? in[2] : NULL, a->groups, 1e-5f);
}

/* x [B,C,S...] with G groups, compared against norm_ref; offset shifts x to test a large mean */
static void check_group_norm_forward(int ndim, const int64_t *shape, int G, int affine, float offset, double tol) {
    rx_ctx *c = rx_test_cpu_ctx();
    const int64_t C = shape[1];
    rx_tensor *x = rx_param(c, "x", ndim, shape, 0);
    rx_tensor *g = rx_param(c, "g", RX_SHAPE(C), 0), *b = rx_param(c, "b", RX_SHAPE(C), 0);
    rx_test_randn(c, x, 11, 2.0f);
    rx_test_randn(c, g, 12, 1.0f);
    rx_test_randn(c, b, 13, 1.0f);
    float *xh = host(c, x);
    for (int64_t i = 0; i < x->numel; i++) xh[i] += offset;
    rx_tensor_from_host(c, x, xh);
    float *gh = host(c, g), *bh = host(c, b);
    rx_tensor *y = rx_group_norm(c, x, affine ? g : NULL, affine ? b : NULL, G, 1e-5f);
    cr_assert(y, "%s", rx_last_error());
    cr_assert(rx_same_shape(x, y));
    float *yh = host(c, y), *ref = malloc(x->numel * sizeof(float));
    const int64_t S = x->numel / (shape[0] * C), Cg = C / G;
    norm_ref(xh, shape[0] * G, Cg * S, S, Cg, G, affine ? gh : NULL, affine ? bh : NULL, 1e-5, ref);
    double e = rx_rel_err(yh, ref, x->numel);
    cr_expect_lt(e, tol, "group_norm forward rel err %g (offset %g)", e, offset);
    // saved statistics: mean per (b,g) is what the formula says
    free(xh); free(gh); free(bh); free(yh); free(ref);
    rx_ctx_destroy(c);
}

Test(group_norm, forward_matches_formula) {
    check_group_norm_forward(RX_SHAPE(3, 6, 5, 7), 3, 1, 0.0f, 2e-6);      // 4-D, affine
    check_group_norm_forward(RX_SHAPE(2, 8, 9), 2, 0, 0.0f, 2e-6);         // 3-D (any spatial dims), no affine
    check_group_norm_forward(RX_SHAPE(2, 4, 3, 3, 2), 4, 1, 0.0f, 2e-6);   // 5-D, one channel per group
    check_group_norm_forward(RX_SHAPE(2, 6, 1, 1), 1, 1, 0.0f, 2e-6);      // G = 1 over channels only
    // mean 300, std 2: the float mean alone is off by up to ulp(300)/2 = 1.5e-5, i.e. 8e-6 of
    // one std, so 2e-5 is float's limit here; a one-pass E[x²]-mu² variance would be off by ~1e-2
    check_group_norm_forward(RX_SHAPE(2, 6, 33, 31), 3, 1, 300.0f, 2e-5);
}

Test(group_norm, backward_gradcheck) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[3] = {rx_param(c, "x", RX_SHAPE(2, 6, 3, 5), 1), rx_param(c, "g", RX_SHAPE(6), 1),
                        rx_param(c, "b", RX_SHAPE(6), 1)};
    rx_test_randn(c, in[0], 21, 1.0f);
    rx_test_randn(c, in[1], 22, 1.0f);
    rx_test_randn(c, in[2], 23, 1.0f);
    gn_args a = {3, 1};
    rx_gradcheck(c, f_group_norm, &a, 3, in, 1e-2, 5e-4, 2e-3, 200);
    a.affine = 0;
    rx_gradcheck(c, f_group_norm, &a, 1, in, 1e-2, 5e-4, 2e-3, 200);
    rx_ctx_destroy(c);
}

Test(group_norm, backward_gradcheck_3d_x_only) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[3] = {rx_param(c, "x", RX_SHAPE(3, 4, 7), 1), rx_param(c, "g", RX_SHAPE(4), 0),
                        rx_param(c, "b", RX_SHAPE(4), 1)};
    rx_test_randn(c, in[0], 31, 1.5f);
    rx_test_randn(c, in[1], 32, 1.0f);
    rx_test_randn(c, in[2], 33, 1.0f);
    gn_args a = {2, 1};   // gamma without grad: only x and beta get gradients
    rx_gradcheck(c, f_group_norm, &a, 3, in, 1e-2, 5e-4, 2e-3, 200);
    rx_ctx_destroy(c);
}

/* backward ADDS into input grads: a second forward+backward without zeroing doubles them
 * (reference: the first pass's gradient, x2) */
Test(group_norm, backward_accumulates) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(2, 4, 5), 1), *g = rx_param(c, "g", RX_SHAPE(4), 1);
    rx_test_randn(c, x, 41, 1.0f);
    rx_test_randn(c, g, 42, 1.0f);
    float gx[2][40], gg[2][4], R[40];
    rx_rng_normal(5, 5, 0, R, 40);
    for (int pass = 0; pass < 2; pass++) {
        rx_tensor *y = rx_group_norm(c, x, g, NULL, 2, 1e-5f);
        cr_assert_eq(rx_backward_with(c, y, rx_from_host(c, RX_SHAPE(2, 4, 5), R)), RX_OK, "%s", rx_last_error());
        rx_tensor_to_host(c, x->grad, gx[pass]);
        rx_tensor_to_host(c, g->grad, gg[pass]);
        rx_step_end(c);
    }
    for (int i = 0; i < 40; i++) gx[0][i] *= 2;
    for (int i = 0; i < 4; i++) gg[0][i] *= 2;
    cr_expect_lt(rx_rel_err(gx[1], gx[0], 40), 1e-6);
    cr_expect_lt(rx_rel_err(gg[1], gg[0], 4), 1e-6);
    rx_ctx_destroy(c);
}

Test(group_norm, shape_errors_name_op_and_shapes) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(2, 6, 4, 4), 0), *g = rx_param(c, "g", RX_SHAPE(5), 0);
    cr_expect_null(rx_group_norm(c, x, NULL, NULL, 4, 1e-5f));
    cr_expect(strstr(rx_last_error(), "group_norm: x [2,6,4,4]: C=6 not divisible by groups=4"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_group_norm(c, x, g, NULL, 3, 1e-5f));
    cr_expect(strstr(rx_last_error(), "group_norm: x [2,6,4,4] needs gamma [6], got [5]"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_group_norm(c, x, NULL, NULL, 3, 0.0f));
    cr_expect(strstr(rx_last_error(), "eps"), "%s", rx_last_error());
    rx_ctx_destroy(c);
}

// ---------------------------------------------------------------------------- layer_norm

static rx_tensor *f_layer_norm(rx_ctx *c, rx_tensor **in, void *ud) {
    const int affine = *(const int *)ud;
    return rx_layer_norm(c, in[0], affine ? in[1] : NULL, affine ? in[2] : NULL, 1e-6f);
}

Test(layer_norm, forward_matches_formula) {
    for (int affine = 0; affine < 2; affine++) {
        rx_ctx *c = rx_test_cpu_ctx();
        rx_tensor *x = rx_param(c, "x", RX_SHAPE(2, 5, 37), 0);
        rx_tensor *g = rx_param(c, "g", RX_SHAPE(37), 0), *b = rx_param(c, "b", RX_SHAPE(37), 0);
        rx_test_randn(c, x, 51, 3.0f);
        rx_test_randn(c, g, 52, 1.0f);
        rx_test_randn(c, b, 53, 1.0f);
        float *xh = host(c, x), *gh = host(c, g), *bh = host(c, b);
        rx_tensor *y = rx_layer_norm(c, x, affine ? g : NULL, affine ? b : NULL, 1e-6f);
        cr_assert(y, "%s", rx_last_error());
        float *yh = host(c, y), *ref = malloc(x->numel * sizeof(float));
        // layer_norm runs are rows of D; the affine index is the position in the row
        norm_ref(xh, 10, 37, 1, 37, 1, affine ? gh : NULL, affine ? bh : NULL, 1e-6, ref);
        double e = rx_rel_err(yh, ref, x->numel);
        cr_expect_lt(e, 2e-6, "layer_norm forward (affine %d) rel err %g", affine, e);
        free(xh); free(gh); free(bh); free(yh); free(ref);
        rx_ctx_destroy(c);
    }
}

Test(layer_norm, backward_gradcheck) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[3] = {rx_param(c, "x", RX_SHAPE(3, 4, 9), 1), rx_param(c, "g", RX_SHAPE(9), 1),
                        rx_param(c, "b", RX_SHAPE(9), 1)};
    rx_test_randn(c, in[0], 61, 1.0f);
    rx_test_randn(c, in[1], 62, 1.0f);
    rx_test_randn(c, in[2], 63, 1.0f);
    int affine = 1;
    rx_gradcheck(c, f_layer_norm, &affine, 3, in, 1e-2, 5e-4, 2e-3, 200);
    affine = 0;
    rx_gradcheck(c, f_layer_norm, &affine, 1, in, 1e-2, 5e-4, 2e-3, 200);
    rx_ctx_destroy(c);
}

Test(layer_norm, shape_errors_name_op_and_shapes) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(2, 3, 8), 0), *b = rx_param(c, "b", RX_SHAPE(3), 0);
    cr_expect_null(rx_layer_norm(c, x, NULL, b, 1e-6f));
    cr_expect(strstr(rx_last_error(), "layer_norm: x [2,3,8] needs beta [8], got [3]"), "%s", rx_last_error());
    rx_ctx_destroy(c);
}

/* tensors past the threading threshold take the OpenMP paths (per-thread dgamma partials);
 * a few sampled elements against finite differences (looser atol: L sums 4e4 float terms) */
Test(norm, large_tensors_threaded_paths_gradcheck) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[3] = {rx_param(c, "x", RX_SHAPE(2, 8, 48, 48), 1), rx_param(c, "g", RX_SHAPE(8), 1),
                        rx_param(c, "b", RX_SHAPE(8), 1)};
    rx_test_randn(c, in[0], 71, 1.0f);
    rx_test_randn(c, in[1], 72, 1.0f);
    rx_test_randn(c, in[2], 73, 1.0f);
    gn_args a = {4, 1};
    rx_gradcheck(c, f_group_norm, &a, 3, in, 1e-2, 3e-3, 2e-3, 12);
    rx_tensor *ln[3] = {rx_param(c, "lx", RX_SHAPE(4, 256, 48), 1), rx_param(c, "lg", RX_SHAPE(48), 1),
                        rx_param(c, "lb", RX_SHAPE(48), 1)};
    rx_test_randn(c, ln[0], 74, 1.0f);
    rx_test_randn(c, ln[1], 75, 1.0f);
    rx_test_randn(c, ln[2], 76, 1.0f);
    int affine = 1;
    rx_gradcheck(c, f_layer_norm, &affine, 3, ln, 1e-2, 3e-3, 2e-3, 12);
    rx_ctx_destroy(c);
}

// ---------------------------------------------------------------------------- group_norm_silu
// References: the unfused chain of the existing (tested) ops, rx_silu(rx_group_norm(rx_add(x,
// shift viewed [B,C,1,1]))) on the same inputs, forward and every input gradient; and central
// finite differences (gradcheck.h).

typedef struct { int groups; int affine; int shift; } gns_args;

static rx_tensor *f_gns_fused(rx_ctx *c, rx_tensor **in, void *ud) {
    const gns_args *a = ud;
    return rx_group_norm_silu(c, in[0], a->affine ? in[1] : NULL, a->affine ? in[2] : NULL, a->shift ? in[3] : NULL,
                              a->groups, 1e-5f);
}

static rx_tensor *f_gns_chain(rx_ctx *c, rx_tensor **in, void *ud) {
    const gns_args *a = ud;
    rx_tensor *u = in[0];
    if (a->shift) {
        int64_t sh[RX_MAX_DIMS];
        for (int k = 0; k < in[0]->ndim; k++) sh[k] = k < 2 ? in[0]->shape[k] : 1;
        u = rx_add(c, u, rx_reshape(c, in[3], in[0]->ndim, sh));
    }
    return rx_silu(c, rx_group_norm(c, u, a->affine ? in[1] : NULL, a->affine ? in[2] : NULL, a->groups, 1e-5f));
}

/* output and the 4 input gradients of f (grads start from zero), host copies */
typedef struct { float *y, *g[4]; } gns_run;

static gns_run gns_eval(rx_ctx *c, rx_gc_fn f, gns_args *a, rx_tensor **in, const float *R) {
    gns_run r = {0};
    for (int k = 0; k < 4; k++) cr_assert_eq(rx_tensor_fill(c, in[k]->grad, 0.0f), RX_OK);
    rx_tensor *y = f(c, in, a);
    cr_assert(y, "%s", rx_last_error());
    r.y = host(c, y);
    cr_assert_eq(rx_backward_with(c, y, rx_from_host(c, y->ndim, y->shape, R)), RX_OK, "%s", rx_last_error());
    for (int k = 0; k < 4; k++) r.g[k] = host(c, in[k]->grad);
    rx_step_end(c);
    return r;
}

/* x [B,C,S...] (+ offset), gamma, beta [C], shift [B,C]: fused against the chain */
static void check_gns_vs_chain(int ndim, const int64_t *shape, int G, int affine, int shift, float offset, double tol) {
    rx_ctx *c = rx_test_cpu_ctx();
    const int64_t B = shape[0], C = shape[1];
    rx_tensor *in[4] = {rx_param(c, "x", ndim, shape, 1), rx_param(c, "g", RX_SHAPE(C), 1),
                        rx_param(c, "b", RX_SHAPE(C), 1), rx_param(c, "t", RX_SHAPE(B, C), 1)};
    rx_test_randn(c, in[0], 81, 2.0f);
    rx_test_randn(c, in[1], 82, 1.0f);
    rx_test_randn(c, in[2], 83, 1.0f);
    rx_test_randn(c, in[3], 84, 1.5f);
    float *xh = host(c, in[0]);
    for (int64_t i = 0; i < in[0]->numel; i++) xh[i] += offset;
    rx_tensor_from_host(c, in[0], xh);
    float *R = malloc(in[0]->numel * sizeof(float));
    rx_rng_normal(85, RX_STREAM(RX_RNG_TEST, 7), 0, R, in[0]->numel);
    gns_args a = {G, affine, shift};
    gns_run f = gns_eval(c, f_gns_fused, &a, in, R), ch = gns_eval(c, f_gns_chain, &a, in, R);
    double e = rx_rel_err(f.y, ch.y, in[0]->numel);
    cr_expect_lt(e, tol, "group_norm_silu forward vs chain: rel err %g (G %d affine %d shift %d)", e, G, affine, shift);
    const char *nm[4] = {"x", "gamma", "beta", "shift"};
    for (int k = 0; k < 4; k++) {
        const int used = k == 0 || (k < 3 && affine) || (k == 3 && shift);
        e = rx_rel_err(f.g[k], ch.g[k], in[k]->numel);
        if (used && k == 3 && C / G == 1) {
            // one channel per group: dshift = Σ_s dx over the group, 0 in exact arithmetic (a norm's
            // dx sums to zero), so both sides are rounding noise: bound it by the summed terms' scale
            double mx = 0, md = 0;
            for (int64_t i = 0; i < in[0]->numel; i++) mx = fmax(mx, fabs(ch.g[0][i]));
            for (int64_t i = 0; i < in[3]->numel; i++) md = fmax(md, fabs(f.g[3][i]) + fabs(ch.g[3][i]));
            cr_expect_lt(md, tol * mx * (in[0]->numel / (B * C)), "dshift %g should be ~0 (max |dx| %g)", md, mx);
        } else if (used) cr_expect_lt(e, tol, "d%s vs chain: rel err %g (G %d affine %d shift %d)", nm[k], e, G, affine, shift);
        else {   // an input the op was not given gets no gradient
            for (int64_t i = 0; i < in[k]->numel; i++) cr_expect_eq(f.g[k][i], 0.0f, "d%s[%lld] should be 0", nm[k], (long long)i);
        }
    }
    for (int k = 0; k < 4; k++) { free(f.g[k]); free(ch.g[k]); }
    free(f.y); free(ch.y); free(xh); free(R);
    rx_ctx_destroy(c);
}

Test(group_norm_silu, matches_the_unfused_chain) {
    check_gns_vs_chain(RX_SHAPE(3, 6, 5, 7), 3, 1, 1, 0.0f, 2e-5);      // the resnet's norm2: shift + affine
    check_gns_vs_chain(RX_SHAPE(2, 8, 4, 4), 4, 1, 0, 0.0f, 2e-5);      // norm1: no shift
    check_gns_vs_chain(RX_SHAPE(2, 8, 9), 2, 0, 1, 0.0f, 2e-5);         // 3-D, no affine
    check_gns_vs_chain(RX_SHAPE(2, 4, 3, 3, 2), 4, 1, 1, 0.0f, 2e-5);   // 5-D, one channel per group
    // mean 300: the two-pass variance of x + shift (the chain rounds x + shift to float first,
    // ulp(300)/2 = 1.5e-5 of a std-2 input: 8e-6 relative, amplified by the norm's backward)
    check_gns_vs_chain(RX_SHAPE(2, 6, 17, 15), 3, 1, 1, 300.0f, 2e-4);
}

/* past the threading threshold: the OpenMP region with per-thread dz buffers */
Test(group_norm_silu, large_tensors_threaded_path_matches_the_chain) {
    check_gns_vs_chain(RX_SHAPE(4, 64, 32, 32), 32, 1, 1, 0.0f, 2e-5);   // cfg_cifar32's first level
    check_gns_vs_chain(RX_SHAPE(2, 8, 48, 48), 4, 1, 0, 0.0f, 2e-5);
}

Test(group_norm_silu, backward_gradcheck) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[4] = {rx_param(c, "x", RX_SHAPE(2, 6, 3, 5), 1), rx_param(c, "g", RX_SHAPE(6), 1),
                        rx_param(c, "b", RX_SHAPE(6), 1), rx_param(c, "t", RX_SHAPE(2, 6), 1)};
    rx_test_randn(c, in[0], 91, 1.0f);
    rx_test_randn(c, in[1], 92, 1.0f);
    rx_test_randn(c, in[2], 93, 1.0f);
    rx_test_randn(c, in[3], 94, 1.0f);
    gns_args a = {3, 1, 1};
    rx_gradcheck(c, f_gns_fused, &a, 4, in, 1e-2, 5e-4, 2e-3, 200);
    a = (gns_args){2, 0, 0};
    rx_gradcheck(c, f_gns_fused, &a, 1, in, 1e-2, 5e-4, 2e-3, 200);
    rx_ctx_destroy(c);
}

/* backward ADDS into input grads (reference: one pass's gradient, x2) */
Test(group_norm_silu, backward_accumulates) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[4] = {rx_param(c, "x", RX_SHAPE(2, 4, 5), 1), rx_param(c, "g", RX_SHAPE(4), 1),
                        rx_param(c, "b", RX_SHAPE(4), 1), rx_param(c, "t", RX_SHAPE(2, 4), 1)};
    for (int k = 0; k < 4; k++) rx_test_randn(c, in[k], 95 + k, 1.0f);
    float R[40], g[2][4][40];
    rx_rng_normal(6, 6, 0, R, 40);
    for (int k = 0; k < 4; k++) rx_tensor_fill(c, in[k]->grad, 0.0f);
    for (int pass = 0; pass < 2; pass++) {
        rx_tensor *y = rx_group_norm_silu(c, in[0], in[1], in[2], in[3], 2, 1e-5f);
        cr_assert_eq(rx_backward_with(c, y, rx_from_host(c, RX_SHAPE(2, 4, 5), R)), RX_OK, "%s", rx_last_error());
        for (int k = 0; k < 4; k++) rx_tensor_to_host(c, in[k]->grad, g[pass][k]);
        rx_step_end(c);
    }
    for (int k = 0; k < 4; k++) {
        for (int64_t i = 0; i < in[k]->numel; i++) g[0][k][i] *= 2;
        cr_expect_lt(rx_rel_err(g[1][k], g[0][k], in[k]->numel), 1e-6, "input %d", k);
    }
    rx_ctx_destroy(c);
}

Test(group_norm_silu, shape_errors_name_op_and_shapes) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(2, 6, 4, 4), 0), *t = rx_param(c, "t", RX_SHAPE(2, 5), 0);
    cr_expect_null(rx_group_norm_silu(c, x, NULL, NULL, t, 3, 1e-5f));
    cr_expect(strstr(rx_last_error(), "group_norm_silu: x [2,6,4,4] needs shift [2,6], got [2,5]"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_group_norm_silu(c, x, NULL, NULL, NULL, 4, 1e-5f));
    cr_expect(strstr(rx_last_error(), "group_norm_silu: x [2,6,4,4]: C=6 not divisible by groups=4"), "%s", rx_last_error());
    rx_ctx_destroy(c);
}
