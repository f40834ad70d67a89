/* sampler_flow.c — Euler and Heun for flow-matching (rectified-flow) models, as diffusers'
 * FlowMatchEulerDiscreteScheduler and FlowMatchHeunDiscreteScheduler.
 *
 * x_sigma = (1 - sigma) x0 + sigma eps, the network predicts v = eps - x0 = dx/dsigma at
 * model time sigma*T. Sigmas: diffusers' grid from sigma_max = shift(1) = 1 to
 * sigma_min = shift(1/T), linearly spaced in N points, shifted again, then 0:
 *   euler  x' = x + (sigma' - sigma) v
 *   heun   x~ = x + (sigma' - sigma) v(x, sigma);  x' = x + (sigma' - sigma) (v + v(x~, sigma'))/2
 *          (the last step, to sigma = 0, is Euler; 2N - 1 network calls) */
#include "diffusion/sampling.h"

#include <math.h>
#include <stdlib.h>

const rx_param_spec rx_sampler_flow_euler_params[] = {RX_SAMPLER_STEPS_PARAM("50"), {0}};
const rx_param_spec rx_sampler_flow_heun_params[] = {RX_SAMPLER_STEPS_PARAM("25"), {0}};

static int flow_euler_evals(const rx_params *p) { return (int)rx_param_int(p, "steps"); }
static int flow_heun_evals(const rx_params *p) { return 2 * (int)rx_param_int(p, "steps") - 1; }

// shift(sigma) = shift*sigma / (1 + (shift-1)*sigma), in float32 as the constructor computes it.
static float shift_f32(float shift, float sigma) { return shift * sigma / (1.0f + (shift - 1.0f) * sigma); }

// set_timesteps: sig [N+1] (sig[N] = 0), model times ts [N] = sig * T (float32).
static void flow_sigmas(const rx_schedule *s, int N, double *ts, double *sig) {
    const int T = s->num_train_timesteps;
    const float shift = (float)s->shift;
    // constructor: sigmas = shift(linspace(1, T, T)[::-1] / T) in float32
    const double sigma_max = shift_f32(shift, (float)T / (float)T), sigma_min = shift_f32(shift, 1.0f / (float)T);
    for (int i = 0; i < N; i++) {
        double sg = rx_linspace_at(sigma_max * T, sigma_min * T, N, i) / T;
        sg = s->shift * sg / (1 + (s->shift - 1) * sg);   // shifted again (numpy float64), as diffusers
        float sf = (float)sg;
        sig[i] = sf;
        ts[i] = (double)(sf * (float)T);
    }
    sig[N] = 0;
}

static rx_status flow_run(const char *name, int heun, const rx_params *p, const rx_sample_request *r) {
    RX_TRY(rx_sampler_check_request(name, r, RX_SCHED_FLOW, RX_PRED_BIT(RX_PRED_FLOW)));
    const rx_schedule *s = r->schedule;
    const int n = r->n, d = r->d;
    const int N = (int)rx_param_int(p, "steps");
    double *ts = malloc((size_t)(2 * N + 1) * sizeof *ts), *sig = ts + N;
    if (!ts) return rx_fail(RX_ERR_OOM, "sampler/%s: %d steps", name, N);
    flow_sigmas(s, N, ts, sig);
    rx_sample_loop L;
    rx_status st = rx_sample_loop_begin(&L, r, heun ? 2 * N - 1 : N);
    if (st) { free(ts); return st; }
    rx_sample_loop_noise(&L, 0, 1.0, L.x);
    const size_t nd = (size_t)n * d;
    float *x_saved = L.extra, *v1 = L.extra2;

    for (int i = 0; i < N; i++) {
        const double dt = sig[i + 1] - sig[i];
        if ((st = rx_sample_loop_eval(&L, L.x, ts[i]))) break;
        for (size_t j = 0; j < nd; j++) {
            x_saved[j] = L.x[j];
            v1[j] = L.out[j];
            L.x[j] = (float)(L.x[j] + dt * L.out[j]);
        }
        if ((st = rx_sample_loop_observe(&L))) break;
        if (!heun || sig[i + 1] == 0) continue;
        if ((st = rx_sample_loop_eval(&L, L.x, ts[i + 1]))) break;
        for (size_t j = 0; j < nd; j++)
            L.x[j] = (float)(x_saved[j] + dt * 0.5 * ((double)v1[j] + L.out[j]));
        if ((st = rx_sample_loop_observe(&L))) break;
    }
    rx_sample_loop_end(&L);
    free(ts);
    return st;
}

static rx_status flow_euler_run(const rx_params *p, const rx_sample_request *r) {
    return flow_run("flow_euler", 0, p, r);
}
static rx_status flow_heun_run(const rx_params *p, const rx_sample_request *r) {
    return flow_run("flow_heun", 1, p, r);
}

static const rx_sampler_impl flow_euler_impl = {flow_euler_run, RX_SCHED_FLOW, flow_euler_evals};
static const rx_sampler_impl flow_heun_impl = {flow_heun_run, RX_SCHED_FLOW, flow_heun_evals};

const rx_component rx_comp_sampler_flow_euler = {
    RX_KIND_SAMPLER, "flow_euler", "Euler for flow-matching models (rectified flow, SD3)",
    rx_sampler_flow_euler_params, &flow_euler_impl, NULL};
const rx_component rx_comp_sampler_flow_heun = {
    RX_KIND_SAMPLER, "flow_heun", "Heun for flow-matching models; 2*steps-1 network calls", rx_sampler_flow_heun_params,
    &flow_heun_impl, NULL};
