/* fuzz_util.h — shared by the libFuzzer harnesses (make fuzz): a private temp directory per
 * process, and writing the input to a named file in it for APIs that take a path. */
#ifndef RX_FUZZ_UTIL_H
#define RX_FUZZ_UTIL_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *fz_dir(void) {
    static char dir[64];
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/rxfuzz-XXXXXX", tmp && *tmp && strlen(tmp) < 40 ? tmp : "/tmp");
        if (!mkdtemp(dir)) abort();
        // keep the md5 cache of the data readers inside the temp dir, not in $HOME
        setenv("XDG_CACHE_HOME", dir, 1);
    }
    return dir;
}

/* writes data to fz_dir()/rel (creating one level of subdirectory when rel has one) */
__attribute__((unused)) static const char *fz_write(const char *rel, const uint8_t *data, size_t size) {
    static char path[512];
    const char *slash = strchr(rel, '/');
    if (slash) {
        snprintf(path, sizeof path, "%s/%.*s", fz_dir(), (int)(slash - rel), rel);
        mkdir(path, 0700);
    }
    snprintf(path, sizeof path, "%s/%s", fz_dir(), rel);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f)) abort();
    return path;
}

/* reads every 97th byte and the last of a decoded image, so ASan sees any short buffer, then
 * frees it */
__attribute__((unused)) static void fz_touch_free(uint8_t *img, int C, int H, int W) {
    volatile uint8_t sink = 0;
    size_t n = (size_t)C * H * W;
    for (size_t i = 0; i < n; i += 97) sink ^= img[i];
    if (n) sink ^= img[n - 1];
    (void)sink;
    free(img);
}
#endif
