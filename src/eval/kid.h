/* kid.h — Kernel Inception Distance (Bińkowski et al. 2018): the unbiased estimate of
 * the squared MMD between two feature sets under the polynomial kernel
 *     k(x, y) = (γ xᵀy + c)^degree,   defaults γ = 1/d, c = 1, degree = 3,
 * averaged over random subsets as torchmetrics' KernelInceptionDistance does
 * (subsets = 100, subset_size = 1000; here the size is capped by both set sizes):
 *     MMD² = [Σ_{i≠j} k(xi,xj) + Σ_{i≠j} k(yi,yj)] / (m(m-1)) − 2 Σ_{i,j} k(xi,yj) / m²
 * returning the mean and the population std (torch .std(unbiased=False)) over subsets.
 *
 * Subsets are reproducible: subset s of set `which` (0 = x, 1 = y) is the first m
 * entries of a partial Fisher–Yates shuffle of 0..n-1 whose j-th swap partner is
 *     j + ((u64)u * (n - j) >> 32),  u = rx_rng_u32(seed, RX_STREAM(RX_RNG_EVAL_KID, 2s + which), j)
 * so the draw depends on (seed, s, which, n, m) only; tests/fixtures/gen_fd.py
 * reimplements it. Kernel sums are computed in float64 (dsyrk / dgemm). */
#ifndef RX_EVAL_KID_H
#define RX_EVAL_KID_H

#include <stdint.h>
#include "core/status.h"

typedef struct rx_kid_options {
    int      subsets;      /* number of random subsets (100)                          */
    int      subset_size;  /* rows per subset (1000), capped by min(nx, ny)           */
    int      degree;       /* polynomial degree (3)                                   */
    double   gamma;        /* kernel scale; <= 0 means 1/d                            */
    double   coef;         /* kernel offset c (1)                                     */
    uint64_t seed;         /* Philox seed of the subset draws                         */
} rx_kid_options;

/* torchmetrics' defaults, seed 0. */
rx_kid_options rx_kid_defaults(void);

/* x [nx, d], y [ny, d] float32 row-major. *mean, *std over subsets (std may be NULL). */
rx_status rx_kid(const float *x, int64_t nx, const float *y, int64_t ny, int d,
                 const rx_kid_options *opt, double *mean, double *std);

/* The subset draw described above: idx [n] is scratch, its first m entries the subset. */
void rx_kid_subset(uint64_t seed, int subset, int which, int64_t n, int64_t m, int64_t *idx);

/* Unbiased MMD² of one pair of equal-size sets a [m, d], b [m, d] (float64), with the
 * kernel above; exposed for tests. Needs m >= 2. */
rx_status rx_kid_mmd2(const double *a, const double *b, int m, int d, int degree, double gamma,
                      double coef, double *out);

#endif
