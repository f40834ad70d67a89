/* gradcheck.h — backward kernels against central finite differences.
 *
 * For f: inputs -> out, take L = Σ out ⊙ R with a fixed random R. The analytic
 * gradient comes from rx_backward_with(out, R); the numeric one from
 * (L(x + h e_j) - L(x - h e_j)) / 2h, with L accumulated in double on the host.
 * Inputs must be persistent (rx_param) so they survive rx_step_end between evaluations.
 * The forward runs in float32, so h is large-ish (1e-2 default) and the tolerance
 * |analytic - numeric| <= atol + rtol |numeric| reflects float32 rounding. */
#ifndef RX_GRADCHECK_H
#define RX_GRADCHECK_H

#include "testutil.h"
#include "kernels/ops.h"
#include "core/philox.h"

typedef rx_tensor *(*rx_gc_fn)(rx_ctx *c, rx_tensor **in, void *ud);

/* random N(0,1)*scale values into a tensor */
static inline void rx_test_randn(rx_ctx *c, rx_tensor *t, uint64_t seed, float scale) {
    float *h = malloc(t->numel * sizeof(float));
    rx_rng_normal(seed, RX_STREAM(RX_RNG_TEST, 0), 0, h, t->numel);
    for (int64_t i = 0; i < t->numel; i++) h[i] *= scale;
    cr_assert_eq(rx_tensor_from_host(c, t, h), RX_OK);
    free(h);
}

static inline double gc_eval(rx_ctx *c, rx_gc_fn f, rx_tensor **in, void *ud, const float *R, float *buf) {
    rx_set_grad_enabled(c, 0);
    rx_tensor *out = f(c, in, ud);
    cr_assert(out, "forward failed: %s", rx_last_error());
    cr_assert_eq(rx_tensor_to_host(c, out, buf), RX_OK);
    double L = 0;
    for (int64_t i = 0; i < out->numel; i++) L += (double)buf[i] * R[i];
    rx_step_end(c);
    rx_set_grad_enabled(c, 1);
    return L;
}

/* Checks every element of every input that requires grad (at most max_elems per input, spread evenly). */
static inline void rx_gradcheck(rx_ctx *c, rx_gc_fn f, void *ud, int n_in, rx_tensor **in,
                                double h, double atol, double rtol, int max_elems) {
    for (int k = 0; k < n_in; k++) if (in[k] && in[k]->grad) rx_tensor_fill(c, in[k]->grad, 0.0f);
    rx_tensor *out = f(c, in, ud);
    cr_assert(out, "forward failed: %s", rx_last_error());
    int64_t no = out->numel;
    float *R = malloc(no * sizeof(float)), *buf = malloc(no * sizeof(float));
    rx_rng_normal(12345, RX_STREAM(RX_RNG_TEST, 99), 0, R, no);
    rx_tensor *seed = rx_from_host(c, out->ndim, out->shape, R);
    cr_assert_eq(rx_backward_with(c, out, seed), RX_OK, "backward failed: %s", rx_last_error());
    rx_step_end(c);
    for (int k = 0; k < n_in; k++) {
        if (!in[k] || !in[k]->requires_grad) continue;
        int64_t n = in[k]->numel;
        float *x = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
        rx_tensor_to_host(c, in[k], x);
        rx_tensor_to_host(c, in[k]->grad, g);
        int64_t stride = n > max_elems ? n / max_elems : 1;
        for (int64_t j = 0; j < n; j += stride) {
            float x0 = x[j];
            x[j] = x0 + (float)h; rx_tensor_from_host(c, in[k], x);
            double lp = gc_eval(c, f, in, ud, R, buf);
            x[j] = x0 - (float)h; rx_tensor_from_host(c, in[k], x);
            double lm = gc_eval(c, f, in, ud, R, buf);
            x[j] = x0; rx_tensor_from_host(c, in[k], x);
            double num = (lp - lm) / (2 * h);
            cr_expect(fabs(g[j] - num) <= atol + rtol * fabs(num),
                      "input %d element %lld: analytic %.6g numeric %.6g", k, (long long)j, g[j], num);
        }
        free(x); free(g);
    }
    free(R); free(buf);
}

static inline rx_ctx *rx_test_cpu_ctx(void) {
    rx_ctx *c = NULL;
    cr_assert_eq(rx_ctx_create(rx_backend_cpu(), NULL, 16u << 20, &c), RX_OK);
    return c;
}

#endif
