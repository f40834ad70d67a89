/* layers.h — parameter-holding layers (Linear, Conv2d, GroupNorm, Embedding)
 * and the builder that creates their parameters with diffusers state-dict names and
 * PyTorch's default initialisation.
 *
 * The builder keeps a name prefix stack, so a block writes
 *     rx_builder_push(b, "resnets.%d", i);
 *     rx_build_conv(b, "conv1", cin, cout, 3, 1, 1, &r->conv1);   // "down_blocks.0.resnets.1.conv1.weight"
 *     rx_builder_pop(b);
 * Init (torch.nn defaults): Conv2d/Linear weight kaiming_uniform(a=√5) = U(-1/√fan_in, 1/√fan_in),
 * bias U(-1/√fan_in, 1/√fan_in); norms weight 1, bias 0; Embedding N(0, 1). Every draw comes from
 * Philox keyed by (seed, parameter number), so a model's init is a pure function of its seed. */
#ifndef RX_LAYERS_H
#define RX_LAYERS_H

#include "core/paramset.h"
#include "kernels/ops.h"

typedef struct rx_builder {
    rx_ctx      *c;
    rx_paramset *ps;
    uint64_t     seed;
    char         prefix[256];
    int          depth;
    int          prefix_len[16];
} rx_builder;

typedef struct { rx_tensor *w, *b; } rx_linear_layer;                        /* w [out,in], b [out] */
typedef struct { rx_tensor *w, *b; int stride, pad; } rx_conv_layer;          /* w [co,ci,k,k], b [co] */
typedef struct { rx_tensor *w, *b; int groups; float eps; } rx_group_norm_layer;
typedef struct { rx_tensor *w; } rx_embedding_layer;                          /* w [V,D] */

void      rx_builder_init(rx_builder *b, rx_ctx *c, rx_paramset *ps, uint64_t seed);
void      rx_builder_push(rx_builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void      rx_builder_pop(rx_builder *b);
/* a parameter named prefix.name, zero-filled (fill it with one of the init functions below) */
rx_tensor *rx_build_param(rx_builder *b, const char *name, int ndim, const int64_t *shape);
rx_status rx_init_uniform(rx_builder *b, rx_tensor *t, float bound);   /* U(-bound, bound) */
rx_status rx_init_normal(rx_builder *b, rx_tensor *t, float std);
rx_status rx_init_const(rx_builder *b, rx_tensor *t, float v);

rx_status rx_build_linear(rx_builder *b, const char *name, int in, int out, int bias, rx_linear_layer *l);
rx_status rx_build_conv(rx_builder *b, const char *name, int cin, int cout, int k, int stride, int pad, rx_conv_layer *l);
rx_status rx_build_group_norm(rx_builder *b, const char *name, int groups, int channels, float eps, rx_group_norm_layer *l);
rx_status rx_build_embedding(rx_builder *b, const char *name, int num, int dim, rx_embedding_layer *l);

static inline rx_tensor *rx_linear_fwd(rx_ctx *c, const rx_linear_layer *l, rx_tensor *x) { return rx_linear(c, x, l->w, l->b); }
static inline rx_tensor *rx_conv_fwd(rx_ctx *c, const rx_conv_layer *l, rx_tensor *x) { return rx_conv2d(c, x, l->w, l->b, l->stride, l->pad); }
static inline rx_tensor *rx_group_norm_fwd(rx_ctx *c, const rx_group_norm_layer *l, rx_tensor *x) { return rx_group_norm(c, x, l->w, l->b, l->groups, l->eps); }
/* silu(norm(x + shift[:, :, None, None])) in one op; shift [B,C] or NULL */
static inline rx_tensor *rx_group_norm_silu_fwd(rx_ctx *c, const rx_group_norm_layer *l, rx_tensor *x, rx_tensor *shift) {
    return rx_group_norm_silu(c, x, l->w, l->b, shift, l->groups, l->eps);
}

#endif
