/* sampling.h — pieces the samplers share (internal to src/diffusion/): timestep spacing,
 * sigma tables, Karras sigmas, Philox noise per image, and the evaluate/observe loop state.
 * Each numeric helper names the diffusers code it reproduces. */
#ifndef RX_DIFFUSION_SAMPLING_H
#define RX_DIFFUSION_SAMPLING_H

#include "core/parallel.h"
#include "diffusion/diffusion.h"

#include <math.h>

typedef enum { RX_SPACING_LEADING, RX_SPACING_TRAILING, RX_SPACING_LINSPACE } rx_spacing;
#define RX_SPACING_CHOICES "leading|trailing|linspace"
rx_spacing rx_spacing_parse(const char *s);

// numpy.linspace(start, stop, num)[i], bit for bit.
double rx_linspace_at(double start, double stop, int num, int i);

// Integer timesteps (descending) of DDPMScheduler / DDIMScheduler.set_timesteps:
// linspace: round(linspace(0, T-1, N)); leading: i*(T//N) + offset; trailing: round(T - i*T/N) - 1.
// Always exactly N values (numpy's float arange gives N+1 for some N in "trailing"; that
// extra value would be timestep -1, which diffusers then reads as alphas_cumprod[-1]).
void rx_timesteps_ddpm(rx_spacing sp, int T, int N, int steps_offset, double *t);
// Float timesteps of Euler/EulerAncestral/Heun set_timesteps: as above, but "linspace" is
// not rounded (fractional timesteps), rounded to float32 as diffusers does.
void rx_timesteps_karras(rx_spacing sp, int T, int N, int steps_offset, double *t);

// sigma_k = sqrt((1 - abar_k) / abar_k), k = 0..T-1, rounded to float32 (diffusers' float32
// tensor). abar_{T-1} = 0 (zero terminal SNR) is replaced by 2^-24 as the Euler/DPM schedulers do.
void rx_train_sigmas(const rx_schedule *s, double *sigmas);
// numpy.interp(x, arange(T), fp): linear, clamped at both ends.
double rx_interp_grid(double x, const double *fp, int T);
// _sigma_to_t of the Euler/Heun/DPM schedulers: fractional timestep whose log-sigma
// interpolates log_sigmas [T] (increasing).
double rx_sigma_to_t(double sigma, const double *log_sigmas, int T);
// Karras et al. 2022 (rho = 7): N sigmas from sigma_max down to sigma_min.
void rx_karras_sigmas(double sigma_min, double sigma_max, int N, double *out);

double rx_round_f32(double x);   // (double)(float)x

// The loop state of one sampler run.
typedef struct rx_sample_loop {
    const rx_sample_request *r;
    float *x;          // [n,d] current sample (= r->x_out)
    float *model_in;   // [n,d] scaled model input (Karras-style samplers)
    float *out;        // [n,d] network output
    float *tbuf;       // [n]
    float *noise;      // [n,d] step noise
    float *extra;      // [n,d] sampler-specific (Heun's saved sample, DPM's previous x0, ...)
    float *extra2;     // [n,d]
    int num_steps;     // observer calls in total
    int step;          // observer calls so far
} rx_sample_loop;

rx_status rx_sample_loop_begin(rx_sample_loop *L, const rx_sample_request *r, int num_steps);
void rx_sample_loop_end(rx_sample_loop *L);
// x [n,d] = scale * N(0,1) noise at noise-step k for every image (k = 0: initial noise).
void rx_sample_loop_noise(rx_sample_loop *L, uint64_t k, double scale, float *x);
// out = denoise(in, t) with the same t for every image.
rx_status rx_sample_loop_eval(rx_sample_loop *L, const float *in, double t);
// Calls the observer with the current x.
rx_status rx_sample_loop_observe(rx_sample_loop *L);

// Common parameter spec lines.
#define RX_SAMPLER_STEPS_PARAM(def) {"steps", RX_P_INT, def, 1, 100000, NULL, "number of sampling steps"}
#define RX_SAMPLER_SPACING_PARAM(def) \
    {"timestep_spacing", RX_P_CHOICE, def, 0, 0, RX_SPACING_CHOICES, \
     "how timesteps are chosen (Lin et al. 2023, table 2)"}
#define RX_SAMPLER_OFFSET_PARAM \
    {"steps_offset", RX_P_INT, "0", 0, 1000, NULL, "added to every timestep with leading spacing (SD uses 1)"}

// Checks shared by every run(): the request's sanity and its schedule kind and prediction type.
rx_status rx_sampler_check_request(const char *name, const rx_sample_request *r, int want_kind,
                                   unsigned allowed_preds);
#define RX_PRED_BIT(p) (1u << (p))
// what the discrete-schedule samplers turn into x0 and eps
#define RX_PREDS_DISCRETE (RX_PRED_BIT(RX_PRED_EPSILON) | RX_PRED_BIT(RX_PRED_V) | RX_PRED_BIT(RX_PRED_SAMPLE))

// EulerDiscreteScheduler.set_timesteps (also Euler ancestral and Heun before interleaving):
// ts [N] model timesteps (fractional, float32), sig [N+1] sigmas with sig[N] = 0 (float32),
// *init_sigma = init_noise_sigma (max sigma; sqrt(max^2 + 1) for leading spacing).
// use_karras: Karras sigmas between the spaced sigma range, timesteps from _sigma_to_t.
rx_status rx_euler_sigmas(const rx_schedule *s, rx_spacing sp, int N, int steps_offset, int use_karras, double *ts,
                          double *sig, double *init_sigma);

// x0 from the network output in the variance-exploding view x = x0 + sigma*eps that the
// Euler/Heun schedulers step in (the network saw x / sqrt(sigma^2 + 1)).
static inline double rx_ve_x0(int pred, double x, double out, double sigma) {
    switch (pred) {
    case RX_PRED_EPSILON: return x - sigma * out;
    case RX_PRED_V: return out * (-sigma / sqrt(sigma * sigma + 1)) + x / (sigma * sigma + 1);
    default: return out;   // RX_PRED_SAMPLE
    }
}

#endif
