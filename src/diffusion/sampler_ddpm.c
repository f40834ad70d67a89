/* sampler_ddpm.c — ancestral DDPM sampling (Ho et al. 2020), as diffusers' DDPMScheduler.
 *
 * Per step, with abar = alphas_cumprod, t -> prev (the next timestep, or -1 with abar = 1):
 *   x0^   = (x - sqrt(1-abar_t) eps) / sqrt(abar_t)          (or from v, or the output itself)
 *   x0^   = clip(x0^, -r, r)                                   (clip_sample)
 *   mean  = sqrt(abar_prev) beta_t / (1-abar_t) x0^ + sqrt(alpha_t) (1-abar_prev)/(1-abar_t) x
 *   x'    = mean + sigma_t z   (t > 0),   alpha_t = abar_t/abar_prev, beta_t = 1 - alpha_t
 *   sigma_t^2 = (1-abar_prev)/(1-abar_t) beta_t  (fixed_small, clamped at 1e-20) | beta_t (fixed_large) */
#include "diffusion/sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const rx_param_spec rx_sampler_ddpm_params[] = {
    RX_SAMPLER_STEPS_PARAM("1000"),
    {"variance_type", RX_P_CHOICE, "fixed_small", 0, 0, "fixed_small|fixed_large",
     "posterior variance (fixed_small) or beta_t (fixed_large)"},
    {"clip_sample", RX_P_BOOL, "true", RX_NO_RANGE, NULL, "clip the predicted x0 to [-clip_sample_range, range]"},
    {"clip_sample_range", RX_P_FLOAT, "1.0", 0, 1e6, NULL, "clip bound for x0"},
    RX_SAMPLER_SPACING_PARAM("leading"),
    RX_SAMPLER_OFFSET_PARAM,
    {0}};

static int ddpm_evals(const rx_params *p) { return (int)rx_param_int(p, "steps"); }

static rx_status ddpm_run(const rx_params *p, const rx_sample_request *r) {
    RX_TRY(rx_sampler_check_request("ddpm", r, RX_SCHED_DISCRETE, RX_PREDS_DISCRETE));
    const rx_schedule *s = r->schedule;
    const int pred = r->prediction_type, n = r->n, d = r->d;
    const int T = s->num_train_timesteps, N = (int)rx_param_int(p, "steps");
    if (N > T) return rx_fail(RX_ERR_CONFIG, "sampler/ddpm: steps %d > num_train_timesteps %d", N, T);
    const int fixed_large = strcmp(rx_param_str(p, "variance_type"), "fixed_large") == 0;
    const int clip = rx_param_bool(p, "clip_sample");
    const double clip_range = rx_param_float(p, "clip_sample_range");
    const double *abar = s->alphas_cumprod;

    double *ts = malloc((size_t)N * sizeof *ts);
    if (!ts) return rx_fail(RX_ERR_OOM, "sampler/ddpm: %d timesteps", N);
    rx_timesteps_ddpm(rx_spacing_parse(rx_param_str(p, "timestep_spacing")), T, N, (int)rx_param_int(p, "steps_offset"),
                      ts);
    if (ts[0] > T - 1) {
        int t0 = (int)ts[0];
        free(ts);
        return rx_fail(RX_ERR_CONFIG, "sampler/ddpm: steps_offset puts the first timestep at %d >= T = %d", t0, T);
    }

    rx_sample_loop L;
    rx_status st = rx_sample_loop_begin(&L, r, N);
    if (st) { free(ts); return st; }
    rx_sample_loop_noise(&L, 0, 1.0, L.x);   // init_noise_sigma = 1
    const size_t nd = (size_t)n * d;

    for (int i = 0; i < N && st == RX_OK; i++) {
        const int t = (int)ts[i], prev = i + 1 < N ? (int)ts[i + 1] : -1;
        if ((st = rx_sample_loop_eval(&L, L.x, t))) break;
        const double a_t = abar[t], a_prev = prev >= 0 ? abar[prev] : 1.0;
        const double b_t = 1 - a_t, b_prev = 1 - a_prev;
        const double alpha = a_t / a_prev, beta = 1 - alpha;
        const double c_x0 = sqrt(a_prev) * beta / b_t, c_x = sqrt(alpha) * b_prev / b_t;
        double std = 0;
        if (t > 0) {
            double var = b_prev / b_t * beta;
            if (var < 1e-20) var = 1e-20;
            std = fixed_large ? sqrt(beta) : sqrt(var);
            rx_sample_loop_noise(&L, (uint64_t)i + 1, 1.0, L.noise);
        }
        const double sa = sqrt(a_t), sb = sqrt(b_t);
        #pragma omp parallel for if (nd > RX_OMP_MIN_WORK)
        for (size_t j = 0; j < nd; j++) {
            double x = L.x[j], o = L.out[j], x0;
            switch (pred) {
            case RX_PRED_EPSILON: x0 = (x - sb * o) / sa; break;
            case RX_PRED_V: x0 = sa * x - sb * o; break;
            default: x0 = o; break;   // RX_PRED_SAMPLE
            }
            if (clip) x0 = x0 < -clip_range ? -clip_range : (x0 > clip_range ? clip_range : x0);
            double xn = c_x0 * x0 + c_x * x;
            if (t > 0) xn += std * L.noise[j];
            L.x[j] = (float)xn;
        }
        st = rx_sample_loop_observe(&L);
    }
    rx_sample_loop_end(&L);
    free(ts);
    return st;
}

static const rx_sampler_impl ddpm_impl = {ddpm_run, RX_SCHED_DISCRETE, ddpm_evals};

const rx_component rx_comp_sampler_ddpm = {
    RX_KIND_SAMPLER, "ddpm", "ancestral DDPM (Ho et al. 2020); one network call per step", rx_sampler_ddpm_params,
    &ddpm_impl, NULL};
