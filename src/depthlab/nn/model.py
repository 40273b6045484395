"""``Sequential`` networks and the ``MLP`` builder: recording forward, full backward, input Jacobian.

A network is a list of layers in which every :class:`~depthlab.nn.layers.Linear` starts a new
layer k and the activation layers after it produce h_{k+1}::

    h_0 = x
    f_k = β_k + Ω_k h_k             k = 0 .. K      (K hidden layers, K + 1 Linear layers)
    h_{k+1} = a_k[f_k]              k = 0 .. K - 1
    output = a_K[f_K]               (a_K is the output activation, identity by default)

Shapes are batch-first: x is ``(N, D_0)``, f_k and h_{k+1} are ``(N, D_{k+1})``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from . import activations as _activations
from .._fast import buffers as _buffers
from .._fast.buffers import Buffers
from .._checks import (as_batch, as_float_array, as_list, check_fits_in_memory, check_positive_int, resolve_dtype,
                       resolve_rng)
from .layers import ActivationLayer, Linear
from .parameter import Parameter


def _no_buffer(key, shape, dtype) -> None:
    """``Buffers.take``'s stand-in for passes too small to reuse arrays (NumPy allocates)."""
    return None


class NonFiniteError(FloatingPointError):
    """A forward or backward pass produced NaN or Inf; the message names the first layer."""


@dataclass
class Trace:
    """Everything a recorded forward pass computed.

    Attributes
    ----------
    output : np.ndarray, shape (N, D_out)
    preactivations : list of np.ndarray
        [f_0, ..., f_K]; f_k has shape (N, D_{k+1}).
    activations : list of np.ndarray
        [h_0 = x, h_1, ..., h_K]; h_k has shape (N, D_k).
    """

    output: np.ndarray
    preactivations: list[np.ndarray]
    activations: list[np.ndarray]


@dataclass
class Gradients:
    """Everything a backward pass computed, for one batch (summed over its samples).

    Attributes
    ----------
    weights : list of np.ndarray
        dL/dΩ_k, shape (D_{k+1}, D_k), k = 0 .. K.
    biases : list of np.ndarray
        dL/dβ_k, shape (D_{k+1},).
    preactivations : list of np.ndarray, or None
        dL/df_k, shape (N, D_{k+1}) (None after ``backward(..., intermediates=False)``).
    activations : list of np.ndarray, or None
        dL/dh_k, shape (N, D_k), k = 0 .. K (dL/dh_0 is dL/dx; None after
        ``backward(..., intermediates=False)``).
    input : np.ndarray or None
        dL/dx, shape (N, D_0) (None after ``backward(..., input_grad=False)``).
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    preactivations: list[np.ndarray] | None
    activations: list[np.ndarray] | None
    input: np.ndarray


def _distinct(layers: list) -> list:
    """``layers`` with each object once. A layer records its forward pass for the backward
    pass, so one object in two places would differentiate the first at the second's values:
    an activation layer given again (as one ``nn.ReLU()`` is often reused in PyTorch) is
    copied; a Linear given again is refused, since depthlab has no tied weights."""
    first: dict[int, int] = {}
    distinct = []
    for i, layer in enumerate(layers):
        if id(layer) in first:
            if isinstance(layer, Linear):
                raise ValueError(
                    f"layers[{i}] is the Linear layer already given as layers[{first[id(layer)]}]; each Linear "
                    "can appear once (depthlab has no tied weights). Build a new Linear for each layer."
                )
            layer = copy.copy(layer)
            layer._f = layer._h = None
        first.setdefault(id(layer), i)
        distinct.append(layer)
    return distinct


class Sequential:
    """A feed-forward network of ``Linear`` and ``ActivationLayer`` layers.

    Parameters
    ----------
    layers : list
        Starts with a ``Linear``; consecutive ``Linear`` layers must chain
        (``out_features`` of one equals ``in_features`` of the next). Activation layers may
        also be given as activation names or :class:`~depthlab.nn.activations.Activation` objects;
        one activation layer given in several places becomes a copy in each (each records its
        own forward pass); a Linear given twice is refused.

    Examples
    --------
    >>> net = Sequential([Linear(1, 8, rng=0), "relu", Linear(8, 1, rng=1)])
    >>> y = net(np.zeros((5, 1)))                        # (5, 1)
    >>> trace = net.forward(x, record=True)
    >>> grads = net.backward(2 * (trace.output - y))     # sum-of-squares loss
    """

    def __init__(self, layers):
        layers = _distinct([layer if isinstance(layer, (Linear, ActivationLayer)) else ActivationLayer(layer)
                            for layer in layers])
        if not layers or not isinstance(layers[0], Linear):
            raise ValueError("Sequential needs a list of layers that starts with a Linear layer, "
                             f"got {layers[:1] or 'an empty list'}.")
        linears = [layer for layer in layers if isinstance(layer, Linear)]
        for k, (a, b) in enumerate(zip(linears, linears[1:])):
            if a.out_features != b.in_features:
                raise ValueError(
                    f"Linear layers {k} and {k + 1} do not chain: layer {k} gives {a.out_features} "
                    f"features but layer {k + 1} expects {b.in_features} (in_features)."
                )
        dtypes = {layer.dtype for layer in linears}
        if len(dtypes) > 1:
            raise ValueError(f"all layers must share one dtype, got {sorted(map(str, dtypes))}; "
                             "build them with the same dtype= argument.")
        self.layers = layers
        self.linears: list[Linear] = linears
        # blocks[k] = (Linear k, the activation layers that follow it)
        self._blocks: list[tuple[Linear, list[ActivationLayer]]] = []
        for layer in layers:
            if isinstance(layer, Linear):
                self._blocks.append((layer, []))
            else:
                self._blocks[-1][1].append(layer)
        for k, (linear, _) in enumerate(self._blocks):
            linear.weight.name, linear.bias.name = f"weights[{k}]", f"biases[{k}]"
        self._recorded: tuple[int, int] | None = None  # output shape of the last recorded pass
        self._buffers = Buffers()
        self._widest = max(linear.out_features for linear in linears)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, weights, biases=None, activation="relu", output_activation=None,
                    dtype=None) -> "Sequential":
        """A network from the seeds' lists of arrays.

        Parameters
        ----------
        weights : list of array_like
            Ω_k of shape (D_{k+1}, D_k), as the seeds' ``all_weights``.
        biases : list of array_like, optional
            β_k of shape (D_{k+1},) or (D_{k+1}, 1) (the seeds' column vectors); zeros if None.
        activation : name, Activation or list of them
            The hidden activation, or one per hidden layer (len(weights) - 1 entries).
        output_activation : name or Activation, optional
            Applied to f_K; identity when None.
        """
        if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)) or not weights:
            raise TypeError("weights must be a non-empty list of 2-D arrays (one per layer), "
                            f"got {type(weights).__name__}.")
        if biases is None:
            biases = [None] * len(weights)
        if not isinstance(biases, (list, tuple)) or len(biases) != len(weights):
            got = len(biases) if isinstance(biases, (list, tuple)) else type(biases).__name__
            raise ValueError(f"biases must be a list with one entry per weight matrix ({len(weights)}), got {got}.")
        if dtype is None:
            kinds = [np.asarray(w).dtype for w in weights]
            dtype = np.float32 if all(k == np.float32 for k in kinds) else np.float64
        dtype = resolve_dtype(dtype)
        hidden = as_list(activation, len(weights) - 1, "activation")
        layers: list = []
        for k, (weight, bias) in enumerate(zip(weights, biases)):
            layers.append(Linear.from_arrays(weight, bias, dtype=dtype, name=f"weights[{k}]"))
            if k < len(weights) - 1:
                layers.append(ActivationLayer(hidden[k]))
        if output_activation is not None:
            layers.append(ActivationLayer(output_activation))
        return cls(_packed(layers))

    # -- structure ------------------------------------------------------------------------
    @property
    def layer_activations(self) -> list[_activations.Activation]:
        """The activation after each Linear layer (identity where there is none).

        A block with several activation layers reports only its first; use ``layers`` for all.
        """
        return [acts[0].activation if acts else _activations.get("identity") for _, acts in self._blocks]

    @property
    def in_features(self) -> int:
        return self.linears[0].in_features

    @property
    def out_features(self) -> int:
        return self.linears[-1].out_features

    @property
    def widths(self) -> list[int]:
        """[D_0, D_1, ..., D_{K+1}]: input, hidden and output widths."""
        return [self.in_features] + [linear.out_features for linear in self.linears]

    @property
    def depth(self) -> int:
        """K, the number of hidden layers."""
        return len(self.linears) - 1

    @property
    def dtype(self) -> np.dtype:
        return self.linears[0].dtype

    def parameters(self) -> list[Parameter]:
        """[Ω_0, β_0, Ω_1, β_1, ...] as :class:`Parameter` objects."""
        return [p for linear in self.linears for p in linear.parameters()]

    def n_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            p.zero_grad(set_to_none)

    def get_weights(self) -> list[np.ndarray]:
        """Copies of [Ω_0, β_0, Ω_1, β_1, ...] (Keras's ``get_weights``)."""
        return [p.data.copy() for p in self.parameters()]

    def set_weights(self, arrays) -> None:
        """Copy arrays into the parameters in place (shapes must match ``get_weights``)."""
        params = self.parameters()
        if len(arrays) != len(params):
            raise ValueError(f"set_weights needs {len(params)} arrays, got {len(arrays)}.")
        for p, a in zip(params, arrays):
            a = np.asarray(a)
            if a.shape != p.shape:
                raise ValueError(f"set_weights: {p.name} has shape {p.shape}, got an array of shape {a.shape}.")
            p.data[...] = a

    def copy(self) -> "Sequential":
        """An independent copy (same architecture, copied weights, no gradients)."""
        return self.astype(self.dtype)

    def astype(self, dtype) -> "Sequential":
        """A copy of the network in another dtype ("float64" or "float32")."""
        dtype = resolve_dtype(dtype)
        layers = [Linear.from_arrays(layer.weight.data, layer.bias.data, dtype=dtype)
                  if isinstance(layer, Linear) else ActivationLayer(layer.activation)
                  for layer in self.layers]
        return Sequential(_packed(layers))

    # -- forward --------------------------------------------------------------------------
    def __call__(self, x) -> np.ndarray:
        """The network's output for x of shape (N, D_0): an array (N, D_out)."""
        return self.forward(x)

    def forward(self, x, record: bool = False):
        """Run the network on a batch.

        Parameters
        ----------
        x : array_like, shape (N, D_0)
        record : bool
            If True, keep what the backward pass needs and return a :class:`Trace` with every
            f_k and h_k; if False, return only the output array (N, D_out).

        Raises
        ------
        ValueError
            x of the wrong shape, a non-float dtype, or NaN/Inf in x.
        NonFiniteError
            The output overflowed; the message names the first layer that did.
        """
        x = self._check_input(x, "x", finite=False)
        trace = self._forward(x, record)
        output = trace.output if record else trace
        if not np.isfinite(output).all():
            self._raise_non_finite(x)
        return trace

    def _check_input(self, x, name: str, finite: bool) -> np.ndarray:
        weight = self.linears[0].weight.data
        if (type(x) is np.ndarray and x.dtype == weight.dtype and x.ndim == 2
                and x.shape[1] == weight.shape[1] and x.shape[0] > 0 and not finite):
            return x  # already a valid batch: the training loop's case, nothing to convert
        return as_batch(x, name, self.in_features, dtype=self.dtype, finite=finite,
                        owner=f"the network ({self.in_features} inputs → {self.out_features} outputs):")

    def _forward(self, x: np.ndarray, record: bool):
        """The forward pass without checks (the training loop calls this on checked data)."""
        with np.errstate(over="ignore", invalid="ignore"):
            if not record:
                h = x
                for layer in self.layers:
                    h = layer.forward(h)
                return h
            return self._forward_recorded(x)

    def _forward_recorded(self, x: np.ndarray) -> Trace:
        """f_k and h_{k+1} of every layer, cached in the layers for the backward pass.

        When the batch makes them large, the arrays are the network's reusable buffers (see
        :mod:`depthlab._fast.buffers`): those of the last recorded pass are written over unless
        something outside still holds them. Small ones NumPy allocates.
        """
        n, last = x.shape[0], len(self._blocks) - 1
        take = self._reusable_buffers(n)
        if take is not _no_buffer:
            self._release_caches()
        preactivations, activations = [], [x]
        h = x
        for k, (linear, acts) in enumerate(self._blocks):
            weight = linear.weight.data
            h = linear.forward(h, record=True, out=take(("f", k), (n, weight.shape[0]), weight.dtype))
            preactivations.append(h)
            for j, act in enumerate(acts):  # a buffer only where the activation can write into it
                out = None if act.activation.function_out is None else take(("h", k, j), h.shape, h.dtype)
                h = act.forward(h, record=True, out=out)
            if k < last:
                activations.append(h)
        self._recorded = h.shape
        return Trace(output=h, preactivations=preactivations, activations=activations)

    def _reusable_buffers(self, n: int):
        """``Buffers.take`` when a batch of n makes the arrays large enough to reuse, else the
        stand-in that always answers None (NumPy allocates)."""
        if n * self._widest * self.linears[0].weight.data.itemsize >= _buffers.REUSE_BYTES:
            return self._buffers.take
        return _no_buffer

    def _release_caches(self) -> None:
        """Drop the layers' references to the last recorded pass (so its buffers can be reused)."""
        for linear, acts in self._blocks:
            linear._input = None
            for act in acts:
                act._f = act._h = None

    def _raise_non_finite(self, x: np.ndarray):
        if not np.isfinite(x).all():
            as_float_array(x, "x")  # raises the standard NaN/Inf message
        trace = self._forward(x, record=True)
        for k, f in enumerate(trace.preactivations):
            if not np.isfinite(f).all():
                largest = np.max(np.abs(trace.activations[k]))
                raise NonFiniteError(
                    f"the forward pass overflowed at layer {k}: f_{k} = β_{k} + Ω_{k} h_{k} has non-finite "
                    f"values ({self.dtype} range exceeded; max |h_{k}| = {largest:.3g}). The signal grows "
                    "with depth: use a variance-preserving init (e.g. init='he_normal' for ReLU), "
                    "a smaller weight variance, or dtype='float64'."
                )
        raise NonFiniteError("the network's output activation produced non-finite values.")

    # -- backward -------------------------------------------------------------------------
    def backward(self, grad_output, input_grad: bool = True, intermediates: bool = True) -> Gradients:
        """Backpropagate dL/d(output) through the last recorded forward pass.

        Parameters
        ----------
        grad_output : array_like, shape (N, D_out)
            dL/d(output) for each sample, e.g. ``dl.losses.mse.grad(output, y)``.
        input_grad : bool, default True
            Compute dL/dx. Training does not need it, and it costs as much as the first
            layer's forward pass; with False, ``grads.input`` and ``grads.activations[0]``
            are None (PyTorch likewise skips it unless the input requires grad).
        intermediates : bool, default True
            Keep dL/df_k and dL/dh_k. Training needs only the parameters' gradients: with
            False, ``grads.preactivations`` and ``grads.activations`` are None and each
            dL/df_k is formed in place of dL/dh_{k+1}, which saves a pass over memory per
            layer (PyTorch likewise keeps no intermediate gradient unless asked).

        Returns
        -------
        Gradients
            dL/dΩ_k and dL/dβ_k (summed over the batch), dL/df_k, dL/dh_k and dL/dx. The
            parameter gradients are also *added* to each ``Parameter.grad``.
        """
        if self._recorded is None:
            raise RuntimeError(
                "backward() needs a recorded forward pass: call net.forward(x, record=True) first "
                "(net(x) and forward(x) without record keep nothing for backward). backward() "
                "always uses the most recent recorded forward pass."
            )
        grad = as_float_array(grad_output, "grad_output", dtype=self.linears[0].weight.data.dtype)
        if grad.shape != self._recorded:
            raise ValueError(
                f"grad_output must have the output's shape {self._recorded} "
                f"(dL/d(output) for each sample), got {grad.shape}."
            )
        return self._backward(grad, input_grad, intermediates)

    def _backward(self, grad: np.ndarray, input_grad: bool = True, intermediates: bool = True) -> Gradients:
        """The backward pass without checks; the parameter gradients go to the network's flat
        gradient array (:meth:`_parameter_gradients`), other large arrays to its reusable buffers.

        Per layer k, from dL/dh_{k+1}: dL/df_k = dL/dh_{k+1} ⊙ a'[f_k]; dL/dΩ_k =
        (dL/df_k)ᵀ h_k; dL/dβ_k = Σ_n dL/df_k[n]; dL/dh_k = dL/df_k Ω_k. Without
        ``intermediates``, dL/df_k overwrites dL/dh_{k+1} (never the caller's grad_output).
        """
        n, K = grad.shape[0], len(self._blocks) - 1
        take = self._reusable_buffers(n)
        parameter_gradients = self._parameter_gradients().take()
        grad_output = grad
        weights, biases = [None] * (K + 1), [None] * (K + 1)
        grad_f, grad_h = [None] * (K + 1), [None] * (K + 1)
        with np.errstate(over="ignore", invalid="ignore"):
            for k in range(K, -1, -1):
                linear, acts = self._blocks[k]
                for j in range(len(acts) - 1, -1, -1):
                    if intermediates or grad is grad_output:
                        out = take(("df", k, j), grad.shape, grad.dtype)
                    else:
                        out = grad  # this pass's own dL/dh, needed no more
                    grad = acts[j].backward(grad, out=out)
                grad_f[k] = grad
                keep_input = input_grad or k > 0
                grad, weights[k], biases[k] = linear.backward(
                    grad, keep_input, out_weight=parameter_gradients[2 * k], out_bias=parameter_gradients[2 * k + 1],
                    out_input=take(("dh", k), (n, linear.in_features), grad.dtype) if keep_input else None)
                grad_h[k] = grad
        if not intermediates:
            grad_f = grad_h = None
        return Gradients(weights=weights, biases=biases, preactivations=grad_f,
                         activations=grad_h, input=grad)

    def _parameter_gradients(self) -> _buffers.FlatArrays:
        """Where backward passes write dL/dΩ_0, dL/dβ_0, dL/dΩ_1, …: views of one flat array,
        reused while no one keeps any of them (see :class:`depthlab._fast.buffers.FlatArrays`)."""
        shapes = [p.data.shape for linear, _ in self._blocks for p in (linear.weight, linear.bias)]
        return self._buffers.parameter_gradients(shapes, self.linears[0].weight.data.dtype)

    # -- Jacobian -------------------------------------------------------------------------
    def input_jacobian(self, x) -> np.ndarray:
        """∂ output / ∂x for every sample, analytically: shape (N, D_out, D_0).

        Uses reverse mode (one batched backward pass per output unit, all at once) when
        D_out ≤ D_0, forward mode otherwise; never a per-sample loop or a dense diagonal.
        """
        x = self._check_input(x, "x", finite=True)
        with np.errstate(over="ignore", invalid="ignore"):
            slopes, h = [], x
            for linear, acts in self._blocks:
                f = linear.forward(h)
                slope = None
                for act in acts:
                    out = act.activation.function(f)
                    d = act.activation.derivative(f, out)
                    slope = d if slope is None else slope * d
                    f = out
                slopes.append(slope)
                h = f
            if self.out_features <= self.in_features:
                jac = None  # (N, D_out, D_k), built from the output backwards
                for (linear, _), slope in zip(reversed(self._blocks), reversed(slopes)):
                    if jac is None:
                        eye = np.eye(self.out_features, dtype=self.dtype)
                        jac = np.broadcast_to(eye, (x.shape[0],) + eye.shape)
                    if slope is not None:
                        jac = jac * slope[:, None, :]
                    jac = jac @ linear.weight.data
                return np.ascontiguousarray(jac)
            jac = None  # (N, D_k, D_0), built from the input forwards
            for (linear, _), slope in zip(self._blocks, slopes):
                jac = (np.broadcast_to(linear.weight.data, (x.shape[0],) + linear.weight.shape)
                       if jac is None else linear.weight.data @ jac)
                if slope is not None:
                    jac = jac * slope[:, :, None]
            return np.ascontiguousarray(jac)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the architecture and weights to an ``.npz`` file (exact round trip)."""
        from .serialization import save
        save(self, path)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}(  # {self.n_parameters():,} parameters, {self.dtype}"]
        lines += [f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers)]
        return "\n".join(lines) + "\n)"


def MLP(in_features: int, hidden, out_features: int, activation="relu", init="he_normal",
        bias_init="zeros", output_activation=None, rng=0, dtype="float64") -> Sequential:
    """A fully-connected network D_0 → hidden[0] → … → hidden[-1] → D_out.

    Parameters
    ----------
    in_features, out_features : int
    hidden : list of int (or one int)
        Hidden widths, e.g. ``[80] * 50`` for the seed notebook's 50-layer, 80-wide network;
        ``[]`` gives a linear model.
    activation : name, Activation, or list with one entry per hidden layer
    init : name, number, callable, dict, or list with one entry per Linear layer
        Weight initializer (see :func:`depthlab.nn.init.get`); a number is σ²_Ω.
    bias_init : same, default "zeros"
    output_activation : name or Activation, optional (identity when None)
    rng : np.random.Generator or int, default 0
        Layers draw from it in order, so one seed fixes the whole network.
    dtype : "float64" or "float32"
    """
    in_features = check_positive_int(in_features, "in_features")
    out_features = check_positive_int(out_features, "out_features")
    if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
        hidden = [hidden]
    if not isinstance(hidden, (list, tuple)):
        raise TypeError(f"hidden must be a list of widths, e.g. [80] * 50, got {type(hidden).__name__}.")
    hidden = [check_positive_int(w, f"hidden[{i}]") for i, w in enumerate(hidden)]
    activations = as_list(activation, len(hidden), "activation")
    inits = as_list(init, len(hidden) + 1, "init")
    bias_inits = as_list(bias_init, len(hidden) + 1, "bias_init")
    rng, dtype = resolve_rng(rng), resolve_dtype(dtype)
    widths = [in_features, *hidden, out_features]
    check_fits_in_memory(sum(a * b + b for a, b in zip(widths, widths[1:])), dtype.itemsize,
                         f"MLP({in_features}, {hidden if len(hidden) <= 4 else '[…]'}, {out_features})'s parameters",
                         "use narrower layers")
    layers: list = []
    for k in range(len(widths) - 1):
        layers.append(Linear(widths[k], widths[k + 1], init=inits[k], bias_init=bias_inits[k],
                             rng=rng, dtype=dtype))
        if k < len(hidden):
            layers.append(ActivationLayer(activations[k]))
    if output_activation is not None:
        layers.append(ActivationLayer(output_activation))
    return Sequential(_packed(layers))


def _packed(layers: list) -> list:
    """``layers``, every Linear's Ω_k and β_k moved into one flat array, laid end to end in
    the order Ω_0, β_0, Ω_1, … (that of ``parameters()`` and of ``TrainStep``'s gradients).

    An optimizer then updates them all as one array (:mod:`depthlab._fast.flat`), which on
    small networks saves much of its time: per array, a NumPy call costs as much as the
    arithmetic on a few thousand entries. Beyond ``_buffers.FLAT_BYTES`` in all, the flat
    path does not pay (see there), so larger networks keep one array per parameter (and do
    not pay for the copy). Only for layers the caller has just built: ``Parameter.data``
    becomes a view, and an array taken from it earlier would no longer be the network's.
    """
    params = [p for layer in layers if isinstance(layer, Linear) for p in (layer.weight, layer.bias)]
    if sum(p.data.nbytes for p in params) > _buffers.FLAT_BYTES:
        return layers
    _, views = _buffers.flat_views([p.data.shape for p in params], params[0].data.dtype)
    for p, view in zip(params, views):
        view[...] = p.data
        p.data = view
    return layers
