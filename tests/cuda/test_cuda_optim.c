/* test_cuda_optim.c — the multi-tensor AdamW + EMA step (backend.h adamw_multi; cuda/optim.cu)
 * against the CPU backend's (backend_cpu.c: the per-tensor reference functions applied chunk
 * by chunk, themselves checked against torch.optim.AdamW in tests/test_optim.c).
 * Reference: the CPU backend on the same parameters and gradients; ≤ 1e-6 relative (the two
 * backends' Σ g² differ in summation order, powf may differ by an ulp). */
#include "cuda_parity.h"
#include "autograd/optim.h"

/* ragged sizes: one element, chunk edges (RX_MT_CHUNK = 65536) on both sides, several chunks */
static const int64_t SIZES[] = {1, 3, 65535, 65536, 65537, 200003, 7, 131072};
enum { NT = sizeof SIZES / sizeof SIZES[0], STEPS = 5, FROZEN = 6 };   /* tensor 6 does not train */

typedef struct {
    rx_paramset ps, ema;
    rx_adamw opt;
} mt_model;

static void fill_normal(rx_ctx *c, rx_tensor *t, uint64_t seed, float scale) {
    float *h = malloc((size_t)t->numel * sizeof *h);
    cr_assert(h);
    rx_rng_normal(seed, RX_STREAM(RX_RNG_TEST, 11), 0, h, t->numel);
    for (int64_t i = 0; i < t->numel; i++) h[i] *= scale;
    cr_assert_eq(rx_tensor_from_host(c, t, h), RX_OK, "%s", rx_last_error());
    free(h);
}

static void model_open(rx_ctx *c, mt_model *m, float max_norm) {
    memset(m, 0, sizeof *m);
    for (int k = 0; k < NT; k++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", k);
        rx_tensor *p = rx_param(c, name, 1, &SIZES[k], k != FROZEN);
        cr_assert(p, "%s", rx_last_error());
        fill_normal(c, p, 100 + (uint64_t)k, 0.5f);
        cr_assert_eq(rx_paramset_add(&m->ps, p), RX_OK);
    }
    cr_assert_eq(rx_ema_create(c, &m->ps, &m->ema), RX_OK, "%s", rx_last_error());
    rx_adamw_config cfg = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.05f,
                           .grad_clip = max_norm};
    cr_assert_eq(rx_adamw_init(c, &m->opt, &m->ps, &cfg), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_adamw_attach_ema(&m->opt, &m->ema, 0.9f, 3), RX_OK, "%s", rx_last_error());
}

/* step t's gradients: N(0, 1), except step 2's are tiny (1e-3: no clipping there) */
static void set_grads(rx_ctx *c, mt_model *m, int t) {
    for (int k = 0; k < NT; k++)
        if (k != FROZEN) fill_normal(c, m->ps.t[k]->grad, 1000 + 10 * (uint64_t)t + (uint64_t)k, t == 2 ? 1e-3f : 1.0f);
}

/* params, exp_avg, exp_avg_sq and EMA of every tensor, concatenated */
static float *state_of(rx_ctx *c, mt_model *m, int64_t *n_out) {
    int64_t n = 0;
    for (int k = 0; k < NT; k++) n += 4 * SIZES[k];
    float *h = malloc((size_t)n * sizeof *h), *at = h;
    cr_assert(h);
    for (int k = 0, j = 0; k < NT; k++) {
        const rx_tensor *t[4] = {m->ps.t[k], k != FROZEN ? m->opt.m.t[j] : NULL, k != FROZEN ? m->opt.v.t[j] : NULL,
                                 m->ema.t[k]};
        for (int q = 0; q < 4; q++, at += SIZES[k]) {
            if (t[q]) cr_assert_eq(rx_tensor_to_host(c, t[q], at), RX_OK, "%s", rx_last_error());
            else memset(at, 0, (size_t)SIZES[k] * sizeof(float));
        }
        j += k != FROZEN;
    }
    *n_out = n;
    return h;
}

static void model_close(mt_model *m) {
    rx_adamw_free(&m->opt);
    rx_paramset_free(&m->ps);
    rx_paramset_free(&m->ema);
}

static void parity_case(float max_norm) {
    px_pair p;
    px_open(&p, 0, 0);
    float *res[2];
    int64_t n = 0;
    rx_optim_stats st[2][STEPS];
    for (int b = 0; b < 2; b++) {
        rx_ctx *c = b ? p.gpu : p.cpu;
        mt_model m;
        model_open(c, &m, max_norm);
        for (int t = 1; t <= STEPS; t++) {
            set_grads(c, &m, t);
            cr_assert_eq(rx_adamw_queue(c, &m.opt, 1e-2f * (float)t), RX_OK, "%s", rx_last_error());
            cr_assert_eq(rx_adamw_read(c, &m.opt, &st[b][t - 1]), RX_OK, "%s", rx_last_error());
        }
        cr_expect_eq(m.opt.step, STEPS);
        res[b] = state_of(c, &m, &n);
        model_close(&m);
    }
    cr_expect_leq(rx_rel_err(res[1], res[0], n), 1e-6, "params, moments, EMA: relative error %.3g",
                  rx_rel_err(res[1], res[0], n));
    int clipped = 0;
    for (int t = 0; t < STEPS; t++) {
        cr_expect_leq(fabs(st[1][t].grad_norm - st[0][t].grad_norm) / st[0][t].grad_norm, 1e-12,
                      "step %d grad norm: cuda %.17g cpu %.17g", t + 1, st[1][t].grad_norm, st[0][t].grad_norm);
        cr_expect_leq(fabsf(st[1][t].clip_scale - st[0][t].clip_scale), 1e-7f * st[0][t].clip_scale, "step %d clip", t + 1);
        cr_expect_eq(st[1][t].lr, 1e-2f * (float)(t + 1));
        /* the factor itself is torch's formula on the norm (clip_grad_norm_) */
        cr_expect_eq(st[0][t].clip_scale, rx_clip_scale(st[0][t].grad_norm, max_norm));
        clipped += st[0][t].clip_scale < 1.0f;
    }
    if (max_norm > 0) cr_expect_eq(clipped, STEPS - 1, "every step but the tiny one clips (max_norm %g)", max_norm);
    else cr_expect_eq(clipped, 0);
    free(res[0]); free(res[1]);
    px_close(&p);
}

Test(cuda_optim, multi_tensor_adamw_ema_match_the_cpu_clipped) { parity_case(1.0f); }
Test(cuda_optim, multi_tensor_adamw_ema_match_the_cpu_unclipped) { parity_case(0.0f); }

/* A NaN gradient: on both backends nothing is updated at that step or after it, and the read
 * names the first bad step (the queue itself never waits, so it cannot fail there). */
Test(cuda_optim, nonfinite_gradient_skips_the_update_and_is_reported) {
    px_pair p;
    px_open(&p, 0, 0);
    for (int b = 0; b < 2; b++) {
        rx_ctx *c = b ? p.gpu : p.cpu;
        mt_model m;
        model_open(c, &m, 1.0f);
        set_grads(c, &m, 1);
        cr_assert_eq(rx_adamw_queue(c, &m.opt, 1e-2f), RX_OK, "%s", rx_last_error());
        int64_t n;
        float *before = state_of(c, &m, &n);
        const float nan = NAN;
        cr_assert_eq(c->mem->to_device(c, m.ps.t[5]->grad->data + 70000, &nan, sizeof nan), RX_OK);
        cr_assert_eq(rx_adamw_queue(c, &m.opt, 1e-2f), RX_OK, "%s", rx_last_error());
        cr_assert_eq(rx_adamw_queue(c, &m.opt, 1e-2f), RX_OK, "%s", rx_last_error());
        cr_expect_eq(rx_adamw_read(c, &m.opt, NULL), RX_ERR_NUMERIC, "%s", b ? "cuda" : "cpu");
        cr_expect(strstr(rx_last_error(), "at step 2"), "%s", rx_last_error());
        float *after = state_of(c, &m, &n);
        cr_expect_eq(memcmp(before, after, (size_t)n * sizeof(float)), 0, "%s: nothing updated", b ? "cuda" : "cpu");
        free(before); free(after);
        model_close(&m);
    }
    px_close(&p);
}
