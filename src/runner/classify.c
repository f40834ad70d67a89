/* classify.c — the `classify` objective: supervised cross-entropy on the dataset's labels.
 * It trains the feature networks the evaluation uses (resnet_classifier): the train step
 * feeds the transformed images and their labels straight to the model, and the eval stage
 * reports the test-split accuracy. The runner's task table (experiment.c) holds these
 * two functions for RX_TASK_CLASSIFY. */
#include "runner/experiment.h"

static const rx_param_spec classify_params[] = {{0}};

static const rx_objective_impl classify_impl = {RX_TASK_CLASSIFY, NULL, NULL};

const rx_component rx_comp_objective_classify = {
    RX_KIND_OBJECTIVE, "classify",
    "cross-entropy classification of the dataset's labels (for training feature networks)",
    classify_params, &classify_impl, NULL};

/* the logits of the images x0 [B,C,H,W] against their labels */
rx_status rx_classify_loss(rx_experiment *ex, rx_train_batch *b, int64_t step, rx_tensor **loss) {
    rx_ctx *c = ex->ctx;
    rx_model *m = ex->model;
    int B = b->n;
    for (int i = 0; i < B; i++) b->labels_f[i] = (float)b->labels[i];
    rx_tensor *X = rx_from_host(c, RX_SHAPE(B, ex->data_c, ex->data_h, ex->data_w), b->x0);
    rx_tensor *L = rx_from_host(c, RX_SHAPE(B), b->labels_f);
    *loss = rx_cross_entropy(c, m->impl->forward(c, m, X, NULL, NULL), L);
    return *loss ? RX_OK : rx_ctx_status(c);
}

/* classifier runs: top-1 accuracy on the test split, the images through the experiment's
 * transforms without their random augmentations */
rx_status rx_stage_eval_classifier(rx_experiment *ex, rx_run *run, json_t **metrics_out) {
    double t0 = rx_now();
    rx_ctx *c = ex->ctx;
    rx_model *m = ex->model;
    rx_dataset *data = NULL;
    RX_TRY(rx_dataset_load(ex->dataset.comp, ex->dataset.params, "test", &data));
    int64_t N = rx_param_int(ex->eval, "num_images");
    if (N > data->n) N = data->n;
    if (ex->smoke) N = N < 8 ? N : 8;
    int B = (int)rx_param_int(ex->eval, "batch_size");
    rx_transform_step steps[16];
    rx_transform_chain chain = rx_eval_transforms(ex, steps);
    int oc, oh, ow;
    int64_t maxe;
    rx_status s = rx_transform_chain_shape(&chain, data->channels, data->height, data->width, &oc, &oh, &ow, &maxe);
    if (!s && (oc != m->in_channels || oh != m->sample_size || ow != m->sample_size))
        s = rx_fail(RX_ERR_CONFIG, "eval: without its random augmentations the transform chain gives %dx%dx%d images, "
                    "the classifier takes %dx%dx%d", oc, oh, ow, m->in_channels, m->sample_size, m->sample_size);
    int64_t d = (int64_t)oc * oh * ow, img = (int64_t)data->channels * data->height * data->width;
    int K = m->out_channels;
    float *x = malloc(B * d * sizeof *x), *work = malloc(2 * maxe * sizeof *work), *logits = malloc((size_t)B * K * sizeof *logits);
    if (!s && (!x || !work || !logits)) s = rx_fail(RX_ERR_OOM, "eval: out of memory");
    int64_t correct = 0;
    int grad = c->grad_enabled;
    rx_set_grad_enabled(c, 0);
    if (ex->ema.n) rx_experiment_swap_ema(ex);   /* the EMA weights, when trained with EMA */
    for (int64_t b0 = 0; b0 < N && !s; b0 += B) {
        int n = (int)(N - b0 < B ? N - b0 : B);
        for (int i = 0; i < n && !s; i++)
            s = rx_transform_chain_apply(&chain, data->pixels + (b0 + i) * img, data->channels, data->height, data->width,
                                         x + i * d, work, ex->seed, RX_SAMPLE_KEY(0, b0 + i));
        rx_tensor *X = s ? NULL : rx_from_host(c, RX_SHAPE(n, oc, oh, ow), x);
        rx_tensor *Y = s ? NULL : m->impl->forward(c, m, X, NULL, NULL);
        if (!s) s = Y ? rx_tensor_to_host(c, Y, logits) : rx_ctx_status(c);
        rx_step_end(c);
        for (int i = 0; i < n && !s; i++) {
            int best = 0;
            for (int k = 1; k < K; k++) if (logits[i * K + k] > logits[i * K + best]) best = k;
            correct += best == data->labels[b0 + i];
        }
    }
    if (ex->ema.n) rx_experiment_swap_ema(ex);
    rx_set_grad_enabled(c, grad);
    json_t *metrics = json_object();
    if (!s) {
        double acc = N ? (double)correct / N : 0;
        json_object_set_new(metrics, "test_accuracy", json_real(acc));
        rx_run_log(run, "eval: test accuracy %.4f on %lld images of %s", acc, (long long)N, data->name);
        json_t *e = json_object();
        json_object_set(e, "metrics", metrics);
        json_object_set_new(e, "test_images", json_integer(N));
        json_object_set_new(e, "dataset", json_string(data->name));
        json_object_set_new(e, "ema", json_boolean(ex->ema.n > 0));
        s = rx_eval_write(run, e);
        json_decref(e);
    }
    if (!s && metrics_out) *metrics_out = json_incref(metrics);
    json_decref(metrics);
    free(x); free(work); free(logits);
    rx_dataset_free(data);
    rx_run_stage_time(run, "eval", rx_now() - t0);
    return s;
}
