/* test_ops_elementwise.c — add/sub/mul with broadcasting, scale, silu, exp, abs, gelu, modulate, dropout,
 * residual_add.
 * References: NumPy broadcasting evaluated in double in this file (index arithmetic per
 * element, independent of the kernel's collapsed plan); the PyTorch definitions of SiLU,
 * GELU (erf and approximate='tanh') and DiT's modulate in double; central finite
 * differences (gradcheck.h) for every backward; the Philox stream (core/philox.h) for dropout. */
#include "gradcheck.h"
#include "core/philox.h"

/* ---- NumPy broadcasting in double (the reference) ---------------------------------------- */

typedef struct { int nd; int64_t s[RX_MAX_DIMS]; } shp;

static int64_t shp_numel(shp s) { return rx_numel(s.nd, s.s); }

static shp bshape(shp a, shp b) {
    shp y = {a.nd > b.nd ? a.nd : b.nd, {0}};
    for (int k = 1; k <= y.nd; k++) {
        int64_t da = k <= a.nd ? a.s[a.nd - k] : 1, db = k <= b.nd ? b.s[b.nd - k] : 1;
        y.s[y.nd - k] = da == 1 ? db : da;
    }
    return y;
}

/* flat index into t (shape s) of output element with multi-index idx (output shape y) */
static int64_t bindex(shp t, shp y, const int64_t *idx) {
    int64_t off = 0;
    for (int d = 0; d < t.nd; d++) {
        int yd = d + (y.nd - t.nd);
        off = off * t.s[d] + (t.s[d] == 1 ? 0 : idx[yd]);
    }
    return off;
}

static void unravel(shp y, int64_t f, int64_t *idx) {
    for (int d = y.nd - 1; d >= 0; d--) { idx[d] = f % y.s[d]; f /= y.s[d]; }
}

enum { OP_ADD, OP_SUB, OP_MUL };
static double ref_bin(int op, double a, double b) { return op == OP_ADD ? a + b : op == OP_SUB ? a - b : a * b; }

static rx_tensor *run_bin(rx_ctx *c, int op, rx_tensor *a, rx_tensor *b) {
    return op == OP_ADD ? rx_add(c, a, b) : op == OP_SUB ? rx_sub(c, a, b) : rx_mul(c, a, b);
}

static rx_tensor *param_of(rx_ctx *c, shp s, uint64_t seed, int grad) {
    rx_tensor *t = rx_param(c, NULL, s.nd, s.s, grad);
    rx_test_randn(c, t, seed, 1.0f);
    return t;
}

static float *host(rx_ctx *c, const rx_tensor *t) {
    float *h = malloc(t->numel * sizeof(float));
    cr_assert_eq(rx_tensor_to_host(c, t, h), RX_OK);
    return h;
}

static const struct { shp a, b; } bcast_cases[] = {
    {{4, {2, 3, 4, 5}}, {4, {1, 3, 1, 1}}},        /* per-channel bias                  */
    {{4, {2, 3, 4, 5}}, {4, {2, 3, 1, 1}}},        /* per-sample-channel (time emb)     */
    {{3, {3, 1, 1}}, {4, {2, 3, 4, 5}}},           /* a is the broadcast one, fewer dims */
    {{3, {2, 5, 7}}, {1, {7}}},                    /* [B,N,D] + [D]                     */
    {{3, {2, 1, 5}}, {2, {3, 1}}},                 /* both broadcast                    */
    {{2, {3, 7}}, {2, {3, 7}}},                    /* same shape                        */
    {{1, {1}}, {2, {4, 3}}},                       /* scalar                            */
    {{3, {5, 1, 3}}, {3, {1, 4, 1}}},              /* outer product-like                */
    {{4, {2, 1, 3, 1}}, {4, {1, 4, 1, 5}}},        /* alternating                       */
    {{4, {3, 16, 32, 32}}, {4, {1, 16, 1, 1}}},    /* large: parallel paths             */
    {{2, {5, 30011}}, {2, {5, 30011}}},            /* long rows: split into chunks      */
    {{3, {4, 300, 333}}, {1, {333}}},              /* last dim kept, > one column block */
    {{2, {40000, 1}}, {1, {1}}},                   /* scalar operand, many rows         */
};

/* forward of every case and op against the double reference */
Test(elementwise, broadcast_forward_matches_numpy_rules) {
    rx_ctx *c = rx_test_cpu_ctx();
    for (size_t k = 0; k < sizeof bcast_cases / sizeof bcast_cases[0]; k++) {
        shp sa = bcast_cases[k].a, sb = bcast_cases[k].b, sy = bshape(sa, sb);
        rx_tensor *a = param_of(c, sa, 10 + k, 0), *b = param_of(c, sb, 20 + k, 0);
        float *ha = host(c, a), *hb = host(c, b);
        for (int op = OP_ADD; op <= OP_MUL; op++) {
            rx_tensor *y = run_bin(c, op, a, b);
            cr_assert(y, "case %zu: %s", k, rx_last_error());
            cr_assert_eq(y->ndim, sy.nd);
            for (int d = 0; d < sy.nd; d++) cr_assert_eq(y->shape[d], sy.s[d], "case %zu dim %d", k, d);
            float *hy = host(c, y);
            int64_t idx[RX_MAX_DIMS], bad = 0;
            for (int64_t f = 0; f < shp_numel(sy); f++) {
                unravel(sy, f, idx);
                double r = ref_bin(op, ha[bindex(sa, sy, idx)], hb[bindex(sb, sy, idx)]);
                if (fabs(hy[f] - r) > 1e-6 * (1 + fabs(r))) bad++;
            }
            cr_expect_eq(bad, 0, "case %zu op %d: %lld elements differ", k, op, (long long)bad);
            free(hy);
            rx_step_end(c);
        }
        free(ha); free(hb);
    }
    rx_ctx_destroy(c);
}

/* backward on the large cases against the reduction written out in double:
 * da[i] = Σ_{out elements that read a[i]} dy ⊙ (1 | ±1 | b),  likewise db */
Test(elementwise, broadcast_backward_matches_reduction) {
    rx_ctx *c = rx_test_cpu_ctx();
    for (size_t k = 0; k < sizeof bcast_cases / sizeof bcast_cases[0]; k++) {
        shp sa = bcast_cases[k].a, sb = bcast_cases[k].b, sy = bshape(sa, sb);
        rx_tensor *a = param_of(c, sa, 30 + k, 1), *b = param_of(c, sb, 40 + k, 1);
        float *ha = host(c, a), *hb = host(c, b);
        const int64_t ny = shp_numel(sy);
        float *seed = malloc(ny * sizeof(float));
        rx_rng_normal(5, RX_STREAM(RX_RNG_TEST, 7), 0, seed, ny);
        for (int op = OP_ADD; op <= OP_MUL; op++) {
            rx_tensor_fill(c, a->grad, 0.0f);
            rx_tensor_fill(c, b->grad, 0.0f);
            rx_tensor *y = run_bin(c, op, a, b);
            cr_assert(y, "%s", rx_last_error());
            rx_tensor *s = rx_from_host(c, y->ndim, y->shape, seed);
            cr_assert_eq(rx_backward_with(c, y, s), RX_OK, "%s", rx_last_error());
            double *ra = calloc(a->numel, sizeof(double)), *rb = calloc(b->numel, sizeof(double));
            double *abs_a = calloc(a->numel, sizeof(double)), *abs_b = calloc(b->numel, sizeof(double));
            int64_t idx[RX_MAX_DIMS];
            for (int64_t f = 0; f < ny; f++) {
                unravel(sy, f, idx);
                int64_t ia = bindex(sa, sy, idx), ib = bindex(sb, sy, idx);
                double ta = op == OP_MUL ? (double)seed[f] * hb[ib] : seed[f];
                double tb = op == OP_MUL ? (double)seed[f] * ha[ia] : op == OP_SUB ? -seed[f] : seed[f];
                ra[ia] += ta; abs_a[ia] += fabs(ta);
                rb[ib] += tb; abs_b[ib] += fabs(tb);
            }
            /* float summation: the error bound scales with the sum of |terms| (1e-6 of it; float eps 6e-8) */
            float *ga = host(c, a->grad), *gb = host(c, b->grad);
            for (int64_t i = 0; i < a->numel; i++)
                cr_assert(fabs(ga[i] - ra[i]) <= 1e-6 * (1 + abs_a[i]), "case %zu op %d da[%lld] %g vs %g", k, op,
                          (long long)i, ga[i], ra[i]);
            for (int64_t i = 0; i < b->numel; i++)
                cr_assert(fabs(gb[i] - rb[i]) <= 1e-6 * (1 + abs_b[i]), "case %zu op %d db[%lld] %g vs %g", k, op,
                          (long long)i, gb[i], rb[i]);
            free(abs_a); free(abs_b);
            free(ra); free(rb); free(ga); free(gb);
            rx_step_end(c);
        }
        free(ha); free(hb); free(seed);
    }
    rx_ctx_destroy(c);
}

static rx_tensor *f_add(rx_ctx *c, rx_tensor **in, void *ud) { return rx_add(c, in[0], in[1]); }
static rx_tensor *f_sub(rx_ctx *c, rx_tensor **in, void *ud) { return rx_sub(c, in[0], in[1]); }
static rx_tensor *f_mul(rx_ctx *c, rx_tensor **in, void *ud) { return rx_mul(c, in[0], in[1]); }

/* finite differences on the small cases (the first nine) */
Test(elementwise, add_sub_mul_gradcheck) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_gc_fn fns[3] = {f_add, f_sub, f_mul};
    for (size_t k = 0; k < 9; k++) {
        rx_tensor *in[2] = {param_of(c, bcast_cases[k].a, 50 + k, 1), param_of(c, bcast_cases[k].b, 60 + k, 1)};
        for (int op = 0; op < 3; op++) rx_gradcheck(c, fns[op], NULL, 2, in, 1e-2, 1e-3, 1e-3, 60);
    }
    rx_ctx_destroy(c);
}

/* y = x ⊙ x: the two uses of x both add into dx = 2 x dy */
static rx_tensor *f_square(rx_ctx *c, rx_tensor **in, void *ud) { return rx_mul(c, in[0], in[0]); }

Test(elementwise, tensor_used_twice_accumulates) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = param_of(c, (shp){3, {2, 3, 5}}, 3, 1);
    rx_gradcheck(c, f_square, NULL, 1, &x, 1e-2, 1e-3, 1e-3, 100);
    rx_ctx_destroy(c);
}

Test(elementwise, broadcast_error_names_op_and_shapes) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *a = rx_zeros(c, RX_SHAPE(2, 3, 4)), *b = rx_zeros(c, RX_SHAPE(5));
    cr_expect_null(rx_add(c, a, b));
    cr_expect_eq(rx_ctx_status(c), RX_ERR_SHAPE);
    cr_expect(strstr(rx_last_error(), "add: a [2,3,4] and b [5] do not broadcast (dim -1: 4 vs 5)"), "%s",
              rx_last_error());
    rx_ctx_clear_error(c);
    rx_tensor *d = rx_zeros(c, RX_SHAPE(3, 3, 4));
    cr_expect_null(rx_mul(c, a, d));
    cr_expect(strstr(rx_last_error(), "mul: a [2,3,4] and b [3,3,4] do not broadcast (dim -3: 2 vs 3)"), "%s",
              rx_last_error());
    cr_expect_null(rx_sub(c, a, a), "errors are sticky");
    rx_ctx_destroy(c);
}

/* ---- unary ops against their definitions in double ------------------------------------ */

typedef double (*ref_fn)(double x);
static double ref_silu(double x) { return x / (1 + exp(-x)); }
/* written as x Phi(x) = ½ x erfc(-x/√2) and ½ x (1 + tanh u) = x sigmoid(2u): exact in the tails */
static double ref_gelu(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
static double ref_gelu_tanh(double x) { return x / (1 + exp(-2 * sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }
static double ref_scale(double x) { return -1.5 * x + 0.25; }
static double ref_exp(double x) { return exp(x); }
static double ref_abs(double x) { return fabs(x); }

static rx_tensor *f_silu(rx_ctx *c, rx_tensor **in, void *ud) { return rx_silu(c, in[0]); }
static rx_tensor *f_gelu(rx_ctx *c, rx_tensor **in, void *ud) { return rx_gelu(c, in[0], 0); }
static rx_tensor *f_gelu_tanh(rx_ctx *c, rx_tensor **in, void *ud) { return rx_gelu(c, in[0], 1); }
static rx_tensor *f_scale(rx_ctx *c, rx_tensor **in, void *ud) { return rx_scale(c, in[0], -1.5f, 0.25f); }
static rx_tensor *f_exp(rx_ctx *c, rx_tensor **in, void *ud) { return rx_exp(c, in[0]); }
static rx_tensor *f_abs(rx_ctx *c, rx_tensor **in, void *ud) { return rx_abs(c, in[0]); }

Test(elementwise, unary_forward_and_gradcheck) {
    const struct { const char *name; rx_gc_fn f; ref_fn ref; } ops[] = {
        {"silu", f_silu, ref_silu},             /* PyTorch SiLU: x sigmoid(x)                    */
        {"gelu", f_gelu, ref_gelu},             /* PyTorch GELU: x Phi(x)                        */
        {"gelu_tanh", f_gelu_tanh, ref_gelu_tanh}, /* PyTorch GELU(approximate='tanh')           */
        {"scale", f_scale, ref_scale},          /* alpha x + beta                                */
        {"exp", f_exp, ref_exp},                /* e^x (libm's exp in double)                    */
        {"abs", f_abs, ref_abs},                /* |x|; the gradcheck's points are never within
                                                   its step of the kink at 0 (N(0, 2) draws, 42 of them) */
    };
    rx_ctx *c = rx_test_cpu_ctx();
    /* large enough for the parallel path; values spread over [-9, 9] to reach the tails */
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(3, 5, 61, 67), 1);
    rx_test_randn(c, x, 9, 3.0f);
    float *hx = host(c, x);
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        rx_tensor *y = ops[k].f(c, &x, NULL);
        cr_assert(y, "%s", rx_last_error());
        cr_assert(rx_same_shape(x, y));
        float *hy = host(c, y);
        double worst = 0, worst_tail = 0;
        for (int64_t i = 0; i < x->numel; i++) {
            /* relative where |y| > 1, absolute below */
            double r = ops[k].ref(hx[i]), e = fabs(hy[i] - r) / (1 + fabs(r));
            if (e > worst) worst = e;
            /* and relative for the small values of the negative tail (float normal range) */
            if (hx[i] < -1 && fabs(r) > 1e-30 && fabs(hy[i] - r) / fabs(r) > worst_tail) worst_tail = fabs(hy[i] - r) / fabs(r);
        }
        cr_expect_lt(worst, 1e-6, "%s: worst error %g", ops[k].name, worst);
        cr_expect_lt(worst_tail, 1e-4, "%s: worst relative error in the negative tail %g", ops[k].name, worst_tail);
        free(hy);
        rx_step_end(c);
    }
    /* gradients at odd shapes, batch > 1 */
    rx_tensor *xs = rx_param(c, "xs", RX_SHAPE(2, 3, 7), 1);
    rx_test_randn(c, xs, 4, 2.0f);
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) rx_gradcheck(c, ops[k].f, NULL, 1, &xs, 1e-2, 2e-3, 2e-3, 100);
    free(hx);
    rx_ctx_destroy(c);
}

/* ---- modulate: DiT's x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1) -------------------- */

static rx_tensor *f_modulate(rx_ctx *c, rx_tensor **in, void *ud) { return rx_modulate(c, in[0], in[1], in[2]); }

Test(elementwise, modulate_forward_gradcheck_and_errors) {
    rx_ctx *c = rx_test_cpu_ctx();
    const int64_t B = 3, N = 5, D = 7;
    rx_tensor *in[3] = {rx_param(c, "x", RX_SHAPE(B, N, D), 1), rx_param(c, "shift", RX_SHAPE(B, D), 1),
                        rx_param(c, "scale", RX_SHAPE(B, D), 1)};
    for (int k = 0; k < 3; k++) rx_test_randn(c, in[k], 70 + k, 1.0f);
    float *x = host(c, in[0]), *sh = host(c, in[1]), *sc = host(c, in[2]);
    rx_tensor *y = rx_modulate(c, in[0], in[1], in[2]);
    cr_assert(y, "%s", rx_last_error());
    float *hy = host(c, y);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < N; t++)
            for (int64_t d = 0; d < D; d++) {
                int64_t i = (b * N + t) * D + d;
                double r = (double)x[i] * (1.0 + sc[b * D + d]) + sh[b * D + d];
                cr_expect(fabs(hy[i] - r) < 1e-6 * (1 + fabs(r)), "y[%lld] %g vs %g", (long long)i, hy[i], r);
            }
    rx_step_end(c);
    rx_gradcheck(c, f_modulate, NULL, 3, in, 1e-2, 1e-3, 1e-3, 200);

    /* larger D (several column blocks) and the parallel path: backward against the sums in double */
    const int64_t B2 = 2, N2 = 33, D2 = 600;
    rx_tensor *big[3] = {rx_param(c, "xb", RX_SHAPE(B2, N2, D2), 1), rx_param(c, "shb", RX_SHAPE(B2, D2), 1),
                         rx_param(c, "scb", RX_SHAPE(B2, D2), 1)};
    for (int k = 0; k < 3; k++) rx_test_randn(c, big[k], 80 + k, 1.0f);
    rx_tensor *yb = rx_modulate(c, big[0], big[1], big[2]);
    cr_assert(yb);
    float *seed = malloc(yb->numel * sizeof(float));
    rx_rng_normal(3, RX_STREAM(RX_RNG_TEST, 3), 0, seed, yb->numel);
    cr_assert_eq(rx_backward_with(c, yb, rx_from_host(c, yb->ndim, yb->shape, seed)), RX_OK, "%s", rx_last_error());
    float *xb = host(c, big[0]), *scb = host(c, big[2]);
    float *gx = host(c, big[0]->grad), *gsh = host(c, big[1]->grad), *gsc = host(c, big[2]->grad);
    for (int64_t b = 0; b < B2; b++)
        for (int64_t d = 0; d < D2; d++) {
            double rsh = 0, rsc = 0;
            for (int64_t t = 0; t < N2; t++) {
                int64_t i = (b * N2 + t) * D2 + d;
                rsh += seed[i];
                rsc += (double)seed[i] * xb[i];
                double rgx = seed[i] * (1.0 + scb[b * D2 + d]);
                cr_assert(fabs(gx[i] - rgx) < 1e-5 * (1 + fabs(rgx)));
            }
            cr_assert(fabs(gsh[b * D2 + d] - rsh) < 1e-4 * (1 + fabs(rsh)), "dshift %g vs %g", gsh[b * D2 + d], rsh);
            cr_assert(fabs(gsc[b * D2 + d] - rsc) < 1e-4 * (1 + fabs(rsc)), "dscale %g vs %g", gsc[b * D2 + d], rsc);
        }
    free(seed); free(xb); free(scb); free(gx); free(gsh); free(gsc);
    rx_step_end(c);

    cr_expect_null(rx_modulate(c, in[0], in[2], big[1]));
    cr_expect(strstr(rx_last_error(),
                     "modulate: x [3,5,7], shift [3,7], scale [2,600]: expected x [B,N,D] with shift and scale [B,D]"),
              "%s", rx_last_error());
    free(x); free(sh); free(sc); free(hy);
    rx_ctx_destroy(c);
}

/* ---- dropout ------------------------------------------------------------------------------- */

static rx_tensor *f_dropout(rx_ctx *c, rx_tensor **in, void *ud) { return rx_dropout(c, in[0], 0.3f); }

Test(elementwise, dropout_mask_is_philox_and_reproducible) {
    rx_ctx *c = rx_test_cpu_ctx();
    c->seed = 1234;
    c->rng_step = 17;
    c->training = 1;
    const float p = 0.3f;
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(4, 8, 33, 31), 1);
    rx_test_randn(c, x, 2, 1.0f);
    float *hx = host(c, x);
    rx_tensor *y1 = rx_dropout(c, x, p), *y2 = rx_dropout(c, x, p);
    cr_assert(y1 && y2, "%s", rx_last_error());
    float *h1 = host(c, y1), *h2 = host(c, y2);
    /* reference: element i is kept iff uniform word i of stream (DROPOUT, RX_DROPOUT_INDEX(step, call)) >= p */
    int64_t kept = 0, bad = 0, same = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        for (int call = 0; call < 2; call++) {
            uint64_t stream = RX_STREAM(RX_RNG_DROPOUT, RX_DROPOUT_INDEX(17, call));
            int keep = rx_rng_uniform1(1234, stream, i) >= p;
            float r = keep ? hx[i] / (1 - p) : 0.0f, got = call ? h2[i] : h1[i];
            if (fabsf(got - r) > 1e-6f * (1 + fabsf(r))) bad++;
            if (call == 0) kept += keep;
        }
        same += (h1[i] != 0) == (h2[i] != 0);
    }
    cr_expect_eq(bad, 0, "%lld elements differ from the Philox mask", (long long)bad);
    double frac = (double)kept / x->numel, sd = sqrt(p * (1 - p) / x->numel);
    cr_expect(fabs(frac - (1 - p)) < 5 * sd, "kept fraction %g", frac);
    cr_expect_lt(same, x->numel * 0.7, "the second call in a step draws a different mask");
    rx_step_end(c);
    /* same step and call number again -> the same mask */
    rx_tensor *y3 = rx_dropout(c, x, p);
    float *h3 = host(c, y3);
    cr_expect_eq(memcmp(h1, h3, x->numel * sizeof(float)), 0, "mask reproduces");
    rx_step_end(c);
    /* gradients: dx = dy * mask / (1 - p) (the mask is recomputed in backward) */
    rx_tensor *xs = rx_param(c, "xs", RX_SHAPE(3, 5, 7), 1);
    rx_test_randn(c, xs, 3, 1.0f);
    rx_gradcheck(c, f_dropout, NULL, 1, &xs, 1e-2, 1e-3, 1e-3, 105);
    /* p = 1 drops everything (as torch); identity without training or with p = 0; p outside [0, 1] is an error */
    rx_tensor *y0 = rx_dropout(c, xs, 1.0f);
    cr_assert(y0, "%s", rx_last_error());
    float *h0 = host(c, y0);
    for (int64_t i = 0; i < y0->numel; i++) cr_expect_eq(h0[i], 0.0f);
    free(h0);
    cr_expect_eq(rx_dropout(c, x, 0.0f), x);
    c->training = 0;
    cr_expect_eq(rx_dropout(c, x, 0.5f), x);
    cr_expect_null(rx_dropout(c, x, 1.5f));
    cr_expect(strstr(rx_last_error(), "dropout: p=1.5 must be in [0, 1]"), "%s", rx_last_error());
    free(hx); free(h1); free(h2); free(h3);
    rx_ctx_destroy(c);
}

/* ---- residual_add: y = (a + (b + bias[c])) s ----------------------------------------------------
 * References: the formula in double (forward), the chain of the tested ops it replaces,
 * rx_scale(rx_add(a, rx_add(b, bias viewed [1,C,1,...]))) (forward and every gradient), and
 * finite differences. */

typedef struct { float scale; int bias; } radd_args;

static rx_tensor *f_radd(rx_ctx *c, rx_tensor **in, void *ud) {
    const radd_args *a = ud;
    return rx_residual_add(c, in[0], in[1], a->bias ? in[2] : NULL, a->scale);
}

static rx_tensor *f_radd_chain(rx_ctx *c, rx_tensor **in, void *ud) {
    const radd_args *a = ud;
    rx_tensor *b = in[1];
    if (a->bias) {
        int64_t sh[RX_MAX_DIMS];
        for (int k = 0; k < in[0]->ndim; k++) sh[k] = k == 1 ? in[0]->shape[1] : 1;
        b = rx_add(c, b, rx_reshape(c, in[2], in[0]->ndim, sh));
    }
    return rx_scale(c, rx_add(c, in[0], b), a->scale, 0.0f);
}

static void check_radd(int ndim, const int64_t *shape, radd_args a) {
    rx_ctx *c = rx_test_cpu_ctx();
    const int64_t C = shape[1];
    rx_tensor *in[3] = {rx_param(c, "a", ndim, shape, 1), rx_param(c, "b", ndim, shape, 1), rx_param(c, "bias", RX_SHAPE(C), 1)};
    for (int k = 0; k < 3; k++) rx_test_randn(c, in[k], 301 + k, 1.0f);
    const int64_t N = in[0]->numel, S = N / (shape[0] * C);
    float *R = malloc(N * sizeof(float)), *y[2], *g[2][3];
    rx_rng_normal(305, RX_STREAM(RX_RNG_TEST, 3), 0, R, N);
    rx_gc_fn fs[2] = {f_radd, f_radd_chain};
    for (int v = 0; v < 2; v++) {
        for (int k = 0; k < 3; k++) rx_tensor_fill(c, in[k]->grad, 0.0f);
        rx_tensor *out = fs[v](c, in, &a);
        cr_assert(out, "%s", rx_last_error());
        y[v] = host(c, out);
        cr_assert_eq(rx_backward_with(c, out, rx_from_host(c, out->ndim, out->shape, R)), RX_OK, "%s", rx_last_error());
        for (int k = 0; k < 3; k++) g[v][k] = host(c, in[k]->grad);
        rx_step_end(c);
    }
    // the formula in double
    float *ah = host(c, in[0]), *bh = host(c, in[1]), *ch = host(c, in[2]);
    double err = 0, mx = 0;
    for (int64_t i = 0; i < N; i++) {
        const double r = ((double)ah[i] + bh[i] + (a.bias ? ch[(i / S) % C] : 0.0)) * a.scale;
        err = fmax(err, fabs(y[0][i] - r));
        mx = fmax(mx, fabs(r));
    }
    cr_expect_lt(err / mx, 3e-7, "residual_add forward vs formula: rel err %g", err / mx);
    cr_expect_lt(rx_rel_err(y[0], y[1], N), 3e-7, "forward vs chain");
    for (int k = 0; k < 3; k++) {
        const int64_t n = in[k]->numel;
        if (k == 2 && !a.bias) {
            for (int64_t i = 0; i < n; i++) cr_expect_eq(g[0][2][i], 0.0f, "dbias without a bias");
            continue;
        }
        cr_expect_lt(rx_rel_err(g[0][k], g[1][k], n), 1e-6, "gradient of input %d vs chain", k);
    }
    free(R); free(ah); free(bh); free(ch);
    for (int v = 0; v < 2; v++) { free(y[v]); for (int k = 0; k < 3; k++) free(g[v][k]); }
    rx_ctx_destroy(c);
}

Test(elementwise, residual_add_matches_formula_and_chain) {
    check_radd(RX_SHAPE(2, 3, 4, 5), (radd_args){1.0f, 1});
    check_radd(RX_SHAPE(3, 5, 7), (radd_args){0.5f, 1});           // output_scale_factor 2
    check_radd(RX_SHAPE(2, 4, 3, 3), (radd_args){1.0f, 0});
    check_radd(RX_SHAPE(4, 64, 32, 32), (radd_args){0.7f, 1});     // past the threading threshold
}

Test(elementwise, residual_add_gradcheck_and_errors) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[3] = {rx_param(c, "a", RX_SHAPE(2, 3, 4, 5), 1), rx_param(c, "b", RX_SHAPE(2, 3, 4, 5), 1),
                        rx_param(c, "bias", RX_SHAPE(3), 1)};
    for (int k = 0; k < 3; k++) rx_test_randn(c, in[k], 311 + k, 1.0f);
    radd_args a = {0.5f, 1};
    rx_gradcheck(c, f_radd, &a, 3, in, 1e-2, 5e-4, 2e-3, 200);
    rx_tensor *bad = rx_param(c, "x", RX_SHAPE(2, 3, 4, 4), 0);
    cr_expect_null(rx_residual_add(c, in[0], bad, NULL, 1.0f));
    cr_expect(strstr(rx_last_error(), "residual_add: a [2,3,4,5] and b [2,3,4,4] must be the same"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_residual_add(c, in[0], in[1], bad, 1.0f));
    cr_expect(strstr(rx_last_error(), "residual_add: a [2,3,4,5] needs bias [3], got [2,3,4,4]"), "%s", rx_last_error());
    rx_ctx_destroy(c);
}
