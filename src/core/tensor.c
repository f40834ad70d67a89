#include "tensor.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

rx_tensor *rx_ctx_fail(rx_ctx *c, rx_status code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->err == RX_OK) {           /* keep the first error: later ones are consequences */
        c->err = code;
        rx_fail(code, "%s", msg);
    }
    return NULL;
}

void rx_ctx_clear_error(rx_ctx *c) { c->err = RX_OK; }

void rx_step_end(rx_ctx *c) {
    c->tape = NULL;
    c->n_nodes = 0;
    c->rng_calls = 0;
    rx_arena_reset(c->step);
}

void rx_set_grad_enabled(rx_ctx *c, int on) { c->grad_enabled = on; }

int64_t rx_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

static rx_tensor *tensor_in(rx_ctx *c, rx_arena *a, int ndim, const int64_t *shape) {
    if (c->err) return NULL;
    if (ndim < 1 || ndim > RX_MAX_DIMS) return rx_ctx_fail(c, RX_ERR_SHAPE, "tensor: %d dims (1..%d allowed)", ndim, RX_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) return rx_ctx_fail(c, RX_ERR_SHAPE, "tensor: negative dimension %lld", (long long)shape[i]);
    rx_tensor *t = rx_arena_meta(a, sizeof *t);
    if (!t) return rx_ctx_fail(c, RX_ERR_OOM, "%s", rx_last_error());
    t->ndim = ndim;
    memcpy(t->shape, shape, ndim * sizeof *shape);
    t->numel = rx_numel(ndim, shape);
    t->device = c->mem->device;
    t->data = rx_arena_data(a, (size_t)t->numel * sizeof(float));
    if (!t->data) return rx_ctx_fail(c, RX_ERR_OOM, "%s", rx_last_error());
    return t;
}

rx_tensor *rx_empty(rx_ctx *c, int ndim, const int64_t *shape) { return tensor_in(c, c->step, ndim, shape); }
rx_tensor *rx_empty_like(rx_ctx *c, const rx_tensor *t) { return t ? rx_empty(c, t->ndim, t->shape) : NULL; }

rx_tensor *rx_full(rx_ctx *c, int ndim, const int64_t *shape, float v) {
    rx_tensor *t = rx_empty(c, ndim, shape);
    if (t && rx_tensor_fill(c, t, v) != RX_OK) return rx_ctx_fail(c, RX_ERR_DEVICE, "%s", rx_last_error());
    return t;
}
rx_tensor *rx_zeros(rx_ctx *c, int ndim, const int64_t *shape) { return rx_full(c, ndim, shape, 0.0f); }

rx_tensor *rx_param(rx_ctx *c, const char *name, int ndim, const int64_t *shape, int requires_grad) {
    rx_tensor *t = tensor_in(c, c->persist, ndim, shape);
    if (!t) return NULL;
    t->is_param = 1;
    t->requires_grad = (uint8_t)(requires_grad != 0);
    if (name) {
        size_t n = strlen(name) + 1;
        char *s = rx_arena_meta(c->persist, n);
        if (!s) return rx_ctx_fail(c, RX_ERR_OOM, "%s", rx_last_error());
        memcpy(s, name, n);
        t->name = s;
    }
    if (c->mem->fill(c, t->data, 0.0f, t->numel) != RX_OK) return rx_ctx_fail(c, RX_ERR_DEVICE, "%s", rx_last_error());
    if (requires_grad) {
        rx_tensor *g = tensor_in(c, c->persist, ndim, shape);
        if (!g) return NULL;
        if (c->mem->fill(c, g->data, 0.0f, g->numel) != RX_OK) return rx_ctx_fail(c, RX_ERR_DEVICE, "%s", rx_last_error());
        t->grad = g;
    }
    return t;
}

rx_status rx_tensor_from_host(rx_ctx *c, rx_tensor *t, const float *src) {
    if (!t) return c->err ? c->err : rx_fail(RX_ERR_ARG, "from_host: NULL tensor");
    return c->mem->to_device(c, t->data, src, (size_t)t->numel * sizeof(float));
}

rx_status rx_tensor_to_host(rx_ctx *c, const rx_tensor *t, float *dst) {
    if (!t) return c->err ? c->err : rx_fail(RX_ERR_ARG, "to_host: NULL tensor");
    return c->mem->to_host(c, dst, t->data, (size_t)t->numel * sizeof(float));
}

rx_tensor *rx_from_host(rx_ctx *c, int ndim, const int64_t *shape, const float *src) {
    rx_tensor *t = rx_empty(c, ndim, shape);
    if (t && rx_tensor_from_host(c, t, src) != RX_OK) return rx_ctx_fail(c, RX_ERR_DEVICE, "%s", rx_last_error());
    return t;
}

rx_status rx_tensor_fill(rx_ctx *c, rx_tensor *t, float v) { return c->mem->fill(c, t->data, v, t->numel); }

rx_status rx_tensor_copy(rx_ctx *c, rx_tensor *dst, const rx_tensor *src) {
    if (dst->numel != src->numel)
        return rx_fail(RX_ERR_SHAPE, "copy: %s into %s", RX_SHAPE_STR(src), RX_SHAPE_STR(dst));
    return c->mem->copy(c, dst->data, src->data, (size_t)src->numel * sizeof(float));
}

rx_tensor *rx_grad_of(rx_ctx *c, rx_tensor *t) {
    if (!t->grad) {
        t->grad = rx_zeros(c, t->ndim, t->shape);   /* activations: step arena */
    }
    return t->grad;
}

int rx_same_shape(const rx_tensor *a, const rx_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++) if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *rx_shape_str(const rx_tensor *t, char *buf, size_t n) {
    if (!t) { snprintf(buf, n, "(null)"); return buf; }
    size_t k = 0;
    k += snprintf(buf + k, n - k, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}
