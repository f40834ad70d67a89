/* autoencoder_kl.c — diffusers' AutoencoderKL (the Stable Diffusion VAE, Rombach et al. 2022): same
 * architecture, defaults, state-dict names and config.json.
 *
 *   encoder:  h = conv_in(x); DownEncoderBlock2D per level (resnets, pad (0,1,0,1) + stride-2 conv but
 *             the last); UNetMidBlock2D (resnet, one-head attention over C channels, resnet; no temb);
 *             h = conv_out(silu(conv_norm_out(h)))                          [B, 2L, H/f, W/f]
 *   moments = quant_conv(h) (1x1) = [mean | logvar]        (f = 2^(levels-1), L = latent_channels)
 *   decoder:  h = conv_in(post_quant_conv(z)); mid block; UpDecoderBlock2D per level, deepest first
 *             (layers_per_block+1 resnets, nearest 2x + conv but the last);
 *             x = conv_out(silu(conv_norm_out(h)))                          [B, out, H, W]
 *   forward(x) = decode(mean) (diffusers' forward with sample_posterior=False)
 *
 * Every GroupNorm has eps 1e-6 (diffusers hard-codes it in Encoder/Decoder). The mid-block attention
 * runs through rx_attention, whose kernels never hold the [N, N] score matrix, so a 256x256 image
 * (N = 32*32 tokens at f = 8) or larger decodes in memory linear in N. */
#include "model.h"
#include "unet_blocks.h"
#include <jansson.h>
#include <math.h>
#include <string.h>

#define MAX_LEVELS 8
#define VAE_EPS 1e-6f

typedef struct vae {
    int levels, layers_per_block, groups, mid_attention, use_quant_conv, use_post_quant_conv;
    float scaling_factor;
    int64_t block_out[MAX_LEVELS];
    char down_types[MAX_LEVELS][32], up_types[MAX_LEVELS][32];
    rx_conv_layer enc_conv_in, enc_conv_out, dec_conv_in, dec_conv_out, quant_conv, post_quant_conv;
    rx_group_norm_layer enc_norm_out, dec_norm_out;
    rx_unet_block down[MAX_LEVELS], enc_mid, dec_mid, up[MAX_LEVELS];
    rx_unet_block_impl mid_impl;   /* UNetMidBlock2D, without attention when mid_block_add_attention is false */
} vae;

const rx_param_spec rx_autoencoder_kl_params[] = {
    {"sample_size", RX_P_INT, "32", 1, 65536, NULL, "height = width of the images (diffusers sample_size)"},
    {"in_channels", RX_P_INT, "3", 1, 64, NULL, "image channels in"},
    {"out_channels", RX_P_INT, "3", 1, 64, NULL, "image channels out"},
    {"latent_channels", RX_P_INT, "4", 1, 64, NULL, "channels of the latent"},
    {"block_out_channels", RX_P_INT_LIST, "[64]", 1, 65536, NULL,
     "channels of each level; the latent is 2^(levels-1) times smaller than the image (sd-vae-ft-mse: [128, 256, 512, 512])"},
    {"layers_per_block", RX_P_INT, "1", 1, RX_UNET_MAX_LAYERS - 1, NULL, "resnets per encoder block (decoder blocks get one more)"},
    {"down_block_types", RX_P_STRING_LIST, "[DownEncoderBlock2D]", RX_NO_RANGE, "@block/vae_down", "one per level"},
    {"up_block_types", RX_P_STRING_LIST, "[UpDecoderBlock2D]", RX_NO_RANGE, "@block/vae_up", "one per level, deepest first"},
    {"norm_num_groups", RX_P_INT, "32", 1, 1024, NULL, "GroupNorm groups"},
    {"mid_block_add_attention", RX_P_BOOL, "true", RX_NO_RANGE, NULL, "attention in the middle blocks"},
    {"use_quant_conv", RX_P_BOOL, "true", RX_NO_RANGE, NULL, "1x1 conv on the encoder's moments"},
    {"use_post_quant_conv", RX_P_BOOL, "true", RX_NO_RANGE, NULL, "1x1 conv on the latent before the decoder"},
    {"scaling_factor", RX_P_FLOAT, "0.18215", 0, 1000, NULL,
     "the latents' scale for diffusion (diffusers config; kept for export: the latent section's scaling_factor is what a run uses)"},
    {"weights", RX_P_PATH, "null", RX_NO_RANGE, NULL,
     "start from these weights: diffusers AutoencoderKL safetensors (e.g. sd-vae-ft-mse's diffusion_pytorch_model.safetensors, "
     "old attention names query/key/value/proj_attn included), or a runexp checkpoint. A diffusers config.json beside them "
     "sets every key above that the experiment leaves out; a key set to another value is an error"},
    {0}
};

static const rx_unet_block_impl *find_block(const char *name, const char *role) {
    const rx_component *comp = rx_registry_find(RX_KIND_BLOCK, name);
    return comp && comp->role && !strcmp(comp->role, role) ? comp->impl : NULL;
}

static rx_status build_mid(rx_builder *b, vae *v, const rx_unet_block_args *a, rx_unet_block *blk) {
    rx_builder_push(b, "mid_block");
    rx_status s = v->mid_impl.build(b, &v->mid_impl, a, blk);
    rx_builder_pop(b);
    return s;
}

static rx_status build_encoder(rx_builder *b, vae *v, int in_channels, int latent_channels) {
    rx_unet_block_args a = {.groups = v->groups, .eps = VAE_EPS, .downsample_padding = 0};
    int nb = v->levels, out_ch = (int)v->block_out[0];
    rx_builder_push(b, "encoder");
    rx_status s = rx_build_conv(b, "conv_in", in_channels, out_ch, 3, 1, 1, &v->enc_conv_in);
    for (int i = 0; i < nb && !s; i++) {
        const rx_unet_block_impl *impl = find_block(v->down_types[i], "vae_down");
        if (!impl) { s = rx_fail(RX_ERR_CONFIG, "model/autoencoder_kl: '%s' is not a VAE down block type", v->down_types[i]); break; }
        a.in_ch = out_ch;
        a.out_ch = out_ch = (int)v->block_out[i];
        a.num_layers = v->layers_per_block;
        a.add_sampler = i < nb - 1;
        rx_builder_push(b, "down_blocks.%d", i);
        s = impl->build(b, impl, &a, &v->down[i]);
        rx_builder_pop(b);
    }
    a.in_ch = out_ch;
    a.head_dim = out_ch;   /* one head as wide as the channels */
    if (!s) s = build_mid(b, v, &a, &v->enc_mid);
    if (!s) s = rx_build_group_norm(b, "conv_norm_out", v->groups, out_ch, VAE_EPS, &v->enc_norm_out);
    if (!s) s = rx_build_conv(b, "conv_out", out_ch, 2 * latent_channels, 3, 1, 1, &v->enc_conv_out);   /* double_z */
    rx_builder_pop(b);
    return s;
}

static rx_status build_decoder(rx_builder *b, vae *v, int latent_channels, int out_channels) {
    int nb = v->levels, out_ch = (int)v->block_out[nb - 1];
    rx_unet_block_args a = {.groups = v->groups, .eps = VAE_EPS, .in_ch = out_ch, .head_dim = out_ch};
    rx_builder_push(b, "decoder");
    rx_status s = rx_build_conv(b, "conv_in", latent_channels, out_ch, 3, 1, 1, &v->dec_conv_in);
    if (!s) s = build_mid(b, v, &a, &v->dec_mid);
    for (int i = 0; i < nb && !s; i++) {
        const rx_unet_block_impl *impl = find_block(v->up_types[i], "vae_up");
        if (!impl) { s = rx_fail(RX_ERR_CONFIG, "model/autoencoder_kl: '%s' is not a VAE up block type", v->up_types[i]); break; }
        a.prev_out_ch = out_ch;
        a.out_ch = out_ch = (int)v->block_out[nb - 1 - i];
        a.num_layers = v->layers_per_block + 1;
        a.add_sampler = i < nb - 1;
        rx_builder_push(b, "up_blocks.%d", i);
        s = impl->build(b, impl, &a, &v->up[i]);
        rx_builder_pop(b);
    }
    if (!s) s = rx_build_group_norm(b, "conv_norm_out", v->groups, out_ch, VAE_EPS, &v->dec_norm_out);
    if (!s) s = rx_build_conv(b, "conv_out", out_ch, out_channels, 3, 1, 1, &v->dec_conv_out);
    rx_builder_pop(b);
    return s;
}

static rx_status vae_create(rx_ctx *c, const rx_params *p, uint64_t seed, rx_model **out) {
    int nb, nd, nu;
    const int64_t *boc = rx_param_int_list(p, "block_out_channels", &nb);
    const char **down_types = rx_param_str_list(p, "down_block_types", &nd);
    const char **up_types = rx_param_str_list(p, "up_block_types", &nu);
    if (nb < 1 || nb > MAX_LEVELS)
        return rx_fail(RX_ERR_CONFIG, "model/autoencoder_kl: block_out_channels has %d levels (1..%d)", nb, MAX_LEVELS);
    if (nd != nb || nu != nb)
        return rx_fail(RX_ERR_CONFIG, "model/autoencoder_kl: %d block_out_channels but %d down_block_types and %d up_block_types",
                       nb, nd, nu);
    int sample = (int)rx_param_int(p, "sample_size");
    if (sample % (1 << (nb - 1)))
        return rx_fail(RX_ERR_CONFIG, "model/autoencoder_kl: sample_size %d is not divisible by 2^%d (one halving per level)",
                       sample, nb - 1);
    const rx_unet_block_impl *mid = find_block("UNetMidBlock2D", "unet_mid");
    if (!mid) return rx_fail(RX_ERR_INTERNAL, "model/autoencoder_kl: no UNetMidBlock2D in the registry");

    rx_model *m = calloc(1, sizeof *m);
    vae *v = calloc(1, sizeof *v);
    if (!m || !v) { free(m); free(v); return rx_fail(RX_ERR_OOM, "model/autoencoder_kl: out of memory"); }
    m->arch = "autoencoder_kl";
    m->priv = v;
    m->in_channels = (int)rx_param_int(p, "in_channels");
    m->out_channels = (int)rx_param_int(p, "out_channels");
    m->sample_size = sample;
    m->latent_channels = (int)rx_param_int(p, "latent_channels");
    m->latent_factor = 1 << (nb - 1);
    v->levels = nb;
    v->layers_per_block = (int)rx_param_int(p, "layers_per_block");
    v->groups = (int)rx_param_int(p, "norm_num_groups");
    v->mid_attention = rx_param_bool(p, "mid_block_add_attention");
    v->use_quant_conv = rx_param_bool(p, "use_quant_conv");
    v->use_post_quant_conv = rx_param_bool(p, "use_post_quant_conv");
    v->scaling_factor = (float)rx_param_float(p, "scaling_factor");
    v->mid_impl = *mid;
    v->mid_impl.with_attention = v->mid_attention;
    for (int i = 0; i < nb; i++) {
        v->block_out[i] = boc[i];
        snprintf(v->down_types[i], sizeof v->down_types[i], "%s", down_types[i]);
        snprintf(v->up_types[i], sizeof v->up_types[i], "%s", up_types[i]);
    }

    rx_builder bld, *b = &bld;
    rx_builder_init(b, c, &m->params, seed);
    const int L = m->latent_channels;
    rx_status s = build_encoder(b, v, m->in_channels, L);
    if (!s) s = build_decoder(b, v, L, m->out_channels);
    if (!s && v->use_quant_conv) s = rx_build_conv(b, "quant_conv", 2 * L, 2 * L, 1, 1, 0, &v->quant_conv);
    if (!s && v->use_post_quant_conv) s = rx_build_conv(b, "post_quant_conv", L, L, 1, 1, 0, &v->post_quant_conv);
    if (s) { rx_model_destroy(m); return s; }
    *out = m;
    return RX_OK;
}

static rx_tensor *vae_encode(rx_ctx *c, rx_model *m, rx_tensor *x) {
    const vae *v = m->priv;
    if (!x) return NULL;
    if (x->ndim != 4 || x->shape[1] != m->in_channels || x->shape[2] % m->latent_factor || x->shape[3] % m->latent_factor)
        return rx_ctx_fail(c, RX_ERR_SHAPE, "autoencoder_kl: x %s, expected [B,%d,H,W] with H and W multiples of %d",
                           RX_SHAPE_STR(x), m->in_channels, m->latent_factor);
    rx_tensor *skips[RX_UNET_MAX_LAYERS + 1];   /* the down blocks push their outputs; the encoder has no use for them */
    rx_tensor *h = rx_conv_fwd(c, &v->enc_conv_in, x);
    for (int i = 0; i < v->levels; i++) {
        int n_skips = 0;
        h = v->down[i].impl->forward(c, &v->down[i], h, NULL, skips, &n_skips);
    }
    h = v->enc_mid.impl->forward(c, &v->enc_mid, h, NULL, NULL, NULL);
    h = rx_conv_fwd(c, &v->enc_conv_out, rx_group_norm_silu_fwd(c, &v->enc_norm_out, h, NULL));
    return v->use_quant_conv ? rx_conv_fwd(c, &v->quant_conv, h) : h;
}

static rx_tensor *vae_decode(rx_ctx *c, rx_model *m, rx_tensor *z) {
    const vae *v = m->priv;
    if (!z) return NULL;
    if (z->ndim != 4 || z->shape[1] != m->latent_channels)
        return rx_ctx_fail(c, RX_ERR_SHAPE, "autoencoder_kl: z %s, expected [B,%d,h,w]", RX_SHAPE_STR(z), m->latent_channels);
    rx_tensor *h = v->use_post_quant_conv ? rx_conv_fwd(c, &v->post_quant_conv, z) : z;
    h = rx_conv_fwd(c, &v->dec_conv_in, h);
    h = v->dec_mid.impl->forward(c, &v->dec_mid, h, NULL, NULL, NULL);
    for (int i = 0; i < v->levels; i++) h = v->up[i].impl->forward(c, &v->up[i], h, NULL, NULL, NULL);
    return rx_conv_fwd(c, &v->dec_conv_out, rx_group_norm_silu_fwd(c, &v->dec_norm_out, h, NULL));
}

/* the reconstruction through the posterior mean; t and labels are not used */
static rx_tensor *vae_forward(rx_ctx *c, rx_model *m, rx_tensor *x, rx_tensor *t, rx_tensor *labels) {
    rx_tensor *moments = vae_encode(c, m, x);
    if (!moments) return NULL;
    return vae_decode(c, m, rx_slice(c, moments, 1, 0, m->latent_channels));
}

void rx_vae_posterior_host(const float *moments, int64_t B, int64_t L, int64_t hw, float *mean, float *std) {
    for (int64_t b = 0; b < B; b++) {
        const float *mu = moments + b * 2 * L * hw, *logvar = mu + L * hw;
        for (int64_t i = 0; i < L * hw; i++) {
            float lv = fminf(fmaxf(logvar[i], -30.0f), 20.0f);
            mean[b * L * hw + i] = mu[i];
            std[b * L * hw + i] = expf(0.5f * lv);
        }
    }
}

// ---------------------------------------------------------------------------
// config.json both ways

/* AutoencoderKL settings that runexp implements one way only, diffusers' default (JSON): export writes
 * them, import refuses a config.json with anything else */
static const struct { const char *key, *value; } vae_fixed_keys[] = {
    {"act_fn", "\"silu\""}, {"shift_factor", "null"}, {"latents_mean", "null"}, {"latents_std", "null"},
};
#define VAE_N_FIXED (int)(sizeof vae_fixed_keys / sizeof vae_fixed_keys[0])

static json_t *vae_diffusers_config(const rx_model *m) {
    const vae *v = m->priv;
    json_t *j = json_object(), *boc = json_array(), *dt = json_array(), *ut = json_array();
    for (int i = 0; i < v->levels; i++) {
        json_array_append_new(boc, json_integer(v->block_out[i]));
        json_array_append_new(dt, json_string(v->down_types[i]));
        json_array_append_new(ut, json_string(v->up_types[i]));
    }
    json_object_set_new(j, "_class_name", json_string("AutoencoderKL"));
    json_object_set_new(j, "sample_size", json_integer(m->sample_size));
    json_object_set_new(j, "in_channels", json_integer(m->in_channels));
    json_object_set_new(j, "out_channels", json_integer(m->out_channels));
    json_object_set_new(j, "latent_channels", json_integer(m->latent_channels));
    json_object_set_new(j, "block_out_channels", boc);
    json_object_set_new(j, "layers_per_block", json_integer(v->layers_per_block));
    json_object_set_new(j, "down_block_types", dt);
    json_object_set_new(j, "up_block_types", ut);
    json_object_set_new(j, "norm_num_groups", json_integer(v->groups));
    json_object_set_new(j, "mid_block_add_attention", json_boolean(v->mid_attention));
    json_object_set_new(j, "use_quant_conv", json_boolean(v->use_quant_conv));
    json_object_set_new(j, "use_post_quant_conv", json_boolean(v->use_post_quant_conv));
    json_object_set_new(j, "scaling_factor", rx_json_float32(v->scaling_factor));
    json_object_set_new(j, "force_upcast", json_true());   /* a half-precision choice; weights are float32 here */
    for (int i = 0; i < VAE_N_FIXED; i++)
        json_object_set_new(j, vae_fixed_keys[i].key, json_loads(vae_fixed_keys[i].value, JSON_DECODE_ANY, NULL));
    return j;
}

/* AutoencoderKL config keys that are autoencoder_kl parameters of the same name and meaning, with
 * diffusers' default (JSON) */
static const struct { const char *key, *diffusers_default; } vae_same_keys[] = {
    {"in_channels", "3"}, {"out_channels", "3"}, {"latent_channels", "4"}, {"block_out_channels", "[64]"},
    {"layers_per_block", "1"}, {"down_block_types", "[\"DownEncoderBlock2D\"]"}, {"up_block_types", "[\"UpDecoderBlock2D\"]"},
    {"norm_num_groups", "32"}, {"mid_block_add_attention", "true"}, {"use_quant_conv", "true"},
    {"use_post_quant_conv", "true"}, {"scaling_factor", "0.18215"},
};

static rx_status vae_params_from_diffusers(const json_t *config, const char *path, rx_diffusers_param_fn put, void *ctx) {
    const char *cls = json_string_value(json_object_get(config, "_class_name"));
    if (strcmp(cls, "AutoencoderKL"))
        return rx_fail(RX_ERR_CONFIG, "%s: a %s config; model 'autoencoder_kl' is diffusers' AutoencoderKL", path, cls);
    for (int i = 0; i < VAE_N_FIXED; i++)
        RX_TRY(rx_diffusers_require(config, path, "autoencoder_kl", vae_fixed_keys[i].key, vae_fixed_keys[i].value));
    /* sample_size: an int or a square [h, w] (the size it was trained at; any multiple of 2^(levels-1) runs) */
    const json_t *size = json_object_get(config, "sample_size");
    if (json_is_array(size) && json_array_size(size) == 2 && json_equal(json_array_get(size, 0), json_array_get(size, 1)))
        size = json_array_get(size, 0);
    if (json_is_integer(size)) put(ctx, "sample_size", size, 0);
    else if (size && !json_is_null(size))
        return rx_fail(RX_ERR_CONFIG, "%s: sample_size must be a number or a square [h, w]", path);
    for (size_t i = 0; i < sizeof vae_same_keys / sizeof vae_same_keys[0]; i++) {
        json_t *val = rx_diffusers_value(config, vae_same_keys[i].key, vae_same_keys[i].diffusers_default);
        if (!val) return rx_fail(RX_ERR_OOM, "%s: out of memory", path);
        put(ctx, vae_same_keys[i].key, val, 0);
        json_decref(val);
    }
    return RX_OK;
}

static void vae_destroy(rx_model *m) { free(m->priv); }

static const rx_model_impl vae_impl = {vae_create, vae_forward, NULL, vae_diffusers_config, vae_destroy, NULL,
                                       vae_params_from_diffusers, vae_encode, vae_decode};
const rx_component rx_comp_model_autoencoder_kl = {
    RX_KIND_MODEL, "autoencoder_kl", "diffusers AutoencoderKL (the Stable Diffusion VAE), same names, defaults and config.json",
    rx_autoencoder_kl_params, &vae_impl, NULL};
