#include "eval/frechet.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK's Fortran entry points, as OpenBLAS exports them (it carries LAPACK). Calling them
 * directly, not through LAPACKE, keeps a second BLAS build (liblapacke -> liblapack ->
 * libblas, whichever the system's alternatives pick) out of the process. The trailing
 * size_t arguments are the hidden lengths of the character arguments (gfortran ABI). */
typedef int lapack_int;
void dpstrf_(const char *uplo, const lapack_int *n, double *a, const lapack_int *lda, lapack_int *piv, lapack_int *rank,
             const double *tol, double *work, lapack_int *info, size_t uplo_len);
void dsygst_(const lapack_int *itype, const char *uplo, const lapack_int *n, double *a, const lapack_int *lda,
             const double *b, const lapack_int *ldb, lapack_int *info, size_t uplo_len);
void dsyevd_(const char *jobz, const char *uplo, const lapack_int *n, double *a, const lapack_int *lda, double *w,
             double *work, const lapack_int *lwork, lapack_int *iwork, const lapack_int *liwork, lapack_int *info,
             size_t jobz_len, size_t uplo_len);

static int all_finite(const double *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* Tr((Σ1Σ2)^½). All matrices are symmetric, so row- and column-major storage coincide
 * and LAPACK is called column-major (no transposed copies). */
static rx_status trace_sqrt_product(int d, const double *sigma1, const double *sigma2, double *out) {
    const size_t dd = (size_t)d * d;
    rx_status s = RX_OK;
    double *L = malloc(dd * sizeof(double));           // [d,d] Σ1, then its pivoted Cholesky factor
    double *M = malloc(dd * sizeof(double));           // [d,d] Σ2(piv,piv), then Lᵀ Σ2(piv,piv) L
    double *lambda = malloc((size_t)d * sizeof(double));
    lapack_int *piv = malloc((size_t)d * sizeof(lapack_int));
    if (!L || !M || !lambda || !piv) { s = rx_fail(RX_ERR_OOM, "frechet: out of memory (d=%d)", d); goto done; }

    // Σ1(piv,piv) = L Lᵀ, L lower with r nonzero columns. tol = 0: keep every positive
    // pivot, like clamping only the negative eigenvalues in an eigendecomposition.
    memcpy(L, sigma1, dd * sizeof(double));
    lapack_int rank = 0, info = 0, n = d, r_ = 0, itype = 2;
    const double tol = 0.0;
    double *work = malloc((size_t)2 * d * sizeof(double));
    if (!work) { s = rx_fail(RX_ERR_OOM, "frechet: out of memory (d=%d)", d); goto done; }
    dpstrf_("L", &n, L, &n, piv, &rank, &tol, work, &info, 1);
    free(work);
    if (info < 0) { s = rx_fail(RX_ERR_INTERNAL, "frechet: dpstrf argument %d invalid", (int)-info); goto done; }
    const int r = (int)rank;   // info == 1 only says r < d: the singular case we allow
    *out = 0;
    if (r == 0) goto done;     // Σ1 = 0: the trace term is 0
    // columns r.. of the factor are not part of it (dpstrf leaves the Schur complement there)
    for (int j = r; j < d; j++) memset(L + (size_t)j * d + j, 0, (size_t)(d - j) * sizeof(double));

    // M = Σ2(piv,piv) (LAPACK pivots are 1-based): W = P L factors Σ1, Wᵀ Σ2 W = Lᵀ M L
    for (int j = 0; j < d; j++) {
        const double *col = sigma2 + (size_t)(piv[j] - 1) * d;
        for (int i = 0; i < d; i++) M[(size_t)j * d + i] = col[piv[i] - 1];
    }
    dsygst_(&itype, "L", &n, M, &n, L, &n, &info, 1);   // M = Lᵀ M L (lower triangle)
    if (info != 0) { s = rx_fail(RX_ERR_NUMERIC, "frechet: dsygst failed, info=%d", (int)info); goto done; }
    // rows/columns r.. of Lᵀ M L are exactly zero: the eigenproblem is the leading r x r block
    r_ = r;
    {   /* workspace query, then the eigenvalues */
        double wq;
        lapack_int iwq, lw = -1, liw = -1;
        dsyevd_("N", "L", &r_, M, &n, lambda, &wq, &lw, &iwq, &liw, &info, 1, 1);
        lw = (lapack_int)wq;
        liw = iwq;
        double *w = malloc((size_t)(lw > 1 ? lw : 1) * sizeof(double));
        lapack_int *iw = malloc((size_t)(liw > 1 ? liw : 1) * sizeof(lapack_int));
        if (!w || !iw) info = -1000;
        else dsyevd_("N", "L", &r_, M, &n, lambda, w, &lw, iw, &liw, &info, 1, 1);
        free(w);
        free(iw);
        if (info == -1000) { s = rx_fail(RX_ERR_OOM, "frechet: out of memory (d=%d)", d); goto done; }
    }
    if (info != 0) { s = rx_fail(RX_ERR_NUMERIC, "frechet: dsyevd failed to converge, info=%d", (int)info); goto done; }
    // eigenvalues of a PSD matrix: tiny negatives are rounding, clamp them to 0
    double sum = 0;
    for (int k = 0; k < r; k++) sum += lambda[k] > 0 ? sqrt(lambda[k]) : 0.0;
    *out = sum;
done:
    free(L);
    free(M);
    free(lambda);
    free(piv);
    return s;
}

rx_status rx_frechet_distance(int d, const double *mu1, const double *sigma1, const double *mu2,
                              const double *sigma2, double *out, rx_frechet_terms *terms) {
    if (d < 1) return rx_fail(RX_ERR_ARG, "frechet: dimension %d < 1", d);
    const size_t dd = (size_t)d * d;
    if (!all_finite(mu1, d) || !all_finite(mu2, d) || !all_finite(sigma1, dd) || !all_finite(sigma2, dd))
        return rx_fail(RX_ERR_NUMERIC, "frechet: non-finite mean or covariance");

    rx_frechet_terms t = {0};
    for (int i = 0; i < d; i++) {
        const double diff = mu1[i] - mu2[i];
        t.mean_term += diff * diff;
        t.trace1 += sigma1[(size_t)i * d + i];
        t.trace2 += sigma2[(size_t)i * d + i];
    }
    RX_TRY(trace_sqrt_product(d, sigma1, sigma2, &t.trace_sqrt));
    *out = t.mean_term + t.trace1 + t.trace2 - 2.0 * t.trace_sqrt;
    if (terms) *terms = t;
    return RX_OK;
}

rx_status rx_featstats_frechet(const rx_featstats *a, const rx_featstats *b, double *out) {
    if (!a->finished || !b->finished) return rx_fail(RX_ERR_ARG, "frechet: statistics are not finished");
    if (a->d != b->d)
        return rx_fail(RX_ERR_SHAPE, "frechet: feature dimensions differ (%d vs %d)", a->d, b->d);
    return rx_frechet_distance(a->d, a->mean, a->cov, b->mean, b->cov, out, NULL);
}
