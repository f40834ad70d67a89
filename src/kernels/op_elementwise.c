/* op_elementwise.c — add/sub/mul (NumPy broadcasting), scale, silu, exp, abs, gelu, modulate, dropout,
 * residual_add.
 *
 * Node layout: add/sub/mul in = {a, b}; scale in = {x}, f[0] = alpha, f[1] = beta;
 * silu in = {x}; gelu in = {x}, i[0] = approximate_tanh; modulate in = {x, shift, scale};
 * residual_add in = {a, b, bias}, f[0] = scale; dropout in = {x}, f[0] = p, i[0] = Philox stream, i[1] = seed (the mask is recomputed
 * from these in backward, see cpu/elementwise.c). */
#include "ops.h"
#include "dispatch.h"
#include "core/philox.h"

/* NumPy broadcast of a and b (right-aligned; each pair of dims equal or one of them 1) */
static int broadcast_shape(rx_ctx *c, const char *op, const rx_tensor *a, const rx_tensor *b, int *nd,
                           int64_t *shape) {
    *nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int k = 1; k <= *nd; k++) {   /* k-th dim from the right */
        const int64_t da = k <= a->ndim ? a->shape[a->ndim - k] : 1;
        const int64_t db = k <= b->ndim ? b->shape[b->ndim - k] : 1;
        if (da != db && da != 1 && db != 1) {
            RX_OP_FAIL(c, "%s: a %s and b %s do not broadcast (dim -%d: %lld vs %lld)", op, RX_SHAPE_STR(a),
                       RX_SHAPE_STR(b), k, (long long)da, (long long)db);
            return 0;
        }
        shape[*nd - k] = da == 1 ? db : da;
    }
    return 1;
}

static rx_tensor *binary(rx_ctx *c, int op, rx_tensor *a, rx_tensor *b) {
    if (!rx_inputs_ok(c, 2, a, b)) return NULL;
    int nd;
    int64_t shape[RX_MAX_DIMS];
    if (!broadcast_shape(c, rx_op_names[op], a, b, &nd, shape)) return NULL;
    return rx_node_run(c, rx_node_new(c, op, rx_empty(c, nd, shape), 2, a, b));
}

rx_tensor *rx_add(rx_ctx *c, rx_tensor *a, rx_tensor *b) { return binary(c, RX_OP_ADD, a, b); }
rx_tensor *rx_sub(rx_ctx *c, rx_tensor *a, rx_tensor *b) { return binary(c, RX_OP_SUB, a, b); }
rx_tensor *rx_mul(rx_ctx *c, rx_tensor *a, rx_tensor *b) { return binary(c, RX_OP_MUL, a, b); }

rx_tensor *rx_scale(rx_ctx *c, rx_tensor *x, float alpha, float beta) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    rx_node *n = rx_node_new(c, RX_OP_SCALE, rx_empty_like(c, x), 1, x);
    if (!n) return NULL;
    n->f[0] = alpha;
    n->f[1] = beta;
    return rx_node_run(c, n);
}

rx_tensor *rx_silu(rx_ctx *c, rx_tensor *x) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    return rx_node_run(c, rx_node_new(c, RX_OP_SILU, rx_empty_like(c, x), 1, x));
}

rx_tensor *rx_exp(rx_ctx *c, rx_tensor *x) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    return rx_node_run(c, rx_node_new(c, RX_OP_EXP, rx_empty_like(c, x), 1, x));
}

rx_tensor *rx_abs(rx_ctx *c, rx_tensor *x) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    return rx_node_run(c, rx_node_new(c, RX_OP_ABS, rx_empty_like(c, x), 1, x));
}

rx_tensor *rx_gelu(rx_ctx *c, rx_tensor *x, int approximate_tanh) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    rx_node *n = rx_node_new(c, RX_OP_GELU, rx_empty_like(c, x), 1, x);
    if (!n) return NULL;
    n->i[0] = approximate_tanh != 0;
    return rx_node_run(c, n);
}

rx_tensor *rx_modulate(rx_ctx *c, rx_tensor *x, rx_tensor *shift, rx_tensor *scale) {
    if (!rx_inputs_ok(c, 3, x, shift, scale)) return NULL;
    int ok = x->ndim == 3;
    const rx_tensor *ss[2] = {shift, scale};
    for (int k = 0; k < 2 && ok; k++)
        ok = ss[k]->ndim == 2 && ss[k]->shape[0] == x->shape[0] && ss[k]->shape[1] == x->shape[2];
    if (!ok)
        return RX_OP_FAIL(c, "modulate: x %s, shift %s, scale %s: expected x [B,N,D] with shift and scale [B,D]",
                          RX_SHAPE_STR(x), RX_SHAPE_STR(shift), RX_SHAPE_STR(scale));
    return rx_node_run(c, rx_node_new(c, RX_OP_MODULATE, rx_empty_like(c, x), 3, x, shift, scale));
}

rx_tensor *rx_residual_add(rx_ctx *c, rx_tensor *a, rx_tensor *b, rx_tensor *bias, float scale) {
    if (!rx_inputs_ok(c, 2, a, b)) return NULL;
    if (a->ndim < 2 || !rx_same_shape(a, b))
        return RX_OP_FAIL(c, "residual_add: a %s and b %s must be the same [B,C,...]", RX_SHAPE_STR(a), RX_SHAPE_STR(b));
    if (bias && (bias->ndim != 1 || bias->shape[0] != a->shape[1]))
        return RX_OP_FAIL(c, "residual_add: a %s needs bias [%lld], got %s", RX_SHAPE_STR(a), (long long)a->shape[1],
                          RX_SHAPE_STR(bias));
    rx_node *n = rx_node_new(c, RX_OP_RESIDUAL_ADD, rx_empty_like(c, a), 3, a, b, bias);
    if (!n) return NULL;
    n->f[0] = scale;
    return rx_node_run(c, n);
}

/* Identity (x itself, no node) when not training or p == 0, as nn.Dropout in eval mode. */
rx_tensor *rx_dropout(rx_ctx *c, rx_tensor *x, float p) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    if (!(p >= 0.0f && p <= 1.0f)) return rx_ctx_fail(c, RX_ERR_ARG, "dropout: p=%g must be in [0, 1]", p);
    if (!c->training || p == 0.0f) return x;
    rx_node *n = rx_node_new(c, RX_OP_DROPOUT, rx_empty_like(c, x), 1, x);
    if (!n) return NULL;
    n->f[0] = p;
    n->i[0] = (int64_t)RX_STREAM(RX_RNG_DROPOUT, RX_DROPOUT_INDEX(c->rng_step, c->rng_calls++));
    n->i[1] = (int64_t)c->seed;
    return rx_node_run(c, n);
}
