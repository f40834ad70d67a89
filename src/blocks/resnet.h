/* resnet.h — diffusers ResnetBlock2D (time_embedding_norm "default", output_scale_factor 1):
 *   h = conv1(silu(norm1(x))) + time_emb_proj(silu(temb))[:, :, None, None]
 *   h = conv2(dropout(silu(norm2(h))))
 *   y = (conv_shortcut(x) if cin != cout else x) + h                                 */
#ifndef RX_RESNET_H
#define RX_RESNET_H

#include "layers.h"

typedef struct rx_resnet_block {
    rx_group_norm_layer norm1, norm2;
    rx_conv_layer conv1, conv2, conv_shortcut;
    rx_linear_layer time_emb_proj;
    int has_shortcut;
    float dropout;
} rx_resnet_block;

/* temb_ch <= 0: no time embedding (classifiers) */
rx_status rx_resnet_build(rx_builder *b, const char *name, int cin, int cout, int temb_ch, int groups, float eps,
                          float dropout, rx_resnet_block *r);
/* x [B,cin,H,W], temb_act = silu(temb) [B,temb_ch] (computed once per network forward) -> [B,cout,H,W] */
rx_tensor *rx_resnet_forward(rx_ctx *c, const rx_resnet_block *r, rx_tensor *x, rx_tensor *temb_act);
/* the same through rx_checkpoint (recomputed in backward when c->checkpointing) */
rx_tensor *rx_resnet_apply(rx_ctx *c, const rx_resnet_block *r, rx_tensor *x, rx_tensor *temb_act);

/* diffusers Attention with _from_deprecated_attn_block (the U-Net's spatial self-attention):
 *   h = group_norm(x) viewed as tokens [B, H*W, C]; q,k,v = Linear(C, heads*dim_head), heads = C // dim_head
 *   y = x + to_out(SDPA(q, k, v)) viewed back as [B,C,H,W]                           */
typedef struct rx_attn_block {
    rx_group_norm_layer group_norm;
    rx_linear_layer to_q, to_k, to_v, to_out;
    int heads, dim_head;
} rx_attn_block;

rx_status rx_attn_block_build(rx_builder *b, const char *name, int channels, int dim_head, int groups, float eps,
                              rx_attn_block *a);
rx_tensor *rx_attn_block_forward(rx_ctx *c, const rx_attn_block *a, rx_tensor *x);
rx_tensor *rx_attn_block_apply(rx_ctx *c, const rx_attn_block *a, rx_tensor *x);   /* checkpointed */

/* tokens [B,N,heads*dh] -> [B,heads,N,dh] and back: the head split of multi-head attention */
rx_tensor *rx_split_heads(rx_ctx *c, rx_tensor *x, int heads);
rx_tensor *rx_merge_heads(rx_ctx *c, rx_tensor *x);

#endif
