/* testutil.h — shared helpers for the Criterion suite. */
#ifndef RX_TESTUTIL_H
#define RX_TESTUTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Directory holding the shared real data sets (cifar10/, mnist/), from the
 * environment (the Makefile exports RUNEXP_DATA_SRC) or ../shared/data. */
static inline const char *rx_test_data_src(void) {
    const char *s = getenv("RUNEXP_DATA_SRC");
    return (s && *s) ? s : "../shared/data";
}

/* max_i |a_i - b_i| / max(max_i |b_i|, tiny): a relative error on the scale of the reference. */
static inline double rx_rel_err(const float *a, const float *b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > num || d != d) num = d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return num / (den > 1e-30 ? den : 1e-30);
}

/* Read a whole file into a malloc'd buffer (NUL-terminated); NULL if missing. */
static inline void *rx_test_read_file(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n + 1);
    if (buf && (long)fread(buf, 1, n, f) != n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) buf[n] = 0;
    if (len) *len = n;
    return buf;
}

#endif
