/* CIFAR-10 loader against the published statistics of the data set (the numbers in
 * ../shared/data/README.md, which are CIFAR-10's well-known train mean/std), read from the
 * tar.gz and from an extracted copy. Never depends on record order (the shared copy is
 * shuffled). */
#include "registry/components.h"
#include "testutil.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/params.h"
#include "data/dataset.h"

static rx_params *cifar_params(const char *root) {
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults("dataset/cifar10", rx_comp_dataset_cifar10.params, &p), RX_OK, "%s",
                 rx_last_error());
    if (root) {
        char text[4200];
        snprintf(text, sizeof text, "\"%s\"", root);
        cr_assert_eq(rx_params_set(p, "root", text), RX_OK, "%s", rx_last_error());
    }
    return p;
}

static rx_dataset *load(const char *root, const char *split) {
    rx_params *p = cifar_params(root);
    rx_dataset *d = NULL;
    rx_status st = rx_dataset_load(&rx_comp_dataset_cifar10, p, split, &d);
    cr_assert_eq(st, RX_OK, "%s", rx_last_error());
    rx_params_free(p);
    return d;
}

// Per-channel mean and std over every pixel, scaled to [0,1] (population std), in doubles.
static void channel_stats(const rx_dataset *d, double mean[3], double sd[3]) {
    long hw = (long)d->height * d->width;
    for (int c = 0; c < 3; c++) {
        double s = 0, s2 = 0;
        for (long i = 0; i < d->n; i++) {
            const uint8_t *px = d->pixels + ((size_t)i * 3 + c) * hw;
            long a = 0, a2 = 0;
            for (long k = 0; k < hw; k++) a += px[k], a2 += px[k] * px[k];
            s += a, s2 += a2;
        }
        double cnt = (double)d->n * hw;
        mean[c] = s / cnt / 255.0;
        sd[c] = sqrt(s2 / cnt / (255.0 * 255.0) - mean[c] * mean[c]);
    }
}

static void check_train(const rx_dataset *d) {
    cr_assert_eq(d->n, 50000);
    cr_assert(d->channels == 3 && d->height == 32 && d->width == 32);
    cr_assert_eq(d->num_classes, 10);
    int count[10] = {0};
    for (int i = 0; i < d->n; i++) {
        cr_assert(d->labels[i] >= 0 && d->labels[i] < 10);
        count[d->labels[i]]++;
    }
    for (int k = 0; k < 10; k++) cr_expect_eq(count[k], 5000, "class %d: %d", k, count[k]);
    // reference: the published CIFAR-10 train statistics (README of ../shared/data)
    const double want_mean[3] = {0.4914, 0.4822, 0.4465}, want_sd[3] = {0.2470, 0.2435, 0.2616};
    double mean[3], sd[3];
    channel_stats(d, mean, sd);
    for (int c = 0; c < 3; c++) {
        cr_expect(fabs(mean[c] - want_mean[c]) < 1e-4, "mean[%d] = %.6f, want %.4f", c, mean[c], want_mean[c]);
        cr_expect(fabs(sd[c] - want_sd[c]) < 1e-4, "std[%d] = %.6f, want %.4f", c, sd[c], want_sd[c]);
    }
    cr_expect_str_eq(d->class_names[0], "airplane");
    cr_expect_str_eq(d->class_names[9], "truck");
}

Test(data_cifar10, train_from_archive) {
    rx_dataset *d = load(rx_test_data_src(), "train");
    check_train(d);
    rx_dataset_free(d);
}

Test(data_cifar10, test_split_from_archive) {
    rx_dataset *d = load(rx_test_data_src(), "test");
    cr_assert_eq(d->n, 10000);
    int count[10] = {0};
    for (int i = 0; i < d->n; i++) count[d->labels[i]]++;
    for (int k = 0; k < 10; k++) cr_expect_eq(count[k], 1000, "class %d: %d", k, count[k]);
    // reference: published test mean (README of ../shared/data)
    const double want_mean[3] = {0.4942, 0.4851, 0.4504};
    double mean[3], sd[3];
    channel_stats(d, mean, sd);
    for (int c = 0; c < 3; c++)
        cr_expect(fabs(mean[c] - want_mean[c]) < 1e-4, "mean[%d] = %.6f, want %.4f", c, mean[c], want_mean[c]);
    rx_dataset_free(d);
}

// The extracted folder gives the same numbers, and byte-identical arrays, as the archive.
Test(data_cifar10, train_from_extracted_folder_matches_archive) {
    char tmp[] = "/tmp/rx_cifar_XXXXXX";
    cr_assert(mkdtemp(tmp));
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "tar -xzf '%s/cifar10/cifar-10-binary.tar.gz' -C '%s'", rx_test_data_src(), tmp);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    rx_dataset *a = load(tmp, "train");  // found as <root>/cifar-10-batches-bin/
    check_train(a);
    rx_dataset *b = load(rx_test_data_src(), "train");
    cr_expect(memcmp(a->pixels, b->pixels, (size_t)a->n * 3072) == 0, "folder and archive pixels differ");
    cr_expect(memcmp(a->labels, b->labels, (size_t)a->n * sizeof *a->labels) == 0, "labels differ");
    rx_dataset_free(a);
    rx_dataset_free(b);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
}

Test(data_cifar10, root_from_environment) {
    cr_assert_eq(setenv("RUNEXP_DATA", rx_test_data_src(), 1), 0);
    rx_dataset *d = load(NULL, "test");
    cr_expect_eq(d->n, 10000);
    rx_dataset_free(d);
}

Test(data_cifar10, missing_lists_places_and_command) {
    rx_params *p = cifar_params("/nonexistent/rx_data");
    rx_dataset *d = NULL;
    cr_assert_eq(rx_dataset_load(&rx_comp_dataset_cifar10, p, "train", &d), RX_ERR_IO);
    const char *msg = rx_last_error();
    cr_expect(strstr(msg, "/nonexistent/rx_data/cifar10/cifar-10-binary.tar.gz"), "%s", msg);
    cr_expect(strstr(msg, "/nonexistent/rx_data/cifar-10-batches-bin"), "%s", msg);
    cr_expect(strstr(msg, "runexp data fetch cifar10"), "%s", msg);
    cr_expect(strstr(msg, "make data"), "%s", msg);
    cr_expect_null(d);
    rx_params_free(p);
}

// The first 1 MB of the archive: the stream ends inside data_batch_1.bin.
Test(data_cifar10, truncated_archive_is_format_error) {
    char tmp[] = "/tmp/rx_cifar_XXXXXX";
    cr_assert(mkdtemp(tmp));
    char src[4200], dir[4200], dst[4400];
    snprintf(src, sizeof src, "%s/cifar10/cifar-10-binary.tar.gz", rx_test_data_src());
    snprintf(dir, sizeof dir, "%s/cifar10", tmp);
    snprintf(dst, sizeof dst, "%s/cifar-10-binary.tar.gz", dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    cr_assert(in && out);
    static char buf[1 << 20];
    cr_assert_eq(fread(buf, 1, sizeof buf, in), sizeof buf);
    cr_assert_eq(fwrite(buf, 1, sizeof buf, out), sizeof buf);
    fclose(in);
    fclose(out);
    rx_params *p = cifar_params(tmp);
    rx_dataset *d = NULL;
    cr_assert_eq(rx_dataset_load(&rx_comp_dataset_cifar10, p, "train", &d), RX_ERR_FORMAT);
    const char *msg = rx_last_error();
    cr_expect(strstr(msg, "truncated"), "%s", msg);
    cr_expect(strstr(msg, "data_batch_1.bin"), "%s", msg);
    rx_params_free(p);
    unlink(dst);
    rmdir(dir);
    rmdir(tmp);
}

// A folder whose batch file has one record too few.
Test(data_cifar10, record_count_mismatch_is_format_error) {
    char tmp[] = "/tmp/rx_cifar_XXXXXX";
    cr_assert(mkdtemp(tmp));
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/cifar-10-batches-bin", tmp);
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    static uint8_t zeros[9999 * 3073];
    cr_assert_eq(fwrite(zeros, 1, sizeof zeros, f), sizeof zeros);
    fclose(f);
    rx_params *p = cifar_params(tmp);
    rx_dataset *d = NULL;
    cr_assert_eq(rx_dataset_load(&rx_comp_dataset_cifar10, p, "test", &d), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "record count mismatch"), "%s", rx_last_error());
    rx_params_free(p);
    unlink(path);
    rmdir(dir);
    rmdir(tmp);
}

Test(data_cifar10, bad_split_is_arg_error) {
    rx_params *p = cifar_params(rx_test_data_src());
    rx_dataset *d = NULL;
    cr_assert_eq(rx_dataset_load(&rx_comp_dataset_cifar10, p, "val", &d), RX_ERR_ARG);
    cr_expect(strstr(rx_last_error(), "val"));
    rx_params_free(p);
}

// --- integrity (issue 19) -----------------------------------------------------------------
// References: the gzip trailer (RFC 1952: CRC-32 and length), the batch size of the binary
// version (10,000 records of 3,073 bytes) and the published md5 of cifar-10-binary.tar.gz.

static void rm_rf(const char *dir) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

static rx_status try_load(const char *root, const char *split, rx_dataset **d) {
    rx_params *p = cifar_params(root);
    rx_status st = rx_dataset_load(&rx_comp_dataset_cifar10, p, split, d);
    rx_params_free(p);
    return st;
}

// Bit 0 of byte 160,000,000 of the shared archive lies in test_batch.bin's compressed data;
// the flipped stream still inflates to the whole tar (checked with Python's zlib), so only
// the gzip CRC-32 tells. Loading only the train split must still refuse it.
Test(data_cifar10, flipped_bit_in_test_batch_refused_when_loading_train) {
    char tmp[] = "/tmp/rx_cifar_XXXXXX", dir[4200], cmd[8800], path[4400];
    cr_assert(mkdtemp(tmp));
    snprintf(dir, sizeof dir, "%s/cifar10", tmp);
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(cmd, sizeof cmd, "cp '%s/cifar10/cifar-10-binary.tar.gz' '%s/'", rx_test_data_src(), dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(path, sizeof path, "%s/cifar-10-binary.tar.gz", dir);
    FILE *f = fopen(path, "r+b");
    cr_assert(f);
    cr_assert_eq(fseek(f, 160000000L, SEEK_SET), 0);
    int c = fgetc(f);
    cr_assert(c != EOF);
    cr_assert_eq(fseek(f, 160000000L, SEEK_SET), 0);
    fputc(c ^ 1, f);
    fclose(f);
    rx_dataset *d = NULL;
    cr_assert_eq(try_load(tmp, "train", &d), RX_ERR_FORMAT, "a corrupt archive was loaded");
    const char *msg = rx_last_error();
    cr_expect(strstr(msg, path) && strstr(msg, "gzip data corrupt (CRC mismatch)"), "%s", msg);
    cr_expect_null(d);
    rm_rf(tmp);
}

// The folder form with the five train batches intact in size (sparse zero files: label 0,
// black images) and test_batch.bin 730,000 bytes short: a run that only trains is refused,
// naming the file; at its exact size the train split loads; without it, too, it is refused.
Test(data_cifar10, every_batch_is_sized_whichever_split_is_loaded) {
    char tmp[] = "/tmp/rx_cifar_XXXXXX", dir[4200], path[4400];
    cr_assert(mkdtemp(tmp));
    snprintf(dir, sizeof dir, "%s/cifar-10-batches-bin", tmp);
    cr_assert_eq(mkdir(dir, 0755), 0);
    const char *names[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                            "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    for (int k = 0; k < 6; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        FILE *f = fopen(path, "wb");
        cr_assert(f);
        fclose(f);
        cr_assert_eq(truncate(path, k < 5 ? 30730000 : 30000000), 0);
    }
    rx_dataset *d = NULL;
    cr_assert_eq(try_load(tmp, "train", &d), RX_ERR_FORMAT, "a truncated test batch went unnoticed");
    const char *msg = rx_last_error();
    cr_expect(strstr(msg, path) && strstr(msg, "30,000,000 bytes, expected 30,730,000"), "%s", msg);
    cr_assert_eq(truncate(path, 30730000), 0);
    cr_assert_eq(try_load(tmp, "train", &d), RX_OK, "%s", rx_last_error());
    cr_expect(d->n == 50000 && d->labels[49999] == 0);
    rx_dataset_free(d);
    d = NULL;
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(try_load(tmp, "train", &d), RX_ERR_IO);
    cr_expect(strstr(rx_last_error(), "has no test_batch.bin"), "%s", rx_last_error());
    rm_rf(tmp);
}

// An archive of the published size (170,052,171 bytes) must have the published md5; this one
// is zeros (sparse), so the md5 refuses it before anything is decoded.
Test(data_cifar10, published_size_requires_published_md5) {
    char tmp[] = "/tmp/rx_cifar_XXXXXX", dir[4200], path[4400], cache[4200];
    cr_assert(mkdtemp(tmp));
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    cr_assert_eq(setenv("XDG_CACHE_HOME", cache, 1), 0);
    snprintf(dir, sizeof dir, "%s/cifar10", tmp);
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/cifar-10-binary.tar.gz", dir);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fclose(f);
    cr_assert_eq(truncate(path, 170052171), 0);
    rx_dataset *d = NULL;
    cr_assert_eq(try_load(tmp, "test", &d), RX_ERR_FORMAT);
    const char *msg = rx_last_error();
    cr_expect(strstr(msg, path) && strstr(msg, "md5 ") && strstr(msg, "expected c32a1d4ab5d03f1284b67883e8d87530"), "%s",
              msg);
    rm_rf(tmp);
}
