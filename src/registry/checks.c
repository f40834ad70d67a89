/* checks.c — validation that needs several sections at once (run by rx_config_validate
 * through rx_validate_hooks). Each error points at the offending key's position. */
#include "registry/registry.h"
#include "diffusion/diffusion.h"
#include <string.h>

static const rx_params *params_of(const rx_config *cfg, const char *path, const rx_component **comp) {
    const rx_params *p = NULL;
    if (rx_config_section_params(cfg, path, comp, &p) != RX_OK) { rx_clear_error(); return NULL; }
    return p;
}

/* an objective's task; -1 for one without an implementation (the fake components of test
 * tables) */
static int task_of(const rx_component *objective) {
    return objective && objective->impl ? (int)((const rx_objective_impl *)objective->impl)->task : -1;
}

static int has(const rx_params *p, const char *name) {
    for (int i = 0; p && i < p->n; i++) if (!strcmp(p->spec[i].name, name)) return 1;
    return 0;
}

/* schedule / objective / sampler / guidance / model fit together (diffusion/check.c) */
static void check_diffusion(const rx_config *cfg, rx_config_errors *errs) {
    rx_diffusion_setup u = {0};
    const rx_component *model = NULL;
    u.schedule_params = params_of(cfg, "schedule", &u.schedule);
    u.objective_params = params_of(cfg, "objective", &u.objective);
    u.sampler_params = params_of(cfg, "sampler", &u.sampler);
    params_of(cfg, "guidance", &u.guidance);
    const rx_params *model_params = params_of(cfg, "model", &model);
    u.model_num_classes = has(model_params, "num_classes") ? (int)rx_param_int(model_params, "num_classes") : 0;
    char msg[1024];
    if (rx_diffusion_check(cfg->table, &u, msg, sizeof msg) == RX_OK) return;
    rx_clear_error();
    /* the message starts with the key it is about: "sampler.steps: ..." */
    char key[128];
    snprintf(key, sizeof key, "%.*s", (int)strcspn(msg, ":"), msg);
    const rx_cfg_node *at = rx_cfg_path(cfg->root, key);
    if (!at) {
        char section[128];
        snprintf(section, sizeof section, "%.*s", (int)strcspn(key, "."), key);
        at = rx_cfg_path(cfg->root, section);
    }
    rx_config_error_at(errs, at, "%s", msg);
}

/* eval of generated images needs a feature extractor; a run whose objective trains no
 * diffusion model (classify) generates nothing, reports test accuracy and needs none */
static void check_eval(const rx_config *cfg, rx_config_errors *errs) {
    const rx_cfg_node *ev = rx_cfg_path(cfg->root, "eval");
    if (!ev || rx_cfg_is_null(ev)) return;
    const rx_cfg_node *fe = rx_cfg_path(cfg->root, "eval.features");
    if (fe && !rx_cfg_is_null(fe)) return;
    const rx_component *ob = NULL;
    params_of(cfg, "objective", &ob);
    if (task_of(ob) == RX_TASK_CLASSIFY) return;
    rx_config_error_at(errs, ev, "eval.features: missing required section (features: {name: <features>, ...}): "
                                 "generated images are compared through a feature extractor");
}

/* every cross-section check, in the order they run */
const rx_validate_hook rx_validate_hooks[] = {
    check_diffusion,
    check_eval,
    NULL,
};
