/* unet_blocks.h — the U-Net's down, mid and up blocks (diffusers unet_2d_blocks), looked up
 * in the registry by the names a config uses (DownBlock2D, AttnDownBlock2D, UNetMidBlock2D,
 * UpBlock2D, AttnUpBlock2D). Each is a component of kind `block` whose role says where it
 * goes (unet_down, unet_mid, unet_up) and whose impl is an rx_unet_block_impl; a new block
 * type is its descriptor plus one line in registry/components.def. */
#ifndef RX_UNET_BLOCKS_H
#define RX_UNET_BLOCKS_H

#include "resnet.h"

#define RX_UNET_MAX_LAYERS 8

typedef struct rx_unet_block_args {
    int in_ch, out_ch, prev_out_ch;   /* prev_out_ch: up blocks only                 */
    int temb_ch, num_layers;
    int add_sampler;                  /* downsample (down) / upsample (up) at the end */
    int groups, head_dim, downsample_padding;
    float eps, dropout;
} rx_unet_block_args;

typedef struct rx_unet_block {
    const struct rx_unet_block_impl *impl;
    int n_res, n_attn;
    rx_resnet_block res[RX_UNET_MAX_LAYERS];
    rx_attn_block attn[RX_UNET_MAX_LAYERS];
    rx_conv_layer sampler;            /* downsamplers.0.conv / upsamplers.0.conv */
    int has_sampler;
    int pad_before_sampler;           /* down, downsample_padding 0: F.pad (0, 1, 0, 1) before the conv */
} rx_unet_block;

typedef struct rx_unet_block_impl {
    int with_attention;
    rx_status (*build)(rx_builder *b, const struct rx_unet_block_impl *impl, const rx_unet_block_args *a, rx_unet_block *blk);
    /* down: pushes its outputs onto skips; up: pops len(resnets) skips; mid: neither */
    rx_tensor *(*forward)(rx_ctx *c, const rx_unet_block *blk, rx_tensor *h, rx_tensor *temb_act,
                          rx_tensor **skips, int *n_skips);
} rx_unet_block_impl;

#endif
