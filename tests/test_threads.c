/* The CPU kernels use both cores. A regression guard, not a timing: the build links OpenBLAS's
 * OpenMP variant, where openblas_set_num_threads(n) is omp_set_num_threads(n); the dense
 * kernels once called it with 1 around every op, which left their own OpenMP teams one thread
 * wide: every conv2d ran on one core, halving training speed, and no numeric test could see it.
 *
 * Method: this executable defines cblas_sgemm, so the library's calls (linked statically) come
 * here first; each call records the OpenMP thread that made it and the team size, then forwards
 * to OpenBLAS's cblas_sgemm (dlsym RTLD_NEXT). With 2 threads and a batch of 4 images, conv2d
 * forward and backward must issue their per-image GEMMs from 2 different threads, and the
 * OpenMP and OpenBLAS thread counts must be what they were before the op. The probe sees the
 * reference conv kernel (im2col + sgemm, RUNEXP_CPU_CONV=reference); oneDNN's convolutions issue
 * no sgemm, and their test here checks the thread counts only. */
#include <cblas.h>
#include <dlfcn.h>
#include <omp.h>
#include "gradcheck.h"

int openblas_get_num_threads(void);

typedef void (*sgemm_fn)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE, const enum CBLAS_TRANSPOSE, const blasint,
                         const blasint, const blasint, const float, const float *, const blasint, const float *,
                         const blasint, const float, float *, const blasint);

static int calls_by_thread[8], widest_team;

void cblas_sgemm(const enum CBLAS_ORDER o, const enum CBLAS_TRANSPOSE ta, const enum CBLAS_TRANSPOSE tb, const blasint M,
                 const blasint N, const blasint K, const float alpha, const float *A, const blasint lda, const float *B,
                 const blasint ldb, const float beta, float *C, const blasint ldc) {
    static sgemm_fn real;
    #pragma omp critical(sgemm_probe)
    {
        if (!real) real = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
        const int t = omp_get_thread_num();
        if (t < 8) calls_by_thread[t]++;
        if (omp_get_num_threads() > widest_team) widest_team = omp_get_num_threads();
    }
    cr_assert(real, "cblas_sgemm not found after the probe: %s", dlerror());
    real(o, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void reset_probe(void) {
    memset(calls_by_thread, 0, sizeof calls_by_thread);
    widest_team = 0;
}

static void expect_two_threads(const char *what) {
    cr_expect(calls_by_thread[0] > 0 && calls_by_thread[1] > 0 && widest_team == 2,
              "%s: GEMM calls by thread 0 / 1 = %d / %d, widest team %d (want both threads of a team of 2)", what,
              calls_by_thread[0], calls_by_thread[1], widest_team);
}

Test(threads, conv2d_uses_the_whole_team_and_leaves_thread_counts_alone) {
    setenv("RUNEXP_CPU_CONV", "reference", 1);   /* read at the first conv; each test is its own process */
    omp_set_num_threads(2);
    const int omp_before = omp_get_max_threads(), blas_before = openblas_get_num_threads();
    rx_ctx *c = rx_test_cpu_ctx();
    /* the classifier's first stage: 4 images 48 -> 48 channels at 32x32, 3x3 */
    rx_tensor *x = rx_param(c, NULL, RX_SHAPE(4, 48, 32, 32), 1), *w = rx_param(c, NULL, RX_SHAPE(48, 48, 3, 3), 1);
    cr_assert(x && w, "%s", rx_last_error());
    rx_test_randn(c, x, 1, 1.0f);
    rx_test_randn(c, w, 2, 0.1f);

    reset_probe();
    rx_tensor *y = rx_conv2d(c, x, w, NULL, 1, 1);
    cr_assert(y, "%s", rx_last_error());
    expect_two_threads("conv2d forward");
    cr_expect_eq(omp_get_max_threads(), omp_before, "OpenMP threads after the forward: %d, before %d",
                 omp_get_max_threads(), omp_before);

    reset_probe();
    cr_assert_eq(rx_backward_with(c, y, rx_full(c, RX_SHAPE(4, 48, 32, 32), 1.0f)), RX_OK, "%s", rx_last_error());
    expect_two_threads("conv2d backward");
    cr_expect_eq(omp_get_max_threads(), omp_before, "OpenMP threads after the backward: %d, before %d",
                 omp_get_max_threads(), omp_before);
    cr_expect_eq(openblas_get_num_threads(), blas_before, "OpenBLAS threads after the op: %d, before %d",
                 openblas_get_num_threads(), blas_before);
    rx_ctx_destroy(c);
}

/* oneDNN runs its convolutions on our OpenMP pool (Debian's libdnnl uses libgomp): it must leave
 * the OpenMP and OpenBLAS thread counts as they were */
Test(threads, onednn_conv2d_leaves_thread_counts_alone) {
#ifndef RX_HAVE_ONEDNN
    cr_skip_test("built without oneDNN (libdnnl-dev; `make deps` installs it)");
#endif
    setenv("RUNEXP_CPU_CONV", "onednn", 1);
    omp_set_num_threads(2);
    const int omp_before = omp_get_max_threads(), blas_before = openblas_get_num_threads();
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = rx_param(c, NULL, RX_SHAPE(4, 48, 32, 32), 1), *w = rx_param(c, NULL, RX_SHAPE(48, 48, 3, 3), 1);
    cr_assert(x && w, "%s", rx_last_error());
    rx_test_randn(c, x, 1, 1.0f);
    rx_test_randn(c, w, 2, 0.1f);
    rx_tensor *y = rx_conv2d(c, x, w, NULL, 1, 1);
    cr_assert(y, "%s", rx_last_error());
    cr_assert_eq(rx_backward_with(c, y, rx_full(c, RX_SHAPE(4, 48, 32, 32), 1.0f)), RX_OK, "%s", rx_last_error());
    cr_expect_eq(omp_get_max_threads(), omp_before, "OpenMP threads after oneDNN's conv: %d, before %d",
                 omp_get_max_threads(), omp_before);
    cr_expect_eq(openblas_get_num_threads(), blas_before, "OpenBLAS threads after oneDNN's conv: %d, before %d",
                 openblas_get_num_threads(), blas_before);
    rx_ctx_destroy(c);
}
