/* dataset_cifar10.c — CIFAR-10 from the official binary distribution.
 *
 * Layout (https://www.cs.toronto.edu/~kriz/cifar.html, "binary version"): cifar-10-batches-bin/
 * holds data_batch_1.bin .. data_batch_5.bin (train) and test_batch.bin (test), 10,000 records
 * each, and batches.meta.txt (the class names, one a line). A record is 3,073 bytes: the label
 * byte, then 1,024 red, 1,024 green, 1,024 blue bytes, each plane row-major 32x32 — already
 * [C,H,W], so a record is copied as it is.
 *
 * Read either straight from cifar-10-binary.tar.gz with libarchive (no extraction; one
 * streaming pass through the gzip) or from the extracted folder. Searched, in order, under the
 * base directory B (rx_data_root): B/cifar10/cifar-10-binary.tar.gz, B/cifar10/cifar-10-batches-bin/,
 * B/cifar-10-binary.tar.gz, B/cifar-10-batches-bin/.
 *
 * Integrity (data/integrity.h), whichever split is asked for: the archive is read to its end,
 * so the gzip CRC and length are checked, and every batch member (train and test) must be there
 * with its exact size; in the folder form every batch file must have its exact size. So a
 * truncated test_batch.bin stops a run that only trains, at the start rather than at its
 * evaluation. An archive of the published size must have the published md5 (cached). */
#include "data/dataset.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/integrity.h"

enum { CIFAR_SIDE = 32, CIFAR_PLANE = 1024, CIFAR_IMAGE = 3 * 1024, CIFAR_RECORD = 1 + 3 * 1024,
       CIFAR_PER_FILE = 10000, CIFAR_CLASSES = 10 };

static const char *const cifar_train_files[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                                "data_batch_4.bin", "data_batch_5.bin"};
static const char *const cifar_test_files[] = {"test_batch.bin"};
// Every batch of the data set, checked whichever split is loaded.
static const char *const cifar_all_files[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                               "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
// Used when batches.meta.txt is absent (it is optional for the folder form).
static const char *const cifar_default_classes[CIFAR_CLASSES] = {
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};

static const rx_dataset_file cifar10_files[] = {
    {"cifar-10-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530",
     170052171},
    {0}};

static const rx_param_spec cifar10_params[] = {
    {"root", RX_P_PATH, "null", RX_NO_RANGE, NULL,
     "base data directory (holds cifar10/); null = $RUNEXP_DATA, else ./data"},
    {0}};

typedef struct {
    const char *const *files;  // the split's batch files, in record order
    int nfiles;
    rx_dataset *d;
    int *have;                 // [nfiles] 1 once that file was decoded
    char meta[1024];           // batches.meta.txt, when seen
    int have_meta;
    const rx_dataset_file *listed;   // the published files (md5, size)
} cifar_load;

// Member/file basename -> index in the split's file list, or -1.
static int split_file_index(const cifar_load *L, const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (int k = 0; k < L->nfiles; k++)
        if (!strcmp(base, L->files[k])) return k;
    return -1;
}

// Member/file basename -> index in cifar_all_files, or -1.
static int batch_index(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (int k = 0; k < 6; k++)
        if (!strcmp(base, cifar_all_files[k])) return k;
    return -1;
}

static int is_meta_file(const char *path) {
    const char *base = strrchr(path, '/');
    return !strcmp(base ? base + 1 : path, "batches.meta.txt");
}

// Decodes one batch file's bytes into record slots [k*10000, (k+1)*10000).
static rx_status decode_batch(cifar_load *L, int k, const uint8_t *buf, const char *where) {
    uint8_t *px = L->d->pixels + (size_t)k * CIFAR_PER_FILE * CIFAR_IMAGE;
    int32_t *lab = L->d->labels + (size_t)k * CIFAR_PER_FILE;
    for (int r = 0; r < CIFAR_PER_FILE; r++) {
        const uint8_t *rec = buf + (size_t)r * CIFAR_RECORD;
        if (rec[0] >= CIFAR_CLASSES)
            return rx_fail(RX_ERR_FORMAT, "cifar10: %s: record %d has label %d, expected 0..9 (not a CIFAR-10 batch?)",
                           where, r, rec[0]);
        lab[r] = rec[0];
        memcpy(px + (size_t)r * CIFAR_IMAGE, rec + 1, CIFAR_IMAGE);
    }
    L->have[k] = 1;
    return RX_OK;
}

static rx_status check_size(int64_t size, const char *where) {
    const int64_t want = (int64_t)CIFAR_PER_FILE * CIFAR_RECORD;
    if (size != want) {
        char a[32], b[32];
        return rx_fail(RX_ERR_FORMAT, "cifar10: %s: %s bytes, expected %s (%d records of %d bytes): record count mismatch",
                       where, rx_fmt_count(size, a, sizeof a), rx_fmt_count(want, b, sizeof b), CIFAR_PER_FILE,
                       CIFAR_RECORD);
    }
    return RX_OK;
}

// libarchive reads the tar through our gzip reader (data/integrity.h), which checks the CRC
// and length; libarchive's own gzip filter stops at the tar's end-of-archive blocks, before
// the trailer. The reader's status is kept so that its message reaches the caller.
typedef struct {
    rx_gz_reader *gz;
    uint8_t *buf;
    rx_status st;
    char msg[1024];   // the reader's message: libarchive may replace its own error string later
} gz_client;

static la_ssize_t gz_client_read(struct archive *a, void *data, const void **out) {
    gz_client *c = data;
    size_t got = 0;
    if ((c->st = rx_gz_read(c->gz, c->buf, 1 << 20, &got)) != RX_OK) {
        snprintf(c->msg, sizeof c->msg, "%s", rx_last_error());
        archive_set_error(a, EIO, "%s", c->msg);
        return -1;
    }
    *out = c->buf;
    return (la_ssize_t)got;
}

// A failed libarchive call: the gzip reader's own message when it was the cause (a CRC
// mismatch, a truncated stream), with the member being read; else libarchive's.
static rx_status archive_failure(const gz_client *c, struct archive *a, const char *where) {
    const char *msg = archive_error_string(a) ? archive_error_string(a) : "read error";
    if (c->st) return rx_fail(c->st, "cifar10: while reading %s: %s", where, c->msg);
    return rx_fail(RX_ERR_FORMAT, "cifar10: %s: %s (truncated or corrupt archive?)", where, msg);
}

// Reads exactly n bytes of the current archive member.
static rx_status archive_read_exact(struct archive *a, uint8_t *buf, size_t n, const char *where) {
    size_t got = 0;
    while (got < n) {
        la_ssize_t r = archive_read_data(a, buf + got, n - got);
        if (r < 0)
            return rx_fail(RX_ERR_FORMAT, "cifar10: %s: %s (truncated or corrupt archive?)", where,
                           archive_error_string(a) ? archive_error_string(a) : "read error");
        if (r == 0)
            return rx_fail(RX_ERR_FORMAT, "cifar10: %s: archive ended after %zu of %zu bytes (truncated archive)",
                           where, got, n);
        got += (size_t)r;
    }
    return RX_OK;
}

static rx_status load_from_archive(cifar_load *L, const char *path, uint8_t *buf) {
    RX_TRY(rx_data_check_listed(L->listed, path));
    gz_client c = {0};
    RX_TRY(rx_gz_open(path, &c.gz));
    struct archive *a = archive_read_new();
    c.buf = malloc(1 << 20);
    if (!a || !c.buf) {
        if (a) archive_read_free(a);
        free(c.buf);
        rx_gz_close(c.gz);
        return rx_fail(RX_ERR_OOM, "cifar10: out of memory");
    }
    archive_read_support_filter_all(a);   // gzip is undone by the reader; other compressions here
    archive_read_support_format_tar(a);
    rx_status st = RX_OK;
    if (archive_read_open(a, &c, NULL, gz_client_read, NULL) != ARCHIVE_OK) st = archive_failure(&c, a, path);
    int seen[6] = {0};
    struct archive_entry *e;
    // every member, to the end of the archive: all six batches are checked, not only the split's
    while (st == RX_OK) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN) {
            st = archive_failure(&c, a, path);
            break;
        }
        const char *name = archive_entry_pathname(e);
        if (!name) continue;
        char where[4400];
        if (snprintf(where, sizeof where, "%s:%s", path, name) >= (int)sizeof where) where[sizeof where - 1] = 0;
        int b = batch_index(name), k = split_file_index(L, name);
        if (b >= 0) {
            if ((st = check_size(archive_entry_size(e), where)) != RX_OK) break;
            seen[b] = 1;
        }
        if (k >= 0 && !L->have[k]) {
            st = archive_read_exact(a, buf, (size_t)CIFAR_PER_FILE * CIFAR_RECORD, where);
            if (st != RX_OK && c.st) st = archive_failure(&c, a, where);
            if (st == RX_OK) st = decode_batch(L, k, buf, where);
        } else if (is_meta_file(name) && !L->have_meta) {
            la_ssize_t n = archive_read_data(a, L->meta, sizeof L->meta - 1);
            if (n < 0) st = archive_failure(&c, a, where);
            else L->meta[n] = 0, L->have_meta = 1;
        }
        // other members' data is skipped by the next archive_read_next_header
    }
    archive_read_free(a);
    // the rest of the gzip stream (tar padding) and its trailer: CRC32 and length are checked at the end
    if (st == RX_OK && (st = rx_gz_drain(c.gz)) != RX_OK) st = rx_fail_ctx(st, "cifar10: after the tar's end: ");
    rx_gz_close(c.gz);
    free(c.buf);
    for (int k = 0; st == RX_OK && k < 6; k++)
        if (!seen[k])
            st = rx_fail(RX_ERR_FORMAT, "cifar10: %s has no %s (incomplete or not the CIFAR-10 binary archive)", path,
                         cifar_all_files[k]);
    return st;
}

static rx_status load_from_dir(cifar_load *L, const char *dir, uint8_t *buf) {
    char path[4096];
    // every batch of the data set has its exact size, whichever split is loaded: sizes first,
    // then the files that are missing (a folder missing its test batch is incomplete)
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < 6; k++) {
            RX_TRY(rx_data_path_join(path, sizeof path, dir, cifar_all_files[k]));
            struct stat sb;
            int there = !stat(path, &sb);
            if (pass == 0 && there) RX_TRY(check_size((int64_t)sb.st_size, path));
            if (pass == 1 && !there)
                return rx_fail(RX_ERR_IO, "cifar10: %s has no %s (%s): incomplete data set", dir, cifar_all_files[k],
                               strerror(errno));
        }
    for (int k = 0; k < L->nfiles; k++) {
        RX_TRY(rx_data_path_join(path, sizeof path, dir, L->files[k]));
        FILE *f = fopen(path, "rb");
        if (!f) return rx_fail(RX_ERR_IO, "cifar10: cannot open %s: %s", path, strerror(errno));
        struct stat sb;
        rx_status st = fstat(fileno(f), &sb) ? rx_fail(RX_ERR_IO, "cifar10: stat %s: %s", path, strerror(errno))
                                             : check_size((int64_t)sb.st_size, path);
        size_t want = (size_t)CIFAR_PER_FILE * CIFAR_RECORD;
        if (st == RX_OK && fread(buf, 1, want, f) != want)
            st = rx_fail(RX_ERR_IO, "cifar10: short read from %s", path);
        fclose(f);
        RX_TRY(st);
        RX_TRY(decode_batch(L, k, buf, path));
    }
    RX_TRY(rx_data_path_join(path, sizeof path, dir, "batches.meta.txt"));
    FILE *f = fopen(path, "rb");
    if (f) {
        size_t n = fread(L->meta, 1, sizeof L->meta - 1, f);
        L->meta[n] = 0;
        L->have_meta = 1;
        fclose(f);
    }
    return RX_OK;
}

// Class names from batches.meta.txt (one a line, blank lines ignored), else the defaults.
static rx_status set_class_names(cifar_load *L) {
    const char *names[CIFAR_CLASSES];
    char copy[sizeof L->meta];
    int n = 0;
    if (L->have_meta) {
        memcpy(copy, L->meta, sizeof copy);
        char *save = NULL;
        for (char *line = strtok_r(copy, "\r\n", &save); line && n < CIFAR_CLASSES; line = strtok_r(NULL, "\r\n", &save)) {
            while (*line == ' ' || *line == '\t') line++;
            if (*line) names[n++] = line;
        }
    }
    for (int k = 0; k < CIFAR_CLASSES; k++)
        RX_TRY(rx_dataset_set_class_name(L->d, k, n == CIFAR_CLASSES ? names[k] : cifar_default_classes[k]));
    return RX_OK;
}

static int is_file(const char *path) { struct stat sb; return !stat(path, &sb) && S_ISREG(sb.st_mode); }
static int is_dir(const char *path) { struct stat sb; return !stat(path, &sb) && S_ISDIR(sb.st_mode); }

static rx_status cifar10_load(const rx_params *p, const char *split, rx_dataset **out) {
    *out = NULL;
    int train = !strcmp(split, "train");
    const char *root = rx_data_root(p);
    // candidates in search order: {path, is_archive}
    const char *const forms[4][2] = {{"cifar10/cifar-10-binary.tar.gz", "a"}, {"cifar10/cifar-10-batches-bin", "d"},
                                     {"cifar-10-binary.tar.gz", "a"}, {"cifar-10-batches-bin", "d"}};
    char path[4096], tried[4 * 4200] = "";
    int found = -1;
    for (int i = 0; i < 4 && found < 0; i++) {
        RX_TRY(rx_data_path_join(path, sizeof path, root, forms[i][0]));
        if (forms[i][1][0] == 'a' ? is_file(path) : is_dir(path)) found = i;
        else snprintf(tried + strlen(tried), sizeof tried - strlen(tried), "%s%s", i ? ", " : "", path);
    }
    if (found < 0) return rx_data_not_found("cifar10", tried);

    cifar_load L = {.files = train ? cifar_train_files : cifar_test_files, .nfiles = train ? 5 : 1, .listed = cifar10_files};
    char name[64];
    snprintf(name, sizeof name, "cifar10/%s", split);
    RX_TRY(rx_dataset_alloc(name, L.nfiles * CIFAR_PER_FILE, 3, CIFAR_SIDE, CIFAR_SIDE, CIFAR_CLASSES, &L.d));
    int have[5] = {0};
    L.have = have;
    uint8_t *buf = malloc((size_t)CIFAR_PER_FILE * CIFAR_RECORD);
    rx_status st = buf ? RX_OK : rx_fail(RX_ERR_OOM, "cifar10: out of memory");
    if (st == RX_OK) st = forms[found][1][0] == 'a' ? load_from_archive(&L, path, buf) : load_from_dir(&L, path, buf);
    free(buf);
    if (st == RX_OK) st = set_class_names(&L);
    if (st != RX_OK) { rx_dataset_free(L.d); return st; }
    *out = L.d;
    return RX_OK;
}

static const rx_dataset_impl cifar10_impl = {cifar10_load, cifar10_files, NULL};
const rx_component rx_comp_dataset_cifar10 = {
    RX_KIND_DATASET, "cifar10",
    "CIFAR-10 (Krizhevsky 2009), 32x32 RGB, 10 classes; train 50,000 / test 10,000; official binary tar.gz or folder",
    cifar10_params, &cifar10_impl, "cifar-10"};
