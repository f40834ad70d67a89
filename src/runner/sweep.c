/* sweep.c — a grid of runs over sweep axes.
 *
 * Axes come from the config's `sweep:` block ({"guidance.scale": [1, 2, 3]} or
 * {start, stop, step}) and from --sweep key=v1,v2,... (repeatable). Each grid point is an
 * ordinary run with its own resolved config (the sweep block removed, the point's values
 * set), so any point can be re-run alone from its config.yaml. Stages are cached by hash,
 * so a sweep over sampling or guidance keys trains once: the first point trains, the
 * others reuse its weights. The sweep directory results/<exp>/sweep-NNNN/ gets
 * summary.csv, summary.md (sorted by the primary metric) and one plot per metric. */
#include "runner/pipeline.h"
#include "io/plot.h"
#include "io/fsutil.h"
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_AXES 8
#define MAX_POINTS 4096

typedef struct axis {
    char key[256];
    rx_cfg_node *values;      /* SEQ of scalars */
} axis;

static rx_status add_cli_axis(axis *ax, const char *spec, rx_config_errors *errs) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec) return rx_fail(RX_ERR_ARG, "--sweep %s: expected key=v1,v2,...", spec);
    snprintf(ax->key, sizeof ax->key, "%.*s", (int)(eq - spec), spec);
    char flow[4096];
    snprintf(flow, sizeof flow, "[%s]", eq + 1);
    rx_cfg_node *tree = NULL;
    RX_TRY(rx_yaml_parse_string(flow, strlen(flow), "<command line>:--sweep", &tree, errs));
    if (!tree || tree->type != RX_CFG_SEQ || tree->n == 0) {
        rx_cfg_free(tree);
        return rx_fail(RX_ERR_ARG, "--sweep %s: no values", spec);
    }
    ax->values = tree;
    return RX_OK;
}

static int lower_is_better(const char *metric) {
    return !strncmp(metric, "fd", 2) || !strncmp(metric, "fid", 3) || !strncmp(metric, "kid", 3) || strstr(metric, "loss");
}

typedef struct point_result {
    char run_dir[1200];
    char values[MAX_AXES][64];
    json_t *metrics;
    int ok;
} point_result;

static const char *g_sort_metric;
static int cmp_points(const void *a, const void *b) {
    const point_result *pa = a, *pb = b;
    json_t *va = pa->metrics ? json_object_get(pa->metrics, g_sort_metric) : NULL;
    json_t *vb = pb->metrics ? json_object_get(pb->metrics, g_sort_metric) : NULL;
    if (!va || !vb) return (va == NULL) - (vb == NULL);
    double x = json_number_value(va), y = json_number_value(vb);
    int sign = lower_is_better(g_sort_metric) ? 1 : -1;
    return x < y ? -sign : x > y ? sign : 0;
}

static rx_status alloc_sweep_dir(const char *exp_dir, char *out, size_t n) {
    RX_TRY(rx_fs_mkdir_p(exp_dir));
    for (int k = 1; k < 100000; k++) {
        if ((size_t)snprintf(out, n, "%.1000s/sweep-%04d", exp_dir, k) >= n) return rx_fail(RX_ERR_ARG, "%s: path too long", exp_dir);
        if (mkdir(out, 0777) == 0) return RX_OK;
        if (errno != EEXIST) return rx_fail(RX_ERR_IO, "mkdir %s: %s", out, strerror(errno));
    }
    return rx_fail(RX_ERR_IO, "%s: no free sweep number", exp_dir);
}

/* metric names: the numeric metrics of all points, in first-seen order */
static int metric_names(const point_result *pts, int n_pts, const char *names[64]) {
    int n_names = 0;
    for (int i = 0; i < n_pts; i++) {
        const char *k;
        json_t *v;
        if (!pts[i].metrics) continue;
        json_object_foreach(pts[i].metrics, k, v) {
            int seen = 0;
            for (int j = 0; j < n_names; j++) seen |= !strcmp(names[j], k);
            if (!seen && n_names < 64 && json_is_number(v)) names[n_names++] = k;
        }
    }
    return n_names;
}

/* summary.csv: one row per point in grid order, written atomically */
static rx_status write_summary_csv(const char *dir, const axis *axes, int n_axes, const point_result *pts, int n_pts,
                                   const char *const *names, int n_names) {
    char path[1400];
    snprintf(path, sizeof path, "%s/summary.csv", dir);
    rx_atomic_file af;
    RX_TRY(rx_atomic_begin(path, &af));
    FILE *f = af.fp;
    for (int a = 0; a < n_axes; a++) fprintf(f, "%s,", axes[a].key);
    for (int j = 0; j < n_names; j++) fprintf(f, "%s,", names[j]);
    fprintf(f, "status,run\n");
    for (int i = 0; i < n_pts; i++) {
        for (int a = 0; a < n_axes; a++) fprintf(f, "%s,", pts[i].values[a]);
        for (int j = 0; j < n_names; j++) {
            json_t *v = pts[i].metrics ? json_object_get(pts[i].metrics, names[j]) : NULL;
            if (v) fprintf(f, "%.6g", json_number_value(v));
            fputc(',', f);
        }
        fprintf(f, "%s,%s\n", pts[i].ok ? "done" : "failed", pts[i].run_dir);
    }
    return rx_atomic_commit(&af);   /* reports a failed write */
}

/* <metric>.png: each metric against the first axis (points whose value there is a number) */
static rx_status plot_metrics(const char *dir, const axis *axes, const point_result *pts, int n_pts,
                              const char *const *names, int n_names) {
    double *x = calloc(n_pts > 0 ? (size_t)n_pts : 1, sizeof *x), *y = calloc(n_pts > 0 ? (size_t)n_pts : 1, sizeof *y);
    rx_status s = x && y ? RX_OK : rx_fail(RX_ERR_OOM, "sweep plots: out of memory");
    for (int j = 0; j < n_names && !s; j++) {
        int m = 0;
        for (int i = 0; i < n_pts; i++) {
            json_t *v = pts[i].metrics ? json_object_get(pts[i].metrics, names[j]) : NULL;
            char *end;
            double xv = strtod(pts[i].values[0], &end);
            if (!v || *end) continue;
            x[m] = xv;
            y[m++] = json_number_value(v);
        }
        if (m == 0) continue;
        rx_plot_series ser = {names[j], x, y, m};
        char path[1400], title[512];
        snprintf(path, sizeof path, "%s/%s.png", dir, names[j]);
        snprintf(title, sizeof title, "%s vs %s", names[j], axes[0].key);
        s = rx_plot_lines(path, title, axes[0].key, names[j], &ser, 1);
    }
    free(x);
    free(y);
    return s;
}

/* summary.md: the table sorted by the first metric (pts are sorted by the caller), atomically */
static rx_status write_summary_md(const char *dir, const axis *axes, int n_axes, const point_result *pts, int n_pts,
                                  const char *const *names, int n_names) {
    char path[1400];
    snprintf(path, sizeof path, "%s/summary.md", dir);
    rx_atomic_file af;
    RX_TRY(rx_atomic_begin(path, &af));
    FILE *f = af.fp;
    if (n_names) fprintf(f, "Sorted by %s (%s is better).\n\n", names[0], lower_is_better(names[0]) ? "lower" : "higher");
    fprintf(f, "|");
    for (int a = 0; a < n_axes; a++) fprintf(f, " %s |", axes[a].key);
    for (int j = 0; j < n_names; j++) fprintf(f, " %s |", names[j]);
    fprintf(f, " run |\n|");
    for (int k = 0; k < n_axes + n_names + 1; k++) fprintf(f, "---|");
    fprintf(f, "\n");
    for (int i = 0; i < n_pts; i++) {
        fprintf(f, "|");
        for (int a = 0; a < n_axes; a++) fprintf(f, " %s |", pts[i].values[a]);
        for (int j = 0; j < n_names; j++) {
            json_t *v = pts[i].metrics ? json_object_get(pts[i].metrics, names[j]) : NULL;
            if (v) fprintf(f, " %.4g |", json_number_value(v));
            else fprintf(f, " – |");
        }
        fprintf(f, " %s |\n", pts[i].ok ? pts[i].run_dir : "failed");
    }
    return rx_atomic_commit(&af);
}

/* summary.csv (grid order), a plot per metric, summary.md (sorted by the primary metric) */
static rx_status write_summary(const char *dir, axis *axes, int n_axes, point_result *pts, int n_pts) {
    const char *names[64];
    int n_names = metric_names(pts, n_pts, names);
    RX_TRY(write_summary_csv(dir, axes, n_axes, pts, n_pts, names, n_names));
    if (n_axes >= 1) RX_TRY(plot_metrics(dir, axes, pts, n_pts, names, n_names));
    if (n_names > 0) {
        g_sort_metric = names[0];
        qsort(pts, n_pts, sizeof *pts, cmp_points);
    }
    return write_summary_md(dir, axes, n_axes, pts, n_pts, names, n_names);
}

/* the sweep axes: the config's `sweep:` block, then the command line's "key=v1,v2,..." */
static rx_status collect_axes(const rx_config *cfg, const char *const *cli_axes, int n_cli_axes, axis axes[MAX_AXES],
                              int *n_axes, rx_config_errors *errs) {
    rx_cfg_node *sweep = rx_cfg_map_get(cfg->root, "sweep");
    for (int i = 0; sweep && sweep->type == RX_CFG_MAP && i < sweep->n && *n_axes < MAX_AXES; i++) {
        snprintf(axes[*n_axes].key, sizeof axes[*n_axes].key, "%s", sweep->keys[i]->text);
        RX_TRY(rx_config_sweep_axis(sweep->items[i], &axes[*n_axes].values));
        (*n_axes)++;
    }
    for (int i = 0; i < n_cli_axes; i++) {
        if (*n_axes == MAX_AXES) return rx_fail(RX_ERR_ARG, "at most %d sweep axes", MAX_AXES);
        RX_TRY(add_cli_axis(&axes[*n_axes], cli_axes[i], errs));
        (*n_axes)++;
    }
    return RX_OK;
}

/* grid point p's config: cfg without its sweep block and with the point's value on every
 * axis (the last axis varies fastest); pt->values gets their text */
static rx_status point_config(const rx_config *cfg, const axis *axes, int n_axes, int p, point_result *pt,
                              rx_config **out, rx_config_errors *errs) {
    rx_cfg_node *tree = rx_cfg_clone(cfg->root);
    if (!tree) return rx_fail(RX_ERR_OOM, "sweep: out of memory");
    int idx = rx_cfg_map_find(tree, "sweep");
    if (idx >= 0) rx_cfg_map_remove(tree, idx);
    int rem = p;
    for (int a = n_axes - 1; a >= 0; a--) {
        int k = rem % axes[a].values->n;
        rem /= axes[a].values->n;
        const rx_cfg_node *v = axes[a].values->items[k];
        snprintf(pt->values[a], sizeof pt->values[a], "%s", v->text ? v->text : "?");
        rx_status s = rx_config_set_path(tree, axes[a].key, v->text ? v->text : "null", v->file ? v->file : "<sweep>",
                                         v->line, v->col, errs);
        if (s) { rx_cfg_free(tree); return s; }
    }
    return rx_config_validate(tree, NULL, cfg->table, out, errs);
}

/* every point in grid order, each an ordinary run; a failed point is counted, an interrupt
 * stops the sweep */
static rx_status run_points(rx_config *const *point_cfg, const axis *axes, int n_axes, point_result *pts, int total,
                            const rx_run_options *opt, int *failures) {
    for (int p = 0; p < total; p++) {
        if (!opt->quiet) {
            fprintf(stderr, "sweep point %d/%d:", p + 1, total);
            for (int a = 0; a < n_axes; a++) fprintf(stderr, " %s=%s", axes[a].key, pts[p].values[a]);
            fprintf(stderr, "\n");
        }
        int cerr = 0;
        rx_status ps = rx_run_config(point_cfg[p], opt, pts[p].run_dir, sizeof pts[p].run_dir, &pts[p].metrics, &cerr);
        pts[p].ok = ps == RX_OK;
        if (ps == RX_ERR_INTERRUPTED) return ps;
        if (ps) { (*failures)++; if (!opt->quiet) fprintf(stderr, "sweep point %d failed: %s\n", p + 1, rx_last_error()); }
    }
    return RX_OK;
}

rx_status rx_run_sweep(rx_config *cfg, const char *const *cli_axes, int n_cli_axes, const rx_run_options *opt,
                       char *out_dir, size_t n, int *config_error) {
    axis axes[MAX_AXES];
    int n_axes = 0, total = 1;
    rx_config_errors errs = {0};
    point_result *pts = NULL;
    rx_config **point_cfg = NULL;
    rx_status s = collect_axes(cfg, cli_axes, n_cli_axes, axes, &n_axes, &errs);
    for (int a = 0; a < n_axes && !s; a++) total *= axes[a].values->n;
    if (!s && total > MAX_POINTS) s = rx_fail(RX_ERR_ARG, "sweep of %d points (at most %d)", total, MAX_POINTS);
    if (!s) {
        pts = calloc(total, sizeof *pts);
        point_cfg = calloc(total, sizeof *point_cfg);
        if (!pts || !point_cfg) s = rx_fail(RX_ERR_OOM, "sweep: out of memory");
    }
    if (s) *config_error = 1;
    else {   /* every point's config is checked before any runs: a bad value is exit 2, nothing run */
        for (int p = 0; p < total && !s; p++) s = point_config(cfg, axes, n_axes, p, &pts[p], &point_cfg[p], &errs);
        if (s) {
            rx_config_errors_sort(&errs);
            rx_config_errors_print(&errs, stderr);
            if (errs.n) rx_clear_error();
            *config_error = 1;
        }
        /* and every point can run here (backend, memory): refused up front, no sweep directory */
        for (int p = 0; p < total && !s; p++)
            if ((s = rx_run_preflight(point_cfg[p], opt)) != RX_OK) {
                char why[1024];   /* rx_fail formats into the buffer rx_last_error() points at */
                snprintf(why, sizeof why, "%s", rx_last_error());
                rx_fail(s, "sweep point %d of %d: %s", p + 1, total, why);
                *config_error = s == RX_ERR_CONFIG;
            }
    }
    char sweep_dir[1200] = "";
    if (!s) {
        char exp_dir[1200];
        const rx_params *top;
        rx_config_section_params(cfg, "", NULL, &top);
        snprintf(exp_dir, sizeof exp_dir, "%s%s/%s", opt->results_root, opt->smoke ? "/_smoke" : "", rx_param_str(top, "experiment"));
        s = alloc_sweep_dir(exp_dir, sweep_dir, sizeof sweep_dir);
    }
    int failures = 0;
    if (!s) s = run_points(point_cfg, axes, n_axes, pts, total, opt, &failures);
    if (!s) s = write_summary(sweep_dir, axes, n_axes, pts, total);
    if (!s && failures) s = rx_fail(RX_ERR_NUMERIC, "%d of %d sweep points failed; see %s/summary.csv", failures, total, sweep_dir);
    snprintf(out_dir, n, "%s", sweep_dir);
    for (int p = 0; pts && point_cfg && p < total; p++) { rx_config_free(point_cfg[p]); json_decref(pts[p].metrics); }
    free(point_cfg);
    free(pts);
    for (int a = 0; a < n_axes; a++) rx_cfg_free(axes[a].values);
    rx_config_errors_clear(&errs);
    free(errs.items);
    return s;
}
