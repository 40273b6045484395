"""Layers with explicit forward and backward passes: ``Linear`` and ``ActivationLayer``.

Notation of the seeds: a network alternates affine maps f_k = β_k + Ω_k h_k and
elementwise nonlinearities h_{k+1} = a[f_k]. In batch-first arrays, with a batch of N
row vectors h of shape ``(N, D_in)``::

    f = h @ Ω.T + β                      # Linear.forward,   f: (N, D_out)
    dL/dΩ = (dL/df).T @ h                # Linear.backward,  (D_out, D_in), summed over the batch
    dL/dβ = Σ_n dL/df[n]                 #                   (D_out,), as ones(N) @ dL/df
    dL/dh = dL/df @ Ω                    #                   (N, D_in)
    dL/df = dL/dh ⊙ a'[f]                # ActivationLayer.backward

Each layer caches what its backward pass needs only when its forward pass is called with
``record=True``; a forward pass without it leaves that cache alone, and a backward pass
without any recorded forward is an error.
"""
from __future__ import annotations

import numpy as np

from . import activations as _activations
from . import init as _init
from .._fast.buffers import batch_sum
from .._checks import as_float_array, check_fits_in_memory, check_positive_int, resolve_dtype, resolve_rng
from .parameter import Parameter


class Linear:
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
    """

    def __init__(self, in_features: int, out_features: int, *, init="he_normal", bias_init="zeros",
                 rng=None, dtype="float64"):
        in_features = check_positive_int(in_features, "in_features")
        out_features = check_positive_int(out_features, "out_features")
        dtype = resolve_dtype(dtype)
        rng = resolve_rng(rng)
        shape = (out_features, in_features)
        check_fits_in_memory(out_features * (in_features + 1), dtype.itemsize,
                             f"Linear({in_features}, {out_features})'s weight and bias", "use smaller sizes")
        weight = _init.get(init)(shape, rng=rng, dtype=dtype, fan_in=in_features, fan_out=out_features)
        bias = _init.get(bias_init)((out_features,), rng=rng, dtype=dtype,
                                    fan_in=in_features, fan_out=out_features)
        self._set(weight, bias)

    @classmethod
    def from_arrays(cls, weight, bias=None, *, dtype=None, name: str = "weight") -> "Linear":
        """A layer holding copies of given arrays: weight (D_out, D_in), bias (D_out,) or (D_out, 1).

        ``bias=None`` means zeros. The arrays are copied (the layer never aliases user data).
        """
        weight = as_float_array(weight, name, dtype=dtype, copy=True)
        if weight.ndim != 2:
            raise ValueError(f"{name} must be 2-D (D_out, D_in), got shape {weight.shape}.")
        if bias is None:
            bias = np.zeros(weight.shape[0], dtype=weight.dtype)
        bias_name = name.replace("weight", "bias") if "weight" in name else "bias"
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

    def _set(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight = Parameter(weight, "weight")
        self.bias = Parameter(bias, "bias")
        self._input: np.ndarray | None = None

    @property
    def in_features(self) -> int:
        return self.weight.data.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.data.shape[0]

    @property
    def dtype(self) -> np.dtype:
        return self.weight.data.dtype

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]

    def forward(self, h: np.ndarray, record: bool = False, out: np.ndarray | None = None) -> np.ndarray:
        """f = h Ωᵀ + β for h of shape (N, D_in); returns f of shape (N, D_out), in ``out`` if given."""
        f = np.matmul(h, self.weight.data.T, out=out)
        f += self.bias.data
        if record:
            self._input = h
        return f

    def backward(self, grad_f: np.ndarray, input_grad: bool = True, *, out_weight: np.ndarray | None = None,
                 out_bias: np.ndarray | None = None, out_input: np.ndarray | None = None):
        """Gradients from dL/df of shape (N, D_out).

        Returns ``(dL/dh, dL/dΩ, dL/dβ)`` and adds dL/dΩ, dL/dβ to the parameters' ``grad``.
        With ``input_grad=False`` dL/dh is not computed (None): the first layer of a network
        skips that product, which costs as much as the layer's forward pass. ``out_weight``
        (D_out, D_in), ``out_bias`` (D_out,) and ``out_input`` (N, D_in) receive dL/dΩ, dL/dβ
        and dL/dh when given.
        """
        if self._input is None:
            raise RuntimeError(
                "Linear.backward needs the input of a recorded forward pass; "
                "call forward(x, record=True) first."
            )
        grad_weight = np.matmul(grad_f.T, self._input, out=out_weight)
        grad_bias = batch_sum(grad_f, out_bias)
        grad_input = np.matmul(grad_f, self.weight.data, out=out_input) if input_grad else None
        self.weight.accumulate(grad_weight)
        self.bias.accumulate(grad_bias)
        return grad_input, grad_weight, grad_bias

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"


class ActivationLayer:
    """h = a[f] elementwise, for any activation of :mod:`depthlab.nn.activations`."""

    def __init__(self, activation="relu"):
        self.activation = _activations.get(activation)
        self._f: np.ndarray | None = None
        self._h: np.ndarray | None = None

    def parameters(self) -> list[Parameter]:
        return []

    def forward(self, f: np.ndarray, record: bool = False, out: np.ndarray | None = None) -> np.ndarray:
        """h = a[f], in ``out`` when given and the activation can write there (use the result)."""
        h = self.activation.forward(f, out)
        if record:
            self._f, self._h = f, h
        return h

    def backward(self, grad_h: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """dL/df = dL/dh ⊙ a'[f], shape (N, D), in ``out`` when given (may be grad_h itself)."""
        if self._f is None:
            raise RuntimeError(
                "ActivationLayer.backward needs a recorded forward pass; call forward(x, record=True) first."
            )
        return self.activation.backward(grad_h, self._f, self._h, out)

    def __repr__(self) -> str:
        return f"ActivationLayer({self.activation!r})"
