// mma_bf16.cu — one warp's m16n8k16 product on one tile (mma_bf16.h), callable from C: the check
// that the fragment layout the kernels assume is the one the tensor cores (or the emulator) use.
// tests/cuda/test_cuda_mma.c runs it in the emulator and, on a GPU, against the real instruction.
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/mma_bf16.h"
#include "kernels/cuda/cuda_api.h"

// A [16x16], B [16x8], C and D [16x8], row-major fp32; A and B are rounded to bf16 on the way
// into shared memory. B is stored as given (element (k, n) at Bs[k][n]) or transposed (at
// Bt[n][k], the orientation of K in S = Q Kᵀ); the loaders read either.
__global__ void mma_tile_kernel(const float *A, const float *B, const float *C, float *D, int variant) {
    __shared__ bf16_bits As[16][16], Bs[16][8], Bt[8][16];
    const int lane = (int)threadIdx.x;
    for (int i = lane; i < 16 * 16; i += 32) As[i / 16][i % 16] = bf16_of(A[i]);
    for (int i = lane; i < 16 * 8; i += 32) {
        Bs[i / 8][i % 8] = bf16_of(B[i]);
        Bt[i % 8][i / 8] = bf16_of(B[i]);
    }
    __syncthreads();
    uint32_t a[4], b[2];
    if (variant == RX_MMA_TILE_A_TRANSPOSED) mma_load_a(a, lane, [&](int r, int k) { return As[k][r]; });   // wrong on purpose
    else mma_load_a(a, lane, [&](int r, int k) { return As[r][k]; });
    if (variant == RX_MMA_TILE_B_TRANSPOSED) mma_load_b(b, lane, [&](int k, int n) { return Bt[n][k]; });
    else mma_load_b(b, lane, [&](int k, int n) { return Bs[k][n]; });
    float c[4], d[4];
    for (int i = 0; i < 4; i++) {
        int row, col;
        mma_c_at(lane, i, &row, &col);
        c[i] = C[row * 8 + col];
    }
    if (variant == RX_MMA_TILE_SHUFFLE) mma_bf16_16816_shfl(d, a, b, c);
    else mma_bf16_16816(d, a, b, c);
    for (int i = 0; i < 4; i++) {
        int row, col;
        mma_c_at(lane, i, &row, &col);
        D[row * 8 + col] = d[i];
    }
}

extern "C" rx_status rx_cuda_mma_bf16_tile(rx_ctx *c, const float *A, const float *B, const float *C, float *D, int variant) {
    if (variant < 0 || variant >= RX_MMA_TILE_COUNT) return rx_fail(RX_ERR_ARG, "mma tile: variant %d unknown", variant);
    mma_tile_kernel<<<1, 32, 0, rx_cuda(c)->stream>>>(A, B, C, D, variant);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}
