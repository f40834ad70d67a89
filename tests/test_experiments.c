/* Every shipped experiment still runs: the experiments/smoke/ files end to end (the CI smoke
 * experiments), and every experiments/ file under `runexp --smoke` (its real architecture
 * and components, 2 training steps at batch 2, a few samples with 2 sampler steps, eval on a
 * few images) — so no shipped experiment can rot. Reference for "complete": the result
 * directory layout of issue 3 (config.yaml, run.json done, metrics.jsonl with finite
 * losses, samples/grid.png when sampling, eval.json with finite metrics when evaluating). */
#include "testutil.h"
#include "io/fsutil.h"
#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char results_root[256];

static void make_root(void) {
    snprintf(results_root, sizeof results_root, "/tmp/runexp-exp-XXXXXX");
    cr_assert(mkdtemp(results_root));
}

/* the seed experiment's smoke checkpoints alone are GBs: each test removes its results */
static void remove_root(void) {
    if (results_root[0]) rx_fs_remove_tree(results_root);
    results_root[0] = 0;
}

/* runs build/runexp with args; returns the exit status and the last stdout line */
static int run_runexp(const char *args, char *last_line, size_t n) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "./build/runexp %s --results %s --quiet 2>/tmp/runexp-exp-stderr.txt", args, results_root);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    char line[2048];
    last_line[0] = 0;
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        if (*line) snprintf(last_line, n, "%s", line);
    }
    int st = pclose(p);
    if (WEXITSTATUS(st) != 0) {
        long len;
        char *err = rx_test_read_file("/tmp/runexp-exp-stderr.txt", &len);
        cr_log_error("runexp %s failed:\n%s", args, err ? err : "");
        free(err);
    }
    return WEXITSTATUS(st);
}

static int exists(const char *dir, const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0;
}

/* a finished run directory: the records exist and every number in them is finite */
static void check_run_dir(const char *dir) {
    cr_expect(exists(dir, "config.yaml"), "%s: config.yaml", dir);
    cr_expect(exists(dir, "log.txt"), "%s: log.txt", dir);
    char path[2048];
    snprintf(path, sizeof path, "%s/run.json", dir);
    json_t *r = json_load_file(path, 0, NULL);
    cr_assert(r, "%s: run.json", dir);
    cr_expect_str_eq(json_string_value(json_object_get(r, "status")), "done");
    int trains = json_object_get(r, "train_hash") != NULL;
    int reused = json_object_get(r, "train_reused_from") != NULL;
    int samples = json_object_get(r, "sample_hash") != NULL;
    int evals = json_object_get(r, "eval_hash") != NULL;
    json_decref(r);
    if (trains && !reused) cr_expect(exists(dir, "checkpoints/last.safetensors"), "%s: no checkpoint", dir);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    char line[4096];
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *row = json_loads(line, 0, NULL);
        cr_assert(row, "%s: bad metrics line %s", dir, line);
        double loss = json_number_value(json_object_get(row, "loss"));
        cr_expect(isfinite(loss), "%s: loss %g", dir, loss);
        json_decref(row);
        rows++;
    }
    fclose(f);
    if (trains && !reused) cr_expect_gt(rows, 0, "%s: no metrics rows", dir);
    if (samples) cr_expect(exists(dir, "samples/grid.png"), "%s: samples/grid.png", dir);
    if (evals) {
        snprintf(path, sizeof path, "%s/eval.json", dir);
        json_t *e = json_load_file(path, 0, NULL);
        cr_assert(e, "%s: eval.json", dir);
        const char *k;
        json_t *v;
        int nmet = 0;
        json_object_foreach(json_object_get(e, "metrics"), k, v) {
            cr_expect(isfinite(json_number_value(v)), "%s: %s = %g", dir, k, json_number_value(v));
            nmet++;
        }
        cr_expect_gt(nmet, 0, "%s: no metrics in eval.json", dir);
        json_decref(e);
    }
}

Test(experiments, smoke_experiments_run_end_to_end, .timeout = 600, .fini = remove_root) {
    make_root();
    DIR *d = opendir("experiments/smoke");
    cr_assert(d, "experiments/smoke missing");
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".yaml")) continue;
        char args[1024], last[2048];
        snprintf(args, sizeof args, "experiments/smoke/%s", e->d_name);
        int rc = run_runexp(args, last, sizeof last);
        cr_expect_eq(rc, 0, "%s: exit %d", e->d_name, rc);
        if (rc) continue;
        if (strstr(last, "/sweep-")) {   /* a sweep: its summary and every point's run */
            cr_expect(exists(last, "summary.csv") && exists(last, "summary.md"), "%s: sweep summary", last);
            char path[2100];
            snprintf(path, sizeof path, "%s/summary.csv", last);
            FILE *f = fopen(path, "r");
            char line[4096];
            int points = 0;
            while (f && fgets(line, sizeof line, f)) {
                if (points++ == 0) continue;   /* header */
                line[strcspn(line, "\n")] = 0;
                char *run = strrchr(line, ',');
                if (run) check_run_dir(run + 1);
            }
            if (f) fclose(f);
            cr_expect_geq(points, 3, "%s: a sweep of two points", e->d_name);
        } else {
            check_run_dir(last);
        }
        n++;
    }
    closedir(d);
    cr_expect_geq(n, 3);
}

Test(experiments, every_experiment_smoke_runs, .timeout = 900, .fini = remove_root) {
    make_root();
    const char *dirs[] = {"experiments", "experiments/features"};
    int n = 0;
    for (size_t k = 0; k < sizeof dirs / sizeof dirs[0]; k++) {
        DIR *d = opendir(dirs[k]);
        cr_assert(d);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strstr(e->d_name, ".yaml")) continue;
            char args[1024], last[2048];
            snprintf(args, sizeof args, "--smoke %s/%s", dirs[k], e->d_name);
            int rc = run_runexp(args, last, sizeof last);
            cr_expect_eq(rc, 0, "--smoke %s/%s: exit %d", dirs[k], e->d_name, rc);
            if (rc == 0 && !strstr(last, "/sweep-")) check_run_dir(last);
            n++;
        }
        closedir(d);
    }
    cr_expect_geq(n, 6);
}
