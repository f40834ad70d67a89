/* cuda_api.h — C entry points of the CUDA backend beyond cuda_backend.h: Philox draws made
 * on the device, and device memory figures for tests and benchmarks.
 *
 * Declared weak: a build without CUDA (no nvcc, CUDA=0) still links code that names them,
 * and there they are NULL. Call them only on a context opened with rx_cuda_open (which
 * cannot succeed without CUDA), or test `if (rx_cuda_rng_normal)` first. */
#ifndef RX_CUDA_API_H
#define RX_CUDA_API_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The words / uniforms / normals of core/philox.c's stream (seed, stream) starting at block
 * `offset` (element j uses block offset + j/4, word j%4), written to DEVICE memory `out`
 * [n] on the context's stream. Words are identical to rx_rng_u32's; uniforms identical to
 * rx_rng_uniform's; normals use the same Box–Muller in double (equal to the CPU's within
 * one float rounding: the device's double log/sin/cos may differ from glibc's in the last bit). */
rx_status rx_cuda_rng_u32(rx_ctx *c, uint64_t seed, uint64_t stream, uint64_t offset, uint32_t *out, int64_t n)
    __attribute__((weak));
rx_status rx_cuda_rng_uniform(rx_ctx *c, uint64_t seed, uint64_t stream, uint64_t offset, float *out, int64_t n)
    __attribute__((weak));
rx_status rx_cuda_rng_normal(rx_ctx *c, uint64_t seed, uint64_t stream, uint64_t offset, float *out, int64_t n)
    __attribute__((weak));

/* scratch_peak: largest size of the context's scratch buffers so far (cuDNN workspace,
 * reduction parts, per-row statistics); device_used / device_total: cudaMemGetInfo's view of
 * the whole device (every process). Any pointer may be NULL. */
rx_status rx_cuda_memory_info(rx_ctx *c, size_t *scratch_peak, size_t *device_used, size_t *device_total)
    __attribute__((weak));

/* bytes of the context's bf16 operand slot (precision bf16's copies of GEMM and convolution
 * operands, kernels/bf16_operands.h): grown to the largest request so far in whole MiB, never
 * shrunk, so it is also the slot's high-water mark; and that largest request (bytes, before the
 * rounding). 0 before any bf16 GEMM or convolution. Either pointer may be NULL. */
rx_status rx_cuda_bf16_slot_bytes(rx_ctx *c, size_t *bytes, size_t *largest_request) __attribute__((weak));

/* the linear layers' cuBLASLt plans (dense.cu: one per shape, precision and pointer alignment,
 * its algorithm chosen once by cuBLASLt's heuristic) made so far, and how many of them found no
 * cuBLASLt algorithm and run as a bias kernel + GEMM instead. Either pointer may be NULL. */
rx_status rx_cuda_lt_info(rx_ctx *c, int *plans, int *fallbacks) __attribute__((weak));

/* the context's stream (a cudaStream_t) and device: NCCL's all-reduce runs on the same
 * stream as the kernels, so it is ordered after the backward that wrote the gradients
 * (dist/dist_nccl.c) */
rx_status rx_cuda_stream_device(rx_ctx *c, void **stream, int *device) __attribute__((weak));

/* CUDA graphs (graph.cu): capture what the context queues between begin and end, then replay
 * it with one launch. Between begin and end nothing may allocate device or pinned memory or
 * wait for the device (the runtime refuses it; the failing call's error names it, and end
 * then fails too). end must follow every begin, also after an error. A replay touches the
 * captured addresses: keep those buffers in place and change only their contents. */
typedef struct rx_cuda_graph rx_cuda_graph;
rx_status rx_cuda_graph_begin(rx_ctx *c) __attribute__((weak));
rx_status rx_cuda_graph_end(rx_ctx *c, rx_cuda_graph **out) __attribute__((weak));
rx_status rx_cuda_graph_launch(rx_ctx *c, rx_cuda_graph *g) __attribute__((weak));
void      rx_cuda_graph_free(rx_cuda_graph *g) __attribute__((weak));
/* Dropout's step from device memory (a captured step's masks must follow the step it replays,
 * not the one it was captured at): on = 1 writes `step` into a device word (through the upload
 * staging, so outside any capture) and from then on the dropout kernels read their step there,
 * with the call number of their node (the stream RX_STREAM(RX_RNG_DROPOUT, RX_DROPOUT_INDEX(step,
 * call)) as before: the same masks as eager). on = 0: back to the node's host-side stream. */
rx_status rx_cuda_dropout_step(rx_ctx *c, int on, uint64_t step) __attribute__((weak));
/* How many times the context's scratch (cuDNN workspaces, reduction parts) was reallocated so
 * far: a graph captured at another count may point at freed scratch and must be captured again. */
uint64_t rx_cuda_scratch_moves(rx_ctx *c) __attribute__((weak));

/* bf16 tensor-core product (mma_bf16.cu, issue 16 §4): one warp computes D = A B + C for
 * A [16x16], B [16x8], C and D [16x8] (row-major fp32 DEVICE pointers; A and B rounded to bf16 on
 * load) with the fragment loaders and mma wrapper the bf16 attention uses. Variants: the wrapper
 * (mma.sync on a GPU, the emulator's warp collective) with B read as stored or from a transposed
 * copy, the shuffle version (older GPUs), and A read transposed: wrong on purpose, so a test can
 * show that its check sees a misplaced fragment. */
enum { RX_MMA_TILE_WRAPPER, RX_MMA_TILE_B_TRANSPOSED, RX_MMA_TILE_SHUFFLE, RX_MMA_TILE_A_TRANSPOSED, RX_MMA_TILE_COUNT };
rx_status rx_cuda_mma_bf16_tile(rx_ctx *c, const float *A, const float *B, const float *C, float *D, int variant)
    __attribute__((weak));

#ifdef __cplusplus
}
#endif

#endif
