/* attention.c — CPU softmax (last dim) and scaled dot-product attention, forward and backward.
 *
 * attention, per head (q [Nq,D], k [Nk,D], v [Nk,Dv]):
 *   S = scale q kᵀ [Nq,Nk];  P = softmax_rows(S);  o = P v [Nq,Dv]
 * backward:
 *   dv += Pᵀ do;  dP = do vᵀ;  dS = P ⊙ (dP - rowsum(dP ⊙ P)) · scale;  dq += dS k;  dk += dSᵀ q
 * The GEMMs are cblas_sgemm; with grad the forward keeps P for every head (saved[0],
 * [heads,Nq,Nk]), without grad one [Nq,Nk] buffer per thread is reused.
 *
 * Threads: a large head (e.g. 1024 tokens) is one sgemm that OpenBLAS spreads over its own
 * threads, so heads run one after another and OpenMP splits the softmax rows. Small heads
 * are too small for OpenBLAS to thread (it runs them single-threaded), so OpenMP runs heads
 * in parallel instead (nested OpenMP regions then run serially). */
#include "cpu.h"
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

/* e^x for x <= 0 (softmax after subtracting the row max), written so that gcc vectorizes it:
 * libm's expf does not vectorize without -ffast-math, and neither do float compares or
 * fmaxf under the default -ftrapping-math, so the clamp is an integer compare on the bits.
 * Cephes expf: x = k ln2 + r with k = round(x log2 e), |r| <= ln2/2, e^r by a degree-6
 * polynomial (~1 ulp), 2^k from the exponent bits. x below -87 is taken as -87
 * (e^-87 = 1.6e-38, negligible next to the row's largest term, 1). */
#pragma omp declare simd
static inline float exp_nonpos(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u = u > 0xC2AE0000u ? 0xC2AE0000u : u;   // bits of -87.0f; a larger pattern = a more negative float
    memcpy(&x, &u, sizeof x);
    const int32_t ki = (int32_t)(x * 1.44269504088896341f - 0.5f);   // round to nearest (x <= 0)
    const float k = (float)ki;
    float r = x - k * 0.693359375f;          // ln2 split in two parts: the first product is exact
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (ki + 127) << 23;   // 2^k, k >= -126
    float two_k;
    memcpy(&two_k, &bits, sizeof two_k);
    return p * two_k;
}

/* in place: row <- softmax(row), n >= 1 */
static void softmax_row(float *row, int64_t n) {
    float mx = row[0];
    #pragma omp simd reduction(max : mx)
    for (int64_t j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    float s = 0;
    #pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) {
        row[j] = exp_nonpos(row[j] - mx);
        s += row[j];
    }
    const float inv = 1.0f / s;
    #pragma omp simd
    for (int64_t j = 0; j < n; j++) row[j] *= inv;
}

/* dx += y ⊙ (dy - Σ dy ⊙ y) for one row */
static void softmax_row_bwd(const float *y, const float *dy, float *dx, int64_t n) {
    float dot = 0;
    #pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < n; j++) dot += dy[j] * y[j];
    #pragma omp simd
    for (int64_t j = 0; j < n; j++) dx[j] += y[j] * (dy[j] - dot);
}

// ----------------------------------------------------------------------------
// softmax: x [R,n] rows

rx_status cpu_softmax_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *x = n->in[0];
    const int64_t D = x->shape[x->ndim - 1], R = x->numel / D;
    float *y = n->out->data;
    #pragma omp parallel for schedule(static) if (x->numel >= RX_OMP_MIN_WORK)
    for (int64_t r = 0; r < R; r++) {
        memcpy(y + r * D, x->data + r * D, D * sizeof(float));
        softmax_row(y + r * D, D);
    }
    return RX_OK;
}

rx_status cpu_softmax_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cpu_in_grad(n, 0);
    if (!gx) return RX_OK;
    const int64_t D = n->out->shape[n->out->ndim - 1], R = n->out->numel / D;
    const float *y = n->out->data, *dy = n->out->grad->data;
    #pragma omp parallel for schedule(static) if (n->out->numel >= RX_OMP_MIN_WORK)
    for (int64_t r = 0; r < R; r++) softmax_row_bwd(y + r * D, dy + r * D, gx + r * D, D);
    return RX_OK;
}

// ----------------------------------------------------------------------------
// attention: q [BH,Nq,D], k [BH,Nk,D], v [BH,Nk,Dv] -> o [BH,Nq,Dv]

typedef struct { int64_t BH, Nq, Nk, D, Dv; } attn_dims;

static attn_dims attn_dims_of(const rx_node *n) {
    const rx_tensor *q = n->in[0], *v = n->in[2];
    const int nd = q->ndim;
    attn_dims d = {.Nq = q->shape[nd - 2], .D = q->shape[nd - 1], .Nk = v->shape[nd - 2], .Dv = v->shape[nd - 1]};
    d.BH = 1;
    for (int i = 0; i < nd - 2; i++) d.BH *= q->shape[i];
    return d;
}

/* below this many multiply-adds per head OpenBLAS runs sgemm on one thread (its
 * GEMM_MULTITHREAD_THRESHOLD), so parallelism has to come from running heads side by side;
 * a problem that is tiny in total runs on one thread (waking a team costs more than it saves) */
static int heads_in_parallel(const attn_dims *d) {
    const double per_head = (double)d->Nq * d->Nk * (d->D > d->Dv ? d->D : d->Dv);
    return d->BH > 1 && per_head < 65536.0 * 4 && per_head * d->BH >= RX_OMP_MIN_WORK;
}

/* one (batch, head): S = scale q kᵀ, P = softmax(S), o = P v. `inner_par`: the rows of the
 * softmax may use the team (only when heads are not already spread over it) */
static void attn_fwd_head(const attn_dims *d, float scale, const float *qh, const float *kh, const float *vh,
                          float *P, float *oh, int inner_par) {
    const int64_t NN = d->Nq * d->Nk;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d->Nq, (int)d->Nk, (int)d->D, scale, qh, (int)d->D,
                kh, (int)d->D, 0.0f, P, (int)d->Nk);
    #pragma omp parallel for schedule(static) if (inner_par && NN >= RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < d->Nq; i++) softmax_row(P + i * d->Nk, d->Nk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d->Nq, (int)d->Dv, (int)d->Nk, 1.0f, P, (int)d->Nk,
                vh, (int)d->Dv, 0.0f, oh, (int)d->Dv);
}

/* Threading: many small heads -> OpenMP over heads with BLAS on one thread; otherwise no
 * region of ours around the GEMMs, so OpenBLAS (its OpenMP build) uses the team itself.
 * A BLAS call inside a region of ours, even an inactive one, would start a nested team:
 * fresh threads on every call. */
rx_status cpu_attention_fwd(rx_ctx *c, rx_node *n) {
    const attn_dims d = attn_dims_of(n);
    const float scale = n->f[0];
    const float *q = n->in[0]->data, *k = n->in[1]->data, *v = n->in[2]->data;
    float *o = n->out->data;
    int keep = 0;   // P is needed for backward only when this node will be recorded on the tape
    for (int i = 0; i < 3; i++) keep |= c->grad_enabled && n->in[i]->requires_grad;
    const int par = heads_in_parallel(&d);
    const int nt = par ? omp_get_max_threads() : 1;
    rx_tensor *P_t = keep ? rx_empty(c, RX_SHAPE(d.BH, d.Nq, d.Nk)) : rx_empty(c, RX_SHAPE(nt, d.Nq, d.Nk));
    if (!P_t) return c->err;
    if (keep) n->saved[0] = P_t;
    const int64_t NN = d.Nq * d.Nk;
#define FWD_HEAD(h, slot, inner)                                                                               \
    attn_fwd_head(&d, scale, q + (h) * d.Nq * d.D, k + (h) * d.Nk * d.D, v + (h) * d.Nk * d.Dv,              \
                  P_t->data + (keep ? (h) : (slot)) * NN, o + (h) * d.Nq * d.Dv, inner)
    if (par) {
        #pragma omp parallel for schedule(dynamic) num_threads(nt)
        for (int64_t h = 0; h < d.BH; h++) FWD_HEAD(h, omp_get_thread_num(), 0);
    } else {
        for (int64_t h = 0; h < d.BH; h++) FWD_HEAD(h, 0, 1);
    }
#undef FWD_HEAD
    return RX_OK;
}

/* one (batch, head) of the backward; dS: [Nq,Nk] scratch */
static void attn_bwd_head(const attn_dims *d, float scale, const float *qh, const float *kh, const float *vh,
                          const float *P, const float *doh, float *dS, float *gqh, float *gkh, float *gvh,
                          int inner_par) {
    const int64_t NN = d->Nq * d->Nk;
    // dv += Pᵀ do   [Nk,Dv]
    if (gvh)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d->Nk, (int)d->Dv, (int)d->Nq, 1.0f, P,
                    (int)d->Nk, doh, (int)d->Dv, 1.0f, gvh, (int)d->Dv);
    if (!dS) return;
    // dP = do vᵀ   [Nq,Nk]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d->Nq, (int)d->Nk, (int)d->Dv, 1.0f, doh, (int)d->Dv,
                vh, (int)d->Dv, 0.0f, dS, (int)d->Nk);
    // dS = scale P ⊙ (dP - rowsum(dP ⊙ P))
    #pragma omp parallel for schedule(static) if (inner_par && NN >= RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < d->Nq; i++) {
        const float *Pi = P + i * d->Nk;
        float *dSi = dS + i * d->Nk, dot = 0;
        #pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < d->Nk; j++) dot += dSi[j] * Pi[j];
        #pragma omp simd
        for (int64_t j = 0; j < d->Nk; j++) dSi[j] = scale * Pi[j] * (dSi[j] - dot);
    }
    // dq += dS k  [Nq,D];  dk += dSᵀ q  [Nk,D]
    if (gqh)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d->Nq, (int)d->D, (int)d->Nk, 1.0f, dS,
                    (int)d->Nk, kh, (int)d->D, 1.0f, gqh, (int)d->D);
    if (gkh)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d->Nk, (int)d->D, (int)d->Nq, 1.0f, dS,
                    (int)d->Nk, qh, (int)d->D, 1.0f, gkh, (int)d->D);
}

rx_status cpu_attention_bwd(rx_ctx *c, rx_node *n) {
    const attn_dims d = attn_dims_of(n);
    const float scale = n->f[0];
    const float *q = n->in[0]->data, *k = n->in[1]->data, *v = n->in[2]->data;
    if (!n->saved[0]) return rx_fail(RX_ERR_INTERNAL, "attention backward: forward kept no probabilities");
    const float *dout = n->out->grad->data, *Pall = n->saved[0]->data;
    float *gq = cpu_in_grad(n, 0), *gk = cpu_in_grad(n, 1), *gv = cpu_in_grad(n, 2);
    const int par = heads_in_parallel(&d);
    const int nt = par ? omp_get_max_threads() : 1;
    const int64_t NN = d.Nq * d.Nk;
    float *dP_all = NULL;
    if (gq || gk) {
        dP_all = rx_arena_data(c->step, (size_t)nt * NN * sizeof(float));
        if (!dP_all) return RX_ERR_OOM;
    }
#define BWD_HEAD(h, slot, inner)                                                                               \
    attn_bwd_head(&d, scale, q + (h) * d.Nq * d.D, k + (h) * d.Nk * d.D, v + (h) * d.Nk * d.Dv, Pall + (h) * NN, \
                  dout + (h) * d.Nq * d.Dv, dP_all ? dP_all + (slot) * NN : NULL, gq ? gq + (h) * d.Nq * d.D : NULL, \
                  gk ? gk + (h) * d.Nk * d.D : NULL, gv ? gv + (h) * d.Nk * d.Dv : NULL, inner)
    if (par) {
        #pragma omp parallel for schedule(dynamic) num_threads(nt)
        for (int64_t h = 0; h < d.BH; h++) BWD_HEAD(h, omp_get_thread_num(), 0);
    } else {
        for (int64_t h = 0; h < d.BH; h++) BWD_HEAD(h, 0, 1);
    }
#undef BWD_HEAD
    return RX_OK;
}
