/* webdataset: tar shards written here with libarchive, images compressed by TurboJPEG.
 * References:
 *   - Python braceexpand's expansions (the examples of its documentation, and its rule for
 *     zero padding) for shard patterns;
 *   - webdataset's grouping (base_plus_ext: key = path up to the first dot of the file name;
 *     consecutive members with one key form a sample; extensions in lower case);
 *   - the imagefolder data set of the same images in the same order: identical rx_dataset
 *     (n, shape, labels, every pixel byte), and end to end, identical training losses and
 *     weights from build/runexp on a 256x256 JPEG folder and on 4 shards of it. */
#include "registry/components.h"
#include "runexp_harness.h"
#include "image_fixture.h"

#include "core/params.h"
#include "data/braceexpand.h"
#include "data/dataset.h"
#include "io/png.h"

TestSuite(webdataset, .init = setup, .fini = teardown, .timeout = 120);

// ---- brace patterns --------------------------------------------------------------------------

static void expect_expansion(const char *pattern, const char *want) {   // want: names joined by spaces
    char **list = NULL;
    int n = 0;
    ASSERT_OK(rx_brace_expand(pattern, &list, &n));
    char got[1024] = "";
    for (int i = 0; i < n; i++) {
        if (i) strcat(got, " ");
        cr_assert_lt(strlen(got) + strlen(list[i]), sizeof got - 2);
        strcat(got, list[i]);
    }
    cr_expect_str_eq(got, want, "'%s'", pattern);
    rx_brace_free(list, n);
}

Test(webdataset, brace_patterns_expand_as_braceexpand) {
    expect_expansion("train-{000000..000003}.tar", "train-000000.tar train-000001.tar train-000002.tar train-000003.tar");
    expect_expansion("{08..11}", "08 09 10 11");
    expect_expansion("{1..3}", "1 2 3");
    expect_expansion("{9..7}", "9 8 7");
    expect_expansion("{0..10..5}", "0 5 10");
    expect_expansion("{-01..1}", "-01 000 001");
    expect_expansion("{a,b}-{1..2}", "a-1 a-2 b-1 b-2");
    expect_expansion("x{a,b{1,2}}y", "xay xb1y xb2y");
    expect_expansion("{x}{}-{,z}", "{x}{}- {x}{}-z");
    expect_expansion("plain.tar", "plain.tar");
    expect_expansion("{1..2", "{1..2");
    char **list = NULL;
    int n = 0;
    cr_expect_eq(rx_brace_expand("s-{1..5..0}", &list, &n), RX_ERR_ARG);
    cr_expect(strstr(rx_last_error(), "step 0"), "%s", rx_last_error());
    cr_expect_eq(rx_brace_expand("{0..999}{0..9999}", &list, &n), RX_ERR_ARG);   // 10^7 names
    rx_brace_free(list, n);
}

// ---- shards --------------------------------------------------------------------------------

static fx_bytes text_bytes(const char *s) {
    fx_bytes b = {(uint8_t *)strdup(s), strlen(s)};
    cr_assert_not_null(b.data);
    return b;
}
static fx_bytes file_bytes(const char *path) {
    long n = 0;
    fx_bytes b = {rx_test_read_file(path, &n), 0};
    cr_assert_not_null(b.data, "%s", path);
    b.len = (size_t)n;
    return b;
}
static void free_bytes(fx_bytes *b, int n) { for (int i = 0; i < n; i++) free(b[i].data); }

// The webdataset component with urls (YAML list text), size and channels.
static rx_status load_wds(const char *urls, const char *size, const char *split, rx_dataset **d) {
    rx_params *p = NULL;
    ASSERT_OK(rx_params_from_defaults("dataset/webdataset", rx_comp_dataset_webdataset.params, &p));
    if (urls) ASSERT_OK(rx_params_set(p, "urls", urls));
    ASSERT_OK(rx_params_set(p, "size", size));
    rx_status st = rx_dataset_load(&rx_comp_dataset_webdataset, p, split, d);
    rx_params_free(p);
    return st;
}
static rx_status load_folder(const char *path, const char *size, rx_dataset **d) {
    rx_params *p = NULL;
    ASSERT_OK(rx_params_from_defaults("dataset/imagefolder", rx_comp_dataset_imagefolder.params, &p));
    ASSERT_OK(rx_params_set(p, "path", P("\"%s\"", path)));
    ASSERT_OK(rx_params_set(p, "size", size));
    rx_status st = rx_dataset_load(&rx_comp_dataset_imagefolder, p, "train", d);
    rx_params_free(p);
    return st;
}

static void assert_same_dataset(const rx_dataset *a, const rx_dataset *b) {
    cr_assert(a->n == b->n && a->channels == b->channels && a->height == b->height && a->width == b->width,
              "shape %d x %dx%dx%d vs %d x %dx%dx%d", a->n, a->channels, a->height, a->width, b->n, b->channels,
              b->height, b->width);
    cr_assert_eq(a->num_classes, b->num_classes);
    for (int i = 0; i < a->n; i++) cr_assert_eq(a->labels[i], b->labels[i], "label %d", i);
    cr_assert_eq(memcmp(a->pixels, b->pixels, (size_t)a->n * a->channels * a->height * a->width), 0, "pixels differ");
}

/* An imagefolder of n_per_class images in each of two classes at w x h (JPEG, every third
 * one PNG when with_png), and the same images as n_shards shards in the same order
 * (classes sorted, files sorted), each sample's .cls written before or after its image. */
static void write_folder_and_shards(const char *dir, const char *shard_dir, int w, int h, int n_per_class,
                                    int n_shards, int with_png) {
    const char *classes[2] = {"cat", "dog"};
    ASSERT_OK(rx_fs_mkdir_p(shard_dir));
    const int n = 2 * n_per_class, per_shard = (n + n_shards - 1) / n_shards;
    const char *names[64];
    fx_bytes bytes[64];
    int m = 0, shard = 0;
    for (int i = 0; i < n; i++) {
        const int k = i / n_per_class, png = with_png && i % 3 == 2;
        ASSERT_OK(rx_fs_mkdir_p(P("%s/%s", dir, classes[k])));
        const char *file = own(strdup(P("%s/%s/img%02d.%s", dir, classes[k], i, png ? "png" : "jpg")));
        uint8_t *rgb = fx_smooth_rgb(w, h, i);
        if (png) {
            uint8_t *planar = malloc((size_t)w * h * 3);
            for (int p = 0; p < w * h; p++)
                for (int c = 0; c < 3; c++) planar[c * w * h + p] = rgb[p * 3 + c];
            ASSERT_OK(rx_png_write_u8(file, planar, 3, h, w));
            free(planar);
        } else {
            fx_bytes j = fx_jpeg(rgb, w, h, 3, 85);
            fx_write(file, j.data, j.len);
            free(j.data);
        }
        free(rgb);
        cr_assert_lt(m + 2, 64);
        const int cls_first = i % 2;
        const char *img_name = own(strdup(P("s%06d.%s", i, png ? "png" : "jpg")));
        const char *cls_name = own(strdup(P("s%06d.cls", i)));
        names[m + !cls_first] = img_name, bytes[m + !cls_first] = file_bytes(file);
        names[m + cls_first] = cls_name, bytes[m + cls_first] = text_bytes(P("%d", k));
        m += 2;
        if ((i + 1) % per_shard == 0 || i == n - 1) {
            fx_write_tar(P("%s/train-%06d.tar", shard_dir, shard++), names, bytes, m);
            free_bytes(bytes, m);
            m = 0;
        }
    }
}

Test(webdataset, same_images_as_imagefolder_give_the_same_dataset) {
    const char *dir = own(strdup(T("folder"))), *shards = own(strdup(T("shards")));
    write_folder_and_shards(dir, shards, 20, 14, 4, 3, 1);
    rx_dataset *a = NULL, *b = NULL;
    ASSERT_OK(load_folder(dir, "8", &a));
    ASSERT_OK(load_wds(P("[\"%s/train-{000000..000002}.tar\"]", shards), "8", "train", &b));
    cr_assert_eq(a->n, 8);
    assert_same_dataset(a, b);
    cr_expect_str_eq(b->class_names[1], "1");
    rx_dataset_free(b);
    // size 0 keeps the images' own size; a list of shards instead of a pattern
    ASSERT_OK(load_wds(P("[\"%s/train-000000.tar\", \"%s/train-00000{1,2}.tar\"]", shards, shards), "0", "test", &b));
    cr_assert(b->height == 14 && b->width == 20);
    rx_dataset_free(b);
    rx_dataset_free(a);
}

// Keys with folders and several dots, upper-case extensions, members that are no sample's.
Test(webdataset, groups_members_by_key_as_webdataset) {
    uint8_t *rgb = fx_smooth_rgb(8, 6, 1);
    fx_bytes j = fx_jpeg(rgb, 8, 6, 3, 90);
    const char *names[] = {"README", "d/a.jpg", "d/a.seg.png", "d/a.cls", "d/a.json", "d/b.CLS", "d/b.JPG"};
    fx_bytes bytes[7] = {text_bytes("no dot: skipped"), j, text_bytes("not an image: extension seg.png"),
                         text_bytes(" 3\n"), text_bytes("{}"), text_bytes("1"), j};
    fx_write_tar(T("s.tar"), names, bytes, 7);
    rx_dataset *d = NULL;
    ASSERT_OK(load_wds(P("[\"%s\"]", T("s.tar")), "0", "train", &d));
    cr_assert_eq(d->n, 2);
    cr_expect(d->labels[0] == 3 && d->labels[1] == 1 && d->num_classes == 4);
    cr_expect_eq(memcmp(d->pixels, d->pixels + 3 * 6 * 8, 3 * 6 * 8), 0);   // the same JPEG twice
    rx_dataset_free(d);
    free(rgb), free(j.data);
    for (int i = 0; i < 7; i++) if (bytes[i].data != j.data) free(bytes[i].data);
}

// Each bad shard names itself and the sample's key.
Test(webdataset, bad_samples_name_shard_and_key) {
    uint8_t *rgb = fx_smooth_rgb(8, 6, 1);
    fx_bytes j = fx_jpeg(rgb, 8, 6, 3, 90);
    fx_bytes cut = {j.data, j.len / 2};
    struct { const char *names[3]; fx_bytes bytes[3]; int n; const char *want; } cases[] = {
        {{"k1.jpg", "k1.cls", "k2.cls"}, {j, text_bytes("0"), text_bytes("1")}, 3, "sample 'k2' has no image"},
        {{"k1.jpg", "k1.png", "k1.cls"}, {j, j, text_bytes("0")}, 3, "sample 'k1' has two image"},
        {{"k1.jpg", "k1.cls"}, {j, text_bytes("cat")}, 2, "sample 'k1': .cls 'cat' is not a class number"},
        {{"k1.jpg", "k1.cls", "k2.jpg"}, {j, text_bytes("0"), j}, 3, "sample 'k2' has no .cls label"},
        {{"k1.jpg"}, {cut}, 1, ".tar:k1.jpg: not a readable JPEG"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *shard = own(strdup(T("bad%zu.tar", c)));
        fx_write_tar(shard, cases[c].names, cases[c].bytes, cases[c].n);
        rx_dataset *d = NULL;
        cr_expect_eq(load_wds(P("[\"%s\"]", shard), "0", "train", &d), RX_ERR_FORMAT, "case %zu", c);
        cr_expect(strstr(rx_last_error(), shard) && strstr(rx_last_error(), cases[c].want), "case %zu: %s", c,
                  rx_last_error());
        cr_expect_null(d);
        for (int i = 0; i < cases[c].n; i++)
            if (cases[c].bytes[i].data != j.data) free(cases[c].bytes[i].data);
    }
    free(rgb), free(j.data);
}

Test(webdataset, missing_shards_urls_and_config_errors) {
    rx_dataset *d = NULL;
    cr_expect_eq(load_wds(P("[\"%s/none-{0..1}.tar\"]", tmpdir), "0", "train", &d), RX_ERR_IO);
    cr_expect(strstr(rx_last_error(), "none-0.tar") && strstr(rx_last_error(), "not found"), "%s", rx_last_error());
    cr_expect_eq(load_wds("[\"https://example.com/a.tar\"]", "0", "train", &d), RX_ERR_CONFIG);
    cr_expect(strstr(rx_last_error(), "only local tar files"), "%s", rx_last_error());
    cr_expect_eq(load_wds(NULL, "0", "train", &d), RX_ERR_CONFIG);
    cr_expect(strstr(rx_last_error(), "urls"), "%s", rx_last_error());
    fx_write(T("junk.tar"), "this is not a tar archive at all", 32);
    cr_expect_eq(load_wds(P("[\"%s\"]", T("junk.tar")), "0", "train", &d), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "junk.tar"), "%s", rx_last_error());
    cr_expect_null(d);
    // a shard cut inside its second member's data
    uint8_t *rgb = fx_smooth_rgb(64, 48, 1);
    fx_bytes j = fx_jpeg(rgb, 64, 48, 3, 90);
    const char *names[] = {"a.jpg", "b.jpg"};
    fx_bytes bytes[] = {j, j};
    fx_write_tar(T("cut.tar"), names, bytes, 2);
    fx_bytes whole = file_bytes(T("cut.tar"));
    fx_write(T("cut.tar"), whole.data, 512 + ((j.len + 511) / 512) * 512 + 512 + j.len / 2);
    cr_expect_eq(load_wds(P("[\"%s\"]", T("cut.tar")), "0", "train", &d), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "cut.tar") && strstr(rx_last_error(), "b.jpg"), "%s", rx_last_error());
    cr_expect_null(d);
    free(whole.data), free(j.data), free(rgb);
}

// ---- end to end -----------------------------------------------------------------------------

static const char *write_config(const char *name, const char *dataset_yaml) {
    const char *path = own(strdup(T("%s.yaml", name)));
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "experiment: %s\nseed: 3\nbackend: cpu\nthreads: 1\n%s\n"
            "transforms:\n  - {name: normalize}\n"
            "model:\n  name: unet\n  sample_size: 32\n  in_channels: 3\n  out_channels: 3\n  layers_per_block: 1\n"
            "  block_out_channels: [8, 16]\n  down_block_types: [DownBlock2D, DownBlock2D]\n"
            "  up_block_types: [UpBlock2D, UpBlock2D]\n  attention_head_dim: 8\n  norm_num_groups: 4\n  num_classes: 2\n"
            "schedule: {name: linear, num_train_timesteps: 50}\nobjective: {name: ddpm, prediction_type: epsilon}\n"
            "optimizer: {name: adamw, lr: 1.0e-3}\n"
            "train: {steps: 6, batch_size: 4, log_every: 1, checkpoint_every: 6, ema_decay: 0.9}\n"
            "sampler: {name: ddim, steps: 2}\nguidance: {name: cfg, scale: 2.0}\nsample: {num_images: 4, batch_size: 4}\n",
            name, dataset_yaml);
    cr_assert_eq(fclose(f), 0);
    return path;
}

/* 16 JPEGs of 256x256 in two classes, and the same as 4 shards: the smoke experiment at
 * size 32 trains to the same losses, step by step, and the same weights. */
Test(webdataset, jpeg_folder_and_its_shards_train_identically) {
    const char *dir = own(strdup(T("jpegs"))), *shards = own(strdup(T("shards")));
    write_folder_and_shards(dir, shards, 256, 256, 8, 4, 0);
    const char *cfg_a = write_config("folder", P("dataset:\n  name: imagefolder\n  path: \"%s\"\n  size: 32", dir));
    const char *cfg_b =
        write_config("shards", P("dataset:\n  name: webdataset\n  urls: [\"%s/train-{000000..000003}.tar\"]\n  size: 32", shards));
    result a = RUNEXP("folder", cfg_a, "--results", T("results_a"));
    RUN_OK(a);
    const char *run_a = own(strdup(a.last));
    result b = RUNEXP("shards", cfg_b, "--results", T("results_b"));
    RUN_OK(b);
    metrics_row ra[16], rb[16];
    const int na = read_metrics(P("%s/metrics.jsonl", run_a), ra, 16), nb = read_metrics(P("%s/metrics.jsonl", b.last), rb, 16);
    cr_assert(na == 6 && nb == 6, "%d and %d metric rows", na, nb);
    for (int i = 0; i < na; i++) {
        cr_assert_eq(ra[i].step, rb[i].step);
        cr_assert_eq(ra[i].loss, rb[i].loss, "step %lld: loss %.9g (folder) vs %.9g (shards)", (long long)ra[i].step,
                     ra[i].loss, rb[i].loss);
    }
    assert_same_tensors(P("%s/checkpoints/last.safetensors", run_a), P("%s/checkpoints/last.safetensors", b.last));
}
