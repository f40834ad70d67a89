/* eval.c — the eval stage: generated images vs the reference split, through a feature
 * extractor, into the configured metrics.
 *
 * Generated images are produced batch by batch (the same generator as the sample stage;
 * labels cycle through the classes so every class gets N/K images), pushed through the
 * extractor and folded into streaming float64 statistics; only features (for KID) and
 * logits are kept. Reference statistics are computed once per (dataset, split,
 * transforms, extractor weights, N) and cached under results/_cache/, keyed by the hash
 * of all of these, so a changed extractor or data set never reuses a stale cache. */
#include "experiment.h"
#include "eval/features.h"
#include "eval/metric.h"
#include "eval/featstats.h"
#include "io/fsutil.h"
#include "dist/dist.h"
#include "io/json_util.h"
#include "runner/progress.h"
#include <math.h>
#include <string.h>
#include <xxhash.h>

rx_status rx_file_hash(const char *path, char out[17]) {
    FILE *f = fopen(path, "rb");
    if (!f) return rx_fail(RX_ERR_IO, "%s: cannot open to hash", path);
    XXH64_state_t *st = XXH64_createState();
    XXH64_reset(st, 0);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) XXH64_update(st, buf, n);
    int err = ferror(f);
    fclose(f);
    snprintf(out, 17, "%016llx", (unsigned long long)XXH64_digest(st));
    XXH64_freeState(st);
    return err ? rx_fail(RX_ERR_IO, "%s: read error while hashing", path) : RX_OK;
}

typedef struct image_set {
    int64_t n;
    float *features, *logits;
    int *labels;
    rx_featstats stats;
} image_set;

static void set_free(image_set *s) {
    free(s->features); free(s->logits); free(s->labels);
    rx_featstats_free(&s->stats);
}

static rx_status set_alloc(image_set *s, int64_t n, const rx_feature_extractor *fx) {
    memset(s, 0, sizeof *s);
    s->n = n;
    s->labels = malloc(n * sizeof *s->labels);
    s->logits = fx->num_classes ? malloc(n * fx->num_classes * sizeof(float)) : NULL;
    s->features = malloc(n * fx->feat_dim * sizeof(float));   /* batch rows are written here, then folded */
    if (!s->labels || (fx->num_classes && !s->logits) || !s->features) return rx_fail(RX_ERR_OOM, "eval: out of memory for %lld images", (long long)n);
    return rx_featstats_init(&s->stats, fx->feat_dim);
}

rx_transform_chain rx_eval_transforms(const rx_experiment *ex, rx_transform_step steps[16]) {
    int ns = 0;
    for (int i = 0; i < ex->n_transforms; i++)
        if (!((const rx_transform_impl *)ex->transforms[i].comp->impl)->augmentation) steps[ns++] = ex->transforms[i];
    return (rx_transform_chain){steps, ns};
}

/* the reference split through the experiment's transforms and the extractor */
static rx_status reference_set(rx_experiment *ex, const rx_features_impl *fi, rx_feature_extractor *fx, const char *split,
                               int64_t want, int batch, int keep, image_set *ref, rx_run *run) {
    rx_dataset *data = NULL;
    RX_TRY(rx_dataset_load(ex->dataset.comp, ex->dataset.params, split, &data));
    int64_t n = want < data->n ? want : data->n;
    rx_transform_step steps[16];
    rx_transform_chain chain = rx_eval_transforms(ex, steps);
    int oc, oh, ow;
    int64_t maxe;
    rx_status s = rx_transform_chain_shape(&chain, data->channels, data->height, data->width, &oc, &oh, &ow, &maxe);
    if (!s) s = set_alloc(ref, n, fx);
    int64_t d = (int64_t)oc * oh * ow;
    float *x = malloc(batch * d * sizeof *x), *work = malloc(2 * maxe * sizeof *work);
    if (!s && (!x || !work)) s = rx_fail(RX_ERR_OOM, "eval: out of memory");
    int64_t img = (int64_t)data->channels * data->height * data->width;
    for (int64_t b0 = 0; b0 < n && !s; b0 += batch) {
        int m = (int)(n - b0 < batch ? n - b0 : batch);
        for (int i = 0; i < m && !s; i++) {
            int64_t k = b0 + i;
            s = rx_transform_chain_apply(&chain, data->pixels + k * img, data->channels, data->height, data->width,
                                         x + i * d, work, ex->seed, RX_SAMPLE_KEY(0, k));
            ref->labels[k] = data->labels[k];
        }
        float *feats = ref->features + (keep ? b0 * fx->feat_dim : 0);
        if (!s) s = fi->extract(ex->ctx, fx, x, m, oc, oh, ow, feats, ref->logits ? ref->logits + b0 * fx->num_classes : NULL);
        if (!s) s = rx_featstats_add(&ref->stats, feats, m);
    }
    if (!s) s = rx_featstats_finish(&ref->stats);
    if (!s) rx_run_log(run, "eval: reference %s, %lld images", data->name, (long long)n);
    free(x); free(work);
    rx_dataset_free(data);
    return s;
}

/* whether any of eval.metrics needs the feature rows themselves (KID and friends), not only
 * their statistics */
static int metrics_need_rows(const rx_experiment *ex) {
    int nmet = rx_config_section_count(ex->cfg, "eval.metrics");
    for (int i = 0; i < nmet; i++) {
        const rx_component *mc;
        rx_config_section_item_params(ex->cfg, "eval.metrics", i, &mc, NULL);
        if (((const rx_metric_impl *)mc->impl)->needs & RX_METRIC_NEEDS_FEATURES) return 1;
    }
    return 0;
}

/* one evaluation of generated images, as the eval section and the extractor set it up */
typedef struct eval_job {
    rx_experiment *ex;
    rx_run *run;
    const rx_features_impl *fi;
    rx_feature_extractor *fx;
    int64_t N;              /* generated images, and at most as many reference images */
    int B;                  /* batch */
    const char *split;      /* reference split */
    int rows;               /* keep every feature row (metrics_need_rows) */
    double t0;              /* the stage's start */
} eval_job;

/* the N generated images through the extractor, B at a time. Labels cycle through the
 * classes so every class gets N/K images; *used_ema says whether the EMA weights made them.
 * Data-parallel: each rank generates and extracts its share of the N (dist/dist.h), rank 0
 * gathers the feature (and logit) rows and folds them into the statistics in the order and
 * batches one process would; only rank 0's gen is complete. */
static rx_status generated_set(const eval_job *j, image_set *gen, int *used_ema) {
    rx_experiment *ex = j->ex;
    const rx_feature_extractor *fx = j->fx;
    rx_model *m = ex->model;
    int C = ex->image_c, H = ex->image_h, W = ex->image_w;
    int64_t d = (int64_t)C * H * W, N = j->N;
    int B = j->B;
    rx_status s = set_alloc(gen, N, fx);
    float *x = malloc(B * d * sizeof *x);
    int32_t *lab = malloc(B * sizeof *lab);
    int64_t *idx = malloc(B * sizeof *idx);
    if (!s && (!x || !lab || !idx)) s = rx_fail(RX_ERR_OOM, "eval: out of memory");
    rx_generator g;
    memset(&g, 0, sizeof g);
    if (!s) s = rx_generator_open(ex, &g);
    const double t_gen = rx_now();   /* the ETA's rate: generation only */
    *used_ema = g.use_ema;
    int K = m->num_classes;
    const int split = rx_dist_world()->world > 1;
    int64_t lo = 0, hi = N;
    if (split) rx_dist_share(N, rx_dist_world()->rank, &lo, &hi);
    for (int64_t i = 0; !s && i < N; i++) gen->labels[i] = K > 0 ? (int32_t)(i % K) : -1;
    for (int64_t b0 = lo; b0 < hi && !s; b0 += B) {
        int n = (int)(hi - b0 < B ? hi - b0 : B);
        for (int i = 0; i < n; i++) {
            idx[i] = (1ll << 40) + b0 + i;    /* eval images: their own noise, apart from the sample grid's */
            lab[i] = gen->labels[b0 + i];
        }
        s = rx_generate(&g, idx, n, lab, x);
        float *feats = gen->features + (j->rows || split ? b0 * fx->feat_dim : 0);   /* split: rank 0 gathers the rows */
        if (!s) s = j->fi->extract(ex->ctx, j->fx, x, n, C, H, W, feats, gen->logits ? gen->logits + b0 * fx->num_classes : NULL);
        if (!s && !split) s = rx_featstats_add(&gen->stats, feats, n);
        char eta[32];
        rx_eta_format(rx_eta_seconds((double)(b0 + n - lo), (double)(hi - lo), rx_now() - t_gen), eta, sizeof eta);
        if (!s) rx_run_log(j->run, "eval: generated %lld/%lld images%s (%.1f s, ETA %s)", (long long)(b0 + n - lo),
                           (long long)(hi - lo), split ? " of this rank" : "", rx_now() - j->t0, eta);
        if (!s && rx_interrupt_requested) s = rx_fail(RX_ERR_INTERRUPTED, "eval: interrupted");
    }
    rx_status s2 = rx_generator_close(&g);
    if (!s) s = s2;
    if (split) {   /* a rank that failed stops all before the gather */
        s = rx_dist_agree(s, NULL, 0);
        if (!s) s = rx_dist_gather_shares(gen->features, N, fx->feat_dim);
        if (!s && gen->logits) s = rx_dist_gather_shares(gen->logits, N, fx->num_classes);
        for (int64_t b0 = 0; !s && rx_dist_is_root() && b0 < N; b0 += B)   /* one process's batches */
            s = rx_featstats_add(&gen->stats, gen->features + b0 * fx->feat_dim, (int)(N - b0 < B ? N - b0 : B));
        if (!s) rx_run_log(j->run, "eval: %lld images' features gathered from %d ranks", (long long)N, rx_dist_world()->world);
    }
    if (!s && rx_dist_is_root()) s = rx_featstats_finish(&gen->stats);
    free(x); free(lab); free(idx);
    return s;
}

/* what the reference statistics depend on: the extractor and its weights, the data's identity
 * (dataset section + transforms + seed, for the random transforms) and the split */
static void reference_meta(const eval_job *j, rx_featstats_meta *want) {
    const rx_experiment *ex = j->ex;
    memset(want, 0, sizeof *want);
    rx_cfg_node *dn = rx_cfg_path(ex->cfg->root, "dataset"), *tn = rx_cfg_path(ex->cfg->root, "transforms");
    char *a = dn ? rx_config_emit_string(dn) : NULL, *b = tn ? rx_config_emit_string(tn) : NULL;
    char key_text[8192];
    snprintf(key_text, sizeof key_text, "%s|%s|%llu", a ? a : "", b ? b : "", (unsigned long long)ex->seed);
    free(a); free(b);
    char data_hash[17];
    snprintf(data_hash, sizeof data_hash, "%016llx", (unsigned long long)XXH64(key_text, strlen(key_text), 0));
    snprintf(want->extractor, sizeof want->extractor, "%s", j->fx->name);
    snprintf(want->extractor_hash, sizeof want->extractor_hash, "%s", j->fx->weights_hash);
    snprintf(want->dataset, sizeof want->dataset, "%s", ex->dataset.comp->name);
    snprintf(want->dataset_hash, sizeof want->dataset_hash, "%s", data_hash);
    snprintf(want->split, sizeof want->split, "%s", j->split);
}

/* Reference statistics of (at most) N images, cached under <results root>[/_smoke]/_cache/
 * (next to the experiment directories, so --results moves it too) by everything they depend
 * on. Metrics that need the rows, and smoke runs, always compute them. */
static rx_status reference_stats(const eval_job *j, image_set *ref) {
    rx_featstats_meta want;
    reference_meta(j, &want);
    const char *exp_dir = j->run->exp_dir, *slash = strrchr(exp_dir, '/');
    char cache_dir[1200], cache[1400], cache_file[180];
    if (slash) snprintf(cache_dir, sizeof cache_dir, "%.*s/_cache", (int)(slash - exp_dir), exp_dir);
    else snprintf(cache_dir, sizeof cache_dir, "_cache");
    RX_TRY(rx_featstats_cache_name(&want, j->N, cache_file, sizeof cache_file));
    snprintf(cache, sizeof cache, "%.1000s/%s", cache_dir, cache_file);
    if (!j->rows && !j->ex->smoke && rx_fs_exists(cache) && rx_featstats_load(&ref->stats, cache) == RX_OK &&
        rx_featstats_check_meta(&ref->stats, &want, ref->stats.n, j->fx->feat_dim) == RX_OK) {
        rx_run_log(j->run, "eval: reference statistics from %s", cache);
        return RX_OK;
    }
    rx_clear_error();
    rx_featstats_free(&ref->stats);
    rx_status s = reference_set(j->ex, j->fi, j->fx, j->split, j->N, j->B, j->rows, ref, j->run);
    if (!s) s = rx_featstats_set_meta(&ref->stats, want.extractor, want.extractor_hash, want.dataset, want.dataset_hash,
                                      want.split);
    /* a cache: failing to write it is not fatal */
    if (!s && rx_fs_mkdir_p(cache_dir) == RX_OK && rx_featstats_save(&ref->stats, cache) != RX_OK) rx_clear_error();
    return s;
}

/* each of eval.metrics on the generated and the reference set, into metrics under its name
 * (rx_metric_name); one that needs labels is skipped without a classifier extractor and a
 * class-conditional model */
static rx_status compute_metrics(const eval_job *j, const image_set *gen, const image_set *ref, const char *log_prefix,
                                 json_t *metrics) {
    const rx_experiment *ex = j->ex;
    const rx_feature_extractor *fx = j->fx;
    rx_metric_input in = {
        .gen = {gen->n, j->rows ? gen->features : NULL, &gen->stats, gen->logits, gen->labels},
        .ref = {ref->n, j->rows ? ref->features : NULL, &ref->stats, ref->logits, ref->labels},
        .feat_dim = fx->feat_dim, .num_classes = fx->num_classes};
    int nmet = rx_config_section_count(ex->cfg, "eval.metrics");
    for (int i = 0; i < nmet; i++) {
        const rx_component *mc;
        const rx_params *mp;
        rx_config_section_item_params(ex->cfg, "eval.metrics", i, &mc, &mp);
        const rx_metric_impl *mi = mc->impl;
        if ((mi->needs & (RX_METRIC_NEEDS_LOGITS | RX_METRIC_NEEDS_LABELS)) && (!fx->num_classes || ex->model->num_classes <= 0)) {
            rx_run_log(j->run, "eval: %s skipped (needs a classifier extractor and a class-conditional model)", mc->name);
            continue;
        }
        rx_metric_value v;
        RX_TRY(mi->compute(mp, &in, &v));
        char name[160];
        RX_TRY(rx_metric_name(mi->short_name, fx->name, fx->weights_hash, name, sizeof name));
        json_object_set_new(metrics, name, json_real(v.value));
        if (v.has_std) {
            char sn[176];
            snprintf(sn, sizeof sn, "%s_std", name);
            json_object_set_new(metrics, sn, json_real(v.std));
        }
        rx_run_log(j->run, "eval: %s%s = %.6g%s", log_prefix, name, v.value, v.has_std ? " (± std recorded)" : "");
    }
    return RX_OK;
}

/* eval.floor: the same metrics between N real images of the other split and the reference
 * set, both through the same transforms and extractor. With a few hundred images the Fréchet
 * distance of two samples of one distribution is far from 0 (its bias shrinks like 1/N), so
 * a model's FD means little without this floor beside it. The other split's labels are the
 * data set's own, so class accuracy here is the extractor's accuracy on real images. */
static rx_status floor_metrics(const eval_job *j, const image_set *ref, json_t **out) {
    const char *other = strcmp(j->split, "test") ? "test" : "train";
    image_set real;
    memset(&real, 0, sizeof real);
    rx_status s = reference_set(j->ex, j->fi, j->fx, other, j->N, j->B, j->rows, &real, j->run);
    json_t *metrics = json_object(), *f = json_object();
    if (!s) s = compute_metrics(j, &real, ref, "floor: ", metrics);
    json_object_set_new(f, "metrics", metrics);
    json_object_set_new(f, "split", json_string(other));
    json_object_set_new(f, "images", json_integer(real.stats.n));
    set_free(&real);
    if (s) { json_decref(f); return s; }
    *out = f;
    return RX_OK;
}

/* eval.json: the metrics and how they were taken */
static json_t *eval_record(const eval_job *j, json_t *metrics, const image_set *ref, int used_ema) {
    const rx_experiment *ex = j->ex;
    json_t *e = json_object();
    json_object_set(e, "metrics", metrics);
    json_object_set_new(e, "extractor", json_string(j->fx->name));
    json_object_set_new(e, "extractor_weights", json_string(j->fx->weights_path));
    json_object_set_new(e, "extractor_hash", json_string(j->fx->weights_hash));
    json_object_set_new(e, "generated_images", json_integer(j->N));
    json_object_set_new(e, "reference_images", json_integer(ref->stats.n));
    json_object_set_new(e, "reference_split", json_string(j->split));
    json_object_set_new(e, "dataset", json_string(ex->dataset.comp->name));
    json_object_set_new(e, "sampler", json_string(ex->sampler.comp->name));
    json_object_set_new(e, "steps", json_integer(rx_param_int(ex->sampler.params, "steps")));
    /* a reflowed or distilled model is sampled unguided (rx_generator_open) */
    const int guided = ex->sample_model == 0;
    if (ex->sample) json_object_set_new(e, "model", json_string(rx_param_str(ex->sample, "model")));
    json_object_set_new(e, "guidance", json_string(guided ? ex->guidance.comp->name : "none"));
    const rx_value *gs = NULL;
    for (int i = 0; guided && i < ex->guidance.params->n; i++)
        if (!strcmp(ex->guidance.params->spec[i].name, "scale")) gs = &ex->guidance.params->values[i];
    json_object_set_new(e, "guidance_scale", gs ? json_real(gs->f) : json_null());
    json_object_set_new(e, "ema", json_boolean(used_ema));
    json_object_set_new(e, "seconds", json_real(rx_now() - j->t0));
    return e;
}

rx_status rx_eval_write(const rx_run *run, json_t *record) {
    char path[1200];
    snprintf(path, sizeof path, "%s/eval.json", run->dir);
    RX_TRY(rx_json_write_atomic(path, record));
    return rx_run_tb_scalars(run, "eval/", json_object_get(record, "metrics"));
}

rx_status rx_stage_eval(rx_experiment *ex, rx_run *run, json_t **metrics_out) {
    eval_job j = {ex, run, NULL, NULL, 0, 0, NULL, 0, rx_now()};
    const rx_component *fc;
    const rx_params *fp;
    if (rx_config_section_params(ex->cfg, "eval.features", &fc, &fp) != RX_OK)
        return rx_fail(RX_ERR_CONFIG, "eval.features: a feature extractor is needed to evaluate generated images "
                                      "(e.g. {name: classifier, weights: models/mnist_classifier.safetensors})");
    j.fi = fc->impl;
    RX_TRY(j.fi->create(ex->ctx, fp, &j.fx));
    j.N = rx_param_int(ex->eval, "num_images");
    j.B = (int)rx_param_int(ex->eval, "batch_size");
    j.split = rx_param_str(ex->eval, "reference_split");
    if (ex->smoke) { j.N = 8; j.B = 8; }
    j.rows = metrics_need_rows(ex);

    image_set gen, ref;
    memset(&ref, 0, sizeof ref);
    int used_ema = 0;
    rx_status s = generated_set(&j, &gen, &used_ema);
    if (!rx_dist_is_root()) {   /* its share of the generated images is with rank 0 */
        set_free(&gen);
        if (j.fi->destroy) j.fi->destroy(j.fx);
        return s;
    }
    if (!s) s = reference_stats(&j, &ref);
    json_t *metrics = json_object();
    if (!s) s = compute_metrics(&j, &gen, &ref, "", metrics);
    json_t *floor_js = NULL;
    if (!s && rx_param_bool(ex->eval, "floor")) s = floor_metrics(&j, &ref, &floor_js);
    if (!s) {
        json_t *e = eval_record(&j, metrics, &ref, used_ema);
        if (floor_js) json_object_set(e, "floor", floor_js);
        s = rx_eval_write(run, e);
        json_decref(e);
    }
    if (!s && metrics_out) *metrics_out = json_incref(metrics);
    json_decref(metrics);
    json_decref(floor_js);
    set_free(&gen);
    set_free(&ref);
    if (j.fi->destroy) j.fi->destroy(j.fx);
    rx_run_stage_time(run, "eval", rx_now() - j.t0);
    return s;
}
