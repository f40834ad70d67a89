/* diffusers_config.c — a model section completed from the diffusers config.json beside its weights.
 *
 * Weights that come with a config.json (a diffusers save_pretrained or `runexp export` directory)
 * belong to the model that file describes. So before the config is checked, for `init:` and then
 * `model.weights:`, every parameter that the file determines (the model's params_from_diffusers,
 * blocks/) and the experiment leaves out is taken from the file: the resolved config then says
 * what is built, and a saved config reproduces it without the file. A parameter the experiment
 * sets to another value is an error at that key, since those weights would compute something else;
 * only training choices (the U-Net's dropout) are the experiment's to set. */
#include "registry/registry.h"
#include "blocks/model.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    rx_cfg_node **slot;        /* the model section in the tree (a mapping once something is added) */
    const char *section;       /* its path: "model", "latent.vae" */
    const rx_component *comp;
    const char *config_path;   /* the config.json being read */
    rx_config_errors *errs;
    int oom;
} fill_ctx;

/* a JSON value as a config node placed in the config.json (line 0: the file as a whole) */
static rx_cfg_node *node_from_json(const json_t *v, const char *file) {
    char buf[40];
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return rx_cfg_new_scalar(buf, 0, file, 0, 0);
    case JSON_REAL:
        rx_config_format_float(json_real_value(v), buf, sizeof buf);
        return rx_cfg_new_scalar(buf, 0, file, 0, 0);
    case JSON_TRUE: return rx_cfg_new_scalar("true", 0, file, 0, 0);
    case JSON_FALSE: return rx_cfg_new_scalar("false", 0, file, 0, 0);
    case JSON_NULL: return rx_cfg_new_scalar("null", 0, file, 0, 0);
    case JSON_STRING: return rx_cfg_new_scalar(json_string_value(v), 1, file, 0, 0);
    case JSON_ARRAY: {
        rx_cfg_node *seq = rx_cfg_new_seq(file, 0, 0);
        for (size_t i = 0; seq && i < json_array_size(v); i++)
            if (rx_cfg_seq_push(seq, node_from_json(json_array_get(v, i), file)) != RX_OK) { rx_cfg_free(seq); seq = NULL; }
        return seq;
    }
    case JSON_OBJECT: break;
    }
    return rx_cfg_new_map(file, 0, 0);   /* no parameter is a mapping: the checker says so */
}

static int values_equal(rx_param_type type, const rx_value *a, const rx_value *b) {
    if (a->is_null || b->is_null) return a->is_null == b->is_null;
    switch (type) {
    case RX_P_INT: case RX_P_BOOL: return a->i == b->i;
    case RX_P_FLOAT: return (float)a->f == (float)b->f;   /* the models keep float32: 1e-05 = 9.99999975e-06 */
    case RX_P_STRING: case RX_P_CHOICE: case RX_P_PATH: return !strcmp(a->s ? a->s : "", b->s ? b->s : "");
    case RX_P_INT_LIST: case RX_P_FLOAT_LIST: case RX_P_STRING_LIST:
        if (a->n != b->n) return 0;
        for (int i = 0; i < a->n; i++)
            if (type == RX_P_INT_LIST ? a->ints[i] != b->ints[i]
                : type == RX_P_FLOAT_LIST ? (float)a->floats[i] != (float)b->floats[i]
                                          : strcmp(a->strs[i], b->strs[i]) != 0)
                return 0;
        return 1;
    }
    return 0;
}

/* both nodes read as the same value of the parameter; also 1 when one does not read at all (the
 * checker reports that where it is) */
static int same_value(const rx_component *comp, const char *param, const rx_cfg_node *a, const rx_cfg_node *b) {
    rx_params *pa = NULL, *pb = NULL;
    char *ta = rx_config_emit_flow(a), *tb = rx_config_emit_flow(b);
    int same = 1;
    if (ta && tb && rx_params_from_defaults(comp->name, comp->params, &pa) == RX_OK &&
        rx_params_from_defaults(comp->name, comp->params, &pb) == RX_OK && rx_params_set(pa, param, ta) == RX_OK &&
        rx_params_set(pb, param, tb) == RX_OK) {
        const rx_value *va = rx_param_get(pa, param);
        same = values_equal(pa->spec[va - pa->values].type, va, rx_param_get(pb, param));
    }
    rx_clear_error();
    rx_params_free(pa);
    rx_params_free(pb);
    free(ta);
    free(tb);
    return same;
}

/* the model section as a mapping: `model: unet` becomes {name: unet} */
static rx_cfg_node *model_map(fill_ctx *c) {
    rx_cfg_node *m = *c->slot;
    if (m->type == RX_CFG_MAP) return m;
    rx_cfg_node *map = rx_cfg_new_map(m->file, m->line, m->col);
    if (!map || rx_cfg_map_put(map, rx_cfg_new_scalar("name", 0, m->file, m->line, m->col), rx_cfg_clone(m)) != RX_OK) {
        rx_cfg_free(map);
        return NULL;
    }
    rx_cfg_free(m);
    return *c->slot = map;
}

/* rx_diffusers_param_fn: add the file's value, or compare it with the experiment's */
static void fill_param(void *vctx, const char *param, const json_t *value, int training_choice) {
    fill_ctx *c = vctx;
    rx_cfg_node *model = model_map(c), *from_file = node_from_json(value, c->config_path);
    if (!model || !from_file) { rx_cfg_free(from_file); c->oom = 1; return; }
    int i = rx_cfg_map_find(model, param);
    if (i < 0) {
        if (rx_cfg_map_put(model, rx_cfg_new_scalar(param, 0, c->config_path, 0, 0), from_file) != RX_OK) c->oom = 1;
        return;
    }
    if (!training_choice && !same_value(c->comp, param, model->items[i], from_file)) {
        char *ours = rx_config_emit_flow(model->items[i]), *theirs = rx_config_emit_flow(from_file);
        rx_config_error_at(c->errs, model->items[i],
                           "%s: %s is %s here, but the weights' %s says %s; leave %s out to build the model that "
                           "file describes", c->section, param, ours ? ours : "?", c->config_path, theirs ? theirs : "?", param);
        free(ours);
        free(theirs);
    }
    rx_cfg_free(from_file);
}

/* the model sections that weights can come with, and the keys naming those weights, in order */
static const struct { const char *parent, *key, *section, *weights[2]; } model_sections[] = {
    {NULL, "model", "model", {"init", "model.weights"}},
    {"latent", "vae", "latent.vae", {"latent.vae.weights", NULL}},
};

static void fill_section(rx_cfg_node *tree, const rx_component *const *table, rx_config_errors *errs, int s) {
    rx_cfg_node *parent = model_sections[s].parent ? (rx_cfg_node *)rx_cfg_path(tree, model_sections[s].parent) : tree;
    if (!parent || parent->type != RX_CFG_MAP) return;
    int mi = rx_cfg_map_find(parent, model_sections[s].key);
    if (mi < 0) return;
    const rx_cfg_node *model = parent->items[mi];
    const rx_cfg_node *name = model->type == RX_CFG_MAP ? rx_cfg_map_get(model, "name") : model;
    if (!name || name->type != RX_CFG_SCALAR || rx_cfg_is_null(name)) return;   /* the checker says what is wrong */
    fill_ctx c = {&parent->items[mi], model_sections[s].section, rx_registry_find_in(table, RX_KIND_MODEL, name->text), NULL,
                  errs, 0};
    if (!c.comp) return;
    for (int k = 0; k < 2 && model_sections[s].weights[k]; k++) {
        const char *key = model_sections[s].weights[k];
        const rx_cfg_node *path = rx_cfg_path(tree, key);   /* re-read: filling may replace the model node */
        if (!path || path->type != RX_CFG_SCALAR || rx_cfg_is_null(path)) continue;
        char config_path[4096];
        c.config_path = config_path;
        if (rx_model_diffusers_config_params(c.comp, path->text, fill_param, &c, config_path, sizeof config_path))
            rx_config_error_at(errs, path, "%s: %s", key, rx_last_error());
        if (c.oom) rx_config_error_at(errs, path, "%s: out of memory while reading %s", key, config_path);
        rx_clear_error();
    }
}

void rx_config_fill_from_diffusers(rx_cfg_node *tree, const rx_component *const *table, rx_config_errors *errs) {
    for (int s = 0; s < (int)(sizeof model_sections / sizeof model_sections[0]); s++) fill_section(tree, table, errs, s);
}
