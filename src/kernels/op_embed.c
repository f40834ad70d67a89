/* op_embed.c — embedding lookup (nn.Embedding) and the sinusoidal timestep embedding
 * (diffusers get_timestep_embedding).
 *
 * Node layout: embedding in = {table, idx}; the output is [idx dims..., D] (idx [N] gives
 * [N,D] as in ops.h; any idx shape of up to 4 dims works, as nn.Embedding).
 * timestep_embedding in = {t}, i[0] = dim, i[1] = flip_sin_to_cos, f[0] = downscale_freq_shift,
 * f[1] = scale, f[2] = max_period. */
#include "ops.h"
#include "dispatch.h"

rx_tensor *rx_embedding(rx_ctx *c, rx_tensor *table, rx_tensor *idx) {
    if (!rx_inputs_ok(c, 2, table, idx)) return NULL;
    if (table->ndim != 2 || idx->ndim >= RX_MAX_DIMS)
        return RX_OP_FAIL(c, "embedding: table %s must be [V,D] and idx %s have at most %d dims", RX_SHAPE_STR(table),
                          RX_SHAPE_STR(idx), RX_MAX_DIMS - 1);
    int64_t shape[RX_MAX_DIMS];
    for (int d = 0; d < idx->ndim; d++) shape[d] = idx->shape[d];
    shape[idx->ndim] = table->shape[1];
    return rx_node_run(c, rx_node_new(c, RX_OP_EMBEDDING, rx_empty(c, idx->ndim + 1, shape), 2, table, idx));
}

rx_tensor *rx_timestep_embedding(rx_ctx *c, rx_tensor *t, int dim, int flip_sin_to_cos,
                                 float downscale_freq_shift, float scale, float max_period) {
    if (!rx_inputs_ok(c, 1, t)) return NULL;
    if (t->ndim != 1) return RX_OP_FAIL(c, "timestep_embedding: t %s must be 1-D [N]", RX_SHAPE_STR(t));
    if (dim < 1) return rx_ctx_fail(c, RX_ERR_ARG, "timestep_embedding: dim=%d must be >= 1", dim);
    if (!(max_period > 0.0f)) return rx_ctx_fail(c, RX_ERR_ARG, "timestep_embedding: max_period=%g must be > 0", max_period);
    /* exponent divides by half - shift: zero would make every frequency NaN/inf (as in diffusers) */
    const int half = dim / 2;
    if (half > 0 && !(half - downscale_freq_shift > 0.0f))
        return rx_ctx_fail(c, RX_ERR_ARG, "timestep_embedding: dim=%d: half_dim - downscale_freq_shift = %d - %g must be > 0",
                           dim, half, downscale_freq_shift);
    rx_node *n = rx_node_new(c, RX_OP_TIMESTEP_EMBEDDING, rx_empty(c, RX_SHAPE(t->shape[0], dim)), 1, t);
    if (!n) return NULL;
    n->i[0] = dim;
    n->i[1] = flip_sin_to_cos != 0;
    n->f[0] = downscale_freq_shift;
    n->f[1] = scale;
    n->f[2] = max_period;
    return rx_node_run(c, n);
}
