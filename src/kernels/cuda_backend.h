/* cuda_backend.h — opening the CUDA backend from C. Without CUDA support compiled in
 * (no nvcc at build time, or CUDA=0), rx_cuda_open fails with a clear message, so
 * `backend: auto` falls back to the CPU and `backend: cuda` is a config error. */
#ifndef RX_CUDA_BACKEND_H
#define RX_CUDA_BACKEND_H

#include "kernels/backend.h"

/* The math of GEMMs and convolutions (the config's `precision`). FP32 and TF32 are 0 and 1, so a
 * caller that passes a TF32 on/off flag means what it always meant. BF16: the fp32 operands are
 * rounded to bf16 (nearest even) just before each cuBLAS/cuDNN call, which accumulates in fp32;
 * tensors, weights, optimizer state and normalisation statistics stay fp32. */
typedef enum { RX_PRECISION_FP32 = 0, RX_PRECISION_TF32 = 1, RX_PRECISION_BF16 = 2, RX_PRECISION_COUNT } rx_precision;

/* device_id: which GPU; precision: an rx_precision; deterministic: only deterministic cuDNN
 * algorithms. */
rx_status rx_cuda_open(int device_id, int precision, int deterministic, const rx_backend **be, void **state,
                       const char **device_name);
/* switches an open context's precision (the sample stage's own, sample.precision); the queued
 * work is unaffected, the next GEMM or convolution uses the new one */
rx_status rx_cuda_set_precision(void *state, int precision);
void      rx_cuda_close(void *state);
/* A scratch slot of an open context (the cuDNN workspace, reduction parts, bf16 operand copies)
 * grows to what an op asks, in whole MiB (fewer regrowths), and is never shrunk: its size after
 * a request of `bytes` (context.cu's rx_cuda_scratch; runner/memory_plan.c counts with it). */
static inline size_t rx_cuda_scratch_size(size_t bytes) {
    const size_t mib = (size_t)1 << 20;
    return ((bytes ? bytes : 1) + mib - 1) & ~(mib - 1);
}
/* number of usable CUDA devices (0 without a driver or without CUDA support) */
int       rx_cuda_device_count(void);

#endif
