"""Layers with explicit forward and backward passes: ``Linear`` and ``ActivationLayer``.

Notation of the seeds: a network alternates affine maps f_k = β_k + Ω_k h_k and
elementwise nonlinearities h_{k+1} = a[f_k]. In batch-first arrays, with a batch of N
row vectors h of shape ``(N, D_in)``::

    f = h @ Ω.T + β                      # Linear.forward,   f: (N, D_out)
    dL/dΩ = (dL/df).T @ h                # Linear.backward,  (D_out, D_in), summed over the batch
    dL/dβ = Σ_n dL/df[n]                 #                   (D_out,), as ones(N) @ dL/df
    dL/dh = dL/df @ Ω                    #                   (N, D_in)
    dL/df = dL/dh ⊙ a'[f]                # ActivationLayer.backward

Both follow the layer protocol (:class:`~depthlab.nn.layer.Layer`): ``forward(x, cache)`` puts
into the engine's ``cache`` what ``backward(grad_output, cache)`` needs. Beside the plain math
each has its fast variant (``forward_fast`` / ``backward_fast``): the same arithmetic into
arrays the engine keeps, in place where the engine allows it.
"""
from __future__ import annotations

import numpy as np

from . import activations as _activations
from . import init as _init
from .._fast.buffers import ones
from .._fast.elementwise import elementwise
from .._checks import as_float_array, check_fits_in_memory, check_positive_int, resolve_dtype, resolve_rng
from .layer import Layer, missing_cache, work_array
from .parameter import Parameter


class Linear(Layer):
    """An affine layer f = h Ωᵀ + β.

    Parameters
    ----------
    in_features, out_features : int
        D_in and D_out.
    init : str, number, callable or dict, default "he_normal"
        The weight initializer (see :func:`depthlab.nn.init.get`); a number is the variance
        σ²_Ω of a zero-mean normal.
    bias_init : same, default "zeros"
        The bias initializer; fan-based schemes use the weight's fans.
    rng : np.random.Generator or int, optional
    dtype : "float64" or "float32"

    Attributes
    ----------
    weight : Parameter, shape (out_features, in_features)
        Ω, in the seeds' and PyTorch's layout: fan_in = weight.shape[1].
    bias : Parameter, shape (out_features,)
        β.
    init_name : str
        How Ω and β were drawn, e.g. ``"he_normal(), bias zeros()"``; ``"from_arrays"`` for
        a layer made from given arrays (``from_arrays``, ``load``, ``copy``).
    """

    init_name = "from_arrays"
    rowwise = True

    def __init__(self, in_features: int, out_features: int, *, init="he_normal", bias_init="zeros",
                 rng=None, dtype="float64"):
        in_features = check_positive_int(in_features, "in_features")
        out_features = check_positive_int(out_features, "out_features")
        dtype = resolve_dtype(dtype)
        rng = resolve_rng(rng)
        shape = (out_features, in_features)
        check_fits_in_memory(out_features * (in_features + 1), dtype.itemsize,
                             f"Linear({in_features}, {out_features})'s weight and bias", "use smaller sizes")
        weight_init, bias_init = _init.get(init), _init.get(bias_init)
        weight = weight_init(shape, rng=rng, dtype=dtype, fan_in=in_features, fan_out=out_features)
        bias = bias_init((out_features,), rng=rng, dtype=dtype, fan_in=in_features, fan_out=out_features)
        self._set(weight, bias)
        self.init_name = f"{weight_init!r}, bias {bias_init!r}"    # e.g. "he_normal(), bias zeros()"

    @classmethod
    def from_arrays(cls, weight, bias=None, *, dtype=None, name: str = "weight") -> "Linear":
        """A layer holding copies of given arrays: weight (D_out, D_in), bias (D_out,) or (D_out, 1).

        ``bias=None`` means zeros. The arrays are copied (the layer never aliases user data).
        """
        dtype = None if dtype is None else resolve_dtype(dtype)
        weight = as_float_array(weight, name, dtype=dtype, copy=True)
        if weight.ndim != 2:
            raise ValueError(f"{name} must be 2-D (D_out, D_in), got shape {weight.shape}.")
        if 0 in weight.shape:
            raise ValueError(f"{name} has shape {weight.shape}: a layer needs at least one output (row) and one "
                             "input (column).")
        if bias is None:
            bias = np.zeros(weight.shape[0], dtype=weight.dtype)
        bias_name = name.replace("weights", "biases").replace("weight", "bias") if "weight" in name else "bias"
        bias = as_float_array(bias, bias_name, dtype=weight.dtype, copy=True)
        if bias.ndim == 2 and bias.shape[1] == 1:
            bias = bias[:, 0].copy()
        if bias.shape != (weight.shape[0],):
            raise ValueError(
                f"{bias_name} has shape {bias.shape} but {name} has shape {weight.shape}: "
                f"the bias needs one entry per output unit, shape ({weight.shape[0]},) or ({weight.shape[0]}, 1)."
            )
        layer = cls.__new__(cls)
        layer._set(weight, bias)
        return layer

    keeps_output = False  # forward_fast keeps its input, not f: a layer after it may overwrite f

    def _set(self, weight: np.ndarray, bias: np.ndarray) -> None:
        Layer.__init__(self)
        self.weight = Parameter(weight, "weight")
        self.bias = Parameter(bias, "bias")

    @property
    def in_features(self) -> int:
        return self.weight.data.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.data.shape[0]

    @property
    def dtype(self) -> np.dtype:
        return self.weight.data.dtype

    def output_features(self, in_features: int) -> int:
        if in_features != self.in_features:
            raise ValueError(f"{self!r} expects {self.in_features} input features (in_features), got {in_features}.")
        return self.out_features

    # -- the math ------------------------------------------------------------------------
    def forward(self, h: np.ndarray, cache: dict) -> np.ndarray:
        """f = h Ωᵀ + β for h of shape (N, D_in); returns f, shape (N, D_out)."""
        if type(h) is not np.ndarray or h.shape[-1:] != self.weight.data.shape[1:]:
            h = self._checked_input(h)
        cache["input"] = h
        return h @ self.weight.data.T + self.bias.data

    def _checked_input(self, h) -> np.ndarray:
        """h as an array whose last axis is in_features, or a ValueError that names the width."""
        h = as_float_array(h, f"{self!r}'s input", dtype=self.dtype, finite=False)
        if h.shape[-1:] != (self.in_features,):
            hint = f" Did you mean Linear({h.shape[-1]}, {self.out_features})?" if h.ndim else ""
            raise ValueError(f"{self!r} got input of shape {h.shape}: the last axis must be {self.in_features} "
                             f"(in_features).{hint}")
        return h

    def backward(self, grad_f: np.ndarray, cache: dict) -> np.ndarray:
        """dL/dh = dL/df Ω from dL/df (N, D_out); adds dL/dΩ = (dL/df)ᵀ h and dL/dβ = Σ_n dL/df[n]
        to the parameters' ``grad``."""
        try:
            h = cache["input"]
        except KeyError:
            raise missing_cache(self) from None
        self.weight.accumulate(grad_f.T @ h)
        self.bias.accumulate(np.ones(grad_f.shape[0], grad_f.dtype) @ grad_f)  # Σ_n dL/df[n], as the fast path sums
        return grad_f @ self.weight.data

    # -- the same math, into reused arrays (the engine's fast paths) ---------------------
    def forward_fast(self, h: np.ndarray, work: dict) -> np.ndarray:
        """:meth:`forward` written into an array the engine keeps for f (see
        :func:`~depthlab.nn.layer.work_array`)."""
        weight = self.weight.data
        if h.shape[-1:] != weight.shape[1:]:
            h = self._checked_input(h)
        work["input"] = h
        f = np.matmul(h, weight.T, out=work_array(work, "f", (h.shape[0], weight.shape[0]), h.dtype))
        f += self.bias.data
        return f

    def backward_fast(self, grad_f: np.ndarray, work: dict):
        """:meth:`backward` with dL/dΩ and dL/dβ written into ``work["gradients"]``'s arrays (views
        of the network's flat gradient array) and Σ_n as one BLAS product; dL/dh only when
        ``work["input_grad"]`` (else None: the first layer of a training step skips it); neither
        dL/dΩ nor dL/dβ when the pass wants dL/dx only (``work["parameter_grads"]`` False)."""
        h, weight, bias = work["input"], self.weight, self.bias
        if work.get("parameter_grads", True):
            gradients = work["gradients"]
            gradient = np.matmul(grad_f.T, h, out=None if gradients is None else gradients[weight])
            weight.grad = gradient if weight.grad is None else weight.grad + gradient
            gradient = np.matmul(ones(grad_f.shape[0], grad_f.dtype), grad_f,  # Σ_n as one BLAS product
                                 out=None if gradients is None else gradients[bias])
            bias.grad = gradient if bias.grad is None else bias.grad + gradient
        if not work["input_grad"]:
            return None
        return np.matmul(grad_f, weight.data, out=work_array(work, "grad_input", h.shape, h.dtype))

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"


def _elementwise(activation, function, arrays: tuple, out):
    """``function(*arrays, out)``; for a ``blocked`` activation, block by block, in cache
    (:func:`depthlab._fast.elementwise.elementwise`: the same numbers)."""
    if activation.blocked:
        return elementwise(function, arrays, out)
    return function(*arrays, out)


class ActivationLayer(Layer):
    """h = a[f] elementwise, for any activation of :mod:`depthlab.nn.activations`."""

    rowwise = True

    def __init__(self, activation="relu"):
        super().__init__()
        self.activation = _activations.get(activation)

    def forward(self, f: np.ndarray, cache: dict) -> np.ndarray:
        """h = a[f], the same shape as f."""
        h = self.activation.function(f)
        cache["f"], cache["h"] = f, h
        return h

    def backward(self, grad_h: np.ndarray, cache: dict) -> np.ndarray:
        """dL/df = dL/dh ⊙ a'[f]."""
        try:
            f, h = cache["f"], cache["h"]
        except KeyError:
            raise missing_cache(self) from None
        return grad_h * self.activation.derivative(f, h)

    def forward_fast(self, f: np.ndarray, work: dict) -> np.ndarray:
        """:meth:`forward` in place of f when f is the engine's own array and a'[f] can be had
        from h alone (ReLU, sigmoid, tanh: as PyTorch's in-place activations), else into a kept array."""
        activation = self.activation
        if work["overwrite_input"] and activation.derivative_from_output and activation.function_out is not None:
            h = _elementwise(activation, activation.function_out, (f,), f)
            work["f"] = work["h"] = h
            return h
        keeps_output = activation.function_out is not None or activation.blocked
        out = work_array(work, "h", f.shape, f.dtype) if keeps_output else None
        work["f"], work["h"] = f, _elementwise(activation, activation.forward, (f,), out)
        return work["h"]

    def backward_fast(self, grad_h: np.ndarray, work: dict) -> np.ndarray:
        """:meth:`backward` in place of dL/dh when the engine allows it (through the activation's
        ``vjp`` where it has one: ReLU masks instead of multiplying)."""
        out = grad_h if work["overwrite_grad"] else work_array(work, "grad_input", grad_h.shape, grad_h.dtype)
        return _elementwise(self.activation, self.activation.backward, (grad_h, work["f"], work["h"]), out)

    def output_features(self, in_features: int) -> int:
        return in_features

    def __repr__(self) -> str:
        return f"ActivationLayer({self.activation!r})"
