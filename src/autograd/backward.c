/* backward.c — reverse-mode autodiff by replaying the tape.
 *
 * Each node's backward kernel reads out->grad and ADDS into the grads of its inputs,
 * so a tensor used by several ops receives the sum of their contributions. A node
 * whose output received no gradient (it did not reach the loss) is skipped. */
#include "kernels/ops.h"

rx_status rx_backward(rx_ctx *c, rx_tensor *loss) {
    if (!loss) return c->err ? c->err : rx_fail(RX_ERR_ARG, "backward: loss is NULL");
    if (loss->numel != 1) return rx_fail(RX_ERR_SHAPE, "backward: loss must have one element, got %s", RX_SHAPE_STR(loss));
    return rx_backward_with(c, loss, NULL);
}

rx_status rx_backward_with(rx_ctx *c, rx_tensor *out, const rx_tensor *seed) {
    if (!out) return c->err ? c->err : rx_fail(RX_ERR_ARG, "backward: output is NULL");
    if (c->err) return c->err;
    if (!out->requires_grad) return rx_fail(RX_ERR_ARG, "backward: output does not depend on any parameter (grad off?)");
    if (seed && seed->numel != out->numel)
        return rx_fail(RX_ERR_SHAPE, "backward: seed gradient %s for output %s", RX_SHAPE_STR(seed), RX_SHAPE_STR(out));
    rx_tensor *g = rx_grad_of(c, out);
    if (!g) return c->err;
    RX_TRY(seed ? rx_tensor_copy(c, g, seed) : rx_tensor_fill(c, g, 1.0f));
    for (rx_node *n = c->tape; n; n = n->prev) {
        if (!n->out->grad) continue;
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] && n->in[i]->requires_grad && !rx_grad_of(c, n->in[i])) return c->err;
        rx_kernel_fn b = c->be->bwd[n->op];
        if (!b) return rx_fail(RX_ERR_UNIMPLEMENTED, "%s: no backward kernel on backend %s", rx_op_names[n->op], c->be->name);
        rx_status s = b(c, n);
        if (s != RX_OK) return rx_fail_ctx(s, "backward of %s: ", rx_op_names[n->op]);
    }
    c->tape = NULL;
    c->n_nodes = 0;
    return RX_OK;
}
