/* op_attention.c — softmax and scaled dot-product attention front-ends.
 *
 * attention node: in = {q, k, v}, f[0] = scale (resolved: 1/sqrt(D) when the caller passes <= 0).
 * Leading dims ([B,H] for 4-D, [B] for 3-D) must match across q, k, v; the kernels treat
 * them as one batch of independent heads. */
#include "ops.h"
#include "dispatch.h"
#include <math.h>

rx_tensor *rx_softmax(rx_ctx *c, rx_tensor *x) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    if (x->shape[x->ndim - 1] < 1) return RX_OP_FAIL(c, "softmax: x %s has an empty last dim", RX_SHAPE_STR(x));
    return rx_node_run(c, rx_node_new(c, RX_OP_SOFTMAX, rx_empty_like(c, x), 1, x));
}

rx_tensor *rx_attention(rx_ctx *c, rx_tensor *q, rx_tensor *k, rx_tensor *v, float scale) {
    if (!rx_inputs_ok(c, 3, q, k, v)) return NULL;
    const int nd = q->ndim;
    if (nd < 3 || nd > 4 || k->ndim != nd || v->ndim != nd)
        return RX_OP_FAIL(c, "attention: q %s, k %s, v %s must all be [B,H,N,D]", RX_SHAPE_STR(q), RX_SHAPE_STR(k),
                          RX_SHAPE_STR(v));
    for (int i = 0; i < nd - 2; i++)
        if (k->shape[i] != q->shape[i] || v->shape[i] != q->shape[i])
            return RX_OP_FAIL(c, "attention: q %s, k %s, v %s: batch/head dims differ", RX_SHAPE_STR(q),
                              RX_SHAPE_STR(k), RX_SHAPE_STR(v));
    const int64_t D = q->shape[nd - 1], Nk = k->shape[nd - 2];
    if (k->shape[nd - 1] != D)
        return RX_OP_FAIL(c, "attention: q %s and k %s: head dim differs", RX_SHAPE_STR(q), RX_SHAPE_STR(k));
    if (v->shape[nd - 2] != Nk)
        return RX_OP_FAIL(c, "attention: k %s and v %s: number of keys differs", RX_SHAPE_STR(k), RX_SHAPE_STR(v));
    if (D < 1 || Nk < 1)
        return RX_OP_FAIL(c, "attention: q %s, k %s: empty head dim or no keys", RX_SHAPE_STR(q), RX_SHAPE_STR(k));
    if (!isfinite(scale)) return rx_ctx_fail(c, RX_ERR_ARG, "attention: scale %g is not finite", scale);

    int64_t oshape[RX_MAX_DIMS];
    for (int i = 0; i < nd - 1; i++) oshape[i] = q->shape[i];
    oshape[nd - 1] = v->shape[nd - 1];   // [.., Nq, Dv]
    rx_node *n = rx_node_new(c, RX_OP_ATTENTION, rx_empty(c, nd, oshape), 3, q, k, v);
    if (!n) return NULL;
    n->f[0] = scale > 0.0f ? scale : 1.0f / sqrtf((float)D);
    return rx_node_run(c, n);
}
