/* sampler_euler.c — Euler and Euler-ancestral samplers (Karras et al. 2022, k-diffusion),
 * as diffusers' EulerDiscreteScheduler and EulerAncestralDiscreteScheduler.
 *
 * They step x = x0 + sigma*eps in sigma (variance exploding); the network sees
 * x / sqrt(sigma^2 + 1) at the (fractional) timestep whose sigma that is. x starts as
 * init_noise_sigma * z. Per step sigma -> sigma' with d = (x - x0^) / sigma:
 *   euler      x' = x + d (sigma' - sigma)
 *   ancestral  sigma_up = sqrt(sigma'^2 (sigma^2 - sigma'^2) / sigma^2), sigma_down = sqrt(sigma'^2 - sigma_up^2)
 *              x' = x + d (sigma_down - sigma) + sigma_up z */
#include "diffusion/sampling.h"

#include <math.h>
#include <stdlib.h>

const rx_param_spec rx_sampler_euler_params[] = {
    RX_SAMPLER_STEPS_PARAM("50"),
    RX_SAMPLER_SPACING_PARAM("linspace"),
    RX_SAMPLER_OFFSET_PARAM,
    {"use_karras_sigmas", RX_P_BOOL, "false", RX_NO_RANGE, NULL, "Karras et al. 2022 sigma spacing (rho = 7)"},
    {0}};

const rx_param_spec rx_sampler_euler_ancestral_params[] = {
    RX_SAMPLER_STEPS_PARAM("50"),
    RX_SAMPLER_SPACING_PARAM("linspace"),
    RX_SAMPLER_OFFSET_PARAM,
    {0}};

static int euler_evals(const rx_params *p) { return (int)rx_param_int(p, "steps"); }

static rx_status euler_family_run(const char *name, int ancestral, const rx_params *p, const rx_sample_request *r) {
    RX_TRY(rx_sampler_check_request(name, r, RX_SCHED_DISCRETE, RX_PREDS_DISCRETE));
    const rx_schedule *s = r->schedule;
    const int pred = r->prediction_type, n = r->n, d = r->d;
    const int T = s->num_train_timesteps, N = (int)rx_param_int(p, "steps");
    if (N > T) return rx_fail(RX_ERR_CONFIG, "sampler/%s: steps %d > num_train_timesteps %d", name, N, T);
    const int karras = ancestral ? 0 : rx_param_bool(p, "use_karras_sigmas");

    double *ts = malloc((size_t)(2 * N + 1) * sizeof *ts), *sig = ts + N, init_sigma;
    if (!ts) return rx_fail(RX_ERR_OOM, "sampler/%s: %d steps", name, N);
    rx_status st = rx_euler_sigmas(s, rx_spacing_parse(rx_param_str(p, "timestep_spacing")), N,
                                   (int)rx_param_int(p, "steps_offset"), karras, ts, sig, &init_sigma);
    rx_sample_loop L;
    if (!st) st = rx_sample_loop_begin(&L, r, N);
    if (st) { free(ts); return st; }
    rx_sample_loop_noise(&L, 0, init_sigma, L.x);
    const size_t nd = (size_t)n * d;

    for (int i = 0; i < N; i++) {
        const double sigma = sig[i], sigma_next = sig[i + 1];
        const double in_scale = 1 / sqrt(sigma * sigma + 1);   // scale_model_input
        for (size_t j = 0; j < nd; j++) L.model_in[j] = (float)(L.x[j] * in_scale);
        if ((st = rx_sample_loop_eval(&L, L.model_in, ts[i]))) break;
        double target = sigma_next, up = 0;
        if (ancestral) {
            up = sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma));
            target = sqrt(sigma_next * sigma_next - up * up);   // sigma_down
            rx_sample_loop_noise(&L, (uint64_t)i + 1, 1.0, L.noise);
        }
        const double dt = target - sigma;
        #pragma omp parallel for if (nd > RX_OMP_MIN_WORK)
        for (size_t j = 0; j < nd; j++) {
            double x = L.x[j];
            double deriv = (x - rx_ve_x0(pred, x, L.out[j], sigma)) / sigma;
            double xn = x + deriv * dt;
            if (ancestral) xn += L.noise[j] * up;
            L.x[j] = (float)xn;
        }
        if ((st = rx_sample_loop_observe(&L))) break;
    }
    rx_sample_loop_end(&L);
    free(ts);
    return st;
}

static rx_status euler_run(const rx_params *p, const rx_sample_request *r) {
    return euler_family_run("euler", 0, p, r);
}
static rx_status euler_a_run(const rx_params *p, const rx_sample_request *r) {
    return euler_family_run("euler_ancestral", 1, p, r);
}

static const rx_sampler_impl euler_impl = {euler_run, RX_SCHED_DISCRETE, euler_evals};
static const rx_sampler_impl euler_a_impl = {euler_a_run, RX_SCHED_DISCRETE, euler_evals};

const rx_component rx_comp_sampler_euler = {
    RX_KIND_SAMPLER, "euler", "Euler ODE solver in sigma (Karras et al. 2022); deterministic",
    rx_sampler_euler_params, &euler_impl, NULL};
const rx_component rx_comp_sampler_euler_ancestral = {
    RX_KIND_SAMPLER, "euler_ancestral", "Euler with ancestral noise (k-diffusion euler_a)",
    rx_sampler_euler_ancestral_params, &euler_a_impl, NULL};
