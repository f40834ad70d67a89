/* test_models_dit.c — model `dit` against diffusers' DiTTransformer2DModel.
 *
 * References (tests/fixtures/gen_models.py, diffusers 0.42 + torch, float32 CPU):
 *   - models_dit.safetensors / models_dit_io.safetensors: DiTTransformer2DModel(num_layers 2,
 *     num_attention_heads 4, attention_head_dim 16, patch_size 2, sample_size 16, in_channels 4,
 *     out_channels 8 = learn_sigma, num_embeds_ada_norm 3 -> a 4-row label table, label 3 = null),
 *     random weights, block 0's embedder copied into block 1; output for batch 3 and the gradients
 *     of mean((out - target)^2) (the shared embedder's = the sum over diffusers' copies).
 *   - models_params.json: diffusers' parameter counts of the paper's presets (ImageNet-256 latents),
 *     minus the per-block embedder copies that runexp shares.
 *   - adaLN-Zero at initialisation (Peebles & Xie sec. 3.2): the network's output is exactly 0.
 * The export test writes build/tests/export_dit for `gen_models.py --check`. */
#include "registry/components.h"
#include "test_models_fixture.h"

#define FIX "tests/fixtures/"

static const char *const small_dit[] = {
    "depth", "2", "hidden_size", "64", "num_heads", "4", "patch_size", "2", "sample_size", "16",
    "in_channels", "4", "learn_sigma", "true", "num_classes", "3",
    "norm_eps", "1e-5",   /* diffusers' default norm_eps (norm3); the paper's 1e-6 is ours */
    NULL};

static rx_model *dit_model(rx_ctx *c, const char *const *kv) {
    rx_params *p = fx_params(&rx_comp_model_dit, kv);
    rx_model *m = NULL;
    ASSERT_OK(rx_model_create(c, &rx_comp_model_dit, p, 5, &m));
    rx_params_free(p);
    return m;
}

Test(dit, forward_and_gradients_match_diffusers) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = dit_model(c, small_dit);
    cr_expect_eq(m->out_channels, 8, "learn_sigma doubles the output channels");
    /* diffusers' 44 tensors minus block 1's 5-tensor embedder copy */
    cr_expect_eq(m->params.n, 39);
    cr_expect_eq(rx_model_param_count(m), 202592 - (256 * 64 + 64 + 64 * 64 + 64 + 4 * 64));
    ASSERT_OK(rx_model_import_diffusers(c, m, FIX "models_dit.safetensors"));
    fx_result r = fx_check(c, m, FIX "models_dit_io.safetensors", 1e-4, 1e-3, NULL);
    cr_log_info("dit vs diffusers: forward %.2e, loss %.2e, %d gradients: worst %.2e (%s), worst of the F32-stored %.2e",
                r.out_err, r.loss_err, r.n_grads, r.grad_err_max, r.worst, r.grad_err_f32);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}

/* labels NULL = the null label num_classes; an unconditional model (num_classes 0) ignores labels */
Test(dit, missing_labels_use_the_null_label) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = dit_model(c, small_dit);
    ASSERT_OK(rx_model_import_diffusers(c, m, FIX "models_dit.safetensors"));
    rx_set_grad_enabled(c, 0);
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(2, 4, 16, 16), 0);
    rx_test_randn(c, x, 4, 1.0f);
    rx_tensor *t = rx_from_host(c, RX_SHAPE(2), (const float[]){5, 700});
    rx_tensor *a = m->impl->forward(c, m, x, t, NULL);
    rx_tensor *b = m->impl->forward(c, m, x, t, rx_from_host(c, RX_SHAPE(2), (const float[]){3, 3}));
    rx_tensor *d = m->impl->forward(c, m, x, t, rx_from_host(c, RX_SHAPE(2), (const float[]){0, 3}));
    cr_assert(a && b && d, "%s", rx_last_error());
    enum { N = 2 * 8 * 256, HALF = N / 2 };
    float ha[N], hb[N], hd[N];
    ASSERT_OK(rx_tensor_to_host(c, a, ha));
    ASSERT_OK(rx_tensor_to_host(c, b, hb));
    ASSERT_OK(rx_tensor_to_host(c, d, hd));
    cr_expect_eq(memcmp(ha, hb, sizeof ha), 0, "NULL labels = label 3 (null)");
    cr_expect_eq(memcmp(ha + HALF, hd + HALF, HALF * sizeof(float)), 0, "sample 1 has the null label in both");
    cr_expect_neq(memcmp(ha, hd, HALF * sizeof(float)), 0, "label 0 changes sample 0");
    rx_model_destroy(m);

    static const char *const uncond[] = {"depth", "1", "hidden_size", "16", "num_heads", "2", "sample_size", "8",
                                         "in_channels", "3", NULL};
    m = dit_model(c, uncond);
    rx_tensor *table = rx_paramset_find(&m->params, "transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight");
    cr_assert(table);
    cr_expect_eq(table->shape[0], 1, "num_classes 0: one (null) row, as diffusers' num_embeds_ada_norm 0");
    x = rx_zeros(c, RX_SHAPE(2, 3, 8, 8));
    cr_expect(m->impl->forward(c, m, x, t, rx_from_host(c, RX_SHAPE(2), (const float[]){7, 9})), "labels ignored: %s",
              rx_last_error());
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}

/* adaLN-Zero: gates and the final layer start at zero, so a fresh DiT outputs exactly 0 for any
 * input, and the only nonzero gradient of the first step is that of the final projection
 * (proj_out_2 sees LN(h) != 0; everything upstream is multiplied by its zero weight or a zero gate). */
Test(dit, adaln_zero_initialisation) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = dit_model(c, small_dit);
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(2, 4, 16, 16), 0);
    rx_test_randn(c, x, 9, 1.0f);
    rx_tensor *t = rx_from_host(c, RX_SHAPE(2), (const float[]){10, 900});
    rx_tensor *y = rx_from_host(c, RX_SHAPE(2), (const float[]){1, 3});
    rx_tensor *out = m->impl->forward(c, m, x, t, y);
    cr_assert(out, "%s", rx_last_error());
    float h[2 * 8 * 256];
    ASSERT_OK(rx_tensor_to_host(c, out, h));
    for (int i = 0; i < 2 * 8 * 256; i++) cr_assert_eq(h[i], 0.0f, "output[%d] = %g", i, h[i]);
    rx_tensor *target = rx_param(c, "target", RX_SHAPE(2, 8, 16, 16), 0);
    rx_test_randn(c, target, 10, 1.0f);
    ASSERT_OK(rx_backward(c, rx_mse_loss(c, out, target, NULL)));
    rx_step_end(c);
    for (int i = 0; i < m->params.n; i++) {
        rx_tensor *p = m->params.t[i];
        float *g = malloc(p->numel * sizeof *g);
        ASSERT_OK(rx_tensor_to_host(c, p->grad, g));
        double mx = 0;
        for (int64_t j = 0; j < p->numel; j++) mx = fmax(mx, fabs(g[j]));
        if (!strncmp(p->name, "proj_out_2.", 11)) cr_expect_gt(mx, 0, "%s: zero gradient", p->name);
        else cr_expect_eq(mx, 0, "%s: gradient %g through a zero gate", p->name, mx);
        free(g);
    }
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}

/* Peebles & Xie table 1 sizes; counts from diffusers (gen_models.py) minus the shared embedder copies.
 * DiT-S/2 and DiT-S/8 only: building B, L or XL costs 0.5 to 2.7 G floats for a count. */
Test(dit, presets_match_diffusers_parameter_counts, .timeout = 120) {
    long len;
    char *text = rx_test_read_file(FIX "models_params.json", &len);
    cr_assert(text, FIX "models_params.json missing (run tests/fixtures/gen_models.py)");
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    cr_assert(j, "%s", jerr.text);
    static const char *const presets[] = {"DiT-S/2", "DiT-S/8"};
    rx_ctx *c = rx_test_cpu_ctx();
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        json_t *e = json_object_get(json_object_get(j, "dit"), presets[i]);
        cr_assert(e, "no %s in models_params.json", presets[i]);
        int64_t expect = json_integer_value(json_object_get(e, "num_params_shared_embedder"));
        const char *kv[] = {"preset", presets[i], "sample_size", "32", "in_channels", "4", "learn_sigma", "true",
                            "num_classes", "1000", NULL};
        rx_model *m = dit_model(c, kv);
        cr_expect_eq(rx_model_param_count(m), expect, "%s: runexp %lld parameters, diffusers (shared embedder) %lld",
                     presets[i], (long long)rx_model_param_count(m), (long long)expect);
        /* the preset overrode depth/hidden/heads/patch (their defaults are DiT-S/2's, so check /8 too) */
        cr_expect(rx_paramset_find(&m->params, "transformer_blocks.11.ff.net.2.weight"), "DiT-S has 12 blocks");
        rx_tensor *proj = rx_paramset_find(&m->params, "pos_embed.proj.weight");
        cr_assert(proj);
        cr_expect(proj->shape[0] == 384 && proj->shape[2] == presets[i][6] - '0', "%s: hidden 384, patch %c",
                  presets[i], presets[i][6]);
        rx_model_destroy(m);
    }
    rx_ctx_destroy(c);
    json_decref(j);
    free(text);
}

Test(dit, errors_name_the_model_and_shapes) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = dit_model(c, small_dit);
    rx_tensor *x = rx_zeros(c, RX_SHAPE(2, 4, 8, 8)), *t = rx_zeros(c, RX_SHAPE(2));
    cr_expect_null(m->impl->forward(c, m, x, t, NULL));
    cr_expect(strstr(rx_last_error(), "dit: x [2,4,8,8], expected [B,4,16,16]"), "got: %s", rx_last_error());
    rx_ctx_clear_error(c);
    x = rx_zeros(c, RX_SHAPE(2, 4, 16, 16));
    cr_expect_null(m->impl->forward(c, m, x, rx_zeros(c, RX_SHAPE(3)), NULL));
    cr_expect(strstr(rx_last_error(), "dit: t [3], expected [2]"), "got: %s", rx_last_error());
    rx_ctx_clear_error(c);
    rx_model_destroy(m);

    rx_params *p = fx_params(&rx_comp_model_dit, small_dit);
    ASSERT_OK(rx_params_set(p, "num_heads", "5"));
    cr_expect_neq(rx_model_create(c, &rx_comp_model_dit, p, 1, &m), RX_OK);
    cr_expect(strstr(rx_last_error(), "hidden_size 64 is not divisible by num_heads 5"), "got: %s", rx_last_error());
    ASSERT_OK(rx_params_set(p, "num_heads", "4"));
    ASSERT_OK(rx_params_set(p, "patch_size", "3"));
    cr_expect_neq(rx_model_create(c, &rx_comp_model_dit, p, 1, &m), RX_OK);
    cr_expect(strstr(rx_last_error(), "sample_size 16 is not divisible by patch_size 3"), "got: %s", rx_last_error());
    /* a preset overrides depth/hidden_size/num_heads/patch_size: its patch 8 is checked, not patch_size 3 */
    ASSERT_OK(rx_params_set(p, "sample_size", "18"));
    ASSERT_OK(rx_params_set(p, "preset", "DiT-S/8"));
    cr_expect_neq(rx_model_create(c, &rx_comp_model_dit, p, 1, &m), RX_OK);
    cr_expect(strstr(rx_last_error(), "sample_size 18 is not divisible by patch_size 8"), "got: %s", rx_last_error());
    rx_params_free(p);
    rx_ctx_destroy(c);
}

/* Import refuses a diffusers file whose per-block embedder copies differ (runexp shares one),
 * and one that lacks a key. */
Test(dit, import_refuses_differing_embedder_copies) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = dit_model(c, small_dit);
    rx_st_file *f = NULL;
    ASSERT_OK(rx_st_open(FIX "models_dit.safetensors", &f));
    rx_st_writer *w = NULL;
    ASSERT_OK(rx_st_writer_create(&w));
    int n = rx_st_count(f);
    float **data = calloc(n, sizeof *data);
    const char *changed = "transformer_blocks.1.norm1.emb.timestep_embedder.linear_2.bias";
    for (int i = 0; i < n; i++) {
        const rx_st_tensor *t = rx_st_tensor_at(f, i);
        data[i] = fx_read(f, t->name, NULL);
        if (!strcmp(t->name, changed)) data[i][5] += 0.5f;
        ASSERT_OK(rx_st_writer_add_f32(w, t->name, t->ndim, t->shape, data[i]));
    }
    char path[] = "build/tests/dit_bad_copy.safetensors";
    ASSERT_OK(rx_fs_mkdir_p("build/tests"));
    ASSERT_OK(rx_st_writer_write(w, path));
    cr_expect_neq(rx_model_import_diffusers(c, m, path), RX_OK);
    cr_expect(strstr(rx_last_error(), "'transformer_blocks.1.norm1.emb.timestep_embedder.linear_2.bias' differs from "
                                      "'transformer_blocks.0.norm1.emb.timestep_embedder.linear_2.bias'"),
              "got: %s", rx_last_error());
    rx_st_writer_free(w);
    /* the same file without block 1's copies: a key is missing */
    ASSERT_OK(rx_st_writer_create(&w));
    for (int i = 0; i < n; i++) {
        const rx_st_tensor *t = rx_st_tensor_at(f, i);
        if (strncmp(t->name, "transformer_blocks.1.norm1.emb.", 31))
            ASSERT_OK(rx_st_writer_add_f32(w, t->name, t->ndim, t->shape, data[i]));
    }
    ASSERT_OK(rx_st_writer_write(w, path));
    cr_expect_neq(rx_model_import_diffusers(c, m, path), RX_OK);
    cr_expect(strstr(rx_last_error(), "no tensor 'transformer_blocks.1.norm1.emb."), "got: %s", rx_last_error());
    rx_st_writer_free(w);
    remove(path);
    for (int i = 0; i < n; i++) free(data[i]);
    free(data);
    rx_st_close(f);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}

/* Export: DiTTransformer2DModel config.json, and every block gets a copy of the shared embedder.
 * Leaves build/tests/export_dit for the Python check. */
Test(dit, export_diffusers_writes_config_and_embedder_copies) {
    const char *dir = "build/tests/export_dit";
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = dit_model(c, small_dit);
    ASSERT_OK(rx_model_import_diffusers(c, m, FIX "models_dit.safetensors"));
    ASSERT_OK(rx_fs_mkdir_p(dir));
    ASSERT_OK(rx_model_export_diffusers(c, m, dir));
    fx_check(c, m, FIX "models_dit_io.safetensors", 1e-4, 1e-3, dir);

    json_t *j = fx_read_config(dir);
    cr_expect_str_eq(json_string_value(json_object_get(j, "_class_name")), "DiTTransformer2DModel");
    cr_expect_eq(json_integer_value(json_object_get(j, "num_layers")), 2);
    cr_expect_eq(json_integer_value(json_object_get(j, "num_attention_heads")), 4);
    cr_expect_eq(json_integer_value(json_object_get(j, "attention_head_dim")), 16);
    cr_expect_eq(json_integer_value(json_object_get(j, "out_channels")), 8);
    cr_expect_eq(json_integer_value(json_object_get(j, "num_embeds_ada_norm")), 3, "K; diffusers adds the null row");
    cr_expect_str_eq(json_string_value(json_object_get(j, "norm_type")), "ada_norm_zero");
    cr_expect_str_eq(json_string_value(json_object_get(j, "activation_fn")), "gelu-approximate");
    json_decref(j);

    char path[512];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    rx_st_file *f = NULL, *ref = NULL;
    ASSERT_OK(rx_st_open(path, &f));
    ASSERT_OK(rx_st_open(FIX "models_dit.safetensors", &ref));
    cr_expect_eq(rx_st_count(f), rx_st_count(ref), "the same keys as diffusers' own state dict");
    for (int i = 0; i < rx_st_count(ref); i++) {   /* same names, shapes and (F16-exact) values */
        const rx_st_tensor *t = rx_st_tensor_at(ref, i);
        cr_expect_eq(rx_st_check_shape(f, t->name, t->ndim, t->shape), RX_OK, "%s", rx_last_error());
        float *a = fx_read(f, t->name, NULL), *b = fx_read(ref, t->name, NULL);
        cr_expect_eq(memcmp(a, b, t->numel * sizeof *a), 0, "%s differs from the imported file", t->name);
        free(a); free(b);
    }
    rx_st_close(ref);
    rx_st_close(f);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}
