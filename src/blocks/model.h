/* model.h — what the runner sees of a network.
 *
 * A model is created from its registry parameters (which mirror diffusers' config names),
 * owns its parameters (a paramset with diffusers state-dict keys) and runs forward by
 * composing ops; gradients come from the tape. */
#ifndef RX_MODEL_H
#define RX_MODEL_H

#include "core/component.h"
#include "core/paramset.h"
#include "kernels/ops.h"

typedef struct rx_model rx_model;

typedef struct rx_model_impl {
    /* build parameters (PyTorch-default init from `seed`) */
    rx_status (*create)(rx_ctx *c, const rx_params *p, uint64_t seed, rx_model **out);
    /* denoisers: x [B,C,H,W], t [B] timesteps as floats, labels [B] whole numbers (num_classes = null
     * label) or NULL -> [B,out_channels,H,W]. Classifiers: x -> logits [B,K] (t, labels unused). */
    rx_tensor *(*forward)(rx_ctx *c, rx_model *m, rx_tensor *x, rx_tensor *t, rx_tensor *labels);
    /* classifiers only: x -> penultimate features [B,F]; NULL for denoisers */
    rx_tensor *(*features)(rx_ctx *c, rx_model *m, rx_tensor *x);
    /* the diffusers config.json for export, a new JSON object the caller releases (NULL when
     * out of memory); the pointer itself is NULL for a model with no diffusers counterpart */
    struct json_t *(*diffusers_config)(const rx_model *m);
    void (*destroy)(rx_model *m);
    /* optional: where parameter `param` lives in a diffusers state dict when our layout differs
     * (the DiT shares one embedder that diffusers copies into every block). Writes key number
     * `copy` (0, 1, ...) into buf and returns 1, or returns 0 when there is no such copy.
     * NULL: every parameter is stored once, under its own name. */
    int (*diffusers_key)(const rx_model *m, int param, int copy, char *buf, size_t n);
} rx_model_impl;

struct rx_model {
    const rx_model_impl *impl;
    const char *arch;          /* "unet", "dit", "resnet_classifier" */
    rx_paramset params;
    int in_channels, out_channels, sample_size;
    int num_classes;           /* 0: unconditional; else labels in [0, num_classes], num_classes = null label */
    int learn_sigma;           /* DiT: the output carries a variance half */
    void *priv;                /* architecture-specific layers */
};

/* create by registry name from a resolved parameter set */
rx_status rx_model_create(rx_ctx *c, const rx_component *comp, const rx_params *p, uint64_t seed, rx_model **out);
void      rx_model_destroy(rx_model *m);
/* DIR/diffusion_pytorch_model.safetensors (state-dict names) + DIR/config.json, loadable with
 * diffusers' <Model>.from_pretrained(DIR). */
rx_status rx_model_export_diffusers(rx_ctx *c, const rx_model *m, const char *dir);
/* Weights from a diffusers state-dict file (diffusion_pytorch_model.safetensors, any float dtype):
 * every key the model expects (diffusers_key copies included) must be there with the right shape,
 * and nothing else; copies of a shared parameter must be equal. Checked before anything is copied. */
rx_status rx_model_import_diffusers(rx_ctx *c, rx_model *m, const char *path);
static inline int64_t rx_model_param_count(const rx_model *m) { return rx_paramset_numel(&m->params); }

#endif
