/* test_io_fsutil.c — atomic files, locks, run-directory allocation, `latest`, JSON files.
 *
 * References: POSIX semantics (directory listings, readlink) and counting: 8
 * concurrent allocators must get exactly the numbers 1..8; 8 concurrent appenders
 * must leave exactly their lines, each intact; 8 concurrent upserts of 8 keys must leave
 * one line per key, the last value each writer gave it. */
#include "testutil.h"
#include "io/fsutil.h"
#include "io/json_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];
static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rx_test_fs_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}
static void remove_tmpdir(void) { rx_fs_remove_tree(tmpdir); }
TestSuite(fsutil, .init = make_tmpdir, .fini = remove_tmpdir);

#define ASSERT_OK(expr) do { rx_status s_ = (expr); cr_assert_eq(s_, RX_OK, "%s -> %s", #expr, rx_last_error()); } while (0)

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* Names in dir (not . or ..), sorted, joined with ' '. */
static const char *listing(const char *dir) {
    static char out[4096];
    char names[64][256];
    int n = 0;
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && n < 64) snprintf(names[n++], 256, "%s", e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        strcat(out, i ? " " : "");
        strcat(out, names[i]);
    }
    return out;
}

Test(fsutil, mkdir_p) {
    ASSERT_OK(rx_fs_mkdir_p(tmp_path("a/b/c/")));
    cr_assert(rx_fs_is_dir(tmp_path("a/b/c")));
    ASSERT_OK(rx_fs_mkdir_p(tmp_path("a/b")));                  /* existing is fine */
    ASSERT_OK(rx_fs_write_atomic(tmp_path("a/file"), "x", 1));
    cr_assert_eq(rx_fs_mkdir_p(tmp_path("a/file/d")), RX_ERR_IO);
    cr_assert_eq(rx_fs_mkdir_p(tmp_path("a/file")), RX_ERR_IO);
    cr_assert(strstr(rx_last_error(), "not a directory"), "%s", rx_last_error());
}

Test(fsutil, atomic_write_replaces_and_leaves_no_temp_file) {
    const char *p = tmp_path("run.json");
    ASSERT_OK(rx_fs_write_atomic(p, "first", 5));
    ASSERT_OK(rx_fs_write_atomic(p, "second version", 14));
    char *text;
    size_t n;
    ASSERT_OK(rx_fs_read_file(p, &text, &n));
    cr_assert_eq(n, 14);
    cr_assert_str_eq(text, "second version");
    free(text);
    cr_assert_str_eq(listing(tmpdir), "run.json");
    /* umask-respecting mode, like fopen: not mkstemp's 0600. */
    struct stat st;
    mode_t mask = umask(022);
    umask(mask);
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0666 & ~mask);

    /* Aborted and failed writes leave nothing behind and keep the old file. */
    rx_atomic_file af;
    ASSERT_OK(rx_atomic_begin(p, &af));
    fputs("half-written", af.fp);
    rx_atomic_abort(&af);
    cr_assert_str_eq(listing(tmpdir), "run.json");
    ASSERT_OK(rx_fs_read_file(p, &text, &n));
    cr_assert_str_eq(text, "second version");
    free(text);
    cr_assert_eq(rx_fs_write_atomic(tmp_path("nodir/x"), "x", 1), RX_ERR_IO);
    cr_assert(strstr(rx_last_error(), "nodir/x"), "%s", rx_last_error());
    cr_assert_str_eq(listing(tmpdir), "run.json");
    cr_assert_eq(rx_fs_read_file(tmp_path("nope"), &text, &n), RX_ERR_IO);
}

/* Fork `n` children that wait on a pipe until the parent closes it, so they all
 * start at once, then run `body(i)`; returns each child's exit status in codes[]. */
static void run_concurrently(int n, int (*body)(int), int *codes) {
    int gate[2];
    cr_assert_eq(pipe(gate), 0);
    pid_t pids[16];
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        cr_assert_geq(pids[i], 0);
        if (pids[i] == 0) {
            close(gate[1]);
            char c;
            while (read(gate[0], &c, 1) > 0) {}
            _exit(body(i));
        }
    }
    close(gate[0]);
    close(gate[1]);   /* go */
    for (int i = 0; i < n; i++) {
        int st;
        cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
        cr_assert(WIFEXITED(st), "child %d crashed", i);
        codes[i] = WEXITSTATUS(st);
    }
}

static const char *alloc_parent;
static int alloc_same_tag;
static int alloc_child(int i) {
    char tag[16], out[512];
    snprintf(tag, sizeof tag, alloc_same_tag ? "3fa2c1d0" : "hash%04d", i);
    int num = -1;
    if (rx_fs_alloc_run_dir(alloc_parent, tag, out, sizeof out, &num) != RX_OK) return 200;
    char want[512];
    snprintf(want, sizeof want, "%s/%04d-%s", alloc_parent, num, tag);
    if (strcmp(out, want) || !rx_fs_is_dir(out)) return 201;
    return num;
}

static void check_concurrent_alloc(const char *parent, int same_tag) {
    alloc_parent = parent;       /* the parent directory does not exist yet: allocators create it */
    alloc_same_tag = same_tag;
    int codes[8];
    run_concurrently(8, alloc_child, codes);
    int seen[9] = {0};
    for (int i = 0; i < 8; i++) {
        cr_assert(codes[i] >= 1 && codes[i] <= 8, "child %d: code %d (%s)", i, codes[i],
                  codes[i] == 200 ? "allocation failed" : "wrong path");
        cr_assert_eq(seen[codes[i]]++, 0, "number %d handed out twice", codes[i]);
    }
    /* The directory holds exactly 0001-... to 0008-... (plus the lock file). */
    DIR *d = opendir(parent);
    int dirs = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        int num = atoi(e->d_name);
        cr_assert(num >= 1 && num <= 8 && e->d_name[4] == '-', "unexpected entry %s", e->d_name);
        dirs++;
    }
    closedir(d);
    cr_assert_eq(dirs, 8);
}

Test(fsutil, concurrent_run_dir_allocation_distinct_tags) {
    check_concurrent_alloc(tmp_path("results/exp"), 0);
}

Test(fsutil, concurrent_run_dir_allocation_same_tag) {
    check_concurrent_alloc(tmp_path("results/exp2"), 1);
}

Test(fsutil, run_dir_numbers_continue_after_existing) {
    ASSERT_OK(rx_fs_mkdir_p(tmp_path("exp/0041-deadbeef")));
    ASSERT_OK(rx_fs_mkdir_p(tmp_path("exp/sweep-0001")));     /* not a run number */
    ASSERT_OK(rx_fs_write_atomic(tmp_path("exp/index.csv"), "id\n", 3));
    char out[512];
    int num;
    ASSERT_OK(rx_fs_alloc_run_dir(tmp_path("exp"), "cafef00d", out, sizeof out, &num));
    cr_assert_eq(num, 42);
    cr_assert_str_eq(out, tmp_path("exp/0042-cafef00d"));
    cr_assert_eq(rx_fs_alloc_run_dir(tmp_path("exp"), "a/b", out, sizeof out, &num), RX_ERR_ARG);
    char small[8];
    cr_assert_eq(rx_fs_alloc_run_dir(tmp_path("exp"), "cafef00d", small, sizeof small, &num), RX_ERR_ARG);
}

static const char *append_path;
static int append_child(int i) {
    char line[128];
    for (int k = 0; k < 50; k++) {
        snprintf(line, sizeof line, "%d,%d,%s", i, k, "0123456789abcdef0123456789abcdef");
        if (rx_fs_append_locked(append_path, "writer,line,payload", line) != RX_OK) return 1;
    }
    return 0;
}

Test(fsutil, concurrent_locked_appends_keep_lines_whole) {
    append_path = tmp_path("index.csv");
    int codes[8];
    run_concurrently(8, append_child, codes);
    for (int i = 0; i < 8; i++) cr_assert_eq(codes[i], 0);
    char *text;
    size_t n;
    ASSERT_OK(rx_fs_read_file(append_path, &text, &n));
    int count[8][50] = {{0}}, lines = 0;
    char *save = NULL;
    char *ln = strtok_r(text, "\n", &save);
    cr_assert_str_eq(ln, "writer,line,payload", "header first, once");
    while ((ln = strtok_r(NULL, "\n", &save))) {
        int w, k;
        char payload[64];
        cr_assert_eq(sscanf(ln, "%d,%d,%63s", &w, &k, payload), 3, "torn line: %s", ln);
        cr_assert(w >= 0 && w < 8 && k >= 0 && k < 50);
        cr_assert_str_eq(payload, "0123456789abcdef0123456789abcdef");
        count[w][k]++;
        lines++;
    }
    cr_assert_eq(lines, 400);
    for (int w = 0; w < 8; w++)
        for (int k = 0; k < 50; k++) cr_assert_eq(count[w][k], 1);
    free(text);
}

Test(fsutil, lock_is_exclusive_across_processes) {
    const char *lp = tmp_path("x.lock");
    int fd;
    ASSERT_OK(rx_fs_lock(lp, &fd));
    pid_t pid = fork();
    if (pid == 0) {   /* a second process must not get the lock while we hold it */
        int fd2 = open(lp, O_RDWR);
        _exit(flock(fd2, LOCK_EX | LOCK_NB) == 0 ? 1 : 0);
    }
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "lock was not exclusive");
    rx_fs_unlock(fd);
    pid = fork();
    if (pid == 0) {
        int fd2 = open(lp, O_RDWR);
        _exit(flock(fd2, LOCK_EX | LOCK_NB) == 0 ? 0 : 1);
    }
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "lock not released");
}

Test(fsutil, trylock_refuses_at_once_while_another_process_holds_it) {
    const char *lp = tmp_path(".lock");
    int fd, busy = -1;
    ASSERT_OK(rx_fs_trylock(lp, &fd, &busy));
    cr_assert_eq(busy, 0);
    pid_t pid = fork();
    if (pid == 0) {   /* flock locks belong to the open file: another process's open is refused */
        int fd2, busy2 = 0;
        rx_status s = rx_fs_trylock(lp, &fd2, &busy2);
        _exit(s == RX_ERR_IO && busy2 == 1 && fd2 == -1 ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "trylock of a held lock did not report busy");
    rx_fs_unlock(fd);
    pid = fork();
    if (pid == 0) {
        int fd2, busy2 = 1;
        _exit(rx_fs_trylock(lp, &fd2, &busy2) == RX_OK && busy2 == 0 ? 0 : 1);
    }
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "trylock after unlock failed");
    cr_assert_eq(rx_fs_trylock(tmp_path("nodir/.lock"), &fd, &busy), RX_ERR_IO);
    cr_assert_eq(busy, 0);
}

Test(fsutil, stale_atomic_temps_removed_and_nothing_else) {
    /* a temp file named by rx_atomic_begin itself, as a writer killed before commit leaves it */
    rx_atomic_file af;
    ASSERT_OK(rx_atomic_begin(tmp_path("last.safetensors"), &af));
    fputs("half-written", af.fp);
    fflush(af.fp);
    char *stale = strdup(af.tmp_path);
    fclose(af.fp);   /* no commit, no abort: the temp file stays, as after SIGKILL */
    free(af.path);
    free(af.tmp_path);
    /* look-alikes that are not the helper's temp files, and real files, stay */
    const char *keep[] = {"last.safetensors", "notes.tmp", ".notes.tmp", ".x.tmp.12.3.zz", "x.tmp.1.2.3",
                          ".x.tmp.1.2.3.keep", ".tmp.1.2.3"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) ASSERT_OK(rx_fs_write_atomic(tmp_path(keep[i]), "k", 1));
    ASSERT_OK(rx_fs_write_atomic(tmp_path(".metrics.jsonl.tmp.77.0.1f"), "old", 3));
    cr_assert(rx_fs_exists(stale));
    int removed = -1;
    ASSERT_OK(rx_fs_remove_atomic_temps(tmpdir, &removed));
    cr_assert_eq(removed, 2);
    cr_assert(!rx_fs_exists(stale), "%s not removed", stale);
    cr_assert_str_eq(listing(tmpdir), ".notes.tmp .tmp.1.2.3 .x.tmp.1.2.3.keep .x.tmp.12.3.zz last.safetensors notes.tmp x.tmp.1.2.3");
    ASSERT_OK(rx_fs_remove_atomic_temps(tmp_path("missing"), &removed));   /* no directory: nothing to do */
    cr_assert_eq(removed, 0);
    free(stale);
}

static const char *upsert_path;
static int upsert_child(int i) {
    char key[16], line[128];
    for (int k = 0; k < 20; k++) {   /* each writer rewrites its own row 20 times */
        snprintf(key, sizeof key, "run%d", i);
        snprintf(line, sizeof line, "%s,%s,%d", key, k < 19 ? "running" : "done", k);
        if (rx_fs_upsert_line_locked(upsert_path, "id,status,n", key, line) != RX_OK) return 1;
    }
    return 0;
}

Test(fsutil, upsert_line_keeps_one_row_per_key) {
    const char *p = tmp_path("index.csv");
    ASSERT_OK(rx_fs_upsert_line_locked(p, "id,status,metrics", "0001-ab", "0001-ab,interrupted,"));
    ASSERT_OK(rx_fs_upsert_line_locked(p, "id,status,metrics", "0002-cd", "0002-cd,done,fd=3"));
    ASSERT_OK(rx_fs_upsert_line_locked(p, "id,status,metrics", "0001-ab", "0001-ab,done,fd=2\n"));
    char *text;
    ASSERT_OK(rx_fs_read_file(p, &text, NULL));
    cr_assert_str_eq(text, "id,status,metrics\n0001-ab,done,fd=2\n0002-cd,done,fd=3\n");
    free(text);
    /* a file with two rows for a key (appended by an older runexp) and a torn last line */
    const char *old = "id,status,metrics\n0001-ab,interrupted,\n0001-ab,done,\n0003-ef,fail";
    ASSERT_OK(rx_fs_write_atomic(p, old, strlen(old)));
    ASSERT_OK(rx_fs_upsert_line_locked(p, "id,status,metrics", "0001-ab", "0001-ab,done,x=1"));
    ASSERT_OK(rx_fs_read_file(p, &text, NULL));
    cr_assert_str_eq(text, "id,status,metrics\n0001-ab,done,x=1\n0003-ef,fail\n");
    free(text);
    cr_assert_str_eq(listing(tmpdir), ".index.csv.lock index.csv", "temp files left");

    /* 8 processes at once: no row lost, none doubled */
    upsert_path = tmp_path("many.csv");
    int codes[8];
    run_concurrently(8, upsert_child, codes);
    for (int i = 0; i < 8; i++) cr_assert_eq(codes[i], 0);
    ASSERT_OK(rx_fs_read_file(upsert_path, &text, NULL));
    int seen[8] = {0}, lines = 0;
    char *save = NULL;
    char *ln = strtok_r(text, "\n", &save);
    cr_assert_str_eq(ln, "id,status,n");
    while ((ln = strtok_r(NULL, "\n", &save))) {
        int w, k;
        char st[16];
        cr_assert_eq(sscanf(ln, "run%d,%15[^,],%d", &w, st, &k), 3, "bad line: %s", ln);
        cr_assert(w >= 0 && w < 8);
        cr_assert_str_eq(st, "done");
        cr_assert_eq(k, 19);
        seen[w]++;
        lines++;
    }
    cr_assert_eq(lines, 8);
    for (int w = 0; w < 8; w++) cr_assert_eq(seen[w], 1, "run%d has %d rows", w, seen[w]);
    free(text);
}

Test(fsutil, latest_symlink_replaced_atomically) {
    ASSERT_OK(rx_fs_mkdir_p(tmp_path("exp/0001-aaaa")));
    ASSERT_OK(rx_fs_mkdir_p(tmp_path("exp/0002-bbbb")));
    const char *link = tmp_path("exp/latest");
    char buf[256];
    ASSERT_OK(rx_fs_symlink_replace("0001-aaaa", link));
    ssize_t n = readlink(link, buf, sizeof buf - 1);
    cr_assert_gt(n, 0);
    buf[n] = 0;
    cr_assert_str_eq(buf, "0001-aaaa");
    ASSERT_OK(rx_fs_symlink_replace("0002-bbbb", link));
    n = readlink(link, buf, sizeof buf - 1);
    buf[n] = 0;
    cr_assert_str_eq(buf, "0002-bbbb");
    cr_assert(rx_fs_is_dir(link), "the link resolves to the run directory");
    cr_assert_str_eq(listing(tmp_path("exp")), "0001-aaaa 0002-bbbb latest");
    /* A real file or directory named latest is not ours to replace. */
    ASSERT_OK(rx_fs_mkdir_p(tmp_path("exp2/latest")));
    cr_assert_eq(rx_fs_symlink_replace("x", tmp_path("exp2/latest")), RX_ERR_IO);
    cr_assert_str_eq(listing(tmp_path("exp2")), "latest");
}

Test(fsutil, remove_tree_does_not_follow_symlinks) {
    ASSERT_OK(rx_fs_mkdir_p(tmp_path("keep")));
    ASSERT_OK(rx_fs_write_atomic(tmp_path("keep/precious"), "x", 1));
    ASSERT_OK(rx_fs_mkdir_p(tmp_path("t/a/b")));
    ASSERT_OK(rx_fs_write_atomic(tmp_path("t/a/b/f"), "x", 1));
    cr_assert_eq(symlink(tmp_path("keep"), tmp_path("t/a/link")), 0);
    ASSERT_OK(rx_fs_remove_tree(tmp_path("t")));
    cr_assert(!rx_fs_exists(tmp_path("t")));
    cr_assert(rx_fs_exists(tmp_path("keep/precious")));
    ASSERT_OK(rx_fs_remove_tree(tmp_path("t")));      /* missing: fine */
    cr_assert_eq(rx_fs_remove_tree("/"), RX_ERR_ARG);
    cr_assert_eq(rx_fs_remove_tree(""), RX_ERR_ARG);
}

Test(fsutil, json_files) {
    json_t *o = json_pack("{s:s, s:i, s:f}", "status", "done", "step", 100, "loss", 0.25);
    ASSERT_OK(rx_json_write_atomic(tmp_path("run.json"), o));
    json_t *back;
    ASSERT_OK(rx_json_load_file(tmp_path("run.json"), &back));
    cr_assert(json_equal(o, back));
    json_decref(back);
    char *text;
    size_t n;
    ASSERT_OK(rx_fs_read_file(tmp_path("run.json"), &text, &n));
    cr_assert_eq(text[n - 1], '\n');
    cr_assert(strstr(text, "\n  \"status\": \"done\""), "indented, key order kept: %s", text);
    free(text);

    ASSERT_OK(rx_json_append_line(tmp_path("metrics.jsonl"), o));
    ASSERT_OK(rx_json_append_line(tmp_path("metrics.jsonl"), o));
    ASSERT_OK(rx_fs_read_file(tmp_path("metrics.jsonl"), &text, &n));
    cr_assert_str_eq(text, "{\"status\":\"done\",\"step\":100,\"loss\":0.25}\n"
                           "{\"status\":\"done\",\"step\":100,\"loss\":0.25}\n");
    free(text);
    json_decref(o);

    ASSERT_OK(rx_fs_write_atomic(tmp_path("bad.json"), "{\n  \"a\": 1,\n  \"b\" 2\n}\n", 22));
    cr_assert_eq(rx_json_load_file(tmp_path("bad.json"), &back), RX_ERR_FORMAT);
    cr_assert(strstr(rx_last_error(), "bad.json:3:"), "names file:line: %s", rx_last_error());
    cr_assert_eq(rx_json_load_file(tmp_path("none.json"), &back), RX_ERR_IO);
}
