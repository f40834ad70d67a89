/* memory_plan.h — how much memory a run will need, predicted without allocating it.
 *
 * The model is built, and one training step (forward, loss, backward with release, checkpointed
 * when the config says so) and one sampler network call are run, on the planning backend
 * (kernels/plan.c): every tensor is placed in the arenas as in a real step, no kernel runs and
 * no memory exists. A terabyte model is measured in milliseconds.
 *
 * With precision bf16 on the CUDA backend the context also holds the bf16 copies of GEMM and
 * convolution operands: one scratch slot grown to the largest request of any op and kept for
 * the context's life (kernels/bf16_operands.h). So training adds the slot of its largest request,
 * and sampling, which runs on the same context after training, the larger of training's and its
 * own (sample.precision may differ from precision). */
#ifndef RX_MEMORY_PLAN_H
#define RX_MEMORY_PLAN_H

#include <stdio.h>
#include "registry/registry.h"
#include "runner/experiment.h"

typedef struct rx_memory_plan {
    int64_t parameters;
    int     train_batch, sample_batch;   /* sample_batch: network batch (twice the images with cfg) */
    double  weights, grads, optimizer, ema;   /* bytes, persistent for the whole run           */
    double  train_step, sample_step;          /* bytes, the step arena's peak                  */
    double  train_step_one;                   /* the training step at batch 1 (for what fits)  */
    double  train_bf16, sample_bf16;          /* bytes, the CUDA context's bf16 operand slot   */
    double  train_bf16_one;                   /*   (precision bf16 on CUDA only, else 0; below) */
    double  train_peak, sample_peak;          /* persistent + step (+ the bf16 slot)           */
    double  available;                        /* bytes the run's device has free; 0 = unknown   */
    const char *device;                       /* "cpu" or "cuda"                               */
} rx_memory_plan;

/* The step arena's peak for one step of `model` (params mp) at batch B on a fresh planning
 * context: training (forward, weighted MSE, backward with release, the forward plan learned in a first step; checkpointed blocks when asked) or a
 * forward without grad. bf16_request, when given, gets the step's largest bf16 operand request
 * (kernels/bf16_operands.h: what the CUDA backend's bf16 slot grows to, before rounding to MiB).
 * out, when given, gets the parameter count, weights and gradients. */
rx_status rx_memory_plan_step(const rx_component *model, const rx_params *mp, int B, int train, int checkpointing,
                              double *step_bytes, double *bf16_request, rx_memory_plan *out);

/* The forward plan of ex's training step (autograd/liveness.h), learned by running the train
 * stage's own loss and backward on the planning backend, and installed in ex->ctx: so the
 * first real step, whose peak sizes the step arena, frees in its forward as later steps do.
 * b and step: the step's batch buffers (make_batch is rerun by the real step, the same). */
rx_status rx_memory_plan_train_forward(rx_experiment *ex, rx_train_batch *b, int64_t step);

/* Plans a resolved config's training (when it has a train section) and sampling. */
rx_status rx_memory_plan_config(const rx_config *cfg, rx_memory_plan *out);

/* "memory: training 12.3 GiB (weights 1.0, ...) ..." lines for `check` */
void rx_memory_plan_print(const rx_memory_plan *p, FILE *f);

/* RX_ERR_CONFIG when the training or sampling peak exceeds the available memory, with a message
 * that names the figures and what would fit (a batch size, gradient checkpointing). */
rx_status rx_memory_plan_check_fits(const rx_memory_plan *p, int checkpointing);

#endif
