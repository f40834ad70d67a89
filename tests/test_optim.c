/* test_optim.c — AdamW, gradient clipping, learning-rate schedules, EMA (src/autograd/optim.c,
 * lr_schedule.c, ema.c).
 * References: torch.optim.AdamW + torch.nn.utils.clip_grad_norm_ trajectories in
 * tests/fixtures/optim_adamw.json (made by tests/fixtures/gen_optim.py); the schedule and EMA
 * formulas (transformers get_*_schedule_with_warmup; e = d e + (1-d) p) computed in this file. */
#include "gradcheck.h"
#include "autograd/optim.h"
#include "registry/components.h"
#include <jansson.h>

static void load_list(json_t *arr, float *dst, int64_t n) {
    cr_assert(json_is_array(arr) && (int64_t)json_array_size(arr) == n, "fixture list of %lld expected", (long long)n);
    for (int64_t i = 0; i < n; i++) dst[i] = (float)json_number_value(json_array_get(arr, i));
}

// ---------------------------------------------------------------------------- AdamW vs torch

static void run_torch_case(json_t *cs) {
    const char *name = json_string_value(json_object_get(cs, "name"));
    json_t *shapes = json_object_get(cs, "shapes");
    const int nt = (int)json_array_size(shapes), steps = (int)json_integer_value(json_object_get(cs, "steps"));
    rx_ctx *c = rx_test_cpu_ctx();
    rx_paramset ps = {0};
    for (int k = 0; k < nt; k++) {
        json_t *sh = json_array_get(shapes, k);
        int64_t dims[4];
        const int nd = (int)json_array_size(sh);
        for (int d = 0; d < nd; d++) dims[d] = json_integer_value(json_array_get(sh, d));
        char pname[16];
        snprintf(pname, sizeof pname, "p%d", k);
        rx_tensor *p = rx_param(c, pname, nd, dims, 1);
        cr_assert(p);
        float *h = malloc(p->numel * sizeof(float));
        load_list(json_array_get(json_object_get(cs, "init"), k), h, p->numel);
        rx_tensor_from_host(c, p, h);
        free(h);
        cr_assert_eq(rx_paramset_add(&ps, p), RX_OK);
    }
    const float max_norm = (float)json_number_value(json_object_get(cs, "max_norm"));
    rx_adamw_config cfg = {
        .lr = 0, .beta1 = (float)json_number_value(json_object_get(cs, "beta1")),
        .beta2 = (float)json_number_value(json_object_get(cs, "beta2")),
        .eps = (float)json_number_value(json_object_get(cs, "eps")),
        .weight_decay = (float)json_number_value(json_object_get(cs, "weight_decay")), .grad_clip = max_norm};
    rx_adamw opt;
    cr_assert_eq(rx_adamw_init(c, &opt, &ps, &cfg), RX_OK, "%s", rx_last_error());
    cr_expect_eq(opt.m.n, nt);
    cr_expect_str_eq(opt.m.t[1]->name, "p1", "moments are named like their parameter");
    for (int t = 0; t < steps; t++) {
        for (int k = 0; k < nt; k++) {
            rx_tensor *p = ps.t[k];
            float *g = malloc(p->numel * sizeof(float));
            load_list(json_array_get(json_array_get(json_object_get(cs, "grads"), t), k), g, p->numel);
            rx_tensor_from_host(c, p->grad, g);
            free(g);
        }
        const float lr = (float)json_number_value(json_array_get(json_object_get(cs, "lr"), t));
        rx_optim_stats st;
        cr_assert_eq(rx_adamw_step(c, &opt, lr, &st), RX_OK, "%s", rx_last_error());
        cr_expect_eq(opt.step, t + 1);
        cr_expect_eq(st.lr, lr);
        const double norm_ref = json_number_value(json_array_get(json_object_get(cs, "grad_norm"), t));
        cr_expect(fabs(st.grad_norm - norm_ref) <= 1e-6 * norm_ref, "%s step %d: grad norm %.9g vs torch %.9g", name, t,
                  st.grad_norm, norm_ref);
        if (max_norm > 0 && norm_ref > max_norm) cr_expect_lt(st.clip_scale, 1.0f, "%s: clipping must be active", name);
        else cr_expect_eq(st.clip_scale, 1.0f, "%s: clipping must be inactive", name);
        for (int k = 0; k < nt; k++) {
            rx_tensor *p = ps.t[k];
            float *got = malloc(p->numel * sizeof(float)), *ref = malloc(p->numel * sizeof(float));
            rx_tensor_to_host(c, p, got);
            load_list(json_array_get(json_array_get(json_object_get(cs, "params"), t), k), ref, p->numel);
            const double e = rx_rel_err(got, ref, p->numel);
            cr_expect_lt(e, 1e-6, "%s step %d tensor %d: rel err %g vs torch.optim.AdamW", name, t, k, e);
            free(got); free(ref);
        }
    }
    rx_adamw_free(&opt);
    rx_paramset_free(&ps);
    rx_ctx_destroy(c);
}

Test(adamw, matches_torch_trajectories) {
    json_error_t jerr;
    json_t *root = json_load_file("tests/fixtures/optim_adamw.json", 0, &jerr);
    cr_assert(root, "tests/fixtures/optim_adamw.json: %s (run tests/fixtures/gen_optim.py)", jerr.text);
    json_t *cases = json_object_get(root, "cases");
    cr_assert_eq(json_array_size(cases), 3);
    for (size_t i = 0; i < json_array_size(cases); i++) run_torch_case(json_array_get(cases, i));
    json_decref(root);
}

/* a parameter without grad is left alone and gets no state; a NaN gradient stops the step */
Test(adamw, frozen_params_and_nan_gradients) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_paramset ps = {0};
    rx_tensor *w = rx_param(c, "w", RX_SHAPE(4), 1), *frozen = rx_param(c, "frozen", RX_SHAPE(3), 0);
    rx_paramset_add(&ps, w);
    rx_paramset_add(&ps, frozen);
    rx_tensor_fill(c, w, 1.0f);
    rx_tensor_fill(c, frozen, 2.0f);
    rx_tensor_fill(c, w->grad, 0.5f);
    rx_adamw_config cfg = RX_ADAMW_TORCH_DEFAULTS;
    rx_adamw opt;
    cr_assert_eq(rx_adamw_init(c, &opt, &ps, &cfg), RX_OK);
    cr_expect_eq(opt.m.n, 1);
    cr_assert_eq(rx_adamw_step(c, &opt, 0.1f, NULL), RX_OK, "%s", rx_last_error());
    float h[4];
    rx_tensor_to_host(c, frozen, h);
    for (int i = 0; i < 3; i++) cr_expect_eq(h[i], 2.0f);
    // first step: m_hat = g, v_hat = g², so p = p (1 - lr wd) - lr g / (|g| + eps)
    rx_tensor_to_host(c, w, h);
    const double ref = 1.0 * (1 - 0.1 * 0.01) - 0.1 * 0.5 / (0.5 + 1e-8);
    cr_expect(fabs(h[0] - ref) < 1e-6, "first AdamW step %.8f vs formula %.8f", h[0], ref);
    float g[4] = {0.5f, NAN, 0.5f, 0.5f};
    rx_tensor_from_host(c, w->grad, g);
    cr_expect_eq(rx_adamw_step(c, &opt, 0.1f, NULL), RX_ERR_NUMERIC);
    cr_expect(strstr(rx_last_error(), "adamw: gradient norm is nan at step 2"), "%s", rx_last_error());
    float after[4];
    rx_tensor_to_host(c, w, after);
    cr_expect_eq(after[0], h[0], "no update on a NaN gradient");
    cr_expect_eq(opt.step, 1);
    rx_adamw_free(&opt);
    rx_paramset_free(&ps);
    rx_ctx_destroy(c);
}

Test(adamw, bad_hyperparameters_are_refused) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_paramset ps = {0};
    rx_adamw opt;
    rx_adamw_config cfg = RX_ADAMW_TORCH_DEFAULTS;
    cfg.beta2 = 1.0f;
    cr_expect_eq(rx_adamw_init(c, &opt, &ps, &cfg), RX_ERR_ARG);
    cr_expect(strstr(rx_last_error(), "adamw: lr 0.001, betas (0.9, 1)"), "%s", rx_last_error());
    rx_ctx_destroy(c);
}

/* clip_grad_norm_: total norm = sqrt(Σ g²) over all tensors; coef = max/(norm + 1e-6), clamped to 1 */
Test(clip, global_norm_and_scale) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_paramset ps = {0};
    rx_tensor *a = rx_param(c, "a", RX_SHAPE(2, 3), 1), *b = rx_param(c, "b", RX_SHAPE(5), 1);
    rx_paramset_add(&ps, a);
    rx_paramset_add(&ps, b);
    rx_test_randn(c, a->grad, 1, 2.0f);
    rx_test_randn(c, b->grad, 2, 2.0f);
    float ga[6], gb[5];
    rx_tensor_to_host(c, a->grad, ga);
    rx_tensor_to_host(c, b->grad, gb);
    double ref = 0;
    for (int i = 0; i < 6; i++) ref += (double)ga[i] * ga[i];
    for (int i = 0; i < 5; i++) ref += (double)gb[i] * gb[i];
    ref = sqrt(ref);
    double norm;
    cr_assert_eq(rx_grad_norm(c, &ps, &norm), RX_OK);
    cr_expect(fabs(norm - ref) < 1e-12 * ref, "norm %.15g vs %.15g", norm, ref);
    cr_expect(fabs(rx_clip_scale(norm, 1.0f) - 1.0 / (ref + 1e-6)) < 1e-7);
    cr_expect_eq(rx_clip_scale(norm, (float)(2 * ref)), 1.0f, "never scaled up");
    cr_expect_eq(rx_clip_scale(norm, 0.0f), 1.0f, "max_norm 0 = no clipping");
    rx_paramset_free(&ps);
    rx_ctx_destroy(c);
}

Test(adamw, component_reads_config) {
    const rx_component *comp = &rx_comp_optimizer_adamw;
    cr_expect_eq(comp->kind, RX_KIND_OPTIMIZER);
    cr_expect_str_eq(comp->name, "adamw");
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults("optimizer/adamw", comp->params, &p), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_params_set(p, "lr", "3e-4"), RX_OK);
    cr_assert_eq(rx_params_set(p, "beta2", "0.95"), RX_OK);
    cr_assert_eq(rx_params_set(p, "grad_clip", "0.5"), RX_OK);
    rx_ctx *c = rx_test_cpu_ctx();
    rx_paramset ps = {0};
    rx_paramset_add(&ps, rx_param(c, "w", RX_SHAPE(3), 1));
    rx_adamw opt;
    const rx_optimizer_impl *impl = comp->impl;
    cr_assert_eq(impl->create(c, p, &ps, &opt), RX_OK, "%s", rx_last_error());
    cr_expect_float_eq(opt.cfg.lr, 3e-4f, 1e-12);
    cr_expect_float_eq(opt.cfg.beta1, 0.9f, 1e-12);
    cr_expect_float_eq(opt.cfg.beta2, 0.95f, 1e-12);
    cr_expect_float_eq(opt.cfg.eps, 1e-8f, 1e-15);
    cr_expect_float_eq(opt.cfg.weight_decay, 0.01f, 1e-12);
    cr_expect_float_eq(opt.cfg.grad_clip, 0.5f, 1e-12);
    cr_expect_neq(rx_params_set(p, "beta1", "1.5"), RX_OK, "range-checked by the spec");
    rx_adamw_free(&opt);
    rx_paramset_free(&ps);
    rx_params_free(p);
    rx_ctx_destroy(c);
}

// ---------------------------------------------------------------------------- LR schedules

static rx_params *sched_params(const rx_component *comp, const char *k1, const char *v1, const char *k2, const char *v2) {
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults(comp->name, comp->params, &p), RX_OK, "%s", rx_last_error());
    if (k1) cr_assert_eq(rx_params_set(p, k1, v1), RX_OK, "%s", rx_last_error());
    if (k2) cr_assert_eq(rx_params_set(p, k2, v2), RX_OK, "%s", rx_last_error());
    return p;
}

static float lr_of(const rx_component *comp, const rx_params *p, float base, int64_t step, int64_t total) {
    cr_assert_eq(comp->kind, RX_KIND_LR_SCHEDULE);
    return ((const rx_lr_schedule_impl *)comp->impl)->lr_at(p, base, step, total);
}

Test(lr_schedule, constant) {
    rx_params *p = sched_params(&rx_comp_lr_schedule_constant, NULL, NULL, NULL, NULL);
    for (int64_t s = 0; s < 2000; s += 333) cr_expect_eq(lr_of(&rx_comp_lr_schedule_constant, p, 3e-4f, s, 1000), 3e-4f);
    rx_params_free(p);
}

/* transformers get_constant_schedule_with_warmup: factor = step / warmup for step < warmup, else 1 */
Test(lr_schedule, linear_warmup) {
    const rx_component *comp = &rx_comp_lr_schedule_linear_warmup;
    rx_params *p = sched_params(comp, "warmup_steps", "40", NULL, NULL);
    for (int64_t s = 0; s < 100; s++) {
        const double ref = 1e-3 * (s < 40 ? s / 40.0 : 1.0);
        cr_expect(fabs(lr_of(comp, p, 1e-3f, s, 100) - ref) <= 1e-7 * 1e-3, "step %lld", (long long)s);
    }
    cr_expect_eq(lr_of(comp, p, 1e-3f, 0, 100), 0.0f, "warmup starts at 0 (diffusers)");
    rx_params_free(p);
    p = sched_params(comp, "warmup_steps", "0", NULL, NULL);
    cr_expect_eq(lr_of(comp, p, 1e-3f, 0, 100), 1e-3f, "no warmup: constant");
    rx_params_free(p);
}

/* transformers get_cosine_with_min_lr_schedule_with_warmup (num_cycles 0.5):
 * lr = min + (base - min) * 0.5 * (1 + cos(pi * (s - w) / (T - w))) after warmup */
Test(lr_schedule, cosine_with_warmup_to_min_lr) {
    const rx_component *comp = &rx_comp_lr_schedule_cosine;
    const double base = 2e-3, mn = 1e-5;
    const int64_t w = 10, T = 110;
    rx_params *p = sched_params(comp, "warmup_steps", "10", "min_lr", "1e-5");
    for (int64_t s = 0; s <= T + 50; s++) {
        double ref;
        if (s < w) ref = base * (double)s / w;
        else {
            double prog = (double)(s - w) / (T - w);
            if (prog > 1) prog = 1;
            ref = mn + (base - mn) * 0.5 * (1 + cos(M_PI * prog));
        }
        const float got = lr_of(comp, p, (float)base, s, T);
        cr_expect(fabs(got - ref) <= 1e-6 * base, "step %lld: %.9g vs %.9g", (long long)s, got, ref);
    }
    cr_expect(fabs(lr_of(comp, p, (float)base, w, T) - base) < 1e-9, "peak right after warmup");
    cr_expect(fabs(lr_of(comp, p, (float)base, (w + T) / 2, T) - (mn + base) / 2) < 1e-9, "half-way: the mean");
    cr_expect(fabs(lr_of(comp, p, (float)base, T, T) - mn) < 1e-9, "ends at min_lr");
    cr_expect(fabs(lr_of(comp, p, (float)base, 10 * T, T) - mn) < 1e-9, "stays at min_lr past the end");
    rx_params_free(p);
}

// ---------------------------------------------------------------------------- EMA

Test(ema, follows_formula_after_start) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_paramset ps = {0}, ema = {0};
    rx_tensor *a = rx_param(c, "down.0.weight", RX_SHAPE(3, 4), 1), *b = rx_param(c, "down.0.bias", RX_SHAPE(3), 1);
    rx_paramset_add(&ps, a);
    rx_paramset_add(&ps, b);
    rx_test_randn(c, a, 1, 1.0f);
    rx_test_randn(c, b, 2, 1.0f);
    cr_assert_eq(rx_ema_create(c, &ps, &ema), RX_OK, "%s", rx_last_error());
    cr_expect_eq(ema.n, 2);
    cr_expect_str_eq(ema.t[0]->name, "down.0.weight");
    cr_expect(ema.t[0]->data != a->data && !ema.t[0]->requires_grad && ema.t[0]->is_param);
    const float d = 0.9f;
    const int64_t start = 3;
    float ref[12], got[12], p[12];
    rx_tensor_to_host(c, a, ref);   // created as a copy
    for (int64_t step = 1; step <= 6; step++) {
        rx_test_randn(c, a, 100 + step, 1.0f);   // the "optimizer" moved the weights
        rx_test_randn(c, b, 200 + step, 1.0f);
        rx_tensor_to_host(c, a, p);
        cr_assert_eq(rx_ema_update(c, &ema, &ps, d, start, step), RX_OK, "%s", rx_last_error());
        for (int i = 0; i < 12; i++) ref[i] = step < start ? p[i] : d * ref[i] + (1 - d) * p[i];
        rx_tensor_to_host(c, ema.t[0], got);
        cr_expect_lt(rx_rel_err(got, ref, 12), 1e-6, "step %lld", (long long)step);
    }
    rx_paramset other = {0};
    rx_paramset_add(&other, b);
    rx_paramset_add(&other, a);
    cr_expect_eq(rx_ema_update(c, &ema, &other, d, 0, 7), RX_ERR_ARG);
    cr_expect(strstr(rx_last_error(), "ema: tensor 0 is 'down.0.weight' [3,4], the parameter 'down.0.bias' [3]"), "%s",
              rx_last_error());
    rx_paramset_free(&other);
    rx_paramset_free(&ema);
    rx_paramset_free(&ps);
    rx_ctx_destroy(c);
}

/* The EMA fused into the optimizer's step (rx_adamw_attach_ema) against the separate update it
 * replaces: rx_adamw_step then rx_ema_update on a second copy of the same parameters. Both run
 * the CPU reference functions (cpu_adamw, cpu_ema) on the same floats: bit-identical. A frozen
 * parameter is followed by the EMA too (rx_ema_update covers every parameter). */
Test(ema, fused_into_the_optimizer_step_matches_the_separate_update) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_paramset ps[2] = {{0}}, ema[2] = {{0}};
    rx_adamw opt[2];
    const rx_adamw_config cfg = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.1f,
                                 .grad_clip = 0.5f};
    for (int r = 0; r < 2; r++) {
        rx_tensor *a = rx_param(c, "w", RX_SHAPE(70000), 1), *f = rx_param(c, "frozen", RX_SHAPE(5), 0);
        rx_test_randn(c, a, 1, 1.0f);
        rx_test_randn(c, f, 2, 1.0f);
        rx_paramset_add(&ps[r], a);
        rx_paramset_add(&ps[r], f);
        cr_assert_eq(rx_ema_create(c, &ps[r], &ema[r]), RX_OK, "%s", rx_last_error());
        cr_assert_eq(rx_adamw_init(c, &opt[r], &ps[r], &cfg), RX_OK, "%s", rx_last_error());
    }
    cr_assert_eq(rx_adamw_attach_ema(&opt[1], &ema[1], 0.95f, 3), RX_OK, "%s", rx_last_error());
    for (int step = 1; step <= 5; step++) {
        for (int r = 0; r < 2; r++) {
            rx_test_randn(c, ps[r].t[0]->grad, 10 + (uint64_t)step, 1.0f);   /* the same gradients */
            rx_test_randn(c, ps[r].t[1], 20 + (uint64_t)step, 1.0f);         /* something moved the frozen one */
        }
        cr_assert_eq(rx_adamw_step(c, &opt[0], 1e-2f, NULL), RX_OK, "%s", rx_last_error());
        cr_assert_eq(rx_ema_update(c, &ema[0], &ps[0], 0.95f, 3, opt[0].step), RX_OK, "%s", rx_last_error());
        cr_assert_eq(rx_adamw_step(c, &opt[1], 1e-2f, NULL), RX_OK, "%s", rx_last_error());
    }
    for (int k = 0; k < 2; k++) {
        const rx_tensor *t[2][2] = {{ps[0].t[k], ema[0].t[k]}, {ps[1].t[k], ema[1].t[k]}};
        for (int q = 0; q < 2; q++)
            cr_expect_eq(memcmp(t[0][q]->data, t[1][q]->data, (size_t)t[0][q]->numel * sizeof(float)), 0,
                         "tensor %d %s differs", k, q ? "ema" : "weights");
    }
    rx_paramset bad = {0};
    rx_paramset_add(&bad, ema[0].t[1]);
    rx_paramset_add(&bad, ema[0].t[0]);
    cr_expect_eq(rx_adamw_attach_ema(&opt[0], &bad, 0.9f, 0), RX_ERR_ARG, "an EMA that does not match is refused");
    rx_paramset_free(&bad);
    for (int r = 0; r < 2; r++) {
        rx_adamw_free(&opt[r]);
        rx_paramset_free(&ema[r]);
        rx_paramset_free(&ps[r]);
    }
    rx_ctx_destroy(c);
}
