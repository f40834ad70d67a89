/* experiment.c — from a resolved config to live components. */
#include "experiment.h"
#include "checkpoint.h"
#include "eval/features.h"
#include "autograd/optim.h"
#include "kernels/cuda_backend.h"
#include "dist/dist.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static rx_status section(const rx_config *cfg, const char *path, rx_section_ref *out) {
    return rx_config_section_params(cfg, path, &out->comp, &out->params);
}

/* a stage's parameters, or NULL when the stage is disabled (`train: null`) */
static const rx_params *stage_params(const rx_config *cfg, const char *path) {
    const rx_params *p = NULL;
    if (rx_config_section_params(cfg, path, NULL, &p) != RX_OK) { rx_clear_error(); return NULL; }
    return p;
}

static const char *const train_sections[] = {"seed", "init", "dataset", "transforms", "model", "schedule",
                                             "objective", "optimizer", "lr_schedule", "train"};
static const char *const sample_sections[] = {"seed", "init", "dataset", "transforms", "model", "schedule",
                                              "objective", "optimizer", "lr_schedule", "train",
                                              "sampler", "guidance", "sample", "reflow"};
static const char *const eval_sections[] = {"seed", "init", "dataset", "transforms", "model", "schedule",
                                            "objective", "optimizer", "lr_schedule", "train",
                                            "sampler", "guidance", "sample", "reflow", "eval"};
#define COUNT(a) (int)(sizeof(a) / sizeof((a)[0]))

/* The run's identity (its directory's tag, --resume's check that config.yaml was not edited):
 * the resolved config without its log section, which says what else is written, not what is
 * computed. So runs made before the section existed keep their hash and still resume, and a
 * run's saved config may switch TensorBoard on before a resume. For the same first reason the
 * keys added later are left out while they hold their default: `reflow: null`, `latent: null`
 * (pixel space) and `sample.model: teacher`. The same keys emitted in the same order: for a config without them
 * exactly rx_config_hash(root). */
static int left_out_of_identity(const char *parent, const char *key, const rx_cfg_node *v) {
    /* cuda_graphs changes how the same launches are issued, not what they compute (replays are
     * bit-identical to eager, tests/cuda/test_cuda_graphs.c): a run may resume with it either way */
    if (!parent) return !strcmp(key, "log") || !strcmp(key, "cuda_graphs") || ((!strcmp(key, "reflow") || !strcmp(key, "latent")) && rx_cfg_is_null(v));
    return !strcmp(parent, "sample") &&
           ((!strcmp(key, "model") && v->type == RX_CFG_SCALAR && v->text && !strcmp(v->text, "teacher")) ||
            (!strcmp(key, "precision") && rx_cfg_is_null(v)));
}

/* `precision: tf32|fp32` enters the identity as what runexp wrote before the key was renamed,
 * `tf32: true|false`, at the same place (schema.c reads the old key as the new one): old runs
 * keep their hash and resume. bf16 is new and enters as itself. */
static rx_cfg_node tf32_key = {.type = RX_CFG_SCALAR, .text = "tf32"};
static rx_cfg_node tf32_on = {.type = RX_CFG_SCALAR, .text = "true"}, tf32_off = {.type = RX_CFG_SCALAR, .text = "false"};

static void identity_entry(const char *parent, const rx_cfg_node *key, const rx_cfg_node *v, rx_cfg_node **key_out,
                           rx_cfg_node **v_out) {
    *key_out = (rx_cfg_node *)key;
    *v_out = (rx_cfg_node *)v;
    if (parent || strcmp(key->text, "precision") || v->type != RX_CFG_SCALAR || !v->text) return;
    if (!strcmp(v->text, "tf32")) *key_out = &tf32_key, *v_out = &tf32_on;
    else if (!strcmp(v->text, "fp32")) *key_out = &tf32_key, *v_out = &tf32_off;
}

/* a view of map (borrowing its nodes; owning only its two arrays, freed by view_free) without
 * the keys left out of the identity; parent: the map's key, NULL at the top */
static rx_status identity_view(const rx_cfg_node *map, const char *parent, rx_cfg_node *view) {
    *view = *map;
    view->n = 0;
    view->keys = malloc((map->n ? (size_t)map->n : 1) * sizeof *view->keys);
    view->items = malloc((map->n ? (size_t)map->n : 1) * sizeof *view->items);
    if (!view->keys || !view->items) {
        free(view->keys);
        free(view->items);
        return rx_fail(RX_ERR_OOM, "config: out of memory hashing");
    }
    for (int i = 0; i < map->n; i++) {
        const char *key = map->keys[i]->text;
        if (key && left_out_of_identity(parent, key, map->items[i])) continue;
        if (key) identity_entry(parent, map->keys[i], map->items[i], &view->keys[view->n], &view->items[view->n]);
        else view->keys[view->n] = map->keys[i], view->items[view->n] = map->items[i];
        view->n++;
    }
    view->cap = view->n;
    return RX_OK;
}

rx_status rx_experiment_identity_hash(const rx_cfg_node *root, char out[17]) {
    if (root->type != RX_CFG_MAP) return rx_config_hash(root, out);
    rx_cfg_node top, sample = {0};
    RX_TRY(identity_view(root, NULL, &top));
    rx_status s = RX_OK;
    for (int i = 0; i < top.n && !s; i++)
        if (top.keys[i]->text && !strcmp(top.keys[i]->text, "sample") && top.items[i]->type == RX_CFG_MAP &&
            (s = identity_view(top.items[i], "sample", &sample)) == RX_OK)
            top.items[i] = &sample;
    if (!s) s = rx_config_hash(&top, out);
    free(sample.keys);
    free(sample.items);
    free(top.keys);
    free(top.items);
    return s;
}

/* what a run does for each objective task */
static const rx_task tasks[] = {
    [RX_TASK_DENOISE] = {.classifier = 0, .generates = 1, .loss = rx_denoise_loss, .stage = rx_denoise_stage,
                         .eval = rx_stage_eval},
    [RX_TASK_CLASSIFY] = {.classifier = 1, .generates = 0, .loss = rx_classify_loss, .eval = rx_stage_eval_classifier},
    [RX_TASK_VAE] = {.autoencoder = 1, .generates = 0, .loss = rx_vae_loss, .eval = rx_stage_eval_vae},
};

static const char *const precision_names[RX_PRECISION_COUNT] = {
    [RX_PRECISION_FP32] = "fp32", [RX_PRECISION_TF32] = "tf32", [RX_PRECISION_BF16] = "bf16"};

const char *rx_precision_name(int precision) {
    return precision >= 0 && precision < RX_PRECISION_COUNT ? precision_names[precision] : "?";
}

/* a CHOICE the schema checked: one of precision_names */
static int precision_of(const char *name) {
    for (int k = 0; k < RX_PRECISION_COUNT; k++)
        if (!strcmp(name, precision_names[k])) return k;
    return RX_PRECISION_TF32;
}

rx_status rx_experiment_use_precision(rx_experiment *ex, int precision) {
    if (ex->ctx->mem->device != RX_DEV_CUDA) return RX_OK;
    return rx_cuda_set_precision(ex->ctx->be_state, precision);
}

static rx_status choose_backend(rx_experiment *ex, const char *want, int device_id, int precision, int deterministic,
                                rx_run_options const *opt) {
    const rx_backend *be = rx_backend_cpu();
    void *state = NULL;
    ex->backend_name = "cpu";
    ex->device_name = "CPU";
    if (strcmp(want, "cpu") != 0) {
        /* one process per GPU: a data-parallel rank takes the local rank's device, counted from
         * device_id (dist/dist.h); device_id + local_rank must exist on the node */
        device_id += rx_dist_world()->local_rank;
        rx_status s = rx_cuda_open(device_id, precision, deterministic, &be, &state, &ex->device_name);
        if (s != RX_OK) {
            char why[512];   // rx_fail formats into the buffer rx_last_error() points at: copy it first
            snprintf(why, sizeof why, "%s", rx_last_error());
            if (strcmp(want, "cuda") == 0)
                return rx_fail(RX_ERR_CONFIG, "backend: cuda requested but no CUDA device is usable: %s", why);
            be = rx_backend_cpu();
            state = NULL;
            ex->device_name = "CPU";
            if (!opt->quiet) fprintf(stderr, "backend auto: %s; using the CPU\n", rx_last_error());
        } else {
            ex->backend_name = "cuda";
        }
    }
    return rx_ctx_create(be, state, 0, &ex->ctx);
}

/* The train stage's cache key (and its checkpoints' config_hash) covers what training reads
 * besides the config: the training images and labels as loaded, so a data set replaced under
 * the same name (RUNEXP_DATA pointing elsewhere, a re-made image folder) trains again instead of
 * reusing weights trained on the old data; and the bytes of the starting weights files (init,
 * model.weights). XXH64 (~10 GB/s: CIFAR-10's 150 MB of uint8 pixels in ~15 ms) over the
 * config's hash, then each of these. */
static rx_status fold_train_inputs(rx_experiment *ex, const char *const *weights, int n_weights) {
    XXH64_state_t *st = XXH64_createState();
    if (!st) return rx_fail(RX_ERR_OOM, "out of memory hashing the training data");
    XXH64_reset(st, 0);
    XXH64_update(st, ex->train_hash, strlen(ex->train_hash));
    const rx_dataset *d = ex->train_data;
    const int32_t dims[5] = {d->n, d->channels, d->height, d->width, d->num_classes};
    XXH64_update(st, dims, sizeof dims);
    XXH64_update(st, d->pixels, (size_t)d->n * d->channels * d->height * d->width);
    XXH64_update(st, d->labels, (size_t)d->n * sizeof *d->labels);
    rx_status s = RX_OK;
    for (int i = 0; i < n_weights && !s; i++) {   /* each file's own XXH64 (rx_file_hash), folded in */
        char h[17];
        if ((s = rx_file_hash(weights[i], h)) == RX_OK) XXH64_update(st, h, 16);
    }
    if (!s) snprintf(ex->train_hash, sizeof ex->train_hash, "%016llx", (unsigned long long)XXH64_digest(st));
    XXH64_freeState(st);
    return s;
}

/* every stage's hash with `text` folded in (XXH64 of the hash and the text) */
static void fold_into_stage_hashes(rx_experiment *ex, const char *text) {
    char *hashes[] = {ex->train_hash, ex->sample_hash, ex->eval_hash};
    for (int i = 0; i < 3; i++) {
        char both[64];
        const int n = snprintf(both, sizeof both, "%.16s%s", hashes[i], text);
        snprintf(hashes[i], 17, "%016llx", (unsigned long long)XXH64(both, (size_t)n, 0));
    }
}

/* bf16 (and fp32) training gives other weights than tf32's, and so other samples: the stages'
 * caches must not hand one's results to the other (a --sweep precision=tf32,bf16 trains twice).
 * Folded in only when not the default, so the hashes of tf32 configs stay what they were and
 * their cached stages stay valid. sample.precision is in the sample section, hashed already. */
static void fold_precision(rx_experiment *ex) {
    if (ex->precision != RX_PRECISION_TF32) fold_into_stage_hashes(ex, precision_names[ex->precision]);
}

/* latent diffusion: what every stage computes depends on the latent section too. Folded in only when
 * there is one, so that the hashes of pixel-space configs stay what they were (their cached stages
 * stay valid). */
static rx_status fold_latent_section(rx_experiment *ex) {
    static const char *const latent[] = {"latent"};
    char h[17];
    RX_TRY(rx_config_hash_sections(ex->cfg->root, latent, 1, h));
    fold_into_stage_hashes(ex, h);
    return RX_OK;
}

rx_status rx_experiment_build(rx_experiment *ex, rx_config *cfg, const rx_run_options *opt) {
    memset(ex, 0, sizeof *ex);
    ex->cfg = cfg;
    ex->smoke = opt->smoke;
    RX_TRY(section(cfg, "", &ex->top));
    const rx_params *top = ex->top.params;
    ex->name = rx_param_str(top, "experiment");
    ex->seed = (uint64_t)rx_param_int(top, "seed");
    RX_TRY(rx_experiment_identity_hash(cfg->root, ex->hash));
    RX_TRY(rx_config_hash_sections(cfg->root, train_sections, COUNT(train_sections), ex->train_hash));
    RX_TRY(rx_config_hash_sections(cfg->root, sample_sections, COUNT(sample_sections), ex->sample_hash));
    RX_TRY(rx_config_hash_sections(cfg->root, eval_sections, COUNT(eval_sections), ex->eval_hash));
    RX_TRY(section(cfg, "dataset", &ex->dataset));
    RX_TRY(section(cfg, "model", &ex->model_sec));
    RX_TRY(section(cfg, "schedule", &ex->schedule_sec));
    RX_TRY(section(cfg, "objective", &ex->objective));
    RX_TRY(section(cfg, "optimizer", &ex->optimizer));
    RX_TRY(section(cfg, "lr_schedule", &ex->lr_schedule));
    RX_TRY(section(cfg, "sampler", &ex->sampler));
    RX_TRY(section(cfg, "guidance", &ex->guidance));
    ex->train = stage_params(cfg, "train");
    ex->sample = stage_params(cfg, "sample");
    ex->eval = stage_params(cfg, "eval");
    ex->log = stage_params(cfg, "log");
    ex->reflow = stage_params(cfg, "reflow");
    if (ex->reflow) {
        RX_TRY(section(cfg, "reflow.sampler", &ex->reflow_sampler));
        RX_TRY(section(cfg, "reflow.guidance", &ex->reflow_guidance));
    }
    if (ex->sample) {   /* checks.c refused any other name with its position */
        const int rounds = ex->reflow ? (int)rx_param_int(ex->reflow, "rounds") : 0;
        const int distill = ex->reflow && rx_param_int(ex->reflow, "distill_steps") > 0;
        ex->sample_model = rx_reflow_model_index(rx_param_str(ex->sample, "model"), rounds, distill);
        if (ex->sample_model < 0) return rx_fail(RX_ERR_CONFIG, "sample.model: '%s' is not a model of this experiment",
                                                 rx_param_str(ex->sample, "model"));
        /* the pairs are drawn and the students trained by one process (each rank would draw and
         * write every pair): refused before a run directory exists */
        if (ex->sample_model > 0 && rx_dist_world()->world > 1)
            return rx_fail(RX_ERR_CONFIG, "sample.model: %s needs the reflow stages, which run in one process; "
                           "run them without mpirun/srun (the teacher's training can run on several ranks first)",
                           rx_param_str(ex->sample, "model"));
    }
    ex->n_transforms = rx_config_section_count(cfg, "transforms");
    if (ex->n_transforms > 16) return rx_fail(RX_ERR_CONFIG, "transforms: at most 16");
    for (int i = 0; i < ex->n_transforms; i++)
        RX_TRY(rx_config_section_item_params(cfg, "transforms", i, &ex->transforms[i].comp, &ex->transforms[i].params));

    if (ex->smoke) {   /* fast_dev_run: the real components, 2 sampler steps (train/sample/eval shrink in their stages) */
        RX_TRY(rx_params_set((rx_params *)ex->sampler.params, "steps", "2"));
        if (ex->reflow) RX_TRY(rx_params_set((rx_params *)ex->reflow_sampler.params, "steps", "2"));
    }
    int threads = (int)rx_param_int(top, "threads");
    if (threads > 0) omp_set_num_threads(threads);
    ex->precision = precision_of(rx_param_str(top, "precision"));
    ex->sample_precision = ex->sample && !rx_param_is_null(ex->sample, "precision")
                               ? precision_of(rx_param_str(ex->sample, "precision")) : ex->precision;
    fold_precision(ex);
    ex->cuda_graphs = rx_param_bool(top, "cuda_graphs");
    RX_TRY(choose_backend(ex, opt->backend ? opt->backend : rx_param_str(top, "backend"), (int)rx_param_int(top, "device_id"),
                          ex->precision, rx_param_bool(top, "deterministic"), opt));
    ex->ctx->seed = ex->seed;

    RX_TRY(rx_model_create(ex->ctx, ex->model_sec.comp, ex->model_sec.params, ex->seed, &ex->model));
    ex->data_c = ex->image_c = ex->model->in_channels;
    ex->data_h = ex->data_w = ex->image_h = ex->image_w = ex->model->sample_size;
    const char *weights[4];
    int n_weights = 0;
    const char *init = rx_param_is_null(top, "init") ? NULL : rx_param_str(top, "init");
    if (init) RX_TRY(rx_model_load_weights(ex->ctx, ex->model, weights[n_weights++] = init, 1));
    /* model.weights: the model's own starting weights (diffusers files load with their key names) */
    const rx_params *mp = ex->model_sec.params;
    for (int i = 0; i < mp->n; i++)
        if (!strcmp(mp->spec[i].name, "weights") && !mp->values[i].is_null && mp->values[i].s && n_weights < 2)
            RX_TRY(rx_model_load_weights(ex->ctx, ex->model, weights[n_weights++] = mp->values[i].s, 1));

    const rx_schedule_impl *sched = ex->schedule_sec.comp->impl;
    RX_TRY(sched->build(ex->schedule_sec.params, &ex->schedule));
    const rx_objective_impl *obj = ex->objective.comp->impl;
    ex->task = &tasks[obj->task];
    const int classifier = ex->task->classifier;
    if (classifier != (ex->model->impl->features != NULL))
        return rx_fail(RX_ERR_CONFIG, classifier ? "objective: classify trains a classifier model (resnet_classifier), not %s"
                                                 : "objective: %s trains denoisers; a classifier model needs objective: classify",
                       classifier ? ex->model_sec.comp->name : ex->objective.comp->name);
    if (ex->task->autoencoder != (ex->model->impl->encode != NULL))
        return rx_fail(RX_ERR_CONFIG, ex->task->autoencoder ? "objective: vae trains an autoencoder model (autoencoder_kl), not %s"
                                                            : "objective: %s does not train an autoencoder; model %s needs objective: vae",
                       ex->task->autoencoder ? ex->model_sec.comp->name : ex->objective.comp->name, ex->model_sec.comp->name);
    if (ex->task->generates) ex->prediction_type = obj->prediction_type(ex->objective.params);
    if (ex->task->autoencoder) {
        RX_TRY(rx_vae_perceptual_open(ex));
        if (ex->perceptual) weights[n_weights++] = rx_param_str(ex->objective.params, "perceptual_net");
    }

    if (stage_params(cfg, "latent")) {
        RX_TRY(rx_latent_open(ex));
        const rx_params *vp = ex->latent->vae_sec.params;
        if (!rx_param_is_null(vp, "weights")) weights[n_weights++] = rx_param_str(vp, "weights");
        RX_TRY(fold_latent_section(ex));
        /* the latents stage and its batches are one process's (no shards yet), and reflow's pairs
         * would be drawn as decoded images: both refused before a run directory exists */
        if (rx_dist_world()->world > 1)
            return rx_fail(RX_ERR_CONFIG, "latent: latent diffusion runs in one process; data-parallel training on "
                                          "latents is not implemented (run it without mpirun/srun)");
        if (ex->reflow && ex->sample_model > 0)
            return rx_fail(RX_ERR_CONFIG, "latent: reflow stages in latent space are not implemented (sample.model: %s)",
                           rx_param_str(ex->sample, "model"));
    }

    if (ex->train) RX_TRY(rx_dataset_load(ex->dataset.comp, ex->dataset.params, "train", &ex->train_data));
    if (ex->train) RX_TRY(fold_train_inputs(ex, weights, n_weights));
    if (ex->train && rx_param_float(ex->train, "ema_decay") > 0) RX_TRY(rx_ema_create(ex->ctx, &ex->model->params, &ex->ema));
    return RX_OK;
}

void rx_experiment_free(rx_experiment *ex) {
    rx_dataset_free(ex->train_data);
    rx_latent_free(ex->latent);
    rx_model_destroy(ex->perceptual);
    rx_config_free(ex->perceptual_cfg);
    rx_model_destroy(ex->model);
    rx_paramset_free(&ex->ema);
    rx_schedule_free(&ex->schedule);
    if (ex->ctx) {
        void *state = ex->ctx->be_state;
        int cuda = ex->ctx->mem->device == RX_DEV_CUDA;
        rx_ctx_destroy(ex->ctx);
        if (cuda) rx_cuda_close(state);
    }
    memset(ex, 0, sizeof *ex);
}
