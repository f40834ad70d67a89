/* diffusion.h — noise schedules, training objectives, samplers and guidance.
 *
 * The diffusion layer works on HOST float arrays and sees the network only through a
 * callback (rx_denoise_fn), so it does not depend on the tensor library or the backend.
 * Every formula follows diffusers' schedulers step for step (DDPMScheduler, DDIMScheduler,
 * EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, HeunDiscreteScheduler,
 * DPMSolverMultistepScheduler(dpmsolver++, order 2), FlowMatchEulerDiscreteScheduler,
 * FlowMatchHeunDiscreteScheduler); tests/fixtures/gen_schedulers.py checks it.
 *
 * Model time (the `t` handed to the network):
 *   discrete schedules  t = the training timestep in [0, T-1], as a float (the Karras-style
 *                       samplers pass fractional timesteps, as diffusers does);
 *   flow schedule       t = sigma * T in [0, T], sigma in [0,1] the noise level
 *                       (x_sigma = (1-sigma) x0 + sigma eps), as diffusers' flow schedulers.
 *   T = schedule.num_train_timesteps (1000 by default) in both cases.
 *
 * Randomness (Philox, core/philox.h), so that a sample never depends on batch composition:
 *   sampling: the noise of image i at sampler noise-step k is
 *     rx_rng_normal(seed, RX_STREAM(RX_RNG_SAMPLE_NOISE, image_index[i]), k*ceil(d/4), ., d);
 *     k = 0 is the initial x_T, k = s+1 the noise injected by scheduler step s (0-based).
 *   training: example i of batch `step` draws its noise from
 *     RX_STREAM(RX_RNG_TRAIN_NOISE, step) at block offset i*ceil(d/4), and its time and label
 *     drop from RX_STREAM(RX_RNG_TRAIN_TIME, step), words 4i .. 4i+3 (one Philox block).
 */
#ifndef RX_DIFFUSION_H
#define RX_DIFFUSION_H

#include <stddef.h>
#include <stdint.h>

#include "core/component.h"
#include "core/params.h"
#include "core/status.h"

// ---------------------------------------------------------------------------
// schedules (kind `schedule`)

enum { RX_SCHED_DISCRETE = 1, RX_SCHED_FLOW = 2 };

typedef struct rx_schedule {
    int         kind;                 // RX_SCHED_DISCRETE | RX_SCHED_FLOW
    const char *name;                 // "linear", "squaredcos_cap_v2", ..., "flow" (static string)
    int         num_train_timesteps;  // T
    // discrete: [T] each, malloc'd. The values are the float32 numbers diffusers stores
    // (rounded at the same points), held in double for the arithmetic that follows.
    double     *betas, *alphas, *alphas_cumprod;
    double      shift;                // flow: sigma' = shift*sigma / (1 + (shift-1)*sigma); 1 = none
    int         truncate_karras_timesteps;  // timesteps from Karras sigmas truncated, not rounded (diffusers, cosine)
} rx_schedule;

typedef struct rx_schedule_impl {
    rx_status (*build)(const rx_params *p, rx_schedule *out);   // free with rx_schedule_free
    int schedule_kind;                                          // RX_SCHED_DISCRETE or RX_SCHED_FLOW
} rx_schedule_impl;

void rx_schedule_free(rx_schedule *s);

// ---------------------------------------------------------------------------
// what the network predicts

typedef enum {
    RX_PRED_EPSILON = 0,   // eps
    RX_PRED_V,             // v = sqrt(abar) eps - sqrt(1-abar) x0   (Salimans & Ho 2022)
    RX_PRED_SAMPLE,        // x0
    RX_PRED_FLOW,          // flow velocity eps - x0 (rectified flow)
    RX_PRED_COUNT_
} rx_prediction_type;

const char *rx_prediction_name(int prediction_type);   // "epsilon", "v_prediction", "sample", "flow"

// The network as the sampler sees it: x [n,d] at model time t [n] (see the top of this file),
// labels [n] (class index, or the null label = num_classes; NULL for an unconditional model).
// out [n,d] = raw network output (eps, v, x0 or velocity as the prediction type says).
// d is known to ctx.
typedef rx_status (*rx_denoise_fn)(void *ctx, int n, const float *x, const float *t,
                                   const int32_t *labels, float *out);

// ---------------------------------------------------------------------------
// training objectives (kind `objective`)

// What an objective trains the model to do; the runner's train step and the stages after
// training follow it (runner/experiment.h).
typedef enum {
    RX_TASK_DENOISE,    // a denoiser on diffusion batches (make_batch); its samples are evaluated
    RX_TASK_CLASSIFY,   // a classifier on the dataset's labels, evaluated on the test split
    RX_TASK_VAE,        // an autoencoder (a model with encode/decode) reconstructing the images, evaluated
                        // by the reconstructions of the reference split (runner/vae_objective.c)
} rx_objective_task;

typedef struct rx_objective_impl {
    rx_objective_task task;
    // RX_TASK_DENOISE only (make_batch and prediction_type are NULL for the other tasks).
    // One training batch. From x0 [n,d] and labels [n] (NULL: unconditional), draw t and noise
    // from Philox keyed by (seed, step, first + i) for example i and write x_t [n,d], model time t [n], target [n,d],
    // per-example loss weight [n] (1, or min-SNR-gamma) and labels_out [n] (labels with each one
    // replaced by the null label num_classes with probability p_uncond; untouched when labels
    // is NULL). The loss is mean_i weight[i] * mean_j (out[i,j] - target[i,j])^2.
    // first: the index of x0[0] in the step's global batch (0 for one process; a data-parallel
    // rank's shard starts later), so a rank's examples draw what one process would draw for them.
    rx_status (*make_batch)(const rx_params *p, const rx_schedule *s, uint64_t seed, int64_t step, int64_t first,
                            int n, int d, const float *x0, const int32_t *labels, int num_classes,
                            float *xt, float *t, float *target, float *weight, int32_t *labels_out);
    int (*prediction_type)(const rx_params *p);   // rx_prediction_type
    int schedule_kind;                            // RX_TASK_DENOISE: the schedule it trains on, RX_SCHED_DISCRETE
                                                  // or RX_SCHED_FLOW; 0 for the other tasks
} rx_objective_impl;

// ---------------------------------------------------------------------------
// reflow (rectified flow, Liu, Gong, Liu 2022): training on a fixed coupling

// One reflow or distillation batch from N stored pairs (z [N,d] noise, x [N,d] the sample
// the model drew from it, labels [N] or NULL), in the flow objective's convention
// (x_sigma = (1-sigma) x0 + sigma eps, target eps - x0) with eps = z and x0 = x:
//   pair p_i = floor(u0 * N), sigma_i = shift(u1) (reflow) or 1 (distill: sigma_fixed = 1),
//   xt_i = (1-sigma_i) x[p_i] + sigma_i z[p_i], target_i = z[p_i] - x[p_i], t_i = sigma_i T,
//   weight_i = 1, labels_out_i = labels[p_i] (no label drop: a student is sampled unguided).
// At sigma = 1 one Euler step to sigma = 0 maps z to z - v(z, T), so the distillation loss
// |v(z, T) - (z - x)|^2 is |z - v(z, T) - x|^2. (u0, u1) is one Philox block of
// RX_STREAM(RX_RNG_REFLOW, step) at index i, so the same (seed, step) gives the same batch.
// sigma_fixed < 0: sigma drawn uniform in [0, 1] and shifted by the schedule's shift.
rx_status rx_reflow_make_batch(const rx_schedule *s, uint64_t seed, int64_t step, double sigma_fixed, int N, int n,
                               int d, const float *z, const float *x, const int32_t *labels, float *xt, float *t,
                               float *target, float *weight, int32_t *labels_out);

// ---------------------------------------------------------------------------
// samplers (kind `sampler`)

// Called after every scheduler step (Heun: after each of its 2*steps-1 evaluations) with the
// current x [n,d]; step counts from 0. Return non-zero status to stop sampling.
typedef rx_status (*rx_sample_observer_fn)(void *ctx, int step, int num_steps, int n, int d, const float *x);

// What a sampler is asked to do: the whole reverse process for n images of d values each.
typedef struct rx_sample_request {
    const rx_schedule    *schedule;
    int                   prediction_type;   // rx_prediction_type of the network's output
    rx_denoise_fn         denoise;           // the network, or a guided one (rx_guided_denoise)
    void                 *denoise_ctx;
    int                   n, d;              // images, values per image
    const int32_t        *labels;            // [n]; NULL for an unconditional model
    const int64_t        *image_index;       // [n] global index of each image, which keys its noise
    uint64_t              seed;
    float                *x_out;             // [n,d] receives the final samples
    rx_sample_observer_fn observer;          // NULL, or progress / previews / tests
    void                 *observer_ctx;
} rx_sample_request;

// `steps` is diffusers' num_inference_steps: one network call per step, except heun and
// flow_heun (2*steps - 1 calls). Initial noise is scaled by diffusers' init_noise_sigma.
typedef struct rx_sampler_impl {
    rx_status (*run)(const rx_params *p, const rx_sample_request *r);
    int schedule_kind;                              // RX_SCHED_DISCRETE or RX_SCHED_FLOW
    int (*num_model_evals)(const rx_params *p);     // network calls (before guidance doubling)
} rx_sampler_impl;

// ---------------------------------------------------------------------------
// guidance (kind `guidance`)

typedef struct rx_guided rx_guided;
typedef struct rx_guidance_impl {
    // out [n,d] = guided prediction; calls g->inner (at most once, batched).
    rx_status (*denoise)(rx_guided *g, int n, const float *x, const float *t, const int32_t *labels,
                         float *out);
    int needs_class_labels;   // 1: only meaningful for a class-conditional model (checked with the config)
} rx_guidance_impl;

// A guided denoiser: wraps the network callback; pass rx_guided_denoise with &g to a sampler.
struct rx_guided {
    const rx_guidance_impl *impl;
    const rx_params        *params;      // the guidance component's parameters
    rx_denoise_fn           inner;       // the network
    void                   *inner_ctx;
    int                     d;           // values per image
    int                     null_label;  // = the model's num_classes
    double                  time_scale;  // model time at pure noise (T), to read `interval`
    // scratch, grown on demand and owned here
    float                  *x2, *t2, *out2;
    int32_t                *labels2;
    int                     cap;         // rows allocated
};

rx_status rx_guided_init(rx_guided *g, const rx_guidance_impl *impl, const rx_params *params,
                         rx_denoise_fn inner, void *inner_ctx, int d, int null_label, const rx_schedule *s);
rx_status rx_guided_denoise(void *g, int n, const float *x, const float *t, const int32_t *labels, float *out);
void      rx_guided_free(rx_guided *g);

// ---------------------------------------------------------------------------
// config-time checks (the "Bad input" rules): a flow sampler on a ddpm objective or a beta
// schedule (and the reverse); steps > num_train_timesteps for a discrete sampler; eta outside
// [0,1]; epsilon prediction with rescale_betas_zero_snr; guidance other than none on an
// unconditional model. Returns RX_OK, or RX_ERR_CONFIG with a message in msg (and
// rx_last_error) that starts with the offending key, e.g.
// "sampler.steps: 2000 is more than schedule.num_train_timesteps = 1000".
// Which family a component belongs to is read from its impl (schedule_kind), never from its
// name; the alternatives a message suggests are the fitting components of `table`.

// The parts of one experiment that must fit together. Any pointer may be NULL (the rules
// that need it are skipped); a component whose impl has no schedule_kind (an objective that
// is not diffusion, such as classify) is not checked against the others.
typedef struct rx_diffusion_setup {
    const rx_component *schedule, *objective, *sampler, *guidance;
    const rx_params    *schedule_params, *objective_params, *sampler_params;
    int                 model_num_classes;   // 0: an unconditional model
} rx_diffusion_setup;

rx_status rx_diffusion_check(const rx_component *const *table, const rx_diffusion_setup *setup, char *msg, size_t n);

// RX_SCHED_DISCRETE or RX_SCHED_FLOW for a schedule, objective or sampler component; 0 for
// anything else (and for an objective that trains no diffusion model).
int rx_schedule_kind_of(const rx_component *c);

#endif
