/* dist.h — data-parallel ranks: who this process is, and the collectives training needs.
 *
 * One process per GPU (or per CPU slot), launched by mpirun, srun or a torchrun-style
 * launcher. Rank, world size and local rank come from the environment, first match wins:
 *
 *     Open MPI   OMPI_COMM_WORLD_RANK  OMPI_COMM_WORLD_SIZE  OMPI_COMM_WORLD_LOCAL_RANK
 *     Slurm      SLURM_PROCID          SLURM_NTASKS          SLURM_LOCALID
 *     torchrun   RANK                  WORLD_SIZE            LOCAL_RANK
 *
 * Without any of them (or a world of 1) the process is alone and every collective is a no-op:
 * the single-process behaviour is the old one, bit for bit. A world > 1 needs MPI compiled in
 * (RX_HAVE_MPI): MPI bootstraps the job and carries the CPU backend's gradients; on CUDA, NCCL
 * (RX_HAVE_NCCL) carries them, its unique id broadcast over MPI (as llm.c does).
 *
 * The collectives are a small vtable (rx_dist_ops) with a single-process and an MPI
 * implementation; NCCL only does the device-gradient all-reduce (dist_nccl.c).
 * Rank 0 owns the run directory (runner/run.c): the others write nothing. */
#ifndef RX_DIST_H
#define RX_DIST_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include "core/status.h"

struct rx_ctx;
struct rx_paramset;
struct rx_tensor;

typedef struct rx_dist_env {
    int rank, world, local_rank;
    const char *launcher;   /* "none" | "openmpi" | "slurm" | "torchrun" */
} rx_dist_env;

/* The launcher table above, read through get (getenv, or a test's table). A variable that is
 * set but not a number in range is an error naming it. */
rx_status rx_dist_env_read(const char *(*get)(const char *name), rx_dist_env *out);

/* a nonblocking collective under way (an MPI_Request inside) */
typedef struct rx_dist_req { uint64_t opaque[2]; } rx_dist_req;

typedef struct rx_dist_ops {
    const char *name;                                                    /* "single" | "mpi" */
    /* started in place (MPI_Iallreduce), n <= INT_MAX; done when test or wait says so */
    rx_status (*iallreduce_sum_f32)(float *x, int n, rx_dist_req *req);
    rx_status (*test)(rx_dist_req *req, int n);     /* drives them on (MPI_Testall), returns at once */
    rx_status (*wait)(rx_dist_req *req, int n);     /* MPI_Waitall */
    rx_status (*allreduce_sum_f64)(double *x, int n);
    rx_status (*broadcast)(void *buf, size_t bytes);                     /* from rank 0 */
    rx_status (*gather_u64)(uint64_t v, uint64_t *all);                  /* all [world] on rank 0 */
    /* rank r's n_r floats to rank 0's recv at offset sum_{q<r} n_q (counts [world] on every
     * rank); rank 0's own part is already in place at recv (send unused there) */
    rx_status (*gather_f32)(const float *send, float *recv, const int64_t *counts);
    rx_status (*barrier)(void);
    void      (*abort)(int code);
    void      (*finalize)(void);
} rx_dist_ops;

typedef struct rx_dist {
    int rank, world, local_rank;
    const char *launcher;
    const rx_dist_ops *ops;
    int nccl;               /* an NCCL communicator carries CUDA gradients (rx_dist_nccl_open) */
    int force_nccl;         /* RUNEXP_FORCE_NCCL=1: NCCL even for one rank (the one-GPU device check
                               that NCCL's all-reduce leaves the losses as they are) */
    double bucket_mb;       /* RUNEXP_BUCKET_MB: gradient bucket size in MiB (default 25, as PyTorch
                               DDP's bucket_cap_mb); 0: one bucket, all-reduced after the backward */
} rx_dist;

/* Reads the environment; a world > 1 starts MPI (MPI_Init) and checks that MPI sees the same
 * world. A world > 1 in a build without MPI: RX_ERR_CONFIG with the reason (exit 2). */
rx_status rx_dist_init(void);
/* this process's ranks (a single process before or without rx_dist_init) */
const rx_dist *rx_dist_world(void);
static inline int rx_dist_is_root(void);
/* MPI_Finalize (after a run every rank finished, or whose failure every rank agreed on) */
void rx_dist_finalize(void);
/* MPI_Abort: the other ranks are killed by the launcher, so none waits forever on this one */
void rx_dist_abort(int code);
/* 1 when the last failure returned by rx_dist_agree was agreed by every rank (each one records
 * it and exits normally; no abort needed) */
int rx_dist_failure_agreed(void);

/* The collectives; one process: no-ops. Each checks MPI's return. */
rx_status rx_dist_allreduce_sum_f64(double *x, int n);
rx_status rx_dist_broadcast(void *buf, size_t bytes);
rx_status rx_dist_gather_u64(uint64_t v, uint64_t *all);
rx_status rx_dist_barrier(void);
rx_status rx_dist_gather_f32(const float *send, float *recv, const int64_t *counts);

/* Work split over the ranks: rank r's contiguous share [lo, hi) of n items (the first n % W
 * ranks get one more), so the shares in rank order are 0..n-1 in order. */
void rx_dist_share(int64_t n, int rank, int64_t *lo, int64_t *hi);

/* rows [n, width], each rank holding its share (rx_dist_share) in place: rank 0 receives every
 * rank's rows (generated images, feature rows), its own staying where they are */
rx_status rx_dist_gather_shares(float *rows, int64_t n, int64_t width);

/* One training step's agreement: every rank passes its status and n values to sum; all get
 * the sums. When any rank failed, every rank returns an error: the failing one its own, the
 * others one that names the step's failing ranks (and rx_dist_failure_agreed() is then 1). */
rx_status rx_dist_agree(rx_status local, double *sums, int n);

/* ---- the gradient all-reduce, bucketed and overlapped with backward (grad_buckets.c) ----
 *
 * The parameters with a gradient, in reverse registration order (backward finishes the last
 * layers first), are cut into buckets of RUNEXP_BUCKET_MB (a parameter larger than that is a
 * bucket alone). Backward tells the dist layer when each gradient is final (c->grad_ready,
 * autograd/backward.c); when a bucket's last one is, its all-reduce starts while backward goes
 * on: MPI_Iallreduce of its host copy (CPU, or CUDA without NCCL), driven on by MPI_Testall
 * at every later announcement (Open MPI has no progress thread), or an NCCL group of
 * ncclAllReduce(ncclAvg) on a communication stream that waits on an event recorded on the
 * compute stream after the bucket's last gradient kernel. Buckets start in bucket order on
 * every rank, whatever order the gradients become final in, so the collectives match.
 * The mean is sum / world as before: the same values, summed in another order at most.
 *
 * A step: rx_dist_grad_arm before backward; rx_dist_grad_start_rest after it on every rank,
 * whether its backward succeeded or not (the buckets not started yet start now: each rank
 * issues every bucket's collective, so none waits on another forever); the step agreement;
 * then rx_dist_grad_mean (waits, writes the means into the gradients) or, when the step failed
 * on some rank, rx_dist_grad_drop. One process without NCCL: all of them do nothing. */
rx_status rx_dist_grad_arm(struct rx_ctx *c, const struct rx_paramset *ps);
rx_status rx_dist_grad_start_rest(struct rx_ctx *c);
/* the gradients of ps averaged over the ranks, in place; without an armed step it arms, starts
 * and waits in one go (every bucket after the backward) */
rx_status rx_dist_grad_mean(struct rx_ctx *c, const struct rx_paramset *ps);
/* a failed step (why, its message kept): waits for the buckets under way, keeps nothing */
rx_status rx_dist_grad_drop(struct rx_ctx *c, rx_status why);
/* the buckets: how many, the largest in floats, and how many of them the last finished step
 * started during its backward (the overlap; the rest started after it) (run.json, tests) */
void      rx_dist_grad_buckets(int *n, int64_t *max_floats, int *in_backward);

/* XXH64 of every parameter's bytes, in order: equal on all ranks after every step */
rx_status rx_dist_param_hash(struct rx_ctx *c, const struct rx_paramset *ps, uint64_t *hash);

/* NCCL: rank 0's ncclGetUniqueId broadcast over MPI, then ncclCommInitRank on the context's
 * device and stream. No-op for a CPU context, or one rank without force_nccl; RX_ERR_CONFIG when NCCL is not
 * compiled in (the MPI host path is then used: the caller logs it). */
rx_status rx_dist_nccl_open(struct rx_ctx *c);
void      rx_dist_nccl_close(void);
/* one bucket's device all-reduce, started on the communication stream once the compute stream
 * reaches this point (an event); and the compute stream made to wait for all of them, then the
 * host for the compute stream (grad_buckets.c calls these) */
rx_status rx_dist_nccl_bucket_start(struct rx_ctx *c, struct rx_tensor *const *grads, int n);
rx_status rx_dist_nccl_bucket_wait(struct rx_ctx *c);

/* "MPI: Open MPI v4.1.4 (compiled in)" and "NCCL: 2.21.5 (compiled in)", or "not compiled in" */
void rx_dist_describe(char *mpi, size_t n_mpi, char *nccl, size_t n_nccl);

/* Signals in a multi-rank job (SIGTERM/SIGINT from mpirun or Slurm). The rank says why on
 * stderr at once, with the note (the last checkpoint and the resume command), since the
 * launcher may SIGKILL it before its step ends; then it goes on as one process would (the
 * interrupt flag; the step's stop agreement ends every rank at the same step, checkpointed).
 * When another rank died, this one may wait in a collective forever: a timer ends it
 * RX_DIST_SIGNAL_GRACE_S seconds after the signal if it has not stopped by then.
 * rx_dist_on_signal returns 0: the caller's own handling follows. */
#define RX_DIST_SIGNAL_GRACE_S 30
extern volatile sig_atomic_t rx_dist_in_collective;
void rx_dist_set_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int  rx_dist_on_signal(int sig);

/* Fault injection for tests/test_dist.c: RX_DIST_TEST_FAULT="kill:RANK:STEP" makes that rank
 * SIGKILL itself when training reaches STEP; "fail:RANK:STEP" makes its step fail with an
 * error; "bwd:RANK:STEP" makes its backward fail once the first gradient bucket has started
 * (rx_dist_test_fault_in_backward, from the bucket code). Unset (always, outside the tests): RX_OK. */
rx_status rx_dist_test_fault(int64_t step);
rx_status rx_dist_test_fault_in_backward(void);

/* the transports (dist_mpi.c); without MPI, init fails with the reason */
extern const rx_dist_ops rx_dist_mpi_ops;
rx_status rx_dist_mpi_init(int expect_rank, int expect_world);
const char *rx_dist_mpi_version(void);   /* NULL without MPI */
const char *rx_dist_nccl_version(void);  /* NULL without NCCL */

static inline int rx_dist_is_root(void) { return rx_dist_world()->rank == 0; }

#endif
