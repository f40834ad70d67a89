// backend_cuda.cu — the CUDA backend's table. Kernels are added per op family in
// cuda/<family>.cu; an op without a CUDA kernel fails with "no forward kernel on backend cuda".
#include "kernels/cuda/cuda_common.h"

extern "C" rx_backend rx_cuda_backend_table;
rx_backend rx_cuda_backend_table = {
    "cuda",
    RX_DEV_CUDA,
};
