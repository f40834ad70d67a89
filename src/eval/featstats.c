#include "eval/featstats.h"
#include "io/fsutil.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "featstats file format is little-endian and written with memcpy");

/* Rows converted to float64 per dsyrk call: 256 x 2048 doubles = 4 MiB, large enough
 * for BLAS to run at full speed, small enough to stay out of the way. */
#define BLOCK_ROWS 256

static const char FILE_MAGIC[8] = {'R', 'X', 'F', 'S', 'T', 'A', 'T', 'S'};
enum { FILE_VERSION = 1 };
/* magic 8 | version u32 | d u32 | n u64 | meta */
#define HEADER_BYTES (8 + 4 + 4 + 8 + (int)sizeof(rx_featstats_meta))
_Static_assert(sizeof(rx_featstats_meta) == 64 + 128 + 64 + 128 + 32, "meta has no padding");

rx_status rx_featstats_init(rx_featstats *st, int d) {
    memset(st, 0, sizeof *st);
    if (d < 1 || d > RX_FEATSTATS_MAX_DIM)
        return rx_fail(RX_ERR_ARG, "featstats: dimension %d outside [1, %d]", d, RX_FEATSTATS_MAX_DIM);
    st->d = d;
    st->block_rows = BLOCK_ROWS;
    st->shift = calloc((size_t)d, sizeof(double));
    st->sum = calloc((size_t)d, sizeof(double));
    st->sumsq = calloc((size_t)d * d, sizeof(double));
    st->block = malloc((size_t)BLOCK_ROWS * d * sizeof(double));
    if (!st->shift || !st->sum || !st->sumsq || !st->block) {
        rx_featstats_free(st);
        return rx_fail(RX_ERR_OOM, "featstats: cannot allocate accumulators for d=%d (%.1f MiB)",
                       d, (double)d * d * 8 / 1048576.0);
    }
    return RX_OK;
}

void rx_featstats_free(rx_featstats *st) {
    free(st->shift);
    free(st->sum);
    free(st->sumsq);
    free(st->block);
    free(st->mean);
    free(st->cov);
    memset(st, 0, sizeof *st);
}

static rx_status copy_field(char *dst, size_t cap, const char *src, const char *what) {
    if (!src) return RX_OK;
    size_t len = strlen(src);
    if (len >= cap) return rx_fail(RX_ERR_ARG, "featstats: %s '%s' longer than %zu characters", what, src, cap - 1);
    memset(dst, 0, cap);
    memcpy(dst, src, len);
    return RX_OK;
}

rx_status rx_featstats_set_meta(rx_featstats *st, const char *extractor, const char *extractor_hash,
                                const char *dataset, const char *dataset_hash, const char *split) {
    rx_featstats_meta m = st->meta;
    RX_TRY(copy_field(m.extractor, sizeof m.extractor, extractor, "extractor"));
    RX_TRY(copy_field(m.extractor_hash, sizeof m.extractor_hash, extractor_hash, "extractor hash"));
    RX_TRY(copy_field(m.dataset, sizeof m.dataset, dataset, "dataset"));
    RX_TRY(copy_field(m.dataset_hash, sizeof m.dataset_hash, dataset_hash, "dataset hash"));
    RX_TRY(copy_field(m.split, sizeof m.split, split, "split"));
    st->meta = m;
    return RX_OK;
}

/* the meta fields in one table, so naming, hashing and checking walk the same list */
#define META_FIELDS(X) X(extractor) X(extractor_hash) X(dataset) X(dataset_hash) X(split)

rx_status rx_featstats_cache_name(const rx_featstats_meta *meta, int64_t n, char *out, size_t len) {
    XXH64_state_t *h = XXH64_createState();
    if (!h) return rx_fail(RX_ERR_OOM, "featstats: out of memory");
    XXH64_reset(h, 0);
    // each field with its terminating NUL, so ("ab", "c") and ("a", "bc") differ
#define X(f) XXH64_update(h, meta->f, strnlen(meta->f, sizeof meta->f)); XXH64_update(h, "", 1);
    META_FIELDS(X)
#undef X
    const uint64_t n64 = (uint64_t)n;
    XXH64_update(h, &n64, sizeof n64);
    const unsigned long long key = XXH64_digest(h);
    XXH64_freeState(h);
    int k = snprintf(out, len, "%.64s-%.32s-%.64s-n%lld-%016llx.rxstats", meta->dataset, meta->split,
                     meta->extractor, (long long)n, key);
    if (k < 0 || (size_t)k >= len) return rx_fail(RX_ERR_ARG, "featstats: cache name needs %d bytes, have %zu", k + 1, len);
    for (char *c = out; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
              *c == '-' || *c == '_'))
            *c = '_';
    return RX_OK;
}

rx_status rx_featstats_check_meta(const rx_featstats *st, const rx_featstats_meta *want, int64_t n, int d) {
#define X(f) if (strncmp(st->meta.f, want->f, sizeof want->f) != 0) \
        return rx_fail(RX_ERR_FORMAT, "featstats: stale statistics: " #f " is '%s', expected '%s'", st->meta.f, want->f);
    META_FIELDS(X)
#undef X
    if (st->n != n) return rx_fail(RX_ERR_FORMAT, "featstats: stale statistics: n is %lld, expected %lld", (long long)st->n, (long long)n);
    if (st->d != d) return rx_fail(RX_ERR_FORMAT, "featstats: stale statistics: d is %d, expected %d", st->d, d);
    return RX_OK;
}

rx_status rx_featstats_add(rx_featstats *st, const float *feats, int64_t n) {
    if (!st->sumsq)
        return rx_fail(RX_ERR_ARG, "featstats: cannot add rows to %s statistics",
                       st->finished ? "finished" : "uninitialised");
    if (n < 0) return rx_fail(RX_ERR_ARG, "featstats: negative row count %lld", (long long)n);
    const int d = st->d;
    for (int64_t i = 0; i < n * d; i++)
        if (!isfinite(feats[i]))
            return rx_fail(RX_ERR_NUMERIC, "featstats: non-finite feature %g at row %lld, column %lld",
                           feats[i], (long long)(i / d), (long long)(i % d));
    if (n == 0) return RX_OK;

    if (st->n == 0) {
        // shift [d] = mean of the first batch: close to the final mean, so x - shift is small
        for (int64_t r = 0; r < n; r++)
            for (int j = 0; j < d; j++) st->shift[j] += feats[r * d + j];
        for (int j = 0; j < d; j++) st->shift[j] /= (double)n;
    }

    for (int64_t r0 = 0; r0 < n; r0 += st->block_rows) {
        const int rows = (int)(n - r0 < st->block_rows ? n - r0 : st->block_rows);
        // block [rows, d] = x - shift, in float64
        for (int r = 0; r < rows; r++) {
            const float *x = feats + (r0 + r) * d;
            double *b = st->block + (size_t)r * d;
            for (int j = 0; j < d; j++) {
                b[j] = (double)x[j] - st->shift[j];
                st->sum[j] += b[j];
            }
        }
        // sumsq [d,d] += blockᵀ block  (upper triangle)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, rows, 1.0, st->block, d, 1.0, st->sumsq, d);
    }
    st->n += n;
    return RX_OK;
}

rx_status rx_featstats_finish(rx_featstats *st) {
    if (st->finished) return RX_OK;
    if (!st->sumsq) return rx_fail(RX_ERR_ARG, "featstats: finish on uninitialised statistics");
    if (st->n < 2)
        return rx_fail(RX_ERR_ARG, "featstats: covariance needs at least 2 rows, have %lld", (long long)st->n);
    const int d = st->d;
    const double n = (double)st->n;
    // mean = shift + S1/n, written over shift
    for (int j = 0; j < d; j++) st->shift[j] += st->sum[j] / n;
    // cov = (S2 - S1 S1ᵀ/n) / (n-1), in place over S2's upper triangle, then mirrored
    double *c = st->sumsq;
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++)
            c[(size_t)i * d + j] = (c[(size_t)i * d + j] - st->sum[i] * st->sum[j] / n) / (n - 1.0);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++) c[(size_t)i * d + j] = c[(size_t)j * d + i];
    st->mean = st->shift;
    st->cov = st->sumsq;
    st->shift = st->sumsq = NULL;
    free(st->sum);
    free(st->block);
    st->sum = st->block = NULL;
    st->finished = 1;
    return RX_OK;
}

/* ---- file format ---------------------------------------------------------------- */

static size_t file_bytes(int d) {
    return (size_t)HEADER_BYTES + 8 * (size_t)d + 8 * ((size_t)d * (d + 1) / 2) + 8;
}

rx_status rx_featstats_save(const rx_featstats *st, const char *path) {
    if (!st->finished) return rx_fail(RX_ERR_ARG, "featstats: save needs finished statistics");
    // NUL-padded copy of the provenance: same statistics, same bytes
    rx_featstats_meta meta;
    memset(&meta, 0, sizeof meta);
#define X(f) if (!memchr(st->meta.f, 0, sizeof st->meta.f)) \
        return rx_fail(RX_ERR_ARG, "featstats: meta field " #f " is not NUL-terminated"); \
    strcpy(meta.f, st->meta.f);
    META_FIELDS(X)
#undef X
    const int d = st->d;
    const size_t total = file_bytes(d);
    unsigned char *buf = malloc(total);
    if (!buf) return rx_fail(RX_ERR_OOM, "featstats: cannot allocate %zu bytes to save %s", total, path);

    unsigned char *p = buf;
    const uint32_t version = FILE_VERSION, dim = (uint32_t)d;
    const uint64_t n = (uint64_t)st->n;
    memcpy(p, FILE_MAGIC, 8);            p += 8;
    memcpy(p, &version, 4);              p += 4;
    memcpy(p, &dim, 4);                  p += 4;
    memcpy(p, &n, 8);                    p += 8;
    memcpy(p, &meta, sizeof meta);       p += sizeof meta;
    memcpy(p, st->mean, 8 * (size_t)d);  p += 8 * (size_t)d;
    for (int i = 0; i < d; i++) {        // upper triangle, row i from column i
        memcpy(p, st->cov + (size_t)i * d + i, 8 * (size_t)(d - i));
        p += 8 * (size_t)(d - i);
    }
    const uint64_t checksum = XXH64(buf, (size_t)(p - buf), 0);
    memcpy(p, &checksum, 8);

    rx_status s = rx_fs_write_atomic(path, buf, total);
    free(buf);
    return s;
}

static int field_terminated(const char *s, size_t cap) { return memchr(s, 0, cap) != NULL; }

rx_status rx_featstats_load(rx_featstats *st, const char *path) {
    memset(st, 0, sizeof *st);
    FILE *f = fopen(path, "rb");
    if (!f) return rx_fail(RX_ERR_IO, "featstats: cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        fclose(f);
        return rx_fail(RX_ERR_IO, "featstats: cannot stat %s: %s", path, strerror(errno));
    }
    const size_t size = (size_t)sb.st_size;
    if (size < (size_t)HEADER_BYTES + 8) {
        fclose(f);
        return rx_fail(RX_ERR_FORMAT, "featstats: %s is truncated (%zu bytes, header alone is %d)",
                       path, size, HEADER_BYTES + 8);
    }
    unsigned char *buf = malloc(size);
    if (!buf) { fclose(f); return rx_fail(RX_ERR_OOM, "featstats: cannot allocate %zu bytes for %s", size, path); }
    size_t got = fread(buf, 1, size, f);
    fclose(f);
    rx_status s = RX_OK;
    if (got != size) { s = rx_fail(RX_ERR_IO, "featstats: short read of %s", path); goto done; }

    uint32_t version, dim;
    uint64_t n;
    const unsigned char *p = buf;
    if (memcmp(p, FILE_MAGIC, 8) != 0) { s = rx_fail(RX_ERR_FORMAT, "featstats: %s is not a statistics file (bad magic)", path); goto done; }
    p += 8;
    memcpy(&version, p, 4); p += 4;
    memcpy(&dim, p, 4);     p += 4;
    memcpy(&n, p, 8);       p += 8;
    if (version != FILE_VERSION) { s = rx_fail(RX_ERR_FORMAT, "featstats: %s has version %u, expected %d", path, version, FILE_VERSION); goto done; }
    if (dim < 1 || dim > RX_FEATSTATS_MAX_DIM) { s = rx_fail(RX_ERR_FORMAT, "featstats: %s has dimension %u outside [1, %d]", path, dim, RX_FEATSTATS_MAX_DIM); goto done; }
    if (size != file_bytes((int)dim)) {
        s = rx_fail(RX_ERR_FORMAT, "featstats: %s has %zu bytes, expected %zu for d=%u", path, size, file_bytes((int)dim), dim);
        goto done;
    }
    uint64_t stored;
    memcpy(&stored, buf + size - 8, 8);
    if (XXH64(buf, size - 8, 0) != stored) { s = rx_fail(RX_ERR_FORMAT, "featstats: %s is corrupt (checksum mismatch)", path); goto done; }
    if (n < 2) { s = rx_fail(RX_ERR_FORMAT, "featstats: %s records n=%llu rows (< 2)", path, (unsigned long long)n); goto done; }

    rx_featstats_meta meta;
    memcpy(&meta, p, sizeof meta); p += sizeof meta;
#define X(f) if (!field_terminated(meta.f, sizeof meta.f)) { \
        s = rx_fail(RX_ERR_FORMAT, "featstats: %s has an unterminated " #f " string", path); goto done; }
    META_FIELDS(X)
#undef X
    const int d = (int)dim;
    st->mean = malloc(8 * (size_t)d);
    st->cov = malloc(8 * (size_t)d * d);
    if (!st->mean || !st->cov) { s = rx_fail(RX_ERR_OOM, "featstats: cannot allocate statistics for d=%d", d); goto done; }
    memcpy(st->mean, p, 8 * (size_t)d); p += 8 * (size_t)d;
    for (int i = 0; i < d; i++) {
        memcpy(st->cov + (size_t)i * d + i, p, 8 * (size_t)(d - i));
        p += 8 * (size_t)(d - i);
        for (int j = 0; j < i; j++) st->cov[(size_t)i * d + j] = st->cov[(size_t)j * d + i];
    }
    for (size_t i = 0; i < (size_t)d * d; i++)
        if (!isfinite(st->cov[i]) || (i < (size_t)d && !isfinite(st->mean[i]))) {
            s = rx_fail(RX_ERR_FORMAT, "featstats: %s holds a non-finite value", path);
            goto done;
        }
    st->d = d;
    st->n = (int64_t)n;
    st->meta = meta;
    st->finished = 1;
done:
    free(buf);
    if (s != RX_OK) rx_featstats_free(st);
    return s;
}
