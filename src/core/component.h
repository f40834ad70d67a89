/* component.h — what a registered component is: data, not code paths.
 *
 * Each component file defines one descriptor, e.g. in src/diffusion/sampler_ddim.c:
 *
 *     const rx_component rx_comp_sampler_ddim = {
 *         RX_KIND_SAMPLER, "ddim", "DDIM (Song et al. 2021); eta=0 is deterministic",
 *         rx_ddim_params, &rx_ddim_impl };
 *
 * and src/registry/registry.c lists it in its one table (one line per component).
 * `impl` points to the kind's own interface struct (rx_sampler_impl, rx_dataset_impl, ...),
 * declared by the layer that defines that kind; the registry never looks inside it. */
#ifndef RX_COMPONENT_H
#define RX_COMPONENT_H

#include "params.h"

#define RX_KIND_LIST(X) \
    X(DATASET, "dataset", "datasets")          \
    X(TRANSFORM, "transform", "transforms")    \
    X(BLOCK, "block", "blocks")                \
    X(MODEL, "model", "models")                \
    X(SCHEDULE, "schedule", "schedules")       \
    X(OBJECTIVE, "objective", "objectives")    \
    X(SAMPLER, "sampler", "samplers")          \
    X(GUIDANCE, "guidance", "guidances")       \
    X(OPTIMIZER, "optimizer", "optimizers")    \
    X(LR_SCHEDULE, "lr_schedule", "lr_schedules") \
    X(FEATURES, "features", "features")        \
    X(METRIC, "metric", "metrics")

typedef enum {
#define X(id, name, plural) RX_KIND_##id,
    RX_KIND_LIST(X)
#undef X
    RX_KIND_COUNT
} rx_kind;

typedef struct rx_component {
    rx_kind              kind;
    const char          *name;     /* config name, e.g. "ddim"                          */
    const char          *help;     /* one line                                          */
    const rx_param_spec *params;   /* {0}-terminated; the config keys besides `name`    */
    const void          *impl;     /* kind-specific interface (may be NULL for data-only kinds) */
    const char          *aliases;  /* "cosine|..." other accepted names, or NULL         */
} rx_component;

#endif
