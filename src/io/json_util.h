/* json_util.h — the one way runexp writes a JSON file (run.json, eval.json,
 * metrics.jsonl, an export's config.json): load with a file:line:column message, write
 * atomically, append one compact line under a lock.
 * Note: jansson cannot hold NaN/Inf (json_real returns NULL for them); callers
 * store non-finite metrics as null or a string. */
#ifndef RX_JSON_UTIL_H
#define RX_JSON_UTIL_H

#include <jansson.h>
#include "core/status.h"

/* Parse a whole JSON file. Missing: RX_ERR_IO; invalid: RX_ERR_FORMAT
 * "path:line:column: message". *out is a new reference. */
rx_status rx_json_load_file(const char *path, json_t **out);

/* Write `root` as indented JSON (2 spaces, key order kept) plus a trailing
 * newline, atomically (temp + fsync + rename). */
rx_status rx_json_write_atomic(const char *path, const json_t *root);
/* The same with reals at `real_digits` significant digits (9 for float32 values: each reads back
 * as the same float, and 1e-05 stays 1e-05); 0 = jansson's 17. */
rx_status rx_json_write_atomic_digits(const char *path, const json_t *root, int real_digits);

/* Append `obj` as one compact JSON line (JSON Lines) under an exclusive lock, fsync'd. */
rx_status rx_json_append_line(const char *path, const json_t *obj);

#endif
