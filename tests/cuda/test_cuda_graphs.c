/* test_cuda_graphs.c — CUDA graphs (issue 16 §5; kernels/cuda/graph.cu): a training step captured
 * once and replayed gives bit-identical parameters to the same steps run eagerly.
 * Reference: the eager CUDA run of the same steps in a fresh context (same device, same
 * kernels, so equality is exact, not a tolerance). In the emulator (tests/cuda/emu) capture
 * records the launches, copies and cuBLAS/cuDNN calls and the replay runs them; on a GPU the
 * same test checks the real cudaGraph (make test-cuda). Also: a host sync inside a capture is
 * refused with the runtime's error (so a step that still waits for the device cannot be
 * captured by accident). */
#include "registry/components.h"
#include "cuda_parity.h"
#include "autograd/optim.h"
#include "blocks/model.h"
#include "core/params.h"

/* a small U-Net with attention (no dropout: its mask is keyed by the host's step counter) */
static const char *const small_unet[] = {
    "sample_size", "8", "in_channels", "3", "out_channels", "3", "block_out_channels", "[16, 32]",
    "layers_per_block", "1", "norm_num_groups", "8", "attention_head_dim", "8",
    "down_block_types", "[DownBlock2D, AttnDownBlock2D]", "up_block_types", "[AttnUpBlock2D, UpBlock2D]", NULL};

enum { B = 2, S = 8, STEPS = 4 };

typedef struct {
    rx_ctx *c;
    void *state;
    rx_model *m;
    rx_adamw opt;
    rx_paramset ema;
    rx_tensor *x, *t, *y, *w;   /* the step's inputs: persistent, so a replay finds them in place */
} graph_run;

static void run_open(graph_run *r, int precision) {
    memset(r, 0, sizeof *r);
    const rx_backend *be = NULL;
    const char *dev = NULL;
    cr_assert_eq(rx_cuda_open(0, precision, 1, &be, &r->state, &dev), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_ctx_create(be, r->state, PX_STEP_CHUNK, &r->c), RX_OK, "%s", rx_last_error());
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults(rx_comp_model_unet.name, rx_comp_model_unet.params, &p), RX_OK);
    for (int i = 0; small_unet[i]; i += 2) cr_assert_eq(rx_params_set(p, small_unet[i], small_unet[i + 1]), RX_OK);
    cr_assert_eq(rx_model_create(r->c, &rx_comp_model_unet, p, 7, &r->m), RX_OK, "%s", rx_last_error());
    rx_params_free(p);
    const rx_adamw_config cfg = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                                 .grad_clip = 0.5f};
    cr_assert_eq(rx_adamw_init(r->c, &r->opt, &r->m->params, &cfg), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_ema_create(r->c, &r->m->params, &r->ema), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_adamw_attach_ema(&r->opt, &r->ema, 0.9f, 2), RX_OK, "%s", rx_last_error());
    const int64_t xs[4] = {B, 3, S, S}, bs[1] = {B};
    r->x = rx_param(r->c, NULL, 4, xs, 0);
    r->y = rx_param(r->c, NULL, 4, xs, 0);
    r->t = rx_param(r->c, NULL, 1, bs, 0);
    r->w = rx_param(r->c, NULL, 1, bs, 0);
    cr_assert(r->x && r->y && r->t && r->w, "%s", rx_last_error());
    r->c->training = 1;
    rx_set_grad_enabled(r->c, 1);
}

static void run_close(graph_run *r) {
    rx_adamw_free(&r->opt);
    rx_paramset_free(&r->ema);
    rx_model_destroy(r->m);
    rx_ctx_destroy(r->c);
    rx_cuda_close(r->state);
}

/* step k's batch, uploaded into the fixed input tensors (outside any graph) */
static void upload_batch(graph_run *r, int k) {
    float x[B * 3 * S * S], y[B * 3 * S * S], t[B], w[B];
    rx_rng_normal(5, RX_STREAM(RX_RNG_TEST, 40 + (uint64_t)k), 0, x, B * 3 * S * S);
    rx_rng_normal(5, RX_STREAM(RX_RNG_TEST, 80 + (uint64_t)k), 0, y, B * 3 * S * S);
    for (int i = 0; i < B; i++) { t[i] = (float)((k * 97 + i * 331) % 1000); w[i] = 1.0f + 0.25f * (float)i; }
    cr_assert_eq(rx_tensor_from_host(r->c, r->x, x), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_tensor_from_host(r->c, r->y, y), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_tensor_from_host(r->c, r->t, t), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_tensor_from_host(r->c, r->w, w), RX_OK, "%s", rx_last_error());
}

/* the device work of one step after the optimizer's prepare: forward, loss, backward,
 * AdamW + EMA, zeroed gradients, step arena reset (host bookkeeping only) */
static rx_status step_body(graph_run *r) {
    rx_ctx *c = r->c;
    rx_tensor *loss = rx_mse_loss(c, r->m->impl->forward(c, r->m, r->x, r->t, NULL), r->y, r->w);
    if (!loss) return rx_ctx_status(c);
    RX_TRY(rx_backward(c, loss));
    RX_TRY(rx_adamw_apply(c, &r->opt));
    RX_TRY(rx_paramset_zero_grad(c, &r->m->params));
    rx_step_end(c);
    return RX_OK;
}

static float *params_and_ema(graph_run *r, int64_t *n) {
    *n = 2 * rx_model_param_count(r->m);
    float *h = malloc((size_t)*n * sizeof *h), *at = h;
    cr_assert(h);
    for (int s = 0; s < 2; s++) {
        const rx_paramset *ps = s ? &r->ema : &r->m->params;
        for (int i = 0; i < ps->n; i++, at += ps->t[i - 1]->numel)
            cr_assert_eq(rx_tensor_to_host(r->c, ps->t[i], at), RX_OK, "%s", rx_last_error());
    }
    return h;
}

static float lr_of(int k) { return 1e-3f * (float)(STEPS + 1 - k); }   /* a different lr each step */

/* eager and replayed steps at one precision: fp32 (cublasSgemm, cuDNN fp32) or bf16 (cublasGemmEx
 * and cuBLASLt on bf16 operand copies, cuDNN bf16, the tensor-core attention forward) */
static void replay_matches_eager(int precision) {
    cr_assert(rx_cuda_graph_begin && rx_cuda_graph_end && rx_cuda_graph_launch && rx_cuda_graph_free);
    float *res[2];
    int64_t n = 0;
    for (int g = 0; g < 2; g++) {
        graph_run r;
        run_open(&r, precision);
        rx_cuda_graph *graph = NULL;
        for (int k = 1; k <= STEPS; k++) {
            upload_batch(&r, k);
            cr_assert_eq(rx_adamw_prepare(r.c, &r.opt, lr_of(k)), RX_OK, "%s", rx_last_error());
            if (!g || k == 1) {   /* eager; and the graph run's warm-up (algorithm search, scratch sizing) */
                cr_assert_eq(step_body(&r), RX_OK, "step %d: %s", k, rx_last_error());
                continue;
            }
            if (!graph) {   /* captured at step 2: the capture itself runs nothing, so replay it at once */
                int64_t nb;
                float *before = params_and_ema(&r, &nb);
                cr_assert_eq(rx_cuda_graph_begin(r.c), RX_OK, "%s", rx_last_error());
                const rx_status s = step_body(&r);
                const rx_status e = rx_cuda_graph_end(r.c, &graph);
                cr_assert_eq(s, RX_OK, "inside the capture: %s", rx_last_error());
                cr_assert_eq(e, RX_OK, "end of the capture: %s", rx_last_error());
                float *after = params_and_ema(&r, &nb);
                cr_expect_eq(memcmp(before, after, (size_t)nb * sizeof(float)), 0, "the capture ran nothing");
                free(before); free(after);
            }
            cr_assert_eq(rx_cuda_graph_launch(r.c, graph), RX_OK, "%s", rx_last_error());
        }
        rx_optim_stats st;
        cr_assert_eq(rx_adamw_read(r.c, &r.opt, &st), RX_OK, "%s", rx_last_error());
        cr_expect_eq(st.lr, lr_of(STEPS), "the last replay used the last step's lr (%g)", st.lr);
        cr_expect_gt(st.grad_norm, 0);
        cr_expect_eq(r.opt.step, STEPS);
        res[g] = params_and_ema(&r, &n);
        rx_cuda_graph_free(graph);
        run_close(&r);
    }
    int64_t differ = 0;
    for (int64_t i = 0; i < n; i++) differ += memcmp(&res[0][i], &res[1][i], sizeof(float)) != 0;
    cr_expect_eq(differ, 0, "%lld of %lld parameter/EMA values differ between eager and graph replay", (long long)differ,
                 (long long)n);
    free(res[0]); free(res[1]);
}

Test(cuda_graphs, replayed_training_step_is_bit_identical_to_eager) {
    RX_CUDA_REQUIRE();
    replay_matches_eager(RX_PRECISION_FP32);
}

Test(cuda_graphs, replayed_bf16_training_step_is_bit_identical_to_eager) {
    RX_CUDA_REQUIRE();
    replay_matches_eager(RX_PRECISION_BF16);
}

/* A capture that waits for the device (a loss or norm read-back inside the step) fails with the
 * runtime's error, names the call, and ends with no graph. */
Test(cuda_graphs, a_host_sync_inside_the_capture_is_refused) {
    RX_CUDA_REQUIRE();
    graph_run r;
    run_open(&r, RX_PRECISION_FP32);
    upload_batch(&r, 1);
    cr_assert_eq(rx_adamw_queue(r.c, &r.opt, 1e-3f), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_cuda_graph_begin(r.c), RX_OK, "%s", rx_last_error());
    rx_optim_stats st;
    cr_expect_neq(rx_adamw_read(r.c, &r.opt, &st), RX_OK, "a read-back during capture");
    cr_expect(strstr(rx_last_error(), "capturing"), "%s", rx_last_error());
    rx_cuda_graph *graph = NULL;
    cr_expect_neq(rx_cuda_graph_end(r.c, &graph), RX_OK);
    cr_expect(strstr(rx_last_error(), "cudaStreamEndCapture"), "%s", rx_last_error());
    cr_expect_null(graph);
    cr_expect_eq(rx_adamw_read(r.c, &r.opt, &st), RX_OK, "after the capture the stream works again: %s", rx_last_error());
    run_close(&r);
}

/* The class-label embedding checks its indices without waiting for the device (a wait per
 * forward was a host sync per step, and is refused inside a capture): a bad index is reported,
 * naming its position and the table, by the next read from the device; the op itself reads
 * nothing out of bounds (its row is NaN) and the report is given once. Inside a capture the
 * check is recorded like any launch. Reference: the CPU backend's immediate error for the same
 * index (same position named). */
Test(cuda_graphs, embedding_index_check_is_deferred_to_the_next_read) {
    px_pair p;
    px_open(&p, 0, 0);
    const float table[5 * 4] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
    const float bad[4] = {0, 2, 7, 1}, good[4] = {4, 0, 3, 3};
    const int64_t ts[2] = {5, 4}, is[1] = {4};
    rx_tensor *T[2], *I[2];
    for (int b = 0; b < 2; b++) {
        rx_ctx *c = b ? p.gpu : p.cpu;
        T[b] = rx_param(c, "table", 2, ts, 0);
        I[b] = rx_param(c, NULL, 1, is, 0);
        cr_assert(T[b] && I[b]);
        cr_assert_eq(rx_tensor_from_host(c, T[b], table), RX_OK);
        cr_assert_eq(rx_tensor_from_host(c, I[b], bad), RX_OK);
    }
    cr_expect_null(rx_embedding(p.cpu, T[0], I[0]), "the CPU refuses at once");
    cr_expect(strstr(rx_last_error(), "idx[2]"), "cpu: %s", rx_last_error());
    rx_clear_error();
    rx_step_end(p.cpu);
    rx_tensor *y = rx_embedding(p.gpu, T[1], I[1]);
    cr_assert(y, "the op queues without waiting: %s", rx_last_error());
    float h[16];
    cr_expect_eq(rx_tensor_to_host(p.gpu, y, h), RX_ERR_ARG, "the next read reports it");
    cr_expect(strstr(rx_last_error(), "idx[2] = 7") && strstr(rx_last_error(), "[5,4]"), "%s", rx_last_error());
    cr_expect_eq(rx_tensor_to_host(p.gpu, y, h), RX_OK, "reported once: %s", rx_last_error());
    for (int d = 0; d < 4; d++) {
        cr_expect_eq(h[4 + d], table[8 + d], "row 1 = table row 2");
        cr_expect(isnan(h[8 + d]), "the bad row reads nothing: NaN");
    }
    rx_step_end(p.gpu);
    /* a good lookup inside a capture: recorded (no refused wait), replayed, right values */
    cr_assert_eq(rx_tensor_from_host(p.gpu, I[1], good), RX_OK);
    cr_assert_eq(rx_cuda_graph_begin(p.gpu), RX_OK, "%s", rx_last_error());
    y = rx_embedding(p.gpu, T[1], I[1]);
    rx_cuda_graph *g = NULL;
    const rx_status e = rx_cuda_graph_end(p.gpu, &g);
    cr_assert(y, "embedding inside a capture: %s", rx_last_error());
    cr_assert_eq(e, RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_cuda_graph_launch(p.gpu, g), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_tensor_to_host(p.gpu, y, h), RX_OK, "%s", rx_last_error());
    for (int i = 0; i < 4; i++)
        for (int d = 0; d < 4; d++) cr_expect_eq(h[i * 4 + d], table[(int)good[i] * 4 + d]);
    rx_cuda_graph_free(g);
    px_close(&p);
}
