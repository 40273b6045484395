"""dynamical-isometry: the input–output Jacobian's singular values, Gaussian vs orthogonal weights.

Saxe, McClelland & Ganguli (2014) showed that deep *linear* networks with orthogonal weights
learn in a time independent of depth, while scaled Gaussian ones slow down with depth.
Pennington, Schoenholz & Ganguli (2017, "Resurrecting the sigmoid") extended this to nonlinear
networks with free probability: at criticality (χ₁ = 1) the mean of the squared singular
values s² of the Jacobian J = ∂h_K/∂x is 1 at any depth, but their *spread* is

    Var(s²) = L · (μ₂/μ₁² − 1 − s₁),    μ_k = E[φ'(√q* z)^{2k}],

with s₁ = −1 for Gaussian weights and s₁ = 0 for orthogonal ones. For tanh at small q*
(μ₂/μ₁² → 1) orthogonal weights keep the spectrum concentrated at 1 — dynamical isometry —
while Gaussian ones spread it like √L. For ReLU μ₂/μ₁² = 2 whatever q*, so no initialization
reaches isometry: Var(s²) = L with orthogonal weights, 2L with Gaussian ones.

This experiment measures the singular values with :func:`depthlab.jacobian_spectrum` on
networks of L layers h_{k+1} = φ(Ω_k h_k + β_k) (square, width D) for the four cases tanh /
ReLU × Gaussian / orthogonal, all at criticality, puts the theory's spread beside them, and
trains deep tanh networks on MNIST-1D from both initializations to compare how many SGD steps
each needs to reach a training loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ... import optim
from ...nn.activations import get as activation
from ...nn.model import MLP, Sequential
from ...signal import theory
from ...signal.gaussian import gaussian_expectation
from ...signal.spectrum import isometry, jacobian_spectrum
from ...training.fit import evaluate
from ...training.step import TrainStep
from .. import claims as _claims
from . import base

NAME = "dynamical-isometry"
TITLE = "Dynamical isometry: Jacobian spectra of Gaussian and orthogonal networks"
SUMMARY = ("singular values of ∂h_K/∂x at criticality, tanh/ReLU × Gaussian/orthogonal weights, depth 10–200, "
           "theory beside them; SGD steps to a loss, orthogonal vs Gaussian")
REPRODUCES = "Saxe et al. 2014; Pennington, Schoenholz & Ganguli 2017 (Figs. 1–2, 5)"
KEY_METRICS = ("spread_ratio_at_50", "std_s2_tanh_orthogonal", "std_s2_tanh_gaussian", "steps_to_target")


@dataclass
class Config:
    depths: tuple[int, ...] = (10, 25, 50, 100, 200)
    width: int = 128              # D: units per layer of the spectrum networks
    inputs: int = 2               # inputs x whose Jacobians are pooled (D singular values each)
    bias_variance: float = 1e-5   # tanh's σ_b²: its critical σ_w² then has q* ≈ 0.02
    train_depth: int = 100        # hidden layers of the trained tanh networks
    train_width: int = 32
    train_steps: int = 300
    lr: float = 0.01              # plain SGD
    batch: int = 64
    train_samples: int = 1000     # MNIST-1D training signals
    target_loss: float = 2.0      # "learned": the training loss first at or below this (chance ln 10 = 2.30)
    eval_every: int = 20          # steps between evaluations of the training loss
    seed: int = 0


# Narrower spectrum networks, fewer signals and steps; the depths (to 200) and the trained
# network's depth (100) stay: the claims are about depth.
QUICK = {"width": 64, "inputs": 1, "train_samples": 500, "train_steps": 200}


@dataclass(frozen=True)
class Setting:
    """One network family: activation and weight distribution, at its critical point."""

    activation: str
    weights: str          # "gaussian" or "orthogonal"
    label: str
    point: str = ""       # key of its point in run's ``points`` (default: the activation)


SETTINGS = {
    "tanh_orthogonal": Setting("tanh", "orthogonal", "tanh, orthogonal"),
    "tanh_gaussian": Setting("tanh", "gaussian", "tanh, Gaussian"),
    "relu_orthogonal": Setting("relu", "orthogonal", "ReLU, orthogonal"),
    "relu_gaussian": Setting("relu", "gaussian", "ReLU, Gaussian"),
    "tanh_xavier": Setting("tanh", "gaussian", "tanh, Xavier", point="xavier"),
}
# s₁, the first coefficient of the S-transform of Ω Ωᵀ / σ_w² (Pennington et al. 2017)
S1 = {"gaussian": -1.0, "orthogonal": 0.0}


def validate(config: Config) -> None:
    base.check_range(config, "depths", low=1)
    for name in ("width", "inputs", "train_depth", "train_width", "train_steps", "batch", "eval_every"):
        base.check_range(config, name, low=1)
    base.check_range(config, "bias_variance", low=0.0, low_open=True, high=1.0)
    base.check_range(config, "lr", low=0.0, low_open=True)
    base.check_range(config, "train_samples", low=config.batch, high=4000)
    base.check_range(config, "target_loss", low=0.0, low_open=True)
    if len(set(config.depths)) != len(config.depths):
        raise ValueError(f"depths lists a value twice: {base.format_value(config.depths)}")


# ----------------------------------------------------------------------------- criticality

@dataclass(frozen=True)
class Critical:
    """Where a family is critical: σ_w², σ_b², the fixed point q* and μ₁, μ₂ there."""

    weight_variance: float
    bias_variance: float
    q_star: float
    mu1: float
    mu2: float

    def spread(self, weights: str, depth: int) -> float:
        """The theory's std of s² over a depth-``depth`` network: √(L (μ₂/μ₁² − 1 − s₁)); nan off criticality."""
        if not math.isfinite(self.mu1):
            return math.nan
        return math.sqrt(depth * (self.mu2 / self.mu1 ** 2 - 1.0 - S1[weights]))


def xavier(input_variance: float) -> Critical:
    """Glorot & Bengio's normalized init for square tanh layers: σ_w² = 1, σ_b² = 0.

    Its fixed point is q* = 0, which the variance approaches only like 1/(2k), so the theory
    above does not apply (μ's are nan); ``input_variance`` is the q_0 the inputs start at
    (Glorot & Bengio's derivation assumes tanh's linear regime, small q).
    """
    return Critical(1.0, 0.0, input_variance, math.nan, math.nan)


def critical(name: str, bias_variance: float) -> Critical:
    """The critical point of ``name`` ('tanh': on the critical line at σ_b²; 'relu': He's σ_w² = 2, σ_b² = 0)."""
    act = activation(name)
    if name == "relu":
        weight_variance, bias, q_star = 2.0, 0.0, 1.0    # every q is a fixed point; μ_k do not depend on it
    else:
        bias = bias_variance
        weight_variance = theory.critical_weight_variance(name, bias)
        q_star = theory.fixed_point(name, weight_variance, bias)

    def slope_power(power):
        return lambda f: act.derivative(f, act.function(f)) ** power

    kinks = tuple(getattr(act, "kinks", ()) or ())
    mu1 = gaussian_expectation(slope_power(2), q_star, kinks=kinks)
    mu2 = gaussian_expectation(slope_power(4), q_star, kinks=kinks)
    return Critical(weight_variance, bias, q_star, mu1, mu2)


def network(setting: Setting, point: Critical, depth: int, width: int, rng, *, in_features: int | None = None,
            out_features: int | None = None, output_activation: bool = True) -> Sequential:
    """``depth`` layers h_{k+1} = φ(Ω_k h_k + β_k) at ``point``: Ω_k Gaussian N(0, σ_w²/D) or σ_w·orthogonal."""
    weights = ({"name": "variance_scaling", "scale": point.weight_variance} if setting.weights == "gaussian"
               else {"name": "orthogonal", "gain": math.sqrt(point.weight_variance)})
    bias = {"name": "normal", "variance": point.bias_variance} if point.bias_variance > 0 else "zeros"
    return MLP(in_features or width, [width] * (depth - 1), out_features or width, activation=setting.activation,
               output_activation=setting.activation if output_activation else None, init=weights, bias_init=bias,
               rng=rng)


def inputs_at(point: Critical, count: int, width: int, rng) -> np.ndarray:
    """``count`` inputs of mean square (q* − σ_b²)/σ_w², so the first layer's f_0 starts at q*: (count, width)."""
    x = rng.standard_normal((count, width))
    x /= np.sqrt(np.mean(x * x, axis=1, keepdims=True))
    return x * math.sqrt((point.q_star - point.bias_variance) / point.weight_variance)


# ----------------------------------------------------------------------------- spectra

def spectra(config: Config, points: dict, progress=None) -> dict:
    """Singular values of J for every family and depth: {(family, depth): array (inputs · D,)}."""
    found = {}
    cells = [(key, depth) for key in SETTINGS for depth in config.depths]
    for index, (key, depth) in enumerate(base.iterate(progress, cells, desc=f"{NAME}: spectra")):
        setting = SETTINGS[key]
        point = points[setting.point or setting.activation]
        rng = np.random.default_rng([config.seed, index])
        net = network(setting, point, depth, config.width, rng)
        found[key, depth] = jacobian_spectrum(net, inputs_at(point, config.inputs, config.width, rng)).ravel()
    return found


# ----------------------------------------------------------------------------- learning speed

@dataclass
class Learning:
    """Training loss every ``eval_every`` steps (index 0: before training) and the steps to the target."""

    steps: list
    loss: list
    steps_to_target: int | None


def learn(weights: str, point: Critical, config: Config, data, tick=None) -> Learning:
    """Train a ``train_depth``-layer tanh network at ``point`` with plain SGD; record its training loss.

    The input signals are scaled so the first layer starts at q*; the 10-way readout is a
    Linear layer of the same family. The same minibatches are drawn for both weight families.
    """
    x, y = data
    rng = np.random.default_rng([config.seed, 1000])
    net = network(Setting("tanh", weights, weights), point, config.train_depth + 1, config.train_width,
                  np.random.default_rng([config.seed, 2000 + list(S1).index(weights)]),
                  in_features=x.shape[1], out_features=10, output_activation=False)
    step = TrainStep(net, "cross_entropy", optim.SGD(net.parameters(), lr=config.lr))
    steps, losses, reached = [], [], None
    for t in range(config.train_steps + 1):
        if t % config.eval_every == 0 or t == config.train_steps:
            with np.errstate(over="ignore", invalid="ignore"):
                loss = float(evaluate(net, x, y, loss="cross_entropy")["loss"])
            steps.append(t)
            losses.append(loss)
            if reached is None and loss <= config.target_loss:
                reached = t
            if not math.isfinite(loss):
                break
        if t == config.train_steps:
            break
        rows = rng.choice(x.shape[0], size=config.batch, replace=False)
        step(x[rows], y[rows])
        if tick is not None and (t + 1) % config.eval_every == 0:
            tick()
    return Learning(steps, losses, reached)


def training_data(config: Config, point: Critical):
    """The first ``train_samples`` MNIST-1D signals, standardized, then scaled so q_0 = q*."""
    from ...training.data import mnist1d

    data = mnist1d()
    x, y = data.x_train[:config.train_samples], data.y_train[:config.train_samples]
    x = (x - x.mean(axis=0)) / x.std()
    return x * math.sqrt((point.q_star - point.bias_variance) / point.weight_variance), y


# ----------------------------------------------------------------------------- the study

def statistics(values: np.ndarray) -> dict:
    """Mean and std of s², std of ln s² (:func:`depthlab.isometry`), the 5th / 95th percentiles of s
    and the share of s within a factor √2 of 1.

    The std of s² is the theory's measure, but once the depth is comparable to the width a few
    huge values dominate it and it varies much from one network to the next; the share near 1
    is a proportion, stable, and says directly how isometric J is.
    """
    found = isometry(values)
    low, high = np.percentile(values, [5, 95])
    near_one = float(np.mean((values >= NEAR_ONE ** -1) & (values <= NEAR_ONE)))
    return {"mean_s2": found["mean_squared"], "std_s2": found["std_squared"],
            "std_log_s2": found["std_log_squared"], "s_p05": float(low), "s_p95": float(high),
            "share_near_1": near_one}


NEAR_ONE = math.sqrt(2.0)   # "near 1": within a factor √2 (s² within a factor 2)


def run(config: Config, progress=None) -> base.Result:
    points = {"tanh": critical("tanh", config.bias_variance), "relu": critical("relu", 0.0)}
    points["xavier"] = xavier(points["tanh"].q_star)
    found = spectra(config, points, progress)
    depths = list(config.depths)
    stats = {key: [statistics(found[key, d]) for d in depths] for key in SETTINGS}
    predicted = {key: [points[s.point or s.activation].spread(s.weights, d) for d in depths]
                 for key, s in SETTINGS.items()}

    data = training_data(config, points["tanh"])
    units = 2 * (config.train_steps // config.eval_every)
    with base.ticks(progress, units, f"{NAME}: training") as tick:
        learning = {w: learn(w, points["tanh"], config, data, tick) for w in ("orthogonal", "gaussian")}

    at = _depth_at_least(depths, 50)
    metrics = {"depths": depths, "width": config.width,
               "tanh_weight_variance": points["tanh"].weight_variance, "tanh_bias_variance": config.bias_variance,
               "tanh_q_star": points["tanh"].q_star,
               "tanh_mu2_over_mu1_squared": points["tanh"].mu2 / points["tanh"].mu1 ** 2,
               "relu_mu2_over_mu1_squared": points["relu"].mu2 / points["relu"].mu1 ** 2}
    for key in SETTINGS:
        for field in ("mean_s2", "std_s2", "std_log_s2", "s_p05", "s_p95", "share_near_1"):
            metrics[f"{field}_{key}"] = [float(f"{row[field]:.6g}") for row in stats[key]]
        metrics[f"predicted_std_s2_{key}"] = [round(v, 6) for v in predicted[key]]
    metrics["compared_depth"] = depths[at] if at is not None else None
    metrics["spread_ratio_at_50"] = (stats["tanh_gaussian"][at]["std_s2"] / stats["tanh_orthogonal"][at]["std_s2"]
                                     if at is not None else None)
    metrics["relu_orthogonal_over_tanh_orthogonal_at_50"] = (
        stats["relu_orthogonal"][at]["std_s2"] / stats["tanh_orthogonal"][at]["std_s2"] if at is not None else None)
    metrics["steps_to_target"] = {w: run.steps_to_target for w, run in learning.items()}
    metrics["final_loss"] = {w: round(run.loss[-1], 6) for w, run in learning.items()}
    metrics["loss_curve_steps"] = learning["orthogonal"].steps
    metrics["loss_curve"] = {w: [round(v, 6) for v in run.loss] for w, run in learning.items()}

    from . import dynamical_isometry_figures as figures

    rows = []
    for key, setting in SETTINGS.items():
        for j, d in enumerate(depths):
            rows.append({"family": setting.label, "depth L": d, "mean s²": stats[key][j]["mean_s2"],
                         "std ln s²": stats[key][j]["std_log_s2"], "share of s near 1": stats[key][j]["share_near_1"],
                         "std s² measured": stats[key][j]["std_s2"], "std s² theory (D → ∞)": predicted[key][j],
                         "s: 5th–95th percentile": f"{stats[key][j]['s_p05']:.3g} – {stats[key][j]['s_p95']:.3g}"})
    return base.Result(NAME, TITLE, metrics=metrics,
                       figures={"spectra": figures.spectra(config, SETTINGS, found),
                                "spread": figures.spread(config, SETTINGS, stats, predicted),
                                "learning_speed": figures.learning_speed(config, learning, points["tanh"])},
                       tables={"Jacobian singular values per family and depth": rows},
                       explanation=_explanation(config, metrics, points), summary=_summary(config, metrics))


def _depth_at_least(depths, least: int):
    """The index of the smallest depth ≥ ``least`` (None when every depth is shallower)."""
    deep = [i for i, d in enumerate(depths) if d >= least]
    return min(deep, key=lambda i: depths[i]) if deep else None


# ----------------------------------------------------------------------------- claims

SPREAD_FACTOR = 5.0   # orthogonal tanh's std of s² is at least this many times smaller than Gaussian's


def claims(metrics: dict) -> list:
    config = metrics.get("config", {})
    depths, at = metrics["depths"], metrics["compared_depth"]
    budget = (f"width {config.get('width', metrics['width'])}, depths {depths[0]}–{depths[-1]}, "
              f"{config.get('inputs', '?')} input(s); training: {config.get('train_depth', '?')} tanh layers × "
              f"{config.get('train_width', '?')}, {config.get('train_steps', '?')} SGD steps")
    found = []
    if at is not None:
        j = depths.index(at)
        ratio = metrics["spread_ratio_at_50"]
        orth, gauss = metrics["std_s2_tanh_orthogonal"], metrics["std_s2_tanh_gaussian"]
        relu = metrics["std_s2_relu_orthogonal"]
        share = metrics["share_near_1_tanh_gaussian"]
        growing = share[-1] < share[0]
        checks = ((f"at depth {at} orthogonal tanh's std of s² is {orth[j]:.3g}, Gaussian's {gauss[j]:.3g}: "
                   f"{ratio:.1f}× narrower (needed ≥ {SPREAD_FACTOR:g}×)", ratio >= SPREAD_FACTOR),
                  (f"Gaussian tanh spreads with depth: the share of s within a factor √2 of 1 falls from "
                   f"{share[0]:.0%} at depth {depths[0]} to {share[-1]:.0%} at {depths[-1]} (orthogonal: "
                   f"{metrics['share_near_1_tanh_orthogonal'][-1]:.0%})", growing),
                  (f"orthogonal ReLU is far from isometry: std s² {relu[j]:.3g} at depth {at}, "
                   f"{metrics['relu_orthogonal_over_tanh_orthogonal_at_50']:.1f}× orthogonal tanh's",
                   metrics["relu_orthogonal_over_tanh_orthogonal_at_50"] >= SPREAD_FACTOR))
        found.append(_claims.Claim(
            "Pennington, Schoenholz & Ganguli 2017", "at criticality and small q*, orthogonal tanh networks keep the "
            "Jacobian's singular values near 1 at any depth; Gaussian ones spread with depth; ReLU cannot",
            checks, f"std of s² at depth {at}: orthogonal tanh {orth[j]:.3g}, Gaussian tanh {gauss[j]:.3g}, "
            f"orthogonal ReLU {relu[j]:.3g}", budget, figure="spread"))
    mean = metrics["mean_s2_tanh_xavier"]
    shallow = min(range(len(depths)), key=lambda i: depths[i])
    found.append(_claims.Claim(
        "Glorot & Bengio 2010", "with the normalized initialization (σ_w² = 1 for square tanh layers) the "
        "back-propagated gradient keeps its size through the depth (they used 5 layers; inputs in tanh's "
        "linear regime, here q_0 = q* of the critical tanh family)",
        ((f"at depth {depths[shallow]} the mean s² of J (the gradient's gain) is {mean[shallow]:.3g}, "
          "within [0.5, 2]", 0.5 <= mean[shallow] <= 2.0),),
        f"mean s² {mean[shallow]:.2g} at depth {depths[shallow]}; between {min(mean):.2g} and {max(mean):.2g} over "
        f"depths {min(depths)}–{max(depths)}", budget, figure="spread"))
    steps = metrics["steps_to_target"]
    target = config.get("target_loss", "?")
    orth_steps, gauss_steps = steps["orthogonal"], steps["gaussian"]
    faster = orth_steps is not None and (gauss_steps is None or orth_steps < gauss_steps)
    shown = {w: ("not within the budget" if s is None else f"{s} steps") for w, s in steps.items()}
    found.append(_claims.Claim(
        "Saxe et al. 2014; Pennington et al. 2017", "deep networks with orthogonal weights learn faster than "
        "Gaussian ones at the same (critical) variance",
        ((f"orthogonal reaches training loss {target} in {shown['orthogonal']}, Gaussian in {shown['gaussian']}",
          faster),),
        f"steps to loss {target}: orthogonal {shown['orthogonal']}, Gaussian {shown['gaussian']}", budget,
        figure="learning_speed"))
    return found


# ----------------------------------------------------------------------------- text

def _summary(config, metrics) -> str:
    at = metrics["compared_depth"]
    lines = []
    if at is not None:
        lines.append(f"At depth {at}, orthogonal tanh's spectrum is {metrics['spread_ratio_at_50']:.1f}× narrower "
                     "than Gaussian's (std of s²).")
    lines.append(f"  std of s² at depth {', '.join(map(str, metrics['depths']))}, width {config.width} "
                 "(theory, D → ∞):")
    for key, setting in SETTINGS.items():
        cells = ", ".join(f"{m:.2g}" + ("" if math.isnan(p) else f" ({p:.2g})") for m, p in
                          zip(metrics[f"std_s2_{key}"], metrics[f"predicted_std_s2_{key}"]))
        lines.append(f"  {setting.label:<17} {cells}")
    steps = metrics["steps_to_target"]
    shown = {w: ("not reached" if s is None else str(s)) for w, s in steps.items()}
    lines.append(f"SGD steps to loss {config.target_loss:g} ({config.train_depth} tanh layers × {config.train_width}): "
                 f"orthogonal {shown['orthogonal']}, Gaussian {shown['gaussian']}.")
    return "\n".join(lines)


def _explanation(config, metrics, points) -> str:
    tanh = points["tanh"]
    at = metrics["compared_depth"]
    ratio = "" if at is None else (f" At depth {at} the orthogonal tanh spectrum is "
                                   f"{metrics['spread_ratio_at_50']:.1f} times narrower than the Gaussian one.")
    steps = metrics["steps_to_target"]
    return f"""
<p>A deep network maps a small change of its input through the Jacobian J = ∂h_K/∂x = D_K Ω_K ⋯ D_1 Ω_1 (D_k =
diag φ'(f_k)), and the backward pass sends gradients through Jᵀ. If all singular values s of J are near 1 —
<b>dynamical isometry</b> — every direction of the signal and of the gradient survives the depth. Criticality
(χ₁ = σ_w² E[φ'²] = 1, the edge of chaos) fixes only the <i>mean</i> of s² at 1. Its <i>spread</i> depends on the
weights: free probability (Pennington, Schoenholz &amp; Ganguli 2017) gives Var(s²) = L (μ₂/μ₁² − 1 − s₁) with
μ_k = E[φ'(√q* z)^(2k)], s₁ = −1 for Gaussian and 0 for orthogonal weights.</p>
<p>Here tanh sits on the critical line at σ_b² = {config.bias_variance:g}, σ_w² = {tanh.weight_variance:.5g}, where
q* = {tanh.q_star:.3g} is small and μ₂/μ₁² = {tanh.mu2 / tanh.mu1 ** 2:.5f}: nearly linear, so orthogonal weights
give an almost exactly orthogonal J (the theory's std of s² grows only like √(L · {tanh.mu2 / tanh.mu1 ** 2 - 1:.2g})),
while Gaussian weights spread it like √L. ReLU at He's σ_w² = 2 has μ₂/μ₁² = 2 — half its units pass nothing — so
even orthogonal weights spread the spectrum like √L: ReLU networks cannot be isometric.{ratio}</p>
<p>The theory is for infinitely wide layers. At width {config.width} orthogonal tanh follows it closely; for Gaussian
weights, once the depth nears the width, a few very large singular values dominate the std of s², which then
scatters from one network to the next around the prediction — so the claims also count the share of singular
values within a factor √2 of 1, a proportion that does not scatter.
Inputs are scaled so the first layer starts at q*; {config.inputs} input(s) per network, {config.width} singular values
each, one network per depth.</p>
<p><b>Learning speed.</b> Two {config.train_depth}-layer, {config.train_width}-wide tanh networks at the same critical
point, one orthogonal and one Gaussian, trained with plain SGD (learning rate {config.lr:g}, batch {config.batch}) on
{config.train_samples} MNIST-1D signals with the same minibatches: steps until the training loss first reaches
{config.target_loss:g} (chance is ln 10 = 2.303) — orthogonal {steps['orthogonal']}, Gaussian {steps['gaussian']}
(None: not within {config.train_steps} steps). Saxe et al. (2014) proved for deep linear networks that orthogonal
initialization learns in a time independent of depth; Pennington et al. found the same for tanh near isometry.</p>
"""
