/* train.c — the training stage.
 *
 * One step: batch from the loader -> the loss of the objective's task (a denoiser: objective
 * batch (x_t, t, target, weight, dropped labels) -> model forward -> weighted MSE; a
 * classifier: cross-entropy on the labels, classify.c) -> backward -> clip by global norm
 * -> AdamW -> EMA.
 * Everything random is keyed by (seed, step): the loader order, the objective's noise
 * and times, dropout. So a run resumed from a checkpoint at step k continues exactly as
 * the uninterrupted run would have, bit for bit on the CPU.
 *
 * Checkpoints (checkpoints/last.safetensors, atomically replaced) every checkpoint_every
 * steps, at the end, and on SIGINT/SIGTERM; a non-finite loss stops the run as failed,
 * naming the step and the last good checkpoint. Every sample_every steps a preview grid
 * (sample.c), which touches neither the weights nor any random stream of training. */
#include "experiment.h"
#include "checkpoint.h"
#include "autograd/optim.h"
#include "autograd/liveness.h"
#include "runner/memory_plan.h"
#include "runner/progress.h"
#include "data/loader.h"
#include <math.h>
#include <string.h>
#include <unistd.h>

volatile int rx_interrupt_requested = 0;

void rx_train_batch_free(rx_train_batch *b) {
    free(b->x0); free(b->xt); free(b->t); free(b->target); free(b->weight); free(b->labels_f);
    free(b->labels); free(b->labels_out);
    memset(b, 0, sizeof *b);
}

rx_status rx_train_batch_alloc(rx_train_batch *b, int B, int64_t d) {
    memset(b, 0, sizeof *b);
    b->n = B;
    b->x0 = malloc(B * d * sizeof(float));
    b->xt = malloc(B * d * sizeof(float));
    b->target = malloc(B * d * sizeof(float));
    b->t = malloc(B * sizeof(float));
    b->weight = malloc(B * sizeof(float));
    b->labels_f = malloc(B * sizeof(float));
    b->labels = malloc(B * sizeof(int32_t));
    b->labels_out = malloc(B * sizeof(int32_t));
    if (!b->x0 || !b->xt || !b->target || !b->t || !b->weight || !b->labels_f || !b->labels || !b->labels_out) {
        rx_train_batch_free(b);
        return rx_fail(RX_ERR_OOM, "train: out of memory for batch buffers");
    }
    return RX_OK;
}

static void ckpt_groups(rx_experiment *ex, rx_adamw *opt, rx_ckpt_group g[4], int *n) {
    int k = 0;
    g[k++] = (rx_ckpt_group){"model", &ex->model->params, 0};
    if (ex->ema.n) g[k++] = (rx_ckpt_group){"ema", &ex->ema, 0};
    g[k++] = (rx_ckpt_group){"adam_m", &opt->m, 0};
    g[k++] = (rx_ckpt_group){"adam_v", &opt->v, 0};
    *n = k;
}

/* the steps since the last log line */
typedef struct log_window {
    double t;               /* when it opened, or when this process resumed inside it */
    double loss_sum;        /* over every step of the window, also those before a resume */
    int64_t n;
    int64_t n_timed;        /* steps since t: what img_per_s counts */
} log_window;

/* w: the logging window still open at `step` (its partial sums go into the checkpoint) */
static rx_status save_checkpoint(rx_experiment *ex, rx_run *run, rx_adamw *opt, int64_t step, const log_window *w) {
    rx_ckpt_group g[4];
    int n;
    ckpt_groups(ex, opt, g, &n);
    char *yaml = rx_config_emit_string(ex->cfg->root);
    rx_ckpt_meta meta = {.step = step, .seed = ex->seed, .config_yaml = yaml, .log_loss_sum = w->loss_sum,
                         .log_steps = w->n};
    snprintf(meta.config_hash, sizeof meta.config_hash, "%s", ex->train_hash);
    char path[1200];
    snprintf(path, sizeof path, "%s/checkpoints/last.safetensors", run->dir);
    rx_status s = rx_ckpt_save(ex->ctx, path, g, n, &meta);
    free(yaml);
    return s;
}

rx_status rx_denoise_loss(rx_experiment *ex, rx_train_batch *b, int64_t step, rx_tensor **loss) {
    rx_ctx *c = ex->ctx;
    rx_model *m = ex->model;
    const rx_objective_impl *obj = ex->objective.comp->impl;
    int B = b->n, C = ex->data_c, H = ex->data_h, W = ex->data_w;
    int64_t d = (int64_t)C * H * W;
    int K = m->num_classes;
    RX_TRY(obj->make_batch(ex->objective.params, &ex->schedule, ex->seed, step, B, (int)d, b->x0,
                           K > 0 ? b->labels : NULL, K, b->xt, b->t, b->target, b->weight, b->labels_out));
    rx_tensor *X = rx_from_host(c, RX_SHAPE(B, C, H, W), b->xt);
    rx_tensor *T = rx_from_host(c, RX_SHAPE(B), b->t);
    rx_tensor *Y = rx_from_host(c, RX_SHAPE(B, C, H, W), b->target);
    rx_tensor *Wt = rx_from_host(c, RX_SHAPE(B), b->weight);
    rx_tensor *L = NULL;
    if (K > 0) {
        for (int i = 0; i < B; i++) b->labels_f[i] = (float)b->labels_out[i];
        L = rx_from_host(c, RX_SHAPE(B), b->labels_f);
    }
    rx_tensor *out = m->impl->forward(c, m, X, T, L);
    if (out && m->learn_sigma) out = rx_slice(c, out, 1, 0, C);
    *loss = rx_mse_loss(c, out, Y, Wt);
    return *loss ? RX_OK : rx_ctx_status(c);
}

rx_status rx_train_step(rx_experiment *ex, rx_adamw *opt, rx_train_batch *b, int64_t step, int64_t total_steps,
                            float *loss_out, double *gnorm_out, float *lr_out) {
    rx_ctx *c = ex->ctx;
    rx_model *m = ex->model;
    c->rng_step = (uint64_t)step;   /* dropout's randomness: keyed by the step, like the batch */
    rx_tensor *loss = NULL;
    c->checkpointing = rx_param_bool(ex->train, "gradient_checkpointing");
    if (!c->checkpointing && !c->fwd_plan && rx_memory_plan_train_forward(ex, b, step) != RX_OK) {
        /* only an earlier start of the saving: without it this step learns the plan itself */
        rx_clear_error();
        RX_TRY(rx_fwd_plan_create(c));
    }
    rx_fwd_plan_begin(c);   /* the forward gives back what no backward reads (autograd/liveness.h) */
    RX_TRY(ex->task->loss(ex, b, step, &loss));
    c->release_in_backward = 1;   /* only the loss is read after backward: free the rest as it goes */
    RX_TRY(rx_backward(c, loss));
    RX_TRY(rx_tensor_to_host(c, loss, loss_out));
    /* a non-finite loss stops the run (the caller names the step and the last good
     * checkpoint); the optimizer must not see its gradients first */
    if (!isfinite(*loss_out)) {
        rx_step_end(c);
        return RX_OK;
    }
    const rx_lr_schedule_impl *sched = ex->lr_schedule.comp->impl;
    float lr = sched->lr_at(ex->lr_schedule.params, opt->cfg.lr, step - 1, total_steps);
    rx_optim_stats st;
    RX_TRY(rx_adamw_step(c, opt, lr, &st));
    *gnorm_out = st.grad_norm;
    if (ex->ema.n)
        RX_TRY(rx_ema_update(c, &ex->ema, &m->params, (float)rx_param_float(ex->train, "ema_decay"),
                             rx_param_int(ex->train, "ema_start"), opt->step));
    RX_TRY(rx_paramset_zero_grad(c, &m->params));
    rx_step_end(c);
    *lr_out = lr;
    return RX_OK;
}

static void progress(rx_run *run, int64_t step, int64_t total, float loss, double ips, const char *eta) {
    if (run->quiet) return;
    if (isatty(STDERR_FILENO)) {
        int width = 30, done = total ? (int)(width * step / total) : width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < done ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\rtrain [%s] %lld/%lld loss %.4f  %.1f img/s  ETA %s   ", bar, (long long)step,
                (long long)total, loss, ips, eta);
        if (step == total) fputc('\n', stderr);
        fflush(stderr);
    }
}

/* the train section, shrunk for a smoke run */
typedef struct train_plan {
    int B;                                  /* batch */
    int64_t steps, log_every, ckpt_every;   /* ckpt_every 0: only at the end */
    double max_s;                           /* wall-clock limit in seconds; 0 = none */
    int64_t sample_every;                   /* preview grids; 0 = none */
} train_plan;

static train_plan plan_of(const rx_experiment *ex) {
    train_plan p = {(int)rx_param_int(ex->train, "batch_size"), rx_param_int(ex->train, "steps"),
                    rx_param_int(ex->train, "log_every"), rx_param_int(ex->train, "checkpoint_every"),
                    60.0 * rx_param_float(ex->train, "max_minutes"), rx_param_int(ex->train, "sample_every")};
    if (ex->smoke) { p.B = 2; p.steps = 2; p.log_every = 1; }
    return p;
}

/* what the training loop works with; trainer_open sets it up, trainer_close frees it */
typedef struct trainer {
    rx_experiment *ex;
    rx_run *run;
    train_plan plan;
    rx_loader *loader;
    rx_adamw opt;
    rx_train_batch batch;
    char ckpt[1200];        /* <run>/checkpoints/last.safetensors */
    double t0;              /* the stage's start: max_minutes counts from it */
    int64_t start_step;     /* the step the loop starts after (a resume's checkpoint), */
    double t_loop;          /* and when: the ETA's rate is measured from there */
} trainer;

static void trainer_close(trainer *t) {
    rx_train_batch_free(&t->batch);
    rx_loader_free(t->loader);
    rx_adamw_free(&t->opt);
}

/* the loader (its images must be what the model takes), the optimizer and the batch buffers */
static rx_status trainer_open(trainer *t, rx_experiment *ex, rx_run *run) {
    memset(t, 0, sizeof *t);
    t->ex = ex;
    t->run = run;
    t->t0 = rx_now();
    t->plan = plan_of(ex);
    snprintf(t->ckpt, sizeof t->ckpt, "%s/checkpoints/last.safetensors", run->dir);
    const rx_dataset *data = ex->train_data;
    if (ex->model->num_classes > 0 && data->num_classes > ex->model->num_classes)
        return rx_fail(RX_ERR_CONFIG, "model.num_classes = %d but dataset %s has %d classes", ex->model->num_classes,
                       data->name, data->num_classes);
    rx_transform_chain chain = {ex->transforms, ex->n_transforms};
    /* latent diffusion: batches of the latents stage's latents (rx_latent_batch), no loader */
    rx_status s = ex->latent ? RX_OK : rx_loader_create(data, &chain, t->plan.B, ex->seed, 1, &t->loader);
    if (!s && t->loader) {
        int lc, lh, lw;
        rx_loader_image_shape(t->loader, &lc, &lh, &lw);
        if (lc != ex->data_c || lh != ex->data_h || lw != ex->data_w)
            s = rx_fail(RX_ERR_CONFIG, "dataset %s after transforms gives %dx%dx%d images, the model takes %dx%dx%d "
                        "(model.in_channels, model.sample_size; add resize/pad/to_rgb transforms?)",
                        data->name, lc, lh, lw, ex->data_c, ex->data_h, ex->data_w);
    }
    const rx_optimizer_impl *oi = ex->optimizer.comp->impl;
    if (!s) s = oi->create(ex->ctx, ex->optimizer.params, &ex->model->params, &t->opt);
    if (!s) s = rx_train_batch_alloc(&t->batch, t->plan.B, (int64_t)ex->data_c * ex->data_h * ex->data_w);
    return s;
}

/* the step training continues after: that of the run's own checkpoint when resuming from
 * one (weights, EMA, optimizer state and the open logging window loaded from it), else 0.
 * metrics.jsonl keeps only the rows up to it: the rows a killed run logged after its last
 * checkpoint are logged again, from the same state, by the resumed training. */
static rx_status resume_point(trainer *t, int resume, int64_t *start, log_window *w) {
    *start = 0;
    *w = (log_window){rx_now(), 0, 0, 0};
    if (!resume) return RX_OK;
    if (access(t->ckpt, F_OK) != 0) return rx_run_metrics_cut(t->run, 0);
    rx_ckpt_group g[4];
    int n;
    ckpt_groups(t->ex, &t->opt, g, &n);
    rx_ckpt_meta meta;
    RX_TRY(rx_ckpt_load(t->ex->ctx, t->ckpt, g, n, t->ex->train_hash, &meta));
    *start = meta.step;
    t->opt.step = meta.step;
    w->loss_sum = meta.log_loss_sum;
    w->n = meta.log_steps;
    rx_run_log(t->run, "train: resumed from %s at step %lld", t->ckpt, (long long)meta.step);
    return rx_run_metrics_cut(t->run, meta.step);
}

/* the window closing at `step`: one metrics.jsonl row and a progress (or log) line; the next
 * window opens */
static rx_status log_window_close(trainer *t, log_window *w, int64_t step, float lr, double gnorm) {
    const int B = t->plan.B;
    const int64_t steps = t->plan.steps;
    double now = rx_now(), ips = w->n_timed * B / (now - w->t + 1e-9), loss = w->loss_sum / w->n;
    json_t *row = json_object();
    json_object_set_new(row, "step", json_integer(step));
    json_object_set_new(row, "loss", json_real(loss));
    json_object_set_new(row, "lr", json_real(lr));
    json_object_set_new(row, "grad_norm", json_real(gnorm));
    json_object_set_new(row, "img_per_s", json_real(ips));
    rx_status s = rx_run_metrics(t->run, row);
    char eta[32];
    double left = rx_eta_seconds((double)(step - t->start_step), (double)(steps - t->start_step), now - t->t_loop);
    if (t->plan.max_s > 0 && left > t->plan.max_s - (now - t->t0)) left = fmax(0, t->plan.max_s - (now - t->t0));
    rx_eta_format(left, eta, sizeof eta);   /* max_minutes stops the run earlier */
    if (isatty(STDERR_FILENO)) progress(t->run, step, steps, (float)loss, ips, eta);
    else rx_run_log(t->run, "train: step %lld/%lld loss %.5f lr %.3g grad-norm %.3g %.1f img/s ETA %s", (long long)step,
                    (long long)steps, loss, lr, gnorm, ips, eta);
    *w = (log_window){now, 0, 0, 0};
    return s;
}

/* steps start+1 .. plan.steps, logging and checkpointing on the way; stops early at
 * max_minutes (checkpointed) or an interrupt (checkpointed, RX_ERR_INTERRUPTED) */
static rx_status train_loop(trainer *t, int64_t start, log_window w) {
    rx_experiment *ex = t->ex;
    rx_run *run = t->run;
    const train_plan *p = &t->plan;
    int64_t last_ckpt = start;
    rx_status s = RX_OK;
    for (int64_t step = start + 1; step <= p->steps && !s; step++) {
        rx_batch_info info;
        s = t->loader ? rx_loader_next(t->loader, t->batch.x0, t->batch.labels, &info)
                      : rx_latent_batch(ex->latent, ex->seed, step - 1, p->B, t->batch.x0, t->batch.labels);
        float loss = 0, lr = 0;
        double gnorm = 0;
        if (!s) s = rx_train_step(ex, &t->opt, &t->batch, step, p->steps, &loss, &gnorm, &lr);
        if (s) break;
        if (!isfinite(loss)) {
            char msg[1400];
            snprintf(msg, sizeof msg, "loss is %f at step %lld; last good checkpoint: %s", loss, (long long)step,
                     last_ckpt > 0 ? t->ckpt : "(none)");
            s = rx_fail(RX_ERR_NUMERIC, "%s", msg);
            break;
        }
        w.loss_sum += loss;
        w.n++;
        w.n_timed++;
        /* a checkpoint step also closes the logging window, so a run resumed from it logs the
         * same lines as the uninterrupted run */
        const int out_of_time = p->max_s > 0 && step < p->steps && rx_now() - t->t0 >= p->max_s;
        const int ckpt_now = (p->ckpt_every > 0 && step % p->ckpt_every == 0) || step == p->steps || out_of_time;
        if (step % p->log_every == 0 || ckpt_now) s = log_window_close(t, &w, step, lr, gnorm);
        if (!s && ckpt_now) {
            s = save_checkpoint(ex, run, &t->opt, step, &w);   /* the window just closed: empty */
            last_ckpt = step;
        }
        /* the last step's grid is the sample stage's own */
        if (!s && p->sample_every > 0 && step % p->sample_every == 0 && step < p->steps && !out_of_time)
            s = rx_sample_preview(ex, run, step);
        if (!s && out_of_time) {   // the lr schedule still runs over train.steps: it is cut, not compressed
            rx_run_log(run, "train: max_minutes (%g) reached at step %lld of %lld; checkpoint written",
                       p->max_s / 60, (long long)step, (long long)p->steps);
            rx_run_set(run, "train_stopped_at_step", json_integer(step));
            break;
        }
        if (!s && rx_interrupt_requested) {
            /* mid-window: the checkpoint carries the window's sums, and the resumed run's
             * next row averages the same steps as the uninterrupted run's */
            s = save_checkpoint(ex, run, &t->opt, step, &w);
            if (!s) s = rx_fail(RX_ERR_INTERRUPTED, "interrupted at step %lld; checkpoint written; continue with: runexp --resume %s",
                                (long long)step, run->dir);
        }
    }
    return s;
}

rx_status rx_stage_train(rx_experiment *ex, rx_run *run, int resume) {
    trainer t;
    rx_status s = trainer_open(&t, ex, run);
    if (s) { trainer_close(&t); return s; }
    int64_t start = 0;
    log_window w;
    s = resume_point(&t, resume, &start, &w);
    if (!s && t.loader) s = rx_loader_seek(t.loader, start);
    const rx_dataset *data = ex->train_data;
    rx_run_log(run, "train: %lld steps, batch %d, %lld parameters, data %s (%d %s, %dx%dx%d)", (long long)t.plan.steps,
               t.plan.B, (long long)rx_model_param_count(ex->model), data->name, ex->latent ? ex->latent->n : data->n,
               ex->latent ? "latents" : "images after transforms", ex->data_c, ex->data_h, ex->data_w);
    ex->ctx->training = 1;
    rx_set_grad_enabled(ex->ctx, 1);
    t.start_step = start;
    t.t_loop = rx_now();
    if (!s) s = train_loop(&t, start, w);
    ex->ctx->training = 0;
    trainer_close(&t);
    rx_run_stage_time(run, "train", rx_now() - t.t0);
    return s;
}
