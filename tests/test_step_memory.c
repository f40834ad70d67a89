/* test_step_memory.c — a training step that frees as backward goes (c->release_in_backward).
 *
 * References: the same step without release (the plain tape replay) for the gradients, which
 * must be equal bit for bit (freeing changes where data lives, never what is computed); and
 * for the memory, the bound of the "planned step memory": with release, the step's
 * peak is the forward's activations (A = what the step arena holds when backward starts) plus
 * the gradients live at one time, where the plain replay keeps every activation gradient too.
 *
 * The arena's own free list is checked against its definition: a freed block is handed out
 * again (best fit, neighbours merged) and the bytes in use go down by what was freed. */
#include "test_models_fixture.h"
#include "registry/components.h"
#include "core/arena.h"
#include "runner/memory_plan.h"
#include "autograd/liveness.h"

// ---------------------------------------------------------------------------
// the arena's free list

Test(arena_free, reuses_merges_and_counts) {
    rx_arena *a = NULL;
    cr_assert_eq(rx_arena_create("t", 1 << 20, NULL, &a), RX_OK);
    char *p0 = rx_arena_data(a, 1000), *p1 = rx_arena_data(a, 1000), *p2 = rx_arena_data(a, 1000);
    char *p3 = rx_arena_data(a, 64);
    cr_assert(p0 && p1 && p2 && p3);
    cr_expect_eq(rx_arena_data_used(a), 3 * 1024 + 64, "each block rounds up to 64 bytes");
    cr_assert_eq(rx_arena_free(a, p1, 1000), RX_OK);
    cr_expect_eq(rx_arena_data_used(a), 2 * 1024 + 64);
    cr_expect_eq(rx_arena_data(a, 500), p1, "a smaller request takes the hole's start");
    cr_assert_eq(rx_arena_free(a, p1, 500), RX_OK);
    cr_assert_eq(rx_arena_free(a, p0, 1000), RX_OK);   /* p0 and p1 merge into one 2048-byte hole */
    cr_expect_eq(rx_arena_data(a, 2000), p0, "the merged hole holds 2000 bytes");
    cr_assert_eq(rx_arena_free(a, p3, 64), RX_OK);      /* the top of the chunk: the bump pointer drops */
    cr_assert_eq(rx_arena_free(a, p2, 1000), RX_OK);    /* and now p2 is the top too */
    cr_expect_eq(rx_arena_data(a, 3000), p2, "freed tops are handed out again from the bump pointer");
    char bogus[64];
    cr_expect_neq(rx_arena_free(a, bogus, 64), RX_OK, "a pointer the arena did not hand out is refused");
    /* in use at the end: the 2048-byte block (p0) and the 3008-byte one (p2), the most at any time */
    cr_expect_eq(rx_arena_data_used(a), 2048 + 3008);
    cr_expect_eq(rx_arena_data_peak(a), 2048 + 3008, "peak: the largest in use at once");
    rx_arena_reset(a);
    cr_expect_eq(rx_arena_data(a, 64), p0, "after a reset the first block is the chunk's start");
    rx_arena_destroy(a);
}

// ---------------------------------------------------------------------------
// a U-Net training step with and without release

static const char *const unet_cfg[] = {
    "sample_size", "16", "in_channels", "3", "out_channels", "3",
    "block_out_channels", "[32, 64]", "layers_per_block", "2", "norm_num_groups", "8",
    "attention_head_dim", "8", "down_block_types", "[DownBlock2D, AttnDownBlock2D]",
    "up_block_types", "[AttnUpBlock2D, UpBlock2D]", "num_classes", "3", NULL};

typedef struct {
    size_t forward_bytes, peak_bytes;   /* step arena: in use when backward starts; peak of the step */
    float *grads;                        /* every parameter's gradient, concatenated */
    int64_t n;
} step_result;

/* a small DiT (depth 3, 16 tokens of width 64, 4 heads), class-conditional, with dropout off */
static const char *const dit_cfg[] = {
    "sample_size", "8", "in_channels", "3", "patch_size", "2", "depth", "3", "hidden_size", "64",
    "num_heads", "4", "num_classes", "3", NULL};

/* forward and MSE on a fixed batch (the same values every call), checkpointed blocks when asked */
static rx_tensor *fixed_loss(rx_ctx *c, rx_model *m, int C, int S) {
    const int B = 4;
    rx_tensor *x = rx_empty(c, RX_SHAPE(B, C, S, S)), *y = rx_empty(c, RX_SHAPE(B, C, S, S));
    cr_assert(x && y);
    rx_test_randn(c, x, 1, 1.0f);
    rx_test_randn(c, y, 2, 1.0f);
    rx_tensor *t = rx_from_host(c, RX_SHAPE(B), (float[]){3, 250, 500, 999});
    rx_tensor *labels = rx_from_host(c, RX_SHAPE(B), (float[]){0, 1, 2, 3});
    rx_tensor *loss = rx_mse_loss(c, m->impl->forward(c, m, x, t, labels), y, NULL);
    cr_assert_not_null(loss, "%s", rx_last_error());
    return loss;
}

/* one training step (forward, MSE, backward) of `comp` on a fixed batch; the step arena
 * measured and the parameter gradients copied out. With fwd_plan, a first step learns the
 * forward plan (autograd/liveness.h) and the measured second step runs with it, its arena
 * peak counted from the start of that step. */
static step_result one_step_planned(const rx_component *comp, const char *const *cfg, int C, int S, int release,
                                    int checkpointing, int fwd_plan) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_params *p = fx_params(comp, cfg);
    rx_model *m = NULL;
    ASSERT_OK(rx_model_create(c, comp, p, 11, &m));
    rx_params_free(p);
    c->checkpointing = checkpointing;
    if (fwd_plan) {
        ASSERT_OK(rx_fwd_plan_create(c));
        rx_fwd_plan_begin(c);
        c->release_in_backward = release;
        ASSERT_OK(rx_backward(c, fixed_loss(c, m, C, S)));
        ASSERT_OK(rx_paramset_zero_grad(c, &m->params));
        rx_step_end(c);
        rx_arena_peak_reset(c->step);
        c->release_in_backward = 0;
        rx_fwd_plan_begin(c);
    }
    rx_tensor *loss = fixed_loss(c, m, C, S);
    step_result r = {.forward_bytes = rx_arena_data_used(c->step)};
    c->release_in_backward = release;
    ASSERT_OK(rx_backward(c, loss));
    r.peak_bytes = rx_arena_data_peak(c->step);
    r.n = rx_paramset_numel(&m->params);
    r.grads = malloc((size_t)r.n * sizeof *r.grads);
    for (int i = 0, off = 0; i < m->params.n; off += (int)m->params.t[i]->numel, i++)
        ASSERT_OK(rx_tensor_to_host(c, m->params.t[i]->grad, r.grads + off));
    rx_model_destroy(m);
    rx_ctx_destroy(c);
    return r;
}

static step_result one_step(const rx_component *comp, const char *const *cfg, int C, int S, int release,
                            int checkpointing) {
    return one_step_planned(comp, cfg, C, S, release, checkpointing, 0);
}

Test(step_memory, release_keeps_gradients_bit_identical_and_lowers_the_peak) {
    step_result plain = one_step(&rx_comp_model_unet, unet_cfg, 3, 16, 0, 0),
                freed = one_step(&rx_comp_model_unet, unet_cfg, 3, 16, 1, 0);
    cr_assert_eq(plain.n, freed.n);
    cr_expect_eq(memcmp(plain.grads, freed.grads, (size_t)plain.n * sizeof(float)), 0,
                 "gradients with release equal the plain replay's bit for bit");
    cr_expect_eq(plain.forward_bytes, freed.forward_bytes, "the forward is the same");
    /* plain: activations A stay and every activation gradient is added on top (about A again);
     * release: A plus the gradients live at one time, and A shrinks as backward goes */
    const double A = (double)plain.forward_bytes;
    cr_expect_gt(plain.peak_bytes, 1.6 * A, "plain peak %.2f MiB, activations %.2f MiB", plain.peak_bytes / 1048576.0,
                 A / 1048576.0);
    cr_expect_lt(freed.peak_bytes, 1.3 * A, "release peak %.2f MiB, activations %.2f MiB", freed.peak_bytes / 1048576.0,
                 A / 1048576.0);
    cr_log_info("step arena: activations %.2f MiB; peak plain %.2f MiB, with release %.2f MiB\n", A / 1048576.0,
                plain.peak_bytes / 1048576.0, freed.peak_bytes / 1048576.0);
    free(plain.grads);
    free(freed.grads);
}

/* a variant of the step with release (checkpointing, or the forward plan of autograd/liveness.h)
 * against the step itself: gradients bit for bit, less held when backward starts (at most
 * max_share of it) and a lower peak. Checkpointing keeps block inputs and outputs only, so its
 * peak is set by the largest block's recomputation, well below all activations (max_share 1/2);
 * the forward plan gives back the outputs no backward reads (conv outputs into residual adds,
 * projections into permutes) and keeps the rest */
static void expect_variant_matches(const rx_component *comp, const char *const *cfg, int C, int S, int ckpt,
                                   int fwd_plan, double max_share) {
    const char *what = ckpt ? "checkpointing" : "the forward plan";
    step_result plain = one_step(comp, cfg, C, S, 1, 0), v = one_step_planned(comp, cfg, C, S, 1, ckpt, fwd_plan);
    cr_assert_eq(plain.n, v.n);
    cr_expect_eq(memcmp(plain.grads, v.grads, (size_t)plain.n * sizeof(float)), 0,
                 "%s: gradients with %s equal the plain step's bit for bit", comp->name, what);
    cr_expect_lt(v.forward_bytes, max_share * plain.forward_bytes, "%s: forward holds %.3f MiB with %s, %.3f plain",
                 comp->name, v.forward_bytes / 1048576.0, what, plain.forward_bytes / 1048576.0);
    cr_expect_lt(v.peak_bytes, plain.peak_bytes, "%s: %s", comp->name, what);
    cr_log_info("%s: forward %.3f -> %.3f MiB, step peak %.3f -> %.3f MiB with %s\n", comp->name,
                plain.forward_bytes / 1048576.0, v.forward_bytes / 1048576.0, plain.peak_bytes / 1048576.0,
                v.peak_bytes / 1048576.0, what);
    free(plain.grads);
    free(v.grads);
}

/* the planning backend (runner/memory_plan.c) places the same tensors without running a kernel:
 * its step peak against the real CPU step's, which also holds what kernels allocate inside
 * themselves (norm statistics, a conv's workspace while it runs) */
static void expect_plan_close(const rx_component *comp, const char *const *cfg, int C, int S, int ckpt) {
    step_result real = one_step_planned(comp, cfg, C, S, 1, ckpt, !ckpt);   /* as the train stage runs it */
    rx_params *p = fx_params(comp, cfg);
    double planned = 0;
    ASSERT_OK(rx_memory_plan_step(comp, p, 4, 1, ckpt, &planned, NULL, NULL));
    rx_params_free(p);
    const double rel = fabs(planned - (double)real.peak_bytes) / (double)real.peak_bytes;
    cr_expect_lt(rel, 0.10, "%s%s: planned %.3f MiB, measured %.3f MiB", comp->name, ckpt ? " checkpointed" : "",
                 planned / 1048576.0, real.peak_bytes / 1048576.0);
    cr_log_info("%s%s: planned step peak %.3f MiB, measured %.3f MiB (%.1f %%)\n", comp->name, ckpt ? " checkpointed" : "",
                planned / 1048576.0, real.peak_bytes / 1048576.0, 100 * rel);
    free(real.grads);
}

Test(step_memory, planned_peak_within_10_percent_of_the_real_step) {
    expect_plan_close(&rx_comp_model_unet, unet_cfg, 3, 16, 0);
    expect_plan_close(&rx_comp_model_unet, unet_cfg, 3, 16, 1);
    expect_plan_close(&rx_comp_model_dit, dit_cfg, 3, 8, 0);
}

Test(step_memory, forward_plan_keeps_gradients_and_lowers_the_forward) {
    expect_variant_matches(&rx_comp_model_unet, unet_cfg, 3, 16, 0, 1, 1.0);
    expect_variant_matches(&rx_comp_model_dit, dit_cfg, 3, 8, 0, 1, 1.0);
}

Test(step_memory, checkpointed_unet_gradients_are_bit_identical) {
    expect_variant_matches(&rx_comp_model_unet, unet_cfg, 3, 16, 1, 0, 0.5);
}

Test(step_memory, checkpointed_dit_gradients_are_bit_identical) {
    expect_variant_matches(&rx_comp_model_dit, dit_cfg, 3, 8, 1, 0, 0.5);
}

// ---------------------------------------------------------------------------
// end to end: train.gradient_checkpointing changes no logged number of a run

#include "registry/registry.h"
#include "runner/pipeline.h"
#include "io/fsutil.h"
#include <jansson.h>

/* experiments/smoke/unet_ddpm.yaml (20 steps, log every 5) with the given overrides; the run dir */
static void smoke_run(const char *results, const char *checkpointing, char *run_dir, size_t n) {
    char set[64];
    snprintf(set, sizeof set, "train.gradient_checkpointing=%s", checkpointing);
    const char *sets[] = {set, "sample=null", "train.checkpoint_every=0"};
    rx_config *cfg = NULL;
    rx_config_errors errs = {0};
    rx_status st = rx_config_resolve("experiments/smoke/unet_ddpm.yaml", sets, 3, NULL, &cfg, &errs);
    cr_assert_eq(st, RX_OK, "%s", errs.n ? errs.items[0].message : rx_last_error());
    rx_config_errors_clear(&errs);
    free(errs.items);
    rx_run_options opt = {.results_root = results, .quiet = 1, .force = 1};
    int config_error = 0;
    cr_assert_eq(rx_run_config(cfg, &opt, run_dir, n, NULL, &config_error), RX_OK, "%s", rx_last_error());
    rx_config_free(cfg);
}

Test(step_memory, checkpointed_run_logs_the_same_losses, .timeout = 300) {
    char results[] = "/tmp/rx_test_ckpt_XXXXXX", plain[1024], ckpt[1024];
    cr_assert_not_null(mkdtemp(results));
    smoke_run(results, "false", plain, sizeof plain);
    smoke_run(results, "true", ckpt, sizeof ckpt);
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", plain);
    FILE *a = fopen(path, "r");
    snprintf(path, sizeof path, "%s/metrics.jsonl", ckpt);
    FILE *b = fopen(path, "r");
    cr_assert(a && b);
    char la[4096], lb[4096];
    int lines = 0;
    while (fgets(la, sizeof la, a)) {
        cr_assert_not_null(fgets(lb, sizeof lb, b), "the checkpointed run logged fewer lines");
        json_t *ja = json_loads(la, 0, NULL), *jb = json_loads(lb, 0, NULL);
        cr_assert(ja && jb);
        const char *keys[] = {"step", "loss", "grad_norm", "lr"};
        for (int k = 0; k < 4; k++)   /* the same doubles: the same float computations */
            cr_expect_eq(json_number_value(json_object_get(ja, keys[k])), json_number_value(json_object_get(jb, keys[k])),
                         "line %d: %s differs", lines, keys[k]);
        json_decref(ja);
        json_decref(jb);
        lines++;
    }
    cr_expect_geq(lines, 4, "20 steps logged every 5");
    fclose(a);
    fclose(b);
    if (!getenv("RX_KEEP_TMP")) rx_fs_remove_tree(results);
}

// ---------------------------------------------------------------------------
// a forward without grad gives each block's intermediates back when the block returns

static float *forward_out(int grad, size_t *peak, int64_t *numel) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_params *p = fx_params(&rx_comp_model_unet, unet_cfg);
    rx_model *m = NULL;
    ASSERT_OK(rx_model_create(c, &rx_comp_model_unet, p, 11, &m));
    rx_params_free(p);
    rx_tensor *x = rx_empty(c, RX_SHAPE(4, 3, 16, 16));
    cr_assert(x);
    rx_test_randn(c, x, 1, 1.0f);
    rx_tensor *t = rx_from_host(c, RX_SHAPE(4), (float[]){3, 250, 500, 999});
    rx_tensor *labels = rx_from_host(c, RX_SHAPE(4), (float[]){0, 1, 2, 3});
    rx_set_grad_enabled(c, grad);
    rx_tensor *y = m->impl->forward(c, m, x, t, labels);
    cr_assert_not_null(y, "%s", rx_last_error());
    *numel = y->numel;
    float *h = malloc((size_t)y->numel * sizeof *h);
    ASSERT_OK(rx_tensor_to_host(c, y, h));
    *peak = rx_arena_data_peak(c->step);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
    return h;
}

Test(step_memory, forward_without_grad_frees_block_intermediates) {
    size_t peak_grad = 0, peak_nograd = 0;
    int64_t n1 = 0, n2 = 0;
    float *with_grad = forward_out(1, &peak_grad, &n1), *without = forward_out(0, &peak_nograd, &n2);
    cr_assert_eq(n1, n2);
    cr_expect_eq(memcmp(with_grad, without, (size_t)n1 * sizeof(float)), 0, "the same output, bit for bit");
    /* with grad every activation stays for backward; without, one block's at a time plus the skips */
    cr_expect_lt(peak_nograd, peak_grad / 2, "forward peak %.2f MiB without grad, %.2f MiB with",
                 peak_nograd / 1048576.0, peak_grad / 1048576.0);
    cr_log_info("forward: step arena peak %.2f MiB with grad, %.2f MiB without\n", peak_grad / 1048576.0,
                peak_nograd / 1048576.0);
    free(with_grad);
    free(without);
}

// ---------------------------------------------------------------------------
// the forward plan when the graph changes between steps (autograd/liveness.h)

/* y1 = x W^T, s = 2 y1, y2 = y1 + s, loss = mean(y2 * y2). Neither scale's nor add's backward
 * reads its input, so the plan gives y1 back right after the add. With `reread`, a mul then
 * reads y1 again, which the learned graph did not; with `scale_w`, the first recorded node is a
 * scale of W instead of the linear. Returns the loss (NULL on an error). */
static rx_tensor *small_graph(rx_ctx *c, rx_tensor *W, int reread, int scale_w) {
    rx_tensor *x = rx_full(c, RX_SHAPE(4, 8), 0.5f);
    rx_tensor *y1 = rx_linear(c, x, scale_w ? rx_scale(c, W, 1.0f, 0.0f) : W, NULL);
    rx_tensor *y2 = rx_add(c, y1, rx_scale(c, y1, 2.0f, 0.0f));
    if (reread) y2 = rx_mul(c, y2, y1);
    return rx_mean(c, rx_mul(c, y2, y2));
}

Test(step_memory, forward_plan_stops_when_the_graph_changes) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *W = rx_param(c, "w", RX_SHAPE(8, 8), 1);
    rx_test_randn(c, W, 5, 0.3f);
    ASSERT_OK(rx_fwd_plan_create(c));
    c->release_in_backward = 1;
    /* learn on the plain graph, then the same graph runs with the plan */
    for (int step = 0; step < 2; step++) {
        rx_fwd_plan_begin(c);
        rx_tensor *loss = small_graph(c, W, 0, 0);
        cr_assert_not_null(loss, "%s", rx_last_error());
        ASSERT_OK(rx_backward(c, loss));
        rx_step_end(c);
    }
    int64_t nodes = 0, frees = 0;
    rx_fwd_plan_size(c, &nodes, &frees);
    cr_assert_gt(frees, 0, "the plan gives something back (%lld nodes)", (long long)nodes);
    /* a graph that differs from its first node: the plan does not follow it, nothing is given
     * back, and the step runs (and then learns the new graph) */
    rx_fwd_plan_begin(c);
    rx_tensor *loss = small_graph(c, W, 1, 1);
    cr_assert_not_null(loss, "a graph that leaves the plan at once runs: %s", rx_last_error());
    ASSERT_OK(rx_backward(c, loss));
    rx_step_end(c);
    /* relearn the plain graph, then a graph equal to it until after the add that re-reads y1:
     * the op fails with an internal error naming the plan instead of reading freed memory */
    rx_fwd_plan_begin(c);
    ASSERT_OK(rx_backward(c, small_graph(c, W, 0, 0)));
    rx_step_end(c);
    rx_fwd_plan_begin(c);
    cr_assert_null(small_graph(c, W, 1, 0), "re-reading a tensor the plan gave back must fail");
    cr_assert_eq(rx_ctx_status(c), RX_ERR_INTERNAL);
    cr_assert(strstr(rx_last_error(), "given back by the forward plan"), "%s", rx_last_error());
    rx_ctx_destroy(c);
}

// ---------------------------------------------------------------------------
// the bf16 operand slot: with precision bf16 the CUDA backend rounds each GEMM's and
// convolution's operands into one scratch slot (cuda/dense.cu), whose size is the largest
// request of any op. Reference: the request of each conv2d / linear / matmul node of a real CPU
// step's tape, summed here from dense.cu's copies (written out below, not the planner's code):
// every array 2 bytes per value, rounded up to 256 bytes;
//   conv2d   forward x, w, y;          backward (dx or dw wanted) gy, and w then gw in one array,
//                                      gx then x in another (the data pass's, reused by the filter pass)
//   linear   forward x [R,in], w;      backward dx: gy [R,out], w;  dw: gy, x  (one GEMM each)
//   matmul   forward op(a), op(b);     backward da: gy, b;  db: a, gy          (one GEMM each)

static double ref_span(int64_t n) { return ceil(2.0 * (double)n / 256.0) * 256.0; }

static double ref_request(const rx_node *n, int backward) {
    const rx_tensor *x = n->in[0], *w = n->in[1], *y = n->out;
    const int gx = x->requires_grad, gw = w->requires_grad;
    switch (n->op) {
    case RX_OP_CONV2D:
        if (!backward) return ref_span(x->numel) + ref_span(w->numel) + ref_span(y->numel);
        return gx || gw ? ref_span(y->numel) + ref_span(w->numel) + ref_span(x->numel) : 0;
    case RX_OP_LINEAR:
        if (!backward) return ref_span(x->numel) + ref_span(w->numel);
        return fmax(gx ? ref_span(y->numel) + ref_span(w->numel) : 0, gw ? ref_span(y->numel) + ref_span(x->numel) : 0);
    case RX_OP_MATMUL:   /* a and b hold every batch's matrices: their sizes are op(a)'s and op(b)'s */
        if (!backward) return ref_span(x->numel) + ref_span(w->numel);
        return fmax(gx ? ref_span(y->numel) + ref_span(w->numel) : 0, gw ? ref_span(x->numel) + ref_span(y->numel) : 0);
    default:
        return 0;
    }
}

/* the largest request of the forward and of the backward of a real CPU step's tape (B = 4) */
static void ref_bf16_requests(const rx_component *comp, const char *const *cfg, int C, int S, double *fwd, double *bwd) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_params *p = fx_params(comp, cfg);
    rx_model *m = NULL;
    ASSERT_OK(rx_model_create(c, comp, p, 11, &m));
    rx_params_free(p);
    rx_tensor *loss = fixed_loss(c, m, C, S);
    *fwd = *bwd = 0;
    int dense = 0;
    for (const rx_node *n = c->tape; n; n = n->prev) {
        if (n->op != RX_OP_CONV2D && n->op != RX_OP_LINEAR && n->op != RX_OP_MATMUL) continue;
        dense++;
        *fwd = fmax(*fwd, ref_request(n, 0));
        if (n->out->requires_grad) *bwd = fmax(*bwd, ref_request(n, 1));
    }
    cr_assert_gt(dense, 4, "%s: %d GEMM/conv nodes on the tape", comp->name, dense);
    (void)loss;
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}

static void expect_bf16_planned(const rx_component *comp, const char *const *cfg, int C, int S) {
    double fwd = 0, bwd = 0;
    ref_bf16_requests(comp, cfg, C, S, &fwd, &bwd);
    rx_params *p = fx_params(comp, cfg);
    double step = 0, train = 0, train_ckpt = 0, sample = 0;
    ASSERT_OK(rx_memory_plan_step(comp, p, 4, 1, 0, &step, &train, NULL));
    ASSERT_OK(rx_memory_plan_step(comp, p, 4, 1, 1, &step, &train_ckpt, NULL));
    ASSERT_OK(rx_memory_plan_step(comp, p, 4, 0, 0, &step, &sample, NULL));
    rx_params_free(p);
    cr_expect_eq(train, fmax(fwd, bwd), "%s: planned training request %.0f bytes, formula %.0f (forward %.0f, backward %.0f)",
                 comp->name, train, fmax(fwd, bwd), fwd, bwd);
    cr_expect_eq(train_ckpt, train, "%s: checkpointing recomputes the same GEMMs: %.0f vs %.0f", comp->name, train_ckpt, train);
    cr_expect_eq(sample, fwd, "%s: planned sampling request %.0f bytes, formula %.0f", comp->name, sample, fwd);
    cr_log_info("%s: largest bf16 request forward %.0f, backward %.0f bytes\n", comp->name, fwd, bwd);
}

Test(step_memory, planned_bf16_operands_match_the_formula_over_the_tape) {
    expect_bf16_planned(&rx_comp_model_unet, unet_cfg, 3, 16);
    expect_bf16_planned(&rx_comp_model_dit, dit_cfg, 3, 8);
}

/* the memory plan of a config: the bf16 slot only for precision bf16 on CUDA, in whole MiB
 * (the slot grows in MiB steps), added to the training and sampling peaks; sampling after
 * training keeps training's slot (never shrunk) */
static rx_memory_plan plan_of_tiny(const char *backend, const char *precision, const char *sample_precision) {
    char b[64], p[64], sp[64];
    snprintf(b, sizeof b, "backend=%s", backend);
    snprintf(p, sizeof p, "precision=%s", precision);
    snprintf(sp, sizeof sp, "sample.precision=%s", sample_precision);
    const char *sets[] = {b, p, sp, "train.batch_size=512", "sample.batch_size=16"};
    rx_config *cfg = NULL;
    rx_config_errors errs = {0};
    rx_status st = rx_config_resolve("tests/configs/runner/tiny.yaml", sets, 5, NULL, &cfg, &errs);
    cr_assert_eq(st, RX_OK, "%s", errs.n ? errs.items[0].message : rx_last_error());
    rx_config_errors_clear(&errs);
    free(errs.items);
    rx_memory_plan plan;
    ASSERT_OK(rx_memory_plan_config(cfg, &plan));
    rx_config_free(cfg);
    return plan;
}

static double whole_mib(double bytes) { return ceil(bytes / 1048576.0) * 1048576.0; }

Test(step_memory, config_plan_counts_the_bf16_slot_on_cuda_only) {
    /* tiny.yaml's U-Net at batch 512 (sampling: 16 images, cfg doubles them); the step's request
     * is the planner's (checked against the tape's formula above), rounded here to whole MiB */
    rx_memory_plan bf16 = plan_of_tiny("cuda", "bf16", "null"), tf32 = plan_of_tiny("cuda", "tf32", "null"),
                   cpu = plan_of_tiny("cpu", "bf16", "null"), mixed = plan_of_tiny("cuda", "fp32", "bf16");
    const rx_component *mc = NULL;
    const rx_params *mp = NULL;
    rx_config *cfg = NULL;
    rx_config_errors errs = {0};
    ASSERT_OK(rx_config_resolve("tests/configs/runner/tiny.yaml", (const char *[]){"backend=cuda"}, 1, NULL, &cfg, &errs));
    ASSERT_OK(rx_config_section_params(cfg, "model", &mc, &mp));
    double step = 0, request = 0;
    ASSERT_OK(rx_memory_plan_step(mc, mp, 512, 1, 0, &step, &request, NULL));
    rx_config_free(cfg);
    free(errs.items);
    cr_expect_gt(request, 1048576.0, "a request above one MiB, so the rounding is seen: %.0f", request);
    cr_expect_eq(bf16.train_bf16, whole_mib(request), "slot %.0f for a request of %.0f bytes", bf16.train_bf16, request);
    cr_expect_eq(bf16.train_peak, tf32.train_peak + bf16.train_bf16, "training peak: tf32's plus the slot");
    cr_expect_eq(bf16.sample_bf16, bf16.train_bf16, "sampling keeps training's (larger) slot");
    cr_expect_eq(bf16.sample_peak, tf32.sample_peak + bf16.sample_bf16);
    cr_expect(tf32.train_bf16 == 0 && tf32.sample_bf16 == 0, "tf32 makes no bf16 copies");
    cr_expect(cpu.train_bf16 == 0 && cpu.sample_bf16 == 0 && cpu.train_peak == tf32.train_peak,
              "the CPU backend computes bf16 in fp32: no slot");
    cr_expect_eq(mixed.train_bf16, 0, "precision fp32 trains without copies");
    cr_expect(mixed.sample_bf16 > 0 && mixed.sample_bf16 < bf16.train_bf16, "sample.precision bf16: sampling's own slot "
              "(a forward at batch 32, smaller than training's backward): %.0f", mixed.sample_bf16);
}
