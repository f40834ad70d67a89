/* test_progress.c — the ETA that training, sampling and evaluation print (runner/progress.h).
 * Reference: the formula eta = (total - done) * elapsed / done, worked by hand, and the format
 * "45s" / "1m23s" / "2h05m" / "3d04h" with rounding to the last unit shown; then the log of a
 * real run (tests/configs/runner/sweep.yaml, which trains, samples and evaluates). */
#include "testutil.h"
#include "runner/progress.h"
#include "runexp_harness.h"

TestSuite(progress, .init = setup, .fini = teardown, .timeout = 120);

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

/* every progress line of the three stages ends with an ETA (log.txt: stderr is not a tty) */
Test(progress, a_run_logs_an_eta_on_each_stage) {
    const char *root = own(strdup(T("results")));
    result c = RUNEXP("classifier", "tests/configs/runner/classifier.yaml", "--results", root, "--quiet");
    RUN_OK(c);
    result r = RUNEXP("run", "tests/configs/runner/sweep.yaml", "--results", root, "--quiet",
                      "--set", P("eval.features.weights=%s/checkpoints/last.safetensors", c.last));
    RUN_OK(r);
    char names[4][64];
    cr_assert_eq(list_runs(P("%s/tiny", root), names, 4), 3);   /* the first point trains */
    const char *log = read_text(P("%s/tiny/%s/log.txt", root, names[0]));
    const char *lines[] = {"train: step 6/6 ", "sample: 4/4 images", "eval: generated 8/8 images"};
    for (int i = 0; i < 3; i++) {
        const char *at = strstr(log, lines[i]);
        cr_assert_not_null(at, "no '%s' line in\n%s", lines[i], log);
        const char *eol = strchr(at, '\n'), *eta = strstr(at, " ETA 0s");   /* the last step or image: none left */
        cr_assert(eol && eta && eta < eol, "'%.*s' has no ETA 0s", eol ? (int)(eol - at) : 80, at);
    }
}
