/* gpu_bench.c — U-Net training-step speed and memory on the CUDA backend.
 *
 *   build/bench/gpu_bench [smoke|default|cifar32|all] [--batch B] [--steps N] [--precision fp32|tf32|bf16]
 *                         [--profile]   (--tf32 0|1: the same as --precision fp32|tf32)
 *
 * One training step = zero grads, forward, weighted MSE, backward, AdamW (clipping 1.0), arena
 * reset: what runner/train.c does per step, minus data loading. Models: `smoke` is
 * experiments/smoke/unet_ddpm.yaml's U-Net (16x16, channels [16, 32], batch 8); `default` is the
 * unet component's defaults at 32x32 (channels [224, 448, 672, 896], attention at 16x16 and
 * below), batch 32 unless --batch; `cifar32` is cfg_cifar32's 35.7M U-Net at batch 128. Two warm-up steps (cuDNN
 * algorithm search, arena sizing), then N timed steps (the stream is synchronized before the
 * clock is read). Prints one row per model: ms/step, img/s, parameters, the step arena's peak,
 * the persistent arena, the scratch peak, and cudaMemGetInfo's device memory in use.
 * Exit 0 with a note when this build or machine has no CUDA device.
 *
 * --profile (issue 16 §1): after the timed steps, N more steps with every op's forward and
 * backward kernel timed on its own (the stream synchronized before and after it: host clock,
 * so each row includes one launch-and-sync round trip, ~5-10 us on a GPU), plus the batch
 * upload, zeroing the gradients and the optimizer; one row per op and direction, largest
 * first, as ms per step and share of the profiled step. The table bench/NOTES.md asks for
 * (conv fwd, conv bwd = data + filter in one call, GEMM = linear/matmul, group_norm, silu,
 * attention, optimizer, memcpy). In the emulator the times are meaningless (the rows and the
 * op counts are not). */
#include "registry/components.h"
#include "autograd/optim.h"
#include "blocks/model.h"
#include "core/params.h"
#include "core/philox.h"
#include "kernels/cuda_backend.h"
#include "kernels/cuda/cuda_api.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "clock.h"

typedef struct {
    const char *name;
    const char *const *kv;   /* unet parameters (NULL-terminated key, value pairs) */
    int size, batch;
} bench_model;

static const char *const smoke_kv[] = {
    "sample_size", "16", "in_channels", "3", "out_channels", "3", "layers_per_block", "1",
    "block_out_channels", "[16, 32]", "down_block_types", "[DownBlock2D, AttnDownBlock2D]",
    "up_block_types", "[AttnUpBlock2D, UpBlock2D]", "attention_head_dim", "8", "norm_num_groups", "8", NULL};
static const char *const default_kv[] = {"sample_size", "32", NULL};
/* experiments/cfg_cifar32.yaml's U-Net (the DDPM paper's CIFAR-10 model) without the class embedding;
 * bench/torch_unet_bench.py builds the same network in diffusers for the side-by-side ratio */
static const char *const cifar32_kv[] = {
    "sample_size", "32", "layers_per_block", "2", "block_out_channels", "[128, 256, 256, 256]",
    "down_block_types", "[DownBlock2D, AttnDownBlock2D, DownBlock2D, DownBlock2D]",
    "up_block_types", "[UpBlock2D, UpBlock2D, AttnUpBlock2D, UpBlock2D]", "attention_head_dim", "256",
    "norm_num_groups", "32", "dropout", "0.1", NULL};

static const bench_model models[] = {
    {"smoke", smoke_kv, 16, 8},
    {"default", default_kv, 32, 32},
    {"cifar32", cifar32_kv, 32, 128},
};

#define CHECK(expr)                                                                        \
    do {                                                                                   \
        rx_status s_ = (expr);                                                             \
        if (s_ != RX_OK) {                                                                 \
            fprintf(stderr, "gpu_bench: %s: %s\n", #expr, rx_last_error());              \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static rx_status one_step(rx_ctx *c, rx_model *m, rx_adamw *opt, int B, int S, const float *x, const float *t,
                          const float *y, const float *w) {
    const int64_t xs[4] = {B, 3, S, S}, bs[1] = {B};
    RX_TRY(rx_paramset_zero_grad(c, &m->params));
    rx_tensor *X = rx_from_host(c, 4, xs, x), *T = rx_from_host(c, 1, bs, t), *Y = rx_from_host(c, 4, xs, y);
    rx_tensor *W = rx_from_host(c, 1, bs, w);
    rx_tensor *loss = rx_mse_loss(c, m->impl->forward(c, m, X, T, NULL), Y, W);
    if (!loss) return rx_ctx_status(c);
    RX_TRY(rx_backward(c, loss));
    RX_TRY(rx_adamw_queue(c, opt, 1e-4f));   /* as train.c: the norm stays on the device */
    rx_step_end(c);
    return RX_OK;
}

// ---- --profile: every kernel call timed on its own ---------------------------------------------

enum { PROF_UPLOAD = RX_OP_COUNT, PROF_ZERO_GRAD, PROF_OPTIMIZER, PROF_ROWS };
static const rx_backend *prof_real;   /* the backend whose kernels are timed */
static rx_backend prof_be;            /* its copy with the timing wrappers in fwd/bwd */
static double prof_ms[PROF_ROWS][2];
static long prof_calls[PROF_ROWS][2];

static rx_status prof_time(rx_ctx *c, int row, int dir, rx_status (*f)(rx_ctx *, rx_node *), rx_node *n) {
    RX_TRY(prof_real->sync(c));
    const double t0 = now_s();
    RX_TRY(f(c, n));
    RX_TRY(prof_real->sync(c));
    prof_ms[row][dir] += (now_s() - t0) * 1e3;
    prof_calls[row][dir]++;
    return RX_OK;
}
static rx_status prof_fwd(rx_ctx *c, rx_node *n) { return prof_time(c, n->op, 0, prof_real->fwd[n->op], n); }
static rx_status prof_bwd(rx_ctx *c, rx_node *n) { return prof_time(c, n->op, 1, prof_real->bwd[n->op], n); }

static void prof_install(rx_ctx *c) {
    prof_real = c->be;
    prof_be = *c->be;
    for (int k = 0; k < RX_OP_COUNT; k++) {   /* a missing kernel stays missing (its error unchanged) */
        prof_be.fwd[k] = prof_real->fwd[k] ? prof_fwd : NULL;
        prof_be.bwd[k] = prof_real->bwd[k] ? prof_bwd : NULL;
    }
    c->be = &prof_be;
}

/* one_step with the parts outside the ops timed too */
static rx_status profiled_step(rx_ctx *c, rx_model *m, rx_adamw *opt, int B, int S, const float *x, const float *t,
                               const float *y, const float *w) {
    const int64_t xs[4] = {B, 3, S, S}, bs[1] = {B};
    double t0 = now_s();
    RX_TRY(rx_paramset_zero_grad(c, &m->params));
    RX_TRY(c->be->sync(c));
    prof_ms[PROF_ZERO_GRAD][0] += (now_s() - t0) * 1e3, prof_calls[PROF_ZERO_GRAD][0]++;
    t0 = now_s();
    rx_tensor *X = rx_from_host(c, 4, xs, x), *T = rx_from_host(c, 1, bs, t), *Y = rx_from_host(c, 4, xs, y);
    rx_tensor *W = rx_from_host(c, 1, bs, w);
    RX_TRY(c->be->sync(c));
    prof_ms[PROF_UPLOAD][0] += (now_s() - t0) * 1e3, prof_calls[PROF_UPLOAD][0] += 4;
    rx_tensor *loss = rx_mse_loss(c, m->impl->forward(c, m, X, T, NULL), Y, W);
    if (!loss) return rx_ctx_status(c);
    RX_TRY(rx_backward(c, loss));
    t0 = now_s();
    RX_TRY(rx_adamw_queue(c, opt, 1e-4f));
    RX_TRY(c->be->sync(c));
    prof_ms[PROF_OPTIMIZER][0] += (now_s() - t0) * 1e3, prof_calls[PROF_OPTIMIZER][0]++;
    rx_step_end(c);
    return RX_OK;
}

static void prof_print(int steps, double eager_ms) {
    typedef struct { int row, dir; double ms; } line;
    line l[PROF_ROWS * 2];
    int n = 0;
    double total = 0;
    for (int r = 0; r < PROF_ROWS; r++)
        for (int d = 0; d < 2; d++)
            if (prof_calls[r][d]) { l[n++] = (line){r, d, prof_ms[r][d] / steps}; total += prof_ms[r][d] / steps; }
    for (int i = 1; i < n; i++)   /* largest first (insertion sort: a few dozen rows) */
        for (int j = i; j > 0 && l[j].ms > l[j - 1].ms; j--) { line tmp = l[j]; l[j] = l[j - 1]; l[j - 1] = tmp; }
    static const char *const extra[] = {"upload (H2D memcpy)", "zero grads (memset)", "optimizer (adamw_multi)"};
    printf("\nprofile: %d steps, each call synchronized (host clock); ms per step\n", steps);
    printf("%-26s %-4s %9s %7s %7s\n", "op", "dir", "ms/step", "share", "calls");
    for (int i = 0; i < n; i++) {
        const char *name = l[i].row < RX_OP_COUNT ? rx_op_names[l[i].row] : extra[l[i].row - RX_OP_COUNT];
        printf("%-26s %-4s %9.3f %6.1f%% %7ld\n", name, l[i].row < RX_OP_COUNT ? (l[i].dir ? "bwd" : "fwd") : "",
               l[i].ms, 100 * l[i].ms / total, prof_calls[l[i].row][l[i].dir] / steps);
    }
    printf("%-26s %-4s %9.3f   (the step unprofiled: %.3f ms; the difference is the per-call syncs)\n", "sum", "",
           total, eager_ms);
}

static const char *const precision_names[] = {"fp32", "tf32", "bf16"};   /* rx_precision order */

static void bench(const bench_model *bm, int batch, int steps, int precision, int profile) {
    const rx_backend *be = NULL;
    void *state = NULL;
    const char *device = NULL;
    CHECK(rx_cuda_open(0, precision, 0, &be, &state, &device));
    rx_ctx *c = NULL;
    CHECK(rx_ctx_create(be, state, 0, &c));
    rx_params *p = NULL;
    CHECK(rx_params_from_defaults(rx_comp_model_unet.name, rx_comp_model_unet.params, &p));
    for (int i = 0; bm->kv[i]; i += 2) CHECK(rx_params_set(p, bm->kv[i], bm->kv[i + 1]));
    rx_model *m = NULL;
    CHECK(rx_model_create(c, &rx_comp_model_unet, p, 1, &m));
    rx_params_free(p);
    rx_adamw opt;
    const rx_adamw_config cfg = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                                 .grad_clip = 1.0f};
    CHECK(rx_adamw_init(c, &opt, &m->params, &cfg));
    const int B = batch > 0 ? batch : bm->batch, S = bm->size;
    const int64_t n = (int64_t)B * 3 * S * S;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *t = malloc(B * sizeof *t), *w = malloc(B * sizeof *w);
    if (!x || !y || !t || !w) { fprintf(stderr, "gpu_bench: out of memory\n"); exit(1); }
    rx_rng_normal(1, RX_STREAM(RX_RNG_TEST, 1), 0, x, n);
    rx_rng_normal(1, RX_STREAM(RX_RNG_TEST, 2), 0, y, n);
    for (int i = 0; i < B; i++) { t[i] = (float)((i * 131) % 1000); w[i] = 1.0f; }
    c->training = 1;
    rx_set_grad_enabled(c, 1);
    for (int i = 0; i < 2; i++) CHECK(one_step(c, m, &opt, B, S, x, t, y, w));   /* algorithm search, arena sizing */
    CHECK(c->be->sync(c));
    const double t0 = now_s();
    for (int i = 0; i < steps; i++) CHECK(one_step(c, m, &opt, B, S, x, t, y, w));
    CHECK(c->be->sync(c));
    const double dt = (now_s() - t0) / steps;
    size_t scratch = 0, used = 0, total = 0;
    if (rx_cuda_memory_info) CHECK(rx_cuda_memory_info(c, &scratch, &used, &total));
    printf("%-7s %5d %9.2f %9.1f %8.1fM %10.1f %10.1f %9.1f %9.1f/%.0f  %s (%s)\n", bm->name, B, dt * 1e3, B / dt,
           rx_model_param_count(m) / 1e6, rx_arena_data_peak(c->step) / 1048576.0, rx_arena_data_used(c->persist) / 1048576.0,
           scratch / 1048576.0, used / 1048576.0, total / 1048576.0, device, precision_names[precision]);
    fflush(stdout);
    if (profile) {
        memset(prof_ms, 0, sizeof prof_ms);
        memset(prof_calls, 0, sizeof prof_calls);
        const rx_backend *real = c->be;
        prof_install(c);
        for (int i = 0; i < steps; i++) CHECK(profiled_step(c, m, &opt, B, S, x, t, y, w));
        c->be = real;
        prof_print(steps, dt * 1e3);
    }
    free(x); free(y); free(t); free(w);
    rx_adamw_free(&opt);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
    rx_cuda_close(state);
}

int main(int argc, char **argv) {
    const char *which = "all";
    int batch = 0, steps = 20, precision = RX_PRECISION_TF32, profile = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tf32") && i + 1 < argc) precision = atoi(argv[++i]) != 0;
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
            const char *want = argv[++i];
            precision = -1;
            for (int k = 0; k < 3; k++) if (!strcmp(want, precision_names[k])) precision = k;
            if (precision < 0) { fprintf(stderr, "gpu_bench: --precision fp32|tf32|bf16, not '%s'\n", want); return 2; }
        } else if (!strcmp(argv[i], "--profile")) profile = 1;
        else if (argv[i][0] != '-') which = argv[i];
        else {
            fprintf(stderr, "usage: gpu_bench [smoke|default|cifar32|all] [--batch B] [--steps N] [--precision fp32|tf32|bf16] [--profile]\n");
            return 2;
        }
    }
    if (rx_cuda_device_count() == 0) {
        printf("gpu_bench: no CUDA device (or a build without CUDA): nothing to measure\n");
        return 0;
    }
    if (steps < 1) steps = 1;
    printf("%-7s %5s %9s %9s %9s %10s %10s %9s %9s\n", "model", "batch", "ms/step", "img/s", "params", "step MiB",
           "persist MiB", "scratch", "device MiB");
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++)
        if (!strcmp(which, "all") || !strcmp(which, models[k].name)) bench(&models[k], batch, steps, precision, profile);
    return 0;
}
