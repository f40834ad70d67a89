/* test_dist.c — data-parallel training (src/dist/, issue 17 §1-4).
 *
 * References: the launcher variables' documentation (Open MPI's OMPI_COMM_WORLD_*, Slurm's
 * SLURM_PROCID/NTASKS/LOCALID, torchrun's RANK/WORLD_SIZE/LOCAL_RANK) for the environment
 * table; for training, the single-process run of the same experiment at the same global batch
 * (its per-step losses and gradient norms, within 1e-6 relative: the float sums run in another
 * order) and the uninterrupted run a resumed one must reproduce. The multi-rank tests start
 * `mpirun -np 2 --oversubscribe` on the CPU backend (as root with Open MPI's allow-run-as-root
 * variables) and skip, saying why, when mpirun is absent or this runexp has no MPI. Every
 * mpirun runs under `timeout`: a hang fails the test instead of stalling the suite. */
#include "runexp_harness.h"
#include "dist/dist.h"

#include <math.h>

/* ---- the launcher table ---- */

static const char *const *fake_env;   /* NAME=VALUE strings, NULL-terminated */
static const char *fake_getenv(const char *name) {
    size_t n = strlen(name);
    for (int i = 0; fake_env[i]; i++)
        if (!strncmp(fake_env[i], name, n) && fake_env[i][n] == '=') return fake_env[i] + n + 1;
    return NULL;
}

Test(dist, ranks_come_from_the_first_launcher_that_set_them) {
    static const struct {
        const char *env[8];
        rx_dist_env want;
    } cases[] = {
        {{NULL}, {0, 1, 0, "none"}},
        {{"OMPI_COMM_WORLD_RANK=3", "OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_LOCAL_RANK=1", NULL}, {3, 4, 1, "openmpi"}},
        {{"SLURM_PROCID=5", "SLURM_NTASKS=8", "SLURM_LOCALID=1", NULL}, {5, 8, 1, "slurm"}},
        {{"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1", NULL}, {1, 2, 1, "torchrun"}},
        /* mpirun inside a Slurm allocation: Open MPI's variables win over Slurm's */
        {{"SLURM_PROCID=0", "SLURM_NTASKS=1", "OMPI_COMM_WORLD_RANK=1", "OMPI_COMM_WORLD_SIZE=2", NULL}, {1, 2, 0, "openmpi"}},
        /* srun of a torchrun-style script: Slurm's before torchrun's */
        {{"RANK=0", "WORLD_SIZE=1", "SLURM_PROCID=2", "SLURM_NTASKS=3", "SLURM_LOCALID=0", NULL}, {2, 3, 0, "slurm"}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        fake_env = cases[k].env;
        rx_dist_env e;
        cr_assert_eq(rx_dist_env_read(fake_getenv, &e), RX_OK, "case %zu: %s", k, rx_last_error());
        cr_expect(e.rank == cases[k].want.rank && e.world == cases[k].want.world &&
                  e.local_rank == cases[k].want.local_rank && !strcmp(e.launcher, cases[k].want.launcher),
                  "case %zu: got rank %d of %d local %d (%s)", k, e.rank, e.world, e.local_rank, e.launcher);
    }
}

Test(dist, a_bad_launcher_variable_is_named) {
    static const char *const bad[][4] = {
        {"RANK=2", "WORLD_SIZE=2", NULL},                    /* rank outside the world */
        {"SLURM_PROCID=x", "SLURM_NTASKS=2", NULL},           /* not a number */
        {"OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=0", NULL},
    };
    const char *names[] = {"RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_SIZE"};
    for (int k = 0; k < 3; k++) {
        fake_env = bad[k];
        rx_dist_env e;
        cr_expect_eq(rx_dist_env_read(fake_getenv, &e), RX_ERR_CONFIG, "case %d accepted", k);
        cr_expect(strstr(rx_last_error(), names[k]), "case %d: '%s' does not name %s", k, rx_last_error(), names[k]);
    }
}

/* ---- runs ---- */

/* a small U-Net on synthetic images: 6 steps of a global batch of 4, every step logged,
 * checkpoints at 2, 4, 6 */
static const char *write_experiment(void) {
    const char *path = T("dp.yaml");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("experiment: dp\nseed: 3\nbackend: cpu\n"
          "dataset: {name: synthetic, num_images: 64, size: 8, channels: 3, num_classes: 4}\n"
          "transforms:\n  - {name: normalize}\n"
          "model: {name: unet, sample_size: 8, in_channels: 3, out_channels: 3, layers_per_block: 1,\n"
          "        block_out_channels: [8, 16], down_block_types: [DownBlock2D, AttnDownBlock2D],\n"
          "        up_block_types: [AttnUpBlock2D, UpBlock2D], attention_head_dim: 8, norm_num_groups: 4}\n"
          "schedule: {name: linear, num_train_timesteps: 100}\n"
          "objective: {name: ddpm, prediction_type: epsilon}\n"
          "optimizer: {name: adamw, lr: 1.0e-3}\n"
          "train: {steps: 6, batch_size: 4, log_every: 1, checkpoint_every: 2, ema_decay: 0.99}\n"
          "sampler: {name: ddpm, steps: 2}\nsample: {num_images: 4, batch_size: 4}\n", f);
    cr_assert_eq(fclose(f), 0);
    return path;
}

static char mpirun_bin[512];

/* mpirun on PATH and MPI in this runexp, or the test skips saying which is missing */
static void require_mpi(void) {
    char mpi[256], nccl[256];
    rx_dist_describe(mpi, sizeof mpi, nccl, sizeof nccl);
    if (!rx_dist_mpi_version()) cr_skip_test("%s (make deps installs libopenmpi-dev; then rebuild)", mpi);
    const char *path = getenv("PATH");
    char *dirs = own(strdup(path ? path : "/usr/bin"));
    for (char *d = strtok(dirs, ":"); d; d = strtok(NULL, ":")) {
        snprintf(mpirun_bin, sizeof mpirun_bin, "%s/mpirun", d);
        if (access(mpirun_bin, X_OK) == 0) break;
        mpirun_bin[0] = 0;
    }
    if (!mpirun_bin[0]) cr_skip_test("no mpirun on PATH (make deps installs openmpi-bin)");
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);   /* the CI runs as root */
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMP_NUM_THREADS", "1", 1);
}

/* `timeout 180 mpirun -np N ... runexp ARGS`: a hang ends as timeout's exit 124 */
static result run_mpi(const char *tag, int ranks, const char *fault, const char *const *args) {
    const char *argv[64] = {"timeout", "180", mpirun_bin, "-np", own(strdup(P("%d", ranks))), "--oversubscribe",
                            "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1", "-x", "OMP_NUM_THREADS",
                            "-x", "OPENBLAS_NUM_THREADS", "-x", "OMP_WAIT_POLICY",
                            /* SANITIZE=1: Open MPI's plugins leave allocations LeakSanitizer cannot
                             * name (dlclose'd: "<unknown module>"), so no suppression matches them;
                             * leaks stay checked in the 1-process runs of the same code */
                            "-x", "ASAN_OPTIONS=detect_leaks=0"};
    int n = 19;
    if (fault) {
        setenv("RX_DIST_TEST_FAULT", fault, 1);
        argv[n++] = "-x";
        argv[n++] = "RX_DIST_TEST_FAULT";
    }
    if (getenv("RUNEXP_BUCKET_MB")) {   /* a test's bucket size, to every rank */
        argv[n++] = "-x";
        argv[n++] = "RUNEXP_BUCKET_MB";
    }
    argv[n++] = runexp_bin;
    for (int i = 0; args[i]; i++) argv[n++] = args[i];
    argv[n] = NULL;
    double t0 = now_s();
    result r = collect(tag, wait_exit(spawn_program("/usr/bin/timeout", argv, tag)));
    unsetenv("RX_DIST_TEST_FAULT");
    cr_assert_neq(r.code, 124, "mpirun hung (stopped by timeout after %.0f s):\n%s", now_s() - t0, r.err);
    return r;
}
#define MPI_RUNEXP(tag, ranks, fault, ...) run_mpi((tag), (ranks), (fault), (const char *const[]){__VA_ARGS__, NULL})

static int metrics_of(const char *run_dir, metrics_row *rows) { return read_metrics(P("%s/metrics.jsonl", run_dir), rows, 64); }

/* rows equal step for step, loss and grad_norm within rel (0: bit for bit) */
static void assert_losses_match(const char *what, const char *run, const char *ref, double rel) {
    static metrics_row a[64], b[64];
    int na = metrics_of(run, a), nb = metrics_of(ref, b);
    cr_assert_eq(na, 6, "%s: %d metrics rows, want one per step of 6", what, na);
    cr_assert_eq(na, nb, "%s: %d rows, the reference %d", what, na, nb);
    for (int i = 0; i < na; i++) {
        cr_assert_eq(a[i].step, i + 1, "%s: row %d is step %lld (each step exactly once, in order)", what, i + 1,
                     (long long)a[i].step);
        cr_assert_eq(a[i].step, b[i].step);
        double dl = fabs(a[i].loss - b[i].loss) / fabs(b[i].loss), dg = fabs(a[i].grad_norm - b[i].grad_norm) / b[i].grad_norm;
        cr_assert(dl <= rel && dg <= rel, "%s: step %lld: loss %.9g vs %.9g (rel %.2g), grad_norm %.9g vs %.9g (rel %.2g)",
                  what, (long long)a[i].step, a[i].loss, b[i].loss, dl, a[i].grad_norm, b[i].grad_norm, dg);
    }
}

/* the only run directory under root/dp */
static const char *only_run(const char *root) {
    char names[8][64];
    int n = list_runs(P("%s/dp", root), names, 8);
    cr_assert_eq(n, 1, "%d run directories under %s/dp, want exactly one", n, root);
    return own(strdup(P("%s/dp/%s", root, names[0])));
}

static void assert_replicas_identical(const char *run_dir) {
    json_t *j = load_json(P("%s/run.json", run_dir));
    json_t *h = json_object_get(j, "param_xxh64_per_rank");
    cr_assert(json_is_array(h) && json_array_size(h) == 2, "%s: run.json has no param_xxh64_per_rank for 2 ranks", run_dir);
    cr_assert_str_eq(json_string_value(json_array_get(h, 0)), json_string_value(json_array_get(h, 1)),
                     "the two ranks' parameters differ");
    json_t *d = json_object_get(j, "dist");
    cr_assert_str_eq(json_str(d, "launcher"), "openmpi");
    cr_assert_eq(json_integer_value(json_object_get(d, "ranks")), 2);
    json_decref(j);
}

TestSuite(dist_mpi, .init = setup, .fini = teardown, .timeout = 900);

/* 2 ranks at the same global batch = 1 process: per-step losses and gradient norms within
 * 1e-6, the same parameters on both ranks (XXH64), one run directory, one stdout line */
Test(dist_mpi, two_ranks_train_as_one_process_at_the_same_global_batch) {
    require_mpi();
    const char *yaml = write_experiment();
    result one = RUNEXP("one", yaml, "--results", T("r1"), "--quiet");
    RUN_OK(one);
    result two = MPI_RUNEXP("two", 2, NULL, yaml, "--results", T("r2"), "--quiet");
    RUN_OK(two);
    const char *run = only_run(T("r2"));
    cr_assert_eq(count_substr(two.out, "\n") , 1, "stdout of 2 ranks (rank 0 prints the run once):\n%s", two.out);
    cr_assert_str_eq(run_field(run, "status"), "done");
    assert_losses_match("2 ranks vs 1 process", run, only_run(T("r1")), 1e-6);
    assert_replicas_identical(run);
    cr_assert(rx_fs_exists(P("%s/checkpoints/last.safetensors", run)) && rx_fs_exists(P("%s/samples", run)));
}

/* run.json's grad_buckets (rank 0 writes it after the replicas' check) */
static void buckets_of(const char *run_dir, int *buckets, int *in_backward) {
    json_t *j = load_json(P("%s/run.json", run_dir));
    json_t *g = json_object_get(j, "grad_buckets");
    cr_assert(json_is_object(g), "%s: run.json has no grad_buckets", run_dir);
    *buckets = (int)json_integer_value(json_object_get(g, "buckets"));
    *in_backward = (int)json_integer_value(json_object_get(g, "started_in_backward"));
    json_decref(j);
}

static const char *param_hash_of(const char *run_dir) {
    json_t *j = load_json(P("%s/run.json", run_dir));
    const char *h = own(strdup(json_string_value(json_array_get(json_object_get(j, "param_xxh64_per_rank"), 0))));
    json_decref(j);
    return h;
}

/* The gradient all-reduce in buckets started during backward (dist/grad_buckets.c). With 1 KiB
 * buckets (RUNEXP_BUCKET_MB=0.001: the U-Net's gradients in tens of buckets, each started as
 * backward finishes its last gradient): 2 ranks train as one process (within 1e-6: the
 * reference), with and without gradient checkpointing (its blocks' parameters are final after
 * the block's replay). Bucketing off (RUNEXP_BUCKET_MB=0: one bucket after the whole backward)
 * gives the same run bit for bit: every element is the float sum of the same two ranks' values,
 * whichever bucket carried it. Parameters identical on both ranks in every run. */
Test(dist_mpi, bucketed_all_reduce_overlapped_with_backward_trains_as_one_process) {
    require_mpi();
    const char *yaml = own(strdup(write_experiment()));   /* T's buffers rotate: this one outlives many */
    result one = RUNEXP("one", yaml, "--results", T("r1"), "--quiet");
    RUN_OK(one);
    result one_ck = RUNEXP("one_ck", yaml, "--set", "train.gradient_checkpointing=true", "--results", T("r1ck"), "--quiet");
    RUN_OK(one_ck);

    setenv("RUNEXP_BUCKET_MB", "0.001", 1);
    result tiny = MPI_RUNEXP("tiny", 2, NULL, yaml, "--results", T("tiny"), "--quiet");
    result tiny_ck = MPI_RUNEXP("tiny_ck", 2, NULL, yaml, "--set", "train.gradient_checkpointing=true", "--results",
                                T("tiny_ck"), "--quiet");
    setenv("RUNEXP_BUCKET_MB", "0", 1);
    result off = MPI_RUNEXP("off", 2, NULL, yaml, "--results", T("off"), "--quiet");
    unsetenv("RUNEXP_BUCKET_MB");
    RUN_OK(tiny);
    RUN_OK(tiny_ck);
    RUN_OK(off);

    const char *runs[] = {only_run(T("tiny")), only_run(T("tiny_ck")), only_run(T("off"))};
    int nb, in_bwd;
    for (int k = 0; k < 2; k++) {
        buckets_of(runs[k], &nb, &in_bwd);
        cr_assert_gt(nb, 10, "%s: %d buckets of 1 KiB for the U-Net's gradients", runs[k], nb);
        cr_assert_eq(in_bwd, nb, "%s: %d of %d buckets started during backward (with 1 KiB buckets every one "
                     "is complete before backward ends)", runs[k], in_bwd, nb);
    }
    buckets_of(runs[2], &nb, &in_bwd);
    cr_assert(nb == 1 && in_bwd == 0, "bucketing off: %d buckets, %d started in backward", nb, in_bwd);

    assert_losses_match("2 ranks, 1 KiB buckets vs 1 process", runs[0], only_run(T("r1")), 1e-6);
    assert_losses_match("2 ranks, 1 KiB buckets, checkpointed vs 1 process", runs[1], only_run(T("r1ck")), 1e-6);
    assert_losses_match("2 ranks, 1 KiB buckets vs one bucket", runs[0], runs[2], 0);
    for (int k = 0; k < 3; k++) assert_replicas_identical(runs[k]);
    cr_assert_str_eq(param_hash_of(runs[0]), param_hash_of(runs[2]), "bucketing on and off ended with different parameters");
}

/* a bucket size that is not one: exit 2 naming the variable, nothing written */
Test(dist_mpi, a_bad_bucket_size_is_refused) {
    const char *yaml = write_experiment();
    setenv("RUNEXP_BUCKET_MB", "25MB", 1);
    result r = RUNEXP("bad", yaml, "--results", T("r"), "--quiet");
    unsetenv("RUNEXP_BUCKET_MB");
    cr_assert_eq(r.code, 2, "exit %d:\n%s", r.code, r.err);
    cr_assert(strstr(r.err, "RUNEXP_BUCKET_MB='25MB'"), "%s", r.err);
    cr_assert(!rx_fs_exists(T("r")), "a refused run wrote %s", T("r"));
}

/* One rank killed (SIGKILL) at step 5 of 6: the job ends instead of hanging, rank 0 says why
 * and names the last checkpoint (step 4). That run then resumes on 2 ranks and, copied, on 1:
 * - diffusers#2091: a multi-GPU resume failed on per-rank state only rank 0 had saved; here the
 *   checkpoint holds no per-rank state (the randomness is keyed by seed, step and global image
 *   index), so the resume works on 2 ranks and on 1, and continues at step 5, not another step;
 * - guided-diffusion#23: a multi-GPU resume hung because only rank 0 ran a load that was a
 *   collective; here every rank reads the checkpoint itself, and the resume runs under timeout.
 * Reference: the uninterrupted 2-rank run's per-step losses (2 ranks: bit for bit, the same
 * sums in the same order; 1 process: within 1e-6). */
Test(dist_mpi, a_killed_rank_ends_the_job_and_the_run_resumes_on_1_or_2_ranks) {
    require_mpi();
    const char *yaml = write_experiment();
    result ref = MPI_RUNEXP("ref", 2, NULL, yaml, "--results", T("ref"), "--quiet");
    RUN_OK(ref);
    const char *ref_run = only_run(T("ref"));

    double t0 = now_s();
    result killed = MPI_RUNEXP("killed", 2, "kill:1:5", yaml, "--results", T("r2"), "--quiet");
    cr_assert_neq(killed.code, 0, "a job with a killed rank exited 0");
    cr_assert_lt(now_s() - t0, 120, "the job took %.0f s to end after a rank died", now_s() - t0);
    cr_assert(strstr(killed.err, "another rank has died"), "rank 0 does not say why it stopped:\n%s", killed.err);
    const char *run = only_run(T("r2"));
    cr_assert(strstr(killed.err, P("the last checkpoint is step 4 in %s", run)), "no checkpoint named:\n%s", killed.err);
    cr_assert_eq(checkpoint_step(P("%s/checkpoints/last.safetensors", run)), 4);

    /* the same run on 1 rank: a copy, so that both resumes start from the killed state */
    cr_assert_eq(system(P("mkdir -p %s/dp && cp -a %s %s/dp/", T("r1"), run, T("r1"))), 0);
    const char *copy = only_run(T("r1"));

    result two = MPI_RUNEXP("resume2", 2, NULL, "--resume", run, "--quiet");
    RUN_OK(two);
    cr_assert_str_eq(run_field(run, "status"), "done");
    assert_losses_match("killed at 5, resumed on 2 ranks", run, ref_run, 0);
    assert_replicas_identical(run);
    cr_assert(strstr(read_text(P("%s/log.txt", run)), "resumed from") != NULL);

    result one = RUNEXP("resume1", "--resume", copy, "--quiet");
    RUN_OK(one);
    cr_assert_str_eq(run_field(copy, "status"), "done");
    assert_losses_match("killed at 5 on 2 ranks, resumed on 1", copy, ref_run, 1e-6);
    assert_one_index_row(T("r2/dp"), run, "done");
}

/* A rank whose step fails (an error, not a crash) stops every rank at that step: exit 1 with
 * rank 0's message naming the failed rank, run.json failed, no hang. Also with 1 KiB gradient
 * buckets: the other rank has started its buckets' all-reduces during its backward when the
 * failing one, which skipped the step, joins the agreement (it issues them too, then all drop
 * them); and with the failure inside the backward (RX_DIST_TEST_FAULT bwd), after its first
 * bucket started and before the others (it starts the rest after its backward returns). */
Test(dist_mpi, a_failing_rank_stops_all_ranks_with_a_clear_message) {
    require_mpi();
    const char *yaml = own(strdup(write_experiment()));
    for (int k = 0; k < 3; k++) {
        if (k) setenv("RUNEXP_BUCKET_MB", "0.001", 1);
        const char *root = own(strdup(T(k == 0 ? "r2" : k == 1 ? "r2tiny" : "r2bwd")));
        result r = MPI_RUNEXP("fail", 2, k < 2 ? "fail:1:3" : "bwd:1:3", yaml, "--results", root, "--quiet");
        unsetenv("RUNEXP_BUCKET_MB");
        cr_assert_eq(r.code, 1, "exit %d:\n%s", r.code, r.err);
        cr_assert(strstr(r.err, k < 2 ? "runexp rank 1 of 2: RX_DIST_TEST_FAULT: rank 1 fails at step 3"
                                      : "runexp rank 1 of 2: RX_DIST_TEST_FAULT: rank 1 fails in its backward"), "%s", r.err);
        const char *run = only_run(root);
        cr_assert_str_eq(run_field(run, "status"), "failed");
        cr_assert(strstr(run_field(run, "error"), "rank 1 of 2 failed"), "run.json error: %s", run_field(run, "error"));
    }
}

/* a global batch that does not split over the ranks: exit 2 before anything is written */
Test(dist_mpi, a_batch_that_does_not_divide_by_the_ranks_is_refused) {
    require_mpi();
    const char *yaml = write_experiment();
    result r = MPI_RUNEXP("odd", 2, NULL, yaml, "--set", "train.batch_size=5", "--results", T("r2"), "--quiet");
    cr_assert_eq(r.code, 2, "exit %d:\n%s", r.code, r.err);
    cr_assert(strstr(r.err, "train.batch_size = 5") && strstr(r.err, "2 ranks"), "%s", r.err);
    cr_assert(!rx_fs_exists(T("r2")), "a refused run wrote %s", T("r2"));
}

/* The launcher's environment says 2 ranks but MPI (a singleton without mpirun) sees 1, as
 * with a batch script that runs runexp without srun: exit 2, named, nothing written. A build
 * without MPI refuses the same world with its own message. */
Test(dist_mpi, a_world_mpi_does_not_see_is_refused) {
    const char *yaml = write_experiment();
    setenv("SLURM_PROCID", "0", 1);
    setenv("SLURM_NTASKS", "2", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    result r = RUNEXP("env", yaml, "--results", T("r"), "--quiet");
    unsetenv("SLURM_PROCID");
    unsetenv("SLURM_NTASKS");
    cr_assert_eq(r.code, 2, "exit %d:\n%s", r.code, r.err);
    cr_assert(strstr(r.err, rx_dist_mpi_version() ? "launcher's environment says rank 0 of 2" : "built without MPI"),
              "%s", r.err);
    cr_assert(!rx_fs_exists(T("r")), "a refused run wrote %s", T("r"));
}

/* Sampling split over the ranks: the 2-rank run reuses the 1-process run's training (the
 * stage cache, looked up by rank 0 and broadcast), each rank generates its share of the 5
 * images (3 and 2, batches of 2) and rank 0 gathers them. Reference: the 1-process run's
 * samples from the same weights; the noise is keyed by the image index, so the gathered
 * images and the grid are the same bytes. */
Test(dist_mpi, sampling_is_split_over_the_ranks_and_gathered_on_rank_0) {
    require_mpi();
    const char *yaml = write_experiment();
    result one = RUNEXP("one", yaml, "--set", "sample.num_images=5", "--set", "sample.batch_size=2", "--results", T("r"),
                        "--quiet");
    RUN_OK(one);
    result two = MPI_RUNEXP("two", 2, NULL, yaml, "--set", "sample.num_images=5", "--set", "sample.batch_size=2",
                            "--results", T("r"), "--quiet");
    RUN_OK(two);
    cr_assert_str_neq(one.last, two.last);
    const char *log = read_text(P("%s/log.txt", two.last));
    cr_assert(strstr(log, "train: reusing the trained weights of"), "the 2-rank run trained again:\n%s", log);
    cr_assert(strstr(log, "sample: 5 images gathered from 2 ranks"), "%s", log);
    assert_same_tensors(P("%s/samples/samples.safetensors", one.last), P("%s/samples/samples.safetensors", two.last));
    long na = 0, nb = 0;
    char *a = rx_test_read_file(P("%s/samples/grid.png", one.last), &na);
    char *b = rx_test_read_file(P("%s/samples/grid.png", two.last), &nb);
    cr_assert(a && b && na == nb && !memcmp(a, b, (size_t)na), "grid.png differs");
    free(a), free(b);
}

/* Evaluation split over the ranks: each rank generates and extracts its share of the 10
 * evaluation images (5 and 5, batches of 4), rank 0 gathers the feature and logit rows and
 * folds them in one process's batches. Reference: the 1-process run's eval.json from the
 * same weights (the stage cache's); within 1e-6 relative, as the extractor's batches differ
 * (measured: 5e-9 on the Fréchet distance). */
Test(dist_mpi, evaluation_is_split_over_the_ranks_and_gathered_on_rank_0) {
    require_mpi();
    /* where runexp looks: $RUNEXP_DATA (run_tests.sh points it at the shared copies), else data/ */
    const char *root = getenv("RUNEXP_DATA") && *getenv("RUNEXP_DATA") ? getenv("RUNEXP_DATA") : "data";
    if (!rx_fs_is_dir(P("%s/mnist", root)))
        cr_skip_test("%s/mnist missing: run `make data` (the MNIST classifier's features)", root);
    const char *yaml = "tests/configs/runner/mnist_eval.yaml";
    result one = RUNEXP("one", yaml, "--results", T("r"), "--quiet");
    RUN_OK(one);
    result two = MPI_RUNEXP("two", 2, NULL, yaml, "--results", T("r"), "--quiet");
    RUN_OK(two);
    const char *log = read_text(P("%s/log.txt", two.last));
    cr_assert(strstr(log, "train: reusing the trained weights of"), "%s", log);
    cr_assert(strstr(log, "eval: 10 images' features gathered from 2 ranks"), "%s", log);
    json_t *ja = load_json(P("%s/eval.json", one.last)), *jb = load_json(P("%s/eval.json", two.last));
    json_t *a = json_object_get(ja, "metrics"), *b = json_object_get(jb, "metrics");
    const char *names[] = {"fd_mnist_classifier", "class_accuracy_mnist_classifier"};
    for (int k = 0; k < 2; k++) {
        json_t *va = json_object_get(a, names[k]), *vb = json_object_get(b, names[k]);
        cr_assert(json_is_number(va) && json_is_number(vb), "eval.json has no %s", names[k]);
        double x = json_number_value(va), y = json_number_value(vb);
        cr_expect(fabs(x - y) <= 1e-6 * fabs(x), "%s: %.17g on 1 process, %.17g on 2 ranks", names[k], x, y);
    }
    json_decref(ja);
    json_decref(jb);
}

/* the pids of the processes whose command line holds both a and b (the ranks of one run) */
static int pids_with(const char *a, const char *b_arg, pid_t *out, int max) {
    const char *b = own(strdup(b_arg));   /* P's buffers rotate in the loop */
    DIR *d = opendir("/proc");
    cr_assert_not_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < max;) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        char buf[4096];
        int fd = open(P("/proc/%s/cmdline", e->d_name), O_RDONLY);
        if (fd < 0) continue;
        ssize_t len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0) continue;
        for (ssize_t i = 0; i < len; i++) if (!buf[i]) buf[i] = ' ';
        buf[len] = 0;
        if (!strncmp(buf, a, strlen(a)) && strstr(buf, b)) out[n++] = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return n;
}

/* Slurm's time limit or scancel: SIGTERM to every rank (srun forwards it to each task). The
 * ranks agree to stop at the same step, rank 0 checkpoints it, run.json says interrupted and
 * every rank exits 130; the checkpoint is at the last logged step. */
Test(dist_mpi, sigterm_to_every_rank_stops_them_at_the_same_step_checkpointed) {
    require_mpi();
    const char *yaml = write_experiment();
    const char *const args[] = {yaml, "--set", "train.steps=100000", "--set", "train.checkpoint_every=50", "--results",
                                T("r"), "--quiet", NULL};
    const char *argv[64] = {"timeout", "180", mpirun_bin, "-np", "2", "--oversubscribe", "--bind-to", "none", "--mca",
                            "mpi_yield_when_idle", "1", "-x", "OMP_NUM_THREADS", "-x", "OPENBLAS_NUM_THREADS", "-x",
                            "OMP_WAIT_POLICY", "-x", "ASAN_OPTIONS=detect_leaks=0", runexp_bin};
    int n = 20;
    for (int i = 0; args[i]; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t job = spawn_program("/usr/bin/timeout", argv, "term");
    const char *run = wait_for_training(job, T("r/dp"), 0, 5);
    pid_t ranks[4];
    int nr = pids_with(runexp_bin, T("r"), ranks, 4);
    cr_assert_eq(nr, 2, "%d rank processes found", nr);
    for (int i = 0; i < nr; i++) cr_assert_eq(kill(ranks[i], SIGTERM), 0, "kill %d: %s", (int)ranks[i], strerror(errno));
    result r = collect("term", wait_exit(job));
    cr_assert_neq(r.code, 124, "the ranks did not stop (timeout):\n%s", r.err);
    cr_assert_eq(r.code, 130, "exit %d:\n%s", r.code, r.err);
    cr_assert_eq(count_substr(r.err, "interrupted at step"), 2, "both ranks stop at a step:\n%s", r.err);
    cr_assert_str_eq(run_field(run, "status"), "interrupted");
    static metrics_row rows[4096];
    int nrow = read_metrics(P("%s/metrics.jsonl", run), rows, 4096);
    cr_assert_gt(nrow, 0);
    cr_assert_eq(rows[nrow - 1].step, nrow, "metrics rows are not steps 1..%d", nrow);
    cr_assert_eq(checkpoint_step(P("%s/checkpoints/last.safetensors", run)), nrow,
                 "the checkpoint is not at the step both ranks stopped at");
    cr_assert(strstr(r.err, P("rank 0 of 2: interrupted at step %d", nrow)) &&
              strstr(r.err, P("rank 1 of 2: interrupted at step %d", nrow)), "%s", r.err);
}
