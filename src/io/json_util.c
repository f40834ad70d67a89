/* json_util.c — see json_util.h. */
#include "io/json_util.h"
#include "io/fsutil.h"

#include <errno.h>
#include <string.h>

rx_status rx_json_load_file(const char *path, json_t **out) {
    *out = NULL;
    char *text;
    size_t n;
    RX_TRY(rx_fs_read_file(path, &text, &n));
    json_error_t err;
    *out = json_loadb(text, n, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!*out) return rx_fail(RX_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", path, err.line, err.column, err.text);
    return RX_OK;
}

static rx_status dump_with_newline(const char *path, const json_t *root, size_t flags, char **out, size_t *len) {
    char *text = json_dumps(root, flags);
    if (!text) return rx_fail(RX_ERR_ARG, "%s: cannot serialise JSON (out of memory, or not an object/array)", path);
    size_t n = strlen(text);
    char *buf = realloc(text, n + 2);
    if (!buf) { free(text); return rx_fail(RX_ERR_OOM, "%s: out of memory", path); }
    buf[n] = '\n';
    buf[n + 1] = 0;
    *out = buf;
    *len = n + 1;
    return RX_OK;
}

rx_status rx_json_write_atomic(const char *path, const json_t *root) { return rx_json_write_atomic_digits(path, root, 0); }

rx_status rx_json_write_atomic_digits(const char *path, const json_t *root, int real_digits) {
    char *text = NULL;
    size_t n = 0;
    size_t flags = JSON_INDENT(2) | JSON_PRESERVE_ORDER | (real_digits > 0 ? JSON_REAL_PRECISION(real_digits) : 0);
    RX_TRY(dump_with_newline(path, root, flags, &text, &n));
    rx_status s = rx_fs_write_atomic(path, text, n);
    free(text);
    return s;
}

rx_status rx_json_append_line(const char *path, const json_t *obj) {
    char *text = NULL;
    size_t n = 0;
    RX_TRY(dump_with_newline(path, obj, JSON_COMPACT | JSON_PRESERVE_ORDER, &text, &n));
    rx_status s = rx_fs_append_locked(path, NULL, text);
    free(text);
    return s;
}
