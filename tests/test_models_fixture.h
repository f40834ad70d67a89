/* test_models_fixture.h — the diffusers golden-fixture check shared by test_models_unet.c and
 * test_models_dit.c. The fixtures come from tests/fixtures/gen_models.py (see its docstring for the
 * layout: <name>_io.safetensors holds x, t, labels, target, out, loss and, per parameter,
 * grad.<key> (F16, scaled by 2^k) and grad_scale.<key> = 2^-k). */
#ifndef RX_TEST_MODELS_FIXTURE_H
#define RX_TEST_MODELS_FIXTURE_H

#include "gradcheck.h"   /* rx_test_cpu_ctx, rx_test_randn */
#include "blocks/model.h"
#include "io/fsutil.h"
#include "io/safetensors.h"
#include <jansson.h>

#define ASSERT_OK(expr) do { rx_status s_ = (expr); cr_assert_eq(s_, RX_OK, "%s -> %s", #expr, rx_last_error()); } while (0)

/* params of `comp` from its defaults plus "key", "value" pairs (NULL-terminated) */
static inline rx_params *fx_params(const rx_component *comp, const char *const *kv) {
    rx_params *p = NULL;
    ASSERT_OK(rx_params_from_defaults(comp->name, comp->params, &p));
    for (int i = 0; kv && kv[i]; i += 2)
        cr_assert_eq(rx_params_set(p, kv[i], kv[i + 1]), RX_OK, "%s = %s: %s", kv[i], kv[i + 1], rx_last_error());
    return p;
}

/* tensor `name` of f as a malloc'd float32 array; numel in *n */
static inline float *fx_read(const rx_st_file *f, const char *name, int64_t *n) {
    const rx_st_tensor *t = rx_st_find(f, name);
    cr_assert(t, "%s: no tensor '%s' (regenerate with tests/fixtures/gen_models.py)", rx_st_path(f), name);
    float *h = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *h);
    cr_assert(h);
    ASSERT_OK(rx_st_read_f32(f, name, h, t->numel));
    if (n) *n = t->numel;
    return h;
}

static inline rx_tensor *fx_tensor(rx_ctx *c, const rx_st_file *f, const char *name) {
    const rx_st_tensor *t = rx_st_find(f, name);
    cr_assert(t, "%s: no tensor '%s'", rx_st_path(f), name);
    float *h = fx_read(f, name, NULL);
    rx_tensor *x = rx_from_host(c, t->ndim, t->shape, h);
    free(h);
    cr_assert(x, "%s", rx_last_error());
    return x;
}

static inline int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

typedef struct fx_result {
    double out_err, loss_err, grad_err_max;
    const char *worst;          /* parameter with the largest gradient error */
    double grad_err_f32;        /* largest error over the gradients stored in F32 (vectors) */
    int n_grads;
} fx_result;

/* Forward the inputs of io file f (x, t, labels) through m and compare with its `out`, diffusers'
 * output (rx_rel_err: max abs difference / max |reference|); *err gets the error. With save_dir, also
 * writes save_dir/c_forward.safetensors (x, t, labels, out) for gen_models.py --check. */
static inline rx_tensor *fx_forward(rx_ctx *c, rx_model *m, const rx_st_file *f, double out_tol, const char *save_dir,
                                    double *err) {
    rx_tensor *x = fx_tensor(c, f, "x"), *t = fx_tensor(c, f, "t"), *labels = fx_tensor(c, f, "labels");
    rx_tensor *out = m->impl->forward(c, m, x, t, labels);
    cr_assert(out, "forward: %s", rx_last_error());
    int64_t n_ref;
    float *ref = fx_read(f, "out", &n_ref);
    cr_assert_eq(out->numel, n_ref, "output %s has %lld elements, diffusers' %lld", RX_SHAPE_STR(out),
                 (long long)out->numel, (long long)n_ref);
    float *got = malloc(n_ref * sizeof *got);
    ASSERT_OK(rx_tensor_to_host(c, out, got));
    *err = rx_rel_err(got, ref, n_ref);
    cr_expect(*err < out_tol, "forward: relative error %.3g vs diffusers (tolerance %.0e)", *err, out_tol);

    if (save_dir) {
        float *hx = malloc(x->numel * sizeof(float)), *ht = malloc(t->numel * sizeof(float)),
              *hl = malloc(labels->numel * sizeof(float));
        ASSERT_OK(rx_tensor_to_host(c, x, hx));
        ASSERT_OK(rx_tensor_to_host(c, t, ht));
        ASSERT_OK(rx_tensor_to_host(c, labels, hl));
        rx_st_writer *w = NULL;
        ASSERT_OK(rx_st_writer_create(&w));
        ASSERT_OK(rx_st_writer_add_f32(w, "x", x->ndim, x->shape, hx));
        ASSERT_OK(rx_st_writer_add_f32(w, "t", t->ndim, t->shape, ht));
        ASSERT_OK(rx_st_writer_add_f32(w, "labels", labels->ndim, labels->shape, hl));
        ASSERT_OK(rx_st_writer_add_f32(w, "out", out->ndim, out->shape, got));
        char path[512];
        snprintf(path, sizeof path, "%s/c_forward.safetensors", save_dir);
        ASSERT_OK(rx_st_writer_write(w, path));
        rx_st_writer_free(w);
        free(hx); free(ht); free(hl);
    }
    free(ref);
    free(got);
    return out;
}

/* fx_forward on the fixture inputs, then the MSE loss backward: compare every parameter gradient
 * (rx_rel_err). */
static inline fx_result fx_check(rx_ctx *c, rx_model *m, const char *io_path, double out_tol, double grad_tol,
                                 const char *save_dir) {
    fx_result r = {0};
    rx_st_file *f = NULL;
    ASSERT_OK(rx_st_open(io_path, &f));
    ASSERT_OK(rx_paramset_zero_grad(c, &m->params));
    rx_tensor *out = fx_forward(c, m, f, out_tol, save_dir, &r.out_err);
    rx_tensor *target = fx_tensor(c, f, "target");

    /* reference: torch.mean((out - target)^2) and its autograd gradients */
    rx_tensor *loss = rx_mse_loss(c, out, target, NULL);
    cr_assert(loss, "%s", rx_last_error());
    float l, *lref = fx_read(f, "loss", NULL);
    ASSERT_OK(rx_tensor_to_host(c, loss, &l));
    r.loss_err = fabs(l - lref[0]) / fabs(lref[0]);
    cr_expect(r.loss_err < out_tol, "loss %.7g, diffusers %.7g", l, lref[0]);
    ASSERT_OK(rx_backward(c, loss));
    rx_step_end(c);

    int n_fixture_grads = 0;
    for (int i = 0; i < rx_st_count(f); i++)
        if (!strncmp(rx_st_tensor_at(f, i)->name, "grad.", 5)) n_fixture_grads++;
    cr_expect_eq(n_fixture_grads, m->params.n, "fixture has %d gradients, the model %d parameters",
                 n_fixture_grads, m->params.n);
    for (int i = 0; i < m->params.n; i++) {
        rx_tensor *p = m->params.t[i];
        char key[400];
        snprintf(key, sizeof key, "grad.%s", p->name);
        if (!rx_st_find(f, key)) { cr_expect(0, "no diffusers gradient for parameter %s", p->name); continue; }
        int64_t n;
        float *g = fx_read(f, key, &n);
        int stored_f32 = rx_st_find(f, key)->dtype == RX_ST_F32;
        snprintf(key, sizeof key, "grad_scale.%s", p->name);
        float *scale = fx_read(f, key, NULL);
        for (int64_t j = 0; j < n; j++) g[j] *= scale[0];
        cr_assert_eq(n, p->numel, "%s: %lld elements, diffusers' %lld", p->name, (long long)p->numel, (long long)n);
        cr_assert(p->grad, "%s: no gradient", p->name);
        float *pg = malloc(n * sizeof *pg);
        ASSERT_OK(rx_tensor_to_host(c, p->grad, pg));
        double e = rx_rel_err(pg, g, n);
        if (ends_with(p->name, "to_k.bias")) {
            /* d loss / d key bias is exactly 0 (softmax over keys ignores q.b, the same for every key):
             * both sides are rounding noise, so measure the difference on the scale of the key weights' gradient */
            char wkey[400];
            snprintf(wkey, sizeof wkey, "grad.%.*sweight", (int)(strlen(p->name) - 4), p->name);
            int64_t nw;
            float *gw = fx_read(f, wkey, &nw);
            snprintf(wkey, sizeof wkey, "grad_scale.%.*sweight", (int)(strlen(p->name) - 4), p->name);
            float *sw = fx_read(f, wkey, NULL);
            double num = 0, den = 0;
            for (int64_t j = 0; j < n; j++) num = fmax(num, fabs((double)pg[j] - g[j]));
            for (int64_t j = 0; j < nw; j++) den = fmax(den, fabs((double)gw[j] * sw[0]));
            e = num / den;
            free(gw); free(sw);
        }
        cr_expect(e < grad_tol, "d loss / d %s: relative error %.3g vs diffusers (tolerance %.0e)", p->name, e, grad_tol);
        if (e > r.grad_err_max || !r.worst) { r.grad_err_max = e; r.worst = p->name; }
        if (stored_f32 && e > r.grad_err_f32) r.grad_err_f32 = e;
        r.n_grads++;
        free(g); free(scale); free(pg);
    }
    free(lref);
    rx_st_close(f);
    return r;
}

/* config.json must parse; returns it (caller json_decref) */
static inline json_t *fx_read_config(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    cr_assert(j, "%s: %s (line %d)", path, jerr.text, jerr.line);
    return j;
}

#endif
