/* test_io_safetensors.c — safetensors reader/writer.
 *
 * References: the safetensors format spec (byte layout), files written by Python's
 * `safetensors` package (tests/fixtures/gen_safetensors.py: numpy + safetensors.numpy
 * for F32/F16/I64/I32/U8, torch + safetensors.torch for BF16), numpy's float32->float16
 * and torch's float32->bfloat16 rounding (stored in those fixtures).
 * Run from the repository root (fixture paths are relative to it). */
#include "testutil.h"
#include "io/fsutil.h"
#include "io/safetensors.h"

#include <dirent.h>
#include <jansson.h>
#include <stdint.h>

#define FIX "tests/fixtures/"

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rx_test_st_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}
static void remove_tmpdir(void) { rx_fs_remove_tree(tmpdir); }

TestSuite(safetensors, .init = make_tmpdir, .fini = remove_tmpdir);

static const char *tmp_path(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

#define ASSERT_OK(expr) do { rx_status s_ = (expr); cr_assert_eq(s_, RX_OK, "%s -> %s", #expr, rx_last_error()); } while (0)
#include "st_corrupt.h"   /* uses ASSERT_OK */

/* ---- the canonical file the C writer produces (gen_safetensors.py --check mirrors it) ---- */

static float conv_w[18], conv_b[2] = {0.5f, -0.5f};
static int64_t step_v = 12345;
static int32_t labels[4] = {0, 3, 9, 10};
static uint8_t mask[5] = {1, 0, 1, 1, 0};
static uint16_t half_v[3], bhalf_v[3];

static void write_canonical(const char *path) {
    for (int i = 0; i < 18; i++) conv_w[i] = (float)(i - 9) / 4.0f;
    const float hv[3] = {1.0f, -2.0f, 0.1f};
    for (int i = 0; i < 3; i++) { half_v[i] = rx_f32_to_f16(hv[i]); bhalf_v[i] = rx_f32_to_bf16(hv[i]); }
    rx_st_writer *w;
    ASSERT_OK(rx_st_writer_create(&w));
    /* Added in a mixed order on purpose: the writer lays out by dtype size. */
    ASSERT_OK(rx_st_writer_add(w, "mask", RX_ST_U8, 1, (int64_t[]){5}, mask));
    ASSERT_OK(rx_st_writer_add_f32(w, "conv.weight", 4, (int64_t[]){2, 1, 3, 3}, conv_w));
    ASSERT_OK(rx_st_writer_add(w, "half", RX_ST_F16, 1, (int64_t[]){3}, half_v));
    ASSERT_OK(rx_st_writer_add(w, "step", RX_ST_I64, 0, NULL, &step_v));
    ASSERT_OK(rx_st_writer_add_f32(w, "conv.bias", 1, (int64_t[]){2}, conv_b));
    ASSERT_OK(rx_st_writer_add(w, "labels", RX_ST_I32, 1, (int64_t[]){4}, labels));
    ASSERT_OK(rx_st_writer_add(w, "bhalf", RX_ST_BF16, 1, (int64_t[]){3}, bhalf_v));
    ASSERT_OK(rx_st_writer_add_f32(w, "empty", 1, (int64_t[]){0}, NULL));
    ASSERT_OK(rx_st_writer_set_metadata(w, "format", "pt"));
    ASSERT_OK(rx_st_writer_set_metadata(w, "config_hash", "00000000"));
    ASSERT_OK(rx_st_writer_set_metadata(w, "step", "12345"));
    ASSERT_OK(rx_st_writer_set_metadata(w, "config_hash", "3fa2c1d0"));   /* replaces */
    ASSERT_OK(rx_st_writer_write(w, path));
    rx_st_writer_free(w);
}

Test(safetensors, round_trip_names_shapes_dtypes_metadata_bytes) {
    const char *path = tmp_path("ckpt.safetensors");
    write_canonical(path);
    rx_st_file *f;
    ASSERT_OK(rx_st_open(path, &f));
    cr_assert_eq(rx_st_count(f), 8);

    struct { const char *name; rx_st_dtype dt; int ndim; int64_t shape[4]; const void *data; size_t nbytes; } want[] = {
        {"conv.weight", RX_ST_F32, 4, {2, 1, 3, 3}, conv_w, sizeof conv_w},
        {"conv.bias", RX_ST_F32, 1, {2}, conv_b, sizeof conv_b},
        {"step", RX_ST_I64, 0, {0}, &step_v, 8},
        {"labels", RX_ST_I32, 1, {4}, labels, sizeof labels},
        {"mask", RX_ST_U8, 1, {5}, mask, sizeof mask},
        {"half", RX_ST_F16, 1, {3}, half_v, sizeof half_v},
        {"bhalf", RX_ST_BF16, 1, {3}, bhalf_v, sizeof bhalf_v},
        {"empty", RX_ST_F32, 1, {0}, NULL, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const rx_st_tensor *t = rx_st_find(f, want[i].name);
        cr_assert_not_null(t, "%s missing", want[i].name);
        cr_assert_eq(t->dtype, want[i].dt, "%s dtype", want[i].name);
        cr_assert_eq(t->ndim, want[i].ndim, "%s ndim", want[i].name);
        for (int d = 0; d < t->ndim; d++) cr_assert_eq(t->shape[d], want[i].shape[d]);
        cr_assert_eq(t->end - t->begin, want[i].nbytes, "%s size", want[i].name);
        if (want[i].nbytes) cr_assert_eq(memcmp(rx_st_data(f, t), want[i].data, want[i].nbytes), 0, "%s bytes", want[i].name);
        ASSERT_OK(rx_st_check_shape(f, want[i].name, want[i].ndim, want[i].shape));
    }
    cr_assert_null(rx_st_find(f, "conv"));
    cr_assert_null(rx_st_find(f, "zzz"));

    float w[18];
    ASSERT_OK(rx_st_read_f32(f, "conv.weight", w, 18));
    cr_assert_eq(memcmp(w, conv_w, sizeof w), 0);
    float h[3];
    ASSERT_OK(rx_st_read_f32(f, "half", h, 3));          /* 0.1 -> f16 0x2E66 = 0.0999755859375 */
    cr_assert(h[0] == 1.0f && h[1] == -2.0f && h[2] == 0.0999755859375f, "%g %g %g", h[0], h[1], h[2]);
    ASSERT_OK(rx_st_read_f32(f, "bhalf", h, 3));         /* 0.1 -> bf16 0x3DCD = 0.10009765625 */
    cr_assert(h[0] == 1.0f && h[1] == -2.0f && h[2] == 0.10009765625f, "%g %g %g", h[0], h[1], h[2]);
    int64_t step;
    ASSERT_OK(rx_st_read_i64_scalar(f, "step", &step));
    cr_assert_eq(step, 12345);

    cr_assert_eq(rx_st_metadata_count(f), 3);
    cr_assert_str_eq(rx_st_metadata(f, "format"), "pt");
    cr_assert_str_eq(rx_st_metadata(f, "config_hash"), "3fa2c1d0");
    cr_assert_str_eq(rx_st_metadata(f, "step"), "12345");
    cr_assert_null(rx_st_metadata(f, "nope"));

    /* Errors from lookups name the file and the tensor. */
    cr_assert_eq(rx_st_read_f32(f, "labels", w, 4), RX_ERR_FORMAT);
    cr_assert(strstr(rx_last_error(), "not a floating-point type"), "%s", rx_last_error());
    cr_assert_eq(rx_st_read_f32(f, "conv.weight", w, 17), RX_ERR_SHAPE);
    cr_assert_eq(rx_st_check_shape(f, "conv.weight", 4, (int64_t[]){2, 1, 3, 4}), RX_ERR_SHAPE);
    cr_assert(strstr(rx_last_error(), "has shape [2, 1, 3, 3], expected [2, 1, 3, 4]"), "%s", rx_last_error());
    cr_assert_eq(rx_st_read_f32(f, "missing.weight", w, 1), RX_ERR_FORMAT);
    cr_assert(strstr(rx_last_error(), "ckpt.safetensors: no tensor 'missing.weight'"), "%s", rx_last_error());
    rx_st_close(f);
}

/* Reference: the safetensors spec. Parse the bytes ourselves with jansson. */
Test(safetensors, byte_layout_follows_the_spec) {
    const char *path = tmp_path("layout.safetensors");
    write_canonical(path);
    long len = 0;
    uint8_t *buf = rx_test_read_file(path, &len);
    cr_assert_not_null(buf);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];    /* little-endian, independent of the host */
    cr_assert_eq((8 + n) % 8, 0, "data section must start 8-byte aligned, header length %llu", (unsigned long long)n);
    cr_assert_leq(8 + n, (uint64_t)len);
    cr_assert_eq(buf[8], '{');
    /* The padding is spaces after the closing brace. */
    uint64_t k = 8 + n;
    while (buf[k - 1] == ' ') k--;
    cr_assert_eq(buf[k - 1], '}');
    cr_assert_lt(8 + n - k, 8);

    json_error_t err;
    json_t *root = json_loadb((const char *)buf + 8, n, JSON_REJECT_DUPLICATES, &err);
    cr_assert_not_null(root, "header JSON: %s", err.text);
    json_t *meta = json_object_get(root, "__metadata__");
    cr_assert(json_is_object(meta));
    cr_assert_str_eq(json_string_value(json_object_get(meta, "config_hash")), "3fa2c1d0");
    cr_assert_eq(json_object_size(root), 9);   /* 8 tensors + metadata */

    uint64_t data_len = (uint64_t)len - 8 - n, covered = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        const char *dt = json_string_value(json_object_get(v, "dtype"));
        json_t *off = json_object_get(v, "data_offsets");
        uint64_t b = (uint64_t)json_integer_value(json_array_get(off, 0));
        uint64_t e = (uint64_t)json_integer_value(json_array_get(off, 1));
        size_t esz = rx_st_dtype_size((rx_st_dtype)rx_st_dtype_from_name(dt));
        uint64_t numel = 1;
        json_t *sh = json_object_get(v, "shape");
        for (size_t d = 0; d < json_array_size(sh); d++) numel *= (uint64_t)json_integer_value(json_array_get(sh, d));
        cr_assert_eq(e - b, numel * esz, "%s", key);
        cr_assert_leq(e, data_len);
        cr_assert_eq((8 + n + b) % esz, 0, "%s not naturally aligned in the file", key);
        covered += e - b;
        if (!strcmp(key, "conv.bias")) {   /* the bytes at the offsets are the tensor */
            cr_assert_eq(memcmp(buf + 8 + n + b, conv_b, 8), 0);
        }
    }
    cr_assert_eq(covered, data_len, "tensors must tile the data section");
    json_decref(root);
    free(buf);
}

/* The committed tests/fixtures/st_from_c.safetensors is what this writer produces;
 * `gen_safetensors.py --check` proves Python's safetensors loads it. */
Test(safetensors, writer_output_matches_python_checked_fixture) {
    const char *update = getenv("RX_UPDATE_FIXTURES");
    const char *path = (update && *update == '1') ? FIX "st_from_c.safetensors" : tmp_path("c.safetensors");
    write_canonical(path);
    long n_fix, n_new;
    void *fix = rx_test_read_file(FIX "st_from_c.safetensors", &n_fix);
    void *now = rx_test_read_file(path, &n_new);
    cr_assert_not_null(fix, "missing fixture; run RX_UPDATE_FIXTURES=1 %s", "build/tests/test_io_safetensors");
    cr_assert_eq(n_fix, n_new);
    cr_assert_eq(memcmp(fix, now, (size_t)n_fix), 0, "writer output differs from the Python-checked fixture");
    free(fix);
    free(now);
}

static int64_t tensor_numel(const rx_st_file *f, const char *name) {
    const rx_st_tensor *t = rx_st_find(f, name);
    cr_assert_not_null(t, "%s missing", name);
    return t->numel;
}

/* Reference: file written by safetensors.numpy (gen_safetensors.py); the literal
 * values are the ones the script puts in. */
Test(safetensors, reads_file_written_by_python_numpy) {
    rx_st_file *f;
    ASSERT_OK(rx_st_open(FIX "st_numpy.safetensors", &f));
    cr_assert_eq(rx_st_count(f), 10);
    cr_assert_eq(rx_st_metadata_count(f), 1);
    cr_assert_str_eq(rx_st_metadata(f, "note"), "runexp fixture \xe2\x9c\x93 step=123");

    float ramp[6];
    ASSERT_OK(rx_st_check_shape(f, "f32_ramp", 2, (int64_t[]){2, 3}));
    ASSERT_OK(rx_st_read_f32(f, "f32_ramp", ramp, 6));
    for (int i = 0; i < 6; i++) cr_assert_eq(ramp[i], i * 0.5f - 1.0f);
    float sc;
    ASSERT_OK(rx_st_check_shape(f, "f32_scalar", 0, NULL));
    ASSERT_OK(rx_st_read_f32(f, "f32_scalar", &sc, 1));
    cr_assert_eq(sc, 3.25f);
    ASSERT_OK(rx_st_check_shape(f, "f32_empty", 2, (int64_t[]){0, 3}));
    cr_assert_eq(tensor_numel(f, "f32_empty"), 0);

    /* F16 specials decode exactly. */
    float sp[11];
    cr_assert_eq(rx_st_find(f, "f16_special")->dtype, RX_ST_F16);
    ASSERT_OK(rx_st_read_f32(f, "f16_special", sp, 11));
    const float want[10] = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 0x1p-14f, 0x1p-24f, 0x3p-24f, INFINITY, -INFINITY};
    for (int i = 0; i < 10; i++) cr_assert(sp[i] == want[i], "f16_special[%d] = %g, want %g", i, sp[i], want[i]);
    cr_assert(signbit(sp[1]) && !signbit(sp[0]), "-0 keeps its sign");
    cr_assert(isnan(sp[10]));

    int64_t i64[3];
    ASSERT_OK(rx_st_read_raw(f, "i64", RX_ST_I64, i64, sizeof i64));
    cr_assert(i64[0] == -1 && i64[1] == ((int64_t)1 << 40) && i64[2] == INT64_MAX);
    int32_t i32[4];
    ASSERT_OK(rx_st_check_shape(f, "i32", 2, (int64_t[]){2, 2}));
    ASSERT_OK(rx_st_read_raw(f, "i32", RX_ST_I32, i32, sizeof i32));
    cr_assert(i32[0] == -7 && i32[1] == 0 && i32[2] == 7 && i32[3] == INT32_MAX);
    uint8_t u8[5];
    ASSERT_OK(rx_st_read_raw(f, "u8", RX_ST_U8, u8, 5));
    cr_assert(u8[0] == 0 && u8[1] == 1 && u8[2] == 127 && u8[3] == 128 && u8[4] == 255);
    cr_assert_eq(rx_st_read_raw(f, "u8", RX_ST_I8, u8, 5), RX_ERR_FORMAT);

    /* Random F16: decode matches numpy's float16 -> float32 bit for bit. */
    int64_t n = tensor_numel(f, "f16_rand");
    float *dec = malloc(sizeof(float) * (size_t)n), *ref = malloc(sizeof(float) * (size_t)n);
    ASSERT_OK(rx_st_read_f32(f, "f16_rand", dec, n));
    ASSERT_OK(rx_st_read_f32(f, "f16_rand_as_f32", ref, n));
    cr_assert_eq(memcmp(dec, ref, sizeof(float) * (size_t)n), 0);
    free(dec);
    free(ref);
    rx_st_close(f);
}

/* Reference: numpy's float32 -> float16 (round to nearest even), from the fixture,
 * including ties, overflow to inf and underflow to subnormals/zero. */
Test(safetensors, f32_to_f16_rounding_matches_numpy) {
    rx_st_file *f;
    ASSERT_OK(rx_st_open(FIX "st_numpy.safetensors", &f));
    int64_t n = tensor_numel(f, "f16_rand");
    float *src = malloc(sizeof(float) * (size_t)n);
    uint16_t *bits = malloc(2 * (size_t)n);
    ASSERT_OK(rx_st_read_f32(f, "f16_rand_src", src, n));
    ASSERT_OK(rx_st_read_raw(f, "f16_rand", RX_ST_F16, bits, 2 * (size_t)n));
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(rx_f32_to_f16(src[i]), bits[i], "src[%lld] = %.9g: got 0x%04x, numpy 0x%04x", (long long)i,
                     src[i], rx_f32_to_f16(src[i]), bits[i]);
    free(src);
    free(bits);
    rx_st_close(f);
    /* Every non-NaN half survives f16 -> f32 -> f16 (the conversion is exact one way). */
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;
        cr_assert_eq(rx_f32_to_f16(rx_f16_to_f32((uint16_t)h)), h, "0x%04x", h);
    }
    cr_assert(isnan(rx_f16_to_f32(rx_f32_to_f16(NAN))));
}

/* Reference: file written by safetensors.torch; torch's float32 -> bfloat16 rounding. */
Test(safetensors, reads_bf16_file_written_by_python_torch) {
    rx_st_file *f;
    ASSERT_OK(rx_st_open(FIX "st_torch_bf16.safetensors", &f));
    cr_assert_str_eq(rx_st_metadata(f, "format"), "pt");
    cr_assert_eq(rx_st_find(f, "bf16_special")->dtype, RX_ST_BF16);
    float sp[10];
    ASSERT_OK(rx_st_read_f32(f, "bf16_special", sp, 10));
    const float want[9] = {0.0f, -0.0f, 1.0f, -2.5f, 0x1.fep127f, 0x1p-126f, 0x1p-133f, INFINITY, -INFINITY};
    for (int i = 0; i < 9; i++) cr_assert(sp[i] == want[i], "bf16_special[%d] = %g, want %g", i, sp[i], want[i]);
    cr_assert(signbit(sp[1]));
    cr_assert(isnan(sp[9]));

    int64_t n = tensor_numel(f, "bf16_rand");
    float *src = malloc(sizeof(float) * (size_t)n), *dec = malloc(sizeof(float) * (size_t)n),
          *ref = malloc(sizeof(float) * (size_t)n);
    uint16_t *bits = malloc(2 * (size_t)n);
    ASSERT_OK(rx_st_read_f32(f, "bf16_rand_src", src, n));
    ASSERT_OK(rx_st_read_raw(f, "bf16_rand", RX_ST_BF16, bits, 2 * (size_t)n));
    ASSERT_OK(rx_st_read_f32(f, "bf16_rand", dec, n));
    ASSERT_OK(rx_st_read_f32(f, "bf16_rand_as_f32", ref, n));
    cr_assert_eq(memcmp(dec, ref, sizeof(float) * (size_t)n), 0, "bf16 decode differs from torch");
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(rx_f32_to_bf16(src[i]), bits[i], "src[%lld] = %.9g: got 0x%04x, torch 0x%04x", (long long)i,
                     src[i], rx_f32_to_bf16(src[i]), bits[i]);
    free(src);
    free(dec);
    free(ref);
    free(bits);
    rx_st_close(f);
}

/* ---- corrupt files: each refused with RX_ERR_FORMAT, the file name and the problem ---- */

/* [8-byte LE length][header][data_len bytes] with the header length field given
 * explicitly (hlen_field < 0: the true length). */
static const char *write_raw(const char *name, const char *header, long long hlen_field, size_t data_len) {
    const char *path = tmp_path(name);
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    uint64_t n = hlen_field < 0 ? strlen(header) : (uint64_t)hlen_field;
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(n >> (8 * i));
    fwrite(le, 1, 8, fp);
    fwrite(header, 1, strlen(header), fp);
    for (size_t i = 0; i < data_len; i++) fputc(0, fp);
    fclose(fp);
    return path;
}

static void expect_refused(const char *path, const char *fragment) {
    rx_st_file *f = (rx_st_file *)0x1;
    rx_clear_error();
    rx_status s = rx_st_open(path, &f);
    cr_assert_eq(s, RX_ERR_FORMAT, "%s: got status %d (%s)", path, s, rx_last_error());
    cr_assert_null(f, "nothing is returned for a refused file");
    cr_assert(strstr(rx_last_error(), path), "message must name the file: %s", rx_last_error());
    cr_assert(strstr(rx_last_error(), fragment), "expected '%s' in: %s", fragment, rx_last_error());
}

Test(safetensors, refuses_truncated_file) {
    const char *path = tmp_path("trunc.safetensors");
    write_canonical(path);
    long len = 0;
    void *buf = rx_test_read_file(path, &len);
    ASSERT_OK(rx_fs_write_atomic(path, buf, (size_t)len - 10));    /* data cut short */
    expect_refused(path, "truncated");
    ASSERT_OK(rx_fs_write_atomic(path, buf, 40));                   /* cut inside the header */
    expect_refused(path, "header length");
    ASSERT_OK(rx_fs_write_atomic(path, buf, 5));                    /* shorter than the length field */
    expect_refused(path, "too short");
    free(buf);
}

Test(safetensors, refuses_header_length_too_big) {
    expect_refused(write_raw("big.safetensors", "{}", 1000, 0), "header length 1000 exceeds");
    expect_refused(write_raw("huge.safetensors", "{}", 1LL << 40, 0), "100 MB limit");
}

Test(safetensors, refuses_overlapping_offsets) {
    expect_refused(write_raw("overlap.safetensors",
                             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", -1, 12),
                   "tensor 'b' [4, 12) overlaps tensor 'a' [0, 8)");
}

Test(safetensors, refuses_bad_json) {
    expect_refused(write_raw("badjson.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],", -1, 4),
                   "invalid JSON header");
    expect_refused(write_raw("notobj.safetensors", "[1, 2]  ", -1, 0), "does not start with '{'");
}

Test(safetensors, refuses_bad_dtype) {
    expect_refused(write_raw("dtype.safetensors", "{\"a\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                             -1, 4), "tensor 'a': unknown dtype 'F12'");
}

Test(safetensors, refuses_other_inconsistencies) {
    expect_refused(write_raw("size.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
                             -1, 8), "hold 8 bytes but shape [3] of F32 needs 12");
    expect_refused(write_raw("dup.safetensors",
                             "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                             "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", -1, 2),
                   "duplicate key in header");
    expect_refused(write_raw("gap.safetensors",
                             "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                             "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}", -1, 3),
                   "gap of 1 unused bytes before tensor 'b'");
    expect_refused(write_raw("trail.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                             -1, 5), "4 trailing bytes");
    expect_refused(write_raw("meta.safetensors", "{\"__metadata__\":{\"step\":12}}", -1, 0),
                   "__metadata__['step'] is not a string");
    expect_refused(write_raw("neg.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}",
                             -1, 1), "shape[0] is not a non-negative integer");
    expect_refused(write_raw("field.safetensors",
                             "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", -1, 1),
                   "unexpected field 'x'");
    expect_refused(write_raw("nooff.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", -1, 1),
                   "missing field 'data_offsets'");
    /* A valid empty file: no tensors at all is fine. */
    rx_st_file *f;
    ASSERT_OK(rx_st_open(write_raw("empty.safetensors", "{}      ", -1, 0), &f));
    cr_assert_eq(rx_st_count(f), 0);
    rx_st_close(f);
}

Test(safetensors, missing_file_is_io_error) {
    rx_st_file *f;
    cr_assert_eq(rx_st_open(tmp_path("nope.safetensors"), &f), RX_ERR_IO);
    cr_assert(strstr(rx_last_error(), "nope.safetensors"));
}

Test(safetensors, writer_rejects_bad_input_and_leaves_no_temp_files) {
    rx_st_writer *w;
    ASSERT_OK(rx_st_writer_create(&w));
    float x[2] = {1, 2};
    ASSERT_OK(rx_st_writer_add_f32(w, "x", 1, (int64_t[]){2}, x));
    cr_assert_eq(rx_st_writer_add_f32(w, "x", 1, (int64_t[]){2}, x), RX_ERR_ARG);
    cr_assert(strstr(rx_last_error(), "duplicate tensor name 'x'"));
    cr_assert_eq(rx_st_writer_add_f32(w, "__metadata__", 1, (int64_t[]){2}, x), RX_ERR_ARG);
    cr_assert_eq(rx_st_writer_add_f32(w, "y", 1, (int64_t[]){-2}, x), RX_ERR_ARG);
    ASSERT_OK(rx_st_writer_write(w, tmp_path("w.safetensors")));
    ASSERT_OK(rx_st_writer_write(w, tmp_path("w.safetensors")));    /* overwrite in place */
    cr_assert_eq(rx_st_writer_write(w, tmp_path("no/such/dir/w.safetensors")), RX_ERR_IO);
    rx_st_writer_free(w);
    DIR *d = opendir(tmpdir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || !strcmp(e->d_name, ".."))) continue;
        cr_assert_str_eq(e->d_name, "w.safetensors", "leftover file %s", e->d_name);
        n++;
    }
    closedir(d);
    cr_assert_eq(n, 1);
}

/* ---- checksums (issue 19): one flipped byte in a tensor's data is refused, naming it ----
 * Reference: the XXH64 definition (xxHash spec, seed 0); the literal sums below are xxHash's
 * own values (XXH64 of "" is 0xef46db3751d8e999; of "abc" 0x44bc2cf5ad770999), the rest of
 * these tests assert refusal and acceptance, not values computed by the code under test. */

Test(safetensors, checksum_mismatch_refused_naming_the_tensor) {
    const char *good = strdup(tmp_path("good.safetensors"));   /* tmp_path's buffer is reused */
    write_canonical(good);
    const char *names[] = {"conv.weight", "conv.bias", "step", "labels", "mask", "half", "bhalf"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *bad = strdup(tmp_path("bad.safetensors"));
        rx_test_flip_tensor_byte(good, bad, names[i], 1, 0x01);      /* one bit, in the second byte */
        char want[128];
        snprintf(want, sizeof want, "tensor '%s': checksum mismatch (data corrupt)", names[i]);
        expect_refused(bad, want);
        free((char *)bad);
    }
    /* the sign bit of the last weight: 1.75 -> -1.75, a plausible value, still refused */
    const char *bad = strdup(tmp_path("sign.safetensors"));
    rx_test_flip_tensor_byte(good, bad, "conv.weight", 71, 0x80);
    expect_refused(bad, "tensor 'conv.weight': checksum mismatch (data corrupt)");
    free((char *)bad);
    /* the intact file still opens, and its checksum entries are not user metadata */
    rx_st_file *f;
    ASSERT_OK(rx_st_open(good, &f));
    cr_assert_eq(rx_st_metadata_count(f), 3);
    cr_assert_null(rx_st_metadata(f, RX_ST_SUM_PREFIX "conv.weight"));
    rx_st_close(f);
    free((char *)good);
}

/* The header a C-written file carries: one "runexp.xxh64.<name>" per tensor, 16 hex digits;
 * the known XXH64 values of "" and "abc" (seed 0) from xxHash. */
Test(safetensors, checksum_entries_are_xxh64_of_the_bytes) {
    const char *path = tmp_path("abc.safetensors");
    rx_st_writer *w;
    ASSERT_OK(rx_st_writer_create(&w));
    ASSERT_OK(rx_st_writer_add(w, "abc", RX_ST_U8, 1, (int64_t[]){3}, "abc"));
    ASSERT_OK(rx_st_writer_add(w, "none", RX_ST_U8, 1, (int64_t[]){0}, NULL));
    ASSERT_OK(rx_st_writer_write(w, path));
    rx_st_writer_free(w);
    long len = 0;
    uint8_t *buf = rx_test_read_file(path, &len);
    cr_assert_not_null(buf);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    json_error_t err;
    json_t *root = json_loadb((const char *)buf + 8, n, 0, &err);
    cr_assert_not_null(root, "%s", err.text);
    json_t *meta = json_object_get(root, "__metadata__");
    cr_assert_eq(json_object_size(meta), 2, "one entry per tensor, nothing else");
    cr_assert_str_eq(json_string_value(json_object_get(meta, "runexp.xxh64.abc")), "44bc2cf5ad770999");
    cr_assert_str_eq(json_string_value(json_object_get(meta, "runexp.xxh64.none")), "ef46db3751d8e999");
    json_decref(root);
    free(buf);
}

/* Documented behaviour: a file with no checksum entry at all (diffusers weights, Python's
 * writer) is not verified, so a flipped byte there loads and reads the flipped value. */
Test(safetensors, file_without_checksums_loads_even_when_flipped) {
    const char *bad = tmp_path("numpy_flipped.safetensors");
    rx_test_flip_tensor_byte(FIX "st_numpy.safetensors", bad, "f32_ramp", 3, 0x80);   /* sign of ramp[0] = -1.0 */
    rx_st_file *f;
    ASSERT_OK(rx_st_open(bad, &f));
    float ramp[6];
    ASSERT_OK(rx_st_read_f32(f, "f32_ramp", ramp, 6));
    cr_assert_eq(ramp[0], 1.0f, "the flipped sign is read as is");
    cr_assert_eq(ramp[1], -0.5f);
    rx_st_close(f);
}

/* A corrupt header that breaks the one-sum-per-tensor pairing is refused too (a flipped
 * byte in a name makes a tensor lose its sum and a sum lose its tensor). */
Test(safetensors, checksum_entries_must_pair_with_the_tensors) {
    const char *a = "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}";
    const char *b = "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}";
    char h[512];
    snprintf(h, sizeof h, "{\"__metadata__\":{\"runexp.xxh64.c\":\"0000000000000000\"},%s}", a);
    expect_refused(write_raw("orphan.safetensors", h, -1, 1), "checksum for tensor 'c', which the file does not hold");
    snprintf(h, sizeof h, "{\"__metadata__\":{\"runexp.xxh64.a\":\"0123\"},%s}", a);
    expect_refused(write_raw("short.safetensors", h, -1, 1), "tensor 'a': checksum '0123' is not 16 hex digits");
    snprintf(h, sizeof h, "{\"__metadata__\":{\"runexp.xxh64.a\":\"0123456789abcdeg\"},%s}", a);
    expect_refused(write_raw("nonhex.safetensors", h, -1, 1), "is not 16 hex digits");
    /* one byte 0x00: XXH64 is not 0, so a sum of 0 is a mismatch */
    snprintf(h, sizeof h, "{\"__metadata__\":{\"runexp.xxh64.a\":\"0000000000000000\"},%s}", a);
    expect_refused(write_raw("zero.safetensors", h, -1, 1), "tensor 'a': checksum mismatch (data corrupt)");
    /* a right sum for 'a' (written by the writer below) but none for 'b' */
    rx_st_writer *w;
    ASSERT_OK(rx_st_writer_create(&w));
    ASSERT_OK(rx_st_writer_add(w, "a", RX_ST_U8, 1, (int64_t[]){1}, "\0"));
    ASSERT_OK(rx_st_writer_write(w, tmp_path("one.safetensors")));
    rx_st_writer_free(w);
    rx_st_file *f;
    ASSERT_OK(rx_st_open(tmp_path("one.safetensors"), &f));
    rx_st_close(f);
    long len = 0;
    char *buf = (char *)rx_test_read_file(tmp_path("one.safetensors"), &len);
    cr_assert_not_null(buf);
    char *sum = strstr(buf + 8, "\"runexp.xxh64.a\":\"");   /* the header text ends at the data byte 0 */
    cr_assert_not_null(sum);
    snprintf(h, sizeof h, "{\"__metadata__\":{\"runexp.xxh64.a\":\"%.16s\"},%s,%s}", sum + 18, a, b);
    free(buf);
    expect_refused(write_raw("missing.safetensors", h, -1, 2),
                   "tensor 'b': no checksum, though the file has them for other tensors");
}

Test(safetensors, writer_reserves_the_checksum_prefix) {
    rx_st_writer *w;
    ASSERT_OK(rx_st_writer_create(&w));
    cr_assert_eq(rx_st_writer_set_metadata(w, "runexp.xxh64.x", "0000000000000000"), RX_ERR_ARG);
    cr_assert(strstr(rx_last_error(), "reserved"), "%s", rx_last_error());
    ASSERT_OK(rx_st_writer_set_metadata(w, "runexp.other", "fine"));
    rx_st_writer_free(w);
}
