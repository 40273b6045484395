"""signal-theory: order, chaos and the depth scales of tanh networks (Schoenholz et al. 2017).

Mean-field theory (:mod:`depthlab.signal.theory`) follows a wide random network's pre-activation
variance q and the correlation c between two inputs layer by layer. Their fixed point q* and
the gradient growth χ₁ = σ_w² E[φ'(√q* z)²] split the (σ_w², σ_b²) plane into an ordered phase
(χ₁ < 1: inputs become alike, gradients vanish) and a chaotic one (χ₁ > 1: inputs decorrelate,
gradients explode). On the boundary, the depth scale ξ_c over which correlations survive
diverges — which is why networks initialized there train at great depth. This experiment
draws q* and χ₁ over the plane with the order-to-chaos line, ξ_c and ξ_q against σ_w² at a
fixed σ_b², and measures χ₁ on random networks to check the theory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...nn import activations
from ...signal import theory
from ...nn.model import MLP
from .. import limits
from . import base

NAME = "signal-theory"
TITLE = "Order, chaos and depth scales (mean-field theory)"
SUMMARY = "q* and χ₁ over (σ_w², σ_b²) for tanh, the order-to-chaos line, depth scale ξ_c diverging at criticality (Schoenholz et al. 2017)"
REPRODUCES = "Schoenholz, Gilmer, Ganguli & Sohl-Dickstein 2017, Deep Information Propagation (Figs. 1–2)"
KEY_METRICS = ("critical_weight_variance", "measured_critical_weight_variance", "critical_relative_difference",
               "max_finite_xi_c")


@dataclass
class Config:
    activation: str = "tanh"
    weight_variance_range: tuple[float, float] = (0.5, 4.0)
    bias_variance_range: tuple[float, float] = (0.0, 0.3)
    grid: tuple[int, int] = (45, 33)
    bias_variance: float = 0.05
    depth_scale_points: int = 20
    measure_points: int = 8
    measure_width: int = 400
    measure_depth: int = 30
    samples: int = 64
    seed: int = 0


MAX_GRID = 200

QUICK = {"grid": (12, 8), "depth_scale_points": 10, "measure_points": 6, "measure_width": 200,
         "measure_depth": 24, "samples": 32}


def validate(config: Config) -> None:
    activations.get(config.activation)
    base.check_range(config, "weight_variance_range", low=0, low_open=True)
    base.check_range(config, "bias_variance_range", low=0)
    base.check_range(config, "bias_variance", low=0)
    base.check_range(config, "grid", low=2)
    base.check_range(config, "depth_scale_points", low=3)
    base.check_range(config, "measure_points", low=2)
    base.check_range(config, "measure_width", low=2)
    base.check_range(config, "measure_depth", low=8)
    base.check_range(config, "samples", low=2)
    for name in ("weight_variance_range", "bias_variance_range"):
        low, high = getattr(config, name)
        if not low < high:
            raise ValueError(f"{name} must be (low, high) with low < high, got {low:g},{high:g}")
    limits.check_variance(config, "weight_variance_range", "bias_variance_range", "bias_variance")
    limits.check_at_most(config.grid, MAX_GRID, "grid", "each point solves for a fixed point")
    limits.check_at_most(config.depth_scale_points, MAX_GRID, "depth_scale_points")
    limits.check_at_most(config.measure_points, 50, "measure_points")
    limits.check_units(config, "measure_width", "measure_depth")
    limits.check_samples(config, "samples")
    limits.check_product(config.samples * config.measure_width * config.measure_depth, limits.MAX_ENTRIES,
                         "samples·measure_width·measure_depth", "numbers held",
                         "samples, measure_width or measure_depth")
    limits.check_product(3 * config.measure_points * config.samples * config.measure_depth * config.measure_width ** 2,
                         limits.MAX_WORK, "3·measure_points·samples·measure_depth·measure_width²", "multiply-adds",
                         "measure_points, samples, measure_depth or measure_width")
    try:   # the run is built around the edge of chaos at σ_b² = bias_variance: it must exist
        critical = theory.critical_weight_variance(config.activation, config.bias_variance)
    except ValueError as error:
        raise ValueError(f"activation {config.activation} at bias_variance = {config.bias_variance:g} has no edge of "
                         f"chaos to study ({' '.join(str(error).split())}); choose another bias_variance or "
                         "activation") from None
    low, high = config.weight_variance_range
    if not low < critical < high:
        raise ValueError(f"weight_variance_range {low:g},{high:g} must contain the critical σ_w² = {critical:.4g} "
                         f"(of {config.activation} at bias_variance = {config.bias_variance:g}), which the run "
                         "measures and draws around")


# ----------------------------------------------------------------------------- theory on a grid

def phase_grid(config: Config, progress=None):
    """q* and χ₁ at every (σ_w², σ_b²) of the grid: arrays of shape (n_b, n_w)."""
    sw = np.linspace(*config.weight_variance_range, config.grid[0])
    sb = np.linspace(*config.bias_variance_range, config.grid[1])
    q_star, chi = np.full((sb.size, sw.size), np.nan), np.full((sb.size, sw.size), np.nan)
    for i in base.iterate(progress, range(sb.size), desc=f"{NAME}: phase diagram"):
        for j, w in enumerate(sw):
            try:
                q_star[i, j] = theory.fixed_point(config.activation, w, sb[i])
                chi[i, j] = theory.chi1(config.activation, w, sb[i], q=q_star[i, j])
            except ValueError:     # no finite fixed point (an unbounded activation in its explosive phase)
                pass
    return sw, sb, q_star, chi


def critical_curve(config: Config, points: int = 30):
    """The order-to-chaos line σ_w²(σ_b²) where it exists inside the plotted range.

    The σ_b² values crowd toward the low end, where the line rises steeply (for tanh the
    critical σ_w² grows like 1 + O(√σ_b²) from σ_w² = 1 at σ_b² = 0).
    """
    low, high = config.bias_variance_range
    sb = low + (high - low) * np.linspace(0.0, 1.0, points) ** 2
    sw = np.full(sb.size, np.nan)
    for i, b in enumerate(sb):
        try:
            sw[i] = theory.critical_weight_variance(config.activation, b)
        except ValueError:
            pass
    return sw, sb


def depth_scale_curve(config: Config, critical: float, progress=None):
    """ξ_q, ξ_c and χ₁ at σ_w² values spread over the range and clustered around the critical point."""
    low, high = config.weight_variance_range
    n = config.depth_scale_points
    spread = np.linspace(low, high, max(n // 2, 2))
    offsets = np.geomspace(0.003, 0.3, max((n - spread.size) // 2, 1))
    near = np.concatenate([critical * (1 - offsets), critical * (1 + offsets)])
    sw = np.unique(np.concatenate([spread, near[(near > low) & (near < high)]]))
    rows = []
    for w in base.iterate(progress, sw, desc=f"{NAME}: depth scales"):
        scales = theory.depth_scales(config.activation, w, config.bias_variance)
        rows.append((w, scales.xi_q, scales.xi_c, scales.chi1, scales.q_star, scales.c_star))
    return np.array(rows, dtype=float)


# ----------------------------------------------------------------------------- measurement

def measure_chi1(config: Config, weight_variance: float, index: int) -> float:
    """χ₁ measured on a random network: the per-layer growth of E‖dL/dh_k‖², backward.

    A width-W, depth-L net with Var(Ω) = σ_w²/W and β ~ N(0, σ_b²) is run forward on N(0, 1)
    inputs and backward from a random N(0, 1) dL/d output; the ratio of the mean squared
    dL/dh between layers 4 and L − 1 gives the geometric mean growth per layer.
    """
    rng = np.random.default_rng([config.seed, index])
    width, depth = config.measure_width, config.measure_depth
    bias = {"name": "normal", "variance": config.bias_variance} if config.bias_variance > 0 else "zeros"
    net = MLP(width, [width] * depth, width, activation=config.activation, init=weight_variance / width,
              bias_init=bias, rng=rng)
    x = rng.standard_normal((config.samples, width))
    net.forward(x, record=True)
    grads = net.backward(rng.standard_normal((config.samples, width)))
    energy = [float(np.mean(g * g)) for g in grads.activations]       # E[(dL/dh_k)²], k = 0 .. depth
    first, last = 4, depth - 1
    return (energy[first] / energy[last]) ** (1.0 / (last - first))


def crossing(x: np.ndarray, y: np.ndarray, level: float = 1.0) -> float:
    """Where y crosses ``level``, by linear interpolation between the bracketing points (NaN if never)."""
    for k in range(len(x) - 1):
        if (y[k] - level) * (y[k + 1] - level) <= 0 and y[k] != y[k + 1]:
            return float(x[k] + (level - y[k]) * (x[k + 1] - x[k]) / (y[k + 1] - y[k]))
    return math.nan


# ----------------------------------------------------------------------------- figures

def _phase_figure(config, sw, sb, q_star, chi, line):
    from .. import plot, plots

    fig, axes = plots.figure(1, 2, width=11.5, height=4.5, squeeze=False,
                             title=f"{config.activation}: fixed point and gradient growth over the "
                                   r"$(\sigma_w^2, \sigma_b^2)$ plane")
    for ax, (quantity, values) in zip(axes[0], (("q_star", q_star), ("chi1", chi))):
        plot.phase_diagram(config.activation, sw, sb, values=values, quantity=quantity, critical_line=line,
                           bias_variance=config.bias_variance, ax=ax)
    return fig


def _depth_figure(config, curve, critical, measured_sw, measured_chi):
    from .. import plot, plots

    sw, xi_q, xi_c = curve[:, 0], curve[:, 1], curve[:, 2]
    dense = np.linspace(*config.weight_variance_range, 120)
    chi1 = np.array([theory.chi1(config.activation, w, config.bias_variance) for w in dense])
    fig, axes = plots.figure(1, 2, width=11.5, height=4.4, squeeze=False,
                             title=f"{config.activation} at $\\sigma_b^2 = {config.bias_variance:g}$: the edge of chaos "
                                   f"at $\\sigma_w^2 = {critical:.4g}$")
    left, right = axes[0]
    plot.measured_and_theory(measured_sw, measured_chi, chi1, theory_x=dense, ax=left, color=plots.color(0),
                             label=f"measured (width {config.measure_width}, depth {config.measure_depth})",
                             title=r"gradient growth per layer $\chi_1$", xlabel=r"$\sigma_w^2$",
                             ylabel=r"$\chi_1$ ($\| \partial L/\partial h \|^2$ growth per layer)")
    left.axhline(1.0, color="#888888", linewidth=0.8)
    left.axvline(critical, color="#b3261e", linestyle="--", linewidth=1.2, label="critical $\\sigma_w^2$")
    handles = left.get_legend_handles_labels()[0] + plots.theory_legend_handles(theory_label="mean-field χ₁")[1:]
    left.legend(handles=handles, loc="upper left", fontsize=8)
    plot.depth_scales(sw, xi_c, xi_q, critical=critical, measured_chi1=(measured_sw, measured_chi), ax=right)
    return fig


# ----------------------------------------------------------------------------- run

def run(config: Config, progress=None) -> base.Result:
    sw, sb, q_star, chi = phase_grid(config, progress)
    line = critical_curve(config)
    critical = theory.critical_weight_variance(config.activation, config.bias_variance)
    chi_at_critical = theory.chi1(config.activation, critical, config.bias_variance)
    curve = depth_scale_curve(config, critical, progress)

    measured_sw = np.linspace(max(config.weight_variance_range[0], 0.55 * critical),
                              min(config.weight_variance_range[1], 1.7 * critical), config.measure_points)
    measured_chi = np.array([measure_chi1(config, w, i) for i, w in
                             enumerate(base.iterate(progress, measured_sw, desc=f"{NAME}: measuring χ₁"))])
    predicted_chi = np.array([theory.chi1(config.activation, w, config.bias_variance) for w in measured_sw])
    measured_critical = crossing(measured_sw, measured_chi)

    # in the chaotic phase c* < 1 and ξ_c is finite: a c* of 1 there means the theory did not resolve c*
    unresolved = (curve[:, 3] > 1 + 1e-9) & (curve[:, 5] > 1 - 1e-9)
    curve[unresolved, 2] = np.nan
    finite_xi = curve[np.isfinite(curve[:, 2]), 2]
    metrics = {
        "critical_weight_variance": critical,
        "chi1_at_critical": chi_at_critical,
        "measured_critical_weight_variance": measured_critical,
        "critical_relative_difference": abs(measured_critical - critical) / critical,
        "chi1_measured_max_relative_error": float(np.max(np.abs(measured_chi / predicted_chi - 1))),
        "max_finite_xi_c": float(finite_xi.max()) if finite_xi.size else math.nan,
        "xi_c_far_ordered": float(curve[0, 2]),
        "xi_c_far_chaotic": float(curve[-1, 2]),
        "critical_weight_variance_at_zero_bias": float(line[0][0]) if line[1][0] == 0 else math.nan,
        "unresolved_xi_c_points": int(unresolved.sum()),
    }
    tables = {
        f"depth scales at σ_b² = {config.bias_variance:g}": [
            {"σ_w²": w, "phase": "ordered" if c1 < 1 - 1e-9 else ("chaotic" if c1 > 1 + 1e-9 else "critical"),
             "q*": q, "c*": c, "χ₁": c1, "ξ_q": xq, "ξ_c": None if math.isnan(xc) else xc}
            for w, xq, xc, c1, q, c in curve],
        "χ₁ measured on random networks": [
            {"σ_w²": w, "measured χ₁": m, "theory χ₁": p, "relative difference": m / p - 1}
            for w, m, p in zip(measured_sw, measured_chi, predicted_chi)],
        "order-to-chaos line": [{"σ_b²": b, "critical σ_w²": w} for w, b in zip(*line)],
    }
    figures = {"phase_diagram": _phase_figure(config, sw, sb, q_star, chi, line),
               "depth_scales": _depth_figure(config, curve, critical, measured_sw, measured_chi)}
    return base.Result(NAME, TITLE, metrics=metrics, figures=figures, tables=tables,
                       explanation=_explanation(config, metrics), summary=_summary(config, metrics))


def _summary(config, metrics) -> str:
    return "\n".join([
        f"{config.activation} at σ_b² = {config.bias_variance:g}: the edge of chaos is at σ_w² = "
        f"{metrics['critical_weight_variance']:.6g} (χ₁ there = {metrics['chi1_at_critical']:.9f})",
        f"  measured on random networks: χ₁ crosses 1 at σ_w² = {metrics['measured_critical_weight_variance']:.4g} "
        f"({100 * metrics['critical_relative_difference']:.2f}% from theory); largest χ₁ error "
        f"{100 * metrics['chi1_measured_max_relative_error']:.2f}%",
        f"  ξ_c: {metrics['xi_c_far_ordered']:.3g} layers at the low end, {metrics['xi_c_far_chaotic']:.3g} at the high end, "
        f"up to {metrics['max_finite_xi_c']:.4g} next to the critical point (infinite on it)",
    ])


def _explanation(config, metrics) -> str:
    crit = metrics["critical_weight_variance"]
    note = ("" if not metrics.get("unresolved_xi_c_points") else
            f"<p><i>Note:</i> at {metrics['unresolved_xi_c_points']} σ_w² values just above the critical point (chaotic, "
            "χ₁ &gt; 1) <code>dl.theory.depth_scales</code> returned c* = 1 and ξ_c = ∞, which cannot be right in the "
            "chaotic phase (there c* &lt; 1 and ξ_c is finite); those points are left out of the figure and shown as "
            "— in the table.</p>")
    return f"""
<p>In a wide network with random weights (Var(Ω) = σ_w²/fan_in) and biases (Var(β) = σ_b²), each pre-activation is
close to Gaussian, and its variance follows the <b>variance map</b> q_{{k+1}} = σ_w² E[φ(√q_k z)²] + σ_b². For tanh
the map settles in a few layers at a fixed point <b>q*</b> (left heat map; white where q* = 0: without bias and with
σ_w² ≤ 1 the signal dies out).</p>
<p>What decides whether a deep network can learn is how two nearby signals — or a gradient — evolve. Backward, the
squared gradient is multiplied per layer by <b>χ₁ = σ_w² E[φ'(√q* z)²]</b> (right heat map). Where χ₁ &lt; 1 (blue,
<i>ordered</i>) different inputs become alike with depth and gradients vanish; where χ₁ &gt; 1 (red, <i>chaotic</i>)
nearby inputs are torn apart and gradients explode. The dashed curve χ₁ = 1 is the <b>edge of chaos</b>; at
σ_b² = 0 it meets the axis at σ_w² = 1, and at σ_b² = {config.bias_variance:g} (dotted line) it lies at
σ_w² = {crit:.4g}.</p>
<p>The lower figure follows the dotted line. On the left, χ₁ from theory (line) and measured (markers) on random
networks of width {config.measure_width} and depth {config.measure_depth} — the growth of E‖dL/dh_k‖² per layer,
backward — crossing 1 at σ_w² = {metrics['measured_critical_weight_variance']:.4g}, within
{100 * metrics['critical_relative_difference']:.1f}% of the theory's {crit:.4g}. On the right, the <b>depth scales</b>:
correlations between inputs relax to their fixed point like e^{{−k/ξ_c}}, and ξ_c <b>diverges at the critical point</b>
(it is −1/ln χ₁ on the ordered side, the markers there come from the measured χ₁). Schoenholz et al. found that a
network trains only if its depth is below about 6 ξ_c: a few tens of layers away from criticality, any depth on it.
The variance's own depth scale ξ_q stays small everywhere — the length of the signal is not the problem, its
geometry is.</p>
<p>Compare init-variance: for ReLU χ₁ = σ_w²/2 whatever q* is, so its edge of chaos is the single point σ_w² = 2 with
σ_b² = 0 (with any bias the variance then grows without bound) — which is He initialization.</p>{note}
"""
