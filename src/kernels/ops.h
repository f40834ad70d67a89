/* ops.h — every autograd op, one prototype each, shapes in the comment.
 *
 * Conventions: float32, contiguous, row-major. An op returns a new tensor in the step
 * arena, or NULL with the context's sticky error set (see core/tensor.h). Any NULL
 * input makes the op return NULL at once, so errors flow to the end of a block.
 * Optional inputs (a bias) may be NULL where noted. Integer labels and indices are
 * passed as float tensors holding whole numbers (exact below 2^24).
 * With grad enabled, an op whose inputs require grad records itself on the tape;
 * rx_backward replays the tape in reverse. */
#ifndef RX_OPS_H
#define RX_OPS_H

#include "core/tensor.h"
#include "kernels/backend.h"

/* --- view ---------------------------------------------------------------- */
/* x [..] -> y [shape], same numel, shares data. One dim may be -1 (inferred). */
rx_tensor *rx_reshape(rx_ctx *c, rx_tensor *x, int ndim, const int64_t *shape);

/* --- dense ----------------------------------------------------------------- */
/* x [B,Ci,H,W], w [Co,Ci,kh,kw], b [Co] or NULL -> y [B,Co,Ho,Wo],
 * Ho = (H + 2 pad - kh) / stride + 1. (PyTorch Conv2d, dilation 1, groups 1) */
rx_tensor *rx_conv2d(rx_ctx *c, rx_tensor *x, rx_tensor *w, rx_tensor *b, int stride, int pad);
/* x [..., in], w [out, in], b [out] or NULL -> y [..., out] = x wᵀ + b (PyTorch Linear) */
rx_tensor *rx_linear(rx_ctx *c, rx_tensor *x, rx_tensor *w, rx_tensor *b);
/* a [..., M, K] (or [..., K, M] if trans_a), b [..., K, N] (or [..., N, K] if trans_b) -> y [..., M, N].
 * Leading dims (batch) must match exactly; 2-D to 4-D. */
rx_tensor *rx_matmul(rx_ctx *c, rx_tensor *a, rx_tensor *b, int trans_a, int trans_b);

/* --- norm ---------------------------------------------------------------- */
/* x [B,C,...] (any spatial dims), gamma/beta [C] or NULL -> y same shape.
 * Statistics per (sample, group) over C/G channels x spatial; biased variance (PyTorch GroupNorm). */
rx_tensor *rx_group_norm(rx_ctx *c, rx_tensor *x, rx_tensor *gamma, rx_tensor *beta, int groups, float eps);
/* x [..., D], gamma/beta [D] or NULL (no affine) -> y same shape (PyTorch LayerNorm over the last dim). */
/* Fused ResnetBlock2D prologue: y = silu(group_norm(x + shift[:, :, None, ...]) gamma + beta), in one
 * pass per (sample, group). x [B,C,...], shift [B,C] or NULL (the time embedding, added before
 * the norm), gamma/beta [C] or NULL -> y same shape as x. Equals rx_silu(rx_group_norm(rx_add(x,
 * shift viewed [B,C,1,1]), ...)) without keeping x + shift or the norm's output for backward. */
rx_tensor *rx_group_norm_silu(rx_ctx *c, rx_tensor *x, rx_tensor *gamma, rx_tensor *beta, rx_tensor *shift,
                              int groups, float eps);
rx_tensor *rx_layer_norm(rx_ctx *c, rx_tensor *x, rx_tensor *gamma, rx_tensor *beta, float eps);

/* --- attention ------------------------------------------------------------ */
/* softmax over the last dim. */
rx_tensor *rx_softmax(rx_ctx *c, rx_tensor *x);
/* q [B,H,Nq,D], k [B,H,Nk,D], v [B,H,Nk,Dv] -> o [B,H,Nq,Dv] = softmax(q kᵀ · scale) v.
 * scale <= 0 means 1/sqrt(D) (PyTorch scaled_dot_product_attention, no mask, no dropout). */
rx_tensor *rx_attention(rx_ctx *c, rx_tensor *q, rx_tensor *k, rx_tensor *v, float scale);

/* --- elementwise ---------------------------------------------------------- */
/* a [shape], b broadcastable to a (NumPy rules, right-aligned; b may also be the larger one) -> y [broadcast shape] */
rx_tensor *rx_add(rx_ctx *c, rx_tensor *a, rx_tensor *b);
rx_tensor *rx_sub(rx_ctx *c, rx_tensor *a, rx_tensor *b);
rx_tensor *rx_mul(rx_ctx *c, rx_tensor *a, rx_tensor *b);
/* y = alpha x + beta (scalars) */
rx_tensor *rx_scale(rx_ctx *c, rx_tensor *x, float alpha, float beta);
rx_tensor *rx_silu(rx_ctx *c, rx_tensor *x);
/* y = e^x (the VAE posterior's std and variance from its logvar); dy/dx = y */
rx_tensor *rx_exp(rx_ctx *c, rx_tensor *x);
/* y = |x| (L1 losses); dy/dx = sign(x), 0 at 0 as torch.abs */
rx_tensor *rx_abs(rx_ctx *c, rx_tensor *x);
/* approximate_tanh: 0 = exact erf GELU, 1 = tanh approximation (PyTorch approximate='tanh') */
rx_tensor *rx_gelu(rx_ctx *c, rx_tensor *x, int approximate_tanh);
/* adaLN: x [B,N,D], shift [B,D], scale [B,D] -> y = x (1 + scale) + shift (broadcast over N) */
rx_tensor *rx_modulate(rx_ctx *c, rx_tensor *x, rx_tensor *shift, rx_tensor *scale);
/* A residual connection with the layer's bias folded in: a, b [B,C,...] (same shape), bias [C] or NULL
 * -> y = (a + (b + bias[c])) · scale. The ResnetBlock2D's (shortcut + conv2(h)) / output_scale_factor
 * with conv2 run without its bias, and the attention block's x + to_out(o): one pass instead of
 * the conv's bias pass and the add's. */
rx_tensor *rx_residual_add(rx_ctx *c, rx_tensor *a, rx_tensor *b, rx_tensor *bias, float scale);
/* inverted dropout with probability p (identity when !c->training or p == 0); mask from Philox */
rx_tensor *rx_dropout(rx_ctx *c, rx_tensor *x, float p);

/* --- shape ----------------------------------------------------------------- */
/* a [B,C1,...], b [B,C2,...] -> y [B,C1+C2,...] (concat along dim 1, as torch.cat(dim=1)) */
rx_tensor *rx_concat(rx_ctx *c, rx_tensor *a, rx_tensor *b);
/* y = x.permute(perm) made contiguous; perm has x->ndim entries */
rx_tensor *rx_permute(rx_ctx *c, rx_tensor *x, const int *perm);
/* [B,C,H,W] -> [B,C,2H,2W], nearest (F.interpolate scale_factor=2, mode='nearest') */
rx_tensor *rx_upsample_nearest2x(rx_ctx *c, rx_tensor *x);
/* [B,C,H,W] -> [B,C,H/2,W/2], mean of 2x2 windows (F.avg_pool2d(2)); H, W even */
rx_tensor *rx_avgpool2x(rx_ctx *c, rx_tensor *x);
/* [B,C,H,W] -> [B,C] mean over H,W */
rx_tensor *rx_global_avgpool(rx_ctx *c, rx_tensor *x);
/* DiT: x [B, h*w, p*p*C] -> [B, C, h*p, w*p]; einsum "nhwpqc->nchpwq" (diffusers/DiT unpatchify) */
rx_tensor *rx_unpatchify(rx_ctx *c, rx_tensor *x, int channels, int h, int w, int p);
/* y = x narrowed along `dim` to [start, start+len) (torch.narrow, made contiguous) */
rx_tensor *rx_slice(rx_ctx *c, rx_tensor *x, int dim, int64_t start, int64_t len);

/* --- embed ----------------------------------------------------------------- */
/* table [V,D], idx [N] (whole numbers in [0,V)) -> y [N,D] (nn.Embedding) */
rx_tensor *rx_embedding(rx_ctx *c, rx_tensor *table, rx_tensor *idx);
/* t [N] -> y [N,dim]: diffusers get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift,
 * scale, max_period). exponent = -ln(max_period) * arange(half) / (half - shift); emb = scale * t * exp(exponent);
 * [sin, cos] (or [cos, sin] when flip); zero-pad when dim is odd. No gradient flows to t. */
rx_tensor *rx_timestep_embedding(rx_ctx *c, rx_tensor *t, int dim, int flip_sin_to_cos,
                                 float downscale_freq_shift, float scale, float max_period);

/* --- reductions and losses ------------------------------------------------ */
rx_tensor *rx_sum(rx_ctx *c, rx_tensor *x);    /* -> [1] */
rx_tensor *rx_mean(rx_ctx *c, rx_tensor *x);   /* -> [1] */
/* pred, target [B,...]; weight [B] or NULL -> [1] = mean_b( w_b * mean_j (pred - target)² ) (w = 1 if NULL) */
rx_tensor *rx_mse_loss(rx_ctx *c, rx_tensor *pred, rx_tensor *target, rx_tensor *weight);
/* logits [B,K], labels [B] (whole numbers) -> [1] = mean_b -log softmax(logits_b)[label_b] */
rx_tensor *rx_cross_entropy(rx_ctx *c, rx_tensor *logits, rx_tensor *labels);

/* --- autograd ---------------------------------------------------------------- */
/* loss [1]: seeds d loss = 1 and replays the tape in reverse; gradients accumulate in
 * t->grad of every tensor that requires grad (parameters keep theirs until rx_zero_grad). */
rx_status rx_backward(rx_ctx *c, rx_tensor *loss);
/* vector-Jacobian product: seeds out->grad with `seed` (same numel; NULL = ones) and replays the tape */
rx_status rx_backward_with(rx_ctx *c, rx_tensor *out, const rx_tensor *seed);

#endif
