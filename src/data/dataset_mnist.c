/* dataset_mnist.c — MNIST and Fashion-MNIST from the original idx files.
 *
 * idx format (http://yann.lecun.com/exdb/mnist/): a big-endian header — magic 0x00000803 for
 * unsigned-byte images with 3 dims (n, rows, cols), 0x00000801 for labels with 1 dim (n) —
 * then the bytes, row-major. Images are 28x28 gray, so the data is already [n,1,H,W].
 * Files may be gzipped or not: data/integrity.h's reader takes plain files as they are.
 *
 * Searched (first folder that holds the split's image file wins), under the base directory B:
 *   mnist:         B/mnist/, B/MNIST/raw/ (torchvision's download layout)
 *   fashion_mnist: B/fashion_mnist/, B/fashion-mnist/, B/FashionMNIST/raw/,
 *                  /usr/share/datasets/fashion-mnist/ (Debian's dataset-fashion-mnist).
 *
 * Integrity (data/integrity.h): each file is read to its end, so a gzip file's CRC and length
 * are checked and nothing may follow the records the header counts; a file with the published
 * size must have the published md5 (cached). */
#include "data/dataset.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "data/integrity.h"

static const char *const mnist_classes[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
static const char *const fashion_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

typedef struct {
    const char *name;                 // component name, for messages
    const char *const *subdirs;       // relative to the base directory, NULL-terminated
    const char *fixed_dir;            // absolute fallback (Debian's package) or NULL
    const char *const *class_names;   // [10]
    const rx_dataset_file *files;     // the published files (md5, size)
} idx_dataset;

/* md5 and size as published (torchvision's lists); Debian's Fashion-MNIST files hold the same
 * idx bytes gzipped again without the file name (23-24 bytes smaller), so only the format checks apply. */
#define MNIST_URL "https://ossci-datasets.s3.amazonaws.com/mnist/"
static const rx_dataset_file mnist_files[] = {
    {"train-images-idx3-ubyte.gz", MNIST_URL "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422},
    {"train-labels-idx1-ubyte.gz", MNIST_URL "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28881},
    {"t10k-images-idx3-ubyte.gz", MNIST_URL "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1648877},
    {"t10k-labels-idx1-ubyte.gz", MNIST_URL "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4542},
    {0}};
#define FASHION_URL "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
static const rx_dataset_file fashion_files[] = {
    {"train-images-idx3-ubyte.gz", FASHION_URL "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880},
    {"train-labels-idx1-ubyte.gz", FASHION_URL "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", 29515},
    {"t10k-images-idx3-ubyte.gz", FASHION_URL "t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", 4422102},
    {"t10k-labels-idx1-ubyte.gz", FASHION_URL "t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", 5148},
    {0}};
static const char *const mnist_subdirs[] = {"mnist", "MNIST/raw", NULL};
static const char *const fashion_subdirs[] = {"fashion_mnist", "fashion-mnist", "FashionMNIST/raw", NULL};
static const idx_dataset mnist_info = {"mnist", mnist_subdirs, NULL, mnist_classes, mnist_files};
static const idx_dataset fashion_info = {"fashion_mnist", fashion_subdirs, "/usr/share/datasets/fashion-mnist",
                                         fashion_classes, fashion_files};

static const rx_param_spec idx_params[] = {
    {"root", RX_P_PATH, "null", RX_NO_RANGE, NULL, "base data directory; null = $RUNEXP_DATA, else ./data"},
    {0}};

static int is_file(const char *path) { struct stat sb; return !stat(path, &sb) && S_ISREG(sb.st_mode); }

// dir/stem.gz or dir/stem, whichever exists (the .gz first); 0 if neither.
static int find_idx_file(const char *dir, const char *stem, char *out, size_t cap) {
    const char *suffix[2] = {".gz", ""};
    for (int k = 0; k < 2; k++) {
        int n = snprintf(out, cap, "%s/%s%s", dir, stem, suffix[k]);
        if (n > 0 && (size_t)n < cap && is_file(out)) return 1;
    }
    return 0;
}

static uint32_t be32(const uint8_t b[4]) { return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]; }

// Opens an idx file and checks its magic: 0x00000800 | ndim, unsigned bytes. dims[ndim] out.
static rx_status idx_open(const char *path, int ndim, uint32_t *dims, rx_gz_reader **out) {
    *out = NULL;
    rx_gz_reader *f = NULL;
    RX_TRY(rx_gz_open(path, &f));
    uint8_t head[4 + 4 * 3];
    rx_status st = rx_gz_read_exact(f, head, 4 + 4 * (size_t)ndim, "header");
    uint32_t magic = st == RX_OK ? be32(head) : 0;
    if (st == RX_OK && magic != (0x00000800u | (uint32_t)ndim))
        st = rx_fail(RX_ERR_FORMAT, "%s: idx magic 0x%08x, expected 0x%08x (unsigned bytes, %d dims): not an idx %s file",
                     path, magic, 0x00000800u | (uint32_t)ndim, ndim, ndim == 1 ? "label" : "image");
    if (st != RX_OK) { rx_gz_close(f); return st; }
    for (int k = 0; k < ndim; k++) dims[k] = be32(head + 4 + 4 * k);
    *out = f;
    return RX_OK;
}

static rx_status idx_load(const idx_dataset *info, const rx_params *p, const char *split, rx_dataset **out) {
    *out = NULL;
    const char *prefix = !strcmp(split, "train") ? "train" : "t10k";
    char img_stem[64], lab_stem[64];
    snprintf(img_stem, sizeof img_stem, "%s-images-idx3-ubyte", prefix);
    snprintf(lab_stem, sizeof lab_stem, "%s-labels-idx1-ubyte", prefix);

    // find the folder: the base directory's sub-folders, then the fixed fallback
    const char *root = rx_data_root(p);
    char dirs[5][4096], img_path[4200], lab_path[4200], tried[8192] = "";
    int ndirs = 0, found = -1;
    for (int k = 0; info->subdirs[k] && ndirs < 4; k++) RX_TRY(rx_data_path_join(dirs[ndirs++], 4096, root, info->subdirs[k]));
    if (info->fixed_dir) snprintf(dirs[ndirs++], 4096, "%s", info->fixed_dir);
    for (int k = 0; k < ndirs && found < 0; k++) {
        if (find_idx_file(dirs[k], img_stem, img_path, sizeof img_path)) found = k;
        else {
            size_t used = strlen(tried);
            snprintf(tried + used, sizeof tried - used, "%s%s/%s[.gz]", used ? ", " : "", dirs[k], img_stem);
        }
    }
    if (found < 0) return rx_data_not_found(info->name, tried);
    const char *dir = dirs[found];
    if (!find_idx_file(dir, lab_stem, lab_path, sizeof lab_path))
        return rx_fail(RX_ERR_IO, "dataset %s: found %s but no %s/%s[.gz]", info->name, img_path, dir, lab_stem);

    // headers
    uint32_t idim[3] = {0}, ldim[1] = {0};
    rx_gz_reader *fi = NULL, *fl = NULL;
    RX_TRY(rx_data_check_listed(info->files, img_path));
    RX_TRY(rx_data_check_listed(info->files, lab_path));
    RX_TRY(idx_open(img_path, 3, idim, &fi));
    rx_status st = idx_open(lab_path, 1, ldim, &fl);
    if (st == RX_OK && idim[0] != ldim[0])
        st = rx_fail(RX_ERR_FORMAT, "dataset %s: record count mismatch: %s has %u images, %s has %u labels", info->name,
                     img_path, idim[0], lab_path, ldim[0]);
    if (st == RX_OK && (idim[0] > 100000000u || idim[1] < 1 || idim[1] > 65536 || idim[2] < 1 || idim[2] > 65536 ||
                        (uint64_t)idim[0] * idim[1] * idim[2] > (1ull << 36)))
        st = rx_fail(RX_ERR_FORMAT, "%s: implausible image dims %u x %u x %u", img_path, idim[0], idim[1], idim[2]);
    // A header may not promise more pixels than the file can hold: deflate expands at most
    // 1032:1, so a small or corrupt file is refused here instead of allocating up to 64 GiB
    // first (found by make fuzz: a 800-byte file asking for 2.9 GB).
    struct stat isb;
    if (st == RX_OK && !stat(img_path, &isb) &&
        (uint64_t)idim[0] * idim[1] * idim[2] > (uint64_t)isb.st_size * 1032u + 1024u)
        st = rx_fail(RX_ERR_FORMAT, "%s: header promises %u x %u x %u pixels, more than its %lld bytes can hold",
                     img_path, idim[0], idim[1], idim[2], (long long)isb.st_size);

    // data
    rx_dataset *d = NULL;
    char name[64];
    snprintf(name, sizeof name, "%s/%s", info->name, split);
    if (st == RX_OK) st = rx_dataset_alloc(name, (int)idim[0], 1, (int)idim[1], (int)idim[2], 10, &d);
    if (st == RX_OK) st = rx_gz_read_exact(fi, d->pixels, (size_t)idim[0] * idim[1] * idim[2], "pixels");
    // to the end: zlib checks the gzip CRC and length only there, and nothing may follow the pixels
    if (st == RX_OK) st = rx_gz_finish(fi);
    if (st == RX_OK) {
        // labels arrive as bytes; widen in place from the back of the int32 array
        uint8_t *bytes = (uint8_t *)d->labels;
        st = rx_gz_read_exact(fl, bytes, idim[0], "labels");
        if (st == RX_OK) st = rx_gz_finish(fl);
        for (int i = (int)idim[0] - 1; st == RX_OK && i >= 0; i--) d->labels[i] = bytes[i];
        for (int i = 0; st == RX_OK && i < d->n; i++)
            if (d->labels[i] > 9) st = rx_fail(RX_ERR_FORMAT, "%s: label %d of record %d is not 0..9", lab_path, d->labels[i], i);
    }
    for (int k = 0; st == RX_OK && k < 10; k++) st = rx_dataset_set_class_name(d, k, info->class_names[k]);
    rx_gz_close(fi);
    rx_gz_close(fl);
    if (st != RX_OK) { rx_dataset_free(d); return st; }
    *out = d;
    return RX_OK;
}

static rx_status mnist_load(const rx_params *p, const char *split, rx_dataset **out) {
    return idx_load(&mnist_info, p, split, out);
}
static rx_status fashion_load(const rx_params *p, const char *split, rx_dataset **out) {
    return idx_load(&fashion_info, p, split, out);
}

static const rx_dataset_impl mnist_impl = {mnist_load, mnist_files, NULL};
/* Debian's dataset-fashion-mnist package ships the official idx data (re-gzipped, see above) */
static const rx_dataset_impl fashion_impl = {fashion_load, fashion_files, "/usr/share/datasets/fashion-mnist"};
const rx_component rx_comp_dataset_mnist = {
    RX_KIND_DATASET, "mnist", "MNIST digits (LeCun et al. 1998), 28x28 gray, 10 classes; train 60,000 / test 10,000",
    idx_params, &mnist_impl, NULL};
const rx_component rx_comp_dataset_fashion_mnist = {
    RX_KIND_DATASET, "fashion_mnist",
    "Fashion-MNIST (Xiao et al. 2017), 28x28 gray, 10 clothing classes; train 60,000 / test 10,000",
    idx_params, &fashion_impl, "fashion-mnist"};
