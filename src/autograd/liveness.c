/* liveness.c — see liveness.h. */
#include "autograd/liveness.h"
#include "kernels/backend.h"
#include <stdlib.h>
#include <string.h>

struct rx_fwd_plan {
    /* learned from a tape: one row per node, in the order the forward recorded them */
    int64_t  n, cap;
    int32_t *op;          /* [n] RX_OP_*, -1 for a checkpointed block                          */
    int32_t *n_in;        /* [n]                                                               */
    int64_t *src;         /* [n * RX_MAX_IN] the node whose output is input i, -1: none on the tape */
    int64_t *root;        /* [n] the node that owns this node's output data (itself unless a view) */
    int64_t *free_at;     /* [n + 1] outputs given back after node k: free_idx[free_at[k], free_at[k+1]) */
    int64_t *free_idx;    /* [n] node indices, ascending within each k                          */
    /* this step's forward */
    rx_node **cur;        /* [n] the nodes recorded so far, by index                           */
    int      forwarding;  /* between rx_fwd_plan_begin and the backward                        */
    int      following;   /* every node so far matched the plan                                */
};

static void plan_free(rx_fwd_plan *p) {
    if (!p) return;
    free(p->op); free(p->n_in); free(p->src); free(p->root); free(p->free_at); free(p->free_idx); free(p->cur);
    free(p);
}

static rx_status plan_reserve(rx_fwd_plan *p, int64_t n) {
    if (n <= p->cap) return RX_OK;
    const int64_t cap = n > 2 * p->cap ? n : 2 * p->cap;
    void *op = realloc(p->op, cap * sizeof *p->op), *n_in = realloc(p->n_in, cap * sizeof *p->n_in);
    if (op) p->op = op;
    if (n_in) p->n_in = n_in;
    void *src = realloc(p->src, cap * RX_MAX_IN * sizeof *p->src), *root = realloc(p->root, cap * sizeof *p->root);
    if (src) p->src = src;
    if (root) p->root = root;
    void *fa = realloc(p->free_at, (cap + 1) * sizeof *p->free_at), *fi = realloc(p->free_idx, cap * sizeof *p->free_idx);
    if (fa) p->free_at = fa;
    if (fi) p->free_idx = fi;
    void *cur = realloc(p->cur, cap * sizeof *p->cur);
    if (cur) p->cur = cur;
    if (!op || !n_in || !src || !root || !fa || !fi || !cur) return rx_fail(RX_ERR_OOM, "forward plan: out of memory for %lld nodes", (long long)n);
    p->cap = cap;
    return RX_OK;
}

/* after node n (index k) is recorded: check it against the plan, then give back the outputs
 * whose last forward reader it is and that no backward reads, with the views of them */
static rx_status plan_recorded(rx_ctx *c, rx_node *n) {
    rx_fwd_plan *p = c->fwd_plan;
    if (!p->forwarding || !p->following) return RX_OK;
    const int64_t k = n->index;
    int same = k < p->n && p->op[k] == n->op && p->n_in[k] == n->n_in;
    for (int i = 0; same && i < n->n_in; i++) {
        const int64_t s = p->src[k * RX_MAX_IN + i];
        if (s >= 0) same = n->in[i] == p->cur[s]->out;
    }
    if (!same) { p->following = 0; return RX_OK; }
    p->cur[k] = n;
    for (int64_t f = p->free_at[k]; f < p->free_at[k + 1]; f++) {
        const int64_t j = p->free_idx[f];
        rx_tensor *t = p->cur[j]->out;
        if (!t->data) continue;
        RX_TRY(rx_arena_free(c->step, t->data, (size_t)t->numel * sizeof(float)));
        t->data = NULL;
        for (int64_t v = j + 1; v <= k; v++)   /* views of it share the data: none may keep the pointer */
            if (p->root[v] == j) p->cur[v]->out->data = NULL;
    }
    return RX_OK;
}

rx_status rx_fwd_plan_create(rx_ctx *c) {
    if (c->fwd_plan) return RX_OK;
    rx_fwd_plan *p = calloc(1, sizeof *p);
    if (!p) return rx_fail(RX_ERR_OOM, "forward plan: out of memory");
    c->fwd_plan = p;
    c->fwd_plan_recorded = plan_recorded;
    c->fwd_plan_free = plan_free;
    return RX_OK;
}

void rx_fwd_plan_begin(rx_ctx *c) {
    rx_fwd_plan *p = c->fwd_plan;
    if (!p) return;
    p->forwarding = !c->checkpointing;   /* a checkpointed block's nodes are recorded on a tape of its own */
    p->following = p->n > 0;
}

/* the last forward reader of each output and whether a backward reads its data */
static void analyse(rx_fwd_plan *p, rx_node **nodes, int64_t *last, uint8_t *needed) {
    const int64_t n = p->n;
    for (int64_t k = 0; k < n; k++) { last[k] = -1; needed[k] = 0; }
    for (int64_t k = 0; k < n; k++) {
        const rx_node *nd = nodes[k];
        const unsigned reads = nd->op >= 0 ? rx_op_bwd_reads[nd->op] : ~0u;   /* a checkpointed block reads all */
        for (int i = 0; i < nd->n_in; i++) {
            const int64_t s = p->src[k * RX_MAX_IN + i], r = s >= 0 ? p->root[s] : -1;
            if (r < 0) continue;
            last[r] = k;
            if (reads & (1u << i)) needed[r] = 1;
        }
        if ((reads & RX_BWD_READS_OUT) && p->root[k] >= 0) needed[p->root[k]] = 1;
        for (int j = 0; j < 4; j++) {   /* a saved tensor that is some node's output (attention keeps O) */
            const rx_tensor *t = nd->saved[j];
            if (t && t->last_use && p->root[t->last_use->index] >= 0) needed[p->root[t->last_use->index]] = 1;
        }
    }
}

rx_status rx_fwd_plan_learn(rx_ctx *c) {
    rx_fwd_plan *p = c->fwd_plan;
    if (!p || !p->forwarding) return RX_OK;
    p->forwarding = 0;
    int64_t n = 0;
    for (rx_node *t = c->tape; t; t = t->prev) n++;
    p->n = 0;
    if (n == 0) return RX_OK;
    RX_TRY(plan_reserve(p, n));
    p->n = n;
    rx_node **nodes = p->cur;   /* this step's nodes, in order (the lookup the next forward refills) */
    for (rx_node *t = c->tape; t; t = t->prev) nodes[--n] = t;
    n = p->n;
    for (int64_t k = 0; k < n; k++) nodes[k]->index = k;   /* positions, whatever the counter said */
    /* last_use is free until mark_last_uses: here it names the node that made a tensor */
    for (int64_t k = 0; k < n; k++) {
        for (int i = 0; i < nodes[k]->n_in; i++) if (nodes[k]->in[i]) nodes[k]->in[i]->last_use = NULL;
        for (int j = 0; j < 4; j++) if (nodes[k]->saved[j]) nodes[k]->saved[j]->last_use = NULL;
    }
    for (int64_t k = 0; k < n; k++) nodes[k]->out->last_use = nodes[k];
    for (int64_t k = 0; k < n; k++) {
        const rx_node *nd = nodes[k];
        p->op[k] = nd->op;
        p->n_in[k] = nd->n_in;
        for (int i = 0; i < RX_MAX_IN; i++) {
            const rx_tensor *x = i < nd->n_in ? nd->in[i] : NULL;
            p->src[k * RX_MAX_IN + i] = x && x->last_use ? x->last_use->index : -1;
        }
        const int64_t s0 = p->src[k * RX_MAX_IN];
        p->root[k] = !nd->out->is_view ? k : s0 >= 0 ? p->root[s0] : -1;   /* a view of the caller's tensor: never ours */
    }
    int64_t *last = malloc((size_t)(n ? n : 1) * sizeof *last);
    uint8_t *needed = malloc((size_t)(n ? n : 1));
    if (!last || !needed) { free(last); free(needed); return rx_fail(RX_ERR_OOM, "forward plan: out of memory"); }
    analyse(p, nodes, last, needed);
    /* counting sort of the freeable outputs by their last reader */
    memset(p->free_at, 0, (size_t)(n + 1) * sizeof *p->free_at);
    for (int64_t j = 0; j < n; j++)
        if (p->root[j] == j && last[j] >= 0 && !needed[j]) p->free_at[last[j] + 1]++;
    for (int64_t k = 0; k < n; k++) p->free_at[k + 1] += p->free_at[k];
    int64_t *pos = malloc((size_t)(n ? n : 1) * sizeof *pos);
    if (!pos) { free(last); free(needed); return rx_fail(RX_ERR_OOM, "forward plan: out of memory"); }
    for (int64_t k = 0; k < n; k++) pos[k] = p->free_at[k];
    for (int64_t j = 0; j < n; j++)
        if (p->root[j] == j && last[j] >= 0 && !needed[j]) p->free_idx[pos[last[j]]++] = j;
    free(pos);
    free(last);
    free(needed);
    for (int64_t k = 0; k < n; k++) nodes[k]->out->last_use = NULL;
    return RX_OK;
}

rx_status rx_fwd_plan_copy(rx_ctx *dst, const rx_ctx *src) {
    const rx_fwd_plan *s = src->fwd_plan;
    if (!s) return rx_fail(RX_ERR_INTERNAL, "forward plan: the source context has none");
    RX_TRY(rx_fwd_plan_create(dst));
    rx_fwd_plan *d = dst->fwd_plan;
    RX_TRY(plan_reserve(d, s->n));
    const int64_t n = d->n = s->n;
    if (n == 0) return RX_OK;
    memcpy(d->op, s->op, n * sizeof *d->op);
    memcpy(d->n_in, s->n_in, n * sizeof *d->n_in);
    memcpy(d->src, s->src, n * RX_MAX_IN * sizeof *d->src);
    memcpy(d->root, s->root, n * sizeof *d->root);
    memcpy(d->free_at, s->free_at, (n + 1) * sizeof *d->free_at);
    memcpy(d->free_idx, s->free_idx, (size_t)s->free_at[n] * sizeof *d->free_idx);
    return RX_OK;
}

void rx_fwd_plan_size(const rx_ctx *c, int64_t *nodes, int64_t *frees) {
    const rx_fwd_plan *p = c->fwd_plan;
    *nodes = p ? p->n : 0;
    *frees = p && p->n ? p->free_at[p->n] : 0;
}
