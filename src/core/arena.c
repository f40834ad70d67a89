#include "arena.h"
#include <stdlib.h>
#include <string.h>

typedef struct chunk {
    struct chunk *next;
    char  *base;
    size_t size, used;
} chunk;

/* One chunk list: allocation walks forward from `cur`; reset rewinds to the head. */
typedef struct chunk_list {
    chunk *head, *cur;
    size_t used_total;
} chunk_list;

/* A freed data block that is not at the top of the current chunk: reused, best fit first,
 * before the bump pointer moves on. Holes are coalesced with their neighbours. */
typedef struct hole {
    chunk *c;
    size_t off, size;
} hole;

struct rx_arena {
    char name[32];
    size_t chunk_bytes;
    rx_allocator alloc;
    int host_data;
    chunk_list meta, data;
    size_t data_used, data_peak, n_system;
    hole *holes;              /* data only; the array only grows, so a warm arena allocates nothing */
    int n_holes, cap_holes;
    /* while a scope is open (rx_arena_scope_begin), every data block handed out and not yet given
     * back, in order; grows like holes */
    struct logged { void *p; size_t size; } *log;
    int n_log, cap_log, scopes;
};

static void *host_alloc(void *ud, size_t n) { (void)ud; return aligned_alloc(64, (n + 63) & ~(size_t)63); }
static void  host_free(void *ud, void *p) { (void)ud; free(p); }

rx_status rx_arena_create(const char *name, size_t chunk_bytes, const rx_allocator *alloc, rx_arena **out) {
    rx_arena *a = calloc(1, sizeof *a);
    if (!a) return rx_fail(RX_ERR_OOM, "arena %s: out of host memory", name);
    snprintf(a->name, sizeof a->name, "%s", name);
    a->chunk_bytes = chunk_bytes ? chunk_bytes : (64u << 20);
    a->host_data = alloc == NULL;
    a->alloc = alloc ? *alloc : (rx_allocator){host_alloc, host_free, NULL};
    *out = a;
    return RX_OK;
}

static void list_free(chunk_list *l, const rx_allocator *al, int is_meta) {
    for (chunk *c = l->head, *n; c; c = n) {
        n = c->next;
        if (is_meta) free(c->base); else al->free(al->ud, c->base);
        free(c);
    }
}

void rx_arena_destroy(rx_arena *a) {
    if (!a) return;
    list_free(&a->meta, &a->alloc, 1);
    list_free(&a->data, &a->alloc, 0);
    free(a->holes);
    free(a->log);
    free(a);
}

static void *list_alloc(rx_arena *a, chunk_list *l, size_t bytes, size_t align, size_t chunk_bytes, int is_meta) {
    bytes = (bytes + align - 1) & ~(align - 1);
    if (bytes == 0) bytes = align;
    /* first fit from the current chunk on; chunks before `cur` are full for this step */
    for (chunk *c = l->cur ? l->cur : l->head; c; c = c->next) {
        if (c->size - c->used >= bytes) {
            void *p = c->base + c->used;
            c->used += bytes;
            l->cur = c;
            return p;
        }
    }
    size_t size = bytes > chunk_bytes ? bytes : chunk_bytes;
    chunk *c = calloc(1, sizeof *c);
    if (!c) { rx_fail(RX_ERR_OOM, "arena %s: out of host memory", a->name); return NULL; }
    c->base = is_meta ? aligned_alloc(64, (size + 63) & ~(size_t)63) : a->alloc.alloc(a->alloc.ud, size);
    if (!c->base) {
        free(c);
        rx_fail(RX_ERR_OOM, "arena %s: cannot allocate a chunk of %zu MiB", a->name, size >> 20);
        return NULL;
    }
    a->n_system++;
    c->size = size;
    c->used = bytes;
    /* append at the end so a reset walks chunks in the same order next step */
    chunk **tail = &l->head;
    while (*tail) tail = &(*tail)->next;
    *tail = c;
    l->cur = c;
    return c->base;
}

void *rx_arena_meta(rx_arena *a, size_t bytes) {
    void *p = list_alloc(a, &a->meta, bytes, 16, 1u << 20, 1);
    if (p) memset(p, 0, bytes);
    return p;
}

static size_t data_size(size_t bytes) { return bytes ? (bytes + 63) & ~(size_t)63 : 64; }

/* the smallest hole that fits, carved from its start; NULL when none fits */
static void *take_hole(rx_arena *a, size_t size) {
    int best = -1;
    for (int i = 0; i < a->n_holes; i++)
        if (a->holes[i].size >= size && (best < 0 || a->holes[i].size < a->holes[best].size)) best = i;
    if (best < 0) return NULL;
    hole *h = &a->holes[best];
    void *p = h->c->base + h->off;
    h->off += size;
    h->size -= size;
    if (h->size == 0) a->holes[best] = a->holes[--a->n_holes];
    return p;
}

static rx_status log_push(rx_arena *a, void *p, size_t size) {
    if (a->n_log == a->cap_log) {
        int cap = a->cap_log ? 2 * a->cap_log : 256;
        struct logged *l = realloc(a->log, (size_t)cap * sizeof *l);
        if (!l) return rx_fail(RX_ERR_OOM, "arena %s: out of host memory", a->name);
        a->log = l;
        a->cap_log = cap;
    }
    a->log[a->n_log++] = (struct logged){p, size};
    return RX_OK;
}

void *rx_arena_data(rx_arena *a, size_t bytes) {
    const size_t size = data_size(bytes);
    void *p = take_hole(a, size);
    if (!p) p = list_alloc(a, &a->data, bytes, 64, a->chunk_bytes, a->host_data);
    if (p) {
        a->data_used += size;
        if (a->data_used > a->data_peak) a->data_peak = a->data_used;
        if (a->scopes && log_push(a, p, size) != RX_OK) return NULL;
    }
    return p;
}

/* merge hole i with a hole that ends where it starts or starts where it ends (same chunk) */
static void coalesce(rx_arena *a, int i) {
    for (int j = 0; j < a->n_holes; j++) {
        if (j == i || a->holes[j].c != a->holes[i].c) continue;
        hole *h = &a->holes[i], *o = &a->holes[j];
        if (o->off + o->size == h->off || h->off + h->size == o->off) {
            if (o->off < h->off) h->off = o->off;
            h->size += o->size;
            a->holes[j] = a->holes[--a->n_holes];
            if (i == a->n_holes) i = j;   /* h moved into j's slot */
            j = -1;                       /* look again: the grown hole may touch another */
        }
    }
}

rx_status rx_arena_free(rx_arena *a, void *p, size_t bytes) {
    if (!p) return RX_OK;
    const size_t size = data_size(bytes);
    chunk *c = a->data.head;
    while (c && !((char *)p >= c->base && (char *)p + size <= c->base + c->used)) c = c->next;
    if (!c) return rx_fail(RX_ERR_INTERNAL, "arena %s: free of %zu bytes that it did not hand out", a->name, bytes);
    a->data_used -= size;
    for (int i = a->n_log - 1; i >= 0; i--)   /* workspaces are given back last-in first-out: found at once */
        if (a->log[i].p == p) {
            memmove(a->log + i, a->log + i + 1, (size_t)(a->n_log - i - 1) * sizeof *a->log);
            a->n_log--;
            break;
        }
    const size_t off = (size_t)((char *)p - c->base);
    if (c == a->data.cur && off + size == c->used) {   /* the top of the current chunk: lower the bump pointer */
        c->used = off;
        for (int i = 0; i < a->n_holes; i++)   /* and swallow a hole that now ends at the top */
            if (a->holes[i].c == c && a->holes[i].off + a->holes[i].size == c->used) {
                c->used = a->holes[i].off;
                a->holes[i] = a->holes[--a->n_holes];
                i = -1;
            }
        return RX_OK;
    }
    if (a->n_holes == a->cap_holes) {
        int cap = a->cap_holes ? 2 * a->cap_holes : 64;
        hole *h = realloc(a->holes, (size_t)cap * sizeof *h);
        if (!h) return rx_fail(RX_ERR_OOM, "arena %s: out of host memory", a->name);
        a->holes = h;
        a->cap_holes = cap;
    }
    a->holes[a->n_holes++] = (hole){c, off, size};
    coalesce(a, a->n_holes - 1);
    return RX_OK;
}

void rx_arena_reset(rx_arena *a) {
    for (chunk *c = a->meta.head; c; c = c->next) c->used = 0;
    for (chunk *c = a->data.head; c; c = c->next) c->used = 0;
    a->meta.cur = a->meta.head;
    a->data.cur = a->data.head;
    a->data_used = 0;
    a->n_holes = 0;
    a->n_log = 0;
    a->scopes = 0;
}

int rx_arena_scope_begin(rx_arena *a) {
    a->scopes++;
    return a->n_log;
}

rx_status rx_arena_scope_end(rx_arena *a, int scope, const void *keep) {
    rx_status s = RX_OK;
    struct logged kept = {NULL, 0};
    while (a->n_log > scope) {
        struct logged l = a->log[--a->n_log];
        if (l.p == keep) { kept = l; continue; }
        if (s == RX_OK) s = rx_arena_free(a, l.p, l.size);
    }
    a->scopes--;
    if (kept.p && a->scopes && s == RX_OK) s = log_push(a, kept.p, kept.size);   /* the outer scope owns it now */
    return s;
}

size_t rx_arena_data_used(const rx_arena *a) { return a->data_used; }
size_t rx_arena_data_peak(const rx_arena *a) { return a->data_peak; }
void rx_arena_peak_reset(rx_arena *a) { a->data_peak = a->data_used; }
size_t rx_arena_system_allocs(const rx_arena *a) { return a->n_system; }
