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

/* ---- multi-tensor AdamW + EMA (one update of every parameter, no host sync) ----------------
 * The parameters are cut into chunks of at most RX_MT_CHUNK elements (a tensor is one or more
 * consecutive chunks); a table of chunks lives in device memory, so one launch covers them all.
 * The per-step inputs (t, lr, EMA decay) and the outputs (Σ g², clip factor, the non-finite
 * flag) live in device memory too (rx_mt_scalars): the host uploads the inputs before the step
 * and reads the outputs only when it logs, so a step queues without waiting for the device and
 * can be captured in a CUDA graph (the upload stays outside the graph). */
#define RX_MT_CHUNK ((int64_t)1 << 16)

typedef struct rx_mt_chunk {
    float       *p;     /* weights                                         */
    const float *g;     /* gradient; NULL: not trained (EMA only)          */
    float       *m, *v; /* AdamW moments (NULL with g)                     */
    float       *ema;   /* EMA copy; NULL: no EMA                          */
    int64_t      n;     /* elements, 1..RX_MT_CHUNK                        */
} rx_mt_chunk;

typedef struct rx_mt_scalars {
    /* in: set by the host before each step */
    int64_t step;           /* t, 1-based (bias corrections)                               */
    float   lr;
    float   ema_decay;      /* e = d e + (1-d) p; 0 copies the weights (before ema_start)  */
    /* out: written by the step */
    double  grad_sumsq;     /* Σ g² over every trained chunk, before clipping              */
    float   clip_scale;     /* rx_clip_factor of sqrt(grad_sumsq)                          */
    int32_t nonfinite;      /* 1: Σ g² was NaN/Inf: this step updated nothing              */
    int64_t first_bad_step; /* sticky: the first such step (0: none yet)                   */
} rx_mt_scalars;

/* constants of one optimizer, and where its table and scalars are */
typedef struct rx_mt_args {
    float beta1, beta2, eps, weight_decay;
    float max_norm;                 /* global-norm clipping; <= 0: none              */
    const rx_mt_chunk *table;       /* device copy of the chunk table                */
    const rx_mt_chunk *host_table;  /* the same entries in host memory               */
    int n_chunks;
    rx_mt_scalars *scalars;         /* device memory                                 */
} rx_mt_args;

#if defined(__CUDACC__)
#define RX_HOST_DEVICE __host__ __device__
#else
#define RX_HOST_DEVICE
#endif

/* torch.nn.utils.clip_grad_norm_'s factor: max_norm / (norm + 1e-6) when that is < 1, else 1
 * (also 1 when max_norm <= 0); shared by both backends so their factors agree */
static inline RX_HOST_DEVICE float rx_clip_factor(double norm, float max_norm) {
    if (!(max_norm > 0)) return 1.0f;
    const double coef = max_norm / (norm + 1e-6);
    return coef < 1.0 ? (float)coef : 1.0f;   /* clamped to 1: never scaled up */
}

struct rx_backend {
    const char  *name;           /* "cpu", "cuda" */
    rx_memory    mem;
    rx_kernel_fn fwd[RX_OP_COUNT];
    rx_kernel_fn bwd[RX_OP_COUNT];
    rx_status  (*axpy)(rx_ctx *c, float *y, float a, const float *x, int64_t n);    /* y += a x     */
    rx_status  (*sumsq)(rx_ctx *c, const float *x, int64_t n, double *out);         /* Σ x²         */
    rx_status  (*adamw)(rx_ctx *c, float *p, const float *g, float *m, float *v, int64_t n, const rx_adamw_args *a);
    rx_status  (*ema)(rx_ctx *c, float *ema, const float *p, float decay, int64_t n); /* e = d e + (1-d) p */
    /* one AdamW (+ EMA) step over a chunk table: Σ g², clip factor, then every chunk's update;
     * with a non-finite Σ g² nothing is updated and the scalars say so. Queues, never waits. */
    rx_status  (*adamw_multi)(rx_ctx *c, const rx_mt_args *a);
    rx_status  (*sync)(rx_ctx *c);
};

const rx_backend *rx_backend_cpu(void);
/* shapes and memory only: no kernel runs, no data exists (kernels/plan.c) */
const rx_backend *rx_backend_plan(void);
/* a planning context's be_state (or NULL): what it measured besides its arenas */
typedef struct rx_plan_state {
    size_t bf16_request_max;   /* the largest bf16 operand request of any kernel (kernels/bf16_operands.h) */
} rx_plan_state;

/* Create a context on `be` (rx_backend_cpu() or rx_cuda_open's) with its backend state
 * (NULL on the CPU); step_chunk = bytes per step-arena chunk, 0 for the default. */
rx_status rx_ctx_create(const rx_backend *be, void *be_state, size_t step_chunk, rx_ctx **out);
void      rx_ctx_destroy(rx_ctx *c);

#endif
