/* liveness.h — a training step's forward gives back what no backward reads.
 *
 * A tensor that only feeds ops whose backward does not read it (a conv output that goes into a
 * residual add, the q/k/v projections before the head permute, a permute's input) is dead as
 * soon as its last reader in the forward has run. PyTorch frees such a tensor when its last
 * Python reference goes; here the tape says when that is. The graph of a training step is the
 * same every step, so the plan is learned from one step's tape, at the start of its backward:
 * for each node's output, the last node of the forward that reads it (through reshape views)
 * and whether any backward reads its data (ops.def's bwd_reads column, node->saved[]). In the
 * next forward, after node k is recorded, the outputs whose last reader is k and that no
 * backward reads go back to the step arena; backward.c then frees the rest after their last
 * use in backward as before. Values do not change, only where the step's tensors are placed.
 *
 * Every recorded node is compared with the plan (same op, inputs made by the same nodes); at
 * the first difference the plan stops for the rest of that step and learns the new graph at
 * its backward. An op that would read a tensor the plan already gave back fails with an
 * internal error (dispatch.c) instead of reading freed memory.
 *
 * The train stage learns its first plan on the planning backend (runner/memory_plan.c), so
 * the first real step, whose peak sizes the step arena, frees as every later one does.
 * Checkpointed steps do not use a plan: their blocks keep nothing but their outputs anyway. */
#ifndef RX_LIVENESS_H
#define RX_LIVENESS_H

#include "core/tensor.h"

typedef struct rx_fwd_plan rx_fwd_plan;

rx_status rx_fwd_plan_create(rx_ctx *c);            /* attach an empty plan (idempotent) */
rx_status rx_fwd_plan_copy(rx_ctx *dst, const rx_ctx *src);   /* install src's learned plan in dst */
/* The step's forward starts (tape empty): apply the plan from here, learn at the backward. */
void      rx_fwd_plan_begin(rx_ctx *c);
/* Called by rx_backward_with on the step's tape, before the replay. */
rx_status rx_fwd_plan_learn(rx_ctx *c);
/* what the learned plan holds (tests, bench): nodes, and outputs freed in the forward */
void      rx_fwd_plan_size(const rx_ctx *c, int64_t *nodes, int64_t *frees);

#endif
