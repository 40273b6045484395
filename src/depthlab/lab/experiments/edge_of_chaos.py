"""edge-of-chaos: which tanh networks can be trained at all, over σ_w² × depth, against 6·ξ_c.

Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (2017), "Deep information propagation"
(Figs. 5–6): a random tanh network forgets how two inputs differ after about ξ_c layers
(the correlation depth scale of mean-field theory), and a network deeper than about 6·ξ_c
cannot be trained. ξ_c diverges at the edge of chaos σ_w² = σ*_w² (χ₁ = 1), so only
networks initialized near it are trainable at great depth.

This experiment trains one tanh MLP per grid point — weights N(0, σ_w²/fan_in), biases
N(0, σ_b²) — on MNIST-1D with plain SGD, as the paper did, for a fixed budget of steps,
records the training accuracy, and draws it as a heat map over (σ_w², depth) with the
theory's 6·ξ_c curve (:func:`depthlab.signal.theory.depth_scales`) over it. The grid points
run in parallel with :func:`depthlab.sweep`: one worker per core, or a Dask cluster
(``--set scheduler=tcp://host:8786``).

The budget decides how much of the paper's picture appears (its Fig. 6 shows the trainable
region filling up to 6·ξ_c as training runs longer). The tour's default (width 64, 1000 SGD
steps, five σ_w² × five depths to 100) shows it in about a minute on two cores; the README
gives a full-size command (width 100, depths to 200) and the time it took. Adam (``--set optimizer=adam
--set lr=5e-4``) trains deep networks in far fewer steps, but its per-parameter scaling hides
part of the effect (see depth-trainability, where it rescues Xavier).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ...nn import losses
from ...signal import theory
from ... import optim as _optim
from ...nn.model import MLP
from ...training.fit import evaluate
from .. import limits
from . import base

NAME = "edge-of-chaos"
TITLE = "The edge of chaos: trainable depth of tanh networks"
SUMMARY = ("training accuracy of tanh MLPs trained with SGD on MNIST-1D over σ_w² ∈ [1, 4] × depth ∈ [10, 100], "
           "with 6·ξ_c over it")
REPRODUCES = "Schoenholz et al. 2017, Figs. 5/6 (trainable depth ≈ 6·ξ_c); seeds 001/003 (deep networks, init variance)"
KEY_METRICS = ("trainable_depth_near_critical", "trainable_depth_ordered", "trainable_depth_chaotic",
               "agreement_with_6xi_c")
CHANCE = 0.1   # ten MNIST-1D classes


@dataclass
class Config:
    sigma_w2: tuple[float, ...] = (1.0, 1.375, 1.75, 2.5, 4.0)
    depths: tuple[int, ...] = (10, 20, 35, 50, 100)
    width: int = 64
    bias_variance: float = 0.05
    optimizer: str = "sgd"            # the paper's; adam is kept for comparison
    lr: float = 0.01
    steps: int = 1000
    batch: int = 64
    samples: int = 1000
    threshold: float = 0.25
    workers: int = 0
    scheduler: str | None = None      # a Dask scheduler address, e.g. tcp://10.0.0.5:8786 (default: local workers)
    seed: int = 0


# Fewer σ_w² points and steps, a larger step; the depths still reach past the ordered and
# chaotic phases' 6·ξ_c (22 and 42), so near-critical still has to train deepest.
QUICK = {"sigma_w2": (1.0, 1.75, 4.0), "depths": (10, 20, 35, 50), "steps": 400, "lr": 0.05, "samples": 500}


# the paper-scale run (width 100, depths to 200, 1200 SGD steps; README) needs ~8e12 by this count: a few
# CPU-minutes, since most cells stop early or run far below the count's width² per layer
MAX_WORK = 2e13


def validate(config: Config) -> None:
    base.check_range(config, "sigma_w2", low=0.0, low_open=True)
    base.check_range(config, "depths", low=1)
    base.check_range(config, "width", low=1)
    base.check_range(config, "bias_variance", low=0.0)
    base.check_range(config, "lr", low=0.0, low_open=True)
    base.check_range(config, "steps", low=1)
    base.check_range(config, "batch", low=1)
    base.check_range(config, "samples", low=config.batch, high=4000)
    base.check_range(config, "threshold", low=0.0, high=1.0)
    base.check_range(config, "workers", low=0)
    base.check_choices(config, "optimizer", list(_optim.OPTIMIZERS))
    if config.scheduler is not None and config.workers:
        raise ValueError(f"workers={config.workers} runs on this machine and scheduler={config.scheduler} on a Dask "
                         "cluster; give one of them")
    limits.check_units(config, "depths", "width")
    limits.check_variance(config, "sigma_w2", "bias_variance")
    limits.check_items(config, "sigma_w2", 64, "one column of the map each")
    limits.check_items(config, "depths", 64, "one row of the map each")
    limits.check_at_most(config.workers, 256, "workers")
    limits.check_at_most(config.lr, 10.0, "lr", "larger steps overflow the weights and fail the grid points")
    limits.check_steps(len(config.sigma_w2) * len(config.depths) * config.steps, "len(sigma_w2)·len(depths)·steps",
                       "sigma_w2, depths or steps")
    limits.check_product(6 * len(config.sigma_w2) * config.steps * config.batch
                         * sum(depth * config.width ** 2 + 50 * config.width for depth in config.depths),
                         MAX_WORK, "6·len(sigma_w2)·steps·batch·Σdepths·width²", "multiply-adds",
                         "sigma_w2, depths, steps, batch or width")
    for name in ("sigma_w2", "depths"):
        values = getattr(config, name)
        if len(set(values)) != len(values):
            raise ValueError(f"{name} lists a value twice: {base.format_value(values)}")


# ----------------------------------------------------------------------------- one grid point

_DATA: dict = {}


def _training_set(samples: int):
    """The first ``samples`` MNIST-1D training examples, float32 (cached per process)."""
    if "mnist1d" not in _DATA:
        from ...training.data import mnist1d

        _DATA["mnist1d"] = mnist1d(dtype="float32")
    data = _DATA["mnist1d"]
    return data.x_train[:samples], data.y_train[:samples]


def train_point(sigma_w2: float, depth: int, *, width: int, bias_variance: float, optimizer: str, lr: float,
                steps: int, batch: int, samples: int, seed: int) -> dict:
    """Train one tanh MLP 40 → width × depth → 10 and return its training accuracy and loss.

    Weights Ω_k ~ N(0, σ_w²/fan_in), biases β_k ~ N(0, σ_b²); ``steps`` minibatch steps of
    cross-entropy on the first ``samples`` MNIST-1D training examples (float32), each batch
    drawn without replacement from ``rng``.

    Returns
    -------
    dict
        ``accuracy`` and ``loss`` on those training examples after training, and
        ``initial_loss`` before it.
    """
    x, y = _training_set(samples)
    rng = np.random.default_rng(seed)
    net = MLP(x.shape[1], [width] * depth, 10, activation="tanh",
              init={"name": "variance_scaling", "scale": sigma_w2},
              bias_init={"name": "normal", "variance": bias_variance} if bias_variance > 0 else "zeros",
              rng=rng, dtype="float32")
    initial = evaluate(net, x, y, loss="cross_entropy")["loss"]
    opt = _optim.get(optimizer, net.parameters(), lr=lr)
    loss = losses.cross_entropy
    for _ in range(steps):
        rows = rng.choice(x.shape[0], size=batch, replace=False)
        opt.zero_grad()
        trace = net.forward(x[rows], record=True)
        net.backward(loss.grad(trace.output, y[rows]))
        opt.step()
    final = evaluate(net, x, y, loss="cross_entropy", metrics=["accuracy"])
    return {"accuracy": final["accuracy"], "loss": final["loss"], "initial_loss": initial}


def point_seed(seed: int, i: int, j: int) -> int:
    """An independent seed for grid cell (σ_w² index i, depth index j)."""
    return int(np.random.SeedSequence([seed, i, j]).generate_state(1)[0])


# ----------------------------------------------------------------------------- the study

def trainable_depth(depths, accuracies, threshold: float) -> int:
    """The largest depth whose accuracy reaches ``threshold`` (0 when none does)."""
    reached = [d for d, a in zip(depths, accuracies) if a >= threshold]
    return max(reached) if reached else 0


def run(config: Config, progress=None) -> base.Result:
    from ...training.data import mnist1d
    from ..sweeps import sweep

    mnist1d()  # generate and cache the data once here, not in every worker
    sigmas, depths = list(config.sigma_w2), list(config.depths)
    points = [{"sigma_w2": s, "depth": d, "seed": point_seed(config.seed, i, j)}
              for i, s in enumerate(sigmas) for j, d in enumerate(depths)]
    fn = functools.partial(train_point, width=config.width, bias_variance=config.bias_variance,
                           optimizer=config.optimizer, lr=config.lr, steps=config.steps, batch=config.batch,
                           samples=config.samples)
    client, owned = _cluster(config.scheduler)
    try:
        records = sweep(fn, points, workers=None if client else (config.workers or None), client=client,
                        progress=progress or False, name=NAME)
    finally:
        if owned:
            client.close()
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} grid point(s) failed, first {failed[0]['point']}: {failed[0]['error']}")
    accuracy = np.array([r["metrics"]["accuracy"] for r in records]).reshape(len(sigmas), len(depths))
    loss = np.array([r["metrics"]["loss"] for r in records]).reshape(len(sigmas), len(depths))

    critical = theory.critical_weight_variance("tanh", config.bias_variance)
    six_xi_c = [6.0 * theory.depth_scales("tanh", s, config.bias_variance).xi_c for s in sigmas]
    reach = [trainable_depth(depths, accuracy[i], config.threshold) for i in range(len(sigmas))]
    near = int(np.argmin([abs(math.log(s / critical)) for s in sigmas]))
    ordered, chaotic = int(np.argmin(sigmas)), int(np.argmax(sigmas))
    predicted = np.array([[d <= bound for d in depths] for bound in six_xi_c])
    agreement = float(np.mean(predicted == (accuracy >= config.threshold)))
    deepest = int(np.argmax(depths))

    metrics = {
        "sigma_w2": sigmas, "depths": depths, "accuracy": accuracy.round(4).tolist(), "loss": loss.round(4).tolist(),
        "critical_sigma_w2": critical, "six_xi_c": [_finite(v) for v in six_xi_c], "trainable_depth": reach,
        "threshold": config.threshold, "chance": CHANCE,
        "near_critical_sigma_w2": sigmas[near],
        "trainable_depth_near_critical": reach[near], "trainable_depth_ordered": reach[ordered],
        "trainable_depth_chaotic": reach[chaotic],
        "accuracy_deepest_near_critical": float(accuracy[near, deepest]),
        "accuracy_deepest_ordered": float(accuracy[ordered, deepest]),
        "accuracy_deepest_chaotic": float(accuracy[chaotic, deepest]),
        "agreement_with_6xi_c": agreement,
        "best_accuracy": float(accuracy.max()),
    }
    rows = []
    for i, s in enumerate(sigmas):
        row = {"σ_w²": s, "6·ξ_c": _finite(six_xi_c[i]), "trainable depth": reach[i]}
        row.update({f"depth {d}": float(accuracy[i, j]) for j, d in enumerate(depths)})
        rows.append(row)
    return base.Result(NAME, TITLE, metrics=metrics,
                       figures={"trainability": _figure(config, sigmas, depths, accuracy, critical, near, ordered,
                                                        chaotic)},
                       tables={"training accuracy per σ_w² and depth": rows},
                       explanation=_explanation(config, metrics), summary=_summary(config, metrics))


def _cluster(address: str | None):
    """(client, owned) for a Dask scheduler address, (None, False) for local workers.

    An address that does not answer is the user's mistake: a :class:`base.ConfigError`.
    """
    if address is None:
        return None, False
    from ..sweeps import connect

    try:
        return connect(address)
    except (ValueError, ImportError) as error:
        raise base.ConfigError(f"scheduler={address}: {error}") from None


def claims(metrics: dict) -> list:
    """Schoenholz et al. 2017: the near-critical band trains deepest, and trainable ≈ depth ≤ 6·ξ_c."""
    from ..claims import Claim

    config = metrics.get("config", {})
    needed = ("trainable_depth_near_critical", "trainable_depth_ordered", "trainable_depth_chaotic")
    if any(key not in metrics for key in needed):   # a grid without ordered, near-critical and chaotic columns
        return []
    near, ordered, chaotic = (metrics["trainable_depth_near_critical"], metrics["trainable_depth_ordered"],
                              metrics["trainable_depth_chaotic"])
    sigmas, agreement = metrics["sigma_w2"], metrics["agreement_with_6xi_c"]
    checks = ((f"near the edge of chaos (σ_w² = {metrics['near_critical_sigma_w2']:g}) networks train to depth {near}, "
               f"deeper than ordered ({ordered}, σ_w² = {min(sigmas):g}) and chaotic ({chaotic}, σ_w² = "
               f"{max(sigmas):g}) ones", near > max(ordered, chaotic) and near >= max(metrics["trainable_depth"])),
              (f"{agreement:.0%} of the cells agree with 'trainable ⇔ depth ≤ 6·ξ_c' (needed ≥ {AGREEMENT:.0%})",
               agreement >= AGREEMENT))
    return [Claim("Schoenholz et al. 2017, Figs. 5–6", "tanh networks can be trained only to about 6·ξ_c layers; ξ_c "
                  "diverges at the edge of chaos, so networks near it train deepest", checks,
                  f"trainable depth {near} near critical, {ordered} ordered, {chaotic} chaotic; {agreement:.0%} "
                  "agree with 6·ξ_c", budget(config), figure="trainability")]


AGREEMENT = 0.85   # the share of cells that must agree with 6·ξ_c for the claim to count as reproduced


def budget(config: dict) -> str:
    """The run's size in one line: width, steps, optimizer, data and grid."""
    depths = config.get("depths", ())
    return (f"width {config.get('width', '?')}, {config.get('steps', '?')} {config.get('optimizer', '?')} steps "
            f"(lr {config.get('lr', '?')}, batch {config.get('batch', '?')}) on {config.get('samples', '?')} MNIST-1D "
            f"examples; {len(config.get('sigma_w2', ()))} σ_w² × depths {','.join(map(str, depths))}")


def _finite(value: float):
    return float(value) if math.isfinite(value) else "inf"


def _bound_curve(sigma_range, bias_variance: float, critical: float, points: int = 20):
    """6·ξ_c on σ_w² values crowded towards the critical point, where it diverges.

    Returns (σ_w², 6·ξ_c) arrays; the chaotic side costs a 2-D integral per value, so
    ``points`` per side keeps the curve to about a second.
    """
    low, high = sigma_range
    closeness = np.union1d(np.geomspace(1e-3, 0.1, points // 2), np.linspace(0.1, 1.0, points - points // 2))
    sides = []
    if low < critical:
        sides.append(critical - (critical - low) * closeness[::-1])
    if high > critical:
        sides.append(critical + (high - critical) * closeness)
    fine = np.concatenate(sides) if sides else np.array([low, high])
    values = np.array([6.0 * theory.depth_scales("tanh", float(s), bias_variance).xi_c for s in fine])
    values[~np.isfinite(values)] = np.nan
    return fine, values


def _figure(config, sigmas, depths, accuracy, critical, near, ordered, chaotic):
    from .. import plot, plots

    fig, (ax, side) = plots.figure(1, 2, width=11.0, height=4.4, title=(
        f"tanh networks of width {config.width} on MNIST-1D: training accuracy after {config.steps} "
        f"{config.optimizer} steps ($\\sigma_b^2 = {config.bias_variance:g}$)"))
    pad = 0.5 * (sigmas[1] - sigmas[0]) if len(sigmas) > 1 else 0.25
    low = max(min(sigmas) - pad, 0.5 * min(sigmas))  # the theory needs σ_w² > 0
    bound = _bound_curve((low, max(sigmas) + pad), config.bias_variance, critical)
    plot.trainability(sigmas, depths, accuracy, bound=bound, critical=critical, chance=CHANCE, ax=ax)
    for index, label in ((ordered, "ordered"), (near, "near critical"), (chaotic, "chaotic")):
        plot.measured_and_theory(depths, accuracy[index], ax=side, label=f"$\\sigma_w^2 = {sigmas[index]:g}$ ({label})",
                                 color=plots.color({"ordered": 0, "near critical": 2, "chaotic": 1}[label]))
        side.plot(depths, accuracy[index], color=plots.color({"ordered": 0, "near critical": 2, "chaotic": 1}[label]),
                  alpha=0.5, linewidth=1.0)
    side.axhline(config.threshold, color="#555555", linestyle=":", linewidth=1.0,
                 label=f"'trainable' threshold {config.threshold:g}")
    side.axhline(CHANCE, color="#999999", linestyle="-", linewidth=0.8, label="chance")
    plots.decorate(side, title="accuracy against depth", xlabel="depth (hidden layers)",
                   ylabel="training accuracy", legend="best")
    return fig


def _summary(config, metrics) -> str:
    lines = [f"Trainable depth: {metrics['trainable_depth_near_critical']} near the edge of chaos, "
             f"{metrics['trainable_depth_ordered']} ordered, {metrics['trainable_depth_chaotic']} chaotic; "
             f"{metrics['agreement_with_6xi_c']:.0%} agree with 6·ξ_c.",
             f"  (accuracy ≥ {config.threshold:g} after {config.steps} {config.optimizer} steps, lr {config.lr:g}, "
             f"width {config.width}; critical σ_w² = {metrics['critical_sigma_w2']:.3f})"]
    for s, bound, reach in zip(config.sigma_w2, metrics["six_xi_c"], metrics["trainable_depth"]):
        shown = bound if isinstance(bound, str) else f"{bound:.0f}"
        lines.append(f"  σ_w² = {s:<6g} 6·ξ_c = {shown:>6}   trainable to depth {reach}")
    lines.append(f"Cells where 'trainable' matches 'depth ≤ 6·ξ_c': {metrics['agreement_with_6xi_c']:.0%}.")
    return "\n".join(lines)


def _explanation(config, metrics) -> str:
    return f"""
<p>Mean-field theory follows two inputs x, x' through a deep random network and asks how the correlation c_k of
their pre-activations f_k, f'_k changes with depth. Near its fixed point it approaches that point geometrically,
|c_k − c*| ∝ exp(−k/ξ_c): after a few ξ_c layers the network has <i>forgotten how its inputs differ</i>. In the
<b>ordered phase</b> (small σ_w², χ₁ &lt; 1) every input is mapped to nearly the same output; in the <b>chaotic
phase</b> (large σ_w², χ₁ &gt; 1) nearby inputs are scrambled into unrelated outputs. Between them lies the
<b>edge of chaos</b> σ_w² = {metrics['critical_sigma_w2']:.3f} (for tanh with σ_b² = {config.bias_variance:g}),
where χ₁ = 1 and ξ_c is infinite. Schoenholz et al. (2017) found that networks deeper than about <b>6·ξ_c</b>
cannot be trained — there is no signal left to learn from — and gradients, which propagate with the same depth
scale, vanish or explode beyond it.</p>
<p>The heat map trains one {config.width}-unit-wide tanh network per cell for {config.steps} {config.optimizer}
steps (batch {config.batch}, learning rate {config.lr:g}) on {config.samples} MNIST-1D examples and shows the
training accuracy; the orange curve is 6·ξ_c from <code>dl.theory.depth_scales("tanh", σ_w², σ_b²)</code>.
Trainable networks (bright) sit under the curve, and the bright region reaches deepest near the dashed line:
here the deepest trainable network is {metrics['trainable_depth_near_critical']} layers near the edge of chaos
against {metrics['trainable_depth_ordered']} at σ_w² = {min(config.sigma_w2):g} and
{metrics['trainable_depth_chaotic']} at σ_w² = {max(config.sigma_w2):g}.</p>
<p><b>What the budget does.</b> 6·ξ_c is where training becomes <i>impossible</i>; how deep a network trains
within a budget also depends on the budget. Deep networks near criticality are trainable in principle but learn
slowly with plain SGD (its step must shrink as the network deepens), so the bright region fills up towards the curve
as the steps grow — Schoenholz et al. show exactly this in their Fig. 6. With {config.steps} steps at width
{config.width} it reaches depth {metrics['trainable_depth_near_critical']} near σ*_w²; with fewer steps (the quick
run's 400) it stops near depth 50; the README's full-size run (width 100, depths to 200) shows how far it gets with
more. Adam (<code>--set optimizer=adam --set lr=5e-4</code>) trains deep networks in far fewer steps, because it
rescales each parameter's step by its gradient's size — which also hides part of the vanishing and exploding
gradients this experiment is about (the depth-trainability report shows Adam rescuing Xavier's network), so the
default is the paper's plain SGD. The theory also assumes infinitely wide layers; at width {config.width} the
statistics of one network fluctuate around it, more so the deeper it is. Every cell is an
independent run (its own seed), executed in parallel by <code>dl.sweep</code> — the same machinery as
<code>depthlab sweep edge-of-chaos --grid seed=0,1,2 …</code> for repeated studies; <code>--set
scheduler=tcp://HOST:8786</code> sends the cells to a Dask cluster.</p>
"""
