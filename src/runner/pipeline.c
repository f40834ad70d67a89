/* pipeline.c — one run of an experiment: the stages in order, each reused from the stage
 * cache when an earlier run finished it with the same hash, and the run's records. */
#include "runner/memory_plan.h"
#include "runner/pipeline.h"
#include "kernels/cuda_backend.h"
#include "runner/checkpoint.h"
#include "io/fsutil.h"
#include <dirent.h>
#include <string.h>
#include <yaml.h>
#include <png.h>
#include <cblas.h>

int rx_stage_cache_find(const char *exp_dir, const char *hash_key, const char *hash, const char *need_file,
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

/* the train stage's result taken from the cached run's checkpoint (model and, when trained
 * with one, EMA weights) */
static rx_status reuse_training(rx_experiment *ex, rx_run *run, const char *cached) {
    char path[1400];
    snprintf(path, sizeof path, "%s/checkpoints/last.safetensors", cached);
    rx_ckpt_group g[2] = {{"model", &ex->model->params, 0}, {"ema", &ex->ema, 1}};
    rx_status s = rx_ckpt_load(ex->ctx, path, g, ex->ema.n ? 2 : 1, ex->train_hash, NULL);
    if (s) {   /* every later run of this config would find the same entry: say how to get past it */
        char why[1024];
        snprintf(why, sizeof why, "%s", rx_last_error());
        return rx_fail(s, "%s (the stage cache's training of %s; --force trains again)", why, cached);
    }
    rx_run_log(run, "train: reusing the trained weights of %s (same training config)", cached);
    rx_run_set(run, "train_reused_from", json_string(cached));
    return RX_OK;
}

/* train (or reuse an earlier run's training), then sample and eval as the objective's task
 * says; each stage's hash goes to run.json before it runs */
static rx_status run_stages(rx_experiment *ex, rx_run *run, const rx_run_options *opt, int resume, json_t **metrics) {
    rx_status s = RX_OK;
    if (ex->train) {
        rx_run_set(run, "train_hash", json_string(ex->train_hash));
        char cached[1200];
        if (!opt->force && !resume &&
            rx_stage_cache_find(run->exp_dir, "train_hash", ex->train_hash, "checkpoints/last.safetensors", run->dir,
                                cached, sizeof cached)) {
            s = reuse_training(ex, run, cached);
        } else {
            rx_run_set_status(run, "running", NULL);
            if (ex->latent) s = rx_stage_latents(ex, run);   /* what the model trains on */
            if (!s) s = rx_stage_train(ex, run, resume);
        }
    }
    if (!s && ex->sample && ex->task->generates) {
        rx_run_set(run, "sample_hash", json_string(ex->sample_hash));
        s = rx_stage_sample(ex, run);
    }
    if (!s && ex->eval) {
        rx_run_set(run, "eval_hash", json_string(ex->eval_hash));
        s = ex->task->eval(ex, run, metrics);
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

/* log.tensorboard: this process's events file, opened before any stage logs */
static rx_status open_tensorboard(rx_experiment *ex, rx_run *run) {
    if (!ex->log || !rx_param_bool(ex->log, "tensorboard")) return RX_OK;
    char *yaml = rx_config_emit_string(ex->cfg->root);
    if (!yaml) return rx_fail(RX_ERR_OOM, "tensorboard: out of memory emitting the config");
    rx_status s = rx_run_tensorboard_open(run, yaml);
    free(yaml);
    return s;
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
    if (!s) s = open_tensorboard(ex, run);
    if (!s) s = run_stages(ex, run, opt, resume, &metrics);
    char err[2048];
    snprintf(err, sizeof err, "%s", s ? rx_last_error() : "");
    const char *status = s == RX_OK ? "done" : s == RX_ERR_INTERRUPTED ? "interrupted" : "failed";
    rx_status s2 = rx_run_set_final_status(run, status, s ? err : NULL);
    char err2[2048] = "";
    /* a full disk can refuse the final run.json: it then still says running, so log.txt (and
     * stderr) must say what the status is and why the record could not take it */
    if (s2) {
        snprintf(err2, sizeof err2, "run.json could not record status '%s': %s", status, rx_last_error());
        rx_run_log(run, "runexp: %s", err2);
    }
    char csv[1024];
    metrics_csv(metrics, csv, sizeof csv);
    rx_status s3 = rx_run_finish(run, csv);
    if (s) rx_run_log(run, "runexp: run %s: %s", s == RX_ERR_INTERRUPTED ? "interrupted" : "failed", err);
    else rx_run_log(run, "runexp: done in %.1f s", rx_now() - run->t_start);
    if (metrics_out) *metrics_out = metrics;
    else json_decref(metrics);
    if (s) rx_fail(s, "%s", err);
    else if (s2) rx_fail(s2, "%s", err2);
    return s ? s : s2 ? s2 : s3;
}

/* a run whose directory exists but that failed before its stages (its config.yaml could not be
 * written): run.json and index.csv say failed and why, as after a failed stage */
static rx_status fail_before_stages(rx_run *run, rx_status s) {
    char err[2048];
    snprintf(err, sizeof err, "%s", rx_last_error());
    rx_run_log(run, "runexp: run failed: %s", err);
    if (rx_run_set_final_status(run, "failed", err) != RX_OK)
        rx_run_log(run, "runexp: run.json could not record status 'failed': %s", rx_last_error());
    rx_run_finish(run, "");
    return rx_fail(s, "%s", err);
}

/* a run that cannot fit is refused before anything is allocated or written (smoke runs are
 * shrunk after this point and always fit) */
static rx_status check_memory(const rx_config *cfg, const rx_run_options *opt) {
    if (opt->smoke) return RX_OK;
    rx_memory_plan plan;
    RX_TRY(rx_memory_plan_config(cfg, &plan));
    const rx_params *train = NULL;
    int ckpt = rx_config_section_params(cfg, "train", NULL, &train) == RX_OK && rx_param_bool(train, "gradient_checkpointing");
    rx_clear_error();
    return rx_memory_plan_check_fits(&plan, ckpt);
}

rx_status rx_run_preflight(const rx_config *cfg, const rx_run_options *opt) {
    const rx_params *top = NULL;
    if (rx_config_section_params(cfg, "", NULL, &top) != RX_OK) return RX_OK;   /* the build names the error */
    const char *want = opt->backend ? opt->backend : rx_param_str(top, "backend");
    if (!strcmp(want, "cuda") && rx_cuda_device_count() <= 0)
        return rx_fail(RX_ERR_CONFIG, "backend: cuda requested but no CUDA device answers on this machine "
                                      "(backend: cpu or auto runs on the CPU)");
    return check_memory(cfg, opt);
}

rx_status rx_run_config(rx_config *cfg, const rx_run_options *opt, char *run_dir, size_t n, json_t **metrics,
                        int *config_error) {
    rx_status s = rx_run_preflight(cfg, opt);
    if (s) {
        if (s == RX_ERR_CONFIG) *config_error = 1;
        return s;
    }
    rx_experiment ex;
    s = rx_experiment_build(&ex, cfg, opt);
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
        s = s ? fail_before_stages(&run, s) : execute(&ex, &run, opt, 0, metrics);
        snprintf(run_dir, n, "%s", run.dir);
    }
    rx_run_close(&run);   /* also after a create that failed half way: it may hold the run's lock */
    rx_experiment_free(&ex);
    return s;
}

rx_status rx_run_resume(rx_config *cfg, const rx_run_options *opt, const char *run_dir, char *out_dir, size_t n,
                        int *config_error) {
    /* the run's lock first: a resume refused because another process holds the run loads
     * nothing and writes nothing */
    rx_run run = {0};
    rx_status s = rx_run_open(&run, run_dir);
    rx_experiment ex;
    memset(&ex, 0, sizeof ex);
    if (!s) s = rx_experiment_build(&ex, cfg, opt);
    if (!s) {
        run.quiet = opt->quiet;
        const char *st = json_string_value(json_object_get(run.record, "status"));
        if (st && !strcmp(st, "done")) s = rx_fail(RX_ERR_ARG, "--resume %s: this run is already done", run_dir);
        else if (strcmp(run.config_hash, ex.hash))
            s = rx_fail(RX_ERR_CONFIG, "--resume %s: config.yaml was edited (hash %s, run.json says %s)", run_dir, ex.hash,
                        run.config_hash);
        if (s) *config_error = 1;
        else {
            s = rx_run_remove_stale_temps(&run);
            if (!s) s = rx_run_set_status(&run, "running", NULL);
            if (!s) s = execute(&ex, &run, opt, 1, NULL);
        }
        snprintf(out_dir, n, "%s", run.dir);
    } else if (s == RX_ERR_CONFIG || s == RX_ERR_IO) *config_error = 1;
    rx_run_close(&run);
    rx_experiment_free(&ex);
    return s;
}
