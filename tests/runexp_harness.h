/* runexp_harness.h — running the real runexp binary from a test and reading what it wrote
 * (test_runner, test_faults): a per-test temporary directory and buffers freed in teardown,
 * spawning build/runexp with its output captured, run.json / metrics.jsonl / index.csv /
 * safetensors readers and comparisons against an uninterrupted run. Header-only; a test
 * includes it once and names its suite with .init = setup, .fini = teardown. */
#ifndef RX_TEST_RUNEXP_HARNESS_H
#define RX_TEST_RUNEXP_HARNESS_H

#include "testutil.h"
#include "io/fsutil.h"
#include "io/safetensors.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* not every test binary uses every helper */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

extern char **environ;
/* ---------------------------------------------------------------------------------------
 * per-test state: a temporary directory and everything allocated, freed in teardown */

static char tmpdir[256];
static char runexp_bin[1024];
static void *owned[512];
static int n_owned;

static void *own(void *p) {
    cr_assert_lt(n_owned, (int)(sizeof owned / sizeof owned[0]), "test keeps too many buffers");
    owned[n_owned++] = p;
    return p;
}

static void setup(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rx_test_runexp_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    /* the binary sits next to the tests' directory: <build>/tests/test_runner -> <build>/runexp */
    ssize_t n = readlink("/proc/self/exe", runexp_bin, sizeof runexp_bin - 16);
    cr_assert_gt(n, 0);
    runexp_bin[n] = 0;
    for (int k = 0; k < 2; k++) {
        char *slash = strrchr(runexp_bin, '/');
        cr_assert_not_null(slash);
        *slash = 0;
    }
    strcat(runexp_bin, "/runexp");
    cr_assert_eq(access(runexp_bin, X_OK), 0, "%s is missing: build it first (make)", runexp_bin);
    /* one thread per child process: the suite runs tests two at a time on small machines */
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    setenv("OMP_WAIT_POLICY", "passive", 1);
}

static void teardown(void) {
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    n_owned = 0;
    if (!getenv("RX_KEEP_TMP")) rx_fs_remove_tree(tmpdir);
}

#define ASSERT_OK(expr) do { rx_status s_ = (expr); cr_assert_eq(s_, RX_OK, "%s -> %s", #expr, rx_last_error()); } while (0)


/* printf into one of 32 rotating buffers (enough for any one statement) */
static const char *P(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *P(const char *fmt, ...) {
    static char buf[32][1400];
    static int k;
    k = (k + 1) % 32;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf[k], sizeof buf[k], fmt, ap);
    va_end(ap);
    return buf[k];
}
#define T(...) P("%s/%s", tmpdir, P(__VA_ARGS__))   /* a path in the test's directory */

/* ---------------------------------------------------------------------------------------
 * running runexp */

typedef struct result {
    int code;              /* exit status, or 128 + signal */
    const char *out, *err; /* everything it printed */
    const char *last;      /* last line of stdout ("" if none) */
} result;

/* runs bin with argv (argv[0] included, NULL-terminated), stdin from /dev/null, stdout/stderr to
 * <tmp>/<tag>.out/.err */
static pid_t spawn_program(const char *bin, const char *const *argv, const char *tag) {
    posix_spawn_file_actions_t fa;
    cr_assert_eq(posix_spawn_file_actions_init(&fa), 0);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, T("%s.out", tag), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, T("%s.err", tag), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int rc = posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn %s: %s", bin, strerror(rc));
    return pid;
}

/* argv after the program name, NULL-terminated; stdout/stderr go to <tmp>/<tag>.out/.err */
static pid_t spawn_runexp(const char *tag, const char *const *args) {
    const char *argv[64] = {runexp_bin};
    int n = 1;
    for (; args[n - 1]; n++) {
        cr_assert_lt(n, 63);
        argv[n] = args[n - 1];
    }
    argv[n] = NULL;
    return spawn_program(runexp_bin, argv, tag);
}

static int wait_exit(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0) cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static const char *read_text(const char *path) {
    char *s = rx_test_read_file(path, NULL);
    return s ? own(s) : NULL;
}

static result collect(const char *tag, int code) {
    result r = {code, read_text(T("%s.out", tag)), read_text(T("%s.err", tag)), ""};
    cr_assert(r.out && r.err);
    /* last non-empty line of stdout */
    char *copy = own(strdup(r.out));
    size_t n = strlen(copy);
    while (n > 0 && copy[n - 1] == '\n') copy[--n] = 0;
    char *nl = strrchr(copy, '\n');
    r.last = nl ? nl + 1 : copy;
    return r;
}

static result run_runexp(const char *tag, const char *const *args) {
    return collect(tag, wait_exit(spawn_runexp(tag, args)));
}
#define RUNEXP(tag, ...) run_runexp((tag), (const char *const[]){__VA_ARGS__, NULL})

/* a run that must succeed: exit 0, the last stdout line an existing directory */
#define RUN_OK(r)                                                                                      \
    do {                                                                                               \
        cr_assert_eq((r).code, 0, "runexp exited %d:\n%s", (r).code, (r).err);                         \
        cr_assert(rx_fs_is_dir((r).last), "last stdout line '%s' is not a directory", (r).last);      \
    } while (0)

/* ---------------------------------------------------------------------------------------
 * reading results */

static json_t *load_json(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    cr_assert_not_null(j, "%s: %s", path, e.text);
    return j;
}

static const char *json_str(json_t *obj, const char *key) {
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

/* run.json's string field (a copy that lives until teardown) */
static const char *run_field(const char *run_dir, const char *key) {
    json_t *j = load_json(P("%s/run.json", run_dir));
    json_t *v = json_object_get(j, key);
    const char *s = v && json_is_string(v) ? own(strdup(json_string_value(v))) : NULL;
    json_decref(j);
    return s;
}

static int count_lines(const char *path) {
    char *s = rx_test_read_file(path, NULL);
    int n = 0;
    for (char *p = s; p && *p; p++) n += *p == '\n';
    free(s);
    return n;
}

static int count_substr(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* numbered run directories NNNN-hash of an experiment directory, sorted */
static int cmp_names(const void *a, const void *b) { return strcmp(a, b); }
static int list_runs(const char *exp_dir, char names[][64], int max) {
    DIR *d = opendir(exp_dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        const char *s = e->d_name;
        if (isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2]) &&
            isdigit((unsigned char)s[3]) && s[4] == '-' && n < max)
            snprintf(names[n++], 64, "%.63s", s);
    }
    closedir(d);
    qsort(names, n, 64, cmp_names);
    return n;
}

typedef struct metrics_row { int64_t step; double loss, lr, grad_norm, img_per_s; } metrics_row;

/* metrics.jsonl: every line must carry the five numbers */
static int read_metrics(const char *path, metrics_row *rows, int max) {
    char *text = rx_test_read_file(path, NULL);
    cr_assert_not_null(text, "%s missing", path);
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        cr_assert_not_null(j, "%s line %d: %s", path, n + 1, e.text);
        cr_assert_lt(n, max);
        const char *keys[] = {"step", "loss", "lr", "grad_norm", "img_per_s"};
        for (int k = 0; k < 5; k++)
            cr_assert(json_is_number(json_object_get(j, keys[k])), "%s line %d: no number '%s'", path, n + 1, keys[k]);
        rows[n] = (metrics_row){json_integer_value(json_object_get(j, "step")), json_number_value(json_object_get(j, "loss")),
                                json_number_value(json_object_get(j, "lr")), json_number_value(json_object_get(j, "grad_norm")),
                                json_number_value(json_object_get(j, "img_per_s"))};
        n++;
        json_decref(j);
    }
    free(text);
    return n;
}

/* every tensor of a equals the same-named tensor of b byte for byte (metadata may differ) */
static void assert_same_tensors(const char *a, const char *b) {
    rx_st_file *fa = NULL, *fb = NULL;
    ASSERT_OK(rx_st_open(a, &fa));
    ASSERT_OK(rx_st_open(b, &fb));
    cr_assert_eq(rx_st_count(fa), rx_st_count(fb), "%s has %d tensors, %s %d", a, rx_st_count(fa), b, rx_st_count(fb));
    for (int i = 0; i < rx_st_count(fa); i++) {
        const rx_st_tensor *ta = rx_st_tensor_at(fa, i), *tb = rx_st_find(fb, ta->name);
        cr_assert_not_null(tb, "%s: no tensor '%s'", b, ta->name);
        cr_assert_eq(ta->dtype, tb->dtype, "'%s': dtype differs", ta->name);
        cr_assert_eq(ta->ndim, tb->ndim, "'%s': rank differs", ta->name);
        for (int k = 0; k < ta->ndim; k++) cr_assert_eq(ta->shape[k], tb->shape[k], "'%s': shape differs", ta->name);
        cr_assert_eq(ta->end - ta->begin, tb->end - tb->begin);
        cr_assert_eq(memcmp(rx_st_data(fa, ta), rx_st_data(fb, tb), ta->end - ta->begin), 0,
                     "tensor '%s' differs between %s and %s", ta->name, a, b);
    }
    rx_st_close(fa);
    rx_st_close(fb);
}

static int64_t checkpoint_step(const char *path) {
    rx_st_file *f = NULL;
    ASSERT_OK(rx_st_open(path, &f));
    const char *v = rx_st_metadata(f, "step");
    cr_assert_not_null(v, "%s: no step in the metadata", path);
    int64_t step = strtoll(v, NULL, 10);
    rx_st_close(f);
    return step;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Wait (polling) until the single run of exp_dir has a checkpoint and at least min_lines
 * metrics lines; fails if the process ends first. Returns the run directory. */
static const char *wait_for_training(pid_t pid, const char *exp_dir_arg, int need_checkpoint, int min_lines) {
    const char *exp_dir = own(strdup(exp_dir_arg));   /* P's buffers rotate in the loop */
    double t0 = now_s();
    char names[4][64];
    for (;;) {
        int st;
        cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "runexp ended before it could be stopped (machine too fast? raise long.yaml's steps)");
        if (list_runs(exp_dir, names, 4) == 1) {
            const char *dir = P("%s/%s", exp_dir, names[0]);
            if ((!need_checkpoint || rx_fs_exists(P("%s/checkpoints/last.safetensors", dir))) &&
                count_lines(P("%s/metrics.jsonl", dir)) >= min_lines)
                return own(strdup(dir));
        }
        cr_assert_lt(now_s() - t0, 60.0, "no training progress in %s after 60 s", exp_dir);
        usleep(2000);
    }
}

/* metrics.jsonl of a resumed run = the uninterrupted run's, row for row: the same steps in
 * the same order, and the same loss, lr and grad_norm bit for bit (the rows a killed run
 * wrote after its checkpoint are cut on resume, not doubled). img_per_s is a timing and
 * differs, as the time of any run does. */
static void assert_metrics_match(const char *resumed, const char *reference, int rows) {
    static metrics_row rr[256], rf[256];
    int nr = read_metrics(P("%s/metrics.jsonl", resumed), rr, 256);
    int nf = read_metrics(P("%s/metrics.jsonl", reference), rf, 256);
    cr_assert_eq(nf, rows);
    cr_assert_eq(nr, nf, "the resumed run has %d metrics rows, the uninterrupted run %d", nr, nf);
    for (int i = 0; i < nr; i++) {
        cr_assert_eq(rr[i].step, rf[i].step, "row %d: step %lld after resume, %lld uninterrupted", i + 1,
                     (long long)rr[i].step, (long long)rf[i].step);
        cr_assert_eq(rr[i].loss, rf[i].loss, "step %lld: loss %.17g after resume, %.17g uninterrupted", (long long)rr[i].step,
                     rr[i].loss, rf[i].loss);
        cr_assert_eq(rr[i].lr, rf[i].lr, "step %lld: lr", (long long)rr[i].step);
        cr_assert_eq(rr[i].grad_norm, rf[i].grad_norm, "step %lld: grad_norm %.17g after resume, %.17g uninterrupted",
                     (long long)rr[i].step, rr[i].grad_norm, rf[i].grad_norm);
    }
}

/* index.csv holds exactly one row for the run (README: one row per run), with this status */
static void assert_one_index_row(const char *exp_dir, const char *run_dir, const char *status) {
    const char *id = strrchr(run_dir, '/') + 1;
    const char *text = read_text(P("%s/index.csv", exp_dir));
    cr_assert_not_null(text);
    cr_assert_eq(count_substr(text, P("\n%s,", id)), 1, "index.csv rows for %s:\n%s", id, text);
    cr_assert(strstr(text, P("\n%s,%s,", id, status)), "index.csv has no '%s' row for %s:\n%s", status, id, text);
}

#pragma GCC diagnostic pop

#endif
