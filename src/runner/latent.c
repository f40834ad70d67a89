/* latent.c — latent diffusion (Rombach et al. 2022): the denoiser trains on a VAE's latents and its
 * samples are decoded to images.
 *
 *   latents stage:  z_i = mean_i + std_i * eps_i   (sample_posterior; else mean_i)
 *                   for every training image i through the eval transforms (no random augmentation:
 *                   the images are encoded once), eps_i ~ N(0, I) keyed by (seed, i). Cached in
 *                   <results>/_cache/latents_<hash>.safetensors, the hash covering everything z depends
 *                   on: seed, dataset, transforms, latent.vae, latent.sample_posterior, the data's bytes,
 *                   the VAE's weights (not scaling_factor: the model trains on z * scaling_factor, made
 *                   in memory, so trying another factor does not encode again).
 *   training:       batches of z (and labels) in the loader's order (a permutation per epoch)
 *   generation:     the sampler makes z; images = vae.decode(z / scaling_factor)
 * The VAE is frozen: it lives in the experiment's context beside the model but is never trained. */
#include "experiment.h"
#include "checkpoint.h"
#include "core/philox.h"
#include "data/loader.h"
#include "eval/features.h"
#include "io/fsutil.h"
#include "io/safetensors.h"
#include <math.h>
#include <string.h>
#include <xxhash.h>

rx_status rx_latent_open(rx_experiment *ex) {
    const rx_params *lp = NULL;
    RX_TRY(rx_config_section_params(ex->cfg, "latent", NULL, &lp));
    rx_latent_space *l = calloc(1, sizeof *l);
    if (!l) return rx_fail(RX_ERR_OOM, "latent: out of memory");
    ex->latent = l;
    l->scaling_factor = (float)rx_param_float(lp, "scaling_factor");
    l->sample_posterior = rx_param_bool(lp, "sample_posterior");
    l->batch = (int)rx_param_int(lp, "batch_size");
    RX_TRY(rx_config_section_params(ex->cfg, "latent.vae", &l->vae_sec.comp, &l->vae_sec.params));
    RX_TRY(rx_model_create(ex->ctx, l->vae_sec.comp, l->vae_sec.params, ex->seed, &l->vae));
    if (!l->vae->impl->encode)   /* config checking refuses this first (registry/checks.c) */
        return rx_fail(RX_ERR_CONFIG, "latent.vae: model '%s' is not an autoencoder", l->vae_sec.comp->name);
    const char *w = rx_param_is_null(l->vae_sec.params, "weights") ? NULL : rx_param_str(l->vae_sec.params, "weights");
    if (w) RX_TRY(rx_model_load_weights(ex->ctx, l->vae, w, 1));
    /* an untrained VAE's latents are noise: only a smoke run (which checks the plumbing) may use one */
    if (!w && !ex->smoke) {
        const rx_cfg_node *at = rx_cfg_path(ex->cfg->root, "latent.vae");
        char where[600] = "";
        if (at && at->file && at->line > 0) snprintf(where, sizeof where, "%s:%d:%d: ", at->file, at->line, at->col);
        return rx_fail(RX_ERR_CONFIG, "%slatent.vae.weights: none given; latent diffusion needs a trained VAE (a diffusers "
                       "AutoencoderKL file such as sd-vae-ft-mse's, or a checkpoint of experiments/features/vae_*.yaml); "
                       "only --smoke runs a randomly initialised one", where);
    }
    const rx_model *m = ex->model, *v = l->vae;
    if (m->in_channels != v->latent_channels || m->out_channels != v->latent_channels)
        return rx_fail(RX_ERR_CONFIG, "latent: the model takes %d and gives %d channels, latent.vae's latents have %d",
                       m->in_channels, m->out_channels, v->latent_channels);
    ex->image_c = v->out_channels;
    ex->image_h = ex->image_w = m->sample_size * v->latent_factor;
    return RX_OK;
}

void rx_latent_free(rx_latent_space *l) {
    if (!l) return;
    rx_model_destroy(l->vae);
    free(l->z);
    free(l->labels);
    free(l);
}

/* the latents' identity (see the top of the file) */
static rx_status latent_hash(rx_experiment *ex, const rx_dataset *d, char out[17]) {
    static const char *const sections[] = {"seed", "dataset", "transforms", "latent.vae", "latent.sample_posterior"};
    char h[17];
    RX_TRY(rx_config_hash_sections(ex->cfg->root, sections, 5, h));
    XXH64_state_t *st = XXH64_createState();
    if (!st) return rx_fail(RX_ERR_OOM, "latent: out of memory hashing");
    XXH64_reset(st, 0);
    XXH64_update(st, h, 16);
    const int32_t dims[5] = {d->n, d->channels, d->height, d->width, ex->smoke};
    XXH64_update(st, dims, sizeof dims);
    XXH64_update(st, d->pixels, (size_t)d->n * d->channels * d->height * d->width);
    XXH64_update(st, d->labels, (size_t)d->n * sizeof *d->labels);
    const rx_params *vp = ex->latent->vae_sec.params;
    rx_status s = RX_OK;
    if (!rx_param_is_null(vp, "weights") && (s = rx_file_hash(rx_param_str(vp, "weights"), h)) == RX_OK)
        XXH64_update(st, h, 16);
    if (!s) snprintf(out, 17, "%016llx", (unsigned long long)XXH64_digest(st));
    XXH64_freeState(st);
    return s;
}

/* latents of images [first, first+n) of the transformed data into l->z */
static rx_status encode_batch(rx_experiment *ex, const rx_dataset *d, const rx_transform_chain *chain, int64_t first, int n,
                              float *x, float *work, float *moments, float *stdv) {
    rx_latent_space *l = ex->latent;
    rx_ctx *c = ex->ctx;
    const int L = l->vae->latent_channels, h = ex->data_h, w = ex->data_w;
    const int64_t img = (int64_t)d->channels * d->height * d->width, dx = (int64_t)ex->image_c * ex->image_h * ex->image_w;
    const int64_t dz = (int64_t)L * h * w;
    for (int i = 0; i < n; i++) {
        int64_t k = first + i;
        RX_TRY(rx_transform_chain_apply(chain, d->pixels + k * img, d->channels, d->height, d->width, x + i * dx, work, ex->seed,
                                        RX_SAMPLE_KEY(0, k)));
        l->labels[k] = d->labels[k];
    }
    rx_tensor *X = rx_from_host(c, RX_SHAPE(n, ex->image_c, ex->image_h, ex->image_w), x);
    rx_tensor *M = l->vae->impl->encode(c, l->vae, X);
    rx_status s = M ? rx_tensor_to_host(c, M, moments) : rx_ctx_status(c);
    rx_step_end(c);
    RX_TRY(s);
    float *z = l->z + first * dz;
    rx_vae_posterior_host(moments, n, L, (int64_t)h * w, z, stdv);
    for (int i = 0; i < n; i++) {
        float *zi = z + i * dz, *si = stdv + i * dz;
        if (l->sample_posterior) {   /* z = mean + std * eps */
            float *eps = moments;    /* free again: the posterior is in z and stdv */
            rx_rng_normal(ex->seed, RX_STREAM(RX_RNG_LATENT, first + i), 0, eps, dz);
            for (int64_t j = 0; j < dz; j++) zi[j] += si[j] * eps[j];
        }
    }
    return RX_OK;
}

/* every training image through the eval transforms and the VAE's encoder */
static rx_status encode_all(rx_experiment *ex, rx_run *run, const rx_dataset *d, int n) {
    rx_latent_space *l = ex->latent;
    rx_transform_step steps[16];
    rx_transform_chain chain = rx_eval_transforms(ex, steps);
    if (chain.n != ex->n_transforms)
        rx_run_log(run, "latents: %d of the transforms are random augmentations; the images are encoded once, without them",
                   ex->n_transforms - chain.n);
    int oc, oh, ow;
    int64_t maxe;
    RX_TRY(rx_transform_chain_shape(&chain, d->channels, d->height, d->width, &oc, &oh, &ow, &maxe));
    if (oc != l->vae->in_channels || oh != ex->image_h || ow != ex->image_w)
        return rx_fail(RX_ERR_CONFIG, "latent: dataset %s after transforms gives %dx%dx%d images; latent.vae makes the model's "
                       "%dx%dx%d latents from %dx%dx%d images (add resize/pad/to_rgb transforms?)", d->name, oc, oh, ow,
                       ex->data_c, ex->data_h, ex->data_w, l->vae->in_channels, ex->image_h, ex->image_w);
    const int B = l->batch;
    const int64_t dx = (int64_t)oc * oh * ow, dz = (int64_t)ex->data_c * ex->data_h * ex->data_w;
    float *x = malloc(B * dx * sizeof *x), *work = malloc(2 * maxe * sizeof *work);
    float *moments = malloc(2 * B * dz * sizeof *moments), *stdv = malloc(B * dz * sizeof *stdv);
    rx_status s = x && work && moments && stdv ? RX_OK : rx_fail(RX_ERR_OOM, "latent: out of memory");
    const double t0 = rx_now();
    int was = ex->ctx->grad_enabled;
    rx_set_grad_enabled(ex->ctx, 0);
    for (int64_t b0 = 0; b0 < n && !s; b0 += B) {
        int m = (int)(n - b0 < B ? n - b0 : B);
        s = encode_batch(ex, d, &chain, b0, m, x, work, moments, stdv);
        if (!s && ((b0 / B) % 50 == 49 || b0 + m == n))
            rx_run_log(run, "latents: encoded %lld/%d images (%.1f s)", (long long)(b0 + m), n, rx_now() - t0);
        if (!s && rx_interrupt_requested) s = rx_fail(RX_ERR_INTERRUPTED, "latents: interrupted");
    }
    rx_set_grad_enabled(ex->ctx, was);
    free(x); free(work); free(moments); free(stdv);
    return s;
}

/* z *= scaling_factor, then the scaled latents' mean and standard deviation over every value: latent
 * diffusion wants about unit variance (the SD VAE's 0.18215 is 1/std of its latents), so the log says
 * what would give it */
static void scale_latents(rx_run *run, const rx_latent_space *l) {
    const int64_t n = (int64_t)l->n * l->zdim;
    double sum = 0, sumsq = 0;
    for (int64_t i = 0; i < n; i++) {
        l->z[i] *= l->scaling_factor;
        sum += l->z[i];
        sumsq += (double)l->z[i] * l->z[i];
    }
    const double mean = sum / n, sd = sqrt(fmax(sumsq / n - mean * mean, 0));
    rx_run_log(run, "latents: mean %.4g, std %.4g after scaling_factor %g (scaling_factor %.4g would make the std 1)", mean, sd,
               l->scaling_factor, sd > 0 ? l->scaling_factor / sd : 0.0);
    rx_run_set(run, "latent_std", json_real(sd));
}

/* a cached file with exactly these latents, or nothing */
static int load_cached(rx_latent_space *l, const char *path, int n, const int64_t shape[4]) {
    rx_st_file *f = NULL;
    if (!rx_fs_exists(path) || rx_st_open(path, &f)) { rx_clear_error(); return 0; }
    const char *h = rx_st_metadata(f, "latent_hash");
    int ok = h && !strcmp(h, l->hash) && rx_st_check_shape(f, "latents", 4, shape) == RX_OK &&
             rx_st_check_shape(f, "labels", 1, (const int64_t[]){n}) == RX_OK &&
             rx_st_read_f32(f, "latents", l->z, (int64_t)n * shape[1] * shape[2] * shape[3]) == RX_OK &&
             rx_st_read_raw(f, "labels", RX_ST_I32, l->labels, (size_t)n * sizeof *l->labels) == RX_OK;
    rx_st_close(f);
    rx_clear_error();
    return ok;
}

rx_status rx_stage_latents(rx_experiment *ex, rx_run *run) {
    rx_latent_space *l = ex->latent;
    const rx_dataset *d = ex->train_data;
    const double t0 = rx_now();
    RX_TRY(latent_hash(ex, d, l->hash));
    rx_run_set(run, "latent_hash", json_string(l->hash));
    l->n = ex->smoke && d->n > 16 ? 16 : d->n;   /* a smoke run trains 2 steps of 2 */
    const int64_t shape[4] = {l->n, ex->data_c, ex->data_h, ex->data_w};
    l->zdim = shape[1] * shape[2] * shape[3];
    free(l->z);
    free(l->labels);
    l->z = malloc((size_t)l->n * shape[1] * shape[2] * shape[3] * sizeof *l->z);
    l->labels = malloc((size_t)l->n * sizeof *l->labels);
    if (!l->z || !l->labels) return rx_fail(RX_ERR_OOM, "latents: out of memory for %d latents", l->n);

    /* beside the experiment directories, like eval's reference statistics: shared by every experiment
     * that encodes the same images with the same VAE */
    const char *slash = strrchr(run->exp_dir, '/');
    char dir[1100], path[1300];
    snprintf(dir, sizeof dir, "%.*s/_cache", slash ? (int)(slash - run->exp_dir) : 1, slash ? run->exp_dir : ".");
    snprintf(path, sizeof path, "%s/latents_%s.safetensors", dir, l->hash);
    if (load_cached(l, path, l->n, shape)) {
        rx_run_log(run, "latents: reusing %s (%d latents %lldx%lldx%lld)", path, l->n, (long long)shape[1], (long long)shape[2],
                   (long long)shape[3]);
        rx_run_set(run, "latents_reused_from", json_string(path));
        scale_latents(run, l);
        return RX_OK;
    }
    const rx_params *vp = l->vae_sec.params;
    if (rx_param_is_null(vp, "weights"))
        rx_run_log(run, "latents: latent.vae has no weights: a randomly initialised %s (seed %llu) encodes and decodes",
                   l->vae_sec.comp->name, (unsigned long long)ex->seed);
    rx_run_log(run, "latents: encoding %d images of %s with %s (%lld parameters) into %lldx%lldx%lld latents", l->n, d->name,
               l->vae_sec.comp->name, (long long)rx_model_param_count(l->vae), (long long)shape[1], (long long)shape[2],
               (long long)shape[3]);
    RX_TRY(encode_all(ex, run, d, l->n));
    rx_st_writer *w = NULL;
    rx_status s = rx_fs_mkdir_p(dir);
    if (!s) s = rx_st_writer_create(&w);
    if (!s) s = rx_st_writer_add_f32(w, "latents", 4, shape, l->z);
    if (!s) s = rx_st_writer_add(w, "labels", RX_ST_I32, 1, (const int64_t[]){l->n}, l->labels);
    if (!s) s = rx_st_writer_set_metadata(w, "latent_hash", l->hash);
    if (!s) s = rx_st_writer_write(w, path);
    rx_st_writer_free(w);
    if (!s) rx_run_log(run, "latents: wrote %s", path);
    if (!s) scale_latents(run, l);
    rx_run_stage_time(run, "latents", rx_now() - t0);
    return s;
}

rx_status rx_latent_batch(const rx_latent_space *l, uint64_t seed, int64_t batch_no, int B, float *x, int32_t *labels) {
    if (l->n < B) return rx_fail(RX_ERR_CONFIG, "train: batch_size %d is more than the %d encoded images", B, l->n);
    const int64_t per_epoch = l->n / B, epoch = batch_no / per_epoch, step = batch_no % per_epoch;
    int32_t *perm = malloc((size_t)l->n * sizeof *perm);
    if (!perm) return rx_fail(RX_ERR_OOM, "train: out of memory");
    rx_data_shuffle(perm, l->n, seed, epoch);
    const int64_t d = l->zdim;
    for (int i = 0; i < B; i++) {
        int32_t k = perm[step * B + i];
        memcpy(x + i * d, l->z + k * d, (size_t)d * sizeof *x);
        labels[i] = l->labels[k];
    }
    free(perm);
    return RX_OK;
}

rx_status rx_latent_decode(rx_experiment *ex, const float *z, int n, float *x) {
    rx_latent_space *l = ex->latent;
    rx_ctx *c = ex->ctx;
    const int L = l->vae->latent_channels, h = ex->data_h, w = ex->data_w;
    const int64_t dz = (int64_t)L * h * w, dx = (int64_t)ex->image_c * ex->image_h * ex->image_w;
    float *zs = malloc((size_t)(n < l->batch ? n : l->batch) * dz * sizeof *zs);
    if (!zs) return rx_fail(RX_ERR_OOM, "latent: out of memory decoding");
    rx_status s = RX_OK;
    for (int b0 = 0; b0 < n && !s; b0 += l->batch) {
        int m = n - b0 < l->batch ? n - b0 : l->batch;
        for (int64_t j = 0; j < m * dz; j++) zs[j] = z[b0 * dz + j] / l->scaling_factor;
        rx_tensor *Z = rx_from_host(c, RX_SHAPE(m, L, h, w), zs);
        rx_tensor *X = l->vae->impl->decode(c, l->vae, Z);
        s = X ? rx_tensor_to_host(c, X, x + b0 * dx) : rx_ctx_status(c);
        rx_step_end(c);
    }
    free(zs);
    return s;
}
