/* dist.c — ranks from the launcher's environment, the single-process transport, and what
 * training builds on the collectives: the step agreement, the parameter hash. The gradient
 * buckets are grad_buckets.c, the MPI transport dist_mpi.c, NCCL's all-reduce dist_nccl.c. */
#include "dist/dist.h"
#include "core/paramset.h"
#include "core/tensor.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- the launcher table: first launcher whose rank variable is set wins ---- */

static const struct launcher_vars {
    const char *launcher, *rank, *world, *local_rank;
} launchers[] = {
    {"openmpi",  "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"slurm",    "SLURM_PROCID",         "SLURM_NTASKS",         "SLURM_LOCALID"},
    {"torchrun", "RANK",                 "WORLD_SIZE",           "LOCAL_RANK"},
};

static rx_status env_int(const char *(*get)(const char *), const char *name, int lo, int hi, int dflt, int *out) {
    const char *v = get(name);
    if (!v || !*v) { *out = dflt; return RX_OK; }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || x < lo || x > hi)
        return rx_fail(RX_ERR_CONFIG, "environment: %s='%s' is not an integer in [%d, %d]", name, v, lo, hi);
    *out = (int)x;
    return RX_OK;
}

rx_status rx_dist_env_read(const char *(*get)(const char *), rx_dist_env *out) {
    *out = (rx_dist_env){0, 1, 0, "none"};
    for (size_t k = 0; k < sizeof launchers / sizeof launchers[0]; k++) {
        const struct launcher_vars *l = &launchers[k];
        if (!get(l->rank) || !*get(l->rank)) continue;
        int world = 1, rank = 0, local = 0;
        RX_TRY(env_int(get, l->world, 1, 1 << 20, 1, &world));
        RX_TRY(env_int(get, l->rank, 0, world - 1, 0, &rank));
        RX_TRY(env_int(get, l->local_rank, 0, world - 1, 0, &local));
        *out = (rx_dist_env){rank, world, local, l->launcher};
        return RX_OK;
    }
    return RX_OK;
}

/* ---- one process: nothing to exchange ---- */

static rx_status single_if32(float *x, int n, rx_dist_req *r) { (void)x, (void)n, (void)r; return RX_OK; }
static rx_status single_complete(rx_dist_req *r, int n) { (void)r, (void)n; return RX_OK; }
static rx_status single_f64(double *x, int n) { (void)x, (void)n; return RX_OK; }
static rx_status single_bcast(void *b, size_t n) { (void)b, (void)n; return RX_OK; }
static rx_status single_gather(uint64_t v, uint64_t *all) { all[0] = v; return RX_OK; }
static rx_status single_barrier(void) { return RX_OK; }
static rx_status single_gather_f32(const float *send, float *recv, const int64_t *counts) {
    (void)send, (void)recv, (void)counts;   /* rank 0's part is in place */
    return RX_OK;
}
static void single_abort(int code) { _exit(code); }
static void single_finalize(void) {}

static const rx_dist_ops single_ops = {"single", single_if32, single_complete, single_complete, single_f64, single_bcast, single_gather,
                                       single_gather_f32, single_barrier, single_abort, single_finalize};

#define BUCKET_MB_DEFAULT 25.0
static rx_dist world = {0, 1, 0, "none", &single_ops, 0, 0, BUCKET_MB_DEFAULT};
static int failure_agreed;

const rx_dist *rx_dist_world(void) { return &world; }
int rx_dist_failure_agreed(void) { return failure_agreed; }

static const char *real_getenv(const char *name) { return getenv(name); }
static void on_grace_over(int sig);   /* signals, below */

/* RUNEXP_BUCKET_MB: MiB >= 0 (a fraction is fine: the tests cut tiny buckets) */
static rx_status bucket_mb_of(const char *v, double *mb) {
    *mb = BUCKET_MB_DEFAULT;
    if (!v || !*v) return RX_OK;
    char *end;
    errno = 0;
    const double x = strtod(v, &end);
    if (errno || *end || !(x >= 0 && x <= 1 << 20))
        return rx_fail(RX_ERR_CONFIG, "environment: RUNEXP_BUCKET_MB='%s' is not a bucket size in MiB in [0, %d] "
                       "(0: one bucket after the backward)", v, 1 << 20);
    *mb = x;
    return RX_OK;
}

rx_status rx_dist_init(void) {
    rx_dist_env e;
    RX_TRY(rx_dist_env_read(real_getenv, &e));
    double bucket_mb;
    RX_TRY(bucket_mb_of(getenv("RUNEXP_BUCKET_MB"), &bucket_mb));
    const char *force = getenv("RUNEXP_FORCE_NCCL");
    world = (rx_dist){e.rank, e.world, e.local_rank, e.launcher, &single_ops, 0, force && !strcmp(force, "1"), bucket_mb};
    if (e.world == 1) return RX_OK;
    if (!rx_dist_mpi_version()) {
        world = (rx_dist){0, 1, 0, "none", &single_ops, 0, 0, BUCKET_MB_DEFAULT};
        return rx_fail(RX_ERR_CONFIG, "the launcher (%s) starts %d ranks, but this runexp was built without MPI: "
                       "install libopenmpi-dev (make deps) and rebuild, or run one process", e.launcher, e.world);
    }
    rx_status s = rx_dist_mpi_init(e.rank, e.world);
    world.ops = &rx_dist_mpi_ops;   /* even after a failure: abort goes through MPI once it started */
    struct sigaction sa;            /* the grace timer of rx_dist_on_signal, armed from a handler */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_grace_over;
    if (!s && sigaction(SIGALRM, &sa, NULL) != 0)
        s = rx_fail(RX_ERR_INTERNAL, "sigaction(SIGALRM): %s", strerror(errno));
    return s;
}

void rx_dist_finalize(void) {
    rx_dist_nccl_close();
    world.ops->finalize();
}

void rx_dist_abort(int code) { world.ops->abort(code); }

/* ---- collectives, marked for the signal handler ---- */

volatile sig_atomic_t rx_dist_in_collective;

#define COLLECTIVE(call)                 \
    do {                                 \
        rx_dist_in_collective = 1;       \
        rx_status s_ = (call);           \
        rx_dist_in_collective = 0;       \
        return s_;                       \
    } while (0)

rx_status rx_dist_allreduce_sum_f64(double *x, int n) { COLLECTIVE(world.ops->allreduce_sum_f64(x, n)); }
rx_status rx_dist_broadcast(void *buf, size_t bytes) { COLLECTIVE(world.ops->broadcast(buf, bytes)); }
rx_status rx_dist_gather_u64(uint64_t v, uint64_t *all) { COLLECTIVE(world.ops->gather_u64(v, all)); }
rx_status rx_dist_barrier(void) { COLLECTIVE(world.ops->barrier()); }
rx_status rx_dist_gather_f32(const float *send, float *recv, const int64_t *counts) {
    COLLECTIVE(world.ops->gather_f32(send, recv, counts));
}

void rx_dist_share(int64_t n, int rank, int64_t *lo, int64_t *hi) {
    const int64_t W = world.world, r = rank, q = n / W, extra = n % W;
    *lo = r * q + (r < extra ? r : extra);
    *hi = *lo + q + (r < extra);
}
rx_status rx_dist_gather_shares(float *rows, int64_t n, int64_t width) {
    int64_t *counts = malloc((size_t)world.world * sizeof *counts), lo, hi;
    if (!counts) return rx_fail(RX_ERR_OOM, "dist: out of memory gathering %lld rows", (long long)n);
    for (int r = 0; r < world.world; r++) {
        rx_dist_share(n, r, &lo, &hi);
        counts[r] = (hi - lo) * width;
    }
    rx_dist_share(n, world.rank, &lo, &hi);
    rx_status s = rx_dist_gather_f32(rows + lo * width, rows, counts);
    free(counts);
    return s;
}

/* sums[0..n) and, behind them, one slot per rank that is 1 where that rank failed */
#define AGREE_MAX 16
rx_status rx_dist_agree(rx_status local, double *sums, int n) {
    failure_agreed = 0;
    if (world.world == 1) return local;
    if (n > AGREE_MAX) return rx_fail(RX_ERR_INTERNAL, "rx_dist_agree: %d values, at most %d", n, AGREE_MAX);
    char why[1024];
    snprintf(why, sizeof why, "%s", local ? rx_last_error() : "");
    double *buf = calloc((size_t)(n + world.world), sizeof *buf);
    if (!buf) return rx_fail(RX_ERR_OOM, "rx_dist_agree: out of memory");
    for (int i = 0; i < n; i++) buf[i] = local ? 0 : sums[i];
    buf[n + world.rank] = local != RX_OK;
    rx_status s = rx_dist_allreduce_sum_f64(buf, n + world.world);
    if (s) { free(buf); return s; }
    for (int i = 0; i < n; i++) sums[i] = buf[i];
    char ranks[256] = "";
    size_t len = 0;
    int failed = 0;
    for (int r = 0; r < world.world; r++)
        if (buf[n + r] != 0 && len < sizeof ranks) {
            len += snprintf(ranks + len, sizeof ranks - len, "%s%d", failed ? ", " : "", r);
            failed++;
        }
    free(buf);
    if (!failed) return RX_OK;
    failure_agreed = 1;
    if (local) return rx_fail(local, "%s", why);
    return rx_fail(RX_ERR_INTERNAL, "rank %s of %d failed (its message is on its stderr); every rank stopped with it",
                   ranks, world.world);
}

rx_status rx_dist_param_hash(rx_ctx *c, const rx_paramset *ps, uint64_t *hash) {
    XXH64_state_t *st = XXH64_createState();
    if (!st) return rx_fail(RX_ERR_OOM, "dist: out of memory for a hash state");
    XXH64_reset(st, 0);
    rx_status s = RX_OK;
    float *host = NULL;
    int64_t cap = 0;
    for (int i = 0; i < ps->n && !s; i++) {
        const rx_tensor *t = ps->t[i];
        if (t->numel > cap) {
            free(host);
            cap = t->numel;
            if (!(host = malloc((size_t)cap * sizeof *host))) { s = rx_fail(RX_ERR_OOM, "dist: out of memory"); break; }
        }
        s = c->mem->to_host(c, host, t->data, (size_t)t->numel * sizeof(float));
        if (!s) XXH64_update(st, host, (size_t)t->numel * sizeof(float));
    }
    *hash = XXH64_digest(st);
    XXH64_freeState(st);
    free(host);
    return s;
}

static int fault_in_backward;   /* "bwd": armed for this step by rx_dist_test_fault */

rx_status rx_dist_test_fault(int64_t step) {
    static int parsed;
    static char kind[8];
    static int rank = -1;
    static long long at = -1;
    if (!parsed) {
        parsed = 1;
        const char *v = getenv("RX_DIST_TEST_FAULT");
        if (v && sscanf(v, "%7[a-z]:%d:%lld", kind, &rank, &at) != 3) rank = -1;
    }
    fault_in_backward = 0;
    if (rank != world.rank || step != at) return RX_OK;
    if (!strcmp(kind, "kill")) raise(SIGKILL);
    if (!strcmp(kind, "bwd")) { fault_in_backward = 1; return RX_OK; }   /* the step's backward fails */
    return rx_fail(RX_ERR_INTERNAL, "RX_DIST_TEST_FAULT: rank %d fails at step %lld", rank, at);
}

rx_status rx_dist_test_fault_in_backward(void) {
    if (!fault_in_backward) return RX_OK;
    fault_in_backward = 0;
    return rx_fail(RX_ERR_INTERNAL, "RX_DIST_TEST_FAULT: rank %d fails in its backward", world.rank);
}

/* ---- signals ---- */

#define RX_STR_(x) #x
#define RX_STR(x) RX_STR_(x)

static char note[2048];
static size_t note_len;

void rx_dist_set_note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(note, sizeof note - 1, fmt, ap);
    va_end(ap);
    note_len = n < 0 ? 0 : (size_t)n < sizeof note - 1 ? (size_t)n : sizeof note - 2;
    note[note_len++] = '\n';
}

static void on_grace_over(int sig) {
    (void)sig;
    static const char head[] = "runexp: still waiting for the other ranks " RX_STR(RX_DIST_SIGNAL_GRACE_S)
                               " s after the signal: a rank is gone; stopping here\n";
    ssize_t w = write(STDERR_FILENO, head, sizeof head - 1);
    if (note_len) w = write(STDERR_FILENO, note, note_len);
    (void)w;
    _exit(128 + SIGTERM);
}

int rx_dist_on_signal(int sig) {
    if (world.world == 1) return 0;
    /* only async-signal-safe calls from here. Said at once, whether or not this rank can still
     * reach its step's end: the launcher may SIGKILL it before */
    static const char head[] = "runexp: signal from the launcher: another rank has died or was killed, or the job "
                               "is being cancelled (see the launcher's message)\n";
    ssize_t w = write(STDERR_FILENO, head, sizeof head - 1);
    if (note_len) w = write(STDERR_FILENO, note, note_len);
    (void)w;
    /* A cancelled job's ranks all got the signal: their collectives complete and the step's
     * stop agreement ends them together, checkpointed. A rank that is gone never answers: the
     * grace timer (on_grace_over, installed by rx_dist_init) ends this one instead. */
    alarm(RX_DIST_SIGNAL_GRACE_S);
    return 0;
}

void rx_dist_describe(char *mpi, size_t n_mpi, char *nccl, size_t n_nccl) {
    const char *m = rx_dist_mpi_version(), *g = rx_dist_nccl_version();
    snprintf(mpi, n_mpi, "MPI: %s", m ? m : "not compiled in (install libopenmpi-dev and rebuild)");
    snprintf(nccl, n_nccl, "NCCL: %s", g ? g : "not compiled in (needs CUDA, MPI and nccl.h/libnccl.so)");
}
