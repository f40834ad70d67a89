/* reflow.c — the reflow stages: k-rectified flow and its 1-step distillation
 * (Liu, Gong, Liu 2022, "Flow Straight and Fast", sections 2.2-2.3).
 *
 *   model 0    the teacher: the train stage's model (a flow_matching objective)
 *   pairs<k>   k = 1..rounds: N noises z_i through model k-1's ODE (reflow.sampler, label
 *              i mod K; reflow.guidance in round 1 only: a later round's model k-1 is a
 *              student that already learned the guided flow) give x_i;
 *              reflow/pairs<k>.safetensors holds z, x [N,C,H,W] float32 and labels [N] int32
 *              (checksummed like checkpoints)
 *   reflow<k>  model k: model k-1 trained on pairs<k> with the flow loss on the straight
 *              coupling x_sigma = (1-sigma) x + sigma z, target z - x (rx_reflow_make_batch);
 *              checkpoints/reflow<k>.safetensors
 *   distill    model rounds+1: model `rounds` trained on pairs<rounds> with sigma fixed at 1,
 *              so that one Euler step maps z to x; checkpoints/distill.safetensors
 *
 * z_i is the sampler's initial noise of image index RX_REFLOW_PAIR_INDEX(k, i): Philox keyed
 * by (seed, round, pair index), never an index the sample or eval stage draws (< 2^47).
 * A flow sampler is deterministic given its initial noise (checks.c requires one), so
 * z_i = N(0, I) of that key is exactly the noise x_i was drawn from.
 *
 * Each stage is cached like training: its hash chains what it was made from (the teacher's
 * train_hash, which covers the data and starting weights, then each stage's own config),
 * goes to run.json as <stage>_hash, and a finished run of the experiment that holds the
 * stage's file with that hash is reused (rx_stage_cache_find). Only the stages the sampled
 * model (sample.model) needs run, so a sweep over sample.model x sampler.steps trains the
 * teacher, draws the pairs and trains each student once. An interrupted student resumes
 * from its own checkpoint through the training stage's resume path.
 *
 * A student starts from the weights model k-1 samples with (EMA when sample.use_ema) and
 * keeps its own EMA (train.ema_decay). Labels are never dropped: a student learns the guided
 * flow its pairs carry and is sampled without guidance (sample.c). The paper's LPIPS
 * distillation loss is left out: the loss is the squared error of the flow objective. */
#include "experiment.h"
#include "checkpoint.h"
#include "runner/pipeline.h"
#include "runner/progress.h"
#include "io/fsutil.h"
#include "io/safetensors.h"
#include "core/philox.h"
#include <math.h>
#include <string.h>
#include <xxhash.h>

#define RX_REFLOW_MAX_ROUNDS 9
#define RX_REFLOW_PAIR_INDEX(k, i) ((int64_t)1 << 47 | (int64_t)(k) << 32 | (int64_t)(i))

/* the pairs a reflow stage trains on */
typedef struct rx_reflow_data {
    int n;
    int64_t d;
    float *z, *x;           /* [n, d] */
    int32_t *labels;        /* [n] */
    double sigma_fixed;     /* -1: reflow (sigma drawn); 1: distillation */
    uint64_t seed;          /* of the batches' pair choice and time */
} rx_reflow_data;

static void data_free(rx_reflow_data *p) {
    free(p->z);
    free(p->x);
    free(p->labels);
    memset(p, 0, sizeof *p);
}

static rx_status data_alloc(rx_reflow_data *p, int n, int64_t d) {
    memset(p, 0, sizeof *p);
    p->n = n;
    p->d = d;
    p->z = malloc((size_t)n * d * sizeof *p->z);
    p->x = malloc((size_t)n * d * sizeof *p->x);
    p->labels = malloc((size_t)n * sizeof *p->labels);
    if (p->z && p->x && p->labels) return RX_OK;
    data_free(p);
    return rx_fail(RX_ERR_OOM, "reflow: out of memory for %d pairs of %lld values", n, (long long)d);
}

/* ---- the stages' names, files and hashes ---- */

typedef struct stage_plan {
    int rounds, target;             /* target: ex->sample_model, the last stage needed */
    int n_pairs, pairs_batch;
    char pairs_hash[RX_REFLOW_MAX_ROUNDS + 1][17];
    char model_hash[RX_REFLOW_MAX_ROUNDS + 2][17];
    char cached[RX_REFLOW_MAX_ROUNDS + 2][1200];   /* a finished run holding model j, or "" */
} stage_plan;

static void model_name(const stage_plan *p, int j, char *out, size_t n) {
    if (j == p->rounds + 1) snprintf(out, n, "distill");
    else snprintf(out, n, "reflow%d", j);
}

/* XXH64 of (what, k, the previous stage's hash, the hash of the config keys it reads) */
static rx_status chain_hash(const rx_experiment *ex, const char *what, int k, const char *prev,
                            const char *const *keys, int n_keys, char out[17]) {
    char cfg_hash[17];
    RX_TRY(rx_config_hash_sections(ex->cfg->root, keys, n_keys, cfg_hash));
    char buf[128];
    int len = snprintf(buf, sizeof buf, "%s|%d|%s|%s", what, k, prev, cfg_hash);
    char h[32];
    snprintf(h, sizeof h, "%016llx", (unsigned long long)XXH64(buf, (size_t)len, 0));
    memcpy(out, h, 17);
    return RX_OK;
}

static const char *const pairs_keys[] = {"seed", "reflow.pairs", "reflow.sampler", "reflow.guidance", "sample.use_ema"};
static const char *const reflow_keys[] = {"reflow.steps", "reflow.batch_size", "reflow.lr", "train.ema_decay",
                                          "train.ema_start", "sample.use_ema"};
static const char *const distill_keys[] = {"reflow.distill_steps", "reflow.batch_size", "reflow.lr",
                                           "train.ema_decay", "train.ema_start", "sample.use_ema"};
#define COUNT(a) (int)(sizeof(a) / sizeof((a)[0]))

/* every stage's hash up to the target, and which finished runs already hold each model
 * (none when --force, nor for a stage this run resumes from its own checkpoint) */
static rx_status plan_stages(rx_experiment *ex, rx_run *run, const rx_run_options *opt, int resume, stage_plan *p) {
    memset(p, 0, sizeof *p);
    p->rounds = (int)rx_param_int(ex->reflow, "rounds");
    p->target = ex->sample_model;
    p->n_pairs = (int)rx_param_int(ex->reflow, "pairs");
    p->pairs_batch = (int)rx_param_int(ex->reflow, "pairs_batch_size");
    if (ex->smoke) { p->n_pairs = p->n_pairs < 4 ? p->n_pairs : 4; p->pairs_batch = p->n_pairs; }
    if (p->rounds > RX_REFLOW_MAX_ROUNDS) return rx_fail(RX_ERR_CONFIG, "reflow.rounds: at most %d", RX_REFLOW_MAX_ROUNDS);
    const char *prev = ex->train_hash;
    for (int j = 1; j <= p->target; j++) {
        if (j <= p->rounds) {
            /* pairs of a later round are drawn unguided (pairs_draw); the name keeps them, and
             * what was trained on them, apart from files an older runexp drew guided */
            RX_TRY(chain_hash(ex, j == 1 ? "pairs" : "pairs-unguided", j, prev, pairs_keys, COUNT(pairs_keys),
                              p->pairs_hash[j]));
            RX_TRY(chain_hash(ex, "reflow", j, p->pairs_hash[j], reflow_keys, COUNT(reflow_keys), p->model_hash[j]));
        } else {
            RX_TRY(chain_hash(ex, "distill", j, prev, distill_keys, COUNT(distill_keys), p->model_hash[j]));
        }
        prev = p->model_hash[j];
        char name[24], key[32], pkey[32], file[64], own[1400];
        model_name(p, j, name, sizeof name);
        snprintf(key, sizeof key, "%s_hash", name);
        snprintf(file, sizeof file, "checkpoints/%s.safetensors", name);
        snprintf(own, sizeof own, "%s/%s", run->dir, file);
        if (j <= p->rounds) {
            snprintf(pkey, sizeof pkey, "pairs%d_hash", j);
            rx_run_set(run, pkey, json_string(p->pairs_hash[j]));
        }
        rx_run_set(run, key, json_string(p->model_hash[j]));
        if (!opt->force && !(resume && rx_fs_exists(own)))
            rx_stage_cache_find(run->exp_dir, key, p->model_hash[j], file, run->dir, p->cached[j], sizeof p->cached[j]);
    }
    return RX_OK;
}

/* ---- pairs ---- */

static rx_status pairs_write(const rx_experiment *ex, const rx_reflow_data *p, const char *hash, const char *path) {
    const int64_t C = ex->data_c, H = ex->data_h, W = ex->data_w;
    rx_st_writer *w = NULL;
    rx_status s = rx_st_writer_create(&w);
    if (!s) s = rx_st_writer_add(w, "z", RX_ST_F32, 4, (const int64_t[]){p->n, C, H, W}, p->z);
    if (!s) s = rx_st_writer_add(w, "x", RX_ST_F32, 4, (const int64_t[]){p->n, C, H, W}, p->x);
    if (!s) s = rx_st_writer_add(w, "labels", RX_ST_I32, 1, (const int64_t[]){p->n}, p->labels);
    if (!s) s = rx_st_writer_set_metadata(w, "format", "runexp-reflow-pairs-1");
    if (!s) s = rx_st_writer_set_metadata(w, "pairs_hash", hash);
    if (!s) s = rx_st_writer_write(w, path);
    rx_st_writer_free(w);
    return s;
}

/* the pairs at path, refused whole unless their checksums, hash and shapes are right */
static rx_status pairs_read(const rx_experiment *ex, const char *path, const char *hash, int n, rx_reflow_data *p) {
    rx_st_file *f = NULL;
    RX_TRY(rx_st_open(path, &f));
    const int64_t C = ex->data_c, H = ex->data_h, W = ex->data_w, shape[4] = {n, C, H, W};
    const char *h = rx_st_metadata(f, "pairs_hash");
    rx_status s = h && !strcmp(h, hash) ? RX_OK
                                        : rx_fail(RX_ERR_FORMAT, "%s: pairs of another configuration (pairs_hash %s, expected %s)",
                                                  path, h ? h : "(none)", hash);
    if (!s) s = rx_st_check_shape(f, "z", 4, shape);
    if (!s) s = rx_st_check_shape(f, "x", 4, shape);
    if (!s) s = rx_st_check_shape(f, "labels", 1, shape);
    if (!s) s = data_alloc(p, n, C * H * W);
    if (!s) s = rx_st_read_f32(f, "z", p->z, n * C * H * W);
    if (!s) s = rx_st_read_f32(f, "x", p->x, n * C * H * W);
    if (!s) s = rx_st_read_raw(f, "labels", RX_ST_I32, p->labels, (size_t)n * sizeof *p->labels);
    rx_st_close(f);
    return s;
}

/* pairs<k> drawn from the model's current sampling weights (model k-1) */
static rx_status pairs_draw(rx_experiment *ex, rx_run *run, const stage_plan *sp, int k, rx_reflow_data *p) {
    const double t0 = rx_now();
    const int n = sp->n_pairs, K = ex->model->num_classes;
    const int64_t d = (int64_t)ex->data_c * ex->data_h * ex->data_w;
    RX_TRY(data_alloc(p, n, d));
    int64_t *index = malloc((size_t)n * sizeof *index);
    if (!index) return rx_fail(RX_ERR_OOM, "reflow: out of memory for %d pair indices", n);
    for (int i = 0; i < n; i++) {
        index[i] = RX_REFLOW_PAIR_INDEX(k, i);
        p->labels[i] = K > 0 ? i % K : 0;
        rx_rng_normal(ex->seed, RX_STREAM(RX_RNG_SAMPLE_NOISE, (uint64_t)index[i]), 0, p->z + (size_t)i * d, d);
    }
    /* round 1 guides the teacher; a later round's model k-1 is a student, sampled unguided */
    rx_generator g;
    rx_status s = rx_generator_open_with(ex, &g, &ex->reflow_sampler, rx_guidance_of_model(k - 1, &ex->reflow_guidance));
    for (int b0 = 0; b0 < n && !s; b0 += sp->pairs_batch) {
        const int m = n - b0 < sp->pairs_batch ? n - b0 : sp->pairs_batch;
        s = rx_generate(&g, index + b0, m, p->labels + b0, p->x + (size_t)b0 * d);
        char eta[32];
        if (!s) rx_run_log(run, "pairs%d: %d/%d pairs (%.1f s, ETA %s)", k, b0 + m, n, rx_now() - t0,
                           rx_eta_format(rx_eta_seconds(b0 + m, n, rx_now() - t0), eta, sizeof eta));
        if (!s && rx_interrupt_requested) s = rx_fail(RX_ERR_INTERRUPTED, "pairs%d: interrupted (resume draws them again)", k);
    }
    rx_status s2 = rx_generator_close(&g);
    free(index);
    if (!s) s = s2;
    for (int64_t i = 0; !s && i < (int64_t)n * d; i++)
        if (!isfinite(p->x[i])) s = rx_fail(RX_ERR_NUMERIC, "pairs%d: non-finite value in pair %lld", k, (long long)(i / d));
    char name[24];
    snprintf(name, sizeof name, "pairs%d", k);
    rx_run_stage_time(run, name, rx_now() - t0);
    return s;
}

/* pairs<k> from this run's own file (resume), a finished run's, or drawn now and written */
static rx_status pairs_stage(rx_experiment *ex, rx_run *run, const rx_run_options *opt, const stage_plan *sp, int k,
                             rx_reflow_data *p) {
    char file[64], path[1400], key[32], cached[1200];
    snprintf(file, sizeof file, "reflow/pairs%d.safetensors", k);
    snprintf(key, sizeof key, "pairs%d_hash", k);
    snprintf(path, sizeof path, "%s/%s", run->dir, file);
    const char *from = NULL;
    cached[0] = 0;
    if (rx_fs_exists(path)) from = path;   /* written whole (atomically) by this run before a resume */
    else if (!opt->force && rx_stage_cache_find(run->exp_dir, key, sp->pairs_hash[k], file, run->dir, cached, sizeof cached)) {
        snprintf(path, sizeof path, "%s/%s", cached, file);
        from = path;
    }
    if (from) {
        rx_status s = pairs_read(ex, from, sp->pairs_hash[k], sp->n_pairs, p);
        if (s) {
            char why[1024];
            snprintf(why, sizeof why, "%s", rx_last_error());
            return rx_fail(s, "%s (the reflow stage cache's pairs; --force draws them again)", why);
        }
        rx_run_log(run, "pairs%d: reusing %s (same teacher and sampler config)", k, from);
        if (cached[0]) {
            snprintf(key, sizeof key, "pairs%d_reused_from", k);
            rx_run_set(run, key, json_string(cached));
        }
        return RX_OK;
    }
    rx_run_log(run, "pairs%d: drawing %d pairs with %s (%lld steps), guidance %s%s", k, sp->n_pairs,
               ex->reflow_sampler.comp->name, (long long)rx_param_int(ex->reflow_sampler.params, "steps"),
               rx_guidance_of_model(k - 1, &ex->reflow_guidance)->comp->name,
               k > 1 ? " (the student carries reflow.guidance)" : "");
    RX_TRY(pairs_draw(ex, run, sp, k, p));
    snprintf(path, sizeof path, "%s/reflow", run->dir);
    RX_TRY(rx_fs_mkdir_p(path));
    snprintf(path, sizeof path, "%s/%s", run->dir, file);
    RX_TRY(pairs_write(ex, p, sp->pairs_hash[k], path));
    rx_run_log(run, "pairs%d: wrote %s", k, path);
    return RX_OK;
}

/* ---- students ---- */

/* dst's values = src's (any device, through the host) */
static rx_status copy_params(rx_ctx *c, const rx_paramset *dst, const rx_paramset *src) {
    float *buf = NULL;
    int64_t cap = 0;
    rx_status s = RX_OK;
    for (int i = 0; i < dst->n && i < src->n && !s; i++) {
        const int64_t n = src->t[i]->numel;
        if (n > cap) {
            float *nb = realloc(buf, (size_t)n * sizeof *buf);
            if (!nb) { s = rx_fail(RX_ERR_OOM, "reflow: out of memory copying weights"); break; }
            buf = nb;
            cap = n;
        }
        s = rx_tensor_to_host(c, src->t[i], buf);
        if (!s) s = rx_tensor_from_host(c, dst->t[i], buf);
    }
    free(buf);
    return s;
}

/* a student starts from what its teacher samples with: the EMA weights when sample.use_ema,
 * and its own EMA starts from them */
static rx_status student_init(rx_experiment *ex) {
    const int use_ema = ex->ema.n > 0 && (!ex->sample || rx_param_bool(ex->sample, "use_ema"));
    if (use_ema) RX_TRY(copy_params(ex->ctx, &ex->model->params, &ex->ema));
    if (ex->ema.n) RX_TRY(copy_params(ex->ctx, &ex->ema, &ex->model->params));
    return RX_OK;
}

static rx_status reflow_loss(rx_experiment *ex, rx_train_batch *b, int64_t step, rx_tensor **loss) {
    const rx_reflow_data *p = ex->reflow_data;
    const int K = ex->model->num_classes;
    RX_TRY(rx_reflow_make_batch(&ex->schedule, p->seed, step, p->sigma_fixed, p->n, b->n, (int)p->d, p->z, p->x,
                                K > 0 ? p->labels : NULL, b->xt, b->t, b->target, b->weight, b->labels_out));
    return rx_denoise_batch_loss(ex, b, loss);
}

static const rx_task reflow_task = {.classifier = 0, .generates = 1, .loss = reflow_loss, .eval = rx_stage_eval};

/* model j trained from the current weights on the pairs p, or resumed from its checkpoint */
static rx_status student_train(rx_experiment *ex, rx_run *run, const stage_plan *sp, int j, rx_reflow_data *p,
                               int resume) {
    char name[24], ckpt[1200];
    model_name(sp, j, name, sizeof name);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints/%s.safetensors", run->dir, name);
    const int distill = j == sp->rounds + 1;
    const rx_train_stage st = {.name = name, .ckpt = ckpt, .hash = sp->model_hash[j],
                               .batch_size = (int)rx_param_int(ex->reflow, "batch_size"),
                               .steps = rx_param_int(ex->reflow, distill ? "distill_steps" : "steps"),
                               .lr = (float)rx_param_float(ex->reflow, "lr"), .from_data = 0};
    p->sigma_fixed = distill ? 1.0 : -1.0;
    p->seed = ex->seed + (uint64_t)j;   /* each stage its own pair choices and times */
    rx_run_log(run, "%s: %s on %d pairs of pairs%d", name, distill ? "1-step distillation" : "reflow", p->n,
               distill ? sp->rounds : j);
    RX_TRY(student_init(ex));   /* a resume overwrites these with the checkpoint's */
    const rx_task *task = ex->task;
    ex->task = &reflow_task;
    ex->reflow_data = p;
    rx_status s = rx_train_stage_run(ex, run, &st, resume && rx_fs_exists(ckpt));
    ex->task = task;
    ex->reflow_data = NULL;
    return s;
}

/* model j's weights and EMA from the finished run that made them */
static rx_status student_reuse(rx_experiment *ex, rx_run *run, const stage_plan *sp, int j) {
    char name[24], path[1400], key[40];
    model_name(sp, j, name, sizeof name);
    snprintf(path, sizeof path, "%s/checkpoints/%s.safetensors", sp->cached[j], name);
    rx_ckpt_group g[2] = {{"model", &ex->model->params, 0}, {"ema", &ex->ema, 1}};
    rx_status s = rx_ckpt_load(ex->ctx, path, g, ex->ema.n ? 2 : 1, sp->model_hash[j], NULL);
    if (s) {
        char why[1024];
        snprintf(why, sizeof why, "%s", rx_last_error());
        return rx_fail(s, "%s (the stage cache's %s of %s; --force trains again)", why, name, sp->cached[j]);
    }
    rx_run_log(run, "%s: reusing the weights of %s (same teacher and reflow config)", name, sp->cached[j]);
    snprintf(key, sizeof key, "%s_reused_from", name);
    rx_run_set(run, key, json_string(sp->cached[j]));
    return RX_OK;
}

rx_status rx_stage_reflow(rx_experiment *ex, rx_run *run, const rx_run_options *opt, int resume) {
    if (!ex->reflow || ex->sample_model == 0) return RX_OK;
    stage_plan sp;
    RX_TRY(plan_stages(ex, run, opt, resume, &sp));
    rx_reflow_data pairs = {0};
    rx_status s = RX_OK;
    for (int j = 1; j <= sp.target && !s; j++) {
        /* pairs<j> come from model j-1, the weights held now; the distillation trains on the
         * last round's pairs, so they are needed even when that round's model is cached */
        const int distill_next = j == sp.rounds && sp.target == sp.rounds + 1 && !sp.cached[sp.rounds + 1][0];
        if (j <= sp.rounds && (!sp.cached[j][0] || distill_next)) {
            data_free(&pairs);
            s = pairs_stage(ex, run, opt, &sp, j, &pairs);
        }
        if (!s) s = sp.cached[j][0] ? student_reuse(ex, run, &sp, j) : student_train(ex, run, &sp, j, &pairs, resume);
    }
    data_free(&pairs);
    return s;
}
