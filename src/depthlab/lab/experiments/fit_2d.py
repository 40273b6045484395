"""fit-2d: seed 003's 2-D piecewise function, fitted by a [12, 24] ReLU network.

f(x, y) = 25x + 17.8y + 0.25xy + 15x² − 5y² − 25·[x < 0 and y < 0] on [−1, 1]²: a smooth
bowl-and-slope with a cliff of height 25 along the edges of the lower-left quadrant. Seed 003
fits it with a 2 → 12 → 24 → 1 network, one sample per step (10,000 steps, SGD, lr = 0.001),
and shows true and learned heat maps side by side.

depthlab trains the same architecture on minibatches (``dl.fit``, Adam, cosine decay), replays
the seed's recipe beside it, and adds what the seed's picture hides: the error map (where the
network fails — on the cliff) and the learning curves. Training helpers come from ``fit-1d``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ...training.data import piecewise_2d, piecewise_2d_function
from ...nn.model import MLP
from .. import limits
from . import base
from .fit_1d import final, finish_learning_axes, learning_curves, outputs, replay_seed_recipe, seed_init, train_minibatches

NAME = "fit-2d"
TITLE = "Fitting a 2-D function with a cliff"
SUMMARY = "003's 2-D piecewise function with a [12, 24] ReLU net: true, learned and error maps (seed 003)"
REPRODUCES = "003_49d2fa6fdb48ed73.txt (2-D fit)"
KEY_METRICS = ("relative_test_mse", "relative_test_mse_seed_recipe", "error_share_near_cliff")


@dataclass
class Config:
    hidden: tuple[int, ...] = (12, 24)   # hidden widths (seed: 12, 24)
    train_samples: int = 4000
    test_samples: int = 2000
    epochs: int = 100
    batch_size: int = 64
    optimizer: Literal["adam", "sgd"] = "adam"   # sgd: SGD with momentum 0.9
    lr: float = 0.01             # initial learning rate, decayed to 0 by a cosine schedule
    seed_samples: int = 10000    # the seed's recipe: one-sample SGD steps (0: skip it)
    seed_lr: float = 0.001       # the seed's learning rate
    resolution: int = 120        # heat-map grid points per axis
    seed: int = 0


QUICK = {"train_samples": 2000, "epochs": 30, "seed_samples": 2000, "resolution": 60}

CLIFF_BAND = 0.05   # points this close to the jump's edges count as "on the cliff"


def validate(config: Config) -> None:
    for name in ("hidden", "train_samples", "test_samples", "epochs", "batch_size"):
        base.check_range(config, name, low=1)
    base.check_range(config, "test_samples", low=2)   # the relative MSE divides by their variance
    base.check_range(config, "seed_samples", low=0)
    base.check_range(config, "resolution", low=2)
    base.check_range(config, "lr", low=0, low_open=True)
    base.check_range(config, "seed_lr", low=0, low_open=True)
    limits.check_units(config, "hidden")
    limits.check_at_most(len(config.hidden), limits.MAX_UNITS, "the number of hidden layers")
    limits.check_samples(config, "train_samples", "test_samples", "seed_samples", "batch_size")
    limits.check_at_most(config.epochs, 100_000, "epochs")
    limits.check_steps(config.epochs * -(-config.train_samples // config.batch_size) + config.seed_samples,
                       "epochs·⌈train_samples/batch_size⌉ + seed_samples", "epochs, batch_size or seed_samples")
    limits.check_at_most(config.resolution, 2000, "resolution", "heat-map points per axis")
    points = max(config.train_samples, config.test_samples, config.resolution ** 2)
    weights = sum(a * b for a, b in zip((2, *config.hidden), (*config.hidden, 1)))
    limits.check_product(points * sum(config.hidden), limits.MAX_ENTRIES, "samples·Σhidden", "numbers held",
                         "hidden, samples or resolution")
    limits.check_product(6 * (config.epochs * config.train_samples + config.seed_samples + 3 * points) * weights,
                         limits.MAX_WORK, "6·(epochs·train_samples + seed_samples)·weights", "multiply-adds",
                         "epochs, train_samples, seed_samples or hidden")


def grid(resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axes xs, ys of shape (resolution,) over [−1, 1] and the points (resolution², 2), row i = ys[i]."""
    xs = ys = np.linspace(-1.0, 1.0, resolution)
    gx, gy = np.meshgrid(xs, ys)
    return xs, ys, np.column_stack([gx.ravel(), gy.ravel()])


def near_cliff(points: np.ndarray, band: float = CLIFF_BAND) -> np.ndarray:
    """Boolean mask (N,): points within ``band`` of the jump's edges {x = 0, y < 0} ∪ {y = 0, x < 0}."""
    u, v = points[:, 0], points[:, 1]
    return ((np.abs(u) < band) & (v < band)) | ((np.abs(v) < band) & (u < band))


def run(config: Config, progress=None) -> base.Result:
    x, y = piecewise_2d(config.train_samples, rng=np.random.default_rng([config.seed, 0]))
    x_test, y_test = piecewise_2d(config.test_samples, rng=np.random.default_rng([config.seed, 4]))
    variance = float(np.var(y_test))
    hidden = list(config.hidden)
    net = MLP(2, hidden, 1, init="he_normal", rng=np.random.default_rng([config.seed, 1]))
    training = train_minibatches(net, (x, y, x_test, y_test), config, progress=progress, desc=f"{NAME}: depthlab")
    seed_net, recipe = None, None
    if config.seed_samples:
        seed_net = MLP(2, hidden, 1, init=seed_init([2, *hidden, 1]), rng=np.random.default_rng([config.seed, 2]))
        xs_, ys_ = piecewise_2d(config.seed_samples, rng=np.random.default_rng([config.seed, 5]))
        recipe = replay_seed_recipe(seed_net, xs_, ys_, x_test, y_test, config.seed_lr, progress=progress,
                                    desc=f"{NAME}: seed recipe")

    xs, ys, points = grid(config.resolution)
    truth = piecewise_2d_function(points)[:, 0]
    learned = outputs(net, points)[:, 0]
    squared = (learned - truth) ** 2
    cliff = near_cliff(points)
    metrics = {
        "test_mse": final(training.test_mse),
        "target_variance": variance,
        "relative_test_mse": final(training.test_mse) / variance,
        "steps": training.steps,
        "diverged": training.diverged is not None,
        "grid_max_abs_error": float(np.max(np.abs(learned - truth))),
        "error_share_near_cliff": float(squared[cliff].sum() / squared.sum()) if np.isfinite(squared).all() else float("nan"),
        "area_share_near_cliff": float(cliff.mean()),
    }
    seed_learned = None
    if recipe is not None:
        seed_learned = outputs(seed_net, points)[:, 0]
        metrics.update({"relative_test_mse_seed_recipe": final(recipe.test_mse) / variance,
                        "steps_seed_recipe": recipe.steps, "seed_recipe_diverged": recipe.diverged is not None})
    shape = (config.resolution, config.resolution)
    maps = {"truth": truth.reshape(shape), "learned": learned.reshape(shape),
            "seed": None if seed_learned is None else seed_learned.reshape(shape)}
    figures = {"heat_maps": _maps_figure(config, xs, ys, maps, metrics),
               "training": _training_figure(config, xs, ys, maps, training, recipe, variance)}
    return base.Result(NAME, TITLE, metrics=metrics, figures=figures,
                       explanation=_explanation(config, metrics), summary=_summary(config, metrics))


# ----------------------------------------------------------------------------- figures

def _maps_figure(config, xs, ys, maps, metrics):
    from .. import plot

    hidden = " → ".join(map(str, (2, *config.hidden, 1)))
    return plot.fit_maps(maps["learned"], maps["truth"], box=((xs[0], xs[-1]), (ys[0], ys[-1])),
                         label=f"Learned: {hidden} ReLU net",
                         note=f"{metrics['error_share_near_cliff']:.0%} of the squared error lies within\n"
                              f"{CLIFF_BAND} of the cliff ({metrics['area_share_near_cliff']:.0%} of the area)")


def _training_figure(config, xs, ys, maps, training, recipe, variance):
    from .. import plot, plots

    columns = 2 if maps["seed"] is not None else 1
    fig, axes = plots.figure(1, columns, width=5.4 * columns + 0.6, height=4.4, squeeze=False)
    left = axes[0][0]
    learning_curves(left, training, recipe, scale=variance, train_label="depthlab: training loss (mean over the epoch)",
                    test_label="test")
    finish_learning_axes(left, training, "MSE / Var(f)")
    if maps["seed"] is not None:
        limits = (float(maps["truth"].min()), float(maps["truth"].max()))
        plot.function_map(maps["seed"], box=((xs[0], xs[-1]), (ys[0], ys[-1])), ax=axes[0][1], limits=limits,
                          title=f"Seed's recipe: {config.seed_samples:,} one-sample SGD steps")
    return fig


# ----------------------------------------------------------------------------- text

def _summary(config, metrics) -> str:
    lines = [f"depthlab ({list(config.hidden)} ReLU, He, {config.optimizer}, {config.epochs} epochs): test MSE "
             f"{metrics['test_mse']:.3g} = {metrics['relative_test_mse']:.2e} of Var(f) = {metrics['target_variance']:.0f}; "
             f"{metrics['error_share_near_cliff']:.0%} of the error sits on the cliff."]
    if "relative_test_mse_seed_recipe" in metrics:
        lines.append(f"  seed 003's recipe ({config.seed_samples} one-sample SGD steps, lr {config.seed_lr:g}): "
                     f"{metrics['relative_test_mse_seed_recipe']:.2e} of Var(f).")
    return "\n".join(lines)


def _explanation(config, metrics) -> str:
    recipe = ""
    if "relative_test_mse_seed_recipe" in metrics:
        recipe = f"""
<p>The second figure's right panel is the seed's recipe replayed with depthlab: one fresh sample per step, plain
SGD with lr = {config.seed_lr:g}, {config.seed_samples:,} steps, σ²_Ω = 2/fan_out. Its test error is
{metrics['relative_test_mse_seed_recipe']:.2g} of the target's variance, against depthlab's
{metrics['relative_test_mse']:.2g}. (A detail of the seed's own picture: it fills <code>y_true[i, j] = f(x_i, y_j)</code>
and shows it with <code>imshow</code>, which puts the first index on the vertical axis — so its heat maps are
transposed: the axis labelled x is really y. Here every map is drawn with x horizontal.)</p>"""
    return f"""
<p>Seed 003's second target is a smooth surface with a <b>cliff</b>: in the quadrant x &lt; 0, y &lt; 0 the
function drops by 25. The left two maps share one colour scale, so equal colours mean equal values: the network
(He init, {config.optimizer}, minibatches of {config.batch_size}, {config.epochs} epochs, lr {config.lr:g} with cosine
decay) reproduces the slope, the curvature and the cliff. Its test MSE is {metrics['test_mse']:.3g}, i.e.
<b>{metrics['relative_test_mse']:.2g} of the target's variance</b> ({metrics['target_variance']:.0f}) — it explains
{1 - metrics['relative_test_mse']:.2%} of it.</p>
<p>The error map shows where the rest is: <b>{metrics['error_share_near_cliff']:.0%} of the squared error lies
within {CLIFF_BAND} of the cliff's edges</b>, a band that covers only {metrics['area_share_near_cliff']:.0%} of the
square. A ReLU network is continuous and piecewise linear, so it cannot jump: the best it can do is a steep ramp
a little wider than the gap between its kinks, and it pays for the ramp's width. More units near the edges (a
wider or deeper net) make the ramp steeper; no finite ReLU network makes it vertical.</p>
{recipe}
"""
