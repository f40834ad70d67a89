/* dispatch.h — what an op front-end uses: make a node, run its forward on the
 * context's backend, record it on the tape when gradients are wanted.
 *
 *     rx_tensor *rx_silu(rx_ctx *c, rx_tensor *x) {
 *         if (!rx_inputs_ok(c, 1, x)) return NULL;
 *         rx_node *n = rx_node_new(c, RX_OP_SILU, rx_empty_like(c, x), 1, x);
 *         return rx_node_run(c, n);
 *     }
 */
#ifndef RX_DISPATCH_H
#define RX_DISPATCH_H

#include "kernels/backend.h"

/* false when the context already failed or a (required) input is NULL */
int        rx_inputs_ok(rx_ctx *c, int n, ...);
/* node with output `out` and n_in inputs (each may be NULL for an absent optional input) */
rx_node   *rx_node_new(rx_ctx *c, int op, rx_tensor *out, int n_in, ...);
/* run the forward kernel; on success record (if grad) and return n->out, else NULL + sticky error */
rx_tensor *rx_node_run(rx_ctx *c, rx_node *n);
/* shape-error helper for front-ends: "conv2d: x [2,3,8,8] and w [4,5,3,3]: channels differ" */
#define RX_OP_FAIL(c, ...) rx_ctx_fail((c), RX_ERR_SHAPE, __VA_ARGS__)

#endif
