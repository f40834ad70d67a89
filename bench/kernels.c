/* bench/kernels.c — CPU kernel throughput against the machine's own ceilings, measured in the
 * same run: OpenBLAS sgemm GFLOP/s (2048³) for the GEMM-backed ops, and copy bandwidth
 * (GB/s counting read + write, 256 MiB buffers, all threads) for the memory-bound ops.
 *
 *     make bench && ./build/bench/kernels [repeats] [--best] [op]   (default 7 repeats after 2 warm-ups)
 *
 * `op` (e.g. attention) times that op's rows only, after the two ceilings.
 * Each number is the median over the repeats (--best: the fastest repeat, for a machine that
 * other jobs share; the run prints the share of the cores it got). Forward = the op call (grad on, as in
 * training); backward = the op's backward kernel alone, with out->grad given and every input
 * requiring grad. Before each timed call the caches are flushed (a 64 MiB sweep), so the
 * memory-bound ops read from DRAM as the copy does.
 * Work counted: GEMM ops 2·M·N·K per GEMM (conv2d fwd 2·B·Co·Ci·kh·kw·Ho·Wo, bwd twice that
 * for grad x + grad w); memory-bound ops their compulsory traffic in bytes (every input read
 * once, every output written once, a gradient that is added into read and written). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/philox.h"
#include "kernels/ops.h"
#include "clock.h"

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { WARMUP = 2, MAX_REPEATS = 64 };
static int g_repeats = 7, g_best = 0;
static const char *g_only;   /* time only the rows of this op */

/* the median of the repeats, or the fastest with --best */
static double median(double *t, int n) {
    qsort(t, n, sizeof *t, cmp_double);
    if (g_best) return t[0];
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* evicts the op's tensors from every cache level (L3 here is 32 MiB) */
static float *g_flush;
static const int64_t FLUSH_N = 16 << 20;   /* 64 MiB */
static void flush_caches(void) {
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < FLUSH_N; i++) g_flush[i] += 1.0f;
}

/* ---- the ceilings ----------------------------------------------------------------------- */

static double bench_sgemm(void) {
    const int n = 2048;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    if (!a || !b || !c) { fprintf(stderr, "out of memory\n"); exit(1); }
    rx_rng_normal(1, 1, 0, a, (int64_t)n * n);
    rx_rng_normal(1, 2, 0, b, (int64_t)n * n);
    double t[MAX_REPEATS];
    for (int r = -WARMUP; r < g_repeats; r++) {
        const double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        if (r >= 0) t[r] = now_s() - t0;
    }
    free(a); free(b); free(c);
    return 2.0 * n * n * n / median(t, g_repeats) / 1e9;
}

static double bench_copy(void) {
    const int64_t n = 64 << 20;   /* 256 MiB each */
    float *src = malloc(sizeof(float) * n), *dst = malloc(sizeof(float) * n);
    if (!src || !dst) { fprintf(stderr, "out of memory\n"); exit(1); }
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) { src[i] = (float)i; dst[i] = 0.0f; }   /* first touch by the copying thread */
    double t[MAX_REPEATS];
    for (int r = -WARMUP; r < g_repeats; r++) {
        const double t0 = now_s();
        #pragma omp parallel
        {   /* each thread memcpy's its static share */
            const int nt = omp_get_num_threads(), id = omp_get_thread_num();
            const int64_t lo = n * id / nt, hi = n * (id + 1) / nt;
            memcpy(dst + lo, src + lo, sizeof(float) * (hi - lo));
        }
        if (r >= 0) t[r] = now_s() - t0;
    }
    free(src); free(dst);
    return 2.0 * sizeof(float) * n / median(t, g_repeats) / 1e9;
}

/* ---- the ops ------------------------------------------------------------------------------ */

typedef struct bench_case bench_case;
struct bench_case {
    const char *name;
    int op;              /* RX_OP_*: without a CPU kernel the row says TODO */
    int64_t a[8];        /* sizes; meaning per op, see the make_* function */
    /* makes the inputs (persistent, requiring grad); writes the shape text and the work per call */
    void (*make)(rx_ctx *c, const bench_case *k, rx_tensor **in, char *shape, size_t len, double *fwd, double *bwd);
    rx_tensor *(*run)(rx_ctx *c, const bench_case *k, rx_tensor **in);
    int memory_bound;    /* work in bytes (else flops) */
    const char *note;
};

static rx_tensor *input(rx_ctx *c, int ndim, const int64_t *shape, uint64_t seed) {
    rx_tensor *t = rx_param(c, NULL, ndim, shape, 1);
    if (!t) return NULL;
    float *h = malloc(sizeof(float) * t->numel);
    if (!h) return NULL;
    rx_rng_normal(seed, 3, 0, h, t->numel);
    rx_tensor_from_host(c, t, h);
    free(h);
    return t;
}

/* conv2d: a = {B, Ci, H, W, Co, k, stride, pad} */
static void make_conv(rx_ctx *c, const bench_case *k, rx_tensor **in, char *s, size_t len, double *fwd, double *bwd) {
    const int64_t *a = k->a, Ho = (a[2] + 2 * a[7] - a[5]) / a[6] + 1, Wo = (a[3] + 2 * a[7] - a[5]) / a[6] + 1;
    in[0] = input(c, RX_SHAPE(a[0], a[1], a[2], a[3]), 1);
    in[1] = input(c, RX_SHAPE(a[4], a[1], a[5], a[5]), 2);
    in[2] = input(c, RX_SHAPE(a[4]), 3);
    snprintf(s, len, "B=%lld %lld->%lld %lldx%lld k%lld s%lld", (long long)a[0], (long long)a[1], (long long)a[4],
             (long long)a[2], (long long)a[3], (long long)a[5], (long long)a[6]);
    *fwd = 2.0 * a[0] * a[4] * a[1] * a[5] * a[5] * Ho * Wo;
    *bwd = 2 * *fwd;
}
static rx_tensor *run_conv(rx_ctx *c, const bench_case *k, rx_tensor **in) {
    return rx_conv2d(c, in[0], in[1], in[2], (int)k->a[6], (int)k->a[7]);
}

/* linear: a = {B, N, in, out}: x [B,N,in] */
static void make_linear(rx_ctx *c, const bench_case *k, rx_tensor **in, char *s, size_t len, double *fwd, double *bwd) {
    const int64_t *a = k->a;
    in[0] = input(c, RX_SHAPE(a[0], a[1], a[2]), 1);
    in[1] = input(c, RX_SHAPE(a[3], a[2]), 2);
    in[2] = input(c, RX_SHAPE(a[3]), 3);
    snprintf(s, len, "[%lld,%lld,%lld] -> %lld", (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3]);
    *fwd = 2.0 * a[0] * a[1] * a[2] * a[3];
    *bwd = 2 * *fwd;
}
static rx_tensor *run_linear(rx_ctx *c, const bench_case *k, rx_tensor **in) { return rx_linear(c, in[0], in[1], in[2]); }

/* matmul: a = {B, H, M, K, N, trans_b}: a [B,H,M,K] · b [B,H,K,N] (b stored [B,H,N,K] when trans_b) */
static void make_matmul(rx_ctx *c, const bench_case *k, rx_tensor **in, char *s, size_t len, double *fwd, double *bwd) {
    const int64_t *a = k->a;
    in[0] = input(c, RX_SHAPE(a[0], a[1], a[2], a[3]), 1);
    in[1] = a[5] ? input(c, RX_SHAPE(a[0], a[1], a[4], a[3]), 2) : input(c, RX_SHAPE(a[0], a[1], a[3], a[4]), 2);
    snprintf(s, len, "[%lld,%lld,%lld,%lld]x[..,%lld,%lld]%s", (long long)a[0], (long long)a[1], (long long)a[2],
             (long long)a[3], (long long)a[3], (long long)a[4], a[5] ? " (b^T)" : "");
    *fwd = 2.0 * a[0] * a[1] * a[2] * a[3] * a[4];
    *bwd = 2 * *fwd;
}
static rx_tensor *run_matmul(rx_ctx *c, const bench_case *k, rx_tensor **in) {
    return rx_matmul(c, in[0], in[1], 0, (int)k->a[5]);
}

/* attention: a = {B, heads, N, D}; fwd = q kᵀ and P v, bwd = four GEMMs of the same size */
static void make_attention(rx_ctx *c, const bench_case *k, rx_tensor **in, char *s, size_t len, double *fwd,
                           double *bwd) {
    const int64_t *a = k->a;
    for (int j = 0; j < 3; j++) in[j] = input(c, RX_SHAPE(a[0], a[1], a[2], a[3]), 1 + j);
    snprintf(s, len, "B=%lld heads=%lld N=%lld D=%lld", (long long)a[0], (long long)a[1], (long long)a[2],
             (long long)a[3]);
    *fwd = 4.0 * a[0] * a[1] * a[2] * a[2] * a[3];
    *bwd = 2 * *fwd;
}
static rx_tensor *run_attention(rx_ctx *c, const bench_case *k, rx_tensor **in) {
    return rx_attention(c, in[0], in[1], in[2], 0.0f);
}

/* memory-bound ops on x [B,C,H,W]: a = {B, C, H, W, groups} */
static double nchw_bytes(const bench_case *k) { return 4.0 * k->a[0] * k->a[1] * k->a[2] * k->a[3]; }
static void nchw_shape(const bench_case *k, char *s, size_t len) {
    snprintf(s, len, "[%lld,%lld,%lld,%lld]", (long long)k->a[0], (long long)k->a[1], (long long)k->a[2],
             (long long)k->a[3]);
}

/* fwd: read x, write y; bwd: read x and gy, read + write gx */
static void make_unary(rx_ctx *c, const bench_case *k, rx_tensor **in, char *s, size_t len, double *fwd, double *bwd) {
    in[0] = input(c, RX_SHAPE(k->a[0], k->a[1], k->a[2], k->a[3]), 1);
    nchw_shape(k, s, len);
    *fwd = 2 * nchw_bytes(k);
    *bwd = 4 * nchw_bytes(k);
}
static rx_tensor *run_silu(rx_ctx *c, const bench_case *k, rx_tensor **in) { return rx_silu(c, in[0]); }

/* group_norm with affine [C]: traffic as a unary op (gamma/beta are negligible) */
static void make_group_norm(rx_ctx *c, const bench_case *k, rx_tensor **in, char *s, size_t len, double *fwd,
                            double *bwd) {
    make_unary(c, k, in, s, len, fwd, bwd);
    in[1] = input(c, RX_SHAPE(k->a[1]), 2);
    in[2] = input(c, RX_SHAPE(k->a[1]), 3);
    snprintf(s + strlen(s), len - strlen(s), " G=%lld", (long long)k->a[4]);
}
static rx_tensor *run_group_norm(rx_ctx *c, const bench_case *k, rx_tensor **in) {
    return rx_group_norm(c, in[0], in[1], in[2], (int)k->a[4], 1e-5f);
}

/* group_norm_silu (issue 16 §2) with affine [C] and the time-embedding shift [B,C]: traffic as a
 * unary op, as group_norm's row (compare with group_norm + silu + add, the chain it replaces) */
static void make_group_norm_silu(rx_ctx *c, const bench_case *k, rx_tensor **in, char *s, size_t len, double *fwd,
                                 double *bwd) {
    make_group_norm(c, k, in, s, len, fwd, bwd);
    in[3] = input(c, RX_SHAPE(k->a[0], k->a[1]), 4);
    snprintf(s + strlen(s), len - strlen(s), " + shift");
}
static rx_tensor *run_group_norm_silu(rx_ctx *c, const bench_case *k, rx_tensor **in) {
    return rx_group_norm_silu(c, in[0], in[1], in[2], in[3], (int)k->a[4], 1e-5f);
}

/* add of two same-shape tensors: fwd reads a, b, writes y; bwd reads gy, reads + writes ga and gb */
static void make_add(rx_ctx *c, const bench_case *k, rx_tensor **in, char *s, size_t len, double *fwd, double *bwd) {
    in[0] = input(c, RX_SHAPE(k->a[0], k->a[1], k->a[2], k->a[3]), 1);
    in[1] = input(c, RX_SHAPE(k->a[0], k->a[1], k->a[2], k->a[3]), 2);
    nchw_shape(k, s, len);
    snprintf(s + strlen(s), len - strlen(s), " + same");
    *fwd = 3 * nchw_bytes(k);
    *bwd = 5 * nchw_bytes(k);
}
static rx_tensor *run_add(rx_ctx *c, const bench_case *k, rx_tensor **in) { return rx_add(c, in[0], in[1]); }

/* residual_add (a + (b + bias[c])): traffic as add's (the bias is negligible) */
static void make_residual_add(rx_ctx *c, const bench_case *k, rx_tensor **in, char *s, size_t len, double *fwd,
                              double *bwd) {
    make_add(c, k, in, s, len, fwd, bwd);
    in[2] = input(c, RX_SHAPE(k->a[1]), 3);
    snprintf(s + strlen(s), len - strlen(s), " + bias");
}
static rx_tensor *run_residual_add(rx_ctx *c, const bench_case *k, rx_tensor **in) {
    return rx_residual_add(c, in[0], in[1], in[2], 1.0f);
}

/* Representative shapes of a CIFAR-10 U-Net (DDPM: 128 channels, mult 1,2,2,2, B = 16) and of a
 * small DiT (256 tokens, width 384). */
static const bench_case cases[] = {
    {"conv2d", RX_OP_CONV2D, {16, 64, 32, 32, 64, 3, 1, 1}, make_conv, run_conv, 0, NULL},
    {"conv2d", RX_OP_CONV2D, {16, 128, 32, 32, 128, 3, 1, 1}, make_conv, run_conv, 0, NULL},
    {"conv2d", RX_OP_CONV2D, {16, 128, 16, 16, 128, 3, 1, 1}, make_conv, run_conv, 0, NULL},
    {"conv2d", RX_OP_CONV2D, {16, 256, 16, 16, 256, 3, 1, 1}, make_conv, run_conv, 0, NULL},
    {"conv2d", RX_OP_CONV2D, {16, 256, 8, 8, 256, 3, 1, 1}, make_conv, run_conv, 0, NULL},
    {"conv2d", RX_OP_CONV2D, {16, 128, 32, 32, 128, 3, 2, 1}, make_conv, run_conv, 0, "downsample"},
    {"conv2d", RX_OP_CONV2D, {16, 128, 16, 16, 256, 1, 1, 0}, make_conv, run_conv, 0, "1x1 skip"},
    {"conv2d", RX_OP_CONV2D, {16, 3, 32, 32, 128, 3, 1, 1}, make_conv, run_conv, 0, "conv_in, K=27"},
    {"linear", RX_OP_LINEAR, {16, 256, 384, 1152}, make_linear, run_linear, 0, "DiT qkv"},
    {"linear", RX_OP_LINEAR, {16, 256, 1536, 384}, make_linear, run_linear, 0, "DiT mlp out"},
    {"matmul", RX_OP_MATMUL, {16, 4, 256, 64, 256, 1}, make_matmul, run_matmul, 0, "q k^T"},
    {"matmul", RX_OP_MATMUL, {16, 4, 256, 256, 64, 0}, make_matmul, run_matmul, 0, "P v"},
    {"attention", RX_OP_ATTENTION, {16, 4, 256, 64}, make_attention, run_attention, 0, "16x16 tokens"},
    {"attention", RX_OP_ATTENTION, {16, 1, 256, 256}, make_attention, run_attention, 0, "cfg_cifar32: one head of 256"},
    {"attention", RX_OP_ATTENTION, {4, 4, 1024, 64}, make_attention, run_attention, 0, "32x32 tokens"},
    {"group_norm", RX_OP_GROUP_NORM, {16, 128, 32, 32, 32}, make_group_norm, run_group_norm, 1, NULL},
    {"silu", RX_OP_SILU, {16, 128, 32, 32}, make_unary, run_silu, 1, NULL},
    {"add", RX_OP_ADD, {16, 128, 32, 32}, make_add, run_add, 1, NULL},
    {"group_norm_silu", RX_OP_GROUP_NORM_SILU, {16, 128, 32, 32, 32}, make_group_norm_silu, run_group_norm_silu, 1,
     "fused: replaces add + group_norm + silu"},
    {"residual_add", RX_OP_RESIDUAL_ADD, {16, 128, 32, 32}, make_residual_add, run_residual_add, 1,
     "fused: replaces the conv's bias pass + add"},
};

/* median seconds of the forward call and of the backward kernel; < 0 on failure */
static int time_case(const bench_case *k, double *fwd_work, double *bwd_work, char *shape, size_t len, double *t_fwd,
                     double *t_bwd) {
    rx_ctx *c = NULL;
    if (rx_ctx_create(rx_backend_cpu(), NULL, 512u << 20, &c) != RX_OK) return -1;
    rx_tensor *in[4] = {0};
    k->make(c, k, in, shape, len, fwd_work, bwd_work);
    if (rx_ctx_status(c)) { rx_ctx_destroy(c); return -1; }
    double tf[MAX_REPEATS], tb[MAX_REPEATS];
    for (int r = -WARMUP; r < g_repeats; r++) {
        flush_caches();
        const double t0 = now_s();
        rx_tensor *y = k->run(c, k, in);
        const double t1 = now_s();
        if (!y || !c->tape || c->tape->out != y) { rx_ctx_destroy(c); return -1; }
        rx_tensor *gy = rx_grad_of(c, y);
        if (!gy) { rx_ctx_destroy(c); return -1; }
        rx_tensor_fill(c, gy, 0.5f);
        flush_caches();
        const double t2 = now_s();
        const rx_status s = c->be->bwd[k->op](c, c->tape);
        const double t3 = now_s();
        if (s != RX_OK) { rx_ctx_destroy(c); return -1; }
        if (r >= 0) { tf[r] = t1 - t0; tb[r] = t3 - t2; }
        rx_step_end(c);
    }
    *t_fwd = median(tf, g_repeats);
    *t_bwd = median(tb, g_repeats);
    rx_ctx_destroy(c);
    return 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--best")) g_best = 1;
        else if (argv[i][0] >= '0' && argv[i][0] <= '9') g_repeats = atoi(argv[i]);
        else g_only = argv[i];
    }
    if (g_repeats < 1 || g_repeats > MAX_REPEATS) {
        fprintf(stderr, "usage: kernels [repeats 1..%d] [--best] [op]\n", MAX_REPEATS);
        return 2;
    }
    const double wall0 = now_s(), cpu0 = cpu_s();
    g_flush = calloc(FLUSH_N, sizeof(float));
    if (!g_flush) { fprintf(stderr, "out of memory\n"); return 1; }

    const char *coretype = getenv("OPENBLAS_CORETYPE");
    double load[3] = {0};
    if (getloadavg(load, 3) < 0) load[0] = -1;
    printf("# bench/kernels: %d OpenMP threads, OpenBLAS %d threads, core %s, OPENBLAS_CORETYPE=%s\n",
           omp_get_max_threads(), openblas_get_num_threads(), openblas_get_corename(), coretype ? coretype : "(unset)");
    printf("# %s\n# load average at start %.2f; %s of %d repeats after %d warm-ups\n\n", openblas_get_config(),
           load[0], g_best ? "fastest" : "median", g_repeats, WARMUP);

    /* copy first: OpenBLAS's workers keep spinning for a while after the sgemm */
    const double copy = bench_copy(), sgemm = bench_sgemm();
    printf("sgemm 2048x2048x2048: %.1f GFLOP/s\n", sgemm);
    printf("copy 256 MiB (read + write): %.1f GB/s\n\n", copy);

    printf("| op | shape | note | fwd ms | fwd rate | fwd / ceiling | bwd ms | bwd rate | bwd / ceiling |\n");
    printf("|---|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bench_case *k = &cases[i];
        if (g_only && strcmp(g_only, k->name)) continue;
        const rx_backend *be = rx_backend_cpu();
        if (!be->fwd[k->op] || !be->bwd[k->op]) {
            printf("| %s | | TODO: no CPU kernel linked yet | | | | | | |\n", k->name);
            continue;
        }
        char shape[96] = "";
        double wf = 0, wb = 0, tf = 0, tb = 0;
        if (time_case(k, &wf, &wb, shape, sizeof shape, &tf, &tb) != 0) {
            printf("| %s | %s | failed: %s | | | | | | |\n", k->name, shape, rx_last_error());
            continue;
        }
        const double ceiling = k->memory_bound ? copy : sgemm;
        const char *unit = k->memory_bound ? "GB/s" : "GFLOP/s";
        printf("| %s | %s | %s | %.2f | %.1f %s | %.0f%% | %.2f | %.1f %s | %.0f%% |\n", k->name, shape,
               k->note ? k->note : "", tf * 1e3, wf / tf / 1e9, unit, 100 * wf / tf / 1e9 / ceiling, tb * 1e3,
               wb / tb / 1e9, unit, 100 * wb / tb / 1e9 / ceiling);
        fflush(stdout);
    }
    if (getloadavg(load, 3) < 0) load[0] = -1;
    printf("\n# ceilings: GEMM ops against sgemm %.1f GFLOP/s, memory-bound ops against copy %.1f GB/s\n", sgemm, copy);
    /* on a quiet machine near 100%; far below, other jobs took the cores and the numbers are low */
    printf("# load average at end %.2f; this run got %.0f%% of %d cores (CPU time / wall time)\n", load[0],
           100 * (cpu_s() - cpu0) / (now_s() - wall0) / omp_get_max_threads(), omp_get_max_threads());
    free(g_flush);
    return 0;
}
