/* test_slurm.c — sweeps as Slurm job arrays (issue 17 §5). `make test-slurm` runs this alone.
 *
 * sweep_slurm: no Slurm needed. Fake sbatch / squeue / sacct scripts on PATH record their
 * arguments and answer what Slurm would (sbatch --parsable prints "<job id>[;<cluster>]";
 * squeue -h -r -o '%i %T' prints "<job>_<task> <STATE>" lines and "Invalid job id" once the
 * job left the queue: sbatch(1), squeue(1)); the array's tasks are then run as Slurm runs
 * them: the script itself, by bash, at the same time, with SLURM_ARRAY_JOB_ID/TASK_ID set.
 * References: the script contract of runner/slurm.h and sbatch(1)'s #SBATCH directives; the
 * sweep directory and exit codes of issue 3 (0 / 1 / 2, nothing written on exit 2); training
 * counted as in test_runner (runs without train_reused_from).
 *
 * slurm_daemons: a real one-node Slurm (munged, slurmctld, slurmd from Debian, started on
 * localhost by tests/slurm/local_cluster.sh in the test's directory, stopped in teardown)
 * runs a 2-point guidance sweep as a job array that trains once, and a 2-task `srun` trains
 * through MPI (PMIx) as one process would. When the daemons cannot start here the test says
 * why and skips. */
#include "testutil.h"
#include "io/fsutil.h"
#include "dist/dist.h"

#include <math.h>

#define CFG_DIR "tests/configs/runner/"
#define TINY CFG_DIR "tiny.yaml"
#define LONG CFG_DIR "long.yaml"

#include "runexp_harness.h"

/* ---------------------------------------------------------------------------------------
 * helpers */

static void write_exec(const char *path, const char *text) {
    ASSERT_OK(rx_fs_write_atomic(path, text, strlen(text)));
    cr_assert_eq(chmod(path, 0755), 0, "chmod %s: %s", path, strerror(errno));
}

/* fake Slurm clients in <tmp>/bin, first on PATH: sbatch writes its arguments to
 * <tmp>/sbatch.args and prints `sbatch_out` with exit status `sbatch_rc`; squeue prints the
 * file <tmp>/queue (or "Invalid job id" and exit 1 when it is absent); sacct knows nothing
 * (accounting off: exit 1) */
static void fake_slurm(const char *sbatch_out, int sbatch_rc) {
    ASSERT_OK(rx_fs_mkdir_p(T("bin")));
    write_exec(T("bin/sbatch"), P("#!/bin/sh\necho \"$@\" > %s/sbatch.args\necho '%s'\nexit %d\n", tmpdir, sbatch_out, sbatch_rc));
    write_exec(T("bin/squeue"), P("#!/bin/sh\necho \"$@\" >> %s/squeue.args\n"
                                  "if [ -f %s/queue ]; then cat %s/queue; else echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1; fi\n",
                                  tmpdir, tmpdir, tmpdir));
    write_exec(T("bin/sacct"), "#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n");
    const char *path = getenv("PATH");
    setenv("PATH", P("%s/bin:%s", tmpdir, path ? path : "/usr/bin:/bin"), 1);
}

static void set_queue(const char *lines) { ASSERT_OK(rx_fs_write_atomic(T("queue"), lines, strlen(lines))); }

/* the array's task `task` as Slurm runs it: the script, by bash, with the array's variables */
static pid_t spawn_task(const char *script, const char *job, int task) {
    setenv("SLURM_ARRAY_JOB_ID", job, 1);
    setenv("SLURM_ARRAY_TASK_ID", P("%d", task), 1);
    pid_t pid = spawn_program("/bin/bash", (const char *const[]){"bash", script, NULL}, P("task%d", task));
    unsetenv("SLURM_ARRAY_JOB_ID");
    unsetenv("SLURM_ARRAY_TASK_ID");
    return pid;
}

static int count_trained(const char *exp_dir, int n_runs, const char **trained) {
    char names[16][64];
    cr_assert_eq(list_runs(exp_dir, names, 16), n_runs, "runs in %s", exp_dir);
    int n = 0;
    for (int i = 0; i < n_runs; i++) {
        const char *dir = P("%s/%s", exp_dir, names[i]);
        if (!run_field(dir, "train_reused_from")) { n++; *trained = own(strdup(dir)); }
    }
    return n;
}

/* points/<p>.json's field */
static const char *point_field(const char *sweep, int p, const char *key) {
    json_t *j = load_json(P("%s/points/%d.json", sweep, p));
    const char *v = json_string_value(json_object_get(j, key));
    const char *s = v ? own(strdup(v)) : NULL;
    json_decref(j);
    return s;
}

/* ---------------------------------------------------------------------------------------
 * sweep_slurm: the launcher against fake Slurm clients */

TestSuite(sweep_slurm, .init = setup, .fini = teardown, .timeout = 120);

Test(sweep_slurm, writes_the_array_script_and_submits_it) {
    fake_slurm("4242;rxtest", 0);
    const char *root = own(strdup(T("results")));
    result r = RUNEXP("submit", TINY, "--results", root, "--sweep", "guidance.scale=1,2", "--launcher", "slurm", "--slurm",
                      "--partition=debug --time 10 --gres=gpu:1");
    RUN_OK(r);
    const char *sweep = P("%s/tiny/sweep-0001", root);
    cr_assert_str_eq(r.last, sweep);
    cr_assert(strstr(r.out, "submitted Slurm job 4242: an array of 2 tasks"), "%s", r.out);
    char abs[4096];
    cr_assert(realpath(sweep, abs));
    const char *script = own(strdup(P("%s/job.sbatch", abs)));
    /* sbatch --parsable <script>: the job id comes back on stdout */
    cr_assert_str_eq(read_text(T("sbatch.args")), P("--parsable %s\n", script));
    const char *text = read_text(script);
    char cwd[4096];
    cr_assert(getcwd(cwd, sizeof cwd));
    const char *lines[] = {
        "#!/bin/bash\n",
        "\n#SBATCH --job-name=runexp-tiny\n",
        "\n#SBATCH --array=0-1\n",                          /* one task per point */
        P("\n#SBATCH --output=%s/slurm-%%A_%%a.out\n", abs),  /* the tasks' logs in the sweep directory */
        P("\n#SBATCH --chdir=%s\n", cwd),
        "\n#SBATCH --partition=debug\n#SBATCH --time 10\n#SBATCH --gres=gpu:1\n",   /* --slurm, one option a line */
        P("\nexec '%s' sweep point '%s' \"$SLURM_ARRAY_TASK_ID\"\n", runexp_bin, abs),
    };
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) cr_assert(strstr(text, lines[i]), "no %s in:\n%s", lines[i], text);
    /* sbatch reads #SBATCH lines only before the first command */
    cr_assert_lt(strstr(text, "#SBATCH --gres"), strstr(text, "\nexec "));
    struct stat st;
    cr_assert_eq(stat(script, &st), 0);
    cr_assert(st.st_mode & S_IXUSR, "job.sbatch is executable");
    /* submitted, not run: no run directory yet; the plan names the job and each point's config */
    char names[4][64];
    cr_assert_eq(list_runs(P("%s/tiny", root), names, 4), 0);
    json_t *plan = load_json(P("%s/sweep.json", sweep));
    cr_assert_str_eq(json_str(json_object_get(plan, "slurm"), "job_id"), "4242");
    cr_assert_str_eq(json_str(plan, "launcher"), "slurm");
    json_decref(plan);
    for (int p = 0; p < 2; p++) {
        const char *cfg = read_text(P("%s/points/%d.yaml", sweep, p));
        cr_assert(cfg && strstr(cfg, P("guidance:\n  name: cfg\n  scale: %d.0\n", p + 1)), "points/%d.yaml:\n%s", p, cfg);
    }
}

/* the tasks start together, as an idle cluster starts them: one trains, the other waits on
 * the stage cache's lock and reuses the training; status follows the queue, then summarises */
Test(sweep_slurm, array_tasks_train_once_and_status_summarises) {
    fake_slurm("77", 0);
    /* an eval stage with the feature network of classifier.yaml, so the summary has a metric */
    result c = RUNEXP("classifier", CFG_DIR "classifier.yaml", "--results", T("classifier"));
    RUN_OK(c);
    const char *eval = own(strdup(P("eval={num_images: 8, batch_size: 8, features: {name: classifier, weights: "
                                    "%s/checkpoints/last.safetensors}, metrics: [{name: fd}]}", c.last)));
    const char *root = own(strdup(T("results")));
    result r = RUNEXP("submit", LONG, "--results", root, "--sweep", "guidance.scale=1,3", "--launcher", "slurm", "--set", eval);
    RUN_OK(r);
    const char *sweep = own(strdup(r.last));
    set_queue("77_0 PENDING\n77_1 PENDING\n");
    result st = RUNEXP("status0", "sweep", "status", sweep);
    cr_assert_eq(st.code, 0, "%s", st.err);
    cr_assert(strstr(st.out, "2 pending, 0 running, 0 done, 0 failed"), "%s", st.out);
    cr_assert(!rx_fs_exists(P("%s/summary.csv", sweep)), "no summary before the points are done");
    cr_assert(strstr(read_text(T("squeue.args")), "-h -r -j 77 -o %i %T"), "%s", read_text(T("squeue.args")));

    const char *script = own(strdup(P("%s/job.sbatch", sweep)));
    pid_t t0 = spawn_task(script, "77", 0), t1 = spawn_task(script, "77", 1);
    cr_assert_eq(wait_exit(t0), 0, "task 0:\n%s", read_text(T("task0.err")));
    cr_assert_eq(wait_exit(t1), 0, "task 1:\n%s", read_text(T("task1.err")));
    ASSERT_OK(remove(T("queue")) == 0 ? RX_OK : RX_ERR_IO);   /* the job left the queue */

    const char *trained = NULL;
    cr_assert_eq(count_trained(P("%s/long", root), 2, &trained), 1, "two concurrent tasks of one training config train once");
    for (int p = 0; p < 2; p++) {
        cr_assert_str_eq(point_field(sweep, p, "state"), "done");
        cr_assert_str_eq(point_field(sweep, p, "slurm_task"), P("77_%d", p));
        const char *run = point_field(sweep, p, "run");
        cr_assert(run && strstr(read_text(P("%s/config.yaml", run)), P("  scale: %d.0\n", 1 + 2 * p)), "point %d's run", p);
    }
    result done = RUNEXP("status1", "sweep", "status", sweep);
    cr_assert_eq(done.code, 0, "%s", done.err);
    cr_assert_str_eq(done.last, sweep);
    cr_assert(strstr(done.out, "0 pending, 0 running, 2 done, 0 failed"), "%s", done.out);
    /* the summary of a local sweep (test_runner's guidance sweep): a row per point with its
     * metric, the table sorted by it, a plot of it against the axis */
    const char *csv = read_text(P("%s/summary.csv", sweep));
    cr_assert(csv && !strncmp(csv, "guidance.scale,fd_last,status,run\n", 34), "%s", csv);
    for (int p = 0; p < 2; p++) {
        json_t *ev = load_json(P("%s/eval.json", point_field(sweep, p, "run")));
        double fd = json_number_value(json_object_get(json_object_get(ev, "metrics"), "fd_last"));
        json_decref(ev);
        cr_assert(strstr(csv, P("\n%d,%.6g,done,%s\n", 1 + 2 * p, fd, point_field(sweep, p, "run"))), "point %d: fd %.6g\n%s", p, fd, csv);
    }
    cr_assert(strstr(read_text(P("%s/summary.md", sweep)), "Sorted by fd_last (lower is better)"));
    cr_assert(rx_fs_exists(P("%s/fd_last.png", sweep)), "the metric's plot");
}

/* a task that left the queue without its point's record (killed, out of time) is failed;
 * the summary then says so and status exits 1 */
Test(sweep_slurm, a_task_gone_from_the_queue_without_a_record_is_failed) {
    fake_slurm("88", 0);
    const char *root = own(strdup(T("results")));
    result r = RUNEXP("submit", TINY, "--results", root, "--sweep", "sampler.steps=1,2", "--launcher", "slurm");
    RUN_OK(r);
    const char *sweep = own(strdup(r.last));
    pid_t t0 = spawn_task(P("%s/job.sbatch", sweep), "88", 0);
    cr_assert_eq(wait_exit(t0), 0, "%s", read_text(T("task0.err")));
    set_queue("88_1 RUNNING\n");
    result running = RUNEXP("status0", "sweep", "status", sweep);
    cr_assert_eq(running.code, 0);
    cr_assert(strstr(running.out, "0 pending, 1 running, 1 done, 0 failed"), "%s", running.out);
    ASSERT_OK(remove(T("queue")) == 0 ? RX_OK : RX_ERR_IO);
    result st = RUNEXP("status1", "sweep", "status", sweep);
    cr_assert_eq(st.code, 1, "%s", st.err);
    cr_assert(strstr(st.out, "0 pending, 0 running, 1 done, 1 failed") && strstr(st.out, "ended without finishing the point"),
              "%s", st.out);
    const char *csv = read_text(P("%s/summary.csv", sweep));
    cr_assert(csv && strstr(csv, "\n1,done,") && strstr(csv, "\n2,failed,"), "%s", csv);
}

/* scancel or the time limit: Slurm sends SIGTERM to the task (the script exec's runexp); the
 * point's run writes its checkpoint and says interrupted, the record says how to go on, and
 * status counts the point failed */
Test(sweep_slurm, a_cancelled_task_is_recorded_as_interrupted) {
    fake_slurm("99", 0);
    const char *root = own(strdup(T("results")));
    result r = RUNEXP("submit", LONG, "--results", root, "--sweep", "sampler.steps=1", "--launcher", "slurm");
    RUN_OK(r);
    const char *sweep = own(strdup(r.last));
    pid_t t0 = spawn_task(P("%s/job.sbatch", sweep), "99", 0);
    wait_for_training(t0, P("%s/long", root), 1, 3);
    cr_assert_eq(kill(t0, SIGTERM), 0);
    cr_assert_eq(wait_exit(t0), 130, "%s", read_text(T("task0.err")));
    cr_assert_str_eq(point_field(sweep, 0, "state"), "interrupted");
    const char *err = point_field(sweep, 0, "error");
    cr_assert(err && strstr(err, "runexp --resume"), "%s", err);
    result st = RUNEXP("status", "sweep", "status", sweep);
    cr_assert_eq(st.code, 1, "%s", st.err);
    cr_assert(strstr(st.out, "0 pending, 0 running, 0 done, 1 failed") && strstr(st.out, "runexp --resume"), "%s", st.out);
}

/* a local sweep keeps the same records: status reads it back as done */
Test(sweep_slurm, status_of_a_local_sweep) {
    const char *root = own(strdup(T("results")));
    result r = RUNEXP("sweep", TINY, "--results", root, "--sweep", "sampler.steps=1,2");
    RUN_OK(r);
    ASSERT_OK(remove(P("%s/summary.csv", r.last)) == 0 ? RX_OK : RX_ERR_IO);
    result st = RUNEXP("status", "sweep", "status", r.last);
    cr_assert_eq(st.code, 0, "%s", st.err);
    cr_assert(strstr(st.out, "launcher local") && strstr(st.out, "0 pending, 0 running, 2 done, 0 failed"), "%s", st.out);
    cr_assert_eq(count_lines(P("%s/summary.csv", r.last)), 3);
    /* a point whose process was killed (SIGKILL: no outcome written) is failed, not running
     * forever: its record names a process of this host that no longer exists */
    pid_t gone = spawn_program("/bin/true", (const char *const[]){"true", NULL}, "true");
    cr_assert_eq(wait_exit(gone), 0);
    char host[256] = "";
    cr_assert_eq(gethostname(host, sizeof host - 1), 0);
    const char *rec = P("{\"point\": 1, \"state\": \"running\", \"host\": \"%s\", \"pid\": %d}", host, (int)gone);
    ASSERT_OK(rx_fs_write_atomic(P("%s/points/1.json", r.last), rec, strlen(rec)));
    result killed = RUNEXP("killed", "sweep", "status", r.last);
    cr_assert_eq(killed.code, 1, "%s", killed.err);
    cr_assert(strstr(killed.out, "1 done, 1 failed") && strstr(killed.out, P("(pid %d) ended without finishing", (int)gone)),
              "%s", killed.out);
    /* and while it lives, it is running */
    rec = P("{\"point\": 1, \"state\": \"running\", \"host\": \"%s\", \"pid\": %d}", host, (int)getpid());
    ASSERT_OK(rx_fs_write_atomic(P("%s/points/1.json", r.last), rec, strlen(rec)));
    result alive = RUNEXP("alive", "sweep", "status", r.last);
    cr_assert_eq(alive.code, 0, "%s", alive.err);
    cr_assert(strstr(alive.out, "0 pending, 1 running, 1 done, 0 failed"), "%s", alive.out);
    result bad = RUNEXP("bad", "sweep", "status", root);
    cr_assert_eq(bad.code, 2);
    cr_assert(strstr(bad.err, "no sweep.json"), "%s", bad.err);
}

/* input errors: exit 2, a clear message, nothing written (no results directory at all) */
Test(sweep_slurm, bad_launches_exit_2_and_write_nothing) {
    fake_slurm("1", 0);
    const char *root = own(strdup(T("results")));
    struct { const char *args[10]; const char *msg; } cases[] = {
        {{TINY, "--sweep", "guidance.scale=1,2", "--launcher", "pbs"}, "--launcher must be local or slurm"},
        {{TINY, "--sweep", "guidance.scale=1,2", "--slurm", "--time=5"}, "it needs --launcher slurm"},
        {{TINY, "--launcher", "slurm"}, "--launcher slurm submits a sweep"},
        {{TINY, "--sweep", "guidance.scale=1,2", "--launcher", "slurm", "--slurm", "--comment='a b'"}, "is not supported"},
        {{TINY, "--sweep", "guidance.scale=1,2", "--launcher", "slurm", "--slurm", "partition=gpu"}, "expected sbatch options"},
        {{TINY, "--sweep", "sampler.steps=2,0", "--launcher", "slurm"}, "out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *argv[16];
        int n = 0;
        for (; cases[i].args[n]; n++) argv[n] = cases[i].args[n];
        argv[n++] = "--results";
        argv[n++] = root;
        argv[n] = NULL;
        result r = run_runexp(P("case%zu", i), argv);
        cr_assert_eq(r.code, 2, "case %zu: exit %d\n%s", i, r.code, r.err);
        cr_assert(strstr(r.err, cases[i].msg), "case %zu: no '%s' in:\n%s", i, cases[i].msg, r.err);
        cr_assert(!rx_fs_exists(root), "case %zu wrote %s", i, root);
    }
    cr_assert(!rx_fs_exists(T("sbatch.args")), "nothing was submitted");
    /* no sbatch on PATH (not a Slurm login node): said before anything is written */
    ASSERT_OK(rx_fs_mkdir_p(T("empty")));
    setenv("PATH", T("empty"), 1);
    result r = RUNEXP("nosbatch", TINY, "--sweep", "guidance.scale=1,2", "--launcher", "slurm", "--results", root);
    cr_assert_eq(r.code, 2, "%s", r.err);
    cr_assert(strstr(r.err, "sbatch is not on PATH"), "%s", r.err);
    cr_assert(!rx_fs_exists(root));
}

/* sbatch refuses (a bad partition): exit 1 with sbatch's word, the script kept to fix and resubmit */
Test(sweep_slurm, a_refused_submission_keeps_the_script) {
    fake_slurm("sbatch: error: invalid partition specified: nope", 1);
    const char *root = own(strdup(T("results")));
    result r = RUNEXP("submit", TINY, "--sweep", "guidance.scale=1,2", "--launcher", "slurm", "--slurm", "--partition=nope",
                      "--results", root);
    cr_assert_eq(r.code, 1, "%s", r.err);
    cr_assert(strstr(r.err, "sbatch refused") && strstr(r.err, "exit 1"), "%s", r.err);
    cr_assert(rx_fs_exists(P("%s/tiny/sweep-0001/job.sbatch", root)));
    cr_assert_str_eq(r.last, P("%s/tiny/sweep-0001", root));
}

/* ---------------------------------------------------------------------------------------
 * slurm_daemons: a real local Slurm */

static char cluster[512];

static void cluster_teardown(void) {
    if (cluster[0]) {   /* always: nothing may keep running after the test */
        pid_t pid = spawn_program("/bin/sh", (const char *const[]){"sh", "tests/slurm/local_cluster.sh", "stop", cluster, NULL},
                                  "cluster-stop");
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        cluster[0] = 0;
    }
    teardown();
}

TestSuite(slurm_daemons, .init = setup, .fini = cluster_teardown, .timeout = 300);

/* the seconds until job `job` has left the queue (squeue answers "Invalid job id" or nothing) */
static void wait_for_job(const char *job, double limit_s) {
    double t0 = now_s();
    for (;;) {
        pid_t pid = spawn_program("/bin/sh", (const char *const[]){"sh", "-c", P("squeue -h -j %s -o %%i 2>&1", job), NULL}, "squeue");
        int code = wait_exit(pid);
        const char *out = read_text(T("squeue.out"));
        if ((code == 0 && !out[0]) || strstr(out, "Invalid job id")) return;
        cr_assert_lt(now_s() - t0, limit_s, "job %s still queued after %.0f s: %s", job, limit_s, out);
        usleep(500 * 1000);
    }
}

/* the local cluster of this test (stopped by cluster_teardown), or the test skips saying why */
static void start_cluster(void) {
    snprintf(cluster, sizeof cluster, "%s/cluster", tmpdir);
    ASSERT_OK(rx_fs_mkdir_p(cluster));
    pid_t pid = spawn_program("/bin/sh", (const char *const[]){"sh", "tests/slurm/local_cluster.sh", "start", cluster, NULL},
                              "cluster-start");
    int code = wait_exit(pid);
    if (code == 77) {
        const char *why = read_text(T("cluster-start.err"));
        cr_skip_test("%s", why && *why ? why : "the local Slurm daemons cannot start here");
    }
    cr_assert_eq(code, 0, "local_cluster.sh start: exit %d\n%s", code, read_text(T("cluster-start.err")));
    setenv("SLURM_CONF", P("%s/slurm.conf", cluster), 1);
}

Test(slurm_daemons, guidance_sweep_runs_as_a_job_array_that_trains_once) {
    start_cluster();

    const char *root = own(strdup(T("results")));
    result r = RUNEXP("submit", LONG, "--results", root, "--sweep", "guidance.scale=1,3", "--launcher", "slurm");
    RUN_OK(r);
    const char *sweep = own(strdup(r.last));
    const char *job = own(strdup(strstr(r.out, "submitted Slurm job ") + 20));
    ((char *)job)[strspn(job, "0123456789")] = 0;
    cr_assert(job[0], "%s", r.out);
    wait_for_job(job, 180);

    for (int p = 0; p < 2; p++)
        cr_assert_str_eq(point_field(sweep, p, "state"), "done", "point %d:\n%s", p,
                         read_text(P("%s/slurm-%s_%d.out", sweep, job, p)));
    const char *trained = NULL;
    cr_assert_eq(count_trained(P("%s/long", root), 2, &trained), 1, "the array's two tasks train once");
    result st = RUNEXP("status", "sweep", "status", sweep);
    cr_assert_eq(st.code, 0, "%s", st.err);
    cr_assert(strstr(st.out, "0 pending, 0 running, 2 done, 0 failed"), "%s", st.out);
    cr_assert_eq(count_lines(P("%s/summary.csv", sweep)), 3);
    cr_assert(rx_fs_exists(P("%s/summary.md", sweep)));
}

/* `srun -n 2 --mpi=pmix runexp FILE` (issue 17 §1: a 2-task Slurm step training through MPI,
 * Open MPI bootstrapped by Slurm's PMIx plugin, no mpirun). Reference: the 1-process run of
 * the same experiment at the same global batch: per-step losses and gradient norms within
 * 1e-6 relative (the float sums run in another order); the two ranks' parameters identical
 * (run.json's XXH64 per rank); one run directory, whose run.json says launcher slurm, 2 ranks.
 * With 1 KiB gradient buckets (RUNEXP_BUCKET_MB, passed on by srun's --export=ALL default), so
 * the all-reduce overlapped with backward runs under srun too. Skips, saying why, without
 * MPI in runexp or without Slurm's pmix plugin (`srun --mpi=list`). */
Test(slurm_daemons, srun_two_tasks_train_as_one_process_through_pmix) {
    char mpi[256], nccl[256];
    rx_dist_describe(mpi, sizeof mpi, nccl, sizeof nccl);
    if (!rx_dist_mpi_version()) cr_skip_test("%s (make deps installs libopenmpi-dev; then rebuild)", mpi);
    start_cluster();
    pid_t pid = spawn_program("/bin/sh", (const char *const[]){"sh", "-c", "srun --mpi=list 2>&1", NULL}, "mpilist");
    wait_exit(pid);
    const char *plugins = read_text(T("mpilist.out"));
    if (!strstr(plugins, "pmix"))
        cr_skip_test("Slurm has no pmix MPI plugin here (srun --mpi=list: %s); Debian's slurm-wlm-basic-plugins "
                     "ships mpi_pmix for Open MPI", plugins);

    const char *root = own(strdup(T("results")));
    result one = RUNEXP("one", TINY, "--results", P("%s/one", root), "--quiet");
    RUN_OK(one);
    const char *ref = own(strdup(one.last));
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);   /* the CI runs as root */
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMP_NUM_THREADS", "1", 1);
    setenv("RUNEXP_BUCKET_MB", "0.001", 1);
    const char *argv[] = {"timeout", "180", "srun", "-n", "2", "--mpi=pmix", runexp_bin, TINY, "--results",
                          own(strdup(P("%s/two", root))), "--quiet", NULL};
    double t0 = now_s();
    result two = collect("two", wait_exit(spawn_program("/usr/bin/timeout", argv, "two")));
    unsetenv("RUNEXP_BUCKET_MB");
    cr_assert_neq(two.code, 124, "srun hung (stopped by timeout after %.0f s):\n%s", now_s() - t0, two.err);
    cr_assert_eq(two.code, 0, "srun -n 2 --mpi=pmix runexp: exit %d\n%s", two.code, two.err);

    char names[4][64];
    cr_assert_eq(list_runs(P("%s/two/tiny", root), names, 4), 1, "one run directory for the 2 tasks");
    const char *run = own(strdup(P("%s/two/tiny/%s", root, names[0])));
    cr_assert_str_eq(run_field(run, "status"), "done");
    json_t *j = load_json(P("%s/run.json", run));
    json_t *d = json_object_get(j, "dist"), *h = json_object_get(j, "param_xxh64_per_rank");
    cr_assert_str_eq(json_str(d, "launcher"), "slurm");
    cr_assert_eq(json_integer_value(json_object_get(d, "ranks")), 2);
    cr_assert(json_is_array(h) && json_array_size(h) == 2, "run.json has no param_xxh64_per_rank for 2 ranks");
    cr_assert_str_eq(json_string_value(json_array_get(h, 0)), json_string_value(json_array_get(h, 1)),
                     "the two tasks' parameters differ");
    cr_assert_gt(json_integer_value(json_object_get(json_object_get(j, "grad_buckets"), "buckets")), 10);
    json_decref(j);

    static metrics_row a[64], b[64];
    int na = read_metrics(P("%s/metrics.jsonl", run), a, 64), nb = read_metrics(P("%s/metrics.jsonl", ref), b, 64);
    cr_assert_eq(na, 6, "%d metrics rows, want one per step of 6", na);
    cr_assert_eq(na, nb);
    for (int i = 0; i < na; i++) {
        cr_assert_eq(a[i].step, b[i].step);
        double dl = fabs(a[i].loss - b[i].loss) / fabs(b[i].loss), dg = fabs(a[i].grad_norm - b[i].grad_norm) / b[i].grad_norm;
        cr_expect(dl <= 1e-6 && dg <= 1e-6, "step %lld: loss %.9g under srun, %.9g in one process; grad_norm %.9g, %.9g",
                  (long long)a[i].step, a[i].loss, b[i].loss, a[i].grad_norm, b[i].grad_norm);
    }
}
