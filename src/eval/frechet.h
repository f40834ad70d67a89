/* frechet.h — Fréchet distance between two Gaussians fitted to feature sets.
 *
 *     FD = ‖μ1 − μ2‖² + Tr(Σ1) + Tr(Σ2) − 2 Tr((Σ1 Σ2)^½)
 *
 * (Dowson & Landau 1982; the FID of Heusel et al. 2017 when the features are those of
 * the FID Inception network.) pytorch-fid takes scipy.linalg.sqrtm of the non-symmetric
 * product Σ1Σ2; here the trace term comes from a symmetric eigenproblem instead:
 * for any factor Σ1 = W Wᵀ, Σ1Σ2 = W (Wᵀ Σ2) has the nonzero eigenvalues of Wᵀ Σ2 W, so
 *     Tr((Σ1Σ2)^½) = Σ_i √λ_i(Wᵀ Σ2 W),
 * the same eigenvalues as Σ1^½ Σ2 Σ1^½ (W = Σ1^½ is one such factor). We take W from a
 * pivoted Cholesky factorisation (LAPACK dpstrf, rank-revealing: a singular Σ1 with
 * n < d gives a factor of rank r < d and an r x r eigenproblem), form Wᵀ Σ2 W with
 * dsygst (level 3, exploits the symmetry) and take its eigenvalues with dsyevd; tiny
 * negative eigenvalues (rounding) are clamped to 0.
 * Why not Σ1^½ from dsyevd: at d = 2048 the eigenvectors alone take over a second on
 * two cores (this path: ~0.8 s in all), and on rank-deficient covariances the d − r
 * rounding-level eigenvalues of Σ1^½ add spurious √ε-sized terms: on the test fixture
 * (rank <= 20, d = 2048) scipy's sqrtm and numpy's eigh are ~3e-7 off the exact value,
 * this path 3e-9. */
#ifndef RX_EVAL_FRECHET_H
#define RX_EVAL_FRECHET_H

#include "core/status.h"
#include "eval/featstats.h"

/* The three parts of the distance, for reports and debugging. */
typedef struct rx_frechet_terms {
    double mean_term;       /* ‖μ1 − μ2‖²           */
    double trace1, trace2;  /* Tr Σ1, Tr Σ2          */
    double trace_sqrt;      /* Tr((Σ1 Σ2)^½)         */
} rx_frechet_terms;

/* mu1, mu2 [d]; sigma1, sigma2 [d,d] symmetric row-major (only read, both triangles
 * assumed equal). *out = the distance; terms may be NULL. */
rx_status rx_frechet_distance(int d, const double *mu1, const double *sigma1, const double *mu2,
                              const double *sigma2, double *out, rx_frechet_terms *terms);

/* The same between two finished rx_featstats of equal dimension. */
rx_status rx_featstats_frechet(const rx_featstats *a, const rx_featstats *b, double *out);

#endif
