/* registry.c — the one table of registered components, lookup, `runexp list`,
 * and a self-check of the table. */
#include "registry/registry.h"

#include <ctype.h>
#include <pthread.h>
#include <string.h>
#include "registry/components.h"

const rx_component *const rx_registry_components[] = {
#define RX_COMPONENT(sym) &rx_comp_##sym,
#include "registry/components.def"
#undef RX_COMPONENT
    NULL,
};

// ---------------------------------------------------------------------------
// kinds

static const struct { const char *name, *plural; } kind_names[RX_KIND_COUNT] = {
#define X(id, name, plural) [RX_KIND_##id] = {name, plural},
    RX_KIND_LIST(X)
#undef X
};

const char *rx_kind_name(rx_kind kind) { return (unsigned)kind < RX_KIND_COUNT ? kind_names[kind].name : "?"; }
const char *rx_kind_plural(rx_kind kind) { return (unsigned)kind < RX_KIND_COUNT ? kind_names[kind].plural : "?"; }

int rx_kind_from_name(const char *s) {
    char norm[64];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof norm) return -1;
    for (size_t i = 0; i <= n; i++) norm[i] = s[i] == '-' ? '_' : (char)tolower((unsigned char)s[i]);
    for (int k = 0; k < RX_KIND_COUNT; k++)
        if (!strcmp(norm, kind_names[k].name) || !strcmp(norm, kind_names[k].plural)) return k;
    return -1;
}

// ---------------------------------------------------------------------------
// lookup

static int alias_matches(const char *aliases, const char *name) {
    if (!aliases) return 0;
    size_t len = strlen(name);
    for (const char *a = aliases; *a;) {
        size_t l = strcspn(a, "|");
        if (l == len && strncmp(a, name, len) == 0) return 1;
        a += l;
        if (*a == '|') a++;
    }
    return 0;
}

const rx_component *rx_registry_find_in(const rx_component *const *table, rx_kind kind, const char *name) {
    if (!table || !name) return NULL;
    for (int i = 0; table[i]; i++)
        if (table[i]->kind == kind && strcmp(table[i]->name, name) == 0) return table[i];
    for (int i = 0; table[i]; i++)   // names win over aliases
        if (table[i]->kind == kind && alias_matches(table[i]->aliases, name)) return table[i];
    return NULL;
}

const rx_component *rx_registry_find(rx_kind kind, const char *name) {
    return rx_registry_find_in(rx_registry_components, kind, name);
}

int rx_registry_count_in(const rx_component *const *table, int kind) {
    int n = 0;
    for (int i = 0; table && table[i]; i++) n += kind < 0 || (int)table[i]->kind == kind;
    return n;
}

const rx_component *rx_registry_at_in(const rx_component *const *table, int kind, int index) {
    for (int i = 0; table && table[i]; i++)
        if ((kind < 0 || (int)table[i]->kind == kind) && index-- == 0) return table[i];
    return NULL;
}

// ---------------------------------------------------------------------------
// choices drawn from the table

// "@block/unet_down" -> the names of the blocks whose role is unet_down, '|'-separated.
static void expand_choices(const char *ref, char *text, size_t cap) {
    char kind_name[64];
    const char *slash = strchr(ref, '/');
    const char *role = slash ? slash + 1 : NULL;
    size_t kind_len = slash ? (size_t)(slash - ref - 1) : strlen(ref) - 1;
    snprintf(kind_name, sizeof kind_name, "%.*s", (int)kind_len, ref + 1);
    int kind = rx_kind_from_name(kind_name);
    size_t used = 0;
    text[0] = 0;
    for (int i = 0; kind >= 0 && rx_registry_components[i]; i++) {
        const rx_component *c = rx_registry_components[i];
        if ((int)c->kind != kind || (role && (!c->role || strcmp(c->role, role)))) continue;
        int w = snprintf(text + used, cap - used, "%s%s", used ? "|" : "", c->name);
        if (w < 0 || (size_t)w >= cap - used) { text[used] = 0; return; }
        used += (size_t)w;
    }
}

/* The table is constant, so each reference is expanded once and kept (a handful exist);
 * the mutex makes the first expansion safe when two threads check configs at once. */
const char *rx_registry_choices(const char *choices) {
    enum { MAX_REFS = 16 };
    static struct { char ref[64]; char text[1024]; } cache[MAX_REFS];
    static int n_cached;
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    if (!choices || choices[0] != '@' || strlen(choices) >= sizeof cache[0].ref) return choices;
    const char *result = NULL;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_cached && !result; i++)
        if (!strcmp(cache[i].ref, choices)) result = cache[i].text;
    if (!result && n_cached < MAX_REFS) {
        snprintf(cache[n_cached].ref, sizeof cache[n_cached].ref, "%s", choices);
        expand_choices(choices, cache[n_cached].text, sizeof cache[n_cached].text);
        result = cache[n_cached++].text;
    }
    pthread_mutex_unlock(&lock);
    return result ? result : "";
}

// ---------------------------------------------------------------------------
// listing

static const char *type_name(rx_param_type t) {
    static const char *const names[] = {
        [RX_P_INT] = "int", [RX_P_FLOAT] = "float", [RX_P_BOOL] = "bool", [RX_P_STRING] = "string",
        [RX_P_CHOICE] = "choice", [RX_P_PATH] = "path", [RX_P_INT_LIST] = "int list",
        [RX_P_FLOAT_LIST] = "float list", [RX_P_STRING_LIST] = "string list",
    };
    return (unsigned)t < sizeof names / sizeof *names && names[t] ? names[t] : "?";
}

// "[1, 1000]", "leading|trailing", "each in [1, 8]", or "".
static void allowed_text(const rx_param_spec *sp, char *buf, size_t len) {
    int list = sp->type == RX_P_INT_LIST || sp->type == RX_P_FLOAT_LIST || sp->type == RX_P_STRING_LIST;
    buf[0] = 0;
    if (sp->choices && (sp->type == RX_P_CHOICE || sp->type == RX_P_STRING_LIST))
        snprintf(buf, len, "%s%s", list ? "each of " : "", rx_registry_choices(sp->choices));
    else if (sp->min <= sp->max && sp->type != RX_P_BOOL && sp->type != RX_P_STRING && sp->type != RX_P_PATH)
        snprintf(buf, len, "%s[%.10g, %.10g]", list ? "each in " : "", sp->min, sp->max);
}

// Markdown table cells: a '|' would end the cell.
static int md_cell(FILE *f, const char *s) {
    for (; s && *s; s++)
        if ((*s == '|' ? fputs("\\|", f) : fputc(*s, f)) == EOF) return -1;
    return 0;
}

static int list_params_text(FILE *f, const rx_param_spec *params) {
    int w = 4, wd = 7;   // column widths: names, defaults
    for (int k = 0; params && params[k].name; k++) {
        if ((int)strlen(params[k].name) > w) w = (int)strlen(params[k].name);
        int ld = params[k].def ? (int)strlen(params[k].def) : 10;
        if (ld > wd && ld <= 24) wd = ld;
    }
    if (!params || !params[0].name) return fprintf(f, "    (no parameters)\n") < 0 ? -1 : 0;
    for (int k = 0; params[k].name; k++) {
        const rx_param_spec *sp = &params[k];
        char allowed[256];
        allowed_text(sp, allowed, sizeof allowed);
        if (fprintf(f, "    %-*s  %-11s  default %-*s  %s%s%s\n", w, sp->name, type_name(sp->type), wd,
                    sp->def ? sp->def : "(required)", allowed, allowed[0] ? "  " : "", sp->help ? sp->help : "") < 0)
            return -1;
    }
    return 0;
}

static int list_params_markdown(FILE *f, const rx_param_spec *params) {
    if (!params || !params[0].name) return fprintf(f, "No parameters.\n\n") < 0 ? -1 : 0;
    if (fprintf(f, "| parameter | type | default | allowed | description |\n|---|---|---|---|---|\n") < 0) return -1;
    for (int k = 0; params[k].name; k++) {
        const rx_param_spec *sp = &params[k];
        char allowed[256];
        allowed_text(sp, allowed, sizeof allowed);
        if (fprintf(f, "| `%s` | %s | ", sp->name, type_name(sp->type)) < 0) return -1;
        if (sp->def) {
            if (fputc('`', f) == EOF || md_cell(f, sp->def) || fputc('`', f) == EOF) return -1;
        } else if (fputs("*required*", f) == EOF) {
            return -1;
        }
        if (fputs(" | ", f) == EOF || md_cell(f, allowed) || fputs(" | ", f) == EOF || md_cell(f, sp->help) ||
            fputs(" |\n", f) == EOF)
            return -1;
    }
    return fputc('\n', f) == EOF ? -1 : 0;
}

static int list_component(FILE *f, const rx_component *c, int markdown) {
    if (markdown) {
        if (fprintf(f, "### `%s`\n\n", c->name) < 0 || md_cell(f, c->help) < 0) return -1;
        if (c->aliases && fprintf(f, "\n\nAlso accepted as: `%s`.", c->aliases) < 0) return -1;
        if (fprintf(f, "\n\n") < 0) return -1;
        return list_params_markdown(f, c->params);
    }
    if (fprintf(f, "%s — %s%s%s%s\n", c->name, c->help ? c->help : "", c->aliases ? " (also: " : "",
                c->aliases ? c->aliases : "", c->aliases ? ")" : "") < 0)
        return -1;
    return list_params_text(f, c->params);
}

rx_status rx_registry_list_in(const rx_component *const *table, FILE *f, int kind, int markdown) {
    int bad = 0;
    if (kind >= RX_KIND_COUNT) return rx_fail(RX_ERR_ARG, "list: no kind %d", kind);
    if (markdown && kind < 0)
        bad |= fprintf(f, "# Components\n\nGenerated by `runexp list --markdown`; do not edit by hand.\n"
                          "Each section of an experiment file names one of these with `name:`; the other keys\n"
                          "are its parameters. Every parameter has a default unless marked *required*.\n\n") < 0;
    for (int k = 0; k < RX_KIND_COUNT && !bad; k++) {
        if (kind >= 0 && k != kind) continue;
        int n = rx_registry_count_in(table, k);
        if (markdown) {
            bad |= fprintf(f, "## %s\n\n", kind_names[k].plural) < 0;
            if (n == 0) bad |= fprintf(f, "None registered yet.\n\n") < 0;
            for (int i = 0; i < n && !bad; i++) bad |= list_component(f, rx_registry_at_in(table, k, i), 1) < 0;
        } else if (kind < 0) {
            bad |= fprintf(f, "%s:\n", kind_names[k].plural) < 0;
            if (n == 0) bad |= fprintf(f, "  (none registered)\n") < 0;
            for (int i = 0; i < n && !bad; i++) {
                const rx_component *c = rx_registry_at_in(table, k, i);
                bad |= fprintf(f, "  %-20s %s\n", c->name, c->help ? c->help : "") < 0;
            }
        } else {
            if (n == 0) bad |= fprintf(f, "no %s registered\n", kind_names[k].plural) < 0;
            for (int i = 0; i < n && !bad; i++) {
                if (i) bad |= fputc('\n', f) == EOF;
                bad |= list_component(f, rx_registry_at_in(table, k, i), 0) < 0;
            }
        }
    }
    if (bad || ferror(f)) return rx_fail(RX_ERR_IO, "list: write failed");
    return RX_OK;
}

rx_status rx_registry_list(FILE *f, int kind, int markdown) {
    return rx_registry_list_in(rx_registry_components, f, kind, markdown);
}

// ---------------------------------------------------------------------------
// self-check

static int valid_name(const char *s) {
    if (!s || !*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
    return 1;
}

rx_status rx_registry_check(const rx_component *const *table, rx_config_errors *errs) {
    int before = errs->n;
    for (int i = 0; table[i]; i++) {
        const rx_component *c = table[i];
        const char *name = c->name ? c->name : "(null)";
        if ((unsigned)c->kind >= RX_KIND_COUNT) {
            rx_config_error_loc(errs, NULL, 0, 0, "registry: component '%s' has no valid kind (%d)", name, (int)c->kind);
            continue;
        }
        const char *kn = kind_names[c->kind].name;
        /* blocks keep diffusers' class names (DownBlock2D), which configs write as they are */
        if (!valid_name(c->name) && c->kind != RX_KIND_BLOCK)
            rx_config_error_loc(errs, NULL, 0, 0, "registry: %s '%s': name must be [a-z0-9_]+", kn, name);
        if (!c->help || !*c->help) rx_config_error_loc(errs, NULL, 0, 0, "registry: %s '%s' has no help line", kn, name);
        if (!c->params) rx_config_error_loc(errs, NULL, 0, 0, "registry: %s '%s' has no parameter table", kn, name);
        for (int j = 0; j < i && c->name; j++) {
            const rx_component *o = table[j];
            if (o->kind != c->kind || !o->name) continue;
            if (!strcmp(o->name, c->name) || alias_matches(o->aliases, c->name) || alias_matches(c->aliases, o->name))
                rx_config_error_loc(errs, NULL, 0, 0, "registry: %s '%s' clashes with '%s'", kn, c->name, o->name);
        }
        if (!c->params) continue;
        // each default alone, so a required parameter (def NULL) does not hide the others
        char label[128];
        snprintf(label, sizeof label, "%s/%s", kn, name);
        int np = rx_param_spec_count(c->params);
        rx_params *scratch = calloc(1, sizeof *scratch);
        if (scratch) {
            scratch->spec = c->params;
            scratch->n = np;
            scratch->component = strdup(label);
            scratch->values = calloc(np > 0 ? (size_t)np : 1, sizeof *scratch->values);
        }
        if (!scratch || !scratch->component || !scratch->values) {
            rx_params_free(scratch);
            return rx_fail(RX_ERR_OOM, "registry: out of memory");
        }
        for (int k = 0; k < np; k++) {
            const rx_param_spec *sp = &c->params[k];
            if (!valid_name(sp->name) || !strcmp(sp->name, "name"))
                rx_config_error_loc(errs, NULL, 0, 0, "registry: %s: parameter name '%s' is not allowed", label, sp->name);
            for (int j = 0; j < k; j++)
                if (!strcmp(c->params[j].name, sp->name))
                    rx_config_error_loc(errs, NULL, 0, 0, "registry: %s: parameter '%s' listed twice", label, sp->name);
            if (sp->type == RX_P_CHOICE && (!sp->choices || !*sp->choices))
                rx_config_error_loc(errs, NULL, 0, 0, "registry: %s: choice parameter '%s' has no choices", label, sp->name);
            if (!sp->help || !*sp->help)
                rx_config_error_loc(errs, NULL, 0, 0, "registry: %s: parameter '%s' has no help", label, sp->name);
            if (sp->def && rx_params_set(scratch, sp->name, sp->def) != RX_OK)
                rx_config_error_loc(errs, NULL, 0, 0, "registry: bad default: %s", rx_last_error());
        }
        rx_params_free(scratch);
    }
    return errs->n > before ? rx_config_errors_status(errs) : RX_OK;
}
