"""Learning-rate schedules with ``torch.optim.lr_scheduler``'s semantics and values.

A schedule changes ``group["lr"]`` of every parameter group of an optimizer. Call
``optimizer.step()`` then ``schedule.step()`` once per epoch (or per iteration)::

    >>> schedule = CosineAnnealingLR(opt, T_max=50)
    >>> for epoch in range(100):
    ...     train_one_epoch(opt)
    ...     schedule.step()

Constructing a schedule records each group's starting rate as ``group["initial_lr"]``
(kept if already there) and takes one initial step, as PyTorch does. ``last_epoch=k >= 0``
resumes one, as PyTorch's does: every group must then hold ``initial_lr`` (the optimizer's
loaded state dict has it), and the initial step is step k + 1. The updates are
PyTorch's recursive ("chainable") forms, computed in Python floats, so values agree with
PyTorch exactly.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .._checks import check_positive_int, check_real
from .base import Optimizer


def _check_optimizer(optimizer) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a depthlab Optimizer (e.g. dl.optim.SGD(params)), got {type(optimizer).__name__}."
        )
    return optimizer


def _metric(value) -> float:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(
            f"metric must be a real number (e.g. the validation loss), got {type(value).__name__} {value!r}."
        )
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float64: as large as a metric gets
        value = math.inf if value > 0 else -math.inf
    if math.isnan(value):
        raise ValueError(
            "metric is NaN: the monitored quantity diverged; a learning-rate schedule cannot fix that."
        )
    return value


def _int(minimum: int):
    """A check for a loaded count: an int >= ``minimum``."""
    return lambda value, where: check_positive_int(value, where, minimum=minimum)


def _real(low: float, high: float | None = None, **open_ends):
    """A check for a loaded setting: a finite real number in the given bounds."""
    return lambda value, where: check_real(value, where, low=low, high=high, **open_ends)


def _choice(options: tuple):
    def check(value, where):
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"{where} must be one of {', '.join(map(repr, options))}, got {value!r}.")
        return value
    return check


class LRScheduler:
    """Base class: ``base_lrs``, ``last_epoch``, ``step()``, ``get_last_lr()``, state dicts.

    Subclasses implement ``_next_lrs()``: the rates for epoch ``last_epoch`` given the
    current ``group["lr"]`` values (``_initial`` is true during the constructor's step).
    """

    # attribute -> check of a loaded value (beside the rate lists, checked in _loaded)
    _CHECKS = {"last_epoch": _int(-1), "_step_count": _int(0)}

    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = _check_optimizer(optimizer)
        last_epoch = check_positive_int(last_epoch, "last_epoch", minimum=-1)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:  # resuming (PyTorch's rule): the groups must say where the schedule started
            missing = [index for index, group in enumerate(optimizer.param_groups) if "initial_lr" not in group]
            if missing:
                raise ValueError(
                    f"last_epoch={last_epoch} resumes a schedule, but param_groups[{missing[0]}] has no 'initial_lr' "
                    "(the rate the schedule started from). Load the optimizer's state_dict saved with the schedule "
                    "first, or start a new schedule with last_epoch=-1."
                )
            for index, group in enumerate(optimizer.param_groups):
                check_real(group["initial_lr"], f"param_groups[{index}]['initial_lr']", low=0.0)
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._initial = True
        self.step()
        self._initial = False

    def _current_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def _next_lrs(self) -> list[float]:
        return self._current_lrs()

    def step(self) -> None:
        """Advance one epoch and write the new rates into the optimizer's groups.

        Raises
        ------
        ValueError
            A rate this schedule computes is not a finite number >= 0 (e.g. ``ExponentialLR``
            with a huge ``gamma`` overflows to inf): the message names the schedule, its step and
            the group; the optimizer keeps its previous rates and the schedule its step count.
        """
        self._check_current_lrs()
        self._step_count += 1
        self.last_epoch += 1
        try:
            try:
                lrs = self._next_lrs()
            except (TypeError, ArithmeticError) as error:  # a setting changed to one it cannot use
                kind = TypeError if isinstance(error, TypeError) else ValueError
                raise kind(f"{self._settings()} cannot compute the rate at step {self.last_epoch} (last_epoch): "
                           f"{error}. Was one of its settings changed after construction?") from None
            self._check_next_lrs(lrs)
        except (ValueError, TypeError):
            self._step_count -= 1
            self.last_epoch -= 1
            raise
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = self._current_lrs()

    def _check_current_lrs(self) -> None:
        """The rates a schedule reads must be numbers (a user may have written a group's "lr").
        A group added to the optimizer since (``add_param_group``) joins the schedule with its
        rate as its base rate."""
        groups = self.optimizer.param_groups
        if hasattr(self, "base_lrs") and len(self.base_lrs) < len(groups):
            for group in groups[len(self.base_lrs):]:
                self.base_lrs.append(group.setdefault("initial_lr", group.get("lr")))
        for index, group in enumerate(groups):
            lr = group.get("lr")
            if isinstance(lr, np.ndarray) and lr.ndim == 0 and lr.dtype.kind in "fiu":
                lr = group["lr"] = float(lr)  # a 0-d array holds one rate
            if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (numbers.Real, np.floating, np.integer)):
                raise TypeError(f"{type(self).__name__}.step(): param_groups[{index}]['lr'] is {lr!r}, not a number; "
                                "set it to a learning rate before stepping the schedule.")
            if not (math.isfinite(lr) and lr >= 0):
                raise ValueError(f"{type(self).__name__}.step(): param_groups[{index}]['lr'] is {lr!r}, not a finite "
                                 "number >= 0; set it to a learning rate before stepping the schedule.")

    def _settings(self) -> str:
        """``ExponentialLR(gamma=1e+300)``: the schedule with its own settings, for messages."""
        own = {key: value for key, value in vars(self).items()
               if not key.startswith("_") and key not in ("optimizer", "base_lrs", "last_epoch")}
        return f"{type(self).__name__}({', '.join(f'{key}={value!r}' for key, value in own.items())})"

    def _check_next_lrs(self, lrs) -> None:
        for index, lr in enumerate(lrs):
            if not (math.isfinite(lr) and lr >= 0):
                current = ", ".join(f"{group['lr']:g}" for group in self.optimizer.param_groups)
                raise ValueError(
                    f"{self._settings()} at step {self.last_epoch} (last_epoch) computes a learning rate of {lr!r} for "
                    f"param_groups[{index}], not a finite number >= 0; the rates stay {current}. Choose settings "
                    "that keep the rate finite and >= 0 (e.g. gamma <= 1 for a decay; with two schedules on one "
                    "optimizer, an eta_min no larger than the rates the other one sets)."
                )

    def get_last_lr(self) -> list[float]:
        """The rates of the last ``step``, one per parameter group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Every attribute except the optimizer (lists copied)."""
        return {key: list(value) if isinstance(value, list) else value
                for key, value in vars(self).items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` returned (the optimizer's rates are restored by
        the optimizer's own ``load_state_dict``)."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict made by state_dict(), got {type(state_dict).__name__}.")
        unknown = set(state_dict) - set(self.state_dict())
        if unknown:
            raise ValueError(
                f"state_dict has keys {sorted(unknown)} that {type(self).__name__} does not have; "
                "was it saved from another schedule?"
            )
        checked = {key: self._loaded(key, value) for key, value in state_dict.items()}
        for key, value in checked.items():  # only once every value passed: a refused dict changes nothing
            setattr(self, key, value)

    def _loaded(self, key: str, value):
        """A value of a loaded state dict, checked as the constructor (or ``step``) would check it."""
        where = f"{type(self).__name__}.load_state_dict: {key!r}"
        groups = len(self.optimizer.param_groups)
        if key in ("base_lrs", "_last_lr", "min_lrs"):
            if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= groups:
                raise ValueError(f"{where} must be a list of rates, one per parameter group ({groups}), "
                                 f"got {value!r}.")
            return [check_real(lr, f"{where}[{index}]", low=0.0) for index, lr in enumerate(value)]
        if key in ("_initial",):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{where} must be True or False, got {value!r}.")
            return bool(value)
        if key == "best":
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)) \
                    or math.isnan(value):
                raise TypeError(f"{where} must be a real number (the best metric so far), got {value!r}.")
            return float(value)
        if key == "default_min_lr" and value is None:
            return None
        check = self._CHECKS.get(key) or LRScheduler._CHECKS.get(key)
        return check(value, where) if check is not None else value


    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self.get_last_lr()})"


class StepLR(LRScheduler):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs: lr_t = lr₀·γ^⌊t/step_size⌋.

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Period of the decay, ≥ 1.
    gamma : float, default 0.1
    """

    _CHECKS = {"step_size": _int(1), "gamma": _real(0.0, low_open=True)}

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = check_positive_int(step_size, "step_size")
        self.gamma = check_real(gamma, "gamma", low=0.0, low_open=True)
        super().__init__(optimizer, last_epoch)

    def _next_lrs(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class ExponentialLR(LRScheduler):
    """Multiply the rate by ``gamma`` every epoch: lr_t = lr₀·γᵗ.

    Parameters
    ----------
    optimizer : Optimizer
    gamma : float
    """

    _CHECKS = {"gamma": _real(0.0, low_open=True)}

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = check_real(gamma, "gamma", low=0.0, low_open=True)
        super().__init__(optimizer, last_epoch)

    def _next_lrs(self):
        if self._initial:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class LinearLR(LRScheduler):
    """Scale the rate linearly from ``start_factor``·lr₀ to ``end_factor``·lr₀ over ``total_iters`` epochs.

    Parameters
    ----------
    optimizer : Optimizer
    start_factor : float, default 1/3
        In (0, 1].
    end_factor : float, default 1.0
        In [0, 1].
    total_iters : int, default 5
    """

    _CHECKS = {"start_factor": _real(0.0, 1.0, low_open=True), "end_factor": _real(0.0, 1.0), "total_iters": _int(1)}

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        start_factor = check_real(start_factor, "start_factor")
        end_factor = check_real(end_factor, "end_factor")
        if not 0.0 < start_factor <= 1.0:
            raise ValueError(
                f"Starting multiplicative factor expected to be greater than 0 and less or equal to 1 "
                f"(start_factor in (0, 1]), got {start_factor}."
            )
        if not 0.0 <= end_factor <= 1.0:
            raise ValueError(
                "Ending multiplicative factor expected to be between 0 and 1 "
                f"(end_factor in [0, 1]), got {end_factor}."
            )
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = check_positive_int(total_iters, "total_iters")
        super().__init__(optimizer, last_epoch)

    def _next_lrs(self):
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._current_lrs()]
        if self._initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        change = self.end_factor - self.start_factor
        factor = 1.0 + change / (self.total_iters * self.start_factor + (self.last_epoch - 1) * change)
        return [lr * factor for lr in self._current_lrs()]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing between lr₀ and ``eta_min`` with period 2·``T_max`` (no restarts).

    Follows PyTorch's recursive form

        η_{t} = η_min + (η_{t−1} − η_min)·(1 + cos(π t/T_max)) / (1 + cos(π (t−1)/T_max)),

    which equals η_min + ½(lr₀ − η_min)(1 + cos(π t/T_max)) while nothing else changes
    the rate; past T_max the rate climbs back up (PyTorch's behaviour).

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Half period, ≥ 1.
    eta_min : float, default 0
    """

    _CHECKS = {"T_max": _int(1), "eta_min": _real(0.0)}

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max = check_positive_int(T_max, "T_max")
        self.eta_min = check_real(eta_min, "eta_min", low=0.0)
        super().__init__(optimizer, last_epoch)

    def _next_lrs(self):
        t, period, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._initial:
            return self._current_lrs()
        if (t - 1 - period) % (2 * period) == 0:  # leaving the minimum, where the ratio is 0/0
            rise = (1 - math.cos(math.pi / period)) / 2
            return [lr + (base - eta_min) * rise for lr, base in zip(self._current_lrs(), self.base_lrs)]
        ratio = (1 + math.cos(math.pi * t / period)) / (1 + math.cos(math.pi * (t - 1) / period))
        return [ratio * (lr - eta_min) + eta_min for lr in self._current_lrs()]


class ReduceLROnPlateau(LRScheduler):
    """Multiply the rate by ``factor`` when a metric has not improved for ``patience`` epochs.

    Call ``step(metric)`` once per epoch with, e.g., the validation loss.

    Parameters
    ----------
    optimizer : Optimizer
    mode : {"min", "max"}, default "min"
        Whether the metric should decrease or increase.
    factor : float, default 0.1
        new lr = lr·factor, in [0, 1).
    patience : int, default 10
        Epochs without improvement tolerated before reducing.
    threshold : float, default 1e-4
        Minimum significant change.
    threshold_mode : {"rel", "abs"}, default "rel"
        "rel": better than best·(1 ∓ threshold); "abs": better than best ∓ threshold.
    cooldown : int, default 0
        Epochs to wait after a reduction before counting bad epochs again.
    min_lr : float or list of float, default 0
        Lower bound on the rate, for all groups or one per group.
    eps : float, default 1e-8
        Reductions smaller than this are skipped.

    Notes
    -----
    Unlike the other schedules (and as PyTorch) it does not set ``initial_lr``. A NaN
    metric is refused (PyTorch counts it as a bad epoch).
    """

    _MODES = ("min", "max")
    _THRESHOLD_MODES = ("rel", "abs")

    _CHECKS = {"factor": _real(0.0, 1.0, high_open=True), "mode": _choice(_MODES),
                "threshold_mode": _choice(_THRESHOLD_MODES),
                "threshold": _real(0.0), "patience": _int(0), "cooldown": _int(0), "eps": _real(0.0),
                "default_min_lr": _real(0.0), "last_epoch": _int(0), "cooldown_counter": _int(0), "num_bad_epochs": _int(0)}

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0, eps=1e-8):
        self.optimizer = _check_optimizer(optimizer)
        factor = check_real(factor, "factor", low=0.0)
        if factor >= 1.0:
            raise ValueError(f"Factor should be < 1.0 (the rate is multiplied by factor), got factor={factor}.")
        if mode not in self._MODES:
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
        if threshold_mode not in self._THRESHOLD_MODES:
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}.")
        groups = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != groups:
                raise ValueError(f"expected {groups} min_lrs (one per parameter group), got {len(min_lr)}.")
            self.default_min_lr = None
            self.min_lrs = [check_real(value, "min_lr", low=0.0) for value in min_lr]
        else:
            self.default_min_lr = check_real(min_lr, "min_lr", low=0.0)
            self.min_lrs = [self.default_min_lr] * groups
        self.factor, self.mode, self.threshold_mode = factor, mode, threshold_mode
        self.threshold = check_real(threshold, "threshold", low=0.0)
        self.patience = check_positive_int(patience, "patience", minimum=0)
        self.cooldown = check_positive_int(cooldown, "cooldown", minimum=0)
        self.eps = check_real(eps, "eps", low=0.0)
        self.last_epoch = 0
        self._last_lr = self._current_lrs()
        self.best = math.inf if mode == "min" else -math.inf
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _is_better(self, value: float) -> bool:
        sign = 1.0 if self.mode == "min" else -1.0
        if self.threshold_mode == "rel":
            return sign * value < sign * self.best * (1.0 - sign * self.threshold)
        return sign * value < sign * self.best - self.threshold

    def step(self, metric) -> None:
        """Record this epoch's ``metric`` and reduce the rates if it has stalled."""
        current = _metric(metric)
        self._check_current_lrs()
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            if len(self.min_lrs) != len(self.optimizer.param_groups):
                if self.default_min_lr is None:
                    raise ValueError(
                        f"the optimizer now has {len(self.optimizer.param_groups)} parameter groups but "
                        f"min_lr lists {len(self.min_lrs)}; set schedule.min_lrs to one value per group."
                    )
                self.min_lrs = [self.default_min_lr] * len(self.optimizer.param_groups)
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs, strict=True):
                old = float(group["lr"])
                new = max(old * self.factor, min_lr)
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._current_lrs()
