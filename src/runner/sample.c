/* sample.c — the sample stage: the trained (EMA) network through a guided sampler.
 *
 * The diffusion layer sees the network as a host-array callback (diffusion.h); here that
 * callback uploads x and t, runs the model's forward with grad off and downloads the
 * output. Image i's noise is keyed by (seed, i, step), so samples do not depend on the
 * batch size. Output: samples/grid.png (class-conditional: one row per class) and
 * samples/samples.safetensors (uint8 images [N,C,H,W] + int32 labels), which eval reads.
 * During training (train.sample_every) the same grid from the weights so far:
 * samples/grid_step<NNNNNN>.png (rx_sample_preview).
 * The network's calls run at sample.precision (the top-level precision when null); the
 * backend is back at the top-level precision between them.
 * Data-parallel (dist/dist.h): the sample stage's images are split over the ranks, each
 * generating a contiguous share of the indices (same noise: it is keyed by the index), and
 * gathered on rank 0, which writes them; previews stay rank 0's (the others are training). */
#include "experiment.h"
#include "checkpoint.h"
#include "io/png.h"
#include "io/safetensors.h"
#include "runner/progress.h"
#include "dist/dist.h"
#include "kernels/cuda/cuda_api.h"
#include "registry/components.h"
#include <math.h>
#include <string.h>

/* CUDA graphs of the network call (`cuda_graphs: true`, kernels/cuda/graph.cu): per batch shape
 * (n rows: the batch, or with CFG the batched cond + uncond rows), the first call runs eagerly
 * (it sizes cuDNN's workspaces, the scratch and the step arena), the second is captured and
 * every later call of that shape replays it: one launch per sampler step instead of the
 * forward's thousands. The timesteps, images and labels change from step to step: they are the
 * call's first step-arena tensors, uploaded before the replay into the addresses the graph was
 * captured with (checked each call: a call that finds other addresses, or a scratch reallocated
 * since the capture by another shape's warm-up, runs eagerly and the shape is captured again,
 * never replayed on the wrong buffers), and the output is read from its
 * captured address after it. A graph lives as long as its generator: the weights it reads (the
 * EMA swapped in or not, which model) are fixed from rx_generator_open to close. */
#define NET_GRAPH_SHAPES 4
typedef struct net_graph {
    int n, calls;               /* rows; calls of this shape so far (0: unused slot) */
    rx_cuda_graph *graph;
    const void *x, *t, *l;      /* the input addresses it was captured with */
    const float *y;             /* its output's */
    uint64_t scratch_moves;     /* the scratch's reallocations then (rx_cuda_scratch_moves) */
} net_graph;

typedef struct model_fn_ctx {
    rx_experiment *ex;
    int C, H, W;
    int graphs;                         /* capture and replay the calls (CUDA, cuda_graphs) */
    net_graph ng[NET_GRAPH_SHAPES];
    int64_t eager, captures, replayed;  /* network calls */
    char why[320];                      /* a capture that failed: graphs off for this generator */
} model_fn_ctx;

static void model_fn_ctx_free(model_fn_ctx *mc) {
    if (!mc) return;
    for (int k = 0; k < NET_GRAPH_SHAPES; k++) rx_cuda_graph_free(mc->ng[k].graph);
    free(mc);
}

/* the shape's slot (a new one while there is room); NULL: eager */
static net_graph *net_graph_of(model_fn_ctx *mc, int n) {
    if (!mc->graphs) return NULL;
    for (int k = 0; k < NET_GRAPH_SHAPES; k++)
        if (mc->ng[k].calls == 0 || mc->ng[k].n == n) {
            mc->ng[k].n = n;
            return &mc->ng[k];
        }
    return NULL;   /* a fifth shape in one generator: its calls run eagerly */
}

/* the network's output for X, T, L (the eps half of a learn_sigma model), on the step arena */
static rx_tensor *net_forward(rx_ctx *c, rx_model *m, int C, rx_tensor *X, rx_tensor *T, rx_tensor *L) {
    rx_tensor *Y = m->impl->forward(c, m, X, T, L);
    return Y && m->learn_sigma ? rx_slice(c, Y, 1, 0, C) : Y;
}

/* the forward of g's shape captured into g (it runs nothing) and recorded with its addresses;
 * a failure turns the generator's graphs off, keeping the reason */
static rx_status net_capture(model_fn_ctx *mc, net_graph *g, rx_tensor *X, rx_tensor *T, rx_tensor *L,
                             const float **y) {
    rx_ctx *c = mc->ex->ctx;
    RX_TRY(rx_cuda_graph_begin(c));
    rx_tensor *Y = net_forward(c, mc->ex->model, mc->C, X, T, L);
    rx_status s = Y ? RX_OK : rx_ctx_status(c);
    if (s) snprintf(mc->why, sizeof mc->why, "%s", rx_last_error());
    rx_status e = rx_cuda_graph_end(c, &g->graph);
    if (!s && e) snprintf(mc->why, sizeof mc->why, "%s", rx_last_error());
    if (s || e) {
        rx_clear_error();
        rx_ctx_clear_error(c);
        mc->graphs = 0;
        return RX_OK;   /* the caller runs the call eagerly */
    }
    *g = (net_graph){g->n, g->calls, g->graph, X->data, T->data, L ? L->data : NULL, Y->data, rx_cuda_scratch_moves(c)};
    mc->captures++;
    *y = Y->data;
    return RX_OK;
}

static rx_status model_denoise(void *vctx, int n, const float *x, const float *t, const int32_t *labels, float *out) {
    model_fn_ctx *mc = vctx;
    rx_experiment *ex = mc->ex;
    rx_ctx *c = ex->ctx;
    rx_model *m = ex->model;
    int64_t d = (int64_t)mc->C * mc->H * mc->W;
    /* the network at sample.precision; what runs between its calls (an eval's feature extractor,
     * which must see generated and reference images alike) at the top-level precision */
    RX_TRY(rx_experiment_use_precision(ex, ex->sample_precision));
    rx_tensor *X = rx_from_host(c, RX_SHAPE(n, mc->C, mc->H, mc->W), x);
    rx_tensor *T = rx_from_host(c, RX_SHAPE(n), t);
    rx_tensor *L = NULL;
    if (m->num_classes > 0 && labels) {
        L = rx_empty(c, RX_SHAPE(n));
        if (L) {
            float *lf = malloc(n * sizeof *lf);
            if (!lf) return rx_fail(RX_ERR_OOM, "sample: out of memory");
            for (int i = 0; i < n; i++) lf[i] = (float)labels[i];
            rx_status s = rx_tensor_from_host(c, L, lf);
            free(lf);
            RX_TRY(s);
        }
    }
    rx_status s = X && T ? RX_OK : rx_ctx_status(c);
    net_graph *g = s ? NULL : net_graph_of(mc, n);
    const float *y = NULL;
    if (g && g->graph && (g->x != X->data || g->t != T->data || g->l != (L ? L->data : NULL) ||
                          g->scratch_moves != rx_cuda_scratch_moves(c))) {
        rx_cuda_graph_free(g->graph);   /* the inputs or the scratch moved: capture this shape again */
        g->graph = NULL;
        g->calls = 0;
    }
    if (g && g->graph) {
        s = rx_cuda_graph_launch(c, g->graph);
        y = g->y;
        mc->replayed++;
    } else if (g && g->calls > 0) {
        s = net_capture(mc, g, X, T, L, &y);
        if (!s && y) {
            s = rx_cuda_graph_launch(c, g->graph);
            mc->replayed++;
        }
    }
    if (!s && !y) {   /* eager: the warm-up call of a shape, or graphs off */
        rx_tensor *Y = net_forward(c, m, mc->C, X, T, L);
        if (Y && Y->numel != n * d)
            s = rx_fail(RX_ERR_SHAPE, "sample: model output %s for %d images of %lld values", RX_SHAPE_STR(Y), n, (long long)d);
        else if (!Y) s = rx_ctx_status(c);
        else y = Y->data;
        mc->eager++;
    }
    if (g) g->calls++;
    if (!s) s = c->mem->to_host(c, out, y, (size_t)n * d * sizeof *out);
    rx_step_end(c);
    rx_status s2 = rx_experiment_use_precision(ex, ex->precision);
    return s ? s : s2;
}

/* labels for image i: the config's list (cycled), or one row per class: i / cols mod K */
static int32_t label_of(const rx_experiment *ex, int64_t i, int cols) {
    int K = ex->model->num_classes;
    if (K <= 0) return 0;
    int n;
    const int64_t *list = rx_param_is_null(ex->sample, "class_labels") ? NULL : rx_param_int_list(ex->sample, "class_labels", &n);
    if (list && n > 0) return (int32_t)list[i % n];
    return (int32_t)((i / cols) % K);
}

static void grid_shape(const rx_experiment *ex, int num_images, int *rows, int *cols) {
    int K = ex->model->num_classes;
    int r = (int)rx_param_int(ex->sample, "grid_rows");
    if (r <= 0) r = K > 0 ? K : (int)ceil(sqrt((double)num_images));
    if (r > num_images) r = num_images;
    *rows = r;
    *cols = (num_images + r - 1) / r;
}

/* ---- generator: the model behind guidance behind a sampler, reusable by eval ---- */

void rx_experiment_swap_ema(rx_experiment *ex) {
    for (int i = 0; i < ex->ema.n && i < ex->model->params.n; i++) {
        float *d = ex->model->params.t[i]->data;
        ex->model->params.t[i]->data = ex->ema.t[i]->data;
        ex->ema.t[i]->data = d;
    }
}

const rx_section_ref *rx_guidance_of_model(int j, const rx_section_ref *guidance) {
    static const rx_section_ref unguided = {&rx_comp_guidance_none, NULL};
    return j > 0 ? &unguided : guidance;
}

rx_status rx_generator_open(rx_experiment *ex, rx_generator *g) {
    return rx_generator_open_with(ex, g, &ex->sampler, rx_guidance_of_model(ex->sample_model, &ex->guidance));
}

rx_status rx_generator_open_with(rx_experiment *ex, rx_generator *g, const rx_section_ref *sampler,
                                 const rx_section_ref *guidance) {
    memset(g, 0, sizeof *g);
    g->ex = ex;
    g->sampler = *sampler;
    rx_model *m = ex->model;
    model_fn_ctx *mc = calloc(1, sizeof *mc);
    if (!mc) return rx_fail(RX_ERR_OOM, "sample: out of memory");
    *mc = (model_fn_ctx){.ex = ex, .C = m->in_channels, .H = m->sample_size, .W = m->sample_size,
                         .graphs = ex->cuda_graphs && ex->ctx->mem->device == RX_DEV_CUDA && rx_cuda_graph_begin &&
                                   rx_cuda_scratch_moves};
    g->model_ctx = mc;
    g->d = (int64_t)m->in_channels * m->sample_size * m->sample_size;
    rx_status s = rx_guided_init(&g->guided, guidance->comp->impl, guidance->params, model_denoise, mc, (int)g->d,
                                 m->num_classes, &ex->schedule);
    /* sample with the EMA weights when asked: swapped in here, back on close */
    g->use_ema = ex->sample ? rx_param_bool(ex->sample, "use_ema") && ex->ema.n > 0 : ex->ema.n > 0;
    if (g->use_ema) rx_experiment_swap_ema(ex);
    g->grad_was = ex->ctx->grad_enabled;
    g->training_was = ex->ctx->training;
    rx_set_grad_enabled(ex->ctx, 0);
    ex->ctx->training = 0;
    return s;
}

/* x: n images [n, image_c, image_h, image_w]; in latent diffusion the sampler's latents are decoded */
rx_status rx_generate(rx_generator *g, const int64_t *image_index, int n, const int32_t *labels, float *x) {
    rx_experiment *ex = g->ex;
    if (ex->latent && g->z_cap < n) {
        free(g->z);
        g->z = malloc((size_t)n * g->d * sizeof *g->z);
        g->z_cap = g->z ? n : 0;
        if (!g->z) return rx_fail(RX_ERR_OOM, "sample: out of memory for %d latents", n);
    }
    const rx_sampler_impl *sampler = g->sampler.comp->impl;
    const rx_sample_request r = {.schedule = &ex->schedule, .prediction_type = ex->prediction_type,
                                 .denoise = rx_guided_denoise, .denoise_ctx = &g->guided, .n = n, .d = (int)g->d,
                                 .labels = ex->model->num_classes > 0 ? labels : NULL, .image_index = image_index,
                                 .seed = ex->seed, .x_out = ex->latent ? g->z : x};
    RX_TRY(sampler->run(g->sampler.params, &r));
    return ex->latent ? rx_latent_decode(ex, g->z, n, x) : RX_OK;
}

rx_status rx_generator_close(rx_generator *g) {
    rx_experiment *ex = g->ex;
    rx_status s = RX_OK;
    if (!ex) return RX_OK;
    if (g->use_ema) rx_experiment_swap_ema(ex);   /* the raw weights back */
    rx_guided_free(&g->guided);
    model_fn_ctx_free(g->model_ctx);
    free(g->z);
    rx_set_grad_enabled(ex->ctx, g->grad_was);
    ex->ctx->training = g->training_was;
    memset(g, 0, sizeof *g);
    return s;
}

/* run.json's cuda_graphs_<what> and a log line: how the generator's network calls ran */
static void record_net_graphs(rx_run *run, const model_fn_ctx *mc, const char *what) {
    if (!mc || !mc->ex->cuda_graphs || mc->ex->ctx->mem->device != RX_DEV_CUDA) return;
    if (mc->why[0]) rx_run_log(run, "%s: cuda_graphs: capturing the network call failed (%s); its calls ran eagerly", what, mc->why);
    char key[96];
    snprintf(key, sizeof key, "cuda_graphs_%s", what);
    rx_run_set(run, key, json_pack("{s:I, s:I, s:I, s:b}", "eager_calls", (json_int_t)mc->eager, "captures",
                                   (json_int_t)mc->captures, "replayed_calls", (json_int_t)mc->replayed,
                                   "capture_failed", mc->why[0] != 0));
    rx_run_log(run, "%s: cuda_graphs: %lld network calls replayed from %lld capture%s, %lld eager", what,
               (long long)mc->replayed, (long long)mc->captures, mc->captures == 1 ? "" : "s", (long long)mc->eager);
}

/* the sample stage's images: N of them (labels as the grid's rows), B per sampler call, into
 * x [N, C, H, W] and labels [N]; `what` names them in log.txt. An interrupt stops the sample
 * stage between batches; a preview goes on, for the training loop checkpoints right after it.
 * split: this rank makes its share of the N and rank 0 gathers them all (the sample stage). */
static rx_status generate_images(rx_experiment *ex, rx_run *run, int N, int B, int cols, float *x, int32_t *labels,
                                 const char *what, int stop_on_interrupt, int split) {
    const double t0 = rx_now();
    const int64_t d = (int64_t)ex->image_c * ex->image_h * ex->image_w;
    int64_t *index = malloc((size_t)N * sizeof *index), lo = 0, hi = N;
    if (!index) return rx_fail(RX_ERR_OOM, "sample: out of memory for %d images", N);
    for (int i = 0; i < N; i++) { labels[i] = label_of(ex, i, cols); index[i] = i; }
    split = split && rx_dist_world()->world > 1;
    if (split) rx_dist_share(N, rx_dist_world()->rank, &lo, &hi);
    rx_generator g;
    rx_status s = rx_generator_open(ex, &g);
    for (int64_t b0 = lo; b0 < hi && !s; b0 += B) {
        int n = (int)(hi - b0 < B ? hi - b0 : B);
        s = rx_generate(&g, index + b0, n, labels + b0, x + b0 * d);
        char eta[32];
        if (!s) rx_run_log(run, "%s: %lld/%lld images%s (%.1f s, ETA %s)", what, (long long)(b0 + n - lo),
                           (long long)(hi - lo), split ? " of this rank" : "", rx_now() - t0,
                           rx_eta_format(rx_eta_seconds(b0 + n - lo, hi - lo, rx_now() - t0), eta, sizeof eta));
        if (!s && stop_on_interrupt && rx_interrupt_requested) s = rx_fail(RX_ERR_INTERRUPTED, "%s: interrupted", what);
    }
    record_net_graphs(run, g.model_ctx, what);
    rx_status s2 = rx_generator_close(&g);
    if (!s) s = s2;
    for (int64_t i = lo * d; !s && i < hi * d; i++)
        if (!isfinite(x[i])) s = rx_fail(RX_ERR_NUMERIC, "%s: non-finite value in image %lld", what, (long long)(i / d));
    free(index);
    if (split) {   /* a rank that failed stops all before the gather */
        s = rx_dist_agree(s, NULL, 0);
        if (!s) s = rx_dist_gather_shares(x, N, d);
        if (!s && rx_dist_is_root()) rx_run_log(run, "%s: %d images gathered from %d ranks", what, N, rx_dist_world()->world);
    }
    return s;
}

/* the grid's image count and shape, as the sample section (shrunk for a smoke run) says */
typedef struct grid_plan { int N, B, rows, cols; } grid_plan;

static grid_plan grid_plan_of(const rx_experiment *ex) {
    grid_plan g = {(int)rx_param_int(ex->sample, "num_images"), (int)rx_param_int(ex->sample, "batch_size"), 0, 0};
    if (ex->smoke) { g.N = g.N < 4 ? g.N : 4; g.B = g.N; }
    grid_shape(ex, g.N, &g.rows, &g.cols);
    return g;
}

/* x's images as the PNG grid at `path`, and to TensorBoard as samples/grid at `step` */
static rx_status write_grid(rx_experiment *ex, rx_run *run, const float *x, const grid_plan *gp, const char *path,
                            int64_t step) {
    rx_png_grid grid = {gp->rows, gp->cols, 2, 1.0f, RX_PNG_RANGE_SIGNED};
    const int n = gp->N < gp->rows * gp->cols ? gp->N : gp->rows * gp->cols;
    RX_TRY(rx_png_write_grid_f32(path, x, n, ex->image_c, ex->image_h, ex->image_w, &grid));
    return rx_run_tb_image(run, "samples/grid", path, step);   /* the file's bytes: one PNG encoder */
}

rx_status rx_sample_preview(rx_experiment *ex, rx_run *run, int64_t step) {
    if (!ex->sample || !ex->task->generates) return RX_OK;
    const grid_plan gp = grid_plan_of(ex);
    const int64_t d = (int64_t)ex->image_c * ex->image_h * ex->image_w;
    float *x = malloc((size_t)gp.N * d * sizeof *x);
    int32_t *labels = malloc((size_t)gp.N * sizeof *labels);
    rx_status s = x && labels ? RX_OK : rx_fail(RX_ERR_OOM, "sample: out of memory for %d images", gp.N);
    char path[1200];
    snprintf(path, sizeof path, "%s/samples/grid_step%06lld.png", run->dir, (long long)step);
    if (!s) s = generate_images(ex, run, gp.N, gp.B, gp.cols, x, labels, "preview", 0, 0);
    if (!s) s = write_grid(ex, run, x, &gp, path, step);
    if (!s) rx_run_log(run, "preview: wrote %s", path);
    free(x);
    free(labels);
    return s;
}

rx_status rx_stage_sample(rx_experiment *ex, rx_run *run) {
    double t0 = rx_now();
    if (ex->sample_model > 0)
        rx_run_log(run, "sample: model %s, without guidance (its pairs carry reflow.guidance)",
                   rx_param_str(ex->sample, "model"));
    const grid_plan gp = grid_plan_of(ex);
    const int N = gp.N;
    int C = ex->image_c, H = ex->image_h, W = ex->image_w;
    int64_t d = (int64_t)C * H * W;
    float *x = malloc((size_t)N * d * sizeof *x);
    int32_t *labels = malloc((size_t)N * sizeof *labels);
    uint8_t *u8 = malloc((size_t)N * d);
    rx_status s = (x && labels && u8) ? RX_OK : rx_fail(RX_ERR_OOM, "sample: out of memory for %d images", N);
    if (!s) s = generate_images(ex, run, N, gp.B, gp.cols, x, labels, "sample", 1, 1);
    if (!rx_dist_is_root()) {   /* its share is with rank 0, which writes */
        free(x); free(labels); free(u8);
        return s;
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/samples/grid.png", run->dir);
    if (!s) s = write_grid(ex, run, x, &gp, path, run->tb_step);
    if (!s) {
        for (int64_t i = 0; i < (int64_t)N * d; i++) u8[i] = rx_png_to_byte(x[i], RX_PNG_RANGE_SIGNED);
        rx_st_writer *w = NULL;
        s = rx_st_writer_create(&w);
        if (!s) s = rx_st_writer_add(w, "images", RX_ST_U8, 4, (const int64_t[]){N, C, H, W}, u8);
        if (!s) s = rx_st_writer_add(w, "labels", RX_ST_I32, 1, (const int64_t[]){N}, labels);
        if (!s) s = rx_st_writer_set_metadata(w, "sample_hash", ex->sample_hash);
        snprintf(path, sizeof path, "%s/samples/samples.safetensors", run->dir);
        if (!s) s = rx_st_writer_write(w, path);
        rx_st_writer_free(w);
    }
    free(x); free(labels); free(u8);
    rx_run_stage_time(run, "sample", rx_now() - t0);
    if (!s) rx_run_log(run, "sample: wrote %s/samples/grid.png (%dx%d)", run->dir, gp.rows, gp.cols);
    return s;
}
