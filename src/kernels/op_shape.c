/* op_shape.c — concat (dim 1), permute, nearest 2x upsample, 2x average pool, global average
 * pool, DiT unpatchify, slice (torch.narrow).
 *
 * Node layout: concat in = {a, b}; permute in = {x}, i[0..ndim-1] = perm;
 * upsample_nearest2x / avgpool2x / global_avgpool in = {x};
 * unpatchify in = {x}, i[0] = channels, i[1] = h, i[2] = w, i[3] = p;
 * slice in = {x}, i[0] = dim (non-negative), i[1] = start (non-negative), i[2] = len. */
#include "ops.h"
#include "dispatch.h"

rx_tensor *rx_concat(rx_ctx *c, rx_tensor *a, rx_tensor *b) {
    if (!rx_inputs_ok(c, 2, a, b)) return NULL;
    int ok = a->ndim == b->ndim && a->ndim >= 2;
    for (int d = 0; d < a->ndim && ok; d++) ok = d == 1 || a->shape[d] == b->shape[d];
    if (!ok) return RX_OP_FAIL(c, "concat: a %s and b %s must agree in every dim but dim 1", RX_SHAPE_STR(a), RX_SHAPE_STR(b));
    int64_t shape[RX_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) shape[d] = a->shape[d];
    shape[1] = a->shape[1] + b->shape[1];
    return rx_node_run(c, rx_node_new(c, RX_OP_CONCAT, rx_empty(c, a->ndim, shape), 2, a, b));
}

rx_tensor *rx_permute(rx_ctx *c, rx_tensor *x, const int *perm) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    if (!perm) return rx_ctx_fail(c, RX_ERR_ARG, "permute: perm is NULL");
    int seen[RX_MAX_DIMS] = {0}, ok = 1;
    char ps[64];
    int k = 0;
    for (int d = 0; d < x->ndim; d++) {
        k += snprintf(ps + k, sizeof ps - k, d ? ",%d" : "%d", perm[d]);
        if (perm[d] < 0 || perm[d] >= x->ndim || seen[perm[d]]++) ok = 0;
    }
    if (!ok) return RX_OP_FAIL(c, "permute: perm (%s) is not a permutation of the %d dims of x %s", ps, x->ndim, RX_SHAPE_STR(x));
    int64_t shape[RX_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[perm[d]];
    rx_node *n = rx_node_new(c, RX_OP_PERMUTE, rx_empty(c, x->ndim, shape), 1, x);
    if (!n) return NULL;
    for (int d = 0; d < x->ndim; d++) n->i[d] = perm[d];
    return rx_node_run(c, n);
}

rx_tensor *rx_upsample_nearest2x(rx_ctx *c, rx_tensor *x) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    if (x->ndim != 4) return RX_OP_FAIL(c, "upsample_nearest2x: x %s is not [B,C,H,W]", RX_SHAPE_STR(x));
    rx_tensor *y = rx_empty(c, RX_SHAPE(x->shape[0], x->shape[1], 2 * x->shape[2], 2 * x->shape[3]));
    return rx_node_run(c, rx_node_new(c, RX_OP_UPSAMPLE_NEAREST2X, y, 1, x));
}

rx_tensor *rx_avgpool2x(rx_ctx *c, rx_tensor *x) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    if (x->ndim != 4) return RX_OP_FAIL(c, "avgpool2x: x %s is not [B,C,H,W]", RX_SHAPE_STR(x));
    if (x->shape[2] % 2 || x->shape[3] % 2) return RX_OP_FAIL(c, "avgpool2x: x %s: H and W must be even", RX_SHAPE_STR(x));
    rx_tensor *y = rx_empty(c, RX_SHAPE(x->shape[0], x->shape[1], x->shape[2] / 2, x->shape[3] / 2));
    return rx_node_run(c, rx_node_new(c, RX_OP_AVGPOOL2X, y, 1, x));
}

rx_tensor *rx_global_avgpool(rx_ctx *c, rx_tensor *x) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    if (x->ndim != 4 || x->shape[2] * x->shape[3] == 0)
        return RX_OP_FAIL(c, "global_avgpool: x %s is not [B,C,H,W] with H*W > 0", RX_SHAPE_STR(x));
    rx_tensor *y = rx_empty(c, RX_SHAPE(x->shape[0], x->shape[1]));
    return rx_node_run(c, rx_node_new(c, RX_OP_GLOBAL_AVGPOOL, y, 1, x));
}

rx_tensor *rx_unpatchify(rx_ctx *c, rx_tensor *x, int channels, int h, int w, int p) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    if (channels < 1 || h < 1 || w < 1 || p < 1)
        return rx_ctx_fail(c, RX_ERR_ARG, "unpatchify: channels=%d h=%d w=%d p=%d must all be >= 1", channels, h, w, p);
    if (x->ndim != 3 || x->shape[1] != (int64_t)h * w || x->shape[2] != (int64_t)p * p * channels)
        return RX_OP_FAIL(c, "unpatchify: x %s is not [B, h*w=%lld, p*p*C=%lld] (h=%d w=%d p=%d C=%d)", RX_SHAPE_STR(x),
                          (long long)h * w, (long long)p * p * channels, h, w, p, channels);
    rx_tensor *y = rx_empty(c, RX_SHAPE(x->shape[0], channels, (int64_t)h * p, (int64_t)w * p));
    rx_node *n = rx_node_new(c, RX_OP_UNPATCHIFY, y, 1, x);
    if (!n) return NULL;
    n->i[0] = channels;
    n->i[1] = h;
    n->i[2] = w;
    n->i[3] = p;
    return rx_node_run(c, n);
}

/* dim and start may be negative (counted from the end), as in torch.narrow */
rx_tensor *rx_slice(rx_ctx *c, rx_tensor *x, int dim, int64_t start, int64_t len) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    if (dim < -x->ndim || dim >= x->ndim) return RX_OP_FAIL(c, "slice: dim %d out of range for x %s", dim, RX_SHAPE_STR(x));
    const int d = dim < 0 ? dim + x->ndim : dim;
    const int64_t size = x->shape[d], s0 = start < 0 ? start + size : start;
    if (len < 0 || s0 < 0 || s0 + len > size)
        return RX_OP_FAIL(c, "slice: x %s dim %d: [%lld, %lld) is outside [0, %lld)", RX_SHAPE_STR(x), d,
                          (long long)s0, (long long)(s0 + len), (long long)size);
    int64_t shape[RX_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) shape[k] = x->shape[k];
    shape[d] = len;
    rx_node *n = rx_node_new(c, RX_OP_SLICE, rx_empty(c, x->ndim, shape), 1, x);
    if (!n) return NULL;
    n->i[0] = d;
    n->i[1] = s0;
    n->i[2] = len;
    return rx_node_run(c, n);
}
