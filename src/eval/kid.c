#include "eval/kid.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#include "core/philox.h"

rx_kid_options rx_kid_defaults(void) {
    return (rx_kid_options){.subsets = 100, .subset_size = 1000, .degree = 3, .gamma = 0, .coef = 1, .seed = 0};
}

void rx_kid_subset(uint64_t seed, int subset, int which, int64_t n, int64_t m, int64_t *idx) {
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    const uint64_t stream = RX_STREAM(RX_RNG_EVAL_KID, 2 * (uint64_t)subset + (uint64_t)which);
    for (int64_t j = 0; j < m; j++) {
        // partner uniform in [j, n): multiply-shift maps a 32-bit word onto n - j values
        const uint64_t u = rx_rng_u32(seed, stream, (uint64_t)j);
        const int64_t r = j + (int64_t)((u * (uint64_t)(n - j)) >> 32);
        const int64_t t = idx[j];
        idx[j] = idx[r];
        idx[r] = t;
    }
}

static inline double poly_kernel(double dot, int degree, double gamma, double coef) {
    const double base = gamma * dot + coef;
    double k = 1;
    for (int p = 0; p < degree; p++) k *= base;
    return k;
}

/* Σ_{i≠j} k(a_i, a_j) from the upper triangle of G = A Aᵀ [m,m] (G overwritten). */
static double offdiag_kernel_sum(const double *a, int m, int d, int degree, double gamma, double coef, double *G) {
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, m, d, 1.0, a, d, 0.0, G, m);
    double s = 0;
    for (int i = 0; i < m; i++)
        for (int j = i + 1; j < m; j++) s += poly_kernel(G[(size_t)i * m + j], degree, gamma, coef);
    return 2 * s;
}

/* workspace G [m, m] */
static double mmd2_unbiased(const double *a, const double *b, int m, int d, int degree, double gamma, double coef,
                            double *G) {
    const double sxx = offdiag_kernel_sum(a, m, d, degree, gamma, coef, G);
    const double syy = offdiag_kernel_sum(b, m, d, degree, gamma, coef, G);
    // G = A Bᵀ: every cross pair
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, m, d, 1.0, a, d, b, d, 0.0, G, m);
    double sxy = 0;
    for (size_t i = 0; i < (size_t)m * m; i++) sxy += poly_kernel(G[i], degree, gamma, coef);
    const double mm = (double)m;
    return (sxx + syy) / (mm * (mm - 1)) - 2 * sxy / (mm * mm);
}

rx_status rx_kid_mmd2(const double *a, const double *b, int m, int d, int degree, double gamma, double coef,
                      double *out) {
    if (m < 2 || d < 1) return rx_fail(RX_ERR_ARG, "kid: need m >= 2 rows and d >= 1 (m=%d, d=%d)", m, d);
    double *G = malloc((size_t)m * m * sizeof(double));
    if (!G) return rx_fail(RX_ERR_OOM, "kid: cannot allocate a %d x %d kernel matrix", m, m);
    *out = mmd2_unbiased(a, b, m, d, degree, gamma > 0 ? gamma : 1.0 / d, coef, G);
    free(G);
    return RX_OK;
}

/* rows idx[0..m) of x [n, d] as float64 */
static void gather(const float *x, int d, const int64_t *idx, int m, double *out) {
    for (int i = 0; i < m; i++) {
        const float *row = x + idx[i] * d;
        for (int j = 0; j < d; j++) out[(size_t)i * d + j] = row[j];
    }
}

rx_status rx_kid(const float *x, int64_t nx, const float *y, int64_t ny, int d, const rx_kid_options *opt,
                 double *mean, double *std) {
    if (d < 1) return rx_fail(RX_ERR_ARG, "kid: feature dimension %d < 1", d);
    if (opt->subsets < 1) return rx_fail(RX_ERR_ARG, "kid: subsets = %d, need >= 1", opt->subsets);
    if (opt->degree < 1) return rx_fail(RX_ERR_ARG, "kid: degree = %d, need >= 1", opt->degree);
    int64_t m64 = opt->subset_size;
    if (nx < m64) m64 = nx;
    if (ny < m64) m64 = ny;
    if (m64 < 2)
        return rx_fail(RX_ERR_ARG, "kid: subsets of %lld rows (subset_size %d, sets of %lld and %lld); need >= 2",
                       (long long)m64, opt->subset_size, (long long)nx, (long long)ny);
    const int m = (int)m64;
    for (int64_t i = 0; i < nx * d; i++)
        if (!isfinite(x[i])) return rx_fail(RX_ERR_NUMERIC, "kid: non-finite feature in the first set");
    for (int64_t i = 0; i < ny * d; i++)
        if (!isfinite(y[i])) return rx_fail(RX_ERR_NUMERIC, "kid: non-finite feature in the second set");

    const double gamma = opt->gamma > 0 ? opt->gamma : 1.0 / d;
    rx_status s = RX_OK;
    int64_t *idx = malloc((size_t)(nx > ny ? nx : ny) * sizeof(int64_t));
    double *a = malloc((size_t)m * d * sizeof(double));        // [m, d] subset of x
    double *b = malloc((size_t)m * d * sizeof(double));        // [m, d] subset of y
    double *G = malloc((size_t)m * m * sizeof(double));        // [m, m] Gram matrix
    double *scores = malloc((size_t)opt->subsets * sizeof(double));
    if (!idx || !a || !b || !G || !scores) {
        s = rx_fail(RX_ERR_OOM, "kid: out of memory (subset %d x %d)", m, d);
        goto done;
    }
    for (int k = 0; k < opt->subsets; k++) {
        rx_kid_subset(opt->seed, k, 0, nx, m, idx);
        gather(x, d, idx, m, a);
        rx_kid_subset(opt->seed, k, 1, ny, m, idx);
        gather(y, d, idx, m, b);
        scores[k] = mmd2_unbiased(a, b, m, d, opt->degree, gamma, opt->coef, G);
    }
    double mu = 0, var = 0;
    for (int k = 0; k < opt->subsets; k++) mu += scores[k];
    mu /= opt->subsets;
    for (int k = 0; k < opt->subsets; k++) var += (scores[k] - mu) * (scores[k] - mu);
    *mean = mu;
    if (std) *std = sqrt(var / opt->subsets);   // population std, as torchmetrics
done:
    free(idx);
    free(a);
    free(b);
    free(G);
    free(scores);
    return s;
}
