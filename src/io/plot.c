/* plot.c — line plots with cairo's image surface and toy text API. See plot.h. */
#include "io/plot.h"
#include "io/fsutil.h"

#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <string.h>

/* Matplotlib's tab10 colours: distinct and readable on white. */
static const double palette[10][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812},
};

/* Figure layout in pixels. */
enum { MARGIN_L = 80, MARGIN_R = 24, MARGIN_T = 48, MARGIN_B = 64 };

void rx_plot_nice_ticks(double lo, double hi, int target, double *first, double *step, int *count) {
    if (!(hi > lo)) {          /* one value (or none): open a window around it */
        double d = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1.0;
        lo -= d;
        hi += d;
    }
    /* Heckbert's "nice numbers": step = {1, 2, 5} x 10^k nearest to range/target. */
    double raw = (hi - lo) / (target > 1 ? target : 1);
    double mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    double nice = f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10;
    *step = nice * mag;
    *first = floor(lo / *step + 1e-9) * *step;
    double last = ceil(hi / *step - 1e-9) * *step;
    *count = (int)llround((last - *first) / *step) + 1;
}

/* Label text for a tick: enough decimals for the step, no "-0". */
static void tick_label(double v, double step, char *buf, size_t cap) {
    if (fabs(v) < step * 1e-6) v = 0;
    if (fabs(v) >= 1e6 || step < 1e-4) { snprintf(buf, cap, "%g", v); return; }
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, cap, "%.*f", decimals, v);
}

typedef struct {
    double x0, x1, y0, y1;         /* data window */
    double px0, px1, py0, py1;     /* plot area in pixels (py0 is the bottom) */
} frame;

static double to_px(const frame *f, double x) { return f->px0 + (x - f->x0) / (f->x1 - f->x0) * (f->px1 - f->px0); }
static double to_py(const frame *f, double y) { return f->py0 - (y - f->y0) / (f->y1 - f->y0) * (f->py0 - f->py1); }

/* Text placed by its ink box: halign 0/0.5/1 puts its left/centre/right at x,
 * valign 1/0.5/0 puts its top/middle/bottom at y. */
static void text_at(cairo_t *cr, const char *s, double x, double y, double halign, double valign) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - e.x_bearing - halign * e.width, y - e.y_bearing - (1 - valign) * e.height);
    cairo_show_text(cr, s);
}

static void marker(cairo_t *cr, double x, double y) {
    cairo_new_sub_path(cr);
    cairo_arc(cr, x, y, 3.5, 0, 2 * M_PI);
    cairo_fill(cr);
}

static cairo_status_t write_to_file(void *closure, const unsigned char *data, unsigned int len) {
    return fwrite(data, 1, len, (FILE *)closure) == len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

rx_status rx_plot_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
                        const rx_plot_series *series, int nseries) {
    if (nseries < 1 || nseries > 64 || !series)
        return rx_fail(RX_ERR_ARG, "plot %s: %d series (1 to 64 allowed)", path, nseries);
    for (int s = 0; s < nseries; s++)
        if (series[s].n < 0 || (series[s].n > 0 && (!series[s].x || !series[s].y)))
            return rx_fail(RX_ERR_ARG, "plot %s: series %d has no data pointers", path, s);

    /* Data window over the finite points. */
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < nseries; s++)
        for (int i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            xmin = fmin(xmin, x); xmax = fmax(xmax, x);
            ymin = fmin(ymin, y); ymax = fmax(ymax, y);
        }
    if (xmin > xmax) { xmin = 0; xmax = 1; ymin = 0; ymax = 1; }   /* nothing to draw: empty axes */
    double xs, ys;
    int nx, ny;
    frame f;
    rx_plot_nice_ticks(xmin, xmax, 8, &f.x0, &xs, &nx);
    rx_plot_nice_ticks(ymin, ymax, 6, &f.y0, &ys, &ny);
    f.x1 = f.x0 + (nx - 1) * xs;
    f.y1 = f.y0 + (ny - 1) * ys;
    f.px0 = MARGIN_L; f.px1 = RX_PLOT_WIDTH - MARGIN_R;
    f.py0 = RX_PLOT_HEIGHT - MARGIN_B; f.py1 = MARGIN_T;

    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, RX_PLOT_WIDTH, RX_PLOT_HEIGHT);
    cairo_t *cr = cairo_create(surf);
    if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
        rx_status st = rx_fail(RX_ERR_OOM, "plot %s: cairo: %s", path, cairo_status_to_string(cairo_status(cr)));
        cairo_destroy(cr);
        cairo_surface_destroy(surf);
        return st;
    }
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);

    /* Grid and tick labels. */
    char lab[64];
    cairo_set_font_size(cr, 12);
    cairo_set_line_width(cr, 1);
    for (int i = 0; i < nx; i++) {
        double v = f.x0 + i * xs, px = round(to_px(&f, v)) + 0.5;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, px, f.py0);
        cairo_line_to(cr, px, f.py1);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, px, f.py0);
        cairo_line_to(cr, px, f.py0 + 5);
        cairo_stroke(cr);
        tick_label(v, xs, lab, sizeof lab);
        text_at(cr, lab, px, f.py0 + 8, 0.5, 1);
    }
    for (int i = 0; i < ny; i++) {
        double v = f.y0 + i * ys, py = round(to_py(&f, v)) + 0.5;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, f.px0, py);
        cairo_line_to(cr, f.px1, py);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, f.px0 - 5, py);
        cairo_line_to(cr, f.px0, py);
        cairo_stroke(cr);
        tick_label(v, ys, lab, sizeof lab);
        text_at(cr, lab, f.px0 - 8, py, 1, 0.5);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, f.px0 + 0.5, f.py1 + 0.5, f.px1 - f.px0, f.py0 - f.py1);
    cairo_stroke(cr);

    /* Title and axis labels. */
    if (title) {
        cairo_set_font_size(cr, 16);
        text_at(cr, title, (f.px0 + f.px1) / 2, MARGIN_T / 2.0, 0.5, 0.5);
    }
    cairo_set_font_size(cr, 13);
    if (xlabel) text_at(cr, xlabel, (f.px0 + f.px1) / 2, RX_PLOT_HEIGHT - 14, 0.5, 0);
    if (ylabel) {
        cairo_save(cr);
        cairo_translate(cr, 18, (f.py0 + f.py1) / 2);
        cairo_rotate(cr, -M_PI / 2);
        text_at(cr, ylabel, 0, 0, 0.5, 0.5);
        cairo_restore(cr);
    }

    /* Series: clipped to the plot area; lines break at non-finite points. */
    cairo_save(cr);
    cairo_rectangle(cr, f.px0, f.py1, f.px1 - f.px0, f.py0 - f.py1);
    cairo_clip(cr);
    cairo_set_line_width(cr, 2);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    for (int s = 0; s < nseries; s++) {
        const double *c = palette[s % 10];
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        int pen_down = 0;
        for (int i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) { pen_down = 0; continue; }
            if (pen_down) cairo_line_to(cr, to_px(&f, x), to_py(&f, y));
            else cairo_move_to(cr, to_px(&f, x), to_py(&f, y));
            pen_down = 1;
        }
        cairo_stroke(cr);
    }
    cairo_restore(cr);
    /* Markers unclipped (every point lies inside the window; one on the frame
     * should not be cut in half), and only for sparse series (a sweep), not for a
     * dense curve (a loss log), where they would merge into a thick line. */
    for (int s = 0; s < nseries; s++) {
        if (series[s].n > RX_PLOT_MAX_MARKERS) continue;
        const double *c = palette[s % 10];
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        for (int i = 0; i < series[s].n; i++)
            if (isfinite(series[s].x[i]) && isfinite(series[s].y[i]))
                marker(cr, to_px(&f, series[s].x[i]), to_py(&f, series[s].y[i]));
    }

    /* Legend: top-right inside the plot, on a white box. */
    cairo_set_font_size(cr, 12);
    char name[64];
    double text_w = 0;
    for (int s = 0; s < nseries; s++) {
        cairo_text_extents_t e;
        if (series[s].name) snprintf(name, sizeof name, "%s", series[s].name);
        else snprintf(name, sizeof name, "series %d", s);
        cairo_text_extents(cr, name, &e);
        text_w = fmax(text_w, e.x_advance);
    }
    double row_h = 18, box_w = text_w + 48, box_h = nseries * row_h + 8;
    double bx = f.px1 - box_w - 8, by = f.py1 + 8;
    cairo_rectangle(cr, bx, by, box_w, box_h);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    for (int s = 0; s < nseries; s++) {
        const double *c = palette[s % 10];
        double cy = by + 4 + row_h * (s + 0.5);
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        cairo_set_line_width(cr, 2);
        cairo_move_to(cr, bx + 8, cy);
        cairo_line_to(cr, bx + 32, cy);
        cairo_stroke(cr);
        if (series[s].n <= RX_PLOT_MAX_MARKERS) marker(cr, bx + 20, cy);
        cairo_set_source_rgb(cr, 0, 0, 0);
        if (series[s].name) snprintf(name, sizeof name, "%s", series[s].name);
        else snprintf(name, sizeof name, "series %d", s);
        text_at(cr, name, bx + 40, cy, 0, 0.5);
    }

    cairo_status_t cs = cairo_status(cr);
    cairo_destroy(cr);
    if (cs != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(surf);
        return rx_fail(RX_ERR_INTERNAL, "plot %s: cairo: %s", path, cairo_status_to_string(cs));
    }
    rx_atomic_file af;
    rx_status st = rx_atomic_begin(path, &af);
    if (st) { cairo_surface_destroy(surf); return st; }
    cs = cairo_surface_write_to_png_stream(surf, write_to_file, af.fp);
    cairo_surface_destroy(surf);
    if (cs != CAIRO_STATUS_SUCCESS) {
        rx_atomic_abort(&af);
        return rx_fail(RX_ERR_IO, "plot %s: writing PNG: %s", path, cairo_status_to_string(cs));
    }
    return rx_atomic_commit(&af);
}
