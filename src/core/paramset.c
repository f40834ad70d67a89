#include "paramset.h"
#include <string.h>

rx_status rx_paramset_add(rx_paramset *ps, rx_tensor *t) {
    if (!t) return rx_fail(RX_ERR_ARG, "paramset: NULL tensor");
    if (ps->n == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 64;
        rx_tensor **nt = realloc(ps->t, cap * sizeof *nt);
        if (!nt) return rx_fail(RX_ERR_OOM, "paramset: out of memory");
        ps->t = nt;
        ps->cap = cap;
    }
    ps->t[ps->n++] = t;
    return RX_OK;
}

rx_tensor *rx_paramset_find(const rx_paramset *ps, const char *name) {
    for (int i = 0; i < ps->n; i++)
        if (ps->t[i]->name && strcmp(ps->t[i]->name, name) == 0) return ps->t[i];
    return NULL;
}

int64_t rx_paramset_numel(const rx_paramset *ps) {
    int64_t n = 0;
    for (int i = 0; i < ps->n; i++) n += ps->t[i]->numel;
    return n;
}

void rx_paramset_free(rx_paramset *ps) {
    free(ps->t);
    ps->t = NULL;
    ps->n = ps->cap = 0;
}

rx_status rx_paramset_zero_grad(rx_ctx *c, const rx_paramset *ps) {
    for (int i = 0; i < ps->n; i++)
        if (ps->t[i]->grad) RX_TRY(c->mem->fill(c, ps->t[i]->grad->data, 0.0f, ps->t[i]->numel));
    return RX_OK;
}
