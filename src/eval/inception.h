/* inception.h — the FID Inception-v3 (pytorch-fid's FIDInceptionV3), forward only, on the CPU.
 *
 * The network of pytorch-fid (src/pytorch_fid/inception.py): torchvision's inception_v3 with
 * FIDInceptionA/C/E_1/E_2 blocks (average pools that leave the padding out of the mean; a max
 * pool in Mixed_7c's branch_pool), run as pytorch-fid's InceptionV3 does: bilinear resize to
 * 299x299 (F.interpolate, align_corners=False, no antialias), Conv2d_1a_3x3 .. Mixed_7c,
 * global average pool -> 2048 features. Each BasicConv2d (conv without bias + BatchNorm(eps=1e-3)
 * in eval mode + ReLU) is folded at load time into one conv with a bias; a conv is im2col +
 * cblas_sgemm.
 *
 * Input convention: runexp images are in [-1, 1]. pytorch-fid takes [0, 1] images and maps them
 * to 2x - 1 after resizing; the resize is linear and keeps constants, so feeding a runexp image x
 * here equals pytorch-fid on (x + 1) / 2. Nothing is quantized to 8 bits here: pytorch-fid on PNG
 * files sees uint8 images, so quantize first when comparing with numbers computed from files.
 *
 * Weights: a safetensors file with pytorch-fid's state-dict names (Conv2d_1a_3x3.conv.weight,
 * Conv2d_1a_3x3.bn.running_var, ..., Mixed_7c.branch_pool.bn.bias); fc.* and
 * *.num_batches_tracked are ignored. docs/inception_fid.md converts the official
 * pt_inception-2015-12-05-6726825d.pth in one line. */
#ifndef RX_EVAL_INCEPTION_H
#define RX_EVAL_INCEPTION_H

#include "core/component.h"
#include "core/status.h"

#define RX_INCEPTION_SIZE 299         /* input side after the resize        */
#define RX_INCEPTION_FEAT_DIM 2048    /* pool features per image            */
#define RX_INCEPTION_TAP_COUNT 20     /* stages whose output mean a forward can report */

typedef struct rx_inception rx_inception;

/* Load and fold the weights. A file that is not a FID Inception state dict is refused with
 * RX_ERR_FORMAT and a list of the missing keys / wrong shapes. */
rx_status rx_inception_load(const char *path, rx_inception **out);
void      rx_inception_free(rx_inception *net);

/* images [n,C,H,W] in [-1,1], C = 3 (RGB) or 1 (gray: replicated to RGB, as pytorch-fid's
 * PIL convert('RGB') does) -> features [n, 2048]. Any H, W (resized to 299x299). Images run in
 * parallel on OpenMP threads (each with ~50 MB of scratch); a single image uses the threads
 * inside its convolutions instead. RX_ERR_ARG / RX_ERR_SHAPE for bad sizes, RX_ERR_OOM. */
rx_status rx_inception_features(const rx_inception *net, const float *images, int n, int C, int H, int W,
                                float *features);

/* One image already at 299x299: x [3,299,299] in [-1,1] -> features [2048]. taps (NULL: not
 * wanted) [RX_INCEPTION_TAP_COUNT] receives the mean of each stage's output, in the order of
 * rx_inception_tap_names ("input", "Conv2d_1a_3x3", ..., "Mixed_7c", "avgpool"): a cheap
 * fingerprint for finding the first stage where two implementations part. */
rx_status rx_inception_forward(const rx_inception *net, const float *x, float *features, double *taps);
extern const char *const rx_inception_tap_names[RX_INCEPTION_TAP_COUNT];

/* Bilinear resize exactly as F.interpolate(mode='bilinear', align_corners=False, antialias=False):
 * x [C,H,W] -> y [C,OH,OW]. (Unlike rx_resize_bilinear_aa, no antialias when shrinking.) */
void rx_inception_resize_bilinear(const float *x, int C, int H, int W, float *y, int OH, int OW);

#endif
