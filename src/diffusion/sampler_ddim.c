/* sampler_ddim.c — DDIM (Song et al. 2021), as diffusers' DDIMScheduler.
 *
 * Per step t -> prev = t - T//N (diffusers uses this for every spacing), abar_prev = 1 or
 * abar_0 past the end (set_alpha_to_one):
 *   x0^, eps^ from the output (epsilon / v / sample), x0^ clipped (clip_sample); with
 *   use_clipped_model_output eps^ is re-derived from the clipped x0^: (x - sqrt(abar_t) x0^) / sqrt(1-abar_t)
 *   (diffusers' DDIMScheduler.step argument of that name; GLIDE does this), which keeps the step
 *   consistent when strong guidance pushes x0^ out of range
 *   sigma = eta * sqrt((1-abar_prev)/(1-abar_t) * (1 - abar_t/abar_prev))
 *   x'    = sqrt(abar_prev) x0^ + sqrt(1 - abar_prev - sigma^2) eps^ + sigma z   (z only if eta > 0) */
#include "diffusion/sampling.h"

#include <math.h>
#include <stdlib.h>

const rx_param_spec rx_sampler_ddim_params[] = {
    RX_SAMPLER_STEPS_PARAM("50"),
    {"eta", RX_P_FLOAT, "0.0", 0, 1, NULL, "noise scale: 0 = deterministic DDIM, 1 = DDPM-like"},
    RX_SAMPLER_SPACING_PARAM("leading"),
    RX_SAMPLER_OFFSET_PARAM,
    {"set_alpha_to_one", RX_P_BOOL, "true", RX_NO_RANGE, NULL,
     "the last step goes to alpha_bar = 1 (else alpha_bar_0)"},
    {"clip_sample", RX_P_BOOL, "true", RX_NO_RANGE, NULL, "clip the predicted x0 to [-clip_sample_range, range]"},
    {"clip_sample_range", RX_P_FLOAT, "1.0", 0, 1e6, NULL, "clip bound for x0"},
    {"use_clipped_model_output", RX_P_BOOL, "false", RX_NO_RANGE, NULL,
     "re-derive eps from the clipped x0 (diffusers' step argument; steadier under strong guidance)"},
    {0}};

static int ddim_evals(const rx_params *p) { return (int)rx_param_int(p, "steps"); }

static rx_status ddim_run(const rx_params *p, const rx_sample_request *r) {
    RX_TRY(rx_sampler_check_request("ddim", r, RX_SCHED_DISCRETE, RX_PREDS_DISCRETE));
    const rx_schedule *s = r->schedule;
    const int pred = r->prediction_type, n = r->n, d = r->d;
    const int T = s->num_train_timesteps, N = (int)rx_param_int(p, "steps");
    if (N > T) return rx_fail(RX_ERR_CONFIG, "sampler/ddim: steps %d > num_train_timesteps %d", N, T);
    const double eta = rx_param_float(p, "eta");
    if (!(eta >= 0 && eta <= 1)) return rx_fail(RX_ERR_CONFIG, "sampler/ddim: eta %g outside [0, 1]", eta);
    const int clip = rx_param_bool(p, "clip_sample");
    const double clip_range = rx_param_float(p, "clip_sample_range");
    const int clipped_eps = clip && rx_param_bool(p, "use_clipped_model_output");
    const double *abar = s->alphas_cumprod;
    const double final_abar = rx_param_bool(p, "set_alpha_to_one") ? 1.0 : abar[0];

    double *ts = malloc((size_t)N * sizeof *ts);
    if (!ts) return rx_fail(RX_ERR_OOM, "sampler/ddim: %d timesteps", N);
    rx_timesteps_ddpm(rx_spacing_parse(rx_param_str(p, "timestep_spacing")), T, N, (int)rx_param_int(p, "steps_offset"),
                      ts);
    if (ts[0] > T - 1) {
        int t0 = (int)ts[0];
        free(ts);
        return rx_fail(RX_ERR_CONFIG, "sampler/ddim: steps_offset puts the first timestep at %d >= T = %d", t0, T);
    }

    rx_sample_loop L;
    rx_status st = rx_sample_loop_begin(&L, r, N);
    if (st) { free(ts); return st; }
    rx_sample_loop_noise(&L, 0, 1.0, L.x);
    const size_t nd = (size_t)n * d;

    for (int i = 0; i < N; i++) {
        const int t = (int)ts[i], prev = t - T / N;
        if ((st = rx_sample_loop_eval(&L, L.x, t))) break;
        const double a_t = abar[t], a_prev = prev >= 0 ? abar[prev] : final_abar;
        const double b_t = 1 - a_t, b_prev = 1 - a_prev;
        const double sigma = eta * sqrt(b_prev / b_t * (1 - a_t / a_prev));
        const double c_dir = sqrt(fmax(0.0, 1 - a_prev - sigma * sigma)), c_x0 = sqrt(a_prev);
        const double sa = sqrt(a_t), sb = sqrt(b_t);
        if (eta > 0) rx_sample_loop_noise(&L, (uint64_t)i + 1, 1.0, L.noise);
        #pragma omp parallel for if (nd > RX_OMP_MIN_WORK)
        for (size_t j = 0; j < nd; j++) {
            double x = L.x[j], o = L.out[j], x0, eps;
            switch (pred) {
            case RX_PRED_EPSILON: x0 = (x - sb * o) / sa; eps = o; break;
            case RX_PRED_V: x0 = sa * x - sb * o; eps = sa * o + sb * x; break;
            default: x0 = o; eps = (x - sa * o) / sb; break;   // RX_PRED_SAMPLE
            }
            if (clip) x0 = x0 < -clip_range ? -clip_range : (x0 > clip_range ? clip_range : x0);
            if (clipped_eps) eps = (x - sa * x0) / sb;
            double xn = c_x0 * x0 + c_dir * eps;
            if (eta > 0) xn += sigma * L.noise[j];
            L.x[j] = (float)xn;
        }
        if ((st = rx_sample_loop_observe(&L))) break;
    }
    rx_sample_loop_end(&L);
    free(ts);
    return st;
}

static const rx_sampler_impl ddim_impl = {ddim_run, RX_SCHED_DISCRETE, ddim_evals};

const rx_component rx_comp_sampler_ddim = {
    RX_KIND_SAMPLER, "ddim", "DDIM (Song et al. 2021); eta = 0 is deterministic", rx_sampler_ddim_params, &ddim_impl,
    NULL};
