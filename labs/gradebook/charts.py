"""Charts as inline SVG, drawn on the server: no JavaScript, no library, nothing fetched.

Pure functions from plain data to a SafeString. Every text that goes into the SVG passes through format_html or
escape; numbers are formatted by us. No style= attributes (the Content-Security-Policy forbids them): colours
come from classes in labs/css/gradebook.css, with presentation attributes only for geometry. Each chart is
role="img" with a title and a description; the page shows the same figures in a table beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

NO_DATA = "No data yet."

# Geometry, in SVG user units (the viewBox scales the whole to the page width).
WIDTH = 640
ROW = 24  # height of one horizontal bar's row
LABEL_W = 200  # room for the labels of horizontal bars
VALUE_W = 70  # room for the value after a horizontal bar
PLOT_H = 180  # height of a histogram's plot area
TOP = 24
BOTTOM = 40


def _num(value: float) -> str:
    """A coordinate or length: at most one decimal, never an exponent."""
    return f"{value:.1f}".rstrip("0").rstrip(".") if value else "0"


def no_data(*, title: str) -> SafeString:
    return format_html('<p class="chart-empty" role="note"><strong>{}</strong>: {}</p>', title, NO_DATA)


def hbar_chart(
    *, title: str, description: str, bars: Sequence[tuple[str, float, str]], maximum: float = 100.0
) -> SafeString:
    """Horizontal bars, one per (label, value, value text): bar lengths proportional to value / maximum. For pass
    rates, maximum is 100. A label longer than the room for it is shortened in the drawing (its <title> keeps it
    whole)."""
    if not bars:
        return no_data(title=title)
    span = WIDTH - LABEL_W - VALUE_W
    height = TOP + ROW * len(bars) + 8
    rows = []
    for index, (label, value, text) in enumerate(bars):
        y = TOP + index * ROW
        length = span * max(0.0, min(float(value), maximum)) / maximum if maximum > 0 else 0.0
        shown = label if len(label) <= 28 else label[:27] + "…"
        rows.append(
            format_html(
                '<g class="chart-row"><title>{}: {}</title>'
                '<text x="{}" y="{}" class="chart-label" text-anchor="end">{}</text>'
                '<rect x="{}" y="{}" width="{}" height="{}" class="chart-track"></rect>'
                '<rect x="{}" y="{}" width="{}" height="{}" class="chart-bar"></rect>'
                '<text x="{}" y="{}" class="chart-value">{}</text></g>',
                label,
                text,
                LABEL_W - 8,
                y + 16,
                shown,
                LABEL_W,
                y + 4,
                _num(span),
                ROW - 8,
                LABEL_W,
                y + 4,
                _num(length),
                ROW - 8,
                LABEL_W + span + 6,
                y + 16,
                text,
            )
        )
    return _svg(title=title, description=description, height=height, body=_join(rows))


def histogram(*, title: str, description: str, buckets: Sequence[tuple[str, int]], x_label: str) -> SafeString:
    """Vertical bars, one per (bucket label, count), heights proportional to count / the largest count."""
    if not buckets or not any(count for _, count in buckets):
        return no_data(title=title)
    top = max(count for _, count in buckets)
    left = 40
    slot = (WIDTH - left - 8) / len(buckets)
    bar_w = max(slot - 6, 2)
    base = TOP + PLOT_H
    parts = [
        format_html(
            '<line x1="{}" y1="{}" x2="{}" y2="{}" class="chart-axis"></line>'
            '<text x="{}" y="{}" class="chart-tick" text-anchor="end">{}</text>'
            '<text x="{}" y="{}" class="chart-tick" text-anchor="end">0</text>'
            '<text x="{}" y="{}" class="chart-axis-label" text-anchor="middle">{}</text>',
            left,
            base,
            WIDTH - 8,
            base,
            left - 6,
            TOP + 10,
            top,
            left - 6,
            base,
            _num(left + (WIDTH - left) / 2),
            base + 34,
            x_label,
        )
    ]
    for index, (label, count) in enumerate(buckets):
        x = left + index * slot + 3
        h = PLOT_H * count / top
        parts.append(
            format_html(
                '<g class="chart-row"><title>{}: {}</title>'
                '<rect x="{}" y="{}" width="{}" height="{}" class="chart-bar"></rect>'
                '<text x="{}" y="{}" class="chart-value" text-anchor="middle">{}</text>'
                '<text x="{}" y="{}" class="chart-tick" text-anchor="middle">{}</text></g>',
                label,
                count,
                _num(x),
                _num(base - h),
                _num(bar_w),
                _num(h),
                _num(x + bar_w / 2),
                _num(max(base - h - 4, 10)),
                count,
                _num(x + bar_w / 2),
                base + 16,
                label,
            )
        )
    return _svg(title=title, description=description, height=base + BOTTOM, body=_join(parts))


def _svg(*, title: str, description: str, height: int, body: SafeString) -> SafeString:
    ident = "chart-" + "".join(c if c.isalnum() else "-" for c in title.lower())[:40]
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" width="100%" role="img" '
        'aria-labelledby="{}-t {}-d"><title id="{}-t">{}</title><desc id="{}-d">{}</desc>{}</svg>',
        WIDTH,
        height,
        ident,
        ident,
        ident,
        title,
        ident,
        description,
        body,
    )


def _join(parts: Sequence[SafeString]) -> SafeString:
    """Concatenate pieces already built by format_html (each escaped when made)."""
    return format_html_join("", "{}", ((part,) for part in parts))
