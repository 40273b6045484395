"""Gaussian expectations E[g(√q z)], z ~ N(0, 1), of activations: the numerics of mean-field theory.

Gaussian expectations use Gauss–Legendre rules on panels graded geometrically toward z = 0
and toward the activation's kinks (``Activation.kinks``), truncated at |z| = 10 (the mass
beyond is 1.5e-23). Plain Gauss–Hermite converges slowly for kinked activations and for
steep ones at large q (tanh(√q z) at q = 100 is nearly a step); the graded rule reaches
~1e-13 relative accuracy for every activation in :mod:`depthlab.nn.activations` and every q
from 1e-8 to 1e12 (the grading assumes φ varies on scales ≳ 1 in f away from its declared
kinks; a user activation with a sharper feature should declare it as a kink). The
two-dimensional expectations of the correlation map use a product of such rules over (z1, z2), the z2 rule graded toward the kink line of φ(u2). ReLU, leaky ReLU
and identity use exact closed forms (the arc-cosine kernel of Cho & Saul 2009), kept in one
small table keyed by activation name. The term E[φ''φ] of ξ_q needs no second derivative:
Gaussian integration by parts gives χ_q = σ_w² E[z φ(√q z) φ'(√q z)] / √q, the slope of the
variance map at q*. ``q = 0`` is read as the limit q → 0⁺ throughout. :func:`moments_array`
evaluates the same rules for many variances at once (one rule per grading depth).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..nn import activations
from .._checks import check_real

_Z_MAX = 10.0            # the rules integrate over |z| <= _Z_MAX
_TAIL = 8.0              # integrands must be negligible beyond this |z|
_GRADING = 0.25          # ratio of successive panel lengths toward an anchor
_NODES_1D = 40           # Gauss-Legendre nodes per panel, one-dimensional expectations
_NODES_2D = 24           # ... per panel and axis, two-dimensional expectations
_MAX_LEVELS = 260        # finest panel 10·4^-260: enough for any q below 1e300
Q_TINY = 1e-300         # q = 0 is evaluated as this (the limit q -> 0+)
_CHUNK = 2_000_000       # most quadrature points evaluated at once in 2-D
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------------------------
# Quadrature rules for E[g(z)], z ~ N(0, 1)
# --------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _reference_rule(levels: int, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre on [0, 1] with ``levels`` extra panels graded toward 0.

    Panel edges are 0, r^levels, ..., r, 1 with r = ``_GRADING``; returns nodes t and
    weights v, each of shape ``(nodes * (levels + 1),)``.
    """
    x, w = np.polynomial.legendre.leggauss(nodes)
    x, w = (x + 1.0) / 2.0, w / 2.0
    edges = [0.0] + [_GRADING**j for j in range(levels, 0, -1)] + [1.0]
    t = np.concatenate([a + (b - a) * x for a, b in zip(edges[:-1], edges[1:])])
    v = np.concatenate([(b - a) * w for a, b in zip(edges[:-1], edges[1:])])
    return t, v


def _levels(scale: float) -> int:
    """Grading depth that resolves features of width 1/scale in z (scale = √q, say)."""
    if not scale > 1.0:
        return 0
    if not math.isfinite(scale):
        return _MAX_LEVELS
    return min(_MAX_LEVELS, math.ceil(math.log(scale) / math.log(1.0 / _GRADING)))


def _gaussian_rule(anchors: np.ndarray, levels: int, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for E[g(z)] graded toward sorted ``anchors`` of shape ``(..., m)``.

    [−Z, Z] is cut at the anchors and at the midpoints between neighbouring anchors; each
    piece touches one anchor and is graded toward it. Returns z and w of shape
    ``(..., 2 m n)`` with the normal density folded into w, so E[g] ≈ Σ w g(z).
    """
    anchors = np.clip(anchors, -_Z_MAX, _Z_MAX)
    middles = (anchors[..., 1:] + anchors[..., :-1]) / 2.0
    wall = np.full(anchors.shape[:-1] + (1,), _Z_MAX)
    lower = np.concatenate([-wall, middles], axis=-1)
    upper = np.concatenate([middles, wall], axis=-1)
    ends = np.stack([lower, upper], axis=-1).reshape(anchors.shape[:-1] + (-1,))
    starts = np.repeat(anchors, 2, axis=-1)
    t, v = _reference_rule(levels, nodes)
    spans = ends - starts
    z = starts[..., None] + spans[..., None] * t
    w = np.square(z)
    w *= -0.5
    np.exp(w, out=w)
    w *= np.abs(spans)[..., None] * v
    shape = anchors.shape[:-1] + (-1,)
    z, w = z.reshape(shape), w.reshape(shape)
    w /= w.sum(axis=-1, keepdims=True)       # exact for constants; the tail beyond Z is 1.5e-23
    return z, w


def _breakpoints(activation: activations.Activation) -> np.ndarray:
    """Pre-activation values where φ changes fastest: 0 and the activation's kinks."""
    return np.unique(np.array([0.0, *activation.kinks], dtype=np.float64))


@lru_cache(maxsize=64)        # a rule of the deepest grading is ~0.3 MB
def _rule_1d(anchors: tuple[float, ...], levels: int, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_gaussian_rule` for one set of anchors (read-only arrays, kept): an activation
    without kinks other than 0 has the anchors (0,) at every q, so the mean-field walk through
    a network's layers builds one rule per grading depth instead of one per layer."""
    z, w = _gaussian_rule(np.array(anchors, dtype=np.float64)[None, :], levels, nodes)
    z, w = z[0], w[0]
    z.flags.writeable = w.flags.writeable = False
    return z, w


def _evaluate(activation: activations.Activation, f: np.ndarray, q: float, *,
              derivative: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """φ(f) and φ'(f) at quadrature nodes; non-finite values mean the quadrature failed."""
    what = "value"
    try:
        with np.errstate(all="ignore"):
            values = np.asarray(activation.function(f), dtype=np.float64)
            _check_nodes(activation, values, f, what, q)
            if not derivative:
                return values, None
            what = "derivative"
            grads = np.asarray(activation.derivative(f, values), dtype=np.float64)
            _check_nodes(activation, grads, f, what, q)
    except ArithmeticError as error:
        raise ValueError(
            f"Gaussian quadrature failed for activation {activation!r}: its {what} raised "
            f"{type(error).__name__}: {error} at q = {q:g}."
        ) from None
    return values, grads


def _check_nodes(activation, values: np.ndarray, f: np.ndarray, what: str, q: float) -> None:
    if values.shape != f.shape:
        raise ValueError(
            f"Gaussian quadrature failed for activation {activation!r}: its {what} returned shape "
            f"{values.shape} for input of shape {f.shape}; an activation must be elementwise."
        )
    if np.isfinite(values).all():
        return
    bad = np.isnan(values) | (np.isinf(values) & np.isfinite(f))
    if bad.any():
        worst = float(np.max(np.abs(f[bad])))
        raise ValueError(
            f"Gaussian quadrature failed for activation {activation!r}: its {what} is not finite at "
            f"{int(bad.sum())} of {f.size} quadrature nodes (|f| up to {worst:.3g}, q = {q:g}). "
            "E[g(√q z)] needs a function that is finite for every real f: write it without "
            "overflow (np.logaddexp, scipy.special.expit) or use a smaller variance."
        )


def _check_decay(activation, z: np.ndarray, w: np.ndarray, magnitude: np.ndarray, q: float) -> None:
    """Refuse integrands whose Gaussian tails do not decay: the truncated rule would be wrong."""
    total = _dot(w, magnitude)
    tail = _dot(w[np.abs(z) > _TAIL], magnitude[np.abs(z) > _TAIL])
    if tail > 1e-9 * total:
        raise ValueError(
            f"Gaussian quadrature failed for activation {activation!r}: at q = {q:g} a fraction "
            f"{tail / total:.2g} of E[φ² + φ'²] comes from |z| > {_TAIL:g}, so the expectation does not "
            "converge (φ grows too fast, e.g. like exp(f²)) or needs a smaller variance."
        )


def _dot(weights: np.ndarray, values: np.ndarray) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.dot(weights, values))


# --------------------------------------------------------------------------------------
# Gaussian moments of an activation: closed forms where they exist, quadrature otherwise
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Moments:
    """E over z ~ N(0, 1) at variance q: E[φ], E[φ²], E[φ'²] and d E[φ(√q z)²] / dq."""

    mean: float
    second: float
    grad_second: float
    second_slope: float


class _LeakyClosedForm:
    """φ(f) = f for f > 0, a·f otherwise: ReLU (a = 0), leaky ReLU, identity (a = 1).

    With θ = arccos c and K(c) = q (√(1−c²) + (π − θ) c) / (2π) = E[relu(u1) relu(u2)]
    (Cho & Saul's arc-cosine kernel of degree 1), φ = relu(f) − a·relu(−f) gives
    E[φ(u1) φ(u2)] = (1 + a²) K(c) − 2a K(−c) and
    E[φ'(u1) φ'(u2)] = ((1 + a²)(π − θ) + 2aθ) / (2π).
    """

    def __init__(self, slope: float):
        self.slope = float(slope)
        self.square = (1.0 + self.slope**2) / 2.0   # E[φ(z)²] = E[φ'(z)²]

    def function(self, f: np.ndarray) -> np.ndarray:
        return np.where(f > 0, f, self.slope * f)

    def moments(self, q: float) -> Moments:
        return Moments(math.sqrt(q) * (1.0 - self.slope) * _INV_SQRT_2PI, self.square * q,
                        self.square, self.square)

    def joint(self, q: float, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = self.slope
        theta = np.arccos(np.clip(c, -1.0, 1.0))
        sine = np.sqrt(np.clip(1.0 - c * c, 0.0, None))
        kernel = q * (sine + (math.pi - theta) * c) / (2.0 * math.pi)
        kernel_flipped = q * (sine - theta * c) / (2.0 * math.pi)
        values = (1.0 + a * a) * kernel - 2.0 * a * kernel_flipped
        grads = ((1.0 + a * a) * (math.pi - theta) + 2.0 * a * theta) / (2.0 * math.pi)
        return values, grads


# activation name -> the closed form's negative slope, from the activation's parameters
_CLOSED_FORMS = {
    "relu": lambda params: 0.0,
    "leaky_relu": lambda params: params.get("negative_slope", 0.01),
    "identity": lambda params: 1.0,
}
_PROBE = np.array([-3.0, -0.7, -1e-3, 0.0, 1e-3, 0.4, 2.5])


def closed_form(activation: activations.Activation) -> _LeakyClosedForm | None:
    """The closed form for this activation, if its name has one and its function agrees."""
    if activation.name not in _CLOSED_FORMS:
        return None
    return _checked_closed_form(activation.name, activation.function, tuple(sorted(activation.params.items())))


@lru_cache(maxsize=256)
def _checked_closed_form(name: str, function, params: tuple) -> _LeakyClosedForm | None:
    """``closed_form``'s answer, cached per activation function (the check is costly)."""
    form = _LeakyClosedForm(_CLOSED_FORMS[name](dict(params)))
    with np.errstate(all="ignore"):
        agrees = np.allclose(np.asarray(function(_PROBE.copy()), dtype=float),
                             form.function(_PROBE), rtol=1e-12, atol=1e-15)
    return form if agrees else None


def moments(activation: activations.Activation, q: float) -> Moments:
    """Gaussian moments of φ at variance q (q = 0 read as the limit q → 0⁺)."""
    q = q if q > 0 else Q_TINY
    form = closed_form(activation)
    if form is not None:
        return form.moments(q)
    root = math.sqrt(q)
    z, w = _rule_1d(tuple((_breakpoints(activation) / root).tolist()), _levels(root), _NODES_1D)
    f = root * z
    phi, grad = _evaluate(activation, f, q)
    with np.errstate(over="ignore", invalid="ignore"):
        squares, grad_squares = phi * phi, grad * grad
        _check_decay(activation, z, w, squares + grad_squares, q)
        return Moments(_dot(w, phi), _dot(w, squares), _dot(w, grad_squares),
                        _dot(w, z * phi * grad) / root)


_ROWS_AT_ONCE = 100_000     # most quadrature points evaluated at once by moments_array (temporaries stay in cache)


def _levels_array(roots: np.ndarray) -> np.ndarray:
    """:func:`_levels` of every entry of ``roots`` (same rule, vectorized)."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        raw = np.ceil(np.log(roots) / math.log(1.0 / _GRADING))
    levels = np.where(np.isfinite(raw), np.minimum(raw, _MAX_LEVELS), _MAX_LEVELS)
    return np.where(roots > 1.0, levels, 0).astype(np.int64)


def _row_dots(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Σ_j weights[., j] values[i, j] per row i; ``weights`` of shape (P,) or (n, P)."""
    if weights.ndim == 1:
        return values @ weights
    return np.einsum("ij,ij->i", weights, values)


def moments_array(activation: activations.Activation, q: np.ndarray) -> Moments:
    """:func:`moments` at every variance of ``q`` at once; each field an array of q's shape.

    The same quadrature rule as the scalar function is used for each q (points sharing a
    grading depth are evaluated together), so the results agree with :func:`moments` to
    rounding (~1e-15 relative). Entries of q must be finite.
    """
    q = np.asarray(q, dtype=np.float64)
    q = np.where(q > 0, q, Q_TINY)
    form = closed_form(activation)
    if form is not None:
        square = np.full_like(q, form.square)
        return Moments(np.sqrt(q) * (1.0 - form.slope) * _INV_SQRT_2PI, form.square * q, square, square.copy())
    flat = q.reshape(-1)
    roots = np.sqrt(flat)
    levels = _levels_array(roots)
    out = np.empty((4, flat.size))
    breakpoints = _breakpoints(activation)
    shared = breakpoints.size == 1          # anchors 0/√q = 0: one rule serves every q of a level
    for level in np.unique(levels):
        members = np.flatnonzero(levels == level)
        per_row = 2 * breakpoints.size * _NODES_1D * (int(level) + 1)
        step = max(1, _ROWS_AT_ONCE // per_row)
        if shared:
            z, w = _gaussian_rule(breakpoints[None, :], int(level), _NODES_1D)
            z, w = z[0], w[0]
        for start in range(0, members.size, step):
            idx = members[start:start + step]
            root = roots[idx][:, None]
            if not shared:
                z, w = _gaussian_rule(breakpoints[None, :] / root, int(level), _NODES_1D)
            zz = np.broadcast_to(z, (idx.size, z.shape[-1]))
            phi, grad = _evaluate(activation, root * zz, float(flat[idx].max()))
            with np.errstate(over="ignore", invalid="ignore"):
                out[0, idx] = _row_dots(w, phi)
                out[3, idx] = _row_dots(w * z, phi * grad) / root[:, 0]
                phi *= phi
                grad *= grad                                  # now φ² and φ'²
                tail_w = np.where(np.abs(z) > _TAIL, w, 0.0)
                out[1, idx], out[2, idx] = _row_dots(w, phi), _row_dots(w, grad)
                tail = _row_dots(tail_w, phi) + _row_dots(tail_w, grad)
                failing = np.flatnonzero(tail > 1e-9 * (out[1, idx] + out[2, idx]))
                if failing.size:
                    row = int(failing[0])
                    zr, wr = np.broadcast_to(z, zz.shape)[row], np.broadcast_to(w, zz.shape)[row]
                    _check_decay(activation, zr, wr, phi[row] + grad[row], float(flat[idx][row]))
    return Moments(*(row.reshape(q.shape) for row in out))


def joint_moments(activation: activations.Activation, q: float, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[φ(u1) φ(u2)] and E[φ'(u1) φ'(u2)] for correlations c of shape ``(n,)`` at variance q."""
    q = q if q > 0 else Q_TINY
    form = closed_form(activation)
    if form is not None:
        return form.joint(q, c)
    root = math.sqrt(q)
    kinks = _breakpoints(activation) / root
    sine = np.sqrt(np.clip(1.0 - c * c, 0.0, None))
    # z1 must resolve φ(u1) (width 1/√q) and the z2-average, a smooth step of width ~√(1−c²);
    # z2 must resolve φ(u2), of width 1/(√q √(1−c²)) in z2.
    levels_1 = np.array([_levels(max(root, 1.0 / s if s > 0 else 0.0)) for s in sine])
    levels_2 = np.array([_levels(root * s) for s in sine])
    values, grads = np.empty_like(c), np.empty_like(c)
    for level_1 in np.unique(levels_1):
        z1, w1 = _gaussian_rule(kinks[None, :], int(level_1), _NODES_2D)
        z1, w1 = z1[0], w1[0]
        phi1, grad1 = _evaluate(activation, root * z1, q)
        for level_2 in np.unique(levels_2[levels_1 == level_1]):
            members = np.flatnonzero((levels_1 == level_1) & (levels_2 == level_2))
            per_c = z1.size * 2 * (kinks.size + 1) * _NODES_2D * (level_2 + 1)
            step = max(1, _CHUNK // per_c)
            for start in range(0, members.size, step):
                idx = members[start:start + step]
                cc, ss = c[idx][:, None, None], sine[idx][:, None, None]
                safe = np.where(ss > 0, ss, 1.0)
                # the kink lines of φ(u2) in z2 for each (c, z1), and z2 = 0, the density's peak
                lines = np.where(ss > 0, (kinks[None, None, :] - cc * z1[None, :, None]) / safe, 0.0)
                anchors = np.sort(np.concatenate([lines, np.zeros_like(lines[..., :1])], axis=-1), axis=-1)
                z2, w2 = _gaussian_rule(anchors, int(level_2), _NODES_2D)
                u2 = z2
                u2 *= ss
                u2 += cc * z1[None, :, None]
                u2 *= root
                phi2, grad2 = _evaluate(activation, u2, q)
                with np.errstate(over="ignore", invalid="ignore"):
                    values[idx] = np.einsum("j,cj->c", w1 * phi1, np.einsum("cjk,cjk->cj", w2, phi2))
                    grads[idx] = np.einsum("j,cj->c", w1 * grad1, np.einsum("cjk,cjk->cj", w2, grad2))
    return values, grads


def _kinks(kinks) -> tuple[float, ...]:
    """``kinks`` as a tuple of finite floats (gaussian_expectation's argument)."""
    if isinstance(kinks, (str, bytes)) or not isinstance(kinks, (Sequence, np.ndarray)):
        raise TypeError(f"kinks must be a sequence of numbers, got {type(kinks).__name__} {kinks!r}; "
                        "e.g. kinks=(0.0,) for a function with a corner at 0.")
    return tuple(check_real(k, f"kinks[{i}]") for i, k in enumerate(np.asarray(kinks, dtype=object).reshape(-1)))


def gaussian_expectation(function, q: float, *, kinks: Sequence[float] = ()) -> float:
    """E[g(√q z)] for z ~ N(0, 1), by the graded Gauss–Legendre rule of this module.

    Parameters
    ----------
    function : callable
        Elementwise ``g(f) -> array`` of the same shape as ``f``.
    q : float
        Variance of the argument, ``>= 0`` (0 gives the limit q → 0⁺).
    kinks : sequence of float
        Points where g is not smooth; the rule is graded toward them (and toward 0).

    Returns
    -------
    float
    """
    q = check_real(q, "q", low=0)
    if not callable(function):
        raise TypeError(f"function must be a callable g(f) -> array, got {type(function).__name__} {function!r}; "
                        "e.g. gaussian_expectation(np.tanh, q).")
    probe = activations.Activation("function", function, lambda f, h: h, 1.0, kinks=_kinks(kinks))
    q = q if q > 0 else Q_TINY
    root = math.sqrt(q)
    z, w = _gaussian_rule(_breakpoints(probe)[None, :] / root, _levels(root), _NODES_1D)
    values = _evaluate(probe, root * z[0], q, derivative=False)[0]
    with np.errstate(over="ignore", invalid="ignore"):
        _check_decay(probe, z[0], w[0], np.abs(values), q)
    return _dot(w[0], values)
