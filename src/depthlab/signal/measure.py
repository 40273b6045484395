"""The numbers the instruments share: stds safe for huge or tiny values, growth rates, verdict rules.

Used by :func:`depthlab.probe` on plain MLPs and on networks of blocks; each function works on
plain arrays or lists of floats.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .._fast.buffers import ones

__all__ = ["square_sum", "mean_std", "constant_columns", "frobenius_norm", "max_derivative", "ratio", "first_crossing",
           "growth_rate", "format_number", "percent", "json_safe"]


def square_sum(a: np.ndarray) -> float | None:
    """Σx² over every entry of a float32 or float64 array, one BLAS dot product in its own
    dtype: :func:`mean_std`'s first pass, taken early (the probe takes it while the pass that
    made ``a`` still has it in cache). None for another dtype (mean_std converts those first)."""
    if a.dtype != np.float64 and a.dtype != np.float32:
        return None
    flat = a.reshape(-1)
    return float(np.vdot(flat, flat))


def mean_std(a: np.ndarray, total: float | None = None, squares: float | None = None) -> tuple[float, float]:
    """Mean and population std over every entry (as ``np.std``), safe for huge or tiny values.

    One pass for Σx² and one for Σx (no temporary array); where the two nearly cancel
    (|mean| ≫ std) or the squares leave the float range, it falls back to the two-pass
    formula on rescaled deviations. ``total`` is Σx computed from smaller arrays (the probe
    sums it from column sums and bias gradients); it saves the pass for Σx where the mean is
    at most ~10× the std, so that its rounding (that of the arrays it came from) cannot reach
    the std. ``squares`` is :func:`square_sum` of ``a``, if already taken.
    """
    flat = a.reshape(-1)
    if flat.dtype == np.float32:
        quick = _mean_std_float32(flat, total, squares)
        if quick is not None:
            return quick
    if flat.dtype != np.float64:
        flat, squares = flat.astype(np.float64), None
    n = flat.size
    second = (float(np.vdot(flat, flat)) if squares is None else squares) / n
    if total is not None:
        mean = float(total) / n
        variance = second - mean * mean
        if math.isfinite(second) and 1e-280 < second and variance > 1e-2 * second:
            return mean, math.sqrt(variance)
    mean = float(flat.sum()) / n
    if not math.isfinite(mean):
        return mean, float("nan") if math.isnan(mean) else float("inf")
    variance = second - mean * mean
    if math.isfinite(second) and 1e-280 < second and variance > 1e-6 * second:
        return mean, math.sqrt(variance)
    deviation = flat - mean
    largest = float(np.max(np.abs(deviation)))
    if largest == 0.0:
        return mean, 0.0
    deviation /= largest
    return mean, largest * math.sqrt(float(np.vdot(deviation, deviation)) / n)


def _mean_std_float32(flat: np.ndarray, total: float | None, squares: float | None) -> tuple[float, float] | None:
    """:func:`mean_std` of a float32 vector without a float64 copy, or None to take that path.

    Σx² and Σx come from BLAS dot products in float32 (their lanes of partial sums keep the
    relative error near 1e-7 here, far below the float32 network's own rounding). That is
    accurate enough only where the mean is at most ~10× smaller than the std and nothing
    under- or overflows; elsewhere the float64 path decides.
    """
    n = flat.size
    second = (float(np.vdot(flat, flat)) if squares is None else squares) / n
    mean = (float(total) if total is not None else float(np.dot(flat, ones(n, flat.dtype)))) / n
    variance = second - mean * mean
    if math.isfinite(second) and 1e-30 < second and variance > 1e-2 * second:
        return mean, math.sqrt(variance)
    return None


def constant_columns(h: np.ndarray) -> bool:
    """Whether every unit (column) of h takes one value on the whole batch."""
    return bool((h[1] == h[0]).all() and (h == h[0]).all())


def frobenius_norm(a: np.ndarray) -> float:
    """Frobenius norm, safe for huge or tiny values (rescaled by max |a| where Σa² would
    leave the float64 range, and for float32, whose Σa² BLAS would accumulate in float32)."""
    if a.dtype == np.float64:
        flat = a.reshape(-1)
        square = float(np.vdot(flat, flat))
        if 1e-280 < square < math.inf:
            return math.sqrt(square)
    largest = float(np.max(np.abs(a))) if a.size else 0.0
    if largest == 0.0 or not math.isfinite(largest):
        return largest
    scaled = a.reshape(-1) / largest
    return largest * math.sqrt(float(np.vdot(scaled, scaled)))


@functools.lru_cache(maxsize=None)
def max_derivative(activation) -> float:
    """max over the reals of |a'(f)| (on a dense grid of [-30, 30])."""
    grid = np.linspace(-30.0, 30.0, 60001)
    return float(np.max(np.abs(activation.derivative(grid, activation.function(grid)))))


def ratio(a: float, b: float) -> float | None:
    """a / b, or None where b is 0 or either is not finite."""
    if b == 0 or not math.isfinite(b) or not math.isfinite(a):
        return None
    return a / b


def _logs(stds: list[float]) -> list[float]:
    """ln(std_k / std_0), with NaN (overflowed) read as +inf."""
    reference = stds[0]
    return [math.inf if math.isnan(s) else (math.log(s / reference) if s > 0 else -math.inf)
            for s in stds]


def first_crossing(stds: list[float], t: dict):
    """(direction, layer where it starts) for a std sequence, or None; ``stds[0]`` is the reference.

    The rule (thresholds ``t`` as :data:`depthlab.signal.probe.THRESHOLDS`): the first k where
    |ln(std_k / std_0)| > ln(explode_factor) and also > k ln(rate); it starts one after the last
    layer before k whose std was within ×start_factor of std_0.
    """
    if len(stds) < 2 or not (stds[0] > 0 and math.isfinite(stds[0])):
        return None
    limit, rate, start = math.log(t["explode_factor"]), math.log(t["rate"]), math.log(t["start_factor"])
    logs = _logs(stds)
    for k in range(1, len(logs)):
        if abs(logs[k]) > limit and abs(logs[k]) / k > rate:
            calm = max(j for j in range(k) if abs(logs[j]) <= start)
            return ("exploding" if logs[k] > 0 else "vanishing"), calm + 1
    return None


def growth_rate(stds: list[float], first: int, last: int) -> float:
    """Geometric-mean growth per layer from stds[first] to stds[last] (over finite values)."""
    logs = _logs(stds)
    while last > first + 1 and not math.isfinite(logs[last]):
        last -= 1
    if last <= first or not math.isfinite(logs[last]):
        return math.inf if logs[last] > 0 else 0.0
    return math.exp((logs[last] - logs[first]) / (last - first))


def format_number(value, width: int = 9) -> str:
    """A table cell: 4 significant digits, scientific outside [1e-3, 1e5), "—" for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = "—"
    elif isinstance(value, str):
        text = value
    elif value == 0:
        text = "0"
    elif 1e-3 <= abs(value) < 1e5:
        text = f"{value:.4g}"
    else:
        text = f"{value:.3e}"
    return text.rjust(width)


def percent(value) -> str:
    """A fraction as "12%", "—" for None."""
    return "—" if value is None else f"{100 * value:.0f}%"


def json_safe(value):
    """``value`` with every non-finite float (in nested dicts and lists) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
