/* sampler_heun.c — Heun's 2nd-order ODE solver (Karras et al. 2022, algorithm 1 without
 * churn), as diffusers' HeunDiscreteScheduler.
 *
 * Same sigmas, model input scaling and x0^ as Euler. Per step sigma -> sigma':
 *   d  = (x - x0^(x, sigma)) / sigma,   x~ = x + d (sigma' - sigma)           (Euler predictor)
 *   d' = (x~ - x0^(x~, sigma')) / sigma',  x' = x + (d + d')/2 (sigma' - sigma) (trapezoid corrector)
 * except the last step (sigma' = 0), which is plain Euler. `steps` = N scheduler steps as in
 * diffusers' num_inference_steps, i.e. 2N - 1 network evaluations. */
#include "diffusion/sampling.h"

#include <math.h>
#include <stdlib.h>

const rx_param_spec rx_sampler_heun_params[] = {
    RX_SAMPLER_STEPS_PARAM("25"),
    RX_SAMPLER_SPACING_PARAM("linspace"),
    RX_SAMPLER_OFFSET_PARAM,
    {"use_karras_sigmas", RX_P_BOOL, "false", RX_NO_RANGE, NULL, "Karras et al. 2022 sigma spacing (rho = 7)"},
    {"clip_sample", RX_P_BOOL, "false", RX_NO_RANGE, NULL, "clip the predicted x0 to [-clip_sample_range, range]"},
    {"clip_sample_range", RX_P_FLOAT, "1.0", 0, 1e6, NULL, "clip bound for x0"},
    {0}};

static int heun_evals(const rx_params *p) { return 2 * (int)rx_param_int(p, "steps") - 1; }

// out-of-place: model_in = x / sqrt(sigma^2 + 1)
static void scale_input(const float *x, float *in, size_t nd, double sigma) {
    const double c = 1 / sqrt(sigma * sigma + 1);
    for (size_t j = 0; j < nd; j++) in[j] = (float)(x[j] * c);
}

static rx_status heun_run(const rx_params *p, const rx_sample_request *r) {
    RX_TRY(rx_sampler_check_request("heun", r, RX_SCHED_DISCRETE, RX_PREDS_DISCRETE));
    const rx_schedule *s = r->schedule;
    const int pred = r->prediction_type, n = r->n, d = r->d;
    const int T = s->num_train_timesteps, N = (int)rx_param_int(p, "steps");
    if (N > T) return rx_fail(RX_ERR_CONFIG, "sampler/heun: steps %d > num_train_timesteps %d", N, T);
    const int clip = rx_param_bool(p, "clip_sample");
    const double clip_range = rx_param_float(p, "clip_sample_range");

    double *ts = malloc((size_t)(2 * N + 1) * sizeof *ts), *sig = ts + N, init_sigma;
    if (!ts) return rx_fail(RX_ERR_OOM, "sampler/heun: %d steps", N);
    rx_status st = rx_euler_sigmas(s, rx_spacing_parse(rx_param_str(p, "timestep_spacing")), N,
                                   (int)rx_param_int(p, "steps_offset"), rx_param_bool(p, "use_karras_sigmas"), ts,
                                   sig, &init_sigma);
    rx_sample_loop L;
    if (!st) st = rx_sample_loop_begin(&L, r, 2 * N - 1);
    if (st) { free(ts); return st; }
    rx_sample_loop_noise(&L, 0, init_sigma, L.x);
    const size_t nd = (size_t)n * d;
    float *x_saved = L.extra, *deriv1 = L.extra2;

    for (int i = 0; i < N; i++) {
        const double sigma = sig[i], sigma_next = sig[i + 1], dt = sigma_next - sigma;
        // predictor at (t_i, sigma_i)
        scale_input(L.x, L.model_in, nd, sigma);
        if ((st = rx_sample_loop_eval(&L, L.model_in, ts[i]))) break;
        #pragma omp parallel for if (nd > RX_OMP_MIN_WORK)
        for (size_t j = 0; j < nd; j++) {
            double x = L.x[j], x0 = rx_ve_x0(pred, x, L.out[j], sigma);
            if (clip) x0 = x0 < -clip_range ? -clip_range : (x0 > clip_range ? clip_range : x0);
            double dv = (x - x0) / sigma;
            x_saved[j] = L.x[j];
            deriv1[j] = (float)dv;
            L.x[j] = (float)(x + dv * dt);
        }
        if ((st = rx_sample_loop_observe(&L))) break;
        if (sigma_next == 0) break;   // the last step is Euler
        // corrector at (t_{i+1}, sigma_{i+1})
        scale_input(L.x, L.model_in, nd, sigma_next);
        if ((st = rx_sample_loop_eval(&L, L.model_in, ts[i + 1]))) break;
        #pragma omp parallel for if (nd > RX_OMP_MIN_WORK)
        for (size_t j = 0; j < nd; j++) {
            double x = L.x[j], x0 = rx_ve_x0(pred, x, L.out[j], sigma_next);
            if (clip) x0 = x0 < -clip_range ? -clip_range : (x0 > clip_range ? clip_range : x0);
            double dv = 0.5 * ((double)deriv1[j] + (x - x0) / sigma_next);
            L.x[j] = (float)(x_saved[j] + dv * dt);
        }
        if ((st = rx_sample_loop_observe(&L))) break;
    }
    rx_sample_loop_end(&L);
    free(ts);
    return st;
}

static const rx_sampler_impl heun_impl = {heun_run, RX_SCHED_DISCRETE, heun_evals};

const rx_component rx_comp_sampler_heun = {
    RX_KIND_SAMPLER, "heun", "Heun 2nd order (Karras et al. 2022); 2*steps-1 network calls", rx_sampler_heun_params,
    &heun_impl, NULL};
