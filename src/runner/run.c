#include "run.h"
#include "io/fsutil.h"
#include "io/json_util.h"
#include <errno.h>
#include <stdarg.h>
#include <string.h>
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

rx_status rx_run_create(rx_run *r, const char *results_root, const char *experiment, const char *config_hash) {
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

rx_status rx_run_open(rx_run *r, const char *dir) {
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
    if (rx_json_load_file(path, &r->record) != RX_OK)
        return rx_fail_ctx(RX_ERR_IO, "%s: is this a run directory? ", dir);
    const char *e = json_string_value(json_object_get(r->record, "experiment"));
    const char *h = json_string_value(json_object_get(r->record, "config_hash"));
    snprintf(r->experiment, sizeof r->experiment, "%s", e ? e : "");
    snprintf(r->config_hash, sizeof r->config_hash, "%s", h ? h : "");
    return open_files(r);
}

rx_status rx_run_save_record(rx_run *r) {
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
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
    rx_status s = rx_json_append_line(path, row);
    json_decref(row);
    return s;
}

rx_status rx_run_finish(rx_run *r, const char *primary_metrics_csv) {
    char path[1200], line[2048];
    const char *status = json_string_value(json_object_get(r->record, "status"));
    snprintf(path, sizeof path, "%s/index.csv", r->exp_dir);
    snprintf(line, sizeof line, "%s,%s,%s,%s", r->id, status ? status : "", r->config_hash,
             primary_metrics_csv ? primary_metrics_csv : "");
    RX_TRY(rx_fs_append_locked(path, "id,status,config_hash,metrics", line));
    snprintf(path, sizeof path, "%s/latest", r->exp_dir);
    return rx_fs_symlink_replace(r->id, path);
}

void rx_run_close(rx_run *r) {
    if (r->log) fclose(r->log);
    if (r->record) json_decref(r->record);
    r->log = NULL;
    r->record = NULL;
}
