/* Kernel Inception Distance.
 * Reference: torchmetrics' KernelInceptionDistance formula (poly_kernel, unbiased
 * maximum_mean_discrepancy, mean and std(unbiased=False) over subsets) reimplemented in
 * numpy float64 by tests/fixtures/gen_fd.py, on subsets from its Python reimplementation
 * of the Philox subset draw (tests/fixtures/eval_kid.json). */
#include "testutil.h"
#include "eval_fixture.h"

#include <jansson.h>

#include "eval/kid.h"

Test(eval_kid, subset_draw_matches_reference) {
    json_t *j = load_fixture("eval_kid.json");
    const uint64_t seed = (uint64_t)json_integer_value(json_object_get(j, "subset_seed"));
    const int nx = (int)num(j, "nx"), ny = (int)num(j, "ny");
    struct { const char *key; int subset, which, n; } cases[] = {
        {"subset0_x", 0, 0, nx}, {"subset0_y", 0, 1, ny}, {"subset3_y", 3, 1, ny}};
    int64_t idx[64];
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        json_t *want = json_object_get(j, cases[c].key);
        const int m = (int)json_array_size(want);
        rx_kid_subset(seed, cases[c].subset, cases[c].which, cases[c].n, m, idx);
        for (int i = 0; i < m; i++)
            cr_expect_eq(idx[i], json_integer_value(json_array_get(want, i)), "%s[%d]", cases[c].key, i);
        // a subset draws without replacement
        for (int a = 0; a < m; a++)
            for (int b = a + 1; b < m; b++) cr_expect_neq(idx[a], idx[b]);
    }
    json_decref(j);
}

Test(eval_kid, kid_matches_numpy_torchmetrics_formula) {
    json_t *j = load_fixture("eval_kid.json");
    const int d = (int)num(j, "d"), nx = (int)num(j, "nx"), ny = (int)num(j, "ny");
    size_t n;
    float *x = json_floats(json_object_get(j, "x"), &n);
    float *y = json_floats(json_object_get(j, "y"), &n);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(j, "cases"), i, c) {
        rx_kid_options o = rx_kid_defaults();
        o.subsets = (int)num(c, "subsets");
        o.subset_size = (int)num(c, "subset_size");   // 1000 in one case: capped to 50
        o.seed = (uint64_t)json_integer_value(json_object_get(c, "seed"));
        o.degree = (int)num(c, "degree");
        o.gamma = json_is_null(json_object_get(c, "gamma")) ? 0.0 : num(c, "gamma");
        o.coef = num(c, "coef");
        double mean, std;
        cr_assert_eq(rx_kid(x, nx, y, ny, d, &o, &mean, &std), RX_OK, "%s", rx_last_error());
        char what[96];
        snprintf(what, sizeof what, "case %zu mean (subsets %d, size %d)", i, o.subsets, o.subset_size);
        expect_close(mean, num(c, "mean"), 1e-10, what);
        snprintf(what, sizeof what, "case %zu std", i);
        expect_close(std, num(c, "std"), 1e-8, what);
    }
    free(x);
    free(y);
    json_decref(j);
}

Test(eval_kid, mmd2_full_sets) {
    // unbiased MMD² of x[:50] and y (no subsets), numpy reference
    json_t *j = load_fixture("eval_kid.json");
    const int d = (int)num(j, "d"), ny = (int)num(j, "ny");
    size_t n;
    float *x = json_floats(json_object_get(j, "x"), &n);
    float *y = json_floats(json_object_get(j, "y"), &n);
    double *a = malloc(sizeof(double) * ny * d), *b = malloc(sizeof(double) * ny * d);
    for (int k = 0; k < ny * d; k++) { a[k] = x[k]; b[k] = y[k]; }
    double mmd;
    cr_assert_eq(rx_kid_mmd2(a, b, ny, d, 3, 0.0, 1.0, &mmd), RX_OK);
    expect_close(mmd, num(j, "mmd2_first50"), 1e-10, "MMD² x[:50] vs y");
    // swapping the sets leaves the estimate unchanged (formula is symmetric)
    double mmd_swapped;
    cr_assert_eq(rx_kid_mmd2(b, a, ny, d, 3, 0.0, 1.0, &mmd_swapped), RX_OK);
    expect_close(mmd_swapped, mmd, 1e-12, "MMD² symmetric");
    free(a); free(b); free(x); free(y);
    json_decref(j);
}

Test(eval_kid, errors) {
    float x[4] = {1, 2, 3, 4};
    rx_kid_options o = rx_kid_defaults();
    double mean;
    cr_expect_eq(rx_kid(x, 1, x, 4, 1, &o, &mean, NULL), RX_ERR_ARG, "a subset of 1 row has no pairs");
    o.subsets = 0;
    cr_expect_eq(rx_kid(x, 4, x, 4, 1, &o, &mean, NULL), RX_ERR_ARG);
    o = rx_kid_defaults();
    float bad[4] = {1, NAN, 3, 4};
    cr_expect_eq(rx_kid(x, 4, bad, 4, 1, &o, &mean, NULL), RX_ERR_NUMERIC);
    o.subsets = 2;
    cr_expect_eq(rx_kid(x, 4, x, 4, 1, &o, &mean, NULL), RX_OK, "%s", rx_last_error());
}
