/* plan.c — the planning backend: every op's shapes, outputs, tape and frees happen as in a real
 * step, but no kernel runs and no memory exists. Arenas hand out addresses from a counter that
 * nothing dereferences, so a context on this backend measures exactly what the step arena and
 * the persistent arena would hold (rx_arena_data_peak) for any model size, in milliseconds:
 * `runexp check` predicts a run's memory with it, and `runexp` refuses a run that cannot fit
 * before allocating anything.
 *
 * What kernels allocate inside themselves is placed by a plan kernel where it is large: the CPU
 * conv's workspace (oneDNN's scratchpad and blocked copies, cpu/conv_onednn.c, or the reference's
 * per-thread column matrices, cpu/dense.c), taken and given back as the kernel does.
 * With a plan state (rx_plan_state, backend.h) as the context's be_state, the largest bf16
 * operand request of the CUDA backend at precision bf16 (kernels/bf16_operands.h) is kept too.
 * Not seen: the norms' saved statistics and the attention's row log-sum-exp (a few floats per
 * row) — why the prediction is quoted within 10 %. */
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "kernels/bf16_operands.h"
#include <omp.h>
#include <string.h>

/* 64-byte-aligned addresses that are never read or written; 2^44 bytes of room per arena
 * reservation, far beyond any device, so distinct chunks never overlap */
static void *fake_alloc(void *ud, size_t bytes) {
    static uintptr_t next = (uintptr_t)1 << 44;
    uintptr_t p = __atomic_fetch_add(&next, (bytes + 127) & ~(uintptr_t)63, __ATOMIC_RELAXED);
    return (void *)p;
}
static void fake_free(void *ud, void *p) {}

static rx_status no_copy(rx_ctx *c, void *dst, const void *src, size_t bytes) { return RX_OK; }
/* values read back from a plan are zeros (host memory is real) */
static rx_status zeros_to_host(rx_ctx *c, void *dst, const void *src, size_t bytes) {
    memset(dst, 0, bytes);
    return RX_OK;
}
static rx_status no_fill(rx_ctx *c, float *dst, float v, int64_t n) { return RX_OK; }
/* an op's workspace in floats, as the CPU kernel takes it: conv2d's is cpu/conv_onednn.c's
 * answer (oneDNN's scratchpad and blocked copies, or the reference's column matrices) */
typedef rx_status (*workspace_fn)(rx_ctx *c, rx_node *n, int backward, int64_t *floats);
static const workspace_fn workspace_of[RX_OP_COUNT] = {[RX_OP_CONV2D] = cpu_conv2d_workspace};

/* an op's workspace taken and given back, as its kernel would */
static rx_status place_workspace(rx_ctx *c, rx_node *n, int backward) {
    int64_t floats = 0;
    if (workspace_of[n->op]) RX_TRY(workspace_of[n->op](c, n, backward, &floats));
    if (floats <= 0) return RX_OK;
    void *p = rx_arena_data(c->step, (size_t)floats * sizeof(float));
    if (!p) return RX_ERR_OOM;
    return rx_arena_free(c->step, p, (size_t)floats * sizeof(float));
}
/* what the CUDA backend's bf16 path would ask of its operand slot for this kernel */
static void note_bf16_request(rx_ctx *c, const rx_node *n, int backward) {
    rx_plan_state *st = c->be_state;
    if (!st) return;
    const size_t r = rx_bf16_request(n, backward);
    if (r > st->bf16_request_max) st->bf16_request_max = r;
}
static rx_status plan_fwd(rx_ctx *c, rx_node *n) {
    note_bf16_request(c, n, 0);
    return place_workspace(c, n, 0);
}
static rx_status plan_bwd(rx_ctx *c, rx_node *n) {
    note_bf16_request(c, n, 1);
    return place_workspace(c, n, 1);
}
static rx_status no_axpy(rx_ctx *c, float *y, float a, const float *x, int64_t n) { return RX_OK; }
static rx_status zero_sumsq(rx_ctx *c, const float *x, int64_t n, double *out) { *out = 0; return RX_OK; }
static rx_status no_adamw(rx_ctx *c, float *p, const float *g, float *m, float *v, int64_t n, const rx_adamw_args *a) {
    return RX_OK;
}
static rx_status no_ema(rx_ctx *c, float *ema, const float *p, float decay, int64_t n) { return RX_OK; }
static rx_status no_adamw_multi(rx_ctx *c, const rx_mt_args *a) { return RX_OK; }
static rx_status no_sync(rx_ctx *c) { return RX_OK; }

static const rx_backend plan_backend = {
    .name = "plan",
    .mem = {.device = RX_DEV_PLAN, .data_alloc = {fake_alloc, fake_free, NULL}, .to_device = no_copy,
            .to_host = zeros_to_host, .copy = no_copy, .fill = no_fill},
    .fwd = {
#define OP(ID, name, family, reads) [RX_OP_##ID] = plan_fwd,
#include "ops.def"
#undef OP
    },
    .bwd = {
#define OP(ID, name, family, reads) [RX_OP_##ID] = plan_bwd,
#include "ops.def"
#undef OP
    },
    .axpy = no_axpy, .sumsq = zero_sumsq, .adamw = no_adamw, .ema = no_ema, .adamw_multi = no_adamw_multi, .sync = no_sync,
};

const rx_backend *rx_backend_plan(void) { return &plan_backend; }
