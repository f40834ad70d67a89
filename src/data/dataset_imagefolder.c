/* dataset_imagefolder.c — a user's own PNG images (libpng).
 *
 * Layout, under `path` (or path/<split>/ when that folder exists):
 *     labelled:    <class>/NAME.png — one sub-folder per class; classes are the folder names,
 *                                    sorted by strcmp, numbered 0, 1, ...
 *     unlabelled:  NAME.png         — labels -1, no classes
 * (both at once is an error: it would silently drop images). Hidden entries (".x") and
 * non-.png files are skipped; files are taken in sorted order.
 *
 * Every image is converted to `channels` (gray is repeated, colour becomes luma
 * 0.2989 R + 0.587 G + 0.114 B as torchvision's Grayscale, alpha is dropped). With size = 0
 * all images must share one size; with size = S each is resized so its shorter side is S
 * (antialiased bilinear, torchvision Resize(S)) and centre-cropped to S x S. */
#include "data/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data/transform.h"

static const rx_param_spec imagefolder_params[] = {
    {"path", RX_P_PATH, "null", RX_NO_RANGE, NULL,
     "folder of class sub-folders of .png files (or of .png files: unlabelled); relative paths are tried "
     "as given, then under root"},
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

static int is_png_name(const char *name) {
    size_t n = strlen(name);
    return n > 4 && !strcasecmp(name + n - 4, ".png");
}
static int is_dir(const char *path) { struct stat sb; return !stat(path, &sb) && S_ISDIR(sb.st_mode); }

// Lists dir: sub-folders into dirs, .png files into files (both sorted, names only).
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
        } else if (is_png_name(e->d_name) && !is_dir(path)) {
            if (!strlist_push(files, e->d_name)) st = rx_fail(RX_ERR_OOM, "imagefolder: out of memory");
        }
    }
    closedir(dp);
    if (dirs) strlist_sort(dirs);
    strlist_sort(files);
    return st;
}

// ---- PNG decoding ------------------------------------------------------------------------

// Reads a PNG as 8-bit in its own channel layout (gray, gray+alpha, RGB or RGBA), interleaved.
// *pixels is malloc'd [h, w, nc].
static rx_status png_load(const char *path, uint8_t **pixels, int *h, int *w, int *nc) {
    *pixels = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return rx_fail(RX_ERR_IO, "imagefolder: cannot open %s: %s", path, strerror(errno));
    unsigned char sig[8];
    size_t got = fread(sig, 1, 8, f);
    fclose(f);
    if (got < 8 || png_sig_cmp(sig, 0, 8))
        return rx_fail(RX_ERR_FORMAT, "imagefolder: %s is not a PNG file (no PNG signature)", path);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path))
        return rx_fail(RX_ERR_FORMAT, "imagefolder: %s: corrupt PNG: %s", path, img.message);
    // keep gray/colour and alpha as in the file; 8 bits; no palette
    img.format &= PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA;
    size_t bytes = PNG_IMAGE_SIZE(img);
    uint8_t *buf = malloc(bytes ? bytes : 1);
    if (!buf) { png_image_free(&img); return rx_fail(RX_ERR_OOM, "imagefolder: out of memory for %s", path); }
    if (!png_image_finish_read(&img, NULL, buf, 0, NULL)) {
        rx_status st = rx_fail(RX_ERR_FORMAT, "imagefolder: %s: corrupt PNG: %s", path, img.message);
        free(buf);
        png_image_free(&img);
        return st;
    }
    *pixels = buf, *h = (int)img.height, *w = (int)img.width, *nc = (int)PNG_IMAGE_PIXEL_CHANNELS(img.format);
    return RX_OK;
}

// Interleaved [h, w, nc] (nc: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) -> planar [C, h, w] floats in [0,1].
static void to_planar(const uint8_t *src, int h, int w, int nc, int C, float *dst) {
    const size_t hw = (size_t)h * w;
    const int colour = nc >= 3;
    for (size_t i = 0; i < hw; i++) {
        const uint8_t *p = src + i * nc;
        if (C == 3) {
            for (int c = 0; c < 3; c++) dst[c * hw + i] = p[colour ? c : 0] / 255.0f;
        } else {
            dst[i] = colour ? (0.2989f * p[0] + 0.587f * p[1] + 0.114f * p[2]) / 255.0f : p[0] / 255.0f;
        }
    }
}

static uint8_t to_byte(float v) { return (uint8_t)lrintf(fminf(fmaxf(v, 0.0f), 1.0f) * 255.0f); }

// Decodes one file into dataset slot `i`.
static rx_status decode_into(const char *path, rx_dataset *d, int i, int size) {
    uint8_t *raw;
    int h, w, nc;
    RX_TRY(png_load(path, &raw, &h, &w, &nc));
    const int C = d->channels;
    rx_status st = RX_OK;
    if (!size && (h != d->height || w != d->width)) {
        st = rx_fail(RX_ERR_FORMAT, "imagefolder: %s is %dx%d but the first image is %dx%d; set size: to resize them all",
                     path, w, h, d->width, d->height);
        free(raw);
        return st;
    }
    // shorter side -> size (torchvision Resize(int): the longer side is int(size * long / short))
    int rh = h, rw = w;
    if (size) {
        if (h <= w) rh = size, rw = (int)((int64_t)size * w / h);
        else rw = size, rh = (int)((int64_t)size * h / w);
    }
    float *planar = malloc((size_t)C * h * w * sizeof *planar);
    float *resized = malloc((size_t)C * rh * rw * sizeof *resized);
    float *tmp = malloc((size_t)C * h * rw * sizeof *tmp);
    if (!planar || !resized || !tmp) st = rx_fail(RX_ERR_OOM, "imagefolder: out of memory for %s", path);
    if (st == RX_OK) {
        to_planar(raw, h, w, nc, C, planar);
        if (rh != h || rw != w) st = rx_resize_bilinear_aa(planar, C, h, w, resized, rh, rw, tmp);
        else memcpy(resized, planar, (size_t)C * h * w * sizeof *planar);
    }
    if (st == RX_OK) {  // centre crop to the dataset size (identity when size = 0); torchvision rounding
        const int H = d->height, W = d->width;
        const int top = (int)nearbyint((rh - H) / 2.0), left = (int)nearbyint((rw - W) / 2.0);
        uint8_t *dst = d->pixels + (size_t)i * C * H * W;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    dst[((size_t)c * H + y) * W + x] = to_byte(resized[((size_t)c * rh + top + y) * rw + left + x]);
    }
    free(raw), free(planar), free(resized), free(tmp);
    return st;
}

// ---- the loader --------------------------------------------------------------------------

// The folder to read: path (or root/path when path is relative and missing), then its <split>/.
static rx_status resolve_folder(const rx_params *p, const char *split, char *out, size_t cap) {
    const char *path = rx_param_str(p, "path");
    if (!path || !*path)
        return rx_fail(RX_ERR_CONFIG, "dataset imagefolder: `path:` is required (a folder of class folders of .png files)");
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
    if (st == RX_OK && !paths.n) st = rx_fail(RX_ERR_FORMAT, "imagefolder %s: no .png images found", dir);

    // the dataset's image size: size x size, or the first image's
    int H = size, W = size;
    if (st == RX_OK && !size) {
        uint8_t *raw;
        int nc;
        if ((st = png_load(paths.s[0], &raw, &H, &W, &nc)) == RX_OK) free(raw);
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
    RX_KIND_DATASET, "imagefolder", "your own PNG images: one sub-folder per class, or a flat folder (unlabelled)",
    imagefolder_params, &imagefolder_impl, "image_folder"};
