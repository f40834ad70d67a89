// cuda_common.h — shared by the CUDA kernels: the backend state and checked calls.
#ifndef RX_CUDA_COMMON_H
#define RX_CUDA_COMMON_H

#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <cudnn.h>

extern "C" {
#include "kernels/backend.h"
}

typedef struct rx_cuda_state {
    int device, tf32, deterministic;
    char name[256];
    cudaStream_t stream;
    cublasHandle_t cublas;
    cudnnHandle_t cudnn;
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

#endif
