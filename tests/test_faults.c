/* test_faults.c — fault injection into the real runexp (issue 19, "Fault injection in make test").
 *
 * tests/configs/runner/faults.yaml: 60 training steps with a checkpoint every 5, 32 samples
 * (20 DDIM steps) and an eval stage (Fréchet distance on a tiny classifier trained first from
 * classifier.yaml), about 0.7 s in all, so that faults land in training, checkpoint writes,
 * sampling and evaluation. Reference: an uninterrupted run of the same config, compared bit for
 * bit (final checkpoint tensors, samples.safetensors, metrics.jsonl's step/loss/lr/grad_norm,
 * eval.json's metric) and index.csv holding one row per run. Four faults: SIGKILL at seeded
 * random moments, a full disk (RLIMIT_FSIZE) at several writes, a full disk (ENOSPC through an
 * LD_PRELOAD shim) for the grid, eval.json and the final run.json, a read-only run directory.
 * About 16 s in all on one core. */
#include "runexp_harness.h"

#include <sys/mount.h>
#include <sys/resource.h>

#define CFG_DIR "tests/configs/runner/"
#define FAULTS CFG_DIR "faults.yaml"
#define CLASSIFIER CFG_DIR "classifier.yaml"
#define FAULT_STEPS 60

/* a read-only bind mount made by a test, taken down before the temporary directory goes */
static char ro_mount[1200];
static void faults_teardown(void) {
    if (ro_mount[0]) umount2(ro_mount, MNT_DETACH);
    ro_mount[0] = 0;
    teardown();
}

TestSuite(faults, .init = setup, .fini = faults_teardown, .timeout = 240);

/* a classifier checkpoint for faults.yaml's eval stage (the --set for it) */
static const char *eval_weights_set(void) {
    result c = RUNEXP("classifier", CLASSIFIER, "--results", T("cls"));
    RUN_OK(c);
    return own(strdup(P("eval.features.weights=%s/checkpoints/last.safetensors", c.last)));
}

/* the run directory of exp_dir once its run.json exists (NULL while there is none) */
static const char *run_dir_now(const char *exp_dir) {
    char names[4][64];
    if (list_runs(exp_dir, names, 4) != 1) return NULL;
    const char *dir = P("%s/%s", exp_dir, names[0]);
    return rx_fs_exists(P("%s/run.json", dir)) ? own(strdup(dir)) : NULL;
}

/* the eval.json metric fd_last, or NAN */
static double eval_fd(const char *run_dir) {
    json_t *j = load_json(P("%s/eval.json", run_dir));
    char *s = json_dumps(j, JSON_COMPACT);
    const char *p = s ? strstr(s, "\"fd_last\"") : NULL;
    double v = NAN;
    if (p) {
        p = strchr(p, ':');
        if (p && (p[1] == '-' || isdigit((unsigned char)p[1]))) v = strtod(p + 1, NULL);
        else if (p && p[1] == '{') {   /* {"value": x, ...} */
            const char *q = strstr(p, "\"value\":");
            if (q) v = strtod(q + 8, NULL);
        }
    }
    free(s);
    json_decref(j);
    return v;
}

/* a finished run equals the reference: final checkpoint, samples, metrics rows, eval metric,
 * one done row in index.csv */
static void assert_same_as_reference(const char *exp_dir, const char *dir, const char *ref) {
    cr_assert_str_eq(run_field(dir, "status"), "done");
    assert_same_tensors(P("%s/checkpoints/last.safetensors", dir), P("%s/checkpoints/last.safetensors", ref));
    assert_same_tensors(P("%s/samples/samples.safetensors", dir), P("%s/samples/samples.safetensors", ref));
    assert_metrics_match(dir, ref, FAULT_STEPS);
    double a = eval_fd(dir), b = eval_fd(ref);
    cr_assert(a == b, "eval fd_last %.17g after the fault, %.17g uninterrupted", a, b);
    assert_one_index_row(exp_dir, dir, "done");
}

/* where a kill landed, from what the killed process left: a temp file of the atomic helper in
 * checkpoints/ or samples/ (a write cut short), else the stage of log.txt's last line */
static const char *landed(const char *dir) {
    const char *sub[] = {"checkpoints", "samples"};
    const char *what[] = {"checkpoint", "sampling (write)"};
    for (int k = 0; k < 2; k++) {
        DIR *d = opendir(P("%s/%s", dir, sub[k]));
        if (!d) continue;
        int tmp = 0;
        for (struct dirent *e; (e = readdir(d));) tmp |= strstr(e->d_name, ".tmp.") != NULL;
        closedir(d);
        if (tmp) return what[k];
    }
    const char *log = read_text(P("%s/log.txt", dir));
    if (!log) return "start";
    const char *last = log, *p = log;
    for (const char *nl; (nl = strchr(p, '\n')) && nl[1]; p = nl + 1) last = nl + 1;
    if (strstr(last, "runexp: done")) return "after done";
    if (strstr(last, " eval:")) return "eval";
    if (strstr(last, " sample:")) return "sampling";
    if (strstr(last, " train:") || strstr(last, "resum")) return "training";
    return "start";
}

/* 10 SIGKILLs at pseudo-random moments (a fixed seed), spread over the duration of an
 * uninterrupted run measured first (from its run.json to its exit); each kill hits a fresh run
 * (only the first process is killed), which is then resumed once without a fault and compared
 * with the uninterrupted run. */
Test(faults, sigkill_at_random_moments_then_resume_is_bit_identical) {
    const char *weights = eval_weights_set();
    const char *ref_root = own(strdup(T("reference")));
    pid_t pid = spawn_runexp("reference", (const char *const[]){FAULTS, "--results", ref_root, "--set", weights, NULL});
    const char *ref_exp = own(strdup(P("%s/faults", ref_root)));
    double t0 = now_s(), t_dir = 0;
    int st;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (!t_dir && run_dir_now(ref_exp)) t_dir = now_s();
        cr_assert_lt(now_s() - t0, 60.0, "the reference run takes over 60 s");
        usleep(500);
    }
    double duration = now_s() - t_dir;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "reference run failed: %s", read_text(T("reference.err")));
    cr_assert_gt(t_dir, 0.0);
    const char *ref = run_dir_now(ref_exp);
    cr_assert_not_null(ref);

    uint64_t rng = 19;   /* fixed seed: the same delays every time */
    char figure[1024] = "";
    int killed = 0;
    for (int i = 0; i < 10; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(rng >> 11) / 9007199254740992.0;
        double delay = duration * (0.02 + 0.96 * (i + u) / 10);   /* one in each tenth */
        /* a run faster than the measured one (the machine less loaded) can end before its
         * kill: then a fresh run, killed 25% earlier, up to 4 tries */
        const char *dir = NULL, *exp = NULL, *where = NULL;
        for (int attempt = 0; attempt < 4 && !where; attempt++) {
            const char *root = own(strdup(T("kill%d.%d", i, attempt)));
            exp = own(strdup(P("%s/faults", root)));
            pid = spawn_runexp(P("run%d.%d", i, attempt), (const char *const[]){FAULTS, "--results", root, "--set", weights, NULL});
            double t1 = now_s();
            while (!(dir = run_dir_now(exp))) {
                cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "run %d ended before its run.json appeared", i);
                cr_assert_lt(now_s() - t1, 60.0);
                usleep(200);
            }
            double t_start = now_s();
            while (now_s() - t_start < delay && waitpid(pid, &st, WNOHANG) == 0) usleep(200);
            int code = waitpid(pid, &st, WNOHANG) != 0 ? -1 : (kill(pid, SIGKILL), wait_exit(pid));
            if (code != 128 + SIGKILL) {   /* ended before the kill (or between the check and it) */
                cr_assert(code == -1 ? WIFEXITED(st) && WEXITSTATUS(st) == 0 : code == 0, "run %d failed: exit %d", i, code);
                delay *= 0.75;
                continue;
            }
            where = landed(dir);
            killed++;
        }
        cr_assert_not_null(where, "kill %d: 4 runs in a row ended before their kill (last delay %.3f s)", i, delay / 0.75);
        char one[128];
        snprintf(one, sizeof one, "%s%.2fs:%s", i ? ", " : "", delay, where);
        strncat(figure, one, sizeof figure - strlen(figure) - 1);
        /* a kill after the final run.json but before index.csv's row leaves status done and no
         * row: resume restores the row (the test below pins that window down) */
        const char *index = read_text(P("%s/index.csv", exp));
        int row_done = index && strstr(index, P("\n%s,done,", strrchr(dir, '/') + 1));
        if (strcmp(run_field(dir, "status"), "done") || !row_done) {
            result r = RUNEXP(P("resume%d", i), "--resume", dir);
            cr_assert_eq(r.code, 0, "kill %d (%s, %.3f s): --resume exited %d:\n%s", i, where, delay, r.code, r.err);
            cr_assert_str_eq(r.last, dir);
        }
        assert_same_as_reference(exp, dir, ref);
    }
    cr_log_info("faults: %d of 10 SIGKILLs survived (run %.2f s from run.json to exit), each resumed bit-identical: %s",
                killed, duration, figure);
}

/* ---------------------------------------------------------------------------------------
 * disk full: RLIMIT_FSIZE in the child (SIGXFSZ ignored, so a write past the limit fails with
 * EFBIG instead of killing the process); the limit caps every file the run writes, so its size
 * chooses the first write that fails */

static int run_limited(const char *tag, rlim_t limit, const char *const *args) {
    const char *argv[32] = {runexp_bin};
    int n = 1;
    for (; args[n - 1]; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    const char *out = own(strdup(T("%s.out", tag))), *err = own(strdup(T("%s.err", tag)));
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct rlimit rl = {limit, limit};
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fi = open("/dev/null", O_RDONLY);
        if (fo < 0 || fe < 0 || fi < 0 || dup2(fi, 0) < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0) _exit(126);
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(126);
        execve(runexp_bin, (char *const *)argv, environ);
        _exit(127);
    }
    return wait_exit(pid);
}

/* no temp file of the atomic helper left in dir */
static void assert_no_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));)
        cr_assert(!strstr(e->d_name, ".tmp."), "%s/%s: a temp file of a failed write is left", dir, e->d_name);
    closedir(d);
}

Test(faults, disk_full_fails_cleanly_and_resume_finishes_the_run) {
    const char *weights = eval_weights_set();
    /* limit in bytes -> the file whose write must fail and be named. config.yaml is ~1.9 kB,
     * run.json under 1 kB, the checkpoint ~750 kB, metrics.jsonl ends near 7.7 kB (log.txt,
     * smaller, is written through stdio and not checked). With checkpoint_every 0 (its own
     * reference run) the first write past 6 kB is a metrics row. resumable: the directory and
     * its config.yaml exist, so run.json says failed and --resume finishes the run. */
    static const struct { rlim_t limit; const char *set, *file; int resumable; } pts[] = {
        {200, "seed=3", "run.json", 0},
        {1000, "seed=3", "config.yaml", 0},
        {4000, "seed=3", "checkpoints/last.safetensors", 1},
        {400000, "seed=3", "checkpoints/last.safetensors", 1},
        {6144, "train.checkpoint_every=0", "metrics.jsonl", 1},
    };
    const char *ref[2] = {NULL, NULL};
    char figure[512] = "";
    for (int i = 0; i < (int)(sizeof pts / sizeof pts[0]); i++) {
        const int r_i = strcmp(pts[i].set, "seed=3") != 0;
        if (!ref[r_i]) {
            result rf = RUNEXP(P("reference%d", r_i), FAULTS, "--results", T("reference%d", r_i), "--set", weights, "--set", pts[i].set);
            RUN_OK(rf);
            ref[r_i] = rf.last;
        }
        const char *root = own(strdup(T("full%d", i)));
        const char *exp = own(strdup(P("%s/faults", root)));
        const char *tag = own(strdup(P("full%d", i)));
        const unsigned long lim = (unsigned long)pts[i].limit;
        int code = run_limited(tag, pts[i].limit, (const char *const[]){FAULTS, "--results", root, "--set", weights, "--set", pts[i].set, NULL});
        const char *err = read_text(T("%s.err", tag));
        cr_assert_eq(code, 1, "limit %lu: exit %d (want 1, a failed run):\n%s", lim, code, err);
        cr_assert(strstr(err, pts[i].file), "limit %lu: stderr does not name %s:\n%s", lim, pts[i].file, err);
        cr_assert(strstr(err, "File too large"), "limit %lu: stderr gives no reason:\n%s", lim, err);
        char names[4][64];
        cr_assert_eq(list_runs(exp, names, 4), 1);
        const char *dir = own(strdup(P("%s/%s", exp, names[0])));
        const char *file = P("%s/%s", dir, pts[i].file);
        if (strcmp(pts[i].file, "metrics.jsonl")) {
            cr_assert(!rx_fs_exists(file), "limit %lu: a half-written %s is in place", lim, pts[i].file);
        } else {   /* appended, not replaced: whole rows only, the cut one taken back */
            const char *m = read_text(file);
            cr_assert(m && *m && m[strlen(m) - 1] == '\n', "limit %lu: metrics.jsonl ends in half a row", lim);
        }
        assert_no_temps(dir);
        assert_no_temps(P("%s/checkpoints", dir));
        assert_no_temps(P("%s/samples", dir));
        char one[96];
        snprintf(one, sizeof one, "%s%lu B:%s", i ? ", " : "", lim, pts[i].file);
        strncat(figure, one, sizeof figure - strlen(figure) - 1);
        if (!strcmp(pts[i].file, "run.json")) continue;   /* no record: nothing to resume */
        /* the directory and its run.json exist: the record says failed and why */
        cr_assert_str_eq(run_field(dir, "status"), "failed", "limit %lu: run.json does not say failed", lim);
        cr_assert(strstr(run_field(dir, "error"), pts[i].file), "limit %lu: run.json's error does not name %s", lim, pts[i].file);
        cr_assert(strstr(read_text(P("%s/log.txt", dir)), "File too large"), "limit %lu: log.txt gives no reason", lim);
        if (!pts[i].resumable) continue;
        result r = RUNEXP(P("resume%d", i), "--resume", dir);
        cr_assert_eq(r.code, 0, "limit %lu: --resume exited %d:\n%s", lim, r.code, r.err);
        assert_same_as_reference(exp, dir, ref[r_i]);
    }
    cr_log_info("faults: disk full (RLIMIT_FSIZE) at %s: each failed with exit 1 naming the file, nothing half-written; "
                "the resumable ones resumed bit-identical", figure);
}

/* ---------------------------------------------------------------------------------------
 * disk full for one named file, after everything before it went through: an LD_PRELOAD shim
 * (tests/shim/enospc.c) answers the atomic helper's temp file for that name with /dev/full,
 * so the kernel's own ENOSPC reaches the code. Covers what RLIMIT_FSIZE cannot reach: the
 * sample grid and eval.json (written after the larger checkpoint) and the final run.json. */

static result run_with_full_disk(const char *tag, const char *file, const char *after, int sticky, const char *root,
                                 const char *weights) {
    char shim[1100];
    snprintf(shim, sizeof shim, "%s", runexp_bin);
    *strrchr(shim, '/') = 0;
    strncat(shim, "/tests/enospc_shim.so", sizeof shim - strlen(shim) - 1);
    cr_assert_eq(access(shim, R_OK), 0, "%s is missing: make builds it with test_faults", shim);
    setenv("LD_PRELOAD", shim, 1);
    setenv("ASAN_OPTIONS", "verify_asan_link_order=0:detect_leaks=0", 1);   /* SANITIZE=1: the shim comes first */
    setenv("RX_ENOSPC_FILE", file, 1);
    if (after) setenv("RX_ENOSPC_AFTER", after, 1);
    if (sticky) setenv("RX_ENOSPC_STICKY", "1", 1);
    result r = RUNEXP(tag, FAULTS, "--results", root, "--set", weights, "--set", "seed=3");
    unsetenv("LD_PRELOAD");
    unsetenv("ASAN_OPTIONS");
    unsetenv("RX_ENOSPC_FILE");
    unsetenv("RX_ENOSPC_AFTER");
    unsetenv("RX_ENOSPC_STICKY");
    return r;
}

Test(faults, disk_full_at_the_grid_eval_json_and_final_run_json_loses_nothing) {
    const char *weights = eval_weights_set();
    result rf = RUNEXP("reference", FAULTS, "--results", T("reference"), "--set", weights, "--set", "seed=3");
    RUN_OK(rf);
    /* file that finds the disk full, the file after whose rename it fills (NULL: from the start),
     * whether the disk stays full when the run gives its reserve back (.lock, run.h), the exit
     * status and the status run.json is left with. The final run.json takes its status from the
     * reserve; on a disk that stays full it keeps the last record it could write ("running"),
     * log.txt says why, and --resume finishes the run. */
    static const struct { const char *file, *after; int sticky, code; const char *path, *status; } pts[] = {
        {"grid.png", NULL, 0, 1, "samples/grid.png", "failed"},
        {"eval.json", NULL, 0, 1, "eval.json", "failed"},
        {"run.json", "eval.json", 0, 0, "run.json", "done"},
        {"run.json", "eval.json", 1, 1, "run.json", "running"},
    };
    for (int i = 0; i < 4; i++) {
        const char *root = own(strdup(T("enospc%d", i)));
        result r = run_with_full_disk(P("enospc%d", i), pts[i].file, pts[i].after, pts[i].sticky, root, weights);
        cr_assert_eq(r.code, pts[i].code, "%s on a full disk: exit %d (want %d):\n%s", pts[i].file, r.code, pts[i].code, r.err);
        cr_assert(strstr(r.err, pts[i].file) && strstr(r.err, strerror(ENOSPC)),
                  "%s on a full disk: stderr does not name the file and the reason:\n%s", pts[i].file, r.err);
        char names[4][64];
        cr_assert_eq(list_runs(P("%s/faults", root), names, 4), 1);
        const char *dir = own(strdup(P("%s/faults/%s", root, names[0])));
        if (strcmp(pts[i].file, "run.json"))
            cr_assert(!rx_fs_exists(P("%s/%s", dir, pts[i].path)), "a half-written %s is in place", pts[i].path);
        assert_no_temps(dir);
        assert_no_temps(P("%s/samples", dir));
        /* run.json is whole (it parses) and holds the last record that could be written */
        cr_assert_str_eq(run_field(dir, "status"), pts[i].status, "%s on a full disk: run.json status", pts[i].file);
        const char *log = read_text(P("%s/log.txt", dir));
        cr_assert(log && strstr(log, pts[i].file) && strstr(log, strerror(ENOSPC)), "log.txt does not say why:\n%s", log);
        if (pts[i].code == 0) {
            cr_assert(strstr(log, "reserve"), "log.txt does not say the reserve was used:\n%s", log);
            assert_same_as_reference(P("%s/faults", root), dir, rf.last);
        } else {
            result res = RUNEXP(P("enospc_resume%d", i), "--resume", dir);
            cr_assert_eq(res.code, 0, "%s: --resume after the disk filled exited %d:\n%s", pts[i].file, res.code, res.err);
            assert_same_as_reference(P("%s/faults", root), dir, rf.last);
        }
        cr_log_info("faults: disk full (ENOSPC from /dev/full) at %s%s: exit %d, run.json says '%s', %s bit-identical",
                    pts[i].path, pts[i].sticky ? " (stays full)" : "", pts[i].code, pts[i].status,
                    pts[i].code ? "resumed" : "finished");
    }
}

/* --resume of a run directory that cannot be written names the directory and the reason, and
 * writes nothing. Read-only: a read-only bind mount of the run where the tests run as root
 * (root ignores permission bits), else the directory's mode 0555. */
Test(faults, resume_of_a_read_only_run_directory_names_it_and_why) {
    const char *root = own(strdup(T("ro")));
    int code = run_limited("limited", 4000, (const char *const[]){CFG_DIR "tiny.yaml", "--results", root, NULL});
    cr_assert_eq(code, 1, "the run limited to 4000-byte files should fail at its first checkpoint");
    char names[4][64];
    cr_assert_eq(list_runs(P("%s/tiny", root), names, 4), 1);
    const char *dir = own(strdup(P("%s/tiny/%s", root, names[0])));
    const char *before = read_text(P("%s/run.json", dir));
    const char *target = dir;
    if (geteuid() == 0) {
        const char *mnt = own(strdup(T("mnt/%s", names[0])));
        ASSERT_OK(rx_fs_mkdir_p(mnt));
        if (mount(dir, mnt, NULL, MS_BIND, NULL) != 0)
            cr_skip_test("running as root, and a read-only bind mount is refused here (%s): no read-only directory to test",
                         strerror(errno));
        snprintf(ro_mount, sizeof ro_mount, "%s", mnt);
        if (mount(NULL, mnt, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0)
            cr_skip_test("running as root, and remounting a bind mount read-only is refused here (%s)", strerror(errno));
        target = mnt;
    } else {
        cr_assert_eq(chmod(dir, 0555), 0);
    }
    result r = RUNEXP("resume", "--resume", target);
    if (geteuid() != 0) chmod(dir, 0755);
    cr_assert_eq(r.code, 2, "--resume of a read-only run: exit %d\n%s", r.code, r.err);
    cr_assert(strstr(r.err, target), "the error does not name the directory:\n%s", r.err);
    cr_assert(strstr(r.err, "cannot write") && (strstr(r.err, strerror(EROFS)) || strstr(r.err, strerror(EACCES))),
              "the error gives no reason:\n%s", r.err);
    cr_assert_str_eq(read_text(P("%s/run.json", dir)), before, "run.json changed");
    cr_log_info("faults: --resume of a read-only run directory: %s", r.err);
}

/* The window the SIGKILL test can hit only by chance: run.json already says done, index.csv
 * has no row for the run yet (the process died between the two writes). Reference: the row an
 * uninterrupted run writes. --resume restores it, once; a second --resume is refused as done. */
Test(faults, kill_between_final_run_json_and_index_row_is_repaired_by_resume) {
    const char *weights = eval_weights_set();
    const char *root = own(strdup(T("window")));
    result r = RUNEXP("window", FAULTS, "--results", root, "--set", weights);
    RUN_OK(r);
    const char *dir = own(strdup(r.last)), *exp = own(strdup(P("%s/faults", root)));
    const char *id = strrchr(dir, '/') + 1;
    char *text = strdup(read_text(P("%s/index.csv", exp)));
    char *row = strstr(text, P("\n%s,done,", id));
    cr_assert_not_null(row, "index.csv:\n%s", text);
    char *done_row = strdup(row + 1);   /* the reference: the uninterrupted run's own row */
    *strchr(done_row, '\n') = 0;
    /* the killed run's index.csv: no row yet (index.csv gets a run's row when it finishes) */
    FILE *f = fopen(P("%s/index.csv", exp), "w");
    cr_assert_not_null(f);
    row[1] = 0;
    fputs(text, f);
    fclose(f);
    cr_assert_str_eq(run_field(dir, "status"), "done");

    result a = RUNEXP("window-resume", "--resume", dir);
    cr_assert_eq(a.code, 0, "--resume of the finished run exited %d:\n%s", a.code, a.err);
    cr_assert_str_eq(a.last, dir);
    const char *after = read_text(P("%s/index.csv", exp));
    cr_assert(strstr(after, P("\n%s\n", done_row)), "restored row differs from the uninterrupted run's\nwant %s\n%s",
              done_row, after);
    assert_one_index_row(exp, dir, "done");

    result b = RUNEXP("window-again", "--resume", dir);
    cr_assert_neq(b.code, 0);
    cr_assert(strstr(b.err, "already done"), "%s", b.err);
    free(text);
    free(done_row);
}
