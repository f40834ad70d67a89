/* test_ops_norm.c — group_norm and layer_norm (src/kernels/cpu/norm.c).
 * Forward reference: the defining formula (PyTorch GroupNorm / LayerNorm: biased variance,
 * eps inside the square root) computed in double in this file. Backward reference: central
 * finite differences (tests/gradcheck.h). */
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
