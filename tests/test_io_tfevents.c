/* test_io_tfevents.c — TensorBoard event files (io/tfevents.h) and log.tensorboard runs.
 *
 * References:
 *   - CRC32C: the check value of the Castagnoli polynomial, CRC32C("123456789") = 0xE3069283
 *     (RFC 3720, appendix B.4), and a bitwise CRC32C written here from its definition
 *     (reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF);
 *   - the record format and masking of TensorFlow's record_writer.cc / crc32c.h, read back by
 *     a reader written here (lengths and both masked CRCs checked with the bitwise CRC), each
 *     record unpacked with protobuf-c from TensorBoard's event.proto;
 *   - what TensorBoard writes itself: file_version "brain.Event:2" first, scalars as
 *     simple_value, images as Summary.Image, text as text_v2's text_pb (plugin "text", rank-0
 *     DT_STRING tensor), SessionLog START on a restart;
 *   - TensorBoard's EventAccumulator._Purge for file_version 2: a START event at step s drops
 *     every event read before it with step >= s (applied here to a killed + resumed run);
 *   - metrics.jsonl and eval.json of the same run: every column / metric is one scalar.
 * A check with TensorBoard itself (EventAccumulator): bench/tools/tb_check.py, by hand. */
#include "io/tfevents.h"
#include "io/png.h"
#include "tensorboard/compat/proto/event.pb-c.h"
#include "tensorboard/compat/proto/summary.pb-c.h"
#include "tensorboard/compat/proto/tensor.pb-c.h"
#include "tensorboard/compat/proto/tensor_shape.pb-c.h"

#include "runexp_harness.h"

TestSuite(tfevents, .init = setup, .fini = teardown, .timeout = 120);

/* ---------------------------------------------------------------------------------------
 * the reference CRC and reader */

static uint32_t ref_crc32c(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
    }
    return c ^ 0xFFFFFFFFu;
}

static uint32_t ref_masked(const uint8_t *p, size_t n) {
    const uint32_t c = ref_crc32c(p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static uint64_t le(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

#define MAX_EVENTS 1024
typedef struct events { Tensorboard__Event *ev[MAX_EVENTS]; int n; } events;

/* appends every record of `path` to e: framing and CRCs must be exact, the file must end on
 * a record boundary */
static void read_events(const char *path, events *e) {
    long size = 0;
    uint8_t *buf = own(rx_test_read_file(path, &size));
    cr_assert_not_null(buf, "%s missing", path);
    for (long off = 0; off < size;) {
        cr_assert_leq(off + 12, size, "%s: a record header cut short at %ld", path, off);
        const uint64_t len = le(buf + off, 8);
        cr_assert_eq(le(buf + off + 8, 4), ref_masked(buf + off, 8), "%s: length CRC at %ld", path, off);
        cr_assert_leq(off + 16 + (long)len, size, "%s: record at %ld runs past the end", path, off);
        const uint8_t *data = buf + off + 12;
        cr_assert_eq(le(data + len, 4), ref_masked(data, len), "%s: data CRC of the record at %ld", path, off);
        cr_assert_lt(e->n, MAX_EVENTS);
        Tensorboard__Event *ev = tensorboard__event__unpack(NULL, len, data);
        cr_assert_not_null(ev, "%s: record at %ld is not an Event", path, off);
        e->ev[e->n++] = ev;
        off += 16 + (long)len;
    }
}

static void free_events(events *e) {
    for (int i = 0; i < e->n; i++) tensorboard__event__free_unpacked(e->ev[i], NULL);
    e->n = 0;
}

/* the one summary value of event i (rx_tfevents writes one per event) */
static const Tensorboard__Summary__Value *value_of(const events *e, int i) {
    const Tensorboard__Event *ev = e->ev[i];
    cr_assert_eq(ev->what_case, TENSORBOARD__EVENT__WHAT_SUMMARY, "event %d is not a summary", i);
    cr_assert_eq(ev->summary->n_value, 1);
    return ev->summary->value[0];
}

/* the events files of a directory, sorted by name (TensorBoard's reading order) */
static int list_event_files(const char *dir, char names[][256], int max) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    int n = 0;
    for (struct dirent *de; (de = readdir(d));)
        if (!strncmp(de->d_name, "events.out.tfevents.", 20) && n < max) snprintf(names[n++], 256, "%s", de->d_name);
    closedir(d);
    qsort(names, n, 256, (int (*)(const void *, const void *))strcmp);
    return n;
}

/* ---------------------------------------------------------------------------------------
 * the writer */

Test(tfevents, crc32c_check_value_and_bitwise_reference) {
    cr_assert_eq(rx_crc32c("123456789", 9), 0xE3069283u);
    cr_assert_eq(ref_crc32c((const uint8_t *)"123456789", 9), 0xE3069283u, "the test's own reference is wrong");
    cr_assert_eq(rx_crc32c("", 0), 0u);
    uint8_t buf[1031];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 16);
    for (size_t n = 0; n <= sizeof buf; n += n < 40 ? 1 : 97) {   /* ISA-L's byte, word and block paths */
        cr_assert_eq(rx_crc32c(buf, n), ref_crc32c(buf, n), "length %zu", n);
        cr_assert_eq(rx_tfevents_masked_crc(buf, n), ref_masked(buf, n), "masked, length %zu", n);
    }
}

/* a 5x3 RGB PNG through the library's own encoder: the bytes an image summary must carry */
static const char *make_png(void) {
    uint8_t img[3 * 3 * 5];
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(17 * i);
    const char *path = own(strdup(T("img.png")));
    ASSERT_OK(rx_png_write_u8(path, img, 3, 3, 5));
    return path;
}

Test(tfevents, every_kind_of_record_reads_back) {
    long png_n = 0;
    uint8_t *png = own(rx_test_read_file(make_png(), &png_n));
    rx_tfevents *w = NULL;
    ASSERT_OK(rx_tfevents_open(tmpdir, &w));
    const char *path = own(strdup(rx_tfevents_path(w)));
    ASSERT_OK(rx_tfevents_add_scalar(w, "train/loss", 7, 0.25));
    ASSERT_OK(rx_tfevents_add_image_png(w, "samples/grid", 8, png, (size_t)png_n));
    ASSERT_OK(rx_tfevents_add_text(w, "config", 0, "seed: 3\n"));
    ASSERT_OK(rx_tfevents_session_start(w, 11));
    ASSERT_OK(rx_tfevents_close(w));

    events e = {0};
    read_events(path, &e);
    cr_assert_eq(e.n, 5);
    cr_assert_eq(e.ev[0]->what_case, TENSORBOARD__EVENT__WHAT_FILE_VERSION);
    cr_assert_str_eq(e.ev[0]->file_version, "brain.Event:2");
    for (int i = 0; i < e.n; i++) cr_assert_gt(e.ev[i]->wall_time, 1.6e9, "event %d: wall_time is not a unix time", i);

    const Tensorboard__Summary__Value *v = value_of(&e, 1);
    cr_assert_eq(e.ev[1]->step, 7);
    cr_assert_str_eq(v->tag, "train/loss");
    cr_assert_eq(v->value_case, TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE);
    cr_assert_eq(v->simple_value, 0.25f);

    v = value_of(&e, 2);
    cr_assert_eq(e.ev[2]->step, 8);
    cr_assert_eq(v->value_case, TENSORBOARD__SUMMARY__VALUE__VALUE_IMAGE);
    cr_assert_eq(v->image->height, 3);
    cr_assert_eq(v->image->width, 5);
    cr_assert_eq(v->image->colorspace, 3);
    cr_assert_eq(v->image->encoded_image_string.len, (size_t)png_n);
    cr_assert_eq(memcmp(v->image->encoded_image_string.data, png, png_n), 0, "the PNG bytes changed on the way");

    v = value_of(&e, 3);
    cr_assert_str_eq(v->tag, "config");
    cr_assert_not_null(v->metadata);
    cr_assert_not_null(v->metadata->plugin_data);
    cr_assert_str_eq(v->metadata->plugin_data->plugin_name, "text");
    cr_assert_eq(v->value_case, TENSORBOARD__SUMMARY__VALUE__VALUE_TENSOR);
    cr_assert_eq(v->tensor->dtype, TENSORBOARD__DATA_TYPE__DT_STRING);
    cr_assert_not_null(v->tensor->tensor_shape);
    cr_assert_eq(v->tensor->tensor_shape->n_dim, 0, "text_v2 writes a scalar string tensor");
    cr_assert_eq(v->tensor->n_string_val, 1);
    cr_assert_eq(v->tensor->string_val[0].len, 8);
    cr_assert_eq(memcmp(v->tensor->string_val[0].data, "seed: 3\n", 8), 0);

    cr_assert_eq(e.ev[4]->what_case, TENSORBOARD__EVENT__WHAT_SESSION_LOG);
    cr_assert_eq(e.ev[4]->session_log->status, TENSORBOARD__SESSION_LOG__SESSION_STATUS__START);
    cr_assert_eq(e.ev[4]->step, 11);
    free_events(&e);
}

Test(tfevents, file_names_sort_by_time_and_never_collide) {
    rx_tfevents *a = NULL, *b = NULL;
    ASSERT_OK(rx_tfevents_open(tmpdir, &a));
    ASSERT_OK(rx_tfevents_open(tmpdir, &b));   /* most likely the same second */
    const char *pa = own(strdup(rx_tfevents_path(a))), *pb = own(strdup(rx_tfevents_path(b)));
    ASSERT_OK(rx_tfevents_close(a));
    ASSERT_OK(rx_tfevents_close(b));
    cr_assert_str_neq(pa, pb);
    cr_assert_lt(strcmp(pa, pb), 0, "the later file must sort after the earlier: %s, %s", pa, pb);
    const char *name = strrchr(pa, '/') + 1;
    cr_assert(!strncmp(name, "events.out.tfevents.", 20), "%s", name);
    cr_assert_eq(strspn(name + 20, "0123456789"), 10, "%s: not a zero-padded 10-digit time", name);
    char host[256] = "";
    cr_assert_eq(gethostname(host, sizeof host - 1), 0);
    cr_assert_str_eq(name + 31, host);
    events e = {0};
    read_events(pb, &e);
    cr_assert_eq(e.n, 1);
    cr_assert_str_eq(e.ev[0]->file_version, "brain.Event:2");
    free_events(&e);
}

Test(tfevents, image_refuses_what_is_not_a_png) {
    rx_tfevents *w = NULL;
    ASSERT_OK(rx_tfevents_open(tmpdir, &w));
    cr_assert_eq(rx_tfevents_add_image_png(w, "x", 0, "GIF89a.......................", 29), RX_ERR_FORMAT);
    cr_assert(strstr(rx_last_error(), "not a PNG"), "%s", rx_last_error());
    cr_assert_eq(rx_tfevents_add_image_png(w, "x", 0, "\x89PNG", 4), RX_ERR_FORMAT);
    ASSERT_OK(rx_tfevents_close(w));
}

/* ---------------------------------------------------------------------------------------
 * runs with log.tensorboard */

#define TB_CFG "tests/configs/runner/tensorboard.yaml"

/* index of the last summary event with `tag` at or after `from`, or -1; *count: how many */
static int find_tag(const events *e, const char *tag, int *count) {
    int at = -1, n = 0;
    for (int i = 0; i < e->n; i++) {
        if (e->ev[i]->what_case != TENSORBOARD__EVENT__WHAT_SUMMARY) continue;
        if (!strcmp(e->ev[i]->summary->value[0]->tag, tag)) { at = i; n++; }
    }
    if (count) *count = n;
    return at;
}

/* every column of every metrics.jsonl row (but step) as train/<column> at the row's step, and
 * every eval.json metric once as eval/<metric> at the last row's step; returns the rows */
static int assert_scalars_match_records(const char *run_dir, const events *e) {
    char *text = own(rx_test_read_file(P("%s/metrics.jsonl", run_dir), NULL));
    int rows = 0;
    int64_t last = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), rows++) {
        json_t *row = json_loads(line, 0, NULL);
        cr_assert_not_null(row);
        const int64_t step = last = json_integer_value(json_object_get(row, "step"));
        const char *k;
        json_t *v;
        int cols = 0;
        json_object_foreach(row, k, v) {
            if (!strcmp(k, "step")) continue;
            int found = 0;
            for (int i = 0; i < e->n && !found; i++)
                found = e->ev[i]->what_case == TENSORBOARD__EVENT__WHAT_SUMMARY && e->ev[i]->step == step &&
                        !strcmp(value_of(e, i)->tag, P("train/%s", k)) &&
                        value_of(e, i)->simple_value == (float)json_number_value(v);
            cr_assert(found, "%s: no train/%s = %g at step %lld", run_dir, k, json_number_value(v), (long long)step);
            cols++;
        }
        cr_assert_eq(cols, 4, "loss, lr, grad_norm, img_per_s");
        json_decref(row);
    }
    int n_loss;
    find_tag(e, "train/loss", &n_loss);
    cr_assert_eq(n_loss, rows, "one train/loss per metrics.jsonl row");

    json_t *ev = load_json(P("%s/eval.json", run_dir));
    json_t *metrics = json_object_get(ev, "metrics");
    cr_assert_gt(json_object_size(metrics), 0);
    const char *k;
    json_t *v;
    json_object_foreach(metrics, k, v) {
        int n;
        int i = find_tag(e, P("eval/%s", k), &n);
        cr_assert_eq(n, 1, "eval/%s: %d events", k, n);
        cr_assert_eq(e->ev[i]->step, last);
        cr_assert_eq(value_of(e, i)->simple_value, (float)json_number_value(v));
    }
    json_decref(ev);
    return rows;
}

/* the classifier (its eval is test_accuracy, classify.c), then the denoiser it evaluates */
Test(tfevents, a_run_writes_every_metric_the_grid_and_the_config) {
    result c = RUNEXP("classifier", "tests/configs/runner/classifier.yaml", "--set", "log.tensorboard=true", "--set", "eval.num_images=8", "--results",
                      T("classifier"));
    RUN_OK(c);
    char files[4][256];
    cr_assert_eq(list_event_files(c.last, files, 4), 1);
    events e = {0};
    read_events(P("%s/%s", c.last, files[0]), &e);
    cr_assert_eq(assert_scalars_match_records(c.last, &e), 2);
    cr_assert_geq(find_tag(&e, "eval/test_accuracy", NULL), 0);
    free_events(&e);

    result r = RUNEXP("run", TB_CFG, "--results", T("results"), "--set",
                      P("eval.features.weights=%s/checkpoints/last.safetensors", c.last));
    RUN_OK(r);
    cr_assert_eq(list_event_files(r.last, files, 4), 1);
    read_events(P("%s/%s", r.last, files[0]), &e);
    cr_assert_eq(assert_scalars_match_records(r.last, &e), 6);

    /* the grid: samples/grid.png's bytes */
    int n;
    int i = find_tag(&e, "samples/grid", &n);
    cr_assert_eq(n, 1);
    long png_n = 0;
    uint8_t *png = own(rx_test_read_file(P("%s/samples/grid.png", r.last), &png_n));
    const Tensorboard__Summary__Image *img = value_of(&e, i)->image;
    cr_assert_not_null(img);
    cr_assert_eq(img->encoded_image_string.len, (size_t)png_n);
    cr_assert_eq(memcmp(img->encoded_image_string.data, png, png_n), 0);

    /* the config: config.yaml's lines, indented (markdown code) */
    i = find_tag(&e, "config", &n);
    cr_assert_eq(n, 1);
    const Tensorboard__TensorProto *t = value_of(&e, i)->tensor;
    cr_assert_not_null(t);
    char *got = own(strndup((const char *)t->string_val[0].data, t->string_val[0].len));
    char *cfg = own(rx_test_read_file(P("%s/config.yaml", r.last), NULL));
    int lines = 0;
    for (char *line = strtok(cfg, "\n"); line; line = strtok(NULL, "\n"), lines++)
        cr_assert(strstr(got, P("    %s\n", line)), "config text lacks '%s'", line);
    cr_assert_gt(lines, 20);
    free_events(&e);
}

/* off by default; and the log section is not part of the run's hash (experiment.c run_hash):
 * the same experiment with TensorBoard on is the same run identity */
Test(tfevents, off_by_default_and_not_part_of_the_run_hash) {
    result off = RUNEXP("off", "tests/configs/runner/tiny.yaml", "--results", T("off"));
    RUN_OK(off);
    char files[4][256];
    cr_assert_eq(list_event_files(off.last, files, 4), 0);
    cr_assert(strstr(read_text(P("%s/config.yaml", off.last)), "\nlog:\n  tensorboard: false\n"));
    result on = RUNEXP("on", "tests/configs/runner/tiny.yaml", "--set", "log.tensorboard=true", "--results", T("on"));
    RUN_OK(on);
    cr_assert_eq(list_event_files(on.last, files, 4), 1);
    cr_assert_str_eq(run_field(on.last, "config_hash"), run_field(off.last, "config_hash"));
    cr_assert_str_eq(strrchr(on.last, '/'), strrchr(off.last, '/'), "the directory tag is the run hash's first 8");
}

/* train.sample_every: a grid every 2 steps (not at the last, the sample stage's), as a file and
 * as samples/grid at its step. Reference: the same run without previews, whose checkpoint,
 * metrics (but timing) and samples must be the same bit for bit (sampling between steps
 * leaves the training alone). */
Test(tfevents, previews_at_sample_every_leave_training_unchanged) {
    result ref = RUNEXP("ref", "tests/configs/runner/tiny.yaml", "--results", T("ref"));
    RUN_OK(ref);
    result r = RUNEXP("previews", "tests/configs/runner/tiny.yaml", "--set", "train.sample_every=2", "--set",
                      "log.tensorboard=true", "--results", T("previews"));
    RUN_OK(r);
    assert_same_tensors(P("%s/checkpoints/last.safetensors", r.last), P("%s/checkpoints/last.safetensors", ref.last));
    assert_same_tensors(P("%s/samples/samples.safetensors", r.last), P("%s/samples/samples.safetensors", ref.last));
    assert_metrics_match(r.last, ref.last, 6);
    cr_assert(!rx_fs_exists(P("%s/samples/grid_step000006.png", r.last)), "the last step's grid is grid.png");

    char files[4][256];
    cr_assert_eq(list_event_files(r.last, files, 4), 1);
    events e = {0};
    read_events(P("%s/%s", r.last, files[0]), &e);
    const int64_t want[3] = {2, 4, 6};
    int k = 0;
    for (int i = 0; i < e.n; i++) {
        if (e.ev[i]->what_case != TENSORBOARD__EVENT__WHAT_SUMMARY || strcmp(value_of(&e, i)->tag, "samples/grid")) continue;
        cr_assert_lt(k, 3);
        cr_assert_eq(e.ev[i]->step, want[k], "grid %d at step %lld", k, (long long)e.ev[i]->step);
        const char *file = k < 2 ? P("%s/samples/grid_step%06lld.png", r.last, (long long)want[k]) : P("%s/samples/grid.png", r.last);
        long n = 0;
        uint8_t *png = own(rx_test_read_file(file, &n));
        cr_assert_not_null(png, "%s missing", file);
        const Tensorboard__Summary__Image *img = value_of(&e, i)->image;
        cr_assert(img->encoded_image_string.len == (size_t)n && !memcmp(img->encoded_image_string.data, png, n),
                  "grid at step %lld is not %s", (long long)want[k], file);
        k++;
    }
    cr_assert_eq(k, 3);
    free_events(&e);
}

/* TensorBoard's reading of a directory (file_version 2): files in name order; a SessionLog
 * START at step s drops what was read before with step >= s. Returns the train/loss steps kept. */
static int loss_steps_after_purge(const events *e, int64_t *steps, int max) {
    int n = 0;
    for (int i = 0; i < e->n; i++) {
        const Tensorboard__Event *ev = e->ev[i];
        if (ev->what_case == TENSORBOARD__EVENT__WHAT_SESSION_LOG &&
            ev->session_log->status == TENSORBOARD__SESSION_LOG__SESSION_STATUS__START) {
            int kept = 0;
            for (int j = 0; j < n; j++)
                if (steps[j] < ev->step) steps[kept++] = steps[j];
            n = kept;
        } else if (ev->what_case == TENSORBOARD__EVENT__WHAT_SUMMARY && !strcmp(ev->summary->value[0]->tag, "train/loss")) {
            cr_assert_lt(n, max);
            steps[n++] = ev->step;
        }
    }
    return n;
}

Test(tfevents, a_killed_run_resumes_into_a_new_file_with_a_session_start) {
    const char *root = own(strdup(T("killed")));
    pid_t pid = spawn_runexp("long", (const char *const[]){"tests/configs/runner/long.yaml", "--set", "log.tensorboard=true",
                                                           "--results", root, NULL});
    const char *dir = wait_for_training(pid, P("%s/long", root), 1, 13);
    kill(pid, SIGKILL);
    cr_assert_eq(wait_exit(pid), 128 + SIGKILL);
    const int64_t k = checkpoint_step(P("%s/checkpoints/last.safetensors", dir));
    sleep(1);   /* a new second: the resumed file's own name (a same-second one would get ".1") */
    result r = RUNEXP("resume", "--resume", dir);
    RUN_OK(r);

    char files[4][256];
    cr_assert_eq(list_event_files(dir, files, 4), 2, "one events file per process");
    /* the killed process has most often logged rows past its checkpoint, which the purge drops */
    events all = {0};
    read_events(P("%s/%s", dir, files[0]), &all);
    const int second = all.n;
    read_events(P("%s/%s", dir, files[1]), &all);
    cr_assert_str_eq(all.ev[second]->file_version, "brain.Event:2");
    int starts = 0;
    for (int i = second; i < all.n; i++)
        if (all.ev[i]->what_case == TENSORBOARD__EVENT__WHAT_SESSION_LOG) {
            cr_assert_eq(all.ev[i]->session_log->status, TENSORBOARD__SESSION_LOG__SESSION_STATUS__START);
            cr_assert_eq(all.ev[i]->step, k + 1, "START at the step after the checkpoint");
            starts++;
        }
    cr_assert_eq(starts, 1);
    /* what TensorBoard shows: steps 1..100 once each, as metrics.jsonl after its cut-back */
    int64_t steps[512];
    const int n = loss_steps_after_purge(&all, steps, 512);
    cr_assert_eq(n, 100);
    for (int i = 0; i < n; i++) cr_assert_eq(steps[i], i + 1, "train/loss %d is at step %lld", i, (long long)steps[i]);
    cr_assert_eq(count_lines(P("%s/metrics.jsonl", dir)), 100);
    free_events(&all);
}
