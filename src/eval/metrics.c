/* metrics.c — the registered metrics (kind `metric`): parameter tables, compute
 * functions over rx_metric_input, and metric naming. The math lives in frechet.c,
 * kid.c and classify.c. */
#include "core/component.h"
#include "eval/metric.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "eval/classify.h"
#include "eval/frechet.h"
#include "eval/kid.h"

rx_status rx_metric_name(const char *metric, const char *extractor, const char *weights_hash, char *out, size_t n) {
    if (!metric || !*metric || !extractor || !*extractor)
        return rx_fail(RX_ERR_ARG, "metric name: metric and extractor names must not be empty");
    // only the real FID network with the real weights may use the established names
    const char *official = RX_FID_INCEPTION_OFFICIAL_HASH;
    const int is_official = official[0] && weights_hash && !strcasecmp(weights_hash, official) &&
                            !strcmp(extractor, RX_FID_INCEPTION_EXTRACTOR);
    int len;
    if (is_official && !strcmp(metric, "fd")) len = snprintf(out, n, "fid");
    else if (is_official && !strcmp(metric, "kid")) len = snprintf(out, n, "kid");
    else len = snprintf(out, n, "%s_%s", metric, extractor);
    if (len < 0 || (size_t)len >= n)
        return rx_fail(RX_ERR_ARG, "metric name: '%s_%s' does not fit in %zu bytes", metric, extractor, n);
    return RX_OK;
}

// ---------------------------------------------------------------------------
// fd

static rx_status fd_compute(const rx_params *p, const rx_metric_input *in, rx_metric_value *out) {
    if (!in->gen.stats || !in->ref.stats)
        return rx_fail(RX_ERR_ARG, "metric fd: needs feature statistics of the generated and reference sets");
    *out = (rx_metric_value){0};
    return rx_featstats_frechet(in->gen.stats, in->ref.stats, &out->value);
}

static const rx_param_spec fd_params[] = {{0}};
static const rx_metric_impl fd_impl = {"fd", RX_METRIC_NEEDS_STATS, 0, fd_compute};
const rx_component rx_comp_metric_fd = {
    RX_KIND_METRIC, "fd",
    "Fréchet distance between Gaussians fitted to the features (FID only with the official Inception weights)",
    fd_params, &fd_impl, NULL};

// ---------------------------------------------------------------------------
// kid

static rx_status kid_compute(const rx_params *p, const rx_metric_input *in, rx_metric_value *out) {
    if (!in->gen.features || !in->ref.features)
        return rx_fail(RX_ERR_ARG, "metric kid: needs the features of the generated and reference sets");
    rx_kid_options o = rx_kid_defaults();
    o.subsets = (int)rx_param_int(p, "subsets");
    o.subset_size = (int)rx_param_int(p, "subset_size");
    o.degree = (int)rx_param_int(p, "degree");
    o.gamma = rx_param_is_null(p, "gamma") ? 0.0 : rx_param_float(p, "gamma");
    o.coef = rx_param_float(p, "coef");
    o.seed = (uint64_t)rx_param_int(p, "seed");
    *out = (rx_metric_value){.has_std = 1};
    // reference first, as torchmetrics' (real, fake); the estimate is symmetric anyway
    return rx_kid(in->ref.features, in->ref.n, in->gen.features, in->gen.n, in->feat_dim, &o, &out->value, &out->std);
}

static const rx_param_spec kid_params[] = {
    {"subsets", RX_P_INT, "100", 1, 100000, NULL, "random subsets the estimate is averaged over (torchmetrics: 100)"},
    {"subset_size", RX_P_INT, "1000", 2, 1e8, NULL,
     "rows drawn from each set per subset, capped by both set sizes (torchmetrics: 1000)"},
    {"degree", RX_P_INT, "3", 1, 16, NULL, "degree of the polynomial kernel (gamma x.y + coef)^degree"},
    {"gamma", RX_P_FLOAT, "null", 1e-30, 1e30, NULL, "kernel scale; null = 1 / feature dimension"},
    {"coef", RX_P_FLOAT, "1.0", 0, 1e30, NULL, "kernel offset"},
    {"seed", RX_P_INT, "0", 0, 9007199254740991.0, NULL,
     "seed of the subset draws (Philox), fixed so that runs are compared on the same subsets"},
    {0},
};
static const rx_metric_impl kid_impl = {"kid", RX_METRIC_NEEDS_FEATURES, 0, kid_compute};
const rx_component rx_comp_metric_kid = {
    RX_KIND_METRIC, "kid", "Kernel Inception Distance: unbiased MMD^2, cubic polynomial kernel, mean and std over subsets",
    kid_params, &kid_impl, NULL};

// ---------------------------------------------------------------------------
// class_accuracy

static rx_status class_accuracy_compute(const rx_params *p, const rx_metric_input *in, rx_metric_value *out) {
    if (!in->gen.logits || !in->gen.labels)
        return rx_fail(RX_ERR_ARG, "metric class_accuracy: needs classifier logits and the labels the images were generated for");
    *out = (rx_metric_value){0};
    return rx_class_accuracy(in->gen.logits, in->gen.n, in->num_classes, in->gen.labels, &out->value);
}

static const rx_param_spec class_accuracy_params[] = {{0}};
static const rx_metric_impl class_accuracy_impl = {
    "class_accuracy", RX_METRIC_NEEDS_LOGITS | RX_METRIC_NEEDS_LABELS, 1, class_accuracy_compute};
const rx_component rx_comp_metric_class_accuracy = {
    RX_KIND_METRIC, "class_accuracy",
    "share of generated images the classifier assigns to the class they were generated for",
    class_accuracy_params, &class_accuracy_impl, NULL};

// ---------------------------------------------------------------------------
// classifier_score

static rx_status classifier_score_compute(const rx_params *p, const rx_metric_input *in, rx_metric_value *out) {
    if (!in->gen.logits) return rx_fail(RX_ERR_ARG, "metric classifier_score: needs classifier logits");
    const int splits = (int)rx_param_int(p, "splits");
    *out = (rx_metric_value){.has_std = splits > 1};
    return rx_classifier_score(in->gen.logits, in->gen.n, in->num_classes, splits, &out->value, &out->std);
}

static const rx_param_spec classifier_score_params[] = {
    {"splits", RX_P_INT, "1", 1, 1000, NULL, "score consecutive parts separately and report mean and std (IS uses 10)"},
    {0},
};
static const rx_metric_impl classifier_score_impl = {
    "classifier_score", RX_METRIC_NEEDS_LOGITS, 1, classifier_score_compute};
const rx_component rx_comp_metric_classifier_score = {
    RX_KIND_METRIC, "classifier_score",
    "Inception-Score formula exp(E KL(p(y|x) || p(y))) with the feature extractor's classifier",
    classifier_score_params, &classifier_score_impl, NULL};
