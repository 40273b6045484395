"""Optimization and training: contours and optimizer paths, loss curves, a History's curves."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import plots
from ._common import canvas, vector, same_length, positive_or_nan


def _objective(f):
    from ...optim.functions import FUNCTIONS, Objective

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
    _, ax, result = canvas(ax)
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
        _, ax, result = canvas(ax)
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
        Each curve's y values as a list or array (drawn against ``x``, or 0, 1, … when None),
        or a tuple ``(x, y)`` of its own x and y values.
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
    _, ax, result = canvas(ax, width=6.4, height=4.0)
    styles = styles or {}
    for i, (label, values) in enumerate(series.items()):
        if isinstance(values, tuple) and len(values) == 2:
            xs, ys = vector(values[0], f"series[{label!r}][0]", allow_empty=True), \
                vector(values[1], f"series[{label!r}][1]", allow_empty=True)
        else:
            ys = vector(values, f"series[{label!r}]", allow_empty=True)
            xs = np.arange(ys.size, dtype=float) if x is None else vector(x, "x")
        same_length(xs, ys, f"the x values and series[{label!r}]")
        style = {"color": plots.color(i), **styles.get(label, {})}
        ax.plot(xs, positive_or_nan(ys) if logy else ys, label=str(label), **style)
    plots.decorate(ax, title=title, xlabel=xlabel, ylabel=ylabel, logx=logx, logy=logy,
                   legend=legend if legend else False)
    return result


def optimizer_losses(results, *, floor: float = 1e-16, labels: Mapping | None = None, ax=None,
                     title: str | None = None):
    """f along each optimizer's path against the step, on a log axis.

    Parameters
    ----------
    results : dict of str -> MinimizeResult
        E.g. ``dl.optim.compare("elliptic")``.
    floor : float
        The axis' bottom; values below it are drawn at floor/1000 (off the bottom).
    labels : dict of str -> str, optional
        Legend labels by name (default the names).
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
        values[(labels or {}).get(name, name)] = np.maximum(vector(result.values, f"results[{name!r}].values"), floor * 1e-3)
    top = max(float(np.nanmax(v)) for v in values.values())
    _, ax, result = canvas(ax, width=7.2, height=4.4)
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
        _, ax, result = canvas(ax)
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
