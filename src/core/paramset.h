/* paramset.h — a model's named parameters (diffusers state-dict keys), in creation order.
 * Built once when a model is created (malloc growth is fine there); the optimizer, EMA,
 * checkpoints and weight import/export all walk it. */
#ifndef RX_PARAMSET_H
#define RX_PARAMSET_H

#include "tensor.h"

typedef struct rx_paramset {
    rx_tensor **t;
    int n, cap;
} rx_paramset;

rx_status  rx_paramset_add(rx_paramset *ps, rx_tensor *t);
rx_tensor *rx_paramset_find(const rx_paramset *ps, const char *name);
int64_t    rx_paramset_numel(const rx_paramset *ps);   /* total elements */
void       rx_paramset_free(rx_paramset *ps);          /* frees the list, not the tensors (arena-owned) */
rx_status  rx_paramset_zero_grad(rx_ctx *c, const rx_paramset *ps);

#endif
