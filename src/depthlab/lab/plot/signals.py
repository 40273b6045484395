"""Signals through the layers: std per layer with theory, a probe's report, histograms, Jacobian spectra."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..._checks import check_bins
from .. import plots
from ._common import canvas, vector, same_length, positive_or_nan, choice, number


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
    x, measured = vector(x, "x"), vector(measured, "measured")
    same_length(x, measured, "x and measured")
    if theory is not None:
        theory = vector(theory, "theory")
        same_length(x if theory_x is None else vector(theory_x, "theory_x"), theory,
                     "theory and theory_x (or x)")
    _, ax, result = canvas(ax)
    plots.measured_and_theory(ax, x, positive_or_nan(measured) if logy else measured,
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
    first, ylabel = _QUANTITIES[choice(quantity, tuple(_QUANTITIES), "quantity")]
    measured = vector(measured, "measured")
    layers = np.arange(first, first + measured.size) if layers is None else vector(layers, "layers")
    same_length(layers, measured, "layers and measured")
    fig, ax, result = canvas(ax)
    color = color or plots.color(0)
    if draws is not None:
        draws = np.asarray(draws, dtype=np.float64)
        if draws.ndim != 2 or draws.shape[1] != measured.size:
            raise ValueError(f"draws must have shape (R, {measured.size}) (one row per network), got {draws.shape}.")
        for draw in draws:
            ax.plot(layers, positive_or_nan(draw) if logy else draw, linestyle="none", marker=".", color=color,
                    alpha=0.25, markersize=3)
    measured_and_theory(layers, measured, theory, ax=ax, label=label, color=color, marker=marker, logy=logy,
                        title=title, xlabel="layer $k$", ylabel=ylabel)
    plots.integer_ticks(ax)
    return result


# which -> (measured attribute, theory attribute, axis label), for a plain MLP's rows and for a network of blocks
LAYER_SERIES = {"forward": ("preactivation_std", "predicted_preactivation_std", r"std of $f_k$"),
                "backward": ("grad_preactivation_std", "predicted_backward_std", r"std of $\partial L/\partial f_k$")}
BLOCK_SERIES = {"forward": ("output_std", "predicted_output_std", r"std of block output $h_{i+1}$"),
                "backward": ("grad_std", "predicted_grad_std", r"std of $\partial L/\partial h_{i+1}$")}


def probe_std(report, *, which: str = "both", ax=None, title: str | None = None):
    """A :class:`~depthlab.ProbeReport`'s std per layer, measured (markers) and mean-field (lines).

    Parameters
    ----------
    report : ProbeReport
        What :func:`depthlab.probe` returned.
    which : {"both", "forward", "backward"}
        "forward": std of f_k; "backward": std of dL/df_k; "both": the two on one log axis (for a
        network of blocks: the std of each block's output and of dL/d(output)).
    ax : matplotlib Axes, optional
    title : str, optional (default: the report's verdict)

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    layers_stats = getattr(report, "layers", None)
    if not isinstance(layers_stats, list) or not hasattr(report, "verdict"):
        raise TypeError(f"report must be a ProbeReport (what dl.probe returns), got {type(report).__name__}.")
    choice(which, ("both", "forward", "backward"), "which")
    blocks = bool(layers_stats) and hasattr(layers_stats[0], "output_std")   # a network of blocks: one row per block
    series = BLOCK_SERIES if blocks else LAYER_SERIES
    chosen = ["forward", "backward"] if which == "both" else [which]
    fig, ax, result = canvas(ax, width=5.6, height=3.6)
    layers = np.array([s.index for s in layers_stats], dtype=float)
    for i, key in enumerate(chosen):
        measured_name, theory_name, label = series[key]
        measured = np.array([number(getattr(s, measured_name)) for s in layers_stats])
        theory = np.array([number(getattr(s, theory_name)) for s in layers_stats])
        plots.measured_and_theory(ax, layers, positive_or_nan(measured),
                                  None if np.isnan(theory).all() else theory, label=label, color=plots.color(i),
                                  marker=plots.marker(i))
    where = "block" if blocks else "layer"
    verdict = report.verdict + ("" if report.verdict_layer is None else f" from {where} {report.verdict_layer}")
    plots.decorate(ax, title=title or f"probe: {verdict}", xlabel="block $i$" if blocks else "layer $k$",
                   ylabel="std" if which == "both" else series[which][2], logy=True)
    ax.legend(handles=ax.get_legend_handles_labels()[0] + plots.theory_legend_handles("measured", "mean-field theory"),
              loc="best", fontsize=7.5)
    plots.integer_ticks(ax)
    return result


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
    from ...nn import activations

    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError("values must be a non-empty array of finite numbers (a layer's outputs), got "
                         f"{values.size} values{' with NaN or Inf' if values.size else ''}.")
    bins = check_bins(bins)
    _, ax, result = canvas(ax, width=3.6, height=2.8)
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


_PROBE_HISTOGRAMS = {"activation": "$h_{k+1}$", "preactivation": "$f_k$", "grad_preactivation": r"$\partial L/\partial f_k$"}
_BLOCK_HISTOGRAMS = {"output": "$h_{i+1}$", "grad_output": r"$\partial L/\partial h_{i+1}$"}  # a network of blocks


def probe_histograms(report, *, which: str = "activation", bins: int = 30, title: str | None = None):
    """A :class:`~depthlab.ProbeReport`'s histograms, one axes per layer (from ``report.histograms``).

    Parameters
    ----------
    report : ProbeReport
    which : {"activation", "preactivation", "grad_preactivation"}
        h_{k+1} = a[f_k], f_k or dL/df_k of every layer k. For a network of blocks (a
        :class:`~depthlab.signal.probe_blocks.BlockProbeReport`): "output" (or "activation") or
        "grad_output", of every block i.
    bins : int
    title : str, optional

    Returns
    -------
    Figure
        One axes per layer, each the fraction of the layer's values per bin.
    """
    if not hasattr(report, "histograms") or not hasattr(report, "layers"):
        raise TypeError(f"report must be a ProbeReport (what dl.probe returns), got {type(report).__name__}.")
    blocks = bool(report.layers) and hasattr(report.layers[0], "output_std")
    names, unit = (_BLOCK_HISTOGRAMS, "block") if blocks else (_PROBE_HISTOGRAMS, "layer")
    which = "output" if blocks and which == "activation" else which
    choice(which, tuple(names), "which")
    histograms = report.histograms(bins=bins)
    columns = min(len(histograms), 6)
    rows = -(-len(histograms) // columns)
    width, height = 2.05 * columns + 0.9, 1.55 * rows + 0.9
    fig, axes = plots.figure(rows, columns, width=width, height=height, squeeze=False, layout=None,
                             title=title or f"probe: histograms of {names[which]} per {unit}")
    for k, (ax, entry) in enumerate(zip(axes.flat, histograms)):
        counts, edges = entry[which]
        total = counts.sum()
        ax.stairs(counts / total if total else counts, edges, fill=True, color=plots.color(0), alpha=0.85)
        ax.set_title(f"{unit} {k}", fontsize=9)
        ax.tick_params(labelsize=6.5)
        ax.grid(False)
    for ax in list(axes.flat)[len(histograms):]:
        ax.set_visible(False)
    fig.supylabel("fraction of the values per bin", fontsize=8, x=0.008)
    fig.subplots_adjust(left=0.95 / width, right=1 - 0.15 / width, bottom=0.5 / height, top=1 - 0.62 / height,
                        wspace=0.28, hspace=0.45)
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
    edges = np.geomspace(low, high if high > low else low * 10, check_bins(bins) + 1)
    _, ax, result = canvas(ax, width=5.6, height=3.6)
    for i, (label, values) in enumerate(pooled.items()):
        counts, _ = np.histogram(values[values > 0], bins=edges)
        ax.stairs(counts / values.size, edges, color=plots.color(i), linewidth=1.6,
                  label=f"{label}: " * bool(label) + f"mean s² {np.mean(values if squared else values ** 2):.3g}")
    ax.axvline(1.0, color="#777777", linestyle=":", linewidth=1.0)
    quantity = "s^2" if squared else "s"
    plots.decorate(ax, title=title or "Jacobian spectrum $\\partial y/\\partial x$", logx=True,
                   xlabel=f"singular value ${quantity}$ (log scale)", ylabel="fraction per bin", legend=True)
    return result
