"""``Sequential`` networks and the ``MLP`` builder: recording forward, full backward, input Jacobian.

A network runs its layers in order (any :class:`~depthlab.nn.layer.Layer`, nested
Sequentials included). A plain MLP alternates Linear layers and activations; every
:class:`~depthlab.nn.layers.Linear` starts a new layer k and the layers after it produce h_{k+1}::

    h_0 = x
    f_k = β_k + Ω_k h_k             k = 0 .. K      (K hidden layers, K + 1 Linear layers)
    h_{k+1} = a_k[f_k]              k = 0 .. K - 1
    output = a_K[f_K]               (a_K is the output activation, identity by default)

Shapes are batch-first: x is ``(N, D_0)``, f_k and h_{k+1} are ``(N, D_{k+1})``. The
passes themselves run in :mod:`depthlab.nn.engine`, on the layers' own methods.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter, is_

import numpy as np

from .. import _html
from . import activations as _activations
from . import init as _init
from .._checks import (as_batch, as_float_array, as_list, check_fits_in_memory, check_positive_int, resolve_dtype,
                       resolve_rng)
from .._fast.buffers import entry_sum
from .._fast.flat import pack
from .engine import PLANS, Engine
from .halves import HalvesPass
from .layer import Layer, checked_input_grad, checked_output, computes_rows_apart, input_jacobian
from .layers import ActivationLayer, Linear
from .parameter import Parameter, new_values


GRAD = attrgetter("grad")


class NonFiniteError(FloatingPointError):
    """A forward or backward pass produced NaN or Inf; the message names the first layer."""


@dataclass(eq=False)
class Trace:
    """Everything a recorded forward pass computed.

    Attributes
    ----------
    output : np.ndarray, shape (N, D_out)
    layer_outputs : list of np.ndarray
        The output of each top-level layer, in order (the last is ``output``).
    input : np.ndarray, shape (N, D_0)
        x, as the network saw it.
    preactivations : list of np.ndarray
        [f_0, ..., f_K] (a network that starts with a Linear layer): the output of each
        top-level Linear layer; f_k has shape (N, D_{k+1}).
    activations : list of np.ndarray
        [h_0 = x, h_1, ..., h_K]: the input of each top-level Linear layer; h_k has shape (N, D_k).
    """

    output: np.ndarray
    layer_outputs: list
    input: np.ndarray
    _linear_positions: list = field(default_factory=list, repr=False)
    _pass: object = field(default=None, repr=False)
    _engine: object = field(default=None, repr=False)  # the network's engine that made the pass

    @property
    def preactivations(self) -> list[np.ndarray]:
        return [self.layer_outputs[i] for i in _mlp_positions(self._linear_positions)]

    @property
    def activations(self) -> list[np.ndarray]:
        positions = _mlp_positions(self._linear_positions)
        return [self.input] + [self.layer_outputs[i - 1] for i in positions[1:]]

    def __repr__(self) -> str:
        return f"Trace({self.input.shape[0]} samples, {len(self.layer_outputs)} layer outputs, output {self.output.shape})"

    def _repr_html_(self) -> str:
        rows = [[i, str(out.shape), *_statistics(out)] for i, out in enumerate(self.layer_outputs)]
        return _html.container(_html.heading(repr(self)),
                               _html.table(["layer", "output shape", "mean", "std", "max |·|"], rows))


def _statistics(array: np.ndarray) -> list[float]:
    """(mean, std, largest magnitude) of an array as floats, for the displays (NaN when empty or overflowed)."""
    with np.errstate(over="ignore", invalid="ignore"):
        values = np.asarray(array, dtype=np.float64)
        return [float(values.mean()), float(values.std()), float(np.abs(values).max())] if values.size else [
            float("nan")] * 3


@dataclass(eq=False)
class Gradients:
    """Everything a backward pass computed, for one batch (summed over its samples).

    Attributes
    ----------
    weights, biases : list of np.ndarray, or None
        dL/dΩ_k (D_{k+1}, D_k) and dL/dβ_k (D_{k+1},) of each top-level Linear layer k, from
        this pass alone (``Parameter.grad`` holds the sum over passes since ``zero_grad``);
        None after ``backward(..., parameter_grads=False)``.
    layer_outputs : list of np.ndarray, or None
        dL/d(output of each top-level layer), in order (None after ``intermediates=False``).
    input : np.ndarray or None
        dL/dx, shape (N, D_0) (None after ``backward(..., input_grad=False)``).
    parameters : list of np.ndarray, or None
        dL/dθ of this pass for every parameter, in the order of ``net.parameters()`` (None
        after ``parameter_grads=False``).
    preactivations : list of np.ndarray, or None
        dL/df_k, shape (N, D_{k+1}) (None after ``backward(..., intermediates=False)``).
    activations : list of np.ndarray, or None
        dL/dh_k, shape (N, D_k), k = 0 .. K (dL/dh_0 is dL/dx; None after ``intermediates=False``).
    """

    weights: list | None
    biases: list | None
    layer_outputs: list | None
    input: np.ndarray | None
    parameters: list | None = field(repr=False)
    _linear_positions: list = field(default_factory=list, repr=False)

    @property
    def preactivations(self) -> list[np.ndarray] | None:
        if self.layer_outputs is None:
            return None
        return [self.layer_outputs[i] for i in _mlp_positions(self._linear_positions)]

    @property
    def activations(self) -> list[np.ndarray] | None:
        if self.layer_outputs is None:
            return None
        positions = _mlp_positions(self._linear_positions)
        return [self.input] + [self.layer_outputs[i - 1] for i in positions[1:]]

    def __repr__(self) -> str:
        given = ["no parameter gradients" if self.parameters is None else f"{len(self.parameters)} parameter gradients",
                 "with dL/d(each layer's output)" if self.layer_outputs is not None else "no dL/d(each layer's output)"]
        return f"Gradients({', '.join(given)})"

    def _repr_html_(self) -> str:
        parts = [_html.heading(repr(self))]
        if self.weights is not None:
            parts.append(_html.table(["Linear layer k", "‖dL/dΩ_k‖", "‖dL/dβ_k‖"],
                                     [[k, _norm(w), _norm(b)] for k, (w, b) in enumerate(zip(self.weights, self.biases))]))
        if self.layer_outputs is not None:
            parts.append(_html.table(["layer", "std of dL/d(output)", "max |·|"],
                                     [[i, *_statistics(g)[1:]] for i, g in enumerate(self.layer_outputs)]))
        return _html.container(*parts)


def _norm(array) -> float | None:
    return None if array is None else float(np.linalg.norm(np.asarray(array, dtype=np.float64)))


def _mlp_positions(positions: list[int]) -> list[int]:
    """The top-level Linear positions, when the network starts with one (f_k and h_k exist)."""
    if not positions or positions[0] != 0:
        raise ValueError("preactivations and activations are defined for networks that start with a Linear "
                         "layer (f_k is the output of Linear k, h_k its input); use layer_outputs instead.")
    return positions


def _sums_finite(output: np.ndarray) -> bool:
    """Whether the entries of ``output`` sum to a finite number (one BLAS pass; False when NumPy
    raises or warns about the non-finite sum under the caller's error state)."""
    try:
        return math.isfinite(entry_sum(output))
    except (FloatingPointError, RuntimeWarning):
        return False


def _refuse_repeated_parameters(layers: list) -> None:
    """A layer with parameters may appear once: its forward and backward would share one
    gradient array (depthlab has no tied weights). Layers without parameters may repeat."""
    first: dict[int, int] = {}
    for i, layer in enumerate(layers):
        if id(layer) in first and layer.parameters():
            raise ValueError(
                f"layers[{i}] is the {type(layer).__name__} layer already given as layers[{first[id(layer)]}]; a layer "
                f"with parameters can appear once (depthlab has no tied weights). Build a new {type(layer).__name__} "
                "for each place."
            )
        first.setdefault(id(layer), i)
    places: dict[int, str] = {}
    for i, layer in enumerate(layers):
        for name, parameter in layer.parameter_places(f"{i}."):
            if id(parameter) in places:
                raise ValueError(
                    f"the parameter {name!r} is the one already at {places[id(parameter)]!r}: a layer with parameters "
                    "(or a Parameter) can appear once in a network, nested ones included (depthlab has no tied "
                    "weights). Build a new layer for each place.")
            places[id(parameter)] = name


class LayerList(list):
    """A Sequential's ``layers``: a list that refuses changes (the network's engine, its chain
    check and its parameter list were made from it), with a hint to build a new network."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a Sequential's layers are fixed when it is built (its engine, widths and parameters "
                        "come from them); build a new one instead, e.g. dl.Sequential([*net.layers, new_layer]) "
                        "or dl.Sequential(net.layers[:2]).")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __reduce__(self):
        return LayerList, (list(self),)

    def __reduce_ex__(self, protocol):
        return self.__reduce__()


def _as_layer(layer, i: int) -> Layer:
    if isinstance(layer, Layer):
        return layer
    if isinstance(layer, (str, _activations.Activation)):
        return ActivationLayer(layer)
    hint = (" Convert a torch module with dl.from_torch(module)." if type(layer).__module__.startswith("torch") else
            " Pass an instance: dl.Linear(3, 4), not dl.Linear." if isinstance(layer, type) else "")
    raise TypeError(f"layers[{i}] must be a depthlab Layer (e.g. dl.Linear(3, 4)) or an activation name, "
                    f"got {type(layer).__name__} {layer!r:.100}.{hint}")


def _buffers_of(layers: list) -> list | None:
    """Copies of the buffers of those ``layers`` in train mode (None when there are none)."""
    saved = [(layer, name, np.array(value, copy=True)) for layer in layers if layer.training
             for name in layer.buffer_names if (value := getattr(layer, name)) is not None]
    return saved or None


def _restore_buffers(saved: list | None) -> None:
    """Put back what :func:`_buffers_of` copied (arrays in place, so references to them stay valid)."""
    for layer, name, value in saved or ():
        current = getattr(layer, name)
        if isinstance(current, np.ndarray) and current.shape == value.shape:
            current[...] = value
        else:
            setattr(layer, name, value.item() if value.ndim == 0 else value)


def _check_watch(watch, plan: str) -> None:
    if not callable(watch):
        raise TypeError(f"watch must be a function watch(i, array) called after each layer, got {type(watch).__name__}.")
    if plan == "backward":
        raise ValueError("watch cannot follow a pass under keep='backward' (the training plan overwrites its "
                         "arrays in place); record the pass with keep='trace' or record=True instead.")


class Sequential(Layer):
    """A feed-forward network: layers applied in order.

    Parameters
    ----------
    *layers : Layer, activation name, or one list of them
        ``Sequential([Linear(1, 8), "relu", Linear(8, 1)])`` or ``Sequential(Linear(1, 8), "relu", ...)``.
        Any :class:`~depthlab.nn.layer.Layer` (nested Sequentials too); names and
        :class:`~depthlab.nn.activations.Activation` objects become activation layers.
        Consecutive Linear layers must chain (``out_features`` of one equals ``in_features``
        of the next, through any layers that keep the width).

    Examples
    --------
    >>> net = Sequential([Linear(1, 8, rng=0), "relu", Linear(8, 1, rng=1)])
    >>> y = net(np.zeros((5, 1)))                        # (5, 1)
    >>> trace = net.forward(x, record=True)
    >>> grads = net.backward(2 * (trace.output - y))     # sum-of-squares loss

    As a layer inside another network, ``forward(x, cache)`` and ``backward(grad, cache)``
    follow the layer protocol. ``net[i]`` is a layer, ``net[i:j]`` a Sequential of the same
    layers; ``net.layers`` is fixed once built (``dl.Sequential([*net.layers, layer])`` extends).
    """

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        layers = [_as_layer(layer, i) for i, layer in enumerate(layers)]
        if not layers:
            raise ValueError("Sequential needs at least one layer, got an empty list. "
                             "Example: dl.Sequential([dl.Linear(2, 8), 'relu', dl.Linear(8, 1)]).")
        _refuse_repeated_parameters(layers)
        self.layers = layers = LayerList(layers)
        self.linears: list[Linear] = [layer for layer in layers if isinstance(layer, Linear)]
        self._check_chain()
        parameters = self.parameters()
        dtypes = {p.dtype for p in parameters}
        if len(dtypes) > 1:
            raise ValueError(f"all layers must share one dtype, got {sorted(map(str, dtypes))}; "
                             "build them with the same dtype= argument.")
        for k, linear in enumerate(self.linears):
            linear.weight.name, linear.bias.name = f"weights[{k}]", f"biases[{k}]"
        self._linear_positions = [i for i, layer in enumerate(layers) if isinstance(layer, Linear)]
        self._engine = Engine(layers, parameters)
        # layers whose forward pass in train mode updates buffers (batch norm's running statistics)
        self._stateful = [layer for top in layers for layer in top.layers_within() if layer.buffer_names]
        index = {id(p): i for i, p in enumerate(self._engine.parameters)}
        self._weight_indices = [index[id(linear.weight)] for linear in self.linears]
        self._bias_indices = [index[id(linear.bias)] for linear in self.linears]

    def _check_chain(self) -> None:
        """Widths must agree wherever both sides are known (Linear layers know theirs, and so do
        nested networks; a layer whose ``output_features`` returns None leaves the width unknown
        until the next Linear)."""
        features, giver = None, None
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Linear):
                if features is not None and features != layer.in_features:
                    k = self.linears.index(layer)
                    if giver is None:
                        raise ValueError(f"layers[{i}] ({layer!r}) expects {layer.in_features} input features "
                                         f"(in_features), but the layers before it give {features}.")
                    raise ValueError(f"Linear layers {k - 1} and {k} do not chain: layer {k - 1} gives {features} "
                                     f"features but layer {k} expects {layer.in_features} (in_features).")
                features, giver = layer.out_features, layer
            elif features is not None:
                try:
                    width = layer.output_features(features)
                except ValueError as error:
                    raise ValueError(f"layers[{i}] ({type(layer).__name__}) cannot take the {features} features "
                                     f"the layers before it give: {error}") from None
                if width != features:  # not a pass-through (activation, norm): the width is this layer's
                    features, giver = width, None
            elif getattr(layer, "in_features", None) is not None:  # a nested network or block says its own
                features, giver = layer.output_features(layer.in_features), None

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
    def children(self):
        return ((str(i), layer) for i, layer in enumerate(self.layers))

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index):
        """``net[i]``: a layer; ``net[i:j]``: a Sequential of those layers (the same objects, as
        PyTorch's slicing: training one trains the other)."""
        if isinstance(index, slice):
            layers = self.layers[index]
            if not layers:
                raise IndexError(f"net[{index.start}:{index.stop}:{index.step}] selects none of the network's "
                                 f"{len(self.layers)} layers.")
            names = [(p, p.name) for p in self.parameters()]
            part = Sequential(layers)
            for p, name in names:  # the layers keep their names in this network ("weights[1]", not [0])
                p.name = name
            part.training = self.training
            return part
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"a network is indexed by an int or a slice (net[0], net[1:3]), got {type(index).__name__} "
                            f"{index!r}; named_parameters() gives the parameters by name.")
        return self.layers[index]

    def output_features(self, in_features):
        features = in_features
        for layer in self.layers:
            if isinstance(layer, Linear):
                features = layer.out_features if features is None else layer.output_features(features)
            elif features is not None:
                features = layer.output_features(features)
        return features

    @property
    def blocks(self) -> list[tuple[Linear, list[Layer]]]:
        """``(Linear k, the layers after it up to the next Linear)`` for each top-level Linear
        layer k: the seeds' layer structure f_k = β_k + Ω_k h_k, h_{k+1} = a[f_k]."""
        positions = self._linear_positions + [len(self.layers)]
        return [(self.layers[start], self.layers[start + 1:end]) for start, end in zip(positions, positions[1:])]

    @property
    def layer_activations(self) -> list[_activations.Activation]:
        """The activation after each top-level Linear layer (identity where there is none).

        A block with several activation layers reports only its first; use ``layers`` for all.
        """
        positions = self._linear_positions + [len(self.layers)]
        found = []
        for start, end in zip(positions, positions[1:]):
            acts = [layer for layer in self.layers[start + 1:end] if isinstance(layer, ActivationLayer)]
            found.append(acts[0].activation if acts else _activations.get("identity"))
        return found

    @property
    def in_features(self) -> int | None:
        """D_0, the input width (None when the first layer does not say)."""
        return getattr(self.layers[0], "in_features", None)

    @property
    def out_features(self) -> int | None:
        return self.output_features(self.in_features) if self.in_features is not None else (
            self.linears[-1].out_features if self.linears else None)

    @property
    def widths(self) -> list[int]:
        """[D_0, D_1, ..., D_{K+1}]: input, hidden and output widths (of the Linear layers; [] without any)."""
        if not self.linears:
            return []
        return [self.linears[0].in_features] + [linear.out_features for linear in self.linears]

    @property
    def depth(self) -> int:
        """K, the number of hidden layers (0 without Linear layers)."""
        return max(len(self.linears) - 1, 0)

    @property
    def dtype(self) -> np.dtype:
        parameters = self._engine.parameters   # the parameters, listed once when the network was built
        return parameters[0].dtype if parameters else np.dtype(np.float64)

    def get_weights(self) -> list[np.ndarray]:
        """Copies of [Ω_0, β_0, Ω_1, β_1, ...] (Keras's ``get_weights``)."""
        return [p.data.copy() for p in self.parameters()]

    def set_weights(self, arrays) -> None:
        """Copy arrays into the parameters in place (shapes must match ``get_weights``); all are
        checked first (see :func:`depthlab.nn.parameter.new_values`), so a refused call changes nothing."""
        params = self.parameters()
        for p, a in zip(params, new_values(arrays, params)):
            p.data[...] = a

    def adopt_arrays(self, other: "Sequential") -> None:
        """Let this network's recorded passes write into the arrays ``other`` kept for its own
        (``other`` keeps none): for a network built to replace another of the same widths and
        batch size, e.g. at a new seed or depth. Fresh arrays cost a page fault per 4 KiB page
        (a third of a probe's time at 50×80 on 1000 samples); these are paged in already. An
        array is reused only where its shape and dtype fit and nobody holds it, so the numbers
        are the same either way."""
        if not isinstance(other, Sequential):
            raise TypeError(f"adopt_arrays needs another network (dl.Sequential), got {type(other).__name__}.")
        self._engine.adopt_arrays(other._engine)

    def copy(self) -> "Sequential":
        """An independent copy (same architecture, copied weights, no gradients)."""
        return self.astype(self.dtype)

    def astype(self, dtype) -> "Sequential":
        """A copy of the network in another dtype ("float64" or "float32"): every parameter and
        every buffer (batch norm's running statistics) converted, modes kept, no gradients."""
        dtype = resolve_dtype(dtype)
        if all(type(layer) in (Linear, ActivationLayer) for layer in self.layers):  # not their subclasses
            layers = [Linear.from_arrays(layer.weight.data, layer.bias.data, dtype=dtype) if isinstance(layer, Linear)
                      else ActivationLayer(layer.activation) for layer in self.layers]
            copied = Sequential(_packed(layers))  # a small plain network's parameters laid end to end
            copied.train(self.training)
            return copied
        copied = copy.deepcopy(self)  # any layers: their structure, modes and random generators
        for parameter in copied.parameters():  # the deep copy's own arrays: converted, never copied twice
            parameter.data, parameter.grad = parameter.data.astype(dtype, copy=False), None
        for layer in copied.layers_within():
            for name in layer.buffer_names:
                value = getattr(layer, name)
                if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                    setattr(layer, name, value.astype(dtype, copy=False))
        result = Sequential(copied.layers)  # a fresh engine for the new arrays
        result.training = self.training     # its own flag only: the layers kept theirs
        return result

    # -- forward --------------------------------------------------------------------------
    def __call__(self, x) -> np.ndarray:
        """The network's output for x of shape (N, D_0): an array (N, D_out)."""
        return self.forward(x)

    def check_input(self, x, name: str = "x", finite: bool = False) -> np.ndarray:
        """x as a float batch (N, D_0) of the network's dtype, or a ValueError that says why
        (``finite=True`` also refuses NaN and Inf). An array that already is one is returned as is."""
        first = self.linears[0].weight.data if self.linears and self.layers[0] is self.linears[0] else None
        if (first is not None and type(x) is np.ndarray and x.dtype == first.dtype and x.ndim == 2
                and x.shape[1] == first.shape[1] and x.shape[0] > 0 and not finite):
            return x  # already a valid batch: the training loop's case, nothing to convert
        where = (f"the network ({self.in_features} inputs → {self.out_features} outputs):"
                 if self.in_features is not None else "the network:")
        return as_batch(x, name, self.in_features, dtype=self.dtype, finite=finite, owner=where)

    def forward(self, x, record=False, *, keep: str | None = None, allow_nonfinite: bool = False,
                detached: bool = False, watch=None, halves: bool = False):
        """Run the network on a batch.

        Parameters
        ----------
        x : array_like, shape (N, D_0)
        record : bool
            If True, keep what the backward pass needs and return a :class:`Trace` with
            every layer's output (f_k and h_k); if False, return only the output (N, D_out).
        keep : {"nothing", "backward", "trace"}, optional
            The plan, in full (``record`` picks "trace" or "nothing"): "backward" keeps only
            what one backward pass needs and returns the output, which lives in the network's
            own memory (the next pass overwrites it) — the training step's plan. It leaves
            NumPy's overflow warnings to the caller (``TrainStep`` silences them once per step).
        allow_nonfinite : bool, default False
            Return NaN/Inf outputs instead of raising (instruments that show an overflow).
        detached : bool, default False
            Leave the network's last recorded pass as it is: backpropagate this one with
            ``backward(g, trace=this_trace)`` (instruments that must not disturb a user's pass).
        watch : callable, optional
            ``watch(i, output)`` is called right after top-level layer ``i`` with its output,
            while that array is still in the CPU's cache: an instrument that reduces each
            output (a sum, a histogram) reads it there instead of from memory later. Not with
            ``keep="backward"``.
        halves : bool, default False
            Record the pass as two halves of the batch, each on its own thread, where two
            processors are free (:mod:`depthlab.nn.halves`; ~1.4–1.7× faster on two cores for
            a 50 × 80 network on 1000 samples). Every layer must compute each row on its own
            (``rowwise``: Linear and activation layers); the trace holds whole arrays, as
            after one pass, and the numbers are the same in float64 with BLAS on one thread.
            ``watch`` is then called as ``watch(i, output_rows, half)`` (half 0 or 1), from
            that half's thread. The pass backpropagates with ``parameter_grads=False`` only.

        Raises
        ------
        ValueError
            x of the wrong shape, a non-float dtype, or NaN/Inf in x.
        NonFiniteError
            The output overflowed; the message names the first layer that did.
        """
        if isinstance(record, dict):  # the layer protocol: forward(x, cache) inside another network
            return self._forward_as_layer(x, record)
        plan = keep if keep is not None else ("trace" if record else "nothing")
        if plan not in PLANS:
            raise ValueError(f"keep must be one of {PLANS}, got {keep!r}.")
        if watch is not None:
            _check_watch(watch, plan)
        if halves is not False:
            self._check_halves(halves, plan)
        x = self.check_input(x, "x", finite=False)
        if halves and x.shape[0] < 2:
            raise ValueError(f"forward(halves=True) needs a batch of at least 2 samples to halve, got x of shape "
                             f"{x.shape}; pass halves=False.")
        saved = _buffers_of(self._stateful)  # a refused pass must not move the running statistics
        try:
            output, outputs, done = self._engine.forward(x, plan, remember=not detached, watch=watch,
                                                         halves=bool(halves))
        except BaseException as error:
            _restore_buffers(saved)
            found = self._protocol_error(x) if isinstance(error, Exception) else None
            if found is None:
                raise
            raise found from None
        if type(output) is not np.ndarray:
            _restore_buffers(saved)
            raise self._protocol_error(x) or TypeError(f"the network's output is a {type(output).__name__}, not an array.")
        if plan == "backward":  # the training step, which silences NumPy's warnings itself
            finite = allow_nonfinite or _sums_finite(output)
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # the error below says it, not a warning
                finite = allow_nonfinite or _sums_finite(output)
        if not finite and not np.isfinite(output).all():
            if not detached:
                self._engine.last = None
            try:
                self._raise_non_finite(x)
            finally:
                _restore_buffers(saved)
        if plan == "trace":
            return Trace(output, outputs, x, self._linear_positions, done, self._engine)
        return output

    def _check_halves(self, halves, plan: str) -> None:
        """A TypeError/ValueError unless ``halves`` is a bool and, when True, the pass is recorded
        and every layer computes each row on its own."""
        if not isinstance(halves, (bool, np.bool_)):
            raise TypeError(f"forward: halves must be True or False, got {type(halves).__name__} {halves!r}.")
        if not halves:
            return
        if plan != "trace":
            raise ValueError(f"forward(halves=True) records a pass: use record=True (or keep='trace'), not "
                             f"keep={plan!r}.")
        mixed = next((i for i, layer in enumerate(self.layers) if not computes_rows_apart(layer)), None)
        if mixed is not None:
            raise ValueError(f"forward(halves=True) needs layers that compute each row on its own, but layers[{mixed}] "
                             f"({self.layers[mixed]!r}) is not rowwise (it may mix the batch's rows or draw random "
                             "numbers); pass halves=False.")

    def _forward_as_layer(self, x, cache: dict):
        caches = cache["layers"] = []
        specs = cache["input_specs"] = []
        for layer in self.layers:
            caches.append({})
            specs.append((x.shape, x.dtype))
            x = checked_output(layer, x, layer.forward(x, caches[-1]))
        return x

    def _protocol_error(self, x: np.ndarray) -> Exception | None:
        """After a forward pass failed or returned something other than an array: rerun the
        layers one by one in eval mode (no random draws, no running statistics updated) and
        return the error naming the first layer whose forward returned what the layer protocol
        refuses (None when each returned an array, or a layer refused its input itself)."""
        h = x
        with self.mode(False), np.errstate(over="ignore", invalid="ignore"):
            for i, layer in enumerate(self.layers):
                if isinstance(layer, Linear) and layer.bias.shape != (layer.weight.shape[0],):
                    return ValueError(f"layers[{i}] ({type(layer).__name__}) has a weight of shape {layer.weight.shape} "
                                      f"but a bias of shape {layer.bias.shape} (one was replaced through .data): "
                                      "the bias needs one entry per row of the weight. Build a new Linear instead.")
                try:
                    output = layer.forward(h, {})
                except Exception:
                    return None  # the layer refused its input: the pass's own error says it
                try:
                    h = checked_output(layer, h, output)
                except (TypeError, ValueError) as error:
                    return error
        return None

    def _raise_non_finite(self, x: np.ndarray):
        if not np.isfinite(x).all():
            as_float_array(x, "x")  # raises the standard NaN/Inf message
        h = x
        with np.errstate(over="ignore", invalid="ignore"):
            for i, layer in enumerate(self.layers):
                previous, h = h, layer.forward(h, {})
                if np.isfinite(h).all():
                    continue
                if isinstance(layer, Linear):
                    k = self._linear_positions.index(i)
                    largest = np.max(np.abs(previous))
                    raise NonFiniteError(
                        f"the forward pass overflowed at layer {k}: f_{k} = β_{k} + Ω_{k} h_{k} has non-finite "
                        f"values ({self.dtype} range exceeded; max |h_{k}| = {largest:.3g}). The signal grows "
                        "with depth: use a variance-preserving init (e.g. init='he_normal' for ReLU), "
                        "a smaller weight variance, or dtype='float64'."
                    )
                if i == len(self.layers) - 1 and isinstance(layer, ActivationLayer):
                    raise NonFiniteError(f"the network's output activation ({layer.activation!r}) produced non-finite "
                                         "values from finite inputs.")
                raise NonFiniteError(f"the forward pass produced non-finite values at layers[{i}] ({layer!r}).")
        raise NonFiniteError("the network's output has non-finite values.")

    # -- backward -------------------------------------------------------------------------
    def backward(self, grad_output, input_grad=True, intermediates: bool = True, *, trace: Trace | None = None,
                 allow_nonfinite: bool = False, watch=None, parameter_grads: bool = True) -> Gradients:
        """Backpropagate dL/d(output) through the last forward pass that kept its caches.

        Parameters
        ----------
        grad_output : array_like, shape (N, D_out)
            dL/d(output) for each sample, e.g. ``dl.losses.mse.grad(output, y)``.
        input_grad : bool, default True
            Compute dL/dx. Training does not need it, and it costs as much as the first
            layer's forward pass; with False, ``grads.input`` and ``grads.activations[0]``
            are None (PyTorch likewise skips it unless the input requires grad).
        intermediates : bool, default True
            Keep dL/d(each layer's output). Training needs only the parameters' gradients:
            with False, ``grads.layer_outputs``, ``preactivations`` and ``activations`` are
            None and each gradient may be formed in place of the one before, which saves a
            pass over memory per layer (PyTorch likewise keeps no intermediate gradient).
        trace : Trace, optional
            Backpropagate this recorded pass (one made with ``detached=True``) instead of the last.
        allow_nonfinite : bool, default False
            Accept NaN/Inf in ``grad_output`` (instruments that show an overflow).
        watch : callable, optional
            ``watch(i, grad_input)`` is called right after top-level layer ``i``'s backward with
            dL/d(its input) — for i = 0 only with ``input_grad`` — while the array is still in
            cache; layer i's parameters hold their gradients by then (see ``forward``'s ``watch``).
        parameter_grads : bool, default True
            Compute dL/dθ. With False only dL/dx and the intermediates are computed (as
            ``torch.autograd.grad(output, x)``): every ``Parameter.grad`` is left as it was,
            ``grads.weights``, ``biases`` and ``parameters`` are None, and each Linear layer
            skips two of its three products (an instrument that looks at how the signal flows
            backward, such as ``dl.probe(..., parameter_grads=False)``, runs a third faster).

        Returns
        -------
        Gradients
            dL/dΩ_k and dL/dβ_k (summed over the batch), and what ``intermediates`` and
            ``input_grad`` ask for. The parameter gradients are also *added* to each
            ``Parameter.grad``.
        """
        if isinstance(input_grad, dict):  # the layer protocol: backward(grad, cache) inside another network
            return self._backward_as_layer(grad_output, input_grad)
        if watch is not None:
            _check_watch(watch, "trace")
        if not isinstance(parameter_grads, (bool, np.bool_)):
            raise TypeError(f"backward: parameter_grads must be True or False, got {type(parameter_grads).__name__} "
                            f"{parameter_grads!r}.")
        if trace is not None and not isinstance(trace, Trace):
            raise TypeError(f"backward(trace=...) needs the Trace that net.forward(x, record=True, detached=True) "
                            f"returned, got {type(trace).__name__}.")
        if trace is not None and trace._pass is None:
            raise ValueError("backward(trace=...) got a Trace built by hand, which holds no recorded pass; record one "
                             "with net.forward(x, record=True, detached=True).")
        if trace is not None and trace._engine is not self._engine:
            raise ValueError("backward(trace=...) got a Trace recorded by another network (or by this one before it "
                             "was copied or unpickled); backpropagate it through the network that recorded it.")
        last = self._engine.last if trace is None else trace._pass
        if last is None:
            raise RuntimeError(
                "backward() needs a recorded forward pass: call net.forward(x, record=True) first "
                "(net(x) and forward(x) without record keep nothing for backward). backward() "
                "always uses the most recent recorded forward pass."
            )
        if type(grad_output) is np.ndarray and grad_output.dtype == self.dtype and allow_nonfinite:
            grad = grad_output  # the training loop's case, nothing to convert
        else:
            grad = as_float_array(grad_output, "grad_output", dtype=self.dtype, finite=not allow_nonfinite)
        if grad.shape != last.output_shape:
            raise ValueError(
                f"grad_output must have the output's shape {last.output_shape} "
                f"(dL/d(output) for each sample), got {grad.shape}."
            )
        if parameter_grads and isinstance(last, HalvesPass):
            raise ValueError("backward: this pass was recorded in halves (forward(..., halves=True)), which "
                             "backpropagates dL/dx and the intermediates only; pass parameter_grads=False, or record "
                             "the pass without halves for the parameters' gradients.")
        parameters = self._engine.parameters
        before = list(map(GRAD, parameters))
        if not parameter_grads:
            try:
                grad_input, output_grads = self._engine.backward(grad, bool(input_grad), intermediates, last, watch,
                                                                 parameter_grads=False)
            finally:  # layers that computed dL/dθ anyway (a norm's γ and β, a user layer): theirs are discarded
                for p, previous in zip(parameters, before):
                    p.grad = previous
            return Gradients(None, None, output_grads, grad_input if input_grad else None, None, self._linear_positions)
        accumulate = not all(map(is_, before, repeat(None)))
        if accumulate:  # this pass's own gradients first, then the sums
            for p in parameters:
                p.grad = None
        try:
            grad_input, output_grads = self._engine.backward(grad, bool(input_grad), intermediates, last, watch)
        except BaseException:  # a layer's or watch's error, Ctrl-C: the gradients stay as they were
            for p, previous in zip(parameters, before):
                p.grad = previous
            raise
        own = list(map(GRAD, parameters))
        if accumulate:
            for p, previous, new in zip(parameters, before, own):
                if previous is not None:
                    p.grad = previous if new is None else previous + new
        return Gradients(list(map(own.__getitem__, self._weight_indices)),
                         list(map(own.__getitem__, self._bias_indices)), output_grads,
                         grad_input if input_grad else None, own, self._linear_positions)

    def _backward_as_layer(self, grad, cache: dict):
        if "layers" not in cache:
            raise RuntimeError("Sequential.backward(grad_output, cache) needs the cache that forward(x, cache) filled "
                               "(as a layer inside another one); this cache is empty or another layer's.")
        for layer, layer_cache, (shape, dtype) in zip(reversed(self.layers), reversed(cache["layers"]),
                                                      reversed(cache["input_specs"])):
            grad = checked_input_grad(layer, layer.backward(grad, layer_cache), shape, dtype)
        return grad

    def flat_gradients(self) -> np.ndarray | None:
        """One flat array holding every parameter's gradient of the last backward pass, when
        each ``grad`` is its view of it (nothing accumulated onto it), else None. A sum or a
        norm of all gradients is then one operation (``fit`` checks divergence so)."""
        return self._engine.flat_gradients()

    # -- Jacobian -------------------------------------------------------------------------
    def input_jacobian(self, x) -> np.ndarray:
        """∂ output / ∂x for every sample, analytically: shape (N, D_out, D_0).

        Reverse mode on a batch of D_out copies of x, one backward pass in all (dL/d(output)
        a one-hot per copy), through the layers' own backward methods; parameter gradients
        are left as they were.
        """
        x = self.check_input(x, "x", finite=True)
        if self.couples_samples:
            raise ValueError("input_jacobian is per sample, but this network's batch norm uses the batch's statistics "
                             "(train mode), so each output depends on every sample; call net.eval() first.")
        if self.stochastic:
            raise ValueError("input_jacobian differentiates one pass, but this network's dropout draws a new mask on "
                             "every forward pass (train mode); call net.eval() first.")
        d_out = self.out_features if self.out_features is not None else self.forward(x[:1]).shape[1]
        widths = sum(self.widths) if self.linears else 2 * x.shape[1]
        check_fits_in_memory(d_out * x.shape[0] * (x.shape[1] + widths), self.dtype.itemsize,
                             f"input_jacobian of {x.shape[0]} samples ({d_out} copies of the batch through the network)",
                             "pass fewer samples at a time")
        with np.errstate(over="ignore", invalid="ignore"):
            return input_jacobian(self, x)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path):
        """Write the architecture and weights to an ``.npz`` file atomically (exact round trip);
        returns the path written (see :func:`depthlab.nn.serialization.save`)."""
        from .serialization import save
        return save(self, path)

    def summary(self):
        """The table of layers: output shape, activation, initialization, parameters, dtype (HTML in Jupyter)."""
        from .summary import summary
        return summary(self)

    def _repr_html_(self) -> str:  # Jupyter
        from .summary import html
        return html(self)

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
    inits = _resolved(as_list(init, len(hidden) + 1, "init"))
    bias_inits = _resolved(as_list(bias_init, len(hidden) + 1, "bias_init"))
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


def _resolved(specs: list) -> list:
    """Each initializer spec resolved once (:func:`depthlab.nn.init.get`), not once per layer."""
    initializers: dict[int, object] = {}
    for spec in specs:
        if id(spec) not in initializers:
            initializers[id(spec)] = _init.get(spec)
    return [initializers[id(spec)] for spec in specs]


def _packed(layers: list) -> list:
    """``layers``, their Linear parameters packed into one flat array (:func:`depthlab._fast.flat.pack`)."""
    pack([p for layer in layers if isinstance(layer, Linear) for p in (layer.weight, layer.bias)])
    return layers
