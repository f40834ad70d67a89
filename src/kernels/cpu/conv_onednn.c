/* conv_onednn.c — conv2d forward, backward-data and backward-weights through oneDNN (the library
 * behind PyTorch's CPU convolutions), and the registered cpu_conv2d_fwd/_bwd that choose between
 * it and the readable reference in dense.c (im2col + OpenBLAS).
 *
 * Which one runs: $RUNEXP_CPU_CONV = auto (default: oneDNN for the shapes where it was measured
 * faster, auto_uses_onednn) | reference | onednn (every shape) | onednn-plain | onednn-blocked
 * (every shape, that layout: for measuring); cpu_conv2d_select sets the same from code. Built
 * without oneDNN (no RX_HAVE_ONEDNN) every conv runs the reference and `runexp --version` says so.
 *
 * oneDNN's state lives in the context (c->kernel_cache, freed by rx_ctx_destroy): one engine, one
 * in-order stream, and a small table of primitives keyed by pass and shape. An entry holds the
 * convolution primitive plus, per argument, the reorder between our plain NCHW / OIHW tensors and
 * the layout the convolution wants, and the memory objects, whose data handles are set per call:
 * nothing is allocated by a call after the first of its shape. Each call's scratch (oneDNN's
 * scratchpad, in user mode, and the blocked copies of the arguments) comes from the step arena.
 *
 * Gradients are added (our backward contract: n->in[k]->grad += ...) by a reorder with a sum
 * post-op from oneDNN's output into the gradient, which is also the layout conversion.
 *
 * Threads: Debian's libdnnl uses OpenMP (libgomp, as we do), so its parallel regions run on our
 * pool with omp_get_max_threads() threads; the thread count is part of the key, since oneDNN
 * plans a primitive's work split for the count it was created with. */
#include "cpu.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* onednn-plain and onednn-blocked fix oneDNN's layout for every shape (to measure the rule in
 * conv_layout_for, bench/compare --conv) */
typedef enum { CONV_IMPL_AUTO, CONV_IMPL_REFERENCE, CONV_IMPL_ONEDNN, CONV_IMPL_ONEDNN_PLAIN, CONV_IMPL_ONEDNN_BLOCKED } conv_impl;

static const struct { const char *name; conv_impl impl; } conv_impl_names[] = {
    {"auto", CONV_IMPL_AUTO}, {"reference", CONV_IMPL_REFERENCE}, {"onednn", CONV_IMPL_ONEDNN},
    {"onednn-plain", CONV_IMPL_ONEDNN_PLAIN}, {"onednn-blocked", CONV_IMPL_ONEDNN_BLOCKED},
};

static int conv_impl_of(const char *name) {
    for (size_t i = 0; i < sizeof conv_impl_names / sizeof *conv_impl_names; i++)
        if (!strcmp(name, conv_impl_names[i].name)) return conv_impl_names[i].impl;
    return -1;
}

/* the choice: $RUNEXP_CPU_CONV, read at the first conv, unless cpu_conv2d_select set it; -1 for
 * a value that is none of the names */
static int conv_choice = -2;

static int conv_impl_from_env(void) {
    if (conv_choice == -2) {
        const char *v = getenv("RUNEXP_CPU_CONV");
        conv_choice = v && *v ? conv_impl_of(v) : CONV_IMPL_AUTO;
    }
    return conv_choice;
}

static rx_status bad_env(void) {
    return rx_fail(RX_ERR_CONFIG, "RUNEXP_CPU_CONV=%s: expected auto, reference, onednn, onednn-plain or onednn-blocked",
                   getenv("RUNEXP_CPU_CONV"));
}

rx_status cpu_conv2d_check_choice(void) { return conv_impl_from_env() < 0 ? bad_env() : RX_OK; }

rx_status cpu_conv2d_select(const char *impl) {
    const int i = conv_impl_of(impl);
    if (i < 0) return rx_fail(RX_ERR_ARG, "conv2d implementation '%s': expected auto, reference, onednn, onednn-plain "
                                          "or onednn-blocked", impl);
#ifndef RX_HAVE_ONEDNN
    if (i >= CONV_IMPL_ONEDNN) return rx_fail(RX_ERR_UNIMPLEMENTED, "conv2d implementation '%s': built without oneDNN", impl);
#endif
    conv_choice = i;
    return RX_OK;
}

#ifndef RX_HAVE_ONEDNN

const char *cpu_conv2d_impl(void) { return "reference (im2col + OpenBLAS; built without oneDNN)"; }

rx_status cpu_conv2d_onednn_fwd(rx_ctx *c, rx_node *n) {
    return rx_fail(RX_ERR_UNIMPLEMENTED, "conv2d: this build has no oneDNN (install libdnnl-dev: make deps)");
}
rx_status cpu_conv2d_onednn_bwd(rx_ctx *c, rx_node *n) { return cpu_conv2d_onednn_fwd(c, n); }
const char *cpu_conv2d_onednn_impl_name(rx_ctx *c, rx_node *n, int pass) { return NULL; }

rx_status cpu_conv2d_workspace(rx_ctx *c, rx_node *n, int backward, int64_t *floats) {
    *floats = cpu_conv2d_reference_workspace(n, backward);
    return conv_impl_from_env() < 0 ? bad_env() : RX_OK;
}

rx_status cpu_conv2d_fwd(rx_ctx *c, rx_node *n) {
    if (conv_impl_from_env() >= CONV_IMPL_ONEDNN) return cpu_conv2d_onednn_fwd(c, n);
    return conv_impl_from_env() < 0 ? bad_env() : cpu_conv2d_reference_fwd(c, n);
}
rx_status cpu_conv2d_bwd(rx_ctx *c, rx_node *n) {
    if (conv_impl_from_env() >= CONV_IMPL_ONEDNN) return cpu_conv2d_onednn_bwd(c, n);
    return conv_impl_from_env() < 0 ? bad_env() : cpu_conv2d_reference_bwd(c, n);
}

#else

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdio.h>

const char *cpu_conv2d_impl(void) {
    static char s[160];
    const dnnl_version_t *v = dnnl_version();
    const int impl = conv_impl_from_env();
    if (impl == CONV_IMPL_REFERENCE) return "reference, im2col + OpenBLAS (RUNEXP_CPU_CONV=reference; oneDNN built in)";
    snprintf(s, sizeof s, "oneDNN %d.%d.%d%s", v->major, v->minor, v->patch,
             impl == CONV_IMPL_AUTO ? ", blocked layouts; im2col + OpenBLAS for 1x1 and under 8 input channels"
             : impl < 0 ? " (RUNEXP_CPU_CONV is not a valid choice)"
             : impl == CONV_IMPL_ONEDNN_PLAIN ? ", plain NCHW, every conv (RUNEXP_CPU_CONV=onednn-plain)"
                                               : ", blocked layouts, every conv (RUNEXP_CPU_CONV)");
    return s;
}

typedef enum { PASS_FWD, PASS_BWD_DATA, PASS_BWD_WEIGHTS } conv_pass;
static const char *const pass_names[] = {"forward", "backward-data", "backward-weights"};

/* the argument slots of each pass: which oneDNN argument, which of our tensors, and whether
 * it is read, written, or added into (gradients) */
typedef enum { T_X, T_W, T_B, T_Y, T_GX, T_GW, T_GB, T_GY } conv_tensor;
typedef enum { DIR_IN, DIR_OUT, DIR_ADD } conv_dir;
typedef struct { int arg; conv_tensor t; conv_dir dir; } conv_slot;
enum { MAX_SLOTS = 4 };
static const conv_slot pass_slots[][MAX_SLOTS] = {
    [PASS_FWD] = {{DNNL_ARG_SRC, T_X, DIR_IN}, {DNNL_ARG_WEIGHTS, T_W, DIR_IN}, {DNNL_ARG_BIAS, T_B, DIR_IN},
                  {DNNL_ARG_DST, T_Y, DIR_OUT}},
    [PASS_BWD_DATA] = {{DNNL_ARG_DIFF_DST, T_GY, DIR_IN}, {DNNL_ARG_WEIGHTS, T_W, DIR_IN},
                       {DNNL_ARG_DIFF_SRC, T_GX, DIR_ADD}},
    [PASS_BWD_WEIGHTS] = {{DNNL_ARG_SRC, T_X, DIR_IN}, {DNNL_ARG_DIFF_DST, T_GY, DIR_IN},
                          {DNNL_ARG_DIFF_WEIGHTS, T_GW, DIR_ADD}, {DNNL_ARG_DIFF_BIAS, T_GB, DIR_ADD}},
};

/* the shape of one conv: x [B,Ci,H,W] * w [Co,Ci,kh,kw] -> y [B,Co,Ho,Wo] */
typedef struct { int64_t B, Ci, H, W, Co, kh, kw, Ho, Wo, stride, pad; } conv_shape;

static conv_shape conv_shape_of(const rx_node *n) {
    const rx_tensor *x = n->in[0], *w = n->in[1], *y = n->out;
    return (conv_shape){x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2], w->shape[3],
                        y->shape[2], y->shape[3], n->i[0], n->i[1]};
}

/* one argument of a cached primitive: our plain memory and, when the convolution wants another
 * layout or the result is added, oneDNN's copy (at `offset` floats into the call's scratch) with
 * the reorder between the two */
typedef struct {
    conv_slot slot;
    dnnl_memory_t user, inner;       /* inner == user when no reorder */
    dnnl_primitive_t reorder;        /* user -> inner (IN) or inner -> user (OUT, ADD: with a sum) */
    int64_t offset;
} conv_arg;

enum { KEY_LEN = 16 };
typedef struct {
    int64_t key[KEY_LEN];
    int used, unsupported;            /* unsupported: oneDNN has no implementation; the reference runs */
    uint64_t last_use;
    dnnl_primitive_t conv;
    conv_arg args[MAX_SLOTS];
    int nargs;
    dnnl_memory_t scratchpad;         /* shared by the conv and its reorders (they run in turn) */
    int64_t scratchpad_offset, scratch_floats;   /* the call's scratch: inner copies, then scratchpad */
    char impl[64];                    /* oneDNN's implementation name, for the notes and the tests */
} conv_prim;

enum { CACHE_SIZE = 96 };   /* the seed U-Net has ~40 conv shapes x 3 passes at one batch size */
typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    conv_prim prims[CACHE_SIZE];
    uint64_t clock;
} onednn_state;

#define DNNL_TRY(call, what)                                                                   \
    do {                                                                                       \
        dnnl_status_t st_ = (call);                                                            \
        if (st_ != dnnl_success) return dnnl_fail(st_, what, pass, s);                         \
    } while (0)

static rx_status dnnl_fail(dnnl_status_t st, const char *what, conv_pass pass, const conv_shape *s) {
    return rx_fail(st == dnnl_out_of_memory ? RX_ERR_OOM : RX_ERR_INTERNAL,
                   "conv2d %s x [%lld,%lld,%lld,%lld] w [%lld,%lld,%lld,%lld] stride %lld pad %lld: oneDNN %s: %s",
                   pass_names[pass], (long long)s->B, (long long)s->Ci, (long long)s->H, (long long)s->W,
                   (long long)s->Co, (long long)s->Ci, (long long)s->kh, (long long)s->kw, (long long)s->stride,
                   (long long)s->pad, what, dnnl_status2str(st));
}

static void conv_prim_destroy(conv_prim *p) {
    for (int i = 0; i < p->nargs; i++) {
        conv_arg *a = &p->args[i];
        if (a->reorder) dnnl_primitive_destroy(a->reorder);
        if (a->inner && a->inner != a->user) dnnl_memory_destroy(a->inner);
        if (a->user) dnnl_memory_destroy(a->user);
    }
    if (p->scratchpad) dnnl_memory_destroy(p->scratchpad);
    if (p->conv) dnnl_primitive_destroy(p->conv);
    memset(p, 0, sizeof *p);
}

static void onednn_state_free(void *ptr) {
    onednn_state *st = ptr;
    if (!st) return;
    for (int i = 0; i < CACHE_SIZE; i++) conv_prim_destroy(&st->prims[i]);
    if (st->stream) dnnl_stream_destroy(st->stream);
    if (st->engine) dnnl_engine_destroy(st->engine);
    free(st);
}

static rx_status onednn_state_get(rx_ctx *c, onednn_state **out) {
    if (c->kernel_cache) { *out = c->kernel_cache; return RX_OK; }
    onednn_state *st = calloc(1, sizeof *st);
    if (!st) return rx_fail(RX_ERR_OOM, "conv2d: out of host memory for oneDNN's state");
    dnnl_status_t e = dnnl_engine_create(&st->engine, dnnl_cpu, 0);
    if (e == dnnl_success) e = dnnl_stream_create(&st->stream, st->engine, dnnl_stream_default_flags);
    if (e != dnnl_success) {
        onednn_state_free(st);
        return rx_fail(RX_ERR_INTERNAL, "conv2d: creating oneDNN's CPU engine and stream: %s", dnnl_status2str(e));
    }
    c->kernel_cache = st;
    c->kernel_cache_free = onednn_state_free;
    *out = st;
    return RX_OK;
}

/* plain row-major descriptors of our tensors: x, y, gx, gy [N,C,H,W]; w, gw [O,I,kh,kw]; b, gb [O] */
static void user_md(const conv_shape *s, conv_tensor t, dnnl_memory_desc_t *md) {
    const dnnl_dims_t xd = {s->B, s->Ci, s->H, s->W}, yd = {s->B, s->Co, s->Ho, s->Wo}, wd = {s->Co, s->Ci, s->kh, s->kw};
    const dnnl_dims_t bd = {s->Co};
    switch (t) {
    case T_X: case T_GX: dnnl_memory_desc_init_by_tag(md, 4, xd, dnnl_f32, dnnl_abcd); break;
    case T_Y: case T_GY: dnnl_memory_desc_init_by_tag(md, 4, yd, dnnl_f32, dnnl_abcd); break;
    case T_W: case T_GW: dnnl_memory_desc_init_by_tag(md, 4, wd, dnnl_f32, dnnl_abcd); break;
    case T_B: case T_GB: dnnl_memory_desc_init_by_tag(md, 1, bd, dnnl_f32, dnnl_a); break;
    }
}

/* Layouts: PLAIN gives oneDNN our NCHW / OIHW tensors as they are; BLOCKED lets it choose
 * (format_tag_any: nChw8c / OIhw8i8o on AVX2) and pays a reorder each way. */
typedef enum { LAYOUT_PLAIN, LAYOUT_BLOCKED } conv_layout;

/* the convolution's descriptor for a pass, in a layout */
static dnnl_status_t conv_desc(const conv_shape *s, conv_pass pass, int bias, conv_layout layout,
                               dnnl_convolution_desc_t *cd) {
    dnnl_memory_desc_t x, w, b, y;
    const dnnl_dims_t xd = {s->B, s->Ci, s->H, s->W}, yd = {s->B, s->Co, s->Ho, s->Wo}, wd = {s->Co, s->Ci, s->kh, s->kw};
    const dnnl_format_tag_t tag = layout == LAYOUT_BLOCKED ? dnnl_format_tag_any : dnnl_abcd;
    dnnl_memory_desc_init_by_tag(&x, 4, xd, dnnl_f32, tag);
    dnnl_memory_desc_init_by_tag(&y, 4, yd, dnnl_f32, tag);
    dnnl_memory_desc_init_by_tag(&w, 4, wd, dnnl_f32, tag);
    user_md(s, T_B, &b);
    /* padding on the right: whatever makes the output Ho x Wo (stride > 1 can leave rows unused) */
    const dnnl_dims_t strides = {s->stride, s->stride}, pad_l = {s->pad, s->pad};
    const dnnl_dims_t pad_r = {(s->Ho - 1) * s->stride + s->kh - s->H - s->pad, (s->Wo - 1) * s->stride + s->kw - s->W - s->pad};
    switch (pass) {
    case PASS_FWD:
        return dnnl_convolution_forward_desc_init(cd, dnnl_forward_training, dnnl_convolution_direct, &x, &w,
                                                  bias ? &b : NULL, &y, strides, pad_l, pad_r);
    case PASS_BWD_DATA:
        return dnnl_convolution_backward_data_desc_init(cd, dnnl_convolution_direct, &x, &w, &y, strides, pad_l, pad_r);
    case PASS_BWD_WEIGHTS:
        return dnnl_convolution_backward_weights_desc_init(cd, dnnl_convolution_direct, &x, &w, bias ? &b : NULL, &y,
                                                           strides, pad_l, pad_r);
    }
    return dnnl_invalid_arguments;
}

static int64_t round_up16(size_t bytes) { return (int64_t)((bytes / sizeof(float) + 15) & ~(size_t)15); }

/* a primitive descriptor with user-managed scratchpad (and a sum post-op when `accumulate`) */
static dnnl_status_t make_attr(int accumulate, dnnl_primitive_attr_t *attr) {
    dnnl_status_t e = dnnl_primitive_attr_create(attr);
    if (e == dnnl_success) e = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (e == dnnl_success && accumulate) {
        dnnl_post_ops_t po;
        e = dnnl_post_ops_create(&po);
        if (e == dnnl_success) e = dnnl_post_ops_append_sum(po, 1.0f);
        if (e == dnnl_success) e = dnnl_primitive_attr_set_post_ops(*attr, po);
        dnnl_post_ops_destroy(po);
    }
    return e;
}

static size_t scratchpad_bytes(const_dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

/* one argument of p: our memory, oneDNN's, the reorder between them; grows p->scratch_floats
 * by the inner copy and *scratchpad to the reorder's scratchpad */
static rx_status make_arg(onednn_state *st, conv_prim *p, const_dnnl_primitive_desc_t conv_pd, const conv_slot *slot,
                          const conv_shape *s, conv_pass pass, size_t *scratchpad) {
    conv_arg *a = &p->args[p->nargs++];
    a->slot = *slot;
    dnnl_memory_desc_t umd;
    user_md(s, slot->t, &umd);
    const dnnl_memory_desc_t *imd = dnnl_primitive_desc_query_md(conv_pd, dnnl_query_exec_arg_md, slot->arg);
    if (!imd) return dnnl_fail(dnnl_runtime_error, "no memory descriptor for an argument", pass, s);
    DNNL_TRY(dnnl_memory_create(&a->user, &umd, st->engine, DNNL_MEMORY_NONE), "memory_create");
    a->inner = a->user;
    if (slot->dir != DIR_ADD && dnnl_memory_desc_equal(&umd, imd)) return RX_OK;
    DNNL_TRY(dnnl_memory_create(&a->inner, imd, st->engine, DNNL_MEMORY_NONE), "memory_create");
    a->offset = p->scratch_floats;
    p->scratch_floats += round_up16(dnnl_memory_desc_get_size(imd));
    dnnl_primitive_attr_t attr;
    dnnl_primitive_desc_t rpd;
    DNNL_TRY(make_attr(slot->dir == DIR_ADD, &attr), "reorder attributes");
    dnnl_status_t e = slot->dir == DIR_IN ? dnnl_reorder_primitive_desc_create(&rpd, &umd, st->engine, imd, st->engine, attr)
                                          : dnnl_reorder_primitive_desc_create(&rpd, imd, st->engine, &umd, st->engine, attr);
    dnnl_primitive_attr_destroy(attr);
    DNNL_TRY(e, "reorder_primitive_desc_create");
    const size_t sp = scratchpad_bytes(rpd);
    if (sp > *scratchpad) *scratchpad = sp;
    e = dnnl_primitive_create(&a->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    DNNL_TRY(e, "reorder primitive_create");
    return RX_OK;
}

/* builds p for (pass, shape, bias, layout): the convolution (backward passes hinted by the
 * forward, as oneDNN requires), its arguments and its scratch size. dnnl_unimplemented marks p
 * unsupported (the reference runs that shape); other failures are errors. */
static rx_status conv_prim_build(onednn_state *st, conv_prim *p, conv_pass pass, const conv_shape *s, int bias,
                                 conv_layout layout) {
    dnnl_convolution_desc_t cd, fd;
    dnnl_primitive_desc_t pd = NULL, hint = NULL;
    dnnl_primitive_attr_t attr;
    DNNL_TRY(conv_desc(s, pass, bias, layout, &cd), "convolution_desc_init");
    DNNL_TRY(make_attr(0, &attr), "attributes");
    dnnl_status_t e = dnnl_success;
    if (pass != PASS_FWD) {
        e = conv_desc(s, PASS_FWD, bias, layout, &fd);
        if (e == dnnl_success) e = dnnl_primitive_desc_create(&hint, &fd, NULL, st->engine, NULL);
    }
    if (e == dnnl_success) e = dnnl_primitive_desc_create(&pd, &cd, attr, st->engine, hint);
    dnnl_primitive_attr_destroy(attr);
    if (hint) dnnl_primitive_desc_destroy(hint);
    if (e == dnnl_unimplemented) { p->unsupported = 1; return RX_OK; }
    DNNL_TRY(e, "primitive_desc_create");
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(p->impl, sizeof p->impl, "%s", impl ? impl : "?");
    size_t scratchpad = scratchpad_bytes(pd);
    rx_status rs = RX_OK;
    for (int i = 0; i < MAX_SLOTS && pass_slots[pass][i].arg && !rs; i++) {
        const conv_slot *slot = &pass_slots[pass][i];
        if ((slot->t == T_B || slot->t == T_GB) && !bias) continue;
        rs = make_arg(st, p, pd, slot, s, pass, &scratchpad);
    }
    if (!rs) {
        p->scratchpad_offset = p->scratch_floats;
        p->scratch_floats += round_up16(scratchpad);
        dnnl_memory_desc_t spmd;
        const dnnl_dims_t spd = {(dnnl_dim_t)(scratchpad ? scratchpad : 1)};
        dnnl_memory_desc_init_by_tag(&spmd, 1, spd, dnnl_u8, dnnl_a);
        e = dnnl_memory_create(&p->scratchpad, &spmd, st->engine, DNNL_MEMORY_NONE);
        if (e == dnnl_success) e = dnnl_primitive_create(&p->conv, pd);
        if (e != dnnl_success) rs = dnnl_fail(e, "primitive_create", pass, s);
    }
    dnnl_primitive_desc_destroy(pd);
    return rs;
}

/* the cached primitive for (pass, shape, bias, layout, threads), built on first use; the least
 * recently used entry makes room when the table is full */
static rx_status conv_prim_get(rx_ctx *c, conv_pass pass, const conv_shape *s, int bias, conv_layout layout,
                               conv_prim **out) {
    onednn_state *st = NULL;
    RX_TRY(onednn_state_get(c, &st));
    const int64_t key[KEY_LEN] = {pass, layout, bias, omp_get_max_threads(), s->B, s->Ci, s->H, s->W,
                                  s->Co, s->kh, s->kw, s->Ho, s->Wo, s->stride, s->pad, 1};
    conv_prim *victim = &st->prims[0];
    for (int i = 0; i < CACHE_SIZE; i++) {
        conv_prim *p = &st->prims[i];
        if (p->used && !memcmp(p->key, key, sizeof key)) {
            p->last_use = ++st->clock;
            *out = p;
            return RX_OK;
        }
        if (!p->used ? victim->used : p->last_use < victim->last_use) victim = p;
    }
    conv_prim_destroy(victim);
    memcpy(victim->key, key, sizeof key);
    victim->used = 1;
    victim->last_use = ++st->clock;
    rx_status rs = conv_prim_build(st, victim, pass, s, bias, layout);
    if (rs) { conv_prim_destroy(victim); return rs; }
    *out = victim;
    return RX_OK;
}

/* our tensor's data for a slot of node n */
static float *slot_data(rx_node *n, conv_tensor t) {
    switch (t) {
    case T_X: return n->in[0]->data;
    case T_W: return n->in[1]->data;
    case T_B: return n->in[2] ? n->in[2]->data : NULL;
    case T_Y: return n->out->data;
    case T_GY: return n->out->grad->data;
    case T_GX: return cpu_in_grad(n, 0);
    case T_GW: return cpu_in_grad(n, 1);
    case T_GB: return cpu_in_grad(n, 2);
    }
    return NULL;
}

/* one pass of node n on primitive p: inputs reordered in, the convolution, outputs reordered
 * (or added) out; `scratch` holds p->scratch_floats floats */
static rx_status conv_prim_run(onednn_state *st, conv_prim *p, rx_node *n, float *scratch, conv_pass pass,
                               const conv_shape *s) {
    dnnl_exec_arg_t args[MAX_SLOTS + 1];
    for (int i = 0; i < p->nargs; i++) {
        conv_arg *a = &p->args[i];
        DNNL_TRY(dnnl_memory_set_data_handle(a->user, slot_data(n, a->slot.t)), "memory_set_data_handle");
        if (a->inner != a->user) DNNL_TRY(dnnl_memory_set_data_handle(a->inner, scratch + a->offset), "memory_set_data_handle");
        args[i] = (dnnl_exec_arg_t){a->slot.arg, a->inner};
    }
    DNNL_TRY(dnnl_memory_set_data_handle(p->scratchpad, scratch + p->scratchpad_offset), "memory_set_data_handle");
    args[p->nargs] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratchpad};
    for (int i = 0; i < p->nargs; i++) {
        conv_arg *a = &p->args[i];
        if (a->slot.dir != DIR_IN || !a->reorder) continue;
        const dnnl_exec_arg_t r[] = {{DNNL_ARG_FROM, a->user}, {DNNL_ARG_TO, a->inner}, {DNNL_ARG_SCRATCHPAD, p->scratchpad}};
        DNNL_TRY(dnnl_primitive_execute(a->reorder, st->stream, 3, r), "reorder in");
    }
    DNNL_TRY(dnnl_primitive_execute(p->conv, st->stream, p->nargs + 1, args), "execute");
    for (int i = 0; i < p->nargs; i++) {
        conv_arg *a = &p->args[i];
        if (a->slot.dir == DIR_IN || !a->reorder) continue;
        const dnnl_exec_arg_t r[] = {{DNNL_ARG_FROM, a->inner}, {DNNL_ARG_TO, a->user}, {DNNL_ARG_SCRATCHPAD, p->scratchpad}};
        DNNL_TRY(dnnl_primitive_execute(a->reorder, st->stream, 3, r), "reorder out");
    }
    DNNL_TRY(dnnl_stream_wait(st->stream), "stream_wait");
    return RX_OK;
}

/* oneDNN's layout: blocked, unless $RUNEXP_CPU_CONV=onednn-plain. Measured (bench/conv, bench/NOTES.md
 * "Issue 15: oneDNN convolutions"): plain NCHW gets oneDNN's gemm-based convolution, which lost
 * to the reference at most shapes (backward up to 2-3x); blocked won every 3x3 of 16+ channels. */
static conv_layout conv_layout_for(const conv_shape *s, conv_pass pass) {
    return conv_impl_from_env() == CONV_IMPL_ONEDNN_PLAIN ? LAYOUT_PLAIN : LAYOUT_BLOCKED;
}

/* The rule of `auto`, per shape, from the same measurements: the reference for a pointwise conv
 * (1x1, stride 1, no padding: already one plain GEMM on the input, nothing to lower, and the
 * blocked reorders cost more than they save: backward 3-4x slower through oneDNN) and for fewer
 * than 8 input channels (the stems, 1 or 3 channels: the blocked layout pads channels to 8 and
 * oneDNN's backward lost 2x); oneDNN, blocked, for every other shape. */
static int auto_uses_onednn(rx_node *n) {
    const conv_shape s = conv_shape_of(n);
    const int pointwise = s.kh == 1 && s.kw == 1 && s.stride == 1 && s.pad == 0;
    return !pointwise && s.Ci >= 8;
}

/* whether a pass has a bias argument: the forward when there is a bias, backward-weights when
 * the bias needs a gradient */
static int pass_bias(rx_node *n, conv_pass pass) {
    return pass == PASS_FWD ? n->in[2] != NULL : pass == PASS_BWD_WEIGHTS && cpu_in_grad(n, 2) != NULL;
}

/* one pass through oneDNN; *ran = 0 when oneDNN has no implementation for the shape */
static rx_status onednn_pass(rx_ctx *c, rx_node *n, conv_pass pass, int *ran) {
    const conv_shape s = conv_shape_of(n);
    conv_prim *p;
    RX_TRY(conv_prim_get(c, pass, &s, pass_bias(n, pass), conv_layout_for(&s, pass), &p));
    *ran = !p->unsupported;
    if (p->unsupported) return RX_OK;
    rx_tensor *ws = p->scratch_floats ? rx_empty(c, RX_SHAPE(p->scratch_floats)) : NULL;
    if (p->scratch_floats && !ws) return c->err;
    RX_TRY(conv_prim_run(c->kernel_cache, p, n, ws ? ws->data : NULL, pass, &s));
    return cpu_ws_free(c, ws);
}

const char *cpu_conv2d_onednn_impl_name(rx_ctx *c, rx_node *n, int pass) {
    const conv_shape s = conv_shape_of(n);
    conv_prim *p;
    if (conv_prim_get(c, (conv_pass)pass, &s, pass_bias(n, pass), conv_layout_for(&s, pass), &p)) return NULL;
    return p->unsupported ? "unsupported" : p->impl;
}

rx_status cpu_conv2d_onednn_fwd(rx_ctx *c, rx_node *n) {
    if (n->out->numel == 0) return RX_OK;
    int ran;
    RX_TRY(onednn_pass(c, n, PASS_FWD, &ran));
    return ran ? RX_OK : cpu_conv2d_reference_fwd(c, n);
}

/* gx through backward-data; gw and gb through backward-weights (gb alone: the reference's sum) */
rx_status cpu_conv2d_onednn_bwd(rx_ctx *c, rx_node *n) {
    if (n->out->numel == 0) return RX_OK;
    float *gx = cpu_in_grad(n, 0), *gw = cpu_in_grad(n, 1);
    if (!gw && cpu_in_grad(n, 2)) return cpu_conv2d_reference_bwd(c, n);
    int ran_data = 1, ran_weights = 1;
    if (gx) RX_TRY(onednn_pass(c, n, PASS_BWD_DATA, &ran_data));
    if (gw) RX_TRY(onednn_pass(c, n, PASS_BWD_WEIGHTS, &ran_weights));
    if (ran_data && ran_weights) return RX_OK;
    /* a pass oneDNN cannot do: the reference does all of it, on the gradients not yet added */
    rx_tensor *keep[3] = {0};
    for (int k = 0; k < 3; k++)
        if (n->in[k] && ((k == 0 && ran_data) || (k > 0 && ran_weights))) { keep[k] = n->in[k]->grad; n->in[k]->grad = NULL; }
    rx_status rs = cpu_conv2d_reference_bwd(c, n);
    for (int k = 0; k < 3; k++)
        if (keep[k]) n->in[k]->grad = keep[k];
    return rs;
}

/* whether the registered kernels run this node through oneDNN; -1 for a bad $RUNEXP_CPU_CONV */
static int uses_onednn(rx_node *n) {
    const int impl = conv_impl_from_env();
    return impl < 0 ? -1 : impl == CONV_IMPL_AUTO ? auto_uses_onednn(n) : impl >= CONV_IMPL_ONEDNN;
}

/* the scratch onednn_pass takes for a pass (the reference's when oneDNN cannot do the shape) */
static rx_status pass_workspace(rx_ctx *c, rx_node *n, conv_pass pass, int64_t *floats) {
    const conv_shape s = conv_shape_of(n);
    conv_prim *p;
    RX_TRY(conv_prim_get(c, pass, &s, pass_bias(n, pass), conv_layout_for(&s, pass), &p));
    *floats = p->unsupported ? cpu_conv2d_reference_workspace(n, pass != PASS_FWD) : p->scratch_floats;
    return RX_OK;
}

/* as cpu_conv2d_onednn_fwd/_bwd run: the backward's two passes take their scratch in turn */
rx_status cpu_conv2d_workspace(rx_ctx *c, rx_node *n, int backward, int64_t *floats) {
    const int onednn = uses_onednn(n);
    if (onednn < 0) return bad_env();
    *floats = 0;
    if (!onednn || n->out->numel == 0 || (backward && !cpu_in_grad(n, 1) && cpu_in_grad(n, 2))) {
        *floats = cpu_conv2d_reference_workspace(n, backward);
        return RX_OK;
    }
    if (!backward) return pass_workspace(c, n, PASS_FWD, floats);
    int64_t data = 0, weights = 0;
    if (cpu_in_grad(n, 0)) RX_TRY(pass_workspace(c, n, PASS_BWD_DATA, &data));
    if (cpu_in_grad(n, 1)) RX_TRY(pass_workspace(c, n, PASS_BWD_WEIGHTS, &weights));
    *floats = data > weights ? data : weights;
    return RX_OK;
}

rx_status cpu_conv2d_fwd(rx_ctx *c, rx_node *n) {
    const int onednn = uses_onednn(n);
    if (onednn < 0) return bad_env();
    return onednn ? cpu_conv2d_onednn_fwd(c, n) : cpu_conv2d_reference_fwd(c, n);
}

rx_status cpu_conv2d_bwd(rx_ctx *c, rx_node *n) {
    const int onednn = uses_onednn(n);
    if (onednn < 0) return bad_env();
    return onednn ? cpu_conv2d_onednn_bwd(c, n) : cpu_conv2d_reference_bwd(c, n);
}

#endif
