/* attention.c — CPU softmax (last dim) and scaled dot-product attention, forward and backward.
 *
 * attention, per head (q [Nq,D], k [Nk,D], v [Nk,Dv]):
 *   S = scale q kᵀ [Nq,Nk];  P = softmax_rows(S);  o = P v [Nq,Dv]
 * backward:
 *   dv += Pᵀ do;  dP = do vᵀ;  dS = P ⊙ (dP - rowsum(dP ⊙ P)) · scale;  dq += dS k;  dk += dSᵀ q
 *
 * Two implementations of that:
 * - the registered kernels (cpu_attention_fwd/_bwd) are FlashAttention-2 (Dao 2023): scores exist
 *   one tile (at most 256 x 256) per thread at a time, the forward keeps the output and the
 *   per-row log-sum-exp, the backward recomputes the scores; nothing of size [heads,Nq,Nk];
 * - the reference (cpu_attention_reference_fwd/_bwd) computes the formulas head by head with
 *   whole [Nq,Nk] matrices and keeps P for the backward. The parity tests compare the two
 *   (tests/test_ops_attention.c), so it stays readable rather than fast. */
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

/* max of row[0..n), n >= 1 */
static float row_max(const float *row, int64_t n) {
    float mx = row[0];
    #pragma omp simd reduction(max : mx)
    for (int64_t j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    return mx;
}

/* in place: row <- e^(row - mx) for mx >= every entry; returns the sum of the new row */
static float exp_shifted(float *row, int64_t n, float mx) {
    float s = 0;
    #pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) {
        row[j] = exp_nonpos(row[j] - mx);
        s += row[j];
    }
    return s;
}

/* in place: row <- softmax(row), n >= 1 */
static void softmax_row(float *row, int64_t n) {
    const float inv = 1.0f / exp_shifted(row, n, row_max(row, n));
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
// The reference first: the formulas with whole [Nq,Nk] matrices per head. With grad its forward
// keeps P for every head (saved[0], [BH,Nq,Nk]); without grad one [Nq,Nk] buffer per thread is
// reused. Its backward takes a [threads,Nq,Nk] scratch for dS.

typedef struct { int64_t BH, Nq, Nk, D, Dv; } attn_dims;

static attn_dims attn_dims_of(const rx_node *n) {
    const rx_tensor *q = n->in[0], *v = n->in[2];
    const int nd = q->ndim;
    attn_dims d = {.Nq = q->shape[nd - 2], .D = q->shape[nd - 1], .Nk = v->shape[nd - 2], .Dv = v->shape[nd - 1]};
    d.BH = 1;
    for (int i = 0; i < nd - 2; i++) d.BH *= q->shape[i];
    return d;
}

/* the forward keeps what its backward needs only when the node will be recorded on the tape */
static int attn_recorded(const rx_ctx *c, const rx_node *n) {
    int rec = 0;
    for (int i = 0; i < 3; i++) rec |= c->grad_enabled && n->in[i]->requires_grad;
    return rec;
}

/* Threads of the reference: a large head (e.g. 1024 tokens) is one sgemm that OpenBLAS spreads
 * over its own threads, so heads run one after another and OpenMP splits the softmax rows.
 * Small heads are too small for OpenBLAS to thread (it runs them single-threaded), so OpenMP
 * runs heads in parallel instead (nested OpenMP regions then run serially).
 * Below this many multiply-adds per head OpenBLAS runs sgemm on one thread (its
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
rx_status cpu_attention_reference_fwd(rx_ctx *c, rx_node *n) {
    const attn_dims d = attn_dims_of(n);
    const float scale = n->f[0];
    const float *q = n->in[0]->data, *k = n->in[1]->data, *v = n->in[2]->data;
    float *o = n->out->data;
    const int keep = attn_recorded(c, n);   // P, for the backward
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

rx_status cpu_attention_reference_bwd(rx_ctx *c, rx_node *n) {
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

// ----------------------------------------------------------------------------
// attention, memory-efficient: FlashAttention-2 (Dao 2023, arXiv:2307.08691), the registered kernels.
//
// forward, per head and query tile Q_i [bq,D], over the key tiles K_j [bk,D], V_j [bk,Dv]:
//   S = scale Q_i K_jᵀ;  m' = max(m, rowmax S);  P = e^(S - m');  l = l e^(m - m') + rowsum P;
//   O_i = O_i e^(m - m') + P V_j;        after the last tile: O_i /= l,  LSE_i = m + log l
// saved: LSE [BH,Nq] (saved[0]) and the output itself (saved[1] = n->out, not a copy).
// backward, with D = rowsum(dO ⊙ O) [BH,Nq] (equal to rowsum(dP ⊙ P)), per key tile j, query tile i:
//   S = scale Q_i K_jᵀ;  P = e^(S - LSE_i);  dV_j += Pᵀ dO_i;  dP = dO_i V_jᵀ;  dS = P ⊙ (dP - D_i);
//   dQ_i += scale dS K_j;  dK_j += scale dSᵀ Q_i
// Scores exist one tile per thread: [bq, ATTN_BK] in the forward (bq = 64 to 256 query rows, see
// fwd_query_tile), two [ATTN_BWD_BQ, ATTN_BK] in the backward (P and dS, 128 KiB each), taken from
// the step arena and given back when the kernel returns. Every GEMM runs inside our OpenMP region,
// so OpenBLAS keeps it on the calling thread (cpu.h).
// Tile sizes, measured on one core (thread CPU time, bench/NOTES.md): query tiles of 256 rows
// run the forward 4-7 % faster than tiles of 64 (the GEMMs' row count), and the backward's 128
// query rows 4 % faster than 64; 256 keys per tile make the P v product's inner dimension long.

enum { ATTN_BQ_MAX = 256, ATTN_BQ_MIN = 64, ATTN_BK = 256, ATTN_BWD_BQ = 128 };

/* below ~1 MFLOP in all one thread does the whole op: waking a team costs more than it saves (as
 * dense.c judges GEMM work); not inside a region of someone else's either */
static int attn_parallel(const attn_dims *d) {
    return 2.0 * d->BH * d->Nq * d->Nk * (d->D + d->Dv) >= 1e6 && !omp_in_parallel();
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* query rows per forward task: the largest of 256, 128, 64 that still gives every thread two
 * tasks (few heads of few tokens need the small tiles to keep the threads busy) */
static int64_t fwd_query_tile(const attn_dims *d, int threads) {
    int64_t bq = ATTN_BQ_MAX;
    while (bq > ATTN_BQ_MIN && d->BH * ((d->Nq + bq - 1) / bq) < 2 * threads) bq /= 2;
    return bq;
}

/* Query rows [0,nq) (nq <= ATTN_BQ_MAX) of one head against all its keys: writes their o rows and
 * LSE. q [nq,D] and o [nq,Dv] are the tile's rows; k, v the head's. S: [nq, ATTN_BK] scratch. */
static void flash_fwd_tile(const attn_dims *d, float scale, const float *q, const float *k, const float *v, float *o,
                           float *lse, int64_t nq, float *S) {
    const int D = (int)d->D, Dv = (int)d->Dv;
    float m[ATTN_BQ_MAX], l[ATTN_BQ_MAX];   // running row max and row sum of e^(S - m)
    for (int64_t j0 = 0; j0 < d->Nk; j0 += ATTN_BK) {
        const int nk = (int)min64(ATTN_BK, d->Nk - j0), first = j0 == 0;
        // S = scale q kᵀ   [nq, nk]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, nk, D, scale, q, D, k + j0 * D, D, 0.0f, S, nk);
        for (int64_t i = 0; i < nq; i++) {
            float *Si = S + i * nk, *oi = o + i * Dv;
            const float mx = row_max(Si, nk), m_new = first || mx > m[i] ? mx : m[i];
            const float s = exp_shifted(Si, nk, m_new);   // S row -> P row
            if (first) {
                l[i] = s;
            } else {   // what the earlier tiles summed was relative to the old max
                const float corr = exp_nonpos(m[i] - m_new);
                l[i] = l[i] * corr + s;
                #pragma omp simd
                for (int c = 0; c < Dv; c++) oi[c] *= corr;
            }
            m[i] = m_new;
        }
        // o (+)= P v   [nq, Dv]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, Dv, nk, 1.0f, S, nk, v + j0 * Dv, Dv,
                    first ? 0.0f : 1.0f, o, Dv);
    }
    for (int64_t i = 0; i < nq; i++) {
        const float inv = 1.0f / l[i];
        #pragma omp simd
        for (int c = 0; c < Dv; c++) o[i * Dv + c] *= inv;
        lse[i] = m[i] + logf(l[i]);
    }
}

/* Tasks are (head, query tile) pairs, independent: threads take them in any order and every
 * output is written by one task, so the result does not depend on the schedule. */
rx_status cpu_attention_fwd(rx_ctx *c, rx_node *n) {
    const attn_dims d = attn_dims_of(n);
    const float scale = n->f[0];
    const float *q = n->in[0]->data, *k = n->in[1]->data, *v = n->in[2]->data;
    float *o = n->out->data;
    const int keep = attn_recorded(c, n);   // LSE, for the backward
    const int64_t bq = fwd_query_tile(&d, omp_get_max_threads());
    const int64_t tiles = (d.Nq + bq - 1) / bq, tasks = d.BH * tiles;
    const int par = tasks > 1 && attn_parallel(&d);
    const int nt = par ? omp_get_max_threads() : 1;
    // per thread: one score tile, and the LSE of its rows when they are not kept
    const int64_t rows = min64(bq, d.Nq), per_thread = rows * min64(ATTN_BK, d.Nk) + (keep ? 0 : rows);
    rx_tensor *lse_t = keep ? rx_empty(c, RX_SHAPE(d.BH, d.Nq)) : NULL;
    rx_tensor *ws = rx_empty(c, RX_SHAPE(nt * per_thread));
    if (!ws || (keep && !lse_t)) return c->err;
    float *scratch = ws->data;
    if (keep) {
        n->saved[0] = lse_t;
        n->saved[1] = n->out;
    }
#define FWD_TASK(t, slot)                                                                                      \
    do {                                                                                                       \
        const int64_t h_ = (t) / tiles, i0_ = (t) % tiles * bq;                                                \
        float *S_ = scratch + (slot) * per_thread;                                                             \
        flash_fwd_tile(&d, scale, q + (h_ * d.Nq + i0_) * d.D, k + h_ * d.Nk * d.D, v + h_ * d.Nk * d.Dv,    \
                       o + (h_ * d.Nq + i0_) * d.Dv,                                                           \
                       keep ? lse_t->data + h_ * d.Nq + i0_ : S_ + rows * min64(ATTN_BK, d.Nk),               \
                       min64(bq, d.Nq - i0_), S_);                                                             \
    } while (0)
    if (par) {
        #pragma omp parallel for schedule(dynamic) num_threads(nt)
        for (int64_t t = 0; t < tasks; t++) FWD_TASK(t, omp_get_thread_num());
    } else {
        for (int64_t t = 0; t < tasks; t++) FWD_TASK(t, 0);
    }
#undef FWD_TASK
    return cpu_ws_free(c, ws);
}

/* one head's tensors in the backward: rows of q, k, v, dO and that head's LSE and D */
typedef struct {
    const float *q, *k, *v, *dout, *lse, *drow;
} attn_head;

/* Keys [k0,k1) of one head against all its queries: dk, dv of these keys (no other task writes
 * them) and their share of dq (dq: the head's gq, or this task's own partial). Any of dq, dk,
 * dv may be NULL (no gradient wanted). P, dS: [ATTN_BWD_BQ, bk] scratch. */
static void flash_bwd_keys(const attn_dims *d, float scale, const attn_head *hd, int64_t k0, int64_t k1, int64_t bk,
                           float *dq, float *dk, float *dv, float *P, float *dS) {
    const int D = (int)d->D, Dv = (int)d->Dv;
    for (int64_t j0 = k0; j0 < k1; j0 += bk) {
        const int nk = (int)min64(bk, k1 - j0);
        const float *kj = hd->k + j0 * D, *vj = hd->v + j0 * Dv;
        for (int64_t i0 = 0; i0 < d->Nq; i0 += ATTN_BWD_BQ) {
            const int nq = (int)min64(ATTN_BWD_BQ, d->Nq - i0);
            const float *qi = hd->q + i0 * D, *doi = hd->dout + i0 * Dv;
            // P = e^(scale q kᵀ - LSE)   [nq, nk]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, D, scale, qi, D, kj, D, 0.0f, P, nk);
            for (int i = 0; i < nq; i++) {
                float *Pi = P + (int64_t)i * nk;
                const float L = hd->lse[i0 + i];
                #pragma omp simd
                for (int j = 0; j < nk; j++) Pi[j] = exp_nonpos(Pi[j] - L);   // S <= LSE up to rounding
            }
            // dv += Pᵀ do   [nk, Dv]
            if (dv)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, Dv, nq, 1.0f, P, nk, doi, Dv, 1.0f,
                            dv + j0 * Dv, Dv);
            if (!dq && !dk) continue;
            // dS = P ⊙ (do vᵀ - D)   [nq, nk]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, Dv, 1.0f, doi, Dv, vj, Dv, 0.0f, dS, nk);
            for (int i = 0; i < nq; i++) {
                const float *Pi = P + (int64_t)i * nk;
                float *dSi = dS + (int64_t)i * nk;
                const float Di = hd->drow[i0 + i];
                #pragma omp simd
                for (int j = 0; j < nk; j++) dSi[j] = Pi[j] * (dSi[j] - Di);
            }
            // dq += scale dS k   [nq, D];  dk += scale dSᵀ q   [nk, D]
            if (dq)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, D, nk, scale, dS, nk, kj, D, 1.0f,
                            dq + i0 * D, D);
            if (dk)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, D, nq, scale, dS, nk, qi, D, 1.0f,
                            dk + j0 * D, D);
        }
    }
}

/* out[r] = Σ_c a[r,c] b[r,c] for rows r < R of n columns (the backward's D = rowsum(dO ⊙ O)) */
static void rowsum_product(const float *a, const float *b, int64_t R, int64_t n, float *out) {
    #pragma omp parallel for schedule(static) if (R * n >= RX_OMP_MIN_WORK)
    for (int64_t r = 0; r < R; r++) {
        float s = 0;
        #pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < n; c++) s += a[r * n + c] * b[r * n + c];
        out[r] = s;
    }
}

/* gq[h] += Σ_s part[h, s] in split order; part [BH, splits, qsz], gq [BH, qsz] */
static void add_partials(float *gq, const float *part, int64_t BH, int64_t splits, int64_t qsz) {
    #pragma omp parallel for collapse(2) schedule(static) if (BH * splits * qsz >= RX_OMP_MIN_WORK)
    for (int64_t h = 0; h < BH; h++)
        for (int64_t e = 0; e < qsz; e++)
            for (int64_t s = 0; s < splits; s++) gq[h * qsz + e] += part[(h * splits + s) * qsz + e];
}

/* Tasks are (head, key range) pairs. With at least as many heads as threads a task is a whole
 * head, so every gradient row has one writer. With fewer heads each head's keys are split so
 * that every thread has work: dk, dv rows still have one writer (their key range's task), and
 * each task adds its dq into a partial of its own, summed into gq in split order afterwards:
 * no races and no atomics, so the result does not depend on the schedule. */
rx_status cpu_attention_bwd(rx_ctx *c, rx_node *n) {
    const attn_dims d = attn_dims_of(n);
    const float scale = n->f[0];
    const float *q = n->in[0]->data, *k = n->in[1]->data, *v = n->in[2]->data;
    if (!n->saved[0] || !n->saved[1]) return rx_fail(RX_ERR_INTERNAL, "attention backward: forward kept no log-sum-exp");
    const float *lse = n->saved[0]->data, *o = n->saved[1]->data, *dout = n->out->grad->data;
    float *gq = cpu_in_grad(n, 0), *gk = cpu_in_grad(n, 1), *gv = cpu_in_grad(n, 2);
    if (!gq && !gk && !gv) return RX_OK;
    const int par = attn_parallel(&d);
    const int nt = par ? omp_get_max_threads() : 1;
    const int64_t splits = d.BH >= nt ? 1 : min64((nt + d.BH - 1) / d.BH, d.Nk);
    const int64_t tasks = d.BH * splits, bk = min64(ATTN_BK, (d.Nk + splits - 1) / splits);
    // per thread: the P and dS tiles; qsz: one head's q
    const int64_t rows = min64(ATTN_BWD_BQ, d.Nq), per_thread = 2 * rows * bk, qsz = d.Nq * d.D;
    rx_tensor *ws = rx_empty(c, RX_SHAPE(nt * per_thread));
    rx_tensor *drow_t = gq || gk ? rx_empty(c, RX_SHAPE(d.BH, d.Nq)) : NULL;
    rx_tensor *part_t = gq && splits > 1 ? rx_empty(c, RX_SHAPE(tasks, qsz)) : NULL;
    if (!ws || ((gq || gk) && !drow_t) || (gq && splits > 1 && !part_t)) return c->err;
    float *scratch = ws->data, *drow = drow_t ? drow_t->data : NULL, *dq_part = part_t ? part_t->data : NULL;
    if (drow) rowsum_product(dout, o, d.BH * d.Nq, d.Dv, drow);
#define BWD_TASK(t, slot)                                                                                      \
    do {                                                                                                       \
        const int64_t h_ = (t) / splits, s_ = (t) % splits;                                                    \
        const attn_head hd_ = {q + h_ * qsz, k + h_ * d.Nk * d.D, v + h_ * d.Nk * d.Dv, dout + h_ * d.Nq * d.Dv, \
                               lse + h_ * d.Nq, drow ? drow + h_ * d.Nq : NULL};                               \
        float *dq_ = !gq ? NULL : dq_part ? dq_part + (t) * qsz : gq + h_ * qsz;                              \
        if (dq_part) memset(dq_, 0, (size_t)qsz * sizeof(float));                                              \
        float *P_ = scratch + (slot) * per_thread;                                                             \
        flash_bwd_keys(&d, scale, &hd_, d.Nk * s_ / splits, d.Nk * (s_ + 1) / splits, bk, dq_,                 \
                       gk ? gk + h_ * d.Nk * d.D : NULL, gv ? gv + h_ * d.Nk * d.Dv : NULL, P_, P_ + rows * bk); \
    } while (0)
    if (par) {
        #pragma omp parallel for schedule(dynamic) num_threads(nt)
        for (int64_t t = 0; t < tasks; t++) BWD_TASK(t, omp_get_thread_num());
    } else {
        for (int64_t t = 0; t < tasks; t++) BWD_TASK(t, 0);
    }
#undef BWD_TASK
    if (dq_part) add_partials(gq, dq_part, d.BH, splits, qsz);
    RX_TRY(cpu_ws_free(c, part_t));
    RX_TRY(cpu_ws_free(c, drow_t));
    return cpu_ws_free(c, ws);
}
