/* test_cuda_models.c — whole networks on the CUDA backend against the CPU backend (the reference):
 *   - a small U-Net (the architecture of tests/test_models_unet.c, checked there against diffusers),
 *     with dropout on: one training step (forward, weighted MSE loss, every parameter gradient),
 *     then one AdamW update (gradient clipping, weight decay) and one EMA update;
 *   - a small class-conditional DiT with learned sigma: forward and every parameter gradient;
 *   - sampling (DDIM and DDPM, 5 steps) with the U-Net: CUDA images agree with the CPU's within
 *     1e-3, and with deterministic: true two CUDA runs in fresh contexts are bit-identical.
 * Tolerances: 1e-4 (rx_rel_err) for outputs and gradients of networks of ~100 ops (each op is
 * within 1e-5 in test_cuda_ops.c); the optimizer update runs on identical gradients, because at
 * the first Adam step the update is lr·g/(|g| + eps) ≈ lr·sign(g), which a gradient near 0
 * (within float rounding of zero) can flip. */
#include "registry/components.h"
#include "cuda_parity.h"
#include "autograd/optim.h"
#include "blocks/model.h"
#include "core/params.h"
#include "diffusion/diffusion.h"

static const double TOL_NET = 1e-4;

static const char *const small_unet[] = {
    "sample_size", "16", "in_channels", "3", "out_channels", "3",
    "block_out_channels", "[32, 64]", "layers_per_block", "1", "norm_num_groups", "8",
    "attention_head_dim", "8", "down_block_types", "[DownBlock2D, AttnDownBlock2D]",
    "up_block_types", "[AttnUpBlock2D, UpBlock2D]", "num_classes", "3", "dropout", "0.1", NULL};

static const char *const small_dit[] = {
    "depth", "2", "hidden_size", "64", "num_heads", "4", "patch_size", "2", "sample_size", "8",
    "in_channels", "3", "num_classes", "3", "learn_sigma", "true", NULL};

static rx_params *params_of(const rx_component *comp, const char *const *kv) {
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults(comp->name, comp->params, &p), RX_OK, "%s", rx_last_error());
    for (int i = 0; kv[i]; i += 2)
        cr_assert_eq(rx_params_set(p, kv[i], kv[i + 1]), RX_OK, "%s = %s: %s", kv[i], kv[i + 1], rx_last_error());
    return p;
}

static rx_model *model_of(rx_ctx *c, const rx_component *comp, const char *const *kv) {
    rx_params *p = params_of(comp, kv);
    rx_model *m = NULL;
    cr_assert_eq(rx_model_create(c, comp, p, 7, &m), RX_OK, "%s", rx_last_error());   /* same Philox init on both */
    rx_params_free(p);
    return m;
}

static float *host_randn(int64_t n, uint64_t seed, float scale) {
    float *h = malloc((size_t)n * sizeof *h);
    cr_assert(h);
    rx_rng_normal(seed, RX_STREAM(RX_RNG_TEST, 3), 0, h, n);
    for (int64_t i = 0; i < n; i++) h[i] *= scale;
    return h;
}

/* all parameters (or their grads, or a paramset's tensors) concatenated into one host array */
static float *gather(rx_ctx *c, const rx_paramset *ps, int grads) {
    float *h = malloc((size_t)rx_paramset_numel(ps) * sizeof *h);
    cr_assert(h);
    int64_t off = 0;
    for (int i = 0; i < ps->n; i++) {
        const rx_tensor *t = grads ? ps->t[i]->grad : ps->t[i];
        cr_assert(t, "%s has no %s", ps->t[i]->name, grads ? "gradient" : "data");
        cr_assert_eq(rx_tensor_to_host(c, t, h + off), RX_OK, "%s", rx_last_error());
        off += ps->t[i]->numel;
    }
    return h;
}

/* Per tensor: max |got - ref| / scale, scale = max(max |ref| of the tensor, floor · the largest
 * max |ref| of all tensors). The floor is for gradients that vanish mathematically and are
 * float noise on both backends (attention's key bias: softmax ignores a constant added to a
 * row of scores), which have no scale of their own. Returns the worst, names it. */
static double compare_tensors(const rx_paramset *ps, const float *got, const float *ref, double tol, double floor_frac,
                              const char *what) {
    double global = 0;
    int64_t off = 0;
    for (int i = 0; i < ps->n; off += ps->t[i]->numel, i++)
        for (int64_t j = 0; j < ps->t[i]->numel; j++) global = fmax(global, fabs(ref[off + j]));
    double worst = 0;
    const char *worst_name = "";
    off = 0;
    for (int i = 0; i < ps->n; off += ps->t[i]->numel, i++) {
        double diff = 0, scale = floor_frac * global;
        for (int64_t j = 0; j < ps->t[i]->numel; j++) {
            const double d = fabs((double)got[off + j] - ref[off + j]);
            if (!(d <= diff)) diff = d;   /* NaN counts */
            scale = fmax(scale, fabs(ref[off + j]));
        }
        const double e = diff / (scale > 1e-30 ? scale : 1e-30);
        cr_expect(e <= tol, "%s of %s %s: relative error %.3g > %.0e", what, ps->t[i]->name, RX_SHAPE_STR(ps->t[i]), e, tol);
        if (!(e <= worst)) { worst = e; worst_name = ps->t[i]->name; }
    }
    cr_log_info("%s: %d tensors, worst %.2e (%s)", what, ps->n, worst, worst_name);
    return worst;
}

/* the model's inputs for batch B of C x S x S images */
typedef struct { float *x, *t, *labels, *target, *weight; int B, C, S; } batch;

static batch make_batch(int B, int C, int S, int out_c) {
    batch b = {.B = B, .C = C, .S = S};
    b.x = host_randn((int64_t)B * C * S * S, 11, 1.0f);
    b.target = host_randn((int64_t)B * out_c * S * S, 12, 1.0f);
    b.t = malloc((size_t)B * sizeof(float));
    b.labels = malloc((size_t)B * sizeof(float));
    b.weight = malloc((size_t)B * sizeof(float));
    for (int i = 0; i < B; i++) {
        b.t[i] = (float)((i * 397 + 5) % 1000);
        b.labels[i] = (float)(i % 4);    /* 3 = the null label */
        b.weight[i] = 0.5f + 0.25f * (float)i;
    }
    return b;
}

static void free_batch(batch *b) { free(b->x); free(b->t); free(b->labels); free(b->target); free(b->weight); }

/* forward + weighted MSE + backward on context c; returns the output and loss on the host */
static float *train_forward_backward(rx_ctx *c, rx_model *m, const batch *b, int out_c, float *loss_h) {
    c->training = 1;
    c->seed = 5;
    c->rng_step = 1;
    rx_set_grad_enabled(c, 1);
    cr_assert_eq(rx_paramset_zero_grad(c, &m->params), RX_OK);
    const int64_t xs[4] = {b->B, b->C, b->S, b->S}, ys[4] = {b->B, out_c, b->S, b->S}, bs[1] = {b->B};
    rx_tensor *X = rx_from_host(c, 4, xs, b->x), *T = rx_from_host(c, 1, bs, b->t);
    rx_tensor *L = rx_from_host(c, 1, bs, b->labels), *Y = rx_from_host(c, 4, ys, b->target);
    rx_tensor *W = rx_from_host(c, 1, bs, b->weight);
    rx_tensor *out = m->impl->forward(c, m, X, T, L);
    rx_tensor *loss = rx_mse_loss(c, out, Y, W);
    cr_assert(loss, "%s: %s", c->be->name, rx_last_error());
    cr_assert_eq(rx_backward(c, loss), RX_OK, "%s backward: %s", c->be->name, rx_last_error());
    float *out_h = malloc((size_t)out->numel * sizeof *out_h);
    cr_assert_eq(rx_tensor_to_host(c, out, out_h), RX_OK);
    cr_assert_eq(rx_tensor_to_host(c, loss, loss_h), RX_OK);
    return out_h;
}

Test(cuda_models, unet_training_step_matches_the_cpu) {
    px_pair p;
    px_open(&p, 0, 0);
    rx_model *m[2];
    float *out[2], loss[2], *grads[2], *after[2], *moments[2], *ema[2];
    double gnorm[2];
    batch b = make_batch(3, 3, 16, 3);
    for (int k = 0; k < 2; k++) {
        rx_ctx *c = k ? p.gpu : p.cpu;
        m[k] = model_of(c, &rx_comp_model_unet, small_unet);
        out[k] = train_forward_backward(c, m[k], &b, 3, &loss[k]);
        grads[k] = gather(c, &m[k]->params, 1);
    }
    cr_expect_eq(m[1]->params.n, m[0]->params.n);
    const int64_t n_out = 3 * 3 * 16 * 16;
    const double out_err = rx_rel_err(out[1], out[0], n_out);
    cr_expect(out_err <= TOL_NET, "unet output: relative error %.3g", out_err);
    cr_expect(fabs(loss[1] - loss[0]) <= 1e-5 * fabs(loss[0]), "loss: cuda %.9g cpu %.9g", loss[1], loss[0]);
    compare_tensors(&m[0]->params, grads[1], grads[0], TOL_NET, 1e-3, "gradient");

    /* AdamW (clipping at 0.5, weight decay) and EMA, from the CPU's gradients on both */
    for (int k = 0; k < 2; k++) {
        rx_ctx *c = k ? p.gpu : p.cpu;
        int64_t off = 0;
        for (int i = 0; i < m[k]->params.n; i++) {
            rx_tensor *t = m[k]->params.t[i];
            cr_assert_eq(rx_tensor_from_host(c, t->grad, grads[0] + off), RX_OK);
            off += t->numel;
        }
        rx_paramset ema_set = {0};
        cr_assert_eq(rx_ema_create(c, &m[k]->params, &ema_set), RX_OK, "%s", rx_last_error());
        rx_adamw opt;
        rx_adamw_config cfg = RX_ADAMW_TORCH_DEFAULTS;
        cfg.grad_clip = 0.5f;
        cr_assert_eq(rx_adamw_init(c, &opt, &m[k]->params, &cfg), RX_OK, "%s", rx_last_error());
        rx_optim_stats st;
        cr_assert_eq(rx_adamw_step(c, &opt, 2e-3f, &st), RX_OK, "%s", rx_last_error());
        gnorm[k] = st.grad_norm;
        cr_assert_eq(rx_ema_update(c, &ema_set, &m[k]->params, 0.9f, 0, opt.step), RX_OK, "%s", rx_last_error());
        after[k] = gather(c, &m[k]->params, 0);
        moments[k] = gather(c, &opt.v, 0);
        ema[k] = gather(c, &ema_set, 0);
        rx_adamw_free(&opt);
        rx_paramset_free(&ema_set);
    }
    cr_expect(fabs(gnorm[1] - gnorm[0]) <= 1e-9 * gnorm[0], "grad norm: cuda %.12g cpu %.12g", gnorm[1], gnorm[0]);
    compare_tensors(&m[0]->params, after[1], after[0], 1e-6, 0, "parameter after AdamW");
    compare_tensors(&m[0]->params, moments[1], moments[0], 1e-6, 0, "exp_avg_sq after AdamW");
    compare_tensors(&m[0]->params, ema[1], ema[0], 1e-6, 0, "EMA after the update");
    cr_log_info("unet step on %s: output %.2e, loss cuda %.7f cpu %.7f", p.device, out_err, loss[1], loss[0]);
    for (int k = 0; k < 2; k++) {
        rx_model_destroy(m[k]);
        free(out[k]); free(grads[k]); free(after[k]); free(moments[k]); free(ema[k]);
    }
    free_batch(&b);
    px_close(&p);
}

/* DiT: layer_norm, modulate (adaLN), gelu, attention, linear, embedding, unpatchify, slice */
Test(cuda_models, dit_gradients_match_the_cpu) {
    px_pair p;
    px_open(&p, 0, 0);
    rx_model *m[2];
    float *out[2], loss[2], *grads[2];
    batch b = make_batch(2, 3, 8, 6);
    for (int k = 0; k < 2; k++) {
        rx_ctx *c = k ? p.gpu : p.cpu;
        m[k] = model_of(c, &rx_comp_model_dit, small_dit);
        /* adaLN-Zero starts with zero gates and a zero final layer: random weights make every path live */
        for (int i = 0; i < m[k]->params.n; i++) {
            rx_tensor *t = m[k]->params.t[i];
            float *h = host_randn(t->numel, 100 + (uint64_t)i, 0.05f);
            cr_assert_eq(rx_tensor_from_host(c, t, h), RX_OK);
            free(h);
        }
        out[k] = train_forward_backward(c, m[k], &b, 6, &loss[k]);
        grads[k] = gather(c, &m[k]->params, 1);
    }
    const double out_err = rx_rel_err(out[1], out[0], 2 * 6 * 8 * 8);
    cr_expect(out_err <= TOL_NET, "dit output: relative error %.3g", out_err);
    cr_expect(fabs(loss[1] - loss[0]) <= 1e-5 * fabs(loss[0]), "loss: cuda %.9g cpu %.9g", loss[1], loss[0]);
    compare_tensors(&m[0]->params, grads[1], grads[0], TOL_NET, 1e-3, "gradient");
    for (int k = 0; k < 2; k++) {
        rx_model_destroy(m[k]);
        free(out[k]);
        free(grads[k]);
    }
    free_batch(&b);
    px_close(&p);
}

/* ---- sampling ------------------------------------------------------------------------------------ */

typedef struct { rx_ctx *c; rx_model *m; int C, S; } net_ctx;

/* the sampler's view of the network (as runner/sample.c): upload, forward without grad, download */
static rx_status net_denoise(void *vctx, int n, const float *x, const float *t, const int32_t *labels, float *out) {
    net_ctx *nc = vctx;
    rx_ctx *c = nc->c;
    const int64_t xs[4] = {n, nc->C, nc->S, nc->S}, bs[1] = {n};
    float lf[64];
    if (n > 64) return rx_fail(RX_ERR_ARG, "test denoiser: at most 64 images");
    for (int i = 0; i < n; i++) lf[i] = labels ? (float)labels[i] : 3.0f;
    rx_tensor *X = rx_from_host(c, 4, xs, x), *T = rx_from_host(c, 1, bs, t), *L = rx_from_host(c, 1, bs, lf);
    rx_tensor *Y = nc->m->impl->forward(c, nc->m, X, T, L);
    rx_status s = Y ? rx_tensor_to_host(c, Y, out) : rx_ctx_status(c);
    rx_step_end(c);
    return s;
}

/* n images of the U-Net through `sampler` (5 steps, linear schedule) on context c */
static float *sample_images(rx_ctx *c, const rx_component *sampler, int n) {
    rx_model *m = model_of(c, &rx_comp_model_unet, small_unet);
    rx_set_grad_enabled(c, 0);
    c->training = 0;
    rx_params *sp = params_of(&rx_comp_schedule_linear, (const char *const[]){NULL});
    rx_schedule sched;
    cr_assert_eq(((const rx_schedule_impl *)rx_comp_schedule_linear.impl)->build(sp, &sched), RX_OK, "%s", rx_last_error());
    rx_params *pp = params_of(sampler, (const char *const[]){"steps", "5", NULL});
    const int d = 3 * 16 * 16;
    float *x = malloc((size_t)n * d * sizeof *x);
    int32_t labels[8];
    int64_t index[8];
    for (int i = 0; i < n; i++) { labels[i] = i % 3; index[i] = 100 + i; }
    net_ctx nc = {c, m, 3, 16};
    const rx_sampler_impl *impl = sampler->impl;
    const rx_sample_request r = {.schedule = &sched, .prediction_type = RX_PRED_EPSILON, .denoise = net_denoise,
                                 .denoise_ctx = &nc, .n = n, .d = d, .labels = labels, .image_index = index, .seed = 42,
                                 .x_out = x};
    cr_assert_eq(impl->run(pp, &r), RX_OK, "%s sampling: %s", sampler->name, rx_last_error());
    rx_params_free(pp);
    rx_params_free(sp);
    rx_schedule_free(&sched);
    rx_model_destroy(m);
    return x;
}

Test(cuda_models, sampling_matches_the_cpu_and_is_reproducible) {
    const rx_component *samplers[2] = {&rx_comp_sampler_ddim, &rx_comp_sampler_ddpm};
    const int n = 4, d = 3 * 16 * 16;
    for (int s = 0; s < 2; s++) {
        px_pair p;
        px_open(&p, 0, 1);
        float *cpu = sample_images(p.cpu, samplers[s], n), *gpu = sample_images(p.gpu, samplers[s], n);
        px_close(&p);
        const double e = rx_rel_err(gpu, cpu, (long)n * d);
        cr_expect(e <= 1e-3, "%s: CUDA images differ from the CPU's by %.3g (relative)", samplers[s]->name, e);
        /* deterministic: a fresh context (new algorithm choice, new buffers) gives the same bits */
        px_open(&p, 0, 1);
        float *again = sample_images(p.gpu, samplers[s], n);
        px_close(&p);
        cr_expect_eq(memcmp(gpu, again, (size_t)n * d * sizeof(float)), 0, "%s: two deterministic CUDA runs differ",
                     samplers[s]->name);
        cr_log_info("%s: CUDA vs CPU %.2e", samplers[s]->name, e);
        free(cpu); free(gpu); free(again);
    }
}
