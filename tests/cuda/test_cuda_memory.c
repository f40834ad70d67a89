/* test_cuda_memory.c — what `runexp check` predicts for the CUDA backend against what the CUDA
 * backend allocates.
 *   - The bf16 operand slot: with precision bf16, cuda/dense.cu rounds each GEMM's and
 *     convolution's operands into one scratch slot that grows to the largest request and is never
 *     shrunk (its size is its high-water mark). After a real bf16 training step (forward, MSE,
 *     backward) and a bf16 forward without grad, of a U-Net and a DiT, the largest request the
 *     slot saw equals the planner's (runner/memory_plan.c on the planning backend,
 *     kernels/bf16_operands.c) byte for byte, and the slot equals the planned slot (that request
 *     in whole MiB): the plan is never below the real peak. At fp32 no slot is made.
 * Runs in the emulator (tests/cuda/emu) without a GPU; skips where no CUDA device answers. */
#include "registry/components.h"
#include "cuda_parity.h"
#include "blocks/model.h"
#include "core/params.h"
#include "runner/memory_plan.h"

/* the U-Net of test_cuda_models.c (its largest request: the full-resolution up block's conv
 * backward) */
static const char *const unet_cfg[] = {
    "sample_size", "16", "in_channels", "3", "out_channels", "3",
    "block_out_channels", "[32, 64]", "layers_per_block", "1", "norm_num_groups", "8",
    "attention_head_dim", "8", "down_block_types", "[DownBlock2D, AttnDownBlock2D]",
    "up_block_types", "[AttnUpBlock2D, UpBlock2D]", "num_classes", "3", NULL};
static const char *const dit_cfg[] = {
    "depth", "2", "hidden_size", "64", "num_heads", "4", "patch_size", "2", "sample_size", "8",
    "in_channels", "3", "num_classes", "3", "learn_sigma", "true", NULL};

static rx_params *params_of(const rx_component *comp, const char *const *kv) {
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults(comp->name, comp->params, &p), RX_OK, "%s", rx_last_error());
    for (int i = 0; kv[i]; i += 2)
        cr_assert_eq(rx_params_set(p, kv[i], kv[i + 1]), RX_OK, "%s = %s: %s", kv[i], kv[i + 1], rx_last_error());
    return p;
}

/* one step of comp on a fresh CUDA context at `precision`: training (forward, MSE against zeros,
 * backward with release) or a forward without grad; the bf16 slot's size and largest request afterwards */
static size_t slot_after_step(const rx_component *comp, const rx_params *mp, int precision, int B, int train,
                              size_t *largest_request) {
    const rx_backend *be = NULL;
    void *state = NULL;
    const char *device = NULL;
    rx_ctx *c = NULL;
    rx_model *m = NULL;
    cr_assert_eq(rx_cuda_open(0, precision, 1, &be, &state, &device), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_ctx_create(be, state, 0, &c), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_model_create(c, comp, mp, 7, &m), RX_OK, "%s", rx_last_error());
    const int C = m->in_channels, S = m->sample_size;
    c->training = train;
    c->release_in_backward = 1;
    rx_set_grad_enabled(c, train);
    rx_tensor *x = rx_full(c, RX_SHAPE(B, C, S, S), 0.5f), *t = rx_full(c, RX_SHAPE(B), 10.0f);
    rx_tensor *labels = rx_full(c, RX_SHAPE(B), 1.0f);
    rx_tensor *y = m->impl->forward(c, m, x, t, labels);
    cr_assert_not_null(y, "%s forward: %s", comp->name, rx_last_error());
    if (m->learn_sigma) y = rx_slice(c, y, 1, 0, C);
    if (train) {
        rx_tensor *loss = rx_mse_loss(c, y, rx_zeros(c, y->ndim, y->shape), NULL);
        cr_assert_not_null(loss, "%s", rx_last_error());
        cr_assert_eq(rx_backward(c, loss), RX_OK, "%s backward: %s", comp->name, rx_last_error());
    }
    cr_assert_eq(c->be->sync(c), RX_OK, "%s", rx_last_error());
    size_t slot = 0;
    cr_assert_eq(rx_cuda_bf16_slot_bytes(c, &slot, largest_request), RX_OK, "%s", rx_last_error());
    rx_model_destroy(m);
    rx_ctx_destroy(c);
    rx_cuda_close(state);
    return slot;
}

static void expect_slot_planned(const rx_component *comp, const char *const *cfg, int B) {
    rx_params *p = params_of(comp, cfg);
    for (int train = 1; train >= 0; train--) {
        double step = 0, request = 0;
        cr_assert_eq(rx_memory_plan_step(comp, p, B, train, 0, &step, &request, NULL), RX_OK, "%s", rx_last_error());
        const size_t planned = rx_cuda_scratch_size((size_t)request);
        size_t largest = 0;
        const size_t real = slot_after_step(comp, p, RX_PRECISION_BF16, B, train, &largest);
        const char *what = train ? "training step" : "forward";
        cr_log_info("%s %s at batch %d: largest bf16 request %zu bytes, planned %.0f; slot %zu, planned %zu", comp->name,
                    what, B, largest, request, real, planned);
        cr_expect_gt(largest, 0, "%s: a bf16 %s made no bf16 copies", comp->name, what);
        cr_expect_eq((double)largest, request, "%s %s: largest request %zu bytes, planned %.0f: the plan counts another "
                     "request than dense.cu makes", comp->name, what, largest, request);
        cr_expect_leq(real, planned, "%s %s: the real slot %zu exceeds the plan %zu", comp->name, what, real, planned);
        cr_expect_eq(real, planned, "%s %s: slot %zu, plan %zu", comp->name, what, real, planned);
    }
    size_t largest = 1;
    cr_expect_eq(slot_after_step(comp, p, RX_PRECISION_FP32, B, 1, &largest), 0, "%s: fp32 makes a bf16 slot", comp->name);
    cr_expect_eq(largest, 0, "%s: fp32 asked for bf16 copies", comp->name);
    rx_params_free(p);
}

Test(cuda_memory, bf16_slot_equals_the_plan_unet) {
    RX_CUDA_REQUIRE();
    expect_slot_planned(&rx_comp_model_unet, unet_cfg, 3);
}

Test(cuda_memory, bf16_slot_equals_the_plan_dit) {
    RX_CUDA_REQUIRE();
    expect_slot_planned(&rx_comp_model_dit, dit_cfg, 3);
}
