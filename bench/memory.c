/* bench/memory.c — peak memory of one training step of an experiment, per batch size (issue 14).
 *
 *   make bench && ./build/bench/memory CONFIG [--batch 2,4,8] [--breakdown] [--threads N]
 *                                              [--data synthetic|config] [--limit-gib G]
 *                                              [--backend cpu|cuda] [--export DIR] [--set k=v]...
 *
 * Each batch size runs in a fresh forked child, so one point's memory never flatters the next
 * and the kernel's peak RSS of that child (wait4's ru_maxrss) is the measure. The child builds
 * the experiment as the runner does (rx_experiment_build: model, EMA when train.ema_decay > 0),
 * the optimizer from the config, and runs the train stage's own step (rx_train_step: objective,
 * forward, weighted MSE, backward, clipping + AdamW, EMA, zero grads, step end) twice: a warm-up
 * step that sizes the step arena, then the step whose accounting is printed. Memory is the same
 * in both (the arena is reset, not freed, and the second step walks the same chunks).
 *
 * Inputs: --data synthetic (default) replaces the config's dataset by a tiny `synthetic` one and
 * feeds Gaussian images of the model's shape, so neither the data set nor the loader is in the
 * measurement; --data config loads the config's data set and draws the batches through the
 * train stage's loader and transforms (the data set's in-memory size is then printed; set
 * RUNEXP_DATA to where it lives).
 *
 * runexp's own accounting, next to the RSS: the persistent arena (parameters, their gradients,
 * Adam's m and v, the EMA copy) and the step arena's peak. With --breakdown, what the step arena
 * holds when backward starts (the forward's peak, what PyTorch's "saved for backward" compares
 * with), by the op that made it: the bench swaps the context's backend for a copy whose kernels
 * are wrapped, and the first backward kernel walks the tape:
 *   out      the op's outputs still held (not views, not given back by the forward plan)
 *   saved    what the forward kernels keep in node->saved[] besides the output (group_norm's
 *            mean and rstd, attention's row log-sum-exp, ...)
 * and the rest of the arena (the step's inputs copied from the host) as `other`. The columns add
 * up to the step arena in use when backward starts.
 *
 * Guards (the machine is shared): each child gets RLIMIT_AS = limit + 3 GiB (CPU only; CUDA
 * reserves address space far beyond what it uses) and the parent polls its VmRSS every 20 ms
 * and kills it past the limit, or when MemAvailable drops below 1 GiB. The default limit is
 * MemAvailable at the start minus 4 GiB. A killed point is reported as such, not as a number.
 *
 * --export DIR writes the model with the weights this bench trains (the config's seed) as
 * diffusers files (rx_model_export_diffusers, what `runexp export --to diffusers` writes), for
 * bench/torch_memory.py; bench/memory.sh runs both and prints the side-by-side table.
 *
 * Output: human-readable lines, and one `RESULT key=value ...` line per point for scripts. */
#include "runner/experiment.h"
#include "registry/registry.h"
#include "io/config.h"
#include "data/loader.h"
#include "core/philox.h"
#include "kernels/cuda_backend.h"
#include "kernels/cuda/cuda_api.h"
#include <errno.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GIB (1024.0 * 1024.0 * 1024.0)
#define MIB (1024.0 * 1024.0)

enum { MAX_BATCHES = 16, MAX_SETS = 32 };

typedef struct options {
    const char *config;
    int batches[MAX_BATCHES], n_batches;
    const char *sets[MAX_SETS];
    int n_sets;
    int threads;            /* 0: the config's (or OpenMP's default) */
    int synthetic;          /* 1: Gaussian inputs, no data set; 0: the config's data set and loader */
    int breakdown;
    int cuda;
    double limit_gib;       /* 0: MemAvailable - 4 GiB */
    const char *export_dir;
} options;

/* ---------------------------------------------------------------------------------------------
 * /proc readers (kB values) */

static long long proc_kib(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    long long v = -1;
    const size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') { v = atoll(line + n + 1); break; }
    fclose(f);
    return v;
}

static double mem_available_gib(void) { return proc_kib("/proc/meminfo", "MemAvailable") / (1024.0 * 1024.0); }

/* ---------------------------------------------------------------------------------------------
 * step-arena accounting by op: a copy of the backend whose kernels are wrapped */

typedef struct op_bytes {
    long long fwd_calls;
    size_t out, saved;   /* held when backward starts */
} op_bytes;

static rx_backend g_wrapped;                  /* the copy the context runs on */
static rx_kernel_fn g_fwd[RX_OP_COUNT], g_bwd[RX_OP_COUNT];   /* the real kernels */
static op_bytes g_ops[RX_OP_COUNT];
static size_t g_other;         /* held when backward starts and made by no op: the step's inputs */
static size_t g_after_forward, g_after_backward;
static int g_in_backward;
/* the largest single saved tensor of attention (P with the reference kernel, the LSE with flash) */
static size_t g_attn_p_max;
static long long g_attn_layers;

static size_t round64(size_t b) { return (b + 63) & ~(size_t)63; }
static size_t tensor_bytes(const rx_tensor *t) { return round64((size_t)t->numel * sizeof(float)); }

static void accounting_reset(void) {
    memset(g_ops, 0, sizeof g_ops);
    g_other = g_after_forward = g_after_backward = 0;
    g_in_backward = 0;
    g_attn_p_max = 0;
    g_attn_layers = 0;
}

static rx_status fwd_wrapped(rx_ctx *c, rx_node *n) {   /* (a checkpointed block's recomputation too) */
    g_ops[n->op].fwd_calls++;
    return g_fwd[n->op](c, n);
}

/* when backward starts: what each node still holds (its output unless a view or given back by
 * the forward plan, and what it saved), by op; the rest of the arena is the step's inputs */
static void count_held(rx_ctx *c) {
    for (int op = 0; op < RX_OP_COUNT; op++) g_ops[op].out = g_ops[op].saved = 0;
    size_t held = 0;
    for (const rx_node *n = c->tape; n; n = n->prev) {
        if (n->op < 0) continue;
        op_bytes *o = &g_ops[n->op];
        if (n->out->data && !n->out->is_view) { o->out += tensor_bytes(n->out); held += tensor_bytes(n->out); }
        for (int k = 0; k < 4; k++)
            if (n->saved[k] && n->saved[k] != n->out && n->saved[k]->data) {
                o->saved += tensor_bytes(n->saved[k]);
                held += tensor_bytes(n->saved[k]);
            }
        if (n->op == RX_OP_ATTENTION && n->saved[0]) {
            g_attn_layers++;
            if (tensor_bytes(n->saved[0]) > g_attn_p_max) g_attn_p_max = tensor_bytes(n->saved[0]);
        }
    }
    g_after_forward = rx_arena_data_used(c->step);
    g_other = g_after_forward > held ? g_after_forward - held : 0;
}

static rx_status bwd_wrapped(rx_ctx *c, rx_node *n) {
    if (!g_in_backward) count_held(c);   /* the tape's newest node runs first */
    g_in_backward = 1;
    rx_status s = g_bwd[n->op](c, n);
    g_after_backward = rx_arena_data_used(c->step);
    return s;
}

static void wrap_backend(rx_ctx *c) {
    g_wrapped = *c->be;
    for (int op = 0; op < RX_OP_COUNT; op++) {
        g_fwd[op] = c->be->fwd[op];
        g_bwd[op] = c->be->bwd[op];
        if (g_fwd[op]) g_wrapped.fwd[op] = fwd_wrapped;
        if (g_bwd[op]) g_wrapped.bwd[op] = bwd_wrapped;
    }
    c->be = &g_wrapped;
}

static int cmp_op_total(const void *a, const void *b) {
    const op_bytes *x = &g_ops[*(const int *)a], *y = &g_ops[*(const int *)b];
    const size_t tx = x->out + x->saved, ty = y->out + y->saved;
    return (tx < ty) - (tx > ty);
}

static void print_breakdown(int B) {
    int order[RX_OP_COUNT];
    for (int i = 0; i < RX_OP_COUNT; i++) order[i] = i;
    qsort(order, RX_OP_COUNT, sizeof *order, cmp_op_total);
    printf("  step arena when backward starts, batch %d, by the op that made it (MiB)\n", B);
    printf("  %-20s %6s %9s %9s %10s\n", "op", "calls", "out", "saved", "total");
    size_t col[2] = {0};
    for (int k = 0; k < RX_OP_COUNT; k++) {
        const op_bytes *o = &g_ops[order[k]];
        if (!o->out && !o->saved && !o->fwd_calls) continue;
        printf("  %-20s %6lld %9.1f %9.1f %10.1f\n", rx_op_names[order[k]], o->fwd_calls, o->out / MIB, o->saved / MIB,
               (o->out + o->saved) / MIB);
        col[0] += o->out; col[1] += o->saved;
    }
    printf("  %-20s %6s %9.1f %9s %10.1f\n", "other (inputs)", "", g_other / MIB, "", g_other / MIB);
    printf("  %-20s %6s %9.1f %9.1f %10.1f\n", "sum", "", (col[0] + g_other) / MIB, col[1] / MIB,
           (col[0] + col[1] + g_other) / MIB);
    printf("  step arena after forward %.1f MiB, after backward %.1f MiB\n", g_after_forward / MIB, g_after_backward / MIB);
    if (g_attn_layers)
        printf("  attention: %lld layers, the largest saved tensor %.1f MiB (%.1f MiB per image)\n", g_attn_layers,
               g_attn_p_max / MIB, g_attn_p_max / MIB / B);
    fflush(stdout);
}

/* ---------------------------------------------------------------------------------------------
 * the child: one batch size */

typedef struct point_result {
    int ok;
    char error[400];
    char name[64];
    long long params;
    size_t persist, param_b, grad_b, adam_b, ema_b;
    size_t step_peak, after_forward, after_backward, other, data_bytes;
    size_t attn_p_max;
    long long attn_layers;
    long long rss_start_kib, rss_setup_kib, hwm_kib;
    size_t device_used, device_scratch;
    int threads;
    double step_s;
} point_result;

static size_t paramset_bytes(const rx_paramset *ps, int grads) {
    size_t b = 0;
    for (int i = 0; i < ps->n; i++) {
        const rx_tensor *t = grads ? ps->t[i]->grad : ps->t[i];
        if (t) b += tensor_bytes(t);
    }
    return b;
}

static rx_status run_point(const options *o, int B, point_result *r) {
    char batch_set[64], threads_set[64];
    const char *sets[MAX_SETS + 8];
    int ns = 0;
    snprintf(batch_set, sizeof batch_set, "train.batch_size=%d", B);
    sets[ns++] = o->cuda ? "backend=cuda" : "backend=cpu";
    sets[ns++] = batch_set;
    if (o->threads > 0) {
        snprintf(threads_set, sizeof threads_set, "threads=%d", o->threads);
        sets[ns++] = threads_set;
    }
    if (o->synthetic) {   /* a data set of 16 tiny images: the build loads it, nothing reads it */
        sets[ns++] = "dataset.name=synthetic";
        sets[ns++] = "dataset.num_images=16";
    }
    for (int i = 0; i < o->n_sets; i++) sets[ns++] = o->sets[i];

    rx_config *cfg = NULL;
    rx_config_errors errs = {0};
    rx_status s = rx_config_resolve(o->config, sets, ns, NULL, &cfg, &errs);
    if (s) {
        rx_config_errors_print(&errs, stderr);
        rx_config_errors_clear(&errs);
        free(errs.items);
        return s;
    }
    free(errs.items);
    rx_experiment ex;
    const rx_run_options ro = {.results_root = "results", .quiet = 1};
    s = rx_experiment_build(&ex, cfg, &ro);
    rx_adamw opt;
    memset(&opt, 0, sizeof opt);
    rx_train_batch buf;
    memset(&buf, 0, sizeof buf);
    rx_loader *loader = NULL;
    if (!s && !ex.train) s = rx_fail(RX_ERR_CONFIG, "%s: train: null; nothing to measure", o->config);
    if (s) goto done;
    rx_ctx *c = ex.ctx;
    rx_model *m = ex.model;
    snprintf(r->name, sizeof r->name, "%s", ex.name);
    r->threads = omp_get_max_threads();
    wrap_backend(c);
    s = ((const rx_optimizer_impl *)ex.optimizer.comp->impl)->create(c, ex.optimizer.params, &m->params, &opt);
    const int64_t d = (int64_t)ex.data_c * ex.data_h * ex.data_w;
    if (!s) s = rx_train_batch_alloc(&buf, B, d);
    if (!s && !o->synthetic) {   /* the train stage's loader, as rx_stage_train makes it */
        rx_transform_chain chain = {ex.transforms, ex.n_transforms};
        s = rx_loader_create(ex.train_data, &chain, B, ex.seed, 1, &loader);
        r->data_bytes = (size_t)ex.train_data->n * ex.train_data->channels * ex.train_data->height * ex.train_data->width;
    }
    if (s) goto done;
    if (o->synthetic) {
        rx_rng_normal(ex.seed, RX_STREAM(RX_RNG_TEST, 14), 0, buf.x0, B * d);
        for (int i = 0; i < B; i++) buf.labels[i] = m->num_classes > 0 ? i % m->num_classes : -1;
    }
    r->params = rx_model_param_count(m);
    r->persist = rx_arena_data_used(c->persist);
    r->param_b = paramset_bytes(&m->params, 0);
    r->grad_b = paramset_bytes(&m->params, 1);
    r->adam_b = paramset_bytes(&opt.m, 0) + paramset_bytes(&opt.v, 0);
    r->ema_b = paramset_bytes(&ex.ema, 0);
    r->rss_setup_kib = proc_kib("/proc/self/status", "VmRSS");

    const int64_t total = rx_param_int(ex.train, "steps");
    c->training = 1;   /* as rx_stage_train: dropout on, ops recorded */
    rx_set_grad_enabled(c, 1);
    double t0 = 0;
    for (int64_t step = 1; step <= 2 && !s; step++) {   /* warm-up, then the measured step */
        if (step == 2) {
            accounting_reset();
            t0 = rx_now();
        }
        if (loader) s = rx_loader_next(loader, buf.x0, buf.labels, NULL);
        float loss = 0, lr = 0;
        double gnorm = 0;
        if (!s) s = rx_train_step(&ex, &opt, &buf, step, total, &loss, &gnorm, &lr);
        if (!s && c->be->sync) s = c->be->sync(c);
    }
    if (s) goto done;
    r->step_s = rx_now() - t0;
    r->step_peak = rx_arena_data_peak(c->step);
    r->after_forward = g_after_forward;
    r->after_backward = g_after_backward;
    r->other = g_other;
    r->attn_p_max = g_attn_p_max;
    r->attn_layers = g_attn_layers;
    if (o->cuda && rx_cuda_memory_info) s = rx_cuda_memory_info(c, &r->device_scratch, &r->device_used, NULL);
    r->hwm_kib = proc_kib("/proc/self/status", "VmHWM");
    if (!s && o->breakdown) print_breakdown(B);
    r->ok = !s;
done:
    if (s) snprintf(r->error, sizeof r->error, "%s", rx_last_error());
    rx_loader_free(loader);
    rx_train_batch_free(&buf);
    rx_adamw_free(&opt);
    rx_experiment_free(&ex);
    rx_config_free(cfg);
    return s;
}

/* the model of the config, initialised from its seed as the build does, written as diffusers files */
static rx_status export_model(const options *o) {
    rx_config *cfg = NULL;
    rx_config_errors errs = {0};
    const char *sets[MAX_SETS + 1];
    int ns = 0;
    sets[ns++] = "backend=cpu";
    for (int i = 0; i < o->n_sets; i++) sets[ns++] = o->sets[i];
    rx_status s = rx_config_resolve(o->config, sets, ns, NULL, &cfg, &errs);
    if (s) rx_config_errors_print(&errs, stderr);
    rx_config_errors_clear(&errs);
    free(errs.items);
    if (s) return s;
    const rx_component *mc = NULL, *top = NULL;
    const rx_params *mp = NULL, *tp = NULL;
    rx_ctx *c = NULL;
    rx_model *m = NULL;
    s = rx_config_section_params(cfg, "model", &mc, &mp);
    if (!s) s = rx_config_section_params(cfg, "", &top, &tp);
    if (!s) s = rx_ctx_create(rx_backend_cpu(), NULL, 1 << 20, &c);
    if (!s) s = rx_model_create(c, mc, mp, (uint64_t)rx_param_int(tp, "seed"), &m);
    if (!s) s = rx_model_export_diffusers(c, m, o->export_dir);
    if (!s) printf("exported %s's model (%lld parameters, seed %lld) to %s\n", o->config, (long long)rx_model_param_count(m),
                   (long long)rx_param_int(tp, "seed"), o->export_dir);
    rx_model_destroy(m);
    rx_ctx_destroy(c);
    rx_config_free(cfg);
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * the parent: fork, guard, wait4 */

static void child_main(const options *o, int B, int fd, double limit_gib) {
    if (!o->cuda) {
        const rlim_t as = (rlim_t)((limit_gib + 3.0) * GIB);
        const struct rlimit rl = {as, as};
        setrlimit(RLIMIT_AS, &rl);
    }
    point_result r;
    memset(&r, 0, sizeof r);
    r.rss_start_kib = proc_kib("/proc/self/status", "VmRSS");
    run_point(o, B, &r);
    ssize_t w = write(fd, &r, sizeof r);
    _exit(w == (ssize_t)sizeof r && r.ok ? 0 : 1);
}

/* runs one point; returns 0 when it measured, fills *r and the child's peak RSS */
static int measure(const options *o, int B, double limit_gib, point_result *r, long long *maxrss_kib, char *why,
                   size_t nwhy) {
    int fds[2];
    if (pipe(fds)) { snprintf(why, nwhy, "pipe: %s", strerror(errno)); return -1; }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) { snprintf(why, nwhy, "fork: %s", strerror(errno)); return -1; }
    if (pid == 0) {
        close(fds[0]);
        child_main(o, B, fds[1], limit_gib);
    }
    close(fds[1]);
    char status_path[64];
    snprintf(status_path, sizeof status_path, "/proc/%d/status", (int)pid);
    struct rusage ru;
    int st = 0, killed = 0;
    long long worst = 0;
    for (;;) {   /* the watchdog: the child's RSS against the limit, the machine's free memory */
        pid_t got = wait4(pid, &st, WNOHANG, &ru);
        if (got == pid) break;
        if (got < 0) { snprintf(why, nwhy, "wait4: %s", strerror(errno)); close(fds[0]); return -1; }
        const long long rss = proc_kib(status_path, "VmRSS");
        if (rss > worst) worst = rss;
        if (!killed && !o->cuda && (rss > limit_gib * 1024 * 1024 || mem_available_gib() < 1.0)) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    memset(r, 0, sizeof *r);
    ssize_t got = read(fds[0], r, sizeof *r);
    close(fds[0]);
    *maxrss_kib = ru.ru_maxrss;
    if (killed) {
        snprintf(why, nwhy, "killed by the guard at %.2f GiB RSS (limit %.2f GiB, or MemAvailable under 1 GiB)",
                 worst / (1024.0 * 1024.0), limit_gib);
        return -1;
    }
    if (got != (ssize_t)sizeof *r || !r->ok) {
        snprintf(why, nwhy, "%s", got == (ssize_t)sizeof *r ? r->error
                 : WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "the child reported nothing");
        return -1;
    }
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: memory CONFIG [--batch 2,4,8] [--breakdown] [--threads N] [--data synthetic|config]\n"
                    "              [--limit-gib G] [--backend cpu|cuda] [--export DIR] [--set k=v]...\n");
    exit(2);
}

int main(int argc, char **argv) {
    /* as runexp does (src/runner/main.c): passive OpenMP waiting unless the caller chose */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    options o = {.synthetic = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--batch") && v) {
            char *list = strdup(v), *save = NULL;
            for (char *t = strtok_r(list, ",", &save); t && o.n_batches < MAX_BATCHES; t = strtok_r(NULL, ",", &save))
                o.batches[o.n_batches++] = atoi(t);
            free(list);
            i++;
        } else if (!strcmp(a, "--threads") && v) { o.threads = atoi(v); i++; }
        else if (!strcmp(a, "--data") && v) { o.synthetic = strcmp(v, "config") != 0; i++; }
        else if (!strcmp(a, "--limit-gib") && v) { o.limit_gib = atof(v); i++; }
        else if (!strcmp(a, "--backend") && v) { o.cuda = !strcmp(v, "cuda"); i++; }
        else if (!strcmp(a, "--export") && v) { o.export_dir = v; i++; }
        else if (!strcmp(a, "--set") && v && o.n_sets < MAX_SETS) { o.sets[o.n_sets++] = v; i++; }
        else if (!strcmp(a, "--breakdown")) o.breakdown = 1;
        else if (a[0] != '-' && !o.config) o.config = a;
        else usage();
    }
    if (!o.config) usage();
    /* the parent never runs a kernel: libgomp's thread pool does not survive fork(), so a child of
     * a process that has run an OpenMP region waits forever at its first one */
    if (o.export_dir) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            rx_status s = export_model(&o);
            if (s) fprintf(stderr, "bench/memory: export: %s\n", rx_last_error());
            fflush(stdout);
            _exit(s ? 1 : 0);
        }
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) return 1;
        if (!o.n_batches) return 0;
    }
    if (!o.n_batches) o.batches[o.n_batches++] = 2;

    double load[3] = {0};
    getloadavg(load, 3);
    printf("# bench/memory: %s, %s backend, %s inputs; load average %.2f %.2f %.2f; MemAvailable %.1f GiB\n", o.config,
           o.cuda ? "CUDA" : "CPU", o.synthetic ? "synthetic" : "data-set", load[0], load[1], load[2], mem_available_gib());
    int failed = 0;
    for (int k = 0; k < o.n_batches; k++) {
        const int B = o.batches[k];
        const double avail = mem_available_gib();
        const double limit = o.limit_gib > 0 ? o.limit_gib : avail - 4.0;
        if (limit < 1.0) {
            printf("batch %d: skipped, MemAvailable %.1f GiB leaves no room under the 4 GiB margin\n", B, avail);
            printf("RESULT engine=runexp config=%s batch=%d status=skipped avail_gib=%.1f\n", o.config, B, avail);
            continue;
        }
        point_result r;
        long long maxrss = 0;
        char why[512] = "";
        if (measure(&o, B, limit, &r, &maxrss, why, sizeof why)) {
            printf("batch %d: not measured: %s\n", B, why);
            printf("RESULT engine=runexp config=%s batch=%d status=failed\n", o.config, B);
            failed = 1;
            continue;
        }
        const double peak = maxrss / (1024.0 * 1024.0);
        printf("%s batch %d: peak RSS %.2f GiB | persistent %.2f GiB (params %.2f, grads %.2f, Adam m+v %.2f, EMA %.2f) | "
               "step arena peak %.2f GiB (after forward %.2f) | process base %.0f MiB | step %.1f s, %d threads\n",
               r.name, B, peak, r.persist / GIB, r.param_b / GIB, r.grad_b / GIB, r.adam_b / GIB, r.ema_b / GIB,
               r.step_peak / GIB, r.after_forward / GIB, r.rss_start_kib / 1024.0, r.step_s, r.threads);
        if (r.data_bytes) printf("  data set in memory: %.1f MiB (uint8)\n", r.data_bytes / MIB);
        if (o.cuda)
            printf("  device: arenas %.2f GiB + scratch peak %.2f GiB; cudaMemGetInfo used %.2f GiB (whole device)\n",
                   (r.persist + r.step_peak) / GIB, r.device_scratch / GIB, r.device_used / GIB);
        printf("RESULT engine=runexp config=%s model=%s batch=%d status=ok params=%lld peak_rss_kib=%lld base_rss_kib=%lld "
               "setup_rss_kib=%lld persist=%zu params_b=%zu grads_b=%zu adam_b=%zu ema_b=%zu step_peak=%zu after_forward=%zu "
               "attn_p_max=%zu attn_layers=%lld data_b=%zu device_scratch=%zu step_s=%.2f threads=%d\n",
               o.config, r.name, B, r.params, maxrss, r.rss_start_kib, r.rss_setup_kib, r.persist, r.param_b, r.grad_b,
               r.adam_b, r.ema_b, r.step_peak, r.after_forward, r.attn_p_max, r.attn_layers, r.data_bytes,
               r.device_scratch, r.step_s, r.threads);
        fflush(stdout);
    }
    return failed;
}
