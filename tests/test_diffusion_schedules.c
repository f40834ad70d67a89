/* test_diffusion_schedules.c — beta schedules against diffusers' DDPMScheduler.
 *
 * Reference: tests/fixtures/schedulers.bin (gen_schedulers.py): diffusers' float32 betas and
 * alphas_cumprod for linear, scaled_linear, squaredcos_cap_v2 and sigmoid, with and without
 * rescale_betas_zero_snr, T = 1000. */
#include "test_diffusion_fixture.h"

static double max_abs_diff(const double *a, const float *b, int n, int *at) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double e = fabs(a[i] - (double)b[i]);
        if (e > m || e != e) { m = e; if (at) *at = i; }
    }
    return m;
}

Test(diffusion_schedules, betas_and_alphas_cumprod_match_diffusers) {
    fx_file F;
    fx_load(&F);
    int checked = 0;
    const char *names[] = {"linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"};
    for (int k = 0; k < 4; k++)
        for (int r = 0; r < 2; r++) {
            char key[128];
            snprintf(key, sizeof key, "schedule/%s/%d/cfg", names[k], r);
            const fx_record *cfg = fx_find(&F, key);
            cr_assert(cfg, "missing %s", key);
            fx_case c;
            fx_case_open(&c, cfg->data);
            uint32_t nb = 0, na = 0;
            snprintf(key, sizeof key, "schedule/%s/%d/betas", names[k], r);
            float *betas = fx_floats(&F, key, &nb);
            snprintf(key, sizeof key, "schedule/%s/%d/alphas_cumprod", names[k], r);
            float *acp = fx_floats(&F, key, &na);
            const int T = c.sched.num_train_timesteps;
            cr_assert(betas && acp && (int)nb == T && (int)na == T);
            int at_b = 0, at_a = 0;
            double eb = max_abs_diff(c.sched.betas, betas, T, &at_b);
            double ea = max_abs_diff(c.sched.alphas_cumprod, acp, T, &at_a);
            // Zero-SNR betas near t = T-1 are 1 - abar_t/abar_{t-1} of two tiny, nearly equal
            // float32 numbers, and torch's float32 sqrt (MKL/AVX2 on the machine that made the
            // fixture) is not correctly rounded: one ulp there moves those betas by up to ~6e-6.
            // alphas_cumprod (what sampling and training use) stays within 1e-6 everywhere.
            double tol_b = r ? 1e-5 : 1e-6;
            cr_expect(eb <= tol_b, "%s rescale=%d: betas differ by %.3g at t=%d", names[k], r, eb, at_b);
            cr_expect(ea <= 1e-6, "%s rescale=%d: alphas_cumprod differ by %.3g at t=%d", names[k], r, ea, at_a);
            // alphas = 1 - betas, alphas_cumprod = cumprod(alphas)
            double acc = 1;
            for (int t = 0; t < T; t++) {
                cr_assert(fabs(c.sched.alphas[t] - (1 - c.sched.betas[t])) < 1e-7);
                acc *= c.sched.alphas[t];
                cr_assert(fabs(c.sched.alphas_cumprod[t] - acc) <= 1e-7 * fmax(acc, 1e-30) + 1e-12);
            }
            if (r) cr_expect(c.sched.alphas_cumprod[T - 1] == 0.0, "%s: zero terminal SNR ends at abar = 0", names[k]);
            cr_log_info("%-18s rescale=%d: max |dbeta| %.2e, max |dabar| %.2e", names[k], r, eb, ea);
            free(betas);
            free(acp);
            fx_case_close(&c);
            checked++;
        }
    cr_expect_eq(checked, 8);
    fx_free(&F);
}

// The seed article writes `cosine`: the alias resolves to squaredcos_cap_v2, and the
// closed form alpha_bar(t) = f(t)/f(0), f(t) = cos^2((t/T + 0.008)/1.008 * pi/2) holds while
// no beta is capped (Nichol & Dhariwal 2021, eq. 17).
Test(diffusion_schedules, cosine_alias_and_closed_form) {
    const rx_component *c = fx_component(RX_KIND_SCHEDULE, "cosine");
    cr_assert(c == &rx_comp_schedule_squaredcos_cap_v2);
    rx_params *p = fx_params(c);
    rx_schedule s;
    cr_assert(((const rx_schedule_impl *)c->impl)->build(p, &s) == RX_OK);
    cr_expect_str_eq(s.name, "squaredcos_cap_v2");
    const int T = s.num_train_timesteps;
    double f0 = pow(cos(0.008 / 1.008 * M_PI / 2), 2);
    for (int t = 0; t < T - 30; t += 37) {
        double ft = pow(cos(((t + 1.0) / T + 0.008) / 1.008 * M_PI / 2), 2);
        cr_expect(fabs(s.alphas_cumprod[t] - ft / f0) < 2e-6, "t=%d: %.8g vs %.8g", t, s.alphas_cumprod[t], ft / f0);
    }
    cr_expect(s.betas[T - 1] == (double)0.999f, "the last beta is capped at 0.999");
    rx_schedule_free(&s);
    rx_params_free(p);
}

Test(diffusion_schedules, linear_formula_and_params) {
    // betas = linspace(beta_start, beta_end, T) (Ho et al. 2020)
    rx_params *p = fx_params(&rx_comp_schedule_linear);
    fx_set(p, "num_train_timesteps", "11");
    fx_set(p, "beta_start", "0.001");
    fx_set(p, "beta_end", "0.011");
    rx_schedule s;
    cr_assert(((const rx_schedule_impl *)rx_comp_schedule_linear.impl)->build(p, &s) == RX_OK);
    cr_assert_eq(s.num_train_timesteps, 11);
    for (int t = 0; t < 11; t++) cr_expect(fabs(s.betas[t] - (0.001 + 0.001 * t)) < 1e-9, "t=%d", t);
    rx_schedule_free(&s);
    fx_set(p, "beta_end", "0.0005");   // below beta_start
    cr_expect_eq(((const rx_schedule_impl *)rx_comp_schedule_linear.impl)->build(p, &s), RX_ERR_CONFIG);
    cr_expect(strstr(rx_last_error(), "beta_start") != NULL, "%s", rx_last_error());
    rx_params_free(p);
}

Test(diffusion_schedules, flow_schedule) {
    rx_params *p = fx_params(&rx_comp_schedule_flow);
    fx_set(p, "shift", "3.0");
    rx_schedule s;
    cr_assert(((const rx_schedule_impl *)rx_comp_schedule_flow.impl)->build(p, &s) == RX_OK);
    cr_expect_eq(s.kind, RX_SCHED_FLOW);
    cr_expect(s.shift == 3.0 && s.num_train_timesteps == 1000 && s.betas == NULL);
    rx_schedule_free(&s);
    rx_params_free(p);
}
