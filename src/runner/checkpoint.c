#include "checkpoint.h"
#include "io/safetensors.h"
#include "blocks/model.h"
#include "kernels/backend.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void key_of(char *out, size_t n, const char *prefix, const char *name) {
    if (prefix && *prefix) snprintf(out, n, "%s.%s", prefix, name);
    else snprintf(out, n, "%s", name);
}

rx_status rx_ckpt_save(rx_ctx *c, const char *path, const rx_ckpt_group *groups, int n_groups, const rx_ckpt_meta *meta) {
    rx_st_writer *w = NULL;
    RX_TRY(rx_st_writer_create(&w));
    /* device tensors are staged through one host buffer; host tensors are written from where they
     * are (the writer reads them until rx_st_writer_write), which on the CPU saves a copy of
     * weights, EMA and both Adam moments at the moment the step's memory is at its peak */
    const int on_host = c->mem->device == RX_DEV_CPU;
    int64_t total = 0;
    for (int g = 0; g < n_groups && !on_host; g++) total += rx_paramset_numel(groups[g].ps);
    float *host = malloc((size_t)(total ? total : 1) * sizeof(float));
    char (*names)[400] = NULL;
    int n_names = 0;
    for (int g = 0; g < n_groups; g++) n_names += groups[g].ps->n;
    names = malloc((size_t)(n_names ? n_names : 1) * sizeof *names);
    rx_status s = (host && names) ? RX_OK : rx_fail(RX_ERR_OOM, "checkpoint %s: out of memory", path);
    int64_t off = 0;
    int k = 0;
    for (int g = 0; g < n_groups && !s; g++) {
        for (int i = 0; i < groups[g].ps->n && !s; i++, k++) {
            const rx_tensor *t = groups[g].ps->t[i];
            key_of(names[k], sizeof names[k], groups[g].prefix, t->name);
            const float *data = on_host ? t->data : host + off;
            if (!on_host) s = rx_tensor_to_host(c, t, host + off);
            if (!s) s = rx_st_writer_add_f32(w, names[k], t->ndim, t->shape, data);
            if (!on_host) off += t->numel;
        }
    }
    char buf[64];
    if (!s) s = rx_st_writer_set_metadata(w, "format", RX_CKPT_FORMAT);
    snprintf(buf, sizeof buf, "%" PRId64, meta->step);
    if (!s) s = rx_st_writer_set_metadata(w, "step", buf);
    if (!s) s = rx_st_writer_set_metadata(w, "config_hash", meta->config_hash);
    snprintf(buf, sizeof buf, "%" PRIu64, meta->seed);
    if (!s) s = rx_st_writer_set_metadata(w, "seed", buf);
    if (!s && meta->config_yaml) s = rx_st_writer_set_metadata(w, "config", meta->config_yaml);
    if (meta->log_steps) {   /* %.17g: the double comes back bit for bit */
        snprintf(buf, sizeof buf, "%.17g", meta->log_loss_sum);
        if (!s) s = rx_st_writer_set_metadata(w, "log_window_loss_sum", buf);
        snprintf(buf, sizeof buf, "%" PRId64, meta->log_steps);
        if (!s) s = rx_st_writer_set_metadata(w, "log_window_steps", buf);
    }
    if (!s) s = rx_st_writer_write(w, path);
    rx_st_writer_free(w);
    free(host);
    free(names);
    return s;
}

static rx_status parse_i64(const rx_st_file *f, const char *key, int64_t *out) {
    const char *v = rx_st_metadata(f, key);
    char *end;
    if (!v || !*v) return rx_fail(RX_ERR_FORMAT, "%s: checkpoint metadata has no '%s'", rx_st_path(f), key);
    long long x = strtoll(v, &end, 10);
    if (*end) return rx_fail(RX_ERR_FORMAT, "%s: checkpoint metadata '%s' = '%s' is not a number", rx_st_path(f), key, v);
    *out = x;
    return RX_OK;
}

/* check every tensor of every group before touching any: all-or-nothing */
static rx_status check_groups(const rx_st_file *f, const rx_ckpt_group *groups, int n_groups, int *present) {
    char key[400];
    for (int g = 0; g < n_groups; g++) {
        present[g] = 1;
        if (groups[g].optional && groups[g].ps->n > 0) {
            key_of(key, sizeof key, groups[g].prefix, groups[g].ps->t[0]->name);
            if (!rx_st_find(f, key)) { present[g] = 0; continue; }
        }
        for (int i = 0; i < groups[g].ps->n; i++) {
            const rx_tensor *t = groups[g].ps->t[i];
            key_of(key, sizeof key, groups[g].prefix, t->name);
            RX_TRY(rx_st_check_shape(f, key, t->ndim, t->shape));
        }
    }
    return RX_OK;
}

static rx_status copy_groups(rx_ctx *c, const rx_st_file *f, const rx_ckpt_group *groups, int n_groups, const int *present) {
    char key[400];
    int64_t maxn = 1;
    for (int g = 0; g < n_groups; g++)
        for (int i = 0; i < groups[g].ps->n; i++)
            if (groups[g].ps->t[i]->numel > maxn) maxn = groups[g].ps->t[i]->numel;
    float *host = malloc((size_t)maxn * sizeof(float));
    if (!host) return rx_fail(RX_ERR_OOM, "checkpoint: out of memory");
    rx_status s = RX_OK;
    for (int g = 0; g < n_groups && !s; g++) {
        if (!present[g]) continue;
        for (int i = 0; i < groups[g].ps->n && !s; i++) {
            rx_tensor *t = groups[g].ps->t[i];
            key_of(key, sizeof key, groups[g].prefix, t->name);
            s = rx_st_read_f32(f, key, host, t->numel);
            if (!s) s = rx_tensor_from_host(c, t, host);
        }
    }
    free(host);
    return s;
}

rx_status rx_ckpt_load(rx_ctx *c, const char *path, const rx_ckpt_group *groups, int n_groups,
                       const char *expect_hash, rx_ckpt_meta *meta) {
    rx_st_file *f = NULL;
    RX_TRY(rx_st_open(path, &f));
    rx_status s = RX_OK;
    const char *fmt = rx_st_metadata(f, "format");
    if (!fmt || strcmp(fmt, RX_CKPT_FORMAT) != 0)
        s = rx_fail(RX_ERR_FORMAT, "%s: not a runexp checkpoint (metadata format = '%s', expected '%s')", path,
                    fmt ? fmt : "(none)", RX_CKPT_FORMAT);
    rx_ckpt_meta m = {0};
    int64_t seed = 0;
    if (!s) s = parse_i64(f, "step", &m.step);
    if (!s) s = parse_i64(f, "seed", &seed);
    const char *h = rx_st_metadata(f, "config_hash");
    if (!s) snprintf(m.config_hash, sizeof m.config_hash, "%s", h ? h : "");
    m.seed = (uint64_t)seed;
    if (!s && rx_st_metadata(f, "log_window_steps")) {
        s = parse_i64(f, "log_window_steps", &m.log_steps);
        const char *v = rx_st_metadata(f, "log_window_loss_sum");
        char *end = NULL;
        if (v) m.log_loss_sum = strtod(v, &end);
        if (!s && (!v || !*v || *end || m.log_steps < 0))
            s = rx_fail(RX_ERR_FORMAT, "%s: checkpoint metadata: bad logging window ('%s' over %lld steps)", path,
                        v ? v : "(none)", (long long)m.log_steps);
    }
    if (!s && expect_hash && strcmp(m.config_hash, expect_hash) != 0)
        s = rx_fail(RX_ERR_CONFIG, "%s: checkpoint of training config %s, but this run's training config and data hash to %s", path,
                    m.config_hash, expect_hash);
    int present[16] = {0};
    if (!s && n_groups > 16) s = rx_fail(RX_ERR_ARG, "checkpoint: too many groups");
    if (!s) s = check_groups(f, groups, n_groups, present);
    if (!s) s = copy_groups(c, f, groups, n_groups, present);
    rx_st_close(f);
    if (!s && meta) *meta = m;
    return s;
}

rx_status rx_ckpt_load_weights(rx_ctx *c, const char *path, const rx_paramset *ps, int use_ema) {
    rx_st_file *f = NULL;
    RX_TRY(rx_st_open(path, &f));
    const char *fmt = rx_st_metadata(f, "format");
    const char *prefix = "";
    if (fmt && strcmp(fmt, RX_CKPT_FORMAT) == 0) {
        prefix = "model";
        if (use_ema && ps->n > 0) {
            char key[400];
            key_of(key, sizeof key, "ema", ps->t[0]->name);
            if (rx_st_find(f, key)) prefix = "ema";
        }
    }
    /* unexpected extra tensors in a bare weights file are an error: the file is for another model */
    if (!*prefix && rx_st_count(f) != ps->n) {
        rx_status s = rx_fail(RX_ERR_FORMAT, "%s: %d tensors, the model has %d parameters", path, rx_st_count(f), ps->n);
        for (int i = 0; i < rx_st_count(f); i++) {
            const char *name = rx_st_tensor_at(f, i)->name;
            if (!rx_paramset_find(ps, name)) {
                s = rx_fail(RX_ERR_FORMAT, "%s: %d tensors, the model has %d parameters; e.g. '%s' is not a parameter of this model",
                            path, rx_st_count(f), ps->n, name);
                break;
            }
        }
        rx_st_close(f);
        return s;
    }
    rx_ckpt_group g = {prefix, ps, 0};
    int present[1];
    rx_status s = check_groups(f, &g, 1, present);
    if (!s) s = copy_groups(c, f, &g, 1, present);
    rx_st_close(f);
    return s;
}

rx_status rx_model_load_weights(rx_ctx *c, rx_model *m, const char *path, int use_ema) {
    rx_st_file *f = NULL;
    RX_TRY(rx_st_open(path, &f));
    const char *fmt = rx_st_metadata(f, "format");
    int ours = fmt && strcmp(fmt, RX_CKPT_FORMAT) == 0;
    rx_st_close(f);
    return ours ? rx_ckpt_load_weights(c, path, &m->params, use_ema) : rx_model_import_diffusers(c, m, path);
}
