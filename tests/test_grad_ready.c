/* test_grad_ready.c — backward's announcement that a parameter's gradient is final
 * (c->grad_ready, autograd/backward.c), which starts the data-parallel all-reduce of its
 * bucket while backward goes on (dist/grad_buckets.c).
 *
 * Reference: the gradient after the whole backward. A gradient copied at its announcement
 * must equal it bit for bit (no contribution may come after), every parameter with a
 * gradient must be announced exactly once per step, and the announcements must come during
 * the replay, not all at its end. Cases: a U-Net and a DiT step (plain, with release, with
 * checkpointed blocks), and a parameter read both inside a checkpointed block and outside it
 * (whichever reader is older). */
#include "test_models_fixture.h"
#include "registry/components.h"
#include "autograd/checkpoint.h"
#include "core/paramset.h"

#include <math.h>

// ---------------------------------------------------------------------------
// the listener: a copy of each gradient when it is announced

static struct {
    const rx_paramset *ps;
    float *seen;          /* [numel] the gradients as announced, concatenated in ps order */
    int *count;           /* [ps->n] announcements per parameter */
    int order;            /* announcements so far */
    int *at;              /* [ps->n] the announcement's number */
} L;

static rx_status listen(rx_ctx *c, rx_tensor *p) {
    int64_t off = 0;
    for (int i = 0; i < L.ps->n; off += L.ps->t[i]->numel, i++) {
        if (L.ps->t[i] != p) continue;
        L.count[i]++;
        L.at[i] = L.order++;
        return rx_tensor_to_host(c, p->grad, L.seen + off);
    }
    return RX_OK;   /* not a parameter of this set */
}

static void listen_to(const rx_paramset *ps) {
    L.ps = ps;
    L.seen = calloc((size_t)rx_paramset_numel(ps), sizeof(float));
    L.count = calloc((size_t)ps->n, sizeof(int));
    L.at = calloc((size_t)ps->n, sizeof(int));
    L.order = 0;
    cr_assert(L.seen && L.count && L.at);
}

/* every parameter with a gradient announced once, its announced copy equal to its final gradient */
static void expect_announced_final(rx_ctx *c, const rx_paramset *ps, const char *what) {
    int64_t off = 0;
    int announced = 0;
    for (int i = 0; i < ps->n; off += ps->t[i]->numel, i++) {
        const rx_tensor *t = ps->t[i];
        if (!t->grad) continue;
        cr_expect_eq(L.count[i], 1, "%s: %s announced %d times", what, t->name, L.count[i]);
        announced += L.count[i] == 1;
        float *final = malloc((size_t)t->numel * sizeof *final);
        ASSERT_OK(rx_tensor_to_host(c, t->grad, final));
        int64_t diff = 0;
        for (int64_t k = 0; k < t->numel; k++) diff += memcmp(&final[k], &L.seen[off + k], sizeof(float)) != 0;
        cr_expect_eq(diff, 0, "%s: %s: %lld of %lld values changed after the announcement", what, t->name,
                     (long long)diff, (long long)t->numel);
        free(final);
    }
    cr_expect_gt(announced, 1, "%s: nothing announced", what);
    free(L.seen), free(L.count), free(L.at);
}

// ---------------------------------------------------------------------------
// model steps

static const char *const unet_cfg[] = {
    "sample_size", "8", "in_channels", "3", "out_channels", "3",
    "block_out_channels", "[16, 32]", "layers_per_block", "1", "norm_num_groups", "8",
    "attention_head_dim", "8", "down_block_types", "[DownBlock2D, AttnDownBlock2D]",
    "up_block_types", "[AttnUpBlock2D, UpBlock2D]", "num_classes", "3", NULL};
static const char *const dit_cfg[] = {
    "sample_size", "8", "in_channels", "3", "patch_size", "2", "depth", "2", "hidden_size", "32",
    "num_heads", "4", "num_classes", "3", NULL};

static void model_step(const rx_component *comp, const char *const *cfg, int release, int checkpointing,
                       const char *what) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_params *p = fx_params(comp, cfg);
    rx_model *m = NULL;
    ASSERT_OK(rx_model_create(c, comp, p, 11, &m));
    rx_params_free(p);
    c->checkpointing = checkpointing;
    const int B = 2;
    rx_tensor *x = rx_empty(c, RX_SHAPE(B, 3, 8, 8)), *y = rx_empty(c, RX_SHAPE(B, 3, 8, 8));
    cr_assert(x && y);
    rx_test_randn(c, x, 1, 1.0f);
    rx_test_randn(c, y, 2, 1.0f);
    rx_tensor *t = rx_from_host(c, RX_SHAPE(B), (float[]){3, 700});
    rx_tensor *labels = rx_from_host(c, RX_SHAPE(B), (float[]){0, 2});
    rx_tensor *loss = rx_mse_loss(c, m->impl->forward(c, m, x, t, labels), y, NULL);
    cr_assert_not_null(loss, "%s", rx_last_error());
    listen_to(&m->params);
    c->grad_ready = listen;
    c->release_in_backward = release;
    ASSERT_OK(rx_backward(c, loss));
    cr_expect(c->grad_ready == listen, "%s: backward left another listener in the context", what);
    expect_announced_final(c, &m->params, what);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}

Test(grad_ready, unet_gradients_are_final_when_announced) {
    model_step(&rx_comp_model_unet, unet_cfg, 0, 0, "unet");
    model_step(&rx_comp_model_unet, unet_cfg, 1, 0, "unet, release");
    model_step(&rx_comp_model_unet, unet_cfg, 1, 1, "unet, checkpointed");
}

Test(grad_ready, dit_gradients_are_final_when_announced) {
    model_step(&rx_comp_model_dit, dit_cfg, 1, 0, "dit, release");
    model_step(&rx_comp_model_dit, dit_cfg, 1, 1, "dit, checkpointed");
}

// ---------------------------------------------------------------------------
// a parameter shared by a checkpointed block and a node outside it

typedef struct { rx_tensor *w, *b; } shared_block;

/* y = silu(x W^T + b): reads the shared W */
static rx_tensor *block_fn(rx_ctx *c, const void *blk, rx_tensor *x, rx_tensor *cond) {
    (void)cond;
    const shared_block *s = blk;
    return rx_silu(c, rx_linear(c, x, s->w, s->b));
}

/* W read outside the block first (older) or last (newer), the block checkpointed */
static void shared_step(int outside_first) {
    rx_ctx *c = rx_test_cpu_ctx();
    const int D = 6;
    rx_paramset ps = {0};
    shared_block blk = {rx_param(c, "w", RX_SHAPE(D, D), 1), rx_param(c, "b", RX_SHAPE(D), 1)};
    rx_tensor *v = rx_param(c, "v", RX_SHAPE(D), 1);   /* read once, after W's readers: announced earlier */
    cr_assert(blk.w && blk.b && v);
    rx_test_randn(c, blk.w, 3, 0.5f);
    rx_test_randn(c, blk.b, 4, 0.5f);
    rx_test_randn(c, v, 5, 0.5f);
    ASSERT_OK(rx_paramset_add(&ps, blk.w));
    ASSERT_OK(rx_paramset_add(&ps, blk.b));
    ASSERT_OK(rx_paramset_add(&ps, v));
    c->checkpointing = 1;
    rx_tensor *x = rx_empty(c, RX_SHAPE(4, D));
    rx_test_randn(c, x, 6, 1.0f);
    rx_tensor *h = outside_first ? rx_linear(c, x, blk.w, NULL) : x;
    h = rx_checkpoint(c, block_fn, &blk, h, NULL);
    if (!outside_first) h = rx_linear(c, h, blk.w, NULL);
    rx_tensor *loss = rx_mean(c, rx_mul(c, rx_add(c, h, v), h));
    cr_assert_not_null(loss, "%s", rx_last_error());
    listen_to(&ps);
    c->grad_ready = listen;
    c->release_in_backward = 1;
    ASSERT_OK(rx_backward(c, loss));
    cr_expect_lt(L.at[2], L.at[0], "v (read last) must be announced before w (read first): at %d, w at %d", L.at[2], L.at[0]);
    expect_announced_final(c, &ps, outside_first ? "w read outside the block, then in it" : "w read in the block, then outside");
    rx_paramset_free(&ps);
    rx_ctx_destroy(c);
}

Test(grad_ready, a_parameter_shared_with_a_checkpointed_block_is_announced_after_its_oldest_reader) {
    shared_step(1);
    shared_step(0);
}
