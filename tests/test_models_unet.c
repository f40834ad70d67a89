/* test_models_unet.c — model `unet` against diffusers' UNet2DModel.
 *
 * References (tests/fixtures/gen_models.py, diffusers 0.42 + torch, float32 CPU):
 *   - models_unet.safetensors / models_unet_io.safetensors: a small UNet2DModel (sample_size 16,
 *     block_out_channels [32, 64], layers_per_block 1, norm_num_groups 8, attention_head_dim 8,
 *     DownBlock2D + AttnDownBlock2D, AttnUpBlock2D + UpBlock2D, num_class_embeds 4) with random
 *     weights and perturbed norm affines; its output for batch 3 and the parameter gradients of
 *     mean((out - target)^2) from torch autograd.
 *   - models_params.json: diffusers' parameter count of the seed configuration.
 *   - tests/fixtures/unet_downsample_padding0/, unet_head_remainder/ (gen_diffusers_configs.py,
 *     diffusers 0.42.1): tiny UNet2DModels with downsample_padding 0 and freq_shift 0.5, and with
 *     12 attention channels for attention_head_dim 5; weights, config.json and io.safetensors.
 * The export tests write build/tests/export_unet and export_unet_pad0, which `gen_models.py --check`
 * loads with UNet2DModel.from_pretrained and compares with the C output saved next to it. */
#include "registry/components.h"
#include "test_models_fixture.h"
#include "runner/checkpoint.h"

#define FIX "tests/fixtures/"

static const char *const small_unet[] = {
    "sample_size", "16", "in_channels", "3", "out_channels", "3",
    "block_out_channels", "[32, 64]", "layers_per_block", "1", "norm_num_groups", "8",
    "attention_head_dim", "8", "down_block_types", "[DownBlock2D, AttnDownBlock2D]",
    "up_block_types", "[AttnUpBlock2D, UpBlock2D]", "num_classes", "3", NULL};

static rx_model *small_model(rx_ctx *c) {
    rx_params *p = fx_params(&rx_comp_model_unet, small_unet);
    rx_model *m = NULL;
    ASSERT_OK(rx_model_create(c, &rx_comp_model_unet, p, 7, &m));
    rx_params_free(p);
    ASSERT_OK(rx_ckpt_load_weights(c, FIX "models_unet.safetensors", &m->params, 0));
    return m;
}

Test(unet, forward_and_gradients_match_diffusers) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = small_model(c);
    cr_expect_eq(m->params.n, 145, "diffusers' state dict has 145 tensors");
    cr_expect_eq(rx_model_param_count(m), 703011, "diffusers counts 703011 parameters");
    fx_result r = fx_check(c, m, FIX "models_unet_io.safetensors", 1e-4, 1e-3, NULL);
    cr_log_info("unet vs diffusers: forward %.2e, loss %.2e, %d gradients: worst %.2e (%s), worst of the F32-stored %.2e",
                r.out_err, r.loss_err, r.n_grads, r.grad_err_max, r.worst, r.grad_err_f32);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}

/* labels NULL means "no label" = the null row num_classes (the CFG unconditional branch) */
Test(unet, missing_labels_use_the_null_label) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = small_model(c);
    rx_set_grad_enabled(c, 0);
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(2, 3, 16, 16), 0);
    rx_test_randn(c, x, 3, 1.0f);
    rx_tensor *t = rx_from_host(c, RX_SHAPE(2), (const float[]){5, 700});
    rx_tensor *null_labels = rx_from_host(c, RX_SHAPE(2), (const float[]){3, 3});
    rx_tensor *some_labels = rx_from_host(c, RX_SHAPE(2), (const float[]){0, 3});
    rx_tensor *a = m->impl->forward(c, m, x, t, NULL), *b = m->impl->forward(c, m, x, t, null_labels);
    rx_tensor *d = m->impl->forward(c, m, x, t, some_labels);
    cr_assert(a && b && d, "%s", rx_last_error());
    float ha[1536], hb[1536], hd[1536];
    ASSERT_OK(rx_tensor_to_host(c, a, ha));
    ASSERT_OK(rx_tensor_to_host(c, b, hb));
    ASSERT_OK(rx_tensor_to_host(c, d, hd));
    cr_expect_eq(memcmp(ha, hb, sizeof ha), 0, "NULL labels = label 3 (null)");
    cr_expect_eq(memcmp(ha + 768, hd + 768, 768 * sizeof(float)), 0, "sample 1 has the null label in both");
    cr_expect_neq(memcmp(ha, hd, 768 * sizeof(float)), 0, "label 0 changes sample 0");
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}

Test(unet, shape_errors_name_the_model_and_shapes) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_params *p = fx_params(&rx_comp_model_unet, small_unet);
    rx_model *m = NULL;
    ASSERT_OK(rx_model_create(c, &rx_comp_model_unet, p, 7, &m));
    rx_tensor *x = rx_zeros(c, RX_SHAPE(2, 4, 16, 16)), *t = rx_zeros(c, RX_SHAPE(2));
    cr_expect_null(m->impl->forward(c, m, x, t, NULL));
    cr_expect(strstr(rx_last_error(), "unet: x [2,4,16,16], expected [B,3,H,W]"), "got: %s", rx_last_error());
    rx_model_destroy(m);
    /* configuration errors */
    rx_ctx_clear_error(c);
    ASSERT_OK(rx_params_set(p, "norm_num_groups", "12"));
    cr_expect_neq(rx_model_create(c, &rx_comp_model_unet, p, 7, &m), RX_OK);
    cr_expect(strstr(rx_last_error(), "not divisible into 12 groups"), "got: %s", rx_last_error());
    ASSERT_OK(rx_params_set(p, "norm_num_groups", "8"));
    ASSERT_OK(rx_params_set(p, "sample_size", "18"));
    ASSERT_OK(rx_params_set(p, "block_out_channels", "[32, 64, 64]"));
    ASSERT_OK(rx_params_set(p, "down_block_types", "[DownBlock2D, DownBlock2D, AttnDownBlock2D]"));
    ASSERT_OK(rx_params_set(p, "up_block_types", "[AttnUpBlock2D, UpBlock2D, UpBlock2D]"));
    cr_expect_neq(rx_model_create(c, &rx_comp_model_unet, p, 7, &m), RX_OK);
    cr_expect(strstr(rx_last_error(), "sample_size 18 is not divisible by 2^2"), "got: %s", rx_last_error());
    rx_params_free(p);
    rx_ctx_destroy(c);
}

/* The seed article's configuration: same parameter count and tensor count as diffusers
 * (UNet2DModel(sample_size=64, block_out_channels=(128, 256, 512, 1024), layers_per_block=2,
 * attention_head_dim=8, norm_num_groups=32, num_class_embeds=11), counted by gen_models.py). */
Test(unet, seed_configuration_parameter_count_equals_diffusers, .timeout = 120) {
    long len;
    char *text = rx_test_read_file(FIX "models_params.json", &len);
    cr_assert(text, FIX "models_params.json missing (run tests/fixtures/gen_models.py)");
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    cr_assert(j, "%s", jerr.text);
    json_t *seed = json_object_get(j, "unet_seed");
    int64_t expect = json_integer_value(json_object_get(seed, "num_params"));
    int64_t expect_tensors = json_integer_value(json_object_get(seed, "num_tensors"));
    cr_assert_gt(expect, 0);

    rx_ctx *c = rx_test_cpu_ctx();
    static const char *const seed_cfg[] = {"sample_size", "64", "block_out_channels", "[128, 256, 512, 1024]",
                                           "layers_per_block", "2", "attention_head_dim", "8", "norm_num_groups", "32",
                                           "num_classes", "10", NULL};
    rx_params *p = fx_params(&rx_comp_model_unet, seed_cfg);
    rx_model *m = NULL;
    ASSERT_OK(rx_model_create(c, &rx_comp_model_unet, p, 1, &m));
    cr_expect_eq(rx_model_param_count(m), expect, "runexp %lld parameters, diffusers %lld",
                 (long long)rx_model_param_count(m), (long long)expect);
    cr_expect_eq(m->params.n, expect_tensors, "runexp %d tensors, diffusers %lld", m->params.n, (long long)expect_tensors);
    rx_tensor *emb = rx_paramset_find(&m->params, "class_embedding.weight");
    cr_assert(emb);
    cr_expect_eq(emb->shape[0], 11, "num_classes 10 -> 11 rows (10 = null label), diffusers num_class_embeds 11");
    rx_model_destroy(m);
    rx_params_free(p);
    rx_ctx_destroy(c);
    json_decref(j);
    free(text);
}

/* Export: config.json with UNet2DModel's keys and our values, and a safetensors file whose tensor
 * names and shapes are exactly the parameters. Leaves build/tests/export_unet for the Python check. */
Test(unet, export_diffusers_writes_config_and_state_dict) {
    const char *dir = "build/tests/export_unet";
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = small_model(c);
    ASSERT_OK(rx_fs_mkdir_p(dir));
    ASSERT_OK(rx_model_export_diffusers(c, m, dir));
    fx_check(c, m, FIX "models_unet_io.safetensors", 1e-4, 1e-3, dir);

    json_t *j = fx_read_config(dir);
    cr_expect_str_eq(json_string_value(json_object_get(j, "_class_name")), "UNet2DModel");
    cr_expect_eq(json_integer_value(json_object_get(j, "sample_size")), 16);
    cr_expect_eq(json_integer_value(json_object_get(j, "layers_per_block")), 1);
    cr_expect_eq(json_integer_value(json_object_get(j, "norm_num_groups")), 8);
    cr_expect_eq(json_integer_value(json_object_get(j, "attention_head_dim")), 8);
    cr_expect_eq(json_integer_value(json_object_get(j, "num_class_embeds")), 4, "num_classes 3 + null");
    json_t *boc = json_object_get(j, "block_out_channels");
    cr_expect_eq(json_array_size(boc), 2);
    cr_expect_eq(json_integer_value(json_array_get(boc, 1)), 64);
    cr_expect_str_eq(json_string_value(json_array_get(json_object_get(j, "down_block_types"), 1)), "AttnDownBlock2D");
    cr_expect_str_eq(json_string_value(json_array_get(json_object_get(j, "up_block_types"), 0)), "AttnUpBlock2D");
    static const char *const keys[] = {"in_channels", "out_channels", "down_block_types", "up_block_types",
                                       "mid_block_type", "norm_eps", "flip_sin_to_cos", "freq_shift", "act_fn",
                                       "downsample_padding", "dropout", "add_attention", "time_embedding_type"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        cr_expect(json_object_get(j, keys[i]), "config.json lacks %s", keys[i]);
    json_decref(j);

    rx_st_file *f = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    ASSERT_OK(rx_st_open(path, &f));
    cr_expect_eq(rx_st_count(f), m->params.n);
    cr_expect_str_eq(rx_st_metadata(f, "format"), "pt");
    for (int i = 0; i < m->params.n; i++) {
        const rx_tensor *p = m->params.t[i];
        cr_expect_eq(rx_st_check_shape(f, p->name, p->ndim, p->shape), RX_OK, "%s", rx_last_error());
    }
    cr_expect(rx_st_find(f, "mid_block.attentions.0.to_q.weight"));
    cr_expect(rx_st_find(f, "down_blocks.1.resnets.0.time_emb_proj.weight"));
    cr_expect(rx_st_find(f, "up_blocks.0.upsamplers.0.conv.weight"));
    rx_st_close(f);
    /* and it loads back as bare diffusers weights */
    ASSERT_OK(rx_ckpt_load_weights(c, path, &m->params, 0));
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}

/* --- configurations the first fixture does not use (gen_diffusers_configs.py) ---------------------- */

#define PAD0 FIX "unet_downsample_padding0/"
#define HEADS FIX "unet_head_remainder/"

/* the fixtures' config.json, written out as parameters */
static const char *const pad0_unet[] = {
    "sample_size", "8", "block_out_channels", "[4, 8]", "layers_per_block", "1", "norm_num_groups", "2",
    "down_block_types", "[DownBlock2D, DownBlock2D]", "up_block_types", "[UpBlock2D, UpBlock2D]",
    "add_attention", "false", "num_classes", "2", "downsample_padding", "0", "freq_shift", "0.5", NULL};
static const char *const heads_unet[] = {
    "sample_size", "8", "block_out_channels", "[4, 12]", "layers_per_block", "1", "norm_num_groups", "2",
    "attention_head_dim", "5", "down_block_types", "[DownBlock2D, AttnDownBlock2D]",
    "up_block_types", "[AttnUpBlock2D, UpBlock2D]", "num_classes", "2", NULL};

static rx_model *fixture_model(rx_ctx *c, const char *const *kv, const char *dir) {
    rx_params *p = fx_params(&rx_comp_model_unet, kv);
    rx_model *m = NULL;
    ASSERT_OK(rx_model_create(c, &rx_comp_model_unet, p, 7, &m));
    rx_params_free(p);
    char path[512];
    snprintf(path, sizeof path, "%sdiffusion_pytorch_model.safetensors", dir);
    ASSERT_OK(rx_model_import_diffusers(c, m, path));
    return m;
}

static double forward_error(rx_ctx *c, rx_model *m, const char *dir, const char *save_dir) {
    char path[512];
    snprintf(path, sizeof path, "%sio.safetensors", dir);
    rx_st_file *f = NULL;
    ASSERT_OK(rx_st_open(path, &f));
    double err;
    fx_forward(c, m, f, 1e-5, save_dir, &err);
    rx_st_close(f);
    rx_step_end(c);
    return err;
}

/* diffusers' Downsample2D with padding 0 pads (0, 1, 0, 1) before the stride-2 conv, so 8x8 still
 * becomes 4x4; unpadded, the conv gives 3x3 and the up path's concat fails */
Test(unet, downsample_padding_0_pads_bottom_and_right_like_diffusers) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = fixture_model(c, pad0_unet, PAD0);
    double err = forward_error(c, m, PAD0, NULL);
    cr_log_info("downsample_padding 0, freq_shift 0.5 vs diffusers: forward %.2e", err);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}

/* Attention(12 channels, heads = 12 // 5 = 2, dim_head 5): q, k, v are 10 wide, to_out maps 10 -> 12 */
Test(unet, attention_channels_not_a_multiple_of_head_dim_match_diffusers) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = fixture_model(c, heads_unet, HEADS);
    rx_tensor *q = rx_paramset_find(&m->params, "mid_block.attentions.0.to_q.weight");
    rx_tensor *o = rx_paramset_find(&m->params, "mid_block.attentions.0.to_out.0.weight");
    cr_assert(q && o);
    cr_expect(q->shape[0] == 10 && q->shape[1] == 12, "to_q %s, diffusers [10,12]", RX_SHAPE_STR(q));
    cr_expect(o->shape[0] == 12 && o->shape[1] == 10, "to_out %s, diffusers [12,10]", RX_SHAPE_STR(o));
    double err = forward_error(c, m, HEADS, NULL);
    cr_log_info("12 channels in heads of 5 vs diffusers: forward %.2e", err);
    rx_model_destroy(m);

    /* fewer channels than one head: diffusers builds 0 heads and divides by zero in its forward */
    rx_params *p = fx_params(&rx_comp_model_unet, heads_unet);
    ASSERT_OK(rx_params_set(p, "attention_head_dim", "16"));
    m = NULL;
    cr_expect_neq(rx_model_create(c, &rx_comp_model_unet, p, 7, &m), RX_OK);
    cr_expect(strstr(rx_last_error(), "12 channels are fewer than attention_head_dim 16") &&
              strstr(rx_last_error(), "diffusers makes channels // attention_head_dim = 0 heads"), "got: %s", rx_last_error());
    rx_params_free(p);
    rx_ctx_destroy(c);
}

/* config.json carries freq_shift 0.5 as a real (diffusers computes with it as a float; as an integer
 * it was 0, a 3e-2 relative difference), and reals at their shortest decimal. Leaves
 * build/tests/export_unet_pad0 with the C forward for `gen_models.py --check`. */
Test(unet, export_writes_a_fractional_freq_shift) {
    const char *dir = "build/tests/export_unet_pad0";
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = fixture_model(c, pad0_unet, PAD0);
    ASSERT_OK(rx_fs_mkdir_p(dir));
    ASSERT_OK(rx_model_export_diffusers(c, m, dir));
    forward_error(c, m, PAD0, dir);
    json_t *j = fx_read_config(dir);
    json_t *shift = json_object_get(j, "freq_shift");
    cr_expect(json_is_real(shift) && json_real_value(shift) == 0.5, "freq_shift %s %g", json_is_real(shift) ? "real" : "not real",
              json_number_value(shift));
    cr_expect_eq(json_integer_value(json_object_get(j, "downsample_padding")), 0);
    cr_expect_eq(json_real_value(json_object_get(j, "norm_eps")), 1e-5, "norm_eps written as 1e-05, not float32's 9.99999975e-06");
    json_decref(j);
    rx_model_destroy(m);

    /* a whole freq_shift stays an integer, as diffusers writes it */
    m = small_model(c);
    ASSERT_OK(rx_model_export_diffusers(c, m, "build/tests/export_unet_shift1"));
    j = fx_read_config("build/tests/export_unet_shift1");
    cr_expect(json_is_integer(json_object_get(j, "freq_shift")));
    json_decref(j);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}
