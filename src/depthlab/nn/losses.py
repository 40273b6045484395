"""Losses L(output, target) and their gradients dL/d(output).

Every loss is an object with ``value(output, target) -> float``, ``grad(output, target)``
(dL/d(output): same shape and dtype as ``output``) and ``value_and_grad`` (both, sharing
the work). ``output`` is the network's last pre-activation f_K, a 2-D batch ``(N, D)``;
the gradient is where backpropagation starts.

==================================  ==============================  ===============================
name                                L                               reduction (PyTorch)
==================================  ==============================  ===============================
sum_squares                         Σ (f − y)²                      sum (MSELoss(reduction="sum"))
mse                                 Σ (f − y)² / (N·D)              mean (MSELoss())
half_sum_squares                    ½ Σ (f − y)²                    sum, times ½
cross_entropy                       −Σ_i log softmax(f_i)[y_i] / N  batch mean (CrossEntropyLoss())
binary_cross_entropy_with_logits    −mean[y log σ(f) + …]           mean (BCEWithLogitsLoss())
==================================  ==============================  ===============================

The seeds' least-squares loss (000, 002, 003) is ``sum_squares``; 004's E = ½ Σ (y − t)² is
``half_sum_squares``, whose gradient is simply f − y.

Inputs: ``output`` must be 2-D (reshape a vector with ``x.reshape(-1, 1)``); integer output
is converted to float64, float32 stays float32. A non-finite ``output`` is not refused (the
value comes out non-finite, and the training loop reports the divergence); a non-finite
``target`` is. Targets are cast to ``output``'s dtype, so a float32 output gives a float32
gradient.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from functools import lru_cache

import numpy as np
from scipy import special

from .._fast.buffers import ones
from .._checks import FLOATING, as_batch, as_float_array, lookup, unmasked

Array = np.ndarray


# ----------------------------------------------------------------------------- checks

def _as_output(output, loss: str) -> Array:
    if type(output) is np.ndarray and output.ndim == 2 and output.dtype in FLOATING and output.shape[0]:
        return output  # the training step's case: nothing to convert or refuse (as_batch agrees)
    if np.ndim(output) == 1:
        raise ValueError(
            f"{loss} output must be 2-D (N, D), got a 1-D array of shape {np.shape(output)}. For N "
            "predictions of one value use output.reshape(-1, 1) (a target of shape (N,) is then accepted)."
        )
    return as_batch(output, "output", None, finite=False, owner=loss)


def _shape_error(loss: str, output: Array, target: Array, hint: str) -> ValueError:
    return ValueError(
        f"{loss}: target shape {target.shape} does not match output shape {output.shape}. {hint}"
    )


def _first_bad(mask: Array) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _dense_target(target, output: Array, loss: str) -> Array:
    """A float target of ``output``'s shape and dtype; ``(N,)`` accepted for output ``(N, 1)``."""
    target = as_float_array(target, f"{loss} target", dtype=output.dtype)
    if target.shape == output.shape:
        return target
    if target.ndim == 1 and output.shape == (target.shape[0], 1):
        return target.reshape(-1, 1)
    raise _shape_error(
        loss, output, target,
        f"Pass a target of shape {output.shape} (a vector of length N is accepted only when "
        "output is (N, 1)).",
    )


def _unit_interval_target(target, output: Array, loss: str, hint: str) -> Array:
    target = _dense_target(target, output, loss)
    outside = (target < 0) | (target > 1)
    if outside.any():
        where = _first_bad(outside)
        raise ValueError(
            f"{loss}: targets must be probabilities in [0, 1], got {target[where]:g} at index "
            f"{where}. {hint}"
        )
    return target


def _class_target(target, output: Array, loss: str) -> Array:
    """Integer labels ``(N,)`` (as intp) or class probabilities ``(N, C)`` (as output's dtype)."""
    raw = target if type(target) is np.ndarray else np.asarray(unmasked(target, f"{loss} target")
                                                             if isinstance(target, np.ma.MaskedArray) else target)
    n, classes = output.shape
    if raw.dtype == np.intp and raw.shape == (n,) and np.maximum.reduce(raw.view(np.uintp)) < classes:
        return raw  # the training step's case, in one pass: viewed as unsigned, a negative label is huge
    if raw.ndim == 2 and raw.shape == output.shape:
        return _unit_interval_target(
            raw, output, loss, "A 2-D target holds class probabilities (e.g. one-hot rows); "
            f"pass integer labels as shape ({n},).")
    if raw.ndim != 1:
        raise _shape_error(loss, output, raw,
                           f"Pass integer labels of shape ({n},) (e.g. y.ravel()) or class "
                           f"probabilities of shape {output.shape}.")
    if raw.shape[0] != n:
        raise _shape_error(loss, output, raw, f"Labels need one entry per sample: shape ({n},).")
    if raw.dtype.kind == "f":
        raw = as_float_array(raw, f"{loss} target")  # refuses NaN/Inf
        fractional = raw != np.trunc(raw)
        if fractional.any():
            i = _first_bad(fractional)[0]
            raise ValueError(
                f"{loss}: target label {raw[i].item()!r} at index {i} is not an integer (a {raw.dtype} label "
                f"must be a whole number in [0, {classes - 1}]). Round them if they carry rounding "
                f"errors (np.rint(y).astype(int)), or pass class probabilities of shape {output.shape}."
            )
    elif raw.dtype.kind not in "iub":
        raise TypeError(
            f"{loss}: target labels must be integers, got an array of dtype {raw.dtype}. "
            "Convert them first, e.g. np.asarray(y, dtype=int)."
        )
    low, high = raw.min(), raw.max()
    if low < 0 or high >= classes:
        i = int(np.flatnonzero((raw < 0) | (raw >= classes))[0])
        raise ValueError(
            f"{loss}: target label {raw[i]:g} at index {i} is out of range: labels must be "
            f"integers in [0, {classes - 1}] for an output with {classes} classes (shape {output.shape})."
        )
    return raw.astype(np.intp, copy=False)


# ----------------------------------------------------------------------------- row helpers

def _row_max(x: Array) -> Array:
    """Row maxima, shape (N, 1).

    NumPy reduces many short rows slowly: x.max(axis=1) on a C-ordered (100, 10) costs ~3x
    the same on a Fortran-ordered copy (where it runs along contiguous columns), over 10x on
    (4000, 10); the copy is cheap next to that whenever there are at least as many rows as
    columns.
    """
    rows, columns = x.shape
    return np.maximum.reduce(np.asfortranarray(x) if rows >= columns else x, axis=1, keepdims=True)


def _shifted(output: Array) -> Array:
    """f − max_c f (N, C) in a fresh buffer: the largest entry of each row is 0, so exp cannot overflow."""
    return output - _row_max(output)


@lru_cache(maxsize=64)
def _steps(count: int, step: int) -> Array:
    """The read-only index vector ``[0, step, …, (count − 1)·step]`` (cached)."""
    steps = np.arange(0, count * step, step)
    steps.flags.writeable = False
    return steps


def _row_sum(x: Array) -> Array:
    """Row sums, shape (N,), as one matrix–vector product (faster than x.sum(axis=1))."""
    return x @ ones(x.shape[1], x.dtype)


def _label_entries(x: Array, labels: Array) -> tuple[Array, Array]:
    """``(flat, index)``: ``flat[index]`` are the entries x[i, labels[i]] of a contiguous
    (C- or Fortran-ordered) x (N, C), and assigning to them writes into x."""
    rows, columns = x.shape
    if x.flags.c_contiguous:
        return x.reshape(-1), labels + _steps(rows, columns)
    index = labels * rows                               # Fortran order: (i, c) is at i + c·N
    index += _steps(rows, 1)
    return x.T.reshape(-1), index


def _mean_label_loss(norm: Array, picked: Array) -> float:
    """(1/N) Σ_i (log Σ_c exp(f_ic − max f_i) − (f_iy − max f_i)): the mean cross-entropy of
    labelled rows, from their normalizers ``norm`` (N,) and shifted labelled logits ``picked``
    (N,); the sum is one dot product."""
    losses = np.log(norm)
    losses -= picked
    return float(losses @ ones(losses.shape[0], losses.dtype)) / losses.shape[0]


def _label_grad(exp: Array, norm: Array, flat: Array, index: Array) -> Array:
    """(exp / Σ_c exp − onehot(labels)) / N in ``exp``'s buffer (``norm`` (N,) is overwritten).

    ``flat[index]`` are the labelled entries of ``exp`` (from :func:`_label_entries`).
    """
    n = exp.shape[0]
    norm *= n
    exp *= np.divide(1.0, norm, out=norm)[:, None]      # 1 / (N Σ_c exp)
    flat[index] -= exp.dtype.type(1.0 / n)
    return exp


# ----------------------------------------------------------------------------- the loss object

class Loss(ABC):
    """A loss L(output, target) with its gradient dL/d(output).

    A subclass sets ``name`` and defines ``compute_value_and_grad(output, target)`` on checked
    arrays; it may override ``check_target`` (the default accepts a float target of ``output``'s
    shape, or ``(N,)`` for an output ``(N, 1)``), and ``compute_value`` / ``compute_grad`` when
    one of them alone is cheaper than both. The ``compute_*`` methods skip every check: a
    training loop checks its targets once (``check_target``) and then calls them per batch.

    Attributes
    ----------
    name : str
        Registry name.
    reduction : {"mean", "sum"}
        How the loss combines samples: "mean" losses are batch averages (a training loop
        weights a batch by its size), "sum" losses add the samples' terms.
    """

    name: str = "loss"
    reduction: str = "mean"   # over samples: "mean" (batch average) or "sum"

    # 0.1.0 named these methods _value_and_grad, _target, _value and _grad: subclasses written
    # for it keep working
    _RENAMED = {"_value_and_grad": "compute_value_and_grad", "_target": "check_target",
                "_value": "compute_value", "_grad": "compute_grad"}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for old, new in Loss._RENAMED.items():
            if old in cls.__dict__ and new not in cls.__dict__:
                setattr(cls, new, cls.__dict__[old])

    @abstractmethod
    def compute_value_and_grad(self, output: Array, target: Array) -> tuple[float, Array]:
        """``(L, dL/d(output))`` for a checked ``output`` (N, D) and ``target``."""

    def check_target(self, target, output: Array) -> Array:
        """``target`` as the array the ``compute_*`` methods take for ``output`` (N, D), or an
        error that says what was expected."""
        return _dense_target(target, output, self.name)

    def compute_value(self, output: Array, target: Array) -> float:
        """L of a checked ``output`` and ``target`` (no checks)."""
        return self.compute_value_and_grad(output, target)[0]

    def compute_grad(self, output: Array, target: Array) -> Array:
        """dL/d(output) of a checked ``output`` and ``target`` (no checks), a fresh array."""
        return self.compute_value_and_grad(output, target)[1]

    def _checked(self, output, target) -> tuple[Array, Array]:
        output = _as_output(output, self.name)
        return output, self.check_target(target, output)

    def value(self, output, target) -> float:
        """L(output, target) as a Python float.

        Parameters
        ----------
        output : array_like of float, shape (N, D)
            The network's output f_K (logits for the classification losses).
        target : array_like, shape (N, D)
            The targets; see the loss's own description for the accepted forms.
        """
        return self.compute_value(*self._checked(output, target))

    def grad(self, output, target) -> Array:
        """dL/d(output): an array of ``output``'s shape ``(N, D)`` and dtype."""
        return self.compute_grad(*self._checked(output, target))

    def value_and_grad(self, output, target) -> tuple[float, Array]:
        """``(value, grad)`` computed together (one validation, shared intermediate arrays)."""
        return self.compute_value_and_grad(*self._checked(output, target))

    __call__ = value

    def __repr__(self) -> str:
        return f"<loss {self.name}>"


class SquaredError(Loss):
    """L = scale · Σ (f − y)² [/ (N·D)]: the sum-of-squares family, one formula for three names.

    ``target`` has ``output``'s shape ``(N, D)``; a vector ``(N,)`` is accepted when
    ``output`` is ``(N, 1)``. Integer targets are converted to ``output``'s dtype.
    """

    def __init__(self, name: str, scale: float, mean: bool, doc: str):
        self.name, self.scale, self.mean = name, scale, mean
        self.reduction = "mean" if mean else "sum"
        self.__doc__ = doc

    def _factor(self, size: int) -> float:
        return self.scale / size if self.mean else self.scale

    def compute_value(self, output: Array, target: Array) -> float:
        residual = (output - target).ravel(order="K")
        return float(residual @ residual) * self._factor(residual.size)

    def compute_grad(self, output: Array, target: Array) -> Array:
        residual = output - target
        residual *= 2 * self._factor(residual.size)
        return residual

    def compute_value_and_grad(self, output: Array, target: Array) -> tuple[float, Array]:
        residual = output - target
        flat = residual.ravel(order="K")
        factor = self._factor(residual.size)
        value = float(flat @ flat) * factor
        residual *= 2 * factor
        return value, residual


class CrossEntropy(Loss):
    """Softmax cross-entropy on logits (PyTorch ``CrossEntropyLoss()``).

    Reduction: mean over the N samples (the sum over classes is inside each sample's term).
    With p_i = softmax(f_i) for each row f_i of the logits ``output`` ``(N, C)``:

    - integer labels ``target`` ``(N,)`` in [0, C − 1] (an integer dtype, or floats with
      integral values): L = −(1/N) Σ_i log p_i[y_i], dL/df = (p − onehot(y)) / N;
    - class probabilities ``target`` ``(N, C)`` in [0, 1] (one-hot rows, label smoothing):
      L = −(1/N) Σ_i Σ_c y_ic log p_ic, dL/df_i = (p_i · Σ_c y_ic − y_i) / N, which is
      (p − y)/N when the rows sum to 1 (PyTorch's result for any non-negative rows).

    log p is computed as f − max f − log Σ exp(f − max f), so logits of ±1e4 give a finite
    value and gradient.
    """

    name = "cross_entropy"

    def check_target(self, target, output: Array) -> Array:
        return _class_target(target, output, self.name)

    def compute_value(self, output: Array, target: Array) -> float:
        shifted = _shifted(output)
        n = output.shape[0]
        if target.ndim == 1:
            flat, index = _label_entries(shifted, target)
            picked = flat[index]
            return _mean_label_loss(_row_sum(np.exp(shifted, out=shifted)), picked)
        log_norm = np.log(_row_sum(np.exp(shifted)))
        return float((log_norm @ _row_sum(target) - np.vdot(target, shifted)) / n)

    def compute_grad(self, output: Array, target: Array) -> Array:
        """(softmax(f) · Σ_c y_c − y) / N without computing the value (the training step's need)."""
        exp = _shifted(output)
        np.exp(exp, out=exp)
        if target.ndim == 1:
            return _label_grad(exp, _row_sum(exp), *_label_entries(exp, target))
        exp *= (_row_sum(target) / (output.shape[0] * _row_sum(exp)))[:, None]
        exp -= target * output.dtype.type(1.0 / output.shape[0])
        return exp

    def compute_value_and_grad(self, output: Array, target: Array) -> tuple[float, Array]:
        shifted = _shifted(output)
        n = output.shape[0]
        if target.ndim == 1:
            flat, index = _label_entries(shifted, target)
            picked = flat[index]
            exp = np.exp(shifted, out=shifted)            # reuse the buffer: it becomes the grad
            norm = _row_sum(exp)
            return _mean_label_loss(norm, picked), _label_grad(exp, norm, flat, index)
        exp = np.exp(shifted)
        norm = _row_sum(exp)
        mass = _row_sum(target)
        value = float((np.log(norm) @ mass - np.vdot(target, shifted)) / n)
        exp *= (mass / (n * norm))[:, None]
        exp -= target * output.dtype.type(1.0 / n)
        return value, exp


class BinaryCrossEntropyWithLogits(Loss):
    """Sigmoid + binary cross-entropy on logits (PyTorch ``BCEWithLogitsLoss()``).

    Reduction: mean over all N·D elements. For logit z and target t in [0, 1] (same shape
    as ``output``; ``(N,)`` accepted when ``output`` is ``(N, 1)``), each element contributes

        max(z, 0) − z·t + log(1 + e^{−|z|})

    (the stable form of −[t log σ(z) + (1 − t) log(1 − σ(z))]), and
    dL/dz = (σ(z) − t) / (N·D).
    """

    name = "binary_cross_entropy_with_logits"

    def check_target(self, target, output: Array) -> Array:
        return _unit_interval_target(
            target, output, self.name,
            "Use 0/1 labels or probabilities; for labels of more than two classes use 'cross_entropy'.")

    @staticmethod
    def _elementwise_sum(output: Array, target: Array) -> float:
        terms = np.log1p(np.exp(-np.abs(output)))
        terms += np.maximum(output, 0)
        terms -= output * target
        return float(terms.sum())

    def compute_value(self, output: Array, target: Array) -> float:
        return self._elementwise_sum(output, target) / output.size

    def compute_grad(self, output: Array, target: Array) -> Array:
        grad = special.expit(output)
        grad -= target
        grad *= output.dtype.type(1.0 / output.size)
        return grad

    def compute_value_and_grad(self, output: Array, target: Array) -> tuple[float, Array]:
        return self.compute_value(output, target), self.compute_grad(output, target)   # nothing worth sharing


# ----------------------------------------------------------------------------- registry

sum_squares = SquaredError(
    "sum_squares", 1.0, False,
    """Sum of squares L = Σ_ij (f_ij − y_ij)².

    Reduction: sum over all N·D elements (PyTorch ``MSELoss(reduction="sum")``). The seeds'
    least-squares loss (000, 003; 002's ``np.square(y_pred - y).sum()``).
    dL/df = 2 (f − y). Target of shape ``(N, D)`` like ``output`` (``(N,)`` accepted for an
    output ``(N, 1)``).""",
)
mse = SquaredError(
    "mse", 1.0, True,
    """Mean squared error L = Σ_ij (f_ij − y_ij)² / (N·D).

    Reduction: mean over all N·D elements (PyTorch ``MSELoss()``, its default).
    dL/df = 2 (f − y) / (N·D). Target of shape ``(N, D)`` like ``output`` (``(N,)`` accepted
    for an output ``(N, 1)``).""",
)
half_sum_squares = SquaredError(
    "half_sum_squares", 0.5, False,
    """Half sum of squares L = ½ Σ_ij (f_ij − y_ij)².

    Reduction: sum over all N·D elements, times ½. 004's E = ½ Σ (y − t)²: the ½ makes the
    gradient dL/df = f − y, the δ that starts 004's backpropagation recursion. Target of
    shape ``(N, D)`` like ``output`` (``(N,)`` accepted for an output ``(N, 1)``).""",
)
cross_entropy = CrossEntropy()
binary_cross_entropy_with_logits = BinaryCrossEntropyWithLogits()

LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (sum_squares, mse, half_sum_squares, cross_entropy, binary_cross_entropy_with_logits)
}
ALIASES = {
    "least_squares": "sum_squares",
    "sum_of_squares": "sum_squares",
    "sse": "sum_squares",
    "mean_squared_error": "mse",
    "half_least_squares": "half_sum_squares",
    "ce": "cross_entropy",
    "softmax_cross_entropy": "cross_entropy",
    "categorical_cross_entropy": "cross_entropy",
    "bce_with_logits": "binary_cross_entropy_with_logits",
}
_BY_NAME = {**LOSSES, **{alias: LOSSES[name] for alias, name in ALIASES.items()}}


def _is_loss(obj) -> bool:
    return callable(getattr(obj, "value", None)) and callable(getattr(obj, "grad", None))


def get(spec) -> Loss:
    """Resolve a loss given as a name (case-insensitive, aliases allowed) or a loss object.

    >>> get("MSE") is mse
    True
    >>> get("least_squares") is sum_squares
    True

    Any object with callable ``value`` and ``grad`` methods is returned unchanged, so user
    losses plug in. An unknown name raises ``ValueError`` listing the valid names.
    """
    if isinstance(spec, str):
        return lookup(_BY_NAME, spec.strip(), "losses.get", "loss")
    if _is_loss(spec):
        return spec
    raise TypeError(
        f"loss must be a name (one of {', '.join(LOSSES)}) or an object with value(output, target) "
        f"and grad(output, target) methods, got {type(spec).__name__} {spec!r}."
    )


def names() -> list[str]:
    """The registered loss names (aliases not included)."""
    return list(LOSSES)


__all__ = [
    "Loss", "SquaredError", "CrossEntropy", "BinaryCrossEntropyWithLogits", "LOSSES", "ALIASES",
    "get", "names", *LOSSES,
]
