"""What every ``dl.plot`` function shares: a figure or a given axes, checked arrays."""
from __future__ import annotations

import math

import numpy as np

from .. import plots


def canvas(ax, **figure_kw):
    """(figure, axes, what to return): a new lab-style figure when ``ax`` is None, else ``ax``."""
    if ax is None:
        fig, ax = plots.figure(**figure_kw)
        return fig, ax, fig
    if not hasattr(ax, "plot") or not hasattr(ax, "figure"):
        raise TypeError(f"ax must be a matplotlib Axes (or None for a new figure), got {type(ax).__name__}.")
    return ax.figure, ax, ax


def vector(values, name: str, *, allow_empty: bool = False) -> np.ndarray:
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


def same_length(reference: np.ndarray, other: np.ndarray, names: str) -> None:
    if other.shape[0] != reference.shape[0]:
        raise ValueError(f"{names} must have the same length, got {reference.shape[0]} and {other.shape[0]}.")


def positive_or_nan(values: np.ndarray) -> np.ndarray:
    """Values for a log axis: non-positive and non-finite entries become NaN (gaps, not errors)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(values) & (values > 0), values, np.nan)


def choice(value, options, name: str) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}.")
    return value


def number(value) -> float:
    return math.nan if value is None else float(value)


def network_outputs(net, points: np.ndarray) -> np.ndarray:
    """``net(points)`` or NaN where a diverged network overflows; shape (N,) (the first output)."""
    from ...nn.model import NonFiniteError

    try:
        values = net(points) if callable(net) else None
    except NonFiniteError:
        return np.full(points.shape[0], np.nan)
    if values is None:
        raise TypeError(f"net must be a network or a callable f(x) for x of shape (N, D), got {type(net).__name__}.")
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(points.shape[0], -1)[:, 0]
