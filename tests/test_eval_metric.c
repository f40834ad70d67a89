/* Registered metrics (kind `metric`) and metric naming.
 * References: each component's compute() must equal the direct call it wraps
 * (rx_featstats_frechet, rx_kid, rx_class_accuracy, rx_classifier_score, which
 * test_eval_fd/kid/classify check against scipy / numpy); naming follows the issue:
 * "fid" only for inception_fid with the official weights hash, else "<metric>_<extractor>". */
#include "testutil.h"

#include "core/params.h"
#include "eval/classify.h"
#include "registry/components.h"
#include "eval/frechet.h"
#include "eval/kid.h"
#include "eval/metric.h"

Test(eval_metric, names) {
    char name[64];
    cr_assert_eq(rx_metric_name("fd", "cifar10_classifier", "abc123", name, sizeof name), RX_OK);
    cr_expect_str_eq(name, "fd_cifar10_classifier");
    cr_assert_eq(rx_metric_name("kid", "mnist_classifier", NULL, name, sizeof name), RX_OK);
    cr_expect_str_eq(name, "kid_mnist_classifier");
    cr_assert_eq(rx_metric_name("class_accuracy", "cifar10_classifier", NULL, name, sizeof name), RX_OK);
    cr_expect_str_eq(name, "class_accuracy_cifar10_classifier");
    // the FID network with other (e.g. random or self-trained) weights is not FID
    cr_assert_eq(rx_metric_name("fd", "inception_fid", "0000deadbeef", name, sizeof name), RX_OK);
    cr_expect_str_eq(name, "fd_inception_fid");
    cr_assert_eq(rx_metric_name("fd", "inception_fid", NULL, name, sizeof name), RX_OK);
    cr_expect_str_eq(name, "fd_inception_fid");
    const char *official = RX_FID_INCEPTION_OFFICIAL_HASH;
    if (official[0]) {
        cr_assert_eq(rx_metric_name("fd", "inception_fid", official, name, sizeof name), RX_OK);
        cr_expect_str_eq(name, "fid");
        cr_assert_eq(rx_metric_name("kid", "inception_fid", official, name, sizeof name), RX_OK);
        cr_expect_str_eq(name, "kid");
        cr_assert_eq(rx_metric_name("fd", "cifar10_classifier", official, name, sizeof name), RX_OK);
        cr_expect_str_eq(name, "fd_cifar10_classifier", "the hash alone does not make FID");
    } else {
        // no official hash recorded yet: even an empty hash must not produce "fid"
        cr_assert_eq(rx_metric_name("fd", "inception_fid", "", name, sizeof name), RX_OK);
        cr_expect_str_eq(name, "fd_inception_fid");
    }
    cr_expect_eq(rx_metric_name("fd", "cifar10_classifier", NULL, name, 8), RX_ERR_ARG, "too small");
    cr_expect_eq(rx_metric_name("", "x", NULL, name, sizeof name), RX_ERR_ARG);
    cr_expect_eq(rx_metric_name("fd", "", NULL, name, sizeof name), RX_ERR_ARG);
}

static const rx_component *const all[] = {&rx_comp_metric_fd, &rx_comp_metric_kid, &rx_comp_metric_class_accuracy,
                                          &rx_comp_metric_classifier_score};

Test(eval_metric, components_are_well_formed) {
    const char *names[] = {"fd", "kid", "class_accuracy", "classifier_score"};
    for (int c = 0; c < 4; c++) {
        cr_expect_eq(all[c]->kind, RX_KIND_METRIC);
        cr_expect_str_eq(all[c]->name, names[c]);
        cr_expect(all[c]->help && all[c]->help[0]);
        const rx_metric_impl *impl = all[c]->impl;
        cr_assert(impl && impl->compute);
        cr_expect_str_eq(impl->short_name, names[c]);
        rx_params *p = NULL;
        cr_expect_eq(rx_params_from_defaults(names[c], all[c]->params, &p), RX_OK, "%s: %s", names[c], rx_last_error());
        rx_params_free(p);
    }
    const rx_metric_impl *fd = rx_comp_metric_fd.impl, *kid = rx_comp_metric_kid.impl;
    cr_expect_eq(fd->needs, (unsigned)RX_METRIC_NEEDS_STATS);
    cr_expect_eq(kid->needs, (unsigned)RX_METRIC_NEEDS_FEATURES);
    cr_expect(!fd->higher_is_better && !kid->higher_is_better);
}

/* gen: n rows, ref: n + 7 rows of d = 6 features; logits [n, 4]; labels */
enum { N = 40, D = 6, K = 4 };

static void fill(float *x, int n, int d, float shift) {
    for (int i = 0; i < n * d; i++) x[i] = sinf(0.37f * i) + 0.1f * (float)((i * 13) % 7) + shift;
}

Test(eval_metric, compute_matches_direct_calls) {
    static float gen[N * D], ref[(N + 7) * D], logits[N * K];
    int labels[N];
    fill(gen, N, D, 0.3f);
    fill(ref, N + 7, D, 0.0f);
    fill(logits, N, K, 0.0f);
    for (int i = 0; i < N; i++) labels[i] = (i * 3) % K;
    rx_featstats sg, sr;
    cr_assert_eq(rx_featstats_init(&sg, D), RX_OK);
    cr_assert_eq(rx_featstats_add(&sg, gen, N), RX_OK);
    cr_assert_eq(rx_featstats_finish(&sg), RX_OK);
    cr_assert_eq(rx_featstats_init(&sr, D), RX_OK);
    cr_assert_eq(rx_featstats_add(&sr, ref, N + 7), RX_OK);
    cr_assert_eq(rx_featstats_finish(&sr), RX_OK);

    rx_metric_input in = {
        .gen = {.n = N, .features = gen, .stats = &sg, .logits = logits, .labels = labels},
        .ref = {.n = N + 7, .features = ref, .stats = &sr},
        .feat_dim = D, .num_classes = K};
    rx_metric_value v;
    double want, want_std;
    rx_params *p;

    cr_assert_eq(rx_params_from_defaults("metric/fd", rx_comp_metric_fd.params, &p), RX_OK);
    const rx_metric_impl *impl = rx_comp_metric_fd.impl;
    cr_assert_eq(impl->compute(p, &in, &v), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_featstats_frechet(&sg, &sr, &want), RX_OK);
    cr_expect_eq(v.value, want);
    cr_expect(v.value > 0 && !v.has_std);
    rx_params_free(p);

    cr_assert_eq(rx_params_from_defaults("metric/kid", rx_comp_metric_kid.params, &p), RX_OK);
    cr_assert_eq(rx_params_set(p, "subsets", "7"), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_params_set(p, "seed", "11"), RX_OK);
    impl = rx_comp_metric_kid.impl;
    cr_assert_eq(impl->compute(p, &in, &v), RX_OK, "%s", rx_last_error());
    rx_kid_options o = rx_kid_defaults();
    o.subsets = 7;
    o.seed = 11;
    cr_assert_eq(rx_kid(ref, N + 7, gen, N, D, &o, &want, &want_std), RX_OK);
    cr_expect_eq(v.value, want);
    cr_expect_eq(v.std, want_std);
    cr_expect(v.has_std && v.std > 0);
    cr_assert_eq(rx_params_set(p, "gamma", "0.5"), RX_OK, "%s", rx_last_error());
    cr_assert_eq(impl->compute(p, &in, &v), RX_OK);
    cr_expect_neq(v.value, want, "gamma is passed through");
    rx_params_free(p);

    cr_assert_eq(rx_params_from_defaults("metric/class_accuracy", rx_comp_metric_class_accuracy.params, &p), RX_OK);
    impl = rx_comp_metric_class_accuracy.impl;
    cr_assert_eq(impl->compute(p, &in, &v), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_class_accuracy(logits, N, K, labels, &want), RX_OK);
    cr_expect_eq(v.value, want);
    rx_params_free(p);

    cr_assert_eq(rx_params_from_defaults("metric/classifier_score", rx_comp_metric_classifier_score.params, &p), RX_OK);
    cr_assert_eq(rx_params_set(p, "splits", "4"), RX_OK);
    impl = rx_comp_metric_classifier_score.impl;
    cr_assert_eq(impl->compute(p, &in, &v), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_classifier_score(logits, N, K, 4, &want, &want_std), RX_OK);
    cr_expect_eq(v.value, want);
    cr_expect_eq(v.std, want_std);
    cr_expect(v.has_std);
    rx_params_free(p);

    // a metric given less than it needs says so instead of crashing
    rx_metric_input empty = {.feat_dim = D, .num_classes = K};
    for (int c = 0; c < 4; c++) {
        cr_assert_eq(rx_params_from_defaults(all[c]->name, all[c]->params, &p), RX_OK);
        impl = all[c]->impl;
        cr_expect_eq(impl->compute(p, &empty, &v), RX_ERR_ARG, "%s without inputs", all[c]->name);
        rx_params_free(p);
    }
    rx_featstats_free(&sg);
    rx_featstats_free(&sr);
}
