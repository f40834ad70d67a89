/* test_ops_shape.c — concat, permute, upsample_nearest2x, avgpool2x, global_avgpool, unpatchify, slice.
 * References: each op's PyTorch definition written as index arithmetic in this file
 * (torch.cat(dim=1), Tensor.permute, F.interpolate(scale_factor=2, mode='nearest'),
 * F.avg_pool2d(2), mean over H,W, DiT's einsum "nhwpqc->nchpwq", torch.narrow), evaluated in
 * double where it sums; central finite differences (gradcheck.h) for every backward. */
#include "gradcheck.h"

static float *host(rx_ctx *c, const rx_tensor *t) {
    float *h = malloc(t->numel * sizeof(float));
    cr_assert_eq(rx_tensor_to_host(c, t, h), RX_OK);
    return h;
}

static rx_tensor *randp(rx_ctx *c, int nd, const int64_t *shape, uint64_t seed) {
    rx_tensor *t = rx_param(c, NULL, nd, shape, 1);
    rx_test_randn(c, t, seed, 1.0f);
    return t;
}

static void unravel(int nd, const int64_t *shape, int64_t f, int64_t *idx) {
    for (int d = nd - 1; d >= 0; d--) { idx[d] = f % shape[d]; f /= shape[d]; }
}

static int64_t ravel(int nd, const int64_t *shape, const int64_t *idx) {
    int64_t f = 0;
    for (int d = 0; d < nd; d++) f = f * shape[d] + idx[d];
    return f;
}

/* ---- concat ---------------------------------------------------------------------------------- */

static rx_tensor *f_concat(rx_ctx *c, rx_tensor **in, void *ud) { return rx_concat(c, in[0], in[1]); }

Test(shape, concat_forward_gradcheck_errors) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *in[2] = {randp(c, RX_SHAPE(3, 2, 5, 3), 1), randp(c, RX_SHAPE(3, 4, 5, 3), 2)};
    rx_tensor *y = rx_concat(c, in[0], in[1]);
    cr_assert(y, "%s", rx_last_error());
    cr_assert(y->ndim == 4 && y->shape[1] == 6 && y->shape[3] == 3);
    float *a = host(c, in[0]), *b = host(c, in[1]), *hy = host(c, y);
    int64_t idx[4];
    for (int64_t f = 0; f < y->numel; f++) {   /* y[n, ch] = ch < 2 ? a[n, ch] : b[n, ch - 2] */
        unravel(4, y->shape, f, idx);
        float want;
        if (idx[1] < 2) want = a[ravel(4, in[0]->shape, idx)];
        else { idx[1] -= 2; want = b[ravel(4, in[1]->shape, idx)]; }
        cr_assert_eq(hy[f], want, "y[%lld]", (long long)f);
    }
    rx_step_end(c);
    rx_gradcheck(c, f_concat, NULL, 2, in, 1e-2, 1e-3, 1e-3, 200);
    /* 2-D (features) too */
    rx_tensor *in2[2] = {randp(c, RX_SHAPE(2, 3), 3), randp(c, RX_SHAPE(2, 1), 4)};
    rx_gradcheck(c, f_concat, NULL, 2, in2, 1e-2, 1e-3, 1e-3, 200);
    cr_expect_null(rx_concat(c, in[0], in2[0]));
    cr_expect(strstr(rx_last_error(), "concat: a [3,2,5,3] and b [2,3] must agree in every dim but dim 1"), "%s",
              rx_last_error());
    free(a); free(b); free(hy);
    rx_ctx_destroy(c);
}

/* ---- permute --------------------------------------------------------------------------------- */

typedef struct { int nd; int64_t shape[5]; int perm[5]; } perm_case;
static const perm_case perm_cases[] = {
    {4, {2, 3, 4, 5}, {0, 2, 1, 3}},          /* heads split: rows stay contiguous */
    {4, {2, 3, 40, 37}, {0, 2, 3, 1}},        /* NCHW -> NHWC: tiled transpose      */
    {4, {2, 45, 3, 33}, {0, 3, 1, 2}},        /* NHWC -> NCHW                      */
    {3, {70, 1, 35}, {2, 1, 0}},              /* size-1 dim dropped                */
    {5, {2, 3, 4, 5, 3}, {4, 2, 0, 3, 1}},    /* 5-D                               */
    {5, {2, 5, 3, 4, 6}, {0, 2, 3, 1, 4}},    /* attention [B,N,3,H,D]-like         */
    {2, {130, 67}, {1, 0}},                   /* plain matrix transpose, ragged tiles */
    {3, {2, 3, 4}, {0, 1, 2}},                /* identity                          */
};

static rx_tensor *f_permute(rx_ctx *c, rx_tensor **in, void *ud) { return rx_permute(c, in[0], ((const perm_case *)ud)->perm); }

/* forward and backward against index arithmetic: y[idx] = x[idx ∘ perm⁻¹], dx = dy permuted back */
Test(shape, permute_matches_index_arithmetic) {
    rx_ctx *c = rx_test_cpu_ctx();
    for (size_t k = 0; k < sizeof perm_cases / sizeof perm_cases[0]; k++) {
        const perm_case *pc = &perm_cases[k];
        rx_tensor *x = randp(c, pc->nd, pc->shape, 10 + k);
        rx_tensor *y = rx_permute(c, x, pc->perm);
        cr_assert(y, "%s", rx_last_error());
        for (int d = 0; d < pc->nd; d++) cr_assert_eq(y->shape[d], pc->shape[pc->perm[d]]);
        float *hx = host(c, x), *hy = host(c, y);
        float *seed = malloc(y->numel * sizeof(float));
        rx_rng_normal(3, RX_STREAM(RX_RNG_TEST, k), 0, seed, y->numel);
        cr_assert_eq(rx_backward_with(c, y, rx_from_host(c, y->ndim, y->shape, seed)), RX_OK, "%s", rx_last_error());
        float *gx = host(c, x->grad);
        int64_t oi[5], xi[5], bad = 0;
        for (int64_t f = 0; f < y->numel; f++) {
            unravel(pc->nd, y->shape, f, oi);
            for (int d = 0; d < pc->nd; d++) xi[pc->perm[d]] = oi[d];
            int64_t g = ravel(pc->nd, pc->shape, xi);
            bad += hy[f] != hx[g];
            bad += gx[g] != seed[f];
        }
        cr_expect_eq(bad, 0, "case %zu: %lld mismatches", k, (long long)bad);
        free(hx); free(hy); free(seed); free(gx);
        rx_step_end(c);
    }
    rx_ctx_destroy(c);
}

Test(shape, permute_gradcheck_and_errors) {
    rx_ctx *c = rx_test_cpu_ctx();
    for (size_t k = 0; k < sizeof perm_cases / sizeof perm_cases[0]; k++) {
        if (perm_cases[k].shape[2] > 10 || perm_cases[k].shape[0] > 10) continue;   /* the small ones */
        rx_tensor *x = randp(c, perm_cases[k].nd, perm_cases[k].shape, 20 + k);
        rx_gradcheck(c, f_permute, (void *)&perm_cases[k], 1, &x, 1e-2, 1e-3, 1e-3, 50);
    }
    rx_tensor *x = rx_zeros(c, RX_SHAPE(2, 3, 4));
    cr_expect_null(rx_permute(c, x, (const int[]){0, 2, 2}));
    cr_expect(strstr(rx_last_error(), "permute: perm (0,2,2) is not a permutation of the 3 dims of x [2,3,4]"), "%s",
              rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_permute(c, x, (const int[]){0, 3, 1}));
    cr_expect(strstr(rx_last_error(), "permute: perm (0,3,1) is not a permutation"), "%s", rx_last_error());
    rx_ctx_destroy(c);
}

/* ---- upsample, pools --------------------------------------------------------------------------- */

static rx_tensor *f_up(rx_ctx *c, rx_tensor **in, void *ud) { return rx_upsample_nearest2x(c, in[0]); }
static rx_tensor *f_pool(rx_ctx *c, rx_tensor **in, void *ud) { return rx_avgpool2x(c, in[0]); }
static rx_tensor *f_gap(rx_ctx *c, rx_tensor **in, void *ud) { return rx_global_avgpool(c, in[0]); }

Test(shape, upsample_and_pools_forward) {
    rx_ctx *c = rx_test_cpu_ctx();
    const int64_t B = 3, C = 5, H = 6, W = 10;
    rx_tensor *x = randp(c, RX_SHAPE(B, C, H, W), 1);
    float *hx = host(c, x);
    /* F.interpolate(scale_factor=2, mode='nearest'): y[.., i, j] = x[.., i/2, j/2] */
    rx_tensor *up = rx_upsample_nearest2x(c, x);
    cr_assert(up && up->shape[2] == 2 * H && up->shape[3] == 2 * W, "%s", rx_last_error());
    float *hu = host(c, up);
    for (int64_t p = 0; p < B * C; p++)
        for (int64_t i = 0; i < 2 * H; i++)
            for (int64_t j = 0; j < 2 * W; j++)
                cr_assert_eq(hu[(p * 2 * H + i) * 2 * W + j], hx[(p * H + i / 2) * W + j / 2]);
    /* F.avg_pool2d(2) */
    rx_tensor *pool = rx_avgpool2x(c, x);
    cr_assert(pool && pool->shape[2] == H / 2 && pool->shape[3] == W / 2);
    float *hp = host(c, pool);
    for (int64_t p = 0; p < B * C; p++)
        for (int64_t i = 0; i < H / 2; i++)
            for (int64_t j = 0; j < W / 2; j++) {
                const float *x0 = hx + (p * H + 2 * i) * W + 2 * j;
                double r = 0.25 * ((double)x0[0] + x0[1] + x0[W] + x0[W + 1]);
                cr_assert(fabs(hp[(p * H / 2 + i) * W / 2 + j] - r) < 1e-6);
            }
    /* mean over H, W; also avgpool2x(upsample(x)) == x exactly */
    rx_tensor *g = rx_global_avgpool(c, x), *round = rx_avgpool2x(c, up);
    cr_assert(g && g->ndim == 2 && g->shape[0] == B && g->shape[1] == C);
    float *hg = host(c, g), *hr = host(c, round);
    for (int64_t p = 0; p < B * C; p++) {
        double s = 0;
        for (int64_t i = 0; i < H * W; i++) s += hx[p * H * W + i];
        cr_assert(fabs(hg[p] - s / (H * W)) < 1e-6, "gap[%lld] %g vs %g", (long long)p, hg[p], s / (H * W));
    }
    cr_expect_eq(memcmp(hr, hx, x->numel * sizeof(float)), 0);
    free(hx); free(hu); free(hp); free(hg); free(hr);
    rx_ctx_destroy(c);
}

/* the parallel paths: a U-Net-sized global average pool against the double sum */
Test(shape, global_avgpool_large) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = randp(c, RX_SHAPE(4, 32, 32, 32), 5);
    float *hx = host(c, x);
    for (int64_t i = 0; i < x->numel; i++) hx[i] += 3.0f;    /* an offset: the sum must not lose it */
    rx_tensor_from_host(c, x, hx);
    rx_tensor *g = rx_global_avgpool(c, x);
    float *hg = host(c, g);
    for (int64_t p = 0; p < 4 * 32; p++) {
        double s = 0;
        for (int64_t i = 0; i < 1024; i++) s += hx[p * 1024 + i];
        cr_assert(fabs(hg[p] - s / 1024) < 1e-6 * 4, "gap[%lld] %.9g vs %.9g", (long long)p, hg[p], s / 1024);
    }
    free(hx); free(hg);
    rx_ctx_destroy(c);
}

Test(shape, upsample_and_pools_gradcheck_and_errors) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = randp(c, RX_SHAPE(2, 3, 4, 6), 7), *xo = randp(c, RX_SHAPE(2, 3, 5, 3), 8);
    rx_gradcheck(c, f_up, NULL, 1, &xo, 1e-2, 1e-3, 1e-3, 200);
    rx_gradcheck(c, f_pool, NULL, 1, &x, 1e-2, 1e-3, 1e-3, 200);
    rx_gradcheck(c, f_gap, NULL, 1, &xo, 1e-2, 1e-3, 1e-3, 200);
    cr_expect_null(rx_avgpool2x(c, xo));
    cr_expect(strstr(rx_last_error(), "avgpool2x: x [2,3,5,3]: H and W must be even"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    rx_tensor *x3 = rx_zeros(c, RX_SHAPE(2, 3, 4));
    cr_expect_null(rx_upsample_nearest2x(c, x3));
    cr_expect(strstr(rx_last_error(), "upsample_nearest2x: x [2,3,4] is not [B,C,H,W]"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_global_avgpool(c, x3));
    cr_expect(strstr(rx_last_error(), "global_avgpool: x [2,3,4] is not [B,C,H,W]"), "%s", rx_last_error());
    rx_ctx_destroy(c);
}

/* ---- unpatchify ------------------------------------------------------------------------------- */

typedef struct { int C, h, w, p; } unp_args;
static rx_tensor *f_unpatchify(rx_ctx *c, rx_tensor **in, void *ud) {
    const unp_args *a = ud;
    return rx_unpatchify(c, in[0], a->C, a->h, a->w, a->p);
}

/* DiT: x.reshape(N, h, w, p, p, C); einsum("nhwpqc->nchpwq"); reshape(N, C, h*p, w*p) */
Test(shape, unpatchify_matches_einsum) {
    rx_ctx *c = rx_test_cpu_ctx();
    const unp_args cases[] = {{3, 2, 3, 2}, {4, 4, 4, 4}, {1, 3, 2, 3}, {5, 2, 2, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int64_t N = 2, C = cases[k].C, h = cases[k].h, w = cases[k].w, p = cases[k].p;
        rx_tensor *x = randp(c, RX_SHAPE(N, h * w, p * p * C), 30 + k);
        rx_tensor *y = rx_unpatchify(c, x, (int)C, (int)h, (int)w, (int)p);
        cr_assert(y, "%s", rx_last_error());
        cr_assert(y->ndim == 4 && y->shape[1] == C && y->shape[2] == h * p && y->shape[3] == w * p);
        float *hx = host(c, x), *hy = host(c, y);
        int64_t bad = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t hi = 0; hi < h; hi++)
                for (int64_t wi = 0; wi < w; wi++)
                    for (int64_t pi = 0; pi < p; pi++)
                        for (int64_t qi = 0; qi < p; qi++)
                            for (int64_t ch = 0; ch < C; ch++) {
                                int64_t src = ((((n * h + hi) * w + wi) * p + pi) * p + qi) * C + ch;   /* nhwpqc */
                                int64_t dst = ((((n * C + ch) * h + hi) * p + pi) * w + wi) * p + qi;   /* nchpwq */
                                bad += hy[dst] != hx[src];
                            }
        cr_expect_eq(bad, 0, "case %zu", k);
        free(hx); free(hy);
        rx_step_end(c);
        rx_gradcheck(c, f_unpatchify, (void *)&cases[k], 1, &x, 1e-2, 1e-3, 1e-3, 100);
    }
    rx_tensor *x = rx_zeros(c, RX_SHAPE(2, 16, 48));
    cr_expect_null(rx_unpatchify(c, x, 3, 4, 4, 2));
    cr_expect(strstr(rx_last_error(), "unpatchify: x [2,16,48] is not [B, h*w=16, p*p*C=12] (h=4 w=4 p=2 C=3)"), "%s",
              rx_last_error());
    rx_ctx_destroy(c);
}

/* ---- slice ----------------------------------------------------------------------------------- */

typedef struct { int dim; int64_t start, len; } slice_args;
static rx_tensor *f_slice(rx_ctx *c, rx_tensor **in, void *ud) {
    const slice_args *a = ud;
    return rx_slice(c, in[0], a->dim, a->start, a->len);
}

/* torch.narrow(x, dim, start, len): y[.., l, ..] = x[.., start + l, ..] */
Test(shape, slice_matches_narrow) {
    rx_ctx *c = rx_test_cpu_ctx();
    const int64_t shape[4] = {3, 5, 4, 7};
    rx_tensor *x = randp(c, 4, shape, 40);
    float *hx = host(c, x);
    const slice_args cases[] = {{0, 1, 2}, {1, 2, 3}, {2, 0, 4}, {3, 3, 4}, {-1, -3, 2}, {1, 4, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        rx_tensor *y = f_slice(c, &x, (void *)&cases[k]);
        cr_assert(y, "case %zu: %s", k, rx_last_error());
        const int d = cases[k].dim < 0 ? cases[k].dim + 4 : cases[k].dim;
        const int64_t s0 = cases[k].start < 0 ? cases[k].start + shape[d] : cases[k].start;
        cr_assert_eq(y->shape[d], cases[k].len);
        float *hy = host(c, y);
        int64_t idx[4], bad = 0;
        for (int64_t f = 0; f < y->numel; f++) {
            unravel(4, y->shape, f, idx);
            idx[d] += s0;
            bad += hy[f] != hx[ravel(4, shape, idx)];
        }
        cr_expect_eq(bad, 0, "case %zu", k);
        free(hy);
        rx_step_end(c);
        rx_gradcheck(c, f_slice, (void *)&cases[k], 1, &x, 1e-2, 1e-3, 1e-3, 100);
    }
    cr_expect_null(rx_slice(c, x, 2, 3, 2));
    cr_expect(strstr(rx_last_error(), "slice: x [3,5,4,7] dim 2: [3, 5) is outside [0, 4)"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_slice(c, x, 4, 0, 1));
    cr_expect(strstr(rx_last_error(), "slice: dim 4 out of range for x [3,5,4,7]"), "%s", rx_last_error());
    free(hx);
    rx_ctx_destroy(c);
}
