/* bench/decode.c — images per second decoding JPEG (or PNG) files on one core: read the file,
 * decode it (io/image.h: TurboJPEG, EXIF orientation, planar bytes [C,H,W]), as imagefolder
 * and webdataset do before resizing. bench/decode_pil.py times PIL on the same files
 * (Image.open + convert("RGB"), torchvision's loader); bench/decode.sh runs both.
 *
 *   build/bench/decode DIR [repeats]     # every .jpg/.jpeg/.png in DIR, fastest of `repeats` (5)
 *
 * Prints the fastest pass by wall clock and by this thread's CPU time (which other jobs on a
 * shared machine barely inflate), after one warm-up pass that also fills the page cache. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/image.h"

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// The image files of dir (sorted, full paths); count in *n.
static char **list_images(const char *dir, int *n) {
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **paths = NULL;
    int cap = 0;
    *n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || !rx_image_decoder(e->d_name)) continue;
        if (*n == cap && !(paths = realloc(paths, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *paths))) break;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(paths[*n] = malloc(len))) break;
        snprintf(paths[(*n)++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (paths) qsort(paths, (size_t)*n, sizeof *paths, cmp_str);
    return paths;
}

// One pass over every file; pixel bytes decoded summed into *bytes (also keeps the work live).
static int pass(char **paths, int n, double *wall, double *cpu, size_t *bytes) {
    const double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    *bytes = 0;
    for (int i = 0; i < n; i++) {
        uint8_t *px;
        int c, h, w;
        if (rx_image_read(paths[i], 0, &px, &c, &h, &w)) {
            fprintf(stderr, "bench/decode: %s\n", rx_last_error());
            return 1;
        }
        *bytes += (size_t)c * h * w;
        free(px);
    }
    *wall = clock_s(CLOCK_MONOTONIC) - w0, *cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [repeats]\n", argv[0]);
        return 2;
    }
    const int repeats = argc > 2 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 5;
    int n = 0;
    char **paths = list_images(argv[1], &n);
    if (!paths || !n) {
        fprintf(stderr, "bench/decode: no images (%s) in %s\n", rx_image_extensions(), argv[1]);
        return 1;
    }
    double wall, cpu, best_wall = 1e30, best_cpu = 1e30;
    size_t bytes;
    if (pass(paths, n, &wall, &cpu, &bytes)) return 1;   // warm-up: page cache, allocator
    for (int r = 0; r < repeats; r++) {
        if (pass(paths, n, &wall, &cpu, &bytes)) return 1;
        if (wall < best_wall) best_wall = wall;
        if (cpu < best_cpu) best_cpu = cpu;
    }
    printf("runexp io/image.h (TurboJPEG): %d files, %.1f MB decoded per pass; fastest of %d: %.1f images/s wall, "
           "%.1f images/s thread CPU\n", n, bytes / 1e6, repeats, n / best_wall, n / best_cpu);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    return 0;
}
