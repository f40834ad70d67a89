/* test_learning.c — end-to-end learning: ops + autograd + AdamW + LR schedule together.
 * A tiny MLP fits a smooth 2-D function and a tiny conv net classifies 8x8 toy images;
 * each must reach a stated loss (and accuracy) from a fixed seed. Reference: the task's
 * own ground truth (the target function, the generating class) — a real learning test:
 * a wrong gradient, optimizer or schedule anywhere leaves the loss above the threshold. */
#include "gradcheck.h"
#include "autograd/optim.h"
#include "registry/components.h"
#include <omp.h>

/* These tests run their ops on one OpenMP thread. The threaded kernel paths are checked by
 * the op tests; here, on a busy 2-core machine, OpenMP workers that spin between parallel
 * regions (OMP_WAIT_POLICY=active, libgomp's default) starve OpenBLAS's own pthreads and a
 * 1-second training run takes 30 seconds. */
static void one_thread(void) { omp_set_num_threads(1); }

/* PyTorch's default Linear/Conv2d init: kaiming_uniform(a=√5) for the weight and
 * uniform(±1/sqrt(fan_in)) for the bias, which both come to U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
static rx_tensor *param_uniform(rx_ctx *c, rx_paramset *ps, const char *name, int nd, const int64_t *shape,
                                int64_t fan_in, uint64_t k) {
    rx_tensor *t = rx_param(c, name, nd, shape, 1);
    cr_assert(t, "%s", rx_last_error());
    float *h = malloc(t->numel * sizeof(float));
    rx_rng_uniform(2024, RX_STREAM(RX_RNG_INIT, k), 0, h, t->numel);
    const float bound = 1.0f / sqrtf((float)fan_in);
    for (int64_t i = 0; i < t->numel; i++) h[i] = (2 * h[i] - 1) * bound;
    rx_tensor_from_host(c, t, h);
    free(h);
    cr_assert_eq(rx_paramset_add(ps, t), RX_OK);
    return t;
}

static rx_tensor *param_const(rx_ctx *c, rx_paramset *ps, const char *name, int64_t n, float v) {
    rx_tensor *t = rx_param(c, name, RX_SHAPE(n), 1);
    rx_tensor_fill(c, t, v);
    cr_assert_eq(rx_paramset_add(ps, t), RX_OK);
    return t;
}

static float scalar(rx_ctx *c, const rx_tensor *t) {
    float v = NAN;
    cr_assert(t, "%s", rx_last_error());
    rx_tensor_to_host(c, t, &v);
    return v;
}

static rx_params *defaults(const rx_component *comp) {
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults(comp->name, comp->params, &p), RX_OK, "%s", rx_last_error());
    return p;
}

// ---------------------------------------------------------------------------- MLP regression

/* y = sin(3 x0) cos(2 x1) on [-1,1]²: 256 fixed points, full batch.
 * MLP 2 -> 64 -> 64 -> 1 with SiLU, layer_norm after the first layer; AdamW with
 * cosine schedule, warmup and clipping; 400 steps. The targets' variance is ~0.17. */
Test(learning, mlp_fits_smooth_function, .init = one_thread) {
    enum { N = 256, H = 64, STEPS = 400 };
    rx_ctx *c = rx_test_cpu_ctx();
    float x[N * 2], y[N];
    rx_rng_uniform(7, RX_STREAM(RX_RNG_TEST, 1), 0, x, N * 2);
    for (int i = 0; i < N; i++) {
        x[2 * i] = 2 * x[2 * i] - 1;
        x[2 * i + 1] = 2 * x[2 * i + 1] - 1;
        y[i] = sinf(3 * x[2 * i]) * cosf(2 * x[2 * i + 1]);
    }
    rx_paramset ps = {0};
    rx_tensor *w1 = param_uniform(c, &ps, "l1.weight", RX_SHAPE(H, 2), 2, 1);
    rx_tensor *b1 = param_uniform(c, &ps, "l1.bias", RX_SHAPE(H), 2, 2);
    rx_tensor *g1 = param_const(c, &ps, "ln.weight", H, 1.0f), *be1 = param_const(c, &ps, "ln.bias", H, 0.0f);
    rx_tensor *w2 = param_uniform(c, &ps, "l2.weight", RX_SHAPE(H, H), H, 3);
    rx_tensor *b2 = param_uniform(c, &ps, "l2.bias", RX_SHAPE(H), H, 4);
    rx_tensor *w3 = param_uniform(c, &ps, "l3.weight", RX_SHAPE(1, H), H, 5);
    rx_tensor *b3 = param_uniform(c, &ps, "l3.bias", RX_SHAPE(1), H, 6);

    rx_params *op = defaults(&rx_comp_optimizer_adamw);
    rx_params_set(op, "lr", "1e-2");
    rx_params_set(op, "weight_decay", "0");
    rx_params_set(op, "grad_clip", "1.0");
    rx_params *sp = defaults(&rx_comp_lr_schedule_cosine);
    rx_params_set(sp, "warmup_steps", "20");
    rx_params_set(sp, "min_lr", "1e-4");
    const rx_lr_schedule_impl *sched = rx_comp_lr_schedule_cosine.impl;
    rx_adamw opt;
    cr_assert_eq(((const rx_optimizer_impl *)rx_comp_optimizer_adamw.impl)->create(c, op, &ps, &opt), RX_OK, "%s",
                 rx_last_error());

    float first = NAN, last = NAN;
    for (int step = 0; step < STEPS; step++) {
        rx_paramset_zero_grad(c, &ps);
        rx_tensor *xt = rx_from_host(c, RX_SHAPE(N, 2), x), *yt = rx_from_host(c, RX_SHAPE(N, 1), y);
        rx_tensor *h = rx_silu(c, rx_layer_norm(c, rx_linear(c, xt, w1, b1), g1, be1, 1e-5f));
        h = rx_silu(c, rx_linear(c, h, w2, b2));
        rx_tensor *loss = rx_mse_loss(c, rx_linear(c, h, w3, b3), yt, NULL);
        const float l = scalar(c, loss);
        if (step == 0) first = l;
        last = l;
        cr_assert_eq(rx_backward(c, loss), RX_OK, "%s", rx_last_error());
        const float lr = sched->lr_at(sp, opt.cfg.lr, opt.step, STEPS);
        cr_assert_eq(rx_adamw_step(c, &opt, lr, NULL), RX_OK, "%s", rx_last_error());
        rx_step_end(c);
    }
    // measured: first 0.166 (the targets' variance), last 9.3e-4
    cr_expect_lt(last, 3e-3f, "MLP final mse %g (first %g)", last, first);
    cr_expect_lt(last, first / 30, "MLP loss fell only from %g to %g", first, last);
    rx_adamw_free(&opt);
    rx_params_free(op);
    rx_params_free(sp);
    rx_paramset_free(&ps);
    rx_ctx_destroy(c);
}

// ---------------------------------------------------------------------------- conv net classification

enum { IMG = 8, CLASSES = 4 };

/* class 0: a horizontal line, 1: a vertical line, 2: a 3x3 square, 3: noise only;
 * random position, N(0, 0.35) noise. Image i depends only on (seed, i). */
static void toy_images(uint64_t seed, int n, float *img, float *label) {
    for (int i = 0; i < n; i++) {
        float *im = img + i * IMG * IMG;
        rx_rng_normal(seed, RX_STREAM(RX_RNG_TEST, 1000 + i), 0, im, IMG * IMG);
        for (int j = 0; j < IMG * IMG; j++) im[j] *= 0.35f;
        const int cls = (int)(rx_rng_u32(seed, RX_STREAM(RX_RNG_TEST, 2000 + i), 0) % CLASSES);
        const int r = (int)(rx_rng_u32(seed, RX_STREAM(RX_RNG_TEST, 2000 + i), 1) % (IMG - 2));
        const int q = (int)(rx_rng_u32(seed, RX_STREAM(RX_RNG_TEST, 2000 + i), 2) % (IMG - 2));
        for (int k = 0; k < IMG; k++) {
            if (cls == 0) im[(r + 1) * IMG + k] += 1.0f;
            if (cls == 1) im[k * IMG + q + 1] += 1.0f;
        }
        if (cls == 2)
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) im[(r + a) * IMG + q + b] += 1.0f;
        label[i] = (float)cls;
    }
}

typedef struct { rx_tensor *w1, *b1, *gn_w, *gn_b, *w2, *b2, *wf, *bf; } convnet;

/* x [B,1,8,8] -> conv3x3(8) -> group_norm(4) -> silu -> avgpool2x [B,8,4,4] -> conv3x3(16) -> silu
 *   -> global_avgpool [B,16] -> linear -> logits [B,4] */
static rx_tensor *convnet_forward(rx_ctx *c, const convnet *m, rx_tensor *x) {
    rx_tensor *h = rx_conv2d(c, x, m->w1, m->b1, 1, 1);
    h = rx_avgpool2x(c, rx_silu(c, rx_group_norm(c, h, m->gn_w, m->gn_b, 4, 1e-5f)));
    h = rx_silu(c, rx_conv2d(c, h, m->w2, m->b2, 1, 1));
    return rx_linear(c, rx_global_avgpool(c, h), m->wf, m->bf);
}

Test(learning, convnet_classifies_toy_images, .init = one_thread) {
    enum { NTRAIN = 512, NTEST = 256, B = 64, STEPS = 250 };
    rx_ctx *c = rx_test_cpu_ctx();
    float *xtr = malloc(NTRAIN * IMG * IMG * sizeof(float)), *ytr = malloc(NTRAIN * sizeof(float));
    float *xte = malloc(NTEST * IMG * IMG * sizeof(float)), *yte = malloc(NTEST * sizeof(float));
    toy_images(11, NTRAIN, xtr, ytr);
    toy_images(12, NTEST, xte, yte);
    rx_paramset ps = {0};
    convnet m = {
        .w1 = param_uniform(c, &ps, "conv1.weight", RX_SHAPE(8, 1, 3, 3), 9, 11),
        .b1 = param_uniform(c, &ps, "conv1.bias", RX_SHAPE(8), 9, 12),
        .gn_w = param_const(c, &ps, "norm1.weight", 8, 1.0f),
        .gn_b = param_const(c, &ps, "norm1.bias", 8, 0.0f),
        .w2 = param_uniform(c, &ps, "conv2.weight", RX_SHAPE(16, 8, 3, 3), 72, 13),
        .b2 = param_uniform(c, &ps, "conv2.bias", RX_SHAPE(16), 72, 14),
        .wf = param_uniform(c, &ps, "fc.weight", RX_SHAPE(CLASSES, 16), 16, 15),
        .bf = param_uniform(c, &ps, "fc.bias", RX_SHAPE(CLASSES), 16, 16),
    };
    rx_adamw_config cfg = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 1e-4f,
                           .grad_clip = 5.0f};
    rx_adamw opt;
    cr_assert_eq(rx_adamw_init(c, &opt, &ps, &cfg), RX_OK, "%s", rx_last_error());
    rx_params *sp = defaults(&rx_comp_lr_schedule_linear_warmup);
    rx_params_set(sp, "warmup_steps", "10");
    const rx_lr_schedule_impl *sched = rx_comp_lr_schedule_linear_warmup.impl;

    double recent = 0;   // mean training loss over the last 20 steps
    float first = NAN;
    for (int step = 0; step < STEPS; step++) {
        const int off = (step * B) % NTRAIN;   // batches walk through the training set in order
        rx_paramset_zero_grad(c, &ps);
        rx_tensor *x = rx_from_host(c, RX_SHAPE(B, 1, IMG, IMG), xtr + off * IMG * IMG);
        rx_tensor *lab = rx_from_host(c, RX_SHAPE(B), ytr + off);
        rx_tensor *loss = rx_cross_entropy(c, convnet_forward(c, &m, x), lab);
        const float l = scalar(c, loss);
        if (step == 0) first = l;
        if (step >= STEPS - 20) recent += l / 20;
        cr_assert_eq(rx_backward(c, loss), RX_OK, "%s", rx_last_error());
        cr_assert_eq(rx_adamw_step(c, &opt, sched->lr_at(sp, cfg.lr, opt.step, STEPS), NULL), RX_OK, "%s",
                     rx_last_error());
        rx_step_end(c);
    }
    // held-out accuracy, no grad
    rx_set_grad_enabled(c, 0);
    rx_tensor *logits = convnet_forward(c, &m, rx_from_host(c, RX_SHAPE(NTEST, 1, IMG, IMG), xte));
    cr_assert(logits, "%s", rx_last_error());
    float *lg = malloc(NTEST * CLASSES * sizeof(float));
    rx_tensor_to_host(c, logits, lg);
    int correct = 0;
    for (int i = 0; i < NTEST; i++) {
        int best = 0;
        for (int k = 1; k < CLASSES; k++) best = lg[i * CLASSES + k] > lg[i * CLASSES + best] ? k : best;
        correct += best == (int)yte[i];
    }
    const double acc = (double)correct / NTEST;
    // measured: first 1.393 (= ln 4, chance), last-20 mean 0.009, test accuracy 0.996
    cr_expect_lt(recent, 0.05, "conv net training loss %g (first %g)", recent, first);
    cr_expect_geq(acc, 0.95, "conv net test accuracy %.3f", acc);
    free(lg); free(xtr); free(ytr); free(xte); free(yte);
    rx_adamw_free(&opt);
    rx_params_free(sp);
    rx_paramset_free(&ps);
    rx_ctx_destroy(c);
}
