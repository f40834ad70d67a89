/* test_cuda_memory.c — what `runexp check` predicts for the CUDA backend against what the CUDA
 * backend allocates.
 *   - The bf16 operand slot: with precision bf16, cuda/dense.cu rounds each GEMM's and
 *     convolution's operands into one scratch slot that grows to the largest request and is never
 *     shrunk (its size is its high-water mark). After a real bf16 training step (forward, MSE,
 *     backward) and a bf16 forward without grad, of a U-Net and a DiT, the slot equals the
 *     planner's figure (runner/memory_plan.c on the planning backend, kernels/bf16_operands.c)
 *     rounded to the slot's whole MiB (each model's largest request is above a MiB, so the
 *     rounding hides nothing): the plan is never below the real peak. At fp32 (the DiT) no slot
 *     is made.
 * Runs in the emulator (tests/cuda/emu) without a GPU; skips where no CUDA device answers. */
#include "registry/components.h"
#include "cuda_parity.h"
#include "blocks/model.h"
#include "core/params.h"
#include "runner/memory_plan.h"

/* the U-Net of test_cuda_models.c; batch 16 makes its largest request (the full-resolution up
 * block's conv backward) a few MiB, so the MiB rounding cannot hide a difference */
static const char *const unet_cfg[] = {
    "sample_size", "16", "in_channels", "3", "out_channels", "3",
    "block_out_channels", "[32, 64]", "layers_per_block", "1", "norm_num_groups", "8",
    "attention_head_dim", "8", "down_block_types", "[DownBlock2D, AttnDownBlock2D]",
    "up_block_types", "[AttnUpBlock2D, UpBlock2D]", "num_classes", "3", NULL};
/* a one-block DiT wide enough (384: the MLP's w [1536,384] alone is 1.1 MiB in bf16) that its
 * largest request passes a MiB at batch 4 (16 tokens an image: cheap attention in the emulator) */
static const char *const dit_cfg[] = {
    "depth", "1", "hidden_size", "384", "num_heads", "4", "patch_size", "2", "sample_size", "8",
    "in_channels", "3", "num_classes", "3", "learn_sigma", "true", NULL};

static rx_params *params_of(const rx_component *comp, const char *const *kv) {
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults(comp->name, comp->params, &p), RX_OK, "%s", rx_last_error());
    for (int i = 0; kv[i]; i += 2)
        cr_assert_eq(rx_params_set(p, kv[i], kv[i + 1]), RX_OK, "%s = %s: %s", kv[i], kv[i + 1], rx_last_error());
    return p;
}

/* one step of comp on a fresh CUDA context at `precision`: training (forward, MSE against zeros,
 * backward with release) or a forward without grad; the bf16 slot's size afterwards */
static size_t slot_after_step(const rx_component *comp, const rx_params *mp, int precision, int B, int train) {
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
    cr_assert_eq(rx_cuda_bf16_slot_bytes(c, &slot), RX_OK, "%s", rx_last_error());
    rx_model_destroy(m);
    rx_ctx_destroy(c);
    rx_cuda_close(state);
    return slot;
}

static void expect_slot_planned(const rx_component *comp, const char *const *cfg, int B, int check_fp32) {
    rx_params *p = params_of(comp, cfg);
    for (int train = 1; train >= 0; train--) {
        double step = 0, request = 0;
        cr_assert_eq(rx_memory_plan_step(comp, p, B, train, 0, &step, &request, NULL), RX_OK, "%s", rx_last_error());
        const size_t planned = rx_cuda_scratch_size((size_t)request);
        const size_t real = slot_after_step(comp, p, RX_PRECISION_BF16, B, train);
        cr_log_info("%s %s at batch %d: bf16 slot %zu bytes, planned %zu (largest request %.0f)", comp->name,
                    train ? "training step" : "forward", B, real, planned, request);
        cr_expect_gt(request, 1048576.0, "%s: a request above one MiB, so the MiB rounding cannot hide a difference",
                     comp->name);
        cr_expect_gt(real, 0, "%s: a bf16 step made no bf16 copies", comp->name);
        cr_expect_leq(real, planned, "%s %s: the real slot %zu exceeds the plan %zu", comp->name,
                      train ? "training" : "forward", real, planned);
        cr_expect_eq(real, planned, "%s %s: slot %zu, plan %zu: the plan counts another request than dense.cu makes",
                     comp->name, train ? "training" : "forward", real, planned);
    }
    if (check_fp32) cr_expect_eq(slot_after_step(comp, p, RX_PRECISION_FP32, B, 1), 0, "%s: fp32 makes no bf16 slot", comp->name);
    rx_params_free(p);
}

Test(cuda_memory, bf16_slot_equals_the_plan_unet) {
    RX_CUDA_REQUIRE();
    expect_slot_planned(&rx_comp_model_unet, unet_cfg, 16, 0);
}

Test(cuda_memory, bf16_slot_equals_the_plan_dit) {
    RX_CUDA_REQUIRE();
    expect_slot_planned(&rx_comp_model_dit, dit_cfg, 4, 1);
}
