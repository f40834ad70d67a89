/* loader.c — the batch loader: one producer thread fills a ring of `prefetch` batch slots,
 * rx_loader_next copies the oldest one out. The producer only ever makes batch
 * next_produce, in order, so a batch's content never depends on timing. */
#include "data/loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct rx_loader {
    const rx_dataset   *d;
    rx_transform_step  *steps;        // copy of the chain's steps
    rx_transform_chain  chain;
    rx_loader_opts      o;
    int                 oc, oh, ow;   // output image shape
    int64_t             sample_elems; // oc * oh * ow
    int64_t             work_elems;   // per-image scratch for the chain
    int64_t             bpe;          // batches per epoch
    int                 out_b;        // images per returned batch: B, or B / shard_count
    int                 shard_first;  // this shard's first image within a global batch

    // producer-private
    int32_t            *perm;         // [n] order of perm_epoch
    int64_t             perm_epoch;
    float              *work;

    // ring of slots, guarded by mu
    float              *slot_x;       // [prefetch, B, sample_elems]
    int32_t            *slot_y;       // [prefetch, B]
    rx_batch_info      *slot_info;    // [prefetch]
    pthread_mutex_t     mu;
    pthread_cond_t      produced, consumed;
    int64_t             next_produce; // batches < next_produce are ready (or consumed)
    int64_t             next_consume;
    int                 stop, running, sync_ready;
    rx_status           err;          // producer failure, reported by rx_loader_next
    char                errmsg[1024];
    pthread_t           thread;
};

void rx_data_shuffle(int32_t *perm, int n, uint64_t seed, int64_t epoch) {
    const uint64_t stream = RX_STREAM(RX_RNG_DATA, (uint64_t)epoch & (RX_DATA_SYNTHETIC - 1));
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {  // Fisher–Yates; draw k picks j uniform in [0, i]
        uint32_t u = rx_rng_u32(seed, stream, (uint64_t)(n - 1 - i));
        int j = (int)(((uint64_t)u * (uint64_t)(i + 1)) >> 32);
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
}

// Writes batch b (this shard of it) into x [out_b, sample_elems], y [out_b], info.
static rx_status produce(rx_loader *l, int64_t b, float *x, int32_t *y, rx_batch_info *info) {
    const rx_dataset *d = l->d;
    const int B = l->out_b;
    int64_t epoch = b / l->bpe, step = b % l->bpe;
    if (l->o.shuffle && l->perm_epoch != epoch) {
        rx_data_shuffle(l->perm, d->n, l->o.seed, epoch);
        l->perm_epoch = epoch;
    }
    int64_t first = step * l->o.batch_size + l->shard_first;
    int count = (int)(d->n - first < B ? d->n - first : B);
    if (count < 0) count = 0;   /* a partial last batch that ends before this shard */
    const size_t img = (size_t)d->channels * d->height * d->width;
    for (int r = 0; r < count; r++) {
        int32_t idx = l->o.shuffle ? l->perm[first + r] : (int32_t)(first + r);
        RX_TRY(rx_transform_chain_apply(&l->chain, d->pixels + idx * img, d->channels, d->height, d->width,
                                        x + r * l->sample_elems, l->work, l->o.seed, RX_SAMPLE_KEY(epoch, idx)));
        y[r] = d->labels[idx];
    }
    if (count < B) memset(x + count * l->sample_elems, 0, (size_t)(B - count) * l->sample_elems * sizeof *x);
    for (int r = count; r < B; r++) y[r] = -1;
    *info = (rx_batch_info){.batch = b, .epoch = epoch, .step = step, .count = count};
    return RX_OK;
}

static void *producer_main(void *arg) {
    rx_loader *l = arg;
    const int B = l->out_b, depth = l->o.prefetch;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && l->next_produce - l->next_consume >= depth) pthread_cond_wait(&l->consumed, &l->mu);
        if (l->stop) break;
        int64_t b = l->next_produce;
        int s = (int)(b % depth);
        pthread_mutex_unlock(&l->mu);  // the slot is ours: the consumer only reads slots < next_produce
        rx_status st = produce(l, b, l->slot_x + (size_t)s * B * l->sample_elems, l->slot_y + (size_t)s * B,
                               &l->slot_info[s]);
        pthread_mutex_lock(&l->mu);
        if (st != RX_OK) {
            l->err = st;
            snprintf(l->errmsg, sizeof l->errmsg, "loader batch %lld: %s", (long long)b, rx_last_error());
            pthread_cond_broadcast(&l->produced);
            break;
        }
        l->next_produce++;
        pthread_cond_broadcast(&l->produced);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static rx_status start_thread(rx_loader *l) {
    if (l->o.prefetch == 0) return RX_OK;
    l->stop = 0;
    if (pthread_create(&l->thread, NULL, producer_main, l))
        return rx_fail(RX_ERR_INTERNAL, "loader: cannot start the prefetch thread");
    l->running = 1;
    return RX_OK;
}

static void stop_thread(rx_loader *l) {
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->consumed);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    l->running = 0;
}

rx_status rx_loader_create_opts(const rx_dataset *d, const rx_transform_chain *t, const rx_loader_opts *o,
                                rx_loader **out) {
    if (!out || !d || !o) return rx_fail(RX_ERR_ARG, "rx_loader_create: NULL argument");
    *out = NULL;
    if (o->batch_size < 1 || o->prefetch < 0 || o->prefetch > 64)
        return rx_fail(RX_ERR_ARG, "loader: batch_size %d must be >= 1 and prefetch %d in [0, 64]", o->batch_size,
                       o->prefetch);
    const int shards = o->shard_count > 1 ? o->shard_count : 1;
    if (o->batch_size % shards || o->shard_rank < 0 || o->shard_rank >= shards)
        return rx_fail(RX_ERR_ARG, "loader: batch %d cannot be split in %d shards (shard %d)", o->batch_size, shards,
                       o->shard_rank);
    if (d->n < 1 || (o->drop_last && d->n < o->batch_size))
        return rx_fail(RX_ERR_ARG, "loader: dataset %s has %d images, fewer than one batch of %d", d->name, d->n,
                       o->batch_size);
    rx_loader *l = calloc(1, sizeof *l);
    if (!l) return rx_fail(RX_ERR_OOM, "loader: out of memory");
    l->d = d, l->o = *o, l->perm_epoch = -1;
    l->out_b = o->batch_size / shards;
    l->shard_first = o->shard_rank * l->out_b;
    rx_status st = rx_transform_chain_shape(t, d->channels, d->height, d->width, &l->oc, &l->oh, &l->ow, &l->work_elems);
    if (st != RX_OK) { free(l); return rx_fail_ctx(st, "loader on %s: ", d->name); }
    int nsteps = t ? t->n : 0;
    l->steps = malloc((size_t)(nsteps ? nsteps : 1) * sizeof *l->steps);
    if (l->steps && nsteps) memcpy(l->steps, t->steps, (size_t)nsteps * sizeof *l->steps);
    l->chain = (rx_transform_chain){l->steps, nsteps};
    l->sample_elems = (int64_t)l->oc * l->oh * l->ow;
    l->bpe = o->drop_last ? d->n / o->batch_size : (d->n + o->batch_size - 1) / o->batch_size;
    int slots = o->prefetch ? o->prefetch : 1;
    l->perm = malloc((size_t)d->n * sizeof *l->perm);
    l->work = malloc((size_t)2 * l->work_elems * sizeof *l->work);
    l->slot_x = o->prefetch ? malloc((size_t)slots * l->out_b * l->sample_elems * sizeof *l->slot_x) : NULL;
    l->slot_y = o->prefetch ? malloc((size_t)slots * l->out_b * sizeof *l->slot_y) : NULL;
    l->slot_info = calloc((size_t)slots, sizeof *l->slot_info);
    if (!l->steps || !l->perm || !l->work || !l->slot_info || (o->prefetch && (!l->slot_x || !l->slot_y))) {
        rx_loader_free(l);
        return rx_fail(RX_ERR_OOM, "loader: out of memory");
    }
    if (pthread_mutex_init(&l->mu, NULL) || pthread_cond_init(&l->produced, NULL) || pthread_cond_init(&l->consumed, NULL)) {
        rx_loader_free(l);  // (a partly initialised set is not destroyed: sync_ready is still 0)
        return rx_fail(RX_ERR_INTERNAL, "loader: cannot initialise thread primitives");
    }
    l->sync_ready = 1;
    if ((st = start_thread(l)) != RX_OK) { rx_loader_free(l); return st; }
    *out = l;
    return RX_OK;
}

rx_status rx_loader_create(const rx_dataset *d, const rx_transform_chain *t, int batch_size, uint64_t seed,
                           int drop_last, rx_loader **out) {
    rx_loader_opts o = {.batch_size = batch_size, .seed = seed, .drop_last = drop_last, .shuffle = 1, .prefetch = 2};
    return rx_loader_create_opts(d, t, &o, out);
}

rx_status rx_loader_next(rx_loader *l, float *x, int32_t *labels, rx_batch_info *info) {
    if (!l || !x || !labels) return rx_fail(RX_ERR_ARG, "rx_loader_next: NULL argument");
    rx_batch_info tmp;
    if (!info) info = &tmp;
    const int B = l->out_b;
    if (!l->o.prefetch) {  // synchronous
        RX_TRY(produce(l, l->next_consume, x, labels, info));
        l->next_consume++;
        return RX_OK;
    }
    pthread_mutex_lock(&l->mu);
    while (l->next_produce <= l->next_consume && !l->err) pthread_cond_wait(&l->produced, &l->mu);
    if (l->next_produce <= l->next_consume) {  // the producer failed on this batch
        rx_status st = rx_fail(l->err, "%s", l->errmsg);
        pthread_mutex_unlock(&l->mu);
        return st;
    }
    int s = (int)(l->next_consume % l->o.prefetch);
    pthread_mutex_unlock(&l->mu);  // slot s stays ours until next_consume moves on
    memcpy(x, l->slot_x + (size_t)s * B * l->sample_elems, (size_t)B * l->sample_elems * sizeof *x);
    memcpy(labels, l->slot_y + (size_t)s * B, (size_t)B * sizeof *labels);
    *info = l->slot_info[s];
    pthread_mutex_lock(&l->mu);
    l->next_consume++;
    pthread_cond_broadcast(&l->consumed);
    pthread_mutex_unlock(&l->mu);
    return RX_OK;
}

rx_status rx_loader_seek(rx_loader *l, int64_t batches_consumed) {
    if (!l || batches_consumed < 0) return rx_fail(RX_ERR_ARG, "rx_loader_seek: bad position %lld", (long long)batches_consumed);
    stop_thread(l);
    l->next_produce = l->next_consume = batches_consumed;
    l->err = RX_OK;
    l->errmsg[0] = 0;
    return start_thread(l);
}

int64_t rx_loader_batches_per_epoch(const rx_loader *l) { return l->bpe; }

void rx_loader_image_shape(const rx_loader *l, int *c, int *h, int *w) { *c = l->oc, *h = l->oh, *w = l->ow; }

void rx_loader_free(rx_loader *l) {
    if (!l) return;
    if (l->running) stop_thread(l);
    if (l->sync_ready) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->produced);
        pthread_cond_destroy(&l->consumed);
    }
    free(l->steps), free(l->perm), free(l->work), free(l->slot_x), free(l->slot_y), free(l->slot_info);
    free(l);
}
