/* cuda_backend.h — opening the CUDA backend from C. Without CUDA support compiled in
 * (no nvcc at build time, or CUDA=0), rx_cuda_open fails with a clear message, so
 * `backend: auto` falls back to the CPU and `backend: cuda` is a config error. */
#ifndef RX_CUDA_BACKEND_H
#define RX_CUDA_BACKEND_H

#include "kernels/backend.h"

/* device_id: which GPU; tf32: allow TF32 tensor-core math in cuBLAS/cuDNN;
 * deterministic: only deterministic cuDNN algorithms. */
rx_status rx_cuda_open(int device_id, int tf32, int deterministic, const rx_backend **be, void **state,
                       const char **device_name);
void      rx_cuda_close(void *state);
/* number of usable CUDA devices (0 without a driver or without CUDA support) */
int       rx_cuda_device_count(void);

#endif
