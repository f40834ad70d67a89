/* dit.h — the DiT block (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers"):
 * adaLN-Zero around multi-head self-attention and a GELU-tanh MLP. Parameter names are those
 * of diffusers' BasicTransformerBlock with norm_type "ada_norm_zero" (transformer_blocks.N.…):
 *
 *   shift1, scale1, gate1, shift2, scale2, gate2 = norm1.linear(silu(c))     c [B,D] -> 6 x [B,D]
 *   h = h + gate1[:,None] * attn1(LN(h) (1 + scale1) + shift1)                h [B,N,D]
 *   h = h + gate2[:,None] * ff(LN(h) (1 + scale2) + shift2)                   ff: D -> 4D -> D
 *
 * LN has no affine; eps 1e-6 before attention (diffusers hard-codes it), `eps` before the MLP.
 * The registry entry `DiTBlock` (kind block, role dit) carries an rx_dit_block_impl; the
 * model `dit` looks it up in the registry by name (block_type). */
#ifndef RX_DIT_H
#define RX_DIT_H

#include "layers.h"
#include "autograd/checkpoint.h"

typedef struct rx_dit_block {
    rx_linear_layer ada;                     /* norm1.linear: D -> 6D (zero-initialised) */
    rx_linear_layer to_q, to_k, to_v, to_out;
    rx_linear_layer ff_in, ff_out;           /* ff.net.0.proj: D -> 4D, ff.net.2: 4D -> D */
    int hidden, heads;
    float eps_mlp;
} rx_dit_block;

typedef struct rx_dit_block_impl {
    /* parameters under the builder's current prefix; DiT init (xavier linears, zero adaLN) */
    rx_status (*build)(rx_builder *b, int hidden, int heads, float eps_mlp, rx_dit_block *blk);
    /* block = an rx_dit_block; h [B,N,D], cond_act = silu(c) [B,D] (computed once per forward)
     * -> [B,N,D]. A block function, so the model can checkpoint it. */
    rx_block_fn forward;
} rx_dit_block_impl;

/* Fixed 2-D sin-cos position embedding [gh*gw, D] as diffusers' get_2d_sincos_pos_embed
 * (base_size = grid, interpolation_scale 1), computed in double: token n = i*gw + j gets
 * [sincos_D/2(j), sincos_D/2(i)], sincos_E(p) = [sin(p w_k), cos(p w_k)], w_k = 10000^(-k/(E/2)). */
void rx_dit_pos_embed_2d(float *out, int dim, int gh, int gw);

#endif
