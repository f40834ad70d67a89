/* op_loss.c — reductions (sum, mean) and losses (mse, cross-entropy) front-ends.
 * Every op here returns a [1] tensor. Labels are whole numbers stored as floats; their
 * range is checked by the kernel (it is where the values are readable). */
#include "ops.h"
#include "dispatch.h"

static rx_tensor *scalar_out(rx_ctx *c) { return rx_empty(c, RX_SHAPE(1)); }

rx_tensor *rx_sum(rx_ctx *c, rx_tensor *x) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    return rx_node_run(c, rx_node_new(c, RX_OP_SUM, scalar_out(c), 1, x));
}

rx_tensor *rx_mean(rx_ctx *c, rx_tensor *x) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    if (x->numel == 0) return RX_OP_FAIL(c, "mean: x %s has no elements", RX_SHAPE_STR(x));
    return rx_node_run(c, rx_node_new(c, RX_OP_MEAN, scalar_out(c), 1, x));
}

rx_tensor *rx_mse_loss(rx_ctx *c, rx_tensor *pred, rx_tensor *target, rx_tensor *weight) {
    if (!rx_inputs_ok(c, 2, pred, target)) return NULL;
    if (!rx_same_shape(pred, target))
        return RX_OP_FAIL(c, "mse_loss: pred %s and target %s differ in shape", RX_SHAPE_STR(pred),
                          RX_SHAPE_STR(target));
    if (pred->numel == 0) return RX_OP_FAIL(c, "mse_loss: pred %s has no elements", RX_SHAPE_STR(pred));
    if (weight && (weight->ndim != 1 || weight->shape[0] != pred->shape[0]))
        return RX_OP_FAIL(c, "mse_loss: pred %s needs weight [%lld] (one per example), got %s", RX_SHAPE_STR(pred),
                          (long long)pred->shape[0], RX_SHAPE_STR(weight));
    return rx_node_run(c, rx_node_new(c, RX_OP_MSE_LOSS, scalar_out(c), 3, pred, target, weight));
}

rx_tensor *rx_cross_entropy(rx_ctx *c, rx_tensor *logits, rx_tensor *labels) {
    if (!rx_inputs_ok(c, 2, logits, labels)) return NULL;
    if (logits->ndim != 2 || logits->shape[0] < 1 || logits->shape[1] < 1)
        return RX_OP_FAIL(c, "cross_entropy: logits %s must be [B,K] with B, K >= 1", RX_SHAPE_STR(logits));
    if (labels->ndim != 1 || labels->shape[0] != logits->shape[0])
        return RX_OP_FAIL(c, "cross_entropy: logits %s needs labels [%lld], got %s", RX_SHAPE_STR(logits),
                          (long long)logits->shape[0], RX_SHAPE_STR(labels));
    return rx_node_run(c, rx_node_new(c, RX_OP_CROSS_ENTROPY, scalar_out(c), 2, logits, labels));
}
