/* dist_nccl.c — CUDA gradients over NCCL (RX_HAVE_NCCL: CUDA, MPI and nccl.h/libnccl.so found
 * at build time). Bootstrap as llm.c does: rank 0's ncclGetUniqueId goes to every rank over
 * MPI, then ncclCommInitRank on the device the local rank picked.
 *
 * A gradient bucket (grad_buckets.c) is one NCCL group of in-place ncclAvg all-reduces on a
 * communication stream of its own, issued as backward announces the bucket's last gradient:
 *
 *     compute stream   ... bwd kernels ... [record ready] ... more bwd kernels ... [wait done] clip, AdamW
 *     comm stream                          [wait ready] ncclAllReduce x n ...  [record done]
 *
 * so the all-reduce runs beside the rest of the backward, and the optimizer's kernels wait for
 * the last bucket. One event of each kind is enough: a wait takes the event as recorded when
 * it is issued. NCCL fuses the group's tensors into its own buffers: no packing here. Every
 * NCCL and CUDA call is checked. */
#include "dist/dist.h"
#include "core/paramset.h"
#include "core/tensor.h"
#include "kernels/cuda/cuda_api.h"

#include <stdio.h>

#if RX_HAVE_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>

static ncclComm_t comm;
static int comm_open;
static cudaStream_t comm_stream;      /* the buckets' all-reduces */
static cudaEvent_t ready, done;       /* compute -> comm (a bucket's gradients), comm -> compute (all) */

#define CUDA_TRY(call)                                                                                  \
    do {                                                                                                \
        cudaError_t e_ = (call);                                                                        \
        if (e_ != cudaSuccess) return rx_fail(RX_ERR_DEVICE, "NCCL: %s: %s", #call, cudaGetErrorString(e_)); \
    } while (0)

#define NCCL_TRY(call)                                                                                  \
    do {                                                                                                \
        ncclResult_t r_ = (call);                                                                       \
        if (r_ != ncclSuccess) return rx_fail(RX_ERR_DEVICE, "NCCL: %s: %s", #call, ncclGetErrorString(r_)); \
    } while (0)

const char *rx_dist_nccl_version(void) {
    static char v[32];
    int x = 0;
    if (!v[0] && ncclGetVersion(&x) == ncclSuccess)
        snprintf(v, sizeof v, "%d.%d.%d", x / 10000, x / 100 % 100, x % 100);   /* NCCL >= 2.9: MAJOR*10000+MINOR*100+PATCH */
    return v[0] ? v : "(version unknown)";
}

rx_status rx_dist_nccl_open(rx_ctx *c) {
    const rx_dist *w = rx_dist_world();
    if ((w->world == 1 && !w->force_nccl) || comm_open || c->mem->device != RX_DEV_CUDA) return RX_OK;
    void *stream;
    int device;
    if (!rx_cuda_stream_device) return rx_fail(RX_ERR_DEVICE, "NCCL: the CUDA backend is not linked");
    RX_TRY(rx_cuda_stream_device(c, &stream, &device));
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return rx_fail(RX_ERR_DEVICE, "NCCL: cudaSetDevice(%d): %s", device, cudaGetErrorString(e));
    ncclUniqueId id;
    if (w->rank == 0) NCCL_TRY(ncclGetUniqueId(&id));
    RX_TRY(rx_dist_broadcast(&id, sizeof id));
    rx_dist_in_collective = 1;   /* the init waits for every rank */
    ncclResult_t r = ncclCommInitRank(&comm, w->world, id, w->rank);
    rx_dist_in_collective = 0;
    if (r != ncclSuccess) return rx_fail(RX_ERR_DEVICE, "NCCL: ncclCommInitRank: %s", ncclGetErrorString(r));
    comm_open = 1;   /* from here rx_dist_nccl_close frees what exists */
    CUDA_TRY(cudaStreamCreateWithFlags(&comm_stream, cudaStreamNonBlocking));
    CUDA_TRY(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    CUDA_TRY(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    ((rx_dist *)w)->nccl = 1;
    return RX_OK;
}

void rx_dist_nccl_close(void) {
    if (!comm_open) return;
    ncclCommDestroy(comm);   /* at exit: these results change nothing */
    if (done) cudaEventDestroy(done);
    if (ready) cudaEventDestroy(ready);
    if (comm_stream) cudaStreamDestroy(comm_stream);
    done = ready = NULL, comm_stream = NULL;
    comm_open = 0;
    ((rx_dist *)rx_dist_world())->nccl = 0;
}

rx_status rx_dist_nccl_bucket_start(rx_ctx *c, rx_tensor *const *params, int n) {
    void *stream;
    int device;
    RX_TRY(rx_cuda_stream_device(c, &stream, &device));
    CUDA_TRY(cudaEventRecord(ready, (cudaStream_t)stream));   /* after the bucket's last gradient kernel */
    CUDA_TRY(cudaStreamWaitEvent(comm_stream, ready, 0));
    NCCL_TRY(ncclGroupStart());
    for (int i = 0; i < n; i++) {
        rx_tensor *g = params[i]->grad;
        ncclResult_t r = ncclAllReduce(g->data, g->data, (size_t)g->numel, ncclFloat, ncclAvg, comm, comm_stream);
        if (r != ncclSuccess) {
            ncclGroupEnd();
            return rx_fail(RX_ERR_DEVICE, "NCCL: ncclAllReduce of %s: %s", params[i]->name ? params[i]->name : "?",
                           ncclGetErrorString(r));
        }
    }
    NCCL_TRY(ncclGroupEnd());
    return RX_OK;
}

rx_status rx_dist_nccl_bucket_wait(rx_ctx *c) {
    void *stream;
    int device;
    RX_TRY(rx_cuda_stream_device(c, &stream, &device));
    CUDA_TRY(cudaEventRecord(done, comm_stream));
    CUDA_TRY(cudaStreamWaitEvent((cudaStream_t)stream, done, 0));   /* clip and AdamW read the means */
    /* the host waits for the device here, inside the caller's marked collective: a dead peer
     * shows up as this wait, not as a later kernel that never starts */
    CUDA_TRY(cudaStreamSynchronize((cudaStream_t)stream));
    return RX_OK;
}

#else

const char *rx_dist_nccl_version(void) { return NULL; }
rx_status rx_dist_nccl_open(rx_ctx *c) {
    if ((rx_dist_world()->world == 1 && !rx_dist_world()->force_nccl) || c->mem->device != RX_DEV_CUDA) return RX_OK;
    return rx_fail(RX_ERR_CONFIG, "NCCL is not compiled in: CUDA gradients go through MPI on the host");
}
void rx_dist_nccl_close(void) {}
rx_status rx_dist_nccl_bucket_start(rx_ctx *c, rx_tensor *const *params, int n) {
    (void)c, (void)params, (void)n;
    return rx_fail(RX_ERR_INTERNAL, "NCCL all-reduce in a build without NCCL");
}
rx_status rx_dist_nccl_bucket_wait(rx_ctx *c) {
    (void)c;
    return rx_fail(RX_ERR_INTERNAL, "NCCL all-reduce in a build without NCCL");
}

#endif
