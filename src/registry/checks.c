/* checks.c — validation that needs several sections at once (run by rx_config_validate
 * through rx_validate_hooks). Each error points at the offending key's position. */
#include "registry/registry.h"
#include "diffusion/diffusion.h"
#include <stdlib.h>
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

int rx_reflow_model_index(const char *name, int rounds, int distill) {
    if (!strcmp(name, "teacher")) return 0;
    if (distill && !strcmp(name, "distill")) return rounds + 1;
    char *end = NULL;
    if (strncmp(name, "reflow", 6) || !name[6] || name[6] < '1' || name[6] > '9') return -1;
    long k = strtol(name + 6, &end, 10);
    return *end == 0 && k >= 1 && k <= rounds ? (int)k : -1;
}

/* the reflow section: a flow-matching teacher, a flow sampler and a guidance that fit it
 * (the diffusion rules of check_diffusion, with reflow's sampler and guidance) */
static void check_reflow_section(const rx_config *cfg, rx_config_errors *errs) {
    const rx_component *ob = NULL;
    params_of(cfg, "objective", &ob);
    if (rx_schedule_kind_of(ob) != RX_SCHED_FLOW) {
        rx_config_error_at(errs, rx_cfg_path(cfg->root, "reflow"),
                           "reflow: reflow straightens a flow: it needs objective flow_matching (and schedule flow), "
                           "not objective %s", ob ? ob->name : "?");
        return;
    }
    rx_diffusion_setup u = {0};
    const rx_component *model = NULL;
    u.schedule_params = params_of(cfg, "schedule", &u.schedule);
    u.objective_params = params_of(cfg, "objective", &u.objective);
    u.sampler_params = params_of(cfg, "reflow.sampler", &u.sampler);
    params_of(cfg, "reflow.guidance", &u.guidance);
    const rx_params *model_params = params_of(cfg, "model", &model);
    u.model_num_classes = has(model_params, "num_classes") ? (int)rx_param_int(model_params, "num_classes") : 0;
    char msg[1024];
    if (rx_diffusion_check(cfg->table, &u, msg, sizeof msg) == RX_OK) return;
    rx_clear_error();
    /* "sampler.steps: ..." is about reflow.sampler.steps here */
    char key[160];
    snprintf(key, sizeof key, "reflow.%.*s", (int)strcspn(msg, ":"), msg);
    const rx_cfg_node *at = rx_cfg_path(cfg->root, key);
    if (!at) at = rx_cfg_path(cfg->root, "reflow");
    rx_config_error_at(errs, at, "reflow.%s", msg);
}

/* sample.model names a model this experiment makes */
static void check_reflow(const rx_config *cfg, rx_config_errors *errs) {
    const rx_params *reflow = params_of(cfg, "reflow", NULL), *sample = params_of(cfg, "sample", NULL);
    if (reflow) check_reflow_section(cfg, errs);
    if (!sample || !has(sample, "model")) return;
    const char *name = rx_param_str(sample, "model");
    const int rounds = reflow ? (int)rx_param_int(reflow, "rounds") : 0;
    const int distill = reflow && rx_param_int(reflow, "distill_steps") > 0;
    if (rx_reflow_model_index(name, rounds, distill) >= 0) return;
    char valid[256] = "teacher";
    size_t len = strlen(valid);
    for (int k = 1; k <= rounds && len < sizeof valid; k++) len += snprintf(valid + len, sizeof valid - len, ", reflow%d", k);
    if (distill && len < sizeof valid) snprintf(valid + len, sizeof valid - len, ", distill");
    rx_config_error_at(errs, rx_cfg_path(cfg->root, "sample.model"),
                       "sample.model: '%s' is not a model of this experiment; expected one of: %s%s", name, valid,
                       reflow ? (distill || strcmp(name, "distill") ? "" : " (distill needs reflow.distill_steps > 0)")
                              : " (reflowed and distilled models need a reflow section)");
}

/* every cross-section check, in the order they run */
const rx_validate_hook rx_validate_hooks[] = {
    check_diffusion,
    check_eval,
    check_reflow,
    NULL,
};
