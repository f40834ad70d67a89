#include "eval/classify.h"

#include <math.h>
#include <stdlib.h>

rx_status rx_class_accuracy(const float *scores, int64_t n, int K, const int *labels, double *out) {
    if (n < 1 || K < 1) return rx_fail(RX_ERR_ARG, "class_accuracy: need n >= 1 and K >= 1 (n=%lld, K=%d)", (long long)n, K);
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *s = scores + i * K;
        if (labels[i] < 0 || labels[i] >= K)
            return rx_fail(RX_ERR_ARG, "class_accuracy: label %d of image %lld outside [0, %d)", labels[i], (long long)i, K);
        int best = 0;
        for (int k = 0; k < K; k++) {
            if (!isfinite(s[k]))
                return rx_fail(RX_ERR_NUMERIC, "class_accuracy: non-finite score for image %lld", (long long)i);
            if (s[k] > s[best]) best = k;
        }
        correct += best == labels[i];
    }
    *out = (double)correct / (double)n;
    return RX_OK;
}

/* exp(mean_x KL(p(y|x) ‖ p(y))) over rows [0, n) of log-probabilities logp [n, K]. */
static double score_part(const double *logp, int64_t n, int K, double *py) {
    for (int k = 0; k < K; k++) py[k] = 0;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < K; k++) py[k] += exp(logp[i * K + k]);
    for (int k = 0; k < K; k++) py[k] /= (double)n;
    double kl = 0;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < K; k++) {
            const double p = exp(logp[i * K + k]);
            if (p > 0) kl += p * (logp[i * K + k] - log(py[k]));   // p log(p / p(y)); 0 log 0 = 0
        }
    return exp(kl / (double)n);
}

rx_status rx_classifier_score(const float *logits, int64_t n, int K, int splits, double *mean, double *std) {
    if (K < 1 || splits < 1 || n < splits)
        return rx_fail(RX_ERR_ARG, "classifier_score: need K >= 1 and n >= splits >= 1 (n=%lld, K=%d, splits=%d)",
                       (long long)n, K, splits);
    double *logp = malloc((size_t)n * K * sizeof(double));   // [n, K] log softmax, float64
    double *py = malloc((size_t)K * sizeof(double));
    if (!logp || !py) {
        free(logp); free(py);
        return rx_fail(RX_ERR_OOM, "classifier_score: out of memory (n=%lld, K=%d)", (long long)n, K);
    }
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + i * K;
        double zmax = -INFINITY;
        for (int k = 0; k < K; k++) {
            if (!isfinite(z[k])) {
                free(logp); free(py);
                return rx_fail(RX_ERR_NUMERIC, "classifier_score: non-finite logit for image %lld", (long long)i);
            }
            if (z[k] > zmax) zmax = z[k];
        }
        double sum = 0;   // log-sum-exp shifted by the max: no overflow for large logits
        for (int k = 0; k < K; k++) sum += exp((double)z[k] - zmax);
        const double lse = zmax + log(sum);
        for (int k = 0; k < K; k++) logp[i * K + k] = (double)z[k] - lse;
    }
    // mean and population std over the parts, two-pass (parts are few: at most n)
    double mu = 0, var = 0;
    for (int pass = 0; pass < (splits > 1 ? 2 : 1); pass++)
        for (int part = 0; part < splits; part++) {
            const int64_t lo = part * n / splits, hi = (part + 1) * n / splits;
            const double sc = score_part(logp + lo * K, hi - lo, K, py);
            if (pass == 0) mu += sc / splits;
            else var += (sc - mu) * (sc - mu) / splits;
        }
    *mean = mu;
    if (std) *std = sqrt(var);
    free(logp);
    free(py);
    return RX_OK;
}
