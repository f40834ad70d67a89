#include "status.h"
#include <stdarg.h>
#include <string.h>

static _Thread_local char rx_errbuf[2048];

rx_status rx_fail(rx_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rx_errbuf, sizeof rx_errbuf, fmt, ap);
    va_end(ap);
    return code;
}

rx_status rx_fail_ctx(rx_status code, const char *fmt, ...) {
    char prefix[1024], old[sizeof rx_errbuf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, rx_errbuf, sizeof old);
    size_t np = strlen(prefix), no = strlen(old);
    if (np > sizeof rx_errbuf - 1) np = sizeof rx_errbuf - 1;
    if (no > sizeof rx_errbuf - 1 - np) no = sizeof rx_errbuf - 1 - np;
    memcpy(rx_errbuf, prefix, np);
    memcpy(rx_errbuf + np, old, no);
    rx_errbuf[np + no] = 0;
    return code;
}

const char *rx_last_error(void) { return rx_errbuf; }
void rx_clear_error(void) { rx_errbuf[0] = 0; }

const char *rx_status_name(rx_status code) {
    static const char *names[RX_ERR_COUNT_] = {
        [RX_OK] = "ok", [RX_ERR_ARG] = "bad argument", [RX_ERR_SHAPE] = "shape mismatch",
        [RX_ERR_CONFIG] = "config error", [RX_ERR_IO] = "I/O error", [RX_ERR_FORMAT] = "bad file format",
        [RX_ERR_OOM] = "out of memory", [RX_ERR_DEVICE] = "device error", [RX_ERR_NUMERIC] = "non-finite value",
        [RX_ERR_UNIMPLEMENTED] = "not implemented", [RX_ERR_INTERRUPTED] = "interrupted",
        [RX_ERR_INTERNAL] = "internal error",
    };
    return (code >= 0 && code < RX_ERR_COUNT_ && names[code]) ? names[code] : "unknown error";
}
