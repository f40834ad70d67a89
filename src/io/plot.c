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

/* The data window over the finite points, widened to nice ticks, and the plot area in pixels. */
static void make_frame(const rx_plot_series *series, int nseries, frame *f, double *xs, int *nx, double *ys, int *ny) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < nseries; s++)
        for (int i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            xmin = fmin(xmin, x); xmax = fmax(xmax, x);
            ymin = fmin(ymin, y); ymax = fmax(ymax, y);
        }
    if (xmin > xmax) { xmin = 0; xmax = 1; ymin = 0; ymax = 1; }   /* nothing to draw: empty axes */
    rx_plot_nice_ticks(xmin, xmax, 8, &f->x0, xs, nx);
    rx_plot_nice_ticks(ymin, ymax, 6, &f->y0, ys, ny);
    f->x1 = f->x0 + (*nx - 1) * *xs;
    f->y1 = f->y0 + (*ny - 1) * *ys;
    f->px0 = MARGIN_L; f->px1 = RX_PLOT_WIDTH - MARGIN_R;
    f->py0 = RX_PLOT_HEIGHT - MARGIN_B; f->py1 = MARGIN_T;
}

static rx_status check_series(const char *what, const rx_plot_series *series, int nseries) {
    if (nseries < 1 || nseries > 64 || !series)
        return rx_fail(RX_ERR_ARG, "plot %s: %d series (1 to 64 allowed)", what, nseries);
    for (int s = 0; s < nseries; s++)
        if (series[s].n < 0 || (series[s].n > 0 && (!series[s].x || !series[s].y)))
            return rx_fail(RX_ERR_ARG, "plot %s: series %d has no data pointers", what, s);
    return RX_OK;
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
    RX_TRY(check_series(path, series, nseries));
    double xs, ys;
    int nx, ny;
    frame f;
    make_frame(series, nseries, &f, &xs, &nx, &ys, &ny);

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

/* ---- the same figure as inline SVG (report.html) --------------------------------------- */

void rx_xml_text(FILE *out, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&#39;", out); break;
        default: fputc(*s, out);
        }
    }
}

static void svg_color(FILE *out, int s) {
    const double *c = palette[s % 10];
    fprintf(out, "#%02x%02x%02x", (int)lround(c[0] * 255), (int)lround(c[1] * 255), (int)lround(c[2] * 255));
}

/* anchor: start|middle|end; extra: more attributes (or "") */
static void svg_text(FILE *out, double x, double y, int size, const char *anchor, const char *extra, const char *s) {
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%d\" text-anchor=\"%s\"%s>", x, y, size, anchor, extra);
    rx_xml_text(out, s);
    fputs("</text>\n", out);
}

static void svg_axes(FILE *out, const frame *f, double xs, int nx, double ys, int ny) {
    char lab[64];
    for (int i = 0; i < nx; i++) {
        double v = f->x0 + i * xs, px = to_px(f, v);
        fprintf(out, "<path d=\"M%.1f %.1fV%.1f\" stroke=\"#e6e6e6\"/><path d=\"M%.1f %.1fv5\" stroke=\"#000\"/>\n", px, f->py0,
                f->py1, px, f->py0);
        tick_label(v, xs, lab, sizeof lab);
        svg_text(out, px, f->py0 + 20, 12, "middle", "", lab);
    }
    for (int i = 0; i < ny; i++) {
        double v = f->y0 + i * ys, py = to_py(f, v);
        fprintf(out, "<path d=\"M%.1f %.1fH%.1f\" stroke=\"#e6e6e6\"/><path d=\"M%.1f %.1fh5\" stroke=\"#000\"/>\n", f->px0,
                py, f->px1, f->px0 - 5, py);
        tick_label(v, ys, lab, sizeof lab);
        svg_text(out, f->px0 - 8, py + 4, 12, "end", "", lab);
    }
    fprintf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#000\"/>\n", f->px0, f->py1,
            f->px1 - f->px0, f->py0 - f->py1);
}

/* lines break at non-finite points; markers on sparse series, as in the PNG */
static void svg_series(FILE *out, const frame *f, const rx_plot_series *series, int nseries) {
    for (int s = 0; s < nseries; s++) {
        fputs("<path fill=\"none\" stroke-width=\"2\" stroke-linejoin=\"round\" stroke=\"", out);
        svg_color(out, s);
        fputs("\" d=\"", out);
        int pen_down = 0;
        for (int i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) { pen_down = 0; continue; }
            fprintf(out, "%c%.1f %.1f", pen_down ? 'L' : 'M', to_px(f, x), to_py(f, y));
            pen_down = 1;
        }
        fputs("\"/>\n", out);
        for (int i = 0; series[s].n <= RX_PLOT_MAX_MARKERS && i < series[s].n; i++) {
            if (!isfinite(series[s].x[i]) || !isfinite(series[s].y[i])) continue;
            fprintf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"", to_px(f, series[s].x[i]), to_py(f, series[s].y[i]));
            svg_color(out, s);
            fputs("\"/>\n", out);
        }
    }
}

/* top-right inside the plot on a white box; text width estimated at 7 px a character (12 px font) */
static void svg_legend(FILE *out, const frame *f, const rx_plot_series *series, int nseries) {
    char name[64];
    size_t longest = 0;
    for (int s = 0; s < nseries; s++) {
        size_t n = series[s].name ? strlen(series[s].name) : 9;
        longest = n > longest ? n : longest;
    }
    double row_h = 18, box_w = 7.0 * (longest < 63 ? longest : 63) + 48, box_h = nseries * row_h + 8;
    double bx = f->px1 - box_w - 8, by = f->py1 + 8;
    fprintf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fff\" fill-opacity=\"0.85\" stroke=\"#999\"/>\n",
            bx, by, box_w, box_h);
    for (int s = 0; s < nseries; s++) {
        double cy = by + 4 + row_h * (s + 0.5);
        fprintf(out, "<path d=\"M%.1f %.1fh24\" stroke-width=\"2\" stroke=\"", bx + 8, cy);
        svg_color(out, s);
        fputs("\"/>\n", out);
        if (series[s].name) snprintf(name, sizeof name, "%s", series[s].name);
        else snprintf(name, sizeof name, "series %d", s);
        svg_text(out, bx + 40, cy + 4, 12, "start", "", name);
    }
}

rx_status rx_plot_lines_svg(FILE *out, const char *title, const char *xlabel, const char *ylabel,
                            const rx_plot_series *series, int nseries) {
    RX_TRY(check_series(title ? title : "(svg)", series, nseries));
    double xs, ys;
    int nx, ny;
    frame f;
    make_frame(series, nseries, &f, &xs, &nx, &ys, &ny);
    fprintf(out, "<svg class=\"plot\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" role=\"img\">\n",
            RX_PLOT_WIDTH, RX_PLOT_HEIGHT, RX_PLOT_WIDTH, RX_PLOT_HEIGHT);
    if (title) { fputs("<title>", out); rx_xml_text(out, title); fputs("</title>\n", out); }
    fprintf(out, "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", RX_PLOT_WIDTH, RX_PLOT_HEIGHT);
    svg_axes(out, &f, xs, nx, ys, ny);
    if (title) svg_text(out, (f.px0 + f.px1) / 2, MARGIN_T / 2.0 + 6, 16, "middle", "", title);
    if (xlabel) svg_text(out, (f.px0 + f.px1) / 2, RX_PLOT_HEIGHT - 14, 13, "middle", "", xlabel);
    if (ylabel) {
        char rot[64];
        snprintf(rot, sizeof rot, " transform=\"rotate(-90 22 %.1f)\"", (f.py0 + f.py1) / 2);
        svg_text(out, 22, (f.py0 + f.py1) / 2, 13, "middle", rot, ylabel);
    }
    svg_series(out, &f, series, nseries);
    svg_legend(out, &f, series, nseries);
    fputs("</svg>\n", out);
    return ferror(out) ? rx_fail(RX_ERR_IO, "plot %s: writing SVG failed", title ? title : "(svg)") : RX_OK;
}
