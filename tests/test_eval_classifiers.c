/* The shipped feature networks (the models/ safetensors, trained by experiments/features/):
 *  - their test accuracy, recomputed here on the real test split (reference: the labels),
 *    must reach what experiments/RESULTS.md states for them;
 *  - the Fréchet distance they induce behaves like a distance on real data (CIFAR-10):
 *    two halves of the test split are close, the test split vs noise is far, and the FD
 *    grows monotonically as Gaussian noise of increasing sigma is added to real images. */
#include "runexp_harness.h"
#include "eval/features.h"
#include "eval/featstats.h"
#include "eval/frechet.h"
#include "data/dataset.h"
#include "core/philox.h"
#include "registry/registry.h"
#include "kernels/backend.h"

typedef struct shipped { const char *dataset, *weights; double min_accuracy; } shipped;
/* floors of the accuracies measured when the weights were made (experiments/RESULTS.md), and
 * at least the targets (MNIST 0.99, CIFAR-10 0.85) */
static const shipped mnist = {"mnist", "models/mnist_classifier.safetensors", 0.99};
static const shipped cifar = {"cifar10", "models/cifar10_classifier.safetensors", 0.86};

static rx_feature_extractor *open_fx(rx_ctx *c, const char *weights, const rx_features_impl **impl) {
    const rx_component *comp = rx_registry_find(RX_KIND_FEATURES, "classifier");
    cr_assert(comp);
    rx_params *p = NULL;
    /* `weights` is required (no default): a spec copy with this file as its default */
    static rx_param_spec spec[8];
    int k = 0;
    for (; comp->params[k].name; k++) {
        spec[k] = comp->params[k];
        if (!strcmp(spec[k].name, "weights")) spec[k].def = weights;
    }
    spec[k] = (rx_param_spec){0};
    cr_assert_eq(rx_params_from_defaults("features/classifier", spec, &p), RX_OK, "%s", rx_last_error());
    *impl = comp->impl;
    rx_feature_extractor *fx = NULL;
    cr_assert_eq((*impl)->create(c, p, &fx), RX_OK, "%s", rx_last_error());
    rx_params_free(p);
    return fx;
}

/* images [n, C, H, W] in [-1,1] from a dataset split, padded to the classifier's size */
static float *load_images(const char *name, const char *split, int size, int *n, int *C, int32_t **labels) {
    const rx_component *comp = rx_registry_find(RX_KIND_DATASET, name);
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults("dataset", comp->params, &p), RX_OK);
    char root[1024];
    snprintf(root, sizeof root, "%s", rx_test_data_src());
    cr_assert_eq(rx_params_set(p, "root", root), RX_OK);
    rx_dataset *d = NULL;
    cr_assert_eq(rx_dataset_load(comp, p, split, &d), RX_OK, "%s", rx_last_error());
    int pad = (size - d->height) / 2;
    *n = d->n;
    *C = d->channels;
    float *x = malloc((size_t)d->n * d->channels * size * size * sizeof(float));
    *labels = malloc(d->n * sizeof(int32_t));
    for (int i = 0; i < d->n; i++) {
        (*labels)[i] = d->labels[i];
        for (int ch = 0; ch < d->channels; ch++)
            for (int y = 0; y < size; y++)
                for (int xx = 0; xx < size; xx++) {
                    int sy = y - pad, sx = xx - pad;
                    float v = (sy >= 0 && sy < d->height && sx >= 0 && sx < d->width)
                                  ? d->pixels[(((int64_t)i * d->channels + ch) * d->height + sy) * d->width + sx] / 255.0f
                                  : 0.0f;
                    x[(((int64_t)i * d->channels + ch) * size + y) * size + xx] = 2 * v - 1;
                }
    }
    rx_dataset_free(d);
    rx_params_free(p);
    return x;
}

static double accuracy(const shipped *sh) {
    rx_ctx *c = NULL;
    cr_assert_eq(rx_ctx_create(rx_backend_cpu(), NULL, 64u << 20, &c), RX_OK);
    const rx_features_impl *impl;
    rx_feature_extractor *fx = open_fx(c, sh->weights, &impl);
    int n, C;
    int32_t *labels;
    float *x = load_images(sh->dataset, "test", fx->size, &n, &C, &labels);
    const int B = 500;
    float *feat = malloc((size_t)B * fx->feat_dim * sizeof(float)), *logit = malloc((size_t)B * fx->num_classes * sizeof(float));
    int64_t correct = 0, d = (int64_t)C * fx->size * fx->size;
    for (int b0 = 0; b0 < n; b0 += B) {
        int m = n - b0 < B ? n - b0 : B;
        cr_assert_eq(impl->extract(c, fx, x + b0 * d, m, C, fx->size, fx->size, feat, logit), RX_OK, "%s", rx_last_error());
        for (int i = 0; i < m; i++) {
            int best = 0;
            for (int k = 1; k < fx->num_classes; k++) if (logit[i * fx->num_classes + k] > logit[i * fx->num_classes + best]) best = k;
            correct += best == labels[b0 + i];
        }
    }
    free(x); free(labels); free(feat); free(logit);
    impl->destroy(fx);
    rx_ctx_destroy(c);
    return (double)correct / n;
}

Test(shipped_classifiers, mnist_test_accuracy, .timeout = 300) {
    double acc = accuracy(&mnist);
    cr_log_info("mnist_classifier test accuracy %.4f", acc);
    cr_expect_geq(acc, mnist.min_accuracy, "MNIST classifier accuracy %.4f < %.2f", acc, mnist.min_accuracy);
}

Test(shipped_classifiers, cifar10_test_accuracy, .timeout = 600) {
    double acc = accuracy(&cifar);
    cr_log_info("cifar10_classifier test accuracy %.4f", acc);
    cr_expect_geq(acc, cifar.min_accuracy, "CIFAR-10 classifier accuracy %.4f < %.2f", acc, cifar.min_accuracy);
}

/* FD(features of a, features of b) through a classifier, images [n, C, 32, 32] */
static double fd_of(rx_ctx *c, const rx_features_impl *impl, rx_feature_extractor *fx, int C, const float *a, int na,
                    const float *b, int nb) {
    rx_featstats sa, sb;
    cr_assert_eq(rx_featstats_init(&sa, fx->feat_dim), RX_OK);
    cr_assert_eq(rx_featstats_init(&sb, fx->feat_dim), RX_OK);
    const int B = 500;
    int64_t d = (int64_t)C * 32 * 32;
    float *feat = malloc((size_t)B * fx->feat_dim * sizeof(float));
    for (int k = 0; k < 2; k++) {
        const float *x = k ? b : a;
        int n = k ? nb : na;
        for (int b0 = 0; b0 < n; b0 += B) {
            int m = n - b0 < B ? n - b0 : B;
            cr_assert_eq(impl->extract(c, fx, x + b0 * d, m, C, 32, 32, feat, NULL), RX_OK, "%s", rx_last_error());
            cr_assert_eq(rx_featstats_add(k ? &sb : &sa, feat, m), RX_OK);
        }
    }
    cr_assert_eq(rx_featstats_finish(&sa), RX_OK);
    cr_assert_eq(rx_featstats_finish(&sb), RX_OK);
    double fd;
    cr_assert_eq(rx_featstats_frechet(&sa, &sb, &fd), RX_OK, "%s", rx_last_error());
    rx_featstats_free(&sa);
    rx_featstats_free(&sb);
    free(feat);
    return fd;
}

Test(shipped_classifiers, cifar10_fd_sanity_curve, .timeout = 900) {
    rx_ctx *c = NULL;
    cr_assert_eq(rx_ctx_create(rx_backend_cpu(), NULL, 64u << 20, &c), RX_OK);
    const rx_features_impl *impl;
    rx_feature_extractor *fx = open_fx(c, cifar.weights, &impl);
    int n, C;
    int32_t *labels;
    float *x = load_images("cifar10", "test", 32, &n, &C, &labels);
    int half = n / 2;
    int64_t d = 3 * 32 * 32;
    /* two halves of the test split: the same distribution */
    double fd_halves = fd_of(c, impl, fx, 3, x, half, x + half * d, n - half);
    /* noised copies of the second half: FD against the first half grows with sigma */
    const float sigmas[] = {0.1f, 0.3f, 1.0f};
    double fd_noise[3];
    float *noisy = malloc((size_t)(n - half) * d * sizeof(float)), *z = malloc((size_t)(n - half) * d * sizeof(float));
    rx_rng_normal(7, RX_STREAM(RX_RNG_TEST, 1), 0, z, (int64_t)(n - half) * d);
    for (int k = 0; k < 3; k++) {
        for (int64_t i = 0; i < (int64_t)(n - half) * d; i++) {
            float v = x[half * d + i] + sigmas[k] * z[i];
            noisy[i] = v < -1 ? -1 : v > 1 ? 1 : v;
        }
        fd_noise[k] = fd_of(c, impl, fx, 3, x, half, noisy, n - half);
    }
    /* pure noise images */
    for (int64_t i = 0; i < (int64_t)(n - half) * d; i++) noisy[i] = z[i] < -1 ? -1 : z[i] > 1 ? 1 : z[i];
    double fd_pure = fd_of(c, impl, fx, 3, x, half, noisy, n - half);
    cr_log_info("FD halves %.3f; sigma 0.1/0.3/1.0: %.3f %.3f %.3f; noise %.3f", fd_halves, fd_noise[0], fd_noise[1],
                fd_noise[2], fd_pure);
    cr_expect_lt(fd_halves, 0.1 * fd_pure, "halves %.4f vs noise %.4f", fd_halves, fd_pure);
    cr_expect_lt(fd_halves, fd_noise[0], "halves %.4f vs sigma 0.1 %.4f", fd_halves, fd_noise[0]);
    cr_expect_lt(fd_noise[0], fd_noise[1]);
    cr_expect_lt(fd_noise[1], fd_noise[2]);
    free(noisy); free(z); free(x); free(labels);
    impl->destroy(fx);
    rx_ctx_destroy(c);
}

/* eval.floor (runner/eval.c): runexp's floor is the FD between the first N images of the
 * other split and the first N of the reference split, and the extractor's class accuracy on
 * those real images. Reference: the same quantities computed here from the data set, the
 * extractor and rx_featstats_frechet directly (each tested on its own: above, test_eval_fd
 * against scipy). N = 48: a few hundred images is where the floor matters (0.39 at N = 400). */
Test(shipped_classifiers, eval_floor_is_the_fd_of_the_first_n_images_of_both_splits, .init = setup, .fini = teardown,
     .timeout = 600) {
    enum { N = 48 };
    const char *yaml = "tests/configs/runner/mnist_eval.yaml";
    result r = RUNEXP("floor", yaml, "--results", T("r"), "--quiet", "--set", "train.steps=2", "--set", "sampler.steps=1",
                      "--set", "sample=null", "--set", "eval.num_images=48", "--set", "eval.batch_size=20",
                      "--set", "eval.floor=true");
    RUN_OK(r);
    json_t *ev = load_json(P("%s/eval.json", r.last));
    json_t *fl = json_object_get(ev, "floor");
    cr_assert(json_is_object(fl), "eval.json has no floor");
    cr_expect_str_eq(json_string_value(json_object_get(fl, "split")), "train");
    cr_expect_eq(json_integer_value(json_object_get(fl, "images")), N);
    json_t *fm = json_object_get(fl, "metrics");
    double fd_run = json_number_value(json_object_get(fm, "fd_mnist_classifier"));
    double acc_run = json_number_value(json_object_get(fm, "class_accuracy_mnist_classifier"));

    rx_ctx *c = NULL;
    cr_assert_eq(rx_ctx_create(rx_backend_cpu(), NULL, 64u << 20, &c), RX_OK);
    const rx_features_impl *impl;
    rx_feature_extractor *fx = open_fx(c, mnist.weights, &impl);
    int ntr, nte, C;
    int32_t *ltr, *lte;
    float *tr = load_images("mnist", "train", 32, &ntr, &C, &ltr), *te = load_images("mnist", "test", 32, &nte, &C, &lte);
    double fd_ref = fd_of(c, impl, fx, C, tr, N, te, N);
    float *feat = malloc((size_t)N * fx->feat_dim * sizeof(float)), *logit = malloc((size_t)N * fx->num_classes * sizeof(float));
    cr_assert_eq(impl->extract(c, fx, tr, N, C, 32, 32, feat, logit), RX_OK, "%s", rx_last_error());
    int correct = 0;
    for (int i = 0; i < N; i++) {
        int best = 0;
        for (int k = 1; k < fx->num_classes; k++) if (logit[i * fx->num_classes + k] > logit[i * fx->num_classes + best]) best = k;
        correct += best == ltr[i];
    }
    cr_log_info("floor at N = %d: runexp FD %.9g, here %.9g; accuracy %.4f, here %.4f", N, fd_run, fd_ref, acc_run,
                (double)correct / N);
    cr_expect(fd_ref > 0 && fabs(fd_run - fd_ref) <= 1e-6 * fd_ref, "floor FD %.12g, reference %.12g", fd_run, fd_ref);
    cr_expect(fabs(acc_run - (double)correct / N) < 1e-12, "floor accuracy %.6f, reference %.6f", acc_run, (double)correct / N);
    free(feat); free(logit); free(tr); free(te); free(ltr); free(lte);
    json_decref(ev);
    impl->destroy(fx);
    rx_ctx_destroy(c);
}
