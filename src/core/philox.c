#include "philox.h"
#include "parallel.h"
#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u   /* golden ratio       */
#define PHILOX_W1 0xBB67AE85u   /* sqrt(3) - 1        */

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void rx_philox4x32_10(const uint32_t key[2], const uint32_t ctr[4], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(PHILOX_M0, c0, &hi0, &lo0);
        mulhilo(PHILOX_M1, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0; k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static inline void block(uint64_t seed, uint64_t stream, uint64_t b, uint32_t out[4]) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)b, (uint32_t)(b >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    rx_philox4x32_10(key, ctr, out);
}

uint32_t rx_rng_u32(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t w[4];
    block(seed, stream, index / 4, w);
    return w[index % 4];
}

float rx_rng_uniform1(uint64_t seed, uint64_t stream, uint64_t index) {
    return rx_u32_to_uniform(rx_rng_u32(seed, stream, index));
}

static void uniform_blocks(uint64_t seed, uint64_t stream, uint64_t offset, float *out, int64_t n, int64_t b) {
    uint32_t w[4];
    block(seed, stream, offset + (uint64_t)b, w);
    for (int k = 0; k < 4 && b * 4 + k < n; k++) out[b * 4 + k] = rx_u32_to_uniform(w[k]);
}

/* small requests stay out of OpenMP: even a disabled parallel region costs a system call */
void rx_rng_uniform(uint64_t seed, uint64_t stream, uint64_t offset, float *out, int64_t n) {
    int64_t nb = (n + 3) / 4;
    if (n <= RX_OMP_MIN_WORK) {
        for (int64_t b = 0; b < nb; b++) uniform_blocks(seed, stream, offset, out, n, b);
        return;
    }
    #pragma omp parallel for
    for (int64_t b = 0; b < nb; b++) uniform_blocks(seed, stream, offset, out, n, b);
}

static void normal_blocks(uint64_t seed, uint64_t stream, uint64_t offset, float *out, int64_t n, int64_t b);

void rx_rng_normal(uint64_t seed, uint64_t stream, uint64_t offset, float *out, int64_t n) {
    int64_t nb = (n + 3) / 4;
    if (n <= RX_OMP_MIN_WORK) {
        for (int64_t b = 0; b < nb; b++) normal_blocks(seed, stream, offset, out, n, b);
        return;
    }
    #pragma omp parallel for
    for (int64_t b = 0; b < nb; b++) normal_blocks(seed, stream, offset, out, n, b);
}

static void normal_blocks(uint64_t seed, uint64_t stream, uint64_t offset, float *out, int64_t n, int64_t b) {
    {
        uint32_t w[4];
        block(seed, stream, offset + (uint64_t)b, w);
        float z[4];
        for (int p = 0; p < 2; p++) {
            /* double inside Box–Muller: the result is then identical for any compiler/vector width */
            double u0 = rx_u32_to_uniform(w[2 * p]), u1 = rx_u32_to_uniform(w[2 * p + 1]);
            double r = sqrt(-2.0 * log(u0)), th = 6.283185307179586 * u1;
            z[2 * p] = (float)(r * cos(th));
            z[2 * p + 1] = (float)(r * sin(th));
        }
        for (int k = 0; k < 4 && b * 4 + k < n; k++) out[b * 4 + k] = z[k];
    }
}
