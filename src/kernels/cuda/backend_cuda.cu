// backend_cuda.cu — the CUDA backend's table: one forward and one backward kernel per op of
// ops.def (cuda/<family>.cu; declared weak in cuda_common.h, so a missing one is NULL and the
// op fails with "no forward kernel on backend cuda"), the memory (context.cu) and the
// optimizer utilities (util.cu). Entries are positional, in the order of backend.h's
// struct and of ops.def (C++ has no array designators); the X-macro keeps them in step.
#include "kernels/cuda/cuda_common.h"

extern "C" rx_backend rx_cuda_backend_table;
rx_backend rx_cuda_backend_table = {
    "cuda",
    {RX_DEV_CUDA, {rx_cuda_dev_alloc, rx_cuda_dev_free, nullptr}, rx_cuda_to_device, rx_cuda_to_host, rx_cuda_copy,
     rx_cuda_fill},
    {
#define OP(ID, name, family, reads) cuda_##name##_fwd,
#include "kernels/ops.def"
#undef OP
    },
    {
#define OP(ID, name, family, reads) cuda_##name##_bwd,
#include "kernels/ops.def"
#undef OP
    },
    rx_cuda_axpy,
    rx_cuda_sumsq,
    rx_cuda_adamw,
    rx_cuda_ema,
    rx_cuda_adamw_multi,
    rx_cuda_sync,
};

// the table is indexed by RX_OP_*: the X-macro lists must have exactly RX_OP_COUNT entries
#define OP(ID, name, family, reads) +1
static_assert(0
#include "kernels/ops.def"
              == RX_OP_COUNT, "ops.def and rx_op disagree");
#undef OP
