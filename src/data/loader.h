/* loader.h — batches from a dataset through a transform chain, prepared ahead by a
 * background thread while the model computes.
 *
 * Batch number b (counted from 0 over the whole run) is a pure function of (seed, b):
 *   epoch = b / batches_per_epoch, step = b % batches_per_epoch,
 *   order  = the epoch's permutation (Fisher–Yates, Philox stream RX_RNG_DATA/epoch),
 *   images = order[step*B .. step*B + B), each transformed with sample key (epoch, index).
 * So rx_loader_seek(l, b) resumes a run exactly, and the batches do not depend on the
 * prefetch depth or on timing. batches_per_epoch = n / B with drop_last, else ceil(n / B);
 * without drop_last the epoch's last batch is partial (count < B; the rest of x is zero and
 * labels are -1).
 *
 * Sharded (data-parallel training, dist/dist.h): shard r of S gets images
 * [r*B/S, (r+1)*B/S) of each global batch, so the S shards together read exactly the
 * single-process order; x and labels then hold B/S images. */
#ifndef RX_DATA_LOADER_H
#define RX_DATA_LOADER_H

#include <stdint.h>
#include "data/dataset.h"
#include "data/transform.h"

typedef struct rx_loader rx_loader;

typedef struct rx_loader_opts {
    int      batch_size;  /* B >= 1 */
    uint64_t seed;
    int      drop_last;   /* 1: every batch is full; the epoch's n % B leftover images are skipped */
    int      shuffle;     /* 1: a fresh permutation each epoch; 0: dataset order */
    int      prefetch;    /* batches prepared ahead by the background thread; 0 = no thread */
    int      shard_rank, shard_count;   /* this shard of each batch; 0/0 (or 0/1): the whole batch.
                                           batch_size (global) must divide by shard_count */
} rx_loader_opts;

typedef struct rx_batch_info {
    int64_t batch;        /* global batch number b */
    int64_t epoch, step;  /* b = epoch * batches_per_epoch + step */
    int     count;        /* images in this batch, or this shard of it (< B, or < B/S, only for a
                             partial last batch) */
} rx_batch_info;

/* shuffle on, prefetch 2. The dataset and the chain's params must outlive the loader
 * (the chain's step array is copied). t may be NULL (images scaled to [0,1] only). */
rx_status rx_loader_create(const rx_dataset *d, const rx_transform_chain *t, int batch_size, uint64_t seed,
                           int drop_last, rx_loader **out);
rx_status rx_loader_create_opts(const rx_dataset *d, const rx_transform_chain *t, const rx_loader_opts *o,
                                rx_loader **out);

/* The next batch: x [B, C, H, W] (the chain's output shape), labels [B]; info may be NULL. */
rx_status rx_loader_next(rx_loader *l, float *x, int32_t *labels, rx_batch_info *info);

/* Make the next batch returned be batch number `batches_consumed` (exact resume). */
rx_status rx_loader_seek(rx_loader *l, int64_t batches_consumed);

int64_t rx_loader_batches_per_epoch(const rx_loader *l);
/* Shape of one output image. */
void    rx_loader_image_shape(const rx_loader *l, int *c, int *h, int *w);
void    rx_loader_free(rx_loader *l);

/* The permutation of epoch `epoch` for n images (what the loader uses when shuffling). */
void rx_data_shuffle(int32_t *perm, int n, uint64_t seed, int64_t epoch);

#endif
