"""Callbacks for :func:`depthlab.fit`: hooks into the training loop, ``History``, ``EarlyStopping``.

A callback subclasses :class:`Callback` and overrides any of its hooks. ``fit`` calls them in
this order (``epoch`` and ``batch`` count from 0, as Keras's do)::

    on_train_begin(logs)
    for each epoch:   on_epoch_begin(epoch, logs)
        for each batch:   on_batch_begin(batch, logs); <step>; on_batch_end(batch, logs)
        on_epoch_end(epoch, logs)        # logs: {"loss", metrics, "val_...", "lr"} for the epoch
    on_train_end(logs)

Callbacks run in the order given; the :class:`History` that ``fit`` returns runs after them,
so entries a callback adds to ``logs`` in ``on_epoch_end`` are recorded in the history.
``on_batch_end`` runs after the optimizer step, with ``logs = {"loss": batch loss, "size":
samples in the batch}``; the parameters' ``.grad`` still hold that batch's gradients, and
``state.trace`` / ``state.gradients`` hold its recorded forward and backward passes (training
computes no dL/dx: ``state.gradients.input`` is None). Batch hooks cost nothing when no callback overrides them.

Every callback sees the run through ``self.state`` (a :class:`TrainingState`): the network
(``self.net``, also ``self.model``), the optimizer, the history, the epoch and step. **To stop
training**, a callback sets ``self.state.stop_training = True``; ``fit`` stops after the
current batch (from a batch hook) or epoch (from an epoch hook).
"""
from __future__ import annotations

import inspect
import math
import numbers
import sys

import numpy as np

from .._checks import check_positive_int, check_real


class TrainingState:
    """What :func:`depthlab.fit` shares with its callbacks (one object per run).

    Attributes
    ----------
    net : Sequential
        The network being trained.
    optimizer : depthlab.optim.Optimizer
    loss : Loss
        The loss object (``dl.losses.get(loss)``).
    metrics : list of depthlab.training.metrics.Metric
    history : History
        The record of completed epochs.
    params : dict
        ``epochs``, ``steps`` (batches per epoch), ``batch_size``, ``samples`` (training
        samples), ``validation_samples`` (0 without validation), ``verbose``, ``metrics``
        (the log names each epoch will have).
    lr_scheduler : object or None
    epoch : int
        The current epoch (from 0).
    batch : int
        The current batch within the epoch (from 0).
    step : int
        Optimizer steps completed since ``fit`` began.
    stop_training : bool
        Set it to True to stop after the current batch or epoch.
    trace, gradients : Trace, Gradients or None
        The last batch's recorded forward and backward passes (set only while some
        callback overrides ``on_batch_begin`` or ``on_batch_end``).
    """

    def __init__(self, net, optimizer, loss, metrics, history, params, lr_scheduler=None):
        self.net = net
        self.optimizer = optimizer
        self.loss = loss
        self.metrics = list(metrics)
        self.history = history
        self.params = params
        self.lr_scheduler = lr_scheduler
        self.epoch = 0
        self.batch = 0
        self.step = 0
        self.stop_training = False
        self.trace = None
        self.gradients = None

    def __repr__(self) -> str:
        return (f"TrainingState(epoch={self.epoch}, batch={self.batch}, step={self.step}, "
                f"stop_training={self.stop_training})")


class Callback:
    """Base class: override the hooks you need (each does nothing by default).

    Attributes
    ----------
    state : TrainingState or None
        Set by ``fit`` before ``on_train_begin``.
    net, model : Sequential
        The network being trained (``model`` is an alias, for Keras users).
    optimizer : Optimizer
    history : History

    Examples
    --------
    >>> class StopBelow(dl.Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         if logs["loss"] < 1e-3:
    ...             self.state.stop_training = True
    """

    state: TrainingState | None = None

    def set_state(self, state: TrainingState) -> None:
        """Attach the callback to a run (``fit`` calls this first)."""
        self.state = state

    def _attached(self) -> TrainingState:
        if self.state is None:
            raise RuntimeError(
                f"{type(self).__name__} is not attached to a training run: pass it to "
                "dl.fit(..., callbacks=[...]), which sets its state."
            )
        return self.state

    @property
    def net(self):
        return self._attached().net

    model = net

    @property
    def optimizer(self):
        return self._attached().optimizer

    @property
    def history(self):
        return self._attached().history

    def handles(self, hook: str) -> bool:
        """Whether this callback does something in ``hook`` (fit skips hooks nobody handles)."""
        return getattr(type(self), hook) is not getattr(Callback, hook)

    def on_train_begin(self, logs=None):
        """Called once before the first epoch."""

    def on_train_end(self, logs=None):
        """Called once after the last epoch, after an early stop, and after Ctrl-C."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called at the start of each epoch."""

    def on_epoch_end(self, epoch, logs=None):
        """Called at the end of each epoch with the epoch's logs (a dict you may add to)."""

    def on_batch_begin(self, batch, logs=None):
        """Called before each training batch."""

    def on_batch_end(self, batch, logs=None):
        """Called after each optimizer step with ``{"loss": batch loss, "size": batch size}``."""


def _check_arguments(hook: str, function) -> None:
    """Refuse, at construction, a function that cannot take the hook's arguments."""
    arguments = ("logs",) if hook.startswith("on_train") else (hook.split("_")[-2], "logs")
    try:
        inspect.signature(function).bind(*arguments)
    except ValueError:  # no signature to read (some builtins): it will tell when called
        return
    except TypeError:
        raise TypeError(f"LambdaCallback {hook} is called as {hook}({', '.join(arguments)}), but the function "
                        f"takes {inspect.signature(function)}. Example: {hook}=lambda {', '.join(arguments)}: ...") \
            from None


class LambdaCallback(Callback):
    """A callback from plain functions, with the hooks' signatures.

    >>> dl.fit(net, x, y, callbacks=[LambdaCallback(on_epoch_end=lambda epoch, logs: print(logs))])
    """

    _HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_batch_begin", "on_batch_end")

    def __init__(self, **hooks):
        unknown = sorted(set(hooks) - set(self._HOOKS))
        if unknown:
            raise TypeError(f"LambdaCallback got unknown hooks {unknown}; valid: {', '.join(self._HOOKS)}.")
        for name, function in hooks.items():
            if function is not None and not callable(function):
                raise TypeError(f"LambdaCallback {name} must be callable, got {type(function).__name__}.")
            if function is not None:
                _check_arguments(name, function)
        self._functions = {name: f for name, f in hooks.items() if f is not None}

    def handles(self, hook: str) -> bool:
        return hook in self._functions

    def _call(self, hook, *args):
        function = self._functions.get(hook)
        if function is not None:
            function(*args)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_batch_begin(self, batch, logs=None):
        self._call("on_batch_begin", batch, logs)

    def on_batch_end(self, batch, logs=None):
        self._call("on_batch_end", batch, logs)


class History(Callback):
    """The record of a run, returned by :func:`depthlab.fit`.

    Attributes
    ----------
    history : dict of str -> list of float
        One value per completed epoch for every log name: ``"loss"``, each metric,
        ``"val_loss"`` and ``"val_<metric>"`` with validation data, ``"lr"`` (the first
        parameter group's learning rate during the epoch), and anything callbacks add. A
        name that appears late, or goes missing, is padded with NaN, so every list has one
        entry per epoch.
    epoch : list of int
        The completed epochs (from 0).
    params : dict
        The run's settings (see :class:`TrainingState`).
    interrupted : bool
        True when Ctrl-C (KeyboardInterrupt) ended the run; ``message`` then says where.
    message : str or None
        Why training ended before its last epoch (Ctrl-C, or which callback stopped it),
        else None.
    """

    history: dict[str, list[float]] = None  # the record itself (shadows Callback.history)

    def __init__(self):
        self.history = {}
        self.epoch: list[int] = []
        self.params: dict = {}
        self.interrupted = False
        self.message: str | None = None

    def on_train_begin(self, logs=None):
        self.params = dict(self.state.params) if self.state is not None else {}

    def on_epoch_end(self, epoch, logs=None):
        self.record(epoch, logs or {})

    def record(self, epoch: int, logs: dict) -> None:
        """Append one epoch's logs (NaN-padding names that appear or vanish)."""
        count = len(self.epoch)
        self.epoch.append(epoch)
        for name, value in logs.items():
            values = self.history.get(name)
            if values is None:
                values = self.history[name] = [math.nan] * count
            values.append(value)
        for values in self.history.values():
            if len(values) == count:
                values.append(math.nan)

    def __getitem__(self, name: str) -> list[float]:
        try:
            return self.history[name]
        except KeyError:
            raise KeyError(f"no {name!r} in this history; it has {', '.join(self.history) or 'nothing yet'}.") from None

    def __contains__(self, name) -> bool:
        return name in self.history

    def __iter__(self):
        """The log names, as iterating ``history.history`` gives (``len`` counts the epochs)."""
        return iter(self.history)

    def keys(self):
        """The log names (``history.history.keys()``)."""
        return self.history.keys()

    def __len__(self) -> int:
        return len(self.epoch)

    def __repr__(self) -> str:
        last = ", ".join(f"{name}={_short(values[-1])}" for name, values in self.history.items() if values)
        flag = ", interrupted" if self.interrupted else ""
        return f"History({len(self.epoch)} epochs{flag}{': ' + last if last else ''})"

    def _repr_html_(self) -> str:  # Jupyter: the curves inline and a table of every log
        from .history_html import history_html
        return history_html(self)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, numbers.Real) else repr(value)


def _direction(monitor: str, metrics=()) -> str | None:
    """'min' or 'max' for a log name, from the loss and the metric tables; None if unknown."""
    from . import metrics as _metrics

    name = monitor[4:] if monitor.startswith("val_") else monitor
    if name == "loss":
        return "min"
    for metric in metrics:
        if metric.name == name:
            return "max" if metric.higher_is_better else "min"
    metric = _metrics.METRICS.get(_metrics.ALIASES.get(name, name))
    if metric is not None:
        return "max" if metric.higher_is_better else "min"
    return None


class EarlyStopping(Callback):
    """Stop when a monitored quantity has stopped improving (Keras 3's semantics).

    Parameters
    ----------
    monitor : str, default "val_loss"
        A log name: ``"loss"``, ``"val_loss"``, a metric or ``"val_<metric>"``.
    min_delta : float, default 0
        An improvement must exceed ``|min_delta|``.
    patience : int, default 0
        Epochs without improvement after which training stops.
    mode : {"auto", "min", "max"}
        "auto" decides from the name: losses, mse, mae go down; accuracy, r2 go up.
    restore_best_weights : bool, default False
        At the end of training — after an early stop *or* after the last epoch, as in
        Keras 3 — set the network's weights to those of the best epoch.
    baseline : float, optional
        Training stops after ``patience`` epochs unless the monitored value beats this.
    start_from_epoch : int, default 0
        Epochs to wait before watching (a warm-up).
    verbose : int, default 0
        1: say on stderr when stopping and when restoring weights.

    Attributes
    ----------
    best : float or None
        The best monitored value so far.
    best_epoch : int
        Its epoch (from 0).
    stopped_epoch : int
        The epoch after which training was stopped (0 if it was not stopped).
    wait : int
        Epochs since the last improvement.

    Notes
    -----
    The first watched epoch counts as an improvement (unless its value is NaN); a NaN never
    improves; training is never stopped after epoch 0. State is reset by ``on_train_begin``,
    so an instance can serve several runs. A monitored name missing from the epoch's logs is
    an error listing the available names (Keras only warns).
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 mode: str = "auto", restore_best_weights: bool = False, baseline: float | None = None,
                 start_from_epoch: int = 0, verbose: int = 0):
        self.monitor, self.min_delta, self.patience, self.mode = monitor, min_delta, patience, mode
        self.restore_best_weights, self.baseline = restore_best_weights, baseline
        self.start_from_epoch, self.verbose = start_from_epoch, verbose
        self._check_settings()
        self._reset()

    def _check_settings(self):
        """Checked at construction and again when each ``fit`` begins: a setting changed in
        between (``callback.patience = -1``) is refused there, not silently misused."""
        if not isinstance(self.monitor, str):
            raise TypeError(f"monitor must be a log name such as 'val_loss', got {type(self.monitor).__name__}.")
        if self.mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {self.mode!r}.")
        self.min_delta = abs(check_real(self.min_delta, "min_delta"))
        self.patience = check_positive_int(self.patience, "patience", minimum=0)
        self.start_from_epoch = check_positive_int(self.start_from_epoch, "start_from_epoch", minimum=0)
        self.verbose = check_positive_int(self.verbose, "verbose", minimum=0)
        self.baseline = None if self.baseline is None else check_real(self.baseline, "baseline")
        if not isinstance(self.restore_best_weights, (bool, np.bool_)):
            raise TypeError(f"restore_best_weights must be True or False, got "
                            f"{type(self.restore_best_weights).__name__} {self.restore_best_weights!r}.")
        self.restore_best_weights = bool(self.restore_best_weights)
        self._resolved_mode = self.mode if self.mode != "auto" else _direction(self.monitor)

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self._check_settings()
        self._reset()
        if self._resolved_mode is None:
            self._resolved_mode = _direction(self.monitor, self.state.metrics if self.state else ())
        if self._resolved_mode is None:
            raise ValueError(
                f"EarlyStopping cannot tell whether {self.monitor!r} should go up or down; "
                "pass mode='min' or mode='max'."
            )

    def _is_improvement(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return not math.isnan(value)
        if self._resolved_mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            hint = (" Pass validation_data or validation_split to fit, or monitor 'loss'."
                    if self.monitor.startswith("val_") else "")
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, which is not in the epoch's logs "
                f"(available: {', '.join(logs)}).{hint}"
            )
        current = float(logs[self.monitor])
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.net.get_weights(), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.net.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.state.stop_training = True
            if self.verbose:
                print(f"Epoch {epoch}: early stopping ({self.monitor} has not improved for {self.wait} "
                      f"epochs; best {self.best:.6g} at epoch {self.best_epoch}).", file=sys.stderr)

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch ({self.best_epoch}).",
                      file=sys.stderr)
            self.net.set_weights(self.best_weights)


__all__ = ["TrainingState", "Callback", "LambdaCallback", "History", "EarlyStopping"]
