/* dataset.c — what every data set shares: allocation, the lookup of base directories,
 * the "not found" message, and the checked entry point rx_dataset_load. */
#include "data/dataset.h"

#include <stdlib.h>
#include <string.h>

rx_status rx_dataset_alloc(const char *name, int n, int c, int h, int w, int num_classes, rx_dataset **out) {
    *out = NULL;
    if (n < 0 || c < 1 || h < 1 || w < 1 || num_classes < 0)
        return rx_fail(RX_ERR_ARG, "dataset %s: bad shape n=%d C=%d H=%d W=%d classes=%d", name, n, c, h, w,
                       num_classes);
    rx_dataset *d = calloc(1, sizeof *d);
    if (!d) return rx_fail(RX_ERR_OOM, "dataset %s: out of memory", name);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->n = n, d->channels = c, d->height = h, d->width = w, d->num_classes = num_classes;
    size_t bytes = (size_t)n * (size_t)c * (size_t)h * (size_t)w;
    d->pixels = malloc(bytes ? bytes : 1);
    d->labels = malloc((size_t)(n ? n : 1) * sizeof *d->labels);
    d->class_names = calloc((size_t)(num_classes ? num_classes : 1), sizeof *d->class_names);
    if (!d->pixels || !d->labels || !d->class_names) {
        rx_dataset_free(d);
        return rx_fail(RX_ERR_OOM, "dataset %s: out of memory for %zu bytes of pixels", name, bytes);
    }
    for (int i = 0; i < n; i++) d->labels[i] = -1;
    *out = d;
    return RX_OK;
}

rx_status rx_dataset_set_class_name(rx_dataset *d, int k, const char *name) {
    RX_CHECK(k >= 0 && k < d->num_classes);
    free(d->class_names[k]);
    if (!(d->class_names[k] = strdup(name))) return rx_fail(RX_ERR_OOM, "dataset %s: out of memory", d->name);
    return RX_OK;
}

void rx_dataset_free(rx_dataset *d) {
    if (!d) return;
    if (d->class_names)
        for (int k = 0; k < d->num_classes; k++) free(d->class_names[k]);
    free(d->class_names);
    free(d->pixels);
    free(d->labels);
    free(d);
}

rx_status rx_dataset_load(const rx_component *comp, const rx_params *p, const char *split, rx_dataset **out) {
    if (!out) return rx_fail(RX_ERR_ARG, "rx_dataset_load: NULL out");
    *out = NULL;
    if (!comp || comp->kind != RX_KIND_DATASET || !comp->impl)
        return rx_fail(RX_ERR_ARG, "rx_dataset_load: '%s' is not a dataset component", comp ? comp->name : "NULL");
    if (!split || (strcmp(split, "train") && strcmp(split, "test")))
        return rx_fail(RX_ERR_ARG, "dataset %s: split '%s' must be train or test", comp->name, split ? split : "NULL");
    const rx_dataset_impl *impl = comp->impl;
    return impl->load(p, split, out);
}

const char *rx_data_root(const rx_params *p) {
    const char *root = p ? rx_param_str(p, "root") : NULL;
    if (root && *root) return root;
    const char *env = getenv("RUNEXP_DATA");
    if (env && *env) return env;
    return "data";
}

rx_status rx_data_path_join(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return rx_fail(RX_ERR_ARG, "path too long: %s/%s", dir, name);
    return RX_OK;
}

rx_status rx_data_not_found(const char *name, const char *tried) {
    return rx_fail(RX_ERR_IO,
                   "dataset %s: not found; looked for: %s. Get it with `make data` or `runexp data fetch %s` "
                   "(copies from $RUNEXP_DATA_SRC, else downloads), or point `root:` / $RUNEXP_DATA at a "
                   "directory that holds it",
                   name, tried, name);
}
