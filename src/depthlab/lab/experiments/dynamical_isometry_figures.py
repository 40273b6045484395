"""The dynamical-isometry experiment's figures (kept apart from its computation).

``spectra``: the distribution of singular values s at each depth, one panel per family.
``spread``: the std of s² against depth, measured (markers) and the theory (lines).
``learning_speed``: the training loss of the orthogonal and Gaussian tanh networks.
"""
from __future__ import annotations

import numpy as np


def spectra(config, settings: dict, found: dict):
    """Histograms of log10 s per family (panels) and depth (colours)."""
    from .. import plots

    fig, axes = plots.figure(1, len(settings), width=3.4 * len(settings), height=3.8, sharex=True, title=(
        f"Singular values of the input–output Jacobian at criticality (width {config.width}); isometry: all at 0"))
    low, high = -4.0, 1.5          # s below 10⁻⁴ (down to exact zeros, for ReLU) pile up at the left edge
    bins = np.linspace(low, high, 56)
    for ax, (key, setting) in zip(np.atleast_1d(axes), settings.items()):
        for j, depth in enumerate(config.depths):
            s = found[key, depth]
            with np.errstate(divide="ignore"):
                logs = np.log10(s)
            ax.hist(np.clip(logs, low, high), bins=bins, histtype="step", density=True, linewidth=1.3,
                    color=plots.color(j), label=f"L = {depth}")
        ax.axvline(0.0, color="#555555", linestyle=":", linewidth=1.0)
        plots.decorate(ax, title=setting.label, xlabel=r"$\log_{10} s$ (left edge: $s \leq 10^{-4}$)",
                       ylabel="density" if ax is np.atleast_1d(axes)[0] else None)
    np.atleast_1d(axes)[0].legend(fontsize=7.5, loc="upper left")
    return fig


def spread(config, settings: dict, stats: dict, predicted: dict):
    """Against depth: the share of s near 1; std of s² with the theory; mean of s²."""
    from .. import plots

    fig, (share_ax, ax, mean_ax) = plots.figure(1, 3, width=15.0, height=4.4)
    depths = np.array(config.depths, dtype=float)
    for i, (key, setting) in enumerate(settings.items()):
        style = dict(marker=plots.marker(i), color=plots.color(i), label=setting.label)
        share_ax.plot(depths, [100 * row["share_near_1"] for row in stats[key]], **style)
        measured = np.array([row["std_s2"] for row in stats[key]])
        theory = np.array(predicted[key])
        plots.measured_and_theory(ax, depths, np.where(measured > 0, measured, np.nan),
                                  np.where(theory > 0, theory, np.nan), label=setting.label, color=plots.color(i),
                                  marker=plots.marker(i))
        mean_ax.plot(depths, [row["mean_s2"] for row in stats[key]], **style)
    share_ax.set_ylim(-3, 103)
    plots.decorate(share_ax, title="Isometry: share of s within a factor √2 of 1", xlabel="depth L (layers)",
                   ylabel="% of singular values", logx=True, legend="best")
    handles, labels = ax.get_legend_handles_labels()
    extra = plots.theory_legend_handles("measured", "theory (D → ∞): √(L (μ₂/μ₁² − 1 − s₁))")
    ax.legend(handles + list(extra), labels + [h.get_label() for h in extra], fontsize=7.5, loc="best")
    plots.decorate(ax, title="std of s², with free-probability theory", xlabel="depth L (layers)",
                   ylabel="std of s²", logx=True, logy=True)
    mean_ax.axhline(1.0, color="#555555", linestyle=":", linewidth=1.0, label="criticality: mean s² = 1")
    plots.decorate(mean_ax, title="Mean of s² (1 at criticality, D → ∞)", xlabel="depth L (layers)",
                   ylabel="mean of s²", logx=True, logy=True, legend="best")
    return fig


def learning_speed(config, learning: dict, point):
    """Training loss against SGD steps for the orthogonal and Gaussian tanh networks."""
    from .. import plots

    fig, ax = plots.figure(1, 1, width=6.6, height=4.2)
    for i, (weights, run) in enumerate(learning.items()):
        loss = np.array(run.loss, dtype=float)
        ax.plot(run.steps, np.where(np.isfinite(loss), loss, np.nan), color=plots.color(i), marker=plots.marker(i),
                markersize=3, label=f"{weights} weights")
        if run.steps_to_target is not None:
            ax.axvline(run.steps_to_target, color=plots.color(i), linestyle=":", linewidth=1.0)
    ax.axhline(config.target_loss, color="#555555", linestyle="--", linewidth=1.0,
               label=f"target loss {config.target_loss:g}")
    ax.axhline(np.log(10.0), color="#999999", linewidth=0.8, label="chance: ln 10")
    plots.decorate(ax, title=(f"{config.train_depth} tanh layers × {config.train_width} at criticality "
                              f"($\\sigma_w^2$ = {point.weight_variance:.4g}), plain SGD lr {config.lr:g}"),
                   xlabel="SGD step", ylabel="training loss (MNIST-1D)", legend="best")
    return fig
