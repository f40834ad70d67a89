/* grad_buckets.c — the gradient all-reduce, in buckets started while backward runs (dist.h).
 *
 *     buckets   the parameters with a gradient, last registered first, cut every cap floats
 *               (RUNEXP_BUCKET_MB; a larger parameter is a bucket alone; 0: one bucket)
 *     backward  c->grad_ready(p) when p's gradient is final: MPI copies it into the bucket's
 *               slice of one flat host buffer; the bucket whose gradients are all in starts,
 *               after every bucket before it (the same order of collectives on every rank)
 *     after     the buckets not started (a parameter no node read, a failed backward) start
 *     mean      wait for all; MPI: sum / world written back into the gradients
 *
 * The host buffer holds every gradient once (the model's size in fp32): a bucket's
 * MPI_Iallreduce works in place on its slice while backward writes other gradients. With NCCL
 * the gradients stay on the device and a bucket is one group of in-place ncclAllReduce calls
 * (dist_nccl.c). The mean is the one the single all-reduce after backward computed: the ranks'
 * float sum of each element, times 1/world. */
#include "dist/dist.h"
#include "core/paramset.h"
#include "core/tensor.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bucket {
    int     first, n;       /* its parameters: param[first, first + n) */
    int64_t off, numel;     /* its slice of the host buffer, in floats */
    int     pending;        /* of its parameters, how many are not final yet this step */
    int     req0, n_req;    /* its MPI requests: req[req0, req0 + n_req) (INT_MAX floats each) */
} bucket;

typedef struct addr_slot { const rx_tensor *t; int slot; } addr_slot;

static struct {
    rx_tensor **set;         /* [n_set] the paramset's tensors the buckets were cut for */
    int         n_set;
    rx_tensor **param;       /* [n_param] with a gradient, in bucket order */
    int64_t    *off;         /* [n_param] offset in the host buffer */
    int        *bucket_of;   /* [n_param] */
    uint8_t    *final;       /* [n_param] final this step */
    addr_slot  *by_addr;     /* [n_param] sorted by tensor address: the announcement's lookup */
    int         n_param;
    bucket     *b;
    int         n_bucket;
    int64_t     max_numel;   /* the largest bucket */
    float      *host;        /* [total] every gradient, MPI only; NULL with NCCL */
    int64_t     total;       /* floats of all the gradients */
    rx_dist_req *req;
    int         n_req;
    int         started;     /* buckets [0, started) are under way this step */
    int         armed;       /* a step between rx_dist_grad_arm and its mean or drop */
    rx_status   late;        /* a failure inside an announcement, kept for start_rest */
    int         in_backward; /* buckets started by announcements this step, */
    int         last_in_backward;   /* and in the last step that finished */
} gb;

static void buckets_free(void) {
    free(gb.set); free(gb.param); free(gb.off); free(gb.bucket_of); free(gb.final); free(gb.by_addr);
    free(gb.b); free(gb.host); free(gb.req);
    memset(&gb, 0, sizeof gb);
}

static int by_address(const void *a, const void *b) {
    const uintptr_t x = (uintptr_t)((const addr_slot *)a)->t, y = (uintptr_t)((const addr_slot *)b)->t;
    return (x > y) - (x < y);
}

/* floats per bucket: RUNEXP_BUCKET_MB MiB, at least one float; 0 MiB: everything in one */
static int64_t bucket_cap(void) {
    const double mb = rx_dist_world()->bucket_mb;
    if (mb <= 0) return INT64_MAX;
    const double floats = mb * (1 << 20) / sizeof(float);
    return floats < 1 ? 1 : (int64_t)floats;
}

static rx_status buckets_alloc(int n_param, int n_bucket, int64_t total, int host) {
    gb.param = malloc((size_t)(n_param + 1) * sizeof *gb.param);
    gb.off = malloc((size_t)(n_param + 1) * sizeof *gb.off);
    gb.bucket_of = malloc((size_t)(n_param + 1) * sizeof *gb.bucket_of);
    gb.final = calloc((size_t)n_param + 1, 1);
    gb.by_addr = malloc((size_t)(n_param + 1) * sizeof *gb.by_addr);
    gb.b = calloc((size_t)n_bucket + 1, sizeof *gb.b);
    gb.host = host ? malloc((size_t)(total ? total : 1) * sizeof *gb.host) : NULL;
    if (!gb.param || !gb.off || !gb.bucket_of || !gb.final || !gb.by_addr || !gb.b || (host && !gb.host))
        return rx_fail(RX_ERR_OOM, "dist: out of memory for the gradient buckets (%lld floats)", (long long)total);
    return RX_OK;
}

/* cut ps's gradients into buckets: the same walk twice, counting, then filling */
static rx_status buckets_build(const rx_paramset *ps) {
    buckets_free();
    const int64_t cap = bucket_cap();
    int n_param = 0, n_bucket = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) RX_TRY(buckets_alloc(n_param, n_bucket, gb.total, !rx_dist_world()->nccl));
        int np = 0, nb = 0;
        int64_t used = 0, total = 0;   /* used: floats in the open bucket nb - 1 */
        for (int i = ps->n - 1; i >= 0; i--) {
            rx_tensor *t = ps->t[i];
            if (!t->grad) continue;
            if (nb == 0 || used + t->numel > cap) {   /* a new bucket (a parameter over cap: alone) */
                if (pass == 1) gb.b[nb] = (bucket){.first = np, .off = total};
                nb++, used = 0;
            }
            if (pass == 1) {
                gb.param[np] = t, gb.off[np] = total, gb.bucket_of[np] = nb - 1;
                gb.by_addr[np] = (addr_slot){t, np};
                gb.b[nb - 1].n++, gb.b[nb - 1].numel += t->numel;
            }
            np++, used += t->numel, total += t->numel;
        }
        n_param = np, n_bucket = nb, gb.total = total;
    }
    /* a bucket over INT_MAX floats goes in several MPI calls */
    int r = 0;
    for (int k = 0; k < n_bucket; k++) {
        bucket *b = &gb.b[k];
        b->req0 = r, b->n_req = (int)((b->numel + INT_MAX - 1) / INT_MAX);
        r += b->n_req;
        b->pending = b->n;
        if (b->numel > gb.max_numel) gb.max_numel = b->numel;
    }
    gb.req = calloc((size_t)r + 1, sizeof *gb.req);
    gb.set = malloc((size_t)(ps->n + 1) * sizeof *gb.set);
    if (!gb.req || !gb.set) return rx_fail(RX_ERR_OOM, "dist: out of memory for the gradient buckets");
    gb.n_req = r, gb.n_param = n_param, gb.n_bucket = n_bucket;
    qsort(gb.by_addr, (size_t)n_param, sizeof *gb.by_addr, by_address);
    if (ps->n) memcpy(gb.set, ps->t, (size_t)ps->n * sizeof *gb.set);
    gb.n_set = ps->n;
    return RX_OK;
}

static int slot_of(const rx_tensor *p) {
    const addr_slot key = {p, 0}, *hit = bsearch(&key, gb.by_addr, (size_t)gb.n_param, sizeof key, by_address);
    return hit ? hit->slot : -1;
}

/* parameter j is final: its host copy (MPI) and its bucket's count */
static rx_status take(rx_ctx *c, int j) {
    gb.final[j] = 1;
    gb.b[gb.bucket_of[j]].pending--;
    if (!gb.host) return RX_OK;
    const rx_tensor *g = gb.param[j]->grad;
    return c->mem->to_host(c, gb.host + gb.off[j], g->data, (size_t)g->numel * sizeof(float));
}

static rx_status start_bucket(rx_ctx *c, const bucket *b) {
    gb.started++;
    if (rx_dist_world()->nccl) return rx_dist_nccl_bucket_start(c, gb.param + b->first, b->n);
    const rx_dist_ops *ops = rx_dist_world()->ops;
    for (int q = 0; q < b->n_req; q++) {
        const int64_t o = (int64_t)q * INT_MAX, m = b->numel - o < INT_MAX ? b->numel - o : INT_MAX;
        RX_TRY(ops->iallreduce_sum_f32(gb.host + b->off + o, (int)m, &gb.req[b->req0 + q]));
    }
    return RX_OK;
}

/* the announcement (c->grad_ready): count it, start what is ready, and drive MPI on */
static rx_status on_grad_ready(rx_ctx *c, rx_tensor *p) {
    const int j = slot_of(p);
    if (j < 0) return RX_OK;   /* not one of this set's (a frozen model's parameter) */
    if (gb.final[j])
        return rx_fail(RX_ERR_INTERNAL, "dist: the gradient of %s was announced final twice in one step", p->name ? p->name : "?");
    rx_status s = take(c, j);
    while (!s && gb.started < gb.n_bucket && gb.b[gb.started].pending == 0) {
        s = start_bucket(c, &gb.b[gb.started]);
        gb.in_backward++;
    }
    if (!s && gb.in_backward) s = rx_dist_test_fault_in_backward();   /* tests only: "bwd" in RX_DIST_TEST_FAULT */
    if (!s && !rx_dist_world()->nccl && gb.started) {
        const bucket *last = &gb.b[gb.started - 1];
        s = rx_dist_world()->ops->test(gb.req, last->req0 + last->n_req);
    }
    if (s && !gb.late) gb.late = s;
    return s;
}

static int buckets_of(const rx_paramset *ps) {
    return gb.set && gb.n_set == ps->n && (ps->n == 0 || !memcmp(gb.set, ps->t, (size_t)ps->n * sizeof *gb.set));
}

rx_status rx_dist_grad_arm(rx_ctx *c, const rx_paramset *ps) {
    const rx_dist *w = rx_dist_world();
    if (w->world == 1 && !w->nccl) return RX_OK;
    if (gb.armed) return rx_fail(RX_ERR_INTERNAL, "dist: a step's gradients are armed twice");
    if (!buckets_of(ps)) RX_TRY(buckets_build(ps));
    gb.armed = 1, gb.started = 0, gb.late = RX_OK, gb.in_backward = 0;
    /* one bucket: nothing to overlap; it starts after the backward (rx_dist_grad_start_rest) */
    c->grad_ready = gb.n_bucket > 1 ? on_grad_ready : NULL;
    return RX_OK;
}

rx_status rx_dist_grad_start_rest(rx_ctx *c) {
    if (!gb.armed) return RX_OK;
    c->grad_ready = NULL;
    /* every bucket starts, even when a copy fails: the other ranks' collectives wait for this
     * rank's; the first failure is returned (and the step agreement stops every rank) */
    rx_status s = gb.late;
    for (int j = 0; j < gb.n_param; j++)
        if (!gb.final[j]) {
            rx_status t = take(c, j);
            if (!s) s = t;
        }
    while (gb.started < gb.n_bucket) {   /* nonblocking: no rank waits here */
        rx_status t = start_bucket(c, &gb.b[gb.started]);
        if (t) { s = s ? s : t; break; }   /* the transport itself failed: nothing more can be issued */
    }
    return s;
}

static void disarm(void) {
    for (int k = 0; k < gb.n_bucket; k++) gb.b[k].pending = gb.b[k].n;
    memset(gb.final, 0, (size_t)gb.n_param);
    gb.last_in_backward = gb.in_backward;
    gb.armed = 0, gb.started = 0, gb.late = RX_OK, gb.in_backward = 0;
}

static rx_status wait_all(rx_ctx *c) {
    rx_dist_in_collective = 1;
    rx_status s = rx_dist_world()->nccl ? rx_dist_nccl_bucket_wait(c) : rx_dist_world()->ops->wait(gb.req, gb.n_req);
    rx_dist_in_collective = 0;
    return s;
}

rx_status rx_dist_grad_mean(rx_ctx *c, const rx_paramset *ps) {
    const rx_dist *w = rx_dist_world();
    if (w->world == 1 && !w->nccl) return RX_OK;
    if (!gb.armed) {
        RX_TRY(rx_dist_grad_arm(c, ps));
        c->grad_ready = NULL;
        RX_TRY(rx_dist_grad_start_rest(c));
    }
    rx_status s = wait_all(c);
    if (!s && gb.host) {
        const float inv = 1.0f / (float)w->world;   /* sum / world: the full batch's mean gradient */
        for (int64_t k = 0; k < gb.total; k++) gb.host[k] *= inv;
        for (int j = 0; j < gb.n_param && !s; j++) {
            rx_tensor *g = gb.param[j]->grad;
            s = c->mem->to_device(c, g->data, gb.host + gb.off[j], (size_t)g->numel * sizeof(float));
        }
    }
    disarm();
    return s;
}

rx_status rx_dist_grad_drop(rx_ctx *c, rx_status why) {
    if (!gb.armed) return why;
    c->grad_ready = NULL;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", why ? rx_last_error() : "");
    /* every rank issued every bucket (start_rest): the waits end; their result is moot */
    if (gb.started == gb.n_bucket && wait_all(c) != RX_OK) rx_clear_error();
    disarm();
    return why ? rx_fail(why, "%s", msg) : RX_OK;
}

void rx_dist_grad_buckets(int *n, int64_t *max_floats, int *in_backward) {
    *n = gb.n_bucket;
    *max_floats = gb.max_numel;
    *in_backward = gb.last_in_backward;
}
