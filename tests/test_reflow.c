/* Reflow and 1-step distillation (Liu, Gong, Liu 2022; diffusion/reflow.c, runner/reflow.c).
 *
 *   reflow_batch   rx_reflow_make_batch against the straight-coupling formula
 *                  x_sigma = (1-sigma) x + sigma z, target z - x, t = sigma T; and the sign
 *                  convention against the flow_euler sampler itself: a velocity equal to
 *                  z - x carries the sampler's initial noise z to x in any number of steps
 *                  (one step = the distillation's map), the noise being the Philox draw of
 *                  the image index that runner/reflow.c stores as z.
 *   reflow_runs    the real runexp binary on tests/configs/reflow/: the chain's files and
 *                  hashes, the stage cache (a second run reuses pairs and students; a
 *                  second round reuses the first), pairs
 *                  reproducible bit for bit from a fresh results root, a reflow stage
 *                  interrupted and resumed = the uninterrupted run bit for bit (reference:
 *                  the same config run uninterrupted), and bad input -> exit 2 with
 *                  file:line:col, nothing written. */
#include "runexp_harness.h"
#include "diffusion/diffusion.h"
#include "diffusion/sampling.h"
#include "core/philox.h"
#include "registry/components.h"
#include <math.h>

/* ---- the batch formula ---- */

enum { N = 3, NB = 16, D = 5 };

static void fill_pairs(float z[N * D], float x[N * D], int32_t labels[N]) {
    for (int p = 0; p < N; p++) {
        labels[p] = 7 + p;
        for (int j = 0; j < D; j++) {
            z[p * D + j] = (float)(0.3 * (p + 1) - 0.17 * j);    /* distinct z - x per pair */
            x[p * D + j] = (float)(-0.5 + 0.11 * j * (p + 2));
        }
    }
}

/* the pair whose z - x the target is (exactly: the same float subtraction), or -1 */
static int pair_of(const float *target, const float z[N * D], const float x[N * D]) {
    for (int p = 0; p < N; p++) {
        int same = 1;
        for (int j = 0; j < D; j++) same &= target[j] == z[p * D + j] - x[p * D + j];
        if (same) return p;
    }
    return -1;
}

static void check_batch(double sigma_fixed, double shift) {
    rx_schedule s = {.kind = RX_SCHED_FLOW, .name = "flow", .num_train_timesteps = 1000, .shift = shift};
    float z[N * D], x[N * D], xt[NB * D], t[NB], target[NB * D], weight[NB];
    int32_t labels[N], labels_out[NB];
    fill_pairs(z, x, labels);
    ASSERT_OK(rx_reflow_make_batch(&s, 11, 4, sigma_fixed, N, NB, D, z, x, labels, xt, t, target, weight, labels_out));
    int seen[N] = {0};
    double tmin = 1e9, tmax = -1;
    for (int i = 0; i < NB; i++) {
        const int p = pair_of(target + i * D, z, x);
        cr_assert_geq(p, 0, "example %d: target is no pair's z - x", i);
        seen[p] = 1;
        cr_assert_eq(labels_out[i], labels[p], "example %d: label of its pair", i);
        cr_assert_eq(weight[i], 1.0f);
        const double sg = t[i] / 1000.0;
        cr_assert(sg >= 0 && sg <= 1, "sigma %g outside [0, 1]", sg);
        if (sigma_fixed >= 0) cr_assert_eq(t[i], (float)(sigma_fixed * 1000), "distill: t = sigma T");
        tmin = fmin(tmin, t[i]);
        tmax = fmax(tmax, t[i]);
        for (int j = 0; j < D; j++) {
            const double want = (1 - sg) * x[p * D + j] + sg * z[p * D + j];
            cr_assert_float_eq(xt[i * D + j], want, 2e-6, "example %d value %d: x_t %g, formula %g", i, j, xt[i * D + j], want);
        }
    }
    for (int p = 0; p < N; p++) cr_expect(seen[p], "pair %d never drawn in %d examples", p, NB);
    if (sigma_fixed < 0) cr_expect_gt(tmax - tmin, 100, "times not spread: [%g, %g]", tmin, tmax);

    /* the same (seed, step) gives the same batch; another step another */
    float xt2[NB * D], t2[NB], target2[NB * D], weight2[NB];
    int32_t labels2[NB];
    ASSERT_OK(rx_reflow_make_batch(&s, 11, 4, sigma_fixed, N, NB, D, z, x, labels, xt2, t2, target2, weight2, labels2));
    cr_assert_eq(memcmp(xt, xt2, sizeof xt), 0);
    cr_assert_eq(memcmp(t, t2, sizeof t), 0);
    ASSERT_OK(rx_reflow_make_batch(&s, 11, 5, sigma_fixed, N, NB, D, z, x, labels, xt2, t2, target2, weight2, labels2));
    cr_assert_neq(memcmp(target, target2, sizeof target), 0, "step 5 drew the same pairs as step 4");
}

Test(reflow_batch, straight_coupling_formula) { check_batch(-1, 1.0); }
Test(reflow_batch, straight_coupling_formula_shifted) { check_batch(-1, 3.0); }
Test(reflow_batch, distill_time_fixed_at_pure_noise) { check_batch(1.0, 1.0); }

Test(reflow_batch, refuses_a_discrete_schedule) {
    rx_schedule s = {.kind = RX_SCHED_DISCRETE, .name = "linear", .num_train_timesteps = 1000};
    float z[N * D], x[N * D], xt[NB * D], t[NB], target[NB * D], weight[NB];
    int32_t labels[N], labels_out[NB];
    fill_pairs(z, x, labels);
    cr_assert_eq(rx_reflow_make_batch(&s, 1, 0, -1, N, NB, D, z, x, labels, xt, t, target, weight, labels_out),
                 RX_ERR_CONFIG);
    cr_assert(strstr(rx_last_error(), "schedule/flow"), "%s", rx_last_error());
}

/* the "network" of a perfectly straight coupling: v = z - x, with z the noise the sampler
 * starts from (recorded at its first call) and x the wanted sample */
typedef struct straight { const float *x; float z[2 * D]; int calls; } straight;

static rx_status straight_velocity(void *ctx, int n, const float *xs, const float *t, const int32_t *labels, float *out) {
    (void)t; (void)labels;
    straight *s = ctx;
    if (s->calls++ == 0) memcpy(s->z, xs, (size_t)n * D * sizeof *xs);
    for (int i = 0; i < n * D; i++) out[i] = s->z[i] - s->x[i];
    return RX_OK;
}

Test(reflow_batch, straight_velocity_carries_the_pair_noise_to_x_in_any_steps) {
    rx_schedule sch = {.kind = RX_SCHED_FLOW, .name = "flow", .num_train_timesteps = 1000, .shift = 1.0};
    const float x[2 * D] = {0.5f, -0.25f, 0.75f, 0.1f, -0.9f, 0.3f, 0.2f, -0.6f, 0.05f, 0.4f};
    const int64_t index[2] = {(int64_t)1 << 47 | 3, (int64_t)1 << 47 | (int64_t)1 << 32 | 9};   /* runner/reflow.c's keys */
    const rx_component *euler = &rx_comp_sampler_flow_euler;
    const int steps_list[] = {1, 2, 4, 20};
    for (int k = 0; k < 4; k++) {
        rx_params *p = NULL;
        ASSERT_OK(rx_params_from_defaults("sampler/flow_euler", euler->params, &p));
        char steps[8];
        snprintf(steps, sizeof steps, "%d", steps_list[k]);
        ASSERT_OK(rx_params_set(p, "steps", steps));
        straight s = {.x = x};
        float out[2 * D];
        const rx_sample_request r = {.schedule = &sch, .prediction_type = RX_PRED_FLOW, .denoise = straight_velocity,
                                     .denoise_ctx = &s, .n = 2, .d = D, .image_index = index, .seed = 5, .x_out = out};
        ASSERT_OK(((const rx_sampler_impl *)euler->impl)->run(p, &r));
        cr_assert_eq(s.calls, steps_list[k]);
        for (int i = 0; i < 2; i++) {   /* the sampler's starting noise is the stored z */
            float z[D];
            rx_rng_normal(5, RX_STREAM(RX_RNG_SAMPLE_NOISE, (uint64_t)index[i]), 0, z, D);
            cr_assert_eq(memcmp(z, s.z + i * D, sizeof z), 0, "image %d: sampler noise is not the pair's z", i);
        }
        for (int j = 0; j < 2 * D; j++)
            cr_assert_float_eq(out[j], x[j], 1e-5, "%d steps: value %d reached %g, pair's x %g", steps_list[k], j, out[j], x[j]);
        rx_params_free(p);
    }
}

/* ---- the stages, through runexp ---- */

#define CFG "tests/configs/reflow/"

Test(reflow_runs, chain_files_hashes_and_stage_cache, .init = setup, .fini = teardown) {
    const char *root = own(strdup(T("res")));
    result r = RUNEXP("reflow1", CFG "tiny.yaml", "--set", "sample.model=reflow1", "--results", root, "--quiet");
    RUN_OK(r);
    const char *a = own(strdup(r.last));
    cr_assert(rx_fs_exists(P("%s/reflow/pairs1.safetensors", a)));
    cr_assert(rx_fs_exists(P("%s/checkpoints/reflow1.safetensors", a)));
    cr_assert(!rx_fs_exists(P("%s/checkpoints/distill.safetensors", a)), "reflow1 needs no distillation");
    cr_assert_not_null(run_field(a, "pairs1_hash"));
    cr_assert_not_null(run_field(a, "reflow1_hash"));
    cr_assert_null(run_field(a, "distill_hash"));
    cr_assert_eq(checkpoint_step(P("%s/checkpoints/reflow1.safetensors", a)), 4);
    /* the reflow rows of metrics.jsonl say their stage */
    const char *metrics = read_text(P("%s/metrics.jsonl", a));
    cr_assert_eq(count_substr(metrics, "\"stage\":\"reflow1\""), 4, "%s", metrics);

    /* distill: teacher, pairs and reflow1 from the first run; only the distillation trains */
    r = RUNEXP("distill", CFG "tiny.yaml", "--results", root, "--quiet");
    RUN_OK(r);
    const char *b = own(strdup(r.last));
    cr_assert_str_eq(run_field(b, "train_reused_from"), a);
    cr_assert_str_eq(run_field(b, "pairs1_reused_from"), a);
    cr_assert_str_eq(run_field(b, "reflow1_reused_from"), a);
    cr_assert_str_eq(run_field(b, "pairs1_hash"), run_field(a, "pairs1_hash"));
    cr_assert_str_eq(run_field(b, "reflow1_hash"), run_field(a, "reflow1_hash"));
    cr_assert(!rx_fs_exists(P("%s/reflow/pairs1.safetensors", b)), "pairs drawn again");
    cr_assert(!rx_fs_exists(P("%s/checkpoints/reflow1.safetensors", b)), "reflow1 trained again");
    cr_assert_eq(checkpoint_step(P("%s/checkpoints/distill.safetensors", b)), 3);

    /* a sampler sweep of the distilled model trains nothing */
    r = RUNEXP("steps", CFG "tiny.yaml", "--set", "sampler.steps=1", "--results", root, "--quiet");
    RUN_OK(r);
    cr_assert_str_eq(run_field(r.last, "distill_reused_from"), b);
    cr_assert_null(run_field(r.last, "pairs1_reused_from"), "the cached distillation needs no pairs");
    cr_assert(!rx_fs_exists(P("%s/checkpoints/distill.safetensors", r.last)));

    /* the teacher needs no reflow stage at all */
    r = RUNEXP("teacher", CFG "tiny.yaml", "--set", "sample.model=teacher", "--results", root, "--quiet");
    RUN_OK(r);
    cr_assert_null(run_field(r.last, "reflow1_hash"));
    cr_assert_null(run_field(r.last, "pairs1_hash"));

    /* a second round: reflow1 (whose hash does not depend on the number of rounds) is reused,
     * pairs2 are drawn from it and reflow2 starts from it */
    r = RUNEXP("round2", CFG "tiny.yaml", "--set", "reflow.rounds=2", "--set", "sample.model=reflow2", "--results", root,
               "--quiet");
    RUN_OK(r);
    cr_assert_str_eq(run_field(r.last, "reflow1_reused_from"), a);
    cr_assert_null(run_field(r.last, "pairs1_reused_from"), "reflow2 needs no pairs1");
    cr_assert(rx_fs_exists(P("%s/reflow/pairs2.safetensors", r.last)));
    cr_assert_eq(checkpoint_step(P("%s/checkpoints/reflow2.safetensors", r.last)), 4);
    const char *log2 = read_text(P("%s/log.txt", r.last));
    cr_assert(strstr(log2, "reflow2: reflow on 6 pairs of pairs2"));
    /* reflow1 learned the CFG flow of pairs1: its own pairs are drawn without guiding it again */
    cr_assert(strstr(log2, "pairs2: drawing 6 pairs with flow_euler (3 steps), guidance none (the student carries reflow.guidance)"), "%s", log2);

    /* --force draws and trains everything again: the same bytes (CPU, keyed randomness) */
    r = RUNEXP("force", CFG "tiny.yaml", "--force", "--results", root, "--quiet");
    RUN_OK(r);
    assert_same_tensors(P("%s/reflow/pairs1.safetensors", r.last), P("%s/reflow/pairs1.safetensors", a));
    assert_same_tensors(P("%s/checkpoints/reflow1.safetensors", r.last), P("%s/checkpoints/reflow1.safetensors", a));
    assert_same_tensors(P("%s/checkpoints/distill.safetensors", r.last), P("%s/checkpoints/distill.safetensors", b));
    assert_same_tensors(P("%s/samples/samples.safetensors", r.last), P("%s/samples/samples.safetensors", b));
}

/* pairs from a fresh results root = the same file, tensor for tensor, and what they hold:
 * z is the Philox noise of the pair's key, labels cycle over the classes */
Test(reflow_runs, pairs_reproducible_from_a_fresh_root, .init = setup, .fini = teardown) {
    result r1 = RUNEXP("one", CFG "tiny.yaml", "--set", "sample.model=reflow1", "--results", T("one"), "--quiet");
    RUN_OK(r1);
    result r2 = RUNEXP("two", CFG "tiny.yaml", "--set", "sample.model=reflow1", "--results", T("two"), "--quiet");
    RUN_OK(r2);
    const char *pa = own(strdup(P("%s/reflow/pairs1.safetensors", r1.last)));
    assert_same_tensors(pa, P("%s/reflow/pairs1.safetensors", r2.last));
    rx_st_file *f = NULL;
    ASSERT_OK(rx_st_open(pa, &f));
    cr_assert_str_eq(rx_st_metadata(f, "pairs_hash"), run_field(r1.last, "pairs1_hash"));
    const int64_t shape[4] = {6, 3, 8, 8};
    ASSERT_OK(rx_st_check_shape(f, "z", 4, shape));
    ASSERT_OK(rx_st_check_shape(f, "x", 4, shape));
    float z[6 * 192], zref[192], x[6 * 192];
    int32_t labels[6];
    ASSERT_OK(rx_st_read_f32(f, "z", z, 6 * 192));
    ASSERT_OK(rx_st_read_f32(f, "x", x, 6 * 192));
    ASSERT_OK(rx_st_read_raw(f, "labels", RX_ST_I32, labels, sizeof labels));
    for (int i = 0; i < 6; i++) {
        rx_rng_normal(3, RX_STREAM(RX_RNG_SAMPLE_NOISE, (uint64_t)1 << 47 | (uint64_t)1 << 32 | (uint64_t)i), 0, zref, 192);
        cr_assert_eq(memcmp(zref, z + i * 192, sizeof zref), 0, "pair %d: z is not the noise of its key", i);
        cr_assert_eq(labels[i], i % 2);
        cr_assert_neq(memcmp(x + i * 192, z + i * 192, sizeof zref), 0, "pair %d: x = z, the teacher did nothing", i);
    }
    rx_st_close(f);
    /* a corrupt pairs file is refused by the next run that would reuse it, not trained on */
    FILE *fp = fopen(pa, "r+b");
    cr_assert_not_null(fp);
    fseek(fp, -10, SEEK_END);
    fputc(0x5a, fp);
    fclose(fp);
    result r3 = RUNEXP("corrupt", CFG "tiny.yaml", "--results", T("one"), "--quiet");
    cr_assert_neq(r3.code, 0);
    cr_assert(strstr(r3.err, "checksum mismatch") && strstr(r3.err, "--force"), "%s", r3.err);
}

/* SIGINT inside reflow1 (after a few of its checkpoints), then --resume: the reflow1 and
 * distill checkpoints, the samples and the metrics rows equal the uninterrupted run's */
Test(reflow_runs, interrupted_reflow_resumes_exactly, .init = setup, .fini = teardown) {
    const char *root = own(strdup(T("interrupted")));
    pid_t pid = spawn_runexp("long", (const char *const[]){CFG "long.yaml", "--results", root, NULL});
    const char *exp_dir = own(strdup(P("%s/reflow_long", root)));
    double t0 = now_s();
    const char *dir = NULL;
    for (;;) {
        int st;
        cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "runexp ended before it could be interrupted");
        char names[4][64];
        if (list_runs(exp_dir, names, 4) == 1) {
            dir = P("%s/%s", exp_dir, names[0]);
            if (rx_fs_exists(P("%s/checkpoints/reflow1.safetensors", dir))) break;
        }
        cr_assert_lt(now_s() - t0, 120.0, "no reflow1 checkpoint after 120 s");
        usleep(2000);
    }
    dir = own(strdup(dir));
    kill(pid, SIGINT);
    result r = collect("long", wait_exit(pid));
    cr_assert_eq(r.code, 130, "SIGINT: exit %d\n%s", r.code, r.err);
    cr_assert_str_eq(run_field(dir, "status"), "interrupted");
    int64_t k = checkpoint_step(P("%s/checkpoints/reflow1.safetensors", dir));
    cr_assert(k >= 10 && k < 300, "interrupted at reflow1 step %lld", (long long)k);

    r = RUNEXP("resume", "--resume", dir, "--quiet");
    RUN_OK(r);
    cr_assert_str_eq(run_field(dir, "status"), "done");
    cr_assert(strstr(read_text(P("%s/log.txt", dir)), P("reflow1: resumed from %s/checkpoints/reflow1.safetensors", dir)));
    result ref = RUNEXP("reference", CFG "long.yaml", "--results", T("reference"), "--quiet");
    RUN_OK(ref);
    assert_same_tensors(P("%s/checkpoints/reflow1.safetensors", dir), P("%s/checkpoints/reflow1.safetensors", ref.last));
    assert_same_tensors(P("%s/checkpoints/distill.safetensors", dir), P("%s/checkpoints/distill.safetensors", ref.last));
    assert_same_tensors(P("%s/samples/samples.safetensors", dir), P("%s/samples/samples.safetensors", ref.last));
    /* metrics.jsonl: the same rows (stage, step, loss) in the same order, none doubled */
    char *a = own(rx_test_read_file(P("%s/metrics.jsonl", dir), NULL)), *b = own(rx_test_read_file(P("%s/metrics.jsonl", ref.last), NULL));
    cr_assert_eq(count_lines(P("%s/metrics.jsonl", dir)), 6 + 300 + 3);
    cr_assert_eq(count_lines(P("%s/metrics.jsonl", ref.last)), 6 + 300 + 3);
    char *sa, *sb, *la = strtok_r(a, "\n", &sa), *lb = strtok_r(b, "\n", &sb);
    for (int row = 1; la && lb; row++, la = strtok_r(NULL, "\n", &sa), lb = strtok_r(NULL, "\n", &sb)) {
        json_t *ja = json_loads(la, 0, NULL), *jb = json_loads(lb, 0, NULL);
        cr_assert(ja && jb);
        cr_assert_str_eq(json_str(ja, "stage"), json_str(jb, "stage"), "row %d", row);
        cr_assert_eq(json_integer_value(json_object_get(ja, "step")), json_integer_value(json_object_get(jb, "step")), "row %d", row);
        cr_assert_eq(json_real_value(json_object_get(ja, "loss")), json_real_value(json_object_get(jb, "loss")), "row %d: loss", row);
        json_decref(ja);
        json_decref(jb);
    }
}

/* bad input: exit 2, the file:line:col of the offending key, nothing written */
Test(reflow_runs, bad_input_exits_2_with_position_and_writes_nothing, .init = setup, .fini = teardown) {
    static const struct { const char *file, *where, *what; } cases[] = {
        {"bad_objective.yaml", CFG "tiny.yaml:27:3", "needs objective flow_matching"},
        {"bad_model.yaml", CFG "bad_model.yaml:3:47", "'reflow2' is not a model of this experiment; expected one of: teacher, reflow1, distill"},
        {"bad_sampler.yaml", CFG "bad_sampler.yaml:3:26", "reflow.sampler.name: ddim"},
        {"bad_no_reflow.yaml", CFG "tiny.yaml:37:47", "need a reflow section"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *root = T("bad%zu", i);
        result r = RUNEXP(P("bad%zu", i), P(CFG "%s", cases[i].file), "--results", root, "--quiet");
        cr_assert_eq(r.code, 2, "%s: exit %d\n%s", cases[i].file, r.code, r.err);
        cr_assert(strstr(r.err, cases[i].where), "%s: no position %s in:\n%s", cases[i].file, cases[i].where, r.err);
        cr_assert(strstr(r.err, cases[i].what), "%s: no '%s' in:\n%s", cases[i].file, cases[i].what, r.err);
        cr_assert(!rx_fs_exists(root), "%s: %s was written", cases[i].file, root);
    }
}
