// cuda_runtime.h (emulator) — just enough of the CUDA runtime and device language for runexp's
// src/kernels/cuda/*.cu to compile as host C++ and run on the CPU (tests/cuda/emu/README.md).
// Kernels run block by block; the threads of a block are cooperative fibers, so __syncthreads
// and warp shuffles behave as on a GPU (every thread reaches the barrier before any passes).
#ifndef RX_EMU_CUDA_RUNTIME_H
#define RX_EMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __shared__ static

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
    cudaErrorNoDevice = 100,
    cudaErrorLaunchFailure = 719,
    cudaErrorStreamCaptureUnsupported = 900,   // stream capture (graphs section below)
    cudaErrorStreamCaptureInvalidated = 901,
} cudaError_t;

typedef enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
} cudaMemcpyKind;

typedef struct CUstream_st *cudaStream_t;
#define cudaStreamNonBlocking 0x01

struct cudaDeviceProp { char name[256]; int multiProcessorCount; size_t totalGlobalMem; };

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemsetAsync(void *dst, int v, size_t bytes, cudaStream_t s = 0);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
typedef struct rx_emu_event *cudaEvent_t;   // the emulator runs everything at once: events are always complete
#define cudaEventDisableTiming 2
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaDeviceSynchronize(void);

// ---- CUDA graphs: stream capture, instantiate, launch (emu.cpp's "stream capture" section) ----
// Between cudaStreamBeginCapture and cudaStreamEndCapture, launches, cudaMemcpyAsync,
// cudaMemsetAsync and the cuBLAS/cuDNN compute calls are recorded (kernel arguments and
// host-side scalars as they are at the call), not run; cudaGraphLaunch replays them in order.
// Calls a GPU refuses during capture (cudaMalloc, cudaFree, cudaMallocHost, cudaFreeHost,
// cudaMemcpy, cudaStreamSynchronize, cudaDeviceSynchronize) return
// cudaErrorStreamCaptureUnsupported and invalidate the capture (EndCapture then fails with
// cudaErrorStreamCaptureInvalidated), as on a GPU.
typedef struct rx_emu_graph *cudaGraph_t;
typedef struct rx_emu_graph_exec *cudaGraphExec_t;
typedef enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1, cudaStreamCaptureModeRelaxed = 2
} cudaStreamCaptureMode;
typedef enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0, cudaStreamCaptureStatusActive = 1, cudaStreamCaptureStatusInvalidated = 2
} cudaStreamCaptureStatus;
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
// ---- end of CUDA graphs ----

// device side
void __syncthreads(void);
void rx_emu_warp_exchange(const void *v, void *out, size_t bytes, int src_lane);
template <typename T> inline T __shfl_down_sync(unsigned mask, T v, int offset) {
    const int lane = (int)(threadIdx.x & 31);
    T out;
    rx_emu_warp_exchange(&v, &out, sizeof v, lane + offset < 32 ? lane + offset : lane);
    return out;
}
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    const int lane = (int)(threadIdx.x & 31), src = lane ^ lane_mask;
    T out;
    rx_emu_warp_exchange(&v, &out, sizeof v, src / width == lane / width ? src : lane);
    return out;
}
inline unsigned long long atomicMin(unsigned long long *p, unsigned long long v) {
    unsigned long long old = *p;   // fibers switch only at barriers: this is atomic
    if (v < old) *p = v;
    return old;
}

// ---- warp-level mma (issue 16 §4, kernels/cuda/mma_bf16.h; emu.cpp's "warp-level mma" section) ----
// __shfl_sync from any lane (mma_bf16.h's shuffle version of the product), and the product
// itself as a warp collective: rx_emu_mma_bf16_16816 is declared in mma_bf16.h.
template <typename T> inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    const int lane = (int)(threadIdx.x & 31), src = (lane & ~(width - 1)) + (src_lane & (width - 1));
    T out;
    rx_emu_warp_exchange(&v, &out, sizeof v, src);
    return out;
}
// ---- end warp-level mma ----

// ---- fused kernels (issue 16 §2): the last-block-done count of the fused mse_loss (cuda/loss.cu) ----
inline unsigned atomicAdd(unsigned *p, unsigned v) {
    unsigned old = *p;   // fibers switch only at barriers: this is atomic
    *p = old + v;
    return old;
}
inline void __threadfence() {}   // one block runs at a time: its stores are visible to the next
// ---- end fused kernels ----

// kernel<<<grid, block, shmem, stream>>>(args) is rewritten (rewrite_launches.py) into this;
// fibers: the kernel waits at barriers or shuffles (else each thread runs to completion in turn)
void rx_emu_launch(dim3 grid, dim3 block, size_t shmem, cudaStream_t s, int fibers, const std::function<void()> &body);
// what the rewrite emits: the kernel's arguments are evaluated and copied at the launch, as a GPU
// does (a launch recorded in a graph replays with them, not with what the variables hold later)
template <class K, class... A>
inline void rx_emu_launch_args(dim3 grid, dim3 block, size_t shmem, cudaStream_t s, int fibers, K kernel, A... args) {
    rx_emu_launch(grid, block, shmem, s, fibers, std::function<void()>([=]() { kernel(args...); }));
}

#endif
