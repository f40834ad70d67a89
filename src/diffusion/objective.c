/* objective.c — training objectives: how one batch of (x_t, t, target, weight) is drawn.
 *
 * ddpm (Ho et al. 2020): t ~ U{0..T-1}, eps ~ N(0, I), abar = alphas_cumprod[t],
 *     x_t = sqrt(abar) x0 + sqrt(1-abar) eps,
 *     target = eps | v = sqrt(abar) eps - sqrt(1-abar) x0 (Salimans & Ho 2022) | x0,
 *     weight = 1, or min-SNR-gamma (Hang et al. 2023) with SNR = abar/(1-abar):
 *       min(SNR, g)/SNR (epsilon), min(SNR, g)/(SNR+1) (v), min(SNR, g) (sample)
 *     — as diffusers' train_text_to_image.py computes it.
 * flow_matching (rectified flow, Liu et al. 2022; SD3, Esser et al. 2024):
 *     sigma ~ U(0,1) or logit-normal, then the schedule's shift; x_t = (1-sigma) x0 + sigma eps,
 *     target = eps - x0, model time sigma*T, weight = 1.
 * Both: each label becomes the null label (= num_classes) with probability p_uncond
 * (classifier-free guidance training, Ho & Salimans 2022).
 *
 * Randomness: example i of batch `step` (i counted in the global batch: first + the row) uses one Philox block of RX_STREAM(RX_RNG_TRAIN_TIME, step)
 * (u0: time, u1: label drop, u2,u3: logit-normal) and its noise from
 * RX_STREAM(RX_RNG_TRAIN_NOISE, step) at block i*ceil(d/4): the same (seed, step) gives the same batch. */
#include "diffusion/diffusion.h"
#include "core/parallel.h"
#include "core/philox.h"

#include <math.h>
#include <string.h>

static const struct { const char *name; int pred; } pred_names[] = {
    {"epsilon", RX_PRED_EPSILON}, {"v_prediction", RX_PRED_V}, {"sample", RX_PRED_SAMPLE}, {"flow", RX_PRED_FLOW}};

const char *rx_prediction_name(int prediction_type) {
    for (size_t k = 0; k < sizeof pred_names / sizeof pred_names[0]; k++)
        if (pred_names[k].pred == prediction_type) return pred_names[k].name;
    return "(invalid)";
}

static int ddpm_prediction_type(const rx_params *p) {
    const char *s = rx_param_str(p, "prediction_type");
    for (size_t k = 0; k < sizeof pred_names / sizeof pred_names[0]; k++)
        if (strcmp(pred_names[k].name, s) == 0) return pred_names[k].pred;
    RX_CHECK(!"prediction_type not in the spec's choices");
    return RX_PRED_EPSILON;
}
static int flow_prediction_type(const rx_params *p) {
    (void)p;
    return RX_PRED_FLOW;
}

static rx_status check_batch_args(const char *name, int n, int d, const float *x0, const int32_t *labels,
                                  int num_classes, const float *xt, const float *t, const float *target,
                                  const float *weight, const int32_t *labels_out, int64_t step) {
    if (n < 1 || d < 1) return rx_fail(RX_ERR_ARG, "objective/%s: n=%d d=%d must be >= 1", name, n, d);
    if (!x0 || !xt || !t || !target || !weight)
        return rx_fail(RX_ERR_ARG, "objective/%s: x0, xt, t, target and weight are required", name);
    if (step < 0) return rx_fail(RX_ERR_ARG, "objective/%s: step %lld < 0", name, (long long)step);
    if (labels && (!labels_out || num_classes < 1))
        return rx_fail(RX_ERR_ARG, "objective/%s: labels need labels_out and num_classes >= 1 (got %d)", name,
                       num_classes);
    if (labels)
        for (int i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] > num_classes)
                return rx_fail(RX_ERR_ARG, "objective/%s: label %d of example %d outside [0, %d]", name,
                               (int)labels[i], i, num_classes);
    return RX_OK;
}

// one Philox block of uniforms for example i: {time, label drop, normal u0, normal u1}
static void example_uniforms(uint64_t seed, int64_t step, int64_t i, float u[4]) {
    rx_rng_uniform(seed, RX_STREAM(RX_RNG_TRAIN_TIME, (uint64_t)step), (uint64_t)i, u, 4);
}

static void drop_labels(const rx_params *p, uint64_t seed, int64_t step, int64_t first, int n, const int32_t *labels,
                        int num_classes, int32_t *labels_out) {
    if (!labels) return;
    const double p_uncond = rx_param_float(p, "p_uncond");
    for (int i = 0; i < n; i++) {
        float u[4];
        example_uniforms(seed, step, first + i, u);
        labels_out[i] = u[1] < p_uncond ? num_classes : labels[i];
    }
}

// noise of example i into dst [d]
static void example_noise(uint64_t seed, int64_t step, int64_t i, int d, float *dst) {
    rx_rng_normal(seed, RX_STREAM(RX_RNG_TRAIN_NOISE, (uint64_t)step), (uint64_t)i * (uint64_t)((d + 3) / 4), dst, d);
}

static rx_status ddpm_make_batch(const rx_params *p, const rx_schedule *s, uint64_t seed, int64_t step, int64_t first, int n, int d,
                                 const float *x0, const int32_t *labels, int num_classes, float *xt, float *t,
                                 float *target, float *weight, int32_t *labels_out) {
    RX_TRY(check_batch_args("ddpm", n, d, x0, labels, num_classes, xt, t, target, weight, labels_out, step));
    if (!s || s->kind != RX_SCHED_DISCRETE)
        return rx_fail(RX_ERR_CONFIG, "objective/ddpm needs a discrete (beta) schedule, got schedule/%s",
                       s && s->name ? s->name : "?");
    const int T = s->num_train_timesteps, pred = ddpm_prediction_type(p);
    const double gamma = rx_param_float(p, "min_snr_gamma");

    #pragma omp parallel for if ((int64_t)n * d > RX_OMP_MIN_WORK)
    for (int i = 0; i < n; i++) {
        float u[4];
        example_uniforms(seed, step, first + i, u);
        int ti = (int)(u[0] * T);
        if (ti > T - 1) ti = T - 1;
        const double abar = s->alphas_cumprod[ti], sa = sqrt(abar), sb = sqrt(1 - abar);
        const float *x = x0 + (size_t)i * d;
        float *xo = xt + (size_t)i * d, *tg = target + (size_t)i * d;
        example_noise(seed, step, first + i, d, tg);   // eps, in place
        for (int j = 0; j < d; j++) {
            const double e = tg[j];
            xo[j] = (float)(sa * x[j] + sb * e);
            tg[j] = (float)(pred == RX_PRED_EPSILON ? e : pred == RX_PRED_V ? sa * e - sb * x[j] : x[j]);
        }
        t[i] = (float)ti;
        double w = 1.0;
        if (gamma > 0) {
            const double snr = abar / (1 - abar), m = snr < gamma ? snr : gamma;
            // epsilon: min(snr,g)/snr written so that snr = 0 (zero terminal SNR) gives 1, not 0/0
            w = pred == RX_PRED_EPSILON ? (snr < gamma ? 1.0 : gamma / snr) : pred == RX_PRED_V ? m / (snr + 1) : m;
        }
        weight[i] = (float)w;
    }
    drop_labels(p, seed, step, first, n, labels, num_classes, labels_out);
    return RX_OK;
}

static rx_status flow_make_batch(const rx_params *p, const rx_schedule *s, uint64_t seed, int64_t step, int64_t first, int n, int d,
                                 const float *x0, const int32_t *labels, int num_classes, float *xt, float *t,
                                 float *target, float *weight, int32_t *labels_out) {
    RX_TRY(check_batch_args("flow_matching", n, d, x0, labels, num_classes, xt, t, target, weight, labels_out, step));
    if (!s || s->kind != RX_SCHED_FLOW)
        return rx_fail(RX_ERR_CONFIG, "objective/flow_matching needs schedule/flow, got schedule/%s",
                       s && s->name ? s->name : "?");
    const int logit_normal = strcmp(rx_param_str(p, "t_sampling"), "logit_normal") == 0;
    const double m = rx_param_float(p, "logit_mean"), sd = rx_param_float(p, "logit_std"), shift = s->shift;
    const double T = s->num_train_timesteps;

    #pragma omp parallel for if ((int64_t)n * d > RX_OMP_MIN_WORK)
    for (int i = 0; i < n; i++) {
        float u[4];
        example_uniforms(seed, step, first + i, u);
        double sg = u[0];
        if (logit_normal) {   // Box-Muller on (u2, u3), then sigmoid(m + sd*z)
            const double z = sqrt(-2.0 * log((double)u[2])) * cos(6.283185307179586 * u[3]);
            sg = 1 / (1 + exp(-(m + sd * z)));
        }
        sg = shift * sg / (1 + (shift - 1) * sg);
        const float *x = x0 + (size_t)i * d;
        float *xo = xt + (size_t)i * d, *tg = target + (size_t)i * d;
        example_noise(seed, step, first + i, d, tg);
        for (int j = 0; j < d; j++) {
            const double e = tg[j];
            xo[j] = (float)((1 - sg) * x[j] + sg * e);
            tg[j] = (float)(e - x[j]);
        }
        t[i] = (float)(sg * T);
        weight[i] = 1.0f;
    }
    drop_labels(p, seed, step, first, n, labels, num_classes, labels_out);
    return RX_OK;
}

#define P_UNCOND_PARAM \
    {"p_uncond", RX_P_FLOAT, "0.1", 0, 1, NULL, \
     "probability of replacing a label by the null label (classifier-free guidance training)"}

const rx_param_spec rx_objective_ddpm_params[] = {
    {"prediction_type", RX_P_CHOICE, "epsilon", 0, 0, "epsilon|v_prediction|sample", "what the network predicts"},
    {"min_snr_gamma", RX_P_FLOAT, "0", 0, 1e6, NULL, "min-SNR-gamma loss weight (Hang et al. 2023; 5 is usual); 0 = off"},
    P_UNCOND_PARAM,
    {0}};
const rx_param_spec rx_objective_flow_matching_params[] = {
    {"t_sampling", RX_P_CHOICE, "uniform", 0, 0, "uniform|logit_normal", "distribution of the training time sigma"},
    {"logit_mean", RX_P_FLOAT, "0.0", -10, 10, NULL, "logit-normal mean (SD3: 0)"},
    {"logit_std", RX_P_FLOAT, "1.0", 0.001, 10, NULL, "logit-normal std (SD3: 1)"},
    P_UNCOND_PARAM,
    {0}};

static const rx_objective_impl ddpm_impl = {RX_TASK_DENOISE, ddpm_make_batch, ddpm_prediction_type, RX_SCHED_DISCRETE};
static const rx_objective_impl flow_impl = {RX_TASK_DENOISE, flow_make_batch, flow_prediction_type, RX_SCHED_FLOW};

const rx_component rx_comp_objective_ddpm = {
    RX_KIND_OBJECTIVE, "ddpm", "denoising diffusion (eps / v / x0 prediction), MSE, optional min-SNR weighting",
    rx_objective_ddpm_params, &ddpm_impl, NULL};
const rx_component rx_comp_objective_flow_matching = {
    RX_KIND_OBJECTIVE, "flow_matching", "rectified flow: x_t = (1-t) x0 + t eps, target eps - x0",
    rx_objective_flow_matching_params, &flow_impl, NULL};
