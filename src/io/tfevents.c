/* tfevents.c — TensorBoard event files: records (tfevents.h) of protobuf-c packed Events. */
#include "io/tfevents.h"
#include "tensorboard/compat/proto/event.pb-c.h"
#include "tensorboard/compat/proto/summary.pb-c.h"
#include "tensorboard/compat/proto/tensor.pb-c.h"
#include "tensorboard/compat/proto/tensor_shape.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <isa-l/crc.h>

struct rx_tfevents {
    FILE *fp;
    char path[1400];
};

uint32_t rx_crc32c(const void *buf, size_t n) {
    /* crc32_iscsi(buf, len, init) takes and returns the register without the final xor
     * (checked in tests: "123456789" -> 0xE3069283), and an int length: chained in pieces */
    uint32_t c = 0xFFFFFFFFu;
    const unsigned char *p = buf;
    while (n > 0) {
        int k = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        c = crc32_iscsi((unsigned char *)p, k, c);
        p += k;
        n -= (size_t)k;
    }
    return c ^ 0xFFFFFFFFu;
}

uint32_t rx_tfevents_masked_crc(const void *buf, size_t n) {
    const uint32_t c = rx_crc32c(buf, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;   /* TF's masking (lib/hash/crc32c.h Mask) */
}

static void put_le(unsigned char *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* one record: the header and footer around `data`, then a flush (tfevents.h) */
static rx_status write_record(rx_tfevents *w, const uint8_t *data, size_t n) {
    unsigned char head[12], foot[4];
    put_le(head, n, 8);
    put_le(head + 8, rx_tfevents_masked_crc(head, 8), 4);
    put_le(foot, rx_tfevents_masked_crc(data, n), 4);
    if (fwrite(head, 1, 12, w->fp) != 12 || fwrite(data, 1, n, w->fp) != n || fwrite(foot, 1, 4, w->fp) != 4 ||
        fflush(w->fp) != 0)
        return rx_fail(RX_ERR_IO, "%s: cannot write an event record: %s", w->path, strerror(errno));
    return RX_OK;
}

static rx_status write_event(rx_tfevents *w, Tensorboard__Event *ev) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ev->wall_time = ts.tv_sec + 1e-9 * ts.tv_nsec;
    const size_t n = protobuf_c_message_get_packed_size(&ev->base);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return rx_fail(RX_ERR_OOM, "%s: out of memory for a %zu-byte event", w->path, n);
    rx_status s = protobuf_c_message_pack(&ev->base, buf) == n ? write_record(w, buf, n)
                  : rx_fail(RX_ERR_INTERNAL, "%s: protobuf-c packed a different size than it measured", w->path);
    free(buf);
    return s;
}

/* an Event holding a Summary of the one value v */
static rx_status write_value(rx_tfevents *w, int64_t step, Tensorboard__Summary__Value *v) {
    Tensorboard__Summary__Value *values[1] = {v};
    Tensorboard__Summary sum = TENSORBOARD__SUMMARY__INIT;
    sum.n_value = 1;
    sum.value = values;
    Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
    ev.step = step;
    ev.what_case = TENSORBOARD__EVENT__WHAT_SUMMARY;
    ev.summary = &sum;
    return write_event(w, &ev);
}

/* O_EXCL: two writers (a resume in the same second) never share a file */
static rx_status create_file(rx_tfevents *w, const char *dir) {
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    for (char *c = host; *c; c++)
        if (*c == '/') *c = '_';
    const long long t = (long long)time(NULL);
    for (int k = 0; k < 100; k++) {
        int len = k ? snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%010lld.%s.%d", dir, t, host, k)
                    : snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%010lld.%s", dir, t, host);
        if (len < 0 || (size_t)len >= sizeof w->path) return rx_fail(RX_ERR_ARG, "%s: directory name too long", dir);
        int fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) return rx_fail(RX_ERR_IO, "%s: cannot create: %s", w->path, strerror(errno));
        w->fp = fdopen(fd, "wb");
        if (!w->fp) {
            close(fd);
            return rx_fail(RX_ERR_IO, "%s: fdopen: %s", w->path, strerror(errno));
        }
        return RX_OK;
    }
    return rx_fail(RX_ERR_IO, "%s: 100 event files named after second %lld already exist", dir, t);
}

rx_status rx_tfevents_open(const char *dir, rx_tfevents **out) {
    *out = NULL;
    rx_tfevents *w = calloc(1, sizeof *w);
    if (!w) return rx_fail(RX_ERR_OOM, "tfevents: out of memory");
    rx_status s = create_file(w, dir);
    Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
    ev.what_case = TENSORBOARD__EVENT__WHAT_FILE_VERSION;
    ev.file_version = "brain.Event:2";   /* version 2: TensorBoard purges on SessionLog START only */
    if (!s) s = write_event(w, &ev);
    if (s) {
        if (w->fp) fclose(w->fp);
        free(w);
        return s;
    }
    *out = w;
    return RX_OK;
}

const char *rx_tfevents_path(const rx_tfevents *w) { return w->path; }

rx_status rx_tfevents_add_scalar(rx_tfevents *w, const char *tag, int64_t step, double value) {
    Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT;
    v.tag = (char *)tag;
    v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
    v.simple_value = (float)value;   /* the field is a float: what every TensorBoard scalar is */
    return write_value(w, step, &v);
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

rx_status rx_tfevents_add_image_png(rx_tfevents *w, const char *tag, int64_t step, const void *png, size_t n) {
    /* signature (8) + IHDR length (4) + "IHDR" (4) + width, height (4 + 4) + depth + colour type */
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const unsigned char *p = png;
    if (n < 26 || memcmp(p, sig, 8) != 0 || memcmp(p + 12, "IHDR", 4) != 0)
        return rx_fail(RX_ERR_FORMAT, "tfevents: image %s: not a PNG", tag);
    static const int channels[7] = {1, 0, 3, 3, 2, 0, 4};   /* by PNG colour type 0..6 */
    const int ct = p[25];
    const uint32_t width = be32(p + 16), height = be32(p + 20);
    if (ct > 6 || !channels[ct] || width > INT32_MAX || height > INT32_MAX)
        return rx_fail(RX_ERR_FORMAT, "tfevents: image %s: PNG header with colour type %d, %ux%u", tag, ct, width, height);
    Tensorboard__Summary__Image img = TENSORBOARD__SUMMARY__IMAGE__INIT;
    img.height = (int32_t)height;
    img.width = (int32_t)width;
    img.colorspace = channels[ct];
    img.encoded_image_string = (ProtobufCBinaryData){n, (uint8_t *)png};
    Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT;
    v.tag = (char *)tag;
    v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_IMAGE;
    v.image = &img;
    return write_value(w, step, &v);
}

rx_status rx_tfevents_add_text(rx_tfevents *w, const char *tag, int64_t step, const char *text) {
    /* text_v2's text_pb: plugin "text" with TextPluginData{version 0} as content (which packs
     * to zero bytes), and the string as a rank-0 DT_STRING tensor */
    Tensorboard__SummaryMetadata__PluginData plugin = TENSORBOARD__SUMMARY_METADATA__PLUGIN_DATA__INIT;
    plugin.plugin_name = "text";
    Tensorboard__SummaryMetadata meta = TENSORBOARD__SUMMARY_METADATA__INIT;
    meta.plugin_data = &plugin;
    Tensorboard__TensorShapeProto shape = TENSORBOARD__TENSOR_SHAPE_PROTO__INIT;
    ProtobufCBinaryData str = {strlen(text), (uint8_t *)text};
    Tensorboard__TensorProto tensor = TENSORBOARD__TENSOR_PROTO__INIT;
    tensor.dtype = TENSORBOARD__DATA_TYPE__DT_STRING;
    tensor.tensor_shape = &shape;
    tensor.n_string_val = 1;
    tensor.string_val = &str;
    Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT;
    v.tag = (char *)tag;
    v.metadata = &meta;
    v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_TENSOR;
    v.tensor = &tensor;
    return write_value(w, step, &v);
}

rx_status rx_tfevents_session_start(rx_tfevents *w, int64_t step) {
    Tensorboard__SessionLog log = TENSORBOARD__SESSION_LOG__INIT;
    log.status = TENSORBOARD__SESSION_LOG__SESSION_STATUS__START;
    Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
    ev.step = step;
    ev.what_case = TENSORBOARD__EVENT__WHAT_SESSION_LOG;
    ev.session_log = &log;
    return write_event(w, &ev);
}

rx_status rx_tfevents_close(rx_tfevents *w) {
    if (!w) return RX_OK;
    rx_status s = fclose(w->fp) == 0 ? RX_OK : rx_fail(RX_ERR_IO, "%s: close: %s", w->path, strerror(errno));
    free(w);
    return s;
}
