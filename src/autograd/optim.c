/* optim.c — AdamW over a parameter set (torch.optim.AdamW) with global-norm gradient
 * clipping (torch.nn.utils.clip_grad_norm_), and the `optimizer: adamw` component.
 *
 * The update of one tensor is the backend's fused kernel (c->be->adamw, see backend.h);
 * clipping does not touch the gradients: its factor enters that kernel as grad_scale,
 * which multiplies g first, exactly as torch's in-place grad.mul_(clip_coef) would. */
#include "core/component.h"
#include "autograd/optim.h"
#include <math.h>
#include <stdio.h>

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

float rx_clip_scale(double norm, float max_norm) {
    if (!(max_norm > 0)) return 1.0f;
    const double coef = max_norm / (norm + 1e-6);   // torch: clip_coef = max_norm / (total_norm + 1e-6)
    return coef < 1.0 ? (float)coef : 1.0f;         // clamped to 1: never scaled up
}

rx_status rx_adamw_step(rx_ctx *c, rx_adamw *opt, float lr, rx_optim_stats *stats) {
    if (!(lr >= 0) || isinf(lr)) return rx_fail(RX_ERR_ARG, "adamw: learning rate %g at step %lld", lr, (long long)opt->step + 1);
    double norm = 0;
    RX_TRY(rx_grad_norm(c, opt->params, &norm));
    if (!isfinite(norm))
        return rx_fail(RX_ERR_NUMERIC, "adamw: gradient norm is %g at step %lld (a NaN/Inf in the backward pass); "
                       "parameters not updated", norm, (long long)opt->step + 1);
    const float scale = rx_clip_scale(norm, opt->cfg.grad_clip);
    const rx_adamw_args a = {.lr = lr, .beta1 = opt->cfg.beta1, .beta2 = opt->cfg.beta2, .eps = opt->cfg.eps,
                             .weight_decay = opt->cfg.weight_decay, .grad_scale = scale, .step = opt->step + 1};
    int k = 0;   // index into m, v: one entry per trainable parameter, in order
    for (int i = 0; i < opt->params->n; i++) {
        rx_tensor *p = opt->params->t[i];
        if (!trainable(p)) continue;
        if (k >= opt->m.n || opt->m.t[k]->numel != p->numel)
            return rx_fail(RX_ERR_ARG, "adamw: parameter '%s' %s has no optimizer state (trainable set changed after init)",
                           p->name ? p->name : "?", RX_SHAPE_STR(p));
        RX_TRY(c->be->adamw(c, p->data, p->grad->data, opt->m.t[k]->data, opt->v.t[k]->data, p->numel, &a));
        k++;
    }
    opt->step++;
    if (stats) *stats = (rx_optim_stats){.grad_norm = norm, .clip_scale = scale, .lr = lr};
    return RX_OK;
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
