/* check.c — config-time consistency rules across schedule, objective, sampler and guidance
 * (the "Bad input" list): each broken rule is one clear RX_ERR_CONFIG naming the key. */
#include "diffusion/diffusion.h"
#include "diffusion/components.h"

#include <stdarg.h>
#include <string.h>

static const rx_component *const all_components[] = {
#define X(c) &c,
    RX_DIFFUSION_COMPONENTS(X)
#undef X
};

// name or one of the '|'-separated aliases
static int name_matches(const rx_component *c, const char *name) {
    if (strcmp(c->name, name) == 0) return 1;
    size_t len = strlen(name);
    for (const char *a = c->aliases; a && *a;) {
        const char *end = strchr(a, '|');
        size_t al = end ? (size_t)(end - a) : strlen(a);
        if (al == len && strncmp(a, name, len) == 0) return 1;
        a = end ? end + 1 : NULL;
    }
    return 0;
}

static const rx_component *find(rx_kind kind, const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof all_components / sizeof all_components[0]; i++)
        if (all_components[i]->kind == kind && name_matches(all_components[i], name)) return all_components[i];
    return NULL;
}

static int has_param(const rx_params *p, const char *name) {
    for (int k = 0; p && k < p->n; k++)
        if (strcmp(p->spec[k].name, name) == 0) return 1;
    return 0;
}

// RX_SCHED_* of a component, 0 if unknown
static int schedule_kind_of(const rx_component *c) {
    if (!c) return 0;
    switch (c->kind) {
    case RX_KIND_SCHEDULE: return strcmp(c->name, "flow") == 0 ? RX_SCHED_FLOW : RX_SCHED_DISCRETE;
    case RX_KIND_OBJECTIVE: return strcmp(c->name, "flow_matching") == 0 ? RX_SCHED_FLOW : RX_SCHED_DISCRETE;
    case RX_KIND_SAMPLER: return ((const rx_sampler_impl *)c->impl)->schedule_kind;
    default: return 0;
    }
}

static const char *kind_words(int k) {
    return k == RX_SCHED_FLOW ? "flow-matching" : "diffusion (noise/v/x0-prediction)";
}

static rx_status config_error(char *msg, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static rx_status config_error(char *msg, size_t n, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (msg && n) snprintf(msg, n, "%s", buf);
    return rx_fail(RX_ERR_CONFIG, "%s", buf);
}

rx_status rx_diffusion_check(const rx_params *schedule, const rx_params *objective, const rx_params *sampler,
                             const char *sampler_name, const char *objective_name, const char *guidance_name,
                             int model_num_classes, char *msg, size_t n) {
    if (msg && n) msg[0] = 0;
    const char *schedule_name = NULL;
    if (schedule && schedule->component) {
        const char *slash = strchr(schedule->component, '/');
        schedule_name = slash ? slash + 1 : schedule->component;
    }
    const rx_component *sc = find(RX_KIND_SCHEDULE, schedule_name), *ob = find(RX_KIND_OBJECTIVE, objective_name),
                       *sa = find(RX_KIND_SAMPLER, sampler_name);
    const int k_sc = schedule_kind_of(sc), k_ob = schedule_kind_of(ob), k_sa = schedule_kind_of(sa);

    if (k_sa && k_ob && k_sa != k_ob)
        return config_error(msg, n, "sampler.name: %s is a %s sampler, but objective %s trains a %s model; use %s",
                            sa->name, kind_words(k_sa), ob->name, kind_words(k_ob),
                            k_ob == RX_SCHED_FLOW ? "flow_euler or flow_heun"
                                                  : "ddpm, ddim, euler, euler_ancestral, heun or dpmpp_2m");
    if (k_sc && k_ob && k_sc != k_ob)
        return config_error(msg, n, "schedule.name: schedule %s does not fit objective %s; use %s", sc->name, ob->name,
                            k_ob == RX_SCHED_FLOW ? "schedule flow" : "a beta schedule (linear, scaled_linear, cosine, sigmoid)");
    if (k_sc && k_sa && k_sc != k_sa)
        return config_error(msg, n, "sampler.name: %s is a %s sampler, but schedule %s is %s", sa->name,
                            kind_words(k_sa), sc->name, kind_words(k_sc));

    if (sampler && has_param(sampler, "steps") && schedule && has_param(schedule, "num_train_timesteps") &&
        k_sa == RX_SCHED_DISCRETE) {
        int64_t steps = rx_param_int(sampler, "steps"), T = rx_param_int(schedule, "num_train_timesteps");
        if (steps > T)
            return config_error(msg, n, "sampler.steps: %lld is more than schedule.num_train_timesteps = %lld",
                                (long long)steps, (long long)T);
    }
    if (sampler && has_param(sampler, "eta")) {
        double eta = rx_param_float(sampler, "eta");
        if (!(eta >= 0 && eta <= 1))
            return config_error(msg, n, "sampler.eta: %g is outside [0, 1] (0 = DDIM, 1 = DDPM-like noise)", eta);
    }
    if (schedule && has_param(schedule, "rescale_betas_zero_snr") && rx_param_bool(schedule, "rescale_betas_zero_snr") &&
        objective && has_param(objective, "prediction_type") &&
        strcmp(rx_param_str(objective, "prediction_type"), "epsilon") == 0)
        return config_error(msg, n,
                            "objective.prediction_type: epsilon is undefined at zero terminal SNR (x0 = (x - eps)/0 at "
                            "the last timestep); use v_prediction with schedule.rescale_betas_zero_snr (Lin et al. 2023)");
    if (guidance_name && strcmp(guidance_name, "none") != 0 && model_num_classes <= 0)
        return config_error(msg, n,
                            "guidance.name: %s needs a class-conditional model, but the model is unconditional "
                            "(num_classes = %d); use guidance none or give the model num_classes",
                            guidance_name, model_num_classes);
    return RX_OK;
}
