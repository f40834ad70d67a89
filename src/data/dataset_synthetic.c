/* dataset_synthetic.c — procedurally drawn labelled images, no files needed (tests, CI, demos).
 *
 * Image i of a split has class k = i % num_classes. The class decides the shape (one of 8) and
 * the colour (hue k * golden ratio, so every class has its own); the seed decides where the
 * shape sits, how large it is, and a faint background texture. Edges are antialiased by 4x4
 * supersampling. Same (seed, split, i, size) -> the same pixels on every machine.
 *
 * Random draws: Philox stream RX_RNG_DATA | RX_DATA_SYNTHETIC (clear of the loader's shuffle and
 * augmentation streams, core/philox.h), the split in bits 40..45 and the image number below;
 * block 0 gives the geometry, blocks 1.. the background noise. */
#include "data/dataset.h"

#include <math.h>
#include <string.h>

#include "core/philox.h"

static const rx_param_spec synthetic_params[] = {
    {"num_images", RX_P_INT, "1000", 1, 10000000, NULL, "images per split"},
    {"size", RX_P_INT, "32", 4, 4096, NULL, "height and width"},
    {"channels", RX_P_INT, "3", 1, 3, NULL, "1 (gray) or 3 (RGB)"},
    {"num_classes", RX_P_INT, "10", 1, 1000, NULL, "classes; image i has class i % num_classes"},
    {"seed", RX_P_INT, "0", 0, 9.0e15, NULL, "decides positions, sizes and texture"},
    {0}};

// Shapes as inside-tests in coordinates (u, v) scaled so the shape's radius is 1.
typedef int (*shape_fn)(float u, float v);
static int shape_disk(float u, float v) { return u * u + v * v <= 1.0f; }
static int shape_square(float u, float v) { return fmaxf(fabsf(u), fabsf(v)) <= 0.8f; }
static int shape_triangle(float u, float v) { return v <= 0.8f && v >= -0.9f && fabsf(u) <= 0.9f * (v + 0.9f) / 1.7f; }
static int shape_ring(float u, float v) { float r = u * u + v * v; return r <= 1.0f && r >= 0.3f; }
static int shape_cross(float u, float v) {
    return (fabsf(u) <= 0.3f && fabsf(v) <= 0.95f) || (fabsf(v) <= 0.3f && fabsf(u) <= 0.95f);
}
static int shape_diamond(float u, float v) { return fabsf(u) + fabsf(v) <= 1.0f; }
static int shape_bar(float u, float v) { return fabsf(v) <= 0.35f && fabsf(u) <= 1.0f; }
static int shape_x(float u, float v) { return fabsf(fabsf(u) - fabsf(v)) <= 0.3f && fmaxf(fabsf(u), fabsf(v)) <= 0.9f; }
static const shape_fn shapes[] = {shape_disk, shape_square, shape_triangle, shape_ring,
                                  shape_cross, shape_diamond, shape_bar, shape_x};
enum { NUM_SHAPES = sizeof shapes / sizeof shapes[0], SUPERSAMPLE = 4 };

static void class_colour(int k, float rgb[3]) {
    float h = fmodf(0.1f + 0.6180340f * (float)k, 1.0f) * 6.0f, s = 0.85f, v = 0.95f;  // HSV -> RGB
    int sector = (int)h;
    float f = h - sector, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    const float table[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
    memcpy(rgb, table[sector % 6], sizeof table[0]);
}

static void draw_image(uint8_t *px, int C, int S, int k, uint64_t seed, uint64_t stream, float *noise) {
    float g[4], rgb[3];
    rx_rng_uniform(seed, stream, 0, g, 4);
    rx_rng_uniform(seed, stream, 1, noise, (int64_t)S * S);
    class_colour(k, rgb);
    if (C == 1) rgb[0] = 0.2989f * rgb[0] + 0.587f * rgb[1] + 0.114f * rgb[2];
    const float cx = S * (0.3f + 0.4f * g[0]), cy = S * (0.3f + 0.4f * g[1]);
    const float radius = S * (0.2f + 0.12f * g[2]), inv_r = 1.0f / radius;
    const float bg = 0.08f + 0.1f * g[3];
    const shape_fn inside = shapes[k % NUM_SHAPES];
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int hits = 0;
            for (int sy = 0; sy < SUPERSAMPLE; sy++)
                for (int sx = 0; sx < SUPERSAMPLE; sx++) {
                    float u = (x + (sx + 0.5f) / SUPERSAMPLE - cx) * inv_r, v = (y + (sy + 0.5f) / SUPERSAMPLE - cy) * inv_r;
                    hits += inside(u, v);
                }
            float cover = hits / (float)(SUPERSAMPLE * SUPERSAMPLE);
            float back = bg + 0.06f * (noise[y * S + x] - 0.5f);
            for (int c = 0; c < C; c++) {
                float val = cover * rgb[c] + (1 - cover) * back;
                px[((size_t)c * S + y) * S + x] = (uint8_t)lrintf(fminf(fmaxf(val, 0.0f), 1.0f) * 255.0f);
            }
        }
}

static rx_status synthetic_load(const rx_params *p, const char *split, rx_dataset **out) {
    *out = NULL;
    const int n = (int)rx_param_int(p, "num_images"), S = (int)rx_param_int(p, "size");
    const int C = (int)rx_param_int(p, "channels"), K = (int)rx_param_int(p, "num_classes");
    const uint64_t seed = (uint64_t)rx_param_int(p, "seed"), split_id = !strcmp(split, "train") ? 0 : 1;
    if (C != 1 && C != 3) return rx_fail(RX_ERR_CONFIG, "dataset synthetic: channels must be 1 or 3, got %d", C);
    char name[64];
    snprintf(name, sizeof name, "synthetic/%s", split);
    rx_dataset *d;
    RX_TRY(rx_dataset_alloc(name, n, C, S, S, K, &d));
    const char *shape_names[NUM_SHAPES] = {"disk", "square", "triangle", "ring", "cross", "diamond", "bar", "x"};
    for (int k = 0; k < K; k++) {
        char cls[64];
        snprintf(cls, sizeof cls, "%s_%d", shape_names[k % NUM_SHAPES], k);
        rx_status st = rx_dataset_set_class_name(d, k, cls);
        if (st != RX_OK) { rx_dataset_free(d); return st; }
    }
    int failed = 0;
    #pragma omp parallel
    {
        float *noise = malloc((size_t)S * S * sizeof *noise);
        if (!noise) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(dynamic, 16)
        for (int i = 0; i < n; i++) {
            if (!noise) continue;
            uint64_t stream = RX_STREAM(RX_RNG_DATA, RX_DATA_SYNTHETIC | (split_id << 40) | (uint64_t)i);
            draw_image(d->pixels + (size_t)i * C * S * S, C, S, i % K, seed, stream, noise);
            d->labels[i] = i % K;
        }
        free(noise);
    }
    if (failed) { rx_dataset_free(d); return rx_fail(RX_ERR_OOM, "dataset synthetic: out of memory"); }
    *out = d;
    return RX_OK;
}

static const rx_dataset_impl synthetic_impl = {synthetic_load};
const rx_component rx_comp_dataset_synthetic = {
    RX_KIND_DATASET, "synthetic",
    "coloured shapes, one shape+colour per class, position/size from the seed; any size, no files",
    synthetic_params, &synthetic_impl, NULL};
