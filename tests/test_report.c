/* test_report.c — `runexp report` (issue 21, part 3) on real runs of the runner's tiny
 * experiments (tests/configs/runner/: a 3-point guidance sweep that trains once, plus a run
 * with another learning rate), under --results in a temporary directory. References:
 *   - the runs' own files: every run of index.csv / summary.csv has its row, the keys that
 *     differ are those the runs were given (--set optimizer.lr, the sweep's guidance.scale),
 *     a key they share is not shown, each embedded image decodes to the run's samples/grid.png
 *     byte for byte (RFC 4648 base64, decoded here by hand);
 *   - the page's contract: one <svg> per training quantity and per swept metric, nothing
 *     fetched (no http:// or https://, no src= other than data:), no <script>, text escaped;
 *   - a browser: headless Chromium renders the page to a PNG that is not blank and logs no
 *     console message, each check first shown to fail on a page that must fail it (a blank
 *     page; a page with a script error). Skipped when `chromium` is not installed
 *     (make deps-report installs it). */
#include "testutil.h"
#include "io/fsutil.h"
#include "io/png.h"
#include "io/plot.h"

#define CFG_DIR "tests/configs/runner/"

#include "runexp_harness.h"

TestSuite(report, .init = setup, .fini = teardown, .timeout = 240);

/* the runs: a classifier (the sweep's feature network), the sweep, one more tiny run */
static const char *make_runs(const char *root) {
    result c = RUNEXP("classifier", CFG_DIR "classifier.yaml", "--results", root, "--quiet");
    RUN_OK(c);
    const char *weights = P("eval.features.weights=%s/checkpoints/last.safetensors", c.last);
    result s = RUNEXP("sweep", CFG_DIR "sweep.yaml", "--results", root, "--quiet", "--set", weights);
    RUN_OK(s);
    result t = RUNEXP("tiny", CFG_DIR "tiny.yaml", "--results", root, "--quiet", "--set", "optimizer.lr=3e-3");
    RUN_OK(t);
    return own(strdup(s.last));
}

/* report DIR: exit 0, last line DIR/report.html, which exists; its text */
static const char *report_of(const char *dir) {
    result r = RUNEXP("report", "report", dir);
    cr_assert_eq(r.code, 0, "runexp report %s exited %d:\n%s", dir, r.code, r.err);
    cr_assert_str_eq(r.last, P("%s/report.html", dir));
    const char *html = read_text(r.last);
    cr_assert_not_null(html);
    return html;
}

static int b64_value(char c) {
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = c ? strchr(alphabet, c) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

/* RFC 4648 base64 of src[0..n) ('=' padded) -> malloc'd bytes */
static unsigned char *b64_decode(const char *src, size_t n, size_t *out_len) {
    unsigned char *out = own(malloc(n / 4 * 3 + 3));
    size_t k = 0;
    cr_assert_eq(n % 4, 0, "base64 length %zu", n);
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int j = 0; j < 4; j++) v[j] = src[i + j] == '=' ? 0 : b64_value(src[i + j]);
        cr_assert(v[0] >= 0 && v[1] >= 0 && v[2] >= 0 && v[3] >= 0, "not base64 at %zu", i);
        unsigned w = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        out[k++] = w >> 16;
        if (src[i + 2] != '=') out[k++] = (w >> 8) & 255;
        if (src[i + 3] != '=') out[k++] = w & 255;
    }
    *out_len = k;
    return out;
}

/* the image embedded after alt="samples of <id>" is that run's samples/grid.png */
static void assert_grid_embedded(const char *html, const char *run_dir, const char *id) {
    const char *at = strstr(html, P("alt=\"samples of %s\" src=\"data:image/png;base64,", id));
    cr_assert_not_null(at, "no embedded grid for %s", id);
    at = strstr(at, "base64,") + 7;
    size_t n = strcspn(at, "\""), len = 0;
    const unsigned char *png = b64_decode(at, n, &len);
    long want_len = 0;
    void *want = own(rx_test_read_file(P("%s/samples/grid.png", run_dir), &want_len));
    cr_assert_not_null(want);
    cr_assert(len == (size_t)want_len && !memcmp(png, want, len), "%s: embedded image differs from samples/grid.png", id);
}

/* nothing the page would fetch or run */
static void assert_self_contained(const char *html) {
    cr_assert_null(strstr(html, "http://"), "the page names an http:// address");
    cr_assert_null(strstr(html, "https://"), "the page names an https:// address");
    cr_assert_null(strstr(html, "<script"), "the page has a script");
    for (const char *p = strstr(html, "src=\""); p; p = strstr(p + 1, "src=\""))
        cr_assert(!strncmp(p + 5, "data:", 5), "a src that is not data: %.40s", p);
    cr_assert(!strncmp(html, "<!DOCTYPE html>", 15));
    cr_assert(strstr(html, "</html>\n"), "the page ends with </html>");
}

static int count_runs(const char *html) { return count_substr(html, "<td class=\"run\">"); }

Test(report, experiment_directory) {
    const char *root = own(strdup(T("results")));
    make_runs(root);
    const char *exp = own(strdup(P("%s/tiny", root)));
    const char *html = report_of(exp);
    char names[8][64];
    cr_assert_eq(list_runs(exp, names, 8), 4);
    cr_assert_eq(count_runs(html), 4, "one row per run of index.csv");
    for (int i = 0; i < 4; i++) {
        cr_assert(strstr(html, P("<td class=\"run\">%s</td>", names[i])), "no row for %s", names[i]);
        cr_assert(strstr(html, P("<td class=\"hash\">%s</td>", run_field(P("%s/%s", exp, names[i]), "config_hash"))));
        assert_grid_embedded(html, P("%s/%s", exp, names[i]), names[i]);
    }
    /* the keys the runs were given differently are columns; a shared one is not */
    cr_assert(strstr(html, "<th class=\"key\">optimizer.lr</th>"));
    cr_assert(strstr(html, "<th class=\"key\">guidance.scale</th>"));
    cr_assert_null(strstr(html, "<th class=\"key\">model.sample_size</th>"));
    cr_assert_null(strstr(html, "<th class=\"key\">seed</th>"));
    cr_assert(strstr(html, "<td>0.003</td>") || strstr(html, "<td>3e-3</td>") || strstr(html, "<td>3.0e-3</td>"),
              "the tiny run's optimizer.lr");
    cr_assert(strstr(html, "<th class=\"metric\">fd_last</th>"));
    /* loss, lr, grad_norm: two trainings each (the sweep trained once, the lr run once) */
    cr_assert_eq(count_substr(html, "<svg"), 3);
    cr_assert(strstr(html, "<title>loss</title>") && strstr(html, "<title>lr</title>") && strstr(html, "<title>grad_norm</title>"));
    cr_assert_eq(count_substr(html, "reused from "), 2, "two sweep points reuse the first one's training");
    assert_self_contained(html);
}

Test(report, sweep_directory) {
    const char *root = own(strdup(T("results")));
    const char *sweep = make_runs(root);
    const char *html = report_of(sweep);
    cr_assert_eq(count_runs(html), 3, "one row per sweep point (summary.csv), not the other run");
    cr_assert(strstr(html, "<th class=\"key\">guidance.scale</th>"));
    cr_assert_null(strstr(html, "<th class=\"key\">optimizer.lr</th>"), "the sweep's points share their lr");
    for (int g = 1; g <= 3; g++) cr_assert(strstr(html, P("<br>guidance.scale = %d.0</figcaption>", g)) ||
                                           strstr(html, P("<br>guidance.scale = %d</figcaption>", g)), "guidance %d", g);
    /* 3 training curves (one run trained) + fd_last against the axis */
    cr_assert_eq(count_substr(html, "<svg"), 4);
    cr_assert(strstr(html, "<title>fd_last vs guidance.scale</title>"));
    cr_assert_eq(count_substr(html, "data:image/png;base64,"), 3);
    assert_self_contained(html);
    /* a second report replaces the first (atomically: no temp file left) */
    report_of(sweep);
    int temps = 0;
    ASSERT_OK(rx_fs_remove_atomic_temps(sweep, &temps));
    cr_assert_eq(temps, 0);
}

Test(report, not_a_result_directory_exits_2) {
    mkdir(T("empty"), 0777);
    result r = RUNEXP("report", "report", T("empty"));
    cr_assert_eq(r.code, 2, "%s", r.err);
    cr_assert(strstr(r.err, "not an experiment directory"), "%s", r.err);
    cr_assert(!rx_fs_exists(T("empty/report.html")));
    result u = RUNEXP("usage", "report");
    cr_assert_eq(u.code, 2);
}

/* reference: the five characters XML escapes, and text around them left alone */
Test(report, text_is_escaped) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    cr_assert_not_null(f);
    rx_xml_text(f, "a<b>&\"c\"'d' é");
    rx_xml_text(f, NULL);
    cr_assert_eq(fclose(f), 0);
    own(buf);
    cr_assert_str_eq(buf, "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39; é");
}

/* ---- the browser check ------------------------------------------------------------------ */

static const char *find_chromium(void) {
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        const char *bin = P("%s/chromium", d);
        if (access(bin, X_OK) == 0) return own(strdup(bin));
    }
    return NULL;
}

/* headless Chromium renders file://page to shot (1280x2000); its stderr (console messages
 * appear as ":CONSOLE" lines with --enable-logging=stderr) */
static const char *render(const char *chromium, const char *page, const char *shot, const char *tag) {
    const char *argv[] = {chromium, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                          P("--user-data-dir=%s", T("chromium-profile")), "--enable-logging=stderr", "--v=0",
                          P("--screenshot=%s", shot), "--window-size=1280,2000", P("file://%s", page), NULL};
    pid_t pid = spawn_program(chromium, argv, tag);
    int code = wait_exit(pid);
    const char *err = read_text(T("%s.err", tag));
    cr_assert_eq(code, 0, "chromium exited %d:\n%s", code, err);
    return err;
}

/* the share of pixels of the screenshot that are not near-white, and their luma variance */
static double ink_share(const char *png, double *variance) {
    uint8_t *px = NULL;
    int C, H, W;
    ASSERT_OK(rx_png_read(png, 1, &px, &C, &H, &W));
    own(px);
    cr_assert(W == 1280 && H == 2000, "screenshot %dx%d", W, H);
    double sum = 0, sum2 = 0;
    long ink = 0, n = (long)H * W;
    for (long i = 0; i < n; i++) { sum += px[i]; sum2 += (double)px[i] * px[i]; ink += px[i] < 230; }
    *variance = sum2 / n - (sum / n) * (sum / n);
    return (double)ink / n;
}

Test(report, renders_in_headless_chromium) {
    const char *chromium = find_chromium();
    if (!chromium) cr_skip_test("chromium is not installed (make deps-report, or apt-get install chromium)");
    const char *root = own(strdup(T("results")));
    const char *sweep = make_runs(root);
    report_of(sweep);
    double var;
    /* the checks fail where they must: a blank page, a page with a script error */
    FILE *f = fopen(T("bad.html"), "w");
    cr_assert_not_null(f);
    fputs("<!DOCTYPE html><html><body><script>no_such_function();</script></body></html>\n", f);
    cr_assert_eq(fclose(f), 0);
    const char *bad_err = render(chromium, T("bad.html"), T("bad.png"), "chromium-bad");
    cr_assert(strstr(bad_err, ":CONSOLE") && strstr(bad_err, "Uncaught"), "a script error was not seen:\n%s", bad_err);
    cr_assert_lt(ink_share(T("bad.png"), &var), 0.001, "a blank page is not blank");
    /* the report */
    const char *err = render(chromium, P("%s/report.html", sweep), T("shot.png"), "chromium");
    cr_assert_null(strstr(err, ":CONSOLE"), "the page logged to the console:\n%s", err);
    double ink = ink_share(T("shot.png"), &var);
    cr_assert_gt(ink, 0.02, "the screenshot is nearly blank (%.4f of pixels not white)", ink);
    cr_assert_gt(var, 100, "luma variance %.1f", var);
}
