/* rx_data_fetch and MD5. References: RFC 1321's test suite; the uncompressed MNIST md5 in
 * ../shared/data/README.md; byte equality with the source for copies. The download path is
 * exercised offline through file:// URLs ($RUNEXP_DATA_MIRROR): the shared MNIST files are
 * re-compressed, so their md5 differs from the official one — a real checksum mismatch. */
#include "registry/components.h"
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/params.h"
#include "data/dataset.h"
#include "data/fetch.h"
#include "data/integrity.h"

// rx_md5_file of `n` bytes written to a temp file
static void md5_of_bytes(const void *data, size_t n, char out[33]) {
    char tmp[] = "/tmp/rx_md5_XXXXXX";
    int fd = mkstemp(tmp);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, data, n), (ssize_t)n);
    cr_assert_eq(close(fd), 0);
    cr_assert_eq(rx_md5_file(tmp, out), RX_OK, "%s", rx_last_error());
    unlink(tmp);
}

Test(data_fetch, md5_rfc1321_vectors) {
    const char *in[7] = {"", "a", "abc", "message digest", "abcdefghijklmnopqrstuvwxyz",
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                         "12345678901234567890123456789012345678901234567890123456789012345678901234567890"};
    const char *want[7] = {"d41d8cd98f00b204e9800998ecf8427e", "0cc175b9c0f1b6a831c399e269772661",
                           "900150983cd24fb0d6963f7d28e17f72", "f96b697d7cb7938d525a2f31aaf161d0",
                           "c3fcd3d76192e4007dfb496cca67e13b", "d174ab98d277d9f5a5611c2c9f419d9f",
                           "57edf4a22be3c955ac49da2e2107b67a"};
    for (int k = 0; k < 7; k++) {
        char h[33];
        md5_of_bytes(in[k], strlen(in[k]), h);
        cr_expect_str_eq(h, want[k], "md5(\"%s\")", in[k]);
    }
    char h[33];
    cr_expect_eq(rx_md5_file("/nonexistent/rx_md5", h), RX_ERR_IO);
}

// README of ../shared/data: uncompressed train labels md5 a25bea73... (the original MNIST file),
// 60008 bytes: a file spanning several of rx_md5_file's read chunks.
Test(data_fetch, md5_of_mnist_labels_matches_readme) {
    char path[4200];
    snprintf(path, sizeof path, "%s/mnist/train-labels-idx1-ubyte.gz", rx_test_data_src());
    gzFile f = gzopen(path, "rb");
    cr_assert(f, "%s", path);
    static uint8_t buf[60008 + 16];
    int n = gzread(f, buf, sizeof buf);
    gzclose(f);
    cr_assert_eq(n, 60008);
    char h[33];
    md5_of_bytes(buf, (size_t)n, h);
    cr_expect_str_eq(h, "a25bea736e30d166cdddb491f175f624");
}

static void rm_tree(const char *dir) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

static const char *mnist_files[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};

// Copy path: every file arrives byte-identical, the loader reads the result, a second fetch keeps them.
Test(data_fetch, copy_from_data_src) {
    char dest[] = "/tmp/rx_fetch_XXXXXX";
    cr_assert(mkdtemp(dest));
    cr_assert_eq(setenv("RUNEXP_DATA_SRC", rx_test_data_src(), 1), 0);
    cr_assert_eq(rx_data_fetch("mnist", dest), RX_OK, "%s", rx_last_error());
    for (int k = 0; k < 4; k++) {
        char a[4300], b[4300], ha[33], hb[33];
        snprintf(a, sizeof a, "%s/mnist/%s", rx_test_data_src(), mnist_files[k]);
        snprintf(b, sizeof b, "%s/mnist/%s", dest, mnist_files[k]);
        cr_assert_eq(rx_md5_file(a, ha), RX_OK);
        cr_assert_eq(rx_md5_file(b, hb), RX_OK, "%s", rx_last_error());
        cr_expect_str_eq(ha, hb, "%s", mnist_files[k]);
    }
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults("dataset/mnist", rx_comp_dataset_mnist.params, &p), RX_OK);
    char root[64];
    snprintf(root, sizeof root, "\"%s\"", dest);
    cr_assert_eq(rx_params_set(p, "root", root), RX_OK);
    rx_dataset *d = NULL;
    cr_assert_eq(rx_dataset_load(&rx_comp_dataset_mnist, p, "test", &d), RX_OK, "%s", rx_last_error());
    cr_expect(d->n == 10000 && d->labels[0] == 7);
    rx_dataset_free(d);
    rx_params_free(p);
    cr_expect_eq(rx_data_fetch("mnist", dest), RX_OK, "%s", rx_last_error());  // already there
    rm_tree(dest);
}

Test(data_fetch, fashion_mnist_from_debian_without_network) {
    char dest[] = "/tmp/rx_fetch_XXXXXX";
    cr_assert(mkdtemp(dest));
    cr_assert_eq(unsetenv("RUNEXP_DATA_SRC"), 0);
    cr_assert_eq(rx_data_fetch("fashion_mnist", dest), RX_OK, "%s", rx_last_error());
    char path[4300];
    snprintf(path, sizeof path, "%s/fashion_mnist/train-labels-idx1-ubyte.gz", dest);
    struct stat sb;
    cr_expect(stat(path, &sb) == 0 && sb.st_size > 1000, "%s", path);
    rm_tree(dest);
}

Test(data_fetch, errors) {
    char dest[] = "/tmp/rx_fetch_XXXXXX", empty[] = "/tmp/rx_fetch_src_XXXXXX";
    cr_assert(mkdtemp(dest) && mkdtemp(empty));
    cr_expect_eq(rx_data_fetch("imagenet", dest), RX_ERR_ARG);
    cr_expect(strstr(rx_last_error(), "cifar10, mnist, fashion_mnist"), "%s", rx_last_error());
    cr_assert_eq(setenv("RUNEXP_DATA_SRC", empty, 1), 0);
    cr_expect_eq(rx_data_fetch("cifar10", dest), RX_ERR_IO);
    cr_expect(strstr(rx_last_error(), "cifar-10-binary.tar.gz is not there"), "%s", rx_last_error());
    rm_tree(dest), rm_tree(empty);
}

// Download path through libcurl with file:// URLs: a missing file is an I/O error; a file
// whose md5 is not the official one is a checksum error and is not left behind.
Test(data_fetch, download_checks_md5) {
    char dest[] = "/tmp/rx_fetch_XXXXXX", mirror[] = "/tmp/rx_mirror_XXXXXX";
    cr_assert(mkdtemp(dest) && mkdtemp(mirror));
    cr_assert_eq(unsetenv("RUNEXP_DATA_SRC"), 0);
    char url[128];
    snprintf(url, sizeof url, "file://%s", mirror);
    cr_assert_eq(setenv("RUNEXP_DATA_MIRROR", url, 1), 0);
    cr_expect_eq(rx_data_fetch("mnist", dest), RX_ERR_IO);
    cr_expect(strstr(rx_last_error(), "download") && strstr(rx_last_error(), "RUNEXP_DATA_SRC"), "%s", rx_last_error());
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "cp '%s/mnist/%s' '%s/'", rx_test_data_src(), mnist_files[0], mirror);
    cr_assert_eq(system(cmd), 0);
    cr_expect_eq(rx_data_fetch("mnist", dest), RX_ERR_FORMAT);
    const char *msg = rx_last_error();
    cr_expect(strstr(msg, "checksum mismatch") && strstr(msg, "f68b3c2dcbeaaa9fbdd348bbdeb94873"), "%s", msg);
    char path[4300];
    snprintf(path, sizeof path, "%s/mnist/%s", dest, mnist_files[0]);
    cr_expect(access(path, F_OK) != 0, "a file that failed its checksum was kept");
    snprintf(path, sizeof path, "%s/mnist", dest);
    DIR *dir = opendir(path);
    cr_assert(dir, "%s", path);
    for (struct dirent *e; (e = readdir(dir));)
        cr_expect(!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."), "left behind: %s", e->d_name);
    closedir(dir);
    rm_tree(dest), rm_tree(mirror);
}

// --- md5 on open, cached (data/integrity.h) -------------------------------------------
// Reference: RFC 1321, md5("abc") = 900150983cd24fb0d6963f7d28e17f72.
#define MD5_ABC "900150983cd24fb0d6963f7d28e17f72"

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void set_mtime(const char *path, struct timespec t) {
    struct timespec ts[2] = {t, t};
    cr_assert_eq(utimensat(AT_FDCWD, path, ts, 0), 0, "%s", path);
}

// The cache's key is (path, size, mtime): a file rewritten with the same size and mtime is
// taken from the cache (which shows the md5 is not computed again); a new mtime recomputes it.
Test(data_fetch, verified_md5_is_cached_by_path_size_mtime) {
    char tmp[] = "/tmp/rx_md5c_XXXXXX", cache_home[4200], file[4200], cache[4300], real[PATH_MAX];
    cr_assert(mkdtemp(tmp));
    snprintf(cache_home, sizeof cache_home, "%s/cache", tmp);
    snprintf(file, sizeof file, "%s/f.bin", tmp);
    cr_assert_eq(setenv("XDG_CACHE_HOME", cache_home, 1), 0);
    cr_assert_eq(rx_data_md5_cache_path(cache, sizeof cache), RX_OK);
    cr_expect(strstr(cache, cache_home) == cache, "%s", cache);

    write_text(file, "abd");
    cr_expect_eq(rx_data_verify_md5(file, MD5_ABC), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), file) && strstr(rx_last_error(), "expected " MD5_ABC), "%s", rx_last_error());
    cr_expect(access(cache, F_OK) != 0, "a failed verification was cached");

    write_text(file, "abc");
    struct stat sb;
    cr_assert_eq(stat(file, &sb), 0);
    cr_assert_eq(rx_data_verify_md5(file, MD5_ABC), RX_OK, "%s", rx_last_error());
    long n = 0;
    char *text = rx_test_read_file(cache, &n);
    cr_assert(text, "no cache file %s", cache);
    cr_assert(realpath(file, real));
    char key[PATH_MAX + 100];
    snprintf(key, sizeof key, MD5_ABC "\t3\t%lld.%09ld\t%s\n", (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec, real);
    cr_expect_str_eq(text, key);
    free(text);

    write_text(file, "abd");   // same size; the old mtime put back
    set_mtime(file, sb.st_mtim);
    cr_expect_eq(rx_data_verify_md5(file, MD5_ABC), RX_OK, "the cache was not used: %s", rx_last_error());

    struct timespec later = sb.st_mtim;
    later.tv_sec += 1;
    set_mtime(file, later);
    cr_expect_eq(rx_data_verify_md5(file, MD5_ABC), RX_ERR_FORMAT, "a changed mtime must recompute the md5");

    // verified again under the new mtime: its line replaces the old one (one line per file)
    write_text(file, "abc");
    set_mtime(file, later);
    cr_assert_eq(rx_data_verify_md5(file, MD5_ABC), RX_OK, "%s", rx_last_error());
    text = rx_test_read_file(cache, &n);
    cr_assert(text);
    snprintf(key, sizeof key, MD5_ABC "\t3\t%lld.%09ld\t%s\n", (long long)later.tv_sec, (long)later.tv_nsec, real);
    cr_expect_str_eq(text, key);
    free(text);

    // a cache that cannot be written: verified each time, no error
    write_text(file, "abc");
    cr_assert_eq(setenv("XDG_CACHE_HOME", "/proc/rx_no_cache_here", 1), 0);
    cr_expect_eq(rx_data_verify_md5(file, MD5_ABC), RX_OK, "%s", rx_last_error());
    write_text(file, "abd");
    set_mtime(file, sb.st_mtim);
    cr_expect_eq(rx_data_verify_md5(file, MD5_ABC), RX_ERR_FORMAT);

    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
}

// rx_data_check_listed: the md5 is asked of a listed file only when it has the published size.
Test(data_fetch, listed_file_checked_at_published_size_only) {
    char tmp[] = "/tmp/rx_md5c_XXXXXX", file[4200], cache_home[4200];
    cr_assert(mkdtemp(tmp));
    snprintf(cache_home, sizeof cache_home, "%s/cache", tmp);
    cr_assert_eq(setenv("XDG_CACHE_HOME", cache_home, 1), 0);
    snprintf(file, sizeof file, "%s/f.bin", tmp);
    write_text(file, "abd");
    const rx_dataset_file three[] = {{"f.bin", NULL, MD5_ABC, 3}, {0}}, four[] = {{"f.bin", NULL, MD5_ABC, 4}, {0}},
                          other[] = {{"g.bin", NULL, MD5_ABC, 3}, {0}};
    cr_expect_eq(rx_data_check_listed(three, file), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "md5 "), "%s", rx_last_error());
    cr_expect_eq(rx_data_check_listed(four, file), RX_OK);
    cr_expect_eq(rx_data_check_listed(other, file), RX_OK);
    write_text(file, "abc");
    cr_expect_eq(rx_data_check_listed(three, file), RX_OK, "%s", rx_last_error());
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
}
