/* io/jpeg.h and io/image.h: JPEG decoding against PIL, EXIF orientation, CMYK, 16-bit PNG.
 * References:
 *   - tests/fixtures/images/<name>.ref.png: PIL's decode of each fixture (make_fixtures.py:
 *     ImageOps.exif_transpose(Image.open(f)).convert("RGB" / "L")), compared byte for byte;
 *   - the eight EXIF orientations as ImageOps.exif_transpose defines them (the transposes of
 *     PIL's Image.transpose), on four flat colour blocks whose places are known;
 *   - PIL's CMYK -> RGB formula (Convert.c cmyk2rgb on the inverted "CMYK;I" reading);
 *   - 16-bit gray PNG written here with libpng: the high byte of each sample. */
#include "testutil.h"
#include "image_fixture.h"

#include <png.h>

#include "io/fsutil.h"
#include "io/image.h"
#include "io/jpeg.h"
#include "io/png.h"

#define FIX "tests/fixtures/images/"

static char g_tmp[64];
static void setup_tmp(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rx_jpeg_XXXXXX");
    cr_assert(mkdtemp(g_tmp));
}
static void teardown_tmp(void) { cr_expect_eq(rx_fs_remove_tree(g_tmp), RX_OK); }
TestSuite(jpeg, .init = setup_tmp, .fini = teardown_tmp);

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, name);
    return buf[k];
}

// src decoded by runexp (io/image.h, by extension) equals PIL's decode in ref, byte for byte
static void assert_same_as_pil(const char *src, const char *ref) {
    uint8_t *a = NULL, *b = NULL;
    int ca, ha, wa, cb, hb, wb;
    cr_assert_eq(rx_image_read(src, 0, &a, &ca, &ha, &wa), RX_OK, "%s: %s", src, rx_last_error());
    cr_assert_eq(rx_png_read(ref, 0, &b, &cb, &hb, &wb), RX_OK, "%s: %s", ref, rx_last_error());
    cr_assert(ca == cb && ha == hb && wa == wb, "%s: %dx%dx%d, PIL %dx%dx%d", src, ca, ha, wa, cb, hb, wb);
    size_t n = (size_t)ca * ha * wa, diff = 0;
    for (size_t i = 0; i < n; i++) diff += a[i] != b[i];
    cr_assert_eq(diff, 0, "%s: %zu of %zu bytes differ from PIL's decode", src, diff, n);
    free(a), free(b);
}

Test(jpeg, decodes_as_pil_colour_gray_progressive_cmyk) {
    const char *names[] = {"rgb420", "rgb444_progressive", "gray", "cmyk"};
    for (int k = 0; k < 4; k++) {
        char src[128], ref[128];
        snprintf(src, sizeof src, FIX "%s.jpg", names[k]);
        snprintf(ref, sizeof ref, FIX "%s.ref.png", names[k]);
        assert_same_as_pil(src, ref);
    }
}

Test(jpeg, exif_orientation_as_pil_exif_transpose) {
    for (int o = 1; o <= 8; o++) {
        char src[128], ref[128];
        snprintf(src, sizeof src, FIX "orient%d.jpg", o);
        snprintf(ref, sizeof ref, FIX "orient%d.ref.png", o);
        char *buf;
        size_t n;
        cr_assert_eq(rx_fs_read_file(src, &buf, &n), RX_OK);
        cr_expect_eq(rx_jpeg_exif_orientation((const uint8_t *)buf, n), o, "%s", src);
        free(buf);
        assert_same_as_pil(src, ref);
    }
}

Test(jpeg, sixteen_bit_rgb_png_as_pil) { assert_same_as_pil(FIX "rgb16.png", FIX "rgb16.ref.png"); }

// Four flat blocks at quality 100, 4:4:4: red top-left, green top-right, blue bottom-left,
// white bottom-right. After orientation o each output quadrant holds a known block:
// exif_transpose's transposes moved the corners (corner index: 0 TL, 1 TR, 2 BL, 3 BR).
Test(jpeg, exif_orientation_moves_known_blocks) {
    const int w = 16, h = 8;
    const uint8_t colour[4][3] = {{220, 30, 30}, {30, 200, 40}, {40, 50, 210}, {240, 240, 240}};
    uint8_t px[8 * 16 * 3];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) memcpy(px + (y * w + x) * 3, colour[(y >= h / 2) * 2 + (x >= w / 2)], 3);
    fx_bytes plain = fx_jpeg(px, w, h, 3, 100);
    // source corner shown at output corner TL, TR, BL, BR for orientation 1..8
    const int corner[9][4] = {{0}, {0, 1, 2, 3}, {1, 0, 3, 2}, {3, 2, 1, 0}, {2, 3, 0, 1},
                              {0, 2, 1, 3}, {2, 0, 3, 1}, {3, 1, 2, 0}, {1, 3, 0, 2}};
    for (int o = 1; o <= 8; o++)
        for (int be = 0; be < 2; be++) {
            fx_bytes j = fx_with_orientation(plain, o, be);
            cr_assert_eq(rx_jpeg_exif_orientation(j.data, j.len), o);
            uint8_t *out;
            int C, H, W;
            cr_assert_eq(rx_jpeg_decode("blocks.jpg", j.data, j.len, 0, &out, &C, &H, &W), RX_OK, "%s", rx_last_error());
            cr_assert(C == 3 && H == (o >= 5 ? w : h) && W == (o >= 5 ? h : w), "o=%d: %dx%d", o, W, H);
            const int at[4][2] = {{1, 1}, {1, W - 2}, {H - 2, 1}, {H - 2, W - 2}};   // inside each corner block
            for (int q = 0; q < 4; q++)
                for (int c = 0; c < 3; c++) {
                    int got = out[((size_t)c * H + at[q][0]) * W + at[q][1]], want = colour[corner[o][q]][c];
                    cr_assert(abs(got - want) <= 3, "o=%d %s corner %d channel %d: %d, want %d", o, be ? "MM" : "II",
                              q, c, got, want);
                }
            free(out), free(j.data);
        }
    free(plain.data);
}

Test(jpeg, orientation_parser_ignores_missing_and_broken_exif) {
    uint8_t px[8 * 8 * 3] = {0};
    fx_bytes j = fx_jpeg(px, 8, 8, 3, 90);
    cr_expect_eq(rx_jpeg_exif_orientation(j.data, j.len), 1);   // no EXIF
    fx_bytes e = fx_with_orientation(j, 9, 1);                  // out of range
    cr_expect_eq(rx_jpeg_exif_orientation(e.data, e.len), 1);
    free(e.data);
    e = fx_with_orientation(j, 6, 1);
    e.data[10 + 8 + 1] = 200;                                   // IFD0 entry count 200: runs off the segment
    cr_expect_eq(rx_jpeg_exif_orientation(e.data, e.len), 1);
    cr_expect_eq(rx_jpeg_exif_orientation(e.data, 30), 1);     // cut inside the segment
    free(e.data), free(j.data);
}

// TurboJPEG writes the CMYK bytes as given; PIL reads them as inverted and converts:
// R = K - muldiv255(255 - C, K) with K the stored K (flat patches, quality 100: within 2).
Test(jpeg, cmyk_converted_by_pils_formula) {
    const uint8_t cmyk[4][4] = {{255, 0, 0, 255}, {0, 128, 255, 200}, {30, 60, 90, 255}, {255, 255, 255, 0}};
    uint8_t px[16 * 16 * 4];
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) memcpy(px + (y * 16 + x) * 4, cmyk[(y >= 8) * 2 + (x >= 8)], 4);
    fx_bytes j = fx_jpeg(px, 16, 16, 4, 100);
    uint8_t *out;
    int C, H, W;
    cr_assert_eq(rx_jpeg_decode("cmyk.jpg", j.data, j.len, 0, &out, &C, &H, &W), RX_OK, "%s", rx_last_error());
    cr_assert(C == 3 && H == 16 && W == 16);
    for (int q = 0; q < 4; q++) {
        const int y = (q / 2) * 8 + 3, x = (q % 2) * 8 + 3, k = cmyk[q][3];
        for (int c = 0; c < 3; c++) {
            int want = k - (int)lround((255 - cmyk[q][c]) * k / 255.0), got = out[(c * 16 + y) * 16 + x];
            cr_assert(abs(got - want) <= 2, "patch %d channel %d: %d, want %d", q, c, got, want);
        }
    }
    free(out), free(j.data);
}

Test(jpeg, want_channels_converts_gray_and_colour) {
    uint8_t *rgb, *gray, *back;
    int c, h, w;
    cr_assert_eq(rx_image_read(FIX "rgb420.jpg", 0, &rgb, &c, &h, &w), RX_OK);
    cr_assert_eq(rx_image_read(FIX "rgb420.jpg", 1, &gray, &c, &h, &w), RX_OK);
    cr_assert_eq(c, 1);
    const size_t n = (size_t)h * w;
    for (size_t i = 0; i < n; i++) {   // PIL's convert("L"): BT.601 luma, rounded
        double l = 0.299 * rgb[i] + 0.587 * rgb[n + i] + 0.114 * rgb[2 * n + i];
        cr_assert(fabs(gray[i] - l) <= 0.5 + 1e-3, "pixel %zu: %d vs %.3f", i, gray[i], l);
    }
    cr_assert_eq(rx_image_read(FIX "gray.jpg", 3, &back, &c, &h, &w), RX_OK);
    cr_assert_eq(c, 3);
    for (size_t i = 0; i < (size_t)h * w; i++) cr_assert(back[i] == back[h * w + i] && back[i] == back[2 * h * w + i]);
    free(rgb), free(gray), free(back);
}

Test(jpeg, corrupt_and_truncated_refused_with_the_file_name) {
    uint8_t *px = fx_smooth_rgb(64, 48, 1), *out = NULL;
    fx_bytes j = fx_jpeg(px, 64, 48, 3, 90);
    int c, h, w;
    fx_write(tmp_path("cut.jpg"), j.data, j.len / 2);
    cr_assert_eq(rx_image_read(tmp_path("cut.jpg"), 0, &out, &c, &h, &w), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "cut.jpg") && strstr(rx_last_error(), "corrupt JPEG"), "%s", rx_last_error());
    cr_expect_null(out);
    fx_write(tmp_path("text.jpg"), "GIF89a not a jpeg", 17);
    cr_assert_eq(rx_image_read(tmp_path("text.jpg"), 0, &out, &c, &h, &w), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "text.jpg") && strstr(rx_last_error(), "not a JPEG"), "%s", rx_last_error());
    memset(j.data + 2, 0xFF, 40);   // the header's markers destroyed
    fx_write(tmp_path("bad.jpg"), j.data, j.len);
    cr_assert_eq(rx_image_read(tmp_path("bad.jpg"), 0, &out, &c, &h, &w), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "bad.jpg"), "%s", rx_last_error());
    cr_assert_eq(rx_image_read(tmp_path("missing.jpg"), 0, &out, &c, &h, &w), RX_ERR_IO);
    free(j.data), free(px);
}

// A header promising 60000 x 60000 pixels (SOF patched) is refused before any allocation, at
// PIL's DecompressionBombError limit (2 x Image.MAX_IMAGE_PIXELS = 178,956,970 pixels).
Test(jpeg, decompression_bomb_refused_as_pil) {
    uint8_t px[16 * 16 * 3] = {0}, *out = NULL;
    fx_bytes j = fx_jpeg(px, 16, 16, 3, 90);
    size_t at = 2;
    while (at + 9 < j.len && !(j.data[at] == 0xFF && j.data[at + 1] == 0xC0)) at++;
    cr_assert_lt(at + 9, j.len, "no SOF0 marker");
    j.data[at + 5] = 60000 >> 8, j.data[at + 6] = 60000 & 0xFF;   // height
    j.data[at + 7] = 60000 >> 8, j.data[at + 8] = 60000 & 0xFF;   // width
    int c, h, w;
    cr_assert_eq(rx_jpeg_decode("bomb.jpg", j.data, j.len, 0, &out, &c, &h, &w), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "bomb.jpg") && strstr(rx_last_error(), "60000x60000") &&
              strstr(rx_last_error(), "178956970"), "%s", rx_last_error());
    cr_expect_null(out);
    free(j.data);
}

// A truncated file whose header promises a large image (fuzz/jpeg's timeout: 324 bytes, libjpeg
// padding the missing data with gray) is refused before allocating: a Huffman-coded JPEG spends at
// least a bit per 8x8 block, so it holds at most 512 pixels a byte (formula in io/jpeg.c). The
// most compressible real JPEGs (one flat colour, quality 1, baseline and progressive, gray and
// 4:2:0, made by TurboJPEG) stay well inside that bound and decode.
Test(jpeg, truncated_file_promising_a_huge_image_refused_before_allocating) {
    uint8_t *out = NULL;
    int c, h, w;
    cr_assert_eq(rx_image_read(FIX "fuzz_truncated_huge.jpg", 0, &out, &c, &h, &w), RX_ERR_FORMAT);
    cr_expect(strstr(rx_last_error(), "fuzz_truncated_huge.jpg") && strstr(rx_last_error(), "512 pixels a byte"), "%s",
              rx_last_error());
    cr_expect_null(out);
    const int side = 2048;
    uint8_t *flat = malloc((size_t)side * side * 3);
    cr_assert_not_null(flat);
    memset(flat, 90, (size_t)side * side * 3);
    const struct { int pf, sub, flags; } kinds[] = {{TJPF_GRAY, TJSAMP_GRAY, 0}, {TJPF_GRAY, TJSAMP_GRAY, TJFLAG_PROGRESSIVE},
                                                     {TJPF_RGB, TJSAMP_420, 0}, {TJPF_RGB, TJSAMP_420, TJFLAG_PROGRESSIVE}};
    for (int k = 0; k < 4; k++) {
        tjhandle tj = tjInitCompress();
        cr_assert_not_null(tj);
        unsigned char *jpeg = NULL;
        unsigned long len = 0;
        cr_assert_eq(tjCompress2(tj, flat, side, 0, side, kinds[k].pf, &jpeg, &len, kinds[k].sub, 1, kinds[k].flags), 0);
        tjDestroy(tj);
        cr_log_info("jpeg: flat %dx%d, kind %d: %lu bytes, %.0f pixels a byte", side, side, k, len, (double)side * side / len);
        cr_expect_eq(rx_jpeg_decode("flat.jpg", jpeg, len, 0, &out, &c, &h, &w), RX_OK, "kind %d: %s", k, rx_last_error());
        // flat in, flat out; quality 1 quantizes the DC by up to 255/8 levels / 2 (formula) around 90
        const size_t n = (size_t)c * h * w;
        cr_expect(out && w == side && h == side && abs((int)out[0] - 90) <= 16 && out[n - 1] == out[0] && out[n / 2] == out[0],
                  "kind %d decoded wrong (%d)", k, out ? out[0] : -1);
        free(out), out = NULL;
        tjFree(jpeg);
    }
    free(flat);
}

// 16-bit gray written with libpng: each sample becomes its high byte (PIL clips instead;
// see io/png.h); rx_png_read, for files, keeps its rounded scaling.
Test(jpeg, sixteen_bit_gray_png_takes_the_high_byte) {
    const uint16_t v[6] = {0, 255, 256, 0x80FF, 0xFFFF, 1000};
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION, img.width = 6, img.height = 1, img.format = PNG_FORMAT_LINEAR_Y;
    // the simplified writer takes 16-bit linear samples in host order and writes them as they are
    uint16_t host[6];
    memcpy(host, v, sizeof host);
    cr_assert(png_image_write_to_file(&img, tmp_path("g16.png"), 0, host, 0, NULL), "%s", img.message);
    uint8_t *out;
    int c, h, w;
    cr_assert_eq(rx_image_read(tmp_path("g16.png"), 0, &out, &c, &h, &w), RX_OK, "%s", rx_last_error());
    cr_assert(c == 1 && h == 1 && w == 6);
    for (int i = 0; i < 6; i++) cr_expect_eq(out[i], v[i] >> 8, "sample %d: %d", i, out[i]);
    free(out);
}

Test(jpeg, decoder_table_by_extension) {
    cr_expect_eq(rx_image_decoder("a/b.JPG"), rx_jpeg_decode);
    cr_expect_eq(rx_image_decoder("x.jpeg"), rx_jpeg_decode);
    cr_expect_eq(rx_image_decoder("x.Jpeg"), rx_jpeg_decode);
    cr_expect_eq(rx_image_decoder("x.PNG"), rx_png_decode);
    cr_expect_null(rx_image_decoder("x.gif"));
    cr_expect_null(rx_image_decoder(".jpg.txt"));
    cr_expect_null(rx_image_decoder("jpg"));
    uint8_t *out;
    int c, h, w;
    cr_expect_eq(rx_image_read("x.gif", 0, &out, &c, &h, &w), RX_ERR_ARG);
    cr_expect(strstr(rx_last_error(), ".jpg"), "%s", rx_last_error());
}
