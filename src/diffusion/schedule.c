/* schedule.c — beta schedules (linear, scaled_linear, squaredcos_cap_v2 a.k.a. cosine,
 * sigmoid; optional zero-terminal-SNR rescale) and flow-matching time.
 *
 * Reference: diffusers' DDPMScheduler.__init__, betas_for_alpha_bar, rescale_zero_terminal_snr.
 * diffusers keeps betas / alphas / alphas_cumprod as float32 tensors; we round to float32 at
 * the same points (and accumulate the cumulative product in double, as torch.cumprod does on
 * the CPU), so the numbers a model was trained with in diffusers are the numbers seen here. */
#include "diffusion/diffusion.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SCHEDULE_T_PARAM \
    {"num_train_timesteps", RX_P_INT, "1000", 2, 100000, NULL, "number of training timesteps T"}
#define RESCALE_PARAM \
    {"rescale_betas_zero_snr", RX_P_BOOL, "false", RX_NO_RANGE, NULL, \
     "rescale betas to zero terminal SNR (Lin et al. 2023); pair with v_prediction"}

typedef enum { BETA_LINEAR, BETA_SCALED_LINEAR, BETA_COSINE, BETA_SIGMOID } beta_family;

// torch.linspace(start, end, num, dtype=float32)[i] as torch computes it on the CPU: a float32
// step, the first half counted up from start and the second half down from end.
static float torch_linspace_f32(double start, double end, int num, int i) {
    const float s = (float)start, e = (float)end;
    if (num == 1) return s;
    const float step = (e - s) / (float)(num - 1);
    return i < num / 2 ? (float)(s + (double)i * step) : (float)(e - (double)(num - 1 - i) * step);
}

// Improved DDPM (Nichol & Dhariwal 2021) alpha_bar, cosine form with s = 0.008.
static double cosine_alpha_bar(double t) {
    double c = cos((t + 0.008) / 1.008 * M_PI / 2);
    return c * c;
}

// betas [T] as diffusers builds them, rounded to float32.
static void make_betas(beta_family fam, int T, double beta_start, double beta_end, float *betas) {
    for (int i = 0; i < T; i++) {
        switch (fam) {
        case BETA_LINEAR:
            betas[i] = torch_linspace_f32(beta_start, beta_end, T, i);
            break;
        case BETA_SCALED_LINEAR: {   // linspace of sqrt(beta) in float32, squared in float32
            float r = torch_linspace_f32(sqrt(beta_start), sqrt(beta_end), T, i);
            betas[i] = r * r;
            break;
        }
        case BETA_COSINE: {          // discretised alpha_bar, capped at 0.999 (betas_for_alpha_bar)
            double b = 1.0 - cosine_alpha_bar((double)(i + 1) / T) / cosine_alpha_bar((double)i / T);
            betas[i] = (float)(b < 0.999 ? b : 0.999);
            break;
        }
        case BETA_SIGMOID: {         // sigmoid(linspace(-6, 6)) * (end - start) + start
            float x = torch_linspace_f32(-6.0, 6.0, T, i);
            float s = (float)(1.0 / (1.0 + exp(-(double)x)));
            betas[i] = s * (float)(beta_end - beta_start) + (float)beta_start;
            break;
        }
        }
    }
}

// cumprod(1 - betas): float32 alphas, double accumulator, float32 result (torch.cumprod on CPU).
static void cumprod_f32(int T, const float *betas, float *alphas, float *alphas_cumprod) {
    double acc = 1.0;
    for (int i = 0; i < T; i++) {
        alphas[i] = 1.0f - betas[i];
        acc *= (double)alphas[i];
        alphas_cumprod[i] = (float)acc;
    }
}

// Lin et al. 2023, Algorithm 1: shift and scale sqrt(alpha_bar) so that it ends at exactly 0
// and starts where it started, then turn it back into betas. float32 throughout, as diffusers.
static void rescale_zero_terminal_snr(int T, float *betas, float *scratch_a, float *scratch_ac) {
    cumprod_f32(T, betas, scratch_a, scratch_ac);
    float *sq = scratch_ac;                       // sqrt(alpha_bar), in place
    for (int i = 0; i < T; i++) sq[i] = sqrtf(sq[i]);
    float s0 = sq[0], sT = sq[T - 1];
    float scale = s0 / (s0 - sT);
    for (int i = 0; i < T; i++) {
        float v = (sq[i] - sT) * scale;
        sq[i] = v * v;                            // alpha_bar again
    }
    // alphas_t = alpha_bar_t / alpha_bar_{t-1}, alphas_0 = alpha_bar_0; betas = 1 - alphas
    for (int i = T - 1; i >= 1; i--) betas[i] = 1.0f - sq[i] / sq[i - 1];
    betas[0] = 1.0f - sq[0];
}

static rx_status build_discrete(const rx_params *p, beta_family fam, const char *name, rx_schedule *out) {
    memset(out, 0, sizeof *out);
    int T = (int)rx_param_int(p, "num_train_timesteps");
    double beta_start = 0, beta_end = 0;
    if (fam != BETA_COSINE) {
        beta_start = rx_param_float(p, "beta_start");
        beta_end = rx_param_float(p, "beta_end");
        if (!(beta_start > 0 && beta_end > beta_start && beta_end < 1))
            return rx_fail(RX_ERR_CONFIG, "schedule/%s: need 0 < beta_start (%g) < beta_end (%g) < 1",
                           name, beta_start, beta_end);
    }
    float *f = malloc((size_t)T * 3 * sizeof *f);
    double *d = malloc((size_t)T * 3 * sizeof *d);
    if (!f || !d) { free(f); free(d); return rx_fail(RX_ERR_OOM, "schedule/%s: T=%d", name, T); }
    float *betas = f, *alphas = f + T, *alphas_cumprod = f + 2 * T;

    make_betas(fam, T, beta_start, beta_end, betas);
    if (rx_param_bool(p, "rescale_betas_zero_snr")) rescale_zero_terminal_snr(T, betas, alphas, alphas_cumprod);
    cumprod_f32(T, betas, alphas, alphas_cumprod);

    for (int i = 0; i < 3 * T; i++) d[i] = (double)f[i];
    free(f);
    out->kind = RX_SCHED_DISCRETE;
    out->name = name;
    out->num_train_timesteps = T;
    out->betas = d;
    out->alphas = d + T;
    out->alphas_cumprod = d + 2 * T;
    out->shift = 1.0;
    // diffusers' DPMSolverMultistepScheduler with Karras sigmas rounds the timesteps it derives,
    // except for squaredcos_cap_v2, where an int64 conversion truncates them
    out->truncate_karras_timesteps = fam == BETA_COSINE;
    return RX_OK;
}

void rx_schedule_free(rx_schedule *s) {
    if (!s) return;
    free(s->betas);   // one block holds betas, alphas and alphas_cumprod
    memset(s, 0, sizeof *s);
}

// ---------------------------------------------------------------------------
// the registered schedules

static rx_status build_linear(const rx_params *p, rx_schedule *o) { return build_discrete(p, BETA_LINEAR, "linear", o); }
static rx_status build_scaled_linear(const rx_params *p, rx_schedule *o) {
    return build_discrete(p, BETA_SCALED_LINEAR, "scaled_linear", o);
}
static rx_status build_cosine(const rx_params *p, rx_schedule *o) {
    return build_discrete(p, BETA_COSINE, "squaredcos_cap_v2", o);
}
static rx_status build_sigmoid(const rx_params *p, rx_schedule *o) { return build_discrete(p, BETA_SIGMOID, "sigmoid", o); }

static rx_status build_flow(const rx_params *p, rx_schedule *out) {
    memset(out, 0, sizeof *out);
    out->kind = RX_SCHED_FLOW;
    out->name = "flow";
    out->num_train_timesteps = (int)rx_param_int(p, "num_train_timesteps");
    out->shift = rx_param_float(p, "shift");
    if (!(out->shift > 0)) return rx_fail(RX_ERR_CONFIG, "schedule/flow: shift %g must be > 0", out->shift);
    return RX_OK;
}

const rx_param_spec rx_schedule_linear_params[] = {
    SCHEDULE_T_PARAM,
    {"beta_start", RX_P_FLOAT, "0.0001", 0, 1, NULL, "beta at t = 0"},
    {"beta_end", RX_P_FLOAT, "0.02", 0, 1, NULL, "beta at t = T-1"},
    RESCALE_PARAM,
    {0}};
const rx_param_spec rx_schedule_scaled_linear_params[] = {
    SCHEDULE_T_PARAM,
    {"beta_start", RX_P_FLOAT, "0.00085", 0, 1, NULL, "beta at t = 0 (sqrt(beta) is linear)"},
    {"beta_end", RX_P_FLOAT, "0.012", 0, 1, NULL, "beta at t = T-1"},
    RESCALE_PARAM,
    {0}};
const rx_param_spec rx_schedule_cosine_params[] = {SCHEDULE_T_PARAM, RESCALE_PARAM, {0}};
const rx_param_spec rx_schedule_sigmoid_params[] = {
    SCHEDULE_T_PARAM,
    {"beta_start", RX_P_FLOAT, "0.0001", 0, 1, NULL, "lower asymptote of beta"},
    {"beta_end", RX_P_FLOAT, "0.02", 0, 1, NULL, "upper asymptote of beta"},
    RESCALE_PARAM,
    {0}};
const rx_param_spec rx_schedule_flow_params[] = {
    {"num_train_timesteps", RX_P_INT, "1000", 1, 100000, NULL, "model time = sigma * num_train_timesteps"},
    {"shift", RX_P_FLOAT, "1.0", 0.001, 1000, NULL,
     "time shift sigma' = shift*sigma / (1 + (shift-1)*sigma) (SD3 uses 3.0); 1 = none"},
    {0}};

static const rx_schedule_impl linear_impl = {build_linear, RX_SCHED_DISCRETE};
static const rx_schedule_impl scaled_linear_impl = {build_scaled_linear, RX_SCHED_DISCRETE};
static const rx_schedule_impl cosine_impl = {build_cosine, RX_SCHED_DISCRETE};
static const rx_schedule_impl sigmoid_impl = {build_sigmoid, RX_SCHED_DISCRETE};
static const rx_schedule_impl flow_impl = {build_flow, RX_SCHED_FLOW};

const rx_component rx_comp_schedule_linear = {
    RX_KIND_SCHEDULE, "linear", "DDPM linear betas (Ho et al. 2020)", rx_schedule_linear_params, &linear_impl, NULL};
const rx_component rx_comp_schedule_scaled_linear = {
    RX_KIND_SCHEDULE, "scaled_linear", "sqrt(beta) linear (Stable Diffusion)", rx_schedule_scaled_linear_params,
    &scaled_linear_impl, NULL};
const rx_component rx_comp_schedule_squaredcos_cap_v2 = {
    RX_KIND_SCHEDULE, "squaredcos_cap_v2", "cosine alpha_bar (Nichol & Dhariwal 2021), betas capped at 0.999",
    rx_schedule_cosine_params, &cosine_impl, "cosine"};
const rx_component rx_comp_schedule_sigmoid = {
    RX_KIND_SCHEDULE, "sigmoid", "sigmoid-shaped betas between beta_start and beta_end", rx_schedule_sigmoid_params,
    &sigmoid_impl, NULL};
const rx_component rx_comp_schedule_flow = {
    RX_KIND_SCHEDULE, "flow", "flow-matching time sigma in [0,1] (rectified flow), optional shift",
    rx_schedule_flow_params, &flow_impl, NULL};
