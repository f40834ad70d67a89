/* component.h — what a registered component is: data, not code paths.
 *
 * Each component file defines one descriptor, e.g. in src/diffusion/sampler_ddim.c:
 *
 *     const rx_component rx_comp_sampler_ddim = {
 *         RX_KIND_SAMPLER, "ddim", "DDIM (Song et al. 2021); eta=0 is deterministic",
 *         rx_ddim_params, &rx_ddim_impl };
 *
 * and src/registry/components.def names it on one line, RX_COMPONENT(sampler_ddim). That
 * line is the only list: the registry table, the extern declarations, `runexp list`, the
 * config checker and docs/components.md are all generated from it.
 * `impl` points to the kind's own interface struct (rx_sampler_impl, rx_dataset_impl, ...),
 * declared by the layer that defines that kind; the registry never looks inside it.
 * What other code needs to know about a component (a schedule's kind, a block's place in
 * the network) is a field of its impl or `role`, never a comparison of names. */
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
    const char          *role;     /* a sub-kind, for kinds whose members are not all
                                      interchangeable (blocks: "unet_down", "unet_mid",
                                      "unet_up", "dit"); NULL otherwise                  */
} rx_component;

/* Lookups into the one table, for code below the registry layer (a U-Net finding its block
 * types, the diffusion checks listing samplers). Declared here so that lower layers need not
 * include registry/; defined by src/registry/registry.c. */
extern const rx_component *const rx_registry_components[];   /* NULL-terminated */
/* By config name or alias; NULL when absent. */
const rx_component *rx_registry_find(rx_kind kind, const char *name);
const rx_component *rx_registry_find_in(const rx_component *const *table, rx_kind kind, const char *name);

/* Parameter choices drawn from the table: a choice list written "@kind/role" (e.g.
 * "@block/unet_down") means the names of the registered components of that kind and role,
 * so a new block is accepted by the U-Net's parameters without editing them. Returns the
 * expansion "DownBlock2D|AttnDownBlock2D" (static storage, built once per reference), or
 * `choices` itself when it is not a reference; "" for a reference that matches nothing. */
const char *rx_registry_choices(const char *choices);

#endif
