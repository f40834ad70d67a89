/* tfevents.h — TensorBoard event files (events.out.tfevents.*), written with protobuf-c.
 *
 * A file is a sequence of records, each (TensorFlow's record format, lib/io/record_writer.cc):
 *     uint64  length                    little-endian, of data
 *     uint32  masked_crc32c(length)     of the 8 length bytes
 *     byte    data[length]              one serialized tensorboard.Event
 *     uint32  masked_crc32c(data)
 * with masked_crc(x) = ((c >> 15) | (c << 17)) + 0xa282ead8, c = CRC32C(x) (Castagnoli,
 * reflected, init and final xor 0xFFFFFFFF). The first record is Event{file_version:
 * "brain.Event:2"}; TensorBoard reads every file in a directory whose name holds "tfevents",
 * in name order, which is why the name starts with the zero-padded creation time.
 *
 * What each add writes (what TensorBoard's own writers produce, so its plugins read it):
 *   scalar   Summary.Value{tag, simple_value}                  (scalars plugin)
 *   image    Summary.Value{tag, image: {height, width, colorspace, encoded PNG}}   (images)
 *   text     Summary.Value{tag, metadata.plugin_data {plugin_name "text"}, tensor: DT_STRING
 *            scalar}                                            (text plugin, as text_v2 writes)
 *   session_start  Event{session_log: START} at `step`: TensorBoard then drops every event
 *            already read with a step >= step (a run restarted from a checkpoint)
 * Each record is flushed to the kernel as it is written, so a killed process loses nothing
 * it wrote (a power cut may: there is no fsync per record). */
#ifndef RX_TFEVENTS_H
#define RX_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>
#include "core/status.h"

typedef struct rx_tfevents rx_tfevents;

/* A new file `<dir>/events.out.tfevents.<%010d unix seconds>.<host>` (".<k>" appended when
 * that name exists), never an existing one, with the file_version record written. */
rx_status rx_tfevents_open(const char *dir, rx_tfevents **out);
const char *rx_tfevents_path(const rx_tfevents *w);
rx_status rx_tfevents_add_scalar(rx_tfevents *w, const char *tag, int64_t step, double value);
/* png: a whole PNG file in memory; height, width and colorspace (1 gray, 2 gray+alpha,
 * 3 RGB or palette, 4 RGBA) come from its IHDR chunk; not a PNG: RX_ERR_FORMAT */
rx_status rx_tfevents_add_image_png(rx_tfevents *w, const char *tag, int64_t step, const void *png, size_t n);
rx_status rx_tfevents_add_text(rx_tfevents *w, const char *tag, int64_t step, const char *text);
rx_status rx_tfevents_session_start(rx_tfevents *w, int64_t step);
/* closes the file (NULL is fine); a failed close is an error (data not written) */
rx_status rx_tfevents_close(rx_tfevents *w);

/* CRC32C (ISA-L's crc32_iscsi with the standard init and final xor) and TF's masking */
uint32_t rx_crc32c(const void *buf, size_t n);
uint32_t rx_tfevents_masked_crc(const void *buf, size_t n);

#endif
