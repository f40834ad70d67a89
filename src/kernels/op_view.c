/* op_view.c — reshape: a view that shares data; its gradient is the incoming gradient reshaped. */
#include "ops.h"
#include "dispatch.h"
#include <string.h>

rx_tensor *rx_reshape(rx_ctx *c, rx_tensor *x, int ndim, const int64_t *shape) {
    if (!rx_inputs_ok(c, 1, x)) return NULL;
    if (ndim < 1 || ndim > RX_MAX_DIMS) return RX_OP_FAIL(c, "reshape: %d dims", ndim);
    int64_t sh[RX_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (sh[i] == -1) {
            if (infer >= 0) return RX_OP_FAIL(c, "reshape: more than one -1 in the new shape");
            infer = i;
        } else known *= sh[i];
    }
    if (infer >= 0) sh[infer] = known ? x->numel / known : 0;
    if (rx_numel(ndim, sh) != x->numel)
        return RX_OP_FAIL(c, "reshape: x %s has %lld elements, the new shape %lld",
                          RX_SHAPE_STR(x), (long long)x->numel, (long long)rx_numel(ndim, sh));
    rx_tensor *y = rx_arena_meta(c->step, sizeof *y);
    if (!y) return rx_ctx_fail(c, RX_ERR_OOM, "%s", rx_last_error());
    *y = *x;
    y->ndim = ndim;
    memcpy(y->shape, sh, sizeof sh);
    y->grad = NULL;
    y->requires_grad = 0;
    y->is_param = 0;
    y->is_view = 1;   /* never freed on its own: x owns the data */
    y->name = NULL;
    return rx_node_run(c, rx_node_new(c, RX_OP_RESHAPE, y, 1, x));
}
