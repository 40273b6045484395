"""Self-contained HTML reports: one page per experiment and the tour's index.

Every page is a single file a student can mail or open offline: figures are embedded as
``data:image/png;base64`` images, the CSS is inline, there is no JavaScript. The markup is
well-formed (void elements self-closed, every tag balanced), so an XML parser reads it too.

:func:`render_experiment` lays a page out as a lab notebook would: what was run and what it
reproduces, the key numbers, an explanation of what to notice, the figures, the metrics
table, any further tables, the configuration with the command that reproduces it, and the
versions, seed and date. :func:`render_index` links every experiment of a tour, with its
first figure as a thumbnail, its one-line finding and key metrics, and marks failures.
"""
from __future__ import annotations

import base64
import html
import math
import numbers
from html.parser import HTMLParser

CSS = """
:root { --ink: #1d2330; --muted: #5b6472; --line: #e3e6eb; --soft: #f6f7f9; --accent: #0072B2;
        --good: #1b7f4a; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.55;
       font: 15px/1.55 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 24px 60px; }
header { border-bottom: 3px solid var(--accent); margin-bottom: 22px; padding-bottom: 12px; }
h1 { font-size: 1.75em; margin: 0 0 4px; line-height: 1.2; }
h2 { font-size: 1.2em; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.0em; margin: 20px 0 6px; color: var(--muted); }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, pre, .mono { font-family: "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; font-size: 0.9em; }
code { background: var(--soft); padding: 1px 4px; border-radius: 3px; }
.subtitle { color: var(--muted); margin: 0; }
.pill { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 0.8em; font-weight: 600;
        background: var(--soft); color: var(--muted); margin-right: 6px; }
.pill.ok { background: #e4f4ea; color: var(--good); }
.pill.failed { background: #fbe7e5; color: var(--bad); }
.summary { background: var(--soft); border-left: 4px solid var(--accent); padding: 10px 14px;
           white-space: pre-wrap; margin: 0; border-radius: 0 4px 4px 0; }
.explanation p { margin: 0 0 10px; }
figure { margin: 18px 0 26px; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 0.88em; margin-top: 4px; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 0.9em; }
th, td { padding: 4px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; font-family: "SFMono-Regular", Menlo, Consolas, monospace; }
tbody tr:nth-child(even) td { background: #fbfbfc; }
.scroll { max-height: 420px; overflow: auto; display: inline-block; max-width: 100%; border: 1px solid var(--line); }
.scroll table { margin: 0; }
details summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
.command { background: #1d2330; color: #e8ecf2; padding: 10px 14px; border-radius: 4px; overflow-x: auto; }
footer { margin-top: 40px; color: var(--muted); font-size: 0.85em; border-top: 1px solid var(--line); padding-top: 10px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 18px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 14px 16px; background: #fff; }
.card.failed { border-color: #f0b8b3; background: #fff8f7; }
.card h2 { border: none; margin: 6px 0 2px; padding: 0; font-size: 1.08em; }
.card .thumb { display: block; text-align: center; background: var(--soft); border-radius: 4px; min-height: 60px; }
.card .thumb img { max-width: 100%; height: auto; }
.card p { margin: 4px 0; }
.card .finding { font-weight: 600; }
.card table { width: 100%; font-size: 0.85em; }
.card .meta { color: var(--muted); font-size: 0.85em; }
.error { color: var(--bad); font-family: "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.85em;
         white-space: pre-wrap; overflow-wrap: anywhere; }
.pill.reproduced { background: #e4f4ea; color: var(--good); }
.pill.partly { background: #fdf1d8; color: #8a5a00; }
.pill.not-reproduced { background: #fbe7e5; color: var(--bad); }
.gallery td { vertical-align: middle; }
.gallery img { width: 220px; height: auto; border: 1px solid var(--line); border-radius: 3px; }
.checks { margin: 2px 0 0 18px; padding: 0; font-size: 0.88em; color: var(--muted); }
.banner { border: 1px solid #f0b8b3; background: #fff8f7; color: var(--bad); padding: 8px 12px; border-radius: 4px; }
"""

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


# ----------------------------------------------------------------------------- small pieces

def esc(text) -> str:
    """HTML-escaped text (quotes included)."""
    return html.escape(str(text), quote=True)


def format_number(value) -> str:
    """A number as a person reads it: 4 significant digits, scientific when very large or small."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value)) if abs(value) < 10**7 else f"{float(value):.4g}"
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value == 0:
            return "0"
        if 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def format_cell(value, limit: int = 8) -> str:
    """Any metric or table value as short text (lists shortened after ``limit`` items)."""
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {format_cell(v, limit)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        items = [format_cell(v, limit) for v in value[:limit]]
        return "[" + ", ".join(items) + (", …" if len(value) > limit else "") + "]"
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalar
        value = value.item()
    return format_number(value)


def _is_numeric(value) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def img(png: bytes, alt: str, css_class: str = "") -> str:
    """An ``<img>`` with the PNG embedded as base64."""
    data = base64.b64encode(png).decode("ascii")
    klass = f' class="{esc(css_class)}"' if css_class else ""
    return f'<img{klass} alt="{esc(alt)}" src="data:image/png;base64,{data}"/>'


def table(rows: list[dict], *, numeric_right: bool = True) -> str:
    """Rows (dicts) as an HTML table; columns in first-seen order."""
    columns: list = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            klass = ' class="num"' if numeric_right and _is_numeric(value) else ""
            cells.append(f"<td{klass}>{esc(format_cell(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def metrics_table(metrics: dict) -> str:
    """The metrics as a two-column table (class ``metrics``)."""
    rows = "".join(
        f'<tr><td class="mono">{esc(k)}</td><td class="num">{esc(format_cell(v))}</td></tr>'
        for k, v in metrics.items()
    )
    return f'<table class="metrics"><thead><tr><th>metric</th><th>value</th></tr></thead><tbody>{rows}</tbody></table>'


class _Tidy(HTMLParser):
    """Re-serialize an HTML fragment as well-formed markup (balanced, void tags self-closed)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []

    def _attrs(self, attrs) -> str:
        return "".join(f' {esc(k)}="{esc(v if v is not None else k)}"' for k, v in attrs)

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            self.out.append(f"<{tag}{self._attrs(attrs)}/>")
        else:
            self.out.append(f"<{tag}{self._attrs(attrs)}>")
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.out.append(f"<{tag}{self._attrs(attrs)}/>" if tag in _VOID
                        else f"<{tag}{self._attrs(attrs)}></{tag}>")

    def handle_endtag(self, tag):
        if tag in self.open:
            while self.open:
                top = self.open.pop()
                self.out.append(f"</{top}>")
                if top == tag:
                    break

    def handle_data(self, data):
        self.out.append(esc(data).replace("&#x27;", "'"))

    def close(self):
        super().close()
        while self.open:
            self.out.append(f"</{self.open.pop()}>")


def tidy(fragment: str) -> str:
    """A well-formed version of an HTML fragment (the experiments' explanations)."""
    parser = _Tidy()
    parser.feed(fragment or "")
    parser.close()
    return "".join(parser.out)


def page(title: str, body: str) -> str:
    """A complete HTML document with the lab's CSS."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8"/>\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _caption(name: str) -> str:
    return name.replace("_", " ").replace("-", " ")


# ----------------------------------------------------------------------------- pages

def render_experiment(result, pngs: dict, context: dict) -> str:
    """The report page of one experiment.

    Parameters
    ----------
    result : Result
    pngs : dict of str -> bytes
        Figure file stem -> PNG bytes, in display order.
    context : dict
        ``summary_line``, ``reproduces``, ``versions`` (dict), ``date``, ``seed``, ``command``,
        ``seconds``, ``quick`` and optionally ``index_href`` (a link back to the tour's index).
    """
    parts = ["<header>"]
    if context.get("index_href"):
        parts.append(f'<p class="subtitle"><a href="{esc(context["index_href"])}">← all experiments</a></p>')
    parts.append(f"<h1>{esc(result.title)}</h1>")
    sub = [f'<span class="pill">{esc(result.name)}</span>']
    if context.get("quick"):
        sub.append('<span class="pill">quick run</span>')
    if context.get("reproduces"):
        sub.append(f"reproduces {esc(context['reproduces'])}")
    parts.append(f'<p class="subtitle">{" ".join(sub)}</p>')
    if context.get("summary_line"):
        parts.append(f'<p class="subtitle">{esc(context["summary_line"])}</p>')
    parts.append("</header>")

    if result.summary:
        parts.append(f'<h2>Result</h2>\n<pre class="summary">{esc(result.summary.strip())}</pre>')
    if getattr(result, "claims", None):
        parts.append("<h2>Claims tested</h2>")
        parts.append("".join(_claim_block(claim) for claim in result.claims))
    if result.explanation:
        parts.append(f'<h2>What you are looking at</h2>\n<div class="explanation">{tidy(result.explanation)}</div>')
    if pngs:
        parts.append("<h2>Figures</h2>")
        for stem, png in pngs.items():
            parts.append(f"<figure>{img(png, _caption(stem))}<figcaption>{esc(stem)}.png</figcaption></figure>")
    parts.append("<h2>Metrics</h2>")
    parts.append(metrics_table(result.metrics) if result.metrics else "<p>No metrics.</p>")
    if result.tables:
        parts.append("<h2>Tables</h2>")
    for name, rows in (result.tables or {}).items():
        parts.append(f"<h3>{esc(name)}</h3>")
        if not rows:
            parts.append("<p>(empty)</p>")
            continue
        rendered = table(rows)
        parts.append(f'<div class="scroll">{rendered}</div>' if len(rows) > 14 else rendered)
    parts.append("<h2>Configuration</h2>")
    parts.append(table([{"key": k, "value": format_config_value(v)} for k, v in result.config.items()],
                       numeric_right=False))
    if context.get("command"):
        parts.append(f'<p>Reproduce this page:</p>\n<pre class="command">{esc(context["command"])}</pre>')
    versions = ", ".join(f"{k} {v}" for k, v in (context.get("versions") or {}).items())
    seconds = context.get("seconds")
    timing = f" · ran in {seconds:.1f} s" if seconds is not None else ""
    parts.append(f"<footer>seed {esc(context.get('seed'))} · {esc(context.get('date', ''))}{esc(timing)}"
                 f"<br/>{esc(versions)}</footer>")
    return page(f"{result.title} — depthlab", "\n".join(parts))


def format_config_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(format_config_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def render_index(entries, meta: dict) -> str:
    """The tour's index: a card per experiment linking its report.

    Parameters
    ----------
    entries : list of TourEntry
        As made by :func:`depthlab.lab.experiments.base.run_tour`.
    meta : dict
        ``versions``, ``date``, ``quick``, ``seed``, ``seconds``.
    """
    ok = sum(1 for e in entries if e.ok)
    failed = [e for e in entries if not e.ok]
    kind = "quick run" if meta.get("quick") else "full run"
    parts = [
        "<header><h1>depthlab — the lab tour</h1>",
        f'<p class="subtitle">{ok} of {len(entries)} experiments ran · {esc(kind)} · '
        f"{esc(meta.get('date', ''))} · {meta.get('seconds', 0):.0f} s in total</p></header>",
        "<p>Each card is one experiment: it reproduces a table or figure from the seed documents (or a "
        "landmark paper), puts the theory beside the measurement, and explains what to notice. "
        "Click a card for the full report with every figure, table and the command that reproduces it.</p>",
    ]
    if failed:
        names = ", ".join(e.name for e in failed)
        parts.append(f'<p class="banner">{len(failed)} experiment(s) failed: {esc(names)}. '
                     "Their cards show the error; the others' results are complete.</p>")
    gallery = _gallery(entries)
    if gallery:
        parts.append(gallery)
        parts.append("<h2>Experiments</h2>")
    parts.append('<div class="grid">')
    for entry in entries:
        parts.append(_card(entry))
    parts.append("</div>")
    versions = ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items())
    seed = meta.get("seed")
    seed_text = "each experiment's default seed" if seed is None else f"seed {seed}"
    parts.append(f"<footer>{esc(seed_text)} · {esc(versions)}<br/>"
                 "Regenerate with <code>depthlab report</code> (add <code>--quick</code> for a fast preview).</footer>")
    return page("depthlab — the lab tour", "\n".join(parts))


def _card(entry) -> str:
    status = '<span class="pill ok">ok</span>' if entry.ok else '<span class="pill failed">failed</span>'
    title = (f'<a href="{esc(entry.report)}">{esc(entry.title)}</a>' if entry.ok and entry.report
             else esc(entry.title))
    out = [f'<div class="card{"" if entry.ok else " failed"}">']
    if entry.ok and entry.thumbnail:
        out.append(f'<a class="thumb" href="{esc(entry.report)}">{img(entry.thumbnail, entry.title)}</a>')
    out.append(f"<h2>{title}</h2>")
    meta = f"{status}<code>{esc(entry.name)}</code>"
    if entry.ok:
        meta += f" · {entry.seconds:.1f} s"
    out.append(f'<p class="meta">{meta}</p>')
    if entry.reproduces:
        out.append(f'<p class="meta">reproduces {esc(entry.reproduces)}</p>')
    if entry.summary_line:
        out.append(f"<p>{esc(entry.summary_line)}</p>")
    if entry.ok:
        if entry.finding:
            out.append(f'<p class="finding">{esc(entry.finding)}</p>')
        if entry.key_metrics:
            out.append(metrics_table(entry.key_metrics))
    else:
        out.append(f'<p class="error">{esc(entry.error)}</p>')
    out.append("</div>")
    return "\n".join(out)


# ----------------------------------------------------------------------------- claims

def verdict_pill(verdict: str) -> str:
    """A coloured pill: reproduced (green), partly (amber), not reproduced (red)."""
    return f'<span class="pill {esc(verdict.replace(" ", "-"))}">{esc(verdict)}</span>'


def _claim_block(claim) -> str:
    checks = "".join(f"<li>{'✓' if held else '✗'} {esc(text)}</li>" for text, held in claim.checks)
    return (f"<p>{verdict_pill(claim.verdict)}<b>{esc(claim.source)}</b>: {esc(claim.statement)}<br/>"
            f"measured: {esc(claim.measured)}<br/>budget: {esc(claim.budget)}</p>"
            f'<ul class="checks">{checks}</ul>')


def _gallery(entries) -> str:
    """The index's gallery of claims: one row per claim, with its figure, verdict and numbers."""
    rows = []
    for entry in entries:
        for claim in getattr(entry, "claims", None) or []:
            stem = claim.figure
            png = (getattr(entry, "thumbnails", None) or {}).get(stem) if stem else entry.thumbnail
            picture = (f'<a href="{esc(entry.report)}">{img(png, claim.source)}</a>' if png
                       else f'<a href="{esc(entry.report)}">report</a>')
            rows.append(f"<tr><td>{picture}</td><td><b>{esc(claim.source)}</b><br/>{esc(claim.statement)}</td>"
                        f"<td>{verdict_pill(claim.verdict)}</td><td>{esc(claim.measured)}<br/>"
                        f'<span class="meta">budget: {esc(claim.budget)} · <code>{esc(entry.name)}</code></span>'
                        "</td></tr>")
    if not rows:
        return ""
    return ('<h2>Claims: what the tour reproduces</h2>\n<p>Each row is a landmark claim, judged by its experiment '
            "from its own numbers: <i>reproduced</i> when every check held, <i>partly</i> when some did, "
            "<i>not reproduced</i> when none did. The budget is what this run could afford; click a figure for the "
            "report with the checks.</p>\n"
            '<table class="gallery"><thead><tr><th>figure</th><th>claim</th><th>verdict</th>'
            f"<th>measured</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
