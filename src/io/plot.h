/* plot.h — line plots to PNG with cairo (sweep summaries, training curves), and the same
 * figure as an inline SVG element for HTML pages (runexp report).
 *
 * One call draws a complete figure: title, axes with "nice" ticks (1, 2, 5 x 10^k)
 * and numeric labels, light grid, one coloured line per series (with circle
 * markers when it has at most RX_PLOT_MAX_MARKERS points), and a legend. Non-finite points are skipped (the line breaks there).
 * The PNG is written atomically. */
#ifndef RX_PLOT_H
#define RX_PLOT_H

#include <stdio.h>
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

/* The same figure (window, ticks, colours, legend) as one <svg> element written to `out`, text
 * escaped, no ids, scripts or external references, so any number of them can sit in one page.
 * RX_ERR_IO when writing to `out` failed. */
rx_status rx_plot_lines_svg(FILE *out, const char *title, const char *xlabel, const char *ylabel,
                            const rx_plot_series *series, int nseries);

/* `s` as XML/HTML text or attribute value: & < > " ' become entities. NULL writes nothing. */
void rx_xml_text(FILE *out, const char *s);

/* The ticks the axes use for data in [lo, hi]: first tick, step and count, with
 * first <= lo and first + (count-1)*step >= hi (exposed for tests). */
void rx_plot_nice_ticks(double lo, double hi, int target, double *first, double *step, int *count);

#endif
