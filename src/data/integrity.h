/* integrity.h — checking a data set's files when it is opened (issue 19).
 *
 * Three checks, each what a format already carries:
 *   - gzip: a member ends with the CRC32 and the length (mod 2^32) of what it holds. zlib
 *     checks both, but only when the stream is read to its end, so rx_gz_reader reads on past
 *     the payload: rx_gz_finish (idx files: nothing may follow the payload) or rx_gz_drain
 *     (tar: padding may) return an error for a bad CRC, a bad length, a truncated stream or
 *     bytes after the last gzip member.
 *   - sizes: each loader knows its files' exact sizes (a CIFAR-10 batch is 30,730,000 bytes).
 *   - md5: the published files' md5s (rx_dataset_file, the list `data fetch` downloads by).
 *     A file whose size is the published file's size must have its md5; other sizes are
 *     other packagings of the same data (Debian's gzip -n copies, a local mirror) that the
 *     md5 cannot speak for, and are left to the two checks above. A verified md5 is cached
 *     under (real path, size, mtime) in $XDG_CACHE_HOME/runexp/data-md5.tsv (default
 *     ~/.cache/runexp), so the second open costs a stat.
 * Every failure is RX_ERR_FORMAT (the CLI's exit 2, as for a missing data set) with a
 * message that names the file and what is wrong. */
#ifndef RX_DATA_INTEGRITY_H
#define RX_DATA_INTEGRITY_H

#include <stddef.h>
#include <stdint.h>
#include "core/status.h"
#include "data/dataset.h"

typedef struct rx_gz_reader rx_gz_reader;

/* Opens `path` for streaming: gzip (one or more members) when it starts with the gzip magic,
 * else read as it is. RX_ERR_IO when it cannot be opened. */
rx_status rx_gz_open(const char *path, rx_gz_reader **out);
/* Up to cap bytes into buf; *got = 0 only at the end of a complete, checked stream. */
rx_status rx_gz_read(rx_gz_reader *r, void *buf, size_t cap, size_t *got);
/* Exactly n bytes; `what` names the part for the message ("header", "pixels"). */
rx_status rx_gz_read_exact(rx_gz_reader *r, void *buf, size_t n, const char *what);
/* The stream must end here, checked (CRC, length, no trailing bytes). */
rx_status rx_gz_finish(rx_gz_reader *r);
/* Reads and discards the rest, so that the trailer is checked. */
rx_status rx_gz_drain(rx_gz_reader *r);
void      rx_gz_close(rx_gz_reader *r);

/* path's md5 must be `md5` (32 lowercase hex digits); a match is cached (see above). */
rx_status rx_data_verify_md5(const char *path, const char *md5);

/* When path's base name is in `files` ({0}-terminated) with a published size, and path has
 * that size: its md5 must be the published one (rx_data_verify_md5). Otherwise RX_OK. */
rx_status rx_data_check_listed(const rx_dataset_file *files, const char *path);

/* The cache file's path into out[cap]; RX_ERR_IO when neither $XDG_CACHE_HOME nor $HOME is set. */
rx_status rx_data_md5_cache_path(char *out, size_t cap);

/* n with thousands separators ("30,730,000") into out[cap]; returns out. */
const char *rx_fmt_count(int64_t n, char *out, size_t cap);

#endif
