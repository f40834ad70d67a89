/* unet_blocks.c — DownBlock2D / AttnDownBlock2D / UNetMidBlock2D / UpBlock2D / AttnUpBlock2D.
 * One generic implementation per direction; `with_attention` adds an attention after each resnet. */
#include "unet_blocks.h"
#include "core/component.h"

static rx_status down_build(rx_builder *b, const rx_unet_block_impl *impl, const rx_unet_block_args *a, rx_unet_block *blk) {
    if (a->num_layers > RX_UNET_MAX_LAYERS) return rx_fail(RX_ERR_CONFIG, "layers_per_block %d > %d", a->num_layers, RX_UNET_MAX_LAYERS);
    blk->impl = impl;
    blk->n_res = a->num_layers;
    blk->n_attn = impl->with_attention ? a->num_layers : 0;
    for (int i = 0; i < a->num_layers; i++) {
        rx_builder_push(b, "resnets.%d", i);
        rx_status s = rx_resnet_build(b, "", i == 0 ? a->in_ch : a->out_ch, a->out_ch, a->temb_ch, a->groups, a->eps, a->dropout, &blk->res[i]);
        rx_builder_pop(b);
        RX_TRY(s);
        if (impl->with_attention) {
            rx_builder_push(b, "attentions.%d", i);
            s = rx_attn_block_build(b, "", a->out_ch, a->head_dim, a->groups, a->eps, &blk->attn[i]);
            rx_builder_pop(b);
            RX_TRY(s);
        }
    }
    blk->has_sampler = a->add_sampler;
    /* Downsample2D(use_conv=True): 3x3 stride-2 conv; with padding 0 diffusers first pads the
     * bottom row and right column, so that H and W still halve */
    blk->pad_before_sampler = a->downsample_padding == 0;
    if (a->add_sampler)
        RX_TRY(rx_build_conv(b, "downsamplers.0.conv", a->out_ch, a->out_ch, 3, 2, a->downsample_padding, &blk->sampler));
    return RX_OK;
}

/* F.pad(h, (0, 1, 0, 1)): a zero row below and a zero column on the right. There is no pad op
 * (only this rare setting needs one), so: concat (which joins along dim 1) between permutes.
 * [B,C,H,W] -> [B,H,C,W] -> [B,H+1,C,W] -> [B,W,C,H+1] -> [B,W+1,C,H+1] -> [B,C,H+1,W+1] */
static rx_tensor *pad_bottom_right(rx_ctx *c, rx_tensor *h) {
    if (!h) return NULL;
    int64_t B = h->shape[0], C = h->shape[1], H = h->shape[2], W = h->shape[3];
    h = rx_permute(c, h, (const int[]){0, 2, 1, 3});
    h = rx_concat(c, h, rx_zeros(c, RX_SHAPE(B, 1, C, W)));
    h = rx_permute(c, h, (const int[]){0, 3, 2, 1});
    h = rx_concat(c, h, rx_zeros(c, RX_SHAPE(B, 1, C, H + 1)));
    return rx_permute(c, h, (const int[]){0, 2, 3, 1});
}

static rx_tensor *down_forward(rx_ctx *c, const rx_unet_block *blk, rx_tensor *h, rx_tensor *temb_act,
                               rx_tensor **skips, int *n_skips) {
    for (int i = 0; i < blk->n_res; i++) {
        h = rx_resnet_apply(c, &blk->res[i], h, temb_act);
        if (blk->n_attn) h = rx_attn_block_apply(c, &blk->attn[i], h);
        skips[(*n_skips)++] = h;
    }
    if (blk->has_sampler) {
        h = rx_conv_fwd(c, &blk->sampler, blk->pad_before_sampler ? pad_bottom_right(c, h) : h);
        skips[(*n_skips)++] = h;
    }
    return h;
}

static rx_status mid_build(rx_builder *b, const rx_unet_block_impl *impl, const rx_unet_block_args *a, rx_unet_block *blk) {
    blk->impl = impl;
    blk->n_res = 2;
    blk->n_attn = impl->with_attention ? 1 : 0;
    rx_status s = rx_resnet_build(b, "resnets.0", a->in_ch, a->in_ch, a->temb_ch, a->groups, a->eps, a->dropout, &blk->res[0]);
    if (!s && blk->n_attn) s = rx_attn_block_build(b, "attentions.0", a->in_ch, a->head_dim, a->groups, a->eps, &blk->attn[0]);
    if (!s) s = rx_resnet_build(b, "resnets.1", a->in_ch, a->in_ch, a->temb_ch, a->groups, a->eps, a->dropout, &blk->res[1]);
    return s;
}

static rx_tensor *mid_forward(rx_ctx *c, const rx_unet_block *blk, rx_tensor *h, rx_tensor *temb_act,
                              rx_tensor **skips, int *n_skips) {
    h = rx_resnet_apply(c, &blk->res[0], h, temb_act);
    if (blk->n_attn) h = rx_attn_block_apply(c, &blk->attn[0], h);
    return rx_resnet_apply(c, &blk->res[1], h, temb_act);
}

/* resnet i sees cat(h, skip): h has prev_out_ch (i == 0) or out_ch channels, the skip has
 * in_ch (the last one) or out_ch channels — as diffusers' UpBlock2D computes them */
static rx_status up_build(rx_builder *b, const rx_unet_block_impl *impl, const rx_unet_block_args *a, rx_unet_block *blk) {
    if (a->num_layers > RX_UNET_MAX_LAYERS) return rx_fail(RX_ERR_CONFIG, "layers_per_block+1 = %d > %d", a->num_layers, RX_UNET_MAX_LAYERS);
    blk->impl = impl;
    blk->n_res = a->num_layers;
    blk->n_attn = impl->with_attention ? a->num_layers : 0;
    for (int i = 0; i < a->num_layers; i++) {
        int skip_ch = i == a->num_layers - 1 ? a->in_ch : a->out_ch;
        int h_ch = i == 0 ? a->prev_out_ch : a->out_ch;
        rx_builder_push(b, "resnets.%d", i);
        rx_status s = rx_resnet_build(b, "", h_ch + skip_ch, a->out_ch, a->temb_ch, a->groups, a->eps, a->dropout, &blk->res[i]);
        rx_builder_pop(b);
        RX_TRY(s);
        if (impl->with_attention) {
            rx_builder_push(b, "attentions.%d", i);
            s = rx_attn_block_build(b, "", a->out_ch, a->head_dim, a->groups, a->eps, &blk->attn[i]);
            rx_builder_pop(b);
            RX_TRY(s);
        }
    }
    blk->has_sampler = a->add_sampler;
    if (a->add_sampler)   /* Upsample2D(use_conv=True): nearest 2x then 3x3 conv */
        RX_TRY(rx_build_conv(b, "upsamplers.0.conv", a->out_ch, a->out_ch, 3, 1, 1, &blk->sampler));
    return RX_OK;
}

static rx_tensor *up_forward(rx_ctx *c, const rx_unet_block *blk, rx_tensor *h, rx_tensor *temb_act,
                             rx_tensor **skips, int *n_skips) {
    for (int i = 0; i < blk->n_res; i++) {
        if (*n_skips <= 0) return rx_ctx_fail(c, RX_ERR_INTERNAL, "unet: up block ran out of skip connections");
        h = rx_concat(c, h, skips[--(*n_skips)]);
        h = rx_resnet_apply(c, &blk->res[i], h, temb_act);
        if (blk->n_attn) h = rx_attn_block_apply(c, &blk->attn[i], h);
    }
    if (blk->has_sampler) h = rx_conv_fwd(c, &blk->sampler, rx_upsample_nearest2x(c, h));
    return h;
}

/* UpDecoderBlock2D (the VAE decoder's up block): resnets without skip connections, the first from
 * prev_out_ch (the level below) to out_ch, then nearest 2x + conv as Upsample2D */
static rx_status decoder_up_build(rx_builder *b, const rx_unet_block_impl *impl, const rx_unet_block_args *a, rx_unet_block *blk) {
    if (a->num_layers > RX_UNET_MAX_LAYERS) return rx_fail(RX_ERR_CONFIG, "layers_per_block+1 = %d > %d", a->num_layers, RX_UNET_MAX_LAYERS);
    blk->impl = impl;
    blk->n_res = a->num_layers;
    for (int i = 0; i < a->num_layers; i++) {
        rx_builder_push(b, "resnets.%d", i);
        rx_status s = rx_resnet_build(b, "", i == 0 ? a->prev_out_ch : a->out_ch, a->out_ch, a->temb_ch, a->groups, a->eps,
                                      a->dropout, &blk->res[i]);
        rx_builder_pop(b);
        RX_TRY(s);
    }
    blk->has_sampler = a->add_sampler;
    if (a->add_sampler) RX_TRY(rx_build_conv(b, "upsamplers.0.conv", a->out_ch, a->out_ch, 3, 1, 1, &blk->sampler));
    return RX_OK;
}

static rx_tensor *decoder_up_forward(rx_ctx *c, const rx_unet_block *blk, rx_tensor *h, rx_tensor *temb_act,
                                     rx_tensor **skips, int *n_skips) {
    for (int i = 0; i < blk->n_res; i++) h = rx_resnet_apply(c, &blk->res[i], h, temb_act);
    if (blk->has_sampler) h = rx_conv_fwd(c, &blk->sampler, rx_upsample_nearest2x(c, h));
    return h;
}

static const rx_param_spec no_params[] = {{0}};

#define UNET_BLOCK(cname, attn, fam, help)                                                               \
    static const rx_unet_block_impl impl_##cname = {attn, fam##_build, fam##_forward};                    \
    const rx_component rx_comp_block_##cname = {RX_KIND_BLOCK, #cname, help, no_params, &impl_##cname, NULL, \
                                                "unet_" #fam};

UNET_BLOCK(DownBlock2D, 0, down, "U-Net down block: resnets, then a stride-2 conv (diffusers DownBlock2D)")
UNET_BLOCK(AttnDownBlock2D, 1, down, "U-Net down block with self-attention after each resnet (diffusers AttnDownBlock2D)")
UNET_BLOCK(UNetMidBlock2D, 1, mid, "U-Net middle: resnet, attention, resnet (diffusers UNetMidBlock2D)")
UNET_BLOCK(UpBlock2D, 0, up, "U-Net up block: skip-concat resnets, then nearest 2x + conv (diffusers UpBlock2D)")
UNET_BLOCK(AttnUpBlock2D, 1, up, "U-Net up block with self-attention after each resnet (diffusers AttnUpBlock2D)")

/* the AutoencoderKL's blocks (role vae_down / vae_up): no time embedding; DownEncoderBlock2D is the
 * down family (its skips go to a scratch list the encoder drops), built with downsample_padding 0 */
static const rx_unet_block_impl impl_DownEncoderBlock2D = {0, down_build, down_forward};
static const rx_unet_block_impl impl_UpDecoderBlock2D = {0, decoder_up_build, decoder_up_forward};
const rx_component rx_comp_block_DownEncoderBlock2D = {
    RX_KIND_BLOCK, "DownEncoderBlock2D", "VAE encoder block: resnets, then pad (0,1,0,1) + stride-2 conv (diffusers DownEncoderBlock2D)",
    no_params, &impl_DownEncoderBlock2D, NULL, "vae_down"};
const rx_component rx_comp_block_UpDecoderBlock2D = {
    RX_KIND_BLOCK, "UpDecoderBlock2D", "VAE decoder block: layers_per_block+1 resnets, then nearest 2x + conv (diffusers UpDecoderBlock2D)",
    no_params, &impl_UpDecoderBlock2D, NULL, "vae_up"};
