/* imagefolder: round trip of PNGs written here with libpng (reference: the bytes written),
 * channel conversion (torchvision Grayscale luma formula), resize+crop shape, and clear
 * errors for files that are not PNGs, truncated PNGs and bad layouts. JPEG and PNG mixed in
 * one folder (reference: io/image.h's decoders, themselves checked against PIL in
 * test_io_jpeg), gray and CMYK JPEGs, 16-bit PNGs, and a corrupt JPEG named in the error. */
#include "registry/components.h"
#include "testutil.h"
#include "image_fixture.h"

#include <png.h>
#include <sys/stat.h>

#include "core/params.h"
#include "data/dataset.h"
#include "io/image.h"

static char g_tmp[64];

static void setup_tmp(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rx_imgf_XXXXXX");
    cr_assert(mkdtemp(g_tmp));
}
static void teardown_tmp(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    cr_expect_eq(system(cmd), 0);
}
TestSuite(data_imagefolder, .init = setup_tmp, .fini = teardown_tmp);

static void mkdirs(const char *rel) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_tmp, rel);
    cr_assert_eq(mkdir(path, 0755), 0, "%s", path);
}

// An RGB (nc = 3) or gray (nc = 1) PNG of w x h whose pixel bytes are f(seed, y, x, c).
static uint8_t pix(int seed, int y, int x, int c) { return (uint8_t)(seed * 37 + y * 11 + x * 5 + c * 70); }
static void write_png(const char *rel, int w, int h, int nc, int seed) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_tmp, rel);
    uint8_t *buf = malloc((size_t)w * h * nc);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < nc; c++) buf[(y * w + x) * nc + c] = pix(seed, y, x, c);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = w, img.height = h, img.format = nc == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    cr_assert(png_image_write_to_file(&img, path, 0, buf, 0, NULL), "%s: %s", path, img.message);
    free(buf);
}

static void write_text(const char *rel, const char *text, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_tmp, rel);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(text, 1, n, f), n);
    fclose(f);
}

static rx_status try_load(const char *rel, const char *size, const char *channels, const char *split, rx_dataset **d) {
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults("dataset/imagefolder", rx_comp_dataset_imagefolder.params, &p), RX_OK);
    char text[600];
    if (rel) {
        snprintf(text, sizeof text, "\"%s/%s\"", g_tmp, rel);
        cr_assert_eq(rx_params_set(p, "path", text), RX_OK, "%s", rx_last_error());
    }
    cr_assert_eq(rx_params_set(p, "size", size), RX_OK);
    cr_assert_eq(rx_params_set(p, "channels", channels), RX_OK);
    rx_status st = rx_dataset_load(&rx_comp_dataset_imagefolder, p, split, d);
    rx_params_free(p);
    return st;
}

Test(data_imagefolder, labelled_round_trip) {
    mkdirs("set"), mkdirs("set/cat"), mkdirs("set/ant");
    write_png("set/cat/b.png", 6, 5, 3, 1);
    write_png("set/cat/a.png", 6, 5, 3, 2);
    write_png("set/cat/c.png", 6, 5, 3, 3);
    write_png("set/ant/z.png", 6, 5, 3, 4);
    write_png("set/ant/y.png", 6, 5, 3, 5);
    write_text("set/ant/notes.txt", "skip me", 7);
    rx_dataset *d = NULL;
    cr_assert_eq(try_load("set", "0", "3", "train", &d), RX_OK, "%s", rx_last_error());
    cr_assert(d->n == 5 && d->channels == 3 && d->height == 5 && d->width == 6 && d->num_classes == 2);
    cr_expect_str_eq(d->class_names[0], "ant");
    cr_expect_str_eq(d->class_names[1], "cat");
    // sorted: ant/y(5), ant/z(4), cat/a(2), cat/b(1), cat/c(3)
    const int seeds[5] = {5, 4, 2, 1, 3}, labels[5] = {0, 0, 1, 1, 1};
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(d->labels[i], labels[i]);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 5; y++)
                for (int x = 0; x < 6; x++)
                    cr_assert_eq(d->pixels[((i * 3 + c) * 5 + y) * 6 + x], pix(seeds[i], y, x, c), "image %d", i);
    }
    rx_dataset_free(d);
}

// Gray -> 3 equal channels; RGB -> 1 channel by torchvision's luma, rounded.
Test(data_imagefolder, unlabelled_and_channel_conversion) {
    mkdirs("flat");
    write_png("flat/g.png", 4, 3, 1, 7);
    write_png("flat/h.png", 4, 3, 1, 8);
    rx_dataset *d = NULL;
    cr_assert_eq(try_load("flat", "0", "3", "test", &d), RX_OK, "%s", rx_last_error());
    cr_assert(d->n == 2 && d->num_classes == 0 && d->channels == 3);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(d->labels[i], -1);
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < 12; k++) cr_assert_eq(d->pixels[(i * 3 + c) * 12 + k], pix(7 + i, k / 4, k % 4, 0));
    }
    rx_dataset_free(d);
    mkdirs("rgb");
    write_png("rgb/a.png", 4, 3, 3, 9);
    cr_assert_eq(try_load("rgb", "0", "1", "train", &d), RX_OK, "%s", rx_last_error());
    for (int k = 0; k < 12; k++) {
        int y = k / 4, x = k % 4;
        float luma = (0.2989f * pix(9, y, x, 0) + 0.587f * pix(9, y, x, 1) + 0.114f * pix(9, y, x, 2)) / 255.0f;
        cr_expect(abs((int)d->pixels[k] - (int)lrintf(luma * 255.0f)) <= 0, "pixel %d: %d", k, d->pixels[k]);
    }
    rx_dataset_free(d);
}

// size: shorter side -> 4 then centre crop: any input size gives 4x4; a constant image stays constant
// (the filter weights sum to 1).
Test(data_imagefolder, size_resizes_and_crops) {
    mkdirs("sz"), mkdirs("sz/a");
    write_png("sz/a/wide.png", 13, 7, 3, 1);
    write_png("sz/a/tall.png", 5, 9, 3, 2);
    char path[512];
    snprintf(path, sizeof path, "%s/sz/a/const.png", g_tmp);
    uint8_t flat[10 * 10 * 3];
    memset(flat, 200, sizeof flat);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION, img.width = 10, img.height = 10, img.format = PNG_FORMAT_RGB;
    cr_assert(png_image_write_to_file(&img, path, 0, flat, 0, NULL));
    rx_dataset *d = NULL;
    cr_assert_eq(try_load("sz", "4", "3", "train", &d), RX_OK, "%s", rx_last_error());
    cr_assert(d->n == 3 && d->height == 4 && d->width == 4);
    for (int k = 0; k < 48; k++) cr_expect_eq(d->pixels[k], 200);  // const.png sorts first
    rx_dataset_free(d);
}

Test(data_imagefolder, split_subfolder_is_used) {
    mkdirs("sp"), mkdirs("sp/train"), mkdirs("sp/test"), mkdirs("sp/train/x"), mkdirs("sp/test/x");
    write_png("sp/train/x/1.png", 3, 3, 3, 1);
    write_png("sp/train/x/2.png", 3, 3, 3, 2);
    write_png("sp/test/x/1.png", 3, 3, 3, 3);
    rx_dataset *tr = NULL, *te = NULL;
    cr_assert_eq(try_load("sp", "0", "3", "train", &tr), RX_OK, "%s", rx_last_error());
    cr_assert_eq(try_load("sp", "0", "3", "test", &te), RX_OK, "%s", rx_last_error());
    cr_expect_eq(tr->n, 2);
    cr_expect_eq(te->n, 1);
    cr_expect_eq(te->pixels[0], pix(3, 0, 0, 0));
    rx_dataset_free(tr), rx_dataset_free(te);
}

Test(data_imagefolder, not_a_png_is_format_error) {
    mkdirs("bad"), mkdirs("bad/k");
    write_png("bad/k/a.png", 3, 3, 3, 1);
    write_text("bad/k/b.png", "GIF89a this is not a png", 24);
    rx_dataset *d = NULL;
    cr_assert_eq(try_load("bad", "0", "3", "train", &d), RX_ERR_FORMAT);
    const char *msg = rx_last_error();
    cr_expect(strstr(msg, "b.png") && strstr(msg, "not a PNG file"), "%s", msg);
    cr_expect_null(d);
}

Test(data_imagefolder, truncated_png_is_format_error) {
    mkdirs("tr");
    write_png("tr/a.png", 40, 40, 3, 1);
    char path[512];
    snprintf(path, sizeof path, "%s/tr/a.png", g_tmp);
    long n = 0;
    char *buf = rx_test_read_file(path, &n);
    cr_assert(buf && n > 100);
    write_text("tr/a.png", buf, (size_t)n / 2);  // cut inside the image data
    free(buf);
    rx_dataset *d = NULL;
    cr_assert_eq(try_load("tr", "0", "3", "train", &d), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "corrupt PNG"), "%s", rx_last_error());
}

Test(data_imagefolder, layout_errors) {
    mkdirs("mix"), mkdirs("mix/c");
    write_png("mix/c/a.png", 3, 3, 3, 1);
    write_png("mix/loose.png", 3, 3, 3, 1);
    rx_dataset *d = NULL;
    cr_expect_eq(try_load("mix", "0", "3", "train", &d), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "loose"), "%s", rx_last_error());

    mkdirs("sizes");
    write_png("sizes/a.png", 3, 3, 3, 1);
    write_png("sizes/b.png", 4, 3, 3, 1);
    cr_expect_eq(try_load("sizes", "0", "3", "train", &d), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "set size"), "%s", rx_last_error());

    mkdirs("empty");
    cr_expect_eq(try_load("empty", "0", "3", "train", &d), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "no images (.png, .jpg, .jpeg)"), "%s", rx_last_error());

    cr_expect_eq(try_load("does_not_exist", "0", "3", "train", &d), RX_ERR_IO);
    cr_expect(strstr(rx_last_error(), "not found"), "%s", rx_last_error());

    cr_expect_eq(try_load(NULL, "0", "3", "train", &d), RX_ERR_CONFIG);
    cr_expect(strstr(rx_last_error(), "path"), "%s", rx_last_error());
}

static const char *tmp_file(const char *rel) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_tmp, rel);
    return path;
}

// The JPEG of fx_smooth_rgb(w, h, seed) (nc = 3), its gray version (nc = 1) or CMYK (nc = 4).
static void write_jpeg(const char *rel, int w, int h, int nc, int seed) {
    uint8_t *rgb = fx_smooth_rgb(w, h, seed), *px = malloc((size_t)w * h * 4);
    cr_assert_not_null(px);
    for (int i = 0; i < w * h; i++)
        for (int c = 0; c < nc; c++) px[i * nc + c] = nc == 1 ? rgb[i * 3] : nc == 3 ? rgb[i * 3 + c] : (uint8_t)(rgb[i * 3 + c % 3] ^ (c == 3 ? 0x55 : 0));
    fx_bytes j = fx_jpeg(px, w, h, nc, 90);
    fx_write(tmp_file(rel), j.data, j.len);
    free(j.data), free(px), free(rgb);
}

// dataset image i == the file decoded by io/image.h, converted to 3 channels (gray repeated)
static void expect_image(const rx_dataset *d, int i, const char *rel) {
    uint8_t *px;
    int c, h, w;
    cr_assert_eq(rx_image_read(tmp_file(rel), 0, &px, &c, &h, &w), RX_OK, "%s", rx_last_error());
    cr_assert(h == d->height && w == d->width && d->channels == 3);
    const size_t hw = (size_t)h * w;
    for (int ch = 0; ch < 3; ch++)
        for (size_t k = 0; k < hw; k++)
            cr_assert_eq(d->pixels[((size_t)i * 3 + ch) * hw + k], px[(c >= 3 ? ch : 0) * hw + k], "%s channel %d pixel %zu", rel, ch, k);
    free(px);
}

// .png, .JPG, .jpeg, .Jpeg side by side, in strcmp order; gray and CMYK JPEGs become RGB.
Test(data_imagefolder, mixed_png_and_jpeg_any_case) {
    mkdirs("mixed"), mkdirs("mixed/a"), mkdirs("mixed/b");
    write_png("mixed/a/1.png", 12, 10, 3, 1);
    write_jpeg("mixed/a/2.JPG", 12, 10, 3, 2);
    write_jpeg("mixed/a/3.jpeg", 12, 10, 1, 3);
    write_jpeg("mixed/b/4.Jpeg", 12, 10, 4, 4);
    write_text("mixed/b/5.gif", "GIF89a", 6);   // not an image this reads: skipped
    rx_dataset *d = NULL;
    cr_assert_eq(try_load("mixed", "0", "3", "train", &d), RX_OK, "%s", rx_last_error());
    cr_assert(d->n == 4 && d->num_classes == 2 && d->height == 10 && d->width == 12);
    const char *order[4] = {"mixed/a/1.png", "mixed/a/2.JPG", "mixed/a/3.jpeg", "mixed/b/4.Jpeg"};
    const int labels[4] = {0, 0, 0, 1};
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(d->labels[i], labels[i]);
        expect_image(d, i, order[i]);
    }
    rx_dataset_free(d);
}

Test(data_imagefolder, corrupt_jpeg_is_named) {
    mkdirs("cj"), mkdirs("cj/k");
    write_jpeg("cj/k/a.jpg", 40, 30, 3, 1);
    write_jpeg("cj/k/b.jpg", 40, 30, 3, 2);
    long n = 0;
    char *buf = rx_test_read_file(tmp_file("cj/k/b.jpg"), &n);
    cr_assert(buf && n > 100);
    write_text("cj/k/b.jpg", buf, (size_t)n * 2 / 3);   // cut inside the entropy-coded data
    free(buf);
    rx_dataset *d = NULL;
    cr_assert_eq(try_load("cj", "0", "3", "train", &d), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "b.jpg") && strstr(rx_last_error(), "corrupt JPEG"), "%s", rx_last_error());
    cr_expect_null(d);
}

// A 16-bit RGB PNG beside an 8-bit one: high bytes, as PIL (reference: the samples written).
Test(data_imagefolder, sixteen_bit_png) {
    mkdirs("p16");
    uint16_t v[2 * 3 * 3];
    for (int k = 0; k < 18; k++) v[k] = (uint16_t)(k * 3851 + 7);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION, img.width = 3, img.height = 2, img.format = PNG_FORMAT_LINEAR_RGB;
    cr_assert(png_image_write_to_file(&img, tmp_file("p16/a.png"), 0, v, 0, NULL), "%s", img.message);
    rx_dataset *d = NULL;
    cr_assert_eq(try_load("p16", "0", "3", "train", &d), RX_OK, "%s", rx_last_error());
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 6; k++) cr_expect_eq(d->pixels[c * 6 + k], v[k * 3 + c] >> 8, "channel %d pixel %d", c, k);
    rx_dataset_free(d);
}
