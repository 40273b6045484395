"""depth-trainability: can a 30-layer ReLU network learn? It depends on the initialization.

He et al. (2015, "Delving deep into rectifiers", Fig. 3) trained a 30-layer ReLU network:
with their initialization (σ²_Ω = 2/fan_in) it learned, with Xavier's (2/(fan_in + fan_out))
it did not move at all. This experiment repeats the comparison on MNIST-1D with SGD + momentum
0.9 as in the paper, adds σ²_Ω = 1, and asks whether Adam — which divides each parameter's
step by a running RMS of its gradient — rescues the networks that SGD cannot train.

Its second part (:mod:`.depth_trainability_residual`) goes to depth 100, where He's
initialization alone no longer suffices: a plain network, a plain one with batch norm and four
residual networks (s = 1, s = 1/√B, + batch norm, + layer norm) train for the same budget, and
the report shows which of them learn and why (He et al. 2016; the textbook's chapter 11).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...nn import losses
from ... import optim
from ...training.data import mnist1d
from ...nn.model import MLP, Sequential
from ...training.fit import TrainingDiverged, evaluate, fit
from .. import limits
from . import base
from . import depth_trainability_residual as deep

NAME = "depth-trainability"
TITLE = "Depth 30: He vs Xavier vs σ² = 1, SGD vs Adam; depth 100: plain vs residual vs normalized"
SUMMARY = ("30-layer ReLU MLPs on MNIST-1D: He trains, Xavier stalls, σ² = 1 blows up; does Adam rescue them? "
           "(He et al. 2015) Then depth 100: plain, + batch norm, residual s = 1, s = 1/√B, + batch / layer norm")
REPRODUCES = ("He et al. 2015, Fig. 3 (30-layer ReLU net: He init learns, Xavier stalls); He et al. 2016 and "
              "Prince ch. 11 (depth 100: residual networks train, plain ones do not)")
KEY_METRICS = ("final_loss_sgd_he", "final_loss_sgd_xavier", "test_accuracy_sgd_he", "test_accuracy_adam_xavier",
               "compare_final_loss_plain", "compare_final_loss_res_scaled", "compare_final_loss_res_batch",
               "compare_final_loss_res_layer")


@dataclass
class Config:
    depth: int = 30              # hidden layers (the paper's 30)
    width: int = 64              # units per hidden layer
    epochs: int = 15
    batch_size: int = 100
    train_samples: int = 4000    # a subset of MNIST-1D's 4000 training signals (all by default)
    sgd_lr: float = 0.01
    momentum: float = 0.9        # as in the paper
    adam_lr: float = 0.001
    # the depth-100 comparison (depth_trainability_residual): six networks, the same signals and minibatches
    compare_depth: int = 100     # hidden layers (the residual networks: compare_depth / 2 blocks of two)
    compare_width: int = 32
    compare_epochs: int = 4      # 160 Adam steps per network at the defaults; ~25 s for all six on one core
    compare_batch_size: int = 100
    compare_lr: float = 0.005    # Adam, the same for every network
    seed: int = 0


# Narrower, fewer signals and epochs, but the paper's depth: the claim is about 30 layers.
# (Batches of 50: with smaller ones Adam needs many more steps to lift Xavier's network off chance.)
# The depth-100 comparison keeps its depth and trains two epochs (40 steps of 100: ~6 s for the six networks).
QUICK = {"width": 32, "epochs": 10, "train_samples": 2000, "batch_size": 50, "compare_epochs": 2}

# init key -> (label, depthlab init spec)
INITS = {
    "he": ("He: σ² = 2/fan_in", "he_normal"),
    "xavier": ("Xavier: σ² = 2/(fan_in + fan_out)", "xavier_normal"),
    "sigma2_1": ("σ² = 1", 1.0),
}
# optimizer key -> (label, builder(net, config))
OPTIMIZERS = {
    "sgd": ("SGD + momentum", lambda net, c: optim.SGD(net.parameters(), lr=c.sgd_lr, momentum=c.momentum)),
    "adam": ("Adam", lambda net, c: optim.Adam(net.parameters(), lr=c.adam_lr)),
}


# the tour's run (He et al.'s depth 30, 6 trainings) needs ~1.4e11 by this count: a minute of CPU, since the
# count takes every layer at full width; ten times that is the cap
MAX_WORK = 2e12
# the depth-100 comparison's default needs ~6e10 by its count (~50 s); about twenty times that is its cap
MAX_COMPARE_WORK = 1e12


def validate(config: Config) -> None:
    for name in ("depth", "width", "epochs", "batch_size"):
        base.check_range(config, name, low=1)
    base.check_range(config, "train_samples", low=10, high=4000)
    base.check_range(config, "sgd_lr", low=0, low_open=True)
    base.check_range(config, "adam_lr", low=0, low_open=True)
    base.check_range(config, "momentum", low=0, high=0.999)
    limits.check_units(config, "depth", "width")
    limits.check_at_most(config.epochs, 10_000, "epochs")
    limits.check_steps(6 * config.epochs * -(-config.train_samples // config.batch_size),
                       "6 trainings·epochs·⌈train_samples/batch_size⌉", "epochs (or raise batch_size)")
    limits.check_product(18 * config.epochs * config.train_samples * (config.depth * config.width ** 2 + 50 * config.width),
                         MAX_WORK, "18·epochs·train_samples·depth·width²", "multiply-adds",
                         "epochs, train_samples, depth or width")
    validate_comparison(config)


def validate_comparison(config: Config) -> None:
    """The depth-100 comparison's settings: an even depth (blocks of two layers) and its caps."""
    base.check_range(config, "compare_depth", low=2)
    base.check_range(config, "compare_width", low=1)
    base.check_range(config, "compare_epochs", low=1)
    base.check_range(config, "compare_batch_size", low=2)
    base.check_range(config, "compare_lr", low=0, low_open=True)
    limits.check_at_most(config.compare_depth, 1000, "compare_depth")
    limits.check_at_most(config.compare_width, 1024, "compare_width")
    limits.check_at_most(config.compare_epochs, 10_000, "compare_epochs")
    limits.check_at_most(config.compare_lr, 10.0, "compare_lr", "Adam's step is about lr per parameter")
    if config.compare_depth % 2:
        raise ValueError(f"compare_depth must be even (the residual networks have compare_depth / 2 blocks of two "
                         f"layers), got {config.compare_depth}; try {config.compare_depth + 1}")
    if config.compare_batch_size < config.train_samples and config.train_samples % config.compare_batch_size == 1:
        raise ValueError(f"compare_batch_size = {config.compare_batch_size} leaves a last minibatch of one of the "
                         f"{config.train_samples} train_samples, and batch norm needs two or more; try "
                         f"compare_batch_size={config.compare_batch_size + 1}")
    limits.check_steps(len(deep.NETWORKS) * config.compare_epochs * -(-config.train_samples // config.compare_batch_size),
                       "6 networks·compare_epochs·⌈train_samples/compare_batch_size⌉",
                       "compare_epochs (or raise compare_batch_size)")
    limits.check_product(18 * config.compare_epochs * config.train_samples * config.compare_depth
                         * config.compare_width ** 2, MAX_COMPARE_WORK,
                         "18·compare_epochs·train_samples·compare_depth·compare_width²", "multiply-adds",
                         "compare_epochs, train_samples, compare_depth or compare_width")


def network(config: Config, init: str) -> Sequential:
    """40 → width × depth → 10 ReLU network; the same weights for both optimizers."""
    stream = list(INITS).index(init) + 1
    return MLP(40, [config.width] * config.depth, 10, activation="relu", init=INITS[init][1],
               rng=np.random.default_rng([config.seed, stream]))


def gradient_norms(net: Sequential, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """‖dL/dΩ_k‖ for every layer k at the current weights, on one batch: shape (depth + 1,)."""
    with np.errstate(over="ignore", invalid="ignore"):
        trace = net.forward(x, record=True)
        gradients = net.backward(losses.cross_entropy.grad(trace.output, y))
        net.zero_grad()
        return np.array([np.linalg.norm(g) for g in gradients.weights])


@dataclass
class Curve:
    """Training loss per epoch (index 0: before training) and where training stopped."""

    loss: list            # [L_0, L_1, ...] mean training loss per epoch
    test_accuracy: float | None
    diverged_step: int | None
    diverged_phase: str | None


def train(net: Sequential, optimizer, data, config: Config, *, tick=None) -> Curve:
    """``config.epochs`` epochs of ``dl.fit`` (one call per epoch; ``tick()`` after each, for a progress bar).

    A ``TrainingDiverged`` ends the run and is recorded, not raised.
    """
    x, y, x_test, y_test = data
    order = np.random.default_rng([config.seed, 99])
    with np.errstate(over="ignore", invalid="ignore"):
        loss = [evaluate(net, x, y, loss="cross_entropy")["loss"]]
    steps_per_epoch = -(-x.shape[0] // min(config.batch_size, x.shape[0]))
    for epoch in range(config.epochs):
        try:
            history = base.finished(fit(net, x, y, loss="cross_entropy", optimizer=optimizer, epochs=1,
                                        batch_size=config.batch_size, verbose=0, rng=order))
        except TrainingDiverged as error:
            return Curve(loss, None, epoch * steps_per_epoch + error.batch, error.phase)
        loss.append(history.history["loss"][-1])
        if tick is not None:
            tick()
    accuracy = evaluate(net, x_test, y_test, loss="cross_entropy", metrics=["accuracy"])["accuracy"]
    return Curve(loss, float(accuracy), None, None)


def run(config: Config, progress=None) -> base.Result:
    dataset = mnist1d()
    pick = np.random.default_rng([config.seed, 0]).permutation(dataset.x_train.shape[0])[:config.train_samples]
    data = (dataset.x_train[np.sort(pick)], dataset.y_train[np.sort(pick)], dataset.x_test, dataset.y_test)

    curves, norms = {}, {}
    epochs = len(INITS) * len(OPTIMIZERS) * config.epochs + len(deep.NETWORKS) * config.compare_epochs
    with base.ticks(progress, epochs, f"{NAME}: epochs") as tick:
        for init in INITS:
            norms[init] = gradient_norms(network(config, init), data[0][:config.batch_size],
                                         data[1][:config.batch_size])
            for opt_key, (opt_label, build) in OPTIMIZERS.items():
                net = network(config, init)
                curves[opt_key, init] = train(net, build(net, config), data, config, tick=tick)
        runs = deep.compare(config, data, tick=tick)

    metrics = {}
    for (opt_key, init), curve in curves.items():
        tag = f"{opt_key}_{init}"
        metrics[f"final_loss_{tag}"] = None if curve.diverged_step is not None else float(curve.loss[-1])
        metrics[f"test_accuracy_{tag}"] = curve.test_accuracy
        metrics[f"diverged_{tag}"] = curve.diverged_step is not None
    for init in INITS:
        with np.errstate(over="ignore", invalid="ignore"):
            metrics[f"grad_norm_first_layer_{init}"] = float(norms[init][0])
    metrics["chance_loss"] = float(np.log(10.0))
    metrics.update(deep.metrics(config, runs))
    rows = [{"optimizer": OPTIMIZERS[o][0], "init": INITS[i][0],
             "final training loss": "diverged" if c.diverged_step is not None else c.loss[-1],
             "test accuracy": "—" if c.test_accuracy is None else c.test_accuracy,
             "stopped": f"diverged at step {c.diverged_step} ({c.diverged_phase})" if c.diverged_step is not None
             else f"{len(c.loss) - 1} epochs"} for (o, i), c in curves.items()]
    figures = {"training_curves": _figure(config, curves, norms), "plain_vs_residual": deep.figure(config, runs)}
    tables = {"final state": rows, f"depth {config.compare_depth}: plain vs residual vs normalized": deep.table(runs)}
    return base.Result(NAME, TITLE, metrics=metrics, figures=figures, tables=tables,
                       explanation=_explanation(config, metrics, norms) + deep.explanation(config, metrics),
                       summary=_summary(config, metrics))


# ----------------------------------------------------------------------------- figure

HUGE = 100.0   # losses above this (σ² = 1's ~1e20) are drawn as markers on the top edge, with a note


def _figure(config, curves, norms):
    from .. import plot, plots

    MaxNLocator = plots.require("matplotlib.ticker", plots.FIGURES).MaxNLocator

    fig, axes = plots.figure(1, 3, width=15.0, height=4.6)
    shown = [v for c in curves.values() for v in c.loss if np.isfinite(v) and v <= HUGE]
    top = 1.06 * max([2.6, *shown])
    for ax, (opt_key, (opt_label, _)) in zip(axes[:2], OPTIMIZERS.items()):
        notes = []
        for i, (init, (label, _)) in enumerate(INITS.items()):
            curve = curves[opt_key, init]
            loss = np.array(curve.loss, dtype=float)
            epochs = np.arange(loss.size)
            off = ~(loss <= HUGE)      # non-finite or off the chart
            ax.plot(epochs[~off], loss[~off], marker=plots.marker(i), markersize=3.5, color=plots.color(i),
                    label=label)
            if curve.diverged_step is not None:
                ax.plot([epochs[-1]], [min(loss[-1], top)], "X", color=plots.color(i), markersize=9)
                notes.append((f"{label}: loss {loss[0]:.0e} at init, diverged at step {curve.diverged_step}",
                              plots.color(i)))
            elif off.any():
                ax.plot(epochs[off], np.full(off.sum(), top), linestyle="none", marker="^",
                        color=plots.color(i), markersize=6)
                notes.append((f"{label}: loss {np.nanmax(loss[off]):.0e} → {loss[-1]:.0e}, above the chart",
                              plots.color(i)))
        for j, (text, colour) in enumerate(notes):
            ax.text(0.98, 0.87 - 0.07 * j, text, transform=ax.transAxes, ha="right", fontsize=7.5, color=colour)
        ax.axhline(np.log(10.0), color="#777777", linestyle=":", linewidth=1.0, label="chance: ln 10")
        ax.set_ylim(top=top * 1.03)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        lr = config.sgd_lr if opt_key == "sgd" else config.adam_lr
        extra = f", momentum {config.momentum:g}" if opt_key == "sgd" else ""
        plots.decorate(ax, title=f"{opt_label} (lr {lr:g}{extra})", xlabel="epoch",
                       ylabel="training loss (cross-entropy)")

    with np.errstate(invalid="ignore"):
        finite_norms = {label: np.where(np.isfinite(norms[init]), norms[init], np.nan)
                        for init, (label, _) in INITS.items()}
    plot.curves(finite_norms, ax=axes[2], styles={label: {"marker": plots.marker(i), "markersize": 3}
                                                  for i, label in enumerate(finite_norms)},
                logy=True, legend=False, title="Gradient size at initialization", xlabel="layer k (0 = input layer)",
                ylabel="‖dL/dΩ_k‖ on one batch (log scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8.5)
    return fig


# ----------------------------------------------------------------------------- text

def _fmt(value, spec: str = ".3f") -> str:
    if value is None:
        return "diverged"
    return f"{value:.1e}" if abs(value) >= 1e4 else format(value, spec)


def _summary(config, metrics) -> str:
    def cell(opt_key, init):
        loss, accuracy = metrics[f"final_loss_{opt_key}_{init}"], metrics[f"test_accuracy_{opt_key}_{init}"]
        return f"{init} diverged" if loss is None else f"{init} {_fmt(loss)} (test accuracy {accuracy:.2f})"

    lines = [f"Depth {config.depth}: with SGD + momentum He reaches loss {_fmt(metrics['final_loss_sgd_he'])}, Xavier "
             f"{_fmt(metrics['final_loss_sgd_xavier'])} (chance {np.log(10):.3f}); Adam brings Xavier to "
             f"{_fmt(metrics['final_loss_adam_xavier'])}.",
             f"  Final training loss after {config.epochs} epochs on MNIST-1D, width {config.width}:"]
    for opt_key, (opt_label, _) in OPTIMIZERS.items():
        lines.append(f"  {opt_label:<15} " + ", ".join(cell(opt_key, init) for init in INITS))
    lines += ["  " + line for line in deep.summary(config, metrics)]
    return "\n".join(lines)


def _explanation(config, metrics, norms) -> str:
    he, xavier = metrics["grad_norm_first_layer_he"], metrics["grad_norm_first_layer_xavier"]
    slower = float(f"{he / xavier:.2g}") if xavier else float("inf")
    sgd = {init: _fmt(metrics[f"final_loss_sgd_{init}"]) for init in INITS}
    adam = {init: _fmt(metrics[f"final_loss_adam_{init}"]) for init in INITS}
    sigma1 = ("σ²_Ω = 1 overflows within the first steps and is stopped by depthlab's divergence check "
              "(<code>dl.TrainingDiverged</code>, marked ✕), with the weights from before the bad step kept."
              if metrics["diverged_sgd_sigma2_1"] else
              f"σ²_Ω = 1 did not overflow here, but its loss stays at {sgd['sigma2_1']}.")
    return f"""
<p>He et al. (2015) showed that the initialization decides whether a deep ReLU network can be trained at all. The
mechanism is the one of the init-variance experiment: each ReLU layer multiplies the signal's variance by
fan_in·σ²_Ω/2. With He's σ²_Ω = 2/fan_in the factor is 1 at every layer; with Xavier's 2/(fan_in + fan_out)
— 1/{config.width} for these square layers — it is ½, and after {config.depth} layers the signal is 2^({config.depth}/2) ≈
{2 ** (config.depth / 2):,.0f} times too small; with σ²_Ω = 1 the factor is {config.width // 2}, and the signal is
astronomically large.</p>
<p><b>Left — SGD with momentum, as in the paper.</b> He's network learns (loss {sgd['he']} after {config.epochs}
epochs, from ln 10 = 2.303 for guessing); Xavier's sits on the chance line: loss {sgd['xavier']}. {sigma1}</p>
<p><b>Right — why Xavier stalls.</b> The backward signal dL/df_k shrinks by the same factor as the forward one, so the
gradient of every weight matrix is tiny: here ‖dL/dΩ_0‖ is {he:.2g} for He and {xavier:.2g} for Xavier. An SGD step
is lr × gradient, so Xavier's network moves about {slower:,.0f} times slower — in practice, not at all.
σ²_Ω = 1 is the mirror image: its gradients are so large that one step wrecks the weights.</p>
<p><b>Middle — Adam.</b> Adam divides each parameter's step by the running RMS of its own gradient, so the step size
is about lr whatever the gradient's scale: the factor {slower:,.0f} cancels and Xavier's network trains too
(loss {adam['xavier']} vs He's {adam['he']}). Adam rescues the <i>vanishing</i> gradient. It does not rescue σ²_Ω = 1
({adam['sigma2_1']}): its signal is ~10^{int(config.depth * np.log10(config.width / 2) / 2)} times too large, and
steps of size lr barely dent weights of size 1; the logits stay enormous, and so does the loss. Initialization
still matters — an adaptive optimizer repairs a scale that is too small, not one that explodes.</p>
<p>Settings: MNIST-1D ({config.train_samples} training signals of 40 samples, 10 classes; accuracy on the 1000 test
signals in the table), {config.depth} hidden layers of {config.width} ReLU units, zero biases, softmax cross-entropy,
minibatches of {config.batch_size} drawn without replacement. The same initial weights are used for both optimizers.</p>
"""


# ----------------------------------------------------------------------------- claims

def claims(metrics: dict) -> list:
    """He et al. 2015 (Fig. 3): at depth 30, He's init trains with SGD and Xavier's stalls; then the
    depth-100 comparison's claims (:func:`.depth_trainability_residual.claims`)."""
    from ..claims import Claim

    config, chance = metrics.get("config", {}), metrics["chance_loss"]
    he, xavier = metrics["final_loss_sgd_he"], metrics["final_loss_sgd_xavier"]
    depth = config.get("depth")
    checks = ((f"He's SGD loss {_fmt(he)} ≤ 0.85 · ln 10 = {0.85 * chance:.2f} (it learns)",
               he is not None and he <= 0.85 * chance),
              (f"Xavier's SGD loss {_fmt(xavier)} ≥ 0.97 · ln 10 = {0.97 * chance:.2f} (it stalls)",
               xavier is not None and xavier >= 0.97 * chance),
              (f"the depth is the paper's 30 or more (here {depth})", depth is not None and depth >= 30))
    budget = (f"{depth} × {config.get('width', '?')} ReLU, {config.get('epochs', '?')} epochs of SGD + momentum on "
              f"{config.get('train_samples', '?')} MNIST-1D signals")
    paper = Claim("He et al. 2015, Fig. 3", "a 30-layer ReLU network trains from He's initialization and stalls "
                  "from Xavier's (SGD)", checks,
                  f"training loss He {_fmt(he)}, Xavier {_fmt(xavier)} (chance {chance:.3f})", budget,
                  figure="training_curves")
    return [paper, *(deep.claims(metrics) if "compare_final_loss_plain" in metrics else ())]
