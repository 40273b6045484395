"""init-variance: how the weight variance σ²_Ω decides whether the forward signal explodes or dies.

Seed 000 builds K-layer ReLU networks of width D with Ω ~ N(0, σ²_Ω) and prints the std of
the hidden units h_k layer by layer. This experiment measures the same curves for σ²_Ω ∈
{1, 2/D, 1/D} and Xavier at two depths, draws the mean-field prediction through them
(:func:`depthlab.signal.theory.predicted_std`), and reproduces the notebook's printed tables from
its own weights (:mod:`depthlab.nn.seeds`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...nn import activations, seeds
from ...signal import theory
from ...nn.model import MLP, Sequential
from .. import limits
from . import base

NAME = "init-variance"
TITLE = "Initialization and the forward signal"
SUMMARY = "per-layer std of h_k for σ² ∈ {1, 2/D, 1/D, Xavier}, depth 5 / 50, theory over measurement (seed 000)"
REPRODUCES = "000_0ecac5a268934f2f.txt forward tables"
KEY_METRICS = ("growth_sigma2_1", "max_min_ratio_2_over_D", "growth_1_over_D", "seed_tables_match")


@dataclass
class Config:
    depths: tuple[int, ...] = (5, 50)
    width: int = 80
    schemes: tuple[str, ...] = ("1", "2/D", "1/D", "xavier")
    activation: str = "relu"
    samples: int = 1000
    repeats: int = 8
    in_features: int = 1
    seed: int = 0


QUICK = {"samples": 200}

MIN_VARIANCE = 1e-6      # a fixed σ²_Ω from 1e-6 to limits.MAX_VARIANCE


# ----------------------------------------------------------------------------- schemes

@dataclass(frozen=True)
class Scheme:
    """A weight-variance rule: σ²_Ω of a layer from its fans and the hidden width D."""

    key: str
    label: str
    slug: str
    variance: object          # (fan_in, fan_out, width) -> σ²_Ω
    init: str | None = None   # a depthlab initializer name, else N(0, variance)
    tex: str = ""             # the label in matplotlib's mathtext

    @property
    def plot_label(self) -> str:
        return self.tex or self.label


_S2 = r"$\sigma^2_\Omega"
SCHEMES = {
    "1": Scheme("1", "σ²_Ω = 1", "sigma2_1", lambda fi, fo, d: 1.0, tex=_S2 + " = 1$"),
    "2/D": Scheme("2/D", "σ²_Ω = 2/D (He)", "2_over_D", lambda fi, fo, d: 2.0 / d, tex=_S2 + " = 2/D$ (He)"),
    "1/D": Scheme("1/D", "σ²_Ω = 1/D", "1_over_D", lambda fi, fo, d: 1.0 / d, tex=_S2 + " = 1/D$"),
    "xavier": Scheme("xavier", "Xavier: 2/(fan_in + fan_out)", "xavier", lambda fi, fo, d: 2.0 / (fi + fo),
                     init="xavier_normal", tex=_S2 + r" = 2/(\mathrm{fan_{in}} + \mathrm{fan_{out}})$ (Xavier)"),
    "he": Scheme("he", "He: 2/fan_in", "he", lambda fi, fo, d: 2.0 / fi, init="he_normal",
                 tex=_S2 + r" = 2/\mathrm{fan_{in}}$ (He)"),
}


def scheme(key: str) -> Scheme:
    """A scheme by key, or a fixed σ²_Ω given as a number ("0.5", "3/80")."""
    if key in SCHEMES:
        return SCHEMES[key]
    value = base.parse_float(key)
    if value <= 0:
        raise ValueError(f"a variance must be > 0, got {key}")
    return Scheme(key, f"σ²_Ω = {key}", f"sigma2_{key.replace('/', '_over_')}", lambda fi, fo, d: value,
                  tex=_S2 + f" = {key}$")


def validate(config: Config) -> None:
    base.check_range(config, "depths", low=1)
    base.check_range(config, "width", low=1)
    base.check_range(config, "samples", low=2)
    base.check_range(config, "repeats", low=1)
    base.check_range(config, "in_features", low=1)
    limits.check_units(config, "depths", "width", "in_features")
    limits.check_samples(config, "samples")
    limits.check_items(config, "depths", 8)
    limits.check_items(config, "schemes", 12)
    limits.check_at_most(config.repeats, 100, "repeats")
    limits.check_product(config.samples * config.width * max(config.depths), limits.MAX_ENTRIES,
                         "samples·width·depth", "numbers held", "samples, width or depths")
    limits.check_product(len(config.schemes) * config.repeats * config.samples * config.width
                         * (config.in_features + config.width * sum(config.depths)), limits.MAX_WORK,
                         "schemes·repeats·samples·width²·Σdepths", "multiply-adds",
                         "samples, repeats, width, depths or schemes")
    activations.get(config.activation)
    for key in config.schemes:
        try:
            rule = scheme(key)
        except ValueError:
            raise ValueError(f"schemes: {key!r} is neither a scheme ({', '.join(SCHEMES)}) nor a variance > 0 "
                             "such as 0.5 or 2/80") from None
        if not MIN_VARIANCE <= rule.variance(1, 1, config.width) <= limits.MAX_VARIANCE:
            raise ValueError(f"schemes: σ²_Ω = {key} is outside [{MIN_VARIANCE:g}, {limits.MAX_VARIANCE:g}] "
                             "(beyond, h_k leaves float64's range within a few layers); use a variance inside")


# ----------------------------------------------------------------------------- measurement

def fans(config: Config, depth: int) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of every Linear layer: D_i → D × depth → 1."""
    widths = [config.in_features] + [config.width] * depth + [1]
    return list(zip(widths[:-1], widths[1:]))


def build(config: Config, depth: int, rule: Scheme, rng) -> Sequential:
    """A network with the scheme's weights (zero biases), drawn from ``rng``."""
    layers = fans(config, depth)
    init = rule.init or [rule.variance(fi, fo, config.width) for fi, fo in layers]
    return MLP(config.in_features, [config.width] * depth, 1, activation=config.activation, init=init, rng=rng)


def nominal_spec(config: Config, depth: int, rule: Scheme) -> list[dict]:
    """The network as :func:`theory.predicted_std` reads it: nominal σ²_Ω per layer."""
    layers = fans(config, depth)
    return [{"activation": config.activation if k < depth else "identity",
             "weight_variance": rule.variance(fi, fo, config.width), "fan_in": fi, "fan_out": fo}
            for k, (fi, fo) in enumerate(layers)]


def finite_std(array: np.ndarray) -> float:
    """np.std over every unit and sample, NaN once the signal has overflowed."""
    if not np.isfinite(array).all():
        return float("nan")
    scale = float(np.max(np.abs(array))) if array.size else 0.0
    if scale == 0.0:
        return 0.0
    return scale * float(np.std(array / scale))     # rescaled: np.std squares, which overflows beyond ~1e154


def pooled(stds: np.ndarray) -> np.ndarray:
    """The std over all draws together, sqrt(mean of the variances) over axis 0 (the networks).

    Mean-field theory predicts the variance averaged over random networks; a single network's
    log-std takes a random walk around it (spread ~ sqrt(depth/width)), so pooling several
    networks is what the theory line should be compared with.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        scale = np.max(stds, axis=0)                   # rescaled: std² would overflow beyond ~1e154
        scale = np.where((scale > 0) & np.isfinite(scale), scale, 1.0)
        return scale * np.sqrt(np.mean(np.square(stds / scale), axis=0))


def overflow_layer(curve: np.ndarray, layers: np.ndarray, backward: bool = False) -> int | None:
    """The first layer (in the direction of the pass) whose std left float64's range, or None.

    ``curve`` holds one pooled std per layer, NaN where the signal overflowed (``finite_std``);
    ``layers`` their layer numbers.
    """
    bad = np.flatnonzero(~np.isfinite(curve))
    if bad.size == 0:
        return None
    return int(layers[bad[-1] if backward else bad[0]])


def curve_metrics(metrics: dict, slug: str, curve: np.ndarray, prediction: np.ndarray, growth: float,
                  overflow: int | None) -> None:
    """growth, max/min, theory error and the overflow layer of one scheme's pooled curve, into ``metrics``.

    Where the signal overflowed float64 the true growth and max/min exceed its range: they are
    recorded as inf (never NaN), with ``overflow_layer_SLUG`` saying where it happened.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        finite = curve[np.isfinite(curve)]
        metrics[f"growth_{slug}"] = math.inf if overflow is not None else float(growth)
        metrics[f"max_min_ratio_{slug}"] = (math.inf if overflow is not None or finite.size == 0
                                            else float(finite.max() / finite.min()))
        error = np.abs(np.log10(curve / prediction))
    metrics[f"theory_log10_error_{slug}"] = float(np.nanmedian(error)) if np.isfinite(error).any() else math.nan
    metrics[f"overflow_layer_{slug}"] = overflow


def growth_text(metrics: dict, slug: str, width: int = 10) -> str:
    """``metrics['growth_SLUG']`` as text, "overflow at k" where the signal overflowed."""
    overflow = metrics.get(f"overflow_layer_{slug}")
    return f"{'overflow at ' + str(overflow):>{width}}" if overflow is not None else f"{metrics['growth_' + slug]:{width}.3g}"


def error_text(metrics: dict, slug: str) -> str:
    """The median |log10(measured/theory)| as text; where measurement and theory both left
    float64's range there is nothing to compare."""
    error = metrics[f"theory_log10_error_{slug}"]
    return "— (both overflow float64)" if math.isnan(error) else f"{error:.3f}"


def rng_for(config: Config, *parts: int) -> np.random.Generator:
    """An independent generator for one (depth, scheme, repeat) cell, derived from config.seed."""
    return np.random.default_rng([config.seed, *parts])


def inputs(config: Config) -> np.ndarray:
    """The batch h_0 = x ~ N(0, 1), shape (samples, in_features)."""
    return rng_for(config, 0xDA7A).standard_normal((config.samples, config.in_features))


def measure_forward(config: Config, depth: int, rule: Scheme, index: tuple[int, int], x: np.ndarray) -> np.ndarray:
    """std of h_1 … h_K for each repeat: shape (repeats, depth)."""
    out = np.empty((config.repeats, depth))
    for r in range(config.repeats):
        net = build(config, depth, rule, rng_for(config, *index, r))
        trace = net.forward(x, record=True, allow_nonfinite=True)   # unchecked: overflow shows as NaN, not an error
        out[r] = [finite_std(h) for h in trace.activations[1:]]
    return out


def seed_tables() -> tuple[dict, list[tuple[tuple, np.ndarray, list]], dict]:
    """Seed 000's printed forward tables beside depthlab's values from the notebook's weights."""
    tables, curves, compared, worst, match = {}, [], 0, 0.0, True
    for (K, D, sigma2), printed in seeds.PRINTED_FORWARD.items():
        setup = seeds.init_variance_setup(K, D, sigma2)
        net = Sequential.from_arrays(setup.weights, setup.biases, activation="relu")
        trace = net.forward(seeds.forward_data(setup, 1000), record=True)
        stds = np.array([np.std(h) for h in trace.activations[1:]])
        rows = []
        for layer, value in enumerate(stds, start=1):
            row = {"layer k": layer, "seed 000 printed": None, "depthlab": float(value), "agrees": None}
            if layer <= len(printed):
                p = printed[layer - 1]
                ok = abs(value - p) <= 5e-4 + 1e-12 * abs(p)
                row.update({"seed 000 printed": p, "agrees": ok})
                compared += 1
                match &= ok
                worst = max(worst, abs(value - p) / max(abs(p), 1e-3))
            rows.append(row)
        tables[f"seed 000, K = {K}, D = {D}, σ²_Ω = {sigma2:g}: std of h_k"] = rows
        curves.append(((K, D, sigma2), stds, printed))
    return tables, curves, {"seed_tables_match": bool(match), "seed_values_compared": compared,
                            "seed_max_relative_difference": worst}


# ----------------------------------------------------------------------------- figures

def std_figure(config, rules, measured, predicted, quantity: str, title: str):
    """One panel per depth: each scheme's pooled std per layer (markers, single networks faint) and theory.

    Shared with gradient-variance (``quantity="dL/df"``); drawn by :func:`depthlab.plot.signal_std`.
    """
    from .. import plot, plots

    depths = config.depths
    fig, axes = plots.figure(1, len(depths), width=5.0 * len(depths) + 0.6, height=4.3, squeeze=False, title=title)
    for ax, depth in zip(axes[0], depths):
        for i, rule in enumerate(rules):
            draws = measured[depth][rule.key]
            plot.signal_std(pooled(draws), predicted[depth][rule.key], draws=draws if draws.shape[0] > 1 else None,
                            quantity=quantity, ax=ax, label=rule.plot_label, color=plots.color(i),
                            marker=plots.marker(i), title=f"depth $K = {depth}$")
        if quantity == "dL/df":
            ax.set_xlabel("layer $k$  (the backward pass runs right to left)")
    handles = [*axes[0][0].get_legend_handles_labels()[0], *plots.theory_legend_handles(
        f"measured (pooled over {config.repeats} networks)" if config.repeats > 1 else "measured", "mean-field theory")]
    axes[0][-1].legend(handles=handles, loc="best", fontsize=7.5)
    return fig


def _forward_figure(config, rules, measured, predicted):
    return std_figure(config, rules, measured, predicted, "h",
                      f"Forward signal of {config.activation} networks of width $D = {config.width}$")


def _seed_figure(curves):
    from .. import plots

    Line2D = plots.require("matplotlib.lines", plots.FIGURES).Line2D

    fig, ax = plots.figure(width=6.6, height=4.3)
    for i, ((K, D, sigma2), stds, printed) in enumerate(curves):
        label = f"$K = {K}$, $D = {D}$, " + _S2 + f" = {sigma2:g}$"
        ax.plot(np.arange(1, K + 1), stds, color=plots.color(i), label=label)
        ax.plot(np.arange(1, len(printed) + 1), printed, linestyle="none", marker="x", color=plots.color(i),
                markersize=6)
    handles = ax.get_legend_handles_labels()[0] + [
        Line2D([], [], color="#555555", label="depthlab, from the notebook's weights"),
        Line2D([], [], color="#555555", marker="x", linestyle="none", label="printed in the notebook")]
    ax.legend(handles=handles, loc="upper left")
    plots.decorate(ax, title="Seed 000's printed tables, recomputed by depthlab",
                   xlabel="layer $k$", ylabel="std of hidden units $h_k$", logy=True)
    return fig


# ----------------------------------------------------------------------------- run

def run(config: Config, progress=None) -> base.Result:
    rules = [scheme(key) for key in config.schemes]
    x = inputs(config)
    measured, predicted = {}, {}
    cells = [(d, i) for d in range(len(config.depths)) for i in range(len(rules))]
    for d, i in base.iterate(progress, cells, desc=NAME):
        depth, rule = config.depths[d], rules[i]
        measured.setdefault(depth, {})[rule.key] = measure_forward(config, depth, rule, (d, i), x)
        prediction = theory.predicted_std(nominal_spec(config, depth, rule), input_variance=1.0)
        predicted.setdefault(depth, {})[rule.key] = prediction.activation_std

    deepest = max(config.depths)
    metrics: dict = {"deepest": deepest}
    for rule in rules:
        curve = pooled(measured[deepest][rule.key])
        with np.errstate(divide="ignore", invalid="ignore"):
            growth = curve[-1] / curve[0]
        curve_metrics(metrics, rule.slug, curve, predicted[deepest][rule.key], growth,
                      overflow_layer(curve, np.arange(1, deepest + 1)))
    seed_rows, curves, seed_metrics = seed_tables()
    metrics.update(seed_metrics)

    tables = {}
    for depth in config.depths:
        rows = []
        for k in range(depth):
            row = {"layer k": k + 1}
            for rule in rules:
                value = float(pooled(measured[depth][rule.key])[k])
                row[f"{rule.key} measured"] = value if math.isfinite(value) else "overflow"
                row[f"{rule.key} theory"] = float(predicted[depth][rule.key][k])
            rows.append(row)
        tables[f"depth {depth}: std of h_k, measured vs theory"] = rows
    tables.update(seed_rows)

    figures = {"forward_std": _forward_figure(config, rules, measured, predicted), "seed_000_tables": _seed_figure(curves)}
    return base.Result(NAME, TITLE, metrics=metrics, figures=figures, tables=tables,
                       explanation=_explanation(config, metrics), summary=_summary(config, rules, metrics))


def headline(rules, metrics, what: str) -> str:
    """One sentence with the finding: how much each scheme changes the signal over the deepest net."""
    parts = []
    for rule in rules:
        growth = metrics[f"growth_{rule.slug}"]
        overflow = metrics.get(f"overflow_layer_{rule.slug}")
        if overflow is not None:
            parts.append(f"{rule.label} overflows float64 (beyond 1.8e308) at layer {overflow}")
        elif rule.key == "2/D":
            parts.append(f"{rule.label} stays within ×{metrics['max_min_ratio_' + rule.slug]:.2f}")
        else:
            parts.append(f"{rule.label} ×{growth:.2g}")
    return f"Over {metrics['deepest']} layers the {what} changes: " + "; ".join(parts) + "."


def _summary(config, rules, metrics) -> str:
    lines = [headline(rules, metrics, "std of h_k")]
    for rule in rules:
        lines.append(f"  {rule.label:<32} std(h_K)/std(h_1) {growth_text(metrics, rule.slug)}   max/min "
                     f"{metrics['max_min_ratio_' + rule.slug]:10.3g}   median |log10(measured/theory)| "
                     f"{error_text(metrics, rule.slug)}")
    verdict = "agree" if metrics["seed_tables_match"] else "DISAGREE"
    lines.append(f"Seed 000's {metrics['seed_values_compared']} printed values {verdict} with depthlab's recomputation.")
    return "\n".join(lines)


def growth_words(metrics, slug: str) -> str:
    overflow = metrics.get(f"overflow_layer_{slug}")
    if overflow is not None:
        return f"more than float64 can hold (it overflows at layer {overflow})"
    return f"{metrics.get('growth_' + slug, float('nan')):.3g}"


def _explanation(config, metrics) -> str:
    D = config.width
    return f"""
<p>Each hidden layer computes f_k = β_k + Ω_k h_k and h_{{k+1}} = a[f_k]. With independent weights of
variance σ²_Ω, a unit of f_k sums D products, so its variance is <b>D·σ²_Ω·E[h_k²]</b>. For ReLU half of
a Gaussian pre-activation is cut off, E[h²] = Var(f)/2, and the variance is multiplied by
<b>D·σ²_Ω/2 at every layer</b>. That one number decides everything in the left and right panels:</p>
<ul>
<li><b>σ²_Ω = 1</b>: the factor is D/2 = {D / 2:g}, so the std grows about ×{(D / 2) ** 0.5:.1f} per layer —
over {metrics['deepest']} layers by {growth_words(metrics, 'sigma2_1')}. This is the seed's exploding table.</li>
<li><b>σ²_Ω = 2/D</b> (He et al. 2015): the factor is exactly 1 and the signal keeps its size at any depth
(max/min over the layers: {metrics.get('max_min_ratio_2_over_D', float('nan')):.2f}).</li>
<li><b>σ²_Ω = 1/D</b>: the factor is 1/2, the std halves every two layers and the signal vanishes.</li>
<li><b>Xavier</b> (Glorot &amp; Bengio 2010) uses 2/(fan_in + fan_out), which is 1/D for square layers: it was
derived for activations that keep the variance (tanh near 0), and for ReLU it vanishes like 1/D.</li>
</ul>
<p>Markers are measurements on one batch of {config.samples} Gaussian inputs, pooled over {config.repeats} random
networks per setting (faint dots: the single networks); lines are the mean-field
prediction of <code>dl.theory.predicted_std</code>, which follows the variance layer by layer and reports
the std of h_k = a[f_k] (for ReLU, Var(h) = E[h²] − E[h]², since h is not zero-mean). The theory is exact
for infinite width and predicts the variance <i>averaged over random networks</i>. At width {D} each layer
multiplies the signal by a random factor close to the predicted one, so a single network's curve wanders
around the line like a random walk in log scale (its spread grows like √(depth/width)); pooled over
networks the measurement sits on the line.</p>
<p>The second figure reproduces the notebook itself: its exact weights (NumPy's legacy generator seeded with 0,
drawn in the notebook's order) give depthlab's lines, and the crosses are the numbers the notebook printed —
they agree to every printed digit. Note the first layer: with one input (D_i = 1), f_0 has variance σ²_Ω·Var(x),
so even the He network starts small (std ≈ 0.098 at σ²_Ω = 2/80) and then stays there.</p>
"""
