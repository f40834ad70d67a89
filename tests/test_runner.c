/* test_runner.c — the runexp binary end to end (issue 3, "Tests").
 *
 * Each test runs the real runexp (posix_spawn; the binary next to this test's build
 * directory, build/runexp) on the tiny experiments of tests/configs/runner/, with
 * --results pointing at a fresh temporary directory. References:
 *   - the command-line contract of issue 3: exit status 0 / 1 / 2 / 130, the last stdout
 *     line is the run (or sweep) directory, a bad config writes nothing;
 *   - the result-directory layout of src/runner/run.h and DESIGN.md ("Results");
 *   - a second, uninterrupted run of the same config on the CPU, compared bit for bit
 *     (reproduce, resume after SIGKILL, resume after SIGINT, init from a checkpoint);
 *   - diffusers' UNet2DModel parameter count, torchvision make_grid's output size;
 *   - counting: trainings in a sweep, run numbers under 8 concurrent processes.
 * tiny.yaml runs in about 0.5 s, long.yaml (100 steps) in about 2.5 s. */
#include "testutil.h"
#include "io/fsutil.h"
#include "io/png.h"
#include "io/safetensors.h"
#include "kernels/backend.h"
#include "kernels/cuda_backend.h"
#include "runner/checkpoint.h"
#include "runner/pipeline.h"

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

extern char **environ;

#define CFG_DIR "tests/configs/runner/"
#define TINY CFG_DIR "tiny.yaml"
#define LONG CFG_DIR "long.yaml"
#define SWEEP CFG_DIR "sweep.yaml"
#define CLASSIFIER CFG_DIR "classifier.yaml"

/* diffusers: sum(p.numel() for p in UNet2DModel(sample_size=8, in_channels=3, out_channels=3,
 *   layers_per_block=1, block_out_channels=(8, 16), down_block_types=("DownBlock2D",)*2,
 *   up_block_types=("UpBlock2D",)*2, attention_head_dim=8, norm_num_groups=4,
 *   num_class_embeds=3).parameters())   (num_classes 2 + the CFG null label) */
#define TINY_UNET_PARAMETERS 41995

/* tensors of the checkpoint's model group = parameters of the model */
static int model_group_tensors(const rx_st_file *ckpt) {
    int n = 0;
    for (int i = 0; i < rx_st_count(ckpt); i++) n += !strncmp(rx_st_tensor_at(ckpt, i)->name, "model.", 6);
    return n;
}

#include "runexp_harness.h"

TestSuite(runner, .init = setup, .fini = teardown, .timeout = 120);

#include "st_corrupt.h"   /* uses ASSERT_OK */

/* ---------------------------------------------------------------------------------------
 * command-line contract */

Test(runner, help_version_list) {
    result r = RUNEXP("help", "--help");
    cr_assert_eq(r.code, 0);
    cr_assert(strstr(r.out, "usage:") && strstr(r.out, "--resume RUN_DIR"), "%s", r.out);
    r = RUNEXP("version", "--version");
    cr_assert_eq(r.code, 0);
    cr_assert(!strncmp(r.out, "runexp ", 7), "%s", r.out);
    r = run_runexp("noargs", (const char *const[]){NULL});
    cr_assert_eq(r.code, 2, "no arguments: exit %d", r.code);

    r = RUNEXP("list", "list");
    cr_assert_eq(r.code, 0);
    const char *kinds[] = {"datasets:", "models:", "schedules:", "samplers:", "guidances:", "optimizers:", "metrics:"};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) cr_assert(strstr(r.out, kinds[k]), "no '%s' in:\n%s", kinds[k], r.out);

    /* ddim with its parameters, types and defaults (src/diffusion/sampler_ddim.c's table) */
    r = RUNEXP("samplers", "list", "samplers");
    cr_assert_eq(r.code, 0);
    const char *ddim = strstr(r.out, "ddim — ");
    cr_assert(ddim == r.out || (ddim && ddim[-1] == '\n'), "no ddim entry in:\n%s", r.out);
    const char *end = strstr(ddim, "\n\n");
    char block[2048];
    snprintf(block, sizeof block, "%.*s", end ? (int)(end - ddim) : (int)strlen(ddim), ddim);
    const char *want[] = {"steps", "int", "default 50", "eta", "float", "default 0.0", "timestep_spacing", "leading|trailing|linspace"};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) cr_assert(strstr(block, want[k]), "no '%s' in:\n%s", want[k], block);

    r = RUNEXP("listbad", "list", "nonsense");
    cr_assert_eq(r.code, 2);
    cr_assert(strstr(r.err, "nonsense"), "%s", r.err);
}

Test(runner, check_prints_resolved_config_and_parameter_count) {
    const char *root = own(strdup(T("results")));
    result r = RUNEXP("check", "check", TINY, "--set", "sampler.steps=7", "--results", root);
    cr_assert_eq(r.code, 0, "%s", r.err);
    /* every default filled in (sampler_ddim.c, guidance.c, schema.c), the --set applied */
    const char *want[] = {"experiment: tiny\n", "seed: 3\n",
                          "sampler:\n  name: ddim\n  steps: 7\n  eta: 0.0\n  timestep_spacing: leading\n",
                          "guidance:\n  name: cfg\n  scale: 2.0\n", "  norm_eps: 1.0e-5\n", "eval: null\n"};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) cr_assert(strstr(r.out, want[k]), "no '%s' in:\n%s", want[k], r.out);
    cr_assert(!strstr(r.out, "base:"), "the resolved config still names its base");
    cr_assert(strstr(r.out, P("parameters: unet %d\n", TINY_UNET_PARAMETERS)), "%s", r.out);
    /* the memory plan (runner/memory_plan.c): training and sampling figures in GiB, the device */
    cr_assert(strstr(r.out, "memory: training ") && strstr(r.out, " GiB at batch 4 (weights "), "%s", r.out);
    cr_assert(strstr(r.out, "memory: sampling ") && strstr(r.out, "at network batch 8"), "cfg doubles the batch:\n%s", r.out);
    cr_assert(strstr(r.out, "memory: device cpu has "), "%s", r.out);
    cr_assert(!rx_fs_exists(root), "check must not run anything");

    r = RUNEXP("checkbad", "check", "tests/configs/bad/unknown_param.yaml");
    cr_assert_eq(r.code, 2);
}

/* bad config, arguments or input file: exit 2, a message naming the problem, nothing written */
static const struct bad_case {
    const char *what;
    const char *args[8];
    const char *message;
} bad_cases[] = {
    {"unknown parameter", {"tests/configs/bad/unknown_param.yaml"},
     "unknown_param.yaml:5:3: sampler: unknown parameter 'stpes' (did you mean 'steps'?)"},
    {"unknown --set key", {TINY, "--set", "sampler.stpes=3"}, "sampler: unknown parameter 'stpes' (did you mean 'steps'?)"},
    {"--set out of range", {TINY, "--set", "optimizer.lr=100"}, "out of range"},
    {"missing experiment file", {CFG_DIR "no_such.yaml"}, "no_such.yaml"},
    {"bad sweep point", {TINY, "--sweep", "sampler.steps=2,0"}, "out of range"},
    {"missing data set", {TINY, "--set", "dataset={name: imagefolder, path: " CFG_DIR "no_such_dir}"}, "no_such_dir"},
    /* tests/fixtures/gen_corrupt_mnist.py: the images' gzip CRC-32 does not match their data */
    {"corrupt data set", {TINY, "--set", "dataset={name: mnist, root: tests/fixtures/corrupt_mnist}"},
     "corrupt_mnist/mnist/train-images-idx3-ubyte.gz: gzip data corrupt (CRC mismatch)"},
    {"missing init checkpoint", {TINY, "--set", "init=" CFG_DIR "no_such.safetensors"}, "no_such.safetensors"},
    {"resume of a non-run directory", {"--resume", CFG_DIR}, "not a run directory"},
    {"unknown option", {TINY, "--bogus"}, "unknown option '--bogus'"},
    {"bad backend", {TINY, "--backend", "tpu"}, "--backend must be cpu, cuda or auto"},
    {"extra argument", {TINY, "extra.yaml"}, "unexpected argument 'extra.yaml'"},
    /* ~4e10 parameters: planned, not allocated, and refused before anything is written */
    {"cannot fit in memory", {TINY, "--set", "model.block_out_channels=[65536, 65536]"}, "memory: training needs "},
};

Test(runner, bad_input_exits_2_and_writes_nothing) {
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *bc = &bad_cases[i];
        const char *root = own(strdup(T("results_%zu", i)));
        const char *args[16];
        int n = 0;
        for (; bc->args[n]; n++) args[n] = bc->args[n];
        args[n++] = "--results";
        args[n++] = root;
        args[n] = NULL;
        result r = run_runexp(P("bad%zu", i), args);
        cr_assert_eq(r.code, 2, "%s: exit %d, expected 2\n%s", bc->what, r.code, r.err);
        cr_assert(strstr(r.err, bc->message), "%s: message lacks '%s':\n%s", bc->what, bc->message, r.err);
        cr_assert(!rx_fs_exists(root), "%s: %s was created", bc->what, root);
    }
}

/* a sweep whose points cannot run here (issue 19) is refused before its directory exists,
 * not run point by point into a summary of failures */
Test(runner, sweep_on_an_unavailable_backend_exits_2_and_writes_nothing) {
    if (rx_cuda_device_count() > 0) cr_skip_test("a CUDA device answers here: backend cuda is available");
    const char *root = own(strdup(T("results")));
    result r = RUNEXP("sweep", TINY, "--backend", "cuda", "--sweep", "guidance.scale=1,2", "--results", root);
    cr_assert_eq(r.code, 2, "exit %d\n%s", r.code, r.err);
    cr_assert(strstr(r.err, "sweep point 1 of 2: backend: cuda requested"), "%s", r.err);
    cr_assert(!rx_fs_exists(root), "%s was created", root);
}

/* ---------------------------------------------------------------------------------------
 * result directory */

Test(runner, run_directory_is_complete) {
    const char *root = own(strdup(T("results")));
    result r = RUNEXP("run", TINY, "--results", root);
    RUN_OK(r);
    char names[4][64];
    cr_assert_eq(list_runs(P("%s/tiny", root), names, 4), 1);
    cr_assert(!strncmp(names[0], "0001-", 5), "%s", names[0]);
    const char *dir = own(strdup(P("%s/tiny/%s", root, names[0])));
    cr_assert_str_eq(r.last, dir, "the last stdout line must be the run directory");

    const char *files[] = {"config.yaml", "run.json", "metrics.jsonl", "log.txt", "checkpoints/last.safetensors",
                           "samples/grid.png"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++)
        cr_assert(rx_fs_exists(P("%s/%s", dir, files[k])), "%s/%s missing", dir, files[k]);

    /* run.json (run.h) */
    json_t *rec = load_json(P("%s/run.json", dir));
    cr_assert_str_eq(json_str(rec, "status"), "done");
    cr_assert_str_eq(json_str(rec, "experiment"), "tiny");
    cr_assert_str_eq(json_str(rec, "run"), names[0]);
    cr_assert_str_eq(json_str(rec, "backend"), "cpu");
    cr_assert_str_eq(json_str(rec, "device"), "CPU");
    const char *commit = json_str(rec, "git_commit");
    cr_assert(!strcmp(commit, "unknown") || (strlen(commit) == 40 && strspn(commit, "0123456789abcdef") == 40),
              "git_commit '%s'", commit);
    json_t *dirty = json_object_get(rec, "git_dirty");
    cr_assert(dirty && (json_is_boolean(dirty) || json_is_null(dirty)), "git_dirty must be true/false/null");
    cr_assert_eq(strlen(json_str(rec, "config_hash")), 16);
    cr_assert(!strncmp(names[0] + 5, json_str(rec, "config_hash"), 8), "directory tag is the config hash's first 8");
    cr_assert(*json_str(rec, "start") && *json_str(rec, "end"));
    cr_assert(json_is_object(json_object_get(rec, "versions")));
    cr_assert_eq(json_integer_value(json_object_get(rec, "parameters")), TINY_UNET_PARAMETERS);
    json_t *stages = json_object_get(rec, "stage_seconds");
    const char *stage_names[] = {"train", "sample"};
    for (int k = 0; k < 2; k++) {
        json_t *v = json_object_get(stages, stage_names[k]);
        cr_assert(json_is_number(v) && json_number_value(v) >= 0, "stage_seconds.%s", stage_names[k]);
    }
    cr_assert_null(json_object_get(rec, "train_reused_from"));
    const char *train_hash = own(strdup(json_str(rec, "train_hash")));
    json_decref(rec);

    /* metrics.jsonl: train.steps 6, log_every 1; lr = optimizer.lr (constant schedule) in float32 */
    metrics_row rows[16];
    int n = read_metrics(P("%s/metrics.jsonl", dir), rows, 16);
    cr_assert_eq(n, 6);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(rows[i].step, i + 1);
        cr_assert(isfinite(rows[i].loss) && rows[i].loss > 0, "loss %g", rows[i].loss);
        cr_assert_eq(rows[i].lr, (double)1.0e-3f);
        cr_assert(isfinite(rows[i].grad_norm) && rows[i].grad_norm > 0);
        cr_assert_gt(rows[i].img_per_s, 0);
    }

    /* the checkpoint (checkpoint.h): format, step, training hash; model.* = the U-Net's parameters */
    rx_st_file *f = NULL;
    ASSERT_OK(rx_st_open(P("%s/checkpoints/last.safetensors", dir), &f));
    cr_assert_str_eq(rx_st_metadata(f, "format"), RX_CKPT_FORMAT);
    cr_assert_str_eq(rx_st_metadata(f, "step"), "6");
    cr_assert_str_eq(rx_st_metadata(f, "config_hash"), train_hash);
    int64_t groups[4] = {0};
    const char *prefixes[4] = {"model.", "ema.", "adam_m.", "adam_v."};
    for (int i = 0; i < rx_st_count(f); i++)
        for (int g = 0; g < 4; g++)
            if (!strncmp(rx_st_tensor_at(f, i)->name, prefixes[g], strlen(prefixes[g]))) groups[g] += rx_st_tensor_at(f, i)->numel;
    for (int g = 0; g < 4; g++) cr_assert_eq(groups[g], TINY_UNET_PARAMETERS, "%s* holds %lld values", prefixes[g], (long long)groups[g]);
    rx_st_close(f);

    /* grid: one row per class (2), 2 columns, 8x8 cells, pad 2 (make_grid: rows*(H+pad)+pad) */
    uint8_t *px = NULL;
    int C, H, W;
    ASSERT_OK(rx_png_read(P("%s/samples/grid.png", dir), 0, &px, &C, &H, &W));
    free(px);
    cr_assert(C == 3 && H == 2 * (8 + 2) + 2 && W == 2 * (8 + 2) + 2, "grid %dx%dx%d", C, H, W);

    const char *log = read_text(P("%s/log.txt", dir));
    cr_assert(strstr(log, "train: 6 steps") && strstr(log, "runexp: done"), "%s", log);
    const char *config = read_text(P("%s/config.yaml", dir));
    cr_assert(strstr(config, "experiment: tiny\n") && strstr(config, "  eta: 0.0\n") && !strstr(config, "base:"),
              "config.yaml is not the resolved config:\n%s", config);

    /* index.csv gains a row per run; latest follows the newest */
    cr_assert_eq(count_lines(P("%s/tiny/index.csv", root)), 2);
    const char *index = read_text(P("%s/tiny/index.csv", root));
    cr_assert(!strncmp(index, "id,status,config_hash,metrics\n", 30), "%s", index);
    cr_assert(strstr(index, P("\n%s,done,", names[0])), "%s", index);
    char link[256] = {0};
    cr_assert_gt(readlink(P("%s/tiny/latest", root), link, sizeof link - 1), 0);
    cr_assert_str_eq(link, names[0]);

    r = RUNEXP("run2", TINY, "--results", root, "--set", "sampler.steps=3");
    RUN_OK(r);
    cr_assert_eq(list_runs(P("%s/tiny", root), names, 4), 2);
    cr_assert(!strncmp(names[1], "0002-", 5));
    cr_assert_str_eq(r.last, P("%s/tiny/%s", root, names[1]));
    cr_assert_eq(count_lines(P("%s/tiny/index.csv", root)), 3);
    memset(link, 0, sizeof link);
    cr_assert_gt(readlink(P("%s/tiny/latest", root), link, sizeof link - 1), 0);
    cr_assert_str_eq(link, names[1]);
}

/* ---------------------------------------------------------------------------------------
 * reproduce, resume, interrupt: bit identity on the CPU */

Test(runner, reproduce_from_saved_config_is_bit_identical) {
    const char *root = own(strdup(T("results")));
    result a = RUNEXP("orig", TINY, "--results", root);
    RUN_OK(a);
    const char *dir_a = own(strdup(a.last));
    /* --force: the same results root holds the original, whose training would be reused */
    result b = RUNEXP("repro", P("%s/config.yaml", dir_a), "--results", root, "--force");
    RUN_OK(b);
    const char *dir_b = b.last;
    cr_assert_str_neq(dir_a, dir_b, "reproducing must make a new run");
    cr_assert_str_eq(run_field(dir_a, "config_hash"), run_field(dir_b, "config_hash"));
    cr_assert_null(run_field(dir_b, "train_reused_from"));
    /* ... and the plain `runexp <run>/config.yaml` into results with no stage cache */
    result c = RUNEXP("elsewhere", P("%s/config.yaml", dir_a), "--results", T("elsewhere"));
    RUN_OK(c);
    cr_assert_null(run_field(c.last, "train_reused_from"));
    assert_same_tensors(P("%s/checkpoints/last.safetensors", dir_a), P("%s/checkpoints/last.safetensors", c.last));
    /* the resolved config is a fixed point: saving it again gives the same text */
    cr_assert_str_eq(read_text(P("%s/config.yaml", dir_a)), read_text(P("%s/config.yaml", dir_b)));

    metrics_row ra[16], rb[16];
    int na = read_metrics(P("%s/metrics.jsonl", dir_a), ra, 16), nb = read_metrics(P("%s/metrics.jsonl", dir_b), rb, 16);
    cr_assert_eq(na, nb);
    for (int i = 0; i < na; i++) {
        cr_assert_eq(ra[i].step, rb[i].step);
        cr_assert_eq(ra[i].loss, rb[i].loss, "step %lld: loss %.17g vs %.17g", (long long)ra[i].step, ra[i].loss, rb[i].loss);
        cr_assert_eq(ra[i].grad_norm, rb[i].grad_norm);
    }
    assert_same_tensors(P("%s/checkpoints/last.safetensors", dir_a), P("%s/checkpoints/last.safetensors", dir_b));
    assert_same_tensors(P("%s/samples/samples.safetensors", dir_a), P("%s/samples/samples.safetensors", dir_b));
}

Test(runner, resume_after_sigkill_is_bit_identical) {
    const char *root = own(strdup(T("killed")));
    pid_t pid = spawn_runexp("long", (const char *const[]){LONG, "--results", root, NULL});
    /* past the first checkpoint (checkpoint_every 10): at least 13 metrics lines (log_every 1) */
    const char *dir = wait_for_training(pid, P("%s/long", root), 1, 13);
    kill(pid, SIGKILL);
    cr_assert_eq(wait_exit(pid), 128 + SIGKILL);
    cr_assert_str_eq(run_field(dir, "status"), "running", "a killed run's record still says running");
    int64_t k = checkpoint_step(P("%s/checkpoints/last.safetensors", dir));
    cr_assert(k >= 10 && k < 100 && k % 10 == 0, "checkpoint at step %lld", (long long)k);
    /* what a kill can leave besides: a metrics row cut short (this one always lies past the
     * checkpoint, whatever step the kill hit) and the temp file of a checkpoint write that
     * never reached its rename, named as io/fsutil's atomic helper names it */
    FILE *m = fopen(P("%s/metrics.jsonl", dir), "a");
    cr_assert_not_null(m);
    fputs("{\"step\":", m);
    fclose(m);
    const char *stale = own(strdup(P("%s/checkpoints/.last.safetensors.tmp.%d.0.1f2e", dir, (int)pid)));
    const char *other = own(strdup(P("%s/checkpoints/notes.tmp", dir)));   /* not the helper's: stays */
    ASSERT_OK(rx_fs_write_atomic(stale, "half a checkpoint", 17));
    ASSERT_OK(rx_fs_write_atomic(other, "mine", 4));

    result r = RUNEXP("resume", "--resume", dir);
    RUN_OK(r);
    cr_assert_str_eq(r.last, dir);
    cr_assert_str_eq(run_field(dir, "status"), "done");
    cr_assert(strstr(read_text(P("%s/log.txt", dir)), P("at step %lld", (long long)k)), "log does not say where it resumed");
    cr_assert(!rx_fs_exists(stale), "the stale temp file of the killed checkpoint write is still there");
    cr_assert(rx_fs_exists(other), "resume removed a file the atomic helper did not name");
    assert_one_index_row(P("%s/long", root), dir, "done");

    const char *ref_root = own(strdup(T("reference")));
    result ref = RUNEXP("reference", LONG, "--results", ref_root);
    RUN_OK(ref);
    assert_same_tensors(P("%s/checkpoints/last.safetensors", dir), P("%s/checkpoints/last.safetensors", ref.last));
    assert_metrics_match(dir, ref.last, 100);
    assert_same_tensors(P("%s/samples/samples.safetensors", dir), P("%s/samples/samples.safetensors", ref.last));

    r = RUNEXP("again", "--resume", dir);
    cr_assert_eq(r.code, 2, "resuming a finished run: exit %d", r.code);
    cr_assert(strstr(r.err, "already done"), "%s", r.err);
}

Test(runner, sigint_checkpoints_marks_interrupted_and_resumes) {
    const char *root = own(strdup(T("interrupted")));
    pid_t pid = spawn_runexp("long", (const char *const[]){LONG, "--results", root, NULL});
    const char *dir = wait_for_training(pid, P("%s/long", root), 0, 3);
    kill(pid, SIGINT);
    result r = collect("long", wait_exit(pid));
    cr_assert_eq(r.code, 130, "SIGINT: exit %d\n%s", r.code, r.err);
    cr_assert_str_eq(r.last, dir);
    cr_assert_str_eq(run_field(dir, "status"), "interrupted");
    cr_assert(strstr(run_field(dir, "error"), "interrupted at step"), "%s", run_field(dir, "error"));
    cr_assert(strstr(read_text(P("%s/long/index.csv", root)), ",interrupted,"));
    /* the checkpoint is of the step it stopped at: the last metrics line (train.c) */
    metrics_row rows[128];
    int n = read_metrics(P("%s/metrics.jsonl", dir), rows, 128);
    int64_t k = checkpoint_step(P("%s/checkpoints/last.safetensors", dir));
    cr_assert_eq(k, rows[n - 1].step);
    cr_assert_lt(k, 100);

    /* a run whose config.yaml was edited is not resumed (its checkpoint is of another config) */
    const char *config_path = own(strdup(P("%s/config.yaml", dir)));
    char *config = own(rx_test_read_file(config_path, NULL));
    char *seed = strstr(config, "\nseed: 3\n");
    cr_assert_not_null(seed);
    seed[7] = '4';
    ASSERT_OK(rx_fs_write_atomic(config_path, config, strlen(config)));
    r = RUNEXP("edited", "--resume", dir);
    cr_assert_eq(r.code, 2, "resume with an edited config: exit %d\n%s", r.code, r.err);
    cr_assert(strstr(r.err, "config.yaml was edited"), "%s", r.err);
    seed[7] = '3';
    ASSERT_OK(rx_fs_write_atomic(config_path, config, strlen(config)));

    r = RUNEXP("resume", "--resume", dir);
    RUN_OK(r);
    cr_assert_str_eq(run_field(dir, "status"), "done");
    assert_one_index_row(P("%s/long", root), dir, "done");   /* the interrupted row, updated */
    result ref = RUNEXP("reference", LONG, "--results", T("reference"));
    RUN_OK(ref);
    assert_same_tensors(P("%s/checkpoints/last.safetensors", dir), P("%s/checkpoints/last.safetensors", ref.last));
    assert_metrics_match(dir, ref.last, 100);
}

/* SIGTERM is handled like SIGINT, and an interrupt inside a logging window resumes exactly:
 * with log_every 50 and no periodic checkpoints the interrupt lands mid-window, and the
 * resumed run's row at step 50 must average steps 1..50 like the uninterrupted run's, not
 * only the steps after the resume. Reference: the same config run uninterrupted. */
Test(runner, sigterm_mid_window_resumes_the_logged_means) {
    const char *root = own(strdup(T("terminated")));
    pid_t pid = spawn_runexp("term", (const char *const[]){LONG, "--set", "train.log_every=50", "--set",
                                                           "train.checkpoint_every=0", "--results", root, NULL});
    const char *dir = wait_for_training(pid, P("%s/long", root), 0, 0);
    kill(pid, SIGTERM);
    cr_assert_eq(wait_exit(pid), 130);
    cr_assert_str_eq(run_field(dir, "status"), "interrupted");
    const char *ckpt = P("%s/checkpoints/last.safetensors", dir);
    int64_t k = checkpoint_step(ckpt);
    cr_assert(k >= 1 && k < 100 && k % 50 != 0, "interrupted at step %lld: not inside a window (machine too slow?)",
              (long long)k);
    rx_st_file *f = NULL;
    ASSERT_OK(rx_st_open(ckpt, &f));
    cr_assert_str_eq(rx_st_metadata(f, "log_window_steps"), P("%lld", (long long)(k % 50)),
                     "the checkpoint does not carry the open logging window");
    rx_st_close(f);

    result r = RUNEXP("resume", "--resume", dir);
    RUN_OK(r);
    cr_assert_str_eq(run_field(dir, "status"), "done");
    assert_one_index_row(P("%s/long", root), dir, "done");
    result ref = RUNEXP("reference", LONG, "--set", "train.log_every=50", "--set", "train.checkpoint_every=0", "--results",
                        T("reference"));
    RUN_OK(ref);
    assert_same_tensors(P("%s/checkpoints/last.safetensors", dir), P("%s/checkpoints/last.safetensors", ref.last));
    assert_metrics_match(dir, ref.last, 2);
}

/* One process at a time per run: the run itself and a --resume hold <run>/.lock, and a
 * second --resume is refused at once (exit 2, nothing written) naming the run. References:
 * the refusal's exit status and message; the run's files unchanged by the refused process. */
/* idle: no other process writes to the run meanwhile, so its files must be byte for byte
 * what they were (a resume that got in would set run.json "running" and cut metrics.jsonl) */
static void assert_resume_refused(const char *tag, const char *dir, int idle) {
    const char *metrics = own(strdup(read_text(P("%s/metrics.jsonl", dir))));
    const char *record = own(strdup(read_text(P("%s/run.json", dir))));
    result r = RUNEXP(tag, "--resume", dir);
    cr_assert_eq(r.code, 2, "%s: a resume of a run another process holds: exit %d\n%s", tag, r.code, r.err);
    cr_assert(strstr(r.err, dir) && strstr(r.err, "another runexp process"), "%s: %s", tag, r.err);
    cr_assert_str_eq(r.last, "");
    if (idle) {
        cr_assert_str_eq(read_text(P("%s/metrics.jsonl", dir)), metrics, "%s: the refused resume changed metrics.jsonl", tag);
        cr_assert_str_eq(read_text(P("%s/run.json", dir)), record, "%s: the refused resume changed run.json", tag);
    }
}

Test(runner, a_second_resume_is_refused_while_the_run_is_held) {
    const char *root = own(strdup(T("locked")));
    /* the run itself holds its lock */
    pid_t pid = spawn_runexp("long", (const char *const[]){LONG, "--results", root, NULL});
    const char *dir = wait_for_training(pid, P("%s/long", root), 1, 13);
    /* stopped, not ended: the whole run takes under a second here, so a running one could
     * finish before the second process starts (a race this test lost under light load) */
    cr_assert_eq(kill(pid, SIGSTOP), 0);
    assert_resume_refused("while_running", dir, 0);
    kill(pid, SIGKILL);   /* the lock dies with its holder */
    cr_assert_eq(wait_exit(pid), 128 + SIGKILL);

    /* a holder that is not runexp at all: the lock is the file, not a process name */
    int fd, busy;
    ASSERT_OK(rx_fs_trylock(P("%s/.lock", dir), &fd, &busy));
    assert_resume_refused("while_held", dir, 1);
    rx_fs_unlock(fd);

    /* a resume holds it until it ends */
    pid = spawn_runexp("first", (const char *const[]){"--resume", dir, NULL});
    double t0 = now_s();
    for (;;) {
        int st;
        cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "the first resume ended before a second could be tried");
        const char *log = read_text(P("%s/log.txt", dir));
        if (log && strstr(log, "train: resumed from")) break;
        cr_assert_lt(now_s() - t0, 60.0, "the first resume did not start training in 60 s");
        usleep(2000);
    }
    cr_assert_eq(kill(pid, SIGSTOP), 0);   /* held while the second tries (as above) */
    assert_resume_refused("second", dir, 0);
    cr_assert_eq(kill(pid, SIGCONT), 0);
    result first = collect("first", wait_exit(pid));
    RUN_OK(first);
    cr_assert_str_eq(run_field(dir, "status"), "done");
    assert_one_index_row(P("%s/long", root), dir, "done");
    cr_assert_eq(count_lines(P("%s/metrics.jsonl", dir)), 100, "metrics.jsonl: one row a step, no interleaving");
}

/* ---------------------------------------------------------------------------------------
 * sweeps and the stage cache */

static int count_trained(const char *exp_dir, char names[][64], int n, const char **trained_dir) {
    int trained = 0;
    for (int i = 0; i < n; i++) {
        const char *dir = P("%s/%s", exp_dir, names[i]);
        if (!run_field(dir, "train_reused_from")) {
            trained++;
            *trained_dir = own(strdup(dir));
        }
    }
    return trained;
}

Test(runner, guidance_sweep_trains_once_and_summarises) {
    result c = RUNEXP("classifier", CLASSIFIER, "--results", T("classifier"));
    RUN_OK(c);
    const char *weights = own(strdup(P("%s/checkpoints/last.safetensors", c.last)));
    const char *root = own(strdup(T("results")));
    result s = RUNEXP("sweep", SWEEP, "--results", root, "--set", P("eval.features.weights=%s", weights));
    RUN_OK(s);
    cr_assert_str_eq(s.last, P("%s/tiny/sweep-0001", root));

    /* three points, one training: the others reuse its weights (same train_hash) */
    const char *exp_dir = own(strdup(P("%s/tiny", root)));
    char names[8][64];
    cr_assert_eq(list_runs(exp_dir, names, 8), 3);
    const char *trained = NULL;
    cr_assert_eq(count_trained(exp_dir, names, 3, &trained), 1);
    int train_lines = 0;
    for (int i = 0; i < 3; i++) {
        const char *dir = P("%s/%s", exp_dir, names[i]);
        train_lines += count_substr(read_text(P("%s/log.txt", dir)), "train: 6 steps");
        cr_assert_str_eq(run_field(dir, "train_hash"), run_field(trained, "train_hash"));
        const char *from = run_field(dir, "train_reused_from");
        if (from) cr_assert_str_eq(from, trained);
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(run_field(dir, "sample_hash"), run_field(P("%s/%s", exp_dir, names[j]), "sample_hash"));
        json_t *ev = load_json(P("%s/eval.json", dir));
        json_t *fd = json_object_get(json_object_get(ev, "metrics"), "fd_last");
        cr_assert(json_is_number(fd) && isfinite(json_number_value(fd)) && json_number_value(fd) >= 0, "eval.json fd_last");
        json_decref(ev);
    }
    cr_assert_eq(train_lines, 1, "%d trainings in a guidance sweep", train_lines);
    cr_assert(rx_fs_is_dir(P("%s/_cache", root)), "eval reference statistics belong under --results");

    /* summary.csv: one row per point in grid order, each naming its run */
    const char *csv = read_text(P("%s/summary.csv", s.last));
    cr_assert(!strncmp(csv, "guidance.scale,fd_last,status,run\n", 34), "%s", csv);
    cr_assert_eq(count_lines(P("%s/summary.csv", s.last)), 4);
    const char *line = strchr(csv, '\n') + 1;
    for (int i = 0; i < 3; i++, line = strchr(line, '\n') + 1) {
        cr_assert_eq(line[0], '1' + i, "row %d: %s", i, line);
        cr_assert(strstr(line, ",done,") && strstr(line, exp_dir), "row %d: %s", i, line);
    }
    const char *md = read_text(P("%s/summary.md", s.last));
    cr_assert(strstr(md, "Sorted by fd_last (lower is better)") && strstr(md, "| guidance.scale | fd_last | run |"), "%s", md);
    uint8_t *px = NULL;
    int C, H, W;
    ASSERT_OK(rx_png_read(P("%s/fd_last.png", s.last), 0, &px, &C, &H, &W));
    free(px);
    cr_assert(H >= 100 && W >= 100, "plot %dx%d", W, H);

    /* an identical training config reuses the finished training ... */
    result again = RUNEXP("again", TINY, "--results", root);
    RUN_OK(again);
    cr_assert_str_eq(run_field(again.last, "train_reused_from"), trained);
    cr_assert_eq(count_substr(read_text(P("%s/log.txt", again.last)), "train: 6 steps"), 0);
    cr_assert(!rx_fs_exists(P("%s/metrics.jsonl", again.last)) || count_lines(P("%s/metrics.jsonl", again.last)) == 0);
    /* ... unless --force */
    result forced = RUNEXP("forced", TINY, "--results", root, "--force");
    RUN_OK(forced);
    cr_assert_null(run_field(forced.last, "train_reused_from"));
    cr_assert_eq(count_substr(read_text(P("%s/log.txt", forced.last)), "train: 6 steps"), 1);
}

/* an 8x8 RGB image folder, class sub-folders a/ and b/, four images each; pixel bytes
 * (seed * 31 + i * 7 + k) */
static void write_image_folder(const char *dir, int seed) {
    uint8_t img[3 * 8 * 8];
    for (int c = 0; c < 2; c++) {
        const char *sub = P("%s/%c", dir, 'a' + c);
        ASSERT_OK(rx_fs_mkdir_p(sub));
        for (int i = 0; i < 4; i++) {
            for (int k = 0; k < (int)sizeof img; k++) img[k] = (uint8_t)(seed * 31 + (c * 4 + i) * 7 + k);
            ASSERT_OK(rx_png_write_u8(P("%s/%d.png", sub, i), img, 3, 8, 8));
        }
    }
}

/* the stage cache keys training by its data too (issue 19): the same config over a data set
 * whose files changed trains again; over the same files it reuses the weights */
Test(runner, changed_data_is_not_served_from_the_stage_cache) {
    const char *root = own(strdup(T("results"))), *data = own(strdup(T("images")));
    write_image_folder(data, 1);
    const char *set = own(strdup(P("dataset={name: imagefolder, path: %s}", data)));
    result first = RUNEXP("first", TINY, "--results", root, "--set", set);
    RUN_OK(first);
    result same = RUNEXP("same", TINY, "--results", root, "--set", set);
    RUN_OK(same);
    cr_assert_str_eq(run_field(same.last, "train_reused_from"), first.last, "unchanged files: the training is reused");
    write_image_folder(data, 2);   /* same names, same sizes, other pixels */
    result changed = RUNEXP("changed", TINY, "--results", root, "--set", set);
    RUN_OK(changed);
    cr_assert_null(run_field(changed.last, "train_reused_from"), "changed pixels: trained again");
    cr_assert_str_neq(run_field(changed.last, "train_hash"), run_field(first.last, "train_hash"));
}

/* a cached training whose checkpoint went bad: the error names the cache entry and --force */
Test(runner, corrupt_cached_training_says_force_retrains) {
    const char *root = own(strdup(T("results")));
    result first = RUNEXP("first", TINY, "--results", root);
    RUN_OK(first);
    FILE *f = fopen(P("%s/checkpoints/last.safetensors", first.last), "r+b");
    cr_assert(f);
    cr_assert_eq(fseek(f, 20, SEEK_SET), 0);
    cr_assert_eq(fwrite("garbage", 1, 7, f), 7);   /* inside the JSON header */
    fclose(f);
    result again = RUNEXP("again", TINY, "--results", root);
    cr_assert_neq(again.code, 0);
    cr_assert(strstr(again.err, first.last) && strstr(again.err, "--force trains again"), "%s", again.err);
    result forced = RUNEXP("forced", TINY, "--results", root, "--force");
    RUN_OK(forced);
}

/* two runs of one experiment that end in the other order: `latest` stays on the newer one */
Test(runner, latest_names_the_newest_finished_run) {
    const char *root = own(strdup(T("results")));
    rx_run older, newer;
    ASSERT_OK(rx_run_create(&older, root, "exp", "00000000aaaaaaaa"));
    ASSERT_OK(rx_run_create(&newer, root, "exp", "00000000bbbbbbbb"));
    char link[256];
    const char *latest = own(strdup(P("%s/exp/latest", root)));
    ASSERT_OK(rx_run_set_status(&newer, "done", NULL));
    ASSERT_OK(rx_run_finish(&newer, NULL));
    ASSERT_OK(rx_run_set_status(&older, "done", NULL));
    ASSERT_OK(rx_run_finish(&older, NULL));   /* finishes last, started first */
    const ssize_t n = readlink(latest, link, sizeof link - 1);
    cr_assert_gt(n, 0);
    link[n] = 0;
    cr_assert_str_eq(link, newer.id, "latest -> %s, the newest run is %s", link, newer.id);
    rx_run_close(&older);
    rx_run_close(&newer);
}

Test(runner, sampler_sweep_trains_once) {
    const char *root = own(strdup(T("results")));
    result s = RUNEXP("sweep", TINY, "--results", root, "--sweep", "sampler.steps=1,2,4");
    RUN_OK(s);
    cr_assert_str_eq(s.last, P("%s/tiny/sweep-0001", root));
    const char *exp_dir = own(strdup(P("%s/tiny", root)));
    char names[8][64];
    cr_assert_eq(list_runs(exp_dir, names, 8), 3);
    const char *trained = NULL;
    cr_assert_eq(count_trained(exp_dir, names, 3, &trained), 1);
    cr_assert_eq(count_lines(P("%s/summary.csv", s.last)), 4);
    cr_assert(rx_fs_exists(P("%s/summary.md", s.last)));
    /* each point's saved config carries its value, so it can be re-run alone */
    for (int i = 0; i < 3; i++) {
        const char *config = read_text(P("%s/%s/config.yaml", exp_dir, names[i]));
        cr_assert(strstr(config, P("  steps: %d\n", 1 << i)) && !strstr(config, "sweep: {") && strstr(config, "sweep: null"),
                  "%s", config);
    }
}

/* the train-once lock (pipeline.h; issue 17 §5): three processes of one training config
 * started together train it once. long.yaml trains for seconds, so the three overlap; without
 * the lock each would miss the cache (nothing finished yet) and train. */
Test(runner, concurrent_runs_of_one_config_train_once) {
    const char *root = own(strdup(T("results")));
    enum { N = 3 };
    pid_t pids[N];
    for (int i = 0; i < N; i++)
        pids[i] = spawn_runexp(P("run%d", i), (const char *const[]){LONG, "--results", root, "--quiet", NULL});
    for (int i = 0; i < N; i++) {
        result r = collect(P("run%d", i), wait_exit(pids[i]));
        RUN_OK(r);
    }
    const char *exp_dir = own(strdup(P("%s/long", root)));
    char names[8][64];
    cr_assert_eq(list_runs(exp_dir, names, 8), N);
    const char *trained = NULL;
    cr_assert_eq(count_trained(exp_dir, names, N, &trained), 1, "one training for %d concurrent runs", N);
    int train_lines = 0;
    for (int i = 0; i < N; i++) {
        const char *dir = P("%s/%s", exp_dir, names[i]);
        train_lines += count_substr(read_text(P("%s/log.txt", dir)), "train: 100 steps");
        const char *from = run_field(dir, "train_reused_from");
        if (from) cr_assert_str_eq(from, trained);
    }
    cr_assert_eq(train_lines, 1);
    cr_assert_eq(count_lines(P("%s/metrics.jsonl", trained)), 100);
}

/* ---------------------------------------------------------------------------------------
 * atomic run-directory allocation */

Test(runner, eight_concurrent_runs_get_distinct_directories) {
    const char *root = own(strdup(T("results")));
    enum { N = 8 };
    pid_t pids[N];
    /* different seeds: different config hashes, so only the allocation lock keeps numbers apart */
    for (int i = 0; i < N; i++)
        pids[i] = spawn_runexp(P("run%d", i), (const char *const[]){TINY, "--results", root, "--set", P("seed=%d", 100 + i),
                                                                   "--set", "train.steps=2", "--quiet", NULL});
    const char *lasts[N];
    for (int i = 0; i < N; i++) {
        result r = collect(P("run%d", i), wait_exit(pids[i]));
        RUN_OK(r);
        lasts[i] = r.last;
    }
    char names[16][64];
    cr_assert_eq(list_runs(P("%s/tiny", root), names, 16), N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(atoi(names[i]), i + 1, "run numbers must be 0001..0008, got %s", names[i]);
        int owners = 0;
        for (int j = 0; j < N; j++) owners += !strcmp(lasts[j], P("%s/tiny/%s", root, names[i]));
        cr_assert_eq(owners, 1, "%s reported by %d processes", names[i], owners);
    }
    /* index.csv (appended under a lock): a header and one intact row per run */
    cr_assert_eq(count_lines(P("%s/tiny/index.csv", root)), N + 1);
    const char *index = read_text(P("%s/tiny/index.csv", root));
    for (int i = 0; i < N; i++) cr_assert(strstr(index, P("\n%s,done,", names[i])), "%s", index);
    char link[256] = {0};
    cr_assert_gt(readlink(P("%s/tiny/latest", root), link, sizeof link - 1), 0);
    int known = 0;
    for (int i = 0; i < N; i++) known |= !strcmp(link, names[i]);
    cr_assert(known, "latest -> %s", link);
}

/* ---------------------------------------------------------------------------------------
 * the stage cache (reference: the lookup contract of runner/pipeline.h) */

/* a run directory <exp>/<name> whose run.json says status and train_hash, holding the
 * stage's output file when with_file */
static void fake_run(const char *exp, const char *name, const char *status, const char *hash, int with_file) {
    const char *dir = P("%s/%s", exp, name);
    ASSERT_OK(rx_fs_mkdir_p(P("%s/checkpoints", dir)));
    const char *rec = P("{\"status\": \"%s\", \"train_hash\": \"%s\"}", status, hash);
    ASSERT_OK(rx_fs_write_atomic(P("%s/run.json", dir), rec, strlen(rec)));
    if (with_file) ASSERT_OK(rx_fs_write_atomic(P("%s/checkpoints/last.safetensors", dir), "x", 1));
}

Test(runner, stage_cache_finds_the_newest_finished_run_with_the_hash_and_its_file) {
    const char *exp = own(strdup(T("exp")));
    const char *need = "checkpoints/last.safetensors";
    char out[1200] = "";
    cr_assert_eq(rx_stage_cache_find(exp, "train_hash", "aa", need, "", out, sizeof out), 0, "no directory: no hit");
    fake_run(exp, "0001-aa", "done", "aa", 1);
    fake_run(exp, "0002-aa", "done", "aa", 0);         /* its checkpoint is gone */
    fake_run(exp, "0003-aa", "failed", "aa", 1);       /* not finished */
    fake_run(exp, "0004-bb", "done", "bb", 1);         /* another training config */
    fake_run(exp, "sweep-0005", "done", "aa", 1);      /* not a run directory */
    fake_run(exp, "0005-cc", "running", "cc", 1);      /* still running, training not finished */
    const char *current = own(strdup(P("%s/0006-aa", exp)));
    fake_run(exp, "0006-aa", "done", "aa", 1);         /* the run asking */
    cr_assert_eq(rx_stage_cache_find(exp, "train_hash", "aa", need, current, out, sizeof out), 1);
    cr_assert_str_eq(out, P("%s/0001-aa", exp));
    cr_assert_eq(rx_stage_cache_find(exp, "train_hash", "aa", need, "", out, sizeof out), 1);
    cr_assert_str_eq(out, current, "the newest of two hits");
    cr_assert_eq(rx_stage_cache_find(exp, "train_hash", "bb", need, current, out, sizeof out), 1);
    cr_assert_str_eq(out, P("%s/0004-bb", exp));
    cr_assert_eq(rx_stage_cache_find(exp, "train_hash", "cc", need, current, out, sizeof out), 0, "running, not trained");
    const char *rec = "{\"status\": \"running\", \"train_hash\": \"cc\", \"train_done\": true}";
    ASSERT_OK(rx_fs_write_atomic(P("%s/0005-cc/run.json", exp), rec, strlen(rec)));
    cr_assert_eq(rx_stage_cache_find(exp, "train_hash", "cc", need, current, out, sizeof out), 1, "still sampling, trained");
    cr_assert_str_eq(out, P("%s/0005-cc", exp));
    cr_assert_eq(rx_stage_cache_find(exp, "train_hash", "dd", need, current, out, sizeof out), 0, "unknown hash");
    cr_assert_eq(rx_stage_cache_find(exp, "sample_hash", "aa", need, current, out, sizeof out), 0, "other stage's key");
}

/* ---------------------------------------------------------------------------------------
 * checkpoints */

/* rx_ckpt_save -> rx_ckpt_load restores every group bit for bit; a file that does not
 * hold everything expected is refused before anything is copied (checkpoint.h) */
Test(runner, checkpoint_round_trip_and_all_or_nothing_load) {
    rx_ctx *c = NULL;
    ASSERT_OK(rx_ctx_create(rx_backend_cpu(), NULL, 1 << 20, &c));
    const char *names[] = {"conv.weight", "conv.bias"};
    const int64_t shapes[2][4] = {{4, 3, 3, 3}, {4}};
    const int ndims[2] = {4, 1};
    enum { G = 4 };
    rx_paramset src[G] = {0}, dst[G] = {0};
    float vals[108];
    for (int g = 0; g < G; g++)
        for (int i = 0; i < 2; i++) {
            rx_tensor *a = rx_param(c, names[i], ndims[i], shapes[i], 0), *b = rx_param(c, names[i], ndims[i], shapes[i], 0);
            cr_assert(a && b);
            for (int64_t k = 0; k < a->numel; k++) vals[k] = sinf(1.0f + g * 100 + i * 10 + k) * 1e-3f * (float)(k + 1);
            ASSERT_OK(rx_tensor_from_host(c, a, vals));
            ASSERT_OK(rx_tensor_fill(c, b, -7.0f));
            ASSERT_OK(rx_paramset_add(&src[g], a));
            ASSERT_OK(rx_paramset_add(&dst[g], b));
        }
    const char *prefixes[G] = {"model", "ema", "adam_m", "adam_v"};
    rx_ckpt_group gs[G], gd[G];
    for (int g = 0; g < G; g++) {
        gs[g] = (rx_ckpt_group){prefixes[g], &src[g], 0};
        gd[g] = (rx_ckpt_group){prefixes[g], &dst[g], 0};
    }
    rx_ckpt_meta meta = {.step = 42, .seed = 9007199254740991ull, .config_yaml = "seed: 1\n"};
    snprintf(meta.config_hash, sizeof meta.config_hash, "0123456789abcdef");
    const char *path = own(strdup(T("ckpt.safetensors")));
    ASSERT_OK(rx_ckpt_save(c, path, gs, G, &meta));

    /* untouched: every value of dst still the fill value */
#define ASSERT_DST_UNTOUCHED()                                                                   \
    for (int g = 0; g < G; g++)                                                                  \
        for (int i = 0; i < 2; i++) {                                                            \
            ASSERT_OK(rx_tensor_to_host(c, dst[g].t[i], vals));                                  \
            for (int64_t k = 0; k < dst[g].t[i]->numel; k++) cr_assert_eq(vals[k], -7.0f, "half-loaded"); \
        }

    /* another config's checkpoint */
    cr_assert_eq(rx_ckpt_load(c, path, gd, G, "fedcba9876543210", NULL), RX_ERR_CONFIG);
    cr_assert(strstr(rx_last_error(), path), "%s", rx_last_error());
    ASSERT_DST_UNTOUCHED();

    /* a file missing the last group's last tensor: the earlier groups must not be copied */
    rx_paramset partial = {0};
    ASSERT_OK(rx_paramset_add(&partial, src[G - 1].t[0]));
    rx_ckpt_group gp[G] = {gs[0], gs[1], gs[2], {"adam_v", &partial, 0}};
    const char *partial_path = own(strdup(T("partial.safetensors")));
    ASSERT_OK(rx_ckpt_save(c, partial_path, gp, G, &meta));
    cr_assert_neq(rx_ckpt_load(c, partial_path, gd, G, NULL, NULL), RX_OK);
    cr_assert(strstr(rx_last_error(), "adam_v.conv.bias"), "%s", rx_last_error());
    ASSERT_DST_UNTOUCHED();

    /* truncated by one byte */
    long len = 0;
    char *bytes = rx_test_read_file(path, &len);
    cr_assert_not_null(bytes);
    const char *trunc_path = own(strdup(T("truncated.safetensors")));
    ASSERT_OK(rx_fs_write_atomic(trunc_path, bytes, (size_t)len - 1));
    free(bytes);
    cr_assert_eq(rx_ckpt_load(c, trunc_path, gd, G, NULL, NULL), RX_ERR_FORMAT);
    cr_assert(strstr(rx_last_error(), trunc_path), "%s", rx_last_error());
    ASSERT_DST_UNTOUCHED();

    /* one flipped bit in the last tensor of the last group: refused by its checksum, nothing copied */
    const char *flip_path = own(strdup(T("flipped.safetensors")));
    rx_test_flip_tensor_byte(path, flip_path, "adam_v.conv.bias", 5, 0x01);
    cr_assert_eq(rx_ckpt_load(c, flip_path, gd, G, NULL, NULL), RX_ERR_FORMAT);
    cr_assert(strstr(rx_last_error(), flip_path) &&
              strstr(rx_last_error(), "tensor 'adam_v.conv.bias': checksum mismatch (data corrupt)"), "%s", rx_last_error());
    ASSERT_DST_UNTOUCHED();

    /* the intact file: everything back, bit for bit, with its metadata */
    rx_ckpt_meta got;
    ASSERT_OK(rx_ckpt_load(c, path, gd, G, "0123456789abcdef", &got));
    cr_assert_eq(got.step, 42);
    cr_assert_eq(got.seed, 9007199254740991ull);
    cr_assert_str_eq(got.config_hash, "0123456789abcdef");
    float a[108], b[108];
    for (int g = 0; g < G; g++)
        for (int i = 0; i < 2; i++) {
            ASSERT_OK(rx_tensor_to_host(c, src[g].t[i], a));
            ASSERT_OK(rx_tensor_to_host(c, dst[g].t[i], b));
            cr_assert_eq(memcmp(a, b, src[g].t[i]->numel * sizeof(float)), 0, "%s.%s differs", prefixes[g], names[i]);
        }
#undef ASSERT_DST_UNTOUCHED
    rx_paramset_free(&partial);
    for (int g = 0; g < G; g++) { rx_paramset_free(&src[g]); rx_paramset_free(&dst[g]); }
    rx_ctx_destroy(c);
}

/* a copy of a checkpoint with every tensor named *conv_out.weight set to NaN */
static void write_nan_copy(const char *from, const char *to) {
    rx_st_file *f = NULL;
    ASSERT_OK(rx_st_open(from, &f));
    rx_st_writer *w = NULL;
    ASSERT_OK(rx_st_writer_create(&w));
    for (int i = 0; i < rx_st_count(f); i++) {
        const rx_st_tensor *t = rx_st_tensor_at(f, i);
        const void *data = rx_st_data(f, t);
        size_t len = strlen(t->name);
        if (len >= 15 && !strcmp(t->name + len - 15, "conv_out.weight")) {
            cr_assert_eq(t->dtype, RX_ST_F32);
            float *nan_data = own(malloc(t->numel * sizeof(float)));
            for (int64_t k = 0; k < t->numel; k++) nan_data[k] = NAN;
            data = nan_data;
        }
        ASSERT_OK(rx_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, data));
    }
    for (int i = 0; i < rx_st_metadata_count(f); i++)
        ASSERT_OK(rx_st_writer_set_metadata(w, rx_st_metadata_key(f, i), rx_st_metadata_value(f, i)));
    ASSERT_OK(rx_st_writer_write(w, to));
    rx_st_writer_free(w);
    rx_st_close(f);
}

Test(runner, init_checkpoint_round_trip_and_bad_checkpoints) {
    const char *root = own(strdup(T("results")));
    result a = RUNEXP("train", TINY, "--results", root);
    RUN_OK(a);
    const char *dir_a = own(strdup(a.last));
    const char *ckpt = own(strdup(P("%s/checkpoints/last.safetensors", dir_a)));

    /* train: null + init: the run's checkpoint samples exactly what the run sampled (its EMA weights) */
    result b = RUNEXP("init", TINY, "--results", root, "--set", "train=null", "--set", P("init=%s", ckpt));
    RUN_OK(b);
    cr_assert_null(run_field(b.last, "train_hash"), "train: null must not train");
    assert_same_tensors(P("%s/samples/samples.safetensors", dir_a), P("%s/samples/samples.safetensors", b.last));

    /* damaged or foreign checkpoints as init: exit 2, the file named, nothing written */
    long len = 0;
    char *bytes = own(rx_test_read_file(ckpt, &len));
    cr_assert_not_null(bytes);
    struct { const char *name; long keep; } cuts[] = {
        {"five_bytes", 5}, {"header_cut", 100}, {"data_cut", len - 1000}, {"last_byte_cut", len - 1}};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        const char *bad = own(strdup(T("%s.safetensors", cuts[i].name)));
        ASSERT_OK(rx_fs_write_atomic(bad, bytes, (size_t)cuts[i].keep));
        const char *bad_root = own(strdup(T("bad_%s", cuts[i].name)));
        result r = RUNEXP(P("bad%zu", i), TINY, "--results", bad_root, "--set", "train=null", "--set", P("init=%s", bad));
        cr_assert_eq(r.code, 2, "%s: exit %d\n%s", cuts[i].name, r.code, r.err);
        cr_assert(strstr(r.err, bad), "%s: the message does not name the file:\n%s", cuts[i].name, r.err);
        cr_assert(!rx_fs_exists(bad_root), "%s: something was written", cuts[i].name);
    }
    const char *garbage = own(strdup(T("garbage.safetensors")));
    const char text[] = "\x10\0\0\0\0\0\0\0{not json at al}";
    ASSERT_OK(rx_fs_write_atomic(garbage, text, sizeof text - 1));
    result r = RUNEXP("garbage", TINY, "--results", T("bad_garbage"), "--set", P("init=%s", garbage));
    cr_assert_eq(r.code, 2, "%s", r.err);
    cr_assert(strstr(r.err, garbage) && strstr(r.err, "JSON"), "%s", r.err);
    cr_assert(!rx_fs_exists(T("bad_garbage")));

    result cl = RUNEXP("classifier", CLASSIFIER, "--results", T("classifier"));
    RUN_OK(cl);
    const char *foreign = own(strdup(P("%s/checkpoints/last.safetensors", cl.last)));
    r = RUNEXP("foreign", TINY, "--results", T("bad_foreign"), "--set", P("init=%s", foreign));
    cr_assert_eq(r.code, 2, "%s", r.err);
    cr_assert(strstr(r.err, foreign) && strstr(r.err, "no tensor 'model."), "%s", r.err);
    cr_assert(!rx_fs_exists(T("bad_foreign")));

    /* NaN weights: the loss is NaN at step 1 -> the run fails (exit 1) and says why */
    const char *nan_ckpt = own(strdup(T("nan.safetensors")));
    write_nan_copy(ckpt, nan_ckpt);
    const char *nan_root = own(strdup(T("nan")));
    r = RUNEXP("nan", TINY, "--results", nan_root, "--set", P("init=%s", nan_ckpt));
    cr_assert_eq(r.code, 1, "NaN loss: exit %d\n%s", r.code, r.err);
    cr_assert(rx_fs_is_dir(r.last), "a failed run still prints its directory");
    cr_assert_str_eq(run_field(r.last, "status"), "failed");
    const char *err = run_field(r.last, "error");
    cr_assert(err && strstr(err, "nan at step 1;") && strstr(err, "last good checkpoint: (none)"), "%s", err ? err : "(no error)");
    cr_assert(strstr(read_text(P("%s/tiny/index.csv", nan_root)), ",failed,"));
    /* the losses are read back once per log window (train.c): with log_every 3 the NaN is seen at
     * step 3, and the error still names step 1, the first bad one; no checkpoint is written */
    r = RUNEXP("nan_window", TINY, "--results", T("nan_window"), "--set", P("init=%s", nan_ckpt), "--set",
               "train.log_every=3", "--set", "train.checkpoint_every=0");
    cr_assert_eq(r.code, 1, "NaN loss, log_every 3: exit %d\n%s", r.code, r.err);
    err = run_field(r.last, "error");
    cr_assert(err && strstr(err, "loss is nan at step 1;") && strstr(err, "last good checkpoint: (none)"), "%s",
              err ? err : "(no error)");
    cr_assert(!rx_fs_exists(P("%s/checkpoints/last.safetensors", r.last)), "no checkpoint after a NaN step");

    /* --resume of a run whose checkpoint was damaged: refused (never restarted from scratch) */
    json_t *rec = load_json(P("%s/run.json", dir_a));
    json_object_set_new(rec, "status", json_string("running"));   /* as if killed */
    cr_assert_eq(json_dump_file(rec, P("%s/run.json", dir_a), 0), 0);
    json_decref(rec);
    ASSERT_OK(rx_fs_write_atomic(ckpt, bytes, (size_t)len / 2));
    r = RUNEXP("resume_bad", "--resume", dir_a);
    cr_assert_neq(r.code, 0, "resume from a truncated checkpoint succeeded");
    cr_assert(strstr(r.err, ckpt), "%s", r.err);
    cr_assert_str_neq(run_field(dir_a, "status"), "done");
}

/* issue 19: one flipped bit in a checkpoint's tensor data. --resume, init= and export all refuse
 * it (resume: exit 1, the run marked failed; init and export: exit 2) naming the file and the
 * tensor, and leave the file as it was; before checksums, resume went on from the corrupt
 * weight and export wrote it. */
Test(runner, flipped_checkpoint_byte_refused_by_resume_init_and_export) {
    const char *root = own(strdup(T("results")));
    result a = RUNEXP("train", TINY, "--results", root);
    RUN_OK(a);
    const char *dir = own(strdup(a.last));
    const char *ckpt = own(strdup(P("%s/checkpoints/last.safetensors", dir)));
    const char *victim = "model.down_blocks.0.resnets.0.conv1.weight";
    const char *want = own(strdup(P("tensor '%s': checksum mismatch (data corrupt)", victim)));
    rx_test_flip_tensor_byte(ckpt, ckpt, victim, 2, 0x01);   /* a mantissa bit: the value stays plausible */
    long len = 0;
    char *flipped = own(rx_test_read_file(ckpt, &len));
    cr_assert_not_null(flipped);

    json_t *rec = load_json(P("%s/run.json", dir));
    json_object_set_new(rec, "status", json_string("running"));   /* as if killed */
    cr_assert_eq(json_dump_file(rec, P("%s/run.json", dir), 0), 0);
    json_decref(rec);
    result r = RUNEXP("resume", "--resume", dir);
    /* exit 1 with the run marked failed, as for a truncated checkpoint (never restarted) */
    cr_assert_eq(r.code, 1, "resume from a corrupt checkpoint: exit %d\n%s", r.code, r.err);
    cr_assert(strstr(r.err, ckpt) && strstr(r.err, want), "%s", r.err);
    cr_assert_str_eq(run_field(dir, "status"), "failed");
    const char *err = run_field(dir, "error");
    cr_assert(err && strstr(err, want), "run.json error: %s", err ? err : "(none)");

    r = RUNEXP("init", TINY, "--results", T("init"), "--set", "train=null", "--set", P("init=%s", ckpt));
    cr_assert_eq(r.code, 2, "init from a corrupt checkpoint: exit %d\n%s", r.code, r.err);
    cr_assert(strstr(r.err, want), "%s", r.err);
    cr_assert(!rx_fs_exists(T("init")), "something was written");

    const char *out = own(strdup(T("weights.safetensors")));
    r = RUNEXP("export", "export", ckpt, "--to", "weights", out);
    cr_assert_eq(r.code, 2, "export of a corrupt checkpoint: exit %d\n%s", r.code, r.err);
    cr_assert(strstr(r.err, want), "%s", r.err);
    cr_assert(!rx_fs_exists(out), "export wrote %s", out);

    long len2 = 0;
    char *after = own(rx_test_read_file(ckpt, &len2));
    cr_assert(len2 == len && !memcmp(after, flipped, (size_t)len), "the corrupt checkpoint was modified");
}

/* train.max_minutes (Lightning's max_time): a run far longer than its time budget stops at a step
 * boundary, writes its checkpoint at that step, logs that step's metrics line, and goes on to
 * sample; run.json says where it stopped */
Test(runner, max_minutes_stops_training_checkpoints_and_samples) {
    const char *root = own(strdup(T("timed")));
    result r = RUNEXP("timed", LONG, "--results", root, "--set", "train.steps=1000000", "--set", "train.max_minutes=0.01",
                      "--set", "train.checkpoint_every=0");
    RUN_OK(r);
    const char *dir = r.last;
    json_t *rec = load_json(P("%s/run.json", dir));
    cr_assert_str_eq(json_str(rec, "status"), "done");
    json_t *stop = json_object_get(rec, "train_stopped_at_step");
    cr_assert(json_is_integer(stop), "run.json lacks train_stopped_at_step");
    const int64_t k = json_integer_value(stop);
    json_decref(rec);
    cr_assert(k >= 1 && k < 1000000, "stopped at step %lld", (long long)k);
    cr_assert_eq(checkpoint_step(P("%s/checkpoints/last.safetensors", dir)), k, "the checkpoint is of the last step");
    const char *metrics = read_text(P("%s/metrics.jsonl", dir));
    cr_assert(strstr(metrics, P("{\"step\":%lld,", (long long)k)), "no metrics line for step %lld", (long long)k);
    cr_assert(rx_fs_exists(P("%s/samples/grid.png", dir)), "sampling did not follow the stopped training");
    cr_assert(strstr(read_text(P("%s/log.txt", dir)), "max_minutes"), "the log does not say why training stopped");
}

/* export --to weights: the checkpoint's EMA weights as a bare file (one tensor per parameter,
 * byte-identical to the checkpoint's ema.* tensors, no optimizer state), which init loads to
 * sample exactly what the run sampled */
Test(runner, export_weights_is_the_ema_group_and_loads_as_init) {
    const char *root = own(strdup(T("results")));
    result a = RUNEXP("train", TINY, "--results", root);
    RUN_OK(a);
    const char *ckpt = own(strdup(P("%s/checkpoints/last.safetensors", a.last)));
    const char *out = own(strdup(T("weights.safetensors")));
    result e = RUNEXP("export", "export", ckpt, "--to", "weights", out);
    cr_assert_eq(e.code, 0, "export: exit %d\n%s", e.code, e.err);
    cr_assert_str_eq(e.last, out);

    rx_st_file *w = NULL, *c = NULL;
    ASSERT_OK(rx_st_open(out, &w));
    ASSERT_OK(rx_st_open(ckpt, &c));
    cr_assert_eq(rx_st_count(w), model_group_tensors(c), "the file must hold exactly the model's parameters");
    for (int i = 0; i < rx_st_count(w); i++) {
        const rx_st_tensor *t = rx_st_tensor_at(w, i), *ref = rx_st_find(c, P("ema.%s", t->name));
        cr_assert_not_null(ref, "'%s' is not a parameter in the checkpoint's ema group", t->name);
        cr_assert_eq(t->end - t->begin, ref->end - ref->begin, "'%s': size differs", t->name);
        cr_assert_eq(memcmp(rx_st_data(w, t), rx_st_data(c, ref), t->end - t->begin), 0, "'%s' differs from ema.%s",
                     t->name, t->name);
    }
    cr_assert_null(rx_st_metadata(w, "format"), "a bare weights file carries no checkpoint format tag");
    cr_assert_not_null(rx_st_metadata(w, "config"), "the training config is kept for provenance");
    rx_st_close(w);
    rx_st_close(c);

    result b = RUNEXP("init", TINY, "--results", root, "--set", "train=null", "--set", P("init=%s", out));
    RUN_OK(b);
    assert_same_tensors(P("%s/samples/samples.safetensors", a.last), P("%s/samples/samples.safetensors", b.last));

    result bad = RUNEXP("bad_format", "export", ckpt, "--to", "onnx", T("x.onnx"));
    cr_assert_eq(bad.code, 2, "%s", bad.err);
    cr_assert(strstr(bad.err, "diffusers") && strstr(bad.err, "weights"), "the message must name the formats: %s", bad.err);
}

/* cuda_graphs: true on the CPU backend: accepted, recorded in run.json, said once in log.txt
 * (training and sampling both ran eagerly: no graph counts), and the run is the same run as
 * without the key: the same identity (the key is out of it) and the same checkpoint tensors and
 * samples. Reference: the same config run with cuda_graphs: false. */
Test(runner, cuda_graphs_on_the_cpu_says_so_once_and_changes_nothing) {
    const char *root = own(strdup(T("graphs_cpu")));
    result off = RUNEXP("graphs_cpu", TINY, "--results", root, "--set", "cuda_graphs=false");
    RUN_OK(off);
    result on = RUNEXP("graphs_cpu", TINY, "--results", root, "--set", "cuda_graphs=true", "--force");
    RUN_OK(on);
    json_t *rec = load_json(P("%s/run.json", on.last));
    cr_expect(json_is_true(json_object_get(rec, "cuda_graphs")), "run.json does not record cuda_graphs: true");
    cr_expect_null(json_object_get(rec, "cuda_graphs_train"), "the CPU reported captured training steps");
    json_decref(rec);
    const char *log = read_text(P("%s/log.txt", on.last));
    const char *say = "the CPU backend has no CUDA graphs";
    const char *first = strstr(log, say);
    cr_expect(first, "log.txt does not say the CPU has no graphs:\n%s", log);
    if (first) cr_expect_null(strstr(first + 1, say), "said more than once:\n%s", log);
    cr_expect_null(strstr(read_text(P("%s/log.txt", off.last)), say), "said without the key");
    cr_expect_str_eq(run_field(off.last, "config_hash"), run_field(on.last, "config_hash"));
    assert_same_tensors(P("%s/checkpoints/last.safetensors", off.last), P("%s/checkpoints/last.safetensors", on.last));
    assert_same_tensors(P("%s/samples/samples.safetensors", off.last), P("%s/samples/samples.safetensors", on.last));
}
