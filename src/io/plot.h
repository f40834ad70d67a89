/* plot.h — line plots to PNG with cairo (sweep summaries, training curves).
 *
 * One call draws a complete figure: title, axes with "nice" ticks (1, 2, 5 x 10^k)
 * and numeric labels, light grid, one coloured line per series (with circle
 * markers when it has at most RX_PLOT_MAX_MARKERS points), and a legend. Non-finite points are skipped (the line breaks there).
 * The PNG is written atomically. */
#ifndef RX_PLOT_H
#define RX_PLOT_H

#include "core/status.h"

typedef struct rx_plot_series {
    const char   *name;   /* legend text (NULL: "series <i>") */
    const double *x, *y;  /* n points */
    int           n;
} rx_plot_series;

#define RX_PLOT_WIDTH  800
#define RX_PLOT_HEIGHT 500
#define RX_PLOT_MAX_MARKERS 50

/* title / xlabel / ylabel may be NULL. nseries in [1, 64]; a series may be empty. */
rx_status rx_plot_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
                        const rx_plot_series *series, int nseries);

/* The ticks the axes use for data in [lo, hi]: first tick, step and count, with
 * first <= lo and first + (count-1)*step >= hi (exposed for tests). */
void rx_plot_nice_ticks(double lo, double hi, int target, double *first, double *step, int *count);

#endif
