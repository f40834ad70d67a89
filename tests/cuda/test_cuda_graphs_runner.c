/* test_cuda_graphs_runner.c — `cuda_graphs: true` through the runner (rx_run_config /
 * rx_run_resume, what `runexp` and `runexp --resume` call; runner/train.c's step_graph): the
 * class-conditional U-Net of tests/configs/runner/tiny.yaml with dropout 0.1 (and the objective's
 * label drop, p_uncond 0.1), 6 steps, metrics every 2, a checkpoint every 4, a preview grid at
 * step 3 (which drops the graph: the steps after it warm up and capture again), then DDIM with CFG.
 *   - graphs and eager give the same bits: every metrics row's loss, and checkpoints/last.safetensors
 *     (weights, EMA, AdamW moments), and the sampled images. Reference: the same config run with
 *     cuda_graphs: false (same device, same kernels: equality, not a tolerance);
 *   - capture really happened: run.json's cuda_graphs_train says steps were replayed (> 0) and
 *     log.txt says how many, so a capture that silently never happens fails the test; so do
 *     cuda_graphs_sample and cuda_graphs_preview for the sampler's network calls;
 *   - resume: a graphs run that fails at step 6 (RX_DIST_TEST_FAULT, after the step-4 checkpoint)
 *     and is resumed with graphs ends with the same checkpoint bytes as the uninterrupted eager run.
 * Runs in the emulator (tests/cuda/emu) without a GPU (capture records, replay runs the records);
 * on a GPU the real cudaGraph (make test-cuda). Skips where no CUDA device answers. In the
 * emulator: 4 runs of 6 steps and their sampling, 37 s at load ~4 on 2 cores. */
#include "cuda_parity.h"
#include "run_outputs.h"
#include "runner/pipeline.h"
#include "registry/registry.h"
#include "io/fsutil.h"
#include "io/json_util.h"
#include "io/safetensors.h"
#include <sys/wait.h>
#include <unistd.h>

#define TINY "tests/configs/runner/tiny.yaml"
#define FAIL_STEP 6

static char root[256];

static void setup(void) {
    RX_CUDA_REQUIRE();
    snprintf(root, sizeof root, "/tmp/rx_test_graphs_XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void teardown(void) {
    if (root[0] && !getenv("RX_KEEP_TMP")) rx_fs_remove_tree(root);
}

/* tiny.yaml on the CUDA backend with dropout, graphs on or off */
static rx_config *config(int graphs) {
    const char *sets[] = {"backend=cuda", graphs ? "cuda_graphs=true" : "cuda_graphs=false", "model.dropout=0.1",
                          "train.steps=6", "train.log_every=2", "train.checkpoint_every=4", "train.sample_every=3",
                          "optimizer.lr=3e-3"};
    rx_config_errors errs = {0};
    rx_config *cfg = NULL;
    rx_status s = rx_config_resolve(TINY, sets, (int)(sizeof sets / sizeof *sets), NULL, &cfg, &errs);
    if (s) rx_config_errors_print(&errs, stderr);
    rx_config_errors_clear(&errs);
    cr_assert_eq(s, RX_OK, "%s: %s", TINY, rx_last_error());
    return cfg;
}

/* one run into results/<sub>; its directory in dir */
static rx_status run(int graphs, const char *sub, char *dir, size_t n) {
    char results[512];
    snprintf(results, sizeof results, "%s/%s", root, sub);
    rx_run_options opt = {.results_root = results, .force = 1, .quiet = 1};
    rx_config *cfg = config(graphs);
    int config_error = 0;
    rx_status s = rx_run_config(cfg, &opt, dir, n, NULL, &config_error);
    rx_config_free(cfg);
    return s;
}

/* every tensor of two safetensors files (in run directories a and b): same names, same bytes */
static void same_tensors(const char *a_dir, const char *b_dir, const char *file, const char *what) {
    char a_path[1400], b_path[1400];
    snprintf(a_path, sizeof a_path, "%s/%s", a_dir, file);
    snprintf(b_path, sizeof b_path, "%s/%s", b_dir, file);
    rx_st_file *a = NULL, *b = NULL;
    cr_assert_eq(rx_st_open(a_path, &a), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_st_open(b_path, &b), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_st_count(a), rx_st_count(b));
    int differ = 0;
    for (int i = 0; i < rx_st_count(a); i++) {
        const rx_st_tensor *ta = rx_st_tensor_at(a, i), *tb = rx_st_find(b, ta->name);
        cr_assert_not_null(tb, "%s: no tensor %s", b_path, ta->name);
        cr_assert_eq(ta->end - ta->begin, tb->end - tb->begin, "%s: sizes differ", ta->name);
        if (memcmp(rx_st_data(a, ta), rx_st_data(b, tb), ta->end - ta->begin)) {
            cr_log_error("%s: %s differs (%s)", file, ta->name, what);
            differ++;
        }
    }
    cr_expect_eq(differ, 0, "%s: %d of %d tensors differ: %s", file, differ, rx_st_count(a), what);
    rx_st_close(a);
    rx_st_close(b);
}

/* run.json's cuda_graphs_<stage> counter `key` */
static json_int_t graph_count(const char *dir, const char *stage, const char *key) {
    char path[1400];
    snprintf(path, sizeof path, "%s/run.json", dir);
    json_t *r = NULL;
    cr_assert_eq(rx_json_load_file(path, &r), RX_OK, "%s", rx_last_error());
    char k[64];
    snprintf(k, sizeof k, "cuda_graphs_%s", stage);
    json_t *g = json_object_get(r, k);
    cr_assert_not_null(g, "%s: no %s", path, k);
    const json_int_t v = json_integer_value(json_object_get(g, key));
    json_decref(r);
    return v;
}

static int log_has(const char *dir, const char *text) {
    char path[1400], *log = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/log.txt", dir);
    cr_assert_eq(rx_fs_read_file(path, &log, &len), RX_OK, "%s", rx_last_error());
    const int has = strstr(log, text) != NULL;
    free(log);
    return has;
}

Test(cuda_graphs_runner, training_and_sampling_replay_bit_identically_and_resume, .init = setup, .fini = teardown,
     .timeout = 3600) {
    /* first (RX_DIST_TEST_FAULT is read once per process: the child must be the first to read it):
     * a graphs run stopped by a fault at step 6, resumed below with graphs */
    char stopped[600] = "";
    int fd[2];
    cr_assert_eq(pipe(fd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fd[0]);
        char fault[32];
        snprintf(fault, sizeof fault, "fail:0:%d", FAIL_STEP);
        setenv("RX_DIST_TEST_FAULT", fault, 1);
        rx_status s = run(1, "resumed", stopped, sizeof stopped);
        if (write(fd[1], stopped, sizeof stopped) != (ssize_t)sizeof stopped) _exit(3);
        _exit(s == RX_ERR_INTERNAL ? 0 : 1);   /* it must stop at the fault, nowhere else */
    }
    close(fd[1]);
    cr_assert_eq(read(fd[0], stopped, sizeof stopped), (ssize_t)sizeof stopped);
    close(fd[0]);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the run did not stop at its step-%d fault (status %d)",
              FAIL_STEP, status);

    char eager[600], graphs[600];
    cr_assert_eq(run(0, "eager", eager, sizeof eager), RX_OK, "%s", rx_last_error());
    cr_assert_eq(run(1, "graphs", graphs, sizeof graphs), RX_OK, "%s", rx_last_error());

    /* steps 1 eager, 2 captured, 3 replayed, preview; 4 eager, 5 captured, 6 replayed */
    cr_expect_eq(graph_count(graphs, "train", "replayed_steps"), 4);
    cr_expect_eq(graph_count(graphs, "train", "captures"), 2);
    cr_expect_eq(graph_count(graphs, "train", "eager_steps"), 2);
    cr_expect(log_has(graphs, "train: cuda_graphs: 4 steps replayed from 2 captures, 2 eager"), "log.txt of %s", graphs);
    /* DDIM-2 with CFG, one batch of 4 (8 rows a call): call 1 eager, call 2 captured and replayed */
    cr_expect_eq(graph_count(graphs, "sample", "replayed_calls"), 1);
    cr_expect_eq(graph_count(graphs, "preview", "replayed_calls"), 1);

    double a[8], b[8];
    const int n = run_losses(eager, a, 8);
    cr_assert_eq(n, 3, "%d metrics rows", n);
    cr_assert_eq(run_losses(graphs, b, 8), n);
    for (int i = 0; i < n; i++)
        cr_expect(!memcmp(&a[i], &b[i], sizeof a[i]), "row %d: loss %.17g eager, %.17g graphs", i, a[i], b[i]);
    same_tensors(eager, graphs, "checkpoints/last.safetensors", "graphs against eager");
    same_tensors(eager, graphs, "samples/samples.safetensors", "graphs against eager");

    /* the resumed run ends with the uninterrupted eager run's bits */
    char results[512], out[600];
    snprintf(results, sizeof results, "%s/resumed", root);
    rx_config *cfg = config(1);
    rx_run_options opt = {.results_root = results, .quiet = 1};
    int config_error = 0;
    cr_assert_eq(rx_run_resume(cfg, &opt, stopped, out, sizeof out, &config_error), RX_OK, "%s", rx_last_error());
    rx_config_free(cfg);
    cr_expect(log_has(stopped, "at step 4"), "the resume did not start from the step-4 checkpoint");
    /* resumed: step 5 eager (warm-up), step 6 captured and replayed */
    cr_expect_eq(graph_count(stopped, "train", "replayed_steps"), 1);
    same_tensors(eager, stopped, "checkpoints/last.safetensors", "resumed graphs run against the uninterrupted eager run");
    const int m = run_losses(stopped, b, 8);
    cr_assert_eq(m, n, "%d metrics rows after the resume", m);
    for (int i = 0; i < n; i++)
        cr_expect(!memcmp(&a[i], &b[i], sizeof a[i]), "resumed row %d: loss %.17g eager, %.17g", i, a[i], b[i]);
}
