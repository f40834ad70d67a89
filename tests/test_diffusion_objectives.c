/* test_diffusion_objectives.c — training batches of the ddpm and flow_matching objectives.
 *
 * References: the forward-process formulas (Ho et al. 2020 eq. 4; v of Salimans & Ho 2022;
 * rectified flow x_t = (1-t) x0 + t eps), min-SNR-gamma as diffusers' train_text_to_image.py,
 * and the documented Philox layout (diffusion.h) to re-draw the same eps and t here. */
#include "test_diffusion_fixture.h"
#include "core/philox.h"
#include "registry/registry.h"

typedef struct {
    int n, d;
    float *x0, *xt, *t, *target, *w;
    int32_t *labels, *labels_out;
} batch;

static void batch_alloc(batch *b, int n, int d) {
    b->n = n;
    b->d = d;
    b->x0 = malloc(sizeof(float) * n * d);
    b->xt = malloc(sizeof(float) * n * d);
    b->target = malloc(sizeof(float) * n * d);
    b->t = malloc(sizeof(float) * n);
    b->w = malloc(sizeof(float) * n);
    b->labels = malloc(sizeof(int32_t) * n);
    b->labels_out = malloc(sizeof(int32_t) * n);
    for (int i = 0; i < n * d; i++) b->x0[i] = (float)sin(0.37 * i + 1.0);   // any data in [-1, 1]
    for (int i = 0; i < n; i++) b->labels[i] = i % 10;
}
static void batch_free(batch *b) {
    free(b->x0); free(b->xt); free(b->target); free(b->t); free(b->w); free(b->labels); free(b->labels_out);
}

static rx_status make(const rx_component *obj, const rx_params *op, const rx_schedule *s, uint64_t seed, int64_t step,
                      batch *b) {
    const rx_objective_impl *impl = obj->impl;
    return impl->make_batch(op, s, seed, step, 0, b->n, b->d, b->x0, b->labels, 10, b->xt, b->t, b->target, b->w,
                            b->labels_out);
}

static void schedule_of(const rx_component *c, const char *set_key, const char *set_val, rx_params **p, rx_schedule *s) {
    *p = fx_params(c);
    if (set_key) fx_set(*p, set_key, set_val);
    cr_assert(((const rx_schedule_impl *)c->impl)->build(*p, s) == RX_OK, "%s", rx_last_error());
}

// eps of example i, drawn as diffusion.h documents it
static void reference_eps(uint64_t seed, int64_t step, int i, int d, float *eps) {
    rx_rng_normal(seed, RX_STREAM(RX_RNG_TRAIN_NOISE, step), (uint64_t)i * ((d + 3) / 4), eps, d);
}

Test(diffusion_objectives, ddpm_xt_and_targets_follow_the_formulas) {
    rx_params *sp;
    rx_schedule s;
    schedule_of(&rx_comp_schedule_linear, NULL, NULL, &sp, &s);
    const char *preds[] = {"epsilon", "v_prediction", "sample"};
    for (int k = 0; k < 3; k++) {
        rx_params *op = fx_params(&rx_comp_objective_ddpm);
        fx_set(op, "prediction_type", preds[k]);
        cr_expect_eq(((const rx_objective_impl *)rx_comp_objective_ddpm.impl)->prediction_type(op), k);
        batch b;
        batch_alloc(&b, 64, 10);
        cr_assert(make(&rx_comp_objective_ddpm, op, &s, 42, 7, &b) == RX_OK, "%s", rx_last_error());
        double worst = 0;
        for (int i = 0; i < b.n; i++) {
            const int t = (int)b.t[i];
            cr_assert(b.t[i] == (float)t && t >= 0 && t < 1000, "t=%g", b.t[i]);
            float u[4];   // t = floor(u0 * T) from block i of RX_RNG_TRAIN_TIME
            rx_rng_uniform(42, RX_STREAM(RX_RNG_TRAIN_TIME, 7), (uint64_t)i, u, 4);
            cr_expect_eq(t, (int)(u[0] * 1000));
            cr_expect(b.w[i] == 1.0f, "no min-SNR: weight 1");
            float eps[10];
            reference_eps(42, 7, i, b.d, eps);
            const double sa = sqrt(s.alphas_cumprod[t]), sb = sqrt(1 - s.alphas_cumprod[t]);
            for (int j = 0; j < b.d; j++) {
                const double x0 = b.x0[i * b.d + j], e = eps[j];
                const double xt = sa * x0 + sb * e;                      // q(x_t | x_0)
                const double tg = k == 0 ? e : k == 1 ? sa * e - sb * x0 : x0;
                worst = fmax(worst, fabs(b.xt[i * b.d + j] - xt) + fabs(b.target[i * b.d + j] - tg));
                if (k == 1) {   // v round trip: x0 = sqrt(a) x_t - sqrt(1-a) v, eps = sqrt(a) v + sqrt(1-a) x_t
                    const double v = b.target[i * b.d + j], x = b.xt[i * b.d + j];
                    cr_expect(fabs(sa * x - sb * v - x0) < 1e-5, "v -> x0 at t=%d", t);
                    cr_expect(fabs(sa * v + sb * x - e) < 1e-5, "v -> eps at t=%d", t);
                }
            }
        }
        cr_expect(worst < 1e-6, "%s: max error %.3g", preds[k], worst);
        batch_free(&b);
        rx_params_free(op);
    }
    rx_schedule_free(&s);
    rx_params_free(sp);
}

// min-SNR-gamma (Hang et al. 2023) as diffusers' train_text_to_image.py: w = min(SNR, g) / SNR
// (epsilon), / (SNR + 1) (v), min(SNR, g) (sample); SNR = abar / (1 - abar). With zero terminal
// SNR the epsilon weight at SNR = 0 is its limit 1, not 0/0.
Test(diffusion_objectives, min_snr_gamma_weights) {
    const char *preds[] = {"epsilon", "v_prediction", "sample"};
    for (int zsnr = 0; zsnr < 2; zsnr++) {
        rx_params *sp;
        rx_schedule s;
        schedule_of(&rx_comp_schedule_linear, "rescale_betas_zero_snr", zsnr ? "true" : "false", &sp, &s);
        for (int k = 0; k < 3; k++) {
            rx_params *op = fx_params(&rx_comp_objective_ddpm);
            fx_set(op, "prediction_type", preds[k]);
            fx_set(op, "min_snr_gamma", "5");
            batch b;
            batch_alloc(&b, 2000, 1);
            cr_assert(make(&rx_comp_objective_ddpm, op, &s, 3, 1, &b) == RX_OK);
            int saw_small = 0, saw_large = 0;
            for (int i = 0; i < b.n; i++) {
                const double a = s.alphas_cumprod[(int)b.t[i]], snr = a / (1 - a), m = fmin(snr, 5.0);
                const double w = k == 0 ? (snr > 0 ? m / snr : 1.0) : k == 1 ? m / (snr + 1) : m;
                cr_assert(isfinite(b.w[i]));
                cr_expect(fabs(b.w[i] - w) <= 1e-6 * fmax(1, w), "%s t=%g: w %g vs %g", preds[k], b.t[i], b.w[i], w);
                saw_small |= snr < 5;
                saw_large |= snr > 5;
            }
            cr_expect(saw_small && saw_large, "both sides of gamma are drawn");
            batch_free(&b);
            rx_params_free(op);
        }
        rx_schedule_free(&s);
        rx_params_free(sp);
    }
}

Test(diffusion_objectives, label_dropout_rate) {
    rx_params *sp;
    rx_schedule s;
    schedule_of(&rx_comp_schedule_linear, NULL, NULL, &sp, &s);
    const char *ps[] = {"0", "0.1", "0.5", "1"};
    const double pv[] = {0, 0.1, 0.5, 1};
    for (int k = 0; k < 4; k++) {
        rx_params *op = fx_params(&rx_comp_objective_ddpm);
        fx_set(op, "p_uncond", ps[k]);
        batch b;
        batch_alloc(&b, 20000, 1);
        cr_assert(make(&rx_comp_objective_ddpm, op, &s, 9, 0, &b) == RX_OK);
        int dropped = 0;
        for (int i = 0; i < b.n; i++) {
            if (b.labels_out[i] == 10) dropped++;
            else cr_assert_eq(b.labels_out[i], b.labels[i], "kept labels are unchanged");
        }
        // binomial: 5 standard deviations (and exact at p = 0 and 1)
        const double frac = (double)dropped / b.n, sd = sqrt(pv[k] * (1 - pv[k]) / b.n);
        cr_expect(fabs(frac - pv[k]) <= 5 * sd, "p_uncond=%s: dropped %.4f", ps[k], frac);
        batch_free(&b);
        rx_params_free(op);
    }
    // unconditional: labels NULL leaves labels_out alone
    rx_params *op = fx_params(&rx_comp_objective_ddpm);
    batch b;
    batch_alloc(&b, 4, 3);
    const rx_objective_impl *impl = rx_comp_objective_ddpm.impl;
    cr_expect(impl->make_batch(op, &s, 1, 0, 0, 4, 3, b.x0, NULL, 0, b.xt, b.t, b.target, b.w, NULL) == RX_OK);
    b.labels[2] = 11;   // outside [0, num_classes]
    cr_expect_eq(make(&rx_comp_objective_ddpm, op, &s, 1, 0, &b), RX_ERR_ARG);
    batch_free(&b);
    rx_params_free(op);
    rx_schedule_free(&s);
    rx_params_free(sp);
}

Test(diffusion_objectives, same_seed_and_step_same_batch) {
    rx_params *sp;
    rx_schedule s;
    schedule_of(&rx_comp_schedule_linear, NULL, NULL, &sp, &s);
    rx_params *op = fx_params(&rx_comp_objective_ddpm);
    batch a, b, c, small;
    batch_alloc(&a, 16, 5);
    batch_alloc(&b, 16, 5);
    batch_alloc(&c, 16, 5);
    batch_alloc(&small, 8, 5);
    cr_assert(make(&rx_comp_objective_ddpm, op, &s, 5, 100, &a) == 0);
    cr_assert(make(&rx_comp_objective_ddpm, op, &s, 5, 100, &b) == 0);
    cr_assert(make(&rx_comp_objective_ddpm, op, &s, 5, 101, &c) == 0);
    cr_assert(make(&rx_comp_objective_ddpm, op, &s, 5, 100, &small) == 0);
    cr_expect(memcmp(a.xt, b.xt, sizeof(float) * 80) == 0 && memcmp(a.t, b.t, sizeof(float) * 16) == 0 &&
              memcmp(a.labels_out, b.labels_out, sizeof(int32_t) * 16) == 0, "same (seed, step): same batch");
    cr_expect(memcmp(a.t, c.t, sizeof(float) * 16) != 0 && memcmp(a.xt, c.xt, sizeof(float) * 80) != 0,
              "next step: new t and noise");
    cr_expect(memcmp(a.xt, small.xt, sizeof(float) * 40) == 0 && memcmp(a.t, small.t, sizeof(float) * 8) == 0,
              "example i does not depend on the batch size");
    batch_free(&a); batch_free(&b); batch_free(&c); batch_free(&small);
    rx_params_free(op);
    rx_schedule_free(&s);
    rx_params_free(sp);
}

Test(diffusion_objectives, flow_matching_formulas_and_time_sampling) {
    rx_params *sp;
    rx_schedule s;
    for (int shifted = 0; shifted < 2; shifted++) {
        schedule_of(&rx_comp_schedule_flow, "shift", shifted ? "3.0" : "1.0", &sp, &s);
        rx_params *op = fx_params(&rx_comp_objective_flow_matching);
        cr_expect_eq(((const rx_objective_impl *)rx_comp_objective_flow_matching.impl)->prediction_type(op), RX_PRED_FLOW);
        batch b;
        batch_alloc(&b, 256, 7);
        cr_assert(make(&rx_comp_objective_flow_matching, op, &s, 11, 3, &b) == RX_OK, "%s", rx_last_error());
        for (int i = 0; i < b.n; i++) {
            float u[4], eps[7];
            rx_rng_uniform(11, RX_STREAM(RX_RNG_TRAIN_TIME, 3), (uint64_t)i, u, 4);
            const double sig0 = u[0], sig = shifted ? 3 * sig0 / (1 + 2 * sig0) : sig0;   // shift(sigma)
            cr_expect(fabs(b.t[i] - sig * 1000) < 1e-3, "t = sigma*T: %g vs %g", b.t[i], sig * 1000);
            reference_eps(11, 3, i, 7, eps);
            for (int j = 0; j < 7; j++) {
                const double x0 = b.x0[i * 7 + j];
                cr_expect(fabs(b.xt[i * 7 + j] - ((1 - sig) * x0 + sig * eps[j])) < 1e-5);
                cr_expect(fabs(b.target[i * 7 + j] - (eps[j] - x0)) < 1e-6);
            }
            cr_expect(b.w[i] == 1.0f);
        }
        batch_free(&b);
        rx_params_free(op);
        rx_schedule_free(&s);
        rx_params_free(sp);
    }
    // logit-normal: logit(sigma) ~ N(m, s^2); 20000 draws, mean within 0.05, std within 5%
    schedule_of(&rx_comp_schedule_flow, NULL, NULL, &sp, &s);
    rx_params *op = fx_params(&rx_comp_objective_flow_matching);
    fx_set(op, "t_sampling", "logit_normal");
    fx_set(op, "logit_mean", "0.5");
    fx_set(op, "logit_std", "0.8");
    batch b;
    batch_alloc(&b, 20000, 1);
    cr_assert(make(&rx_comp_objective_flow_matching, op, &s, 2, 0, &b) == RX_OK);
    double m = 0, m2 = 0;
    for (int i = 0; i < b.n; i++) {
        double sg = b.t[i] / 1000.0, l = log(sg / (1 - sg));
        m += l;
        m2 += l * l;
    }
    m /= b.n;
    double sd = sqrt(m2 / b.n - m * m);
    cr_expect(fabs(m - 0.5) < 0.05 && fabs(sd - 0.8) < 0.04, "logit mean %.3f std %.3f", m, sd);
    batch_free(&b);
    // a flow objective on a beta schedule is a config error
    rx_params *lp;
    rx_schedule ls;
    schedule_of(&rx_comp_schedule_linear, NULL, NULL, &lp, &ls);
    batch_alloc(&b, 2, 2);
    cr_expect_eq(make(&rx_comp_objective_flow_matching, op, &ls, 2, 0, &b), RX_ERR_CONFIG);
    rx_params *dp = fx_params(&rx_comp_objective_ddpm);
    cr_expect_eq(make(&rx_comp_objective_ddpm, dp, &s, 2, 0, &b), RX_ERR_CONFIG);   // and the reverse
    rx_params_free(dp);
    batch_free(&b);
    rx_schedule_free(&ls);
    rx_params_free(lp);
    rx_params_free(op);
    rx_schedule_free(&s);
    rx_params_free(sp);
}

/* every registered objective declares what it trains (rx_objective_task, diffusion.h), and a
 * denoising one draws batches and names the network's prediction. Reference: the registry
 * table (ddpm and flow_matching denoise, classify classifies, vae trains an autoencoder). */
Test(diffusion_objectives, every_objective_declares_its_task) {
    int counts[3] = {0, 0, 0};
    for (int i = 0; rx_registry_components[i]; i++) {
        const rx_component *c = rx_registry_components[i];
        if (c->kind != RX_KIND_OBJECTIVE) continue;
        const rx_objective_impl *impl = c->impl;
        cr_assert_not_null(impl, "objective %s has no implementation", c->name);
        cr_assert(impl->task == RX_TASK_DENOISE || impl->task == RX_TASK_CLASSIFY || impl->task == RX_TASK_VAE,
                  "objective %s: task %d", c->name, (int)impl->task);
        counts[impl->task]++;
        if (impl->task == RX_TASK_DENOISE)
            cr_expect(impl->make_batch && impl->prediction_type, "denoising objective %s without batches", c->name);
        cr_expect_eq(impl->task == RX_TASK_CLASSIFY, !strcmp(c->name, "classify"), "objective %s", c->name);
        cr_expect_eq(impl->task == RX_TASK_VAE, !strcmp(c->name, "vae"), "objective %s", c->name);
    }
    cr_expect_eq(counts[RX_TASK_DENOISE], 2);
    cr_expect_eq(counts[RX_TASK_CLASSIFY], 1);
    cr_expect_eq(counts[RX_TASK_VAE], 1);
}

// Data-parallel shards (dist/dist.h): rank r's make_batch over rows [first, first + n) of the
// step's global batch must draw what the single process draws for those rows. Reference: the
// whole batch made in one call; the two halves, made with first = 0 and first = n/2, equal it
// bit for bit (x_t, t, target, weight and the dropped labels).
Test(diffusion_objectives, a_shard_draws_its_rows_of_the_global_batch) {
    const rx_component *objs[] = {&rx_comp_objective_ddpm, &rx_comp_objective_flow_matching};
    const rx_component *scheds[] = {&rx_comp_schedule_linear, &rx_comp_schedule_flow};
    for (int k = 0; k < 2; k++) {
        rx_params *sp;
        rx_schedule s;
        schedule_of(scheds[k], NULL, NULL, &sp, &s);
        rx_params *op = fx_params(objs[k]);
        fx_set(op, "p_uncond", "0.5");
        const rx_objective_impl *impl = objs[k]->impl;
        batch whole, half[2];
        batch_alloc(&whole, 8, 10);
        for (int h = 0; h < 2; h++) batch_alloc(&half[h], 4, 10);
        cr_assert(make(objs[k], op, &s, 5, 3, &whole) == RX_OK, "%s", rx_last_error());
        for (int h = 0; h < 2; h++) {
            batch *b = &half[h];
            memcpy(b->x0, whole.x0 + h * 4 * 10, sizeof(float) * 40);
            memcpy(b->labels, whole.labels + h * 4, sizeof(int32_t) * 4);
            cr_assert(impl->make_batch(op, &s, 5, 3, h * 4, 4, 10, b->x0, b->labels, 10, b->xt, b->t, b->target, b->w,
                                       b->labels_out) == RX_OK, "%s", rx_last_error());
            cr_expect_eq(memcmp(b->xt, whole.xt + h * 40, sizeof(float) * 40), 0, "%s: x_t of half %d", objs[k]->name, h);
            cr_expect_eq(memcmp(b->target, whole.target + h * 40, sizeof(float) * 40), 0, "%s: target of half %d",
                         objs[k]->name, h);
            cr_expect_eq(memcmp(b->t, whole.t + h * 4, sizeof(float) * 4), 0, "%s: t of half %d", objs[k]->name, h);
            cr_expect_eq(memcmp(b->w, whole.w + h * 4, sizeof(float) * 4), 0, "%s: weight of half %d", objs[k]->name, h);
            cr_expect_eq(memcmp(b->labels_out, whole.labels_out + h * 4, sizeof(int32_t) * 4), 0,
                         "%s: dropped labels of half %d", objs[k]->name, h);
        }
        int dropped = 0;   // p_uncond 0.5 on 8 labels: the label drop is exercised (all-kept would pass vacuously)
        for (int i = 0; i < 8; i++) dropped += whole.labels_out[i] == 10;
        cr_expect(dropped > 0 && dropped < 8, "%s: %d of 8 labels dropped", objs[k]->name, dropped);
        batch_free(&whole);
        for (int h = 0; h < 2; h++) batch_free(&half[h]);
        rx_params_free(op);
        rx_params_free(sp);
        rx_schedule_free(&s);
    }
}
