/* st_corrupt.h — a safetensors file corrupted on purpose, for the tests of the checksum
 * refusal (test_io_safetensors, test_runner). Include after the test's ASSERT_OK. */
#ifndef RX_TEST_ST_CORRUPT_H
#define RX_TEST_ST_CORRUPT_H

#include "testutil.h"
#include "io/fsutil.h"
#include "io/safetensors.h"

/* A copy of the file at `from` with byte `k` of tensor `name`'s data XORed with `bits`,
 * written to `to` (which may be `from`). Offsets come from opening the intact file. */
static inline void rx_test_flip_tensor_byte(const char *from, const char *to, const char *name, uint64_t k, uint8_t bits) {
    rx_st_file *f = NULL;
    ASSERT_OK(rx_st_open(from, &f));
    const rx_st_tensor *t = rx_st_find(f, name);
    cr_assert_not_null(t, "%s: no tensor %s", from, name);
    cr_assert_lt(k, t->end - t->begin);
    const uint8_t *data0 = (const uint8_t *)rx_st_data(f, rx_st_tensor_at(f, 0));   /* starts the data section */
    const uint64_t at = (uint64_t)((const uint8_t *)rx_st_data(f, t) - data0) + k;
    rx_st_close(f);
    long len = 0;
    uint8_t *buf = rx_test_read_file(from, &len);
    cr_assert_not_null(buf);
    uint64_t hlen = 0;   /* the header's length: the file's first 8 bytes, little-endian */
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    buf[8 + hlen + at] ^= bits;
    ASSERT_OK(rx_fs_write_atomic(to, buf, (size_t)len));
    free(buf);
}

#endif
