/* op_norm.c — group_norm, group_norm_silu and layer_norm front-ends: shape checks, output, arguments.
 *
 * Node layout: in = {x, gamma, beta} (gamma/beta may be NULL: no affine), f[0] = eps;
 * group_norm and group_norm_silu: i[0] = groups; group_norm_silu: in[3] = shift [B,C] or NULL.
 * The kernels save mean and rstd per normalised group (saved[0], saved[1]) for the backward pass. */
#include "ops.h"
#include "dispatch.h"

/* gamma/beta must both be [n] (or absent); `what` names the op in the message */
static int affine_ok(rx_ctx *c, const char *what, const rx_tensor *x, const rx_tensor *gamma,
                     const rx_tensor *beta, int64_t n) {
    const rx_tensor *ab[2] = {gamma, beta};
    const char *nm[2] = {"gamma", "beta"};
    for (int k = 0; k < 2; k++) {
        const rx_tensor *t = ab[k];
        if (t && (t->ndim != 1 || t->shape[0] != n)) {
            RX_OP_FAIL(c, "%s: x %s needs %s [%lld], got %s", what, RX_SHAPE_STR(x), nm[k], (long long)n,
                       RX_SHAPE_STR(t));
            return 0;
        }
    }
    return 1;
}

/* x [B,C,...] with C divisible by groups, eps > 0, gamma/beta [C]; `what` names the op */
static int group_norm_args_ok(rx_ctx *c, const char *what, const rx_tensor *x, const rx_tensor *gamma,
                              const rx_tensor *beta, int groups, float eps) {
    if (x->ndim < 2) { RX_OP_FAIL(c, "%s: x %s must be [B,C,...]", what, RX_SHAPE_STR(x)); return 0; }
    const int64_t C = x->shape[1];
    if (groups < 1 || C % groups != 0) {
        RX_OP_FAIL(c, "%s: x %s: C=%lld not divisible by groups=%d", what, RX_SHAPE_STR(x), (long long)C, groups);
        return 0;
    }
    if (!(eps > 0.0f)) { rx_ctx_fail(c, RX_ERR_ARG, "%s: eps=%g must be > 0", what, eps); return 0; }
    return affine_ok(c, what, x, gamma, beta, C);
}

rx_tensor *rx_group_norm(rx_ctx *c, rx_tensor *x, rx_tensor *gamma, rx_tensor *beta, int groups, float eps) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    if (!group_norm_args_ok(c, "group_norm", x, gamma, beta, groups, eps)) return NULL;
    rx_node *n = rx_node_new(c, RX_OP_GROUP_NORM, rx_empty_like(c, x), 3, x, gamma, beta);
    if (!n) return NULL;
    n->i[0] = groups;
    n->f[0] = eps;
    return rx_node_run(c, n);
}

rx_tensor *rx_group_norm_silu(rx_ctx *c, rx_tensor *x, rx_tensor *gamma, rx_tensor *beta, rx_tensor *shift,
                              int groups, float eps) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    if (!group_norm_args_ok(c, "group_norm_silu", x, gamma, beta, groups, eps)) return NULL;
    if (shift && (shift->ndim != 2 || shift->shape[0] != x->shape[0] || shift->shape[1] != x->shape[1]))
        return RX_OP_FAIL(c, "group_norm_silu: x %s needs shift [%lld,%lld], got %s", RX_SHAPE_STR(x),
                          (long long)x->shape[0], (long long)x->shape[1], RX_SHAPE_STR(shift));
    rx_node *n = rx_node_new(c, RX_OP_GROUP_NORM_SILU, rx_empty_like(c, x), 4, x, gamma, beta, shift);
    if (!n) return NULL;
    n->i[0] = groups;
    n->f[0] = eps;
    return rx_node_run(c, n);
}

rx_tensor *rx_layer_norm(rx_ctx *c, rx_tensor *x, rx_tensor *gamma, rx_tensor *beta, float eps) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    const int64_t D = x->shape[x->ndim - 1];
    if (D < 1) return RX_OP_FAIL(c, "layer_norm: x %s has an empty last dim", RX_SHAPE_STR(x));
    if (!(eps > 0.0f)) return rx_ctx_fail(c, RX_ERR_ARG, "layer_norm: eps=%g must be > 0", eps);
    if (!affine_ok(c, "layer_norm", x, gamma, beta, D)) return NULL;
    rx_node *n = rx_node_new(c, RX_OP_LAYER_NORM, rx_empty_like(c, x), 3, x, gamma, beta);
    if (!n) return NULL;
    n->f[0] = eps;
    return rx_node_run(c, n);
}
