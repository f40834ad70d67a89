/* memory_plan.c — see memory_plan.h. */
#include "runner/memory_plan.h"
#include "blocks/model.h"
#include "kernels/ops.h"
#include "kernels/cuda_backend.h"
#include "autograd/liveness.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GIB (1024.0 * 1024.0 * 1024.0)

static const rx_params *section(const rx_config *cfg, const char *path, const rx_component **comp) {
    const rx_params *p = NULL;
    if (rx_config_section_params(cfg, path, comp, &p) != RX_OK) { rx_clear_error(); return NULL; }
    return p;
}

/* one planned step on c: forward (without grad unless train), the training loss (weighted MSE
 * on the prediction, as the train stage's denoiser), backward */
static rx_status planned_step(rx_ctx *c, rx_model *m, int B, int train) {
    const int C = m->in_channels, S = m->sample_size;
    rx_set_grad_enabled(c, train);
    rx_fwd_plan_begin(c);
    rx_tensor *x = rx_empty(c, RX_SHAPE(B, C, S, S)), *t = rx_empty(c, RX_SHAPE(B));
    rx_tensor *labels = m->num_classes > 0 ? rx_empty(c, RX_SHAPE(B)) : NULL;
    rx_tensor *y = m->impl->forward(c, m, x, t, labels);
    if (y && m->learn_sigma) y = rx_slice(c, y, 1, 0, C);
    if (!y || !train) return rx_ctx_status(c);
    rx_tensor *loss = rx_mse_loss(c, y, rx_empty_like(c, y), rx_empty(c, RX_SHAPE(B)));
    return loss ? rx_backward(c, loss) : rx_ctx_status(c);
}

rx_status rx_memory_plan_step(const rx_component *mc, const rx_params *mp, int B, int train, int checkpointing,
                           double *step_bytes, double *bf16_request, rx_memory_plan *out) {
    rx_ctx *c = NULL;
    rx_model *m = NULL;
    rx_plan_state measured = {0};
    RX_TRY(rx_ctx_create(rx_backend_plan(), &measured, 0, &c));
    rx_status s = rx_model_create(c, mc, mp, 0, &m);
    if (!s && out) {   /* the persistent arena holds the weights and their gradients */
        out->parameters = rx_model_param_count(m);
        out->weights = 4.0 * (double)out->parameters;
        out->grads = (double)rx_arena_data_used(c->persist) - out->weights;
    }
    if (!s) {
        c->checkpointing = checkpointing;
        c->release_in_backward = 1;
        c->training = train;
        /* training: a first step learns the forward plan (liveness.h), the second runs with it,
         * as every real step does (the train stage learns its first plan this way too) */
        if (train && !checkpointing) {
            s = rx_fwd_plan_create(c);
            if (!s) s = planned_step(c, m, B, train);
            rx_step_end(c);
            rx_arena_peak_reset(c->step);
        }
        if (!s) s = planned_step(c, m, B, train);
        *step_bytes = (double)rx_arena_data_peak(c->step);
        if (bf16_request) *bf16_request = (double)measured.bf16_request_max;
    }
    rx_model_destroy(m);
    rx_ctx_destroy(c);
    return s;
}

rx_status rx_memory_plan_train_forward(rx_experiment *ex, rx_train_batch *b, int64_t step) {
    rx_ctx *c = NULL;
    rx_model *m = NULL;
    RX_TRY(rx_ctx_create(rx_backend_plan(), NULL, 0, &c));
    rx_model *perceptual = NULL;   /* objective vae's frozen network, when it has one: on c too */
    rx_status s = rx_model_create(c, ex->model_sec.comp, ex->model_sec.params, 0, &m);
    if (!s && ex->perceptual) {
        const rx_component *pc;
        const rx_params *pp;
        s = rx_config_section_params(ex->perceptual_cfg, "model", &pc, &pp);
        if (!s) s = rx_model_create(c, pc, pp, 0, &perceptual);
        if (!s) rx_model_freeze(perceptual);
    }
    if (!s) s = rx_fwd_plan_create(c);
    if (!s) {
        rx_experiment shadow = *ex;   /* the train stage's own loss, on the planning context */
        shadow.ctx = c;
        shadow.model = m;
        shadow.perceptual = perceptual;
        c->training = ex->ctx->training;
        c->release_in_backward = 1;
        rx_set_grad_enabled(c, 1);
        rx_fwd_plan_begin(c);
        rx_tensor *loss = NULL;
        s = ex->task->loss(&shadow, b, step, &loss);
        if (!s) s = rx_backward(c, loss);
        if (!s) s = rx_fwd_plan_copy(ex->ctx, c);
    }
    rx_model_destroy(perceptual);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
    return s;
}

/* MemAvailable of /proc/meminfo: what the host can give without swapping */
static double host_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    double kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1) break;
    fclose(f);
    return kib * 1024.0;
}

rx_status rx_memory_plan_config(const rx_config *cfg, rx_memory_plan *out) {
    memset(out, 0, sizeof *out);
    const rx_component *mc = NULL, *guidance = NULL;
    const rx_params *mp = section(cfg, "model", &mc), *train = section(cfg, "train", NULL);
    const rx_params *sample = section(cfg, "sample", NULL), *top = section(cfg, "", NULL);
    section(cfg, "guidance", &guidance);
    if (!mp) return rx_fail(RX_ERR_CONFIG, "memory plan: the config has no model");
    out->sample_batch = sample ? (int)rx_param_int(sample, "batch_size") : 1;
    if (guidance && strcmp(guidance->name, "none")) out->sample_batch *= 2;   /* conditional + unconditional */
    double sample_bf16 = 0, train_bf16 = 0, train_bf16_one = 0;
    RX_TRY(rx_memory_plan_step(mc, mp, out->sample_batch, 0, 0, &out->sample_step, &sample_bf16, out));
    if (train) {
        const int ckpt = rx_param_bool(train, "gradient_checkpointing");
        out->train_batch = (int)rx_param_int(train, "batch_size");
        out->optimizer = 2.0 * out->weights;   /* AdamW's m and v */
        out->ema = rx_param_float(train, "ema_decay") > 0 ? out->weights : 0;
        RX_TRY(rx_memory_plan_step(mc, mp, out->train_batch, 1, ckpt, &out->train_step, &train_bf16, NULL));
        RX_TRY(rx_memory_plan_step(mc, mp, 1, 1, ckpt, &out->train_step_one, &train_bf16_one, NULL));
    }
    const char *backend = top ? rx_param_str(top, "backend") : "auto";
    int cuda = !strcmp(backend, "cuda") || (!strcmp(backend, "auto") && rx_cuda_device_count() > 0);
    out->device = cuda ? "cuda" : "cpu";
    /* the bf16 operand slot (kernels/bf16_operands.h): CUDA at precision bf16 only */
    const int train_bf16_on = cuda && top && !strcmp(rx_param_str(top, "precision"), "bf16");
    const int sample_bf16_on = cuda && (sample && !rx_param_is_null(sample, "precision")
                                            ? !strcmp(rx_param_str(sample, "precision"), "bf16") : train_bf16_on);
    if (train && train_bf16_on) {
        out->train_bf16 = (double)rx_cuda_scratch_size((size_t)train_bf16);
        out->train_bf16_one = (double)rx_cuda_scratch_size((size_t)train_bf16_one);
    }
    if (sample_bf16_on) out->sample_bf16 = (double)rx_cuda_scratch_size((size_t)sample_bf16);
    if (out->train_bf16 > out->sample_bf16) out->sample_bf16 = out->train_bf16;   /* the slot is never shrunk */
    if (train) out->train_peak = out->weights + out->grads + out->optimizer + out->ema + out->train_step + out->train_bf16;
    /* sampling after training keeps the optimizer state; a run without training has weights (+ EMA) */
    const double resident = train ? out->weights + out->grads + out->optimizer + out->ema : out->weights;
    out->sample_peak = resident + out->sample_step + out->sample_bf16;
    out->available = cuda ? 0 : host_available();   /* a device's free memory is asked when it is opened */
    return RX_OK;
}

/* ", bf16 operands 0.09" when the run keeps a bf16 operand slot, else nothing */
static const char *bf16_part(double bytes, char *buf, size_t n) {
    if (bytes > 0) snprintf(buf, n, ", bf16 operands %.2f", bytes / GIB);
    else buf[0] = 0;
    return buf;
}

void rx_memory_plan_print(const rx_memory_plan *p, FILE *f) {
    char bf16[48];
    if (p->train_batch)
        fprintf(f, "memory: training %.2f GiB at batch %d (weights %.2f, gradients %.2f, AdamW %.2f, EMA %.2f, "
                   "activations %.2f%s)\n",
                p->train_peak / GIB, p->train_batch, p->weights / GIB, p->grads / GIB, p->optimizer / GIB, p->ema / GIB,
                p->train_step / GIB, bf16_part(p->train_bf16, bf16, sizeof bf16));
    fprintf(f, "memory: sampling %.2f GiB at network batch %d (activations %.2f%s)\n", p->sample_peak / GIB,
            p->sample_batch, p->sample_step / GIB, bf16_part(p->sample_bf16, bf16, sizeof bf16));
    if (p->available > 0) fprintf(f, "memory: device %s has %.2f GiB available\n", p->device, p->available / GIB);
    else fprintf(f, "memory: device %s (free memory is read when the device is opened)\n", p->device);
}

rx_status rx_memory_plan_check_fits(const rx_memory_plan *p, int checkpointing) {
    if (p->available <= 0) return RX_OK;
    char bf16[48];
    if (p->train_batch && p->train_peak > p->available) {
        /* the step grows about linearly with the batch: what fits at that slope */
        const double fixed = p->weights + p->grads + p->optimizer + p->ema;
        /* the step's arena and its bf16 operand slot, at the batch and at batch 1 */
        const double step = p->train_step + p->train_bf16, step_one = p->train_step_one + p->train_bf16_one;
        const double per_image = p->train_batch > 1 ? (step - step_one) / (p->train_batch - 1) : step;
        long fits = per_image > 0 ? (long)((p->available - fixed - step_one) / per_image) + 1 : 0;
        char advice[160];
        if (fits >= 1) snprintf(advice, sizeof advice, "train.batch_size %ld would fit%s", fits,
                                checkpointing ? "" : ", or train.gradient_checkpointing: true");
        else snprintf(advice, sizeof advice, "the weights and optimizer state alone need %.2f GiB", fixed / GIB);
        return rx_fail(RX_ERR_CONFIG,
                       "memory: training needs %.2f GiB at batch %d (weights %.2f, gradients %.2f, AdamW %.2f, EMA %.2f, "
                       "activations %.2f%s) but %s has %.2f GiB available; %s",
                       p->train_peak / GIB, p->train_batch, p->weights / GIB, p->grads / GIB, p->optimizer / GIB,
                       p->ema / GIB, p->train_step / GIB, bf16_part(p->train_bf16, bf16, sizeof bf16), p->device,
                       p->available / GIB, advice);
    }
    if (p->sample_peak > p->available)
        return rx_fail(RX_ERR_CONFIG, "memory: sampling needs %.2f GiB at network batch %d but %s has %.2f GiB available; "
                                      "lower sample.batch_size",
                       p->sample_peak / GIB, p->sample_batch, p->device, p->available / GIB);
    return RX_OK;
}
