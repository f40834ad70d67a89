/* config.h — the YAML config tree: parse (libyaml) with file:line:column on every
 * node, `base:` inheritance, `--set a.b.c=value` overrides, emit back to YAML, and a
 * stable hash of the emitted text (xxHash64).
 *
 * This layer knows YAML, not the experiment schema: checking keys against the
 * registry, filling defaults and typing values is src/registry/schema.c
 * (rx_config_resolve). Environment variables are never read.
 *
 * User-facing errors are collected in an rx_config_errors list, each formatted
 *     FILE:LINE:COL: SECTION: message
 * so that one pass can report all of them; a function that added errors returns
 * RX_ERR_CONFIG (rx_last_error() then holds the first message). `errs` must not be NULL
 * (rx_yaml_parse_string alone accepts NULL). Start a list as `rx_config_errors errs = {0};`
 * and release it with rx_config_errors_clear.
 *
 * Node functions are rx_cfg_* (rx_node is the autograd tape's node). */
#ifndef RX_CONFIG_H
#define RX_CONFIG_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include "core/status.h"

typedef enum { RX_CFG_SCALAR, RX_CFG_MAP, RX_CFG_SEQ } rx_cfg_node_type;

typedef struct rx_cfg_node rx_cfg_node;
struct rx_cfg_node {
    rx_cfg_node_type type;
    char   *file;        /* where it was written; "<command line>:--set" or "<default>" otherwise */
    int     line, col;   /* 1-based start of the node (0, 0 for defaults)                         */
    char   *text;        /* SCALAR: the value as written (after YAML unquoting)                   */
    int     quoted;      /* SCALAR: written quoted (or tagged !!str): always a string, never a number/null */
    int     n, cap;      /* MAP: entries, SEQ: items                                              */
    rx_cfg_node **keys;      /* MAP: key scalars, each with its own position (errors point at keys)   */
    rx_cfg_node **items;     /* MAP: values (items[i] belongs to keys[i]); SEQ: items                 */
};

/* The location used for nodes created by `--set`. The line is the 1-based index of
 * the --set option, the column is inside its "a.b.c=value" text. */
#define RX_CONFIG_SET_FILE "<command line>:--set"
#define RX_CONFIG_DEFAULT_FILE "<default>"

// ---------------------------------------------------------------------------
// error list

typedef struct {
    char *file;
    int   line, col;
    char *message;   /* full text: "FILE:LINE:COL: SECTION: ..." */
} rx_config_error;

typedef struct {
    int n, cap;
    rx_config_error *items;
} rx_config_errors;

/* Appends "FILE:LINE:COL: " + formatted text at the node's location (at may be NULL:
 * no location). Never fails visibly: an allocation failure drops the message but still
 * counts the error. */
void rx_config_error_at(rx_config_errors *errs, const rx_cfg_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rx_config_error_loc(rx_config_errors *errs, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void rx_config_verror_loc(rx_config_errors *errs, const char *file, int line, int col, const char *fmt, va_list ap);
/* Orders errors by file, line, column (stable), for printing. */
void rx_config_errors_sort(rx_config_errors *errs);
/* One message per line. Returns 0, or -1 if writing failed. */
int  rx_config_errors_print(const rx_config_errors *errs, FILE *f);
/* Frees the messages; the list can be reused. */
void rx_config_errors_clear(rx_config_errors *errs);
/* RX_OK when empty, else rx_fail(RX_ERR_CONFIG, first message (+ "and N more")). */
rx_status rx_config_errors_status(const rx_config_errors *errs);

// ---------------------------------------------------------------------------
// nodes

rx_cfg_node *rx_cfg_new_scalar(const char *text, int quoted, const char *file, int line, int col);
rx_cfg_node *rx_cfg_new_map(const char *file, int line, int col);
rx_cfg_node *rx_cfg_new_seq(const char *file, int line, int col);
rx_cfg_node *rx_cfg_clone(const rx_cfg_node *n);
void     rx_cfg_free(rx_cfg_node *n);
/* Appends to a SEQ / a MAP (takes ownership of key and value). Returns RX_ERR_OOM on failure
 * (and then frees what it was given). */
rx_status rx_cfg_seq_push(rx_cfg_node *seq, rx_cfg_node *item);
rx_status rx_cfg_map_put(rx_cfg_node *map, rx_cfg_node *key, rx_cfg_node *value);   /* appends; no duplicate check */
/* Replaces the value of `key` (keeping the key node) or appends key/value when absent. */
rx_status rx_cfg_map_set(rx_cfg_node *map, const char *key, rx_cfg_node *value);
/* Index of key in a MAP, -1 when absent or not a map. */
int       rx_cfg_map_find(const rx_cfg_node *map, const char *key);
rx_cfg_node  *rx_cfg_map_get(const rx_cfg_node *map, const char *key);          /* NULL when absent */
/* Removes entry i of a MAP (frees key and value). */
void      rx_cfg_map_remove(rx_cfg_node *map, int i);
/* A plain null scalar: null, Null, NULL, ~ or empty. */
int       rx_cfg_is_null(const rx_cfg_node *n);
/* Follows a path "a.b.c", "transforms[1].p" or "transforms.1.p"; NULL when absent. */
rx_cfg_node  *rx_cfg_path(const rx_cfg_node *root, const char *path);
/* Would `text`, written as a plain scalar, read as null, a bool or a number (YAML 1.1 or
 * 1.2)? Such strings must stay quoted. */
int       rx_cfg_plain_is_typed(const char *text);
/* Structural equality of two trees (type, keys in order, scalar text; quoting only where it
 * changes the meaning; all nulls equal); positions ignored. */
int       rx_cfg_equal(const rx_cfg_node *a, const rx_cfg_node *b);

// ---------------------------------------------------------------------------
// parse, inherit, override

/* Parses one YAML document. An empty document gives a NULL tree. YAML syntax errors,
 * duplicate keys, non-scalar keys and more than one document are reported as
 * "FILE:LINE:COL: yaml: ..." in errs. `name` is the file name used in locations.
 * Anchors and aliases are expanded (copied); a file may expand to at most 100,000 nodes and
 * 64 levels, so an alias bomb fails at the alias that crosses the limit. */
rx_status rx_yaml_parse_string(const char *text, size_t len, const char *name, rx_cfg_node **out,
                               rx_config_errors *errs);
rx_status rx_yaml_parse_file(const char *path, rx_cfg_node **out, rx_config_errors *errs);

/* Loads an experiment file and its `base:` chain: `base: other.yaml` (relative to the
 * including file) is loaded first and the including file overrides it: mappings merge
 * key by key, scalars and sequences replace. A mapping whose `name` changes (a
 * component section switching from ddim to euler) replaces the inherited one instead of
 * merging, so parameters of the old component do not leak into the new. Cycles and
 * missing base files are errors at the `base:` value. `base` is removed from the result.
 * The top-level document must be a mapping (an empty file is an empty mapping). */
rx_status rx_config_load(const char *path, rx_cfg_node **out, rx_config_errors *errs);

/* Merges `over` into `*base` by the rules above; consumes over. */
rx_status rx_config_merge(rx_cfg_node **base, rx_cfg_node *over);

/* Sets path (as in rx_cfg_path; missing mappings are created, a null on the way becomes a
 * mapping) to the YAML flow value `value_text` ("50", "[1, 2]", "{name: euler}", "'x'").
 * New nodes get the location (file, line, col + offset in the value). Setting `X.name` to
 * a different component name drops X's other keys that did not come from the command line. */
rx_status rx_config_set_path(rx_cfg_node *root, const char *path, const char *value_text,
                             const char *file, int line, int col, rx_config_errors *errs);
/* Applies one `--set` argument "a.b.c=value"; `index` is the 1-based position among the
 * --set options (it becomes the location's line). */
rx_status rx_config_apply_set(rx_cfg_node *root, const char *assignment, int index, rx_config_errors *errs);

// ---------------------------------------------------------------------------
// emit and hash

/* Block-style YAML of the tree in its own key order (the resolved config is in schema
 * order). Scalars that would read back differently are double-quoted; lists of scalars
 * are written in flow style [a, b]. Returns a malloc'd NUL-terminated string, or NULL on OOM. */
char     *rx_config_emit_string(const rx_cfg_node *root);
/* One value in flow style on one line ("20", "[1, 2]", "\"a: b\"", "{name: x}"): the
 * text rx_params_set reads. malloc'd, NULL on OOM. */
char     *rx_config_emit_flow(const rx_cfg_node *n);
rx_status rx_config_emit(const rx_cfg_node *root, FILE *f);
/* Writes `path` atomically (rx_fs_write_atomic). */
rx_status rx_config_save(const rx_cfg_node *root, const char *path);

/* Canonical scalar text for numbers: the shortest "%.{1..17}g" that reads back to the
 * same double, always with a '.' in the mantissa (so it stays a float: 1.0, 1.0e+20,
 * 0.0001). buf needs 32 bytes. */
void rx_config_format_float(double v, char *buf, size_t len);

/* xxHash64 (seed 0) of the emitted text, as 16 lowercase hex digits + NUL. */
rx_status rx_config_hash(const rx_cfg_node *root, char out[17]);
/* Hash of a sub-mapping made of the named top-level sections, in the given order; an absent
 * section counts as `key: null` (so adding a defaulted section changes nothing only if the
 * caller always lists the same keys). */
rx_status rx_config_hash_sections(const rx_cfg_node *root, const char *const *sections, int n, char out[17]);

#endif
