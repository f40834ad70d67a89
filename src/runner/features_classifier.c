/* features_classifier.c — the `classifier` feature extractor: a resnet_classifier trained
 * by this pipeline (experiments/features/), loaded from its checkpoint. The network
 * is rebuilt from the config stored in the checkpoint's metadata; the EMA weights are used
 * when present. Generated images of another size are resized (antialiased bilinear, as the
 * data transforms do) to the classifier's input size. */
#include "eval/features.h"
#include "registry/registry.h"
#include "runner/checkpoint.h"
#include "blocks/model.h"
#include "data/transform.h"
#include "io/safetensors.h"
#include <string.h>

typedef struct cls_fx {
    rx_model *model;
    rx_config *cfg;
} cls_fx;

static const rx_param_spec classifier_features_params[] = {
    {"weights", RX_P_PATH, NULL, RX_NO_RANGE, NULL, "classifier checkpoint (.safetensors written by a runexp run)"},
    {"label", RX_P_STRING, "null", RX_NO_RANGE, NULL, "extractor name used in metric names (fd_<label>); null = the file's stem"},
    {0}
};

static void fx_destroy(rx_feature_extractor *fx) {
    if (!fx) return;
    cls_fx *p = fx->priv;
    if (p) { rx_model_destroy(p->model); rx_config_free(p->cfg); free(p); }
    free(fx);
}

/* A resnet_classifier checkpoint written by a runexp run: the network rebuilt from the config in
 * the file's metadata, then its weights (the EMA's when the file has them). The config is kept
 * with the model (the model's parameters point into it); the caller frees both. Shared by the
 * feature extractor and the vae objective's perceptual term. */
rx_status rx_classifier_load(rx_ctx *c, const char *path, rx_model **model, rx_config **cfg) {
    *model = NULL;
    *cfg = NULL;
    rx_st_file *f = NULL;
    rx_status s = rx_st_open(path, &f);
    const char *yaml = s ? NULL : rx_st_metadata(f, "config");
    if (!s && !yaml) s = rx_fail(RX_ERR_FORMAT, "features/classifier: %s has no runexp config in its metadata", path);
    rx_config_errors errs = {0};
    rx_cfg_node *tree = NULL;
    if (!s) s = rx_yaml_parse_string(yaml, strlen(yaml), path, &tree, &errs);
    if (f) rx_st_close(f);
    if (!s) s = rx_config_validate(tree, NULL, NULL, cfg, &errs);
    if (s && errs.n) s = rx_fail(RX_ERR_FORMAT, "features/classifier: the config inside %s is invalid: %s", path, errs.items[0].message);
    rx_config_errors_clear(&errs);
    free(errs.items);
    const rx_component *mc;
    const rx_params *mp;
    if (!s) s = rx_config_section_params(*cfg, "model", &mc, &mp);
    if (!s) s = rx_model_create(c, mc, mp, 0, model);
    if (!s && !(*model)->impl->features) s = rx_fail(RX_ERR_CONFIG, "features/classifier: %s holds a %s, not a classifier", path, mc->name);
    if (!s) s = rx_model_load_weights(c, *model, path, 1);
    if (s) {
        rx_model_destroy(*model);
        rx_config_free(*cfg);
        *model = NULL;
        *cfg = NULL;
    }
    return s;
}

static rx_status fx_create(rx_ctx *c, const rx_params *params, rx_feature_extractor **out) {
    const char *path = rx_param_str(params, "weights");
    rx_feature_extractor *fx = calloc(1, sizeof *fx);
    cls_fx *p = calloc(1, sizeof *p);
    if (!fx || !p) { free(fx); free(p); return rx_fail(RX_ERR_OOM, "features/classifier: out of memory"); }
    fx->priv = p;
    snprintf(fx->weights_path, sizeof fx->weights_path, "%s", path);
    const char *name = rx_param_is_null(params, "label") ? NULL : rx_param_str(params, "label");
    if (name) snprintf(fx->name, sizeof fx->name, "%s", name);
    else {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        snprintf(fx->name, sizeof fx->name, "%.*s", (int)strcspn(base, "."), base);
    }
    rx_status s = rx_classifier_load(c, path, &p->model, &p->cfg);
    if (!s) s = rx_file_hash(path, fx->weights_hash);
    if (s) { fx_destroy(fx); return s; }
    fx->num_classes = p->model->out_channels;
    fx->in_channels = p->model->in_channels;
    fx->size = p->model->sample_size;
    /* feature width = the last stage's width: run one image to learn it */
    int grad = c->grad_enabled;
    rx_set_grad_enabled(c, 0);
    rx_tensor *x = rx_zeros(c, RX_SHAPE(1, fx->in_channels, fx->size, fx->size));
    rx_tensor *y = p->model->impl->features(c, p->model, x);
    if (y) fx->feat_dim = (int)y->shape[1];
    s = y ? RX_OK : rx_ctx_status(c);
    rx_step_end(c);
    rx_set_grad_enabled(c, grad);
    if (s) { fx_destroy(fx); return s; }
    *out = fx;
    return RX_OK;
}

static rx_status fx_extract(rx_ctx *c, rx_feature_extractor *fx, const float *images, int n, int C, int H, int W,
                            float *features, float *logits) {
    cls_fx *p = fx->priv;
    if (C != fx->in_channels)
        return rx_fail(RX_ERR_SHAPE, "features/%s: images have %d channels, the classifier takes %d", fx->name, C, fx->in_channels);
    int S = fx->size;
    const float *in = images;
    float *resized = NULL;
    if (H != S || W != S) {   /* antialiased bilinear resize, per image */
        resized = malloc((size_t)n * C * S * S * sizeof *resized);
        float *tmp = malloc((size_t)C * H * (W > S ? W : S) * sizeof *tmp * 2);
        rx_status s = (resized && tmp) ? RX_OK : rx_fail(RX_ERR_OOM, "features: out of memory");
        for (int i = 0; i < n && !s; i++)
            s = rx_resize_bilinear_aa(images + (int64_t)i * C * H * W, C, H, W, resized + (int64_t)i * C * S * S, S, S, tmp);
        free(tmp);
        if (s) { free(resized); return s; }
        in = resized;
    }
    int grad = c->grad_enabled;
    rx_set_grad_enabled(c, 0);
    rx_tensor *x = rx_from_host(c, RX_SHAPE(n, C, S, S), in);
    rx_tensor *f = p->model->impl->features(c, p->model, x);
    rx_status s = f ? rx_tensor_to_host(c, f, features) : rx_ctx_status(c);
    if (!s && logits) {
        /* the logits head on the same features: fc(features) */
        rx_tensor *fc_w = rx_paramset_find(&p->model->params, "fc.weight"), *fc_b = rx_paramset_find(&p->model->params, "fc.bias");
        rx_tensor *lg = rx_linear(c, f, fc_w, fc_b);
        s = lg ? rx_tensor_to_host(c, lg, logits) : rx_ctx_status(c);
    }
    rx_step_end(c);
    rx_set_grad_enabled(c, grad);
    free(resized);
    return s;
}

static const rx_features_impl classifier_features_impl = {fx_create, fx_extract, fx_destroy};
const rx_component rx_comp_features_classifier = {
    RX_KIND_FEATURES, "classifier",
    "penultimate features and logits of a resnet_classifier trained by runexp (metrics named fd_<name>)",
    classifier_features_params, &classifier_features_impl, NULL};
