/* lr_schedule.c — learning-rate schedules: lr = base_lr * factor(step).
 *
 * `step` counts the updates already taken (0 on the first update), as transformers'
 * LambdaLR stepped once per update does, so these reproduce diffusers' training scripts:
 *   constant        factor = 1                                   (get_constant_schedule)
 *   linear_warmup   factor = min(1, step / warmup)               (get_constant_schedule_with_warmup)
 *   cosine          warmup as above, then from base_lr down to min_lr on half a cosine
 *                   (get_cosine_with_min_lr_schedule_with_warmup, num_cycles 0.5):
 *                   lr = min_lr + (base_lr - min_lr) * 0.5 (1 + cos(pi * progress)),
 *                   progress = (step - warmup) / max(1, total - warmup), held at 1 after the end
 * Warmup therefore starts at lr 0 on the first update, as in diffusers. */
#include "core/component.h"
#include "autograd/optim.h"
#include <math.h>

/* step / warmup during warmup, 1 after (warmup 0: always 1) */
static double warmup_factor(int64_t step, int64_t warmup) {
    return step < warmup ? (double)step / (double)warmup : 1.0;
}

static float lr_constant(const rx_params *p, float base_lr, int64_t step, int64_t total_steps) { return base_lr; }

static float lr_linear_warmup(const rx_params *p, float base_lr, int64_t step, int64_t total_steps) {
    return (float)(base_lr * warmup_factor(step, rx_param_int(p, "warmup_steps")));
}

static float lr_cosine(const rx_params *p, float base_lr, int64_t step, int64_t total_steps) {
    const int64_t warmup = rx_param_int(p, "warmup_steps");
    const double min_lr = rx_param_float(p, "min_lr");
    if (step < warmup) return (float)(base_lr * warmup_factor(step, warmup));
    const int64_t span = total_steps - warmup > 1 ? total_steps - warmup : 1;
    double progress = (double)(step - warmup) / (double)span;
    if (progress > 1.0) progress = 1.0;   // past the planned end: stay at min_lr (transformers would rise again)
    return (float)(min_lr + (base_lr - min_lr) * 0.5 * (1.0 + cos(M_PI * progress)));
}

const rx_param_spec rx_lr_constant_params[] = {{0}};

const rx_param_spec rx_lr_linear_warmup_params[] = {
    {"warmup_steps", RX_P_INT, "500", 0, 1e12, NULL, "updates over which lr rises linearly from 0 to the optimizer's lr"},
    {0},
};

const rx_param_spec rx_lr_cosine_params[] = {
    {"warmup_steps", RX_P_INT, "0", 0, 1e12, NULL, "linear warmup from 0 before the cosine decay"},
    {"min_lr", RX_P_FLOAT, "0.0", 0, 10, NULL, "learning rate at the end of training"},
    {0},
};

static const rx_lr_schedule_impl constant_impl = {lr_constant};
static const rx_lr_schedule_impl linear_warmup_impl = {lr_linear_warmup};
static const rx_lr_schedule_impl cosine_impl = {lr_cosine};

const rx_component rx_comp_lr_schedule_constant = {
    RX_KIND_LR_SCHEDULE, "constant", "the optimizer's lr at every step", rx_lr_constant_params, &constant_impl, NULL,
};
const rx_component rx_comp_lr_schedule_linear_warmup = {
    RX_KIND_LR_SCHEDULE, "linear_warmup", "linear warmup from 0 over warmup_steps, then constant (diffusers constant_with_warmup)",
    rx_lr_linear_warmup_params, &linear_warmup_impl, "constant_with_warmup",
};
const rx_component rx_comp_lr_schedule_cosine = {
    RX_KIND_LR_SCHEDULE, "cosine", "linear warmup, then half a cosine from lr down to min_lr at the last step",
    rx_lr_cosine_params, &cosine_impl, NULL,
};
