#include "dispatch.h"
#include <stdarg.h>

const char *const rx_op_names[RX_OP_COUNT] = {
#define OP(ID, name, family, reads) [RX_OP_##ID] = #name,
#include "ops.def"
#undef OP
};

#define X0 (1u << 0)
#define X1 (1u << 1)
#define X2 (1u << 2)
#define X3 (1u << 3)
#define Y  RX_BWD_READS_OUT
const uint8_t rx_op_bwd_reads[RX_OP_COUNT] = {
#define OP(ID, name, family, reads) [RX_OP_##ID] = (reads),
#include "ops.def"
#undef OP
};
#undef X0
#undef X1
#undef X2
#undef X3
#undef Y

int rx_inputs_ok(rx_ctx *c, int n, ...) {
    if (c->err) return 0;
    va_list ap;
    va_start(ap, n);
    int ok = 1;
    for (int i = 0; i < n; i++) if (va_arg(ap, rx_tensor *) == NULL) ok = 0;
    va_end(ap);
    if (!ok) rx_ctx_fail(c, RX_ERR_ARG, "op called with a missing input and no earlier error");
    return ok;
}

rx_node *rx_node_new(rx_ctx *c, int op, rx_tensor *out, int n_in, ...) {
    if (!out) return NULL;
    RX_CHECK(n_in <= RX_MAX_IN);
    rx_node *n = rx_arena_meta(c->step, sizeof *n);
    if (!n) { rx_ctx_fail(c, RX_ERR_OOM, "%s", rx_last_error()); return NULL; }
    n->op = op;
    n->out = out;
    n->n_in = n_in;
    va_list ap;
    va_start(ap, n_in);
    for (int i = 0; i < n_in; i++) n->in[i] = va_arg(ap, rx_tensor *);
    va_end(ap);
    return n;
}

rx_tensor *rx_node_run(rx_ctx *c, rx_node *n) {
    if (!n || c->err) return NULL;
    rx_kernel_fn f = c->be->fwd[n->op];
    if (!f) return rx_ctx_fail(c, RX_ERR_UNIMPLEMENTED, "%s: no forward kernel on backend %s", rx_op_names[n->op], c->be->name);
    if (c->fwd_plan)   /* a graph that left the plan's could reach a tensor the plan gave back */
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] && n->in[i]->numel > 0 && !n->in[i]->data)
                return rx_ctx_fail(c, RX_ERR_INTERNAL, "%s: input %d was given back by the forward plan (this step's graph "
                                   "differs from the one the plan learned)", rx_op_names[n->op], i);
    rx_status s = f(c, n);
    if (s != RX_OK) {
        if (!c->err) { c->err = s; }   /* the kernel wrote the message with rx_fail */
        return NULL;
    }
    if (c->grad_enabled) {
        int needs = 0;
        for (int i = 0; i < n->n_in; i++) if (n->in[i] && n->in[i]->requires_grad) needs = 1;
        if (needs) {
            n->out->requires_grad = 1;
            n->prev = c->tape;
            n->index = c->n_nodes++;
            c->tape = n;
            if (c->fwd_plan_recorded && (s = c->fwd_plan_recorded(c, n)) != RX_OK) {
                if (!c->err) c->err = s;
                return NULL;
            }
        }
    }
    return n->out;
}
