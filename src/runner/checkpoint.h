/* checkpoint.h — a training state in one safetensors file.
 *
 * Tensors are stored under group prefixes: "model.<diffusers key>", "ema.<key>",
 * "adam_m.<key>", "adam_v.<key>"; metadata (strings) holds the format tag, the step,
 * the config hash and the run's seed. Loading checks every expected tensor (presence,
 * shape) and the metadata BEFORE copying anything: a corrupt, truncated or mismatched
 * file is refused whole, never half-loaded. Writes are atomic (temp + fsync + rename). */
#ifndef RX_CHECKPOINT_H
#define RX_CHECKPOINT_H

#include "core/paramset.h"

#define RX_CKPT_FORMAT "runexp-checkpoint-1"

typedef struct rx_ckpt_group {
    const char        *prefix;   /* "model", "ema", "adam_m", "adam_v" */
    const rx_paramset *ps;       /* tensors named like the model's parameters */
    int                optional; /* load: absent in the file is fine (e.g. no EMA in an imported file) */
} rx_ckpt_group;

typedef struct rx_ckpt_meta {
    int64_t step;
    char    config_hash[17];     /* hash of the config subtree training depends on */
    uint64_t seed;
    const char *config_yaml;     /* save: the resolved config (lets `runexp export` rebuild the model); may be NULL */
    /* the logging window open at `step` (train.c): the sum of its losses and its number of
     * steps, so that a run resumed mid-window logs the mean the uninterrupted run logs.
     * Both 0 when the window closed at `step` (and in checkpoints written before them). */
    double  log_loss_sum;
    int64_t log_steps;
} rx_ckpt_meta;

rx_status rx_ckpt_save(rx_ctx *c, const char *path, const rx_ckpt_group *groups, int n_groups, const rx_ckpt_meta *meta);
/* expect_hash: refuse a checkpoint of another configuration (NULL: accept any) */
rx_status rx_ckpt_load(rx_ctx *c, const char *path, const rx_ckpt_group *groups, int n_groups,
                       const char *expect_hash, rx_ckpt_meta *meta);
/* Model weights alone, from a runexp checkpoint ("ema." preferred when use_ema, else "model.")
 * or a plain diffusers-style file (bare keys): what `init:` and `runexp export` read. */
rx_status rx_ckpt_load_weights(rx_ctx *c, const char *path, const rx_paramset *ps, int use_ema);

/* A model's weights from either a runexp checkpoint (EMA preferred when use_ema) or a
 * diffusers weights file (rx_model_import_diffusers: key mapping such as DiT's per-block
 * embedder copies). What `init:`, feature extractors and `runexp export` use. */
struct rx_model;
rx_status rx_model_load_weights(rx_ctx *c, struct rx_model *m, const char *path, int use_ema);

#endif
