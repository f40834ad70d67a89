/* components.h — every registered component of the diffusion layer, for the registry table.
 *
 * RX_DIFFUSION_COMPONENTS(X) expands X(symbol) once per component, e.g.
 *     #define X(c) &c,
 *     RX_DIFFUSION_COMPONENTS(X)
 *     #undef X
 * Each symbol's `impl` is an rx_schedule_impl / rx_objective_impl / rx_sampler_impl /
 * rx_guidance_impl (diffusion/diffusion.h) according to its kind. */
#ifndef RX_DIFFUSION_COMPONENTS_H
#define RX_DIFFUSION_COMPONENTS_H

#include "core/component.h"

#define RX_DIFFUSION_COMPONENTS(X)            \
    X(rx_comp_schedule_linear)                \
    X(rx_comp_schedule_scaled_linear)         \
    X(rx_comp_schedule_squaredcos_cap_v2)     \
    X(rx_comp_schedule_sigmoid)               \
    X(rx_comp_schedule_flow)                  \
    X(rx_comp_objective_ddpm)                 \
    X(rx_comp_objective_flow_matching)        \
    X(rx_comp_sampler_ddpm)                   \
    X(rx_comp_sampler_ddim)                   \
    X(rx_comp_sampler_euler)                  \
    X(rx_comp_sampler_euler_ancestral)        \
    X(rx_comp_sampler_heun)                   \
    X(rx_comp_sampler_dpmpp_2m)               \
    X(rx_comp_sampler_flow_euler)             \
    X(rx_comp_sampler_flow_heun)              \
    X(rx_comp_guidance_none)                  \
    X(rx_comp_guidance_cfg)

#define RX_DIFFUSION_DECLARE_(c) extern const rx_component c;
RX_DIFFUSION_COMPONENTS(RX_DIFFUSION_DECLARE_)
#undef RX_DIFFUSION_DECLARE_

#endif
