/* braceexpand.c — see braceexpand.h. Expands the first live brace of the string and recurses
 * on each alternative spliced back in, so the left brace varies slowest. */
#include "data/braceexpand.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BRACE_MAX_RESULTS 1000000

typedef struct { char ***out; int *n; int cap; const char *pattern; } brace_out;

static rx_status push(brace_out *o, const char *s) {
    if (*o->n >= BRACE_MAX_RESULTS)
        return rx_fail(RX_ERR_ARG, "brace pattern '%s': more than %d names", o->pattern, BRACE_MAX_RESULTS);
    if (*o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 16;
        char **t = realloc(*o->out, (size_t)cap * sizeof *t);
        if (!t) return rx_fail(RX_ERR_OOM, "brace pattern '%s': out of memory", o->pattern);
        *o->out = t, o->cap = cap;
    }
    if (!((*o->out)[*o->n] = strdup(s))) return rx_fail(RX_ERR_OOM, "brace pattern '%s': out of memory", o->pattern);
    (*o->n)++;
    return RX_OK;
}

// s[open] == '{': index of its matching '}', or -1.
static long match_close(const char *s, long open) {
    int depth = 0;
    for (long k = open; s[k]; k++) {
        if (s[k] == '{') depth++;
        else if (s[k] == '}' && --depth == 0) return k;
    }
    return -1;
}

// A whole-string decimal integer (optional '-'), into *v; its text length into *len.
static int parse_int(const char *s, size_t len, long long *v) {
    if (!len || len > 18) return 0;
    size_t k = s[0] == '-';
    if (k == len) return 0;
    for (size_t i = k; i < len; i++) if (!isdigit((unsigned char)s[i])) return 0;
    char buf[24];
    memcpy(buf, s, len), buf[len] = 0;
    *v = strtoll(buf, NULL, 10);
    return 1;
}

// "a..b" or "a..b..step" integers: braceexpand's zero padding; 1 when it was a range.
static int parse_range(const char *c, size_t len, long long *a, long long *b, long long *step, int *width) {
    const char *d1 = strstr(c, "..");
    if (!d1 || d1 >= c + len) return 0;
    const char *rest = d1 + 2, *end = c + len, *d2 = strstr(rest, "..");
    if (d2 && d2 >= end) d2 = NULL;
    size_t la = (size_t)(d1 - c), lb = (size_t)((d2 ? d2 : end) - rest);
    *step = 1;
    if (!parse_int(c, la, a) || !parse_int(rest, lb, b)) return 0;
    if (d2 && !parse_int(d2 + 2, (size_t)(end - d2 - 2), step)) return 0;
    // padded when an end other than a bare 0 starts with 0 or -0 (braceexpand's rule)
    int pad = 0;
    const char *ends[2] = {c, rest};
    size_t lens[2] = {la, lb};
    for (int k = 0; k < 2; k++) {
        const char *e = ends[k] + (ends[k][0] == '-');
        size_t l = lens[k] - (size_t)(ends[k][0] == '-');
        if (e[0] == '0' && l > 1) pad = 1;
    }
    *width = pad ? (int)(la > lb ? la : lb) : 0;
    return 1;
}

static rx_status expand_from(brace_out *o, const char *s, long from);

// s with s[open..close] replaced by alt[0..alt_len), expanded from where the brace was.
static rx_status splice(brace_out *o, const char *s, long open, long close, const char *alt, size_t alt_len) {
    size_t tail = strlen(s + close + 1);
    char *t = malloc((size_t)open + alt_len + tail + 1);
    if (!t) return rx_fail(RX_ERR_OOM, "brace pattern '%s': out of memory", o->pattern);
    memcpy(t, s, (size_t)open), memcpy(t + open, alt, alt_len), memcpy(t + open + alt_len, s + close + 1, tail + 1);
    rx_status st = expand_from(o, t, open);
    free(t);
    return st;
}

static rx_status expand_from(brace_out *o, const char *s, long from) {
    for (const char *p = strchr(s + from, '{'); p; p = strchr(p + 1, '{')) {
        const long open = p - s, close = match_close(s, open);
        if (close < 0) break;
        const char *c = p + 1;
        const size_t len = (size_t)(close - open - 1);
        // comma alternatives at depth 0
        int depth = 0, commas = 0;
        for (size_t k = 0; k < len; k++) depth += c[k] == '{' ? 1 : c[k] == '}' ? -1 : 0, commas += !depth && c[k] == ',';
        if (commas) {
            size_t start = 0;
            depth = 0;
            for (size_t k = 0; k <= len; k++) {
                if (k < len) depth += c[k] == '{' ? 1 : c[k] == '}' ? -1 : 0;
                if (k == len || (!depth && c[k] == ',')) {
                    RX_TRY(splice(o, s, open, close, c + start, k - start));
                    start = k + 1;
                }
            }
            return RX_OK;
        }
        long long a, b, step;
        int width;
        if (parse_range(c, len, &a, &b, &step, &width)) {
            if (step == 0) return rx_fail(RX_ERR_ARG, "brace pattern '%s': range step 0", o->pattern);
            if (step < 0) step = -step;
            for (long long v = a; a <= b ? v <= b : v >= b; v += a <= b ? step : -step) {
                char num[32];
                int n = snprintf(num, sizeof num, "%0*lld", width, v);
                RX_TRY(splice(o, s, open, close, num, (size_t)n));
            }
            return RX_OK;
        }
        // not a pattern: a literal brace; look further
    }
    return push(o, s);
}

rx_status rx_brace_expand(const char *pattern, char ***out, int *n) {
    brace_out o = {out, n, *n, pattern};
    return expand_from(&o, pattern, 0);
}

void rx_brace_free(char **list, int n) {
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
}
