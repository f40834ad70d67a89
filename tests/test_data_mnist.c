/* MNIST / Fashion-MNIST idx loader. References: the well-known first labels and pixel mean of
 * MNIST (../shared/data/README.md; torchvision's Normalize((0.1307,), ...)), Fashion-MNIST's
 * first train labels from its README (9 ankle boot, 0 T-shirt, 0, 3 dress), and small idx
 * files written here byte by byte. */
#include "registry/components.h"
#include "testutil.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/params.h"
#include "data/dataset.h"

static rx_params *params_at(const rx_component *c, const char *root) {
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults(c->name, c->params, &p), RX_OK, "%s", rx_last_error());
    char text[4200];
    snprintf(text, sizeof text, "\"%s\"", root);
    cr_assert_eq(rx_params_set(p, "root", text), RX_OK, "%s", rx_last_error());
    return p;
}

static rx_status try_load(const rx_component *c, const char *root, const char *split, rx_dataset **d) {
    rx_params *p = params_at(c, root);
    rx_status st = rx_dataset_load(c, p, split, d);
    rx_params_free(p);
    return st;
}

static rx_dataset *load(const rx_component *c, const char *root, const char *split) {
    rx_dataset *d = NULL;
    cr_assert_eq(try_load(c, root, split, &d), RX_OK, "%s", rx_last_error());
    return d;
}

Test(data_mnist, train_first_labels_and_mean) {
    rx_dataset *d = load(&rx_comp_dataset_mnist, rx_test_data_src(), "train");
    cr_assert_eq(d->n, 60000);
    cr_assert(d->channels == 1 && d->height == 28 && d->width == 28);
    const int want[5] = {5, 0, 4, 1, 9};
    for (int i = 0; i < 5; i++) cr_expect_eq(d->labels[i], want[i], "label %d", i);
    double s = 0;
    size_t n = (size_t)d->n * 28 * 28;
    for (size_t i = 0; i < n; i++) s += d->pixels[i];
    double mean = s / (double)n / 255.0;
    cr_expect(fabs(mean - 0.1307) < 1e-4, "pixel mean %.6f, want 0.1307", mean);
    rx_dataset_free(d);
}

Test(data_mnist, test_first_labels) {
    rx_dataset *d = load(&rx_comp_dataset_mnist, rx_test_data_src(), "test");
    cr_assert_eq(d->n, 10000);
    const int want[5] = {7, 2, 1, 0, 4};
    for (int i = 0; i < 5; i++) cr_expect_eq(d->labels[i], want[i], "label %d", i);
    rx_dataset_free(d);
}

// ../shared/data has no fashion_mnist/, so this is Debian's /usr/share/datasets/fashion-mnist/.
Test(data_mnist, fashion_mnist_from_debian_package) {
    rx_dataset *tr = load(&rx_comp_dataset_fashion_mnist, rx_test_data_src(), "train");
    rx_dataset *te = load(&rx_comp_dataset_fashion_mnist, rx_test_data_src(), "test");
    cr_expect_eq(tr->n, 60000);
    cr_expect_eq(te->n, 10000);
    const int want[4] = {9, 0, 0, 3};
    for (int i = 0; i < 4; i++) cr_expect_eq(tr->labels[i], want[i], "label %d", i);
    cr_expect_str_eq(tr->class_names[9], "Ankle boot");
    rx_dataset_free(tr);
    rx_dataset_free(te);
}

// --- small idx files written here ---------------------------------------------------

static void put_be32(uint8_t *b, uint32_t v) { b[0] = v >> 24, b[1] = v >> 16, b[2] = v >> 8, b[3] = v; }

static void write_bytes(const char *path, const void *buf, size_t n, int gz) {
    if (gz) {
        gzFile f = gzopen(path, "wb");
        cr_assert(f);
        cr_assert_eq(gzwrite(f, buf, (unsigned)n), (int)n);
        cr_assert_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        cr_assert(f);
        cr_assert_eq(fwrite(buf, 1, n, f), n);
        fclose(f);
    }
}

// root/mnist/t10k-{images,labels}: n_img images of 4x5 with pixel (i,y,x) = 10i + 5y + x,
// n_lab labels (i * 3) % 10; image magic as given.
static void make_idx(const char *root, int n_img, int n_lab, uint32_t img_magic, int gz) {
    char dir[4200], path[4400];
    snprintf(dir, sizeof dir, "%s/mnist", root);
    cr_assert_eq(mkdir(dir, 0755), 0);
    uint8_t img[16 + 64 * 20], lab[8 + 64];
    put_be32(img, img_magic), put_be32(img + 4, n_img), put_be32(img + 8, 4), put_be32(img + 12, 5);
    for (int i = 0; i < n_img; i++)
        for (int k = 0; k < 20; k++) img[16 + i * 20 + k] = (uint8_t)(10 * i + k);
    put_be32(lab, 0x801), put_be32(lab + 4, n_lab);
    for (int i = 0; i < n_lab; i++) lab[8 + i] = (uint8_t)((i * 3) % 10);
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte%s", dir, gz ? ".gz" : "");
    write_bytes(path, img, 16 + (size_t)n_img * 20, gz);
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte%s", dir, gz ? ".gz" : "");
    write_bytes(path, lab, 8 + (size_t)n_lab, gz);
}

static void rm_tree(const char *dir) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

static void small_round_trip(int gz) {
    char tmp[] = "/tmp/rx_mnist_XXXXXX";
    cr_assert(mkdtemp(tmp));
    make_idx(tmp, 7, 7, 0x803, gz);
    rx_dataset *d = load(&rx_comp_dataset_mnist, tmp, "test");
    cr_assert(d->n == 7 && d->channels == 1 && d->height == 4 && d->width == 5);
    for (int i = 0; i < 7; i++) {
        cr_expect_eq(d->labels[i], (i * 3) % 10);
        for (int k = 0; k < 20; k++) cr_expect_eq(d->pixels[i * 20 + k], 10 * i + k);
    }
    rx_dataset_free(d);
    rm_tree(tmp);
}

Test(data_mnist, plain_idx_round_trip) { small_round_trip(0); }
Test(data_mnist, gzipped_idx_round_trip) { small_round_trip(1); }

Test(data_mnist, wrong_magic_is_format_error) {
    char tmp[] = "/tmp/rx_mnist_XXXXXX";
    cr_assert(mkdtemp(tmp));
    make_idx(tmp, 3, 3, 0x801, 1);  // a label magic on the image file
    rx_dataset *d = NULL;
    cr_assert_eq(try_load(&rx_comp_dataset_mnist, tmp, "test", &d), RX_ERR_FORMAT);
    const char *msg = rx_last_error();
    cr_expect(strstr(msg, "idx magic 0x00000801, expected 0x00000803"), "%s", msg);
    cr_expect(strstr(msg, "t10k-images-idx3-ubyte.gz"), "%s", msg);
    cr_expect_null(d);
    rm_tree(tmp);
}

Test(data_mnist, count_mismatch_is_format_error) {
    char tmp[] = "/tmp/rx_mnist_XXXXXX";
    cr_assert(mkdtemp(tmp));
    make_idx(tmp, 3, 2, 0x803, 0);
    rx_dataset *d = NULL;
    cr_assert_eq(try_load(&rx_comp_dataset_mnist, tmp, "test", &d), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "record count mismatch"), "%s", rx_last_error());
    rm_tree(tmp);
}

// make fuzz finding: an 800-byte image file whose header promises 1 x 65536 x 44854 pixels
// (2.9 GB) was allocated before the read found the data missing; refused from the header.
Test(data_mnist, header_promising_more_than_the_file_holds_is_refused_before_allocating) {
    for (int gz = 0; gz < 2; gz++) {
        char tmp[] = "/tmp/rx_mnist_XXXXXX";
        cr_assert(mkdtemp(tmp));
        make_idx(tmp, 1, 1, 0x803, gz);
        char path[4400];
        snprintf(path, sizeof path, "%s/mnist/t10k-images-idx3-ubyte%s", tmp, gz ? ".gz" : "");
        uint8_t img[16 + 20] = {0};
        put_be32(img, 0x803), put_be32(img + 4, 1), put_be32(img + 8, 65536), put_be32(img + 12, 44854);
        write_bytes(path, img, sizeof img, gz);
        rx_dataset *d = NULL;
        cr_assert_eq(try_load(&rx_comp_dataset_mnist, tmp, "test", &d), RX_ERR_FORMAT);
        cr_expect(strstr(rx_last_error(), "more than its"), "%s", rx_last_error());
        cr_expect_null(d);
        rm_tree(tmp);
    }
}

// The first 100 kB of the real gzipped train images: the stream ends inside the pixels.
Test(data_mnist, truncated_gzip_is_format_error) {
    char tmp[] = "/tmp/rx_mnist_XXXXXX";
    cr_assert(mkdtemp(tmp));
    char dir[4200], src[4200], dst[4400];
    snprintf(dir, sizeof dir, "%s/mnist", tmp);
    cr_assert_eq(mkdir(dir, 0755), 0);
    const char *names[2] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"};
    for (int k = 0; k < 2; k++) {
        snprintf(src, sizeof src, "%s/mnist/%s", rx_test_data_src(), names[k]);
        snprintf(dst, sizeof dst, "%s/%s", dir, names[k]);
        long n = 0;
        char *buf = rx_test_read_file(src, &n);
        cr_assert(buf, "%s", src);
        write_bytes(dst, buf, k == 0 ? 100000 : (size_t)n, 0);
        free(buf);
    }
    rx_dataset *d = NULL;
    cr_assert_eq(try_load(&rx_comp_dataset_mnist, tmp, "train", &d), RX_ERR_FORMAT);
    const char *msg = rx_last_error();
    cr_expect(strstr(msg, "truncated") && strstr(msg, "train-images-idx3-ubyte.gz"), "%s", msg);
    rm_tree(tmp);
}

Test(data_mnist, missing_lists_places_and_command) {
    rx_dataset *d = NULL;
    cr_assert_eq(try_load(&rx_comp_dataset_mnist, "/nonexistent/rx", "train", &d), RX_ERR_IO);
    const char *msg = rx_last_error();
    cr_expect(strstr(msg, "/nonexistent/rx/mnist/train-images-idx3-ubyte"), "%s", msg);
    cr_expect(strstr(msg, "/nonexistent/rx/MNIST/raw"), "%s", msg);
    cr_expect(strstr(msg, "runexp data fetch mnist"), "%s", msg);
}

// --- integrity (issue 19): what the formats carry -------------------------------------
// References: the gzip trailer (RFC 1952: CRC-32 and ISIZE of the member's data), the idx
// header's record count, and the published md5s (torchvision's MNIST list).

// Copies ../shared/data/mnist/<name> to dir/<name>.
static void copy_real(const char *dir, const char *name) {
    char src[4200], dst[4400];
    snprintf(src, sizeof src, "%s/mnist/%s", rx_test_data_src(), name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    long n = 0;
    char *buf = rx_test_read_file(src, &n);
    cr_assert(buf, "%s", src);
    write_bytes(dst, buf, (size_t)n, 0);
    free(buf);
}

// Flips bit `bit` of byte `off` (from the end when off < 0) of dir/name.
static void flip_bit(const char *dir, const char *name, long off, int bit) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r+b");
    cr_assert(f, "%s", path);
    cr_assert_eq(fseek(f, off, off < 0 ? SEEK_END : SEEK_SET), 0);
    long at = ftell(f);
    int c = fgetc(f);
    cr_assert(c != EOF);
    cr_assert_eq(fseek(f, at, SEEK_SET), 0);
    fputc(c ^ (1 << bit), f);
    fclose(f);
}

// tmp/mnist/ with real copies of the test split; the md5 cache under tmp/cache.
static void real_test_split(char *tmp, char *dir, size_t cap) {
    cr_assert(mkdtemp(tmp));
    snprintf(dir, cap, "%s/mnist", tmp);
    cr_assert_eq(mkdir(dir, 0755), 0);
    char cache[4200];
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    cr_assert_eq(setenv("XDG_CACHE_HOME", cache, 1), 0);
    copy_real(dir, "t10k-images-idx3-ubyte.gz");
    copy_real(dir, "t10k-labels-idx1-ubyte.gz");
}

static void expect_refused(const char *tmp, const char *split, const char *file, const char *what) {
    rx_dataset *d = NULL;
    cr_assert_eq(try_load(&rx_comp_dataset_mnist, tmp, split, &d), RX_ERR_FORMAT, "%s: loaded", what);
    const char *msg = rx_last_error();
    cr_expect(strstr(msg, file), "%s: message does not name %s: %s", what, file, msg);
    cr_expect(strstr(msg, what), "%s: %s", what, msg);
    cr_expect_null(d);
}

// Bit 6 of byte 808,255 (mid-file) of the real test images: the flipped stream still inflates
// to 7,840,016 bytes (checked with Python's zlib), so only the gzip CRC-32 tells.
Test(data_mnist, flipped_bit_in_gzip_payload_is_crc_mismatch) {
    char tmp[] = "/tmp/rx_mnist_XXXXXX", dir[4200];
    real_test_split(tmp, dir, sizeof dir);
    rx_dataset *d = load(&rx_comp_dataset_mnist, tmp, "test");  // the intact copy loads
    cr_expect_eq(d->labels[0], 7);
    rx_dataset_free(d);
    flip_bit(dir, "t10k-images-idx3-ubyte.gz", 808255, 6);
    expect_refused(tmp, "test", "t10k-images-idx3-ubyte.gz", "gzip data corrupt (CRC mismatch)");
    rm_tree(tmp);
}

// The trailer's ISIZE (last 4 bytes): the data is intact but its recorded length is not.
Test(data_mnist, gzip_length_is_checked) {
    char tmp[] = "/tmp/rx_mnist_XXXXXX", dir[4200];
    real_test_split(tmp, dir, sizeof dir);
    flip_bit(dir, "t10k-labels-idx1-ubyte.gz", -1, 0);
    expect_refused(tmp, "test", "t10k-labels-idx1-ubyte.gz", "gzip data corrupt (length mismatch)");
    rm_tree(tmp);
}

Test(data_mnist, bytes_after_the_gzip_stream_are_refused) {
    char tmp[] = "/tmp/rx_mnist_XXXXXX", dir[4200], path[4400];
    real_test_split(tmp, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", dir);
    FILE *f = fopen(path, "ab");
    cr_assert(f);
    fputs("junk", f);
    fclose(f);
    expect_refused(tmp, "test", "t10k-labels-idx1-ubyte.gz", "4 bytes of trailing data after the gzip stream");
    rm_tree(tmp);
}

// A plain idx file with one record more than its header counts.
Test(data_mnist, records_beyond_the_header_count_are_refused) {
    char tmp[] = "/tmp/rx_mnist_XXXXXX";
    cr_assert(mkdtemp(tmp));
    make_idx(tmp, 3, 3, 0x803, 0);
    char path[4400];
    snprintf(path, sizeof path, "%s/mnist/t10k-images-idx3-ubyte", tmp);
    FILE *f = fopen(path, "ab");
    cr_assert(f);
    for (int k = 0; k < 20; k++) fputc(k, f);
    fclose(f);
    expect_refused(tmp, "test", "t10k-images-idx3-ubyte", "20 bytes more than its header describes");
    rm_tree(tmp);
}

// A file of the published size must be the published file. The shared train labels hold the
// original bytes gzipped without a name (28,857 bytes); a 23-character gzip comment (RFC 1952
// FCOMMENT) makes them 28,881 bytes, the published size, with another md5 than torchvision's
// d53e105e...: refused. A 24-character comment (another size) is a repackaging: it loads.
static void labels_with_comment(const char *dir, int comment_len) {
    char src[4200], dst[4400];
    snprintf(src, sizeof src, "%s/mnist/train-labels-idx1-ubyte.gz", rx_test_data_src());
    snprintf(dst, sizeof dst, "%s/train-labels-idx1-ubyte.gz", dir);
    long n = 0;
    uint8_t *buf = rx_test_read_file(src, &n);
    cr_assert(buf && n == 28857, "%s: %ld bytes", src, n);
    cr_assert_eq(buf[3], 0, "the shared labels' gzip header has flags");
    buf[3] = 0x10;  // FCOMMENT
    FILE *f = fopen(dst, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(buf, 1, 10, f), 10);
    for (int k = 0; k < comment_len; k++) fputc('x', f);
    fputc(0, f);
    cr_assert_eq(fwrite(buf + 10, 1, (size_t)n - 10, f), (size_t)n - 10);
    fclose(f);
    free(buf);
}

Test(data_mnist, published_size_requires_published_md5) {
    char tmp[] = "/tmp/rx_mnist_XXXXXX", dir[4200], cache[4200];
    cr_assert(mkdtemp(tmp));
    snprintf(dir, sizeof dir, "%s/mnist", tmp);
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    cr_assert_eq(mkdir(dir, 0755), 0);
    cr_assert_eq(setenv("XDG_CACHE_HOME", cache, 1), 0);
    copy_real(dir, "train-images-idx3-ubyte.gz");
    labels_with_comment(dir, 23);
    expect_refused(tmp, "train", "train-labels-idx1-ubyte.gz", "expected d53e105ee54ea40749a09fcbcd1e9432");
    cr_expect(strstr(rx_last_error(), "md5 "), "%s", rx_last_error());
    labels_with_comment(dir, 24);
    rx_dataset *d = load(&rx_comp_dataset_mnist, tmp, "train");
    cr_expect(d->n == 60000 && d->labels[0] == 5);
    rx_dataset_free(d);
    rm_tree(tmp);
}
