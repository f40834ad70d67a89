/* image_fixture.h — image and shard files made at run time for the data tests
 * (test_io_jpeg, test_data_imagefolder, test_data_webdataset): JPEGs compressed by TurboJPEG,
 * an EXIF orientation segment spliced in, tar shards written by libarchive. Header-only;
 * failures are Criterion assertions. */
#ifndef RX_TEST_IMAGE_FIXTURE_H
#define RX_TEST_IMAGE_FIXTURE_H

#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

typedef struct { uint8_t *data; size_t len; } fx_bytes;

/* interleaved [h][w][nc] (nc 1 gray, 3 RGB, 4 CMYK) -> JPEG bytes (malloc'd). Subsampling
 * 4:4:4 unless gray; quality 1..100. */
static fx_bytes fx_jpeg(const uint8_t *px, int w, int h, int nc, int quality) {
    tjhandle tj = tjInitCompress();
    cr_assert_not_null(tj);
    unsigned char *jpeg = NULL;
    unsigned long len = 0;
    const int pf = nc == 1 ? TJPF_GRAY : nc == 4 ? TJPF_CMYK : TJPF_RGB;
    const int sub = nc == 1 ? TJSAMP_GRAY : TJSAMP_444;
    cr_assert_eq(tjCompress2(tj, px, w, 0, h, pf, &jpeg, &len, sub, quality, 0), 0, "tjCompress2: %s",
                 tjGetErrorStr2(tj));
    tjDestroy(tj);
    fx_bytes b = {malloc(len), len};
    cr_assert_not_null(b.data);
    memcpy(b.data, jpeg, len);
    tjFree(jpeg);
    return b;
}

/* The JPEG with an APP1 "Exif" segment holding IFD0 {Orientation = o} inserted after SOI;
 * big_endian picks the TIFF byte order ("MM" or "II"). */
static fx_bytes fx_with_orientation(fx_bytes j, int o, int big_endian) {
    uint8_t tiff[26];
    const uint8_t mm[26] = {'M', 'M', 0, 42, 0, 0, 0, 8, /* one entry */ 0, 1, /* tag 0x0112 SHORT count 1 */
                            0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (uint8_t)o, 0, 0, /* next IFD */ 0, 0, 0, 0};
    const uint8_t ii[26] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, (uint8_t)o, 0, 0, 0,
                            0, 0, 0, 0};
    memcpy(tiff, big_endian ? mm : ii, sizeof tiff);
    const size_t seg = 2 + 6 + sizeof tiff;   // length field counts itself
    fx_bytes out = {malloc(j.len + 2 + seg), j.len + 2 + seg};
    cr_assert_not_null(out.data);
    uint8_t *p = out.data;
    memcpy(p, j.data, 2), p += 2;   // SOI
    *p++ = 0xFF, *p++ = 0xE1, *p++ = (uint8_t)(seg >> 8), *p++ = (uint8_t)seg;
    memcpy(p, "Exif\0\0", 6), p += 6;
    memcpy(p, tiff, sizeof tiff), p += sizeof tiff;
    memcpy(p, j.data + 2, j.len - 2);
    return out;
}

static void fx_write(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

/* A tar shard of n members (names[i], bytes[i]) in that order, written by libarchive (ustar). */
static void fx_write_tar(const char *path, const char *const *names, const fx_bytes *bytes, int n) {
    struct archive *a = archive_write_new();
    cr_assert_not_null(a);
    cr_assert_eq(archive_write_set_format_ustar(a), ARCHIVE_OK);
    cr_assert_eq(archive_write_open_filename(a, path), ARCHIVE_OK, "%s: %s", path, archive_error_string(a));
    for (int i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, names[i]);
        archive_entry_set_size(e, (la_int64_t)bytes[i].len);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        cr_assert_eq(archive_write_header(a, e), ARCHIVE_OK, "%s", archive_error_string(a));
        cr_assert_eq(archive_write_data(a, bytes[i].data, bytes[i].len), (la_ssize_t)bytes[i].len);
        archive_entry_free(e);
    }
    cr_assert_eq(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* A smooth RGB image (JPEG's typical content), different for each seed: [h][w][3]. */
static uint8_t *fx_smooth_rgb(int w, int h, int seed) {
    uint8_t *px = malloc((size_t)w * h * 3);
    cr_assert_not_null(px);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = px + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)((x * 255) / (w - 1 ? w - 1 : 1) + seed * 40);
            p[1] = (uint8_t)((y * 255) / (h - 1 ? h - 1 : 1) + seed * 17);
            p[2] = (uint8_t)(((x + y) * 127) / (w + h) + 64 + seed * 23);
        }
    return px;
}

#pragma GCC diagnostic pop

#endif
