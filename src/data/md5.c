/* md5.c — MD5 (RFC 1321), only to check downloads against the checksums that data set
 * authors publish. Not for anything security-related. */
#include "data/fetch.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct { uint32_t a, b, c, d; uint64_t bytes; uint8_t block[64]; } md5_ctx;

// Per-round shift amounts and the constants K[i] = floor(2^32 |sin(i + 1)|).
static const uint8_t md5_shift[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                      5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                                      4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                      6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};
static const uint32_t md5_k[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};

static uint32_t rotl(uint32_t x, int s) { return (x << s) | (x >> (32 - s)); }

static void md5_block(md5_ctx *c, const uint8_t *p) {
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
    uint32_t a = c->a, b = c->b, cc = c->c, d = c->d;
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16) f = (b & cc) | (~b & d), g = i;
        else if (i < 32) f = (d & b) | (~d & cc), g = (5 * i + 1) & 15;
        else if (i < 48) f = b ^ cc ^ d, g = (3 * i + 5) & 15;
        else f = cc ^ (b | ~d), g = (7 * i) & 15;
        uint32_t t = d;
        d = cc, cc = b;
        b = b + rotl(a + f + md5_k[i] + m[g], md5_shift[i]);
        a = t;
    }
    c->a += a, c->b += b, c->c += cc, c->d += d;
}

static void md5_init(md5_ctx *c) { *c = (md5_ctx){0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0, {0}}; }

static void md5_update(md5_ctx *c, const void *data, size_t n) {
    const uint8_t *p = data;
    size_t have = c->bytes % 64;
    c->bytes += n;
    if (have) {
        size_t take = n < 64 - have ? n : 64 - have;
        memcpy(c->block + have, p, take);
        p += take, n -= take;
        if (have + take < 64) return;
        md5_block(c, c->block);
    }
    for (; n >= 64; p += 64, n -= 64) md5_block(c, p);
    memcpy(c->block, p, n);
}

static void md5_final(md5_ctx *c, uint8_t out[16]) {
    uint64_t bits = c->bytes * 8;
    static const uint8_t pad[64] = {0x80};
    size_t have = c->bytes % 64;
    md5_update(c, pad, have < 56 ? 56 - have : 120 - have);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (8 * i));
    md5_update(c, len, 8);
    const uint32_t w[4] = {c->a, c->b, c->c, c->d};
    for (int i = 0; i < 16; i++) out[i] = (uint8_t)(w[i / 4] >> (8 * (i % 4)));
}

void rx_md5(const void *data, size_t n, uint8_t digest[16]) {
    md5_ctx c;
    md5_init(&c);
    md5_update(&c, data, n);
    md5_final(&c, digest);
}

rx_status rx_md5_file(const char *path, char hex[33]) {
    FILE *f = fopen(path, "rb");
    if (!f) return rx_fail(RX_ERR_IO, "md5: cannot open %s: %s", path, strerror(errno));
    md5_ctx c;
    md5_init(&c);
    static _Thread_local uint8_t buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) md5_update(&c, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return rx_fail(RX_ERR_IO, "md5: read error on %s", path);
    uint8_t d[16];
    md5_final(&c, d);
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return RX_OK;
}
