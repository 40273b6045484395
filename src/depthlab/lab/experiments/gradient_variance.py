"""gradient-variance: the backward signal dL/df_k layer by layer, for the same grid as init-variance.

Seed 000's second half backpropagates the least-squares loss L = Σ (y − output)² with y = 0
through its 50-layer, 80-wide ReLU network and prints the std of dL/df_k per layer. This
experiment measures that curve for σ²_Ω ∈ {1, 2/D, 1/D} and Xavier, draws the mean-field
prediction (:func:`depthlab.signal.theory.predicted_std`, backward part) through it, and reproduces
the notebook's printed backward table from its own weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...nn import losses, seeds
from ...signal import theory
from ...nn.model import Sequential
from . import base, init_variance
from .init_variance import (growth_words, headline, build, curve_metrics, error_text, finite_std, growth_text,
                            inputs, nominal_spec, overflow_layer, pooled, rng_for, scheme)
from .init_variance import validate as _validate_grid

NAME = "gradient-variance"
TITLE = "Initialization and the backward signal"
SUMMARY = "per-layer std of dL/df_k for σ² ∈ {1, 2/D, 1/D, Xavier}, depth 5 / 50, theory over measurement (seed 000)"
REPRODUCES = "000_0ecac5a268934f2f.txt backward tables"
KEY_METRICS = ("growth_sigma2_1", "max_min_ratio_2_over_D", "growth_1_over_D", "seed_table_match")


@dataclass
class Config(init_variance.Config):
    """The same grid as init-variance; fewer samples (a backward pass per network costs more)."""

    samples: int = 300


QUICK = {"samples": 100}


def validate(config: Config) -> None:
    _validate_grid(config)


def measure_backward(config: Config, depth: int, rule, index: tuple[int, int], x: np.ndarray) -> np.ndarray:
    """std of dL/df_0 … dL/df_{K-1} (hidden pre-activations) per network: shape (repeats, depth).

    The loss is the seed's L = Σ (output − y)² with y = 0, so dL/d output = 2·output.
    """
    out = np.empty((config.repeats, depth))
    for r in range(config.repeats):
        net = build(config, depth, rule, rng_for(config, *index, r))
        trace = net.forward(x, record=True, allow_nonfinite=True)          # unchecked: overflow becomes NaN in the table
        with np.errstate(over="ignore", invalid="ignore"):
            grads = net.backward(losses.sum_squares.grad(trace.output, np.zeros_like(trace.output)),
                                  allow_nonfinite=True)
        out[r] = [finite_std(g) for g in grads.preactivations[:depth]]
    return out


def predict_backward(config: Config, depth: int, rule) -> np.ndarray:
    """Mean-field std of dL/df_0 … dL/df_{K-1}, started from Var(dL/d output) = 4·Var(output)."""
    spec = nominal_spec(config, depth, rule)
    forward = theory.predicted_std(spec, input_variance=1.0)
    output_variance = float(forward.preactivation_std[-1]) ** 2
    if not math.isfinite(output_variance):   # the predicted forward signal itself leaves float64's range
        return np.full(depth, math.inf)
    return theory.predicted_std(spec, input_variance=1.0, grad_output_variance=4.0 * output_variance).backward_std[:depth]


def seed_table() -> tuple[dict, dict]:
    """Seed 000's printed backward table (K = 50, D = 80, σ²_Ω = 1) beside depthlab's values."""
    (K, D, sigma2), printed = next(iter(seeds.PRINTED_BACKWARD.items()))
    setup = seeds.init_variance_setup(K, D, sigma2)
    net = Sequential.from_arrays(setup.weights, setup.biases, activation="relu")
    x = seeds.backward_data(setup, 100)
    trace = net.forward(x, record=True)
    grads = net.backward(losses.sum_squares.grad(trace.output, np.zeros((100, 1))))
    rows, match, worst = [], True, 0.0
    for layer, value in printed.items():
        ours = float(np.std(grads.preactivations[layer]))
        ok = abs(ours - value) <= 1e-12 * abs(value)
        match &= ok
        worst = max(worst, abs(ours - value) / abs(value))
        rows.append({"layer k": layer, "seed 000 printed": value, "depthlab": ours, "agrees": ok})
    name = f"seed 000, K = {K}, D = {D}, σ²_Ω = {sigma2:g}: std of dL/df_k (100 samples, y = 0)"
    return {name: rows}, {"seed_table_match": bool(match), "seed_values_compared": len(rows),
                          "seed_max_relative_difference": worst}


def _figure(config, rules, measured, predicted):
    return init_variance.std_figure(config, rules, measured, predicted, "dL/df",
                                    f"Backward signal of {config.activation} networks of width $D = {config.width}$, "
                                    "$L = \\sum (\\mathrm{output} - 0)^2$")


def run(config: Config, progress=None) -> base.Result:
    rules = [scheme(key) for key in config.schemes]
    x = inputs(config)
    measured, predicted = {}, {}
    cells = [(d, i) for d in range(len(config.depths)) for i in range(len(rules))]
    for d, i in base.iterate(progress, cells, desc=NAME):
        depth, rule = config.depths[d], rules[i]
        measured.setdefault(depth, {})[rule.key] = measure_backward(config, depth, rule, (d, i), x)
        predicted.setdefault(depth, {})[rule.key] = predict_backward(config, depth, rule)

    deepest = max(config.depths)
    metrics: dict = {"deepest": deepest}
    for rule in rules:
        curve = pooled(measured[deepest][rule.key])
        with np.errstate(divide="ignore", invalid="ignore"):
            growth = curve[0] / curve[-1]
        curve_metrics(metrics, rule.slug, curve, predicted[deepest][rule.key], growth,
                      overflow_layer(curve, np.arange(deepest), backward=True))
    seed_rows, seed_metrics = seed_table()
    metrics.update(seed_metrics)

    tables = {}
    for depth in config.depths:
        rows = []
        for k in range(depth):
            row = {"layer k": k}
            for rule in rules:
                value = float(pooled(measured[depth][rule.key])[k])
                row[f"{rule.key} measured"] = value if math.isfinite(value) else "overflow"
                row[f"{rule.key} theory"] = float(predicted[depth][rule.key][k])
            rows.append(row)
        tables[f"depth {depth}: std of dL/df_k, measured vs theory"] = rows
    tables.update(seed_rows)
    return base.Result(NAME, TITLE, metrics=metrics, figures={"backward_std": _figure(config, rules, measured, predicted)},
                       tables=tables, explanation=_explanation(config, metrics), summary=_summary(config, rules, metrics))


def _summary(config, rules, metrics) -> str:
    lines = [headline(rules, metrics, "std of dL/df_k (from the last hidden layer back to the first)")]
    for rule in rules:
        lines.append(f"  {rule.label:<32} std(dL/df_0)/std(dL/df_K-1) {growth_text(metrics, rule.slug)}   max/min "
                     f"{metrics['max_min_ratio_' + rule.slug]:10.3g}   median |log10(measured/theory)| "
                     f"{error_text(metrics, rule.slug)}")
    verdict = "agree" if metrics["seed_table_match"] else "DISAGREE"
    lines.append(f"Seed 000's {metrics['seed_values_compared']} printed backward values {verdict} with depthlab "
                 f"(largest relative difference {metrics['seed_max_relative_difference']:.1e}).")
    return "\n".join(lines)


def _explanation(config, metrics) -> str:
    D = config.width
    return f"""
<p>Backpropagation runs the network in reverse: dL/dh_k = Ω_kᵀ dL/df_k and dL/df_{{k}} = a'[f_k] ⊙ dL/dh_{{k+1}}
(004's δ recursion). Each step back sums D products with weights of variance σ²_Ω and keeps, for ReLU, the half of
the units that were active, so the variance of the gradient is multiplied by <b>D·σ²_Ω·E[a'²] = D·σ²_Ω/2</b> per
layer — the same factor as the forward pass (mean-field theory calls it χ₁). Read the panels from right to left:</p>
<ul>
<li><b>σ²_Ω = 1</b>: ×{D / 2:g} in variance per layer; the first layers receive gradients
{growth_words(metrics, 'sigma2_1')} times larger than the last. These are the seed's enormous numbers
(10^40 and more), and any learning rate that suits one end of the network is absurd at the other.</li>
<li><b>σ²_Ω = 2/D</b> (He): the factor is 1, every layer gets gradients of the same size
(max/min {metrics.get('max_min_ratio_2_over_D', float('nan')):.2f}).</li>
<li><b>σ²_Ω = 1/D</b> and <b>Xavier</b> (1/D for square layers): the gradient halves in variance per layer and the
first layers hardly learn — the vanishing-gradient problem.</li>
</ul>
<p>The loss is the seed's L = Σ (output − y)² with y = 0, so dL/d output = 2·output and the backward signal starts from
the forward output: with σ²_Ω = 1 it starts huge and grows further. Because it starts from a <i>single</i> output
unit, whose size varies a lot from one random network to the next (like a χ² with one degree of freedom), the
measured curves scatter more around the theory than the forward ones do. Markers: the measurement, pooled over
{config.repeats} random networks (faint dots: single networks); lines: <code>dl.theory.predicted_std</code>, which
assumes the backward weights are independent of the forward ones (the usual mean-field approximation, accurate at
this width).</p>
<p>The table "seed 000, K = 50 …" reproduces the notebook's printed backward table from its exact weights and data: the
values (of order 10^40–10^50) agree to 12 significant digits. The notebook labels them "std of dl_dh", but it prints
dL/df_k, the gradient with respect to the pre-activations.</p>
"""
