/* schema.c — the experiment file's schema and the checker that resolves a config tree
 * against it and the registry.
 *
 * One mechanism everywhere: the top-level scalars and the train / sample / eval
 * sections are rx_param_spec tables like any component's, so the same code checks
 * types and ranges, fills defaults, prints `runexp list` and writes the docs.
 *
 * The checker walks the schema (not the file), so the resolved tree comes out in
 * schema order with every default present, whatever order the file used. It never
 * stops at the first problem: every error is appended to the list and checking goes
 * on with the next key. */
#include "registry/registry.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// the schema

static const rx_param_spec top_params[] = {
    {"experiment", RX_P_STRING, NULL, RX_NO_RANGE, NULL,
     "experiment name; results go to results/<experiment>/ (letters, digits, . _ -); defaults to the file's stem"},
    {"seed", RX_P_INT, "0", 0, 9007199254740991.0, NULL,
     "seed of every random stream (Philox); noise for image i at step t depends on (seed, i, t) only"},
    {"backend", RX_P_CHOICE, "auto", RX_NO_RANGE, "auto|cpu|cuda",
     "auto = CUDA when a device answers, else CPU; cuda without a device is an error"},
    {"device_id", RX_P_INT, "0", 0, 255, NULL, "CUDA device index"},
    {"deterministic", RX_P_BOOL, "false", RX_NO_RANGE, NULL,
     "bit-reproducible GPU kernels (slower); the CPU backend is always deterministic"},
    {"precision", RX_P_CHOICE, "tf32", RX_NO_RANGE, "fp32|tf32|bf16",
     "GPU matmul/conv math: fp32 (FMA, no tensor cores), tf32 (TF32 tensor cores, Ampere and newer) or bf16 "
     "(bf16 tensor-core inputs with fp32 accumulation; weights, optimizer state, EMA, normalisation and "
     "activations stay fp32); the CPU backend computes in fp32 whatever this says"},
    {"cuda_graphs", RX_P_BOOL, "false", RX_NO_RANGE, NULL,
     "CUDA graphs: capture the training step after one eager warm-up step and the sampler's network call, then "
     "replay them (one launch instead of thousands); bit-identical to eager, so not part of the run's identity. "
     "Steps that cannot be captured run eagerly, saying why in log.txt; the CPU backend has no graphs and says so"},
    {"threads", RX_P_INT, "0", 0, 4096, NULL, "CPU threads for OpenMP / OpenBLAS; 0 = all cores"},
    {"init", RX_P_PATH, "null", RX_NO_RANGE, NULL,
     "checkpoint (.safetensors) to start from; with train: null, sample/evaluate a trained model. Diffusers "
     "weights with a config.json beside them also give the model's keys (see the model's weights)"},
    {0},
};

static const rx_param_spec train_params[] = {
    {"steps", RX_P_INT, "10000", 1, 1e12, NULL, "optimizer steps"},
    {"batch_size", RX_P_INT, "64", 1, 1048576, NULL, "images per step"},
    {"ema_decay", RX_P_FLOAT, "0.9999", 0, 1, NULL, "EMA of the weights: ema = d*ema + (1-d)*w; 0 = EMA equals the weights"},
    {"ema_start", RX_P_INT, "0", 0, 1e12, NULL, "step from which the EMA is updated (copied from the weights before)"},
    {"log_every", RX_P_INT, "100", 1, 1e12, NULL, "steps between metrics.jsonl lines"},
    {"checkpoint_every", RX_P_INT, "5000", 0, 1e12, NULL, "steps between checkpoints; 0 = only at the end"},
    {"sample_every", RX_P_INT, "0", 0, 1e12, NULL,
     "steps between preview grids of the sample stage's images (samples/grid_stepNNNNNN.png; TensorBoard's samples/grid); "
     "0 = none during training"},
    {"max_minutes", RX_P_FLOAT, "0", 0, 1e9, NULL,
     "stop after this many minutes of training (as Lightning's max_time): checkpoint, then sample and evaluate; "
     "0 = run all steps"},
    {"num_workers", RX_P_INT, "2", 0, 256, NULL, "data-loading threads; 0 = load in the training thread"},
    {"gradient_checkpointing", RX_P_BOOL, "false", RX_NO_RANGE, NULL,
     "recompute each ResNet, attention and transformer block's forward during backward (diffusers' "
     "enable_gradient_checkpointing): the step keeps only block inputs and outputs, for one more forward; "
     "gradients unchanged"},
    {0},
};

static const rx_param_spec sample_params[] = {
    {"num_images", RX_P_INT, "64", 1, 1e8, NULL, "images to generate"},
    {"batch_size", RX_P_INT, "64", 1, 1048576, NULL, "images per sampler call"},
    {"use_ema", RX_P_BOOL, "true", RX_NO_RANGE, NULL, "sample with the EMA weights (false: the raw weights)"},
    {"grid_rows", RX_P_INT, "0", 0, 65536, NULL,
     "rows of the PNG grid; 0 = one row per class when class-conditional, else a square grid"},
    {"class_labels", RX_P_INT_LIST, "null", 0, 1e9, NULL,
     "labels to sample, cycled over the images; null = every class in turn (class-conditional) or none"},
    {"precision", RX_P_CHOICE, "null", RX_NO_RANGE, "fp32|tf32|bf16",
     "math of the sampler's network calls (as the top-level precision); null = the top-level precision"},
    {"model", RX_P_STRING, "teacher", RX_NO_RANGE, NULL,
     "which model the sample and eval stages use: teacher (the trained model), reflow<k> (after reflow round k, "
     "k <= reflow.rounds) or distill (the 1-step distillation); a reflowed or distilled model is sampled without "
     "guidance, which its pairs already carry (reflow.guidance)"},
    {0},
};

static const rx_param_spec eval_params[] = {
    {"num_images", RX_P_INT, "10000", 1, 1e8, NULL, "generated images whose features are compared to the reference"},
    {"reference_split", RX_P_CHOICE, "train", RX_NO_RANGE, "train|test", "dataset split giving the reference statistics"},
    {"batch_size", RX_P_INT, "250", 1, 1048576, NULL, "images per feature-extractor call"},
    {"floor", RX_P_BOOL, "false", RX_NO_RANGE, NULL,
     "also compute each metric between two disjoint sets of real images of the same size (the other split's first "
     "num_images against the reference): the finite-sample floor no generator goes below, recorded as eval.json's floor"},
    {0},
};

/* rectified-flow reflow and 1-step distillation (Liu, Gong, Liu 2022; runner/reflow.c) */
static const rx_param_spec reflow_params[] = {
    {"rounds", RX_P_INT, "1", 1, 9, NULL,
     "reflow rounds: round k draws pairs from model k-1 (the teacher is model 0) and trains model k, initialised "
     "from model k-1, on them"},
    {"pairs", RX_P_INT, "10000", 1, 1e8, NULL, "(noise, sample) pairs drawn from the model of each round"},
    {"pairs_batch_size", RX_P_INT, "250", 1, 1048576, NULL, "images per sampler call when drawing pairs"},
    {"steps", RX_P_INT, "2000", 1, 1e12, NULL, "optimizer steps of each reflow round (train's log/checkpoint/EMA settings)"},
    {"batch_size", RX_P_INT, "64", 1, 1048576, NULL, "pairs per reflow or distillation step"},
    {"lr", RX_P_FLOAT, "0", 0, 10, NULL, "learning rate of the reflow and distillation steps; 0 = optimizer.lr"},
    {"distill_steps", RX_P_INT, "0", 0, 1e12, NULL,
     "optimizer steps of the 1-step distillation on the last round's pairs (model time fixed at pure noise); "
     "0 = no distillation"},
    {0},
};

static const rx_section_spec reflow_children[] = {
    {"sampler", RX_SECTION_COMPONENT, RX_KIND_SAMPLER, NULL, NULL, "flow_euler", 0,
     "the ODE sampler that draws the pairs (a flow sampler: deterministic given the noise)"},
    {"guidance", RX_SECTION_COMPONENT, RX_KIND_GUIDANCE, NULL, NULL, "none", 0,
     "guidance of the model drawing the pairs; the students learn the guided flow"},
    {0},
};

/* latent diffusion (Rombach et al. 2022): the model denoises a VAE's latents; see runner/latent.c */
static const rx_param_spec latent_params[] = {
    {"scaling_factor", RX_P_FLOAT, "0.18215", 1e-6, 1e6, NULL,
     "the model trains on z * scaling_factor and samples are decoded from z / scaling_factor (SD 1.x VAE: 0.18215, "
     "which brings its latents to about unit variance)"},
    {"sample_posterior", RX_P_BOOL, "true", RX_NO_RANGE, NULL,
     "encode each image to a draw z = mean + std * eps of its posterior (eps keyed by (seed, image index): the same on "
     "every run); false: the posterior mean"},
    {"batch_size", RX_P_INT, "64", 1, 1048576, NULL, "images per VAE encode / decode call"},
    {0},
};

static const rx_section_spec latent_children[] = {
    {"vae", RX_SECTION_COMPONENT, RX_KIND_MODEL, NULL, NULL, NULL, 0,
     "the autoencoder (a model with an encoder and a decoder: autoencoder_kl) and its weights"},
    {0},
};

/* what a run writes besides log.txt and metrics.jsonl; not part of the run's hash (what it
 * computes), so switching it never changes a run's identity (experiment.c) */
static const rx_param_spec log_params[] = {
    {"tensorboard", RX_P_BOOL, "false", RX_NO_RANGE, NULL,
     "also write events.out.tfevents.* in the run directory: each metrics.jsonl column as a train/ scalar, "
     "each eval metric as an eval/ scalar, the sample grid and the resolved config (tensorboard --logdir results/)"},
    {0},
};

static const rx_section_spec eval_children[] = {
    {"features", RX_SECTION_COMPONENT, RX_KIND_FEATURES, NULL, NULL, NULL, 1,
     "feature extractor whose statistics the metrics compare; null for classifier runs (they report test accuracy)"},
    {"metrics", RX_SECTION_COMPONENT_LIST, RX_KIND_METRIC, NULL, NULL, NULL, 0, "metrics computed on the features"},
    {0},
};

static const rx_section_spec top_children[] = {
    {"dataset", RX_SECTION_COMPONENT, RX_KIND_DATASET, NULL, NULL, NULL, 0, "training images (and eval reference)"},
    {"transforms", RX_SECTION_COMPONENT_LIST, RX_KIND_TRANSFORM, NULL, NULL, NULL, 0,
     "applied in order to each training image; default none"},
    {"model", RX_SECTION_COMPONENT, RX_KIND_MODEL, NULL, NULL, NULL, 0, "the denoising network"},
    {"latent", RX_SECTION_PARAMS, 0, latent_params, latent_children, "null", 1,
     "latent diffusion: the training images are encoded once by latent.vae (cached), the model denoises latents and "
     "samples are decoded to images for grids and eval; absent or null = pixel space"},
    {"schedule", RX_SECTION_COMPONENT, RX_KIND_SCHEDULE, NULL, NULL, "linear", 0, "noise schedule"},
    {"objective", RX_SECTION_COMPONENT, RX_KIND_OBJECTIVE, NULL, NULL, "ddpm", 0, "training objective"},
    {"optimizer", RX_SECTION_COMPONENT, RX_KIND_OPTIMIZER, NULL, NULL, "adamw", 0, "optimizer"},
    {"lr_schedule", RX_SECTION_COMPONENT, RX_KIND_LR_SCHEDULE, NULL, NULL, "constant", 0, "learning-rate schedule"},
    {"sampler", RX_SECTION_COMPONENT, RX_KIND_SAMPLER, NULL, NULL, "ddim", 0, "sampler used by the sample and eval stages"},
    {"guidance", RX_SECTION_COMPONENT, RX_KIND_GUIDANCE, NULL, NULL, "none", 0, "guidance (none, classifier-free)"},
    {"train", RX_SECTION_PARAMS, 0, train_params, NULL, NULL, 1, "training stage; null = no training (use init)"},
    {"sample", RX_SECTION_PARAMS, 0, sample_params, NULL, NULL, 1, "sampling stage; null = no samples"},
    {"eval", RX_SECTION_PARAMS, 0, eval_params, eval_children, "null", 1, "evaluation stage; absent or null = none"},
    {"reflow", RX_SECTION_PARAMS, 0, reflow_params, reflow_children, "null", 1,
     "rectified-flow reflow rounds and 1-step distillation after training (a flow_matching objective); "
     "absent or null = none"},
    {"log", RX_SECTION_PARAMS, 0, log_params, NULL, NULL, 0, "what a run logs besides log.txt and metrics.jsonl"},
    {"sweep", RX_SECTION_SWEEP, 0, NULL, NULL, "null", 1,
     "grid over keys: {\"guidance.scale\": [1, 2, 3], \"sampler.steps\": {start: 10, stop: 50, step: 10}}"},
    {0},
};

const rx_section_spec rx_experiment_schema = {
    "", RX_SECTION_PARAMS, 0, top_params, top_children, NULL, 0, "an experiment file"};


// ---------------------------------------------------------------------------
// helpers

typedef struct {
    const rx_component *const *table;
    rx_config          *cfg;
    rx_config_errors   *errs;
    int                 oom;
} vctx;

static rx_params *params_blank(const char *label, const rx_param_spec *spec) {
    rx_params *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->spec = spec;
    p->n = rx_param_spec_count(spec);
    p->component = strdup(label);
    p->values = calloc(p->n > 0 ? (size_t)p->n : 1, sizeof *p->values);
    if (!p->component || !p->values) { rx_params_free(p); return NULL; }
    return p;
}

static const char *label_of(const char *path) { return path[0] ? path : "top level"; }

static char *join_path(const char *parent, const char *key) {
    size_t len = strlen(parent) + strlen(key) + 2;
    char *s = malloc(len);
    if (s) snprintf(s, len, "%s%s%s", parent, parent[0] ? "." : "", key);
    return s;
}

static const char *noun(const rx_cfg_node *n) {
    if (!n) return "nothing";
    if (n->type == RX_CFG_MAP) return "a mapping";
    if (n->type == RX_CFG_SEQ) return "a list";
    return rx_cfg_is_null(n) ? "null" : "a scalar";
}

static rx_cfg_node *null_at(const rx_cfg_node *at) {
    return rx_cfg_new_scalar("null", 0, at ? at->file : NULL, at ? at->line : 0, at ? at->col : 0);
}

static rx_cfg_node *key_like(const rx_cfg_node *src_map, const char *key) {
    int i = rx_cfg_map_find(src_map, key);
    if (i >= 0) return rx_cfg_clone(src_map->keys[i]);
    return rx_cfg_new_scalar(key, 0, NULL, 0, 0);
}

static void put(vctx *c, rx_cfg_node *map, rx_cfg_node *key, rx_cfg_node *value) {
    if (rx_cfg_map_put(map, key, value) != RX_OK) c->oom = 1;
}

static void add_section(vctx *c, const char *path, const rx_component *comp, rx_params *p) {
    rx_config *cfg = c->cfg;
    rx_config_section *grown = realloc(cfg->sections, (size_t)(cfg->nsections + 1) * sizeof *grown);
    char *pc = strdup(path);
    if (!grown || !pc) {
        if (grown) cfg->sections = grown;
        free(pc);
        rx_params_free(p);
        c->oom = 1;
        return;
    }
    cfg->sections = grown;
    cfg->sections[cfg->nsections++] = (rx_config_section){pc, comp, p};
}

static const rx_config_section *find_section(const rx_config *cfg, const char *path) {
    for (int i = 0; i < cfg->nsections; i++)
        if (strcmp(cfg->sections[i].path, path) == 0) return &cfg->sections[i];
    return NULL;
}

// "a, b, c" of the registered names of a kind, for messages.
static void known_names(const vctx *c, rx_kind kind, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = 0;
    int n = rx_registry_count_in(c->table, kind);
    if (n == 0) { snprintf(buf, len, "none registered"); return; }
    for (int i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", rx_registry_at_in(c->table, kind, i)->name);
}

// The typed value as a canonical scalar node: what the resolved config stores and emits.
static rx_cfg_node *typed_scalar(rx_param_type et, int64_t i, double f, const char *s, const rx_cfg_node *at) {
    char buf[40];
    const char *file = at ? at->file : NULL;
    int line = at ? at->line : 0, col = at ? at->col : 0;
    switch (et) {
    case RX_P_INT: snprintf(buf, sizeof buf, "%lld", (long long)i); return rx_cfg_new_scalar(buf, 0, file, line, col);
    case RX_P_FLOAT: rx_config_format_float(f, buf, sizeof buf); return rx_cfg_new_scalar(buf, 0, file, line, col);
    case RX_P_BOOL: return rx_cfg_new_scalar(i ? "true" : "false", 0, file, line, col);
    default: return rx_cfg_new_scalar(s ? s : "", 1, file, line, col);   // a string: emitted quoted when needed
    }
}

static rx_cfg_node *value_node(const rx_param_spec *sp, const rx_value *v, const rx_cfg_node *at) {
    if (v->is_null) return null_at(at);
    switch (sp->type) {
    case RX_P_INT_LIST:
    case RX_P_FLOAT_LIST:
    case RX_P_STRING_LIST: {
        rx_cfg_node *seq = rx_cfg_new_seq(at ? at->file : NULL, at ? at->line : 0, at ? at->col : 0);
        rx_param_type et = sp->type == RX_P_INT_LIST ? RX_P_INT : sp->type == RX_P_FLOAT_LIST ? RX_P_FLOAT : RX_P_STRING;
        for (int k = 0; seq && k < v->n; k++) {
            const rx_cfg_node *item_at = at && at->type == RX_CFG_SEQ && k < at->n ? at->items[k] : at;
            rx_cfg_node *item = typed_scalar(et, v->ints ? v->ints[k] : 0, v->floats ? v->floats[k] : 0,
                                         v->strs ? v->strs[k] : NULL, item_at);
            if (rx_cfg_seq_push(seq, item) != RX_OK) { rx_cfg_free(seq); return NULL; }
        }
        return seq;
    }
    default: return typed_scalar(sp->type, v->i, v->f, v->s, at);
    }
}

// An error inside a list ("element 2: ...") points at that element.
static const rx_cfg_node *error_node(const rx_cfg_node *v, const char *msg) {
    const char *e = strstr(msg, "element ");
    if (v->type == RX_CFG_SEQ && e) {
        int k = atoi(e + 8);
        if (k >= 0 && k < v->n) return v->items[k];
    }
    return v;
}

// `tf32: true|false`, the key earlier runexps took, is read as `precision: tf32|fp32`, so every
// saved config of an old run still loads, reproduces and resumes (the run's identity maps it back:
// runner/experiment.c). The node is renamed in place and keeps its position for errors; both keys
// at once is an error, as is a value that is not a boolean.
static void upgrade_tf32_key(rx_cfg_node *tree, rx_config_errors *errs) {
    int i = rx_cfg_map_find(tree, "tf32");
    if (i < 0) return;
    rx_cfg_node *key = tree->keys[i], *v = tree->items[i];
    if (rx_cfg_map_find(tree, "precision") >= 0) {
        rx_config_error_at(errs, key, "top level: 'tf32' (the earlier name) and 'precision' both given: keep only "
                                      "precision (tf32: true -> precision: tf32, tf32: false -> precision: fp32)");
        rx_cfg_map_remove(tree, i);   /* said once: not again as an unknown key */
        return;
    }
    const int on = v->type == RX_CFG_SCALAR && !v->quoted && v->text && !strcmp(v->text, "true");
    const int off = v->type == RX_CFG_SCALAR && !v->quoted && v->text && !strcmp(v->text, "false");
    if (!on && !off) {
        rx_config_error_at(errs, v, "top level: 'tf32' (now 'precision') expects true or false, got %s%s%s", noun(v),
                           v->type == RX_CFG_SCALAR ? " " : "", v->type == RX_CFG_SCALAR && v->text ? v->text : "");
        rx_cfg_map_remove(tree, i);
        return;
    }
    char *k = strdup("precision"), *t = strdup(on ? "tf32" : "fp32");
    if (!k || !t) { free(k); free(t); return; }   /* out of memory: the key stays and is reported as unknown */
    free(key->text);
    key->text = k;
    free(v->text);
    v->text = t;
}

// Keys of src that are neither parameters, child sections nor (for components) `name`.
static void check_keys(vctx *c, const char *label, const rx_cfg_node *src, const rx_param_spec *params,
                       const rx_section_spec *children, int is_component, int is_top) {
    if (!src || src->type != RX_CFG_MAP) return;
    const char *names[256];
    int n = 0;
    if (is_component) names[n++] = "name";
    for (int k = 0; params && params[k].name && n < 256; k++) names[n++] = params[k].name;
    for (int k = 0; children && children[k].key && n < 256; k++) names[n++] = children[k].key;
    for (int i = 0; i < src->n; i++) {
        const char *key = src->keys[i]->text;
        int known = is_top && !strcmp(key, "base");
        for (int k = 0; k < n && !known; k++) known = !strcmp(key, names[k]);
        if (known) continue;
        const char *what = children ? "key" : "parameter";
        const char *hint = rx_did_you_mean(key, names, n);
        if (hint) {
            rx_config_error_at(c->errs, src->keys[i], "%s: unknown %s '%s' (did you mean '%s'?)", label, what, key, hint);
        } else {
            char list[1024] = "";
            size_t used = 0;
            for (int k = 0; k < n && used < sizeof list; k++)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", k ? ", " : "", names[k]);
            rx_config_error_at(c->errs, src->keys[i], "%s: unknown %s '%s' (valid: %s)", label, what, key,
                               n ? list : "none");
        }
    }
}

// Every parameter of spec, from src when given there, else its default, in spec order.
// Appends to res; *out gets the checked parameter set.
static void resolve_params(vctx *c, const char *label, const rx_param_spec *spec, const rx_cfg_node *src,
                           const rx_cfg_node *where, rx_cfg_node *res, rx_params **out) {
    *out = NULL;
    rx_params *p = params_blank(label, spec);
    if (!p) { c->oom = 1; return; }
    for (int k = 0; k < p->n; k++) {
        const rx_param_spec *sp = &spec[k];
        const rx_cfg_node *v = src && src->type == RX_CFG_MAP ? rx_cfg_map_get(src, sp->name) : NULL;
        rx_cfg_node *resolved = NULL;
        if (v) {
            char *text = rx_config_emit_flow(v);
            if (!text) { c->oom = 1; break; }
            rx_status st = rx_params_set(p, sp->name, text);
            free(text);
            if (st == RX_OK) {
                resolved = value_node(sp, &p->values[k], v);
            } else {
                if (st == RX_ERR_OOM) c->oom = 1;
                rx_config_error_at(c->errs, error_node(v, rx_last_error()), "%s", rx_last_error());
                resolved = rx_cfg_clone(v);
            }
        } else if (sp->def) {
            if (rx_params_set(p, sp->name, sp->def) == RX_OK) resolved = value_node(sp, &p->values[k], NULL);
            else rx_config_error_at(c->errs, where, "%s: bad default in the parameter table: %s", label, rx_last_error());
            if (!resolved) resolved = rx_cfg_new_scalar(sp->def, 0, NULL, 0, 0);
        } else {
            rx_config_error_at(c->errs, where, "%s: missing required parameter '%s' (%s%s%s)", label, sp->name,
                               sp->type == RX_P_PATH ? "a path" : sp->type == RX_P_STRING ? "a string" : "a value",
                               sp->help ? ": " : "", sp->help ? sp->help : "");
            resolved = null_at(where);
        }
        put(c, res, key_like(src && src->type == RX_CFG_MAP ? src : NULL, sp->name), resolved);
    }
    *out = p;
}

// ---------------------------------------------------------------------------
// sections

static rx_cfg_node *resolve_section(vctx *c, const rx_section_spec *sec, const char *path, const rx_cfg_node *src,
                                const rx_cfg_node *where);
static rx_cfg_node *resolve_sweep(vctx *c, const rx_cfg_node *src, const rx_cfg_node *root);

static rx_cfg_node *resolve_component(vctx *c, const rx_section_spec *sec, const char *path, const rx_cfg_node *src,
                                  const rx_cfg_node *where) {
    const char *label = label_of(path), *kind = rx_kind_name(sec->kind);
    char known[1024];
    const rx_cfg_node *src_map = NULL, *name_node = NULL;
    const char *name = NULL;
    if (sec->nullable && (!src || rx_cfg_is_null(src))) return null_at(src ? src : where);   /* optional component */
    if (!src) {
        if (!sec->def) {
            known_names(c, sec->kind, known, sizeof known);
            rx_config_error_at(c->errs, where, "%s: missing required section (%s: {name: <%s>, ...}; one of: %s)",
                               label, sec->key, kind, known);
            return null_at(where);
        }
        name = sec->def;
    } else if (src->type == RX_CFG_SCALAR && !rx_cfg_is_null(src)) {
        name = src->text;   // `sampler: ddim` is short for {name: ddim}
        name_node = src;
    } else if (src->type == RX_CFG_MAP) {
        src_map = src;
        name_node = rx_cfg_map_get(src, "name");
        if (!name_node && sec->def) {
            name = sec->def;   // `sampler: {steps: 50}`: the default sampler with steps 50
        } else if (!name_node || name_node->type != RX_CFG_SCALAR || rx_cfg_is_null(name_node)) {
            known_names(c, sec->kind, known, sizeof known);
            rx_config_error_at(c->errs, name_node ? name_node : where, "%s: %s 'name' (the %s to use; one of: %s)", label,
                               name_node ? "expected a component name in" : "missing", kind, known);
            return rx_cfg_clone(src);
        } else {
            name = name_node->text;
        }
    } else {
        known_names(c, sec->kind, known, sizeof known);
        rx_config_error_at(c->errs, src, "%s: expected {name: <%s>, ...}, got %s (one of: %s)", label, kind, noun(src), known);
        return rx_cfg_clone(src);
    }

    const rx_component *comp = rx_registry_find_in(c->table, sec->kind, name);
    if (!comp) {
        const char *names[512];
        int n = rx_registry_count_in(c->table, sec->kind);
        if (n > 512) n = 512;
        for (int i = 0; i < n; i++) names[i] = rx_registry_at_in(c->table, sec->kind, i)->name;
        const char *hint = rx_did_you_mean(name, names, n);
        known_names(c, sec->kind, known, sizeof known);
        if (!name_node)
            rx_config_error_at(c->errs, src ? src : where, "%s: the default %s '%s' is not registered; set %s.name (one of: %s)",
                               label, kind, name, path, known);
        else if (hint)
            rx_config_error_at(c->errs, name_node, "%s: unknown %s '%s' (did you mean '%s'?)", label, kind, name, hint);
        else
            rx_config_error_at(c->errs, name_node, "%s: unknown %s '%s' (one of: %s)", label, kind, name, known);
        return src ? rx_cfg_clone(src) : null_at(where);
    }

    check_keys(c, label, src_map, comp->params, NULL, 1, 0);
    const rx_cfg_node *at = src ? src : where;
    rx_cfg_node *res = rx_cfg_new_map(at ? at->file : NULL, at ? at->line : 0, at ? at->col : 0);
    if (!res) { c->oom = 1; return NULL; }
    // the canonical name, even when the file used an alias
    put(c, res, key_like(src_map, "name"), rx_cfg_new_scalar(comp->name, 1, name_node ? name_node->file : NULL,
                                                              name_node ? name_node->line : 0, name_node ? name_node->col : 0));
    rx_params *p = NULL;
    resolve_params(c, label, comp->params, src_map, where, res, &p);
    if (p) {
        char *full = malloc(strlen(kind) + strlen(comp->name) + 2);
        if (full) {
            sprintf(full, "%s/%s", kind, comp->name);
            free((void *)p->component);
            p->component = full;
        }
        add_section(c, path, comp, p);
    }
    return res;
}

static rx_cfg_node *resolve_component_list(vctx *c, const rx_section_spec *sec, const char *path, const rx_cfg_node *src,
                                       const rx_cfg_node *where) {
    const rx_cfg_node *at = src ? src : where;
    rx_cfg_node *res = rx_cfg_new_seq(at ? at->file : NULL, at ? at->line : 0, at ? at->col : 0);
    if (!res) { c->oom = 1; return NULL; }
    if (!src || rx_cfg_is_null(src)) return res;   // none
    if (src->type != RX_CFG_SEQ) {
        rx_config_error_at(c->errs, src, "%s: expected a list of {name: <%s>, ...} entries, got %s", label_of(path),
                           rx_kind_name(sec->kind), noun(src));
        return res;
    }
    rx_section_spec item = *sec;
    item.form = RX_SECTION_COMPONENT;
    item.def = NULL;
    for (int i = 0; i < src->n; i++) {
        char ipath[512];
        snprintf(ipath, sizeof ipath, "%s[%d]", path, i);
        rx_cfg_node *r = resolve_component(c, &item, ipath, src->items[i], src->items[i]);
        if (!r || rx_cfg_seq_push(res, r) != RX_OK) c->oom = 1;
    }
    return res;
}

static rx_cfg_node *resolve_params_section(vctx *c, const rx_section_spec *sec, const char *path, const rx_cfg_node *src,
                                       const rx_cfg_node *where) {
    const char *label = label_of(path);
    const rx_cfg_node *src_map = NULL;
    if (!src) {
        if (sec->def && !strcmp(sec->def, "null")) return null_at(where);
    } else if (rx_cfg_is_null(src)) {
        if (sec->nullable) return null_at(src);
        rx_config_error_at(c->errs, src, "%s: may not be null (expected a mapping)", label);
    } else if (src->type != RX_CFG_MAP) {
        rx_config_error_at(c->errs, src, "%s: expected a mapping%s, got %s", label, sec->nullable ? " or null" : "",
                           noun(src));
        return rx_cfg_clone(src);
    } else {
        src_map = src;
    }
    check_keys(c, label, src_map, sec->params, sec->children, 0, path[0] == 0);
    const rx_cfg_node *at = src ? src : where;
    rx_cfg_node *res = rx_cfg_new_map(at ? at->file : NULL, at ? at->line : 0, at ? at->col : 0);
    if (!res) { c->oom = 1; return NULL; }
    rx_params *p = NULL;
    resolve_params(c, label, sec->params, src_map, at, res, &p);
    if (p) add_section(c, path, NULL, p);
    for (int k = 0; sec->children && sec->children[k].key; k++) {
        const rx_section_spec *child = &sec->children[k];
        const rx_cfg_node *csrc = src_map ? rx_cfg_map_get(src_map, child->key) : NULL;
        rx_cfg_node *r;
        if (child->form == RX_SECTION_SWEEP) {
            r = resolve_sweep(c, csrc, res);   // last child: every section it may name is resolved
        } else {
            char *cpath = join_path(path, child->key);
            if (!cpath) { c->oom = 1; break; }
            int ki = rx_cfg_map_find(src_map, child->key);   // errors about the whole section point at its key
            r = resolve_section(c, child, cpath, csrc, ki >= 0 ? src_map->keys[ki] : where);
            free(cpath);
        }
        if (!r) { c->oom = 1; break; }
        put(c, res, key_like(src_map, child->key), r);
    }
    return res;
}

static rx_cfg_node *resolve_section(vctx *c, const rx_section_spec *sec, const char *path, const rx_cfg_node *src,
                                const rx_cfg_node *where) {
    switch (sec->form) {
    case RX_SECTION_PARAMS: return resolve_params_section(c, sec, path, src, where);
    case RX_SECTION_COMPONENT: return resolve_component(c, sec, path, src, where);
    case RX_SECTION_COMPONENT_LIST: return resolve_component_list(c, sec, path, src, where);
    case RX_SECTION_SWEEP: return null_at(where);   // only at the top level (resolve_params_section)
    }
    return NULL;
}

// ---------------------------------------------------------------------------
// sweep

static int plain_int(const rx_cfg_node *n, long long *out) {
    if (n->type != RX_CFG_SCALAR || n->quoted || !*n->text) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(n->text, &end, 10);
    if (*end || errno) return 0;
    *out = v;
    return 1;
}

static int plain_number(const rx_cfg_node *n, double *out) {
    if (n->type != RX_CFG_SCALAR || n->quoted || !*n->text) return 0;
    const char *s = n->text;
    for (const char *q = s; *q; q++)
        if (!strchr("0123456789+-.eE", *q)) return 0;   // no inf, nan, hex
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

rx_status rx_config_sweep_axis(const rx_cfg_node *value, rx_cfg_node **list_out) {
    *list_out = NULL;
    if (!value) return rx_fail(RX_ERR_CONFIG, "expected a list of values or {start, stop, step}, got nothing");
    if (value->type == RX_CFG_SEQ) {
        if (value->n == 0) return rx_fail(RX_ERR_CONFIG, "an empty list of values");
        if (!(*list_out = rx_cfg_clone(value))) return rx_fail(RX_ERR_OOM, "sweep: out of memory");
        return RX_OK;
    }
    if (value->type != RX_CFG_MAP)
        return rx_fail(RX_ERR_CONFIG, "expected a list of values or {start, stop, step}, got %s", noun(value));
    static const char *const keys[3] = {"start", "stop", "step"};
    const rx_cfg_node *kn[3];
    double v[3];
    long long iv[3];
    int all_int = 1;
    for (int i = 0; i < value->n; i++)
        if (strcmp(value->keys[i]->text, "start") && strcmp(value->keys[i]->text, "stop") && strcmp(value->keys[i]->text, "step"))
            return rx_fail(RX_ERR_CONFIG, "unknown key '%s' in a range (expected start, stop, step)", value->keys[i]->text);
    for (int k = 0; k < 3; k++) {
        kn[k] = rx_cfg_map_get(value, keys[k]);
        if (!kn[k]) return rx_fail(RX_ERR_CONFIG, "a range needs start, stop and step ('%s' is missing)", keys[k]);
        if (!plain_number(kn[k], &v[k])) return rx_fail(RX_ERR_CONFIG, "range %s: expected a number, got '%s'", keys[k],
                                                        kn[k]->type == RX_CFG_SCALAR ? kn[k]->text : noun(kn[k]));
        all_int &= plain_int(kn[k], &iv[k]);
    }
    if (v[2] == 0) return rx_fail(RX_ERR_CONFIG, "range step must not be 0");
    double span = (v[1] - v[0]) / v[2];
    if (span < -1e-9) return rx_fail(RX_ERR_CONFIG, "range: stop %g cannot be reached from start %g with step %g", v[1], v[0], v[2]);
    double count = floor(span + 1e-9) + 1;
    if (count > 10000) return rx_fail(RX_ERR_CONFIG, "range has %.0f points (at most 10000)", count);
    rx_cfg_node *seq = rx_cfg_new_seq(value->file, value->line, value->col);
    for (int k = 0; seq && k < (int)count; k++) {
        char buf[40];
        if (all_int) snprintf(buf, sizeof buf, "%lld", iv[0] + (long long)k * iv[2]);
        else rx_config_format_float(v[0] + k * v[2], buf, sizeof buf);
        if (rx_cfg_seq_push(seq, rx_cfg_new_scalar(buf, 0, value->file, value->line, value->col)) != RX_OK) {
            rx_cfg_free(seq);
            seq = NULL;
        }
    }
    if (!seq) return rx_fail(RX_ERR_OOM, "sweep: out of memory");
    *list_out = seq;
    return RX_OK;
}

// Every "section.parameter" path of the resolved config, for sweep hints.
static int sweepable_paths(const rx_config *cfg, char ***out) {
    int n = 0, cap = 0;
    char **list = NULL;
    for (int s = 0; s < cfg->nsections; s++) {
        const rx_config_section *sec = &cfg->sections[s];
        for (int k = -1; k < sec->params->n; k++) {
            if (k < 0 && !sec->comp) continue;
            const char *pname = k < 0 ? "name" : sec->params->spec[k].name;
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                char **g = realloc(list, (size_t)cap * sizeof *g);
                if (!g) goto done;
                list = g;
            }
            if (!(list[n] = join_path(sec->path, pname))) goto done;
            n++;
        }
    }
done:
    *out = list;
    return n;
}

static rx_cfg_node *resolve_sweep(vctx *c, const rx_cfg_node *src, const rx_cfg_node *root) {
    (void)root;
    if (!src || rx_cfg_is_null(src)) return null_at(src);
    if (src->type != RX_CFG_MAP) {
        rx_config_error_at(c->errs, src, "sweep: expected a mapping of key: [values] or key: {start, stop, step}, got %s",
                           noun(src));
        return rx_cfg_clone(src);
    }
    for (int i = 0; i < src->n; i++) {
        const rx_cfg_node *key = src->keys[i], *val = src->items[i];
        const char *path = key->text;
        // split "eval.metrics[0].k" into section "eval.metrics[0]" and parameter "k"
        const char *dot = strrchr(path, '.');
        char sec_path[512];
        snprintf(sec_path, sizeof sec_path, "%.*s", dot ? (int)(dot - path) : 0, path);
        const char *pname = dot ? dot + 1 : path;
        const rx_config_section *sec = find_section(c->cfg, sec_path);
        int pk = -1;
        for (int k = 0; sec && k < sec->params->n; k++)
            if (!strcmp(sec->params->spec[k].name, pname)) pk = k;
        int is_name = sec && sec->comp && !strcmp(pname, "name");
        if (pk < 0 && !is_name) {
            char **paths = NULL;
            int n = sweepable_paths(c->cfg, &paths);
            const char *hint = rx_did_you_mean(path, (const char *const *)paths, n);
            if (hint) rx_config_error_at(c->errs, key, "sweep: unknown key '%s' (did you mean '%s'?)", path, hint);
            else rx_config_error_at(c->errs, key, "sweep: unknown key '%s' (expected section.parameter, e.g. sampler.steps)", path);
            for (int k = 0; k < n; k++) free(paths[k]);
            free(paths);
            continue;
        }
        rx_cfg_node *axis = NULL;
        if (rx_config_sweep_axis(val, &axis) != RX_OK) {
            rx_config_error_at(c->errs, val, "sweep: %s: %s", path, rx_last_error());
            continue;
        }
        rx_params *scratch = is_name ? NULL : params_blank("sweep", sec->params->spec);
        if (!is_name && !scratch) { c->oom = 1; rx_cfg_free(axis); continue; }
        for (int k = 0; k < axis->n; k++) {
            const rx_cfg_node *item = axis->items[k];
            const rx_cfg_node *at = val->type == RX_CFG_SEQ ? val->items[k] : val;
            if (is_name) {
                if (item->type != RX_CFG_SCALAR || !rx_registry_find_in(c->table, sec->comp->kind, item->text))
                    rx_config_error_at(c->errs, at, "sweep: %s: unknown %s '%s'", path, rx_kind_name(sec->comp->kind),
                                       item->type == RX_CFG_SCALAR ? item->text : noun(item));
                continue;
            }
            char *text = rx_config_emit_flow(item);
            if (!text) { c->oom = 1; break; }
            if (rx_params_set(scratch, pname, text) != RX_OK) {
                // "sweep: parameter 'steps': ..." names the full path instead
                const char *msg = rx_last_error(), *colon = strstr(msg, "': ");
                rx_config_error_at(c->errs, at, "sweep: %s: %s", path, colon ? colon + 3 : msg);
            }
            free(text);
        }
        rx_params_free(scratch);
        rx_cfg_free(axis);
    }
    return rx_cfg_clone(src);
}

// ---------------------------------------------------------------------------
// entry points

void rx_config_free(rx_config *cfg) {
    if (!cfg) return;
    for (int i = 0; i < cfg->nsections; i++) {
        free(cfg->sections[i].path);
        rx_params_free(cfg->sections[i].params);
    }
    free(cfg->sections);
    rx_cfg_free(cfg->root);
    free(cfg);
}

rx_status rx_config_run_hooks(const rx_config *cfg, const rx_validate_hook *hooks, rx_config_errors *errs) {
    int before = errs->n;
    for (int i = 0; hooks && hooks[i]; i++) hooks[i](cfg, errs);
    return errs->n > before ? rx_config_errors_status(errs) : RX_OK;
}

static int valid_experiment_name(const char *s) {
    if (!s || !*s || s[0] == '.') return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("._-", *s)))
            return 0;
    return 1;
}

rx_status rx_config_validate(rx_cfg_node *tree, const char *experiment_default, const rx_component *const *table,
                             rx_config **out, rx_config_errors *errs) {
    *out = NULL;
    int before = errs->n;
    if (!table) table = rx_registry_components;
    if (!tree && !(tree = rx_cfg_new_map(NULL, 0, 0))) return rx_fail(RX_ERR_OOM, "config: out of memory");
    if (tree->type != RX_CFG_MAP) {
        rx_config_error_at(errs, tree, "top level: expected a mapping of experiment keys, got %s", noun(tree));
        rx_cfg_free(tree);
        return rx_config_errors_status(errs);
    }
    int bi = rx_cfg_map_find(tree, "base");
    if (bi >= 0) rx_cfg_map_remove(tree, bi);   // rx_config_load has applied it
    if (!rx_cfg_map_get(tree, "experiment") && experiment_default &&
        rx_cfg_map_put(tree, rx_cfg_new_scalar("experiment", 0, NULL, 0, 0),
                        rx_cfg_new_scalar(experiment_default, 1, NULL, 0, 0)) != RX_OK) {
        rx_cfg_free(tree);
        return rx_fail(RX_ERR_OOM, "config: out of memory");
    }
    upgrade_tf32_key(tree, errs);
    rx_config_fill_from_diffusers(tree, table, errs);
    rx_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) { rx_cfg_free(tree); return rx_fail(RX_ERR_OOM, "config: out of memory"); }
    cfg->table = table;
    vctx c = {table, cfg, errs, 0};
    cfg->root = resolve_section(&c, &rx_experiment_schema, "", tree, tree);

    const rx_cfg_node *exp = rx_cfg_map_get(cfg->root, "experiment");
    if (exp && exp->type == RX_CFG_SCALAR && !rx_cfg_is_null(exp) && !valid_experiment_name(exp->text)) {
        const rx_cfg_node *src_exp = rx_cfg_map_get(tree, "experiment");
        rx_config_error_at(errs, src_exp && src_exp->line ? src_exp : tree,
                           "top level: experiment name '%s' may only hold letters, digits, '.', '_' and '-' "
                           "(it names the results directory)", exp->text);
    }
    rx_cfg_free(tree);
    if (c.oom || !cfg->root) {
        rx_config_free(cfg);
        return rx_fail(RX_ERR_OOM, "config: out of memory while checking");
    }
    if (errs->n == before) rx_config_run_hooks(cfg, rx_validate_hooks, errs);
    if (errs->n > before) {
        rx_config_errors_sort(errs);
        rx_config_free(cfg);
        return rx_config_errors_status(errs);
    }
    *out = cfg;
    return RX_OK;
}

// "experiments/cfg_cifar.yaml" -> "cfg_cifar"
static char *file_stem(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    return strndup(base, len);
}

rx_status rx_config_resolve(const char *path, const char *const *sets, int nsets, const rx_component *const *table,
                            rx_config **out, rx_config_errors *errs) {
    *out = NULL;
    rx_cfg_node *tree = NULL;
    int before = errs->n;
    rx_status st = rx_config_load(path, &tree, errs);
    if (st != RX_OK) {
        rx_config_errors_sort(errs);
        return st;
    }
    for (int i = 0; i < nsets; i++) {
        st = rx_config_apply_set(tree, sets[i], i + 1, errs);
        if (st == RX_ERR_OOM) { rx_cfg_free(tree); return st; }
    }
    char *stem = file_stem(path);
    if (!stem) { rx_cfg_free(tree); return rx_fail(RX_ERR_OOM, "config: out of memory"); }
    int set_errors = errs->n > before;
    rx_config *cfg = NULL;
    st = rx_config_validate(tree, stem, table, &cfg, errs);   // checks the rest even after a bad --set
    free(stem);
    if (st == RX_OK && set_errors) {
        rx_config_free(cfg);
        rx_config_errors_sort(errs);
        return rx_config_errors_status(errs);
    }
    if (st != RX_OK) return st;
    *out = cfg;
    return RX_OK;
}

rx_status rx_config_section_params(const rx_config *cfg, const char *path, const rx_component **comp,
                                   const rx_params **params) {
    if (comp) *comp = NULL;
    if (params) *params = NULL;
    const rx_config_section *sec = find_section(cfg, path);
    if (!sec) {
        const rx_cfg_node *n = rx_cfg_path(cfg->root, path);
        if (n && rx_cfg_is_null(n)) return rx_fail(RX_ERR_ARG, "config: section '%s' is null (stage disabled)", path);
        return rx_fail(RX_ERR_ARG, "config: no section '%s'", path);
    }
    if (comp) *comp = sec->comp;
    if (params) *params = sec->params;
    return RX_OK;
}

int rx_config_section_count(const rx_config *cfg, const char *list_path) {
    const rx_cfg_node *n = rx_cfg_path(cfg->root, list_path);
    return n && n->type == RX_CFG_SEQ ? n->n : 0;
}

rx_status rx_config_section_item_params(const rx_config *cfg, const char *list_path, int index,
                                        const rx_component **comp, const rx_params **params) {
    char path[512];
    snprintf(path, sizeof path, "%s[%d]", list_path, index);
    return rx_config_section_params(cfg, path, comp, params);
}

// ---------------------------------------------------------------------------
// schema reference

static int print_params(FILE *f, const rx_param_spec *params, int markdown, int indent) {
    for (int k = 0; params && params[k].name; k++) {
        const rx_param_spec *sp = &params[k];
        if (markdown) {
            if (fprintf(f, "| `%s` | `%s` | ", sp->name, sp->def ? sp->def : "(required)") < 0) return -1;
            for (const char *h = sp->help; h && *h; h++)
                if ((*h == '|' ? fputs("\\|", f) : fputc(*h, f)) == EOF) return -1;
            if (fputs(" |\n", f) == EOF) return -1;
        } else if (fprintf(f, "%*s%-18s default %-10s %s\n", indent, "", sp->name, sp->def ? sp->def : "(required)",
                           sp->help ? sp->help : "") < 0) {
            return -1;
        }
    }
    return 0;
}

static int print_section(FILE *f, const rx_section_spec *sec, const char *path, int markdown) {
    for (int k = 0; sec->children && sec->children[k].key; k++) {
        const rx_section_spec *ch = &sec->children[k];
        char full[128];
        snprintf(full, sizeof full, "%s%s%s", path, path[0] ? "." : "", ch->key);
        const char *form = ch->form == RX_SECTION_COMPONENT      ? "component"
                           : ch->form == RX_SECTION_COMPONENT_LIST ? "list of components"
                           : ch->form == RX_SECTION_SWEEP          ? "sweep grid"
                                                                   : "section";
        char kind[96] = "";
        if (ch->form == RX_SECTION_COMPONENT || ch->form == RX_SECTION_COMPONENT_LIST)
            snprintf(kind, sizeof kind, " (%s%s%s)", rx_kind_name(ch->kind), ch->def ? ", default " : "",
                     ch->def ? ch->def : "");
        if (markdown) {
            if (fprintf(f, "### `%s` — %s%s\n\n%s.\n\n", full, form, kind, ch->help) < 0) return -1;
            if (ch->form == RX_SECTION_PARAMS) {
                if (fprintf(f, "| key | default | description |\n|---|---|---|\n") < 0 || print_params(f, ch->params, 1, 0) ||
                    fputc('\n', f) == EOF)
                    return -1;
            }
        } else {
            if (fprintf(f, "%s: %s%s — %s\n", full, form, kind, ch->help) < 0) return -1;
            if (ch->form == RX_SECTION_PARAMS && print_params(f, ch->params, 0, 2)) return -1;
        }
        if (ch->form == RX_SECTION_PARAMS && ch->children && print_section(f, ch, full, markdown)) return -1;
    }
    return 0;
}

rx_status rx_schema_print(FILE *f, int markdown) {
    int bad = 0;
    if (markdown) {
        bad |= fprintf(f, "# Experiment file\n\nTop-level keys (`base: other.yaml` inherits from another file; "
                          "mappings merge key by key, other values replace):\n\n"
                          "| key | default | description |\n|---|---|---|\n") < 0;
        bad |= print_params(f, rx_experiment_schema.params, 1, 0) != 0;
        bad |= fputc('\n', f) == EOF;
    } else {
        bad |= fprintf(f, "top level:\n") < 0;
        bad |= print_params(f, rx_experiment_schema.params, 0, 2) != 0;
    }
    bad |= !bad && print_section(f, &rx_experiment_schema, "", markdown) != 0;
    if (bad || ferror(f)) return rx_fail(RX_ERR_IO, "schema: write failed");
    return RX_OK;
}

rx_status rx_reference_markdown(const rx_component *const *table, FILE *f) {
    RX_TRY(rx_registry_list_in(table, f, -1, 1));
    return rx_schema_print(f, 1);
}
