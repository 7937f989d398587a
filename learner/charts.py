"""Server-rendered SVG charts for the learner dashboard: no JavaScript, no CDN.

Each function takes plain data and returns one self-contained ``<svg>`` element as a
SafeString. Every piece of text that comes from data (label names, tooltips) is escaped
here, so templates can insert the result as is. Points and bars carry a ``<title>``, which
browsers show as a tooltip on hover.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

FONT = 'font-family="system-ui, sans-serif" font-size="12"'
AXIS = "#57606a"
GRID = "#eaeef2"
PALETTE = ("#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e")


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    tip: str = ""


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[Point]
    colour: str = PALETTE[0]
    key: str = ""  # a short machine name, written as data-series on each point
    dashed: bool = False  # a reference line (a baseline), drawn dashed


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    colour: str = PALETTE[0]
    tip: str = ""


@dataclass(frozen=True)
class _Frame:
    """A plot area inside the SVG: pixel box and the data ranges it maps."""

    left: float
    top: float
    width: float
    height: float
    x_min: float = 0.0
    x_max: float = 1.0
    y_min: float = 0.0
    y_max: float = 1.0

    def px(self, x: float) -> float:
        span = self.x_max - self.x_min or 1.0
        return self.left + (x - self.x_min) / span * self.width

    def py(self, y: float) -> float:
        span = self.y_max - self.y_min or 1.0
        return self.top + self.height - (y - self.y_min) / span * self.height


def num(value: float, digits: int = 2) -> str:
    """A compact number for SVG attributes and labels: 12, 0.5, 0.25 (never 0.50000001)."""
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi] (steps of 1, 2 or 5 x 10^n)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    value = start
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _svg(width: float, height: float, label: str, body: list[str], css: str = "") -> SafeString:
    # Safe: every data-derived string below went through escape().
    return mark_safe(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css}" role="img" '
        f'aria-label="{escape(label)}" viewBox="0 0 {num(width)} {num(height)}" '
        f'width="{num(width)}" height="{num(height)}" preserveAspectRatio="xMinYMin meet" '
        f"{FONT}>"
        f"<title>{escape(label)}</title>" + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, *, anchor: str = "middle", extra: str = "") -> str:
    return (
        f'<text x="{num(x)}" y="{num(y)}" text-anchor="{anchor}" fill="{AXIS}"{extra}>'
        f"{escape(text)}</text>"
    )


# Label names in a heatmap: written whole up to this many characters; the width of one
# character at the charts' 12px font, generously (an SVG cannot measure its own text).
LABEL_CHARS = 40
CHAR_W = 7.2


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "…"


def _axes(frame: _Frame, x_ticks: Sequence[float], y_ticks: Sequence[float], *,
          x_label: str, y_label: str, x_fmt: str = "{}", y_fmt: str = "{}") -> list[str]:
    """Grid lines, tick labels, both axis lines and their titles."""
    parts = ['<g class="axes">']
    bottom = frame.top + frame.height
    for y in y_ticks:
        py = frame.py(y)
        parts.append(f'<line x1="{num(frame.left)}" x2="{num(frame.left + frame.width)}" '
                     f'y1="{num(py)}" y2="{num(py)}" stroke="{GRID}"/>')
        parts.append(_text(frame.left - 6, py + 4, y_fmt.format(num(y)), anchor="end",
                           extra=' class="tick y"'))
    for x in x_ticks:
        px = frame.px(x)
        parts.append(f'<line x1="{num(px)}" x2="{num(px)}" y1="{num(bottom)}" '
                     f'y2="{num(bottom + 4)}" stroke="{AXIS}"/>')
        parts.append(_text(px, bottom + 17, x_fmt.format(num(x)), extra=' class="tick x"'))
    parts.append(f'<line x1="{num(frame.left)}" x2="{num(frame.left + frame.width)}" '
                 f'y1="{num(bottom)}" y2="{num(bottom)}" stroke="{AXIS}"/>')
    parts.append(f'<line x1="{num(frame.left)}" x2="{num(frame.left)}" y1="{num(frame.top)}" '
                 f'y2="{num(bottom)}" stroke="{AXIS}"/>')
    parts.append(_text(frame.left + frame.width / 2, bottom + 36, x_label,
                       extra=' class="axis-label x"'))
    cy = frame.top + frame.height / 2
    parts.append(_text(14, cy, y_label,
                       extra=f' class="axis-label y" transform="rotate(-90 14 {num(cy)})"'))
    parts.append("</g>")
    return parts


def line_chart(
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    title: str = "Line chart",
    y_range: tuple[float, float] | None = (0.0, 1.0),
    width: int = 760,
    height: int = 300,
) -> SafeString:
    """Lines with a marker per point (each with a tooltip), axes with ticks, a legend.

    The x axis starts at 0 (a learning curve reads from "no labels"); the y axis spans
    `y_range`, or the data's own range when None.
    """
    xs = [p.x for s in series for p in s.points]
    ys = [p.y for s in series for p in s.points]
    x_ticks = nice_ticks(0.0, max(xs, default=1.0), 6)
    if y_range is None:
        y_ticks = nice_ticks(min(ys, default=0.0), max(ys, default=1.0), 5)
    else:
        y_ticks = nice_ticks(y_range[0], y_range[1], 5)
    frame = _Frame(left=56, top=30, width=width - 76, height=height - 78,
                   x_min=x_ticks[0], x_max=x_ticks[-1], y_min=y_ticks[0], y_max=y_ticks[-1])
    body = _axes(frame, x_ticks, y_ticks, x_label=x_label, y_label=y_label)
    # Legend, top left above the plot.
    legend_x = frame.left
    body.append('<g class="legend">')
    for s in series:
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        body.append(f'<line x1="{num(legend_x)}" x2="{num(legend_x + 18)}" y1="14" y2="14" '
                    f'stroke="{escape(s.colour)}" stroke-width="2.5"{dash}/>'
                    f'<circle cx="{num(legend_x + 9)}" cy="14" r="3.5" '
                    f'fill="{escape(s.colour)}"/>')
        body.append(_text(legend_x + 24, 18, s.name, anchor="start"))
        legend_x += 34 + 7.2 * len(s.name)
    body.append("</g>")
    for s in series:
        points = sorted(s.points, key=lambda p: p.x)
        key = f' data-series="{escape(s.key)}"' if s.key else ""
        body.append(f'<g class="series"{key}>')
        if len(points) > 1:
            path = " ".join(f"{num(frame.px(p.x))},{num(frame.py(p.y))}" for p in points)
            dash = ' stroke-dasharray="5 4"' if s.dashed else ""
            body.append(f'<polyline points="{path}" fill="none" stroke="{escape(s.colour)}" '
                        f'stroke-width="2.5" stroke-linejoin="round"{dash}/>')
        for p in points:
            body.append(
                f'<circle class="point"{key} cx="{num(frame.px(p.x))}" cy="{num(frame.py(p.y))}"'
                f' r="4.5" fill="#fff" stroke="{escape(s.colour)}" stroke-width="2.5">'
                f"<title>{escape(p.tip or f'{s.name}: {num(p.y, 3)} at {num(p.x)}')}</title>"
                "</circle>"
            )
        body.append("</g>")
    return _svg(width, height, title, body, css="line-chart")


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str = "Bar chart",
    x_label: str = "",
    max_value: float | None = None,
    value_digits: int = 2,
    width: int = 520,
    row: int = 24,
    name_width: int = 130,
) -> SafeString:
    """Horizontal bars, one row per item with its name on the left and value on the right.

    `max_value` fixes the scale (1.0 for F1 scores); by default the largest value.
    """
    top = max(max((b.value for b in bars), default=0.0), max_value or 0.0)
    ticks = nice_ticks(0.0, top or 1.0, 4) if max_value is None else nice_ticks(0.0, max_value, 4)
    frame = _Frame(left=name_width, top=8, width=width - name_width - 56,
                   height=max(len(bars), 1) * row, x_min=0.0, x_max=ticks[-1])
    body = []
    bottom = frame.top + frame.height
    for tick in ticks:
        px = frame.px(tick)
        body.append(f'<line x1="{num(px)}" x2="{num(px)}" y1="{num(frame.top)}" '
                    f'y2="{num(bottom)}" stroke="{GRID}"/>')
        body.append(_text(px, bottom + 15, num(tick), extra=' class="tick x"'))
    for i, b in enumerate(bars):
        y = frame.top + i * row
        w = max(frame.px(b.value) - frame.left, 0.0)
        tip = b.tip or f"{b.label}: {num(b.value, value_digits)}"
        body.append(
            f'<g class="bar"><title>{escape(tip)}</title>'
            + _text(frame.left - 8, y + row / 2 + 4, _short(b.label, 18), anchor="end")
            + f'<rect x="{num(frame.left)}" y="{num(y + 4)}" width="{num(w)}" '
            f'height="{num(row - 8)}" rx="3" fill="{escape(b.colour)}"/>'
            + _text(frame.left + w + 6, y + row / 2 + 4, num(b.value, value_digits),
                    anchor="start")
            + "</g>"
        )
    body.append(f'<line x1="{num(frame.left)}" x2="{num(frame.left)}" y1="{num(frame.top)}" '
                f'y2="{num(bottom)}" stroke="{AXIS}"/>')
    height = bottom + 20
    if x_label:
        body.append(_text(frame.left + frame.width / 2, bottom + 33, x_label,
                          extra=' class="axis-label x"'))
        height += 16
    return _svg(width, height, title, body, css="bar-chart")


def _blend(share: float) -> str:
    """White to the accent blue as `share` goes from 0 to 1."""
    share = min(max(share, 0.0), 1.0)
    start, end = (255, 255, 255), (9, 105, 218)
    r, g, b = (round(s + (e - s) * share) for s, e in zip(start, end, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(
    matrix: Sequence[Sequence[int]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    title: str = "Confusion matrix",
    x_label: str = "Predicted",
    y_label: str = "True",
    max_cell: int = 56,
) -> SafeString:
    """A grid of counts; each cell shaded by its share of its row (so a confusion matrix's
    diagonal reads as per-class recall whatever the class sizes), count written inside."""
    k_rows, k_cols = len(row_labels), len(col_labels)
    cell = max(min(max_cell, 480 // max(k_cols, 1)), 18)
    # The margins grow with the names, so names are written whole; only a name longer than
    # LABEL_CHARS is shortened, and every name is whole in its <title> (the tooltip).
    row_names = [_short(name, LABEL_CHARS) for name in row_labels]
    col_names = [_short(name, LABEL_CHARS) for name in col_labels]
    row_w = max((len(name) for name in row_names), default=0) * CHAR_W
    col_w = max((len(name) for name in col_names), default=0) * CHAR_W
    left = max(60, row_w + 16)
    # Column names are turned 40 degrees: they rise by sin(40°) of their length and lean
    # right by cos(40°), past the grid's edge for the last columns.
    top = max(40, col_w * 0.65 + 16)
    overhang = max(24, col_w * 0.77 - cell / 2 + 8)
    body = []
    for j, name in enumerate(col_labels):
        cx = left + j * cell + cell / 2
        body.append(
            f'<g class="col-label"><title>{escape(name)}</title>'
            + _text(cx, top - 8, col_names[j], anchor="start",
                    extra=f' transform="rotate(-40 {num(cx)} {num(top - 8)})"')
            + "</g>"
        )
    for i, name in enumerate(row_labels):
        row = matrix[i] if i < len(matrix) else []
        total = sum(row) or 1
        y = top + i * cell
        body.append(
            f'<g class="row-label"><title>{escape(name)}</title>'
            + _text(left - 8, y + cell / 2 + 4, row_names[i], anchor="end")
            + "</g>"
        )
        for j in range(k_cols):
            count = row[j] if j < len(row) else 0
            share = count / total
            ink = "#fff" if share > 0.55 else "#1f2328"
            weight = ' font-weight="600"' if i == j else ""
            tip = f"true {row_labels[i]}, predicted {col_labels[j]}: {count}"
            body.append(
                f'<g class="cell"><title>{escape(tip)}</title>'
                f'<rect x="{num(left + j * cell)}" y="{num(y)}" width="{cell}" height="{cell}" '
                f'fill="{_blend(share)}" stroke="#fff"/>'
                f'<text x="{num(left + j * cell + cell / 2)}" y="{num(y + cell / 2 + 4)}" '
                f'text-anchor="middle" fill="{ink}" style="fill: {ink}"{weight}>'
                f"{count}</text></g>"
            )
    grid_w, grid_h = k_cols * cell, k_rows * cell
    body.append(f'<rect x="{num(left)}" y="{num(top)}" width="{grid_w}" height="{grid_h}" '
                f'fill="none" stroke="{AXIS}"/>')
    body.append(_text(left + grid_w / 2, top + grid_h + 20, x_label,
                      extra=' class="axis-label x"'))
    cy = top + grid_h / 2
    body.append(_text(14, cy, y_label,
                      extra=f' class="axis-label y" transform="rotate(-90 14 {num(cy)})"'))
    return _svg(left + grid_w + overhang, top + grid_h + 30, title, body, css="heatmap")


def histogram(
    counts: Sequence[int],
    edges: Sequence[float],
    *,
    title: str = "Histogram",
    x_label: str = "",
    y_label: str = "Count",
    colour: str = PALETTE[0],
    width: int = 520,
    height: int = 240,
) -> SafeString:
    """Vertical bars over contiguous bins; `edges` has len(counts) + 1 values."""
    if len(edges) != len(counts) + 1:
        raise ValueError("a histogram needs one more edge than bins")
    y_ticks = nice_ticks(0.0, max(max(counts, default=0), 1), 4)
    frame = _Frame(left=56, top=12, width=width - 72, height=height - 60,
                   x_min=edges[0], x_max=edges[-1], y_min=0.0, y_max=y_ticks[-1])
    step = max(1, math.ceil(len(edges) / 11))
    x_ticks = list(edges[::step])
    body = _axes(frame, x_ticks, y_ticks, x_label=x_label, y_label=y_label)
    for i, count in enumerate(counts):
        x0, x1 = frame.px(edges[i]), frame.px(edges[i + 1])
        y = frame.py(count)
        body.append(
            f'<rect class="bin" x="{num(x0 + 1)}" y="{num(y)}" width="{num(max(x1 - x0 - 2, 1))}"'
            f' height="{num(frame.top + frame.height - y)}" fill="{escape(colour)}">'
            f"<title>{escape(f'{num(edges[i])}–{num(edges[i + 1])}: {count}')}</title></rect>"
        )
    return _svg(width, height, title, body, css="histogram")


@dataclass(frozen=True)
class BarSeries:
    name: str
    values: Sequence[float]
    colour: str = PALETTE[0]


def grouped_bars(
    categories: Sequence[str],
    series: Sequence[BarSeries],
    *,
    title: str = "Grouped bars",
    x_label: str = "",
    y_label: str = "Share",
    value_digits: int = 3,
    width: int = 520,
    height: int = 240,
    label_every: int = 1,
) -> SafeString:
    """Vertical bars, one group per category with a bar per series side by side (a
    production sample beside the holdout, say), a legend above; `label_every` writes every
    n-th category name under the axis (all of them are in the bars' tooltips)."""
    top = max((v for s in series for v in s.values), default=0.0)
    y_ticks = nice_ticks(0.0, top or 1.0, 4)
    frame = _Frame(left=56, top=30, width=width - 72, height=height - 78,
                   x_min=0.0, x_max=max(len(categories), 1), y_min=0.0, y_max=y_ticks[-1])
    body = _axes(frame, [], y_ticks, x_label=x_label, y_label=y_label)
    legend_x = frame.left
    body.append('<g class="legend">')
    for s in series:
        body.append(f'<rect x="{num(legend_x)}" y="8" width="12" height="12" rx="2" '
                    f'fill="{escape(s.colour)}"/>')
        body.append(_text(legend_x + 17, 18, s.name, anchor="start"))
        legend_x += 30 + 7.2 * len(s.name)
    body.append("</g>")
    slot = frame.width / max(len(categories), 1)
    bar_w = max((slot - 4) / max(len(series), 1), 1.0)
    bottom = frame.top + frame.height
    for i, category in enumerate(categories):
        x0 = frame.left + i * slot + 2
        for j, s in enumerate(series):
            value = float(s.values[i]) if i < len(s.values) else 0.0
            y = frame.py(value)
            tip = f"{category}, {s.name}: {num(value, value_digits)}"
            body.append(
                f'<rect class="bar" data-series="{escape(s.name)}" '
                f'x="{num(x0 + j * bar_w)}" y="{num(y)}" width="{num(bar_w)}" '
                f'height="{num(bottom - y)}" fill="{escape(s.colour)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
        if i % max(label_every, 1) == 0:
            body.append(_text(frame.left + (i + 0.5) * slot, bottom + 16,
                              _short(category, max(int(slot * label_every / CHAR_W), 3)),
                              extra=' class="tick x"'))
    return _svg(width, height, title, body, css="grouped-bars")
