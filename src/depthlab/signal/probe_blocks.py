"""``probe`` on a network of blocks: residual networks, batch and layer norm, dropout.

A network that is not a plain MLP (any top-level layer besides ``Linear`` and activations, e.g.
a :func:`~depthlab.ResMLP`) is probed per *top-level layer* i — the rows of ``net.layers``, the
entries of ``trace.layer_outputs``: a Linear layer, a whole residual block, a norm, an
activation. For each the report gives, over all N·D entries of the batch,

- the mean and std of the layer's output h_{i+1} and the std of dL/dh_{i+1};
- for a residual block h → skip(h) + s·F(h): the share of the output's variance the branch
  carries, Var(s·F) / (Var(skip) + Var(s·F)) (0 at SkipInit, ½ for a branch as large as the
  stream; measured on the actual arrays);
- for an activation layer, its dead and saturated fractions (as the plain probe);
- ‖dL/dθ‖ over the layer's parameters; growth factors std_i / std_{i−1} forward and
  std_i / std_{i+1} backward;
- the mean-field prediction of the two stds beside them (:mod:`depthlab.signal.block_theory`,
  started from the input's measured moments and E[(dL/d output)²]; "—" where the theory does
  not apply, e.g. after the first sum of a post-activation block).

Verdicts, from the rows that add depth ("stages": Linear layers, residual blocks, nested
Sequentials; the last layer of the network is not counted), with the thresholds and rules of the
plain probe (:data:`depthlab.signal.probe.THRESHOLDS`), in order: overflow → "exploding";
an activation layer with ≥ 90% dead units, or a stage whose output is the same for every
sample → "dead"; the forward std of the stages → "exploding" / "vanishing" (for residual
blocks: "residual variance grows ×(1 + s²) per block"); a saturated activation layer →
"saturated"; the backward std of the stages, from the last towards the input → "exploding" /
"vanishing" (with batch norm: "batch norm makes gradients explode toward the input").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .._checks import check_bins, check_index
from ..nn.layers import ActivationLayer, Linear
from ..nn.model import Sequential
from ..nn.normalization import BatchNorm
from ..nn.residual import Residual
from ..nn.parameter import Parameter
from .block_theory import predicted_block_std
from .measure import (constant_columns, first_crossing, format_number, frobenius_norm, growth_rate, max_derivative,
                      mean_std, percent, ratio)
from .probe import ProbeReport

__all__ = ["BlockStats", "BlockProbeReport", "probe_blocks"]

STAGES = (Linear, Residual, Sequential)  # the top-level layers that add depth: the verdicts read these


@dataclass
class BlockStats:
    """One top-level layer's measurements (``None`` where a quantity does not apply)."""

    index: int
    kind: str
    units: int
    output_mean: float
    output_std: float
    grad_std: float
    branch_fraction: float | None
    dead_fraction: float | None
    saturated_fraction: float | None
    parameter_grad_norm: float | None
    forward_growth: float | None
    backward_growth: float | None
    predicted_output_std: float | None = None
    predicted_grad_std: float | None = None


BLOCK_COLUMNS = [  # (header, getter)
    ("block", lambda s: str(s.index)),
    ("layer", lambda s: s.kind),
    ("units", lambda s: str(s.units)),
    ("std out", lambda s: s.output_std),
    ("(theory)", lambda s: s.predicted_output_std),
    ("branch", lambda s: percent(s.branch_fraction)),
    ("dead", lambda s: percent(s.dead_fraction)),
    ("sat", lambda s: percent(s.saturated_fraction)),
    ("std dL/dout", lambda s: s.grad_std),
    ("(theory)", lambda s: s.predicted_grad_std),
    ("|dL/dθ|", lambda s: s.parameter_grad_norm),
    ("fwd x", lambda s: s.forward_growth),
    ("bwd x", lambda s: s.backward_growth),
]


def _kind(layer) -> str:
    if isinstance(layer, ActivationLayer):
        return layer.activation.name
    if isinstance(layer, Residual):
        scale = "learnable" if isinstance(layer.scale, Parameter) else f"{layer.scale:.3g}"
        return f"Residual(s={scale})"
    return type(layer).__name__


@dataclass(repr=False)
class BlockProbeReport(ProbeReport):
    """What :func:`depthlab.probe` measured on a network of blocks.

    As :class:`~depthlab.ProbeReport`, except that ``layers`` holds one :class:`BlockStats`
    per top-level layer of the network (``net.layers[i]``) and ``verdict_layer`` is that index i.
    """

    _block_arrays: dict = field(default_factory=dict, repr=False)  # "output", "grad_output": one array per block

    columns: ClassVar[list] = BLOCK_COLUMNS
    row_name: ClassVar[str] = "block"

    def values(self, name: str, k: int) -> np.ndarray:
        """The measured array behind row k: ``"output"`` (the block's output) or ``"grad_output"``
        (dL/d(that output)), shape (N, D). The network's own: copy it to keep it."""
        if name not in self._block_arrays:
            raise ValueError(f"values: name must be one of {', '.join(self._block_arrays)}, got {name!r}.")
        return self._block_arrays[name][check_index(k, len(self.layers))]

    def histograms(self, bins: int = 30) -> list[dict]:
        """Per-block histograms: ``{"output": (counts, edges), "grad_output": (counts, edges)}``,
        counts of shape (bins,), edges (bins + 1,) as ``np.histogram`` gives them."""
        bins = check_bins(bins)
        result = []
        for i in range(len(self.layers)):
            entry = {}
            for name in ("output", "grad_output"):
                values = self._block_arrays[name][i].reshape(-1)
                entry[name] = np.histogram(values[np.isfinite(values)], bins=bins)
            result.append(entry)
        return result

    def __repr__(self) -> str:
        return (f"BlockProbeReport(verdict={self.verdict!r}, verdict_layer={self.verdict_layer!r}, "
                f"blocks={len(self.layers)}, n_samples={self.n_samples})")

    def _repr_html_(self) -> str:
        from .display import probe_blocks_html
        return probe_blocks_html(self)


# --------------------------------------------------------------------------- measurement

def _activation_fractions(layer: ActivationLayer, f: np.ndarray, h: np.ndarray, level: float):
    """(dead fraction, saturated fraction) of an activation layer's units (None where it cannot die / saturate)."""
    activation = layer.activation
    if not (activation.can_die or activation.saturates):
        return None, None
    derivative = activation.derivative(f, h)
    dead = float(np.mean(~np.any(derivative, axis=0))) if activation.can_die else None
    saturated = (float(np.mean(np.abs(derivative) < level * max_derivative(activation)))
                 if activation.saturates else None)
    return dead, saturated


def _branch_fraction(layer: Residual, h_in: np.ndarray, h_out: np.ndarray) -> float | None:
    """Var(s·F(h)) / (Var(skip(h)) + Var(s·F(h))): s·F(h) is the output minus the skip."""
    skip = h_in if layer.shortcut is None else layer.shortcut(h_in)
    skip_std, branch_std = mean_std(skip)[1], mean_std(h_out - skip)[1]
    largest = max(skip_std, branch_std)
    if not (largest > 0 and math.isfinite(largest)):
        return None
    return (branch_std / largest) ** 2 / ((skip_std / largest) ** 2 + (branch_std / largest) ** 2)


def _measure(net, x, outputs, grads, parameter_grads: dict, level: float):
    """One BlockStats per top-level layer, and whether each layer's output is constant over the batch;
    ``parameter_grads`` maps id(Parameter) to this pass's own dL/dθ (None: not computed)."""
    stats, constant = [], []
    inputs = [x] + outputs[:-1]
    for i, (layer, h_in, h, g) in enumerate(zip(net.layers, inputs, outputs, grads)):
        mean, std = mean_std(h)
        dead = saturated = fraction = None
        if isinstance(layer, ActivationLayer):
            dead, saturated = _activation_fractions(layer, h_in, h, level)
        if isinstance(layer, Residual):
            fraction = _branch_fraction(layer, h_in, h)
        parameters = None if parameter_grads is None else [parameter_grads.get(id(p)) for p in layer.parameters()]
        stats.append(BlockStats(
            index=i, kind=_kind(layer), units=h.shape[1], output_mean=mean, output_std=std, grad_std=mean_std(g)[1],
            branch_fraction=fraction, dead_fraction=dead, saturated_fraction=saturated,
            parameter_grad_norm=(math.hypot(*(frobenius_norm(p) for p in parameters if p is not None))
                                 if parameters else None),   # hypot: no overflow squaring a norm of 1e200
            forward_growth=ratio(std, stats[-1].output_std if stats else mean_std(x)[1]), backward_growth=None))
        constant.append(isinstance(layer, STAGES) and constant_columns(h))
    for below, above in zip(stats, stats[1:]):
        below.backward_growth = ratio(below.grad_std, above.grad_std)
    return stats, constant


# --------------------------------------------------------------------------- verdict

def _stages(net) -> list[int]:
    """Indices of the top-level layers that add depth, without the network's last layer."""
    return [i for i, layer in enumerate(net.layers[:-1]) if isinstance(layer, STAGES)]


def _residual_fix(scale: float) -> str:
    return (f"each block adds a branch about as large as the stream (s = {scale:.3g}). Scale the branches "
            "down: residual_scale='1/sqrt(depth)' (the variance then grows by at most ×e over the whole "
            "network), SkipInit (residual_scale=0, learnable_scale=True) or Fixup (init='fixup'); normalizing "
            "the branches (norm='layer' or 'batch') makes the growth linear in depth instead of exponential")


def _forward_diagnosis(net, stats, stages, direction, begin, t):
    stds = [stats[i].output_std for i in stages]
    per_stage = growth_rate(stds, begin - 1, len(stds) - 1)
    row = stages[begin]
    residuals = [net.layers[i] for i in stages[begin:] if isinstance(net.layers[i], Residual)]
    verb = "grows" if direction == "exploding" else "shrinks"
    if residuals and direction == "exploding":
        scale = residuals[0].scale
        scale = float(scale.data[0]) if isinstance(scale, Parameter) else float(scale)
        return (f"residual variance grows ×{per_stage * per_stage:.3g} per block from block {row} (theory ×(1 + s²) = "
                f"×{1 + scale * scale:.3g} for pre-activation blocks with He-initialized ReLU branches): "
                f"{_residual_fix(scale)}.")
    return (f"forward std of the blocks' outputs {verb} ×{per_stage:.3g} per block from block {row}: the "
            "weights' variance does not match the activation; use a variance-preserving init (init='he_normal' "
            "for relu, 'xavier_normal' for tanh), residual connections or normalization.")


def _backward_diagnosis(net, stats, stages, direction, begin, t):
    stds = [stats[i].grad_std for i in reversed(stages)]
    per_stage = growth_rate(stds, begin - 1, len(stds) - 1)
    row = stages[len(stages) - 1 - begin]
    layers = list(net.layers_within())
    batch_norm = any(isinstance(layer, BatchNorm) and layer.batch_statistics for layer in layers)
    residual = any(isinstance(layer, Residual) for layer in layers)
    verb = "grows" if direction == "exploding" else "shrinks"
    if direction == "exploding" and batch_norm and not residual:
        return (f"batch norm makes gradients explode toward the input: the forward signal keeps its scale, but the "
                f"std of dL/d(output) of the Linear layers grows ×{per_stage:.3g} per layer towards the input from "
                f"block {row} (E‖dL/dh‖² ×{per_stage * per_stage:.3g}; mean-field for ReLU: π/(π − 1) ≈ 1.467 per layer, "
                "Yang et al. 2019). Add residual connections (dl.ResMLP(..., norm='batch')), use layer norm instead "
                "(norm='layer'), or use fewer layers.")
    fix = ("scale the residual branches down (residual_scale='1/sqrt(depth)')" if residual
           else "use a variance-preserving init (init='he_normal' for relu), residual connections or normalization")
    return (f"the forward signal keeps its scale, but the std of dL/d(block output) {verb} ×{per_stage:.3g} per "
            f"block towards the input from block {row} (gradient {direction}); {fix}.")


def _diagnose(net, stats, constant, t, x_constant: bool):
    stages = _stages(net)
    overflow = next((s.index for s in stats if not (math.isfinite(s.output_mean) and math.isfinite(s.output_std))),
                    None)
    if overflow is not None:
        stds = [stats[i].output_std for i in stages if i < overflow]
        crossing = first_crossing(stds, t) if len(stds) >= 2 else None
        begin = stages[crossing[1]] if crossing and crossing[0] == "exploding" else overflow
        residual = any(isinstance(layer, Residual) for layer in net.layers[:overflow + 1])
        cause = _residual_fix(_first_scale(net)) if residual else (
            "use a variance-preserving init (init='he_normal' for relu) or normalization")
        return "exploding", begin, (
            f"the forward signal explodes: block {overflow}'s output leaves the range of {net.dtype} (inf or NaN); "
            f"the growth starts at block {begin}: {cause}.")
    for s, flat in zip(stats, constant):
        if flat and not x_constant and s.index in stages:
            return "dead", s.index, (
                f"block {s.index} ({s.kind}) gives the same output for every sample: no signal passes. Zero or "
                "constant weights make every unit compute the same thing; draw random weights (init='he_normal').")
        if s.dead_fraction is not None and s.dead_fraction >= t["dead_fraction"] and s.index < len(stats) - 1:
            return "dead", s.index, (
                f"{100 * s.dead_fraction:.0f}% of block {s.index}'s {s.kind} units are never active on this batch, "
                "so they pass no signal and get no gradient. Lower the negative bias or the weight scale, "
                "normalize before the activation, or use leaky_relu.")
    forward = first_crossing([stats[i].output_std for i in stages], t)
    if forward:
        return forward[0], stages[forward[1]], _forward_diagnosis(net, stats, stages, *forward, t)
    for s in stats[:-1]:
        if s.saturated_fraction is not None and s.saturated_fraction >= t["saturated_fraction"]:
            return "saturated", s.index, (
                f"{100 * s.saturated_fraction:.0f}% of block {s.index}'s inputs sit in {s.kind}'s flat tails, so "
                "gradients through them vanish: its inputs are too large; normalize them or lower the weight scale.")
    backward = first_crossing([stats[i].grad_std for i in reversed(stages)], t)
    if backward:
        row = stages[len(stages) - 1 - backward[1]]
        return backward[0], row, _backward_diagnosis(net, stats, stages, *backward, t)
    if len(stages) < 2:
        return "healthy", None, "healthy: too few blocks for anything to explode or vanish with depth."
    first, last = stages[0], stages[-1]
    return "healthy", None, (
        f"healthy: over blocks {first} → {last} the std of the output changes "
        f"×{format_number(ratio(stats[last].output_std, stats[first].output_std)).strip()} and the std of "
        f"dL/d(output) ×{format_number(ratio(stats[first].grad_std, stats[last].grad_std)).strip()} "
        f"(block {last} → {first}); no dead or saturated layer.")


def _first_scale(net) -> float:
    for layer in net.layers:
        if isinstance(layer, Residual):
            return float(layer.scale.data[0]) if isinstance(layer.scale, Parameter) else float(layer.scale)
    return 1.0


# --------------------------------------------------------------------------- entry point

def probe_blocks(net, x, trace, gradients, grad_output, *, t: dict, theory: bool, loss: str | None,
                 input_variance: float) -> BlockProbeReport:
    """The per-block report of one recorded pass (called by :func:`depthlab.probe` in the pass's
    mode, before it restores the network's buffers).

    Parameters
    ----------
    net : Sequential
    x : np.ndarray, shape (N, D_0)
    trace, gradients
        The pass's :class:`~depthlab.nn.model.Trace` and :class:`~depthlab.nn.model.Gradients`
        (with intermediates).
    grad_output : np.ndarray, shape (N, D_out)
        Where the backward pass started.
    t : dict
        The verdict thresholds (:data:`depthlab.signal.probe.THRESHOLDS`).
    """
    outputs, grads = list(trace.layer_outputs), list(gradients.layer_outputs)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        own = (None if gradients.parameters is None else  # this pass's, not p.grad's sum
               {id(p): g for p, g in zip(net.parameters(), gradients.parameters)})
        stats, constant = _measure(net, x, outputs, grads, own, t["saturation_level"])
        if theory:
            predicted = predicted_block_std(net, x, float(np.mean(np.square(grad_output, dtype=np.float64))),
                                            input_variance)
            for s, forward, backward in zip(stats, *predicted):
                s.predicted_output_std, s.predicted_grad_std = forward, backward
        verdict, layer, diagnosis = _diagnose(net, stats, constant, t, constant_columns(x))
    return BlockProbeReport(
        layers=stats, verdict=verdict, verdict_layer=layer, diagnosis=diagnosis, n_samples=x.shape[0],
        input_std=mean_std(x)[1], input_variance=input_variance, loss=loss,
        _block_arrays={"output": outputs, "grad_output": grads})
