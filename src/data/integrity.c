/* integrity.c — gzip streams read to their checked end, the md5 of published files with a
 * cache (see integrity.h). */
#include "data/integrity.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/fetch.h"
#include "io/fsutil.h"

enum { GZ_IN = 1 << 18 };

struct rx_gz_reader {
    FILE *f;
    char *path;
    int gz;              // 1: gzip members; 0: a plain file read as it is
    int zinit;           // inflateInit2 done
    int at_end;          // the stream ended cleanly (for gzip: trailer checked)
    z_stream z;
    uint64_t in_used;    // compressed bytes read so far, for messages
    uint8_t in[GZ_IN];
};

const char *rx_fmt_count(int64_t n, char *out, size_t cap) {
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", (long long)(n < 0 ? -n : n));
    size_t o = 0;
    if (n < 0 && o + 1 < cap) out[o++] = '-';
    for (int i = 0; i < len && o + 1 < cap; i++) {
        if (i && (len - i) % 3 == 0 && o + 1 < cap) out[o++] = ',';
        if (o + 1 < cap) out[o++] = digits[i];
    }
    if (cap) out[o < cap ? o : cap - 1] = 0;
    return out;
}

static rx_status refill(rx_gz_reader *r) {
    size_t n = fread(r->in, 1, GZ_IN, r->f);
    if (n == 0 && ferror(r->f)) return rx_fail(RX_ERR_IO, "%s: read error: %s", r->path, strerror(errno));
    r->z.next_in = r->in;
    r->z.avail_in = (uInt)n;
    r->in_used += n;
    return RX_OK;
}

rx_status rx_gz_open(const char *path, rx_gz_reader **out) {
    *out = NULL;
    rx_gz_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return rx_fail(RX_ERR_OOM, "%s: out of memory", path);
    }
    if (!(r->f = fopen(path, "rb"))) {
        rx_status st = rx_fail(RX_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        rx_gz_close(r);
        return st;
    }
    rx_status st = refill(r);
    r->gz = st == RX_OK && r->z.avail_in >= 2 && r->in[0] == 0x1f && r->in[1] == 0x8b;
    if (st == RX_OK && r->gz) {
        // 16 + 15: gzip wrapper only, 32 KiB window; inflate then checks each member's CRC32 and ISIZE
        if (inflateInit2(&r->z, 16 + 15) != Z_OK) st = rx_fail(RX_ERR_OOM, "%s: zlib init failed", path);
        else r->zinit = 1;
    }
    if (st != RX_OK) { rx_gz_close(r); return st; }
    *out = r;
    return RX_OK;
}

static rx_status gz_corrupt(rx_gz_reader *r) {
    const char *m = r->z.msg ? r->z.msg : "invalid deflate data";
    if (!strcmp(m, "incorrect data check")) m = "CRC mismatch";
    else if (!strcmp(m, "incorrect length check")) m = "length mismatch";
    return rx_fail(RX_ERR_FORMAT, "%s: gzip data corrupt (%s)", r->path, m);
}

// After a member's trailer: the file ends, or another member starts; anything else is garbage.
static rx_status gz_after_member(rx_gz_reader *r) {
    if (r->z.avail_in == 0) RX_TRY(refill(r));
    if (r->z.avail_in == 0) { r->at_end = 1; return RX_OK; }
    if (r->z.next_in[0] != 0x1f) {
        struct stat sb;
        char n[32];
        int64_t extra = fstat(fileno(r->f), &sb) ? -1 : (int64_t)sb.st_size - (int64_t)(r->in_used - r->z.avail_in);
        return rx_fail(RX_ERR_FORMAT, "%s: %s bytes of trailing data after the gzip stream (not a clean gzip file)",
                       r->path, extra >= 0 ? rx_fmt_count(extra, n, sizeof n) : "some");
    }
    // a next member (gzip files may be concatenated); inflate checks its header
    if (inflateReset(&r->z) != Z_OK) return rx_fail(RX_ERR_INTERNAL, "%s: inflateReset failed", r->path);
    return RX_OK;
}

rx_status rx_gz_read(rx_gz_reader *r, void *buf, size_t cap, size_t *got) {
    *got = 0;
    uint8_t *p = buf;
    while (*got < cap && !r->at_end) {
        if (!r->gz) {
            if (r->z.avail_in == 0) RX_TRY(refill(r));
            if (r->z.avail_in == 0) { r->at_end = 1; break; }
            size_t n = cap - *got < r->z.avail_in ? cap - *got : r->z.avail_in;
            memcpy(p + *got, r->z.next_in, n);
            r->z.next_in += n, r->z.avail_in -= (uInt)n, *got += n;
            continue;
        }
        if (r->z.avail_in == 0) RX_TRY(refill(r));
        if (r->z.avail_in == 0) {
            char n[32];
            return rx_fail(RX_ERR_FORMAT, "%s: gzip stream truncated (ends after %s bytes, before its CRC and length)",
                           r->path, rx_fmt_count((int64_t)r->in_used, n, sizeof n));
        }
        size_t want = cap - *got > UINT_MAX ? UINT_MAX : cap - *got;
        r->z.next_out = p + *got;
        r->z.avail_out = (uInt)want;
        int ret = inflate(&r->z, Z_NO_FLUSH);
        *got += want - r->z.avail_out;
        if (ret == Z_STREAM_END) RX_TRY(gz_after_member(r));
        else if (ret == Z_DATA_ERROR || ret == Z_NEED_DICT) return gz_corrupt(r);
        else if (ret == Z_MEM_ERROR) return rx_fail(RX_ERR_OOM, "%s: out of memory in zlib", r->path);
        // Z_OK / Z_BUF_ERROR: more input or more room; the loop supplies either
    }
    return RX_OK;
}

rx_status rx_gz_read_exact(rx_gz_reader *r, void *buf, size_t n, const char *what) {
    size_t got = 0;
    RX_TRY(rx_gz_read(r, buf, n, &got));
    if (got < n) {
        char a[32], b[32];
        return rx_fail(RX_ERR_FORMAT, "%s: file ends in the %s (%s of %s bytes): truncated", r->path, what,
                       rx_fmt_count((int64_t)got, a, sizeof a), rx_fmt_count((int64_t)n, b, sizeof b));
    }
    return RX_OK;
}

// Reads to the end; *extra = the bytes that were still there.
static rx_status gz_skip_rest(rx_gz_reader *r, uint64_t *extra) {
    static _Thread_local uint8_t sink[1 << 16];
    *extra = 0;
    size_t got;
    do {
        RX_TRY(rx_gz_read(r, sink, sizeof sink, &got));
        *extra += got;
    } while (got > 0);
    return RX_OK;
}

rx_status rx_gz_drain(rx_gz_reader *r) {
    uint64_t extra;
    return gz_skip_rest(r, &extra);
}

rx_status rx_gz_finish(rx_gz_reader *r) {
    uint64_t extra;
    RX_TRY(gz_skip_rest(r, &extra));
    if (extra) {
        char n[32];
        return rx_fail(RX_ERR_FORMAT, "%s: %s bytes more than its header describes", r->path,
                       rx_fmt_count((int64_t)extra, n, sizeof n));
    }
    return RX_OK;
}

void rx_gz_close(rx_gz_reader *r) {
    if (!r) return;
    if (r->zinit) inflateEnd(&r->z);
    if (r->f) fclose(r->f);
    free(r->path);
    free(r);
}

/* ---- md5 of published files, cached ------------------------------------------------------ */

rx_status rx_data_md5_cache_path(char *out, size_t cap) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && *xdg) n = snprintf(out, cap, "%s/runexp/data-md5.tsv", xdg);
    else if (home && *home) n = snprintf(out, cap, "%s/.cache/runexp/data-md5.tsv", home);
    else return rx_fail(RX_ERR_IO, "no cache directory: neither $XDG_CACHE_HOME nor $HOME is set");
    if (n < 0 || (size_t)n >= cap) return rx_fail(RX_ERR_IO, "cache path too long");
    return RX_OK;
}

// One cache line: md5, size, mtime (s.ns), real path; tab-separated (paths with tabs or
// newlines are not cached).
static int format_key(char *out, size_t cap, const char *md5, const struct stat *sb, const char *real) {
    int n = snprintf(out, cap, "%s\t%lld\t%lld.%09ld\t%s\n", md5, (long long)sb->st_size, (long long)sb->st_mtim.tv_sec,
                     (long)sb->st_mtim.tv_nsec, real);
    return n > 0 && (size_t)n < cap;
}

// Rewrites the cache with `line` instead of any earlier line for the same file; best effort:
// a cache that cannot be written only means the md5 is computed again next time.
static void cache_store(const char *cache, const char *line, const char *real) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", cache);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    char *old = NULL, *buf = NULL;
    size_t len = 0;
    if (rx_fs_mkdir_p(dir) != RX_OK) goto out;
    if (rx_fs_read_file(cache, &old, &len) != RX_OK) old = NULL, len = 0;
    size_t lline = strlen(line), lreal = strlen(real);
    if (!(buf = malloc(len + lline + 1))) goto out;
    size_t o = 0;
    for (char *s = old; s && *s;) {
        char *e = strchr(s, '\n');
        size_t l = e ? (size_t)(e - s) + 1 : strlen(s);
        // the path is the last field: drop lines that end in "\t<real>\n"
        int same = l > lreal + 1 && !strncmp(s + l - 1 - lreal, real, lreal) && s[l - 2 - lreal] == '\t' && e;
        if (!same && e) memcpy(buf + o, s, l), o += l;
        s += l;
    }
    memcpy(buf + o, line, lline), o += lline;
    if (rx_fs_write_atomic(cache, buf, o) != RX_OK) goto out;
out:
    free(old);
    free(buf);
    rx_clear_error();
}

rx_status rx_data_verify_md5(const char *path, const char *md5) {
    struct stat sb;
    if (stat(path, &sb)) return rx_fail(RX_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    char real[PATH_MAX], cache[4200], line[PATH_MAX + 128];
    if (!realpath(path, real)) snprintf(real, sizeof real, "%s", path);
    int cacheable = !strpbrk(real, "\t\n") && format_key(line, sizeof line, md5, &sb, real) &&
                    rx_data_md5_cache_path(cache, sizeof cache) == RX_OK;
    rx_clear_error();
    if (cacheable) {
        char *text = NULL;
        size_t len = 0;
        if (rx_fs_read_file(cache, &text, &len) == RX_OK) {
            size_t l = strlen(line);
            int hit = !strncmp(text, line, l);
            for (const char *s = strchr(text, '\n'); s && !hit; s = strchr(s + 1, '\n')) hit = !strncmp(s + 1, line, l);
            free(text);
            if (hit) return RX_OK;   // verified before, and the file has not changed since
        }
        rx_clear_error();
    }
    char got[33];
    RX_TRY(rx_md5_file(path, got));
    if (strcmp(got, md5))
        return rx_fail(RX_ERR_FORMAT,
                       "%s: md5 %s, expected %s (the published file's size but not its content: corrupt)", path, got,
                       md5);
    if (cacheable) cache_store(cache, line, real);
    return RX_OK;
}

rx_status rx_data_check_listed(const rx_dataset_file *files, const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (const rx_dataset_file *f = files; f && f->file; f++) {
        if (strcmp(f->file, base) || f->size <= 0 || !f->md5) continue;
        struct stat sb;
        if (stat(path, &sb)) return rx_fail(RX_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
        // another size is another packaging of the data (or a truncated file, which the
        // format's own checks refuse): the published md5 says nothing about it
        if ((int64_t)sb.st_size != f->size) return RX_OK;
        return rx_data_verify_md5(path, f->md5);
    }
    return RX_OK;
}
