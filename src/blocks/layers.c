#include "layers.h"
#include "core/philox.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void rx_builder_init(rx_builder *b, rx_ctx *c, rx_paramset *ps, uint64_t seed) {
    memset(b, 0, sizeof *b);
    b->c = c;
    b->ps = ps;
    b->seed = seed;
}

void rx_builder_push(rx_builder *b, const char *fmt, ...) {
    RX_CHECK(b->depth < 16);
    size_t len = strlen(b->prefix);
    b->prefix_len[b->depth++] = (int)len;
    char part[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(part, sizeof part, fmt, ap);
    va_end(ap);
    if (!part[0]) return;   /* an empty level (a block built under its caller's prefix) adds no "." */
    snprintf(b->prefix + len, sizeof b->prefix - len, "%s%s", len ? "." : "", part);
}

void rx_builder_pop(rx_builder *b) {
    RX_CHECK(b->depth > 0);
    b->prefix[b->prefix_len[--b->depth]] = 0;
}

rx_tensor *rx_build_param(rx_builder *b, const char *name, int ndim, const int64_t *shape) {
    char full[384];
    snprintf(full, sizeof full, "%s%s%s", b->prefix, b->prefix[0] ? "." : "", name);
    rx_tensor *t = rx_param(b->c, full, ndim, shape, 1);
    if (t && rx_paramset_add(b->ps, t) != RX_OK) return rx_ctx_fail(b->c, RX_ERR_OOM, "%s", rx_last_error());
    return t;
}

/* parameter number = its index in the set: the Philox stream of its init */
static uint64_t init_stream(rx_builder *b, rx_tensor *t) {
    for (int i = b->ps->n - 1; i >= 0; i--)
        if (b->ps->t[i] == t) return RX_STREAM(RX_RNG_INIT, i);
    return RX_STREAM(RX_RNG_INIT, 0xFFFFFFFFull);
}

static rx_status upload(rx_builder *b, rx_tensor *t, float *h) {
    rx_status s = rx_tensor_from_host(b->c, t, h);
    free(h);
    return s;
}

/* a planning context holds no values: nothing to draw */
static int planning(const rx_builder *b) { return b->c->mem->device == RX_DEV_PLAN; }

rx_status rx_init_uniform(rx_builder *b, rx_tensor *t, float bound) {
    if (!t) return b->c->err;
    if (planning(b)) return RX_OK;
    float *h = malloc(t->numel * sizeof *h);
    if (!h) return rx_fail(RX_ERR_OOM, "init %s: out of memory", t->name);
    rx_rng_uniform(b->seed, init_stream(b, t), 0, h, t->numel);
    for (int64_t i = 0; i < t->numel; i++) h[i] = (2.0f * h[i] - 1.0f) * bound;
    return upload(b, t, h);
}

rx_status rx_init_normal(rx_builder *b, rx_tensor *t, float std) {
    if (!t) return b->c->err;
    if (planning(b)) return RX_OK;
    float *h = malloc(t->numel * sizeof *h);
    if (!h) return rx_fail(RX_ERR_OOM, "init %s: out of memory", t->name);
    rx_rng_normal(b->seed, init_stream(b, t), 0, h, t->numel);
    for (int64_t i = 0; i < t->numel; i++) h[i] *= std;
    return upload(b, t, h);
}

rx_status rx_init_const(rx_builder *b, rx_tensor *t, float v) {
    if (!t) return b->c->err;
    return rx_tensor_fill(b->c, t, v);
}

rx_status rx_build_linear(rx_builder *b, const char *name, int in, int out, int bias, rx_linear_layer *l) {
    rx_builder_push(b, "%s", name);
    float bound = 1.0f / sqrtf((float)in);
    l->w = rx_build_param(b, "weight", RX_SHAPE(out, in));
    rx_status s = rx_init_uniform(b, l->w, bound);
    l->b = NULL;
    if (s == RX_OK && bias) {
        l->b = rx_build_param(b, "bias", RX_SHAPE(out));
        s = rx_init_uniform(b, l->b, bound);
    }
    rx_builder_pop(b);
    return s != RX_OK ? s : b->c->err;
}

rx_status rx_build_conv(rx_builder *b, const char *name, int cin, int cout, int k, int stride, int pad, rx_conv_layer *l) {
    rx_builder_push(b, "%s", name);
    float bound = 1.0f / sqrtf((float)(cin * k * k));
    l->stride = stride;
    l->pad = pad;
    l->w = rx_build_param(b, "weight", RX_SHAPE(cout, cin, k, k));
    rx_status s = rx_init_uniform(b, l->w, bound);
    l->b = rx_build_param(b, "bias", RX_SHAPE(cout));
    if (s == RX_OK) s = rx_init_uniform(b, l->b, bound);
    rx_builder_pop(b);
    return s != RX_OK ? s : b->c->err;
}

rx_status rx_build_group_norm(rx_builder *b, const char *name, int groups, int channels, float eps, rx_group_norm_layer *l) {
    if (groups <= 0 || channels % groups)
        return rx_fail(RX_ERR_CONFIG, "%s%s%s: %d channels are not divisible into %d groups (norm_num_groups)",
                       b->prefix, b->prefix[0] ? "." : "", name, channels, groups);
    rx_builder_push(b, "%s", name);
    l->groups = groups;
    l->eps = eps;
    l->w = rx_build_param(b, "weight", RX_SHAPE(channels));
    rx_status s = rx_init_const(b, l->w, 1.0f);
    l->b = rx_build_param(b, "bias", RX_SHAPE(channels));
    if (s == RX_OK) s = rx_init_const(b, l->b, 0.0f);
    rx_builder_pop(b);
    return s != RX_OK ? s : b->c->err;
}

rx_status rx_build_embedding(rx_builder *b, const char *name, int num, int dim, rx_embedding_layer *l) {
    rx_builder_push(b, "%s", name);
    l->w = rx_build_param(b, "weight", RX_SHAPE(num, dim));
    rx_status s = rx_init_normal(b, l->w, 1.0f);
    rx_builder_pop(b);
    return s != RX_OK ? s : b->c->err;
}
