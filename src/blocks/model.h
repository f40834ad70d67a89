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
struct json_t;   /* jansson */

/* Receives one parameter value that a diffusers config.json determines: `value` (borrowed) is an
 * integer, real, boolean, string, null or array of them, as the parameter's type reads it.
 * training_choice: the key does not change what the weights compute (dropout), so a value the
 * experiment sets wins over the file's. */
typedef void (*rx_diffusers_param_fn)(void *ctx, const char *param, const struct json_t *value, int training_choice);

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
    /* optional, the inverse of diffusers_config: the parameters that a diffusers config.json (parsed
     * from `path`) determines, passed to put one by one; a key the file leaves out means diffusers'
     * default. Fails, naming the key, when the file describes a model this one cannot be. */
    rx_status (*params_from_diffusers)(const struct json_t *config, const char *path, rx_diffusers_param_fn put,
                                       void *ctx);
    /* autoencoders only (NULL otherwise; a model with encode is a VAE). encode: x [B,in,H,W] -> the
     * posterior's moments [B, 2*latent_channels, H/f, W/f], mean then logvar along dim 1, the logvar
     * not yet clamped (diffusers' DiagonalGaussianDistribution parameters; rx_vae_posterior_host
     * clamps). decode: z [B,latent_channels,H/f,W/f] -> [B,out,H,W]. f = latent_factor. */
    rx_tensor *(*encode)(rx_ctx *c, rx_model *m, rx_tensor *x);
    rx_tensor *(*decode)(rx_ctx *c, rx_model *m, rx_tensor *z);
} rx_model_impl;

struct rx_model {
    const rx_model_impl *impl;
    const char *arch;          /* "unet", "dit", "resnet_classifier", "autoencoder_kl" */
    rx_paramset params;
    int in_channels, out_channels, sample_size;
    int num_classes;           /* 0: unconditional; else labels in [0, num_classes], num_classes = null label */
    int learn_sigma;           /* DiT: the output carries a variance half */
    int latent_channels, latent_factor;   /* VAEs: latents are [latent_channels, H/f, W/f]; 0 otherwise */
    void *priv;                /* architecture-specific layers */
};

/* create by registry name from a resolved parameter set */
rx_status rx_model_create(rx_ctx *c, const rx_component *comp, const rx_params *p, uint64_t seed, rx_model **out);
void      rx_model_destroy(rx_model *m);
/* a fixed network inside another's loss (the vae objective's perceptual term): its parameters stop
 * requiring gradients, so backward passes through its ops into the input without touching them,
 * and nothing (optimizer, EMA, gradient buckets) ever sees them */
void      rx_model_freeze(rx_model *m);
/* resnet_classifier only: the output of each stage (conv_in, then per stage [avgpool] + its
 * resnet blocks) for x [B,C,H,W], written to out[0..n), n = the number of stages (<= max);
 * -1 (the context's error set) when m is not a resnet_classifier or x has the wrong channels */
int       rx_classifier_stages(rx_ctx *c, rx_model *m, rx_tensor *x, rx_tensor **out, int max);
/* DIR/diffusion_pytorch_model.safetensors (state-dict names) + DIR/config.json, loadable with
 * diffusers' <Model>.from_pretrained(DIR). */
rx_status rx_model_export_diffusers(rx_ctx *c, const rx_model *m, const char *dir);
/* Weights from a diffusers state-dict file (diffusion_pytorch_model.safetensors, any float dtype):
 * every key the model expects (diffusers_key copies included) must be there with the right shape,
 * and nothing else; copies of a shared parameter must be equal. Checked before anything is copied. */
rx_status rx_model_import_diffusers(rx_ctx *c, rx_model *m, const char *path);
/* The diffusers config.json in the directory of `weights_path` (its path goes to config_path), read
 * through the model's params_from_diffusers (see there). Nothing is read when there is no such file,
 * when it is not a diffusers model config (no _class_name) or when the model has no such hook. */
rx_status rx_model_diffusers_config_params(const rx_component *model, const char *weights_path, rx_diffusers_param_fn put,
                                           void *ctx, char *config_path, size_t n);
/* Helpers for the hooks. config[key], or diffusers_default (JSON text) when the file leaves the key
 * out: a new reference (NULL on OOM). */
struct json_t *rx_diffusers_value(const struct json_t *config, const char *key, const char *diffusers_default);
/* RX_OK when config[key] is absent or equals `implemented` (JSON text, diffusers' default for the key;
 * numbers compare by value); else an error: model `arch` implements only that. */
rx_status rx_diffusers_require(const struct json_t *config, const char *path, const char *arch, const char *key,
                               const char *implemented);
/* a float32 as a JSON real holding its shortest decimal (1e-05, not 9.99999975e-06) */
struct json_t *rx_json_float32(float v);
/* VAEs: the posterior from encode's moments [B,2L,h,w] (host): mean, and std = exp(logvar/2) with the
 * logvar clamped to [-30, 20] as diffusers' DiagonalGaussianDistribution; each [B,L,h,w] */
void rx_vae_posterior_host(const float *moments, int64_t B, int64_t L, int64_t hw, float *mean, float *std);
static inline int64_t rx_model_param_count(const rx_model *m) { return rx_paramset_numel(&m->params); }

#endif
