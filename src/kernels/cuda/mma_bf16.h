// mma_bf16.h — bf16 values, and one warp's tensor-core product D = A B + C of shape m16n8k16
// (A [16x16] and B [16x8] in bf16, C and D [16x8] in fp32), with the loaders that put a tile into
// the registers the instruction reads. Used by attention.cu's bf16 kernels (precision: bf16) and
// by mma_bf16.cu's one-tile check.
//
// The instruction is mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (sm_80 and newer; the
// Makefile builds sm_80 and sm_90). Each of the 32 lanes holds a fragment of every matrix; which
// elements, from the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point type"),
// with g = lane / 4 (groupID) and t = lane % 4 (threadID_in_group):
//   A  4 registers of two bf16 (the first element in the low half):
//        a[0] = A[g][2t, 2t+1]      a[1] = A[g+8][2t, 2t+1]
//        a[2] = A[g][2t+8, 2t+9]    a[3] = A[g+8][2t+8, 2t+9]
//   B  2 registers of two bf16, running down a column ("col"):
//        b[0] = B[2t, 2t+1][g]      b[1] = B[2t+8, 2t+9][g]
//   C, D  4 floats:  c[0], c[1] = C[g][2t, 2t+1]      c[2], c[3] = C[g+8][2t, 2t+1]
// So the C fragments of two neighbouring 16x8 tiles (columns 0-7 and 8-15) are, rounded to bf16,
// exactly the A fragment of the 16x16 tile they form: FlashAttention's P goes from S = Q Kᵀ to
// P V without leaving the registers (attention.cu).
//
// Three implementations of the one product, all with this layout:
//   - the instruction, through inline PTX, on sm_80 and newer;
//   - mma_bf16_16816_shfl: the same product with warp shuffles (each lane fetches the A row and
//     B columns it needs from the lanes holding them) for older architectures; slow, but any
//     kernel using the product still compiles and computes the same numbers there;
//   - in the CUDA emulator (tests/cuda/emu), rx_emu_mma_bf16_16816: a warp collective (every lane
//     deposits its fragments, then computes its four outputs from the whole warp's, with the
//     layout above written out in emu.cpp from the PTX formulas).
// tests/cuda/test_cuda_mma.c checks each against a CPU matmul of the same bf16 values.
#ifndef RX_CUDA_MMA_BF16_H
#define RX_CUDA_MMA_BF16_H

#include <stdint.h>
#include <string.h>

// RX_UNROLL: "#pragma unroll" for nvcc (a kernel's fragment arrays stay in registers only when
// every loop indexing them is unrolled), nothing for the emulator's g++
#ifdef __CUDACC__
#define RX_UNROLL _Pragma("unroll")
#else
#define RX_UNROLL
#endif

// ---- bf16 values ----------------------------------------------------------------------------------
// fp32 -> bf16 by round to nearest even, as cuda_bf16.h's __float2bfloat16 (done on the bits: the
// emulator has no cuda_bf16.h): add 0x7fff plus the lowest kept bit, keep the top half. A NaN
// stays a NaN (its quiet bit set, so the truncation cannot turn it into an infinity).

typedef uint16_t bf16_bits;

__device__ __forceinline__ bf16_bits bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_bits)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_bits)(u >> 16);
}

__device__ __forceinline__ float float_of(bf16_bits h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// two bf16 in one register, lo in the low half (the first element of a fragment pair)
__device__ __forceinline__ uint32_t bf16x2(bf16_bits lo, bf16_bits hi) { return (uint32_t)lo | (uint32_t)hi << 16; }
__device__ __forceinline__ uint32_t bf16x2_of(float lo, float hi) { return bf16x2(bf16_of(lo), bf16_of(hi)); }

// ---- fragment coordinates (the table above) -----------------------------------------------------------
// register r of A holds (row, col) and (row, col + 1); register r of B holds (k, n) and (k + 1, n);
// float i of C / D is (row, col).
__device__ __forceinline__ void mma_a_at(int lane, int r, int *row, int *col) {
    *row = (lane >> 2) + 8 * (r & 1);
    *col = 2 * (lane & 3) + 8 * (r >> 1);
}
__device__ __forceinline__ void mma_b_at(int lane, int r, int *k, int *n) {
    *k = 2 * (lane & 3) + 8 * r;
    *n = lane >> 2;
}
__device__ __forceinline__ void mma_c_at(int lane, int i, int *row, int *col) {
    *row = (lane >> 2) + 8 * (i >> 1);
    *col = 2 * (lane & 3) + (i & 1);
}

// the loaders: at(row, col) / at(k, n) gives the tile's bf16 element, wherever the tile lives
// (shared memory in either orientation, or global memory with bounds checks)
template <class At>
__device__ __forceinline__ void mma_load_a(uint32_t a[4], int lane, At at) {
    for (int r = 0; r < 4; r++) {
        int row, col;
        mma_a_at(lane, r, &row, &col);
        a[r] = bf16x2(at(row, col), at(row, col + 1));
    }
}
template <class At>
__device__ __forceinline__ void mma_load_b(uint32_t b[2], int lane, At at) {
    for (int r = 0; r < 2; r++) {
        int k, n;
        mma_b_at(lane, r, &k, &n);
        b[r] = bf16x2(at(k, n), at(k + 1, n));
    }
}

// ---- the product -------------------------------------------------------------------------------------

#ifdef RX_CUDA_EMULATOR
void rx_emu_mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]);   // emu.cpp
#endif

// D = A B + C with warp shuffles, any architecture: for the pair of k (2kk, 2kk + 1), A's rows g
// and g + 8 sit in lane 4g + kk % 4 (registers 0/1 for kk < 4, else 2/3), B's column n in lane
// 4n + kk % 4 (register kk / 4). Every lane of the warp must call it (the shuffles are warp-wide).
__device__ __forceinline__ void mma_bf16_16816_shfl(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
    const int lane = (int)(threadIdx.x & 31), g = lane >> 2, t = lane & 3;
    float acc[4] = {c[0], c[1], c[2], c[3]};
    for (int kk = 0; kk < 8; kk++) {
        const int half = kk >> 2, src = kk & 3;
        const uint32_t ar[2] = {__shfl_sync(0xffffffffu, a[2 * half], 4 * g + src),        // A[g][2kk, 2kk+1]
                                __shfl_sync(0xffffffffu, a[2 * half + 1], 4 * g + src)};   // A[g+8][...]
        const uint32_t bc[2] = {__shfl_sync(0xffffffffu, b[half], 4 * (2 * t) + src),       // B[2kk, 2kk+1][2t]
                                __shfl_sync(0xffffffffu, b[half], 4 * (2 * t + 1) + src)};   // B[...][2t+1]
        for (int i = 0; i < 4; i++) {
            const uint32_t x = ar[i >> 1], y = bc[i & 1];
            acc[i] += float_of((bf16_bits)x) * float_of((bf16_bits)y) + float_of((bf16_bits)(x >> 16)) * float_of((bf16_bits)(y >> 16));
        }
    }
    for (int i = 0; i < 4; i++) d[i] = acc[i];
}

// D = A B + C on the tensor cores (d may be c). Every lane of the warp must call it.
__device__ __forceinline__ void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
#if defined(RX_CUDA_EMULATOR)
    rx_emu_mma_bf16_16816(d, a, b, c);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%10, %11, %12, %13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
                   "f"(c[3]));
#else
    mma_bf16_16816_shfl(d, a, b, c);
#endif
}

#endif
