"""depth-trainability's second part: plain vs residual vs normalized networks at depth 100.

He et al. (2016) trained residual networks far deeper than any plain network could be trained;
the textbook's chapter 11 says why, and what residual networks need in turn. Six networks of
the same depth D (D hidden layers of the same width; the residual ones as D/2 blocks of two)
train on the same MNIST-1D minibatches with Adam at one learning rate:

======================  ===================================================================
network                 what theory expects at initialization
======================  ===================================================================
plain                   He init keeps the forward variance, but the gradient shatters
plain + batch norm      forward normalized; E‖dL/dh‖² grows π/(π − 1) per layer toward the
                        input (Yang et al. 2019): ×10⁸ over 100 layers
residual, s = 1         the stream's variance doubles per block: ×2^(D/2)
residual, s = 1/√B      ×(1 + 1/B) per block, a bounded ×e over the B = D/2 blocks
residual + batch norm   each branch sees a normalized input; the stream grows linearly
residual + layer norm   the same, normalizing over the features instead of the batch
======================  ===================================================================

:func:`compare` trains them; :func:`metrics`, :func:`table`, :func:`figure`,
:func:`explanation`, :func:`summary` and :func:`claims` turn the runs into the report's part.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from ...nn import losses
from ...nn.layers import Linear
from ...nn.model import MLP, Sequential
from ...nn.normalization import BatchNorm
from ...nn.residual import ResMLP
from ...optim import Adam
from ...signal import residual_theory
from ...training.callbacks import LambdaCallback
from ...training.fit import TrainingDiverged, evaluate, fit
from . import base

LEARNS, STALLS = 0.85, 0.97       # a final loss ≤ 0.85 · ln 10 learned; ≥ 0.97 · ln 10 stayed at chance

# network key -> (label, residual scale given the number of blocks B (None: no skip), norm)
NETWORKS = {
    "plain": ("plain, He", None, None),
    "plain_batch": ("plain + batch norm", None, "batch"),
    "res_s1": ("residual, s = 1", lambda blocks: 1.0, None),
    "res_scaled": ("residual, s = 1/√B", lambda blocks: 1 / math.sqrt(blocks), None),
    "res_batch": ("residual + batch norm", lambda blocks: 1.0, "batch"),
    "res_layer": ("residual + layer norm", lambda blocks: 1.0, "layer"),
}
CONTROLLED = ("res_scaled", "res_batch", "res_layer")      # residual networks whose stream stays in scale


def build(config, key: str) -> Sequential:
    """The network ``key`` of :data:`NETWORKS`: 40 → width × ``compare_depth`` hidden layers → 10, He init.

    The plain ones are Linear → [BatchNorm] → ReLU per layer; the residual ones are
    ``ResMLP`` with compare_depth / 2 pre-activation blocks of two layers.
    """
    _, scale, norm = NETWORKS[key]
    rng = np.random.default_rng([config.seed, 100 + list(NETWORKS).index(key)])
    depth, width = config.compare_depth, config.compare_width
    if scale is not None:
        blocks = depth // 2
        return ResMLP(40, width, blocks, 10, norm=norm, residual_scale=scale(blocks), rng=rng)
    if norm is None:
        return MLP(40, [width] * depth, 10, activation="relu", init="he_normal", rng=rng)
    layers = []
    for k in range(depth):
        layers += [Linear(40 if k == 0 else width, width, init="he_normal", rng=rng), BatchNorm(width), "relu"]
    return Sequential(layers + [Linear(width, 10, init="he_normal", rng=rng)])


@dataclass
class Run:
    """One network's training: its state at initialization, its loss per step, how it ended."""

    init_loss: float                  # on the first minibatch, train mode
    gradient_norms: np.ndarray        # ‖dL/dΩ_k‖ of every weight matrix at initialization, input first
    step_losses: list = field(default_factory=list)       # the minibatch loss of every step (train mode)
    final_loss: float | None = None   # on the training signals, eval mode (None: diverged)
    train_accuracy: float | None = None
    test_accuracy: float | None = None
    diverged_step: int | None = None
    diverged_phase: str | None = None


def at_init(net: Sequential, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """(loss, ‖dL/dΩ_k‖ per weight matrix) on one minibatch in train mode, measured on a copy
    (so batch norm's running statistics of ``net`` stay untouched)."""
    twin = copy.deepcopy(net)
    with twin.mode(True), np.errstate(over="ignore", invalid="ignore"):
        output = twin.forward(x, record=True, allow_nonfinite=True).output
        loss = float(losses.cross_entropy.value(output, y))
        twin.backward(losses.cross_entropy.grad(output, y), allow_nonfinite=True)
        norms = np.array([np.linalg.norm(p.grad) for _, p in twin.named_parameters() if p.data.ndim == 2])
    return loss, norms


def train(net: Sequential, config, data, *, tick=None) -> Run:
    """``compare_epochs`` epochs of ``fit`` with Adam (one call per epoch, ``tick()`` after each);
    a ``TrainingDiverged`` ends the run and is recorded."""
    x, y, x_test, y_test = data
    run = Run(*at_init(net, x[:config.compare_batch_size], y[:config.compare_batch_size]))
    optimizer = Adam(net.parameters(), lr=config.compare_lr)
    order = np.random.default_rng([config.seed, 98])          # the same minibatches for every network
    record = LambdaCallback(on_batch_end=lambda batch, logs: run.step_losses.append(float(logs["loss"])))
    for _ in range(config.compare_epochs):
        try:
            base.finished(fit(net, x, y, loss="cross_entropy", optimizer=optimizer, batch_size=config.compare_batch_size,
                              verbose=0, rng=order, callbacks=[record]))
        except TrainingDiverged as error:
            run.diverged_step, run.diverged_phase = len(run.step_losses), error.phase
            return run
        if tick is not None:
            tick()
    with np.errstate(over="ignore", invalid="ignore"):
        final = evaluate(net, x, y, loss="cross_entropy", metrics=["accuracy"])
        run.test_accuracy = float(evaluate(net, x_test, y_test, loss="cross_entropy", metrics=["accuracy"])["accuracy"])
    run.final_loss, run.train_accuracy = float(final["loss"]), float(final["accuracy"])
    return run


def compare(config, data, *, tick=None) -> dict[str, Run]:
    """Every network of :data:`NETWORKS` trained on ``data`` = (x, y, x_test, y_test)."""
    return {key: train(build(config, key), config, data, tick=tick) for key in NETWORKS}


def gradient_growth(norms: np.ndarray) -> float:
    """The factor by which ‖dL/dΩ_k‖² grows per layer toward the input, over the middle half of
    the layers (a geometric mean: away from the ends, where the stem and head differ)."""
    squares = norms[1:-1] ** 2
    middle = squares[len(squares) // 4: 3 * len(squares) // 4 + 1]
    if middle.size < 2:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return float(np.exp(np.mean(np.log(middle[:-1] / middle[1:]))))


# ----------------------------------------------------------------------------- numbers

def metrics(config, runs: dict[str, Run]) -> dict:
    """``compare_*`` metrics: per network its loss at init and at the end, accuracies, divergence."""
    found = {}
    for key, run in runs.items():
        found[f"compare_init_loss_{key}"] = run.init_loss
        found[f"compare_final_loss_{key}"] = run.final_loss
        found[f"compare_train_accuracy_{key}"] = run.train_accuracy
        found[f"compare_test_accuracy_{key}"] = run.test_accuracy
        found[f"compare_diverged_{key}"] = run.diverged_step is not None
    blocks = config.compare_depth // 2
    found["compare_gradient_growth_plain_batch"] = gradient_growth(runs["plain_batch"].gradient_norms)
    found["compare_gradient_growth_plain"] = gradient_growth(runs["plain"].gradient_norms)
    found["theory_gradient_growth_batch"] = residual_theory.batchnorm_gradient_growth("relu")
    found["theory_stream_growth_s1"] = float(residual_theory.residual_variance(blocks, 1.0)[-1])
    found["theory_stream_growth_scaled"] = float(residual_theory.residual_variance(blocks, 1 / math.sqrt(blocks))[-1])
    found["compare_steps"] = max(len(run.step_losses) for run in runs.values())
    return found


def table(runs: dict[str, Run]) -> list[dict]:
    """The report's table: one row per network."""
    def cell(value, spec=".3f"):
        return "—" if value is None else (f"{value:.2e}" if abs(value) >= 1e4 else format(value, spec))

    return [{"network": NETWORKS[key][0],
             "loss at init": cell(run.init_loss),
             "final training loss": "diverged" if run.diverged_step is not None else cell(run.final_loss),
             "training accuracy": cell(run.train_accuracy),
             "test accuracy": cell(run.test_accuracy),
             "stopped": (f"diverged at step {run.diverged_step} ({run.diverged_phase})"
                         if run.diverged_step is not None else f"{len(run.step_losses)} steps")}
            for key, run in runs.items()]


# ----------------------------------------------------------------------------- figure

def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """A running mean over ``window`` steps (shorter at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, values.size + 1), window)
    return (sums[1:] - sums[np.arange(1, values.size + 1) - counts]) / counts


def figure(config, runs: dict[str, Run]):
    """Training loss per step, gradient size per layer at init, final accuracies."""
    from .. import plots

    fig, axes = plots.figure(1, 3, width=15.0, height=4.6, title=(
        f"Depth {config.compare_depth}, width {config.compare_width}: plain vs residual vs normalized "
        f"(Adam, lr {config.compare_lr:g}, the same minibatches)"))
    window = max(1, config.compare_epochs * -(-config.train_samples // config.compare_batch_size) // 20)
    top, notes = 1.4 * np.log(10.0), []          # losses above the chart (s = 1's 10⁷) get a note instead
    theory = residual_theory.batchnorm_gradient_growth("relu")
    for i, (key, run) in enumerate(runs.items()):
        label, colour = NETWORKS[key][0], plots.color(i)
        with np.errstate(over="ignore", invalid="ignore"):
            loss = np.array(run.step_losses, dtype=float)
            loss = _smooth(np.where(np.isfinite(loss), loss, np.nan), window) if loss.size else loss
            norms = np.where(np.isfinite(run.gradient_norms), run.gradient_norms, np.nan)
        axes[0].plot(np.arange(1, loss.size + 1), loss, color=colour, label=label)
        if np.isfinite(loss).any() and not np.nanmax(loss) <= top:
            notes.append((f"{label}: {loss[0]:.2g} → {loss[-1]:.2g}" + (", above the chart" if not loss[-1] <= top
                                                                       else " (starts above the chart)"), colour))
        axes[1].plot(np.arange(norms.size), norms, marker=plots.marker(i), markersize=2.5, linewidth=0.8,
                     color=colour, label=label)
        if key == "plain_batch":   # theory: ‖dL/dΩ_k‖ ∝ (π/(π − 1))^(−k/2), drawn through the middle layer
            k = np.arange(1, norms.size - 1)
            anchor = norms.size // 2
            axes[1].plot(k, norms[anchor] * theory ** ((anchor - k) / 2), linestyle="--", color="#222222",
                         linewidth=1.0, label="theory: ‖·‖² ×π/(π − 1) per layer")
    for j, (text, colour) in enumerate(notes):
        axes[0].text(0.98, 0.95 - 0.07 * j, text, transform=axes[0].transAxes, ha="right", va="top", fontsize=7.5,
                     color=colour)
    axes[0].axhline(np.log(10.0), color="#777777", linestyle=":", linewidth=1.0, label="chance: ln 10")
    axes[0].set_ylim(0, top)
    plots.decorate(axes[0], title=f"Training loss (running mean over {window} steps)", xlabel="optimizer step",
                   ylabel="minibatch cross-entropy (train mode)")
    plots.decorate(axes[1], title="Gradient size at initialization", xlabel="weight matrix k (0 = input layer)",
                   ylabel="‖dL/dΩ_k‖ on one minibatch (log scale)", logy=True)
    keys = list(runs)
    position = np.arange(len(keys))
    for offset, name, hatch in ((-0.2, "train_accuracy", None), (0.2, "test_accuracy", "//")):
        values = [getattr(runs[key], name) or 0.0 for key in keys]
        axes[2].bar(position + offset, values, width=0.4, color=[plots.color(i) for i in range(len(keys))],
                    hatch=hatch, edgecolor="white")
    axes[2].axhline(0.1, color="#777777", linestyle=":", linewidth=1.0)
    axes[2].set_xticks(position, [NETWORKS[key][0] for key in keys], rotation=30, ha="right", fontsize=8)
    plots.decorate(axes[2], title="After training (plain bars: training set, hatched: test)",
                   ylabel="accuracy (chance 0.1; diverged: 0)")
    axes[2].set_ylim(0, 1)
    handles, labels = axes[1].get_legend_handles_labels()
    chance, chance_label = axes[0].get_legend_handles_labels()
    fig.legend(handles + chance[-1:], labels + chance_label[-1:], loc="outside lower center", ncol=4, fontsize=8.5)
    return fig


# ----------------------------------------------------------------------------- text

def _fmt(value) -> str:
    if value is None:
        return "diverged"
    return f"{value:.2g}" if abs(value) >= 1e4 else f"{value:.3f}"


def summary(config, m: dict) -> list[str]:
    """Terminal lines: each network's final training loss."""
    cells = ", ".join(f"{NETWORKS[key][0]} {_fmt(m[f'compare_final_loss_{key}'])}" for key in NETWORKS)
    return [f"Depth {config.compare_depth}, {m['compare_steps']} Adam steps, final training loss (chance "
            f"{math.log(10):.3f}): {cells}."]


def _outcome(m: dict, key: str) -> str:
    """How network ``key`` ended, in words with its final loss."""
    loss, chance = m[f"compare_final_loss_{key}"], math.log(10)
    if loss is None:
        return "diverged"
    if loss >= STALLS * chance:
        return f"stays at chance or above ({_fmt(loss)})"
    return f"learns ({_fmt(loss)})" if loss <= LEARNS * chance else f"gets only to {_fmt(loss)}"


def explanation(config, m: dict) -> str:
    """The report's paragraphs on the depth-100 comparison (its verbs follow the measured losses)."""
    depth, blocks = config.compare_depth, config.compare_depth // 2
    growth, theory = m["compare_gradient_growth_plain_batch"], m["theory_gradient_growth_batch"]
    with np.errstate(over="ignore", invalid="ignore"):
        over_depth = float(np.float64(growth) ** depth)
    return f"""
<p><b>Depth {depth}: plain vs residual vs normalized.</b> Six networks of {depth} hidden layers of width
{config.compare_width} (the residual ones as {blocks} pre-activation blocks of two layers, <code>dl.ResMLP</code>) train
on the same minibatches with Adam (lr {config.compare_lr:g}) for {m['compare_steps']} steps. The table gives the final
training loss in eval mode (batch norm with its running statistics), the accuracies, and the loss at initialization
(chance: ln 10 = 2.303).</p>
<p><b>The plain network</b> keeps its forward variance with He's initialization, yet it {_outcome(m, 'plain')}. Balduzzi
et al. (2017) explain why depth alone hurts: the gradient with respect to the input turns into nearly white noise (the
<code>shattered-gradients</code> experiment), so what one minibatch asks of the weights says little about the next.
<b>With batch norm in every layer</b> it {_outcome(m, 'plain_batch')}: normalizing every layer makes the gradient grow
toward the input at initialization, here ×{growth:.4g} per layer in ‖dL/dΩ_k‖², the mean-field value for ReLU being
π/(π − 1) = {theory:.3f} (Yang et al. 2019) — over {depth} layers a factor of {over_depth:.2g} (middle panel).</p>
<p><b>A residual network needs its stream kept in scale.</b> With s = 1 and no normalization each block doubles the
stream's variance — ×2^{blocks} = {m['theory_stream_growth_s1']:.2g} over {blocks} blocks (theory,
<code>dl.theory.residual_variance</code>) — and the loss at initialization is {_fmt(m['compare_init_loss_res_s1'])};
after the budget it {_outcome(m, 'res_s1')}. Scaling every branch by 1/√{blocks} bounds the growth to
×{m['theory_stream_growth_scaled']:.3f}, and that network {_outcome(m, 'res_scaled')}; the residual network with batch
norm {_outcome(m, 'res_batch')}, the one with layer norm {_outcome(m, 'res_layer')}: their branches see a normalized
input and add a constant amount of variance each. The skip connections carry the gradient past the blocks, which is
what the plain networks lack: in the middle panel the residual networks' gradients stay within a narrow band across
all {depth} layers.</p>
<p>These are results of one budget: a plain network of this depth may still creep down with many more steps or a
tuned learning rate. The comparison is which network a fixed budget trains — the practical meaning of
"trainable". Tutorial 9 (<code>docs/tutorials/09-residual-normalization.ipynb</code>) measures the same quantities
beside their theory at a smaller scale.</p>"""


# ----------------------------------------------------------------------------- claims

def claims(metrics: dict) -> list:
    """He et al. 2016 / Prince ch. 11: residual networks with a controlled stream train at depth 100,
    the plain network does not; s = 1 alone explodes; batch norm alone explodes the gradient."""
    from ..claims import Claim

    config, chance = metrics.get("config", {}), metrics["chance_loss"]
    loss = {key: metrics[f"compare_final_loss_{key}"] for key in NETWORKS}
    depth = config.get("compare_depth")
    budget = (f"depth {depth}, width {config.get('compare_width', '?')}, {metrics['compare_steps']} Adam steps "
              f"(lr {config.get('compare_lr', '?')}) on {config.get('train_samples', '?')} MNIST-1D signals")

    def learned(key):
        return loss[key] is not None and loss[key] <= LEARNS * chance

    def stalled(key):
        return loss[key] is None or loss[key] >= STALLS * chance

    controlled = ", ".join(f"{NETWORKS[key][0]} {_fmt(loss[key])}" for key in CONTROLLED)
    residual = Claim(
        "He et al. 2016; Prince, ch. 11", f"at depth {depth} residual networks whose stream stays in scale "
        "(s = 1/√B, batch or layer norm) train where the plain network of the same depth does not",
        ((f"each learns: loss ≤ {LEARNS} · ln 10 = {LEARNS * chance:.2f} ({controlled})",
          all(learned(key) for key in CONTROLLED)),
         (f"the plain He network stalls: loss {_fmt(loss['plain'])} ≥ {STALLS} · ln 10 = {STALLS * chance:.2f}",
          stalled("plain")),
         (f"the depth is 100 or more (here {depth})", depth is not None and depth >= 100)),
        f"final training loss: plain {_fmt(loss['plain'])}, {controlled}", budget, figure="plain_vs_residual")
    init_s1, init_scaled = metrics["compare_init_loss_res_s1"], metrics["compare_init_loss_res_scaled"]
    scale = Claim(
        "Prince, ch. 11.4; De & Smith 2020", "without normalization a residual stream with s = 1 explodes "
        "(×2 per block) and does not train in the budget; s = 1/√B keeps it in scale and trainable",
        ((f"s = 1's loss at init {_fmt(init_s1)} ≥ 100 × s = 1/√B's {_fmt(init_scaled)}", init_s1 >= 100 * init_scaled),
         (f"s = 1 does not learn: loss {_fmt(loss['res_s1'])} ≥ {STALLS} · ln 10 = {STALLS * chance:.2f}",
          stalled("res_s1")),
         (f"s = 1/√B learns: {_fmt(loss['res_scaled'])} ≤ {LEARNS * chance:.2f}", learned("res_scaled"))),
        f"loss at init s = 1 {_fmt(init_s1)}, s = 1/√B {_fmt(init_scaled)}; final {_fmt(loss['res_s1'])} vs "
        f"{_fmt(loss['res_scaled'])}", budget, figure="plain_vs_residual")
    growth, theory = metrics["compare_gradient_growth_plain_batch"], metrics["theory_gradient_growth_batch"]
    batch = Claim(
        "Yang et al. 2019", "batch norm does not make a deep plain network trainable: its gradient explodes toward "
        "the input at initialization (π/(π − 1) per layer for ReLU); inside residual blocks it trains",
        ((f"the plain batch-norm network's ‖dL/dΩ_k‖² grows ×{growth:.3f} per layer toward the input (> 1.2; "
          f"theory {theory:.3f})", growth > 1.2),
         (f"it stalls: loss {_fmt(loss['plain_batch'])} ≥ {STALLS * chance:.2f}", stalled("plain_batch")),
         (f"the residual network with batch norm learns: {_fmt(loss['res_batch'])} ≤ {LEARNS * chance:.2f}",
          learned("res_batch"))),
        f"gradient growth ×{growth:.3f} per layer (theory {theory:.3f}); final loss plain + batch norm "
        f"{_fmt(loss['plain_batch'])}, residual + batch norm {_fmt(loss['res_batch'])}", budget, figure="plain_vs_residual")
    return [residual, scale, batch]
