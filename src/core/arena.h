/* arena.h — bump allocators that are reset, not freed.
 *
 * A run has two: the persistent arena (parameters, gradients of parameters, optimizer
 * state, EMA) and the step arena (activations, saved tensors, scratch) that is reset
 * after every training or sampling step. Chunks are kept across resets, so once the
 * first step has sized the arena the training loop allocates nothing from the system.
 *
 * Data blocks may also be given back early (rx_arena_free): backward releases activations
 * and gradients after their last use, so a step's peak is not the sum of all it touched.
 *
 * An arena hands out two kinds of memory: `meta` (host memory for tensor headers and
 * tape nodes) and `data` (tensor storage on the arena's device, obtained through the
 * allocator it was created with). On the CPU both are host memory. */
#ifndef RX_ARENA_H
#define RX_ARENA_H

#include <stddef.h>
#include "status.h"

typedef struct rx_allocator {
    void *(*alloc)(void *ud, size_t bytes);   /* NULL on failure */
    void  (*free)(void *ud, void *p);
    void  *ud;
} rx_allocator;

typedef struct rx_arena rx_arena;

/* chunk_bytes: size of each new data chunk (a larger request gets its own chunk).
 * alloc == NULL means host memory (64-byte aligned). */
rx_status rx_arena_create(const char *name, size_t chunk_bytes, const rx_allocator *alloc, rx_arena **out);
void      rx_arena_destroy(rx_arena *a);
void     *rx_arena_meta(rx_arena *a, size_t bytes);   /* host, zeroed, 16-byte aligned; NULL + rx_fail on OOM */
void     *rx_arena_data(rx_arena *a, size_t bytes);   /* device storage, 64-byte aligned; NULL + rx_fail on OOM */
/* Give back a block of rx_arena_data (the same pointer and byte count) before the reset: the
 * space is reused by later requests of this step (best fit, neighbours merged). */
rx_status rx_arena_free(rx_arena *a, void *p, size_t bytes);
void      rx_arena_reset(rx_arena *a);                /* everything handed out becomes invalid */
/* A scope: every data block handed out after rx_arena_scope_begin and not given back by then is
 * given back by rx_arena_scope_end, except `keep` (a block's output; NULL for none). Scopes nest;
 * an inner scope's kept block belongs to the enclosing scope. */
int       rx_arena_scope_begin(rx_arena *a);
rx_status rx_arena_scope_end(rx_arena *a, int scope, const void *keep);
size_t    rx_arena_data_used(const rx_arena *a);      /* bytes handed out since the last reset */
size_t    rx_arena_data_peak(const rx_arena *a);      /* high-water mark since creation or rx_arena_peak_reset */
void      rx_arena_peak_reset(rx_arena *a);           /* the high-water mark starts again from what is in use */
size_t    rx_arena_system_allocs(const rx_arena *a);  /* number of chunk allocations so far (tests: no malloc in the loop) */

#endif
