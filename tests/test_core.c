/* Core: Philox known answers, arenas, reshape view + autograd plumbing. */
#include "gradcheck.h"
#include "core/philox.h"
#include "core/arena.h"

/* Reference: Random123 kat_vectors, philox4x32 10 rounds (kat_vectors file of Random123 1.09). */
Test(philox, random123_known_answers) {
    struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        rx_philox4x32_10(kat[i].key, kat[i].ctr, out);
        for (int j = 0; j < 4; j++)
            cr_expect_eq(out[j], kat[i].out[j], "vector %zu word %d: %08x != %08x", i, j, out[j], kat[i].out[j]);
    }
}

/* Addressability: element j of a sequence does not depend on where the request starts. */
Test(philox, normals_are_addressable) {
    float a[37], b[20];
    rx_rng_normal(7, 3, 0, a, 37);
    rx_rng_normal(7, 3, 4, b, 20);   /* starts at block 4 = element 16 */
    for (int j = 0; j < 20; j++) cr_expect_eq(a[16 + j], b[j]);
    /* moments of many draws: mean 0, var 1 within 4 sigma of the sampling error */
    enum { N = 1 << 18 };
    float *z = malloc(N * sizeof(float));
    rx_rng_normal(11, 5, 0, z, N);
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) m += z[i];
    m /= N;
    for (int i = 0; i < N; i++) v += (z[i] - m) * (z[i] - m);
    v /= N;
    cr_expect(fabs(m) < 4 / sqrt(N), "mean %g", m);
    cr_expect(fabs(v - 1) < 4 * sqrt(2.0 / N), "var %g", v);
    free(z);
}

Test(arena, reuses_chunks_after_reset) {
    rx_arena *a;
    cr_assert_eq(rx_arena_create("t", 1 << 16, NULL, &a), RX_OK);
    for (int step = 0; step < 5; step++) {
        for (int k = 0; k < 10; k++) {
            char *p = rx_arena_data(a, 10000 + k * 1000);
            cr_assert(p);
            cr_assert_eq((uintptr_t)p % 64, 0);
            memset(p, 1, 10000);
        }
        rx_arena_reset(a);
        if (step == 0) cr_expect_gt(rx_arena_system_allocs(a), 0);
    }
    size_t after_first = rx_arena_system_allocs(a);
    for (int k = 0; k < 10; k++) rx_arena_data(a, 10000 + k * 1000);
    cr_expect_eq(rx_arena_system_allocs(a), after_first, "no new chunk once sized");
    rx_arena_destroy(a);
}

static rx_tensor *f_reshape(rx_ctx *c, rx_tensor **in, void *ud) {
    return rx_reshape(c, in[0], RX_SHAPE(3, -1));
}

Test(ops, reshape_view_and_grad) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *x = rx_param(c, "x", RX_SHAPE(2, 3, 4), 1);
    rx_test_randn(c, x, 1, 1.0f);
    rx_tensor *y = rx_reshape(c, x, RX_SHAPE(3, -1));
    cr_assert(y);
    cr_expect_eq(y->shape[1], 8);
    cr_expect_eq(y->data, x->data, "reshape shares data");
    rx_step_end(c);
    rx_gradcheck(c, f_reshape, NULL, 1, &x, 1e-2, 1e-3, 1e-3, 100);
    /* bad shape: a clear message naming the op and shapes */
    cr_expect_null(rx_reshape(c, x, RX_SHAPE(5, 5)));
    cr_expect(strstr(rx_last_error(), "reshape: x [2,3,4] has 24 elements"), "%s", rx_last_error());
    cr_expect_null(rx_reshape(c, x, RX_SHAPE(24)), "errors are sticky");
    rx_ctx_destroy(c);
}
