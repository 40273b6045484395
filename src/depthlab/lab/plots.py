"""Figures in one clean, colour-blind-safe style (matplotlib, imported only when drawing).

Figures are built with ``matplotlib.figure.Figure`` directly, not ``pyplot``: nothing global
is touched, nothing needs a display, and no figure lingers after it is saved.

    >>> from depthlab import plots
    >>> fig, ax = plots.figure(width=6, height=4)
    >>> plots.measured_and_theory(ax, layers, stds, theory=predicted, label="σ² = 2/D", color=plots.color(0))
    >>> plots.decorate(ax, title="Forward signal", xlabel="layer k", ylabel="std of h_k", logy=True)
    >>> png = plots.png_bytes(fig)                       # deterministic bytes (no timestamps)

Conventions used across the lab: measurements are markers, theory is a line of the same
colour; quantities that grow geometrically go on log axes; every axis names its quantity in
the seeds' notation (h_k, f_k, dL/df_k, σ²_Ω).
"""
from __future__ import annotations

import contextlib
import io

from .._checks import require

FIGURES = "Drawing figures (depthlab's reports and plots)"

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
DPI = 110

RC = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#444444",
    "axes.linewidth": 0.8,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "xtick.color": "#333333",
    "ytick.color": "#333333",
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "lines.linewidth": 1.7,
    "lines.markersize": 4.5,
    "image.cmap": "viridis",
    "mathtext.fontset": "dejavusans",
}


def color(index: int) -> str:
    """The ``index``-th colour of :data:`PALETTE` (cycling)."""
    return PALETTE[index % len(PALETTE)]


def marker(index: int) -> str:
    """The ``index``-th marker of :data:`MARKERS` (cycling)."""
    return MARKERS[index % len(MARKERS)]


def require_matplotlib():
    """The ``matplotlib`` module, or an error that names the extra to install."""
    return require("matplotlib", FIGURES)


@contextlib.contextmanager
def style():
    """A context in which matplotlib uses the lab's style (and the Agg-friendly defaults)."""
    matplotlib = require("matplotlib", FIGURES)
    cycler = require("cycler", FIGURES).cycler

    with matplotlib.rc_context({**RC, "axes.prop_cycle": cycler(color=PALETTE)}):
        yield


def figure(nrows: int = 1, ncols: int = 1, *, width: float = 6.4, height: float = 4.0, sharex=False,
           sharey=False, squeeze: bool = True, title: str | None = None, layout: str | None = "constrained",
           **subplot_kw):
    """A new ``Figure`` and its axes, in the lab's style.

    ``layout="constrained"`` (the default) places everything automatically; for grids of
    dozens of small axes pass ``layout=None`` and call ``fig.subplots_adjust`` (constrained
    layout then costs seconds per drawing).

    Returns
    -------
    (Figure, Axes or array of Axes)
        As ``pyplot.subplots``; no pyplot state is involved, so no ``close`` is needed. The
        figure is a :class:`~depthlab.lab._figure.LabFigure`, which Jupyter displays as a PNG.
    """
    require("matplotlib.figure", FIGURES)
    from ._figure import LabFigure

    with style():
        fig = LabFigure(figsize=(width, height), layout=layout)
        axes = fig.subplots(nrows, ncols, sharex=sharex, sharey=sharey, squeeze=squeeze,
                            subplot_kw=subplot_kw or None)
        if title:
            fig.suptitle(title, fontsize=11.5, fontweight="bold")
    return fig, axes


def decorate(ax, *, title: str | None = None, xlabel: str | None = None, ylabel: str | None = None,
             logx: bool = False, logy: bool = False, legend: bool | str = False, legend_title: str | None = None):
    """Titles, axis labels, log scales and a legend in one call."""
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if legend:
        ax.legend(loc="best" if legend is True else legend, title=legend_title)
    return ax


def integer_ticks(ax, axis: str = "x"):
    """Ticks at whole numbers only (layers, steps)."""
    MaxNLocator = require("matplotlib.ticker", FIGURES).MaxNLocator

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))
    return ax


def measured_and_theory(ax, x, measured, theory=None, *, theory_x=None, label: str = "", color: str | None = None,
                        marker: str = "o", markersize: float | None = None, theory_style: str = "-"):
    """Measurements as markers and the theory's prediction as a line of the same colour.

    Parameters
    ----------
    x, measured : array_like, shape (n,)
    theory : array_like, shape (n,) or (len(theory_x),), optional
    theory_x : array_like, optional
        Where the theory is evaluated (default ``x``).
    """
    color = color or PALETTE[0]
    ax.plot(x, measured, linestyle="none", marker=marker, color=color, label=label,
            markersize=markersize, markeredgewidth=0.6, markeredgecolor="white", zorder=3)
    if theory is not None:
        ax.plot(x if theory_x is None else theory_x, theory, theory_style, color=color, alpha=0.85,
                linewidth=1.4, zorder=2)
    return ax


def theory_legend_handles(measured_label: str = "measured", theory_label: str = "theory"):
    """Two grey legend entries explaining the marker/line convention."""
    Line2D = require("matplotlib.lines", FIGURES).Line2D

    return [Line2D([], [], color="#555555", marker="o", linestyle="none", label=measured_label),
            Line2D([], [], color="#555555", linestyle="-", label=theory_label)]


def heatmap(ax, x, y, z, *, log: bool = False, cmap: str = "viridis", colorbar_label: str | None = None,
            vmin=None, vmax=None, center: float | None = None):
    """``z[i, j]`` at (x[j], y[i]) as a colour map with a colour bar.

    ``log`` uses a logarithmic colour scale; ``center`` a diverging one around that value
    (e.g. χ₁ = 1 separating order from chaos).
    """
    colors = require("matplotlib.colors", FIGURES)

    norm = None
    if log:
        norm = colors.LogNorm(vmin=vmin, vmax=vmax)
    elif center is not None:
        norm = colors.TwoSlopeNorm(vcenter=center, vmin=vmin, vmax=vmax)
    mesh = ax.pcolormesh(x, y, z, shading="auto", cmap=cmap, norm=norm,
                         **({} if norm is not None else {"vmin": vmin, "vmax": vmax}))
    bar = ax.figure.colorbar(mesh, ax=ax, pad=0.02)
    if colorbar_label:
        bar.set_label(colorbar_label)
    ax.grid(False)
    return mesh


def note(ax, text: str, *, loc: str = "upper left", fontsize: float = 8.0):
    """A small boxed note inside the axes (e.g. "73% of units are exactly 0")."""
    positions = {"upper left": (0.03, 0.97, "left", "top"), "upper right": (0.97, 0.97, "right", "top"),
                 "lower left": (0.03, 0.03, "left", "bottom"), "lower right": (0.97, 0.03, "right", "bottom"),
                 "center right": (0.97, 0.5, "right", "center"), "center left": (0.03, 0.5, "left", "center")}
    x, y, ha, va = positions[loc]
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=fontsize,
            bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "#cccccc", "alpha": 0.9})


def render(fig, dpi: int = DPI):
    """Draw ``fig`` once with Agg and return its pixels, an (H, W, 4) uint8 array."""
    import numpy as np
    FigureCanvasAgg = require("matplotlib.backends.backend_agg", FIGURES).FigureCanvasAgg

    with style():
        fig.set_dpi(dpi)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        return np.array(canvas.buffer_rgba())


def encode_png(pixels, max_width: int | None = None) -> bytes:
    """PNG bytes of an (H, W, 4) uint8 image, shrunk to ``max_width`` pixels if wider.

    Deterministic: the same pixels give the same bytes (no time or software stamps).
    """
    from PIL import Image    # a dependency of matplotlib

    image = Image.fromarray(pixels, mode="RGBA").convert("RGB")
    if max_width is not None and image.width > max_width:
        image = image.resize((max_width, max(1, round(image.height * max_width / image.width))), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return buffer.getvalue()


def png_bytes(fig, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes, deterministic for a given drawing (no software/time stamps)."""
    return encode_png(render(fig, dpi))


def save(fig, path, dpi: int = DPI) -> None:
    """Write :func:`png_bytes` of ``fig`` to ``path`` atomically (a failed write keeps the old file)."""
    from .. import _files

    _files.write_bytes(path, png_bytes(fig, dpi))
