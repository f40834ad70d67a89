/* reflow.c — training batches on a fixed (noise, sample) coupling: reflow and its 1-step
 * distillation (Liu, Gong, Liu 2022, "Flow Straight and Fast", sections 2.2-2.3).
 *
 * The flow objective (objective.c) couples each image with fresh noise; reflow keeps the
 * coupling the model itself made, (z, x = ODE(z)), so the student's flow is straighter and
 * fewer Euler steps reach the same x. Same convention as flow_matching: sigma = 1 is noise,
 * x_sigma = (1-sigma) x + sigma z, v = z - x, model time sigma*T. */
#include "diffusion/diffusion.h"
#include "core/parallel.h"
#include "core/philox.h"

#include <string.h>

rx_status rx_reflow_make_batch(const rx_schedule *s, uint64_t seed, int64_t step, double sigma_fixed, int N, int n,
                               int d, const float *z, const float *x, const int32_t *labels, float *xt, float *t,
                               float *target, float *weight, int32_t *labels_out) {
    if (N < 1 || n < 1 || d < 1 || step < 0)
        return rx_fail(RX_ERR_ARG, "reflow batch: N=%d n=%d d=%d step=%lld", N, n, d, (long long)step);
    if (!z || !x || !xt || !t || !target || !weight || (labels && !labels_out))
        return rx_fail(RX_ERR_ARG, "reflow batch: z, x, xt, t, target, weight (and labels_out with labels) are required");
    if (!s || s->kind != RX_SCHED_FLOW)
        return rx_fail(RX_ERR_CONFIG, "reflow needs schedule/flow, got schedule/%s", s && s->name ? s->name : "?");
    const double T = s->num_train_timesteps, shift = s->shift;

    #pragma omp parallel for if ((int64_t)n * d > RX_OMP_MIN_WORK)
    for (int i = 0; i < n; i++) {
        float u[4];
        rx_rng_uniform(seed, RX_STREAM(RX_RNG_REFLOW, (uint64_t)step), (uint64_t)i, u, 4);
        int p = (int)(u[0] * N);
        if (p > N - 1) p = N - 1;
        double sg = sigma_fixed;
        if (sg < 0) sg = shift * u[1] / (1 + (shift - 1) * u[1]);
        const float *zp = z + (size_t)p * d, *xp = x + (size_t)p * d;
        float *xo = xt + (size_t)i * d, *tg = target + (size_t)i * d;
        for (int j = 0; j < d; j++) {
            xo[j] = (float)((1 - sg) * xp[j] + sg * zp[j]);
            tg[j] = zp[j] - xp[j];
        }
        t[i] = (float)(sg * T);
        weight[i] = 1.0f;
        if (labels) labels_out[i] = labels[p];
    }
    return RX_OK;
}
