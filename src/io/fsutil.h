/* fsutil.h — file-system helpers for result directories and crash-safe writes.
 *
 * Everything the runner leaves on disk goes through here so that a crash, a
 * SIGKILL or a full disk never leaves a half-written file under its final name:
 *
 *   - atomic files: write to a temp file in the same directory, fflush + fsync,
 *     rename over the final name, fsync the directory (so the rename itself is
 *     durable). Readers see either the old file or the complete new one.
 *   - run directories `NNNN-<hash8>` allocated under an exclusive lock with
 *     mkdir, so concurrent `runexp` processes never get the same number.
 *   - `latest` symlink replaced atomically (symlink to a temp name + rename).
 *   - appends to shared files (index.csv) under an flock.
 */
#ifndef RX_FSUTIL_H
#define RX_FSUTIL_H

#include <stddef.h>
#include <stdio.h>
#include "core/status.h"

/* mkdir -p with mode 0777 (minus umask). Existing directories are fine;
 * an existing non-directory on the path is RX_ERR_IO. */
rx_status rx_fs_mkdir_p(const char *path);

/* 1 if `path` exists (any type, symlinks not followed), else 0. */
int rx_fs_exists(const char *path);
/* 1 if `path` is a directory (symlinks followed), else 0. */
int rx_fs_is_dir(const char *path);

/* fsync a directory so that a create/rename inside it survives a crash. */
rx_status rx_fs_fsync_dir(const char *dir);

/* ---- atomic files --------------------------------------------------------
 *
 *     rx_atomic_file af;
 *     RX_TRY(rx_atomic_begin(path, &af));
 *     if (fwrite(buf, 1, n, af.fp) != n) { rx_atomic_abort(&af); return rx_fail(...); }
 *     RX_TRY(rx_atomic_commit(&af));   // frees af either way
 *
 * The temp file is `<dir>/.<name>.tmp.<pid.counter.clock>` (name cut to 24 characters),
 * created with O_EXCL, mode 0666 minus umask.
 * commit() and abort() both release everything; after a failed commit the temp
 * file is removed and the final path is untouched. */
typedef struct rx_atomic_file {
    FILE *fp;          /* write here */
    char *path;        /* final path */
    char *tmp_path;    /* temp file in the same directory */
} rx_atomic_file;

rx_status rx_atomic_begin(const char *path, rx_atomic_file *af);
rx_status rx_atomic_commit(rx_atomic_file *af);
void      rx_atomic_abort(rx_atomic_file *af);

/* Whole buffer → `path`, atomically (the helpers above). */
rx_status rx_fs_write_atomic(const char *path, const void *buf, size_t n);

/* Remove from `dir` (not recursively) the temp files rx_atomic_begin names
 * (`.<name>.tmp.<pid>.<counter>.<hex>`) that a killed writer left behind; other
 * files are never touched. Only safe while no other process writes atomically into
 * `dir` (a run directory under its run lock). *removed (may be NULL) counts them. */
rx_status rx_fs_remove_atomic_temps(const char *dir, int *removed);

/* Read a whole file into a malloc'd, NUL-terminated buffer (*len excludes the NUL). */
rx_status rx_fs_read_file(const char *path, char **out, size_t *len);

/* ---- locks ----------------------------------------------------------------
 * Exclusive advisory lock (flock) on `path`, created if missing. Blocks until
 * acquired. The lock is released by rx_fs_unlock or when the process dies. */
rx_status rx_fs_lock(const char *path, int *fd_out);
/* The same without waiting: when another process holds the lock, returns RX_ERR_IO
 * with *busy = 1 (and no fd); *busy = 0 on any other outcome. */
rx_status rx_fs_trylock(const char *path, int *fd_out, int *busy);
void      rx_fs_unlock(int fd);

/* Append `line` (a trailing '\n' is added if missing) to `path` under an
 * exclusive lock on the file itself, then fsync. If the file is new or empty and
 * `header` is not NULL, the header line is written first: for index.csv. */
rx_status rx_fs_append_locked(const char *path, const char *header, const char *line);

/* Put `line` in `path` as the one line that starts with `key` followed by a comma:
 * replaces the first such line (and drops any later duplicates) or appends it, with
 * `header` first in a new file. The whole file is rewritten atomically under an flock
 * on `<dir>/.<name>.lock` (not on the file itself: the rename gives the file a new
 * inode, which a lock on the old one would not exclude). For index.csv: one row per run. */
rx_status rx_fs_upsert_line_locked(const char *path, const char *header, const char *key, const char *line);

/* ---- run directories --------------------------------------------------------
 * Create `<parent>/<NNNN>-<tag>` where NNNN is one more than the largest number
 * already used by an entry `<digits>-...` in parent (0001 for the first run).
 * parent is created if missing. Numbers are unique across concurrent processes:
 * allocation holds an flock on `<parent>/.alloc.lock` and, as a second guard,
 * retries with the next number if mkdir reports EEXIST. `tag` is the config
 * hash (e.g. 8 hex digits; may not contain '/'). Writes the full path into
 * out[cap] and the number into *number (may be NULL). */
rx_status rx_fs_alloc_run_dir(const char *parent, const char *tag, char *out, size_t cap, int *number);

/* Make `linkpath` a symlink to `target` (stored as given, e.g. a relative
 * "0007-3fa2c1d0"), replacing an existing symlink atomically: symlink to a temp
 * name, then rename over linkpath. An existing non-symlink at linkpath is an error. */
rx_status rx_fs_symlink_replace(const char *target, const char *linkpath);

/* rm -rf `path` (does not follow symlinks). Refuses "", "/", "." and "..". A
 * missing path is not an error. */
rx_status rx_fs_remove_tree(const char *path);

#endif
