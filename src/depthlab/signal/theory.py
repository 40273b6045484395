"""Mean-field theory of signal propagation in deep random networks, for any activation.

A wide fully-connected network with i.i.d. zero-mean random weights and biases carries, at
each layer, pre-activations f_k = β_k + Ω_k h_k, h_{k+1} = a[f_k] whose entries are
(approximately) Gaussian. Their variance q_k, the correlation c_k between the pre-activations
of two inputs, and the growth of gradients then follow deterministic maps (Poole et al. 2016,
"Exponential expressivity in deep neural networks through transient chaos"; Schoenholz et al.
2017, "Deep Information Propagation"). This module computes those maps, their fixed points,
the depth scales ξ_q and ξ_c, the edge of chaos, and per-layer predictions of the standard
deviations that :func:`depthlab.probe` measures. The predictions hold for infinite width;
finite-width fluctuations around them shrink like 1/width (their variance grows with depth
roughly like depth/width, so a 50-layer net of width 80 wanders visibly).

Convention (read this first)
----------------------------
The map functions take the *normalized* variances of the mean-field literature::

    weight_variance = σ_w² = fan_in · Var(Ω)      bias_variance = σ_b² = Var(β)

so He initialization for ReLU is σ_w² = 2, LeCun/Xavier-like scalings are σ_w² ≈ 1, and the
seed notebook's σ²_Ω = 1 at width 80 is σ_w² = 80. ``q`` is the variance of one entry of a
pre-activation f. The per-layer :func:`predicted_std` instead takes the per-entry Var(Ω)
(σ²_Ω, as the seeds and initializers write it) and the layer sizes.

The maps (z, z1, z2 independent standard normals, φ = a[·])::

    q_{k+1} = σ_w² E[φ(√q_k z)²] + σ_b²                                (variance map)
    χ1      = σ_w² E[φ'(√q* z)²]                                       (gradient growth / layer)
    c_{k+1} = (σ_w² E[φ(u1) φ(u2)] + σ_b²) / q_{k+1},                  (correlation map)
              u1 = √q z1,  u2 = √q (c z1 + √(1−c²) z2)
    ξ_q = −1 / ln χ_q,  χ_q = χ1 + σ_w² E[φ''(√q* z) φ(√q* z)]         (Schoenholz et al. eq. 5)
    ξ_c = −1 / ln χ_c,  χ_c = slope of the correlation map at its stable fixed point c*

Gaussian expectations are computed by :mod:`depthlab.signal.gaussian` (closed forms for ReLU,
leaky ReLU and identity; graded Gauss–Legendre quadrature otherwise). ``q = 0`` is read as
the limit q → 0⁺ throughout.

Arrays: :func:`fixed_point`, :func:`chi1`, :func:`depth_scales`, :func:`variance_map`,
:func:`correlation_fixed_point` and :func:`critical_weight_variance` also take NumPy arrays of
σ_w² and σ_b² that broadcast together (``w[None, :]``, ``b[:, None]`` for a grid) and return
arrays of that shape; :func:`phase_diagram` is the grid form. q* and χ1 are then computed for all
points at once (one bracketing walk shared by every point, Newton's method vectorized), equal
to the one-point results to the root finder's 1e-12 relative tolerance.

Limits: variances up to float64's largest (1.8e308) are handled exactly; a q* beyond it is
refused. The correlation map (c*, ξ_c) of an activation without a closed form is refused for
q > 1e12, where its two-dimensional quadrature is no longer verified; q* and χ1 are not.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
from scipy import optimize

from ..nn import activations
from .._checks import as_float_array, check_positive_int, check_real
from .gaussian import (Q_TINY, Moments, closed_form, gaussian_expectation, joint_moments, moments,
                       moments_array)

_CRITICAL_TOL = 1e-9     # |χ - 1| below this counts as critical
_Q_MAX = float(np.finfo(np.float64).max)   # the largest variance float64 holds
_Q_MAX_JOINT = 1e12      # the two-dimensional (correlation) quadrature is verified up to this q


class NoFixedPointError(ValueError):
    """The variance map has no finite fixed point: the signal grows without bound."""


# --------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------

def _real(value, name: str, **bounds) -> float:
    """check_real, reading a 0-d array (what the array forms return for 0-d input) as its number."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return check_real(value, name, **bounds)


def _activation(spec) -> activations.Activation:
    return activations.get(spec)


def _weight_variance(value) -> float:
    value = _real(value, "weight_variance")
    if value <= 0:
        raise ValueError(
            f"weight_variance must be > 0, got {value:g}. It is σ_w² = fan_in · Var(Ω): "
            "He initialization for ReLU is weight_variance=2.0, LeCun's is 1.0."
        )
    return value


def _bias_variance(value) -> float:
    value = _real(value, "bias_variance")
    if value < 0:
        raise ValueError(f"bias_variance must be >= 0 (it is Var(β)), got {value:g}; use 0.0 for zero biases.")
    return value + 0.0                     # -0.0 is 0.0 (q* = σ_b² / (1 − slope) would be -0.0)


def _variance(value, name: str, *, allow_zero: bool) -> float:
    value = _real(value, name)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"{name} must be {bound} (a pre-activation variance), got {value:g}. "
            "Pass e.g. 1.0 for inputs of unit variance."
        )
    return value


def _map_arguments(activation, weight_variance, bias_variance):
    return _activation(activation), _weight_variance(weight_variance), _bias_variance(bias_variance)


def _next_variance(act, sw2: float, sb2: float, q: float) -> float:
    """σ_w² E[φ(√q z)²] + σ_b² (inf once the signal overflows)."""
    if not math.isfinite(q):
        return math.inf
    return sw2 * moments(act, q).second + sb2


# --------------------------------------------------------------------------------------
# The variance map and its fixed point
# --------------------------------------------------------------------------------------

def variance_map(activation, weight_variance: float, bias_variance: float, q0: float, depth: int) -> np.ndarray:
    """Iterate the length map q_{k+1} = σ_w² E[φ(√q_k z)²] + σ_b² (Poole et al. 2016, eq. 3).

    Parameters
    ----------
    activation : str, dict or Activation
        Anything :func:`depthlab.nn.activations.get` accepts.
    weight_variance : float
        σ_w² = fan_in · Var(Ω), > 0.
    bias_variance : float
        σ_b² = Var(β), >= 0.
    q0 : float
        Variance of the first pre-activation f_0, > 0.
    depth : int
        Number of applications of the map, >= 0.

    Returns
    -------
    np.ndarray, shape (depth + 1,)
        q_0, ..., q_depth. Entries become ``inf`` once the variance overflows float64. When
        ``weight_variance`` or ``bias_variance`` is an array, shape ``broadcast_shape + (depth + 1,)``.
    """
    if _is_array(weight_variance, bias_variance):
        act = _activation(activation)
        sw2, sb2 = _variance_arrays(weight_variance, bias_variance)
        q = _variance(q0, "q0", allow_zero=False)
        depth = _map_depth(depth, sw2.size)
        out = np.empty(sw2.shape + (depth + 1,))
        out[..., 0] = q
        for layer in range(1, depth + 1):
            previous = out[..., layer - 1]
            finite = np.isfinite(previous)
            second = moments_array(act, np.where(finite, previous, 1.0)).second
            with np.errstate(over="ignore", invalid="ignore"):
                out[..., layer] = np.where(finite, sw2 * second + sb2, np.inf)
        return out
    act, sw2, sb2 = _map_arguments(activation, weight_variance, bias_variance)
    q = _variance(q0, "q0", allow_zero=False)
    depth = _map_depth(depth, 1)
    out = np.empty(depth + 1)
    out[0] = q
    for layer in range(1, depth + 1):
        q = _next_variance(act, sw2, sb2, q)
        out[layer] = q
    return out


_MAX_MAP_ENTRIES = 10**8      # variance_map's output: 800 MB


def _map_depth(depth, points: int) -> int:
    """``depth`` >= 0, refused when the map's output (points · (depth + 1) numbers) would not fit."""
    depth = check_positive_int(depth, "depth", minimum=0)
    if max(points, 1) * (depth + 1) > _MAX_MAP_ENTRIES:
        raise ValueError(f"variance_map would return {max(points, 1) * (depth + 1):,} numbers for depth={depth:,} "
                         f"({max(points, 1):,} point(s)), more than its limit of {_MAX_MAP_ENTRIES:,} (800 MB); the "
                         "variance reaches its fixed point q* within a few ξ_q layers: use a smaller depth, or "
                         "fixed_point() for the limit.")
    return depth


def _unbounded(act, sw2, sb2, why: str) -> NoFixedPointError:
    return NoFixedPointError(
        f"no finite fixed point for {act!r} at weight_variance={sw2:.10g}, bias_variance={sb2:.10g}: "
        f"the signal grows without bound ({why}). Lower weight_variance: an activation that grows "
        "like |f| explodes once σ_w² E[φ(√q z)²] / q > 1 at large q (σ_w² > 2 for ReLU, ELU, GELU, "
        "SiLU, softplus), ReLU also at σ_w² = 2 with bias_variance > 0."
    )


_FAR = 1e24      # above this variance the walk up strides by 1e8, not 4


def _step_up(q: float) -> float:
    """The next variance of the bracketing walk up: ×4, and ×1e8 beyond 1e24 (capped at float max).

    Fixed points are sought from q0 in factors of 4 so that the first sign change found is the
    one the map reaches; no activation of interest has two fixed points within a factor 1e8
    beyond 1e24, and the long strides keep a walk to 1e308 to ~60 steps.
    """
    return min(q * (4.0 if q < _FAR else 1e8), _Q_MAX)


def _beyond_float(act, sw2, sb2) -> ValueError:
    return ValueError(
        f"the fixed point q* for {act!r} at weight_variance={sw2:.10g}, bias_variance={sb2:.10g} lies beyond "
        f"the largest float64, {_Q_MAX:.4g}: the variance map still grows there. Use smaller variances "
        "(q* is about weight_variance·E[φ²] + bias_variance)."
    )


def fixed_point(activation, weight_variance: float, bias_variance: float, q0: float = 1.0,
                tol: float = 1e-12, max_iter: int = 200) -> float:
    """The fixed point q* = σ_w² E[φ(√q* z)²] + σ_b² that the variance map reaches from q0.

    The fixed point is bracketed by walking from q0 in the direction the map moves (factors
    of 4 up, 1e8 beyond 1e24; 1000 down) and refined with Brent's method, so it converges fast
    even near criticality, where plain iteration crawls.

    Parameters
    ----------
    activation, weight_variance, bias_variance
        As in :func:`variance_map`.
    q0 : float
        Starting variance, > 0.
    tol : float
        Relative tolerance on q*.
    max_iter : int
        Most iterations of the root finder.

    Returns
    -------
    float or np.ndarray
        q* >= 0 (an array of the broadcast shape of ``weight_variance`` and ``bias_variance``
        when either is an array; see :func:`phase_diagram` for the array rules: ``inf``
        where the scalar call raises for unbounded growth). It is 0.0 when the signal dies out (σ_b² = 0 and φ(0) = 0 in the ordered
        phase, e.g. tanh with σ_w² <= 1). For ReLU, leaky ReLU and identity with σ_b² = 0 at
        their critical σ_w² (2 for ReLU) every q is a fixed point and q0 is returned.

    Raises
    ------
    NoFixedPointError (a ValueError)
        When there is no finite fixed point: the variance grows without bound (e.g. ReLU with
        σ_w² > 2, or σ_w² = 2 with σ_b² > 0; GELU/ELU/SiLU/softplus above σ_w² ≈ 2).
    ValueError
        When q* exists but exceeds the largest float64 (e.g. tanh with σ_w² + σ_b² > 1.8e308).
    """
    if _is_array(weight_variance, bias_variance):
        act = _activation(activation)
        sw2, sb2 = _variance_arrays(weight_variance, bias_variance)
        q0 = _variance(q0, "q0", allow_zero=False)
        tol = _real(tol, "tol", low=0.0, low_open=True)
        max_iter = check_positive_int(max_iter, "max_iter")
        return _fixed_points(act, sw2.reshape(-1), sb2.reshape(-1), q0, tol, max_iter).reshape(sw2.shape)
    act, sw2, sb2 = _map_arguments(activation, weight_variance, bias_variance)
    q0 = _variance(q0, "q0", allow_zero=False)
    tol = _real(tol, "tol", low=0.0, low_open=True)
    max_iter = check_positive_int(max_iter, "max_iter")
    form = closed_form(act)
    if form is not None:
        slope = sw2 * form.square          # the map is q -> slope·q + σ_b²
        if abs(slope - 1.0) <= 1e-12:
            if sb2 == 0.0:
                return q0
            raise _unbounded(act, sw2, sb2, f"q grows by σ_b² = {sb2:g} every layer")
        if slope > 1.0:
            raise _unbounded(act, sw2, sb2, f"q grows by a factor σ_w²·E[φ(z)²] = {slope:.10g} per layer")
        with np.errstate(over="ignore"):
            q_star = sb2 / (1.0 - slope)
        if not math.isfinite(q_star):
            raise _beyond_float(act, sw2, sb2)
        return q_star

    def excess(q: float) -> float:
        return _next_variance(act, sw2, sb2, q) - q

    start = excess(q0)
    if start == 0.0:
        return q0
    if start > 0.0:
        ceiling = 1e15 * max(1.0, q0, sb2, sw2)
        low, high = q0, _step_up(q0)
        while (value := excess(high)) > 0.0:
            if high > ceiling:
                raise _unbounded(act, sw2, sb2, f"q_(k+1) > q_k for every q up to {ceiling:g}")
            if high == _Q_MAX:
                raise _beyond_float(act, sw2, sb2)
            low, high = high, _step_up(high)
        if value == 0.0:
            return high
    else:
        low, high = q0 / 1000.0, q0
        while (value := excess(low)) < 0.0:
            if low < 1e-300:
                return 0.0
            low, high = low / 1000.0, low
        if value == 0.0:
            return low
    root, info = optimize.brentq(excess, low, high, xtol=1e-300, rtol=max(tol, 4 * np.finfo(float).eps),
                                 maxiter=max_iter, full_output=True, disp=False)
    if not info.converged:
        raise ValueError(f"fixed_point did not converge in max_iter={max_iter} iterations; raise max_iter.")
    return float(root)


def _q_or_fixed_point(act, sw2, sb2, q) -> float:
    if q is None:
        return fixed_point(act, sw2, sb2)
    return _variance(q, "q", allow_zero=True)


def chi1(activation, weight_variance: float, bias_variance: float, q: float | None = None) -> float:
    """χ1 = σ_w² E[φ'(√q z)²]: the growth of E‖dL/dh‖² per layer, backward (Poole et al. 2016).

    χ1 < 1 is the ordered phase (gradients vanish), χ1 > 1 the chaotic phase (they explode),
    χ1 = 1 the edge of chaos.

    Parameters
    ----------
    activation, weight_variance, bias_variance
        As in :func:`variance_map`.
    q : float, optional
        Pre-activation variance, >= 0; defaults to the fixed point q*.

    Returns
    -------
    float or np.ndarray
        An array of the broadcast shape of ``weight_variance`` and ``bias_variance`` when
        either is an array (NaN where q* does not exist; see :func:`phase_diagram`).

    Notes
    -----
    For ReLU, leaky ReLU (slope a) and identity φ' is 1 or a, so E[φ'(√q z)²] = (1 + a²)/2 for
    every q and χ1 = σ_w² (1 + a²)/2 needs no fixed point: it is returned even where q* does
    not exist (σ_w² above the critical value, where the variance grows without bound but the
    per-layer gradient growth is still exactly χ1). ``q``, if given, is checked and unused.
    """
    act = _activation(activation)
    form = closed_form(act)
    if _is_array(weight_variance, bias_variance):
        sw2, sb2 = _variance_arrays(weight_variance, bias_variance)
        if form is not None:
            if q is not None:
                _variance(q, "q", allow_zero=True)
            return np.asarray(sw2 * form.square)
        flat_w, flat_b = sw2.reshape(-1), sb2.reshape(-1)
        if q is None:
            q_star, grad_second = _fixed_points_and_slopes(act, flat_w, flat_b)
            return np.where(np.isfinite(q_star), flat_w * grad_second, np.nan).reshape(sw2.shape)
        q_given = np.full(flat_w.shape, _variance(q, "q", allow_zero=True))
        return _chi1_at(act, flat_w, q_given).reshape(sw2.shape)
    sw2, sb2 = _weight_variance(weight_variance), _bias_variance(bias_variance)
    if form is not None:
        if q is not None:
            _variance(q, "q", allow_zero=True)
        return sw2 * form.square
    q = _q_or_fixed_point(act, sw2, sb2, q)
    return sw2 * moments(act, q).grad_second


# --------------------------------------------------------------------------------------
# The correlation map and its fixed point
# --------------------------------------------------------------------------------------

def _correlations(c) -> np.ndarray:
    array = as_float_array(c, "c", dtype=np.float64)
    if (np.abs(array) > 1.0).any():
        worst = float(array.reshape(-1)[np.argmax(np.abs(array))])
        raise ValueError(f"c must hold correlations in [-1, 1], got a value of {worst:g}.")
    return array


def _next_layer_variance(act, sw2, sb2, q) -> float:
    """σ_w² E[φ(√q z)²] + σ_b², the normalizer of the correlation map; it must be positive."""
    q_next = sw2 * moments(act, q).second + sb2
    if not q_next > 0:
        raise ValueError(
            f"the next layer's variance σ_w² E[φ²] + σ_b² is {q_next:g} at q = {q:g} for {act!r}: "
            "the correlation is undefined (0/0)."
        )
    return q_next


def _check_joint_range(act, sw2, sb2, q) -> None:
    """Refuse a variance beyond what the two-dimensional quadrature is verified for."""
    if q > _Q_MAX_JOINT and closed_form(act) is None:
        raise ValueError(
            f"the correlation map of {act!r} at q = {q:.4g} (weight_variance={sw2:.6g}, bias_variance={sb2:.6g}) "
            f"is beyond this module's limit q <= {_Q_MAX_JOINT:g}: its two-dimensional Gaussian quadrature is "
            "verified only up to there (and its cost grows like (ln q)²). Use a smaller weight_variance or "
            "bias_variance; χ1 and q* are still available."
        )


def _correlation_values(act, sw2, sb2, q, c: np.ndarray) -> np.ndarray:
    """The correlation map at correlations c of shape ``(n,)``."""
    q_next = _next_layer_variance(act, sw2, sb2, q)
    joint, _ = joint_moments(act, q, c)
    mapped = np.clip((sw2 * joint + sb2) / q_next, -1.0, 1.0)
    return np.where(c == 1.0, 1.0, mapped)


def correlation_map(activation, weight_variance: float, bias_variance: float, c, q: float | None = None):
    """The correlation of the next layer's pre-activations for two inputs of correlation c.

    c_{k+1} = (σ_w² E[φ(u1) φ(u2)] + σ_b²) / q_{k+1}, u1 = √q z1, u2 = √q (c z1 + √(1−c²) z2),
    with q_{k+1} = σ_w² E[φ(√q z)²] + σ_b² the next layer's variance; at q = q* this is
    Poole et al. (2016), eq. 5. c = 1 maps to exactly 1.

    Parameters
    ----------
    activation, weight_variance, bias_variance
        As in :func:`variance_map`.
    c : float or array_like, shape (n,)
        Correlations in [-1, 1].
    q : float, optional
        Variance of both inputs' pre-activations, >= 0; defaults to the fixed point q*.

    Returns
    -------
    float or np.ndarray of the shape of ``c``
    """
    if any(isinstance(v, (list, tuple)) or (isinstance(v, np.ndarray) and v.ndim > 0)
           for v in (weight_variance, bias_variance)):
        raise TypeError("correlation_map takes one weight_variance and one bias_variance (c may be an array); "
                        f"got {type(weight_variance).__name__} and {type(bias_variance).__name__}. For arrays of "
                        "σ_w² and σ_b² use correlation_fixed_point or depth_scales, or call it once per point.")
    act, sw2, sb2 = _map_arguments(activation, weight_variance, bias_variance)
    array = _correlations(c)
    q = _q_or_fixed_point(act, sw2, sb2, q)
    _check_joint_range(act, sw2, sb2, q)
    mapped = _correlation_values(act, sw2, sb2, q, array.reshape(-1))
    mapped = mapped.reshape(array.shape)
    return float(mapped) if mapped.ndim == 0 else mapped


def _slope_at_one(act, sw2, q, q_next) -> float:
    """d c_{k+1} / d c_k at c = 1: σ_w² q E[φ'²] / q_next (= χ1 when q is the fixed point)."""
    q_eff = q if q > 0 else Q_TINY
    return sw2 * q_eff * moments(act, q).grad_second / q_next


# grid for the chaotic fixed point: uniform on [0, 1) and geometric toward 1
_C_RESOLUTION = 1e-10   # below this, c-map gaps are not resolved from rounding
_C_GRID = np.concatenate([np.linspace(0.0, 0.99, 34), 1.0 - np.logspace(-2.5, -12, 11)])


def correlation_fixed_point(activation, weight_variance: float, bias_variance: float,
                            q: float | None = None) -> float:
    """The stable fixed point c* of the correlation map (Poole et al. 2016; Schoenholz et al. 2017).

    In the ordered phase (slope of the map at c = 1, i.e. χ1 at q*, <= 1) c* = 1: all inputs
    become alike. In the chaotic phase c = 1 is unstable and c* < 1 is the stable fixed point
    closest to 1; one exists in [0, 1) because the map sends c = 0 to
    (σ_w² E[φ(√q z)]² + σ_b²) / q_next >= 0. It is found on a grid and refined with Brent's method.
    A slope within 1e-9 of 1 counts as critical (c* = 1): the chaotic c* would then lie
    within ~1e-9 of 1, below the quadrature's resolution. Just above criticality (slope − 1
    below ~1e-7) the gap m(c) − c near c* drowns in rounding; c* is then reported as the
    closest point that rounding still resolves, a lower bound within ~1e-2 of 1.

    Parameters
    ----------
    activation, weight_variance, bias_variance
        As in :func:`variance_map`.
    q : float, optional
        The variance of both inputs, >= 0; defaults to the fixed point q*. When it is 0 (the
        signal dies out) c* = 1 is returned by convention.

    Returns
    -------
    float or np.ndarray
        An array of the broadcast shape of ``weight_variance`` and ``bias_variance`` when
        either is an array: NaN where q* does not exist (the scalar call raises
        NoFixedPointError), as :func:`depth_scales`'s ``c_star``.
    """
    if _is_array(weight_variance, bias_variance):
        return _elementwise(lambda w, b: _correlation_fixed_point_or_nan(activation, w, b, q),
                            *_variance_arrays(weight_variance, bias_variance))
    act, sw2, sb2 = _map_arguments(activation, weight_variance, bias_variance)
    q = _q_or_fixed_point(act, sw2, sb2, q)
    if q == 0.0:
        return 1.0
    q_next = _next_layer_variance(act, sw2, sb2, q)
    slope = _slope_at_one(act, sw2, q, q_next)
    if slope <= 1.0 + _CRITICAL_TOL:
        return 1.0
    _check_joint_range(act, sw2, sb2, q)

    def excess(c):
        return _correlation_values(act, sw2, sb2, q, np.atleast_1d(np.asarray(c, dtype=float))) - c

    # Near c = 1 the gap is (slope − 1)(c − 1) < 0 plus rounding noise (~1e-13): search only
    # where the true gap exceeds the noise, ending at c_max where it is −_C_RESOLUTION.
    c_max = min(1.0 - _C_RESOLUTION / (slope - 1.0), _C_GRID[-1])   # < 1 also when slope is huge
    grid = np.append(_C_GRID[_C_GRID < c_max], c_max)
    gaps = excess(grid)
    nonnegative = np.flatnonzero(gaps >= 0.0)
    if nonnegative.size == 0:     # the map sends 0 to >= 0; only rounding makes gaps[0] < 0
        return 0.0
    i = int(nonnegative[-1])
    if gaps[i] == 0.0 or i == grid.size - 1:
        return float(grid[i])
    return float(optimize.brentq(lambda c: float(excess(c)[0]), grid[i], grid[i + 1], xtol=1e-15))


def _correlation_fixed_point_or_nan(activation, sw2: float, sb2: float, q) -> float:
    """One point of the array form of :func:`correlation_fixed_point`: NaN without a fixed point q*."""
    try:
        return correlation_fixed_point(activation, sw2, sb2, q=q)
    except NoFixedPointError:
        return math.nan


# --------------------------------------------------------------------------------------
# Depth scales
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DepthScales:
    """How many layers signals survive (Schoenholz et al. 2017).

    Attributes
    ----------
    xi_q : float
        Depth scale of the variance's approach to q*: |q_k − q*| ~ exp(−k/ξ_q).
    xi_c : float
        Depth scale of correlations: |c_k − c*| ~ exp(−k/ξ_c); ``math.inf`` at criticality.
        Trainability needs depth ≲ 6 ξ_c (Schoenholz et al.).
    q_star, c_star : float
        Fixed points of the variance and correlation maps.
    chi1 : float
        σ_w² E[φ'(√q* z)²], the backward growth of gradients per layer.
    chi_c : float
        Slope of the correlation map at c* (= χ1 when c* = 1 and q* > 0).
    chi_q : float
        Slope of the variance map at q*: χ1 + σ_w² E[φ''(√q* z) φ(√q* z)].
    """

    xi_q: float
    xi_c: float
    q_star: float
    c_star: float
    chi1: float
    chi_c: float
    chi_q: float

    def __eq__(self, other) -> bool:
        """Equal fields (arrays entry by entry, NaN equal to NaN): the array form has no single truth value otherwise."""
        if not isinstance(other, DepthScales):
            return NotImplemented
        return all(np.array_equal(getattr(self, f.name), getattr(other, f.name), equal_nan=True) for f in fields(self))

    def __repr__(self) -> str:
        if np.ndim(self.chi1) > 0:       # the array form: one entry per (σ_w², σ_b²)
            return _depth_scales_array_text(self)
        from .display import depth_scales_text
        return depth_scales_text(self)

    def _repr_html_(self) -> str:  # Jupyter
        if np.ndim(self.chi1) > 0:
            import html
            return f"<pre>{html.escape(_depth_scales_array_text(self))}</pre>"
        from .display import depth_scales_html
        return depth_scales_html(self)


def _depth_scales_array_text(scales: DepthScales) -> str:
    """``DepthScales(shape (2, 3): xi_q=[[...]], ...)``: the fields of the array form, abridged."""
    with np.printoptions(precision=4, threshold=12, edgeitems=2):
        body = ", ".join(f"{name}={np.array2string(np.asarray(getattr(scales, name)), separator=', ')}"
                         for name in ("xi_q", "xi_c", "q_star", "c_star", "chi1", "chi_c", "chi_q"))
    return f"DepthScales(shape {np.shape(scales.chi1)}: {' '.join(body.split())})"


# |χ| within this of 1 is criticality (ξ = inf): the quadrature resolves χ to ~1e-13, so a
# larger ξ = −1/ln|χ| ≈ 1/(1 − |χ|) would be rounding noise (tanh at σ_w² = 1: 7.5e13 or 7.4e13)
_DEPTH_SCALE_TOL = 1e-12


def _depth_scale(slope: float) -> float:
    """−1 / ln|χ|; inf for |χ| >= 1 − 1e-12 (criticality), 0 for χ = 0."""
    size = abs(slope)
    if size >= 1.0 - _DEPTH_SCALE_TOL:
        return math.inf
    if size == 0.0:
        return 0.0
    return -1.0 / math.log(size)


def _variance_depth_scale(act, sw2: float, q_star: float, chi_q: float) -> float:
    """ξ_q = −1/ln|χ_q|, from logarithms when χ_q = σ_w² E[z φ φ'] / √q* underflows to 0.

    At an astronomical q* (e.g. σ_b² = 1e300) the slope is ~1e-450: ξ_q is then small but
    not 0, so ln|χ_q| = ln σ_w² + ln|E[z φ(√q* z) φ'(√q* z)]| − ½ ln q* is used.
    """
    if chi_q != 0.0 or q_star == 0.0:
        return _depth_scale(chi_q)
    root = math.sqrt(q_star)
    raw = abs(gaussian_expectation(lambda f: (f / root) * act.function(f) * act.derivative(f, act.function(f)),
                                   q_star, kinks=act.kinks))
    if raw == 0.0:
        return 0.0
    return 1.0 / -(math.log(sw2) + math.log(raw) - 0.5 * math.log(q_star))


def depth_scales(activation, weight_variance: float, bias_variance: float) -> DepthScales:
    """ξ_q and ξ_c with the fixed points and slopes they come from (Schoenholz et al. 2017).

    ξ_q = −1/ln χ_q with χ_q = χ1 + σ_w² E[φ''φ] at q* (their eq. 5); the E[φ''φ] term is
    computed by Gaussian integration by parts, χ_q = σ_w² E[z φ φ'] / √q*, which needs only φ'.
    ξ_c = −1/ln χ_c with χ_c the correlation map's slope at its stable fixed point c*, so it is
    right in the chaotic phase too (where c* < 1 and χ_c = σ_w² E[φ'(u1) φ'(u2)] at c*); at
    c* = 1, χ_c = χ1. Both are ``math.inf`` at criticality.

    When q* = 0 (σ_b² = 0 and the signal dies out) the correlation map normalized by the next
    layer's variance tends to one with slope 1 at c = 1, so c* = 1, χ_c = 1 and ξ_c = inf:
    correlations then approach 1 only polynomially, while gradients still vanish like χ1^depth.

    Parameters
    ----------
    activation, weight_variance, bias_variance
        As in :func:`variance_map`.

    Returns
    -------
    DepthScales
        With array fields of the broadcast shape when ``weight_variance`` or
        ``bias_variance`` is an array (NaN where q* is infinite; see :func:`phase_diagram`).

    Raises
    ------
    NoFixedPointError
        When the variance grows without bound (no q*).
    ValueError
        In the chaotic phase of an activation without a closed form when q* > 1e12 (the
        correlation quadrature's verified range; c* and ξ_c are then refused, χ1 is not).
    """
    if _is_array(weight_variance, bias_variance):
        return _depth_scales_array(_activation(activation), *_variance_arrays(weight_variance, bias_variance))
    act, sw2, sb2 = _map_arguments(activation, weight_variance, bias_variance)
    q_star = fixed_point(act, sw2, sb2)
    at_q_star = moments(act, q_star)
    chi_1 = sw2 * at_q_star.grad_second
    chi_q = sw2 * at_q_star.second_slope
    c_star = correlation_fixed_point(act, sw2, sb2, q=q_star)
    if q_star == 0.0:
        chi_c = 1.0
    elif c_star == 1.0:
        chi_c = chi_1
    else:
        chi_c = float(sw2 * joint_moments(act, q_star, np.array([c_star]))[1][0])
    return DepthScales(_variance_depth_scale(act, sw2, q_star, chi_q), _depth_scale(chi_c), q_star, c_star,
                       chi_1, chi_c, chi_q)


# --------------------------------------------------------------------------------------
# The edge of chaos
# --------------------------------------------------------------------------------------

_Q_GRID = np.concatenate([[0.0], np.geomspace(1e-10, 1e12, 177)])


def _stable(act, sw2: float, sb2: float, q: float, slope: float) -> bool:
    """Whether q is an attracting fixed point of the variance map (slope = its derivative there)."""
    if abs(slope - 1.0) > _CRITICAL_TOL:
        return slope < 1.0
    step = 1e-4 * max(q, 1.0)       # marginal: the next order decides; the map must pull back
    return _next_variance(act, sw2, sb2, q + step) < q + step


def critical_weight_variance(activation, bias_variance: float = 0.0) -> float:
    """σ_w² on the edge of chaos: χ1 = σ_w² E[φ'(√q* z)²] = 1 at the fixed point q*.

    Solved jointly with the fixed point: at criticality σ_w² = 1/E[φ'(√q z)²] and
    q = σ_w² E[φ(√q z)²] + σ_b², so q is the root of q − E[φ²]/E[φ'²] = σ_b², found with
    Brent's method after bracketing on a grid q ∈ {0} ∪ [1e-10, 1e12]. Of the roots, the first
    (smallest q) at which q is a stable fixed point of the variance map is returned.
    Results at σ_b² = 0: tanh 1, ELU 1, SELU 0.477, sigmoid 103.0; GELU, SiLU and softplus
    have none (where χ1 = 1 the fixed point is unstable and the variance explodes).
    ReLU, leaky ReLU and identity have χ1 = σ_w² (1 + a²)/2 for every q: their edge of chaos is
    the single point σ_w² = 2/(1 + a²), σ_b² = 0 (ReLU: exactly 2.0, He initialization).

    Parameters
    ----------
    activation : str, dict or Activation
    bias_variance : float
        σ_b² >= 0.

    Returns
    -------
    float or np.ndarray
        The critical σ_w² = fan_in · Var(Ω) (an array of the shape of ``bias_variance`` when it
        is an array).

    Raises
    ------
    ValueError
        When no critical point exists at this σ_b².
    """
    act = _activation(activation)
    if _is_array(bias_variance):
        _, sb2 = _variance_arrays(1.0, bias_variance)
        grid = _critical_grid(act)
        return _elementwise(lambda b: _critical_weight_variance(act, b, grid), sb2)
    return _critical_weight_variance(act, _bias_variance(bias_variance), _critical_grid(act))


def _critical_grid(act):
    """E[φ²] and E[φ'²] at every q of ``_Q_GRID`` (one vectorized quadrature; None for a closed form)."""
    return None if closed_form(act) is not None else moments_array(act, _Q_GRID)


def _critical_weight_variance(act, sb2: float, grid) -> float:
    """:func:`critical_weight_variance` at one σ_b², bracketing on ``grid`` (:func:`_critical_grid`)."""
    form = closed_form(act)
    if form is not None:
        if sb2 > 0.0:
            raise ValueError(
                f"{act!r} has no edge of chaos at bias_variance={sb2:g}: χ1 = σ_w²·{form.square:g} for every q, "
                f"and at σ_w² = {1.0 / form.square:g} any bias makes the variance grow without bound. "
                "Its only critical point is bias_variance=0."
            )
        return 1.0 / form.square
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = np.where(grid.grad_second > 0, _Q_GRID - grid.second / grid.grad_second - sb2, np.nan)

    def gap(q: float) -> float:
        m = moments(act, q)
        return q - m.second / m.grad_second - sb2

    for i in range(_Q_GRID.size - 1):
        left, right = gaps[i], gaps[i + 1]
        if not (np.isfinite(left) and np.isfinite(right)) or np.sign(left) * np.sign(right) > 0 or (left == 0 and i > 0):
            continue
        q = float(_Q_GRID[i]) if left == 0 else (float(_Q_GRID[i + 1]) if right == 0 else
                                               optimize.brentq(gap, _Q_GRID[i], _Q_GRID[i + 1], xtol=1e-300, rtol=1e-15))
        m = moments(act, q)
        sw2 = 1.0 / m.grad_second
        if _stable(act, sw2, sb2, q, sw2 * m.second_slope):
            return float(sw2)
    raise ValueError(
        f"{act!r} has no edge of chaos at bias_variance={sb2:g}: χ1 = σ_w² E[φ'(√q* z)²] does not reach 1 "
        "at any stable fixed point q* in [1e-10, 1e12]."
    )


def critical_line(activation, bias_variances) -> np.ndarray:
    """The critical σ_w² for each σ_b² in ``bias_variances`` (the order-to-chaos boundary).

    Parameters
    ----------
    activation : str, dict or Activation
    bias_variances : array_like, shape (n,)
        σ_b² values, each >= 0.

    Returns
    -------
    np.ndarray, shape (n,)

    Raises
    ------
    ValueError
        If any σ_b² has no critical point (see :func:`critical_weight_variance`).
    """
    act = _activation(activation)
    values = as_float_array(bias_variances, "bias_variances", dtype=np.float64)
    if values.ndim > 1:
        raise ValueError(f"bias_variances must be a 1-D sequence, got shape {values.shape}.")
    grid = _critical_grid(act)
    return np.array([_critical_weight_variance(act, _bias_variance(float(b)), grid) for b in values.reshape(-1)])


# --------------------------------------------------------------------------------------
# Arrays of σ_w² and σ_b²: the same maps over a whole grid at once
# --------------------------------------------------------------------------------------

def _is_array(*values) -> bool:
    """Whether any argument asks for the array path (an ndarray, list or tuple)."""
    return any(isinstance(value, (np.ndarray, list, tuple)) for value in values)


def _variance_arrays(weight_variance, bias_variance) -> tuple[np.ndarray, np.ndarray]:
    """σ_w² > 0 and σ_b² >= 0 as float64 arrays broadcast to one shape."""
    _refuse_booleans(weight_variance=weight_variance, bias_variance=bias_variance)
    sw2 = as_float_array(weight_variance, "weight_variance", dtype=np.float64)
    sb2 = as_float_array(bias_variance, "bias_variance", dtype=np.float64) + 0.0     # -0.0 is 0.0
    if (sw2 <= 0).any():
        raise ValueError(f"weight_variance must be > 0 everywhere, got {float(sw2[sw2 <= 0].flat[0]):g} "
                         "(σ_w² = fan_in · Var(Ω); He initialization for ReLU is 2.0).")
    if (sb2 < 0).any():
        raise ValueError(f"bias_variance must be >= 0 everywhere (it is Var(β)), got {float(sb2[sb2 < 0].flat[0]):g}.")
    try:
        sw2, sb2 = np.broadcast_arrays(sw2, sb2)
    except ValueError:
        raise ValueError(f"weight_variance of shape {sw2.shape} and bias_variance of shape {sb2.shape} do not "
                         "broadcast together; e.g. pass w[None, :] and b[:, None] for a grid.") from None
    if sw2.size > _MAX_POINTS:
        raise ValueError(f"weight_variance and bias_variance broadcast to shape {sw2.shape}, {sw2.size:,} points: more "
                         f"than the {_MAX_POINTS:,} (a 3162 × 3162 grid) the array forms compute at once, in memory "
                         "that grows with the points. Use a coarser grid, or compute it in parts.")
    return sw2, sb2


_MAX_POINTS = 10_000_000      # (σ_w², σ_b²) points of one array call: its work arrays hold ~50 numbers a point


def _refuse_booleans(**arrays) -> None:
    """A TypeError for an array of booleans (a single True/False is refused as a variance too)."""
    for name, value in arrays.items():
        if _dtype_of(value) == bool:
            raise TypeError(f"{name} must hold real numbers, got booleans (as a single True/False is refused); "
                            "convert them first if they mean 1.0/0.0, e.g. np.asarray(x, dtype=float).")


def _dtype_of(value):
    """The dtype NumPy would give ``value`` (None for what it cannot convert: as_float_array says why)."""
    try:
        return np.asarray(value).dtype
    except (ValueError, TypeError):
        return None


def _elementwise(function, *arrays: np.ndarray) -> np.ndarray:
    """``function`` of the scalars at each index of the (equal-shaped) arrays."""
    out = np.empty(arrays[0].shape)
    for index in np.ndindex(out.shape):
        out[index] = function(*(float(a[index]) for a in arrays))
    return out


def _walk(q0: float, step, stop) -> np.ndarray:
    """The variances the bracketing walk visits: q = step(q) from q0 until ``stop(q)``."""
    steps, q = [], q0
    while True:
        q = step(q)
        steps.append(q)
        if stop(q):
            return np.array(steps)


def _first(mask: np.ndarray) -> np.ndarray:
    """Index of the first True in each row of ``mask`` (its width where none is)."""
    return np.where(mask.any(axis=1), mask.argmax(axis=1), mask.shape[1])


_WALK_CHUNK = 6        # walk variances evaluated at once
_SUBDIVISIONS = 48     # shared sub-grid points per bracket for the Newton starting points


def _hermite_root(t, e0, e1, d0, d1, steps: int = 4):
    """Newton on the cubic Hermite interpolant of the excess on [0, 1] (ends e, slopes d·h)."""
    for _ in range(steps):
        t2, t3 = t * t, t * t * t
        value = (2 * t3 - 3 * t2 + 1) * e0 + (t3 - 2 * t2 + t) * d0 + (3 * t2 - 2 * t3) * e1 + (t3 - t2) * d1
        slope = (6 * t2 - 6 * t) * (e0 - e1) + (3 * t2 - 4 * t + 1) * d0 + (3 * t2 - 2 * t) * d1
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.clip(np.where(slope != 0.0, t - value / slope, t), 0.0, 1.0)
    return t


def _chebyshev_grid(low: float, high: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Chebyshev–Lobatto points in log q on [low, high] (ascending, ends exact) and their barycentric weights."""
    x = -np.cos(np.pi * np.arange(n + 1) / n)
    grid = np.exp(0.5 * (math.log(low) + math.log(high)) + 0.5 * (math.log(high) - math.log(low)) * x)
    grid[0], grid[-1] = low, high
    weights = np.where(np.arange(n + 1) % 2 == 0, 1.0, -1.0)
    weights[0] *= 0.5
    weights[-1] *= 0.5
    return grid, weights


def _barycentric(nodes: np.ndarray, weights: np.ndarray, table: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The polynomials through the columns of ``table`` (shape (n, m)) at ``nodes`` (n,), at ``at`` (r,).

    Returns shape (r, m); NaN in the rows where ``at`` is exactly a node (the callers keep
    their previous value there).
    """
    terms = at[:, None] - nodes[None, :]
    np.divide(weights, terms, out=terms)
    values = terms @ np.concatenate([table, np.ones((table.shape[0], 1))], axis=1)
    return values[:, :-1] / values[:, -1:]


def _starting_points(second_moments, sw2, sb2, low, high, active) -> np.ndarray:
    """q* of each active point to about 1e-13 (relative), from moments shared by its bracket.

    The moments E[φ(√q z)²] and their slope are computed once per bracket [low, high], on
    Chebyshev points in log q, so a whole grid of (σ_w², σ_b²) costs a few hundred Gaussian
    moments. Each point's root is first placed within about 1e-7 by a cubic interpolant of
    the excess between the two grid points that straddle it, then polished by one Newton
    step on the Chebyshev interpolant of the moments (accurate to rounding on a bracket of a
    factor 4 or 1000), so that Newton on the quadrature itself confirms it in one step.
    """
    q = np.empty(active.size)
    brackets, which = np.unique(low[active] + 1j * high[active], return_inverse=True)   # (low, high) pairs
    for b, bracket in enumerate(brackets):
        lo, hi = bracket.real, bracket.imag
        members = np.flatnonzero(which == b)
        rows = active[members]
        grid, weights = _chebyshev_grid(lo, hi, _SUBDIVISIONS)
        second, second_slope = second_moments(grid)
        w, s = sw2[rows], sb2[rows]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            gaps = w[:, None] * second[None, :]
            gaps += s[:, None]
            gaps -= grid[None, :]
            k = np.clip(_first(gaps <= 0.0), 1, grid.size - 1)      # gaps[k - 1] > 0 >= gaps[k]
            i = np.arange(rows.size)
            width = grid[k] - grid[k - 1]
            e0, e1 = gaps[i, k - 1], gaps[i, k]
            chord = np.clip(e0 / (e0 - e1), 0.0, 1.0)
            t = _hermite_root(np.where(np.isfinite(chord), chord, 0.5), e0, e1,
                              (w * second_slope[k - 1] - 1.0) * width, (w * second_slope[k] - 1.0) * width)
            guess = grid[k - 1] + t * width
            m = _barycentric(np.log(grid), weights, np.stack([second, second_slope], axis=1), np.log(guess))
            polished = guess - (w * m[:, 0] + s - guess) / (w * m[:, 1] - 1.0)
        q[members] = np.where(np.isfinite(polished) & (polished > lo) & (polished < hi), polished, guess)
    good = np.isfinite(q) & (q > low[active]) & (q < high[active])
    return np.where(good, q, np.sqrt(low[active]) * np.sqrt(high[active]))


def _fixed_points(act, sw2: np.ndarray, sb2: np.ndarray, q0: float = 1.0, tol: float = 1e-12,
                  max_iter: int = 200) -> np.ndarray:
    """:func:`fixed_point` at every (σ_w², σ_b²) of the flat arrays; ``inf`` where it raises."""
    return _fixed_points_and_slopes(act, sw2, sb2, q0, tol, max_iter)[0]


def _fixed_points_and_slopes(act, sw2: np.ndarray, sb2: np.ndarray, q0: float = 1.0, tol: float = 1e-12,
                             max_iter: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """q* and E[φ'(√q* z)²] at every (σ_w², σ_b²) of the flat arrays (q* = inf where it raises).

    The bracketing walk of the scalar function (from q0 by factors of 4 up, 1000 down) visits
    the same variances for every point, so the Gaussian moments are computed once on that
    walk and each point's bracket is read off; then safeguarded Newton steps on
    q − σ_w² E[φ(√q z)²] − σ_b² (whose slope, d E[φ²]/dq, is one of the moments) run on all
    points at once. They start from :func:`_starting_points` (about 1e-13 from the root), so
    the first step is usually already within the tolerance: the quadrature runs once per
    point, and that run is what the result and χ1 are checked against. A point that has not
    converged after ``max_iter`` steps is handed to the scalar function.
    """
    form = closed_form(act)
    if form is not None:
        slope = sw2 * form.square
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            steady = np.where(slope > 1.0, np.inf, sb2 / (1.0 - slope))
        at_one = np.abs(slope - 1.0) <= 1e-12
        beyond = np.flatnonzero((slope < 1.0) & ~at_one & ~np.isfinite(steady))
        if beyond.size:                    # q* exists but overflows float64, as the scalar call says
            raise _beyond_float(act, float(sw2[beyond[0]]), float(sb2[beyond[0]]))
        return np.where(at_one, np.where(sb2 == 0.0, q0, np.inf), steady), np.full(sw2.shape, form.square)

    def second_moments(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = moments_array(act, grid)
        return m.second, m.second_slope

    def excess_on(grid: np.ndarray, rows: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return sw2[rows, None] * moments_array(act, grid).second[None, :] + sb2[rows, None] - grid[None, :]

    n = sw2.size
    result = np.full(n, np.nan)
    low, high = np.full(n, q0), np.full(n, q0)
    low_gap, high_gap = np.zeros(n), np.zeros(n)
    start = excess_on(np.array([q0]), np.arange(n))[:, 0]
    result[start == 0.0] = q0
    with np.errstate(over="ignore"):
        ceiling = 1e15 * np.maximum(max(1.0, q0), np.maximum(sb2, sw2))

    rows = np.flatnonzero(start > 0.0)             # walk up by 4 until excess <= 0
    if rows.size:
        top = float(ceiling[rows].max())
        grid = _walk(q0, _step_up, lambda q: q > top or q == _Q_MAX)
        last_q, last_gap = np.full(rows.size, q0), start[rows]
        for first in range(0, grid.size, _WALK_CHUNK):          # only as high as some point needs
            if not rows.size:
                break
            chunk = grid[first:first + _WALK_CHUNK]
            gaps = excess_on(chunk, rows)
            k = _first(gaps <= 0.0)
            stop = _first((chunk[None, :] > ceiling[rows, None]) | (chunk[None, :] == _Q_MAX))
            bracketed = (k < chunk.size) & (k <= stop)
            ended = ~bracketed & (stop < chunk.size)
            found, kk = rows[bracketed], k[bracketed]
            high[found], high_gap[found] = chunk[kk], gaps[bracketed, kk]
            low[found] = np.where(kk > 0, chunk[np.maximum(kk - 1, 0)], last_q[bracketed])
            low_gap[found] = np.where(kk > 0, gaps[bracketed, np.maximum(kk - 1, 0)], last_gap[bracketed])
            unbounded = rows[ended]
            result[unbounded] = np.inf
            beyond = unbounded[(chunk[stop[ended]] == _Q_MAX) & (ceiling[unbounded] >= _Q_MAX)]
            if beyond.size:
                raise _beyond_float(act, float(sw2[beyond[0]]), float(sb2[beyond[0]]))
            going = ~bracketed & ~ended
            rows, last_q, last_gap = rows[going], np.full(int(going.sum()), chunk[-1]), gaps[going, -1]
    falling = np.flatnonzero(start < 0.0)
    if falling.size:                               # walk down by 1000 until excess >= 0
        grid = _walk(q0, lambda q: q / 1000.0, lambda q: q < 1e-300)
        gaps = excess_on(grid, falling)
        k = _first(gaps >= 0.0)
        bracketed = k < grid.size
        found, kk = falling[bracketed], k[bracketed]
        low[found], low_gap[found] = grid[kk], gaps[bracketed, kk]
        high[found] = np.where(kk > 0, grid[np.maximum(kk - 1, 0)], q0)
        high_gap[found] = np.where(kk > 0, gaps[bracketed, np.maximum(kk - 1, 0)], start[found])
        result[falling[~bracketed]] = 0.0
    on_grid = (low_gap == 0.0) | (high_gap == 0.0)
    exact = np.isnan(result) & on_grid
    result[exact] = np.where(high_gap[exact] == 0.0, high[exact], low[exact])

    rtol = max(tol, 4 * np.finfo(float).eps)
    active = np.flatnonzero(np.isnan(result))
    grad_second = np.full(n, np.nan)
    q = _starting_points(second_moments, sw2, sb2, low, high, active)
    for _ in range(max_iter):
        if not active.size:
            break
        m = moments_array(act, q)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            value = sw2[active] * m.second + sb2[active] - q
            newton = q - value / (sw2[active] * m.second_slope - 1.0)
        low[active] = np.where(value > 0.0, q, low[active])
        high[active] = np.where(value < 0.0, q, high[active])
        lo, hi = low[active], high[active]
        inside = np.isfinite(newton) & (newton > lo) & (newton < hi)
        bisected = np.where(hi / 4.0 > lo, np.sqrt(lo) * np.sqrt(hi), 0.5 * lo + 0.5 * hi)
        following = np.where(inside, newton, bisected)
        done = (value == 0.0) | (np.abs(following - q) <= rtol * following) | (hi - lo <= rtol * hi)
        result[active[done]] = np.where(value[done] == 0.0, q[done], following[done])
        grad_second[active[done]] = m.grad_second[done]       # at q, one step (< rtol·q) away
        active, q = active[~done], following[~done]
    for i in active:                                  # rare: leave it to Brent's method
        result[i] = fixed_point(act, float(sw2[i]), float(sb2[i]), q0, tol, max_iter)
    missing = np.flatnonzero(np.isnan(grad_second) & np.isfinite(result))
    if missing.size:                                  # found by the walk, zero, or by Brent
        grad_second[missing] = moments_array(act, result[missing]).grad_second
    return result, grad_second


def _chi1_at(act, sw2: np.ndarray, q: np.ndarray) -> np.ndarray:
    """σ_w² E[φ'(√q z)²] for flat arrays; NaN where q is infinite (no fixed point)."""
    finite = np.isfinite(q)
    grad_second = moments_array(act, np.where(finite, q, 1.0)).grad_second
    return np.where(finite, sw2 * grad_second, np.nan)


@dataclass(frozen=True)
class PhaseDiagram:
    """The order-to-chaos phase diagram on a grid of (σ_w², σ_b²).

    Attributes
    ----------
    weight_variance : np.ndarray, shape (n,)
        σ_w² of the columns.
    bias_variance : np.ndarray, shape (m,)
        σ_b² of the rows.
    q_star : np.ndarray, shape (m, n)
        Fixed point of the variance map; ``inf`` where the variance grows without bound.
    chi1 : np.ndarray, shape (m, n)
        σ_w² E[φ'(√q* z)²]; < 1 ordered, > 1 chaotic. For ReLU, leaky ReLU and identity it
        does not depend on q (see :func:`chi1`) and is given everywhere; otherwise NaN where
        q* is infinite.
    """

    weight_variance: np.ndarray
    bias_variance: np.ndarray
    q_star: np.ndarray
    chi1: np.ndarray


def phase_diagram(activation, weight_variances, bias_variances) -> PhaseDiagram:
    """q* and χ1 on the grid σ_w² × σ_b², all points at once (Poole et al. 2016, Fig. 4).

    This is the array path of :func:`fixed_point` and :func:`chi1`: those functions (and
    :func:`depth_scales`, :func:`variance_map`, :func:`correlation_fixed_point`) accept arrays
    of ``weight_variance`` and ``bias_variance`` that broadcast together, and return arrays of
    the broadcast shape. Each entry equals the scalar call's result to the root finder's
    tolerance (1e-12 relative), except that where the scalar call raises because the variance
    grows without bound, q* is ``inf`` (and χ1, for activations without a closed form, NaN).
    A 100×100 tanh grid takes a few tens of milliseconds.

    Parameters
    ----------
    activation : str, dict or Activation
    weight_variances : array_like, shape (n,)
        σ_w² values, each > 0.
    bias_variances : array_like, shape (m,)
        σ_b² values, each >= 0.

    Returns
    -------
    PhaseDiagram
    """
    act = _activation(activation)
    _refuse_booleans(weight_variances=weight_variances, bias_variances=bias_variances)
    w = as_float_array(weight_variances, "weight_variances", dtype=np.float64, ndim=1)
    b = as_float_array(bias_variances, "bias_variances", dtype=np.float64, ndim=1)
    sw2, sb2 = _variance_arrays(w[None, :], b[:, None])
    q_star, grad_second = _fixed_points_and_slopes(act, sw2.reshape(-1), sb2.reshape(-1))
    chi = sw2.reshape(-1) * grad_second
    if closed_form(act) is None:
        chi = np.where(np.isfinite(q_star), chi, np.nan)
    return PhaseDiagram(w.copy(), b.copy(), q_star.reshape(sw2.shape), chi.reshape(sw2.shape))


def _depth_scale_array(slope: np.ndarray) -> np.ndarray:
    """:func:`_depth_scale` elementwise (NaN stays NaN)."""
    size = np.abs(slope)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = -1.0 / np.log(size)
    scale = np.where(size >= 1.0 - _DEPTH_SCALE_TOL, np.inf, scale)
    return np.where(size == 0.0, 0.0, np.where(np.isnan(size), np.nan, scale))


def _depth_scales_array(act, sw2: np.ndarray, sb2: np.ndarray) -> DepthScales:
    """:func:`depth_scales` at every point of the (broadcast) arrays; NaN where q* is infinite."""
    w, b = sw2.reshape(-1), sb2.reshape(-1)
    q_star = _fixed_points(act, w, b)
    finite = np.isfinite(q_star)
    at_q_star = moments_array(act, np.where(finite, q_star, 1.0))
    chi_1 = np.where(finite, w * at_q_star.grad_second, np.nan)
    chi_q = np.where(finite, w * at_q_star.second_slope, np.nan)
    c_star, chi_c = np.full(w.shape, np.nan), np.full(w.shape, np.nan)
    dead = q_star == 0.0
    c_star[dead], chi_c[dead] = 1.0, 1.0
    for i in np.flatnonzero(finite & ~dead):
        q, m = float(q_star[i]), Moments(*(float(getattr(at_q_star, f)[i]) for f in Moments.__dataclass_fields__))
        slope = float(w[i]) * q * m.grad_second / _next_layer_variance(act, float(w[i]), float(b[i]), q)
        if slope <= 1.0 + _CRITICAL_TOL:
            c_star[i], chi_c[i] = 1.0, chi_1[i]
        else:
            c_star[i] = correlation_fixed_point(act, float(w[i]), float(b[i]), q=q)
            chi_c[i] = float(w[i] * joint_moments(act, q, np.array([c_star[i]]))[1][0])
    xi_q = _depth_scale_array(chi_q)
    for i in np.flatnonzero((chi_q == 0.0) & (q_star > 0.0) & finite):
        xi_q[i] = _variance_depth_scale(act, float(w[i]), float(q_star[i]), 0.0)
    fields = (xi_q, _depth_scale_array(chi_c), q_star, c_star, chi_1, chi_c, chi_q)
    return DepthScales(*(array.reshape(sw2.shape) for array in fields))


# --------------------------------------------------------------------------------------
# Per-layer predictions for a concrete network
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerStatistics:
    """What the mean-field prediction needs of one dense layer f = β + Ω h, h' = a[f].

    Attributes
    ----------
    activation : Activation
    weight_variance : float
        Var(Ω) of one entry (σ²_Ω), *not* fan_in · Var(Ω).
    bias_variance : float
        Var(β).
    fan_in, fan_out : int
        Ω has shape (fan_out, fan_in).
    """

    activation: activations.Activation
    weight_variance: float
    bias_variance: float
    fan_in: int
    fan_out: int


@dataclass(frozen=True)
class PredictedStd:
    """Mean-field standard deviations per layer, in layer order.

    Attributes
    ----------
    preactivation_std : np.ndarray, shape (K + 1,)
        std of f_0, ..., f_K (f_K is the output pre-activation).
    activation_std : np.ndarray, shape (K,)
        std of h_1, ..., h_K (not zero-mean for ReLU: Var(h) = E[φ²] − E[φ]²).
    backward_std : np.ndarray, shape (K + 1,)
        std of dL/df_0, ..., dL/df_K.
    """

    preactivation_std: np.ndarray
    activation_std: np.ndarray
    backward_std: np.ndarray

    def __repr__(self) -> str:
        from .display import predicted_std_text
        return predicted_std_text(self)

    def _repr_html_(self) -> str:  # Jupyter
        from .display import predicted_std_html
        return predicted_std_html(self)


_SPEC_KEYS = ("activation", "weight_variance", "bias_variance", "fan_in", "fan_out")


def _spec_entry(entry, index: int) -> dict:
    if isinstance(entry, Mapping):
        unknown = set(entry) - set(_SPEC_KEYS)
        if unknown:
            raise ValueError(f"layer {index} of the spec has unknown keys {sorted(unknown)}; valid keys: {list(_SPEC_KEYS)}.")
        fields = dict(entry)
    elif isinstance(entry, (tuple, list)) and 2 <= len(entry) <= 5:
        fields = dict(zip(_SPEC_KEYS, entry))
    else:
        raise TypeError(
            f"layer {index} of the spec must be a dict with keys {list(_SPEC_KEYS)} or a tuple "
            f"(activation, weight_variance[, bias_variance[, fan_in[, fan_out]]]), got {entry!r}."
        )
    if "weight_variance" not in fields:
        raise ValueError(f"layer {index} of the spec needs a weight_variance (Var(Ω) per entry).")
    fields["activation"] = _activation(fields.get("activation"))
    fields["weight_variance"] = _real(fields["weight_variance"], f"layers[{index}].weight_variance", low=0.0)
    fields["bias_variance"] = _real(fields.get("bias_variance", 0.0) or 0.0, f"layers[{index}].bias_variance", low=0.0)
    for key in ("fan_in", "fan_out"):
        if fields.get(key) is not None:
            fields[key] = check_positive_int(fields[key], f"layers[{index}].{key}")
        else:
            fields[key] = None
    return fields


def _layers_from_spec(spec: Sequence, input_dim) -> list[LayerStatistics]:
    entries = [_spec_entry(entry, i) for i, entry in enumerate(spec)]
    if not entries:
        raise ValueError("the network spec is empty; give at least one layer.")
    if input_dim is not None:
        input_dim = check_positive_int(input_dim, "input_dim")
    first = entries[0]["fan_in"]
    if first is not None and input_dim is not None and first != input_dim:
        raise ValueError(f"input_dim={input_dim} disagrees with the first layer's fan_in={first}.")
    sizes = [first if first is not None else input_dim]
    if sizes[0] is None:
        raise ValueError("the first layer needs a fan_in: give it in the spec or pass input_dim=.")
    for k, entry in enumerate(entries):
        following = entries[k + 1]["fan_in"] if k + 1 < len(entries) else None
        own = entry["fan_out"]
        if own is not None and following is not None and own != following:
            raise ValueError(f"layer {k} has fan_out={own} but layer {k + 1} has fan_in={following}.")
        size = own if own is not None else following
        if size is None:
            where = "the last layer's fan_out (the output size)" if k + 1 == len(entries) else \
                f"layer {k}'s fan_out or layer {k + 1}'s fan_in"
            raise ValueError(f"the spec does not give {where}; the backward prediction needs it.")
        sizes.append(size)
    return [LayerStatistics(e["activation"], e["weight_variance"], e["bias_variance"], sizes[k], sizes[k + 1])
            for k, e in enumerate(entries)]


def _layers_from_net(net, input_dim) -> list[LayerStatistics]:
    linears, acts = list(net.linears), list(net.layer_activations)
    if not linears or len(linears) != len(acts):
        raise ValueError(
            f"net.linears ({len(linears)}) and net.layer_activations ({len(acts)}) must be non-empty "
            "and of equal length (one activation per Linear, the last being the output's)."
        )
    layers = []
    for k, (linear, act) in enumerate(zip(linears, acts)):
        weight = as_float_array(linear.weight.data, f"net.linears[{k}].weight", dtype=np.float64)
        if weight.ndim != 2 or weight.size == 0:
            raise ValueError(f"net.linears[{k}].weight must be a non-empty (D_out, D_in) matrix, got shape {weight.shape}.")
        bias = getattr(linear, "bias", None)
        bias_variance = 0.0 if bias is None else \
            float(np.var(as_float_array(bias.data, f"net.linears[{k}].bias", dtype=np.float64)))
        if layers and layers[-1].fan_out != weight.shape[1]:
            raise ValueError(f"net.linears[{k}] expects {weight.shape[1]} inputs but layer {k - 1} gives {layers[-1].fan_out}.")
        layers.append(LayerStatistics(_activation(act), float(np.var(weight)), bias_variance,
                                      weight.shape[1], weight.shape[0]))
    if input_dim is not None and check_positive_int(input_dim, "input_dim") != layers[0].fan_in:
        raise ValueError(f"input_dim={input_dim} disagrees with the net's first layer, which takes {layers[0].fan_in}.")
    return layers


def predicted_std(net_or_spec, input_variance: float = 1.0, *, input_dim: int | None = None,
                  grad_output_variance: float = 1.0) -> PredictedStd:
    """Mean-field prediction of the per-layer stds a probe measures at initialization.

    Forward (h_0 = x zero-mean with Var(x_i) = ``input_variance``)::

        Var(f_0)     = D_0 Var(Ω_0) Var(x) + Var(β_0)
        Var(f_k)     = D_k Var(Ω_k) E[φ_{k−1}(f_{k−1})²] + Var(β_k)      (D_k = fan_in of Ω_k)
        Var(h_{k+1}) = E[φ_k(f_k)²] − E[φ_k(f_k)]²

    Backward (dL/d output with variance ``grad_output_variance``; a_K the output activation)::

        Var(dL/df_K) = E[a_K'(f_K)²] Var(dL/d output)
        Var(dL/df_k) = E[φ_k'(f_k)²] · D_{k+2} Var(Ω_{k+1}) · Var(dL/df_{k+1})

    D_{k+2} is the fan-*out* of Ω_{k+1}: dL/dh_{k+1} = Ω_{k+1}ᵀ dL/df_{k+1} sums over its rows.
    Expectations are over f ~ N(0, Var(f)), so the prediction assumes zero-mean i.i.d. weights
    and biases; finite-width fluctuations around it shrink like 1/width.

    Parameters
    ----------
    net_or_spec : network or sequence of layer specs
        A network with ``net.linears`` (each with ``.weight.data`` of shape (D_out, D_in) and
        ``.bias.data`` of shape (D_out,) or ``bias = None``) and ``net.layer_activations`` (one
        Activation per Linear, the last being the output activation): the empirical Var(Ω) and
        Var(β) of each layer are used. Or a list with one entry per layer, each a dict with keys
        ``activation``, ``weight_variance`` (Var(Ω) per entry, σ²_Ω — *not* σ_w²),
        ``bias_variance`` (default 0), ``fan_in``, ``fan_out``, or a tuple in that order.
        fan_in may be left out where the previous layer gives its fan_out (or ``input_dim``
        for the first layer), fan_out where the next layer gives its fan_in; the last layer
        needs its fan_out.
    input_variance : float
        Var(x_i) of the zero-mean input, >= 0.
    input_dim : int, optional
        D_0 for a spec whose first layer has no fan_in (checked against a net).
    grad_output_variance : float
        Var(dL/d output), >= 0.

    Returns
    -------
    PredictedStd
    """
    input_variance = _real(input_variance, "input_variance", low=0.0)
    grad_output_variance = _real(grad_output_variance, "grad_output_variance", low=0.0)
    if hasattr(net_or_spec, "linears") and hasattr(net_or_spec, "layer_activations"):
        layers = _layers_from_net(net_or_spec, input_dim)
    elif isinstance(net_or_spec, Sequence) and not isinstance(net_or_spec, (str, bytes)):
        layers = _layers_from_spec(net_or_spec, input_dim)
    else:
        raise TypeError(
            "net_or_spec must be a network with .linears and .layer_activations, or a list of layer "
            f"specs (dicts or tuples), got {type(net_or_spec).__name__}."
        )
    variances, activation_variances, layer_moments = [], [], []
    second = input_variance                          # E[h_0²]
    for layer in layers:
        q = layer.fan_in * layer.weight_variance * second + layer.bias_variance
        m = moments(layer.activation, q) if math.isfinite(q) else Moments(math.inf, math.inf, math.inf, math.inf)
        variances.append(q)
        layer_moments.append(m)
        activation_variances.append(max(m.second - m.mean**2, 0.0) if math.isfinite(m.second) else math.inf)
        second = m.second
    gradients = [grad_output_variance * layer_moments[-1].grad_second]
    for k in range(len(layers) - 2, -1, -1):
        following = layers[k + 1]
        gradients.append(layer_moments[k].grad_second * following.fan_out * following.weight_variance * gradients[-1])
    with np.errstate(invalid="ignore", over="ignore"):
        return PredictedStd(
            preactivation_std=np.sqrt(np.array(variances, dtype=np.float64)),
            activation_std=np.sqrt(np.array(activation_variances[:-1], dtype=np.float64)),
            backward_std=np.sqrt(np.array(gradients[::-1], dtype=np.float64)),
        )


__all__ = [
    "DepthScales", "LayerStatistics", "NoFixedPointError", "PhaseDiagram", "PredictedStd", "chi1",
    "correlation_fixed_point", "phase_diagram",
    "correlation_map", "critical_line", "critical_weight_variance", "depth_scales",
    "fixed_point", "gaussian_expectation", "predicted_std", "variance_map",
]


# residual networks and batch norm (depthlab.signal.residual_theory) read as dl.theory.NAME too
_RESIDUAL_NAMES = ("residual_variance", "residual_gradient_variance", "batchnorm_gradient_growth",
                   "BATCHNORM_GRADIENT_GROWTH")


def __getattr__(name: str):
    if name in _RESIDUAL_NAMES:
        from . import residual_theory
        return getattr(residual_theory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
