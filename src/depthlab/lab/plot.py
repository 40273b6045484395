"""``dl.plot``: every figure of the lab as a function of plain arrays and depthlab objects.

Each function draws one kind of figure the experiments draw, and the experiments call these
same functions. Without ``ax`` a function returns a new ``matplotlib.figure.Figure`` in the
lab's style (no pyplot state: nothing to close, no display needed, and Jupyter shows it);
with ``ax=`` it draws into that axes and returns it, so figures can be composed::

    >>> import depthlab as dl
    >>> report = dl.probe(net, x)
    >>> dl.plot.probe_std(report)                               # std per layer, theory as lines
    >>> dl.plot.training_curves(history, keys=["loss", "val_loss"], logy=True)
    >>> dl.plot.optimizer_paths(dl.optim.compare("elliptic"))   # seed 004's six paths
    >>> fig, axes = dl.plots.figure(1, 2)                       # compose: draw into given axes
    >>> dl.plot.fitted_function(net, target=dl.data.sine_function, ax=axes[0])
    >>> dl.plot.region_map(net2d, ax=axes[1])

Conventions (those of :mod:`depthlab.lab.plots`): measurements are markers, theory a line
of the same colour; quantities that grow geometrically go on log axes; axes name their
quantity in the seeds' notation (h_k, f_k, dL/df_k, σ²_Ω). matplotlib is imported only when a
function draws (``pip install 'depthlab[lab]'``).

Functions, by subject:

- signals: :func:`measured_and_theory`, :func:`signal_std`, :func:`probe_std`,
  :func:`histogram`, :func:`histogram_grid`, :func:`jacobian_spectrum`;
- mean-field theory: :func:`phase_diagram`, :func:`depth_scales`, :func:`trainability`;
- optimization and training: :func:`contours`, :func:`optimizer_paths`, :func:`curves`,
  :func:`optimizer_losses`, :func:`training_curves`;
- learned functions: :func:`fitted_function`, :func:`function_map`, :func:`fit_maps`,
  :func:`linear_regions`, :func:`region_map`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from . import plots

__all__ = [
    "measured_and_theory", "signal_std", "probe_std", "histogram", "histogram_grid", "jacobian_spectrum",
    "phase_diagram", "depth_scales", "trainability",
    "contours", "optimizer_paths", "curves", "optimizer_losses", "training_curves",
    "fitted_function", "function_map", "fit_maps", "linear_regions", "region_map",
]


# ============================================================================= plumbing

def _canvas(ax, **figure_kw):
    """(figure, axes, what to return): a new lab-style figure when ``ax`` is None, else ``ax``."""
    if ax is None:
        fig, ax = plots.figure(**figure_kw)
        return fig, ax, fig
    if not hasattr(ax, "plot") or not hasattr(ax, "figure"):
        raise TypeError(f"ax must be a matplotlib Axes (or None for a new figure), got {type(ax).__name__}.")
    return ax.figure, ax, ax


def _vector(values, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """A 1-D float array from ``values`` (a list, an array), or a TypeError/ValueError naming it."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}.") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per point), got shape {array.shape}.")
    if not allow_empty and array.size == 0:
        raise ValueError(f"{name} is empty; give at least one value.")
    return array


def _same_length(reference: np.ndarray, other: np.ndarray, names: str) -> None:
    if other.shape[0] != reference.shape[0]:
        raise ValueError(f"{names} must have the same length, got {reference.shape[0]} and {other.shape[0]}.")


def _positive_or_nan(values: np.ndarray) -> np.ndarray:
    """Values for a log axis: non-positive and non-finite entries become NaN (gaps, not errors)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(values) & (values > 0), values, np.nan)


def _choice(value, options, name: str) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}.")
    return value


# ============================================================================= signals

def measured_and_theory(x, measured, theory=None, *, theory_x=None, ax=None, label: str = "", color: str | None = None,
                        marker: str = "o", title: str | None = None, xlabel: str | None = None,
                        ylabel: str | None = None, logy: bool = False):
    """Measurements as markers and the theory's prediction as a line of the same colour.

    Parameters
    ----------
    x, measured : array_like, shape (n,)
        Where and what was measured (non-finite measurements are left out of a log axis).
    theory : array_like, shape (n,) or (len(theory_x),), optional
        The prediction, drawn as a line.
    theory_x : array_like, optional
        Where the theory is evaluated (default ``x``).
    ax : matplotlib Axes, optional
    label, color, marker
        The series' legend label, colour (default the palette's first) and marker.
    title, xlabel, ylabel, logy
        Axes decoration.

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    x, measured = _vector(x, "x"), _vector(measured, "measured")
    _same_length(x, measured, "x and measured")
    if theory is not None:
        theory = _vector(theory, "theory")
        _same_length(x if theory_x is None else _vector(theory_x, "theory_x"), theory,
                     "theory and theory_x (or x)")
    _, ax, result = _canvas(ax)
    plots.measured_and_theory(ax, x, _positive_or_nan(measured) if logy else measured,
                              theory, theory_x=theory_x, label=label, color=color, marker=marker)
    plots.decorate(ax, title=title, xlabel=xlabel, ylabel=ylabel, logy=logy)
    return result


_QUANTITIES = {  # quantity -> (first layer index, axis label)
    "h": (1, "std of hidden units $h_k$"),
    "f": (0, "std of pre-activations $f_k$"),
    "dL/df": (0, r"std of $\partial L / \partial f_k$"),
}


def signal_std(measured, theory=None, *, layers=None, draws=None, quantity: str = "h", ax=None, label: str = "",
               color: str | None = None, marker: str = "o", logy: bool = True, title: str | None = None):
    """The std of a signal layer by layer, measured (markers) with mean-field theory (line).

    The figure of seed 000's tables: std of h_k (forward) or dL/df_k (backward) against k.

    Parameters
    ----------
    measured : array_like, shape (K,)
        The measured std per layer (e.g. pooled over ``draws``); NaN where it overflowed.
    theory : array_like, shape (K,), optional
        The prediction per layer, e.g. ``dl.theory.predicted_std(...).activation_std``.
    layers : array_like of int, shape (K,), optional
        The layer indices k; default 1 … K for ``quantity="h"`` and 0 … K − 1 otherwise.
    draws : array_like, shape (R, K), optional
        The same measurement on R single networks, drawn as faint dots behind the markers.
    quantity : {"h", "f", "dL/df"}
        What the std is of; sets the default layer numbers and the y label.
    ax, label, color, marker, logy, title
        As in :func:`measured_and_theory`.

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    first, ylabel = _QUANTITIES[_choice(quantity, tuple(_QUANTITIES), "quantity")]
    measured = _vector(measured, "measured")
    layers = np.arange(first, first + measured.size) if layers is None else _vector(layers, "layers")
    _same_length(layers, measured, "layers and measured")
    fig, ax, result = _canvas(ax)
    color = color or plots.color(0)
    if draws is not None:
        draws = np.asarray(draws, dtype=np.float64)
        if draws.ndim != 2 or draws.shape[1] != measured.size:
            raise ValueError(f"draws must have shape (R, {measured.size}) (one row per network), got {draws.shape}.")
        for draw in draws:
            ax.plot(layers, _positive_or_nan(draw) if logy else draw, linestyle="none", marker=".", color=color,
                    alpha=0.25, markersize=3)
    measured_and_theory(layers, measured, theory, ax=ax, label=label, color=color, marker=marker, logy=logy,
                        title=title, xlabel="layer $k$", ylabel=ylabel)
    plots.integer_ticks(ax)
    return result


def probe_std(report, *, which: str = "both", ax=None, title: str | None = None):
    """A :class:`~depthlab.ProbeReport`'s std per layer, measured (markers) and mean-field (lines).

    Parameters
    ----------
    report : ProbeReport
        What :func:`depthlab.probe` returned.
    which : {"both", "forward", "backward"}
        "forward": std of f_k; "backward": std of dL/df_k; "both": the two on one log axis.
    ax : matplotlib Axes, optional
    title : str, optional (default: the report's verdict)

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    layers_stats = getattr(report, "layers", None)
    if not isinstance(layers_stats, list) or not hasattr(report, "verdict"):
        raise TypeError(f"report must be a ProbeReport (what dl.probe returns), got {type(report).__name__}.")
    _choice(which, ("both", "forward", "backward"), "which")
    series = {"forward": ("preactivation_std", "predicted_preactivation_std", r"std of $f_k$"),
              "backward": ("grad_preactivation_std", "predicted_backward_std", r"std of $\partial L/\partial f_k$")}
    chosen = ["forward", "backward"] if which == "both" else [which]
    fig, ax, result = _canvas(ax, width=5.6, height=3.6)
    layers = np.array([s.index for s in layers_stats], dtype=float)
    for i, key in enumerate(chosen):
        measured_name, theory_name, label = series[key]
        measured = np.array([_number(getattr(s, measured_name)) for s in layers_stats])
        theory = np.array([_number(getattr(s, theory_name)) for s in layers_stats])
        plots.measured_and_theory(ax, layers, _positive_or_nan(measured),
                                  None if np.isnan(theory).all() else theory, label=label, color=plots.color(i),
                                  marker=plots.marker(i))
    verdict = report.verdict + ("" if report.verdict_layer is None else f" from layer {report.verdict_layer}")
    plots.decorate(ax, title=title or f"probe: {verdict}", xlabel="layer $k$",
                   ylabel="std" if which == "both" else series[which][2], logy=True)
    ax.legend(handles=ax.get_legend_handles_labels()[0] + plots.theory_legend_handles("measured", "mean-field theory"),
              loc="best", fontsize=7.5)
    plots.integer_ticks(ax)
    return result


def _number(value) -> float:
    return math.nan if value is None else float(value)


def histogram(values, *, bins: int = 40, activation: str | None = None, ax=None, color: str | None = None,
              note: bool = True):
    """One histogram of a layer's values, as a fraction of the values per bin.

    Parameters
    ----------
    values : array_like, any shape
        E.g. a layer's outputs a_k, shape (N, D); all entries are pooled (non-finite ones
        are refused).
    bins : int
    activation : str, optional
        The activation that produced the values: for ReLU-like activations the spike of exact
        zeros is left out (and its share noted), for the sigmoid the axis spans [0, 1].
    ax, color
    note : bool
        Write the std (and the share of zeros) in the corner.

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    from ..nn import activations

    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError("values must be a non-empty array of finite numbers (a layer's outputs), got "
                         f"{values.size} values{' with NaN or Inf' if values.size else ''}.")
    bins = int(bins)
    if bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins}.")
    _, ax, result = _canvas(ax, width=3.6, height=2.8)
    color = color or plots.color(0)
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12 * max(1.0, abs(high)):            # every value equal: one bar
        half = 0.5 * max(1.0, abs(low))
        ax.bar([low], [1.0], width=0.1 * half, color=color)
        ax.set_xlim(low - half, low + half)
        if note:
            plots.note(ax, f"all = {low:g}", loc="upper right", fontsize=7)
        return result
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 4))
    ax.xaxis.get_offset_text().set_fontsize(6.5)
    text = f"std {np.std(values):.2g}"
    shown = values
    zeros = float(np.mean(values == 0))
    can_die = activation is not None and activations.get(activation).can_die
    if can_die and zeros > 0.01:
        shown = values[values != 0]           # the spike at exactly 0 would flatten everything else
        text += f"\n{100 * zeros:.0f}% = 0 (not drawn)"
        low = 0.0
    if activation == "sigmoid" and low >= 0 and high <= 1:
        low, high = 0.0, 1.0
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1], ["0", "", "0.5", "", "1"])
    elif high > 0 and shown.size:
        high = float(np.quantile(shown, 0.995))               # the top 0.5% lies beyond the axis
    counts, edges = np.histogram(shown, bins=bins, range=(low, high) if high > low else None)
    ax.stairs(counts / values.size, edges, fill=True, color=color, alpha=0.85)
    if note:
        plots.note(ax, text, loc="upper right", fontsize=6.5)
    return result


def histogram_grid(outputs, *, bins: int = 40, activation: str | None = None, title: str | None = None,
                   row_labels: Mapping | None = None):
    """Seed 004 Question 4's grid: one row per setting, one column per layer, a histogram each.

    Parameters
    ----------
    outputs : dict of str -> list of arrays, or a list of arrays
        ``{setting: [a_1, …, a_K]}`` (each a_k of shape (N, D)); a plain list is one row.
        Every row needs the same number of layers.
    bins : int
    activation : str, optional
        As in :func:`histogram`.
    title : str, optional
    row_labels : dict of str -> str, optional
        Labels for the rows' y axes (default the dict's keys), e.g. in mathtext.

    Returns
    -------
    Figure
        rows × K axes.
    """
    if isinstance(outputs, Mapping):
        rows = dict(outputs)
    elif isinstance(outputs, Sequence) and not isinstance(outputs, (str, bytes)):
        rows = {"": list(outputs)}
    else:
        raise TypeError(f"outputs must be a dict {{setting: [a_1, ..., a_K]}} or a list of arrays, "
                        f"got {type(outputs).__name__}.")
    if not rows or any(not isinstance(v, Sequence) or not len(v) for v in rows.values()):
        raise ValueError("outputs needs at least one row, each a non-empty list of layer outputs [a_1, ..., a_K].")
    depths = {len(v) for v in rows.values()}
    if len(depths) > 1:
        raise ValueError(f"every row of outputs needs the same number of layers, got {sorted(depths)}.")
    n_rows, n_cols = len(rows), depths.pop()
    width, height = 2.05 * n_cols + 0.9, 1.55 * n_rows + 0.9
    fig, axes = plots.figure(n_rows, n_cols, width=width, height=height, squeeze=False, layout=None, title=title)
    labels = row_labels or {}
    for r, (key, layer_values) in enumerate(rows.items()):
        for c, values in enumerate(layer_values):
            ax = axes[r][c]
            histogram(values, bins=bins, activation=activation, ax=ax, color=plots.color(r))
            ax.tick_params(labelsize=6.5)
            ax.grid(False)
            if r == 0:
                ax.set_title(f"layer {c + 1}: $a_{{{c + 1}}}$", fontsize=9)
            if c == 0 and (labels.get(key) or key):
                ax.set_ylabel(labels.get(key) or key, fontsize=7.5)
            if r == n_rows - 1:
                ax.set_xlabel("output value", fontsize=7.5)
    fig.supylabel("fraction of the values per bin", fontsize=8, x=0.008)
    fig.subplots_adjust(left=0.95 / width, right=1 - 0.15 / width, bottom=0.5 / height,
                        top=1 - (0.62 if title else 0.35) / height, wspace=0.28, hspace=0.38)
    return fig


def jacobian_spectrum(singular_values, *, squared: bool = False, bins: int = 50, ax=None,
                      title: str | None = None):
    """Histograms of input–output Jacobian singular values (dynamical isometry), on a log axis.

    Parameters
    ----------
    singular_values : array_like or dict of str -> array_like
        What :func:`depthlab.jacobian_spectrum` returns, shape (N, M) (pooled), or several
        such spectra by label to compare (e.g. Gaussian vs orthogonal weights).
    squared : bool
        Histogram s² instead of s (the mean of s² is χ₁^depth).
    bins : int
    ax, title

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    spectra = dict(singular_values) if isinstance(singular_values, Mapping) else {"": singular_values}
    if not spectra:
        raise ValueError("singular_values is an empty dict; give at least one spectrum.")
    pooled = {}
    for label, values in spectra.items():
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.size == 0 or not np.isfinite(values).all() or (values < 0).any():
            raise ValueError(f"singular values{f' of {label!r}' if label else ''} must be a non-empty array of "
                             "finite numbers >= 0 (what dl.jacobian_spectrum returns).")
        pooled[label] = values ** 2 if squared else values
    positive = np.concatenate([v[v > 0] for v in pooled.values()])
    if positive.size == 0:
        raise ValueError("every singular value is 0: the Jacobian vanishes, there is no spectrum to draw on a log axis.")
    low, high = float(positive.min()), float(positive.max())
    edges = np.geomspace(low, high if high > low else low * 10, int(bins) + 1)
    _, ax, result = _canvas(ax, width=5.6, height=3.6)
    for i, (label, values) in enumerate(pooled.items()):
        counts, _ = np.histogram(values[values > 0], bins=edges)
        ax.stairs(counts / values.size, edges, color=plots.color(i), linewidth=1.6,
                  label=f"{label}: " * bool(label) + f"mean s² {np.mean(values if squared else values ** 2):.3g}")
    ax.axvline(1.0, color="#777777", linestyle=":", linewidth=1.0)
    quantity = "s^2" if squared else "s"
    plots.decorate(ax, title=title or "Jacobian spectrum $\\partial y/\\partial x$", logx=True,
                   xlabel=f"singular value ${quantity}$ (log scale)", ylabel="fraction per bin", legend=True)
    return result


# ============================================================================= mean-field theory

_PHASE_QUANTITIES = {  # quantity -> (colour-bar label, log scale, diverging around)
    "chi1": (r"$\chi_1 = \sigma_w^2\, E[\phi'(\sqrt{q^*} z)^2]$", False, 1.0),
    "q_star": (r"$q^*$ (white: $q^* = 0$, the signal dies)", True, None),
}


def phase_diagram(activation=None, weight_variances=None, bias_variances=None, *, values=None, quantity: str = "chi1",
                  critical_line=True, bias_variance: float | None = None, ax=None, title: str | None = None):
    """q* or χ₁ over the (σ_w², σ_b²) plane, with the order-to-chaos line χ₁ = 1.

    Parameters
    ----------
    activation : str, optional
        The activation; needed unless both ``values`` and ``critical_line`` are given.
    weight_variances, bias_variances : array_like, shapes (n_w,), (n_b,)
        The grid's σ_w² and σ_b² (default 0.5 … 4 and 0 … 0.3).
    values : array_like, shape (n_b, n_w), optional
        The quantity at every grid point (row i is σ_b² = bias_variances[i]); computed with
        :mod:`depthlab.theory` when None (NaN where no finite fixed point exists).
    quantity : {"chi1", "q_star"}
        χ₁ (diverging colours around 1: blue ordered, red chaotic) or q* (log colours).
    critical_line : bool or (array, array)
        True: compute the line σ_w²(σ_b²) with :func:`depthlab.theory.critical_line`; a pair
        (σ_w², σ_b²) draws that; False draws none.
    bias_variance : float, optional
        A σ_b² to mark with a dotted line (e.g. where a depth-scale study runs).
    ax, title

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    from ..signal import theory

    label, log, center = _PHASE_QUANTITIES[_choice(quantity, tuple(_PHASE_QUANTITIES), "quantity")]
    sw = _vector(np.linspace(0.5, 4.0, 36) if weight_variances is None else weight_variances, "weight_variances")
    sb = _vector(np.linspace(0.0, 0.3, 25) if bias_variances is None else bias_variances, "bias_variances")
    if (values is None or critical_line is True) and activation is None:
        raise ValueError("phase_diagram needs activation= (e.g. 'tanh') to compute the values or the critical line.")
    if values is None:
        values = np.full((sb.size, sw.size), np.nan)
        for i, b in enumerate(sb):
            for j, w in enumerate(sw):
                try:
                    q = theory.fixed_point(activation, w, b)
                    values[i, j] = q if quantity == "q_star" else theory.chi1(activation, w, b, q=q)
                except ValueError:            # no finite fixed point (explosive phase)
                    pass
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (sb.size, sw.size):
        raise ValueError(f"values must have shape (len(bias_variances), len(weight_variances)) = "
                         f"{(sb.size, sw.size)}, got {values.shape}.")
    _, ax, result = _canvas(ax, width=6.0, height=4.5)
    if log:
        plots.heatmap(ax, sw, sb, _positive_or_nan(values), log=True, cmap="viridis", colorbar_label=label)
        line_color = "white"
    else:
        finite = values[np.isfinite(values)]
        span = max(abs(finite.max() - center), abs(center - finite.min()), 1e-6) if finite.size else 1.0
        plots.heatmap(ax, sw, sb, values, cmap="RdBu_r", center=center, vmin=center - span, vmax=center + span,
                      colorbar_label=label)
        line_color = "black"
        ax.text(0.97, 0.05, "chaotic", transform=ax.transAxes, ha="right", fontsize=10, color="#8b1a1a")
        ax.text(0.03, 0.05, "ordered", transform=ax.transAxes, ha="left", fontsize=10, color="white")
    if critical_line is True:
        line_sb = sb[0] + (sb[-1] - sb[0]) * np.linspace(0.0, 1.0, 30) ** 2
        critical_line = (np.array([_critical_or_nan(theory, activation, b) for b in line_sb]), line_sb)
    if critical_line is not False and critical_line is not None:
        line_sw, line_sb = critical_line
        ax.plot(line_sw, line_sb, "--", color=line_color, linewidth=2, label=r"order-to-chaos line $\chi_1 = 1$")
        if not log:
            ax.legend(loc="upper left", fontsize=8)
    if bias_variance is not None:
        ax.axhline(bias_variance, color=line_color, linestyle=":", linewidth=1)
    ax.set_xlim(sw[0], sw[-1])
    ax.set_ylim(sb[0], sb[-1])
    default = r"fixed point $q^*$ of the variance map" if log else r"$\chi_1$: ordered ($< 1$, blue) vs chaotic ($> 1$, red)"
    plots.decorate(ax, title=title or default, xlabel=r"$\sigma_w^2 = \mathrm{fan_{in}} \cdot \mathrm{Var}(\Omega)$",
                   ylabel=r"$\sigma_b^2 = \mathrm{Var}(\beta)$")
    return result


def _critical_or_nan(theory, activation, bias_variance: float) -> float:
    try:
        return theory.critical_weight_variance(activation, float(bias_variance))
    except ValueError:                        # no edge of chaos at this σ_b²
        return math.nan


def depth_scales(weight_variances, xi_c, xi_q=None, *, critical: float | None = None, measured_chi1=None, ax=None,
                 title: str | None = None):
    """The depth scales ξ_c (correlations) and ξ_q (variance) against σ_w², diverging at criticality.

    Parameters
    ----------
    weight_variances : array_like, shape (n,)
        σ_w² values, e.g. with ``[dl.theory.depth_scales(act, w, b) for w in ...]``.
    xi_c, xi_q : array_like, shape (n,)
        ξ_c and (optionally) ξ_q at those values; infinite entries are left out.
    critical : float, optional
        The critical σ_w², marked with a dashed line.
    measured_chi1 : (array, array), optional
        (σ_w², measured χ₁): on the ordered side (χ₁ < 1) −1/ln χ₁ is drawn as markers.
    ax, title

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    sw, xi_c = _vector(weight_variances, "weight_variances"), _vector(xi_c, "xi_c")
    _same_length(sw, xi_c, "weight_variances and xi_c")
    _, ax, result = _canvas(ax, width=5.8, height=4.2)
    finite = np.isfinite(xi_c)
    ax.plot(sw[finite], xi_c[finite], "-", color=plots.color(1), marker=".", label=r"$\xi_c$ (correlations)")
    if xi_q is not None:
        xi_q = _vector(xi_q, "xi_q")
        _same_length(sw, xi_q, "weight_variances and xi_q")
        finite = np.isfinite(xi_q)
        ax.plot(sw[finite], xi_q[finite], "-", color=plots.color(2), marker=".", label=r"$\xi_q$ (variance)")
    if measured_chi1 is not None:
        points, chi = (_vector(v, "measured_chi1") for v in measured_chi1)
        _same_length(points, chi, "measured_chi1's σ_w² and χ₁")
        ordered = (chi < 1) & (chi > 0)
        if ordered.any():
            ax.plot(points[ordered], -1 / np.log(chi[ordered]), "o", color=plots.color(1), markeredgecolor="white",
                    label=r"$-1/\ln \chi_1$ measured (ordered side)")
    if critical is not None:
        ax.axvline(critical, color="#b3261e", linestyle="--", linewidth=1.2)
    plots.decorate(ax, title=title or r"depth scales: $|c_k - c^*| \sim e^{-k/\xi_c}$", xlabel=r"$\sigma_w^2$",
                   ylabel="layers", logy=True, legend="upper right")
    return result


def trainability(weight_variances, depths, accuracy, *, bound=None, critical: float | None = None,
                 chance: float = 0.1, ax=None, title: str | None = None):
    """Training accuracy over (σ_w², depth) as a heat map, with the theory's 6·ξ_c curve over it.

    Parameters
    ----------
    weight_variances : array_like, shape (n_w,)
    depths : array_like, shape (n_d,)
    accuracy : array_like, shape (n_w, n_d)
        ``accuracy[i, j]`` of the network with σ_w² = weight_variances[i], depth depths[j].
    bound : (array, array), optional
        (σ_w², 6·ξ_c): the depth beyond which mean-field theory says training fails.
    critical : float, optional
        The critical σ_w² (edge of chaos), marked with a dashed line.
    chance : float
        The colour scale's floor (chance accuracy).
    ax, title

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    sw, depths = _vector(weight_variances, "weight_variances"), _vector(depths, "depths")
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if accuracy.shape != (sw.size, depths.size):
        raise ValueError(f"accuracy must have shape (len(weight_variances), len(depths)) = {(sw.size, depths.size)}, "
                         f"got {accuracy.shape}.")
    _, ax, result = _canvas(ax, width=6.0, height=4.4)
    plots.heatmap(ax, sw, depths, accuracy.T, cmap="viridis", vmin=chance, vmax=max(float(np.nanmax(accuracy)), 0.2),
                  colorbar_label=f"training accuracy (chance {chance:g})")
    pad = 0.5 * (sw[1] - sw[0]) if sw.size > 1 else 0.25
    low, high = max(sw.min() - pad, 0.5 * sw.min()), sw.max() + pad
    if bound is not None:
        line_sw, line_depth = (_vector(v, "bound") for v in bound)
        ax.plot(line_sw, line_depth, color="white", linewidth=2.2)
        ax.plot(line_sw, line_depth, color="#D55E00", linewidth=1.4, label=r"$6\,\xi_c$ (mean-field theory)")
    if critical is not None:
        ax.axvline(critical, color="white", linestyle="--", linewidth=1.0,
                   label=f"edge of chaos $\\sigma_w^2 = {critical:.3g}$")
    step = (depths[1] - depths[0]) if depths.size > 1 else 5
    ax.set_ylim(depths.min() - step / 2, depths.max() + step / 2)
    ax.set_xlim(low, high)
    plots.decorate(ax, title=title or "trainable where the colour is bright; theory: below the curve",
                   xlabel=r"weight variance $\sigma_w^2$  (Var $\Omega_k$ = $\sigma_w^2$ / fan_in)",
                   ylabel="depth (hidden layers)")
    if bound is not None or critical is not None:
        ax.legend(loc="upper right", fontsize=7.5, facecolor="white", framealpha=0.85, frameon=True)
    return result


# ============================================================================= optimization and training

def _objective(f):
    from ..optim.functions import FUNCTIONS, Objective

    if isinstance(f, Objective):
        return f
    if isinstance(f, str) and f in FUNCTIONS:
        return FUNCTIONS[f]
    raise ValueError(f"f must be a test-function name ({', '.join(FUNCTIONS)}) or an Objective, got {f!r}.")


def contours(f="elliptic", *, box=None, levels=None, ax=None, title: str | None = None):
    """Contour lines of a 2-D test function (:data:`depthlab.optim.functions.FUNCTIONS`).

    Parameters
    ----------
    f : str or Objective
        E.g. "elliptic", seed 004's x²/20 + y².
    box : ((x_min, x_max), (y_min, y_max)), optional
        Default the function's own ``box``.
    levels : array_like or int, optional
        Contour levels; default 14 geometrically spaced between the function's smallest
        positive value on the box and its maximum.
    ax, title

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    objective = _objective(f)
    (x0, x1), (y0, y1) = objective.box if box is None else box
    xs, ys = np.meshgrid(np.linspace(x0, x1, 241), np.linspace(y0, y1, 121))
    zs = objective.value(np.stack([xs, ys], axis=-1))
    if levels is None:
        positive = zs[zs > 0]
        levels = np.geomspace(max(float(positive.min()), 1e-2), float(zs.max()), 14) if positive.size else 14
    _, ax, result = _canvas(ax)
    ax.contour(xs, ys, zs, levels=levels, colors="#9aa3ad", linewidths=0.6)
    if objective.minimum is not None:
        ax.plot(*objective.minimum, marker="*", color="black", markersize=11, zorder=5)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.grid(False)
    plots.decorate(ax, title=title, xlabel="$x$", ylabel="$y$")
    return result


def _trajectory(result, name: str) -> np.ndarray:
    path = getattr(result, "trajectory", result)
    path = np.asarray(path, dtype=np.float64)
    if path.ndim != 2 or path.shape[1] != 2 or path.shape[0] < 1:
        raise ValueError(f"results[{name!r}] must be a MinimizeResult or a (steps + 1, 2) trajectory, got shape "
                         f"{path.shape}.")
    return path


def optimizer_paths(results, f="elliptic", *, start=None, box=None, levels=None, titles: Mapping | None = None,
                    notes: Mapping | None = None, ax=None, title: str | None = None):
    """Optimizer trajectories on the contours of a 2-D function (seed 004, Question 3).

    Parameters
    ----------
    results : dict of str -> MinimizeResult or array (steps + 1, 2)
        E.g. ``dl.optim.compare("elliptic")``.
    f : str or Objective
    start : (float, float), optional
        Marked with a black dot (default the first point of the first path).
    box, levels
        As in :func:`contours`.
    titles, notes : dict of str -> str, optional
        Per-path panel titles (default the names) and boxed notes (grid layout only).
    ax : matplotlib Axes, optional
        Given: every path on these one contours. None: a grid of panels, one path each.
    title : str, optional
        The figure's (grid) or axes' title.

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    if not isinstance(results, Mapping) or not results:
        raise TypeError("results must be a non-empty dict {name: MinimizeResult or (steps + 1, 2) array}, got "
                        f"{type(results).__name__}{' (empty)' if isinstance(results, Mapping) else ''}.")
    paths = {name: _trajectory(result, name) for name, result in results.items()}
    start = next(iter(paths.values()))[0] if start is None else start
    titles, notes = titles or {}, notes or {}

    def draw(ax, index, name, path, label=None):
        ax.plot(path[:, 0], path[:, 1], "-", color=plots.color(index), linewidth=1.2, alpha=0.9, label=label)
        ax.plot(path[:, 0], path[:, 1], "o", color=plots.color(index), markersize=2.5)

    if ax is not None:
        _, ax, result = _canvas(ax)
        contours(f, box=box, levels=levels, ax=ax, title=title)
        for i, (name, path) in enumerate(paths.items()):
            draw(ax, i, name, path, label=titles.get(name, name))
        ax.plot(*start, marker="o", color="black", markersize=6, zorder=5)
        ax.legend(loc="best", fontsize=7.5)
        return result
    columns = min(3, len(paths))
    rows = -(-len(paths) // columns)
    fig, axes = plots.figure(rows, columns, width=4.35 * columns, height=3.2 * rows, squeeze=False, title=title)
    for i, (axis, (name, path)) in enumerate(zip(axes.flat, paths.items())):
        contours(f, box=box, levels=levels, ax=axis)
        draw(axis, i, name, path)
        axis.plot(*start, marker="o", color="black", markersize=6, zorder=5)
        axis.set_title(titles.get(name, name), fontsize=9.5)
        if name in notes:
            plots.note(axis, notes[name], loc="lower right", fontsize=7.5)
    for axis in list(axes.flat)[len(paths):]:
        axis.set_visible(False)
    return fig


def curves(series, *, x=None, ax=None, styles: Mapping | None = None, logx: bool = False, logy: bool = False,
           xlabel: str | None = None, ylabel: str | None = None, title: str | None = None, legend="best"):
    """Several named curves on one axes: losses, accuracies, distances, norms per layer.

    Parameters
    ----------
    series : dict of str -> array_like or (x, y)
        Each curve's y values (drawn against ``x``, or 0, 1, … when None), or its own (x, y) pair.
    x : array_like, optional
        Shared x values.
    ax : matplotlib Axes, optional
    styles : dict of str -> dict, optional
        Extra ``Axes.plot`` keywords per curve (e.g. ``{"test": {"linestyle": "--"}}``).
    logx, logy : bool
        Log axes (non-positive values become gaps on a log y axis).
    xlabel, ylabel, title
    legend : str or False
        The legend's location, or False for none.

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    if not isinstance(series, Mapping) or not series:
        raise TypeError(f"series must be a non-empty dict {{label: values or (x, y)}}, got {type(series).__name__}.")
    _, ax, result = _canvas(ax, width=6.4, height=4.0)
    styles = styles or {}
    for i, (label, values) in enumerate(series.items()):
        if isinstance(values, tuple) and len(values) == 2:
            xs, ys = _vector(values[0], f"series[{label!r}][0]", allow_empty=True), \
                _vector(values[1], f"series[{label!r}][1]", allow_empty=True)
        else:
            ys = _vector(values, f"series[{label!r}]", allow_empty=True)
            xs = np.arange(ys.size, dtype=float) if x is None else _vector(x, "x")
        _same_length(xs, ys, f"the x values and series[{label!r}]")
        style = {"color": plots.color(i), **styles.get(label, {})}
        ax.plot(xs, _positive_or_nan(ys) if logy else ys, label=str(label), **style)
    plots.decorate(ax, title=title, xlabel=xlabel, ylabel=ylabel, logx=logx, logy=logy,
                   legend=legend if legend else False)
    return result


def optimizer_losses(results, *, floor: float = 1e-16, ax=None, title: str | None = None):
    """f along each optimizer's path against the step, on a log axis.

    Parameters
    ----------
    results : dict of str -> MinimizeResult
        E.g. ``dl.optim.compare("elliptic")``.
    floor : float
        The axis' bottom; values below it are drawn at floor/1000 (off the bottom).
    ax, title

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    if not isinstance(results, Mapping) or not results:
        raise TypeError(f"results must be a non-empty dict {{name: MinimizeResult}}, got {type(results).__name__}.")
    values = {}
    for name, result in results.items():
        if not hasattr(result, "values"):
            raise TypeError(f"results[{name!r}] must be a MinimizeResult (with .values), got {type(result).__name__}.")
        values[name] = np.maximum(_vector(result.values, f"results[{name!r}].values"), floor * 1e-3)
    top = max(float(np.nanmax(v)) for v in values.values())
    _, ax, result = _canvas(ax, width=7.2, height=4.4)
    curves(values, ax=ax, logy=True, xlabel="step $t$", ylabel=r"$f(x_t, y_t)$", legend="upper right",
           title=title or f"Loss along the path (below {floor:.0e} runs off the bottom)")
    ax.set_ylim(floor, 2 * top)
    return result


def _history_series(history) -> dict:
    record = getattr(history, "history", history)
    if not isinstance(record, Mapping):
        raise TypeError(f"history must be a History (what dl.fit returns) or a dict {{name: values per epoch}}, got "
                        f"{type(history).__name__}.")
    return dict(record)


def training_curves(history, *, keys=None, ax=None, logy: bool | None = None, title: str | None = None):
    """Training curves per epoch from a :class:`~depthlab.History` or a dict of lists.

    Each log name is a curve; a validation curve ``val_X`` is drawn dashed in the colour of
    ``X``. Without ``ax`` and ``keys``, losses go on one axes and every metric (accuracy …)
    on a second one beside it; the learning rate ``lr`` is left out unless asked for.

    Parameters
    ----------
    history : History or dict of str -> list of float
    keys : list of str, optional
        The log names to draw (on one axes).
    ax : matplotlib Axes, optional
    logy : bool, optional
        Log y axis; default True for losses when they span more than a factor 100.
    title : str, optional

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    record = _history_series(history)
    if keys is not None:
        missing = [k for k in keys if k not in record]
        if missing:
            raise KeyError(f"no {missing[0]!r} in this history; it has {', '.join(record) or 'nothing'}.")
        groups = [list(keys)]
    else:
        names = [k for k in record if k != "lr"]
        if not names:
            raise ValueError("the history has nothing to draw (no epoch has been recorded).")
        losses = [k for k in names if k.removeprefix("val_").endswith("loss")]
        others = [k for k in names if k not in losses]
        groups = [g for g in (losses, others) if g]
    if ax is not None and len(groups) > 1:
        groups = [groups[0] + groups[1]]
    if ax is None:
        fig, axes = plots.figure(1, len(groups), width=5.2 * len(groups) + 0.4, height=3.8, squeeze=False, title=title)
        axes, result = list(axes[0]), fig
    else:
        _, ax, result = _canvas(ax)
        axes = [ax]
    for axis, group in zip(axes, groups):
        bases = list(dict.fromkeys(k.removeprefix("val_") for k in group))
        series, styles = {}, {}
        for key in group:
            values = np.asarray(record[key], dtype=np.float64)
            series[key] = (np.arange(1, values.size + 1, dtype=float), values)
            styles[key] = {"color": plots.color(bases.index(key.removeprefix("val_"))),
                           "linestyle": "--" if key.startswith("val_") else "-", "marker": "o" * (values.size < 30),
                           "markersize": 3}
        log = logy
        if log is None:
            finite = np.concatenate([v[np.isfinite(v)] for _, v in series.values()])
            log = all("loss" in k for k in group) and finite.size > 0 and finite.min() > 0 \
                and finite.max() > 100 * finite.min()
        ylabel = "loss" if all("loss" in k for k in group) else ", ".join(bases)
        curves(series, ax=axis, styles=styles, logy=bool(log), xlabel="epoch", ylabel=ylabel,
               title=title if ax is not None else None)
        plots.integer_ticks(axis)
    return result


# ============================================================================= learned functions

def _network_outputs(net, points: np.ndarray) -> np.ndarray:
    """``net(points)`` or NaN where a diverged network overflows; shape (N,) (the first output)."""
    from ..nn.model import NonFiniteError

    try:
        values = net(points) if callable(net) else None
    except NonFiniteError:
        return np.full(points.shape[0], np.nan)
    if values is None:
        raise TypeError(f"net must be a network or a callable f(x) for x of shape (N, D), got {type(net).__name__}.")
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(points.shape[0], -1)[:, 0]


def _is_piecewise_linear(net) -> bool:
    layers = getattr(net, "layers", None)
    if layers is None:
        return False
    return all(not hasattr(layer, "activation") or getattr(layer.activation, "kinks", None) is not None
               for layer in layers)


def fitted_function(net, *, target=None, data=None, x_range=(-1.0, 1.0), kinks: bool = True, ax=None,
                    label: str = "network", color: str | None = None, linestyle: str = "-",
                    title: str | None = None, points: int = 801):
    """A 1-D function a network learned, beside the true one, its data and its kinks.

    Parameters
    ----------
    net : Sequential or callable
        One input (the first output is drawn).
    target : callable, optional
        The true function f(x) for x of shape (n, 1) or (n,), drawn thick and light.
    data : (x, y), optional
        Training samples, drawn as grey dots (at most 400 of them).
    x_range : (float, float)
    kinks : bool
        Mark where a piecewise-linear network bends, found exactly with
        :func:`depthlab.count_linear_regions` (ticks at the bottom).
    ax, label, color, linestyle, title
    points : int
        Grid points for the curves.

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    low, high = (float(v) for v in x_range)
    if not low < high:
        raise ValueError(f"x_range must be (low, high) with low < high, got {x_range!r}.")
    grid = np.linspace(low, high, int(points)).reshape(-1, 1)
    _, ax, result = _canvas(ax, width=6.0, height=4.2)
    color = color or plots.color(0)
    if data is not None:
        xs, ys = (np.asarray(v, dtype=np.float64).reshape(-1) for v in data)
        shown = slice(None, None, max(1, xs.size // 400))
        ax.plot(xs[shown], ys[shown], ".", color="#bbbbbb", markersize=3, label="training samples", zorder=1)
    if target is not None:
        truth = np.asarray(target(grid), dtype=np.float64).reshape(grid.shape[0], -1)[:, 0]
        ax.plot(grid[:, 0], truth, color="black", linewidth=3.0, alpha=0.3, label="true function", zorder=2)
    learned = _network_outputs(net, grid)
    ax.plot(grid[:, 0], learned, linestyle, color=color, label=label, zorder=4)
    if kinks and _is_piecewise_linear(net) and getattr(net, "in_features", None) == 1:
        from ..signal.regions import count_linear_regions

        pieces, breaks = count_linear_regions(net, [low], [high], return_breakpoints=True)
        breaks = low + (high - low) * np.asarray(breaks)
        finite = learned[np.isfinite(learned)]
        bottom = (float(finite.min()) if finite.size else 0.0) - 0.1 * (float(np.ptp(finite)) if finite.size else 1.0)
        ax.plot(breaks, np.full_like(breaks, bottom), "|", color=color, markersize=7, alpha=0.8,
                label=f"kinks of {label} ({pieces} linear pieces)", zorder=4)
    plots.decorate(ax, title=title, xlabel="x", ylabel="y")
    return result


def _grid(box, resolution: int):
    try:
        (x0, x1), (y0, y1) = box
    except (TypeError, ValueError):
        raise ValueError(f"box must be ((x_min, x_max), (y_min, y_max)), got {box!r}.") from None
    resolution = int(resolution)
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}.")
    xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
    gx, gy = np.meshgrid(xs, ys)
    return xs, ys, np.column_stack([gx.ravel(), gy.ravel()])


def function_map(source, *, box=((-1.0, 1.0), (-1.0, 1.0)), resolution: int = 120, ax=None, limits=None,
                 cmap: str = "viridis", colorbar_label: str = "f(x, y)", title: str | None = None):
    """A function of two inputs as a heat map (x horizontal, y vertical).

    Parameters
    ----------
    source : Sequential, callable or array_like of shape (n_y, n_x)
        A network / function of points (N, 2) (evaluated on a grid over ``box``), or values
        already on the grid (row i is y = linspace(y_min, y_max, n_y)[i]).
    box : ((x_min, x_max), (y_min, y_max))
    resolution : int
        Grid points per axis when ``source`` is evaluated.
    ax : matplotlib Axes, optional
    limits : (float, float), optional
        The colour scale (vmin, vmax) — share it between maps to compare them.
    cmap, colorbar_label, title

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    if callable(source):
        xs, ys, points = _grid(box, resolution)
        values = _network_outputs(source, points).reshape(ys.size, xs.size)
    else:
        values = np.asarray(source, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(f"source must be a network, a callable or a 2-D array of values, got shape {values.shape}.")
        (x0, x1), (y0, y1) = box
        xs, ys = np.linspace(x0, x1, values.shape[1]), np.linspace(y0, y1, values.shape[0])
    _, ax, result = _canvas(ax, width=5.2, height=4.4)
    vmin, vmax = (None, None) if limits is None else limits
    plots.heatmap(ax, xs, ys, values, cmap=cmap, vmin=vmin, vmax=vmax, colorbar_label=colorbar_label)
    plots.decorate(ax, title=title, xlabel="x", ylabel="y")
    return result


def fit_maps(net, target, *, box=((-1.0, 1.0), (-1.0, 1.0)), resolution: int = 120, title: str | None = None,
             note: str | None = None):
    """True function, learned function (one colour scale) and their difference, side by side.

    Parameters
    ----------
    net : Sequential or callable of points (N, 2), or values (n, n) on the grid
    target : callable of points (N, 2), or values (n, n) on the grid
    box, resolution
        As in :func:`function_map`.
    title : str, optional
    note : str, optional
        A boxed note on the error map.

    Returns
    -------
    Figure
        Three axes: true, learned, learned − true.
    """
    xs, ys, points = _grid(box, resolution)
    maps = {}
    for name, source in (("truth", target), ("learned", net)):
        values = _network_outputs(source, points) if callable(source) else np.asarray(source, dtype=np.float64)
        maps[name] = values.reshape(ys.size, xs.size) if values.size == xs.size * ys.size else values
    if maps["truth"].shape != maps["learned"].shape:
        raise ValueError(f"the true and learned maps differ in shape: {maps['truth'].shape} and {maps['learned'].shape}.")
    fig, axes = plots.figure(1, 3, width=14.0, height=4.4, title=title)
    limits = (float(np.nanmin(maps["truth"])), float(np.nanmax(maps["truth"])))
    function_map(maps["truth"], box=box, ax=axes[0], limits=limits, title="True f(x, y)")
    function_map(maps["learned"], box=box, ax=axes[1], limits=limits, title="Learned")
    error = maps["learned"] - maps["truth"]
    finite = np.abs(error[np.isfinite(error)])
    bound = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    function_map(error, box=box, ax=axes[2], limits=(-bound, bound), cmap="RdBu_r", colorbar_label="learned − true",
                 title="Error (same units as f)")
    if note:
        plots.note(axes[2], note, loc="upper right", fontsize=7.2)
    return fig


def linear_regions(net, start=0.0, end=1.0, *, ax=None, label: str = "the network's output", color: str | None = None,
                   title: str | None = None, points: int = 1001):
    """A one-input ReLU network's output over [start, end] with its exact breakpoints.

    Parameters
    ----------
    net : Sequential
        One input, piecewise-linear activations (ReLU family, identity).
    start, end : float
    ax, label, color
    title : str, optional (default: the number of linear regions)
    points : int
        Grid points for the curve.

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    from ..signal.regions import count_linear_regions

    count, breaks = count_linear_regions(net, [float(start)], [float(end)], return_breakpoints=True)
    breaks = float(start) + (float(end) - float(start)) * np.asarray(breaks)
    grid = np.linspace(float(start), float(end), int(points)).reshape(-1, 1)
    _, ax, result = _canvas(ax, width=5.6, height=4.0)
    ax.plot(grid[:, 0], _network_outputs(net, grid), color=color or plots.color(0), label=label)
    if breaks.size:
        ax.plot(breaks, _network_outputs(net, breaks.reshape(-1, 1)), "o", color="black", markersize=4,
                label="breakpoints (exact)")
    for b in breaks:
        ax.axvline(b, color="#cccccc", linewidth=0.6, zorder=0)
    plots.decorate(ax, title=title or f"{count} linear regions", xlabel="input x", ylabel="output y")
    return result


def _region_colours(ids: np.ndarray, seed: int) -> np.ndarray:
    """An RGB image (H, W, 3): each region a colour, region edges dark."""
    from matplotlib import colormaps

    palette = np.concatenate([colormaps["tab20"](np.arange(20))[:, :3], colormaps["tab20b"](np.arange(20))[:, :3]])
    shuffle = np.random.default_rng(seed).permutation(ids.max() + 1)
    image = palette[shuffle[ids] % len(palette)]
    edges = np.zeros(ids.shape, dtype=bool)
    edges[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edges[1:, :] |= ids[1:, :] != ids[:-1, :]
    image[edges] = 0.15
    return image


def region_map(source, *, box=((-1.0, 1.0), (-1.0, 1.0)), resolution: int = 200, seed: int = 0, ax=None,
               title: str | None = None):
    """The linear regions of a two-input ReLU network, each a colour, edges dark.

    Parameters
    ----------
    source : Sequential or RegionMap
        A network with 2 inputs (mapped with :func:`depthlab.linear_regions_2d`), or the
        RegionMap it returned (then ``box`` must be the box it was made over).
    box : ((x_min, x_max), (y_min, y_max))
    resolution : int
        Grid points per axis when a network is mapped.
    seed : int
        Shuffles the colours (neighbouring regions get unrelated colours).
    ax : matplotlib Axes, optional
    title : str, optional (default: the number of regions)

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    from ..signal.regions import RegionMap, linear_regions_2d

    region = source if isinstance(source, RegionMap) else linear_regions_2d(source, box, resolution)
    (x0, x1), (y0, y1) = box
    _, ax, result = _canvas(ax, width=5.0, height=5.0)
    ax.imshow(_region_colours(region.ids, seed), origin="lower", extent=(x0, x1, y0, y1), interpolation="nearest",
              aspect="auto")
    ax.grid(False)
    plots.decorate(ax, title=title or f"{region.count} regions", xlabel="input x₁", ylabel="input x₂")
    return result
