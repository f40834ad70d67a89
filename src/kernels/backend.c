/* backend.c — a context on a backend: its arenas on the backend's memory. */
#include "kernels/backend.h"
#include <omp.h>
#include <stdlib.h>

rx_status rx_ctx_create(const rx_backend *be, void *be_state, size_t step_chunk, rx_ctx **out) {
    /* One level of threads: kernels parallelise over batch/channels and call BLAS inside;
     * a nested team (OpenBLAS's OpenMP build inside our regions) would create fresh
     * threads on every call — measured ~400 thread creations per training step. */
    omp_set_max_active_levels(1);
    rx_ctx *c = calloc(1, sizeof *c);
    if (!c) return rx_fail(RX_ERR_OOM, "out of host memory creating a context");
    c->be = be;
    c->mem = &be->mem;
    c->be_state = be_state;
    const rx_allocator *al = be->mem.device == RX_DEV_CPU ? NULL : &be->mem.data_alloc;
    rx_status s = rx_arena_create("step", step_chunk ? step_chunk : (256u << 20), al, &c->step);
    if (s == RX_OK) s = rx_arena_create("persist", 64u << 20, al, &c->persist);
    if (s != RX_OK) { rx_ctx_destroy(c); return s; }
    c->grad_enabled = 1;
    *out = c;
    return RX_OK;
}

void rx_ctx_destroy(rx_ctx *c) {
    if (!c) return;
    if (c->fwd_plan_free) c->fwd_plan_free(c->fwd_plan);
    if (c->kernel_cache_free) c->kernel_cache_free(c->kernel_cache);
    rx_arena_destroy(c->step);
    rx_arena_destroy(c->persist);
    free(c);
}
