/* bench/loader.c — batches per second of the data loader for the seed experiment's input
 * pipeline: CIFAR-10 train, resize 32 -> 64 (antialiased bilinear) + random flip + normalize,
 * batch 64, one producer thread. Compare with the training step time: the loader is not the
 * bottleneck while batches/s here exceeds training steps/s.
 *
 *   build/bench/loader [data_root] [batches]
 * data_root defaults to $RUNEXP_DATA, else $RUNEXP_DATA_SRC, else ./data. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "registry/components.h"
#include "core/params.h"
#include "data/loader.h"
#include "clock.h"

static int fail(const char *what) {
    fprintf(stderr, "bench/loader: %s: %s\n", what, rx_last_error());
    return 1;
}

// Batches per second (wall clock) over `nb` batches after 3 warm-up batches; with prefetch 0
// also the CPU seconds per batch of this thread (which then does all the work), a number that
// other load on the machine does not inflate.
static int run(const rx_dataset *d, const rx_transform_chain *chain, int prefetch, int nb, double *rate, double *cpu) {
    rx_loader_opts o = {.batch_size = 64, .seed = 0, .drop_last = 1, .shuffle = 1, .prefetch = prefetch};
    rx_loader *l;
    if (rx_loader_create_opts(d, chain, &o, &l)) return fail("loader");
    int c, h, w;
    rx_loader_image_shape(l, &c, &h, &w);
    float *x = malloc((size_t)64 * c * h * w * sizeof *x);
    int32_t y[64];
    if (!x) return 1;
    double t0 = 0, c0 = 0;
    for (int b = 0; b < nb + 3; b++) {
        if (b == 3) t0 = now_s(), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        if (rx_loader_next(l, x, y, NULL)) return fail("next");
    }
    *rate = nb / (now_s() - t0);
    *cpu = (clock_s(CLOCK_THREAD_CPUTIME_ID) - c0) / nb;
    free(x);
    rx_loader_free(l);
    return 0;
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : getenv("RUNEXP_DATA");
    if (!root || !*root) root = getenv("RUNEXP_DATA_SRC");
    if (!root || !*root) root = "data";
    int nb = argc > 2 ? atoi(argv[2]) : 300;
    if (nb < 1) nb = 300;

    rx_params *pd, *pr, *pf, *pn;
    char text[4200];
    snprintf(text, sizeof text, "\"%s\"", root);
    if (rx_params_from_defaults("dataset/cifar10", rx_comp_dataset_cifar10.params, &pd) ||
        rx_params_set(pd, "root", text) ||
        rx_params_from_defaults("transform/resize", rx_comp_transform_resize.params, &pr) ||
        rx_params_set(pr, "size", "64") ||
        rx_params_from_defaults("transform/random_flip", rx_comp_transform_random_flip.params, &pf) ||
        rx_params_from_defaults("transform/normalize", rx_comp_transform_normalize.params, &pn))
        return fail("params");

    double t0 = now_s();
    rx_dataset *d;
    if (rx_dataset_load(&rx_comp_dataset_cifar10, pd, "train", &d)) return fail("cifar10");
    printf("loaded %s: %d images [%d,%d,%d] in %.2f s\n", d->name, d->n, d->channels, d->height, d->width, now_s() - t0);

    const rx_transform_step steps[3] = {{&rx_comp_transform_resize, pr},
                                        {&rx_comp_transform_random_flip, pf},
                                        {&rx_comp_transform_normalize, pn}};
    const rx_transform_chain chain = {steps, 3};
    double threaded, direct, unused, cpu;
    if (run(d, &chain, 2, nb, &threaded, &unused) || run(d, &chain, 0, nb, &direct, &cpu)) return 1;
    printf("loader cifar10 train, resize 32->64 + flip + normalize, batch 64, 1 producer thread:\n");
    printf("  %.1f batches/s (%.0f images/s) with the prefetch thread (consumer does nothing else)\n", threaded,
           threaded * 64);
    printf("  %.1f batches/s without a thread (= one core's production rate; %.2f ms per batch)\n", direct,
           1000.0 / direct);
    printf("  %.2f ms CPU per batch -> %.0f batches/s on an otherwise idle core\n", 1000.0 * cpu, 1.0 / cpu);

    rx_dataset_free(d);
    rx_params_free(pd), rx_params_free(pr), rx_params_free(pf), rx_params_free(pn);
    return 0;
}
