/* png.c — PNG read/write with libpng; libpng errors become rx_status. See png.h. */
#include "io/png.h"
#include "io/fsutil.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <string.h>

/* libpng reports errors by calling an error function that must not return; ours
 * records the message and longjmps back to the setjmp in the calling function.
 * Locals changed after setjmp and used after the jump are volatile. */
typedef struct {
    jmp_buf jb;
    char    msg[256];
    FILE   *fp;   // writing: the file, through our own write/flush callbacks
    int     err;  // writing: errno of the failed write or flush (libpng's own says only "Write Error")
} png_err_ctx;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_err_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg);
    longjmp(ctx->jb, 1);
}
static void on_png_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

/* libpng's default writer (fwrite) loses errno: a full disk would read "Write Error" */
static void on_png_write(png_structp png, png_bytep data, size_t n) {
    png_err_ctx *ctx = png_get_io_ptr(png);
    if (fwrite(data, 1, n, ctx->fp) != n) {
        ctx->err = errno ? errno : EIO;
        png_error(png, strerror(ctx->err));
    }
}
static void on_png_flush(png_structp png) {
    png_err_ctx *ctx = png_get_io_ptr(png);
    if (fflush(ctx->fp) != 0) {
        ctx->err = errno ? errno : EIO;
        png_error(png, strerror(ctx->err));
    }
}

uint8_t rx_png_to_byte(float x, rx_png_range range) {
    float u = range == RX_PNG_RANGE_SIGNED ? (x + 1.0f) * 0.5f : x;
    if (!(u > 0.0f)) return 0;          /* also NaN */
    if (u >= 1.0f) return 255;
    return (uint8_t)lrintf(u * 255.0f);
}

static int channels_ok(int C) { return C >= 1 && C <= 4; }

/* Write interleaved rows [H][W*C] to path, atomically. */
static rx_status write_interleaved(const char *path, const uint8_t *pix, int C, int H, int W) {
    static const int color_type[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                      PNG_COLOR_TYPE_RGB_ALPHA};
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)H);
    if (!rows) return rx_fail(RX_ERR_OOM, "writing %s: out of memory", path);
    for (int y = 0; y < H; y++) rows[y] = (png_bytep)(pix + (size_t)y * W * C);

    rx_atomic_file af;
    rx_status s = rx_atomic_begin(path, &af);
    if (s) { free(rows); return s; }
    png_err_ctx ctx = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        rx_atomic_abort(&af);
        free(rows);
        return rx_fail(RX_ERR_OOM, "writing %s: cannot create libpng structures", path);
    }
    if (setjmp(ctx.jb)) {
        png_destroy_write_struct(&png, &info);
        rx_atomic_abort(&af);
        free(rows);
        return ctx.err ? rx_fail(RX_ERR_IO, "writing %s: %s", path, strerror(ctx.err))
                       : rx_fail(RX_ERR_IO, "writing %s: libpng: %s", path, ctx.msg);
    }
    ctx.fp = af.fp;
    png_set_write_fn(png, &ctx, on_png_write, on_png_flush);
    png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, color_type[C], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return rx_atomic_commit(&af);
}

static rx_status check_dims(const char *path, int C, int H, int W) {
    if (!channels_ok(C)) return rx_fail(RX_ERR_ARG, "writing %s: %d channels (PNG takes 1 to 4)", path, C);
    if (H <= 0 || W <= 0 || H > 1000000 || W > 1000000)
        return rx_fail(RX_ERR_ARG, "writing %s: bad image size %dx%d", path, W, H);
    return RX_OK;
}

rx_status rx_png_write_u8(const char *path, const uint8_t *img, int C, int H, int W) {
    RX_TRY(check_dims(path, C, H, W));
    size_t plane = (size_t)H * W;
    uint8_t *pix = malloc(plane * C);
    if (!pix) return rx_fail(RX_ERR_OOM, "writing %s: out of memory", path);
    /* [C,H,W] -> [H,W,C] */
    for (size_t p = 0; p < plane; p++)
        for (int c = 0; c < C; c++) pix[p * C + c] = img[c * plane + p];
    rx_status s = write_interleaved(path, pix, C, H, W);
    free(pix);
    return s;
}

rx_status rx_png_write_f32(const char *path, const float *img, int C, int H, int W, rx_png_range range) {
    rx_png_grid one = {.rows = 1, .cols = 1, .pad = 0, .range = range};
    return rx_png_write_grid_f32(path, img, 1, C, H, W, &one);
}

rx_status rx_png_write_grid_f32(const char *path, const float *imgs, int N, int C, int H, int W,
                                const rx_png_grid *g) {
    if (g->rows <= 0 || g->cols <= 0 || g->pad < 0)
        return rx_fail(RX_ERR_ARG, "writing %s: bad grid %dx%d pad %d", path, g->rows, g->cols, g->pad);
    if (N < 0 || (long)N > (long)g->rows * g->cols)
        return rx_fail(RX_ERR_ARG, "writing %s: %d images do not fit a %dx%d grid", path, N, g->rows, g->cols);
    long Hout = (long)g->rows * (H + g->pad) + g->pad, Wout = (long)g->cols * (W + g->pad) + g->pad;
    if (H <= 0 || W <= 0 || Hout > 1000000 || Wout > 1000000)
        return rx_fail(RX_ERR_ARG, "writing %s: bad grid image size %ldx%ld", path, Wout, Hout);
    RX_TRY(check_dims(path, C, (int)Hout, (int)Wout));

    uint8_t *pix = malloc((size_t)Hout * Wout * C);
    if (!pix) return rx_fail(RX_ERR_OOM, "writing %s: out of memory", path);
    memset(pix, rx_png_to_byte(g->pad_value, g->range), (size_t)Hout * Wout * C);
    size_t plane = (size_t)H * W;
    for (int i = 0; i < N; i++) {
        const float *img = imgs + (size_t)i * C * plane;            /* [C,H,W] */
        long y0 = (long)(i / g->cols) * (H + g->pad) + g->pad, x0 = (long)(i % g->cols) * (W + g->pad) + g->pad;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t *dst = pix + ((size_t)(y0 + y) * Wout + (size_t)(x0 + x)) * C;
                for (int c = 0; c < C; c++) dst[c] = rx_png_to_byte(img[c * plane + (size_t)y * W + x], g->range);
            }
    }
    rx_status s = write_interleaved(path, pix, C, (int)Hout, (int)Wout);
    free(pix);
    return s;
}

/* One interleaved pixel with c_in channels -> c_out planar outputs. */
static void convert_pixel(const uint8_t *p, int c_in, uint8_t out[4], int c_out) {
    int colour = c_in >= 3;
    uint8_t r = p[0], gr = colour ? p[1] : p[0], b = colour ? p[2] : p[0];
    uint8_t alpha = c_in == 2 ? p[1] : c_in == 4 ? p[3] : 255;
    /* BT.601 luma in 16.16 fixed point with rounding, as PIL's convert("L"). */
    uint8_t gray = colour ? (uint8_t)((19595u * r + 38470u * gr + 7471u * b + 32768u) >> 16) : p[0];
    switch (c_out) {
    case 1: out[0] = gray; break;
    case 2: out[0] = gray; out[1] = alpha; break;
    case 3: out[0] = r; out[1] = gr; out[2] = b; break;
    default: out[0] = r; out[1] = gr; out[2] = b; out[3] = alpha; break;
    }
}

/* libpng part of rx_png_read: fp positioned after the checked signature ->
 * malloc'd interleaved 8-bit pixels [H][W][c_in]. Kept apart so that no local
 * of the caller lives across the setjmp. */
static rx_status decode_png(const char *path, FILE *fp, int high_byte, uint8_t **out, int *c_out, int *h_out, int *w_out) {
    png_err_ctx ctx = {0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return rx_fail(RX_ERR_OOM, "reading %s: cannot create libpng structures", path);
    }
    uint8_t *volatile pix = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(ctx.jb)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pix);
        free(rows);
        return rx_fail(RX_ERR_FORMAT, "%s: corrupt PNG: %s", path, ctx.msg);
    }
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    int color_type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    /* Normalise everything to 8-bit gray / gray+alpha / RGB / RGBA. */
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    /* v * 255 / 65535 rounded (scale_16), or v >> 8 (strip_16, what PIL does) */
    if (depth == 16 && high_byte) png_set_strip_16(png);
    else if (depth == 16) png_set_scale_16(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info);
    int c_in = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (c_in < 1 || c_in > 4 || rowbytes != (size_t)w * c_in) png_error(png, "unexpected pixel layout");
    pix = malloc(rowbytes * (size_t)h);
    rows = malloc(sizeof(png_bytep) * (size_t)h);
    if (!pix || !rows) png_error(png, "out of memory");
    for (int y = 0; y < h; y++) rows[y] = pix + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    *out = pix;
    *c_out = c_in;
    *h_out = h;
    *w_out = w;
    return RX_OK;
}

/* Signature check, libpng decode, then [H,W,c_in] -> [c_out,H,W]. fp is closed here. */
static rx_status read_png_stream(const char *name, FILE *fp, int high_byte, int want_channels, uint8_t **out, int *C,
                                 int *H, int *W) {
    uint8_t sig[8];
    size_t got = fread(sig, 1, 8, fp);
    if (got < 8 || png_sig_cmp(sig, 0, 8)) {
        fclose(fp);
        return rx_fail(RX_ERR_FORMAT, "%s: not a PNG file (%s)", name, got < 8 ? "shorter than the PNG signature"
                                                                              : "bad signature");
    }
    uint8_t *pix = NULL;
    int c_in = 0, h = 0, w = 0;
    rx_status s = decode_png(name, fp, high_byte, &pix, &c_in, &h, &w);
    fclose(fp);
    RX_TRY(s);

    int c_out = want_channels ? want_channels : c_in;
    size_t plane = (size_t)w * h;
    uint8_t *planar = malloc(plane * c_out);
    if (!planar) { free(pix); return rx_fail(RX_ERR_OOM, "reading %s: out of memory", name); }
    for (size_t p = 0; p < plane; p++) {          /* [H,W,c_in] -> [c_out,H,W] */
        uint8_t v[4];
        convert_pixel(pix + p * c_in, c_in, v, c_out);
        for (int c = 0; c < c_out; c++) planar[c * plane + p] = v[c];
    }
    free(pix);
    *out = planar;
    *C = c_out;
    *H = h;
    *W = w;
    return RX_OK;
}

rx_status rx_png_read(const char *path, int want_channels, uint8_t **out, int *C, int *H, int *W) {
    *out = NULL;
    if (want_channels < 0 || want_channels > 4)
        return rx_fail(RX_ERR_ARG, "reading %s: want_channels %d (0 = as stored, or 1..4)", path, want_channels);
    FILE *fp = fopen(path, "rb");
    if (!fp) return rx_fail(RX_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    return read_png_stream(path, fp, 0, want_channels, out, C, H, W);
}

rx_status rx_png_decode(const char *name, const uint8_t *buf, size_t len, int want_channels, uint8_t **out, int *C,
                        int *H, int *W) {
    *out = NULL;
    if (want_channels < 0 || want_channels > 4)
        return rx_fail(RX_ERR_ARG, "reading %s: want_channels %d (0 = as stored, or 1..4)", name, want_channels);
    if (len < 8) return rx_fail(RX_ERR_FORMAT, "%s: not a PNG file (shorter than the PNG signature)", name);
    /* a read-only stream over the bytes lets libpng's stdio path serve both entry points */
    FILE *fp = fmemopen((void *)buf, len, "rb");
    if (!fp) return rx_fail(RX_ERR_OOM, "reading %s: fmemopen: %s", name, strerror(errno));
    return read_png_stream(name, fp, 1, want_channels, out, C, H, W);
}
