/* test_ops_table.c — every op in ops.def has a CPU forward AND backward kernel.
 * Reference: the op list itself (kernels/ops.def through rx_op_names); a missing kernel is a
 * NULL entry in rx_backend_cpu()'s tables (cpu.h declares the kernels weak). The failure
 * message lists the missing ones by name. */
#include "testutil.h"
#include "kernels/backend.h"

Test(ops_table, every_op_has_cpu_forward_and_backward) {
    const rx_backend *be = rx_backend_cpu();
    char missing[4096] = "";
    size_t k = 0;
    int n_missing = 0;
    for (int op = 0; op < RX_OP_COUNT; op++) {
        const char *what = !be->fwd[op] && !be->bwd[op] ? "fwd+bwd" : !be->fwd[op] ? "fwd" : !be->bwd[op] ? "bwd" : NULL;
        if (!what) continue;
        n_missing++;
        if (k < sizeof missing) k += snprintf(missing + k, sizeof missing - k, " %s(%s)", rx_op_names[op], what);
    }
    cr_expect_eq(n_missing, 0, "%d of %d ops lack a CPU kernel:%s", n_missing, (int)RX_OP_COUNT, missing);
}

/* the names come from the same list, one per op, none empty or repeated */
Test(ops_table, op_names_are_complete_and_unique) {
    for (int op = 0; op < RX_OP_COUNT; op++) {
        cr_assert(rx_op_names[op] && rx_op_names[op][0], "op %d has no name", op);
        for (int o = 0; o < op; o++) cr_expect_str_neq(rx_op_names[op], rx_op_names[o]);
    }
}
