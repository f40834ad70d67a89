/* params.h — typed component parameters: the data that the registry, the config
 * checker, `runexp list` and the docs all read.
 *
 * A component (sampler, dataset, model, ...) declares its parameters as a table:
 *
 *     const rx_param_spec rx_ddim_params[] = {
 *         {"steps", RX_P_INT,   "20",      1, 1000, NULL, "number of model evaluations"},
 *         {"eta",   RX_P_FLOAT, "0.0",     0, 1,    NULL, "0 = deterministic DDIM"},
 *         {"timestep_spacing", RX_P_CHOICE, "leading", 0, 0, "leading|trailing|linspace", "..."},
 *         {0}
 *     };
 *
 * The config layer validates a YAML mapping against the table and produces an
 * rx_params (every default filled in); constructors read it with the getters. */
#ifndef RX_PARAMS_H
#define RX_PARAMS_H

#include <stdint.h>
#include "status.h"

typedef enum {
    RX_P_INT,          /* integer, checked against [min, max] unless min > max            */
    RX_P_FLOAT,        /* real number, checked against [min, max] unless min > max        */
    RX_P_BOOL,         /* true | false                                                    */
    RX_P_STRING,       /* free text                                                       */
    RX_P_CHOICE,       /* one of `choices` ("a|b|c")                                      */
    RX_P_PATH,         /* a file or directory path (free text, resolved by the user)      */
    RX_P_INT_LIST,     /* [1, 2, 3]; each element checked against [min, max]              */
    RX_P_FLOAT_LIST,   /* [0.1, 0.2]                                                      */
    RX_P_STRING_LIST,  /* [DownBlock2D, AttnDownBlock2D]; each in `choices` when given    */
} rx_param_type;

typedef struct rx_param_spec {
    const char   *name;
    rx_param_type type;
    const char   *def;      /* default written as YAML text ("20", "[1, 2]", "null"); NULL = required */
    double        min, max; /* allowed range (ints, floats, list elements); ignored when min > max */
    const char   *choices;  /* "a|b|c" for CHOICE / STRING_LIST, or "@kind/role": the registered
                               components of that kind and role (core/component.h); NULL otherwise */
    const char   *help;
} rx_param_spec;

#define RX_NO_RANGE 1, 0    /* min > max: unchecked */

typedef struct rx_value {
    int      is_null;       /* the YAML value was null (allowed when def is "null") */
    int64_t  i;             /* INT, BOOL */
    double   f;             /* FLOAT (also set for INT) */
    const char *s;          /* STRING, CHOICE, PATH */
    int      n;             /* list length */
    int64_t *ints;          /* INT_LIST */
    double  *floats;        /* FLOAT_LIST (also set for INT_LIST) */
    const char **strs;      /* STRING_LIST */
} rx_value;

/* A resolved parameter set: one value per spec entry, same order as the spec. */
typedef struct rx_params {
    const char          *component;  /* e.g. "sampler/ddim", for messages */
    const rx_param_spec *spec;
    rx_value            *values;
    int                  n;
} rx_params;

/* Getters. Asking for a name that is not in the spec, or with the wrong type,
 * is a programming error (RX_CHECK). */
int64_t      rx_param_int(const rx_params *p, const char *name);
double       rx_param_float(const rx_params *p, const char *name);
int          rx_param_bool(const rx_params *p, const char *name);
const char  *rx_param_str(const rx_params *p, const char *name);     /* STRING, CHOICE, PATH; NULL if null */
int          rx_param_is_null(const rx_params *p, const char *name);
const int64_t *rx_param_int_list(const rx_params *p, const char *name, int *n);
const double  *rx_param_float_list(const rx_params *p, const char *name, int *n);
const char  **rx_param_str_list(const rx_params *p, const char *name, int *n);
/* The value of any type (its type is p->spec[value - p->values].type). */
const rx_value *rx_param_get(const rx_params *p, const char *name);

/* Number of entries in a {0}-terminated spec table. */
int rx_param_spec_count(const rx_param_spec *spec);

/* Build a parameter set from the spec's defaults alone (tests and internal use).
 * Fails if a parameter has no default. Free with rx_params_free. */
rx_status rx_params_from_defaults(const char *component, const rx_param_spec *spec, rx_params **out);
/* Override one value from YAML-like text ("20", "0.5", "true", "[1,2]", "leading"),
 * parsed and checked against the spec. */
rx_status rx_params_set(rx_params *p, const char *name, const char *text);
void      rx_params_free(rx_params *p);

/* The closest of names to s: Levenshtein distance <= 2, or s a prefix of it, or it a
 * prefix of s; NULL when none. The one "did you mean" rule, for keys, component names and
 * choices alike. */
const char *rx_did_you_mean(const char *s, const char *const *names, int n);

#endif
