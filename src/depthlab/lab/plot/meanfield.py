"""Mean-field theory over the (σ_w², σ_b²) plane: phase diagrams, depth scales, trainable depth."""
from __future__ import annotations

import math

import numpy as np

from .. import plots
from ._common import canvas, vector, same_length, positive_or_nan, choice


_PHASE_QUANTITIES = {  # quantity -> (colour-bar label, log scale, diverging around)
    "chi1": (r"$\chi_1 = \sigma_w^2\, E[\phi'(\sqrt{q^*} z)^2]$", False, 1.0),
    "q_star": (r"$q^*$ (white: $q^* = 0$, the signal dies)", True, None),
}


def phase_diagram(activation=None, weight_variances=None, bias_variances=None, *, values=None, quantity: str = "chi1",
                  critical_line=True, bias_variance: float | None = None, ax=None, title: str | None = None):
    """q* or χ₁ over the (σ_w², σ_b²) plane, with the order-to-chaos line χ₁ = 1.

    Parameters
    ----------
    activation : str, optional
        The activation; needed unless both ``values`` and ``critical_line`` are given.
    weight_variances, bias_variances : array_like, shapes (n_w,), (n_b,)
        The grid's σ_w² and σ_b² (default 22 values over 0.5 … 4 and 13 over 0 … 0.3; each grid
        point costs a fixed-point solve, about 10 ms).
    values : array_like, shape (n_b, n_w), optional
        The quantity at every grid point (row i is σ_b² = bias_variances[i]); computed with
        :mod:`depthlab.theory` when None (NaN where no finite fixed point exists).
    quantity : {"chi1", "q_star"}
        χ₁ (diverging colours around 1: blue ordered, red chaotic) or q* (log colours).
    critical_line : bool or (array, array)
        True: compute the line σ_w²(σ_b²) with :func:`depthlab.theory.critical_line`; a pair
        (σ_w², σ_b²) draws that; False draws none.
    bias_variance : float, optional
        A σ_b² to mark with a dotted line (e.g. where a depth-scale study runs).
    ax, title

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    from ...signal import theory

    label, log, center = _PHASE_QUANTITIES[choice(quantity, tuple(_PHASE_QUANTITIES), "quantity")]
    sw = vector(np.linspace(0.5, 4.0, 22) if weight_variances is None else weight_variances, "weight_variances")
    sb = vector(np.linspace(0.0, 0.3, 13) if bias_variances is None else bias_variances, "bias_variances")
    if (values is None or critical_line is True) and activation is None:
        raise ValueError("phase_diagram needs activation= (e.g. 'tanh') to compute the values or the critical line.")
    if values is None:
        values = np.full((sb.size, sw.size), np.nan)
        for i, b in enumerate(sb):
            for j, w in enumerate(sw):
                try:
                    q = theory.fixed_point(activation, w, b)
                    values[i, j] = q if quantity == "q_star" else theory.chi1(activation, w, b, q=q)
                except ValueError:            # no finite fixed point (explosive phase)
                    pass
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (sb.size, sw.size):
        raise ValueError(f"values must have shape (len(bias_variances), len(weight_variances)) = "
                         f"{(sb.size, sw.size)}, got {values.shape}.")
    _, ax, result = canvas(ax, width=6.0, height=4.5)
    if log:
        plots.heatmap(ax, sw, sb, positive_or_nan(values), log=True, cmap="viridis", colorbar_label=label)
        line_color = "white"
    else:
        finite = values[np.isfinite(values)]
        span = max(abs(finite.max() - center), abs(center - finite.min()), 1e-6) if finite.size else 1.0
        plots.heatmap(ax, sw, sb, values, cmap="RdBu_r", center=center, vmin=center - span, vmax=center + span,
                      colorbar_label=label)
        line_color = "black"
        ax.text(0.97, 0.05, "chaotic", transform=ax.transAxes, ha="right", fontsize=10, color="#8b1a1a")
        ax.text(0.03, 0.05, "ordered", transform=ax.transAxes, ha="left", fontsize=10, color="white")
    if critical_line is True:
        line_sb = sb[0] + (sb[-1] - sb[0]) * np.linspace(0.0, 1.0, 30) ** 2
        critical_line = (np.array([_critical_or_nan(theory, activation, b) for b in line_sb]), line_sb)
    if critical_line is not False and critical_line is not None:
        line_sw, line_sb = critical_line
        ax.plot(line_sw, line_sb, "--", color=line_color, linewidth=2, label=r"order-to-chaos line $\chi_1 = 1$")
        if not log:
            ax.legend(loc="upper left", fontsize=8)
    if bias_variance is not None:
        ax.axhline(bias_variance, color=line_color, linestyle=":", linewidth=1)
    ax.set_xlim(sw[0], sw[-1])
    ax.set_ylim(sb[0], sb[-1])
    default = r"fixed point $q^*$ of the variance map" if log else r"$\chi_1$: ordered ($< 1$, blue) vs chaotic ($> 1$, red)"
    plots.decorate(ax, title=title or default, xlabel=r"$\sigma_w^2 = \mathrm{fan_{in}} \cdot \mathrm{Var}(\Omega)$",
                   ylabel=r"$\sigma_b^2 = \mathrm{Var}(\beta)$")
    return result


def _critical_or_nan(theory, activation, bias_variance: float) -> float:
    try:
        return theory.critical_weight_variance(activation, float(bias_variance))
    except ValueError:                        # no edge of chaos at this σ_b²
        return math.nan


def depth_scales(weight_variances, xi_c, xi_q=None, *, critical: float | None = None, measured_chi1=None, ax=None,
                 title: str | None = None):
    """The depth scales ξ_c (correlations) and ξ_q (variance) against σ_w², diverging at criticality.

    Parameters
    ----------
    weight_variances : array_like, shape (n,)
        σ_w² values, e.g. with ``[dl.theory.depth_scales(act, w, b) for w in ...]``.
    xi_c, xi_q : array_like, shape (n,)
        ξ_c and (optionally) ξ_q at those values; infinite entries are left out.
    critical : float, optional
        The critical σ_w², marked with a dashed line.
    measured_chi1 : (array, array), optional
        (σ_w², measured χ₁): on the ordered side (χ₁ < 1) −1/ln χ₁ is drawn as markers.
    ax, title

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    sw, xi_c = vector(weight_variances, "weight_variances"), vector(xi_c, "xi_c")
    same_length(sw, xi_c, "weight_variances and xi_c")
    _, ax, result = canvas(ax, width=5.8, height=4.2)
    finite = np.isfinite(xi_c)
    ax.plot(sw[finite], xi_c[finite], "-", color=plots.color(1), marker=".", label=r"$\xi_c$ (correlations)")
    if xi_q is not None:
        xi_q = vector(xi_q, "xi_q")
        same_length(sw, xi_q, "weight_variances and xi_q")
        finite = np.isfinite(xi_q)
        ax.plot(sw[finite], xi_q[finite], "-", color=plots.color(2), marker=".", label=r"$\xi_q$ (variance)")
    if measured_chi1 is not None:
        points, chi = (vector(v, "measured_chi1") for v in measured_chi1)
        same_length(points, chi, "measured_chi1's σ_w² and χ₁")
        ordered = (chi < 1) & (chi > 0)
        if ordered.any():
            ax.plot(points[ordered], -1 / np.log(chi[ordered]), "o", color=plots.color(1), markeredgecolor="white",
                    label=r"$-1/\ln \chi_1$ measured (ordered side)")
    if critical is not None:
        ax.axvline(critical, color="#b3261e", linestyle="--", linewidth=1.2)
    plots.decorate(ax, title=title or r"depth scales: $|c_k - c^*| \sim e^{-k/\xi_c}$", xlabel=r"$\sigma_w^2$",
                   ylabel="layers", logy=True, legend="upper right")
    return result


def trainability(weight_variances, depths, accuracy, *, bound=None, critical: float | None = None,
                 chance: float = 0.1, ax=None, title: str | None = None):
    """Training accuracy over (σ_w², depth) as a heat map, with the theory's 6·ξ_c curve over it.

    Parameters
    ----------
    weight_variances : array_like, shape (n_w,)
    depths : array_like, shape (n_d,)
    accuracy : array_like, shape (n_w, n_d)
        ``accuracy[i, j]`` of the network with σ_w² = weight_variances[i], depth depths[j].
    bound : (array, array), optional
        (σ_w², 6·ξ_c): the depth beyond which mean-field theory says training fails.
    critical : float, optional
        The critical σ_w² (edge of chaos), marked with a dashed line.
    chance : float
        The colour scale's floor (chance accuracy).
    ax, title

    Returns
    -------
    Figure (ax None) or the Axes drawn into
    """
    sw, depths = vector(weight_variances, "weight_variances"), vector(depths, "depths")
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if accuracy.shape != (sw.size, depths.size):
        raise ValueError(f"accuracy must have shape (len(weight_variances), len(depths)) = {(sw.size, depths.size)}, "
                         f"got {accuracy.shape}.")
    _, ax, result = canvas(ax, width=6.0, height=4.4)
    plots.heatmap(ax, sw, depths, accuracy.T, cmap="viridis", vmin=chance, vmax=max(float(np.nanmax(accuracy)), 0.2),
                  colorbar_label=f"training accuracy (chance {chance:g})")
    pad = 0.5 * (sw[1] - sw[0]) if sw.size > 1 else 0.25
    low, high = max(sw.min() - pad, 0.5 * sw.min()), sw.max() + pad
    if bound is not None:
        line_sw, line_depth = (vector(v, "bound") for v in bound)
        ax.plot(line_sw, line_depth, color="white", linewidth=2.2)
        ax.plot(line_sw, line_depth, color="#D55E00", linewidth=1.4, label=r"$6\,\xi_c$ (mean-field theory)")
    if critical is not None:
        ax.axvline(critical, color="white", linestyle="--", linewidth=1.0,
                   label=f"edge of chaos $\\sigma_w^2 = {critical:.3g}$")
    step = (depths[1] - depths[0]) if depths.size > 1 else 5
    ax.set_ylim(depths.min() - step / 2, depths.max() + step / 2)
    ax.set_xlim(low, high)
    plots.decorate(ax, title=title or "trainable where the colour is bright; theory: below the curve",
                   xlabel=r"weight variance $\sigma_w^2$  (Var $\Omega_k$ = $\sigma_w^2$ / fan_in)",
                   ylabel="depth (hidden layers)")
    if bound is not None or critical is not None:
        ax.legend(loc="upper right", fontsize=7.5, facecolor="white", framealpha=0.85, frameon=True)
    return result
