"""Two-dimensional test functions for optimizers, with analytic gradients.

Each :class:`Objective` evaluates points of shape ``(2,)`` or whole grids of shape
``(..., 2)`` (the last axis holds (x, y)), so the same function draws contour plots::

    >>> f = FUNCTIONS["elliptic"]
    >>> f.value(np.array([-7.0, 2.0]))          # 6.45
    >>> xs, ys = np.meshgrid(np.linspace(*f.box[0], 200), np.linspace(*f.box[1], 200))
    >>> zs = f.value(np.stack([xs, ys], axis=-1))   # (200, 200)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Objective:
    """A test function f(x, y) with its gradient.

    Attributes
    ----------
    name : str
    formula : str
    value : callable
        ``value(p)`` for ``p`` of shape ``(..., 2)`` returns f of shape ``(...)``.
    grad : callable
        ``grad(p)`` returns ∇f of shape ``(..., 2)``.
    minimum : tuple of float or None
        Location of the global minimum (None when f is unbounded below).
    box : ((float, float), (float, float))
        Suggested plotting range ((x_min, x_max), (y_min, y_max)).
    start : tuple of float
        A customary starting point.
    """

    __test__ = False  # not a pytest class

    name: str
    formula: str
    value: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    grad: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    minimum: tuple[float, float] | None
    box: tuple[tuple[float, float], tuple[float, float]]
    start: tuple[float, float]

    def __call__(self, point):
        return self.value(point)


def _xy(point):
    point = np.asarray(point)
    if point.dtype.kind not in "fiub":
        raise TypeError(f"test functions take real points of shape (..., 2), got an array of dtype {point.dtype}; "
                        "pass e.g. np.array([x, y], dtype=float).")
    if point.shape[-1:] != (2,):
        raise ValueError(f"test functions take points of shape (..., 2), got shape {point.shape}.")
    return point[..., 0], point[..., 1]


def _elliptic(p):
    x, y = _xy(p)
    return x**2 / 20 + y**2


def _elliptic_grad(p):
    x, y = _xy(p)
    return np.stack([x / 10, 2 * y], axis=-1)


def _rosenbrock(p, a=1.0, b=100.0):
    x, y = _xy(p)
    return (a - x) ** 2 + b * (y - x**2) ** 2


def _rosenbrock_grad(p, a=1.0, b=100.0):
    x, y = _xy(p)
    return np.stack([-2 * (a - x) - 4 * b * x * (y - x**2), 2 * b * (y - x**2)], axis=-1)


_BEALE_CONSTANTS = (1.5, 2.25, 2.625)


def _beale(p):
    x, y = _xy(p)
    return sum((c - x + x * y**k) ** 2 for k, c in enumerate(_BEALE_CONSTANTS, start=1))


def _beale_grad(p):
    x, y = _xy(p)
    dx = dy = 0
    for k, c in enumerate(_BEALE_CONSTANTS, start=1):
        residual = c - x + x * y**k
        dx = dx + 2 * residual * (y**k - 1)
        dy = dy + 2 * residual * k * x * y ** (k - 1)
    return np.stack(np.broadcast_arrays(dx, dy), axis=-1)


def _saddle(p):
    x, y = _xy(p)
    return x**2 - y**2


def _saddle_grad(p):
    x, y = _xy(p)
    return np.stack([2 * x, -2 * y], axis=-1)


FUNCTIONS: dict[str, Objective] = {
    f.name: f for f in (
        Objective("elliptic", "x²/20 + y²  (seed 004)", _elliptic, _elliptic_grad,
                  (0.0, 0.0), ((-10.0, 10.0), (-4.0, 4.0)), (-7.0, 2.0)),
        Objective("rosenbrock", "(1 − x)² + 100 (y − x²)²", _rosenbrock, _rosenbrock_grad,
                  (1.0, 1.0), ((-2.0, 2.0), (-1.0, 3.0)), (-1.2, 1.0)),
        Objective("beale", "Σ_k (c_k − x + x y^k)², c = (1.5, 2.25, 2.625)", _beale, _beale_grad,
                  (3.0, 0.5), ((-4.5, 4.5), (-4.5, 4.5)), (1.0, 1.5)),
        Objective("saddle", "x² − y²  (a saddle at the origin, no minimum)", _saddle, _saddle_grad,
                  None, ((-2.0, 2.0), (-2.0, 2.0)), (-1.5, 1e-3)),
    )
}

elliptic = FUNCTIONS["elliptic"]
rosenbrock = FUNCTIONS["rosenbrock"]
beale = FUNCTIONS["beale"]
saddle = FUNCTIONS["saddle"]
