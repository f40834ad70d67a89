/* cuda_parity.h — the CUDA kernels against the CPU kernels (the reference backend) on the same
 * inputs: two contexts, one per backend, the same host data uploaded to both, the same op
 * front-end run on each, outputs and input gradients compared with rx_rel_err (max abs
 * difference / max |CPU value|).
 *
 * Every run starts from a poisoned step arena (filled with NaN, then reset), so an output
 * element a kernel forgets to write is NaN and fails the comparison. Input gradients start
 * from the same random values on both sides (not zero), so a backward kernel that overwrites
 * instead of adding is caught too. Every test skips cleanly when no CUDA device answers. */
#ifndef RX_CUDA_PARITY_H
#define RX_CUDA_PARITY_H

#include "gradcheck.h"
#include "kernels/cuda_backend.h"
#include "kernels/cuda/cuda_api.h"

#define PX_STEP_CHUNK ((size_t)64 << 20)

#define RX_CUDA_REQUIRE()                                                                                   \
    do {                                                                                                    \
        if (rx_cuda_device_count() == 0)                                                                    \
            cr_skip_test("no CUDA device: the CUDA parity tests run on a GPU machine (make test-cuda)");   \
    } while (0)

typedef struct {
    rx_ctx *cpu, *gpu;
    void *state;
    const char *device;
    int tf32, deterministic;   /* tf32: the rx_precision the context was opened with (0 fp32, 1 tf32, 2 bf16) */
    int round_bf16;            /* round the inputs and the output gradient to bf16 before both backends see them */
} px_pair;

/* fp32 -> bf16 -> fp32, round to nearest even (what the CUDA backend does to a bf16 operand) */
static inline float px_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return f;
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}
static inline void px_round_bf16(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = px_bf16(x[i]);
}

static inline void px_open(px_pair *p, int tf32, int deterministic) {
    RX_CUDA_REQUIRE();
    memset(p, 0, sizeof *p);
    const rx_backend *be = NULL;
    cr_assert_eq(rx_cuda_open(0, tf32, deterministic, &be, &p->state, &p->device), RX_OK, "rx_cuda_open: %s",
                 rx_last_error());
    cr_assert_eq(rx_ctx_create(rx_backend_cpu(), NULL, PX_STEP_CHUNK, &p->cpu), RX_OK, "%s", rx_last_error());
    cr_assert_eq(rx_ctx_create(be, p->state, PX_STEP_CHUNK, &p->gpu), RX_OK, "%s", rx_last_error());
    p->tf32 = tf32;
    p->deterministic = deterministic;
}

static inline void px_close(px_pair *p) {
    rx_ctx_destroy(p->gpu);
    rx_cuda_close(p->state);
    rx_ctx_destroy(p->cpu);
}

/* fill the whole first step-arena chunk with NaN, then reset: the next allocations reuse it */
static inline void px_poison(rx_ctx *c) {
    rx_step_end(c);
    const int64_t n = (int64_t)(PX_STEP_CHUNK / sizeof(float));
    rx_tensor *t = rx_empty(c, 1, &n);
    cr_assert(t, "poison: %s", rx_last_error());
    cr_assert_eq(rx_tensor_fill(c, t, NAN), RX_OK, "poison: %s", rx_last_error());
    rx_step_end(c);
}

/* host values of an input */
enum {
    PX_NORMAL,    /* N(0,1) * arg (arg 0: 1)          */
    PX_INDEX,     /* whole numbers in [0, arg)          */
    PX_UNIFORM,   /* uniform in (0, arg)                */
    PX_ABSENT,    /* an optional input left out (NULL)  */
};

typedef struct {
    int ndim;
    int64_t shape[RX_MAX_DIMS];
    int grad;      /* requires grad: its gradient is compared */
    int kind;
    float arg;
} px_in;

typedef rx_tensor *(*px_fn)(rx_ctx *c, rx_tensor **in, const void *ud);

typedef struct {
    const char *name;
    px_fn f;
    const void *ud;
    int n_in;
    px_in in[RX_MAX_IN];
    int training;   /* c->training (dropout) */
} px_case;

static inline float *px_host_values(const px_in *s, int64_t n, uint64_t seed, int which) {
    float *h = malloc((size_t)(n ? n : 1) * sizeof *h);
    cr_assert(h);
    const uint64_t stream = RX_STREAM(RX_RNG_TEST, 1000 + which);
    if (s->kind == PX_NORMAL) {
        rx_rng_normal(seed, stream, 0, h, n);
        const float a = s->arg != 0 ? s->arg : 1.0f;
        for (int64_t i = 0; i < n; i++) h[i] *= a;
    } else {
        rx_rng_uniform(seed, stream, 0, h, n);
        for (int64_t i = 0; i < n; i++) h[i] = s->kind == PX_INDEX ? floorf(h[i] * s->arg) : h[i] * s->arg;
    }
    return h;
}

typedef struct {
    double out_err, grad_err[RX_MAX_IN];
} px_result;

/* Runs case k on both backends of p and compares; tol applies to the output and every input
 * gradient. Returns the errors (also logged). */
static inline px_result px_run(px_pair *p, const px_case *k, uint64_t seed, double tol) {
    px_result r;
    memset(&r, 0, sizeof r);
    float *x_h[RX_MAX_IN] = {0}, *g0_h[RX_MAX_IN] = {0}, *g_h[2][RX_MAX_IN] = {{0}}, *out_h[2] = {0};
    int64_t numel[RX_MAX_IN] = {0}, out_n = 0;
    for (int i = 0; i < k->n_in; i++) {
        const px_in *s = &k->in[i];
        if (s->kind == PX_ABSENT) continue;
        numel[i] = rx_numel(s->ndim, s->shape);
        x_h[i] = px_host_values(s, numel[i], seed, i);
        if (p->round_bf16 && s->kind == PX_NORMAL) px_round_bf16(x_h[i], numel[i]);
        if (s->grad) {
            const px_in g0 = {.kind = PX_NORMAL, .arg = 0.5f};
            g0_h[i] = px_host_values(&g0, numel[i], seed + 1, i);
        }
    }
    int with_grad = 0;
    for (int b = 0; b < 2; b++) {
        rx_ctx *c = b ? p->gpu : p->cpu;
        const char *be = b ? "cuda" : "cpu";
        px_poison(c);
        c->training = k->training;
        c->seed = 77;
        c->rng_step = 3;
        rx_set_grad_enabled(c, 1);
        rx_tensor *in[RX_MAX_IN] = {0};
        for (int i = 0; i < k->n_in; i++) {
            const px_in *s = &k->in[i];
            if (s->kind == PX_ABSENT) continue;
            in[i] = rx_param(c, NULL, s->ndim, s->shape, s->grad);
            cr_assert(in[i], "%s: input %d on %s: %s", k->name, i, be, rx_last_error());
            cr_assert_eq(rx_tensor_from_host(c, in[i], x_h[i]), RX_OK, "%s", rx_last_error());
            if (s->grad) cr_assert_eq(rx_tensor_from_host(c, in[i]->grad, g0_h[i]), RX_OK, "%s", rx_last_error());
        }
        rx_tensor *out = k->f(c, in, k->ud);
        cr_assert(out, "%s forward on %s: %s", k->name, be, rx_last_error());
        out_n = out->numel;
        out_h[b] = malloc((size_t)(out_n ? out_n : 1) * sizeof(float));
        cr_assert_eq(rx_tensor_to_host(c, out, out_h[b]), RX_OK, "%s", rx_last_error());
        with_grad = out->requires_grad;
        if (with_grad) {
            float *R = malloc((size_t)(out_n ? out_n : 1) * sizeof *R);
            rx_rng_normal(seed + 2, RX_STREAM(RX_RNG_TEST, 99), 0, R, out_n);
            if (p->round_bf16) px_round_bf16(R, out_n);
            rx_tensor *seed_t = rx_from_host(c, out->ndim, out->shape, R);
            free(R);
            cr_assert(seed_t, "%s", rx_last_error());
            cr_assert_eq(rx_backward_with(c, out, seed_t), RX_OK, "%s backward on %s: %s", k->name, be, rx_last_error());
            for (int i = 0; i < k->n_in; i++) {
                if (!in[i] || !k->in[i].grad) continue;
                g_h[b][i] = malloc((size_t)(numel[i] ? numel[i] : 1) * sizeof(float));
                cr_assert_eq(rx_tensor_to_host(c, in[i]->grad, g_h[b][i]), RX_OK, "%s", rx_last_error());
            }
        }
        rx_step_end(c);
    }
    r.out_err = rx_rel_err(out_h[1], out_h[0], (long)out_n);
    cr_expect(r.out_err <= tol, "%s: forward relative error %.3g > %.0e (%s)", k->name, r.out_err, tol, p->device);
    for (int i = 0; i < k->n_in && with_grad; i++) {
        if (!g_h[0][i]) continue;
        r.grad_err[i] = rx_rel_err(g_h[1][i], g_h[0][i], (long)numel[i]);
        cr_expect(r.grad_err[i] <= tol, "%s: gradient of input %d: relative error %.3g > %.0e (%s)", k->name, i,
                  r.grad_err[i], tol, p->device);
    }
    static const char *const prec[] = {"", " (tf32)", " (bf16)"};
    cr_log_info("%s%s%s: forward %.2e, grads %.2e %.2e %.2e", k->name, prec[p->tf32 >= 0 && p->tf32 < 3 ? p->tf32 : 0],
                p->round_bf16 ? " bf16 inputs" : "", r.out_err, r.grad_err[0],
                r.grad_err[1], r.grad_err[2]);
    for (int i = 0; i < RX_MAX_IN; i++) { free(x_h[i]); free(g0_h[i]); free(g_h[0][i]); free(g_h[1][i]); }
    free(out_h[0]);
    free(out_h[1]);
    return r;
}

static inline void px_run_all(px_pair *p, const px_case *cases, int n, double tol) {
    for (int i = 0; i < n; i++) px_run(p, &cases[i], 1000 + (uint64_t)i * 17, tol);
}

#define PX_COUNT(a) (int)(sizeof(a) / sizeof((a)[0]))
/* an input: PX_T(grad, kind, arg, dims...) */
#define PX_T(g, k, a, ...) {.ndim = (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), .shape = {__VA_ARGS__}, \
                            .grad = (g), .kind = (k), .arg = (a)}
#define PX_X(...) PX_T(1, PX_NORMAL, 1.0f, __VA_ARGS__)   /* a normal input that requires grad */
#define PX_NONE {.kind = PX_ABSENT}

#endif
