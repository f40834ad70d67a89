/* eval_fixture.h — reading the JSON fixtures of tests/fixtures/gen_fd.py (numbers written by
 * numpy/scipy) for the evaluation tests, and the relative-error check they share. */
#ifndef RX_EVAL_FIXTURE_H
#define RX_EVAL_FIXTURE_H

#include "testutil.h"
#include <jansson.h>

static inline json_t *load_fixture(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/%s", name);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    cr_assert(j, "%s: %s (run tests/fixtures/gen_fd.py)", path, err.text);
    return j;
}

static inline double *json_doubles(json_t *arr, size_t *n) {
    cr_assert(json_is_array(arr));
    *n = json_array_size(arr);
    double *v = malloc(*n * sizeof(double));
    for (size_t i = 0; i < *n; i++) v[i] = json_number_value(json_array_get(arr, i));
    return v;
}

static inline float *json_floats(json_t *arr, size_t *n) {
    double *d = json_doubles(arr, n);
    float *v = malloc(*n * sizeof(float));
    for (size_t i = 0; i < *n; i++) v[i] = (float)d[i];   // exact: the fixture stores float32 values
    free(d);
    return v;
}

static inline double num(json_t *o, const char *key) { return json_number_value(json_object_get(o, key)); }

static inline void expect_close(double got, double want, double tol, const char *what) {
    double rel = fabs(got - want) / fabs(want);
    cr_log_info("%s: rel err %.3g", what, rel);
    cr_expect_lt(rel, tol, "%s: %.12g vs reference %.12g (rel err %.3g)", what, got, want, rel);
}

#endif
