"""Weight initializers: the values of Ω_k and β_k before training.

Every initializer is a function ``name(shape, *, rng=None, dtype="float64", fan_in=None,
fan_out=None, **hyperparameters)`` that returns a new array of ``shape`` and ``dtype``. The
seeds' layer computes f_k = β_k + Ω_k h_k with Ω_k of shape ``(D_out, D_in)`` (PyTorch's
layout), so for a 2-D shape fan_in = ``shape[1]`` and fan_out = ``shape[0]``; for more
dimensions both are multiplied by the receptive field ``prod(shape[2:])``, as PyTorch does. A
bias β_k of shape ``(D_out,)`` has no fans of its own: its layer passes the weight's
``fan_in``/``fan_out`` explicitly. Explicit fans always override the ones read off the shape.

The scaled schemes are settings of one formula, a zero-mean normal or uniform draw of standard
deviation std (a uniform on [-√3·std, √3·std] has that std):

=================  ====================================  ==================
scheme             std                                   PyTorch / Keras
=================  ====================================  ==================
xavier / glorot    gain · sqrt(2 / (fan_in + fan_out))   xavier_*_
kaiming / he       gain / sqrt(fan_mode)                 kaiming_*_
lecun              1 / sqrt(fan_in)                      Keras lecun_*
variance_scaling   sqrt(scale / fan_mode)                Keras VarianceScaling
=================  ====================================  ==================

with ``gain = calculate_gain(nonlinearity)``. A number σ²_Ω given to :func:`get` means the
seeds' N(0, σ²_Ω), e.g. ``get(2 / 80)`` for He's σ²_Ω = 2/D at D = 80.

Randomness comes only from ``rng`` (an ``np.random.Generator`` or an int seed). Values are
drawn in float64 and then cast, so float32 and float64 draws from the same seed agree up to
float32 rounding.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import math
import numbers
from collections.abc import Callable, Mapping

import numpy as np
from scipy import special

from . import activations as _activations
from .._checks import check_fits_in_memory, check_positive_int, check_real, lookup, resolve_dtype, resolve_rng

Array = np.ndarray
_PROTOCOL = ("rng", "dtype", "fan_in", "fan_out")


# --------------------------------------------------------------------------- shapes and fans

def _check_shape(shape) -> tuple[int, ...]:
    """A tuple of positive ints from a shape (or a single int for a 1-D shape)."""
    if type(shape) is tuple and all(type(d) is int and d > 0 for d in shape):   # the common case, checked fast
        check_fits_in_memory(math.prod(shape), 8, f"an initializer's array of shape {shape}", "use a smaller shape")
        return shape
    if isinstance(shape, (numbers.Integral, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints such as (D_out, D_in), got "
                        f"{type(shape).__name__} {shape!r}.") from None
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (numbers.Integral, np.integer)) or d < 1:
            raise ValueError(f"shape must hold positive ints, got {dims!r}; a dense weight Ω has "
                             "shape (D_out, D_in) and a bias β has shape (D_out,).")
    dims = tuple(int(d) for d in dims)
    check_fits_in_memory(math.prod(dims), 8, f"an initializer's array of shape {dims}", "use a smaller shape")
    return dims


def fans(shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight shape, PyTorch's rule.

    Parameters
    ----------
    shape : tuple of int
        ``(D_out, D_in)`` for a dense weight Ω, or ``(D_out, D_in, *kernel)``.

    Returns
    -------
    (int, int)
        ``(D_in · r, D_out · r)`` with receptive field r = ``prod(shape[2:])`` (1 for 2-D).
    """
    dims = _check_shape(shape)
    if len(dims) < 2:
        raise ValueError(
            f"fans need a shape with at least 2 dimensions (D_out, D_in), got {dims}. A bias "
            "(D_out,) has no fans of its own: pass fan_in=/fan_out= of its layer's weight."
        )
    receptive = math.prod(dims[2:])
    return dims[1] * receptive, dims[0] * receptive


def _resolve_fans(dims, fan_in, fan_out) -> dict[str, int | None]:
    """Explicit fans (checked) over shape-derived ones; None where neither exists."""
    derived = fans(dims) if len(dims) >= 2 else (None, None)
    given = {"fan_in": fan_in, "fan_out": fan_out}
    return {key: derived_value if given[key] is None else _check_fan(given[key], key)
            for key, derived_value in zip(given, derived)}


MAX_FAN = 2 ** 62  # more inputs than any array can index


def _check_fan(value, key: str) -> int:
    value = check_positive_int(value, key)
    if value > MAX_FAN:
        raise ValueError(f"{key} must be at most 2**62 (a layer's number of inputs or outputs), got a "
                         f"{len(str(value))}-digit number.")
    return value


def _need_fans(initializer: str, dims, fan_in, fan_out, *needed: str) -> dict[str, int]:
    values = _resolve_fans(dims, fan_in, fan_out)
    missing = [key for key in needed if values[key] is None]
    if missing:
        raise ValueError(
            f"{initializer} needs {' and '.join(missing)}, but shape {dims} has fewer than 2 "
            "dimensions (a bias has no fans of its own). Pass fan_in= and fan_out= of the "
            f"layer's weight, e.g. {initializer}(({dims[0] if dims else 'D_out'},), "
            "fan_in=D_in, fan_out=D_out)."
        )
    return values


def _prepare(shape, rng, dtype, fan_in, fan_out):
    """Check the arguments every initializer shares; return ``(dims, dtype)``."""
    dims = _check_shape(shape)
    if rng is not None:
        resolve_rng(rng)
    _resolve_fans(dims, fan_in, fan_out)
    return dims, resolve_dtype(dtype)


# --------------------------------------------------------------------------- the sampling core

def _standard_normal(generator: np.random.Generator, dims) -> Array:
    return generator.standard_normal(dims)


def _standard_uniform(generator: np.random.Generator, dims) -> Array:
    """Uniform on [-√3, √3): zero mean, unit variance."""
    root3 = math.sqrt(3.0)
    return generator.uniform(-root3, root3, dims)


def _truncated_standard_normal(generator: np.random.Generator, dims, alpha: float,
                               beta: float) -> Array:
    """Z ~ N(0, 1) conditioned on alpha <= Z <= beta, exactly, by the inverse CDF.

    u ~ U[0, 1) maps to Φ⁻¹((1 − u)·Φ(α) + u·Φ(β)), computed in log space so intervals deep
    in a tail keep their precision; an interval in the upper half is mirrored to the lower
    half, where log Φ is accurate.
    """
    mirrored = alpha + beta > 0
    if mirrored:
        alpha, beta = -beta, -alpha
    log_low, log_high = special.log_ndtr(alpha), special.log_ndtr(beta)
    u = generator.random(dims)
    with np.errstate(divide="ignore"):  # log(0) = -inf when u == 0 exactly; logaddexp takes it
        log_p = np.logaddexp(log_low + np.log1p(-u), log_high + np.log(u))
    z = np.clip(special.ndtri_exp(log_p), alpha, beta)
    return -z if mirrored else z


def _keras_truncated(generator: np.random.Generator, dims) -> Array:
    """N(0, 1) truncated to ±2 and rescaled to unit variance (Keras' truncated variant)."""
    return _truncated_standard_normal(generator, dims, -2.0, 2.0) / _TRUNCATED_2_STD


# std of N(0, 1) truncated to [-2, 2]: sqrt(1 - 2·2φ(2) / (Φ(2) − Φ(−2))), ≈ 0.8796 (Keras'
# constant .87962566103423978).
_TRUNCATED_2_STD = math.sqrt(
    1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / math.erf(2.0 / math.sqrt(2.0))
)

# distribution name -> unit-variance, zero-mean sampler (generator, dims) -> float64 array
_DISTRIBUTIONS: dict[str, Callable] = {
    "normal": _standard_normal,
    "uniform": _standard_uniform,
    "truncated_normal": _keras_truncated,
}


def _scaled(dims, std: float, distribution: str, rng, dtype) -> Array:
    """std times a unit-variance draw, drawn in float64 and cast to ``dtype``."""
    values = _DISTRIBUTIONS[distribution](resolve_rng(rng), dims)
    with np.errstate(over="ignore", invalid="ignore"):
        values *= std
    return _cast(values, dtype, f"a {distribution} draw of std {std:.3g}")


def _cast(values: Array, dtype, what: str) -> Array:
    """``values`` (float64) as ``dtype``, or a ValueError where an entry left its range."""
    with np.errstate(over="ignore", invalid="ignore"):
        values = values.astype(dtype, copy=False)
    if not np.isfinite(values).all():
        wider = " or dtype='float64'" if np.dtype(dtype) != np.float64 else ""
        raise ValueError(f"{what} gives values beyond the range of {np.dtype(dtype).name} "
                         f"(they would be inf). Use a smaller scale{wider}.")
    return values


def _check_gain(gain) -> float:
    return check_real(gain, "gain", low=0.0, low_open=True)


# fan mode -> fan from (fan_in, fan_out)
_FAN_MODES: dict[str, Callable[[int, int], float]] = {
    "fan_in": lambda fan_in, fan_out: fan_in,
    "fan_out": lambda fan_in, fan_out: fan_out,
    "fan_avg": lambda fan_in, fan_out: (fan_in + fan_out) / 2.0,
}
_FANS_NEEDED = {"fan_in": ("fan_in",), "fan_out": ("fan_out",), "fan_avg": ("fan_in", "fan_out")}


def _choice(options, value, name: str, what: str) -> str:
    """The normalized option ``value`` names, or an error listing the options."""
    return lookup({option: option for option in options}, value, name, what)


def _mode_fan(initializer: str, mode, dims, fan_in, fan_out, modes) -> float:
    key = _choice(modes, mode, "mode", "fan mode")
    values = _need_fans(initializer, dims, fan_in, fan_out, *_FANS_NEEDED[key])
    return _FAN_MODES[key](values["fan_in"], values["fan_out"])


# --------------------------------------------------------------------------- gains

def _fixed_gain(value: float) -> Callable:
    return lambda param: value


def _table_gain(name: str, param_name: str | None) -> Callable:
    """The ``.gain`` of the activation table's entry ``name``, its one hyperparameter set to ``param``."""
    def gain(param) -> float:
        params = {} if param is None or param_name is None else {param_name: param}
        return _activations.get(name, **params).gain
    return gain


@functools.lru_cache(maxsize=4)
def _gain_table(names: tuple[str, ...]) -> dict[str, tuple[Callable, str | None]]:
    """nonlinearity -> (gain from param, the name of the param it sets, or None when ignored):
    every activation of the table (its ``.gain``, PyTorch's values where PyTorch has one), and
    PyTorch's names for linear layers (gain 1)."""
    table = {}
    for name in names:
        params = list(_activations.get(name).params)
        param_name = params[0] if len(params) == 1 else None
        table[name] = (_table_gain(name, param_name), param_name)
    for name in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
        table[name] = (_fixed_gain(1.0), None)
    return table


def _gains() -> dict[str, tuple[Callable, str | None]]:
    """The gain table of the activations registered now (an activation added later joins it)."""
    return _gain_table(tuple(_activations.names()))


def calculate_gain(nonlinearity, param=None) -> float:
    """The recommended gain of the weights' std for a nonlinearity, PyTorch's values.

    ================================  ===================================
    nonlinearity                      gain
    ================================  ===================================
    linear, identity, conv*, sigmoid  1
    tanh                              5/3
    relu                              √2
    leaky_relu                        √(2 / (1 + slope²)), slope = ``param`` (default 0.01)
    selu                              3/4
    gelu, silu, elu, softplus         the activation's ``.gain`` (``param`` = elu's alpha)
    ================================  ===================================

    The last row is a deliberate extension: PyTorch raises for these names; depthlab returns
    1/sqrt(E[a(z)²]) for z ~ N(0, 1), the gain that keeps the second moment of the
    activations through a layer, and is √2 for ReLU. ``"identity"`` is accepted too (PyTorch
    documents it but only accepts ``"linear"``). Names are case-insensitive.

    Parameters
    ----------
    nonlinearity : str or Activation
        A name from the table, or an :class:`~depthlab.nn.activations.Activation`, whose own
        ``.gain`` is returned.
    param : float, optional
        leaky_relu's negative slope or elu's alpha; ignored by the others, as in PyTorch.
    """
    if isinstance(nonlinearity, _activations.Activation):
        if param is not None:
            raise ValueError("calculate_gain(): param must be None for an Activation object; its "
                             f"hyperparameters are already set ({nonlinearity!r}).")
        return float(nonlinearity.gain)
    gain, _ = lookup(_gains(), nonlinearity, "nonlinearity", "nonlinearity")
    return float(gain(param))


def _kaiming_gain(nonlinearity, a) -> float:
    """calculate_gain with ``a`` passed only to nonlinearities that take a negative slope."""
    a = check_real(a, "a")
    if isinstance(nonlinearity, _activations.Activation):
        return calculate_gain(nonlinearity)
    _, param_name = lookup(_gains(), nonlinearity, "nonlinearity", "nonlinearity")
    return calculate_gain(nonlinearity, a if param_name == "negative_slope" else None)


# --------------------------------------------------------------------------- constants

def zeros(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None) -> Array:
    """All zeros (the usual bias β_k). Returns an array of ``shape``."""
    dims, dtype = _prepare(shape, rng, dtype, fan_in, fan_out)
    return np.zeros(dims, dtype=dtype)


def ones(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None) -> Array:
    """All ones. Returns an array of ``shape``."""
    dims, dtype = _prepare(shape, rng, dtype, fan_in, fan_out)
    return np.ones(dims, dtype=dtype)


def constant(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None,
             value: float = 0.0) -> Array:
    """Every entry equal to ``value`` (a finite real). Returns an array of ``shape``."""
    dims, dtype = _prepare(shape, rng, dtype, fan_in, fan_out)
    value = check_real(value, "value")
    return _cast(np.full(dims, value), dtype, f"constant(value={value:.3g})")


# --------------------------------------------------------------------------- plain distributions

def normal(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None, mean: float = 0.0,
           std: float | None = None, variance: float | None = None) -> Array:
    """N(mean, std²): give ``std`` or the seeds' ``variance`` σ²_Ω, not both (default std 1).

    ``normal(shape, variance=2/80, rng=0)`` draws Ω ~ N(0, 2/80) as ``mean +
    sqrt(variance)·z`` with z = ``rng.standard_normal(shape)``.

    Returns
    -------
    np.ndarray of ``shape``
    """
    dims, dtype = _prepare(shape, rng, dtype, fan_in, fan_out)
    mean = check_real(mean, "mean")
    if std is not None and variance is not None:
        raise ValueError(f"normal(): give std or variance, not both (got std={std!r}, "
                         f"variance={variance!r}); variance is std².")
    if variance is not None:
        scale = math.sqrt(check_real(variance, "variance", low=0.0))
    else:
        scale = 1.0 if std is None else check_real(std, "std", low=0.0)
    values = _scaled(dims, scale, "normal", rng, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        values += mean
    return _cast(values, dtype, f"normal(mean={mean:.3g}, std={scale:.3g})")


def uniform(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None, low: float = 0.0,
            high: float = 1.0) -> Array:
    """U[low, high), PyTorch's ``uniform_`` (default a = 0, b = 1). Returns ``shape``."""
    dims, dtype = _prepare(shape, rng, dtype, fan_in, fan_out)
    low, high = check_real(low, "low"), check_real(high, "high")
    if not low < high:
        raise ValueError(f"uniform(): low must be < high, got low={low:g}, high={high:g}.")
    if not math.isfinite(high - low):
        raise ValueError(f"uniform(): high − low must be within float64's range, got low={low:g}, high={high:g}.")
    with np.errstate(over="ignore", invalid="ignore"):
        values = resolve_rng(rng).uniform(low, high, dims)
    return _cast(values, dtype, f"uniform(low={low:.3g}, high={high:.3g})")


def truncated_normal(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None,
                     mean: float = 0.0, std: float = 1.0, low: float = -2.0,
                     high: float = 2.0) -> Array:
    """N(mean, std²) conditioned on low <= x <= high (absolute bounds, as PyTorch's a, b).

    Sampled exactly by the inverse CDF (no rejection loop), so any interval works, even one
    far in a tail. The default bounds ±2 are absolute, not in units of std. In float32 the
    bounds hold up to float32 rounding of the bounds themselves.

    Returns
    -------
    np.ndarray of ``shape``, every entry in [low, high]
    """
    dims, dtype = _prepare(shape, rng, dtype, fan_in, fan_out)
    mean = check_real(mean, "mean")
    std = check_real(std, "std", low=0.0, low_open=True)
    low, high = check_real(low, "low"), check_real(high, "high")
    if not low < high:
        raise ValueError(f"truncated_normal(): low must be < high, got low={low:g}, high={high:g}.")
    z = _truncated_standard_normal(resolve_rng(rng), dims, (low - mean) / std, (high - mean) / std)
    with np.errstate(over="ignore", invalid="ignore"):
        values = np.clip(mean + std * z, low, high)
    return _cast(values, dtype, f"truncated_normal(mean={mean:.3g}, std={std:.3g}, low={low:.3g}, high={high:.3g})")


# --------------------------------------------------------------------------- variance scaling

def variance_scaling(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None,
                     scale: float = 1.0, mode: str = "fan_in",
                     distribution: str = "normal") -> Array:
    """Zero-mean draw of variance ``scale / fan``, Keras' ``VarianceScaling``.

    Parameters
    ----------
    scale : float > 0
        The variance times the fan (2 for He, 1 for LeCun).
    mode : {"fan_in", "fan_out", "fan_avg"}
        fan = fan_in, fan_out, or (fan_in + fan_out)/2.
    distribution : {"normal", "uniform", "truncated_normal"}
        "uniform" is U[-√3·std, √3·std]; "truncated_normal" is Keras' normal truncated at ±2
        of its own std and rescaled so the variance is still ``scale / fan``.

    Returns
    -------
    np.ndarray of ``shape``
    """
    dims, dtype = _prepare(shape, rng, dtype, fan_in, fan_out)
    scale = check_real(scale, "scale", low=0.0, low_open=True)
    distribution = _choice(_DISTRIBUTIONS, distribution, "distribution", "distribution")
    fan = _mode_fan("variance_scaling", mode, dims, fan_in, fan_out, _FAN_MODES)
    return _scaled(dims, math.sqrt(scale / fan), distribution, rng, dtype)


def xavier_normal(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None,
                  gain: float = 1.0) -> Array:
    """N(0, std²), std = gain·sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio 2010).

    Returns
    -------
    np.ndarray of ``shape`` ``(D_out, D_in)`` (or a bias with explicit fans)
    """
    dims, dtype = _prepare(shape, rng, dtype, fan_in, fan_out)
    gain = _check_gain(gain)
    f = _need_fans("xavier_normal", dims, fan_in, fan_out, "fan_in", "fan_out")
    return _scaled(dims, gain * math.sqrt(2.0 / (f["fan_in"] + f["fan_out"])), "normal", rng, dtype)


def xavier_uniform(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None,
                   gain: float = 1.0) -> Array:
    """U[-b, b], b = gain·sqrt(6 / (fan_in + fan_out)) = √3·std (Glorot & Bengio 2010)."""
    dims, dtype = _prepare(shape, rng, dtype, fan_in, fan_out)
    gain = _check_gain(gain)
    f = _need_fans("xavier_uniform", dims, fan_in, fan_out, "fan_in", "fan_out")
    return _scaled(dims, gain * math.sqrt(2.0 / (f["fan_in"] + f["fan_out"])), "uniform", rng, dtype)


def _kaiming(initializer, distribution, shape, rng, dtype, fan_in, fan_out, a, mode, nonlinearity):
    dims, dtype = _prepare(shape, rng, dtype, fan_in, fan_out)
    gain = _kaiming_gain(nonlinearity, a)
    fan = _mode_fan(initializer, mode, dims, fan_in, fan_out, ("fan_in", "fan_out"))
    return _scaled(dims, gain / math.sqrt(fan), distribution, rng, dtype)


def kaiming_normal(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None, a: float = 0.0,
                   mode: str = "fan_in", nonlinearity="leaky_relu") -> Array:
    """N(0, std²), std = gain / sqrt(fan_mode), PyTorch's ``kaiming_normal_`` (He et al. 2015).

    Parameters
    ----------
    a : float
        Negative slope of the leaky ReLU after this layer (used only with "leaky_relu"; the
        default a = 0 gives gain √2, as for ReLU).
    mode : {"fan_in", "fan_out"}
        "fan_in" keeps the variance of f_k in the forward pass, "fan_out" that of dL/dh_k in
        the backward pass.
    nonlinearity : str or Activation
        Passed to :func:`calculate_gain`.

    Returns
    -------
    np.ndarray of ``shape``
    """
    return _kaiming("kaiming_normal", "normal", shape, rng, dtype, fan_in, fan_out, a, mode,
                    nonlinearity)


def kaiming_uniform(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None, a: float = 0.0,
                    mode: str = "fan_in", nonlinearity="leaky_relu") -> Array:
    """U[-b, b], b = √3·gain / sqrt(fan_mode), PyTorch's ``kaiming_uniform_``.

    Arguments as :func:`kaiming_normal`.
    """
    return _kaiming("kaiming_uniform", "uniform", shape, rng, dtype, fan_in, fan_out, a, mode,
                    nonlinearity)


def he_normal(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None, a: float = 0.0,
              mode: str = "fan_in", nonlinearity="relu") -> Array:
    """:func:`kaiming_normal` for ReLU: σ²_Ω = 2 / fan_in (the seeds' He init, 2/D_h)."""
    return _kaiming("he_normal", "normal", shape, rng, dtype, fan_in, fan_out, a, mode,
                    nonlinearity)


def he_uniform(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None, a: float = 0.0,
               mode: str = "fan_in", nonlinearity="relu") -> Array:
    """:func:`kaiming_uniform` for ReLU: U[-b, b], b = sqrt(6 / fan_in)."""
    return _kaiming("he_uniform", "uniform", shape, rng, dtype, fan_in, fan_out, a, mode,
                    nonlinearity)


def lecun_normal(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None) -> Array:
    """N(0, 1/fan_in) (LeCun et al. 1998; the variance SELU networks need).

    Keras' ``lecun_normal`` draws from a normal truncated at ±2 of its std and rescaled to the
    same variance 1/fan_in; use ``variance_scaling(distribution="truncated_normal")`` for that.
    """
    dims, dtype = _prepare(shape, rng, dtype, fan_in, fan_out)
    f = _need_fans("lecun_normal", dims, fan_in, fan_out, "fan_in")
    return _scaled(dims, 1.0 / math.sqrt(f["fan_in"]), "normal", rng, dtype)


def lecun_uniform(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None) -> Array:
    """U[-b, b], b = sqrt(3 / fan_in): variance 1/fan_in (Keras' ``lecun_uniform``)."""
    dims, dtype = _prepare(shape, rng, dtype, fan_in, fan_out)
    f = _need_fans("lecun_uniform", dims, fan_in, fan_out, "fan_in")
    return _scaled(dims, 1.0 / math.sqrt(f["fan_in"]), "uniform", rng, dtype)


def orthogonal(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None,
               gain: float = 1.0) -> Array:
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2013), PyTorch's algorithm.

    The shape is flattened to ``(rows, cols)`` = ``(shape[0], prod(shape[1:]))``; a standard
    normal matrix of that shape is drawn (and transposed when rows < cols), factored Q·R,
    Q's columns multiplied by sign(diag R) so Q is Haar-distributed, and transposed back. So
    Ω Ωᵀ = gain²·I when rows <= cols and ΩᵀΩ = gain²·I otherwise. Fans are not used.

    Returns
    -------
    np.ndarray of ``shape`` (at least 2-D)
    """
    dims, dtype = _prepare(shape, rng, dtype, fan_in, fan_out)
    gain = _check_gain(gain)
    if len(dims) < 2:
        raise ValueError(f"orthogonal needs a shape with at least 2 dimensions, got {dims}; "
                         "for a bias use e.g. 'zeros' or 'normal'.")
    rows = dims[0]
    cols = math.prod(dims) // rows
    flat = resolve_rng(rng).standard_normal((rows, cols))
    wide = rows < cols
    q, r = np.linalg.qr(flat.T if wide else flat)
    q *= np.sign(np.diagonal(r))
    if wide:
        q = q.T
    return (gain * q).reshape(dims).astype(dtype, copy=False)


# --------------------------------------------------------------------------- registry

INITIALIZERS: dict[str, Callable[..., Array]] = {
    "zeros": zeros,
    "ones": ones,
    "constant": constant,
    "normal": normal,
    "uniform": uniform,
    "truncated_normal": truncated_normal,
    "variance_scaling": variance_scaling,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "glorot_normal": xavier_normal,
    "glorot_uniform": xavier_uniform,
    "kaiming_normal": kaiming_normal,
    "kaiming_uniform": kaiming_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "orthogonal": orthogonal,
}
_BUILTIN = frozenset(INITIALIZERS)
glorot_normal = xavier_normal
glorot_uniform = xavier_uniform


class Initializer:
    """An initializer with its hyperparameters bound, as :func:`get` returns it.

    Call it as ``init(shape, rng=..., dtype=..., fan_in=None, fan_out=None)``; it returns a
    new array of ``shape``. ``name`` and ``hyperparameters`` say what it draws. The function
    receives the resolved fans: the ones passed, else those of a ≥2-D shape, else None.
    """

    __slots__ = ("name", "function", "hyperparameters")

    def __init__(self, name: str, function: Callable[..., Array], hyperparameters: Mapping):
        self.name = name
        self.function = function
        self.hyperparameters = dict(hyperparameters)

    def __call__(self, shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None) -> Array:
        dims = _check_shape(shape)
        fan = _resolve_fans(dims, fan_in, fan_out)
        return self.function(dims, rng=rng, dtype=dtype, fan_in=fan["fan_in"],
                             fan_out=fan["fan_out"], **self.hyperparameters)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{self.name}({args})"


def _accepted(function) -> tuple[inspect.Signature | None, bool]:
    """The signature (None if it cannot be read) and whether it takes **kwargs (kept per function:
    a network reads its initializer's once per layer; an unhashable callable is read each time)."""
    try:
        return _accepted_kept(function)
    except TypeError:
        return _read_signature(function)


@functools.lru_cache(maxsize=256)
def _accepted_kept(function) -> tuple[inspect.Signature | None, bool]:
    return _read_signature(function)


def _read_signature(function) -> tuple[inspect.Signature | None, bool]:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None, True
    var_keyword = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    return signature, var_keyword


def _adapt(function: Callable, name: str, hyperparameters: Mapping | None) -> Callable[..., Array]:
    """Wrap a user callable in the full protocol and check what it returns.

    Keywords among rng, dtype, fan_in, fan_out are passed when the callable names them (or
    takes **kwargs); a callable ``(shape, rng)`` whose second parameter has another name gets
    the generator positionally. ``hyperparameters`` (None when not yet known) are the extra
    keywords it will be given.
    """
    signature, var_keyword = _accepted(function)
    if var_keyword:
        keywords, rng_positional = set(_PROTOCOL), False
    else:
        params = signature.parameters
        keywords = {k for k in _PROTOCOL
                    if k in params and params[k].kind in (params[k].POSITIONAL_OR_KEYWORD,
                                                          params[k].KEYWORD_ONLY)}
        positional = [p for p in params.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        rng_positional = ("rng" not in keywords and len(positional) >= 2
                          and positional[1].name not in _PROTOCOL)
        bind = signature.bind_partial if hyperparameters is None else signature.bind
        try:
            bind(None, *([None] if rng_positional else []),
                 **dict.fromkeys(keywords), **dict.fromkeys(hyperparameters or ()))
        except TypeError as error:
            raise TypeError(
                f"init callable {name!r} has signature {signature}, which cannot be called as an "
                f"initializer ({error}). It must accept (shape, rng) or (shape, *, rng, dtype, "
                "fan_in, fan_out) and return an array of shape `shape`."
            ) from None

    def adapted(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None, **hyperparameters):
        dims = _check_shape(shape)
        dtype = resolve_dtype(dtype)
        available = {"rng": resolve_rng(rng), "dtype": dtype, **_resolve_fans(dims, fan_in, fan_out)}
        args = (dims, available["rng"]) if rng_positional else (dims,)
        kwargs = {k: v for k, v in available.items() if k in keywords}
        result = function(*args, **kwargs, **hyperparameters)
        try:
            array = np.asarray(result)
        except (TypeError, ValueError):
            array = None
        if array is None or array.dtype.kind not in "fiub":
            raise TypeError(f"init callable {name!r} must return an array of real numbers, got "
                            f"{type(result).__name__}.")
        if array.shape != dims:
            raise ValueError(f"init callable {name!r} returned an array of shape {array.shape} "
                             f"for the requested shape {dims}; it must return exactly that shape.")
        if not np.isfinite(array).all():
            raise ValueError(f"init callable {name!r} returned NaN or Inf values.")
        out = array.astype(dtype, copy=False)
        if isinstance(result, np.ndarray) and np.may_share_memory(out, result):
            out = out.copy()  # always hand back a new array
        return out

    adapted.__name__ = name
    adapted.__wrapped__ = function
    return adapted


def _bind(name: str, function: Callable, hyperparameters: Mapping) -> Initializer:
    """Check hyperparameter names (and, for built-ins, values) and bind them."""
    protocol = sorted(set(hyperparameters) & {"shape", *_PROTOCOL})
    if protocol:
        raise TypeError(f"get(): {', '.join(protocol)} are given when the initializer is called, "
                        f"not as hyperparameters of {name!r}.")
    signature, var_keyword = _accepted(function)
    if not var_keyword:
        own = [p for p in list(signature.parameters.values())[1:]  # after shape
               if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _PROTOCOL]
        unknown = sorted(set(hyperparameters) - {p.name for p in own})
        if unknown:
            takes = ", ".join(f"{p.name}={p.default!r}" for p in own) or "no hyperparameters"
            raise TypeError(f"initializer {name!r} got unexpected hyperparameters {unknown}; "
                            f"it takes {takes}.")
    bound = Initializer(name, function, hyperparameters)
    if name in _BUILTIN and function is INITIALIZERS[name]:
        key = _values_key(name, hyperparameters)
        if key is None or key not in _CHECKED:
            bound((2, 2), rng=np.random.default_rng(0))  # bad hyperparameter values fail now
            if key is not None:
                _CHECKED.add(key)  # a network builds one per layer: check each setting once
    return bound


_CHECKED: set = set()  # (name, hyperparameters) of built-in initializers whose values passed


def _values_key(name: str, hyperparameters: Mapping):
    """A hashable key of plain-number and text hyperparameters, or None (then checked every time)."""
    items = tuple(sorted(hyperparameters.items()))
    if not all(type(v) in (int, float, str, bool) for _, v in items):
        return None
    return name, items


def _from_number(value, hyperparameters) -> Initializer:
    if hyperparameters:
        raise TypeError(f"get({value!r}): a number takes no hyperparameters, got "
                        f"{sorted(hyperparameters)}; use get('normal', variance=..., mean=...).")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"init={value!r}: a number means the variance σ²_Ω of a normal "
                         "initializer; it must be > 0 and finite. Use init='zeros' for zeros.")
    return Initializer("normal", normal, {"variance": value})


def get(spec, **hyperparameters) -> Initializer:
    """Resolve an initializer spec to a callable ``(shape, *, rng, dtype, fan_in, fan_out)``.

    Parameters
    ----------
    spec : str, float, callable, dict or Initializer
        - a name from :func:`names` (case-insensitive, '-' or '_'), e.g. ``"he_normal"``;
        - a number v > 0: the seeds' σ²_Ω, i.e. N(0, v) (``get(2/80)``);
        - a callable: either ``f(shape, rng)`` (second argument any name, gets an
          ``np.random.Generator``) or ``f(shape, *, rng, dtype, fan_in, fan_out)`` — any
          subset of these keywords, or ``**kwargs``, is passed what it names. ``shape`` is a
          tuple; fans are those passed by the caller or read off a ≥2-D shape (else None). It
          must return an array of exactly ``shape``, which is cast to ``dtype``;
        - a dict ``{"name": ..., **hyperparameters}``.
    **hyperparameters
        Bound to the initializer, e.g. ``get("kaiming_normal", mode="fan_out")``.

    Returns
    -------
    Initializer
        Calling it returns a new array of the requested shape and dtype.
    """
    if isinstance(spec, Initializer):
        return Initializer(spec.name, spec.function, {**spec.hyperparameters, **hyperparameters})
    if isinstance(spec, Mapping):
        if "name" not in spec:
            raise ValueError(f"an init dict needs a 'name' key, got keys {sorted(map(str, spec))}; "
                             "e.g. {'name': 'kaiming_normal', 'mode': 'fan_out'}.")
        hyperparameters = {**{k: v for k, v in spec.items() if k != "name"}, **hyperparameters}
        spec = spec["name"]
        if not isinstance(spec, str):
            raise TypeError(f"an init dict's 'name' must be a string, got {type(spec).__name__}.")
    if isinstance(spec, str):
        key = spec.lower().replace("-", "_")
        if key not in INITIALIZERS:
            _load_lazy()
        return _bind(key, lookup(INITIALIZERS, key, "init", "initializer"), hyperparameters)
    if isinstance(spec, (numbers.Real, np.floating, np.integer)) and not isinstance(spec, bool):
        return _from_number(spec, hyperparameters)
    if callable(spec):
        if getattr(spec, "__module__", None) == _LAZY_MODULE:
            _load_lazy()
        for key, function in INITIALIZERS.items():
            if function is spec:
                return _bind(key, spec, hyperparameters)
        name = getattr(spec, "__name__", type(spec).__name__)
        return _bind(name, _adapt(spec, name, hyperparameters), hyperparameters)
    raise TypeError(
        f"init must be a name ({', '.join(names())}), a variance σ²_Ω > 0, a callable or a dict, "
        f"got {type(spec).__name__} {spec!r}."
    )


def register(name: str, function: Callable, *, replace: bool = False) -> None:
    """Add ``function`` to the registry under ``name`` (lower-case, '-' read as '_').

    ``function`` should follow the protocol ``f(shape, *, rng, dtype, fan_in, fan_out,
    **hyperparameters)``; a simpler callable is adapted as :func:`get` adapts callables.
    Re-registering the same function (or a reloaded module's) is allowed; replacing another
    needs ``replace=True``.
    """
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"register(): name must be a non-empty string, got {name!r}.")
    if not callable(function):
        raise TypeError(f"register(): function must be callable, got {type(function).__name__}.")
    key = name.strip().lower().replace("-", "_")
    signature, var_keyword = _accepted(function)
    full = var_keyword or all(k in signature.parameters and signature.parameters[k].kind
                              is not inspect.Parameter.POSITIONAL_ONLY for k in _PROTOCOL)
    entry = function if full else _adapt(function, key, None)
    existing = INITIALIZERS.get(key)
    if existing is not None and not replace and not _same_function(existing, function):
        raise ValueError(f"register(): {key!r} is already registered ({existing!r}); pass "
                         "replace=True to replace it.")
    INITIALIZERS[key] = entry


def _same_function(registered: Callable, function: Callable) -> bool:
    """The same function, or the same named function of a reloaded module."""
    registered = getattr(registered, "__wrapped__", registered)
    if registered is function:
        return True
    qualname = getattr(function, "__qualname__", None)
    return (qualname is not None and not qualname.endswith("<lambda>")
            and getattr(registered, "__qualname__", None) == qualname
            and getattr(registered, "__module__", None) == getattr(function, "__module__", None))


def names() -> list[str]:
    """The registered initializer names, sorted."""
    _load_lazy()
    return sorted(INITIALIZERS)


# Initializers that need a network, a batch or the mean-field theory live with the instruments
# (depthlab.signal.lsuv). Their names resolve on first use, so the math never imports the
# instruments: "critical" joins the registry the first time a name is looked up and missed,
# and dl.init.critical / critical_init / lsuv are found through the module's __getattr__.
_LAZY_MODULE = "depthlab.signal.lsuv"
_LAZY_INITIALIZERS = ("critical",)
_LAZY_ATTRIBUTES = ("critical", "critical_init", "lsuv")


def _load_lazy() -> None:
    """Register the initializers of :data:`_LAZY_MODULE` (once; later calls do nothing)."""
    missing = [name for name in _LAZY_INITIALIZERS if name not in INITIALIZERS]
    if missing:
        module = importlib.import_module(_LAZY_MODULE)
        for name in missing:
            register(name, getattr(module, name))


def __getattr__(name: str):
    if name in _LAZY_ATTRIBUTES:
        return getattr(importlib.import_module(_LAZY_MODULE), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
