/* classifier.c — a small CIFAR-style ResNet classifier (GroupNorm, SiLU; no BatchNorm, so
 * train and eval behave the same and batch size does not matter). Its penultimate layer
 * (global average pool of the last stage) is the feature vector of the `classifier`
 * feature extractor; the evaluation trains it with this pipeline (`objective: classify`).
 *
 *   h = conv_in(x)
 *   for each stage s: [avgpool2x if s > 0] then blocks_per_stage ResnetBlocks (widths[s])
 *   features = global_avgpool(silu(norm_out(h)))       [B, widths[-1]]
 *   logits   = fc(dropout(features))                    [B, num_classes]             */
#include "model.h"
#include "resnet.h"
#include <jansson.h>

#define MAX_STAGES 6
#define MAX_BLOCKS 8

typedef struct classifier {
    int n_stages, blocks;
    float dropout;
    rx_conv_layer conv_in;
    rx_resnet_block res[MAX_STAGES][MAX_BLOCKS];
    rx_group_norm_layer norm_out;
    rx_linear_layer fc;
} classifier;

const rx_param_spec rx_classifier_params[] = {
    {"sample_size", RX_P_INT, "32", 4, 4096, NULL, "input height = width"},
    {"in_channels", RX_P_INT, "3", 1, 64, NULL, "input channels"},
    {"num_classes", RX_P_INT, "10", 2, 100000, NULL, "classes"},
    {"widths", RX_P_INT_LIST, "[64, 128, 256]", 1, 65536, NULL, "channels per stage; each stage after the first halves the resolution"},
    {"blocks_per_stage", RX_P_INT, "2", 1, MAX_BLOCKS, NULL, "residual blocks per stage"},
    {"norm_num_groups", RX_P_INT, "8", 1, 1024, NULL, "GroupNorm groups"},
    {"dropout", RX_P_FLOAT, "0.0", 0, 1, NULL, "dropout before the final linear layer and inside blocks"},
    {0}
};

static rx_status classifier_create(rx_ctx *c, const rx_params *p, uint64_t seed, rx_model **out) {
    int ns;
    const int64_t *widths = rx_param_int_list(p, "widths", &ns);
    if (ns < 1 || ns > MAX_STAGES) return rx_fail(RX_ERR_CONFIG, "model/resnet_classifier: %d stages (1..%d)", ns, MAX_STAGES);
    int size = (int)rx_param_int(p, "sample_size");
    if (size % (1 << (ns - 1))) return rx_fail(RX_ERR_CONFIG, "model/resnet_classifier: sample_size %d not divisible by 2^%d", size, ns - 1);
    rx_model *m = calloc(1, sizeof *m);
    classifier *k = calloc(1, sizeof *k);
    if (!m || !k) { free(m); free(k); return rx_fail(RX_ERR_OOM, "model/resnet_classifier: out of memory"); }
    m->arch = "resnet_classifier";
    m->priv = k;
    m->in_channels = (int)rx_param_int(p, "in_channels");
    m->out_channels = (int)rx_param_int(p, "num_classes");
    m->sample_size = size;
    m->num_classes = 0;   /* not label-conditioned: it predicts labels */
    k->n_stages = ns;
    k->blocks = (int)rx_param_int(p, "blocks_per_stage");
    k->dropout = (float)rx_param_float(p, "dropout");
    int groups = (int)rx_param_int(p, "norm_num_groups");
    rx_builder bld, *b = &bld;
    rx_builder_init(b, c, &m->params, seed);
    rx_status s = rx_build_conv(b, "conv_in", m->in_channels, (int)widths[0], 3, 1, 1, &k->conv_in);
    int ch = (int)widths[0];
    for (int st = 0; st < ns && !s; st++)
        for (int j = 0; j < k->blocks && !s; j++) {
            rx_builder_push(b, "stages.%d.blocks.%d", st, j);
            s = rx_resnet_build(b, "", ch, (int)widths[st], 0, groups, 1e-5f, k->dropout, &k->res[st][j]);
            rx_builder_pop(b);
            ch = (int)widths[st];
        }
    if (!s) s = rx_build_group_norm(b, "norm_out", groups, ch, 1e-5f, &k->norm_out);
    if (!s) s = rx_build_linear(b, "fc", ch, m->out_channels, 1, &k->fc);
    if (s) { rx_model_destroy(m); return s; }
    *out = m;
    return RX_OK;
}

/* conv_in, then each stage: [avgpool2x] + its resnet blocks; stage s's output to out[s] */
static rx_tensor *classifier_trunk(rx_ctx *c, rx_model *m, rx_tensor *x, rx_tensor **out) {
    classifier *k = m->priv;
    if (!x) return NULL;
    if (x->ndim != 4 || x->shape[1] != m->in_channels)
        return rx_ctx_fail(c, RX_ERR_SHAPE, "resnet_classifier: x %s, expected [B,%d,H,W]", RX_SHAPE_STR(x), m->in_channels);
    rx_tensor *h = rx_conv_fwd(c, &k->conv_in, x);
    for (int st = 0; st < k->n_stages; st++) {
        if (st > 0) h = rx_avgpool2x(c, h);
        for (int j = 0; j < k->blocks; j++) h = rx_resnet_forward(c, &k->res[st][j], h, NULL);
        if (out) out[st] = h;
    }
    return h;
}

static rx_tensor *classifier_features(rx_ctx *c, rx_model *m, rx_tensor *x) {
    classifier *k = m->priv;
    rx_tensor *h = classifier_trunk(c, m, x, NULL);
    return h ? rx_global_avgpool(c, rx_group_norm_silu_fwd(c, &k->norm_out, h, NULL)) : NULL;
}

static rx_tensor *classifier_forward(rx_ctx *c, rx_model *m, rx_tensor *x, rx_tensor *t, rx_tensor *labels) {
    classifier *k = m->priv;
    return rx_linear_fwd(c, &k->fc, rx_dropout(c, classifier_features(c, m, x), k->dropout));
}

static void classifier_destroy(rx_model *m) { free(m->priv); }

static const rx_model_impl classifier_impl = {classifier_create, classifier_forward, classifier_features, NULL,
                                              classifier_destroy};

int rx_classifier_stages(rx_ctx *c, rx_model *m, rx_tensor *x, rx_tensor **out, int max) {
    if (m->impl != &classifier_impl) {
        rx_ctx_fail(c, RX_ERR_ARG, "stage features: %s is not a resnet_classifier", m->arch);
        return -1;
    }
    const classifier *k = m->priv;
    if (k->n_stages > max) {
        rx_ctx_fail(c, RX_ERR_ARG, "stage features: %d stages, room for %d", k->n_stages, max);
        return -1;
    }
    return classifier_trunk(c, m, x, out) ? k->n_stages : -1;
}
const rx_component rx_comp_model_resnet_classifier = {
    RX_KIND_MODEL, "resnet_classifier",
    "small ResNet classifier (GroupNorm); its pooled features drive the fd_<name> metrics",
    rx_classifier_params, &classifier_impl, NULL};
