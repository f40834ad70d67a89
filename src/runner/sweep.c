/* sweep.c — a grid of runs over sweep axes.
 *
 * Axes come from the config's `sweep:` block ({"guidance.scale": [1, 2, 3]} or
 * {start, stop, step}) and from --sweep key=v1,v2,... (repeatable). Each grid point is an
 * ordinary run with its own resolved config (the sweep block removed, the point's values
 * set), so any point can be re-run alone from its config.yaml. Stages are cached by hash,
 * so a sweep over sampling or guidance keys trains once: the first point trains, the
 * others reuse its weights. The sweep directory results/<exp>/sweep-NNNN/ gets
 * summary.csv, summary.md (sorted by the primary metric) and one plot per metric.
 *
 * Launchers: `local` runs the points here, one after the other; `slurm` writes job.sbatch,
 * a job array of one task per point, and submits it (runner/slurm.h). Either way the sweep
 * directory holds the plan (sweep.json, points/<i>.yaml) and each point's outcome
 * (points/<i>.json), which `runexp sweep status` reads; concurrent tasks of one training
 * config train once under the stage cache's lock (pipeline.c). */
#include "runner/pipeline.h"
#include "runner/slurm.h"
#include "io/plot.h"
#include "io/fsutil.h"
#include "io/json_util.h"
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <math.h>
#include <signal.h>
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

/* ---------------------------------------------------------------------------------------
 * the sweep directory's plan: sweep.json (axes, every point's values, the run options, the
 * launcher and its job) and points/<i>.yaml, each point's resolved config. A point's outcome
 * goes to points/<i>.json (state, run directory, metrics): what `sweep status` reads, so a
 * sweep run by Slurm tasks, or a local sweep cut short, is summarised the same way. */

static void point_file(char *out, size_t n, const char *dir, int p, const char *ext) {
    snprintf(out, n, "%s/points/%d.%s", dir, p, ext);
}

static rx_status write_plan(const char *dir, const char *experiment, const char *launcher, const axis *axes, int n_axes,
                            const point_result *pts, rx_config *const *point_cfg, int total, const rx_run_options *opt) {
    char path[1400];
    snprintf(path, sizeof path, "%s/points", dir);
    RX_TRY(rx_fs_mkdir_p(path));
    for (int p = 0; p < total; p++) {
        point_file(path, sizeof path, dir, p, "yaml");
        RX_TRY(rx_config_save(point_cfg[p]->root, path));
    }
    json_t *plan = json_object(), *keys = json_array(), *points = json_array(), *o = json_object();
    for (int a = 0; a < n_axes; a++) json_array_append_new(keys, json_string(axes[a].key));
    for (int p = 0; p < total; p++) {
        json_t *v = json_array();
        for (int a = 0; a < n_axes; a++) json_array_append_new(v, json_string(pts[p].values[a]));
        json_array_append_new(points, v);
    }
    json_object_set_new(o, "results_root", json_string(opt->results_root));
    json_object_set_new(o, "backend", opt->backend ? json_string(opt->backend) : json_null());
    json_object_set_new(o, "force", json_boolean(opt->force));
    json_object_set_new(o, "smoke", json_boolean(opt->smoke));
    json_object_set_new(plan, "experiment", json_string(experiment));
    json_object_set_new(plan, "launcher", json_string(launcher));
    json_object_set_new(plan, "axes", keys);
    json_object_set_new(plan, "points", points);
    json_object_set_new(plan, "options", o);
    snprintf(path, sizeof path, "%s/sweep.json", dir);
    rx_status s = rx_json_write_atomic(path, plan);
    json_decref(plan);
    return s;
}

/* points/<i>.json: "running" before the point's run starts (with the host and, under Slurm,
 * the array task), its outcome when it ends */
static rx_status write_point_record(const char *dir, int p, const char *state, const point_result *pt, const char *error) {
    json_t *r = json_object();
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0) host[0] = 0;
    const char *job = getenv("SLURM_ARRAY_JOB_ID"), *task = getenv("SLURM_ARRAY_TASK_ID");
    json_object_set_new(r, "point", json_integer(p));
    json_object_set_new(r, "state", json_string(state));
    json_object_set_new(r, "host", json_string(host));
    json_object_set_new(r, "pid", json_integer(getpid()));
    if (job && task) json_object_set_new(r, "slurm_task", json_sprintf("%s_%s", job, task));
    if (pt && pt->run_dir[0]) json_object_set_new(r, "run", json_string(pt->run_dir));
    if (pt && pt->metrics) json_object_set(r, "metrics", pt->metrics);
    if (error) json_object_set_new(r, "error", json_string(error));
    char path[1400];
    point_file(path, sizeof path, dir, p, "json");
    rx_status s = rx_json_write_atomic(path, r);
    json_decref(r);
    return s;
}

/* one point as an ordinary run, its record in points/<p>.json around it */
static rx_status run_point(const char *dir, int p, rx_config *cfg, const rx_run_options *opt, point_result *pt,
                           int *config_error) {
    RX_TRY(write_point_record(dir, p, "running", NULL, NULL));
    rx_status s = rx_run_config(cfg, opt, pt->run_dir, sizeof pt->run_dir, &pt->metrics, config_error);
    pt->ok = s == RX_OK;
    char err[2048];
    snprintf(err, sizeof err, "%s", s ? rx_last_error() : "");
    const char *state = s == RX_OK ? "done" : s == RX_ERR_INTERRUPTED ? "interrupted" : "failed";
    rx_status s2 = write_point_record(dir, p, state, pt, s ? err : NULL);
    if (s) return rx_fail(s, "%s", err);
    return s2;
}

/* every point in grid order, each an ordinary run; a failed point is counted, an interrupt
 * stops the sweep */
static rx_status run_points(const char *dir, rx_config *const *point_cfg, const axis *axes, int n_axes, point_result *pts,
                            int total, const rx_run_options *opt, int *failures) {
    for (int p = 0; p < total; p++) {
        if (!opt->quiet) {
            fprintf(stderr, "sweep point %d/%d:", p + 1, total);
            for (int a = 0; a < n_axes; a++) fprintf(stderr, " %s=%s", axes[a].key, pts[p].values[a]);
            fprintf(stderr, "\n");
        }
        int cerr = 0;
        rx_status ps = run_point(dir, p, point_cfg[p], opt, &pts[p], &cerr);
        if (ps == RX_ERR_INTERRUPTED) return ps;
        if (ps) { (*failures)++; if (!opt->quiet) fprintf(stderr, "sweep point %d failed: %s\n", p + 1, rx_last_error()); }
    }
    return RX_OK;
}

/* --launcher slurm: job.sbatch in the sweep directory, submitted; sweep.json records the job */
static rx_status submit_to_slurm(const char *dir, const char *experiment, int total, const char *sbatch,
                                 rx_sweep_launch *launch) {
    char abs_dir[4096], cwd[4096], bin[4096], script[4200], name[256];
    if (!realpath(dir, abs_dir)) return rx_fail(RX_ERR_IO, "%s: %s", dir, strerror(errno));
    if (!getcwd(cwd, sizeof cwd)) return rx_fail(RX_ERR_IO, "getcwd: %s", strerror(errno));
    ssize_t n = readlink("/proc/self/exe", bin, sizeof bin - 1);
    if (n <= 0) return rx_fail(RX_ERR_IO, "readlink /proc/self/exe: %s", strerror(errno));
    bin[n] = 0;
    snprintf(name, sizeof name, "runexp-%s", experiment);
    snprintf(script, sizeof script, "%s/job.sbatch", abs_dir);
    rx_slurm_job job = {name, total, abs_dir, cwd, bin, launch->slurm_options};
    RX_TRY(rx_slurm_write_script(script, &job));
    RX_TRY(rx_slurm_submit(sbatch, script, launch->job_id, sizeof launch->job_id));
    char path[1400];
    snprintf(path, sizeof path, "%s/sweep.json", dir);
    json_t *plan = NULL;
    RX_TRY(rx_json_load_file(path, &plan));
    json_t *sl = json_object();
    json_object_set_new(sl, "job_id", json_string(launch->job_id));
    json_object_set_new(sl, "script", json_string("job.sbatch"));
    json_object_set_new(sl, "options", json_string(launch->slurm_options ? launch->slurm_options : ""));
    json_object_set_new(plan, "slurm", sl);
    rx_status s = rx_json_write_atomic(path, plan);
    json_decref(plan);
    return s;
}

/* every point's config is built and checked before anything is written: a bad value is exit
 * 2, no sweep directory; locally, every point must also be able to run here (backend,
 * memory). Slurm's tasks run on other machines: each checks itself there. */
static rx_status check_points(rx_config *cfg, const axis *axes, int n_axes, point_result *pts, rx_config **point_cfg,
                              int total, const rx_run_options *opt, int local, int *config_error) {
    rx_config_errors errs = {0};
    rx_status s = RX_OK;
    for (int p = 0; p < total && !s; p++) s = point_config(cfg, axes, n_axes, p, &pts[p], &point_cfg[p], &errs);
    if (s) {
        rx_config_errors_sort(&errs);
        rx_config_errors_print(&errs, stderr);
        if (errs.n) rx_clear_error();
        *config_error = 1;
    }
    rx_config_errors_clear(&errs);
    free(errs.items);
    for (int p = 0; p < total && !s && local; p++)
        if ((s = rx_run_preflight(point_cfg[p], opt)) != RX_OK) {
            char why[1024];   /* rx_fail formats into the buffer rx_last_error() points at */
            snprintf(why, sizeof why, "%s", rx_last_error());
            rx_fail(s, "sweep point %d of %d: %s", p + 1, total, why);
            *config_error = s == RX_ERR_CONFIG;
        }
    return s;
}

rx_status rx_run_sweep(rx_config *cfg, const char *const *cli_axes, int n_cli_axes, const rx_run_options *opt,
                       rx_sweep_launch *launch, char *out_dir, size_t n, int *config_error) {
    axis axes[MAX_AXES];
    int n_axes = 0, total = 1;
    rx_config_errors errs = {0};
    point_result *pts = NULL;
    rx_config **point_cfg = NULL;
    const int slurm = launch && launch->launcher && !strcmp(launch->launcher, "slurm");
    char sbatch[1024] = "";
    rx_status s = collect_axes(cfg, cli_axes, n_cli_axes, axes, &n_axes, &errs);
    for (int a = 0; a < n_axes && !s; a++) total *= axes[a].values->n;
    if (!s && total > MAX_POINTS) s = rx_fail(RX_ERR_ARG, "sweep of %d points (at most %d)", total, MAX_POINTS);
    if (!s && slurm) s = rx_slurm_check_options(launch->slurm_options);
    if (!s && slurm) s = rx_slurm_find_program("sbatch", sbatch, sizeof sbatch);
    if (!s) {
        pts = calloc(total, sizeof *pts);
        point_cfg = calloc(total, sizeof *point_cfg);
        if (!pts || !point_cfg) s = rx_fail(RX_ERR_OOM, "sweep: out of memory");
    }
    if (s) *config_error = 1;
    else s = check_points(cfg, axes, n_axes, pts, point_cfg, total, opt, !slurm, config_error);
    char sweep_dir[1200] = "";
    const rx_params *top;
    rx_config_section_params(cfg, "", NULL, &top);
    const char *experiment = rx_param_str(top, "experiment");
    if (!s) {
        char exp_dir[1200];
        snprintf(exp_dir, sizeof exp_dir, "%s%s/%s", opt->results_root, opt->smoke ? "/_smoke" : "", experiment);
        s = alloc_sweep_dir(exp_dir, sweep_dir, sizeof sweep_dir);
    }
    if (!s) s = write_plan(sweep_dir, experiment, slurm ? "slurm" : "local", axes, n_axes, pts, point_cfg, total, opt);
    int failures = 0;
    if (!s && slurm) {
        s = submit_to_slurm(sweep_dir, experiment, total, sbatch, launch);
        launch->n_tasks = total;
    } else if (!s) {
        s = run_points(sweep_dir, point_cfg, axes, n_axes, pts, total, opt, &failures);
        if (!s) s = write_summary(sweep_dir, axes, n_axes, pts, total);
        if (!s && failures) s = rx_fail(RX_ERR_NUMERIC, "%d of %d sweep points failed; see %s/summary.csv", failures, total, sweep_dir);
    }
    snprintf(out_dir, n, "%s", sweep_dir);
    for (int p = 0; pts && point_cfg && p < total; p++) { rx_config_free(point_cfg[p]); json_decref(pts[p].metrics); }
    free(point_cfg);
    free(pts);
    for (int a = 0; a < n_axes; a++) rx_cfg_free(axes[a].values);
    rx_config_errors_clear(&errs);
    free(errs.items);
    return s;
}

/* ---------------------------------------------------------------------------------------
 * a sweep directory read back: one point run by a Slurm task, and the sweep's status */

static rx_status load_plan(const char *dir, json_t **plan, int *total) {
    char path[1400];
    snprintf(path, sizeof path, "%s/sweep.json", dir);
    if (!rx_fs_exists(path)) return rx_fail(RX_ERR_IO, "%s: no sweep.json (not a sweep directory of this runexp)", dir);
    RX_TRY(rx_json_load_file(path, plan));
    json_t *pts = json_object_get(*plan, "points"), *axes = json_object_get(*plan, "axes");
    *total = (int)json_array_size(pts);
    if (!json_is_array(pts) || !json_is_array(axes) || *total == 0 || json_array_size(axes) > MAX_AXES ||
        !json_is_object(json_object_get(*plan, "options"))) {
        json_decref(*plan);
        *plan = NULL;
        return rx_fail(RX_ERR_FORMAT, "%s: not a sweep plan (axes, points, options)", path);
    }
    return RX_OK;
}

rx_status rx_sweep_point_open(const char *dir, int point, json_t **plan, rx_run_options *opt, char *config_path, size_t n) {
    int total = 0;
    RX_TRY(load_plan(dir, plan, &total));
    if (point < 0 || point >= total) {
        json_decref(*plan);
        *plan = NULL;
        return rx_fail(RX_ERR_ARG, "%s: no point %d (the sweep has points 0 to %d)", dir, point, total - 1);
    }
    json_t *o = json_object_get(*plan, "options");
    memset(opt, 0, sizeof *opt);
    opt->results_root = json_string_value(json_object_get(o, "results_root"));
    opt->backend = json_string_value(json_object_get(o, "backend"));
    opt->force = json_is_true(json_object_get(o, "force"));
    opt->smoke = json_is_true(json_object_get(o, "smoke"));
    if (!opt->results_root) opt->results_root = "results";
    snprintf(config_path, n, "%s/points/%d.yaml", dir, point);
    return RX_OK;
}

rx_status rx_sweep_point(const char *dir, int point, rx_config *cfg, const rx_run_options *opt, char *run_dir, size_t n,
                         int *config_error) {
    point_result pt = {0};
    rx_status s = run_point(dir, point, cfg, opt, &pt, config_error);
    snprintf(run_dir, n, "%s", pt.run_dir);
    json_decref(pt.metrics);
    return s;
}

/* whether the process of a "running" record still runs: known only on the host that wrote it
 * (elsewhere, or without a pid, it is taken to run) */
static int recorded_process_alive(json_t *rec) {
    char host[256] = "";
    const char *h = json_string_value(json_object_get(rec, "host"));
    json_int_t pid = json_integer_value(json_object_get(rec, "pid"));
    if (!h || pid <= 0 || gethostname(host, sizeof host - 1) != 0 || strcmp(h, host)) return 1;
    return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

/* a point's state from its record and the queue: pending, running, done or failed (the
 * queue's word, or the reason, in why) */
static const char *point_state(const char *dir, int p, const char *queue, int queue_known, int slurm, point_result *pt,
                               char *why, size_t n) {
    char path[1400];
    point_file(path, sizeof path, dir, p, "json");
    json_t *rec = rx_fs_exists(path) ? json_load_file(path, 0, NULL) : NULL;
    const char *st = rec ? json_string_value(json_object_get(rec, "state")) : NULL;
    const char *run = rec ? json_string_value(json_object_get(rec, "run")) : NULL;
    const char *err = rec ? json_string_value(json_object_get(rec, "error")) : NULL;
    snprintf(pt->run_dir, sizeof pt->run_dir, "%s", run ? run : "");
    snprintf(why, n, "%s", err ? err : queue);
    const char *state;
    /* the states of a job that ended (sacct(1), JOB STATE CODES); any other is still queued */
    static const char *const ended[] = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "PREEMPTED",
                                        "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "REVOKED"};
    int queued = queue[0] != 0;
    for (size_t k = 0; k < sizeof ended / sizeof *ended; k++) queued &= strcmp(queue, ended[k]) != 0;
    if (st && !strcmp(st, "done")) {
        state = "done";
        pt->ok = 1;
        pt->metrics = json_incref(json_object_get(rec, "metrics"));
    } else if (st && strcmp(st, "running")) state = "failed";
    else if (st && !recorded_process_alive(rec)) {   /* killed: SIGKILL, the machine's OOM killer */
        state = "failed";
        snprintf(why, n, "its process (pid %lld) ended without finishing the point",
                 (long long)json_integer_value(json_object_get(rec, "pid")));
    } else if (slurm && queue_known && !queued) {   /* the task left the queue without an outcome */
        state = "failed";
        snprintf(why, n, "the Slurm task ended without finishing the point (%s); see slurm-*_%d.out",
                 queue[0] ? queue : "no longer queued", p);
    } else state = st ? "running" : !strcmp(queue, "RUNNING") ? "running" : "pending";
    json_decref(rec);
    return state;
}

rx_status rx_sweep_status(const char *dir, FILE *out, int *config_error) {
    json_t *plan = NULL;
    int total = 0;
    rx_status s = load_plan(dir, &plan, &total);
    if (s) { *config_error = 1; return s; }
    json_t *keys = json_object_get(plan, "axes"), *values = json_object_get(plan, "points");
    const char *launcher = json_string_value(json_object_get(plan, "launcher"));
    const char *job = json_string_value(json_object_get(json_object_get(plan, "slurm"), "job_id"));
    const int slurm = launcher && !strcmp(launcher, "slurm");
    axis axes[MAX_AXES] = {0};
    const int n_axes = (int)json_array_size(keys);
    for (int a = 0; a < n_axes; a++) {
        const char *k = json_string_value(json_array_get(keys, a));
        snprintf(axes[a].key, sizeof axes[a].key, "%s", k ? k : "?");
    }
    point_result *pts = calloc(total, sizeof *pts);
    char (*queue)[32] = calloc(total, sizeof *queue);
    if (!pts || !queue) { free(pts); free(queue); json_decref(plan); return rx_fail(RX_ERR_OOM, "sweep status: out of memory"); }
    int queue_known = 0;
    if (slurm && job) rx_slurm_task_states(job, total, queue, &queue_known);   /* before the records: see point_state */
    int counts[4] = {0};
    const char *names[4] = {"pending", "running", "done", "failed"};
    fprintf(out, "sweep %s: %d points, launcher %s%s%s%s\n", dir, total, launcher ? launcher : "?", job ? ", Slurm job " : "",
            job ? job : "",
            slurm && !job ? " (never submitted: sbatch refused job.sbatch; states from the records only)"
            : slurm && !queue_known ? " (the Slurm queue could not be asked: states from the records only)" : "");
    int width[MAX_AXES];   /* a column per axis, as wide as its name or longest value */
    for (int a = 0; a < n_axes; a++) {
        width[a] = (int)strlen(axes[a].key);
        for (int p = 0; p < total; p++) {
            const char *v = json_string_value(json_array_get(json_array_get(values, p), a));
            snprintf(pts[p].values[a], sizeof pts[p].values[a], "%s", v ? v : "?");
            if ((int)strlen(pts[p].values[a]) > width[a]) width[a] = (int)strlen(pts[p].values[a]);
        }
    }
    fprintf(out, "point");
    for (int a = 0; a < n_axes; a++) fprintf(out, "  %-*s", width[a], axes[a].key);
    fprintf(out, "  state    run\n");
    for (int p = 0; p < total; p++) {
        char why[2048];
        const char *st = point_state(dir, p, queue[p], queue_known, slurm, &pts[p], why, sizeof why);
        for (int k = 0; k < 4; k++) counts[k] += !strcmp(st, names[k]);
        fprintf(out, "%5d", p);
        for (int a = 0; a < n_axes; a++) fprintf(out, "  %-*s", width[a], pts[p].values[a]);
        fprintf(out, "  %-7s  %s%s%s%s\n", st, pts[p].run_dir[0] ? pts[p].run_dir : "-", why[0] ? " (" : "", why, why[0] ? ")" : "");
    }
    fprintf(out, "%d pending, %d running, %d done, %d failed\n", counts[0], counts[1], counts[2], counts[3]);
    /* all finished: the summary a local sweep writes at its end, from the same code */
    if (counts[0] + counts[1] == 0) {
        s = write_summary(dir, axes, n_axes, pts, total);
        if (!s) fprintf(out, "summary: %s/summary.csv, %s/summary.md\n", dir, dir);
        if (!s && counts[3]) s = rx_fail(RX_ERR_NUMERIC, "%d of %d sweep points failed; see %s/summary.csv", counts[3], total, dir);
    }
    for (int p = 0; p < total; p++) json_decref(pts[p].metrics);
    free(pts);
    free(queue);
    json_decref(plan);
    return s;
}
