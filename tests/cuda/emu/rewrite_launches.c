/* rewrite_launches.c — copies src/kernels/cuda/{*.cu,*.h} into OUT_DIR/kernels/cuda/ (.cu -> .cpp),
 * rewriting every kernel launch
 *     name<<<grid, block, shmem, stream>>>(args);
 * into the emulator's
 *     rx_emu_launch_args(dim3(grid), dim3(block), shmem, stream, fibers, [](auto... a_) { name(a_...); }, args);
 * fibers = 1 when the kernel's body waits at barriers or shuffles, directly or through the
 * __device__ functions it calls (its threads must run as cooperative fibers), 0 when each
 * thread can run to completion in turn (much faster). tests/cuda/emu/README.md.
 *
 *     rewrite_launches SRC_DIR OUT_DIR
 *
 * C, so that `make test` needs no interpreter; the parsing is bracket matching, as the CUDA
 * sources here hold no brackets inside strings or comments that would confuse it. */
#define _POSIX_C_SOURCE 200809L   /* strdup */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILES 64
#define MAX_FUNCS 1024

static const char *const barrier_calls[] = {"__syncthreads", "__shfl", "rx_block_sum", "rx_block_max",
                                            "rx_warp_sum", "rx_warp_max"};

static void die(const char *what, const char *arg) {
    fprintf(stderr, "rewrite_launches: %s %s: %s\n", what, arg, errno ? strerror(errno) : "");
    exit(1);
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open", path);
    if (fseek(f, 0, SEEK_END) != 0) die("cannot seek", path);
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) die("cannot seek", path);
    char *s = malloc((size_t)n + 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) die("cannot read", path);
    s[n] = 0;
    fclose(f);
    return s;
}

static int is_ident(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* index of the bracket that closes the one at s[q]; step -1 searches backwards from a closing one */
static long matching(const char *s, long n, long q, char open, char close, int step) {
    for (int depth = 0; q >= 0 && q < n; q += step) {
        if (s[q] == open) depth++;
        else if (s[q] == close && --depth == 0) return q;
    }
    fprintf(stderr, "rewrite_launches: unbalanced '%c'\n", open);
    exit(1);
}

typedef struct func { char name[128]; const char *body; long len; int waits; } func;

/* every function defined with `qual` (__global__ or __device__): its name and body */
static int find_functions(const char *s, const char *qual, func *out, int nout) {
    long n = (long)strlen(s), ql = (long)strlen(qual);
    for (const char *p = strstr(s, qual); p; p = strstr(p + 1, qual)) {
        long q = p - s + ql;
        if (is_ident(s[q]) || (p > s && is_ident(p[-1]))) continue;
        /* [^;{}()]* up to the first '(' : the identifier just before it is the name */
        while (q < n && !strchr(";{}()", s[q])) q++;
        if (q >= n || s[q] != '(') continue;
        long e = q;
        while (e > 0 && isspace((unsigned char)s[e - 1])) e--;
        long b = e;
        while (b > 0 && is_ident(s[b - 1])) b--;
        if (b == e) continue;
        long close = matching(s, n, q, '(', ')', 1), body = close + 1;
        while (body < n && s[body] != '{' && s[body] != ';') body++;
        if (body >= n || s[body] == ';') continue;   /* a declaration */
        long end = matching(s, n, body, '{', '}', 1);
        if (nout >= MAX_FUNCS) { fprintf(stderr, "rewrite_launches: too many functions\n"); exit(1); }
        func *f = &out[nout++];
        snprintf(f->name, sizeof f->name, "%.*s", (int)(e - b), s + b);
        f->body = s + body;
        f->len = end - body;
        f->waits = 0;
    }
    return nout;
}

/* whether body calls `name` (name followed by optional spaces and '(' or '<') */
static int calls(const char *body, long len, const char *name) {
    long nl = (long)strlen(name);
    for (long i = 0; i + nl <= len; i++) {
        if (memcmp(body + i, name, (size_t)nl) || (i > 0 && is_ident(body[i - 1]))) continue;
        long k = i + nl;
        if (!strcmp(name, "__shfl")) while (k < len && is_ident(body[k])) k++;   /* every __shfl*_sync */
        while (k < len && isspace((unsigned char)body[k])) k++;
        if (k < len && (body[k] == '(' || body[k] == '<')) return 1;
    }
    return 0;
}

static int calls_a_waiter(const func *f, const func *dev, int nd) {
    for (size_t w = 0; w < sizeof barrier_calls / sizeof *barrier_calls; w++)
        if (calls(f->body, f->len, barrier_calls[w])) return 1;
    for (int d = 0; d < nd; d++)
        if (dev[d].waits && calls(f->body, f->len, dev[d].name)) return 1;
    return 0;
}

/* split a launch configuration at top-level commas into at most 4 trimmed parts */
static int split_config(const char *s, long len, char parts[4][512]) {
    int np = 0, depth = 0;
    long start = 0;
    for (long i = 0; i <= len; i++) {
        char c = i < len ? s[i] : ',';
        if (strchr("([{", c)) depth++;
        else if (strchr(")]}", c)) depth--;
        if (c == ',' && depth == 0) {
            long a = start, b = i;
            while (a < b && isspace((unsigned char)s[a])) a++;
            while (b > a && isspace((unsigned char)s[b - 1])) b--;
            if (np == 4) { fprintf(stderr, "rewrite_launches: launch with more than 4 settings\n"); exit(1); }
            snprintf(parts[np++], 512, "%.*s", (int)(b - a), s + a);
            start = i + 1;
        }
    }
    for (int k = np; k < 4; k++) strcpy(parts[k], "0");
    return np;
}

static int is_fiber_kernel(const char *name, long len, const func *kern, int nk) {
    for (int i = 0; i < nk; i++)
        if ((long)strlen(kern[i].name) == len && !memcmp(kern[i].name, name, (size_t)len)) return kern[i].waits;
    return 0;
}

static void rewrite(const char *s, FILE *out, const func *kern, int nk) {
    long n = (long)strlen(s), i = 0;
    for (;;) {
        const char *hit = strstr(s + i, "<<<");
        if (!hit) { fputs(s + i, out); return; }
        long j = hit - s, k = j;
        if (s[k - 1] == '>') k = matching(s, n, k - 1, '>', '<', -1);   /* template arguments */
        long name_end = k;
        while (k > 0 && is_ident(s[k - 1])) k--;
        const char *e = strstr(hit, ">>>");
        if (!e) { fprintf(stderr, "rewrite_launches: <<< without >>>\n"); exit(1); }
        char cfg[4][512];
        split_config(hit + 3, e - hit - 3, cfg);
        long p = e - s + 3;
        while (isspace((unsigned char)s[p])) p++;
        if (s[p] != '(') { fprintf(stderr, "rewrite_launches: launch without arguments near: %.80s\n", s + (j > 40 ? j - 40 : 0)); exit(1); }
        long q = matching(s, n, p, '(', ')', 1);
        fwrite(s + i, 1, (size_t)(k - i), out);
        /* the arguments are evaluated at the launch and copied (rx_emu_launch_args), so a launch
         * recorded during stream capture replays with the values it was launched with */
        long a = p + 1;
        while (a < q && isspace((unsigned char)s[a])) a++;
        fprintf(out, "rx_emu_launch_args(dim3(%s), dim3(%s), %s, %s, %d, [](auto... a_) { %.*s(a_...); }%s%.*s)", cfg[0],
                cfg[1], cfg[2], cfg[3], is_fiber_kernel(s + k, name_end - k, kern, nk), (int)(j - k), s + k,
                a < q ? ", " : "", (int)(q - p - 1), s + p + 1);
        i = q + 1;
    }
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: rewrite_launches SRC_DIR OUT_DIR\n"); return 2; }
    char *names[MAX_FILES], *texts[MAX_FILES], path[4096];
    int nf = 0;
    DIR *d = opendir(argv[1]);
    if (!d) die("cannot open directory", argv[1]);
    for (struct dirent *de; (de = readdir(d));)
        if (ends_with(de->d_name, ".cu") || ends_with(de->d_name, ".h")) {
            if (nf == MAX_FILES) { fprintf(stderr, "rewrite_launches: too many files\n"); return 1; }
            names[nf++] = strdup(de->d_name);
        }
    closedir(d);
    qsort(names, (size_t)nf, sizeof *names, by_name);
    static func kern[MAX_FUNCS], dev[MAX_FUNCS];
    int nk = 0, nd = 0;
    for (int f = 0; f < nf; f++) {
        snprintf(path, sizeof path, "%s/%s", argv[1], names[f]);
        texts[f] = read_file(path);
        nk = find_functions(texts[f], "__global__", kern, nk);
        nd = find_functions(texts[f], "__device__", dev, nd);
    }
    for (int more = 1; more;) {   /* device functions that wait, until no more are found */
        more = 0;
        for (int i = 0; i < nd; i++)
            if (!dev[i].waits && calls_a_waiter(&dev[i], dev, nd)) dev[i].waits = more = 1;
    }
    for (int i = 0; i < nk; i++) kern[i].waits = calls_a_waiter(&kern[i], dev, nd);

    snprintf(path, sizeof path, "%s/kernels", argv[2]);
    if (mkdir(argv[2], 0777) && errno != EEXIST) die("cannot create", argv[2]);
    if (mkdir(path, 0777) && errno != EEXIST) die("cannot create", path);
    snprintf(path, sizeof path, "%s/kernels/cuda", argv[2]);
    if (mkdir(path, 0777) && errno != EEXIST) die("cannot create", path);
    for (int f = 0; f < nf; f++) {
        size_t l = strlen(names[f]);
        if (ends_with(names[f], ".cu")) snprintf(path, sizeof path, "%s/kernels/cuda/%.*s.cpp", argv[2], (int)(l - 3), names[f]);
        else snprintf(path, sizeof path, "%s/kernels/cuda/%s", argv[2], names[f]);
        FILE *out = fopen(path, "w");
        if (!out) die("cannot write", path);
        rewrite(texts[f], out, kern, nk);
        if (fclose(out)) die("cannot write", path);
        free(texts[f]);
        free(names[f]);
    }
    return 0;
}
