/* run_outputs.h — what the CUDA suite's whole-run tests read back from a run directory
 * (test_cuda_graphs_runner.c, test_cuda_bf16.c). Header-only; Criterion asserts. */
#pragma once
#include "io/fsutil.h"
#include "core/status.h"
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the losses of <dir>/metrics.jsonl's rows that have one, in order; their count */
static inline int run_losses(const char *dir, double *out, int max) {
    char path[1400], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    cr_assert_eq(rx_fs_read_file(path, &text, &len), RX_OK, "%s", rx_last_error());
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < max; line = strtok(NULL, "\n")) {
        json_error_t e;
        json_t *row = json_loads(line, 0, &e);
        cr_assert_not_null(row, "%s: %s", path, e.text);
        if (json_object_get(row, "loss")) out[n++] = json_real_value(json_object_get(row, "loss"));
        json_decref(row);
    }
    free(text);
    return n;
}
