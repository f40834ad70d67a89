/* report.c — `runexp report DIR`: one self-contained HTML page of an experiment's runs.
 *
 * DIR is an experiment directory (results/<exp>/, its runs from index.csv), a sweep directory
 * (results/<exp>/sweep-NNNN/, its points from summary.csv) or one run directory. The page has
 *   - a table of the runs: status, config hash, the config keys whose values differ between
 *     the runs (config.yaml flattened to dotted keys), the eval.json metrics, where the
 *     training came from (trained, or reused from an earlier run by the stage cache);
 *   - the training curves of metrics.jsonl (loss, lr, grad_norm), every run overlaid in one
 *     inline SVG per quantity (io/plot's figure, drawn as SVG);
 *   - for a sweep, each metric against the first sweep axis (one line per value of the others);
 *   - every run's samples/grid.png, embedded as base64 data.
 * No script, no external reference: the file can be mailed or opened offline. All text is
 * escaped (rx_xml_text). Written atomically to DIR/report.html. */
#include "runner/runner.h"
#include "io/config.h"
#include "io/fsutil.h"
#include "io/json_util.h"
#include "io/plot.h"
#include <math.h>
#include <nettle/base64.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_AXES 8
#define MAX_SERIES 64   /* io/plot's limit */

/* the metrics.jsonl quantities drawn, one SVG each */
static const char *const curve_keys[] = {"loss", "lr", "grad_norm"};
#define N_CURVES (int)(sizeof curve_keys / sizeof curve_keys[0])

typedef struct kv { char *key, *value; } kv;

typedef struct rep_run {
    char dir[1200], id[128];
    json_t *record, *eval;             /* run.json, eval.json (NULL when missing or unreadable) */
    rx_cfg_node *config;               /* config.yaml (NULL when missing) */
    kv *cfg; int n_cfg, cap_cfg;       /* config.yaml flattened to dotted keys, in file order */
    double *step, *curve[N_CURVES];    /* metrics.jsonl rows; NaN where a row lacks a quantity */
    int n_rows, cap_rows;
    char axis_value[MAX_AXES][64];     /* sweep: the point's value on each axis (summary.csv) */
} rep_run;

typedef struct report {
    char dir[1024];
    int sweep;                          /* dir is a sweep directory */
    char axis[MAX_AXES][256]; int n_axes;
    rep_run *runs; int n, cap;
    const char **diff; int n_diff;      /* config keys whose values differ between runs */
    const char **metric; int n_metric;  /* numeric eval.json metrics, first-seen order */
} report;

/* ---- reading a run ------------------------------------------------------------------- */

static rx_status kv_add(rep_run *r, const char *key, const char *value) {
    if (r->n_cfg == r->cap_cfg) {
        int cap = r->cap_cfg ? 2 * r->cap_cfg : 64;
        kv *p = realloc(r->cfg, cap * sizeof *p);
        if (!p) return rx_fail(RX_ERR_OOM, "report: out of memory");
        r->cfg = p;
        r->cap_cfg = cap;
    }
    kv *e = &r->cfg[r->n_cfg];
    e->key = strdup(key);
    e->value = strdup(value);
    if (!e->key || !e->value) { free(e->key); free(e->value); return rx_fail(RX_ERR_OOM, "report: out of memory"); }
    r->n_cfg++;
    return RX_OK;
}

/* "[a, b, c]" for a sequence of scalars, else NULL */
static char *flow_seq(const rx_cfg_node *n) {
    size_t len = 3;
    for (int i = 0; i < n->n; i++) {
        if (n->items[i]->type != RX_CFG_SCALAR) return NULL;
        len += strlen(n->items[i]->text ? n->items[i]->text : "null") + 2;
    }
    char *s = malloc(len);
    if (!s) return NULL;
    size_t k = 0;
    s[k++] = '[';
    for (int i = 0; i < n->n; i++)
        k += sprintf(s + k, "%s%s", i ? ", " : "", n->items[i]->text ? n->items[i]->text : "null");
    s[k++] = ']';
    s[k] = 0;
    return s;
}

/* maps by key (a.b), sequences of scalars as one value ([16, 32]), other sequences by index (transforms[0].name) */
static rx_status flatten(rep_run *r, const rx_cfg_node *n, const char *prefix) {
    char key[512];
    if (n->type == RX_CFG_SCALAR) return kv_add(r, prefix, rx_cfg_is_null(n) ? "null" : n->text);
    if (n->n == 0) return kv_add(r, prefix, n->type == RX_CFG_MAP ? "{}" : "[]");
    if (n->type == RX_CFG_SEQ) {
        char *flow = flow_seq(n);
        if (flow) { rx_status s = kv_add(r, prefix, flow); free(flow); return s; }
    }
    for (int i = 0; i < n->n; i++) {
        if (n->type == RX_CFG_MAP) snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", n->keys[i]->text);
        else snprintf(key, sizeof key, "%s[%d]", prefix, i);
        RX_TRY(flatten(r, n->items[i], key));
    }
    return RX_OK;
}

static rx_status add_row(rep_run *r, json_t *row) {
    if (r->n_rows == r->cap_rows) {
        int cap = r->cap_rows ? 2 * r->cap_rows : 256;
        double *p = realloc(r->step, cap * sizeof *p);
        if (!p) return rx_fail(RX_ERR_OOM, "report: out of memory");
        r->step = p;
        for (int q = 0; q < N_CURVES; q++) {
            if (!(p = realloc(r->curve[q], cap * sizeof *p))) return rx_fail(RX_ERR_OOM, "report: out of memory");
            r->curve[q] = p;
        }
        r->cap_rows = cap;
    }
    r->step[r->n_rows] = json_number_value(json_object_get(row, "step"));
    for (int q = 0; q < N_CURVES; q++) {
        json_t *v = json_object_get(row, curve_keys[q]);
        r->curve[q][r->n_rows] = json_is_number(v) ? json_number_value(v) : NAN;
    }
    r->n_rows++;
    return RX_OK;
}

/* metrics.jsonl: rows with a numeric step; a line a kill cut short (not JSON) is skipped */
static rx_status load_metrics(rep_run *r) {
    char path[1400], *text = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
    if (!rx_fs_exists(path)) return RX_OK;
    RX_TRY(rx_fs_read_file(path, &text, &n));
    rx_status s = RX_OK;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && !s; line = strtok_r(NULL, "\n", &save)) {
        json_t *row = json_loads(line, 0, NULL);
        if (row && json_is_number(json_object_get(row, "step"))) s = add_row(r, row);
        json_decref(row);
    }
    free(text);
    return s;
}

/* a run's files: what is missing or unreadable is left out of the page (a run directory an
 * index names may have been deleted; a running run has no eval.json yet) */
static rx_status load_run(rep_run *r, const char *dir) {
    char path[1400];
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    const char *slash = strrchr(r->dir, '/');
    snprintf(r->id, sizeof r->id, "%.127s", slash ? slash + 1 : r->dir);
    snprintf(path, sizeof path, "%s/run.json", dir);
    if (rx_fs_exists(path) && rx_json_load_file(path, &r->record) != RX_OK) r->record = NULL;
    snprintf(path, sizeof path, "%s/eval.json", dir);
    if (rx_fs_exists(path) && rx_json_load_file(path, &r->eval) != RX_OK) r->eval = NULL;
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    rx_config_errors errs = {0};
    if (rx_fs_exists(path) && rx_yaml_parse_file(path, &r->config, &errs) != RX_OK) r->config = NULL;
    rx_config_errors_clear(&errs);
    free(errs.items);
    rx_clear_error();
    if (r->config) RX_TRY(flatten(r, r->config, ""));
    return load_metrics(r);
}

static void free_run(rep_run *r) {
    json_decref(r->record);
    json_decref(r->eval);
    rx_cfg_free(r->config);
    for (int i = 0; i < r->n_cfg; i++) { free(r->cfg[i].key); free(r->cfg[i].value); }
    free(r->cfg);
    free(r->step);
    for (int q = 0; q < N_CURVES; q++) free(r->curve[q]);
}

static const char *cfg_value(const rep_run *r, const char *key) {
    for (int i = 0; i < r->n_cfg; i++)
        if (!strcmp(r->cfg[i].key, key)) return r->cfg[i].value;
    return NULL;
}

static const char *record_str(const rep_run *r, const char *key) {
    const char *s = r->record ? json_string_value(json_object_get(r->record, key)) : NULL;
    return s ? s : "";
}

static json_t *metric_of(const rep_run *r, const char *name) {
    json_t *v = r->eval ? json_object_get(json_object_get(r->eval, "metrics"), name) : NULL;
    return json_is_number(v) ? v : NULL;
}

/* ---- the set of runs ------------------------------------------------------------------- */

static rx_status add_run(report *rep, const char *dir) {
    if (rep->n == rep->cap) {
        int cap = rep->cap ? 2 * rep->cap : 16;
        rep_run *p = realloc(rep->runs, cap * sizeof *p);
        if (!p) return rx_fail(RX_ERR_OOM, "report: out of memory");
        rep->runs = p;
        rep->cap = cap;
    }
    rep_run *r = &rep->runs[rep->n++];
    memset(r, 0, sizeof *r);
    return load_run(r, dir);
}

/* the text of field k of a CSV line (no quoting: runexp writes none), or "" */
static void csv_field(const char *line, int k, char *out, size_t n) {
    for (; k > 0 && line; k--) line = strchr(line, ',') ? strchr(line, ',') + 1 : NULL;
    size_t len = line ? strcspn(line, ",\r\n") : 0;
    snprintf(out, n, "%.*s", (int)len, line ? line : "");
}

static int csv_count(const char *line) {
    int n = 1;
    for (; *line && *line != '\n'; line++) n += *line == ',';
    return n;
}

/* index.csv "id,status,config_hash,metrics": the runs are DIR/<id> */
static rx_status load_index(report *rep, char *text) {
    rx_status s = RX_OK;
    char *save = NULL;
    strtok_r(text, "\n", &save);   /* header */
    for (char *line = strtok_r(NULL, "\n", &save); line && !s; line = strtok_r(NULL, "\n", &save)) {
        char id[256], dir[1400];
        csv_field(line, 0, id, sizeof id);
        if (!*id || strchr(id, '/')) continue;
        snprintf(dir, sizeof dir, "%s/%s", rep->dir, id);
        s = add_run(rep, dir);
    }
    return s;
}

/* summary.csv "<axes>,<metrics>,status,run": a point's run is the sweep directory's sibling of
 * the run's name (the path it recorded is relative to where the sweep ran). The axes are the
 * columns that are keys of the runs' configs (metric names are not). */
static rx_status load_summary(report *rep, char *text) {
    char *lines[4097], *save = NULL;
    int n = 0;
    for (char *line = strtok_r(text, "\n", &save); line && n < 4097; line = strtok_r(NULL, "\n", &save)) lines[n++] = line;
    if (n == 0) return rx_fail(RX_ERR_FORMAT, "%s/summary.csv: empty", rep->dir);
    char parent[1024], name[1200], dir[2300];
    snprintf(parent, sizeof parent, "%s", rep->dir);
    char *slash = strrchr(parent, '/');
    if (slash) *slash = 0;
    else snprintf(parent, sizeof parent, "%s", strcmp(rep->dir, ".") ? "." : "..");   /* "sweep-0001" or "." */
    const int cols = csv_count(lines[0]);
    int row_of[4097];
    for (int i = 1; i < n; i++) {
        csv_field(lines[i], cols - 1, name, sizeof name);
        const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
        if (!*base) continue;   /* a point that failed before it had a run */
        snprintf(dir, sizeof dir, "%s/%s", parent, base);
        row_of[rep->n] = i;
        RX_TRY(add_run(rep, dir));
    }
    const rx_cfg_node *config = NULL;
    for (int i = 0; i < rep->n && !config; i++) config = rep->runs[i].config;
    for (int c = 0; c < cols - 2 && config && rep->n_axes < MAX_AXES; c++) {
        csv_field(lines[0], c, rep->axis[rep->n_axes], sizeof rep->axis[0]);
        if (!rx_cfg_path(config, rep->axis[rep->n_axes])) continue;
        for (int i = 0; i < rep->n; i++)
            csv_field(lines[row_of[i]], c, rep->runs[i].axis_value[rep->n_axes], sizeof rep->runs[i].axis_value[0]);
        rep->n_axes++;
    }
    return RX_OK;
}

/* the runs of DIR: a sweep (summary.csv), an experiment (index.csv) or one run (run.json) */
static rx_status load_runs(report *rep, int *not_found) {
    char path[1100], *text = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/summary.csv", rep->dir);
    rep->sweep = rx_fs_exists(path);
    if (!rep->sweep) snprintf(path, sizeof path, "%s/index.csv", rep->dir);
    if (!rep->sweep && !rx_fs_exists(path)) {
        snprintf(path, sizeof path, "%s/run.json", rep->dir);
        if (rx_fs_exists(path)) return add_run(rep, rep->dir);
        *not_found = 1;
        return rx_fail(RX_ERR_IO, "report %s: not an experiment directory (index.csv), a sweep directory (summary.csv) "
                       "or a run directory (run.json)", rep->dir);
    }
    RX_TRY(rx_fs_read_file(path, &text, &len));
    rx_status s = rep->sweep ? load_summary(rep, text) : load_index(rep, text);
    free(text);
    return s;
}

static int listed(const char **names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return 1;
    return 0;
}

/* the config keys whose value (or presence) differs between runs, and the metric names */
static rx_status compare_runs(report *rep) {
    int cap = 0;
    for (int i = 0; i < rep->n; i++) cap += rep->runs[i].n_cfg;
    rep->diff = calloc(cap + 1, sizeof *rep->diff);
    rep->metric = calloc(64, sizeof *rep->metric);
    if (!rep->diff || !rep->metric) return rx_fail(RX_ERR_OOM, "report: out of memory");
    for (int i = 0; i < rep->n; i++)
        for (int k = 0; k < rep->runs[i].n_cfg; k++) {
            const char *key = rep->runs[i].cfg[k].key, *v0 = cfg_value(&rep->runs[0], key);
            if (listed(rep->diff, rep->n_diff, key)) continue;
            for (int j = 1; j < rep->n; j++) {
                const char *vj = cfg_value(&rep->runs[j], key);
                if (!v0 || !vj || strcmp(v0, vj)) { rep->diff[rep->n_diff++] = key; break; }
            }
        }
    for (int i = 0; i < rep->n; i++) {
        const char *name;
        json_t *v;
        json_t *m = rep->runs[i].eval ? json_object_get(rep->runs[i].eval, "metrics") : NULL;
        json_object_foreach(m, name, v)
            if (json_is_number(v) && rep->n_metric < 64 && !listed(rep->metric, rep->n_metric, name))
                rep->metric[rep->n_metric++] = name;
    }
    return RX_OK;
}

/* ---- the page ---------------------------------------------------------------------------- */

static const char *style =
    "body{font:14px/1.4 sans-serif;margin:24px;color:#222}h1{font-size:20px}h2{font-size:17px;margin-top:28px}"
    "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;"
    "max-width:24em;overflow-wrap:anywhere}"
    "th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}.failed{color:#b00}"
    "figure{display:inline-block;margin:0 16px 16px 0;vertical-align:top}svg.plot{width:560px;max-width:100%;height:auto}"
    "img.grid{width:320px;image-rendering:pixelated;border:1px solid #ccc}figcaption{font-size:12px;max-width:320px}"
    ".note{color:#666}";

static void html_cell(FILE *f, const char *cls, const char *text) {
    fprintf(f, cls ? "<td class=\"%s\">" : "<td>", cls);
    rx_xml_text(f, text);
    fputs("</td>", f);
}

static void write_run_row(FILE *f, const report *rep, const rep_run *r) {
    const char *status = record_str(r, "status"), *error = record_str(r, "error");
    fputs("<tr>", f);
    html_cell(f, "run", r->id);
    fprintf(f, "<td%s>", strcmp(status, "done") ? " class=\"failed\"" : "");
    rx_xml_text(f, r->record ? status : "no run.json");
    if (*error) { fputs("<br><small>", f); rx_xml_text(f, error); fputs("</small>", f); }
    fputs("</td>", f);
    html_cell(f, "hash", record_str(r, "config_hash"));
    for (int k = 0; k < rep->n_diff; k++) {
        const char *v = cfg_value(r, rep->diff[k]);
        html_cell(f, NULL, v ? v : "(absent)");
    }
    for (int k = 0; k < rep->n_metric; k++) {
        json_t *v = metric_of(r, rep->metric[k]);
        char num[32] = "–";
        if (v) snprintf(num, sizeof num, "%.4g", json_number_value(v));
        html_cell(f, "num", num);
    }
    const char *from = record_str(r, "train_reused_from"), *base = strrchr(from, '/') ? strrchr(from, '/') + 1 : from;
    char train[300];
    if (*from) snprintf(train, sizeof train, "reused from %s", base);
    else snprintf(train, sizeof train, "%s", r->n_rows ? "trained here" : "–");
    html_cell(f, NULL, train);
    fputs("</tr>\n", f);
}

static void write_table(FILE *f, const report *rep) {
    fputs("<h2>Runs</h2>\n", f);
    if (rep->n > 1)
        fprintf(f, "<p class=\"note\">Config keys shown: the %d whose values differ between the runs.</p>\n", rep->n_diff);
    fputs("<table>\n<tr><th>run</th><th>status</th><th>config hash</th>", f);
    for (int k = 0; k < rep->n_diff; k++) { fputs("<th class=\"key\">", f); rx_xml_text(f, rep->diff[k]); fputs("</th>", f); }
    for (int k = 0; k < rep->n_metric; k++) { fputs("<th class=\"metric\">", f); rx_xml_text(f, rep->metric[k]); fputs("</th>", f); }
    fputs("<th>training</th></tr>\n", f);
    for (int i = 0; i < rep->n; i++) write_run_row(f, rep, &rep->runs[i]);
    fputs("</table>\n", f);
}

/* one SVG per quantity of metrics.jsonl, a line per run that logged it */
static rx_status write_curves(FILE *f, const report *rep) {
    fputs("<h2>Training curves</h2>\n", f);
    int drawn = 0;
    for (int q = 0; q < N_CURVES; q++) {
        rx_plot_series ser[MAX_SERIES];
        int n = 0;
        for (int i = 0; i < rep->n && n < MAX_SERIES; i++) {
            const rep_run *r = &rep->runs[i];
            int finite = 0;
            for (int k = 0; k < r->n_rows; k++) finite |= isfinite(r->curve[q][k]);
            if (finite) ser[n++] = (rx_plot_series){r->id, r->step, r->curve[q], r->n_rows};
        }
        if (n == 0) continue;
        fputs("<figure>\n", f);
        RX_TRY(rx_plot_lines_svg(f, curve_keys[q], "step", curve_keys[q], ser, n));
        fputs("</figure>\n", f);
        drawn++;
    }
    if (!drawn) fputs("<p class=\"note\">No run here logged training (metrics.jsonl).</p>\n", f);
    return RX_OK;
}

typedef struct xy { double x, y; } xy;
static int cmp_xy(const void *a, const void *b) {
    double d = ((const xy *)a)->x - ((const xy *)b)->x;
    return (d > 0) - (d < 0);
}

/* "k=v, k=v" of the axes after the first: a point's line in the metric-against-parameter plots */
static void group_label(const report *rep, const rep_run *r, const char *metric, char *out, size_t n) {
    size_t k = 0;
    out[0] = 0;
    for (int a = 1; a < rep->n_axes && k < n; a++)
        k += snprintf(out + k, n - k, "%s%s=%s", a > 1 ? ", " : "", rep->axis[a], r->axis_value[a]);
    if (rep->n_axes == 1) snprintf(out, n, "%s", metric);
}

/* the points of group `label` with a metric `m` and a numeric value on axis 0, sorted by it */
static int group_points(const report *rep, const char *m, const char *label, xy *out) {
    int k = 0;
    for (int j = 0; j < rep->n; j++) {
        char lj[256], *end;
        const char *xv = rep->runs[j].axis_value[0];
        group_label(rep, &rep->runs[j], m, lj, sizeof lj);
        json_t *v = metric_of(&rep->runs[j], m);
        double x = strtod(xv, &end);
        if (strcmp(lj, label) || !v || end == xv || *end) continue;
        out[k++] = (xy){x, json_number_value(v)};
    }
    qsort(out, k, sizeof *out, cmp_xy);
    return k;
}

/* metric `m` against axis 0, one line per value of the other axes */
static rx_status sweep_plot(FILE *f, const report *rep, const char *m) {
    rx_plot_series ser[MAX_SERIES];
    char labels[MAX_SERIES][256];
    double *xs = malloc(rep->n * sizeof *xs), *ys = malloc(rep->n * sizeof *ys);
    xy *pts = malloc(rep->n * sizeof *pts);
    rx_status s = xs && ys && pts ? RX_OK : rx_fail(RX_ERR_OOM, "report: out of memory");
    int n_ser = 0, used = 0;
    for (int i = 0; i < rep->n && !s && n_ser < MAX_SERIES; i++) {
        char label[256];
        group_label(rep, &rep->runs[i], m, label, sizeof label);
        int g = 0;
        while (g < n_ser && strcmp(labels[g], label)) g++;
        if (g < n_ser) continue;   /* drawn already */
        int k = group_points(rep, m, label, pts);
        if (k == 0) continue;
        for (int j = 0; j < k; j++) { xs[used + j] = pts[j].x; ys[used + j] = pts[j].y; }
        snprintf(labels[n_ser], sizeof labels[n_ser], "%s", label);
        ser[n_ser] = (rx_plot_series){labels[n_ser], xs + used, ys + used, k};
        n_ser++;
        used += k;
    }
    if (!s && n_ser > 0) {
        char title[600];
        snprintf(title, sizeof title, "%s vs %s", m, rep->axis[0]);
        fputs("<figure>\n", f);
        s = rx_plot_lines_svg(f, title, rep->axis[0], m, ser, n_ser);
        fputs("</figure>\n", f);
    }
    free(xs); free(ys); free(pts);
    return s;
}

static rx_status write_sweep_plots(FILE *f, const report *rep) {
    fputs("<h2>Metrics against ", f);
    rx_xml_text(f, rep->n_axes ? rep->axis[0] : "the sweep axis");
    fputs("</h2>\n", f);
    if (rep->n_axes == 0 || rep->n_metric == 0) {
        fputs("<p class=\"note\">No sweep axis or no metrics in this sweep's runs.</p>\n", f);
        return RX_OK;
    }
    for (int k = 0; k < rep->n_metric; k++) RX_TRY(sweep_plot(f, rep, rep->metric[k]));
    return RX_OK;
}

/* samples/grid.png as <img src="data:image/png;base64,...">, with the run's differing keys */
static rx_status write_grid(FILE *f, const report *rep, const rep_run *r) {
    char path[1400], *png = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/samples/grid.png", r->dir);
    if (!rx_fs_exists(path)) return RX_OK;
    RX_TRY(rx_fs_read_file(path, &png, &n));
    char *b64 = malloc(BASE64_ENCODE_RAW_LENGTH(n) + 1);
    if (!b64) { free(png); return rx_fail(RX_ERR_OOM, "report: out of memory for %s", path); }
    base64_encode_raw(b64, n, (const uint8_t *)png);
    b64[BASE64_ENCODE_RAW_LENGTH(n)] = 0;
    fputs("<figure><img class=\"grid\" alt=\"samples of ", f);
    rx_xml_text(f, r->id);
    fprintf(f, "\" src=\"data:image/png;base64,%s\"><figcaption>", b64);
    rx_xml_text(f, r->id);
    for (int k = 0; k < rep->n_diff; k++) {
        const char *v = cfg_value(r, rep->diff[k]);
        fputs("<br>", f);
        rx_xml_text(f, rep->diff[k]);
        fputs(" = ", f);
        rx_xml_text(f, v ? v : "(absent)");
    }
    fputs("</figcaption></figure>\n", f);
    free(b64);
    free(png);
    return RX_OK;
}

static rx_status write_page(FILE *f, const report *rep) {
    char when[64];
    time_t now = time(NULL);
    struct tm tm;
    if (now == (time_t)-1 || !gmtime_r(&now, &tm) || !strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm))
        snprintf(when, sizeof when, "(time unknown)");
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>runexp report: ", f);
    rx_xml_text(f, rep->dir);
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>runexp report: ", style);
    rx_xml_text(f, rep->dir);
    fprintf(f, "</h1>\n<p class=\"note\">%s directory, %d run%s; written %s by runexp report.</p>\n",
            rep->sweep ? "Sweep" : rep->n == 1 && !strcmp(rep->runs[0].dir, rep->dir) ? "Run" : "Experiment", rep->n,
            rep->n == 1 ? "" : "s", when);
    write_table(f, rep);
    RX_TRY(write_curves(f, rep));
    if (rep->sweep) RX_TRY(write_sweep_plots(f, rep));
    fputs("<h2>Samples</h2>\n", f);
    for (int i = 0; i < rep->n; i++) RX_TRY(write_grid(f, rep, &rep->runs[i]));
    fputs("</body>\n</html>\n", f);
    return RX_OK;
}

rx_status rx_report_write(const char *dir, const char *out_path, int *not_found) {
    report rep;
    memset(&rep, 0, sizeof rep);
    snprintf(rep.dir, sizeof rep.dir, "%s", dir);
    size_t n = strlen(rep.dir);
    while (n > 1 && rep.dir[n - 1] == '/') rep.dir[--n] = 0;
    rx_status s = load_runs(&rep, not_found);
    if (!s) s = compare_runs(&rep);
    rx_atomic_file af;
    if (!s) s = rx_atomic_begin(out_path, &af);
    if (!s) {
        s = write_page(af.fp, &rep);
        if (s) rx_atomic_abort(&af);
        else s = rx_atomic_commit(&af);   /* reports a failed write */
    }
    for (int i = 0; i < rep.n; i++) free_run(&rep.runs[i]);
    free(rep.runs);
    free(rep.diff);
    free(rep.metric);
    return s;
}

rx_status rx_cmd_report(const rx_cli *cli, char *out_path, size_t n, int *config_error) {
    const char *dir = cli->file;
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    if ((size_t)snprintf(out_path, n, "%.*s/report.html", (int)len, dir) >= n)
        return rx_fail(RX_ERR_ARG, "report %s: path too long", dir);
    rx_status s = rx_report_write(dir, out_path, config_error);
    if (s) out_path[0] = 0;
    return s;
}
