/* test_ops_loss.c — sum, mean, mse_loss, cross_entropy (src/kernels/cpu/loss.c).
 * Forward reference: the defining formulas computed in double in this file (PyTorch
 * semantics: MSELoss reduction='mean' per example, CrossEntropyLoss reduction='mean').
 * Backward reference: central finite differences (tests/gradcheck.h). */
#include "gradcheck.h"

static float *host(rx_ctx *c, const rx_tensor *t) {
    float *h = malloc(t->numel * sizeof(float));
    cr_assert_eq(rx_tensor_to_host(c, t, h), RX_OK);
    return h;
}

static float scalar(rx_ctx *c, const rx_tensor *t) {
    cr_assert(t, "%s", rx_last_error());
    cr_assert_eq(t->numel, 1);
    float v;
    cr_assert_eq(rx_tensor_to_host(c, t, &v), RX_OK);
    return v;
}

// ---------------------------------------------------------------------------- sum, mean

static rx_tensor *f_sum(rx_ctx *c, rx_tensor **in, void *ud) { return rx_sum(c, in[0]); }
static rx_tensor *f_mean(rx_ctx *c, rx_tensor **in, void *ud) { return rx_mean(c, in[0]); }

Test(sum_mean, forward_matches_double_sum) {
    rx_ctx *c = rx_test_cpu_ctx();
    // 3e5 elements: past the threading threshold; a float running sum would drift ~1e-4 relative
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(3, 100003), 0);
    rx_test_randn(c, x, 1, 1.0f);
    float *xh = host(c, x);
    for (int64_t i = 0; i < x->numel; i++) xh[i] += 0.25f;
    rx_tensor_from_host(c, x, xh);
    double ref = 0;
    for (int64_t i = 0; i < x->numel; i++) ref += xh[i];
    const float s = scalar(c, rx_sum(c, x)), m = scalar(c, rx_mean(c, x));
    cr_expect(fabs(s - ref) <= 1e-6 * fabs(ref), "sum %.9g vs %.9g", s, ref);
    cr_expect(fabs(m - ref / x->numel) <= 1e-6 * fabs(ref / x->numel), "mean %.9g vs %.9g", m, ref / x->numel);
    free(xh);
    rx_ctx_destroy(c);
}

Test(sum_mean, backward_gradcheck) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(3, 5, 7), 1);
    rx_test_randn(c, x, 2, 1.0f);
    rx_gradcheck(c, f_sum, NULL, 1, &x, 1e-2, 2e-4, 1e-3, 200);
    rx_gradcheck(c, f_mean, NULL, 1, &x, 1e-2, 2e-5, 1e-3, 200);
    rx_ctx_destroy(c);
}

// ---------------------------------------------------------------------------- mse_loss

static rx_tensor *f_mse(rx_ctx *c, rx_tensor **in, void *ud) {
    return rx_mse_loss(c, in[0], in[1], *(int *)ud ? in[2] : NULL);
}

/* mean_b w_b mean_j (p - t)² */
static double mse_ref(const float *p, const float *t, const float *w, int64_t B, int64_t M) {
    double L = 0;
    for (int64_t b = 0; b < B; b++) {
        double s = 0;
        for (int64_t j = 0; j < M; j++) s += ((double)p[b * M + j] - t[b * M + j]) * ((double)p[b * M + j] - t[b * M + j]);
        L += (w ? w[b] : 1.0) * s / M;
    }
    return L / B;
}

Test(mse_loss, forward_matches_formula) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *p = rx_param(c, "p", RX_SHAPE(5, 3, 9, 7), 0), *t = rx_param(c, "t", RX_SHAPE(5, 3, 9, 7), 0);
    rx_tensor *w = rx_param(c, "w", RX_SHAPE(5), 0);
    rx_test_randn(c, p, 3, 1.0f);
    rx_test_randn(c, t, 4, 1.0f);
    rx_test_randn(c, w, 5, 1.0f);
    float *ph = host(c, p), *th = host(c, t), *wh = host(c, w);
    const double r0 = mse_ref(ph, th, NULL, 5, 189), r1 = mse_ref(ph, th, wh, 5, 189);
    const float l0 = scalar(c, rx_mse_loss(c, p, t, NULL)), l1 = scalar(c, rx_mse_loss(c, p, t, w));
    cr_expect(fabs(l0 - r0) <= 1e-6 * fabs(r0), "mse %.9g vs %.9g", l0, r0);
    cr_expect(fabs(l1 - r1) <= 1e-6 * fabs(r0), "weighted mse %.9g vs %.9g", l1, r1);
    free(ph); free(th); free(wh);
    rx_ctx_destroy(c);
}

Test(mse_loss, backward_gradcheck) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[3] = {rx_param(c, "p", RX_SHAPE(3, 2, 5), 1), rx_param(c, "t", RX_SHAPE(3, 2, 5), 1),
                        rx_param(c, "w", RX_SHAPE(3), 1)};
    for (int i = 0; i < 3; i++) rx_test_randn(c, in[i], 6 + i, 1.0f);
    int weighted = 1;
    rx_gradcheck(c, f_mse, &weighted, 3, in, 1e-2, 2e-5, 1e-3, 200);
    weighted = 0;
    rx_gradcheck(c, f_mse, &weighted, 2, in, 1e-2, 2e-5, 1e-3, 200);
    rx_ctx_destroy(c);
}

Test(mse_loss, shape_errors_name_op_and_shapes) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *p = rx_param(c, "p", RX_SHAPE(4, 3, 8, 8), 0), *t = rx_param(c, "t", RX_SHAPE(4, 3, 8, 7), 0);
    rx_tensor *w = rx_param(c, "w", RX_SHAPE(3), 0);
    cr_expect_null(rx_mse_loss(c, p, t, NULL));
    cr_expect(strstr(rx_last_error(), "mse_loss: pred [4,3,8,8] and target [4,3,8,7] differ in shape"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_mse_loss(c, p, p, w));
    cr_expect(strstr(rx_last_error(), "mse_loss: pred [4,3,8,8] needs weight [4] (one per example), got [3]"), "%s", rx_last_error());
    rx_ctx_destroy(c);
}

// ---------------------------------------------------------------------------- cross_entropy

static rx_tensor *f_ce(rx_ctx *c, rx_tensor **in, void *ud) { return rx_cross_entropy(c, in[0], in[1]); }

Test(cross_entropy, forward_matches_formula) {
    rx_ctx *c = rx_test_cpu_ctx();
    enum { B = 6, K = 10 };
    rx_tensor *lg = rx_param(c, "logits", RX_SHAPE(B, K), 0);
    rx_test_randn(c, lg, 9, 3.0f);
    float *x = host(c, lg);
    x[0] += 500.0f;   // row 0 dominated by one huge logit: needs the max-subtracted logsumexp
    rx_tensor_from_host(c, lg, x);
    const float lab[B] = {0, 3, 9, 1, 1, 7};
    double ref = 0;
    for (int b = 0; b < B; b++) {
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < K; j++) mx = fmax(mx, x[b * K + j]);
        for (int j = 0; j < K; j++) s += exp(x[b * K + j] - mx);
        ref += mx + log(s) - x[b * K + (int)lab[b]];
    }
    ref /= B;
    const float L = scalar(c, rx_cross_entropy(c, lg, rx_from_host(c, RX_SHAPE(B), lab)));
    cr_expect(fabs(L - ref) <= 1e-6 * fabs(ref), "cross-entropy %.9g vs %.9g", L, ref);
    free(x);
    rx_ctx_destroy(c);
}

Test(cross_entropy, backward_gradcheck) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[2] = {rx_param(c, "logits", RX_SHAPE(5, 7), 1), rx_param(c, "labels", RX_SHAPE(5), 0)};
    rx_test_randn(c, in[0], 10, 2.0f);
    const float lab[5] = {6, 0, 2, 2, 5};
    rx_tensor_from_host(c, in[1], lab);
    rx_gradcheck(c, f_ce, NULL, 2, in, 1e-2, 2e-5, 1e-3, 200);
    rx_ctx_destroy(c);
}

Test(cross_entropy, bad_labels_and_shapes_are_clear_errors) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *lg = rx_param(c, "logits", RX_SHAPE(3, 4), 0);
    cr_expect_null(rx_cross_entropy(c, lg, rx_from_host(c, RX_SHAPE(3), ((float[]){0, 4, 1}))));
    cr_expect(strstr(rx_last_error(), "cross_entropy: label 4 of row 1 is not a class index in [0,4)"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_cross_entropy(c, lg, rx_from_host(c, RX_SHAPE(3), ((float[]){0, 1, 2.5f}))));
    cr_expect(strstr(rx_last_error(), "label 2.5 of row 2"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_cross_entropy(c, lg, rx_from_host(c, RX_SHAPE(3), ((float[]){-1, 1, 2}))));
    cr_expect(strstr(rx_last_error(), "label -1 of row 0"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_cross_entropy(c, lg, rx_from_host(c, RX_SHAPE(4), ((float[]){0, 1, 2, 3}))));
    cr_expect(strstr(rx_last_error(), "cross_entropy: logits [3,4] needs labels [3], got [4]"), "%s", rx_last_error());
    rx_ctx_destroy(c);
}
