/* components.h — every registered component of the eval layer, for the registry table.
 *
 * RX_EVAL_COMPONENTS(X) expands X(symbol) once per component; each `impl` is an
 * rx_metric_impl (eval/metric.h). */
#ifndef RX_EVAL_COMPONENTS_H
#define RX_EVAL_COMPONENTS_H

#include "core/component.h"

extern const rx_component rx_comp_metric_fd;
extern const rx_component rx_comp_metric_kid;
extern const rx_component rx_comp_metric_class_accuracy;
extern const rx_component rx_comp_metric_classifier_score;

#define RX_EVAL_COMPONENTS(X)            \
    X(rx_comp_metric_fd)                 \
    X(rx_comp_metric_kid)                \
    X(rx_comp_metric_class_accuracy)     \
    X(rx_comp_metric_classifier_score)

#endif
