"""Rich displays of the instruments' results: a probe's report, the theory's depth scales and predictions.

What ``_repr_html_`` of :class:`~depthlab.ProbeReport`, :class:`~depthlab.signal.theory.DepthScales`
and :class:`~depthlab.signal.theory.PredictedStd` return (a notebook shows it): the numbers as
a table, the verdict colour-coded, and the std per layer as a small inline SVG chart,
measured beside the mean-field theory. Offline and well-formed (see :mod:`depthlab._html`).
"""
from __future__ import annotations

from .. import _html
from .._svg import Series, line_chart

# (header, attribute of LayerStats or a function of it)
PROBE_COLUMNS = [
    ("layer k", "index"), ("units", "units"), ("activation", "activation"),
    ("std f_k", "preactivation_std"), ("theory", "predicted_preactivation_std"),
    ("std h_k+1", "activation_std"), ("theory ", "predicted_activation_std"),
    ("dead", lambda s: _percent(s.dead_fraction)), ("saturated", lambda s: _percent(s.saturated_fraction)),
    ("std dL/df_k", "grad_preactivation_std"), ("theory  ", "predicted_backward_std"),
    ("‖dL/dΩ_k‖", "weight_grad_norm"), ("‖Ω_k‖", "weight_norm"),
    ("forward ×", "forward_growth"), ("backward ×", "backward_growth"),
]

HIGHLIGHT = "background: #fff1e5;"


def _percent(value) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _value(stats, getter):
    return getter(stats) if callable(getter) else getattr(stats, getter)


def _std_chart(report, quantities, xlabel: str, title: str) -> str:
    """Inline SVG of two stds per row of ``report.layers``, measured (dots) and theory (lines):
    ``quantities`` holds (name, measured attribute, theory attribute) for each."""
    rows = [s.index for s in report.layers]
    series = []
    for (name, measured, predicted), color in zip(quantities, ("#0072B2", "#D55E00")):
        series.append(Series(f"std {name}", rows, [getattr(s, measured) for s in report.layers], color=color))
        theory = [getattr(s, predicted) for s in report.layers]
        if any(v is not None for v in theory):
            series.append(Series(f"theory {name}", rows, theory, color=color, markers=False, line=True))
    return line_chart(series, xlabel=xlabel, ylabel="std (log scale)", logy=True, integer_x=True, title=title)


def probe_chart(report) -> str:
    """Inline SVG: std of f_k and of dL/df_k per layer, measured (dots) and theory (lines)."""
    return _std_chart(report, (("f_k", "preactivation_std", "predicted_preactivation_std"),
                               ("dL/df_k", "grad_preactivation_std", "predicted_backward_std")),
                      "layer k", "std per layer: measured and mean-field theory")


def _report_html(report, columns, chart: str, row_name: str, footnote: str) -> str:
    """A probe report as an HTML block: summary line, verdict badge, diagnosis, table
    (``columns``: (header, attribute or function) per column; rows from where the verdict
    starts highlighted) beside ``chart``, and a footnote."""
    source = f"loss {report.loss}" if report.loss else "a random unit-variance dL/d(output)"
    where = "" if report.verdict_layer is None else f" from {row_name} {report.verdict_layer}"
    rows = [[_value(stats, getter) for _, getter in columns] for stats in report.layers]
    styles = [HIGHLIGHT if report.verdict_layer is not None and stats.index >= report.verdict_layer else None
              for stats in report.layers]
    table = _html.table([header.strip() for header, _ in columns], rows, row_styles=styles)
    return _html.container(
        _html.heading(f"probe: {len(report.layers)} {row_name}s, {report.n_samples} samples",
                      _html.badge(report.verdict + where, report.verdict)),
        _html.paragraph(report.diagnosis),
        _html.side_by_side(table, chart),
        _html.paragraph(f"input std {_html.number(report.input_std)}; backward pass from {source}. {footnote}",
                        muted=True))


def probe_html(report) -> str:
    """The report as an HTML block: summary line, verdict badge, diagnosis, table and chart."""
    return _report_html(report, PROBE_COLUMNS, probe_chart(report), "layer",
                        "Stds over every entry of the batch; theory: mean-field prediction "
                        "(dl.theory.predicted_std). Highlighted: the layers from where the verdict starts.")


BLOCK_COLUMNS = [  # (header, attribute of BlockStats or a function of it)
    ("block", "index"), ("layer", "kind"), ("units", "units"),
    ("std out", "output_std"), ("theory", "predicted_output_std"),
    ("branch share", lambda s: _percent(s.branch_fraction)),
    ("dead", lambda s: _percent(s.dead_fraction)), ("saturated", lambda s: _percent(s.saturated_fraction)),
    ("std dL/dout", "grad_std"), ("theory ", "predicted_grad_std"),
    ("‖dL/dθ‖", "parameter_grad_norm"), ("forward ×", "forward_growth"), ("backward ×", "backward_growth"),
]


def probe_blocks_chart(report) -> str:
    """Inline SVG: std of each block's output and of dL/d(output), measured (dots) and theory (lines)."""
    return _std_chart(report, (("output", "output_std", "predicted_output_std"),
                               ("dL/d(output)", "grad_std", "predicted_grad_std")),
                      "block i (net.layers[i])", "std per block: measured and mean-field theory")


def probe_blocks_html(report) -> str:
    """A :class:`~depthlab.signal.probe_blocks.BlockProbeReport` as an HTML block (as :func:`probe_html`)."""
    return _report_html(report, BLOCK_COLUMNS, probe_blocks_chart(report), "block",
                        "One row per top-level layer; stds over every entry of the batch; branch share: Var(s·F) / "
                        "(Var(skip) + Var(s·F)) of a residual block; theory: mean-field "
                        "(depthlab.signal.block_theory).")


# --------------------------------------------------------------------------- theory results

DEPTH_SCALE_ROWS = [  # (field, symbol, meaning)
    ("xi_c", "ξ_c", "depth scale of correlations: |c_k − c*| ~ exp(−k/ξ_c); trainable depth ≲ 6 ξ_c"),
    ("xi_q", "ξ_q", "depth scale of the variance: |q_k − q*| ~ exp(−k/ξ_q)"),
    ("chi1", "χ₁", "gradient growth per layer, σ_w² E[φ'(√q* z)²] (1 at the edge of chaos)"),
    ("chi_c", "χ_c", "slope of the correlation map at c*"),
    ("chi_q", "χ_q", "slope of the variance map at q*"),
    ("q_star", "q*", "fixed point of the pre-activation variance"),
    ("c_star", "c*", "fixed point of the correlation between two inputs"),
]


def phase(chi1: float) -> str:
    """'ordered' (χ₁ < 1), 'chaotic' (χ₁ > 1) or 'critical' (within 1e-9 of 1)."""
    if abs(chi1 - 1.0) <= 1e-9:
        return "critical"
    return "ordered" if chi1 < 1 else "chaotic"


def depth_scales_text(scales) -> str:
    """A readable one-line repr: ``DepthScales(ordered: ξ_c = 12.3, ξ_q = 2.1, χ₁ = 0.93, ...)``."""
    body = ", ".join(f"{symbol} = {_html.number(getattr(scales, name))}" for name, symbol, _ in DEPTH_SCALE_ROWS)
    return f"DepthScales({phase(scales.chi1)}: {body})"


def depth_scales_html(scales) -> str:
    status = {"ordered": "vanishing", "chaotic": "exploding", "critical": "healthy"}[phase(scales.chi1)]
    rows = [[_html.Markup(_html.escape(symbol)), getattr(scales, name), meaning] for name, symbol, meaning in DEPTH_SCALE_ROWS]
    return _html.container(_html.heading("DepthScales", _html.badge(phase(scales.chi1), status)),
                           _html.table(["", "value", "meaning"], rows, monospace=False))


def predicted_std_text(prediction) -> str:
    k = len(prediction.preactivation_std)
    first, last = prediction.preactivation_std[0], prediction.preactivation_std[-1]
    return (f"PredictedStd({k} layers: std f_0 = {_html.number(float(first))} … f_{k - 1} = "
            f"{_html.number(float(last))}; std dL/df_0 = {_html.number(float(prediction.backward_std[0]))} … "
            f"dL/df_{k - 1} = {_html.number(float(prediction.backward_std[-1]))})")


def predicted_std_html(prediction) -> str:
    """Per-layer table of the prediction and its chart."""
    k = len(prediction.preactivation_std)
    rows = [[i, float(prediction.preactivation_std[i]),
             float(prediction.activation_std[i]) if i < len(prediction.activation_std) else None,
             float(prediction.backward_std[i])] for i in range(k)]
    chart = line_chart([Series("std f_k", list(range(k)), [r[1] for r in rows], line=True),
                        Series("std dL/df_k", list(range(k)), [r[3] for r in rows], line=True)],
                       xlabel="layer k", ylabel="std (log scale)", logy=True, integer_x=True,
                       title="mean-field prediction")
    return _html.container(_html.heading(f"PredictedStd: {k} layers"),
                           _html.side_by_side(_html.table(["layer k", "std f_k", "std h_k+1", "std dL/df_k"], rows),
                                              chart))
