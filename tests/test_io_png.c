/* test_io_png.c — PNG write/read, grids, format variants, refusal of non-PNGs.
 *
 * References: the byte mapping formula of png.h (round(clamp((x+1)/2)*255)),
 * grid geometry formula (torchvision make_grid layout), and PNGs of every colour
 * type written here directly with libpng from known pixel values; 16-bit -> 8-bit
 * is round(v * 255 / 65535); gray from RGB is PIL's BT.601 luma. */
#include "testutil.h"
#include "io/fsutil.h"
#include "io/png.h"

#include <png.h>
#include <stdint.h>

static char tmpdir[256];
static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rx_test_png_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}
static void remove_tmpdir(void) { rx_fs_remove_tree(tmpdir); }
TestSuite(png, .init = make_tmpdir, .fini = remove_tmpdir);

static const char *tmp_path(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

#define ASSERT_OK(expr) do { rx_status s_ = (expr); cr_assert_eq(s_, RX_OK, "%s -> %s", #expr, rx_last_error()); } while (0)

/* The documented mapping, written independently of the library. */
static uint8_t ref_byte(double x, int signed_range) {
    double u = signed_range ? (x + 1) / 2 : x;
    if (u < 0) u = 0;
    if (u > 1) u = 1;
    return (uint8_t)nearbyint(u * 255);
}

Test(png, byte_mapping_edges) {
    cr_assert_eq(rx_png_to_byte(-1.0f, RX_PNG_RANGE_SIGNED), 0);
    cr_assert_eq(rx_png_to_byte(1.0f, RX_PNG_RANGE_SIGNED), 255);
    cr_assert_eq(rx_png_to_byte(-3.0f, RX_PNG_RANGE_SIGNED), 0);
    cr_assert_eq(rx_png_to_byte(7.0f, RX_PNG_RANGE_SIGNED), 255);
    cr_assert_eq(rx_png_to_byte(NAN, RX_PNG_RANGE_SIGNED), 0);
    cr_assert_eq(rx_png_to_byte(0.0f, RX_PNG_RANGE_UNIT), 0);
    cr_assert_eq(rx_png_to_byte(1.0f, RX_PNG_RANGE_UNIT), 255);
    cr_assert_eq(rx_png_to_byte(0.2f, RX_PNG_RANGE_UNIT), 51);     /* 0.2 * 255 = 51 */
    cr_assert_eq(rx_png_to_byte(-0.6f, RX_PNG_RANGE_SIGNED), 51);  /* (1 - 0.6) / 2 * 255 = 51 */
}

Test(png, write_read_round_trip_rgb_signed) {
    enum { C = 3, H = 5, W = 7 };
    float img[C * H * W];
    for (int i = 0; i < C * H * W; i++) img[i] = -1.2f + 2.4f * (float)i / (C * H * W - 1);   /* includes clamping */
    ASSERT_OK(rx_png_write_f32(tmp_path("rgb.png"), img, C, H, W, RX_PNG_RANGE_SIGNED));
    uint8_t *px;
    int c, h, w;
    ASSERT_OK(rx_png_read(tmp_path("rgb.png"), 0, &px, &c, &h, &w));
    cr_assert(c == C && h == H && w == W, "%d %d %d", c, h, w);
    for (int i = 0; i < C * H * W; i++) cr_assert_eq(px[i], ref_byte(img[i], 1), "pixel %d", i);
    free(px);
}

Test(png, write_read_round_trip_gray_unit_and_u8_rgba) {
    enum { H = 4, W = 3 };
    float g[H * W];
    for (int i = 0; i < H * W; i++) g[i] = (float)i / (H * W - 1);
    ASSERT_OK(rx_png_write_f32(tmp_path("g.png"), g, 1, H, W, RX_PNG_RANGE_UNIT));
    uint8_t *px;
    int c, h, w;
    ASSERT_OK(rx_png_read(tmp_path("g.png"), 0, &px, &c, &h, &w));
    cr_assert(c == 1 && h == H && w == W);
    for (int i = 0; i < H * W; i++) cr_assert_eq(px[i], ref_byte(g[i], 0));
    free(px);

    uint8_t rgba[4 * H * W];
    for (int i = 0; i < 4 * H * W; i++) rgba[i] = (uint8_t)(i * 37 + 11);
    ASSERT_OK(rx_png_write_u8(tmp_path("rgba.png"), rgba, 4, H, W));
    ASSERT_OK(rx_png_read(tmp_path("rgba.png"), 0, &px, &c, &h, &w));
    cr_assert(c == 4 && h == H && w == W);
    cr_assert_eq(memcmp(px, rgba, sizeof rgba), 0);
    free(px);
}

Test(png, grid_geometry) {
    /* 5 images 2x3 in a 2x3 grid with 1 px padding: 6th cell empty (padding). */
    enum { N = 5, C = 3, H = 2, W = 3 };
    float imgs[N * C * H * W];
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < H * W; p++) imgs[(i * C + c) * H * W + p] = -0.8f + 0.3f * i + 0.1f * c + 0.01f * p;
    rx_png_grid g = {.rows = 2, .cols = 3, .pad = 1, .pad_value = 1.0f, .range = RX_PNG_RANGE_SIGNED};
    ASSERT_OK(rx_png_write_grid_f32(tmp_path("grid.png"), imgs, N, C, H, W, &g));
    uint8_t *px;
    int c, h, w;
    ASSERT_OK(rx_png_read(tmp_path("grid.png"), 0, &px, &c, &h, &w));
    cr_assert_eq(h, 2 * (H + 1) + 1);
    cr_assert_eq(w, 3 * (W + 1) + 1);
    cr_assert_eq(c, C);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int in_cell = (y % (H + 1)) != 0 && (x % (W + 1)) != 0;
            int i = (y / (H + 1)) * 3 + x / (W + 1);
            for (int ch = 0; ch < C; ch++) {
                uint8_t want = 255;   /* pad_value 1.0 in [-1, 1] */
                if (in_cell && i < N) {
                    int py = y % (H + 1) - 1, pxl = x % (W + 1) - 1;
                    want = ref_byte(imgs[(i * C + ch) * H * W + py * W + pxl], 1);
                }
                cr_assert_eq(px[(ch * h + y) * w + x], want, "y=%d x=%d c=%d", y, x, ch);
            }
        }
    free(px);

    cr_assert_eq(rx_png_write_grid_f32(tmp_path("x.png"), imgs, 7, C, H, W, &g), RX_ERR_ARG);
    cr_assert(strstr(rx_last_error(), "do not fit"));
    cr_assert_eq(rx_png_write_f32(tmp_path("x.png"), imgs, 5, H, W, RX_PNG_RANGE_SIGNED), RX_ERR_ARG);
    cr_assert(!rx_fs_exists(tmp_path("x.png")));
}

/* ---- PNG variants written directly with libpng ---- */

typedef struct {
    int color_type, depth, interlace, w, h;
    const uint8_t *rows;          /* packed rows as libpng expects them (big-endian 16-bit) */
    const png_color *palette;
    int npalette;
    const uint8_t *trns;
    int ntrns;
} raw_png;

static const char *write_raw_png(const char *name, const raw_png *r) {
    const char *path = tmp_path(name);
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    cr_assert(png && info);
    if (setjmp(png_jmpbuf(png))) cr_assert_fail("libpng failed writing %s", name);
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)r->w, (png_uint_32)r->h, r->depth, r->color_type, r->interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (r->palette) png_set_PLTE(png, info, r->palette, r->npalette);
    if (r->trns) png_set_tRNS(png, info, r->trns, r->ntrns, NULL);
    png_write_info(png, info);
    int channels = r->color_type == PNG_COLOR_TYPE_RGB ? 3 : r->color_type == PNG_COLOR_TYPE_RGB_ALPHA ? 4
                 : r->color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    size_t rowbytes = ((size_t)r->w * channels * r->depth + 7) / 8;
    png_bytep rows[16];
    for (int y = 0; y < r->h; y++) rows[y] = (png_bytep)(r->rows + y * rowbytes);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(fp);
    return path;
}

static uint8_t *read_ok(const char *path, int want, int *c, int *h, int *w) {
    uint8_t *px;
    ASSERT_OK(rx_png_read(path, want, &px, c, h, w));
    return px;
}

Test(png, reads_1bit_gray_palette_trns_gray_alpha) {
    int c, h, w;
    /* 1-bit gray, 10x2: bits 1010101011 / 0000000001 -> 255/0. */
    const uint8_t bits[] = {0xAA, 0xC0, 0x00, 0x40};
    const char *p = write_raw_png("g1.png", &(raw_png){PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, 10, 2, bits});
    uint8_t *px = read_ok(p, 0, &c, &h, &w);
    cr_assert(c == 1 && h == 2 && w == 10);
    const uint8_t want_g[20] = {255, 0, 255, 0, 255, 0, 255, 0, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255};
    cr_assert_eq(memcmp(px, want_g, 20), 0);
    free(px);

    /* Palette with transparency -> RGBA. */
    const png_color pal[3] = {{255, 0, 0}, {0, 128, 0}, {10, 20, 30}};
    const uint8_t trns[2] = {255, 64};     /* entry 1 is translucent, entry 2 opaque */
    const uint8_t idx[4] = {0, 1, 2, 1};   /* 4x1 */
    p = write_raw_png("pal.png", &(raw_png){PNG_COLOR_TYPE_PALETTE, 8, PNG_INTERLACE_NONE, 4, 1, idx, pal, 3, trns, 2});
    px = read_ok(p, 0, &c, &h, &w);
    cr_assert(c == 4 && h == 1 && w == 4, "%d", c);
    const uint8_t want_pal[16] = {255, 0, 10, 0, /* R */ 0, 128, 20, 128, /* G */ 0, 0, 30, 0, /* B */
                                  255, 64, 255, 64 /* A */};
    cr_assert_eq(memcmp(px, want_pal, 16), 0);
    free(px);
    /* ...forced to RGB: alpha dropped. */
    px = read_ok(p, 3, &c, &h, &w);
    cr_assert_eq(c, 3);
    cr_assert_eq(memcmp(px, want_pal, 12), 0);
    free(px);

    /* Gray + alpha, forced to RGBA (gray copied to R, G, B). */
    const uint8_t ga[4] = {100, 200, 7, 9};   /* 2x1: (100, a=200), (7, a=9) */
    p = write_raw_png("ga.png", &(raw_png){PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE, 2, 1, ga});
    px = read_ok(p, 0, &c, &h, &w);
    cr_assert(c == 2 && px[0] == 100 && px[1] == 7 && px[2] == 200 && px[3] == 9);
    free(px);
    px = read_ok(p, 4, &c, &h, &w);
    const uint8_t want_ga[8] = {100, 7, 100, 7, 100, 7, 200, 9};
    cr_assert(c == 4);
    cr_assert_eq(memcmp(px, want_ga, 8), 0);
    free(px);
}

Test(png, reads_16bit_interlaced_rgb_and_converts_to_gray) {
    /* 3x2 RGB 16-bit, Adam7 interlaced. Values big-endian in the file. */
    const uint16_t v[2][3][3] = {{{0, 65535, 257}, {32767, 32768, 128}, {1000, 20000, 40000}},
                                 {{65535, 65535, 65535}, {0, 0, 0}, {12345, 54321, 127}}};
    uint8_t rows[2 * 3 * 3 * 2];
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++)
            for (int ch = 0; ch < 3; ch++) {
                rows[((y * 3 + x) * 3 + ch) * 2] = (uint8_t)(v[y][x][ch] >> 8);
                rows[((y * 3 + x) * 3 + ch) * 2 + 1] = (uint8_t)(v[y][x][ch] & 0xff);
            }
    const char *p = write_raw_png("rgb16.png", &(raw_png){PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_ADAM7, 3, 2, rows});
    int c, h, w;
    uint8_t *px = read_ok(p, 0, &c, &h, &w);
    cr_assert(c == 3 && h == 2 && w == 3);
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++)
            for (int ch = 0; ch < 3; ch++) {
                int want = (int)nearbyint(v[y][x][ch] * 255.0 / 65535.0);
                int got = px[(ch * 2 + y) * 3 + x];
                cr_assert_eq(got, want, "y=%d x=%d c=%d: %d vs %d", y, x, ch, got, want);
            }
    free(px);
    /* Forced gray: BT.601 luma of the 8-bit RGB, PIL's rounding. */
    uint8_t *rgb = read_ok(p, 0, &c, &h, &w);
    px = read_ok(p, 1, &c, &h, &w);
    cr_assert_eq(c, 1);
    for (int i = 0; i < 6; i++) {
        double l = 0.299 * rgb[i] + 0.587 * rgb[6 + i] + 0.114 * rgb[12 + i];
        cr_assert(fabs(px[i] - l) <= 0.5 + 1e-3, "pixel %d: %d vs %.3f", i, px[i], l);
    }
    free(px);
    free(rgb);
}

Test(png, refuses_non_png_truncated_and_missing) {
    uint8_t *px = (uint8_t *)0x1;
    int c, h, w;
    ASSERT_OK(rx_fs_write_atomic(tmp_path("x.png"), "hello, this is not a png", 24));
    cr_assert_eq(rx_png_read(tmp_path("x.png"), 0, &px, &c, &h, &w), RX_ERR_FORMAT);
    cr_assert(strstr(rx_last_error(), "x.png: not a PNG file"), "%s", rx_last_error());
    cr_assert_null(px);
    ASSERT_OK(rx_fs_write_atomic(tmp_path("short.png"), "\x89PNG", 4));
    cr_assert_eq(rx_png_read(tmp_path("short.png"), 0, &px, &c, &h, &w), RX_ERR_FORMAT);

    /* A real PNG cut short: libpng's error becomes a clear RX_ERR_FORMAT. */
    float img[3 * 16 * 16];
    for (int i = 0; i < 3 * 16 * 16; i++) img[i] = sinf((float)i);
    ASSERT_OK(rx_png_write_f32(tmp_path("full.png"), img, 3, 16, 16, RX_PNG_RANGE_SIGNED));
    long n = 0;
    void *buf = rx_test_read_file(tmp_path("full.png"), &n);
    ASSERT_OK(rx_fs_write_atomic(tmp_path("cut.png"), buf, (size_t)n / 2));
    free(buf);
    cr_assert_eq(rx_png_read(tmp_path("cut.png"), 0, &px, &c, &h, &w), RX_ERR_FORMAT);
    cr_assert(strstr(rx_last_error(), "cut.png: corrupt PNG"), "%s", rx_last_error());
    cr_assert_null(px);

    cr_assert_eq(rx_png_read(tmp_path("missing.png"), 0, &px, &c, &h, &w), RX_ERR_IO);
    cr_assert(strstr(rx_last_error(), "missing.png"));
}
