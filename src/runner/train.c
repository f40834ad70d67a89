/* train.c — the training stage.
 *
 * One step: batch from the loader -> objective (x_t, t, target, weight, dropped labels)
 * -> model forward -> weighted MSE -> backward -> clip by global norm -> AdamW -> EMA.
 * Everything random is keyed by (seed, step): the loader order, the objective's noise
 * and times, dropout. So a run resumed from a checkpoint at step k continues exactly as
 * the uninterrupted run would have, bit for bit on the CPU.
 *
 * Checkpoints (checkpoints/last.safetensors, atomically replaced) every checkpoint_every
 * steps, at the end, and on SIGINT/SIGTERM; a non-finite loss stops the run as failed,
 * naming the step and the last good checkpoint. */
#include "experiment.h"
#include "checkpoint.h"
#include "autograd/optim.h"
#include "data/loader.h"
#include <math.h>
#include <string.h>
#include <unistd.h>

volatile int rx_interrupt_requested = 0;

void rx_train_buffers_free(rx_train_buffers *b) {
    free(b->x0); free(b->xt); free(b->t); free(b->target); free(b->weight); free(b->labels_f);
    free(b->labels); free(b->labels_out);
}

rx_status rx_train_buffers_alloc(rx_train_buffers *b, int B, int64_t d) {
    memset(b, 0, sizeof *b);
    b->x0 = malloc(B * d * sizeof(float));
    b->xt = malloc(B * d * sizeof(float));
    b->target = malloc(B * d * sizeof(float));
    b->t = malloc(B * sizeof(float));
    b->weight = malloc(B * sizeof(float));
    b->labels_f = malloc(B * sizeof(float));
    b->labels = malloc(B * sizeof(int32_t));
    b->labels_out = malloc(B * sizeof(int32_t));
    if (!b->x0 || !b->xt || !b->target || !b->t || !b->weight || !b->labels_f || !b->labels || !b->labels_out) {
        rx_train_buffers_free(b);
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

static rx_status save_checkpoint(rx_experiment *ex, rx_run *run, rx_adamw *opt, int64_t step) {
    rx_ckpt_group g[4];
    int n;
    ckpt_groups(ex, opt, g, &n);
    char *yaml = rx_config_emit_string(ex->cfg->root);
    rx_ckpt_meta meta = {.step = step, .seed = ex->seed, .config_yaml = yaml};
    snprintf(meta.config_hash, sizeof meta.config_hash, "%s", ex->train_hash);
    char path[1200];
    snprintf(path, sizeof path, "%s/checkpoints/last.safetensors", run->dir);
    rx_status s = rx_ckpt_save(ex->ctx, path, g, n, &meta);
    free(yaml);
    return s;
}

rx_status rx_train_step(rx_experiment *ex, rx_adamw *opt, rx_train_buffers *b, int B, int64_t step,
                        int64_t total_steps, float *loss_out, double *gnorm_out, float *lr_out) {
    rx_ctx *c = ex->ctx;
    rx_model *m = ex->model;
    const rx_objective_impl *obj = ex->objective.comp->impl;
    int C = ex->data_c, H = ex->data_h, W = ex->data_w;
    int64_t d = (int64_t)C * H * W;
    int K = m->num_classes;
    if (ex->classify) {   /* supervised: images and their labels */
        c->rng_step = (uint64_t)step;
        for (int i = 0; i < B; i++) b->labels_f[i] = (float)b->labels[i];
        rx_tensor *X = rx_from_host(c, RX_SHAPE(B, C, H, W), b->x0);
        rx_tensor *L = rx_from_host(c, RX_SHAPE(B), b->labels_f);
        rx_tensor *loss = rx_cross_entropy(c, m->impl->forward(c, m, X, NULL, NULL), L);
        if (!loss) return rx_ctx_status(c);
        RX_TRY(rx_backward(c, loss));
        RX_TRY(rx_tensor_to_host(c, loss, loss_out));
        goto update;
    }
    RX_TRY(obj->make_batch(ex->objective.params, &ex->schedule, ex->seed, step, B, (int)d, b->x0,
                           K > 0 ? b->labels : NULL, K, b->xt, b->t, b->target, b->weight, b->labels_out));
    c->rng_step = (uint64_t)step;
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
    rx_tensor *loss = rx_mse_loss(c, out, Y, Wt);
    if (!loss) return rx_ctx_status(c);
    RX_TRY(rx_backward(c, loss));
    RX_TRY(rx_tensor_to_host(c, loss, loss_out));
update:;
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

static void progress(rx_run *run, int64_t step, int64_t total, float loss, double ips, double eta) {
    if (run->quiet) return;
    if (isatty(STDERR_FILENO)) {
        int width = 30, done = total ? (int)(width * step / total) : width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < done ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\rtrain [%s] %lld/%lld loss %.4f  %.1f img/s  ETA %.0fs   ", bar, (long long)step,
                (long long)total, loss, ips, eta);
        if (step == total) fputc('\n', stderr);
        fflush(stderr);
    }
}

rx_status rx_stage_train(rx_experiment *ex, rx_run *run, int resume) {
    double t0 = rx_now();
    rx_ctx *c = ex->ctx;
    int B = (int)rx_param_int(ex->train, "batch_size");
    int64_t steps = rx_param_int(ex->train, "steps");
    int64_t log_every = rx_param_int(ex->train, "log_every");
    int64_t ckpt_every = rx_param_int(ex->train, "checkpoint_every");
    const double max_s = 60.0 * rx_param_float(ex->train, "max_minutes");   // 0 = no time limit
    if (ex->smoke) { B = 2; steps = 2; log_every = 1; }
    int64_t d = (int64_t)ex->data_c * ex->data_h * ex->data_w;

    rx_dataset *data = ex->train_data;
    if (ex->model->num_classes > 0 && data->num_classes > ex->model->num_classes) {
        rx_status s = rx_fail(RX_ERR_CONFIG, "model.num_classes = %d but dataset %s has %d classes",
                              ex->model->num_classes, data->name, data->num_classes);
        return s;
    }
    rx_transform_chain chain = {ex->transforms, ex->n_transforms};
    rx_loader *loader = NULL;
    rx_adamw opt_state, *opt = &opt_state;
    memset(opt, 0, sizeof *opt);
    rx_train_buffers buf;
    rx_status s = rx_loader_create(data, &chain, B, ex->seed, 1, &loader);
    if (!s) {   /* the transformed images must be what the model takes */
        int lc, lh, lw;
        rx_loader_image_shape(loader, &lc, &lh, &lw);
        if (lc != ex->data_c || lh != ex->data_h || lw != ex->data_w)
            s = rx_fail(RX_ERR_CONFIG, "dataset %s after transforms gives %dx%dx%d images, the model takes %dx%dx%d "
                        "(model.in_channels, model.sample_size; add resize/pad/to_rgb transforms?)",
                        data->name, lc, lh, lw, ex->data_c, ex->data_h, ex->data_w);
    }
    if (!s) s = ((const rx_optimizer_impl *)ex->optimizer.comp->impl)->create(c, ex->optimizer.params, &ex->model->params, opt);
    if (!s) s = rx_train_buffers_alloc(&buf, B, d);
    if (s) { rx_loader_free(loader); rx_adamw_free(opt); return s; }

    int64_t start = 0;
    char ckpt[1200];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints/last.safetensors", run->dir);
    if (resume && access(ckpt, F_OK) == 0) {
        rx_ckpt_group g[4];
        int n;
        ckpt_groups(ex, opt, g, &n);
        rx_ckpt_meta meta;
        s = rx_ckpt_load(c, ckpt, g, n, ex->train_hash, &meta);
        if (!s) {
            start = meta.step;
            opt->step = start;
            rx_run_log(run, "train: resumed from %s at step %lld", ckpt, (long long)start);
        }
    }
    if (!s) s = rx_loader_seek(loader, start);
    rx_run_log(run, "train: %lld steps, batch %d, %lld parameters, data %s (%d images, %dx%dx%d after transforms)",
               (long long)steps, B, (long long)rx_model_param_count(ex->model), data->name, data->n, ex->data_c,
               ex->data_h, ex->data_w);
    c->training = 1;
    rx_set_grad_enabled(c, 1);
    double t_log = rx_now(), loss_acc = 0;
    int64_t n_acc = 0, last_ckpt = start;
    for (int64_t step = start + 1; step <= steps && !s; step++) {
        rx_batch_info info;
        s = rx_loader_next(loader, buf.x0, buf.labels, &info);
        float loss = 0, lr = 0;
        double gnorm = 0;
        if (!s) s = rx_train_step(ex, opt, &buf, B, step, steps, &loss, &gnorm, &lr);
        if (s) break;
        if (!isfinite(loss)) {
            char msg[1400];
            snprintf(msg, sizeof msg, "loss is %f at step %lld; last good checkpoint: %s", loss, (long long)step,
                     last_ckpt > 0 ? ckpt : "(none)");
            s = rx_fail(RX_ERR_NUMERIC, "%s", msg);
            break;
        }
        loss_acc += loss;
        n_acc++;
        /* a checkpoint step also closes the logging window, so a run resumed from it logs the
         * same lines as the uninterrupted run */
        const int out_of_time = max_s > 0 && step < steps && rx_now() - t0 >= max_s;
        const int ckpt_now = (ckpt_every > 0 && step % ckpt_every == 0) || step == steps || out_of_time;
        if (step % log_every == 0 || ckpt_now) {
            double now = rx_now(), ips = n_acc * B / (now - t_log + 1e-9);
            json_t *row = json_object();
            json_object_set_new(row, "step", json_integer(step));
            json_object_set_new(row, "loss", json_real(loss_acc / n_acc));
            json_object_set_new(row, "lr", json_real(lr));
            json_object_set_new(row, "grad_norm", json_real(gnorm));
            json_object_set_new(row, "img_per_s", json_real(ips));
            s = rx_run_metrics(run, row);
            double eta = (steps - step) * B / (ips > 0 ? ips : 1);
            if (isatty(STDERR_FILENO)) progress(run, step, steps, (float)(loss_acc / n_acc), ips, eta);
            else rx_run_log(run, "train: step %lld/%lld loss %.5f lr %.3g grad-norm %.3g %.1f img/s", (long long)step,
                            (long long)steps, loss_acc / n_acc, lr, gnorm, ips);
            t_log = now;
            loss_acc = 0;
            n_acc = 0;
        }
        if (!s && ckpt_now) {
            s = save_checkpoint(ex, run, opt, step);
            last_ckpt = step;
        }
        if (!s && out_of_time) {   // the lr schedule still runs over train.steps: it is cut, not compressed
            rx_run_log(run, "train: max_minutes (%g) reached at step %lld of %lld; checkpoint written",
                       max_s / 60, (long long)step, (long long)steps);
            rx_run_set(run, "train_stopped_at_step", json_integer(step));
            break;
        }
        if (!s && rx_interrupt_requested) {
            s = save_checkpoint(ex, run, opt, step);
            if (!s) s = rx_fail(RX_ERR_INTERRUPTED, "interrupted at step %lld; checkpoint written; continue with: runexp --resume %s",
                                (long long)step, run->dir);
        }
    }
    c->training = 0;
    rx_train_buffers_free(&buf);
    rx_loader_free(loader);
    rx_adamw_free(opt);
    rx_run_stage_time(run, "train", rx_now() - t0);
    return s;
}
