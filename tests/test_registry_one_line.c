/* test_registry_one_line.c — a component that exists only as a descriptor plus one entry in
 * a registry table is fully usable: listed, documented, checked with "did you mean" hints,
 * checked against the other sections through its impl's properties (not its name), and run.
 *
 * Two components are defined here and nowhere else: a transform `negate` (y = -x, the
 * reference formula the run is checked against) and a schedule `flow_twin` (the flow schedule's
 * builder under another name, flagged RX_SCHED_FLOW in its impl). The table is the product's
 * own rx_registry_components plus these two lines, as registry/components.def would give it. */
#include "testutil.h"
#include "data/transform.h"
#include "diffusion/diffusion.h"
#include "io/fsutil.h"
#include "registry/components.h"
#include "registry/registry.h"
#include "runner/pipeline.h"

#include <jansson.h>
#include <unistd.h>

// ---------------------------------------------------------------------------
// the two components

static int negate_calls;

static rx_status negate_shape(const rx_params *p, int c, int h, int w, int *oc, int *oh, int *ow) {
    *oc = c, *oh = h, *ow = w;
    return RX_OK;
}
static rx_status negate_apply(const rx_params *p, const float *in, int c, int h, int w, float *out, uint64_t seed,
                              uint64_t sample_key) {
    for (int i = 0; i < c * h * w; i++) out[i] = -in[i];
    __atomic_add_fetch(&negate_calls, 1, __ATOMIC_RELAXED);   // the loader may run transforms on threads
    return RX_OK;
}
static const rx_param_spec negate_params[] = {{0}};
static const rx_transform_impl negate_impl = {negate_shape, negate_apply, 0};
static const rx_component comp_negate = {RX_KIND_TRANSFORM, "negate", "y = -x (a test component)", negate_params,
                                         &negate_impl, NULL};

extern const rx_param_spec rx_schedule_flow_params[];
static rx_status flow_twin_build(const rx_params *p, rx_schedule *out) {
    return ((const rx_schedule_impl *)rx_comp_schedule_flow.impl)->build(p, out);
}
static const rx_schedule_impl flow_twin_impl = {flow_twin_build, RX_SCHED_FLOW};
static const rx_component comp_flow_twin = {RX_KIND_SCHEDULE, "flow_twin", "the flow schedule under another name",
                                            rx_schedule_flow_params, &flow_twin_impl, NULL};

static const rx_component *table[256];

static void build_table(void) {
    int n = 0;
    while (rx_registry_components[n]) { table[n] = rx_registry_components[n]; n++; }
    cr_assert_lt(n + 3, 256);
    table[n++] = &comp_negate;
    table[n++] = &comp_flow_twin;
    table[n] = NULL;
}

static char tmpdir[256];

static void setup(void) {
    build_table();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rx_test_one_line_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}
static void teardown(void) {
    if (!getenv("RX_KEEP_TMP")) rx_fs_remove_tree(tmpdir);
}

TestSuite(one_line, .init = setup, .fini = teardown, .timeout = 120);

// ---------------------------------------------------------------------------
// helpers

/* A smoke experiment (experiments/smoke/flow_euler.yaml, smaller) with the schedule,
 * objective, sampler and second transform given. */
static const char *write_config(const char *name, const char *schedule, const char *objective, const char *sampler,
                                const char *transform) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s.yaml", tmpdir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "experiment: %s\n"
            "seed: 3\n"
            "backend: cpu\n"
            "dataset: {name: synthetic, num_images: 16, size: 8, channels: 3, num_classes: 2}\n"
            "transforms: [{name: normalize}, {name: %s}]\n"
            "model: {name: unet, sample_size: 8, layers_per_block: 1, block_out_channels: [8, 16],\n"
            "        down_block_types: [DownBlock2D, DownBlock2D], up_block_types: [UpBlock2D, UpBlock2D],\n"
            "        norm_num_groups: 4}\n"
            "schedule: {name: %s}\n"
            "objective: {name: %s}\n"
            "train: {steps: 2, batch_size: 4, log_every: 1, checkpoint_every: 0}\n"
            "sampler: {name: %s, steps: 2}\n"
            "sample: {num_images: 4, batch_size: 4}\n",
            name, transform, schedule, objective, sampler);
    cr_assert_eq(fclose(f), 0);
    return path;
}

/* resolve against the test table; the joined error messages (or "") */
static const char *resolve(const char *path, rx_config **cfg) {
    static char text[4096];
    rx_config_errors errs = {0};
    *cfg = NULL;
    rx_config_resolve(path, NULL, 0, (const rx_component *const *)table, cfg, &errs);
    text[0] = 0;
    for (int i = 0; i < errs.n; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "%s\n", errs.items[i].message);
    rx_config_errors_clear(&errs);
    free(errs.items);
    return text;
}

static char *listing(int kind, int markdown) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_assert_eq(rx_registry_list_in((const rx_component *const *)table, f, kind, markdown), RX_OK, "%s",
                 rx_last_error());
    fclose(f);
    return buf;
}

// ---------------------------------------------------------------------------

Test(one_line, listed_documented_and_self_checked) {
    char *text = listing(RX_KIND_TRANSFORM, 0), *all = listing(-1, 0), *md = listing(-1, 1);
    cr_expect(strstr(text, "negate — y = -x (a test component)"), "%s", text);
    cr_expect(strstr(all, "flow_twin"), "runexp list shows every kind's names");
    cr_expect(strstr(md, "### `negate`") && strstr(md, "### `flow_twin`"), "docs/components.md would list both");
    cr_expect(strstr(md, "| `shift` |"), "flow_twin's parameters (the flow schedule's) are documented");
    free(text), free(all), free(md);
    rx_config_errors errs = {0};
    cr_expect_eq(rx_registry_check((const rx_component *const *)table, &errs), RX_OK, "%s", rx_last_error());
    rx_config_errors_clear(&errs);
    free(errs.items);
}

Test(one_line, checked_by_name_with_hints) {
    rx_config *cfg;
    const char *errs = resolve(write_config("good", "flow_twin", "flow_matching", "flow_euler", "negate"), &cfg);
    cr_assert_not_null(cfg, "%s", errs);
    const rx_component *comp = NULL;
    cr_expect_eq(rx_config_section_item_params(cfg, "transforms", 1, &comp, NULL), RX_OK);
    cr_expect_eq(comp, &comp_negate);
    rx_config_free(cfg);

    errs = resolve(write_config("typo", "flow_twin", "flow_matching", "flow_euler", "negat"), &cfg);
    cr_expect_null(cfg);
    cr_expect(strstr(errs, "unknown transform 'negat' (did you mean 'negate'?)"), "%s", errs);
}

Test(one_line, cross_checks_read_the_impl_not_the_name) {
    rx_config *cfg;
    /* flow_twin is a flow schedule because its impl says so: with a ddpm objective it is refused,
     * and the message lists the beta schedules of the table */
    const char *errs = resolve(write_config("mismatch", "flow_twin", "ddpm", "ddim", "negate"), &cfg);
    cr_expect_null(cfg);
    cr_expect(strstr(errs, "schedule.name: schedule flow_twin does not fit objective ddpm; use a beta schedule: "
                           "linear, scaled_linear, squaredcos_cap_v2 or sigmoid"),
              "%s", errs);
}

Test(one_line, runs_end_to_end) {
    rx_config *cfg;
    const char *errs = resolve(write_config("run", "flow_twin", "flow_matching", "flow_euler", "negate"), &cfg);
    cr_assert_not_null(cfg, "%s", errs);
    char results[512], run_dir[1024];
    snprintf(results, sizeof results, "%s/results", tmpdir);
    rx_run_options opt = {.results_root = results, .quiet = 1};
    int config_error = 0;
    negate_calls = 0;
    rx_status st = rx_run_config(cfg, &opt, run_dir, sizeof run_dir, NULL, &config_error);
    cr_assert_eq(st, RX_OK, "%s", rx_last_error());
    cr_expect_geq(negate_calls, 8, "2 training batches of 4 images each pass through negate");
    char path[1200];
    snprintf(path, sizeof path, "%s/run.json", run_dir);
    json_t *run = json_load_file(path, 0, NULL);
    cr_assert_not_null(run);
    cr_expect_str_eq(json_string_value(json_object_get(run, "status")), "done");
    json_decref(run);
    long len = 0;
    snprintf(path, sizeof path, "%s/config.yaml", run_dir);
    char *saved = rx_test_read_file(path, &len);
    cr_assert_not_null(saved);
    cr_expect(strstr(saved, "name: flow_twin") && strstr(saved, "name: negate"), "%s", saved);
    free(saved);
    rx_config_free(cfg);
}
