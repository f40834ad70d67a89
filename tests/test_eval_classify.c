/* Class accuracy and the Inception-Score-style classifier score.
 * References: numpy argmax accuracy and exp(E KL(p(y|x) ‖ p(y))) from
 * scipy.special.log_softmax per consecutive split, mean and numpy.std
 * (tests/fixtures/eval_classify.json from gen_fd.py); closed forms: equal logits give
 * a score of exactly 1, confident one-hot predictions spread evenly over K classes give K. */
#include "testutil.h"
#include "eval_fixture.h"

#include <jansson.h>

#include "eval/classify.h"

Test(eval_classify, matches_numpy) {
    json_t *j = load_fixture("eval_classify.json");
    const int n = (int)num(j, "n"), K = (int)num(j, "k");
    json_t *jl = json_object_get(j, "logits"), *jy = json_object_get(j, "labels");
    float *logits = malloc(sizeof(float) * n * K);
    int *labels = malloc(sizeof(int) * n);
    for (int i = 0; i < n * K; i++) logits[i] = (float)json_number_value(json_array_get(jl, i));
    for (int i = 0; i < n; i++) labels[i] = (int)json_integer_value(json_array_get(jy, i));

    double acc, score, std;
    cr_assert_eq(rx_class_accuracy(logits, n, K, labels, &acc), RX_OK);
    cr_expect_eq(acc, num(j, "accuracy"), "accuracy %.17g", acc);
    cr_expect(acc > 0 && acc < 1, "the fixture has right and wrong predictions");
    cr_assert_eq(rx_classifier_score(logits, n, K, 1, &score, &std), RX_OK);
    expect_close(score, num(j, "score_1"), 1e-12, "score, 1 split");
    cr_expect_eq(std, 0.0);
    cr_assert_eq(rx_classifier_score(logits, n, K, 4, &score, &std), RX_OK);
    expect_close(score, num(j, "score_4"), 1e-12, "score, 4 splits");
    expect_close(std, num(j, "score_4_std"), 1e-10, "score std, 4 splits");

    // softmax probabilities have the same argmax: accuracy on probabilities agrees
    float *probs = malloc(sizeof(float) * n * K);
    for (int i = 0; i < n; i++) {
        float mx = logits[i * K], s = 0;
        for (int k = 1; k < K; k++) mx = fmaxf(mx, logits[i * K + k]);
        for (int k = 0; k < K; k++) s += probs[i * K + k] = expf(logits[i * K + k] - mx);
        for (int k = 0; k < K; k++) probs[i * K + k] /= s;
    }
    double acc_p;
    cr_assert_eq(rx_class_accuracy(probs, n, K, labels, &acc_p), RX_OK);
    cr_expect_eq(acc_p, acc);
    free(logits); free(labels); free(probs);
    json_decref(j);
}

Test(eval_classify, closed_forms) {
    enum { K = 10, N = 30 };
    float logits[N * K];
    int labels[N];
    double score, acc;
    // equal logits: p(y|x) = p(y) = uniform, KL = 0, score = 1
    for (int i = 0; i < N * K; i++) logits[i] = 2.5f;
    cr_assert_eq(rx_classifier_score(logits, N, K, 1, &score, NULL), RX_OK);
    cr_expect_lt(fabs(score - 1.0), 1e-15, "score %.17g", score);
    // confident one-hot logits (margin 200, far beyond float exp range: needs log-sum-exp),
    // classes used equally often: p(y) uniform, KL = log K, score = K
    for (int i = 0; i < N; i++) {
        labels[i] = i % K;
        for (int k = 0; k < K; k++) logits[i * K + k] = k == labels[i] ? 200.0f : 0.0f;
    }
    cr_assert_eq(rx_classifier_score(logits, N, K, 1, &score, NULL), RX_OK);
    cr_expect_lt(fabs(score - K) / K, 1e-12, "score %.17g", score);
    cr_assert_eq(rx_class_accuracy(logits, N, K, labels, &acc), RX_OK);
    cr_expect_eq(acc, 1.0);
    // ties go to the first maximum (numpy.argmax): equal logits predict class 0
    for (int i = 0; i < N * K; i++) logits[i] = 1.0f;
    cr_assert_eq(rx_class_accuracy(logits, N, K, labels, &acc), RX_OK);
    cr_expect_eq(acc, 3.0 / N, "labels 0 at i = 0, 10, 20");
}

Test(eval_classify, errors) {
    float logits[4] = {0, 1, 2, 3};
    int labels[2] = {0, 2};
    double v;
    cr_expect_eq(rx_class_accuracy(logits, 2, 2, labels, &v), RX_ERR_ARG, "label 2 with K = 2");
    cr_expect_eq(rx_classifier_score(logits, 2, 2, 3, &v, NULL), RX_ERR_ARG, "more splits than images");
    float bad[4] = {0, INFINITY, 2, 3};
    cr_expect_eq(rx_classifier_score(bad, 2, 2, 1, &v, NULL), RX_ERR_NUMERIC);
}
