// attention.cu — CUDA softmax (last dim) and scaled dot-product attention, forward and backward,
// as cpu/attention.c. Node layout (op_attention.c): softmax in = {x}; attention in = {q, k, v},
// f[0] = scale (resolved). Leading dims of q, k, v are one batch of BH independent heads.
//
// attention, per head (q [Nq,D], k [Nk,D], v [Nk,Dv]):
//   S = scale q kᵀ [Nq,Nk];  P = softmax_rows(S);  o = P v [Nq,Dv]
// computed as FlashAttention-2 (Dao 2023), as the CPU's registered kernels: the forward keeps the
// output and the per-row log-sum-exp, the backward recomputes the scores tile by tile; nothing of
// size [BH,Nq,Nk] exists, not even in scratch.
//
// Why our own kernels: cuDNN's fused scaled-dot-product attention (cudnn frontend graph API,
// FlashAttention-2 inside) takes fp16, bf16 or fp8 tensors only (its support matrix, cuDNN 9:
// https://docs.nvidia.com/deeplearning/cudnn/frontend/latest/operations/Attention.html), and
// runexp's tensors are fp32 (TF32 only rounds GEMM inputs); and it cannot run in the CUDA
// emulator (tests/cuda/emu), where every kernel here is tested against the CPU's.
//
// precision: bf16 (issue 16 §4) runs the forward on tensor cores: flash_fwd_bf16_kernel below,
// the same online softmax with S = q kᵀ and O += P v as warp-level mma.sync m16n8k16 products
// (mma_bf16.h: q, k, v and P in bf16, fp32 accumulation, statistics and output), for head dims up
// to 256; wider heads keep the fp32 kernel. Its backward is the fp32 kernels' with q, k, v rounded
// to bf16 as they are loaded (so P recomputed there is the forward's within fp32 rounding).
// tests/cuda/test_cuda_mma.c bounds both against the CPU kernel on the same rounded inputs.
// What is left, for a session with a device to time it (bench/gpu_issue16.sh has the row):
//   - the backward on tensor cores (dq, dk, dv and the recomputed S, dP as mma products);
//   - tuning the forward: ldmatrix fragment loads, cp.async double-buffered K/V tiles, the
//     occupancy at head dim 256 (245 registers a thread);
//   - or cuDNN's SDPA through the backend (graph) API as the bf16 path, timed against this one.
// fp32 and TF32 use the fp32 kernels (TF32 does not round inside them).
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/mma_bf16.h"

// ---- softmax over rows of n (one block per row, grid-stride) ---------------------------------------

__global__ void softmax_rows_kernel(const float *x, float *y, int64_t R, int64_t n) {
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float mx = -INFINITY;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, xr[j]);
        mx = rx_block_max_f(mx);
        double s = 0;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += expf(xr[j] - mx);
        const float inv = 1.0f / (float)rx_block_sum(s);
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) yr[j] = expf(xr[j] - mx) * inv;
        // x may be y (in place, no __restrict__): each thread reads x[j] before writing y[j]
    }
}

// dx += y ⊙ (dy - Σ dy ⊙ y) per row
__global__ void softmax_rows_bwd_kernel(const float *__restrict__ y, const float *dy, float *dx, int64_t R, int64_t n) {
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        const float *yr = y + r * n, *dyr = dy + r * n;
        float *dxr = dx + r * n;
        double d = 0;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) d += (double)dyr[j] * yr[j];
        const float dot = (float)rx_block_sum(d);
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) dxr[j] += yr[j] * (dyr[j] - dot);
    }
}

static unsigned rows_grid(int64_t rows) { return (unsigned)(rows < 1 ? 1 : rows > (1 << 20) ? (1 << 20) : rows); }
static int row_threads(int64_t n) { return n >= 1024 ? 256 : n >= 256 ? 128 : 64; }

static rx_status softmax_rows(rx_ctx *c, const float *x, float *y, int64_t R, int64_t n) {
    if (R == 0 || n == 0) return RX_OK;
    softmax_rows_kernel<<<rows_grid(R), row_threads(n), 0, rx_cuda(c)->stream>>>(x, y, R, n);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

extern "C" rx_status cuda_softmax_fwd(rx_ctx *c, rx_node *n) {
    const rx_tensor *x = n->in[0];
    const int64_t D = x->shape[x->ndim - 1];
    return softmax_rows(c, x->data, n->out->data, D ? x->numel / D : 0, D);
}

extern "C" rx_status cuda_softmax_bwd(rx_ctx *c, rx_node *n) {
    float *gx = cuda_in_grad(n, 0);
    if (!gx) return RX_OK;
    const int64_t D = n->out->shape[n->out->ndim - 1], R = D ? n->out->numel / D : 0;
    if (R == 0) return RX_OK;
    softmax_rows_bwd_kernel<<<rows_grid(R), row_threads(D), 0, rx_cuda(c)->stream>>>(n->out->data, n->out->grad->data, gx,
                                                                                     R, D);
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

// ---- attention: q [BH,Nq,D], k [BH,Nk,D], v [BH,Nk,Dv] -> o [BH,Nq,Dv] ------------------------------
//
// forward, per head and query tile Q_i over the key tiles K_j, V_j (online softmax):
//   S = scale Q_i K_jᵀ;  m' = max(m, rowmax S);  P = e^(S - m');  l = l e^(m - m') + rowsum P;
//   O_i = O_i e^(m - m') + P V_j;        at the end O_i /= l,  LSE_i = m + log l
// saved: LSE [BH,Nq] (saved[0]) and the output itself (saved[1] = n->out, not a copy).
// backward, with D = rowsum(dO ⊙ O) (= rowsum(dP ⊙ P)):
//   S = scale Q_i K_jᵀ;  P = e^(S - LSE_i);  dP = dO_i V_jᵀ;  dS = P ⊙ (dP - D_i)
//   dQ_i += scale dS K_j;  dK_j += scale dSᵀ Q_i;  dV_j += Pᵀ dO_i
//
// Three kernels; a block is FA_ROWS rows x FA_LANES lanes (256 threads):
//   fwd   a block = 16 query rows of one head, looping over key tiles of FA_TILE (64)
//   dq    a block = 16 query rows, looping over key tiles: dq += scale dS k
//   dkdv  a block = 16 key rows, looping over query tiles: dv += Pᵀ do, dk += scale dSᵀ q
// dq and dk/dv are separate kernels so that every gradient row has one writer: no atomics, so
// one device gives bit-identical results run after run (cuda_common.h), at the price of
// computing S and dP twice in the backward (7 products instead of 5).
// Thread (r, lane) works for row r: its scores against the 64-tile are those of tile rows
// lane + 16 u (u < 4); the output columns it accumulates are c0 + lane + 16 t (t < NC). NC (2, 4,
// 8, 16) is the smallest that covers the head dim; heads wider than 256 take several blocks
// along grid.y (columns c0 = 256·blockIdx.y ...), each recomputing the scores.
// Dot products over the head dim go through shared memory FA_DC columns at a time, and the tile
// rows that are summed into the accumulators FA_SUB rows at a time. Not tuned on a device yet.

constexpr int FA_ROWS = 16, FA_LANES = 16, FA_THREADS = FA_ROWS * FA_LANES;
constexpr int FA_TILE = 64, FA_PER_LANE = FA_TILE / FA_LANES, FA_DC = 32, FA_SUB = 16;

typedef struct { int64_t BH, Nq, Nk, D, Dv; } attn_dims;

static attn_dims attn_dims_of(const rx_node *n) {
    const rx_tensor *q = n->in[0], *v = n->in[2];
    const int nd = q->ndim;
    attn_dims d;
    d.Nq = q->shape[nd - 2];
    d.D = q->shape[nd - 1];
    d.Nk = v->shape[nd - 2];
    d.Dv = v->shape[nd - 1];
    d.BH = 1;
    for (int i = 0; i < nd - 2; i++) d.BH *= q->shape[i];
    return d;
}

// what the three kernels read and write (pointers a kernel does not use are null)
struct fa_problem {
    const float *q, *k, *v, *o, *dout, *lse, *drow;
    float *out, *lse_out, *gq, *gk, *gv;   // lse_out null: no grad, LSE not kept
    int64_t Nq, Nk, D, Dv, tiles;          // tiles: row tiles of FA_ROWS per head (grid.x = BH · tiles)
    float scale;
    int bf16_inputs;                       // round q, k, v to bf16 as they are loaded (the bf16 forward's backward)
};

// x, or with bf16 inputs x rounded to bf16 (nearest even): the value the bf16 forward multiplied
__device__ __forceinline__ float fa_in(float x, int round) { return round ? float_of(bf16_of(x)) : x; }

// max and sum over the 16 lanes of a row (16 consecutive threads of one warp)
__device__ __forceinline__ float fa_row_max(float v) {
    for (int o = FA_LANES / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float fa_row_sum(float v) {
    for (int o = FA_LANES / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// acc[u] += Σ_e a[r,e] b[lane + 16u, e] over e < E: a = this block's 16 rows (a_rows of them
// real), b = a tile's 64 rows (b_rows real), both row-major with E columns; missing rows read 0.
// ra, rb: round a's / b's values to bf16 (fa_in).
__device__ void fa_dot_tile(const float *a, int64_t a_rows, const float *b, int64_t b_rows, int64_t E, int ra, int rb,
                            float (*As)[FA_DC + 1], float (*Bs)[FA_DC + 1], float acc[FA_PER_LANE]) {
    const int t = threadIdx.x, r = t / FA_LANES, lane = t % FA_LANES;
    for (int64_t e0 = 0; e0 < E; e0 += FA_DC) {
        __syncthreads();   // everyone is done with the previous chunk
        for (int i = t; i < FA_ROWS * FA_DC; i += FA_THREADS) {
            const int rr = i / FA_DC, e = i % FA_DC;
            As[rr][e] = rr < a_rows && e0 + e < E ? fa_in(a[rr * E + e0 + e], ra) : 0.0f;
        }
        for (int i = t; i < FA_TILE * FA_DC; i += FA_THREADS) {
            const int rr = i / FA_DC, e = i % FA_DC;
            Bs[rr][e] = rr < b_rows && e0 + e < E ? fa_in(b[rr * E + e0 + e], rb) : 0.0f;
        }
        __syncthreads();
        for (int e = 0; e < FA_DC; e++) {
            const float av = As[r][e];
            for (int u = 0; u < FA_PER_LANE; u++) acc[u] += av * Bs[lane + FA_LANES * u][e];
        }
    }
}

// acc[t] += Σ_j w[r,j] m[j, c0 + lane + 16t] over the tile's m_rows rows: w [16][64] in shared
// memory (this block's rows against the tile), m row-major with C columns (rm: rounded to bf16).
template <int NC>
__device__ void fa_accumulate_cols(const float (*W)[FA_TILE + 1], const float *m, int64_t m_rows, int64_t C, int64_t c0,
                                   int rm, float (*Ms)[FA_LANES * NC], float acc[NC]) {
    const int t = threadIdx.x, r = t / FA_LANES, lane = t % FA_LANES;
    constexpr int COLS = FA_LANES * NC;
    for (int j0 = 0; j0 < m_rows && j0 < FA_TILE; j0 += FA_SUB) {
        __syncthreads();   // W is written; everyone is done with the previous rows
        for (int i = t; i < FA_SUB * COLS; i += FA_THREADS) {
            const int jj = i / COLS, cc = i % COLS;
            Ms[jj][cc] = j0 + jj < m_rows && c0 + cc < C ? fa_in(m[(j0 + jj) * C + c0 + cc], rm) : 0.0f;
        }
        __syncthreads();
        for (int jj = 0; jj < FA_SUB; jj++) {
            const float w = W[r][j0 + jj];
            for (int cc = 0; cc < NC; cc++) acc[cc] += w * Ms[jj][lane + FA_LANES * cc];
        }
    }
}

template <int NC>
__global__ void flash_fwd_kernel(const fa_problem p) {
    __shared__ float As[FA_ROWS][FA_DC + 1], Bs[FA_TILE][FA_DC + 1], P[FA_ROWS][FA_TILE + 1];
    __shared__ float Ms[FA_SUB][FA_LANES * NC];
    const int r = threadIdx.x / FA_LANES, lane = threadIdx.x % FA_LANES;
    const int64_t h = blockIdx.x / p.tiles, i0 = blockIdx.x % p.tiles * FA_ROWS, i = i0 + r;
    const int64_t rows = p.Nq - i0 < FA_ROWS ? p.Nq - i0 : FA_ROWS, c0 = (int64_t)blockIdx.y * FA_LANES * NC;
    const float *q = p.q + (h * p.Nq + i0) * p.D, *k = p.k + h * p.Nk * p.D, *v = p.v + h * p.Nk * p.Dv;
    float m = -INFINITY, l = 0, acc[NC];
    for (int cc = 0; cc < NC; cc++) acc[cc] = 0.0f;
    for (int64_t j0 = 0; j0 < p.Nk; j0 += FA_TILE) {
        const int64_t keys = p.Nk - j0 < FA_TILE ? p.Nk - j0 : FA_TILE;
        float s[FA_PER_LANE] = {0.0f, 0.0f, 0.0f, 0.0f}, mx = -INFINITY;
        fa_dot_tile(q, rows, k + j0 * p.D, keys, p.D, p.bf16_inputs, p.bf16_inputs, As, Bs, s);
        for (int u = 0; u < FA_PER_LANE; u++) {
            s[u] = lane + FA_LANES * u < keys ? s[u] * p.scale : -INFINITY;
            mx = fmaxf(mx, s[u]);
        }
        const float m_new = fmaxf(m, fa_row_max(mx));   // finite: every tile has a key
        const float corr = expf(m - m_new);             // rescales the earlier tiles' sums; 0 on the first
        float ps = 0.0f;
        for (int u = 0; u < FA_PER_LANE; u++) {
            const float pu = expf(s[u] - m_new);         // e^-inf = 0 past the last key
            P[r][lane + FA_LANES * u] = pu;
            ps += pu;
        }
        l = l * corr + fa_row_sum(ps);
        for (int cc = 0; cc < NC; cc++) acc[cc] *= corr;
        m = m_new;
        fa_accumulate_cols<NC>(P, v + j0 * p.Dv, keys, p.Dv, c0, p.bf16_inputs, Ms, acc);   // o += P v
    }
    if (i >= p.Nq) return;   // after the last barrier
    for (int cc = 0; cc < NC; cc++) {
        const int64_t col = c0 + lane + FA_LANES * cc;
        if (col < p.Dv) p.out[(h * p.Nq + i) * p.Dv + col] = acc[cc] / l;
    }
    if (p.lse_out && blockIdx.y == 0 && lane == 0) p.lse_out[h * p.Nq + i] = m + logf(l);
}

template <int NC>
__global__ void flash_bwd_dq_kernel(const fa_problem p) {
    __shared__ float As[FA_ROWS][FA_DC + 1], Bs[FA_TILE][FA_DC + 1], dS[FA_ROWS][FA_TILE + 1];
    __shared__ float Ms[FA_SUB][FA_LANES * NC];
    const int r = threadIdx.x / FA_LANES, lane = threadIdx.x % FA_LANES;
    const int64_t h = blockIdx.x / p.tiles, i0 = blockIdx.x % p.tiles * FA_ROWS, i = i0 + r;
    const int64_t rows = p.Nq - i0 < FA_ROWS ? p.Nq - i0 : FA_ROWS, c0 = (int64_t)blockIdx.y * FA_LANES * NC;
    const float *q = p.q + (h * p.Nq + i0) * p.D, *dout = p.dout + (h * p.Nq + i0) * p.Dv;
    const float *k = p.k + h * p.Nk * p.D, *v = p.v + h * p.Nk * p.Dv;
    const float L = i < p.Nq ? p.lse[h * p.Nq + i] : 0.0f, Di = i < p.Nq ? p.drow[h * p.Nq + i] : 0.0f;
    float acc[NC];
    for (int cc = 0; cc < NC; cc++) acc[cc] = 0.0f;
    for (int64_t j0 = 0; j0 < p.Nk; j0 += FA_TILE) {
        const int64_t keys = p.Nk - j0 < FA_TILE ? p.Nk - j0 : FA_TILE;
        float s[FA_PER_LANE] = {0.0f, 0.0f, 0.0f, 0.0f}, dp[FA_PER_LANE] = {0.0f, 0.0f, 0.0f, 0.0f};
        const int r16 = p.bf16_inputs;
        fa_dot_tile(q, rows, k + j0 * p.D, keys, p.D, r16, r16, As, Bs, s);        // S / scale
        fa_dot_tile(dout, rows, v + j0 * p.Dv, keys, p.Dv, 0, r16, As, Bs, dp);    // dP
        for (int u = 0; u < FA_PER_LANE; u++) {
            const float pu = lane + FA_LANES * u < keys ? expf(s[u] * p.scale - L) : 0.0f;
            dS[r][lane + FA_LANES * u] = pu * (dp[u] - Di);
        }
        fa_accumulate_cols<NC>(dS, k + j0 * p.D, keys, p.D, c0, r16, Ms, acc);   // dS k
    }
    if (i >= p.Nq) return;
    for (int cc = 0; cc < NC; cc++) {
        const int64_t col = c0 + lane + FA_LANES * cc;
        if (col < p.D) p.gq[(h * p.Nq + i) * p.D + col] += p.scale * acc[cc];
    }
}

template <int NC>
__global__ void flash_bwd_dkdv_kernel(const fa_problem p) {
    __shared__ float As[FA_ROWS][FA_DC + 1], Bs[FA_TILE][FA_DC + 1];
    __shared__ float P[FA_ROWS][FA_TILE + 1], dS[FA_ROWS][FA_TILE + 1], Ms[FA_SUB][FA_LANES * NC];
    const int r = threadIdx.x / FA_LANES, lane = threadIdx.x % FA_LANES;
    const int64_t h = blockIdx.x / p.tiles, j0 = blockIdx.x % p.tiles * FA_ROWS, j = j0 + r;
    const int64_t keys = p.Nk - j0 < FA_ROWS ? p.Nk - j0 : FA_ROWS, c0 = (int64_t)blockIdx.y * FA_LANES * NC;
    const float *k = p.k + (h * p.Nk + j0) * p.D, *v = p.v + (h * p.Nk + j0) * p.Dv;
    const float *lse = p.lse + h * p.Nq, *drow = p.drow ? p.drow + h * p.Nq : nullptr;
    const int want_k = p.gk && c0 < p.D, want_v = p.gv && c0 < p.Dv;   // the same in the whole block
    float ak[NC], av[NC];
    for (int cc = 0; cc < NC; cc++) ak[cc] = av[cc] = 0.0f;
    for (int64_t i0 = 0; i0 < p.Nq; i0 += FA_TILE) {
        const int64_t nq = p.Nq - i0 < FA_TILE ? p.Nq - i0 : FA_TILE;
        const float *q = p.q + (h * p.Nq + i0) * p.D, *dout = p.dout + (h * p.Nq + i0) * p.Dv;
        float s[FA_PER_LANE] = {0.0f, 0.0f, 0.0f, 0.0f}, dp[FA_PER_LANE] = {0.0f, 0.0f, 0.0f, 0.0f};
        const int r16 = p.bf16_inputs;
        fa_dot_tile(k, keys, q, nq, p.D, r16, r16, As, Bs, s);                  // Sᵀ / scale: key r against query lane + 16u
        if (want_k) fa_dot_tile(v, keys, dout, nq, p.Dv, r16, 0, As, Bs, dp);   // dPᵀ
        for (int u = 0; u < FA_PER_LANE; u++) {
            const int64_t iq = i0 + lane + FA_LANES * u;
            const int real = lane + FA_LANES * u < nq && r < keys;   // rows past the last key: 0, not e^(-LSE)
            const float pu = real ? expf(s[u] * p.scale - lse[iq]) : 0.0f;
            P[r][lane + FA_LANES * u] = pu;
            dS[r][lane + FA_LANES * u] = want_k && real ? pu * (dp[u] - drow[iq]) : 0.0f;
        }
        if (want_v) fa_accumulate_cols<NC>(P, dout, nq, p.Dv, c0, 0, Ms, av);    // Pᵀ do
        if (want_k) fa_accumulate_cols<NC>(dS, q, nq, p.D, c0, r16, Ms, ak);     // dSᵀ q
    }
    if (j >= p.Nk) return;
    for (int cc = 0; cc < NC; cc++) {
        const int64_t col = c0 + lane + FA_LANES * cc;
        if (want_v && col < p.Dv) p.gv[(h * p.Nk + j) * p.Dv + col] += av[cc];
        if (want_k && col < p.D) p.gk[(h * p.Nk + j) * p.D + col] += p.scale * ak[cc];
    }
}

// out[r] = Σ_c a[r,c] b[r,c] (the backward's D = rowsum(dO ⊙ O)), one block per row, in double
__global__ void rowdot_kernel(const float *__restrict__ a, const float *__restrict__ b, float *out, int64_t R, int64_t n) {
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        double s = 0;
        for (int64_t c = threadIdx.x; c < n; c += blockDim.x) s += (double)a[r * n + c] * b[r * n + c];
        s = rx_block_sum(s);
        if (threadIdx.x == 0) out[r] = (float)s;
    }
}

// ---- precision bf16: the forward on tensor cores ------------------------------------------------------
// The same online softmax as flash_fwd_kernel, with S = Q Kᵀ and O += P V as m16n8k16 products
// (mma_bf16.h) of bf16 operands accumulated in fp32, as FlashAttention-2 does on Ampere/Hopper:
//   q, k, v rounded to bf16 (nearest even) as they are loaded; S accumulated in fp32 and scaled;
//   the running max m, the sum l (of the fp32 P) and O in fp32; P rounded to bf16 only as the A
//   operand of P V; LSE = m + log l, kept for the backward as in fp32.
// A block is FB_WARPS warps, each owning 16 query rows (FB_ROWS a block), looping over key tiles of
// FB_KEYS keys that the block stages in shared memory as bf16 (K [keys][HD], V [keys][HD]). A
// warp's Q stays in registers as A fragments; S is FB_KEYS / 8 accumulator tiles, O HD / 8. Head
// dims are padded with zeros to HD (16 ... 256; D and Dv both <= HD); wider heads keep the fp32
// kernel. A lane holds rows g and g + 8 of its warp's 16 (the C layout), a row's scores spread over
// the 4 lanes of its quad: row max and sum are two xor-shuffles.
// Registers (nvcc -Xptxas -v, sm_90): 56 (HD 16) to 245 (HD 256) a thread, no stack, no spills;
// RX_UNROLL on every loop that indexes a fragment array keeps them in registers. Not tuned on a
// device: fragments come from shared memory by 16-bit loads (ldmatrix would do it in one
// instruction), K/V tiles are not double-buffered (cp.async), 2 blocks an SM fit at HD 256.

constexpr int FB_WARPS = 4, FB_ROWS = 16 * FB_WARPS, FB_THREADS = 32 * FB_WARPS, FB_KEYS = 32, FB_PAD = 8;
constexpr int FB_MAX_HEAD = 256;

// m[r, c] of a row-major [rows, cols] matrix, 0 outside it
__device__ __forceinline__ float fb_at(const float *m, int64_t rows, int64_t cols, int64_t r, int64_t c) {
    return r < rows && c < cols ? m[r * cols + c] : 0.0f;
}

// the max / sum over the 4 lanes of a quad (one row of the C layout)
__device__ __forceinline__ float fb_quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float fb_quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

template <int HD>
__global__ void flash_fwd_bf16_kernel(const fa_problem p) {
    __shared__ bf16_bits Ks[FB_KEYS][HD + FB_PAD], Vs[FB_KEYS][HD + FB_PAD];
    const int lane = (int)threadIdx.x % 32, warp = (int)threadIdx.x / 32;
    const int64_t h = blockIdx.x / p.tiles, i0 = blockIdx.x % p.tiles * FB_ROWS + 16 * warp;   // the warp's rows
    const float *q = p.q + h * p.Nq * p.D, *k = p.k + h * p.Nk * p.D, *v = p.v + h * p.Nk * p.Dv;
    // Q [16 rows, HD] as A fragments, column chunk kc = 16 columns: kept in registers up to HD 128;
    // at 256 (with O's 128 registers a lane) they would go to the stack, so they are reloaded per
    // key tile from global memory (L1/L2) instead
    constexpr bool Q_IN_REGS = HD <= 128;
    uint32_t qa[Q_IN_REGS ? HD / 16 : 1][4];
    auto load_q = [&](int kc, uint32_t a[4]) {
        mma_load_a(a, lane, [&](int r, int c) { return bf16_of(fb_at(q, p.Nq, p.D, i0 + r, kc * 16 + c)); });
    };
    if (Q_IN_REGS) {
        RX_UNROLL
        for (int kc = 0; kc < HD / 16; kc++) load_q(kc, qa[kc]);
    }
    float o[HD / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};   // m, l: rows g and g + 8
    RX_UNROLL
    for (int nt = 0; nt < HD / 8; nt++)
        for (int e = 0; e < 4; e++) o[nt][e] = 0.0f;
    for (int64_t j0 = 0; j0 < p.Nk; j0 += FB_KEYS) {
        const int64_t keys = p.Nk - j0 < FB_KEYS ? p.Nk - j0 : FB_KEYS;
        __syncthreads();   // everyone is done with the previous tile
        for (int i = threadIdx.x; i < FB_KEYS * HD; i += FB_THREADS) {
            const int r = i / HD, c = i % HD;
            Ks[r][c] = bf16_of(fb_at(k, p.Nk, p.D, j0 + r, c));
            Vs[r][c] = bf16_of(fb_at(v, p.Nk, p.Dv, j0 + r, c));
        }
        __syncthreads();
        float s[FB_KEYS / 8][4];   // S = Q Kᵀ: key tile nt = keys 8nt ... 8nt + 7
        RX_UNROLL
        for (int nt = 0; nt < FB_KEYS / 8; nt++)
            for (int e = 0; e < 4; e++) s[nt][e] = 0.0f;
        RX_UNROLL
        for (int kc = 0; kc < HD / 16; kc++) {
            if (!Q_IN_REGS) load_q(kc, qa[0]);
            const uint32_t *a = qa[Q_IN_REGS ? kc : 0];
            RX_UNROLL
            for (int nt = 0; nt < FB_KEYS / 8; nt++) {
                uint32_t b[2];   // B[d][key] = K[key][d]
                mma_load_b(b, lane, [&](int d, int key) { return Ks[nt * 8 + key][kc * 16 + d]; });
                mma_bf16_16816(s[nt], a, b, s[nt]);
            }
        }
        float mx[2] = {-INFINITY, -INFINITY}, corr[2];
        RX_UNROLL
        for (int nt = 0; nt < FB_KEYS / 8; nt++)
            for (int e = 0; e < 4; e++) {
                int row, col;
                mma_c_at(lane, e, &row, &col);
                s[nt][e] = nt * 8 + col < keys ? s[nt][e] * p.scale : -INFINITY;
                mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
            }
        for (int r = 0; r < 2; r++) {
            const float m_new = fmaxf(m[r], fb_quad_max(mx[r]));   // finite: every tile has a key
            corr[r] = expf(m[r] - m_new);                          // 0 on the first tile
            m[r] = m_new;
            l[r] *= corr[r];   // this lane's share of the row's sum; the quad adds its 4 at the end
        }
        RX_UNROLL
        for (int nt = 0; nt < FB_KEYS / 8; nt++)
            for (int e = 0; e < 4; e++) {
                s[nt][e] = expf(s[nt][e] - m[e >> 1]);   // P, fp32; e^-inf = 0 past the last key
                l[e >> 1] += s[nt][e];
            }
        RX_UNROLL
        for (int nt = 0; nt < HD / 8; nt++)
            for (int e = 0; e < 4; e++) o[nt][e] *= corr[e >> 1];
        RX_UNROLL
        for (int kc = 0; kc < FB_KEYS / 16; kc++) {   // O += P V over keys 16kc ... 16kc + 15
            const float *p0 = s[2 * kc], *p1 = s[2 * kc + 1];   // two C tiles = one A fragment (mma_bf16.h)
            const uint32_t a[4] = {bf16x2_of(p0[0], p0[1]), bf16x2_of(p0[2], p0[3]), bf16x2_of(p1[0], p1[1]),
                                   bf16x2_of(p1[2], p1[3])};
            RX_UNROLL
            for (int nt = 0; nt < HD / 8; nt++) {
                uint32_t b[2];   // B[key][c] = V[key][c]
                mma_load_b(b, lane, [&](int key, int c) { return Vs[kc * 16 + key][nt * 8 + c]; });
                mma_bf16_16816(o[nt], a, b, o[nt]);
            }
        }
    }
    for (int r = 0; r < 2; r++) l[r] = fb_quad_sum(l[r]);
    RX_UNROLL
    for (int nt = 0; nt < HD / 8; nt++)
        for (int e = 0; e < 4; e++) {
            int row, col;
            mma_c_at(lane, e, &row, &col);
            const int64_t i = i0 + row, c = nt * 8 + col;
            if (i < p.Nq && c < p.Dv) p.out[(h * p.Nq + i) * p.Dv + c] = o[nt][e] / l[e >> 1];
        }
    if (p.lse_out && lane % 4 == 0)
        for (int r = 0; r < 2; r++) {
            const int64_t i = i0 + lane / 4 + 8 * r;
            if (i < p.Nq) p.lse_out[h * p.Nq + i] = m[r] + logf(l[r]);
        }
}

// the head dim the bf16 kernel pads to, or 0 when it does not take this problem
static int fb_head(const rx_ctx *c, const attn_dims &d) {
    if (rx_cuda((rx_ctx *)c)->precision != RX_PRECISION_BF16) return 0;
    const int64_t w = d.D > d.Dv ? d.D : d.Dv;
    for (int hd = 16; hd <= FB_MAX_HEAD; hd *= 2)
        if (w <= hd) return hd;
    return 0;
}

static rx_status fb_run(rx_ctx *c, fa_problem p, int64_t BH, int hd) {
    if (BH == 0 || p.Nq == 0) return RX_OK;
    p.tiles = (p.Nq + FB_ROWS - 1) / FB_ROWS;
    if (BH * p.tiles > 0x7fffffff)
        return rx_fail(RX_ERR_ARG, "attention: %lld heads of %lld rows: too many blocks for one launch", (long long)BH,
                       (long long)p.Nq);
    const dim3 grid((unsigned)(BH * p.tiles));
    cudaStream_t stream = rx_cuda(c)->stream;
    switch (hd) {
    case 16: flash_fwd_bf16_kernel<16><<<grid, FB_THREADS, 0, stream>>>(p); break;
    case 32: flash_fwd_bf16_kernel<32><<<grid, FB_THREADS, 0, stream>>>(p); break;
    case 64: flash_fwd_bf16_kernel<64><<<grid, FB_THREADS, 0, stream>>>(p); break;
    case 128: flash_fwd_bf16_kernel<128><<<grid, FB_THREADS, 0, stream>>>(p); break;
    default: flash_fwd_bf16_kernel<256><<<grid, FB_THREADS, 0, stream>>>(p); break;
    }
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

// The backward under bf16 is the fp32 kernels' with q, k, v rounded to bf16 as they are loaded
// (fa_problem.bf16_inputs): the values the forward multiplied, so its P = e^(S - LSE) is the
// forward's within fp32 rounding, and no rounded copies are stored. (Tensor cores there too are
// left for a device session.)

enum { FA_FWD, FA_DQ, FA_DKDV };

template <int NC>
static void fa_launch(int which, const fa_problem &p, dim3 grid, cudaStream_t stream) {
    if (which == FA_FWD) flash_fwd_kernel<NC><<<grid, FA_THREADS, 0, stream>>>(p);
    else if (which == FA_DQ) flash_bwd_dq_kernel<NC><<<grid, FA_THREADS, 0, stream>>>(p);
    else flash_bwd_dkdv_kernel<NC><<<grid, FA_THREADS, 0, stream>>>(p);
}

// one of the kernels over BH heads of `rows` rows (tiles of FA_ROWS) and `width` accumulated columns
static rx_status fa_run(rx_ctx *c, int which, fa_problem p, int64_t BH, int64_t rows, int64_t width) {
    if (BH == 0 || rows == 0 || width == 0) return RX_OK;
    const int nc = width <= 32 ? 2 : width <= 64 ? 4 : width <= 128 ? 8 : 16;
    p.tiles = (rows + FA_ROWS - 1) / FA_ROWS;
    const int64_t gx = BH * p.tiles, gy = (width + FA_LANES * nc - 1) / (FA_LANES * nc);
    if (gx > 0x7fffffff || gy > 65535)
        return rx_fail(RX_ERR_ARG, "attention: %lld heads of %lld rows, %lld columns: too many blocks for one launch",
                       (long long)BH, (long long)rows, (long long)width);
    const dim3 grid((unsigned)gx, (unsigned)gy);
    cudaStream_t stream = rx_cuda(c)->stream;
    switch (nc) {
    case 2: fa_launch<2>(which, p, grid, stream); break;
    case 4: fa_launch<4>(which, p, grid, stream); break;
    case 8: fa_launch<8>(which, p, grid, stream); break;
    default: fa_launch<16>(which, p, grid, stream); break;
    }
    RX_CUDA_LAUNCH_CHECK();
    return RX_OK;
}

extern "C" rx_status cuda_attention_fwd(rx_ctx *c, rx_node *n) {
    const attn_dims d = attn_dims_of(n);
    int keep = 0;   // the LSE is needed for backward only when this node will be recorded on the tape
    for (int i = 0; i < 3; i++) keep |= c->grad_enabled && n->in[i]->requires_grad;
    fa_problem p;
    memset(&p, 0, sizeof p);
    p.q = n->in[0]->data;
    p.k = n->in[1]->data;
    p.v = n->in[2]->data;
    p.out = n->out->data;
    p.Nq = d.Nq, p.Nk = d.Nk, p.D = d.D, p.Dv = d.Dv, p.scale = n->f[0];
    if (keep) {
        rx_tensor *lse_t = cuda_empty2(c, d.BH, d.Nq);
        if (!lse_t) return c->err;
        n->saved[0] = lse_t;
        n->saved[1] = n->out;
        p.lse_out = lse_t->data;
    }
    const int hd = fb_head(c, d);
    return hd ? fb_run(c, p, d.BH, hd) : fa_run(c, FA_FWD, p, d.BH, d.Nq, d.Dv);
}

extern "C" rx_status cuda_attention_bwd(rx_ctx *c, rx_node *n) {
    const attn_dims d = attn_dims_of(n);
    if (!n->saved[0] || !n->saved[1]) return rx_fail(RX_ERR_INTERNAL, "attention backward: forward kept no log-sum-exp");
    fa_problem p;
    memset(&p, 0, sizeof p);
    p.q = n->in[0]->data;
    p.k = n->in[1]->data;
    p.v = n->in[2]->data;
    p.o = n->saved[1]->data;
    p.dout = n->out->grad->data;
    p.lse = n->saved[0]->data;
    p.gq = cuda_in_grad(n, 0);
    p.gk = cuda_in_grad(n, 1);
    p.gv = cuda_in_grad(n, 2);
    p.Nq = d.Nq, p.Nk = d.Nk, p.D = d.D, p.Dv = d.Dv, p.scale = n->f[0];
    const int64_t R = d.BH * d.Nq;
    if (R == 0) return RX_OK;
    p.bf16_inputs = fb_head(c, d) != 0;   // the forward ran on tensor cores
    if (p.gq || p.gk) {   // D = rowsum(dO ⊙ O) [BH,Nq], in the context's scratch
        void *buf;
        RX_TRY(rx_cuda_scratch(c, RX_CUDA_SCRATCH_PARTIAL, (size_t)R * sizeof(float), &buf));
        p.drow = (const float *)buf;
        rowdot_kernel<<<rows_grid(R), row_threads(d.Dv), 0, rx_cuda(c)->stream>>>(p.dout, p.o, (float *)buf, R, d.Dv);
        RX_CUDA_LAUNCH_CHECK();
    }
    if (p.gq) RX_TRY(fa_run(c, FA_DQ, p, d.BH, d.Nq, d.D));
    int64_t kv_width = p.gk ? d.D : 0;   // the wider of the wanted gradients' rows
    if (p.gv && d.Dv > kv_width) kv_width = d.Dv;
    return fa_run(c, FA_DKDV, p, d.BH, d.Nk, kv_width);
}
