/* fsutil.c — crash-safe writes, locks, run-directory allocation. See fsutil.h. */
#include "io/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- small path helpers ---- */

/* malloc'd directory part of `path` ("." when there is none). */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static const char *base_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* A name no other thread or process is using right now: pid + per-process
 * counter + clock. Collisions are still handled by O_EXCL / EEXIST retries. */
static void unique_suffix(char *buf, size_t cap) {
    static atomic_uint counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned c = atomic_fetch_add(&counter, 1);
    snprintf(buf, cap, "%ld.%u.%lx", (long)getpid(), c, (unsigned long)(ts.tv_nsec ^ (ts.tv_sec << 20)));
}

/* ---- directories ---- */

rx_status rx_fs_mkdir_p(const char *path) {
    if (!path || !*path) return rx_fail(RX_ERR_ARG, "mkdir -p: empty path");
    char *buf = strdup(path);
    if (!buf) return rx_fail(RX_ERR_OOM, "mkdir -p %s: out of memory", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;   /* "a/b/" -> "a/b" */
    /* Create each prefix in turn: "a", "a/b", "a/b/c". */
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != 0) continue;
        char saved = *p;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            rx_status s = rx_fail(RX_ERR_IO, "mkdir -p %s: cannot create %s: %s", path, buf, strerror(errno));
            free(buf);
            return s;
        }
        *p = saved;
        if (!saved) break;
    }
    struct stat st;
    int ok = stat(buf, &st) == 0 && S_ISDIR(st.st_mode);
    free(buf);
    if (!ok) return rx_fail(RX_ERR_IO, "mkdir -p %s: exists and is not a directory", path);
    return RX_OK;
}

int rx_fs_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

int rx_fs_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

rx_status rx_fs_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return rx_fail(RX_ERR_IO, "fsync directory %s: %s", dir, strerror(errno));
    /* Some file systems (e.g. certain network mounts) do not support fsync on a
     * directory; EINVAL there means "nothing to do", not data loss. */
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0 && err != EINVAL && err != EROFS)
        return rx_fail(RX_ERR_IO, "fsync directory %s: %s", dir, strerror(err));
    return RX_OK;
}

/* ---- atomic files ---- */

static void atomic_free(rx_atomic_file *af) {
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    af->fp = NULL;
}

rx_status rx_atomic_begin(const char *path, rx_atomic_file *af) {
    memset(af, 0, sizeof *af);
    if (!path || !*path || path[strlen(path) - 1] == '/')
        return rx_fail(RX_ERR_ARG, "atomic write: bad file path '%s'", path ? path : "(null)");
    char *dir = dir_of(path);
    af->path = strdup(path);
    size_t cap = strlen(path) + 64;
    af->tmp_path = malloc(cap);
    if (!dir || !af->path || !af->tmp_path) {
        free(dir);
        atomic_free(af);
        return rx_fail(RX_ERR_OOM, "atomic write %s: out of memory", path);
    }
    /* Temp file in the SAME directory: rename(2) is only atomic within one file system. */
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        char sfx[64];
        unique_suffix(sfx, sizeof sfx);
        snprintf(af->tmp_path, cap, "%s/.%.*s.tmp.%s", dir, 24, base_of(path), sfx);
        fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    int open_err = errno;
    free(dir);
    if (fd < 0) {
        rx_status s = rx_fail(RX_ERR_IO, "cannot write %s: creating temp file %s: %s", path, af->tmp_path,
                              strerror(open_err));
        atomic_free(af);
        return s;
    }
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        rx_status s = rx_fail(RX_ERR_IO, "cannot write %s: fdopen: %s", path, strerror(errno));
        close(fd);
        unlink(af->tmp_path);
        atomic_free(af);
        return s;
    }
    return RX_OK;
}

void rx_atomic_abort(rx_atomic_file *af) {
    if (af->fp) fclose(af->fp);
    if (af->tmp_path) unlink(af->tmp_path);
    atomic_free(af);
}

rx_status rx_atomic_commit(rx_atomic_file *af) {
    if (!af->fp) return rx_fail(RX_ERR_ARG, "atomic write: commit without begin");
    const char *what = NULL;
    int err = 0;
    if (ferror(af->fp)) { what = "write"; err = EIO; }
    else if (fflush(af->fp) != 0) { what = "write"; err = errno; }
    else if (fsync(fileno(af->fp)) != 0) { what = "fsync"; err = errno; }
    int close_rc = fclose(af->fp);
    af->fp = NULL;
    if (!what && close_rc != 0) { what = "close"; err = errno; }
    if (!what && rename(af->tmp_path, af->path) != 0) { what = "rename"; err = errno; }
    if (what) {
        rx_status s = rx_fail(RX_ERR_IO, "cannot write %s: %s failed: %s", af->path, what, strerror(err));
        unlink(af->tmp_path);
        atomic_free(af);
        return s;
    }
    char *dir = dir_of(af->path);
    rx_status s = dir ? rx_fs_fsync_dir(dir) : rx_fail(RX_ERR_OOM, "atomic write: out of memory");
    free(dir);
    atomic_free(af);
    return s;
}

rx_status rx_fs_write_atomic(const char *path, const void *buf, size_t n) {
    rx_atomic_file af;
    RX_TRY(rx_atomic_begin(path, &af));
    if (n && fwrite(buf, 1, n, af.fp) != n) {
        rx_status s = rx_fail(RX_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        rx_atomic_abort(&af);
        return s;
    }
    return rx_atomic_commit(&af);
}

/* The suffix unique_suffix writes: <digits>.<digits>.<hex digits>. */
static int is_unique_suffix(const char *s) {
    for (int part = 0; part < 3; part++) {
        const char *p = s;
        const char *digits = part < 2 ? "0123456789" : "0123456789abcdef";
        while (*s && strchr(digits, *s)) s++;
        if (s == p) return 0;
        if (part < 2 && *s++ != '.') return 0;
    }
    return *s == 0;
}

/* `.<name>.tmp.<suffix>`: what rx_atomic_begin creates */
static int is_atomic_temp_name(const char *name) {
    if (name[0] != '.') return 0;
    const char *tmp = NULL;
    for (const char *p = name + 1; (p = strstr(p, ".tmp.")); p++) tmp = p;   /* the last ".tmp." */
    return tmp && tmp > name + 1 && is_unique_suffix(tmp + 5);
}

rx_status rx_fs_remove_atomic_temps(const char *dir, int *removed) {
    if (removed) *removed = 0;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? RX_OK : rx_fail(RX_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
    rx_status s = RX_OK;
    for (struct dirent *e; !s && (e = readdir(d));) {
        if (!is_atomic_temp_name(e->d_name)) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (unlink(path) != 0 && errno != ENOENT)
            s = rx_fail(RX_ERR_IO, "cannot remove the stale temp file %s: %s", path, strerror(errno));
        else if (removed) (*removed)++;
    }
    closedir(d);
    return s;
}

rx_status rx_fs_read_file(const char *path, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return rx_fail(RX_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    int read_err = ferror(f);
    fclose(f);
    if (!buf) return rx_fail(RX_ERR_OOM, "reading %s: out of memory", path);
    if (read_err) { free(buf); return rx_fail(RX_ERR_IO, "reading %s: read error", path); }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return RX_OK;
}

/* ---- locks ---- */

rx_status rx_fs_lock(const char *path, int *fd_out) {
    *fd_out = -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return rx_fail(RX_ERR_IO, "lock %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        rx_status s = rx_fail(RX_ERR_IO, "lock %s: flock: %s", path, strerror(errno));
        close(fd);
        return s;
    }
    *fd_out = fd;
    return RX_OK;
}

rx_status rx_fs_trylock(const char *path, int *fd_out, int *busy) {
    *fd_out = -1;
    *busy = 0;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return rx_fail(RX_ERR_IO, "lock %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR) continue;
        int err = errno;
        close(fd);
        if (err == EWOULDBLOCK) {
            *busy = 1;
            return rx_fail(RX_ERR_IO, "lock %s: held by another process", path);
        }
        return rx_fail(RX_ERR_IO, "lock %s: flock: %s", path, strerror(err));
    }
    *fd_out = fd;
    return RX_OK;
}

void rx_fs_unlock(int fd) {
    if (fd < 0) return;
    flock(fd, LOCK_UN);
    close(fd);   /* closing would release it too; unlocking first states the intent */
}

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

rx_status rx_fs_append_locked(const char *path, const char *header, const char *line) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return rx_fail(RX_ERR_IO, "append to %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        rx_status s = rx_fail(RX_ERR_IO, "append to %s: flock: %s", path, strerror(errno));
        close(fd);
        return s;
    }
    /* Size is checked under the lock, so exactly one writer sees the empty file. */
    struct stat st;
    int rc = fstat(fd, &st);
    if (rc != 0) st.st_size = -1;
    if (rc == 0 && st.st_size == 0 && header) {
        rc = write_all(fd, header, strlen(header));
        if (rc == 0 && (!*header || header[strlen(header) - 1] != '\n')) rc = write_all(fd, "\n", 1);
    }
    size_t n = strlen(line);
    if (rc == 0) rc = write_all(fd, line, n);
    if (rc == 0 && (n == 0 || line[n - 1] != '\n')) rc = write_all(fd, "\n", 1);
    if (rc == 0) rc = fsync(fd);
    int err = errno;
    /* a write cut short (a full disk, EFBIG) is taken back: the file stays as it was, whole
     * lines only, instead of ending in half a row */
    if (rc != 0 && st.st_size >= 0) (void)!ftruncate(fd, st.st_size);
    flock(fd, LOCK_UN);
    close(fd);
    if (rc != 0) return rx_fail(RX_ERR_IO, "append to %s: %s", path, strerror(err));
    return RX_OK;
}

/* a line of text starts with `key` and then a comma */
static int line_has_key(const char *line, size_t n, const char *key) {
    size_t k = strlen(key);
    return n > k && !memcmp(line, key, k) && line[k] == ',';
}

rx_status rx_fs_upsert_line_locked(const char *path, const char *header, const char *key, const char *line) {
    char *dir = dir_of(path);
    size_t cap = strlen(path) + 16;
    char *lock_path = malloc(cap);
    if (!dir || !lock_path) {
        free(dir);
        free(lock_path);
        return rx_fail(RX_ERR_OOM, "update %s: out of memory", path);
    }
    snprintf(lock_path, cap, "%s/.%s.lock", dir, base_of(path));
    free(dir);
    int fd;
    rx_status s = rx_fs_lock(lock_path, &fd);
    free(lock_path);
    if (s) return s;
    char *old = NULL;
    size_t old_n = 0;
    if (rx_fs_exists(path)) s = rx_fs_read_file(path, &old, &old_n);
    size_t line_n = strlen(line);
    while (line_n && line[line_n - 1] == '\n') line_n--;
    size_t out_cap = old_n + line_n + (header ? strlen(header) : 0) + 3;
    char *out = s ? NULL : malloc(out_cap);
    if (!s && !out) s = rx_fail(RX_ERR_OOM, "update %s: out of memory", path);
    if (!s) {
        size_t n = 0;
        int placed = 0;
        if (old_n == 0 && header) n += (size_t)snprintf(out, out_cap, "%s\n", header);
        /* every old line (a torn last line gets its newline back), the key's first one replaced */
        for (const char *p = old; p && p < old + old_n;) {
            const char *nl = memchr(p, '\n', (size_t)(old + old_n - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(old + old_n - p);
            if (line_has_key(p, len, key)) {
                if (!placed) { memcpy(out + n, line, line_n); n += line_n; out[n++] = '\n'; placed = 1; }
            } else if (len) {
                memcpy(out + n, p, len);
                n += len;
                out[n++] = '\n';
            }
            p += len + 1;
        }
        if (!placed) { memcpy(out + n, line, line_n); n += line_n; out[n++] = '\n'; }
        s = rx_fs_write_atomic(path, out, n);
    }
    free(out);
    free(old);
    rx_fs_unlock(fd);
    return s;
}

/* ---- run directories ---- */

/* Number of an entry named "<digits>-...", or -1. */
static long run_number_of(const char *name) {
    long v = 0;
    int nd = 0;
    for (; name[nd] >= '0' && name[nd] <= '9'; nd++) {
        if (v > 100000000L) return -1;
        v = v * 10 + (name[nd] - '0');
    }
    return (nd > 0 && name[nd] == '-') ? v : -1;
}

rx_status rx_fs_alloc_run_dir(const char *parent, const char *tag, char *out, size_t cap, int *number) {
    if (!tag || !*tag || strchr(tag, '/'))
        return rx_fail(RX_ERR_ARG, "run directory: bad tag '%s' (must be non-empty, no '/')", tag ? tag : "(null)");
    RX_TRY(rx_fs_mkdir_p(parent));

    /* The lock makes scan+mkdir one step across processes. mkdir alone would not
     * suffice: two runs with different hashes could both take number N. */
    size_t lp_cap = strlen(parent) + 32;
    char *lock_path = malloc(lp_cap);
    if (!lock_path) return rx_fail(RX_ERR_OOM, "run directory: out of memory");
    snprintf(lock_path, lp_cap, "%s/.alloc.lock", parent);
    int lock_fd;
    rx_status s = rx_fs_lock(lock_path, &lock_fd);
    free(lock_path);
    RX_TRY(s);

    DIR *d = opendir(parent);
    if (!d) {
        s = rx_fail(RX_ERR_IO, "run directory: cannot list %s: %s", parent, strerror(errno));
        rx_fs_unlock(lock_fd);
        return s;
    }
    long max_used = 0;
    for (struct dirent *e; (e = readdir(d));) {
        long v = run_number_of(e->d_name);
        if (v > max_used) max_used = v;
    }
    closedir(d);

    s = RX_OK;
    long n = max_used + 1;
    for (int attempt = 0;; attempt++, n++) {
        int len = snprintf(out, cap, "%s/%04ld-%s", parent, n, tag);
        if (len < 0 || (size_t)len >= cap) {
            s = rx_fail(RX_ERR_ARG, "run directory: path %s/%04ld-%s longer than %zu bytes", parent, n, tag, cap);
            break;
        }
        if (mkdir(out, 0777) == 0) break;
        if (errno != EEXIST || attempt >= 10000) {
            s = rx_fail(RX_ERR_IO, "run directory: cannot create %s: %s", out, strerror(errno));
            break;
        }
    }
    if (s == RX_OK) s = rx_fs_fsync_dir(parent);
    rx_fs_unlock(lock_fd);
    if (s == RX_OK && number) *number = (int)n;
    return s;
}

rx_status rx_fs_symlink_replace(const char *target, const char *linkpath) {
    size_t cap = strlen(linkpath) + 64;
    char *tmp = malloc(cap);
    if (!tmp) return rx_fail(RX_ERR_OOM, "symlink %s: out of memory", linkpath);
    int rc = -1;
    for (int attempt = 0; attempt < 100; attempt++) {
        char sfx[64];
        unique_suffix(sfx, sizeof sfx);
        snprintf(tmp, cap, "%s.tmp.%s", linkpath, sfx);
        rc = symlink(target, tmp);
        if (rc == 0 || errno != EEXIST) break;
    }
    if (rc != 0) {
        rx_status s = rx_fail(RX_ERR_IO, "symlink %s -> %s: %s", linkpath, target, strerror(errno));
        free(tmp);
        return s;
    }
    /* rename() would happily replace a regular file or an empty directory; a
     * `latest` that is not a symlink is someone's data, so refuse. */
    struct stat st;
    if (lstat(linkpath, &st) == 0 && !S_ISLNK(st.st_mode)) {
        unlink(tmp);
        free(tmp);
        return rx_fail(RX_ERR_IO, "symlink %s: exists and is not a symlink; not replacing it", linkpath);
    }
    if (rename(tmp, linkpath) != 0) {
        rx_status s = rx_fail(RX_ERR_IO, "symlink %s -> %s: rename: %s", linkpath, target, strerror(errno));
        unlink(tmp);
        free(tmp);
        return s;
    }
    free(tmp);
    char *dir = dir_of(linkpath);
    rx_status s = dir ? rx_fs_fsync_dir(dir) : RX_OK;
    free(dir);
    return s;
}

/* nftw has no user pointer; the first failure is kept here (per thread). */
static _Thread_local int remove_errno;
static _Thread_local char remove_failed_path[512];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    if (remove(path) != 0 && errno != ENOENT) {
        remove_errno = errno;
        snprintf(remove_failed_path, sizeof remove_failed_path, "%s", path);
        return 1;
    }
    return 0;
}

rx_status rx_fs_remove_tree(const char *path) {
    if (!path || !*path || !strcmp(path, "/") || !strcmp(path, ".") || !strcmp(path, ".."))
        return rx_fail(RX_ERR_ARG, "remove tree: refusing to remove '%s'", path ? path : "(null)");
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return RX_OK;
        return rx_fail(RX_ERR_IO, "remove %s: %s", path, strerror(errno));
    }
    remove_errno = 0;
    /* FTW_DEPTH: children before their directory; FTW_PHYS: never follow symlinks. */
    int rc = nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (rc != 0) {
        if (remove_errno)
            return rx_fail(RX_ERR_IO, "remove %s: cannot remove %s: %s", path, remove_failed_path,
                           strerror(remove_errno));
        return rx_fail(RX_ERR_IO, "remove %s: %s", path, strerror(errno));
    }
    return RX_OK;
}
