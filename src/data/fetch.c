/* fetch.c — copy or download the data sets' official files (see fetch.h). */
#include "data/fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <nettle/md5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "io/fsutil.h"

// A registered data set whose impl lists files to fetch, or NULL.
static const rx_dataset_impl *fetchable(const rx_component *comp) {
    const rx_dataset_impl *impl = comp && comp->kind == RX_KIND_DATASET ? comp->impl : NULL;
    return impl && impl->files ? impl : NULL;
}

rx_status rx_md5_file(const char *path, char hex[33]) {
    FILE *f = fopen(path, "rb");
    if (!f) return rx_fail(RX_ERR_IO, "md5: cannot open %s: %s", path, strerror(errno));
    struct md5_ctx c;
    md5_init(&c);
    static _Thread_local uint8_t buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) md5_update(&c, n, buf);
    int bad = ferror(f);
    fclose(f);
    if (bad) return rx_fail(RX_ERR_IO, "md5: read error on %s", path);
    uint8_t d[MD5_DIGEST_SIZE];
    md5_digest(&c, sizeof d, d);
    for (int i = 0; i < MD5_DIGEST_SIZE; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return RX_OK;
}

static rx_status copy_file(const char *src, const char *dest) {
    FILE *in = fopen(src, "rb");
    if (!in) return rx_fail(RX_ERR_IO, "cannot open %s: %s", src, strerror(errno));
    rx_atomic_file out;
    rx_status st = rx_atomic_begin(dest, &out);
    if (st != RX_OK) { fclose(in); return st; }
    char *buf = malloc(1 << 20);
    if (!buf) st = rx_fail(RX_ERR_OOM, "copy: out of memory");
    size_t n;
    while (st == RX_OK && (n = fread(buf, 1, 1 << 20, in)) > 0)
        if (fwrite(buf, 1, n, out.fp) != n) st = rx_fail(RX_ERR_IO, "writing %s failed: %s", dest, strerror(errno));
    if (st == RX_OK && ferror(in)) st = rx_fail(RX_ERR_IO, "reading %s failed", src);
    free(buf);
    fclose(in);
    if (st != RX_OK) { rx_atomic_abort(&out); return st; }
    return rx_atomic_commit(&out);
}

static size_t curl_write(void *data, size_t size, size_t n, void *f) { return fwrite(data, size, n, f); }

static rx_status download_file(const char *url, const char *md5, const char *dest) {
    static int curl_ready = 0;  // the CLI fetches from one thread; curl_global_init is idempotent in use
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return rx_fail(RX_ERR_INTERNAL, "libcurl init failed");
        curl_ready = 1;
    }
    CURL *c = curl_easy_init();
    if (!c) return rx_fail(RX_ERR_INTERNAL, "libcurl: curl_easy_init failed");
    rx_atomic_file out;
    rx_status st = rx_atomic_begin(dest, &out);
    if (st != RX_OK) {
        curl_easy_cleanup(c);
        return st;
    }
    char err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out.fp);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);  // give up below 1 kB/s for a minute
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "runexp-data-fetch");
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        rx_atomic_abort(&out);
        return rx_fail(RX_ERR_IO,
                       "download %s failed: %s. Without network, set RUNEXP_DATA_SRC to a folder that holds the "
                       "data sets (as <name>/<file>) and run again",
                       url, err[0] ? err : curl_easy_strerror(rc));
    }
    // the checksum is read from the temp file, so a file that fails it never takes the real name
    char got[33];
    if (fflush(out.fp) != 0) st = rx_fail(RX_ERR_IO, "writing %s failed: %s", dest, strerror(errno));
    if (st == RX_OK) st = rx_md5_file(out.tmp_path, got);
    if (st == RX_OK && strcmp(got, md5))
        st = rx_fail(RX_ERR_FORMAT, "download %s: checksum mismatch: md5 %s, expected %s (corrupt or not the official file)",
                     url, got, md5);
    if (st != RX_OK) {
        rx_atomic_abort(&out);
        return st;
    }
    return rx_atomic_commit(&out);
}

// One file of data set `name` into dir: from $RUNEXP_DATA_SRC/<name>/ when set, else from the
// package's local copy, else downloaded (from $RUNEXP_DATA_MIRROR when set) and checked.
static rx_status fetch_file(const char *name, const rx_dataset_impl *impl, const rx_dataset_file *ff, const char *dir) {
    const char *src_root = getenv("RUNEXP_DATA_SRC"), *mirror = getenv("RUNEXP_DATA_MIRROR");
    if (src_root && !*src_root) src_root = NULL;
    char dest[4200], src[4200], url[4200];
    RX_TRY(rx_data_path_join(dest, sizeof dest, dir, ff->file));
    if (rx_fs_exists(dest)) return RX_OK;
    const char *local = impl->local_copy_dir;
    if (src_root) {
        char sub[4096];
        RX_TRY(rx_data_path_join(sub, sizeof sub, src_root, name));
        RX_TRY(rx_data_path_join(src, sizeof src, sub, ff->file));
        if (!rx_fs_exists(src) && local) RX_TRY(rx_data_path_join(src, sizeof src, local, ff->file));
        if (!rx_fs_exists(src))
            return rx_fail(RX_ERR_IO, "$RUNEXP_DATA_SRC is %s but %s/%s/%s is not there", src_root, src_root, name,
                           ff->file);
        return copy_file(src, dest);
    }
    if (local && rx_data_path_join(src, sizeof src, local, ff->file) == RX_OK && rx_fs_exists(src))
        return copy_file(src, dest);
    if (mirror && *mirror) snprintf(url, sizeof url, "%s/%s", mirror, ff->file);
    else snprintf(url, sizeof url, "%s", ff->url);
    return download_file(url, ff->md5, dest);
}

static rx_status fetch_one(const rx_component *comp, const char *dest_root) {
    const rx_dataset_impl *impl = fetchable(comp);
    char dir[4096];
    RX_TRY(rx_data_path_join(dir, sizeof dir, dest_root, comp->name));
    RX_TRY(rx_fs_mkdir_p(dir));
    for (const rx_dataset_file *ff = impl->files; ff->file; ff++) {
        rx_status st = fetch_file(comp->name, impl, ff, dir);
        if (st != RX_OK) return rx_fail_ctx(st, "data fetch %s: ", comp->name);
    }
    return RX_OK;
}

rx_status rx_data_fetch(const char *name, const char *dest_root) {
    if (!name || !dest_root || !*dest_root) return rx_fail(RX_ERR_ARG, "rx_data_fetch: name and dest_root are required");
    if (!strcmp(name, "all")) {
        for (int k = 0; rx_registry_components[k]; k++)
            if (fetchable(rx_registry_components[k])) RX_TRY(fetch_one(rx_registry_components[k], dest_root));
        return RX_OK;
    }
    const rx_component *comp = rx_registry_find(RX_KIND_DATASET, name);
    if (fetchable(comp)) return fetch_one(comp, dest_root);
    char list[256] = "";
    for (int k = 0; rx_registry_components[k]; k++)
        if (fetchable(rx_registry_components[k]))
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "",
                     rx_registry_components[k]->name);
    return rx_fail(RX_ERR_ARG, "data fetch: %s data set '%s' (fetchable: %s, all)", comp ? "nothing to fetch for" : "unknown",
                   name, list);
}
