/* elementwise.c — CPU add/sub/mul with NumPy broadcasting, scale, silu, gelu, modulate, dropout.
 *
 * Broadcasting. The output shape is collapsed into at most 5 dims: output dims of size 1
 * are dropped, and neighbouring dims in which a and b are each kept-or-broadcast alike are
 * merged. Every operand then has, per collapsed dim, an element stride or 0 (broadcast):
 *   [B,C,H,W] + [1,C,1,1] -> n = [B, C, H*W]   a: [C*H*W, H*W, 1]   b: [0, 1, 0]
 *   [B,C,H,W] + [B,C,1,1] -> n = [B*C, H*W]    a: [H*W, 1]          b: [1, 0]
 *   [B,N,D]   + [D]       -> n = [B*N, D]      a: [D, 1]            b: [0, 1]
 * The kernels run over rows of the last collapsed dim, in which each operand is either
 * contiguous (stride 1) or one repeated value (stride 0): a row costs one index
 * decomposition, its elements none, and the inner loops vectorize.
 *
 * Backward reduces dy over the dims where an operand was broadcast. Each output element of
 * the reduction (one element of da/db) is owned by one task, so there are no races and
 * the result does not depend on the thread count; sums are float over short blocks,
 * then double. */
#include "cpu.h"
#include "exp_vec.h"
#include "core/philox.h"
#include <math.h>
#include <omp.h>
#include <string.h>

enum {
    CHUNK = 16384,        /* elements per forward task: long rows are split for parallelism */
    ROW_GROUPS = 16,      /* rows of a backward reduction are summed in this many groups  */
    BLOCK = 512,          /* float partial sums over at most this many terms              */
    ROWS_PER_FLUSH = 64,  /* rows summed in float before adding into a double accumulator */
    LANES = 64,           /* Philox blocks generated together (dropout)                    */
};

typedef struct {
    int     nd;
    int64_t n[RX_MAX_DIMS];
    int64_t s[2][RX_MAX_DIMS];   /* element strides of a (0) and b (1); 0 = broadcast */
    int64_t rows, len;           /* rows = n[0] ... n[nd-2], len = n[nd-1]             */
} bcast_plan;

/* size of dim d of the output, as seen by t (right-aligned; missing leading dims are 1) */
static int64_t dim_as_out(const rx_tensor *t, int out_nd, int d) {
    int k = d - (out_nd - t->ndim);
    return k < 0 ? 1 : t->shape[k];
}

static void bcast_plan_make(const rx_tensor *a, const rx_tensor *b, const rx_tensor *y, bcast_plan *p) {
    int keep[2][RX_MAX_DIMS], m = 0;
    for (int d = 0; d < y->ndim; d++) {
        if (y->shape[d] == 1) continue;
        int k0 = dim_as_out(a, y->ndim, d) != 1, k1 = dim_as_out(b, y->ndim, d) != 1;
        if (m > 0 && keep[0][m - 1] == k0 && keep[1][m - 1] == k1) {
            p->n[m - 1] *= y->shape[d];
        } else {
            p->n[m] = y->shape[d];
            keep[0][m] = k0;
            keep[1][m] = k1;
            m++;
        }
    }
    if (m == 0) { p->n[0] = 1; keep[0][0] = keep[1][0] = 1; m = 1; }   /* one element */
    p->nd = m;
    for (int k = 0; k < 2; k++) {
        int64_t st = 1;
        for (int d = m - 1; d >= 0; d--) {
            p->s[k][d] = keep[k][d] ? st : 0;
            if (keep[k][d]) st *= p->n[d];
        }
    }
    p->len = p->n[m - 1];
    p->rows = 1;
    for (int d = 0; d < m - 1; d++) p->rows *= p->n[d];
}

/* element offsets of a and b at the start of output row r */
static inline void row_offsets(const bcast_plan *p, int64_t r, int64_t off[2]) {
    off[0] = off[1] = 0;
    for (int d = p->nd - 2; d >= 0; d--) {
        int64_t i = r % p->n[d];
        r /= p->n[d];
        off[0] += i * p->s[0][d];
        off[1] += i * p->s[1][d];
    }
}

/* ---- add / sub / mul forward ---------------------------------------------- */

enum { BIN_ADD, BIN_SUB, BIN_MUL };

/* y[i] = EXPR(av, bv) over one row, each operand contiguous (stride 1) or repeated (stride 0) */
#define BINARY_ROW(EXPR)                                                                   \
    do {                                                                                   \
        if (sa && sb) for (int64_t i = 0; i < m; i++) { float av = a[i], bv = b[i]; y[i] = EXPR; } \
        else if (sa) { const float bv = b[0]; for (int64_t i = 0; i < m; i++) { float av = a[i]; y[i] = EXPR; } } \
        else if (sb) { const float av = a[0]; for (int64_t i = 0; i < m; i++) { float bv = b[i]; y[i] = EXPR; } } \
        else { const float av = a[0], bv = b[0]; for (int64_t i = 0; i < m; i++) y[i] = EXPR; } \
    } while (0)

static inline void binary_row(int op, float *restrict y, const float *restrict a, int64_t sa,
                              const float *restrict b, int64_t sb, int64_t m) {
    switch (op) {
    case BIN_ADD: BINARY_ROW(av + bv); break;
    case BIN_SUB: BINARY_ROW(av - bv); break;
    case BIN_MUL: BINARY_ROW(av * bv); break;
    }
}

static rx_status binary_fwd(rx_node *n, int op) {
    bcast_plan p;
    bcast_plan_make(n->in[0], n->in[1], n->out, &p);
    const float *a = n->in[0]->data, *b = n->in[1]->data;
    float *y = n->out->data;
    const int64_t sa = p.s[0][p.nd - 1], sb = p.s[1][p.nd - 1];
    const int64_t nch = (p.len + CHUNK - 1) / CHUNK, tasks = p.rows * nch;
    #pragma omp parallel for schedule(static) if (n->out->numel > RX_OMP_MIN_WORK)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t r = t / nch, j0 = (t % nch) * CHUNK;
        const int64_t m = p.len - j0 < CHUNK ? p.len - j0 : CHUNK;
        int64_t off[2];
        row_offsets(&p, r, off);
        binary_row(op, y + r * p.len + j0, a + off[0] + j0 * sa, sa, b + off[1] + j0 * sb, sb, m);
    }
    return RX_OK;
}

rx_status cpu_add_fwd(rx_ctx *c, rx_node *n) { return binary_fwd(n, BIN_ADD); }
rx_status cpu_sub_fwd(rx_ctx *c, rx_node *n) { return binary_fwd(n, BIN_SUB); }
rx_status cpu_mul_fwd(rx_ctx *c, rx_node *n) { return binary_fwd(n, BIN_MUL); }

/* ---- add / sub / mul backward ------------------------------------------------ */

/* Σ_i g[i] f[i] over one row, f = sign (f == NULL) or f[i * sf], sf ∈ {0, 1} */
static double row_dot(const float *restrict g, const float *restrict f, int64_t sf, float sign, int64_t m) {
    double s = 0;
    for (int64_t i0 = 0; i0 < m; i0 += BLOCK) {
        const int64_t i1 = i0 + BLOCK < m ? i0 + BLOCK : m;
        float part = 0;
        if (!f) {
            #pragma omp simd reduction(+ : part)
            for (int64_t i = i0; i < i1; i++) part += g[i];
            part *= sign;
        } else if (sf) {
            #pragma omp simd reduction(+ : part)
            for (int64_t i = i0; i < i1; i++) part += g[i] * f[i];
        } else {
            #pragma omp simd reduction(+ : part)
            for (int64_t i = i0; i < i1; i++) part += g[i];
            part *= f[0];
        }
        s += part;
    }
    return s;
}

/* acc[j] += g[j] f[j] over one row piece, f as in row_dot */
static inline void row_axpy(float *restrict acc, const float *restrict g, const float *restrict f, int64_t sf,
                            float sign, int64_t m) {
    if (!f)      for (int64_t j = 0; j < m; j++) acc[j] += sign * g[j];
    else if (sf) for (int64_t j = 0; j < m; j++) acc[j] += g[j] * f[j];
    else { const float fv = f[0]; for (int64_t j = 0; j < m; j++) acc[j] += g[j] * fv; }
}

/* gx += reduce_{dims where x is broadcast}( gy ⊙ f ), f = sign (other == NULL, add/sub) or the
 * other operand (mul). x is operand k of the plan; the other one is 1 - k.
 *
 * The output rows split into kept outer indices ik (they address different parts of gx) and
 * broadcast outer indices is (they are summed). Each task sums one group of ROW_GROUPS
 * (or fewer) consecutive is for one ik, over whole rows: contiguous reads (column blocks of a
 * few hundred bytes per row defeat the hardware prefetcher: measured 4x slower on a
 * [4096, 1152] bias gradient). Partial sums are double (float within ROWS_PER_FLUSH rows)
 * and are added in group order, so the result does not depend on the thread count. */
static rx_status binary_bwd_operand(rx_ctx *c, const bcast_plan *p, int k, float *gx, const float *gy,
                                    const float *other, float sign) {
    const int nd = p->nd;
    int kept[RX_MAX_DIMS], summed[RX_MAX_DIMS], nk_d = 0, ns_d = 0;
    int64_t nk = 1, ns = 1, ostride[RX_MAX_DIMS];
    ostride[nd - 1] = 1;
    for (int d = nd - 2; d >= 0; d--) ostride[d] = ostride[d + 1] * p->n[d + 1];
    for (int d = 0; d < nd - 1; d++) {
        if (p->s[k][d]) { kept[nk_d++] = d; nk *= p->n[d]; }
        else            { summed[ns_d++] = d; ns *= p->n[d]; }
    }
    const int last_kept = p->s[k][nd - 1] != 0;
    const int64_t sf = p->s[1 - k][nd - 1], len = p->len, work = nk * ns * len;
    if (work == 0) return RX_OK;   /* an empty output contributes nothing */

    /* offsets (out, x, other) of the row with kept index ik and summed index is */
    #define ROW_AT(ik, is, oo, ox, of)                                                      \
        do {                                                                                \
            int64_t r_ = (ik), q_ = (is);                                                   \
            oo = ox = of = 0;                                                               \
            for (int e = nk_d - 1; e >= 0; e--) {                                           \
                int d = kept[e]; int64_t i = r_ % p->n[d]; r_ /= p->n[d];                   \
                oo += i * ostride[d]; ox += i * p->s[k][d]; of += i * p->s[1 - k][d];      \
            }                                                                               \
            for (int e = ns_d - 1; e >= 0; e--) {                                           \
                int d = summed[e]; int64_t i = q_ % p->n[d]; q_ /= p->n[d];                 \
                oo += i * ostride[d]; of += i * p->s[1 - k][d];                             \
            }                                                                               \
        } while (0)

    if (last_kept && ns == 1) {   /* x has the output's shape: no reduction, one pass */
        const int64_t ncol = (len + CHUNK - 1) / CHUNK, tasks = nk * ncol;
        #pragma omp parallel for schedule(static) if (work > RX_OMP_MIN_WORK && tasks > 1)
        for (int64_t t = 0; t < tasks; t++) {
            const int64_t j0 = (t % ncol) * CHUNK, m = len - j0 < CHUNK ? len - j0 : CHUNK;
            int64_t oo, ox, of;
            ROW_AT(t / ncol, 0, oo, ox, of);
            row_axpy(gx + ox + j0, gy + oo + j0, other ? other + of + j0 * sf : NULL, sf, sign, m);
        }
        return RX_OK;
    }

    const int64_t G = ns < ROW_GROUPS ? ns : ROW_GROUPS, per = (ns + G - 1) / G;
    const int64_t width = last_kept ? len : 1;   /* elements of gx per kept index */
    double *part = rx_arena_data(c->step, (size_t)(nk * G * width) * sizeof(double));
    float *rows = last_kept ? rx_arena_data(c->step, (size_t)(nk * G * len) * sizeof(float)) : NULL;
    if (!part || (last_kept && !rows)) return RX_ERR_OOM;
    #pragma omp parallel for schedule(static) if (work > RX_OMP_MIN_WORK)
    for (int64_t t = 0; t < nk * G; t++) {
        const int64_t ik = t / G, g = t % G, is_end = (g + 1) * per < ns ? (g + 1) * per : ns;
        double *pd = part + t * width;
        int64_t oo, ox, of;
        if (last_kept) {
            float *pf = rows + t * len;
            for (int64_t j = 0; j < len; j++) pd[j] = 0.0;
            for (int64_t is0 = g * per; is0 < is_end; is0 += ROWS_PER_FLUSH) {
                const int64_t is1 = is0 + ROWS_PER_FLUSH < is_end ? is0 + ROWS_PER_FLUSH : is_end;
                for (int64_t j = 0; j < len; j++) pf[j] = 0.0f;
                for (int64_t is = is0; is < is1; is++) {
                    ROW_AT(ik, is, oo, ox, of);
                    row_axpy(pf, gy + oo, other ? other + of : NULL, sf, sign, len);
                }
                for (int64_t j = 0; j < len; j++) pd[j] += pf[j];
            }
        } else {
            double acc = 0;
            for (int64_t is = g * per; is < is_end; is++) {
                ROW_AT(ik, is, oo, ox, of);
                acc += row_dot(gy + oo, other ? other + of : NULL, sf, sign, len);
            }
            pd[0] = acc;
        }
    }
    /* gx[ik] += Σ_g part[ik][g], in group order */
    #pragma omp parallel for schedule(static) if (nk * width * G > RX_OMP_MIN_WORK)
    for (int64_t ik = 0; ik < nk; ik++) {
        int64_t oo, ox, of;
        ROW_AT(ik, 0, oo, ox, of);
        (void)oo; (void)of;
        const double *pk = part + ik * G * width;
        for (int64_t j = 0; j < width; j++) {
            double sum = 0;
            for (int64_t g = 0; g < G; g++) sum += pk[g * width + j];
            gx[ox + j] += (float)sum;
        }
    }
    /* the partials go back to the step arena: backward would pile them up otherwise */
    if (rows) RX_TRY(rx_arena_free(c->step, rows, (size_t)(nk * G * len) * sizeof(float)));
    return rx_arena_free(c->step, part, (size_t)(nk * G * width) * sizeof(double));
    #undef ROW_AT
}

/* d(a ± b) = (da, ±db);  d(a b) = (dy b, dy a) */
static rx_status binary_bwd(rx_ctx *c, rx_node *n, int op) {
    bcast_plan p;
    bcast_plan_make(n->in[0], n->in[1], n->out, &p);
    const float *gy = n->out->grad->data;
    float *ga = cpu_in_grad(n, 0), *gb = cpu_in_grad(n, 1);
    const int mul = op == BIN_MUL;
    if (ga) RX_TRY(binary_bwd_operand(c, &p, 0, ga, gy, mul ? n->in[1]->data : NULL, 1.0f));
    if (gb) RX_TRY(binary_bwd_operand(c, &p, 1, gb, gy, mul ? n->in[0]->data : NULL, op == BIN_SUB ? -1.0f : 1.0f));
    return RX_OK;
}

rx_status cpu_add_bwd(rx_ctx *c, rx_node *n) { return binary_bwd(c, n, BIN_ADD); }
rx_status cpu_sub_bwd(rx_ctx *c, rx_node *n) { return binary_bwd(c, n, BIN_SUB); }
rx_status cpu_mul_bwd(rx_ctx *c, rx_node *n) { return binary_bwd(c, n, BIN_MUL); }

/* ---- scale: y = alpha x + beta   (f[0] = alpha, f[1] = beta) --------------------- */

rx_status cpu_scale_fwd(rx_ctx *c, rx_node *n) {
    const float alpha = n->f[0], beta = n->f[1], *x = n->in[0]->data;
    float *y = n->out->data;
    const int64_t N = n->out->numel;
    #pragma omp parallel for schedule(static) if (N > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < N; i++) y[i] = alpha * x[i] + beta;
    return RX_OK;
}

rx_status cpu_scale_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cpu_in_grad(n, 0);
    if (gx) return c->be->axpy(c, gx, n->f[0], n->out->grad->data, n->out->numel);
    return RX_OK;
}

/* ---- exp: y = e^x;  dy/dx = y -------------------------------------------------------------- */

rx_status cpu_exp_fwd(rx_ctx *c, rx_node *n) {
    const float *restrict x = n->in[0]->data;
    float *restrict y = n->out->data;
    const int64_t N = n->out->numel;
    #pragma omp parallel for schedule(static) if (N > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < N; i++) y[i] = expf(x[i]);
    return RX_OK;
}

rx_status cpu_exp_bwd(rx_ctx *c, rx_node *n) {
    float *restrict gx = cpu_in_grad(n, 0);
    if (!gx) return RX_OK;
    const float *restrict y = n->out->data, *restrict gy = n->out->grad->data;
    const int64_t N = n->out->numel;
    #pragma omp parallel for schedule(static) if (N > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < N; i++) gx[i] += gy[i] * y[i];
    return RX_OK;
}

/* ---- abs: y = |x|;  dy/dx = sign(x), 0 at 0 ------------------------------------------------- */

rx_status cpu_abs_fwd(rx_ctx *c, rx_node *n) {
    const float *restrict x = n->in[0]->data;
    float *restrict y = n->out->data;
    const int64_t N = n->out->numel;
    #pragma omp parallel for schedule(static) if (N > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < N; i++) y[i] = fabsf(x[i]);
    return RX_OK;
}

rx_status cpu_abs_bwd(rx_ctx *c, rx_node *n) {
    float *restrict gx = cpu_in_grad(n, 0);
    if (!gx) return RX_OK;
    const float *restrict x = n->in[0]->data, *restrict gy = n->out->grad->data;
    const int64_t N = n->out->numel;
    #pragma omp parallel for schedule(static) if (N > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < N; i++) gx[i] += x[i] > 0 ? gy[i] : x[i] < 0 ? -gy[i] : 0.0f;
    return RX_OK;
}

/* ---- silu: y = x σ(x);  dy/dx = σ(x) (1 + x (1 - σ(x))) ------------------------------- */

rx_status cpu_silu_fwd(rx_ctx *c, rx_node *n) {
    const float *restrict x = n->in[0]->data;
    float *restrict y = n->out->data;
    const int64_t N = n->out->numel;
    #pragma omp parallel for schedule(static) if (N > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < N; i++) y[i] = x[i] / (1.0f + exp_vec(-x[i]));
    return RX_OK;
}

rx_status cpu_silu_bwd(rx_ctx *c, rx_node *n) {
    float *restrict gx = cpu_in_grad(n, 0);
    if (!gx) return RX_OK;
    const float *restrict x = n->in[0]->data, *restrict gy = n->out->grad->data;
    const int64_t N = n->out->numel;
    #pragma omp parallel for schedule(static) if (N > RX_OMP_MIN_WORK)
    for (int64_t i = 0; i < N; i++) {
        const float s = 1.0f / (1.0f + exp_vec(-x[i]));
        gx[i] += gy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
    return RX_OK;
}

/* ---- gelu (i[0] = 1: tanh approximation) ------------------------------------------------
 * exact: y = x Φ(x), Φ(x) = ½ (1 + erf(x/√2)) = ½ erfc(-x/√2);   dy/dx = Φ(x) + x φ(x),
 *        φ(x) = e^{-x²/2}/√(2π)
 * tanh:  y = ½ x (1 + tanh u) = x σ(2u), u = √(2/π) (x + 0.044715 x³);
 *        dy/dx = s + 2 x s (1 - s) du/dx with s = σ(2u), du/dx = √(2/π) (1 + 3·0.044715 x²)
 * The erfc and sigmoid forms are the same functions without the cancellation of 1 + erf
 * and 1 + tanh for negative x, so the tails keep their relative precision. The tanh form
 * vectorizes (exp_vec); the exact form calls erfcf per element. */
#define GELU_K0 0.7978845608028654f   /* √(2/π)   */
#define GELU_K1 0.044715f
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

rx_status cpu_gelu_fwd(rx_ctx *c, rx_node *n) {
    const float *restrict x = n->in[0]->data;
    float *restrict y = n->out->data;
    const int64_t N = n->out->numel;
    if (n->i[0]) {
        #pragma omp parallel for schedule(static) if (N > RX_OMP_MIN_WORK)
        for (int64_t i = 0; i < N; i++) {
            const float v = x[i], u = GELU_K0 * (v + GELU_K1 * v * v * v);
            y[i] = v / (1.0f + exp_vec(-2.0f * u));
        }
    } else {
        #pragma omp parallel for schedule(static) if (N > RX_OMP_MIN_WORK)
        for (int64_t i = 0; i < N; i++) y[i] = 0.5f * x[i] * erfcf(-x[i] * INV_SQRT2);
    }
    return RX_OK;
}

rx_status cpu_gelu_bwd(rx_ctx *c, rx_node *n) {
    float *restrict gx = cpu_in_grad(n, 0);
    if (!gx) return RX_OK;
    const float *restrict x = n->in[0]->data, *restrict gy = n->out->grad->data;
    const int64_t N = n->out->numel;
    if (n->i[0]) {
        #pragma omp parallel for schedule(static) if (N > RX_OMP_MIN_WORK)
        for (int64_t i = 0; i < N; i++) {
            const float v = x[i], u = GELU_K0 * (v + GELU_K1 * v * v * v);
            const float s = 1.0f / (1.0f + exp_vec(-2.0f * u)), du = GELU_K0 * (1.0f + 3.0f * GELU_K1 * v * v);
            gx[i] += gy[i] * (s + 2.0f * v * s * (1.0f - s) * du);
        }
    } else {
        #pragma omp parallel for schedule(static) if (N > RX_OMP_MIN_WORK)
        for (int64_t i = 0; i < N; i++) {
            const float v = x[i];
            const float cdf = 0.5f * erfcf(-v * INV_SQRT2), pdf = INV_SQRT_2PI * exp_vec(-0.5f * v * v);
            gx[i] += gy[i] * (cdf + v * pdf);
        }
    }
    return RX_OK;
}

/* ---- modulate (adaLN): x [B,N,D], shift [B,D], scale [B,D] -> y = x (1 + scale) + shift ----
 * backward: dx = dy (1 + scale);  dshift[b,d] = Σ_n dy;  dscale[b,d] = Σ_n dy x            */

rx_status cpu_modulate_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *X = n->in[0];
    const int64_t B = X->shape[0], N = X->shape[1], D = X->shape[2];
    const float *x = X->data, *shift = n->in[1]->data, *scale = n->in[2]->data;
    float *y = n->out->data;
    #pragma omp parallel for collapse(2) schedule(static) if (X->numel > RX_OMP_MIN_WORK)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < N; t++) {
            const float *xr = x + (b * N + t) * D, *sh = shift + b * D, *sc = scale + b * D;
            float *yr = y + (b * N + t) * D;
            for (int64_t d = 0; d < D; d++) yr[d] = xr[d] * (1.0f + sc[d]) + sh[d];
        }
    return RX_OK;
}

rx_status cpu_modulate_bwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *X = n->in[0];
    const int64_t B = X->shape[0], N = X->shape[1], D = X->shape[2];
    const float *x = X->data, *scale = n->in[2]->data, *gy = n->out->grad->data;
    float *gx = cpu_in_grad(n, 0), *gshift = cpu_in_grad(n, 1), *gscale = cpu_in_grad(n, 2);
    if (X->numel == 0) return RX_OK;
    /* tasks = (sample b, group of tokens) over whole rows, as in binary_bwd_operand; per task a
     * double partial of Σ dy and Σ dy x (float within ROWS_PER_FLUSH tokens), added in group order */
    const int64_t G = N < ROW_GROUPS ? (N ? N : 1) : ROW_GROUPS, per = (N + G - 1) / G;
    double *part = rx_arena_data(c->step, (size_t)(B * G * 2 * D) * sizeof(double));
    float *rows = rx_arena_data(c->step, (size_t)(B * G * 2 * D) * sizeof(float));
    if (!part || !rows) return RX_ERR_OOM;
    #pragma omp parallel for schedule(static) if (X->numel > RX_OMP_MIN_WORK)
    for (int64_t task = 0; task < B * G; task++) {
        const int64_t b = task / G, g = task % G, t_end = (g + 1) * per < N ? (g + 1) * per : N;
        double *ps = part + task * 2 * D;   /* [0, D): Σ dy, [D, 2D): Σ dy x */
        float *fs = rows + task * 2 * D, *fc = fs + D;
        const float *restrict sc = scale + b * D;
        for (int64_t j = 0; j < 2 * D; j++) ps[j] = 0.0;
        for (int64_t t0 = g * per; t0 < t_end; t0 += ROWS_PER_FLUSH) {
            const int64_t t1 = t0 + ROWS_PER_FLUSH < t_end ? t0 + ROWS_PER_FLUSH : t_end;
            for (int64_t j = 0; j < 2 * D; j++) fs[j] = 0.0f;
            for (int64_t t = t0; t < t1; t++) {
                const int64_t o = (b * N + t) * D;
                const float *restrict dy = gy + o, *restrict xr = x + o;
                if (gx) {
                    float *restrict gxr = gx + o;
                    for (int64_t j = 0; j < D; j++) gxr[j] += dy[j] * (1.0f + sc[j]);
                }
                for (int64_t j = 0; j < D; j++) {
                    fs[j] += dy[j];
                    fc[j] += dy[j] * xr[j];
                }
            }
            for (int64_t j = 0; j < 2 * D; j++) ps[j] += fs[j];
        }
    }
    #pragma omp parallel for schedule(static) if (B * G * D > RX_OMP_MIN_WORK)
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < D; j++) {
            double s_shift = 0, s_scale = 0;
            for (int64_t g = 0; g < G; g++) {
                s_shift += part[(b * G + g) * 2 * D + j];
                s_scale += part[(b * G + g) * 2 * D + D + j];
            }
            if (gshift) gshift[b * D + j] += (float)s_shift;
            if (gscale) gscale[b * D + j] += (float)s_scale;
        }
    RX_TRY(rx_arena_free(c->step, rows, (size_t)(B * G * 2 * D) * sizeof(float)));
    return rx_arena_free(c->step, part, (size_t)(B * G * 2 * D) * sizeof(double));
}

/* ---- dropout (inverted): y = x · keep / (1 - p) ---------------------------------------
 * keep_i = (u_i >= p) with u_i = uniform from word i of Philox stream i[0] under seed i[1]
 * (rx_rng_uniform1(seed, stream, i)): the mask depends only on (seed, step, call number,
 * element index), so it is the same on every backend and is recomputed in backward
 * instead of being stored. f[0] = p. */

/* Philox4x32-10 blocks blk0 .. blk0 + LANES - 1 of (seed, stream), the same words as
 * core/philox.c's rx_philox4x32_10 (key = seed, counter = {blk, stream}), computed lane-wise
 * so the rounds vectorize: w[k][b] is word k of block blk0 + b. */
static void philox_lanes(uint64_t seed, uint64_t stream, uint64_t blk0, uint32_t w[4][LANES]) {
    uint32_t c0[LANES], c1[LANES], c2[LANES], c3[LANES];
    for (int b = 0; b < LANES; b++) {
        c0[b] = (uint32_t)(blk0 + b);
        c1[b] = (uint32_t)((blk0 + b) >> 32);
        c2[b] = (uint32_t)stream;
        c3[b] = (uint32_t)(stream >> 32);
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        for (int b = 0; b < LANES; b++) {
            const uint64_t p0 = (uint64_t)0xD2511F53u * c0[b], p1 = (uint64_t)0xCD9E8D57u * c2[b];
            const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[b] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3[b] ^ k1;
            c0[b] = n0;
            c1[b] = (uint32_t)p1;
            c2[b] = n2;
            c3[b] = (uint32_t)p0;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    memcpy(w[0], c0, sizeof c0);
    memcpy(w[1], c1, sizeof c1);
    memcpy(w[2], c2, sizeof c2);
    memcpy(w[3], c3, sizeof c3);
}

/* y[i] (+)= x[i] · mask_i for i in [0, N); element i is word i % 4 of block i / 4 */
static void dropout_apply(uint64_t seed, uint64_t stream, float p, const float *x, float *y, int64_t N,
                          int accumulate) {
    const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    const int64_t per_task = 4 * LANES, tasks = (N + per_task - 1) / per_task;
    /* a quarter of a Philox block (ten rounds of multiplies) per element: several light ones' work */
    #pragma omp parallel for schedule(static) if (N > RX_OMP_MIN_WORK / 4)
    for (int64_t t = 0; t < tasks; t++) {
        uint32_t w[4][LANES];
        philox_lanes(seed, stream, (uint64_t)t * LANES, w);
        float mask[4 * LANES];
        for (int b = 0; b < LANES; b++)
            for (int k = 0; k < 4; k++) mask[4 * b + k] = rx_u32_to_uniform(w[k][b]) >= p ? keep_scale : 0.0f;
        const int64_t i0 = t * per_task, m = N - i0 < per_task ? N - i0 : per_task;
        if (accumulate) for (int64_t j = 0; j < m; j++) y[i0 + j] += x[i0 + j] * mask[j];
        else            for (int64_t j = 0; j < m; j++) y[i0 + j] = x[i0 + j] * mask[j];
    }
}

rx_status cpu_dropout_fwd(rx_ctx *c, rx_node *n) {
    dropout_apply((uint64_t)n->i[1], (uint64_t)n->i[0], n->f[0], n->in[0]->data, n->out->data, n->out->numel, 0);
    return RX_OK;
}

rx_status cpu_dropout_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cpu_in_grad(n, 0);
    if (gx) dropout_apply((uint64_t)n->i[1], (uint64_t)n->i[0], n->f[0], n->out->grad->data, gx, n->out->numel, 1);
    return RX_OK;
}

/* ---- residual_add: y = (a + (b + bias[c])) s;  da = db = s dy,  dbias[c] = s Σ_{b,spatial} dy ------------
 * a, b [B,C,S] (S = the spatial size), bias [C] or NULL, f[0] = s. */

rx_status cpu_residual_add_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *at = n->in[0];
    const int64_t C = at->shape[1], BC = at->shape[0] * C, S = BC ? at->numel / BC : 0;
    const float *restrict a = at->data, *restrict b = n->in[1]->data, *bias = n->in[2] ? n->in[2]->data : NULL;
    const float s = n->f[0];
    float *restrict y = n->out->data;
    #pragma omp parallel for schedule(static) if (at->numel > RX_OMP_MIN_WORK)
    for (int64_t bc = 0; bc < BC; bc++) {
        const float bv = bias ? bias[bc % C] : 0.0f;
        const float *as = a + bc * S, *bs = b + bc * S;
        float *ys = y + bc * S;
        #pragma omp simd
        for (int64_t i = 0; i < S; i++) ys[i] = (as[i] + (bs[i] + bv)) * s;
    }
    return RX_OK;
}

rx_status cpu_residual_add_bwd(rx_ctx *c, rx_node *n) {
    float *ga = cpu_in_grad(n, 0), *gb = cpu_in_grad(n, 1), *gbias = cpu_in_grad(n, 2);
    const rx_tensor *at = n->in[0];
    const int64_t C = at->shape[1], B = at->shape[0], BC = B * C, S = BC ? at->numel / BC : 0;
    const float *restrict dy = n->out->grad->data;
    const float s = n->f[0];
    // per (b,c) row: Σ dy (for the bias, summed over b in order below), da and db in the same pass
    double *rows = gbias ? rx_arena_data(c->step, (size_t)(BC ? BC : 1) * sizeof(double)) : NULL;
    if (gbias && !rows) return RX_ERR_OOM;
    #pragma omp parallel for schedule(static) if (at->numel > RX_OMP_MIN_WORK)
    for (int64_t bc = 0; bc < BC; bc++) {
        const float *dys = dy + bc * S;
        float *gas = ga ? ga + bc * S : NULL, *gbs = gb ? gb + bc * S : NULL;
        if (gas) {
            #pragma omp simd
            for (int64_t i = 0; i < S; i++) gas[i] += s * dys[i];
        }
        if (gbs) {
            #pragma omp simd
            for (int64_t i = 0; i < S; i++) gbs[i] += s * dys[i];
        }
        if (rows) rows[bc] = row_dot(dys, NULL, 0, 1.0f, S);
    }
    if (!rows) return RX_OK;
    for (int64_t ch = 0; ch < C; ch++) {
        double t = 0;
        for (int64_t b = 0; b < B; b++) t += rows[b * C + ch];
        gbias[ch] += (float)(s * t);
    }
    return rx_arena_free(c->step, rows, (size_t)(BC ? BC : 1) * sizeof(double));
}
