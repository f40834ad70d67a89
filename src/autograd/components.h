/* components.h — the registered components defined in src/autograd (optimizers and
 * learning-rate schedules); the registry's table lists them. */
#ifndef RX_AUTOGRAD_COMPONENTS_H
#define RX_AUTOGRAD_COMPONENTS_H

#include "core/component.h"

extern const rx_component rx_comp_optimizer_adamw;
extern const rx_component rx_comp_lr_schedule_constant;
extern const rx_component rx_comp_lr_schedule_linear_warmup;
extern const rx_component rx_comp_lr_schedule_cosine;

#endif
