/* Batch loader and the synthetic data set. References: the loader's contract in
 * src/data/loader.h (batch b is a pure function of (seed, b)), checked with a dataset whose
 * pixels and labels spell out each image's index; binomial/uniform statistics for shuffles;
 * the synthetic set's class colours (HSV formula in dataset_synthetic.c). */
#include "registry/components.h"
#include "testutil.h"

#include "core/params.h"
#include "data/loader.h"

// n images of [1,2,3]; image i has every pixel = i % 251 and label i (num_classes = n).
static rx_dataset *index_dataset(int n) {
    rx_dataset *d = NULL;
    cr_assert_eq(rx_dataset_alloc("index", n, 1, 2, 3, n, &d), RX_OK);
    for (int i = 0; i < n; i++) {
        d->labels[i] = i;
        memset(d->pixels + i * 6, i % 251, 6);
    }
    return d;
}

static rx_loader *make_loader(const rx_dataset *d, const rx_transform_chain *t, int B, uint64_t seed, int drop_last,
                              int prefetch) {
    rx_loader_opts o = {.batch_size = B, .seed = seed, .drop_last = drop_last, .shuffle = 1, .prefetch = prefetch};
    rx_loader *l = NULL;
    cr_assert_eq(rx_loader_create_opts(d, t, &o, &l), RX_OK, "%s", rx_last_error());
    return l;
}

// Reads `nb` batches of labels: out [nb, B].
static void read_labels(rx_loader *l, int B, int nb, int32_t *out, rx_batch_info *infos) {
    int c, h, w;
    rx_loader_image_shape(l, &c, &h, &w);
    float *x = malloc((size_t)B * c * h * w * sizeof *x);
    for (int b = 0; b < nb; b++) {
        rx_batch_info info;
        cr_assert_eq(rx_loader_next(l, x, out + b * B, &info), RX_OK, "%s", rx_last_error());
        for (int r = 0; r < info.count; r++)  // pixels agree with the label (the right image was copied)
            cr_assert_float_eq(x[r * c * h * w], (out[b * B + r] % 251) / 255.0f, 0);
        if (infos) infos[b] = info;
    }
    free(x);
}

Test(data_loader, each_epoch_is_a_permutation_with_partial_last_batch) {
    rx_dataset *d = index_dataset(103);
    rx_loader *l = make_loader(d, NULL, 10, 42, 0, 2);
    cr_assert_eq(rx_loader_batches_per_epoch(l), 11);
    int32_t lab[3 * 11 * 10];
    rx_batch_info info[33];
    read_labels(l, 10, 33, lab, info);
    for (int e = 0; e < 3; e++) {
        int seen[103] = {0};
        for (int s = 0; s < 11; s++) {
            const rx_batch_info *in = &info[e * 11 + s];
            cr_assert(in->epoch == e && in->step == s && in->batch == e * 11 + s);
            cr_assert_eq(in->count, s < 10 ? 10 : 3);
            for (int r = 0; r < in->count; r++) seen[lab[(e * 11 + s) * 10 + r]]++;
            for (int r = in->count; r < 10; r++) cr_assert_eq(lab[(e * 11 + s) * 10 + r], -1);
        }
        for (int i = 0; i < 103; i++) cr_assert_eq(seen[i], 1, "epoch %d: image %d seen %d times", e, i, seen[i]);
    }
    // a new epoch is a new order
    cr_expect(memcmp(lab, lab + 110, 100 * sizeof *lab) != 0, "epochs 0 and 1 in the same order");
    rx_loader_free(l);
    rx_dataset_free(d);
}

Test(data_loader, drop_last_skips_leftover) {
    rx_dataset *d = index_dataset(103);
    rx_loader *l = make_loader(d, NULL, 10, 1, 1, 2);
    cr_assert_eq(rx_loader_batches_per_epoch(l), 10);
    int32_t lab[11 * 10];
    rx_batch_info info[11];
    read_labels(l, 10, 11, lab, info);
    cr_expect(info[10].epoch == 1 && info[10].step == 0 && info[9].count == 10);
    rx_loader_free(l);
    rx_dataset_free(d);
}

// Same seed -> same batches (whatever the prefetch depth, with or without the thread);
// another seed -> another order.
Test(data_loader, same_seed_same_batches_any_prefetch) {
    rx_dataset *d = index_dataset(250);
    enum { B = 16, NB = 40 };
    int32_t ref[NB * B], got[NB * B];
    const int depths[4] = {2, 0, 1, 7};
    for (int k = 0; k < 4; k++) {
        rx_loader *l = make_loader(d, NULL, B, 1234, 1, depths[k]);
        read_labels(l, B, NB, k == 0 ? ref : got, NULL);
        if (k) cr_expect(!memcmp(ref, got, sizeof ref), "prefetch %d differs from prefetch 2", depths[k]);
        rx_loader_free(l);
    }
    rx_loader *l = make_loader(d, NULL, B, 1235, 1, 2);
    read_labels(l, B, NB, got, NULL);
    int same = 0;
    for (int i = 0; i < NB * B; i++) same += got[i] == ref[i];
    cr_expect(same < NB * B / 20, "seed 1235 matches seed 1234 at %d of %d places", same, NB * B);  // ~1/250 by chance
    rx_loader_free(l);
    rx_dataset_free(d);
}

// Exact resume: a fresh loader seeked to b yields what the first one yielded from b on,
// also across an epoch boundary; seeking backwards on a running loader works too.
Test(data_loader, seek_resumes_exactly) {
    rx_dataset *d = index_dataset(90);
    enum { B = 8, NB = 30 };  // 11 batches per epoch: crosses two epoch boundaries
    int32_t ref[NB * B], got[NB * B];
    rx_loader *a = make_loader(d, NULL, B, 5, 1, 3);
    read_labels(a, B, NB, ref, NULL);
    rx_loader *b = make_loader(d, NULL, B, 5, 1, 3);
    cr_assert_eq(rx_loader_seek(b, 9), RX_OK);
    rx_batch_info info[NB];
    read_labels(b, B, NB - 9, got, info);
    cr_expect(!memcmp(ref + 9 * B, got, (NB - 9) * B * sizeof *got), "resume at 9 differs");
    cr_expect(info[0].batch == 9 && info[2].epoch == 1 && info[2].step == 0);
    cr_assert_eq(rx_loader_seek(a, 3), RX_OK);
    read_labels(a, B, 2, got, NULL);
    cr_expect(!memcmp(ref + 3 * B, got, 2 * B * sizeof *got), "seek back to 3 differs");
    rx_loader_free(a), rx_loader_free(b);
    rx_dataset_free(d);
}

// An image's augmentation depends on (seed, epoch, index) only: the same flips with batch
// size 4 and 7; p = 0.5 flips about half (n = 300 images x 2 epochs, 5 sd bounds).
Test(data_loader, augmentation_independent_of_batch_size) {
    enum { N = 300 };
    rx_dataset *d = NULL;
    cr_assert_eq(rx_dataset_alloc("ramp", N, 1, 1, 4, 1, &d), RX_OK);
    for (int i = 0; i < N; i++) {
        d->labels[i] = 0;
        for (int k = 0; k < 4; k++) d->pixels[i * 4 + k] = (uint8_t)k;  // a left-to-right ramp
    }
    // labels carry no index here, so recover it from the permutation the loader uses
    rx_params *pf = NULL;
    cr_assert_eq(rx_params_from_defaults("transform/random_flip", rx_comp_transform_random_flip.params, &pf), RX_OK);
    const rx_transform_step step = {&rx_comp_transform_random_flip, pf};
    const rx_transform_chain chain = {&step, 1};
    int flipped[2][2][N];
    const int sizes[2] = {4, 7};
    int32_t perm[N];
    for (int k = 0; k < 2; k++) {
        rx_loader *l = make_loader(d, &chain, sizes[k], 99, 0, 2);
        int64_t bpe = rx_loader_batches_per_epoch(l);
        float x[7 * 4];
        int32_t y[7];
        for (int e = 0; e < 2; e++) {
            rx_data_shuffle(perm, N, 99, e);
            for (int64_t s = 0; s < bpe; s++) {
                rx_batch_info info;
                cr_assert_eq(rx_loader_next(l, x, y, &info), RX_OK, "%s", rx_last_error());
                for (int r = 0; r < info.count; r++) flipped[k][e][perm[s * sizes[k] + r]] = x[r * 4] > x[r * 4 + 3];
            }
        }
        rx_loader_free(l);
    }
    int total = 0;
    for (int e = 0; e < 2; e++)
        for (int i = 0; i < N; i++) {
            cr_assert_eq(flipped[0][e][i], flipped[1][e][i], "epoch %d image %d", e, i);
            total += flipped[0][e][i];
        }
    cr_expect(fabs(total / (2.0 * N) - 0.5) < 0.11, "flip rate %g", total / (2.0 * N));
    rx_params_free(pf);
    rx_dataset_free(d);
}

// Fisher–Yates with Philox: where image 0 lands over 2000 epochs is ~uniform over 10 slots
// (chi-square, 9 dof: mean 9, P(> 40) ~ 5e-6).
Test(data_loader, shuffle_is_uniform) {
    int count[10] = {0};
    int32_t perm[10];
    for (int e = 0; e < 2000; e++) {
        rx_data_shuffle(perm, 10, 7, e);
        for (int i = 0; i < 10; i++)
            if (perm[i] == 0) count[i]++;
    }
    double chi2 = 0;
    for (int i = 0; i < 10; i++) chi2 += (count[i] - 200.0) * (count[i] - 200.0) / 200.0;
    cr_expect(chi2 < 40, "chi2 = %g", chi2);
}

Test(data_loader, bad_arguments) {
    rx_dataset *d = index_dataset(5);
    rx_loader *l = NULL;
    cr_expect_eq(rx_loader_create(d, NULL, 8, 0, 1, &l), RX_ERR_ARG);  // fewer images than one batch
    cr_expect(strstr(rx_last_error(), "fewer than one batch"), "%s", rx_last_error());
    cr_expect_eq(rx_loader_create(d, NULL, 0, 0, 1, &l), RX_ERR_ARG);
    rx_params *pn = NULL;
    cr_assert_eq(rx_params_from_defaults("transform/normalize", rx_comp_transform_normalize.params, &pn), RX_OK);
    cr_assert_eq(rx_params_set(pn, "mean", "[0.1, 0.2]"), RX_OK);  // 2 values for a 1-channel image
    const rx_transform_step step = {&rx_comp_transform_normalize, pn};
    const rx_transform_chain chain = {&step, 1};
    cr_expect_eq(rx_loader_create(d, &chain, 2, 0, 1, &l), RX_ERR_SHAPE);
    cr_expect(strstr(rx_last_error(), "normalize"), "%s", rx_last_error());
    cr_expect_null(l);
    rx_params_free(pn);
    rx_dataset_free(d);
}

// ---- synthetic ---------------------------------------------------------------------------

static rx_dataset *synth(const char *split, const char *seed, const char *size, const char *channels) {
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults("dataset/synthetic", rx_comp_dataset_synthetic.params, &p), RX_OK);
    cr_assert_eq(rx_params_set(p, "num_images", "200"), RX_OK);
    cr_assert_eq(rx_params_set(p, "seed", seed), RX_OK);
    cr_assert_eq(rx_params_set(p, "size", size), RX_OK);
    cr_assert_eq(rx_params_set(p, "channels", channels), RX_OK);
    rx_dataset *d = NULL;
    cr_assert_eq(rx_dataset_load(&rx_comp_dataset_synthetic, p, split, &d), RX_OK, "%s", rx_last_error());
    rx_params_free(p);
    return d;
}

Test(data_loader, synthetic_deterministic_and_seeded) {
    rx_dataset *a = synth("train", "3", "32", "3"), *b = synth("train", "3", "32", "3");
    rx_dataset *c = synth("train", "4", "32", "3"), *t = synth("test", "3", "32", "3");
    size_t bytes = (size_t)200 * 3 * 32 * 32;
    cr_assert(a->n == 200 && a->num_classes == 10 && a->height == 32);
    cr_expect(!memcmp(a->pixels, b->pixels, bytes), "same seed, different pixels");
    cr_expect(memcmp(a->pixels, c->pixels, bytes) != 0, "seed ignored");
    cr_expect(memcmp(a->pixels, t->pixels, bytes) != 0, "train and test identical");
    for (int i = 0; i < 200; i++) cr_assert_eq(a->labels[i], i % 10);
    rx_dataset_free(a), rx_dataset_free(b), rx_dataset_free(c), rx_dataset_free(t);
}

// Every image holds pixels fully inside its shape, whose value is exactly the class colour
// (HSV hue 0.1 + 0.618 k, s 0.85, v 0.95); those colours differ between classes.
Test(data_loader, synthetic_class_decides_colour) {
    rx_dataset *d = synth("train", "0", "24", "3");
    const int hw = 24 * 24;
    uint8_t colour[10][3];
    for (int k = 0; k < 10; k++) {  // the class colour = the most frequent bright pixel of image k
        int best = 0;
        for (int i = 0; i < hw; i++) {
            const uint8_t *px = d->pixels + (size_t)k * 3 * hw;
            int n = 0;
            if (px[i] + px[hw + i] + px[2 * hw + i] < 200) continue;
            for (int j = 0; j < hw; j++) n += px[j] == px[i] && px[hw + j] == px[hw + i] && px[2 * hw + j] == px[2 * hw + i];
            if (n > best) best = n, colour[k][0] = px[i], colour[k][1] = px[hw + i], colour[k][2] = px[2 * hw + i];
        }
        cr_assert(best >= 10, "class %d: no solid shape", k);
    }
    for (int k = 0; k < 10; k++) {
        int mx = colour[k][0] > colour[k][1] ? colour[k][0] : colour[k][1];
        mx = mx > colour[k][2] ? mx : colour[k][2];
        cr_expect_eq(mx, 242, "class %d: max channel %d, want round(0.95 * 255)", k, mx);  // v = 0.95
        for (int j = 0; j < k; j++) cr_expect(memcmp(colour[k], colour[j], 3) != 0, "classes %d and %d share a colour", j, k);
    }
    // every later image of class k contains the same solid colour
    for (int i = 10; i < 200; i++) {
        const uint8_t *px = d->pixels + (size_t)i * 3 * hw, *want = colour[i % 10];
        int n = 0;
        for (int j = 0; j < hw; j++) n += px[j] == want[0] && px[hw + j] == want[1] && px[2 * hw + j] == want[2];
        cr_expect(n >= 10, "image %d (class %d) has %d pixels of its class colour", i, i % 10, n);
    }
    rx_dataset_free(d);
    rx_dataset *g = synth("train", "0", "7", "1");  // any size and gray
    cr_expect(g->channels == 1 && g->height == 7 && g->width == 7);
    rx_dataset_free(g);
}

// Data-parallel shards (loader.h): shard r of S returns images [r*B/S, (r+1)*B/S) of every
// global batch. Reference: the unsharded loader of the same seed; the shards' batches, put
// side by side, equal its batches (pixels and labels), over three epochs.
Test(data_loader, shards_together_read_the_single_process_order) {
    rx_dataset *d = index_dataset(40);
    const int B = 8, S = 2, nb = 15;   /* 5 batches per epoch: 3 epochs */
    rx_loader *whole = make_loader(d, NULL, B, 11, 1, 2);
    int32_t ref[15 * 8];
    read_labels(whole, B, nb, ref, NULL);
    for (int r = 0; r < S; r++) {
        rx_loader_opts o = {.batch_size = B, .seed = 11, .drop_last = 1, .shuffle = 1, .prefetch = 2, .shard_rank = r,
                            .shard_count = S};
        rx_loader *l = NULL;
        cr_assert_eq(rx_loader_create_opts(d, NULL, &o, &l), RX_OK, "%s", rx_last_error());
        int32_t lab[15 * 4];
        rx_batch_info info[15];
        read_labels(l, B / S, nb, lab, info);   /* also checks each image's pixels against its label */
        for (int b = 0; b < nb; b++) {
            cr_assert_eq(info[b].count, B / S);
            for (int i = 0; i < B / S; i++)
                cr_assert_eq(lab[b * (B / S) + i], ref[b * B + r * (B / S) + i], "batch %d shard %d row %d", b, r, i);
        }
        rx_loader_free(l);
    }
    rx_loader_opts bad = {.batch_size = 9, .seed = 1, .drop_last = 1, .shuffle = 1, .shard_rank = 0, .shard_count = 2};
    rx_loader *l = NULL;
    cr_expect_neq(rx_loader_create_opts(d, NULL, &bad, &l), RX_OK, "a batch of 9 does not split in 2 shards");
    cr_expect(strstr(rx_last_error(), "9") && strstr(rx_last_error(), "2 shards"), "%s", rx_last_error());
    rx_loader_free(whole);
    rx_dataset_free(d);
}
