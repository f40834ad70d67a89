/* test_faults.c — fault injection into the real runexp (issue 19, "Fault injection in make test").
 *
 * tests/configs/runner/faults.yaml: 60 training steps with a checkpoint every 5, 32 samples
 * (20 DDIM steps) and an eval stage (Fréchet distance on a tiny classifier trained first from
 * classifier.yaml), about 0.7 s in all, so that faults land in training, checkpoint writes,
 * sampling and evaluation. Reference: an uninterrupted run of the same config, compared bit for
 * bit (final checkpoint tensors, samples.safetensors, metrics.jsonl's step/loss/lr/grad_norm,
 * eval.json's metric) and index.csv holding one row per run. */
#include "runexp_harness.h"

#include <sys/resource.h>

#define CFG_DIR "tests/configs/runner/"
#define FAULTS CFG_DIR "faults.yaml"
#define CLASSIFIER CFG_DIR "classifier.yaml"
#define FAULT_STEPS 60

TestSuite(faults, .init = setup, .fini = teardown, .timeout = 240);

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
        const char *root = own(strdup(T("kill%d", i)));
        const char *exp = own(strdup(P("%s/faults", root)));
        pid = spawn_runexp(P("run%d", i), (const char *const[]){FAULTS, "--results", root, "--set", weights, NULL});
        const char *dir = NULL;
        double t1 = now_s();
        while (!(dir = run_dir_now(exp))) {
            cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "run %d ended before its run.json appeared", i);
            cr_assert_lt(now_s() - t1, 60.0);
            usleep(200);
        }
        double t_start = now_s();
        while (now_s() - t_start < delay && waitpid(pid, &st, WNOHANG) == 0) usleep(200);
        int ended = waitpid(pid, &st, WNOHANG) != 0;
        const char *where;
        if (!ended) {
            kill(pid, SIGKILL);
            cr_assert_eq(wait_exit(pid), 128 + SIGKILL);
            where = landed(dir);
            killed++;
        } else {
            where = "ended before the kill";
        }
        char one[128];
        snprintf(one, sizeof one, "%s%.2fs:%s", i ? ", " : "", delay, where);
        strncat(figure, one, sizeof figure - strlen(figure) - 1);
        if (strcmp(run_field(dir, "status"), "done")) {
            result r = RUNEXP(P("resume%d", i), "--resume", dir);
            cr_assert_eq(r.code, 0, "kill %d (%s, %.3f s): --resume exited %d:\n%s", i, where, delay, r.code, r.err);
            cr_assert_str_eq(r.last, dir);
        }
        assert_same_as_reference(exp, dir, ref);
    }
    cr_log_info("faults: %d of 10 SIGKILLs landed (run %.2f s from run.json to exit), each resumed bit-identical: %s",
                killed, duration, figure);
    cr_assert_geq(killed, 8, "only %d of the 10 kills hit a running process: %s", killed, figure);
}
