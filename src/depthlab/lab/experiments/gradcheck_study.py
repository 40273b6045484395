"""gradcheck: backpropagation checked against central differences, and dy/dx (seed 004, Questions 1–2).

Question 1 of seed 004 derives backpropagation's δ recursion, δ_l = σ'(z_l) ⊙ W_{l+1}ᵀ δ_{l+1};
Question 2 asks for ∂y/∂x of a network, analytically and by central differences. This
experiment checks depthlab's backward pass for every parameter tensor and for dL/dx against
central differences (:func:`depthlab.gradcheck`) for several activations, and compares the
analytic input Jacobian (``Sequential.input_jacobian``) with central differences.

The module is called ``gradcheck_study`` so it does not shadow :func:`depthlab.gradcheck`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...nn import activations, losses
from ...nn.gradient_check import check_input_jacobian, gradcheck
from ...nn.model import MLP
from .. import limits
from . import base

NAME = "gradcheck"
TITLE = "Backpropagation vs central differences"
SUMMARY = "backprop vs central differences for every parameter and dL/dx, and dy/dx analytic vs numerical (seed 004 Q1–2)"
REPRODUCES = "004_2a91226520a333bf.txt Questions 1–2"
KEY_METRICS = ("all_passed", "max_rel_error", "input_jacobian_max_rel_error", "entries_checked")


@dataclass
class Config:
    activations: tuple[str, ...] = ("sigmoid", "tanh", "relu", "gelu", "softplus")
    in_features: int = 6
    hidden: tuple[int, ...] = (16, 16, 16)
    out_features: int = 3
    batch: int = 8
    loss: str = "half_sum_squares"
    eps: float = 1e-6
    tolerance: float = 1e-6
    seed: int = 0


MAX_PARAMETERS = 20_000   # each costs two forward passes (seconds in all at this cap)
MAX_BATCH = 1_000

QUICK = {"activations": ("sigmoid", "tanh", "relu"), "hidden": (8, 8), "batch": 4}


def validate(config: Config) -> None:
    for name in ("in_features", "out_features", "batch", "hidden"):
        base.check_range(config, name, low=1)
    limits.check_units(config, "in_features", "out_features", "hidden")
    widths = [config.in_features, *config.hidden, config.out_features]
    parameters = sum(a * b + b for a, b in zip(widths, widths[1:]))
    limits.check_at_most(parameters, MAX_PARAMETERS, "the network's parameter count",
                         "central differences cost two forward passes per parameter; lower hidden, in_features "
                         "or out_features")
    limits.check_at_most(config.batch, MAX_BATCH, "batch")
    base.check_range(config, "eps", low=0, low_open=True)
    base.check_range(config, "eps", low=1e-12, high=0.1)   # float64's rounding swamps smaller steps
    base.check_range(config, "tolerance", low=0, low_open=True, high=1)   # a relative error: above 1 passes anything
    loss = losses.get(config.loss)
    if loss.name not in TARGETS:
        raise ValueError(f"loss {config.loss!r} has no targets here; choose one of {', '.join(TARGETS)}")
    if loss.name == "cross_entropy" and config.out_features < 2:
        raise ValueError(f"loss cross_entropy needs out_features >= 2 classes, got {config.out_features}")
    for name in config.activations:
        activations.get(name)


# loss name -> targets y for a batch (rng, N, D_out): what each loss accepts
TARGETS = {
    "sum_squares": lambda rng, n, d: rng.standard_normal((n, d)),
    "mse": lambda rng, n, d: rng.standard_normal((n, d)),
    "half_sum_squares": lambda rng, n, d: rng.standard_normal((n, d)),
    "cross_entropy": lambda rng, n, d: rng.integers(0, d, size=n),                     # class labels
    "binary_cross_entropy_with_logits": lambda rng, n, d: rng.integers(0, 2, size=(n, d)).astype(float),
}


def _data(config: Config, rng: np.random.Generator):
    """x ~ N(0, 1) of shape (batch, in_features) and targets of the kind ``config.loss`` takes."""
    x = rng.standard_normal((config.batch, config.in_features))
    y = TARGETS[losses.get(config.loss).name](rng, config.batch, config.out_features)
    return x, y


def check_one(config: Config, activation: str, index: int):
    """gradcheck and the input-Jacobian check of one random network; returns (result, jac errors)."""
    rng = np.random.default_rng([config.seed, index])
    net = MLP(config.in_features, list(config.hidden), config.out_features, activation=activation,
              init="xavier_normal", bias_init={"name": "normal", "std": 0.1}, rng=rng)
    x, y = _data(config, rng)
    result = gradcheck(net, x, y, loss=config.loss, eps=config.eps, tolerance=config.tolerance)
    return result, check_input_jacobian(net, x, eps=config.eps)


def dydx_curves(config: Config, activation: str, points: int = 401):
    """Question 2 on a 1 → hidden → 1 network: y(x), dy/dx analytic and by central differences."""
    net = MLP(1, list(config.hidden), 1, activation=activation, init="xavier_normal",
              bias_init={"name": "normal", "std": 0.5}, rng=np.random.default_rng([config.seed, 99]))
    x = np.linspace(-3, 3, points).reshape(-1, 1)
    analytic = net.input_jacobian(x)[:, 0, 0]
    h = config.eps
    numeric = ((net(x + h) - net(x - h)) / (2 * h))[:, 0]
    return x[:, 0], net(x)[:, 0], analytic, numeric


# ----------------------------------------------------------------------------- figures

def _error_figure(config, results):
    from .. import plots

    names = [row.name for row in next(iter(results.values()))[0].rows]
    fig, ax = plots.figure(width=min(11.0, 3.0 + 0.8 * len(names)), height=4.4)
    width = 0.8 / len(results)
    for i, (activation, (result, _)) in enumerate(results.items()):
        errors = [max(row.max_rel_error, 1e-17) for row in result.rows]
        ax.bar(np.arange(len(names)) + (i - (len(results) - 1) / 2) * width, errors, width=width,
               color=plots.color(i), label=activation)
    ax.axhline(config.tolerance, color="#b3261e", linestyle="--", linewidth=1.2,
               label=f"tolerance {config.tolerance:g}")
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right", fontsize=8)
    smallest = min(max(row.max_rel_error, 1e-17) for result, _ in results.values() for row in result.rows)
    ax.set_ylim(max(smallest / 10, 1e-17), max(1e-3, 100 * config.tolerance))
    ax.grid(axis="x", visible=False)
    plots.decorate(ax, title="Largest relative error of backprop vs central differences, per tensor",
                   ylabel=r"max $|g_{\mathrm{backprop}} - g_{\mathrm{numeric}}|$ / max $|g|$", logy=True)
    ax.legend(ncols=3, fontsize=8, loc="upper left")
    return fig


def _dydx_figure(config, curves):
    from .. import plot, plots

    fig, axes = plots.figure(2, len(curves), width=4.2 * len(curves) + 0.5, height=6.2, squeeze=False, sharex=True,
                             title=r"Question 2: $\partial y / \partial x$ of a network "
                                   + " → ".join(map(str, (1, *config.hidden, 1))))
    for c, (activation, (x, y, analytic, numeric)) in enumerate(curves.items()):
        top, bottom = axes[0][c], axes[1][c]
        plot.curves({activation: (x, y)}, ax=top, styles={activation: {"color": plots.color(c)}}, legend=False,
                    title=activation, ylabel="$y = \\mathrm{DNN}(x)$")
        plot.measured_and_theory(x[::10], numeric[::10], analytic, theory_x=x, ax=bottom, color=plots.color(c),
                                 label="central difference", xlabel="$x$", ylabel=r"$\partial y / \partial x$")
        bottom.lines[-1].set_label("analytic (input_jacobian)")
        bottom.legend(loc="best")
    return fig


# ----------------------------------------------------------------------------- run

def run(config: Config, progress=None) -> base.Result:
    results = {}
    for i, activation in enumerate(base.iterate(progress, list(config.activations), desc=NAME)):
        results[activation] = check_one(config, activation, i)
    curves = {a: dydx_curves(config, a) for a in ("tanh", "relu") if a in config.activations or len(config.activations) < 2}

    rows, metrics = [], {}
    for activation, (result, (jac_abs, jac_rel)) in results.items():
        for row in result.rows:
            rows.append({"activation": activation, "tensor": row.name, "shape": "×".join(map(str, row.shape)),
                         "entries checked": row.checked, "max abs error": row.max_abs_error,
                         "max rel error": row.max_rel_error, "passes": row.passes(config.tolerance)})
        metrics[f"max_rel_error_{activation}"] = result.max_rel_error
        metrics[f"input_jacobian_max_rel_error_{activation}"] = jac_rel
        metrics[f"near_kinks_{activation}"] = result.near_kinks
    metrics["all_passed"] = all(result.passed for result, _ in results.values())
    metrics["max_rel_error"] = max(result.max_rel_error for result, _ in results.values())
    metrics["input_jacobian_max_rel_error"] = max(rel for _, (_, rel) in results.values())
    metrics["entries_checked"] = sum(row["entries checked"] for row in rows)
    dydx_rows = []
    for activation, (x, _, analytic, numeric) in curves.items():
        error = np.abs(analytic - numeric)
        metrics[f"dydx_max_abs_error_{activation}"] = float(error.max())
        dydx_rows.append({"activation": activation, "points": x.size, "max |analytic − numeric|": float(error.max()),
                          "median |analytic − numeric|": float(np.median(error))})

    figures = {"errors": _error_figure(config, results), "dydx": _dydx_figure(config, curves)}
    notes = sorted({note for result, _ in results.values() for note in result.notes})
    tables = {"backprop vs central differences": rows, "dy/dx on the 1-D network": dydx_rows}
    return base.Result(NAME, TITLE, metrics=metrics, figures=figures, tables=tables,
                       explanation=_explanation(config, metrics, notes), summary=_summary(config, metrics, results))


def _summary(config, metrics, results) -> str:
    verdict = "PASSED" if metrics["all_passed"] else "FAILED"
    lines = [f"gradcheck {verdict}: {metrics['entries_checked']} gradient entries, largest relative error "
             f"{metrics['max_rel_error']:.2e} (tolerance {config.tolerance:g}); input Jacobian "
             f"{metrics['input_jacobian_max_rel_error']:.2e}"]
    for activation in results:
        lines.append(f"  {activation:<10} max rel error {metrics['max_rel_error_' + activation]:.2e}   "
                     f"dy/dx {metrics['input_jacobian_max_rel_error_' + activation]:.2e}")
    return "\n".join(lines)


def _explanation(config, metrics, notes) -> str:
    hidden = " → ".join(map(str, config.hidden))
    note_html = "".join(f"<li>{note}</li>" for note in notes)
    return f"""
<p>Backpropagation computes every gradient of the loss in one backward sweep, using 004's recursion
δ_l = σ'(z_l) ⊙ W_{{l+1}}ᵀ δ_{{l+1}}, ∂E/∂W_l = δ_l a_{{l−1}}ᵀ, ∂E/∂b_l = δ_l. A central difference checks each entry
independently: ∂L/∂θ_i ≈ (L(θ + ε e_i) − L(θ − ε e_i)) / 2ε, whose error is O(ε²) from truncation plus about
u·|L|/ε from rounding (u ≈ 10⁻¹⁶ in float64). With ε = {config.eps:g} the two agree to about 10⁻⁹ when backprop is
right — a wrong index or a missing factor shows up as an error of order 1.</p>
<p>Here every entry of every weight and bias of a {config.in_features} → {hidden} → {config.out_features} network, and
every entry of dL/dx, is checked on a batch of {config.batch} samples with the loss <code>{config.loss}</code>
(004's E = ½ Σ (y − t)²), for each activation: {metrics['entries_checked']} entries in all, the largest relative error
{metrics['max_rel_error']:.1e}. The bars show, per tensor, the largest error relative to that tensor's largest
gradient; the dashed line is the tolerance {config.tolerance:g}. The sigmoid's bars are the tallest, and tallest in the
first layers: its derivative is at most 1/4, so its gradients shrink layer by layer on the way back (vanishing
gradients) while the rounding error of the central difference, about u·|L|/ε, stays the same size — a larger share of
a smaller gradient. That is the method's resolution, not an error of backprop.</p>
<p>Question 2's ∂y/∂x is a chain of the same factors, σ'(z_n) W_n ⋯ σ'(z_1) W_1 (each σ' a diagonal matrix). depthlab
computes it for a whole batch with <code>net.input_jacobian(x)</code> (reverse mode when there are fewer outputs than
inputs) and the lower panels compare it with central differences on a 1-D input. For ReLU, dy/dx is piecewise
constant — the network is piecewise linear — and jumps where a unit switches on or off; a central difference that
straddles such a kink mixes two slopes, which is the one place the two may disagree.</p>
<p>A note on 004's Question 1(b): its "forward propagation" derivation inverts the layer, dividing by the weight matrix
w^(l) and applying σ⁻¹. A matrix cannot be divided by (it is not even square in general) and σ⁻¹ is not defined for
every value, so that recursion does not exist; the forward-mode alternative propagates derivatives of z^(l) with
respect to one parameter or input (a Jacobian–vector product) from the input upward, never δ.</p>
{f'<p>Notes from the checker:</p><ul>{note_html}</ul>' if notes else ''}
"""
