/* dataset.h — image data sets decoded once into a compact uint8 array.
 *
 * A dataset component (kind `dataset`) loads one split ("train" or "test") into an
 * rx_dataset: pixels [n, C, H, W] uint8 in row-major NCHW, labels [n] (-1 when the data
 * set is unlabelled), class names. Everything downstream (transforms, the batch loader)
 * reads this array; nothing re-reads files during training.
 *
 * Where files are looked for (rx_data_root): the component's `root` parameter when
 * given; else $RUNEXP_DATA; else ./data. A data set that is not found is RX_ERR_IO with a
 * message that lists every path tried and the command that gets it (`make data`,
 * `runexp data fetch <name>`). Files that exist but are corrupt are RX_ERR_FORMAT, checked when
 * opened (gzip CRC and length, exact sizes, published md5s: data/integrity.h). */
#ifndef RX_DATA_DATASET_H
#define RX_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include "core/component.h"
#include "core/status.h"

typedef struct rx_dataset {
    char      name[64];      // e.g. "cifar10/train"
    int       n, channels, height, width;
    int       num_classes;   // 0 when unlabelled
    uint8_t  *pixels;        // [n, C, H, W]
    int32_t  *labels;        // [n], each in [0, num_classes) or -1 when unlabelled
    char    **class_names;   // [num_classes]
} rx_dataset;

/* One file of a published data set, as `runexp data fetch` gets it into <root>/<dataset name>/. */
typedef struct rx_dataset_file {
    const char *file;   /* file name                                                    */
    const char *url;    /* official location                                            */
    const char *md5;    /* of the file as published (the authors' page, or torchvision) */
    int64_t     size;   /* its size in bytes as published: a file of this size must have this md5
                         * when opened (data/integrity.h); 0 = not checked on open            */
} rx_dataset_file;

typedef struct rx_dataset_impl {
    /* split: "train" | "test". */
    rx_status (*load)(const rx_params *p, const char *split, rx_dataset **out);
    const rx_dataset_file *files;   /* {0}-terminated; NULL: nothing to fetch (the user's own data) */
    const char *local_copy_dir;     /* a Debian package's copy of the files, used before downloading; or NULL */
} rx_dataset_impl;

/* Load `split` of a dataset component (checks kind and split, then calls its impl). */
rx_status rx_dataset_load(const rx_component *comp, const rx_params *p, const char *split, rx_dataset **out);

/* Allocate a dataset with pixels [n,C,H,W] and labels [n] (labels set to -1) and
 * num_classes empty class-name slots. Used by the loaders; free with rx_dataset_free. */
rx_status rx_dataset_alloc(const char *name, int n, int c, int h, int w, int num_classes, rx_dataset **out);
rx_status rx_dataset_set_class_name(rx_dataset *d, int k, const char *name);
void      rx_dataset_free(rx_dataset *d);

/* The base directory to search: the `root` parameter if not null; else $RUNEXP_DATA if
 * set; else "data" (relative to the current directory). */
const char *rx_data_root(const rx_params *p);

/* out = dir + "/" + name; RX_ERR_ARG if it does not fit in cap bytes. */
rx_status rx_data_path_join(char *out, size_t cap, const char *dir, const char *name);

/* The message for a data set that was found nowhere: RX_ERR_IO, "<name>: not found; looked
 * for: <tried>; get it with `make data` or `runexp data fetch <name>`...". */
rx_status rx_data_not_found(const char *name, const char *tried);

#endif
