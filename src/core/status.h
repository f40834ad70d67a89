/* status.h — error reporting for library code.
 *
 * Library functions return an rx_status (0 = success). On failure they call
 * rx_fail(code, fmt, ...), which records a human-readable message in a
 * thread-local buffer and returns the code, so a failing function is one line:
 *
 *     if (n < 0) return rx_fail(RX_ERR_ARG, "conv2d: stride %d must be > 0", s);
 *
 * Callers propagate with RX_TRY(expr). Only the CLI prints rx_last_error() and
 * exits. RX_CHECK is for true invariant violations (programming errors): it
 * prints file:line and aborts. */
#ifndef RX_STATUS_H
#define RX_STATUS_H

#include <stdio.h>
#include <stdlib.h>

typedef enum {
    RX_OK = 0,
    RX_ERR_ARG,          /* bad argument / unsupported option                */
    RX_ERR_SHAPE,        /* tensor shape mismatch                            */
    RX_ERR_CONFIG,       /* configuration error (CLI exits 2)                */
    RX_ERR_IO,           /* file missing, unreadable, short write            */
    RX_ERR_FORMAT,       /* file exists but its content is corrupt/invalid   */
    RX_ERR_OOM,          /* allocation failed                                */
    RX_ERR_DEVICE,       /* CUDA / cuBLAS / cuDNN failure or no device       */
    RX_ERR_NUMERIC,      /* NaN / Inf where a finite number was required     */
    RX_ERR_UNIMPLEMENTED,/* op or option not available on this backend       */
    RX_ERR_INTERRUPTED,  /* SIGINT / SIGTERM                                 */
    RX_ERR_INTERNAL,
    RX_ERR_COUNT_
} rx_status_code;

typedef int rx_status;

/* Record a formatted message for `code` and return `code`. */
rx_status rx_fail(rx_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepend context to the current message ("loading x.safetensors: " + old). */
rx_status rx_fail_ctx(rx_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *rx_last_error(void);
const char *rx_status_name(rx_status code);
void rx_clear_error(void);

#define RX_TRY(expr) do { rx_status rx_try_s_ = (expr); if (rx_try_s_ != RX_OK) return rx_try_s_; } while (0)

#define RX_CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond); abort(); } } while (0)

#endif
