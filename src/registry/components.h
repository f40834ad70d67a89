/* components.h — `extern const rx_component rx_comp_<kind>_<name>;` for every line of
 * components.def, for code that names a component directly (tests, mostly). */
#ifndef RX_REGISTRY_COMPONENTS_H
#define RX_REGISTRY_COMPONENTS_H

#include "core/component.h"

#define RX_COMPONENT(sym) extern const rx_component rx_comp_##sym;
#include "registry/components.def"
#undef RX_COMPONENT

#endif
