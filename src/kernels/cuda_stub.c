/* cuda_stub.c — the CUDA entry points when the CUDA backend is not compiled in. */
#include "cuda_backend.h"

#ifndef RX_HAVE_CUDA
rx_status rx_cuda_open(int device_id, int precision, int deterministic, const rx_backend **be, void **state,
                       const char **device_name) {
    return rx_fail(RX_ERR_DEVICE, "this runexp was built without CUDA (no nvcc at build time, or CUDA=0)");
}
rx_status rx_cuda_set_precision(void *state, int precision) {
    return rx_fail(RX_ERR_DEVICE, "this runexp was built without CUDA (no nvcc at build time, or CUDA=0)");
}
void rx_cuda_close(void *state) {}
int  rx_cuda_device_count(void) { return 0; }
#endif
