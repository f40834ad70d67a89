/* tensor.h — float32 tensors, the execution context, and the autograd node.
 *
 * Tensors are float32, contiguous, row-major (NCHW for images), up to 5 dims.
 * A tensor header lives in an arena's meta memory; its data on the context's device.
 * Reshape is a view (shares data); every other op writes a new tensor.
 *
 * The context (rx_ctx) is what an op needs to run: the backend (cpu or cuda),
 * the step arena for activations, the persistent arena for parameters, the
 * autograd tape and grad mode. core/ sees the backend only through its memory
 * (rx_memory below); the rest of it, and rx_ctx_create, are in kernels/backend.h.
 * Errors are sticky in the context: an op whose input is NULL, or that fails,
 * returns NULL, so a block reads like the math
 *
 *     h = rx_silu(c, rx_group_norm(c, x, g, b, 32, 1e-5f));
 *     h = rx_conv2d(c, h, w, bias, 1, 1);
 *     if (!h) return rx_ctx_status(c);      // message in rx_last_error()
 */
#ifndef RX_TENSOR_H
#define RX_TENSOR_H

#include <stdint.h>
#include <stddef.h>
#include "status.h"
#include "arena.h"

#define RX_MAX_DIMS 5
#define RX_MAX_IN   6

typedef enum { RX_DEV_CPU = 0, RX_DEV_CUDA = 1, RX_DEV_PLAN = 2 /* no memory: kernels/plan.c */ } rx_device;

typedef struct rx_tensor {
    int       ndim;
    int64_t   shape[RX_MAX_DIMS];
    int64_t   numel;
    float    *data;            /* on `device`                                     */
    rx_device device;
    struct rx_tensor *grad;    /* same shape; allocated on first need (zeroed)     */
    uint8_t   requires_grad;   /* a parameter, or computed from one with grad on   */
    uint8_t   is_param;        /* lives in the persistent arena                    */
    uint8_t   is_view;         /* data belongs to another tensor (reshape)         */
    uint8_t   is_intermediate; /* a tape node's output or saved tensor (backward may free it) */
    const char *name;          /* parameter name (diffusers state-dict key) or NULL */
    struct rx_node *last_use;  /* backward bookkeeping: the oldest tape node that reads it */
    struct rx_node *grad_final_at;   /* a parameter, while backward runs with c->grad_ready: the node
                                        whose backward adds its gradient's last contribution */
} rx_tensor;

/* One recorded op application. Kernels read inputs/args and write `out`;
 * backward kernels read out->grad and ADD into in[k]->grad where in[k]->requires_grad. */
typedef struct rx_node {
    int        op;                   /* RX_OP_* */
    int        n_in;
    rx_tensor *in[RX_MAX_IN];        /* NULL for an absent optional input (e.g. no bias) */
    rx_tensor *out;
    int64_t    i[8];                 /* integer arguments (op-specific, see ops.h)  */
    float      f[4];                 /* float arguments                             */
    rx_tensor *saved[4];             /* tensors the forward keeps for backward       */
    struct rx_node *prev;            /* tape link (reverse order)                    */
    int64_t    index;                /* position on the step's tape, 0 = recorded first */
    const struct rx_checkpoint_info *checkpoint;   /* a checkpointed block (op -1): replayed, not a kernel */
} rx_node;

typedef struct rx_backend rx_backend;
struct rx_ctx;

/* A backend's memory: where tensor data lives and how it is moved and set. Each backend
 * (kernels/backend.h) holds one; tensors, parameters and gradients are made through it. */
typedef struct rx_memory {
    rx_device    device;
    rx_allocator data_alloc;     /* device memory for arenas (unused on the CPU) */
    rx_status  (*to_device)(struct rx_ctx *c, void *dst, const void *src, size_t bytes);
    rx_status  (*to_host)(struct rx_ctx *c, void *dst, const void *src, size_t bytes);
    rx_status  (*copy)(struct rx_ctx *c, void *dst, const void *src, size_t bytes);
    rx_status  (*fill)(struct rx_ctx *c, float *dst, float v, int64_t n);
} rx_memory;

typedef struct rx_ctx {
    const rx_backend *be;
    const rx_memory  *mem;     /* = &be->mem                              */
    void      *be_state;       /* backend handles (cuBLAS, cuDNN, stream) */
    rx_arena  *step;           /* activations; reset by rx_step_end       */
    rx_arena  *persist;        /* parameters, grads, optimizer state      */
    int        grad_enabled;   /* record ops on the tape                  */
    int        training;       /* dropout active                          */
    rx_node   *tape;           /* most recent node                        */
    int64_t    n_nodes;
    uint64_t   seed;           /* run seed (dropout masks)                */
    uint64_t   rng_step;       /* set per step: dropout stream = f(step, call#) */
    uint64_t   rng_calls;      /* dropout calls in this step              */
    rx_status  err;            /* sticky error                            */
    int        threads;
    int        release_in_backward; /* backward frees each intermediate and its gradient after
                                       their last use (training: only the loss is read after) */
    int        checkpointing;  /* blocks applied through rx_checkpoint recompute in backward */
    /* autograd/liveness.h: the forward gives back what no backward reads. The plan's own step
     * after each recorded node and its destructor come as pointers: core/ and kernels/ sit
     * below autograd/. NULL when no plan is attached. */
    struct rx_fwd_plan *fwd_plan;
    rx_status (*fwd_plan_recorded)(struct rx_ctx *c, rx_node *n);
    void      (*fwd_plan_free)(struct rx_fwd_plan *p);
    /* a backend's kernel state kept across calls (the CPU's oneDNN engine and primitives,
     * kernels/cpu/conv_onednn.c), made on first use, freed by rx_ctx_destroy */
    void      *kernel_cache;
    void      (*kernel_cache_free)(void *cache);
    /* dist/: told by backward, once per parameter (requires_grad) the step's tape reads, as soon
     * as its gradient is final: after the backward of its oldest reader (the backward replays
     * newest first, and every reader adds into the gradient). Data-parallel training starts a
     * bucket's all-reduce from here while backward goes on (dist.h). NULL: nobody listens. */
    rx_status (*grad_ready)(struct rx_ctx *c, rx_tensor *param);
} rx_ctx;

static inline rx_status rx_ctx_status(const rx_ctx *c) { return c->err; }
/* Record an error in the context (sticky) and in rx_last_error(); returns NULL for op front-ends. */
rx_tensor *rx_ctx_fail(rx_ctx *c, rx_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void      rx_ctx_clear_error(rx_ctx *c);
/* End of a step: drop the tape, reset the step arena. Activation tensors become invalid. */
void      rx_step_end(rx_ctx *c);
void      rx_set_grad_enabled(rx_ctx *c, int on);

/* --- creation (step arena unless noted) ---------------------------------- */
rx_tensor *rx_empty(rx_ctx *c, int ndim, const int64_t *shape);
rx_tensor *rx_empty_like(rx_ctx *c, const rx_tensor *t);
rx_tensor *rx_zeros(rx_ctx *c, int ndim, const int64_t *shape);
rx_tensor *rx_full(rx_ctx *c, int ndim, const int64_t *shape, float v);
/* persistent tensor: a parameter (requires_grad, grad allocated zeroed) or a buffer */
rx_tensor *rx_param(rx_ctx *c, const char *name, int ndim, const int64_t *shape, int requires_grad);
/* helpers for literal shapes: RX_SHAPE(B, C, H, W) */
#define RX_SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

rx_status rx_tensor_from_host(rx_ctx *c, rx_tensor *t, const float *src);   /* copy numel floats in  */
rx_status rx_tensor_to_host(rx_ctx *c, const rx_tensor *t, float *dst);     /* copy numel floats out */
rx_tensor *rx_from_host(rx_ctx *c, int ndim, const int64_t *shape, const float *src);
rx_status rx_tensor_fill(rx_ctx *c, rx_tensor *t, float v);
rx_status rx_tensor_copy(rx_ctx *c, rx_tensor *dst, const rx_tensor *src);  /* same numel */
rx_tensor *rx_grad_of(rx_ctx *c, rx_tensor *t);   /* allocate t->grad (zeroed) if absent */

int  rx_same_shape(const rx_tensor *a, const rx_tensor *b);
/* "[2,3,32,32]" into buf; returns buf. */
const char *rx_shape_str(const rx_tensor *t, char *buf, size_t n);
#define RX_SHAPE_STR(t) rx_shape_str((t), (char[64]){0}, 64)
int64_t rx_numel(int ndim, const int64_t *shape);

#endif
