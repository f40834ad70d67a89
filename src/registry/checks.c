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
void rx_check_diffusion(const rx_config *cfg, rx_config_errors *errs) {
    const rx_component *sc = NULL, *ob = NULL, *sa = NULL, *gu = NULL, *mo = NULL;
    const rx_params *schedule = params_of(cfg, "schedule", &sc), *objective = params_of(cfg, "objective", &ob);
    const rx_params *sampler = params_of(cfg, "sampler", &sa), *model = params_of(cfg, "model", &mo);
    params_of(cfg, "guidance", &gu);
    if (task_of(ob) != RX_TASK_DENOISE) return;   /* only a denoiser has a diffusion process */
    int num_classes = has(model, "num_classes") ? (int)rx_param_int(model, "num_classes") : 0;
    char msg[1024];
    if (rx_diffusion_check(schedule, objective, sampler, sa ? sa->name : NULL, ob->name, gu ? gu->name : NULL,
                           num_classes, msg, sizeof msg) == RX_OK)
        return;
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

/* eval of generated images needs a feature extractor; classifier runs (objective classify)
 * report test accuracy and need none */
void rx_check_eval(const rx_config *cfg, rx_config_errors *errs) {
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
