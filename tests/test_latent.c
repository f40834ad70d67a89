/* test_latent.c — latent diffusion (the `latent:` section, runner/latent.c) and the `vae` objective
 * (runner/vae_objective.c).
 *
 * References:
 *   - the latents stage: the VAE's posterior as encode computes it (its parity with diffusers'
 *     AutoencoderKL is tests/test_models_vae.c) on the synthetic images normalised here by the
 *     formula x/127.5 - 1, scaled by scaling_factor; the posterior draws' eps = Philox N(0, 1) keyed
 *     by (seed, RX_RNG_LATENT, image index) (core/philox.h);
 *   - the vae loss: diffusers' own encode/forward of tests/fixtures/vae_small/io.safetensors (mean,
 *     logvar, out = decode(mean)) put through the loss formula in double here;
 *   - bad input: the command-line contract (exit 2, file:line:column, nothing written).
 * experiments/smoke/ldm_synthetic.yaml is the experiment: tests/fixtures/vae_small's VAE (16x16x3
 * <-> 4x8x8), a U-Net on the latents. */
#include "blocks/model.h"
#include "core/philox.h"
#include "data/dataset.h"
#include "registry/components.h"
#include "runner/checkpoint.h"
#include "runner/experiment.h"
#include "gradcheck.h"
#include "runexp_harness.h"

TestSuite(latent, .init = setup, .fini = teardown, .timeout = 120);

#define LDM "experiments/smoke/ldm_synthetic.yaml"
#define VAE_W "tests/fixtures/vae_small/diffusion_pytorch_model.safetensors"

/* the one latents file a results root holds */
static const char *latents_file(const char *root) {
    DIR *d = opendir(P("%s/_cache", root));
    cr_assert(d, "%s/_cache missing", root);
    struct dirent *e;
    const char *found = NULL;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "latents_", 8)) {
            cr_assert_null(found, "more than one latents file in %s/_cache", root);
            found = own(strdup(P("%s/_cache/%s", root, e->d_name)));
        }
    closedir(d);
    cr_assert(found, "no latents file in %s/_cache", root);
    return found;
}

static float *read_f32(const char *path, const char *name, int64_t *n) {
    rx_st_file *f = NULL;
    ASSERT_OK(rx_st_open(path, &f));
    const rx_st_tensor *t = rx_st_find(f, name);
    cr_assert(t, "%s: no %s", path, name);
    float *h = own(malloc(t->numel * sizeof *h));
    ASSERT_OK(rx_st_read_f32(f, name, h, t->numel));
    *n = t->numel;
    rx_st_close(f);
    return h;
}

/* mean and std of the fixture VAE's posterior for the 64 synthetic training images of the smoke
 * experiment (dataset: synthetic, 64 images, 16x16x3, seed 0; transform normalize) */
static void reference_posterior(float *mean, float *std) {
    rx_params *dp = NULL;
    ASSERT_OK(rx_params_from_defaults("synthetic", rx_comp_dataset_synthetic.params, &dp));
    ASSERT_OK(rx_params_set(dp, "num_images", "64"));
    ASSERT_OK(rx_params_set(dp, "size", "16"));
    ASSERT_OK(rx_params_set(dp, "num_classes", "4"));
    rx_dataset *d = NULL;
    ASSERT_OK(rx_dataset_load(&rx_comp_dataset_synthetic, dp, "train", &d));
    const int64_t dx = 3 * 16 * 16, dz = 4 * 8 * 8;
    float *x = malloc(64 * dx * sizeof *x), *moments = malloc(64 * 2 * dz * sizeof *moments);
    for (int64_t i = 0; i < 64 * dx; i++) x[i] = d->pixels[i] / 127.5f - 1.0f;   /* normalize: [0,255] -> [-1,1] */
    rx_ctx *c = rx_test_cpu_ctx();
    rx_params *vp = NULL;
    ASSERT_OK(rx_params_from_defaults("autoencoder_kl", rx_comp_model_autoencoder_kl.params, &vp));
    static const char *const kv[] = {"sample_size", "16", "block_out_channels", "[8, 16]", "layers_per_block", "2",
                                     "norm_num_groups", "4", "down_block_types", "[DownEncoderBlock2D, DownEncoderBlock2D]",
                                     "up_block_types", "[UpDecoderBlock2D, UpDecoderBlock2D]", NULL};
    for (int i = 0; kv[i]; i += 2) ASSERT_OK(rx_params_set(vp, kv[i], kv[i + 1]));
    rx_model *m = NULL;
    ASSERT_OK(rx_model_create(c, &rx_comp_model_autoencoder_kl, vp, 0, &m));
    ASSERT_OK(rx_model_load_weights(c, m, VAE_W, 0));
    rx_set_grad_enabled(c, 0);
    rx_tensor *M = m->impl->encode(c, m, rx_from_host(c, RX_SHAPE(64, 3, 16, 16), x));
    cr_assert(M, "%s", rx_last_error());
    ASSERT_OK(rx_tensor_to_host(c, M, moments));
    rx_vae_posterior_host(moments, 64, 4, 64, mean, std);
    free(x);
    free(moments);
    rx_model_destroy(m);
    rx_params_free(vp);
    rx_params_free(dp);
    rx_dataset_free(d);
    rx_ctx_destroy(c);
}

static double max_abs_diff(const float *a, const float *b, int64_t n, double *scale) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    if (scale) *scale = s;
    return e;
}

/* sample_posterior false: the cached latents are the posterior mean, in dataset order; true:
 * z - mean = std * eps with eps keyed by the image index, whatever latent.batch_size; the cache holds
 * them unscaled, so another scaling_factor reuses it */
Test(latent, stage_caches_the_scaled_posterior) {
    const int64_t N = 64 * 4 * 8 * 8;
    float *mean = own(malloc(N * sizeof(float))), *std = own(malloc(N * sizeof(float)));
    reference_posterior(mean, std);

    const char *root = T("mean");
    result r = RUNEXP("mean", LDM, "--results", root, "--set", "latent.sample_posterior=false", "--set", "sample=null");
    cr_assert_eq(r.code, 0, "%s", r.err);
    int64_t n;
    float *z = read_f32(latents_file(root), "latents", &n);
    cr_assert_eq(n, N);
    double scale, e = max_abs_diff(z, mean, N, &scale);
    cr_expect_lt(e, 1e-5 * scale, "cached latents vs the posterior mean: max error %g (max |mean| %g)", e, scale);

    /* posterior draws, encoded 5 at a time (the experiment says 16): the same latents */
    root = T("draw");
    r = RUNEXP("draw", LDM, "--results", root, "--set", "latent.batch_size=5", "--set", "sample=null");
    cr_assert_eq(r.code, 0, "%s", r.err);
    z = read_f32(latents_file(root), "latents", &n);
    float *eps = own(malloc(256 * sizeof(float)));
    double worst = 0;
    for (int64_t i = 0; i < 64; i++) {
        rx_rng_normal(1, RX_STREAM(RX_RNG_LATENT, i), 0, eps, 256);   /* seed 1: the experiment's */
        for (int j = 0; j < 256; j++) {
            int64_t k = i * 256 + j;
            worst = fmax(worst, fabs((z[k] - mean[k]) / std[k] - eps[j]));
        }
    }
    cr_expect_lt(worst, 1e-3, "(z - mean)/std vs Philox eps of the image index: max error %g", worst);

    /* the same experiment again, with another scaling_factor: the latents come from the cache, and the
     * model trains on them times the new factor (the logged std scales with it) */
    r = RUNEXP("again", LDM, "--results", root, "--set", "latent.batch_size=5", "--set", "sample=null", "--force",
               "--set", "latent.scaling_factor=1.0");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(run_field(r.last, "latents_reused_from"), "_cache/latents_"), "second run re-encoded: %s", r.err);
    double sd = 0;
    for (int64_t i = 0; i < N; i++) sd += (double)z[i] * z[i];
    json_t *rec = load_json(P("%s/run.json", r.last));
    double logged = json_real_value(json_object_get(rec, "latent_std"));
    json_decref(rec);
    cr_expect(logged > 0.9 * sqrt(sd / N) && logged < 1.1 * sqrt(sd / N), "latent_std %g at scaling_factor 1, rms of z %g", logged,
              sqrt(sd / N));
}

/* the sample stage writes decoded images: 16x16x3, not the model's 8x8x4 latents */
Test(latent, samples_are_decoded_images) {
    const char *root = T("res");
    result r = RUNEXP("run", LDM, "--results", root);
    cr_assert_eq(r.code, 0, "%s", r.err);
    rx_st_file *f = NULL;
    ASSERT_OK(rx_st_open(P("%s/samples/samples.safetensors", r.last), &f));
    cr_expect_eq(rx_st_check_shape(f, "images", 4, (const int64_t[]){8, 3, 16, 16}), RX_OK, "%s", rx_last_error());
    rx_st_close(f);
    cr_expect(strstr(read_text(P("%s/log.txt", r.last)), "latents: encoding 64 images"));
}

/* bad input: exit 2, the position of the offending key, no results directory */
Test(latent, bad_input_exits_2_with_position_and_writes_nothing) {
    const struct { const char *set, *expect; } cases[] = {
        {"model.in_channels=3", "model.in_channels: 3, but latent.vae (autoencoder_kl) turns 16x16 images into 4x8x8 latents"},
        {"model.sample_size=16", "so in_channels: 4, out_channels: 4, sample_size: 8"},
        {"latent.vae.weights=no/such/vae.safetensors", "latent.vae.weights: cannot read 'no/such/vae.safetensors'"},
        {"latent.vae.name=resnet_classifier", "latent.vae: model 'resnet_classifier' is not an autoencoder"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *root = T("bad%zu", i);
        result r = RUNEXP(P("bad%zu", i), LDM, "--results", root, "--set", cases[i].set);
        cr_expect_eq(r.code, 2, "--set %s: exit %d", cases[i].set, r.code);
        cr_expect(strstr(r.err, cases[i].expect), "--set %s: stderr:\n%s", cases[i].set, r.err);
        cr_expect(strstr(r.err, "<command line>:--set:1:"), "--set %s: no position in:\n%s", cases[i].set, r.err);
        cr_expect_neq(access(root, F_OK), 0, "--set %s: %s was created", cases[i].set, root);
    }
    /* a VAE without weights (random init) is for smoke runs only */
    const char *root = T("noweights");
    result r = RUNEXP("noweights", LDM, "--results", root, "--set", "latent.vae.weights=null", "--set", "latent.vae.sample_size=16",
                      "--set", "latent.vae.block_out_channels=[8, 16]",
                      "--set", "latent.vae.down_block_types=[DownEncoderBlock2D, DownEncoderBlock2D]",
                      "--set", "latent.vae.up_block_types=[UpDecoderBlock2D, UpDecoderBlock2D]",
                      "--set", "latent.vae.norm_num_groups=4");
    cr_expect_eq(r.code, 2, "exit %d: %s", r.code, r.err);
    cr_expect(strstr(r.err, "ldm_synthetic.yaml:") && strstr(r.err, "latent.vae.weights: none given"), "%s", r.err);
    cr_expect_neq(access(root, F_OK), 0);
    r = RUNEXP("noweights_smoke", LDM, "--results", root, "--smoke", "--set", "latent.vae.weights=null",
               "--set", "latent.vae.sample_size=16", "--set", "latent.vae.block_out_channels=[8, 16]",
               "--set", "latent.vae.down_block_types=[DownEncoderBlock2D, DownEncoderBlock2D]",
               "--set", "latent.vae.up_block_types=[UpDecoderBlock2D, UpDecoderBlock2D]", "--set", "latent.vae.norm_num_groups=4");
    cr_expect_eq(r.code, 0, "smoke with a random VAE: %s", r.err);
}

/* the experiment the vae loss sees: tests/fixtures/vae_small's VAE (3x16x16 images) and objective vae
 * with sample_posterior false (decode the mean: deterministic) and kl_weight 0.25 */
static void small_vae_experiment(rx_ctx *c, rx_experiment *ex, rx_params **vp, rx_params **op) {
    ASSERT_OK(rx_params_from_defaults("autoencoder_kl", rx_comp_model_autoencoder_kl.params, vp));
    static const char *const kv[] = {"sample_size", "16", "block_out_channels", "[8, 16]", "layers_per_block", "2",
                                     "norm_num_groups", "4", "down_block_types", "[DownEncoderBlock2D, DownEncoderBlock2D]",
                                     "up_block_types", "[UpDecoderBlock2D, UpDecoderBlock2D]", NULL};
    for (int i = 0; kv[i]; i += 2) ASSERT_OK(rx_params_set(*vp, kv[i], kv[i + 1]));
    memset(ex, 0, sizeof *ex);
    ex->ctx = c;
    ex->seed = 3;
    ex->data_c = 3;
    ex->data_h = ex->data_w = 16;
    ASSERT_OK(rx_model_create(c, &rx_comp_model_autoencoder_kl, *vp, 0, &ex->model));
    ASSERT_OK(rx_model_load_weights(c, ex->model, VAE_W, 0));
    ASSERT_OK(rx_params_from_defaults("vae", rx_comp_objective_vae.params, op));
    ASSERT_OK(rx_params_set(*op, "sample_posterior", "false"));
    ASSERT_OK(rx_params_set(*op, "kl_weight", "0.25"));
    ex->objective = (rx_section_ref){&rx_comp_objective_vae, *op};
}

/* objective vae on diffusers' numbers: sample_posterior false decodes the mean, so the loss is
 *   Σ rec(out - x) / B + kl_weight ½ Σ (mean² + e^logvar - 1 - logvar) / B
 * with out, mean, logvar from diffusers (tests/fixtures/vae_small/io.safetensors) */
Test(latent, vae_loss_matches_the_formula_on_diffusers_outputs) {
    const char *io = "tests/fixtures/vae_small/io.safetensors";
    int64_t nx, no, nm, nl;
    float *x = read_f32(io, "x", &nx), *out = read_f32(io, "out", &no), *mean = read_f32(io, "mean", &nm);
    float *logvar = read_f32(io, "logvar", &nl);
    cr_assert(nx == no && nm == nl);
    double l1 = 0, l2 = 0, kl = 0;
    for (int64_t i = 0; i < nx; i++) { l1 += fabs((double)out[i] - x[i]); l2 += ((double)out[i] - x[i]) * ((double)out[i] - x[i]); }
    for (int64_t i = 0; i < nm; i++) kl += 0.5 * ((double)mean[i] * mean[i] + exp(logvar[i]) - 1 - logvar[i]);
    const int B = 2;

    rx_ctx *c = rx_test_cpu_ctx();
    rx_params *vp = NULL, *op = NULL;
    rx_experiment ex;
    small_vae_experiment(c, &ex, &vp, &op);
    rx_train_batch b = {.n = B, .x0 = x};
    const char *recs[] = {"l1", "l2"};
    const double want_rec[] = {l1, l2};
    for (int k = 0; k < 2; k++) {
        ASSERT_OK(rx_params_set(op, "reconstruction", recs[k]));
        rx_tensor *loss = NULL;
        ASSERT_OK(rx_vae_loss(&ex, &b, 1, &loss));
        float got;
        ASSERT_OK(rx_tensor_to_host(c, loss, &got));
        double want = want_rec[k] / B + 0.25 * kl / B;
        cr_expect_lt(fabs(got - want), 1e-5 * fabs(want), "%s: loss %.8g, formula on diffusers' outputs %.8g", recs[k], got, want);
        cr_log_info("vae loss (%s): %.8g vs %.8g", recs[k], got, want);
        ASSERT_OK(rx_backward(c, loss));   /* the tape runs back through exp/abs into every parameter */
        rx_tensor *g = rx_paramset_find(&ex.model->params, "encoder.conv_in.weight");
        cr_assert(g && g->grad);
        rx_step_end(c);
        ASSERT_OK(rx_paramset_zero_grad(c, &ex.model->params));
    }
    rx_model_destroy(ex.model);
    rx_params_free(vp);
    rx_params_free(op);
    rx_ctx_destroy(c);
}

/* the VAE experiment runs end to end (smoke) and says what it measured */
Test(latent, vae_objective_smoke_run_reports_reconstruction_metrics) {
    const char *root = T("vae");
    result r = RUNEXP("vae", "experiments/features/vae_mnist.yaml", "--results", root, "--smoke");
    if (r.code != 0 && strstr(r.err, "not found")) cr_skip_test("MNIST is not in data/ (make data)");
    cr_assert_eq(r.code, 0, "%s", r.err);
    json_t *ev = load_json(P("%s/eval.json", r.last));
    json_t *m = json_object_get(ev, "metrics");
    cr_expect(json_is_real(json_object_get(m, "recon_psnr")) && json_is_real(json_object_get(m, "recon_fd_mnist_classifier")),
              "eval.json metrics: %s", json_dumps(m, JSON_COMPACT));
    cr_expect_eq(access(P("%s/samples/reconstructions.png", r.last), F_OK), 0);
}

/* objective vae and an autoencoder model go together: either without the other is refused at its key */
Test(latent, vae_objective_needs_an_autoencoder_and_back) {
    const char *root = T("mix");
    result r = RUNEXP("unet", "experiments/features/vae_mnist.yaml", "--results", root, "--set", "model=unet");
    cr_expect_eq(r.code, 2);
    cr_expect(strstr(r.err, "<command line>:--set:1:7: model: objective vae trains an autoencoder (autoencoder_kl), not unet"),
              "%s", r.err);
    r = RUNEXP("ddpm", "experiments/features/vae_mnist.yaml", "--results", root, "--set", "objective=ddpm");
    cr_expect_eq(r.code, 2);
    cr_expect(strstr(r.err, "objective: model autoencoder_kl is an autoencoder; it trains with objective vae"), "%s", r.err);
    cr_expect_neq(access(root, F_OK), 0);
}

/* the perceptual term, P = w · C·H·W · Σ_s mean (φ_s(x̂) - φ_s(x))² (the means over the batch too), in double on the host from the
 * frozen classifier's stage outputs of the VAE's reconstruction and of x (grad off) */
static double perceptual_reference(rx_experiment *ex, const float *x, int B) {
    rx_ctx *c = ex->ctx;
    rx_set_grad_enabled(c, 0);
    rx_tensor *X = rx_from_host(c, RX_SHAPE(B, 3, 16, 16), x);
    rx_tensor *xhat = ex->model->impl->forward(c, ex->model, X, NULL, NULL);   /* decode(mean) */
    rx_tensor *fa[8], *fb[8];
    const int n = rx_classifier_stages(c, ex->perceptual, xhat, fa, 8);
    cr_assert_eq(rx_classifier_stages(c, ex->perceptual, X, fb, 8), n);
    cr_assert_gt(n, 1);
    double p = 0;
    for (int st = 0; st < n; st++) {
        float *a = malloc(fa[st]->numel * sizeof *a), *b = malloc(fb[st]->numel * sizeof *b);
        ASSERT_OK(rx_tensor_to_host(c, fa[st], a));
        ASSERT_OK(rx_tensor_to_host(c, fb[st], b));
        double sq = 0;
        for (int64_t i = 0; i < fa[st]->numel; i++) sq += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        p += sq / (double)fa[st]->numel;
        free(a);
        free(b);
    }
    rx_step_end(c);
    rx_set_grad_enabled(c, 1);
    return rx_param_float(ex->objective.params, "perceptual_weight") * 3 * 16 * 16 * p;
}

/* loss (and d loss / d p for the parameter elements in `probe`) with or without the perceptual net */
static double vae_loss_and_grads(rx_experiment *ex, rx_model *perceptual, float *x, int B, rx_tensor *probe, double *g) {
    rx_ctx *c = ex->ctx;
    ex->perceptual = perceptual;
    rx_train_batch b = {.n = B, .x0 = x};
    rx_tensor *loss = NULL;
    ASSERT_OK(rx_vae_loss(ex, &b, 1, &loss));
    float got;
    ASSERT_OK(rx_tensor_to_host(c, loss, &got));
    ASSERT_OK(rx_backward(c, loss));
    float *gr = malloc(probe->numel * sizeof *gr);
    ASSERT_OK(rx_tensor_to_host(c, probe->grad, gr));
    for (int64_t i = 0; i < probe->numel; i++) g[i] = gr[i];
    free(gr);
    rx_step_end(c);
    ASSERT_OK(rx_paramset_zero_grad(c, &ex->model->params));
    return got;
}

/* objective vae's perceptual term (perceptual_weight, perceptual_net): the loss grows by exactly the
 * formula's P (against the host computation above), its gradient is P's central finite difference
 * (the tape runs back through the frozen classifier into x̂), and the classifier's own parameters
 * get no gradient */
Test(latent, vae_perceptual_term_matches_its_formula_and_finite_differences) {
    const char *io = "tests/fixtures/vae_small/io.safetensors";
    int64_t nx;
    float *x = read_f32(io, "x", &nx);
    const int B = 2;
    cr_assert_eq(nx, B * 3 * 16 * 16);
    rx_ctx *c = rx_test_cpu_ctx();
    rx_params *vp = NULL, *op = NULL;
    rx_experiment ex;
    small_vae_experiment(c, &ex, &vp, &op);
    ASSERT_OK(rx_params_set(op, "perceptual_weight", "0.5"));
    ASSERT_OK(rx_params_set(op, "perceptual_net", "models/cifar10_classifier.safetensors"));
    ASSERT_OK(rx_vae_perceptual_open(&ex));
    rx_model *net = ex.perceptual;
    cr_assert(net);

    rx_tensor *probe = rx_paramset_find(&ex.model->params, "decoder.conv_out.bias");   /* [3] */
    cr_assert(probe && probe->numel == 3);
    double g0[3], gw[3];
    const double l0 = vae_loss_and_grads(&ex, NULL, x, B, probe, g0);
    const double lw = vae_loss_and_grads(&ex, net, x, B, probe, gw);
    const double P = perceptual_reference(&ex, x, B);
    cr_log_info("vae loss %.8g, with the perceptual term %.8g; P = %.8g", l0, lw, P);
    cr_assert_gt(P, 1e-3 * l0, "the perceptual term is too small to test (%g)", P);
    cr_expect_lt(fabs((lw - l0) - P), 2e-5 * fabs(lw) + 1e-4 * P, "loss grew by %.8g, formula P %.8g", lw - l0, P);

    for (int k = 0; k < 3; k++) {   /* d P / d bias_k: autograd (with - without) against the central difference */
        const float h = 1e-2f, keep = probe->data[k];
        probe->data[k] = keep + h;
        const double up = perceptual_reference(&ex, x, B);
        probe->data[k] = keep - h;
        const double down = perceptual_reference(&ex, x, B);
        probe->data[k] = keep;
        const double fd = (up - down) / (2 * h), ad = gw[k] - g0[k];
        cr_log_info("d P / d %s[%d]: autograd %.6g, finite difference %.6g", probe->name, k, ad, fd);
        cr_expect_lt(fabs(ad - fd), 2e-2 * fabs(fd) + 1e-3, "d P / d bias[%d]: autograd %g, finite difference %g", k, ad, fd);
    }
    for (int i = 0; i < net->params.n; i++) {   /* frozen: nothing flowed into its parameters */
        rx_tensor *t = net->params.t[i];
        cr_expect_eq(t->requires_grad, 0, "%s requires grad", t->name);
        if (!t->grad) continue;
        float *gh = malloc(t->numel * sizeof *gh);
        ASSERT_OK(rx_tensor_to_host(c, t->grad, gh));
        double a = 0;
        for (int64_t j = 0; j < t->numel; j++) a += fabs(gh[j]);
        cr_expect_eq(a, 0.0, "%s has a gradient", t->name);
        free(gh);
    }
    rx_model_destroy(net);
    rx_config_free(ex.perceptual_cfg);
    rx_model_destroy(ex.model);
    rx_params_free(vp);
    rx_params_free(op);
    rx_ctx_destroy(c);
}

/* the perceptual term's bad input: a weight without a network, a network that is not there or takes
 * other images than the VAE's: exit 2 at the key, nothing written; with a fitting one the run trains */
Test(latent, vae_perceptual_term_bad_input_and_smoke_run) {
    const char *root = T("perceptual");
    static const struct { const char *set, *want; } bad[] = {
        {NULL, "objective.perceptual_weight: 0.5 needs objective.perceptual_net"},
        {"objective.perceptual_net=no/such.safetensors", "objective.perceptual_net: cannot read 'no/such.safetensors'"},
        {"objective.perceptual_net=models/cifar10_classifier.safetensors",
         "objective.perceptual_net: models/cifar10_classifier.safetensors takes 3-channel images, the VAE's are 1-channel"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        result r = bad[i].set ? RUNEXP("bad", "experiments/features/vae_mnist.yaml", "--results", root, "--smoke", "--set",
                                       "objective.perceptual_weight=0.5", "--set", bad[i].set)
                              : RUNEXP("bad", "experiments/features/vae_mnist.yaml", "--results", root, "--smoke", "--set",
                                       "objective.perceptual_weight=0.5");
        cr_expect_eq(r.code, 2, "%s: exit %d", bad[i].want, r.code);
        cr_expect(strstr(r.err, "<command line>:--set:") && strstr(r.err, bad[i].want), "want '%s' in: %s", bad[i].want, r.err);
    }
    cr_expect_neq(access(root, F_OK), 0, "a refused config wrote %s", root);
    result r = RUNEXP("ok", "experiments/features/vae_mnist.yaml", "--results", root, "--smoke", "--set",
                      "objective.perceptual_weight=0.5", "--set", "objective.perceptual_net=models/mnist_classifier.safetensors");
    if (r.code != 0 && strstr(r.err, "not found")) cr_skip_test("MNIST is not in data/ (make data)");
    cr_assert_eq(r.code, 0, "%s", r.err);
}
