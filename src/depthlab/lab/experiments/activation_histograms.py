"""activation-histograms: what each initialization does to the distribution of every layer's outputs.

Seed 004, Question 4: a five-layer network, 100 units everywhere, fed x ∈ R^{1000×100} drawn
from N(0, 1); for sigmoid and ReLU and weights θ = 0, N(0, 1), N(0, 0.01), draw the histogram of
each layer's output a_k. This experiment draws them all (with He and Xavier beside them),
states which reading of "N(0, 0.01)" it uses, and corrects the seed's claim about θ = 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...nn import activations
from ...training import data
from ...nn.layers import ActivationLayer, Linear
from ...nn.model import Sequential
from .. import limits
from . import base

NAME = "activation-histograms"
TITLE = "Histograms of every layer's outputs"
SUMMARY = "5-layer, 100-wide sigmoid / ReLU nets on 1000×100 Gaussian input, θ = 0, N(0, 1), N(0, 0.01), He, Xavier (seed 004 Q4)"
REPRODUCES = "004_2a91226520a333bf.txt Question 4"
KEY_METRICS = ("sigmoid_zero_value_h5", "relu_zero_value_h5", "sigmoid_normal_1_saturated_h5",
               "sigmoid_normal_var_0.01_std_h5")


@dataclass
class Config:
    activations: tuple[str, ...] = ("sigmoid", "relu")
    inits: tuple[str, ...] = ("zero", "normal-1", "normal-var-0.01", "normal-std-0.01", "he", "xavier")
    layers: int = 5
    width: int = 100
    samples: int = 1000
    bins: int = 40
    seed: int = 0


QUICK = {"samples": 200}   # every initialization of the question: --quick shrinks the samples only


@dataclass(frozen=True)
class Init:
    """One weight setting θ of the question (biases are zero in every case)."""

    label: str
    tex: str
    slug: str
    spec: object      # what dl.init.get accepts: a name or a variance σ²_Ω


INITS = {
    "zero": Init("θ = 0", r"$\theta = 0$", "zero", "zeros"),
    "normal-1": Init("θ ~ N(0, 1)", r"$\theta \sim N(0, 1)$", "normal_1", 1.0),
    "normal-var-0.01": Init("θ ~ N(0, 0.01): variance 0.01, std 0.1", r"$N(0, 0.01)$: variance 0.01",
                            "normal_var_0.01", 0.01),
    "normal-std-0.01": Init("θ ~ N(0, 0.01²): std 0.01", r"$N(0, 0.01^2)$: std 0.01", "normal_std_0.01", 1e-4),
    "he": Init("He: N(0, 2/fan_in)", r"He: $N(0, 2/\mathrm{fan_{in}})$", "he", "he_normal"),
    "xavier": Init("Xavier: N(0, 2/(fan_in + fan_out))", r"Xavier: $N(0, 2/(\mathrm{fan_{in}}+\mathrm{fan_{out}}))$",
                   "xavier", "xavier_normal"),
}

SATURATION = 0.01     # a sigmoid output within 0.01 of 0 or 1 has a' < 0.01: it has stopped learning


def validate(config: Config) -> None:
    base.check_range(config, "layers", low=1)
    base.check_range(config, "width", low=1)
    base.check_range(config, "samples", low=2)
    base.check_range(config, "bins", low=2)
    base.check_choices(config, "inits", list(INITS))
    limits.check_at_most(config.layers, 20, "layers", "one histogram panel per layer")
    limits.check_units(config, "width")
    limits.check_samples(config, "samples")
    limits.check_at_most(config.bins, 1000, "bins")
    limits.check_items(config, "activations", 8, "one figure each")
    limits.check_items(config, "inits", 12, "one row of panels each")
    limits.check_product(config.layers * config.samples * config.width * len(config.activations) * len(config.inits),
                         limits.MAX_ENTRIES, "layers·samples·width·activations·inits", "numbers held",
                         "samples, width, layers, activations or inits")
    limits.check_product(config.layers * config.samples * config.width ** 2 * len(config.activations)
                         * len(config.inits), limits.MAX_WORK, "layers·samples·width²·activations·inits",
                         "multiply-adds", "samples, width, layers, activations or inits")
    for name in config.activations:
        activations.get(name)


def network(config: Config, activation: str, init: Init, rng) -> Sequential:
    """``layers`` × (Linear(width, width), activation): every layer's output is an a_k."""
    parts = []
    for _ in range(config.layers):
        parts += [Linear(config.width, config.width, init=init.spec, rng=rng), ActivationLayer(activation)]
    return Sequential(parts)


def layer_outputs(net: Sequential, x: np.ndarray) -> list[np.ndarray]:
    """[a_1, …, a_K]: the outputs of every layer, each (N, width)."""
    trace = net.forward(x, record=True)
    return [*trace.activations[1:], trace.output]


def input_share(values: np.ndarray) -> float:
    """Share of the variance that depends on the input: mean per-unit variance over the samples / total.

    Near 0 when every unit outputs nearly the same value for every input (the layer has
    forgotten its input); 1 when units differ only through the input.
    """
    total = float(np.var(values))
    return float(np.mean(np.var(values, axis=0)) / total) if total > 0 else 0.0


def statistics(values: np.ndarray) -> dict:
    """Summary of one layer's outputs (N, width)."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "min": float(np.min(values)),
            "max": float(np.max(values)), "exactly 0": float(np.mean(values == 0)),
            "saturated": float(np.mean((values < SATURATION) | (values > 1 - SATURATION))),
            "input share": input_share(values)}


def _figure(config: Config, activation: str, inits: list[Init], outputs: dict):
    """Seed 004 Q4's grid (one row per init, one column per layer), drawn by :func:`depthlab.plot.histogram_grid`."""
    from .. import plot

    return plot.histogram_grid({init.slug: outputs[init.slug] for init in inits}, bins=config.bins,
                               activation=activation, row_labels={init.slug: init.tex for init in inits},
                               title=f"{activation}: histograms of the layer outputs $a_k$ "
                                     f"({config.layers} layers × {config.width} units, "
                                     f"{config.samples}×{config.width} Gaussian input, zero biases)")


def run(config: Config, progress=None) -> base.Result:
    x = data.gaussian_inputs(config.samples, config.width, rng=np.random.default_rng([config.seed, 0xDA7A]))
    inits = [INITS[key] for key in config.inits]
    outputs: dict = {}
    cells = [(a, i) for a in range(len(config.activations)) for i in range(len(inits))]
    for a, i in base.iterate(progress, cells, desc=NAME):
        activation, init = config.activations[a], inits[i]
        net = network(config, activation, init, np.random.default_rng([config.seed, a, i]))
        outputs.setdefault(activation, {})[init.slug] = layer_outputs(net, x)

    metrics: dict = {}
    tables = {}
    last = config.layers
    for activation in config.activations:
        rows = []
        for init in inits:
            for k, values in enumerate(outputs[activation][init.slug], start=1):
                rows.append({"init": init.label, "layer": k, **statistics(values)})
            final = outputs[activation][init.slug][-1]
            stats = statistics(final)
            prefix = f"{activation}_{init.slug}"
            metrics[f"{prefix}_std_h{last}"] = stats["std"]
            metrics[f"{prefix}_input_share_h{last}"] = stats["input share"]
            if activation == "sigmoid":
                metrics[f"{prefix}_saturated_h{last}"] = stats["saturated"]
            if activations.get(activation).can_die:
                metrics[f"{prefix}_zero_fraction_h{last}"] = stats["exactly 0"]
            if init.slug == "zero":
                constant = np.ptp(final) == 0
                metrics[f"{activation}_zero_value_h{last}"] = float(final.flat[0]) if constant else None
        tables[f"{activation}: statistics of every layer's output"] = rows
    figures = {f"histograms_{activation}": _figure(config, activation, inits, outputs[activation])
               for activation in config.activations}
    return base.Result(NAME, TITLE, metrics=metrics, figures=figures, tables=tables,
                       explanation=_explanation(config, metrics), summary=_summary(config, inits, metrics))


def _summary(config: Config, inits, metrics) -> str:
    last = config.layers
    found = []
    constants = [f"{a} all {metrics[f'{a}_zero_value_h{last}']:g}" for a in config.activations
                 if metrics.get(f"{a}_zero_value_h{last}") is not None]
    if constants:
        found.append("θ = 0 makes every output equal (" + ", ".join(constants) + ")")
    saturated = metrics.get(f"sigmoid_normal_1_saturated_h{last}")
    if saturated is not None:
        found.append(f"N(0, 1) saturates {100 * saturated:.0f}% of the sigmoid outputs")
    he = metrics.get(f"relu_he_std_h{last}")
    if he is not None:
        found.append(f"He keeps ReLU layer {last} at std {he:.2g}")
    lines = ["; ".join(found) + "." if found else f"Histograms of {last} layers.",
             f"std of layer {last}'s outputs:"]
    for init in inits:
        parts = [f"{a} {metrics[f'{a}_{init.slug}_std_h{last}']:.3g}" for a in config.activations]
        lines.append(f"  {init.label:<40} " + "   ".join(parts))
    return "\n".join(lines)


def _share(metrics, slug: str, last: int) -> str:
    value = metrics.get(f"sigmoid_{slug}_input_share_h{last}")
    return "(not run)" if value is None else f"{value:.2g}"


def _explanation(config: Config, metrics) -> str:
    last, D = config.layers, config.width
    sat = metrics.get(f"sigmoid_normal_1_saturated_h{last}")
    sat_text = f" ({100 * sat:.0f}% of layer {last}'s outputs are within {SATURATION} of 0 or 1)" if sat is not None else ""
    return f"""
<p>Each row is one way of drawing the weights θ (biases are zero throughout, as the seed's θ names the weights), each
column one layer's output a_k = σ(Ω_k a_{{k−1}}). The numbers in the corners give each histogram's std and, for ReLU,
the share of outputs that are exactly zero.</p>
<ul>
<li><b>θ = 0.</b> The seed says every layer outputs 0. That is true for ReLU, but for the sigmoid every pre-activation
is 0 and every output is <b>σ(0) = 0.5</b>, a single spike at 0.5 (see the sigmoid figure). Either way all units of a
layer are identical and stay identical under gradient descent (they receive identical gradients): zero initialization
never breaks the symmetry, and for ReLU the gradient is exactly zero as well.</li>
<li><b>θ ~ N(0, 1).</b> A unit sums {D} inputs, so its pre-activation has a std of about √{D}·rms(a) — several units.
The sigmoid saturates: outputs pile up at 0 and 1{sat_text}, where its derivative σ(1 − σ) is nearly 0 and gradients
vanish. ReLU outputs grow by about √({D}/2) ≈ {(D / 2) ** 0.5:.1f} per layer.</li>
<li><b>θ ~ N(0, 0.01) is ambiguous.</b> Written as N(μ, σ²), as here, it means <i>variance</i> 0.01 (std 0.1): then
{D}·0.01 = 1 and this is exactly Xavier's variance for {D}×{D} layers — the sigmoid outputs stay spread around 0.5
without saturating, while ReLU loses half its variance per layer. Read as <i>std</i> 0.01 (variance 10⁻⁴, the row
"N(0, 0.01²)"), the signal collapses: sigmoid outputs all sit at ≈ 0.5 (every unit says the same thing) and ReLU
outputs shrink ×{(D * 1e-4 / 2) ** 0.5:.2f} per layer.</li>
<li><b>He</b> (variance 2/fan_in = {2 / D:g}) keeps ReLU outputs the same size in every layer; <b>Xavier</b>
(2/(fan_in + fan_out) = {1 / D:g}) suits the sigmoid and tanh, which are close to linear near 0.</li>
</ul>
<p><b>Why the deeper sigmoid histograms look spiky.</b> They are made of {D} narrow peaks, one per unit: each unit gives
nearly the same output whatever the input. The sigmoid's outputs have mean 0.5, so the next pre-activation
Ω_k a_{{k−1}} is dominated by 0.5·Σ_j Ω_kj, a constant of the unit, and the input-dependent part shrinks layer after
layer. The column "input share" of the tables measures it (the mean over units of each unit's variance across the
inputs, divided by the total variance): with Xavier it is {_share(metrics, "xavier", last)} at layer {last} —
the network has forgotten its input. This is why zero-mean activations (tanh) or normalization layers are preferred
with sigmoid-like units. With N(0, 1) the input share stays larger ({_share(metrics, "normal_1", last)}), but those
units are saturated.</p>
<p>The seed's description of the N(0, 1) sigmoid case ("a_5 tends to a uniform distribution") does not survive the
measurement: from layer 1 on, the outputs are concentrated at the two ends of (0, 1).</p>
"""
