// emu.cpp — a CPU stand-in for the CUDA runtime, cuBLAS and cuDNN, so that runexp's CUDA backend
// and its test suite can run on a machine without a GPU (tests/cuda/emu/README.md).
//
// What it checks: kernel index arithmetic, launch configurations (block <= 1024 threads, grid
// limits), barriers and warp shuffles (cooperative fibers: a thread waits at __syncthreads until
// every live thread of its block is there), reads of never-written device memory (fresh
// allocations are filled with NaN bytes), cuDNN workspace sizes, cuBLAS/cuDNN argument mapping.
// What it cannot check: real-GPU timing, races between blocks, the real libraries' numerics
// (TF32 is imitated by rounding GEMM/convolution inputs to 10-bit mantissas; bf16 operands are
// read as the top halves of floats, accumulated in double, and bf16 results rounded to nearest even;
// the warp-level bf16 mma of kernels/cuda/mma_bf16.h is a warp collective with the PTX fragment layout).
#include "cuda_runtime.h"
#include "cublas_v2.h"
#include "cublasLt.h"
#include "cudnn.h"

// glibc's fortified longjmp refuses a jump to another stack ("longjmp causes uninitialized stack
// frame"); the fibers below jump between stacks on purpose
#undef _FORTIFY_SOURCE
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>
#include <map>
#include <vector>

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

static cudaError_t last_error = cudaSuccess;

// stream capture (the "stream capture" section at the end): the calls below ask these
static bool capture_on(void);                              // a capture is open: record, do not run
static cudaError_t capture_refuse(void);                   // a call a GPU refuses during capture
static void capture_record(std::function<void()> op);

static void die(const char *msg) {
    fprintf(stderr, "cuda emulator: %s\n", msg);
    abort();
}

// ---- memory ------------------------------------------------------------------------------------

static std::map<void *, size_t> allocations;
static size_t allocated_bytes;
static const size_t EMU_TOTAL = (size_t)16 << 30;

cudaError_t cudaMalloc(void **p, size_t bytes) {
    if (capture_on()) { *p = nullptr; return capture_refuse(); }
    if (bytes == 0) bytes = 1;
    if (allocated_bytes + bytes > EMU_TOTAL) { *p = nullptr; return last_error = cudaErrorMemoryAllocation; }
    void *m = aligned_alloc(256, (bytes + 255) & ~(size_t)255);
    if (!m) { *p = nullptr; return last_error = cudaErrorMemoryAllocation; }
    memset(m, 0xff, bytes);   // uninitialised device memory reads as NaN floats
    allocations[m] = bytes;
    allocated_bytes += bytes;
    *p = m;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (capture_on()) return capture_refuse();
    if (!p) return cudaSuccess;
    auto it = allocations.find(p);
    if (it == allocations.end()) return last_error = cudaErrorInvalidValue;
    allocated_bytes -= it->second;
    allocations.erase(it);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t bytes) {
    if (capture_on()) { *p = nullptr; return capture_refuse(); }
    *p = malloc(bytes ? bytes : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void *p) { if (capture_on()) return capture_refuse(); free(p); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
    if (capture_on()) { capture_record([=] { if (bytes) memmove(dst, src, bytes); }); return cudaSuccess; }
    if (bytes) memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind k) {
    return capture_on() ? capture_refuse() : cudaMemcpyAsync(dst, src, bytes, k, 0);
}
cudaError_t cudaMemsetAsync(void *dst, int v, size_t bytes, cudaStream_t) {
    if (capture_on()) { capture_record([=] { memset(dst, v, bytes); }); return cudaSuccess; }
    memset(dst, v, bytes);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return capture_on() ? capture_refuse() : cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return capture_on() ? capture_refuse() : cudaSuccess; }
struct rx_emu_event { int recorded; };
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) {
    *e = (cudaEvent_t)calloc(1, sizeof(rx_emu_event));
    return *e ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) { if (!e) return last_error = cudaErrorInvalidValue; e->recorded = 1; return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t e) { return e ? cudaSuccess : (last_error = cudaErrorInvalidValue); }
cudaError_t cudaEventDestroy(cudaEvent_t e) { free(e); return cudaSuccess; }
static int stream_token;
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { *s = (cudaStream_t)&stream_token; return cudaSuccess; }
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) { cudaError_t e = last_error; last_error = cudaSuccess; return e; }
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    default: return "unspecified launch failure";
    }
}
static int device_count(void) {
    const char *e = getenv("RX_EMU_DEVICES");
    return e ? atoi(e) : 1;
}
cudaError_t cudaGetDeviceCount(int *n) {
    *n = device_count();
    return *n ? cudaSuccess : (last_error = cudaErrorNoDevice);
}
cudaError_t cudaSetDevice(int d) { return d >= 0 && d < device_count() ? cudaSuccess : (last_error = cudaErrorInvalidDevice); }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d < 0 || d >= device_count()) return last_error = cudaErrorInvalidDevice;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CPU emulator (tests/cuda/emu)");
    p->multiProcessorCount = 1;
    p->totalGlobalMem = EMU_TOTAL;
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *total_b = EMU_TOTAL;
    *free_b = EMU_TOTAL - allocated_bytes;
    return cudaSuccess;
}

// ---- kernels: blocks in order, the threads of a block as fibers -----------------------------------
//
// A fiber is made once per thread slot and lives for the whole process: it runs the kernel body,
// parks at DONE, and a later block (of any kernel) resumes it to run the body again. Switches
// between a fiber and the scheduler are _setjmp/_longjmp: swapcontext saves and restores the
// signal mask, a system call on each of the several switches per thread per barrier, which took
// ~85% of the suite's time in a profile (bench/NOTES.md). ucontext only starts a fiber on its
// own stack (makecontext, then one setcontext). Under AddressSanitizer, which follows stack
// switches through swapcontext only, every switch is a swapcontext.

enum { RUNNABLE, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };
enum { MAX_THREADS = 1024 };
static const size_t FIBER_STACK = 64 << 10;
#if defined(__SANITIZE_ADDRESS__)
#define EMU_SWAPCONTEXT 1
#else
#define EMU_SWAPCONTEXT 0
#endif

struct fiber {
    ucontext_t ctx;    // its start (and, under EMU_SWAPCONTEXT, every switch)
    jmp_buf env;       // where it waits
    int state, started;
    char *stack;
};

static fiber fibers[MAX_THREADS];   // fixed: a ucontext_t points into itself, it must not move
static int fibers_made;
static struct fiber_stacks {
    ~fiber_stacks() { for (int t = 0; t < fibers_made; t++) free(fibers[t].stack); }
} stacks;
#if EMU_SWAPCONTEXT
static ucontext_t scheduler;
#else
static jmp_buf scheduler_env;
#endif
static int current = -1, direct = 0;
static const std::function<void()> *kernel_body;
static unsigned char warp_slots[1024 / 32][32][16];   // shuffle exchange, per warp and lane

static void set_thread_index(int t) {
    threadIdx.x = (unsigned)t % blockDim.x;
    threadIdx.y = (unsigned)t / blockDim.x % blockDim.y;
    threadIdx.z = (unsigned)t / (blockDim.x * blockDim.y);
}

// fiber side: back to the scheduler until it resumes this fiber
static void fiber_yield(void) {
#if EMU_SWAPCONTEXT
    swapcontext(&fibers[current].ctx, &scheduler);
#else
    if (!_setjmp(fibers[current].env)) _longjmp(scheduler_env, 1);
#endif
}

// scheduler side: run fiber t until it waits or ends its body
static void fiber_resume(int t) {
#if EMU_SWAPCONTEXT
    fibers[t].started = 1;
    swapcontext(&scheduler, &fibers[t].ctx);
#else
    if (_setjmp(scheduler_env)) return;
    if (fibers[t].started) _longjmp(fibers[t].env, 1);
    fibers[t].started = 1;
    setcontext(&fibers[t].ctx);
#endif
}

static void fiber_main(void) {   // never returns: parks at DONE between blocks
    for (;;) {
        (*kernel_body)();
        fibers[current].state = DONE;
        fiber_yield();
    }
}

static void make_fibers(int T) {
    for (; fibers_made < T; fibers_made++) {
        fiber *f = &fibers[fibers_made];
        f->stack = (char *)malloc(FIBER_STACK);
        if (!f->stack || getcontext(&f->ctx) != 0) die("out of memory for a thread's fiber");
        f->ctx.uc_stack.ss_sp = f->stack;
        f->ctx.uc_stack.ss_size = FIBER_STACK;
        f->ctx.uc_link = nullptr;
        makecontext(&f->ctx, fiber_main, 0);
        f->started = 0;
    }
}

static void wait_at(int state) {
    if (current < 0) die("__syncthreads or a shuffle outside a kernel");
    if (direct) die("a barrier in a kernel that rewrite_launches.py took for barrier-free");
    fibers[current].state = state;
    fiber_yield();
}

void __syncthreads(void) { wait_at(AT_BLOCK_BARRIER); }

void rx_emu_warp_exchange(const void *v, void *out, size_t bytes, int src_lane) {
    if (bytes > 16) die("shuffle of more than 16 bytes");
    const int t = current, warp = t / 32, lane = t % 32;
    memcpy(warp_slots[warp][lane], v, bytes);
    wait_at(AT_WARP_BARRIER);   // every lane has written
    memcpy(out, warp_slots[warp][src_lane], bytes);
    wait_at(AT_WARP_BARRIER);   // every lane has read
}

static void run_block(int T) {
    make_fibers(T);
    for (int t = 0; t < T; t++) fibers[t].state = RUNNABLE;
    for (;;) {
        int ran = 0;
        for (int t = 0; t < T; t++) {
            if (fibers[t].state != RUNNABLE) continue;
            current = t;
            set_thread_index(t);
            fiber_resume(t);
            ran = 1;
        }
        current = -1;
        int done = 0, at_block = 0;
        for (int t = 0; t < T; t++) {
            done += fibers[t].state == DONE;
            at_block += fibers[t].state == AT_BLOCK_BARRIER;
        }
        if (done == T) return;
        int released = 0;
        if (at_block && at_block + done == T) {   // every live thread is at the barrier (exited ones count as arrived)
            for (int t = 0; t < T; t++)
                if (fibers[t].state == AT_BLOCK_BARRIER) fibers[t].state = RUNNABLE;
            released = 1;
        }
        for (int w = 0; w * 32 < T; w++) {
            int waiting = 0, live = 0;
            for (int t = w * 32; t < w * 32 + 32 && t < T; t++) {
                live += fibers[t].state != DONE;
                waiting += fibers[t].state == AT_WARP_BARRIER;
            }
            if (waiting && waiting == live) {
                if (live != (T - w * 32 < 32 ? T - w * 32 : 32)) die("warp shuffle with exited lanes");
                for (int t = w * 32; t < w * 32 + 32 && t < T; t++) fibers[t].state = RUNNABLE;
                released = 1;
            }
        }
        if (!ran && !released) die("deadlock: threads wait at different barriers (divergent __syncthreads?)");
    }
}

void rx_emu_launch(dim3 grid, dim3 block, size_t shmem, cudaStream_t, int use_fibers, const std::function<void()> &body) {
    const unsigned long long T = (unsigned long long)block.x * block.y * block.z;
    if (T == 0 || T > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu ||
        grid.y > 65535 || grid.z > 65535 || shmem > 48 * 1024) {
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (T % 32) die("block size not a multiple of 32 (runexp's reductions assume whole warps)");
    if (capture_on()) {   // recorded with its (already copied) arguments, run at cudaGraphLaunch
        const std::function<void()> copy = body;
        capture_record([=] { rx_emu_launch(grid, block, shmem, nullptr, use_fibers, copy); });
        return;
    }
    gridDim = grid;
    blockDim = block;
    kernel_body = &body;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx.x = x;
                blockIdx.y = y;
                blockIdx.z = z;
                if (use_fibers) {
                    run_block((int)T);
                    continue;
                }
                direct = 1;
                for (int t = 0; t < (int)T; t++) {
                    current = t;
                    set_thread_index(t);
                    body();
                }
                direct = 0;
                current = -1;
            }
    kernel_body = nullptr;
}

// ---- TF32: inputs rounded to 10 mantissa bits (round to nearest even), as the tensor cores do ----

static float tf32(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;   // inf, nan
    u += 0xfffu + ((u >> 13) & 1u);
    u &= ~0x1fffu;
    memcpy(&x, &u, 4);
    return x;
}

// ---- bf16 operands (precision: bf16) -----------------------------------------------------------------
// A bf16 is the top 16 bits of a float. cuBLAS/cuDNN read bf16 operands exactly (every bf16 is a
// float), accumulate in fp32 (here in double, as every other emulated GEMM), and round a bf16
// result to nearest even. Element i of an operand stored as fp32 or bf16:

static float bf16_to_float(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t float_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);   // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float load_elem(const void *p, size_t i, int bf16) {
    return bf16 ? bf16_to_float(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}
static void store_elem(void *p, size_t i, float v, int bf16) {
    if (bf16) ((uint16_t *)p)[i] = float_to_bf16(v);
    else ((float *)p)[i] = v;
}
// ---- end bf16 operands ----

// ---- warp-level mma: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (kernels/cuda/mma_bf16.h) ----
// A warp collective, as the instruction is: each lane deposits its A and B fragments, waits until
// the whole warp has, then computes its four outputs from every lane's fragments, and waits again
// so that no lane's next product overwrites a fragment another lane still reads. An exited or
// missing lane is a "warp shuffle with exited lanes" error, as .aligned requires all 32.
// Where element (row, k) of A and (k, n) of B live, from the PTX ISA's formulas
// (groupID = lane >> 2, threadID_in_group = lane % 4):
//   A: row = groupID (+8 for a2, a3, a6, a7), col = 2 threadID_in_group + (i & 1) (+8 for i >= 4),
//      element i in register i / 2, the even one in the low half;
//   B: row = 2 threadID_in_group + (i & 1) (+8 for i >= 2), col = groupID, element i in register i / 2;
//   C, D: row = groupID (+8 for c2, c3), col = 2 threadID_in_group + (i & 1).
// Accumulation: the 16 products of bf16 values are exact in double (8-bit significands), so the
// sum with c is computed in double and rounded to fp32 once: the correctly rounded result, which
// the hardware's fp32 accumulation (order and internal precision unspecified by PTX) matches
// within a few fp32 ulps of sum |a b|; the same choice as the emulated cuBLAS and cuDNN.

static uint32_t mma_a_regs[1024 / 32][32][4], mma_b_regs[1024 / 32][32][2];

static float mma_half(uint32_t reg, int high) { return bf16_to_float((uint16_t)(high ? reg >> 16 : reg & 0xffffu)); }
static float mma_a_elem(int warp, int row, int k) {
    const int lane = 4 * (row % 8) + (k % 8) / 2, reg = (row >= 8) + 2 * (k >= 8);
    return mma_half(mma_a_regs[warp][lane][reg], k & 1);
}
static float mma_b_elem(int warp, int k, int n) {
    const int lane = 4 * n + (k % 8) / 2, reg = k >= 8;
    return mma_half(mma_b_regs[warp][lane][reg], k & 1);
}

void rx_emu_mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
    const int t = current, warp = t / 32, lane = t % 32;
    if (t < 0) die("mma outside a kernel");
    memcpy(mma_a_regs[warp][lane], a, sizeof mma_a_regs[warp][lane]);
    memcpy(mma_b_regs[warp][lane], b, sizeof mma_b_regs[warp][lane]);
    wait_at(AT_WARP_BARRIER);   // every lane has deposited
    float out[4];
    for (int i = 0; i < 4; i++) {
        const int row = lane / 4 + 8 * (i / 2), col = 2 * (lane % 4) + i % 2;
        double s = c[i];
        for (int k = 0; k < 16; k++) s += (double)mma_a_elem(warp, row, k) * mma_b_elem(warp, k, col);
        out[i] = (float)s;
    }
    wait_at(AT_WARP_BARRIER);   // every lane has read
    memcpy(d, out, sizeof out);   // d may be c
}
// ---- end warp-level mma ----

// ---- cuBLAS ------------------------------------------------------------------------------------------

struct cublasContext { cublasMath_t math; };

cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = new cublasContext{CUBLAS_DEFAULT_MATH}; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) { h->math = m; return CUBLAS_STATUS_SUCCESS; }

// A and B fp32 or (a16, b16) bf16; t: round fp32 inputs to TF32
static cublasStatus_t gemm_t(int t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                             const void *A, int a16, int lda, const void *B, int b16, int ldb, float beta, float *C, int ldc) {
    if (m < 0 || n < 0 || k < 0 || lda < (ta == CUBLAS_OP_N ? m : k) || lda < 1 || ldb < (tb == CUBLAS_OP_N ? k : n) ||
        ldb < 1 || ldc < m || ldc < 1)
        return CUBLAS_STATUS_INVALID_VALUE;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                float a = load_elem(A, ta == CUBLAS_OP_N ? i + (size_t)p * lda : p + (size_t)i * lda, a16);
                float b = load_elem(B, tb == CUBLAS_OP_N ? p + (size_t)j * ldb : j + (size_t)p * ldb, b16);
                if (t) { a = tf32(a); b = tf32(b); }
                s += (double)a * b;
            }
            float *c = &C[i + (size_t)j * ldc];
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *c));   // beta = 0: C is not read
        }
    return CUBLAS_STATUS_SUCCESS;
}

static cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                           const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    return gemm_t(h->math == CUBLAS_TF32_TENSOR_OP_MATH, ta, tb, m, n, k, alpha, A, 0, lda, B, 0, ldb, beta, C, ldc);
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc) {
    if (capture_on()) {   // host-pointer scalars are read at the call, as cuBLAS does
        const float a = *alpha, b = *beta;
        capture_record([=] { gemm(h, ta, tb, m, n, k, a, A, lda, B, ldb, b, C, ldc); });
        return CUBLAS_STATUS_SUCCESS;
    }
    return gemm(h, ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                         const float *alpha, const float *A, int lda, long long sA, const float *B, int ldb,
                                         long long sB, const float *beta, float *C, int ldc, long long sC, int count) {
    if (capture_on()) {
        const float a = *alpha, b = *beta;
        capture_record([=] { cublasSgemmStridedBatched(h, ta, tb, m, n, k, &a, A, lda, sA, B, ldb, sB, &b, C, ldc, sC, count); });
        return CUBLAS_STATUS_SUCCESS;
    }
    for (int i = 0; i < count; i++) {
        cublasStatus_t s = gemm(h, ta, tb, m, n, k, *alpha, A + i * sA, lda, B + i * sB, ldb, *beta, C + i * sC, ldc);
        if (s) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// ---- bf16 GEMMs (precision: bf16) ---------------------------------------------------------------------
// cublasGemmEx as runexp calls it: A and B fp32 or bf16, C fp32, fp32 compute (FAST_TF32 rounds
// fp32 inputs to TF32). Other combinations are CUBLAS_STATUS_NOT_SUPPORTED here.
static cublasStatus_t gemm_ex(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const void *alpha, const void *A, cudaDataType_t at, int lda, const void *B,
                              cudaDataType_t bt, int ldb, const void *beta, void *C, cudaDataType_t ct, int ldc,
                              cublasComputeType_t compute) {
    const int ok_in = (at == CUDA_R_32F || at == CUDA_R_16BF) && (bt == CUDA_R_32F || bt == CUDA_R_16BF) && at == bt;
    if (!ok_in || ct != CUDA_R_32F || (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    const int t = at == CUDA_R_32F && (compute == CUBLAS_COMPUTE_32F_FAST_TF32 || h->math == CUBLAS_TF32_TENSOR_OP_MATH);
    return gemm_t(t, ta, tb, m, n, k, *(const float *)alpha, A, at == CUDA_R_16BF, lda, B, bt == CUDA_R_16BF, ldb,
                  *(const float *)beta, (float *)C, ldc);
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t Atype, int lda, const void *B,
                            cudaDataType_t Btype, int ldb, const void *beta, void *C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    if (capture_on()) {   // recorded like cublasSgemm, host scalars read at the call
        const float a = *(const float *)alpha, b = *(const float *)beta;
        capture_record([=] { gemm_ex(h, ta, tb, m, n, k, &a, A, Atype, lda, B, Btype, ldb, &b, C, Ctype, ldc, compute); });
        return CUBLAS_STATUS_SUCCESS;
    }
    return gemm_ex(h, ta, tb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc, compute);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda,
                                          long long sA, const void *B, cudaDataType_t Btype, int ldb, long long sB,
                                          const void *beta, void *C, cudaDataType_t Ctype, int ldc, long long sC,
                                          int count, cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    if (capture_on()) {
        const float a = *(const float *)alpha, b = *(const float *)beta;
        capture_record([=] {
            cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, &a, A, Atype, lda, sA, B, Btype, ldb, sB, &b, C, Ctype, ldc, sC,
                                       count, compute, algo);
        });
        return CUBLAS_STATUS_SUCCESS;
    }
    const size_t ea = Atype == CUDA_R_16BF ? 2 : 4, eb = Btype == CUDA_R_16BF ? 2 : 4;   // element bytes
    for (int i = 0; i < count; i++) {
        cublasStatus_t s = gemm_ex(h, ta, tb, m, n, k, alpha, (const char *)A + i * sA * ea, Atype, lda,
                                   (const char *)B + i * sB * eb, Btype, ldb, beta, (float *)C + i * sC, Ctype, ldc, compute);
        if (s) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}
// ---- end bf16 GEMMs ----

// ---- cuDNN -------------------------------------------------------------------------------------------

struct cudnnContext { int unused; };
struct rx_emu_tensor_desc { int n, c, h, w, set, bf16; };
struct rx_emu_filter_desc { int k, c, h, w, set, bf16; };
struct rx_emu_conv_desc { int pad_h, pad_w, u, v, set; cudnnMathType_t math; cudnnDataType_t compute; };

const char *cudnnGetErrorString(cudnnStatus_t s) {
    switch (s) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_ALLOC_FAILED: return "CUDNN_STATUS_ALLOC_FAILED";
    default: return "CUDNN_STATUS_NOT_INITIALIZED";
    }
}
cudnnStatus_t cudnnCreate(cudnnHandle_t *h) { *h = new cudnnContext{0}; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnDestroy(cudnnHandle_t h) { delete h; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnSetStream(cudnnHandle_t, cudaStream_t) { return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) { *d = new rx_emu_tensor_desc{}; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) { delete d; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t, cudnnDataType_t t, int n, int c, int h, int w) {
    if (n < 1 || c < 1 || h < 1 || w < 1) return CUDNN_STATUS_BAD_PARAM;
    *d = rx_emu_tensor_desc{n, c, h, w, 1, t == CUDNN_DATA_BFLOAT16};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) { *d = new rx_emu_filter_desc{}; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) { delete d; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t t, cudnnTensorFormat_t, int k, int c, int h, int w) {
    if (k < 1 || c < 1 || h < 1 || w < 1) return CUDNN_STATUS_BAD_PARAM;
    *d = rx_emu_filter_desc{k, c, h, w, 1, t == CUDNN_DATA_BFLOAT16};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) {
    *d = new rx_emu_conv_desc{0, 0, 1, 1, 0, CUDNN_DEFAULT_MATH, CUDNN_DATA_FLOAT};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) { delete d; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int ph, int pw, int u, int v, int dh, int dw,
                                              cudnnConvolutionMode_t mode, cudnnDataType_t compute) {
    if (ph < 0 || pw < 0 || u < 1 || v < 1 || dh != 1 || dw != 1 || mode != CUDNN_CROSS_CORRELATION) return CUDNN_STATUS_BAD_PARAM;
    d->pad_h = ph; d->pad_w = pw; d->u = u; d->v = v; d->set = 1; d->compute = compute;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) { d->math = m; return CUDNN_STATUS_SUCCESS; }

static int out_dim(int in, int pad, int k, int s) { return (in + 2 * pad - k) / s + 1; }

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t x,
                                                    cudnnFilterDescriptor_t w, int *n, int *ch, int *h, int *wd) {
    if (!c->set || !x->set || !w->set || x->c != w->c) return CUDNN_STATUS_BAD_PARAM;
    *n = x->n;
    *ch = w->k;
    *h = out_dim(x->h, c->pad_h, w->h, c->u);
    *wd = out_dim(x->w, c->pad_w, w->w, c->v);
    return CUDNN_STATUS_SUCCESS;
}

// Fixed rankings that exercise the selection: fast-but-excluded candidates first (FFT/Winograd,
// non-deterministic, failed), then the plain ones. Workspace bytes per algorithm below.
static size_t ws_fwd(int a) { return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ? 0 : a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ? 4096 : 65536; }
static size_t ws_bwd_data(int a) { return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 ? 2048 : a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 ? 0 : 65536; }
static size_t ws_bwd_filter(int a) { return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 ? 1000 : a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 ? 0 : 65536; }

template <class Perf, class Algo>
static void fill_perf(Perf *out, int max, int *n, const int (*list)[4], int count, cudnnMathType_t desc_math, size_t (*ws)(int)) {
    // list rows: algo, status, determinism, math (-1: the descriptor's)
    *n = 0;
    for (int i = 0; i < count && *n < max; i++) {
        Perf p;
        memset(&p, 0, sizeof p);
        p.algo = (Algo)list[i][0];
        p.status = (cudnnStatus_t)list[i][1];
        p.time = 1.0f + i;
        p.memory = ws(list[i][0]);
        p.determinism = (cudnnDeterminism_t)list[i][2];
        p.mathType = list[i][3] < 0 ? desc_math : (cudnnMathType_t)list[i][3];
        out[(*n)++] = p;
    }
}

static const int FWD_RANK[][4] = {
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, CUDNN_DEFAULT_MATH},
    {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, CUDNN_STATUS_ALLOC_FAILED, CUDNN_DETERMINISTIC, -1},
    {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, -1},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, -1},
};
static const int BWD_DATA_RANK[][4] = {
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, CUDNN_DEFAULT_MATH},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, CUDNN_STATUS_SUCCESS, CUDNN_NON_DETERMINISTIC, -1},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, -1},
};
static const int BWD_FILTER_RANK[][4] = {
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, CUDNN_STATUS_SUCCESS, CUDNN_NON_DETERMINISTIC, -1},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, CUDNN_DEFAULT_MATH},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, CUDNN_STATUS_NOT_SUPPORTED, CUDNN_DETERMINISTIC, -1},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC, -1},
};
#define COUNT(a) (int)(sizeof(a) / sizeof((a)[0]))

cudnnStatus_t cudnnFindConvolutionForwardAlgorithm(cudnnHandle_t, cudnnTensorDescriptor_t, cudnnFilterDescriptor_t,
    cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t, int max, int *n, cudnnConvolutionFwdAlgoPerf_t *p) {
    fill_perf<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(p, max, n, FWD_RANK, COUNT(FWD_RANK), c->math, ws_fwd);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
    cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t y, int max, int *n, cudnnConvolutionFwdAlgoPerf_t *p) {
    return cudnnFindConvolutionForwardAlgorithm(h, x, w, c, y, max, n, p);
}
cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithm(cudnnHandle_t, cudnnFilterDescriptor_t, cudnnTensorDescriptor_t,
    cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t, int max, int *n, cudnnConvolutionBwdDataAlgoPerf_t *p) {
    fill_perf<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(p, max, n, BWD_DATA_RANK, COUNT(BWD_DATA_RANK),
                                                                                 c->math, ws_bwd_data);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t h, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t dx, int max, int *n, cudnnConvolutionBwdDataAlgoPerf_t *p) {
    return cudnnFindConvolutionBackwardDataAlgorithm(h, w, dy, c, dx, max, n, p);
}
cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithm(cudnnHandle_t, cudnnTensorDescriptor_t, cudnnTensorDescriptor_t,
    cudnnConvolutionDescriptor_t c, cudnnFilterDescriptor_t, int max, int *n, cudnnConvolutionBwdFilterAlgoPerf_t *p) {
    fill_perf<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(p, max, n, BWD_FILTER_RANK,
                                                                                     COUNT(BWD_FILTER_RANK), c->math, ws_bwd_filter);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t c, cudnnFilterDescriptor_t dw, int max, int *n, cudnnConvolutionBwdFilterAlgoPerf_t *p) {
    return cudnnFindConvolutionBackwardFilterAlgorithm(h, x, dy, c, dw, max, n, p);
}
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t, cudnnTensorDescriptor_t, cudnnFilterDescriptor_t,
    cudnnConvolutionDescriptor_t, cudnnTensorDescriptor_t, cudnnConvolutionFwdAlgo_t a, size_t *b) { *b = ws_fwd(a); return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t, cudnnFilterDescriptor_t, cudnnTensorDescriptor_t,
    cudnnConvolutionDescriptor_t, cudnnTensorDescriptor_t, cudnnConvolutionBwdDataAlgo_t a, size_t *b) { *b = ws_bwd_data(a); return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t, cudnnTensorDescriptor_t, cudnnTensorDescriptor_t,
    cudnnConvolutionDescriptor_t, cudnnFilterDescriptor_t, cudnnConvolutionBwdFilterAlgo_t a, size_t *b) { *b = ws_bwd_filter(a); return CUDNN_STATUS_SUCCESS; }

// the geometry of one convolution, checked against the descriptors
struct conv_geo { int N, C, H, W, K, R, S, P, Q, ph, pw, u, v, t, bf16; };

static cudnnStatus_t geo_of(cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t c,
                            cudnnTensorDescriptor_t y, size_t need, void *ws, size_t ws_size, conv_geo *g) {
    if (!x->set || !w->set || !c->set || !y->set || x->c != w->c || y->c != w->k || y->n != x->n) return CUDNN_STATUS_BAD_PARAM;
    if (y->h != out_dim(x->h, c->pad_h, w->h, c->u) || y->w != out_dim(x->w, c->pad_w, w->w, c->v)) return CUDNN_STATUS_BAD_PARAM;
    if (ws_size < need || (need && !ws)) {
        fprintf(stderr, "cuda emulator: cuDNN workspace %zu bytes at %p, the algorithm needs %zu\n", ws_size, ws, need);
        return CUDNN_STATUS_BAD_PARAM;
    }
    // bf16: x, w and y all bf16 with an fp32 compute type (PSEUDO_BFLOAT16), as cuDNN's legacy API requires
    if (x->bf16 != w->bf16 || x->bf16 != y->bf16 || (x->bf16 && c->compute != CUDNN_DATA_FLOAT)) return CUDNN_STATUS_NOT_SUPPORTED;
    *g = conv_geo{x->n, x->c, x->h, x->w, w->k, w->h, w->w, y->h, y->w, c->pad_h, c->pad_w, c->u, c->v,
                  c->math != CUDNN_FMA_MATH, x->bf16};   // DEFAULT and TENSOR_OP may use TF32 on Ampere and newer
    return CUDNN_STATUS_SUCCESS;
}

static float in_t(float v, int t) { return t ? tf32(v) : v; }

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha, cudnnTensorDescriptor_t xd, const void *xv,
    cudnnFilterDescriptor_t wd, const void *wv, cudnnConvolutionDescriptor_t cd, cudnnConvolutionFwdAlgo_t a, void *ws,
    size_t ws_size, const void *beta, cudnnTensorDescriptor_t yd, void *yv) {
    if (capture_on()) {   // descriptors by handle (runexp keeps them for the context's life), scalars by value
        const float al_ = *(const float *)alpha, be_ = *(const float *)beta;
        capture_record([=] { cudnnConvolutionForward(h, &al_, xd, xv, wd, wv, cd, a, ws, ws_size, &be_, yd, yv); });
        return CUDNN_STATUS_SUCCESS;
    }
    conv_geo g;
    cudnnStatus_t s = geo_of(xd, wd, cd, yd, ws_fwd(a), ws, ws_size, &g);
    if (s) return s;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    for (int n = 0; n < g.N; n++) for (int k = 0; k < g.K; k++) for (int p = 0; p < g.P; p++) for (int q = 0; q < g.Q; q++) {
        double acc = 0;
        for (int c = 0; c < g.C; c++) for (int r = 0; r < g.R; r++) for (int t = 0; t < g.S; t++) {
            const int ih = p * g.u - g.ph + r, iw = q * g.v - g.pw + t;
            if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
            acc += (double)in_t(load_elem(xv, ((size_t)(n * g.C + c) * g.H + ih) * g.W + iw, g.bf16), g.t) *
                   in_t(load_elem(wv, ((size_t)(k * g.C + c) * g.R + r) * g.S + t, g.bf16), g.t);
        }
        const size_t o = ((size_t)(n * g.K + k) * g.P + p) * g.Q + q;
        store_elem(yv, o, (float)(al * acc + (be == 0.0f ? 0.0 : (double)be * load_elem(yv, o, g.bf16))), g.bf16);
    }
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha, cudnnFilterDescriptor_t wd, const void *wv,
    cudnnTensorDescriptor_t dyd, const void *dyv, cudnnConvolutionDescriptor_t cd, cudnnConvolutionBwdDataAlgo_t a, void *ws,
    size_t ws_size, const void *beta, cudnnTensorDescriptor_t dxd, void *dxv) {
    if (capture_on()) {   // descriptors by handle (runexp keeps them for the context's life), scalars by value
        const float al_ = *(const float *)alpha, be_ = *(const float *)beta;
        capture_record([=] { cudnnConvolutionBackwardData(h, &al_, wd, wv, dyd, dyv, cd, a, ws, ws_size, &be_, dxd, dxv); });
        return CUDNN_STATUS_SUCCESS;
    }
    conv_geo g;
    cudnnStatus_t s = geo_of(dxd, wd, cd, dyd, ws_bwd_data(a), ws, ws_size, &g);
    if (s) return s;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    std::vector<double> acc((size_t)g.N * g.C * g.H * g.W, 0.0);
    for (int n = 0; n < g.N; n++) for (int k = 0; k < g.K; k++) for (int p = 0; p < g.P; p++) for (int q = 0; q < g.Q; q++) {
        const float d = in_t(load_elem(dyv, ((size_t)(n * g.K + k) * g.P + p) * g.Q + q, g.bf16), g.t);
        for (int c = 0; c < g.C; c++) for (int r = 0; r < g.R; r++) for (int t = 0; t < g.S; t++) {
            const int ih = p * g.u - g.ph + r, iw = q * g.v - g.pw + t;
            if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
            acc[((size_t)(n * g.C + c) * g.H + ih) * g.W + iw] +=
                (double)d * in_t(load_elem(wv, ((size_t)(k * g.C + c) * g.R + r) * g.S + t, g.bf16), g.t);
        }
    }
    for (size_t i = 0; i < acc.size(); i++)
        store_elem(dxv, i, (float)(al * acc[i] + (be == 0.0f ? 0.0 : (double)be * load_elem(dxv, i, g.bf16))), g.bf16);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha, cudnnTensorDescriptor_t xd, const void *xv,
    cudnnTensorDescriptor_t dyd, const void *dyv, cudnnConvolutionDescriptor_t cd, cudnnConvolutionBwdFilterAlgo_t a, void *ws,
    size_t ws_size, const void *beta, cudnnFilterDescriptor_t dwd, void *dwv) {
    if (capture_on()) {   // descriptors by handle (runexp keeps them for the context's life), scalars by value
        const float al_ = *(const float *)alpha, be_ = *(const float *)beta;
        capture_record([=] { cudnnConvolutionBackwardFilter(h, &al_, xd, xv, dyd, dyv, cd, a, ws, ws_size, &be_, dwd, dwv); });
        return CUDNN_STATUS_SUCCESS;
    }
    conv_geo g;
    cudnnStatus_t s = geo_of(xd, dwd, cd, dyd, ws_bwd_filter(a), ws, ws_size, &g);
    if (s) return s;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    std::vector<double> acc((size_t)g.K * g.C * g.R * g.S, 0.0);
    for (int n = 0; n < g.N; n++) for (int k = 0; k < g.K; k++) for (int p = 0; p < g.P; p++) for (int q = 0; q < g.Q; q++) {
        const float d = in_t(load_elem(dyv, ((size_t)(n * g.K + k) * g.P + p) * g.Q + q, g.bf16), g.t);
        for (int c = 0; c < g.C; c++) for (int r = 0; r < g.R; r++) for (int t = 0; t < g.S; t++) {
            const int ih = p * g.u - g.ph + r, iw = q * g.v - g.pw + t;
            if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
            acc[((size_t)(k * g.C + c) * g.R + r) * g.S + t] +=
                (double)d * in_t(load_elem(xv, ((size_t)(n * g.C + c) * g.H + ih) * g.W + iw, g.bf16), g.t);
        }
    }
    for (size_t i = 0; i < acc.size(); i++)
        store_elem(dwv, i, (float)(al * acc[i] + (be == 0.0f ? 0.0 : (double)be * load_elem(dwv, i, g.bf16))), g.bf16);
    return CUDNN_STATUS_SUCCESS;
}

// ---- cuBLASLt (include/cublasLt.h) ---------------------------------------------------------------------
// Column-major as cuBLAS: D [m,n] = alpha op(A) op(B) + beta C (+ bias[i] on row i with the BIAS
// epilogue), op(A) [m,k], op(B) [k,n]; A and B fp32 or both bf16, C and D fp32, fp32 scale,
// compute 32F (FAST_TF32 rounds fp32 inputs to TF32); accumulated in double, rounded once.
// Other combinations: NOT_SUPPORTED from the heuristic. The one algorithm returned remembers the
// pointer alignment it was chosen for (the preference's, and the bias pointer's at the query)
// and its workspace: a split-K kernel for k > 256 that keeps m·n fp32 partials in the workspace,
// unless the preference's limit is smaller (then a kernel without workspace).

struct rx_emu_lt_handle { int unused; };
struct rx_emu_lt_desc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t transa, transb;
    uint32_t epilogue;
    const void *bias;
    int32_t bias_type;
};
struct rx_emu_lt_layout { cudaDataType_t type; uint64_t rows, cols; int64_t ld; };
struct rx_emu_lt_pref { uint64_t max_workspace; uint32_t align[4]; };   // A, B, C, D

enum { LT_ALGO_MAGIC = 0x4c74, LT_SPLIT_K_FROM = 256 };

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { *h = new rx_emu_lt_handle{0}; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    *d = new rx_emu_lt_desc{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, nullptr, -1};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { delete d; return CUBLAS_STATUS_SUCCESS; }

// an attribute's value from buf, refused (as cuBLASLt does) when bytes is not its storage size
template <class T>
static cublasStatus_t lt_set(T *field, const void *buf, size_t bytes) {
    if (!buf || bytes != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(field, buf, sizeof(T));
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const void *buf,
                                              size_t bytes) {
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return lt_set(&d->transa, buf, bytes);
    case CUBLASLT_MATMUL_DESC_TRANSB: return lt_set(&d->transb, buf, bytes);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return lt_set(&d->epilogue, buf, bytes);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return lt_set(&d->bias, buf, bytes);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return lt_set(&d->bias_type, buf, bytes);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;   // (pointer mode: runexp keeps the host default)
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
    if (ld < 1 || (uint64_t)ld < rows) return CUBLAS_STATUS_INVALID_VALUE;   // column-major: ld >= rows
    *l = new rx_emu_lt_layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { delete l; return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new rx_emu_lt_pref{0, {256, 256, 256, 256}};   // the real defaults: no workspace, 256-byte alignment
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { delete p; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t bytes) {
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return lt_set(&p->max_workspace, buf, bytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return lt_set(&p->align[0], buf, bytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return lt_set(&p->align[1], buf, bytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return lt_set(&p->align[2], buf, bytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return lt_set(&p->align[3], buf, bytes);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

static uint64_t lt_align_of(const void *p) {   // the largest power of two dividing the address, at most 256
    const uintptr_t a = (uintptr_t)p;
    return a ? ((a & (~a + 1)) < 256 ? (a & (~a + 1)) : 256) : 256;
}

// op(A) [m,k], op(B) [k,n], C and D [m,n] from the layouts; 0: the sizes do not fit together
static int lt_dims(const rx_emu_lt_desc *d, const rx_emu_lt_layout *A, const rx_emu_lt_layout *B,
                   const rx_emu_lt_layout *C, const rx_emu_lt_layout *D, uint64_t *m, uint64_t *n, uint64_t *k) {
    *m = d->transa == CUBLAS_OP_N ? A->rows : A->cols;
    *k = d->transa == CUBLAS_OP_N ? A->cols : A->rows;
    const uint64_t kb = d->transb == CUBLAS_OP_N ? B->rows : B->cols;
    *n = d->transb == CUBLAS_OP_N ? B->cols : B->rows;
    return kb == *k && C->rows == *m && C->cols == *n && D->rows == *m && D->cols == *n;
}

static int lt_supported(const rx_emu_lt_desc *d, const rx_emu_lt_layout *A, const rx_emu_lt_layout *B,
                        const rx_emu_lt_layout *C, const rx_emu_lt_layout *D) {
    const int bf16 = A->type == CUDA_R_16BF;
    if (A->type != B->type || (A->type != CUDA_R_32F && !bf16) || C->type != CUDA_R_32F || D->type != CUDA_R_32F) return 0;
    if (d->scale != CUDA_R_32F || (d->compute != CUBLAS_COMPUTE_32F && d->compute != CUBLAS_COMPUTE_32F_FAST_TF32)) return 0;
    if (bf16 && d->compute != CUBLAS_COMPUTE_32F) return 0;
    if ((d->transa != CUBLAS_OP_N && d->transa != CUBLAS_OP_T) || (d->transb != CUBLAS_OP_N && d->transb != CUBLAS_OP_T)) return 0;
    if (d->epilogue != CUBLASLT_EPILOGUE_DEFAULT && d->epilogue != CUBLASLT_EPILOGUE_BIAS) return 0;
    return d->bias_type == -1 || d->bias_type == CUDA_R_32F;   // the bias is D's type (fp32)
}

// algo.data: [0] magic, [1] workspace bytes, [2..5] alignment of A, B, C, D, [6] of the bias
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t A,
                                              cublasLtMatrixLayout_t B, cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int *returned) {
    *returned = 0;
    if (requested < 1 || !results) return CUBLAS_STATUS_INVALID_VALUE;
    uint64_t m, n, k;
    if (!lt_dims(op, A, B, C, D, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    if (!lt_supported(op, A, B, C, D)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (op->epilogue == CUBLASLT_EPILOGUE_BIAS && !op->bias) return CUBLAS_STATUS_INVALID_VALUE;
    cublasLtMatmulHeuristicResult_t r;
    memset(&r, 0, sizeof r);
    const uint64_t split_k = k > LT_SPLIT_K_FROM ? m * n * sizeof(float) : 0;
    r.workspaceSize = split_k <= pref->max_workspace ? split_k : 0;
    r.algo.data[0] = LT_ALGO_MAGIC;
    r.algo.data[1] = r.workspaceSize;
    for (int i = 0; i < 4; i++) r.algo.data[2 + i] = pref->align[i];
    r.algo.data[6] = op->epilogue == CUBLASLT_EPILOGUE_BIAS ? lt_align_of(op->bias) : 1;
    r.state = CUBLAS_STATUS_SUCCESS;
    r.wavesCount = 1.0f;
    results[0] = r;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

// the multiplication itself, on copies of the descriptors (a captured call keeps them as they were)
static void lt_run(rx_emu_lt_desc d, rx_emu_lt_layout A, rx_emu_lt_layout B, rx_emu_lt_layout C, rx_emu_lt_layout D,
                   float alpha, float beta, const void *a, const void *b, const float *c, float *dst, float *workspace) {
    uint64_t m, n, k;
    lt_dims(&d, &A, &B, &C, &D, &m, &n, &k);
    const int bf16 = A.type == CUDA_R_16BF, t = !bf16 && d.compute == CUBLAS_COMPUTE_32F_FAST_TF32;
    const float *bias = d.epilogue == CUBLASLT_EPILOGUE_BIAS ? (const float *)d.bias : nullptr;
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            double s = 0;
            for (uint64_t p = 0; p < k; p++) {
                float x = load_elem(a, d.transa == CUBLAS_OP_N ? i + p * A.ld : p + i * A.ld, bf16);
                float y = load_elem(b, d.transb == CUBLAS_OP_N ? p + j * B.ld : j + p * B.ld, bf16);
                if (t) { x = tf32(x); y = tf32(y); }
                s += (double)x * y;
            }
            double v = alpha * s + (beta == 0.0f ? 0.0 : (double)beta * c[i + j * C.ld]) + (bias ? bias[i] : 0.0);
            if (workspace) workspace[i + j * m] = (float)v;   // split-K: the partial sums live in the workspace
            else dst[i + j * D.ld] = (float)v;
        }
    if (workspace)
        for (uint64_t j = 0; j < n; j++)
            for (uint64_t i = 0; i < m; i++) dst[i + j * D.ld] = workspace[i + j * m];
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t op, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t Adesc, const void *B, cublasLtMatrixLayout_t Bdesc, const void *beta,
                              const void *C, cublasLtMatrixLayout_t Cdesc, void *D, cublasLtMatrixLayout_t Ddesc,
                              const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_bytes, cudaStream_t) {
    uint64_t m, n, k;
    if (!lt_dims(op, Adesc, Bdesc, Cdesc, Ddesc, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    if (!lt_supported(op, Adesc, Bdesc, Cdesc, Ddesc)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (!algo || algo->data[0] != LT_ALGO_MAGIC) return CUBLAS_STATUS_INVALID_VALUE;   // not from the heuristic
    const uint64_t need = algo->data[1];
    if (need && (!workspace || workspace_bytes < need)) return CUBLAS_STATUS_INVALID_VALUE;
    const int bias = op->epilogue == CUBLASLT_EPILOGUE_BIAS;
    if (bias && !op->bias) return CUBLAS_STATUS_INVALID_VALUE;
    const void *ptr[4] = {A, B, C, D};
    for (int i = 0; i < 4; i++)
        if (lt_align_of(ptr[i]) < algo->data[2 + i]) return CUBLAS_STATUS_INVALID_VALUE;   // chosen for a stricter alignment
    if (bias && lt_align_of(op->bias) < algo->data[6]) return CUBLAS_STATUS_INVALID_VALUE;
    const float a = *(const float *)alpha, b = *(const float *)beta;   // host pointer mode: read at the call
    const rx_emu_lt_desc d = *op;
    const rx_emu_lt_layout la = *Adesc, lb = *Bdesc, lc = *Cdesc, ld = *Ddesc;
    float *ws = need ? (float *)workspace : nullptr;
    if (capture_on()) {
        capture_record([=] { lt_run(d, la, lb, lc, ld, a, b, A, B, (const float *)C, (float *)D, ws); });
        return CUBLAS_STATUS_SUCCESS;
    }
    lt_run(d, la, lb, lc, ld, a, b, A, B, (const float *)C, (float *)D, ws);
    return CUBLAS_STATUS_SUCCESS;
}
// ---- end cuBLASLt ----

// ---- stream capture: CUDA graphs (cuda_runtime.h's graphs section) -------------------------------
// One stream exists (stream_token), so one capture at a time. A graph is the list of recorded
// operations; an executable graph is a copy of it; a launch runs them in order.

struct rx_emu_graph { std::vector<std::function<void()>> ops; };
struct rx_emu_graph_exec { std::vector<std::function<void()>> ops; };

static rx_emu_graph *capturing;          // the graph being recorded, or null
static bool capture_invalidated;

static bool capture_on(void) { return capturing != nullptr; }
static cudaError_t capture_refuse(void) {
    capture_invalidated = true;
    return last_error = cudaErrorStreamCaptureUnsupported;
}
static void capture_record(std::function<void()> op) { capturing->ops.push_back(std::move(op)); }

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
    if (!s || capturing) return last_error = cudaErrorInvalidValue;   // not the legacy stream, not twice
    capturing = new rx_emu_graph;
    capture_invalidated = false;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
    if (!capturing) return last_error = cudaErrorInvalidValue;
    rx_emu_graph *done = capturing;
    capturing = nullptr;
    if (capture_invalidated) {
        delete done;
        *g = nullptr;
        return last_error = cudaErrorStreamCaptureInvalidated;
    }
    *g = done;
    return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t, cudaStreamCaptureStatus *status) {
    *status = !capturing ? cudaStreamCaptureStatusNone
              : capture_invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long) {
    if (!g || capturing) return last_error = cudaErrorInvalidValue;
    *e = new rx_emu_graph_exec{g->ops};
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) {
    if (!e || capturing) return last_error = cudaErrorInvalidValue;   // no child graphs here
    for (auto &op : e->ops) op();
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) { delete e; return cudaSuccess; }
cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete g; return cudaSuccess; }
