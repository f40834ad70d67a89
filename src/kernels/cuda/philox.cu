// philox.cu — Philox4x32-10 on the device: the same words as core/philox.c for the same
// (seed, stream, counter), so noise and dropout masks do not depend on the backend.
//   key = {seed_lo, seed_hi};  counter of block b in stream s = {b_lo, b_hi, s_lo, s_hi}
// Element j of a sequence starting at block `offset` is word j%4 of block offset + j/4.
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/philox_device.h"

extern "C" {
#include "kernels/cuda/cuda_api.h"
}

namespace {

struct words_op {   // one thread per block of 4 words
    uint32_t *out;
    uint64_t seed, stream, offset;
    int64_t n;
    __device__ void operator()(int64_t b) const {
        uint32_t w[4];
        rx_philox_block(seed, stream, offset + (uint64_t)b, w);
        for (int k = 0; k < 4 && b * 4 + k < n; k++) out[b * 4 + k] = w[k];
    }
};

struct uniform_op {
    float *out;
    uint64_t seed, stream, offset;
    int64_t n;
    __device__ void operator()(int64_t b) const {
        uint32_t w[4];
        rx_philox_block(seed, stream, offset + (uint64_t)b, w);
        for (int k = 0; k < 4 && b * 4 + k < n; k++) out[b * 4 + k] = rx_philox_uniform(w[k]);
    }
};

// Box–Muller on word pairs (0,1) and (2,3), in double as philox.c's normal_blocks
struct normal_op {
    float *out;
    uint64_t seed, stream, offset;
    int64_t n;
    __device__ void operator()(int64_t b) const {
        uint32_t w[4];
        rx_philox_block(seed, stream, offset + (uint64_t)b, w);
        float z[4];
        for (int p = 0; p < 2; p++) {
            const double u0 = rx_philox_uniform(w[2 * p]), u1 = rx_philox_uniform(w[2 * p + 1]);
            const double r = sqrt(-2.0 * log(u0)), th = 6.283185307179586 * u1;
            z[2 * p] = (float)(r * cos(th));
            z[2 * p + 1] = (float)(r * sin(th));
        }
        for (int k = 0; k < 4 && b * 4 + k < n; k++) out[b * 4 + k] = z[k];
    }
};

}  // namespace

extern "C" rx_status rx_cuda_rng_u32(rx_ctx *c, uint64_t seed, uint64_t stream, uint64_t offset, uint32_t *out, int64_t n) {
    return rx_cuda_foreach(c, (n + 3) / 4, words_op{out, seed, stream, offset, n});
}

extern "C" rx_status rx_cuda_rng_uniform(rx_ctx *c, uint64_t seed, uint64_t stream, uint64_t offset, float *out, int64_t n) {
    return rx_cuda_foreach(c, (n + 3) / 4, uniform_op{out, seed, stream, offset, n});
}

extern "C" rx_status rx_cuda_rng_normal(rx_ctx *c, uint64_t seed, uint64_t stream, uint64_t offset, float *out, int64_t n) {
    return rx_cuda_foreach(c, (n + 3) / 4, normal_op{out, seed, stream, offset, n});
}
