/* dataset_imagefolder.c — a user's own PNG and JPEG images (torchvision's ImageFolder layout).
 *
 * Layout, under `path` (or path/<split>/ when that folder exists):
 *     labelled:    <class>/NAME.jpg — one sub-folder per class; classes are the folder names,
 *                                    sorted by strcmp, numbered 0, 1, ...
 *     unlabelled:  NAME.png         — labels -1, no classes
 * (both at once is an error: it would silently drop images). Images are .png, .jpg and .jpeg
 * in any case, mixed freely, decoded by io/image.h's table (JPEG: EXIF orientation applied,
 * CMYK -> RGB; PNG: 16-bit -> high byte; both as PIL). Hidden entries (".x") and other files
 * are skipped; files are taken in strcmp order of their names.
 *
 * Every image is converted to `channels` and sized as data/dataset_image.h says (gray is
 * repeated, colour becomes torchvision's luma, alpha is dropped; size = 0: all images share
 * one size; size = S: shorter side to S, antialiased bilinear, centre crop S x S). */
#include "data/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset_image.h"
#include "io/image.h"

static const rx_param_spec imagefolder_params[] = {
    {"path", RX_P_PATH, "null", RX_NO_RANGE, NULL,
     "folder of class sub-folders of images, .png/.jpg/.jpeg (or of images: unlabelled); relative paths "
     "are tried as given, then under root"},
    {"root", RX_P_PATH, "null", RX_NO_RANGE, NULL, "base data directory for a relative path; null = $RUNEXP_DATA, else ./data"},
    {"size", RX_P_INT, "0", 0, 65536, NULL, "0 = keep (all images must match); S = shorter side to S, centre crop S x S"},
    {"channels", RX_P_INT, "3", 1, 3, NULL, "1 (gray) or 3 (RGB)"},
    {0}};

// ---- a growable, sortable list of strings ------------------------------------------------

typedef struct { char **s; int n, cap; } strlist;

static int strlist_push(strlist *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **t = realloc(l->s, (size_t)cap * sizeof *t);
        if (!t) return 0;
        l->s = t, l->cap = cap;
    }
    return (l->s[l->n] = strdup(s)) ? (l->n++, 1) : 0;
}
static void strlist_free(strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static void strlist_sort(strlist *l) { if (l->n) qsort(l->s, (size_t)l->n, sizeof *l->s, cmp_str); }

static int is_dir(const char *path) { struct stat sb; return !stat(path, &sb) && S_ISDIR(sb.st_mode); }

// Lists dir: sub-folders into dirs, image files (io/image.h) into files (both sorted, names only).
static rx_status list_dir(const char *dir, strlist *dirs, strlist *files) {
    DIR *dp = opendir(dir);
    if (!dp) return rx_fail(RX_ERR_IO, "imagefolder: cannot open folder %s: %s", dir, strerror(errno));
    struct dirent *e;
    char path[4096];
    rx_status st = RX_OK;
    while (st == RX_OK && (e = readdir(dp))) {
        if (e->d_name[0] == '.') continue;
        if (rx_data_path_join(path, sizeof path, dir, e->d_name) != RX_OK) { st = RX_ERR_ARG; break; }
        if (dirs && is_dir(path)) {
            if (!strlist_push(dirs, e->d_name)) st = rx_fail(RX_ERR_OOM, "imagefolder: out of memory");
        } else if (rx_image_decoder(e->d_name) && !is_dir(path)) {
            if (!strlist_push(files, e->d_name)) st = rx_fail(RX_ERR_OOM, "imagefolder: out of memory");
        }
    }
    closedir(dp);
    if (dirs) strlist_sort(dirs);
    strlist_sort(files);
    return st;
}

// Decodes one file into dataset slot `i`.
static rx_status decode_into(const char *path, rx_dataset *d, int i, int size) {
    uint8_t *raw;
    int nc, h, w;
    RX_TRY(rx_image_read(path, 0, &raw, &nc, &h, &w));
    const size_t slot = (size_t)d->channels * d->height * d->width;
    rx_status st = rx_dataset_image_store(d->pixels + (size_t)i * slot, d->channels, d->height, d->width, raw, nc, h, w,
                                          size, path);
    free(raw);
    return st;
}

// ---- the loader --------------------------------------------------------------------------

// The folder to read: path (or root/path when path is relative and missing), then its <split>/.
static rx_status resolve_folder(const rx_params *p, const char *split, char *out, size_t cap) {
    const char *path = rx_param_str(p, "path");
    if (!path || !*path)
        return rx_fail(RX_ERR_CONFIG, "dataset imagefolder: `path:` is required (a folder of class folders of .png/.jpg images)");
    char base[4096];
    snprintf(base, sizeof base, "%s", path);
    if (!is_dir(base) && path[0] != '/') {
        char alt[4096];
        RX_TRY(rx_data_path_join(alt, sizeof alt, rx_data_root(p), path));
        if (!is_dir(alt))
            return rx_fail(RX_ERR_IO, "dataset imagefolder: folder not found; looked for: %s, %s", path, alt);
        snprintf(base, sizeof base, "%s", alt);
    } else if (!is_dir(base)) {
        return rx_fail(RX_ERR_IO, "dataset imagefolder: folder not found: %s", path);
    }
    char sub[4096];
    RX_TRY(rx_data_path_join(sub, sizeof sub, base, split));
    snprintf(out, cap, "%s", is_dir(sub) ? sub : base);
    return RX_OK;
}

static rx_status imagefolder_load(const rx_params *p, const char *split, rx_dataset **out) {
    *out = NULL;
    const int size = (int)rx_param_int(p, "size"), C = (int)rx_param_int(p, "channels");
    if (C != 1 && C != 3) return rx_fail(RX_ERR_CONFIG, "dataset imagefolder: channels must be 1 or 3, got %d", C);
    char dir[4096];
    RX_TRY(resolve_folder(p, split, dir, sizeof dir));

    // collect (file path, label) in order
    strlist classes = {0}, loose = {0}, paths = {0};
    int32_t *labels = NULL;
    rx_status st = list_dir(dir, &classes, &loose);
    if (st == RX_OK && classes.n && loose.n)
        st = rx_fail(RX_ERR_FORMAT, "imagefolder %s: has class folders (%s, ...) and loose images (%s, ...); put every "
                     "image in a class folder, or none", dir, classes.s[0], loose.s[0]);
    char path[4096], sub[4096];
    if (st == RX_OK && !classes.n)
        for (int i = 0; st == RX_OK && i < loose.n; i++)
            if ((st = rx_data_path_join(path, sizeof path, dir, loose.s[i])) == RX_OK && !strlist_push(&paths, path))
                st = rx_fail(RX_ERR_OOM, "imagefolder: out of memory");
    int label_cap = 0;
    for (int k = 0; st == RX_OK && k < classes.n; k++) {
        strlist files = {0};
        if ((st = rx_data_path_join(sub, sizeof sub, dir, classes.s[k])) == RX_OK) st = list_dir(sub, NULL, &files);
        for (int i = 0; st == RX_OK && i < files.n; i++) {
            if ((st = rx_data_path_join(path, sizeof path, sub, files.s[i])) != RX_OK) break;
            if (!strlist_push(&paths, path)) { st = rx_fail(RX_ERR_OOM, "imagefolder: out of memory"); break; }
            if (paths.n > label_cap) {
                label_cap = paths.cap;
                int32_t *t = realloc(labels, (size_t)label_cap * sizeof *t);
                if (!t) { st = rx_fail(RX_ERR_OOM, "imagefolder: out of memory"); break; }
                labels = t;
            }
            labels[paths.n - 1] = k;
        }
        strlist_free(&files);
    }
    if (st == RX_OK && !paths.n) st = rx_fail(RX_ERR_FORMAT, "imagefolder %s: no images (%s) found", dir, rx_image_extensions());

    // the dataset's image size: size x size, or the first image's
    int H = size, W = size;
    if (st == RX_OK && !size) {
        uint8_t *raw;
        int nc;
        if ((st = rx_image_read(paths.s[0], 0, &raw, &nc, &H, &W)) == RX_OK) free(raw);
    }
    rx_dataset *d = NULL;
    char name[64];
    snprintf(name, sizeof name, "imagefolder/%s", split);
    if (st == RX_OK) st = rx_dataset_alloc(name, paths.n, C, H, W, classes.n, &d);
    for (int k = 0; st == RX_OK && k < classes.n; k++) st = rx_dataset_set_class_name(d, k, classes.s[k]);
    for (int i = 0; st == RX_OK && i < paths.n; i++) {
        st = decode_into(paths.s[i], d, i, size);
        d->labels[i] = classes.n ? labels[i] : -1;
    }
    strlist_free(&classes), strlist_free(&loose), strlist_free(&paths);
    free(labels);
    if (st != RX_OK) { rx_dataset_free(d); return st; }
    *out = d;
    return RX_OK;
}

static const rx_dataset_impl imagefolder_impl = {imagefolder_load};
const rx_component rx_comp_dataset_imagefolder = {
    RX_KIND_DATASET, "imagefolder", "your own PNG/JPEG images: one sub-folder per class, or a flat folder (unlabelled)",
    imagefolder_params, &imagefolder_impl, "image_folder"};
