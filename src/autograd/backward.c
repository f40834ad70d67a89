/* backward.c — reverse-mode autodiff by replaying the tape.
 *
 * Each node's backward kernel reads out->grad and ADDS into the grads of its inputs,
 * so a tensor used by several ops receives the sum of their contributions. A node
 * whose output received no gradient (it did not reach the loss) is skipped.
 *
 * With c->release_in_backward, memory is given back as the replay goes: an intermediate (a
 * node's output or a tensor it saved) is dead once the backward of the oldest node that reads
 * it has run, and its gradient once its producer's backward has run (every consumer, newer
 * on the tape, has added into it by then). Parameters, views, the caller's own tensors (no
 * producer on the tape) and `out` itself are kept. The peak of a training step is then
 * the forward's activations plus a few gradients, not activations plus all their gradients.
 *
 * With c->grad_ready (data-parallel training, dist.h), each parameter's gradient is announced
 * as soon as it is final: after the backward of the oldest node that reads it (for a
 * checkpointed block, the parameters its forward read). The replay goes on while the listener
 * starts that gradient's all-reduce. */
#include "kernels/ops.h"
#include "autograd/checkpoint.h"
#include "autograd/liveness.h"

static int tensors_of(rx_node *n, rx_tensor *t[RX_MAX_IN + 5]) {
    int k = 0;
    for (int i = 0; i < n->n_in; i++) if (n->in[i]) t[k++] = n->in[i];
    t[k++] = n->out;
    for (int i = 0; i < 4; i++) if (n->saved[i]) t[k++] = n->saved[i];
    return k;
}

/* Newest to oldest: the last writer of last_use is the oldest reader. Outputs and saved
 * tensors of tape nodes are the step's intermediates; anything else a node reads (the batch,
 * outputs of ops that recorded nothing) is the caller's and is left alone. */
static void mark_last_uses(rx_node *tape) {
    for (rx_node *n = tape; n; n = n->prev) {
        rx_tensor *t[RX_MAX_IN + 5];
        for (int k = tensors_of(n, t); k-- > 0;) t[k]->last_use = n;
        n->out->is_intermediate = 1;
        for (int i = 0; i < 4; i++) if (n->saved[i]) n->saved[i]->is_intermediate = 1;
    }
}

/* The parameters whose gradients n's backward adds into, by slot: its inputs, then (a
 * checkpointed block) the parameters its forward read. NULL: the slot is not a parameter. */
static int param_slots(const rx_node *n) {
    rx_tensor *const *ps;
    return n->n_in + (n->checkpoint ? rx_checkpoint_params(n, &ps) : 0);
}
static rx_tensor *param_at(const rx_node *n, int k) {
    rx_tensor *x;
    if (k < n->n_in) x = n->in[k];
    else {
        rx_tensor *const *ps;
        rx_checkpoint_params(n, &ps);
        x = ps[k - n->n_in];
    }
    return x && x->is_param && x->requires_grad ? x : NULL;
}

/* newest to oldest: the last write leaves each parameter's oldest reader */
static void mark_grad_final(rx_node *tape) {
    for (rx_node *n = tape; n; n = n->prev)
        for (int k = param_slots(n); k-- > 0;) {
            rx_tensor *p = param_at(n, k);
            if (p) p->grad_final_at = n;
        }
}

/* after n's backward: the parameters it was the oldest reader of are final, each told once */
static rx_status announce_final(rx_ctx *c, rx_node *n) {
    for (int k = 0, m = param_slots(n); k < m; k++) {
        rx_tensor *p = param_at(n, k);
        if (!p || p->grad_final_at != n) continue;
        p->grad_final_at = NULL;
        RX_TRY(c->grad_ready(c, p));
    }
    return RX_OK;
}

static rx_status release(rx_ctx *c, float **data, int64_t numel) {
    RX_TRY(rx_arena_free(c->step, *data, (size_t)numel * sizeof(float)));
    *data = NULL;
    return RX_OK;
}

/* after n's backward: the data of the intermediates n was the oldest to read, and the
 * gradient of n's output (its consumers, newer on the tape, have all added into it) */
static rx_status release_after(rx_ctx *c, rx_node *n, const rx_tensor *keep) {
    rx_tensor *t[RX_MAX_IN + 5];
    int cnt = tensors_of(n, t);
    for (int k = 0; k < cnt; k++) {
        rx_tensor *x = t[k];
        if (x->last_use != n || !x->is_intermediate || x->is_view || x->is_param || x == keep || !x->data) continue;
        RX_TRY(release(c, &x->data, x->numel));
    }
    rx_tensor *o = n->out;
    if (o->grad && o != keep && !o->is_param) {
        RX_TRY(release(c, &o->grad->data, o->numel));
        o->grad = NULL;
    }
    return RX_OK;
}

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
    RX_TRY(rx_fwd_plan_learn(c));   /* before mark_last_uses: it reads last_use as each output's maker */
    if (c->release_in_backward) mark_last_uses(c->tape);
    if (c->grad_ready) mark_grad_final(c->tape);
    for (rx_node *n = c->tape; n; n = n->prev) {
        if (n->out->grad) {
            for (int i = 0; i < n->n_in; i++)
                if (n->in[i] && n->in[i]->requires_grad && !rx_grad_of(c, n->in[i])) return c->err;
            if (n->checkpoint) {
                RX_TRY(rx_checkpoint_backward(c, n));
            } else {
                rx_kernel_fn b = c->be->bwd[n->op];
                if (!b) return rx_fail(RX_ERR_UNIMPLEMENTED, "%s: no backward kernel on backend %s", rx_op_names[n->op], c->be->name);
                rx_status s = b(c, n);
                if (s != RX_OK) return rx_fail_ctx(s, "backward of %s: ", rx_op_names[n->op]);
            }
        }
        if (c->grad_ready) RX_TRY(announce_final(c, n));
        if (c->release_in_backward) RX_TRY(release_after(c, n, out));
    }
    c->tape = NULL;
    c->n_nodes = 0;
    return RX_OK;
}
