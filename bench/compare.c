/* bench/compare.c — the runexp side of bench/compare (issue 15): one experiment's training step
 * and its DDIM + CFG sampling, timed on command, beside bench/compare_torch.py.
 *
 *   make bench && ./build/bench/compare CONFIG --dir DIR [--batch B] [--images N] [--threads T]
 *                                        [--backend cpu|cuda] [--set k=v]...
 *
 * Setup (before READY): the experiment is built as the runner builds it (rx_experiment_build) with
 * a tiny synthetic data set (nothing reads it), train.batch_size = B, no EMA (the PyTorch side
 * has none: the step compared is zero grads, forward, MSE, backward, clip, AdamW) and
 * sample.num_images = sample.batch_size = N. Then into DIR:
 *   model/              the initial weights (+ 0.01·N(0,1), see perturb_params) through
 *                       rx_model_export_diffusers (what `runexp export --to diffusers` writes),
 *                       for PyTorch's from_pretrained
 *   inputs.safetensors  parity_x / parity_t / parity_labels and parity_out, the model's output on
 *                       them (eval mode, before any step changes the weights); the training batch
 *                       of step 1 (xt, t, target, weight, labels as the objective makes them);
 *                       betas, the schedule's [T] betas, so DDIMScheduler gets the same schedule
 *   setup.json          sampler, guidance and optimizer settings the PyTorch side copies
 * Commands on stdin, one per line; each answers one line on stdout:
 *   step          one rx_train_step (the train stage's step)     -> TIME step WALL_S CPU_S
 *   warm_sample   one guided network call at the sampling batch  -> TIME warm_sample WALL_S CPU_S
 *   sample        N images through the config's sampler + CFG    -> TIME sample WALL_S CPU_S
 *   quit
 * CPU_S is the process's CPU time over the command, so the driver can say what share of the cores
 * the run got. The process waits on stdin between commands with passive OpenMP threads (as
 * runexp runs), so it takes no CPU while the PyTorch side is timed. */
#include "runner/experiment.h"
#include "registry/registry.h"
#include "io/config.h"
#include "io/json_util.h"
#include "io/safetensors.h"
#include "core/philox.h"
#include "autograd/optim.h"
#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "clock.h"

enum { MAX_SETS = 32 };

typedef struct options {
    const char *config, *dir, *backend;
    int batch, images, threads;
    const char *sets[MAX_SETS];
    int n_sets;
} options;

/* what the commands work on */
typedef struct bench {
    rx_experiment ex;
    rx_config *cfg;
    rx_adamw opt;
    rx_train_batch buf;
    int64_t step;
    int32_t *labels;        /* [N] sampling labels, i mod K */
    int64_t *index;         /* [N] image indices: they key each image's noise */
    float *x;               /* [N, d] samples; [2N, d] scratch for warm_sample */
} bench;

static void die(const char *what) {
    fprintf(stderr, "bench/compare: %s: %s\n", what, rx_last_error());
    printf("ERROR %s\n", what);
    fflush(stdout);
    exit(1);
}

/* ---------------------------------------------------------------------------------------------
 * setup */

static rx_status resolve(const options *o, rx_config **cfg) {
    static char batch[64], threads[64], images[64], sample_batch[64], backend[64];
    const char *sets[MAX_SETS + 10];
    int n = 0;
    snprintf(backend, sizeof backend, "backend=%s", o->backend);
    snprintf(batch, sizeof batch, "train.batch_size=%d", o->batch);
    snprintf(images, sizeof images, "sample.num_images=%d", o->images);
    snprintf(sample_batch, sizeof sample_batch, "sample.batch_size=%d", o->images);
    sets[n++] = backend;
    sets[n++] = batch;
    sets[n++] = images;
    sets[n++] = sample_batch;
    sets[n++] = "train.ema_decay=0";        /* the PyTorch step keeps no EMA */
    sets[n++] = "dataset.name=synthetic";   /* built, never read: the inputs are the objective's */
    sets[n++] = "dataset.num_images=16";
    if (o->threads > 0) {
        snprintf(threads, sizeof threads, "threads=%d", o->threads);
        sets[n++] = threads;
    }
    for (int i = 0; i < o->n_sets; i++) sets[n++] = o->sets[i];
    rx_config_errors errs = {0};
    rx_status s = rx_config_resolve(o->config, sets, n, NULL, cfg, &errs);
    if (s) rx_config_errors_print(&errs, stderr);
    rx_config_errors_clear(&errs);
    free(errs.items);
    return s;
}

/* the model's output in eval mode on fixed inputs, before any step moves the weights */
static rx_status parity_forward(rx_experiment *ex, int B, float *x, float *t, float *labels, float *out) {
    rx_ctx *c = ex->ctx;
    rx_model *m = ex->model;
    const int64_t d = (int64_t)ex->data_c * ex->data_h * ex->data_w;
    const int T = ex->schedule.num_train_timesteps, K = m->num_classes;
    rx_rng_normal(ex->seed, RX_STREAM(RX_RNG_TEST, 15), 0, x, B * d);
    for (int i = 0; i < B; i++) {
        t[i] = (float)((i * 131 + 7) % T);
        labels[i] = K > 0 ? (float)(i % (K + 1)) : 0;   /* K: the null label, so its row is checked too */
    }
    rx_set_grad_enabled(c, 0);
    c->training = 0;
    rx_tensor *X = rx_from_host(c, RX_SHAPE(B, ex->data_c, ex->data_h, ex->data_w), x);
    rx_tensor *Tt = rx_from_host(c, RX_SHAPE(B), t);
    rx_tensor *L = K > 0 ? rx_from_host(c, RX_SHAPE(B), labels) : NULL;
    rx_tensor *Y = m->impl->forward(c, m, X, Tt, L);
    rx_status s = Y ? rx_tensor_to_host(c, Y, out) : rx_ctx_status(c);
    rx_step_end(c);
    return s;
}

/* step 1's training batch as rx_train_step will make it (the objective is keyed by seed and step) */
static rx_status first_batch(rx_experiment *ex, rx_train_batch *b) {
    const rx_objective_impl *obj = ex->objective.comp->impl;
    const int K = ex->model->num_classes, B = b->n;
    const int64_t d = (int64_t)ex->data_c * ex->data_h * ex->data_w;
    rx_rng_normal(ex->seed, RX_STREAM(RX_RNG_TEST, 14), 0, b->x0, B * d);
    for (int i = 0; i < B; i++) b->labels[i] = K > 0 ? i % K : -1;
    RX_TRY(obj->make_batch(ex->objective.params, &ex->schedule, ex->seed, 1, 0, B, (int)d, b->x0, K > 0 ? b->labels : NULL,
                           K, b->xt, b->t, b->target, b->weight, b->labels_out));
    for (int i = 0; i < B; i++) b->labels_f[i] = K > 0 ? (float)b->labels_out[i] : 0;
    return RX_OK;
}

static rx_status write_inputs(rx_experiment *ex, const rx_train_batch *b, const char *dir, int B) {
    const rx_model *m = ex->model;
    const int C = ex->data_c, H = ex->data_h, W = ex->data_w, T = ex->schedule.num_train_timesteps;
    const int64_t d = (int64_t)C * H * W, dout = (int64_t)m->out_channels * H * W;
    float *x = malloc(B * d * sizeof *x), *out = malloc(B * dout * sizeof *out), *betas = malloc(T * sizeof *betas);
    float *t = malloc(B * sizeof *t), *labels = malloc(B * sizeof *labels);
    rx_status s = x && out && betas && t && labels ? parity_forward(ex, B, x, t, labels, out)
                                                   : rx_fail(RX_ERR_OOM, "compare: out of memory");
    for (int i = 0; i < T && !s; i++) betas[i] = (float)ex->schedule.betas[i];
    rx_st_writer *w = NULL;
    if (!s) s = rx_st_writer_create(&w);
    const int64_t img[4] = {B, C, H, W}, outs[4] = {B, m->out_channels, H, W}, vec[1] = {B}, sched[1] = {T};
    if (!s) s = rx_st_writer_add_f32(w, "parity_x", 4, img, x);
    if (!s) s = rx_st_writer_add_f32(w, "parity_t", 1, vec, t);
    if (!s) s = rx_st_writer_add_f32(w, "parity_labels", 1, vec, labels);
    if (!s) s = rx_st_writer_add_f32(w, "parity_out", 4, outs, out);
    if (!s) s = rx_st_writer_add_f32(w, "xt", 4, img, b->xt);
    if (!s) s = rx_st_writer_add_f32(w, "t", 1, vec, b->t);
    if (!s) s = rx_st_writer_add_f32(w, "target", 4, img, b->target);
    if (!s) s = rx_st_writer_add_f32(w, "weight", 1, vec, b->weight);
    if (!s) s = rx_st_writer_add_f32(w, "labels", 1, vec, b->labels_f);
    if (!s) s = rx_st_writer_add_f32(w, "betas", 1, sched, betas);
    char path[1200];
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    if (!s) s = rx_st_writer_write(w, path);
    rx_st_writer_free(w);
    free(x); free(out); free(betas); free(t); free(labels);
    return s;
}

static void set_real(json_t *j, const rx_params *p, const char *key) {
    json_object_set_new(j, key, json_real(rx_param_float(p, key)));
}

static void set_bool(json_t *j, const rx_params *p, const char *key) {
    json_object_set_new(j, key, json_boolean(rx_param_bool(p, key)));
}

/* the settings the PyTorch side must copy to do the same work */
static rx_status write_setup(const rx_experiment *ex, const options *o, const char *dir) {
    static const char *const preds[] = {"epsilon", "v_prediction", "sample", "flow"};
    const rx_params *sp = ex->sampler.params, *op = ex->optimizer.params;
    json_t *j = json_object();
    json_object_set_new(j, "experiment", json_string(ex->name));
    json_object_set_new(j, "batch", json_integer(o->batch));
    json_object_set_new(j, "images", json_integer(o->images));
    json_object_set_new(j, "num_classes", json_integer(ex->model->num_classes));
    json_object_set_new(j, "learn_sigma", json_boolean(ex->model->learn_sigma));
    json_object_set_new(j, "prediction_type", json_string(preds[ex->prediction_type]));
    json_object_set_new(j, "sampler", json_string(ex->sampler.comp->name));
    json_object_set_new(j, "steps", json_integer(rx_param_int(sp, "steps")));
    json_object_set_new(j, "timestep_spacing", json_string(rx_param_str(sp, "timestep_spacing")));
    json_object_set_new(j, "steps_offset", json_integer(rx_param_int(sp, "steps_offset")));
    set_real(j, sp, "eta");
    set_real(j, sp, "clip_sample_range");
    set_bool(j, sp, "set_alpha_to_one");
    set_bool(j, sp, "clip_sample");
    set_bool(j, sp, "use_clipped_model_output");
    json_object_set_new(j, "guidance", json_string(ex->guidance.comp->name));
    if (!strcmp(ex->guidance.comp->name, "cfg")) set_real(j, ex->guidance.params, "scale");
    set_real(j, op, "lr");
    set_real(j, op, "beta1");
    set_real(j, op, "beta2");
    set_real(j, op, "eps");
    set_real(j, op, "weight_decay");
    set_real(j, op, "grad_clip");
    /* CUDA matmul/conv math: the config's precision (training) and sample.precision */
    json_object_set_new(j, "precision", json_string(rx_precision_name(ex->precision)));
    json_object_set_new(j, "sample_precision", json_string(rx_precision_name(ex->sample_precision)));
    json_object_set_new(j, "threads", json_integer(omp_get_max_threads()));
    json_object_set_new(j, "backend", json_string(ex->backend_name));
    char path[1200];
    snprintf(path, sizeof path, "%s/setup.json", dir);
    rx_status s = rx_json_write_atomic_digits(path, j, 9);
    json_decref(j);
    return s;
}

/* the comparison is of DDIM + CFG: refuse a config that would time something else */
static rx_status check_components(const rx_experiment *ex) {
    if (strcmp(ex->sampler.comp->name, "ddim"))
        return rx_fail(RX_ERR_CONFIG, "compare: sampler is %s; the PyTorch side runs DDIM (--set sampler.name=ddim)",
                       ex->sampler.comp->name);
    if (strcmp(ex->guidance.comp->name, "cfg") || ex->model->num_classes <= 0)
        return rx_fail(RX_ERR_CONFIG, "compare: needs a class-conditional model with guidance cfg");
    if (!strcmp(ex->objective.comp->name, "flow") || ex->prediction_type == RX_PRED_FLOW)
        return rx_fail(RX_ERR_CONFIG, "compare: a flow objective has no DDIM counterpart");
    return RX_OK;
}

/* DiT's adaLN-Zero initialisation zeroes its output, which would make the parity check vacuous:
 * every parameter gets PERTURB·N(0,1) added (Philox, keyed by the seed and the parameter's index)
 * before the export, so both sides start from the same weights that all reach the output. The
 * work timed does not depend on the values. */
#define PERTURB 0.01f

static rx_status perturb_params(rx_experiment *ex) {
    const rx_paramset *ps = &ex->model->params;
    for (int i = 0; i < ps->n; i++) {
        rx_tensor *p = ps->t[i];
        float *h = malloc(p->numel * sizeof *h), *z = malloc(p->numel * sizeof *z);
        rx_status s = h && z ? rx_tensor_to_host(ex->ctx, p, h) : rx_fail(RX_ERR_OOM, "compare: out of memory");
        if (!s) rx_rng_normal(ex->seed, RX_STREAM(RX_RNG_TEST, 1000 + i), 0, z, p->numel);
        for (int64_t j = 0; j < p->numel && !s; j++) h[j] += PERTURB * z[j];
        if (!s) s = rx_tensor_from_host(ex->ctx, p, h);
        free(h);
        free(z);
        RX_TRY(s);
    }
    return RX_OK;
}

static rx_status setup(bench *b, const options *o) {
    memset(b, 0, sizeof *b);
    RX_TRY(resolve(o, &b->cfg));
    const rx_run_options ro = {.results_root = "results", .quiet = 1};
    rx_experiment *ex = &b->ex;
    RX_TRY(rx_experiment_build(ex, b->cfg, &ro));
    RX_TRY(check_components(ex));
    RX_TRY(perturb_params(ex));
    char model_dir[1200];
    snprintf(model_dir, sizeof model_dir, "%s/model", o->dir);
    RX_TRY(rx_model_export_diffusers(ex->ctx, ex->model, model_dir));   /* the weights before any step */
    RX_TRY(((const rx_optimizer_impl *)ex->optimizer.comp->impl)->create(ex->ctx, ex->optimizer.params, &ex->model->params,
                                                                         &b->opt));
    const int64_t d = (int64_t)ex->data_c * ex->data_h * ex->data_w;
    RX_TRY(rx_train_batch_alloc(&b->buf, o->batch, d));
    RX_TRY(first_batch(ex, &b->buf));
    RX_TRY(write_inputs(ex, &b->buf, o->dir, o->batch));
    RX_TRY(write_setup(ex, o, o->dir));
    const int N = o->images, K = ex->model->num_classes;
    b->labels = malloc(N * sizeof *b->labels);
    b->index = malloc(N * sizeof *b->index);
    b->x = malloc(2 * N * d * sizeof *b->x);
    if (!b->labels || !b->index || !b->x) return rx_fail(RX_ERR_OOM, "compare: out of memory");
    for (int i = 0; i < N; i++) { b->labels[i] = i % K; b->index[i] = i; }
    return RX_OK;
}

/* ---------------------------------------------------------------------------------------------
 * commands */

static rx_status cmd_step(bench *b) {
    rx_experiment *ex = &b->ex;
    ex->ctx->training = 1;   /* as rx_stage_train: dropout on, ops recorded */
    rx_set_grad_enabled(ex->ctx, 1);
    float loss = 0, lr = 0;
    double gnorm = 0;
    const int64_t total = rx_param_int(ex->train, "steps");
    RX_TRY(rx_train_step(ex, &b->opt, &b->buf, ++b->step, total, &loss, &gnorm, &lr));
    if (!(loss == loss)) return rx_fail(RX_ERR_NUMERIC, "compare: loss is NaN at step %lld", (long long)b->step);
    return ex->ctx->be->sync ? ex->ctx->be->sync(ex->ctx) : RX_OK;
}

/* one guided call at the sampling shapes (2N rows through the network): plans and arena chunks
 * are sized by it, as the first step of a sampling run would */
static rx_status cmd_warm_sample(bench *b, int N) {
    rx_generator g;
    RX_TRY(rx_generator_open(&b->ex, &g));
    const int64_t d = g.d;
    float *t = malloc(N * sizeof *t);
    rx_status s = t ? RX_OK : rx_fail(RX_ERR_OOM, "compare: out of memory");
    for (int i = 0; i < N && !s; i++) t[i] = (float)(b->ex.schedule.num_train_timesteps - 1);
    rx_rng_normal(b->ex.seed, RX_STREAM(RX_RNG_TEST, 16), 0, b->x, N * d);
    if (!s) s = rx_guided_denoise(&g.guided, N, b->x, t, b->labels, b->x + N * d);
    free(t);
    rx_status s2 = rx_generator_close(&g);
    return s ? s : s2;
}

static rx_status cmd_sample(bench *b, int N) {
    rx_generator g;
    RX_TRY(rx_generator_open(&b->ex, &g));
    rx_status s = rx_generate(&g, b->index, N, b->labels, b->x);
    rx_status s2 = rx_generator_close(&g);
    return s ? s : s2;
}

static int serve(bench *b, const options *o) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!strcmp(line, "quit")) break;
        const double w0 = now_s(), c0 = cpu_s();
        rx_status s;
        if (!strcmp(line, "step")) s = cmd_step(b);
        else if (!strcmp(line, "warm_sample")) s = cmd_warm_sample(b, o->images);
        else if (!strcmp(line, "sample")) s = cmd_sample(b, o->images);
        else s = rx_fail(RX_ERR_ARG, "compare: unknown command '%s'", line);
        if (s) die(line);
        printf("TIME %s %.6f %.6f\n", line, now_s() - w0, cpu_s() - c0);
        fflush(stdout);
    }
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: compare CONFIG --dir DIR [--batch B] [--images N] [--threads T] [--backend cpu|cuda] "
                    "[--set k=v]...\n");
    exit(2);
}

static void parse(int argc, char **argv, options *o) {
    *o = (options){.batch = 4, .images = 4, .backend = "cpu"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dir") && v) o->dir = argv[++i];
        else if (!strcmp(a, "--batch") && v) { o->batch = atoi(v); i++; }
        else if (!strcmp(a, "--images") && v) { o->images = atoi(v); i++; }
        else if (!strcmp(a, "--threads") && v) { o->threads = atoi(v); i++; }
        else if (!strcmp(a, "--backend") && v) o->backend = argv[++i];
        else if (!strcmp(a, "--set") && v && o->n_sets < MAX_SETS) o->sets[o->n_sets++] = argv[++i];
        else if (a[0] != '-' && !o->config) o->config = a;
        else usage();
    }
    if (!o->config || !o->dir || o->batch < 1 || o->images < 1) usage();
}

int main(int argc, char **argv) {
    /* as runexp does (src/runner/main.c): passive OpenMP waiting unless the caller chose; libgomp
     * reads the policy before main, hence the re-exec. Passive also keeps this process's threads
     * asleep while the PyTorch side is being timed. */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    options o;
    parse(argc, argv, &o);
    bench b;
    if (setup(&b, &o)) die("setup");
    printf("READY threads=%d backend=%s params=%lld\n", omp_get_max_threads(), b.ex.backend_name,
           (long long)rx_model_param_count(b.ex.model));
    fflush(stdout);
    serve(&b, &o);
    free(b.labels); free(b.index); free(b.x);
    rx_train_batch_free(&b.buf);
    rx_adamw_free(&b.opt);
    rx_experiment_free(&b.ex);
    rx_config_free(b.cfg);
    return 0;
}
