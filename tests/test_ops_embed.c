/* test_ops_embed.c — embedding lookup and the sinusoidal timestep embedding.
 * References: nn.Embedding's definition (row gather; scatter-add of the gradient) written out
 * in this file; diffusers.models.embeddings.get_timestep_embedding through the fixture
 * tests/fixtures/ops_embed_timestep.json (made by tests/fixtures/gen_ops_embed.py) and its
 * formula in double; central finite differences (gradcheck.h). */
#include "gradcheck.h"
#include <jansson.h>

static float *host(rx_ctx *c, const rx_tensor *t) {
    float *h = malloc(t->numel * sizeof(float));
    cr_assert_eq(rx_tensor_to_host(c, t, h), RX_OK);
    return h;
}

static rx_tensor *f_embed(rx_ctx *c, rx_tensor **in, void *ud) { return rx_embedding(c, in[0], in[1]); }

Test(embed, embedding_forward_and_gradcheck) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *table = rx_param(c, "table", RX_SHAPE(5, 3), 1);
    rx_test_randn(c, table, 1, 1.0f);
    const float ids[7] = {4, 0, 2, 2, 1, 4, 2};   /* repeats: their gradients add */
    rx_tensor *idx = rx_param(c, "idx", RX_SHAPE(7), 0);
    rx_tensor_from_host(c, idx, ids);
    rx_tensor *y = rx_embedding(c, table, idx);
    cr_assert(y, "%s", rx_last_error());
    cr_assert(y->ndim == 2 && y->shape[0] == 7 && y->shape[1] == 3);
    float *ht = host(c, table), *hy = host(c, y);
    for (int i = 0; i < 7; i++)
        for (int d = 0; d < 3; d++) cr_expect_eq(hy[i * 3 + d], ht[(int)ids[i] * 3 + d], "y[%d,%d]", i, d);
    /* idx of any shape: [2,3] -> [2,3,D] */
    rx_tensor *idx2 = rx_from_host(c, RX_SHAPE(2, 3), ids);
    rx_tensor *y2 = rx_embedding(c, table, idx2);
    cr_assert(y2 && y2->ndim == 3 && y2->shape[2] == 3);
    float *hy2 = host(c, y2);
    cr_expect_eq(memcmp(hy2, hy, 6 * 3 * sizeof(float)), 0);
    rx_step_end(c);
    rx_tensor *in[2] = {table, idx};
    rx_gradcheck(c, f_embed, NULL, 2, in, 1e-2, 1e-3, 1e-3, 100);
    free(ht); free(hy); free(hy2);
    rx_ctx_destroy(c);
}

/* the parallel scatter (threads own column ranges) against the scatter-add in double */
Test(embed, embedding_backward_scatter_adds) {
    rx_ctx *c = rx_test_cpu_ctx();
    const int64_t V = 11, D = 96, N = 700;
    rx_tensor *table = rx_param(c, "table", RX_SHAPE(V, D), 1);
    rx_test_randn(c, table, 2, 1.0f);
    float *ids = malloc(N * sizeof(float)), *seed = malloc(N * D * sizeof(float));
    for (int64_t i = 0; i < N; i++) ids[i] = (float)((i * 7 + i / 13) % V);
    rx_rng_normal(9, RX_STREAM(RX_RNG_TEST, 1), 0, seed, N * D);
    rx_tensor *y = rx_embedding(c, table, rx_from_host(c, RX_SHAPE(N), ids));
    cr_assert(y, "%s", rx_last_error());
    cr_assert_eq(rx_backward_with(c, y, rx_from_host(c, RX_SHAPE(N, D), seed)), RX_OK, "%s", rx_last_error());
    double *ref = calloc(V * D, sizeof(double));
    for (int64_t i = 0; i < N; i++)
        for (int64_t d = 0; d < D; d++) ref[(int64_t)ids[i] * D + d] += seed[i * D + d];
    float *g = host(c, table->grad);
    for (int64_t k = 0; k < V * D; k++) cr_assert(fabs(g[k] - ref[k]) < 1e-4 * (1 + fabs(ref[k])), "dtable[%lld]", (long long)k);
    free(ids); free(seed); free(ref); free(g);
    rx_ctx_destroy(c);
}

Test(embed, embedding_errors_name_index_and_table) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *table = rx_zeros(c, RX_SHAPE(5, 3));
    const struct { float v; const char *msg; } bad[] = {
        {5.0f, "embedding: idx[2] = 5 is not a row of table [5,3] (whole numbers in [0, 5))"},
        {-1.0f, "embedding: idx[2] = -1 is not a row of table [5,3]"},
        {1.5f, "embedding: idx[2] = 1.5 is not a row of table [5,3]"},
        {NAN, "embedding: idx[2] = nan is not a row of table [5,3]"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        const float ids[3] = {0, 4, bad[k].v};
        cr_expect_null(rx_embedding(c, table, rx_from_host(c, RX_SHAPE(3), ids)));
        cr_expect_eq(rx_ctx_status(c), RX_ERR_ARG);
        cr_expect(strstr(rx_last_error(), bad[k].msg), "%s", rx_last_error());
        rx_ctx_clear_error(c);
    }
    cr_expect_null(rx_embedding(c, rx_zeros(c, RX_SHAPE(5)), rx_zeros(c, RX_SHAPE(3))));
    cr_expect(strstr(rx_last_error(), "embedding: table [5] must be [V,D] and idx [3] have at most 4 dims"), "%s",
              rx_last_error());
    rx_ctx_destroy(c);
}

/* ---- timestep embedding ------------------------------------------------------------------- */

/* get_timestep_embedding's formula in double */
static double ref_temb(double t, int dim, int flip, double shift, double scale, double max_period, int j) {
    const int half = dim / 2;
    if (j >= 2 * half) return 0.0;   /* odd dim: zero pad */
    const int is_cos = (j >= half) != (flip != 0), k = j % half;
    const double arg = scale * t * exp(-log(max_period) * k / (half - shift));
    return is_cos ? cos(arg) : sin(arg);
}

Test(embed, timestep_embedding_matches_diffusers_fixture) {
    long len;
    char *text = rx_test_read_file("tests/fixtures/ops_embed_timestep.json", &len);
    cr_assert(text, "tests/fixtures/ops_embed_timestep.json missing (run from the repository root)");
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    cr_assert(root, "fixture: %s", jerr.text);
    json_t *cases = json_object_get(root, "cases");
    cr_assert(json_array_size(cases) >= 7);
    rx_ctx *c = rx_test_cpu_ctx();
    size_t ci;
    json_t *cs;
    json_array_foreach(cases, ci, cs) {
        const int dim = (int)json_integer_value(json_object_get(cs, "dim"));
        const int flip = json_is_true(json_object_get(cs, "flip"));
        const double shift = json_number_value(json_object_get(cs, "shift"));
        const double scale = json_number_value(json_object_get(cs, "scale"));
        const double max_period = json_number_value(json_object_get(cs, "max_period"));
        json_t *jt = json_object_get(cs, "t"), *je = json_object_get(cs, "emb");
        const int64_t N = (int64_t)json_array_size(jt);
        cr_assert_eq((int64_t)json_array_size(je), N * dim);
        float t[16];
        for (int64_t i = 0; i < N; i++) t[i] = (float)json_number_value(json_array_get(jt, i));
        rx_tensor *y = rx_timestep_embedding(c, rx_from_host(c, RX_SHAPE(N), t), dim, flip, (float)shift, (float)scale,
                                             (float)max_period);
        cr_assert(y, "case %zu: %s", ci, rx_last_error());
        cr_assert(y->ndim == 2 && y->shape[0] == N && y->shape[1] == dim);
        float *hy = host(c, y);
        double err_fix = 0, err_ref = 0;
        for (int64_t i = 0; i < N; i++)
            for (int j = 0; j < dim; j++) {
                const double want = json_number_value(json_array_get(je, i * dim + j));
                const double r = ref_temb(t[i], dim, flip, shift, scale, max_period, j);
                err_fix = fmax(err_fix, fabs(hy[i * dim + j] - want));
                err_ref = fmax(err_ref, fabs(hy[i * dim + j] - r));
                if (dim % 2 && j == dim - 1) cr_expect_eq(hy[i * dim + j], 0.0f, "odd dim pads with zero");
            }
        /* computed in float in diffusers' order, so it matches to a few float ulps (measured 6e-8);
         * the double formula differs more because arguments reach ~1000 rad (float ulp ~6e-5) */
        cr_expect_lt(err_fix, 5e-6, "case %zu (dim %d flip %d shift %g scale %g): max |diff| vs diffusers %g", ci, dim,
                     flip, shift, scale, err_fix);
        cr_expect_lt(err_ref, 5e-5, "case %zu: max |diff| vs the formula in double %g", ci, err_ref);
        free(hy);
        rx_step_end(c);
    }
    json_decref(root);
    free(text);
    rx_ctx_destroy(c);
}

/* backward is a no-op by design (timesteps are data): t->grad stays zero, the tape runs */
Test(embed, timestep_embedding_no_gradient_and_errors) {
    rx_ctx *c = rx_test_cpu_ctx();
    rx_tensor *t = rx_param(c, "t", RX_SHAPE(3), 1);
    const float tv[3] = {1, 10, 100};
    rx_tensor_from_host(c, t, tv);
    rx_tensor *y = rx_timestep_embedding(c, t, 8, 1, 0.0f, 1.0f, 10000.0f);
    cr_assert(y, "%s", rx_last_error());
    cr_assert_eq(rx_backward_with(c, y, NULL), RX_OK, "%s", rx_last_error());
    float g[3];
    rx_tensor_to_host(c, t->grad, g);
    for (int i = 0; i < 3; i++) cr_expect_eq(g[i], 0.0f);
    rx_step_end(c);

    cr_expect_null(rx_timestep_embedding(c, rx_zeros(c, RX_SHAPE(2, 3)), 8, 1, 0, 1, 10000));
    cr_expect(strstr(rx_last_error(), "timestep_embedding: t [2,3] must be 1-D [N]"), "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_timestep_embedding(c, t, 2, 0, 1.0f, 1, 10000));
    cr_expect(strstr(rx_last_error(), "timestep_embedding: dim=2: half_dim - downscale_freq_shift = 1 - 1 must be > 0"),
              "%s", rx_last_error());
    rx_ctx_clear_error(c);
    cr_expect_null(rx_timestep_embedding(c, t, 0, 0, 1.0f, 1, 10000));
    cr_expect(strstr(rx_last_error(), "timestep_embedding: dim=0 must be >= 1"), "%s", rx_last_error());
    rx_ctx_destroy(c);
}
