"""Charts as SVG text, drawn on the server: the console needs no JavaScript.

Pure code: numbers in, markup out. Every label is escaped; sizes are in the
SVG's own units and the CSS scales the picture to the screen's width, so a
chart reads the same on a phone. Colours come from a fixed palette, so a
series keeps its colour from page to page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

PALETTE = (
    "#3366cc", "#dc3912", "#ff9900", "#109618", "#990099",
    "#0099c6", "#dd4477", "#66aa00", "#b82e2e", "#316395",
)  # fmt: skip
WIDTH = 640
HEIGHT = 220
# Room for the axis labels: left for counts, bottom for days.
LEFT = 44
BOTTOM = 28
TOP = 10
RIGHT = 8


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _svg(width: int, height: int, label: str, body: list[str], css: str = "chart") -> Markup:
    return Markup(
        f'<svg class="{css}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _nice_top(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^n at or above `value`: round axis ticks."""
    if value <= 0:
        return 1
    step = 1.0
    while step * 10 <= value:
        step *= 10
    for factor in (1, 2, 5, 10):
        if step * factor >= value:
            return step * factor
    return step * 10


def _axes(top: float, labels: Sequence[str], plot_w: float, plot_h: float) -> list[str]:
    parts = []
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_count(top * fraction)}</text>"
        )
    if labels:
        # At most about eight labels fit under the plot.
        every = max(1, -(-len(labels) // 8))
        slot = plot_w / len(labels)
        for i in range(0, len(labels), every):
            x = LEFT + slot * (i + 0.5)
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{TOP + plot_h + 16:.1f}" '
                f'text-anchor="middle">{escape(labels[i])}</text>'
            )
    return parts


def _count(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def stacked_bars(labels: Sequence[str], series: Mapping[str, Sequence[int]], title: str) -> Markup:
    """One bar per label, stacked by series (e.g. records per day by kind)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top = _nice_top(max(totals, default=0))
    slot = plot_w / max(1, len(labels))
    body = _axes(top, labels, plot_w, plot_h)
    for i, label in enumerate(labels):
        y = float(TOP + plot_h)
        for index, (name, values) in enumerate(series.items()):
            if not values[i]:
                continue
            h = plot_h * values[i] / top
            y -= h
            body.append(
                f'<rect x="{LEFT + slot * i + 1:.1f}" y="{y:.1f}" '
                f'width="{max(1.0, slot - 2):.1f}" height="{h:.1f}" fill="{colour(index)}">'
                f"<title>{escape(label)} {escape(name)}: {values[i]}</title></rect>"
            )
    return _svg(WIDTH, HEIGHT, title, body)


def lines(labels: Sequence[str], series: Mapping[str, Sequence[float]], title: str) -> Markup:
    """One polyline per series over the labels (e.g. active machines per day)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_top(max((max(v, default=0) for v in series.values()), default=0))
    slot = plot_w / max(1, len(labels))
    body = _axes(top, labels, plot_w, plot_h)
    for index, (name, values) in enumerate(series.items()):
        points = " ".join(
            f"{LEFT + slot * (i + 0.5):.1f},{TOP + plot_h * (1 - v / top):.1f}"
            for i, v in enumerate(values)
        )
        body.append(
            f'<polyline points="{points}" fill="none" stroke="{colour(index)}" '
            f'stroke-width="2"><title>{escape(name)}</title></polyline>'
        )
    return _svg(WIDTH, HEIGHT, title, body)


def bars(labels: Sequence[str], values: Sequence[float], title: str) -> Markup:
    """Horizontal bars, one per label, longest first as given (e.g. per build)."""
    row = 22
    name_w = 160
    width = WIDTH
    height = max(row, row * len(labels)) + 4
    top = _nice_top(max(values, default=0))
    body = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 2 + row * i
        w = (width - name_w - 60) * value / top
        body.append(
            f'<text class="tick" x="{name_w - 6}" y="{y + 15}" text-anchor="end">'
            f"{escape(label[:24])}</text>"
            f'<rect x="{name_w}" y="{y + 3}" width="{max(w, 0.5):.1f}" height="{row - 6}" '
            f'fill="{colour(0)}"><title>{escape(label)}: {value:g}</title></rect>'
            f'<text class="tick" x="{name_w + w + 4:.1f}" y="{y + 15}">{value:g}</text>'
        )
    return _svg(width, height, title, body)


def sparkline(values: Sequence[float], title: str) -> Markup:
    """A small line without axes, for a table cell."""
    width, height = 100, 20
    top = max(values, default=0) or 1
    step = width / max(1, len(values) - 1)
    points = " ".join(
        f"{step * i:.1f},{height - 1 - (height - 2) * v / top:.1f}" for i, v in enumerate(values)
    )
    body = [f'<polyline points="{points}" fill="none" stroke="{colour(0)}" stroke-width="1.5"/>']
    return _svg(width, height, title, body, css="spark")


def legend(names: Sequence[str]) -> Markup:
    """The colour key of a chart's series, as HTML (classes: the CSP forbids inline style)."""
    items = "".join(
        f'<li><span class="swatch c{i % len(PALETTE)}"></span>{escape(name)}</li>'
        for i, name in enumerate(names)
    )
    return Markup(f'<ul class="legend">{items}</ul>')
