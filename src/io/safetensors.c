/* safetensors.c — validated reader (mmap) and atomic writer. See safetensors.h. */
#include "io/safetensors.h"
#include "io/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format is little-endian)"
#endif

/* Python's reader refuses headers above 100 MB; so do we (a corrupt length
 * field must not make us parse gigabytes). */
#define ST_MAX_HEADER ((uint64_t)100000000)
/* numel * 8 must not overflow int64/uint64. */
#define ST_MAX_NUMEL ((int64_t)1 << 59)

/* ---- dtypes: one table ---- */

static const struct { const char *name; size_t size; } dtype_table[RX_ST_DTYPE_COUNT] = {
#define X(id, str, size) [RX_ST_##id] = {str, size},
    RX_ST_DTYPE_LIST(X)
#undef X
};

const char *rx_st_dtype_name(rx_st_dtype t) {
    return (t >= 0 && t < RX_ST_DTYPE_COUNT) ? dtype_table[t].name : "?";
}
size_t rx_st_dtype_size(rx_st_dtype t) { return (t >= 0 && t < RX_ST_DTYPE_COUNT) ? dtype_table[t].size : 0; }

int rx_st_dtype_from_name(const char *s) {
    for (int i = 0; i < RX_ST_DTYPE_COUNT; i++)
        if (!strcmp(s, dtype_table[i].name)) return i;
    return -1;
}

/* ---- half precision ---- */

static inline float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t bits_from_f32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

float rx_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }   /* bf16 = top half of f32 */

float rx_f16_to_f32(uint16_t h) {
    /* f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000 | (man << 13));   /* inf / nan */
    if (exp != 0) return f32_from_bits(sign | ((exp + 127 - 15) << 23) | (man << 13));
    if (man == 0) return f32_from_bits(sign);                                  /* +-0 */
    /* subnormal: man * 2^-24, exact in float */
    float v = (float)man * 5.9604644775390625e-08f;
    return sign ? -v : v;
}

uint16_t rx_f32_to_f16(float f) {
    uint32_t x = bits_from_f32(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffff;
    if (ax >= 0x7f800000) {                          /* inf, or nan (kept quiet and nonzero) */
        if (ax == 0x7f800000) return sign | 0x7c00;
        return sign | 0x7e00 | (uint16_t)((ax >> 13) & 0x3ff);
    }
    if (ax >= 0x477ff000) return sign | 0x7c00;     /* >= 65520 rounds (to even) past 65504: inf */
    if (ax < 0x38800000) {                           /* below 2^-14: f16 subnormal or zero */
        if (ax <= 0x33000000) return sign;           /* <= 2^-25 rounds to 0 (the tie goes to even 0) */
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        int shift = 126 - (int)e;                    /* value / 2^-24 = m >> shift, shift in [14, 24] */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q;                   /* q == 0x400 is the smallest normal: still right */
    }
    uint32_t h = (((ax >> 23) - 127 + 15) << 10) | ((ax & 0x7fffff) >> 13);
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;   /* a carry into the exponent is correct */
    return sign | (uint16_t)h;
}

uint16_t rx_f32_to_bf16(float f) {
    uint32_t x = bits_from_f32(f);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);   /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);                                           /* round to nearest even */
    return (uint16_t)(x >> 16);
}

/* ---- reader ---- */

struct rx_st_file {
    char          *path;
    void          *map;
    size_t         map_len;
    const uint8_t *data;        /* data section */
    uint64_t       data_len;
    rx_st_tensor  *tensors;     /* ascending data offset */
    int            n;
    int           *by_name;     /* indices into tensors, sorted by name */
    char         **meta_keys, **meta_vals;     /* without the checksum entries */
    int            n_meta;
    char         **sum_names, **sum_vals;     /* "runexp.xxh64.<name>" entries, prefix cut */
    int            n_sums;
};

const char *rx_st_path(const rx_st_file *f) { return f->path; }
int rx_st_count(const rx_st_file *f) { return f->n; }
const rx_st_tensor *rx_st_tensor_at(const rx_st_file *f, int i) {
    return (i >= 0 && i < f->n) ? &f->tensors[i] : NULL;
}
int rx_st_metadata_count(const rx_st_file *f) { return f->n_meta; }
const char *rx_st_metadata_key(const rx_st_file *f, int i) { return (i >= 0 && i < f->n_meta) ? f->meta_keys[i] : NULL; }
const char *rx_st_metadata_value(const rx_st_file *f, int i) { return (i >= 0 && i < f->n_meta) ? f->meta_vals[i] : NULL; }

const char *rx_st_metadata(const rx_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_vals[i];
    return NULL;
}

void rx_st_close(rx_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    for (int i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) { free(f->meta_keys[i]); free(f->meta_vals[i]); }
    for (int i = 0; i < f->n_sums; i++) { free(f->sum_names[i]); free(f->sum_vals[i]); }
    free(f->sum_names);
    free(f->sum_vals);
    free(f->tensors);
    free(f->by_name);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->path);
    free(f);
}

/* "[2, 3, 4]" into buf. */
static const char *shape_str(const rx_st_tensor *t, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* A non-negative JSON integer, or -1. */
static int64_t json_nonneg(const json_t *v) {
    if (!json_is_integer(v)) return -1;
    json_int_t i = json_integer_value(v);
    return i < 0 ? -1 : (int64_t)i;
}

/* Parse one header entry {"dtype", "shape", "data_offsets"} into t. */
static rx_status parse_tensor_entry(const char *path, const char *name, json_t *e, rx_st_tensor *t) {
    if (!json_is_object(e))
        return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': header entry is not a JSON object", path, name);
    const char *k;
    json_t *v;
    json_object_foreach(e, k, v) {
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': unexpected field '%s'", path, name, k);
    }
    json_t *dt = json_object_get(e, "dtype"), *sh = json_object_get(e, "shape"),
           *off = json_object_get(e, "data_offsets");
    if (!dt || !sh || !off)
        return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': missing field '%s'", path, name,
                       !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!json_is_string(dt))
        return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': dtype is not a string", path, name);
    int dtype = rx_st_dtype_from_name(json_string_value(dt));
    if (dtype < 0)
        return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s' (supported: F64 F32 F16 BF16 I64 I32 "
                       "I16 I8 U64 U32 U16 U8 BOOL)", path, name, json_string_value(dt));
    t->dtype = (rx_st_dtype)dtype;

    if (!json_is_array(sh) || json_array_size(sh) > RX_ST_MAX_DIMS)
        return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': shape must be an array of at most %d dimensions", path,
                       name, RX_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(sh);
    t->numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        int64_t s = json_nonneg(json_array_get(sh, (size_t)d));
        if (s < 0)
            return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, d);
        t->shape[d] = s;
        if (s && t->numel > ST_MAX_NUMEL / s)
            return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': shape is absurdly large", path, name);
        t->numel *= s;
    }

    if (!json_is_array(off) || json_array_size(off) != 2)
        return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end]", path, name);
    int64_t b = json_nonneg(json_array_get(off, 0)), en = json_nonneg(json_array_get(off, 1));
    if (b < 0 || en < 0)
        return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': data_offsets must be non-negative integers", path, name);
    if (en < b)
        return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] end before they begin", path,
                       name, (long long)b, (long long)en);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)en;
    uint64_t need = (uint64_t)t->numel * dtype_table[t->dtype].size;
    if (t->end - t->begin != need) {
        char sb[128];
        return rx_fail(RX_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but shape %s of %s needs %llu",
                       path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)(t->end - t->begin), shape_str(t, sb, sizeof sb),
                       dtype_table[t->dtype].name, (unsigned long long)need);
    }
    return RX_OK;
}

static int cmp_by_offset(const void *a, const void *b) {
    const rx_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static _Thread_local const rx_st_tensor *sort_tensors;   /* qsort has no user pointer */
static int cmp_by_name(const void *a, const void *b) {
    return strcmp(sort_tensors[*(const int *)a].name, sort_tensors[*(const int *)b].name);
}

/* One __metadata__ object: checksum entries (RX_ST_SUM_PREFIX + tensor name) go to
 * f->sum_*, everything else to f->meta_*. All values must be strings. */
static rx_status parse_metadata(rx_st_file *f, json_t *meta) {
    size_t nm = json_object_size(meta);
    f->meta_keys = calloc(nm ? nm : 1, sizeof(char *));
    f->meta_vals = calloc(nm ? nm : 1, sizeof(char *));
    f->sum_names = calloc(nm ? nm : 1, sizeof(char *));
    f->sum_vals = calloc(nm ? nm : 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_vals || !f->sum_names || !f->sum_vals)
        return rx_fail(RX_ERR_OOM, "%s: out of memory", f->path);
    const size_t plen = strlen(RX_ST_SUM_PREFIX);
    const char *mk;
    json_t *mv;
    json_object_foreach(meta, mk, mv) {
        if (!json_is_string(mv))
            return rx_fail(RX_ERR_FORMAT, "%s: __metadata__['%s'] is not a string (metadata is string -> string)",
                           f->path, mk);
        int is_sum = !strncmp(mk, RX_ST_SUM_PREFIX, plen);
        char **k = is_sum ? &f->sum_names[f->n_sums] : &f->meta_keys[f->n_meta];
        char **v = is_sum ? &f->sum_vals[f->n_sums++] : &f->meta_vals[f->n_meta++];
        *k = strdup(mk + (is_sum ? plen : 0));
        *v = strdup(json_string_value(mv));
        if (!*k || !*v) return rx_fail(RX_ERR_OOM, "%s: out of memory", f->path);
    }
    return RX_OK;
}

/* "0123456789abcdef" (exactly 16 hex digits) -> *out; 0 if malformed. */
static int parse_hex64(const char *s, uint64_t *out) {
    uint64_t v = 0;
    int i = 0;
    for (; s[i] && i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        v = v << 4 | (uint64_t)d;
    }
    if (i != 16 || s[i]) return 0;
    *out = v;
    return 1;
}

/* XXH64 (seed 0) of bytes; an empty tensor may have no pointer. */
static uint64_t st_xxh64(const void *p, uint64_t n) { return XXH64(n ? p : "", (size_t)n, 0); }

/* A file that carries checksums must carry one for every tensor and only for its
 * tensors (a corrupt header can rename one), and every tensor's bytes must hash to
 * it. Runs at open, so a corrupt file never yields a single value. Files without
 * checksums (other writers) pass unverified. */
static rx_status verify_checksums(const rx_st_file *f) {
    if (!f->n_sums) return RX_OK;
    uint64_t *want = calloc((size_t)f->n + 1, sizeof *want);
    if (!want) return rx_fail(RX_ERR_OOM, "%s: out of memory", f->path);
    char *have = calloc((size_t)f->n + 1, 1);
    rx_status s = have ? RX_OK : rx_fail(RX_ERR_OOM, "%s: out of memory", f->path);
    for (int i = 0; i < f->n_sums && !s; i++) {
        const rx_st_tensor *t = rx_st_find(f, f->sum_names[i]);
        uint64_t v;
        if (!t)
            s = rx_fail(RX_ERR_FORMAT, "%s: checksum for tensor '%s', which the file does not hold (header corrupt)",
                        f->path, f->sum_names[i]);
        else if (!parse_hex64(f->sum_vals[i], &v))
            s = rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': checksum '%s' is not 16 hex digits (header corrupt)",
                        f->path, t->name, f->sum_vals[i]);
        else { want[t - f->tensors] = v; have[t - f->tensors] = 1; }
    }
    for (int i = 0; i < f->n && !s; i++) {
        const rx_st_tensor *t = &f->tensors[i];
        if (!have[i])
            s = rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': no checksum, though the file has them for other tensors "
                        "(header corrupt)", f->path, t->name);
        else if (st_xxh64(f->data + t->begin, t->end - t->begin) != want[i])
            s = rx_fail(RX_ERR_FORMAT, "%s: tensor '%s': checksum mismatch (data corrupt)", f->path, t->name);
    }
    free(want);
    free(have);
    return s;
}

/* Everything after the 8-byte length: JSON parse and all the checks. */
static rx_status parse_header(rx_st_file *f, const char *hdr, size_t hlen) {
    const char *path = f->path;
    if (hlen == 0 || hdr[0] != '{')
        return rx_fail(RX_ERR_FORMAT, "%s: header does not start with '{' (not a safetensors file?)", path);
    json_error_t jerr;
    /* JSON_REJECT_DUPLICATES: a repeated tensor name is an error, not "last one wins". */
    json_t *root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (strstr(jerr.text, "duplicate"))
            return rx_fail(RX_ERR_FORMAT, "%s: duplicate key in header (%s)", path, jerr.text);
        return rx_fail(RX_ERR_FORMAT, "%s: invalid JSON header: %s (header line %d, column %d)", path, jerr.text,
                       jerr.line, jerr.column);
    }
    rx_status s = RX_OK;
    if (!json_is_object(root)) {
        s = rx_fail(RX_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }
    size_t n_entries = json_object_size(root);
    f->tensors = calloc(n_entries ? n_entries : 1, sizeof *f->tensors);
    if (!f->tensors) { s = rx_fail(RX_ERR_OOM, "%s: out of memory", path); goto done; }

    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) {
                s = rx_fail(RX_ERR_FORMAT, "%s: __metadata__ is not a JSON object", path);
                goto done;
            }
            s = parse_metadata(f, val);
            if (s) goto done;
            continue;
        }
        rx_st_tensor *t = &f->tensors[f->n];
        s = parse_tensor_entry(path, key, val, t);
        if (s) goto done;
        t->name = strdup(key);
        if (!t->name) { s = rx_fail(RX_ERR_OOM, "%s: out of memory", path); goto done; }
        f->n++;
    }

    /* Every tensor inside the data section (a short file is the usual cause)... */
    for (int i = 0; i < f->n; i++) {
        const rx_st_tensor *t = &f->tensors[i];
        if (t->end > f->data_len) {
            s = rx_fail(RX_ERR_FORMAT,
                        "%s: tensor '%s' ends at data byte %llu but the data section has only %llu bytes "
                        "(truncated file?)", path, t->name, (unsigned long long)t->end,
                        (unsigned long long)f->data_len);
            goto done;
        }
    }
    /* ...and together they tile it exactly: sorted by offset, each begins where
     * the previous one ended. */
    qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_by_offset);
    uint64_t pos = 0;
    for (int i = 0; i < f->n; i++) {
        const rx_st_tensor *t = &f->tensors[i];
        if (t->begin < pos) {
            s = rx_fail(RX_ERR_FORMAT, "%s: tensor '%s' [%llu, %llu) overlaps tensor '%s' [%llu, %llu)", path,
                        t->name, (unsigned long long)t->begin, (unsigned long long)t->end, f->tensors[i - 1].name,
                        (unsigned long long)f->tensors[i - 1].begin, (unsigned long long)f->tensors[i - 1].end);
            goto done;
        }
        if (t->begin > pos) {
            s = rx_fail(RX_ERR_FORMAT, "%s: gap of %llu unused bytes before tensor '%s' (data offsets not contiguous)",
                        path, (unsigned long long)(t->begin - pos), t->name);
            goto done;
        }
        pos = t->end;
    }
    if (pos != f->data_len) {
        s = rx_fail(RX_ERR_FORMAT, "%s: %llu trailing bytes after the last tensor (data section %llu bytes, tensors "
                    "cover %llu)", path, (unsigned long long)(f->data_len - pos), (unsigned long long)f->data_len,
                    (unsigned long long)pos);
        goto done;
    }

    f->by_name = calloc((size_t)f->n + 1, sizeof(int));
    if (!f->by_name) { s = rx_fail(RX_ERR_OOM, "%s: out of memory", path); goto done; }
    for (int i = 0; i < f->n; i++) f->by_name[i] = i;
    sort_tensors = f->tensors;
    qsort(f->by_name, (size_t)f->n, sizeof(int), cmp_by_name);
done:
    json_decref(root);
    return s;
}

rx_status rx_st_open(const char *path, rx_st_file **out) {
    *out = NULL;
    rx_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return rx_fail(RX_ERR_OOM, "%s: out of memory", path);
    }
    rx_status s = RX_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        s = rx_fail(RX_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        s = rx_fail(RX_ERR_IO, "%s: not a regular file", path);
        close(fd);
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8) {
        s = rx_fail(RX_ERR_FORMAT, "%s: file is %llu bytes, too short for a safetensors header length", path,
                    (unsigned long long)size);
        close(fd);
        goto fail;
    }
    f->map_len = (size_t)size;
    f->map = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);   /* the mapping keeps the file alive */
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        s = rx_fail(RX_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    uint64_t hlen;
    memcpy(&hlen, f->map, 8);   /* little-endian u64 (host is little-endian) */
    if (hlen > ST_MAX_HEADER) {
        s = rx_fail(RX_ERR_FORMAT, "%s: header length %llu exceeds the 100 MB limit (corrupt or not a safetensors file)",
                    path, (unsigned long long)hlen);
        goto fail;
    }
    if (hlen > size - 8) {
        s = rx_fail(RX_ERR_FORMAT, "%s: header length %llu exceeds the %llu bytes after the length field "
                    "(truncated or not a safetensors file)", path, (unsigned long long)hlen,
                    (unsigned long long)(size - 8));
        goto fail;
    }
    f->data = (const uint8_t *)f->map + 8 + hlen;
    f->data_len = size - 8 - hlen;
    s = parse_header(f, (const char *)f->map + 8, (size_t)hlen);
    if (!s) s = verify_checksums(f);
    if (s) goto fail;
    *out = f;
    return RX_OK;
fail:
    rx_st_close(f);
    return s;
}

const rx_st_tensor *rx_st_find(const rx_st_file *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const rx_st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return NULL;
}

rx_status rx_st_get(const rx_st_file *f, const char *name, const rx_st_tensor **out) {
    *out = rx_st_find(f, name);
    if (!*out) return rx_fail(RX_ERR_FORMAT, "%s: no tensor '%s'", f->path, name);
    return RX_OK;
}

rx_status rx_st_check_shape(const rx_st_file *f, const char *name, int ndim, const int64_t *shape) {
    const rx_st_tensor *t;
    RX_TRY(rx_st_get(f, name, &t));
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        rx_st_tensor want = {.ndim = ndim};
        for (int d = 0; d < ndim && d < RX_ST_MAX_DIMS; d++) want.shape[d] = shape[d];
        char a[128], b[128];
        return rx_fail(RX_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", f->path, name,
                       shape_str(t, a, sizeof a), shape_str(&want, b, sizeof b));
    }
    return RX_OK;
}

const void *rx_st_data(const rx_st_file *f, const rx_st_tensor *t) { return f->data + t->begin; }

rx_status rx_st_read_f32(const rx_st_file *f, const char *name, float *dst, int64_t n) {
    const rx_st_tensor *t;
    RX_TRY(rx_st_get(f, name, &t));
    if (t->numel != n)
        return rx_fail(RX_ERR_SHAPE, "%s: tensor '%s' has %lld elements, expected %lld", f->path, name,
                       (long long)t->numel, (long long)n);
    const uint8_t *src = f->data + t->begin;
    /* memcpy per element: the data may be unaligned in files from other writers. */
    switch (t->dtype) {
    case RX_ST_F32:
        memcpy(dst, src, (size_t)n * 4);
        break;
    case RX_ST_F16:
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, src + 2 * i, 2); dst[i] = rx_f16_to_f32(h); }
        break;
    case RX_ST_BF16:
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, src + 2 * i, 2); dst[i] = rx_bf16_to_f32(h); }
        break;
    case RX_ST_F64:
        for (int64_t i = 0; i < n; i++) { double d; memcpy(&d, src + 8 * i, 8); dst[i] = (float)d; }
        break;
    default:
        return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s' is %s, not a floating-point type", f->path, name,
                       dtype_table[t->dtype].name);
    }
    return RX_OK;
}

rx_status rx_st_read_raw(const rx_st_file *f, const char *name, rx_st_dtype dtype, void *dst, size_t nbytes) {
    const rx_st_tensor *t;
    RX_TRY(rx_st_get(f, name, &t));
    if (t->dtype != dtype)
        return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s' is %s, expected %s", f->path, name,
                       dtype_table[t->dtype].name, rx_st_dtype_name(dtype));
    if (t->end - t->begin != nbytes)
        return rx_fail(RX_ERR_SHAPE, "%s: tensor '%s' has %llu bytes, expected %zu", f->path, name,
                       (unsigned long long)(t->end - t->begin), nbytes);
    if (nbytes) memcpy(dst, f->data + t->begin, nbytes);
    return RX_OK;
}

rx_status rx_st_read_i64_scalar(const rx_st_file *f, const char *name, int64_t *out) {
    const rx_st_tensor *t;
    RX_TRY(rx_st_get(f, name, &t));
    if (t->numel != 1)
        return rx_fail(RX_ERR_SHAPE, "%s: tensor '%s' has %lld elements, expected a scalar", f->path, name,
                       (long long)t->numel);
    const uint8_t *src = f->data + t->begin;
    if (t->dtype == RX_ST_I64) { memcpy(out, src, 8); return RX_OK; }
    if (t->dtype == RX_ST_I32) { int32_t v; memcpy(&v, src, 4); *out = v; return RX_OK; }
    return rx_fail(RX_ERR_FORMAT, "%s: tensor '%s' is %s, expected I64 or I32", f->path, name,
                   dtype_table[t->dtype].name);
}

/* ---- writer ---- */

typedef struct {
    char       *name;
    rx_st_dtype dtype;
    int         ndim;
    int64_t     shape[RX_ST_MAX_DIMS];
    const void *data;
    uint64_t    nbytes;
    int         order;      /* insertion index: ties in the layout sort keep it */
} st_entry;

struct rx_st_writer {
    st_entry *t;
    int       n, cap;
    char    **meta_keys, **meta_vals;
    int       n_meta, meta_cap;
};

rx_status rx_st_writer_create(rx_st_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? RX_OK : rx_fail(RX_ERR_OOM, "safetensors writer: out of memory");
}

void rx_st_writer_free(rx_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    for (int i = 0; i < w->n_meta; i++) { free(w->meta_keys[i]); free(w->meta_vals[i]); }
    free(w->t);
    free(w->meta_keys);
    free(w->meta_vals);
    free(w);
}

rx_status rx_st_writer_add(rx_st_writer *w, const char *name, rx_st_dtype dtype, int ndim, const int64_t *shape,
                           const void *data) {
    if (!name || !*name) return rx_fail(RX_ERR_ARG, "safetensors writer: empty tensor name");
    if (!strcmp(name, "__metadata__"))
        return rx_fail(RX_ERR_ARG, "safetensors writer: '__metadata__' is reserved, not a tensor name");
    if (dtype < 0 || dtype >= RX_ST_DTYPE_COUNT)
        return rx_fail(RX_ERR_ARG, "safetensors writer: tensor '%s': bad dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > RX_ST_MAX_DIMS)
        return rx_fail(RX_ERR_ARG, "safetensors writer: tensor '%s': ndim %d outside [0, %d]", name, ndim,
                       RX_ST_MAX_DIMS);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return rx_fail(RX_ERR_ARG, "safetensors writer: duplicate tensor name '%s'", name);
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] && numel > ST_MAX_NUMEL / shape[d]))
            return rx_fail(RX_ERR_ARG, "safetensors writer: tensor '%s': bad dimension %lld", name,
                           (long long)shape[d]);
        numel *= shape[d];
    }
    if (numel && !data) return rx_fail(RX_ERR_ARG, "safetensors writer: tensor '%s': NULL data", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        st_entry *nt = realloc(w->t, sizeof *nt * (size_t)cap);
        if (!nt) return rx_fail(RX_ERR_OOM, "safetensors writer: out of memory");
        w->t = nt;
        w->cap = cap;
    }
    st_entry *e = &w->t[w->n];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name))) return rx_fail(RX_ERR_OOM, "safetensors writer: out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    for (int d = 0; d < ndim; d++) e->shape[d] = shape[d];
    e->data = data;
    e->nbytes = (uint64_t)numel * dtype_table[dtype].size;
    e->order = w->n++;
    return RX_OK;
}

rx_status rx_st_writer_set_metadata(rx_st_writer *w, const char *key, const char *value) {
    if (!key || !value) return rx_fail(RX_ERR_ARG, "safetensors writer: NULL metadata key or value");
    if (!strncmp(key, RX_ST_SUM_PREFIX, strlen(RX_ST_SUM_PREFIX)))
        return rx_fail(RX_ERR_ARG, "safetensors writer: metadata key '%s': the prefix '%s' is reserved for the "
                       "checksums the writer computes", key, RX_ST_SUM_PREFIX);
    char *v = strdup(value);
    if (!v) return rx_fail(RX_ERR_OOM, "safetensors writer: out of memory");
    for (int i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta_keys[i], key)) { free(w->meta_vals[i]); w->meta_vals[i] = v; return RX_OK; }
    if (w->n_meta == w->meta_cap) {
        int cap = w->meta_cap ? 2 * w->meta_cap : 16;
        char **nk = realloc(w->meta_keys, sizeof(char *) * (size_t)cap);
        if (nk) w->meta_keys = nk;
        char **nv = nk ? realloc(w->meta_vals, sizeof(char *) * (size_t)cap) : NULL;
        if (nv) w->meta_vals = nv;
        if (!nk || !nv) { free(v); return rx_fail(RX_ERR_OOM, "safetensors writer: out of memory"); }
        w->meta_cap = cap;
    }
    char *k = strdup(key);
    if (!k) { free(v); return rx_fail(RX_ERR_OOM, "safetensors writer: out of memory"); }
    w->meta_keys[w->n_meta] = k;
    w->meta_vals[w->n_meta] = v;
    w->n_meta++;
    return RX_OK;
}

/* Layout order: larger element size first (keeps every tensor naturally aligned),
 * then insertion order. */
static int cmp_layout(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    size_t sx = dtype_table[x->dtype].size, sy = dtype_table[y->dtype].size;
    if (sx != sy) return sx > sy ? -1 : 1;
    return x->order - y->order;
}

/* One metadata entry per tensor, in layout order: RX_ST_SUM_PREFIX + name ->
 * XXH64 (seed 0) of its bytes as 16 lowercase hex digits. Hashed from the same
 * buffers that are written next, so the sum is of exactly the bytes on disk. */
static rx_status add_checksums(json_t *meta, st_entry **layout, int n) {
    for (int i = 0; i < n; i++) {
        const st_entry *e = layout[i];
        size_t klen = strlen(RX_ST_SUM_PREFIX) + strlen(e->name) + 1;
        char *key = malloc(klen), hex[17];
        if (!key) return rx_fail(RX_ERR_OOM, "safetensors writer: out of memory");
        snprintf(key, klen, "%s%s", RX_ST_SUM_PREFIX, e->name);
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)st_xxh64(e->data, e->nbytes));
        int bad = json_object_set_new(meta, key, json_string(hex));
        free(key);
        if (bad) return rx_fail(RX_ERR_ARG, "safetensors writer: tensor name '%s' is not valid UTF-8", e->name);
    }
    return RX_OK;
}

/* The JSON header, compact, in layout order, metadata first (as Python writes it). */
static rx_status build_header(rx_st_writer *w, st_entry **layout, char **out) {
    *out = NULL;
    json_t *root = json_object();
    if (!root) return rx_fail(RX_ERR_OOM, "safetensors writer: out of memory");
    rx_status s = RX_OK;
    if (w->n_meta || w->n) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(root, "__metadata__", meta)) { s = RX_ERR_OOM; goto done; }
        for (int i = 0; i < w->n_meta; i++)
            if (json_object_set_new(meta, w->meta_keys[i], json_string(w->meta_vals[i]))) {
                s = rx_fail(RX_ERR_ARG, "safetensors writer: metadata '%s' is not valid UTF-8", w->meta_keys[i]);
                goto done;
            }
        s = add_checksums(meta, layout, w->n);
        if (s) goto done;
    }
    uint64_t pos = 0;
    for (int i = 0; i < w->n; i++) {
        const st_entry *e = layout[i];
        json_t *shape = json_array(), *entry = json_object();
        if (!shape || !entry) { json_decref(shape); json_decref(entry); s = RX_ERR_OOM; goto done; }
        for (int d = 0; d < e->ndim; d++) json_array_append_new(shape, json_integer((json_int_t)e->shape[d]));
        json_t *off = json_pack("[II]", (json_int_t)pos, (json_int_t)(pos + e->nbytes));
        json_object_set_new(entry, "dtype", json_string(dtype_table[e->dtype].name));
        json_object_set_new(entry, "shape", shape);
        json_object_set_new(entry, "data_offsets", off);
        if (!off || json_object_size(entry) != 3 || json_array_size(shape) != (size_t)e->ndim) {
            json_decref(entry);
            s = RX_ERR_OOM;
            goto done;
        }
        if (json_object_set_new(root, e->name, entry)) {
            s = rx_fail(RX_ERR_ARG, "safetensors writer: tensor name '%s' is not valid UTF-8", e->name);
            goto done;
        }
        pos += e->nbytes;
    }
    *out = json_dumps(root, JSON_COMPACT);
    if (!*out) s = RX_ERR_OOM;
done:
    json_decref(root);
    if (s == RX_ERR_OOM) return rx_fail(RX_ERR_OOM, "safetensors writer: out of memory building the header");
    return s;
}

rx_status rx_st_writer_write(rx_st_writer *w, const char *path) {
    st_entry **layout = malloc(sizeof *layout * (size_t)(w->n ? w->n : 1));
    if (!layout) return rx_fail(RX_ERR_OOM, "safetensors writer: out of memory");
    for (int i = 0; i < w->n; i++) layout[i] = &w->t[i];
    qsort(layout, (size_t)w->n, sizeof *layout, cmp_layout);

    char *header = NULL;
    rx_status s = build_header(w, layout, &header);
    if (s) { free(layout); return rx_fail_ctx(s, "writing %s: ", path); }

    /* Pad with spaces so the data section starts 8-byte aligned. */
    size_t hlen = strlen(header), padded = (hlen + 7) / 8 * 8;
    uint64_t n_le = (uint64_t)padded;   /* little-endian host: the bytes are already LE */
    static const char spaces[8] = "        ";

    rx_atomic_file af;
    s = rx_atomic_begin(path, &af);
    if (s) { free(header); free(layout); return s; }
    int ok = fwrite(&n_le, 8, 1, af.fp) == 1 && fwrite(header, 1, hlen, af.fp) == hlen &&
             fwrite(spaces, 1, padded - hlen, af.fp) == padded - hlen;
    for (int i = 0; ok && i < w->n; i++)
        if (layout[i]->nbytes) ok = fwrite(layout[i]->data, 1, layout[i]->nbytes, af.fp) == layout[i]->nbytes;
    free(header);
    free(layout);
    if (!ok) {
        s = rx_fail(RX_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        rx_atomic_abort(&af);
        return s;
    }
    return rx_atomic_commit(&af);
}
