/* test_io_plot.c — cairo line plots, and the same figure as SVG.
 *
 * References: the PNG decoder of io/png.c (read the plot back: size, colours),
 * and the nice-number definition (step in {1, 2, 5} x 10^k, ticks cover the data). */
#include "testutil.h"
#include "io/fsutil.h"
#include "io/plot.h"
#include "io/png.h"

#include <dirent.h>

static char tmpdir[256];
static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rx_test_plot_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}
static void remove_tmpdir(void) { rx_fs_remove_tree(tmpdir); }
TestSuite(plot, .init = make_tmpdir, .fini = remove_tmpdir);

#define ASSERT_OK(expr) do { rx_status s_ = (expr); cr_assert_eq(s_, RX_OK, "%s -> %s", #expr, rx_last_error()); } while (0)

/* Pixels within `tol` of colour (r, g, b) in a planar [3,H,W] image. */
static long count_colour(const uint8_t *px, int H, int W, int r, int g, int b, int tol) {
    long n = 0, plane = (long)H * W;
    for (long p = 0; p < plane; p++)
        if (abs(px[p] - r) <= tol && abs(px[plane + p] - g) <= tol && abs(px[2 * plane + p] - b) <= tol) n++;
    return n;
}

Test(plot, writes_a_valid_png_with_both_series) {
    double x[5] = {1, 2, 3, 5, 7.5}, fid[5] = {40.1, 31.5, 30.2, 33.0, 38.7}, is[5] = {5.1, 6.2, NAN, 6.8, 6.1};
    rx_plot_series s[2] = {{"fd_inception", x, fid, 5}, {"other", x, is, 5}};
    char path[512];
    snprintf(path, sizeof path, "%s/sweep.png", tmpdir);
    ASSERT_OK(rx_plot_lines(path, "guidance sweep", "guidance.scale", "metric", s, 2));

    uint8_t *px;
    int c, h, w;
    ASSERT_OK(rx_png_read(path, 3, &px, &c, &h, &w));
    cr_assert(h == RX_PLOT_HEIGHT && w == RX_PLOT_WIDTH, "%dx%d", w, h);
    long plane = (long)h * w;
    long white = count_colour(px, h, w, 255, 255, 255, 0);
    cr_assert(white > plane / 2 && white < plane, "background mostly white, not all: %ld of %ld", white, plane);
    /* Lines + markers in tab10 blue (31,119,180) and orange (255,127,14). */
    long blue = count_colour(px, h, w, 31, 119, 180, 12), orange = count_colour(px, h, w, 255, 127, 14, 12);
    cr_assert_gt(blue, 300, "first series drawn: %ld px", blue);
    cr_assert_gt(orange, 150, "second series drawn: %ld px", orange);
    cr_assert_gt(count_colour(px, h, w, 0, 0, 0, 40), 500, "axes and labels in black");
    free(px);

    /* No temp files next to it. */
    DIR *d = opendir(tmpdir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    cr_assert_eq(n, 1);
}

Test(plot, degenerate_inputs_still_plot) {
    char path[512];
    snprintf(path, sizeof path, "%s/one.png", tmpdir);
    double x[1] = {3}, y[1] = {0.25};
    rx_plot_series one = {NULL, x, y, 1};
    ASSERT_OK(rx_plot_lines(path, NULL, NULL, NULL, &one, 1));       /* one point, no labels */
    rx_plot_series empty = {"nothing", NULL, NULL, 0};
    ASSERT_OK(rx_plot_lines(path, "empty", "x", "y", &empty, 1));    /* empty axes */
    cr_assert_eq(rx_plot_lines(path, "t", "x", "y", &one, 0), RX_ERR_ARG);
    snprintf(path, sizeof path, "%s/missing/dir.png", tmpdir);
    cr_assert_eq(rx_plot_lines(path, "t", "x", "y", &one, 1), RX_ERR_IO);
}

Test(plot, nice_ticks) {
    double first, step;
    int n;
    rx_plot_nice_ticks(0, 7.5, 6, &first, &step, &n);
    cr_assert(first == 0 && step == 1 && n == 9, "%g %g %d", first, step, n);
    rx_plot_nice_ticks(0.013, 0.087, 6, &first, &step, &n);
    cr_assert(fabs(first - 0.01) < 1e-12 && fabs(step - 0.01) < 1e-12 && n == 9, "%g %g %d", first, step, n);
    rx_plot_nice_ticks(-340, 1210, 6, &first, &step, &n);
    cr_assert(first == -400 && step == 200 && n == 10, "%g %g %d", first, step, n);
    /* Properties over many ranges. */
    for (int i = 0; i < 2000; i++) {
        double lo = sin(i * 1.7) * pow(10, (i % 13) - 6), hi = lo + fabs(cos(i * 0.3)) * pow(10, (i % 11) - 5);
        rx_plot_nice_ticks(lo, hi, 6, &first, &step, &n);
        double m = step / pow(10, floor(log10(step)) + 1e-12);
        cr_assert(fabs(m - 1) < 1e-9 || fabs(m - 2) < 1e-9 || fabs(m - 5) < 1e-9, "step %g", step);
        cr_assert(first <= lo + 1e-9 * step && first + (n - 1) * step >= hi - 1e-9 * step, "[%g,%g]", lo, hi);
        cr_assert(n >= 2 && n <= 16, "%d ticks for [%g, %g]", n, lo, hi);
    }
}

/* The SVG figure places points where the PNG does. Reference: plot.c's layout (800x500, margins
 * left 80, right 24, top 48, bottom 64) and the nice ticks of [0, 1] (x: 0..1 by 0.1, y: 0..1
 * by 0.2), so (0, 0) is pixel (80, 436) and (1, 1) is (776, 48); a NaN breaks the line. */
Test(plot, svg_places_points_and_escapes_text) {
    const double x[] = {0, 0.5, 1}, y[] = {0, NAN, 1};
    rx_plot_series s[2] = {{"a<b", x, y, 3}, {NULL, x, y, 0}};
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    cr_assert_not_null(f);
    ASSERT_OK(rx_plot_lines_svg(f, "loss & lr", "step", "loss", s, 2));
    cr_assert_eq(fclose(f), 0);
    cr_assert(!strncmp(buf, "<svg ", 5) && strstr(buf, "</svg>\n"), "%s", buf);
    cr_assert(strstr(buf, " d=\"M80.0 436.0M776.0 48.0\""), "the line, broken at the NaN:\n%s", buf);
    cr_assert(strstr(buf, "<circle cx=\"80.0\" cy=\"436.0\"") && strstr(buf, "<circle cx=\"776.0\" cy=\"48.0\""));
    cr_assert(strstr(buf, "<title>loss &amp; lr</title>") && strstr(buf, ">a&lt;b</text>") && strstr(buf, ">series 1</text>"));
    cr_assert_null(strstr(buf, " id="), "no ids: many figures share one page");
    free(buf);
    cr_assert_eq(rx_plot_lines_svg(stdout, NULL, NULL, NULL, s, 0), RX_ERR_ARG, "no series: refused before writing");
}
