/* enospc.c — an LD_PRELOAD shim for tests/test_faults.c: a full disk for one file's writes.
 *
 * RLIMIT_FSIZE caps every file at one size, so it cannot make a small file fail after a large
 * one went through (samples/grid.png and eval.json come after a ~750 kB checkpoint; the final
 * run.json after everything). This shim makes the kernel itself say "No space left on device":
 * when the atomic-write helper (io/fsutil.c) opens the temp file for a target whose name is
 * RX_ENOSPC_FILE (".NAME.tmp.*"), the open is answered with a descriptor of /dev/full, whose
 * writes fail with ENOSPC. With RX_ENOSPC_AFTER=OTHER the shim arms only once a file named OTHER
 * has been renamed into place (e.g. the final run.json write, after eval.json). Space comes
 * back as on a real disk when a file is truncated (ftruncate disarms the shim), unless
 * RX_ENOSPC_STICKY is set: a disk that stays full. Nothing in the product knows about it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static int armed = -1;   // -1: not yet decided from the environment

static int is_armed(void) {
    if (armed < 0) armed = getenv("RX_ENOSPC_AFTER") == NULL;
    return armed;
}

/* path's last component starts with "." NAME ".tmp." (the atomic helper's temp name) */
static int is_temp_of(const char *path, const char *name) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(name);
    return base[0] == '.' && !strncmp(base + 1, name, n) && !strncmp(base + 1 + n, ".tmp.", 5);
}

/* path's last component is exactly name */
static int is_named(const char *path, const char *name) {
    const char *base = strrchr(path, '/');
    return !strcmp(base ? base + 1 : path, name);
}

static int redirect(const char *path, int flags) {
    const char *name = getenv("RX_ENOSPC_FILE");
    return name && (flags & O_ACCMODE) != O_RDONLY && is_temp_of(path, name) && is_armed();
}

int open(const char *path, int flags, ...) {
    static int (*real_open)(const char *, int, ...);
    if (!real_open) real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (redirect(path, flags)) return real_open("/dev/full", O_WRONLY | (flags & O_CLOEXEC));
    return real_open(path, flags, mode);
}

int rename(const char *from, const char *to) {
    static int (*real_rename)(const char *, const char *);
    if (!real_rename) real_rename = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    int rc = real_rename(from, to);
    const char *after = getenv("RX_ENOSPC_AFTER");
    if (rc == 0 && after && is_named(to, after)) armed = 1;
    return rc;
}

int ftruncate(int fd, off_t length) {
    static int (*real_ftruncate)(int, off_t);
    if (!real_ftruncate) real_ftruncate = (int (*)(int, off_t))dlsym(RTLD_NEXT, "ftruncate");
    int rc = real_ftruncate(fd, length);
    if (rc == 0 && is_armed() && !getenv("RX_ENOSPC_STICKY")) armed = 0;   // blocks given back
    return rc;
}
