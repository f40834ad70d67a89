/* export.c — a model's weights in diffusers' layout, both ways. Our parameter names are diffusers'
 * state-dict keys, so export is the parameters as they are plus config.json; a model whose layout
 * differs (the DiT's shared embedder, copied into every diffusers block) maps keys with its
 * diffusers_key hook. The other way, a config.json beside imported weights is read into the model's
 * parameters by its params_from_diffusers hook (registry/diffusers_config.c applies them). */
#include "model.h"
#include "io/fsutil.h"
#include "io/json_util.h"
#include "io/safetensors.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY_MAX 400

/* key number `copy` of parameter i; 0 when there is none */
static int param_key(const rx_model *m, int i, int copy, char *buf, size_t n) {
    if (m->impl->diffusers_key) return m->impl->diffusers_key(m, i, copy, buf, n);
    if (copy > 0) return 0;
    snprintf(buf, n, "%s", m->params.t[i]->name);
    return 1;
}

rx_status rx_model_export_diffusers(rx_ctx *c, const rx_model *m, const char *dir) {
    if (!m->impl->diffusers_config)
        return rx_fail(RX_ERR_ARG, "export: model '%s' has no diffusers counterpart", m->arch);
    RX_TRY(rx_fs_mkdir_p(dir));
    int64_t total = rx_model_param_count(m);
    float *host = malloc((size_t)(total ? total : 1) * sizeof *host);
    if (!host) return rx_fail(RX_ERR_OOM, "export: out of memory");
    rx_st_writer *w = NULL;
    rx_status s = rx_st_writer_create(&w);
    int64_t off = 0;
    char key[KEY_MAX];
    for (int i = 0; i < m->params.n && !s; i++) {
        const rx_tensor *t = m->params.t[i];
        s = rx_tensor_to_host(c, t, host + off);
        for (int k = 0; !s && param_key(m, i, k, key, sizeof key); k++)   /* copies share the host data */
            s = rx_st_writer_add_f32(w, key, t->ndim, t->shape, host + off);
        off += t->numel;
    }
    if (!s) s = rx_st_writer_set_metadata(w, "format", "pt");
    char path[1200];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    if (!s) s = rx_st_writer_write(w, path);
    rx_st_writer_free(w);
    free(host);
    /* the models' reals are float32 values at their shortest decimal (rx_json_float32); 9 significant
     * digits hold any float32, so 1e-05 is written as 1e-05 */
    json_t *config = s ? NULL : m->impl->diffusers_config(m);
    if (!s && !config) s = rx_fail(RX_ERR_OOM, "export: cannot make config.json");
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!s) s = rx_json_write_atomic_digits(path, config, 9);
    json_decref(config);
    return s;
}

/* Attention weights of files written before diffusers 0.15 (and still on the Hub, e.g. the 2022
 * sd-vae-ft-mse and ddpm-cifar10-32 uploads) carry the deprecated names; diffusers renames them on load
 * (_convert_deprecated_attention_blocks), and so does import */
static const struct { const char *name, *legacy; } legacy_attention_names[] = {
    {".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."}, {".to_out.0.", ".proj_attn."},
};

/* the name under which key is stored in f: key itself, or its legacy attention name when only that is
 * there (written to buf, KEY_MAX) */
static const char *stored_key(const rx_st_file *f, const char *key, char *buf) {
    if (rx_st_find(f, key) || !strstr(key, ".attentions.")) return key;
    for (size_t i = 0; i < sizeof legacy_attention_names / sizeof legacy_attention_names[0]; i++) {
        const char *at = strstr(key, legacy_attention_names[i].name);
        if (!at) continue;
        snprintf(buf, KEY_MAX, "%.*s%s%s", (int)(at - key), key, legacy_attention_names[i].legacy,
                 at + strlen(legacy_attention_names[i].name));
        if (rx_st_find(f, buf)) return buf;
    }
    return key;
}

/* all keys and shapes present, no strangers, copies equal; then copy key 0 of each parameter */
static rx_status import_checked(rx_ctx *c, rx_model *m, const rx_st_file *f, const char *path, float *host, float *copy) {
    char key[KEY_MAX], alias[KEY_MAX];
    int expected = 0;
    for (int i = 0; i < m->params.n; i++) {
        const rx_tensor *t = m->params.t[i];
        for (int k = 0; param_key(m, i, k, key, sizeof key); k++) {
            expected++;
            const char *name = stored_key(f, key, alias);
            if (!rx_st_find(f, name))
                return rx_fail(RX_ERR_FORMAT, "%s: no tensor '%s' (model '%s' parameter %s)", path, key, m->arch, t->name);
            RX_TRY(rx_st_check_shape(f, name, t->ndim, t->shape));
        }
    }
    if (rx_st_count(f) != expected) {
        for (int j = 0; j < rx_st_count(f); j++) {   /* name one stranger */
            const char *name = rx_st_tensor_at(f, j)->name;
            int known = 0;
            for (int i = 0; i < m->params.n && !known; i++)
                for (int k = 0; !known && param_key(m, i, k, key, sizeof key); k++) known = !strcmp(stored_key(f, key, alias), name);
            if (!known)
                return rx_fail(RX_ERR_FORMAT, "%s: %d tensors, model '%s' expects %d; e.g. '%s' is not one of its keys",
                               path, rx_st_count(f), m->arch, expected, name);
        }
        return rx_fail(RX_ERR_FORMAT, "%s: %d tensors, model '%s' expects %d", path, rx_st_count(f), m->arch, expected);
    }
    int64_t off = 0;
    for (int i = 0; i < m->params.n; i++) {
        const rx_tensor *t = m->params.t[i];
        param_key(m, i, 0, key, sizeof key);
        RX_TRY(rx_st_read_f32(f, stored_key(f, key, alias), host + off, t->numel));
        char first[KEY_MAX];
        snprintf(first, sizeof first, "%s", key);
        for (int k = 1; param_key(m, i, k, key, sizeof key); k++) {
            RX_TRY(rx_st_read_f32(f, stored_key(f, key, alias), copy, t->numel));
            if (memcmp(copy, host + off, (size_t)t->numel * sizeof *copy))
                return rx_fail(RX_ERR_FORMAT, "%s: '%s' differs from '%s'; model '%s' shares one set of these weights",
                               path, key, first, m->arch);
        }
        off += t->numel;
    }
    off = 0;
    for (int i = 0; i < m->params.n; i++) {
        RX_TRY(rx_tensor_from_host(c, m->params.t[i], host + off));
        off += m->params.t[i]->numel;
    }
    return RX_OK;
}

rx_status rx_model_import_diffusers(rx_ctx *c, rx_model *m, const char *path) {
    rx_st_file *f = NULL;
    RX_TRY(rx_st_open(path, &f));
    int64_t total = rx_model_param_count(m), largest = 1;
    for (int i = 0; i < m->params.n; i++)
        if (m->params.t[i]->numel > largest) largest = m->params.t[i]->numel;
    float *host = malloc((size_t)(total ? total : 1) * sizeof *host), *copy = malloc((size_t)largest * sizeof *copy);
    rx_status s = host && copy ? import_checked(c, m, f, path, host, copy)
                               : rx_fail(RX_ERR_OOM, "import %s: out of memory", path);
    free(host);
    free(copy);
    rx_st_close(f);
    return s;
}

/* --- config.json ------------------------------------------------------------------ */

json_t *rx_json_float32(float v) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {   /* 9 digits always read back as the same float */
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    return json_real(strtod(buf, NULL));
}

json_t *rx_diffusers_value(const json_t *config, const char *key, const char *diffusers_default) {
    json_t *v = json_object_get(config, key);
    return v ? json_incref(v) : json_loads(diffusers_default, JSON_DECODE_ANY, NULL);
}

rx_status rx_diffusers_require(const json_t *config, const char *path, const char *arch, const char *key,
                               const char *implemented) {
    json_t *v = json_object_get(config, key), *want = json_loads(implemented, JSON_DECODE_ANY, NULL);
    if (!want) return rx_fail(RX_ERR_OOM, "%s: out of memory", path);
    int same = !v || json_equal(v, want) ||   /* 1 and 1.0 are the same setting */
               (json_is_number(v) && json_is_number(want) && json_number_value(v) == json_number_value(want));
    json_decref(want);
    if (same) return RX_OK;
    char *got = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    rx_status s = rx_fail(RX_ERR_CONFIG, "%s: %s is %s; model '%s' implements only %s (diffusers' default)", path, key,
                          got ? got : "?", arch, implemented);
    free(got);
    return s;
}

rx_status rx_model_diffusers_config_params(const rx_component *model, const char *weights_path, rx_diffusers_param_fn put,
                                           void *ctx, char *config_path, size_t n) {
    const char *slash = strrchr(weights_path, '/');
    int dir_len = slash ? (int)(slash - weights_path) + 1 : 0;
    snprintf(config_path, n, "%.*sconfig.json", dir_len, weights_path);
    const rx_model_impl *impl = model->kind == RX_KIND_MODEL ? model->impl : NULL;
    if (!impl || !impl->params_from_diffusers || access(config_path, F_OK) != 0) return RX_OK;
    json_t *config = NULL;
    RX_TRY(rx_json_load_file(config_path, &config));
    rx_status s = RX_OK;
    if (json_is_object(config) && json_is_string(json_object_get(config, "_class_name")))   /* a diffusers model's */
        s = impl->params_from_diffusers(config, config_path, put, ctx);
    json_decref(config);
    return s;
}
