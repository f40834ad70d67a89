#include "resnet.h"
#include "autograd/checkpoint.h"

rx_status rx_resnet_build(rx_builder *b, const char *name, int cin, int cout, int temb_ch, int groups, float eps,
                          float dropout, rx_resnet_block *r) {
    rx_builder_push(b, "%s", name);
    r->dropout = dropout;
    r->has_shortcut = cin != cout;
    rx_status s = rx_build_group_norm(b, "norm1", groups, cin, eps, &r->norm1);
    if (!s) s = rx_build_conv(b, "conv1", cin, cout, 3, 1, 1, &r->conv1);
    if (!s && temb_ch > 0) s = rx_build_linear(b, "time_emb_proj", temb_ch, cout, 1, &r->time_emb_proj);
    if (!s) s = rx_build_group_norm(b, "norm2", groups, cout, eps, &r->norm2);
    if (!s) s = rx_build_conv(b, "conv2", cout, cout, 3, 1, 1, &r->conv2);
    if (!s && r->has_shortcut) s = rx_build_conv(b, "conv_shortcut", cin, cout, 1, 1, 0, &r->conv_shortcut);
    rx_builder_pop(b);
    return s;
}

rx_tensor *rx_resnet_forward(rx_ctx *c, const rx_resnet_block *r, rx_tensor *x, rx_tensor *temb_act) {
    /* norm→silu pairs are one op each (kernels: group_norm_silu), the time embedding riding in norm2
     * as its per-(sample, channel) shift: the sum conv1(...) + temb and the norms' outputs are never
     * stored, the backward recomputes them */
    rx_tensor *h = rx_conv_fwd(c, &r->conv1, rx_group_norm_silu_fwd(c, &r->norm1, x, NULL));
    rx_tensor *e = temb_act && r->time_emb_proj.w ? rx_linear_fwd(c, &r->time_emb_proj, temb_act) : NULL;   /* [B,cout] */
    h = rx_group_norm_silu_fwd(c, &r->norm2, h, e);
    /* conv2's bias is added with the residual (kernels: residual_add), one pass instead of two */
    h = rx_conv2d(c, rx_dropout(c, h, r->dropout), r->conv2.w, NULL, r->conv2.stride, r->conv2.pad);
    rx_tensor *skip = r->has_shortcut ? rx_conv_fwd(c, &r->conv_shortcut, x) : x;
    return rx_residual_add(c, skip, h, r->conv2.b, 1.0f);   /* output_scale_factor 1 */
}

rx_status rx_attn_block_build(rx_builder *b, const char *name, int channels, int dim_head, int groups, float eps,
                              rx_attn_block *a) {
    /* diffusers' Attention(channels, heads = channels // dim_head, dim_head): when dim_head does not
     * divide the channels, q, k and v have the inner width heads * dim_head < channels and to_out
     * maps back. With fewer channels than dim_head there is no head (diffusers divides by zero). */
    if (dim_head <= 0 || channels < dim_head)
        return rx_fail(RX_ERR_CONFIG, "%s%s%s: %d channels are fewer than attention_head_dim %d: no attention head "
                       "(diffusers makes channels // attention_head_dim = 0 heads and fails in its forward)",
                       b->prefix, b->prefix[0] && name[0] ? "." : "", name, channels, dim_head);
    rx_builder_push(b, "%s", name);
    a->heads = channels / dim_head;
    a->dim_head = dim_head;
    int inner = a->heads * dim_head;   /* = channels when dim_head divides them */
    rx_status s = rx_build_group_norm(b, "group_norm", groups, channels, eps, &a->group_norm);
    if (!s) s = rx_build_linear(b, "to_q", channels, inner, 1, &a->to_q);
    if (!s) s = rx_build_linear(b, "to_k", channels, inner, 1, &a->to_k);
    if (!s) s = rx_build_linear(b, "to_v", channels, inner, 1, &a->to_v);
    if (!s) s = rx_build_linear(b, "to_out.0", inner, channels, 1, &a->to_out);
    rx_builder_pop(b);
    return s;
}

rx_tensor *rx_split_heads(rx_ctx *c, rx_tensor *x, int heads) {   /* [B,N,H*D] -> [B,H,N,D] */
    if (!x) return NULL;
    int64_t B = x->shape[0], N = x->shape[1], D = x->shape[2] / heads;
    return rx_permute(c, rx_reshape(c, x, RX_SHAPE(B, N, heads, D)), (const int[]){0, 2, 1, 3});
}

rx_tensor *rx_merge_heads(rx_ctx *c, rx_tensor *x) {              /* [B,H,N,D] -> [B,N,H*D] */
    if (!x) return NULL;
    int64_t B = x->shape[0], H = x->shape[1], N = x->shape[2], D = x->shape[3];
    return rx_reshape(c, rx_permute(c, x, (const int[]){0, 2, 1, 3}), RX_SHAPE(B, N, H * D));
}

rx_tensor *rx_attn_block_forward(rx_ctx *c, const rx_attn_block *a, rx_tensor *x) {
    if (!x) return NULL;
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    rx_tensor *h = rx_group_norm_fwd(c, &a->group_norm, x);
    h = rx_permute(c, rx_reshape(c, h, RX_SHAPE(B, C, H * W)), (const int[]){0, 2, 1});   /* [B,HW,C] */
    rx_tensor *q = rx_split_heads(c, rx_linear_fwd(c, &a->to_q, h), a->heads);
    rx_tensor *k = rx_split_heads(c, rx_linear_fwd(c, &a->to_k, h), a->heads);
    rx_tensor *v = rx_split_heads(c, rx_linear_fwd(c, &a->to_v, h), a->heads);
    /* to_out without its bias: the bias is per channel once o is [B,C,H,W], added with the residual */
    rx_tensor *o = rx_linear(c, rx_merge_heads(c, rx_attention(c, q, k, v, 0.0f)), a->to_out.w, NULL);  /* [B,HW,C] */
    o = rx_reshape(c, rx_permute(c, o, (const int[]){0, 2, 1}), RX_SHAPE(B, C, H, W));
    return rx_residual_add(c, x, o, a->to_out.b, 1.0f);   /* rescale_output_factor 1 */
}

// ---------------------------------------------------------------------------
// the blocks as checkpointable block functions

static rx_tensor *resnet_fn(rx_ctx *c, const void *block, rx_tensor *x, rx_tensor *temb_act) {
    return rx_resnet_forward(c, block, x, temb_act);
}
static rx_tensor *attn_fn(rx_ctx *c, const void *block, rx_tensor *x, rx_tensor *unused) {
    return rx_attn_block_forward(c, block, x);
}

rx_tensor *rx_resnet_apply(rx_ctx *c, const rx_resnet_block *r, rx_tensor *x, rx_tensor *temb_act) {
    return rx_checkpoint(c, resnet_fn, r, x, temb_act);
}
rx_tensor *rx_attn_block_apply(rx_ctx *c, const rx_attn_block *a, rx_tensor *x) {
    return rx_checkpoint(c, attn_fn, a, x, NULL);
}
