/* test_progress.c — the ETA that training, sampling and evaluation print (runner/progress.h).
 * Reference: the formula eta = (total - done) * elapsed / done, worked by hand, and the format
 * "45s" / "1m23s" / "2h05m" / "3d04h" with rounding to the last unit shown. */
#include "testutil.h"
#include "runner/progress.h"

Test(progress, eta_is_the_work_left_at_the_measured_rate) {
    /* 30 of 120 steps in 45 s: 1.5 s a step, 90 steps left -> 135 s */
    cr_assert_float_eq(rx_eta_seconds(30, 120, 45), 135.0, 1e-9);
    /* 250 of 1000 images in 10 s -> 30 s */
    cr_assert_float_eq(rx_eta_seconds(250, 1000, 10), 30.0, 1e-9);
    cr_assert_float_eq(rx_eta_seconds(120, 120, 45), 0.0, 0);        /* done */
    cr_assert_float_eq(rx_eta_seconds(130, 120, 45), 0.0, 0);        /* past the end: never negative */
    cr_assert_float_eq(rx_eta_seconds(0, 120, 45), -1.0, 0);         /* no rate yet */
    cr_assert_float_eq(rx_eta_seconds(5, 120, 0), -1.0, 0);
    cr_assert_float_eq(rx_eta_seconds(NAN, 120, 3), -1.0, 0);
}

Test(progress, eta_format) {
    const struct { double s; const char *want; } cases[] = {
        {0, "0s"}, {0.4, "0s"}, {44.6, "45s"}, {59.4, "59s"}, {59.6, "1m00s"}, {83, "1m23s"},
        {3599.4, "59m59s"}, {3599.6, "1h00m"}, {7500, "2h05m"}, {86369, "23h59m"}, {86399, "1d00h"},
        {3 * 86400 + 4 * 3600, "3d04h"}, {-1, "?"}, {NAN, "?"}, {INFINITY, "?"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        cr_assert_str_eq(rx_eta_format(cases[i].s, buf, sizeof buf), cases[i].want, "%g s", cases[i].s);
    }
    char small[4];   /* truncated, still a string */
    cr_assert_str_eq(rx_eta_format(83, small, sizeof small), "1m2");
}
