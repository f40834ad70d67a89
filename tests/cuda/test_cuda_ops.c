/* test_cuda_ops.c — every op of ops.def, forward and backward, CUDA against the CPU kernel on the
 * same random inputs (reference: the CPU backend, itself gradchecked and checked against
 * PyTorch in tests/test_ops_*.c). Shapes include odd sizes and batch > 1. Tolerances (rx_rel_err,
 * max abs difference / max |CPU|): 1e-5 in fp32 (context opened with tf32 = 0), 2e-3 for the
 * GEMM-backed ops with TF32 on. See cuda_parity.h for the poisoning of outputs and gradients. */
#include "cuda_parity.h"

static const double TOL_FP32 = 1e-5, TOL_TF32 = 2e-3;

/* ---- op wrappers: the args ride in ud ------------------------------------------------------ */

typedef struct { int stride, pad; } conv_args;
static rx_tensor *f_conv2d(rx_ctx *c, rx_tensor **in, const void *ud) {
    const conv_args *a = ud;
    return rx_conv2d(c, in[0], in[1], in[2], a->stride, a->pad);
}
static rx_tensor *f_linear(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_linear(c, in[0], in[1], in[2]); }
typedef struct { int ta, tb; } mm_args;
static rx_tensor *f_matmul(rx_ctx *c, rx_tensor **in, const void *ud) {
    const mm_args *a = ud;
    return rx_matmul(c, in[0], in[1], a->ta, a->tb);
}
typedef struct { int groups; float eps; } gn_args;
static rx_tensor *f_group_norm(rx_ctx *c, rx_tensor **in, const void *ud) {
    const gn_args *a = ud;
    return rx_group_norm(c, in[0], in[1], in[2], a->groups, a->eps);
}
static rx_tensor *f_layer_norm(rx_ctx *c, rx_tensor **in, const void *ud) {
    return rx_layer_norm(c, in[0], in[1], in[2], *(const float *)ud);
}
static rx_tensor *f_softmax(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_softmax(c, in[0]); }
static rx_tensor *f_attention(rx_ctx *c, rx_tensor **in, const void *ud) {
    return rx_attention(c, in[0], in[1], in[2], *(const float *)ud);
}
static rx_tensor *f_add(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_add(c, in[0], in[1]); }
static rx_tensor *f_sub(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_sub(c, in[0], in[1]); }
static rx_tensor *f_mul(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_mul(c, in[0], in[1]); }
static rx_tensor *f_scale(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_scale(c, in[0], 1.7f, -0.3f); }
static rx_tensor *f_silu(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_silu(c, in[0]); }
static rx_tensor *f_exp(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_exp(c, in[0]); }
static rx_tensor *f_abs(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_abs(c, in[0]); }
static rx_tensor *f_gelu(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_gelu(c, in[0], *(const int *)ud); }
static rx_tensor *f_modulate(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_modulate(c, in[0], in[1], in[2]); }
static rx_tensor *f_dropout(rx_ctx *c, rx_tensor **in, const void *ud) {
    /* two calls in one step: the second draws a different mask (call number in the stream) */
    return rx_dropout(c, rx_dropout(c, in[0], *(const float *)ud), 0.5f);
}
static rx_tensor *f_concat(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_concat(c, in[0], in[1]); }
static rx_tensor *f_permute(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_permute(c, in[0], ud); }
static rx_tensor *f_upsample(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_upsample_nearest2x(c, in[0]); }
static rx_tensor *f_avgpool(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_avgpool2x(c, in[0]); }
static rx_tensor *f_gap(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_global_avgpool(c, in[0]); }
typedef struct { int C, h, w, p; } unpatch_args;
static rx_tensor *f_unpatchify(rx_ctx *c, rx_tensor **in, const void *ud) {
    const unpatch_args *a = ud;
    return rx_unpatchify(c, in[0], a->C, a->h, a->w, a->p);
}
typedef struct { int dim; int64_t start, len; } slice_args;
static rx_tensor *f_slice(rx_ctx *c, rx_tensor **in, const void *ud) {
    const slice_args *a = ud;
    return rx_slice(c, in[0], a->dim, a->start, a->len);
}
static rx_tensor *f_reshape(rx_ctx *c, rx_tensor **in, const void *ud) {
    /* reshape, then an op that writes, so the view's gradient path is exercised */
    return rx_scale(c, rx_reshape(c, in[0], 2, (const int64_t[]){-1, 6}), 2.0f, 0.0f);
}
static rx_tensor *f_embedding(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_embedding(c, in[0], in[1]); }
typedef struct { int dim, flip; float shift, scale, max_period; } temb_args;
static rx_tensor *f_temb(rx_ctx *c, rx_tensor **in, const void *ud) {
    const temb_args *a = ud;
    return rx_timestep_embedding(c, in[0], a->dim, a->flip, a->shift, a->scale, a->max_period);
}
static rx_tensor *f_sum(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_sum(c, in[0]); }
static rx_tensor *f_mean(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_mean(c, in[0]); }
static rx_tensor *f_mse(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_mse_loss(c, in[0], in[1], in[2]); }
static rx_tensor *f_cross_entropy(rx_ctx *c, rx_tensor **in, const void *ud) { return rx_cross_entropy(c, in[0], in[1]); }

/* ---- dense --------------------------------------------------------------------------------- */

static const conv_args S1P1 = {1, 1}, S2P1 = {2, 1}, S1P0 = {1, 0}, S3P2 = {3, 2};
static const mm_args NN = {0, 0}, TN = {1, 0}, NT = {0, 1}, TT = {1, 1};

static const px_case dense_cases[] = {
    {"conv2d 3x3 s1 p1 bias", f_conv2d, &S1P1, 3, {PX_X(2, 3, 7, 9), PX_X(5, 3, 3, 3), PX_X(5)}},
    {"conv2d 3x3 s2 p1 (downsample)", f_conv2d, &S2P1, 3, {PX_X(3, 4, 8, 8), PX_X(6, 4, 3, 3), PX_X(6)}},
    {"conv2d 1x1 no bias", f_conv2d, &S1P0, 3, {PX_X(2, 6, 5, 5), PX_X(4, 6, 1, 1), PX_NONE}},
    {"conv2d 5x3 s3 p2", f_conv2d, &S3P2, 3, {PX_X(1, 2, 6, 7), PX_X(3, 2, 5, 3), PX_X(3)}},
    {"conv2d 32ch 16x16", f_conv2d, &S1P1, 3, {PX_X(4, 32, 16, 16), PX_X(32, 32, 3, 3), PX_X(32)}},
    {"linear bias", f_linear, NULL, 3, {PX_X(7, 13), PX_X(5, 13), PX_X(5)}},
    {"linear 3-D no bias", f_linear, NULL, 3, {PX_X(2, 3, 9), PX_X(11, 9), PX_NONE}},
    {"linear 64x256->128", f_linear, NULL, 3, {PX_X(64, 256), PX_X(128, 256), PX_X(128)}},
    {"matmul 2-D", f_matmul, &NN, 2, {PX_X(3, 5), PX_X(5, 7)}},
    {"matmul 4-D ta", f_matmul, &TN, 2, {PX_X(2, 3, 5, 4), PX_X(2, 3, 5, 6)}},
    {"matmul 3-D tb", f_matmul, &NT, 2, {PX_X(3, 4, 5), PX_X(3, 7, 5)}},
    {"matmul 4-D ta tb", f_matmul, &TT, 2, {PX_X(2, 2, 9, 4), PX_X(2, 2, 3, 9)}},
};

Test(cuda_ops, dense_fp32) {
    px_pair p;
    px_open(&p, 0, 0);
    px_run_all(&p, dense_cases, PX_COUNT(dense_cases), TOL_FP32);
    px_close(&p);
}

/* deterministic mode picks algorithms by cuDNN's heuristics (no measuring): same numbers */
Test(cuda_ops, dense_fp32_deterministic) {
    px_pair p;
    px_open(&p, 0, 1);
    px_run_all(&p, dense_cases, PX_COUNT(dense_cases), TOL_FP32);
    px_close(&p);
}

static const float ATT_DEFAULT = 0.0f, ATT_03 = 0.3f;
static const px_case attention_cases[] = {
    {"attention 4-D Nq != Nk, Dv != D", f_attention, &ATT_DEFAULT, 3, {PX_X(2, 3, 5, 8), PX_X(2, 3, 7, 8), PX_X(2, 3, 7, 6)}},
    {"attention 3-D scale 0.3", f_attention, &ATT_03, 3, {PX_X(4, 9, 16), PX_X(4, 9, 16), PX_X(4, 9, 16)}},
    {"attention 64 tokens", f_attention, &ATT_DEFAULT, 3, {PX_X(2, 4, 64, 32), PX_X(2, 4, 64, 32), PX_X(2, 4, 64, 32)}},
};

/* TF32: the GEMMs (cuBLAS, cuDNN) round their inputs to 10-bit mantissas */
Test(cuda_ops, dense_and_attention_tf32) {
    px_pair p;
    px_open(&p, 1, 0);
    px_run_all(&p, dense_cases, PX_COUNT(dense_cases), TOL_TF32);
    px_run_all(&p, attention_cases, PX_COUNT(attention_cases), TOL_TF32);
    px_close(&p);
}

/* ---- bf16 (precision: bf16) ------------------------------------------------------------------------
 * The GEMM and convolution operands are rounded to bf16 (nearest even) on the device and multiplied
 * with fp32 accumulation (dense.cu). Two references:
 *   - the CPU fp32 kernel on the same inputs rounded to bf16 beforehand (inputs and the output
 *     gradient: px round_bf16), so the device's rounding of its operands changes nothing and only
 *     what bf16 does to the results remains: linear/matmul keep fp32 results (cublasGemmEx, fp32
 *     C), TOL_FP32 (accumulation order); a convolution's result r comes back from cuDNN as bf16
 *     (its legacy API has no bf16-in/fp32-out configuration): one rounding, |error| <= 2^-8 |r|
 *     (8 significant bits), to which the bias (forward) or the gradient already there (backward)
 *     is added, so measured against the final values' max (up to 2x smaller than r's here)
 *     TOL_BF16_RESULT = 2^-7.
 *     Sharper: a convolution of small whole numbers (results < 256, exact in bf16 and in fp32)
 *     must match exactly;
 *   - the CPU fp32 kernel on the unrounded inputs: the operands' own rounding (2^-8 relative each)
 *     on top, TOL_BF16 = 1e-2; and each GEMM-backed op must differ by more than TOL_BF16_SEEN = 1e-4
 *     (fp32 agrees to 1e-5): bf16 math did run.
 * Attention under bf16 runs on tensor cores (attention.cu's bf16 forward): tests/cuda/test_cuda_mma.c
 * bounds it against the CPU on the same bf16-rounded inputs. */

static const double TOL_BF16_RESULT = 1.0 / 128, TOL_BF16 = 1e-2, TOL_BF16_SEEN = 1e-4;

/* forward only (no gradients): x, w, b whole numbers in [0, 3): 27 products <= 4, sums < 256 */
static const px_case conv_whole_numbers = {"conv2d whole numbers (exact in bf16)", f_conv2d, &S1P1, 3,
    {PX_T(0, PX_INDEX, 3, 2, 3, 7, 9), PX_T(0, PX_INDEX, 3, 5, 3, 3, 3), PX_T(0, PX_INDEX, 3, 5)}};

static int is_conv(const px_case *k) { return !strncmp(k->name, "conv2d", 6); }

static const px_case *dense_case(const char *name) {
    for (int i = 0; i < PX_COUNT(dense_cases); i++)
        if (!strcmp(dense_cases[i].name, name)) return &dense_cases[i];
    cr_assert_fail("no dense case '%s'", name);
    return NULL;
}

Test(cuda_ops, dense_bf16_matches_the_cpu_on_bf16_inputs) {
    px_pair p;
    px_open(&p, RX_PRECISION_BF16, 0);
    p.round_bf16 = 1;
    for (int i = 0; i < PX_COUNT(dense_cases); i++)
        px_run(&p, &dense_cases[i], 1000 + (uint64_t)i * 17, is_conv(&dense_cases[i]) ? TOL_BF16_RESULT : TOL_FP32);
    px_run(&p, &conv_whole_numbers, 5, 0.0);
    px_close(&p);
}

/* the largest of the output's and the gradients' errors */
static double px_worst(const px_result *r) {
    double w = r->out_err;
    for (int i = 0; i < RX_MAX_IN; i++) w = r->grad_err[i] > w ? r->grad_err[i] : w;
    return w;
}

Test(cuda_ops, dense_bf16_on_fp32_inputs) {
    px_pair p;
    px_open(&p, RX_PRECISION_BF16, 1);   /* deterministic: cuDNN's heuristic ranking, with bf16 descriptors */
    for (int i = 0; i < PX_COUNT(dense_cases); i++) {
        const px_result r = px_run(&p, &dense_cases[i], 1000 + (uint64_t)i * 17, TOL_BF16);
        cr_expect_gt(px_worst(&r), TOL_BF16_SEEN, "%s: error %.3g: as small as fp32's, so bf16 did not run",
                     dense_cases[i].name, px_worst(&r));
    }
    px_close(&p);
}

/* sample.precision switches an open context (rx_cuda_set_precision): convolution plans are kept
 * per precision, so an fp32 call after bf16 ones is fp32 again (TOL_FP32), and bf16 after that is
 * bf16 (an error above fp32's); attention too (its forward only, as sampling calls it: bf16 on
 * unrounded inputs within TOL_BF16, the operands' and P's rounding) */
static const px_case attention_forward = {"attention 64 tokens, forward", f_attention, &ATT_DEFAULT, 3,
    {PX_T(0, PX_NORMAL, 1.0f, 2, 4, 64, 32), PX_T(0, PX_NORMAL, 1.0f, 2, 4, 64, 32), PX_T(0, PX_NORMAL, 1.0f, 2, 4, 64, 32)}};

Test(cuda_ops, precision_switches_on_an_open_context) {
    px_pair p;
    px_open(&p, RX_PRECISION_FP32, 0);
    const px_case *conv = dense_case("conv2d 32ch 16x16"), *lin = dense_case("linear 64x256->128");
    for (int round = 0; round < 2; round++) {
        cr_assert_eq(rx_cuda_set_precision(p.state, RX_PRECISION_FP32), RX_OK, "%s", rx_last_error());
        p.tf32 = RX_PRECISION_FP32;
        px_run(&p, conv, 5, TOL_FP32);
        px_run(&p, lin, 6, TOL_FP32);
        px_run(&p, &attention_forward, 7, TOL_FP32);
        cr_assert_eq(rx_cuda_set_precision(p.state, RX_PRECISION_BF16), RX_OK, "%s", rx_last_error());
        p.tf32 = RX_PRECISION_BF16;
        px_result a = px_run(&p, conv, 5, TOL_BF16), b = px_run(&p, lin, 6, TOL_BF16);
        px_result c = px_run(&p, &attention_forward, 7, TOL_BF16);
        cr_expect_gt(px_worst(&a), TOL_BF16_SEEN, "conv2d after the switch to bf16: error %.3g", px_worst(&a));
        cr_expect_gt(px_worst(&b), TOL_BF16_SEEN, "linear after the switch to bf16: error %.3g", px_worst(&b));
        cr_expect_gt(c.out_err, TOL_BF16_SEEN, "attention after the switch to bf16: error %.3g", c.out_err);
    }
    cr_expect_neq(rx_cuda_set_precision(p.state, 7), RX_OK, "precision 7 accepted");
    px_close(&p);
}

/* ---- norm, softmax, attention ---------------------------------------------------------------- */

static const gn_args G3 = {3, 1e-5f}, G8 = {8, 1e-6f}, G1 = {1, 1e-5f};
static const float EPS5 = 1e-5f, EPS6 = 1e-6f;

static const px_case norm_cases[] = {
    {"group_norm affine", f_group_norm, &G3, 3, {PX_X(2, 6, 5, 7), PX_X(6), PX_X(6)}},
    {"group_norm no affine 3-D", f_group_norm, &G8, 3, {PX_X(3, 8, 4), PX_NONE, PX_NONE}},
    {"group_norm gamma only, shifted data", f_group_norm, &G1, 3,
     {PX_T(1, PX_UNIFORM, 5.0f, 2, 4, 3, 3), PX_X(4), PX_NONE}},
    {"group_norm 32ch 16x16", f_group_norm, &G8, 3, {PX_X(2, 32, 16, 16), PX_X(32), PX_X(32)}},
    {"layer_norm affine", f_layer_norm, &EPS5, 3, {PX_X(3, 5, 7), PX_X(7), PX_X(7)}},
    {"layer_norm no affine", f_layer_norm, &EPS6, 3, {PX_X(4, 33), PX_NONE, PX_NONE}},
    {"layer_norm 384", f_layer_norm, &EPS6, 3, {PX_X(2, 16, 384), PX_X(384), PX_X(384)}},
    {"softmax", f_softmax, NULL, 1, {PX_T(1, PX_NORMAL, 3.0f, 3, 7)}},
    {"softmax 129", f_softmax, NULL, 1, {PX_X(2, 5, 129)}},
};

Test(cuda_ops, norm_softmax_attention_fp32) {
    px_pair p;
    px_open(&p, 0, 0);
    px_run_all(&p, norm_cases, PX_COUNT(norm_cases), TOL_FP32);
    px_run_all(&p, attention_cases, PX_COUNT(attention_cases), TOL_FP32);
    px_close(&p);
}

/* the attention kernels around their tiles (16 rows a block, 64-row tiles, 256 columns a block):
 * rows past a tile, N = 1, Nq != Nk, Dv != D, head dims 8 to 300, 1 to 32 heads, inputs without
 * grad, and large logits whose row maximum moves from key tile to key tile (online softmax) */
static const px_case attention_shape_cases[] = {
    {"attention N = 1", f_attention, &ATT_DEFAULT, 3, {PX_X(1, 1, 1, 8), PX_X(1, 1, 1, 8), PX_X(1, 1, 1, 8)}},
    {"attention 1 query, 130 keys", f_attention, &ATT_DEFAULT, 3, {PX_X(2, 1, 1, 16), PX_X(2, 1, 130, 16), PX_X(2, 1, 130, 16)}},
    {"attention 65 queries, 1 key", f_attention, &ATT_DEFAULT, 3, {PX_X(1, 2, 65, 8), PX_X(1, 2, 1, 8), PX_X(1, 2, 1, 8)}},
    {"attention 33x70 D 24 Dv 40", f_attention, &ATT_DEFAULT, 3, {PX_X(1, 2, 33, 24), PX_X(1, 2, 70, 24), PX_X(1, 2, 70, 40)}},
    {"attention 32 heads", f_attention, &ATT_DEFAULT, 3, {PX_X(1, 32, 17, 8), PX_X(1, 32, 17, 8), PX_X(1, 32, 17, 8)}},
    {"attention D 128", f_attention, &ATT_DEFAULT, 3, {PX_X(1, 2, 40, 128), PX_X(1, 2, 40, 128), PX_X(1, 2, 40, 128)}},
    {"attention D 64 Dv 128", f_attention, &ATT_DEFAULT, 3, {PX_X(2, 1, 18, 64), PX_X(2, 1, 66, 64), PX_X(2, 1, 66, 128)}},
    {"attention D 300 Dv 260", f_attention, &ATT_DEFAULT, 3, {PX_X(1, 1, 20, 300), PX_X(1, 1, 21, 300), PX_X(1, 1, 21, 260)}},
    {"attention k without grad", f_attention, &ATT_DEFAULT, 3,
     {PX_X(1, 2, 30, 16), PX_T(0, PX_NORMAL, 1.0f, 1, 2, 50, 16), PX_X(1, 2, 50, 16)}},
    {"attention only v with grad", f_attention, &ATT_DEFAULT, 3,
     {PX_T(0, PX_NORMAL, 1.0f, 1, 2, 30, 16), PX_T(0, PX_NORMAL, 1.0f, 1, 2, 50, 16), PX_X(1, 2, 50, 16)}},
    {"attention large logits, 200 keys", f_attention, &ATT_DEFAULT, 3,
     {PX_T(1, PX_NORMAL, 4.0f, 1, 1, 20, 16), PX_X(1, 1, 200, 16), PX_X(1, 1, 200, 16)}},
};

Test(cuda_ops, attention_shapes_fp32) {
    px_pair p;
    px_open(&p, 0, 0);
    px_run_all(&p, attention_shape_cases, PX_COUNT(attention_shape_cases), TOL_FP32);
    px_close(&p);
}

/* ---- elementwise ------------------------------------------------------------------------------ */

static const int GELU_EXACT = 0, GELU_TANH = 1;
static const float P03 = 0.3f;

static const px_case elementwise_cases[] = {
    {"add same shape", f_add, NULL, 2, {PX_X(2, 3, 4, 5), PX_X(2, 3, 4, 5)}},
    {"add [1,C,1,1] bias", f_add, NULL, 2, {PX_X(2, 3, 4, 5), PX_X(1, 3, 1, 1)}},
    {"add [B,C,1,1]", f_add, NULL, 2, {PX_X(2, 3, 4, 5), PX_X(2, 3, 1, 1)}},
    {"add [D] row bias", f_add, NULL, 2, {PX_X(3, 4, 5), PX_X(5)}},
    {"sub b larger", f_sub, NULL, 2, {PX_X(5), PX_X(3, 4, 5)}},
    {"sub [2,1,4] - [3,1]", f_sub, NULL, 2, {PX_X(2, 1, 4), PX_X(3, 1)}},
    {"mul scalar", f_mul, NULL, 2, {PX_X(1), PX_X(2, 3)}},
    {"mul both broadcast", f_mul, NULL, 2, {PX_X(4, 1, 6), PX_X(1, 5, 1)}},
    {"mul outer", f_mul, NULL, 2, {PX_X(6, 1), PX_X(1, 7)}},
    {"add [8,64,32,32] + [1,64,1,1]", f_add, NULL, 2, {PX_X(8, 64, 32, 32), PX_X(1, 64, 1, 1)}},
    {"mul [256,1152] * [1152]", f_mul, NULL, 2, {PX_X(256, 1152), PX_X(1152)}},
    {"sub [3,1] - [3,4096]", f_sub, NULL, 2, {PX_X(3, 1), PX_X(3, 4096)}},
    {"scale", f_scale, NULL, 1, {PX_X(3, 5)}},
    {"silu", f_silu, NULL, 1, {PX_T(1, PX_NORMAL, 4.0f, 2, 3, 17)}},
    {"exp", f_exp, NULL, 1, {PX_T(1, PX_NORMAL, 2.0f, 2, 3, 17)}},
    {"abs", f_abs, NULL, 1, {PX_T(1, PX_NORMAL, 2.0f, 2, 3, 17)}},
    {"gelu exact", f_gelu, &GELU_EXACT, 1, {PX_T(1, PX_NORMAL, 2.0f, 5, 33)}},
    {"gelu tanh", f_gelu, &GELU_TANH, 1, {PX_T(1, PX_NORMAL, 2.0f, 5, 33)}},
    {"modulate", f_modulate, NULL, 3, {PX_X(2, 5, 7), PX_X(2, 7), PX_X(2, 7)}},
    {"modulate 64 tokens", f_modulate, NULL, 3, {PX_X(3, 64, 96), PX_X(3, 96), PX_X(3, 96)}},
    /* training: the mask comes from Philox on each device and must agree exactly */
    {"dropout p=0.3 then 0.5", f_dropout, &P03, 1, {PX_X(3, 17, 5)}, .training = 1},
    {"reshape (view)", f_reshape, NULL, 1, {PX_X(2, 3, 4)}},
};

Test(cuda_ops, elementwise_fp32) {
    px_pair p;
    px_open(&p, 0, 0);
    px_run_all(&p, elementwise_cases, PX_COUNT(elementwise_cases), TOL_FP32);
    px_close(&p);
}

/* ---- shape ------------------------------------------------------------------------------------ */

static const int PERM_0213[] = {0, 2, 1, 3}, PERM_3102[] = {3, 1, 0, 2}, PERM_40312[] = {4, 0, 3, 1, 2}, PERM_10[] = {1, 0};
static const unpatch_args UNPATCH = {5, 3, 4, 2};
static const slice_args SL_MID = {1, 2, 5}, SL_FIRST = {0, 1, 2}, SL_NEG = {-1, -3, 2}, SL_ALL = {2, 0, 4};

static const px_case shape_cases[] = {
    {"concat 4-D", f_concat, NULL, 2, {PX_X(2, 3, 4, 5), PX_X(2, 2, 4, 5)}},
    {"concat 3-D C1=1", f_concat, NULL, 2, {PX_X(3, 1, 7), PX_X(3, 4, 7)}},
    {"concat 2-D", f_concat, NULL, 2, {PX_X(2, 5), PX_X(2, 3)}},
    {"permute 0213", f_permute, PERM_0213, 1, {PX_X(2, 3, 4, 5)}},
    {"permute 3102", f_permute, PERM_3102, 1, {PX_X(2, 3, 4, 5)}},
    {"permute 5-D", f_permute, PERM_40312, 1, {PX_X(2, 3, 4, 5, 6)}},
    {"permute 2-D", f_permute, PERM_10, 1, {PX_X(7, 9)}},
    {"upsample_nearest2x", f_upsample, NULL, 1, {PX_X(2, 3, 5, 7)}},
    {"avgpool2x", f_avgpool, NULL, 1, {PX_X(2, 3, 6, 10)}},
    {"global_avgpool", f_gap, NULL, 1, {PX_X(3, 5, 7, 9)}},
    {"unpatchify", f_unpatchify, &UNPATCH, 1, {PX_X(2, 12, 20)}},
    {"slice middle", f_slice, &SL_MID, 1, {PX_X(3, 10, 4)}},
    {"slice dim 0", f_slice, &SL_FIRST, 1, {PX_X(3, 10, 4)}},
    {"slice negative", f_slice, &SL_NEG, 1, {PX_X(3, 10, 4)}},
    {"slice whole dim", f_slice, &SL_ALL, 1, {PX_X(3, 10, 4)}},
};

Test(cuda_ops, shape_fp32) {
    px_pair p;
    px_open(&p, 0, 0);
    px_run_all(&p, shape_cases, PX_COUNT(shape_cases), TOL_FP32);
    px_close(&p);
}

/* ---- embed, reductions, losses --------------------------------------------------------------------- */

static const temb_args TEMB_UNET = {32, 1, 0.0f, 1.0f, 10000.0f}, TEMB_ODD = {33, 0, 1.0f, 2.0f, 5000.0f};

static const px_case embed_loss_cases[] = {
    {"embedding (repeated rows)", f_embedding, NULL, 2, {PX_X(11, 7), PX_T(0, PX_INDEX, 11, 29)}},
    {"embedding 2-D idx", f_embedding, NULL, 2, {PX_X(4, 16), PX_T(0, PX_INDEX, 4, 2, 3)}},
    {"timestep_embedding unet", f_temb, &TEMB_UNET, 1, {PX_T(1, PX_UNIFORM, 1000.0f, 5)}},
    {"timestep_embedding odd dim", f_temb, &TEMB_ODD, 1, {PX_T(0, PX_UNIFORM, 1000.0f, 7)}},
    {"sum", f_sum, NULL, 1, {PX_X(3, 7, 5)}},
    {"sum 2^20", f_sum, NULL, 1, {PX_T(1, PX_UNIFORM, 1.0f, 1 << 20)}},
    {"mean", f_mean, NULL, 1, {PX_T(1, PX_UNIFORM, 2.0f, 1000)}},
    {"mse_loss weighted", f_mse, NULL, 3, {PX_X(4, 3, 5, 5), PX_X(4, 3, 5, 5), PX_T(1, PX_UNIFORM, 2.0f, 4)}},
    {"mse_loss", f_mse, NULL, 3, {PX_X(5, 77), PX_T(0, PX_NORMAL, 1.0f, 5, 77), PX_NONE}},
    {"cross_entropy", f_cross_entropy, NULL, 2, {PX_T(1, PX_NORMAL, 3.0f, 6, 10), PX_T(0, PX_INDEX, 10, 6)}},
    {"cross_entropy 1000 classes", f_cross_entropy, NULL, 2, {PX_X(3, 1000), PX_T(0, PX_INDEX, 1000, 3)}},
};

Test(cuda_ops, embed_reductions_losses_fp32) {
    px_pair p;
    px_open(&p, 0, 0);
    px_run_all(&p, embed_loss_cases, PX_COUNT(embed_loss_cases), TOL_FP32);
    px_close(&p);
}

/* ---- errors: the CUDA kernels that check data say what the CPU kernels say ---------------------------- */

static void expect_same_error(px_pair *p, px_fn f, int n_in, const int64_t *const shapes[], const int *ndims,
                              const float *const values[], const char *want) {
    char msg[2][512];
    for (int b = 0; b < 2; b++) {
        rx_ctx *c = b ? p->gpu : p->cpu;
        rx_ctx_clear_error(c);
        rx_tensor *in[RX_MAX_IN] = {0};
        for (int i = 0; i < n_in; i++) {
            in[i] = rx_from_host(c, ndims[i], shapes[i], values[i]);
            cr_assert(in[i], "%s", rx_last_error());
        }
        /* CUDA checks the embedding's indices without waiting (embed.cu): the op queues and the
         * next read from the device reports the index, with the CPU's message */
        const rx_tensor *out = f(c, in, NULL);
        if (out && b) cr_expect_neq(c->be->sync(c), RX_OK, "a bad index must fail on cuda by the next read");
        else cr_expect_null(out, "a bad index must fail on %s", b ? "cuda" : "cpu");
        snprintf(msg[b], sizeof msg[b], "%s", rx_last_error());
        rx_ctx_clear_error(c);
        rx_step_end(c);
    }
    cr_expect_str_eq(msg[1], msg[0], "CUDA: %s\nCPU:  %s", msg[1], msg[0]);
    cr_expect(strstr(msg[1], want), "CUDA message '%s' lacks '%s'", msg[1], want);
}

Test(cuda_ops, bad_indices_fail_with_the_cpu_message) {
    px_pair p;
    px_open(&p, 0, 0);
    float table[3 * 2] = {0}, idx[4] = {0, 2, 1, 3};
    expect_same_error(&p, f_embedding, 2, (const int64_t *const[]){(const int64_t[]){3, 2}, (const int64_t[]){4}},
                      (const int[]){2, 1}, (const float *const[]){table, idx}, "embedding: idx[3] = 3 is not a row");
    float logits[2 * 4] = {0}, labels[2] = {1, 2.5f};
    expect_same_error(&p, f_cross_entropy, 2, (const int64_t *const[]){(const int64_t[]){2, 4}, (const int64_t[]){2}},
                      (const int[]){2, 1}, (const float *const[]){logits, labels},
                      "cross_entropy: label 2.5 of row 1 is not a class index");
    px_close(&p);
}

/* ---- fused ops (issue 16 §2) ------------------------------------------------------------------------- */

static rx_tensor *f_group_norm_silu(rx_ctx *c, rx_tensor **in, const void *ud) {
    const gn_args *a = ud;
    return rx_group_norm_silu(c, in[0], in[1], in[2], in[3], a->groups, a->eps);
}

typedef struct { float scale; } radd_args;
static rx_tensor *f_residual_add(rx_ctx *c, rx_tensor **in, const void *ud) {
    return rx_residual_add(c, in[0], in[1], in[2], ((const radd_args *)ud)->scale);
}
static const radd_args RADD1 = {1.0f}, RADD_HALF = {0.5f};

/* group_norm_silu in = {x, gamma, beta, shift}: the resnet's norm2 (shift = the time embedding),
 * norm1 (no shift), no affine, only the shift with grad, one channel per group, and the U-Net's
 * first level (128 channels, 32 groups, 16x16: more threads' worth of work per group than a block) */
static const px_case fused_cases[] = {
    {"group_norm_silu shift + affine", f_group_norm_silu, &G3, 4, {PX_X(2, 6, 5, 7), PX_X(6), PX_X(6), PX_X(2, 6)}},
    {"group_norm_silu no shift", f_group_norm_silu, &G8, 4, {PX_X(3, 16, 4, 3), PX_X(16), PX_X(16), PX_NONE}},
    {"group_norm_silu no affine 3-D", f_group_norm_silu, &G3, 4, {PX_X(2, 6, 9), PX_NONE, PX_NONE, PX_X(2, 6)}},
    {"group_norm_silu only shift with grad, shifted data", f_group_norm_silu, &G1, 4,
     {PX_T(0, PX_UNIFORM, 5.0f, 2, 4, 3, 3), PX_T(0, PX_NORMAL, 1.0f, 4), PX_T(0, PX_NORMAL, 1.0f, 4), PX_X(2, 4)}},
    {"group_norm_silu one channel per group", f_group_norm_silu, &G8, 4, {PX_X(2, 8, 5, 5), PX_X(8), PX_X(8), PX_X(2, 8)}},
    {"group_norm_silu 128ch 32 groups 16x16", f_group_norm_silu, &(gn_args){32, 1e-5f}, 4,
     {PX_X(2, 128, 16, 16), PX_X(128), PX_X(128), PX_X(2, 128)}},
    /* residual_add in = {a, b, bias}: with the bias gradient (the rows kernel), without a bias, and
     * with only b needing a gradient (the elementwise path) */
    {"residual_add bias", f_residual_add, &RADD1, 3, {PX_X(2, 5, 6, 7), PX_X(2, 5, 6, 7), PX_X(5)}},
    {"residual_add scale 0.5 32x32", f_residual_add, &RADD_HALF, 3, {PX_X(2, 8, 32, 32), PX_X(2, 8, 32, 32), PX_X(8)}},
    {"residual_add no bias", f_residual_add, &RADD1, 3, {PX_X(3, 4, 9), PX_X(3, 4, 9), PX_NONE}},
    {"residual_add bias without grad", f_residual_add, &RADD_HALF, 3,
     {PX_T(0, PX_NORMAL, 1.0f, 2, 3, 5, 5), PX_X(2, 3, 5, 5), PX_T(0, PX_NORMAL, 1.0f, 3)}},
    /* mse_loss computes its gradient in the forward's pass and its last block adds the examples:
     * many blocks (128 examples), only the weight with a gradient, and only the target */
    {"mse_loss 128 examples", f_mse, NULL, 3, {PX_X(128, 3, 4, 4), PX_X(128, 3, 4, 4), PX_T(1, PX_UNIFORM, 2.0f, 128)}},
    {"mse_loss only weight grad", f_mse, NULL, 3,
     {PX_T(0, PX_NORMAL, 1.0f, 6, 50), PX_T(0, PX_NORMAL, 1.0f, 6, 50), PX_T(1, PX_UNIFORM, 2.0f, 6)}},
    {"mse_loss only target grad", f_mse, NULL, 3, {PX_T(0, PX_NORMAL, 1.0f, 5, 77), PX_X(5, 77), PX_NONE}},
};

Test(cuda_ops, fused_fp32) {
    px_pair p;
    px_open(&p, 0, 0);
    px_run_all(&p, fused_cases, PX_COUNT(fused_cases), TOL_FP32);
    px_close(&p);
}
