/* shape.c — CPU concat, permute, nearest 2x upsample, 2x average pool, global average pool,
 * unpatchify and slice, forward and backward.
 *
 * These ops move data; each backward is the same movement in reverse, adding into the input
 * gradient. Every element of the destination is written by one task, so no atomics are
 * needed and results do not depend on the thread count. */
#include "cpu.h"
#include <string.h>

enum { TILE = 32 };

/* dst (+)= src over n contiguous elements */
static inline void copy_or_add(float *restrict dst, const float *restrict src, int64_t n, int accumulate) {
    if (accumulate) for (int64_t i = 0; i < n; i++) dst[i] += src[i];
    else memcpy(dst, src, (size_t)n * sizeof(float));
}

/* ---- concat along dim 1: a [B,C1,S...], b [B,C2,S...] -> y [B,C1+C2,S...] ------------- */

/* per sample, y holds a's block (C1·S) then b's block (C2·S) */
static void concat_move(const rx_node *n, float *ga, float *gb, int backward) {
    const rx_tensor *A = n->in[0], *Bt = n->in[1];
    const int64_t B = A->shape[0], na = A->numel / (B ? B : 1), nb = Bt->numel / (B ? B : 1);
    float *y = backward ? n->out->grad->data : n->out->data;
    #pragma omp parallel for schedule(static) if (n->out->numel > RX_OMP_MIN_WORK)
    for (int64_t s = 0; s < 2 * B; s++) {
        const int64_t b = s / 2;
        float *ys = y + b * (na + nb) + (s % 2 ? na : 0);
        if (!backward) copy_or_add(ys, (s % 2 ? Bt->data + b * nb : A->data + b * na), s % 2 ? nb : na, 0);
        else if (s % 2 == 0 && ga) copy_or_add(ga + b * na, ys, na, 1);
        else if (s % 2 == 1 && gb) copy_or_add(gb + b * nb, ys, nb, 1);
    }
}

rx_status cpu_concat_fwd(rx_ctx *c, rx_node *n) { concat_move(n, NULL, NULL, 0); return RX_OK; }
rx_status cpu_concat_bwd(rx_ctx *c, rx_node *n) { concat_move(n, cpu_in_grad(n, 0), cpu_in_grad(n, 1), 1); return RX_OK; }

/* ---- permute: y = x.permute(perm) ----------------------------------------------------------
 * Output dims are collapsed first (size-1 dims dropped; neighbours that are also neighbours in
 * the source merged), so [B,N,H,D] -> [B,H,N,D] copies rows of D. When the last output dim is
 * not contiguous in the source, the copy is tiled TILE x TILE over the output's last dim and
 * the source's contiguous dim, so both sides are read/written a cache line at a time. */
static void permute_move(float *dst, const float *src, int nd, const int64_t *src_shape, const int64_t *perm,
                         int accumulate) {
    int64_t sstride[RX_MAX_DIMS], on[RX_MAX_DIMS], ps[RX_MAX_DIMS];   /* out sizes, their source strides */
    int64_t st = 1;
    for (int d = nd - 1; d >= 0; d--) { sstride[d] = st; st *= src_shape[d]; }
    const int64_t total = st;
    if (total == 0) return;
    int m = 0;
    for (int d = 0; d < nd; d++) {
        const int64_t size = src_shape[perm[d]], stride = sstride[perm[d]];
        if (size == 1) continue;
        if (m > 0 && ps[m - 1] == stride * size) { on[m - 1] *= size; ps[m - 1] = stride; }
        else { on[m] = size; ps[m] = stride; m++; }
    }
    if (m == 0) { on[0] = 1; ps[0] = 1; m = 1; }
    int64_t ostride[RX_MAX_DIMS];
    st = 1;
    for (int d = m - 1; d >= 0; d--) { ostride[d] = st; st *= on[d]; }
    const int L = m - 1;

    if (ps[L] == 1) {   /* rows of the last dim are contiguous on both sides */
        /* one task per index of the dims before L-1 (m == 1: one row); rows along dim L-1
         * follow by pointer steps */
        const int64_t inner = m >= 2 ? on[L - 1] : 1, instep = m >= 2 ? ps[L - 1] : 0;
        const int64_t outer = total / (inner * on[L]);
        #pragma omp parallel for schedule(static) if (total > RX_OMP_MIN_WORK)
        for (int64_t r = 0; r < outer; r++) {
            int64_t q = r, so = 0;
            for (int d = L - 2; d >= 0; d--) { so += (q % on[d]) * ps[d]; q /= on[d]; }
            float *drow = dst + r * inner * on[L];
            for (int64_t i = 0; i < inner; i++)
                copy_or_add(drow + i * on[L], src + so + i * instep, on[L], accumulate);
        }
        return;
    }
    int e = 0;   /* the output dim that is the source's contiguous one (smallest source stride) */
    for (int d = 1; d < m; d++) if (ps[d] < ps[e]) e = d;
    const int64_t te = (on[e] + TILE - 1) / TILE, tl = (on[L] + TILE - 1) / TILE;
    const int64_t outer = total / (on[e] * on[L]), tasks = outer * te * tl;
    #pragma omp parallel for schedule(static) if (total > RX_OMP_MIN_WORK)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t q = t / (te * tl), so = 0, oo = 0;
        const int64_t i0 = (t / tl % te) * TILE, j0 = (t % tl) * TILE;
        for (int d = L - 1; d >= 0; d--) {
            if (d == e) continue;
            so += (q % on[d]) * ps[d];
            oo += (q % on[d]) * ostride[d];
            q /= on[d];
        }
        const int64_t i1 = i0 + TILE < on[e] ? i0 + TILE : on[e], j1 = j0 + TILE < on[L] ? j0 + TILE : on[L];
        for (int64_t i = i0; i < i1; i++) {
            float *drow = dst + oo + i * ostride[e];
            const float *srow = src + so + i * ps[e];
            if (accumulate) for (int64_t j = j0; j < j1; j++) drow[j] += srow[j * ps[L]];
            else            for (int64_t j = j0; j < j1; j++) drow[j] = srow[j * ps[L]];
        }
    }
}

rx_status cpu_permute_fwd(rx_ctx *c, rx_node *n) {
    permute_move(n->out->data, n->in[0]->data, n->in[0]->ndim, n->in[0]->shape, n->i, 0);
    return RX_OK;
}

/* dx = dy.permute(inverse perm) */
rx_status cpu_permute_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cpu_in_grad(n, 0);
    if (!gx) return RX_OK;
    int64_t inv[RX_MAX_DIMS];
    for (int d = 0; d < n->out->ndim; d++) inv[n->i[d]] = d;
    permute_move(gx, n->out->grad->data, n->out->ndim, n->out->shape, inv, 1);
    return RX_OK;
}

/* ---- nearest 2x upsample: y[.., 2i+di, 2j+dj] = x[.., i, j] -------------------------------- */

rx_status cpu_upsample_nearest2x_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *X = n->in[0];
    const int64_t rows = X->shape[0] * X->shape[1] * X->shape[2], W = X->shape[3];
    const float *x = X->data;
    float *y = n->out->data;
    #pragma omp parallel for schedule(static) if (n->out->numel > RX_OMP_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {   /* input row r -> output rows 2r, 2r+1 */
        const float *xr = x + r * W;
        float *y0 = y + 2 * r * (2 * W), *y1 = y0 + 2 * W;
        for (int64_t j = 0; j < W; j++) y0[2 * j] = y0[2 * j + 1] = xr[j];
        memcpy(y1, y0, (size_t)(2 * W) * sizeof(float));
    }
    return RX_OK;
}

/* dx[i,j] += Σ of dy over its 2x2 block */
rx_status cpu_upsample_nearest2x_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cpu_in_grad(n, 0);
    if (!gx) return RX_OK;
    const rx_tensor *X = n->in[0];
    const int64_t rows = X->shape[0] * X->shape[1] * X->shape[2], W = X->shape[3];
    const float *gy = n->out->grad->data;
    #pragma omp parallel for schedule(static) if (n->out->numel > RX_OMP_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {
        const float *g0 = gy + 2 * r * (2 * W), *g1 = g0 + 2 * W;
        float *gr = gx + r * W;
        for (int64_t j = 0; j < W; j++) gr[j] += (g0[2 * j] + g0[2 * j + 1]) + (g1[2 * j] + g1[2 * j + 1]);
    }
    return RX_OK;
}

/* ---- 2x average pool: y[.., i, j] = ¼ Σ x[.., 2i+di, 2j+dj] ---------------------------------- */

rx_status cpu_avgpool2x_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *Y = n->out;
    const int64_t rows = Y->shape[0] * Y->shape[1] * Y->shape[2], W = Y->shape[3];
    const float *x = n->in[0]->data;
    float *y = Y->data;
    #pragma omp parallel for schedule(static) if (n->in[0]->numel > RX_OMP_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {   /* output row r <- input rows 2r, 2r+1 */
        const float *x0 = x + 2 * r * (2 * W), *x1 = x0 + 2 * W;
        float *yr = y + r * W;
        for (int64_t j = 0; j < W; j++) yr[j] = 0.25f * ((x0[2 * j] + x0[2 * j + 1]) + (x1[2 * j] + x1[2 * j + 1]));
    }
    return RX_OK;
}

rx_status cpu_avgpool2x_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cpu_in_grad(n, 0);
    if (!gx) return RX_OK;
    const rx_tensor *Y = n->out;
    const int64_t rows = Y->shape[0] * Y->shape[1] * Y->shape[2], W = Y->shape[3];
    const float *gy = Y->grad->data;
    #pragma omp parallel for schedule(static) if (n->in[0]->numel > RX_OMP_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {
        float *g0 = gx + 2 * r * (2 * W), *g1 = g0 + 2 * W;
        const float *gr = gy + r * W;
        for (int64_t j = 0; j < W; j++) {
            const float g = 0.25f * gr[j];
            g0[2 * j] += g; g0[2 * j + 1] += g;
            g1[2 * j] += g; g1[2 * j + 1] += g;
        }
    }
    return RX_OK;
}

/* ---- global average pool: [B,C,H,W] -> [B,C], mean over H·W ----------------------------------- */

enum { BLOCK = 512 };

rx_status cpu_global_avgpool_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *X = n->in[0];
    const int64_t planes = X->shape[0] * X->shape[1], HW = X->shape[2] * X->shape[3];
    const float *x = X->data;
    float *y = n->out->data;
    #pragma omp parallel for schedule(static) if (X->numel > RX_OMP_MIN_WORK)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * HW;
        double s = 0;   /* float over blocks of BLOCK, double across them */
        for (int64_t i0 = 0; i0 < HW; i0 += BLOCK) {
            const int64_t i1 = i0 + BLOCK < HW ? i0 + BLOCK : HW;
            float part = 0;
            #pragma omp simd reduction(+ : part)
            for (int64_t i = i0; i < i1; i++) part += xp[i];
            s += part;
        }
        y[pl] = (float)(s / (double)HW);
    }
    return RX_OK;
}

rx_status cpu_global_avgpool_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cpu_in_grad(n, 0);
    if (!gx) return RX_OK;
    const rx_tensor *X = n->in[0];
    const int64_t planes = X->shape[0] * X->shape[1], HW = X->shape[2] * X->shape[3];
    const float *gy = n->out->grad->data;
    #pragma omp parallel for schedule(static) if (X->numel > RX_OMP_MIN_WORK)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float g = gy[pl] / (float)HW;
        float *gp = gx + pl * HW;
        for (int64_t i = 0; i < HW; i++) gp[i] += g;
    }
    return RX_OK;
}

/* ---- unpatchify (DiT): x [B, h*w, p*p*C] -> y [B, C, h*p, w*p] ----------------------------------
 * einsum "nhwpqc->nchpwq":  y[n, c, hi*p + pi, wi*p + qi] = x[n, hi*w + wi, (pi*p + qi)*C + c].
 * One task per output row (n, c, hi, pi); the backward gathers the same way into dx. */
static void unpatchify_move(const rx_node *n, float *x, float *y, int backward) {
    const int64_t B = n->in[0]->shape[0], C = n->i[0], h = n->i[1], w = n->i[2], p = n->i[3];
    const int64_t rows = B * C * h * p;
    #pragma omp parallel for schedule(static) if (n->out->numel > RX_OMP_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t pi = r % p, hi = r / p % h, ch = r / (p * h) % C, b = r / (p * h * C);
        float *yr = y + r * (w * p);   /* output rows are [b][c][hi][pi] in order */
        for (int64_t wi = 0; wi < w; wi++) {
            float *xt = x + ((b * h + hi) * w + wi) * (p * p * C) + pi * p * C + ch;   /* token, row pi */
            float *yt = yr + wi * p;
            if (backward) for (int64_t qi = 0; qi < p; qi++) xt[qi * C] += yt[qi];
            else          for (int64_t qi = 0; qi < p; qi++) yt[qi] = xt[qi * C];
        }
    }
}

rx_status cpu_unpatchify_fwd(rx_ctx *c, rx_node *n) {
    unpatchify_move(n, n->in[0]->data, n->out->data, 0);
    return RX_OK;
}

rx_status cpu_unpatchify_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cpu_in_grad(n, 0);
    if (gx) unpatchify_move(n, gx, n->out->grad->data, 1);
    return RX_OK;
}

/* ---- slice (torch.narrow): y = x[..., start:start+len (dim d), ...] ----------------------------
 * With outer = Π dims before d and inner = Π dims after d, each outer index is one contiguous
 * block of len·inner elements at offset (o·size + start)·inner of x. */
static void slice_move(const rx_node *n, float *x, float *y, int backward) {
    const rx_tensor *X = n->in[0];
    const int d = (int)n->i[0];
    const int64_t start = n->i[1], len = n->i[2], size = X->shape[d];
    int64_t outer = 1, inner = 1;
    for (int k = 0; k < d; k++) outer *= X->shape[k];
    for (int k = d + 1; k < X->ndim; k++) inner *= X->shape[k];
    #pragma omp parallel for schedule(static) if (n->out->numel > RX_OMP_MIN_WORK && outer > 1)
    for (int64_t o = 0; o < outer; o++) {
        float *xb = x + (o * size + start) * inner, *yb = y + o * len * inner;
        if (backward) copy_or_add(xb, yb, len * inner, 1);
        else          copy_or_add(yb, xb, len * inner, 0);
    }
}

rx_status cpu_slice_fwd(rx_ctx *c, rx_node *n) {
    slice_move(n, n->in[0]->data, n->out->data, 0);
    return RX_OK;
}

rx_status cpu_slice_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cpu_in_grad(n, 0);
    if (gx) slice_move(n, gx, n->out->grad->data, 1);
    return RX_OK;
}
