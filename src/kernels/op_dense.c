/* op_dense.c — front-ends of the GEMM-backed ops: conv2d, linear, matmul.
 * Shape checks name the op and the shapes; CPU kernels are in cpu/dense.c.
 *
 * Node arguments:
 *   conv2d  in = {x, w, b|NULL}   i[0] = stride, i[1] = pad
 *   linear  in = {x, w, b|NULL}
 *   matmul  in = {a, b}           i[0] = trans_a, i[1] = trans_b */
#include "ops.h"
#include "dispatch.h"

rx_tensor *rx_conv2d(rx_ctx *c, rx_tensor *x, rx_tensor *w, rx_tensor *b, int stride, int pad) {
    if (!rx_inputs_ok(c, 2, x, w)) return NULL;
    if (x->ndim != 4 || w->ndim != 4)
        return RX_OP_FAIL(c, "conv2d: x %s and w %s: expected x [B,Ci,H,W] and w [Co,Ci,kh,kw]",
                          RX_SHAPE_STR(x), RX_SHAPE_STR(w));
    if (x->shape[1] != w->shape[1])
        return RX_OP_FAIL(c, "conv2d: x %s and w %s: channels differ (%lld vs %lld)", RX_SHAPE_STR(x),
                          RX_SHAPE_STR(w), (long long)x->shape[1], (long long)w->shape[1]);
    if (x->shape[1] == 0)
        return RX_OP_FAIL(c, "conv2d: x %s has no input channels", RX_SHAPE_STR(x));
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return RX_OP_FAIL(c, "conv2d: bias %s for w %s: expected [%lld]", RX_SHAPE_STR(b), RX_SHAPE_STR(w),
                          (long long)w->shape[0]);
    if (stride < 1 || pad < 0)
        return rx_ctx_fail(c, RX_ERR_ARG, "conv2d: stride %d must be >= 1 and pad %d >= 0", stride, pad);
    const int64_t H = x->shape[2], W = x->shape[3], kh = w->shape[2], kw = w->shape[3];
    if (kh < 1 || kw < 1 || H + 2 * pad < kh || W + 2 * pad < kw)
        return RX_OP_FAIL(c, "conv2d: x %s with pad %d is smaller than the kernel of w %s", RX_SHAPE_STR(x), pad,
                          RX_SHAPE_STR(w));
    const int64_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    rx_node *n = rx_node_new(c, RX_OP_CONV2D, rx_empty(c, RX_SHAPE(x->shape[0], w->shape[0], Ho, Wo)), 3, x, w, b);
    if (!n) return NULL;
    n->i[0] = stride;
    n->i[1] = pad;
    return rx_node_run(c, n);
}

rx_tensor *rx_linear(rx_ctx *c, rx_tensor *x, rx_tensor *w, rx_tensor *b) {
    if (!rx_inputs_ok(c, 2, x, w)) return NULL;
    if (w->ndim != 2)
        return RX_OP_FAIL(c, "linear: w %s: expected [out,in]", RX_SHAPE_STR(w));
    if (x->shape[x->ndim - 1] != w->shape[1])
        return RX_OP_FAIL(c, "linear: x %s and w %s: in features differ (%lld vs %lld)", RX_SHAPE_STR(x),
                          RX_SHAPE_STR(w), (long long)x->shape[x->ndim - 1], (long long)w->shape[1]);
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return RX_OP_FAIL(c, "linear: bias %s for w %s: expected [%lld]", RX_SHAPE_STR(b), RX_SHAPE_STR(w),
                          (long long)w->shape[0]);
    int64_t shape[RX_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = w->shape[0];
    return rx_node_run(c, rx_node_new(c, RX_OP_LINEAR, rx_empty(c, x->ndim, shape), 3, x, w, b));
}

rx_tensor *rx_matmul(rx_ctx *c, rx_tensor *a, rx_tensor *b, int trans_a, int trans_b) {
    if (!rx_inputs_ok(c, 2, a, b)) return NULL;
    const int nd = a->ndim;
    if (nd < 2 || nd > 4 || b->ndim != nd)
        return RX_OP_FAIL(c, "matmul: a %s and b %s: expected both 2-D to 4-D with the same number of dims",
                          RX_SHAPE_STR(a), RX_SHAPE_STR(b));
    for (int d = 0; d < nd - 2; d++)
        if (a->shape[d] != b->shape[d])
            return RX_OP_FAIL(c, "matmul: a %s and b %s: batch dim %d differs", RX_SHAPE_STR(a), RX_SHAPE_STR(b), d);
    // a [..., M, K] (trans_a: [..., K, M]); b [..., K, N] (trans_b: [..., N, K])
    const int64_t M = trans_a ? a->shape[nd - 1] : a->shape[nd - 2];
    const int64_t Ka = trans_a ? a->shape[nd - 2] : a->shape[nd - 1];
    const int64_t Kb = trans_b ? b->shape[nd - 1] : b->shape[nd - 2];
    const int64_t N = trans_b ? b->shape[nd - 2] : b->shape[nd - 1];
    if (Ka != Kb)
        return RX_OP_FAIL(c, "matmul: a %s%s and b %s%s: inner dims differ (%lld vs %lld)", RX_SHAPE_STR(a),
                          trans_a ? " (transposed)" : "", RX_SHAPE_STR(b), trans_b ? " (transposed)" : "",
                          (long long)Ka, (long long)Kb);
    int64_t shape[4];
    for (int d = 0; d < nd - 2; d++) shape[d] = a->shape[d];
    shape[nd - 2] = M;
    shape[nd - 1] = N;
    rx_node *n = rx_node_new(c, RX_OP_MATMUL, rx_empty(c, nd, shape), 2, a, b);
    if (!n) return NULL;
    n->i[0] = trans_a != 0;
    n->i[1] = trans_b != 0;
    return rx_node_run(c, n);
}
