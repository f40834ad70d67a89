/* dataset_webdataset.c — WebDataset tar shards (github.com/webdataset/webdataset), read
 * sequentially with libarchive and decoded once into the data set's uint8 array.
 *
 * A shard is a tar file; consecutive members with the same key form one sample, where the key
 * is the member path up to the first dot of its file name and the rest is the extension
 * (webdataset's base_plus_ext: "a/b.seg.png" -> key "a/b", extension "seg.png"), compared in
 * lower case. Per sample: the image is the member with extension jpg, jpeg or png (io/image.h
 * decodes it: EXIF orientation, CMYK, 16-bit PNG as PIL); the label is `cls`, an ASCII
 * integer. Other members are ignored (webdataset too hands them on undecoded). Members without
 * a dot, directories and links are skipped, as webdataset skips them. Errors name the shard
 * and the key: a sample without an image, two images, a bad .cls, a label on some samples but
 * not others. Shards are read in the order listed, samples in archive order.
 *
 * Labels: num_classes = largest label + 1, class names "0", "1", ... (shards carry no names).
 * Images sized and converted exactly as imagefolder (data/dataset_image.h), so the images of
 * an imagefolder written as shards in the same order (classes sorted, files sorted) give an
 * identical rx_dataset, and so identical training.
 *
 * Shuffling: the batch loader shuffles all samples from the run's seed and resumes exactly
 * (data/loader.h), which covers shard-level shuffling for a data set that fits in memory.
 * Streaming shards larger than memory is not implemented. */
#include "data/dataset.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data/braceexpand.h"
#include "data/dataset_image.h"
#include "io/image.h"

static const rx_param_spec webdataset_params[] = {
    {"urls", RX_P_STRING_LIST, "null", RX_NO_RANGE, NULL,
     "tar shards in order, local files; each may be a brace pattern, quoted: \"train-{000000..000099}.tar\" "
     "(braceexpand: {a..b} zero-padded, {x,y}); relative paths are tried as given, then under root"},
    {"test_urls", RX_P_STRING_LIST, "null", RX_NO_RANGE, NULL, "shards of the test split; null = the same as urls"},
    {"root", RX_P_PATH, "null", RX_NO_RANGE, NULL, "base data directory for relative shard paths; null = $RUNEXP_DATA, else ./data"},
    {"size", RX_P_INT, "0", 0, 65536, NULL, "0 = keep (all images must match); S = shorter side to S, centre crop S x S"},
    {"channels", RX_P_INT, "3", 1, 3, NULL, "1 (gray) or 3 (RGB)"},
    {0}};

// The data set as it grows: pixels [cap][C,H,W], labels [cap].
typedef struct {
    uint8_t *pixels;
    int32_t *labels;
    int      n, cap, C, H, W, size, labelled;   // labelled: -1 not yet known, 0 or 1
    int32_t  max_label;
} wds_build;

// The sample being read: its key, its decoded image, its label.
typedef struct {
    char     key[PATH_MAX];
    int      active;
    uint8_t *img;            // planar [nc,h,w] as decoded
    int      nc, h, w;
    char     img_name[PATH_MAX];
    int      has_label;
    int32_t  label;
} wds_sample;

static void sample_reset(wds_sample *s) {
    free(s->img);
    memset(s, 0, sizeof *s);
}

static rx_status build_grow(wds_build *b, const char *where) {
    if (b->n < b->cap) return RX_OK;
    const int cap = b->cap ? 2 * b->cap : 64;
    const size_t slot = (size_t)b->C * b->H * b->W;
    uint8_t *px = realloc(b->pixels, (size_t)cap * slot);
    if (px) b->pixels = px;
    int32_t *lb = px ? realloc(b->labels, (size_t)cap * sizeof *lb) : NULL;
    if (!lb) return rx_fail(RX_ERR_OOM, "%s: out of memory for %d images of %dx%dx%d", where, cap, b->C, b->H, b->W);
    b->labels = lb, b->cap = cap;
    return RX_OK;
}

// The finished sample `s` of `shard` into the data set.
static rx_status sample_finish(wds_build *b, wds_sample *s, const char *shard) {
    if (!s->img)
        return rx_fail(RX_ERR_FORMAT, "webdataset %s: sample '%s' has no image (.jpg, .jpeg or .png)", shard, s->key);
    if (b->labelled >= 0 && b->labelled != s->has_label)
        return rx_fail(RX_ERR_FORMAT, "webdataset %s: sample '%s' has %s .cls label but the samples before it %s", shard,
                       s->key, s->has_label ? "a" : "no", b->labelled ? "have one" : "have none");
    b->labelled = s->has_label;
    if (!b->H) b->H = b->size ? b->size : s->h, b->W = b->size ? b->size : s->w;   // the first image sets the size
    RX_TRY(build_grow(b, shard));
    const size_t slot = (size_t)b->C * b->H * b->W;
    RX_TRY(rx_dataset_image_store(b->pixels + (size_t)b->n * slot, b->C, b->H, b->W, s->img, s->nc, s->h, s->w, b->size,
                                  s->img_name));
    b->labels[b->n++] = s->has_label ? s->label : -1;
    if (s->has_label && s->label > b->max_label) b->max_label = s->label;
    return RX_OK;
}

// A .cls member: an ASCII integer >= 0, surrounding white space allowed.
static rx_status parse_cls(const uint8_t *buf, size_t n, const char *shard, const char *key, int32_t *out) {
    char text[32];
    if (n >= sizeof text) return rx_fail(RX_ERR_FORMAT, "webdataset %s: sample '%s': .cls of %zu bytes is not a class number", shard, key, n);
    memcpy(text, buf, n), text[n] = 0;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    while (isspace((unsigned char)*end)) end++;
    if (end == text || *end || errno || v < 0 || v > INT32_MAX)
        return rx_fail(RX_ERR_FORMAT, "webdataset %s: sample '%s': .cls '%s' is not a class number >= 0", shard, key, text);
    *out = (int32_t)v;
    return RX_OK;
}

// The current member's bytes, malloc'd.
static rx_status read_member(struct archive *a, struct archive_entry *e, const char *shard, uint8_t **out, size_t *len) {
    *out = NULL;
    const la_int64_t size = archive_entry_size(e);
    if (!archive_entry_size_is_set(e) || size < 0 || size > ((la_int64_t)1 << 31))
        return rx_fail(RX_ERR_FORMAT, "webdataset %s: member %s has no usable size", shard, archive_entry_pathname(e));
    uint8_t *buf = malloc(size ? (size_t)size : 1);
    if (!buf) return rx_fail(RX_ERR_OOM, "webdataset %s: out of memory for member %s", shard, archive_entry_pathname(e));
    size_t got = 0;
    while (got < (size_t)size) {
        la_ssize_t r = archive_read_data(a, buf + got, (size_t)size - got);
        if (r <= 0) {
            free(buf);
            return rx_fail(RX_ERR_FORMAT, "webdataset %s: member %s: %s", shard, archive_entry_pathname(e),
                           r < 0 ? archive_error_string(a) : "truncated");
        }
        got += (size_t)r;
    }
    *out = buf, *len = got;
    return RX_OK;
}

// Splits a member path into key and extension (webdataset's base_plus_ext); 0 when it has none.
static int split_key(const char *path, char *key, size_t cap, const char **ext) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strchr(base, '.');
    if (!dot || dot == base || !dot[1] || (size_t)(dot - path) >= cap) return 0;
    memcpy(key, path, (size_t)(dot - path)), key[dot - path] = 0;
    *ext = dot + 1;
    return 1;
}

// One member of `shard` into the current sample (finishing the previous one on a new key).
static rx_status take_member(struct archive *a, struct archive_entry *e, const char *shard, wds_build *b, wds_sample *s) {
    char key[PATH_MAX];
    const char *path = archive_entry_pathname(e), *ext;
    if (archive_entry_filetype(e) != AE_IFREG || !path || !split_key(path, key, sizeof key, &ext)) return RX_OK;
    const int is_img = !strcasecmp(ext, "jpg") || !strcasecmp(ext, "jpeg") || !strcasecmp(ext, "png");
    const int is_cls = !strcasecmp(ext, "cls");
    if (s->active && strcmp(key, s->key)) {
        RX_TRY(sample_finish(b, s, shard));
        sample_reset(s);
    }
    if (!s->active) snprintf(s->key, sizeof s->key, "%s", key), s->active = 1;
    if (!is_img && !is_cls) return RX_OK;
    if ((is_img && s->img) || (is_cls && s->has_label))
        return rx_fail(RX_ERR_FORMAT, "webdataset %s: sample '%s' has two %s members (second: %s)", shard, key,
                       is_img ? "image" : ".cls", path);
    uint8_t *buf = NULL;
    size_t len = 0;
    RX_TRY(read_member(a, e, shard, &buf, &len));
    rx_status st;
    if (is_cls) {
        st = parse_cls(buf, len, shard, key, &s->label);
        s->has_label = st == RX_OK;
    } else {
        if ((size_t)snprintf(s->img_name, sizeof s->img_name, "%s:%s", shard, path) >= sizeof s->img_name)
            st = rx_fail(RX_ERR_ARG, "webdataset %s: member name too long: %s", shard, path);
        else st = rx_image_decoder(path)(s->img_name, buf, len, 0, &s->img, &s->nc, &s->h, &s->w);
    }
    free(buf);
    return st;
}

// Every sample of one shard, in archive order.
static rx_status read_shard(const char *shard, wds_build *b) {
    struct archive *a = archive_read_new();
    if (!a) return rx_fail(RX_ERR_OOM, "webdataset %s: cannot create a libarchive reader", shard);
    archive_read_support_filter_all(a);   // .tar.gz and friends are undone by the reader
    archive_read_support_format_tar(a);
    rx_status st = RX_OK;
    if (archive_read_open_filename(a, shard, 1 << 16) != ARCHIVE_OK)
        st = rx_fail(RX_ERR_FORMAT, "webdataset %s: cannot read as a tar file: %s", shard, archive_error_string(a));
    wds_sample s = {0};
    struct archive_entry *e;
    const int n_before = b->n;
    while (st == RX_OK) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            st = rx_fail(RX_ERR_FORMAT, "webdataset %s: corrupt tar after its sample %d: %s", shard, b->n - n_before,
                         archive_error_string(a));
            break;
        }
        st = take_member(a, e, shard, b, &s);
    }
    if (st == RX_OK && s.active) st = sample_finish(b, &s, shard);   // samples do not span shards
    sample_reset(&s);
    archive_read_free(a);
    return st;
}

// A shard name as given, else under root (relative names only).
static rx_status resolve_shard(const char *name, const char *root, char *out, size_t cap) {
    if (strstr(name, "://") || !strncmp(name, "pipe:", 5))
        return rx_fail(RX_ERR_CONFIG, "dataset webdataset: '%s': only local tar files are read (no URLs or pipes)", name);
    struct stat sb;
    if (!stat(name, &sb) || name[0] == '/') {
        if ((size_t)snprintf(out, cap, "%s", name) >= cap) return rx_fail(RX_ERR_ARG, "path too long: %s", name);
        if (name[0] == '/' && stat(name, &sb)) return rx_fail(RX_ERR_IO, "dataset webdataset: shard not found: %s", name);
        return RX_OK;
    }
    RX_TRY(rx_data_path_join(out, cap, root, name));
    if (!stat(out, &sb)) return RX_OK;
    return rx_fail(RX_ERR_IO, "dataset webdataset: shard not found; looked for: %s, %s", name, out);
}

// The loaded shards as an rx_dataset (takes b's arrays).
static rx_status build_dataset(wds_build *b, const char *split, rx_dataset **out) {
    char name[64];
    snprintf(name, sizeof name, "webdataset/%s", split);
    const int classes = b->labelled == 1 ? b->max_label + 1 : 0;
    rx_dataset *d;
    RX_TRY(rx_dataset_alloc(name, 0, b->C, b->H, b->W, classes, &d));
    free(d->pixels), free(d->labels);   // an empty data set's placeholders, replaced by the grown arrays
    d->pixels = b->pixels, d->labels = b->labels, d->n = b->n;
    b->pixels = NULL, b->labels = NULL;
    rx_status st = RX_OK;
    for (int k = 0; st == RX_OK && k < classes; k++) {
        char cls[16];
        snprintf(cls, sizeof cls, "%d", k);
        st = rx_dataset_set_class_name(d, k, cls);
    }
    if (st != RX_OK) { rx_dataset_free(d); return st; }
    *out = d;
    return RX_OK;
}

static rx_status webdataset_load(const rx_params *p, const char *split, rx_dataset **out) {
    *out = NULL;
    int n_urls = 0;
    const char **urls = !strcmp(split, "test") && !rx_param_is_null(p, "test_urls")
                            ? rx_param_str_list(p, "test_urls", &n_urls)
                            : rx_param_is_null(p, "urls") ? NULL : rx_param_str_list(p, "urls", &n_urls);
    if (!urls || !n_urls)
        return rx_fail(RX_ERR_CONFIG, "dataset webdataset: `urls:` is required (a list of .tar shards, e.g. "
                                      "[\"shards/train-{000000..000003}.tar\"])");
    char **shards = NULL;
    int n = 0;
    rx_status st = RX_OK;
    for (int k = 0; st == RX_OK && k < n_urls; k++) st = rx_brace_expand(urls[k], &shards, &n);
    wds_build b = {.C = (int)rx_param_int(p, "channels"), .size = (int)rx_param_int(p, "size"), .labelled = -1};
    if (st == RX_OK && b.C != 1 && b.C != 3)
        st = rx_fail(RX_ERR_CONFIG, "dataset webdataset: channels must be 1 or 3, got %d", b.C);
    char path[PATH_MAX];
    for (int k = 0; st == RX_OK && k < n; k++)
        if ((st = resolve_shard(shards[k], rx_data_root(p), path, sizeof path)) == RX_OK) st = read_shard(path, &b);
    if (st == RX_OK && !b.n) st = rx_fail(RX_ERR_FORMAT, "dataset webdataset: the %d shard(s) of %s hold no samples", n, urls[0]);
    if (st == RX_OK) st = build_dataset(&b, split, out);
    rx_brace_free(shards, n);
    free(b.pixels), free(b.labels);
    return st;
}

static const rx_dataset_impl webdataset_impl = {webdataset_load};
const rx_component rx_comp_dataset_webdataset = {
    RX_KIND_DATASET, "webdataset", "WebDataset .tar shards: samples of key.jpg/.png (+ key.cls label), decoded once",
    webdataset_params, &webdataset_impl, NULL};
