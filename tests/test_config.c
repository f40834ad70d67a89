/* test_config.c — YAML config tree, base inheritance, --set, emit/hash, the registry
 * and the experiment schema checker, against a test-local registry of fake components.
 *
 * References: the expected messages and file:line:column positions are read off the
 * files in tests/configs/ (1-based, as an editor shows them); float text round-trip is
 * checked against strtod; hashes against themselves under changes that must / must not
 * change them. Tests run from the repository root (as `make test` does). */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include "testutil.h"
#include "io/config.h"
#include "registry/registry.h"
#include "diffusion/diffusion.h"
#include "runner/experiment.h"

#define CONFIGS "tests/configs"

// ---------------------------------------------------------------------------
// fake components: data only, impl NULL

static const rx_param_spec synth_params[] = {
    {"size", RX_P_INT, "32", 1, 4096, NULL, "image side"},
    {"num_classes", RX_P_INT, "10", 0, 1000, NULL, "labels"},
    {0}};
static const rx_param_spec folder_params[] = {
    {"root", RX_P_PATH, NULL, RX_NO_RANGE, NULL, "directory of images"},
    {0}};
static const rx_param_spec flip_params[] = {
    {"p", RX_P_FLOAT, "0.5", 0, 1, NULL, "flip probability"},
    {0}};
static const rx_param_spec crop_params[] = {
    {"size", RX_P_INT, "32", 1, 4096, NULL, "crop side"},
    {"padding", RX_P_INT, "0", 0, 64, NULL, "pad first"},
    {0}};
static const rx_param_spec tiny_params[] = {
    {"channels", RX_P_INT, "32", 1, 1024, NULL, "base channels"},
    {"channel_mult", RX_P_INT_LIST, "[1, 2]", 1, 8, NULL, "per level"},
    {"blocks", RX_P_STRING_LIST, "[Down, AttnDown]", RX_NO_RANGE, "Down|AttnDown", "block types"},
    {"num_classes", RX_P_INT, "0", 0, 1000, NULL, "0 = unconditional"},
    {"dropout", RX_P_FLOAT, "0.0", 0, 1, NULL, "dropout"},
    {0}};
static const rx_param_spec linear_params[] = {
    {"num_train_timesteps", RX_P_INT, "1000", 1, 100000, NULL, "T"},
    {"beta_start", RX_P_FLOAT, "0.0001", 0, 1, NULL, "beta_1"},
    {"beta_end", RX_P_FLOAT, "0.02", 0, 1, NULL, "beta_T"},
    {0}};
static const rx_param_spec ddpm_obj_params[] = {
    {"prediction", RX_P_CHOICE, "eps", RX_NO_RANGE, "eps|v|x0", "target"},
    {0}};
static const rx_param_spec adamw_params[] = {
    {"lr", RX_P_FLOAT, "1e-4", 0, 10, NULL, "learning rate"},
    {"betas", RX_P_FLOAT_LIST, "[0.9, 0.999]", 0, 1, NULL, "Adam betas"},
    {"weight_decay", RX_P_FLOAT, "0.0", 0, 1, NULL, "decoupled weight decay"},
    {0}};
static const rx_param_spec constant_params[] = {
    {"warmup", RX_P_INT, "0", 0, 1e9, NULL, "linear warmup steps"},
    {0}};
static const rx_param_spec ddim_params[] = {
    {"steps", RX_P_INT, "20", 1, 1000, NULL, "model evaluations"},
    {"eta", RX_P_FLOAT, "0.0", 0, 1, NULL, "0 = deterministic"},
    {"spacing", RX_P_CHOICE, "leading", RX_NO_RANGE, "leading|trailing|linspace", "timestep spacing"},
    {0}};
static const rx_param_spec euler_params[] = {
    {"steps", RX_P_INT, "20", 1, 1000, NULL, "model evaluations"},
    {0}};
static const rx_param_spec no_params[] = {{0}};
static const rx_param_spec cfg_params[] = {
    {"scale", RX_P_FLOAT, "1.0", 0, 100, NULL, "guidance weight w"},
    {0}};
static const rx_param_spec pixels_params[] = {
    {"size", RX_P_INT, "32", 1, 4096, NULL, "resize to"},
    {0}};
static const rx_param_spec kid_params[] = {
    {"subsets", RX_P_INT, "100", 1, 10000, NULL, "KID subsets"},
    {0}};

static const rx_component c_synth = {RX_KIND_DATASET, "synth", "synthetic images", synth_params, NULL, NULL};
static const rx_component c_folder = {RX_KIND_DATASET, "folder", "a folder of images", folder_params, NULL, NULL};
static const rx_component c_flip = {RX_KIND_TRANSFORM, "flip", "random horizontal flip", flip_params, NULL, NULL};
static const rx_component c_crop = {RX_KIND_TRANSFORM, "crop", "random crop", crop_params, NULL, NULL};
static const rx_component c_tiny = {RX_KIND_MODEL, "tiny", "a tiny model", tiny_params, NULL, NULL};
static const rx_component c_linear = {RX_KIND_SCHEDULE, "linear", "linear betas", linear_params, NULL, "ddpm_linear"};
/* the cross-section checks read an objective's family from its impl (a diffusion objective
 * generates images, so its eval needs features) */
static const rx_objective_impl ddpm_obj_impl = {.schedule_kind = RX_SCHED_DISCRETE};
static const rx_component c_ddpm = {RX_KIND_OBJECTIVE, "ddpm", "noise prediction", ddpm_obj_params, &ddpm_obj_impl, NULL};
static const rx_component c_adamw = {RX_KIND_OPTIMIZER, "adamw", "AdamW", adamw_params, NULL, NULL};
static const rx_component c_constant = {RX_KIND_LR_SCHEDULE, "constant", "constant lr", constant_params, NULL, NULL};
static const rx_component c_ddim = {RX_KIND_SAMPLER, "ddim", "DDIM | deterministic", ddim_params, NULL, NULL};
static const rx_component c_euler = {RX_KIND_SAMPLER, "euler", "Euler", euler_params, NULL, NULL};
static const rx_component c_none = {RX_KIND_GUIDANCE, "none", "no guidance", no_params, NULL, NULL};
static const rx_component c_cfg = {RX_KIND_GUIDANCE, "cfg", "classifier-free guidance", cfg_params, NULL, NULL};
static const rx_component c_pixels = {RX_KIND_FEATURES, "pixels", "raw pixels", pixels_params, NULL, NULL};
static const rx_component c_fd = {RX_KIND_METRIC, "fd", "Frechet distance", no_params, NULL, NULL};
static const rx_component c_kid = {RX_KIND_METRIC, "kid", "kernel inception distance", kid_params, NULL, NULL};

static const rx_component *const fake_table[] = {
    &c_synth, &c_folder, &c_flip, &c_crop, &c_tiny, &c_linear, &c_ddpm, &c_adamw,
    &c_constant, &c_ddim, &c_euler, &c_none, &c_cfg, &c_pixels, &c_fd, &c_kid, NULL,
};

// ---------------------------------------------------------------------------
// helpers

static rx_config *resolve_ok(const char *path, const char *const *sets, int nsets) {
    rx_config_errors errs = {0};
    rx_config *cfg = NULL;
    rx_status st = rx_config_resolve(path, sets, nsets, fake_table, &cfg, &errs);
    if (st != RX_OK) rx_config_errors_print(&errs, stderr);
    cr_assert_eq(st, RX_OK, "%s: %s", path, rx_last_error());
    cr_assert_not_null(cfg);
    rx_config_errors_clear(&errs);
    return cfg;
}

static const rx_params *section(const rx_config *cfg, const char *path) {
    const rx_params *p = NULL;
    cr_assert_eq(rx_config_section_params(cfg, path, NULL, &p), RX_OK, "%s", rx_last_error());
    return p;
}

static char *hash_of(const rx_config *cfg) {
    static char h[4][17];
    static int k;
    char *out = h[k++ & 3];
    cr_assert_eq(rx_config_hash(cfg->root, out), RX_OK);
    return out;
}

// ---------------------------------------------------------------------------
// bad-config corpus: each file bad in one way, its message and position

typedef struct {
    const char *file;      // under tests/configs/bad/
    int line, col;         // where the message points (0 = file only)
    const char *fragment;  // part of the message after "FILE:LINE:COL: "
    const char *at;        // the file the message points into, when not `file` (a base)
} bad_config;

static const bad_config bad_configs[] = {
    {"unknown_param.yaml", 5, 3, "sampler: unknown parameter 'stpes' (did you mean 'steps'?)"},
    {"unknown_top_key.yaml", 3, 1, "top level: unknown key 'sampelr' (did you mean 'sampler'?)"},
    {"wrong_type.yaml", 5, 10, "sampler: parameter 'steps': expected an integer, got 'twenty'"},
    {"quoted_int.yaml", 4, 15, "train: parameter 'batch_size': expected an integer, got string '64'"},
    {"out_of_range.yaml", 3, 28, "sampler: parameter 'eta': value 1.5 is out of range [0, 1]"},
    {"not_in_choices.yaml", 5, 12, "sampler: parameter 'spacing': 'trailng' is not one of leading|trailing|linspace (did you mean 'trailing'?)"},
    {"unknown_component.yaml", 4, 9, "sampler: unknown sampler 'ddmi' (did you mean 'ddim'?)"},
    {"missing_model.yaml", 1, 1, "model: missing required section (model: {name: <model>, ...}; one of: tiny)"},
    {"missing_required_param.yaml", 2, 1, "dataset: missing required parameter 'root' (a path: directory of images)"},
    {"missing_name.yaml", 2, 1, "model: missing 'name' (the model to use; one of: tiny)"},
    {"syntax_error.yaml", 3, 8, "yaml: did not find expected ',' or '}' while parsing a flow mapping (line 2)"},
    {"bad_indent.yaml", 3, 8, "yaml: mapping values are not allowed in this context"},
    {"duplicate_key.yaml", 4, 1, "yaml: duplicate key 'seed' (first at line 3)"},
    // the cycle closes at base_cycle_b.yaml's `base:` (pointing back at a)
    {"base_cycle_a.yaml", 1, 7, "top level: base cycle: " CONFIGS "/bad/base_cycle_a.yaml -> "
                                CONFIGS "/bad/base_cycle_b.yaml -> " CONFIGS "/bad/base_cycle_a.yaml",
     "base_cycle_b.yaml"},
    {"base_self.yaml", 1, 7, "top level: base cycle: " CONFIGS "/bad/base_self.yaml -> " CONFIGS "/bad/base_self.yaml"},
    {"base_missing.yaml", 3, 7, "top level: base file 'no_such_base.yaml' not found"},
    {"list_element_range.yaml", 4, 24, "model: parameter 'channel_mult': element 2: value 16 is out of range [1, 8]"},
    {"list_element_choice.yaml", 6, 7, "model: parameter 'blocks': element 1: 'AttnDwn' is not one of Down|AttnDown (did you mean 'AttnDown'?)"},
    {"train_not_mapping.yaml", 3, 8, "train: expected a mapping or null, got a scalar"},
    {"null_not_allowed.yaml", 3, 7, "top level: parameter 'seed': may not be null (expected an integer)"},
    {"nan_float.yaml", 3, 30, "optimizer: parameter 'lr': expected a finite number, got '.nan'"},
    {"transform_unknown_param.yaml", 5, 5, "transforms[1]: unknown parameter 'sise' (did you mean 'size'?)"},
    {"transforms_not_list.yaml", 3, 13, "transforms: expected a list of {name: <transform>, ...} entries, got a mapping"},
    {"eval_missing_features.yaml", 4, 3, "eval.features: missing required section (features: {name: <features>, ...})"},
    {"sweep_unknown_key.yaml", 5, 3, "sweep: unknown key 'guidance.scael' (did you mean 'guidance.scale'?)"},
    {"sweep_bad_value.yaml", 4, 23, "sweep: sampler.steps: value 0 is out of range [1, 1000]"},
    {"sweep_bad_range.yaml", 4, 16, "sweep: sampler.eta: range: stop 0.1 cannot be reached from start 0.5 with step 0.1"},
    {"experiment_name.yaml", 1, 13, "top level: experiment name 'my run/1' may only hold letters, digits"},
    {"not_a_mapping.yaml", 1, 1, "top level: expected a mapping of experiment keys, got a list"},
    {"precision_choice.yaml", 3, 12, "top level: parameter 'precision': 'bf61' is not one of fp32|tf32|bf16 (did you mean 'bf16'?)"},
    {"sample_precision.yaml", 4, 14, "sample: parameter 'precision': 'fp16' is not one of fp32|tf32|bf16"},
    // the key earlier runexps took: the error says what replaces it
    {"tf32_and_precision.yaml", 4, 1, "top level: 'tf32' (the earlier name) and 'precision' both given: keep only "
                                      "precision"},
};

Test(config_bad, each_file_one_error_with_position) {
    for (size_t i = 0; i < sizeof bad_configs / sizeof *bad_configs; i++) {
        const bad_config *b = &bad_configs[i];
        char path[256], prefix[300];
        snprintf(path, sizeof path, CONFIGS "/bad/%s", b->file);
        rx_config_errors errs = {0};
        rx_config *cfg = NULL;
        rx_status st = rx_config_resolve(path, NULL, 0, fake_table, &cfg, &errs);
        cr_expect_eq(st, RX_ERR_CONFIG, "%s: accepted", b->file);
        cr_expect_null(cfg);
        cr_expect_eq(errs.n, 1, "%s: %d errors, expected 1", b->file, errs.n);
        if (errs.n >= 1) {
            const char *msg = errs.items[0].message;
            char at[256];
            snprintf(at, sizeof at, CONFIGS "/bad/%s", b->at ? b->at : b->file);
            if (b->line) snprintf(prefix, sizeof prefix, "%s:%d:%d: ", at, b->line, b->col);
            else snprintf(prefix, sizeof prefix, "%s: ", at);
            cr_expect(strncmp(msg, prefix, strlen(prefix)) == 0, "%s: message '%s' does not start with '%s'",
                      b->file, msg, prefix);
            cr_expect(strstr(msg, b->fragment) != NULL, "%s: message '%s' lacks '%s'", b->file, msg, b->fragment);
            cr_expect_eq(errs.items[0].line, b->line, "%s: line %d", b->file, errs.items[0].line);
            cr_expect_eq(errs.items[0].col, b->col, "%s: col %d", b->file, errs.items[0].col);
        }
        rx_config_errors_clear(&errs);
        rx_config_free(cfg);
    }
}

Test(config_bad, all_errors_in_one_pass_sorted) {
    rx_config_errors errs = {0};
    rx_config *cfg = NULL;
    const char *path = CONFIGS "/bad/multiple_errors.yaml";
    cr_assert_eq(rx_config_resolve(path, NULL, 0, fake_table, &cfg, &errs), RX_ERR_CONFIG);
    cr_assert_null(cfg);
    cr_assert_eq(errs.n, 4, "got %d errors", errs.n);
    static const struct { int line, col; const char *fragment; } want[4] = {
        {2, 30, "dataset: parameter 'size': value 0 is out of range [1, 4096]"},
        {5, 3, "model: unknown parameter 'chanels' (did you mean 'channels'?)"},
        {8, 10, "sampler: parameter 'steps': value -1 is out of range [1, 1000]"},
        {9, 18, "guidance: unknown guidance 'cgf' (did you mean 'cfg'?)"},
    };
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(errs.items[i].line, want[i].line, "error %d at line %d: %s", i, errs.items[i].line, errs.items[i].message);
        cr_expect_eq(errs.items[i].col, want[i].col, "error %d at col %d: %s", i, errs.items[i].col, errs.items[i].message);
        cr_expect(strstr(errs.items[i].message, want[i].fragment) != NULL, "error %d: '%s'", i, errs.items[i].message);
    }
    // the status message names the first and counts the rest, for callers that only see rx_last_error
    cr_expect(strstr(rx_last_error(), "and 3 more errors") != NULL, "%s", rx_last_error());
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    cr_assert_eq(rx_config_errors_print(&errs, mem), 0);
    fclose(mem);
    int lines = 0;
    for (char *c = buf; *c; c++) lines += *c == '\n';
    cr_expect_eq(lines, 4);
    free(buf);
    rx_config_errors_clear(&errs);
}

Test(config_bad, missing_top_file) {
    rx_config_errors errs = {0};
    rx_config *cfg = NULL;
    cr_assert_eq(rx_config_resolve(CONFIGS "/nope.yaml", NULL, 0, fake_table, &cfg, &errs), RX_ERR_CONFIG);
    cr_assert_eq(errs.n, 1);
    cr_expect(strstr(errs.items[0].message, CONFIGS "/nope.yaml: cannot read: No such file") == errs.items[0].message,
              "%s", errs.items[0].message);
    rx_config_errors_clear(&errs);
}

// ---------------------------------------------------------------------------
// defaults

Test(config_defaults, minimal_file_gets_every_default) {
    rx_config *cfg = resolve_ok(CONFIGS "/good/minimal.yaml", NULL, 0);
    const rx_params *top = section(cfg, "");
    cr_assert_str_eq(rx_param_str(top, "experiment"), "minimal");   // the file's stem
    cr_assert_eq(rx_param_int(top, "seed"), 0);
    cr_assert_str_eq(rx_param_str(top, "backend"), "auto");
    cr_assert_str_eq(rx_param_str(top, "precision"), "tf32");   // as `tf32: true` was before
    cr_assert(rx_param_is_null(section(cfg, "sample"), "precision"));   // null: the top-level precision
    cr_assert(rx_param_is_null(top, "init"));

    const rx_component *comp = NULL;
    const rx_params *p = NULL;
    cr_assert_eq(rx_config_section_params(cfg, "sampler", &comp, &p), RX_OK);
    cr_assert_eq(comp, &c_ddim);                  // schema default
    cr_assert_str_eq(p->component, "sampler/ddim");
    cr_assert_eq(rx_param_int(p, "steps"), 20);   // component default
    cr_assert_str_eq(rx_param_str(p, "spacing"), "leading");
    cr_assert_eq(rx_config_section_params(cfg, "schedule", &comp, &p), RX_OK);
    cr_assert_eq(comp, &c_linear);
    cr_assert_eq(rx_param_float(p, "beta_start"), 1e-4);
    cr_assert_eq(rx_config_section_params(cfg, "guidance", &comp, NULL), RX_OK);
    cr_assert_eq(comp, &c_none);
    cr_assert_eq(rx_config_section_params(cfg, "train", &comp, &p), RX_OK);
    cr_assert_null(comp);
    cr_assert_eq(rx_param_int(p, "batch_size"), 64);
    cr_assert_eq(rx_param_float(p, "ema_decay"), 0.9999);
    cr_assert_eq(rx_config_section_count(cfg, "transforms"), 0);
    cr_assert_eq(rx_config_section_params(cfg, "eval", NULL, NULL), RX_ERR_ARG);   // eval defaults to null
    cr_assert(strstr(rx_last_error(), "null") != NULL, "%s", rx_last_error());
    cr_assert(rx_cfg_is_null(rx_cfg_path(cfg->root, "eval")));
    cr_assert(rx_cfg_is_null(rx_cfg_path(cfg->root, "sweep")));
    cr_assert(rx_cfg_is_null(rx_cfg_path(cfg->root, "reflow")));   // reflow defaults to null
    cr_assert(rx_cfg_is_null(rx_cfg_path(cfg->root, "latent")));   // pixel space by default

    // the resolved tree holds every key in schema order, defaults written out
    static const char *const top_keys[] = {"experiment", "seed", "backend", "device_id", "deterministic", "precision",
                                           "cuda_graphs", "threads", "init", "dataset", "transforms", "model", "latent", "schedule",
                                           "objective", "optimizer", "lr_schedule", "sampler", "guidance",
                                           "train", "sample", "eval", "reflow", "log", "sweep"};
    cr_assert_eq(cfg->root->n, 25);
    for (int i = 0; i < 25; i++) cr_expect_str_eq(cfg->root->keys[i]->text, top_keys[i]);
    char *text = rx_config_emit_string(cfg->root);
    cr_assert(strstr(text, "experiment: minimal\nseed: 0\nbackend: auto\n") == text, "%s", text);
    cr_assert(strstr(text, "\nsampler:\n  name: ddim\n  steps: 20\n  eta: 0.0\n  spacing: leading\n"), "%s", text);
    cr_assert(strstr(text, "\nmodel:\n  name: tiny\n  channels: 32\n  channel_mult: [1, 2]\n  blocks: [Down, AttnDown]\n"),
              "%s", text);
    cr_assert(strstr(text, "\ntransforms: []\n"), "%s", text);
    cr_assert(strstr(text, "\neval: null\nreflow: null\nlog:\n  tensorboard: false\nsweep: null\n"), "%s", text);
    free(text);
    rx_config_free(cfg);
}

Test(config_defaults, full_file_values_typed) {
    rx_config *cfg = resolve_ok(CONFIGS "/good/full.yaml", NULL, 0);
    cr_assert_eq(rx_param_int(section(cfg, ""), "seed"), 7);
    cr_assert_eq(rx_param_bool(section(cfg, ""), "deterministic"), 1);
    cr_assert_str_eq(rx_param_str(section(cfg, ""), "precision"), "fp32");
    cr_assert_str_eq(rx_param_str(section(cfg, "sample"), "precision"), "bf16");
    cr_assert_eq(rx_config_section_count(cfg, "transforms"), 2);
    const rx_component *comp;
    const rx_params *p;
    cr_assert_eq(rx_config_section_item_params(cfg, "transforms", 1, &comp, &p), RX_OK);
    cr_assert_eq(comp, &c_crop);
    cr_assert_str_eq(p->component, "transform/crop");
    cr_assert_eq(rx_param_int(p, "padding"), 2);
    cr_assert_eq(rx_config_section_item_params(cfg, "transforms", 2, &comp, &p), RX_ERR_ARG);
    int n;
    const int64_t *cm = rx_param_int_list(section(cfg, "model"), "channel_mult", &n);
    cr_assert(n == 3 && cm[0] == 1 && cm[2] == 2);
    const char **blocks = rx_param_str_list(section(cfg, "model"), "blocks", &n);
    cr_assert(n == 3 && !strcmp(blocks[1], "AttnDown"));
    cr_assert_eq(rx_param_float(section(cfg, "guidance"), "scale"), 3.5);
    cr_assert_eq(rx_param_float(section(cfg, "optimizer"), "lr"), 2e-4);
    cr_assert_str_eq(rx_param_str(section(cfg, "eval"), "reference_split"), "test");
    cr_assert_eq(rx_config_section_params(cfg, "eval.features", &comp, &p), RX_OK);
    cr_assert_eq(comp, &c_pixels);
    cr_assert_eq(rx_param_int(p, "size"), 16);
    cr_assert_eq(rx_config_section_count(cfg, "eval.metrics"), 2);
    cr_assert_eq(rx_config_section_item_params(cfg, "eval.metrics", 1, &comp, &p), RX_OK);
    cr_assert_eq(comp, &c_kid);
    cr_assert_eq(rx_param_int(p, "subsets"), 10);
    const int64_t *labels = rx_param_int_list(section(cfg, "sample"), "class_labels", &n);
    cr_assert(n == 10 && labels[9] == 9);
    rx_config_free(cfg);
}

Test(config_defaults, shorthand_and_alias_resolve_to_canonical_name) {
    // reordered.yaml writes `objective: ddpm` and `schedule: {name: ddpm_linear}` (an alias)
    rx_config *cfg = resolve_ok(CONFIGS "/good/reordered.yaml", NULL, 0);
    const rx_component *comp;
    cr_assert_eq(rx_config_section_params(cfg, "schedule", &comp, NULL), RX_OK);
    cr_assert_eq(comp, &c_linear);
    cr_assert_str_eq(rx_cfg_path(cfg->root, "schedule.name")->text, "linear");
    cr_assert_str_eq(rx_cfg_path(cfg->root, "objective.name")->text, "ddpm");
    rx_config_free(cfg);
}

// ---------------------------------------------------------------------------
// --set

Test(config_set, typed_overrides) {
    const char *sets[] = {"sampler.steps=50", "sampler.eta=.25", "model.channel_mult=[1, 2, 4]",
                          "guidance.name=cfg", "guidance.scale=7.5", "train.batch_size=16",
                          "transforms=[{name: flip, p: 1}]", "experiment=renamed", "init='ckpt 1.safetensors'"};
    rx_config *cfg = resolve_ok(CONFIGS "/good/minimal.yaml", sets, 9);
    cr_assert_eq(rx_param_int(section(cfg, "sampler"), "steps"), 50);
    cr_assert_eq(rx_param_float(section(cfg, "sampler"), "eta"), 0.25);
    int n;
    const int64_t *cm = rx_param_int_list(section(cfg, "model"), "channel_mult", &n);
    cr_assert(n == 3 && cm[2] == 4);
    const rx_component *comp;
    cr_assert_eq(rx_config_section_params(cfg, "guidance", &comp, NULL), RX_OK);
    cr_assert_eq(comp, &c_cfg);
    cr_assert_eq(rx_param_float(section(cfg, "guidance"), "scale"), 7.5);
    cr_assert_eq(rx_param_int(section(cfg, "train"), "batch_size"), 16);
    cr_assert_eq(rx_param_float(section(cfg, "transforms[0]"), "p"), 1.0);
    cr_assert_str_eq(rx_param_str(section(cfg, ""), "experiment"), "renamed");
    cr_assert_str_eq(rx_param_str(section(cfg, ""), "init"), "ckpt 1.safetensors");
    // positions of --set values: line = index of the --set, column inside "key=value"
    const rx_cfg_node *steps = rx_cfg_path(cfg->root, "sampler.steps");
    cr_assert_str_eq(steps->file, RX_CONFIG_SET_FILE);
    cr_assert_eq(steps->line, 1);
    cr_assert_eq(steps->col, 15);
    rx_config_free(cfg);
}

Test(config_set, null_stage_becomes_mapping_and_name_switch_drops_old_params) {
    // chain_c has `sample: null` and sampler {name: ddim, steps: 10, eta: 0.1}
    const char *sets[] = {"sample.num_images=8", "sampler.name=euler", "sampler.steps=5"};
    rx_config *cfg = resolve_ok(CONFIGS "/good/chain_c.yaml", sets, 3);
    cr_assert_eq(rx_param_int(section(cfg, "sample"), "num_images"), 8);
    cr_assert_eq(rx_param_int(section(cfg, "sample"), "batch_size"), 64);
    const rx_component *comp;
    cr_assert_eq(rx_config_section_params(cfg, "sampler", &comp, NULL), RX_OK);
    cr_assert_eq(comp, &c_euler);
    cr_assert_eq(rx_param_int(section(cfg, "sampler"), "steps"), 5);
    rx_config_free(cfg);
}

Test(config_set, bad_sets_are_errors_with_positions) {
    const char *sets[] = {"sampler.stpes=5", "sampler.steps=abc", "nosuch=1", "sampler", "model.name.x=1",
                          "transforms[3].p=1"};
    rx_config_errors errs = {0};
    rx_config *cfg = NULL;
    cr_assert_eq(rx_config_resolve(CONFIGS "/good/minimal.yaml", sets, 6, fake_table, &cfg, &errs), RX_ERR_CONFIG);
    cr_assert_null(cfg);
    static const char *const want[] = {
        "<command line>:--set:1:9: sampler: unknown parameter 'stpes' (did you mean 'steps'?)",
        "<command line>:--set:2:15: sampler: parameter 'steps': expected an integer, got 'abc'",
        "<command line>:--set:3:1: top level: unknown key 'nosuch'",
        "<command line>:--set:4:1: --set: expected KEY=VALUE, got 'sampler'",
        "<command line>:--set:5:12: --set model.name.x: cannot set key 'x' inside a scalar",
        "<command line>:--set:6:11: --set transforms[3].p: 'transforms' does not exist, so it has no item [3]",
    };
    cr_assert_eq(errs.n, 6, "got %d errors", errs.n);
    for (int i = 0; i < 6; i++)
        cr_expect(strstr(errs.items[i].message, want[i]) == errs.items[i].message, "'%s' vs '%s'",
                  errs.items[i].message, want[i]);
    rx_config_errors_clear(&errs);
}

// ---------------------------------------------------------------------------
// base inheritance

Test(config_base, three_level_chain_override_precedence) {
    rx_config *cfg = resolve_ok(CONFIGS "/good/chain_a.yaml", NULL, 0);
    const rx_params *s = section(cfg, "sampler"), *m = section(cfg, "model"), *t = section(cfg, "train");
    cr_assert_eq(rx_param_int(s, "steps"), 20);      // chain_b over chain_c
    cr_assert_eq(rx_param_float(s, "eta"), 0.3);     // chain_a over chain_c
    cr_assert_eq(rx_param_int(m, "channels"), 16);   // chain_c only
    cr_assert_eq(rx_param_float(m, "dropout"), 0.2);
    int n;
    cr_assert_eq(rx_param_int_list(m, "channel_mult", &n)[2], 2);   // chain_b only
    cr_assert_eq(n, 3);
    cr_assert_eq(rx_param_int(t, "steps"), 100);     // chain_c
    cr_assert_eq(rx_param_int(t, "batch_size"), 4);  // chain_a over chain_c
    cr_assert_eq(rx_param_int(section(cfg, ""), "seed"), 3);
    cr_assert_eq(rx_param_float(section(cfg, "guidance"), "scale"), 2.0);
    cr_assert(rx_cfg_is_null(rx_cfg_path(cfg->root, "sample")));   // chain_c's null kept
    cr_assert_str_eq(rx_param_str(section(cfg, ""), "experiment"), "chain_a");
    cr_assert_null(rx_cfg_map_get(cfg->root, "base"));
    // positions follow the file that set the value
    const rx_cfg_node *eta = rx_cfg_path(cfg->root, "sampler.eta"), *steps = rx_cfg_path(cfg->root, "sampler.steps");
    cr_assert_str_eq(eta->file, CONFIGS "/good/chain_a.yaml");
    cr_assert_eq(eta->line, 4);
    cr_assert_str_eq(steps->file, CONFIGS "/good/sub/chain_b.yaml");
    cr_assert_eq(steps->line, 3);
    rx_config_free(cfg);
}

Test(config_base, changed_component_replaces_inherited_section) {
    rx_config *cfg = resolve_ok(CONFIGS "/good/switch_sampler.yaml", NULL, 0);
    const rx_component *comp;
    cr_assert_eq(rx_config_section_params(cfg, "sampler", &comp, NULL), RX_OK);
    cr_assert_eq(comp, &c_euler);
    cr_assert_null(rx_cfg_path(cfg->root, "sampler.eta"));
    rx_config_free(cfg);
}

Test(config_base, raw_merge_rules) {
    rx_config_errors errs = {0};
    rx_cfg_node *a = NULL, *b = NULL;
    const char *ta = "m: {x: 1, y: [1, 2], z: {p: 1}}\nk: 1\n", *tb = "m: {y: [3], z: {q: 2}}\nn: 2\n";
    cr_assert_eq(rx_yaml_parse_string(ta, strlen(ta), "a", &a, &errs), RX_OK);
    cr_assert_eq(rx_yaml_parse_string(tb, strlen(tb), "b", &b, &errs), RX_OK);
    cr_assert_eq(rx_config_merge(&a, b), RX_OK);
    char *text = rx_config_emit_string(a);
    // maps merge key by key, sequences replace, new keys append
    cr_assert_str_eq(text, "m:\n  x: 1\n  y: [3]\n  z:\n    p: 1\n    q: 2\nk: 1\nn: 2\n");
    free(text);
    rx_cfg_free(a);
}

// ---------------------------------------------------------------------------
// emit, re-parse, hash

Test(config_emit, roundtrip_identical_tree_and_hash) {
    rx_config *cfg = resolve_ok(CONFIGS "/good/full.yaml", NULL, 0);
    char tmpl[] = "/tmp/rx_config_XXXXXX";
    cr_assert_not_null(mkdtemp(tmpl));
    char path[256];
    snprintf(path, sizeof path, "%s/saved.yaml", tmpl);
    cr_assert_eq(rx_config_save(cfg->root, path), RX_OK, "%s", rx_last_error());
    rx_config *again = resolve_ok(path, NULL, 0);
    cr_assert(rx_cfg_equal(cfg->root, again->root));
    char *h1 = hash_of(cfg), *h2 = hash_of(again);
    cr_assert_eq(strlen(h1), 16);
    cr_assert_str_eq(h1, h2);
    char *t1 = rx_config_emit_string(cfg->root), *t2 = rx_config_emit_string(again->root);
    cr_assert_str_eq(t1, t2);
    free(t1);
    free(t2);
    unlink(path);
    rmdir(tmpl);
    rx_config_free(cfg);
    rx_config_free(again);
}

Test(config_emit, hash_ignores_key_order_and_number_spelling) {
    rx_config *a = resolve_ok(CONFIGS "/good/full.yaml", NULL, 0);
    rx_config *b = resolve_ok(CONFIGS "/good/reordered.yaml", NULL, 0);
    char *ta = rx_config_emit_string(a->root), *tb = rx_config_emit_string(b->root);
    cr_assert_str_eq(ta, tb);
    free(ta);
    free(tb);
    cr_assert_str_eq(hash_of(a), hash_of(b));
    rx_config_free(a);
    rx_config_free(b);
}

Test(config_emit, hash_changes_with_a_value) {
    const char *s1[] = {"sampler.steps=51"}, *s2[] = {"model.dropout=0.1000000000000001"};
    rx_config *a = resolve_ok(CONFIGS "/good/full.yaml", NULL, 0);
    rx_config *b = resolve_ok(CONFIGS "/good/full.yaml", s1, 1);
    rx_config *c = resolve_ok(CONFIGS "/good/full.yaml", s2, 1);
    cr_assert_str_neq(hash_of(a), hash_of(b));
    cr_assert_str_neq(hash_of(a), hash_of(c));
    // a stage hash over the sections training depends on ignores sampler changes
    static const char *const train_keys[] = {"seed", "dataset", "transforms", "model", "schedule", "objective",
                                             "optimizer", "lr_schedule", "train"};
    char ha[17], hb[17], hc[17];
    cr_assert_eq(rx_config_hash_sections(a->root, train_keys, 9, ha), RX_OK);
    cr_assert_eq(rx_config_hash_sections(b->root, train_keys, 9, hb), RX_OK);
    cr_assert_eq(rx_config_hash_sections(c->root, train_keys, 9, hc), RX_OK);
    cr_assert_str_eq(ha, hb);
    cr_assert_str_neq(ha, hc);
    rx_config_free(a);
    rx_config_free(b);
    rx_config_free(c);
}

Test(config_emit, floats_round_trip_exactly) {
    // reference: strtod(format(x)) == x bit for bit
    double vals[2000];
    int n = 0;
    static const double fixed[] = {0.0, -0.0, 1.0, 0.1, 1e-4, 2e-4, 1.0 / 3, 0.9999, 1e300, 5e-324, 123456789.125, -2.5e-17};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) vals[n++] = fixed[i];
    uint64_t state = 0x9E3779B97F4A7C15ull;
    while (n < 2000) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        double d;
        memcpy(&d, &state, sizeof d);
        if (isfinite(d)) vals[n++] = d;
    }
    for (int i = 0; i < n; i++) {
        char buf[40];
        rx_config_format_float(vals[i], buf, sizeof buf);
        double back = strtod(buf, NULL);
        cr_assert(memcmp(&back, &vals[i], sizeof back) == 0, "%.17g -> '%s' -> %.17g", vals[i], buf, back);
        cr_assert(strchr(buf, '.') != NULL, "'%s' would read back as an int", buf);
    }
    char buf[40];
    rx_config_format_float(1e-4, buf, sizeof buf);
    cr_assert_str_eq(buf, "0.0001");
    rx_config_format_float(1e20, buf, sizeof buf);
    cr_assert_str_eq(buf, "1.0e+20");
    rx_config_format_float(3, buf, sizeof buf);
    cr_assert_str_eq(buf, "3.0");
}

Test(config_emit, strings_quoted_only_when_needed) {
    rx_cfg_node *m = rx_cfg_new_map("t", 1, 1);
    static const char *const strs[] = {"ddim", "yes", "123", "1e5", "a: b", "#x", "", "null", "- a", "x #y",
                                       "tab\there", "quote\"s", "path/to file.yaml", "[x]"};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%zu", i);
        cr_assert_eq(rx_cfg_map_set(m, key, rx_cfg_new_scalar(strs[i], 1, "t", 1, 1)), RX_OK);
    }
    rx_cfg_node *seq = rx_cfg_new_seq("t", 1, 1);
    rx_cfg_seq_push(seq, rx_cfg_new_scalar("a,b", 1, "t", 1, 1));
    rx_cfg_seq_push(seq, rx_cfg_new_scalar("7", 0, "t", 1, 1));
    rx_cfg_map_set(m, "list", seq);
    char *text = rx_config_emit_string(m);
    cr_assert(strstr(text, "k0: ddim\n"), "%s", text);
    cr_assert(strstr(text, "k1: \"yes\"\n"), "%s", text);
    cr_assert(strstr(text, "k2: \"123\"\n"), "%s", text);
    cr_assert(strstr(text, "k12: path/to file.yaml\n"), "%s", text);
    cr_assert(strstr(text, "list: [\"a,b\", 7]\n"), "%s", text);
    rx_config_errors errs = {0};
    rx_cfg_node *back = NULL;
    cr_assert_eq(rx_yaml_parse_string(text, strlen(text), "emitted", &back, &errs), RX_OK, "%s", text);
    cr_assert(rx_cfg_equal(m, back), "%s", text);
    free(text);
    rx_cfg_free(back);
    rx_cfg_free(m);
}

// ---------------------------------------------------------------------------
// parser details

Test(config_parse, positions_of_keys_and_values) {
    const char *text = "a:\n  bb: 1\n  cc: [x, 'y']\n";
    rx_config_errors errs = {0};
    rx_cfg_node *root = NULL;
    cr_assert_eq(rx_yaml_parse_string(text, strlen(text), "mem.yaml", &root, &errs), RX_OK);
    const rx_cfg_node *a = rx_cfg_map_get(root, "a");
    cr_assert_eq(a->keys[1]->line, 3);   // key "cc"
    cr_assert_eq(a->keys[1]->col, 3);
    const rx_cfg_node *cc = rx_cfg_path(root, "a.cc");
    cr_assert_eq(cc->col, 7);
    cr_assert_eq(cc->items[1]->col, 11);
    cr_assert(cc->items[1]->quoted);
    cr_assert_not(cc->items[0]->quoted);
    cr_assert_eq(rx_cfg_path(root, "a.cc[1]"), cc->items[1]);
    cr_assert_eq(rx_cfg_path(root, "a.cc.1"), cc->items[1]);
    cr_assert_null(rx_cfg_path(root, "a.cc[2]"));
    cr_assert_null(rx_cfg_path(root, "a.dd"));
    rx_cfg_free(root);
    // empty document: no tree, no error
    cr_assert_eq(rx_yaml_parse_string("# nothing\n", 10, "empty", &root, &errs), RX_OK);
    cr_assert_null(root);
    cr_assert_eq(errs.n, 0);
    // two documents: an error
    cr_assert_eq(rx_yaml_parse_string("a: 1\n---\nb: 2\n", 14, "two", &root, &errs), RX_ERR_CONFIG);
    cr_assert(strstr(errs.items[0].message, "two:3:1: yaml: more than one document"), "%s", errs.items[0].message);
    rx_config_errors_clear(&errs);
}

// A node that aliases itself would expand forever. Reference: the YAML text itself; the
// mapping case is the one whose key leaked on the error path (issue 19: LeakSanitizer, so
// run this under `make SANITIZE=1` to check the leak, not only the refusal).
Test(config_parse, self_referential_alias_refused) {
    static const char *const texts[] = {"a: &x\n  k: *x\n", "a: &x\n  - *x\n", "a: &x\n  k: [1, {j: *x}]\n"};
    static const char *const at[] = {"self.yaml:2:6: ", "self.yaml:2:5: ", "self.yaml:2:14: "};   // the alias
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        rx_config_errors errs = {0};
        rx_cfg_node *root = NULL;
        cr_expect_eq(rx_yaml_parse_string(texts[i], strlen(texts[i]), "self.yaml", &root, &errs), RX_ERR_CONFIG,
                     "text %zu accepted", i);
        cr_expect_null(root);
        cr_expect_eq(errs.n, 1, "text %zu: %d errors", i, errs.n);
        if (errs.n >= 1)
            cr_expect(strstr(errs.items[0].message, at[i]) == errs.items[0].message &&
                      strstr(errs.items[0].message, "recursive alias"), "text %zu: %s", i, errs.items[0].message);
        rx_config_errors_clear(&errs);
    }
}

// Issue 19: a ~500-byte "billion laughs" (8 levels of 10 aliases each, 10^8 nodes expanded)
// took 45-90 s and ~19 GB before failing. Reference: the file's own text (the alias on line 6
// is the first whose copy crosses 100,000 nodes: l0..l4 and l5's key and list are 12,353
// nodes, *l4 is 11,111, so the eighth *l4 on line 6, at column 45, would make 101,241). The time bound is a guard against the exponential case,
// not a benchmark: it fails in well under 0.1 s.
Test(config_parse, alias_bomb_fails_fast_at_the_alias) {
    char path[] = "/tmp/rx_test_bomb_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    cr_assert_not_null(f);
    fprintf(f, "l0: &l0 \"lol\"\n");
    for (int i = 1; i <= 8; i++) {
        fprintf(f, "l%d: &l%d [", i, i);
        for (int j = 0; j < 10; j++) fprintf(f, "%s*l%d", j ? ", " : "", i - 1);
        fprintf(f, "]\n");
    }
    fclose(f);
    rx_config_errors errs = {0};
    rx_cfg_node *root = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rx_status st = rx_yaml_parse_file(path, &root, &errs);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    unlink(path);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    cr_expect_eq(st, RX_ERR_CONFIG);
    cr_expect_null(root);
    cr_expect_lt(seconds, 2.0, "took %.2f s", seconds);
    cr_assert_eq(errs.n, 1, "%d errors", errs.n);
    char want[128];
    snprintf(want, sizeof want, "%s:6:45: yaml: alias *l4 expands to 11111 nodes", path);
    cr_expect(strstr(errs.items[0].message, want) == errs.items[0].message, "%s", errs.items[0].message);
    cr_expect(strstr(errs.items[0].message, "limit of 100000 nodes"), "%s", errs.items[0].message);
    rx_config_errors_clear(&errs);
}

// The limit counts every node, keys and alias copies included, and aliases below it still
// expand. Reference: counting by hand: {k: [N items]} is N + 3 nodes.
Test(config_parse, node_limit_is_exact_and_aliases_below_it_expand) {
    for (int over = 0; over <= 1; over++) {
        int items = 100000 - 3 + over;
        size_t cap = 8 + 2 * (size_t)items;
        char *text = malloc(cap);
        cr_assert_not_null(text);
        char *p = text + sprintf(text, "k: [");
        for (int i = 0; i < items; i++) { *p++ = i ? ',' : '0'; if (i) *p++ = '0'; }
        strcpy(p, "]\n");
        rx_config_errors errs = {0};
        rx_cfg_node *root = NULL;
        rx_status st = rx_yaml_parse_string(text, strlen(text), "big.yaml", &root, &errs);
        if (!over) {
            cr_expect_eq(st, RX_OK, "%d items refused", items);
            cr_expect_eq(root ? rx_cfg_map_get(root, "k")->n : -1, items);
        } else {
            cr_expect_eq(st, RX_ERR_CONFIG, "%d items accepted", items);
            cr_expect(errs.n == 1 && strstr(errs.items[0].message, "big.yaml:1:") &&
                      strstr(errs.items[0].message, "more than the limit of 100000 nodes"),
                      "%s", errs.n ? errs.items[0].message : "(no error)");
        }
        rx_cfg_free(root);
        rx_config_errors_clear(&errs);
        free(text);
    }
    // nested aliases under the limit: l3 is 1 + 10 * 111 = 1111 nodes, copied with positions
    const char *small = "l0: &l0 x\nl1: &l1 [*l0, *l0]\nl2: &l2 {a: *l1, b: *l1}\nl3: [*l2, *l2]\n";
    rx_config_errors errs = {0};
    rx_cfg_node *root = NULL;
    cr_assert_eq(rx_yaml_parse_string(small, strlen(small), "ok.yaml", &root, &errs), RX_OK);
    const rx_cfg_node *leaf = rx_cfg_path(root, "l3[1].b[1]");
    cr_assert_not_null(leaf);
    cr_expect_str_eq(leaf->text, "x");
    cr_expect_eq(leaf->line, 1);   // the anchored scalar's position, as written
    cr_expect_eq(leaf->col, 5);
    rx_cfg_free(root);
    // deeper than 64 levels through an alias: fails at the alias
    char deep[1024] = "d: &d ";
    for (int i = 0; i < 60; i++) strcat(deep, "[");
    for (int i = 0; i < 60; i++) strcat(deep, "]");
    strcat(deep, "\ne: [[[[[*d]]]]]\n");
    cr_assert_eq(rx_yaml_parse_string(deep, strlen(deep), "deep.yaml", &root, &errs), RX_ERR_CONFIG);
    cr_expect(strstr(errs.items[0].message, "deep.yaml:2:9: yaml: alias *d nests deeper than 64 levels") ==
              errs.items[0].message, "%s", errs.items[0].message);
    rx_config_errors_clear(&errs);
}

// libyaml's reader decodes the whole input before scanning and reports bad UTF-8 with a
// byte offset only (issue 19: "bad UTF-8 on line 25 is reported at 1:1"). Reference: the
// positions counted by hand in the texts below (1-based; a column is a character).
Test(config_parse, bad_utf8_reported_at_its_line) {
    char text[1024] = "";
    for (int i = 1; i < 25; i++) snprintf(text + strlen(text), sizeof text - strlen(text), "k%d: %d\n", i, i);
    strcat(text, "bad: \"\xc3\xa9\xff\"\n");   // line 25: 'bad: "' is 6 characters, e-acute the 7th
    strcat(text, "after: 1\n");
    static const struct { const char *tail; int line, col; const char *what; } cases[] = {
        {NULL, 25, 8, "utf.yaml:25:8: yaml: invalid leading UTF-8 octet 0xff"},
        {"x: \"a\x01\"\r\n", 1, 6, "utf.yaml:1:6: yaml: control characters are not allowed (U+0001)"},
        {"x: 1\r\ny: 2\rz: \"\x80\"\n", 3, 5, "utf.yaml:3:5: yaml: invalid leading UTF-8 octet 0x80"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *t = cases[i].tail ? cases[i].tail : text;
        rx_config_errors errs = {0};
        rx_cfg_node *root = NULL;
        cr_expect_eq(rx_yaml_parse_string(t, strlen(t), "utf.yaml", &root, &errs), RX_ERR_CONFIG, "case %zu accepted", i);
        cr_expect_null(root);
        cr_assert_eq(errs.n, 1, "case %zu: %d errors", i, errs.n);
        cr_expect_eq(errs.items[0].line, cases[i].line, "case %zu: %s", i, errs.items[0].message);
        cr_expect_eq(errs.items[0].col, cases[i].col, "case %zu: %s", i, errs.items[0].message);
        cr_expect(strstr(errs.items[0].message, cases[i].what) == errs.items[0].message, "case %zu: %s", i,
                  errs.items[0].message);
        rx_config_errors_clear(&errs);
    }
}

// ---------------------------------------------------------------------------
// sweep axes

Test(config_sweep, ranges_and_lists) {
    rx_config *cfg = resolve_ok(CONFIGS "/good/full.yaml", NULL, 0);
    rx_cfg_node *axis = NULL;
    const rx_cfg_node *sweep = rx_cfg_map_get(cfg->root, "sweep");
    cr_assert_eq(rx_config_sweep_axis(rx_cfg_map_get(sweep, "sampler.steps"), &axis), RX_OK);
    char *t = rx_config_emit_flow(axis);
    cr_assert_str_eq(t, "[10, 20, 30]");
    free(t);
    rx_cfg_free(axis);
    cr_assert_eq(rx_config_sweep_axis(rx_cfg_map_get(sweep, "guidance.scale"), &axis), RX_OK);
    t = rx_config_emit_flow(axis);
    cr_assert_str_eq(t, "[1, 2, 3.5]");
    free(t);
    rx_cfg_free(axis);
    rx_config_free(cfg);
    // float range: 0.1 steps accumulate error; the stop is still included
    rx_config_errors errs = {0};
    rx_cfg_node *r = NULL;
    const char *text = "{start: 0.1, stop: 0.5, step: 0.1}";
    cr_assert_eq(rx_yaml_parse_string(text, strlen(text), "r", &r, &errs), RX_OK);
    cr_assert_eq(rx_config_sweep_axis(r, &axis), RX_OK);
    cr_assert_eq(axis->n, 5);
    t = rx_config_emit_flow(axis);
    cr_assert_str_eq(t, "[0.1, 0.2, 0.30000000000000004, 0.4, 0.5]");
    free(t);
    rx_cfg_free(axis);
    rx_cfg_free(r);
}

// ---------------------------------------------------------------------------
// hooks

static void cfg_needs_classes(const rx_config *cfg, rx_config_errors *errs) {
    const rx_component *g;
    rx_config_section_params(cfg, "guidance", &g, NULL);
    if (g == &c_cfg && rx_param_int(section(cfg, "model"), "num_classes") == 0)
        rx_config_error_at(errs, rx_cfg_path(cfg->root, "guidance"), "guidance: cfg needs a class-conditional model");
}

Test(config_hooks, hook_adds_errors) {
    const char *sets[] = {"guidance.name=cfg"};
    rx_config *cfg = resolve_ok(CONFIGS "/good/minimal.yaml", sets, 1);
    static const rx_validate_hook hooks[] = {cfg_needs_classes, NULL};
    rx_config_errors errs = {0};
    cr_assert_eq(rx_config_run_hooks(cfg, hooks, &errs), RX_ERR_CONFIG);
    cr_assert_eq(errs.n, 1);
    cr_assert(strstr(errs.items[0].message, "<command line>:--set:1:1: guidance: cfg needs"), "%s", errs.items[0].message);
    rx_config_errors_clear(&errs);
    rx_config_free(cfg);
    rx_config *ok = resolve_ok(CONFIGS "/good/full.yaml", NULL, 0);   // num_classes 10
    cr_assert_eq(rx_config_run_hooks(ok, hooks, &errs), RX_OK);
    rx_config_free(ok);
}

// ---------------------------------------------------------------------------
// registry

Test(registry, kinds_and_lookup) {
    cr_assert_eq(rx_kind_from_name("sampler"), RX_KIND_SAMPLER);
    cr_assert_eq(rx_kind_from_name("samplers"), RX_KIND_SAMPLER);
    cr_assert_eq(rx_kind_from_name("LR-Schedules"), RX_KIND_LR_SCHEDULE);
    cr_assert_eq(rx_kind_from_name("features"), RX_KIND_FEATURES);
    cr_assert_eq(rx_kind_from_name("samplerz"), -1);
    cr_assert_str_eq(rx_kind_plural(RX_KIND_METRIC), "metrics");
    cr_assert_eq(rx_registry_find_in(fake_table, RX_KIND_SAMPLER, "ddim"), &c_ddim);
    cr_assert_eq(rx_registry_find_in(fake_table, RX_KIND_SCHEDULE, "ddpm_linear"), &c_linear);
    cr_assert_null(rx_registry_find_in(fake_table, RX_KIND_MODEL, "ddim"));   // wrong kind
    cr_assert_eq(rx_registry_count_in(fake_table, RX_KIND_SAMPLER), 2);
    cr_assert_eq(rx_registry_at_in(fake_table, RX_KIND_SAMPLER, 1), &c_euler);
    cr_assert_null(rx_registry_at_in(fake_table, RX_KIND_SAMPLER, 2));
    cr_assert_eq(rx_registry_count_in(fake_table, -1), 16);
    static const char *const names[] = {"steps", "eta", "timestep_spacing"};
    cr_assert_str_eq(rx_did_you_mean("stpes", names, 3), "steps");
    cr_assert_str_eq(rx_did_you_mean("timestep", names, 3), "timestep_spacing");
    cr_assert_null(rx_did_you_mean("guidance", names, 3));
}

static char *list_to_string(int kind, int markdown) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(rx_registry_list_in(fake_table, f, kind, markdown), RX_OK);
    fclose(f);
    return buf;
}

Test(registry, list_text_and_markdown) {
    char *all = list_to_string(-1, 0);
    cr_assert(strstr(all, "samplers:\n  ddim "), "%s", all);
    cr_assert(strstr(all, "  euler "), "%s", all);
    cr_assert(strstr(all, "blocks:\n  (none registered)\n"), "%s", all);
    free(all);
    char *one = list_to_string(RX_KIND_SAMPLER, 0);
    cr_assert(strstr(one, "ddim — DDIM"), "%s", one);
    cr_assert(strstr(one, "steps    int          default 20       [1, 1000]  model evaluations"), "%s", one);
    cr_assert(strstr(one, "leading|trailing|linspace"), "%s", one);
    cr_assert_null(strstr(one, "tiny"));
    free(one);
    char *components = list_to_string(-1, 1);
    cr_assert(strstr(components, "## samplers\n\n### `ddim`"), "%s", components);
    cr_assert_null(strstr(components, "# Experiment file"), "the schema is rx_reference_markdown's part");
    free(components);
    char *md = NULL;
    size_t md_len = 0;
    FILE *f = open_memstream(&md, &md_len);
    cr_assert_eq(rx_reference_markdown(fake_table, f), RX_OK);
    fclose(f);
    cr_assert(strstr(md, "## samplers\n\n### `ddim`\n\nDDIM \\| deterministic"), "%s", md);
    cr_assert(strstr(md, "| `spacing` | choice | `leading` | leading\\|trailing\\|linspace | timestep spacing |"), "%s", md);
    cr_assert(strstr(md, "| `root` | path | *required* |"), "%s", md);
    cr_assert(strstr(md, "# Experiment file"), "%s", md);
    cr_assert(strstr(md, "| `seed` | `0` |"), "%s", md);
    cr_assert(strstr(md, "### `eval.features` — component (features)"), "%s", md);
    free(md);
}

Test(registry, self_check) {
    rx_config_errors errs = {0};
    cr_assert_eq(rx_registry_check(fake_table, &errs), RX_OK, "%s", rx_last_error());
    static const rx_param_spec broken_params[] = {
        {"steps", RX_P_INT, "0", 1, 10, NULL, "default outside its range"},
        {"mode", RX_P_CHOICE, "a", RX_NO_RANGE, NULL, "choice without choices"},
        {0}};
    static const rx_component broken = {RX_KIND_SAMPLER, "DDIM", "", broken_params, NULL, "euler"};
    static const rx_component *const table[] = {&c_ddim, &c_euler, &broken, NULL};
    cr_assert_eq(rx_registry_check(table, &errs), RX_ERR_CONFIG);
    int saw_name = 0, saw_help = 0, saw_clash = 0, saw_default = 0, saw_choices = 0;
    for (int i = 0; i < errs.n; i++) {
        const char *m = errs.items[i].message;
        saw_name |= strstr(m, "'DDIM': name must be") != NULL;
        saw_help |= strstr(m, "has no help line") != NULL;
        saw_clash |= strstr(m, "clashes with 'euler'") != NULL;
        saw_default |= strstr(m, "bad default: sampler/DDIM: parameter 'steps'") != NULL;
        saw_choices |= strstr(m, "choice parameter 'mode' has no choices") != NULL;
    }
    cr_assert(saw_name && saw_help && saw_clash && saw_default && saw_choices, "%d %d %d %d %d", saw_name, saw_help,
              saw_clash, saw_default, saw_choices);
    rx_config_errors_clear(&errs);
}

Test(registry, real_table_is_consistent) {
    // the components other layers registered: names unique, every default valid
    rx_config_errors errs = {0};
    rx_status st = rx_registry_check(rx_registry_components, &errs);
    if (st != RX_OK) rx_config_errors_print(&errs, stderr);
    cr_assert_eq(st, RX_OK, "%s", rx_last_error());
    rx_config_errors_clear(&errs);
}

/* cuda_graphs changes how the launches are issued, not what they compute: with it on or off a
 * config has the same run identity (so a run resumes either way).
 * Reference: the identity runexp 8a643b4 wrote for the saved config (before the key existed). */
Test(config, cuda_graphs_stays_out_of_the_run_identity) {
    static const char *const sets[2][1] = {{"cuda_graphs=true"}, {"cuda_graphs=false"}};
    for (int k = 0; k < 2; k++) {
        rx_config_errors errs = {0};
        rx_config *cfg = NULL;
        cr_assert_eq(rx_config_resolve(CONFIGS "/saved/reflow_mnist_8a643b4.yaml", sets[k], 1, NULL, &cfg, &errs), RX_OK,
                     "%s", errs.n ? errs.items[0].message : rx_last_error());
        const rx_cfg_node *g = rx_cfg_map_get(cfg->root, "cuda_graphs");
        cr_assert(g && g->text, "the resolved config lacks cuda_graphs");
        cr_expect_str_eq(g->text, k ? "false" : "true");
        char h[17];
        cr_assert_eq(rx_experiment_identity_hash(cfg->root, h), RX_OK);
        cr_expect_str_eq(h, "8e5572d15363a271", "cuda_graphs=%s changed the run identity", k ? "false" : "true");
        rx_config_free(cfg);
        rx_config_errors_clear(&errs);
    }
}

/* `tf32: true|false`, the key before `precision`, is read as precision tf32|fp32, and a config
 * saved by an earlier runexp keeps its run identity, so its run resumes. Reference: the
 * config.yaml and run.json config_hash (8e5572d15363a271) that runexp 8a643b4 wrote for
 * results/reflow_mnist/0001-8e5572d1, copied to tests/configs/saved/. */
Test(config, the_old_tf32_key_is_read_as_precision_and_old_runs_keep_their_identity) {
    rx_config_errors errs = {0};
    rx_config *cfg = NULL;
    cr_assert_eq(rx_config_resolve(CONFIGS "/good/tf32_old_key.yaml", NULL, 0, fake_table, &cfg, &errs), RX_OK, "%s",
                 errs.n ? errs.items[0].message : rx_last_error());
    const rx_cfg_node *p = rx_cfg_map_get(cfg->root, "precision");
    cr_assert(p && p->text);
    cr_expect_str_eq(p->text, "fp32");
    cr_expect_null(rx_cfg_map_get(cfg->root, "tf32"));
    rx_config_free(cfg);
    rx_config_errors_clear(&errs);

    cr_assert_eq(rx_config_resolve(CONFIGS "/saved/reflow_mnist_8a643b4.yaml", NULL, 0, NULL, &cfg, &errs), RX_OK, "%s",
                 errs.n ? errs.items[0].message : rx_last_error());
    cr_expect_str_eq(rx_cfg_map_get(cfg->root, "precision")->text, "tf32");
    char h[17];
    cr_assert_eq(rx_experiment_identity_hash(cfg->root, h), RX_OK);
    cr_expect_str_eq(h, "8e5572d15363a271", "the saved config's identity changed: its run would not resume");
    rx_config_free(cfg);
    rx_config_errors_clear(&errs);
}
