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
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from ..nn import activations
from .._checks import as_float_array, check_positive_int, check_real
from .gaussian import Q_TINY, Moments, closed_form, gaussian_expectation, joint_moments, moments

_CRITICAL_TOL = 1e-9     # |χ - 1| below this counts as critical


# --------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------

def _activation(spec) -> activations.Activation:
    return activations.get(spec)


def _weight_variance(value) -> float:
    value = check_real(value, "weight_variance")
    if value <= 0:
        raise ValueError(
            f"weight_variance must be > 0, got {value:g}. It is σ_w² = fan_in · Var(Ω): "
            "He initialization for ReLU is weight_variance=2.0, LeCun's is 1.0."
        )
    return value


def _bias_variance(value) -> float:
    value = check_real(value, "bias_variance")
    if value < 0:
        raise ValueError(f"bias_variance must be >= 0 (it is Var(β)), got {value:g}; use 0.0 for zero biases.")
    return value


def _variance(value, name: str, *, allow_zero: bool) -> float:
    value = check_real(value, name)
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
        q_0, ..., q_depth. Entries become ``inf`` once the variance overflows float64.
    """
    act, sw2, sb2 = _map_arguments(activation, weight_variance, bias_variance)
    q = _variance(q0, "q0", allow_zero=False)
    depth = check_positive_int(depth, "depth", minimum=0)
    out = np.empty(depth + 1)
    out[0] = q
    for layer in range(1, depth + 1):
        q = _next_variance(act, sw2, sb2, q)
        out[layer] = q
    return out


def _unbounded(act, sw2, sb2, why: str) -> ValueError:
    return ValueError(
        f"no finite fixed point for {act!r} at weight_variance={sw2:.10g}, bias_variance={sb2:.10g}: "
        f"the signal grows without bound ({why}). Lower weight_variance: an activation that grows "
        "like |f| explodes once σ_w² E[φ(√q z)²] / q > 1 at large q (σ_w² > 2 for ReLU, ELU, GELU, "
        "SiLU, softplus), ReLU also at σ_w² = 2 with bias_variance > 0."
    )


def fixed_point(activation, weight_variance: float, bias_variance: float, q0: float = 1.0,
                tol: float = 1e-12, max_iter: int = 200) -> float:
    """The fixed point q* = σ_w² E[φ(√q* z)²] + σ_b² that the variance map reaches from q0.

    The fixed point is bracketed by walking from q0 in the direction the map moves (factors
    of 4 up, 1000 down) and refined with Brent's method, so it converges fast even near
    criticality, where plain iteration crawls.

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
    float
        q* >= 0. It is 0.0 when the signal dies out (σ_b² = 0 and φ(0) = 0 in the ordered
        phase, e.g. tanh with σ_w² <= 1). For ReLU, leaky ReLU and identity with σ_b² = 0 at
        their critical σ_w² (2 for ReLU) every q is a fixed point and q0 is returned.

    Raises
    ------
    ValueError
        When there is no finite fixed point: the variance grows without bound (e.g. ReLU with
        σ_w² > 2, or σ_w² = 2 with σ_b² > 0; GELU/ELU/SiLU/softplus above σ_w² ≈ 2).
    """
    act, sw2, sb2 = _map_arguments(activation, weight_variance, bias_variance)
    q0 = _variance(q0, "q0", allow_zero=False)
    tol = check_real(tol, "tol", low=0.0, low_open=True)
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
        return sb2 / (1.0 - slope)

    def excess(q: float) -> float:
        return _next_variance(act, sw2, sb2, q) - q

    start = excess(q0)
    if start == 0.0:
        return q0
    if start > 0.0:
        ceiling = 1e15 * max(1.0, q0, sb2, sw2)
        low, high = q0, 4.0 * q0
        while (value := excess(high)) > 0.0:
            if high > ceiling:
                raise _unbounded(act, sw2, sb2, f"q_(k+1) > q_k for every q up to {ceiling:g}")
            low, high = high, 4.0 * high
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
    float
    """
    act, sw2, sb2 = _map_arguments(activation, weight_variance, bias_variance)
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
    act, sw2, sb2 = _map_arguments(activation, weight_variance, bias_variance)
    array = _correlations(c)
    q = _q_or_fixed_point(act, sw2, sb2, q)
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
    float
    """
    act, sw2, sb2 = _map_arguments(activation, weight_variance, bias_variance)
    q = _q_or_fixed_point(act, sw2, sb2, q)
    if q == 0.0:
        return 1.0
    q_next = _next_layer_variance(act, sw2, sb2, q)
    slope = _slope_at_one(act, sw2, q, q_next)
    if slope <= 1.0 + _CRITICAL_TOL:
        return 1.0

    def excess(c):
        return _correlation_values(act, sw2, sb2, q, np.atleast_1d(np.asarray(c, dtype=float))) - c

    # Near c = 1 the gap is (slope − 1)(c − 1) < 0 plus rounding noise (~1e-13): search only
    # where the true gap exceeds the noise, ending at c_max where it is −_C_RESOLUTION.
    c_max = 1.0 - _C_RESOLUTION / (slope - 1.0)
    grid = np.append(_C_GRID[_C_GRID < c_max], c_max)
    gaps = excess(grid)
    nonnegative = np.flatnonzero(gaps >= 0.0)
    if nonnegative.size == 0:     # the map sends 0 to >= 0; only rounding makes gaps[0] < 0
        return 0.0
    i = int(nonnegative[-1])
    if gaps[i] == 0.0 or i == grid.size - 1:
        return float(grid[i])
    return float(optimize.brentq(lambda c: float(excess(c)[0]), grid[i], grid[i + 1], xtol=1e-15))


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

    def __repr__(self) -> str:
        from .display import depth_scales_text
        return depth_scales_text(self)

    def _repr_html_(self) -> str:  # Jupyter
        from .display import depth_scales_html
        return depth_scales_html(self)


def _depth_scale(slope: float) -> float:
    """−1 / ln|χ|; inf for |χ| >= 1 (criticality), 0 for χ = 0."""
    size = abs(slope)
    if size >= 1.0 - 1e-15:
        return math.inf
    if size == 0.0:
        return 0.0
    return -1.0 / math.log(size)


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
    """
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
    return DepthScales(_depth_scale(chi_q), _depth_scale(chi_c), q_star, c_star, chi_1, chi_c, chi_q)


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
    float
        The critical σ_w² = fan_in · Var(Ω).

    Raises
    ------
    ValueError
        When no critical point exists at this σ_b².
    """
    act = _activation(activation)
    sb2 = _bias_variance(bias_variance)
    form = closed_form(act)
    if form is not None:
        if sb2 > 0.0:
            raise ValueError(
                f"{act!r} has no edge of chaos at bias_variance={sb2:g}: χ1 = σ_w²·{form.square:g} for every q, "
                f"and at σ_w² = {1.0 / form.square:g} any bias makes the variance grow without bound. "
                "Its only critical point is bias_variance=0."
            )
        return 1.0 / form.square
    grid = [moments(act, q) for q in _Q_GRID]
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = np.array([q - m.second / m.grad_second - sb2 if m.grad_second > 0 else np.nan
                         for q, m in zip(_Q_GRID, grid)])

    def gap(q: float) -> float:
        m = moments(act, q)
        return q - m.second / m.grad_second - sb2

    for i in range(_Q_GRID.size - 1):
        left, right = gaps[i], gaps[i + 1]
        if not (np.isfinite(left) and np.isfinite(right)) or left * right > 0 or (left == 0 and i > 0):
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
    values = np.asarray(bias_variances, dtype=np.float64)
    if values.ndim > 1:
        raise ValueError(f"bias_variances must be a 1-D sequence, got shape {values.shape}.")
    return np.array([critical_weight_variance(act, float(b)) for b in values.reshape(-1)])


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
    fields["weight_variance"] = check_real(fields["weight_variance"], f"layers[{index}].weight_variance", low=0.0)
    fields["bias_variance"] = check_real(fields.get("bias_variance", 0.0) or 0.0, f"layers[{index}].bias_variance", low=0.0)
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
    input_variance = check_real(input_variance, "input_variance", low=0.0)
    grad_output_variance = check_real(grad_output_variance, "grad_output_variance", low=0.0)
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
    "DepthScales", "LayerStatistics", "PredictedStd", "chi1", "correlation_fixed_point",
    "correlation_map", "critical_line", "critical_weight_variance", "depth_scales",
    "fixed_point", "gaussian_expectation", "predicted_std", "variance_map",
]
