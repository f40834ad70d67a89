/* test_models_classifier.c — model `resnet_classifier`: shapes, parameter names, and a real
 * learning test. Reference: the task itself — a tiny synthetic two-class problem (horizontal vs
 * vertical stripes of random phase under Gaussian noise) that a working network + backward +
 * AdamW must learn in a few dozen steps: the loss falls well below ln 2 and held-out accuracy
 * is high. Chance level is ln 2 = 0.693 and 50 %. */
#include "registry/components.h"
#include "gradcheck.h"
#include "autograd/optim.h"
#include "blocks/model.h"

#define ASSERT_OK(expr) do { rx_status s_ = (expr); cr_assert_eq(s_, RX_OK, "%s -> %s", #expr, rx_last_error()); } while (0)

static rx_model *tiny_classifier(rx_ctx *c, uint64_t seed) {
    rx_params *p = NULL;
    ASSERT_OK(rx_params_from_defaults("model/resnet_classifier", rx_comp_model_resnet_classifier.params, &p));
    ASSERT_OK(rx_params_set(p, "sample_size", "8"));
    ASSERT_OK(rx_params_set(p, "num_classes", "2"));
    ASSERT_OK(rx_params_set(p, "widths", "[8, 16]"));
    ASSERT_OK(rx_params_set(p, "blocks_per_stage", "1"));
    ASSERT_OK(rx_params_set(p, "norm_num_groups", "4"));
    rx_model *m = NULL;
    ASSERT_OK(rx_model_create(c, &rx_comp_model_resnet_classifier, p, seed, &m));
    rx_params_free(p);
    return m;
}

Test(classifier, builds_with_named_parameters_and_shapes) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = tiny_classifier(c, 1);
    cr_expect_str_eq(m->arch, "resnet_classifier");
    cr_expect_eq(m->out_channels, 2);
    cr_expect_null(m->impl->diffusers_config, "no diffusers counterpart");
    cr_expect(rx_paramset_find(&m->params, "conv_in.weight"));
    cr_expect(rx_paramset_find(&m->params, "stages.1.blocks.0.conv_shortcut.weight"), "8 -> 16 channels needs a shortcut");
    cr_expect_null(rx_paramset_find(&m->params, "stages.0.blocks.0.conv_shortcut.weight"));
    cr_expect_null(rx_paramset_find(&m->params, "stages.0.blocks.0.time_emb_proj.weight"), "no time embedding");
    cr_expect(rx_paramset_find(&m->params, "fc.weight"));
    /* conv_in 3*8*9+8; stage 0 block: 2 GN(8) + 2 conv 8->8; stage 1: GN 8, conv 8->16, GN 16, conv 16->16,
     * shortcut 8->16; norm_out 16; fc 16->2 */
    int64_t expect = (3 * 8 * 9 + 8) + (2 * 16 + 2 * (8 * 8 * 9 + 8)) +
                     (16 + (8 * 16 * 9 + 16) + 32 + (16 * 16 * 9 + 16) + (8 * 16 + 16)) + 32 + (16 * 2 + 2);
    cr_expect_eq(rx_model_param_count(m), expect, "%lld parameters, expected %lld", (long long)rx_model_param_count(m),
                 (long long)expect);

    rx_tensor *x = rx_param(c, "x", RX_SHAPE(5, 3, 8, 8), 0);
    rx_test_randn(c, x, 2, 1.0f);
    rx_tensor *logits = m->impl->forward(c, m, x, NULL, NULL);
    rx_tensor *feat = m->impl->features(c, m, x);
    cr_assert(logits && feat, "%s", rx_last_error());
    cr_expect(logits->ndim == 2 && logits->shape[0] == 5 && logits->shape[1] == 2, "logits %s", RX_SHAPE_STR(logits));
    cr_expect(feat->ndim == 2 && feat->shape[0] == 5 && feat->shape[1] == 16, "features %s", RX_SHAPE_STR(feat));
    /* logits = fc(features) (dropout 0): reference computed here in double */
    float hf[5 * 16], hl[5 * 2], w[32], b[2];
    ASSERT_OK(rx_tensor_to_host(c, feat, hf));
    ASSERT_OK(rx_tensor_to_host(c, logits, hl));
    ASSERT_OK(rx_tensor_to_host(c, rx_paramset_find(&m->params, "fc.weight"), w));
    ASSERT_OK(rx_tensor_to_host(c, rx_paramset_find(&m->params, "fc.bias"), b));
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < 2; k++) {
            double s = b[k];
            for (int j = 0; j < 16; j++) s += (double)w[k * 16 + j] * hf[i * 16 + j];
            cr_expect(fabs(s - hl[i * 2 + k]) < 1e-5 * (1 + fabs(s)), "logit [%d,%d] %g vs %g", i, k, hl[i * 2 + k], s);
        }
    rx_tensor *bad = rx_zeros(c, RX_SHAPE(2, 1, 8, 8));
    cr_expect_null(m->impl->forward(c, m, bad, NULL, NULL));
    cr_expect(strstr(rx_last_error(), "resnet_classifier: x [2,1,8,8], expected [B,3,H,W]"), "got: %s", rx_last_error());
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}

/* batch of n stripe images [n,3,8,8]: label 0 = horizontal, 1 = vertical; random phase and
 * amplitude sign per image, N(0, 0.5) noise. Deterministic in (seed, batch). */
static void stripes(float *x, float *y, int n, uint64_t seed, uint64_t batch) {
    float *noise = malloc((size_t)n * 192 * sizeof *noise), *u = malloc(2 * (size_t)n * sizeof *u);
    cr_assert(noise && u);
    rx_rng_normal(seed, RX_STREAM(RX_RNG_TEST, 1000 + batch), 0, noise, (int64_t)n * 192);
    rx_rng_uniform(seed, RX_STREAM(RX_RNG_TEST, 5000 + batch), 0, u, 2 * n);   /* phase, sign */
    for (int i = 0; i < n; i++) {
        int label = i % 2, phase = (int)(u[i] * 4) & 3;
        float amp = u[n + i] < 0.5f ? 1.0f : -1.0f;
        y[i] = (float)label;
        for (int ch = 0; ch < 3; ch++)
            for (int r = 0; r < 8; r++)
                for (int col = 0; col < 8; col++) {
                    int coord = label ? col : r;
                    float stripe = ((coord + phase) / 2) % 2 ? amp : -amp;   /* period 4 */
                    int k = ((i * 3 + ch) * 8 + r) * 8 + col;
                    x[k] = stripe + 0.5f * noise[k];
                }
    }
    free(noise);
    free(u);
}

Test(classifier, learns_a_two_class_problem, .timeout = 60) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_model *m = tiny_classifier(c, 3);
    rx_adamw opt;
    rx_adamw_config cfg = RX_ADAMW_TORCH_DEFAULTS;
    cfg.lr = 3e-3f;
    ASSERT_OK(rx_adamw_init(c, &opt, &m->params, &cfg));
    enum { B = 16, STEPS = 60 };
    float x[B * 192], y[B];
    double first = 0, last = 0;
    for (int step = 0; step < STEPS; step++) {
        stripes(x, y, B, 11, step);
        ASSERT_OK(rx_paramset_zero_grad(c, &m->params));
        rx_tensor *loss = rx_cross_entropy(c, m->impl->forward(c, m, rx_from_host(c, RX_SHAPE(B, 3, 8, 8), x), NULL, NULL),
                                           rx_from_host(c, RX_SHAPE(B), y));
        cr_assert(loss, "%s", rx_last_error());
        float l;
        ASSERT_OK(rx_tensor_to_host(c, loss, &l));
        if (step < 5) first += l / 5;          /* mean of the first and last five steps */
        if (step >= STEPS - 5) last += l / 5;
        ASSERT_OK(rx_backward(c, loss));
        ASSERT_OK(rx_adamw_step(c, &opt, cfg.lr, NULL));
        rx_step_end(c);
    }
    cr_expect(first > 0.5, "starts near chance (ln 2 = 0.69): %.3f", first);
    cr_expect(last < 0.25 * first, "loss fell from %.3f to %.3f", first, last);
    /* held-out batch (another Philox stream) */
    enum { T = 64 };
    float xt[T * 192], yt[T], logits[T * 2];
    stripes(xt, yt, T, 999, 0);
    rx_set_grad_enabled(c, 0);
    rx_tensor *out = m->impl->forward(c, m, rx_from_host(c, RX_SHAPE(T, 3, 8, 8), xt), NULL, NULL);
    cr_assert(out, "%s", rx_last_error());
    ASSERT_OK(rx_tensor_to_host(c, out, logits));
    int correct = 0;
    for (int i = 0; i < T; i++) correct += (logits[2 * i + 1] > logits[2 * i]) == (yt[i] > 0.5f);
    cr_expect_geq(correct, 58, "held-out accuracy %d / %d", correct, T);
    cr_log_info("classifier: loss %.3f -> %.3f in %d AdamW steps, held-out accuracy %d/%d", first, last, STEPS, correct, T);
    rx_adamw_free(&opt);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
}
