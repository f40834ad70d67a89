#include "run.h"
#include "io/fsutil.h"
#include "io/json_util.h"
#include "io/tfevents.h"
#include "dist/dist.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/time.h>
#include <time.h>

double rx_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void iso_time(double t, char *buf, size_t n) {
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void rx_git_state(char *commit, size_t n, int *dirty) {
    snprintf(commit, n, "unknown");
    *dirty = -1;
    FILE *p = popen("git rev-parse HEAD 2>/dev/null", "r");
    if (p) {
        char buf[128] = {0};
        if (fgets(buf, sizeof buf, p)) {
            buf[strcspn(buf, "\n")] = 0;
            if (*buf) snprintf(commit, n, "%s", buf);
        }
        pclose(p);
    }
    if (strcmp(commit, "unknown") == 0) return;
    p = popen("git status --porcelain --untracked-files=no 2>/dev/null | head -c 1", "r");
    if (p) {
        *dirty = fgetc(p) != EOF;
        pclose(p);
    }
}

/* log.txt stays open for the run; metrics.jsonl is appended a line at a time (rx_run_metrics)
 * and created here, so that every run directory has both and an unwritable one fails now */
static rx_status open_files(rx_run *r) {
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
    FILE *f = fopen(path, "a");
    if (!f || fclose(f) != 0)
        return rx_fail(RX_ERR_IO, "%s: cannot open metrics.jsonl for writing: %s", r->dir, strerror(errno));
    snprintf(path, sizeof path, "%s/log.txt", r->dir);
    r->log = fopen(path, "a");
    if (!r->log) return rx_fail(RX_ERR_IO, "%s: cannot open log.txt for writing: %s", r->dir, strerror(errno));
    return RX_OK;
}

/* the run's lock: a second process resuming the run (or resuming it while it still runs)
 * would interleave its checkpoints and metrics with this one's */
static rx_status take_lock(rx_run *r) {
    char path[1200];
    snprintf(path, sizeof path, "%s/.lock", r->dir);
    int busy = 0;
    rx_status s = rx_fs_trylock(path, &r->lock_fd, &busy);
    if (s && busy)
        return rx_fail(RX_ERR_IO, "run %s is in use: another runexp process holds its lock (%s); "
                       "wait for it to end or stop it first", r->dir, path);
    if (!s) r->locked = 1;
    /* the lock file doubles as the run's disk reserve: blocks kept for the final run.json and
     * index.csv, given back (truncated, the lock still held) when those find the disk full.
     * Not having it is no failure: a disk already this full fails the run's first writes. */
    if (!s && posix_fallocate(r->lock_fd, 0, RX_RUN_RESERVE_BYTES) == 0) r->reserved = 1;
    return s;
}

static rx_status create_run(rx_run *r, const char *results_root, const char *experiment, const char *config_hash) {
    memset(r, 0, sizeof *r);
    r->t_start = rx_now();
    snprintf(r->experiment, sizeof r->experiment, "%s", experiment);
    snprintf(r->config_hash, sizeof r->config_hash, "%s", config_hash);
    snprintf(r->exp_dir, sizeof r->exp_dir, "%s/%s", results_root, experiment);
    char tag[9];
    snprintf(tag, sizeof tag, "%.8s", config_hash);
    RX_TRY(rx_fs_alloc_run_dir(r->exp_dir, tag, r->dir, sizeof r->dir, NULL));
    const char *slash = strrchr(r->dir, '/');
    snprintf(r->id, sizeof r->id, "%.63s", slash ? slash + 1 : r->dir);
    RX_TRY(take_lock(r));   /* before run.json exists, so no --resume can come first */
    char sub[1200];
    snprintf(sub, sizeof sub, "%s/samples", r->dir);
    RX_TRY(rx_fs_mkdir_p(sub));
    snprintf(sub, sizeof sub, "%s/checkpoints", r->dir);
    RX_TRY(rx_fs_mkdir_p(sub));
    RX_TRY(open_files(r));
    char commit[64], ts[32];
    int dirty;
    rx_git_state(commit, sizeof commit, &dirty);
    iso_time(r->t_start, ts, sizeof ts);
    r->record = json_object();
    json_object_set_new(r->record, "experiment", json_string(experiment));
    json_object_set_new(r->record, "run", json_string(r->id));
    json_object_set_new(r->record, "status", json_string("running"));
    json_object_set_new(r->record, "config_hash", json_string(config_hash));
    json_object_set_new(r->record, "start", json_string(ts));
    json_object_set_new(r->record, "git_commit", json_string(commit));
    json_object_set_new(r->record, "git_dirty", dirty < 0 ? json_null() : json_boolean(dirty));
    json_object_set_new(r->record, "stage_seconds", json_object());
    return rx_run_save_record(r);
}

static rx_status open_run(rx_run *r, const char *dir) {
    memset(r, 0, sizeof *r);
    r->t_start = rx_now();
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    size_t n = strlen(r->dir);
    while (n > 1 && r->dir[n - 1] == '/') r->dir[--n] = 0;
    snprintf(r->exp_dir, sizeof r->exp_dir, "%s", r->dir);
    char *slash = strrchr(r->exp_dir, '/');
    snprintf(r->id, sizeof r->id, "%.63s", slash ? slash + 1 : r->dir);
    if (slash) *slash = 0; else snprintf(r->exp_dir, sizeof r->exp_dir, ".");
    char path[1200];
    snprintf(path, sizeof path, "%s/run.json", r->dir);
    if (!rx_fs_exists(path)) return rx_fail(RX_ERR_IO, "%s: no run.json (is this a run directory?)", dir);
    /* a resumed run writes its lock, checkpoints, metrics and run.json here: a directory that
     * cannot take them (read-only mount, permissions) is named with the reason before anything */
    const char *sub[] = {"", "/checkpoints", "/samples"};
    for (int i = 0; i < 3; i++) {
        char d[1200];
        snprintf(d, sizeof d, "%s%s", r->dir, sub[i]);
        if (access(d, W_OK) != 0 && (i == 0 || errno != ENOENT))
            return rx_fail(RX_ERR_IO, "%s: cannot write there (%s); resuming writes the run's checkpoints, metrics and run.json",
                           d, strerror(errno));
    }
    RX_TRY(take_lock(r));
    if (rx_json_load_file(path, &r->record) != RX_OK)
        return rx_fail_ctx(RX_ERR_IO, "%s: is this a run directory? ", dir);
    const char *e = json_string_value(json_object_get(r->record, "experiment"));
    const char *h = json_string_value(json_object_get(r->record, "config_hash"));
    snprintf(r->experiment, sizeof r->experiment, "%s", e ? e : "");
    snprintf(r->config_hash, sizeof r->config_hash, "%s", h ? h : "");
    return open_files(r);
}

/* Data-parallel: rank 0 made (or failed to make, s0) the run; every other rank learns its
 * directory and follows it. One process: s0. */
static rx_status share_run(rx_run *r, rx_status s0) {
    const rx_dist *dw = rx_dist_world();
    if (dw->world == 1) return s0;
    /* rank 0's failure, agreed: every rank ends normally with it (no abort) */
    RX_TRY(rx_dist_agree(dw->rank == 0 ? s0 : RX_OK, NULL, 0));
    struct { char dir[1024], experiment[128], config_hash[17]; } msg;
    memset(&msg, 0, sizeof msg);
    if (dw->rank == 0) {
        memcpy(msg.dir, r->dir, sizeof msg.dir);
        memcpy(msg.experiment, r->experiment, sizeof msg.experiment);
        memcpy(msg.config_hash, r->config_hash, sizeof msg.config_hash);
    }
    RX_TRY(rx_dist_broadcast(&msg, sizeof msg));
    if (dw->rank == 0) return RX_OK;
    memset(r, 0, sizeof *r);
    r->t_start = rx_now();
    r->follower = 1;
    r->quiet = 1;
    memcpy(r->dir, msg.dir, sizeof r->dir);
    memcpy(r->experiment, msg.experiment, sizeof r->experiment);
    memcpy(r->config_hash, msg.config_hash, sizeof r->config_hash);
    snprintf(r->exp_dir, sizeof r->exp_dir, "%s", r->dir);
    char *slash = strrchr(r->exp_dir, '/');
    snprintf(r->id, sizeof r->id, "%.63s", slash ? slash + 1 : r->dir);
    if (slash) *slash = 0;
    r->record = json_object();   /* kept in memory only */
    return r->record ? RX_OK : rx_fail(RX_ERR_OOM, "run: out of memory");
}

rx_status rx_run_create(rx_run *r, const char *results_root, const char *experiment, const char *config_hash) {
    if (!rx_dist_is_root()) {   /* closable (rx_run_close) even when rank 0 failed */
        memset(r, 0, sizeof *r);
        return share_run(r, RX_OK);
    }
    return share_run(r, create_run(r, results_root, experiment, config_hash));
}

rx_status rx_run_open(rx_run *r, const char *dir) {
    if (!rx_dist_is_root()) {
        memset(r, 0, sizeof *r);
        return share_run(r, RX_OK);
    }
    return share_run(r, open_run(r, dir));
}

rx_status rx_run_remove_stale_temps(rx_run *r) {
    if (r->follower) return RX_OK;
    const char *subs[] = {"", "/checkpoints", "/samples"};
    for (int i = 0; i < 3; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s%s", r->dir, subs[i]);
        int n = 0;
        RX_TRY(rx_fs_remove_atomic_temps(path, &n));
        if (n) rx_run_log(r, "resume: removed %d temp file%s an interrupted write left in %s", n, n > 1 ? "s" : "", path);
    }
    return RX_OK;
}

rx_status rx_run_metrics_cut(rx_run *r, const char *stage, int64_t step) {
    if (r->follower) return RX_OK;
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
    char *text = NULL;
    size_t n = 0;
    RX_TRY(rx_fs_read_file(path, &text, &n));
    char *out = malloc(n + 1);
    if (!out) { free(text); return rx_fail(RX_ERR_OOM, "%s: out of memory", path); }
    size_t kept = 0;
    int64_t dropped = 0;
    /* a line without its newline is one a kill cut short: dropped like the rows after the
     * checkpoint, which the resumed training writes again */
    for (char *p = text, *nl; p < text + n && (nl = memchr(p, '\n', (size_t)(text + n - p))); p = nl + 1) {
        *nl = 0;
        json_t *row = json_loads(p, 0, NULL);
        json_t *st = row ? json_object_get(row, "step") : NULL;
        const char *row_stage = row ? json_string_value(json_object_get(row, "stage")) : NULL;
        const int other_stage = row && strcmp(row_stage ? row_stage : "train", stage) != 0;
        if (json_is_integer(st) && (other_stage || json_integer_value(st) <= step)) {
            size_t len = (size_t)(nl - p);
            memcpy(out + kept, p, len);
            out[kept + len] = '\n';
            kept += len + 1;
        } else dropped++;
        json_decref(row);
    }
    rx_status s = RX_OK;
    const int train = !strcmp(stage, "train");   /* TensorBoard's steps are the train stage's */
    if (train) r->tb_step = step;
    if (r->tb && train) s = rx_tfevents_session_start(r->tb, step + 1);
    if (!s && kept != n) {
        s = rx_fs_write_atomic(path, out, kept);
        if (!s) rx_run_log(r, "resume: metrics.jsonl cut back to %s step %lld (%lld later row%s dropped)", stage,
                           (long long)step, (long long)dropped, dropped == 1 ? "" : "s");
    }
    free(out);
    free(text);
    return s;
}

rx_status rx_run_save_record(rx_run *r) {
    if (r->follower) return RX_OK;
    char path[1200];
    snprintf(path, sizeof path, "%s/run.json", r->dir);
    return rx_json_write_atomic(path, r->record);
}

void rx_run_set(rx_run *r, const char *key, json_t *value) { json_object_set_new(r->record, key, value); }

rx_status rx_run_set_status(rx_run *r, const char *status, const char *error) {
    char ts[32];
    json_object_set_new(r->record, "status", json_string(status));
    if (strcmp(status, "running") != 0) {
        iso_time(rx_now(), ts, sizeof ts);
        json_object_set_new(r->record, "end", json_string(ts));
    } else {
        json_object_del(r->record, "end");
    }
    if (error) json_object_set_new(r->record, "error", json_string(error));
    else json_object_del(r->record, "error");
    return rx_run_save_record(r);
}

rx_status rx_run_set_final_status(rx_run *r, const char *status, const char *error) {
    rx_status s = rx_run_set_status(r, status, error);
    if (!s || !r->reserved) return s;
    char first[1024];
    snprintf(first, sizeof first, "%s", rx_last_error());
    if (ftruncate(r->lock_fd, 0) != 0) return rx_fail(s, "%s", first);
    r->reserved = 0;
    rx_clear_error();
    if ((s = rx_run_set_status(r, status, error)) != RX_OK) return rx_fail(s, "%s (and again with the run's reserve given back)", first);
    rx_run_log(r, "runexp: run.json took status '%s' only with the run's disk reserve given back: %s", status, first);
    return RX_OK;
}

void rx_run_stage_time(rx_run *r, const char *stage, double seconds) {
    json_t *st = json_object_get(r->record, "stage_seconds");
    if (!st) { st = json_object(); json_object_set_new(r->record, "stage_seconds", st); }
    json_object_set_new(st, stage, json_real(seconds));
}

void rx_run_log(rx_run *r, const char *fmt, ...) {
    char msg[2048], ts[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    iso_time(rx_now(), ts, sizeof ts);
    if (r->log) { fprintf(r->log, "%s %s\n", ts, msg); fflush(r->log); }
    if (!r->quiet) fprintf(stderr, "%s\n", msg);
}

rx_status rx_run_metrics(rx_run *r, json_t *row) {
    if (r->follower) { json_decref(row); return RX_OK; }
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
    rx_status s = rx_json_append_line(path, row);
    json_t *st = json_object_get(row, "step");
    if (json_is_integer(st)) r->tb_step = json_integer_value(st);
    if (!s) s = rx_run_tb_scalars(r, "train/", row);
    json_decref(row);
    return s;
}

/* whether an earlier process of the run (one resumed now) wrote an events file */
static rx_status has_events_file(const char *dir, int *yes) {
    DIR *d = opendir(dir);
    if (!d) return rx_fail(RX_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    *yes = 0;
    for (struct dirent *e; !*yes && (e = readdir(d));) *yes = !strncmp(e->d_name, "events.out.tfevents.", 20);
    closedir(d);
    return RX_OK;
}

rx_status rx_run_tensorboard_open(rx_run *r, const char *config_yaml) {
    if (r->follower) return RX_OK;
    if (r->tb) return RX_OK;
    int earlier = 0;
    RX_TRY(has_events_file(r->dir, &earlier));
    RX_TRY(rx_tfevents_open(r->dir, &r->tb));
    rx_run_log(r, "tensorboard: %s", rx_tfevents_path(r->tb));
    if (earlier) return RX_OK;   /* the config is there (a resume cannot change it: run hash) */
    /* the text plugin renders markdown: indented by 4, the YAML shows as it is written */
    size_t n = strlen(config_yaml), lines = 1;
    for (size_t i = 0; i < n; i++) lines += config_yaml[i] == '\n';
    char *md = malloc(n + 4 * lines + 1), *o = md;
    if (!md) return rx_fail(RX_ERR_OOM, "tensorboard: out of memory for the config text");
    for (const char *p = config_yaml; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p + 1) : strlen(p);
        memcpy(o, "    ", 4);
        memcpy(o + 4, p, len);
        o += 4 + len;
        p += len;
    }
    *o = 0;
    rx_status s = rx_tfevents_add_text(r->tb, "config", 0, md);
    free(md);
    return s;
}

rx_status rx_run_tb_scalars(const rx_run *r, const char *prefix, json_t *values) {
    if (!r->tb || !json_is_object(values)) return RX_OK;
    const char *k;
    json_t *v;
    json_object_foreach(values, k, v) {
        if (!json_is_number(v) || !strcmp(k, "step")) continue;
        char tag[256];
        snprintf(tag, sizeof tag, "%s%s", prefix, k);
        RX_TRY(rx_tfevents_add_scalar(r->tb, tag, r->tb_step, json_number_value(v)));
    }
    return RX_OK;
}

rx_status rx_run_tb_image(const rx_run *r, const char *tag, const char *png_path, int64_t step) {
    if (!r->tb) return RX_OK;
    char *png = NULL;
    size_t n = 0;
    RX_TRY(rx_fs_read_file(png_path, &png, &n));
    rx_status s = rx_tfevents_add_image_png(r->tb, tag, step, png, n);
    free(png);
    return s;
}

/* `latest` names the newest run (the highest number) of those that have finished, not the last
 * to finish: a long run started earlier ending after a newer one does not take it back. Under
 * the experiment's lock, so two runs finishing at once compare with each other's result. */
static rx_status point_latest(const rx_run *r) {
    char path[1200], lock[1200], target[256];
    snprintf(path, sizeof path, "%s/latest", r->exp_dir);
    snprintf(lock, sizeof lock, "%s/.latest.lock", r->exp_dir);
    int fd = -1;
    RX_TRY(rx_fs_lock(lock, &fd));
    const ssize_t n = readlink(path, target, sizeof target - 1);
    rx_status s = RX_OK;
    if (n > 0) target[n] = 0;
    if (n <= 0 || atol(target) <= atol(r->id)) s = rx_fs_symlink_replace(r->id, path);
    rx_fs_unlock(fd);
    return s;
}

rx_status rx_run_finish(rx_run *r, const char *primary_metrics_csv) {
    if (r->follower) return RX_OK;
    char path[1200], line[2048];
    const char *status = json_string_value(json_object_get(r->record, "status"));
    snprintf(path, sizeof path, "%s/index.csv", r->exp_dir);
    snprintf(line, sizeof line, "%s,%s,%s,%s", r->id, status ? status : "", r->config_hash,
             primary_metrics_csv ? primary_metrics_csv : "");
    RX_TRY(rx_fs_upsert_line_locked(path, "id,status,config_hash,metrics", r->id, line));
    return point_latest(r);
}

void rx_run_close(rx_run *r) {
    /* each record was flushed as written, so a failed close (already past every write's
     * check) is said in log.txt, not made the run's failure */
    if (rx_tfevents_close(r->tb) != RX_OK) {
        rx_run_log(r, "tensorboard: %s", rx_last_error());
        rx_clear_error();
    }
    r->tb = NULL;
    if (r->log) fclose(r->log);
    if (r->record) json_decref(r->record);
    if (r->reserved && ftruncate(r->lock_fd, 0) != 0) { /* a leftover reserve costs 64 kB: nothing to report */ }
    r->reserved = 0;
    if (r->locked) rx_fs_unlock(r->lock_fd);
    r->log = NULL;
    r->record = NULL;
    r->locked = 0;
}
