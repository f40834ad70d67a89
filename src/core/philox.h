/* philox.h — counter-based RNG (Philox4x32-10, Salmon et al. 2011, as in Random123).
 *
 * A draw is addressed by (seed, stream, counter): no state, so the noise for image i at
 * sampling step t depends only on (seed, i, t) — not on batch size, thread count or backend.
 *
 * Layout: key = {seed_lo, seed_hi}; counter block c of stream s = {c_lo, c_hi, s_lo, s_hi}.
 * One block yields 4 uint32 words. Element j of a sequence that starts at block `offset`
 * uses block offset + j/4, word j%4. Uniforms are (u>>8 + 0.5) * 2^-24, in (0,1).
 * Normals use Box–Muller on word pairs (0,1) and (2,3) of the same block:
 *   z0 = r cos(2πu1), z1 = r sin(2πu1), r = sqrt(-2 ln u0). So n normals use ceil(n/4) blocks.
 * The CUDA backend reproduces these words exactly (and the floats within rounding). */
#ifndef RX_PHILOX_H
#define RX_PHILOX_H

#include <stdint.h>

void rx_philox4x32_10(const uint32_t key[2], const uint32_t ctr[4], uint32_t out[4]);

/* Well-known streams, so that different uses of one seed never overlap. The low
 * 48 bits of a stream are free for an index (image number, parameter number, ...). */
#define RX_STREAM(purpose, index) (((uint64_t)(purpose) << 48) | ((uint64_t)(index) & 0xFFFFFFFFFFFFull))
enum {
    RX_RNG_INIT = 1,      /* weight init, index = parameter number          */
    RX_RNG_DROPOUT,       /* dropout masks, index = RX_DROPOUT_INDEX below  */
    RX_RNG_TRAIN_NOISE,   /* diffusion noise in training, index = step      */
    RX_RNG_TRAIN_TIME,    /* timesteps / label drop in training             */
    RX_RNG_SAMPLE_NOISE,  /* sampler noise, index = image number            */
    RX_RNG_DATA,          /* data sets and loaders, index = RX_DATA_* below */
    RX_RNG_TEST,          /* tests                                          */
    RX_RNG_REFLOW,        /* reflow batches: pair choice and time, index = step */
    /* KID's random subsets (eval/kid.h), index = 2 * subset + set. 'KI': the number every
     * KID value so far was drawn with; renumbering it would change them all */
    RX_RNG_EVAL_KID = 0x4B49,
    RX_RNG_LATENT = 0x4C54,   /* 'LT': the latent stage's posterior draws, index = image number */
};

/* Dropout call number `call` (0, 1, ...) within training step `step`; up to 65536 calls a step. */
#define RX_DROPOUT_INDEX(step, call) ((uint64_t)(step) * 65536 + (uint64_t)(call))

/* RX_RNG_DATA's index, shared by its top two bits:
 *   bits 47, 46 clear      the loader's shuffle of an epoch: index = epoch
 *   RX_DATA_TRANSFORM      random transforms (data/transform.h): | epoch
 *   RX_DATA_SYNTHETIC      the synthetic data set: | split << 40 | image number */
#define RX_DATA_TRANSFORM (1ull << 47)
#define RX_DATA_SYNTHETIC (1ull << 46)

uint32_t rx_rng_u32(uint64_t seed, uint64_t stream, uint64_t index);   /* word `index` of the stream */
float    rx_rng_uniform1(uint64_t seed, uint64_t stream, uint64_t index);
void     rx_rng_uniform(uint64_t seed, uint64_t stream, uint64_t offset, float *out, int64_t n);
void     rx_rng_normal(uint64_t seed, uint64_t stream, uint64_t offset, float *out, int64_t n);
static inline float rx_u32_to_uniform(uint32_t u) { return ((float)(u >> 8) + 0.5f) * (1.0f / 16777216.0f); }

#endif
