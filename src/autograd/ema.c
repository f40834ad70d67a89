/* ema.c — exponential moving average of the weights, in a parallel parameter set with
 * the same names (so a checkpoint stores it as its own group and sampling can swap it in).
 * The update is the backend's fused e = d e + (1 - d) p. */
#include "autograd/optim.h"
#include <string.h>

rx_status rx_ema_create(rx_ctx *c, const rx_paramset *params, rx_paramset *ema) {
    if (ema->n != 0) return rx_fail(RX_ERR_ARG, "ema: the target set already holds %d tensors", ema->n);
    for (int i = 0; i < params->n; i++) {
        const rx_tensor *p = params->t[i];
        rx_tensor *e = rx_param(c, p->name, p->ndim, p->shape, 0);
        if (!e) return rx_ctx_status(c);
        RX_TRY(rx_tensor_copy(c, e, p));
        RX_TRY(rx_paramset_add(ema, e));
    }
    return RX_OK;
}

rx_status rx_ema_update(rx_ctx *c, const rx_paramset *ema, const rx_paramset *params, float decay,
                        int64_t ema_start, int64_t step) {
    if (!(decay >= 0.0f && decay <= 1.0f)) return rx_fail(RX_ERR_ARG, "ema: decay %g outside [0, 1]", decay);
    if (ema->n != params->n)
        return rx_fail(RX_ERR_ARG, "ema: %d EMA tensors for %d parameters", ema->n, params->n);
    for (int i = 0; i < params->n; i++) {
        rx_tensor *e = ema->t[i];
        const rx_tensor *p = params->t[i];
        const int same_name = (!e->name && !p->name) || (e->name && p->name && strcmp(e->name, p->name) == 0);
        if (!same_name || !rx_same_shape(e, p))
            return rx_fail(RX_ERR_ARG, "ema: tensor %d is '%s' %s, the parameter '%s' %s", i, e->name ? e->name : "?",
                           RX_SHAPE_STR(e), p->name ? p->name : "?", RX_SHAPE_STR(p));
        if (step < ema_start) RX_TRY(rx_tensor_copy(c, e, p));   // before the start the EMA follows the weights
        else RX_TRY(c->be->ema(c, e->data, p->data, decay, p->numel));
    }
    return RX_OK;
}
