/* pipeline.c — one run of an experiment: the stages in order, each reused from the stage
 * cache when an earlier run finished it with the same hash, and the run's records. */
#include "runner/memory_plan.h"
#include "runner/pipeline.h"
#include "kernels/cuda_backend.h"
#include "kernels/cpu/cpu.h"   /* cpu_conv2d_impl: which conv2d kernels the CPU runs, for run.json */
#include "runner/checkpoint.h"
#include "io/fsutil.h"
#include "io/json_util.h"
#include "dist/dist.h"
#include <dirent.h>
#include <unistd.h>
#include <string.h>
#include <yaml.h>
#include <png.h>
#include <cblas.h>

int rx_stage_cache_find(const char *exp_dir, const char *hash_key, const char *hash, const char *need_file,
                        const char *not_dir, char *out, size_t n) {
    DIR *d = opendir(exp_dir);
    if (!d) return 0;
    char done_key[64];   /* "train_hash" -> "train_done" */
    snprintf(done_key, sizeof done_key, "%.*s_done", (int)strcspn(hash_key, "_"), hash_key);
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
        /* a run still sampling (or one that failed after the stage) holds a finished stage too */
        if (json_is_true(json_object_get(r, done_key))) st = "done";
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
    json_object_set_new(v, "cpu_conv2d", json_string(cpu_conv2d_impl()));
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

/* the training itself; once it succeeds run.json says train_done, which makes it a stage
 * cache entry while this run still samples and evaluates */
static rx_status train(rx_experiment *ex, rx_run *run, int resume) {
    rx_run_set_status(run, "running", NULL);
    if (ex->latent) RX_TRY(rx_stage_latents(ex, run));   /* what the model trains on */
    RX_TRY(rx_stage_train(ex, run, resume));
    rx_run_set(run, "train_done", json_true());
    return rx_run_save_record(run);
}

/* The train-once lock, <exp>/.train-<train_hash>.lock: processes of one training config that
 * start together (a Slurm array's tasks, two shells) take it in turn; the first trains, the
 * others find its training in the stage cache when it lets go. Polled rather than blocked on,
 * so that Ctrl-C (or Slurm's SIGTERM) still ends a waiting run. flock works on NFS and Lustre
 * mounts, where a cluster's results directory lives. */
static rx_status take_train_lock(rx_experiment *ex, rx_run *run, int *fd) {
    char path[1200];
    snprintf(path, sizeof path, "%s/.train-%s.lock", run->exp_dir, ex->train_hash);
    for (int waited = 0;; waited = 1) {
        int busy = 0;
        rx_status s = rx_fs_trylock(path, fd, &busy);
        if (!s || !busy) return s;
        rx_clear_error();
        if (!waited) rx_run_log(run, "train: waiting for another process training the same config (lock %s)", path);
        if (rx_interrupt_requested) return rx_fail(RX_ERR_INTERRUPTED, "interrupted while waiting for the lock %s", path);
        usleep(200 * 1000);
    }
}

/* train, or reuse an earlier (or concurrent) run's training of the same hash */
static rx_status train_or_reuse(rx_experiment *ex, rx_run *run, const rx_run_options *opt, int resume) {
    rx_run_set(run, "train_hash", json_string(ex->train_hash));
    if (opt->force || resume) return train(ex, run, resume);
    /* data-parallel: rank 0 takes the lock and looks in the cache, the other ranks follow it */
    int fd = -1, locked = 0;
    int32_t reuse = 0;
    char cached[1200] = "";
    rx_status s = RX_OK;
    if (rx_dist_is_root()) {
        s = take_train_lock(ex, run, &fd);
        locked = s == RX_OK;
        if (!s) reuse = rx_stage_cache_find(run->exp_dir, "train_hash", ex->train_hash, "checkpoints/last.safetensors",
                                            run->dir, cached, sizeof cached);
    }
    if (rx_dist_world()->world > 1) {
        s = rx_dist_agree(s, NULL, 0);
        if (!s) s = rx_dist_broadcast(&reuse, sizeof reuse);
        if (!s) s = rx_dist_broadcast(cached, sizeof cached);
    }
    if (!s) s = reuse ? reuse_training(ex, run, cached) : train(ex, run, 0);
    if (locked) rx_fs_unlock(fd);
    return s;
}

/* train (or reuse an earlier run's training), the reflow stages the sampled model needs
 * (reflow.c), then sample and eval as the objective's task says; each stage's hash goes to
 * run.json before it runs. Data-parallel: rank 0 looks in the stage cache and tells the others;
 * every rank trains, and samples and evaluates its share. */
static rx_status run_stages(rx_experiment *ex, rx_run *run, const rx_run_options *opt, int resume, json_t **metrics) {
    rx_status s = RX_OK;
    if (ex->train) s = train_or_reuse(ex, run, opt, resume);
    if (!s && ex->reflow && ex->sample_model > 0) s = rx_stage_reflow(ex, run, opt, resume);
    if (!s && ex->sample && ex->task->generates) {   /* split over the ranks, gathered on rank 0 */
        rx_run_set(run, "sample_hash", json_string(ex->sample_hash));
        s = rx_stage_sample(ex, run);
    }
    /* a generating task's eval is split over the ranks (runner/eval.c); a classifier's is rank 0's */
    if (!rx_dist_is_root() && !ex->task->generates) return s;
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

/* run.json's precision: what the config asks (training, sampling) and what the backend computes
 * (the CPU: fp32 whatever was asked, which the log says once when bf16 was asked) */
static void record_precision(rx_experiment *ex, rx_run *run) {
    const int cpu = ex->ctx->mem->device != RX_DEV_CUDA;
    json_t *p = json_object();
    json_object_set_new(p, "train", json_string(rx_precision_name(ex->precision)));
    json_object_set_new(p, "sample", json_string(rx_precision_name(ex->sample_precision)));
    json_object_set_new(p, "computed", json_string(cpu ? "fp32" : "as configured"));
    rx_run_set(run, "precision", p);
    if (cpu && (ex->precision == RX_PRECISION_BF16 || ex->sample_precision == RX_PRECISION_BF16))
        rx_run_log(run, "runexp: precision bf16 is GPU tensor-core math; the CPU backend computes in fp32");
}

/* run.json's cuda_graphs: the config's value (the stages add what they captured:
 * cuda_graphs_train, cuda_graphs_sample); the CPU backend has none, which the log says once */
static void record_cuda_graphs(rx_experiment *ex, rx_run *run) {
    rx_run_set(run, "cuda_graphs", json_boolean(ex->cuda_graphs));
    if (ex->cuda_graphs && ex->ctx->mem->device != RX_DEV_CUDA)
        rx_run_log(run, "runexp: cuda_graphs: the CPU backend has no CUDA graphs; every step runs eagerly");
}

static rx_status execute(rx_experiment *ex, rx_run *run, const rx_run_options *opt, int resume, json_t **metrics_out) {
    json_t *metrics = NULL;
    rx_run_set(run, "backend", json_string(ex->backend_name));
    rx_run_set(run, "device", json_string(ex->device_name));
    rx_run_set(run, "versions", versions());
    rx_run_set(run, "smoke", json_boolean(opt->smoke));
    rx_run_set(run, "parameters", json_integer(rx_model_param_count(ex->model)));
    const rx_dist *dw = rx_dist_world();
    json_t *dist = json_object();
    json_object_set_new(dist, "launcher", json_string(dw->launcher));
    json_object_set_new(dist, "ranks", json_integer(dw->world));
    json_object_set_new(dist, "transport", json_string(dw->ops->name));
    rx_run_set(run, "dist", dist);
    rx_run_log(run, "runexp: %s -> %s (backend %s, %s)", ex->name, run->dir, ex->backend_name, ex->device_name);
    record_precision(ex, run);
    record_cuda_graphs(ex, run);
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
    const rx_params *train = NULL;
    const int ranks = rx_dist_world()->world;
    if (ranks > 1 && !opt->smoke && rx_config_section_params(cfg, "train", NULL, &train) == RX_OK &&
        rx_param_int(train, "batch_size") % ranks)
        return rx_fail(RX_ERR_CONFIG, "train.batch_size = %lld is the global batch: it must divide by the %d ranks "
                       "the launcher started", (long long)rx_param_int(train, "batch_size"), ranks);
    rx_clear_error();
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
        run.quiet = opt->quiet || run.follower;
        char path[1200];
        snprintf(path, sizeof path, "%s/config.yaml", run.dir);
        if (!run.follower) s = rx_config_save(cfg->root, path);
        s = s ? fail_before_stages(&run, s) : execute(&ex, &run, opt, 0, metrics);
        snprintf(run_dir, n, "%s", run.dir);
    }
    rx_run_close(&run);   /* also after a create that failed half way: it may hold the run's lock */
    rx_experiment_free(&ex);
    return s;
}

/* A kill between the final run.json ("done") and the index.csv row leaves a finished run that
 * index.csv does not list. Resuming that run writes the missing row (metrics from its
 * eval.json) instead of refusing it as already done; *restored says whether it had to. */
static rx_status restore_index_row(rx_run *run, int *restored) {
    char path[1200], *text = NULL, want[128];
    size_t n = 0;
    *restored = 0;
    snprintf(path, sizeof path, "%s/index.csv", run->exp_dir);
    snprintf(want, sizeof want, "\n%s,done,", run->id);
    if (rx_fs_exists(path)) RX_TRY(rx_fs_read_file(path, &text, &n));
    int has = text && strstr(text, want) != NULL;
    free(text);
    if (has) return RX_OK;
    json_t *eval = NULL;
    snprintf(path, sizeof path, "%s/eval.json", run->dir);
    if (rx_fs_exists(path)) RX_TRY(rx_json_load_file(path, &eval));
    char csv[1024];
    metrics_csv(json_object_get(eval, "metrics"), csv, sizeof csv);
    json_decref(eval);
    RX_TRY(rx_run_finish(run, csv));
    rx_run_log(run, "runexp: --resume of a finished run: index.csv had no done row for it; row restored");
    *restored = 1;
    return RX_OK;
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
        run.quiet = opt->quiet || run.follower;
        const char *st = json_string_value(json_object_get(run.record, "status"));
        int restored = 0;
        if (st && !strcmp(st, "done")) {
            s = restore_index_row(&run, &restored);
            if (!s && !restored) s = rx_fail(RX_ERR_ARG, "--resume %s: this run is already done", run_dir);
        } else if (strcmp(run.config_hash, ex.hash))
            s = rx_fail(RX_ERR_CONFIG, "--resume %s: config.yaml was edited (hash %s, run.json says %s)", run_dir, ex.hash,
                        run.config_hash);
        s = rx_dist_agree(s, NULL, 0);   /* rank 0 read run.json: the others follow its verdict */
        if (s) *config_error = 1;
        else if (!restored) {   /* a restored row was all a finished run lacked */
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
