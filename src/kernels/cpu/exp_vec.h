/* exp_vec.h — an expf that vectorizes, shared by the CPU kernels that apply silu/gelu
 * (cpu/elementwise.c, and the fused group_norm_silu in cpu/norm.c, which must round as silu does). */
#ifndef RX_CPU_EXP_VEC_H
#define RX_CPU_EXP_VEC_H

#include <stdint.h>

/* ---- exp that vectorizes ----------------------------------------------------------------
 * glibc's expf is a call per element (no vector variant without -ffast-math), which makes
 * silu/gelu ~10x slower than memory. This is Cephes' expf: x = n ln2 + r, |r| <= ln2/2,
 * e^r by a degree-7 polynomial, 2^n put into the exponent bits; within 2 ulp of expf over
 * [-87, 88] (checked against exp in double: 1.4 ulp). Clamps are integer selects because
 * float selects stop GCC's vectorizer under the default -ftrapping-math: |x| is limited to
 * 100 first (NaN included), and the exponent to [0, 255], so e^x is 0 below about -87 and
 * inf above about 88.4. */
static inline float exp_vec(float x) {
    union { float f; uint32_t u; } v = {x};
    uint32_t mag = v.u & 0x7fffffffu;
    mag = mag > 0x42c80000u ? 0x42c80000u : mag;   /* 100.0f */
    v.u = (v.u & 0x80000000u) | mag;
    const float xc = v.f;
    const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round(x / ln2), 1.5·2^23 trick */
    const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;             /* ln2 in two parts */
    float q = 1.9875691500e-4f;
    q = q * r + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    q = q * r * r + r + 1.0f;
    int32_t e = (int32_t)n + 127;
    e = e < 0 ? 0 : e;
    e = e > 255 ? 255 : e;
    union { int32_t i; float f; } two_n = {.i = e << 23};
    return q * two_n.f;
}

#endif
