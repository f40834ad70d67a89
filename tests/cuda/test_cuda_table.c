/* test_cuda_table.c — every op in ops.def has a CUDA forward AND backward kernel, and the backend's
 * utilities are all there. Reference: the op list itself (rx_op_names); a missing kernel is a NULL
 * entry (cuda_common.h declares the kernels weak). Needs no GPU: it reads the table that
 * backend_cuda.cu builds, so it runs wherever the CUDA objects were compiled (skips otherwise). */
#include "testutil.h"
#include "kernels/backend.h"

extern rx_backend rx_cuda_backend_table __attribute__((weak));

Test(cuda_table, every_op_has_cuda_forward_and_backward) {
    if (!&rx_cuda_backend_table) cr_skip_test("this runexp was built without CUDA (no nvcc, or CUDA=0)");
    const rx_backend *be = &rx_cuda_backend_table;
    cr_expect_str_eq(be->name, "cuda");
    cr_expect_eq(be->mem.device, RX_DEV_CUDA);
    char missing[4096] = "";
    size_t k = 0;
    int n_missing = 0;
    for (int op = 0; op < RX_OP_COUNT; op++) {
        const char *what = !be->fwd[op] && !be->bwd[op] ? "fwd+bwd" : !be->fwd[op] ? "fwd" : !be->bwd[op] ? "bwd" : NULL;
        if (!what) continue;
        n_missing++;
        if (k < sizeof missing) k += snprintf(missing + k, sizeof missing - k, " %s(%s)", rx_op_names[op], what);
    }
    cr_expect_eq(n_missing, 0, "%d of %d ops lack a CUDA kernel:%s", n_missing, (int)RX_OP_COUNT, missing);
    cr_expect(be->mem.data_alloc.alloc && be->mem.data_alloc.free && be->mem.to_device && be->mem.to_host &&
                  be->mem.copy && be->mem.fill && be->axpy && be->sumsq && be->adamw && be->ema && be->adamw_multi && be->sync,
              "a memory primitive or utility is missing from the CUDA table");
}
