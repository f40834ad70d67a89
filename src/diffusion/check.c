/* check.c — config-time consistency rules across schedule, objective, sampler and guidance
 * (the "Bad input" list): each broken rule is one clear RX_ERR_CONFIG naming the key.
 * A component's family (discrete diffusion or flow matching) is a property of its impl. */
#include "diffusion/diffusion.h"

#include <stdarg.h>
#include <string.h>

static int has_param(const rx_params *p, const char *name) {
    for (int k = 0; p && k < p->n; k++)
        if (strcmp(p->spec[k].name, name) == 0) return 1;
    return 0;
}

int rx_schedule_kind_of(const rx_component *c) {
    if (!c || !c->impl) return 0;
    switch (c->kind) {
    case RX_KIND_SCHEDULE: return ((const rx_schedule_impl *)c->impl)->schedule_kind;
    case RX_KIND_OBJECTIVE: return ((const rx_objective_impl *)c->impl)->schedule_kind;
    case RX_KIND_SAMPLER: return ((const rx_sampler_impl *)c->impl)->schedule_kind;
    default: return 0;
    }
}

static const char *kind_words(int k) {
    return k == RX_SCHED_FLOW ? "flow-matching" : "diffusion (noise/v/x0-prediction)";
}

// "flow_euler or flow_heun": the registered components of `kind` in family `family`.
static const char *fitting_names(const rx_component *const *table, rx_kind kind, int family, char *buf, size_t n) {
    const char *names[64];
    int count = 0;
    for (int i = 0; table && table[i] && count < 64; i++)
        if (table[i]->kind == kind && rx_schedule_kind_of(table[i]) == family) names[count++] = table[i]->name;
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < count && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i == 0 ? "" : i == count - 1 ? " or " : ", ", names[i]);
    return buf;
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

// schedule, objective and sampler all of one family
static rx_status check_families(const rx_component *const *table, const rx_diffusion_setup *u, char *msg, size_t n) {
    const rx_component *sc = u->schedule, *ob = u->objective, *sa = u->sampler;
    const int k_sc = rx_schedule_kind_of(sc), k_ob = rx_schedule_kind_of(ob), k_sa = rx_schedule_kind_of(sa);
    char fits[256];
    if (k_sa && k_ob && k_sa != k_ob)
        return config_error(msg, n, "sampler.name: %s is a %s sampler, but objective %s trains a %s model; use %s",
                            sa->name, kind_words(k_sa), ob->name, kind_words(k_ob),
                            fitting_names(table, RX_KIND_SAMPLER, k_ob, fits, sizeof fits));
    if (k_sc && k_ob && k_sc != k_ob)
        return config_error(msg, n, "schedule.name: schedule %s does not fit objective %s; use %s %s", sc->name,
                            ob->name, k_ob == RX_SCHED_FLOW ? "schedule" : "a beta schedule:",
                            fitting_names(table, RX_KIND_SCHEDULE, k_ob, fits, sizeof fits));
    if (k_sc && k_sa && k_sc != k_sa)
        return config_error(msg, n, "sampler.name: %s is a %s sampler, but schedule %s is %s", sa->name,
                            kind_words(k_sa), sc->name, kind_words(k_sc));
    return RX_OK;
}

rx_status rx_diffusion_check(const rx_component *const *table, const rx_diffusion_setup *u, char *msg, size_t n) {
    if (msg && n) msg[0] = 0;
    if (rx_schedule_kind_of(u->objective) == 0 && u->objective) return RX_OK;   // not a diffusion objective
    RX_TRY(check_families(table, u, msg, n));

    const rx_params *schedule = u->schedule_params, *objective = u->objective_params, *sampler = u->sampler_params;
    if (sampler && has_param(sampler, "steps") && schedule && has_param(schedule, "num_train_timesteps") &&
        rx_schedule_kind_of(u->sampler) == RX_SCHED_DISCRETE) {
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
    const rx_guidance_impl *guidance = u->guidance ? u->guidance->impl : NULL;
    if (guidance && guidance->needs_class_labels && u->model_num_classes <= 0)
        return config_error(msg, n,
                            "guidance.name: %s needs a class-conditional model, but the model is unconditional "
                            "(num_classes = %d); use guidance none or give the model num_classes",
                            u->guidance->name, u->model_num_classes);
    return RX_OK;
}
