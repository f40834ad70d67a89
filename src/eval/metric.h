/* metric.h — the interface of a registered metric (kind `metric`) and metric naming.
 *
 * The runner extracts features (and, for a classifier, logits) of the generated images
 * and of the reference split, then calls each configured metric's compute() with what
 * its `needs` asks for. FD reads only streaming statistics, so reference statistics can
 * come from the cache (featstats file) without keeping reference features around. */
#ifndef RX_EVAL_METRIC_H
#define RX_EVAL_METRIC_H

#include <stddef.h>
#include <stdint.h>
#include "core/params.h"
#include "core/status.h"
#include "eval/featstats.h"

/* What a metric reads; the runner provides at least these fields. */
enum {
    RX_METRIC_NEEDS_STATS     = 1 << 0,  /* gen.stats and ref.stats (finished)              */
    RX_METRIC_NEEDS_FEATURES  = 1 << 1,  /* gen.features and ref.features [n, feat_dim]     */
    RX_METRIC_NEEDS_LOGITS    = 1 << 2,  /* gen.logits [n, num_classes]                     */
    RX_METRIC_NEEDS_LABELS    = 1 << 3,  /* gen.labels [n]: the class each image was made for */
};

/* One image set (generated or reference); unused fields may be NULL / 0. */
typedef struct rx_metric_set {
    int64_t             n;         /* rows in features / logits / labels */
    const float        *features;  /* [n, feat_dim]                      */
    const rx_featstats *stats;     /* statistics of the features         */
    const float        *logits;    /* [n, num_classes]                   */
    const int          *labels;    /* [n]                                */
} rx_metric_set;

typedef struct rx_metric_input {
    rx_metric_set gen, ref;
    int feat_dim;
    int num_classes;
} rx_metric_input;

typedef struct rx_metric_value {
    double value;
    double std;       /* spread over subsets / splits; valid when has_std */
    int    has_std;
} rx_metric_value;

typedef struct rx_metric_impl {
    const char *short_name;        /* "fd", "kid", ...: the stem of rx_metric_name          */
    unsigned    needs;             /* RX_METRIC_NEEDS_* bits                                 */
    int         higher_is_better;  /* for reports and sweeps: 0 for distances                */
    rx_status (*compute)(const rx_params *params, const rx_metric_input *in, rx_metric_value *out);
} rx_metric_impl;

/* Hash of the official pytorch-fid Inception weights (pt_inception-2015-12-05-6726825d.pth
 * converted to safetensors), as the feature extractor reports its weights hash. Empty: no
 * converted official weights have been hashed for this build, so no metric is ever named
 * "fid". */
#define RX_FID_INCEPTION_OFFICIAL_HASH ""
#define RX_FID_INCEPTION_EXTRACTOR "inception_fid"

/* The name a metric is reported under. "fd" and "kid" on the extractor "inception_fid"
 * with the official weights hash are "fid" and "kid"; everything else is named after its
 * extractor: "fd_cifar10_classifier", "kid_inception_fid" (other weights),
 * "class_accuracy_cifar10_classifier". weights_hash may be NULL (= not official).
 * RX_ERR_ARG if a name is empty or out (n bytes) is too small. */
rx_status rx_metric_name(const char *metric, const char *extractor, const char *weights_hash, char *out, size_t n);

#endif
