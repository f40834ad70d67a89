/* registry.h — kind -> name -> component, and the experiment schema that checks a
 * config against it.
 *
 * The registry is one table of component descriptors (generated from components.def, one line per
 * component). The same data validates configs, fills defaults, prints `runexp list`
 * and generates docs/components.md. Every function that reads the table has an `_in`
 * form taking the table explicitly (NULL-terminated array), so tests can use a table
 * of fake components; the plain forms use rx_registry_components.
 *
 * The experiment schema (schema.c) describes the top-level YAML: scalars (seed,
 * backend, ...), component sections `{name: X, ...params}`, lists of components
 * (transforms, eval.metrics), plain parameter sections (train, sample, eval) and the
 * sweep grid. rx_config_resolve loads a file (+ base chain + --set), checks everything
 * in one pass, and returns the resolved config: every default filled, `base` removed,
 * `experiment` set, keys in schema order, values in canonical text. */
#ifndef RX_REGISTRY_H
#define RX_REGISTRY_H

#include <stdio.h>
#include "core/component.h"
#include "io/config.h"

// ---------------------------------------------------------------------------
// registry

/* rx_registry_components (the table), rx_registry_find, rx_registry_find_in and
 * rx_registry_choices are declared in core/component.h, for the layers below this one. */

const char *rx_kind_name(rx_kind kind);     /* "sampler"  */
const char *rx_kind_plural(rx_kind kind);   /* "samplers" */
/* "sampler", "samplers", "Samplers", "lr-schedule" -> kind; -1 when unknown. */
int rx_kind_from_name(const char *s);

/* Iteration over one kind (kind = -1: all), in table order. */
int rx_registry_count_in(const rx_component *const *table, int kind);
const rx_component *rx_registry_at_in(const rx_component *const *table, int kind, int index);

/* kind = -1: every kind and its names with one-line help; a kind: each component with
 * its parameters (type, default, range or choices, help). markdown = 1: a Markdown
 * reference (kind -1: all components with parameter tables; rx_reference_markdown adds
 * the experiment schema). */
rx_status rx_registry_list(FILE *f, int kind, int markdown);
rx_status rx_registry_list_in(const rx_component *const *table, FILE *f, int kind, int markdown);

/* Self-check of a table: names unique per kind (aliases included), names lowercase
 * [a-z0-9_], every default parses and satisfies its own range/choices, help present.
 * Problems are appended to errs (no location); RX_ERR_CONFIG if any. */
rx_status rx_registry_check(const rx_component *const *table, rx_config_errors *errs);

// ---------------------------------------------------------------------------
// experiment schema

typedef enum {
    RX_SECTION_PARAMS,          /* mapping checked against `params`, may hold child sections   */
    RX_SECTION_COMPONENT,       /* {name: X, ...X's params}, X of `kind`; `sampler: ddim` also  */
    RX_SECTION_COMPONENT_LIST,  /* [ {name: X, ...}, ... ]                                      */
    RX_SECTION_SWEEP,           /* {"a.b": [v1, v2] or {start, stop, step}, ...}                */
} rx_section_form;

typedef struct rx_section_spec {
    const char             *key;
    rx_section_form         form;
    rx_kind                 kind;       /* COMPONENT, COMPONENT_LIST                             */
    const rx_param_spec    *params;     /* PARAMS                                                */
    const struct rx_section_spec *children; /* PARAMS: nested sections, {0}-terminated or NULL */
    const char             *def;        /* COMPONENT: default component name, NULL = required;
                                           PARAMS: "null" = absent means null, NULL = absent
                                           means every default                              */
    int                     nullable;   /* PARAMS: `key: null` allowed (stage disabled)         */
    const char             *help;
} rx_section_spec;

/* The top level: form PARAMS with the scalar keys as params and every section as a child. */
extern const rx_section_spec rx_experiment_schema;

/* One checked section of a resolved config. */
typedef struct {
    char               *path;    /* "" (top-level scalars), "sampler", "train", "transforms[0]", "eval.metrics[1]" */
    const rx_component *comp;    /* NULL for plain parameter sections ("", train, sample, eval)                   */
    rx_params          *params;  /* every value filled; component "sampler/ddim", "transform/random_flip", ...   */
} rx_config_section;

typedef struct rx_config {
    rx_cfg_node                   *root;      /* resolved tree (emit it to save / print / hash) */
    const rx_component *const *table;     /* the registry it was checked against             */
    int                        nsections;
    rx_config_section         *sections;
} rx_config;

/* Cross-checks that need the whole resolved config (e.g. guidance cfg needs a class-
 * conditional model). Called only when the config is otherwise valid; add errors with
 * rx_config_error_at(errs, rx_cfg_path(cfg->root, "guidance"), "guidance: ..."). */
typedef void (*rx_validate_hook)(const rx_config *cfg, rx_config_errors *errs);
extern const rx_validate_hook rx_validate_hooks[];   /* NULL-terminated; checks.c */

/* Loads `path` (+ base chain), applies the --set assignments ("a.b=v") in order, then
 * checks and resolves against table (NULL = rx_registry_components). `experiment`
 * defaults to the file's stem. All problems go to errs (sorted by location); on any,
 * *out = NULL and RX_ERR_CONFIG. */
rx_status rx_config_resolve(const char *path, const char *const *sets, int nsets,
                            const rx_component *const *table, rx_config **out, rx_config_errors *errs);
/* Before checking: a model starting from weights (init, model.weights) that have a diffusers
 * config.json beside them gets every parameter that file determines and the tree leaves out; a
 * parameter set to another value is an error in errs (diffusers_config.c). */
void      rx_config_fill_from_diffusers(rx_cfg_node *tree, const rx_component *const *table, rx_config_errors *errs);
/* Checks an already loaded tree (consumed), completed by rx_config_fill_from_diffusers first.
 * experiment_default may be NULL. */
rx_status rx_config_validate(rx_cfg_node *tree, const char *experiment_default, const rx_component *const *table,
                             rx_config **out, rx_config_errors *errs);
/* Runs a NULL-terminated hook list; RX_ERR_CONFIG if a hook added errors. */
rx_status rx_config_run_hooks(const rx_config *cfg, const rx_validate_hook *hooks, rx_config_errors *errs);
void      rx_config_free(rx_config *cfg);

/* The checked parameters of a section ("", "sampler", "train", "eval.features",
 * "transforms[1]"). comp gets NULL for plain parameter sections; either out may be NULL.
 * RX_ERR_ARG when the section is null (train: null) or does not exist. */
rx_status rx_config_section_params(const rx_config *cfg, const char *path, const rx_component **comp,
                                   const rx_params **params);
/* Items of a component list ("transforms", "eval.metrics"); 0 when absent or null. */
int       rx_config_section_count(const rx_config *cfg, const char *list_path);
rx_status rx_config_section_item_params(const rx_config *cfg, const char *list_path, int index,
                                        const rx_component **comp, const rx_params **params);

/* A sweep axis as a list: a list value is cloned; {start, stop, step} becomes the grid
 * start, start+step, ... up to and including stop (when it falls on the grid, within
 * 1e-9 of a step); integers when all three are integers. At most 10000 points. */
rx_status rx_config_sweep_axis(const rx_cfg_node *value, rx_cfg_node **list_out);

/* sample.model: 0 for "teacher", k for "reflow<k>" (1 <= k <= rounds), rounds + 1 for
 * "distill" when distill is on; -1 for anything else (checks.c says what is valid). */
int       rx_reflow_model_index(const char *name, int rounds, int distill);

/* The experiment schema as a reference (top-level keys, train/sample/eval parameters). */
rx_status rx_schema_print(FILE *f, int markdown);
/* docs/components.md: every component of table (rx_registry_list_in, Markdown) followed
 * by the experiment schema. */
rx_status rx_reference_markdown(const rx_component *const *table, FILE *f);

#endif
