"""``probe``: is a network healthy at initialization, and why? One forward + one backward pass.

On a plain MLP (Linear layers with activations between them), for every layer k (the k-th
``Linear`` and the activation after it; k = 0 … K, layer K is the output layer) the probe
measures, over all N·D_{k+1} entries of the batch (the seed notebook's ``np.std(all_h[k])``):

- f_k = β_k + Ω_k h_k: mean and std; h_{k+1} = a[f_k] (the output for k = K): mean and std;
- dead fraction (activations that can die, the ReLU family): units whose derivative is 0 on
  every sample of the batch; saturated fraction (sigmoid, tanh): entries with |a'(f)| below 5%
  of its maximum over the reals;
- std of dL/df_k and dL/dh_k, ‖dL/dΩ_k‖ and ‖Ω_k‖ (Frobenius norms);
- growth factors: forward std(f_k)/std(f_{k−1}) (std(f_0)/std(x) for k = 0), backward
  std(dL/df_k)/std(dL/df_{k+1}) (none for k = K);
- the mean-field prediction of the stds of f_k, h_{k+1} and dL/df_k beside the measurement
  (:func:`depthlab.signal.theory.predicted_std`, started from the measured second moments E[x²] of the
  input and E[g²] of dL/d(output)).

The backward pass starts from dL/d(output) of ``loss`` when targets ``y`` are given; without
``y`` it starts from a unit-variance Gaussian grad_output drawn from ``rng`` (so backward stds
read as gains relative to 1). The probe leaves the network as it found it: no gradients added
to its parameters, the cache of its last recorded forward pass restored.

Verdict rules (thresholds in :data:`THRESHOLDS`, overridable per call), checked in order on the
*hidden* layers (the output layer's width and role differ; its numbers are still reported);
the first rule that fires gives ``verdict`` and ``verdict_layer`` (the layer k where it starts):

0. **exploding** (overflow) — f_k or h_{k+1} of some layer left float64's range (inf or NaN):
   the verdict is "exploding", from the layer where the growth starts, and the diagnosis names
   the layer that overflowed (only the rule below is checked on the layers before it: dead
   units after an overflow are NaN, not dead).
1. **dead** — a hidden layer whose activations do not vary at all over the batch (every unit
   constant: all zero after zero weights, 004's θ = 0; not checked when the samples of x are
   all identical), or in which at least ``dead_fraction`` (0.9) of the units are dead. (Deep
   He-initialized ReLU networks on low-dimensional inputs normally have about half their units
   inactive on a whole batch, as the representations of all inputs align with depth; that is
   not flagged.)
2. **exploding / vanishing** (forward) — std(f_k)/std(f_0) leaves [1/F, F] (F =
   ``explode_factor``, 10) at some hidden layer k, *and* does so at an average rate of more
   than ``rate`` (×1.1) per layer: |ln(std(f_k)/std(f_0))| / k > ln 1.1. The rate condition keeps
   the random-walk drift of finite-width networks (about ±12% per layer at width 80, so a
   50-layer He network may wander by ×3–×10) from being flagged. The layer where it starts is
   the one after the last layer before the crossing whose std was still within ×1.5
   (``start_factor``) of std(f_0). The diagnosis quotes the geometric-mean growth per layer
   from there to the last hidden layer.
3. **saturated** — a hidden layer with a saturated fraction of at least ``saturated_fraction``
   (0.3).
4. **exploding / vanishing** (backward) — the same rule for std(dL/df_k) over the hidden
   layers, going from the last hidden layer towards the input.
5. otherwise **healthy**.

Any other network (residual blocks, batch or layer norm, dropout: a :func:`~depthlab.ResMLP`) is
probed per top-level layer instead, with its own verdicts: see :mod:`depthlab.signal.probe_blocks`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np

from ..nn import losses as _losses
from ..nn.layers import ActivationLayer, Linear
from ..nn.model import Sequential
from .._fast import pair
from .._fast.buffers import batch_sum
from ..nn.halves import ALIGN, halves
from .._checks import check_bins, check_index, check_real, resolve_rng
from .measure import (constant_columns as _constant_columns, first_crossing as _first_crossing,
                      format_number as _fmt, frobenius_norm as _norm, growth_rate as _rate, json_safe as _json_safe,
                      max_derivative as _max_derivative, mean_std as _mean_std, percent as _percent,
                      ratio as _ratio, square_sum as _square_sum)

__all__ = ["probe", "ProbeReport", "LayerStats", "THRESHOLDS", "VERDICTS"]

VERDICTS = ("healthy", "exploding", "vanishing", "dead", "saturated")

THRESHOLDS = {
    "explode_factor": 10.0,      # total change of the std vs the first layer that counts
    "rate": 1.1,                 # ... if reached at more than ×1.1 per layer on average
    "start_factor": 1.5,         # where it starts: last layer within ×1.5 of the first, + 1
    "dead_fraction": 0.9,        # fraction of dead units that makes a layer "dead"
    "saturated_fraction": 0.3,   # fraction of saturated entries that makes a layer "saturated"
    "saturation_level": 0.05,    # |a'(f)| below this fraction of max |a'| counts as saturated
}


# --------------------------------------------------------------------------- per-layer record

@dataclass
class LayerStats:
    """One layer's measurements (``None`` where a quantity does not apply).

    Layer k is Linear k and the activation after it: f_k = β_k + Ω_k h_k, h_{k+1} = a[f_k]
    (for the output layer, h_{K+1} is the network's output).
    """

    index: int
    units: int
    activation: str
    preactivation_mean: float
    preactivation_std: float
    activation_mean: float
    activation_std: float
    dead_fraction: float | None
    saturated_fraction: float | None
    grad_preactivation_std: float
    grad_activation_std: float
    weight_grad_norm: float | None
    weight_norm: float
    forward_growth: float | None
    backward_growth: float | None
    predicted_preactivation_std: float | None = None
    predicted_activation_std: float | None = None
    predicted_backward_std: float | None = None


# --------------------------------------------------------------------------- statistics


# --------------------------------------------------------------------------- theory

def _theory_layers(net) -> list[tuple] | None:
    """What the theory reads from a net: per layer (activation, Var(Ω_k), Var(β_k), fan_in,
    fan_out), the variances over all entries by :func:`_mean_std` in float64 (a pass for Σx and
    one for Σx², ~4× faster than ``np.var``; equal to it up to rounding). None where a variance
    is not finite: the theory then reads the net itself."""
    layers = []
    with np.errstate(over="ignore", invalid="ignore"):
        for activation, linear in zip(net.layer_activations, net.linears):
            weight_variance, bias_variance = (_mean_std(p.data.astype(np.float64, copy=False))[1] ** 2
                                              for p in (linear.weight, linear.bias))
            if not (math.isfinite(weight_variance) and math.isfinite(bias_variance)):
                return None
            layers.append((activation, weight_variance, bias_variance, linear.in_features,
                           linear.out_features))
    return layers


def _predictions(net, input_variance: float, grad_output_variance: float):
    """Mean-field stds per layer (lists of K + 1 floats or None) for f_k, h_{k+1}, dL/df_k."""
    from . import theory

    try:
        predicted = theory.predicted_std(_theory_layers(net) or net, input_variance=input_variance,
                                         grad_output_variance=grad_output_variance)
    except ValueError as error:
        acts = {repr(a): a.name for a in net.layer_activations}
        named = sorted({name for text, name in acts.items() if text in str(error)}) or sorted(set(acts.values()))
        raise ValueError(
            f"probe cannot put the mean-field prediction beside the measurement: the theory cannot "
            f"integrate activation {' / '.join(map(repr, named))} ({error}) Pass theory=False to "
            "probe without predictions.") from None
    pre = [float(v) for v in predicted.preactivation_std]
    act = [float(v) for v in predicted.activation_std]
    out = pre[-1] if net.layer_activations[-1].name == "identity" else None
    return pre, act + [out], [float(v) for v in predicted.backward_std]


# --------------------------------------------------------------------------- verdict


# --------------------------------------------------------------------------- report


_COLUMNS = [  # (header, getter)
    ("layer", lambda s: str(s.index)),
    ("units", lambda s: str(s.units)),
    ("act", lambda s: s.activation),
    ("std f", lambda s: s.preactivation_std),
    ("(theory)", lambda s: s.predicted_preactivation_std),
    ("std h", lambda s: s.activation_std),
    ("(theory)", lambda s: s.predicted_activation_std),
    ("dead", lambda s: _percent(s.dead_fraction)),
    ("sat", lambda s: _percent(s.saturated_fraction)),
    ("std dL/df", lambda s: s.grad_preactivation_std),
    ("(theory)", lambda s: s.predicted_backward_std),
    ("|dL/dW|", lambda s: s.weight_grad_norm),
    ("|W|", lambda s: s.weight_norm),
    ("fwd x", lambda s: s.forward_growth),
    ("bwd x", lambda s: s.backward_growth),
]


@dataclass
class ProbeReport:
    """What :func:`probe` measured, its verdict, and a plain-language diagnosis.

    Attributes
    ----------
    layers : list of LayerStats
        One per Linear layer, k = 0 … K.
    verdict : str
        One of ``"healthy"``, ``"exploding"``, ``"vanishing"``, ``"dead"``, ``"saturated"``.
    verdict_layer : int or None
        The layer k where the problem starts (None when healthy).
    diagnosis : str
        What happens, why, and a fix.
    n_samples : int
    input_std : float
    input_variance : float
        The second moment E[x²] of the input, used for the theory column.
    loss : str or None
        The loss the backward pass started from (None: a random unit-variance grad_output).
    """

    layers: list[LayerStats]
    verdict: str
    verdict_layer: int | None
    diagnosis: str
    n_samples: int
    input_std: float
    input_variance: float
    loss: str | None
    _arrays: dict = field(default_factory=dict, repr=False)

    # the text table's columns, (header, getter) each, and what one row is (a subclass sets its own)
    columns: ClassVar[list] = _COLUMNS
    row_name: ClassVar[str] = "layer"

    def table(self) -> str:
        """The per-row table as text (stds over all entries; "(theory)": mean-field)."""
        cells = [[header for header, _ in self.columns]]
        cells += [[getter(stats) for _, getter in self.columns] for stats in self.layers]
        texts = [[c if isinstance(c, str) else _fmt(c).strip() for c in row] for row in cells]
        widths = [max(len(row[i]) for row in texts) for i in range(len(self.columns))]
        lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in texts]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def __str__(self) -> str:
        source = f"loss {self.loss}" if self.loss else "random unit-variance dL/d(output)"
        where = "" if self.verdict_layer is None else f" (from {self.row_name} {self.verdict_layer})"
        return "\n".join([
            f"probe: {len(self.layers)} {self.row_name}s, {self.n_samples} samples, input std "
            f"{_fmt(self.input_std).strip()}, backward from {source}",
            self.table(),
            f"verdict: {self.verdict}{where}",
            self.diagnosis,
        ])

    def to_dict(self) -> dict:
        """A JSON-serializable dict (non-finite numbers become None)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        # a row's fields are numbers and text: no deep copy (dataclasses.asdict) needed
        data["layers"] = [{f.name: getattr(stats, f.name) for f in fields(stats)} for stats in self.layers]
        return _json_safe(data)

    def values(self, name: str, k: int) -> np.ndarray:
        """The measured array behind row k: ``"preactivation"`` (f_k), ``"activation"`` (h_{k+1},
        the output for the last row) or ``"grad_preactivation"`` (dL/df_k), shape (N, D_{k+1}).
        It is the network's own (its next pass may reuse it): copy it to keep it."""
        if name not in self._arrays:
            raise ValueError(f"values: name must be one of {', '.join(self._arrays)}, got {name!r}.")
        return self._arrays[name][check_index(k, len(self.layers))]

    def histograms(self, bins: int = 30) -> list[dict]:
        """Per-layer histograms of f_k, h_{k+1} and dL/df_k.

        Returns
        -------
        list of dict, one per layer
            ``{"preactivation": (counts, edges), "activation": (counts, edges),
            "grad_preactivation": (counts, edges)}``; counts of shape (bins,), edges (bins + 1,)
            as ``np.histogram`` gives them (non-finite entries left out).
        """
        bins = check_bins(bins)
        result = []
        for k in range(len(self.layers)):
            entry = {}
            for name in ("preactivation", "activation", "grad_preactivation"):
                values = self._arrays[name][k].reshape(-1)
                values = values[np.isfinite(values)]
                entry[name] = np.histogram(values, bins=bins)
            result.append(entry)
        return result

    def __repr__(self) -> str:
        return (f"ProbeReport(verdict={self.verdict!r}, verdict_layer={self.verdict_layer!r}, "
                f"layers={len(self.layers)}, n_samples={self.n_samples})")

    def _repr_pretty_(self, printer, cycle):  # IPython
        printer.text(str(self))

    def _repr_html_(self) -> str:  # Jupyter: the table, the verdict colour-coded, std per layer as a chart
        from .display import probe_html
        return probe_html(self)


# --------------------------------------------------------------------------- diagnosis

def _critical_variance(activation) -> float:
    """σ_w² at the edge of chaos (σ_b² = 0), or the activation's gain² where there is none;
    a root search (~10 ms), kept per activation (by what its functions compute, and its parameters)."""
    from . import theory

    try:
        key = (_function_key(activation.function), _function_key(activation.derivative), activation.name,
               tuple(sorted(activation.params.items())))
        hash(key)
    except (TypeError, ValueError):      # unhashable parameters or closures: computed each time
        key = None
    if key is not None and key in _CRITICAL_VARIANCES:
        return _CRITICAL_VARIANCES[key]
    try:
        value = float(theory.critical_weight_variance(activation, 0.0))
    except ValueError:  # no critical point at σ_b² = 0: fall back to the activation's gain
        value = activation.gain ** 2
    if key is not None:
        if len(_CRITICAL_VARIANCES) >= 64:
            _CRITICAL_VARIANCES.clear()
        _CRITICAL_VARIANCES[key] = value
    return value


_CRITICAL_VARIANCES: dict = {}


def _function_key(function):
    """What a function computes, as a key: a Python function's code, defaults and closure values
    (a registered activation's factory makes new closures at each call: the same key), else the
    function itself (a ufunc)."""
    code = getattr(function, "__code__", None)
    if code is None:
        return function
    return code, function.__defaults__, tuple(cell.cell_contents for cell in function.__closure__ or ())


# activation name -> fix(fan_in, activation) as text
_FIXES = {
    "relu": lambda fan, a: f"for relu use init='he_normal' (σ² = 2/{fan})",
    "leaky_relu": lambda fan, a: (
        f"for leaky_relu use init={{'name': 'kaiming_normal', 'a': {a.params['negative_slope']:g}}} "
        f"(σ² = {2 / (1 + a.params['negative_slope'] ** 2):.3g}/{fan})"),
    "tanh": lambda fan, a: (f"for tanh use init='xavier_normal' (σ² = 1/{fan}), or exactly critical "
                            "init={'name': 'critical', 'activation': 'tanh'}"),
    "sigmoid": lambda fan, a: ("sigmoid's slope is at most 1/4, so gradients shrink at least ×4 per "
                               "layer unless its inputs are large enough to saturate it; use tanh or "
                               f"relu hidden units (with init='xavier_normal', σ² = 1/{fan}, or "
                               "'he_normal')"),
    "selu": lambda fan, a: f"for selu use init='lecun_normal' (σ² = 1/{fan})",
    "identity": lambda fan, a: f"for a linear network use init='lecun_normal' (σ² = 1/{fan})",
}


def _default_fix(fan: int, activation) -> str:
    return (f"for {activation.name} use init={{'name': 'critical', 'activation': '{activation.name}'}} "
            f"(σ² = {_critical_variance(activation):.3g}/{fan}, the edge of chaos)")


def _fix(net, k: int) -> str:
    """The recommended initialization for the weights of layer k, as text."""
    acts, linears = net.layer_activations, net.linears
    activation = acts[k - 1] if 1 <= k < len(acts) else acts[0]   # the activation feeding Ω_k
    fan_in = linears[k].in_features if k >= 1 else linears[min(1, len(linears) - 1)].in_features
    return _FIXES.get(activation.name, _default_fix)(fan_in, activation)


def _first_overflow(stats: list[LayerStats]) -> int | None:
    """The first layer k whose f_k or h_{k+1} left float64's range, or None: an inf or NaN entry
    makes the layer's mean inf or NaN, and values near 1.8e308 make its statistics overflow."""
    return next((s.index for s in stats
                 if not all(map(math.isfinite, (s.preactivation_mean, s.preactivation_std,
                                                s.activation_mean, s.activation_std)))), None)


def _overflow_diagnosis(net, stats: list[LayerStats], t: dict, overflow: int):
    """Overflow is explosion: the verdict, the layer where growth starts, and a diagnosis."""
    forward_stds = [s.preactivation_std for s in stats[:overflow]]
    crossing = _first_crossing(forward_stds, t) if overflow >= 2 else None
    begin = crossing[1] if crossing and crossing[0] == "exploding" else max(overflow - 1, 0)
    if overflow - begin >= 2:
        growth = (f"the std of f_k grows ×{_rate(forward_stds, begin - 1 if begin else 0, overflow - 1):.3g} "
                  f"per layer from layer {begin} and ")
    else:
        growth = ""
    return "exploding", begin, (
        f"the forward signal explodes: {growth}reaches the limit of float64 (about 1.8e308) at layer "
        f"{overflow}, where f_{overflow} = β_{overflow} + Ω_{overflow} h_{overflow}, h_{overflow + 1} or their "
        f"statistics overflow to inf or NaN (so dead units and stds from there on mean nothing); "
        f"{_fix(net, begin)}.")


def _swamped(net, stats: list[LayerStats], k: int, input_rms: float) -> bool:
    """Whether β_k dwarfs Ω_k h_k beyond float64's 16 digits (random weights, a varying input):
    f_k = β_k + Ω_k h_k then rounds to β_k on every sample."""
    linear = net.linears[k]
    with np.errstate(over="ignore", invalid="ignore"):
        weight_std, bias_std = _mean_std(linear.weight.data)[1], _mean_std(linear.bias.data)[1]
        rms = input_rms if k == 0 else math.hypot(stats[k - 1].activation_mean, stats[k - 1].activation_std)
        contribution = weight_std * rms * math.sqrt(linear.in_features)
    if not (contribution > 0 and math.isfinite(bias_std)):
        return False
    return bias_std > 1e13 * contribution


def _diagnose(net, stats: list[LayerStats], t: dict, constant: list[bool], overflow: int | None = None,
              input_rms: float = 1.0):
    K = len(stats) - 1
    hidden = stats[:K]
    before_overflow = hidden if overflow is None else hidden[:overflow]
    for s, flat in zip(before_overflow, constant):
        if flat and _swamped(net, stats, s.index, input_rms):
            linear = net.linears[s.index]
            return "dead", s.index, (
                f"layer {s.index}'s activations h_{s.index + 1} are the same for every sample although Ω_{s.index} "
                f"is random: its biases β_{s.index} (std {_mean_std(linear.bias.data)[1]:.3g}) are so much larger "
                f"than Ω_{s.index} h_{s.index} that float64 (about 16 digits) rounds the input's contribution away, "
                "so no signal passes. Lower the bias variance (σ_b² of order σ_w² or below, e.g. "
                "bias_init='zeros').")
        if flat:
            return "dead", s.index, (
                f"layer {s.index}'s activations h_{s.index + 1} are the same for every sample "
                f"(all units constant{', all zero' if s.activation_std == 0 and s.activation_mean == 0 else ''}"
                "): no signal passes. Zero or constant weights make every unit compute the same "
                f"thing and the gradient cannot break the symmetry; draw random weights — {_fix(net, s.index)}.")
        if s.dead_fraction is not None and s.dead_fraction >= t["dead_fraction"]:
            return "dead", s.index, (
                f"{100 * s.dead_fraction:.0f}% of layer {s.index}'s {s.activation} units are never "
                "active on this batch, so they pass no signal and get no gradient. Lower the "
                f"negative bias or the weight scale — {_fix(net, s.index)} — or use leaky_relu.")
    if overflow is not None:
        return _overflow_diagnosis(net, stats, t, overflow)
    forward_stds = [s.preactivation_std for s in hidden]
    forward = _first_crossing(forward_stds, t)
    if forward:
        direction, begin = forward
        per_layer = _rate(forward_stds, begin - 1, len(forward_stds) - 1)
        verb = "grows" if direction == "exploding" else "shrinks"
        return direction, begin, (
            f"forward std of f_k {verb} ×{per_layer:.3g} per layer from layer {begin}; "
            f"{_fix(net, begin)}.")
    for s in hidden:
        if s.saturated_fraction is not None and s.saturated_fraction >= t["saturated_fraction"]:
            return "saturated", s.index, (
                f"{100 * s.saturated_fraction:.0f}% of layer {s.index}'s pre-activations sit in "
                f"{s.activation}'s flat tails (|a'| < {100 * t['saturation_level']:.0f}% of its "
                f"maximum), so gradients through them vanish: the weights are too large; "
                f"{_fix(net, s.index)}.")
    backward_stds = [s.grad_preactivation_std for s in reversed(hidden)]
    backward = _first_crossing(backward_stds, t)
    if backward:
        direction, begin = backward
        per_layer = _rate(backward_stds, begin - 1, len(backward_stds) - 1)
        layer = K - 1 - begin
        verb = "grows" if direction == "exploding" else "shrinks"
        return direction, layer, (
            f"the forward signal keeps its scale, but the std of dL/df_k {verb} ×{per_layer:.3g} "
            f"per layer towards the input from layer {layer} (gradient {direction}); "
            f"{_fix(net, layer)}.")
    if not hidden:
        return "healthy", None, ("a network without hidden layers: nothing can explode or vanish "
                                 "with depth here.")
    forward_ratio = _ratio(hidden[-1].preactivation_std, hidden[0].preactivation_std)
    backward_ratio = _ratio(hidden[0].grad_preactivation_std, hidden[-1].grad_preactivation_std)
    return "healthy", None, (
        f"healthy: over the hidden layers the std of f_k changes ×{_fmt(forward_ratio).strip()} "
        f"(layer 0 → {K - 1}) and the std of dL/df_k ×{_fmt(backward_ratio).strip()} (layer {K - 1} "
        "→ 0); no dead or saturated layer.")


# --------------------------------------------------------------------------- probe

def _relu_dead_fraction(h: np.ndarray, column_sums: np.ndarray) -> float:
    """Dead units of h = max(f, 0) ≥ 0: a unit has a'[f] = 1 somewhere iff its column has a
    positive entry, i.e. iff its column sum is > 0 (NaN only where the column has a NaN: those
    columns are checked entry by entry)."""
    alive = column_sums > 0
    unknown = np.isnan(column_sums)
    if unknown.any():
        alive[unknown] = np.any(h[:, unknown] > 0, axis=0)
    return (alive.size - np.count_nonzero(alive)) / alive.size


# activation name -> fraction of dead units of h = a[f] (N, D) from h and its column sums (D,),
# without forming a'[f]; the general rule, a'[f] = 0 on every sample, is in _measure.
_DEAD_FRACTIONS = {"relu": _relu_dead_fraction}


class _InCache:
    """The passes over each big array the probe needs, taken by the forward and backward
    passes' ``watch`` right after a layer made the array, while it is still in cache (read
    again later, a network's arrays come from memory: ~3× slower).

    Per Linear layer k: Σx² of f_k, h_{k+1}, dL/df_k and dL/dh_k (:func:`square_sum`) and the
    column sums Σ_n h_{k+1} — and Σ_n dL/df_k when the backward pass computes no dL/dβ_k (which
    is that sum) (``grad_sums``). An array no watch saw (f_K = h_{K+1} without an output
    activation, dL/d(output)) is read by :func:`_measure` itself.

    And where h_{k+1} = a[f_k] of an activation that can die or saturate (other than ReLU,
    whose dead units its column sums give): a'(f_k) once, its entries below ``level`` · max |a'|
    counted and its columns that are zero throughout marked (``saturated`` and ``dead`` per k):
    in halves, on both threads, instead of one more pass over both arrays after the passes.

    Each sum is taken over the batch's ``parts`` (rows) apart and the parts' sums added in
    order, whether a watch gets a whole array or one part of it (a pass in halves,
    :mod:`depthlab.nn.halves`, from each half's thread): the same numbers either way.
    :meth:`finish` adds them up into ``squares``, ``column_sums``, ``grad_column_sums``,
    ``saturated`` and ``dead``.
    """

    def __init__(self, net, grad_sums: bool = False, parts: tuple[slice, ...] = (slice(None),),
                 level: float = THRESHOLDS["saturation_level"]):
        starts = [i for i, layer in enumerate(net.layers) if isinstance(layer, Linear)]
        ends = starts[1:] + [len(net.layers)]
        self.count, self.parts, self.grad_sums = len(starts), parts, grad_sums
        self.partial: dict = {}                  # (name, k) -> the parts' sums, in order
        # Linear k -> (its activation, |a'| below which a value is saturated), where h_{k+1} = a[f_k]
        self.derivatives = {k: (activation, level * _max_derivative(activation))
                            for k, (activation, start, end) in enumerate(zip(net.layer_activations, starts, ends))
                            if end - start == 2 and activation.name not in _DEAD_FRACTIONS
                            and (activation.can_die or activation.saturates)}
        self.preactivations: dict = {}           # (k, part) -> that part of f_k, until h_{k+1} comes
        # top-level layer index -> (what its output / its input gradient is, Linear k)
        self.outputs = {start: ("f", k) for k, start in enumerate(starts)}
        self.outputs.update({end - 1: ("h", k) for k, (start, end) in enumerate(zip(starts, ends)) if end - 1 > start})
        self.input_grads = {start: ("grad_h", k) for k, start in enumerate(starts)}
        self.input_grads.update({start + 1: ("grad_f", k) for k, (start, end) in enumerate(zip(starts, ends))
                                 if start + 1 < end})

    def _take(self, found, array: np.ndarray, part: int | None, column_sums: str | None) -> None:
        if found is None:
            return
        pieces = enumerate(array[rows] for rows in self.parts) if part is None else [(part, array)]
        for index, piece in pieces:
            self._partial(found, "squares")[index] = _square_sum(piece)
            if found[0] == column_sums:
                self._partial(found, "columns")[index] = batch_sum(piece)
            if found[1] in self.derivatives:
                self._derivative(found, index, piece)

    def _derivative(self, found, index: int, piece: np.ndarray) -> None:
        """f_k's part is kept until h_{k+1}'s comes; then a'(f_k) on that part: how many of its
        entries are saturated, and which columns are zero on all its rows."""
        name, k = found
        if name == "f":
            self.preactivations[k, index] = piece
            return
        f = self.preactivations.pop((k, index), None)
        if name != "h" or f is None or f.shape != piece.shape:
            return
        activation, threshold = self.derivatives[k]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):   # as _measure's
            derivative = activation.derivative(f, piece)
            if activation.saturates:
                self._partial(found, "saturated")[index] = int(np.count_nonzero(np.abs(derivative) < threshold))
            if activation.can_die:
                self._partial(found, "alive")[index] = np.any(derivative, axis=0)

    def _partial(self, found, kind: str) -> list:
        key = (kind, *found)
        partial = self.partial.get(key)
        if partial is None:       # one list per key, made before either half's thread runs (setdefault is atomic)
            partial = self.partial.setdefault(key, [None] * len(self.parts))
        return partial

    def forward(self, i: int, output: np.ndarray, part: int | None = None) -> None:
        self._take(self.outputs.get(i), output, part, "h")

    def backward(self, i: int, grad_input: np.ndarray, part: int | None = None) -> None:
        self._take(self.input_grads.get(i), grad_input, part, "grad_f" if self.grad_sums else None)

    def finish(self) -> None:
        """``squares[name][k]``, ``column_sums[k]`` (Σ_n h_{k+1}) and ``grad_column_sums[k]``
        (Σ_n dL/df_k, with ``grad_sums``): the parts' sums added, None where a watch saw no array."""
        def total(kind: str, name: str, k: int):
            partial = self.partial.get((kind, name, k))
            if partial is None or any(value is None for value in partial):
                return None
            result = partial[0]
            for value in partial[1:]:
                result = result + value
            return result

        self.squares = {name: [total("squares", name, k) for k in range(self.count)]
                        for name in ("f", "h", "grad_f", "grad_h")}
        self.column_sums = [total("columns", "h", k) for k in range(self.count)]
        self.grad_column_sums = [total("columns", "grad_f", k) for k in range(self.count)] if self.grad_sums else None
        self.saturated = [total("saturated", "h", k) for k in range(self.count)]        # entries, or None
        alive = [self.partial.get(("alive", "h", k)) for k in range(self.count)]
        self.dead = [None if columns is None or any(c is None for c in columns)
                     else ~np.logical_or.reduce(columns) for columns in alive]   # per column


def _measure(net, trace, outputs, gradients, x_std: float, level: float, seen: _InCache):
    """One LayerStats per Linear layer, and whether each layer's output is constant.

    The big arrays (f_k, h_{k+1}, dL/df_k of shape (N, D_{k+1}), dL/dh_k of (N, D_k)) cost
    a pass each for Σx², and h_{k+1} one more for its column sums Σ_n h_{k+1} (its mean,
    ReLU's dead units, and Σf_{k+1} below): ``seen`` (:class:`_InCache`) took them during the
    passes. The other means come from small arrays (summed in float64) (:func:`_mean_std`
    checks that the mean is small enough against the std for their rounding — in float32
    that of a BLAS sum, as Σx itself would be — not to matter):

        Σ f_k     = (Σ_n h_k) · (Σ_i Ω_k[i, :]) + N Σ_i β_k[i]          (k ≥ 1)
        Σ dL/df_k = Σ_i dL/dβ_k[i]              (the backward pass sums dL/df_k over the batch)
        Σ dL/dh_k = Σ_i dL/dβ_k[i] · (Σ_j Ω_k[i, j])

    Without parameter gradients (``gradients.biases`` None) ``seen`` took Σ_n dL/df_k instead.
    """
    stats, constant = [], []
    acts = net.layer_activations
    preactivations, grad_preactivations, grad_activations = (trace.preactivations, gradients.preactivations,
                                                             gradients.activations)  # each a new list per read
    n = preactivations[0].shape[0]
    squares = seen.squares
    previous_f_std, column_sums = x_std, None
    block_sizes = [len(after) for _, after in net.blocks]
    for k, linear in enumerate(net.linears):
        f, h, activation = preactivations[k], outputs[k], acts[k]
        weight = linear.weight.data.astype(np.float64, copy=False)
        grad_bias = _grad_f_sums(gradients, grad_preactivations, seen, k).astype(np.float64, copy=False)
        grad_f_total = np.add.reduce(grad_bias)
        grad_h_total = grad_bias @ np.add.reduce(weight, axis=1)
        f_total = None
        if column_sums is not None:  # Σ_n h_k, from layer k − 1
            f_total = (column_sums.astype(np.float64, copy=False) @ np.add.reduce(weight, axis=0)
                       + n * np.add.reduce(linear.bias.data, dtype=np.float64))
        grad_f_std = _mean_std(grad_preactivations[k], grad_f_total, squares["grad_f"][k])[1]
        grad_h_std = _mean_std(grad_activations[k], grad_h_total, squares["grad_h"][k])[1]
        f_mean, f_std = _mean_std(f, f_total, squares["f"][k])
        column_sums = seen.column_sums[k] if seen.column_sums[k] is not None else batch_sum(h)
        h_mean, h_std = _mean_std(h, np.add.reduce(column_sums, dtype=np.float64), squares["h"][k])
        single = block_sizes[k] == 1  # h is a[f_k] itself
        dead_fraction = _DEAD_FRACTIONS.get(activation.name) if single else None
        dead = saturated = None
        if dead_fraction is not None:
            dead = dead_fraction(h, column_sums)
        elif single and (seen.saturated[k] is not None or seen.dead[k] is not None):   # taken during the passes
            if activation.can_die:
                dead = float(np.mean(seen.dead[k]))
            if activation.saturates:
                saturated = seen.saturated[k] / h.size
        elif activation.can_die or activation.saturates:
            derivative = activation.derivative(f, h if single else activation.function(f))
            if activation.can_die:
                dead = float(np.mean(~np.any(derivative, axis=0)))
            if activation.saturates:
                saturated = float(np.mean(np.abs(derivative) < level * _max_derivative(activation)))
        constant.append(_constant_columns(h))
        stats.append(LayerStats(
            index=k, units=linear.out_features, activation=activation.name,
            preactivation_mean=f_mean, preactivation_std=f_std,
            activation_mean=h_mean, activation_std=h_std,
            dead_fraction=dead, saturated_fraction=saturated,
            grad_preactivation_std=grad_f_std, grad_activation_std=grad_h_std,
            weight_grad_norm=None if gradients.weights is None else _norm(gradients.weights[k]),
            weight_norm=_norm(weight),
            forward_growth=_ratio(f_std, previous_f_std), backward_growth=None,
        ))
        previous_f_std = f_std
    for below, above in zip(stats, stats[1:]):
        below.backward_growth = _ratio(below.grad_preactivation_std, above.grad_preactivation_std)
    return stats, constant


def _grad_f_sums(gradients, grad_preactivations: list, seen: _InCache, k: int) -> np.ndarray:
    """Σ_n dL/df_k: dL/dβ_k when the pass computed it, else what ``seen`` summed, else a pass of its own."""
    if gradients.biases is not None:
        return gradients.biases[k]
    if seen.grad_column_sums[k] is not None:
        return seen.grad_column_sums[k]
    return batch_sum(grad_preactivations[k])


def _second_moment(a: np.ndarray) -> float:
    """E[a²] over every entry in float64 (inf where it overflows, without NumPy's warning)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.mean(np.square(a, dtype=np.float64)))


# a probe without parameter gradients runs its passes in halves of the batch, on two threads
# (depthlab.nn.halves), from this many values per pass on (N × Σ_k D_k: thread costs ~0.2 ms),
# where BLAS runs on one thread (the explorer's server): a 50 × 80 network on 1000 samples,
# forward and backward, ReLU 48 → 33 ms, tanh 105 → 69, GELU 154 → 90 (best of 15, 2 cores)
HALVES_FROM = 1 << 16


def _parts(n: int) -> tuple[slice, ...]:
    """The rows the in-cache sums are taken over apart (the halves a pass may run in), so a
    pass in halves and one whole give the same numbers; one part below 2 · ALIGN rows."""
    return halves(n) if n >= 2 * ALIGN else (slice(None),)


def _halves_pay(net, n: int) -> bool:
    """Whether a pass in halves is worth its threads: two processors, BLAS on one thread, and
    enough values."""
    return (n >= 2 * ALIGN and n * sum(linear.out_features for linear in net.linears) >= HALVES_FROM
            and pair.parallel() and pair.blas_on_one_thread())


def is_plain_mlp(net) -> bool:
    """Whether ``net`` is Linear layers with activations between them, starting with a Linear
    layer (the plain probe's f_k / h_k rows apply); otherwise it is probed per block."""
    return (bool(net.layers) and isinstance(net.layers[0], Linear)
            and all(isinstance(layer, (Linear, ActivationLayer)) for layer in net.layers))


def probe(net, x, y=None, loss="sum_squares", *, rng=0, input_variance=None, theory: bool = True,
          thresholds: dict | None = None, training: bool = True, parameter_grads: bool = True) -> ProbeReport:
    """Measure forward and backward signal statistics layer by layer, with a verdict.

    Parameters
    ----------
    net : Sequential
    x : array_like, shape (N, D_0)
        At least 2 samples (statistics over the batch).
    y : array_like, optional
        Targets for ``loss``; the backward pass starts from dL/d(output). Without ``y`` it
        starts from a unit-variance Gaussian grad_output of shape (N, D_out) drawn from ``rng``.
    loss : str or Loss, default "sum_squares" (the seeds' least squares)
    rng : np.random.Generator or int
        Used only without ``y``.
    input_variance : float > 0, optional
        The input's per-component second moment E[x²] given to the theory; default: measured
        on ``x``.
    theory : bool, default True
        Put the mean-field prediction beside each measurement (needs an activation the theory
        can integrate; pass False otherwise).
    thresholds : dict, optional
        Overrides for :data:`THRESHOLDS` (verdict rules, see the module docstring).
    training : bool, default True
        The mode of the pass: train mode (batch norm normalizes with the batch's statistics,
        dropout drops — the signal as training sees it) or eval mode. The network's own modes,
        running statistics and gradients are left as they were.
    parameter_grads : bool, default True
        Measure ‖dL/dΩ_k‖ (the ``weight_grad_norm`` column; ``parameter_grad_norm`` per block).
        With False the backward pass computes dL/dx alone (``net.backward(...,
        parameter_grads=False)``): a third fewer matrix products, every other number the same,
        and those columns None. The explorer probes so: it shows no weight gradients. A plain
        MLP is then probed in halves of the batch on two threads where two processors are
        free and BLAS runs on one thread (:mod:`depthlab.nn.halves`: 1.3–1.7× faster on a
        50 × 80 network; the same numbers in float64).

    Returns
    -------
    ProbeReport
        ``print(report)`` shows the table, the verdict and a diagnosis with a fix. A network
        that is not a plain MLP (:func:`is_plain_mlp`: residual blocks, norms, dropout) gets a
        :class:`~depthlab.signal.probe_blocks.BlockProbeReport`: one row per top-level layer
        (``net.layers[i]``) with the std of its output and of dL/d(output), the share of a
        residual block's output variance its branch carries, and verdicts for residual
        variance growth and batch norm's gradient explosion (see :mod:`depthlab.signal.probe_blocks`).

    Raises
    ------
    TypeError
        ``net`` is not a :class:`~depthlab.Sequential` network.
    ValueError
        A batch of fewer than 2 samples; a non-positive ``input_variance``; with
        ``theory=True``, an activation the theory cannot integrate (the message names it).

    Examples
    --------
    >>> net = dl.MLP(1, [80] * 50, 1, init=1.0, rng=0)      # the seed notebook's σ²_Ω = 1
    >>> report = dl.probe(net, np.random.default_rng(0).normal(size=(1000, 1)))
    >>> report.verdict, report.verdict_layer
    ('exploding', 1)
    >>> print(report)          # table, verdict, "for relu use init='he_normal' (σ² = 2/80)"
    """
    if not isinstance(net, Sequential):
        raise TypeError(f"probe needs a network (dl.Sequential, dl.MLP or dl.ResMLP), got {type(net).__name__}; "
                        "wrap a single layer as dl.Sequential(layer).")
    x = net.check_input(x, "x", finite=True)
    n = x.shape[0]
    if n < 2:
        raise ValueError(
            f"probe needs a batch of at least 2 samples to measure statistics (means, stds, dead "
            f"units over the batch), got x of shape {x.shape}. Pass more samples — a few hundred "
            "give stable numbers, e.g. x = rng.standard_normal((1000, D_in)).")
    if not isinstance(theory, (bool, np.bool_)):
        raise TypeError(f"probe: theory must be True or False, got {theory!r}.")
    if not isinstance(parameter_grads, (bool, np.bool_)):
        raise TypeError(f"probe: parameter_grads must be True or False, got {parameter_grads!r}.")
    parameter_grads = bool(parameter_grads)
    if thresholds is not None and not isinstance(thresholds, Mapping):
        raise TypeError(f"probe: thresholds must be a dict such as {{'rate': 1.2}}, got {type(thresholds).__name__}.")
    t = dict(THRESHOLDS)
    if thresholds:
        unknown = sorted(set(thresholds) - set(THRESHOLDS))
        if unknown:
            raise ValueError(f"thresholds got unknown keys {unknown}; valid: {', '.join(THRESHOLDS)}.")
        t.update({k: check_real(v, f"thresholds[{k!r}]", low=0, low_open=True) for k, v in thresholds.items()})
    second_moment = _second_moment(x)
    if input_variance is not None:
        input_variance = check_real(input_variance, "input_variance")
        if input_variance <= 0:
            raise ValueError(f"input_variance must be > 0 (the second moment E[x²] the theory "
                             f"propagates through the layers), got {input_variance:g}.")
    elif not theory:
        input_variance = second_moment
    elif not math.isfinite(second_moment):
        raise ValueError(f"probe cannot start the theory from x: its second moment E[x²] overflows float64 "
                         f"(max |x| = {float(np.max(np.abs(x))):.3g}). Scale x down, pass input_variance, "
                         "or theory=False.")
    elif second_moment > 0:
        input_variance = second_moment
    else:
        raise ValueError("probe cannot predict anything from an all-zero x: its variance is 0, so "
                         "input_variance must be > 0. Pass data that varies, or theory=False.")

    loss_name = None
    if y is not None:
        loss_object = _losses.get(loss)
        loss_name = getattr(loss_object, "name", type(loss_object).__name__)

    parameters = net.parameters()
    saved_grads = [p.grad for p in parameters]
    saved_buffers = {name: np.array(value, copy=True) for name, value in net.named_buffers()}
    if not isinstance(training, bool):
        raise TypeError(f"probe: training must be True or False, got {training!r}.")
    blocks = not is_plain_mlp(net)
    seen = None if blocks else _InCache(net, grad_sums=not parameter_grads, parts=_parts(n),
                                        level=t["saturation_level"])
    in_halves = not blocks and not parameter_grads and _halves_pay(net, n)
    try:  # a pass of its own (detached): the network's last recorded pass stays the user's
        with net.mode(training):
            trace = net.forward(x, record=True, allow_nonfinite=True, detached=True,
                                watch=None if seen is None else seen.forward, halves=in_halves)
            if y is not None:
                with np.errstate(over="ignore", invalid="ignore"):
                    grad_output = loss_object.grad(trace.output, y)
            else:
                grad_output = resolve_rng(rng).standard_normal(trace.output.shape).astype(net.dtype)
            gradients = net.backward(grad_output, trace=trace, allow_nonfinite=True,
                                     watch=None if seen is None else seen.backward, parameter_grads=parameter_grads)
            if blocks:  # measured (and the theory walked) in the pass's mode, before the buffers come back
                from .probe_blocks import probe_blocks
                return probe_blocks(net, x, trace, gradients, grad_output, t=t, theory=theory, loss=loss_name,
                                    input_variance=input_variance)
    finally:
        for p, g in zip(parameters, saved_grads):
            p.grad = g
        if saved_buffers:
            net.load_state_dict(saved_buffers, strict=False)

    predicted = None
    if theory:
        grad_output_variance = _second_moment(grad_output)
        if math.isfinite(grad_output_variance):
            predicted = _predictions(net, input_variance, grad_output_variance)
        else:  # dL/d(output) overflowed: no backward prediction can start from it
            predicted = _predictions(net, input_variance, 1.0)[:2] + ([None] * len(net.linears),)

    outputs = trace.activations[1:] + [trace.output]
    if seen is not None:
        seen.finish()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        x_std = _mean_std(x)[1]
        stats, constant = _measure(net, trace, outputs, gradients, x_std, t["saturation_level"], seen)
        if predicted is not None:
            for s, pf, ph, pb in zip(stats, *predicted):
                s.predicted_preactivation_std, s.predicted_activation_std, s.predicted_backward_std = pf, ph, pb
        if _constant_columns(x):  # identical samples: constant layers say nothing about the net
            constant = [False] * len(constant)
        overflow = _first_overflow(stats)
        verdict, layer, diagnosis = _diagnose(net, stats, t, constant[:-1], overflow, math.sqrt(second_moment))
    return ProbeReport(
        layers=stats, verdict=verdict, verdict_layer=layer, diagnosis=diagnosis, n_samples=n,
        input_std=x_std, input_variance=input_variance, loss=loss_name,
        _arrays={"preactivation": trace.preactivations, "activation": outputs,
                 "grad_preactivation": gradients.preactivations},
    )
