/* Fréchet distance.
 * References: pytorch-fid's calculate_frechet_distance (scipy.linalg.sqrtm of Σ1Σ2) on
 * fixture statistics (tests/fixtures/eval_fd_small.json, eval_fd_2048.json from
 * gen_fd.py): d = 16 full rank and rank-deficient (n = 10 < d); d = 2048 full-rank
 * covariances, rank-deficient features (n = 100, 120 < d, rank <= 20) and one of each.
 * Tolerance 1e-6 relative; for the rank-deficient features also 1e-8 against an exact
 * nuclear-norm form of the same distance (see gen_fd.py). Also closed forms: commuting (diagonal) covariances give
 * ‖Δμ‖² + Σ(√a_i − √b_i)², FD(P, P) = 0, Σ1 = 0 gives ‖Δμ‖² + Tr Σ2. */
#include "testutil.h"
#include "eval_fixture.h"

#include <jansson.h>

#include "eval/featstats.h"
#include "eval/frechet.h"

/* finished statistics of float32 rows */
static void stats_of(rx_featstats *st, const float *x, int n, int d) {
    cr_assert_eq(rx_featstats_init(st, d), RX_OK);
    cr_assert_eq(rx_featstats_add(st, x, n), RX_OK);
    cr_assert_eq(rx_featstats_finish(st), RX_OK, "%s", rx_last_error());
}

Test(eval_fd, small_d_vs_pytorch_fid) {
    json_t *j = load_fixture("eval_fd_small.json");
    const int d = (int)json_integer_value(json_object_get(j, "d"));
    json_t *sets = json_object_get(j, "sets");
    size_t i;
    json_t *pair;
    json_array_foreach(json_object_get(j, "pairs"), i, pair) {
        const char *kx = json_string_value(json_object_get(pair, "x")), *ky = json_string_value(json_object_get(pair, "y"));
        rx_featstats st[2];
        const char *keys[2] = {kx, ky};
        for (int s = 0; s < 2; s++) {
            json_t *set = json_object_get(sets, keys[s]);
            size_t nf;
            double *xd = json_doubles(json_object_get(set, "features"), &nf);
            float *x = malloc(nf * sizeof(float));
            for (size_t k = 0; k < nf; k++) x[k] = (float)xd[k];
            stats_of(&st[s], x, (int)(nf / d), d);
            free(xd);
            free(x);
        }
        double fd;
        cr_assert_eq(rx_featstats_frechet(&st[0], &st[1], &fd), RX_OK, "%s", rx_last_error());
        char what[64];
        snprintf(what, sizeof what, "FD(%s, %s) d=16", kx, ky);
        expect_close(fd, num(pair, "fd"), 1e-6, what);
        expect_close(fd, num(pair, "fd_eigh"), 1e-9, what);   // numpy eigh formulation, tighter
        rx_featstats_free(&st[0]);
        rx_featstats_free(&st[1]);
    }
    json_decref(j);
}

typedef struct {
    int d, r, rh;
    double *F, *H, *D1, *D2, *M1, *M2, *Z1, *Z2, *W2;
} fixture2048;

static json_t *load_2048(fixture2048 *f) {
    json_t *j = load_fixture("eval_fd_2048.json");
    size_t k;
    f->d = (int)num(j, "d");
    f->r = (int)num(j, "r");
    f->rh = (int)num(j, "rh");
    f->F = json_doubles(json_object_get(j, "F"), &k);
    f->H = json_doubles(json_object_get(j, "H"), &k);
    f->D1 = json_doubles(json_object_get(j, "D1"), &k);
    f->D2 = json_doubles(json_object_get(j, "D2"), &k);
    f->M1 = json_doubles(json_object_get(j, "M1"), &k);
    f->M2 = json_doubles(json_object_get(j, "M2"), &k);
    f->Z1 = json_doubles(json_object_get(j, "Z1"), &k);
    f->Z2 = json_doubles(json_object_get(j, "Z2"), &k);
    f->W2 = json_doubles(json_object_get(j, "W2"), &k);
    return j;
}

static void free_2048(fixture2048 *f) {
    free(f->F); free(f->H); free(f->D1); free(f->D2); free(f->M1); free(f->M2);
    free(f->Z1); free(f->Z2); free(f->W2);
}

/* x [n, d] = (Z [n, r] A [r, d] + W [n, rw] B [rw, d]) / 16 + offset: small integers, exact in float32 */
static float *factor_features(const fixture2048 *f, const double *Z, const double *W, int n, double offset) {
    const int d = f->d;
    float *x = malloc(sizeof(float) * (size_t)n * d);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++) {
            double s = 0;
            for (int q = 0; q < f->r; q++) s += Z[i * f->r + q] * f->F[(size_t)q * d + c];
            if (W)
                for (int q = 0; q < f->rh; q++) s += W[i * f->rh + q] * f->H[(size_t)q * d + c];
            x[(size_t)i * d + c] = (float)(s / 16.0 + offset);
        }
    return x;
}

/* Σ [d, d] = diag(D)/64 + Aᵀ A / scale, A [k, d] */
static double *factor_cov(const fixture2048 *f, const double *D, const double *A, int k, double scale) {
    const int d = f->d;
    double *S = calloc((size_t)d * d, sizeof(double));
    for (int q = 0; q < k; q++)
        for (int a = 0; a < d; a++)
            for (int b = 0; b < d; b++) S[(size_t)a * d + b] += A[(size_t)q * d + a] * A[(size_t)q * d + b] / scale;
    for (int a = 0; a < d; a++) S[(size_t)a * d + a] += D[a] / 64.0;
    return S;
}

Test(eval_fd, d2048_vs_pytorch_fid, .timeout = 600) {
    fixture2048 f;
    json_t *j = load_2048(&f);
    const int d = f.d;
    const int n1 = (int)num(j, "n1"), n2 = (int)num(j, "n2");

    // rank-deficient features on both sides: n < d, rank <= 16 and <= 20
    float *x1 = factor_features(&f, f.Z1, NULL, n1, 3.0);
    float *x2 = factor_features(&f, f.Z2, f.W2, n2, -1.0);
    rx_featstats s1, s2;
    stats_of(&s1, x1, n1, d);
    stats_of(&s2, x2, n2, d);
    double fd;
    cr_assert_eq(rx_featstats_frechet(&s1, &s2, &fd), RX_OK, "%s", rx_last_error());
    expect_close(fd, num(j, "fd_features"), 1e-6, "d=2048 rank-deficient features");
    expect_close(fd, num(j, "fd_features_eigh"), 1e-6, "d=2048 rank-deficient features (eigh)");
    // the nuclear-norm form on the 100 x 120 factor product has no noise eigenvalues:
    // here scipy's sqrtm and numpy's eigh of 2048 x 2048 matrices are both ~3e-7 off
    expect_close(fd, num(j, "fd_features_exact"), 1e-8, "d=2048 rank-deficient features (nuclear norm)");

    // full-rank covariances from the factors
    double *S1 = factor_cov(&f, f.D1, f.F, f.r, 1024.0);
    double *S2 = factor_cov(&f, f.D2, f.H, f.rh, 256.0);
    double *mu1 = malloc(sizeof(double) * d), *mu2 = malloc(sizeof(double) * d);
    for (int c = 0; c < d; c++) { mu1[c] = f.M1[c] / 8.0; mu2[c] = f.M2[c] / 8.0; }
    rx_frechet_terms t;
    cr_assert_eq(rx_frechet_distance(d, mu1, S1, mu2, S2, &fd, &t), RX_OK, "%s", rx_last_error());
    expect_close(fd, num(j, "fd_cov"), 1e-6, "d=2048 full-rank covariances");
    cr_expect_eq(fd, t.mean_term + t.trace1 + t.trace2 - 2 * t.trace_sqrt);

    // one side singular: full-rank S1 against the rank-16 covariance of x1
    cr_assert_eq(rx_frechet_distance(d, mu1, S1, s1.mean, s1.cov, &fd, NULL), RX_OK);
    expect_close(fd, num(j, "fd_mixed"), 1e-6, "d=2048 full rank vs rank-deficient");
    cr_assert_eq(rx_frechet_distance(d, s1.mean, s1.cov, mu1, S1, &fd, NULL), RX_OK);
    expect_close(fd, num(j, "fd_mixed"), 1e-6, "d=2048 rank-deficient vs full rank (swapped)");

    rx_featstats_free(&s1);
    rx_featstats_free(&s2);
    free(x1); free(x2); free(S1); free(S2); free(mu1); free(mu2);
    free_2048(&f);
    json_decref(j);
}

Test(eval_fd, commuting_covariances_closed_form) {
    // Σ1 = diag(a), Σ2 = diag(b): (Σ1Σ2)^½ = diag(√(ab)), FD = ‖Δμ‖² + Σ (√a − √b)²
    enum { D = 64 };
    double *S1 = calloc(D * D, sizeof(double)), *S2 = calloc(D * D, sizeof(double));
    double mu1[D], mu2[D], want = 0;
    for (int i = 0; i < D; i++) {
        const double a = 0.1 + i, b = 3.0 / (1 + i);
        S1[i * D + i] = a;
        S2[i * D + i] = b;
        mu1[i] = sin(i);
        mu2[i] = cos(i);
        want += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]) + (sqrt(a) - sqrt(b)) * (sqrt(a) - sqrt(b));
    }
    double fd;
    cr_assert_eq(rx_frechet_distance(D, mu1, S1, mu2, S2, &fd, NULL), RX_OK);
    expect_close(fd, want, 1e-12, "diagonal covariances");
    free(S1);
    free(S2);
}

Test(eval_fd, same_distribution_is_zero_and_symmetric) {
    json_t *j = load_fixture("eval_fd_small.json");
    const int d = (int)num(j, "d");
    json_t *set = json_object_get(json_object_get(j, "sets"), "a");
    size_t nm, nc;
    double *mean = json_doubles(json_object_get(set, "mean"), &nm);
    double *cov = json_doubles(json_object_get(set, "cov"), &nc);
    double fd;
    rx_frechet_terms t;
    cr_assert_eq(rx_frechet_distance(d, mean, cov, mean, cov, &fd, &t), RX_OK);
    cr_expect_lt(fabs(fd), 1e-12 * t.trace1, "FD(P, P) = %.3g", fd);
    // Σ1 = 0 (every eigenvalue clamped away): FD = ‖Δμ‖² + Tr Σ2
    double *zero = calloc((size_t)d * d, sizeof(double)), *mu0 = calloc(d, sizeof(double));
    cr_assert_eq(rx_frechet_distance(d, mu0, zero, mean, cov, &fd, &t), RX_OK);
    double want = t.mean_term + t.trace2;
    cr_expect_eq(t.trace_sqrt, 0.0);
    expect_close(fd, want, 1e-15, "zero covariance");
    // symmetry on the rank-deficient pair: the factor is taken from the first argument
    json_t *c = json_object_get(json_object_get(j, "sets"), "c");
    double *mc = json_doubles(json_object_get(c, "mean"), &nm);
    double *cc = json_doubles(json_object_get(c, "cov"), &nc);
    double fab, fba;
    cr_assert_eq(rx_frechet_distance(d, mean, cov, mc, cc, &fab, NULL), RX_OK);
    cr_assert_eq(rx_frechet_distance(d, mc, cc, mean, cov, &fba, NULL), RX_OK);
    expect_close(fab, fba, 1e-12, "FD(a, c) = FD(c, a)");
    free(mean); free(cov); free(zero); free(mu0); free(mc); free(cc);
    json_decref(j);
}

Test(eval_fd, errors) {
    double mu[2] = {0, 0}, cov[4] = {1, 0, 0, 1}, bad[4] = {1, 0, 0, NAN}, fd;
    cr_expect_eq(rx_frechet_distance(2, mu, cov, mu, bad, &fd, NULL), RX_ERR_NUMERIC);
    cr_expect_eq(rx_frechet_distance(0, mu, cov, mu, cov, &fd, NULL), RX_ERR_ARG);
    rx_featstats a, b;
    const float x[6] = {1, 2, 3, 4, 5, 7};
    stats_of(&a, x, 3, 2);
    stats_of(&b, x, 2, 3);
    cr_expect_eq(rx_featstats_frechet(&a, &b, &fd), RX_ERR_SHAPE);
    rx_featstats c;
    cr_assert_eq(rx_featstats_init(&c, 2), RX_OK);
    cr_expect_eq(rx_featstats_frechet(&a, &c, &fd), RX_ERR_ARG, "unfinished statistics");
    rx_featstats_free(&a);
    rx_featstats_free(&b);
    rx_featstats_free(&c);
}
