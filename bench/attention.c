/* bench/attention.c — the registered CPU attention kernels (FlashAttention-2, tiled) against the
 * reference kernels they replaced (cpu_attention_reference_fwd/_bwd, whole [N,N] matrices), on
 * the same inputs: time of the forward (grad on, as in training) and of the backward kernel, and
 * the step arena's peak over the two.
 *
 *     make bench && ./build/bench/attention [repeats]   (default 7 timed runs after 1 warm-up; fastest)
 *
 * Times are the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID) with OpenMP and OpenBLAS on
 * one thread: per-core efficiency, which other jobs on a shared machine barely move (a
 * descheduled thread accrues no CPU time). Wall-clock times with every thread are in
 * bench/kernels (`./build/bench/kernels 7 --best attention`).
 * step MiB: rx_arena_data_peak of a fresh context over one forward + backward, inputs being
 * parameters (persistent arena): the output, what the forward saves for the backward, the
 * output gradient and the kernels' scratch. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/philox.h"
#include "kernels/cpu/cpu.h"
#include "kernels/ops.h"

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void check(rx_status s, const char *what) {
    if (s) { fprintf(stderr, "bench/attention: %s: %s\n", what, rx_last_error()); exit(1); }
}

typedef struct { int64_t B, H, N, D; const char *note; } shape;

static const shape shapes[] = {
    {16, 4, 256, 64, "16x16 tokens"},
    {16, 1, 256, 256, "cfg_cifar32: one head of 256"},
    {4, 4, 1024, 64, "32x32 tokens"},
    {4, 6, 256, 64, "DiT-S/2 at 32x32"},
};

typedef struct { double fwd, bwd, step_mib; } result;

/* fastest of `repeats` forward and backward runs of attention on `be` at shape s */
static result run(const rx_backend *be, const shape *s, int repeats) {
    rx_ctx *c = NULL;
    check(rx_ctx_create(be, NULL, 256u << 20, &c), "context");
    rx_tensor *in[3];
    for (int i = 0; i < 3; i++) {
        in[i] = rx_param(c, NULL, RX_SHAPE(s->B, s->H, s->N, s->D), 1);
        if (!in[i]) check(rx_ctx_status(c), "input");
        float *h = malloc(in[i]->numel * sizeof *h);
        rx_rng_normal(1 + i, 3, 0, h, in[i]->numel);
        check(rx_tensor_from_host(c, in[i], h), "upload");
        free(h);
    }
    result r = {1e30, 1e30, 0};
    for (int k = -1; k < repeats; k++) {
        const double t0 = thread_cpu_s();
        rx_tensor *o = rx_attention(c, in[0], in[1], in[2], 0.0f);
        const double t1 = thread_cpu_s();
        if (!o) check(rx_ctx_status(c), "forward");
        rx_tensor *g = rx_grad_of(c, o);
        if (!g) check(rx_ctx_status(c), "output gradient");
        check(rx_tensor_fill(c, g, 0.5f), "fill");
        const double t2 = thread_cpu_s();
        check(c->be->bwd[RX_OP_ATTENTION](c, c->tape), "backward");
        const double t3 = thread_cpu_s();
        if (k >= 0) {
            r.fwd = t1 - t0 < r.fwd ? t1 - t0 : r.fwd;
            r.bwd = t3 - t2 < r.bwd ? t3 - t2 : r.bwd;
        }
        rx_step_end(c);
    }
    r.step_mib = rx_arena_data_peak(c->step) / 1048576.0;
    rx_ctx_destroy(c);
    return r;
}

int main(int argc, char **argv) {
    const int repeats = argc > 1 ? atoi(argv[1]) : 7;
    if (repeats < 1) { fprintf(stderr, "usage: attention [repeats >= 1]\n"); return 2; }
    omp_set_num_threads(1);   /* the OpenMP build of OpenBLAS follows it */
    rx_backend reference = *rx_backend_cpu();
    reference.fwd[RX_OP_ATTENTION] = cpu_attention_reference_fwd;
    reference.bwd[RX_OP_ATTENTION] = cpu_attention_reference_bwd;
    double load[3] = {0};
    if (getloadavg(load, 3) < 0) load[0] = -1;
    printf("# bench/attention: 1 thread, thread CPU time, fastest of %d after 1 warm-up; load average %.2f\n\n",
           repeats, load[0]);
    printf("| shape | note | reference fwd ms | bwd ms | step MiB | flash fwd ms | bwd ms | step MiB "
           "| fwd ratio | bwd ratio |\n");
    printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        const result ref = run(&reference, s, repeats), fa = run(rx_backend_cpu(), s, repeats);
        printf("| B=%lld heads=%lld N=%lld D=%lld | %s | %.2f | %.2f | %.1f | %.2f | %.2f | %.1f | %.2f | %.2f |\n",
               (long long)s->B, (long long)s->H, (long long)s->N, (long long)s->D, s->note, ref.fwd * 1e3,
               ref.bwd * 1e3, ref.step_mib, fa.fwd * 1e3, fa.bwd * 1e3, fa.step_mib, fa.fwd / ref.fwd, fa.bwd / ref.bwd);
        fflush(stdout);
    }
    printf("\n# ratio: flash time / reference time (below 1: the registered kernels are faster)\n");
    return 0;
}
