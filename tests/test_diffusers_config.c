/* test_diffusers_config.c — a model section completed from the diffusers config.json beside its
 * weights (registry/diffusers_config.c, the models' params_from_diffusers).
 *
 * References:
 *   - tests/fixtures/dit_diffusers_defaults/, unet_downsample_padding0/ (gen_diffusers_configs.py,
 *     diffusers 0.42.1): config.json as diffusers' save_config writes it, weights, and the model's
 *     output for io.safetensors' inputs. The DiT leaves norm_eps at diffusers' default 1e-5, where
 *     runexp's default is the paper's 1e-6.
 *   - UNet2DModel's and DiTTransformer2DModel's signatures (diffusers 0.42.1) for the defaults that a
 *     key left out of config.json means.
 *   - round trip: export's config.json read back gives the parameters exported (identity). */
#include "registry/components.h"
#include "test_models_fixture.h"
#include "registry/registry.h"

#define FIX "tests/fixtures/"
#define DIT_WEIGHTS FIX "dit_diffusers_defaults/diffusion_pytorch_model.safetensors"
#define PAD0_WEIGHTS FIX "unet_downsample_padding0/diffusion_pytorch_model.safetensors"
#define SCRATCH "build/tests/diffusers_config"

/* validate YAML text; the config, or NULL with the errors joined in msg */
static rx_config *validate(const char *yaml, char *msg, size_t n) {
    rx_config_errors errs = {0};
    rx_cfg_node *tree = NULL;
    cr_assert_eq(rx_yaml_parse_string(yaml, strlen(yaml), "x.yaml", &tree, &errs), RX_OK, "%s", yaml);
    rx_config *cfg = NULL;
    rx_config_validate(tree, "x", NULL, &cfg, &errs);
    msg[0] = 0;
    for (int i = 0; i < errs.n && i < errs.cap; i++)
        snprintf(msg + strlen(msg), n - strlen(msg), "%s\n", errs.items[i].message);
    rx_config_errors_clear(&errs);
    return cfg;
}

static const rx_params *model_params(const rx_config *cfg) {
    const rx_params *p = NULL;
    ASSERT_OK(rx_config_section_params(cfg, "model", NULL, &p));
    return p;
}

/* what the DiT's config.json gave; norm_eps is diffusers' default 1e-5 in both fixtures */
static void expect_dit(const rx_params *p, int64_t depth, int64_t hidden, int64_t heads, int64_t in_channels,
                       int learn_sigma, int64_t classes) {
    cr_expect_eq(rx_param_int(p, "depth"), depth);
    cr_expect_eq(rx_param_int(p, "hidden_size"), hidden, "num_attention_heads x attention_head_dim");
    cr_expect_eq(rx_param_int(p, "num_heads"), heads);
    cr_expect_eq(rx_param_int(p, "in_channels"), in_channels);
    cr_expect_eq(rx_param_bool(p, "learn_sigma"), learn_sigma, "out_channels 2 x in_channels, or null = in_channels");
    cr_expect_eq(rx_param_int(p, "num_classes"), classes);
    cr_expect_eq((float)rx_param_float(p, "norm_eps"), 1e-5f, "norm_eps %g", rx_param_float(p, "norm_eps"));
}

static void write_text(const char *path, const char *text) {
    ASSERT_OK(rx_fs_write_atomic(path, text, strlen(text)));
}

/* the DiT diffusers saved with its default norm_eps: imported without setting it, runexp builds that
 * DiT (norm_eps 1e-5, not its own default 1e-6) and the resolved config says so */
Test(diffusers_config, dit_takes_norm_eps_and_architecture_from_config_json) {
    char msg[2048];
    rx_config *cfg = validate("dataset: synthetic\nmodel: {name: dit, weights: " DIT_WEIGHTS "}\n", msg, sizeof msg);
    cr_assert(cfg, "%s", msg);
    const rx_params *p = model_params(cfg);
    expect_dit(p, 1, 16, 2, 4, 1, 3);
    cr_expect_eq(rx_param_int(p, "patch_size"), 2);
    cr_expect_eq(rx_param_int(p, "sample_size"), 8);
    cr_expect(rx_param_is_null(p, "preset"), "not one of the paper's sizes");
    char *text = rx_config_emit_string(cfg->root);
    cr_expect(strstr(text, "norm_eps: 1.0e-5"), "the resolved config names the value used:\n%s", text);
    free(text);

    /* and that model reproduces diffusers' output */
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = NULL;
    ASSERT_OK(rx_model_create(c, &rx_comp_model_dit, p, 1, &m));
    ASSERT_OK(rx_model_import_diffusers(c, m, DIT_WEIGHTS));
    rx_st_file *f = NULL;
    ASSERT_OK(rx_st_open(FIX "dit_diffusers_defaults/io.safetensors", &f));
    double err;
    fx_forward(c, m, f, 1e-5, NULL, &err);
    cr_log_info("dit from config.json vs diffusers: forward %.2e", err);
    rx_st_close(f);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
    rx_config_free(cfg);
}

/* a key set to the file's value is fine; to another value, an error at the key naming both */
Test(diffusers_config, a_key_set_to_another_value_is_an_error_at_that_key) {
    char msg[2048];
    rx_config *cfg = validate("dataset: synthetic\nmodel: {name: dit, weights: " DIT_WEIGHTS ", depth: 1, "
                              "norm_eps: 0.00001}\n", msg, sizeof msg);
    cr_expect(cfg, "the file's values, written out: %s", msg);
    rx_config_free(cfg);
    cfg = validate("dataset: synthetic\nmodel:\n  name: dit\n  weights: " DIT_WEIGHTS "\n  norm_eps: 1e-6\n", msg, sizeof msg);
    cr_expect_null(cfg);
    cr_expect(strstr(msg, "x.yaml:5:13: model: norm_eps is 1e-6 here, but the weights' "
                          "tests/fixtures/dit_diffusers_defaults/config.json says 1.0e-5"), "got: %s", msg);
    rx_config_free(cfg);
}

/* `init:` works as model.weights does; `model: unet` becomes a mapping; dropout is a training choice */
Test(diffusers_config, unet_from_init_and_the_experiments_dropout) {
    char msg[2048];
    rx_config *cfg = validate("dataset: synthetic\ninit: " PAD0_WEIGHTS "\nmodel: unet\n", msg, sizeof msg);
    cr_assert(cfg, "%s", msg);
    const rx_params *p = model_params(cfg);
    cr_expect_eq(rx_param_int(p, "downsample_padding"), 0);
    cr_expect_eq(rx_param_float(p, "freq_shift"), 0.5);
    cr_expect_eq(rx_param_int(p, "num_classes"), 2, "num_class_embeds 3 = 2 classes + the null label");
    cr_expect_not(rx_param_bool(p, "add_attention"));
    int n;
    const int64_t *boc = rx_param_int_list(p, "block_out_channels", &n);
    cr_expect(n == 2 && boc[0] == 4 && boc[1] == 8);
    cr_expect_eq(rx_param_float(p, "dropout"), 0.0);
    rx_config_free(cfg);
    cfg = validate("dataset: synthetic\ninit: " PAD0_WEIGHTS "\nmodel: {name: unet, dropout: 0.1}\n", msg, sizeof msg);
    cr_assert(cfg, "%s", msg);
    cr_expect_eq(rx_param_float(model_params(cfg), "dropout"), 0.1, "the experiment's dropout wins");
    rx_config_free(cfg);
}

/* a key the file leaves out means diffusers' default (DiTTransformer2DModel: DiT-XL/2's 16 x 72,
 * 4 channels, 1000 classes, norm_eps 1e-5); settings runexp does not implement are refused */
Test(diffusers_config, absent_keys_mean_diffusers_defaults_and_unknown_settings_are_refused) {
    ASSERT_OK(rx_fs_mkdir_p(SCRATCH "/dit"));
    write_text(SCRATCH "/dit/config.json", "{\"_class_name\": \"DiTTransformer2DModel\", \"num_layers\": 2}");
    char msg[2048];
    rx_config *cfg = validate("dataset: synthetic\nmodel: {name: dit, weights: " SCRATCH "/dit/w.safetensors}\n", msg, sizeof msg);
    cr_assert(cfg, "%s", msg);
    const rx_params *p = model_params(cfg);
    expect_dit(p, 2, 1152, 16, 4, 0, 1000);
    rx_config_free(cfg);
    /* the paper's size gets its name */
    write_text(SCRATCH "/dit/config.json", "{\"_class_name\": \"Transformer2DModel\", \"norm_type\": \"ada_norm_zero\"}");
    cfg = validate("dataset: synthetic\nmodel: {name: dit, weights: " SCRATCH "/dit/w.safetensors}\n", msg, sizeof msg);
    cr_assert(cfg, "diffusers loads Transformer2DModel with ada_norm_zero as a DiT: %s", msg);
    cr_expect_str_eq(rx_param_str(model_params(cfg), "preset"), "DiT-XL/2");
    rx_config_free(cfg);

    ASSERT_OK(rx_fs_mkdir_p(SCRATCH "/unet"));
    write_text(SCRATCH "/unet/config.json", "{\"_class_name\": \"UNet2DModel\", \"act_fn\": \"gelu\"}");
    cfg = validate("dataset: synthetic\nmodel: {name: unet, weights: " SCRATCH "/unet/w.safetensors}\n", msg, sizeof msg);
    cr_expect_null(cfg);
    cr_expect(strstr(msg, "x.yaml:2:30: model.weights: " SCRATCH "/unet/config.json: act_fn is \"gelu\"; "
                          "model 'unet' implements only \"silu\""), "got: %s", msg);
    cfg = validate("dataset: synthetic\nmodel: {name: dit, weights: " SCRATCH "/unet/w.safetensors}\n", msg, sizeof msg);
    cr_expect_null(cfg);
    cr_expect(strstr(msg, "a UNet2DModel config; model 'dit' is diffusers' DiTTransformer2DModel"), "got: %s", msg);
    /* not a diffusers model config (no _class_name): not read */
    write_text(SCRATCH "/unet/config.json", "{\"architectures\": [\"Something\"], \"norm_eps\": 0.5}");
    cfg = validate("dataset: synthetic\nmodel: {name: unet, weights: " SCRATCH "/unet/w.safetensors}\n", msg, sizeof msg);
    cr_assert(cfg, "%s", msg);
    cr_expect_eq((float)rx_param_float(model_params(cfg), "norm_eps"), 1e-5f);
    rx_config_free(cfg);
}

/* export, then read its config.json back: every parameter as exported (weights aside) */
static void round_trip(const rx_component *comp, const char *const *kv, const char *dir) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_params *p = fx_params(comp, kv);
    rx_model *m = NULL;
    ASSERT_OK(rx_model_create(c, comp, p, 3, &m));
    ASSERT_OK(rx_model_export_diffusers(c, m, dir));
    char yaml[512], msg[2048];
    snprintf(yaml, sizeof yaml, "dataset: synthetic\nmodel: {name: %s, weights: %s/diffusion_pytorch_model.safetensors}\n",
             comp->name, dir);
    rx_config *cfg = validate(yaml, msg, sizeof msg);
    cr_assert(cfg, "%s", msg);
    const rx_params *back = model_params(cfg);
    for (int i = 0; i < p->n; i++) {
        const char *name = p->spec[i].name;
        if (!strcmp(name, "weights")) continue;
        char *b = rx_config_emit_flow(rx_cfg_map_get(rx_cfg_path(cfg->root, "model"), name));
        const rx_value *va = rx_param_get(p, name), *vb = rx_param_get(back, name);
        int same = va->is_null == vb->is_null && va->n == vb->n;
        switch (p->spec[i].type) {
        case RX_P_FLOAT: same = same && (float)va->f == (float)vb->f; break;
        case RX_P_INT: case RX_P_BOOL: same = same && va->i == vb->i; break;
        case RX_P_INT_LIST: for (int k = 0; same && k < va->n; k++) same = va->ints[k] == vb->ints[k]; break;
        case RX_P_STRING_LIST: for (int k = 0; same && k < va->n; k++) same = !strcmp(va->strs[k], vb->strs[k]); break;
        default: same = same && (va->is_null || !strcmp(va->s, vb->s)); break;
        }
        cr_expect(same, "%s: %s back from %s/config.json", name, b, dir);
        free(b);
    }
    rx_config_free(cfg);
    rx_model_destroy(m);
    rx_params_free(p);
    rx_ctx_destroy(c);
}

Test(diffusers_config, export_reads_back_as_exported) {
    static const char *const unet_kv[] = {
        "sample_size", "8", "block_out_channels", "[4, 12]", "layers_per_block", "1", "norm_num_groups", "2",
        "attention_head_dim", "5", "down_block_types", "[DownBlock2D, AttnDownBlock2D]",
        "up_block_types", "[AttnUpBlock2D, UpBlock2D]", "num_classes", "2", "downsample_padding", "0",
        "freq_shift", "0.5", "norm_eps", "1e-6", "dropout", "0.1", "flip_sin_to_cos", "false", NULL};
    round_trip(&rx_comp_model_unet, unet_kv, SCRATCH "/export_unet");
    static const char *const dit_kv[] = {"depth", "2", "hidden_size", "32", "num_heads", "4", "sample_size", "8",
                                         "in_channels", "3", "learn_sigma", "true", "num_classes", "5", NULL};
    round_trip(&rx_comp_model_dit, dit_kv, SCRATCH "/export_dit");   /* norm_eps: runexp's default 1e-6 */
}
