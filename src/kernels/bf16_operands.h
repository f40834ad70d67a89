/* bf16_operands.h — the device memory of precision bf16's operand copies on the CUDA backend.
 *
 * With precision bf16, cuda/dense.cu rounds a GEMM's or convolution's fp32 operands to bf16
 * just before the cuBLAS/cuDNN call (and lets cuDNN write bf16 results it then widens), into
 * arrays side by side in one scratch slot of the context, each 256-byte aligned. The slot is one
 * buffer for the context's life, grown to the largest request so far (in whole MiB,
 * rx_cuda_scratch) and never shrunk: so what it costs is the largest request of any op.
 *
 * The requests per node, as dense.cu makes them (a node's forward or backward is one request per
 * GEMM / cuDNN call family):
 *   conv2d  forward   x, w, y                    span(nx) + span(nw) + span(ny)
 *           backward  gy, w | gw, gx | x         span(ny) + span(nw) + span(nx)  (when gx or gw: the
 *                                                data pass's w and gx arrays hold the filter pass's gw and x)
 *   linear  forward   x [R,in], w [out,in]       span(R·in) + span(out·in)
 *           backward  gx: gy, w                  span(R·out) + span(out·in)
 *                     gw: gy, x                  span(R·out) + span(R·in)
 *   matmul  forward   a, b (every batch)         span(batch·M·K) + span(batch·K·N)
 *           backward  ga: gy, b / gb: a, gy      the same arrays, one GEMM each
 * The planning backend (kernels/plan.c) takes these for every node of a planned step, so
 * `runexp check` (runner/memory_plan.c) counts the slot without a device. */
#ifndef RX_BF16_OPERANDS_H
#define RX_BF16_OPERANDS_H

#include "core/tensor.h"

/* bytes of n bf16 values in the slot: 2 n rounded up to 256 (cuBLAS/cuDNN's preferred alignment) */
static inline size_t rx_bf16_span(int64_t n) { return ((size_t)n * 2u + 255u) & ~(size_t)255u; }

/* the largest single bf16 request of node n's forward (backward = 0) or backward kernel on the
 * CUDA backend at precision bf16, in bytes; 0 for ops that make no bf16 copies */
size_t rx_bf16_request(const rx_node *n, int backward);

#endif
