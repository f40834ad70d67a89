/* bench/models.c — forward and forward+backward time per image of whole models on the CPU,
 * and the GFLOP/s they achieve.
 *
 *     make bench && ./build/bench/models [repeats [model]]   (default 3 timed steps after 1 warm-up)
 *
 * One line per model, grad on (as in training), times are medians:
 *   unet_quickstart   experiments/quickstart.yaml's U-Net (32x32x1, [32, 64, 64], attention at 8x8), batch 16
 *   unet_cifar32      experiments/cfg_cifar32.yaml's U-Net (35.7M, one 256-wide head at 16x16), batch 2, no dropout
 *   dit_s2_cifar      DiT-S/2 on 32x32x3 pixels, 10 classes (256 tokens of width 384), batch 4
 *   resnet_classifier the evaluation classifier's defaults (32x32x3, widths [64, 128, 256]), batch 16
 * FLOPs are counted from the tape of the forward, for the GEMM-like ops only (conv2d, linear,
 * matmul, attention's two products), 2 per multiply-add: conv2d 2·B·Co·Ho·Wo·Ci·kh·kw, linear
 * 2·rows·in·out, attention 2·B·H·Nq·Nk·(D + Dv). Backward counts the same products once for each
 * input that needs a gradient (data and weight: 2x the forward; conv_in's data needs none).
 * Norms, activations and copies are not counted, so GFLOP/s is a lower bound of the work rate.
 * step MiB: the step arena's high-water mark (rx_arena_data_peak) over the model's runs, i.e. one
 * forward + backward step as training runs it (backward frees each intermediate after its last
 * use, c->release_in_backward, and the forward gives back what no backward reads, the plan learned
 * in the warm-up, as src/runner/train.c does): activations, saved tensors, live
 * gradients and kernel workspaces (each model gets a fresh context, so the number is its own). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "registry/components.h"
#include "blocks/model.h"
#include "core/philox.h"
#include "kernels/backend.h"
#include "autograd/liveness.h"
#include "clock.h"

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n) {
    qsort(t, n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static void check(rx_status s, const char *what) {
    if (s) { fprintf(stderr, "bench/models: %s: %s\n", what, rx_last_error()); exit(1); }
}

/* multiply-add work of one recorded op: forward, and backward given which inputs need grads */
static void node_flops(const rx_node *n, double *fwd, double *bwd) {
    double f = 0;
    const rx_tensor *o = n->out;
    int grads = 0;   /* GEMM-shaped backward products: one per input needing a gradient */
    switch (n->op) {
    case RX_OP_CONV2D: {   /* out [B,Co,Ho,Wo], w [Co,Ci,kh,kw] */
        const rx_tensor *w = n->in[1];
        f = 2.0 * o->numel * w->shape[1] * w->shape[2] * w->shape[3];
        grads = n->in[0]->requires_grad + w->requires_grad;
        break;
    }
    case RX_OP_LINEAR:     /* out [.., out], w [out, in] */
        f = 2.0 * o->numel * n->in[1]->shape[1];
        grads = n->in[0]->requires_grad + n->in[1]->requires_grad;
        break;
    case RX_OP_MATMUL: {   /* out [.., M, N]; K from a ([.., M, K] or [.., K, M] if trans_a) */
        const rx_tensor *a = n->in[0];
        int64_t K = n->i[0] ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
        f = 2.0 * o->numel * K;
        grads = n->in[0]->requires_grad + n->in[1]->requires_grad;
        break;
    }
    case RX_OP_ATTENTION: {   /* q [B,H,Nq,D], k [B,H,Nk,D], v [B,H,Nk,Dv]: S = q kᵀ, O = P v */
        const rx_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];
        f = 2.0 * q->shape[0] * q->shape[1] * q->shape[2] * k->shape[2] * (q->shape[3] + v->shape[3]);
        grads = 2;   /* dP, dV for the second product; dQ, dK for the first: 4 products = 2x */
        break;
    }
    default: return;
    }
    *fwd += f;
    *bwd += f * grads;
}

typedef struct bench_model {
    const char *name;
    const rx_component *comp;
    const char *const *kv;
    int denoiser, batch;
} bench_model;

static const char *const unet_quickstart[] = {
    "sample_size", "32", "in_channels", "1", "out_channels", "1", "layers_per_block", "1",
    "block_out_channels", "[32, 64, 64]", "down_block_types", "[DownBlock2D, DownBlock2D, AttnDownBlock2D]",
    "up_block_types", "[AttnUpBlock2D, UpBlock2D, UpBlock2D]", "attention_head_dim", "32",
    "norm_num_groups", "8", "num_classes", "10", NULL};
static const char *const unet_cifar32[] = {
    "sample_size", "32", "layers_per_block", "2", "block_out_channels", "[128, 256, 256, 256]",
    "down_block_types", "[DownBlock2D, AttnDownBlock2D, DownBlock2D, DownBlock2D]",
    "up_block_types", "[UpBlock2D, UpBlock2D, AttnUpBlock2D, UpBlock2D]", "attention_head_dim", "256",
    "norm_num_groups", "32", "num_classes", "10", NULL};
static const char *const dit_s2[] = {"preset", "DiT-S/2", "sample_size", "32", "in_channels", "3", "num_classes", "10", NULL};
static const char *const classifier_default[] = {"sample_size", "32", "in_channels", "3", "num_classes", "10", NULL};

static const bench_model models[] = {
    {"unet_quickstart", &rx_comp_model_unet, unet_quickstart, 1, 16},
    {"unet_cifar32", &rx_comp_model_unet, unet_cifar32, 1, 2},
    {"dit_s2_cifar", &rx_comp_model_dit, dit_s2, 1, 4},   /* 25x the U-Net's work per image */
    {"resnet_classifier", &rx_comp_model_resnet_classifier, classifier_default, 0, 16},
};

enum { MAX_BATCH = 64, MAX_REPEATS = 32 };

int main(int argc, char **argv) {
    /* as runexp does (src/runner/main.c): passive OpenMP waiting unless the caller chose, so the
     * numbers are those of a training run; libgomp reads the policy before main, hence the re-exec */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);   /* on failure, carry on with the default policy */
    }
    int repeats = argc > 1 ? atoi(argv[1]) : 3;
    if (repeats < 1 || repeats > MAX_REPEATS) repeats = 3;
    const char *only = argc > 2 ? argv[2] : NULL;
    printf("CPU, %d OpenMP threads (OMP_WAIT_POLICY=%s), median of %d steps after 1 warm-up\n\n", omp_get_max_threads(),
           getenv("OMP_WAIT_POLICY"), repeats);
    printf("%-18s %10s %6s %12s %14s %14s %10s %10s %9s\n", "model", "params", "batch", "fwd ms/img", "fwd+bwd ms/img",
           "GFLOP/img", "fwd GF/s", "f+b GF/s", "step MiB");
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        const bench_model *bm = &models[mi];
        if (only && strcmp(only, bm->name)) continue;
        const int BATCH = bm->batch;
        rx_ctx *c = NULL;
        check(rx_ctx_create(rx_backend_cpu(), NULL, 64u << 20, &c), "context");
        rx_params *p = NULL;
        check(rx_params_from_defaults(bm->comp->name, bm->comp->params, &p), bm->name);
        for (int i = 0; bm->kv[i]; i += 2) check(rx_params_set(p, bm->kv[i], bm->kv[i + 1]), bm->kv[i]);
        rx_model *m = NULL;
        check(rx_model_create(c, bm->comp, p, 1, &m), bm->name);
        check(rx_fwd_plan_create(c), "forward plan");
        int S = m->sample_size, C = m->in_channels;
        int64_t nx = (int64_t)BATCH * C * S * S;
        float *hx = malloc(nx * sizeof *hx), ht[MAX_BATCH], hl[MAX_BATCH];
        rx_rng_normal(7, RX_STREAM(RX_RNG_TEST, mi), 0, hx, nx);
        for (int b = 0; b < BATCH; b++) {
            ht[b] = (float)((b * 997) % 1000);
            hl[b] = (float)(b % (m->num_classes + 1 > 1 ? m->num_classes + 1 : 10));
        }
        double tf[MAX_REPEATS], tfb[MAX_REPEATS], flops_f = 0, flops_b = 0;
        for (int r = -1; r < repeats; r++) {
            for (int pass = 0; pass < 2; pass++) {   /* 0: forward only, 1: forward + backward */
                rx_tensor *x = rx_from_host(c, RX_SHAPE(BATCH, C, S, S), hx);
                rx_tensor *t = rx_from_host(c, RX_SHAPE(BATCH), ht), *y = rx_from_host(c, RX_SHAPE(BATCH), hl);
                check(rx_paramset_zero_grad(c, &m->params), "zero_grad");
                rx_fwd_plan_begin(c);   /* the forward frees what no backward reads, as a training step */
                double t0 = now_s();
                rx_tensor *out = m->impl->forward(c, m, x, bm->denoiser ? t : NULL, bm->denoiser && m->num_classes ? y : NULL);
                rx_tensor *loss = bm->denoiser ? rx_mean(c, rx_mul(c, out, out)) : rx_cross_entropy(c, out, y);
                if (!loss) check(rx_ctx_status(c), "forward");
                c->release_in_backward = pass == 1;   /* as a training step */
                if (pass == 1) check(rx_backward(c, loss), "backward");
                c->be->sync(c);
                double dt = now_s() - t0;
                if (r == 0 && pass == 0)
                    for (const rx_node *n = c->tape; n; n = n->prev) node_flops(n, &flops_f, &flops_b);
                if (r >= 0) (pass ? tfb : tf)[r] = dt;
                rx_step_end(c);
            }
            if (r == -1) rx_arena_peak_reset(c->step);   /* the warm-up learned the forward plan */
        }
        double f = median(tf, repeats), fb = median(tfb, repeats);
        double gf_img = flops_f / BATCH * 1e-9, gfb_img = (flops_f + flops_b) / BATCH * 1e-9;
        printf("%-18s %9.2fM %6d %12.2f %14.2f %6.3f+%-7.3f %10.1f %10.1f %9.1f\n", bm->name, rx_model_param_count(m) * 1e-6,
               BATCH, 1e3 * f / BATCH, 1e3 * fb / BATCH, gf_img, gfb_img - gf_img, flops_f / f * 1e-9,
               (flops_f + flops_b) / fb * 1e-9, rx_arena_data_peak(c->step) / 1048576.0);
        fflush(stdout);
        free(hx);
        rx_model_destroy(m);
        rx_params_free(p);
        rx_ctx_destroy(c);
    }
    printf("\nGFLOP/img: forward + backward GEMM work per image; GF/s: that work / the median time;\n"
           "step MiB: the step arena's peak over forward + backward\n");
    return 0;
}
