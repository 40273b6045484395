"""Linear regions of piecewise-linear networks: exact counts along a segment, maps in 2-D.

A network whose activations are all piecewise linear (identity, ReLU, leaky ReLU) is itself
piecewise linear in its input x: wherever no pre-activation f_k sits at a kink of its
activation, the *activation pattern* (which linear piece of a[·] every unit is on) is fixed,
and with it the network is one affine map. depthlab counts **activation-pattern regions**:
maximal sets of inputs with one pattern. The function may happen to be affine across two of
them (a unit whose outgoing weights are zero, a leaky ReLU of slope 1), so the number of
distinct affine pieces of the function is at most the number counted here; for generic
weights the two agree.

Along a segment x(t) = start + t·(end − start), t ∈ [0, 1], every f_k is affine in t inside one
region, so the next kink crossing is found analytically (the smallest root t* = −a/b of
f(t) = a + b·t beyond the current t), the walk steps there, and the pattern is re-read. Regions
are convex (intersections of half-spaces), so a segment meets each at most once and the count
is the number of pieces of [0, 1].

Bounds, for a network with hidden widths D_1 … D_K (seed 003, Montúfar et al. 2014, Serra et
al. 2018):

- a shallow network of D units on a d-dimensional input: at most Σ_{j=0}^{d} C(D, j) regions
  (Zaslavsky's count for D hyperplanes), i.e. D + 1 on a line;
- any network restricted to a line: at most Π_k (D_k + 1) — inside one region of the first k
  layers the input of layer k + 1 moves along a line, and its D_{k+1} kinks cut that piece into
  at most D_{k+1} + 1.

003's example: 6 hidden units give at most 7 regions on a line; two layers of 3 units can give
9 (:func:`deep_example`; their bound is 16).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, check_fits_in_memory, check_positive_int, check_real
from ..nn.layers import ActivationLayer, Linear

__all__ = [
    "count_linear_regions", "linear_regions_2d", "RegionMap", "activation_patterns",
    "max_regions_shallow", "max_regions_1d", "shallow_example", "deep_example",
]


# --------------------------------------------------------------------------- checks

def _check_piecewise_linear(net, caller: str) -> None:
    for index, layer in enumerate(net.layers):
        if not isinstance(layer, (Linear, ActivationLayer)):
            raise ValueError(
                f"{caller} walks plain networks of Linear and activation layers, but layer {index} is "
                f"{type(layer).__name__} ({layer!r}). Count the regions of an MLP, e.g. dl.MLP(2, [8, 8], 1).")
        if isinstance(layer, ActivationLayer) and not layer.activation.piecewise_linear:
            raise ValueError(
                f"{caller} needs a piecewise-linear network (activations identity, relu or "
                f"leaky_relu), but layer {index} is {layer.activation!r}, which is curved: such a "
                "network has no linear regions to count. Rebuild it with activation='relu'."
            )


def _as_point(value, name: str, features: int, dtype) -> np.ndarray:
    point = as_float_array(value, name, dtype=np.float64)
    if point.ndim == 0 and features == 1:   # a plain number for a network of one input
        point = point.reshape(1)
    if point.ndim == 2 and point.shape[0] == 1:
        point = point[0]
    if point.shape != (features,):
        got = f"the number {value!r}" if point.ndim == 0 else f"shape {point.shape}"
        raise ValueError(f"{name} must be one input point of shape ({features},) (the network's "
                         f"in_features), got {got}.")
    return point


# --------------------------------------------------------------------------- one activation

def _pieces(activation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kinks c_1 < … < c_m of a piecewise-linear activation, and slope/intercept per piece.

    Piece j (0 ≤ j ≤ m) is the interval between c_j and c_{j+1}; a[f] = intercept_j + slope_j·f
    there (read off the activation at a point inside the piece).
    """
    kinks = np.array(sorted(activation.kinks), dtype=np.float64)
    if kinks.size == 0:
        inside = np.array([0.0])
    else:
        inside = np.concatenate([[kinks[0] - 1.0], (kinks[:-1] + kinks[1:]) / 2, [kinks[-1] + 1.0]])
    values = activation.function(inside)
    slopes = activation.derivative(inside, values)
    return kinks, slopes, values - slopes * inside


def _piece_and_next(a: np.ndarray, b: np.ndarray, t: float, kinks: np.ndarray,
                    eps: float) -> tuple[np.ndarray, float]:
    """For units f(t) = a + b·t: the piece each is on just after t, and the next kink crossing.

    A unit reaching a kink within eps after t (or sitting on it) is read on the side it is
    moving to; a unit that does not move (b = 0) is read from its value.
    """
    index = np.zeros(a.shape, dtype=np.intp)
    next_t = np.inf
    moving = b != 0
    safe_b = np.where(moving, b, 1.0)
    for c in kinks:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            roots = np.where(moving, (c - a) / safe_b, np.inf)
        at_kink = moving & (np.abs(roots - t) <= eps)
        index += np.where(at_kink, b > 0, a + b * t > c)
        ahead = roots[roots > t + eps]
        if ahead.size:
            next_t = min(next_t, float(ahead.min()))
    return index, next_t


# --------------------------------------------------------------------------- exact 1-D walk

RESOLVABLE = 1e12   # end points up to this many times 1 + the first layer's kink radius


def _kink_radius(net) -> float:
    """The largest distance from the origin of a first-layer kink hyperplane {x : Ω_0[i]·x + β_0[i] = c}."""
    first = next(layer for layer in net.layers if isinstance(layer, Linear))
    activation = next((layer.activation for layer in net.layers if isinstance(layer, ActivationLayer)), None)
    kinks = list(activation.kinks) if activation is not None else []
    norms = np.linalg.norm(first.weight.data.astype(np.float64), axis=1)
    live = norms > 0
    if not kinks or not live.any():
        return 0.0
    offsets = np.abs(first.bias.data.astype(np.float64)[live, None] - np.array(kinks)[None, :])
    return float(np.max(offsets / norms[live, None]))


def _check_resolvable(net, start: np.ndarray, end: np.ndarray) -> None:
    """Refuse end points so large that their rounding (≈ 2.2e-16 of their size) blurs where the
    segment passes the kinks, which lie within about the first layer's kink radius R of the origin."""
    largest = float(max(np.max(np.abs(start)), np.max(np.abs(end))))
    radius = _kink_radius(net)
    if largest > RESOLVABLE * (1.0 + radius):
        raise ValueError(
            f"count_linear_regions cannot resolve a segment with end points as large as {largest:.3g}: "
            f"float64 rounds them by about {2.2e-16 * largest:.2g}, which blurs where the segment passes the "
            f"network's kinks (its first layer's lie within {radius:.3g} of the origin). Keep the end "
            f"points within {RESOLVABLE:.0e} × (1 + {radius:.3g}) = {RESOLVABLE * (1 + radius):.3g} (a shorter "
            "segment through the kinks).")


class _Overflow(ArithmeticError):
    """f_k = a + b·t left float64's range during the walk (after ``args[0]`` breakpoints)."""


def _walk(net, start: np.ndarray, direction: np.ndarray, eps: float) -> tuple[list[float], int]:
    """Walk x(t) = start + t·direction over t ∈ [0, 1]; (breakpoints t, number of regions).

    The walk runs in τ = t − t₀, where x(t₀) = p is the point of the segment nearest the origin:
    the kinks of a network cluster near the origin, and there τ is small, so its rounding is
    too. Pieces shorter than ``eps``·min(1, 1/‖direction‖ + |τ|) in τ — ``eps`` of the segment
    for a segment up to unit length, ``eps`` relative to the distance from p for a long one —
    are merged: crossings that coincide up to rounding count as one change.
    """
    blocks = [(layer, _pieces(layer.activation) if isinstance(layer, ActivationLayer) else None)
              for layer in net.layers]
    scale = float(np.max(np.abs(direction)))         # rescaled: ‖direction‖² may overflow
    unit, scaled_start = direction / scale, start / scale
    squared = float(unit @ unit)
    nearest = min(1.0, max(0.0, -float(scaled_start @ unit) / squared))
    with np.errstate(over="ignore", invalid="ignore"):
        origin = start + nearest * direction
    inverse_length = 1.0 / (scale * math.sqrt(squared))

    def tolerance(tau: float) -> float:
        return eps * min(1.0, inverse_length + abs(tau))

    tau, last, breakpoints = -nearest, 1.0 - nearest, []
    while True:
        a, b = origin, direction  # h(τ) = a + b·τ inside the current region
        next_tau = last
        for layer, pieces in blocks:
            if isinstance(layer, Linear):
                weight = layer.weight.data.astype(np.float64, copy=False)
                with np.errstate(over="ignore", invalid="ignore"):
                    a = weight @ a + layer.bias.data
                    b = weight @ b
                if not (np.isfinite(a).all() and np.isfinite(b).all()):
                    raise _Overflow(len(breakpoints))
                continue
            kinks, slopes, intercepts = pieces
            index, crossing = _piece_and_next(a, b, tau, kinks, tolerance(tau))
            next_tau = min(next_tau, crossing)
            a, b = intercepts[index] + slopes[index] * a, slopes[index] * b
        if next_tau >= last - tolerance(last):
            return [t + nearest for t in breakpoints], len(breakpoints) + 1
        breakpoints.append(next_tau)
        tau = next_tau


def count_linear_regions(net, start, end, *, return_breakpoints: bool = False, eps: float = 1e-9):
    """The exact number of activation-pattern regions a segment of input space crosses.

    Parameters
    ----------
    net : Sequential
        Every activation must be piecewise linear (identity, relu, leaky_relu); the output
        activation counts too.
    start, end : array_like, shape (D_0,)
        The segment's end points in input space (a ``(1, D_0)`` row is accepted, and a plain
        number when the network has one input).
    return_breakpoints : bool
        Also return the t ∈ (0, 1) where the pattern changes; the input point is
        ``start + t * (end - start)``.
    eps : float
        Pieces shorter than ``eps`` times the smaller of the segment's length and 1 + the
        distance from the segment's point nearest the origin are merged into their
        neighbour, so several units crossing a kink at the same point count as one change.

    Returns
    -------
    int, or (int, np.ndarray of shape (count - 1,)) with ``return_breakpoints``.

    Raises
    ------
    ValueError
        A non-piecewise-linear activation, ``start == end`` (a segment of zero length), or end
        points beyond float precision: larger than :data:`RESOLVABLE` (1e12) × (1 + R), R the
        largest distance of a first-layer kink from the origin (their rounding would blur where
        the segment meets the kinks), or so large that f_k overflows float64 along the segment.

    Examples
    --------
    >>> count_linear_regions(deep_example(), [0.0], [1.0])
    9
    """
    _check_piecewise_linear(net, "count_linear_regions")
    eps = check_real(eps, "eps", low=0, high=1e-3, low_open=True)
    start = _as_point(start, "start", net.in_features, net.dtype)
    end = _as_point(end, "end", net.in_features, net.dtype)
    with np.errstate(over="ignore"):
        direction = end - start
    if not np.any(direction):
        raise ValueError(
            f"count_linear_regions needs a segment of positive length, but start == end == "
            f"{start.tolist()}. Pass two different points, e.g. end = start + 1."
        )
    _check_resolvable(net, start, end)
    try:
        if not np.isfinite(direction).all():
            raise _Overflow(0)
        breakpoints, count = _walk(net, start, direction, eps)
    except _Overflow:
        largest = float(max(np.max(np.abs(start)), np.max(np.abs(end))))
        raise ValueError(
            f"count_linear_regions cannot locate the regions: along the segment (end points up to "
            f"{largest:.3g}) the pre-activations f_k = β_k + Ω_k h_k exceed float64's range (about 1.8e308). "
            "Use a shorter segment, or a network whose weights have not exploded.") from None
    if return_breakpoints:
        return count, np.array(breakpoints, dtype=np.float64)
    return count


# --------------------------------------------------------------------------- patterns on a grid

def activation_patterns(net, x) -> np.ndarray:
    """The activation pattern of every sample as packed bits: shape (N, n_bytes), uint8.

    Bit ``i`` records, for each unit of each piecewise-linear activation layer and each of its
    kinks c, whether f > c (a'(0) conventions aside, a unit exactly at a kink reads as below
    it). Two samples share a row exactly when they lie in the same activation region.
    """
    _check_piecewise_linear(net, "activation_patterns")
    x = net.check_input(x, "x", finite=True)
    bits = []
    with np.errstate(over="ignore", invalid="ignore"):
        h = x
        for layer in net.layers:
            if isinstance(layer, ActivationLayer):
                bits.extend(h > c for c in layer.activation.kinks)
            h = layer(h)
    if not bits:
        return np.zeros((x.shape[0], 1), dtype=np.uint8)
    return np.packbits(np.concatenate(bits, axis=1), axis=1)


class RegionMap(NamedTuple):
    """Region ids on a grid and how many distinct regions it met.

    Attributes
    ----------
    ids : np.ndarray of int, shape (resolution, resolution)
        ``ids[i, j]`` is the region of the point (x_j, y_i), with x_j and y_i the
        ``np.linspace`` grids over the box's first and second axes (row i is y, as an image with
        ``origin="lower"``). Ids are 0, 1, … in order of first appearance in row-major order.
    count : int
        The number of distinct regions met by the grid — a lower bound on the number of
        regions in the box (regions thinner than the grid spacing can be missed).
    """

    ids: np.ndarray
    count: int


def linear_regions_2d(net, box=((-1.0, 1.0), (-1.0, 1.0)), resolution: int = 200) -> RegionMap:
    """Map the activation regions of a 2-input network over a box, by sampling a grid.

    Parameters
    ----------
    net : Sequential with in_features == 2 and piecewise-linear activations
    box : ((x_min, x_max), (y_min, y_max))
    resolution : int
        Grid points per axis (resolution² forward passes, done as one batch).

    Returns
    -------
    RegionMap
        ``(ids, count)``; see :class:`RegionMap`. ``count`` is a lower bound that grows towards
        the true number as the resolution increases.
    """
    _check_piecewise_linear(net, "linear_regions_2d")
    if net.in_features != 2:
        raise ValueError(f"linear_regions_2d needs a network with 2 inputs, got in_features = "
                         f"{net.in_features}; for other inputs count regions along a segment "
                         "with count_linear_regions(net, start, end).")
    resolution = check_positive_int(resolution, "resolution", minimum=2)
    widest = max(getattr(layer, "out_features", 0) for layer in net.layers)
    check_fits_in_memory(resolution ** 2 * (2 + 2 * widest), np.dtype(net.dtype).itemsize,
                         f"linear_regions_2d's grid of resolution {resolution} (and every layer's output on it)",
                         "use a smaller resolution (a few hundred points per axis show the regions)")
    try:
        (x0, x1), (y0, y1) = box
    except (TypeError, ValueError):
        raise ValueError(f"box must be ((x_min, x_max), (y_min, y_max)), got {box!r}.") from None
    limits = [check_real(v, f"box[{i // 2}][{i % 2}]") for i, v in enumerate((x0, x1, y0, y1))]
    if not (limits[0] < limits[1] and limits[2] < limits[3]):
        raise ValueError(f"box must have x_min < x_max and y_min < y_max, got {box!r}.")
    xs = np.linspace(limits[0], limits[1], resolution)
    ys = np.linspace(limits[2], limits[3], resolution)
    grid_x, grid_y = np.meshgrid(xs, ys)
    points = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(net.dtype)
    patterns = activation_patterns(net, points)
    _, first, inverse = np.unique(patterns, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.intp)
    rank[np.argsort(first)] = np.arange(first.size)
    ids = rank[inverse.ravel()].reshape(resolution, resolution)
    return RegionMap(ids=ids, count=int(first.size))


# --------------------------------------------------------------------------- bounds

def max_regions_shallow(width: int, input_dim: int = 1) -> int:
    """Most regions of one hidden layer of ``width`` ReLUs on a ``input_dim``-D input.

    Σ_{j=0}^{input_dim} C(width, j) (D hyperplanes in general position); ``width + 1`` in 1-D.
    """
    width = check_positive_int(width, "width")
    input_dim = check_positive_int(input_dim, "input_dim")
    return sum(math.comb(width, j) for j in range(min(width, input_dim) + 1))


def max_regions_1d(widths) -> int:
    """Most regions of a ReLU network with hidden widths D_1 … D_K along a line: Π (D_k + 1).

    Holds for a 1-D input and for any segment of a higher-dimensional one; for one layer it
    is :func:`max_regions_shallow` (D + 1).
    """
    if isinstance(widths, (int, np.integer)):
        widths = [widths]
    widths = [check_positive_int(w, f"widths[{i}]") for i, w in enumerate(widths)]
    return math.prod(w + 1 for w in widths)


# --------------------------------------------------------------------------- seed 003's examples

def shallow_example(dtype="float64"):
    """1 → 6 → 1 ReLU network with 7 regions on [0, 1] (the shallow bound D + 1).

    Hidden unit i computes relu(x − i/7), i = 1 … 6; the output weights alternate in sign, so
    the function is a zigzag whose slope changes at every kink: 7 linear pieces.
    """
    from ..nn.model import Sequential

    cuts = np.arange(1, 7) / 7
    weights = [np.ones((6, 1)), 7.0 * np.array([[1.0, -2.0, 2.0, -2.0, 2.0, -2.0]])]
    return Sequential.from_arrays(weights, [-cuts, np.zeros(1)], activation="relu", dtype=dtype)


def deep_example(dtype="float64"):
    """1 → 3 → 3 → 1 ReLU network with 9 regions on [0, 1] (003's "two layers of 3 units").

    The first layer builds the tent map g(x) = 3x on [0, ⅓], 2 − 3x on [⅓, ⅔], 3x − 2 on
    [⅔, 1], which folds [0, 1] onto itself three times (units relu(x + 1), relu(x − ⅓),
    relu(x − ⅔): g = 3h_1 − 6h_2 + 6h_3 − 3). The second layer applies the same fold to g, so
    the output g(g(x)) is a zigzag of 9 linear pieces with breakpoints at x = k/9.
    """
    from ..nn.model import Sequential

    fold = np.array([[3.0, -6.0, 6.0]])
    weights = [np.ones((3, 1)), np.repeat(fold, 3, axis=0), fold]
    biases = [np.array([1.0, -1 / 3, -2 / 3]), np.array([1.0 - 3.0, -1 / 3 - 3.0, -2 / 3 - 3.0]),
              np.array([-3.0])]
    return Sequential.from_arrays(weights, biases, activation="relu", dtype=dtype)
