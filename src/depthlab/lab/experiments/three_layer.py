"""three-layer: seed 002's 1000 → 100 → 100 → 10 ReLU network, trained by plain gradient descent.

Seed 002 draws a batch of 128 standard-normal inputs and targets, initializes every weight
from N(0, 1), and runs 1000 steps of gradient descent on the sum of squares with lr = 1e-6.
Two slips in its hand-written backward pass: ``y_pred_gradient = y_pred - y`` drops the
factor 2 of d/df Σ(f − y)² (so its step is really lr = 5e-7 on the true gradient), and it
computes ``h_2_relu_gradient`` twice (harmless, wasted work). depthlab's gradient is exact.

This experiment runs the seed's recipe, N(0, 1) with a learning rate that survives, and He
initialization, and overlays PyTorch's loss curve from the same weights (when torch is
installed) to show that depthlab's forward, backward and SGD step are PyTorch's to rounding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...nn import losses
from ...training.data import gaussian_regression
from ...nn.model import MLP, NonFiniteError, Sequential
from ..._checks import optional
from ...optim import SGD
from .. import limits
from . import base

NAME = "three-layer"
TITLE = "A three-layer network by hand: N(0, 1) vs He, depthlab vs PyTorch"
SUMMARY = "1000 → 100 → 100 → 10 on Gaussian data by gradient descent: N(0,1) vs He init, PyTorch overlay (seed 002)"
REPRODUCES = "002_5ab48d0db534ce7e.txt"
KEY_METRICS = ("final_loss_he", "final_loss_normal", "final_loss_seed_recipe", "torch_max_rel_diff")


@dataclass
class Config:
    samples: int = 128          # N, the batch (seed: 128)
    in_features: int = 1000     # seed: data_dim
    width: int = 100            # H_1 = H_2
    out_features: int = 10      # seed: label_dim
    steps: int = 300            # gradient-descent steps (seed: 1000)
    lr_normal: float = 5e-9     # below the N(0, 1) network's stability limit (≈ 7e-9 here)
    lr_he: float = 1e-4         # He's learning rate
    seed_lr: float = 1e-6       # the seed's lr, applied (as the seed does) to half the true gradient
    torch: bool = True          # overlay PyTorch's loss curves when torch is installed
    seed: int = 0


QUICK = {"steps": 60}


def validate(config: Config) -> None:
    for name in ("samples", "in_features", "width", "out_features", "steps"):
        base.check_range(config, name, low=1)
    for name in ("lr_normal", "lr_he", "seed_lr"):
        base.check_range(config, name, low=0, low_open=True)
    limits.check_units(config, "in_features", "width", "out_features")
    limits.check_samples(config, "samples")
    limits.check_at_most(config.steps, 100_000, "steps")
    weights = config.in_features * config.width + config.width ** 2 + config.width * config.out_features
    limits.check_product(config.samples * (config.in_features + 2 * config.width + config.out_features),
                         limits.MAX_ENTRIES, "samples·(in_features + 2·width + out_features)", "numbers held",
                         "samples, in_features or width")
    # two inits, the seed's loop and the PyTorch overlay: ~4 trainings of 3 products per step
    limits.check_product(12 * config.steps * config.samples * weights, limits.MAX_WORK,
                         "12·steps·samples·weights", "multiply-adds", "steps, samples, in_features or width")


# ----------------------------------------------------------------------------- networks and data

# init name -> (label, depthlab init spec): N(0, 1) is σ²_Ω = 1 in every layer, as the seed.
INITS = {
    "normal": ("N(0, 1)", 1.0),
    "he": ("He: N(0, 2/fan_in)", "he_normal"),
}


def data(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """The seed's task: x (samples, in_features) and y (samples, out_features), both N(0, 1)."""
    return gaussian_regression(config.samples, config.in_features, config.out_features,
                               rng=np.random.default_rng([config.seed, 0]))


def network(config: Config, init: str) -> Sequential:
    """in → width → width → out ReLU network with the init's weights and zero biases."""
    stream = {"normal": 1, "he": 2}[init]
    return MLP(config.in_features, [config.width] * 2, config.out_features, activation="relu",
               init=INITS[init][1], rng=np.random.default_rng([config.seed, stream]))


# ----------------------------------------------------------------------------- training loops

@dataclass
class Run:
    """One gradient-descent run: the loss before each step, and what the network ended as."""

    losses: np.ndarray          # shape (steps_done,), sum of squares before each step
    diverged_at: int | None     # the step whose forward pass overflowed, if any
    dead_fraction: float        # share of layer-2 units inactive on every sample at the end


def descend(net: Sequential, x: np.ndarray, y: np.ndarray, lr: float, steps: int, *, gradient_scale: float = 1.0,
            train_biases: bool = True, progress=None, desc: str = "") -> Run:
    """Full-batch gradient descent on L = Σ (f − y)², the seed's loop with depthlab's parts.

    ``gradient_scale`` multiplies dL/df before backpropagation: 0.5 replays seed 002's
    ``y_pred_gradient = y_pred - y`` (the true gradient is 2 (f − y)). ``train_biases=False``
    leaves the (zero) biases alone, which makes the network the seed's bias-free one.
    """
    params = net.parameters() if train_biases else [linear.weight for linear in net.linears]
    optimizer = SGD(params, lr=lr)
    values, diverged_at = [], None
    for step in base.iterate(progress, range(steps), desc=desc, total=steps):
        optimizer.zero_grad()
        try:
            trace = net.forward(x, record=True)
        except NonFiniteError:
            diverged_at = step
            break
        with np.errstate(over="ignore", invalid="ignore"):
            value, grad = losses.sum_squares.value_and_grad(trace.output, y)
        values.append(value)
        if not math.isfinite(value):
            diverged_at = step
            break
        with np.errstate(over="ignore", invalid="ignore"):   # a blow-up shows in the next forward pass
            net.backward(grad * gradient_scale if gradient_scale != 1.0 else grad)
            optimizer.step()
    dead = float("nan")
    if diverged_at is None:
        h2 = net.forward(x, record=True).activations[2]
        dead = float(np.mean(~np.any(h2 > 0, axis=0)))
    return Run(np.array(values), diverged_at, dead)


def torch_descend(net: Sequential, x: np.ndarray, y: np.ndarray, lr: float, steps: int, *, progress=None,
                  desc: str = "") -> np.ndarray | None:
    """The same run in PyTorch (float64, ``MSELoss(reduction="sum")``, ``torch.optim.SGD``).

    Returns the loss before each step, or None when torch is not installed. Call it with the
    network *before* depthlab trains it: it copies the initial weights.
    """
    torch = optional("torch")
    if torch is None:
        return None
    from ...nn.interop import to_torch

    model = to_torch(net)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    criterion = torch.nn.MSELoss(reduction="sum")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    values = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # one thread: deterministic sums, and no spinning when cores are shared
    try:
        for _ in base.iterate(progress, range(steps), desc=desc, total=steps):
            optimizer.zero_grad()
            loss = criterion(model(xt), yt)
            value = loss.item()
            values.append(value)
            if not math.isfinite(value):
                break
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return np.array(values)


# ----------------------------------------------------------------------------- scale at initialization

def scales(net: Sequential, x: np.ndarray, y: np.ndarray) -> dict:
    """What decides the learning rate, measured on the untrained network.

    Returns the RMS of h_0 … h_2 and of the output, the loss, the gradient norm, each layer's
    relative step size ‖∇Ω_k‖/‖Ω_k‖ per unit of lr, and the gradient-descent stability limit
    of the last layer: L is quadratic in (Ω_2, β_2) with curvature 2·λ_max(ĥᵀĥ), ĥ = [h_2, 1],
    so a step larger than lr_max = 1/λ_max(ĥᵀĥ) overshoots and grows.
    """
    trace = net.forward(x, record=True)
    value, grad = losses.sum_squares.value_and_grad(trace.output, y)
    net.zero_grad()
    gradients = net.backward(grad)
    net.zero_grad()
    rms = [float(np.sqrt(np.mean(h ** 2))) for h in trace.activations] + [float(np.sqrt(np.mean(trace.output ** 2)))]
    augmented = np.hstack([trace.activations[-1], np.ones((x.shape[0], 1))])
    top = float(np.linalg.eigvalsh(augmented.T @ augmented)[-1])
    norm = math.sqrt(sum(float(np.sum(g ** 2)) for g in gradients.weights + gradients.biases))
    relative = [float(np.linalg.norm(g) / np.linalg.norm(linear.weight.data))
                for g, linear in zip(gradients.weights, net.linears)]
    return {"rms": rms, "loss": value, "grad_norm": norm, "relative_grad": relative, "lr_max": 1.0 / top}


# ----------------------------------------------------------------------------- run

def run(config: Config, progress=None) -> base.Result:
    x, y = data(config)
    mean_loss = float(np.sum((y - y.mean(axis=0)) ** 2))   # a dead network's best: predict the mean of y
    nets = {init: network(config, init) for init in INITS}
    at_init = {init: scales(net, x, y) for init, net in nets.items()}

    torch_curves = {}
    if config.torch:
        for init, lr in (("normal", config.lr_normal), ("he", config.lr_he)):
            curve = torch_descend(nets[init], x, y, lr, config.steps, progress=progress, desc=f"{NAME}: PyTorch {init}")
            if curve is None:
                break
            torch_curves[init] = curve

    seed_net = nets["normal"].copy()
    runs = {
        "normal": descend(nets["normal"], x, y, config.lr_normal, config.steps, progress=progress,
                          desc=f"{NAME}: N(0,1)"),
        "he": descend(nets["he"], x, y, config.lr_he, config.steps, progress=progress, desc=f"{NAME}: He"),
        "seed_recipe": descend(seed_net, x, y, config.seed_lr, config.steps, gradient_scale=0.5,
                               train_biases=False, progress=progress, desc=f"{NAME}: seed recipe"),
    }

    metrics = _metrics(config, runs, at_init, torch_curves, mean_loss)
    tables = _tables(config, at_init)
    figures = {"loss_curves": _loss_figure(config, runs, at_init, mean_loss)}
    if torch_curves:
        figures["pytorch_overlay"] = _overlay_figure(config, runs, torch_curves)
    return base.Result(NAME, TITLE, metrics=metrics, figures=figures, tables=tables,
                       explanation=_explanation(config, metrics, at_init, runs, bool(torch_curves)),
                       summary=_summary(config, metrics))


def _final(run_: Run) -> float:
    return float(run_.losses[-1]) if run_.diverged_at is None and run_.losses.size else float("inf")


def relative_difference(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """|L_depthlab − L_torch| / |L_torch| step by step (over the steps both completed)."""
    n = min(ours.size, theirs.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(ours[:n] - theirs[:n]) / np.abs(theirs[:n])


def power_of_ten_above(value: float) -> float:
    """The smallest power of ten ≥ value (rounding noise reported as a stable bound)."""
    if value <= 0:
        return 0.0
    return float(10.0 ** math.ceil(math.log10(value)))


def _metrics(config, runs, at_init, torch_curves, mean_loss) -> dict:
    metrics = {
        "initial_loss_normal": at_init["normal"]["loss"],
        "initial_loss_he": at_init["he"]["loss"],
        "final_loss_normal": _final(runs["normal"]),
        "final_loss_he": _final(runs["he"]),
        "final_loss_seed_recipe": _final(runs["seed_recipe"]),
        "seed_recipe_dead_fraction": runs["seed_recipe"].dead_fraction,
        "seed_recipe_diverged": runs["seed_recipe"].diverged_at is not None,
        "mean_predictor_loss": mean_loss,
        "output_rms_normal": at_init["normal"]["rms"][-1],
        "output_rms_he": at_init["he"]["rms"][-1],
        "lr_max_normal": at_init["normal"]["lr_max"],
        "lr_max_he": at_init["he"]["lr_max"],
        "he_beats_normal": _final(runs["he"]) < _final(runs["normal"]),
        "steps": config.steps,
    }
    if torch_curves:
        worst = 0.0
        for init, curve in torch_curves.items():
            difference = relative_difference(runs[init].losses, curve)
            worst = max(worst, float(np.nanmax(difference)))
            metrics[f"torch_steps_compared_{init}"] = int(difference.size)
        metrics["torch_max_rel_diff"] = power_of_ten_above(worst)
        metrics["torch_overlay"] = "done"
    else:
        metrics["torch_overlay"] = "skipped: torch is not installed" if config.torch else "skipped: torch=false"
    return metrics


def _tables(config, at_init) -> dict:
    rows = []
    for init, (label, _) in INITS.items():
        s = at_init[init]
        rows.append({
            "init": label,
            "RMS h_1": s["rms"][1], "RMS h_2": s["rms"][2], "RMS output": s["rms"][-1],
            "loss at init": s["loss"], "‖∇L‖": s["grad_norm"],
            "‖∇Ω_0‖/‖Ω_0‖": s["relative_grad"][0], "‖∇Ω_2‖/‖Ω_2‖": s["relative_grad"][2],
            "last-layer lr limit 1/λ_max(ĥᵀĥ)": s["lr_max"],
            "lr used": config.lr_normal if init == "normal" else config.lr_he,
        })
    return {"scale at initialization (what sets the learning rate)": rows}


# ----------------------------------------------------------------------------- figures

def _loss_figure(config, runs, at_init, mean_loss):
    from .. import plot, plots

    fig, (left, right) = plots.figure(1, 2, width=11.0, height=4.3)
    styles = [
        ("he", f"He, lr = {config.lr_he:g}", plots.color(0), "-"),
        ("normal", f"N(0, 1), lr = {config.lr_normal:g}", plots.color(1), "-"),
        ("seed_recipe", f"seed 002's recipe: N(0, 1), lr = {config.seed_lr:g} on ½·gradient", "#777777", "--"),
    ]
    for key, label, colour, line in styles:
        curve = runs[key].losses
        with np.errstate(divide="ignore", invalid="ignore"):
            left.plot(np.arange(curve.size), np.where(curve > 0, curve, np.nan), line, color=colour, label=label)
        if runs[key].diverged_at is not None:
            left.plot([runs[key].diverged_at - 1], [curve[-1]], "x", color=colour, markersize=8)
    left.axhline(mean_loss, color="black", linestyle=":", linewidth=1.0,
                 label=f"predicting the mean of y: Σ(y − ȳ)² = {mean_loss:.0f}")
    recipe = runs["seed_recipe"].losses
    ceiling = 30 * max(runs["normal"].losses[0], runs["he"].losses[0])
    left.set_yscale("log")
    finite = np.concatenate([runs[key].losses for key in runs] + [[mean_loss]])
    finite = finite[np.isfinite(finite) & (finite > 0)]
    left.set_ylim(bottom=float(finite.min()) / 300)   # room for the legend below the curves
    if recipe.size and np.nanmax(recipe) > ceiling:   # the blow-up would squash every other curve
        peak = int(np.nanargmax(recipe))
        left.set_ylim(top=ceiling)
        left.annotate(f"seed recipe peaks at {recipe[peak]:.0e} (step {peak})", xy=(peak, ceiling),
                      xytext=(0.12, 0.93), textcoords="axes fraction", fontsize=7.5, color="#555555",
                      arrowprops={"arrowstyle": "->", "color": "#777777"})
    if runs["seed_recipe"].diverged_at is None and runs["seed_recipe"].dead_fraction == 1.0:
        left.annotate(f"seed recipe: every unit of h_2 dead, stuck at {recipe[-1]:.0f}", xy=(recipe.size - 1, recipe[-1]),
                      xytext=(0.97, 0.50), textcoords="axes fraction", ha="right", fontsize=7.5, color="#555555",
                      arrowprops={"arrowstyle": "->", "color": "#777777"})
    plots.decorate(left, title="Gradient descent on Σ (f − y)², full batch", xlabel="step",
                   ylabel="loss (sum of squares, log scale)", logy=True)
    left.legend(loc="lower left", fontsize=7.5)

    names = ["h_0 = x", "h_1", "h_2", "output f_2"]
    plot.curves({label: at_init[init]["rms"] for init, (label, _) in INITS.items()}, ax=right,
                styles={label: {"marker": plots.marker(i), "color": plots.color(1 - i)}
                        for i, (label, _) in enumerate(INITS.values())},
                logy=True, legend="upper left", title="Signal size at initialization", xlabel="layer",
                ylabel="RMS of the layer's values (log scale)")
    right.set_xticks(np.arange(4), names)
    return fig


def _overlay_figure(config, runs, torch_curves):
    from .. import plots

    fig, (left, right) = plots.figure(1, 2, width=11.0, height=4.1)
    for i, (init, curve) in enumerate(torch_curves.items()):
        ours = runs[init].losses
        colour = plots.color(1 if init == "normal" else 0)
        label = INITS[init][0]
        left.plot(np.arange(ours.size), ours, color=colour, linewidth=2.4, alpha=0.55, label=f"depthlab, {label}")
        every = max(1, curve.size // 25)
        left.plot(np.arange(curve.size)[::every], curve[::every], linestyle="none", marker=plots.marker(i),
                  color=colour, markerfacecolor="none", label=f"PyTorch, {label}")
        difference = relative_difference(ours, curve)
        steps = np.arange(difference.size)
        shown = difference > 0     # exact agreement cannot be drawn on a log axis
        right.plot(steps[shown], difference[shown], linestyle="none", marker=plots.marker(i), markersize=2.5,
                   color=colour, label=f"{label} ({np.sum(~shown)} of {difference.size} steps exactly equal)")
    plots.decorate(left, title="Same weights, same steps: depthlab (lines) vs PyTorch (markers)", xlabel="step",
                   ylabel="loss (sum of squares, log scale)", logy=True, legend="center right")
    right.axhline(1e-8, color="black", linestyle=":", linewidth=1.0, label="1e-8 (the test's tolerance)")
    right.axhline(np.finfo(np.float64).eps, color="#777777", linestyle="--", linewidth=0.8,
                  label="float64 machine epsilon")
    plots.decorate(right, title="Relative difference |L_depthlab − L_torch| / L_torch", xlabel="step",
                   ylabel="relative difference (log scale)", logy=True, legend="center right")
    return fig


# ----------------------------------------------------------------------------- text

def _loss(value: float) -> str:
    """A final loss as text; a diverged run (recorded as inf) says so."""
    return "diverged (overflowed float64)" if value == math.inf else f"{value:.3g}"


def _summary(config, metrics) -> str:
    lines = [
        f"After {config.steps} full-batch steps: He (lr {config.lr_he:g}) loss {_loss(metrics['final_loss_he'])}; "
        f"N(0,1) (lr {config.lr_normal:g}) {_loss(metrics['final_loss_normal'])}; seed recipe "
        f"{_loss(metrics['final_loss_seed_recipe'])} (predicting the mean: {metrics['mean_predictor_loss']:.0f}).",
        f"  Output RMS at init: N(0,1) {metrics['output_rms_normal']:.3g} vs He {metrics['output_rms_he']:.3g}; "
        f"last-layer lr limit {metrics['lr_max_normal']:.2g} vs {metrics['lr_max_he']:.2g}.",
    ]
    if metrics["torch_overlay"] == "done":
        lines.append(f"  depthlab and PyTorch loss curves agree to < {metrics['torch_max_rel_diff']:.0e} relative.")
    else:
        lines.append(f"  PyTorch overlay {metrics['torch_overlay']}.")
    return "\n".join(lines)


def _explanation(config, metrics, at_init, runs, overlay: bool) -> str:
    normal, he = at_init["normal"], at_init["he"]
    D_in, D = config.in_features, config.width
    ratio = float(f'{metrics["lr_max_he"] / metrics["lr_max_normal"]:.2g}')
    dead = metrics["seed_recipe_dead_fraction"]
    recipe = (f"it overflowed at step {runs['seed_recipe'].diverged_at}" if metrics["seed_recipe_diverged"] else
              f"its loss ends at {metrics['final_loss_seed_recipe']:.3g}, and {dead:.0%} of the second layer's "
              "units are dead (zero on every sample, so they never receive a gradient again)")
    torch_text = (
        f"<p>The second figure trains the same initial weights in PyTorch (float64, <code>MSELoss(reduction='sum')</code>, "
        f"<code>torch.optim.SGD</code>). The loss curves lie on top of each other; the relative difference stays "
        f"below {metrics.get('torch_max_rel_diff', float('nan')):.0e} — rounding, not a different algorithm. That is the "
        "seed's \"NumPy vs PyTorch\" comparison made exact: depthlab's backward pass is the true gradient.</p>"
        if overlay else
        f"<p>The PyTorch overlay was {metrics['torch_overlay'].replace('skipped: ', 'skipped because ')}; install "
        "<code>depthlab[torch]</code> to see depthlab's and PyTorch's loss curves side by side.</p>")
    return f"""
<p>Seed 002 trains a {D_in} → {D} → {D} → {config.out_features} ReLU network on {config.samples} random inputs
with random targets, by full-batch gradient descent on the sum of squares L = Σ(f − y)². The targets are
noise, so there is nothing to generalize; the question is only whether gradient descent can drive the loss down
— and a network with {D_in * D + D * D + D * config.out_features:,} weights can fit {config.samples * config.out_features:,}
numbers exactly.</p>
<p><b>Why the two initializations need learning rates about {ratio:,.0f} times apart.</b> With N(0, 1) weights each ReLU layer
multiplies the signal's size by about √(fan_in/2): the right panel shows the RMS growing from 1 to
{normal['rms'][1]:.3g} (h_1), {normal['rms'][2]:.3g} (h_2) and {normal['rms'][-1]:.3g} at the output, while He's
N(0, 2/fan_in) keeps it near 1 (output {he['rms'][-1]:.2g}). The loss starts at {normal['loss']:.2g} instead of
{he['loss']:.2g}, and the gradient norm is {normal['grad_norm']:.2g} instead of {he['grad_norm']:.2g}. The last
layer gives a concrete limit: L is a quadratic in (Ω_2, β_2) with curvature 2·λ_max(ĥᵀĥ), ĥ = [h_2, 1], and
gradient descent on a quadratic only converges if lr &lt; 2/curvature = 1/λ_max(ĥᵀĥ). The whole network's curvature
is at least as large, so a stable step at initialization must stay below
{metrics['lr_max_normal']:.2g} for N(0, 1) and {metrics['lr_max_he']:.2g} for He: the huge h_2 of the N(0, 1) net
(its squared size enters) forces a learning rate about {ratio:,.0f} times smaller. He's network can use a normal step
size; the N(0, 1) network must crawl. (Try <code>--set lr_normal=2e-8</code>, a few times above the limit: the
first step overshoots and the loss jumps, which shrinks h_2 and with it the curvature — a "catapult" — and
training then goes on faster. Far above the limit, as in the seed, the jump is fatal.)</p>
<p><b>What the seed's recipe does.</b> The seed uses lr = {config.seed_lr:g} but forgets the factor 2 of
dL/df = 2(f − y), so it really steps {config.seed_lr / 2:g} along the true gradient — far above the limit. (Its
backward pass also computes <code>h_2_relu_gradient</code> twice: harmless, only wasted work.) The
grey dashed curve replays that exactly, with the seed's bias-free network: the first steps overshoot, the loss
jumps by orders of magnitude, and {recipe}. Without biases a network whose last hidden layer is dead outputs 0, so
it is stuck at Σy², the loss of predicting zero; with biases the best a dead network could do is the dotted line,
the loss of predicting the mean of y. With lr = {config.lr_normal:g} the same N(0, 1) weights do learn, slowly
(final loss {metrics['final_loss_normal']:.3g}); He reaches {metrics['final_loss_he']:.3g} in the same
{config.steps} steps.</p>
{torch_text}
"""
