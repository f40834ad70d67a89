/* commands.c — check, run, resume, export, data fetch. */
#include "runner/runner.h"
#include "runner/checkpoint.h"
#include "io/fsutil.h"
#include "io/safetensors.h"
#include "data/fetch.h"
#include <dirent.h>
#include <string.h>
#include <yaml.h>
#include <png.h>
#include <cblas.h>

/* resolve + hooks; prints every config error (the CLI's job, but errors are a list) */
static rx_status load_config(const char *file, const char *const *sets, int n_sets, rx_config **cfg, int *config_error) {
    rx_config_errors errs = {0};
    rx_status s = rx_config_resolve(file, sets, n_sets, NULL, cfg, &errs);   /* runs the validate hooks too */
    if (s) {
        rx_config_errors_sort(&errs);
        rx_config_errors_print(&errs, stderr);
        if (errs.n) rx_clear_error();   /* printed already */
        *config_error = 1;
        if (*cfg) { rx_config_free(*cfg); *cfg = NULL; }
    }
    rx_config_errors_clear(&errs);
    free(errs.items);
    return s;
}

rx_status rx_cmd_check(const rx_cli *cli, int *config_error) {
    rx_config *cfg = NULL;
    RX_TRY(load_config(cli->file, cli->sets, cli->n_sets, &cfg, config_error));
    rx_status s = rx_config_emit(cfg->root, stdout);
    /* parameter count: build the model on the CPU (weights are allocated, not trained) */
    const rx_component *mc = NULL;
    const rx_params *mp = NULL;
    rx_ctx *c = NULL;
    rx_model *m = NULL;
    if (!s) s = rx_config_section_params(cfg, "model", &mc, &mp);
    if (!s) s = rx_ctx_create(rx_backend_cpu(), NULL, 1 << 20, &c);
    if (!s) s = rx_model_create(c, mc, mp, 0, &m);
    if (!s) printf("parameters: %s %lld\n", mc->name, (long long)rx_model_param_count(m));
    if (s == RX_ERR_CONFIG) *config_error = 1;
    rx_model_destroy(m);
    rx_ctx_destroy(c);
    rx_config_free(cfg);
    return s;
}

/* ---------------------------------------------------------------------------------------
 * stage cache: an earlier finished run of this experiment whose run.json records the same
 * stage hash (and still holds the stage's output file) */
static int find_cached(const char *exp_dir, const char *hash_key, const char *hash, const char *need_file,
                       const char *not_dir, char *out, size_t n) {
    DIR *d = opendir(exp_dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    char best[256] = "";
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s/run.json", exp_dir, e->d_name);
        json_t *r = json_load_file(path, 0, NULL);
        if (!r) continue;
        const char *st = json_string_value(json_object_get(r, "status"));
        const char *h = json_string_value(json_object_get(r, hash_key));
        snprintf(path, sizeof path, "%s/%s/%s", exp_dir, e->d_name, need_file);
        char dir[1400];
        snprintf(dir, sizeof dir, "%s/%s", exp_dir, e->d_name);
        if (st && h && !strcmp(st, "done") && !strcmp(h, hash) && rx_fs_exists(path) && strcmp(dir, not_dir) &&
            strcmp(e->d_name, best) > 0) {   /* the newest */
            snprintf(best, sizeof best, "%s", e->d_name);
            found = 1;
        }
        json_decref(r);
    }
    closedir(d);
    if (found) snprintf(out, n, "%s/%s", exp_dir, best);
    return found;
}

static json_t *versions(void) {
    json_t *v = json_object();
    json_object_set_new(v, "runexp", json_string("0.1.0"));
    json_object_set_new(v, "libyaml", json_string(yaml_get_version_string()));
    json_object_set_new(v, "libpng", json_string(PNG_LIBPNG_VER_STRING));
    json_object_set_new(v, "jansson", json_string(JANSSON_VERSION));
    json_object_set_new(v, "openblas", json_string(openblas_get_config()));
    return v;
}

static rx_status run_stages(rx_experiment *ex, rx_run *run, const rx_run_options *opt, int resume, json_t **metrics) {
    char cached[1200], path[1400];
    rx_status s = RX_OK;
    if (ex->train) {
        rx_run_set(run, "train_hash", json_string(ex->train_hash));
        if (!opt->force && !resume &&
            find_cached(run->exp_dir, "train_hash", ex->train_hash, "checkpoints/last.safetensors", run->dir, cached, sizeof cached)) {
            snprintf(path, sizeof path, "%s/checkpoints/last.safetensors", cached);
            rx_ckpt_group g[2] = {{"model", &ex->model->params, 0}, {"ema", &ex->ema, 1}};
            s = rx_ckpt_load(ex->ctx, path, g, ex->ema.n ? 2 : 1, ex->train_hash, NULL);
            if (!s) {
                rx_run_log(run, "train: reusing the trained weights of %s (same training config)", cached);
                rx_run_set(run, "train_reused_from", json_string(cached));
            }
        } else {
            rx_run_set_status(run, "running", NULL);
            s = rx_stage_train(ex, run, resume);
        }
    }
    if (!s && ex->classify) {
        if (ex->eval) {
            rx_run_set(run, "eval_hash", json_string(ex->eval_hash));
            s = rx_stage_eval_classifier(ex, run, metrics);
        }
        return s;
    }
    if (!s && ex->sample) {
        rx_run_set(run, "sample_hash", json_string(ex->sample_hash));
        s = rx_stage_sample(ex, run);
    }
    if (!s && ex->eval) {
        rx_run_set(run, "eval_hash", json_string(ex->eval_hash));
        s = rx_stage_eval(ex, run, metrics);
    }
    return s;
}

static void metrics_csv(json_t *metrics, char *out, size_t n) {
    out[0] = 0;
    if (!metrics) return;
    const char *k;
    json_t *v;
    size_t len = 0;
    json_object_foreach(metrics, k, v) {
        if (json_is_number(v) && len < n)
            len += snprintf(out + len, n - len, "%s%s=%.6g", len ? ";" : "", k, json_number_value(v));
    }
}

static rx_status execute(rx_experiment *ex, rx_run *run, const rx_run_options *opt, int resume, json_t **metrics_out) {
    json_t *metrics = NULL;
    rx_run_set(run, "backend", json_string(ex->backend_name));
    rx_run_set(run, "device", json_string(ex->device_name));
    rx_run_set(run, "versions", versions());
    rx_run_set(run, "smoke", json_boolean(opt->smoke));
    rx_run_set(run, "parameters", json_integer(rx_model_param_count(ex->model)));
    rx_run_log(run, "runexp: %s -> %s (backend %s, %s)", ex->name, run->dir, ex->backend_name, ex->device_name);
    rx_status s = rx_run_save_record(run);
    if (!s) s = run_stages(ex, run, opt, resume, &metrics);
    char err[2048];
    snprintf(err, sizeof err, "%s", s ? rx_last_error() : "");
    rx_status s2 = rx_run_set_status(run, s == RX_OK ? "done" : s == RX_ERR_INTERRUPTED ? "interrupted" : "failed", s ? err : NULL);
    char csv[1024];
    metrics_csv(metrics, csv, sizeof csv);
    rx_status s3 = rx_run_finish(run, csv);
    if (s) rx_run_log(run, "runexp: run %s: %s", s == RX_ERR_INTERRUPTED ? "interrupted" : "failed", err);
    else rx_run_log(run, "runexp: done in %.1f s", rx_now() - run->t_start);
    if (metrics_out) *metrics_out = metrics;
    else json_decref(metrics);
    if (s) rx_fail(s, "%s", err);
    return s ? s : s2 ? s2 : s3;
}

rx_status rx_run_config(rx_config *cfg, const rx_run_options *opt, char *run_dir, size_t n, json_t **metrics,
                        int *config_error) {
    rx_experiment ex;
    rx_status s = rx_experiment_build(&ex, cfg, opt);
    if (s) {
        if (s == RX_ERR_CONFIG || s == RX_ERR_IO || s == RX_ERR_FORMAT) *config_error = 1;
        rx_experiment_free(&ex);
        return s;
    }
    char root[1100];
    snprintf(root, sizeof root, "%s%s", opt->results_root, opt->smoke ? "/_smoke" : "");
    rx_run run;
    s = rx_run_create(&run, root, ex.name, ex.hash);
    if (!s) {
        run.quiet = opt->quiet;
        char path[1200];
        snprintf(path, sizeof path, "%s/config.yaml", run.dir);
        s = rx_config_save(cfg->root, path);
        if (!s) s = execute(&ex, &run, opt, 0, metrics);
        snprintf(run_dir, n, "%s", run.dir);
        rx_run_close(&run);
    }
    rx_experiment_free(&ex);
    return s;
}

static void options_from_cli(const rx_cli *cli, rx_run_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->results_root = cli->results_root;
    opt->backend = cli->backend;
    opt->force = cli->force;
    opt->smoke = cli->smoke;
    opt->quiet = cli->quiet;
}

rx_status rx_cmd_run(const rx_cli *cli, char *out_dir, size_t n, int *config_error) {
    rx_config *cfg = NULL;
    RX_TRY(load_config(cli->file, cli->sets, cli->n_sets, &cfg, config_error));
    rx_run_options opt;
    options_from_cli(cli, &opt);
    /* the config.yaml of a run directory: a reproduction, so every stage runs again (the
     * stage cache would otherwise hand back the original's results) */
    char rec[1200];
    const char *slash = strrchr(cli->file, '/');
    snprintf(rec, sizeof rec, "%.*s/run.json", slash ? (int)(slash - cli->file) : 1, slash ? cli->file : ".");
    if (!strcmp(slash ? slash + 1 : cli->file, "config.yaml") && rx_fs_exists(rec)) {
        opt.force = 1;
        if (!opt.quiet) fprintf(stderr, "runexp: reproducing the run in %.*s as a new run\n", slash ? (int)(slash - cli->file) : 1,
                                slash ? cli->file : ".");
    }
    rx_cfg_node *sweep = rx_cfg_map_get(cfg->root, "sweep");
    rx_status s;
    if (cli->n_sweeps > 0 || (sweep && !rx_cfg_is_null(sweep) && sweep->n > 0))
        s = rx_run_sweep(cli, cfg, &opt, out_dir, n, config_error);
    else
        s = rx_run_config(cfg, &opt, out_dir, n, NULL, config_error);
    rx_config_free(cfg);
    return s;
}

rx_status rx_cmd_resume(const rx_cli *cli, char *out_dir, size_t n, int *config_error) {
    char path[1200];
    snprintf(path, sizeof path, "%s/config.yaml", cli->file);
    if (!rx_fs_exists(path)) {
        *config_error = 1;
        return rx_fail(RX_ERR_IO, "--resume %s: no config.yaml there (not a run directory)", cli->file);
    }
    rx_config *cfg = NULL;
    RX_TRY(load_config(path, NULL, 0, &cfg, config_error));
    rx_run_options opt;
    options_from_cli(cli, &opt);
    rx_experiment ex;
    rx_status s = rx_experiment_build(&ex, cfg, &opt);
    rx_run run = {0};
    if (!s) s = rx_run_open(&run, cli->file);
    if (!s) {
        run.quiet = opt.quiet;
        const char *st = json_string_value(json_object_get(run.record, "status"));
        if (st && !strcmp(st, "done")) s = rx_fail(RX_ERR_ARG, "--resume %s: this run is already done", cli->file);
        else if (strcmp(run.config_hash, ex.hash))
            s = rx_fail(RX_ERR_CONFIG, "--resume %s: config.yaml was edited (hash %s, run.json says %s)", cli->file, ex.hash,
                        run.config_hash);
        if (s) *config_error = 1;
        else {
            rx_run_set_status(&run, "running", NULL);
            s = execute(&ex, &run, &opt, 1, NULL);
        }
        snprintf(out_dir, n, "%s", run.dir);
    } else if (s == RX_ERR_CONFIG || s == RX_ERR_IO) *config_error = 1;
    rx_run_close(&run);
    rx_experiment_free(&ex);
    rx_config_free(cfg);
    return s;
}

/* The model's parameters as one bare safetensors file (parameter names as keys, no optimizer
 * state): what `model.weights`, `init` and the classifier feature extractor load. The training
 * config rides along in the metadata, for provenance. */
static rx_status export_weights(const rx_model *m, const char *yaml, const char *source, const char *path) {
    rx_st_writer *w = NULL;
    RX_TRY(rx_st_writer_create(&w));
    rx_status s = RX_OK;
    for (int i = 0; i < m->params.n && !s; i++) {   // CPU context: the data are host memory
        const rx_tensor *t = m->params.t[i];
        s = rx_st_writer_add_f32(w, t->name, t->ndim, t->shape, t->data);
    }
    if (!s) s = rx_st_writer_set_metadata(w, "config", yaml);
    if (!s) s = rx_st_writer_set_metadata(w, "exported_from", source);
    if (!s) s = rx_st_writer_write(w, path);
    rx_st_writer_free(w);
    return s;
}

/* export: rebuild the model from the config stored in the checkpoint, load its (EMA)
 * weights, write diffusers' diffusion_pytorch_model.safetensors + config.json (--to diffusers)
 * or the bare weights file (--to weights) */
rx_status rx_cmd_export(const rx_cli *cli, int *config_error) {
    rx_st_file *f = NULL;
    rx_status s = rx_st_open(cli->file, &f);
    if (s) { *config_error = 1; return s; }
    const char *meta_yaml = rx_st_metadata(f, "config");
    if (!meta_yaml) {
        rx_st_close(f);
        *config_error = 1;
        return rx_fail(RX_ERR_FORMAT, "%s: no config in the checkpoint's metadata (not written by runexp train?)", cli->file);
    }
    char *yaml = strdup(meta_yaml);   // outlives the file
    if (!yaml) { rx_st_close(f); return rx_fail(RX_ERR_OOM, "export: out of memory"); }
    rx_config_errors errs = {0};
    rx_cfg_node *tree = NULL;
    rx_config *cfg = NULL;
    s = rx_yaml_parse_string(yaml, strlen(yaml), cli->file, &tree, &errs);
    rx_st_close(f);
    if (!s) s = rx_config_validate(tree, NULL, NULL, &cfg, &errs);
    if (s) {
        rx_config_errors_print(&errs, stderr);
        rx_config_errors_clear(&errs);
        free(errs.items);
        free(yaml);
        *config_error = 1;
        return s;
    }
    free(errs.items);
    const rx_component *mc;
    const rx_params *mp;
    rx_ctx *c = NULL;
    rx_model *m = NULL;
    s = rx_config_section_params(cfg, "model", &mc, &mp);
    if (!s) s = rx_ctx_create(rx_backend_cpu(), NULL, 1 << 20, &c);
    if (!s) s = rx_model_create(c, mc, mp, 0, &m);
    if (!s) s = rx_model_load_weights(c, m, cli->file, 1);
    if (!s) s = !strcmp(cli->export_to, "weights") ? export_weights(m, yaml, cli->file, cli->export_dir)
                                                    : rx_model_export_diffusers(c, m, cli->export_dir);
    if (!s) printf("%s\n", cli->export_dir);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
    rx_config_free(cfg);
    free(yaml);
    return s;
}

rx_status rx_cmd_data_fetch(const rx_cli *cli, int *config_error) {
    return rx_data_fetch(cli->all ? "all" : cli->file, "data");
}
