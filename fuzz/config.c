/* fuzz target: an experiment YAML file through the loader and validation (rx_config_resolve:
 * YAML parse, anchors/aliases, base: chain, schema check against the real component table). */
#include "fuzz_util.h"
#include "core/status.h"
#include "io/config.h"
#include "registry/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("exp.yaml", data, size);
    rx_config_errors errs = {0};
    rx_config *cfg = NULL;
    if (rx_config_resolve(path, NULL, 0, NULL, &cfg, &errs) == RX_OK) {
        char *s = rx_config_emit_string(cfg->root);   // the resolved config must emit
        free(s);
        rx_config_free(cfg);
    }
    rx_config_errors_clear(&errs);
    rx_clear_error();
    return 0;
}
