// graph.cu — CUDA graphs (issue 16 §5): what a context queues on its stream between
// rx_cuda_graph_begin and rx_cuda_graph_end is captured, not run; rx_cuda_graph_launch
// replays it with one launch. A replay reads and writes the same device addresses as the
// capture: the caller keeps every buffer the graph touches alive and in place, and changes
// only their contents between replays (inputs uploaded, the optimizer's per-step scalars
// set, outside the graph). Nothing captured may allocate or wait for the device: the CUDA
// runtime refuses that during capture (cudaErrorStreamCaptureUnsupported), and so does the
// emulator (tests/cuda/emu), so such a call fails the capture with its own message.
#include <cstdlib>
#include "kernels/cuda/cuda_common.h"

extern "C" {
#include "kernels/cuda/cuda_api.h"
}

struct rx_cuda_graph {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
};

extern "C" rx_status rx_cuda_graph_begin(rx_ctx *c) {
    // thread-local mode: other host threads (the data loader) may still call the runtime
    RX_CUDA_TRY(cudaStreamBeginCapture(rx_cuda(c)->stream, cudaStreamCaptureModeThreadLocal));
    return RX_OK;
}

extern "C" rx_status rx_cuda_graph_end(rx_ctx *c, rx_cuda_graph **out) {
    *out = nullptr;
    cudaGraph_t g = nullptr;
    // always ends the capture, also after a failed call inside it (then the capture is invalid)
    RX_CUDA_TRY(cudaStreamEndCapture(rx_cuda(c)->stream, &g));
    rx_cuda_graph *r = (rx_cuda_graph *)calloc(1, sizeof *r);
    if (!r) {
        cudaGraphDestroy(g);
        return rx_fail(RX_ERR_OOM, "cuda graph: out of host memory");
    }
    r->graph = g;
    cudaError_t e = cudaGraphInstantiate(&r->exec, g, 0);
    if (e != cudaSuccess) {
        cudaGetLastError();
        cudaGraphDestroy(g);
        free(r);
        return rx_fail(RX_ERR_DEVICE, "cuda graph: cudaGraphInstantiate: %s", cudaGetErrorString(e));
    }
    *out = r;
    return RX_OK;
}

extern "C" rx_status rx_cuda_graph_launch(rx_ctx *c, rx_cuda_graph *g) {
    if (!g) return rx_fail(RX_ERR_ARG, "cuda graph: launch of a NULL graph");
    RX_CUDA_TRY(cudaGraphLaunch(g->exec, rx_cuda(c)->stream));
    return RX_OK;
}

extern "C" void rx_cuda_graph_free(rx_cuda_graph *g) {
    if (!g) return;
    if (g->exec) cudaGraphExecDestroy(g->exec);
    if (g->graph) cudaGraphDestroy(g->graph);
    free(g);
}

extern "C" rx_status rx_cuda_dropout_step(rx_ctx *c, int on, uint64_t step) {
    rx_cuda_state *st = rx_cuda(c);
    st->dropout_step_on = 0;
    if (!on) return RX_OK;
    if (!st->dropout_step) {
        cudaError_t e = cudaMalloc((void **)&st->dropout_step, sizeof *st->dropout_step);
        if (e != cudaSuccess) {
            cudaGetLastError();
            st->dropout_step = nullptr;
            return rx_fail(RX_ERR_DEVICE, "cuda: dropout's step word: cudaMalloc: %s", cudaGetErrorString(e));
        }
    }
    const unsigned long long v = step;
    RX_TRY(rx_cuda_to_device(c, st->dropout_step, &v, sizeof v));
    st->dropout_step_on = 1;
    return RX_OK;
}

extern "C" uint64_t rx_cuda_scratch_moves(rx_ctx *c) { return rx_cuda(c)->scratch_moves; }
