/* vae_objective.c — the `vae` objective: trains an autoencoder (autoencoder_kl) as the LDM first stage
 * (Rombach et al. 2022, their autoencoder's loss without the perceptual and adversarial terms):
 *
 *   moments = encode(x) = [mu | logvar];  z = mu + exp(logvar / 2) * eps   (sample_posterior; else z = mu)
 *   loss = (1/B) Σ_i rec(decode(z_i), x_i) + kl_weight (1/B) Σ_i KL(N(mu_i, σ_i²) ‖ N(0, I))
 *   rec  = Σ_pixels |x̂ - x| (l1) or Σ_pixels (x̂ - x)² (l2),   KL = ½ Σ (mu² + σ² - 1 - logvar)
 *
 * per-image sums, as LDM's LPIPSWithDiscriminator sums them (so kl_weight means what it means there:
 * 1e-6 for the SD VAE). With perceptual_weight w > 0 a perceptual term (Johnson et al. 2016's feature
 * reconstruction loss, in the place LDM puts LPIPS) is added per image:
 *
 *   perc(x̂, x) = Σ_s mean_{c,h,w} (φ_s(x̂) - φ_s(x))²      φ_s: stage s of perceptual_net, frozen
 *   loss += w · C·H·W · (1/B) Σ_i perc(x̂_i, x_i)
 *
 * C·H·W because LDM adds p_weight · LPIPS to every pixel's |x̂ - x| before the per-image sum. φ is
 * one of our resnet_classifier checkpoints (models/cifar10_classifier.safetensors for CIFAR-10): not
 * LPIPS, whose VGG/AlexNet weights and learned layer weights cannot be had here. Note that eval's
 * recon_fd uses a classifier's features too: trained against the same network, that FD flatters
 * the model; the PSNR does not. eps ~ N(0, I) from Philox keyed by (seed, step). The logvar is not clamped
 * while training (diffusers clamps it to [-30, 20] only when it builds a posterior); the KL term keeps
 * it near 0. The eval stage reconstructs the reference split through the posterior mean and reports
 * the PSNR and the Fréchet distance of the reconstructions' features against the originals'. */
#include "runner/experiment.h"
#include "core/philox.h"
#include "eval/featstats.h"
#include "eval/features.h"
#include "eval/frechet.h"
#include "io/png.h"
#include <math.h>
#include <string.h>

static const rx_param_spec vae_params[] = {
    {"reconstruction", RX_P_CHOICE, "l1", RX_NO_RANGE, "l1|l2", "per-pixel reconstruction loss, summed over each image"},
    {"kl_weight", RX_P_FLOAT, "1e-06", 0, 1e6, NULL, "weight of the KL term against N(0, I) (LDM's SD VAE: 1e-6)"},
    {"sample_posterior", RX_P_BOOL, "true", RX_NO_RANGE, NULL, "decode a draw of the posterior (false: its mean)"},
    {"perceptual_weight", RX_P_FLOAT, "0", 0, 1e6, NULL,
     "weight of the perceptual term (squared stage-feature distance under perceptual_net, per pixel as LDM's LPIPS); 0: none"},
    {"perceptual_net", RX_P_PATH, "null", RX_NO_RANGE, NULL,
     "resnet_classifier checkpoint whose stage features the perceptual term compares (e.g. models/cifar10_classifier.safetensors)"},
    {0}};

static const rx_objective_impl vae_impl = {RX_TASK_VAE, NULL, NULL, 0};

const rx_component rx_comp_objective_vae = {
    RX_KIND_OBJECTIVE, "vae",
    "autoencoder training (LDM's first stage): L1 or L2 reconstruction + kl_weight * KL (+ a perceptual term)",
    vae_params, &vae_impl, NULL};

#define MAX_STAGES 8

rx_status rx_vae_perceptual_open(rx_experiment *ex) {
    const rx_params *p = ex->objective.params;
    if (rx_param_float(p, "perceptual_weight") <= 0) return RX_OK;
    if (rx_param_is_null(p, "perceptual_net"))   /* registry/checks.c refuses this first, at its key */
        return rx_fail(RX_ERR_CONFIG, "objective.perceptual_weight > 0 needs objective.perceptual_net");
    const char *path = rx_param_str(p, "perceptual_net");
    RX_TRY(rx_classifier_load(ex->ctx, path, &ex->perceptual, &ex->perceptual_cfg));
    rx_model_freeze(ex->perceptual);
    if (ex->perceptual->in_channels != ex->data_c) {
        const rx_cfg_node *at = rx_cfg_path(ex->cfg->root, "objective.perceptual_net");
        char where[600] = "";
        if (at && at->file && at->line > 0) snprintf(where, sizeof where, "%s:%d:%d: ", at->file, at->line, at->col);
        return rx_fail(RX_ERR_CONFIG, "%sobjective.perceptual_net: %s takes %d-channel images, the VAE's are %d-channel",
                       where, path, ex->perceptual->in_channels, ex->data_c);
    }
    rx_tensor *probe[MAX_STAGES];
    const int grad = ex->ctx->grad_enabled;
    rx_set_grad_enabled(ex->ctx, 0);   /* the stage count, and that it fits */
    int n = rx_classifier_stages(ex->ctx, ex->perceptual, rx_zeros(ex->ctx, RX_SHAPE(1, ex->data_c, ex->data_h, ex->data_w)),
                                 probe, MAX_STAGES);
    rx_status s = n < 0 ? rx_ctx_status(ex->ctx) : RX_OK;
    rx_step_end(ex->ctx);
    rx_set_grad_enabled(ex->ctx, grad);
    return s;
}

/* w · C·H·W · (1/B) Σ_i Σ_s mean (φ_s(x̂_i) - φ_s(x_i))², on the tape through x̂ only */
static rx_tensor *perceptual_term(rx_experiment *ex, rx_tensor *xhat, rx_tensor *x) {
    rx_ctx *c = ex->ctx;
    rx_tensor *fa[MAX_STAGES], *fb[MAX_STAGES];
    const int n = rx_classifier_stages(c, ex->perceptual, xhat, fa, MAX_STAGES);
    const int grad = c->grad_enabled;
    rx_set_grad_enabled(c, 0);   /* φ(x) is a constant of the loss */
    const int n2 = rx_classifier_stages(c, ex->perceptual, x, fb, MAX_STAGES);
    rx_set_grad_enabled(c, grad);
    if (n < 0 || n2 != n) return NULL;
    rx_tensor *sum = NULL;
    for (int st = 0; st < n; st++) {
        rx_tensor *d = rx_sub(c, fa[st], fb[st]);
        rx_tensor *m = rx_mean(c, rx_mul(c, d, d));   /* over B·C_s·H_s·W_s: the batch mean of per-image means */
        sum = sum ? rx_add(c, sum, m) : m;
    }
    const float chw = (float)(x->shape[1] * x->shape[2] * x->shape[3]);
    return rx_scale(c, sum, (float)rx_param_float(ex->objective.params, "perceptual_weight") * chw, 0.0f);
}

rx_status rx_vae_loss(rx_experiment *ex, rx_train_batch *b, int64_t step, rx_tensor **loss) {
    rx_ctx *c = ex->ctx;
    rx_model *m = ex->model;
    const rx_params *p = ex->objective.params;
    const int B = b->n, L = m->latent_channels;
    rx_tensor *X = rx_from_host(c, RX_SHAPE(B, ex->data_c, ex->data_h, ex->data_w), b->x0);
    rx_tensor *M = m->impl->encode(c, m, X);
    if (!M) return rx_ctx_status(c);
    const int64_t h = M->shape[2], w = M->shape[3], dz = (int64_t)L * h * w;
    rx_tensor *mu = rx_slice(c, M, 1, 0, L), *logvar = rx_slice(c, M, 1, L, L);
    rx_tensor *z = mu;
    if (rx_param_bool(p, "sample_posterior")) {
        float *eps = malloc((size_t)B * dz * sizeof *eps);
        if (!eps) return rx_fail(RX_ERR_OOM, "vae: out of memory");
        rx_rng_normal(ex->seed, RX_STREAM(RX_RNG_TRAIN_NOISE, step), 0, eps, B * dz);
        rx_tensor *E = rx_from_host(c, RX_SHAPE(B, L, h, w), eps);
        free(eps);
        z = rx_add(c, mu, rx_mul(c, rx_exp(c, rx_scale(c, logvar, 0.5f, 0.0f)), E));
    }
    rx_tensor *xhat = m->impl->decode(c, m, z);
    rx_tensor *diff = rx_sub(c, xhat, X);
    rx_tensor *rec = rx_sum(c, strcmp(rx_param_str(p, "reconstruction"), "l1") ? rx_mul(c, diff, diff) : rx_abs(c, diff));
    /* ½ Σ (mu² + e^logvar - logvar) / B - ½ L h w = ½ Σ (mu² + σ² - 1 - logvar) / B */
    rx_tensor *kl = rx_sum(c, rx_add(c, rx_mul(c, mu, mu), rx_sub(c, rx_exp(c, logvar), logvar)));
    kl = rx_scale(c, kl, 0.5f / B, -0.5f * (float)dz);
    *loss = rx_add(c, rx_scale(c, rec, 1.0f / B, 0.0f), rx_scale(c, kl, (float)rx_param_float(p, "kl_weight"), 0.0f));
    if (ex->perceptual && xhat) *loss = rx_add(c, *loss, perceptual_term(ex, xhat, X));
    return *loss ? RX_OK : rx_ctx_status(c);
}

// ---------------------------------------------------------------------------
// eval: reconstructions of the reference split

typedef struct recon_eval {
    rx_feature_extractor *fx;
    const rx_features_impl *fi;
    rx_featstats orig, rec;
    double sq_err;            /* Σ (x̂ - x)² over every value, x̂ clipped to [-1, 1] as an image would be */
    int64_t values, n;
    float *grid;              /* [2, k, C, H, W]: k originals, then their reconstructions */
    int k;
} recon_eval;

/* a batch x [n,C,H,W] -> x̂ through the posterior mean; errors, features and the grid's first images */
static rx_status recon_batch(rx_experiment *ex, recon_eval *e, const float *x, float *xr, float *feats, int n, int C, int H,
                             int W) {
    rx_ctx *c = ex->ctx;
    rx_model *m = ex->model;
    rx_tensor *Y = m->impl->forward(c, m, rx_from_host(c, RX_SHAPE(n, C, H, W), x), NULL, NULL);
    rx_status s = Y ? rx_tensor_to_host(c, Y, xr) : rx_ctx_status(c);
    rx_step_end(c);
    RX_TRY(s);
    const int64_t d = (int64_t)C * H * W;
    for (int64_t i = 0; i < n * d; i++) {
        xr[i] = fminf(fmaxf(xr[i], -1.0f), 1.0f);
        e->sq_err += ((double)xr[i] - x[i]) * ((double)xr[i] - x[i]);
    }
    e->values += n * d;
    for (int i = 0; i < n && e->n + i < e->k; i++) {
        memcpy(e->grid + (e->n + i) * d, x + i * d, d * sizeof(float));
        memcpy(e->grid + (e->k + e->n + i) * d, xr + i * d, d * sizeof(float));
    }
    e->n += n;
    RX_TRY(e->fi->extract(c, e->fx, x, n, C, H, W, feats, NULL));
    RX_TRY(rx_featstats_add(&e->orig, feats, n));
    RX_TRY(e->fi->extract(c, e->fx, xr, n, C, H, W, feats, NULL));
    return rx_featstats_add(&e->rec, feats, n);
}

static rx_status recon_all(rx_experiment *ex, rx_run *run, recon_eval *e, const rx_dataset *data, int64_t N, int B) {
    rx_transform_step steps[16];
    rx_transform_chain chain = rx_eval_transforms(ex, steps);
    int C, H, W;
    int64_t maxe;
    RX_TRY(rx_transform_chain_shape(&chain, data->channels, data->height, data->width, &C, &H, &W, &maxe));
    const int64_t d = (int64_t)C * H * W, img = (int64_t)data->channels * data->height * data->width;
    e->k = N < 8 ? (int)N : 8;
    float *x = malloc(B * d * sizeof *x), *xr = malloc(B * d * sizeof *xr), *work = malloc(2 * maxe * sizeof *work);
    float *feats = malloc((size_t)B * e->fx->feat_dim * sizeof *feats);
    e->grid = malloc(2 * e->k * d * sizeof *e->grid);
    rx_status s = x && xr && work && feats && e->grid ? RX_OK : rx_fail(RX_ERR_OOM, "eval: out of memory");
    for (int64_t b0 = 0; b0 < N && !s; b0 += B) {
        int n = (int)(N - b0 < B ? N - b0 : B);
        for (int i = 0; i < n && !s; i++)
            s = rx_transform_chain_apply(&chain, data->pixels + (b0 + i) * img, data->channels, data->height, data->width,
                                         x + i * d, work, ex->seed, RX_SAMPLE_KEY(0, b0 + i));
        if (!s) s = recon_batch(ex, e, x, xr, feats, n, C, H, W);
        if (!s && rx_interrupt_requested) s = rx_fail(RX_ERR_INTERRUPTED, "eval: interrupted");
    }
    if (!s) s = rx_featstats_finish(&e->orig);
    if (!s) s = rx_featstats_finish(&e->rec);
    char path[1200];
    snprintf(path, sizeof path, "%s/samples/reconstructions.png", run->dir);
    rx_png_grid grid = {2, e->k, 2, 1.0f, RX_PNG_RANGE_SIGNED};   /* originals above, reconstructions below */
    if (!s && e->k > 0) s = rx_png_write_grid_f32(path, e->grid, 2 * e->k, C, H, W, &grid);
    free(x); free(xr); free(work); free(feats);
    return s;
}

rx_status rx_stage_eval_vae(rx_experiment *ex, rx_run *run, json_t **metrics_out) {
    const double t0 = rx_now();
    const rx_component *fc;
    const rx_params *fp;
    if (rx_config_section_params(ex->cfg, "eval.features", &fc, &fp) != RX_OK)
        return rx_fail(RX_ERR_CONFIG, "eval.features: a feature extractor is needed to compare reconstructions "
                                      "(e.g. {name: classifier, weights: models/mnist_classifier.safetensors})");
    recon_eval e = {.fi = fc->impl};
    RX_TRY(e.fi->create(ex->ctx, fp, &e.fx));
    const char *split = rx_param_str(ex->eval, "reference_split");
    rx_dataset *data = NULL;
    rx_status s = rx_dataset_load(ex->dataset.comp, ex->dataset.params, split, &data);
    int64_t N = s ? 0 : rx_param_int(ex->eval, "num_images");
    if (data && N > data->n) N = data->n;
    if (ex->smoke && N > 8) N = 8;
    int B = (int)rx_param_int(ex->eval, "batch_size");
    if (!s) s = rx_featstats_init(&e.orig, e.fx->feat_dim);
    if (!s) s = rx_featstats_init(&e.rec, e.fx->feat_dim);
    const int grad = ex->ctx->grad_enabled;
    rx_set_grad_enabled(ex->ctx, 0);
    if (ex->ema.n) rx_experiment_swap_ema(ex);   /* the EMA weights, when trained with EMA */
    if (!s) s = recon_all(ex, run, &e, data, N, B);
    if (ex->ema.n) rx_experiment_swap_ema(ex);
    rx_set_grad_enabled(ex->ctx, grad);
    double fd = 0;
    if (!s) s = rx_featstats_frechet(&e.rec, &e.orig, &fd);
    json_t *metrics = json_object();
    if (!s) {
        const double mse = e.sq_err / (double)e.values, psnr = 10.0 * log10(4.0 / mse);   /* images in [-1, 1]: range 2 */
        char name[160];
        json_object_set_new(metrics, "recon_psnr", json_real(psnr));
        json_object_set_new(metrics, "recon_mse", json_real(mse));
        snprintf(name, sizeof name, "recon_fd_%s", e.fx->name);
        json_object_set_new(metrics, name, json_real(fd));
        rx_run_log(run, "eval: %lld reconstructions of %s: PSNR %.2f dB (mse %.5f in [-1,1]), %s = %.4g", (long long)N,
                   data->name, psnr, mse, name, fd);
        json_t *rec = json_object();
        json_object_set(rec, "metrics", metrics);
        json_object_set_new(rec, "extractor", json_string(e.fx->name));
        json_object_set_new(rec, "extractor_weights", json_string(e.fx->weights_path));
        json_object_set_new(rec, "extractor_hash", json_string(e.fx->weights_hash));
        json_object_set_new(rec, "reconstructed_images", json_integer(N));
        json_object_set_new(rec, "reference_split", json_string(split));
        json_object_set_new(rec, "dataset", json_string(data->name));
        json_object_set_new(rec, "posterior", json_string("mean"));
        json_object_set_new(rec, "ema", json_boolean(ex->ema.n > 0));
        s = rx_eval_write(run, rec);
        json_decref(rec);
    }
    if (!s && metrics_out) *metrics_out = json_incref(metrics);
    json_decref(metrics);
    rx_featstats_free(&e.orig);
    rx_featstats_free(&e.rec);
    free(e.grid);
    rx_dataset_free(data);
    if (e.fi->destroy) e.fi->destroy(e.fx);
    rx_run_stage_time(run, "eval", rx_now() - t0);
    return s;
}
