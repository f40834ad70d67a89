/* test_cuda_mma.c — bf16 tensor cores (issue 16 §4): the warp-level product of mma_bf16.h on one
 * tile, and the bf16 attention forward built on it (attention.cu, precision: bf16).
 *
 * The tile (rx_cuda_mma_bf16_tile: D = A B + C, A [16x16], B [16x8], C [16x8]); reference: a plain
 * CPU matmul in double of the same bf16-rounded A and B.
 *   - random values, the wrapper (mma.sync on a GPU, the emulator's warp collective), the wrapper
 *     with B loaded from a transposed copy, and the shuffle version: each element within
 *     1e-6 (sum_k |a b| + |c|): 17 terms accumulated in fp32 are off by at most ~17 * 2^-24 of that;
 *   - A a permutation matrix (row i picks B's row pi(i), pi not an involution) and B, C whole
 *     numbers: D must be B's rows in pi's order exactly, so a misplaced fragment names its element;
 *     A loaded transposed on purpose must then miss every row (the check can fail).
 *
 * Attention with precision bf16 against the CPU attention kernel on the same bf16-rounded q, k, v
 * (and the same fp32 output gradient). Bounds, derived (u = 2^-8, bf16's unit roundoff):
 *   - o: the forward rounds P to bf16 for P v only; l sums the fp32 P. So
 *       |o - o_ref| = |sum_j (bf16(p_j) - p_j) v_j| / l <= u sum_j p_j |v_j| / l <= u max|v|,
 *     plus fp32 accumulation (1e-5 max|v|);
 *   - LSE: m + log l from fp32 scores and the fp32 sum: 1e-5 (1 + |LSE|);
 *   - dv: the backward recomputes P = e^(S - LSE) in fp32 from the rounded q, k: fp32 tolerance
 *     (1e-5 relative, as test_cuda_ops);
 *   - dq, dk: the backward's row term D_i = sum_c dO_ic o_ic uses the forward's o, off by
 *     dD_i = sum_c dO_ic (o_ic - o_ref_ic) (measured from the two outputs); dS_ij = P_ij (dP_ij - D_i)
 *     moves by -P_ij dD_i, so |dq_i - ref| <= scale |dD_i| max|k| (sum_j P_ij = 1) and
 *     |dk_j - ref| <= scale max|q| sum_i P_ij |dD_i| (P from the rounded inputs and the CPU's LSE,
 *     in double); fp32's own rounding
 *     enters the same way, as 1e-5 of dP_ij - D_i's size (sum_c |dO_ic| max|v|) added to |dD_i|;
 *   - bf16 ran: on unrounded inputs the output differs from the CPU's fp32 by more than 1e-4
 *     (fp32 agrees to 1e-5), as test_cuda_ops' bf16 GEMM tests;
 *   - a head dim over 256 keeps the fp32 kernel: fp32 tolerance on rounded inputs.
 * Runs in the emulator (tests/cuda/emu) without a GPU; skips where no CUDA device answers. */
#include "cuda_parity.h"

static const double TOL_FP32 = 1e-5, TOL_BF16_SEEN = 1e-4, U_BF16 = 1.0 / 256;

/* ---- the tile ------------------------------------------------------------------------------------ */

enum { TM = 16, TN = 8, TK = 16 };
typedef struct { float A[TM * TK], B[TK * TN], C[TM * TN]; } mma_tile;

static void tile_run(px_pair *p, const mma_tile *t, int variant, float D[TM * TN]) {
    rx_ctx *c = p->gpu;
    rx_tensor *A = rx_from_host(c, 1, (int64_t[]){TM * TK}, t->A), *B = rx_from_host(c, 1, (int64_t[]){TK * TN}, t->B);
    rx_tensor *C = rx_from_host(c, 1, (int64_t[]){TM * TN}, t->C), *Dt = rx_empty(c, 1, (int64_t[]){TM * TN});
    cr_assert(A && B && C && Dt, "%s", rx_last_error());
    cr_assert_eq(rx_cuda_mma_bf16_tile(c, A->data, B->data, C->data, Dt->data, variant), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_tensor_to_host(c, Dt, D), RX_OK, "%s", rx_last_error());
    rx_step_end(c);
}

/* D = A B + C in double on the bf16 values; mag = sum_k |a b| + |c| */
static void tile_ref(const mma_tile *t, double D[TM * TN], double mag[TM * TN]) {
    for (int i = 0; i < TM; i++)
        for (int n = 0; n < TN; n++) {
            double s = t->C[i * TN + n], a = fabs(s);
            for (int k = 0; k < TK; k++) {
                const double x = (double)px_bf16(t->A[i * TK + k]) * px_bf16(t->B[k * TN + n]);
                s += x;
                a += fabs(x);
            }
            D[i * TN + n] = s;
            mag[i * TN + n] = a;
        }
}

static const struct { int variant; const char *name; } good_variants[] = {
    {RX_MMA_TILE_WRAPPER, "wrapper"},
    {RX_MMA_TILE_B_TRANSPOSED, "wrapper, B from a transposed copy"},
    {RX_MMA_TILE_SHUFFLE, "shuffle version"},
};

Test(cuda_mma, random_tile_matches_a_cpu_matmul) {
    px_pair p;
    px_open(&p, RX_PRECISION_BF16, 0);
    mma_tile t;
    rx_rng_normal(5, RX_STREAM(RX_RNG_TEST, 1), 0, t.A, TM * TK);
    rx_rng_normal(5, RX_STREAM(RX_RNG_TEST, 2), 0, t.B, TK * TN);
    rx_rng_normal(5, RX_STREAM(RX_RNG_TEST, 3), 0, t.C, TM * TN);
    px_round_bf16(t.A, TM * TK);   /* the device rounds again: no change */
    px_round_bf16(t.B, TK * TN);
    double ref[TM * TN], mag[TM * TN], mag_max = 0;
    tile_ref(&t, ref, mag);
    for (int e = 0; e < TM * TN; e++) mag_max = fmax(mag_max, mag[e]);
    float D[TM * TN];
    for (size_t v = 0; v < PX_COUNT(good_variants); v++) {
        tile_run(&p, &t, good_variants[v].variant, D);
        double worst = 0;
        for (int e = 0; e < TM * TN; e++) {
            const double err = fabs(D[e] - ref[e]);
            worst = fmax(worst, err / mag[e]);
            cr_expect_leq(err, 1e-6 * mag[e], "%s: D[%d][%d] = %.9g, CPU %.9g", good_variants[v].name, e / TN, e % TN,
                          D[e], ref[e]);
        }
        cr_log_info("mma tile, %s: worst error %.2e of sum |a b| + |c|", good_variants[v].name, worst);
    }
    tile_run(&p, &t, RX_MMA_TILE_A_TRANSPOSED, D);   /* the wrong layout must be seen */
    double worst = 0;
    for (int e = 0; e < TM * TN; e++) worst = fmax(worst, fabs(D[e] - ref[e]));
    cr_expect_gt(worst, 1e-2 * mag_max, "A loaded transposed gives the right product (error %.3g): the check is blind",
                 worst);
    px_close(&p);
}

#define PERM(i) ((5 * (i) + 3) % TM)   /* pi(pi(i)) = 9i + 2 mod 16 != i: no row is its own image */

Test(cuda_mma, permutation_tile_puts_each_element_where_the_layout_says) {
    px_pair p;
    px_open(&p, RX_PRECISION_BF16, 0);
    mma_tile t;
    memset(t.A, 0, sizeof t.A);
    for (int i = 0; i < TM; i++) t.A[i * TK + PERM(i)] = 1.0f;
    for (int k = 0; k < TK; k++)
        for (int n = 0; n < TN; n++) t.B[k * TN + n] = (float)(8 * k + n + 1);   /* 1 ... 128: exact in bf16 */
    for (int i = 0; i < TM; i++)
        for (int n = 0; n < TN; n++) t.C[i * TN + n] = 0.25f * (float)(8 * i + n);
    float D[TM * TN];
    for (size_t v = 0; v < PX_COUNT(good_variants); v++) {
        tile_run(&p, &t, good_variants[v].variant, D);
        int wrong = 0;
        for (int i = 0; i < TM; i++)
            for (int n = 0; n < TN; n++) {
                const float want = t.B[PERM(i) * TN + n] + t.C[i * TN + n];
                if (D[i * TN + n] != want && wrong++ < 8)
                    cr_log_error("%s: D[%d][%d] = %g, want B[%d][%d] + C = %g", good_variants[v].name, i, n, D[i * TN + n],
                                 PERM(i), n, want);
            }
        cr_expect_eq(wrong, 0, "%s: %d of %d elements misplaced", good_variants[v].name, wrong, TM * TN);
    }
    tile_run(&p, &t, RX_MMA_TILE_A_TRANSPOSED, D);   /* picks row pi^-1(i) != pi(i): every row wrong */
    int rows_wrong = 0;
    for (int i = 0; i < TM; i++) {
        int row_ok = 1;
        for (int n = 0; n < TN; n++) row_ok &= D[i * TN + n] == t.B[PERM(i) * TN + n] + t.C[i * TN + n];
        rows_wrong += !row_ok;
    }
    cr_expect_eq(rows_wrong, TM, "A loaded transposed: only %d of %d rows wrong", rows_wrong, TM);
    px_close(&p);
}

/* ---- attention with precision bf16 ----------------------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t B, H, Nq, Nk, D, Dv;
    float q_scale;   /* q ~ N(0, q_scale^2): large logits move the row maximum between key tiles */
} att_case;

typedef struct { float *o, *lse, *g[3]; } att_result;

static int64_t att_numel(const att_case *k, int which) {
    const int64_t rows = which == 0 ? k->Nq : k->Nk, cols = which == 2 ? k->Dv : k->D;
    return k->B * k->H * rows * cols;
}

/* one forward (LSE from the tape's node, saved[0]) and one backward of dO on context c */
static att_result att_run(rx_ctx *c, const att_case *k, float *const x[3], const float *dO) {
    att_result r;
    memset(&r, 0, sizeof r);
    px_poison(c);
    rx_set_grad_enabled(c, 1);
    rx_tensor *in[3];
    for (int i = 0; i < 3; i++) {
        const int64_t sh[4] = {k->B, k->H, i == 0 ? k->Nq : k->Nk, i == 2 ? k->Dv : k->D};
        in[i] = rx_param(c, NULL, 4, sh, 1);
        cr_assert(in[i], "%s", rx_last_error());
        cr_assert_eq(rx_tensor_from_host(c, in[i], x[i]), RX_OK, "%s", rx_last_error());
        cr_assert_eq(rx_tensor_fill(c, in[i]->grad, 0.0f), RX_OK, "%s", rx_last_error());
    }
    rx_tensor *out = rx_attention(c, in[0], in[1], in[2], 0.0f);
    cr_assert(out, "%s: %s", k->name, rx_last_error());
    const rx_node *n = c->tape;
    cr_assert(n && n->out == out && n->saved[0] && n->saved[0]->numel == k->B * k->H * k->Nq,
              "%s: the attention node keeps no LSE [BH,Nq]", k->name);
    r.o = malloc((size_t)out->numel * sizeof(float));
    r.lse = malloc((size_t)n->saved[0]->numel * sizeof(float));
    cr_assert_eq(rx_tensor_to_host(c, out, r.o), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_tensor_to_host(c, n->saved[0], r.lse), RX_OK, "%s", rx_last_error());
    rx_tensor *seed = rx_from_host(c, out->ndim, out->shape, dO);
    cr_assert(seed, "%s", rx_last_error());
    cr_assert_eq(rx_backward_with(c, out, seed), RX_OK, "%s backward: %s", k->name, rx_last_error());
    for (int i = 0; i < 3; i++) {
        r.g[i] = malloc((size_t)att_numel(k, i) * sizeof(float));
        cr_assert_eq(rx_tensor_to_host(c, in[i]->grad, r.g[i]), RX_OK, "%s", rx_last_error());
    }
    rx_step_end(c);
    return r;
}

static void att_free(att_result *r) {
    free(r->o);
    free(r->lse);
    for (int i = 0; i < 3; i++) free(r->g[i]);
}

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

/* inputs of case k (seeded), rounded to bf16 when `rounded`; dO [B,H,Nq,Dv] fp32 */
static void att_inputs(const att_case *k, int rounded, float *x[3], float **dO) {
    for (int i = 0; i < 3; i++) {
        const int64_t n = att_numel(k, i);
        x[i] = malloc((size_t)n * sizeof(float));
        rx_rng_normal(11, RX_STREAM(RX_RNG_TEST, 200 + i), 0, x[i], n);
        for (int64_t e = 0; e < n && i == 0; e++) x[i][e] *= k->q_scale;
        if (rounded) px_round_bf16(x[i], n);
    }
    const int64_t no = k->B * k->H * k->Nq * k->Dv;
    *dO = malloc((size_t)no * sizeof(float));
    rx_rng_normal(11, RX_STREAM(RX_RNG_TEST, 210), 0, *dO, no);
}

/* every element of got within bound(e) of ref; logs the worst ratio */
#define EXPECT_WITHIN(what, n, got, ref, bound_expr)                                                                \
    do {                                                                                                            \
        double worst_ = 0;                                                                                          \
        int64_t bad_ = 0;                                                                                           \
        for (int64_t e = 0; e < (n); e++) {                                                                         \
            const double err_ = fabs((double)(got)[e] - (ref)[e]), b_ = (bound_expr);                               \
            worst_ = fmax(worst_, err_ / b_);                                                                       \
            if (err_ > b_ && bad_++ < 4)                                                                            \
                cr_log_error("%s: %s[%lld] = %.7g, CPU %.7g, bound %.3g", k->name, what, (long long)e, (got)[e],   \
                             (ref)[e], b_);                                                                         \
        }                                                                                                           \
        cr_expect_eq(bad_, 0, "%s: %s: %lld elements past the bound", k->name, what, (long long)bad_);             \
        cr_log_info("%s: %s at %.2f of its bound", k->name, what, worst_);                                         \
    } while (0)

static void att_check_bf16(px_pair *p, const att_case *k) {
    float *x[3], *dO;
    att_inputs(k, 1, x, &dO);
    att_result ref = att_run(p->cpu, k, x, dO), got = att_run(p->gpu, k, x, dO);
    const int64_t BH = k->B * k->H, no = BH * k->Nq * k->Dv;
    const double scale = 1.0 / sqrt((double)k->D), max_q = max_abs(x[0], att_numel(k, 0));
    const double max_k = max_abs(x[1], att_numel(k, 1)), max_v = max_abs(x[2], att_numel(k, 2));
    EXPECT_WITHIN("o", no, got.o, ref.o, (U_BF16 + TOL_FP32) * max_v);
    EXPECT_WITHIN("LSE", BH * k->Nq, got.lse, ref.lse, TOL_FP32 * (1 + fabs(ref.lse[e])));
    /* per row: |dD_i| from the two outputs, plus fp32's rounding of dP_ij - D_i (both at most
     * sum_c |dO_ic| max|v|): TOL_FP32 of that; per head, their sum */
    double *dD = calloc((size_t)(BH * k->Nq), sizeof *dD);
    for (int64_t i = 0; i < BH * k->Nq; i++) {
        double d = 0, mag = 0;
        for (int64_t c = 0; c < k->Dv; c++) {
            d += (double)dO[i * k->Dv + c] * (got.o[i * k->Dv + c] - ref.o[i * k->Dv + c]);
            mag += fabs(dO[i * k->Dv + c]) * max_v;
        }
        dD[i] = fabs(d) + TOL_FP32 * mag;
    }
    /* per key j: sum_i P_ij dD_i, with P_ij = e^(scale q_i k_j - LSE_i) from the rounded inputs and
     * the CPU's LSE (in double) */
    double *key_sum = calloc((size_t)(BH * k->Nk), sizeof *key_sum);
    for (int64_t h = 0; h < BH; h++)
        for (int64_t i = 0; i < k->Nq; i++)
            for (int64_t j = 0; j < k->Nk; j++) {
                double qk = 0;
                for (int64_t c = 0; c < k->D; c++) qk += (double)x[0][(h * k->Nq + i) * k->D + c] * x[1][(h * k->Nk + j) * k->D + c];
                key_sum[h * k->Nk + j] += exp(scale * qk - ref.lse[h * k->Nq + i]) * dD[h * k->Nq + i];
            }
    EXPECT_WITHIN("dq", att_numel(k, 0), got.g[0], ref.g[0], scale * max_k * dD[e / k->D]);
    EXPECT_WITHIN("dk", att_numel(k, 1), got.g[1], ref.g[1], scale * max_q * key_sum[e / k->D]);
    const double err_v = rx_rel_err(got.g[2], ref.g[2], (long)att_numel(k, 2));
    cr_expect_leq(err_v, TOL_FP32, "%s: dv relative error %.3g", k->name, err_v);
    free(dD);
    free(key_sum);
    att_free(&ref);
    att_free(&got);
    for (int i = 0; i < 3; i++) free(x[i]);
    free(dO);
}

/* head dims runexp's models use (8: tiny tests and cfg_cifar; 32: quickstart; 64: ldm; 256:
 * cfg_cifar32), padded ones (24, 40), tails of the 64-row blocks and 32-key tiles */
static const att_case bf16_cases[] = {
    {"64 tokens D 32", 2, 2, 64, 64, 32, 32, 1.0f},
    {"37x45 D 8 Dv 24", 1, 2, 37, 45, 8, 24, 1.0f},
    {"70x130 D 64", 1, 1, 70, 130, 64, 64, 1.0f},
    {"1 query, 1 key, D 16", 1, 1, 1, 1, 16, 16, 1.0f},
    {"large logits, 100 keys, D 16", 1, 1, 20, 100, 16, 16, 4.0f},
    {"40 tokens D 256 (cfg_cifar32's head)", 1, 1, 40, 40, 256, 256, 1.0f},
};

Test(cuda_mma, attention_bf16_within_the_derived_bounds) {
    px_pair p;
    px_open(&p, RX_PRECISION_BF16, 0);
    for (size_t i = 0; i < PX_COUNT(bf16_cases); i++) att_check_bf16(&p, &bf16_cases[i]);
    px_close(&p);
}

/* bf16 did run: unrounded inputs, the device's output differs from the CPU's fp32 by more than
 * fp32 would; and a head over 256 wide stays fp32 (rounded inputs: fp32 tolerance) */
Test(cuda_mma, attention_bf16_ran_and_wide_heads_stay_fp32) {
    px_pair p;
    px_open(&p, RX_PRECISION_BF16, 0);
    const att_case *k = &bf16_cases[0];
    float *x[3], *dO;
    att_inputs(k, 0, x, &dO);
    att_result ref = att_run(p.cpu, k, x, dO), got = att_run(p.gpu, k, x, dO);
    const double err = rx_rel_err(got.o, ref.o, (long)(k->B * k->H * k->Nq * k->Dv));
    cr_log_info("%s, unrounded inputs: bf16 output vs CPU fp32: %.2e", k->name, err);
    cr_expect_gt(err, TOL_BF16_SEEN, "%s: error %.3g, as small as fp32's: the bf16 kernel did not run", k->name, err);
    att_free(&ref);
    att_free(&got);
    for (int i = 0; i < 3; i++) free(x[i]);
    free(dO);

    const att_case wide = {"D 300 (fp32 kernel)", 1, 1, 20, 21, 300, 260, 1.0f};
    k = &wide;
    att_inputs(k, 1, x, &dO);
    ref = att_run(p.cpu, k, x, dO);
    got = att_run(p.gpu, k, x, dO);
    const double e_o = rx_rel_err(got.o, ref.o, (long)(k->Nq * k->Dv));
    cr_expect_leq(e_o, TOL_FP32, "%s: output relative error %.3g", k->name, e_o);
    for (int i = 0; i < 3; i++) {
        const double e = rx_rel_err(got.g[i], ref.g[i], (long)att_numel(k, i));
        cr_expect_leq(e, TOL_FP32, "%s: gradient %d relative error %.3g", k->name, i, e);
    }
    att_free(&ref);
    att_free(&got);
    for (int i = 0; i < 3; i++) free(x[i]);
    free(dO);
    px_close(&p);
}
