/* sampler_dpmpp_2m.c — DPM-Solver++(2M) (Lu et al. 2022), as diffusers'
 * DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero").
 *
 * With sigma the VE noise level: alpha = 1/sqrt(sigma^2+1), s = sigma*alpha, lambda = log(alpha/s).
 * The network sees x itself (no input scaling); its output becomes x0^ (data prediction).
 * Step s0 -> t, h = lambda_t - lambda_s0:
 *   1st order (first and last step):  x' = (s_t/s_s0) x - alpha_t (e^-h - 1) x0^
 *   2nd order (midpoint):  r = (lambda_s0 - lambda_s1)/h, D1 = (x0^ - x0^_prev)/r,
 *              x' = (s_t/s_s0) x - alpha_t (e^-h - 1) (x0^ + D1/2)
 *   (solver_type heun: ... + alpha_t ((e^-h - 1)/h + 1) D1 instead of the D1/2 term)
 * The last step goes to sigma = 0, where x' = x0^. */
#include "diffusion/sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const rx_param_spec rx_sampler_dpmpp_2m_params[] = {
    RX_SAMPLER_STEPS_PARAM("20"),
    RX_SAMPLER_SPACING_PARAM("linspace"),
    RX_SAMPLER_OFFSET_PARAM,
    {"use_karras_sigmas", RX_P_BOOL, "false", RX_NO_RANGE, NULL, "Karras et al. 2022 sigma spacing (rho = 7)"},
    {"solver_type", RX_P_CHOICE, "midpoint", 0, 0, "midpoint|heun", "second-order term of the multistep update"},
    {0}};

static int dpm_evals(const rx_params *p) { return (int)rx_param_int(p, "steps"); }

// DPMSolverMultistepScheduler.set_timesteps: integer timesteps ts [N], sigmas sig [N+1] (sig[N] = 0).
static rx_status dpm_sigmas(const rx_schedule *s, rx_spacing sp, int N, int offset, int karras, double *ts,
                            double *sig) {
    const int T = s->num_train_timesteps;
    double *train = malloc((size_t)T * 2 * sizeof *train);
    if (!train) return rx_fail(RX_ERR_OOM, "sampler/dpmpp_2m: %d sigmas", T);
    double *log_sigmas = train + T;
    rx_train_sigmas(s, train);
    for (int k = 0; k < T; k++) log_sigmas[k] = rx_round_f32(log(train[k]));

    // lambda_min_clipped = -inf, so last_timestep = T
    for (int i = 0; i < N; i++) {
        switch (sp) {
        case RX_SPACING_LINSPACE: ts[i] = rint(rx_linspace_at(0, T - 1, N + 1, N - i)); break;
        case RX_SPACING_LEADING: ts[i] = (double)((N - i) * (T / (N + 1)) + offset); break;
        case RX_SPACING_TRAILING: break;
        }
    }
    if (sp == RX_SPACING_TRAILING) rx_timesteps_ddpm(RX_SPACING_TRAILING, T, N, offset, ts);
    if (karras) {
        rx_karras_sigmas(train[0], train[T - 1], N, sig);
        // rounded or truncated as diffusers does (see rx_schedule), so the network sees the same t
        int truncate = s->truncate_karras_timesteps;
        for (int i = 0; i < N; i++) {
            double t = rx_sigma_to_t(sig[i], log_sigmas, T);
            ts[i] = truncate ? trunc(t) : rint(t);
        }
    } else {
        for (int i = 0; i < N; i++) sig[i] = rx_interp_grid(ts[i], train, T);
    }
    sig[N] = 0;
    for (int i = 0; i <= N; i++) sig[i] = rx_round_f32(sig[i]);
    free(train);
    for (int i = 0; i < N; i++)
        if (ts[i] > T - 1 || ts[i] < 0)
            return rx_fail(RX_ERR_CONFIG, "sampler/dpmpp_2m: timestep %g outside [0, %d] (steps_offset too large?)",
                           ts[i], T - 1);
    return RX_OK;
}

static rx_status dpm_run(const rx_params *p, const rx_sample_request *r) {
    RX_TRY(rx_sampler_check_request("dpmpp_2m", r, RX_SCHED_DISCRETE, RX_PREDS_DISCRETE));
    const rx_schedule *s = r->schedule;
    const int pred = r->prediction_type, n = r->n, d = r->d;
    const int T = s->num_train_timesteps, N = (int)rx_param_int(p, "steps");
    if (N > T) return rx_fail(RX_ERR_CONFIG, "sampler/dpmpp_2m: steps %d > num_train_timesteps %d", N, T);
    const int heun_type = strcmp(rx_param_str(p, "solver_type"), "heun") == 0;

    double *ts = malloc((size_t)(2 * N + 1) * sizeof *ts), *sig = ts + N;
    if (!ts) return rx_fail(RX_ERR_OOM, "sampler/dpmpp_2m: %d steps", N);
    rx_status st = dpm_sigmas(s, rx_spacing_parse(rx_param_str(p, "timestep_spacing")), N,
                              (int)rx_param_int(p, "steps_offset"), rx_param_bool(p, "use_karras_sigmas"), ts, sig);
    rx_sample_loop L;
    if (!st) st = rx_sample_loop_begin(&L, r, N);
    if (st) { free(ts); return st; }
    rx_sample_loop_noise(&L, 0, 1.0, L.x);   // init_noise_sigma = 1
    const size_t nd = (size_t)n * d;
    float *x0_prev = L.extra;

    for (int i = 0; i < N; i++) {
        if ((st = rx_sample_loop_eval(&L, L.x, ts[i]))) break;
        // convert_model_output: data prediction at sigma_s0
        const double sg_s0 = sig[i], a_s0 = 1 / sqrt(sg_s0 * sg_s0 + 1), s_s0 = sg_s0 * a_s0;
        const double sg_t = sig[i + 1];
        const int first_order = i == 0 || i == N - 1;   // warm-up, and lower_order_final (sigma' = 0)
        double c_x = 0, c_x0 = 1, c_d1 = 0, inv_r = 0;
        if (sg_t > 0) {
            const double a_t = 1 / sqrt(sg_t * sg_t + 1), s_t = sg_t * a_t;
            const double h = (log(a_t) - log(s_t)) - (log(a_s0) - log(s_s0));
            c_x = s_t / s_s0;
            c_x0 = -a_t * (exp(-h) - 1);
            if (!first_order) {
                const double sg_s1 = sig[i - 1], a_s1 = 1 / sqrt(sg_s1 * sg_s1 + 1), s_s1 = sg_s1 * a_s1;
                const double h0 = (log(a_s0) - log(s_s0)) - (log(a_s1) - log(s_s1));
                inv_r = h / h0;
                c_d1 = heun_type ? a_t * ((exp(-h) - 1) / h + 1) : -0.5 * a_t * (exp(-h) - 1);
            }
        }
        #pragma omp parallel for if (nd > RX_OMP_MIN_WORK)
        for (size_t j = 0; j < nd; j++) {
            double x = L.x[j], o = L.out[j], x0;
            switch (pred) {
            case RX_PRED_EPSILON: x0 = (x - s_s0 * o) / a_s0; break;
            case RX_PRED_V: x0 = a_s0 * x - s_s0 * o; break;
            default: x0 = o; break;   // RX_PRED_SAMPLE
            }
            double xn = c_x * x + c_x0 * x0;
            if (c_d1 != 0) xn += c_d1 * inv_r * (x0 - (double)x0_prev[j]);
            x0_prev[j] = (float)x0;
            L.x[j] = (float)xn;
        }
        if ((st = rx_sample_loop_observe(&L))) break;
    }
    rx_sample_loop_end(&L);
    free(ts);
    return st;
}

static const rx_sampler_impl dpm_impl = {dpm_run, RX_SCHED_DISCRETE, dpm_evals};

const rx_component rx_comp_sampler_dpmpp_2m = {
    RX_KIND_SAMPLER, "dpmpp_2m", "DPM-Solver++(2M) multistep (Lu et al. 2022); good at 15-25 steps",
    rx_sampler_dpmpp_2m_params, &dpm_impl, NULL};
