/* jpeg.c — JPEG decoding through TurboJPEG, EXIF orientation, PIL's conversions. See jpeg.h. */
#include "io/jpeg.h"
#include "io/fsutil.h"

#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

// ---- EXIF orientation ----------------------------------------------------------------------

static unsigned rd16(const uint8_t *p, int le) { return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, int le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

// Orientation tag of a TIFF block (the body of an "Exif\0\0" APP1 segment); 1 when absent.
static int tiff_orientation(const uint8_t *t, size_t n) {
    if (n < 8) return 1;
    int le = t[0] == 'I' && t[1] == 'I';
    if (!le && !(t[0] == 'M' && t[1] == 'M')) return 1;
    if (rd16(t + 2, le) != 42) return 1;
    uint32_t ifd = rd32(t + 4, le);
    if (ifd > n || n - ifd < 2) return 1;
    unsigned count = rd16(t + ifd, le);
    for (unsigned k = 0; k < count; k++) {
        size_t e = (size_t)ifd + 2 + (size_t)k * 12;
        if (e + 12 > n) return 1;
        // tag 0x0112 Orientation, type 3 SHORT, count 1: the value sits in the first two bytes
        if (rd16(t + e, le) == 0x0112 && rd16(t + e + 2, le) == 3) {
            unsigned v = rd16(t + e + 8, le);
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
}

int rx_jpeg_exif_orientation(const uint8_t *buf, size_t len) {
    if (len < 4 || buf[0] != 0xFF || buf[1] != 0xD8) return 1;
    size_t at = 2;
    // markers before the first scan: FF xx, then a big-endian length that counts itself
    while (at + 4 <= len && buf[at] == 0xFF) {
        unsigned marker = buf[at + 1];
        if (marker == 0xFF) { at++; continue; }            // fill byte
        if (marker == 0xDA || marker == 0xD9) break;        // start of scan / end of image
        size_t seg = (size_t)buf[at + 2] << 8 | buf[at + 3];
        if (seg < 2 || at + 2 + seg > len) break;
        const uint8_t *body = buf + at + 4;
        if (marker == 0xE1 && seg >= 8 && !memcmp(body, "Exif\0\0", 6)) return tiff_orientation(body + 6, seg - 8);
        at += 2 + seg;
    }
    return 1;
}

// Source pixel of output pixel (y, x) for each orientation; out is h x w for 1..4, w x h for 5..8
// (PIL's transposes: FLIP_LEFT_RIGHT, ROTATE_180, FLIP_TOP_BOTTOM, TRANSPOSE, ROTATE_270,
// TRANSVERSE, ROTATE_90, its rotations counter-clockwise).
static void orient_source(int o, int h, int w, int y, int x, int *sy, int *sx) {
    switch (o) {
    case 2: *sy = y, *sx = w - 1 - x; break;
    case 3: *sy = h - 1 - y, *sx = w - 1 - x; break;
    case 4: *sy = h - 1 - y, *sx = x; break;
    case 5: *sy = x, *sx = y; break;
    case 6: *sy = h - 1 - x, *sx = y; break;
    case 7: *sy = h - 1 - x, *sx = w - 1 - y; break;
    case 8: *sy = x, *sx = w - 1 - y; break;
    default: *sy = y, *sx = x; break;
    }
}

rx_status rx_jpeg_orient(const uint8_t *src, int h, int w, int nc, int o, uint8_t **dst, int *oh, int *ow) {
    *dst = NULL;
    if (o < 1 || o > 8) return rx_fail(RX_ERR_ARG, "image orientation %d (EXIF takes 1..8)", o);
    const int swap = o >= 5;
    *oh = swap ? w : h, *ow = swap ? h : w;
    uint8_t *out = malloc((size_t)h * w * nc);
    if (!out) return rx_fail(RX_ERR_OOM, "orienting a %dx%d image: out of memory", w, h);
    for (int y = 0; y < *oh; y++)
        for (int x = 0; x < *ow; x++) {
            int sy, sx;
            orient_source(o, h, w, y, x, &sy, &sx);
            memcpy(out + ((size_t)y * *ow + x) * nc, src + ((size_t)sy * w + sx) * nc, (size_t)nc);
        }
    *dst = out;
    return RX_OK;
}

// ---- decoding ------------------------------------------------------------------------------

// PIL's MULDIV255: a * b / 255, rounded, in integers.
static uint8_t muldiv255(unsigned a, unsigned b) { unsigned t = a * b + 128; return (uint8_t)(((t >> 8) + t) >> 8); }

// Stored CMYK (inverted, Adobe) [n][4] -> RGB [n][3] in place (the RGB trails the CMYK it reads).
static void cmyk_to_rgb(uint8_t *px, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = px + i * 4;
        const unsigned k = s[3];    // PIL's nk = 255 - (255 - stored K)
        uint8_t rgb[3];
        for (int c = 0; c < 3; c++) rgb[c] = (uint8_t)(k - muldiv255(255u - s[c], k));
        memcpy(px + i * 3, rgb, 3);
    }
}

// TurboJPEG's message for a failed call, and whether to refuse: fatal errors always; warnings
// except "extraneous bytes before marker" (see jpeg.h).
static int tj_refuses(tjhandle tj, const char **msg) {
    *msg = tjGetErrorStr2(tj);
    return tjGetErrorCode(tj) != TJERR_WARNING || !strstr(*msg, "extraneous bytes");
}

// The TurboJPEG part: buf -> interleaved [h][w][nc], nc 1 (gray) or 3 (RGB), at *px inside the
// malloc'd *block, after h * w * c_out bytes left free for the planar result: one allocation
// per image instead of two. With two, glibc handed the heap top back to the kernel after every
// image and faulted it in again for the next (a third of the time in bench/decode).
static rx_status tj_decode(const char *name, tjhandle tj, const uint8_t *buf, size_t len, int want_channels,
                           uint8_t **block, uint8_t **px, int *h, int *w, int *nc) {
    int sub, cs;
    const char *msg;
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, w, h, &sub, &cs))
        return rx_fail(RX_ERR_FORMAT, "%s: not a readable JPEG: %s", name, tjGetErrorStr2(tj));
    // PIL's decompression-bomb limit: a few hundred bytes can promise 65535 x 65535 pixels
    if (*w <= 0 || *h <= 0 || (int64_t)*w * *h > RX_JPEG_MAX_PIXELS)
        return rx_fail(RX_ERR_FORMAT, "%s: JPEG of %dx%d pixels: refused, more than %lld (PIL's DecompressionBombError "
                       "limit)", name, *w, *h, (long long)RX_JPEG_MAX_PIXELS);
    // A Huffman-coded JPEG spends at least one bit per 8x8 block (the DC code of its first scan),
    // so a file holds at most 512 pixels a byte: more is a truncated file (which libjpeg would pad
    // with gray) promising a huge image, refused before allocating it (fuzz/jpeg found 324 bytes
    // making it allocate and decode hundreds of MB). Arithmetic coding could go below a bit per
    // block; such files are rare, and refused too when they promise that much.
    if ((uint64_t)*w * (uint64_t)*h > (uint64_t)RX_JPEG_MAX_PIXELS_PER_BYTE * len)
        return rx_fail(RX_ERR_FORMAT, "%s: JPEG of %dx%d pixels in %zu bytes: truncated (a JPEG holds at most %d pixels a "
                       "byte)", name, *w, *h, len, RX_JPEG_MAX_PIXELS_PER_BYTE);
    // libjpeg converts neither CMYK nor YCCK to RGB: decode to CMYK, convert as PIL does
    const int cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK, gray = cs == TJCS_GRAY;
    const int pf = gray ? TJPF_GRAY : cmyk ? TJPF_CMYK : TJPF_RGB;
    *nc = gray ? 1 : 3;
    const size_t plane = (size_t)*w * *h, head = plane * (size_t)(want_channels ? want_channels : *nc);
    if (!(*block = malloc(head + plane * tjPixelSize[pf])))
        return rx_fail(RX_ERR_OOM, "%s: out of memory for %dx%d pixels", name, *w, *h);
    *px = *block + head;
    if (tjDecompress2(tj, buf, (unsigned long)len, *px, *w, 0, *h, pf, 0) && tj_refuses(tj, &msg)) {
        free(*block), *block = NULL;
        return rx_fail(RX_ERR_FORMAT, "%s: corrupt JPEG: %s", name, msg);
    }
    if (cmyk) cmyk_to_rgb(*px, plane);
    return RX_OK;
}

// Interleaved [n][nc] (nc 1 or 3) -> planar [c_out][n], as rx_png_read converts. The common
// case, as stored, is one pass of plain stores: it is a fifth of the decode time otherwise.
static void to_planar(const uint8_t *px, size_t n, int nc, int c_out, uint8_t *dst) {
    if (nc == 1 && c_out == 1) { memcpy(dst, px, n); return; }
    if (nc == 3 && c_out == 3) {
        uint8_t *r = dst, *g = dst + n, *b = dst + 2 * n;
        for (size_t p = 0; p < n; p++, px += 3) r[p] = px[0], g[p] = px[1], b[p] = px[2];
        return;
    }
    for (size_t p = 0; p < n; p++) {
        const uint8_t *s = px + p * nc;
        const uint8_t r = s[0], g = nc == 3 ? s[1] : s[0], b = nc == 3 ? s[2] : s[0];
        // BT.601 luma in 16.16 fixed point with rounding, as PIL's convert("L")
        const uint8_t luma = nc == 3 ? (uint8_t)((19595u * r + 38470u * g + 7471u * b + 32768u) >> 16) : r;
        const uint8_t v[4][4] = {{luma}, {luma, 255}, {r, g, b}, {r, g, b, 255}};
        for (int c = 0; c < c_out; c++) dst[(size_t)c * n + p] = v[c_out - 1][c];
    }
}

rx_status rx_jpeg_decode(const char *name, const uint8_t *buf, size_t len, int want_channels, uint8_t **out,
                         int *C, int *H, int *W) {
    *out = NULL;
    if (want_channels < 0 || want_channels > 4)
        return rx_fail(RX_ERR_ARG, "reading %s: want_channels %d (0 = as stored, or 1..4)", name, want_channels);
    if (len < 4 || buf[0] != 0xFF || buf[1] != 0xD8)
        return rx_fail(RX_ERR_FORMAT, "%s: not a JPEG file (no JPEG start-of-image marker)", name);
    tjhandle tj = tjInitDecompress();
    if (!tj) return rx_fail(RX_ERR_OOM, "%s: cannot create a TurboJPEG decompressor: %s", name, tjGetErrorStr2(NULL));
    uint8_t *block = NULL, *px = NULL, *turned = NULL;
    int h = 0, w = 0, nc = 0;
    rx_status s = tj_decode(name, tj, buf, len, want_channels, &block, &px, &h, &w, &nc);
    tjDestroy(tj);
    RX_TRY(s);
    const int o = rx_jpeg_exif_orientation(buf, len);
    if (o != 1 && (s = rx_jpeg_orient(px, h, w, nc, o, &turned, &h, &w)) != RX_OK) { free(block); return s; }
    const int c_out = want_channels ? want_channels : nc;
    to_planar(turned ? turned : px, (size_t)h * w, nc, c_out, block);   // into the head of the block
    free(turned);
    // The block is returned whole: shrinking it (realloc) makes glibc map and unmap every image's
    // buffer anew, page faults that cost a third of the decode time in bench/decode.
    *out = block, *C = c_out, *H = h, *W = w;
    return RX_OK;
}
