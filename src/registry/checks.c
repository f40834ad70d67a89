/* checks.c — validation that needs several sections at once (run by rx_config_validate
 * through rx_validate_hooks). Each error points at the offending key's position. */
#include "registry/registry.h"
#include "diffusion/diffusion.h"
#include <stdlib.h>
#include "blocks/model.h"
#include <errno.h>
#include <string.h>
#include <unistd.h>

static const rx_params *params_of(const rx_config *cfg, const char *path, const rx_component **comp) {
    const rx_params *p = NULL;
    if (rx_config_section_params(cfg, path, comp, &p) != RX_OK) { rx_clear_error(); return NULL; }
    return p;
}

/* an objective's task; -1 for one without an implementation (the fake components of test
 * tables) */
static int task_of(const rx_component *objective) {
    return objective && objective->impl ? (int)((const rx_objective_impl *)objective->impl)->task : -1;
}

static int has(const rx_params *p, const char *name) {
    for (int i = 0; p && i < p->n; i++) if (!strcmp(p->spec[i].name, name)) return 1;
    return 0;
}

/* schedule / objective / sampler / guidance / model fit together (diffusion/check.c); `under`:
 * "" for the experiment's sampler and guidance, "reflow." for the ones that draw reflow's pairs */
static void check_diffusion_under(const rx_config *cfg, rx_config_errors *errs, const char *under) {
    rx_diffusion_setup u = {0};
    const rx_component *model = NULL;
    char sampler[64], guidance[64];
    snprintf(sampler, sizeof sampler, "%ssampler", under);
    snprintf(guidance, sizeof guidance, "%sguidance", under);
    u.schedule_params = params_of(cfg, "schedule", &u.schedule);
    u.objective_params = params_of(cfg, "objective", &u.objective);
    u.sampler_params = params_of(cfg, sampler, &u.sampler);
    params_of(cfg, guidance, &u.guidance);
    const rx_params *model_params = params_of(cfg, "model", &model);
    u.model_num_classes = has(model_params, "num_classes") ? (int)rx_param_int(model_params, "num_classes") : 0;
    char msg[1024];
    if (rx_diffusion_check(cfg->table, &u, msg, sizeof msg) == RX_OK) return;
    rx_clear_error();
    /* the message starts with the key it is about: "sampler.steps: ..." (under reflow: the
     * reflow section's sampler; schedule and objective keys are the experiment's own) */
    const int ours = !strncmp(msg, "sampler", 7) || !strncmp(msg, "guidance", 8);
    char key[160];
    snprintf(key, sizeof key, "%s%.*s", ours ? under : "", (int)strcspn(msg, ":"), msg);
    const rx_cfg_node *at = rx_cfg_path(cfg->root, key);
    for (size_t len = strlen(key); !at && len > 0; len--)   /* the nearest section that is there */
        if (key[len] == '.') {
            key[len] = 0;
            at = rx_cfg_path(cfg->root, key);
        }
    rx_config_error_at(errs, at, "%s%s", ours ? under : "", msg);
}

static void check_diffusion(const rx_config *cfg, rx_config_errors *errs) { check_diffusion_under(cfg, errs, ""); }

/* eval of generated images needs a feature extractor; a run whose objective trains no
 * diffusion model (classify) generates nothing, reports test accuracy and needs none */
static void check_eval(const rx_config *cfg, rx_config_errors *errs) {
    const rx_cfg_node *ev = rx_cfg_path(cfg->root, "eval");
    if (!ev || rx_cfg_is_null(ev)) return;
    const rx_cfg_node *fe = rx_cfg_path(cfg->root, "eval.features");
    if (fe && !rx_cfg_is_null(fe)) return;
    const rx_component *ob = NULL;
    params_of(cfg, "objective", &ob);
    if (task_of(ob) == RX_TASK_CLASSIFY) return;
    rx_config_error_at(errs, ev, "eval.features: missing required section (features: {name: <features>, ...}): "
                                 "generated images are compared through a feature extractor");
}

int rx_reflow_model_index(const char *name, int rounds, int distill) {
    if (!strcmp(name, "teacher")) return 0;
    if (distill && !strcmp(name, "distill")) return rounds + 1;
    char *end = NULL;
    if (strncmp(name, "reflow", 6) || !name[6] || name[6] < '1' || name[6] > '9') return -1;
    long k = strtol(name + 6, &end, 10);
    return *end == 0 && k >= 1 && k <= rounds ? (int)k : -1;
}

/* the reflow section: a flow-matching teacher, a flow sampler and a guidance that fit it
 * (the diffusion rules of check_diffusion, with reflow's sampler and guidance) */
static void check_reflow_section(const rx_config *cfg, rx_config_errors *errs) {
    const rx_component *ob = NULL;
    params_of(cfg, "objective", &ob);
    if (rx_schedule_kind_of(ob) != RX_SCHED_FLOW) {
        rx_config_error_at(errs, rx_cfg_path(cfg->root, "reflow"),
                           "reflow: reflow straightens a flow: it needs objective flow_matching (and schedule flow), "
                           "not objective %s", ob ? ob->name : "?");
        return;
    }
    check_diffusion_under(cfg, errs, "reflow.");
}

/* sample.model names a model this experiment makes */
static void check_reflow(const rx_config *cfg, rx_config_errors *errs) {
    const rx_params *reflow = params_of(cfg, "reflow", NULL), *sample = params_of(cfg, "sample", NULL);
    if (reflow) check_reflow_section(cfg, errs);
    if (!sample || !has(sample, "model")) return;
    const char *name = rx_param_str(sample, "model");
    const int rounds = reflow ? (int)rx_param_int(reflow, "rounds") : 0;
    const int distill = reflow && rx_param_int(reflow, "distill_steps") > 0;
    if (rx_reflow_model_index(name, rounds, distill) >= 0) return;
    char valid[256] = "teacher";
    size_t len = strlen(valid);
    for (int k = 1; k <= rounds && len < sizeof valid; k++) len += snprintf(valid + len, sizeof valid - len, ", reflow%d", k);
    if (distill && len < sizeof valid) snprintf(valid + len, sizeof valid - len, ", distill");
    rx_config_error_at(errs, rx_cfg_path(cfg->root, "sample.model"),
                       "sample.model: '%s' is not a model of this experiment; expected one of: %s%s", name, valid,
                       reflow ? (distill || strcmp(name, "distill") ? "" : " (distill needs reflow.distill_steps > 0)")
                              : " (reflowed and distilled models need a reflow section)");
}

/* the file or directory a parameter names: its node, when it is set */
static const rx_cfg_node *path_node(const rx_config *cfg, const char *key) {
    const rx_cfg_node *n = rx_cfg_path(cfg->root, key);
    return n && n->type == RX_CFG_SCALAR && !rx_cfg_is_null(n) ? n : NULL;
}

/* the VAE's weights must be there before anything runs (init and model.weights are opened when the
 * experiment is built, which also refuses a missing file before any run directory exists) */
static void check_weights_files(const rx_config *cfg, rx_config_errors *errs) {
    static const char *const keys[] = {"latent.vae.weights", "objective.perceptual_net"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const rx_cfg_node *n = path_node(cfg, keys[i]);
        if (n && access(n->text, R_OK) != 0)
            rx_config_error_at(errs, n, "%s: cannot read '%s': %s", keys[i], n->text, strerror(errno));
    }
}

/* latent: latent.vae is an autoencoder, and the denoiser takes and gives its latents: in/out channels
 * = latent_channels, sample_size = the VAE's sample_size / 2^(levels-1) (one halving per level but the
 * last, as autoencoder_kl builds it) */
static void check_latent(const rx_config *cfg, rx_config_errors *errs) {
    const rx_cfg_node *lat = rx_cfg_path(cfg->root, "latent");
    if (!lat || rx_cfg_is_null(lat)) return;
    const rx_component *vae = NULL, *model = NULL, *ob = NULL;
    /* the model named, even when its parameters did not check (a U-Net's keys under latent.vae) */
    const rx_cfg_node *vae_node = rx_cfg_path(cfg->root, "latent.vae.name");
    if (!vae_node) vae_node = rx_cfg_path(cfg->root, "latent.vae");
    if (vae_node && vae_node->type == RX_CFG_SCALAR) vae = rx_registry_find_in(cfg->table, RX_KIND_MODEL, vae_node->text);
    if (vae && vae->impl && !((const rx_model_impl *)vae->impl)->encode) {
        rx_config_error_at(errs, vae_node, "latent.vae: model '%s' is not an autoencoder (it has no encoder and decoder); "
                                           "latent diffusion needs a VAE such as autoencoder_kl", vae->name);
        return;
    }
    const rx_params *vp = params_of(cfg, "latent.vae", &vae), *mp = params_of(cfg, "model", &model);
    params_of(cfg, "objective", &ob);
    if (!vae || !vp || !mp) return;   /* the checker said what is wrong */
    if (task_of(ob) >= 0 && task_of(ob) != RX_TASK_DENOISE) {
        rx_config_error_at(errs, lat, "latent: objective '%s' does not train a denoiser; latent diffusion trains the model "
                                      "on the VAE's latents (objective ddpm or flow_matching)", ob->name);
        return;
    }
    if (!has(vp, "latent_channels") || !has(vp, "sample_size") || !has(vp, "block_out_channels")) return;
    int levels = 0;
    rx_param_int_list(vp, "block_out_channels", &levels);
    int L = (int)rx_param_int(vp, "latent_channels"), image = (int)rx_param_int(vp, "sample_size");
    int f = 1 << (levels > 0 ? levels - 1 : 0), size = image / f;
    static const char *const keys[] = {"in_channels", "out_channels", "sample_size"};
    const int want[] = {L, L, size};
    for (int i = 0; i < 3; i++) {
        if (!has(mp, keys[i]) || rx_param_int(mp, keys[i]) == want[i]) continue;
        char key[64];
        snprintf(key, sizeof key, "model.%s", keys[i]);
        const rx_cfg_node *at = rx_cfg_path(cfg->root, key);
        rx_config_error_at(errs, at ? at : rx_cfg_path(cfg->root, "model"),
                           "%s: %lld, but latent.vae (%s) turns %dx%d images into %dx%dx%d latents: the model takes and "
                           "gives those, so in_channels: %d, out_channels: %d, sample_size: %d",
                           key, (long long)rx_param_int(mp, keys[i]), vae->name, image, image, L, size, size, L, L, size);
    }
}

/* objective vae trains an autoencoder, and an autoencoder trains only with objective vae */
static void check_autoencoder_objective(const rx_config *cfg, rx_config_errors *errs) {
    const rx_component *model = NULL, *ob = NULL;
    params_of(cfg, "model", &model);
    params_of(cfg, "objective", &ob);
    if (!model || !model->impl || !ob || task_of(ob) < 0) return;
    const int vae_model = ((const rx_model_impl *)model->impl)->encode != NULL, vae_task = task_of(ob) == RX_TASK_VAE;
    if (vae_model == vae_task) return;
    const rx_cfg_node *at = rx_cfg_path(cfg->root, vae_task ? "model.name" : "objective.name");
    if (!at) at = rx_cfg_path(cfg->root, vae_task ? "model" : "objective");
    if (vae_task)
        rx_config_error_at(errs, at, "model: objective vae trains an autoencoder (autoencoder_kl), not %s", model->name);
    else
        rx_config_error_at(errs, at, "objective: model %s is an autoencoder; it trains with objective vae (or goes under "
                                     "latent.vae to be the first stage of latent diffusion)", model->name);
}

/* objective vae's perceptual term needs its network */
static void check_perceptual(const rx_config *cfg, rx_config_errors *errs) {
    const rx_component *ob = NULL;
    const rx_params *op = params_of(cfg, "objective", &ob);
    if (!op || task_of(ob) != RX_TASK_VAE || !has(op, "perceptual_weight") || rx_param_float(op, "perceptual_weight") <= 0) return;
    if (!rx_param_is_null(op, "perceptual_net")) return;
    const rx_cfg_node *at = rx_cfg_path(cfg->root, "objective.perceptual_weight");
    rx_config_error_at(errs, at ? at : rx_cfg_path(cfg->root, "objective"),
                       "objective.perceptual_weight: %g needs objective.perceptual_net, a resnet_classifier checkpoint "
                       "(models/cifar10_classifier.safetensors for CIFAR-10, models/mnist_classifier.safetensors for MNIST)",
                       rx_param_float(op, "perceptual_weight"));
}

/* every cross-section check, in the order they run */
const rx_validate_hook rx_validate_hooks[] = {
    check_diffusion,
    check_eval,
    check_reflow,
    check_weights_files,
    check_latent,
    check_autoencoder_objective,
    check_perceptual,
    NULL,
};
