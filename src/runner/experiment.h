/* experiment.h — a resolved experiment, built into live components, and its stages.
 *
 *   rx_experiment_build(cfg)  -> backend context, model, schedule, ... from the registry
 *   rx_stage_train / rx_stage_sample / eval     (each optional, in this order; pipeline.c)
 *
 * The objective's task (rx_task) picks the loss of a training batch, whether the sample
 * stage runs and which eval stage runs.
 *
 * Stage caching: each stage has a hash of the config subtree it depends on
 * (train: seed, init, dataset, transforms, model, schedule, objective, optimizer,
 * lr_schedule, train; sample: + sampler, guidance, sample, reflow; eval: + eval), recorded in
 * run.json. A finished training with the same hash in an earlier run of the experiment
 * is reused unless --force; so are the reflow stages (pairs<k>, reflow<k>, distill), each
 * keyed by the hash of what it was made from (reflow.c). */
#ifndef RX_EXPERIMENT_H
#define RX_EXPERIMENT_H

#include "registry/registry.h"
#include "blocks/model.h"
#include "diffusion/diffusion.h"
#include "data/dataset.h"
#include "data/transform.h"
#include "runner/run.h"
#include "autograd/optim.h"

typedef struct rx_experiment rx_experiment;
typedef struct rx_task rx_task;

typedef struct rx_section_ref { const rx_component *comp; const rx_params *params; } rx_section_ref;

/* Latent diffusion (the `latent:` section, latent.c): the denoiser works on a VAE's latents. */
typedef struct rx_latent_space {
    rx_section_ref vae_sec;     /* latent.vae */
    rx_model *vae;
    float scaling_factor;       /* the model sees z * scaling_factor; samples decode from x / scaling_factor */
    int sample_posterior, batch;
    char hash[17];              /* the latents' identity: seed, dataset, transforms, latent section, data bytes,
                                   VAE weights (the cache key of rx_stage_latents) */
    int n;                      /* encoded training images */
    int64_t zdim;               /* values per latent, L*h*w */
    float *z;                   /* [n, L, h, w] scaled latents, after rx_stage_latents */
    int32_t *labels;            /* [n] */
} rx_latent_space;

typedef struct rx_run_options {
    const char *results_root;   /* "results" */
    const char *backend;        /* override of the config's backend, or NULL */
    int force;                  /* ignore the stage cache */
    int smoke;                  /* fast_dev_run: tiny everything, throw-away directory */
    int quiet;
} rx_run_options;

struct rx_experiment {
    rx_config *cfg;
    const char *name;
    uint64_t seed;
    char hash[17], train_hash[17], sample_hash[17], eval_hash[17];
    rx_ctx *ctx;
    const char *backend_name, *device_name;
    int precision, sample_precision;            /* rx_precision (kernels/cuda_backend.h): the config's
                                                   `precision`, and sample.precision (null: the same) */
    int cuda_graphs;                            /* `cuda_graphs`: capture and replay the training step
                                                   and the sampler's network call (CUDA backend) */
    rx_section_ref top, dataset, model_sec, schedule_sec, objective, optimizer, lr_schedule, sampler, guidance;
    const rx_params *train, *sample, *eval;     /* NULL: stage disabled */
    const rx_params *log;                       /* the log section (tensorboard) */
    const rx_params *reflow;                    /* NULL: no reflow stages */
    rx_section_ref reflow_sampler, reflow_guidance;
    int sample_model;                           /* the model sample and eval use: 0 the teacher, k in
                                                   1..rounds reflow round k, rounds+1 the distilled one */
    struct rx_reflow_data *reflow_data;         /* the pairs a reflow stage trains on (reflow.c) */
    rx_transform_step transforms[16];
    int n_transforms;
    rx_model *model;
    rx_paramset ema;          /* EMA copy of the parameters (same names) */
    rx_schedule schedule;
    int prediction_type;
    int data_c, data_h, data_w;                 /* what the model trains on: the image shape after the transforms,
                                                   or the latent shape in latent diffusion */
    int image_c, image_h, image_w;              /* what generation gives (sample grid, eval): = data_* in pixel
                                                   space, the VAE's decoded images in latent space */
    rx_latent_space *latent;                    /* NULL: pixel space */
    rx_model *perceptual;                       /* objective vae's perceptual network (frozen), or NULL */
    rx_config *perceptual_cfg;                  /* its config, read from the checkpoint */
    int smoke;
    const rx_task *task;                        /* what the objective trains the model to do */
    rx_dataset *train_data;                     /* loaded at build time when training: a missing data set
                                                   is an input error before any run directory exists */
};

rx_status rx_experiment_build(rx_experiment *ex, rx_config *cfg, const rx_run_options *opt);
/* the run's identity (its directory's tag, --resume's check): the resolved config's hash without the
 * keys added later while they hold their default (experiment.c) */
rx_status rx_experiment_identity_hash(const rx_cfg_node *root, char out[17]);
void      rx_experiment_free(rx_experiment *ex);
/* the GEMM/convolution math of the backend from now on (an rx_precision); the CPU computes in
 * fp32 whatever it is told */
rx_status rx_experiment_use_precision(rx_experiment *ex, int precision);
/* "fp32", "tf32" or "bf16" */
const char *rx_precision_name(int precision);

/* one training batch from the loader and the host scratch a loss fills */
typedef struct rx_train_batch {
    int n;                                      /* images */
    int64_t first;                              /* index of x0[0] in the step's global batch: 0, or
                                                   where this data-parallel rank's shard starts */
    float *x0;                                  /* [n, C, H, W] after the transforms */
    int32_t *labels;                            /* [n] */
    float *xt, *t, *target, *weight;            /* a diffusion batch: [n,C,H,W], [n], [n,C,H,W], [n] */
    int32_t *labels_out;                        /* [n] the labels after the null-label drop */
    float *labels_f;                            /* [n] the labels the model sees, as floats */
    /* fixed device inputs (CUDA graphs, train.c): x_t, t, target, weight, labels (NULL without
     * classes), filled before the step by the task's `stage`; the loss then reads them instead
     * of drawing and uploading its batch itself. in[0] NULL: the loss does both (eager). */
    rx_tensor *in[5];
} rx_train_batch;

/* What a run does for its objective's task (rx_objective_task, diffusion.h): the model it
 * trains, the loss of a training batch, and the stages after training. */
struct rx_task {
    int classifier;     /* trains a classifier model (one with features), not a denoiser */
    int autoencoder;    /* trains an autoencoder (a model with encode/decode) to reconstruct its input */
    int generates;      /* the trained model generates images: the sample stage runs */
    /* the batch's loss on the tape, [1] (ctx->rng_step is the step already) */
    rx_status (*loss)(rx_experiment *ex, rx_train_batch *b, int64_t step, rx_tensor **loss);
    /* the host half of `loss` for a captured step: draws step's batch and uploads it into b->in
     * (outside the graph); NULL: the task's steps are not captured (they upload inside the step) */
    rx_status (*stage)(rx_experiment *ex, rx_train_batch *b, int64_t step);
    rx_status (*eval)(rx_experiment *ex, rx_run *run, json_t **metrics_out);
};

rx_status rx_train_batch_alloc(rx_train_batch *b, int B, int64_t d);   /* d = C·H·W floats per image */
void      rx_train_batch_free(rx_train_batch *b);

/* One optimisation step as the train stage runs it (public so that bench/memory.c measures the
 * same code): the task's loss -> backward (freeing as it goes) -> clipping + AdamW (lr from the
 * schedule) -> EMA -> zero grads -> step end. Returns the loss, the pre-clip gradient norm and
 * the learning rate used (so it waits for the device: the loss and the norm are read back). */
rx_status rx_train_step(rx_experiment *ex, rx_adamw *opt, rx_train_batch *b, int64_t step, int64_t total_steps,
                        float *loss_out, double *gnorm_out, float *lr_out);
/* The same step without waiting for the device (the train stage's, one process): the loss is
 * copied to loss_dst (device memory, one float) and read later; a non-finite gradient norm
 * makes the optimizer skip the update and rx_adamw_read report it (optim.h). */
rx_status rx_train_step_queued(rx_experiment *ex, rx_adamw *opt, rx_train_batch *b, int64_t step, int64_t total_steps,
                               float *loss_dst, float *lr_out);

/* A training stage: the train stage (batches from the data set's loader) or a reflow stage
 * (from_data 0: the task's loss makes its batches from stored pairs, reflow.c). Logging,
 * checkpoint_every and EMA follow the train section; metrics.jsonl rows of a stage other than
 * "train" carry "stage": name. Resuming loads ckpt when it exists (its hash must match). */
typedef struct rx_train_stage {
    const char *name;           /* "train", "reflow1", "distill": log lines, metrics rows, timings */
    const char *ckpt;           /* its checkpoint file, inside the run directory */
    const char *hash;           /* its hash: the checkpoint's config_hash */
    int batch_size;
    int64_t steps;
    float lr;                   /* 0: optimizer.lr */
    int from_data;
    double max_minutes;         /* 0: no limit */
    int64_t sample_every;       /* preview grids; 0: none */
} rx_train_stage;
rx_status rx_train_stage_run(rx_experiment *ex, rx_run *run, const rx_train_stage *st, int resume);

/* the train and sample stages (what they write inside the run directory: run.h) */
rx_status rx_stage_train(rx_experiment *ex, rx_run *run, int resume);
/* the reflow stages the sample stage's model needs (sample.model), each reused from this run
 * (resume), the stage cache or made now; leaves that model's weights (and EMA) in ex->model */
rx_status rx_stage_reflow(rx_experiment *ex, rx_run *run, const rx_run_options *opt, int resume);
rx_status rx_stage_sample(rx_experiment *ex, rx_run *run);
/* train.sample_every: the sample stage's grid from the weights at `step` (EMA when the sample
 * stage uses it), as samples/grid_step<NNNNNN>.png and TensorBoard's samples/grid at `step`;
 * nothing without a sample stage. Training is unchanged by it (noise keyed by (seed, i, step),
 * grad mode and weights restored). */
rx_status rx_sample_preview(rx_experiment *ex, rx_run *run, int64_t step);

/* RX_TASK_DENOISE: weighted MSE against the objective's target; eval compares generated
 * images with the reference split (eval.json metrics) */
rx_status rx_denoise_loss(rx_experiment *ex, rx_train_batch *b, int64_t step, rx_tensor **loss);
/* its second half on a batch whose xt, t, target, weight and labels_out are filled (or, with b->in,
 * whose device inputs are) */
rx_status rx_denoise_batch_loss(rx_experiment *ex, rx_train_batch *b, rx_tensor **loss);
/* its first half for a captured step (rx_task.stage): the objective's draws into b->in */
rx_status rx_denoise_stage(rx_experiment *ex, rx_train_batch *b, int64_t step);
rx_status rx_stage_eval(rx_experiment *ex, rx_run *run, json_t **metrics_out);
/* RX_TASK_CLASSIFY: cross-entropy on the labels; eval reports the accuracy on the test
 * split (eval.json test_accuracy) */
rx_status rx_classify_loss(rx_experiment *ex, rx_train_batch *b, int64_t step, rx_tensor **loss);
rx_status rx_stage_eval_classifier(rx_experiment *ex, rx_run *run, json_t **metrics_out);
/* RX_TASK_VAE (vae_objective.c): reconstruction + kl_weight * KL; eval reports the PSNR and the
 * feature-space Fréchet distance of the reconstructions of the reference split against the
 * originals, and writes samples/reconstructions.png */
rx_status rx_vae_loss(rx_experiment *ex, rx_train_batch *b, int64_t step, rx_tensor **loss);
/* objective vae with perceptual_weight > 0: loads objective.perceptual_net (a resnet_classifier
 * checkpoint) into ex->perceptual, frozen; refuses one whose input channels are not the images' */
rx_status rx_vae_perceptual_open(rx_experiment *ex);
/* features_classifier.c: a resnet_classifier checkpoint of a runexp run, rebuilt from the config in
 * its metadata (kept in *cfg for the model's life) with its weights (the EMA's when present) */
rx_status rx_classifier_load(rx_ctx *c, const char *path, rx_model **model, rx_config **cfg);
rx_status rx_stage_eval_vae(rx_experiment *ex, rx_run *run, json_t **metrics_out);

/* eval.json in the run directory: record (not stolen), written atomically; its metrics also
 * go to TensorBoard as eval/<metric> (rx_run_tb_scalars) */
rx_status rx_eval_write(const rx_run *run, json_t *record);
/* the experiment's transforms without their random augmentations: what evaluation sees */
rx_transform_chain rx_eval_transforms(const rx_experiment *ex, rx_transform_step steps[16]);

/* latent.c. open: the VAE (weights loaded), image_* and the latents' hash; called by the build when the
 * config has a latent section (train_weights: the files training reads, for the hash). stage: the
 * training images' latents, from the cache (<results>/_cache/latents_<hash>.safetensors) or encoded
 * once through the VAE with the eval transforms. batch: training batch `batch_no` (from 0) of the
 * latents, a pure function of (seed, batch_no) like the loader's (drop_last, a permutation per epoch).
 * decode: n latents (as the model samples them, scaled) -> images [n, image_c, image_h, image_w]. */
rx_status rx_latent_open(rx_experiment *ex);
void      rx_latent_free(rx_latent_space *l);
rx_status rx_stage_latents(rx_experiment *ex, rx_run *run);
rx_status rx_latent_batch(const rx_latent_space *l, uint64_t seed, int64_t batch_no, int B, float *x, int32_t *labels);
rx_status rx_latent_decode(rx_experiment *ex, const float *z, int n, float *x);

/* exchange the model's weights with the EMA weights (data pointers: no copy, any device);
 * calling it twice restores them (sample.c) */
void      rx_experiment_swap_ema(rx_experiment *ex);

/* image generation shared by the sample and eval stages: open swaps in the EMA weights
 * (when used) and turns grad off; close restores both */
typedef struct rx_generator {
    rx_experiment *ex;
    rx_section_ref sampler;
    void *model_ctx;
    rx_guided guided;
    int64_t d;                  /* values per sample the sampler makes (a latent in latent diffusion) */
    float *z;                   /* latent diffusion: the sampler's latents before decoding, [z_cap, d] */
    int z_cap;
    int use_ema, grad_was, training_was;
} rx_generator;
rx_status rx_generator_open(rx_experiment *ex, rx_generator *g);
/* the guidance model j samples with: `guidance` for the teacher (j = 0); none for a reflowed or
 * distilled model (j >= 1), which learned the guided flow from its pairs: guiding it again
 * would apply the guidance twice */
const rx_section_ref *rx_guidance_of_model(int j, const rx_section_ref *guidance);
/* with another sampler and guidance than the sample stage's (reflow.c draws its pairs so) */
rx_status rx_generator_open_with(rx_experiment *ex, rx_generator *g, const rx_section_ref *sampler,
                                 const rx_section_ref *guidance);
rx_status rx_generate(rx_generator *g, const int64_t *image_index, int n, const int32_t *labels, float *x);
rx_status rx_generator_close(rx_generator *g);

/* set by the CLI's SIGINT/SIGTERM handler; the training loop checkpoints and stops */
extern volatile int rx_interrupt_requested;

#endif
