/* bf16_operands.c — see bf16_operands.h. Mirrors cuda/dense.cu's calls one for one: each
 * rx_cuda_sgemm(M, N, K, count) copies op(A) [count·M·K] and op(B) [count·K·N] (nothing when a
 * size is 0: the GEMM is skipped or is a scale); each cuDNN call family copies its plan's arrays. */
#include "kernels/bf16_operands.h"
#include "kernels/backend.h"

static size_t gemm_request(int64_t count, int64_t M, int64_t N, int64_t K) {
    if (count == 0 || M == 0 || N == 0 || K == 0) return 0;
    return rx_bf16_span(count * M * K) + rx_bf16_span(count * K * N);
}

static size_t max2(size_t a, size_t b) { return a > b ? a : b; }

static int needs_grad(const rx_node *n, int k) { return n->in[k] && n->in[k]->requires_grad && n->in[k]->grad; }

/* conv2d: x [B,Ci,H,W], w [Co,Ci,kh,kw], y [B,Co,Ho,Wo] */
static size_t conv2d_request(const rx_node *n, int backward) {
    const int64_t nx = n->in[0]->numel, nw = n->in[1]->numel, ny = n->out->numel;
    if (ny == 0) return 0;
    if (!backward) return rx_bf16_span(nx) + rx_bf16_span(nw) + rx_bf16_span(ny);
    if (!needs_grad(n, 0) && !needs_grad(n, 1)) return 0;   /* the bias gradient alone: fp32 */
    return rx_bf16_span(ny) + rx_bf16_span(nw) + rx_bf16_span(nx);   /* w16 / gw16 and gx16 / x16 share */
}

/* linear: x [R,in], w [out,in], y [R,out] */
static size_t linear_request(const rx_node *n, int backward) {
    const int64_t in = n->in[1]->shape[1], out = n->in[1]->shape[0], R = out ? n->out->numel / out : 0;
    if (!backward) return gemm_request(1, R, out, in);
    size_t r = 0;
    if (needs_grad(n, 0)) r = max2(r, gemm_request(1, R, in, out));   /* gx = gy w   */
    if (needs_grad(n, 1)) r = max2(r, gemm_request(1, out, in, R));   /* gw = gyᵀ x  */
    return r;
}

/* matmul: y [.., M, N] = op(a) [.., M, K] op(b) [.., K, N] */
static size_t matmul_request(const rx_node *n, int backward) {
    const rx_tensor *a = n->in[0], *y = n->out;
    const int nd = a->ndim;
    const int64_t M = y->shape[nd - 2], N = y->shape[nd - 1], K = n->i[0] ? a->shape[nd - 2] : a->shape[nd - 1];
    const int64_t batch = M > 0 && N > 0 ? y->numel / (M * N) : 0;
    if (!backward) return gemm_request(batch, M, N, K);
    size_t r = 0;
    if (needs_grad(n, 0)) r = max2(r, n->i[0] ? gemm_request(batch, K, M, N) : gemm_request(batch, M, K, N));
    if (needs_grad(n, 1)) r = max2(r, n->i[1] ? gemm_request(batch, N, K, M) : gemm_request(batch, K, N, M));
    return r;
}

typedef size_t (*request_fn)(const rx_node *n, int backward);
static const request_fn request_of[RX_OP_COUNT] = {
    [RX_OP_CONV2D] = conv2d_request, [RX_OP_LINEAR] = linear_request, [RX_OP_MATMUL] = matmul_request};

size_t rx_bf16_request(const rx_node *n, int backward) {
    if (n->op < 0 || n->op >= RX_OP_COUNT || !request_of[n->op]) return 0;   /* op -1: a checkpointed block */
    return request_of[n->op](n, backward);
}
