/* Transforms. References: torchvision resize (tests/fixtures/resize.bin from gen_resize.py),
 * torchvision's documented semantics for crop/pad/flip/normalize/grayscale (formulas and
 * hand-written expected pixels in each test), and statistics for the random choices. */
#include "registry/components.h"
#include "testutil.h"

#include "core/params.h"
#include "data/transform.h"

static rx_params *make_params(const rx_component *c, const char *k1, const char *v1, const char *k2, const char *v2) {
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults(c->name, c->params, &p), RX_OK, "%s", rx_last_error());
    if (k1) cr_assert_eq(rx_params_set(p, k1, v1), RX_OK, "%s", rx_last_error());
    if (k2) cr_assert_eq(rx_params_set(p, k2, v2), RX_OK, "%s", rx_last_error());
    return p;
}

// Applies one transform; returns a malloc'd output and its shape.
static float *run1(const rx_component *comp, const rx_params *p, const float *x, int c, int h, int w, int *oc, int *oh,
                   int *ow, uint64_t seed, uint64_t key) {
    const rx_transform_impl *impl = comp->impl;
    cr_assert_eq(impl->out_shape(p, c, h, w, oc, oh, ow), RX_OK, "%s", rx_last_error());
    float *y = malloc((size_t)*oc * *oh * *ow * sizeof *y);
    cr_assert(y);
    cr_assert_eq(impl->apply(p, x, c, h, w, y, seed, key), RX_OK, "%s", rx_last_error());
    return y;
}

static float *ramp(int n) {  // x_i = i + 1 (distinct values, so a moved pixel is recognisable)
    float *x = malloc((size_t)n * sizeof *x);
    for (int i = 0; i < n; i++) x[i] = (float)(i + 1);
    return x;
}

// ---- resize ------------------------------------------------------------------------------

static uint32_t rd_u32(const unsigned char **p) { uint32_t v; memcpy(&v, *p, 4); *p += 4; return v; }

// Reference: torchvision.transforms.functional.resize(tensor, antialias=...) via gen_resize.py.
Test(data_transform, resize_matches_torchvision_fixture) {
    long len = 0;
    unsigned char *buf = rx_test_read_file("tests/fixtures/resize.bin", &len);
    cr_assert(buf, "tests/fixtures/resize.bin missing (run tests/fixtures/gen_resize.py)");
    cr_assert(len > 8 && !memcmp(buf, "RXT1", 4));
    const unsigned char *p = buf + 4;
    uint32_t ncases = rd_u32(&p);
    cr_assert_eq(ncases, 5);
    for (uint32_t k = 0; k < ncases; k++) {
        uint32_t aa = rd_u32(&p), c = rd_u32(&p), h = rd_u32(&p), w = rd_u32(&p), oh = rd_u32(&p), ow = rd_u32(&p);
        const float *x = (const float *)p;
        p += (size_t)c * h * w * 4;
        const float *ref = (const float *)p;
        p += (size_t)c * oh * ow * 4;
        cr_assert(p <= buf + len, "fixture truncated");
        char hs[32], ws[32];
        snprintf(hs, sizeof hs, "%u", oh);
        snprintf(ws, sizeof ws, "%u", ow);
        rx_params *prm = make_params(&rx_comp_transform_resize, "size", hs, "width", ws);
        cr_assert_eq(rx_params_set(prm, "antialias", aa ? "true" : "false"), RX_OK);
        int oc, ooh, oow;
        float *y = run1(&rx_comp_transform_resize, prm, x, c, h, w, &oc, &ooh, &oow, 0, 0);
        cr_assert(oc == (int)c && ooh == (int)oh && oow == (int)ow);
        double err = rx_rel_err(y, ref, (long)c * oh * ow);
        cr_expect(err < 1e-5, "case %u [%u,%u,%u]->[%u,%u] aa=%u: rel err %.3g", k, c, h, w, oh, ow, aa, err);
        free(y);
        rx_params_free(prm);
    }
    free(buf);
}

// Formula: weights are normalized, so a constant image stays constant at any scale.
Test(data_transform, resize_keeps_constants) {
    int c = 2, h = 19, w = 13;
    float x[2 * 19 * 13], y[2 * 5 * 40], tmp[2 * 19 * 40];
    for (int i = 0; i < c * h * w; i++) x[i] = i < h * w ? 0.25f : -3.0f;
    cr_assert_eq(rx_resize_bilinear_aa(x, c, h, w, y, 5, 40, tmp), RX_OK);
    for (int i = 0; i < 5 * 40; i++) {
        cr_assert_float_eq(y[i], 0.25f, 1e-6);
        cr_assert_float_eq(y[200 + i], -3.0f, 1e-6);
    }
}

// Enlarging: antialias changes nothing (the filter is only stretched when shrinking).
Test(data_transform, resize_enlarging_same_with_and_without_antialias) {
    float *x = ramp(3 * 7 * 9);
    rx_params *a = make_params(&rx_comp_transform_resize, "size", "15", "width", "20");
    rx_params *b = make_params(&rx_comp_transform_resize, "size", "15", "width", "20");
    cr_assert_eq(rx_params_set(b, "antialias", "false"), RX_OK);
    int oc, oh, ow;
    float *ya = run1(&rx_comp_transform_resize, a, x, 3, 7, 9, &oc, &oh, &ow, 0, 0);
    float *yb = run1(&rx_comp_transform_resize, b, x, 3, 7, 9, &oc, &oh, &ow, 0, 0);
    cr_expect(rx_rel_err(ya, yb, 3 * 15 * 20) < 1e-6);
    free(x), free(ya), free(yb);
    rx_params_free(a), rx_params_free(b);
}

// size alone is a square; width makes a rectangle; a size of 0 is refused by the parameter table.
Test(data_transform, resize_size_and_width) {
    rx_params *p = make_params(&rx_comp_transform_resize, "size", "12", NULL, NULL);
    int oc, oh, ow;
    const rx_transform_impl *impl = rx_comp_transform_resize.impl;
    cr_assert_eq(impl->out_shape(p, 3, 8, 5, &oc, &oh, &ow), RX_OK);
    cr_expect(oc == 3 && oh == 12 && ow == 12);
    cr_assert_eq(rx_params_set(p, "width", "7"), RX_OK);
    cr_assert_eq(impl->out_shape(p, 3, 8, 5, &oc, &oh, &ow), RX_OK);
    cr_expect(oh == 12 && ow == 7);
    cr_expect_eq(rx_params_set(p, "size", "0"), RX_ERR_CONFIG);
    rx_params_free(p);
}

// ---- crop / pad --------------------------------------------------------------------------

// torchvision center_crop: top = round((5 - 2) / 2) = round(1.5) = 2 (half to even), left = round((6-3)/2) = 2.
Test(data_transform, center_crop_offsets_like_torchvision) {
    float *x = ramp(5 * 6);  // [1,5,6], x[y][x] = 6y + x + 1
    rx_params *p = make_params(&rx_comp_transform_center_crop, "size", "2", "width", "3");
    int oc, oh, ow;
    float *y = run1(&rx_comp_transform_center_crop, p, x, 1, 5, 6, &oc, &oh, &ow, 0, 0);
    cr_assert(oc == 1 && oh == 2 && ow == 3);
    const float want[6] = {15, 16, 17, 21, 22, 23};  // rows 2..3, cols 2..4
    for (int i = 0; i < 6; i++) cr_expect_float_eq(y[i], want[i], 0, "%d: %g", i, y[i]);
    free(y), free(x);
    rx_params_free(p);
}

// A crop larger than the image pads with zeros: (4-2)//2 = 1 on top/left.
Test(data_transform, center_crop_larger_pads_zero) {
    float x[4] = {1, 2, 3, 4};
    rx_params *p = make_params(&rx_comp_transform_center_crop, "size", "4", NULL, NULL);
    int oc, oh, ow;
    float *y = run1(&rx_comp_transform_center_crop, p, x, 1, 2, 2, &oc, &oh, &ow, 0, 0);
    const float want[16] = {0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0};
    for (int i = 0; i < 16; i++) cr_expect_float_eq(y[i], want[i], 0);
    free(y);
    rx_params_free(p);
}

// Border modes as numpy.pad / torchvision pad document them, on the row [a b c] = [1 2 3], 2 each
// side (the image is one row, so every other mode repeats it vertically; constant fills).
Test(data_transform, pad_modes) {
    float x[3] = {1, 2, 3};
    const char *modes[4] = {"constant", "edge", "reflect", "symmetric"};
    const float want[4][7] = {{9, 9, 1, 2, 3, 9, 9}, {1, 1, 1, 2, 3, 3, 3}, {3, 2, 1, 2, 3, 2, 1}, {2, 1, 1, 2, 3, 3, 2}};
    for (int m = 0; m < 4; m++) {
        rx_params *p = make_params(&rx_comp_transform_pad, "padding", "2", "mode", modes[m]);
        cr_assert_eq(rx_params_set(p, "fill", "9"), RX_OK);
        int oc, oh, ow;
        float *y = run1(&rx_comp_transform_pad, p, x, 1, 1, 3, &oc, &oh, &ow, 0, 0);
        cr_assert(oh == 5 && ow == 7);
        for (int r = 0; r < 5; r++)
            for (int i = 0; i < 7; i++) {
                float v = (m == 0 && r != 2) ? 9.0f : want[m][i];
                cr_expect_float_eq(y[r * 7 + i], v, 0, "%s[%d][%d] = %g", modes[m], r, i, y[r * 7 + i]);
            }
        free(y);
        rx_params_free(p);
    }
}

// MNIST 28 -> 32: default pad [2] with zeros, interior unchanged.
Test(data_transform, pad_mnist_to_32) {
    float *x = ramp(28 * 28);
    rx_params *p = make_params(&rx_comp_transform_pad, NULL, NULL, NULL, NULL);
    int oc, oh, ow;
    float *y = run1(&rx_comp_transform_pad, p, x, 1, 28, 28, &oc, &oh, &ow, 0, 0);
    cr_assert(oc == 1 && oh == 32 && ow == 32);
    for (int r = 0; r < 32; r++)
        for (int c = 0; c < 32; c++) {
            int in = r >= 2 && r < 30 && c >= 2 && c < 30;
            cr_assert_float_eq(y[r * 32 + c], in ? x[(r - 2) * 28 + c - 2] : 0.0f, 0);
        }
    free(x), free(y);
    rx_params_free(p);
}

// random_crop with padding 4 on 8x8 -> 8x8: the output is the zero-padded image's window at
// some (top, left) in [0, 8]^2; same key -> same window; over many keys every window occurs.
Test(data_transform, random_crop_windows_deterministic_and_cover_all) {
    float *x = ramp(8 * 8);
    rx_params *p = make_params(&rx_comp_transform_random_crop, "size", "8", "padding", "4");
    int seen[9][9] = {{0}};
    for (int key = 0; key < 2000; key++) {
        int oc, oh, ow;
        float *y = run1(&rx_comp_transform_random_crop, p, x, 1, 8, 8, &oc, &oh, &ow, 7, RX_SAMPLE_KEY(0, key));
        int found = 0;
        for (int t = 0; t <= 8 && !found; t++)
            for (int l = 0; l <= 8 && !found; l++) {
                int ok = 1;
                for (int r = 0; r < 8 && ok; r++)
                    for (int c = 0; c < 8 && ok; c++) {
                        int sy = t + r - 4, sx = l + c - 4;
                        float v = (sy >= 0 && sy < 8 && sx >= 0 && sx < 8) ? x[sy * 8 + sx] : 0.0f;
                        ok = y[r * 8 + c] == v;
                    }
                if (ok) seen[t][l]++, found = 1;
            }
        cr_assert(found, "key %d: output is no window of the padded image", key);
        float *y2 = run1(&rx_comp_transform_random_crop, p, x, 1, 8, 8, &oc, &oh, &ow, 7, RX_SAMPLE_KEY(0, key));
        cr_assert(!memcmp(y, y2, 64 * sizeof *y), "same key gave a different crop");
        free(y), free(y2);
    }
    // 2000 draws over 81 windows: expected ~24.7 each; P(a window never drawn) ~ 1e-11
    for (int t = 0; t <= 8; t++)
        for (int l = 0; l <= 8; l++) cr_expect(seen[t][l] > 0, "window (%d,%d) never drawn", t, l);
    free(x);
    rx_params_free(p);
}

Test(data_transform, random_crop_too_large_is_shape_error) {
    rx_params *p = make_params(&rx_comp_transform_random_crop, "size", "40", "padding", "2");
    int oc, oh, ow;
    const rx_transform_impl *impl = rx_comp_transform_random_crop.impl;
    cr_expect_eq(impl->out_shape(p, 3, 32, 32, &oc, &oh, &ow), RX_ERR_SHAPE);
    cr_expect(strstr(rx_last_error(), "larger than the padded image"), "%s", rx_last_error());
    rx_params_free(p);
}

// ---- flip --------------------------------------------------------------------------------

Test(data_transform, flip_p1_mirrors_p0_copies) {
    float *x = ramp(2 * 3 * 4);
    rx_params *p1 = make_params(&rx_comp_transform_random_flip, "p", "1.0", NULL, NULL);
    rx_params *p0 = make_params(&rx_comp_transform_random_flip, "p", "0.0", NULL, NULL);
    int oc, oh, ow;
    float *y1 = run1(&rx_comp_transform_random_flip, p1, x, 2, 3, 4, &oc, &oh, &ow, 1, 5);
    float *y0 = run1(&rx_comp_transform_random_flip, p0, x, 2, 3, 4, &oc, &oh, &ow, 1, 5);
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < 4; c++) {
            cr_expect_float_eq(y1[r * 4 + c], x[r * 4 + 3 - c], 0);
            cr_expect_float_eq(y0[r * 4 + c], x[r * 4 + c], 0);
        }
    free(x), free(y1), free(y0);
    rx_params_free(p1), rx_params_free(p0);
}

// p = 0.5: the decision is a pure function of (seed, epoch, index); about half flip
// (binomial n = 4000: sd = 0.0079, bounds are 5 sd); another seed or epoch decides differently.
Test(data_transform, flip_deterministic_and_fair) {
    float x[2] = {1, 2}, y[2];
    rx_params *p = make_params(&rx_comp_transform_random_flip, NULL, NULL, NULL, NULL);
    const rx_transform_impl *impl = rx_comp_transform_random_flip.impl;
    int flips = 0, differ_seed = 0, differ_epoch = 0;
    const int n = 4000;
    for (int i = 0; i < n; i++) {
        int f[4];
        const uint64_t seeds[4] = {11, 11, 12, 11}, epochs[4] = {0, 0, 0, 1};
        for (int k = 0; k < 4; k++) {
            cr_assert_eq(impl->apply(p, x, 1, 1, 2, y, seeds[k], RX_SAMPLE_KEY(epochs[k], i)), RX_OK);
            f[k] = y[0] == 2;
        }
        cr_assert_eq(f[0], f[1], "index %d: same key, different decision", i);
        flips += f[0], differ_seed += f[0] != f[2], differ_epoch += f[0] != f[3];
    }
    cr_expect(fabs(flips / (double)n - 0.5) < 0.04, "flip rate %g", flips / (double)n);
    cr_expect(fabs(differ_seed / (double)n - 0.5) < 0.04, "seed change altered %d of %d", differ_seed, n);
    cr_expect(fabs(differ_epoch / (double)n - 0.5) < 0.04, "epoch change altered %d of %d", differ_epoch, n);
    rx_params_free(p);
}

// ---- normalize, channels -----------------------------------------------------------------

// Formula (x - mean) / std; the default 0.5/0.5 maps [0,1] to [-1,1].
Test(data_transform, normalize_default_and_per_channel) {
    float x[6] = {0, 0.5f, 1, 0, 0.5f, 1};
    rx_params *d = make_params(&rx_comp_transform_normalize, NULL, NULL, NULL, NULL);
    int oc, oh, ow;
    float *y = run1(&rx_comp_transform_normalize, d, x, 2, 1, 3, &oc, &oh, &ow, 0, 0);
    const float want[6] = {-1, 0, 1, -1, 0, 1};
    for (int i = 0; i < 6; i++) cr_expect_float_eq(y[i], want[i], 1e-7);
    free(y);
    rx_params *pc = make_params(&rx_comp_transform_normalize, "mean", "[0.1, 0.2]", "std", "[2, 4]");
    y = run1(&rx_comp_transform_normalize, pc, x, 2, 1, 3, &oc, &oh, &ow, 0, 0);
    for (int i = 0; i < 6; i++) cr_expect_float_eq(y[i], (x[i] - (i < 3 ? 0.1f : 0.2f)) / (i < 3 ? 2 : 4), 1e-7);
    free(y);
    const rx_transform_impl *impl = rx_comp_transform_normalize.impl;
    cr_expect_eq(impl->out_shape(pc, 3, 1, 3, &oc, &oh, &ow), RX_ERR_SHAPE, "2 means for 3 channels accepted");
    rx_params *z = make_params(&rx_comp_transform_normalize, "std", "[0]", NULL, NULL);
    cr_expect_eq(impl->out_shape(z, 1, 1, 3, &oc, &oh, &ow), RX_ERR_CONFIG, "std 0 accepted");
    rx_params_free(d), rx_params_free(pc), rx_params_free(z);
}

// torchvision rgb_to_grayscale: 0.2989 R + 0.587 G + 0.114 B; to_rgb repeats gray.
Test(data_transform, gray_and_rgb) {
    float rgb[6] = {1, 0.2f, 0, 0.4f, 0, 1};  // [3,1,2]: R = (1, 0.2), G = (0, 0.4), B = (0, 1)
    rx_params *g3 = make_params(&rx_comp_transform_to_gray, "channels", "3", NULL, NULL);
    int oc, oh, ow;
    float *y = run1(&rx_comp_transform_to_gray, g3, rgb, 3, 1, 2, &oc, &oh, &ow, 0, 0);
    cr_assert_eq(oc, 3);
    const float g[2] = {0.2989f * 1 + 0.587f * 0 + 0.114f * 0, 0.2989f * 0.2f + 0.587f * 0.4f + 0.114f * 1};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 2; i++) cr_expect_float_eq(y[k * 2 + i], g[i], 1e-6);
    free(y);
    float gray[2] = {0.3f, 0.7f};
    rx_params *r = make_params(&rx_comp_transform_to_rgb, NULL, NULL, NULL, NULL);
    y = run1(&rx_comp_transform_to_rgb, r, gray, 1, 1, 2, &oc, &oh, &ow, 0, 0);
    cr_assert_eq(oc, 3);
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 2; i++) cr_expect_float_eq(y[k * 2 + i], gray[i], 0);
    free(y);
    rx_params_free(g3), rx_params_free(r);
}

// ---- chain -------------------------------------------------------------------------------

// uint8 -> /255 -> resize 4->8 -> flip(p=1) -> normalize: equals the steps done by hand.
Test(data_transform, chain_equals_steps_by_hand) {
    uint8_t img[3 * 4 * 4];
    for (int i = 0; i < 48; i++) img[i] = (uint8_t)(i * 5);
    rx_params *pr = make_params(&rx_comp_transform_resize, "size", "8", NULL, NULL);
    rx_params *pf = make_params(&rx_comp_transform_random_flip, "p", "1", NULL, NULL);
    rx_params *pn = make_params(&rx_comp_transform_normalize, NULL, NULL, NULL, NULL);
    const rx_transform_step steps[3] = {{&rx_comp_transform_resize, pr}, {&rx_comp_transform_random_flip, pf},
                                        {&rx_comp_transform_normalize, pn}};
    rx_transform_chain chain = {steps, 3};
    int oc, oh, ow;
    int64_t most;
    cr_assert_eq(rx_transform_chain_shape(&chain, 3, 4, 4, &oc, &oh, &ow, &most), RX_OK);
    cr_assert(oc == 3 && oh == 8 && ow == 8 && most == 192);
    float out[192], work[2 * 192];
    cr_assert_eq(rx_transform_chain_apply(&chain, img, 3, 4, 4, out, work, 3, 0), RX_OK, "%s", rx_last_error());
    float x[48], r[192], tmp[3 * 4 * 8];
    for (int i = 0; i < 48; i++) x[i] = img[i] / 255.0f;
    cr_assert_eq(rx_resize_bilinear_aa(x, 3, 4, 4, r, 8, 8, tmp), RX_OK);
    for (int row = 0; row < 24; row++)
        for (int c = 0; c < 8; c++) cr_expect_float_eq(out[row * 8 + c], (r[row * 8 + 7 - c] - 0.5f) / 0.5f, 1e-6);
    // an identity chain just scales to [0,1]
    cr_assert_eq(rx_transform_chain_apply(NULL, img, 3, 4, 4, out, work, 3, 0), RX_OK);
    for (int i = 0; i < 48; i++) cr_expect_float_eq(out[i], img[i] / 255.0f, 0);
    rx_params_free(pr), rx_params_free(pf), rx_params_free(pn);
}
