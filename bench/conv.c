/* bench/conv.c — conv2d per shape: the reference (im2col + OpenBLAS) against oneDNN in plain and
 * in blocked layouts (src/kernels/cpu/conv_onednn.c), interleaved, at the quickstart's and
 * cfg_cifar32's conv shapes and training batches. What the layout rule in conv_layout_for was
 * chosen from (bench/NOTES.md, "Issue 15: oneDNN convolutions").
 *
 *   make bench && ./build/bench/conv [REPEATS] [quickstart|cifar32]
 *
 * Per shape and implementation: the forward (grad on, as in training) and the backward kernel
 * alone (dx, dw, db), each the fastest of REPEATS (default 7) after a warm-up, the three
 * implementations taking turns on every repeat so that load from other jobs hits them alike.
 * The fastest, not the median: on a shared machine it is the one least disturbed. */
#include "kernels/cpu/cpu.h"
#include "kernels/ops.h"
#include "core/philox.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clock.h"

typedef struct { const char *model, *what; int B, Ci, H, Co, k, stride; } conv_shape_row;

/* the U-Nets' distinct conv shapes (diffusers UNet2DModel layout), training batch */
static const conv_shape_row rows[] = {
    {"quickstart", "conv_in", 32, 1, 32, 16, 3, 1},
    {"quickstart", "res 16 @32", 32, 16, 32, 16, 3, 1},
    {"quickstart", "down 16 s2", 32, 16, 32, 16, 3, 2},
    {"quickstart", "res 16->32 @16", 32, 16, 16, 32, 3, 1},
    {"quickstart", "shortcut 16->32", 32, 16, 16, 32, 1, 1},
    {"quickstart", "res 32 @16", 32, 32, 16, 32, 3, 1},
    {"quickstart", "down 32 s2", 32, 32, 16, 32, 3, 2},
    {"quickstart", "res 32 @8", 32, 32, 8, 32, 3, 1},
    {"quickstart", "up res 64->32 @8", 32, 64, 8, 32, 3, 1},
    {"quickstart", "up conv 32 @16", 32, 32, 16, 32, 3, 1},
    {"quickstart", "up res 48->32 @16", 32, 48, 16, 32, 3, 1},
    {"quickstart", "up res 48->16 @32", 32, 48, 32, 16, 3, 1},
    {"quickstart", "shortcut 48->16", 32, 48, 32, 16, 1, 1},
    {"quickstart", "conv_out", 32, 16, 32, 1, 3, 1},
    {"cifar32", "conv_in", 16, 3, 32, 128, 3, 1},
    {"cifar32", "res 128 @32", 16, 128, 32, 128, 3, 1},
    {"cifar32", "down 128 s2", 16, 128, 32, 128, 3, 2},
    {"cifar32", "res 128->256 @16", 16, 128, 16, 256, 3, 1},
    {"cifar32", "res 256 @16", 16, 256, 16, 256, 3, 1},
    {"cifar32", "res 256 @8", 16, 256, 8, 256, 3, 1},
    {"cifar32", "res 256 @4", 16, 256, 4, 256, 3, 1},
    {"cifar32", "up res 512->256 @8", 16, 512, 8, 256, 3, 1},
    {"cifar32", "shortcut 512->256", 16, 512, 8, 256, 1, 1},
    {"cifar32", "up res 384->128 @32", 16, 384, 32, 128, 3, 1},
    {"cifar32", "conv_out", 16, 128, 32, 3, 3, 1},
};

static const char *const impls[] = {"reference", "onednn-plain", "onednn-blocked"};
enum { N_IMPLS = 3, MAX_REPEATS = 64 };

static void die(const char *what) {
    fprintf(stderr, "bench/conv: %s: %s\n", what, rx_last_error());
    exit(1);
}

/* one forward + backward of a row on c; *tf, *tb: seconds */
static void run_once(rx_ctx *c, const conv_shape_row *r, rx_tensor *const in[3], double *tf, double *tb) {
    const double t0 = now_s();
    rx_tensor *y = rx_conv2d(c, in[0], in[1], in[2], r->stride, r->k / 2);
    const double t1 = now_s();
    if (!y) die("conv2d forward");
    rx_tensor *gy = rx_grad_of(c, y);
    if (!gy || rx_tensor_fill(c, gy, 0.5f)) die("grad of y");
    const double t2 = now_s();
    if (c->be->bwd[RX_OP_CONV2D](c, c->tape)) die("conv2d backward");
    const double t3 = now_s();
    *tf = t1 - t0;
    *tb = t3 - t2;
    rx_step_end(c);
}

static rx_tensor *input(rx_ctx *c, int ndim, const int64_t *shape, uint64_t seed) {
    rx_tensor *t = rx_param(c, NULL, ndim, shape, 1);
    float *h = t ? malloc(sizeof(float) * t->numel) : NULL;
    if (!h) die("input");
    rx_rng_normal(seed, 3, 0, h, t->numel);
    if (rx_tensor_from_host(c, t, h)) die("input");
    free(h);
    return t;
}

int main(int argc, char **argv) {
    const int repeats = argc > 1 ? atoi(argv[1]) : 7;
    const char *only = argc > 2 ? argv[2] : NULL;
    if (repeats < 1 || repeats > MAX_REPEATS) { fprintf(stderr, "usage: conv [REPEATS 1..64] [quickstart|cifar32]\n"); return 2; }
    double load[3];
    getloadavg(load, 3);
    printf("# bench/conv: %d threads, fastest of %d, %s; load %.2f %.2f %.2f\n", omp_get_max_threads(), repeats,
           cpu_conv2d_impl(), load[0], load[1], load[2]);
    printf("| model | conv | x | fwd ref ms | fwd plain | fwd blocked | bwd ref ms | bwd plain | bwd blocked |\n");
    printf("|---|---|---|---:|---:|---:|---:|---:|---:|\n");
    const double c0 = cpu_s(), w0 = now_s();
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const conv_shape_row *r = &rows[i];
        if (only && strcmp(only, r->model)) continue;
        rx_ctx *c = NULL;
        if (rx_ctx_create(rx_backend_cpu(), NULL, 256u << 20, &c)) die("context");
        rx_tensor *in[3] = {input(c, RX_SHAPE(r->B, r->Ci, r->H, r->H), 1), input(c, RX_SHAPE(r->Co, r->Ci, r->k, r->k), 2),
                            input(c, RX_SHAPE(r->Co), 3)};
        double best_f[N_IMPLS], best_b[N_IMPLS];
        for (int rep = -1; rep < repeats; rep++)
            for (int m = 0; m < N_IMPLS; m++) {
                if (cpu_conv2d_select(impls[m])) die("select");
                double tf, tb;
                run_once(c, r, in, &tf, &tb);
                if (rep <= 0) { best_f[m] = tf; best_b[m] = tb; }   /* the warm-up builds the primitives */
                if (tf < best_f[m]) best_f[m] = tf;
                if (tb < best_b[m]) best_b[m] = tb;
            }
        printf("| %s | %s | [%d,%d,%d,%d] k%d s%d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", r->model, r->what, r->B,
               r->Ci, r->H, r->H, r->k, r->stride, 1e3 * best_f[0], 1e3 * best_f[1], 1e3 * best_f[2], 1e3 * best_b[0],
               1e3 * best_b[1], 1e3 * best_b[2]);
        fflush(stdout);
        rx_ctx_destroy(c);
    }
    getloadavg(load, 3);
    printf("# load at end %.2f %.2f %.2f; CPU share %.0f%%\n", load[0], load[1], load[2],
           100 * (cpu_s() - c0) / (now_s() - w0) / omp_get_max_threads());
    return 0;
}
