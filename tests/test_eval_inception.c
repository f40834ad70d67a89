/* The `inception_fid` feature extractor (src/eval/inception.c).
 *
 * Reference: pytorch-fid's FID Inception-v3 in PyTorch (torchvision inception_v3 with pytorch-fid's
 * FIDInceptionA/C/E_1/E_2 blocks, F.interpolate to 299, 2x-1), run in float64 on random weights
 * that both sides generate from Philox (tests/fixtures/eval_inception.safetensors, written by
 * tests/fixtures/gen_inception.py; the weight formula is in its docstring). The test writes those
 * weights under pytorch-fid's state-dict names into a temporary safetensors file, so the real
 * loading path (key checks, BatchNorm folding) is what runs. Resize: F.interpolate(bilinear,
 * align_corners=False) on small maps from the same fixture. Metric naming: eval/metric.h's rule. */
#include "registry/components.h"
#include "testutil.h"

#include <time.h>
#include <unistd.h>

#include "core/philox.h"
#include "eval/features.h"
#include "eval/inception.h"
#include "eval/metric.h"
#include "io/safetensors.h"

#define FIXTURE "tests/fixtures/eval_inception.safetensors"
#define SEED 1234
#define N_IMG 2
#define IMG_C 3
#define IMG_H 64
#define IMG_W 48
#define FEAT RX_INCEPTION_FEAT_DIM

// ---------------------------------------------------------------------------
// the fixture

typedef struct sd_entry {      /* one state-dict entry as PyTorch lists it */
    char name[96];
    int is_f32;                /* else int64 (num_batches_tracked) */
    int ndim;
    int64_t shape[4];
    int64_t numel;
} sd_entry;

static rx_st_file *open_fixture(void) {
    rx_st_file *f = NULL;
    cr_assert_eq(rx_st_open(FIXTURE, &f), RX_OK, "%s (run python3 tests/fixtures/gen_inception.py)", rx_last_error());
    return f;
}

/* metadata "state_dict": one line "<name> <F32|I64> <d0,d1,...>" per entry, in state-dict order */
static int read_state_dict(const rx_st_file *f, sd_entry **out) {
    const char *text = rx_st_metadata(f, "state_dict");
    cr_assert(text, "fixture has no state_dict metadata");
    int n = 0, cap = 600;
    sd_entry *e = calloc(cap, sizeof *e);
    cr_assert(e);
    for (const char *line = text; *line; n++) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[256], dtype[8] = "", dims[128] = "";
        cr_assert(n < cap && len < sizeof buf);
        memcpy(buf, line, len);
        buf[len] = 0;
        cr_assert(sscanf(buf, "%95s %7s %127s", e[n].name, dtype, dims) >= 2, "bad line '%s'", buf);
        e[n].is_f32 = !strcmp(dtype, "F32");
        e[n].numel = 1;
        for (char *tok = strtok(dims, ","); tok; tok = strtok(NULL, ",")) {
            cr_assert(e[n].ndim < 4);
            e[n].shape[e[n].ndim] = atoll(tok);
            e[n].numel *= e[n].shape[e[n].ndim++];
        }
        line += len + (eol ? 1 : 0);
    }
    *out = e;
    return n;
}

static double *read_f64(const rx_st_file *f, const char *name, size_t n) {
    double *d = malloc(n * sizeof *d);
    cr_assert(d);
    cr_assert_eq(rx_st_read_raw(f, name, RX_ST_F64, d, n * sizeof *d), RX_OK, "%s", rx_last_error());
    return d;
}

static float *read_f32(const rx_st_file *f, const char *name, size_t n) {
    float *d = malloc(n * sizeof *d);
    cr_assert(d);
    cr_assert_eq(rx_st_read_f32(f, name, d, (int64_t)n), RX_OK, "%s", rx_last_error());
    return d;
}

// ---------------------------------------------------------------------------
// the random weights (gen_inception.py's formula): entry k = rule(Philox uniforms of stream k)

static const struct init_rule {
    const char *suffix;
    double add, mul;
    int absolute;              /* add + mul * |z| */
    int he;                    /* mul = sqrt(2 / fan_in) */
} init_rules[] = {
    {".conv.weight", 0.0, 0.0, 0, 1},
    {".bn.weight", 1.0, 0.1, 0, 0},
    {".bn.bias", 0.0, 0.1, 0, 0},
    {".bn.running_mean", 0.0, 0.1, 0, 0},
    {".bn.running_var", 0.5, 0.5, 1, 0},
    {"", 0.0, 0.01, 0, 0},     /* everything else (fc.*) */
};

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static void fill_random(const sd_entry *e, int k, float *dst) {
    rx_rng_uniform(SEED, RX_STREAM(RX_RNG_TEST, k), 0, dst, e->numel);
    const struct init_rule *r = init_rules;
    while (!ends_with(e->name, r->suffix)) r++;
    const double mul = r->he ? sqrt(2.0 / (double)(e->numel / e->shape[0])) : r->mul;
    for (int64_t j = 0; j < e->numel; j++) {
        const double u = sqrt(3.0) * (2.0 * (double)dst[j] - 1.0);   /* zero mean, unit variance */
        const double z = r->absolute ? fabs(u) : u;
        dst[j] = (float)(r->add + mul * z);
    }
}

typedef struct weights_file {
    char dir[64], path[96];
    float *data;               /* the floats the writer borrowed */
} weights_file;

/* Write the state dict to a temporary safetensors file: random weights, or (zeros) one shared
 * zero buffer. drop: a key left out; reshape: a key whose two last dims are swapped. */
static void write_weights(weights_file *wf, const sd_entry *e, int n, int zeros, const char *drop, const char *reshape) {
    snprintf(wf->dir, sizeof wf->dir, "/tmp/rx_test_inception_XXXXXX");
    cr_assert(mkdtemp(wf->dir), "mkdtemp");
    snprintf(wf->path, sizeof wf->path, "%s/weights.safetensors", wf->dir);
    int64_t total = 0, largest = 0;
    for (int k = 0; k < n; k++) {
        if (e[k].is_f32) total += e[k].numel;
        if (e[k].numel > largest) largest = e[k].numel;
    }
    wf->data = zeros ? calloc((size_t)largest, sizeof(float)) : malloc((size_t)total * sizeof(float));
    cr_assert(wf->data);
    static const int64_t zero_i64 = 0;
    rx_st_writer *w = NULL;
    cr_assert_eq(rx_st_writer_create(&w), RX_OK);
    float *p = wf->data;
    for (int k = 0; k < n; k++) {
        if (drop && !strcmp(e[k].name, drop)) continue;
        int64_t shape[4];
        memcpy(shape, e[k].shape, sizeof shape);
        if (reshape && !strcmp(e[k].name, reshape)) { shape[2] = e[k].shape[3]; shape[3] = e[k].shape[2]; }
        if (!e[k].is_f32) {
            cr_assert_eq(rx_st_writer_add(w, e[k].name, RX_ST_I64, e[k].ndim, shape, &zero_i64), RX_OK);
            continue;
        }
        if (!zeros) fill_random(&e[k], k, p);
        cr_assert_eq(rx_st_writer_add_f32(w, e[k].name, e[k].ndim, shape, p), RX_OK, "%s", rx_last_error());
        if (!zeros) p += e[k].numel;
    }
    cr_assert_eq(rx_st_writer_write(w, wf->path), RX_OK, "%s", rx_last_error());
    rx_st_writer_free(w);
}

static void remove_weights(weights_file *wf) {
    unlink(wf->path);
    rmdir(wf->dir);
    free(wf->data);
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double rel_err_f64(const float *a, const double *b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (d > num || d != d) num = d;
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return num / (den > 1e-30 ? den : 1e-30);
}

// ---------------------------------------------------------------------------

/* The generator the weights rely on: the first uniforms of stream 0 equal, bit for bit, those
 * of numpy's vectorised Philox in gen_inception.py. */
Test(eval_inception, philox_weights_match_the_generator_script) {
    rx_st_file *f = open_fixture();
    float *want = read_f32(f, "uniforms_k0", 8), got[8];
    rx_rng_uniform(SEED, RX_STREAM(RX_RNG_TEST, 0), 0, got, 8);
    cr_expect(memcmp(got, want, sizeof got) == 0, "Philox uniforms differ from gen_inception.py's: %.9g vs %.9g", got[0], want[0]);
    free(want);
    rx_st_close(f);
}

/* F.interpolate(mode='bilinear', align_corners=False) in float64 on a shrinking and an
 * enlarging case; and the identity at the same size (what pytorch-fid does to 299x299 input). */
Test(eval_inception, resize_matches_f_interpolate) {
    rx_st_file *f = open_fixture();
    for (int i = 0; i < 2; i++) {
        char in_name[32], out_name[32];
        snprintf(in_name, sizeof in_name, "resize/%d/in", i);
        snprintf(out_name, sizeof out_name, "resize/%d/out", i);
        const rx_st_tensor *ti = rx_st_find(f, in_name), *to = rx_st_find(f, out_name);
        cr_assert(ti && to && ti->ndim == 3 && to->ndim == 3);
        float *x = read_f32(f, in_name, ti->numel), *want = read_f32(f, out_name, to->numel);
        float *y = malloc(to->numel * sizeof *y);
        rx_inception_resize_bilinear(x, (int)ti->shape[0], (int)ti->shape[1], (int)ti->shape[2], y, (int)to->shape[1],
                                     (int)to->shape[2]);
        const double err = rx_rel_err(y, want, to->numel);
        cr_expect_lt(err, 1e-6, "case %d: [%lld,%lld] -> [%lld,%lld]: rel err %.3g", i, (long long)ti->shape[1],
                     (long long)ti->shape[2], (long long)to->shape[1], (long long)to->shape[2], err);
        if (i == 1) {   /* same size: exactly the input */
            float *z = malloc(ti->numel * sizeof *z);
            rx_inception_resize_bilinear(x, (int)ti->shape[0], (int)ti->shape[1], (int)ti->shape[2], z,
                                         (int)ti->shape[1], (int)ti->shape[2]);
            cr_expect(memcmp(z, x, ti->numel * sizeof *z) == 0, "resize to the same size is not the identity");
            free(z);
        }
        free(x); free(want); free(y);
    }
    rx_st_close(f);
}

/* The forward against pytorch-fid in float64 (features to 1e-4 relative; every stage mean too),
 * through the registered component; gray input = RGB with three equal channels; metric names. */
Test(eval_inception, forward_matches_pytorch_fid_fixture, .timeout = 120) {
    rx_st_file *f = open_fixture();
    sd_entry *sd;
    const int nsd = read_state_dict(f, &sd);
    cr_assert_eq(nsd, 566, "pytorch-fid's state dict has 94 x 6 BasicConv2d entries + fc.weight, fc.bias");
    float *images = read_f32(f, "images", (size_t)N_IMG * IMG_C * IMG_H * IMG_W);
    float *torch_f32 = read_f32(f, "features_f32", (size_t)N_IMG * FEAT);
    double *ref = read_f64(f, "features_f64", (size_t)N_IMG * FEAT);
    double *ref_taps = read_f64(f, "taps_f64", (size_t)N_IMG * RX_INCEPTION_TAP_COUNT);
    const char *tap_names = rx_st_metadata(f, "taps");
    cr_assert(tap_names && !strncmp(tap_names, "input,Conv2d_1a_3x3,", 20), "fixture taps: %s", tap_names);

    double t0 = seconds();
    weights_file wf;
    write_weights(&wf, sd, nsd, 0, NULL, NULL);
    const double t_write = seconds() - t0;

    // the component, as the runner builds it
    const rx_features_impl *impl = rx_comp_features_inception_fid.impl;
    rx_param_spec spec[2] = {rx_comp_features_inception_fid.params[0], {0}};
    cr_assert_str_eq(spec[0].name, "weights");
    spec[0].def = wf.path;
    rx_params *params = NULL;
    cr_assert_eq(rx_params_from_defaults("features/inception_fid", spec, &params), RX_OK, "%s", rx_last_error());
    rx_feature_extractor *fx = NULL;
    t0 = seconds();
    cr_assert_eq(impl->create(NULL, params, &fx), RX_OK, "%s", rx_last_error());
    const double t_load = seconds() - t0;
    cr_expect_str_eq(fx->name, "inception_fid");
    cr_expect_eq(fx->feat_dim, FEAT);
    cr_expect_eq(fx->num_classes, 0);
    cr_expect_eq(strlen(fx->weights_hash), 16);
    char h2[17];
    cr_assert_eq(rx_file_hash(wf.path, h2), RX_OK);
    cr_expect_str_eq(fx->weights_hash, h2, "weights_hash is the xxHash64 of the file");

    float *feat = malloc((size_t)N_IMG * FEAT * sizeof *feat);
    t0 = seconds();
    cr_assert_eq(impl->extract(NULL, fx, images, N_IMG, IMG_C, IMG_H, IMG_W, feat, NULL), RX_OK, "%s", rx_last_error());
    const double t_fwd = seconds() - t0;
    const double err = rel_err_f64(feat, ref, (long)N_IMG * FEAT), err_torch32 = rel_err_f64(torch_f32, ref, (long)N_IMG * FEAT);
    cr_expect_lt(err, 1e-4, "features vs pytorch-fid (float64): rel err %.3g (PyTorch float32: %.3g)", err, err_torch32);
    fprintf(stderr, "inception_fid: features rel err %.2e vs float64 PyTorch (PyTorch float32: %.2e); write weights %.2f s, "
            "load %.2f s, 2 images %.2f s = %.1f images/s at 299x299\n", err, err_torch32, t_write, t_load, t_fwd, N_IMG / t_fwd);

    // stage by stage, image 0 (a mismatch names the first stage that parts from PyTorch)
    rx_inception *net = NULL;
    cr_assert_eq(rx_inception_load(wf.path, &net), RX_OK, "%s", rx_last_error());
    float *x299 = malloc((size_t)3 * RX_INCEPTION_SIZE * RX_INCEPTION_SIZE * sizeof *x299), one[FEAT];
    rx_inception_resize_bilinear(images, IMG_C, IMG_H, IMG_W, x299, RX_INCEPTION_SIZE, RX_INCEPTION_SIZE);
    double taps[RX_INCEPTION_TAP_COUNT];
    cr_assert_eq(rx_inception_forward(net, x299, one, taps), RX_OK);
    for (int t = 0; t < RX_INCEPTION_TAP_COUNT; t++) {
        const double e = fabs(taps[t] - ref_taps[t]) / fmax(fabs(ref_taps[t]), 1e-3);
        cr_expect_lt(e, 1e-4, "stage %s: mean %.8g vs PyTorch %.8g", rx_inception_tap_names[t], taps[t], ref_taps[t]);
        if (e >= 1e-4) break;
    }
    cr_expect_lt(rx_rel_err(one, feat, FEAT), 1e-5, "one image alone vs in a batch");

    // gray [1,H,W] is RGB with three equal channels (pytorch-fid: PIL convert('RGB'))
    float *gray3 = malloc((size_t)3 * IMG_H * IMG_W * sizeof *gray3), fg[FEAT], f3[FEAT];
    for (int c = 0; c < 3; c++) memcpy(gray3 + (size_t)c * IMG_H * IMG_W, images, (size_t)IMG_H * IMG_W * sizeof *gray3);
    cr_assert_eq(rx_inception_features(net, images, 1, 1, IMG_H, IMG_W, fg), RX_OK);
    cr_assert_eq(rx_inception_features(net, gray3, 1, 3, IMG_H, IMG_W, f3), RX_OK);
    cr_expect_lt(rx_rel_err(fg, f3, FEAT), 1e-6, "gray vs replicated RGB");
    cr_expect_eq(rx_inception_features(net, images, 1, 2, IMG_H, IMG_W, fg), RX_ERR_SHAPE, "2 channels are refused");

    // random weights are not the official ones: the metrics are named after the extractor
    char name[64];
    cr_assert_eq(rx_metric_name("fd", fx->name, fx->weights_hash, name, sizeof name), RX_OK);
    cr_expect_str_eq(name, "fd_inception_fid");
    cr_assert_eq(rx_metric_name("kid", fx->name, fx->weights_hash, name, sizeof name), RX_OK);
    cr_expect_str_eq(name, "kid_inception_fid");

    rx_inception_free(net);
    impl->destroy(fx);
    rx_params_free(params);
    remove_weights(&wf);
    free(sd); free(images); free(torch_f32); free(ref); free(ref_taps); free(x299); free(gray3); free(feat);
    rx_st_close(f);
}

/* Only inception_fid with the official weights hash may say `fid` (eval/metric.h). */
Test(eval_inception, metric_is_fid_only_with_the_official_weights) {
    const char *official = RX_FID_INCEPTION_OFFICIAL_HASH;
    char name[64];
    cr_assert_eq(rx_metric_name("fd", "inception_fid", "0123456789abcdef", name, sizeof name), RX_OK);
    cr_expect_str_eq(name, "fd_inception_fid");
    cr_assert_eq(rx_metric_name("fd", "inception_fid", NULL, name, sizeof name), RX_OK);
    cr_expect_str_eq(name, "fd_inception_fid");
    cr_assert_eq(rx_metric_name("fd", "inception_fid", official, name, sizeof name), RX_OK);
    cr_expect_str_eq(name, official[0] ? "fid" : "fd_inception_fid", "official hash '%s'", official);
    cr_assert_eq(rx_metric_name("fd", "cifar10_classifier", official, name, sizeof name), RX_OK);
    cr_expect_str_eq(name, "fd_cifar10_classifier", "the official hash on another extractor is not FID");
}

/* A file with a key missing and a kernel transposed is refused, naming both; so is a safetensors
 * file of something else, and a missing file. */
Test(eval_inception, wrong_state_dict_is_refused_with_a_list) {
    rx_st_file *f = open_fixture();
    sd_entry *sd;
    const int nsd = read_state_dict(f, &sd);
    weights_file wf;
    write_weights(&wf, sd, nsd, 1, "Mixed_7c.branch_pool.bn.running_var", "Mixed_6b.branch7x7_2.conv.weight");
    rx_inception *net = NULL;
    cr_expect_eq(rx_inception_load(wf.path, &net), RX_ERR_FORMAT);
    cr_expect_null(net);
    const char *msg = rx_last_error();
    cr_expect(strstr(msg, "2 problems"), "%s", msg);
    cr_expect(strstr(msg, "missing Mixed_7c.branch_pool.bn.running_var"), "%s", msg);
    cr_expect(strstr(msg, "Mixed_6b.branch7x7_2.conv.weight is [128,128,7,1], expected [128,128,1,7]"), "%s", msg);
    remove_weights(&wf);

    // the same file, complete, loads (zeros are valid weights)
    write_weights(&wf, sd, nsd, 1, NULL, NULL);
    cr_expect_eq(rx_inception_load(wf.path, &net), RX_OK, "%s", rx_last_error());
    rx_inception_free(net);
    remove_weights(&wf);

    net = NULL;
    cr_expect_eq(rx_inception_load(FIXTURE, &net), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "470 problems") && strstr(rx_last_error(), "missing Conv2d_1a_3x3.conv.weight"),
              "%s", rx_last_error());
    cr_expect_neq(rx_inception_load("/nonexistent/pt_inception.safetensors", &net), RX_OK);
    cr_expect(strstr(rx_last_error(), "inception_fid"), "%s", rx_last_error());
    free(sd);
    rx_st_close(f);
}
