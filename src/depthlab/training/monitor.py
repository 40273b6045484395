"""``TrainingMonitor``: per-layer health of a network while :func:`depthlab.fit` trains it.

Its rows are the network's *blocks*: the top-level layers that hold parameters, in order — the
Linear layers k of a plain MLP; the stem, each residual block, each top-level norm and the head
of a :func:`~depthlab.ResMLP` (``monitor.blocks`` names them). A block's weights are the weight
matrices Ω of the Linear layers inside it (all its parameters when it has none: a norm's γ, β).
For every epoch and every block k it records

- ``grad_norm`` — ‖dL/dΩ_k‖ (Frobenius, over all the block's weights), averaged over the
  epoch's steps;
- ``update_ratio`` — ‖ΔΩ_k‖ / ‖Ω_k‖ of one optimizer step (ΔΩ_k = the weights after the step
  minus those before it), averaged over the epoch's steps. A rule of thumb (Karpathy's "ratio
  of updates to weights", ~1e-3) puts healthy training inside about [1e-4, 1e-2]: far below,
  the layer barely learns (learning rate too small, or vanishing gradients); far above, its
  weights are rewritten every step (learning rate too large, or exploding gradients);
- ``dead_fraction`` — for activations that can die (ReLU family), the fraction of units of the
  first top-level activation layer after the block (before the next block) that are inactive
  on every sample of a fixed probe batch (``x``, or the first ``probe_size`` samples of the
  first training batch), measured at the end of the epoch; ``None`` for other activations,
  for blocks followed directly by another block (the units inside a residual branch are not
  counted) and for the last block. The probe batch runs in **eval mode** (dropout off, batch
  norm with its running statistics), so the monitor draws no random numbers and updates no
  running statistics: training goes exactly as without it.

The per-layer values are kept in ``monitor.records`` (one dict per epoch) and, as arrays of
shape (epochs, layers), in ``monitor.arrays()``. Five summaries go into the epoch's logs — and
so into ``history.history`` and the progress line: ``monitor/grad_norm_min``,
``monitor/grad_norm_max``, ``monitor/update_ratio_min``, ``monitor/update_ratio_max`` and
``monitor/dead_fraction_max`` (NaN without dying activations).

It warns (:class:`TrainingMonitorWarning`, once per layer and condition) when a layer dies
(dead fraction ≥ ``dead_threshold``) or its update ratio leaves ``update_band``.

Cost per step: one copy of the weights and two norms per block; per epoch: one forward pass on
the probe batch.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .._checks import check_positive_int, check_real
from .callbacks import Callback
from ..nn.layers import ActivationLayer, Linear

__all__ = ["TrainingMonitor", "TrainingMonitorWarning"]


class TrainingMonitorWarning(UserWarning):
    """A layer died or its update-to-weight ratio left the healthy band during training."""


def _square(a: np.ndarray) -> float:
    flat = a.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.vdot(flat, flat))


def _norm(arrays) -> float:
    """The Frobenius norm of several arrays together."""
    return math.sqrt(sum(map(_square, arrays)))


def blocks(net) -> list[tuple[int, list, int | None]]:
    """The monitor's rows: (index in ``net.layers``, its weights, the index of the first activation
    layer after it before the next block, or None) for each top-level layer with parameters."""
    layers = net.layers
    holders = [i for i, layer in enumerate(layers) if layer.parameters()]
    rows = []
    for j, i in enumerate(holders):
        inside = [layer.weight for layer in layers[i].layers_within() if isinstance(layer, Linear)]
        end = holders[j + 1] if j + 1 < len(holders) else None
        after = next((a for a in range(i + 1, end) if isinstance(layers[a], ActivationLayer)), None) if end else None
        rows.append((i, inside or layers[i].parameters(), after))
    return rows


class TrainingMonitor(Callback):
    """Record gradient norms, update ratios and dead units per layer, and warn about them.

    Parameters
    ----------
    x : array_like, shape (N, D_0), optional
        The fixed batch on which dead units are counted; default: the first ``probe_size``
        samples of the first training batch.
    update_band : (float, float), default (1e-4, 1e-2)
        The healthy range of the per-step update-to-weight ratio ‖ΔΩ_k‖ / ‖Ω_k‖.
    dead_threshold : float in (0, 1], default 0.9
        A layer with at least this fraction of dead units counts as dead (deep ReLU networks
        on low-dimensional inputs normally have up to about half their units inactive on a
        whole batch).
    probe_size : int, default 256
    warn : bool, default True

    Attributes
    ----------
    records : list of dict
        One per epoch: ``{"epoch", "grad_norm", "update_ratio", "dead_fraction", "steps"}``,
        the three measurements being lists with one entry per block (per Linear layer of a
        plain MLP).
    blocks : list of str
        What each entry is: ``"3: Residual"`` (the index in ``net.layers`` and the layer's type).

    Examples
    --------
    >>> monitor = dl.TrainingMonitor()
    >>> history = dl.fit(net, x, y, epochs=5, callbacks=[monitor])
    >>> monitor.arrays()["update_ratio"].shape          # (5, number of blocks)
    """

    def __init__(self, x=None, *, update_band=(1e-4, 1e-2), dead_threshold: float = 0.9,
                 probe_size: int = 256, warn: bool = True):
        try:
            low, high = update_band
        except (TypeError, ValueError):
            raise TypeError(f"update_band must be a pair (low, high), got {update_band!r}.") from None
        low = check_real(low, "update_band[0]", low=0, low_open=True)
        high = check_real(high, "update_band[1]", low=0, low_open=True)
        if not low < high:
            raise ValueError(f"update_band must have low < high, got {update_band!r}; e.g. (1e-4, 1e-2).")
        self.update_band = (low, high)
        self.dead_threshold = check_real(dead_threshold, "dead_threshold", low=0, high=1, low_open=True)
        self.probe_size = check_positive_int(probe_size, "probe_size")
        if not isinstance(warn, (bool, np.bool_)):
            raise TypeError(f"warn must be True or False, got {type(warn).__name__} {warn!r}.")
        self.warn = bool(warn)
        self._x_given = x
        self.records: list[dict] = []

    # -- hooks ----------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        net = self.net
        self.records = []
        self._warned: set[tuple[str, int]] = set()
        self._blocks = blocks(net)
        self.blocks = [f"{i}: {type(net.layers[i]).__name__}" for i, _, _ in self._blocks]
        self._weights = [weights for _, weights, _ in self._blocks]
        self._before = [[np.empty_like(w.data) for w in weights] for weights in self._weights]
        self._x = None if self._x_given is None else net.check_input(self._x_given, "x", finite=True)
        self._reset()

    def _reset(self):
        count = len(self._weights)
        self._grad_sum = np.zeros(count)
        self._ratio_sum = np.zeros(count)
        self._steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._reset()

    def on_batch_begin(self, batch, logs=None):
        for buffers, weights in zip(self._before, self._weights):
            for buffer, weight in zip(buffers, weights):
                np.copyto(buffer, weight.data)

    def on_batch_end(self, batch, logs=None):
        for k, (buffers, weights) in enumerate(zip(self._before, self._weights)):
            self._grad_sum[k] += _norm(w.grad for w in weights if w.grad is not None)
            for buffer, weight in zip(buffers, weights):
                np.subtract(weight.data, buffer, out=buffer)
            size = _norm(w.data for w in weights)
            change = _norm(buffers)
            self._ratio_sum[k] += change / size if size > 0 else (math.inf if change > 0 else math.nan)
        self._steps += 1
        if self._x is None and self.state.trace is not None:
            self._x = self.state.trace.input[: self.probe_size].copy()

    def on_epoch_end(self, epoch, logs=None):
        steps = max(self._steps, 1)
        grad_norm = (self._grad_sum / steps).tolist()
        update_ratio = (self._ratio_sum / steps).tolist() if self._steps else [math.nan] * len(self._weights)
        dead = self._dead_fractions()
        self.records.append({"epoch": epoch, "grad_norm": grad_norm, "update_ratio": update_ratio,
                             "dead_fraction": dead, "steps": self._steps})
        if logs is not None:
            finite = [r for r in update_ratio if not math.isnan(r)]
            known = [d for d in dead if d is not None]
            logs["monitor/grad_norm_min"] = min(grad_norm)
            logs["monitor/grad_norm_max"] = max(grad_norm)
            logs["monitor/update_ratio_min"] = min(finite) if finite else math.nan
            logs["monitor/update_ratio_max"] = max(finite) if finite else math.nan
            logs["monitor/dead_fraction_max"] = max(known) if known else math.nan
        if self.warn:
            self._warn(epoch, update_ratio, dead)

    # -- measurements ---------------------------------------------------------------------
    def _dead_fractions(self) -> list[float | None]:
        """Per block, the dead fraction of the activation layer after it, on the probe batch in eval mode."""
        net = self.net
        result: list[float | None] = [None] * len(self._blocks)
        if self._x is None:
            return result
        watched = {after: k for k, (_, _, after) in enumerate(self._blocks) if after is not None}
        h = self._x
        with net.mode(False), np.errstate(over="ignore", invalid="ignore"):
            for i, layer in enumerate(net.layers[:max(watched, default=-1) + 1]):
                if i in watched and layer.activation.can_die:
                    slope = layer.activation.derivative(h, layer.activation.function(h))
                    result[watched[i]] = float(np.mean(~np.any(slope, axis=0)))
                h = layer(h)
        return result

    def _warn(self, epoch: int, update_ratio: list[float], dead: list[float | None]) -> None:
        low, high = self.update_band
        for k, fraction in enumerate(dead):
            if fraction is not None and fraction >= self.dead_threshold:
                self._emit(("dead", k), (
                    f"epoch {epoch}: {self._name(k)} has died — {100 * fraction:.0f}% of its units are "
                    "inactive on every sample of the probe batch, so they no longer learn. Lower the "
                    "learning rate, use a variance-preserving init (he_normal), or leaky_relu."))
        for k, ratio in enumerate(update_ratio):
            if math.isnan(ratio):
                continue
            if ratio > high:
                self._emit(("high", k), (
                    f"epoch {epoch}: {self._name(k)}'s update-to-weight ratio ‖ΔΩ‖/‖Ω‖ is {ratio:.3g} per "
                    f"step, above the healthy band [{low:g}, {high:g}]: its weights are rewritten "
                    "every step. Lower the learning rate or clip gradients."))
            elif ratio < low:
                self._emit(("low", k), (
                    f"epoch {epoch}: {self._name(k)}'s update-to-weight ratio ‖ΔΩ‖/‖Ω‖ is {ratio:.3g} per "
                    f"step, below the healthy band [{low:g}, {high:g}]: it barely learns. Raise the "
                    "learning rate, or check for vanishing gradients (dl.probe)."))

    def _name(self, k: int) -> str:
        """"layer k" in a plain MLP (its k-th Linear layer), "block k (net.layers[i], Residual)" otherwise."""
        i, _, _ = self._blocks[k]
        layer = self.net.layers[i]
        if all(isinstance(other, (Linear, ActivationLayer)) for other in self.net.layers):
            return f"layer {k}"
        return f"block {k} (net.layers[{i}], {type(layer).__name__})"

    def _emit(self, key: tuple[str, int], message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(message, TrainingMonitorWarning, stacklevel=3)

    # -- results --------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The records as float arrays of shape (epochs, layers) (NaN where not applicable)."""
        width = len(self.records[0]["grad_norm"]) if self.records else 0  # (0, 0) before the first epoch

        def stack(name):
            return np.array([[math.nan if v is None else v for v in r[name]] for r in self.records],
                            dtype=np.float64).reshape(len(self.records), width)
        return {name: stack(name) for name in ("grad_norm", "update_ratio", "dead_fraction")}
