/* test_diffusion_samplers.c — every sampler against diffusers' scheduler.step() sequence.
 *
 * Reference: tests/fixtures/schedulers.bin from tests/fixtures/gen_schedulers.py (diffusers'
 * DDPM/DDIM/Euler/EulerAncestral/Heun/DPMSolverMultistep/FlowMatchEuler/FlowMatchHeun schedulers
 * driven by the same stand-in network and the same Philox noise). For each case the model
 * time of every network call must equal diffusers' timesteps, and the sample after every step
 * must equal diffusers' prev_sample to 1e-5 relative (max abs error / max abs value of that step). */
#include "test_diffusion_fixture.h"
#include "core/philox.h"

#define N_IMG 2
#define D 6
static const int64_t image_index[N_IMG] = {3, 7};
static const uint64_t seed = 1234;

// The stand-in network of gen_schedulers.py: out[i,j] = 0.9 x[i,j] + 0.1 sin(t/100 + 0.5 j).
typedef struct {
    float t[4096];
    int calls;
} net_log;

static rx_status standin_net(void *ctx, int n, const float *x, const float *t, const int32_t *labels, float *out) {
    net_log *L = ctx;
    for (int i = 0; i < n; i++) {
        cr_assert(t[i] == t[0], "one time per call");
        for (int j = 0; j < D; j++)
            out[i * D + j] = (float)(0.9 * (double)x[i * D + j] + 0.1 * sin((double)t[i] / 100.0 + 0.5 * j));
    }
    if (L->calls < 4096) L->t[L->calls] = t[0];
    L->calls++;
    return RX_OK;
}

typedef struct {
    float *xs;   // [steps, n, d]
    int steps, cap;
} x_log;

static rx_status record_x(void *ctx, int step, int num_steps, int n, int d, const float *x) {
    x_log *L = ctx;
    cr_assert(step == L->steps && step < num_steps);
    if (step < L->cap) memcpy(L->xs + (size_t)step * n * d, x, (size_t)n * d * sizeof *x);
    L->steps++;
    return RX_OK;
}

// Runs every case of the fixture whose sampler is `sampler_name`; returns the number checked.
static int run_cases(const char *sampler_name, double *worst_x, double *worst_t) {
    fx_file F;
    fx_load(&F);
    int checked = 0;
    *worst_x = *worst_t = 0;
    char want[64];
    snprintf(want, sizeof want, "sampler=%s ", sampler_name);
    for (int r = 0; r < F.n; r++) {
        const char *name = F.rec[r].name;
        size_t nl = strlen(name);
        if (strncmp(name, "case/", 5) != 0 || nl < 4 || strcmp(name + nl - 4, "/cfg") != 0) continue;
        const char *cfg = F.rec[r].data;
        if (strncmp(cfg, want, strlen(want)) != 0) continue;
        char base[400], key[420];
        snprintf(base, sizeof base, "%.*s", (int)(nl - 4), name);
        uint32_t nt = 0, nx = 0;
        snprintf(key, sizeof key, "%s/t", base);
        float *t_ref = fx_floats(&F, key, &nt);
        snprintf(key, sizeof key, "%s/x", base);
        float *x_ref = fx_floats(&F, key, &nx);
        cr_assert(t_ref, "%s: no t", base);

        fx_case c;
        fx_case_open(&c, cfg);
        const rx_sampler_impl *impl = c.sampler->impl;
        net_log nlog = {.calls = 0};
        x_log xlog = {.xs = calloc((size_t)nt * N_IMG * D, sizeof(float)), .steps = 0, .cap = (int)nt};
        float x_out[N_IMG * D];
        const rx_sample_request req = {.schedule = &c.sched, .prediction_type = c.pred, .denoise = standin_net,
                                       .denoise_ctx = &nlog, .n = N_IMG, .d = D, .image_index = image_index,
                                       .seed = seed, .x_out = x_out, .observer = record_x, .observer_ctx = &xlog};
        rx_status st = impl->run(c.sampler_p, &req);
        cr_assert(st == RX_OK, "%s: %s", cfg, rx_last_error());
        cr_assert(nlog.calls == (int)nt, "%s: %d network calls, diffusers made %u", cfg, nlog.calls, nt);
        cr_assert(nlog.calls == impl->num_model_evals(c.sampler_p), "%s: num_model_evals", cfg);
        cr_assert(xlog.steps == (int)nt, "%s: %d steps observed, want %u", cfg, xlog.steps, nt);
        for (uint32_t k = 0; k < nt; k++) {
            double e = fabs((double)nlog.t[k] - t_ref[k]);
            if (e > *worst_t) *worst_t = e;
            cr_expect(e <= 1e-5 * fmax(1.0, fabs(t_ref[k])),
                      "%s: call %u at t=%.6f, diffusers t=%.6f", cfg, k, nlog.t[k], t_ref[k]);
        }
        if (x_ref) {
            cr_assert(nx == nt * N_IMG * D, "%s: x record size", cfg);
            for (uint32_t k = 0; k < nt; k++) {
                double e = rx_rel_err(xlog.xs + (size_t)k * N_IMG * D, x_ref + (size_t)k * N_IMG * D, N_IMG * D);
                if (e > *worst_x) *worst_x = e;
                if (getenv("FX_VERBOSE") && e > 1e-6) cr_log_info("%s: step %u rel err %.2e", cfg, k, e);
                cr_expect(e <= 1e-5, "%s: step %u/%u relative error %.3g", cfg, k, nt, e);
            }
            cr_expect(memcmp(x_out, xlog.xs + (size_t)(nt - 1) * N_IMG * D, sizeof x_out) == 0,
                      "%s: x_out is the last observed x", cfg);
        }
        free(xlog.xs);
        free(t_ref);
        free(x_ref);
        fx_case_close(&c);
        checked++;
    }
    fx_free(&F);
    return checked;
}

#define SAMPLER_TEST(name, min_cases)                                                              \
    Test(diffusion_samplers, name) {                                                               \
        double wx, wt;                                                                             \
        int n = run_cases(#name, &wx, &wt);                                                        \
        cr_assert(n >= (min_cases), #name ": only %d fixture cases", n);                          \
        cr_log_info(#name ": %d cases, worst x rel err %.2e, worst |t - t_ref| %.2e", n, wx, wt); \
    }

SAMPLER_TEST(ddpm, 12)
SAMPLER_TEST(ddim, 12)
SAMPLER_TEST(euler, 12)
SAMPLER_TEST(euler_ancestral, 12)
SAMPLER_TEST(heun, 12)
SAMPLER_TEST(dpmpp_2m, 12)
SAMPLER_TEST(flow_euler, 4)
SAMPLER_TEST(flow_heun, 4)

// The Python re-implementation of Philox + Box-Muller that made the fixture noise equals ours.
Test(diffusion_samplers, fixture_philox_matches_core) {
    fx_file F;
    fx_load(&F);
    const fx_record *keys = fx_find(&F, "philox/keys"), *words = fx_find(&F, "philox/words");
    cr_assert(keys && words && keys->count == 18 && words->count == 12);
    uint32_t kv[18], wv[12];
    memcpy(kv, keys->data, sizeof kv);
    memcpy(wv, words->data, sizeof wv);
    for (int i = 0; i < 3; i++) {
        const uint32_t key[2] = {kv[6 * i], kv[6 * i + 1]};
        const uint32_t ctr[4] = {kv[6 * i + 4], kv[6 * i + 5], kv[6 * i + 2], kv[6 * i + 3]};
        uint32_t out[4];
        rx_philox4x32_10(key, ctr, out);
        for (int k = 0; k < 4; k++) cr_expect_eq(out[k], wv[4 * i + k], "key set %d word %d", i, k);
    }
    uint32_t nz = 0;
    float *z = fx_floats(&F, "philox/sample_noise_k0_k1_k7", &nz);
    cr_assert(z && nz == 3 * N_IMG * D);
    const uint64_t ks[3] = {0, 1, 7};
    for (int q = 0; q < 3; q++)
        for (int i = 0; i < N_IMG; i++) {
            float mine[D];
            rx_rng_normal(seed, RX_STREAM(RX_RNG_SAMPLE_NOISE, image_index[i]), ks[q] * ((D + 3) / 4), mine, D);
            cr_expect(rx_rel_err(mine, z + (q * N_IMG + i) * D, D) < 1e-6, "noise k=%d image %d", (int)ks[q], i);
        }
    free(z);
    fx_free(&F);
}

// Noise is keyed by the global image index: image 7 alone gives the same sample as image 7 in a batch.
Test(diffusion_samplers, batch_composition_does_not_change_samples) {
    const rx_component *comps[] = {&rx_comp_sampler_ddpm, &rx_comp_sampler_ddim, &rx_comp_sampler_euler_ancestral};
    for (size_t c = 0; c < 3; c++) {
        fx_case k;
        char cfg[128];
        snprintf(cfg, sizeof cfg, "sampler=%s schedule=linear pred=epsilon s.steps=10%s", comps[c]->name,
                 comps[c] == &rx_comp_sampler_ddim ? " s.eta=1.0" : "");
        fx_case_open(&k, cfg);
        const rx_sampler_impl *impl = k.sampler->impl;
        net_log nl = {0};
        float both[N_IMG * D], alone[D], other[N_IMG * D];
        rx_sample_request r = {.schedule = &k.sched, .prediction_type = k.pred, .denoise = standin_net,
                               .denoise_ctx = &nl, .n = N_IMG, .d = D, .image_index = image_index, .seed = seed,
                               .x_out = both};
        cr_assert(impl->run(k.sampler_p, &r) == 0);
        rx_sample_request one = r;
        one.n = 1, one.image_index = image_index + 1, one.x_out = alone;
        cr_assert(impl->run(k.sampler_p, &one) == 0);
        cr_expect(memcmp(alone, both + D, sizeof alone) == 0, "%s: image 7 differs alone vs in a batch", cfg);
        rx_sample_request reseeded = r;
        reseeded.seed = seed + 1, reseeded.x_out = other;
        cr_assert(impl->run(k.sampler_p, &reseeded) == 0);
        cr_expect(memcmp(other, both, sizeof other) != 0, "%s: another seed gives the same samples", cfg);
        fx_case_close(&k);
    }
}

// A sampler refuses a schedule of the other family and prediction types it cannot use.
Test(diffusion_samplers, refuses_wrong_schedule_and_prediction) {
    fx_case flow, ddim;
    fx_case_open(&flow, "sampler=flow_euler schedule=flow pred=flow s.steps=4");
    fx_case_open(&ddim, "sampler=ddim schedule=linear pred=epsilon s.steps=4");
    net_log nl = {0};
    float x[N_IMG * D];
    const rx_sampler_impl *fi = flow.sampler->impl, *di = ddim.sampler->impl;
    const rx_sample_request base = {.denoise = standin_net, .denoise_ctx = &nl, .n = N_IMG, .d = D,
                                    .image_index = image_index, .seed = seed, .x_out = x};
    rx_sample_request r = base;
    r.schedule = &ddim.sched, r.prediction_type = RX_PRED_FLOW;
    cr_expect_eq(fi->run(flow.sampler_p, &r), RX_ERR_CONFIG);
    r.schedule = &flow.sched, r.prediction_type = RX_PRED_EPSILON;
    cr_expect_eq(di->run(ddim.sampler_p, &r), RX_ERR_CONFIG);
    r.schedule = &ddim.sched, r.prediction_type = RX_PRED_FLOW;
    cr_expect_eq(di->run(ddim.sampler_p, &r), RX_ERR_CONFIG);
    fx_set(ddim.sampler_p, "steps", "1001");
    r.schedule = &ddim.sched, r.prediction_type = RX_PRED_EPSILON;
    cr_expect_eq(di->run(ddim.sampler_p, &r), RX_ERR_CONFIG);
    cr_expect(strstr(rx_last_error(), "steps 1001") != NULL, "%s", rx_last_error());
    fx_case_close(&flow);
    fx_case_close(&ddim);
}

// The network's error stops sampling and comes back with context.
static rx_status failing_net(void *ctx, int n, const float *x, const float *t, const int32_t *labels, float *out) {
    return rx_fail(RX_ERR_NUMERIC, "net: NaN in layer 3");
}
Test(diffusion_samplers, network_error_propagates) {
    fx_case c;
    fx_case_open(&c, "sampler=dpmpp_2m schedule=linear pred=epsilon s.steps=5");
    float x[N_IMG * D];
    const rx_sampler_impl *impl = c.sampler->impl;
    const rx_sample_request r = {.schedule = &c.sched, .prediction_type = c.pred, .denoise = failing_net, .n = N_IMG,
                                 .d = D, .image_index = image_index, .seed = seed, .x_out = x};
    cr_expect_eq(impl->run(c.sampler_p, &r), RX_ERR_NUMERIC);
    cr_expect(strstr(rx_last_error(), "NaN in layer 3") != NULL, "%s", rx_last_error());
    fx_case_close(&c);
}
