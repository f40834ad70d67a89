/* fetch.c — copy or download the data sets' official files (see fetch.h). */
#include "data/fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/dataset.h"

typedef struct {
    const char *dataset;  // also the sub-folder under the destination root
    const char *file;
    const char *url;      // official location
    const char *md5;      // of the file as published
} fetch_file;

// Checksums as published by the data sets' authors (CIFAR-10's page) or as torchvision checks them.
static const fetch_file fetch_files[] = {
    {"cifar10", "cifar-10-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
     "c32a1d4ab5d03f1284b67883e8d87530"},
    {"mnist", "train-images-idx3-ubyte.gz", "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
     "f68b3c2dcbeaaa9fbdd348bbdeb94873"},
    {"mnist", "train-labels-idx1-ubyte.gz", "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
     "d53e105ee54ea40749a09fcbcd1e9432"},
    {"mnist", "t10k-images-idx3-ubyte.gz", "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
     "9fb629c4189551a2d022fa330f9573f3"},
    {"mnist", "t10k-labels-idx1-ubyte.gz", "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
     "ec29112dd5afa0611ce80d1b7f02629c"},
    {"fashion_mnist", "train-images-idx3-ubyte.gz",
     "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz",
     "8d4fb7e6c68d591d4c3dfef9ec88bf0d"},
    {"fashion_mnist", "train-labels-idx1-ubyte.gz",
     "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-labels-idx1-ubyte.gz",
     "25c81989df183df01b3e8a0aad5dffbe"},
    {"fashion_mnist", "t10k-images-idx3-ubyte.gz",
     "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-images-idx3-ubyte.gz",
     "bef4ecab320f06d8554ea6380940ec79"},
    {"fashion_mnist", "t10k-labels-idx1-ubyte.gz",
     "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz",
     "bb300cfdad3c16e7a12a480ee83cd310"},
};
enum { NUM_FETCH_FILES = sizeof fetch_files / sizeof fetch_files[0] };

// The data sets fetch_files lists, each once, in table order.
static int is_first_of_its_dataset(int k) {
    for (int j = 0; j < k; j++)
        if (!strcmp(fetch_files[j].dataset, fetch_files[k].dataset)) return 0;
    return 1;
}

// Local copies that need no network, tried after $RUNEXP_DATA_SRC (Debian's package).
static const char *local_source_dir(const char *dataset) {
    return !strcmp(dataset, "fashion_mnist") ? "/usr/share/datasets/fashion-mnist" : NULL;
}

static int exists(const char *path) { struct stat sb; return !stat(path, &sb); }

static rx_status make_dir(const char *path) {
    if (mkdir(path, 0755) && errno != EEXIST) return rx_fail(RX_ERR_IO, "cannot create folder %s: %s", path, strerror(errno));
    return RX_OK;
}

static rx_status finish_file(FILE *f, const char *tmp, const char *dest) {
    int bad = fflush(f) != 0 || ferror(f);
    bad |= fclose(f) != 0;
    if (bad) { unlink(tmp); return rx_fail(RX_ERR_IO, "writing %s failed: %s", tmp, strerror(errno)); }
    if (rename(tmp, dest)) {
        rx_status st = rx_fail(RX_ERR_IO, "cannot rename %s to %s: %s", tmp, dest, strerror(errno));
        unlink(tmp);
        return st;
    }
    return RX_OK;
}

static rx_status copy_file(const char *src, const char *tmp, const char *dest) {
    FILE *in = fopen(src, "rb");
    if (!in) return rx_fail(RX_ERR_IO, "cannot open %s: %s", src, strerror(errno));
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        fclose(in);
        return rx_fail(RX_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    }
    char *buf = malloc(1 << 20);
    rx_status st = buf ? RX_OK : rx_fail(RX_ERR_OOM, "copy: out of memory");
    size_t n;
    while (st == RX_OK && (n = fread(buf, 1, 1 << 20, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) st = rx_fail(RX_ERR_IO, "writing %s failed: %s", tmp, strerror(errno));
    if (st == RX_OK && ferror(in)) st = rx_fail(RX_ERR_IO, "reading %s failed", src);
    free(buf);
    fclose(in);
    if (st != RX_OK) { fclose(out); unlink(tmp); return st; }
    return finish_file(out, tmp, dest);
}

static size_t curl_write(void *data, size_t size, size_t n, void *f) { return fwrite(data, size, n, f); }

static rx_status download_file(const char *url, const char *md5, const char *tmp, const char *dest) {
    static int curl_ready = 0;  // the CLI fetches from one thread; curl_global_init is idempotent in use
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return rx_fail(RX_ERR_INTERNAL, "libcurl init failed");
        curl_ready = 1;
    }
    CURL *c = curl_easy_init();
    if (!c) return rx_fail(RX_ERR_INTERNAL, "libcurl: curl_easy_init failed");
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        curl_easy_cleanup(c);
        return rx_fail(RX_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    }
    char err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
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
        fclose(out);
        unlink(tmp);
        return rx_fail(RX_ERR_IO,
                       "download %s failed: %s. Without network, set RUNEXP_DATA_SRC to a folder that holds the "
                       "data sets (as <name>/<file>) and run again",
                       url, err[0] ? err : curl_easy_strerror(rc));
    }
    RX_TRY(finish_file(out, tmp, dest));
    char got[33];
    rx_status st = rx_md5_file(dest, got);
    if (st == RX_OK && strcmp(got, md5))
        st = rx_fail(RX_ERR_FORMAT, "download %s: checksum mismatch: md5 %s, expected %s (corrupt or not the official file)",
                     url, got, md5);
    if (st != RX_OK) unlink(dest);
    return st;
}

static rx_status fetch_one(const char *name, const char *dest_root) {
    int known = 0;
    for (int k = 0; k < NUM_FETCH_FILES; k++) known |= !strcmp(fetch_files[k].dataset, name);
    if (!known) {
        char list[256] = "";
        for (int k = 0; k < NUM_FETCH_FILES; k++)
            if (is_first_of_its_dataset(k))
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "",
                         fetch_files[k].dataset);
        return rx_fail(RX_ERR_ARG, "data fetch: unknown data set '%s' (known: %s, all)", name, list);
    }
    const char *src_root = getenv("RUNEXP_DATA_SRC"), *mirror = getenv("RUNEXP_DATA_MIRROR");
    if (src_root && !*src_root) src_root = NULL;
    char dir[4096];
    RX_TRY(make_dir(dest_root));
    RX_TRY(rx_data_path_join(dir, sizeof dir, dest_root, name));
    RX_TRY(make_dir(dir));
    for (int k = 0; k < NUM_FETCH_FILES; k++) {
        const fetch_file *ff = &fetch_files[k];
        if (strcmp(ff->dataset, name)) continue;
        char dest[4200], tmp[4300], src[4200], url[4200];
        RX_TRY(rx_data_path_join(dest, sizeof dest, dir, ff->file));
        if (exists(dest)) continue;
        snprintf(tmp, sizeof tmp, "%s.part.%d", dest, (int)getpid());
        rx_status st;
        if (src_root) {
            char sub[4096];
            RX_TRY(rx_data_path_join(sub, sizeof sub, src_root, name));
            RX_TRY(rx_data_path_join(src, sizeof src, sub, ff->file));
            if (!exists(src) && local_source_dir(name))
                RX_TRY(rx_data_path_join(src, sizeof src, local_source_dir(name), ff->file));
            if (!exists(src))
                return rx_fail(RX_ERR_IO, "data fetch %s: $RUNEXP_DATA_SRC is %s but %s/%s/%s is not there", name,
                               src_root, src_root, name, ff->file);
            st = copy_file(src, tmp, dest);
        } else if (local_source_dir(name) &&
                   rx_data_path_join(src, sizeof src, local_source_dir(name), ff->file) == RX_OK && exists(src)) {
            st = copy_file(src, tmp, dest);
        } else {
            if (mirror && *mirror) snprintf(url, sizeof url, "%s/%s", mirror, ff->file);
            else snprintf(url, sizeof url, "%s", ff->url);
            st = download_file(url, ff->md5, tmp, dest);
        }
        if (st != RX_OK) return rx_fail_ctx(st, "data fetch %s: ", name);
    }
    return RX_OK;
}

rx_status rx_data_fetch(const char *name, const char *dest_root) {
    if (!name || !dest_root || !*dest_root) return rx_fail(RX_ERR_ARG, "rx_data_fetch: name and dest_root are required");
    if (strcmp(name, "all")) return fetch_one(name, dest_root);
    for (int k = 0; k < NUM_FETCH_FILES; k++)
        if (is_first_of_its_dataset(k)) RX_TRY(fetch_one(fetch_files[k].dataset, dest_root));
    return RX_OK;
}
