"""fit-1d: seed 003's f(x) = sin(10x) + 0.75, fitted by a 3 × 24 ReLU network.

Seed 003 trains a 1 → 24 → 24 → 24 → 1 network one sample at a time: 10,000 fresh samples,
plain SGD with lr = 0.01, and for every sample a dense ``np.diag`` Jacobian per layer (a
D × D matrix to multiply by a vector — quadratic cost for a diagonal). Its "He" init draws
σ²_Ω = 2/(units of the layer itself), i.e. 2/fan_out, not He's 2/fan_in.

depthlab trains the same architecture with He's init on minibatches drawn without replacement
(``dl.fit``), Adam and a cosine learning-rate decay, and replays the seed's recipe beside it
with depthlab's exact, vectorized gradients. The learned function is piecewise linear: its
kinks are found exactly with ``dl.count_linear_regions``.

The training helpers here are shared with ``fit-2d``.
"""
from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ... import optim
from ...training.data import sine, sine_function
from ...nn.model import MLP, NonFiniteError, Sequential
from ...signal.regions import count_linear_regions, max_regions_1d
from ...training.fit import TrainingDiverged, evaluate, fit
from .. import limits
from . import base

NAME = "fit-1d"
TITLE = "Fitting sin(10x) + 0.75 with a deep ReLU network"
SUMMARY = "f(x) = sin(10x) + 0.75 with a 3×24 ReLU net: minibatch Adam vs the seed's one-sample SGD (seed 003)"
REPRODUCES = "003_49d2fa6fdb48ed73.txt (1-D fit)"
KEY_METRICS = ("test_mse", "test_mse_seed_recipe", "linear_pieces")


@dataclass
class Config:
    depth: int = 3               # hidden layers (seed: 3)
    width: int = 24              # units per hidden layer (seed: 24)
    train_samples: int = 2000
    test_samples: int = 1000
    epochs: int = 100
    batch_size: int = 32
    optimizer: Literal["adam", "sgd"] = "adam"   # sgd: SGD with momentum 0.9
    lr: float = 0.01             # initial learning rate, decayed to 0 by a cosine schedule
    seed_samples: int = 10000    # the seed's recipe: one-sample SGD steps (0: skip it)
    seed_lr: float = 0.01        # the seed's learning rate
    seed: int = 0


QUICK = {"train_samples": 1000, "epochs": 40, "seed_samples": 2000}


def validate(config: Config) -> None:
    for name in ("depth", "width", "train_samples", "test_samples", "epochs", "batch_size"):
        base.check_range(config, name, low=1)
    base.check_range(config, "test_samples", low=2)   # the relative MSE divides by their variance
    base.check_range(config, "seed_samples", low=0)
    base.check_range(config, "lr", low=0, low_open=True)
    base.check_range(config, "seed_lr", low=0, low_open=True)
    limits.check_units(config, "depth", "width")
    limits.check_samples(config, "train_samples", "test_samples", "seed_samples", "batch_size")
    limits.check_at_most(config.epochs, 100_000, "epochs")
    limits.check_steps(config.epochs * -(-config.train_samples // config.batch_size) + config.seed_samples,
                       "epochs·⌈train_samples/batch_size⌉ + seed_samples", "epochs, batch_size or seed_samples")
    limits.check_product(config.depth * config.width * max(config.train_samples, config.test_samples),
                         limits.MAX_ENTRIES, "depth·width·samples", "numbers held", "depth, width or samples")
    limits.check_product(6 * (config.epochs * config.train_samples + config.seed_samples + config.test_samples)
                         * (config.depth * config.width ** 2 + 2 * config.width), limits.MAX_WORK,
                         "6·(epochs·train_samples + seed_samples)·depth·width²", "multiply-adds",
                         "epochs, train_samples, seed_samples, depth or width")


# ----------------------------------------------------------------------------- shared training helpers

def seed_init(widths: list[int]) -> list[float]:
    """Seed 003's weight variances: σ²_Ω = 2 / (the layer's own number of units) = 2/fan_out.

    ``widths`` are [D_0, D_1, …, D_out]; returns one variance per Linear layer.
    """
    return [2.0 / fan_out for fan_out in widths[1:]]


def build_optimizer(net: Sequential, name: str, lr: float):
    """Adam, or SGD with momentum 0.9, on every parameter of ``net``."""
    table = {"adam": lambda: optim.Adam(net.parameters(), lr=lr),
             "sgd": lambda: optim.SGD(net.parameters(), lr=lr, momentum=0.9)}
    return table[name]()


@dataclass
class Training:
    """Per-epoch record of a minibatch run (x-axis: samples processed)."""

    samples: np.ndarray       # (epochs_done,) training samples processed after each epoch
    train_loss: np.ndarray    # (epochs_done,) running mean of the batch MSEs over the epoch
    test_mse: np.ndarray      # (epochs_done,) MSE on the test set after the epoch
    steps: int                # optimizer steps taken
    diverged: str | None      # TrainingDiverged's message, if training blew up


def train_minibatches(net: Sequential, data, config, *, progress=None, desc: str = "") -> Training:
    """``config.epochs`` epochs of ``dl.fit`` on minibatches, lr decayed by a cosine schedule.

    One ``fit`` call per epoch, so the progress bar advances with the epochs; the optimizer,
    the schedule and the permutation generator carry over between calls.
    """
    x, y, x_test, y_test = data
    optimizer = build_optimizer(net, config.optimizer, config.lr)
    schedule = optim.CosineAnnealingLR(optimizer, T_max=config.epochs)
    order = np.random.default_rng([config.seed, 3])
    steps_per_epoch = -(-x.shape[0] // min(config.batch_size, x.shape[0]))
    samples, train_loss, test_mse, diverged = [], [], [], None
    for epoch in base.iterate(progress, range(config.epochs), desc=desc, total=config.epochs):
        try:
            history = base.finished(fit(net, x, y, loss="mse", optimizer=optimizer, epochs=1,
                                        batch_size=config.batch_size, validation_data=(x_test, y_test),
                                        lr_scheduler=schedule, verbose=0, rng=order))
        except TrainingDiverged as error:
            diverged = str(error).split(". ")[0]
            break
        samples.append((epoch + 1) * x.shape[0])
        train_loss.append(history.history["loss"][-1])
        test_mse.append(history.history["val_loss"][-1])
    return Training(np.array(samples), np.array(train_loss), np.array(test_mse),
                    len(samples) * steps_per_epoch, diverged)


def replay_seed_recipe(net: Sequential, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                       lr: float, checkpoints: int = 10, *, progress=None, desc: str = "") -> Training:
    """Seed 003's training: one fresh sample per step, plain SGD on (f − y)², in order.

    Runs ``x.shape[0]`` steps (batch_size=1, no shuffling: the samples are fresh draws
    already), evaluating the test MSE at ``checkpoints`` evenly spaced points.
    """
    optimizer = optim.SGD(net.parameters(), lr=lr)
    bounds = np.unique(np.linspace(0, x.shape[0], min(checkpoints, x.shape[0]) + 1).astype(int))  # no empty chunk
    samples, train_loss, test_mse, diverged = [], [], [], None
    for start, stop in base.iterate(progress, list(zip(bounds[:-1], bounds[1:])), desc=desc, total=bounds.size - 1):
        try:
            history = base.finished(fit(net, x[start:stop], y[start:stop], loss="sum_squares", optimizer=optimizer,
                                        epochs=1, batch_size=1, shuffle=False, verbose=0))
        except TrainingDiverged as error:
            diverged = str(error).split(". ")[0]
            break
        samples.append(stop)
        train_loss.append(history.history["loss"][-1])
        test_mse.append(evaluate(net, x_test, y_test, loss="mse")["loss"])
    return Training(np.array(samples), np.array(train_loss), np.array(test_mse), int(samples[-1]) if samples else 0,
                    diverged)


def outputs(net: Sequential, x: np.ndarray) -> np.ndarray:
    """``net(x)``, or NaN where a diverged network's forward pass overflows: shape (N, D_out)."""
    try:
        return net(x)
    except NonFiniteError:
        return np.full((x.shape[0], net.out_features), np.nan)


def final(values: np.ndarray) -> float:
    """The last value of a curve, or NaN when training stopped before the first epoch."""
    return float(values[-1]) if values.size else float("nan")


# ----------------------------------------------------------------------------- run

def networks(config: Config) -> tuple[Sequential, Sequential | None]:
    """(depthlab's He network, the seed's fan_out network), from independent streams of the seed."""
    hidden = [config.width] * config.depth
    net = MLP(1, hidden, 1, init="he_normal", rng=np.random.default_rng([config.seed, 1]))
    seed_net = None
    if config.seed_samples:
        seed_net = MLP(1, hidden, 1, init=seed_init([1, *hidden, 1]), rng=np.random.default_rng([config.seed, 2]))
    return net, seed_net


def run(config: Config, progress=None) -> base.Result:
    x, y = sine(config.train_samples, rng=np.random.default_rng([config.seed, 0]))
    x_test, y_test = sine(config.test_samples, rng=np.random.default_rng([config.seed, 4]))
    net, seed_net = networks(config)
    clock = time.perf_counter()
    training = train_minibatches(net, (x, y, x_test, y_test), config, progress=progress, desc=f"{NAME}: depthlab")
    seconds = {"depthlab": time.perf_counter() - clock}
    recipe = None
    if seed_net is not None:
        xs, ys = sine(config.seed_samples, rng=np.random.default_rng([config.seed, 5]))
        clock = time.perf_counter()
        recipe = replay_seed_recipe(seed_net, xs, ys, x_test, y_test, config.seed_lr, progress=progress,
                                    desc=f"{NAME}: seed recipe")
        seconds["seed"] = time.perf_counter() - clock

    grid = np.linspace(-1.0, 1.0, 801).reshape(-1, 1)
    try:
        pieces = count_linear_regions(net, [-1.0], [1.0])
    except ValueError:   # a diverged net whose f_k overflow float64 on [-1, 1]: no regions to locate
        pieces = None
    metrics = {
        "test_mse": final(training.test_mse),
        "train_loss": final(training.train_loss),
        "steps": training.steps,
        "diverged": training.diverged is not None,
        "linear_pieces": None if pieces is None else int(pieces),
        "linear_pieces_bound": max_regions_1d([config.width] * config.depth),
        "grid_max_error": float(np.max(np.abs(outputs(net, grid) - sine_function(grid)))),
    }
    if recipe is not None:
        metrics.update({"test_mse_seed_recipe": final(recipe.test_mse), "steps_seed_recipe": recipe.steps,
                        "seed_recipe_diverged": recipe.diverged is not None})
    figures = {"fit": _figure(config, net, seed_net, training, recipe, (x, y))}
    return base.Result(NAME, TITLE, metrics=metrics, figures=figures,
                       explanation=_explanation(config, metrics, training, seconds),
                       summary=_summary(config, metrics, training))


def _mse(value: float, diverged: bool, steps: int) -> str:
    """'test MSE 1.2e-03', or what happened instead of a number (never a bare 'nan')."""
    if diverged and not np.isfinite(value):
        return f"diverged (its weights overflowed float64; {steps} steps completed), no test MSE"
    text = f"test MSE {value:.2e}"
    return text + f" before it diverged ({steps} steps completed)" if diverged else text


def _pieces(metrics) -> str:
    if metrics["linear_pieces"] is None:
        return "linear pieces not countable (the diverged network's f_k overflow float64)"
    return f"{metrics['linear_pieces']} linear pieces"


# ----------------------------------------------------------------------------- figure

def _figure(config, net, seed_net, training, recipe, train_data):
    from .. import plot, plots

    fig, (left, right) = plots.figure(1, 2, width=11.5, height=4.4)
    plot.fitted_function(net, target=sine_function, data=train_data, ax=left,
                         label=f"depthlab ({config.optimizer}, minibatches)",
                         target_label="true f(x) = sin(10x) + 0.75",
                         title="True function and what the networks learned")
    if seed_net is not None:
        plot.fitted_function(seed_net, kinks=False, ax=left, color=plots.color(1), linestyle="--",
                             label="seed's recipe (one sample per step, SGD)")
    left.set_ylim(-0.67, 2.3)
    left.legend(loc="upper left", fontsize=7.3, ncol=2)

    learning_curves(right, training, recipe, test_label="test MSE")
    right.axhline(0.01, color="black", linestyle=":", linewidth=1.0, label="target: 0.01")
    finish_learning_axes(right, training, "mean squared error", legend="upper right")
    return fig


def learning_curves(ax, training: Training, recipe: Training | None, *, scale: float = 1.0,
                    train_label: str = "depthlab: training loss", test_label: str = "test") -> None:
    """depthlab's training and test curves and the seed recipe's test curve, divided by ``scale``."""
    from .. import plot, plots

    series = {train_label: (training.samples, training.train_loss / scale),
              f"depthlab: {test_label}": (training.samples, training.test_mse / scale)}
    styles = {train_label: {"alpha": 0.55, "linewidth": 1.2}}
    if recipe is not None and recipe.samples.size:
        series[f"seed's recipe: {test_label}"] = (recipe.samples, recipe.test_mse / scale)
        styles[f"seed's recipe: {test_label}"] = {"color": plots.color(1), "linestyle": "--", "marker": "o",
                                                   "markersize": 3.5}
    styles[f"depthlab: {test_label}"] = {"color": plots.color(0)}
    styles[train_label]["color"] = plots.color(0)
    plot.curves(series, ax=ax, styles=styles, legend=False)


def finish_learning_axes(ax, training: Training, quantity: str, legend: str = "lower left") -> None:
    """Log-log learning-curve axes, or linear ones with a note when training diverged at once."""
    from .. import plots

    logs = training.samples.size > 0
    plots.decorate(ax, title="Learning curves", xlabel=f"training samples processed{' (log scale)' * logs}",
                   ylabel=f"{quantity}{' (log scale)' * logs}", logx=logs, logy=logs)
    if logs:
        ax.legend(loc=legend, fontsize=7.8)
    if training.diverged:
        plots.note(ax, "depthlab's training diverged:\n" + textwrap.fill(training.diverged, 60), loc="upper right",
                   fontsize=7)


# ----------------------------------------------------------------------------- text

def _summary(config, metrics, training) -> str:
    lines = [f"depthlab ({config.depth}×{config.width} ReLU, He, {config.optimizer}, batch {config.batch_size}, "
             f"{config.epochs} epochs): {_mse(metrics['test_mse'], metrics['diverged'], metrics['steps'])}, "
             f"{_pieces(metrics)} on [−1, 1]."]
    if "test_mse_seed_recipe" in metrics:
        lines.append(f"  seed 003's recipe ({config.seed_samples} one-sample SGD steps, lr {config.seed_lr:g}): "
                     f"{_mse(metrics['test_mse_seed_recipe'], metrics['seed_recipe_diverged'], metrics['steps_seed_recipe'])}.")
    if training.diverged:
        lines.append(f"  depthlab's training diverged: {training.diverged}.")
    return "\n".join(lines)


def _explanation(config, metrics, training, seconds) -> str:
    recipe = ""
    if "test_mse_seed_recipe" in metrics:
        recipe = f"""
<p><b>The seed's recipe</b> (dashed) trains on one fresh sample per step with plain SGD, lr = {config.seed_lr:g},
for {config.seed_samples:,} steps, and draws its weights with σ²_Ω = 2/(the layer's own width) — 2/fan_out, so
the first layer's weights (fan_in = 1) are √{config.width} ≈ {config.width ** 0.5:.0f} times smaller than He's. It ends
at a test MSE of {metrics['test_mse_seed_recipe']:.2g}. Per sample processed it starts faster — it steps after every
sample, a minibatch of {config.batch_size} steps once per {config.batch_size} samples — but one-sample gradients are
noisy, a fixed lr cannot both move fast early and settle late, and every step is a whole Python-level pass for
one number. A minibatch step is a few matrix products, so in this run depthlab processed
{training.samples[-1] if training.samples.size else 0:,} samples in {seconds['depthlab']:.1f} s while the recipe's
{config.seed_samples:,} steps took {seconds.get('seed', 0.0):.1f} s. The seed's own code is slower still: for every
sample and layer it builds the ReLU derivative as a dense D × D matrix <code>np.diag(...)</code> and multiplies by
it — D² work for what is an elementwise product (D work). depthlab replays the recipe with its own exact,
vectorized backward pass.</p>"""
    return f"""
<p>A ReLU network computes a <b>piecewise-linear</b> function: each hidden unit switches on or off at one
input, and between those kinks the network is a straight line. To follow sin(10x), which has six peaks and
troughs on [−1, 1], it must place its kinks where the curve bends. The left panel shows the
fit: depthlab's {config.depth} × {config.width} network (He init, {config.optimizer}, minibatches of
{config.batch_size} drawn without replacement, {config.epochs} epochs, lr {config.lr:g} decayed to 0 by a cosine
schedule) lies on the true curve; its test MSE is <b>{metrics['test_mse']:.2g}</b>. The ticks at the bottom are
its kinks, found exactly by <code>dl.count_linear_regions</code>: {_pieces(metrics)}, far
below the {metrics['linear_pieces_bound']:,} a {config.depth}-layer network of width {config.width} could make
in principle. A smooth curve is drawn with many short straight pieces.</p>
<p>The right panel shows the learning curves against the number of training samples processed (each one costs
one forward and one backward pass). The training loss is the running mean over an epoch, measured while the
weights change; the test MSE is measured on {config.test_samples} fresh points after each epoch. The bumps in the
middle are {config.optimizer} taking large steps; as the cosine schedule lowers the learning rate the fit settles.</p>
{recipe}
"""
