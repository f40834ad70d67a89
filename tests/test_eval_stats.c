/* Streaming feature statistics and their cache file.
 * References: numpy.mean / numpy.cov (ddof=1) in float64 of the same float32 features
 * (tests/fixtures/eval_fd_small.json, eval_fd_2048.json from gen_fd.py); the file
 * format's own contract (a round trip is bit-exact, any damage is refused). */
#include "testutil.h"
#include "eval_fixture.h"

#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

#include "eval/featstats.h"

/* max |a - b| / max |b|, float64 */
static double rel_err64(const double *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(a[i] - b[i]);
        if (e > num || e != e) num = e;
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return num / (den > 1e-300 ? den : 1e-300);
}

/* feed x [n, d] in uneven chunks 1, 7, 13, 1, 7, 13, ... */
static void add_uneven(rx_featstats *st, const float *x, int n, int d) {
    static const int chunks[] = {1, 7, 13};
    for (int i = 0, c = 0; i < n; c++) {
        int k = chunks[c % 3] < n - i ? chunks[c % 3] : n - i;
        cr_assert_eq(rx_featstats_add(st, x + (size_t)i * d, k), RX_OK, "%s", rx_last_error());
        i += k;
    }
}

Test(eval_stats, streaming_matches_numpy_small) {
    json_t *j = load_fixture("eval_fd_small.json");
    const int d = (int)json_integer_value(json_object_get(j, "d"));
    const char *key;
    json_t *set;
    json_object_foreach(json_object_get(j, "sets"), key, set) {
        size_t nf, nm, nc;
        const int n = (int)json_integer_value(json_object_get(set, "n"));
        float *x = json_floats(json_object_get(set, "features"), &nf);
        double *mean = json_doubles(json_object_get(set, "mean"), &nm);
        double *cov = json_doubles(json_object_get(set, "cov"), &nc);
        cr_assert_eq(nf, (size_t)n * d);
        rx_featstats st;
        cr_assert_eq(rx_featstats_init(&st, d), RX_OK);
        add_uneven(&st, x, n, d);
        cr_assert_eq(rx_featstats_finish(&st), RX_OK, "%s", rx_last_error());
        cr_assert_eq(st.n, n);
        // set "a" has a common offset of ~1000 with unit spread: the shift keeps 1e-12
        double em = rel_err64(st.mean, mean, d), ec = rel_err64(st.cov, cov, (size_t)d * d);
        cr_expect_lt(em, 1e-13, "set %s: mean rel err %.3g", key, em);
        cr_expect_lt(ec, 1e-12, "set %s: cov rel err %.3g", key, ec);
        cr_assert_eq(rx_featstats_finish(&st), RX_OK, "finish is idempotent");
        rx_featstats_free(&st);
        free(x); free(mean); free(cov);
    }
    json_decref(j);
}

Test(eval_stats, streaming_matches_numpy_2048) {
    // X1 = Z1 F / 16 + 3 (exact in float32), n = 100 < d = 2048, fed in chunks of 1, 7, 13
    json_t *j = load_fixture("eval_fd_2048.json");
    const int d = (int)json_integer_value(json_object_get(j, "d"));
    const int r = (int)json_integer_value(json_object_get(j, "r"));
    const int n = (int)json_integer_value(json_object_get(j, "n1"));
    size_t k;
    double *F = json_doubles(json_object_get(j, "F"), &k);
    double *Z = json_doubles(json_object_get(j, "Z1"), &k);
    float *x = malloc(sizeof(float) * n * d);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++) {
            double s = 0;
            for (int q = 0; q < r; q++) s += Z[i * r + q] * F[(size_t)q * d + c];
            x[(size_t)i * d + c] = (float)(s / 16.0 + 3.0);
        }
    rx_featstats st;
    cr_assert_eq(rx_featstats_init(&st, d), RX_OK);
    add_uneven(&st, x, n, d);
    cr_assert_eq(rx_featstats_finish(&st), RX_OK);
    double *mean = json_doubles(json_object_get(j, "mean_x1"), &k);
    double *diag = json_doubles(json_object_get(j, "cov_x1_diag"), &k);
    double *row0 = json_doubles(json_object_get(j, "cov_x1_row0"), &k);
    double *my_diag = malloc(sizeof(double) * d);
    for (int c = 0; c < d; c++) my_diag[c] = st.cov[(size_t)c * d + c];
    cr_expect_lt(rel_err64(st.mean, mean, d), 1e-13);
    cr_expect_lt(rel_err64(my_diag, diag, d), 1e-12);
    cr_expect_lt(rel_err64(st.cov, row0, d), 1e-12);
    for (int c = 0; c < d; c++) cr_assert_eq(st.cov[(size_t)c * d], st.cov[c], "covariance is symmetric");
    rx_featstats_free(&st);
    free(F); free(Z); free(x); free(mean); free(diag); free(row0); free(my_diag);
    json_decref(j);
}

Test(eval_stats, shift_avoids_cancellation) {
    // x = 1e6 + z, z in {-1, +1} alternating: exact var = n/(n-1). Naive Σx² - (Σx)²/n
    // in float64 loses ~12 of 16 digits here; with the shift the result is exact.
    enum { N = 1000, D = 3 };
    float *x = malloc(sizeof(float) * N * D);
    for (int i = 0; i < N; i++)
        for (int c = 0; c < D; c++) x[i * D + c] = 1e6f + ((i + c) % 2 ? 1.0f : -1.0f);
    rx_featstats st;
    cr_assert_eq(rx_featstats_init(&st, D), RX_OK);
    for (int i = 0; i < N; i += 100) cr_assert_eq(rx_featstats_add(&st, x + i * D, 100), RX_OK);
    cr_assert_eq(rx_featstats_finish(&st), RX_OK);
    const double var = (double)N / (N - 1);
    cr_expect_lt(fabs(st.cov[0] - var) / var, 1e-14, "var %.17g vs %.17g", st.cov[0], var);
    cr_expect_lt(fabs(st.cov[1] + var) / var, 1e-14, "anti-correlated neighbours: %.17g", st.cov[1]);
    cr_expect_eq(st.mean[0], 1e6);
    rx_featstats_free(&st);
    free(x);
}

Test(eval_stats, argument_errors) {
    rx_featstats st;
    cr_expect_eq(rx_featstats_init(&st, 0), RX_ERR_ARG);
    cr_assert_eq(rx_featstats_init(&st, 2), RX_OK);
    const float one[2] = {1, 2}, bad[2] = {1, NAN};
    cr_expect_eq(rx_featstats_add(&st, bad, 1), RX_ERR_NUMERIC);
    cr_assert_eq(rx_featstats_add(&st, one, 1), RX_OK);
    cr_expect_eq(rx_featstats_finish(&st), RX_ERR_ARG, "one row has no covariance");
    cr_assert_eq(rx_featstats_add(&st, one, 1), RX_OK);
    cr_assert_eq(rx_featstats_finish(&st), RX_OK);
    cr_expect_eq(st.cov[0], 0.0);
    cr_expect_eq(rx_featstats_add(&st, one, 1), RX_ERR_ARG, "no rows after finish");
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    cr_expect_eq(rx_featstats_set_meta(&st, longname, NULL, NULL, NULL, NULL), RX_ERR_ARG);
    rx_featstats_free(&st);
}

/* finished statistics of 20 rows of d = 5, with provenance */
static void make_stats(rx_featstats *st) {
    enum { N = 20, D = 5 };
    float x[N * D];
    for (int i = 0; i < N * D; i++) x[i] = (float)((i * 37) % 11) - 0.25f * (i % 7);
    cr_assert_eq(rx_featstats_init(st, D), RX_OK);
    cr_assert_eq(rx_featstats_add(st, x, N), RX_OK);
    cr_assert_eq(rx_featstats_finish(st), RX_OK);
    cr_assert_eq(rx_featstats_set_meta(st, "cifar10_classifier", "0123456789abcdef", "cifar10", "c10-9a8b", "train"), RX_OK);
}

static char *temp_path(void) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/rx_test_featstats_%d.bin", (int)getpid());
    return path;
}

Test(eval_stats, save_load_roundtrip) {
    rx_featstats a, b;
    make_stats(&a);
    const char *path = temp_path();
    cr_assert_eq(rx_featstats_save(&a, path), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_featstats_load(&b, path), RX_OK, "%s", rx_last_error());
    cr_expect_eq(b.d, a.d);
    cr_expect_eq(b.n, a.n);
    cr_expect(b.finished);
    cr_expect_str_eq(b.meta.extractor, "cifar10_classifier");
    cr_expect_str_eq(b.meta.extractor_hash, "0123456789abcdef");
    cr_expect_str_eq(b.meta.dataset, "cifar10");
    cr_expect_str_eq(b.meta.dataset_hash, "c10-9a8b");
    cr_expect_str_eq(b.meta.split, "train");
    cr_expect_eq(rx_featstats_check_meta(&b, &a.meta, a.n, a.d), RX_OK, "%s", rx_last_error());
    cr_expect_arr_eq(b.mean, a.mean, sizeof(double) * a.d, "bit-exact mean");
    cr_expect_arr_eq(b.cov, a.cov, sizeof(double) * a.d * a.d, "bit-exact covariance");
    const float row[5] = {0};
    cr_expect_eq(rx_featstats_add(&b, row, 1), RX_ERR_ARG, "loaded statistics are final");
    unlink(path);
    rx_featstats_free(&a);
    rx_featstats_free(&b);
}

static void write_bytes(const char *path, const unsigned char *buf, long n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
}

Test(eval_stats, corrupt_files_refused) {
    rx_featstats a, b;
    make_stats(&a);
    const char *path = temp_path();
    cr_assert_eq(rx_featstats_save(&a, path), RX_OK);
    long len;
    unsigned char *good = rx_test_read_file(path, &len);
    cr_assert(good);
    unsigned char *buf = malloc(len + 1);

    // one flipped bit anywhere: magic, version, d, n, meta, mean, covariance, checksum
    // (header: magic 8, version 4, d 4, n 8, meta 416 = 440 bytes)
    const long offsets[] = {0, 9, 12, 16, 30, 300, 440, 440 + 5 * 8 + 3, len - 1};
    for (size_t k = 0; k < sizeof offsets / sizeof *offsets; k++) {
        memcpy(buf, good, len);
        buf[offsets[k]] ^= 0x10;
        write_bytes(path, buf, len);
        cr_expect_eq(rx_featstats_load(&b, path), RX_ERR_FORMAT, "bit flip at byte %ld accepted", offsets[k]);
        cr_expect_eq(b.mean, NULL, "nothing left allocated on failure");
    }
    // truncated, extended, empty
    write_bytes(path, good, len - 8);
    cr_expect_eq(rx_featstats_load(&b, path), RX_ERR_FORMAT);
    memcpy(buf, good, len);
    buf[len] = 0;
    write_bytes(path, buf, len + 1);
    cr_expect_eq(rx_featstats_load(&b, path), RX_ERR_FORMAT);
    write_bytes(path, good, 0);
    cr_expect_eq(rx_featstats_load(&b, path), RX_ERR_FORMAT);
    // the message names the file
    cr_expect(strstr(rx_last_error(), path) != NULL, "message: %s", rx_last_error());
    unlink(path);
    cr_expect_eq(rx_featstats_load(&b, path), RX_ERR_IO, "missing file");
    // unfinished statistics are not saved
    rx_featstats u;
    cr_assert_eq(rx_featstats_init(&u, 3), RX_OK);
    cr_expect_eq(rx_featstats_save(&u, path), RX_ERR_ARG);
    cr_expect_eq(access(path, F_OK), -1, "no file written");
    rx_featstats_free(&u);
    free(buf);
    free(good);
    rx_featstats_free(&a);
}

Test(eval_stats, cache_name_and_stale_check) {
    rx_featstats a;
    make_stats(&a);
    char name[256], other[256];
    cr_assert_eq(rx_featstats_cache_name(&a.meta, a.n, name, sizeof name), RX_OK, "%s", rx_last_error());
    cr_expect(!strncmp(name, "cifar10-train-cifar10_classifier-n20-", 37), "name %s", name);
    cr_expect(strstr(name, ".rxstats") != NULL);
    // any provenance change gives another name (so a stale file is never picked up)
    rx_featstats_meta m = a.meta;
    strcpy(m.extractor_hash, "0123456789abcdee");
    cr_assert_eq(rx_featstats_cache_name(&m, a.n, other, sizeof other), RX_OK);
    cr_expect_str_neq(name, other, "extractor hash");
    m = a.meta;
    strcpy(m.dataset_hash, "c10-9a8c");
    cr_assert_eq(rx_featstats_cache_name(&m, a.n, other, sizeof other), RX_OK);
    cr_expect_str_neq(name, other, "dataset hash");
    cr_assert_eq(rx_featstats_cache_name(&a.meta, a.n + 1, other, sizeof other), RX_OK);
    cr_expect_str_neq(name, other, "n");
    // and the loaded file checks against what was asked for
    cr_expect_eq(rx_featstats_check_meta(&a, &m, a.n, a.d), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "dataset_hash") != NULL, "message: %s", rx_last_error());
    cr_expect_eq(rx_featstats_check_meta(&a, &a.meta, a.n + 1, a.d), RX_ERR_FORMAT);
    cr_expect_eq(rx_featstats_check_meta(&a, &a.meta, a.n, a.d + 1), RX_ERR_FORMAT);
    // unsafe characters never reach the file system; too small a buffer is an error
    m = a.meta;
    strcpy(m.dataset, "../x y");
    cr_assert_eq(rx_featstats_cache_name(&m, a.n, other, sizeof other), RX_OK);
    cr_expect(!strchr(other, '/') && !strchr(other, ' '), "name %s", other);
    cr_expect_eq(rx_featstats_cache_name(&a.meta, a.n, other, 16), RX_ERR_ARG);
    rx_featstats_free(&a);
}
