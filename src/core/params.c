/* params.c — typed component parameters: parse value text, check it against the
 * spec (type, range, choices), store it, read it back.
 *
 * Value text is a YAML flow value, parsed with libyaml so that quoting and escapes
 * follow YAML exactly: a plain scalar (20, 0.5, 1e-4, true, null, leading), a quoted
 * scalar ('a b', "x\ty"), or a flow list ([1, 2, 3], [DownBlock2D, AttnDownBlock2D]).
 * A quoted scalar is always a string: "20" is not an integer (YAML's rule).
 *
 * Ownership: an rx_params owns its component name, its values array and every
 * string and list inside the values; rx_params_free releases all of it. */
#include "core/params.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

// ---------------------------------------------------------------------------
// lookup and getters

static int spec_index(const rx_params *p, const char *name) {
    for (int k = 0; k < p->n; k++)
        if (strcmp(p->spec[k].name, name) == 0) return k;
    return -1;
}

// Unknown name is a programming error: the constructor and its spec disagree.
static const rx_value *value_checked(const rx_params *p, const char *name, unsigned type_mask) {
    RX_CHECK(p != NULL && name != NULL);
    int k = spec_index(p, name);
    if (k < 0) fprintf(stderr, "rx_params: '%s' has no parameter '%s'\n", p->component ? p->component : "?", name);
    RX_CHECK(k >= 0);
    if (!(type_mask & (1u << p->spec[k].type)))
        fprintf(stderr, "rx_params: %s: parameter '%s' read with the wrong type\n",
                p->component ? p->component : "?", name);
    RX_CHECK(type_mask & (1u << p->spec[k].type));
    return &p->values[k];
}

#define T(t) (1u << (t))

// A null value reads as 0 / 0.0 / false / NULL / empty list; check rx_param_is_null first
// where null means something (e.g. `init: null`).
int64_t rx_param_int(const rx_params *p, const char *name) { return value_checked(p, name, T(RX_P_INT))->i; }
double  rx_param_float(const rx_params *p, const char *name) {
    return value_checked(p, name, T(RX_P_FLOAT) | T(RX_P_INT))->f;
}
int rx_param_bool(const rx_params *p, const char *name) { return (int)value_checked(p, name, T(RX_P_BOOL))->i; }
const char *rx_param_str(const rx_params *p, const char *name) {
    const rx_value *v = value_checked(p, name, T(RX_P_STRING) | T(RX_P_CHOICE) | T(RX_P_PATH));
    return v->is_null ? NULL : v->s;
}
int rx_param_is_null(const rx_params *p, const char *name) { return value_checked(p, name, ~0u)->is_null; }
const int64_t *rx_param_int_list(const rx_params *p, const char *name, int *n) {
    const rx_value *v = value_checked(p, name, T(RX_P_INT_LIST));
    if (n) *n = v->n;
    return v->ints;
}
const double *rx_param_float_list(const rx_params *p, const char *name, int *n) {
    const rx_value *v = value_checked(p, name, T(RX_P_FLOAT_LIST) | T(RX_P_INT_LIST));
    if (n) *n = v->n;
    return v->floats;
}
const char **rx_param_str_list(const rx_params *p, const char *name, int *n) {
    const rx_value *v = value_checked(p, name, T(RX_P_STRING_LIST));
    if (n) *n = v->n;
    return v->strs;
}

int rx_param_spec_count(const rx_param_spec *spec) {
    int n = 0;
    while (spec && spec[n].name) n++;
    return n;
}

// ---------------------------------------------------------------------------
// flow text -> scalars (libyaml events)

typedef struct {
    int    is_list;   // written as a sequence
    int    n;         // scalars (1 for a scalar)
    char **text;
    int   *quoted;    // 1 when not a plain scalar: always a string
} flow_value;

static void flow_free(flow_value *fv) {
    for (int k = 0; k < fv->n; k++) free(fv->text[k]);
    free(fv->text);
    free(fv->quoted);
    memset(fv, 0, sizeof *fv);
}

static int flow_push(flow_value *fv, const char *s, size_t len, int quoted) {
    char **t = realloc(fv->text, (size_t)(fv->n + 1) * sizeof *t);
    if (!t) return 0;
    fv->text = t;
    int *q = realloc(fv->quoted, (size_t)(fv->n + 1) * sizeof *q);
    if (!q) return 0;
    fv->quoted = q;
    char *c = malloc(len + 1);
    if (!c) return 0;
    memcpy(c, s, len);
    c[len] = 0;
    fv->text[fv->n] = c;
    fv->quoted[fv->n] = quoted;
    fv->n++;
    return 1;
}

// Parses `text` into fv. On failure writes a reason into err and returns an rx status code.
static rx_status flow_parse(const char *text, flow_value *fv, char *err, size_t errlen) {
    memset(fv, 0, sizeof *fv);
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) { snprintf(err, errlen, "out of memory"); return RX_ERR_OOM; }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    rx_status st = RX_OK;
    int depth = 0, done = 0, values = 0;
    while (!done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            snprintf(err, errlen, "not a valid YAML value (%s)", parser.problem ? parser.problem : "syntax error");
            st = RX_ERR_CONFIG;
            break;
        }
        switch (ev.type) {
        case YAML_SCALAR_EVENT:
            if (depth == 0 && values++ > 0) { snprintf(err, errlen, "more than one value"); st = RX_ERR_CONFIG; break; }
            if (!flow_push(fv, (const char *)ev.data.scalar.value, ev.data.scalar.length,
                           ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE)) {
                snprintf(err, errlen, "out of memory");
                st = RX_ERR_OOM;
            }
            break;
        case YAML_SEQUENCE_START_EVENT:
            if (depth > 0) { snprintf(err, errlen, "nested lists are not allowed"); st = RX_ERR_CONFIG; break; }
            if (values++ > 0) { snprintf(err, errlen, "more than one value"); st = RX_ERR_CONFIG; break; }
            fv->is_list = 1;
            depth++;
            break;
        case YAML_SEQUENCE_END_EVENT: depth--; break;
        case YAML_MAPPING_START_EVENT:
            snprintf(err, errlen, "a mapping is not allowed here");
            st = RX_ERR_CONFIG;
            break;
        case YAML_ALIAS_EVENT:
            snprintf(err, errlen, "YAML aliases are not supported");
            st = RX_ERR_CONFIG;
            break;
        case YAML_STREAM_END_EVENT: done = 1; break;
        default: break;
        }
        yaml_event_delete(&ev);
        if (st != RX_OK) break;
    }
    yaml_parser_delete(&parser);
    if (st != RX_OK) { flow_free(fv); return st; }
    if (values == 0 && !flow_push(fv, "", 0, 0)) { snprintf(err, errlen, "out of memory"); return RX_ERR_OOM; }  // empty text = null
    return RX_OK;
}

// ---------------------------------------------------------------------------
// scalar typing

static int is_null_text(const char *s, int quoted) {
    if (quoted) return 0;
    return !*s || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL") || !strcmp(s, "~");
}

// YAML 1.2 core-schema integer, decimal only: [-+]?[0-9]+
static int parse_int(const char *s, int64_t *out) {
    const char *q = s;
    if (*q == '-' || *q == '+') q++;
    if (!*q) return 0;
    for (const char *c = q; *c; c++)
        if (*c < '0' || *c > '9') return 0;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE) return 0;
    *out = v;
    return 1;
}

// Decimal real: [-+]? (digits [. digits?] | . digits) ([eE] [-+]? digits)?  — no inf/nan, no hex.
static int parse_float(const char *s, double *out) {
    const char *c = s;
    int digits = 0;
    if (*c == '-' || *c == '+') c++;
    while (*c >= '0' && *c <= '9') c++, digits++;
    if (*c == '.') { c++; while (*c >= '0' && *c <= '9') c++, digits++; }
    if (!digits) return 0;
    if (*c == 'e' || *c == 'E') {
        c++;
        if (*c == '-' || *c == '+') c++;
        if (!(*c >= '0' && *c <= '9')) return 0;
        while (*c >= '0' && *c <= '9') c++;
    }
    if (*c) return 0;
    double v = strtod(s, NULL);
    if (!isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int parse_bool(const char *s, int64_t *out) {
    static const char *const yes[] = {"true", "True", "TRUE"}, *const no[] = {"false", "False", "FALSE"};
    for (int k = 0; k < 3; k++) {
        if (!strcmp(s, yes[k])) { *out = 1; return 1; }
        if (!strcmp(s, no[k])) { *out = 0; return 1; }
    }
    return 0;
}

static int levenshtein(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 64 || lb > 64) return 99;
    int row[65];
    for (int j = 0; j <= lb; j++) row[j] = j;
    for (int i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int up = row[j];
            int sub = diag + (a[i - 1] != b[j - 1]);
            int best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
            row[j] = sub < best ? sub : best;
            diag = up;
        }
    }
    return row[lb];
}

// Is s one of "a|b|c"? If not, writes the closest choice (distance <= 2 or a prefix) into hint.
static int in_choices(const char *s, const char *choices, char *hint, size_t hintlen) {
    int best = 99;
    hint[0] = 0;
    for (const char *c = choices; *c;) {
        const char *end = strchr(c, '|');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        char item[128];
        if (len >= sizeof item) len = sizeof item - 1;
        memcpy(item, c, len);
        item[len] = 0;
        if (!strcmp(item, s)) return 1;
        int d = levenshtein(s, item);
        if (*s && !strncmp(item, s, strlen(s))) d = d < 2 ? d : 2;
        if (d <= 2 && d < best) { best = d; snprintf(hint, hintlen, "%s", item); }
        c += len;
        if (*c == '|') c++;
    }
    return 0;
}

static const char *type_word(rx_param_type t) {
    static const char *const words[] = {
        [RX_P_INT] = "an integer", [RX_P_FLOAT] = "a number", [RX_P_BOOL] = "true or false",
        [RX_P_STRING] = "a string", [RX_P_CHOICE] = "one of the choices", [RX_P_PATH] = "a path",
        [RX_P_INT_LIST] = "a list of integers", [RX_P_FLOAT_LIST] = "a list of numbers",
        [RX_P_STRING_LIST] = "a list of strings",
    };
    return (unsigned)t < sizeof words / sizeof *words && words[t] ? words[t] : "a value";
}

static int has_range(const rx_param_spec *sp) { return sp->min <= sp->max; }

// Types one scalar as an element of spec `sp` (scalar type, or element type of a list).
// Writes the reason into err on failure. On success the element is in *i / *f / *s (s borrowed).
static int scalar_typed(const rx_param_spec *sp, rx_param_type et, const char *text, int quoted,
                        int64_t *i, double *f, char *err, size_t errlen) {
    const char *shown = text;
    switch (et) {
    case RX_P_INT:
        if (quoted || !parse_int(text, i)) {
            double tmp;
            if (!quoted && parse_float(text, &tmp)) snprintf(err, errlen, "expected an integer, got '%s'", shown);
            else snprintf(err, errlen, "expected an integer, got %s'%s'", quoted ? "string " : "", shown);
            return 0;
        }
        *f = (double)*i;
        if (has_range(sp) && ((double)*i < sp->min || (double)*i > sp->max)) {
            snprintf(err, errlen, "value %lld is out of range [%.17g, %.17g]", (long long)*i, sp->min, sp->max);
            return 0;
        }
        return 1;
    case RX_P_FLOAT:
        if (quoted || !parse_float(text, f)) {
            snprintf(err, errlen, "expected a finite number, got %s'%s'", quoted ? "string " : "", shown);
            return 0;
        }
        if (has_range(sp) && (*f < sp->min || *f > sp->max)) {
            snprintf(err, errlen, "value %.17g is out of range [%.17g, %.17g]", *f, sp->min, sp->max);
            return 0;
        }
        return 1;
    case RX_P_BOOL:
        if (quoted || !parse_bool(text, i)) {
            snprintf(err, errlen, "expected true or false, got %s'%s'", quoted ? "string " : "", shown);
            return 0;
        }
        *f = (double)*i;
        return 1;
    case RX_P_CHOICE:
    case RX_P_STRING:
    case RX_P_PATH:
        if (sp->choices && (et == RX_P_CHOICE || sp->type == RX_P_STRING_LIST)) {
            char hint[128];
            if (!in_choices(text, sp->choices, hint, sizeof hint)) {
                if (hint[0]) snprintf(err, errlen, "'%s' is not one of %s (did you mean '%s'?)", text, sp->choices, hint);
                else snprintf(err, errlen, "'%s' is not one of %s", text, sp->choices);
                return 0;
            }
        }
        return 1;
    default:
        snprintf(err, errlen, "unsupported parameter type %d", (int)et);
        return 0;
    }
}

static rx_param_type element_type(rx_param_type t) {
    switch (t) {
    case RX_P_INT_LIST: return RX_P_INT;
    case RX_P_FLOAT_LIST: return RX_P_FLOAT;
    case RX_P_STRING_LIST: return RX_P_STRING;
    default: return t;
    }
}

static int is_list_type(rx_param_type t) {
    return t == RX_P_INT_LIST || t == RX_P_FLOAT_LIST || t == RX_P_STRING_LIST;
}

static void value_clear(rx_value *v) {
    free((void *)v->s);
    free(v->ints);
    free(v->floats);
    if (v->strs)
        for (int k = 0; k < v->n; k++) free((void *)v->strs[k]);
    free((void *)v->strs);
    memset(v, 0, sizeof *v);
}

// Builds a value for spec `sp` from the parsed text; reason in err on failure.
static rx_status value_from_flow(const rx_param_spec *sp, const flow_value *fv, rx_value *out,
                                 char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    int nullable = sp->def && is_null_text(sp->def, 0);
    if (!fv->is_list && is_null_text(fv->text[0], fv->quoted[0])) {
        if (!nullable) {
            snprintf(err, errlen, "may not be null (expected %s)", type_word(sp->type));
            return RX_ERR_CONFIG;
        }
        out->is_null = 1;
        return RX_OK;
    }
    rx_param_type et = element_type(sp->type);
    if (is_list_type(sp->type) != fv->is_list) {
        if (fv->is_list) snprintf(err, errlen, "expected %s, got a list", type_word(sp->type));
        else snprintf(err, errlen, "expected %s, got '%s'", type_word(sp->type), fv->text[0]);
        return RX_ERR_CONFIG;
    }
    if (!fv->is_list) {
        int64_t i = 0;
        double f = 0;
        if (!scalar_typed(sp, et, fv->text[0], fv->quoted[0], &i, &f, err, errlen)) return RX_ERR_CONFIG;
        out->i = i;
        out->f = f;
        if (et == RX_P_STRING || et == RX_P_CHOICE || et == RX_P_PATH) {
            if (!(out->s = strdup(fv->text[0]))) { snprintf(err, errlen, "out of memory"); return RX_ERR_OOM; }
        }
        return RX_OK;
    }
    // lists: ints also fill floats, so one reader serves both
    int n = fv->n;
    out->n = n;
    size_t cnt = n > 0 ? (size_t)n : 1;
    if (et == RX_P_INT) out->ints = calloc(cnt, sizeof *out->ints);
    if (et == RX_P_INT || et == RX_P_FLOAT) out->floats = calloc(cnt, sizeof *out->floats);
    if (et == RX_P_STRING) out->strs = calloc(cnt, sizeof *out->strs);
    if ((et == RX_P_INT && !out->ints) || ((et == RX_P_INT || et == RX_P_FLOAT) && !out->floats) ||
        (et == RX_P_STRING && !out->strs)) {
        value_clear(out);
        snprintf(err, errlen, "out of memory");
        return RX_ERR_OOM;
    }
    for (int k = 0; k < n; k++) {
        int64_t i = 0;
        double f = 0;
        char why[512];
        if (!fv->quoted[k] && is_null_text(fv->text[k], 0)) {
            snprintf(err, errlen, "element %d: may not be null (expected %s)", k, type_word(sp->type));
            value_clear(out);
            return RX_ERR_CONFIG;
        }
        if (!scalar_typed(sp, et, fv->text[k], fv->quoted[k], &i, &f, why, sizeof why)) {
            snprintf(err, errlen, "element %d: %s", k, why);
            value_clear(out);
            return RX_ERR_CONFIG;
        }
        if (out->ints) out->ints[k] = i;
        if (out->floats) out->floats[k] = f;
        if (out->strs && !(out->strs[k] = strdup(fv->text[k]))) {
            value_clear(out);
            snprintf(err, errlen, "out of memory");
            return RX_ERR_OOM;
        }
    }
    return RX_OK;
}

// ---------------------------------------------------------------------------
// set / build / free

rx_status rx_params_set(rx_params *p, const char *name, const char *text) {
    if (!p || !name || !text) return rx_fail(RX_ERR_ARG, "rx_params_set: NULL argument");
    const char *comp = p->component ? p->component : "?";
    int k = spec_index(p, name);
    if (k < 0) return rx_fail(RX_ERR_CONFIG, "%s: unknown parameter '%s'", comp, name);
    char err[1024];
    flow_value fv;
    rx_status st = flow_parse(text, &fv, err, sizeof err);
    if (st != RX_OK) return rx_fail(st, "%s: parameter '%s': %s", comp, name, err);
    rx_value v;
    st = value_from_flow(&p->spec[k], &fv, &v, err, sizeof err);
    flow_free(&fv);
    if (st != RX_OK) return rx_fail(st, "%s: parameter '%s': %s", comp, name, err);
    value_clear(&p->values[k]);
    p->values[k] = v;
    return RX_OK;
}

rx_status rx_params_from_defaults(const char *component, const rx_param_spec *spec, rx_params **out) {
    if (!out) return rx_fail(RX_ERR_ARG, "rx_params_from_defaults: NULL out");
    *out = NULL;
    int n = rx_param_spec_count(spec);
    rx_params *p = calloc(1, sizeof *p);
    if (!p) return rx_fail(RX_ERR_OOM, "rx_params_from_defaults: out of memory");
    p->spec = spec;
    p->n = n;
    p->component = strdup(component ? component : "?");
    p->values = calloc(n > 0 ? (size_t)n : 1, sizeof *p->values);
    if (!p->component || !p->values) {
        rx_params_free(p);
        return rx_fail(RX_ERR_OOM, "rx_params_from_defaults: out of memory");
    }
    for (int k = 0; k < n; k++) {
        if (!spec[k].def) {
            rx_status st = rx_fail(RX_ERR_CONFIG, "%s: parameter '%s' is required (it has no default)",
                                   p->component, spec[k].name);
            rx_params_free(p);
            return st;
        }
        rx_status st = rx_params_set(p, spec[k].name, spec[k].def);
        if (st != RX_OK) {
            rx_fail_ctx(st, "bad default in the parameter table: ");
            rx_params_free(p);
            return st;
        }
    }
    *out = p;
    return RX_OK;
}

void rx_params_free(rx_params *p) {
    if (!p) return;
    if (p->values)
        for (int k = 0; k < p->n; k++) value_clear(&p->values[k]);
    free(p->values);
    free((void *)p->component);
    free(p);
}
