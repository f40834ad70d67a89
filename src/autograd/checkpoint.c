/* checkpoint.c — activation checkpointing: see checkpoint.h.
 *
 * Forward: the block runs on a tape of its own; its output becomes the output of one
 * checkpoint node on the step's tape (inputs x, cond), and every other output or saved tensor
 * of the block's tape is freed. Backward of that node: restart the step's dropout counter where
 * the forward had it, run the block again recording, and replay its tape seeded with the
 * node's output gradient; that adds into the gradients of x, cond and the block's parameters
 * exactly as the plain tape would have, in the same order. */
#include "autograd/checkpoint.h"

typedef struct rx_checkpoint_info {
    rx_block_fn fn;
    const void *block;
    uint64_t    rng_calls;   /* c->rng_calls when the block first ran */
    rx_tensor **params;      /* [n_params] the parameters its tape read (rx_checkpoint_params) */
    int         n_params;
} rx_checkpoint_info;

int rx_checkpoint_params(const rx_node *n, rx_tensor *const **params) {
    *params = n->checkpoint->params;
    return n->checkpoint->n_params;
}

/* p into set[0, *k) unless there already (a block holds tens of parameters: a scan is enough) */
static void add_param(rx_tensor **set, int *k, rx_tensor *p) {
    for (int i = 0; i < *k; i++) if (set[i] == p) return;
    if (set) set[*k] = p;
    (*k)++;
}

/* the parameters the block's tape reads, directly or in a checkpointed block nested in it;
 * with set NULL only counted (an upper bound: no dedup without a set) */
static int tape_params(const rx_node *tape, rx_tensor **set) {
    int k = 0;
    for (const rx_node *n = tape; n; n = n->prev) {
        if (n->checkpoint) {
            for (int i = 0; i < n->checkpoint->n_params; i++)
                if (set) add_param(set, &k, n->checkpoint->params[i]); else k++;
            continue;
        }
        for (int i = 0; i < n->n_in; i++) {
            rx_tensor *x = n->in[i];
            if (x && x->is_param && x->requires_grad) {
                if (set) add_param(set, &k, x); else k++;
            }
        }
    }
    return k;
}

static rx_status free_data(rx_ctx *c, rx_tensor *t) {
    rx_status s = rx_arena_free(c->step, t->data, (size_t)t->numel * sizeof(float));
    t->data = NULL;
    return s;
}

/* the block's tape is dropped: free what its nodes made, except the output (and views, whose
 * data is another node's) */
static rx_status drop_tape(rx_ctx *c, rx_node *tape, const rx_tensor *keep) {
    for (rx_node *n = tape; n; n = n->prev) {
        if (n->out != keep && !n->out->is_view && n->out->data) RX_TRY(free_data(c, n->out));
        for (int i = 0; i < 4; i++)
            if (n->saved[i] && n->saved[i] != keep && n->saved[i]->data) RX_TRY(free_data(c, n->saved[i]));
    }
    return RX_OK;
}

/* Without grad (sampling, evaluation) nothing reads a block's intermediates after it returns:
 * they are given back at once, whether or not checkpointing is on, so a forward holds a few
 * tensors at a time instead of every activation of the network. */
static rx_tensor *forward_only(rx_ctx *c, rx_block_fn fn, const void *block, rx_tensor *x, rx_tensor *cond) {
    const int scope = rx_arena_scope_begin(c->step);
    rx_tensor *y = fn(c, block, x, cond);
    /* a view's data is another tensor's: keep everything then (no block returns one today) */
    rx_status s = rx_arena_scope_end(c->step, scope, y && !y->is_view ? y->data : NULL);
    if (y && y->is_view) return y;
    if (s != RX_OK) return rx_ctx_fail(c, s, "%s", rx_last_error());
    return y;
}

rx_tensor *rx_checkpoint(rx_ctx *c, rx_block_fn fn, const void *block, rx_tensor *x, rx_tensor *cond) {
    if (c->err) return NULL;
    if (!c->grad_enabled) return forward_only(c, fn, block, x, cond);
    if (!c->checkpointing) return fn(c, block, x, cond);
    rx_node *outer = c->tape;
    const int64_t outer_n = c->n_nodes;
    const uint64_t rng_calls = c->rng_calls;
    c->tape = NULL;
    rx_tensor *y = fn(c, block, x, cond);
    rx_node *inner = c->tape;
    c->tape = outer;
    c->n_nodes = outer_n;
    if (!y || !inner) return y;   /* an error, or nothing recorded (no parameter, no input with grad) */
    if (y->is_view) return rx_ctx_fail(c, RX_ERR_INTERNAL, "checkpoint: a block's output may not be a view");
    rx_checkpoint_info *info = rx_arena_meta(c->step, sizeof *info);
    rx_node *n = rx_arena_meta(c->step, sizeof *n);
    const int max_params = tape_params(inner, NULL);
    rx_tensor **params = max_params ? rx_arena_meta(c->step, (size_t)max_params * sizeof *params) : NULL;
    if (!info || !n || (max_params && !params)) return rx_ctx_fail(c, RX_ERR_OOM, "%s", rx_last_error());
    *info = (rx_checkpoint_info){fn, block, rng_calls, params, tape_params(inner, params)};
    rx_status s = drop_tape(c, inner, y);
    if (s != RX_OK) return rx_ctx_fail(c, s, "%s", rx_last_error());
    n->op = -1;
    n->checkpoint = info;
    n->n_in = 2;
    n->in[0] = x;
    n->in[1] = cond;
    n->out = y;
    n->prev = c->tape;
    n->index = c->n_nodes++;
    c->tape = n;
    return y;
}

rx_status rx_checkpoint_backward(rx_ctx *c, rx_node *n) {
    const rx_checkpoint_info *info = n->checkpoint;
    const uint64_t rng_calls = c->rng_calls;
    const int grad_enabled = c->grad_enabled;
    /* the replay's own tape sees only this block: the block's parameters may be read elsewhere
     * too, so the step's replay tells grad_ready about them after this node (backward.c) */
    rx_status (*grad_ready)(rx_ctx *, rx_tensor *) = c->grad_ready;
    c->grad_ready = NULL;
    c->rng_calls = info->rng_calls;
    c->grad_enabled = 1;
    c->tape = NULL;
    c->n_nodes = 0;
    rx_tensor *y = info->fn(c, info->block, n->in[0], n->in[1]);
    c->rng_calls = rng_calls;
    c->grad_enabled = grad_enabled;
    if (!y) return c->err;
    /* the block's inputs belong to the outer tape: the inner replay must not free them, and
     * their oldest reader on the outer tape must stay what the outer replay marked */
    rx_tensor *keep[2] = {n->in[0], n->in[1]};
    rx_node *last_use[2] = {NULL, NULL};
    uint8_t intermediate[2] = {0, 0};
    for (int i = 0; i < 2; i++)
        if (keep[i]) { last_use[i] = keep[i]->last_use; intermediate[i] = keep[i]->is_intermediate; keep[i]->is_intermediate = 0; }
    rx_status s = rx_backward_with(c, y, n->out->grad);
    c->grad_ready = grad_ready;
    for (int i = 0; i < 2; i++)
        if (keep[i]) { keep[i]->last_use = last_use[i]; keep[i]->is_intermediate = intermediate[i]; }
    if (s == RX_OK && c->release_in_backward) {   /* the recomputed output and its seed are done with */
        s = rx_arena_free(c->step, y->grad->data, (size_t)y->numel * sizeof(float));
        if (s == RX_OK) s = free_data(c, y);
    }
    return s;
}
