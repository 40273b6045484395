"""Activation functions a[·]: value, derivative and gain, in one table.

Each activation is an :class:`Activation` record built by a small factory; ``ACTIVATIONS``
maps names to factories, and nothing else in depthlab switches on an activation's name.
Notation of the seeds: a hidden layer computes h_{k+1} = a[f_k] from its pre-activation
f_k = β_k + Ω_k h_k, and backpropagation multiplies by a'[f_k] elementwise.

Derivatives receive both the pre-activation ``f`` and the cached output ``h = a[f]``, so
sigmoid and tanh use their outputs (σ' = h(1 − h), tanh' = 1 − h²) and cost one pass.
At a kink (ReLU at 0) the derivative is the one PyTorch's autograd uses.
"""
from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import integrate, special

from .._checks import check_real, lookup

Array = np.ndarray

# SELU's constants (Klambauer et al. 2017), as in PyTorch.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@dataclass(frozen=True, eq=False)
class Activation:
    """An elementwise nonlinearity a[·].

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"relu"``.
    function : callable
        ``function(f) -> h``, elementwise; ``f`` of any shape.
    derivative : callable
        ``derivative(f, h) -> a'[f]`` given the pre-activation and its output.
    gain : float
        The recommended scale of the weights' standard deviation for this nonlinearity
        (PyTorch's ``calculate_gain`` where PyTorch has one; for GELU, SiLU, ELU and
        softplus, which it lacks, the second-moment-preserving 1/sqrt(E[a(z)²])).
    params : dict
        Hyperparameters, e.g. ``{"negative_slope": 0.01}``.
    can_die : bool
        Units can be exactly inactive (zero output and zero derivative): the ReLU family.
    saturates : bool
        The derivative tends to 0 for large |f| (sigmoid, tanh).
    kinks : tuple of float
        Points where the derivative jumps; central differences straddling one are unreliable.
    piecewise_linear : bool
        The network is piecewise linear in its input (identity, ReLU, leaky ReLU).
    torch : tuple (module name, constructor keyword arguments), optional
        The ``torch.nn`` module computing the same function, e.g. ``("LeakyReLU",
        {"negative_slope": 0.2})``: ``to_torch`` builds it and ``from_torch`` reads a module of
        that name back (the activation's ``params`` from the module's attributes of the same
        names, provided the module's ``torch_requires`` attributes have those values).
    torch_requires : dict
        Module attributes that must have these values for ``from_torch`` (GELU's exact form).
    vjp : callable, optional
        ``vjp(grad_h, f, h, out=None) -> grad_h ⊙ a'[f]`` without forming a'[f] (ReLU masks
        instead of multiplying), written into ``out`` when given (``out`` may be grad_h
        itself); the default multiplies by ``derivative``.
    function_out : callable, optional
        ``function_out(f, out) -> out``: a[f] written into ``out`` (f's shape and dtype).
        Networks use it to reuse one buffer per layer from pass to pass; without it the
        forward pass allocates a[f] afresh.
    derivative_from_output : bool
        ``derivative`` and ``vjp`` read only the output h (the pre-activation f may be passed
        as h), and ``function_out`` may write into f's own buffer. A training step that keeps
        no f_k then computes h_{k+1} in place of f_k (ReLU, sigmoid, tanh), as PyTorch's
        in-place activations do.
    blocked : bool
        ``function``, ``derivative`` and ``function_out`` are strictly elementwise chains of
        NumPy/SciPy ufuncs (each value from the value at the same place): a network's fast path
        then computes them on a large batch block by block, so that the chain's temporaries stay
        in cache (:mod:`depthlab._fast.elementwise`; the same numbers, 15–30% off a probe of a
        50×80 tanh, GELU, SiLU or ELU network). Off for a user's activation unless it says so.
    """

    name: str
    function: Callable[[Array], Array]
    derivative: Callable[[Array, Array], Array]
    gain: float
    params: Mapping[str, float] = field(default_factory=dict)
    can_die: bool = False
    saturates: bool = False
    kinks: tuple[float, ...] = ()
    piecewise_linear: bool = False
    torch: tuple[str, Mapping] | None = None
    torch_requires: Mapping = field(default_factory=dict)
    vjp: Callable[..., Array] | None = None
    function_out: Callable[[Array, Array], Array] | None = None
    derivative_from_output: bool = False
    blocked: bool = False

    def __call__(self, f: Array) -> Array:
        return self.function(f)

    def forward(self, f: Array, out: Array | None = None) -> Array:
        """h = a[f], written into ``out`` when given and the activation has ``function_out``.

        Use the returned array: it is ``out`` only when the activation could write there.
        """
        if out is not None and self.function_out is not None:
            return self.function_out(f, out)
        return self.function(f)

    def backward(self, grad_h: Array, f: Array, h: Array, out: Array | None = None) -> Array:
        """dL/df = dL/dh ⊙ a'[f] (through ``vjp`` when the activation has a faster form).

        ``out`` (grad_h's shape and dtype; grad_h itself to work in place) receives the result
        where the activation can write it; use the returned array (identity returns grad_h).
        """
        if self.vjp is not None:
            return self.vjp(grad_h, f, h, out)
        return np.multiply(grad_h, self.derivative(f, h), out=out)

    def grad(self, f: Array) -> Array:
        """a'[f] from the pre-activation alone."""
        return self.derivative(f, self.function(f))

    def spec(self) -> dict:
        """A JSON-friendly description that :func:`get` turns back into this activation."""
        return {"name": self.name, **self.params}

    def __eq__(self, other) -> bool:
        return isinstance(other, Activation) and self.spec() == other.spec()

    def __reduce__(self):
        # registered activations pickle as their spec (their functions are closures)
        if self.name in ACTIVATIONS:
            return get, (self.spec(),)
        return super().__reduce__()

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params.items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})" if args else self.name


@functools.lru_cache(maxsize=None)
def _second_moment_gain(name: str, **params) -> float:
    """1 / sqrt(E[a(z)²]) for z ~ N(0, 1), by adaptive quadrature split at the kink z = 0.

    Used as the gain of activations PyTorch's ``calculate_gain`` does not cover: weights of
    std gain/sqrt(fan_in) then keep E[h²] equal to the input's second moment (for ReLU this
    gives sqrt(2), He's value). Cached per (name, hyperparameters).
    """
    function = _FUNCTIONS[name](**params)

    def integrand(z: float) -> float:
        value = function(np.array([z]))[0]
        return value * value * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    negative = integrate.quad(integrand, -np.inf, 0.0, epsabs=1e-14, epsrel=1e-12)[0]
    positive = integrate.quad(integrand, 0.0, np.inf, epsabs=1e-14, epsrel=1e-12)[0]
    return 1.0 / math.sqrt(negative + positive)


def _ones(f: Array, h: Array) -> Array:
    return np.ones_like(f)


def identity() -> Activation:
    """a[f] = f (the output layer of a regression network)."""
    return Activation("identity", lambda f: f, _ones, 1.0, piecewise_linear=True, torch=("Identity", {}),
                      vjp=lambda grad_h, f, h, out=None: grad_h)


def _relu_vjp(grad_h: Array, f: Array, h: Array, out: Array | None = None) -> Array:
    return np.multiply(grad_h, f > 0, out=out)


def relu() -> Activation:
    """a[f] = max(0, f); a'[0] = 0 as in PyTorch."""
    return Activation(
        "relu", lambda f: np.maximum(f, 0), lambda f, h: (f > 0).astype(f.dtype), math.sqrt(2.0),
        can_die=True, kinks=(0.0,), piecewise_linear=True, vjp=_relu_vjp, torch=("ReLU", {}),
        function_out=lambda f, out: np.maximum(f, 0, out=out), derivative_from_output=True,
    )


def _leaky_gain(slope: float) -> float:
    """√(2 / (1 + slope²)) as PyTorch computes it (bit for bit), without squaring a huge slope."""
    return math.sqrt(2.0 / (1 + slope**2)) if abs(slope) < 1e150 else math.sqrt(2.0) / math.hypot(1.0, slope)


def _leaky_out(slope: float):
    """``function_out`` of leaky ReLU, np.where's values (NaN, ±inf and −0 included) without its
    three temporary arrays (which made the pass ~2.5× ReLU's): max(f, slope·f) for 0 < slope <= 1,
    min(f, slope·f) above 1; for slope <= 0 (where neither picks f·slope, or 0·inf would be
    NaN) slope·f with f copied over it where f > 0, exact but slower. The slope is read as f's
    dtype rounds it (1e-300 is 0 in float32)."""

    def function_out(f: Array, out: Array) -> Array:
        if np.may_share_memory(f, out):            # written over f: np.where's own array, copied in
            np.copyto(out, np.where(f > 0, f, f * slope))
            return out
        np.multiply(f, slope, out=out)
        slope_here = f.dtype.type(slope) if f.dtype.kind == "f" else slope   # as f's dtype rounds it
        if 0 < slope_here <= 1:
            return np.maximum(f, out, out=out)
        if slope_here > 1:
            return np.minimum(f, out, out=out)
        np.copyto(out, f, where=f > 0)
        return out
    return function_out


def leaky_relu(negative_slope: float = 0.01) -> Activation:
    """a[f] = f for f > 0, negative_slope·f otherwise."""
    slope = check_real(negative_slope, "negative_slope")
    return Activation(
        "leaky_relu",
        lambda f: np.where(f > 0, f, f * slope).astype(f.dtype, copy=False),
        lambda f, h: np.where(f > 0, 1.0, slope).astype(f.dtype, copy=False),
        _leaky_gain(slope),
        params={"negative_slope": slope}, kinks=(0.0,), piecewise_linear=True,
        torch=("LeakyReLU", {"negative_slope": slope}), function_out=_leaky_out(slope),
    )


def sigmoid() -> Activation:
    """a[f] = 1 / (1 + e^{-f}); a' = h(1 − h)."""
    return Activation("sigmoid", special.expit, lambda f, h: h * (1 - h), 1.0, saturates=True,
                      torch=("Sigmoid", {}),
                      function_out=lambda f, out: special.expit(f, out=out), derivative_from_output=True,
                      blocked=True)


def tanh() -> Activation:
    """a[f] = tanh f; a' = 1 − h²."""
    return Activation("tanh", np.tanh, lambda f, h: 1 - h * h, 5.0 / 3.0, saturates=True, torch=("Tanh", {}),
                      function_out=lambda f, out: np.tanh(f, out=out), derivative_from_output=True,
                      blocked=True)


_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu(f: Array) -> Array:
    return f * special.ndtr(f)


def _gate(f: Array, h: Array, gate) -> Array:
    """g(f) of a gated activation h = a[f] = f·g(f), read off its output: h / f (to an ulp: h
    was rounded once), where h is a normal number, and ``gate(f)`` elsewhere (f = 0, or an
    output in float's subnormal range, where h / f would lose digits). The backward pass then
    skips computing g again: GELU's Φ (~19 ns a value on this project's machine, against ~1 ns
    for the division), SiLU's σ (~13 ns)."""
    f, h = np.asarray(f), np.asarray(h)
    if f.dtype.kind != "f" or h.dtype != f.dtype or h.shape != f.shape or f.ndim == 0:
        return gate(f)
    with np.errstate(divide="ignore", invalid="ignore"):      # f = 0 and the like: replaced below
        g = np.divide(h, f)
    elsewhere = ~(np.abs(h) >= np.finfo(f.dtype).tiny)         # 0, subnormal or NaN outputs
    if elsewhere.any():
        g[elsewhere] = gate(f[elsewhere])
    return g


def _gelu_derivative(f: Array, h: Array) -> Array:
    """GELU' = Φ(f) + f φ(f), Φ(f) = h / f read off the output (:func:`_gate`)."""
    return _gate(f, h, special.ndtr) + f * np.exp(-0.5 * f * f) * np.asarray(f).dtype.type(_INV_SQRT_2PI)


def gelu() -> Activation:
    """a[f] = f·Φ(f) with Φ the standard normal CDF (exact erf form, PyTorch's default)."""
    return Activation(
        "gelu", _gelu, _gelu_derivative,
        _second_moment_gain("gelu"), torch=("GELU", {}), torch_requires={"approximate": "none"}, blocked=True,
    )


def _silu(f: Array) -> Array:
    return f * special.expit(f)


def _silu_derivative(f: Array, h: Array) -> Array:
    """SiLU' = σ(1 + f(1 − σ)), σ(f) = h / f read off the output (:func:`_gate`)."""
    s = _gate(f, h, special.expit)
    return s * (1 + f * (1 - s))


def silu() -> Activation:
    """a[f] = f·σ(f) (swish)."""
    return Activation("silu", _silu, _silu_derivative, _second_moment_gain("silu"), torch=("SiLU", {}),
                      blocked=True)


def _elu(alpha: float):
    def function(f: Array) -> Array:
        return np.where(f > 0, f, alpha * np.expm1(np.minimum(f, 0))).astype(f.dtype, copy=False)
    return function


def elu(alpha: float = 1.0) -> Activation:
    """a[f] = f for f > 0, α(e^f − 1) otherwise."""
    alpha = check_real(alpha, "alpha")

    def derivative(f: Array, h: Array) -> Array:
        return np.where(f > 0, 1.0, h + alpha).astype(f.dtype, copy=False)

    return Activation("elu", _elu(alpha), derivative, _second_moment_gain("elu", alpha=alpha),
                      params={"alpha": alpha}, kinks=(0.0,) if alpha != 1.0 else (), torch=("ELU", {"alpha": alpha}),
                      blocked=True)


def _softplus(f: Array) -> Array:
    return np.logaddexp(f.dtype.type(0), f)


def softplus() -> Activation:
    """a[f] = log(1 + e^f), computed stably and exactly; a' = σ(f).

    PyTorch's ``softplus`` returns f itself above ``threshold=20`` (an error up to 2e-9);
    depthlab does not switch, and ``to_torch`` uses ``nn.Softplus(threshold=50)`` to agree.
    """
    # torch's threshold=20 makes softplus linear above 20 (off by up to 2e-9); at 50 the switch
    # is below rounding, so the torch module equals this exact one
    return Activation("softplus", _softplus, lambda f, h: special.expit(f), _second_moment_gain("softplus"),
                      torch=("Softplus", {"threshold": 50}), torch_requires={"beta": 1}, blocked=True)


def _selu(f: Array) -> Array:
    negative = SELU_ALPHA * np.expm1(np.minimum(f, 0))
    return (SELU_SCALE * np.where(f > 0, f, negative)).astype(f.dtype, copy=False)


def selu() -> Activation:
    """a[f] = λ·f for f > 0, λα(e^f − 1) otherwise (self-normalizing; λ, α as PyTorch)."""
    return Activation(
        "selu", _selu,
        lambda f, h: np.where(f > 0, SELU_SCALE, h + SELU_SCALE * SELU_ALPHA).astype(f.dtype, copy=False),
        0.75, kinks=(0.0,), torch=("SELU", {}), blocked=True,
    )


# functions whose second moment defines a gain: name -> (hyperparameters -> a[·])
_FUNCTIONS = {
    "gelu": lambda: _gelu,
    "silu": lambda: _silu,
    "elu": _elu,
    "softplus": lambda: _softplus,
}

# name -> factory; keyword arguments of the factory are the activation's hyperparameters.
ACTIVATIONS: dict[str, Callable[..., Activation]] = {
    "identity": identity,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "gelu": gelu,
    "silu": silu,
    "elu": elu,
    "softplus": softplus,
    "selu": selu,
}
ALIASES = {"linear": "identity", "none": "identity", "swish": "silu"}


def get(spec, **params) -> Activation:
    """Resolve an activation given as a name, an :class:`Activation`, a spec dict or ``None``.

    >>> get("leaky_relu", negative_slope=0.2)
    leaky_relu(negative_slope=0.2)
    >>> get({"name": "elu", "alpha": 0.5})
    elu(alpha=0.5)

    ``None`` means identity.
    """
    if isinstance(spec, Activation):
        if params:
            raise TypeError("get(): keyword hyperparameters need an activation name, not an Activation.")
        return spec
    if spec is None:
        spec = "identity"
    if isinstance(spec, Mapping):
        params = {**{k: v for k, v in spec.items() if k != "name"}, **params}
        spec = spec.get("name")
    if isinstance(spec, str):
        key = spec.lower().replace("-", "_")
        key = ALIASES.get(key, key)
        factory = lookup(ACTIVATIONS, key if key in ACTIVATIONS else spec, "activation", "activation")  # errors echo spec
        accepted = _hyperparameters(factory)
        unexpected = sorted(set(params) - set(accepted))
        if unexpected:
            raise TypeError(f"activation {key!r} got unexpected hyperparameters {unexpected}; "
                            f"it takes {accepted or 'none'}.")
        return factory(**params)
    raise TypeError(
        f"activation must be a name (one of {', '.join(ACTIVATIONS)}), an Activation or None, "
        f"got {type(spec).__name__} {spec!r}."
    )


@functools.lru_cache(maxsize=None)
def _hyperparameters(factory) -> list[str]:
    """The keyword hyperparameters an activation's factory takes (read once per factory)."""
    return list(inspect.signature(factory).parameters)


def names() -> list[str]:
    """The registered activation names."""
    return list(ACTIVATIONS)
