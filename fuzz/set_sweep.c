/* fuzz target: --set and --sweep arguments. Each input line is one argument: applied as
 * `--set` (rx_config_apply_set) to a small valid config, and parsed as a `--sweep key=v1,v2`
 * value the way runner/sweep.c does ("[v1,v2]" as YAML flow, then rx_config_sweep_axis,
 * which also expands {start, stop, step}); the result is validated and emitted. */
#include "fuzz_util.h"
#include "core/status.h"
#include "io/config.h"
#include "registry/registry.h"

static const char base_yaml[] =
    "experiment: fz\nseed: 1\n"
    "dataset: {name: synthetic}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    rx_config_errors errs = {0};
    rx_cfg_node *root = NULL;
    if (rx_yaml_parse_string(base_yaml, sizeof base_yaml - 1, "base.yaml", &root, &errs) != RX_OK) abort();
    int index = 1;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), index++) {
        rx_config_apply_set(root, line, index, &errs);
        const char *eq = strchr(line, '=');
        if (eq && eq != line) {
            char flow[4096];
            snprintf(flow, sizeof flow, "[%s]", eq + 1);
            rx_cfg_node *axis = NULL;
            if (rx_yaml_parse_string(flow, strlen(flow), "<command line>:--sweep", &axis, &errs) == RX_OK && axis) {
                for (int i = 0; i < axis->n; i++) {
                    rx_cfg_node *list = NULL;
                    if (rx_config_sweep_axis(axis->items[i], &list) == RX_OK) rx_cfg_free(list);
                }
                rx_cfg_node *list = NULL;
                if (rx_config_sweep_axis(axis, &list) == RX_OK) rx_cfg_free(list);
            }
            rx_cfg_free(axis);
        }
    }
    char *s = rx_config_emit_string(root);
    free(s);
    rx_config *cfg = NULL;
    if (rx_config_validate(root, "fz", NULL, &cfg, &errs) == RX_OK) rx_config_free(cfg);   // consumes root
    rx_config_errors_clear(&errs);
    rx_clear_error();
    free(text);
    return 0;
}
