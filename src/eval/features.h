/* features.h — feature extractors (kind `features`): images -> feature vectors (and class
 * logits for classifiers), for Fréchet distance, KID and class-conditional metrics.
 *
 * Metrics are named after the extractor that produced them (`fd_mnist_classifier`); only
 * `inception_fid` with the official pytorch-fid weights may produce a metric called `fid`. */
#ifndef RX_FEATURES_H
#define RX_FEATURES_H

#include "core/component.h"
#include "core/tensor.h"

typedef struct rx_feature_extractor {
    char name[64];            /* used in metric names, e.g. "mnist_classifier"        */
    char weights_hash[17];    /* xxHash64 of the weights file: recorded, keys caches  */
    char weights_path[1024];
    int feat_dim;             /* features per image                                   */
    int num_classes;          /* logits per image (0: no logits)                      */
    int in_channels, size;    /* what the network expects; inputs are resized/converted */
    void *priv;
} rx_feature_extractor;

typedef struct rx_features_impl {
    rx_status (*create)(rx_ctx *c, const rx_params *p, rx_feature_extractor **out);
    /* images [n,C,H,W] in [-1,1] -> features [n,feat_dim], logits [n,num_classes] (NULL: not wanted) */
    rx_status (*extract)(rx_ctx *c, rx_feature_extractor *fx, const float *images, int n, int C, int H, int W,
                         float *features, float *logits);
    void (*destroy)(rx_feature_extractor *fx);
} rx_features_impl;

/* xxHash64 of a file's bytes as 16 hex digits */
rx_status rx_file_hash(const char *path, char out[17]);

#endif
