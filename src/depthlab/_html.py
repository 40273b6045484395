"""Small, well-formed HTML for the rich displays (``_repr_html_``) of depthlab's objects.

Every text that reaches the page goes through :func:`html.escape`; styles are inline, so a
display never changes the look of the rest of a notebook, and nothing is fetched from
anywhere (no scripts, no fonts, no external images). The output is also well-formed XML, so
tests can parse it with ``xml.etree``.

    >>> table(["layer", "std"], [[0, 1.5], [1, None]])        # None and NaN show as "—"
"""
from __future__ import annotations

import html
import math
import numbers

FONT = "font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; font-size: 12px;"
MONO = "font-family: ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace;"
BORDER = "#d0d7de"

# status -> (background, text colour): verdicts of a probe, statuses of a sweep's records
STATUS_COLOURS = {
    "healthy": ("#dafbe1", "#1a7f37"),
    "ok": ("#dafbe1", "#1a7f37"),
    "exploding": ("#ffebe9", "#cf222e"),
    "failed": ("#ffebe9", "#cf222e"),
    "vanishing": ("#ddf4ff", "#0969da"),
    "saturated": ("#fff8c5", "#9a6700"),
    "dead": ("#eaeef2", "#24292f"),
}


def escape(value) -> str:
    """``value`` as text safe inside an element or a quoted attribute."""
    return html.escape(str(value), quote=True)


def number(value) -> str:
    """A number as a table shows it: 4 significant digits, scientific when very large or small.

    None and NaN become "—"; bools and strings are written as they are; ints get separators.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Number):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value == 0:
        return "0"
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e5 else f"{value:.3e}"


def badge(text: str, status: str | None = None) -> str:
    """A small rounded label, coloured by ``status`` (a key of :data:`STATUS_COLOURS`)."""
    background, colour = STATUS_COLOURS.get(status or text, ("#eaeef2", "#24292f"))
    return (f'<span style="background: {background}; color: {colour}; border-radius: 9px; padding: 1px 8px; '
            f'font-weight: 600;">{escape(text)}</span>')


def cell(value) -> str:
    """Escaped cell text: numbers formatted with :func:`number`, everything else as text."""
    return escape(number(value))


def table(headers, rows, *, row_styles=None, caption: str | None = None, monospace: bool = True) -> str:
    """An HTML table.

    Parameters
    ----------
    headers : list of str
    rows : list of lists
        One list of cell values per row (numbers are formatted with :func:`number`; a value
        of type :class:`Markup` is inserted as it is).
    row_styles : list of str or None, optional
        An inline style per row (e.g. a highlight for the row where a problem starts).
    caption : str, optional
    monospace : bool
        Numbers in a fixed-width font, right-aligned.
    """
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    styles = row_styles or [None] * len(rows)
    body = []
    for row, style in zip(rows, styles):
        cells = "".join(f"<td>{cell(value)}</td>" if _numeric(value) else
                        f'<td class="text">{value if isinstance(value, Markup) else cell(value)}</td>' for value in row)
        body.append(f'<tr style="{escape(style)}">{cells}</tr>' if style else f"<tr>{cells}</tr>")
    caption_html = f"<caption>{escape(caption)}</caption>" if caption else ""
    kind = "depthlab-table" + " depthlab-mono" * monospace
    return f'<table class="{kind}">{caption_html}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _numeric(value) -> bool:
    return value is None or (isinstance(value, numbers.Number) and not isinstance(value, bool))


class Markup(str):
    """Text that is already HTML (built by these helpers): :func:`table` inserts it unescaped."""


def paragraph(text: str, *, muted: bool = False) -> str:
    colour = "color: #57606a; " if muted else ""
    return f'<p style="{colour}margin: 4px 0;">{escape(text)}</p>'


def heading(text: str, extra: str = "") -> str:
    """A bold title line; ``extra`` is HTML placed after it (e.g. a :func:`badge`)."""
    return f'<div style="font-weight: 600; font-size: 13px; margin-bottom: 4px;">{escape(text)} {extra}</div>'


# Rules for the tables, scoped by their class names (a notebook applies <style> to the whole page).
STYLE = ("<style>"
         ".depthlab-table { border-collapse: collapse; margin: 4px 0; }"
         f".depthlab-table th {{ padding: 2px 8px; border-bottom: 1px solid {BORDER}; text-align: right; }}"
         ".depthlab-table td { padding: 1px 8px; text-align: right; }"
         ".depthlab-table td.text { text-align: left; }"
         f".depthlab-mono td {{ {MONO} }}"
         ".depthlab-table caption { caption-side: top; text-align: left; font-weight: 600; padding: 2px 0; }"
         "</style>")


def container(*parts: str) -> str:
    """The outer block of a display: the table rules, then the parts one after another."""
    return f'<div style="{FONT} line-height: 1.35;">{STYLE}{"".join(parts)}</div>'


def side_by_side(*parts: str) -> str:
    """Parts next to each other, wrapping on narrow screens."""
    items = "".join(f'<div style="margin-right: 16px;">{part}</div>' for part in parts)
    return f'<div style="display: flex; flex-wrap: wrap; align-items: flex-start;">{items}</div>'
