/* optim.c — AdamW over a parameter set (torch.optim.AdamW) with global-norm gradient
 * clipping (torch.nn.utils.clip_grad_norm_) and an optional EMA, and the `optimizer: adamw`
 * component.
 *
 * A step is the backend's multi-tensor update (c->be->adamw_multi, see backend.h): one
 * table of chunks covers every parameter; the gradient norm, the clip factor and the
 * non-finite check are computed and kept on the device, so queuing a step never waits for
 * it (rx_adamw_queue) and the host reads the norm only when it logs (rx_adamw_read).
 * Clipping does not touch the gradients: its factor multiplies g first inside the update,
 * exactly as torch's in-place grad.mul_(clip_coef) would. */
#include "core/component.h"
#include "autograd/optim.h"
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int trainable(const rx_tensor *t) { return t->requires_grad && t->grad; }

rx_status rx_adamw_init(rx_ctx *c, rx_adamw *opt, const rx_paramset *params, const rx_adamw_config *cfg) {
    const rx_adamw_config *k = cfg;
    if (!(k->lr >= 0) || !(k->beta1 >= 0 && k->beta1 < 1) || !(k->beta2 >= 0 && k->beta2 < 1) || !(k->eps > 0) ||
        !(k->weight_decay >= 0) || isnan(k->grad_clip))
        return rx_fail(RX_ERR_ARG, "adamw: lr %g, betas (%g, %g), eps %g, weight_decay %g: need lr >= 0, "
                       "0 <= beta < 1, eps > 0, weight_decay >= 0", k->lr, k->beta1, k->beta2, k->eps, k->weight_decay);
    *opt = (rx_adamw){.cfg = *cfg, .params = params};
    for (int i = 0; i < params->n; i++) {
        rx_tensor *p = params->t[i];
        if (!trainable(p)) continue;
        // moments start at zero (rx_param zero-fills) and are named like their parameter
        rx_tensor *m = rx_param(c, p->name, p->ndim, p->shape, 0), *v = rx_param(c, p->name, p->ndim, p->shape, 0);
        if (!m || !v) { rx_adamw_free(opt); return rx_ctx_status(c); }
        rx_status s = rx_paramset_add(&opt->m, m);
        if (s == RX_OK) s = rx_paramset_add(&opt->v, v);
        if (s != RX_OK) { rx_adamw_free(opt); return s; }
    }
    return RX_OK;
}

void rx_adamw_free(rx_adamw *opt) {
    rx_paramset_free(&opt->m);
    rx_paramset_free(&opt->v);
    free(opt->mt_host);
    opt->mt_host = NULL;
    opt->mt_n = 0;
    opt->mt_table = opt->mt_scalars = NULL;   /* arena-owned */
}

rx_status rx_grad_norm(rx_ctx *c, const rx_paramset *ps, double *norm) {
    double total = 0;
    for (int i = 0; i < ps->n; i++) {
        const rx_tensor *p = ps->t[i];
        if (!trainable(p)) continue;
        double s = 0;
        RX_TRY(c->be->sumsq(c, p->grad->data, p->numel, &s));
        total += s;
    }
    *norm = sqrt(total);
    return RX_OK;
}

float rx_clip_scale(double norm, float max_norm) { return rx_clip_factor(norm, max_norm); }

rx_status rx_adamw_attach_ema(rx_adamw *opt, const rx_paramset *ema, float decay, int64_t ema_start) {
    if (!(decay >= 0.0f && decay <= 1.0f)) return rx_fail(RX_ERR_ARG, "ema: decay %g outside [0, 1]", decay);
    const rx_paramset *ps = opt->params;
    if (ema->n != ps->n) return rx_fail(RX_ERR_ARG, "ema: %d EMA tensors for %d parameters", ema->n, ps->n);
    for (int i = 0; i < ps->n; i++) {
        const rx_tensor *e = ema->t[i], *p = ps->t[i];
        const int same_name = (!e->name && !p->name) || (e->name && p->name && strcmp(e->name, p->name) == 0);
        if (!same_name || !rx_same_shape(e, p))
            return rx_fail(RX_ERR_ARG, "ema: tensor %d is '%s' %s, the parameter '%s' %s", i, e->name ? e->name : "?",
                           RX_SHAPE_STR(e), p->name ? p->name : "?", RX_SHAPE_STR(p));
    }
    opt->ema = ema;
    opt->ema_decay = decay;
    opt->ema_start = ema_start;
    free(opt->mt_host);   /* the table gains the EMA pointers on the next step */
    opt->mt_host = NULL;
    return RX_OK;
}

/* The chunk table (backend.h): every parameter cut into pieces of at most RX_MT_CHUNK
 * elements, in parameter order; trained ones with their gradient and moments, the others
 * only when an EMA follows them. Uploaded once into the persistent arena: the pointers are
 * those of persistent tensors, fixed for the run. */
static rx_status mt_build(rx_ctx *c, rx_adamw *opt) {
    const rx_paramset *ps = opt->params;
    int n = 0, k = 0;
    for (int i = 0; i < ps->n; i++)
        if (trainable(ps->t[i]) || opt->ema) n += (int)((ps->t[i]->numel + RX_MT_CHUNK - 1) / RX_MT_CHUNK);
    rx_mt_chunk *tab = calloc(n > 0 ? (size_t)n : 1, sizeof *tab);
    if (!tab) return rx_fail(RX_ERR_OOM, "adamw: out of memory for a %d-chunk table", n);
    int at = 0;
    for (int i = 0; i < ps->n; i++) {
        rx_tensor *p = ps->t[i];
        const int train = trainable(p);
        if (!train && !opt->ema) continue;
        if (train && (k >= opt->m.n || opt->m.t[k]->numel != p->numel)) {
            free(tab);
            return rx_fail(RX_ERR_ARG, "adamw: parameter '%s' %s has no optimizer state (trainable set changed after init)",
                           p->name ? p->name : "?", RX_SHAPE_STR(p));
        }
        for (int64_t off = 0; off < p->numel; off += RX_MT_CHUNK) {
            rx_mt_chunk *ch = &tab[at++];
            ch->n = p->numel - off < RX_MT_CHUNK ? p->numel - off : RX_MT_CHUNK;
            ch->p = p->data + off;
            ch->ema = opt->ema ? opt->ema->t[i]->data + off : NULL;
            if (train) {
                ch->g = p->grad->data + off;
                ch->m = opt->m.t[k]->data + off;
                ch->v = opt->v.t[k]->data + off;
            }
        }
        k += train;
    }
    if (k != opt->m.n) {
        free(tab);
        return rx_fail(RX_ERR_ARG, "adamw: %d trainable parameters, optimizer state for %d (trainable set changed after init)",
                       k, opt->m.n);
    }
    /* the table and the scalars as float tensors (the arena's unit), 64-byte aligned */
    int64_t tab_floats = ((int64_t)n * (int64_t)sizeof *tab + 3) / 4, sc_floats = 16;
    if (tab_floats < 1) tab_floats = 1;
    _Static_assert(sizeof(rx_mt_scalars) <= 16 * sizeof(float), "rx_mt_scalars outgrew its tensor");
    if (!opt->mt_table || opt->mt_table->numel < tab_floats) opt->mt_table = rx_param(c, NULL, 1, &tab_floats, 0);
    if (!opt->mt_scalars) opt->mt_scalars = rx_param(c, NULL, 1, &sc_floats, 0);   /* zero: no bad step yet */
    rx_status s = opt->mt_table && opt->mt_scalars ? RX_OK : rx_ctx_status(c);
    if (!s && n) s = c->mem->to_device(c, opt->mt_table->data, tab, (size_t)n * sizeof *tab);
    if (s) { free(tab); return s; }
    free(opt->mt_host);
    opt->mt_host = tab;
    opt->mt_n = n;
    return RX_OK;
}

rx_status rx_adamw_prepare(rx_ctx *c, rx_adamw *opt, float lr) {
    if (!(lr >= 0) || isinf(lr)) return rx_fail(RX_ERR_ARG, "adamw: learning rate %g at step %lld", lr, (long long)opt->step + 1);
    if (!opt->mt_host) RX_TRY(mt_build(c, opt));
    const int64_t t = opt->step + 1;
    /* the inputs: the leading fields of rx_mt_scalars; the outputs after them stay on the device */
    const rx_mt_scalars in = {.step = t, .lr = lr, .ema_decay = t < opt->ema_start ? 0.0f : opt->ema_decay};
    RX_TRY(c->mem->to_device(c, opt->mt_scalars->data, &in, offsetof(rx_mt_scalars, grad_sumsq)));
    opt->step = t;
    return RX_OK;
}

rx_status rx_adamw_apply(rx_ctx *c, rx_adamw *opt) {
    if (!opt->mt_host) return rx_fail(RX_ERR_ARG, "adamw: apply before the first prepare");
    const rx_mt_args a = {.beta1 = opt->cfg.beta1, .beta2 = opt->cfg.beta2, .eps = opt->cfg.eps,
                          .weight_decay = opt->cfg.weight_decay, .max_norm = opt->cfg.grad_clip,
                          .table = (const rx_mt_chunk *)opt->mt_table->data, .host_table = opt->mt_host,
                          .n_chunks = opt->mt_n, .scalars = (rx_mt_scalars *)opt->mt_scalars->data};
    return c->be->adamw_multi(c, &a);
}

rx_status rx_adamw_queue(rx_ctx *c, rx_adamw *opt, float lr) {
    RX_TRY(rx_adamw_prepare(c, opt, lr));
    return rx_adamw_apply(c, opt);
}

rx_status rx_adamw_read(rx_ctx *c, rx_adamw *opt, rx_optim_stats *stats) {
    if (!opt->mt_scalars) {   /* no step yet */
        if (stats) *stats = (rx_optim_stats){.grad_norm = 0, .clip_scale = 1, .lr = 0};
        return RX_OK;
    }
    rx_mt_scalars sc;
    RX_TRY(c->mem->to_host(c, &sc, opt->mt_scalars->data, sizeof sc));
    if (sc.first_bad_step)
        return rx_fail(RX_ERR_NUMERIC, "adamw: gradient norm is %g at step %lld (a NaN/Inf in the backward pass); "
                       "parameters not updated", sc.first_bad_step == sc.step ? sqrt(sc.grad_sumsq) : NAN,
                       (long long)sc.first_bad_step);
    if (stats) *stats = (rx_optim_stats){.grad_norm = sqrt(sc.grad_sumsq), .clip_scale = sc.clip_scale, .lr = sc.lr};
    return RX_OK;
}

/* All or nothing: a step with a non-finite gradient norm did not happen (step count and
 * the device's record of it are put back), so the caller may go on with other gradients. */
rx_status rx_adamw_step(rx_ctx *c, rx_adamw *opt, float lr, rx_optim_stats *stats) {
    RX_TRY(rx_adamw_queue(c, opt, lr));
    rx_status s = rx_adamw_read(c, opt, stats);
    if (s == RX_ERR_NUMERIC) {
        opt->step--;
        const int64_t none = 0;
        rx_status r = c->mem->to_device(c, (char *)opt->mt_scalars->data + offsetof(rx_mt_scalars, first_bad_step),
                                        &none, sizeof none);
        if (r) return r;
    }
    return s;
}

// ---------------------------------------------------------------------------- component

const rx_param_spec rx_adamw_params[] = {
    {"lr", RX_P_FLOAT, "1e-4", 0, 10, NULL, "base learning rate (the lr_schedule scales it)"},
    {"beta1", RX_P_FLOAT, "0.9", 0, 0.999999, NULL, "decay of the first moment (torch betas[0])"},
    {"beta2", RX_P_FLOAT, "0.999", 0, 0.999999999, NULL, "decay of the second moment (torch betas[1])"},
    {"eps", RX_P_FLOAT, "1e-8", 1e-30, 1, NULL, "added to sqrt(v_hat) in the denominator"},
    {"weight_decay", RX_P_FLOAT, "0.01", 0, 10, NULL, "decoupled weight decay: p -= lr * weight_decay * p (torch default 0.01)"},
    {"grad_clip", RX_P_FLOAT, "1.0", 0, 1e30, NULL,
     "clip the global gradient L2 norm to this (clip_grad_norm_); 0 = no clipping"},
    {0},
};

rx_status rx_adamw_config_from_params(const rx_params *p, rx_adamw_config *cfg) {
    *cfg = (rx_adamw_config){
        .lr = (float)rx_param_float(p, "lr"),
        .beta1 = (float)rx_param_float(p, "beta1"),
        .beta2 = (float)rx_param_float(p, "beta2"),
        .eps = (float)rx_param_float(p, "eps"),
        .weight_decay = (float)rx_param_float(p, "weight_decay"),
        .grad_clip = (float)rx_param_float(p, "grad_clip"),
    };
    if (!(cfg->beta1 < 1.0f && cfg->beta2 < 1.0f))   // 0.9999999 rounds to 1.0f: v would never move
        return rx_fail(RX_ERR_CONFIG, "optimizer/adamw: beta1 %g, beta2 %g round to 1 in float32", rx_param_float(p, "beta1"),
                       rx_param_float(p, "beta2"));
    return RX_OK;
}

static rx_status adamw_create(rx_ctx *c, const rx_params *p, const rx_paramset *params, rx_adamw *opt) {
    rx_adamw_config cfg;
    RX_TRY(rx_adamw_config_from_params(p, &cfg));
    return rx_adamw_init(c, opt, params, &cfg);
}

static const rx_optimizer_impl adamw_impl = {adamw_create};

const rx_component rx_comp_optimizer_adamw = {
    RX_KIND_OPTIMIZER, "adamw",
    "AdamW (Loshchilov & Hutter 2019; torch.optim.AdamW semantics) with global-norm gradient clipping",
    rx_adamw_params, &adamw_impl, NULL,
};
