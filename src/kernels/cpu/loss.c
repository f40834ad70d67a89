/* loss.c — CPU sum, mean, mse_loss and cross_entropy, forward and backward.
 * Every output is one number summed over up to millions of terms: float partial sums
 * over short blocks (vectorized), blocks and rows accumulated in double. */
#include "cpu.h"
#include <math.h>

enum { BLOCK = 512 };

/* Σ x */
static double sum_f(const float *x, int64_t n) {
    double s = 0;
    #pragma omp parallel for reduction(+ : s) schedule(static) if (n > RX_OMP_MIN_WORK)
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        const int64_t i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
        float b = 0;
        #pragma omp simd reduction(+ : b)
        for (int64_t i = i0; i < i1; i++) b += x[i];
        s += b;
    }
    return s;
}

/* Σ (a - b)², serial (called per example inside a parallel loop) */
static double sum_sq_diff(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i0 = 0; i0 < n; i0 += BLOCK) {
        const int64_t i1 = i0 + BLOCK < n ? i0 + BLOCK : n;
        float p = 0;
        #pragma omp simd reduction(+ : p)
        for (int64_t i = i0; i < i1; i++) p += (a[i] - b[i]) * (a[i] - b[i]);
        s += p;
    }
    return s;
}

/* gx += a (one value broadcast) */
static void add_const(float *gx, float a, int64_t n) {
    #pragma omp parallel for simd schedule(static) if (n > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < n; i++) gx[i] += a;
}

// ----------------------------------------------------------------------------
// sum, mean: x [n] -> [1]

rx_status cpu_sum_fwd(rx_ctx *c, rx_node *n) {
    n->out->data[0] = (float)sum_f(n->in[0]->data, n->in[0]->numel);
    return RX_OK;
}

rx_status cpu_sum_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cpu_in_grad(n, 0);
    if (gx) add_const(gx, n->out->grad->data[0], n->in[0]->numel);
    return RX_OK;
}

rx_status cpu_mean_fwd(rx_ctx *c, rx_node *n) {
    n->out->data[0] = (float)(sum_f(n->in[0]->data, n->in[0]->numel) / (double)n->in[0]->numel);
    return RX_OK;
}

rx_status cpu_mean_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cpu_in_grad(n, 0);
    if (gx) add_const(gx, (float)(n->out->grad->data[0] / (double)n->in[0]->numel), n->in[0]->numel);
    return RX_OK;
}

// ----------------------------------------------------------------------------
// mse_loss: pred, target [B,M] (M = product of the other dims), weight [B] or NULL
//   L = 1/B Σ_b w_b mse_b,  mse_b = 1/M Σ_j (pred - target)²
//   dpred = dL 2 w_b (pred - target) / (B M) = -dtarget;  dw_b = dL mse_b / B
// saved[0] = mse_b [B]

rx_status cpu_mse_loss_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *pred = n->in[0];
    const int64_t B = pred->shape[0], M = pred->numel / B;
    const float *p = pred->data, *t = n->in[1]->data, *w = n->in[2] ? n->in[2]->data : NULL;
    rx_tensor *mse_t = rx_empty(c, RX_SHAPE(B));
    if (!mse_t) return c->err;
    n->saved[0] = mse_t;
    float *mse = mse_t->data;
    double L = 0;
    #pragma omp parallel for reduction(+ : L) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const double mb = sum_sq_diff(p + b * M, t + b * M, M) / (double)M;
        mse[b] = (float)mb;
        L += (w ? w[b] : 1.0) * mb;
    }
    n->out->data[0] = (float)(L / (double)B);
    return RX_OK;
}

rx_status cpu_mse_loss_bwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *pred = n->in[0];
    const int64_t B = pred->shape[0], M = pred->numel / B;
    const float *p = pred->data, *t = n->in[1]->data, *w = n->in[2] ? n->in[2]->data : NULL;
    const float dL = n->out->grad->data[0];
    float *gp = cpu_in_grad(n, 0), *gt = cpu_in_grad(n, 1), *gw = cpu_in_grad(n, 2);
    if (gw)
        for (int64_t b = 0; b < B; b++) gw[b] += dL * n->saved[0]->data[b] / (float)B;
    if (!gp && !gt) return RX_OK;
    #pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float coef = (float)(2.0 * dL * (w ? w[b] : 1.0f) / ((double)B * (double)M));
        const float *pb = p + b * M, *tb = t + b * M;
        if (gp) {
            float *g = gp + b * M;
            #pragma omp simd
            for (int64_t j = 0; j < M; j++) g[j] += coef * (pb[j] - tb[j]);
        }
        if (gt) {
            float *g = gt + b * M;
            #pragma omp simd
            for (int64_t j = 0; j < M; j++) g[j] -= coef * (pb[j] - tb[j]);
        }
    }
    return RX_OK;
}

// ----------------------------------------------------------------------------
// cross_entropy: logits [B,K], labels [B] -> L = 1/B Σ_b (logsumexp(logits_b) - logits_b[y_b])
//   dlogits_b = dL (softmax(logits_b) - onehot(y_b)) / B;   saved[0] = softmax [B,K]
// Labels get no gradient.

rx_status cpu_cross_entropy_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *lg = n->in[0];
    const int64_t B = lg->shape[0], K = lg->shape[1];
    const float *x = lg->data, *lab = n->in[1]->data;
    for (int64_t b = 0; b < B; b++)   // a bad label is a data bug: say which row and value
        if (!(lab[b] >= 0.0f && lab[b] < (float)K && lab[b] == floorf(lab[b])))
            return rx_fail(RX_ERR_ARG, "cross_entropy: label %g of row %lld is not a class index in [0,%lld)",
                           lab[b], (long long)b, (long long)K);
    rx_tensor *prob_t = rx_empty(c, RX_SHAPE(B, K));
    if (!prob_t) return c->err;
    n->saved[0] = prob_t;
    float *prob = prob_t->data;
    double L = 0;
    #pragma omp parallel for reduction(+ : L) schedule(static) if (B * K > RX_OMP_MIN_WORK)
    for (int64_t b = 0; b < B; b++) {
        const float *xb = x + b * K;
        float *pb = prob + b * K;
        float mx = xb[0];
        for (int64_t j = 1; j < K; j++) mx = xb[j] > mx ? xb[j] : mx;
        double s = 0;
        for (int64_t j = 0; j < K; j++) { pb[j] = expf(xb[j] - mx); s += pb[j]; }
        const float inv = (float)(1.0 / s);
        for (int64_t j = 0; j < K; j++) pb[j] *= inv;
        L += log(s) + mx - xb[(int64_t)lab[b]];
    }
    n->out->data[0] = (float)(L / (double)B);
    return RX_OK;
}

rx_status cpu_cross_entropy_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cpu_in_grad(n, 0);
    if (!gx) return RX_OK;
    const int64_t B = n->in[0]->shape[0], K = n->in[0]->shape[1];
    const float *prob = n->saved[0]->data, *lab = n->in[1]->data;
    const float a = n->out->grad->data[0] / (float)B;
    #pragma omp parallel for schedule(static) if (B * K > RX_OMP_MIN_WORK)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t j = 0; j < K; j++) gx[b * K + j] += a * prob[b * K + j];
        gx[b * K + (int64_t)lab[b]] -= a;
    }
    return RX_OK;
}
