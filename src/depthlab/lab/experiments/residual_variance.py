"""residual-variance: the signal through 50 residual blocks, plain and normalized, beside theory.

A plain He-initialized ReLU network keeps its signal's size with depth; a residual network
adds each branch's output to the stream, h_{b+1} = h_b + s F(h_b), so the stream's second
moment grows ×(1 + s²) per block (:func:`depthlab.signal.residual_theory.residual_variance`):
×2 per block at s = 1 — 2^50 over 50 blocks — a bounded ×e at s = 1/√D, not at all with
SkipInit's s = 0. Normalizing each branch's input (batch or layer norm) makes every branch add
the same amount, and the growth linear. Backward, the gradient grows by the same factor per
block toward the input. The experiment measures all of this on real networks and draws the
mean-field predictions over the measurements (the textbook's chapter 11; De & Smith 2020).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...nn.model import Sequential
from ...nn.layers import Linear
from ...nn.residual import ResMLP
from ...signal import residual_theory
from .. import limits, plot
from . import base

NAME = "residual-variance"
TITLE = "Residual networks: the signal's growth per block, measured and predicted"
SUMMARY = "std of h and dL/dh through 50 blocks: plain, residual (s = 1, 1/√D), SkipInit, + batch / layer norm, with theory"
REPRODUCES = "Prince, Understanding Deep Learning, ch. 11 (residual variance); De & Smith 2020 (SkipInit)"
KEY_METRICS = ("growth_per_block_s1", "theory_growth_per_block_s1", "final_variance_ratio_scaled",
               "batch_norm_linear_growth")


@dataclass
class Config:
    blocks: int = 50
    width: int = 256
    samples: int = 256
    inputs: int = 32
    repeats: int = 2
    seed: int = 0


QUICK = {"width": 128, "samples": 128, "repeats": 1}


def validate(config: Config) -> None:
    base.check_range(config, "blocks", low=2)
    base.check_range(config, "width", low=2)
    base.check_range(config, "samples", low=2)
    base.check_range(config, "inputs", low=1)
    base.check_range(config, "repeats", low=1)
    for name, cap in (("blocks", 200), ("width", 4096), ("samples", 20000)):
        limits.check_at_most(getattr(config, name), cap, name)


# variant -> (residual scale given the depth, norm, label)
VARIANTS = {
    "plain": (None, None, "plain (no skip)"),
    "s1": (lambda depth: 1.0, None, "residual, s = 1"),
    "scaled": (lambda depth: 1 / math.sqrt(depth), None, "residual, s = 1/√D"),
    "skipinit": (lambda depth: 0.0, None, "SkipInit, s = 0"),
    "batch": (lambda depth: 1.0, "batch", "s = 1 + batch norm"),
    "layer": (lambda depth: 1.0, "layer", "s = 1 + layer norm"),
}


def build(config: Config, variant: str, rng) -> Sequential:
    """The variant's network: a stem, ``blocks`` blocks of two Linear layers, a 1-unit head."""
    scale, norm, _ = VARIANTS[variant]
    if scale is None:  # the same two He-ReLU layers per block, without the skip
        layers = [Linear(config.inputs, config.width, rng=rng)]
        for _ in range(config.blocks):
            layers += ["relu", Linear(config.width, config.width, rng=rng), "relu",
                       Linear(config.width, config.width, rng=rng)]
        return Sequential(layers + ["relu", Linear(config.width, 1, rng=rng)])
    return ResMLP(config.inputs, config.width, config.blocks, 1, norm=norm,
                  residual_scale=scale(config.blocks), rng=rng)


def measure(config: Config, variant: str, repeat: int) -> tuple[np.ndarray, np.ndarray]:
    """(E[h_b²], E[(dL/dh_b)²]) at the stream after the stem and after each block, b = 0 .. D."""
    rng = np.random.default_rng([config.seed, list(VARIANTS).index(variant), repeat])
    net = build(config, variant, rng)
    x = rng.standard_normal((config.samples, config.inputs))
    with net.mode(True):
        trace = net.forward(x, record=True, allow_nonfinite=True)
        grads = net.backward(rng.standard_normal((config.samples, 1)), allow_nonfinite=True)
    per_block = 4 if variant == "plain" else 1
    points = [0] + [per_block * b for b in range(1, config.blocks + 1)]
    with np.errstate(over="ignore", invalid="ignore"):
        forward = np.array([np.mean(trace.layer_outputs[i] ** 2) for i in points])
        backward = np.array([np.mean(grads.layer_outputs[i] ** 2) for i in points])
    return forward, backward


def predict(config: Config, variant: str, q0: float) -> tuple[np.ndarray, np.ndarray | None]:
    """The mean-field E[h_b²] from the measured q_0, and E[(dL/dh_b)²] relative to the last block's."""
    scale, norm, _ = VARIANTS[variant]
    depth = config.blocks
    if scale is None:
        return np.full(depth + 1, q0), np.ones(depth + 1)
    s = scale(depth)
    forward = residual_theory.residual_variance(depth, s, q0=q0, norm=norm is not None)
    backward = None if norm is not None else residual_theory.residual_gradient_variance(depth, s, q0=q0)
    return forward, backward


def run(config: Config, progress=None) -> base.Result:
    forward, backward, theory_forward, theory_backward = {}, {}, {}, {}
    jobs = [(variant, repeat) for variant in VARIANTS for repeat in range(config.repeats)]
    for variant, repeat in base.iterate(progress, jobs, desc=f"{NAME}: networks"):
        f, b = measure(config, variant, repeat)
        forward.setdefault(variant, []).append(f)
        backward.setdefault(variant, []).append(b)
    for variant in VARIANTS:
        forward[variant] = np.exp(np.mean(np.log(np.array(forward[variant])), axis=0))   # geometric mean
        backward[variant] = np.exp(np.mean(np.log(np.array(backward[variant])), axis=0))
        theory_forward[variant], theory_backward[variant] = predict(config, variant, forward[variant][0])
    depth = config.blocks
    growth = {v: float(np.exp(np.mean(np.diff(np.log(forward[v]))))) for v in VARIANTS}
    metrics = {
        **{f"growth_per_block_{v}": growth[v] for v in VARIANTS},
        "theory_growth_per_block_s1": 2.0,
        "theory_growth_per_block_scaled": 1 + 1 / depth,
        "final_variance_ratio_scaled": float(forward["scaled"][-1] / forward["scaled"][0]),
        "theory_final_variance_ratio_scaled": (1 + 1 / depth) ** depth,
        "final_variance_ratio_s1_log2": float(np.log2(forward["s1"][-1] / forward["s1"][0])),
        "batch_norm_linear_growth": float(np.polyfit(np.arange(depth + 1), forward["batch"], 1)[0]),
        "theory_batch_norm_linear_growth": float(np.diff(theory_forward["batch"])[0]),
        "backward_growth_per_block_s1": float(np.exp(np.mean(np.diff(np.log(backward["s1"][::-1]))))),
        "backward_growth_per_block_batch": float(np.exp(np.mean(np.diff(np.log(backward["batch"][::-1]))))),
    }
    tables = {"growth of E[h²] per block": [
        {"network": VARIANTS[v][2], "measured ×": growth[v],
         "theory ×": float(np.exp(np.mean(np.diff(np.log(theory_forward[v]))))),
         "E[h_D²] / E[h_0²] measured": float(forward[v][-1] / forward[v][0]),
         "theory": float(theory_forward[v][-1] / theory_forward[v][0])} for v in VARIANTS]}
    figures = {"forward": _figure(config, forward, theory_forward, "forward"),
               "backward": _figure(config, backward, theory_backward, "backward")}
    return base.Result(NAME, TITLE, metrics=metrics, figures=figures, tables=tables,
                       explanation=_explanation(config, metrics), summary=_summary(config, metrics))


def _figure(config, measured, theory, direction: str):
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = figure.add_subplot()
    blocks = np.arange(config.blocks + 1)
    for i, variant in enumerate(VARIANTS):
        values = np.sqrt(measured[variant])
        prediction = None if theory[variant] is None else np.sqrt(theory[variant] * (
            1.0 if direction == "forward" else measured[variant][-1]))
        plot.measured_and_theory(blocks, values, prediction, ax=ax, label=VARIANTS[variant][2],
                                 color=f"C{i}", marker=".", logy=True)
    what = "the stream $h_b$" if direction == "forward" else r"$\partial L/\partial h_b$"
    ax.set_xlabel("block $b$")
    ax.set_ylabel(f"std of {what}")
    ax.set_title(f"{direction.capitalize()}: {config.blocks} blocks, width {config.width} (lines: mean-field theory)")
    ax.legend(fontsize=8)
    return figure


def _summary(config, metrics) -> str:
    return "\n".join([
        f"E[h²] per block: ×{metrics['growth_per_block_s1']:.3f} at s = 1 (theory ×2), "
        f"×{metrics['growth_per_block_scaled']:.4f} at s = 1/√D (theory ×{metrics['theory_growth_per_block_scaled']:.4f})",
        f"  over {config.blocks} blocks at s = 1/√D: ×{metrics['final_variance_ratio_scaled']:.3g} "
        f"(theory ×{metrics['theory_final_variance_ratio_scaled']:.3g}); SkipInit ×{metrics['growth_per_block_skipinit']:.3f}",
        f"  with batch norm the growth is linear: +{metrics['batch_norm_linear_growth']:.3g} per block "
        f"(theory +{metrics['theory_batch_norm_linear_growth']:.3g})",
    ])


def _explanation(config, metrics) -> str:
    return f"""
<p>Each network has a stem, <b>{config.blocks} blocks</b> of two He-initialized Linear layers with ReLU, and a head;
width {config.width}, {config.samples} Gaussian inputs. In the <b>plain</b> network the blocks are stacked; in the
<b>residual</b> ones each block is pre-activation, h<sub>b+1</sub> = h<sub>b</sub> + s·F(h<sub>b</sub>) with
F = ReLU → Linear → ReLU → Linear. Markers are measurements (geometric mean over {config.repeats} networks), lines the
mean-field prediction started from the measured h<sub>0</sub>.</p>
<p>He initialization keeps a branch's output as large as its input, and at initialization the branch is
independent of the stream, so the variances add: E[h²] grows <b>×(1 + s²) per block</b>. At s = 1 that is ×2 per
block (measured ×{metrics['growth_per_block_s1']:.3f}): after {config.blocks} blocks the signal's variance is
2^{metrics['final_variance_ratio_s1_log2']:.0f} times larger. Scaling the branch by s = 1/√D bounds the whole
growth by e (measured ×{metrics['final_variance_ratio_scaled']:.3g} over the network); SkipInit's s = 0 starts as the
identity.</p>
<p>With <b>batch or layer norm</b> at the branch's input every branch adds the same amount — the growth becomes
<b>linear</b> (measured +{metrics['batch_norm_linear_growth']:.3g} per block, theory
+{metrics['theory_batch_norm_linear_growth']:.3g}), so the skip path dominates deep in the network and each block
changes the function a little: the reason such networks train at great depth (De &amp; Smith 2020). The backward
figure shows the gradient growing toward the input by the same factor per block (theory lines for the networks
without normalization).</p>"""
