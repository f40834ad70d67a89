/* test_cuda_lt.c — the linear layers' forward through cuBLASLt (dense.cu: cublasLtMatmul with the
 * bias fused as CUBLASLT_EPILOGUE_BIAS, one heuristic algorithm per shape), against the CPU linear
 * kernel (the reference backend, gradchecked and checked against PyTorch in tests/test_ops_*.c),
 * forward and backward (the backward stays on cuBLAS), with cuda_parity.h's poisoned outputs:
 *   - odd shapes (R, out, in not multiples of 8), 2-D and 3-D x, with and without bias, in > 256
 *     (the emulator's split-K algorithm then asks for a workspace), one row;
 *   - fp32 (TOL_FP32 = 1e-5), TF32 (CUBLAS_COMPUTE_32F_FAST_TF32: TOL_TF32 = 2e-3), bf16 operands
 *     on inputs already rounded to bf16 (fp32 results, so TOL_FP32) and on fp32 inputs (TOL_BF16 =
 *     1e-2, and the forward's error above TOL_BF16_SEEN = 1e-4: bf16 math did run);
 *   - every shape got a cuBLASLt plan with an algorithm (rx_cuda_lt_info: no fallback to the GEMM
 *     path), made once: a second run of the same shapes adds none unless a pointer's alignment
 *     differs (plans are per alignment, which the heuristic is told);
 *   - two biases on one cached plan: each call adds its own (the bias pointer is set per call);
 *   - a captured linear (CUDA graph) replays the eager result bit for bit.
 * Runs in the emulator (tests/cuda/emu: include/cublasLt.h) without a GPU; skips without a device. */
#include "cuda_parity.h"

static const double TOL_FP32 = 1e-5, TOL_TF32 = 2e-3, TOL_BF16 = 1e-2, TOL_BF16_SEEN = 1e-4;

static rx_tensor *f_linear(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_linear(c, in[0], in[1], in[2]); }

static const px_case lt_cases[] = {
    {"linear 7x13->5 bias", f_linear, NULL, 3, {PX_X(7, 13), PX_X(5, 13), PX_X(5)}},
    {"linear 23x29->37 no bias", f_linear, NULL, 3, {PX_X(23, 29), PX_X(37, 29), PX_NONE}},
    {"linear 3-D 3x5x19->11 bias", f_linear, NULL, 3, {PX_X(3, 5, 19), PX_X(11, 19), PX_X(11)}},
    {"linear 9x301->15 bias (split-K workspace)", f_linear, NULL, 3, {PX_X(9, 301), PX_X(15, 301), PX_X(15)}},
    {"linear 1 row 1x17->3 bias", f_linear, NULL, 3, {PX_X(1, 17), PX_X(3, 17), PX_X(3)}},
    {"linear 33x64->129 bias", f_linear, NULL, 3, {PX_X(33, 64), PX_X(129, 64), PX_X(129)}},
};

static int lt_plans(const px_pair *p, int *fallbacks) {
    int plans = 0;
    cr_assert(rx_cuda_lt_info);
    cr_assert_eq(rx_cuda_lt_info(p->gpu, &plans, fallbacks), RX_OK, "%s", rx_last_error());
    return plans;
}

/* every case at tolerance tol; each one made cuBLASLt plans with an algorithm */
static void run_cases(px_pair *p, double tol) {
    for (int i = 0; i < PX_COUNT(lt_cases); i++) px_run(p, &lt_cases[i], 1000 + (uint64_t)i * 17, tol);
    int fallbacks = -1;
    const int plans = lt_plans(p, &fallbacks);
    cr_expect_geq(plans, PX_COUNT(lt_cases), "%d cuBLASLt plans for %d shapes", plans, PX_COUNT(lt_cases));
    cr_expect_eq(fallbacks, 0, "%d shapes found no cuBLASLt algorithm", fallbacks);
}

Test(cuda_lt, linear_fp32) {
    px_pair p;
    px_open(&p, RX_PRECISION_FP32, 0);
    run_cases(&p, TOL_FP32);
    px_close(&p);
}

Test(cuda_lt, linear_tf32) {
    px_pair p;
    px_open(&p, RX_PRECISION_TF32, 0);
    run_cases(&p, TOL_TF32);
    px_close(&p);
}

Test(cuda_lt, linear_bf16_on_bf16_inputs) {
    px_pair p;
    px_open(&p, RX_PRECISION_BF16, 0);
    p.round_bf16 = 1;
    run_cases(&p, TOL_FP32);
    px_close(&p);
}

Test(cuda_lt, linear_bf16_on_fp32_inputs_runs_bf16) {
    px_pair p;
    px_open(&p, RX_PRECISION_BF16, 0);
    for (int i = 0; i < PX_COUNT(lt_cases); i++) {
        const px_result r = px_run(&p, &lt_cases[i], 1000 + (uint64_t)i * 17, TOL_BF16);
        cr_expect_gt(r.out_err, TOL_BF16_SEEN, "%s: forward error %.3g: as small as fp32's, so bf16 did not run",
                     lt_cases[i].name, r.out_err);
    }
    int fallbacks = -1;
    cr_expect_geq(lt_plans(&p, &fallbacks), PX_COUNT(lt_cases));
    cr_expect_eq(fallbacks, 0);
    px_close(&p);
}

/* the algorithm is chosen once per shape: the same inputs again (same places in the arenas: the
 * step arena is reset, and the parameters are made in the same order after a fresh context)
 * make no new plan */
Test(cuda_lt, plans_are_made_once_per_shape) {
    px_pair p;
    px_open(&p, RX_PRECISION_FP32, 0);
    const px_case *k = &lt_cases[3];
    px_run(&p, k, 5, TOL_FP32);
    const int first = lt_plans(&p, NULL);
    cr_expect_geq(first, 1);
    for (int round = 0; round < 3; round++) px_run(&p, k, 6 + round, TOL_FP32);
    const int later = lt_plans(&p, NULL);
    /* px_run makes new parameters each time: a new plan only for a new pointer alignment (<= 256
     * bytes: at most a few classes), never one per call */
    cr_expect_leq(later, first + 3, "%d plans after 4 runs of one shape", later);
    cr_log_info("one shape, 4 runs: %d cuBLASLt plan(s)", later);
    px_close(&p);
}

/* y = x wᵀ + b on the host, in double */
static void host_linear(const float *x, const float *w, const float *b, float *y, int R, int out, int in) {
    for (int r = 0; r < R; r++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++) s += (double)x[r * in + i] * w[o * in + i];
            y[r * out + o] = (float)s;
        }
}

static rx_tensor *upload(rx_ctx *c, int ndim, const int64_t *shape, const float *h) {
    rx_tensor *t = rx_param(c, NULL, ndim, shape, 0);
    cr_assert(t, "%s", rx_last_error());
    cr_assert_eq(rx_tensor_from_host(c, t, h), RX_OK, "%s", rx_last_error());
    return t;
}

/* two biases of one size (64 floats each: the same alignment when their addresses differ by a
 * multiple of 256) through one shape: each result has its own bias (reference: the host sum) */
Test(cuda_lt, each_call_adds_its_own_bias) {
    px_pair p;
    px_open(&p, RX_PRECISION_FP32, 0);
    enum { R = 5, OUT = 64, IN = 24 };
    float x[R * IN], w[OUT * IN], b[2][OUT], ref[R * OUT], got[R * OUT];
    rx_rng_normal(1, RX_STREAM(RX_RNG_TEST, 1), 0, x, R * IN);
    rx_rng_normal(1, RX_STREAM(RX_RNG_TEST, 2), 0, w, OUT * IN);
    rx_rng_normal(1, RX_STREAM(RX_RNG_TEST, 3), 0, b[0], OUT);
    for (int o = 0; o < OUT; o++) b[1][o] = 100.0f + (float)o;   /* far from b[0]: a stale bias shows */
    rx_ctx *c = p.gpu;
    rx_set_grad_enabled(c, 0);
    rx_tensor *xt = upload(c, RX_SHAPE(R, IN), x), *wt = upload(c, RX_SHAPE(OUT, IN), w);
    rx_tensor *bt[4];
    for (int k = 0; k < 4; k++) bt[k] = upload(c, RX_SHAPE(OUT), b[k % 2]);   /* 0, 2 and 1, 3: same values */
    for (int k = 0; k < 4; k++) {
        rx_tensor *y = rx_linear(c, xt, wt, bt[k]);
        cr_assert(y, "%s", rx_last_error());
        cr_assert_eq(rx_tensor_to_host(c, y, got), RX_OK, "%s", rx_last_error());
        host_linear(x, w, b[k % 2], ref, R, OUT, IN);
        const double err = rx_rel_err(got, ref, R * OUT);
        cr_expect_leq(err, TOL_FP32, "call %d (bias %d): relative error %.3g", k, k % 2, err);
        rx_step_end(c);
    }
    int fallbacks = -1;
    const int plans = lt_plans(&p, &fallbacks);
    cr_expect(plans >= 1 && plans <= 4 && fallbacks == 0, "%d plans, %d fallbacks", plans, fallbacks);
    cr_log_info("4 biases of one shape: %d cuBLASLt plan(s) (one per alignment)", plans);
    px_close(&p);
}

/* a linear captured into a CUDA graph (after an eager warm-up: plan chosen, slots grown) replays
 * the eager result bit for bit, in each precision */
Test(cuda_lt, captured_linear_replays_the_eager_result) {
    for (int prec = 0; prec < RX_PRECISION_COUNT; prec++) {
        px_pair p;
        px_open(&p, prec, 0);
        cr_assert(rx_cuda_graph_begin && rx_cuda_graph_end && rx_cuda_graph_launch && rx_cuda_graph_free);
        enum { R = 11, OUT = 13, IN = 300 };
        static float x[R * IN], w[OUT * IN], b[OUT], eager[R * OUT], replay[R * OUT];
        rx_rng_normal(2, RX_STREAM(RX_RNG_TEST, 1), 0, x, R * IN);
        rx_rng_normal(2, RX_STREAM(RX_RNG_TEST, 2), 0, w, OUT * IN);
        rx_rng_normal(2, RX_STREAM(RX_RNG_TEST, 3), 0, b, OUT);
        rx_ctx *c = p.gpu;
        rx_set_grad_enabled(c, 0);
        rx_tensor *xt = upload(c, RX_SHAPE(R, IN), x), *wt = upload(c, RX_SHAPE(OUT, IN), w), *bt = upload(c, RX_SHAPE(OUT), b);
        rx_tensor *y = rx_linear(c, xt, wt, bt);
        cr_assert(y, "%s", rx_last_error());
        cr_assert_eq(rx_tensor_to_host(c, y, eager), RX_OK, "%s", rx_last_error());
        rx_step_end(c);
        rx_cuda_graph *g = NULL;
        cr_assert_eq(rx_cuda_graph_begin(c), RX_OK, "%s", rx_last_error());
        y = rx_linear(c, xt, wt, bt);
        cr_assert_eq(rx_cuda_graph_end(c, &g), RX_OK, "capture: %s", rx_last_error());
        cr_assert(y);
        cr_assert_eq(rx_tensor_fill(c, y, NAN), RX_OK, "%s", rx_last_error());   /* the replay must write it */
        cr_assert_eq(rx_cuda_graph_launch(c, g), RX_OK, "%s", rx_last_error());
        cr_assert_eq(rx_tensor_to_host(c, y, replay), RX_OK, "%s", rx_last_error());
        cr_expect_eq(memcmp(eager, replay, sizeof eager), 0, "precision %d: the replay differs from the eager call", prec);
        rx_cuda_graph_free(g);
        rx_step_end(c);
        px_close(&p);
    }
}
