/* sampling.c — shared sampler pieces: timestep spacing, sigma tables, Karras sigmas,
 * per-image Philox noise, and the evaluate/observe loop. See sampling.h. */
#include "diffusion/sampling.h"
#include "core/philox.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

rx_spacing rx_spacing_parse(const char *s) {
    static const struct { const char *name; rx_spacing sp; } table[] = {
        {"leading", RX_SPACING_LEADING}, {"trailing", RX_SPACING_TRAILING}, {"linspace", RX_SPACING_LINSPACE}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (s && strcmp(s, table[i].name) == 0) return table[i].sp;
    RX_CHECK(!"unknown timestep_spacing (the params spec should have refused it)");
    return RX_SPACING_LEADING;
}

double rx_round_f32(double x) { return (double)(float)x; }

double rx_linspace_at(double start, double stop, int num, int i) {
    if (num == 1) return start;
    if (i == num - 1) return stop;
    return (double)i * ((stop - start) / (double)(num - 1)) + start;
}

// np.round(np.arange(T, 0, -T/N))[i] - 1: numpy's float arange fills start + i*delta with
// delta = (start + step) - start, and np.round rounds half to even (rint).
static double trailing_at(int T, int N, int i) {
    double step = -(double)T / (double)N;
    double delta = ((double)T + step) - (double)T;
    return rint((double)T + (double)i * delta) - 1.0;
}

void rx_timesteps_ddpm(rx_spacing sp, int T, int N, int steps_offset, double *t) {
    for (int i = 0; i < N; i++) {
        switch (sp) {
        case RX_SPACING_LINSPACE: t[i] = rint(rx_linspace_at(0, T - 1, N, N - 1 - i)); break;
        case RX_SPACING_LEADING: t[i] = (double)((N - 1 - i) * (T / N) + steps_offset); break;
        case RX_SPACING_TRAILING: t[i] = trailing_at(T, N, i); break;
        }
    }
}

void rx_timesteps_karras(rx_spacing sp, int T, int N, int steps_offset, double *t) {
    for (int i = 0; i < N; i++) {
        switch (sp) {
        case RX_SPACING_LINSPACE: t[i] = rx_round_f32(rx_linspace_at(0, T - 1, N, N - 1 - i)); break;
        case RX_SPACING_LEADING: t[i] = (double)((N - 1 - i) * (T / N) + steps_offset); break;
        case RX_SPACING_TRAILING: t[i] = trailing_at(T, N, i); break;
        }
    }
}

void rx_train_sigmas(const rx_schedule *s, double *sigmas) {
    int T = s->num_train_timesteps;
    for (int k = 0; k < T; k++) {
        float a = (float)s->alphas_cumprod[k];
        if (a == 0.0f) a = 0x1p-24f;            // zero terminal SNR: finite sigma_max = 4096
        sigmas[k] = (double)sqrtf((1.0f - a) / a);   // float32 tensor ops in diffusers
    }
}

double rx_interp_grid(double x, const double *fp, int T) {
    if (!(x > 0)) return fp[0];
    if (x >= T - 1) return fp[T - 1];
    int k = (int)floor(x);
    double w = x - k;
    // numpy: slope*(x - xp[k]) + fp[k], slope = (fp[k+1]-fp[k]) / 1
    return (fp[k + 1] - fp[k]) * w + fp[k];
}

double rx_sigma_to_t(double sigma, const double *log_sigmas, int T) {
    double log_sigma = log(sigma > 1e-10 ? sigma : 1e-10);
    int low = 0;   // last k with log_sigma >= log_sigmas[k] (log_sigmas increase with k), else 0
    for (int k = 0; k < T; k++)
        if (log_sigma - log_sigmas[k] >= 0) low = k;
    if (low > T - 2) low = T - 2;
    double lo = log_sigmas[low], hi = log_sigmas[low + 1];
    double w = (lo - log_sigma) / (lo - hi);
    w = w < 0 ? 0 : (w > 1 ? 1 : w);
    return (1 - w) * low + w * (low + 1);
}

void rx_karras_sigmas(double sigma_min, double sigma_max, int N, double *out) {
    const double rho = 7.0;
    double min_inv_rho = pow(sigma_min, 1 / rho), max_inv_rho = pow(sigma_max, 1 / rho);
    for (int i = 0; i < N; i++) {
        double ramp = rx_linspace_at(0, 1, N, i);
        out[i] = pow(max_inv_rho + ramp * (min_inv_rho - max_inv_rho), rho);
    }
}

// ---------------------------------------------------------------------------
// the loop

rx_status rx_sample_loop_begin(rx_sample_loop *L, const rx_sample_request *r, int num_steps) {
    memset(L, 0, sizeof *L);
    L->r = r;
    L->x = r->x_out;
    L->num_steps = num_steps;
    const int n = r->n, d = r->d;
    size_t nd = (size_t)n * (size_t)d;
    // one block: model_in, out, noise, extra, extra2 [n,d] and tbuf [n]
    float *buf = malloc((5 * nd + (size_t)n) * sizeof *buf);
    if (!buf) return rx_fail(RX_ERR_OOM, "sampler: %d x %d scratch", n, d);
    L->model_in = buf;
    L->out = buf + nd;
    L->noise = buf + 2 * nd;
    L->extra = buf + 3 * nd;
    L->extra2 = buf + 4 * nd;
    L->tbuf = buf + 5 * nd;
    return RX_OK;
}

void rx_sample_loop_end(rx_sample_loop *L) {
    free(L->model_in);
    L->model_in = L->out = L->noise = L->extra = L->extra2 = L->tbuf = NULL;
}

void rx_sample_loop_noise(rx_sample_loop *L, uint64_t k, double scale, float *x) {
    const rx_sample_request *r = L->r;
    const int d = r->d;
    uint64_t blocks = (uint64_t)(d + 3) / 4;
    #pragma omp parallel for if ((int64_t)r->n * d > RX_OMP_MIN_WORK)
    for (int i = 0; i < r->n; i++) {
        float *xi = x + (size_t)i * d;
        rx_rng_normal(r->seed, RX_STREAM(RX_RNG_SAMPLE_NOISE, (uint64_t)r->image_index[i]), k * blocks, xi, d);
        if (scale != 1.0)
            for (int j = 0; j < d; j++) xi[j] = (float)(scale * xi[j]);
    }
}

rx_status rx_sample_loop_eval(rx_sample_loop *L, const float *in, double t) {
    const rx_sample_request *r = L->r;
    for (int i = 0; i < r->n; i++) L->tbuf[i] = (float)t;
    rx_status st = r->denoise(r->denoise_ctx, r->n, in, L->tbuf, r->labels, L->out);
    if (st != RX_OK) return rx_fail_ctx(st, "sampler: network at t=%g: ", t);
    return RX_OK;
}

rx_status rx_sample_loop_observe(rx_sample_loop *L) {
    const rx_sample_request *r = L->r;
    int step = L->step++;
    if (!r->observer) return RX_OK;
    return r->observer(r->observer_ctx, step, L->num_steps, r->n, r->d, L->x);
}

rx_status rx_sampler_check_request(const char *name, const rx_sample_request *r, int want_kind,
                                   unsigned allowed_preds) {
    const rx_schedule *s = r->schedule;
    const int prediction_type = r->prediction_type;
    if (!s || !r->denoise || !r->image_index || !r->x_out)
        return rx_fail(RX_ERR_ARG, "sampler/%s: schedule, network, image_index and x_out are required", name);
    if (r->n < 1 || r->d < 1) return rx_fail(RX_ERR_ARG, "sampler/%s: n=%d d=%d must be >= 1", name, r->n, r->d);
    if (s->kind != want_kind)
        return rx_fail(RX_ERR_CONFIG, "sampler/%s needs a %s schedule, got schedule/%s", name,
                       want_kind == RX_SCHED_FLOW ? "flow-matching" : "discrete (beta)", s->name ? s->name : "?");
    if (prediction_type < 0 || prediction_type >= RX_PRED_COUNT_ || !(allowed_preds & RX_PRED_BIT(prediction_type)))
        return rx_fail(RX_ERR_CONFIG, "sampler/%s does not support prediction_type %s", name,
                       prediction_type >= 0 && prediction_type < RX_PRED_COUNT_ ? rx_prediction_name(prediction_type)
                                                                             : "(invalid)");
    return RX_OK;
}

rx_status rx_euler_sigmas(const rx_schedule *s, rx_spacing sp, int N, int steps_offset, int use_karras, double *ts,
                          double *sig, double *init_sigma) {
    const int T = s->num_train_timesteps;
    double *train = malloc((size_t)T * 2 * sizeof *train);
    if (!train) return rx_fail(RX_ERR_OOM, "sampler: %d sigmas", T);
    double *log_sigmas = train + T;
    rx_train_sigmas(s, train);
    for (int k = 0; k < T; k++) log_sigmas[k] = rx_round_f32(log(train[k]));   // np.log of a float32 array

    rx_timesteps_karras(sp, T, N, steps_offset, ts);
    for (int i = 0; i < N; i++) sig[i] = rx_interp_grid(ts[i], train, T);
    if (use_karras) {
        double sigma_min = sig[N - 1], sigma_max = sig[0];
        rx_karras_sigmas(sigma_min, sigma_max, N, sig);
        for (int i = 0; i < N; i++) ts[i] = rx_round_f32(rx_sigma_to_t(sig[i], log_sigmas, T));
    }
    sig[N] = 0;
    double max_sigma = 0;
    for (int i = 0; i <= N; i++) {
        sig[i] = rx_round_f32(sig[i]);
        if (sig[i] > max_sigma) max_sigma = sig[i];
    }
    *init_sigma = sp == RX_SPACING_LEADING ? sqrt(max_sigma * max_sigma + 1) : max_sigma;
    free(train);
    return RX_OK;
}
