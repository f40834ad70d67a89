/* backend.h — a backend is a table of kernels plus its memory (core/tensor.h's rx_memory) and
 * optimizer updates; a context runs on one. The CPU backend is the reference; the CUDA
 * backend is tested against it. */
#ifndef RX_BACKEND_H
#define RX_BACKEND_H

#include "core/tensor.h"

typedef enum {
#define OP(ID, name, family, reads) RX_OP_##ID,
#include "ops.def"
#undef OP
    RX_OP_COUNT
} rx_op;

extern const char *const rx_op_names[RX_OP_COUNT];
/* ops.def's bwd_reads column: bit i = the backward reads node->in[i]'s data, RX_BWD_READS_OUT = node->out's */
#define RX_BWD_READS_OUT (1u << RX_MAX_IN)
extern const uint8_t rx_op_bwd_reads[RX_OP_COUNT];

typedef rx_status (*rx_kernel_fn)(rx_ctx *c, rx_node *n);

/* Fused AdamW step over one parameter tensor (torch.optim.AdamW semantics):
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g²;  p -= lr wd p;
 *   p -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)                        */
typedef struct rx_adamw_args {
    float lr, beta1, beta2, eps, weight_decay, grad_scale; /* grad_scale: multiply g first (clipping) */
    int64_t step;                                          /* t, 1-based */
} rx_adamw_args;

struct rx_backend {
    const char  *name;           /* "cpu", "cuda" */
    rx_memory    mem;
    rx_kernel_fn fwd[RX_OP_COUNT];
    rx_kernel_fn bwd[RX_OP_COUNT];
    rx_status  (*axpy)(rx_ctx *c, float *y, float a, const float *x, int64_t n);    /* y += a x     */
    rx_status  (*sumsq)(rx_ctx *c, const float *x, int64_t n, double *out);         /* Σ x²         */
    rx_status  (*adamw)(rx_ctx *c, float *p, const float *g, float *m, float *v, int64_t n, const rx_adamw_args *a);
    rx_status  (*ema)(rx_ctx *c, float *ema, const float *p, float decay, int64_t n); /* e = d e + (1-d) p */
    rx_status  (*sync)(rx_ctx *c);
};

const rx_backend *rx_backend_cpu(void);
/* shapes and memory only: no kernel runs, no data exists (kernels/plan.c) */
const rx_backend *rx_backend_plan(void);

/* Create a context on `be` (rx_backend_cpu() or rx_cuda_open's) with its backend state
 * (NULL on the CPU); step_chunk = bytes per step-arena chunk, 0 for the default. */
rx_status rx_ctx_create(const rx_backend *be, void *be_state, size_t step_chunk, rx_ctx **out);
void      rx_ctx_destroy(rx_ctx *c);

#endif
