/* featstats.h — streaming feature statistics (mean and covariance in float64) and
 * their on-disk cache format.
 *
 * Features arrive in batches of float32 rows x [n, d]; 50,000 images never need to sit in
 * memory at once. The accumulator keeps, in float64,
 *     s     [d]     a shift (the first batch's mean), subtracted from every row,
 *     S1    [d]     Σ (x - s)
 *     S2    [d,d]   Σ (x - s)(x - s)ᵀ          (upper triangle, cblas_dsyrk)
 * and finish() turns them into
 *     mean = s + S1/n,   cov = (S2 - S1 S1ᵀ/n) / (n - 1)      (unbiased, like numpy.cov).
 * Shifting by a value close to the mean keeps S2 - S1 S1ᵀ/n from cancelling
 * catastrophically when the features have a large mean relative to their spread.
 *
 * The cache file records what the statistics are of (extractor, its weights hash,
 * dataset, split, n), so that a changed extractor or data set never reuses stale numbers. */
#ifndef RX_EVAL_FEATSTATS_H
#define RX_EVAL_FEATSTATS_H

#include <stddef.h>
#include <stdint.h>
#include "core/status.h"

#define RX_FEATSTATS_MAX_DIM 65536

/* Provenance recorded in the cache file header (NUL-terminated, NUL-padded on disk). */
typedef struct rx_featstats_meta {
    char extractor[64];        /* e.g. "cifar10_classifier", "inception_fid"      */
    char extractor_hash[128];  /* hash of the extractor's weights (hex text)        */
    char dataset[64];          /* e.g. "cifar10"                                    */
    char dataset_hash[128];    /* hash of the data the statistics were taken over   */
    char split[32];            /* e.g. "train", "test"                              */
} rx_featstats_meta;

typedef struct rx_featstats {
    int      d;
    int64_t  n;                /* rows seen so far                                  */
    int      finished;         /* mean/cov are valid; no more rows may be added     */
    rx_featstats_meta meta;
    /* accumulator (NULL after load) */
    double  *shift;            /* [d]                                               */
    double  *sum;              /* [d]    Σ (x - shift)                              */
    double  *sumsq;            /* [d,d]  Σ (x - shift)(x - shift)ᵀ, upper triangle  */
    double  *block;            /* [block_rows, d] float64 copy of a chunk of rows   */
    int      block_rows;
    /* result (valid when finished) */
    double  *mean;             /* [d]                                               */
    double  *cov;              /* [d,d] full symmetric, row-major                   */
} rx_featstats;

/* Allocate an empty accumulator for d-dimensional features. */
rx_status rx_featstats_init(rx_featstats *st, int d);
/* Accumulate rows feats [n, d] (row-major float32). n may be 0. */
rx_status rx_featstats_add(rx_featstats *st, const float *feats, int64_t n);
/* Compute mean [d] and covariance [d,d] (ddof = 1). Needs n >= 2. Idempotent. */
rx_status rx_featstats_finish(rx_featstats *st);
/* Free every buffer; the struct is zeroed. Safe on a zeroed struct. */
void      rx_featstats_free(rx_featstats *st);

/* Set provenance fields (any may be NULL = leave unchanged). Fails if one is too long. */
rx_status rx_featstats_set_meta(rx_featstats *st, const char *extractor, const char *extractor_hash,
                                const char *dataset, const char *dataset_hash, const char *split);

/* Reference-statistics cache.
 * rx_featstats_cache_name: the file name for statistics of (meta, n), e.g.
 *   "cifar10-train-cifar10_classifier-n50000-3fa2c1d09b7e5a44.rxstats"
 * where the hex is XXH64 over every meta field and n: a changed extractor or data hash
 * gives a different name, so a stale file is never even opened. Characters outside
 * [A-Za-z0-9._-] in the readable part become '_'.
 * rx_featstats_check_meta: after loading, confirm the file is what was asked for
 * (every meta field, n, d); RX_ERR_FORMAT naming the first difference otherwise. */
rx_status rx_featstats_cache_name(const rx_featstats_meta *meta, int64_t n, char *out, size_t len);
rx_status rx_featstats_check_meta(const rx_featstats *st, const rx_featstats_meta *want, int64_t n, int d);

/* Save finished statistics atomically (rx_fs_write_atomic). Format (little-endian):
 *   "RXFSTATS" u32 version=1, u32 d, u64 n, meta (64+128+64+128+32 bytes, NUL-padded),
 *   f64 mean[d], f64 cov upper triangle row by row [d(d+1)/2], u64 XXH64 of all bytes before it. */
rx_status rx_featstats_save(const rx_featstats *st, const char *path);
/* Load statistics saved by rx_featstats_save into *st (finished, no accumulator).
 * Refuses (RX_ERR_FORMAT) a wrong magic/version, a truncated or oversized file, a bad
 * checksum, unterminated strings or non-finite values; RX_ERR_IO when unreadable. */
rx_status rx_featstats_load(rx_featstats *st, const char *path);

#endif
