/* transform.c — running a chain of transforms on one uint8 image. */
#include "data/transform.h"

#include <string.h>

// Each step draws with its own Philox key, so e.g. two random_flip steps are independent.
static uint64_t step_seed(uint64_t seed, int k) { return seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(k + 1)); }

static rx_status check_step(const rx_transform_chain *t, int k) {
    const rx_component *comp = t->steps[k].comp;
    if (!comp || comp->kind != RX_KIND_TRANSFORM || !comp->impl || !t->steps[k].params)
        return rx_fail(RX_ERR_ARG, "transform chain: step %d is not a transform with parameters", k);
    return RX_OK;
}

rx_status rx_transform_chain_shape(const rx_transform_chain *t, int c, int h, int w, int *oc, int *oh, int *ow,
                                   int64_t *max_elems) {
    int64_t most = (int64_t)c * h * w;
    for (int k = 0; t && k < t->n; k++) {
        RX_TRY(check_step(t, k));
        const rx_transform_impl *impl = t->steps[k].comp->impl;
        int nc, nh, nw;
        rx_status st = impl->out_shape(t->steps[k].params, c, h, w, &nc, &nh, &nw);
        if (st != RX_OK)
            return rx_fail_ctx(st, "transform %d (%s) on [%d,%d,%d]: ", k, t->steps[k].comp->name, c, h, w);
        c = nc, h = nh, w = nw;
        if ((int64_t)c * h * w > most) most = (int64_t)c * h * w;
    }
    *oc = c, *oh = h, *ow = w;
    if (max_elems) *max_elems = most;
    return RX_OK;
}

rx_status rx_transform_chain_apply(const rx_transform_chain *t, const uint8_t *in, int c, int h, int w, float *out,
                                   float *work, uint64_t seed, uint64_t sample_key) {
    int n = t ? t->n : 0, oc, oh, ow;
    int64_t most;
    RX_TRY(rx_transform_chain_shape(t, c, h, w, &oc, &oh, &ow, &most));
    float *buf[2] = {work, work + most};
    float *cur = n ? buf[0] : out;
    const int64_t count = (int64_t)c * h * w;
    for (int64_t i = 0; i < count; i++) cur[i] = in[i] / 255.0f;  // exactly torchvision to_tensor
    for (int k = 0; k < n; k++) {
        const rx_transform_impl *impl = t->steps[k].comp->impl;
        const rx_params *p = t->steps[k].params;
        int nc, nh, nw;
        RX_TRY(impl->out_shape(p, c, h, w, &nc, &nh, &nw));
        float *dst = k == n - 1 ? out : (cur == buf[0] ? buf[1] : buf[0]);
        rx_status st = impl->apply(p, cur, c, h, w, dst, step_seed(seed, k), sample_key);
        if (st != RX_OK) return rx_fail_ctx(st, "transform %d (%s): ", k, t->steps[k].comp->name);
        cur = dst, c = nc, h = nh, w = nw;
    }
    return RX_OK;
}

rx_status rx_transform_size_param(const rx_params *p, int *h, int *w) {
    int64_t sh = rx_param_int(p, "size"), sw = rx_param_is_null(p, "width") ? sh : rx_param_int(p, "width");
    if (sh < 1 || sw < 1) return rx_fail(RX_ERR_CONFIG, "%s: size and width must be >= 1", p->component);
    *h = (int)sh, *w = (int)sw;
    return RX_OK;
}
