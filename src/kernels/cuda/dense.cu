// dense.cu — CUDA conv2d (cuDNN), linear (cuBLASLt forward, cuBLAS backward) and matmul (cuBLAS),
// forward and backward.
// The node layout is cpu/dense.c's (see op_dense.c):
//   conv2d  in = {x, w, b|NULL}   i[0] = stride, i[1] = pad
//   linear  in = {x, w, b|NULL}
//   matmul  in = {a, b}           i[0] = trans_a, i[1] = trans_b
//
// cuDNN algorithms are chosen once per convolution shape and direction, and cached in the
// context (rx_cuda_state.conv_cache):
//   - deterministic: cuDNN's heuristic ranking (cudnnGet*_v7: the same choice every run),
//     keeping only algorithms whose determinism is CUDNN_DETERMINISTIC;
//   - otherwise: measured (cudnnFind*), fastest first.
// With precision fp32 the descriptors ask for FMA math, and the transforms that trade fp32
// accuracy for speed (FFT, Winograd) are left out, so results stay within fp32 rounding of the
// CPU. Workspaces come from the context's scratch slot (one buffer reused by every convolution,
// grown when a shape needs more; see cuda_common.h), capped at CONV_WORKSPACE_MAX.
//
// Precision bf16 (mixed precision with fp32 master data): runexp's tensors stay fp32; just
// before each cuBLAS/cuDNN call a small kernel rounds the operands to bf16 (nearest even) into
// the context's bf16 scratch slot, and the library multiplies them on the tensor cores with fp32
// accumulation:
//   - GEMMs: cublasGemmEx / cublasGemmStridedBatchedEx, A and B CUDA_R_16BF, C CUDA_R_32F,
//     CUBLAS_COMPUTE_32F: the output (and beta's accumulation into it) stays fp32;
//   - convolutions: bf16 x / w / y descriptors with an fp32 compute type (cuDNN's
//     PSEUDO_BFLOAT16 configuration; its legacy API has no bf16-in/fp32-out one), so each
//     direction's result comes back as bf16 and is widened into the fp32 output, or added to the
//     fp32 gradient (as under torch.autocast, where a conv's output is bf16).
// So bf16 buys tensor-core math, not memory: activations are stored in fp32 as before, plus the
// bf16 copies of one op's operands at a time.
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_api.h"
extern "C" {
#include "kernels/bf16_operands.h"
}
#include "kernels/cuda/mma_bf16.h"
#include <limits.h>

// ---- GEMM (row-major, through column-major cuBLAS) ----------------------------------------
// A row-major matrix [R,C] is the column-major matrix [C,R]: so C = op(A) op(B) (row-major)
// is Cᵀ = op(B)ᵀ op(A)ᵀ, i.e. column-major C' [N,M] = op(B') op(A'), with B' = the stored B.

namespace {

struct scale_op {   // C = beta C (K = 0: an empty sum; beta = 0 writes zeros, as a GEMM would)
    float *C;
    float beta;
    int64_t MN, sC;
    __device__ void operator()(int64_t e) const {
        float *p = C + (e / MN) * sC + e % MN;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
};

}  // namespace

// ---- bf16 operands ---------------------------------------------------------------------------
// bf16_of (fp32 -> bf16, nearest even) and float_of come from mma_bf16.h, shared with attention.cu.

namespace {
struct round_to_bf16 {   // y[i] = bf16(x[i])
    const float *x;
    bf16_bits *y;
    __device__ void operator()(int64_t i) const { y[i] = bf16_of(x[i]); }
};
struct widen_bf16 {      // y[i] = x[i] (a bf16 result into an fp32 output)
    float *y;
    const bf16_bits *x;
    __device__ void operator()(int64_t i) const { y[i] = float_of(x[i]); }
};
struct add_bf16 {        // y[i] += x[i] (a bf16 result added to an fp32 gradient)
    float *y;
    const bf16_bits *x;
    __device__ void operator()(int64_t i) const { y[i] += float_of(x[i]); }
};
}  // namespace

// bf16 copies of the operands [n[k]] in one scratch request (the slot holds them side by side,
// each rx_bf16_span: 256-byte aligned). kernels/bf16_operands.c mirrors every request made here,
// for the memory plan: a change to what is copied changes it too (test_cuda_memory.c checks).
static rx_status bf16_copies(rx_ctx *c, int count, const float *const *src, const int64_t *n, bf16_bits **out) {
    size_t total = 0;
    for (int k = 0; k < count; k++) total += rx_bf16_span(n[k]);
    void *buf;
    RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_BF16, total, &buf));
    char *p = (char *)buf;
    for (int k = 0; k < count; k++) {
        out[k] = (bf16_bits *)p;
        if (src[k]) RX_TRY(rx_cuda_foreach(c, n[k], round_to_bf16{src[k], out[k]}));   // NULL: an output
        p += rx_bf16_span(n[k]);
    }
    return RX_OK;
}

// the bf16 GEMM: operands rounded, fp32 accumulation and output (cuBLAS' column-major view as below)
static rx_status sgemm_bf16(rx_ctx *c, cublasOperation_t opA, cublasOperation_t opB, int64_t M, int64_t N, int64_t K,
                            float alpha, const float *A, int64_t lda, int64_t sA, const float *B, int64_t ldb, int64_t sB,
                            float beta, float *C, int64_t sC, int64_t count) {
    const float *src[2] = {A, B};
    const int64_t n[2] = {(count - 1) * sA + M * K, (count - 1) * sB + K * N};   // every matrix's elements
    bf16_bits *h16[2];
    RX_TRY(bf16_copies(c, 2, src, n, h16));
    cublasHandle_t h = rx_cuda(c)->cublas;
    if (count == 1)
        RX_CUBLAS_TRY(cublasGemmEx(h, opB, opA, (int)N, (int)M, (int)K, &alpha, h16[1], CUDA_R_16BF, (int)ldb, h16[0],
                                   CUDA_R_16BF, (int)lda, &beta, C, CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
    else
        RX_CUBLAS_TRY(cublasGemmStridedBatchedEx(h, opB, opA, (int)N, (int)M, (int)K, &alpha, h16[1], CUDA_R_16BF, (int)ldb,
                                                 sB, h16[0], CUDA_R_16BF, (int)lda, sA, &beta, C, CUDA_R_32F, (int)N, sC,
                                                 (int)count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return RX_OK;
}

rx_status rx_cuda_sgemm(rx_ctx *c, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t sA, const float *B, int64_t sB, float beta, float *C, int64_t sC, int64_t count) {
    if (count == 0 || M == 0 || N == 0) return RX_OK;
    if (K == 0) return rx_cuda_foreach(c, count * M * N, scale_op{C, beta, M * N, sC});
    const int64_t lda = ta ? M : K, ldb = tb ? K : N;
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX || count > INT_MAX)
        return rx_fail(RX_ERR_ARG, "GEMM %lldx%lldx%lld (x%lld) exceeds cuBLAS' 32-bit sizes", (long long)M, (long long)N,
                       (long long)K, (long long)count);
    cublasHandle_t h = rx_cuda(c)->cublas;
    const cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (rx_cuda(c)->precision == RX_PRECISION_BF16)
        return sgemm_bf16(c, opA, opB, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, sC, count);
    if (count == 1)
        RX_CUBLAS_TRY(cublasSgemm(h, opB, opA, (int)N, (int)M, (int)K, &alpha, B, (int)ldb, A, (int)lda, &beta, C, (int)N));
    else
        RX_CUBLAS_TRY(cublasSgemmStridedBatched(h, opB, opA, (int)N, (int)M, (int)K, &alpha, B, (int)ldb, sB, A, (int)lda,
                                                sA, &beta, C, (int)N, sC, (int)count));
    return RX_OK;
}

// ---- conv2d: algorithm cache ---------------------------------------------------------------

enum { CONV_CACHE_CAP = 128 };
static const size_t CONV_WORKSPACE_MAX = (size_t)1 << 30;   // 1 GiB: larger workspaces are skipped

enum { DIR_FWD, DIR_BWD_DATA, DIR_BWD_FILTER, DIR_COUNT };

enum { CONV_KEY = 10 };

typedef struct conv_plan {
    int64_t key[CONV_KEY];                   // B, Ci, H, W, Co, kh, kw, stride, pad, precision
    int precision;                           // rx_precision: bf16 plans have bf16 x / w / y descriptors
    int64_t nx, nw, ny;                      // elements of x, w, y (bf16: the copies' sizes)
    cudnnTensorDescriptor_t x, y, bias;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv[DIR_COUNT];   // one per direction: each keeps its algorithm's math type
    int chosen[DIR_COUNT];
    int algo[DIR_COUNT];                     // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t
    size_t workspace[DIR_COUNT];
} conv_plan;

struct rx_cuda_conv_cache {
    conv_plan plans[CONV_CACHE_CAP];
    int n, next_evict;
};

static void plan_destroy(conv_plan *p) {
    if (p->x) cudnnDestroyTensorDescriptor(p->x);
    if (p->y) cudnnDestroyTensorDescriptor(p->y);
    if (p->bias) cudnnDestroyTensorDescriptor(p->bias);
    if (p->w) cudnnDestroyFilterDescriptor(p->w);
    for (int d = 0; d < DIR_COUNT; d++)
        if (p->conv[d]) cudnnDestroyConvolutionDescriptor(p->conv[d]);
    memset(p, 0, sizeof *p);
}

void rx_cuda_conv_cache_free(rx_cuda_state *st) {
    if (!st->conv_cache) return;
    for (int i = 0; i < st->conv_cache->n; i++) plan_destroy(&st->conv_cache->plans[i]);
    free(st->conv_cache);
    st->conv_cache = nullptr;
}

typedef struct {
    int64_t B, Ci, H, W, Co, kh, kw, Ho, Wo, stride, pad;
} conv_geom;

static conv_geom conv_geom_of(const rx_node *n) {
    const rx_tensor *x = n->in[0], *w = n->in[1], *y = n->out;
    conv_geom g;
    g.B = x->shape[0];
    g.Ci = x->shape[1];
    g.H = x->shape[2];
    g.W = x->shape[3];
    g.Co = w->shape[0];
    g.kh = w->shape[2];
    g.kw = w->shape[3];
    g.Ho = y->shape[2];
    g.Wo = y->shape[3];
    g.stride = n->i[0];
    g.pad = n->i[1];
    return g;
}

// cuDNN's data type of x, w and y, and the convolution's math before an algorithm is chosen:
// fp32 only FMA kernels; tf32 and bf16 let cuDNN pick (the chosen algorithm's math type is set
// later, as cuDNN measured it). bf16 computes in fp32 (the conv descriptor's type).
static const cudnnDataType_t conv_data_type[RX_PRECISION_COUNT] = {CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, CUDNN_DATA_BFLOAT16};
static const cudnnMathType_t conv_math[RX_PRECISION_COUNT] = {CUDNN_FMA_MATH, CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH};

static rx_status plan_init(rx_cuda_state *st, const conv_geom *g, conv_plan *p) {
    const int64_t dims[] = {g->B, g->Ci, g->H, g->W, g->Co, g->kh, g->kw, g->Ho, g->Wo, g->stride, g->pad};
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++)
        if (dims[k] > INT_MAX) return rx_fail(RX_ERR_ARG, "conv2d: a size exceeds cuDNN's 32-bit dimensions");
    if (g->B * g->Ci * g->H * g->W > INT_MAX || g->B * g->Co * g->Ho * g->Wo > INT_MAX)
        return rx_fail(RX_ERR_ARG, "conv2d: tensors of 2^31 elements or more (batch %lld): split the batch",
                       (long long)g->B);
    RX_CUDNN_TRY(cudnnCreateTensorDescriptor(&p->x));
    RX_CUDNN_TRY(cudnnCreateTensorDescriptor(&p->y));
    RX_CUDNN_TRY(cudnnCreateTensorDescriptor(&p->bias));
    RX_CUDNN_TRY(cudnnCreateFilterDescriptor(&p->w));
    p->precision = st->precision;
    p->nx = g->B * g->Ci * g->H * g->W;
    p->nw = g->Co * g->Ci * g->kh * g->kw;
    p->ny = g->B * g->Co * g->Ho * g->Wo;
    const cudnnDataType_t t = conv_data_type[p->precision];
    RX_CUDNN_TRY(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, t, (int)g->B, (int)g->Ci, (int)g->H, (int)g->W));
    RX_CUDNN_TRY(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, t, (int)g->B, (int)g->Co, (int)g->Ho, (int)g->Wo));
    RX_CUDNN_TRY(cudnnSetTensor4dDescriptor(p->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, (int)g->Co, 1, 1));
    RX_CUDNN_TRY(cudnnSetFilter4dDescriptor(p->w, t, CUDNN_TENSOR_NCHW, (int)g->Co, (int)g->Ci, (int)g->kh, (int)g->kw));
    for (int d = 0; d < DIR_COUNT; d++) {
        RX_CUDNN_TRY(cudnnCreateConvolutionDescriptor(&p->conv[d]));
        RX_CUDNN_TRY(cudnnSetConvolution2dDescriptor(p->conv[d], (int)g->pad, (int)g->pad, (int)g->stride, (int)g->stride,
                                                     1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        RX_CUDNN_TRY(cudnnSetConvolutionMathType(p->conv[d], conv_math[p->precision]));
    }
    int n, c, h, w;
    RX_CUDNN_TRY(cudnnGetConvolution2dForwardOutputDim(p->conv[DIR_FWD], p->x, p->w, &n, &c, &h, &w));
    if (n != g->B || c != g->Co || h != g->Ho || w != g->Wo)
        return rx_fail(RX_ERR_INTERNAL, "conv2d: cuDNN's output [%d,%d,%d,%d] differs from the front-end's [%lld,%lld,%lld,%lld]",
                       n, c, h, w, (long long)g->B, (long long)g->Co, (long long)g->Ho, (long long)g->Wo);
    return RX_OK;
}

static rx_status plan_of(rx_ctx *c, const conv_geom *g, conv_plan **out) {
    rx_cuda_state *st = rx_cuda(c);
    if (!st->conv_cache) {
        st->conv_cache = (rx_cuda_conv_cache *)calloc(1, sizeof *st->conv_cache);
        if (!st->conv_cache) return rx_fail(RX_ERR_OOM, "conv2d: out of host memory for the algorithm cache");
    }
    rx_cuda_conv_cache *cc = st->conv_cache;
    const int64_t key[CONV_KEY] = {g->B, g->Ci, g->H, g->W, g->Co, g->kh, g->kw, g->stride, g->pad, st->precision};
    for (int i = 0; i < cc->n; i++)
        if (!memcmp(cc->plans[i].key, key, sizeof key)) { *out = &cc->plans[i]; return RX_OK; }
    conv_plan *p;
    if (cc->n < CONV_CACHE_CAP) p = &cc->plans[cc->n++];
    else {   // full: replace round-robin (a run uses a few dozen shapes; this is for long sweeps)
        p = &cc->plans[cc->next_evict];
        cc->next_evict = (cc->next_evict + 1) % CONV_CACHE_CAP;
        plan_destroy(p);
    }
    memset(p, 0, sizeof *p);
    rx_status s = plan_init(st, g, p);
    if (s) {   // leave no half-made plan behind: it would match the key next time
        plan_destroy(p);
        return s;
    }
    memcpy(p->key, key, sizeof key);
    *out = p;
    return RX_OK;
}

// Algorithms whose fp32 results are plain sums of products (no FFT / Winograd transforms).
static int fp32_accurate(int dir, int algo) {
    switch (dir) {
    case DIR_FWD:
        return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
               algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
    case DIR_BWD_DATA:
        return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 || algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
    default:
        return algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 ||
               algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
    }
}

// the fallback when no ranked algorithm qualifies: deterministic, fp32-exact, little workspace
static const int fallback_algo[DIR_COUNT] = {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                                             CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1};
static const char *const dir_name[DIR_COUNT] = {"forward", "backward-data", "backward-filter"};

// workspace of `algo` for direction dir under the plan's descriptors
static cudnnStatus_t workspace_of(cudnnHandle_t h, const conv_plan *p, int dir, int algo, size_t *bytes) {
    switch (dir) {
    case DIR_FWD:
        return cudnnGetConvolutionForwardWorkspaceSize(h, p->x, p->w, p->conv[dir], p->y, (cudnnConvolutionFwdAlgo_t)algo,
                                                       bytes);
    case DIR_BWD_DATA:
        return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p->w, p->y, p->conv[dir], p->x,
                                                            (cudnnConvolutionBwdDataAlgo_t)algo, bytes);
    default:
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p->x, p->y, p->conv[dir], p->w,
                                                              (cudnnConvolutionBwdFilterAlgo_t)algo, bytes);
    }
}

// one ranked candidate, whatever the direction
typedef struct { int algo; cudnnStatus_t status; size_t memory; cudnnDeterminism_t determinism; cudnnMathType_t math; } candidate;

enum { MAX_CANDIDATES = 32 };

template <class Perf>
static int to_candidates(const Perf *perf, int n, candidate *out) {
    for (int i = 0; i < n; i++)
        out[i] = candidate{(int)perf[i].algo, perf[i].status, perf[i].memory, perf[i].determinism, perf[i].mathType};
    return n;
}

// cuDNN's ranking of the algorithms for direction dir: measured (Find) or heuristic (Get_v7)
static rx_status rank_algorithms(rx_cuda_state *st, const conv_plan *p, int dir, candidate *cand, int *n_cand) {
    cudnnHandle_t h = st->cudnn;
    const int measure = !st->deterministic;
    int n = 0;
    if (dir == DIR_FWD) {
        cudnnConvolutionFwdAlgoPerf_t perf[MAX_CANDIDATES];
        if (measure) RX_CUDNN_TRY(cudnnFindConvolutionForwardAlgorithm(h, p->x, p->w, p->conv[dir], p->y, MAX_CANDIDATES, &n, perf));
        else RX_CUDNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(h, p->x, p->w, p->conv[dir], p->y, MAX_CANDIDATES, &n, perf));
        *n_cand = to_candidates(perf, n, cand);
    } else if (dir == DIR_BWD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_CANDIDATES];
        if (measure) RX_CUDNN_TRY(cudnnFindConvolutionBackwardDataAlgorithm(h, p->w, p->y, p->conv[dir], p->x, MAX_CANDIDATES, &n, perf));
        else RX_CUDNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p->w, p->y, p->conv[dir], p->x, MAX_CANDIDATES, &n, perf));
        *n_cand = to_candidates(perf, n, cand);
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_CANDIDATES];
        if (measure) RX_CUDNN_TRY(cudnnFindConvolutionBackwardFilterAlgorithm(h, p->x, p->y, p->conv[dir], p->w, MAX_CANDIDATES, &n, perf));
        else RX_CUDNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p->x, p->y, p->conv[dir], p->w, MAX_CANDIDATES, &n, perf));
        *n_cand = to_candidates(perf, n, cand);
    }
    return RX_OK;
}

static rx_status choose_algorithm(rx_ctx *c, conv_plan *p, int dir) {
    if (p->chosen[dir]) return RX_OK;
    rx_cuda_state *st = rx_cuda(c);
    // Find runs the candidates on the stream: earlier work must not be timed with them
    RX_CUDA_TRY(cudaStreamSynchronize(st->stream));
    candidate cand[MAX_CANDIDATES];
    int n = 0;
    RX_TRY(rank_algorithms(st, p, dir, cand, &n));
    for (int i = 0; i < n; i++) {
        const candidate *k = &cand[i];
        if (k->status != CUDNN_STATUS_SUCCESS) continue;
        if (st->deterministic && k->determinism != CUDNN_DETERMINISTIC) continue;
        if (k->math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;   // may round fp32 to fp16/bf16
        if (p->precision == RX_PRECISION_FP32 && (k->math == CUDNN_TENSOR_OP_MATH || !fp32_accurate(dir, k->algo))) continue;
        size_t ws = 0;
        if (workspace_of(st->cudnn, p, dir, k->algo, &ws) != CUDNN_STATUS_SUCCESS || ws > CONV_WORKSPACE_MAX) continue;
        if (p->precision != RX_PRECISION_FP32) RX_CUDNN_TRY(cudnnSetConvolutionMathType(p->conv[dir], k->math));   // as measured
        p->algo[dir] = k->algo;
        p->workspace[dir] = ws;
        p->chosen[dir] = 1;
        return RX_OK;
    }
    size_t ws = 0;
    cudnnStatus_t e = workspace_of(st->cudnn, p, dir, fallback_algo[dir], &ws);
    if (e != CUDNN_STATUS_SUCCESS)
        return rx_fail(RX_ERR_DEVICE, "conv2d %s [%lld,%lld,%lld,%lld] * [%lld,%lld,%lld,%lld]: no usable cuDNN algorithm (%s)",
                       dir_name[dir], (long long)p->key[0], (long long)p->key[1], (long long)p->key[2], (long long)p->key[3],
                       (long long)p->key[4], (long long)p->key[1], (long long)p->key[5], (long long)p->key[6],
                       cudnnGetErrorString(e));
    p->algo[dir] = fallback_algo[dir];
    p->workspace[dir] = ws;
    p->chosen[dir] = 1;
    return RX_OK;
}

// ---- conv2d kernels --------------------------------------------------------------------------

namespace {

struct add_channel_bias {   // y [B,Co,P] += b[co]
    float *y;
    const float *b;
    int64_t Co, P;
    __device__ void operator()(int64_t i) const { y[i] += b[(i / P) % Co]; }
};

}  // namespace

// gb[co] += Σ_{b,p} gy[b, co, p]: block (co, group) sums images [b0, b1) of its group over all
// P pixels (threads stride over p: coalesced), in double; the groups are added in order.
__global__ void conv_bias_grad_parts(const float *gy, int64_t B, int64_t Co, int64_t P, int64_t per, double *part) {
    const int64_t co = blockIdx.x, g = blockIdx.y;
    const int64_t b0 = g * per, b1 = b0 + per < B ? b0 + per : B;
    double s = 0;
    for (int64_t b = b0; b < b1; b++) {
        const float *row = gy + (b * Co + co) * P;
        for (int64_t p = threadIdx.x; p < P; p += blockDim.x) s += row[p];
    }
    s = rx_block_sum(s);
    if (threadIdx.x == 0) part[g * Co + co] = s;
}

namespace {
struct add_double_parts_to {   // gb[j] += Σ parts, used by rx_cuda_colsum's final pass
    float *gb;
    __device__ void operator()(int64_t j, double s) const { gb[j] += (float)s; }
};
struct part_reader {           // the colsum over a [G, Co] array of parts
    const double *part;
    int64_t Co;
    __device__ double operator()(int64_t g, int64_t j) const { return part[g * Co + j]; }
};
}  // namespace

static rx_status conv_bias_grad(rx_ctx *c, const float *gy, float *gb, int64_t B, int64_t Co, int64_t P) {
    rx_cuda_state *st = rx_cuda(c);
    // groups of images so that there are ~512 blocks in all (at most one group per image)
    int64_t G = (512 + Co - 1) / Co;
    if (G > B) G = B;
    if (G < 1) G = 1;
    if (Co > INT_MAX || G > 65535) return rx_fail(RX_ERR_ARG, "conv2d: %lld output channels", (long long)Co);
    const int64_t per = (B + G - 1) / G;
    // the parts live in the work slot: the colsum below takes the partial slot for its own parts
    void *buf;
    RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_WORK, (size_t)(G * Co) * sizeof(double), &buf));
    double *part = (double *)buf;
    conv_bias_grad_parts<<<dim3((unsigned)Co, (unsigned)G), RX_CUDA_THREADS, 0, st->stream>>>(gy, B, Co, P, per, part);
    RX_CUDA_LAUNCH_CHECK();
    return rx_cuda_colsum(c, G, Co, part_reader{part, Co}, add_double_parts_to{gb});
}

extern "C" rx_status cuda_conv2d_fwd(rx_ctx *c, rx_node *n) {
    if (n->out->numel == 0) return RX_OK;
    rx_cuda_state *st = rx_cuda(c);
    const conv_geom g = conv_geom_of(n);
    conv_plan *p;
    RX_TRY(plan_of(c, &g, &p));
    RX_TRY(choose_algorithm(c, p, DIR_FWD));
    void *ws = nullptr;
    if (p->workspace[DIR_FWD]) RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_WORK, p->workspace[DIR_FWD], &ws));
    // cuDNN's operands: the fp32 tensors, or with bf16 their copies and a bf16 result, widened after
    const int bf16 = p->precision == RX_PRECISION_BF16;
    const void *x_op = n->in[0]->data, *w_op = n->in[1]->data;
    void *y_out = n->out->data;
    bf16_bits *h[3];
    if (bf16) {
        const float *src[3] = {n->in[0]->data, n->in[1]->data, NULL};
        const int64_t cnt[3] = {p->nx, p->nw, p->ny};
        RX_TRY(bf16_copies(c, 3, src, cnt, h));
        x_op = h[0], w_op = h[1], y_out = h[2];
    }
    const float one = 1.0f, zero = 0.0f;
    RX_CUDNN_TRY(cudnnConvolutionForward(st->cudnn, &one, p->x, x_op, p->w, w_op, p->conv[DIR_FWD],
                                         (cudnnConvolutionFwdAlgo_t)p->algo[DIR_FWD], ws, p->workspace[DIR_FWD], &zero, p->y,
                                         y_out));
    if (bf16) RX_TRY(rx_cuda_foreach(c, p->ny, widen_bf16{n->out->data, h[2]}));
    if (n->in[2])
        RX_TRY(rx_cuda_foreach(c, n->out->numel, add_channel_bias{n->out->data, n->in[2]->data, g.Co, g.Ho * g.Wo}));
    return RX_OK;
}

// gx += conv_transpose(gy, w);  gw += corr(x, gy);  gb += Σ gy  (cuDNN with beta = 1: accumulate;
// with bf16 cuDNN writes bf16 results (beta = 0) that are then added to the fp32 gradients)
extern "C" rx_status cuda_conv2d_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0), *gw = cuda_in_grad(n, 1), *gb = cuda_in_grad(n, 2);
    if (n->out->numel == 0 || (!gx && !gw && !gb)) return RX_OK;
    rx_cuda_state *st = rx_cuda(c);
    const conv_geom g = conv_geom_of(n);
    const float *gy = n->out->grad->data;
    const float one = 1.0f;
    conv_plan *p;
    RX_TRY(plan_of(c, &g, &p));
    // cuDNN's operands and results: the fp32 tensors, or with bf16 the copies, gy16 [ny] and one
    // [nw] and one [nx] array that the two passes take in turn (stream order makes it safe: the
    // filter pass rounds x over gx16 after the data pass's gx16 was added to gx, and writes gw16
    // over w16 after the data pass read it):
    //   data pass    w16 [nw], gy16  -> gx16 [nx]        filter pass  x16 [nx], gy16 -> gw16 [nw]
    const int bf16 = p->precision == RX_PRECISION_BF16 && (gx || gw);
    const void *gy_op = gy, *w_op = n->in[1]->data, *x_op = n->in[0]->data;
    void *gx_out = gx, *gw_out = gw;
    float beta = 1.0f;
    bf16_bits *h[3];
    if (bf16) {
        const float *src[3] = {gy, gx ? n->in[1]->data : NULL, NULL};
        const int64_t cnt[3] = {p->ny, p->nw, p->nx};
        RX_TRY(bf16_copies(c, 3, src, cnt, h));
        gy_op = h[0], w_op = h[1], gx_out = h[2], x_op = h[2], gw_out = h[1], beta = 0.0f;
    }
    if (gx) {
        RX_TRY(choose_algorithm(c, p, DIR_BWD_DATA));
        void *ws = nullptr;
        if (p->workspace[DIR_BWD_DATA]) RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_WORK, p->workspace[DIR_BWD_DATA], &ws));
        RX_CUDNN_TRY(cudnnConvolutionBackwardData(st->cudnn, &one, p->w, w_op, p->y, gy_op, p->conv[DIR_BWD_DATA],
                                                  (cudnnConvolutionBwdDataAlgo_t)p->algo[DIR_BWD_DATA], ws,
                                                  p->workspace[DIR_BWD_DATA], &beta, p->x, gx_out));
        if (bf16) RX_TRY(rx_cuda_foreach(c, p->nx, add_bf16{gx, h[2]}));
    }
    if (gw) {
        if (bf16) RX_TRY(rx_cuda_foreach(c, p->nx, round_to_bf16{n->in[0]->data, h[2]}));   // x16 over gx16
        RX_TRY(choose_algorithm(c, p, DIR_BWD_FILTER));
        void *ws = nullptr;   // (the data pass above is queued before this regrows the slot, if it does)
        if (p->workspace[DIR_BWD_FILTER]) RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_WORK, p->workspace[DIR_BWD_FILTER], &ws));
        RX_CUDNN_TRY(cudnnConvolutionBackwardFilter(st->cudnn, &one, p->x, x_op, p->y, gy_op, p->conv[DIR_BWD_FILTER],
                                                    (cudnnConvolutionBwdFilterAlgo_t)p->algo[DIR_BWD_FILTER], ws,
                                                    p->workspace[DIR_BWD_FILTER], &beta, p->w, gw_out));
        if (bf16) RX_TRY(rx_cuda_foreach(c, p->nw, add_bf16{gw, h[1]}));
    }
    if (gb) RX_TRY(conv_bias_grad(c, gy, gb, g.B, g.Co, g.Ho * g.Wo));
    return RX_OK;
}

// ---- linear: x [R,in], w [out,in] -> y [R,out] = x wᵀ + b --------------------------------------

namespace {

struct bias_rows {   // y [R,out] = b (each row)
    float *y;
    const float *b;
    int64_t out;
    __device__ void operator()(int64_t i) const { y[i] = b[i % out]; }
};

struct column_of {   // f(r, j) = g[r, j] of a row-major [R, D]
    const float *g;
    int64_t D;
    __device__ double operator()(int64_t r, int64_t j) const { return g[r * D + j]; }
};

}  // namespace

// ---- linear forward through cuBLASLt: y = x wᵀ + b, the bias added by the GEMM's epilogue --------
// In cuBLAS' column-major view (as rx_cuda_sgemm): D = y' [out,R] = op_T(w' [in,out]) x' [in,R],
// with CUBLASLT_EPILOGUE_BIAS adding b [out] to every column of D (each row of y): one launch
// instead of a bias-filling kernel plus a GEMM that reads it back (beta = 1).
// Operands: fp32 (CUBLAS_COMPUTE_32F: plain fp32 FMA), fp32 with TF32 tensor cores
// (CUBLAS_COMPUTE_32F_FAST_TF32), or the bf16 copies of x and w (the same request as the GEMM path,
// kernels/bf16_operands.h) with fp32 accumulation, output and bias.
// A plan per (R, out, in, precision, bias, pointer alignments) keeps the descriptors and the
// algorithm cuBLASLt's heuristic ranks first, asked once (cublasLtMatmulAlgoGetHeuristic); its
// workspace comes from the context's work slot (as cuDNN's), at most LT_WORKSPACE_MAX. The
// heuristic is told each pointer's real alignment (the default assumes 256 bytes; arena tensors
// are 64-byte aligned): an algorithm is never chosen for an alignment the pointers lack.
// Where cuBLASLt has no algorithm (NOT_SUPPORTED), the plan says so and the bias kernel + GEMM
// path runs instead (counted: rx_cuda_lt_info). RX_CUDA_LT=0 in the environment takes that path
// for every linear (bench/gpu_issue16.sh's before/after profile).

enum { LT_CACHE_CAP = 128, LT_KEY = 9 };
static const size_t LT_WORKSPACE_MAX = (size_t)32 << 20;   // cuBLAS docs (cublasSetWorkspace) for Hopper; PyTorch too

typedef struct lt_plan {
    int64_t key[LT_KEY];                 // R, out, in, precision, bias, alignment of w, x, y, b
    int usable;                          // 0: no cuBLASLt algorithm: the GEMM + bias kernel path
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, d;      // w' [in,out] (transposed by the op), x' [in,R], y' [out,R]
    cublasLtMatmulAlgo_t algo;
    size_t workspace;
} lt_plan;

struct rx_cuda_lt_cache {
    lt_plan plans[LT_CACHE_CAP];
    int n, next_evict, fallbacks;
    int off;   // RX_CUDA_LT=0 in the environment: every linear forward takes the GEMM path (before/after timing)
};

static void lt_plan_destroy(lt_plan *p) {
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->d) cublasLtMatrixLayoutDestroy(p->d);
    memset(p, 0, sizeof *p);
}

void rx_cuda_lt_cache_free(rx_cuda_state *st) {
    if (!st->lt_cache) return;
    for (int i = 0; i < st->lt_cache->n; i++) lt_plan_destroy(&st->lt_cache->plans[i]);
    free(st->lt_cache);
    st->lt_cache = nullptr;
}

static const cublasComputeType_t lt_compute[RX_PRECISION_COUNT] = {CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32,
                                                                   CUBLAS_COMPUTE_32F};
static const cudaDataType_t lt_operand[RX_PRECISION_COUNT] = {CUDA_R_32F, CUDA_R_32F, CUDA_R_16BF};

// the largest power of two dividing the address, at most 256 (cuBLASLt's default assumption)
static uint32_t alignment_of(const void *p) {
    const uintptr_t a = (uintptr_t)p, low = a & (~a + 1);
    return !a || low > 256 ? 256u : (uint32_t)low;
}

#define RX_CUBLASLT_TRY(call) do { cublasStatus_t e_ = (call); if (e_ != CUBLAS_STATUS_SUCCESS) \
    return rx_fail(RX_ERR_DEVICE, "%s:%d: %s: cuBLASLt status %d", __FILE__, __LINE__, #call, (int)e_); } while (0)

// the heuristic's first algorithm under the alignments and the workspace limit (a preference
// made and destroyed here); none: p->usable stays 0
static rx_status lt_choose(rx_cuda_state *st, lt_plan *p, const uint32_t align[4]) {
    cublasLtMatmulPreference_t pref = nullptr;
    RX_CUBLASLT_TRY(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t max_ws = LT_WORKSPACE_MAX;
    static const cublasLtMatmulPreferenceAttributes_t align_attr[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    cublasStatus_t e = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws,
                                                            sizeof max_ws);
    for (int i = 0; i < 4 && e == CUBLAS_STATUS_SUCCESS; i++)
        e = cublasLtMatmulPreferenceSetAttribute(pref, align_attr[i], &align[i], sizeof align[i]);
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    if (e == CUBLAS_STATUS_SUCCESS)
        e = cublasLtMatmulAlgoGetHeuristic(st->cublaslt, p->op, p->a, p->b, p->d, p->d, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (e == CUBLAS_STATUS_NOT_SUPPORTED || (e == CUBLAS_STATUS_SUCCESS && (found < 1 || result.state != CUBLAS_STATUS_SUCCESS)))
        return RX_OK;   // no algorithm for this configuration: the GEMM path
    if (e != CUBLAS_STATUS_SUCCESS)
        return rx_fail(RX_ERR_DEVICE, "linear [%lld,%lld] x [%lld,%lld]ᵀ: cuBLASLt heuristic: status %d", (long long)p->key[0],
                       (long long)p->key[2], (long long)p->key[1], (long long)p->key[2], (int)e);
    p->algo = result.algo;
    p->workspace = result.workspaceSize;
    p->usable = 1;
    return RX_OK;
}

static rx_status lt_plan_init(rx_cuda_state *st, lt_plan *p, const void *bias, const uint32_t align[4]) {
    const int64_t R = p->key[0], out = p->key[1], in = p->key[2];
    const int prec = (int)p->key[3];
    RX_CUBLASLT_TRY(cublasLtMatmulDescCreate(&p->op, lt_compute[prec], CUDA_R_32F));
    const int32_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    RX_CUBLASLT_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT));
    RX_CUBLASLT_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN));
    const uint32_t epilogue = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    RX_CUBLASLT_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
    // the heuristic reads the bias pointer's alignment (each call sets its own, of the same alignment)
    if (bias) RX_CUBLASLT_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    RX_CUBLASLT_TRY(cublasLtMatrixLayoutCreate(&p->a, lt_operand[prec], (uint64_t)in, (uint64_t)out, in));
    RX_CUBLASLT_TRY(cublasLtMatrixLayoutCreate(&p->b, lt_operand[prec], (uint64_t)in, (uint64_t)R, in));
    RX_CUBLASLT_TRY(cublasLtMatrixLayoutCreate(&p->d, CUDA_R_32F, (uint64_t)out, (uint64_t)R, out));
    return lt_choose(st, p, align);
}

// the plan of a linear forward with these operands (A = w, B = x, D = y, as cuBLASLt sees them)
static rx_status lt_plan_of(rx_ctx *c, int64_t R, int64_t out, int64_t in, const void *w, const void *x, const void *y,
                            const void *bias, lt_plan **out_plan) {
    rx_cuda_state *st = rx_cuda(c);
    if (!st->lt_cache) {
        st->lt_cache = (rx_cuda_lt_cache *)calloc(1, sizeof *st->lt_cache);
        if (!st->lt_cache) return rx_fail(RX_ERR_OOM, "linear: out of host memory for the cuBLASLt plans");
        const char *env = getenv("RX_CUDA_LT");
        st->lt_cache->off = env && !strcmp(env, "0");
    }
    rx_cuda_lt_cache *lc = st->lt_cache;
    *out_plan = nullptr;
    if (lc->off) return RX_OK;
    // A = w, B = x, C = D = y
    const uint32_t align[4] = {alignment_of(w), alignment_of(x), alignment_of(y), alignment_of(y)};
    const int64_t key[LT_KEY] = {R, out, in, st->precision, bias != nullptr, align[0], align[1], align[2],
                                 bias ? alignment_of(bias) : 0};
    for (int i = 0; i < lc->n; i++)
        if (!memcmp(lc->plans[i].key, key, sizeof key)) { *out_plan = &lc->plans[i]; return RX_OK; }
    lt_plan *p;
    if (lc->n < LT_CACHE_CAP) p = &lc->plans[lc->n++];
    else {   // full: replace round-robin, as the convolution plans
        p = &lc->plans[lc->next_evict];
        lc->next_evict = (lc->next_evict + 1) % LT_CACHE_CAP;
        lt_plan_destroy(p);
    }
    memset(p, 0, sizeof *p);
    memcpy(p->key, key, sizeof key);
    rx_status s = lt_plan_init(st, p, bias, align);
    if (s) {   // leave no half-made plan behind: it would match the key next time
        lt_plan_destroy(p);
        return s;
    }
    if (!p->usable) lc->fallbacks++;
    *out_plan = p;
    return RX_OK;
}

// y [R,out] = x [R,in] wᵀ (+ b) through the plan's cuBLASLt algorithm
static rx_status lt_linear(rx_ctx *c, const lt_plan *p, const void *x, const void *w, const float *bias, float *y) {
    rx_cuda_state *st = rx_cuda(c);
    if (bias) RX_CUBLASLT_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    void *ws = nullptr;
    if (p->workspace) RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_WORK, p->workspace, &ws));
    const float one = 1.0f, zero = 0.0f;
    RX_CUBLASLT_TRY(cublasLtMatmul(st->cublaslt, p->op, &one, w, p->a, x, p->b, &zero, y, p->d, y, p->d, &p->algo, ws,
                                   p->workspace, st->stream));
    return RX_OK;
}

extern "C" rx_backend rx_cuda_backend_table;   // backend_cuda.cu

extern "C" rx_status rx_cuda_lt_info(rx_ctx *c, int *plans, int *fallbacks) {
    if (!c || c->be != &rx_cuda_backend_table) return rx_fail(RX_ERR_ARG, "cuBLASLt info: not a CUDA context");
    const rx_cuda_lt_cache *lc = rx_cuda(c)->lt_cache;
    if (plans) *plans = lc ? lc->n : 0;
    if (fallbacks) *fallbacks = lc ? lc->fallbacks : 0;
    return RX_OK;
}

extern "C" rx_status cuda_linear_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    const int64_t in = w->shape[1], out = w->shape[0], R = out ? n->out->numel / out : 0;
    float *y = n->out->data;
    const float *bias = b ? b->data : nullptr;
    if (R == 0 || out == 0) return RX_OK;
    if (in > 0 && in <= INT_MAX && out <= INT_MAX && R <= INT_MAX) {
        // cuBLASLt's operands: x and w, or with bf16 their copies (the GEMM path's request: x, then w)
        const void *x_op = x->data, *w_op = w->data;
        if (rx_cuda(c)->precision == RX_PRECISION_BF16) {
            const float *src[2] = {x->data, w->data};
            const int64_t cnt[2] = {R * in, out * in};
            bf16_bits *h[2];
            RX_TRY(bf16_copies(c, 2, src, cnt, h));
            x_op = h[0], w_op = h[1];
        }
        lt_plan *p = nullptr;
        RX_TRY(lt_plan_of(c, R, out, in, w_op, x_op, y, bias, &p));
        if (p && p->usable) return lt_linear(c, p, x_op, w_op, bias, y);
    }
    // no cuBLASLt algorithm (or in = 0): the bias in every row, then the GEMM adds x wᵀ to it
    if (b) RX_TRY(rx_cuda_foreach(c, R * out, bias_rows{y, bias, out}));
    return rx_cuda_sgemm(c, 0, 1, R, out, in, 1.0f, x->data, 0, w->data, 0, b ? 1.0f : 0.0f, y, 0, 1);
}

// gx [R,in] += gy [R,out] w [out,in];  gw [out,in] += gyᵀ x;  gb [out] += Σ_r gy[r]
extern "C" rx_status cuda_linear_bwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *x = n->in[0], *w = n->in[1];
    const int64_t in = w->shape[1], out = w->shape[0], R = out ? n->out->numel / out : 0;
    const float *gy = n->out->grad->data;
    float *gx = cuda_in_grad(n, 0), *gw = cuda_in_grad(n, 1), *gb = cuda_in_grad(n, 2);
    if (gx) RX_TRY(rx_cuda_sgemm(c, 0, 0, R, in, out, 1.0f, gy, 0, w->data, 0, 1.0f, gx, 0, 1));
    if (gw) RX_TRY(rx_cuda_sgemm(c, 1, 0, out, in, R, 1.0f, gy, 0, x->data, 0, 1.0f, gw, 0, 1));
    if (gb) RX_TRY(rx_cuda_colsum(c, R, out, column_of{gy, out}, add_double_parts_to{gb}));
    return RX_OK;
}

// ---- matmul: y [.., M, N] = op(a) [.., M, K] op(b) [.., K, N] --------------------------------------

typedef struct { int64_t batch, M, N, K; int ta, tb; } matmul_geom;

static matmul_geom matmul_geom_of(const rx_node *n) {
    const rx_tensor *a = n->in[0], *y = n->out;
    const int nd = a->ndim;
    matmul_geom g;
    g.batch = 1;
    g.M = y->shape[nd - 2];
    g.N = y->shape[nd - 1];
    g.ta = (int)n->i[0];
    g.tb = (int)n->i[1];
    g.K = g.ta ? a->shape[nd - 2] : a->shape[nd - 1];
    for (int d = 0; d < nd - 2; d++) g.batch *= y->shape[d];
    return g;
}

extern "C" rx_status cuda_matmul_fwd(rx_ctx *c, rx_node *n) {
    const matmul_geom g = matmul_geom_of(n);
    return rx_cuda_sgemm(c, g.ta, g.tb, g.M, g.N, g.K, 1.0f, n->in[0]->data, g.M * g.K, n->in[1]->data, g.K * g.N, 0.0f,
                         n->out->data, g.M * g.N, g.batch);
}

// With A = op(a), B = op(b): gA = gy Bᵀ, gB = Aᵀ gy; a stored transposed gets gAᵀ = B gyᵀ,
// b stored transposed gets gBᵀ = gyᵀ A (cpu/dense.c, one GEMM per case on the stored matrices).
extern "C" rx_status cuda_matmul_bwd(rx_ctx *c, rx_node *n) {
    const matmul_geom g = matmul_geom_of(n);
    const float *a = n->in[0]->data, *b = n->in[1]->data, *gy = n->out->grad->data;
    float *ga = cuda_in_grad(n, 0), *gb = cuda_in_grad(n, 1);
    const int64_t sa = g.M * g.K, sb = g.K * g.N, sy = g.M * g.N;
    if (ga) {
        if (!g.ta) RX_TRY(rx_cuda_sgemm(c, 0, !g.tb, g.M, g.K, g.N, 1.0f, gy, sy, b, sb, 1.0f, ga, sa, g.batch));   // [M,K]
        else       RX_TRY(rx_cuda_sgemm(c, g.tb, 1, g.K, g.M, g.N, 1.0f, b, sb, gy, sy, 1.0f, ga, sa, g.batch));    // [K,M]
    }
    if (gb) {
        if (!g.tb) RX_TRY(rx_cuda_sgemm(c, !g.ta, 0, g.K, g.N, g.M, 1.0f, a, sa, gy, sy, 1.0f, gb, sb, g.batch));   // [K,N]
        else       RX_TRY(rx_cuda_sgemm(c, 1, g.ta, g.N, g.K, g.M, 1.0f, gy, sy, a, sa, 1.0f, gb, sb, g.batch));    // [N,K]
    }
    return RX_OK;
}
