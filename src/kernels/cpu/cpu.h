/* cpu.h — the CPU kernels (the reference backend). For every op in ops.def:
 *   rx_status cpu_<name>_fwd(rx_ctx *c, rx_node *n);   writes n->out
 *   rx_status cpu_<name>_bwd(rx_ctx *c, rx_node *n);   adds into n->in[k]->grad
 * Declared weak so that the table links while an op family is being written;
 * tests/test_ops_table.c fails if any op lacks a kernel. */
#ifndef RX_CPU_H
#define RX_CPU_H

#include "kernels/backend.h"
#include "kernels/dispatch.h"

#define OP(ID, name, family) \
    rx_status cpu_##name##_fwd(rx_ctx *c, rx_node *n) __attribute__((weak)); \
    rx_status cpu_##name##_bwd(rx_ctx *c, rx_node *n) __attribute__((weak));
#include "kernels/ops.def"
#undef OP

/* OpenBLAS held to one thread while our own OpenMP team runs around its calls: BLAS's own
 * team inside ours would be a nested team, created afresh on every call (hundreds of thread
 * creations per training step, measured). Returns what to restore. */
int  openblas_get_num_threads(void);
void openblas_set_num_threads(int);
static inline int cpu_blas_single_begin(void) {
    const int n = openblas_get_num_threads();
    if (n != 1) openblas_set_num_threads(1);
    return n;
}
static inline void cpu_blas_single_end(int n) {
    if (n != 1) openblas_set_num_threads(n);
}

/* grad of input k, or NULL when that input needs none */
static inline float *cpu_in_grad(rx_node *n, int k) {
    return (n->in[k] && n->in[k]->requires_grad && n->in[k]->grad) ? n->in[k]->grad->data : NULL;
}

#endif
