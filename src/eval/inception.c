/* inception.c — pytorch-fid's FID Inception-v3, forward only, and the `inception_fid` feature
 * extractor (see inception.h).
 *
 * The network is data: each block is a short program of steps (a BasicConv2d or a 3x3 pool)
 * that read the block input or the last temporary and write either a new temporary or the
 * next channels of the block output — the concatenations of torch.cat([...], 1) come for free
 * because [C,H,W] channel slices are contiguous. The step tables below read like pytorch-fid's
 * FIDInceptionA/C/E forward()s and torchvision's InceptionB/D; their conv order is the
 * state-dict order, so the weights are read in the order they are listed.
 *
 * Every activation has a fixed shape (the input is always resized to 299x299), so a sizing
 * pass at load time — the same forward code with no memory (nothing computed) — finds how much
 * scratch one image needs; a forward then never allocates. */
#include "eval/inception.h"
#include "eval/features.h"
#include "eval/metric.h"
#include "io/safetensors.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define BN_EPS 1e-3        /* torchvision's BasicConv2d: BatchNorm2d(eps=0.001)          */
#define MAX_CONVS 94       /* BasicConv2d modules in the FID Inception (fc is not used) */
#define S RX_INCEPTION_SIZE

// ---------------------------------------------------------------------------
// the architecture as data

enum { END, CONV, AVG3, MAX3, MAX3_S2 };   /* step ops; the pools are 3x3                    */
enum { FROM_X, FROM_LAST };                /* step input: block input | the last temporary   */
enum { TO_TMP, TO_OUT };                   /* step output: a new temporary | next output channels */
#define ARG (-1)                           /* cout = the block's argument (pool_features, channels_7x7) */
#define POOL(op, src, dst) {op, src, dst, NULL, 0, 0, 0, 0, 0, 0}

/* a row: {op, input, output, BasicConv2d name, cout, kh, kw, stride, pad_h, pad_w} */
typedef struct step {
    unsigned char op, src, dst;
    const char *conv;                      /* BasicConv2d name in the block ("" in the stem) */
    int cout, kh, kw, stride, ph, pw;
} step;

/* stem: one BasicConv2d or pool per entry of the block table, so that each is a tap */
static const step conv_1a_3x3[] = {{CONV, FROM_X, TO_OUT, "", 32, 3, 3, 2, 0, 0}, {0}};
static const step conv_2a_3x3[] = {{CONV, FROM_X, TO_OUT, "", 32, 3, 3, 1, 0, 0}, {0}};
static const step conv_2b_3x3[] = {{CONV, FROM_X, TO_OUT, "", 64, 3, 3, 1, 1, 1}, {0}};
static const step conv_3b_1x1[] = {{CONV, FROM_X, TO_OUT, "", 80, 1, 1, 1, 0, 0}, {0}};
static const step conv_4a_3x3[] = {{CONV, FROM_X, TO_OUT, "", 192, 3, 3, 1, 0, 0}, {0}};
static const step max_pool_s2[] = {POOL(MAX3_S2, FROM_X, TO_OUT), {0}};

/* FIDInceptionA(in, pool_features): 64 + 64 + 96 + pool_features channels */
static const step inception_a[] = {
    {CONV, FROM_X, TO_OUT, "branch1x1", 64, 1, 1, 1, 0, 0},
    {CONV, FROM_X, TO_TMP, "branch5x5_1", 48, 1, 1, 1, 0, 0},
    {CONV, FROM_LAST, TO_OUT, "branch5x5_2", 64, 5, 5, 1, 2, 2},
    {CONV, FROM_X, TO_TMP, "branch3x3dbl_1", 64, 1, 1, 1, 0, 0},
    {CONV, FROM_LAST, TO_TMP, "branch3x3dbl_2", 96, 3, 3, 1, 1, 1},
    {CONV, FROM_LAST, TO_OUT, "branch3x3dbl_3", 96, 3, 3, 1, 1, 1},
    POOL(AVG3, FROM_X, TO_TMP),            /* avg_pool2d(3, 1, 1, count_include_pad=False) */
    {CONV, FROM_LAST, TO_OUT, "branch_pool", ARG, 1, 1, 1, 0, 0},
    {0}};

/* torchvision InceptionB (Mixed_6a): 35x35 -> 17x17, 384 + 96 + in channels */
static const step inception_b[] = {
    {CONV, FROM_X, TO_OUT, "branch3x3", 384, 3, 3, 2, 0, 0},
    {CONV, FROM_X, TO_TMP, "branch3x3dbl_1", 64, 1, 1, 1, 0, 0},
    {CONV, FROM_LAST, TO_TMP, "branch3x3dbl_2", 96, 3, 3, 1, 1, 1},
    {CONV, FROM_LAST, TO_OUT, "branch3x3dbl_3", 96, 3, 3, 2, 0, 0},
    POOL(MAX3_S2, FROM_X, TO_OUT),
    {0}};

/* FIDInceptionC(in, channels_7x7): 4 x 192 channels; 1x7 / 7x1 convs keep the size */
static const step inception_c[] = {
    {CONV, FROM_X, TO_OUT, "branch1x1", 192, 1, 1, 1, 0, 0},
    {CONV, FROM_X, TO_TMP, "branch7x7_1", ARG, 1, 1, 1, 0, 0},
    {CONV, FROM_LAST, TO_TMP, "branch7x7_2", ARG, 1, 7, 1, 0, 3},
    {CONV, FROM_LAST, TO_OUT, "branch7x7_3", 192, 7, 1, 1, 3, 0},
    {CONV, FROM_X, TO_TMP, "branch7x7dbl_1", ARG, 1, 1, 1, 0, 0},
    {CONV, FROM_LAST, TO_TMP, "branch7x7dbl_2", ARG, 7, 1, 1, 3, 0},
    {CONV, FROM_LAST, TO_TMP, "branch7x7dbl_3", ARG, 1, 7, 1, 0, 3},
    {CONV, FROM_LAST, TO_TMP, "branch7x7dbl_4", ARG, 7, 1, 1, 3, 0},
    {CONV, FROM_LAST, TO_OUT, "branch7x7dbl_5", 192, 1, 7, 1, 0, 3},
    POOL(AVG3, FROM_X, TO_TMP),
    {CONV, FROM_LAST, TO_OUT, "branch_pool", 192, 1, 1, 1, 0, 0},
    {0}};

/* torchvision InceptionD (Mixed_7a): 17x17 -> 8x8, 320 + 192 + in channels */
static const step inception_d[] = {
    {CONV, FROM_X, TO_TMP, "branch3x3_1", 192, 1, 1, 1, 0, 0},
    {CONV, FROM_LAST, TO_OUT, "branch3x3_2", 320, 3, 3, 2, 0, 0},
    {CONV, FROM_X, TO_TMP, "branch7x7x3_1", 192, 1, 1, 1, 0, 0},
    {CONV, FROM_LAST, TO_TMP, "branch7x7x3_2", 192, 1, 7, 1, 0, 3},
    {CONV, FROM_LAST, TO_TMP, "branch7x7x3_3", 192, 7, 1, 1, 3, 0},
    {CONV, FROM_LAST, TO_OUT, "branch7x7x3_4", 192, 3, 3, 2, 0, 0},
    POOL(MAX3_S2, FROM_X, TO_OUT),
    {0}};

/* FIDInceptionE_1 / E_2: 320 + 2x384 + 2x384 + 192 = 2048 channels. The 2a/2b (3a/3b) pair
 * both read the last temporary, since the first of them writes to the output. E_2 has a
 * max pool in branch_pool (as the TensorFlow graph the FID weights come from). */
#define INCEPTION_E(pool)                                                   \
    {CONV, FROM_X, TO_OUT, "branch1x1", 320, 1, 1, 1, 0, 0},                \
    {CONV, FROM_X, TO_TMP, "branch3x3_1", 384, 1, 1, 1, 0, 0},              \
    {CONV, FROM_LAST, TO_OUT, "branch3x3_2a", 384, 1, 3, 1, 0, 1},          \
    {CONV, FROM_LAST, TO_OUT, "branch3x3_2b", 384, 3, 1, 1, 1, 0},          \
    {CONV, FROM_X, TO_TMP, "branch3x3dbl_1", 448, 1, 1, 1, 0, 0},           \
    {CONV, FROM_LAST, TO_TMP, "branch3x3dbl_2", 384, 3, 3, 1, 1, 1},        \
    {CONV, FROM_LAST, TO_OUT, "branch3x3dbl_3a", 384, 1, 3, 1, 0, 1},       \
    {CONV, FROM_LAST, TO_OUT, "branch3x3dbl_3b", 384, 3, 1, 1, 1, 0},       \
    POOL(pool, FROM_X, TO_TMP),                                             \
    {CONV, FROM_LAST, TO_OUT, "branch_pool", 192, 1, 1, 1, 0, 0},           \
    {0}
static const step inception_e1[] = {INCEPTION_E(AVG3)};
static const step inception_e2[] = {INCEPTION_E(MAX3)};

typedef struct block_def {
    const char *name;       /* state-dict prefix, and the tap name */
    const step *steps;
    int arg;
} block_def;

/* pytorch-fid's InceptionV3 blocks 0..3, in order (the final average pool is done apart) */
static const block_def inception_blocks[] = {
    {"Conv2d_1a_3x3", conv_1a_3x3, 0}, {"Conv2d_2a_3x3", conv_2a_3x3, 0}, {"Conv2d_2b_3x3", conv_2b_3x3, 0},
    {"maxpool1", max_pool_s2, 0},      {"Conv2d_3b_1x1", conv_3b_1x1, 0}, {"Conv2d_4a_3x3", conv_4a_3x3, 0},
    {"maxpool2", max_pool_s2, 0},
    {"Mixed_5b", inception_a, 32},     {"Mixed_5c", inception_a, 64},     {"Mixed_5d", inception_a, 64},
    {"Mixed_6a", inception_b, 0},
    {"Mixed_6b", inception_c, 128},    {"Mixed_6c", inception_c, 160},    {"Mixed_6d", inception_c, 160},
    {"Mixed_6e", inception_c, 192},
    {"Mixed_7a", inception_d, 0},
    {"Mixed_7b", inception_e1, 0},     {"Mixed_7c", inception_e2, 0},
};
#define NBLOCKS ((int)(sizeof inception_blocks / sizeof inception_blocks[0]))

const char *const rx_inception_tap_names[RX_INCEPTION_TAP_COUNT] = {
    "input", "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"};
_Static_assert(NBLOCKS + 2 == RX_INCEPTION_TAP_COUNT, "one tap per block, plus the input and the pool");

// ---------------------------------------------------------------------------
// the loaded network

typedef struct basic_conv {       /* a BasicConv2d with its BatchNorm folded in          */
    char name[48];                /* state-dict prefix, e.g. "Mixed_6b.branch7x7_2"       */
    int cin, cout, kh, kw, stride, ph, pw;
    float *w;                     /* [cout, cin*kh*kw] conv.weight * gamma / sqrt(var + eps) */
    float *b;                     /* [cout] beta - running_mean * gamma / sqrt(var + eps)  */
} basic_conv;

struct rx_inception {
    basic_conv conv[MAX_CONVS];   /* state-dict order */
    int nconv;
    size_t act_floats;            /* the largest block output [C,H,W]                     */
    size_t stack_floats;          /* peak of a block's temporaries and im2col buffer       */
};

static inline int out_size(int n, int k, int stride, int pad) { return (n + 2 * pad - k) / stride + 1; }

/* The BasicConv2d list with all shapes, by walking the blocks at 299x299 (cin = what the step reads). */
static void build_convs(rx_inception *net) {
    int C = 3, H = S, W = S;
    net->nconv = 0;
    for (int b = 0; b < NBLOCKS; b++) {
        const block_def *blk = &inception_blocks[b];
        int lastC = 0, lastH = 0, lastW = 0, outC = 0, outH = 0, outW = 0;
        for (const step *st = blk->steps; st->op != END; st++) {
            int c = st->src == FROM_X ? C : lastC, h = st->src == FROM_X ? H : lastH, w = st->src == FROM_X ? W : lastW;
            if (st->op == CONV) {
                RX_CHECK(net->nconv < MAX_CONVS);
                basic_conv *L = &net->conv[net->nconv++];
                *L = (basic_conv){.cin = c, .cout = st->cout == ARG ? blk->arg : st->cout, .kh = st->kh, .kw = st->kw,
                                  .stride = st->stride, .ph = st->ph, .pw = st->pw};
                snprintf(L->name, sizeof L->name, "%s%s%s", blk->name, st->conv[0] ? "." : "", st->conv);
                c = L->cout;
                h = out_size(h, L->kh, L->stride, L->ph);
                w = out_size(w, L->kw, L->stride, L->pw);
            } else if (st->op == MAX3_S2) {
                h = out_size(h, 3, 2, 0);
                w = out_size(w, 3, 2, 0);
            }
            if (st->dst == TO_OUT) { outC += c; outH = h; outW = w; }
            else { lastC = c; lastH = h; lastW = w; }
        }
        C = outC; H = outH; W = outW;
    }
    RX_CHECK(net->nconv == MAX_CONVS && C == RX_INCEPTION_FEAT_DIM && H == 8 && W == 8);
}

// ---------------------------------------------------------------------------
// scratch: a stack of floats; with base == NULL it only measures (the sizing pass)

typedef struct scratch {
    float *base;
    size_t top, peak, cap;
    size_t act_peak;              /* the largest block output seen */
} scratch;

static float *push(scratch *s, size_t n) {
    float *p = s->base ? s->base + s->top : NULL;
    s->top += (n + 15) & ~(size_t)15;             /* 64-byte steps: every buffer stays aligned */
    if (s->top > s->peak) s->peak = s->top;
    RX_CHECK(!s->base || s->top <= s->cap);
    return p;
}

typedef struct act { float *d; int C, H, W; } act;   /* an activation [C,H,W]; d NULL in the sizing pass */

// ---------------------------------------------------------------------------
// ops

/* col [cin*kh*kw, OH*OW]: row (c,i,j) holds x[c, oh*s - ph + i, ow*s - pw + j] (0 outside), so that
 * conv.weight [cout, cin, kh, kw] read as [cout, cin*kh*kw] multiplies it directly. */
static void im2col(const basic_conv *L, act x, int OH, int OW, float *col) {
    const int kh = L->kh, kw = L->kw, st = L->stride, ph = L->ph, pw = L->pw, rows = x.C * kh * kw;
    #pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const int c = r / (kh * kw), i = r / kw % kh, j = r % kw;
        const float *src = x.d + (size_t)c * x.H * x.W;
        float *dst = col + (size_t)r * OH * OW;
        for (int oh = 0; oh < OH; oh++, dst += OW) {
            const int ih = oh * st - ph + i;
            if (ih < 0 || ih >= x.H) { memset(dst, 0, (size_t)OW * sizeof *dst); continue; }
            const float *row = src + (size_t)ih * x.W;
            if (st == 1) {   /* a shifted copy of the row, zeros where it hangs over the edges */
                const int lo = pw - j > 0 ? pw - j : 0, hi = x.W + pw - j < OW ? x.W + pw - j : OW;
                if (hi <= lo) { memset(dst, 0, (size_t)OW * sizeof *dst); continue; }
                memset(dst, 0, (size_t)lo * sizeof *dst);
                memcpy(dst + lo, row + lo - pw + j, (size_t)(hi - lo) * sizeof *dst);
                memset(dst + hi, 0, (size_t)(OW - hi) * sizeof *dst);
                continue;
            }
            for (int ow = 0; ow < OW; ow++) {
                const int iw = ow * st - pw + j;
                dst[ow] = (iw >= 0 && iw < x.W) ? row[iw] : 0.0f;
            }
        }
    }
}

/* BasicConv2d, folded: y [cout, OH*OW] = relu(w [cout, K] @ im2col(x) [K, OH*OW] + b), K = cin*kh*kw */
static void conv_forward(const basic_conv *L, act x, act y, scratch *s) {
    const int K = L->cin * L->kh * L->kw, N = y.H * y.W;
    /* a 1x1 stride-1 conv reads x as it is: [cin, H*W] is already its im2col */
    const int direct = L->kh == 1 && L->kw == 1 && L->stride == 1 && L->ph == 0 && L->pw == 0;
    const size_t mark = s->top;
    float *col = direct ? x.d : push(s, (size_t)K * N);
    if (y.d) {
        if (!direct) im2col(L, x, y.H, y.W, col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L->cout, N, K, 1.0f, L->w, K, col, N, 0.0f, y.d, N);
        #pragma omp parallel for schedule(static)
        for (int o = 0; o < L->cout; o++) {
            float *yo = y.d + (size_t)o * N;
            const float bo = L->b[o];
            for (int n = 0; n < N; n++) yo[n] = yo[n] + bo > 0.0f ? yo[n] + bo : 0.0f;   /* ReLU */
        }
    }
    s->top = mark;
}

/* 3x3 pools with stride 1 and padding 1 (AVG3, MAX3) or stride 2 and no padding (MAX3_S2).
 * The padding never takes part: the max ignores it (PyTorch pads with -inf) and the average
 * divides by the taps inside the image (count_include_pad=False, TensorFlow's convention). */
static void pool_forward(int op, act x, act y) {
    if (!y.d) return;
    const int stride = op == MAX3_S2 ? 2 : 1, pad = op == MAX3_S2 ? 0 : 1, avg = op == AVG3;
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < x.C; c++) {
        const float *xc = x.d + (size_t)c * x.H * x.W;
        float *yc = y.d + (size_t)c * y.H * y.W;
        for (int oh = 0; oh < y.H; oh++) {
            const int h0 = oh * stride - pad, ha = h0 < 0 ? 0 : h0, hb = h0 + 3 > x.H ? x.H : h0 + 3;
            for (int ow = 0; ow < y.W; ow++) {
                const int w0 = ow * stride - pad, wa = w0 < 0 ? 0 : w0, wb = w0 + 3 > x.W ? x.W : w0 + 3;
                float acc = avg ? 0.0f : -INFINITY;
                if (hb - ha == 3 && wb - wa == 3) {   /* inside the image: the whole window */
                    const float *r0 = xc + ha * x.W + wa, *r1 = r0 + x.W, *r2 = r1 + x.W;
                    const float v[9] = {r0[0], r0[1], r0[2], r1[0], r1[1], r1[2], r2[0], r2[1], r2[2]};
                    if (avg) {
                        for (int k = 0; k < 9; k++) acc += v[k];
                        acc /= 9.0f;
                    } else {
                        for (int k = 0; k < 9; k++) acc = v[k] > acc ? v[k] : acc;
                    }
                } else if (avg) {
                    for (int h = ha; h < hb; h++)
                        for (int w = wa; w < wb; w++) acc += xc[h * x.W + w];
                    acc /= (float)((hb - ha) * (wb - wa));
                } else {
                    for (int h = ha; h < hb; h++)
                        for (int w = wa; w < wb; w++) acc = xc[h * x.W + w] > acc ? xc[h * x.W + w] : acc;
                }
                yc[oh * y.W + ow] = acc;
            }
        }
    }
}

static double mean_of(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s / (double)n;
}

// ---------------------------------------------------------------------------
// forward

/* One block: x -> y (written into ybuf); temporaries live on the scratch stack until the block ends. */
static act block_forward(const block_def *blk, const basic_conv **next_conv, act x, float *ybuf, scratch *s) {
    const size_t mark = s->top;
    act y = {ybuf, 0, 0, 0}, last = {0};
    for (const step *st = blk->steps; st->op != END; st++) {
        const act in = st->src == FROM_X ? x : last;
        const basic_conv *L = st->op == CONV ? (*next_conv)++ : NULL;
        act out = {NULL, in.C, in.H, in.W};
        if (L) {
            RX_CHECK(L->cin == in.C);
            out.C = L->cout;
            out.H = out_size(in.H, L->kh, L->stride, L->ph);
            out.W = out_size(in.W, L->kw, L->stride, L->pw);
        } else if (st->op == MAX3_S2) {
            out.H = out_size(in.H, 3, 2, 0);
            out.W = out_size(in.W, 3, 2, 0);
        }
        if (st->dst == TO_OUT) {        /* the next channels of the concatenation */
            RX_CHECK(y.C == 0 || (y.H == out.H && y.W == out.W));
            y.H = out.H;
            y.W = out.W;
            out.d = ybuf ? ybuf + (size_t)y.C * y.H * y.W : NULL;
            y.C += out.C;
        } else {
            out.d = push(s, (size_t)out.C * out.H * out.W);
            last = out;
        }
        if (L) conv_forward(L, in, out, s);
        else pool_forward(st->op, in, out);
    }
    s->top = mark;
    return y;
}

/* x [3,299,299] -> features [2048]; bufs: two activation buffers of net->act_floats; s: the stack.
 * With x == NULL only sizes are measured (s->peak, s->act_peak). */
static void forward_one(const rx_inception *net, const float *x299, float *bufs[2], scratch *s, float *features,
                        double *taps) {
    act x = {(float *)x299, 3, S, S};
    const basic_conv *next_conv = net->conv;
    if (taps && x.d) taps[0] = mean_of(x.d, (size_t)3 * S * S);
    for (int b = 0; b < NBLOCKS; b++) {
        act y = block_forward(&inception_blocks[b], &next_conv, x, x.d ? bufs[b & 1] : NULL, s);
        const size_t n = (size_t)y.C * y.H * y.W;
        if (n > s->act_peak) s->act_peak = n;
        if (taps && y.d) taps[b + 1] = mean_of(y.d, n);
        x = y;
    }
    RX_CHECK(next_conv == net->conv + net->nconv && x.C == RX_INCEPTION_FEAT_DIM);
    if (!x.d) return;
    /* adaptive average pool to 1x1 */
    for (int c = 0; c < x.C; c++) features[c] = (float)mean_of(x.d + (size_t)c * x.H * x.W, (size_t)x.H * x.W);
    if (taps) taps[RX_INCEPTION_TAP_COUNT - 1] = mean_of(features, (size_t)x.C);
}

/* scratch of one worker: [input 3x299x299 | two activation buffers | stack] */
static size_t input_floats(void) { return ((size_t)3 * S * S + 15) & ~(size_t)15; }
static size_t worker_floats(const rx_inception *net) {
    return input_floats() + 2 * net->act_floats + net->stack_floats;
}

static void run_worker(const rx_inception *net, float *ws, const float *x299, float *features, double *taps) {
    float *bufs[2] = {ws + input_floats(), ws + input_floats() + net->act_floats};
    scratch s = {bufs[1] + net->act_floats, 0, 0, net->stack_floats, 0};
    forward_one(net, x299, bufs, &s, features, taps);
}

void rx_inception_resize_bilinear(const float *x, int C, int H, int W, float *y, int OH, int OW) {
    /* ATen upsample_bilinear2d (align_corners=False): source = scale * (dst + 0.5) - 0.5, clamped
     * at 0, scale = in / out; the right neighbour is clamped at the edge */
    const float sh = (float)H / (float)OH, sw = (float)W / (float)OW;
    #pragma omp parallel for schedule(static)
    for (int oh = 0; oh < OH; oh++) {
        float fh = sh * ((float)oh + 0.5f) - 0.5f;
        if (fh < 0) fh = 0;
        const int h0 = (int)fh, h1 = h0 + (h0 < H - 1);
        const float lh1 = fh - (float)h0, lh0 = 1.0f - lh1;
        for (int ow = 0; ow < OW; ow++) {
            float fw = sw * ((float)ow + 0.5f) - 0.5f;
            if (fw < 0) fw = 0;
            const int w0 = (int)fw, w1 = w0 + (w0 < W - 1);
            const float lw1 = fw - (float)w0, lw0 = 1.0f - lw1;
            for (int c = 0; c < C; c++) {
                const float *xc = x + (size_t)c * H * W;
                y[((size_t)c * OH + oh) * OW + ow] = lh0 * (lw0 * xc[h0 * W + w0] + lw1 * xc[h0 * W + w1]) +
                                                     lh1 * (lw0 * xc[h1 * W + w0] + lw1 * xc[h1 * W + w1]);
            }
        }
    }
}

/* image [C,H,W] (C = 1 or 3) -> x299 [3,299,299]: resize (a copy at 299x299, where the resize is
 * the identity), gray replicated to three channels */
static void prepare_input(const float *img, int C, int H, int W, float *x299) {
    if (H == S && W == S) memcpy(x299, img, (size_t)C * S * S * sizeof *x299);
    else rx_inception_resize_bilinear(img, C, H, W, x299, S, S);
    for (int c = C; c < 3; c++) memcpy(x299 + (size_t)c * S * S, x299, (size_t)S * S * sizeof *x299);
}

rx_status rx_inception_forward(const rx_inception *net, const float *x, float *features, double *taps) {
    if (!net || !x || !features) return rx_fail(RX_ERR_ARG, "inception: NULL argument");
    float *ws = malloc(worker_floats(net) * sizeof *ws);
    if (!ws) return rx_fail(RX_ERR_OOM, "inception: out of memory for %zu MB of scratch", worker_floats(net) >> 18);
    run_worker(net, ws, x, features, taps);
    free(ws);
    return RX_OK;
}

rx_status rx_inception_features(const rx_inception *net, const float *images, int n, int C, int H, int W,
                                float *features) {
    if (!net || (n > 0 && (!images || !features))) return rx_fail(RX_ERR_ARG, "inception: NULL argument");
    if (n < 0 || H < 1 || W < 1) return rx_fail(RX_ERR_ARG, "inception: bad image batch [%d,%d,%d,%d]", n, C, H, W);
    if (C != 3 && C != 1)
        return rx_fail(RX_ERR_SHAPE, "inception: images have %d channels; the FID Inception takes RGB (3) or gray (1)", C);
    if (n == 0) return RX_OK;
    /* one image per thread when there are enough images (single-threaded BLAS inside, which
     * OpenBLAS's OpenMP build does by itself in a parallel region); else one image at a time
     * with the threads inside each op */
    int workers = omp_get_max_threads();
    if (workers > n) workers = n;
    if (workers < 1) workers = 1;
    const size_t per = worker_floats(net);
    float *ws = malloc((size_t)workers * per * sizeof *ws);
    if (!ws) return rx_fail(RX_ERR_OOM, "inception: out of memory for %d x %zu MB of scratch", workers, per >> 18);
    const size_t img_size = (size_t)C * H * W;
    #pragma omp parallel for num_threads(workers) schedule(dynamic, 1) if (workers > 1)
    for (int i = 0; i < n; i++) {
        float *w = ws + (size_t)omp_get_thread_num() * per;
        prepare_input(images + (size_t)i * img_size, C, H, W, w);
        run_worker(net, w, w, features + (size_t)i * RX_INCEPTION_FEAT_DIM, NULL);
    }
    free(ws);
    return RX_OK;
}

// ---------------------------------------------------------------------------
// loading

void rx_inception_free(rx_inception *net) {
    if (!net) return;
    for (int i = 0; i < net->nconv; i++) { free(net->conv[i].w); free(net->conv[i].b); }
    free(net);
}

/* problems found in a file, listed in one message */
typedef struct problems { char text[1400]; size_t len; int n; } problems;

__attribute__((format(printf, 2, 3))) static void note(problems *p, const char *fmt, ...) {
    p->n++;
    if (p->len + 2 >= sizeof p->text) return;
    if (p->len) p->len += (size_t)snprintf(p->text + p->len, sizeof p->text - p->len, "; ");
    if (p->len >= sizeof p->text) { p->len = sizeof p->text - 1; return; }
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(p->text + p->len, sizeof p->text - p->len, fmt, ap);
    va_end(ap);
    p->len += k > 0 ? (size_t)k : 0;
    if (p->len >= sizeof p->text) p->len = sizeof p->text - 1;
}

static void shape_text(char *out, size_t n, int ndim, const int64_t *shape) {
    size_t len = (size_t)snprintf(out, n, "[");
    for (int d = 0; d < ndim && len < n; d++)
        len += (size_t)snprintf(out + len, n - len, "%s%lld", d ? "," : "", (long long)shape[d]);
    if (len < n) snprintf(out + len, n - len, "]");
}

static void check_tensor(const rx_st_file *f, problems *p, const char *prefix, const char *suffix, int ndim,
                         const int64_t *shape) {
    char key[96], want[64], got[64];
    snprintf(key, sizeof key, "%s.%s", prefix, suffix);
    const rx_st_tensor *t = rx_st_find(f, key);
    if (!t) { note(p, "missing %s", key); return; }
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (same) return;
    shape_text(want, sizeof want, ndim, shape);
    shape_text(got, sizeof got, t->ndim, t->shape);
    note(p, "%s is %s, expected %s", key, got, want);
}

static const char *const bn_tensors[] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};

/* read one BasicConv2d and fold its BatchNorm: scale = gamma / sqrt(var + eps) */
static rx_status load_conv(const rx_st_file *f, basic_conv *L, float *bn /* [4 * cout] */) {
    const int K = L->cin * L->kh * L->kw;
    char key[96];
    L->w = malloc((size_t)L->cout * K * sizeof *L->w);
    L->b = malloc((size_t)L->cout * sizeof *L->b);
    if (!L->w || !L->b) return rx_fail(RX_ERR_OOM, "inception_fid: out of memory");
    snprintf(key, sizeof key, "%s.conv.weight", L->name);
    RX_TRY(rx_st_read_f32(f, key, L->w, (int64_t)L->cout * K));
    for (int t = 0; t < 4; t++) {
        snprintf(key, sizeof key, "%s.%s", L->name, bn_tensors[t]);
        RX_TRY(rx_st_read_f32(f, key, bn + (size_t)t * L->cout, L->cout));
    }
    const float *gamma = bn, *beta = bn + L->cout, *mean = bn + 2 * L->cout, *var = bn + 3 * L->cout;
    for (int o = 0; o < L->cout; o++) {
        if (!(var[o] >= 0) || !isfinite(var[o]) || !isfinite(gamma[o]) || !isfinite(beta[o]) || !isfinite(mean[o]))
            return rx_fail(RX_ERR_FORMAT, "inception_fid: %s.bn: channel %d has running_var %g, weight %g, bias %g, "
                           "running_mean %g (need finite values and var >= 0)", L->name, o, var[o], gamma[o], beta[o], mean[o]);
        const double scale = gamma[o] / sqrt((double)var[o] + BN_EPS);
        float *wo = L->w + (size_t)o * K;
        for (int k = 0; k < K; k++) {
            if (!isfinite(wo[k])) return rx_fail(RX_ERR_FORMAT, "inception_fid: %s.conv.weight has a non-finite value", L->name);
            wo[k] = (float)(wo[k] * scale);
        }
        L->b[o] = (float)(beta[o] - mean[o] * scale);
    }
    return RX_OK;
}

rx_status rx_inception_load(const char *path, rx_inception **out) {
    if (!path || !out) return rx_fail(RX_ERR_ARG, "inception_fid: NULL argument");
    *out = NULL;
    rx_inception *net = calloc(1, sizeof *net);
    if (!net) return rx_fail(RX_ERR_OOM, "inception_fid: out of memory");
    build_convs(net);
    rx_st_file *f = NULL;
    rx_status s = rx_st_open(path, &f);
    if (s) { rx_inception_free(net); return rx_fail_ctx(s, "inception_fid weights: "); }

    /* every key and shape first, so that a wrong file is refused with the whole list */
    problems p = {.len = 0};
    int max_cout = 0;
    for (int i = 0; i < net->nconv; i++) {
        const basic_conv *L = &net->conv[i];
        const int64_t wshape[4] = {L->cout, L->cin, L->kh, L->kw}, bshape[1] = {L->cout};
        check_tensor(f, &p, L->name, "conv.weight", 4, wshape);
        for (int t = 0; t < 4; t++) check_tensor(f, &p, L->name, bn_tensors[t], 1, bshape);
        if (L->cout > max_cout) max_cout = L->cout;
    }
    if (p.n) {
        s = rx_fail(RX_ERR_FORMAT, "inception_fid: %s is not a pytorch-fid FID Inception-v3 state dict "
                    "(docs/inception_fid.md): %d problem%s: %s%s", path, p.n, p.n == 1 ? "" : "s", p.text,
                    p.len + 2 >= sizeof p.text ? " ..." : "");
    }
    float *bn = s ? NULL : malloc((size_t)4 * max_cout * sizeof *bn);
    if (!s && !bn) s = rx_fail(RX_ERR_OOM, "inception_fid: out of memory");
    for (int i = 0; i < net->nconv && !s; i++) s = load_conv(f, &net->conv[i], bn);
    free(bn);
    rx_st_close(f);
    if (s) { rx_inception_free(net); return s; }

    /* the sizing pass: the forward with no memory */
    scratch sz = {0};
    forward_one(net, NULL, NULL, &sz, NULL, NULL);
    net->act_floats = (sz.act_peak + 15) & ~(size_t)15;
    net->stack_floats = sz.peak;
    *out = net;
    return RX_OK;
}

// ---------------------------------------------------------------------------
// the `features` component

static const rx_param_spec inception_fid_params[] = {
    {"weights", RX_P_PATH, NULL, RX_NO_RANGE, NULL,
     "pytorch-fid's FID Inception weights as safetensors (convert pt_inception-2015-12-05-6726825d.pth: "
     "docs/inception_fid.md)"},
    {0}};

static void fx_destroy(rx_feature_extractor *fx) {
    if (!fx) return;
    rx_inception_free(fx->priv);
    free(fx);
}

static rx_status fx_create(rx_ctx *c, const rx_params *params, rx_feature_extractor **out) {
    (void)c;                      /* no tensors: the network runs on plain float arrays */
    const char *path = rx_param_str(params, "weights");
    *out = NULL;
    if (!path || !*path) return rx_fail(RX_ERR_CONFIG, "features/inception_fid: `weights` must name a file");
    rx_feature_extractor *fx = calloc(1, sizeof *fx);
    if (!fx) return rx_fail(RX_ERR_OOM, "features/inception_fid: out of memory");
    snprintf(fx->name, sizeof fx->name, "%s", RX_FID_INCEPTION_EXTRACTOR);
    if ((size_t)snprintf(fx->weights_path, sizeof fx->weights_path, "%s", path) >= sizeof fx->weights_path) {
        free(fx);
        return rx_fail(RX_ERR_ARG, "features/inception_fid: weights path longer than %zu bytes", sizeof fx->weights_path - 1);
    }
    rx_inception *net = NULL;
    rx_status s = rx_inception_load(path, &net);
    fx->priv = net;
    if (!s) s = rx_file_hash(path, fx->weights_hash);
    if (s) { fx_destroy(fx); return s; }
    fx->feat_dim = RX_INCEPTION_FEAT_DIM;
    fx->num_classes = 0;          /* pool features only; the 1008-way fc is not used for FID */
    fx->in_channels = 3;
    fx->size = S;
    *out = fx;
    return RX_OK;
}

static rx_status fx_extract(rx_ctx *c, rx_feature_extractor *fx, const float *images, int n, int C, int H, int W,
                            float *features, float *logits) {
    (void)c; (void)logits;        /* num_classes = 0: no logits */
    return rx_inception_features(fx->priv, images, n, C, H, W, features);
}

static const rx_features_impl inception_fid_impl = {fx_create, fx_extract, fx_destroy};
const rx_component rx_comp_features_inception_fid = {
    RX_KIND_FEATURES, "inception_fid",
    "pytorch-fid's FID Inception-v3 (2048-d pool features at 299x299); metric `fid` only with the official weights",
    inception_fid_params, &inception_fid_impl, NULL};
