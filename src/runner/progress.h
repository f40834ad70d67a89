/* progress.h — the estimated time left that training, sampling and evaluation print.
 *
 *   eta = (total - done) * elapsed / done      the work left at the rate measured so far
 *
 * "Work" is whatever the stage counts (steps, images); `done` and `elapsed` are counted from
 * the same moment (a resumed training counts from the resume, not from step 0). */
#ifndef RX_PROGRESS_H
#define RX_PROGRESS_H

#include <stddef.h>

/* Seconds left; -1 when there is no rate yet (done <= 0 or elapsed not positive). */
double rx_eta_seconds(double done, double total, double elapsed);

/* "45s", "1m23s", "2h05m", "3d04h" (rounded to the unit shown last); "?" for a negative or
 * non-finite estimate. Returns buf. */
const char *rx_eta_format(double seconds, char *buf, size_t n);

#endif
