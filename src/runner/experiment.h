/* experiment.h — a resolved experiment, built into live components, and its stages.
 *
 *   rx_experiment_build(cfg)  -> backend context, model, schedule, ... from the registry
 *   rx_stage_train / rx_stage_sample / rx_stage_eval   (each optional, in this order)
 *
 * Stage caching: each stage has a hash of the config subtree it depends on
 * (train: seed, init, dataset, transforms, model, schedule, objective, optimizer,
 * lr_schedule, train; sample: + sampler, guidance, sample; eval: + eval). A finished
 * stage with the same hash in an earlier run of the experiment is reused unless --force. */
#ifndef RX_EXPERIMENT_H
#define RX_EXPERIMENT_H

#include "registry/registry.h"
#include "blocks/model.h"
#include "diffusion/diffusion.h"
#include "data/dataset.h"
#include "data/transform.h"
#include "runner/run.h"
#include "autograd/optim.h"

typedef struct rx_section_ref { const rx_component *comp; const rx_params *params; } rx_section_ref;

typedef struct rx_run_options {
    const char *results_root;   /* "results" */
    const char *backend;        /* override of the config's backend, or NULL */
    int force;                  /* ignore the stage cache */
    int smoke;                  /* fast_dev_run: tiny everything, throw-away directory */
    int quiet;
} rx_run_options;

typedef struct rx_experiment {
    rx_config *cfg;
    const char *name;
    uint64_t seed;
    char hash[17], train_hash[17], sample_hash[17], eval_hash[17];
    rx_ctx *ctx;
    const char *backend_name, *device_name;
    rx_section_ref top, dataset, model_sec, schedule_sec, objective, optimizer, lr_schedule, sampler, guidance;
    const rx_params *train, *sample, *eval;     /* NULL: stage disabled */
    rx_transform_step transforms[16];
    int n_transforms;
    rx_model *model;
    rx_paramset ema;          /* EMA copy of the parameters (same names) */
    rx_schedule schedule;
    int prediction_type;
    int data_c, data_h, data_w;                 /* image shape after the transforms */
    int smoke;
    int classify;                               /* objective classify: a classifier run */
    rx_dataset *train_data;                     /* loaded at build time when training: a missing data set
                                                   is an input error before any run directory exists */
} rx_experiment;

rx_status rx_experiment_build(rx_experiment *ex, rx_config *cfg, const rx_run_options *opt);
void      rx_experiment_free(rx_experiment *ex);
/* exchange the model's weights with the EMA weights (data pointers: no copy, any device);
 * calling it twice restores them */
void      rx_experiment_swap_ema(rx_experiment *ex);

/* stage result locations inside a run directory */
rx_status rx_stage_train(rx_experiment *ex, rx_run *run, int resume);
rx_status rx_stage_sample(rx_experiment *ex, rx_run *run);
rx_status rx_stage_eval(rx_experiment *ex, rx_run *run, json_t **metrics_out);
/* classifier runs: accuracy on the test split (eval.json test_accuracy) */
rx_status rx_stage_eval_classifier(rx_experiment *ex, rx_run *run, json_t **metrics_out);

/* One training step as the train stage runs it, public so that bench/memory.c measures the
 * same code: the host buffers of a batch of B images of d floats (x0 and labels are the
 * loader's output; the rest the objective's), and the step itself: objective -> forward ->
 * loss -> backward -> clipping + AdamW (lr from the schedule) -> EMA -> zero grads -> step end.
 * Returns the loss, the pre-clip gradient norm and the learning rate used. */
typedef struct rx_train_buffers {
    float *x0, *xt, *t, *target, *weight, *labels_f;
    int32_t *labels, *labels_out;
} rx_train_buffers;
rx_status rx_train_buffers_alloc(rx_train_buffers *b, int B, int64_t d);
void      rx_train_buffers_free(rx_train_buffers *b);
rx_status rx_train_step(rx_experiment *ex, rx_adamw *opt, rx_train_buffers *b, int B, int64_t step,
                        int64_t total_steps, float *loss, double *grad_norm, float *lr);

/* image generation shared by the sample and eval stages: open swaps in the EMA weights
 * (when used) and turns grad off; close restores both */
typedef struct rx_generator {
    rx_experiment *ex;
    void *model_ctx;
    rx_guided guided;
    int64_t d;
    int use_ema, grad_was, training_was;
} rx_generator;
rx_status rx_generator_open(rx_experiment *ex, rx_generator *g);
rx_status rx_generate(rx_generator *g, const int64_t *image_index, int n, const int32_t *labels, float *x);
rx_status rx_generator_close(rx_generator *g);

/* set by the CLI's SIGINT/SIGTERM handler; the training loop checkpoints and stops */
extern volatile int rx_interrupt_requested;

#endif
