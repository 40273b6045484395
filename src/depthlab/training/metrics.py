"""Metrics: accuracy, mse, mae, r2 — exact over a whole data set, even when seen in batches.

A metric compares the network's output ``(N, D)`` with targets and returns a Python float::

    >>> dl.metrics.accuracy(logits, labels)          # logits (N, C), labels (N,)
    >>> dl.metrics.get("r2")(output, y)               # output and y (N, D)

Each metric is built from *sufficient statistics* — small arrays that combine across batches
(:meth:`Metric.statistics`, :meth:`Metric.combine`, :meth:`Metric.result`) — so the value that
:func:`depthlab.fit` reports for an epoch seen in minibatches is the metric of all the outputs
computed during that epoch, not an average of batch values.

======== ======================================================== =========== =========
name     value                                                    targets     better
======== ======================================================== =========== =========
accuracy fraction of samples whose predicted class is the target  labels      higher
mse      Σ (f − y)² / (N·D)                                       (N, D)      lower
mae      Σ |f − y| / (N·D)                                        (N, D)      lower
r2       1 − SS_res / SS_tot per output column, averaged over D   (N, D)      higher
======== ======================================================== =========== =========

Accuracy reads the output as logits: with C > 1 columns the predicted class is
``argmax_c f_c`` (targets: integer labels ``(N,)`` or class probabilities / one-hot rows
``(N, C)``, whose argmax is the label); with a single column it is ``f > 0`` — the threshold
for a logit, as produced for ``binary_cross_entropy_with_logits`` (targets 0/1, shape
``(N,)`` or ``(N, 1)``). For a network that ends in a sigmoid use
``Accuracy(threshold=0.5)``.

r2 follows scikit-learn's ``r2_score`` (``multioutput="uniform_average"``): a column whose
targets are constant scores 1 if predicted exactly, else 0.

Statistics are accumulated in float64 whatever the output's dtype.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .._checks import as_float_array, check_real, lookup

Array = np.ndarray


def _regression_target(target, output_shape: tuple[int, int], metric: str) -> Array:
    """Targets of the output's shape (a vector ``(N,)`` accepted for an output ``(N, 1)``)."""
    target = as_float_array(target, f"{metric} target")
    if target.shape == tuple(output_shape):
        return target
    if target.ndim == 1 and tuple(output_shape) == (target.shape[0], 1):
        return target.reshape(-1, 1)
    raise ValueError(
        f"{metric}: target shape {target.shape} does not match output shape {tuple(output_shape)}. "
        f"Pass targets of shape {tuple(output_shape)} (a vector of length N only for an output (N, 1))."
    )


def _as_output(output, metric: str) -> Array:
    output = as_float_array(output, f"{metric} output", finite=False)
    if output.ndim != 2:
        hint = " Use output.reshape(-1, 1) for N predictions of one value." if output.ndim == 1 else ""
        raise ValueError(f"{metric} output must be 2-D (N, D), got shape {output.shape}.{hint}")
    if output.shape[0] == 0:
        raise ValueError(f"{metric} output is empty (shape {output.shape}); pass at least one sample.")
    return output


class Metric(ABC):
    """A metric computed from statistics that combine exactly across batches.

    Subclasses implement ``check_target``, ``statistics`` and ``result``; ``combine`` adds
    statistics unless overridden.

    Attributes
    ----------
    name : str
        The key in logs and histories (``"val_" + name`` on validation data).
    higher_is_better : bool
        Which way is an improvement (used by ``EarlyStopping(mode="auto")``).
    batchwise : bool
        False (the rule): statistics of any grouping of the samples combine to the same
        value, so ``fit`` may compute them over blocks of several batches at once
        (:mod:`depthlab._fast.blocks`). True for a mean of per-batch values, which must see each
        batch alone.
    """

    name = "metric"
    higher_is_better = False
    batchwise = False

    @abstractmethod
    def check_target(self, target, output_shape: tuple[int, int]) -> Array:
        """Validate ``target`` for outputs of shape ``output_shape`` ``(N, D)``.

        Returns the target in the form ``statistics`` expects (checked once, then sliced
        per batch without further checks).
        """

    @abstractmethod
    def statistics(self, output: Array, target: Array) -> Array:
        """Sufficient statistics of one batch: ``output`` ``(n, D)``, checked ``target``."""

    @abstractmethod
    def result(self, statistics: Array) -> float:
        """The metric's value from (combined) statistics."""

    def combine(self, first: Array | None, second: Array) -> Array:
        """Statistics of two disjoint batches together (``first`` may be None)."""
        return second if first is None else first + second

    def value(self, output, target) -> float:
        """The metric of ``output`` ``(N, D)`` against ``target`` (checked), a Python float."""
        output = _as_output(output, self.name)
        return self.result(self.statistics(output, self.check_target(target, output.shape)))

    __call__ = value

    def __repr__(self) -> str:
        return f"<metric {self.name}>"


class Accuracy(Metric):
    """Fraction of samples classified correctly (see the module docstring for the rules).

    Parameters
    ----------
    threshold : float, default 0.0
        Decision threshold for a single-column output: predicted class 1 where f > threshold.
        0 suits logits; use 0.5 for probabilities (a sigmoid output activation).
    """

    name = "accuracy"
    higher_is_better = True

    def __init__(self, threshold: float = 0.0):
        self.threshold = check_real(threshold, "Accuracy threshold")

    def check_target(self, target, output_shape):
        n, classes = output_shape
        raw = target if isinstance(target, np.ndarray) else np.asarray(target)
        if raw.dtype.kind not in "fiub":
            raise TypeError(f"accuracy: targets must be numbers, got an array of dtype {raw.dtype}.")
        if raw.ndim == 2 and raw.shape == (n, classes) and classes > 1:
            as_float_array(raw, "accuracy target")  # refuses NaN/Inf
            return np.argmax(raw, axis=1)
        if raw.ndim == 2 and raw.shape == (n, 1) and classes == 1:
            raw = raw[:, 0]
        if raw.shape != (n,):
            expected = f"({n},) or ({n}, 1)" if classes == 1 else f"({n},) (labels) or ({n}, {classes}) (one-hot)"
            raise ValueError(f"accuracy: target shape {raw.shape} does not match output shape "
                             f"{tuple(output_shape)}; expected {expected}.")
        if raw.dtype.kind == "f":
            raw = as_float_array(raw, "accuracy target")
            if (raw != np.trunc(raw)).any():
                raise ValueError("accuracy: targets must be integer class labels; got fractional values. "
                                 "Pass one-hot rows (N, C) for class probabilities.")
        high = 1 if classes == 1 else classes - 1
        if raw.min() < 0 or raw.max() > high:
            raise ValueError(f"accuracy: target labels must be integers in [0, {high}] for an output "
                             f"with {classes} column(s), got values in [{raw.min():g}, {raw.max():g}].")
        return raw.astype(np.intp, copy=False)

    def statistics(self, output, target):
        predicted = output[:, 0] > self.threshold if output.shape[1] == 1 else output.argmax(axis=1)
        return np.array([np.count_nonzero(predicted == target), target.shape[0]], dtype=np.float64)

    def result(self, statistics):
        return float(statistics[0] / statistics[1])

    def __repr__(self) -> str:
        return f"<metric accuracy (threshold {self.threshold:g} for one column)>"


class MeanError(Metric):
    """Mean of |f − y|^power over all N·D elements (power 2: mse, power 1: mae)."""

    def __init__(self, name: str, power: int):
        self.name, self.power = name, power

    def check_target(self, target, output_shape):
        return _regression_target(target, output_shape, self.name)

    def statistics(self, output, target):
        residual = np.subtract(output, target, dtype=np.float64).ravel()
        total = residual @ residual if self.power == 2 else np.abs(residual).sum()
        return np.array([total, residual.size], dtype=np.float64)

    def result(self, statistics):
        return float(statistics[0] / statistics[1])


class R2(Metric):
    """Coefficient of determination, per output column, averaged (scikit-learn's ``r2_score``).

    Statistics per column: count n, target mean, Σ (y − mean)², Σ (y − f)² and the
    targets' least and largest values, merged across batches with Chan et al.'s pairwise
    formula (no cancellation). A column is constant when its least and largest targets are
    equal: Σ (y − mean)² need not be exactly 0 then, as the mean is rounded.
    """

    name = "r2"
    higher_is_better = True

    def check_target(self, target, output_shape):
        return _regression_target(target, output_shape, self.name)

    def statistics(self, output, target):
        n = target.shape[0]
        mean = target.mean(axis=0, dtype=np.float64)
        centered = target - mean
        residual = np.subtract(target, output, dtype=np.float64)
        return np.stack([np.full_like(mean, n), mean,
                         np.einsum("nd,nd->d", centered, centered, dtype=np.float64),
                         np.einsum("nd,nd->d", residual, residual),
                         target.min(axis=0), target.max(axis=0)])

    def combine(self, first, second):
        if first is None:
            return second
        n_a, mean_a, m2_a, res_a, low_a, high_a = first
        n_b, mean_b, m2_b, res_b, low_b, high_b = second
        n = n_a + n_b
        delta = mean_b - mean_a
        return np.stack([n, mean_a + delta * (n_b / n), m2_a + m2_b + delta * delta * (n_a * n_b / n),
                         res_a + res_b, np.minimum(low_a, low_b), np.maximum(high_a, high_b)])

    def result(self, statistics):
        _, _, total, residual, low, high = statistics
        constant = (low == high) | (total == 0)  # (or spread so small its squares underflow)
        scores = np.where(constant, np.where(residual == 0, 1.0, 0.0),
                          1.0 - residual / np.where(constant, 1.0, total))
        return float(scores.mean())


class MeanOfBatches(Metric):
    """A plain function ``fn(output, target) -> float`` as a metric (Keras's convention).

    Over several batches its value is the batch values' mean weighted by batch size — exact
    for means of per-sample quantities, an approximation otherwise. Targets are passed on
    unchecked.
    """

    batchwise = True  # the value of a batch is what is averaged: fit scores each batch alone

    def __init__(self, function, name: str | None = None, higher_is_better: bool = False):
        if not callable(function):
            raise TypeError(f"MeanOfBatches needs a function fn(output, target) -> float, got "
                            f"{type(function).__name__}.")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"a metric's name must be a string (its key in the logs), got {type(name).__name__} "
                            f"{name!r}.")
        if not isinstance(higher_is_better, (bool, np.bool_)):
            raise TypeError(f"higher_is_better must be True or False, got {higher_is_better!r}.")
        self.function = function
        self.name = name or getattr(function, "__name__", "metric")
        self.higher_is_better = bool(higher_is_better)

    def check_target(self, target, output_shape):
        return target

    def statistics(self, output, target):
        n = output.shape[0]
        value = self.function(output, target)
        number = np.asarray(value)
        if number.size != 1 or number.dtype.kind not in "fiub":
            raise TypeError(f"metric {self.name!r}: the function must return one real number, got "
                            f"{type(value).__name__} {str(value)[:60]!r}.")
        return np.array([float(number.reshape(())) * n, n], dtype=np.float64)

    def result(self, statistics):
        return float(statistics[0] / statistics[1])


accuracy = Accuracy()
mse = MeanError("mse", 2)
mae = MeanError("mae", 1)
r2 = R2()

METRICS: dict[str, Metric] = {metric.name: metric for metric in (accuracy, mse, mae, r2)}
ALIASES = {
    "acc": "accuracy",
    "mean_squared_error": "mse",
    "mean_absolute_error": "mae",
    "r2_score": "r2",
    "r_squared": "r2",
}


def get(spec) -> Metric:
    """Resolve a metric: a name (case-insensitive, aliases allowed), a Metric, or a function.

    >>> get("acc") is accuracy
    True

    A plain function ``fn(output, target) -> float`` is wrapped in :class:`MeanOfBatches`.
    An unknown name raises ``ValueError`` listing the valid names.
    """
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, type) and issubclass(spec, Metric):
        raise TypeError(f"pass a metric instance, e.g. {spec.__name__}(), not the class {spec.__name__}.")
    if isinstance(spec, str):
        key = spec.strip().lower().replace("-", "_")
        return lookup(METRICS, ALIASES.get(key, key), "metrics", "metric")
    if callable(spec):
        return MeanOfBatches(spec)
    raise TypeError(
        f"a metric must be a name (one of {', '.join(METRICS)}), a Metric or a function "
        f"fn(output, target) -> float, got {type(spec).__name__} {spec!r}."
    )


def names() -> list[str]:
    """The registered metric names (aliases not included)."""
    return list(METRICS)


__all__ = ["Metric", "Accuracy", "MeanError", "R2", "MeanOfBatches", "METRICS", "ALIASES", "get", "names",
           *METRICS]
