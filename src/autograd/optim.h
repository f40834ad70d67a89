/* optim.h — training the parameters: AdamW, gradient clipping by global norm,
 * learning-rate schedules, EMA of the weights.
 *
 * One training step, as the runner writes it:
 *
 *     rx_paramset_zero_grad(c, &model->params);
 *     loss = ...forward...;  RX_TRY(rx_backward(c, loss));
 *     float lr = sched->lr_at(sched_params, opt.cfg.lr, opt.step, total_steps);
 *     RX_TRY(rx_adamw_step(c, &opt, lr, &stats));        // stats.grad_norm: pre-clip, for the log
 *     RX_TRY(rx_ema_update(c, &ema, &model->params, decay, ema_start, opt.step));
 *     rx_step_end(c);
 *
 * Everything here lives in the persistent arena and runs through the backend's fused
 * updates (c->be->adamw, sumsq, ema), so it is the same code on the CPU and CUDA. */
#ifndef RX_OPTIM_H
#define RX_OPTIM_H

#include "core/paramset.h"
#include "core/params.h"
#include "kernels/backend.h"

// ---------------------------------------------------------------------------- AdamW

/* torch.optim.AdamW hyper-parameters (decoupled weight decay, bias-corrected moments) */
typedef struct rx_adamw_config {
    float lr;             /* base learning rate (the schedule scales it)            */
    float beta1, beta2;   /* moment decay rates, in [0, 1)                          */
    float eps;            /* added to sqrt(v_hat)                                   */
    float weight_decay;   /* decoupled: p -= lr * wd * p before the Adam update    */
    float grad_clip;      /* max global gradient L2 norm; <= 0: no clipping         */
} rx_adamw_config;

/* torch's defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2), no clipping */
#define RX_ADAMW_TORCH_DEFAULTS \
    ((rx_adamw_config){.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 1e-2f, .grad_clip = 0})

typedef struct rx_adamw {
    rx_adamw_config    cfg;
    const rx_paramset *params;   /* the parameters it updates (those with requires_grad)       */
    rx_paramset        m, v;     /* exp_avg, exp_avg_sq per trainable parameter, named like it:
                                    checkpoint groups "adam_m" / "adam_v"                        */
    int64_t            step;     /* updates taken; restore it with m, v when resuming           */
    /* the EMA the step also updates (rx_adamw_attach_ema); NULL: none */
    const rx_paramset *ema;
    float              ema_decay;
    int64_t            ema_start;
    /* the backend's multi-tensor step (backend.h adamw_multi), made on the first step:
     * the chunk table on the host and in the persistent arena, and the per-step scalars */
    rx_mt_chunk       *mt_host;
    int                mt_n;
    rx_tensor         *mt_table, *mt_scalars;
} rx_adamw;

/* Zeroed moments in the persistent arena for every parameter with requires_grad. */
rx_status rx_adamw_init(rx_ctx *c, rx_adamw *opt, const rx_paramset *params, const rx_adamw_config *cfg);
void      rx_adamw_free(rx_adamw *opt);   /* the lists; the tensors are arena-owned */

typedef struct rx_optim_stats {
    double grad_norm;     /* global L2 norm of the gradients before clipping */
    float  clip_scale;    /* factor applied to the gradients (1 = not clipped) */
    float  lr;            /* learning rate used */
} rx_optim_stats;

/* One AdamW update with learning rate `lr`: global gradient norm, clipping scale from
 * cfg.grad_clip, fused update of every trainable parameter (and of the attached EMA),
 * step += 1. A non-finite gradient norm is an RX_ERR_NUMERIC error and nothing is updated.
 * stats may be NULL. Waits for the device (rx_adamw_queue + rx_adamw_read). */
rx_status rx_adamw_step(rx_ctx *c, rx_adamw *opt, float lr, rx_optim_stats *stats);

/* The same update queued on the backend without waiting for it: the gradient norm, the clip
 * factor and the non-finite check stay on the device (backend.h rx_mt_scalars), one launch
 * sequence covers every parameter. A step whose gradient norm is not finite updates nothing;
 * rx_adamw_read reports it. step += 1 on the host at once. */
rx_status rx_adamw_queue(rx_ctx *c, rx_adamw *opt, float lr);
/* rx_adamw_queue in its two halves, for CUDA graphs: prepare sets step += 1 and uploads the
 * step's t, lr and EMA decay to the device scalars (not capturable: it goes through the
 * upload staging); apply queues the update itself (launches only: capturable, and a
 * captured apply replays correctly after each prepare). */
rx_status rx_adamw_prepare(rx_ctx *c, rx_adamw *opt, float lr);
rx_status rx_adamw_apply(rx_ctx *c, rx_adamw *opt);
/* Waits for the queued steps; stats of the last one. RX_ERR_NUMERIC, naming the step, when
 * any step since the start had a non-finite gradient norm (that step and later ones updated
 * nothing). stats may be NULL. */
rx_status rx_adamw_read(rx_ctx *c, rx_adamw *opt, rx_optim_stats *stats);

/* Every later step also updates `ema` (as rx_ema_update would after it: a copy of the weights
 * while opt.step < ema_start, then e = decay e + (1-decay) p), in the same launches. ema must
 * match the optimizer's parameter set name for name (rx_ema_create). */
rx_status rx_adamw_attach_ema(rx_adamw *opt, const rx_paramset *ema, float decay, int64_t ema_start);

/* Global L2 norm of the gradients of `ps` (parameters without a grad are skipped), in double. */
rx_status rx_grad_norm(rx_ctx *c, const rx_paramset *ps, double *norm);
/* torch.nn.utils.clip_grad_norm_'s factor: max_norm / (norm + 1e-6) when that is < 1, else 1
 * (also 1 when max_norm <= 0: no clipping). The caller applies it (AdamW's grad_scale). */
float     rx_clip_scale(double norm, float max_norm);

// ---------------------------------------------------------------------------- LR schedules

/* The interface of an lr_schedule component (rx_component.impl).
 * step: updates already taken (0 for the first update); total_steps: of the whole run.
 * Formulas follow transformers/diffusers get_*_schedule_with_warmup (LambdaLR stepped
 * once per update), so warmup starts at lr 0 on the first update. */
typedef struct rx_lr_schedule_impl {
    float (*lr_at)(const rx_params *p, float base_lr, int64_t step, int64_t total_steps);
} rx_lr_schedule_impl;

extern const rx_param_spec rx_lr_constant_params[], rx_lr_linear_warmup_params[], rx_lr_cosine_params[];

/* The interface of an optimizer component: read the config values, make the state. */
typedef struct rx_optimizer_impl {
    rx_status (*create)(rx_ctx *c, const rx_params *p, const rx_paramset *params, rx_adamw *opt);
} rx_optimizer_impl;

extern const rx_param_spec rx_adamw_params[];
/* config values (rx_adamw_params) -> rx_adamw_config, range-checked */
rx_status rx_adamw_config_from_params(const rx_params *p, rx_adamw_config *cfg);

// ---------------------------------------------------------------------------- EMA

/* Persistent copies of `params` (same names, shapes and values, no grad) into `ema`,
 * which must be empty; checkpoints store it as the "ema" group. */
rx_status rx_ema_create(rx_ctx *c, const rx_paramset *params, rx_paramset *ema);
/* After optimizer update number `step` (1-based: opt.step after rx_adamw_step):
 *   step <  ema_start:  ema = params                      (the EMA starts from the weights)
 *   step >= ema_start:  ema = decay * ema + (1 - decay) * params
 * The decay is constant (no warmup). ema and params must match name for name. */
rx_status rx_ema_update(rx_ctx *c, const rx_paramset *ema, const rx_paramset *params, float decay,
                        int64_t ema_start, int64_t step);

#endif
