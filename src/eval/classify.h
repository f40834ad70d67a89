/* classify.h — metrics from a classifier's outputs on generated images.
 *
 * class_accuracy: the share of generated images that the classifier assigns (argmax)
 * to the label they were generated for. Works on logits or probabilities alike.
 *
 * classifier_score: the Inception-Score formula (Salimans et al. 2016) applied to our
 * own classifier, exp(E_x KL(p(y|x) ‖ p(y))) with p(y|x) = softmax(logits) and
 * p(y) = E_x p(y|x). With splits > 1 the images are cut into `splits` consecutive
 * parts [i n/splits, (i+1) n/splits), each scored on its own; mean and population std
 * over the parts (as the original implementation). It is not "the" Inception Score
 * unless the classifier is that Inception network, so it is never named IS here. */
#ifndef RX_EVAL_CLASSIFY_H
#define RX_EVAL_CLASSIFY_H

#include <stdint.h>
#include "core/status.h"

/* scores [n, K] (logits or probabilities), labels [n] in [0, K). Ties go to the first
 * maximum (numpy.argmax). */
rx_status rx_class_accuracy(const float *scores, int64_t n, int K, const int *labels, double *out);

/* logits [n, K]; *std may be NULL (it is 0 with splits = 1). Needs n >= splits >= 1. */
rx_status rx_classifier_score(const float *logits, int64_t n, int K, int splits, double *mean, double *std);

#endif
