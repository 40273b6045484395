"""The rich display of a :class:`~depthlab.History`: its curves inline, and a table of every log.

Losses go on one chart (log scale when they span more than a factor 100), other logs
(accuracy, …) on a second; validation curves are dashed in their training curve's colour.
The table gives each log's first, last and smallest/largest value and where it happened.
Offline and well-formed (see :mod:`depthlab._html`).
"""
from __future__ import annotations

import math

from .. import _html
from .._svg import PALETTE, Series, line_chart


def _finite(values) -> list[float]:
    out = []
    for v in values:
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            out.append(v)
    return out


def _chart(history, names: list[str], ylabel: str) -> str:
    bases = list(dict.fromkeys(name.removeprefix("val_") for name in names))
    epochs = [epoch + 1 for epoch in history.epoch]
    series = [Series(name, epochs, history.history[name], color=PALETTE[bases.index(name.removeprefix("val_")) % 6],
                     markers=len(epochs) < 30, line=True, dashed=name.startswith("val_")) for name in names]
    values = [v for name in names for v in _finite(history.history[name])]
    if values and not math.isfinite(max(values) - min(values)):  # e.g. ±1e308: no axis spans them
        return _html.paragraph(f"{', '.join(names)}: values from {min(values):.3g} to {max(values):.3g}, too far "
                               "apart to draw; see the table.", muted=True)
    logy = ylabel == "loss" and bool(values) and min(values) > 0 and max(values) > 100 * min(values)
    return line_chart(series, xlabel="epoch", ylabel=ylabel + " (log scale)" * logy, logy=logy, integer_x=True,
                      width=400, height=210)


def _row(name: str, values: list, epochs: list[int]) -> list:
    """name, first, last, smallest and its epoch, largest and its epoch (epochs counted from 1)."""
    finite = [(i, float(v)) for i, v in enumerate(values) if _finite([v])]
    if not finite:
        return [name, None, None, None, None, None, None]
    low = min(finite, key=lambda item: item[1])
    high = max(finite, key=lambda item: item[1])
    return [name, _first(values), _first(values[::-1]), low[1], epochs[low[0]], high[1], epochs[high[0]]]


def _first(values):
    for v in values:
        if _finite([v]):
            return float(v)
    return None


def history_html(history) -> str:
    """The History as an HTML block: heading, charts of the curves, table of every log."""
    names = [name for name in history.history if name != "lr"]
    losses = [n for n in names if n.removeprefix("val_").endswith("loss")]
    others = [n for n in names if n not in losses]
    charts = [c for c in (_chart(history, losses, "loss") if losses else "",
                          _chart(history, others, ", ".join(dict.fromkeys(n.removeprefix("val_") for n in others)))
                          if others else "") if c]
    status = ""
    if history.interrupted or history.message:
        status = _html.badge("interrupted" if history.interrupted else "stopped early", "saturated")
    epochs = [epoch + 1 for epoch in history.epoch]
    rows = [_row(name, history.history[name], epochs) for name in history.history]
    parts = [_html.heading(f"History: {len(history.epoch)} epochs", status)]
    if history.message:
        parts.append(_html.paragraph(history.message, muted=True))
    if charts:
        parts.append(_html.side_by_side(*charts))
    if rows:
        parts.append(_html.table(["log", "first", "last", "smallest", "at epoch", "largest", "at epoch"], rows))
    else:
        parts.append(_html.paragraph("Nothing recorded yet.", muted=True))
    return _html.container(*parts)
