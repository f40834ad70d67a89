/* dit.c — DiT (Peebles & Xie 2023) with diffusers' DiTTransformer2DModel state-dict names.
 *
 *   x [B,C,H,W] -> tokens = patchify conv (pos_embed.proj, kernel = stride = p) [B,N,D], N = (H/p)(W/p)
 *   tokens += pos [N,D]                         fixed 2-D sin-cos, a buffer (not a parameter)
 *   c  = t_embedder(t) + y_embedder(label)      [B,D]; label K = null (classifier-free guidance)
 *   depth x DiTBlock(tokens, silu(c))           adaLN-Zero
 *   shift, scale = proj_out_1(silu(c));  tokens = LN(tokens) (1 + scale) + shift
 *   out = unpatchify(proj_out_2(tokens))        [B,C_out,H,W], C_out = 2C when learn_sigma
 *
 * Shared embedder. The paper has one timestep/label embedder; diffusers gives every block its
 * own copy (transformer_blocks.N.norm1.emb.*) and uses block 0's for the final layer. runexp keeps
 * one set of weights named after block 0 (transformer_blocks.0.norm1.emb.timestep_embedder.linear_1,
 * ....linear_2, ...class_embedder.embedding_table), so our state dict is diffusers' minus the copies
 * of blocks 1..depth-1. Export writes the copies (the diffusers_key hook below); import reads
 * block 0's and refuses a file whose copies differ.
 *
 * Timestep embedding: 256 sinusoidal channels, [cos, sin], downscale_freq_shift 1 — diffusers'
 * CombinedTimestepLabelEmbeddings (the paper's code uses shift 0; diffusers' DiT checkpoints
 * were converted to run with shift 1, and we follow diffusers so that they import).
 * The label table always has num_classes + 1 rows (the last = null label), as diffusers'
 * LabelEmbedding with class dropout; num_classes 0 leaves a single learned "null" row.
 *
 * Initialisation: the paper's initialize_weights — xavier-uniform linears and patch conv with
 * zero biases, N(0, 0.02) label table and timestep MLP weights, zero adaLN modulations and a
 * zero final layer (adaLN-Zero: every block starts as the identity and the output as 0). */
#include "dit.h"
#include "model.h"
#include "resnet.h"   /* rx_split_heads / rx_merge_heads */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define DIT_FREQ_DIM 256          /* sinusoidal timestep channels (diffusers and the paper) */
#define DIT_EPS_ADALN 1e-6f       /* LayerNorm before attention and in the final layer (hard-coded in diffusers) */
#define DIT_EMB "transformer_blocks.0.norm1.emb"

/* --- the block ---------------------------------------------------------------- */

static rx_status xavier_linear(rx_builder *b, const char *name, int in, int out, rx_linear_layer *l) {
    RX_TRY(rx_build_linear(b, name, in, out, 1, l));
    RX_TRY(rx_init_uniform(b, l->w, sqrtf(6.0f / (float)(in + out))));
    return rx_init_const(b, l->b, 0.0f);
}

static rx_status dit_block_build(rx_builder *b, int hidden, int heads, float eps_mlp, rx_dit_block *blk) {
    if (heads <= 0 || hidden % heads)
        return rx_fail(RX_ERR_CONFIG, "%s: hidden_size %d is not divisible by num_heads %d", b->prefix, hidden, heads);
    blk->hidden = hidden;
    blk->heads = heads;
    blk->eps_mlp = eps_mlp;
    /* creation order = diffusers' state-dict order (norm1, attn1, ff) */
    RX_TRY(rx_build_linear(b, "norm1.linear", hidden, 6 * hidden, 1, &blk->ada));
    RX_TRY(rx_init_const(b, blk->ada.w, 0.0f));     /* adaLN-Zero */
    RX_TRY(rx_init_const(b, blk->ada.b, 0.0f));
    RX_TRY(xavier_linear(b, "attn1.to_q", hidden, hidden, &blk->to_q));
    RX_TRY(xavier_linear(b, "attn1.to_k", hidden, hidden, &blk->to_k));
    RX_TRY(xavier_linear(b, "attn1.to_v", hidden, hidden, &blk->to_v));
    RX_TRY(xavier_linear(b, "attn1.to_out.0", hidden, hidden, &blk->to_out));
    RX_TRY(xavier_linear(b, "ff.net.0.proj", hidden, 4 * hidden, &blk->ff_in));
    return xavier_linear(b, "ff.net.2", 4 * hidden, hidden, &blk->ff_out);
}

/* mod [B,kD] -> chunk j [B,D] (torch.chunk along dim 1) */
static rx_tensor *chunk(rx_ctx *c, rx_tensor *mod, int j, int D) { return rx_slice(c, mod, 1, (int64_t)j * D, D); }

/* gate [B,D] -> [B,1,D], broadcast over the tokens */
static rx_tensor *per_token(rx_ctx *c, rx_tensor *g) {
    return g ? rx_reshape(c, g, RX_SHAPE(g->shape[0], 1, g->shape[1])) : NULL;
}

static rx_tensor *dit_block_forward(rx_ctx *c, const void *block, rx_tensor *h, rx_tensor *cond_act) {
    const rx_dit_block *blk = block;
    int D = blk->hidden;
    rx_tensor *mod = rx_linear_fwd(c, &blk->ada, cond_act);                                  /* [B,6D] */
    /* attention branch: h += gate_msa * attn(modulate(LN(h), shift_msa, scale_msa)) */
    rx_tensor *a = rx_modulate(c, rx_layer_norm(c, h, NULL, NULL, DIT_EPS_ADALN), chunk(c, mod, 0, D), chunk(c, mod, 1, D));
    rx_tensor *q = rx_split_heads(c, rx_linear_fwd(c, &blk->to_q, a), blk->heads);           /* [B,heads,N,dh] */
    rx_tensor *k = rx_split_heads(c, rx_linear_fwd(c, &blk->to_k, a), blk->heads);
    rx_tensor *v = rx_split_heads(c, rx_linear_fwd(c, &blk->to_v, a), blk->heads);
    a = rx_linear_fwd(c, &blk->to_out, rx_merge_heads(c, rx_attention(c, q, k, v, 0.0f)));  /* [B,N,D] */
    h = rx_add(c, h, rx_mul(c, a, per_token(c, chunk(c, mod, 2, D))));
    /* MLP branch: h += gate_mlp * ff(modulate(LN(h), shift_mlp, scale_mlp)) */
    rx_tensor *m = rx_modulate(c, rx_layer_norm(c, h, NULL, NULL, blk->eps_mlp), chunk(c, mod, 3, D), chunk(c, mod, 4, D));
    m = rx_linear_fwd(c, &blk->ff_out, rx_gelu(c, rx_linear_fwd(c, &blk->ff_in, m), 1));
    return rx_add(c, h, rx_mul(c, m, per_token(c, chunk(c, mod, 5, D))));
}

static const rx_dit_block_impl dit_block_impl = {dit_block_build, dit_block_forward};
static const rx_param_spec no_params[] = {{0}};
const rx_component rx_comp_block_DiTBlock = {
    RX_KIND_BLOCK, "DiTBlock", "DiT block: adaLN-Zero, multi-head self-attention, GELU-tanh MLP (Peebles & Xie 2023)",
    no_params, &dit_block_impl, NULL, "dit"};

/* --- position embedding --------------------------------------------------------- */

void rx_dit_pos_embed_2d(float *out, int dim, int gh, int gw) {
    int half = dim / 2, quarter = dim / 4;
    for (int i = 0; i < gh; i++)
        for (int j = 0; j < gw; j++) {
            float *e = out + ((int64_t)i * gw + j) * dim;
            for (int k = 0; k < quarter; k++) {
                double w = pow(10000.0, -(double)k / quarter);
                e[k] = (float)sin(j * w);                  /* first half: the column (x) coordinate */
                e[quarter + k] = (float)cos(j * w);
                e[half + k] = (float)sin(i * w);           /* second half: the row (y) coordinate   */
                e[half + quarter + k] = (float)cos(i * w);
            }
        }
}

/* --- the model -------------------------------------------------------------------- */

typedef struct dit_preset { const char *name; int depth, hidden, heads, patch; } dit_preset;

/* Peebles & Xie, table 1 */
static const dit_preset dit_presets[] = {
    {"DiT-S/2", 12, 384, 6, 2},   {"DiT-S/4", 12, 384, 6, 4},   {"DiT-S/8", 12, 384, 6, 8},
    {"DiT-B/2", 12, 768, 12, 2},  {"DiT-B/4", 12, 768, 12, 4},  {"DiT-B/8", 12, 768, 12, 8},
    {"DiT-L/2", 24, 1024, 16, 2}, {"DiT-L/4", 24, 1024, 16, 4}, {"DiT-L/8", 24, 1024, 16, 8},
    {"DiT-XL/2", 28, 1152, 16, 2}, {"DiT-XL/4", 28, 1152, 16, 4}, {"DiT-XL/8", 28, 1152, 16, 8},
};

#define DIT_MAX_DEPTH 64

typedef struct dit {
    int depth, hidden, heads, patch, grid;   /* grid = sample_size / patch tokens per side */
    float norm_eps;
    const rx_dit_block_impl *block;
    rx_conv_layer patch_embed;               /* pos_embed.proj */
    rx_tensor *pos;                          /* [N,D] buffer, not in the paramset */
    rx_linear_layer t_lin1, t_lin2;          /* shared timestep MLP */
    rx_embedding_layer label_table;          /* [K+1,D] */
    rx_dit_block blocks[DIT_MAX_DEPTH];
    rx_linear_layer final_ada, final_out;    /* proj_out_1: D -> 2D, proj_out_2: D -> p*p*C_out */
    int n_emb_params, first_emb_param;       /* the shared embedder's parameters in the paramset */
} dit;

const rx_param_spec rx_dit_params[] = {
    {"preset", RX_P_CHOICE, "null", RX_NO_RANGE,
     "DiT-S/2|DiT-S/4|DiT-S/8|DiT-B/2|DiT-B/4|DiT-B/8|DiT-L/2|DiT-L/4|DiT-L/8|DiT-XL/2|DiT-XL/4|DiT-XL/8",
     "a size of Peebles & Xie (sets depth, hidden_size, num_heads, patch_size); null = use those four"},
    {"depth", RX_P_INT, "12", 1, DIT_MAX_DEPTH, NULL,
     "number of DiT blocks (diffusers num_layers, default 28: our defaults are DiT-S/2, its DiT-XL/2)"},
    {"hidden_size", RX_P_INT, "384", 2, 65536, NULL,
     "token width D (diffusers num_attention_heads x attention_head_dim, default 16 x 72)"},
    {"num_heads", RX_P_INT, "6", 1, 1024, NULL,
     "attention heads; hidden_size must be divisible by it (diffusers num_attention_heads, default 16)"},
    {"patch_size", RX_P_INT, "2", 1, 64, NULL, "side of the square patches; sample_size must be divisible by it"},
    {"sample_size", RX_P_INT, "32", 1, 4096, NULL, "height = width of the inputs"},
    {"in_channels", RX_P_INT, "3", 1, 64, NULL, "input channels (diffusers' default 4: latents)"},
    {"learn_sigma", RX_P_BOOL, "false", RX_NO_RANGE, NULL,
     "also output a variance half (out_channels = 2 in_channels), as the paper and diffusers' DiT checkpoints"},
    {"num_classes", RX_P_INT, "0", 0, 1000000, NULL,
     "class labels K (0 = unconditional); the label table has K+1 rows, label K = no label (CFG) "
     "(diffusers num_embeds_ada_norm, default 1000)"},
    {"norm_eps", RX_P_FLOAT, "1e-06", 0, 1, NULL,
     "LayerNorm epsilon before the MLP (diffusers norm_eps). Deliberately the paper's 1e-6 (its code uses it "
     "everywhere), not diffusers' default 1e-5: for diffusers weights the config.json beside them sets it; without "
     "one, set 1e-5 for a DiT made with diffusers' default"},
    {"block_type", RX_P_CHOICE, "DiTBlock", RX_NO_RANGE, "@block/dit", "transformer block (a registered block of role dit)"},
    {"weights", RX_P_PATH, "null", RX_NO_RANGE, NULL,
     "start from these weights: diffusers DiTTransformer2DModel safetensors, or a runexp checkpoint. A diffusers "
     "config.json beside them (or beside init) sets every key above that the experiment leaves out; a key set to "
     "another value is an error"},
    {0}
};

static rx_status dit_create(rx_ctx *c, const rx_params *p, uint64_t seed, rx_model **out) {
    int depth = (int)rx_param_int(p, "depth"), hidden = (int)rx_param_int(p, "hidden_size");
    int heads = (int)rx_param_int(p, "num_heads"), patch = (int)rx_param_int(p, "patch_size");
    const char *preset = rx_param_str(p, "preset");
    if (preset) {
        const dit_preset *ps = NULL;
        for (size_t i = 0; i < sizeof dit_presets / sizeof dit_presets[0]; i++)
            if (!strcmp(dit_presets[i].name, preset)) ps = &dit_presets[i];
        if (!ps) return rx_fail(RX_ERR_CONFIG, "model/dit: unknown preset '%s'", preset);
        depth = ps->depth, hidden = ps->hidden, heads = ps->heads, patch = ps->patch;
    }
    int sample = (int)rx_param_int(p, "sample_size");
    if (sample % patch)
        return rx_fail(RX_ERR_CONFIG, "model/dit: sample_size %d is not divisible by patch_size %d", sample, patch);
    if (hidden % 4)   /* the 2-D sin-cos embedding gives D/4 frequencies to each of sin/cos of y/x */
        return rx_fail(RX_ERR_CONFIG, "model/dit: hidden_size %d is not divisible by 4", hidden);
    if (hidden % heads)
        return rx_fail(RX_ERR_CONFIG, "model/dit: hidden_size %d is not divisible by num_heads %d", hidden, heads);
    const char *block_type = rx_param_str(p, "block_type");
    const rx_component *block_comp = rx_registry_find(RX_KIND_BLOCK, block_type);
    const rx_dit_block_impl *block = block_comp && block_comp->role && !strcmp(block_comp->role, "dit") ? block_comp->impl : NULL;
    if (!block) return rx_fail(RX_ERR_CONFIG, "model/dit: '%s' is not a DiT block type", block_type);

    rx_model *m = calloc(1, sizeof *m);
    dit *d = calloc(1, sizeof *d);
    if (!m || !d) { free(m); free(d); return rx_fail(RX_ERR_OOM, "model/dit: out of memory"); }
    m->arch = "dit";
    m->priv = d;
    m->in_channels = (int)rx_param_int(p, "in_channels");
    m->learn_sigma = rx_param_bool(p, "learn_sigma");
    m->out_channels = m->learn_sigma ? 2 * m->in_channels : m->in_channels;
    m->sample_size = sample;
    m->num_classes = (int)rx_param_int(p, "num_classes");
    d->depth = depth, d->hidden = hidden, d->heads = heads, d->patch = patch;
    d->grid = sample / patch;
    d->norm_eps = (float)rx_param_float(p, "norm_eps");
    d->block = block;
    int D = hidden, N = d->grid * d->grid;

    rx_builder bld, *b = &bld;
    rx_builder_init(b, c, &m->params, seed);
    /* patch embedding: xavier-uniform on the flattened [D, C p p] weight, zero bias */
    rx_status s = rx_build_conv(b, "pos_embed.proj", m->in_channels, D, patch, patch, 0, &d->patch_embed);
    if (!s) s = rx_init_uniform(b, d->patch_embed.w, sqrtf(6.0f / (float)(m->in_channels * patch * patch + D)));
    if (!s) s = rx_init_const(b, d->patch_embed.b, 0.0f);
    /* the shared embedder, named after diffusers' block 0 */
    d->first_emb_param = m->params.n;
    if (!s) s = rx_build_linear(b, DIT_EMB ".timestep_embedder.linear_1", DIT_FREQ_DIM, D, 1, &d->t_lin1);
    if (!s) s = rx_build_linear(b, DIT_EMB ".timestep_embedder.linear_2", D, D, 1, &d->t_lin2);
    if (!s) s = rx_init_normal(b, d->t_lin1.w, 0.02f);
    if (!s) s = rx_init_const(b, d->t_lin1.b, 0.0f);
    if (!s) s = rx_init_normal(b, d->t_lin2.w, 0.02f);
    if (!s) s = rx_init_const(b, d->t_lin2.b, 0.0f);
    if (!s) s = rx_build_embedding(b, DIT_EMB ".class_embedder.embedding_table", m->num_classes + 1, D, &d->label_table);
    if (!s) s = rx_init_normal(b, d->label_table.w, 0.02f);
    d->n_emb_params = m->params.n - d->first_emb_param;
    for (int i = 0; i < depth && !s; i++) {
        rx_builder_push(b, "transformer_blocks.%d", i);
        s = block->build(b, D, heads, d->norm_eps, &d->blocks[i]);
        rx_builder_pop(b);
    }
    if (!s) s = rx_build_linear(b, "proj_out_1", D, 2 * D, 1, &d->final_ada);
    if (!s) s = rx_build_linear(b, "proj_out_2", D, patch * patch * m->out_channels, 1, &d->final_out);
    for (int i = 0; i < 2 && !s; i++) {   /* zero final layer */
        rx_linear_layer *l = i ? &d->final_out : &d->final_ada;
        s = rx_init_const(b, l->w, 0.0f);
        if (!s) s = rx_init_const(b, l->b, 0.0f);
    }
    if (!s) {   /* fixed position embedding: a buffer, recomputed at creation, never saved */
        d->pos = rx_param(c, "pos_embed.pos_embed", RX_SHAPE(N, D), 0);
        float *h = malloc((size_t)N * D * sizeof *h);
        if (!h) s = rx_fail(RX_ERR_OOM, "model/dit: out of memory");
        else {
            rx_dit_pos_embed_2d(h, D, d->grid, d->grid);
            s = d->pos ? rx_tensor_from_host(c, d->pos, h) : c->err;
            free(h);
        }
    }
    if (s) { rx_model_destroy(m); return s; }
    *out = m;
    return RX_OK;
}

static rx_tensor *dit_forward(rx_ctx *c, rx_model *m, rx_tensor *x, rx_tensor *t, rx_tensor *labels) {
    dit *d = m->priv;
    if (!x || !t) return rx_ctx_fail(c, RX_ERR_ARG, "dit: missing input or timesteps");
    if (x->ndim != 4 || x->shape[1] != m->in_channels || x->shape[2] != m->sample_size || x->shape[3] != m->sample_size)
        return rx_ctx_fail(c, RX_ERR_SHAPE, "dit: x %s, expected [B,%d,%d,%d] (the position embedding is fixed to sample_size)",
                           RX_SHAPE_STR(x), m->in_channels, m->sample_size, m->sample_size);
    int64_t B = x->shape[0], D = d->hidden, N = (int64_t)d->grid * d->grid;
    if (t->numel != B) return rx_ctx_fail(c, RX_ERR_SHAPE, "dit: t %s, expected [%lld]", RX_SHAPE_STR(t), (long long)B);
    if (labels && m->num_classes > 0 && labels->numel != B)
        return rx_ctx_fail(c, RX_ERR_SHAPE, "dit: labels %s, expected [%lld]", RX_SHAPE_STR(labels), (long long)B);

    /* tokens [B,N,D] = patchify(x) + pos */
    rx_tensor *h = rx_conv_fwd(c, &d->patch_embed, x);                                        /* [B,D,gh,gw] */
    h = rx_permute(c, rx_reshape(c, h, RX_SHAPE(B, D, N)), (const int[]){0, 2, 1});
    h = rx_add(c, h, d->pos);
    /* condition c = t_embedder(t) + y_embedder(y) [B,D]; no labels given = the null label */
    rx_tensor *temb = rx_timestep_embedding(c, t, DIT_FREQ_DIM, 1, 1.0f, 1.0f, 10000.0f);
    temb = rx_linear_fwd(c, &d->t_lin2, rx_silu(c, rx_linear_fwd(c, &d->t_lin1, temb)));
    /* no labels given, or an unconditional model (one row): the null label K */
    rx_tensor *lab = labels && m->num_classes > 0 ? labels : rx_full(c, RX_SHAPE(B), (float)m->num_classes);
    rx_tensor *cond_act = rx_silu(c, rx_add(c, temb, rx_embedding(c, d->label_table.w, lab)));
    for (int i = 0; i < d->depth; i++) h = rx_checkpoint(c, d->block->forward, &d->blocks[i], h, cond_act);
    /* final layer: adaLN (shift, scale), linear to patches, unpatchify */
    rx_tensor *mod = rx_linear_fwd(c, &d->final_ada, cond_act);                               /* [B,2D] */
    h = rx_modulate(c, rx_layer_norm(c, h, NULL, NULL, DIT_EPS_ADALN), chunk(c, mod, 0, D), chunk(c, mod, 1, D));
    h = rx_linear_fwd(c, &d->final_out, h);                                                   /* [B,N,p*p*C_out] */
    return rx_unpatchify(c, h, m->out_channels, d->grid, d->grid, d->patch);
}

/* DiTTransformer2DModel settings that the dit implements one way only, diffusers' default (JSON):
 * export writes them, import refuses a config.json that has anything else */
static const struct { const char *key, *value; } dit_fixed_keys[] = {
    {"attention_bias", "true"}, {"activation_fn", "\"gelu-approximate\""}, {"norm_type", "\"ada_norm_zero\""},
    {"norm_elementwise_affine", "false"},
};
#define DIT_N_FIXED (int)(sizeof dit_fixed_keys / sizeof dit_fixed_keys[0])

static json_t *dit_diffusers_config(const rx_model *m) {
    const dit *d = m->priv;
    json_t *j = json_object();
    json_object_set_new(j, "_class_name", json_string("DiTTransformer2DModel"));
    json_object_set_new(j, "num_attention_heads", json_integer(d->heads));
    json_object_set_new(j, "attention_head_dim", json_integer(d->hidden / d->heads));
    json_object_set_new(j, "in_channels", json_integer(m->in_channels));
    json_object_set_new(j, "out_channels", json_integer(m->out_channels));
    json_object_set_new(j, "num_layers", json_integer(d->depth));
    json_object_set_new(j, "dropout", json_real(0.0));
    json_object_set_new(j, "norm_num_groups", json_integer(32));   /* unused by the DiT; diffusers' default */
    json_object_set_new(j, "sample_size", json_integer(m->sample_size));
    json_object_set_new(j, "patch_size", json_integer(d->patch));
    /* diffusers' LabelEmbedding adds the null row itself: num_embeds_ada_norm = K */
    json_object_set_new(j, "num_embeds_ada_norm", json_integer(m->num_classes));
    json_object_set_new(j, "upcast_attention", json_false());
    for (int i = 0; i < DIT_N_FIXED; i++)
        json_object_set_new(j, dit_fixed_keys[i].key, json_loads(dit_fixed_keys[i].value, JSON_DECODE_ANY, NULL));
    json_object_set_new(j, "norm_eps", rx_json_float32(d->norm_eps));
    return j;
}

/* DiTTransformer2DModel config keys that are dit parameters, with diffusers' default (JSON) that a
 * config.json leaving the key out means: DiT-XL/2 on 32x32x4 latents, 1000 classes, norm_eps 1e-5 */
static const struct { const char *param, *key, *diffusers_default; } dit_same_keys[] = {
    {"depth", "num_layers", "28"}, {"num_heads", "num_attention_heads", "16"}, {"patch_size", "patch_size", "2"},
    {"sample_size", "sample_size", "32"}, {"in_channels", "in_channels", "4"},
    {"num_classes", "num_embeds_ada_norm", "1000"},   /* diffusers' LabelEmbedding adds the null row itself */
    {"norm_eps", "norm_eps", "1e-05"},
};

/* config[key] as an integer, diffusers_default when absent */
static rx_status config_int(const json_t *config, const char *path, const char *key, json_int_t diffusers_default,
                            json_int_t *out) {
    const json_t *v = json_object_get(config, key);
    if (v && !json_is_integer(v)) return rx_fail(RX_ERR_CONFIG, "%s: %s must be an integer", path, key);
    *out = v ? json_integer_value(v) : diffusers_default;
    return RX_OK;
}

/* the inverse of dit_diffusers_config. Not read: dropout (the dit has none; it acts only in training),
 * norm_num_groups (unused by the DiT), upcast_attention (a float16 setting). */
static rx_status dit_params_from_diffusers(const json_t *config, const char *path, rx_diffusers_param_fn put, void *ctx) {
    const char *cls = json_string_value(json_object_get(config, "_class_name"));
    const char *norm_type = json_string_value(json_object_get(config, "norm_type"));
    /* diffusers loads a Transformer2DModel config with norm_type ada_norm_zero as a DiTTransformer2DModel */
    int legacy_dit = !strcmp(cls, "Transformer2DModel") && norm_type && !strcmp(norm_type, "ada_norm_zero");
    if (strcmp(cls, "DiTTransformer2DModel") && !legacy_dit)
        return rx_fail(RX_ERR_CONFIG, "%s: a %s config; model 'dit' is diffusers' DiTTransformer2DModel", path, cls);
    for (int i = 0; i < DIT_N_FIXED; i++)
        RX_TRY(rx_diffusers_require(config, path, "dit", dit_fixed_keys[i].key, dit_fixed_keys[i].value));
    for (size_t i = 0; i < sizeof dit_same_keys / sizeof dit_same_keys[0]; i++) {
        json_t *v = rx_diffusers_value(config, dit_same_keys[i].key, dit_same_keys[i].diffusers_default);
        if (!v) return rx_fail(RX_ERR_OOM, "%s: out of memory", path);
        put(ctx, dit_same_keys[i].param, v, 0);
        json_decref(v);
    }
    /* hidden_size = num_attention_heads x attention_head_dim; learn_sigma: out_channels 2 x in_channels
     * (null = in_channels); preset: the paper's name for this size, if it has one */
    json_int_t depth = 0, heads = 0, head_dim = 0, patch = 0, in = 0, out = 0;
    RX_TRY(config_int(config, path, "num_layers", 28, &depth));
    RX_TRY(config_int(config, path, "num_attention_heads", 16, &heads));
    RX_TRY(config_int(config, path, "attention_head_dim", 72, &head_dim));
    RX_TRY(config_int(config, path, "patch_size", 2, &patch));
    RX_TRY(config_int(config, path, "in_channels", 4, &in));
    if (json_is_null(json_object_get(config, "out_channels"))) out = in;
    else RX_TRY(config_int(config, path, "out_channels", in, &out));
    if (out != in && out != 2 * in)
        return rx_fail(RX_ERR_CONFIG, "%s: out_channels %lld: model 'dit' outputs in_channels (%lld) or, with learn_sigma, "
                       "twice as many", path, (long long)out, (long long)in);
    const char *preset = NULL;
    for (size_t i = 0; i < sizeof dit_presets / sizeof dit_presets[0]; i++)
        if (dit_presets[i].depth == depth && dit_presets[i].hidden == heads * head_dim && dit_presets[i].heads == heads &&
            dit_presets[i].patch == patch)
            preset = dit_presets[i].name;
    json_t *derived[3] = {json_integer(heads * head_dim), json_boolean(out == 2 * in), preset ? json_string(preset) : json_null()};
    put(ctx, "hidden_size", derived[0], 0);
    put(ctx, "learn_sigma", derived[1], 0);
    put(ctx, "preset", derived[2], 0);
    for (int i = 0; i < 3; i++) json_decref(derived[i]);
    return RX_OK;
}

/* diffusers keeps a copy of the shared embedder in every block: parameter `param`'s key number
 * `copy` is transformer_blocks.<copy>.norm1.emb.… for the embedder, its own name (copy 0) otherwise */
static int dit_diffusers_key(const rx_model *m, int param, int copy, char *buf, size_t n) {
    const dit *d = m->priv;
    const char *name = m->params.t[param]->name;
    int shared = param >= d->first_emb_param && param < d->first_emb_param + d->n_emb_params;
    if (copy >= (shared ? d->depth : 1)) return 0;
    if (!shared) snprintf(buf, n, "%s", name);
    else snprintf(buf, n, "transformer_blocks.%d.%s", copy, name + strlen("transformer_blocks.0."));
    return 1;
}

static void dit_destroy(rx_model *m) { free(m->priv); }

static const rx_model_impl dit_impl = {dit_create, dit_forward, NULL, dit_diffusers_config, dit_destroy,
                                       dit_diffusers_key, dit_params_from_diffusers};
const rx_component rx_comp_model_dit = {
    RX_KIND_MODEL, "dit",
    "DiT (Peebles & Xie 2023): patchified transformer with adaLN-Zero; diffusers DiTTransformer2DModel names",
    rx_dit_params, &dit_impl, NULL};
