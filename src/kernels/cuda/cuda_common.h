// cuda_common.h — shared by the CUDA kernels: the backend state, checked calls, launch
// helpers and the deterministic reductions every op family uses.
//
// Determinism: no kernel here uses floating-point atomics. A reduction is split into a
// fixed number of parts that depends only on the problem size (never on the device or on
// timing); each part is summed by one thread or one block in a fixed order, and the parts
// are added in index order. So one device gives bit-identical results run after run.
//
// Precision: sums are accumulated in double (a thread's share, the warp shuffles, the
// parts), matching the CPU kernels, which sum float blocks into double.
#ifndef RX_CUDA_COMMON_H
#define RX_CUDA_COMMON_H

#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <cublasLt.h>
#include <cudnn.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "kernels/backend.h"
#include "kernels/cuda_backend.h"

// the kernels, one pair per op in ops.def (cuda/<family>.cu); weak, as the CPU's, so the
// table links while a family is missing (tests/cuda/test_cuda_table.c lists what is missing)
#define OP(ID, name, family, reads) \
    rx_status cuda_##name##_fwd(rx_ctx *c, rx_node *n) __attribute__((weak)); \
    rx_status cuda_##name##_bwd(rx_ctx *c, rx_node *n) __attribute__((weak));
#include "kernels/ops.def"
#undef OP
}

// Scratch buffers owned by the context, reused op after op. Stream order makes the reuse
// safe: every kernel, copy, cuBLAS and cuDNN call of a context runs on its one stream.
// An op asks for each slot at most once (a larger request reallocates the slot).
enum {
    RX_CUDA_SCRATCH_WORK = 0,   // cuDNN workspace
    RX_CUDA_SCRATCH_PARTIAL,    // reduction parts (double), per-row statistics in backward (attention's D)
    RX_CUDA_SCRATCH_BF16,       // precision bf16: the bf16 copies of a GEMM's or convolution's operands (dense.cu)
    RX_CUDA_SCRATCH_COUNT
};

struct rx_cuda_conv_cache;      // dense.cu: cuDNN descriptors and algorithms per conv shape
struct rx_cuda_lt_cache;        // dense.cu: cuBLASLt descriptors and algorithms per linear shape

// Host->device uploads go through a ring of pinned staging buffers (context.cu): the host
// copies into a slot, queues an asynchronous copy on the stream and returns without waiting
// for the device; a slot is reused once its event says the earlier copy is done. Uploads
// larger than RX_CUDA_STAGING_MAX (checkpoints) are copied synchronously instead.
enum { RX_CUDA_STAGING_SLOTS = 4 };
#define RX_CUDA_STAGING_MAX ((size_t)64 << 20)
typedef struct rx_cuda_staging {
    void *buf;          // pinned (cudaMallocHost)
    size_t bytes;
    cudaEvent_t done;   // recorded after the copy that last read buf
    int used;           // done has been recorded at least once
} rx_cuda_staging;

enum { RX_CUDA_CHECK_RING = 64 };
typedef struct rx_cuda_state {
    int device, deterministic;
    int precision;                        // rx_precision (cuda_backend.h): GEMM and convolution math
    char name[256];
    cudaStream_t stream;
    cublasHandle_t cublas;
    cublasLtHandle_t cublaslt;            // the linear layers' forward (dense.cu: bias fused as an epilogue)
    cudnnHandle_t cudnn;
    void *scratch[RX_CUDA_SCRATCH_COUNT];
    size_t scratch_bytes[RX_CUDA_SCRATCH_COUNT];
    size_t scratch_peak;                  // largest total of the scratch slots so far (bytes)
    size_t scratch_request_peak[RX_CUDA_SCRATCH_COUNT];   // largest request of each slot so far (bytes)
    unsigned long long scratch_moves;     // scratch reallocations so far: a CUDA graph captured
                                          // before the last one points at freed memory (graph.cu)
    unsigned long long *dev_flag;         // one device word for kernels that report a bad input
    void *host_pinned;                    // 64 pinned bytes: reduction results, flags
    struct rx_cuda_conv_cache *conv_cache;
    struct rx_cuda_lt_cache *lt_cache;
    rx_cuda_staging staging[RX_CUDA_STAGING_SLOTS];
    int staging_next;
    // deferred index checks (embed.cu): kernels record the first bad index here instead of the
    // host waiting for each check; the next read from the device reports it (context.cu)
    unsigned long long *bad_index;        // device: [0] check number << 32 | position, ~0 = none;
                                          //         [1] the value there (float bits)
    unsigned checks;                      // check numbers handed out
    char check_what[RX_CUDA_CHECK_RING][192];   // what check k % RING was (for the message)
    // CUDA graphs (graph.cu): dropout's training step read from this device word instead of the
    // node's host-side stream, so that a replayed step draws the masks of the step it replays
    unsigned long long *dropout_step;     // device: the step; NULL until first set
    int dropout_step_on;                  // kernels read dropout_step (rx_cuda_dropout_step)
} rx_cuda_state;

static inline rx_cuda_state *rx_cuda(rx_ctx *c) { return (rx_cuda_state *)c->be_state; }

// every CUDA runtime call and every launch is checked
#define RX_CUDA_TRY(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) \
    return rx_fail(RX_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); } while (0)
#define RX_CUDA_LAUNCH_CHECK() RX_CUDA_TRY(cudaGetLastError())
#define RX_CUBLAS_TRY(call) do { cublasStatus_t e_ = (call); if (e_ != CUBLAS_STATUS_SUCCESS) \
    return rx_fail(RX_ERR_DEVICE, "%s:%d: %s: cuBLAS status %d", __FILE__, __LINE__, #call, (int)e_); } while (0)
#define RX_CUDNN_TRY(call) do { cudnnStatus_t e_ = (call); if (e_ != CUDNN_STATUS_SUCCESS) \
    return rx_fail(RX_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudnnGetErrorString(e_)); } while (0)

// grad of input k, or NULL when that input needs none (as cpu_in_grad)
static inline float *cuda_in_grad(rx_node *n, int k) {
    return (n->in[k] && n->in[k]->requires_grad && n->in[k]->grad) ? n->in[k]->grad->data : NULL;
}

// "[2,3,8,8]" for messages (RX_SHAPE_STR's compound literal is C only)
struct rx_shape_text { char s[64]; };
static inline rx_shape_text shape_text(const rx_tensor *t) {
    rx_shape_text r;
    rx_shape_str(t, r.s, sizeof r.s);
    return r;
}

// step-arena tensor of a literal shape (RX_SHAPE is C only)
static inline rx_tensor *cuda_empty2(rx_ctx *c, int64_t d0, int64_t d1) {
    const int64_t sh[2] = {d0, d1};
    return rx_empty(c, 2, sh);
}
static inline rx_tensor *cuda_empty3(rx_ctx *c, int64_t d0, int64_t d1, int64_t d2) {
    const int64_t sh[3] = {d0, d1, d2};
    return rx_empty(c, 3, sh);
}

// context.cu: memory primitives of the backend table, and the scratch slots
void     *rx_cuda_dev_alloc(void *ud, size_t bytes);
void      rx_cuda_dev_free(void *ud, void *p);
rx_status rx_cuda_to_device(rx_ctx *c, void *dst, const void *src, size_t bytes);
rx_status rx_cuda_to_host(rx_ctx *c, void *dst, const void *src, size_t bytes);
rx_status rx_cuda_copy(rx_ctx *c, void *dst, const void *src, size_t bytes);
rx_status rx_cuda_sync(rx_ctx *c);
rx_status rx_cuda_scratch(rx_ctx *c, int slot, size_t bytes, void **out);
// util.cu: the backend.h utilities
rx_status rx_cuda_fill(rx_ctx *c, float *dst, float v, int64_t n);
rx_status rx_cuda_axpy(rx_ctx *c, float *y, float a, const float *x, int64_t n);
rx_status rx_cuda_sumsq(rx_ctx *c, const float *x, int64_t n, double *out);
rx_status rx_cuda_adamw(rx_ctx *c, float *p, const float *g, float *m, float *v, int64_t n, const rx_adamw_args *a);
rx_status rx_cuda_ema(rx_ctx *c, float *ema, const float *p, float decay, int64_t n);
// optim.cu: the multi-tensor AdamW + EMA step (backend.h's adamw_multi)
rx_status rx_cuda_adamw_multi(rx_ctx *c, const rx_mt_args *a);
// dense.cu: row-major strided-batched GEMM (as the CPU's sgemm_batched):
//   C[i] [M,N] = alpha op(A[i]) op(B[i]) + beta C[i],  op(A) [M,K] (A stored [K,M] when ta),
//   op(B) [K,N] (B stored [N,K] when tb); sA, sB, sC: element strides between matrices.
rx_status rx_cuda_sgemm(rx_ctx *c, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t sA, const float *B, int64_t sB, float beta, float *C, int64_t sC, int64_t count);
void rx_cuda_conv_cache_free(rx_cuda_state *st);
void rx_cuda_lt_cache_free(rx_cuda_state *st);
// embed.cu: *first = the lowest i < n whose v[i] is not a whole number in [0, limit), else -1;
// *value = v[*first]. Reads one word back, so it waits for the stream.
rx_status rx_cuda_check_indices(rx_ctx *c, const float *v, int64_t n, int64_t limit, int64_t *first, float *value);
// The same check without waiting: a bad index is recorded on the device and reported, with
// `what` (a printf format taking the position and the value, %lld and %g), by the next rx_cuda_to_host or rx_cuda_sync
// (rx_cuda_deferred_errors). Kernels that use the indices must guard them themselves.
rx_status rx_cuda_check_indices_deferred(rx_ctx *c, const float *v, int64_t n, int64_t limit, const char *what);
rx_status rx_cuda_deferred_errors(rx_ctx *c);   // waits for the stream; the first recorded bad index

// ---- launch helpers -------------------------------------------------------------------

constexpr int RX_CUDA_THREADS = 256;
constexpr int64_t RX_CUDA_MAX_BLOCKS = 1 << 20;

// blocks for a grid-stride loop over n elements (at least 1)
static inline unsigned rx_cuda_blocks(int64_t n, int threads = RX_CUDA_THREADS) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > RX_CUDA_MAX_BLOCKS ? RX_CUDA_MAX_BLOCKS : b);
}

#define RX_CUDA_LOOP(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

// ---- block reductions (blockDim.x a multiple of 32, at most 1024) ---------------------
// The result is returned to every thread of the block. Shuffles and the shared array are
// visited in a fixed order, so the result is deterministic.

__device__ __forceinline__ double rx_warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float rx_warp_max_f(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    return v;
}

// The first __syncthreads also separates this call from the previous one (whose result
// every thread has read by then), so the shared words can be reused call after call.
__device__ __noinline__ static double rx_block_sum(double v) {
    __shared__ double part[32];
    __shared__ double total;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = rx_warp_sum(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        double w = lane < nw ? part[lane] : 0.0;
        w = rx_warp_sum(w);
        if (lane == 0) total = w;
    }
    __syncthreads();
    return total;
}

__device__ __noinline__ static float rx_block_max_f(float v) {
    __shared__ float part[32];
    __shared__ float total;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = rx_warp_max_f(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < nw ? part[lane] : -INFINITY;
        w = rx_warp_max_f(w);
        if (lane == 0) total = w;
    }
    __syncthreads();
    return total;
}

// ---- whole-tensor reduction: store(Σ_{i<n} f(i)) ----------------------------------------
// Part p (one block) sums the i ≡ p·T + t (mod parts·T) terms of its threads; one block then
// adds the parts. f: __device__ double operator()(int64_t i); store: __device__ void
// operator()(double sum), called by one thread.

constexpr int64_t RX_REDUCE_PARTS = 1024;

template <class F>
__global__ void rx_reduce_parts_kernel(F f, int64_t n, double *part) {
    double s = 0;
    RX_CUDA_LOOP(i, n) s += f(i);
    s = rx_block_sum(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

template <class S>
__global__ void rx_reduce_final_kernel(const double *part, int parts, S store) {
    double s = 0;
    for (int p = threadIdx.x; p < parts; p += blockDim.x) s += part[p];
    s = rx_block_sum(s);
    if (threadIdx.x == 0) store(s);
}

template <class F, class S>
static rx_status rx_cuda_reduce(rx_ctx *c, int64_t n, F f, S store) {
    rx_cuda_state *st = rx_cuda(c);
    int64_t want = (n + RX_CUDA_THREADS * 8 - 1) / (RX_CUDA_THREADS * 8);   // >= 8 terms per thread
    const int parts = (int)(want < 1 ? 1 : want > RX_REDUCE_PARTS ? RX_REDUCE_PARTS : want);
    void *buf;
    RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_PARTIAL, (size_t)parts * sizeof(double), &buf));
    double *part = (double *)buf;
    rx_reduce_parts_kernel<<<parts, RX_CUDA_THREADS, 0, st->stream>>>(f, n, part);
    RX_CUDA_LAUNCH_CHECK();
    rx_reduce_final_kernel<<<1, 1024, 0, st->stream>>>(part, parts, store);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

// ---- column reduction: store(j, Σ_{r<R} f(r, j)) for j < D ---------------------------------
// Threads own columns (consecutive threads read consecutive j: coalesced when f reads a
// row-major [R,D] array); rows are cut into G groups (G from R and D only), each group's
// sum is a double part, and the parts are added in group order.
// f: __device__ double operator()(int64_t r, int64_t j); store: __device__ void operator()(int64_t j, double sum).

template <class F>
__global__ void rx_colsum_parts_kernel(F f, int64_t R, int64_t D, int64_t per, double *part) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, g = blockIdx.y;
    if (j >= D) return;
    const int64_t r0 = g * per, r1 = r0 + per < R ? r0 + per : R;
    double s = 0;
    for (int64_t r = r0; r < r1; r++) s += f(r, j);
    part[g * D + j] = s;
}

template <class S>
__global__ void rx_colsum_final_kernel(const double *part, int64_t D, int G, S store) {
    RX_CUDA_LOOP(j, D) {
        double s = 0;
        for (int g = 0; g < G; g++) s += part[(int64_t)g * D + j];
        store(j, s);
    }
}

template <class F, class S>
static rx_status rx_cuda_colsum(rx_ctx *c, int64_t R, int64_t D, F f, S store) {
    if (D <= 0) return RX_OK;
    rx_cuda_state *st = rx_cuda(c);
    // enough groups for ~64K threads, at least 16 rows per group, at most 1024 groups
    int64_t G = (65536 + D - 1) / D;
    const int64_t gmax = R / 16 > 0 ? R / 16 : 1;
    if (G > gmax) G = gmax;
    if (G > 1024) G = 1024;
    if (G < 1) G = 1;
    const int64_t per = R > 0 ? (R + G - 1) / G : 0;
    void *buf;
    RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_PARTIAL, (size_t)(G * D) * sizeof(double), &buf));
    double *part = (double *)buf;
    const int64_t bx = (D + RX_CUDA_THREADS - 1) / RX_CUDA_THREADS;
    if (bx > 0x7fffffff) return rx_fail(RX_ERR_ARG, "column reduction over %lld columns is too wide", (long long)D);
    rx_colsum_parts_kernel<<<dim3((unsigned)bx, (unsigned)G), RX_CUDA_THREADS, 0, st->stream>>>(f, R, D, per, part);
    RX_CUDA_LAUNCH_CHECK();
    rx_colsum_final_kernel<<<rx_cuda_blocks(D), RX_CUDA_THREADS, 0, st->stream>>>(part, D, (int)G, store);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

// ---- elementwise launch: body(i) for i < n ------------------------------------------------

template <class F>
__global__ void rx_foreach_kernel(F body, int64_t n) {
    RX_CUDA_LOOP(i, n) body(i);
}

template <class F>
static rx_status rx_cuda_foreach(rx_ctx *c, int64_t n, F body) {
    if (n <= 0) return RX_OK;
    rx_foreach_kernel<<<rx_cuda_blocks(n), RX_CUDA_THREADS, 0, rx_cuda(c)->stream>>>(body, n);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

#endif
