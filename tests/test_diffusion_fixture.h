/* test_diffusion_fixture.h — reader for tests/fixtures/schedulers.bin (written by
 * tests/fixtures/gen_schedulers.py; format in its docstring) and helpers shared by the
 * test_diffusion_*.c files: component lookup and "key=value" case configs. */
#ifndef RX_TEST_DIFFUSION_FIXTURE_H
#define RX_TEST_DIFFUSION_FIXTURE_H

#include "testutil.h"
#include "registry/components.h"
#include "diffusion/diffusion.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define DIFFUSION_FIXTURE "tests/fixtures/schedulers.bin"

typedef struct {
    const char *name;   // NUL-terminated copy
    char type;          // 'f' float32, 'u' uint32, 's' text (NUL-terminated copy)
    uint32_t count;
    const void *data;
} fx_record;

typedef struct {
    char *blob;         // the file
    char *strings;      // names and texts, NUL-terminated
    fx_record *rec;
    int n;
} fx_file;

static inline uint32_t fx_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// Loads the fixture; criterion-fails (and returns 0) when it is missing or malformed.
static inline int fx_load(fx_file *f) {
    memset(f, 0, sizeof *f);
    long len = 0;
    f->blob = rx_test_read_file(DIFFUSION_FIXTURE, &len);
    cr_assert(f->blob != NULL, "missing %s (run python3 tests/fixtures/gen_schedulers.py)", DIFFUSION_FIXTURE);
    const unsigned char *p = (const unsigned char *)f->blob, *end = p + len;
    cr_assert(len >= 12 && memcmp(p, "RXFX", 4) == 0 && fx_u32(p + 4) == 1, "bad fixture header");
    f->n = (int)fx_u32(p + 8);
    p += 12;
    f->rec = calloc((size_t)f->n, sizeof *f->rec);
    f->strings = malloc((size_t)len + (size_t)f->n * 2);   // room for every name/text plus NULs
    cr_assert(f->rec && f->strings);
    char *sp = f->strings;
    for (int i = 0; i < f->n; i++) {
        cr_assert(p + 4 <= end);
        uint32_t nl = fx_u32(p);
        p += 4;
        cr_assert(p + nl + 5 <= end);
        memcpy(sp, p, nl);
        sp[nl] = 0;
        f->rec[i].name = sp;
        sp += nl + 1;
        p += nl;
        f->rec[i].type = (char)*p++;
        f->rec[i].count = fx_u32(p);
        p += 4;
        size_t bytes = f->rec[i].type == 's' ? f->rec[i].count : (size_t)f->rec[i].count * 4;
        cr_assert(p + bytes <= end, "record %s overruns the file", f->rec[i].name);
        if (f->rec[i].type == 's') {
            memcpy(sp, p, bytes);
            sp[bytes] = 0;
            f->rec[i].data = sp;
            sp += bytes + 1;
        } else {
            f->rec[i].data = p;   // little-endian float32/uint32, 4-aligned not guaranteed: read via memcpy
        }
        p += bytes;
    }
    return 1;
}

static inline void fx_free(fx_file *f) {
    free(f->blob);
    free(f->strings);
    free(f->rec);
    memset(f, 0, sizeof *f);
}

static inline const fx_record *fx_find(const fx_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->rec[i].name, name) == 0) return &f->rec[i];
    return NULL;
}

// A float32 record copied into a fresh malloc'd array (NULL if absent).
static inline float *fx_floats(const fx_file *f, const char *name, uint32_t *count) {
    const fx_record *r = fx_find(f, name);
    if (!r) return NULL;
    cr_assert(r->type == 'f', "%s is not float32", name);
    float *a = malloc((size_t)r->count * sizeof *a + 1);
    memcpy(a, r->data, (size_t)r->count * 4);
    if (count) *count = r->count;
    return a;
}

// ---------------------------------------------------------------------------
// components by kind and name (aliases too)

// the registry's own lookup: what a config naming the component gets
static inline const rx_component *fx_component(rx_kind kind, const char *name) {
    return rx_registry_find(kind, name);
}

// Parameters of a component from its defaults.
static inline rx_params *fx_params(const rx_component *c) {
    rx_params *p = NULL;
    char label[64];
    snprintf(label, sizeof label, "%s/%s", c->kind == RX_KIND_SCHEDULE ? "schedule" : c->kind == RX_KIND_SAMPLER ? "sampler"
                                                                       : c->kind == RX_KIND_OBJECTIVE ? "objective" : "guidance",
             c->name);
    rx_status st = rx_params_from_defaults(label, c->params, &p);
    cr_assert(st == RX_OK, "%s: %s", label, rx_last_error());
    return p;
}

static inline void fx_set(rx_params *p, const char *key, const char *value) {
    rx_status st = rx_params_set(p, key, value);
    cr_assert(st == RX_OK, "%s: %s=%s: %s", p->component, key, value, rx_last_error());
}

static inline int fx_pred_from_name(const char *s) {
    static const char *names[] = {"epsilon", "v_prediction", "sample", "flow"};
    for (int k = 0; k < RX_PRED_COUNT_; k++)
        if (strcmp(names[k], s) == 0) return k;
    cr_assert_fail("unknown prediction type %s", s);
    return -1;
}

// A parsed case config: "sampler=ddim schedule=linear pred=epsilon s.steps=10 sch.rescale_betas_zero_snr=true"
typedef struct {
    const rx_component *sampler, *schedule;
    rx_params *sampler_p, *schedule_p;
    int pred;
    rx_schedule sched;
} fx_case;

static inline void fx_case_open(fx_case *c, const char *cfg) {
    memset(c, 0, sizeof *c);
    char buf[512];
    snprintf(buf, sizeof buf, "%s", cfg);
    // first pass: component names
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        cr_assert(eq, "bad token %s in %s", tok, cfg);
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        if (strcmp(k, "sampler") == 0) c->sampler = fx_component(RX_KIND_SAMPLER, v);
        else if (strcmp(k, "schedule") == 0) c->schedule = fx_component(RX_KIND_SCHEDULE, v);
        else if (strcmp(k, "pred") == 0) c->pred = fx_pred_from_name(v);
    }
    cr_assert(c->sampler || c->schedule, "no component in %s", cfg);
    if (c->sampler) c->sampler_p = fx_params(c->sampler);
    if (c->schedule) c->schedule_p = fx_params(c->schedule);
    snprintf(buf, sizeof buf, "%s", cfg);
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        *eq = 0;
        if (strncmp(tok, "s.", 2) == 0) fx_set(c->sampler_p, tok + 2, eq + 1);
        else if (strncmp(tok, "sch.", 4) == 0) fx_set(c->schedule_p, tok + 4, eq + 1);
    }
    if (c->schedule) {
        const rx_schedule_impl *si = c->schedule->impl;
        rx_status st = si->build(c->schedule_p, &c->sched);
        cr_assert(st == RX_OK, "%s: %s", cfg, rx_last_error());
    }
}

static inline void fx_case_close(fx_case *c) {
    rx_params_free(c->sampler_p);
    rx_params_free(c->schedule_p);
    rx_schedule_free(&c->sched);
    memset(c, 0, sizeof *c);
}

#endif
