/* test_cuda_util.c — the CUDA backend's utilities (fill, axpy, sum of squares, fused AdamW, EMA),
 * its Philox stream, and its context, against the CPU backend (backend_cpu.c) and core/philox.c.
 * References: the CPU backend's functions on the same data (AdamW there follows
 * torch.optim.AdamW, tests/test_optim.c); Philox words must be bit-identical. */
#include "cuda_parity.h"

enum { N_UTIL = 100003 };   /* odd: not a multiple of any block size */

static float *randn_host(int64_t n, uint64_t seed, float scale) {
    float *h = malloc((size_t)n * sizeof *h);
    cr_assert(h);
    rx_rng_normal(seed, RX_STREAM(RX_RNG_TEST, 7), 0, h, n);
    for (int64_t i = 0; i < n; i++) h[i] *= scale;
    return h;
}

/* a device buffer holding host values (a tensor in the persistent arena) */
static rx_tensor *upload(rx_ctx *c, const float *h, int64_t n) {
    rx_tensor *t = rx_param(c, NULL, 1, &n, 0);
    cr_assert(t, "%s", rx_last_error());
    cr_assert_eq(rx_tensor_from_host(c, t, h), RX_OK, "%s", rx_last_error());
    return t;
}

static void download(rx_ctx *c, const rx_tensor *t, float *h) {
    cr_assert_eq(rx_tensor_to_host(c, t, h), RX_OK, "%s", rx_last_error());
}

Test(cuda_util, fill_axpy_sumsq_match_the_cpu) {
    px_pair p;
    px_open(&p, 0, 0);
    const int64_t n = N_UTIL;
    float *x = randn_host(n, 1, 1.0f), *y = randn_host(n, 2, 1.0f), *out[2];
    double ss[2];
    for (int b = 0; b < 2; b++) {
        rx_ctx *c = b ? p.gpu : p.cpu;
        rx_tensor *X = upload(c, x, n), *Y = upload(c, y, n), *F = upload(c, x, n);
        cr_assert_eq(c->be->axpy(c, Y->data, -0.75f, X->data, n), RX_OK, "%s", rx_last_error());
        cr_assert_eq(c->mem->fill(c, F->data + 5, 2.5f, n - 10), RX_OK, "%s", rx_last_error());
        cr_assert_eq(c->be->sumsq(c, Y->data, n, &ss[b]), RX_OK, "%s", rx_last_error());
        out[b] = malloc(2 * (size_t)n * sizeof(float));
        download(c, Y, out[b]);
        download(c, F, out[b] + n);
    }
    /* axpy and fill are exact elementwise formulas: equal up to one rounding of a fused multiply-add */
    cr_expect_leq(rx_rel_err(out[1], out[0], n), 1e-7, "axpy");
    cr_expect_eq(memcmp(out[1] + n, out[0] + n, (size_t)n * sizeof(float)), 0, "fill (and the untouched ends)");
    /* sumsq against a double sum of the same backend's y: the two backends' y differ by the axpy's
     * rounding (CUDA fuses the multiply-add), which moves a 1e5-term sum by ~1e-10 relative */
    for (int b = 0; b < 2; b++) {
        double ref = 0;
        for (int64_t i = 0; i < n; i++) ref += (double)out[b][i] * out[b][i];
        cr_expect_leq(fabs(ss[b] - ref) / ref, 1e-12, "sumsq (%s): %.17g, double sum on the host %.17g", b ? "cuda" : "cpu",
                      ss[b], ref);
    }
    free(x); free(y); free(out[0]); free(out[1]);
    px_close(&p);
}

/* torch.optim.AdamW semantics (backend.h): three steps with clipping scale and weight decay */
Test(cuda_util, adamw_and_ema_match_the_cpu) {
    px_pair p;
    px_open(&p, 0, 0);
    const int64_t n = N_UTIL;
    float *p0 = randn_host(n, 3, 0.5f), *res[2];
    for (int b = 0; b < 2; b++) {
        rx_ctx *c = b ? p.gpu : p.cpu;
        rx_tensor *P = upload(c, p0, n), *M = rx_param(c, NULL, 1, &n, 0), *V = rx_param(c, NULL, 1, &n, 0);
        rx_tensor *E = upload(c, p0, n);
        cr_assert(M && V);
        for (int step = 1; step <= 3; step++) {
            float *g = randn_host(n, 10 + (uint64_t)step, step == 2 ? 1e-3f : 1.0f);
            rx_tensor *G = upload(c, g, n);
            free(g);
            const rx_adamw_args a = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.05f,
                                     .grad_scale = step == 3 ? 0.25f : 1.0f, .step = step};
            cr_assert_eq(c->be->adamw(c, P->data, G->data, M->data, V->data, n, &a), RX_OK, "%s", rx_last_error());
            cr_assert_eq(c->be->ema(c, E->data, P->data, 0.9f, n), RX_OK, "%s", rx_last_error());
        }
        res[b] = malloc(4 * (size_t)n * sizeof(float));
        download(c, P, res[b]);
        download(c, M, res[b] + n);
        download(c, V, res[b] + 2 * n);
        download(c, E, res[b] + 3 * n);
    }
    const char *what[4] = {"params", "exp_avg", "exp_avg_sq", "ema"};
    for (int k = 0; k < 4; k++) {
        double e = rx_rel_err(res[1] + k * n, res[0] + k * n, n);
        cr_expect_leq(e, 1e-6, "%s: relative error %.3g", what[k], e);
    }
    free(p0); free(res[0]); free(res[1]);
    px_close(&p);
}

/* core/philox.c's stream (seed, stream, offset) reproduced on the device: words and uniforms
 * bit for bit, normals within one float rounding (double log/sin/cos of the device vs glibc) */
Test(cuda_util, philox_stream_matches_the_cpu) {
    px_pair p;
    px_open(&p, 0, 0);
    cr_assert(rx_cuda_rng_u32 && rx_cuda_rng_uniform && rx_cuda_rng_normal, "CUDA RNG entry points missing");
    const uint64_t seeds[] = {0, 1234567, 0xFEDCBA9876543210ull};
    const uint64_t streams[] = {0, RX_STREAM(RX_RNG_SAMPLE_NOISE, 5), RX_STREAM(RX_RNG_DROPOUT, RX_DROPOUT_INDEX(3, 1))};
    const int64_t n = 40001;   /* not a multiple of 4: a partial last block */
    float *want = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
    uint32_t *words = malloc((size_t)n * sizeof(uint32_t));
    rx_tensor *buf = rx_param(p.gpu, NULL, 1, &n, 0);
    cr_assert(want && got && words && buf);
    for (int s = 0; s < 3; s++)
        for (int t = 0; t < 3; t++) {
            const uint64_t offset = (uint64_t)(s + t) * 0x100000007ull;   /* block numbers past 2^32: the high counter word */
            cr_assert_eq(rx_cuda_rng_u32(p.gpu, seeds[s], streams[t], offset, (uint32_t *)buf->data, n), RX_OK, "%s",
                         rx_last_error());
            cr_assert_eq(rx_tensor_to_host(p.gpu, buf, (float *)words), RX_OK);
            int64_t bad = 0;
            for (int64_t j = 0; j < n; j++) bad += words[j] != rx_rng_u32(seeds[s], streams[t], offset * 4 + (uint64_t)j);
            cr_expect_eq(bad, 0, "seed %d stream %d: %lld words differ", s, t, (long long)bad);

            cr_assert_eq(rx_cuda_rng_uniform(p.gpu, seeds[s], streams[t], offset, buf->data, n), RX_OK);
            cr_assert_eq(rx_tensor_to_host(p.gpu, buf, got), RX_OK);
            rx_rng_uniform(seeds[s], streams[t], offset, want, n);
            cr_expect_eq(memcmp(got, want, (size_t)n * sizeof(float)), 0, "uniforms differ");

            cr_assert_eq(rx_cuda_rng_normal(p.gpu, seeds[s], streams[t], offset, buf->data, n), RX_OK);
            cr_assert_eq(rx_tensor_to_host(p.gpu, buf, got), RX_OK);
            rx_rng_normal(seeds[s], streams[t], offset, want, n);
            int64_t differ = 0;
            double worst = 0;
            for (int64_t j = 0; j < n; j++) {
                const double d = fabs((double)got[j] - want[j]), ulp = nextafterf(fabsf(want[j]), INFINITY) - fabsf(want[j]);
                differ += got[j] != want[j];
                if (d / ulp > worst) worst = d / ulp;
            }
            cr_expect_leq(worst, 1.0, "normals: worst difference %.2f float ulps", worst);
            cr_expect_leq(differ, n / 1000, "normals: %lld of %lld differ (expected: none or a few)", (long long)differ,
                          (long long)n);
        }
    free(want); free(got); free(words);
    px_close(&p);
}

/* the context: a wrong device id is an error with a message, memory figures are readable */
Test(cuda_util, context_open_errors_and_memory_info) {
    RX_CUDA_REQUIRE();
    const rx_backend *be = NULL;
    void *state = NULL;
    const char *name = NULL;
    cr_expect_neq(rx_cuda_open(999, 0, 0, &be, &state, &name), RX_OK);
    cr_expect(strstr(rx_last_error(), "device_id 999"), "%s", rx_last_error());
    px_pair p;
    px_open(&p, 1, 1);
    cr_expect(p.device && p.device[0], "a device name");
    size_t scratch = 0, used = 0, total = 0;
    cr_assert(rx_cuda_memory_info);
    cr_expect_eq(rx_cuda_memory_info(p.gpu, &scratch, &used, &total), RX_OK, "%s", rx_last_error());
    cr_expect_gt(total, used);
    cr_expect_gt(used, 0);
    cr_expect_neq(rx_cuda_memory_info(p.cpu, NULL, NULL, NULL), RX_OK, "a CPU context is refused");
    cr_log_info("%s: %zu MiB of %zu MiB in use", p.device, used >> 20, total >> 20);
    px_close(&p);
}
