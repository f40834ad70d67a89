/* dist_nccl.c — CUDA gradients over NCCL (RX_HAVE_NCCL: CUDA, MPI and nccl.h/libnccl.so found
 * at build time). Bootstrap as llm.c does: rank 0's ncclGetUniqueId goes to every rank over
 * MPI, then ncclCommInitRank on the device the local rank picked. The gradient mean is one NCCL
 * group of in-place ncclAvg all-reduces on the backend's own stream, so it is ordered after
 * the backward that wrote the gradients and before the optimizer that reads them; NCCL fuses
 * the group's small tensors into its own buffers (docs/distributed.md: the bucketed, overlapped
 * design for large models). Every NCCL and CUDA call is checked. */
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
    comm_open = 1;
    ((rx_dist *)w)->nccl = 1;
    return RX_OK;
}

void rx_dist_nccl_close(void) {
    if (!comm_open) return;
    ncclCommDestroy(comm);   /* at exit: its result changes nothing */
    comm_open = 0;
    ((rx_dist *)rx_dist_world())->nccl = 0;
}

rx_status rx_dist_nccl_grad_mean(rx_ctx *c, const rx_paramset *ps) {
    void *stream;
    int device;
    RX_TRY(rx_cuda_stream_device(c, &stream, &device));
    NCCL_TRY(ncclGroupStart());
    for (int i = 0; i < ps->n; i++) {
        rx_tensor *g = ps->t[i]->grad;
        if (!g) continue;
        ncclResult_t r = ncclAllReduce(g->data, g->data, (size_t)g->numel, ncclFloat, ncclAvg, comm, (cudaStream_t)stream);
        if (r != ncclSuccess) {
            ncclGroupEnd();
            return rx_fail(RX_ERR_DEVICE, "NCCL: ncclAllReduce of %s: %s", ps->t[i]->name ? ps->t[i]->name : "?", ncclGetErrorString(r));
        }
    }
    NCCL_TRY(ncclGroupEnd());
    /* the loss agreement after it is an MPI call on the host: wait for the device here so
     * that a dead peer shows up inside a marked collective, not in a later kernel */
    rx_dist_in_collective = 1;
    cudaError_t e = cudaStreamSynchronize((cudaStream_t)stream);
    rx_dist_in_collective = 0;
    if (e != cudaSuccess) return rx_fail(RX_ERR_DEVICE, "NCCL: cudaStreamSynchronize: %s", cudaGetErrorString(e));
    return RX_OK;
}

#else

const char *rx_dist_nccl_version(void) { return NULL; }
rx_status rx_dist_nccl_open(rx_ctx *c) {
    if ((rx_dist_world()->world == 1 && !rx_dist_world()->force_nccl) || c->mem->device != RX_DEV_CUDA) return RX_OK;
    return rx_fail(RX_ERR_CONFIG, "NCCL is not compiled in: CUDA gradients go through MPI on the host");
}
void rx_dist_nccl_close(void) {}
rx_status rx_dist_nccl_grad_mean(rx_ctx *c, const rx_paramset *ps) {
    (void)c, (void)ps;
    return rx_fail(RX_ERR_INTERNAL, "NCCL all-reduce in a build without NCCL");
}

#endif
