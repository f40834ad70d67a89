/* config.c — the YAML config tree: error list, nodes, libyaml parsing with
 * positions, `base:` inheritance and `--set` overrides. Emitting and hashing are in
 * config_emit.c. See config.h for the contract. */
#include "io/config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

// ---------------------------------------------------------------------------
// error list

void rx_config_verror_loc(rx_config_errors *errs, const char *file, int line, int col, const char *fmt, va_list ap) {
    if (!errs) return;
    if (errs->n == errs->cap) {
        int cap = errs->cap ? 2 * errs->cap : 8;
        rx_config_error *grown = realloc(errs->items, (size_t)cap * sizeof *grown);
        if (!grown) { errs->n++; return; }   // counted, message lost; n > stored is handled below
        errs->items = grown;
        errs->cap = cap;
    }
    if (errs->n > errs->cap) { errs->n++; return; }
    char text[1536], prefix[512];
    vsnprintf(text, sizeof text, fmt, ap);
    if (file && line > 0) snprintf(prefix, sizeof prefix, "%s:%d:%d: ", file, line, col);
    else if (file) snprintf(prefix, sizeof prefix, "%s: ", file);
    else prefix[0] = 0;
    rx_config_error *e = &errs->items[errs->n++];
    e->file = strdup(file ? file : "");
    e->line = line;
    e->col = col;
    size_t len = strlen(prefix) + strlen(text) + 1;
    e->message = malloc(len);
    if (e->message) snprintf(e->message, len, "%s%s", prefix, text);
}

void rx_config_error_loc(rx_config_errors *errs, const char *file, int line, int col, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    rx_config_verror_loc(errs, file, line, col, fmt, ap);
    va_end(ap);
}

void rx_config_error_at(rx_config_errors *errs, const rx_cfg_node *at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    rx_config_verror_loc(errs, at ? at->file : NULL, at ? at->line : 0, at ? at->col : 0, fmt, ap);
    va_end(ap);
}

static int stored_errors(const rx_config_errors *errs) { return errs->n < errs->cap ? errs->n : errs->cap; }

static int error_order(const rx_config_error *a, const rx_config_error *b) {
    int c = strcmp(a->file ? a->file : "", b->file ? b->file : "");
    if (c) return c;
    if (a->line != b->line) return a->line < b->line ? -1 : 1;
    if (a->col != b->col) return a->col < b->col ? -1 : 1;
    return 0;
}

void rx_config_errors_sort(rx_config_errors *errs) {
    // insertion sort: stable, and error lists are short
    int n = stored_errors(errs);
    for (int i = 1; i < n; i++) {
        rx_config_error e = errs->items[i];
        int j = i;
        while (j > 0 && error_order(&errs->items[j - 1], &e) > 0) { errs->items[j] = errs->items[j - 1]; j--; }
        errs->items[j] = e;
    }
}

int rx_config_errors_print(const rx_config_errors *errs, FILE *f) {
    int n = stored_errors(errs);
    for (int i = 0; i < n; i++)
        if (fprintf(f, "%s\n", errs->items[i].message ? errs->items[i].message : "(out of memory)") < 0) return -1;
    if (errs->n > n && fprintf(f, "(%d more errors not shown: out of memory)\n", errs->n - n) < 0) return -1;
    return 0;
}

void rx_config_errors_clear(rx_config_errors *errs) {
    int n = stored_errors(errs);
    for (int i = 0; i < n; i++) {
        free(errs->items[i].file);
        free(errs->items[i].message);
    }
    free(errs->items);
    memset(errs, 0, sizeof *errs);
}

rx_status rx_config_errors_status(const rx_config_errors *errs) {
    if (!errs || errs->n == 0) return RX_OK;
    const char *first = stored_errors(errs) > 0 && errs->items[0].message ? errs->items[0].message : "config error";
    if (errs->n == 1) return rx_fail(RX_ERR_CONFIG, "%s", first);
    return rx_fail(RX_ERR_CONFIG, "%s (and %d more errors)", first, errs->n - 1);
}

// ---------------------------------------------------------------------------
// nodes

static rx_cfg_node *node_new(rx_cfg_node_type type, const char *file, int line, int col) {
    rx_cfg_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->type = type;
    n->file = strdup(file ? file : RX_CONFIG_DEFAULT_FILE);
    if (!n->file) { free(n); return NULL; }
    n->line = line;
    n->col = col;
    return n;
}

rx_cfg_node *rx_cfg_new_scalar(const char *text, int quoted, const char *file, int line, int col) {
    rx_cfg_node *n = node_new(RX_CFG_SCALAR, file, line, col);
    if (!n) return NULL;
    n->text = strdup(text ? text : "");
    if (!n->text) { rx_cfg_free(n); return NULL; }
    n->quoted = quoted;
    return n;
}

rx_cfg_node *rx_cfg_new_map(const char *file, int line, int col) { return node_new(RX_CFG_MAP, file, line, col); }
rx_cfg_node *rx_cfg_new_seq(const char *file, int line, int col) { return node_new(RX_CFG_SEQ, file, line, col); }

void rx_cfg_free(rx_cfg_node *n) {
    if (!n) return;
    for (int i = 0; i < n->n; i++) {
        if (n->keys) rx_cfg_free(n->keys[i]);
        rx_cfg_free(n->items[i]);
    }
    free(n->keys);
    free(n->items);
    free(n->text);
    free(n->file);
    free(n);
}

static int node_grow(rx_cfg_node *n) {
    if (n->n < n->cap) return 1;
    int cap = n->cap ? 2 * n->cap : 4;
    rx_cfg_node **items = realloc(n->items, (size_t)cap * sizeof *items);
    if (!items) return 0;
    n->items = items;
    if (n->type == RX_CFG_MAP) {
        rx_cfg_node **keys = realloc(n->keys, (size_t)cap * sizeof *keys);
        if (!keys) return 0;
        n->keys = keys;
    }
    n->cap = cap;
    return 1;
}

rx_status rx_cfg_seq_push(rx_cfg_node *seq, rx_cfg_node *item) {
    RX_CHECK(seq && seq->type == RX_CFG_SEQ);
    if (!item || !node_grow(seq)) { rx_cfg_free(item); return rx_fail(RX_ERR_OOM, "config: out of memory"); }
    seq->items[seq->n++] = item;
    return RX_OK;
}

rx_status rx_cfg_map_put(rx_cfg_node *map, rx_cfg_node *key, rx_cfg_node *value) {
    RX_CHECK(map && map->type == RX_CFG_MAP);
    if (!key || !value || !node_grow(map)) {
        rx_cfg_free(key);
        rx_cfg_free(value);
        return rx_fail(RX_ERR_OOM, "config: out of memory");
    }
    map->keys[map->n] = key;
    map->items[map->n] = value;
    map->n++;
    return RX_OK;
}

int rx_cfg_map_find(const rx_cfg_node *map, const char *key) {
    if (!map || map->type != RX_CFG_MAP) return -1;
    for (int i = 0; i < map->n; i++)
        if (strcmp(map->keys[i]->text, key) == 0) return i;
    return -1;
}

rx_cfg_node *rx_cfg_map_get(const rx_cfg_node *map, const char *key) {
    int i = rx_cfg_map_find(map, key);
    return i < 0 ? NULL : map->items[i];
}

rx_status rx_cfg_map_set(rx_cfg_node *map, const char *key, rx_cfg_node *value) {
    if (!value) return rx_fail(RX_ERR_OOM, "config: out of memory");
    int i = rx_cfg_map_find(map, key);
    if (i >= 0) {
        rx_cfg_free(map->items[i]);
        map->items[i] = value;
        return RX_OK;
    }
    rx_cfg_node *k = rx_cfg_new_scalar(key, 0, value->file, value->line, value->col);
    return rx_cfg_map_put(map, k, value);
}

void rx_cfg_map_remove(rx_cfg_node *map, int i) {
    RX_CHECK(map && map->type == RX_CFG_MAP && i >= 0 && i < map->n);
    rx_cfg_free(map->keys[i]);
    rx_cfg_free(map->items[i]);
    memmove(map->keys + i, map->keys + i + 1, (size_t)(map->n - i - 1) * sizeof *map->keys);
    memmove(map->items + i, map->items + i + 1, (size_t)(map->n - i - 1) * sizeof *map->items);
    map->n--;
}

rx_cfg_node *rx_cfg_clone(const rx_cfg_node *n) {
    if (!n) return NULL;
    rx_cfg_node *c = node_new(n->type, n->file, n->line, n->col);
    if (!c) return NULL;
    c->quoted = n->quoted;
    if (n->text && !(c->text = strdup(n->text))) { rx_cfg_free(c); return NULL; }
    for (int i = 0; i < n->n; i++) {
        rx_cfg_node *item = rx_cfg_clone(n->items[i]);
        rx_status st = n->type == RX_CFG_MAP ? rx_cfg_map_put(c, rx_cfg_clone(n->keys[i]), item)
                                              : rx_cfg_seq_push(c, item);
        if (st != RX_OK) { rx_cfg_free(c); return NULL; }
    }
    return c;
}

int rx_cfg_is_null(const rx_cfg_node *n) {
    if (!n || n->type != RX_CFG_SCALAR || n->quoted) return 0;
    const char *s = n->text;
    return !*s || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL") || !strcmp(s, "~");
}

int rx_cfg_plain_is_typed(const char *s) {
    static const char *const words[] = {
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE",
        "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "y", "Y", "n", "N",
        ".inf", ".Inf", ".INF", "-.inf", "-.Inf", "-.INF", "+.inf", ".nan", ".NaN", ".NAN",
    };
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strcmp(s, words[i]) == 0) return 1;
    char *end;
    strtod(s, &end);
    if (end != s && *end == 0) return 1;
    // YAML 1.1 sexagesimal / underscored numbers: 1_000, 1:30
    int digits = 0, other = 0;
    for (const char *c = s; *c; c++) {
        if (*c >= '0' && *c <= '9') digits++;
        else if (!strchr("+-._:eE", *c)) other++;
    }
    return digits > 0 && other == 0;
}

int rx_cfg_equal(const rx_cfg_node *a, const rx_cfg_node *b) {
    if (!a || !b) return a == b;
    if (a->type != b->type || a->n != b->n) return 0;
    if (a->type == RX_CFG_SCALAR) {
        if (rx_cfg_is_null(a) || rx_cfg_is_null(b)) return rx_cfg_is_null(a) && rx_cfg_is_null(b);
        // quoting only matters where the plain text would be a number, bool or null
        return strcmp(a->text, b->text) == 0 && (a->quoted == b->quoted || !rx_cfg_plain_is_typed(a->text));
    }
    for (int i = 0; i < a->n; i++) {
        if (a->type == RX_CFG_MAP && strcmp(a->keys[i]->text, b->keys[i]->text) != 0) return 0;
        if (!rx_cfg_equal(a->items[i], b->items[i])) return 0;
    }
    return 1;
}

// ---------------------------------------------------------------------------
// paths: "a.b.c", "transforms[1].p", "transforms.1.p"

typedef struct {
    char key[256];   // mapping key, or "" for an index step
    int  index;      // >= 0 for "[i]" steps
} path_step;

static int all_digits(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

// Splits a path into steps; returns the count, or -1 when malformed. cols[k] = 0-based offset.
static int path_split(const char *path, path_step *steps, int *cols, int max) {
    int n = 0;
    const char *p = path;
    while (*p) {
        if (n == max) return -1;
        const char *start = p;
        size_t len = strcspn(p, ".[");
        if (len == 0 && *p != '[') return -1;
        if (len >= sizeof steps[n].key) return -1;
        if (len > 0) {
            memcpy(steps[n].key, p, len);
            steps[n].key[len] = 0;
            steps[n].index = -1;
            cols[n] = (int)(start - path);
            n++;
            p += len;
        }
        while (*p == '[') {
            char *end;
            if (n == max || !(p[1] >= '0' && p[1] <= '9')) return -1;
            long v = strtol(p + 1, &end, 10);
            if (*end != ']' || v > INT_MAX) return -1;
            steps[n].key[0] = 0;
            steps[n].index = (int)v;
            cols[n] = (int)(p - path);
            n++;
            p = end + 1;
        }
        if (*p == '.') {
            p++;
            if (!*p) return -1;
        } else if (*p) {
            return -1;
        }
    }
    return n;
}

rx_cfg_node *rx_cfg_path(const rx_cfg_node *root, const char *path) {
    path_step steps[32];
    int cols[32];
    int n = path_split(path, steps, cols, 32);
    if (n <= 0) return n == 0 ? (rx_cfg_node *)root : NULL;
    const rx_cfg_node *cur = root;
    for (int k = 0; k < n && cur; k++) {
        if (steps[k].index >= 0 || (cur->type == RX_CFG_SEQ && all_digits(steps[k].key))) {
            int idx = steps[k].index >= 0 ? steps[k].index : atoi(steps[k].key);
            cur = (cur->type == RX_CFG_SEQ && idx < cur->n) ? cur->items[idx] : NULL;
        } else {
            cur = rx_cfg_map_get(cur, steps[k].key);
        }
    }
    return (rx_cfg_node *)cur;
}

// ---------------------------------------------------------------------------
// parsing (libyaml event API)
//
// The tree is built from libyaml's events rather than its document API: the document API
// keeps an alias only as a shared node index, so neither where the alias was written nor
// what expanding it costs is known until the copy is made. Here an alias is an event with
// its own position, and its anchor's size is known before anything is copied.

#define MAX_DEPTH 64

// Nodes one file may create, keys and alias copies included. An alias copies its anchor's
// whole subtree, so ~400 bytes of nested aliases (a "billion laughs") expand to 10^8 nodes:
// tens of seconds and ~19 GB before this limit existed (issue 19). Measured: the largest
// file in experiments/ and tests/configs/ has 188 nodes, the largest resolved config
// (`runexp check`, every default filled) 247; 100,000 leaves room for long lists (sweeps,
// file lists) while a file at the limit parses in ~0.06 s with ~16 MB peak RSS. The check
// is made before an alias is copied, so a bomb stops having built at most this many nodes.
#define MAX_NODES 100000

static const char *type_noun(const rx_cfg_node *n) {
    if (!n) return "nothing";
    if (n->type == RX_CFG_MAP) return "a mapping";
    if (n->type == RX_CFG_SEQ) return "a list";
    return rx_cfg_is_null(n) ? "null" : "a scalar";
}

typedef struct {
    char        *name;
    rx_cfg_node *node;     // NULL while the anchored node is still open: an alias to it is recursive
    long         size;     // nodes in its subtree, keys included
    int          height;   // levels below it (0 for a scalar)
    int          line, col;
} yaml_anchor;

typedef struct {
    rx_cfg_node *node;
    rx_cfg_node *key;        // a mapping's key waiting for its value
    int          drop_value; // the key was refused: its value is read, then dropped
    int          anchor;     // index in the anchor table, or -1
    long         size;
    int          height;
} open_node;

typedef struct {
    const char       *file;
    rx_config_errors *errs;
    open_node         open[MAX_DEPTH + 1];   // root at open[0]
    int               depth;                 // open nodes
    yaml_anchor      *anchors;
    int               n_anchors, cap_anchors;
    long              nodes;                 // created so far
    rx_cfg_node      *root;
    rx_cfg_node      *dropped;  // refused keys and their values: anchors may still point into them
} yaml_loader;

static void loader_free(yaml_loader *ld, int keep_root) {
    for (int i = 0; i < ld->depth; i++) {
        rx_cfg_free(ld->open[i].key);
        rx_cfg_free(ld->open[i].node);
    }
    for (int i = 0; i < ld->n_anchors; i++) free(ld->anchors[i].name);
    free(ld->anchors);
    rx_cfg_free(ld->dropped);
    if (!keep_root) rx_cfg_free(ld->root);
}

// Return values of the loader steps: go on, stop with an error in errs, stop out of memory.
enum { LOAD_OK = 1, LOAD_ERROR = 0, LOAD_OOM = -1 };

static int loader_drop(yaml_loader *ld, rx_cfg_node *n) {
    if (!ld->dropped && !(ld->dropped = rx_cfg_new_seq(ld->file, 0, 0))) { rx_cfg_free(n); return LOAD_OOM; }
    return rx_cfg_seq_push(ld->dropped, n) == RX_OK ? LOAD_OK : LOAD_OOM;
}

// Gives a finished node (size nodes, height levels) to the open node above it.
static int loader_attach(yaml_loader *ld, rx_cfg_node *n, long size, int height) {
    if (!n) return LOAD_OOM;
    if (ld->depth == 0) { ld->root = n; return LOAD_OK; }
    open_node *p = &ld->open[ld->depth - 1];
    p->size += size;
    if (height + 1 > p->height) p->height = height + 1;
    if (p->node->type == RX_CFG_SEQ) return rx_cfg_seq_push(p->node, n) == RX_OK ? LOAD_OK : LOAD_OOM;
    if (p->drop_value) {
        p->drop_value = 0;
        return loader_drop(ld, n);
    }
    if (!p->key) {
        int first = n->type == RX_CFG_SCALAR ? rx_cfg_map_find(p->node, n->text) : -1;
        if (n->type != RX_CFG_SCALAR)
            rx_config_error_at(ld->errs, n, "yaml: a key must be a scalar, got %s", type_noun(n));
        else if (first >= 0)
            rx_config_error_at(ld->errs, n, "yaml: duplicate key '%s' (first at line %d)", n->text,
                               p->node->keys[first]->line);
        else {
            p->key = n;
            return LOAD_OK;
        }
        p->drop_value = 1;
        return loader_drop(ld, n);
    }
    rx_cfg_node *k = p->key;
    p->key = NULL;
    return rx_cfg_map_put(p->node, k, n) == RX_OK ? LOAD_OK : LOAD_OOM;
}

// Counts `more` new nodes at depth `depth` reaching `height` levels further down, against the limits.
static int loader_room(yaml_loader *ld, const yaml_mark_t *m, long more, int depth, int height, const char *alias) {
    int line = (int)m->line + 1, col = (int)m->column + 1;
    if (depth + height > MAX_DEPTH) {
        if (alias)
            rx_config_error_loc(ld->errs, ld->file, line, col, "yaml: alias *%s nests deeper than %d levels", alias,
                                MAX_DEPTH);
        else
            rx_config_error_loc(ld->errs, ld->file, line, col, "yaml: nested deeper than %d levels", MAX_DEPTH);
        return LOAD_ERROR;
    }
    if (more > MAX_NODES - ld->nodes) {
        if (alias)
            rx_config_error_loc(ld->errs, ld->file, line, col,
                                "yaml: alias *%s expands to %ld nodes, which takes the file past the limit of "
                                "%d nodes (nested aliases?)", alias, more, MAX_NODES);
        else
            rx_config_error_loc(ld->errs, ld->file, line, col, "yaml: the file has more than the limit of %d nodes",
                                MAX_NODES);
        return LOAD_ERROR;
    }
    ld->nodes += more;
    return LOAD_OK;
}

static int loader_anchor(yaml_loader *ld, const yaml_char_t *name, const yaml_mark_t *m) {
    if (!name) return -1;
    if (ld->n_anchors == ld->cap_anchors) {
        int cap = ld->cap_anchors ? 2 * ld->cap_anchors : 8;
        yaml_anchor *grown = realloc(ld->anchors, (size_t)cap * sizeof *grown);
        if (!grown) return -2;
        ld->anchors = grown;
        ld->cap_anchors = cap;
    }
    yaml_anchor *a = &ld->anchors[ld->n_anchors];
    if (!(a->name = strdup((const char *)name))) return -2;
    a->node = NULL;
    a->size = 1;
    a->height = 0;
    a->line = (int)m->line + 1;
    a->col = (int)m->column + 1;
    return ld->n_anchors++;
}

static int loader_event(yaml_loader *ld, const yaml_event_t *ev) {
    const yaml_mark_t *m = &ev->start_mark;
    int line = (int)m->line + 1, col = (int)m->column + 1;
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        int st = loader_room(ld, m, 1, ld->depth, 0, NULL);
        if (st != LOAD_OK) return st;
        // libyaml keeps the text with its length; config text never holds NUL bytes
        char *text = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        if (!text) return LOAD_OOM;
        rx_cfg_node *n = rx_cfg_new_scalar(text, ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE, ld->file, line, col);
        free(text);
        if (!n) return LOAD_OOM;
        int a = loader_anchor(ld, ev->data.scalar.anchor, m);
        if (a == -2) { rx_cfg_free(n); return LOAD_OOM; }
        if (a >= 0) ld->anchors[a].node = n;
        return loader_attach(ld, n, 1, 0);
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int st = loader_room(ld, m, 1, ld->depth, 0, NULL);
        if (st != LOAD_OK) return st;
        int is_map = ev->type == YAML_MAPPING_START_EVENT;
        rx_cfg_node *n = is_map ? rx_cfg_new_map(ld->file, line, col) : rx_cfg_new_seq(ld->file, line, col);
        if (!n) return LOAD_OOM;
        int a = loader_anchor(ld, is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor, m);
        if (a == -2) { rx_cfg_free(n); return LOAD_OOM; }
        ld->open[ld->depth++] = (open_node){.node = n, .anchor = a, .size = 1};
        return LOAD_OK;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: {
        open_node o = ld->open[--ld->depth];
        rx_cfg_free(o.key);   // libyaml always pairs a key with a value (an empty scalar at worst)
        if (o.anchor >= 0) {
            ld->anchors[o.anchor].node = o.node;
            ld->anchors[o.anchor].size = o.size;
            ld->anchors[o.anchor].height = o.height;
        }
        return loader_attach(ld, o.node, o.size, o.height);
    }
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        const yaml_anchor *a = NULL;
        for (int i = ld->n_anchors - 1; i >= 0 && !a; i--)   // the latest definition of a name counts
            if (strcmp(ld->anchors[i].name, name) == 0) a = &ld->anchors[i];
        if (!a) {
            rx_config_error_loc(ld->errs, ld->file, line, col, "yaml: undefined alias *%s", name);
            return LOAD_ERROR;
        }
        if (!a->node) {
            rx_config_error_loc(ld->errs, ld->file, line, col,
                                "yaml: alias *%s is inside the node it names (line %d): a recursive alias", name,
                                a->line);
            return LOAD_ERROR;
        }
        int st = loader_room(ld, m, a->size, ld->depth, a->height, name);
        if (st != LOAD_OK) return st;
        // the copy keeps the anchored node's positions: errors about it point at what was written there
        return loader_attach(ld, rx_cfg_clone(a->node), a->size, a->height);
    }
    default:   // stream and document events are handled by the caller
        return LOAD_OK;
    }
}

// Line and column (1-based, columns in characters as libyaml counts them) of byte `offset`
// of UTF-8 text. Line breaks: \n, \r\n and \r (NEL, LS and PS are not counted).
static void text_position(const char *text, size_t len, size_t offset, int *line, int *col) {
    *line = 1;
    *col = 1;
    if (offset > len) offset = len;
    for (size_t i = 0; i < offset; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n' || (c == '\r' && !(i + 1 < len && text[i + 1] == '\n'))) { (*line)++; *col = 1; }
        else if (c != '\r' && (c & 0xC0) != 0x80) (*col)++;   // continuation bytes are not characters
    }
}

static void yaml_error(rx_config_errors *errs, const yaml_parser_t *p, const char *name, const char *text, size_t len) {
    const yaml_mark_t *m = &p->problem_mark;
    if (p->error == YAML_READER_ERROR) {
        // The reader decodes the whole input before the scanner starts, so it never sets
        // problem_mark (which would say 1:1); problem_offset is the byte offset of the bad
        // input. Configs are UTF-8; for UTF-16 input the position is approximate.
        int line, col;
        text_position(text, len, p->problem_offset, &line, &col);
        // problem_value is the offending byte for the "... octet" problems, else a code point
        if (p->problem_value >= 0 && p->problem && strstr(p->problem, "octet"))
            rx_config_error_loc(errs, name, line, col, "yaml: %s 0x%02x", p->problem, (unsigned)p->problem_value);
        else if (p->problem_value >= 0 && p->problem)
            rx_config_error_loc(errs, name, line, col, "yaml: %s (U+%04X)", p->problem, (unsigned)p->problem_value);
        else
            rx_config_error_loc(errs, name, line, col, "yaml: %s", p->problem ? p->problem : "bad input");
        return;
    }
    if (p->context)
        rx_config_error_loc(errs, name, (int)m->line + 1, (int)m->column + 1, "yaml: %s %s (line %d)",
                            p->problem ? p->problem : "syntax error", p->context, (int)p->context_mark.line + 1);
    else
        rx_config_error_loc(errs, name, (int)m->line + 1, (int)m->column + 1, "yaml: %s",
                            p->problem ? p->problem : "syntax error");
}

rx_status rx_yaml_parse_string(const char *text, size_t len, const char *name, rx_cfg_node **out, rx_config_errors *errs) {
    *out = NULL;
    int before = errs ? errs->n : 0;
    rx_config_errors local = {0};
    if (!errs) errs = &local;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return rx_fail(RX_ERR_OOM, "yaml: out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_loader ld = {.file = name, .errs = errs};
    rx_status st = RX_OK;
    int documents = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            yaml_error(errs, &parser, name, text, len);
            break;
        }
        yaml_event_type_t type = ev.type;
        int rc = LOAD_OK;
        if (type == YAML_DOCUMENT_START_EVENT) {
            documents++;
        } else if (documents == 1) {
            rc = loader_event(&ld, &ev);
        } else if (type != YAML_DOCUMENT_END_EVENT && type != YAML_STREAM_END_EVENT && type != YAML_STREAM_START_EVENT) {
            // one document per file: a second one is almost certainly a mistake
            rx_config_error_loc(errs, name, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                                "yaml: more than one document in the file");
            rc = LOAD_ERROR;
        }
        yaml_event_delete(&ev);
        if (rc == LOAD_OOM) st = rx_fail(RX_ERR_OOM, "yaml: out of memory reading %s", name);
        if (rc != LOAD_OK || type == YAML_STREAM_END_EVENT) break;
    }
    int complete = st == RX_OK && ld.depth == 0;
    loader_free(&ld, complete);
    if (complete) *out = ld.root;
    yaml_parser_delete(&parser);
    if (st == RX_OK && errs->n > before) {
        st = rx_config_errors_status(errs);
        rx_cfg_free(*out);
        *out = NULL;
    }
    if (errs == &local) rx_config_errors_clear(&local);
    return st;
}

static char *read_whole_file(const char *path, size_t *len, int *err) {
    FILE *f = fopen(path, "rb");
    if (!f) { *err = errno; return NULL; }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *grown = realloc(buf, cap * 2);
        if (!grown) { free(buf); buf = NULL; break; }
        buf = grown;
        cap *= 2;
    }
    if (!buf) { fclose(f); *err = ENOMEM; return NULL; }
    if (ferror(f)) { *err = errno ? errno : EIO; free(buf); fclose(f); return NULL; }
    fclose(f);
    *len = n;
    return buf;
}

rx_status rx_yaml_parse_file(const char *path, rx_cfg_node **out, rx_config_errors *errs) {
    *out = NULL;
    size_t len = 0;
    int err = 0;
    char *text = read_whole_file(path, &len, &err);
    if (!text) {
        rx_config_error_loc(errs, path, 0, 0, "cannot read: %s", strerror(err));
        return rx_config_errors_status(errs);
    }
    rx_status st = rx_yaml_parse_string(text, len, path, out, errs);
    free(text);
    return st;
}

// ---------------------------------------------------------------------------
// merging and base inheritance

static const char *component_name(const rx_cfg_node *map) {
    const rx_cfg_node *n = rx_cfg_map_get(map, "name");
    return n && n->type == RX_CFG_SCALAR ? n->text : NULL;
}

// A mapping naming a different component replaces rather than merges.
static int replaces(const rx_cfg_node *base, const rx_cfg_node *over) {
    const char *a = component_name(base), *b = component_name(over);
    return a && b && strcmp(a, b) != 0;
}

static rx_status merge_maps(rx_cfg_node *base, rx_cfg_node *over) {
    rx_status st = RX_OK;
    for (int i = 0; i < over->n; i++) {
        rx_cfg_node *k = over->keys[i], *v = over->items[i];
        over->keys[i] = over->items[i] = NULL;
        int j = rx_cfg_map_find(base, k->text);
        if (j < 0) {
            if (st == RX_OK) st = rx_cfg_map_put(base, k, v);
            else { rx_cfg_free(k); rx_cfg_free(v); }
            continue;
        }
        if (base->items[j]->type == RX_CFG_MAP && v->type == RX_CFG_MAP && !replaces(base->items[j], v)) {
            if (st == RX_OK) st = merge_maps(base->items[j], v);
            rx_cfg_free(v);
            rx_cfg_free(k);
            continue;
        }
        // the overriding file owns the key now: errors about it point there
        rx_cfg_free(base->keys[j]);
        rx_cfg_free(base->items[j]);
        base->keys[j] = k;
        base->items[j] = v;
    }
    over->n = 0;
    return st;
}

rx_status rx_config_merge(rx_cfg_node **base, rx_cfg_node *over) {
    if (!over) return RX_OK;
    if (*base && (*base)->type == RX_CFG_MAP && over->type == RX_CFG_MAP && !replaces(*base, over)) {
        rx_status st = merge_maps(*base, over);
        rx_cfg_free(over);
        return st;
    }
    rx_cfg_free(*base);
    *base = over;
    return RX_OK;
}

typedef struct {
    char *real[MAX_DEPTH];   // canonical paths, for cycle detection
    char *shown[MAX_DEPTH];  // as written, for messages
    int   n;
} base_chain;

static char *join_relative(const char *including, const char *rel) {
    if (rel[0] == '/') return strdup(rel);
    const char *slash = strrchr(including, '/');
    size_t dlen = slash ? (size_t)(slash - including + 1) : 0;
    size_t len = dlen + strlen(rel) + 1;
    char *p = malloc(len);
    if (!p) return NULL;
    memcpy(p, including, dlen);
    memcpy(p + dlen, rel, strlen(rel) + 1);
    return p;
}

static rx_status load_chain(const char *path, const rx_cfg_node *from, base_chain *chain, rx_cfg_node **out,
                            rx_config_errors *errs) {
    *out = NULL;
    char *real = realpath(path, NULL);
    if (!real) {
        int e = errno;
        if (from) rx_config_error_at(errs, from, "top level: base file '%s' not found (%s: %s)", from->text, path, strerror(e));
        else rx_config_error_loc(errs, path, 0, 0, "cannot read: %s", strerror(e));
        return rx_config_errors_status(errs);
    }
    for (int i = 0; i < chain->n; i++) {
        if (strcmp(chain->real[i], real) != 0) continue;
        char msg[1024] = "";
        size_t used = 0;
        for (int k = i; k < chain->n && used < sizeof msg; k++)
            used += (size_t)snprintf(msg + used, sizeof msg - used, "%s -> ", chain->shown[k]);
        if (used < sizeof msg) snprintf(msg + used, sizeof msg - used, "%s", path);
        rx_config_error_at(errs, from, "top level: base cycle: %s", msg);
        free(real);
        return rx_config_errors_status(errs);
    }
    if (chain->n == MAX_DEPTH) {
        rx_config_error_at(errs, from, "top level: base chain deeper than %d files", MAX_DEPTH);
        free(real);
        return rx_config_errors_status(errs);
    }
    chain->real[chain->n] = real;
    chain->shown[chain->n] = (char *)path;
    chain->n++;

    rx_cfg_node *tree = NULL;
    rx_status st = rx_yaml_parse_file(path, &tree, errs);
    if (st == RX_OK && !tree && !(tree = rx_cfg_new_map(path, 1, 1))) st = rx_fail(RX_ERR_OOM, "config: out of memory");
    if (st == RX_OK && tree->type != RX_CFG_MAP) {
        rx_config_error_at(errs, tree, "top level: expected a mapping of experiment keys, got %s", type_noun(tree));
        st = rx_config_errors_status(errs);
    }
    int bi = st == RX_OK ? rx_cfg_map_find(tree, "base") : -1;
    if (bi >= 0) {
        const rx_cfg_node *b = tree->items[bi];
        if (b->type != RX_CFG_SCALAR || rx_cfg_is_null(b) || !*b->text) {
            if (!rx_cfg_is_null(b)) {
                rx_config_error_at(errs, b, "top level: 'base' must be a file name, got %s", type_noun(b));
                st = rx_config_errors_status(errs);
            }
        } else {
            char *base_path = join_relative(path, b->text);
            rx_cfg_node *base = NULL;
            st = base_path ? load_chain(base_path, b, chain, &base, errs) : rx_fail(RX_ERR_OOM, "config: out of memory");
            free(base_path);
            if (st == RX_OK) {
                rx_cfg_map_remove(tree, bi);
                st = rx_config_merge(&base, tree);
                tree = base;
            } else {
                rx_cfg_free(base);
            }
        }
        if (st == RX_OK && (bi = rx_cfg_map_find(tree, "base")) >= 0) rx_cfg_map_remove(tree, bi);  // base: null
    }
    chain->n--;
    free(chain->real[chain->n]);
    if (st != RX_OK) { rx_cfg_free(tree); return st; }
    *out = tree;
    return RX_OK;
}

rx_status rx_config_load(const char *path, rx_cfg_node **out, rx_config_errors *errs) {
    base_chain chain = {.n = 0};
    return load_chain(path, NULL, &chain, out, errs);
}

// ---------------------------------------------------------------------------
// --set

static void relocate(rx_cfg_node *n, const char *file, int line, int col) {
    if (!n) return;
    // parsed from a one-line value: its column becomes an offset into the --set text
    int c = col + (n->col > 0 ? n->col - 1 : 0);
    char *f = strdup(file);
    if (f) { free(n->file); n->file = f; }
    n->line = line;
    n->col = c;
    for (int i = 0; i < n->n; i++) {
        if (n->type == RX_CFG_MAP) relocate(n->keys[i], file, line, col);
        relocate(n->items[i], file, line, col);
    }
}

static int from_command_line(const rx_cfg_node *n) { return strcmp(n->file, RX_CONFIG_SET_FILE) == 0; }

rx_status rx_config_set_path(rx_cfg_node *root, const char *path, const char *value_text, const char *file, int line,
                             int col, rx_config_errors *errs) {
    path_step steps[32];
    int cols[32];
    int n = path_split(path, steps, cols, 32);
    if (n <= 0) {
        rx_config_error_loc(errs, file, line, col, "--set: malformed key '%s' (expected a.b.c or list[0].key)", path);
        return rx_config_errors_status(errs);
    }
    if (!root || root->type != RX_CFG_MAP) {
        rx_config_error_loc(errs, file, line, col, "--set: the config is not a mapping");
        return rx_config_errors_status(errs);
    }
    rx_cfg_node *value = NULL;
    rx_config_errors local = {0};
    if (rx_yaml_parse_string(value_text, strlen(value_text), file, &value, &local) != RX_OK) {
        // re-point the YAML error at the value's place in the --set text
        for (int i = 0; i < local.n && i < local.cap; i++) {
            const char *msg = local.items[i].message ? strstr(local.items[i].message, "yaml: ") : NULL;
            rx_config_error_loc(errs, file, line, col + (int)strlen(path) + 1 + (local.items[i].col > 0 ? local.items[i].col - 1 : 0),
                                "--set %s: %s", path, msg ? msg : "invalid value");
        }
        rx_config_errors_clear(&local);
        return rx_config_errors_status(errs);
    }
    int vcol = col + (int)strlen(path) + 1;
    if (!value && !(value = rx_cfg_new_scalar("null", 0, file, line, vcol))) return rx_fail(RX_ERR_OOM, "config: out of memory");
    relocate(value, file, line, vcol);

    rx_cfg_node *cur = root;
    for (int k = 0; k < n; k++) {
        int last = k == n - 1;
        int kcol = col + cols[k];
        int is_index = steps[k].index >= 0 || (cur->type == RX_CFG_SEQ && all_digits(steps[k].key));
        if (is_index) {
            int idx = steps[k].index >= 0 ? steps[k].index : atoi(steps[k].key);
            if (cur->type != RX_CFG_SEQ || idx >= cur->n) {
                if (cur->type == RX_CFG_SEQ)
                    rx_config_error_loc(errs, file, line, kcol, "--set %s: no list item [%d] there (the list has %d)",
                                        path, idx, cur->n);
                else
                    rx_config_error_loc(errs, file, line, kcol, "--set %s: [%d] indexes %s, not a list", path, idx,
                                        type_noun(cur));
                rx_cfg_free(value);
                return rx_config_errors_status(errs);
            }
            if (last) {
                rx_cfg_free(cur->items[idx]);
                cur->items[idx] = value;
                return RX_OK;
            }
            cur = cur->items[idx];
            continue;
        }
        if (rx_cfg_is_null(cur) && cur != root) {   // `train: null` + --set train.steps=10 makes train a mapping
            cur->type = RX_CFG_MAP;
            free(cur->text);
            cur->text = NULL;
            cur->quoted = 0;
        }
        if (cur->type != RX_CFG_MAP) {
            rx_config_error_loc(errs, file, line, kcol, "--set %s: cannot set key '%s' inside %s", path,
                                steps[k].key, type_noun(cur));
            rx_cfg_free(value);
            return rx_config_errors_status(errs);
        }
        int i = rx_cfg_map_find(cur, steps[k].key);
        if (last) {
            if (i >= 0 && strcmp(steps[k].key, "name") == 0 && cur->items[i]->type == RX_CFG_SCALAR &&
                (value->type != RX_CFG_SCALAR || strcmp(cur->items[i]->text, value->text) != 0)) {
                // a different component: the old one's parameters do not apply to it
                for (int j = cur->n - 1; j >= 0; j--)
                    if (j != i && !from_command_line(cur->keys[j])) rx_cfg_map_remove(cur, j), i -= j < i;
            }
            rx_cfg_node *key = rx_cfg_new_scalar(steps[k].key, 0, file, line, kcol);
            if (!key) { rx_cfg_free(value); return rx_fail(RX_ERR_OOM, "config: out of memory"); }
            if (i >= 0) {
                rx_cfg_free(cur->keys[i]);
                rx_cfg_free(cur->items[i]);
                cur->keys[i] = key;
                cur->items[i] = value;
                return RX_OK;
            }
            return rx_cfg_map_put(cur, key, value);
        }
        if (i < 0) {
            // missing mappings are created, but a missing list cannot be indexed: fail before changing anything
            for (int r = k + 1; r < n; r++) {
                if (steps[r].index < 0) continue;
                rx_config_error_loc(errs, file, line, col + cols[r], "--set %s: '%s' does not exist, so it has no item [%d]",
                                    path, steps[k].key, steps[r].index);
                rx_cfg_free(value);
                return rx_config_errors_status(errs);
            }
            rx_cfg_node *key = rx_cfg_new_scalar(steps[k].key, 0, file, line, kcol);
            rx_cfg_node *map = rx_cfg_new_map(file, line, kcol);
            if (rx_cfg_map_put(cur, key, map) != RX_OK) { rx_cfg_free(value); return rx_fail(RX_ERR_OOM, "config: out of memory"); }
            i = cur->n - 1;
        }
        cur = cur->items[i];
    }
    rx_cfg_free(value);
    return RX_OK;
}

rx_status rx_config_apply_set(rx_cfg_node *root, const char *assignment, int index, rx_config_errors *errs) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment) {
        rx_config_error_loc(errs, RX_CONFIG_SET_FILE, index, 1, "--set: expected KEY=VALUE, got '%s'", assignment);
        return rx_config_errors_status(errs);
    }
    size_t klen = (size_t)(eq - assignment);
    char *key = strndup(assignment, klen);
    if (!key) return rx_fail(RX_ERR_OOM, "config: out of memory");
    rx_status st = rx_config_set_path(root, key, eq + 1, RX_CONFIG_SET_FILE, index, 1, errs);
    free(key);
    return st;
}
