/* config_emit.c — the config tree back to YAML text, its hash, and an atomic save.
 *
 * The emitted text is canonical for a given tree: block mappings two spaces deep,
 * lists of scalars in flow style, strings quoted only where a plain scalar would read
 * back differently. Hashes are xxHash64 of exactly this text, so anything that changes
 * the text (a value, key order) changes the hash and nothing else does. */
#include "io/config.h"
#include "io/fsutil.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct {
    char  *p;
    size_t n, cap;
    int    oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
}
static void sb_str(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_indent(strbuf *b, int n) { for (int i = 0; i < n; i++) sb_put(b, " ", 1); }

// ---------------------------------------------------------------------------
// numbers

void rx_config_format_float(double v, char *buf, size_t len) {
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    if (!isfinite(v)) { snprintf(buf, len, "%s", tmp); return; }
    // mantissa always has a '.', exponent keeps its sign and loses leading zeros:
    // 1 -> 1.0, 1e+20 -> 1.0e+20, 1e-05 -> 1.0e-5 (also what PyYAML reads as a float)
    char *e = strchr(tmp, 'e');
    char mant[40], expo[16] = "";
    if (e) {
        snprintf(mant, sizeof mant, "%.*s", (int)(e - tmp), tmp);
        char sign = e[1];
        const char *digits = e + 2;
        while (*digits == '0' && digits[1]) digits++;
        snprintf(expo, sizeof expo, "e%c%s", sign, digits);
    } else {
        snprintf(mant, sizeof mant, "%s", tmp);
    }
    snprintf(buf, len, "%s%s%s", mant, strchr(mant, '.') ? "" : ".0", expo);
}

// ---------------------------------------------------------------------------
// scalars

static int needs_quotes(const char *s, int is_string, int flow) {
    if (is_string && rx_cfg_plain_is_typed(s)) return 1;
    if (!*s) return 1;
    if (strchr("-?:,[]{}#&*!|>'\"%@` \t", s[0])) return 1;
    size_t len = strlen(s);
    if (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == ':') return 1;
    if (strstr(s, ": ") || strstr(s, " #")) return 1;
    for (const char *c = s; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (u < 0x20 || u == 0x7f) return 1;
        if (flow && strchr(",[]{}", *c)) return 1;
    }
    return 0;
}

static void emit_quoted(strbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const char *c = s; *c; c++) {
        unsigned char u = (unsigned char)*c;
        char esc[8];
        switch (u) {
        case '"': sb_str(b, "\\\""); break;
        case '\\': sb_str(b, "\\\\"); break;
        case '\n': sb_str(b, "\\n"); break;
        case '\t': sb_str(b, "\\t"); break;
        case '\r': sb_str(b, "\\r"); break;
        default:
            if (u < 0x20 || u == 0x7f) {
                snprintf(esc, sizeof esc, "\\x%02x", u);
                sb_str(b, esc);
            } else {
                sb_put(b, c, 1);
            }
        }
    }
    sb_put(b, "\"", 1);
}

static void emit_scalar(strbuf *b, const rx_cfg_node *n, int flow) {
    if (rx_cfg_is_null(n)) { sb_str(b, "null"); return; }
    if (!n->quoted && rx_cfg_plain_is_typed(n->text)) { sb_str(b, n->text); return; }   // 1, -1, 1e-4, true
    // a plain scalar that needs quoting was never a number or null, so quoting keeps its meaning
    if (needs_quotes(n->text, n->quoted, flow)) emit_quoted(b, n->text);
    else sb_str(b, n->text);
}

// ---------------------------------------------------------------------------
// structure

static void emit_flow(strbuf *b, const rx_cfg_node *n) {
    if (n->type == RX_CFG_SCALAR) { emit_scalar(b, n, 1); return; }
    sb_str(b, n->type == RX_CFG_SEQ ? "[" : "{");
    for (int i = 0; i < n->n; i++) {
        if (i) sb_str(b, ", ");
        if (n->type == RX_CFG_MAP) {
            emit_scalar(b, n->keys[i], 1);
            sb_str(b, ": ");
        }
        emit_flow(b, n->items[i]);
    }
    sb_str(b, n->type == RX_CFG_SEQ ? "]" : "}");
}

// Lists of scalars (and of such lists) read best on one line.
static int flowable(const rx_cfg_node *n) {
    if (n->type == RX_CFG_SCALAR) return 1;
    if (n->type == RX_CFG_MAP) return n->n == 0;
    for (int i = 0; i < n->n; i++)
        if (!flowable(n->items[i])) return 0;
    return 1;
}

static void emit_block(strbuf *b, const rx_cfg_node *n, int indent, int first_inline);

// After "key:" or "-": the value on the same line or as a nested block.
static void emit_value_after(strbuf *b, const rx_cfg_node *v, int indent) {
    if (flowable(v)) {
        sb_str(b, " ");
        emit_flow(b, v);
        sb_str(b, "\n");
    } else {
        sb_str(b, "\n");
        emit_block(b, v, indent, 0);
    }
}

// Block mapping / sequence at `indent`; first_inline: the first line continues "- ".
static void emit_block(strbuf *b, const rx_cfg_node *n, int indent, int first_inline) {
    for (int i = 0; i < n->n; i++) {
        if (!(i == 0 && first_inline)) sb_indent(b, indent);
        if (n->type == RX_CFG_MAP) {
            emit_scalar(b, n->keys[i], 0);
            sb_str(b, ":");
            emit_value_after(b, n->items[i], indent + 2);
        } else {
            const rx_cfg_node *it = n->items[i];
            sb_str(b, "-");
            if (it->type == RX_CFG_MAP && it->n > 0) {
                sb_str(b, " ");
                emit_block(b, it, indent + 2, 1);
            } else {
                emit_value_after(b, it, indent + 2);
            }
        }
    }
}

char *rx_config_emit_string(const rx_cfg_node *root) {
    strbuf b = {0};
    sb_str(&b, "");
    if (!root) {
        sb_str(&b, "null\n");
    } else if (flowable(root)) {
        emit_flow(&b, root);
        sb_str(&b, "\n");
    } else {
        emit_block(&b, root, 0, 0);
    }
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}

char *rx_config_emit_flow(const rx_cfg_node *n) {
    strbuf b = {0};
    sb_str(&b, "");
    if (n) emit_flow(&b, n);
    else sb_str(&b, "null");
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}

rx_status rx_config_emit(const rx_cfg_node *root, FILE *f) {
    char *s = rx_config_emit_string(root);
    if (!s) return rx_fail(RX_ERR_OOM, "config: out of memory emitting YAML");
    size_t len = strlen(s);
    int ok = fwrite(s, 1, len, f) == len;
    free(s);
    return ok ? RX_OK : rx_fail(RX_ERR_IO, "config: writing YAML failed: %s", strerror(errno));
}

rx_status rx_config_save(const rx_cfg_node *root, const char *path) {
    char *s = rx_config_emit_string(root);
    if (!s) return rx_fail(RX_ERR_OOM, "config: out of memory emitting YAML");
    rx_status st = rx_fs_write_atomic(path, s, strlen(s));
    free(s);
    return st;
}

// ---------------------------------------------------------------------------
// hashing

static void hash_text(const char *s, char out[17]) {
    XXH64_hash_t h = XXH64(s, strlen(s), 0);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

rx_status rx_config_hash(const rx_cfg_node *root, char out[17]) {
    char *s = rx_config_emit_string(root);
    if (!s) return rx_fail(RX_ERR_OOM, "config: out of memory hashing");
    hash_text(s, out);
    free(s);
    return RX_OK;
}

rx_status rx_config_hash_sections(const rx_cfg_node *root, const char *const *sections, int n, char out[17]) {
    // a temporary mapping that borrows the sections (and owns only the null stand-ins)
    rx_cfg_node view = {.type = RX_CFG_MAP, .file = (char *)RX_CONFIG_DEFAULT_FILE};
    rx_cfg_node **keys = calloc(n > 0 ? (size_t)n : 1, sizeof *keys), **items = calloc(n > 0 ? (size_t)n : 1, sizeof *items);
    rx_cfg_node **owned = calloc(n > 0 ? (size_t)n : 1, sizeof *owned);
    rx_status st = RX_OK;
    if (!keys || !items || !owned) st = rx_fail(RX_ERR_OOM, "config: out of memory hashing");
    for (int i = 0; st == RX_OK && i < n; i++) {
        keys[i] = rx_cfg_new_scalar(sections[i], 0, NULL, 0, 0);
        rx_cfg_node *v = rx_cfg_path(root, sections[i]);
        if (!v) v = owned[i] = rx_cfg_new_scalar("null", 0, NULL, 0, 0);
        items[i] = v;
        if (!keys[i] || !v) st = rx_fail(RX_ERR_OOM, "config: out of memory hashing");
        view.n = i + 1;
    }
    if (st == RX_OK) {
        view.keys = keys;
        view.items = items;
        view.cap = n;
        st = rx_config_hash(&view, out);
    }
    for (int i = 0; i < n && keys && owned; i++) {
        rx_cfg_free(keys[i]);
        rx_cfg_free(owned[i]);
    }
    free(keys);
    free(items);
    free(owned);
    return st;
}
