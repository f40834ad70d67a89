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
 * (sample.c), which touches neither the weights nor any random stream of training.
 *
 * Data-parallel (dist/dist.h): train.batch_size is the global batch; rank r of W trains on
 * images [r*B/W, (r+1)*B/W) of each global batch (the loader's shard), drawing their noise and
 * times as those examples of the global batch (make_batch's `first`), so the W shards together
 * are the single process's batch. Each step every rank agrees on the summed loss (and on
 * whether any rank failed), then the gradients are averaged (dist: MPI or NCCL) before
 * clipping, so the clip sees the global norm and every rank applies the same update. Rank 0
 * alone writes: checkpoints, metrics, log, previews (its run directory: run.c). */
#include "experiment.h"
#include "checkpoint.h"
#include "autograd/optim.h"
#include "autograd/liveness.h"
#include "runner/memory_plan.h"
#include "runner/progress.h"
#include "kernels/cuda/cuda_api.h"
#include "data/loader.h"
#include "dist/dist.h"
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

/* what a rank of a multi-rank job says when the launcher stops it (dist.h): the checkpoint
 * the run resumes from (ckpt_step 0: none yet) */
static void dist_note(const rx_run *run, int64_t ckpt_step) {
    const rx_dist *dw = rx_dist_world();
    if (dw->world == 1) return;
    if (ckpt_step > 0)
        rx_dist_set_note("runexp rank %d of %d: the last checkpoint is step %lld in %s/checkpoints; continue with: "
                         "runexp --resume %s", dw->rank, dw->world, (long long)ckpt_step, run->dir, run->dir);
    else
        rx_dist_set_note("runexp rank %d of %d: no checkpoint yet in %s; runexp --resume %s starts its training again",
                         dw->rank, dw->world, run->dir, run->dir);
}

/* the stage's checkpoint (st->ckpt, with the stage's hash); w: the logging window still open
 * at `step` (its partial sums go into the checkpoint). Rank 0's alone: the others hold the
 * same weights and optimizer state. */
static rx_status save_checkpoint(rx_experiment *ex, rx_run *run, const rx_train_stage *st, rx_adamw *opt, int64_t step,
                                 const log_window *w) {
    if (!rx_dist_is_root()) { dist_note(run, step); return RX_OK; }
    rx_ckpt_group g[4];
    int n;
    ckpt_groups(ex, opt, g, &n);
    char *yaml = rx_config_emit_string(ex->cfg->root);
    rx_ckpt_meta meta = {.step = step, .seed = ex->seed, .config_yaml = yaml, .log_loss_sum = w->loss_sum,
                         .log_steps = w->n};
    snprintf(meta.config_hash, sizeof meta.config_hash, "%s", st->hash);
    rx_status s = rx_ckpt_save(ex->ctx, st->ckpt, g, n, &meta);
    free(yaml);
    if (!s) dist_note(run, step);   /* only once it is on disk */
    return s;
}

/* the objective's draws for step `step` (on the host, keyed by (seed, step, example)) into b */
static rx_status denoise_draw(rx_experiment *ex, rx_train_batch *b, int64_t step) {
    const rx_objective_impl *obj = ex->objective.comp->impl;
    const int64_t d = (int64_t)ex->data_c * ex->data_h * ex->data_w;
    const int K = ex->model->num_classes;
    RX_TRY(obj->make_batch(ex->objective.params, &ex->schedule, ex->seed, step, b->first, b->n, (int)d, b->x0,
                           K > 0 ? b->labels : NULL, K, b->xt, b->t, b->target, b->weight, b->labels_out));
    if (K > 0)
        for (int i = 0; i < b->n; i++) b->labels_f[i] = (float)b->labels_out[i];
    return RX_OK;
}

rx_status rx_denoise_loss(rx_experiment *ex, rx_train_batch *b, int64_t step, rx_tensor **loss) {
    if (!b->in[0]) RX_TRY(denoise_draw(ex, b, step));   /* else staged before the step (rx_denoise_stage) */
    return rx_denoise_batch_loss(ex, b, loss);
}

rx_status rx_denoise_stage(rx_experiment *ex, rx_train_batch *b, int64_t step) {
    rx_ctx *c = ex->ctx;
    RX_TRY(denoise_draw(ex, b, step));
    const float *src[5] = {b->xt, b->t, b->target, b->weight, b->labels_f};
    for (int k = 0; k < 5; k++)
        if (b->in[k]) RX_TRY(rx_tensor_from_host(c, b->in[k], src[k]));
    return RX_OK;
}

rx_status rx_denoise_batch_loss(rx_experiment *ex, rx_train_batch *b, rx_tensor **loss) {
    rx_ctx *c = ex->ctx;
    rx_model *m = ex->model;
    int B = b->n, C = ex->data_c, H = ex->data_h, W = ex->data_w;
    int K = m->num_classes;
    rx_tensor *X, *T, *Y, *Wt, *L = NULL;
    if (b->in[0]) {   /* staged: the fixed inputs a captured step reads */
        X = b->in[0], T = b->in[1], Y = b->in[2], Wt = b->in[3], L = K > 0 ? b->in[4] : NULL;
    } else {
        X = rx_from_host(c, RX_SHAPE(B, C, H, W), b->xt);
        T = rx_from_host(c, RX_SHAPE(B), b->t);
        Y = rx_from_host(c, RX_SHAPE(B, C, H, W), b->target);
        Wt = rx_from_host(c, RX_SHAPE(B), b->weight);
        if (K > 0) {
            for (int i = 0; i < B; i++) b->labels_f[i] = (float)b->labels_out[i];
            L = rx_from_host(c, RX_SHAPE(B), b->labels_f);
        }
    }
    rx_tensor *out = m->impl->forward(c, m, X, T, L);
    if (out && m->learn_sigma) out = rx_slice(c, out, 1, 0, C);
    *loss = rx_mse_loss(c, out, Y, Wt);
    return *loss ? RX_OK : rx_ctx_status(c);
}

/* forward and backward of step `step`: the gradients, and *loss (step arena, on the device) */
static rx_status step_grads(rx_experiment *ex, rx_train_batch *b, int64_t step, rx_tensor **loss) {
    rx_ctx *c = ex->ctx;
    c->rng_step = (uint64_t)step;   /* dropout's randomness: keyed by the step, like the batch */
    c->checkpointing = rx_param_bool(ex->train, "gradient_checkpointing");
    /* the plan's forward runs on a planning context: it draws and uploads the batch itself there,
     * not reading this context's fixed inputs (b->in, CUDA graphs) */
    rx_train_batch plan_b = *b;
    memset(plan_b.in, 0, sizeof plan_b.in);
    if (!c->checkpointing && !c->fwd_plan && rx_memory_plan_train_forward(ex, &plan_b, step) != RX_OK) {
        /* only an earlier start of the saving: without it this step learns the plan itself */
        rx_clear_error();
        RX_TRY(rx_fwd_plan_create(c));
    }
    rx_fwd_plan_begin(c);   /* the forward gives back what no backward reads (autograd/liveness.h) */
    /* data-parallel: gradient buckets all-reduce while backward runs (dist.h) */
    rx_status s = rx_dist_grad_arm(c, &ex->model->params);
    if (!s) s = ex->task->loss(ex, b, step, loss);
    if (!s) c->release_in_backward = 1;   /* only the loss is read after backward: free the rest as it goes */
    if (!s) s = rx_backward(c, *loss);
    rx_status started = rx_dist_grad_start_rest(c);   /* on every rank, whatever s: the collectives match */
    return s ? s : started;
}

/* the optimizer's host-side inputs of step `step`: the EMA attached (once) and the lr from the
 * schedule */
static rx_status step_lr(rx_experiment *ex, rx_adamw *opt, int64_t step, int64_t total_steps, float *lr_out) {
    if (ex->ema.n && opt->ema != &ex->ema)
        RX_TRY(rx_adamw_attach_ema(opt, &ex->ema, (float)rx_param_float(ex->train, "ema_decay"),
                                   rx_param_int(ex->train, "ema_start")));
    const rx_lr_schedule_impl *sched = ex->lr_schedule.comp->impl;
    *lr_out = sched->lr_at(ex->lr_schedule.params, opt->cfg.lr, step - 1, total_steps);
    return RX_OK;
}

/* the update after step_grads: gradients averaged over the ranks, then one queued AdamW step
 * (clipping and the EMA inside it, optim.h) and zeroed gradients; waits for nothing */
static rx_status step_update(rx_experiment *ex, rx_adamw *opt, int64_t step, int64_t total_steps, float *lr_out) {
    rx_ctx *c = ex->ctx;
    rx_model *m = ex->model;
    RX_TRY(rx_dist_grad_mean(c, &m->params));   /* before the clip: its norm is the global batch's */
    RX_TRY(step_lr(ex, opt, step, total_steps, lr_out));
    RX_TRY(rx_adamw_queue(c, opt, *lr_out));
    return rx_paramset_zero_grad(c, &m->params);
}

rx_status rx_train_step(rx_experiment *ex, rx_adamw *opt, rx_train_batch *b, int64_t step, int64_t total_steps,
                            float *loss_out, double *gnorm_out, float *lr_out) {
    rx_ctx *c = ex->ctx;
    rx_tensor *loss = NULL;
    rx_status s = step_grads(ex, b, step, &loss);
    if (!s) s = rx_tensor_to_host(c, loss, loss_out);
    /* every rank's shard is B/W images: the global batch's mean loss is the mean of the ranks'
     * (one process: the loss itself, exactly); a failure on any rank stops every rank here */
    const int ranks = rx_dist_world()->world;
    double loss_sum = s ? 0 : *loss_out;
    if ((s = rx_dist_agree(s, &loss_sum, 1))) return rx_dist_grad_drop(c, s);
    if (ranks > 1) *loss_out = (float)(loss_sum / ranks);
    /* a non-finite loss stops the run (the caller names the step and the last good
     * checkpoint); the optimizer must not see its gradients first */
    if (!isfinite(*loss_out)) {
        rx_dist_grad_drop(c, RX_OK);
        rx_step_end(c);
        return RX_OK;
    }
    RX_TRY(step_update(ex, opt, step, total_steps, lr_out));
    rx_optim_stats st;
    RX_TRY(rx_adamw_read(c, opt, &st));
    *gnorm_out = st.grad_norm;
    rx_step_end(c);
    return RX_OK;
}

rx_status rx_train_step_queued(rx_experiment *ex, rx_adamw *opt, rx_train_batch *b, int64_t step, int64_t total_steps,
                               float *loss_dst, float *lr_out) {
    rx_ctx *c = ex->ctx;
    rx_tensor *loss = NULL;
    rx_status s = step_grads(ex, b, step, &loss);
    if (s) return rx_dist_grad_drop(c, s);
    RX_TRY(c->mem->copy(c, loss_dst, loss->data, sizeof(float)));
    RX_TRY(step_update(ex, opt, step, total_steps, lr_out));
    rx_step_end(c);   /* stream order: the copy above reads the loss before the next step reuses it */
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

/* the stage's batch and steps with the train section's logging, shrunk for a smoke run */
typedef struct train_plan {
    int B;                                  /* batch */
    int64_t steps, log_every, ckpt_every;   /* ckpt_every 0: only at the end */
    double max_s;                           /* wall-clock limit in seconds; 0 = none */
    int64_t sample_every;                   /* preview grids; 0 = none */
} train_plan;

static train_plan plan_of(const rx_experiment *ex, const rx_train_stage *st) {
    train_plan p = {st->batch_size, st->steps, rx_param_int(ex->train, "log_every"),
                    rx_param_int(ex->train, "checkpoint_every"), 60.0 * st->max_minutes, st->sample_every};
    if (ex->smoke) { p.B = 2; p.steps = 2; p.log_every = 1; }
    return p;
}

/* CUDA graphs (`cuda_graphs: true`, kernels/cuda/graph.cu): after WARM_STEPS eager steps one
 * step's device work is captured and every later step replays it with one launch. What changes
 * from step to step is written, outside the graph, into fixed device buffers the graph reads:
 * the batch (the objective's draws and the loader's images: rx_task.stage into batch.in),
 * dropout's step (rx_cuda_dropout_step), the optimizer's lr, t and EMA decay (rx_adamw_prepare).
 * The loss is copied inside the graph to a fixed slot and from there, outside, to the log
 * window's buffer. The rest of a step's host work (the tape, the step arena's offsets, the
 * memory plan, the kernels' choices) is the same every step once warm, so a replay does what
 * the eager step would have done: bit for bit (tests/cuda/test_cuda_graphs_runner.c). The batch's shape
 * never changes (the loader drops the last partial batch; latent batches are full). A graph whose
 * scratch was reallocated since its capture (rx_cuda_scratch_moves) is never replayed, and a
 * preview grid (the sampler may regrow that scratch or add cuDNN plans) drops it too: the next
 * step is warm-up and capture again. A failed capture runs that step and the rest eagerly,
 * logging why. */
#define WARM_STEPS 1   /* the arena plan, scratch and cuDNN workspaces are sized by the first step */
typedef struct step_graph {
    int on;                 /* this stage's steps go through graph_step */
    int warm;               /* eager steps still to run before the next capture */
    int failed;             /* a capture failed: every later step runs eagerly (logged once) */
    rx_cuda_graph *graph;   /* NULL: not captured (yet, or again after a preview) */
    uint64_t scratch_moves; /* the scratch's reallocations when it was captured */
    rx_tensor *loss;        /* [1] the captured step's loss */
    int64_t eager, captures, replayed;
} step_graph;

/* what the training loop works with; trainer_open sets it up, trainer_close frees it */
typedef struct trainer {
    rx_experiment *ex;
    rx_run *run;
    const rx_train_stage *st;
    train_plan plan;
    rx_loader *loader;      /* NULL: the task's loss makes its batches (reflow.c) */
    rx_adamw opt;
    rx_train_batch batch;   /* this rank's shard: plan.B / ranks images */
    double t0;              /* the stage's start: max_minutes counts from it */
    int64_t start_step;     /* the step the loop starts after (a resume's checkpoint), */
    double t_loop;          /* and when: the ETA's rate is measured from there */
    /* one process reads the losses back only when it logs (or checkpoints, previews, stops):
     * until then step k's loss waits in losses[k - first_pending] on the device */
    rx_tensor *losses;      /* [log_every] floats, persistent; NULL: read every step (ranks > 1) */
    int64_t n_pending, first_pending;
    int64_t last_ckpt;      /* the last good checkpoint's step (0: none), for the error message */
    step_graph graph;
} trainer;

static void graphs_close(trainer *t);

static void trainer_close(trainer *t) {
    graphs_close(t);
    rx_train_batch_free(&t->batch);
    rx_loader_free(t->loader);
    rx_adamw_free(&t->opt);
}

/* the loader (its images must be what the model takes), the optimizer and the batch buffers */
static rx_status trainer_open(trainer *t, rx_experiment *ex, rx_run *run, const rx_train_stage *st) {
    memset(t, 0, sizeof *t);
    t->ex = ex;
    t->run = run;
    t->st = st;
    t->t0 = rx_now();
    t->plan = plan_of(ex, st);
    const int64_t d = (int64_t)ex->data_c * ex->data_h * ex->data_w;
    const rx_optimizer_impl *oi = ex->optimizer.comp->impl;
    if (!st->from_data) {
        RX_TRY(oi->create(ex->ctx, ex->optimizer.params, &ex->model->params, &t->opt));
        if (st->lr > 0) t->opt.cfg.lr = st->lr;
        return rx_train_batch_alloc(&t->batch, t->plan.B, d);
    }
    const rx_dataset *data = ex->train_data;
    if (ex->model->num_classes > 0 && data->num_classes > ex->model->num_classes)
        return rx_fail(RX_ERR_CONFIG, "model.num_classes = %d but dataset %s has %d classes", ex->model->num_classes,
                       data->name, data->num_classes);
    const rx_dist *dw = rx_dist_world();
    if (t->plan.B % dw->world)
        return rx_fail(RX_ERR_CONFIG, "train.batch_size = %d is the global batch: it must divide by the %d ranks",
                       t->plan.B, dw->world);
    const int local_b = t->plan.B / dw->world;
    rx_transform_chain chain = {ex->transforms, ex->n_transforms};
    /* latent diffusion: batches of the latents stage's latents (rx_latent_batch), no loader */
    rx_loader_opts lo = {.batch_size = t->plan.B, .seed = ex->seed, .drop_last = 1, .shuffle = 1, .prefetch = 2,
                         .shard_rank = dw->rank, .shard_count = dw->world};
    rx_status s = ex->latent ? RX_OK : rx_loader_create_opts(data, &chain, &lo, &t->loader);
    if (!s && t->loader) {
        int lc, lh, lw;
        rx_loader_image_shape(t->loader, &lc, &lh, &lw);
        if (lc != ex->data_c || lh != ex->data_h || lw != ex->data_w)
            s = rx_fail(RX_ERR_CONFIG, "dataset %s after transforms gives %dx%dx%d images, the model takes %dx%dx%d "
                        "(model.in_channels, model.sample_size; add resize/pad/to_rgb transforms?)",
                        data->name, lc, lh, lw, ex->data_c, ex->data_h, ex->data_w);
    }
    if (!s) s = oi->create(ex->ctx, ex->optimizer.params, &ex->model->params, &t->opt);
    if (!s && st->lr > 0) t->opt.cfg.lr = st->lr;
    if (!s) s = rx_train_batch_alloc(&t->batch, local_b, d);
    t->batch.first = (int64_t)dw->rank * local_b;
    if (!s && (dw->world > 1 || dw->force_nccl) && ex->ctx->mem->device == RX_DEV_CUDA) {
        s = rx_dist_nccl_open(ex->ctx);
        if (s == RX_ERR_CONFIG) {   /* no NCCL in this build: the MPI host path still averages them */
            rx_run_log(run, "train: %s", rx_last_error());
            rx_clear_error();
            s = RX_OK;
        } else if (!s)
            rx_run_log(run, "train: NCCL %s averages the gradients over %d rank%s on the GPUs", rx_dist_nccl_version(),
                       dw->world, dw->world > 1 ? "s" : "");
    }
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
    const rx_train_stage *st = t->st;
    if (access(st->ckpt, F_OK) != 0) return rx_run_metrics_cut(t->run, st->name, 0);
    rx_ckpt_group g[4];
    int n;
    ckpt_groups(t->ex, &t->opt, g, &n);
    rx_ckpt_meta meta;
    RX_TRY(rx_ckpt_load(t->ex->ctx, st->ckpt, g, n, st->hash, &meta));
    *start = meta.step;
    t->opt.step = meta.step;
    w->loss_sum = meta.log_loss_sum;
    w->n = meta.log_steps;
    rx_run_log(t->run, "%s: resumed from %s at step %lld", st->name, st->ckpt, (long long)meta.step);
    return rx_run_metrics_cut(t->run, st->name, meta.step);
}

/* the window closing at `step`: one metrics.jsonl row and a progress (or log) line; the next
 * window opens */
static rx_status log_window_close(trainer *t, log_window *w, int64_t step, float lr, double gnorm) {
    const int B = t->plan.B;
    const int64_t steps = t->plan.steps;
    double now = rx_now(), ips = w->n_timed * B / (now - w->t + 1e-9), loss = w->loss_sum / w->n;
    json_t *row = json_object();
    if (strcmp(t->st->name, "train")) json_object_set_new(row, "stage", json_string(t->st->name));
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
    else rx_run_log(t->run, "%s: step %lld/%lld loss %.5f lr %.3g grad-norm %.3g %.1f img/s ETA %s", t->st->name,
                    (long long)step, (long long)steps, loss, lr, gnorm, ips, eta);
    *w = (log_window){now, 0, 0, 0};
    return s;
}

/* losses of steps first .. first+n-1 (host floats) into the window; the first non-finite one
 * stops the run, naming its step and the last good checkpoint */
static rx_status window_add(trainer *t, log_window *w, const float *loss, int64_t n, int64_t first) {
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(loss[i]))
            return rx_fail(RX_ERR_NUMERIC, "loss is %f at step %lld; last good checkpoint: %s", loss[i],
                           (long long)(first + i), t->last_ckpt > 0 ? t->st->ckpt : "(none)");
        w->loss_sum += loss[i];   /* in step order, in double: the same sums as one read per step */
        w->n++;
        w->n_timed++;
    }
    return RX_OK;
}

/* the losses queued on the device since the last read (one transfer, the only wait for the
 * device in the loop), then the optimizer's record of the last step: its gradient norm, or
 * the first step whose norm was not finite (that step updated nothing, optim.h). The loss is
 * checked first: a NaN loss is reported as such, as when it was read every step. */
static rx_status read_back(trainer *t, log_window *w, double *gnorm) {
    if (!t->losses || t->n_pending == 0) return RX_OK;
    float *h = malloc((size_t)t->n_pending * sizeof *h);
    if (!h) return rx_fail(RX_ERR_OOM, "train: out of memory");
    rx_status s = t->ex->ctx->mem->to_host(t->ex->ctx, h, t->losses->data, (size_t)t->n_pending * sizeof *h);
    if (!s) s = window_add(t, w, h, t->n_pending, t->first_pending);
    free(h);
    t->n_pending = 0;
    rx_optim_stats st;
    if (!s) s = rx_adamw_read(t->ex->ctx, &t->opt, &st);
    if (!s) *gnorm = st.grad_norm;
    return s;
}

/* cuda_graphs for this stage: on where every step can be captured, else a logged reason and
 * eager steps. The CPU backend's "no graphs" is said once per run (pipeline.c). */
static rx_status graphs_open(trainer *t) {
    rx_experiment *ex = t->ex;
    rx_ctx *c = ex->ctx;
    if (!ex->cuda_graphs || c->mem->device != RX_DEV_CUDA) return RX_OK;
    const char *why = NULL;
    if (!rx_cuda_graph_begin || !rx_cuda_dropout_step || !rx_cuda_scratch_moves) why = "this build has no CUDA graphs";
    else if (!t->losses) why = "each step of a multi-rank run agrees on its loss with the other ranks (a host wait)";
    else if (rx_dist_world()->nccl) why = "NCCL's gradient all-reduce is not captured";
    else if (!ex->task->stage) why = "this stage's task draws and uploads its batch inside the step";
    if (why) {
        rx_run_log(t->run, "%s: cuda_graphs: %s; every step runs eagerly", t->st->name, why);
        return RX_OK;
    }
    const int B = t->batch.n, C = ex->data_c, H = ex->data_h, W = ex->data_w;
    const int64_t img[4] = {B, C, H, W}, per[1] = {B}, one[1] = {1};
    rx_train_batch *b = &t->batch;
    b->in[0] = rx_param(c, NULL, 4, img, 0);
    b->in[1] = rx_param(c, NULL, 1, per, 0);
    b->in[2] = rx_param(c, NULL, 4, img, 0);
    b->in[3] = rx_param(c, NULL, 1, per, 0);
    if (ex->model->num_classes > 0) b->in[4] = rx_param(c, NULL, 1, per, 0);
    t->graph.loss = rx_param(c, NULL, 1, one, 0);
    if (!t->graph.loss) return rx_ctx_status(c);
    t->graph.on = 1;
    t->graph.warm = WARM_STEPS;
    return RX_OK;
}

/* run.json's cuda_graphs_<stage>: what the steps did; dropout's step back to the host's */
static void graphs_close(trainer *t) {
    step_graph *g = &t->graph;
    if (!g->on) return;
    rx_cuda_graph_free(g->graph);
    g->graph = NULL;
    rx_cuda_dropout_step(t->ex->ctx, 0, 0);
    memset(t->batch.in, 0, sizeof t->batch.in);   /* persistent: freed with the context */
    char key[96];
    snprintf(key, sizeof key, "cuda_graphs_%s", t->st->name);
    rx_run_set(t->run, key, json_pack("{s:I, s:I, s:I, s:b}", "eager_steps", (json_int_t)g->eager, "captures",
                                      (json_int_t)g->captures, "replayed_steps", (json_int_t)g->replayed,
                                      "capture_failed", g->failed));
    rx_run_log(t->run, "%s: cuda_graphs: %lld steps replayed from %lld capture%s, %lld eager", t->st->name,
               (long long)g->replayed, (long long)g->captures, g->captures == 1 ? "" : "s", (long long)g->eager);
    g->on = 0;
}

/* the device work of one step, every call of it capturable: forward and backward on the staged
 * inputs, the loss into the fixed slot, AdamW + EMA (prepared outside), zeroed gradients; then
 * the step's host state is dropped (tape, step arena) */
static rx_status graph_body(trainer *t, int64_t step) {
    rx_experiment *ex = t->ex;
    rx_ctx *c = ex->ctx;
    rx_tensor *loss = NULL;
    rx_status s = step_grads(ex, &t->batch, step, &loss);
    if (!s) s = c->mem->copy(c, t->graph.loss->data, loss->data, sizeof(float));
    if (!s) s = rx_adamw_apply(c, &t->opt);
    if (!s) s = rx_paramset_zero_grad(c, &ex->model->params);
    rx_step_end(c);
    return s;
}

/* captures step `step` (which runs nothing) into t->graph.graph; when the capture fails, says
 * why, runs the step eagerly and leaves graphs off for the rest of the stage */
static rx_status graph_capture(trainer *t, int64_t step) {
    rx_ctx *c = t->ex->ctx;
    step_graph *g = &t->graph;
    RX_TRY(rx_cuda_graph_begin(c));
    rx_status s = graph_body(t, step);
    char why[512] = "";
    if (s) snprintf(why, sizeof why, "%s", rx_last_error());
    rx_status e = rx_cuda_graph_end(c, &g->graph);   /* always, also after a failed call inside */
    if (!s && !e) {
        g->captures++;
        g->scratch_moves = rx_cuda_scratch_moves(c);
        return RX_OK;
    }
    if (!s) snprintf(why, sizeof why, "%s", rx_last_error());
    rx_clear_error();
    rx_ctx_clear_error(c);
    rx_run_log(t->run, "%s: cuda_graphs: capturing step %lld failed (%s); it and every later step run eagerly",
               t->st->name, (long long)step, why);
    g->failed = 1;
    g->eager++;
    return graph_body(t, step);   /* nothing of the failed capture ran on the device */
}

/* the graph dropped (its scratch moved, or a preview ran on the context): the next step warms up
 * and captures again */
static void graph_drop(trainer *t) {
    if (!t->graph.graph) return;
    rx_cuda_graph_free(t->graph.graph);
    t->graph.graph = NULL;
    t->graph.warm = WARM_STEPS;
}

/* step `step` with graphs on (one process): its inputs staged, then eager (warm-up), captured and
 * replayed, or replayed; its loss copied to loss_dst (device) without waiting */
static rx_status graph_step(trainer *t, int64_t step, float *loss_dst, float *lr) {
    rx_experiment *ex = t->ex;
    rx_ctx *c = ex->ctx;
    step_graph *g = &t->graph;
    RX_TRY(ex->task->stage(ex, &t->batch, step));
    RX_TRY(rx_cuda_dropout_step(c, 1, (uint64_t)step));
    RX_TRY(step_lr(ex, &t->opt, step, t->plan.steps, lr));
    RX_TRY(rx_adamw_prepare(c, &t->opt, *lr));
    if (g->graph && g->scratch_moves != rx_cuda_scratch_moves(c)) graph_drop(t);   /* it points at freed scratch */
    if (!g->graph && (g->warm > 0 || g->failed)) {
        if (g->warm > 0) g->warm--;
        g->eager++;
        RX_TRY(graph_body(t, step));
    } else {
        if (!g->graph) RX_TRY(graph_capture(t, step));
        if (g->graph) {
            RX_TRY(rx_cuda_graph_launch(c, g->graph));
            g->replayed++;
        }
    }
    return c->mem->copy(c, loss_dst, g->loss->data, sizeof(float));
}

/* steps start+1 .. plan.steps, logging and checkpointing on the way; stops early at
 * max_minutes (checkpointed) or an interrupt (checkpointed, RX_ERR_INTERRUPTED) */
static rx_status train_loop(trainer *t, int64_t start, log_window w) {
    rx_experiment *ex = t->ex;
    rx_run *run = t->run;
    const train_plan *p = &t->plan;
    t->last_ckpt = start;
    rx_status s = RX_OK;
    double gnorm = 0;
    for (int64_t step = start + 1; step <= p->steps && !s; step++) {
        rx_batch_info info;
        if (t->loader) s = rx_loader_next(t->loader, t->batch.x0, t->batch.labels, &info);
        else if (ex->latent && t->st->from_data)   /* one process only (experiment.c refuses ranks) */
            s = rx_latent_batch(ex->latent, ex->seed, step - 1, p->B, t->batch.x0, t->batch.labels);
        if (!s) s = rx_dist_test_fault(step);
        float loss = 0, lr = 0;
        if (s) {   /* the other ranks wait in this step's agreement (rx_train_step): say so there */
            double none = 0;
            /* after issuing the gradient buckets' collectives as their steps do (dist.h), so that
             * the agreement matches theirs; what the buckets carry is dropped on every rank */
            rx_status issued = rx_dist_grad_arm(ex->ctx, &ex->model->params);
            if (!issued) issued = rx_dist_grad_start_rest(ex->ctx);
            s = rx_dist_grad_drop(ex->ctx, rx_dist_agree(s, &none, 1));
            (void)issued;   /* the step failed already: its own error is the one to report */
            break;
        }
        if (t->graph.on) {   /* one process, captured steps */
            if (t->n_pending == 0) t->first_pending = step;
            s = graph_step(t, step, t->losses->data + t->n_pending++, &lr);
        } else if (t->losses) {   /* one process: nothing waits for the device here */
            if (t->n_pending == 0) t->first_pending = step;
            s = rx_train_step_queued(ex, &t->opt, &t->batch, step, p->steps, t->losses->data + t->n_pending++, &lr);
        } else {           /* several ranks agree on each step's loss (rx_train_step) */
            s = rx_train_step(ex, &t->opt, &t->batch, step, p->steps, &loss, &gnorm, &lr);
            if (!s) s = window_add(t, &w, &loss, 1, step);
        }
        if (s) break;
        /* a checkpoint step also closes the logging window, so a run resumed from it logs the
         * same lines as the uninterrupted run */
        int out_of_time = p->max_s > 0 && step < p->steps && rx_now() - t->t0 >= p->max_s;
        int interrupted = rx_interrupt_requested != 0;
        if (rx_dist_world()->world > 1) {   /* clocks and signals differ by rank: all stop at the same step */
            double stop[2] = {out_of_time, interrupted};
            if ((s = rx_dist_agree(RX_OK, stop, 2))) break;
            out_of_time = stop[0] > 0, interrupted = stop[1] > 0;
        }
        const int ckpt_now = (p->ckpt_every > 0 && step % p->ckpt_every == 0) || step == p->steps || out_of_time;
        /* the last step's grid is the sample stage's own */
        const int preview_now = p->sample_every > 0 && step % p->sample_every == 0 && step < p->steps && !out_of_time &&
                                rx_dist_is_root();
        const int log_now = step % p->log_every == 0 || ckpt_now;
        /* everything that writes or shows the state first reads the losses back (and stops on
         * a non-finite one); so does a full buffer */
        if (log_now || preview_now || interrupted || (t->losses && t->n_pending == t->losses->numel))
            s = read_back(t, &w, &gnorm);
        if (!s && log_now) s = log_window_close(t, &w, step, lr, gnorm);
        if (!s && ckpt_now) {
            s = save_checkpoint(ex, run, t->st, &t->opt, step, &w);   /* the window just closed: empty */
            t->last_ckpt = step;
        }
        if (!s && preview_now) {
            s = rx_sample_preview(ex, run, step);
            graph_drop(t);
        }
        if (!s && out_of_time) {   // the lr schedule still runs over train.steps: it is cut, not compressed
            rx_run_log(run, "%s: max_minutes (%g) reached at step %lld of %lld; checkpoint written",
                       t->st->name, p->max_s / 60, (long long)step, (long long)p->steps);
            rx_run_set(run, "train_stopped_at_step", json_integer(step));
            break;
        }
        if (!s && interrupted) {
            /* mid-window: the checkpoint carries the window's sums, and the resumed run's
             * next row averages the same steps as the uninterrupted run's */
            s = save_checkpoint(ex, run, t->st, &t->opt, step, &w);
            if (!s) s = rx_fail(RX_ERR_INTERRUPTED, "interrupted at step %lld; checkpoint written; continue with: runexp --resume %s",
                                (long long)step, run->dir);
            s = rx_dist_agree(s, NULL, 0);   /* every rank stops here: an agreed end, not an abort */
        }
    }
    return s;
}

/* Data-parallel (or NCCL forced on one rank): the gradient buckets into run.json and the log */
static void record_buckets(rx_run *run) {
    const rx_dist *dw = rx_dist_world();
    int nb, in_bwd;
    int64_t largest;
    rx_dist_grad_buckets(&nb, &largest, &in_bwd);
    if ((dw->world == 1 && !dw->nccl) || !rx_dist_is_root() || !nb) return;
    rx_run_set(run, "grad_buckets", json_pack("{s:f, s:i, s:I, s:i}", "bucket_mb", dw->bucket_mb, "buckets", nb,
                                              "largest_floats", (json_int_t)largest, "started_in_backward", in_bwd));
    rx_run_log(run, "train: gradients all-reduced in %d bucket%s (RUNEXP_BUCKET_MB %g, the largest %.2f MiB); "
               "%d started during the last step's backward", nb, nb == 1 ? "" : "s", dw->bucket_mb,
               (double)largest * sizeof(float) / (1 << 20), in_bwd);
}

/* Data-parallel: every rank must hold the same parameters (same init, same averaged update
 * each step). Rank 0 gathers each rank's XXH64 of all parameter bytes into run.json
 * (param_xxh64_per_rank) and fails the run when they differ. */
static rx_status check_replicas(rx_experiment *ex, rx_run *run) {
    const rx_dist *dw = rx_dist_world();
    if (dw->world == 1) return RX_OK;
    uint64_t h = 0;
    RX_TRY(rx_dist_agree(rx_dist_param_hash(ex->ctx, &ex->model->params, &h), NULL, 0));
    uint64_t *all = calloc((size_t)dw->world, sizeof *all);
    rx_status s = all ? RX_OK : rx_fail(RX_ERR_OOM, "dist: out of memory");
    RX_TRY(rx_dist_agree(s, NULL, 0));
    s = rx_dist_gather_u64(h, all);
    if (!s && dw->rank == 0) {
        json_t *arr = json_array();
        int same = 1;
        for (int r = 0; r < dw->world; r++) {
            char hex[17];
            snprintf(hex, sizeof hex, "%016llx", (unsigned long long)all[r]);
            json_array_append_new(arr, json_string(hex));
            same &= all[r] == all[0];
        }
        rx_run_set(run, "param_xxh64_per_rank", arr);
        if (same) rx_run_log(run, "train: parameters identical on all %d ranks (xxh64 %016llx)", dw->world,
                             (unsigned long long)all[0]);
        else s = rx_fail(RX_ERR_NUMERIC, "train: the %d ranks ended with different parameters (run.json "
                         "param_xxh64_per_rank): their updates diverged", dw->world);
    }
    free(all);
    return rx_dist_agree(s, NULL, 0);
}

rx_status rx_train_stage_run(rx_experiment *ex, rx_run *run, const rx_train_stage *st, int resume) {
    trainer t;
    rx_status s = rx_dist_agree(trainer_open(&t, ex, run, st), NULL, 0);   /* a rank that cannot start stops all */
    if (s) { trainer_close(&t); return s; }
    int64_t start = 0;
    log_window w;
    s = resume_point(&t, resume, &start, &w);
    if (!s && t.loader) s = rx_loader_seek(t.loader, start);
    s = rx_dist_agree(s, NULL, 0);
    dist_note(run, start);
    const rx_dataset *data = ex->train_data;
    const int ranks = rx_dist_world()->world;
    if (t.loader || ex->latent)
        rx_run_log(run, "train: %lld steps, batch %d%s, %lld parameters, data %s (%d %s, %dx%dx%d)",
                   (long long)t.plan.steps, t.plan.B, ranks > 1 ? " (global, split over the ranks)" : "",
                   (long long)rx_model_param_count(ex->model), data->name, ex->latent ? ex->latent->n : data->n,
                   ex->latent ? "latents" : "images after transforms", ex->data_c, ex->data_h, ex->data_w);
    else
        rx_run_log(run, "%s: %lld steps, batch %d, lr %g", st->name, (long long)t.plan.steps, t.plan.B, t.opt.cfg.lr);
    ex->ctx->training = 1;
    rx_set_grad_enabled(ex->ctx, 1);
    t.start_step = start;
    t.t_loop = rx_now();
    if (!s && ranks == 1) {   /* the device-side loss buffer of one log window */
        const int64_t n = t.plan.log_every < 4096 ? t.plan.log_every : 4096;   /* full: read early */
        t.losses = rx_param(ex->ctx, NULL, 1, &n, 0);
        if (!t.losses) s = rx_ctx_status(ex->ctx);
    }
    if (!s) s = graphs_open(&t);
    if (!s) s = train_loop(&t, start, w);
    if (!s) record_buckets(run);
    if (!s) s = check_replicas(ex, run);
    ex->ctx->training = 0;
    trainer_close(&t);
    rx_run_stage_time(run, st->name, rx_now() - t.t0);
    return s;
}

rx_status rx_stage_train(rx_experiment *ex, rx_run *run, int resume) {
    char ckpt[1200];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints/last.safetensors", run->dir);
    const rx_train_stage st = {.name = "train", .ckpt = ckpt, .hash = ex->train_hash,
                               .batch_size = (int)rx_param_int(ex->train, "batch_size"),
                               .steps = rx_param_int(ex->train, "steps"), .from_data = 1,
                               .max_minutes = rx_param_float(ex->train, "max_minutes"),
                               .sample_every = rx_param_int(ex->train, "sample_every")};
    return rx_train_stage_run(ex, run, &st, resume);
}
