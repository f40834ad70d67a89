// philox_device.h — Philox4x32-10 (Salmon et al. 2011) as a device function: the rounds of
// core/philox.c, word for word. Used by philox.cu (noise) and elementwise.cu (dropout masks).
#ifndef RX_PHILOX_DEVICE_H
#define RX_PHILOX_DEVICE_H

#include <stdint.h>

#define RX_PHILOX_M0 0xD2511F53u
#define RX_PHILOX_M1 0xCD9E8D57u
#define RX_PHILOX_W0 0x9E3779B9u   // golden ratio
#define RX_PHILOX_W1 0xBB67AE85u   // sqrt(3) - 1

// words of block `blk` of stream `stream` under `seed`: key = seed, counter = {blk, stream}
__host__ __device__ __forceinline__ uint32_t rx_mulhi32(uint32_t a, uint32_t b) {
    return (uint32_t)(((uint64_t)a * b) >> 32);   // one mul.hi.u32 on the device
}

__host__ __device__ __forceinline__ void rx_philox_block(uint64_t seed, uint64_t stream, uint64_t blk, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)blk, c1 = (uint32_t)(blk >> 32), c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        const uint32_t hi0 = rx_mulhi32(RX_PHILOX_M0, c0), lo0 = RX_PHILOX_M0 * c0;
        const uint32_t hi1 = rx_mulhi32(RX_PHILOX_M1, c2), lo1 = RX_PHILOX_M1 * c2;
        const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += RX_PHILOX_W0;
        k1 += RX_PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

// rx_u32_to_uniform: (u>>8 + 0.5) 2^-24, exact in float, in (0,1)
__host__ __device__ __forceinline__ float rx_philox_uniform(uint32_t u) { return ((float)(u >> 8) + 0.5f) * (1.0f / 16777216.0f); }

#endif
