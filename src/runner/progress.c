/* progress.c — see progress.h. */
#include "runner/progress.h"
#include <math.h>
#include <stdio.h>

double rx_eta_seconds(double done, double total, double elapsed) {
    if (!(done > 0) || !(elapsed > 0) || !isfinite(total)) return -1;
    double left = total - done;
    return left > 0 ? left * elapsed / done : 0;
}

const char *rx_eta_format(double seconds, char *buf, size_t n) {
    if (!(seconds >= 0) || !isfinite(seconds) || seconds > 1e9) { snprintf(buf, n, "?"); return buf; }
    long long s = llround(seconds);
    if (s < 60) snprintf(buf, n, "%llds", s);
    else if (s < 3600) snprintf(buf, n, "%lldm%02llds", s / 60, s % 60);
    else if ((s = llround(seconds / 60)) < 24 * 60) snprintf(buf, n, "%lldh%02lldm", s / 60, s % 60);
    else { s = llround(seconds / 3600); snprintf(buf, n, "%lldd%02lldh", s / 24, s % 24); }
    return buf;
}
