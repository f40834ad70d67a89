/* safetensors.h — read and write the safetensors format (checkpoints, diffusers weights).
 *
 * Layout (https://github.com/huggingface/safetensors):
 *
 *     [8 bytes]  N, unsigned little-endian: length of the JSON header
 *     [N bytes]  JSON: {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
 *                       ..., "__metadata__": {"key": "value", ...}}   (string -> string)
 *                padded with spaces so that 8 + N is a multiple of 8
 *     [rest]     tensor bytes, little-endian, row-major; offsets are relative to the
 *                start of this section; tensors tile it exactly (no gaps, no overlap)
 *
 * Reader: rx_st_open validates the whole file before returning (header length vs
 * file size, JSON, dtypes, shapes, offsets in range/contiguous/non-overlapping,
 * byte sizes = numel * dtype size, no duplicate names, metadata string->string).
 * A bad file is refused with RX_ERR_FORMAT and a message naming the file and the
 * problem; nothing is half-loaded. Data is mmap'd; rx_st_read_f32 converts
 * F32/F16/BF16/F64 to float32 (for importing diffusers weights).
 *
 * Writer: collect tensors (borrowed pointers) and metadata, then write the file
 * atomically (temp file + fsync + rename + fsync of the directory). Tensors are
 * laid out largest dtype first (as Python's writer does), so with the 8-byte
 * aligned header every tensor is naturally aligned in the file.
 *
 * Checksums: the writer puts one metadata entry per tensor,
 *     "runexp.xxh64.<tensor name>": "<XXH64 of its bytes, seed 0, 16 lowercase hex digits>"
 * (plain string -> string metadata, so Python's safetensors and diffusers load the file
 * as before). rx_st_open verifies them all before returning: a flipped bit in a
 * checkpoint must be refused, not resumed from or exported. A mismatch is
 * RX_ERR_FORMAT "<file>: tensor '<name>': checksum mismatch (data corrupt)"; a file
 * with checksums for some tensors but not others, or for a tensor it does not hold,
 * is refused too (its header is corrupt). Files with no checksum entry at all
 * (diffusers weights, other writers) load unverified. The checksum entries are not
 * part of rx_st_metadata*; the prefix is reserved for the writer.
 *
 * Host byte order must be little-endian (checked at compile time). */
#ifndef RX_SAFETENSORS_H
#define RX_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "core/status.h"

#define RX_ST_MAX_DIMS 8
/* Metadata key prefix of the per-tensor checksums (see above). */
#define RX_ST_SUM_PREFIX "runexp.xxh64."

/* The dtypes of the safetensors spec that we know sizes for. */
#define RX_ST_DTYPE_LIST(X) \
    X(F64, "F64", 8)        \
    X(F32, "F32", 4)        \
    X(F16, "F16", 2)        \
    X(BF16, "BF16", 2)      \
    X(I64, "I64", 8)        \
    X(I32, "I32", 4)        \
    X(I16, "I16", 2)        \
    X(I8, "I8", 1)          \
    X(U64, "U64", 8)        \
    X(U32, "U32", 4)        \
    X(U16, "U16", 2)        \
    X(U8, "U8", 1)          \
    X(BOOL, "BOOL", 1)

typedef enum {
#define X(id, str, size) RX_ST_##id,
    RX_ST_DTYPE_LIST(X)
#undef X
    RX_ST_DTYPE_COUNT
} rx_st_dtype;

const char *rx_st_dtype_name(rx_st_dtype t);   /* "F32" */
size_t      rx_st_dtype_size(rx_st_dtype t);   /* bytes per element */
/* "F32" -> RX_ST_F32; -1 if unknown. */
int         rx_st_dtype_from_name(const char *s);

/* One tensor of an open file. */
typedef struct rx_st_tensor {
    const char *name;
    rx_st_dtype dtype;
    int         ndim;                       /* 0 = scalar */
    int64_t     shape[RX_ST_MAX_DIMS];
    int64_t     numel;                      /* prod(shape), 1 for a scalar */
    uint64_t    begin, end;                 /* byte offsets within the data section */
} rx_st_tensor;

/* ---- reader ---- */

typedef struct rx_st_file rx_st_file;

rx_status rx_st_open(const char *path, rx_st_file **out);
void      rx_st_close(rx_st_file *f);
const char *rx_st_path(const rx_st_file *f);

/* Tensors in file order (ascending data offset). */
int                 rx_st_count(const rx_st_file *f);
const rx_st_tensor *rx_st_tensor_at(const rx_st_file *f, int i);
/* Lookup by name (binary search); NULL if absent. */
const rx_st_tensor *rx_st_find(const rx_st_file *f, const char *name);
/* Like rx_st_find, but a missing name is RX_ERR_FORMAT "<file>: no tensor '<name>'". */
rx_status rx_st_get(const rx_st_file *f, const char *name, const rx_st_tensor **out);
/* RX_ERR_SHAPE unless tensor `name` exists with exactly this shape. */
rx_status rx_st_check_shape(const rx_st_file *f, const char *name, int ndim, const int64_t *shape);

/* Raw little-endian bytes of a tensor (end - begin bytes, inside the mmap, valid
 * until rx_st_close). Not necessarily aligned for files from other writers:
 * memcpy from it rather than casting. */
const void *rx_st_data(const rx_st_file *f, const rx_st_tensor *t);

/* Copy tensor `name` into dst as float32, converting from F32, F16, BF16 or F64.
 * n must equal its numel (else RX_ERR_SHAPE); other dtypes are RX_ERR_FORMAT. */
rx_status rx_st_read_f32(const rx_st_file *f, const char *name, float *dst, int64_t n);
/* Copy tensor `name` as stored: dtype must be `dtype` and the byte size nbytes. */
rx_status rx_st_read_raw(const rx_st_file *f, const char *name, rx_st_dtype dtype, void *dst, size_t nbytes);
/* Convenience: a scalar or one-element I64/I32 tensor (e.g. "step") as int64. */
rx_status rx_st_read_i64_scalar(const rx_st_file *f, const char *name, int64_t *out);

/* __metadata__ (string -> string). rx_st_metadata returns NULL for a missing key. */
const char *rx_st_metadata(const rx_st_file *f, const char *key);
int         rx_st_metadata_count(const rx_st_file *f);
const char *rx_st_metadata_key(const rx_st_file *f, int i);     /* in file order */
const char *rx_st_metadata_value(const rx_st_file *f, int i);

/* ---- writer ---- */

typedef struct rx_st_writer rx_st_writer;

rx_status rx_st_writer_create(rx_st_writer **out);
void      rx_st_writer_free(rx_st_writer *w);
/* Add a tensor. `data` is BORROWED (numel * dtype size bytes, host memory) and must
 * stay valid until rx_st_writer_write; name is copied. Duplicate names, the name
 * "__metadata__", ndim outside [0, RX_ST_MAX_DIMS] and negative dims are RX_ERR_ARG. */
rx_status rx_st_writer_add(rx_st_writer *w, const char *name, rx_st_dtype dtype, int ndim,
                           const int64_t *shape, const void *data);
static inline rx_status rx_st_writer_add_f32(rx_st_writer *w, const char *name, int ndim,
                                             const int64_t *shape, const float *data) {
    return rx_st_writer_add(w, name, RX_ST_F32, ndim, shape, data);
}
/* Set (or replace) a metadata entry; both strings are copied. Keys starting with
 * RX_ST_SUM_PREFIX are RX_ERR_ARG (the writer adds those itself). */
rx_status rx_st_writer_set_metadata(rx_st_writer *w, const char *key, const char *value);
/* Write everything to `path` atomically. The writer can be written again or freed. */
rx_status rx_st_writer_write(rx_st_writer *w, const char *path);

/* ---- half-precision conversions (bit patterns as uint16) ---- */
float    rx_f16_to_f32(uint16_t h);
float    rx_bf16_to_f32(uint16_t h);
uint16_t rx_f32_to_f16(float f);    /* round to nearest even; overflow -> inf; NaN stays NaN */
uint16_t rx_f32_to_bf16(float f);   /* round to nearest even; NaN stays NaN */

#endif
