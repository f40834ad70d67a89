/* dist_mpi.c — the MPI transport (Open MPI): bootstrap and the CPU collectives. Compiled to
 * stubs without RX_HAVE_MPI, where rx_dist_init refuses a world > 1 before reaching here.
 * Every MPI call's return is checked; MPI_COMM_WORLD gets MPI_ERRORS_RETURN so that a failed
 * call comes back as an rx_status with MPI's own error string. */
#include "dist/dist.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#if RX_HAVE_MPI
#include <mpi.h>

static rx_status mpi_check(int rc, const char *what) {
    if (rc == MPI_SUCCESS) return RX_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
    return rx_fail(RX_ERR_INTERNAL, "MPI: %s: %s", what, msg);
}

const char *rx_dist_mpi_version(void) {
    static char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    if (!v[0] && MPI_Get_library_version(v, &len) == MPI_SUCCESS) {
        for (int i = 0; v[i]; i++)
            if (v[i] == ',' || v[i] == '\n') { v[i] = 0; break; }   /* "Open MPI v4.1.4" */
    }
    return v[0] ? v : "Open MPI (version unknown)";
}

rx_status rx_dist_mpi_init(int expect_rank, int expect_world) {
    int provided = 0, rank = -1, size = -1;
    /* the loader's thread never calls MPI: FUNNELED is enough */
    RX_TRY(mpi_check(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread"));
    RX_TRY(mpi_check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler"));
    RX_TRY(mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank"));
    RX_TRY(mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size"));
    if (rank != expect_rank || size != expect_world)
        return rx_fail(RX_ERR_CONFIG, "MPI sees rank %d of %d, the launcher's environment says rank %d of %d "
                       "(srun without --mpi=pmix? a batch script running runexp without srun?)",
                       rank, size, expect_rank, expect_world);
    return RX_OK;
}

_Static_assert(sizeof(MPI_Request) <= sizeof(rx_dist_req), "rx_dist_req holds an MPI_Request");
static MPI_Request *mpi_req(rx_dist_req *r) { return (MPI_Request *)(void *)r->opaque; }

static rx_status mpi_if32(float *x, int n, rx_dist_req *req) {
    return mpi_check(MPI_Iallreduce(MPI_IN_PLACE, x, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, mpi_req(req)), "MPI_Iallreduce");
}
/* MPI_Testall/Waitall on rx_dist_req's MPI_Requests, gathered in slices (they sit 16 bytes apart) */
#define REQ_SLICE 64
static rx_status mpi_complete(rx_dist_req *req, int n, int wait) {
    for (int o = 0; o < n; o += REQ_SLICE) {
        MPI_Request r[REQ_SLICE];
        const int m = n - o < REQ_SLICE ? n - o : REQ_SLICE;
        for (int i = 0; i < m; i++) r[i] = *mpi_req(&req[o + i]);
        int done = 0;
        rx_status s = wait ? mpi_check(MPI_Waitall(m, r, MPI_STATUSES_IGNORE), "MPI_Waitall")
                           : mpi_check(MPI_Testall(m, r, &done, MPI_STATUSES_IGNORE), "MPI_Testall");
        for (int i = 0; i < m; i++) *mpi_req(&req[o + i]) = r[i];   /* completed ones are MPI_REQUEST_NULL now */
        RX_TRY(s);
    }
    return RX_OK;
}
static rx_status mpi_test(rx_dist_req *req, int n) { return mpi_complete(req, n, 0); }
static rx_status mpi_wait(rx_dist_req *req, int n) { return mpi_complete(req, n, 1); }

static rx_status mpi_f64(double *x, int n) {
    return mpi_check(MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
}
static rx_status mpi_bcast(void *buf, size_t bytes) {
    if (bytes > (size_t)1 << 30) return rx_fail(RX_ERR_ARG, "MPI_Bcast: %zu bytes, at most 1 GiB", bytes);
    return mpi_check(MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
}
static rx_status mpi_gather(uint64_t v, uint64_t *all) {
    return mpi_check(MPI_Gather(&v, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD), "MPI_Gather");
}
static rx_status mpi_gather_f32(const float *send, float *recv, const int64_t *counts) {
    int rank = 0, size = 0;
    RX_TRY(mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank"));
    RX_TRY(mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size"));
    int *cnt = malloc(2 * (size_t)size * sizeof *cnt), *displ = cnt ? cnt + size : NULL;
    if (!cnt) return rx_fail(RX_ERR_OOM, "MPI_Gatherv: out of memory");
    int64_t off = 0;
    rx_status s = RX_OK;
    for (int r = 0; r < size; r++) {
        if (counts[r] > INT32_MAX || off > INT32_MAX) s = rx_fail(RX_ERR_ARG, "MPI_Gatherv: %lld floats past MPI's int counts",
                                                                  (long long)(off + counts[r]));
        cnt[r] = (int)counts[r], displ[r] = (int)off;
        off += counts[r];
    }
    if (!s) s = mpi_check(rank == 0 ? MPI_Gatherv(MPI_IN_PLACE, 0, MPI_FLOAT, recv, cnt, displ, MPI_FLOAT, 0, MPI_COMM_WORLD)
                                    : MPI_Gatherv(send, cnt[rank], MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, 0, MPI_COMM_WORLD),
                          "MPI_Gatherv");
    free(cnt);
    return s;
}
static rx_status mpi_barrier(void) { return mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
static int mpi_started(void) {
    int up = 0, done = 0;
    return MPI_Initialized(&up) == MPI_SUCCESS && up && MPI_Finalized(&done) == MPI_SUCCESS && !done;
}
static void mpi_abort(int code) {
    if (mpi_started()) MPI_Abort(MPI_COMM_WORLD, code);
    _exit(code);   /* MPI_Abort does not return; if it did, this rank still must not linger */
}
static void mpi_finalize(void) {
    if (mpi_started()) MPI_Finalize();
}

#else

const char *rx_dist_mpi_version(void) { return NULL; }
rx_status rx_dist_mpi_init(int expect_rank, int expect_world) {
    (void)expect_rank;
    return rx_fail(RX_ERR_CONFIG, "%d ranks requested, but this runexp was built without MPI", expect_world);
}
static rx_status no_mpi(void) { return rx_fail(RX_ERR_INTERNAL, "MPI collective in a build without MPI"); }
static rx_status mpi_f64(double *x, int n) { (void)x, (void)n; return no_mpi(); }
static rx_status mpi_if32(float *x, int n, rx_dist_req *req) { (void)x, (void)n, (void)req; return no_mpi(); }
static rx_status mpi_test(rx_dist_req *req, int n) { (void)req, (void)n; return no_mpi(); }
static rx_status mpi_wait(rx_dist_req *req, int n) { (void)req, (void)n; return no_mpi(); }
static rx_status mpi_bcast(void *buf, size_t bytes) { (void)buf, (void)bytes; return no_mpi(); }
static rx_status mpi_gather(uint64_t v, uint64_t *all) { (void)v, (void)all; return no_mpi(); }
static rx_status mpi_gather_f32(const float *send, float *recv, const int64_t *counts) {
    (void)send, (void)recv, (void)counts;
    return no_mpi();
}
static rx_status mpi_barrier(void) { return no_mpi(); }
static void mpi_abort(int code) { _exit(code); }
static void mpi_finalize(void) {}

#endif

const rx_dist_ops rx_dist_mpi_ops = {"mpi", mpi_if32, mpi_test, mpi_wait, mpi_f64, mpi_bcast, mpi_gather, mpi_gather_f32, mpi_barrier,
                                     mpi_abort, mpi_finalize};
