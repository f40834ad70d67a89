/* bench/fd.c — Fréchet distance at d = 2048 (target: under a second) and streaming
 * 50,000 x 2048 features through the float64 mean/covariance accumulator.
 *
 *     make build/bench/fd && ./build/bench/fd [n_stream] [--kid]
 *
 * --kid also times KID with torchmetrics' defaults (100 subsets of 1000) on the two
 * 5000-row sets (float64 Gram matrices: ~0.8 TFLOP at d = 2048, tens of seconds on 2 cores).
 *
 * Covariances come from n = 5000 Philox-normal feature rows with correlated columns
 * (x_j = a_j z_j + 0.5 z_{j+1}), so both are full rank and far from diagonal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/philox.h"
#include "eval/featstats.h"
#include "eval/frechet.h"
#include "eval/kid.h"
#include "clock.h"

enum { D = 2048, N_COV = 5000, CHUNK = 1000 };

/* rows [CHUNK, D] of set `set`, chunk `c` */
static void make_features(float *x, float *z, int set, int c) {
    rx_rng_normal(set + 1, RX_STREAM(RX_RNG_TEST, c), 0, z, (int64_t)CHUNK * D);
    for (int r = 0; r < CHUNK; r++)
        for (int j = 0; j < D; j++) {
            const float a = 1.0f + (float)((j * 7 + set * 3) % 11) / 10.0f;
            x[(size_t)r * D + j] = a * z[(size_t)r * D + j] + 0.5f * z[(size_t)r * D + (j + 1) % D] + 0.1f * set;
        }
}

static int check(rx_status s, const char *what) {
    if (s != RX_OK) fprintf(stderr, "%s: %s\n", what, rx_last_error());
    return s != RX_OK;
}

int main(int argc, char **argv) {
    long n_stream = 50000;
    int with_kid = 0;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--kid")) with_kid = 1;
        else n_stream = atol(argv[a]);
    }
    float *x = malloc(sizeof(float) * CHUNK * D), *z = malloc(sizeof(float) * CHUNK * D);
    if (!x || !z) return 1;

    rx_featstats st[2];
    for (int set = 0; set < 2; set++) {
        if (check(rx_featstats_init(&st[set], D), "init")) return 1;
        for (int c = 0; c < N_COV / CHUNK; c++) {
            make_features(x, z, set, c);
            if (check(rx_featstats_add(&st[set], x, CHUNK), "add")) return 1;
        }
        if (check(rx_featstats_finish(&st[set]), "finish")) return 1;
    }

    double fd = 0, best = 1e30, best_cpu = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_s(), c0 = cpu_s();
        if (check(rx_featstats_frechet(&st[0], &st[1], &fd), "frechet")) return 1;
        double t = now_s() - t0, c = cpu_s() - c0;
        if (t < best) best = t;
        if (c < best_cpu) best_cpu = c;
    }
    printf("frechet distance d=%d (covariances from n=%d): %.3f s wall, %.3f s CPU (best of 5), fd=%.6f\n", D, N_COV,
           best, best_cpu, fd);

    if (with_kid) {
        float *xs[2];
        for (int set = 0; set < 2; set++) {
            xs[set] = malloc(sizeof(float) * N_COV * D);
            if (!xs[set]) return 1;
            for (int c = 0; c < N_COV / CHUNK; c++) make_features(xs[set] + (size_t)c * CHUNK * D, z, set, c);
        }
        rx_kid_options o = rx_kid_defaults();
        double mean, std, t0 = now_s(), c0 = cpu_s();
        if (check(rx_kid(xs[0], N_COV, xs[1], N_COV, D, &o, &mean, &std), "kid")) return 1;
        printf("kid d=%d, %d subsets of %d: %.3f s wall, %.3f s CPU, kid=%.6g +- %.3g\n", D, o.subsets,
               o.subset_size, now_s() - t0, cpu_s() - c0, mean, std);
        free(xs[0]);
        free(xs[1]);
    }

    // streaming: one chunk of rows fed repeatedly, so feature generation is not timed
    rx_featstats acc;
    if (check(rx_featstats_init(&acc, D), "init")) return 1;
    make_features(x, z, 0, 0);
    double t0 = now_s(), c0 = cpu_s();
    for (long done = 0; done < n_stream; done += CHUNK) {
        const int rows = (int)(n_stream - done < CHUNK ? n_stream - done : CHUNK);
        if (check(rx_featstats_add(&acc, x, rows), "add")) return 1;
    }
    if (check(rx_featstats_finish(&acc), "finish")) return 1;
    double t = now_s() - t0, c = cpu_s() - c0;
    printf("streaming mean/cov: %ld x %d features in %.3f s wall, %.3f s CPU (%.0f rows/s, %.1f GFLOP/s in dsyrk)\n",
           n_stream, D, t, c, n_stream / t, (double)n_stream * D * D / t * 1e-9);

    rx_featstats_free(&acc);
    rx_featstats_free(&st[0]);
    rx_featstats_free(&st[1]);
    free(x);
    free(z);
    return 0;
}
