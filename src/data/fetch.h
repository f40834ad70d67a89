/* fetch.h — getting the data sets onto disk (`make data`, `runexp data fetch NAME`).
 *
 * rx_data_fetch(name, dest_root) puts dataset `name`'s official files under
 * dest_root/<name>/ (the layout the loaders search):
 *   - when $RUNEXP_DATA_SRC is set: copied from $RUNEXP_DATA_SRC/<name>/ (a local mirror, e.g.
 *     CI's shared data; taken as it is, no checksum: it need not be byte-identical to the
 *     official archive);
 *   - else fashion_mnist is copied from Debian's /usr/share/datasets/fashion-mnist/ when that
 *     package is installed;
 *   - else downloaded with libcurl from the official URL (or $RUNEXP_DATA_MIRROR/<file> when
 *     set, any URL libcurl takes, file:// included) and checked against the official MD5.
 * Files already present are kept. Every write is atomic (io/fsutil.h), and a download's
 * checksum is checked before it is renamed into place, so neither an interrupted fetch nor a
 * corrupt download leaves a file under the real name.
 * name "all" fetches every data set that has files (cifar10, mnist, fashion_mnist). */
#ifndef RX_DATA_FETCH_H
#define RX_DATA_FETCH_H

#include "core/status.h"

rx_status rx_data_fetch(const char *name, const char *dest_root);

/* MD5 (RFC 1321, nettle's) of a file as 32 lowercase hex digits + NUL. */
rx_status rx_md5_file(const char *path, char hex[33]);

#endif
