#include "model.h"

rx_status rx_model_create(rx_ctx *c, const rx_component *comp, const rx_params *p, uint64_t seed, rx_model **out) {
    if (!comp || comp->kind != RX_KIND_MODEL) return rx_fail(RX_ERR_ARG, "model: not a model component");
    const rx_model_impl *impl = comp->impl;
    rx_model *m = NULL;
    RX_TRY(impl->create(c, p, seed, &m));
    m->impl = impl;
    *out = m;
    return RX_OK;
}

void rx_model_destroy(rx_model *m) {
    if (!m) return;
    if (m->impl && m->impl->destroy) m->impl->destroy(m);
    else free(m->priv);
    rx_paramset_free(&m->params);
    free(m);
}

void rx_model_freeze(rx_model *m) {
    for (int i = 0; i < m->params.n; i++) m->params.t[i]->requires_grad = 0;
}
