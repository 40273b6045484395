"""``fit``, ``evaluate`` and ``predict``: minibatch training with validation, metrics and callbacks.

    >>> history = dl.fit(net, x, y, loss="cross_entropy", optimizer="adam", epochs=20,
    ...                  batch_size=100, validation_split=0.1, metrics=["accuracy"],
    ...                  callbacks=[dl.EarlyStopping(patience=5, restore_best_weights=True)])
    >>> history.history["val_accuracy"]                 # one value per epoch

What one epoch does, for training data x ``(N, D_0)`` and targets y (N first):

1. one permutation of the N samples is drawn with ``rng.permutation(N)`` (nothing else is
   drawn from ``rng``; ``shuffle=False`` keeps the given order; a single full batch is not
   permuted), cut into consecutive batches of ``batch_size`` — without replacement, the last
   partial batch kept (003's SGD);
2. for each batch: clear the gradients, record a forward pass, compute the loss and
   dL/d(output), backpropagate, check that the loss and every gradient are finite, step
   the optimizer;
3. the epoch's ``loss`` is the mean loss per training sample over the epoch (see below), and
   each metric is computed over all outputs seen during the epoch — the running values
   Keras reports, with the weights as they were at each batch;
4. with validation data: ``val_loss`` and ``val_<metric>`` on the whole validation set;
5. the learning-rate schedule steps (``ReduceLROnPlateau`` gets ``val_loss``, or ``loss``
   without validation), then the callbacks' ``on_epoch_end``, then the history records.

**Loss convention.** For a mean-reduced loss (``mse``, ``cross_entropy``,
``binary_cross_entropy_with_logits``), the epoch's ``loss`` is the batch losses' mean
weighted by batch size: Σ_b n_b L_b / N (Keras's convention). For a sum-reduced loss
(``sum_squares``, ``half_sum_squares``) it is Σ_b L_b / N: the loss **per sample**, so that
epochs with different batch sizes, ``val_loss`` and :func:`evaluate` are comparable.
``val_loss`` and ``evaluate`` follow the same rule (L(whole set) / N for a sum-reduced loss).

**Divergence.** A non-finite loss or gradient raises :class:`TrainingDiverged` before the
optimizer step, so the weights are those from before the failing step. The check costs one
scalar test for the loss and one dot product over all gradients (they share one flat array;
one per array otherwise).

The check is made again on the weights after each epoch, since a finite but huge gradient
times the learning rate can overflow the update itself (phase ``"update"``: that step cannot
be undone). Callbacks' ``on_train_end`` is not called after a divergence.

**Ctrl-C.** In the main thread, a first Ctrl-C lets the current step finish and ends
training cleanly; so does a ``KeyboardInterrupt`` raised by a callback. ``fit`` then returns
the history of the completed epochs with ``history.interrupted = True`` and
``history.message`` (printed on stderr unless ``verbose=0``); the interrupted epoch is not
recorded (unless the Ctrl-C came during its last batch: it is then completed, validated and
recorded). The weights are those after the last completed step
(unless a callback such as ``EarlyStopping(restore_best_weights=True)`` restores others in
``on_train_end``, which runs as after any end of training). A second Ctrl-C interrupts at
once, possibly in the middle of an optimizer step. Code that calls ``fit`` and goes on must
check ``history.interrupted`` (the history may be empty); depthlab's experiments raise
``KeyboardInterrupt`` again, so the command stops with exit code 130.

**Stopping.** A callback sets ``state.stop_training = True`` (see
:mod:`depthlab.training.callbacks`); from a batch hook the epoch ends early and, as in Keras, is
still validated and recorded with the batches it had.
"""
from __future__ import annotations

import math
import numbers
import sys

import numpy as np

from ..nn import losses as _losses
from . import metrics as _metrics
from .._fast.buffers import entry_sum
from .._checks import as_float_array, check_positive_int, check_real, resolve_rng
from .callbacks import Callback, History, TrainingState
from .._fast.blocks import Scores, batches
from ..nn.model import NonFiniteError, Sequential
from .step import TrainStep, loss_gradient
from .display import DeferredInterrupt, progress_display

Array = np.ndarray


class TrainingDiverged(NonFiniteError):
    """Training produced a non-finite loss or gradient (a ``FloatingPointError``).

    Attributes
    ----------
    epoch, batch, step : int
        Where it happened, counting from 0: the epoch (as in ``history.epoch``), the batch
        within it, and the optimizer step since ``fit`` began.
    phase : str
        ``"forward"`` (some f_k or h_k became non-finite), ``"loss"`` (the outputs are finite
        but the loss is not), ``"backward"`` (a parameter gradient is non-finite) or
        ``"update"`` (an earlier optimizer step made the weights themselves non-finite) or
        ``"input"`` (the network held NaN or Inf before ``fit``'s first step).
    layer : int or None
        The layer k where the values first became non-finite (for ``"backward"``, the
        highest k: backpropagation runs from layer K down to 0).
    parameter : str or None
        The parameter's name, e.g. ``"weights[3]"`` (``"backward"`` and ``"update"``).
    history : History
        The completed epochs.

    The weights are those from before the failing step; the parameters' ``.grad`` hold that
    step's gradients (when it got that far).
    """

    def __init__(self, message: str, *, epoch: int, batch: int, step: int, phase: str,
                 layer: int | None, parameter: str | None, history: History):
        super().__init__(message)
        self.epoch, self.batch, self.step = epoch, batch, step
        self.phase, self.layer, self.parameter = phase, layer, parameter
        self.history = history


# ----------------------------------------------------------------------------- input checks

def _check_net(net) -> Sequential:
    if not isinstance(net, Sequential):
        raise TypeError(
            f"net must be a depthlab network (dl.MLP(...) or dl.Sequential([...])), got {type(net).__name__}. "
            "A PyTorch module converts with dl.from_torch(module)."
        )
    return net


def _reduction(loss) -> str:
    """'sum' or 'mean': how a loss reduces over samples (decides the per-sample convention)."""
    declared = getattr(loss, "reduction", None)
    if declared in ("sum", "mean"):
        return declared
    if isinstance(loss, _losses.SquaredError):
        return "mean" if loss.mean else "sum"
    return "mean"


def _check_targets(x: Array, y, name: str) -> Array:
    """y as an array with one entry per sample of x; NaN/Inf refused."""
    if y is None:
        raise TypeError(f"{name} is None; pass the targets: one label or target row per sample of x.")
    given = y
    if not isinstance(y, np.ndarray):
        try:
            y = np.asarray(y)
        except ValueError:  # rows of different lengths
            raise ValueError(f"{name} has rows of different lengths; pass one label or one target row of the "
                             "same length per sample.") from None
    if y.dtype.kind == "O" and y.ndim == 0:
        raise TypeError(f"{name} must be an array or a list of labels or targets, got {type(given).__name__}.")
    if y.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers (labels or targets), got an array of dtype {y.dtype}.")
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"x and {name} must have the same number of samples (first axis): x has {x.shape[0]} "
            f"(shape {x.shape}), {name} has {y.shape[0] if y.ndim else 'none'} (shape {y.shape})."
        )
    if y.dtype.kind == "f":
        as_float_array(y, name)  # refuses NaN/Inf, naming the argument
    return y


class _Objective:
    """A loss and metrics with targets checked once; per batch only gathers and arithmetic."""

    def __init__(self, loss, metrics):
        self.loss = _losses.get(loss)
        self.per_sample = _reduction(self.loss) == "mean"  # weight batch losses by size
        self.builtin = isinstance(self.loss, _losses.Loss)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, _metrics.Metric)) or callable(metrics):
            metrics = [metrics]
        elif not isinstance(metrics, (list, tuple)):
            raise TypeError(f"metrics must be a list of names, e.g. ['accuracy'], got {type(metrics).__name__}.")
        self.metrics = [_metrics.get(m) for m in metrics]
        names = [m.name for m in self.metrics]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ValueError(f"metrics lists {duplicate!r} twice; pass each once.")
        taken = next((n for n in names if n in ("loss", "lr", "size") or str(n).startswith("val_")), None)
        if taken is not None:
            raise ValueError(f"a metric is named {taken!r}, a name fit's logs already use ('loss', 'lr', 'size' and "
                             "'val_<name>' for validation): its values would be overwritten. Give it another name, "
                             "e.g. dl.metrics.MeanOfBatches(fn, name='my_metric').")

    def targets(self, net, x: Array, y, name: str) -> tuple[Array, list[Array]]:
        """(loss target, [metric targets]) for x's samples, each checked against the output shape."""
        y = _check_targets(x, y, name)
        shape = (x.shape[0], _output_width(net, x))
        if self.builtin:
            output_like = np.broadcast_to(np.zeros((), dtype=net.dtype), shape)
            loss_target = self.loss.check_target(y, output_like)
        else:
            loss_target = y
        return loss_target, [m.check_target(y, shape) for m in self.metrics]

    def value_and_grad(self, output: Array, target: Array) -> tuple[float, Array]:
        return loss_gradient(self.loss, output, target, True, False)

    def value(self, output: Array, target: Array) -> float:
        if self.builtin:
            return self.loss.compute_value(output, target)
        value = self.loss.value(output, target)
        number = np.asarray(value)
        if number.size != 1 or number.dtype.kind not in "fiub":
            raise TypeError(f"the loss {type(self.loss).__name__}.value(output, target) must return one real "
                            f"number, got {type(value).__name__} {str(value)[:60]!r}.")
        return float(number.reshape(()))

    def weight(self, size: int) -> int:
        """The factor of a batch's loss in the epoch's total (see the module docstring)."""
        return size if self.per_sample else 1


def _output_width(net: Sequential, x: Array) -> int:
    """D_out: ``net.out_features``, or, for a network of layers of any width (activations
    only), the width of its output for x's first sample."""
    if net.out_features is not None:
        return net.out_features
    with net.mode(False):
        return net.forward(x[:1]).shape[1]


def _split(x: Array, y, validation_split) -> tuple[Array, Array, Array, Array]:
    """Keras's split: the last fraction of the samples (before any shuffling) validates."""
    fraction = check_real(validation_split, "validation_split", low=0.0, high=1.0, low_open=True, high_open=True)
    n = x.shape[0]
    cut = int(math.ceil(n * (1.0 - fraction)))
    if cut <= 0 or cut >= n:
        raise ValueError(
            f"validation_split={fraction:g} of {n} samples leaves {cut} for training and {n - cut} for "
            "validation; both need at least one sample. Use more data or another fraction."
        )
    return x[:cut], y[:cut], x[cut:], y[cut:]


def _check_callbacks(callbacks) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        callbacks = [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list of Callback objects, got {type(callbacks).__name__}.")
    for index, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            raise TypeError(
                f"callbacks[{index}] must be a dl.Callback (e.g. dl.EarlyStopping(...)), got "
                f"{type(callback).__name__}. Wrap functions with dl.callbacks.LambdaCallback."
            )
    return list(callbacks)


def _build_optimizer(net: Sequential, optimizer):
    from .. import optim

    if not net.parameters():
        raise ValueError(f"fit: the network has no parameters to train (its layers: "
                         f"{', '.join(type(layer).__name__ for layer in net)}). Add a layer with weights, e.g. "
                         "dl.Linear, or use dl.evaluate / dl.predict for a network that only computes.")
    if isinstance(optimizer, optim.Optimizer):
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if not any(id(p) in owned for p in net.parameters()):
            raise ValueError(
                "optimizer does not update any of this network's parameters; was it built for another "
                "network? Build it from this one: dl.optim.Adam(net.parameters(), lr=...)."
            )
        return optimizer
    if isinstance(optimizer, str) or (isinstance(optimizer, type) and issubclass(optimizer, optim.Optimizer)):
        return optim.get(optimizer, net.parameters())
    raise TypeError(
        f"optimizer must be a name (one of {', '.join(optim.OPTIMIZERS)}) or an optimizer such as "
        f"dl.optim.Adam(net.parameters(), lr=1e-2), got {type(optimizer).__name__} {optimizer!r}."
    )


def _build_scheduler(lr_scheduler, optimizer):
    if lr_scheduler is None:
        return None
    if isinstance(lr_scheduler, type):
        raise TypeError(
            f"lr_scheduler must be a schedule object or a function optimizer -> schedule, got the class "
            f"{lr_scheduler.__name__}; e.g. lr_scheduler=lambda opt: dl.optim.{lr_scheduler.__name__}(opt, ...)."
        )
    if not hasattr(lr_scheduler, "step") and callable(lr_scheduler):
        lr_scheduler = lr_scheduler(optimizer)
    if not callable(getattr(lr_scheduler, "step", None)):
        raise TypeError(
            "lr_scheduler must be a schedule with a step() method (e.g. dl.optim.StepLR(opt, 10)) or a "
            f"function optimizer -> schedule, got {type(lr_scheduler).__name__}."
        )
    from ..optim import Optimizer

    driven = getattr(lr_scheduler, "optimizer", optimizer)
    if not isinstance(driven, Optimizer):
        raise TypeError(
            f"lr_scheduler drives a {type(driven).__module__}.{type(driven).__name__}, not a depthlab optimizer "
            "(a PyTorch scheduler?); use depthlab's, e.g. lr_scheduler=lambda opt: dl.optim.StepLR(opt, 10)."
        )
    if driven is not optimizer:
        raise ValueError(
            "lr_scheduler drives another optimizer than the one fit uses; build it from the same one "
            "(or pass lr_scheduler=lambda opt: dl.optim.StepLR(opt, 10) with optimizer given by name)."
        )
    return lr_scheduler


def _check_verbose(verbose) -> int:
    if isinstance(verbose, bool) or not isinstance(verbose, (numbers.Integral, np.integer)) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0 (silent), 1 (progress bar) or 2 (one line per epoch), got {verbose!r}.")
    return int(verbose)


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}.")
    return bool(value)


def _check_batch_statistics(net, n: int, size: int) -> None:
    """Batch norm in train mode needs two samples per batch: refuse, before any step, an epoch
    whose last batch would hold one (PyTorch fails there mid-epoch)."""
    if (size > 1 and n % size != 1) or not any(hasattr(layer, "batch_statistics") for layer in net.layers_within()):
        return
    if n == 1:
        raise ValueError("fit: this network's batch norm needs at least 2 samples per batch in train mode, "
                         "got x with 1 sample.")
    if size == 1:
        raise ValueError("fit: this network's batch norm needs at least 2 samples per batch in train mode, "
                         "got batch_size=1; use batch_size=2 or more.")
    better = next(b for b in range(size + 1, n + 1) if n % b != 1)  # n itself always qualifies
    raise ValueError(f"fit: with {n} samples and batch_size={size} the last batch of each epoch holds 1 sample, "
                     f"but this network's batch norm needs at least 2 per batch in train mode; use e.g. "
                     f"batch_size={better}, or drop a sample.")


def _optional_batch_size(batch_size, name: str) -> int | None:
    return None if batch_size is None else check_positive_int(batch_size, name)


# ----------------------------------------------------------------------------- evaluation

def _evaluate(net: Sequential, objective: _Objective, x: Array, loss_target: Array,
              metric_targets: list[Array], batch_size: int | None, prefix: str = "") -> dict[str, float]:
    """Loss (per the convention) and metrics on checked data, in batches of ``batch_size``."""
    n = x.shape[0]
    size = n if batch_size is None else min(batch_size, n)
    total, statistics = 0.0, [None] * len(objective.metrics)
    with net.mode(False), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for start in range(0, n, size):
            rows = slice(start, start + size)
            output = net.forward(x[rows], allow_nonfinite=True)
            count = output.shape[0]
            total += objective.value(output, loss_target[rows]) * objective.weight(count)
            for i, metric in enumerate(objective.metrics):
                statistics[i] = metric.combine(statistics[i], metric.statistics(output, metric_targets[i][rows]))
    logs = {prefix + "loss": total / n}
    for metric, stats in zip(objective.metrics, statistics):
        logs[prefix + metric.name] = metric.result(stats)
    return logs


def evaluate(net, x, y, loss="mse", metrics=None, batch_size=None) -> dict[str, float]:
    """The loss and metrics of ``net`` on a data set, in eval mode (as ``predict``).

    Parameters
    ----------
    net : Sequential
    x : array_like, shape (N, D_0)
    y : array_like, shape (N,) or (N, D_out)
        Targets (integer labels for ``cross_entropy``).
    loss : str or loss object, default "mse"
    metrics : list of str / Metric, optional
    batch_size : int, optional
        Evaluate in chunks of this many samples (None: all at once). The result does not
        depend on it beyond rounding.

    Returns
    -------
    dict
        ``{"loss": ..., "<metric>": ...}`` as Python floats. The loss is the loss per
        sample for sum-reduced losses (see the module docstring), the loss itself otherwise.
    """
    net = _check_net(net)
    objective = _Objective(loss, metrics)
    x = net.check_input(x, "x", finite=True)
    loss_target, metric_targets = objective.targets(net, x, y, "y")
    return _evaluate(net, objective, x, loss_target, metric_targets, _optional_batch_size(batch_size, "batch_size"))


def predict(net, x, batch_size=None) -> Array:
    """The network's outputs for x ``(N, D_0)``: an array ``(N, D_out)`` in the network's dtype.

    ``batch_size`` bounds the memory of one forward pass (None: all samples at once). Runs in
    eval mode (batch norm's running statistics, no dropout), as Keras's ``predict``; the
    network's own mode is restored after.
    """
    net = _check_net(net)
    x = net.check_input(x, "x", finite=True)
    batch_size = _optional_batch_size(batch_size, "batch_size")
    n = x.shape[0]
    with net.mode(False):
        if batch_size is None or batch_size >= n:
            return net.forward(x)
        first = net.forward(x[:batch_size])
        output = np.empty((n, first.shape[1]), dtype=first.dtype)
        output[:batch_size] = first
        for start in range(batch_size, n, batch_size):
            output[start:start + batch_size] = net.forward(x[start:start + batch_size])
        return output


# ----------------------------------------------------------------------------- divergence

def _parameter_places(net: Sequential) -> list[tuple[int | None, object]]:
    """(Linear layer k or None, Parameter) for every parameter, in order."""
    layer_of = {id(p): k for k, linear in enumerate(net.linears) for p in linear.parameters()}
    return [(layer_of.get(id(p)), p) for p in net.parameters()]


def _where(k: int | None, name: str) -> str:
    return f"{name} (layer {k})" if k is not None else name


def _first_bad_weights(net: Sequential) -> tuple[str, int, str, str] | None:
    """The first parameter whose values are non-finite, or None."""
    for k, param in _parameter_places(net):
        if not np.isfinite(param.data).all():
            return ("update", k, param.name,
                    f"this optimizer step made the parameter {_where(k, param.name)} non-finite: "
                    "the gradients were finite but the update overflowed (huge gradients times the "
                    "learning rate)")
    return None


def _first_bad_forward(net: Sequential, trace) -> tuple[str, int | None, str | None, str]:
    """(phase, layer, parameter, description) for a non-finite loss."""
    culprit = _first_bad_weights(net)
    if culprit is not None:
        return culprit
    layer_inputs = [trace.input] + trace.layer_outputs[:-1]
    for i, (layer, h_in, h) in enumerate(zip(net.layers, layer_inputs, trace.layer_outputs)):
        if np.isfinite(h).all():
            continue
        if layer in net.linears:
            k = net.linears.index(layer)
            with np.errstate(over="ignore", invalid="ignore"):
                largest = float(np.max(np.abs(h_in)))
            return ("forward", k, None,
                    f"the forward pass overflowed at layer {k}: f_{k} = β_{k} + Ω_{k} h_{k} has non-finite "
                    f"values (max |h_{k}| = {largest:.3g})")
        k = sum(1 for linear in net.linears if net.layers.index(linear) < i) - 1
        if k >= 0 and all(net.layers.index(linear) != i for linear in net.linears):
            return ("forward", k, None,
                    f"the forward pass became non-finite at layer {k}: h_{k + 1} = a[f_{k}] has non-finite values")
        return ("forward", None, None, f"the forward pass became non-finite at layers[{i}] ({layer!r})")
    with np.errstate(over="ignore", invalid="ignore"):
        largest = float(np.max(np.abs(trace.output)))
    return ("loss", None, None, f"the outputs are finite (max |f_K| = {largest:.3g}) but the loss overflowed "
                                f"(if the outputs are moderate, check the scale of the targets)")


def _first_bad_gradient(net: Sequential) -> tuple[str, int | None, str | None, str] | None:
    """The highest layer with a non-finite parameter gradient, or None if all are finite."""
    places = _parameter_places(net)  # from the output layer down, each layer's weight before its bias
    for k, param in sorted(places, key=lambda place: -1 if place[0] is None else -place[0]):
        if param.grad is not None and not np.isfinite(param.grad).all():
            return ("backward", k, param.name,
                    f"the backward pass produced a non-finite gradient dL/d{param.name} at "
                    f"{'layer ' + str(k) if k is not None else param.name} "
                    "(backpropagation runs from the output layer down; lower layers follow)")
    return None


# ----------------------------------------------------------------------------- the loop

class _Run:
    """One call of ``fit``: checked data, the objective, the callbacks and the loop."""

    def __init__(self, net, objective, optimizer, x, loss_target, metric_targets, validation, batch_size,
                 epochs, shuffle, rng, callbacks, progress, lr_scheduler, clip_norm, state):
        self.net, self.objective, self.optimizer = net, objective, optimizer
        self.x, self.loss_target, self.metric_targets = x, loss_target, metric_targets
        self.validation, self.batch_size, self.epochs = validation, batch_size, epochs
        self.shuffle, self.rng, self.callbacks = shuffle, rng, callbacks
        self.progress, self.lr_scheduler, self.clip_norm = progress, lr_scheduler, clip_norm
        self.state = state
        self.params = net.parameters()
        self.batch_begin = [c for c in callbacks if c.handles("on_batch_begin")]
        self.batch_end = [c for c in callbacks if c.handles("on_batch_end")]
        from ..optim import ReduceLROnPlateau, clip_grad_norm
        self.plateau = isinstance(lr_scheduler, ReduceLROnPlateau)
        self.train_step = TrainStep(net, objective.loss, optimizer)
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self.outside_optimizer = [p for p in self.params if id(p) not in owned]  # frozen: fit clears their grads
        # clipping covers what the optimizer trains, as PyTorch's clip_grad_norm_(model.parameters()) skips
        # frozen parameters (their .grad is None there)
        self.trained = [p for p in self.params if id(p) in owned]
        self.clip = clip_grad_norm
        self.scores = Scores(objective.metrics, metric_targets, min(batch_size, x.shape[0]), _output_width(net, x),
                             net.dtype) if objective.metrics else None
        self.stopper = None  # the callback that set state.stop_training

    # -- one epoch ----------------------------------------------------------------------------
    def train_epoch(self, epoch: int, interrupt: DeferredInterrupt) -> tuple[dict | None, int]:
        """Train one epoch; returns (logs, steps done) — logs None after Ctrl-C."""
        net, objective, state, params = self.net, self.objective, self.state, self.params
        step = self.optimizer.step
        value_and_grad, weight = objective.value_and_grad, objective.weight
        x, clip_norm, clip = self.x, self.clip_norm, self.clip
        batch_begin, batch_end, progress = self.batch_begin, self.batch_end, self.progress
        watch = bool(batch_begin or batch_end)
        outside, zero_grad = self.outside_optimizer, self.optimizer.zero_grad
        n = x.shape[0]
        size = min(self.batch_size, n)
        steps = -(-n // size)
        order = self.rng.permutation(n) if self.shuffle and steps > 1 else None
        scores = self.scores
        if scores is not None:
            scores.begin(order)
        total = seen = 0

        def running():
            logs = {"loss": total / seen}
            if scores is not None:
                logs.update(scores.results())
            return logs

        for batch, (xb, yb) in enumerate(batches((x, self.loss_target), order, size)):
            state.batch = batch
            if batch_begin:
                for callback in batch_begin:
                    callback.on_batch_begin(batch, {})
            for p in outside:  # the optimizer's parameters it clears itself (here or in the fused step)
                p.grad = None
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if watch:  # batch hooks read state.trace and state.gradients: the explicit passes
                    zero_grad()
                    trace = net.forward(xb, record=True, allow_nonfinite=True)
                    output = trace.output
                    value, grad = value_and_grad(output, yb)
                    if not math.isfinite(value):
                        self.diverged(epoch, batch, _first_bad_forward(net, trace))
                    gradients = net.backward(grad, input_grad=False, allow_nonfinite=True)  # no dL/dx
                else:
                    value, output = self.fused_gradients(epoch, batch, xb, yb)
                flat = None if watch else net.flat_gradients()
                gradient_sum = None if flat is None else entry_sum(flat)  # one dot product
                flat = None  # let go: the next backward pass reuses the flat array only when nobody holds it
                if gradient_sum is None or not math.isfinite(gradient_sum):
                    for p in params:
                        if not math.isfinite(entry_sum(p.grad)):  # one dot product per array
                            culprit = _first_bad_gradient(net)
                            if culprit is not None:  # else a sum of finite values overflowed
                                self.diverged(epoch, batch, culprit)
                            break
                if clip_norm is not None:
                    clip(self.trained, clip_norm)
                step()
            count = output.shape[0]
            seen += count
            total += value * weight(count)
            if scores is not None:
                scores.add(output)
            state.step += 1
            if watch:
                state.trace, state.gradients = trace, gradients
                logs = {"loss": value, "size": count}
                for callback in batch_end:
                    callback.on_batch_end(batch, logs)
                    if state.stop_training and self.stopper is None:
                        self.stopper = callback
            if progress is not None:
                progress.advance(running)
            if interrupt.requested and batch < steps - 1:
                return None, batch + 1
            if state.stop_training:  # as Keras: the partial epoch is still validated and recorded
                return running(), batch + 1
        return running(), steps

    def fused_gradients(self, epoch: int, batch: int, xb: Array, yb: Array) -> tuple[float, Array]:
        """(loss, output) of a batch through :class:`~depthlab.training.step.TrainStep`, its
        parameter gradients left in ``grad``; a non-finite forward pass or loss ends the run."""
        try:
            value = self.train_step.gradients(xb, yb, return_loss=True, check_target=False)
        except NonFiniteError:
            value = math.nan
        if not math.isfinite(value):
            trace = self.net.forward(xb, record=True, allow_nonfinite=True)
            self.diverged(epoch, batch, _first_bad_forward(self.net, trace))
        return value, self.train_step.output

    def check_weights(self, epoch: int, steps_done: int) -> None:
        """After an epoch: the last update may have overflowed the weights (cheap sums first)."""
        with np.errstate(over="ignore", invalid="ignore"):
            if all(math.isfinite(entry_sum(p.data)) for p in self.params):
                return
        culprit = _first_bad_weights(self.net)
        if culprit is not None:
            self.diverged(epoch, steps_done, culprit)

    def diverged(self, epoch: int, batch: int, culprit) -> None:
        phase, layer, parameter, description = culprit
        state = self.state
        step = state.step
        kept = "The weights are those from before this step."
        if phase == "update" and step == 0:  # no step of this fit made them: they came in so
            raise TrainingDiverged(
                f"fit cannot train this network: its parameter {parameter} (layer {layer}) held NaN or Inf "
                "before fit took its first step (no update of this run made it). Rebuild the network, "
                "reload a checkpoint, or set_weights with finite arrays.",
                epoch=epoch, batch=0, step=0, phase="input", layer=layer, parameter=parameter, history=state.history)
        if phase == "update":  # found one step later: the culprit is the previous step
            batch, step = batch - 1, step - 1
            kept = ("The weights are those after it — an update cannot be undone — so rebuild or reload "
                    "the network.")
        lr = self.optimizer.param_groups[0].get("lr")
        fixes = [f"a lower learning rate (lr={lr:g} now)" if lr is not None else "a lower learning rate",
                 "a variance-preserving initialization (e.g. init='he_normal' for ReLU, 'glorot_normal' for tanh)",
                 "gradient clipping (fit(..., clip_grad_norm=1.0))" if self.clip_norm is None
                 else f"a smaller clip_grad_norm (now {self.clip_norm:g})"]
        raise TrainingDiverged(
            f"Training diverged in epoch {epoch}, batch {batch} (of {self.steps_per_epoch} per epoch), step "
            f"{step} overall — all counted from 0, as history.epoch is: {description}. {kept} "
            f"Try {', '.join(fixes[:-1])} or {fixes[-1]}.",
            epoch=epoch, batch=batch, step=step, phase=phase, layer=layer, parameter=parameter,
            history=state.history,
        )

    # -- the whole run ------------------------------------------------------------------------
    def run(self) -> History:
        state, history, callbacks = self.state, self.state.history, self.callbacks
        everyone = callbacks + [history]
        for callback in everyone:
            callback.set_state(state)
        n = self.x.shape[0]
        self.steps_per_epoch = -(-n // min(self.batch_size, n))
        epoch = 0
        try:
            with DeferredInterrupt() as interrupt:
                for callback in everyone:
                    callback.on_train_begin({})
                for epoch in range(self.epochs):
                    state.epoch = epoch
                    lr = self.optimizer.param_groups[0].get("lr")
                    for callback in everyone:
                        callback.on_epoch_begin(epoch, {})
                    if self.progress is not None:
                        self.progress.begin(epoch)
                    logs, steps_done = self.train_epoch(epoch, interrupt)
                    if logs is None:  # Ctrl-C: the partial epoch is not recorded
                        break
                    self.check_weights(epoch, steps_done)
                    if self.validation is not None:
                        logs.update(_evaluate(self.net, self.objective, *self.validation, prefix="val_"))
                    if lr is not None:
                        logs["lr"] = float(lr)
                    if self.lr_scheduler is not None:
                        if self.plateau:
                            self.lr_scheduler.step(logs["val_loss" if self.validation is not None else "loss"])
                        else:
                            self.lr_scheduler.step()
                    for callback in everyone:
                        callback.on_epoch_end(epoch, logs)
                        if state.stop_training and self.stopper is None:
                            self.stopper = callback
                    if self.progress is not None:
                        self.progress.end(epoch, logs)
                    if interrupt.requested or state.stop_training:
                        break
                if interrupt.requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            self.interrupted(epoch)
        finally:
            if self.progress is not None:
                self.progress.close()
        if state.stop_training and not history.interrupted:
            by = f"by {type(self.stopper).__name__} " if self.stopper is not None else ""
            history.message = (f"Training stopped {by}in epoch {epoch}, after {len(history.epoch)} of "
                               f"{self.epochs} epochs.")
        for callback in everyone:
            callback.on_train_end({})
        return history

    def interrupted(self, epoch: int) -> None:
        history = self.state.history
        history.interrupted = True
        history.message = (
            f"Training interrupted (KeyboardInterrupt) in epoch {epoch} after {self.state.step} steps "
            f"overall; returning the history of the {len(history.epoch)} completed epoch(s). The weights "
            "are those after the last completed step."
        )
        if self.progress is not None:  # verbose=0 prints nothing: the caller reads history.interrupted
            self.progress.close()
            print(history.message, file=sys.stderr)


def fit(net, x, y, *, loss="mse", optimizer="adam", epochs: int = 1, batch_size: int | None = 32,
        validation_data=None, validation_split=None, metrics=None, callbacks=None, shuffle: bool = True,
        verbose: int = 1, rng=0, lr_scheduler=None, clip_grad_norm=None, validation_batch_size=None) -> History:
    """Train ``net`` on (x, y) with minibatches; returns the :class:`~depthlab.training.callbacks.History`.

    Parameters
    ----------
    net : Sequential
        Trained in place.
    x : array_like, shape (N, D_0)
        Converted once to the network's dtype (a float32 network trains in float32).
    y : array_like, shape (N,) or (N, D_out)
        Targets: integer labels ``(N,)`` (or class probabilities ``(N, C)``) for
        ``cross_entropy``, ``(N, D_out)`` values for regression losses.
    loss : str or loss object, default "mse"
        A name from :mod:`depthlab.nn.losses` (e.g. "cross_entropy", "sum_squares") or any
        object with ``value(output, target)`` and ``grad(output, target)`` (taken as a mean
        over the batch unless it has ``reduction = "sum"``).
    optimizer : Optimizer or str, default "adam"
        An optimizer built on ``net.parameters()`` (``dl.optim.Adam(net.parameters(),
        lr=1e-2)``), or a name, built with its defaults by ``dl.optim.get(name,
        net.parameters())``. It keeps its state between calls of ``fit``.
    epochs : int, default 1
        Passes over the training data.
    batch_size : int or None, default 32
        Samples per step. None, or a value ≥ N, gives one full batch per epoch (full-batch
        gradient descent; the batch is then not permuted, as order does not change a sum).
    validation_data : (x_val, y_val), optional
        Evaluated on the whole set after every epoch (``val_loss``, ``val_<metric>``).
    validation_split : float in (0, 1), optional
        Hold out the *last* fraction of the samples as given (Keras's rule: the last
        N − ceil(N·(1 − split)) samples, before shuffling). Not with ``validation_data``.
    metrics : list of str, Metric or function, optional
        From :mod:`depthlab.training.metrics`: "accuracy", "mse", "mae", "r2".
    callbacks : list of Callback, optional
        See :mod:`depthlab.training.callbacks`; e.g. ``dl.EarlyStopping(patience=5)``.
    shuffle : bool, default True
        Draw a new permutation each epoch from ``rng``; False keeps the samples' order.
    verbose : {0, 1, 2}, default 1
        1: a tqdm progress bar per epoch with the running loss and metrics (one line per
        epoch when tqdm — the optional 'lab' extra — is missing); 2: one line per epoch;
        0: silent. Output goes to stderr.
    rng : int, np.random.Generator or None, default 0
        Source of the permutations: exactly one ``rng.permutation(N)`` per epoch, none when
        one batch holds all samples (a Generator passed in advances). So
        ``np.random.default_rng(seed)`` reproduces fit's batches outside it.
    lr_scheduler : schedule or function optimizer -> schedule, optional
        Stepped once per epoch, after validation. ``dl.optim.ReduceLROnPlateau`` gets
        ``val_loss`` (``loss`` without validation data). With ``optimizer`` given by name,
        pass a function, e.g. ``lambda opt: dl.optim.StepLR(opt, 30)``.
    clip_grad_norm : float, optional
        Clip the gradients' global 2-norm to this value before each step
        (``dl.optim.clip_grad_norm``), over the parameters the optimizer updates.
    validation_batch_size : int, optional
        Evaluate validation data in chunks of this size (None: all at once).

    Returns
    -------
    History
        ``history.history[name]``: one value per epoch for "loss", each metric, "val_loss",
        "val_<metric>" and "lr" (the learning rate used during the epoch).

    Raises
    ------
    TrainingDiverged
        A non-finite loss or gradient; names the epoch, batch, step and layer. The weights
        are those from before the failing step.
    ValueError, TypeError
        Bad arguments, checked before any training (see the module docstring).
    """
    net = _check_net(net)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = _optional_batch_size(batch_size, "batch_size")
    validation_batch_size = _optional_batch_size(validation_batch_size, "validation_batch_size")
    shuffle = _check_flag(shuffle, "shuffle")
    verbose = _check_verbose(verbose)
    rng = resolve_rng(rng)
    clip_norm = None if clip_grad_norm is None else check_real(clip_grad_norm, "clip_grad_norm", low=0.0,
                                                                 low_open=True)
    objective = _Objective(loss, metrics)
    callbacks = _check_callbacks(callbacks)
    x = net.check_input(x, "x", finite=True)
    if validation_data is not None and validation_split is not None:
        raise ValueError("pass either validation_data or validation_split, not both.")
    if validation_split is not None:
        y = _check_targets(x, y, "y")
        x, y, x_val, y_val = _split(x, y, validation_split)
        validation_data = (x_val, y_val)
    loss_target, metric_targets = objective.targets(net, x, y, "y")
    validation = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            length = f" of length {len(validation_data)}" if isinstance(validation_data, (tuple, list)) else ""
            raise ValueError(f"validation_data must be a pair (x_val, y_val), got "
                             f"{type(validation_data).__name__}{length}.")
        x_val = net.check_input(validation_data[0], "validation_data[0] (x_val)", finite=True)
        val_loss_target, val_metric_targets = objective.targets(net, x_val, validation_data[1],
                                                                 "validation_data[1] (y_val)")
        validation = (x_val, val_loss_target, val_metric_targets, validation_batch_size)
    optimizer = _build_optimizer(net, optimizer)
    scheduler = _build_scheduler(lr_scheduler, optimizer)
    n = x.shape[0]
    batch_size = n if batch_size is None else batch_size
    _check_batch_statistics(net, n, min(batch_size, n))
    steps = -(-n // min(batch_size, n))
    history = History()
    log_names = ["loss", *(m.name for m in objective.metrics)]
    if validation is not None:
        log_names += ["val_" + name for name in log_names]
    params = {"epochs": epochs, "steps": steps, "batch_size": min(batch_size, n), "samples": n,
              "validation_samples": 0 if validation is None else validation[0].shape[0],
              "verbose": verbose, "metrics": log_names + ["lr"]}
    state = TrainingState(net, optimizer, objective.loss, objective.metrics, history, params, scheduler)
    run = _Run(net, objective, optimizer, x, loss_target, metric_targets, validation, batch_size, epochs,
               shuffle, rng, callbacks, progress_display(verbose, epochs, steps), scheduler, clip_norm, state)
    with net.mode(True):  # as Keras: training in train mode, validation in eval mode
        return run.run()


__all__ = ["fit", "evaluate", "predict", "TrainingDiverged"]
