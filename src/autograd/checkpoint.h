/* checkpoint.h — activation checkpointing (diffusers' enable_gradient_checkpointing()).
 *
 * A block applied through rx_checkpoint while c->checkpointing is on keeps only its output
 * from the forward: its own intermediates are freed as soon as it returns. Backward runs the
 * block's forward again, recording it, and replays that short tape with the output's gradient.
 * Memory: a U-Net step holds the blocks' inputs and outputs instead of every activation; time:
 * one more forward of each block. Gradients are bit-identical to the plain step's (the same
 * kernels on the same inputs in the same order; dropout redraws the same masks). */
#ifndef RX_CHECKPOINT_H
#define RX_CHECKPOINT_H

#include "kernels/ops.h"

/* a block: y = f(block, x, cond); cond may be NULL (e.g. the time embedding of a resnet) */
typedef rx_tensor *(*rx_block_fn)(rx_ctx *c, const void *block, rx_tensor *x, rx_tensor *cond);

/* fn(c, block, x, cond), checkpointed when c->checkpointing and grad are on; plain otherwise. */
rx_tensor *rx_checkpoint(rx_ctx *c, rx_block_fn fn, const void *block, rx_tensor *x, rx_tensor *cond);

/* The backward of a checkpoint node (called by the tape replay, backward.c). */
rx_status rx_checkpoint_backward(rx_ctx *c, rx_node *n);

/* The parameters (requires_grad) a checkpointed block read in its forward, each once: the
 * step's tape does not show them, the node's backward finishes their gradients (backward.c's
 * c->grad_ready). Sets *params; returns how many. */
int rx_checkpoint_params(const rx_node *n, rx_tensor *const **params);

#endif
