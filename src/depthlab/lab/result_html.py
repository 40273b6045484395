"""The rich display of an experiment's :class:`~depthlab.lab.experiments.base.Result` in a notebook.

Its title, the summary the command line prints, the metrics as a table and every figure as an
embedded PNG (a ``data:`` address: nothing is fetched). The full page with the explanation
is the experiment's ``report.html`` (:mod:`depthlab.lab.report`).
"""
from __future__ import annotations

import base64
import numbers

from .. import _html

FIGURE_WIDTH = 900      # pixels: figures are shrunk to this width for the notebook


def _scalar(value) -> bool:
    return value is None or isinstance(value, (numbers.Number, str))


def figure_img(figure, name: str) -> str:
    """An ``<img>`` holding ``figure`` as a base64 PNG (at most :data:`FIGURE_WIDTH` wide)."""
    from . import plots

    png = plots.encode_png(plots.render(figure), max_width=FIGURE_WIDTH)
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure style="margin: 6px 0;"><img src="data:image/png;base64,{data}" alt="{_html.escape(name)}" '
            f'style="max-width: 100%;"/><figcaption style="color: #57606a;">{_html.escape(name)}</figcaption></figure>')


def result_text(result) -> str:
    """A one-line repr: name, what it holds, the summary's first line."""
    first = result.summary.splitlines()[0] if result.summary else ""
    return (f"Result({result.name!r}: {len(result.figures)} figures, {len(result.metrics)} metrics, "
            f"{len(result.tables)} tables{'; ' + first if first else ''})")


def result_html(result) -> str:
    """Title, summary, scalar metrics and figures as one HTML block."""
    metrics = [[_html.Markup(f"<code>{_html.escape(key)}</code>"), value]
               for key, value in result.metrics.items() if _scalar(value)]
    parts = [_html.heading(f"{result.name}: {result.title}")]
    if result.summary:
        parts.append(f'<pre style="white-space: pre-wrap; margin: 4px 0;">{_html.escape(result.summary)}</pre>')
    if metrics:
        parts.append(_html.table(["metric", "value"], metrics))
    parts += [figure_img(figure, name) for name, figure in result.figures.items()]
    if result.out_dir is not None:
        parts.append(_html.paragraph(f"written to {result.out_dir} (report.html, metrics.json, figures)", muted=True))
    return _html.container(*parts)
