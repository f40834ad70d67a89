/* classify.c — the `classify` objective: supervised cross-entropy on the dataset's labels.
 * It trains the feature networks the evaluation uses (resnet_classifier); with it, the
 * train stage feeds the transformed images and their labels straight to the model, and
 * the eval stage reports the test-split accuracy. */
#include "core/component.h"

static const rx_param_spec classify_params[] = {{0}};

const rx_component rx_comp_objective_classify = {
    RX_KIND_OBJECTIVE, "classify",
    "cross-entropy classification of the dataset's labels (for training feature networks)",
    classify_params, NULL, NULL};
