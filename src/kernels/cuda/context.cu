// context.cu — the CUDA execution context: device, stream, cuBLAS and cuDNN handles,
// device memory for the arenas. No global device state: everything lives in rx_cuda_state.
#include <cstdio>
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <cudnn.h>
#include "kernels/cuda/cuda_common.h"

extern "C" {
#include "kernels/cuda_backend.h"
}

static void *dev_alloc(void *ud, size_t bytes) {
    void *p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) return nullptr;
    return p;
}
static void dev_free(void *ud, void *p) { cudaFree(p); }

static rx_status cu_to_device(rx_ctx *c, void *dst, const void *src, size_t bytes) {
    rx_cuda_state *st = (rx_cuda_state *)c->be_state;
    RX_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st->stream));
    RX_CUDA_TRY(cudaStreamSynchronize(st->stream));
    return RX_OK;
}
static rx_status cu_to_host(rx_ctx *c, void *dst, const void *src, size_t bytes) {
    rx_cuda_state *st = (rx_cuda_state *)c->be_state;
    RX_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st->stream));
    RX_CUDA_TRY(cudaStreamSynchronize(st->stream));
    return RX_OK;
}
static rx_status cu_copy(rx_ctx *c, void *dst, const void *src, size_t bytes) {
    rx_cuda_state *st = (rx_cuda_state *)c->be_state;
    if (dst != src) RX_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st->stream));
    return RX_OK;
}
static rx_status cu_sync(rx_ctx *c) {
    rx_cuda_state *st = (rx_cuda_state *)c->be_state;
    RX_CUDA_TRY(cudaStreamSynchronize(st->stream));
    return RX_OK;
}

extern "C" rx_backend rx_cuda_backend_table;   // kernels + utilities, filled in cuda/*.cu

extern "C" int rx_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) { cudaGetLastError(); return 0; }
    return n;
}

extern "C" rx_status rx_cuda_open(int device_id, int tf32, int deterministic, const rx_backend **be, void **state,
                                  const char **device_name) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        return rx_fail(RX_ERR_DEVICE, "no CUDA device (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    if (device_id < 0 || device_id >= n)
        return rx_fail(RX_ERR_DEVICE, "device_id %d: only %d CUDA device(s)", device_id, n);
    rx_cuda_state *st = (rx_cuda_state *)calloc(1, sizeof *st);
    if (!st) return rx_fail(RX_ERR_OOM, "cuda: out of host memory");
    st->device = device_id;
    st->tf32 = tf32;
    st->deterministic = deterministic;
    rx_status s = RX_OK;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device_id)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device_id)) != cudaSuccess ||
        (e = cudaStreamCreate(&st->stream)) != cudaSuccess)
        s = rx_fail(RX_ERR_DEVICE, "cuda: %s", cudaGetErrorString(e));
    if (!s) snprintf(st->name, sizeof st->name, "%s", prop.name);
    if (!s && cublasCreate(&st->cublas) != CUBLAS_STATUS_SUCCESS) s = rx_fail(RX_ERR_DEVICE, "cuBLAS: cublasCreate failed");
    if (!s && cublasSetStream(st->cublas, st->stream) != CUBLAS_STATUS_SUCCESS) s = rx_fail(RX_ERR_DEVICE, "cuBLAS: set stream failed");
    if (!s && cublasSetMathMode(st->cublas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS)
        s = rx_fail(RX_ERR_DEVICE, "cuBLAS: set math mode failed");
    cudnnStatus_t ds;
    if (!s && (ds = cudnnCreate(&st->cudnn)) != CUDNN_STATUS_SUCCESS) s = rx_fail(RX_ERR_DEVICE, "cuDNN: %s", cudnnGetErrorString(ds));
    if (!s && (ds = cudnnSetStream(st->cudnn, st->stream)) != CUDNN_STATUS_SUCCESS) s = rx_fail(RX_ERR_DEVICE, "cuDNN: %s", cudnnGetErrorString(ds));
    if (s) { rx_cuda_close(st); return s; }
    rx_cuda_backend_table.data_alloc.alloc = dev_alloc;
    rx_cuda_backend_table.data_alloc.free = dev_free;
    rx_cuda_backend_table.to_device = cu_to_device;
    rx_cuda_backend_table.to_host = cu_to_host;
    rx_cuda_backend_table.copy = cu_copy;
    rx_cuda_backend_table.sync = cu_sync;
    *be = &rx_cuda_backend_table;
    *state = st;
    *device_name = st->name;
    return RX_OK;
}

extern "C" void rx_cuda_close(void *state) {
    rx_cuda_state *st = (rx_cuda_state *)state;
    if (!st) return;
    if (st->cudnn) cudnnDestroy(st->cudnn);
    if (st->cublas) cublasDestroy(st->cublas);
    if (st->stream) cudaStreamDestroy(st->stream);
    free(st);
}
