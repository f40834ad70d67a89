/* unet.c — diffusers' UNet2DModel: same architecture, defaults and state-dict names.
 *
 *   emb  = time_embedding(timestep_embedding(t)) (+ class_embedding(label))      [B, 4*C0]
 *   h    = conv_in(x); skips = [h]
 *   down blocks (push skips) -> mid block -> up blocks (pop skips, concat)
 *   out  = conv_out(silu(conv_norm_out(h)))
 *
 * Class conditioning: `num_classes: K` makes a (K+1)-row class_embedding; label K is the
 * null label of classifier-free guidance (diffusers' num_class_embeds = K + 1). */
#include "model.h"
#include "unet_blocks.h"
#include <jansson.h>
#include <string.h>

#define MAX_LEVELS 8

/* a registered block of the given role ("unet_down", "unet_mid", "unet_up"), or NULL */
static const rx_unet_block_impl *find_block(const char *name, const char *role) {
    const rx_component *comp = rx_registry_find(RX_KIND_BLOCK, name);
    return comp && comp->role && !strcmp(comp->role, role) ? comp->impl : NULL;
}

typedef struct unet {
    int levels, c0, temb_ch;
    int flip_sin_to_cos;
    float freq_shift;
    rx_conv_layer conv_in, conv_out;
    rx_linear_layer time_linear_1, time_linear_2;
    rx_embedding_layer class_embedding;
    rx_unet_block down[MAX_LEVELS], mid, up[MAX_LEVELS];
    rx_group_norm_layer norm_out;
    /* config, kept for export */
    int layers_per_block, head_dim, groups, downsample_padding, add_attention;
    float eps, dropout;
    int64_t block_out[MAX_LEVELS];
    char down_types[MAX_LEVELS][32], up_types[MAX_LEVELS][32];
} unet;

const rx_param_spec rx_unet_params[] = {
    {"sample_size", RX_P_INT, "32", 1, 4096, NULL, "height = width of the images (diffusers sample_size)"},
    {"in_channels", RX_P_INT, "3", 1, 64, NULL, "input channels"},
    {"out_channels", RX_P_INT, "3", 1, 64, NULL, "output channels"},
    {"layers_per_block", RX_P_INT, "2", 1, RX_UNET_MAX_LAYERS - 1, NULL, "resnets per down block (up blocks get one more)"},
    {"block_out_channels", RX_P_INT_LIST, "[224, 448, 672, 896]", 1, 65536, NULL, "channels of each level"},
    {"down_block_types", RX_P_STRING_LIST, "[DownBlock2D, AttnDownBlock2D, AttnDownBlock2D, AttnDownBlock2D]", RX_NO_RANGE,
     "@block/unet_down", "one per level"},
    {"up_block_types", RX_P_STRING_LIST, "[AttnUpBlock2D, AttnUpBlock2D, AttnUpBlock2D, UpBlock2D]", RX_NO_RANGE,
     "@block/unet_up", "one per level, deepest first"},
    {"mid_block_type", RX_P_CHOICE, "UNetMidBlock2D", RX_NO_RANGE, "@block/unet_mid", "middle block"},
    {"add_attention", RX_P_BOOL, "true", RX_NO_RANGE, NULL, "attention in the middle block"},
    {"attention_head_dim", RX_P_INT, "8", 1, 65536, NULL,
     "channels per attention head: heads = channels // this, as diffusers (q, k, v are heads x this wide, "
     "narrower than the channels when this does not divide them)"},
    {"norm_num_groups", RX_P_INT, "32", 1, 1024, NULL, "GroupNorm groups"},
    {"norm_eps", RX_P_FLOAT, "1e-05", 0, 1, NULL, "GroupNorm epsilon"},
    {"dropout", RX_P_FLOAT, "0.0", 0, 1, NULL,
     "dropout inside resnets (a training choice: the experiment's value wins over a config.json beside the weights)"},
    {"num_classes", RX_P_INT, "0", 0, 1000000, NULL,
     "class labels K (0 = unconditional); the class embedding has K+1 rows, label K = no label (CFG)"},
    {"flip_sin_to_cos", RX_P_BOOL, "true", RX_NO_RANGE, NULL, "timestep embedding order [cos, sin]"},
    {"freq_shift", RX_P_FLOAT, "0", 0, 1, NULL, "timestep embedding downscale_freq_shift"},
    {"downsample_padding", RX_P_INT, "1", 0, 1, NULL,
     "padding of the stride-2 downsampling conv; 0 pads the bottom row and right column instead, as diffusers"},
    {"weights", RX_P_PATH, "null", RX_NO_RANGE, NULL,
     "start from these weights: diffusers UNet2DModel safetensors (diffusion_pytorch_model.safetensors), or a runexp "
     "checkpoint. A diffusers config.json beside them (or beside init) sets every key above that the experiment leaves "
     "out; a key set to another value is an error"},
    {0}
};

static rx_status unet_create(rx_ctx *c, const rx_params *p, uint64_t seed, rx_model **out) {
    int nb, nd, nu;
    const int64_t *boc = rx_param_int_list(p, "block_out_channels", &nb);
    const char **down_types = rx_param_str_list(p, "down_block_types", &nd);
    const char **up_types = rx_param_str_list(p, "up_block_types", &nu);
    if (nb < 1 || nb > MAX_LEVELS) return rx_fail(RX_ERR_CONFIG, "model/unet: block_out_channels has %d levels (1..%d)", nb, MAX_LEVELS);
    if (nd != nb || nu != nb)
        return rx_fail(RX_ERR_CONFIG, "model/unet: %d block_out_channels but %d down_block_types and %d up_block_types", nb, nd, nu);
    int sample = (int)rx_param_int(p, "sample_size");
    if (sample % (1 << (nb - 1)))
        return rx_fail(RX_ERR_CONFIG, "model/unet: sample_size %d is not divisible by 2^%d (one halving per level)", sample, nb - 1);

    rx_model *m = calloc(1, sizeof *m);
    unet *u = calloc(1, sizeof *u);
    if (!m || !u) { free(m); free(u); return rx_fail(RX_ERR_OOM, "model/unet: out of memory"); }
    m->arch = "unet";
    m->priv = u;
    m->in_channels = (int)rx_param_int(p, "in_channels");
    m->out_channels = (int)rx_param_int(p, "out_channels");
    m->sample_size = sample;
    m->num_classes = (int)rx_param_int(p, "num_classes");
    u->levels = nb;
    u->c0 = (int)boc[0];
    u->temb_ch = 4 * u->c0;
    u->flip_sin_to_cos = rx_param_bool(p, "flip_sin_to_cos");
    u->freq_shift = (float)rx_param_float(p, "freq_shift");
    u->layers_per_block = (int)rx_param_int(p, "layers_per_block");
    u->head_dim = (int)rx_param_int(p, "attention_head_dim");
    u->groups = (int)rx_param_int(p, "norm_num_groups");
    u->eps = (float)rx_param_float(p, "norm_eps");
    u->dropout = (float)rx_param_float(p, "dropout");
    u->downsample_padding = (int)rx_param_int(p, "downsample_padding");
    u->add_attention = rx_param_bool(p, "add_attention");
    for (int i = 0; i < nb; i++) {
        u->block_out[i] = boc[i];
        snprintf(u->down_types[i], sizeof u->down_types[i], "%s", down_types[i]);
        snprintf(u->up_types[i], sizeof u->up_types[i], "%s", up_types[i]);
    }

    rx_builder bld, *b = &bld;
    rx_builder_init(b, c, &m->params, seed);
    rx_status s = rx_build_conv(b, "conv_in", m->in_channels, u->c0, 3, 1, 1, &u->conv_in);
    if (!s) s = rx_build_linear(b, "time_embedding.linear_1", u->c0, u->temb_ch, 1, &u->time_linear_1);
    if (!s) s = rx_build_linear(b, "time_embedding.linear_2", u->temb_ch, u->temb_ch, 1, &u->time_linear_2);
    if (!s && m->num_classes > 0) s = rx_build_embedding(b, "class_embedding", m->num_classes + 1, u->temb_ch, &u->class_embedding);

    rx_unet_block_args a = {.temb_ch = u->temb_ch, .groups = u->groups, .head_dim = u->head_dim,
                            .eps = u->eps, .dropout = u->dropout, .downsample_padding = u->downsample_padding};
    int out_ch = u->c0;
    for (int i = 0; i < nb && !s; i++) {
        const rx_unet_block_impl *impl = find_block(down_types[i], "unet_down");
        if (!impl) { s = rx_fail(RX_ERR_CONFIG, "model/unet: '%s' is not a down block type", down_types[i]); break; }
        a.in_ch = out_ch;
        a.out_ch = out_ch = (int)boc[i];
        a.num_layers = u->layers_per_block;
        a.add_sampler = i < nb - 1;
        rx_builder_push(b, "down_blocks.%d", i);
        s = impl->build(b, impl, &a, &u->down[i]);
        rx_builder_pop(b);
    }
    if (!s) {
        const rx_unet_block_impl *impl = find_block(rx_param_str(p, "mid_block_type"), "unet_mid");
        static rx_unet_block_impl mid_no_attn;
        if (!u->add_attention) { mid_no_attn = *impl; mid_no_attn.with_attention = 0; impl = &mid_no_attn; }
        a.in_ch = (int)boc[nb - 1];
        rx_builder_push(b, "mid_block");
        s = impl->build(b, impl, &a, &u->mid);
        rx_builder_pop(b);
    }
    out_ch = (int)boc[nb - 1];
    for (int i = 0; i < nb && !s; i++) {
        const rx_unet_block_impl *impl = find_block(up_types[i], "unet_up");
        if (!impl) { s = rx_fail(RX_ERR_CONFIG, "model/unet: '%s' is not an up block type", up_types[i]); break; }
        a.prev_out_ch = out_ch;
        a.out_ch = out_ch = (int)boc[nb - 1 - i];
        a.in_ch = (int)boc[nb - 1 - (i + 1 < nb ? i + 1 : nb - 1)];
        a.num_layers = u->layers_per_block + 1;
        a.add_sampler = i < nb - 1;
        rx_builder_push(b, "up_blocks.%d", i);
        s = impl->build(b, impl, &a, &u->up[i]);
        rx_builder_pop(b);
    }
    if (!s) s = rx_build_group_norm(b, "conv_norm_out", u->groups, u->c0, u->eps, &u->norm_out);
    if (!s) s = rx_build_conv(b, "conv_out", u->c0, m->out_channels, 3, 1, 1, &u->conv_out);
    if (s) { rx_model_destroy(m); return s; }
    *out = m;
    return RX_OK;
}

static rx_tensor *unet_forward(rx_ctx *c, rx_model *m, rx_tensor *x, rx_tensor *t, rx_tensor *labels) {
    unet *u = m->priv;
    if (!x || !t) return rx_ctx_fail(c, RX_ERR_ARG, "unet: missing input or timesteps");
    if (x->ndim != 4 || x->shape[1] != m->in_channels)
        return rx_ctx_fail(c, RX_ERR_SHAPE, "unet: x %s, expected [B,%d,H,W]", RX_SHAPE_STR(x), m->in_channels);
    int64_t B = x->shape[0];
    rx_tensor *emb = rx_timestep_embedding(c, t, u->c0, u->flip_sin_to_cos, u->freq_shift, 1.0f, 10000.0f);
    emb = rx_linear_fwd(c, &u->time_linear_2, rx_silu(c, rx_linear_fwd(c, &u->time_linear_1, emb)));
    if (m->num_classes > 0) {
        rx_tensor *lab = labels ? labels : rx_full(c, RX_SHAPE(B), (float)m->num_classes);   /* no label given: null label */
        emb = rx_add(c, emb, rx_embedding(c, u->class_embedding.w, lab));
    }
    rx_tensor *temb_act = rx_silu(c, emb);

    rx_tensor *skips[MAX_LEVELS * (RX_UNET_MAX_LAYERS + 1) + 1];
    int n_skips = 0;
    rx_tensor *h = rx_conv_fwd(c, &u->conv_in, x);
    skips[n_skips++] = h;
    for (int i = 0; i < u->levels; i++) h = u->down[i].impl->forward(c, &u->down[i], h, temb_act, skips, &n_skips);
    h = u->mid.impl->forward(c, &u->mid, h, temb_act, skips, &n_skips);
    for (int i = 0; i < u->levels; i++) h = u->up[i].impl->forward(c, &u->up[i], h, temb_act, skips, &n_skips);
    return rx_conv_fwd(c, &u->conv_out, rx_group_norm_silu_fwd(c, &u->norm_out, h, NULL));
}

/* UNet2DModel settings that runexp's unet implements one way only, diffusers' default (JSON): export
 * writes them, import refuses a config.json that has anything else */
static const struct { const char *key, *value; } unet_fixed_keys[] = {
    {"act_fn", "\"silu\""}, {"time_embedding_type", "\"positional\""}, {"time_embedding_dim", "null"},
    {"center_input_sample", "false"}, {"mid_block_scale_factor", "1"}, {"downsample_type", "\"conv\""},
    {"upsample_type", "\"conv\""}, {"resnet_time_scale_shift", "\"default\""}, {"class_embed_type", "null"},
    {"attn_norm_num_groups", "null"},   /* null: the attention's GroupNorm has norm_num_groups */
};
#define UNET_N_FIXED (int)(sizeof unet_fixed_keys / sizeof unet_fixed_keys[0])

static json_t *unet_diffusers_config(const rx_model *m) {
    const unet *u = m->priv;
    json_t *j = json_object(), *boc = json_array(), *dt = json_array(), *ut = json_array();
    for (int i = 0; i < u->levels; i++) {
        json_array_append_new(boc, json_integer(u->block_out[i]));
        json_array_append_new(dt, json_string(u->down_types[i]));
        json_array_append_new(ut, json_string(u->up_types[i]));
    }
    json_object_set_new(j, "_class_name", json_string("UNet2DModel"));
    json_object_set_new(j, "sample_size", json_integer(m->sample_size));
    json_object_set_new(j, "in_channels", json_integer(m->in_channels));
    json_object_set_new(j, "out_channels", json_integer(m->out_channels));
    json_object_set_new(j, "layers_per_block", json_integer(u->layers_per_block));
    json_object_set_new(j, "block_out_channels", boc);
    json_object_set_new(j, "down_block_types", dt);
    json_object_set_new(j, "up_block_types", ut);
    json_object_set_new(j, "mid_block_type", json_string("UNetMidBlock2D"));
    json_object_set_new(j, "add_attention", json_boolean(u->add_attention));
    json_object_set_new(j, "attention_head_dim", json_integer(u->head_dim));
    json_object_set_new(j, "norm_num_groups", json_integer(u->groups));
    json_object_set_new(j, "norm_eps", rx_json_float32(u->eps));
    json_object_set_new(j, "dropout", rx_json_float32(u->dropout));
    json_object_set_new(j, "flip_sin_to_cos", json_boolean(u->flip_sin_to_cos));
    /* diffusers annotates freq_shift as int but computes with it as a float: a fraction stays one */
    json_object_set_new(j, "freq_shift", u->freq_shift == (int)u->freq_shift ? json_integer((int)u->freq_shift)
                                                                             : rx_json_float32(u->freq_shift));
    json_object_set_new(j, "downsample_padding", json_integer(u->downsample_padding));
    for (int i = 0; i < UNET_N_FIXED; i++)
        json_object_set_new(j, unet_fixed_keys[i].key, json_loads(unet_fixed_keys[i].value, JSON_DECODE_ANY, NULL));
    json_object_set_new(j, "num_class_embeds", m->num_classes > 0 ? json_integer(m->num_classes + 1) : json_null());
    return j;
}

/* UNet2DModel config keys that are unet parameters of the same name and meaning, with diffusers'
 * default (JSON), which a config.json that leaves the key out means */
static const struct { const char *key, *diffusers_default; int training_choice; } unet_same_keys[] = {
    {"in_channels", "3"}, {"out_channels", "3"}, {"layers_per_block", "2"},
    {"block_out_channels", "[224, 448, 672, 896]"},
    {"down_block_types", "[\"DownBlock2D\", \"AttnDownBlock2D\", \"AttnDownBlock2D\", \"AttnDownBlock2D\"]"},
    {"up_block_types", "[\"AttnUpBlock2D\", \"AttnUpBlock2D\", \"AttnUpBlock2D\", \"UpBlock2D\"]"},
    {"mid_block_type", "\"UNetMidBlock2D\""}, {"add_attention", "true"}, {"attention_head_dim", "8"}, {"norm_num_groups", "32"},
    {"norm_eps", "1e-05"}, {"flip_sin_to_cos", "true"}, {"freq_shift", "0"}, {"downsample_padding", "1"},
    {"dropout", "0.0", 1},   /* regularisation while training: the experiment's value wins */
};

/* the inverse of unet_diffusers_config */
static rx_status unet_params_from_diffusers(const json_t *config, const char *path, rx_diffusers_param_fn put, void *ctx) {
    const char *cls = json_string_value(json_object_get(config, "_class_name"));
    if (strcmp(cls, "UNet2DModel"))
        return rx_fail(RX_ERR_CONFIG, "%s: a %s config; model 'unet' is diffusers' UNet2DModel", path, cls);
    /* attn_norm_num_groups null means norm_num_groups, so that number is the same setting */
    int attn_groups_same = json_equal(json_object_get(config, "attn_norm_num_groups"), json_object_get(config, "norm_num_groups"));
    for (int i = 0; i < UNET_N_FIXED; i++)
        if (!(attn_groups_same && !strcmp(unet_fixed_keys[i].key, "attn_norm_num_groups")))
            RX_TRY(rx_diffusers_require(config, path, "unet", unet_fixed_keys[i].key, unet_fixed_keys[i].value));

    /* sample_size: an int or [h, w]; null (any size) leaves ours */
    const json_t *size = json_object_get(config, "sample_size");
    if (json_is_array(size) && json_array_size(size) == 2 && json_equal(json_array_get(size, 0), json_array_get(size, 1)))
        size = json_array_get(size, 0);
    if (json_is_integer(size)) put(ctx, "sample_size", size, 0);
    else if (size && !json_is_null(size))
        return rx_fail(RX_ERR_CONFIG, "%s: sample_size must be a number or a square [h, w]; model 'unet' has square inputs", path);
    /* null: diffusers gives each block one head as wide as its channels, which no single number here says */
    const json_t *head = json_object_get(config, "attention_head_dim");
    if (head && json_is_null(head))
        return rx_fail(RX_ERR_CONFIG, "%s: attention_head_dim null (one head per block, as wide as its channels) has no "
                       "equivalent in model 'unet'; give a number", path);
    for (size_t i = 0; i < sizeof unet_same_keys / sizeof unet_same_keys[0]; i++) {
        json_t *v = rx_diffusers_value(config, unet_same_keys[i].key, unet_same_keys[i].diffusers_default);
        if (!v) return rx_fail(RX_ERR_OOM, "%s: out of memory", path);
        put(ctx, unet_same_keys[i].key, v, unet_same_keys[i].training_choice);
        json_decref(v);
    }
    /* num_class_embeds K + 1 (the last row the null label) = num_classes K; null = unconditional */
    const json_t *embeds = json_object_get(config, "num_class_embeds");
    if (embeds && !json_is_null(embeds) && !(json_is_integer(embeds) && json_integer_value(embeds) >= 2))
        return rx_fail(RX_ERR_CONFIG, "%s: num_class_embeds must be null or at least 2 (K classes + the null label)", path);
    json_t *k = json_integer(embeds && !json_is_null(embeds) ? json_integer_value(embeds) - 1 : 0);
    put(ctx, "num_classes", k, 0);
    json_decref(k);
    return RX_OK;
}

static void unet_destroy(rx_model *m) { free(m->priv); }

static const rx_model_impl unet_impl = {unet_create, unet_forward, NULL, unet_diffusers_config, unet_destroy, NULL,
                                        unet_params_from_diffusers};
const rx_component rx_comp_model_unet = {RX_KIND_MODEL, "unet", "diffusers UNet2DModel (DDPM / ADM-style U-Net), same names and defaults",
                                         rx_unet_params, &unet_impl, NULL};
