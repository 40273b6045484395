"""What a network computes: fitted 1-D and 2-D functions and its linear regions."""
from __future__ import annotations

import numpy as np

from ..._checks import check_positive_int
from .. import plots
from ._common import canvas, network_outputs


def _is_piecewise_linear(net) -> bool:
    """Whether ``net`` is a network whose every activation is piecewise linear (so it has kinks to find)."""
    layers = getattr(net, "layers", None)
    if layers is None:
        return False
    return all(getattr(getattr(layer, "activation", None), "piecewise_linear", True) for layer in layers)


def fitted_function(net, *, target=None, data=None, x_range=(-1.0, 1.0), kinks: bool = True, ax=None,
                    label: str = "network", target_label: str = "true function", color: str | None = None,
                    linestyle: str = "-", title: str | None = None, points: int = 801):
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
    ax : matplotlib Axes, optional
    label, target_label : str
        Legend labels of the network's curve and of the true function.
    color, linestyle, title
    points : int
        Grid points for the curves.

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    low, high = (float(v) for v in x_range)
    if not low < high:
        raise ValueError(f"x_range must be (low, high) with low < high, got {x_range!r}.")
    grid = np.linspace(low, high, check_positive_int(points, 'points', minimum=2)).reshape(-1, 1)
    _, ax, result = canvas(ax, width=6.0, height=4.2)
    color = color or plots.color(0)
    if data is not None:
        xs, ys = (np.asarray(v, dtype=np.float64).reshape(-1) for v in data)
        shown = slice(None, None, max(1, xs.size // 400))
        ax.plot(xs[shown], ys[shown], ".", color="#bbbbbb", markersize=3, label="training samples", zorder=1)
    if target is not None:
        truth = np.asarray(target(grid), dtype=np.float64).reshape(grid.shape[0], -1)[:, 0]
        ax.plot(grid[:, 0], truth, color="black", linewidth=3.0, alpha=0.3, label=target_label, zorder=2)
    learned = network_outputs(net, grid)
    ax.plot(grid[:, 0], learned, linestyle, color=color, label=label, zorder=4)
    if kinks and _is_piecewise_linear(net) and getattr(net, "in_features", None) == 1:
        from ...signal.regions import count_linear_regions

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
    resolution = check_positive_int(resolution, "resolution", minimum=2)
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
        values = network_outputs(source, points).reshape(ys.size, xs.size)
    else:
        values = np.asarray(source, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(f"source must be a network, a callable or a 2-D array of values, got shape {values.shape}.")
        (x0, x1), (y0, y1) = box
        xs, ys = np.linspace(x0, x1, values.shape[1]), np.linspace(y0, y1, values.shape[0])
    _, ax, result = canvas(ax, width=5.2, height=4.4)
    vmin, vmax = (None, None) if limits is None else limits
    plots.heatmap(ax, xs, ys, values, cmap=cmap, vmin=vmin, vmax=vmax, colorbar_label=colorbar_label)
    plots.decorate(ax, title=title, xlabel="x", ylabel="y")
    return result


def fit_maps(net, target, *, box=((-1.0, 1.0), (-1.0, 1.0)), resolution: int = 120, title: str | None = None,
             label: str = "Learned", note: str | None = None):
    """True function, learned function (one colour scale) and their difference, side by side.

    Parameters
    ----------
    net : Sequential or callable of points (N, 2), or values (n, n) on the grid
    target : callable of points (N, 2), or values (n, n) on the grid
    box, resolution
        As in :func:`function_map`.
    title : str, optional
    label : str
        The learned map's title.
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
        values = network_outputs(source, points) if callable(source) else np.asarray(source, dtype=np.float64)
        maps[name] = values.reshape(ys.size, xs.size) if values.size == xs.size * ys.size else values
    if maps["truth"].shape != maps["learned"].shape:
        raise ValueError(f"the true and learned maps differ in shape: {maps['truth'].shape} and {maps['learned'].shape}.")
    fig, axes = plots.figure(1, 3, width=14.0, height=4.4, title=title)
    limits = (float(np.nanmin(maps["truth"])), float(np.nanmax(maps["truth"])))
    function_map(maps["truth"], box=box, ax=axes[0], limits=limits, title="True f(x, y)")
    function_map(maps["learned"], box=box, ax=axes[1], limits=limits, title=label)
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
    from ...signal.regions import count_linear_regions

    count, breaks = count_linear_regions(net, [float(start)], [float(end)], return_breakpoints=True)
    breaks = float(start) + (float(end) - float(start)) * np.asarray(breaks)
    grid = np.linspace(float(start), float(end), check_positive_int(points, 'points', minimum=2)).reshape(-1, 1)
    _, ax, result = canvas(ax, width=5.6, height=4.0)
    ax.plot(grid[:, 0], network_outputs(net, grid), color=color or plots.color(0), label=label)
    if breaks.size:
        ax.plot(breaks, network_outputs(net, breaks.reshape(-1, 1)), "o", color="black", markersize=4,
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
    from ...signal.regions import RegionMap, linear_regions_2d

    region = source if isinstance(source, RegionMap) else linear_regions_2d(source, box, resolution)
    (x0, x1), (y0, y1) = box
    _, ax, result = canvas(ax, width=5.0, height=5.0)
    ax.imshow(_region_colours(region.ids, seed), origin="lower", extent=(x0, x1, y0, y1), interpolation="nearest")
    ax.grid(False)
    plots.decorate(ax, title=title or f"{region.count} regions", xlabel="input x₁", ylabel="input x₂")
    return result
