/* cpu.h — the CPU kernels (the reference backend). For every op in ops.def:
 *   rx_status cpu_<name>_fwd(rx_ctx *c, rx_node *n);   writes n->out
 *   rx_status cpu_<name>_bwd(rx_ctx *c, rx_node *n);   adds into n->in[k]->grad
 * Declared weak so that the table links while an op family is being written;
 * tests/test_ops_table.c fails if any op lacks a kernel. */
#ifndef RX_CPU_H
#define RX_CPU_H

#include "core/parallel.h"
#include "kernels/backend.h"
#include "kernels/dispatch.h"

#define OP(ID, name, family, reads) \
    rx_status cpu_##name##_fwd(rx_ctx *c, rx_node *n) __attribute__((weak)); \
    rx_status cpu_##name##_bwd(rx_ctx *c, rx_node *n) __attribute__((weak));
#include "kernels/ops.def"
#undef OP

/* Readable references kept beside a registered fast kernel; the parity tests run them by putting
 * them into a copy of the backend table (tests/test_ops_attention.c). */
rx_status cpu_attention_reference_fwd(rx_ctx *c, rx_node *n);   /* keeps P [heads,Nq,Nk] */
rx_status cpu_attention_reference_bwd(rx_ctx *c, rx_node *n);
/* conv2d: im2col + OpenBLAS (dense.c), and oneDNN's convolutions (conv_onednn.c; they return
 * RX_ERR_UNIMPLEMENTED in a build without oneDNN). The registered cpu_conv2d_fwd/_bwd choose:
 * $RUNEXP_CPU_CONV = auto (default: oneDNN when built with it) | reference | onednn. */
rx_status cpu_conv2d_reference_fwd(rx_ctx *c, rx_node *n);
rx_status cpu_conv2d_reference_bwd(rx_ctx *c, rx_node *n);
rx_status cpu_conv2d_onednn_fwd(rx_ctx *c, rx_node *n);
rx_status cpu_conv2d_onednn_bwd(rx_ctx *c, rx_node *n);
/* what the build's conv2d runs, e.g. "oneDNN 2.6.3 (reference: im2col + OpenBLAS)" (runexp --version) */
const char *cpu_conv2d_impl(void);
/* the step-arena floats a conv2d's forward (backward = 0) or backward takes while it runs, as the
 * choice would run it (kernels/plan.c); for oneDNN this builds the node's primitives in c */
rx_status cpu_conv2d_workspace(rx_ctx *c, rx_node *n, int backward, int64_t *floats);
int64_t cpu_conv2d_reference_workspace(const rx_node *n, int backward);
/* sets the choice for the rest of the process as $RUNEXP_CPU_CONV would (auto, reference, onednn,
 * onednn-plain, onednn-blocked: the last two fix oneDNN's layout; bench/conv.c measures with them) */
rx_status cpu_conv2d_select(const char *impl);
/* RX_ERR_CONFIG naming $RUNEXP_CPU_CONV when it is set to none of the choices */
rx_status cpu_conv2d_check_choice(void);
/* the oneDNN implementation a conv2d node gets for pass 0 forward, 1 backward-data,
 * 2 backward-weights (e.g. "jit:avx2"), "unsupported", or NULL without oneDNN / on error */
const char *cpu_conv2d_onednn_impl_name(rx_ctx *c, rx_node *n, int pass);

/* BLAS inside our parallel regions: the build links OpenBLAS's OpenMP variant, which runs a
 * call on one thread when omp_in_parallel() (its num_cpu_avail), so a GEMM issued by one
 * thread of our team stays on that thread, and one issued outside a region may use the whole
 * pool. Do not call openblas_set_num_threads() around kernels: in the OpenMP variant it is
 * omp_set_num_threads(), which would shrink our own next team to that size (it did: every
 * conv2d ran on one core until this was found; tests/test_threads.c guards it). */

/* grad of input k, or NULL when that input needs none */
static inline float *cpu_in_grad(rx_node *n, int k) {
    return (n->in[k] && n->in[k]->requires_grad && n->in[k]->grad) ? n->in[k]->grad->data : NULL;
}

/* Give a kernel's workspace (a tensor it took from the step arena) back when it returns, so
 * workspaces do not pile up over a step (a conv's column matrices are 9x its input). */
static inline rx_status cpu_ws_free(rx_ctx *c, rx_tensor *ws) {
    return ws ? rx_arena_free(c->step, ws->data, (size_t)ws->numel * sizeof(float)) : RX_OK;
}

#endif
