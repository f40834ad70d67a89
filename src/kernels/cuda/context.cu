// context.cu — the CUDA execution context: device, stream, cuBLAS and cuDNN handles,
// device memory for the arenas, the scratch slots. No global device state: everything
// lives in rx_cuda_state (the backend table in backend_cuda.cu holds only functions).
#include <cstdio>
#include <cstring>
#include "kernels/cuda/cuda_common.h"

extern "C" {
#include "kernels/cuda_backend.h"
#include "kernels/cuda/cuda_api.h"
}

void *rx_cuda_dev_alloc(void *ud, size_t bytes) {
    void *p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError();   // an allocation failure is not sticky; clear it for the next call
        return nullptr;
    }
    return p;
}
void rx_cuda_dev_free(void *ud, void *p) { cudaFree(p); }

// The caller may reuse src as soon as this returns (the loader refills its batch buffer), so
// src is first copied into a pinned staging slot; the device copy then runs in stream order
// while the host goes on (the next batch is prepared while this step computes).
rx_status rx_cuda_to_device(rx_ctx *c, void *dst, const void *src, size_t bytes) {
    rx_cuda_state *st = rx_cuda(c);
    if (bytes == 0) return RX_OK;
    if (bytes > RX_CUDA_STAGING_MAX) {   // rare and large: no pinned buffer that size
        RX_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st->stream));
        RX_CUDA_TRY(cudaStreamSynchronize(st->stream));
        return RX_OK;
    }
    rx_cuda_staging *g = &st->staging[st->staging_next];
    st->staging_next = (st->staging_next + 1) % RX_CUDA_STAGING_SLOTS;
    if (g->used) RX_CUDA_TRY(cudaEventSynchronize(g->done));   // its previous copy has read it
    if (!g->done) RX_CUDA_TRY(cudaEventCreateWithFlags(&g->done, cudaEventDisableTiming));
    if (bytes > g->bytes) {
        const size_t want = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes;
        if (g->buf) RX_CUDA_TRY(cudaFreeHost(g->buf));
        g->buf = nullptr;
        g->bytes = 0;
        RX_CUDA_TRY(cudaMallocHost(&g->buf, want));
        g->bytes = want;
    }
    memcpy(g->buf, src, bytes);
    RX_CUDA_TRY(cudaMemcpyAsync(dst, g->buf, bytes, cudaMemcpyHostToDevice, st->stream));
    RX_CUDA_TRY(cudaEventRecord(g->done, st->stream));
    g->used = 1;
    return RX_OK;
}
rx_status rx_cuda_to_host(rx_ctx *c, void *dst, const void *src, size_t bytes) {
    rx_cuda_state *st = rx_cuda(c);
    if (bytes == 0) return RX_OK;
    RX_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st->stream));
    return rx_cuda_deferred_errors(c);   // waits for the copy too
}

// Waits for the stream, then reports the first bad index the deferred checks recorded (and
// forgets it): what the host reads from the device is never silently computed from one.
rx_status rx_cuda_deferred_errors(rx_ctx *c) {
    rx_cuda_state *st = rx_cuda(c);
    unsigned long long *h = (unsigned long long *)st->host_pinned + 1;   // word 0 is the reductions'
    RX_CUDA_TRY(cudaMemcpyAsync(h, st->bad_index, 2 * sizeof *h, cudaMemcpyDeviceToHost, st->stream));
    RX_CUDA_TRY(cudaStreamSynchronize(st->stream));
    if (*h == ~0ull) return RX_OK;
    const unsigned long long mark = *h;
    RX_CUDA_TRY(cudaMemsetAsync(st->bad_index, 0xff, sizeof *st->bad_index, st->stream));
    const unsigned k = (unsigned)(mark >> 32);
    const long long pos = (long long)(mark & 0xffffffffull);
    float value;
    memcpy(&value, &h[1], sizeof value);
    if (st->checks - k > RX_CUDA_CHECK_RING)
        return rx_fail(RX_ERR_ARG, "an index check (number %u) found a bad index at position %lld", k, pos);
    char msg[256];
    snprintf(msg, sizeof msg, st->check_what[k % RX_CUDA_CHECK_RING], pos, (double)value);
    return rx_fail(RX_ERR_ARG, "%s", msg);
}
rx_status rx_cuda_copy(rx_ctx *c, void *dst, const void *src, size_t bytes) {
    rx_cuda_state *st = rx_cuda(c);
    if (dst != src && bytes) RX_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st->stream));
    return RX_OK;
}
rx_status rx_cuda_sync(rx_ctx *c) { return rx_cuda_deferred_errors(c); }

// Grows a slot to at least `bytes` (rx_cuda_scratch_size: whole MiB, to avoid many small regrowths).
// Growing waits for the stream: queued kernels may still read the old buffer.
rx_status rx_cuda_scratch(rx_ctx *c, int slot, size_t bytes, void **out) {
    rx_cuda_state *st = rx_cuda(c);
    if (slot < 0 || slot >= RX_CUDA_SCRATCH_COUNT) return rx_fail(RX_ERR_INTERNAL, "cuda: scratch slot %d", slot);
    if (bytes == 0) bytes = 1;
    if (bytes > st->scratch_request_peak[slot]) st->scratch_request_peak[slot] = bytes;
    if (bytes > st->scratch_bytes[slot]) {
        const size_t want = rx_cuda_scratch_size(bytes);
        RX_CUDA_TRY(cudaStreamSynchronize(st->stream));
        st->scratch_moves++;
        if (st->scratch[slot]) RX_CUDA_TRY(cudaFree(st->scratch[slot]));
        st->scratch[slot] = nullptr;
        st->scratch_bytes[slot] = 0;
        cudaError_t e = cudaMalloc(&st->scratch[slot], want);
        if (e != cudaSuccess) {
            cudaGetLastError();
            st->scratch[slot] = nullptr;
            return rx_fail(RX_ERR_OOM, "cuda: cannot allocate %zu MiB of scratch on the device (%s)", want >> 20,
                           cudaGetErrorString(e));
        }
        st->scratch_bytes[slot] = want;
        size_t total = 0;
        for (int k = 0; k < RX_CUDA_SCRATCH_COUNT; k++) total += st->scratch_bytes[k];
        if (total > st->scratch_peak) st->scratch_peak = total;
    }
    *out = st->scratch[slot];
    return RX_OK;
}

extern "C" rx_backend rx_cuda_backend_table;   // backend_cuda.cu

extern "C" int rx_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) { cudaGetLastError(); return 0; }
    return n;
}

// cuBLAS' math mode for a precision: TF32 tensor cores for fp32 GEMMs with tf32; plain fp32 FMA
// otherwise (CUBLAS_DEFAULT_MATH never uses TF32 for fp32 data; bf16's GEMMs name their compute
// type in cublasGemmEx, dense.cu)
static cublasMath_t cublas_math_of(int precision) {
    return precision == RX_PRECISION_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
}

extern "C" rx_status rx_cuda_set_precision(void *state, int precision) {
    rx_cuda_state *st = (rx_cuda_state *)state;
    if (precision < 0 || precision >= RX_PRECISION_COUNT) return rx_fail(RX_ERR_ARG, "cuda: precision %d", precision);
    if (st->precision == precision) return RX_OK;
    RX_CUBLAS_TRY(cublasSetMathMode(st->cublas, cublas_math_of(precision)));
    st->precision = precision;   // convolution plans are per precision (dense.cu's cache key)
    return RX_OK;
}

extern "C" rx_status rx_cuda_open(int device_id, int precision, int deterministic, const rx_backend **be, void **state,
                                  const char **device_name) {
    if (precision < 0 || precision >= RX_PRECISION_COUNT) return rx_fail(RX_ERR_ARG, "cuda: precision %d", precision);
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
    st->precision = precision;
    st->deterministic = deterministic;
    rx_status s = RX_OK;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device_id)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device_id)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaMalloc((void **)&st->dev_flag, sizeof *st->dev_flag)) != cudaSuccess ||
        (e = cudaMalloc((void **)&st->bad_index, 2 * sizeof *st->bad_index)) != cudaSuccess ||
        (e = cudaMemsetAsync(st->bad_index, 0xff, 2 * sizeof *st->bad_index, st->stream)) != cudaSuccess ||
        (e = cudaMallocHost(&st->host_pinned, 64)) != cudaSuccess)
        s = rx_fail(RX_ERR_DEVICE, "cuda: %s", cudaGetErrorString(e));
    if (!s) snprintf(st->name, sizeof st->name, "%s", prop.name);
    if (!s && cublasCreate(&st->cublas) != CUBLAS_STATUS_SUCCESS) s = rx_fail(RX_ERR_DEVICE, "cuBLAS: cublasCreate failed");
    if (!s && cublasSetStream(st->cublas, st->stream) != CUBLAS_STATUS_SUCCESS) s = rx_fail(RX_ERR_DEVICE, "cuBLAS: set stream failed");
    if (!s && cublasSetMathMode(st->cublas, cublas_math_of(precision)) != CUBLAS_STATUS_SUCCESS)
        s = rx_fail(RX_ERR_DEVICE, "cuBLAS: set math mode failed");
    if (!s && cublasLtCreate(&st->cublaslt) != CUBLAS_STATUS_SUCCESS) s = rx_fail(RX_ERR_DEVICE, "cuBLASLt: cublasLtCreate failed");
    cudnnStatus_t ds;
    if (!s && (ds = cudnnCreate(&st->cudnn)) != CUDNN_STATUS_SUCCESS) s = rx_fail(RX_ERR_DEVICE, "cuDNN: %s", cudnnGetErrorString(ds));
    if (!s && (ds = cudnnSetStream(st->cudnn, st->stream)) != CUDNN_STATUS_SUCCESS) s = rx_fail(RX_ERR_DEVICE, "cuDNN: %s", cudnnGetErrorString(ds));
    if (s) { rx_cuda_close(st); return s; }
    *be = &rx_cuda_backend_table;
    *state = st;
    *device_name = st->name;
    return RX_OK;
}

extern "C" void rx_cuda_close(void *state) {
    rx_cuda_state *st = (rx_cuda_state *)state;
    if (!st) return;
    if (st->stream) cudaStreamSynchronize(st->stream);
    rx_cuda_conv_cache_free(st);
    rx_cuda_lt_cache_free(st);
    for (int k = 0; k < RX_CUDA_STAGING_SLOTS; k++) {
        if (st->staging[k].buf) cudaFreeHost(st->staging[k].buf);
        if (st->staging[k].done) cudaEventDestroy(st->staging[k].done);
    }
    for (int k = 0; k < RX_CUDA_SCRATCH_COUNT; k++) if (st->scratch[k]) cudaFree(st->scratch[k]);
    if (st->dev_flag) cudaFree(st->dev_flag);
    if (st->bad_index) cudaFree(st->bad_index);
    if (st->dropout_step) cudaFree(st->dropout_step);
    if (st->host_pinned) cudaFreeHost(st->host_pinned);
    if (st->cudnn) cudnnDestroy(st->cudnn);
    if (st->cublas) cublasDestroy(st->cublas);
    if (st->cublaslt) cublasLtDestroy(st->cublaslt);
    if (st->stream) cudaStreamDestroy(st->stream);
    free(st);
}

// ---- extras for tests and benchmarks (cuda_api.h) ----------------------------------------

extern "C" rx_status rx_cuda_memory_info(rx_ctx *c, size_t *scratch_peak, size_t *device_used, size_t *device_total) {
    if (!c || c->be != &rx_cuda_backend_table) return rx_fail(RX_ERR_ARG, "cuda memory info: not a CUDA context");
    rx_cuda_state *st = rx_cuda(c);
    size_t free_b = 0, total_b = 0;
    RX_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
    if (scratch_peak) *scratch_peak = st->scratch_peak;
    if (device_used) *device_used = total_b - free_b;
    if (device_total) *device_total = total_b;
    return RX_OK;
}

extern "C" rx_status rx_cuda_bf16_slot_bytes(rx_ctx *c, size_t *bytes, size_t *largest_request) {
    if (!c || c->be != &rx_cuda_backend_table) return rx_fail(RX_ERR_ARG, "cuda bf16 slot: not a CUDA context");
    if (bytes) *bytes = rx_cuda(c)->scratch_bytes[RX_CUDA_SCRATCH_BF16];
    if (largest_request) *largest_request = rx_cuda(c)->scratch_request_peak[RX_CUDA_SCRATCH_BF16];
    return RX_OK;
}

extern "C" rx_status rx_cuda_stream_device(rx_ctx *c, void **stream, int *device) {
    if (!c || c->be != &rx_cuda_backend_table) return rx_fail(RX_ERR_ARG, "cuda stream: not a CUDA context");
    *stream = (void *)rx_cuda(c)->stream;
    *device = rx_cuda(c)->device;
    return RX_OK;
}
