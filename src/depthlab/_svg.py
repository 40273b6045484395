"""A small line chart as inline SVG, for the rich displays (no matplotlib needed, nothing fetched).

The displays of a :class:`~depthlab.ProbeReport` and a :class:`~depthlab.History` show their
numbers as a picture beside the table. The full figures are :mod:`depthlab.lab.plot`'s; this
chart is the thumbnail: a few series of points and lines, linear or log y, labelled axes.

    >>> line_chart([Series("std f_k", [0, 1, 2], [1.0, 2.0, 4.0])], xlabel="layer k", logy=True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ._html import escape

PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]   # as depthlab.lab.plots
LEFT, RIGHT, TOP, BOTTOM = 50, 12, 22, 34
DASH = ' stroke-dasharray="4 3"'
LEGEND_WIDTH = 105


@dataclass
class Series:
    """One curve: ``y`` against ``x``; ``markers`` draws points, ``line`` joins them (``dashed``)."""

    label: str
    x: list
    y: list
    color: str | None = None
    markers: bool = True
    line: bool = False
    dashed: bool = False


def _finite_points(series: Series, logy: bool) -> list[tuple[float, float | None]]:
    """(x, y or None): None where y is missing, non-finite, or not positive on a log axis."""
    points = []
    for x, y in zip(series.x, series.y):
        x, y = _real(x), _real(y)
        ok = x is not None and y is not None and (y > 0 or not logy)
        if x is not None:
            points.append((x, (math.log10(y) if logy else y) if ok else None))
    return points


def _real(value) -> float | None:
    """A finite float, or None for None, NaN, ±inf and anything that is not a number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round numbers (1, 2 or 5 × 10^k apart) covering [low, high]."""
    span = high - low
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + 1e-9 * span:
        ticks.append(0.0 if abs(value) < 1e-12 * step else value)
        value += step
    return ticks


def _decade_label(power: float) -> str:
    return f'10<tspan dy="-5" font-size="8">{int(power)}</tspan>'


def line_chart(series: list[Series], *, xlabel: str = "", ylabel: str = "", logy: bool = False, title: str = "",
               width: int = 470, height: int = 230, integer_x: bool = False) -> str:
    """An ``<svg>`` element drawing ``series``; the empty string when no series has a point to draw.

    On a log axis (``logy``) non-positive and non-finite values are left out (gaps in lines).
    """
    data = [(s, _finite_points(s, logy)) for s in series]
    ys = [y for _, points in data for _, y in points if y is not None]
    xs = [x for _, points in data for x, y in points if y is not None]
    if not ys:
        return ""
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - (0.5 if logy else max(abs(y0) * 0.1, 1e-12)), y1 + (0.5 if logy else max(abs(y1) * 0.1, 1e-12))
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad
    legend_w = LEGEND_WIDTH if any(s.label for s in series) else 0
    plot_w, plot_h = width - LEFT - RIGHT - legend_w, height - TOP - BOTTOM

    def sx(x):
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def sy(y):
        return TOP + (1 - (y - y0) / (y1 - y0)) * plot_h

    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="white" stroke="#bbbbbb"/>']
    if logy:
        lo, hi = math.ceil(y0), math.floor(y1)
        stride = max(1, math.ceil((hi - lo + 1) / 6))
        yticks = [float(p) for p in range(lo, hi + 1, stride)] or [round((y0 + y1) / 2)]
    else:
        yticks = _nice_ticks(y0, y1)
    for tick in yticks:
        if not y0 <= tick <= y1:
            continue
        y = sy(tick)
        label = _decade_label(tick) if logy else escape(f"{tick:.4g}")
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#eeeeee"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end" font-size="9">{label}</text>')
    xticks = [t for t in _nice_ticks(x0, x1) if not integer_x or float(t).is_integer()]
    for tick in xticks:
        x = sx(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{TOP + plot_h}" x2="{x:.1f}" y2="{TOP + plot_h + 3}" stroke="#666666"/>')
        parts.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 13}" text-anchor="middle" font-size="9">'
                     f'{escape(f"{tick:.4g}")}</text>')
    for i, (s, points) in enumerate(data):
        color = escape(s.color or PALETTE[i % len(PALETTE)])
        if s.line:
            runs, run = [], []
            for x, y in points:
                if y is None:
                    runs, run = runs + [run] * bool(run), []
                else:
                    run.append(f"{sx(x):.1f},{sy(y):.1f}")
            for run in runs + [run] * bool(run):
                dash = DASH if s.dashed else ""
                parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" '
                             f'stroke-width="1.5"{dash}/>')
        if s.markers:
            parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.4" fill="{color}"/>'
                      for x, y in points if y is not None]
    for i, s in enumerate(series if legend_w else []):             # legend, right of the plot
        color = escape(s.color or PALETTE[i % len(PALETTE)])
        x, y = LEFT + plot_w + 8, TOP + 8 + 13 * i
        swatch = (f'<line x1="{x}" y1="{y - 3}" x2="{x + 14}" y2="{y - 3}" stroke="{color}" '
                  f'stroke-width="1.5"{DASH if s.dashed else ""}/>' if s.line else
                  f'<circle cx="{x + 7}" cy="{y - 3}" r="2.4" fill="{color}"/>')
        parts.append(swatch + f'<text x="{x + 18}" y="{y}" font-size="9">{escape(s.label)}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" font-size="10">'
                 f"{escape(xlabel)}</text>")
    parts.append(f'<text x="12" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" font-size="10" '
                 f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">{escape(ylabel)}</text>')
    if title:
        parts.append(f'<text x="{LEFT}" y="14" font-size="11" font-weight="600">{escape(title)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif">{"".join(parts)}</svg>')
