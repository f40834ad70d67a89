/* test_diffusion_guidance.c — guidance wrappers and the config-time consistency checks.
 *
 * References: CFG out = o_u + s (o_c - o_u) (Ho & Salimans 2022); rescale as diffusers'
 * rescale_noise_cfg (Lin et al. 2023, std over each image); interval (Kynkaanniemi et al. 2024);
 * the "Bad input" list of issue 5 for rx_diffusion_check. */
#include "test_diffusion_fixture.h"

#define D 5
#define NULL_LABEL 10

// out = 0.5 x + 0.1 label + 0.01 j (the null label 10 gives a distinct output); logs its calls
typedef struct {
    int calls, rows[8];
    int32_t labels[8][16];
} net_log;

static rx_status label_net(void *ctx, int n, const float *x, const float *t, const int32_t *labels, float *out) {
    net_log *L = ctx;
    if (L->calls < 8) {
        L->rows[L->calls] = n;
        for (int i = 0; i < n && i < 16; i++) L->labels[L->calls][i] = labels ? labels[i] : -1;
    }
    L->calls++;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) out[i * D + j] = 0.5f * x[i * D + j] + 0.1f * (labels ? labels[i] : 0) + 0.01f * j * j;
    return RX_OK;
}

static rx_schedule linear_schedule(rx_params **p) {
    rx_schedule s;
    *p = fx_params(&rx_comp_schedule_linear);
    cr_assert(((const rx_schedule_impl *)rx_comp_schedule_linear.impl)->build(*p, &s) == RX_OK);
    return s;
}

static void reference_net(const float *x, int label, float *out) {
    for (int j = 0; j < D; j++) out[j] = 0.5f * x[j] + 0.1f * label + 0.01f * j * j;
}

static const float x3[3 * D] = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 1, 2, 3, 4, 5, -1, 0, 1, 0, -1};
static const int32_t labels3[3] = {2, 7, 0};

Test(diffusion_guidance, none_is_the_network) {
    rx_params *sp, *gp = fx_params(&rx_comp_guidance_none);
    rx_schedule s = linear_schedule(&sp);
    rx_guided g;
    net_log L = {0};
    cr_assert(rx_guided_init(&g, rx_comp_guidance_none.impl, gp, label_net, &L, D, NULL_LABEL, &s) == RX_OK);
    const float t[3] = {999, 999, 999};
    float out[3 * D], ref[D];
    cr_assert(rx_guided_denoise(&g, 3, x3, t, labels3, out) == RX_OK);
    cr_expect(L.calls == 1 && L.rows[0] == 3);
    for (int i = 0; i < 3; i++) {
        reference_net(x3 + i * D, labels3[i], ref);
        cr_expect(memcmp(out + i * D, ref, sizeof ref) == 0);
    }
    rx_guided_free(&g);
    rx_schedule_free(&s);
    rx_params_free(sp);
    rx_params_free(gp);
}

Test(diffusion_guidance, cfg_one_batched_call_and_formula) {
    rx_params *sp, *gp = fx_params(&rx_comp_guidance_cfg);
    fx_set(gp, "scale", "3.0");
    rx_schedule s = linear_schedule(&sp);
    rx_guided g;
    net_log L = {0};
    cr_assert(rx_guided_init(&g, rx_comp_guidance_cfg.impl, gp, label_net, &L, D, NULL_LABEL, &s) == RX_OK);
    const float t[3] = {500, 500, 500};
    float out[3 * D], oc[D], ou[D];
    cr_assert(rx_guided_denoise(&g, 3, x3, t, labels3, out) == RX_OK, "%s", rx_last_error());
    cr_assert_eq(L.calls, 1, "one network call");
    cr_assert_eq(L.rows[0], 6, "of 2n rows");
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(L.labels[0][i], labels3[i]);
        cr_expect_eq(L.labels[0][3 + i], NULL_LABEL);
        reference_net(x3 + i * D, labels3[i], oc);
        reference_net(x3 + i * D, NULL_LABEL, ou);
        for (int j = 0; j < D; j++) {
            double want = ou[j] + 3.0 * (oc[j] - ou[j]);
            cr_expect(fabs(out[i * D + j] - want) < 1e-6, "image %d value %d: %g vs %g", i, j, out[i * D + j], want);
        }
    }
    // scale 1 is the conditional output: no unconditional rows at all
    fx_set(gp, "scale", "1");
    L.calls = 0;
    cr_assert(rx_guided_denoise(&g, 3, x3, t, labels3, out) == RX_OK);
    cr_expect(L.calls == 1 && L.rows[0] == 3);
    reference_net(x3 + D, labels3[1], oc);
    cr_expect(memcmp(out + D, oc, sizeof oc) == 0);
    // no labels: an unconditional model cannot be guided
    cr_expect_eq(rx_guided_denoise(&g, 3, x3, t, NULL, out), RX_ERR_ARG);
    rx_guided_free(&g);
    rx_schedule_free(&s);
    rx_params_free(sp);
    rx_params_free(gp);
}

Test(diffusion_guidance, cfg_rescale_matches_rescale_noise_cfg) {
    rx_params *sp, *gp = fx_params(&rx_comp_guidance_cfg);
    fx_set(gp, "scale", "7.5");
    fx_set(gp, "rescale", "0.7");
    rx_schedule s = linear_schedule(&sp);
    rx_guided g;
    net_log L = {0};
    cr_assert(rx_guided_init(&g, rx_comp_guidance_cfg.impl, gp, label_net, &L, D, NULL_LABEL, &s) == RX_OK);
    const float t[3] = {100, 100, 100};
    float out[3 * D], oc[D], ou[D];
    cr_assert(rx_guided_denoise(&g, 3, x3, t, labels3, out) == RX_OK);
    for (int i = 0; i < 3; i++) {
        reference_net(x3 + i * D, labels3[i], oc);
        reference_net(x3 + i * D, NULL_LABEL, ou);
        double cfg[D], mc = 0, mg = 0, vc = 0, vg = 0;
        for (int j = 0; j < D; j++) { cfg[j] = ou[j] + 7.5 * (oc[j] - ou[j]); mc += oc[j]; mg += cfg[j]; }
        mc /= D; mg /= D;
        for (int j = 0; j < D; j++) { vc += (oc[j] - mc) * (oc[j] - mc); vg += (cfg[j] - mg) * (cfg[j] - mg); }
        const double ratio = sqrt(vc / (D - 1)) / sqrt(vg / (D - 1));   // torch.std (unbiased) as diffusers
        for (int j = 0; j < D; j++) {
            double want = 0.7 * cfg[j] * ratio + 0.3 * cfg[j];
            cr_expect(fabs(out[i * D + j] - want) < 1e-5 * fmax(1, fabs(want)), "image %d: %g vs %g", i, out[i * D + j], want);
        }
    }
    rx_guided_free(&g);
    rx_schedule_free(&s);
    rx_params_free(sp);
    rx_params_free(gp);
}

Test(diffusion_guidance, cfg_interval_guides_only_inside) {
    rx_params *sp, *gp = fx_params(&rx_comp_guidance_cfg);
    fx_set(gp, "scale", "2");
    fx_set(gp, "interval", "[0.2, 0.6]");
    rx_schedule s = linear_schedule(&sp);
    rx_guided g;
    net_log L = {0};
    cr_assert(rx_guided_init(&g, rx_comp_guidance_cfg.impl, gp, label_net, &L, D, NULL_LABEL, &s) == RX_OK);
    const float t[3] = {100, 400, 900};   // t/T = 0.1 (out), 0.4 (in), 0.9 (out)
    float out[3 * D], oc[D], ou[D];
    cr_assert(rx_guided_denoise(&g, 3, x3, t, labels3, out) == RX_OK);
    cr_expect(L.calls == 1 && L.rows[0] == 4, "n + (images inside) rows, got %d", L.rows[0]);
    cr_expect_eq(L.labels[0][3], NULL_LABEL);
    for (int i = 0; i < 3; i++) {
        reference_net(x3 + i * D, labels3[i], oc);
        reference_net(x3 + i * D, NULL_LABEL, ou);
        for (int j = 0; j < D; j++) {
            double want = i == 1 ? ou[j] + 2.0 * (oc[j] - ou[j]) : oc[j];
            cr_expect(fabs(out[i * D + j] - want) < 1e-6, "image %d", i);
        }
    }
    rx_guided_free(&g);
    rx_schedule_free(&s);
    rx_params_free(sp);
    rx_params_free(gp);
}

// ---------------------------------------------------------------------------
// rx_diffusion_check: each rule of the "Bad input" list

typedef struct {
    const char *sched_name, *obj_name, *samp_name;
    rx_params *sched, *obj, *samp;
} cfgset;

static cfgset cfg_of(const char *schedule, const char *objective, const char *sampler) {
    cfgset c = {schedule, objective, sampler, NULL, NULL, NULL};
    c.sched = fx_params(fx_component(RX_KIND_SCHEDULE, schedule));
    c.obj = fx_params(fx_component(RX_KIND_OBJECTIVE, objective));
    c.samp = fx_params(fx_component(RX_KIND_SAMPLER, sampler));
    return c;
}
static void cfg_free(cfgset *c) { rx_params_free(c->sched); rx_params_free(c->obj); rx_params_free(c->samp); }

// the components come from the registry by name, as the config checker finds them
static rx_status check(cfgset *c, const char *guidance, int classes, char *msg) {
    rx_diffusion_setup u = {
        .schedule = fx_component(RX_KIND_SCHEDULE, c->sched_name),
        .objective = fx_component(RX_KIND_OBJECTIVE, c->obj_name),
        .sampler = fx_component(RX_KIND_SAMPLER, c->samp_name),
        .guidance = fx_component(RX_KIND_GUIDANCE, guidance),
        .schedule_params = c->sched, .objective_params = c->obj, .sampler_params = c->samp,
        .model_num_classes = classes};
    return rx_diffusion_check(rx_registry_components, &u, msg, 256);
}

Test(diffusion_check, valid_configs_pass) {
    char msg[256];
    cfgset a = cfg_of("cosine", "ddpm", "ddim");
    cr_expect_eq(check(&a, "cfg", 10, msg), RX_OK, "%s", msg);
    cr_expect_str_eq(msg, "");
    fx_set(a.samp, "steps", "1000");   // = T is fine
    cr_expect_eq(check(&a, "none", 0, msg), RX_OK, "%s", msg);
    cfg_free(&a);
    cfgset b = cfg_of("flow", "flow_matching", "flow_heun");
    fx_set(b.samp, "steps", "5000");   // flow time is continuous: no T limit
    cr_expect_eq(check(&b, "cfg", 10, msg), RX_OK, "%s", msg);
    cfg_free(&b);
}

Test(diffusion_check, steps_more_than_train_timesteps) {
    char msg[256];
    const char *samplers[] = {"ddpm", "ddim", "euler", "euler_ancestral", "heun", "dpmpp_2m"};
    for (int k = 0; k < 6; k++) {
        cfgset a = cfg_of("linear", "ddpm", samplers[k]);
        fx_set(a.sched, "num_train_timesteps", "500");
        fx_set(a.samp, "steps", "501");
        cr_expect_eq(check(&a, "none", 0, msg), RX_ERR_CONFIG, "%s", samplers[k]);
        cr_expect(strstr(msg, "sampler.steps: 501 is more than schedule.num_train_timesteps = 500") == msg, "%s", msg);
        cfg_free(&a);
    }
}

Test(diffusion_check, eta_outside_unit_interval) {
    char msg[256];
    cfgset a = cfg_of("linear", "ddpm", "ddim");
    cr_expect_neq(rx_params_set(a.samp, "eta", "1.5"), RX_OK, "the parameter range refuses eta = 1.5");
    // and the check refuses it too, should a value arrive some other way
    for (int k = 0; k < a.samp->n; k++)
        if (strcmp(a.samp->spec[k].name, "eta") == 0) a.samp->values[k].f = -0.1;
    cr_expect_eq(check(&a, "none", 0, msg), RX_ERR_CONFIG);
    cr_expect(strstr(msg, "sampler.eta:") == msg, "%s", msg);
    cfg_free(&a);
}

Test(diffusion_check, flow_sampler_on_ddpm_model_and_the_reverse) {
    char msg[256];
    cfgset a = cfg_of("linear", "ddpm", "flow_euler");
    cr_expect_eq(check(&a, "none", 0, msg), RX_ERR_CONFIG);
    cr_expect(strstr(msg, "sampler.name: flow_euler is a flow-matching sampler") == msg, "%s", msg);
    cr_expect(strstr(rx_last_error(), "flow_euler") != NULL);
    cfg_free(&a);
    cfgset b = cfg_of("flow", "flow_matching", "dpmpp_2m");
    cr_expect_eq(check(&b, "none", 0, msg), RX_ERR_CONFIG);
    cr_expect(strstr(msg, "sampler.name: dpmpp_2m") == msg && strstr(msg, "flow_euler or flow_heun"), "%s", msg);
    cfg_free(&b);
    cfgset c = cfg_of("cosine", "flow_matching", "flow_euler");   // schedule of the wrong family
    cr_expect_eq(check(&c, "none", 0, msg), RX_ERR_CONFIG);
    cr_expect(strstr(msg, "schedule.name:") == msg, "%s", msg);
    cfg_free(&c);
}

Test(diffusion_check, guidance_on_unconditional_model) {
    char msg[256];
    cfgset a = cfg_of("linear", "ddpm", "ddim");
    cr_expect_eq(check(&a, "cfg", 0, msg), RX_ERR_CONFIG);
    cr_expect(strstr(msg, "guidance.name: cfg needs a class-conditional model") == msg, "%s", msg);
    cfg_free(&a);
}

Test(diffusion_check, zero_terminal_snr_needs_v_prediction) {
    char msg[256];
    cfgset a = cfg_of("linear", "ddpm", "ddim");
    fx_set(a.sched, "rescale_betas_zero_snr", "true");
    cr_expect_eq(check(&a, "none", 0, msg), RX_ERR_CONFIG);
    cr_expect(strstr(msg, "objective.prediction_type: epsilon") == msg, "%s", msg);
    fx_set(a.obj, "prediction_type", "v_prediction");
    cr_expect_eq(check(&a, "none", 0, msg), RX_OK, "%s", msg);
    cfg_free(&a);
}
