"""linear-regions: how many linear pieces shallow and deep ReLU networks make — and actually make.

Seed 003: "the number of linear regions for a shallow network with 6 hidden units is 7, but a
deep network of two layers with 3 hidden units each creates 9". This experiment

1. plots both constructed examples (``dl.regions.shallow_example`` / ``deep_example``) with
   their breakpoints, found exactly by ``dl.count_linear_regions``;
2. at a fixed number of units, compares three things as the depth grows: the upper bound
   Π (D_k + 1), a constructed "folding" network that reaches (units per layer)^depth, and
   randomly initialized networks — which make about one region per unit, whatever the depth;
3. maps the regions of a random shallow and a random deep network on a 2-D input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...nn.model import MLP, Sequential
from ...signal.regions import (activation_patterns, count_linear_regions, deep_example, linear_regions_2d, max_regions_1d, max_regions_shallow, shallow_example)
from .. import limits
from . import base

NAME = "linear-regions"
TITLE = "Linear regions of shallow and deep ReLU networks"
SUMMARY = "constructed 7- and 9-region nets, regions vs depth at fixed units against the bounds, 2-D region maps (seed 003)"
REPRODUCES = "003_49d2fa6fdb48ed73.txt (linear regions)"
KEY_METRICS = ("shallow_example_regions", "deep_example_regions", "random_shallow_max", "random_deepest_mean")


@dataclass
class Config:
    units: int = 24                                  # hidden units in every network compared
    depths: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12)  # each must divide units (width = units / depth)
    draws: int = 20                                  # random networks per depth
    bias_variance: float = 0.1                       # σ²_β of the random networks' biases (weights: He)
    segment: float = 10.0                            # regions are counted on the line segment [−segment, segment]
    depth_2d: int = 3                                # the deep 2-D network: depth_2d layers of units/depth_2d
    resolution: int = 400                            # grid points per axis of the 2-D maps
    seed: int = 0


QUICK = {"depths": (1, 2, 3, 4, 6), "draws": 5, "resolution": 150}


MAX_SEGMENT = 1e6       # |x| beyond which a random net's breakpoints drown in float64's rounding
MAX_UNITS = 1_000
MAX_FOLDED = 2 ** 16    # regions of the folding net that grid_count's 2^18 points count exactly
MAX_WALKED = 200_000


def validate(config: Config) -> None:
    for name in ("units", "depths", "draws", "depth_2d"):
        base.check_range(config, name, low=1)
    base.check_range(config, "resolution", low=2)
    base.check_range(config, "bias_variance", low=0, low_open=True)
    base.check_range(config, "segment", low=0, low_open=True)
    limits.check_units(config, "units", "depths", "depth_2d")
    limits.check_items(config, "depths", 32)
    limits.check_at_most(config.draws, 10_000, "draws")
    limits.check_at_most(config.resolution, 2000, "resolution", "region-map points per axis")
    limits.check_variance(config, "bias_variance")
    limits.check_at_most(config.segment, MAX_SEGMENT, "segment",
                         "beyond it the breakpoints of a random net are lost in float64's rounding")
    limits.check_at_most(config.units, MAX_UNITS, "units", "the folding net is read on 2^18 points")
    limits.check_product(config.resolution ** 2 * config.units, limits.MAX_ENTRIES, "resolution²·units",
                         "numbers held", "resolution or units")
    limits.check_product(config.draws * len(config.depths) * config.units, MAX_WALKED,
                         "draws·depths·units", "breakpoints walked", "draws, depths or units")
    for depth in (*config.depths, config.depth_2d):
        if config.units % depth:
            raise ValueError(f"every depth must divide units = {config.units} (width = units / depth), got depth {depth}")
    for depth in config.depths:
        pieces = (config.units // depth) ** depth
        if pieces > MAX_FOLDED:
            raise ValueError(f"depth {depth} at units = {config.units} makes a folding net of (units/depth)^depth = "
                             f"{pieces:.3g} regions, more than the {MAX_FOLDED} its grid of 2^18 points can count "
                             "exactly; use fewer units or another depth")


# ----------------------------------------------------------------------------- networks

def folding_network(width: int, depth: int) -> Sequential:
    """1 → width × depth → 1 ReLU network whose output has width^depth linear pieces on [0, 1].

    Every layer computes the same "fold" z ↦ g(z), a zigzag of ``width`` pieces with slopes
    ±width mapping [0, 1] onto itself ``width`` times: units relu(z + 1), relu(z − i/width)
    (i = 1 … width − 1), recombined with weights c = width·(1, −2, 2, −2, …) and offset −width.
    Composing the fold ``depth`` times gives width^depth pieces — the generalization of
    ``dl.regions.deep_example`` (width 3, depth 2: 9 pieces) to any width and depth.
    """
    offsets = np.concatenate([[1.0], -np.arange(1, width) / width])             # unit biases
    fold = width * np.concatenate([[1.0], 2.0 * (-1.0) ** np.arange(1, width)])  # recombination c
    weights = [np.ones((width, 1))] + [np.tile(fold, (width, 1))] * (depth - 1) + [fold[None, :]]
    biases = [offsets] + [offsets - width] * (depth - 1) + [np.array([-float(width)])]
    return Sequential.from_arrays(weights, biases, activation="relu")


def grid_count(net: Sequential, points: int = 2 ** 18) -> int:
    """Regions met along [0, 1] by ``points`` evenly spaced inputs: 1 + the number of pattern changes.

    Exact when every region is wider than the spacing 1/(points − 1) — true for
    :func:`folding_network`, whose width^depth regions have equal width — and much cheaper
    than the exact walk of ``count_linear_regions`` when there are thousands of regions.
    """
    patterns = activation_patterns(net, np.linspace(0.0, 1.0, points).reshape(-1, 1))
    return 1 + int(np.count_nonzero(np.any(patterns[1:] != patterns[:-1], axis=1)))


def random_network(in_features: int, width: int, depth: int, config: Config, *stream: int) -> Sequential:
    """He-initialized weights, biases N(0, bias_variance): a network as training would start it."""
    return MLP(in_features, [width] * depth, 1, init="he_normal", bias_init=config.bias_variance,
               rng=np.random.default_rng([config.seed, *stream]))


# ----------------------------------------------------------------------------- run

def run(config: Config, progress=None) -> base.Result:
    examples = {name: (net, *count_linear_regions(net, [0.0], [1.0], return_breakpoints=True))
                for name, net in (("shallow", shallow_example()), ("deep", deep_example()))}

    rows, counts = [], {}
    ends = ([-config.segment], [config.segment])
    for depth in base.iterate(progress, list(config.depths), desc=f"{NAME}: depths", total=len(config.depths)):
        width = config.units // depth
        drawn = [count_linear_regions(random_network(1, width, depth, config, 1, depth, d), *ends)
                 for d in range(config.draws)]
        counts[depth] = np.array(drawn)
        rows.append({"depth K": depth, "width D": width, "bound Π(D_k + 1)": max_regions_1d([width] * depth),
                     "folding construction": grid_count(folding_network(width, depth)),
                     "random: mean": float(np.mean(drawn)), "random: min": int(np.min(drawn)),
                     "random: max": int(np.max(drawn))})

    maps = {}
    for key, depth in (("shallow", 1), ("deep", config.depth_2d)):
        net = random_network(2, config.units // depth, depth, config, 2, depth)
        maps[key] = (depth, linear_regions_2d(net, ((-1.0, 1.0), (-1.0, 1.0)), config.resolution))

    shallow_random = counts.get(1)
    deepest = max(config.depths)
    metrics = {
        "shallow_example_regions": examples["shallow"][1],
        "deep_example_regions": examples["deep"][1],
        "shallow_example_bound": max_regions_shallow(6),
        "deep_example_bound": max_regions_1d([3, 3]),
        "units": config.units,
        "random_mean_by_depth": [round(float(np.mean(counts[d])), 6) for d in config.depths],
        "folding_by_depth": [row["folding construction"] for row in rows],
        "bound_by_depth": [row["bound Π(D_k + 1)"] for row in rows],
        "random_deepest_mean": float(np.mean(counts[deepest])),
        "regions_2d_shallow": maps["shallow"][1].count,
        "regions_2d_deep": maps["deep"][1].count,
        "shallow_bound_2d": max_regions_shallow(config.units, 2),
    }
    if shallow_random is not None:
        metrics["random_shallow_max"] = int(shallow_random.max())
        metrics["random_shallow_within_bound"] = bool(shallow_random.max() <= config.units + 1)
    figures = {"constructed_examples": _examples_figure(examples),
               "regions_vs_depth": _depth_figure(config, rows, counts),
               "region_maps_2d": _maps_figure(config, maps)}
    return base.Result(NAME, TITLE, metrics=metrics, figures=figures,
                       tables={f"regions on [−{config.segment:g}, {config.segment:g}] with {config.units} units": rows},
                       explanation=_explanation(config, metrics, rows), summary=_summary(config, metrics, rows))


# ----------------------------------------------------------------------------- figures

def _examples_figure(examples):
    from .. import plot, plots

    fig, axes = plots.figure(1, 2, width=11.0, height=4.0)
    grid = np.linspace(0.0, 1.0, 1001).reshape(-1, 1)
    titles = {"shallow": "Shallow: 1 → 6 → 1", "deep": "Deep: 1 → 3 → 3 → 1"}
    bounds = {"shallow": "bound D + 1 = 7", "deep": "bound (3 + 1)² = 16"}
    for i, (ax, (key, (net, count, breaks))) in enumerate(zip(axes, examples.items())):
        plot.linear_regions(net, 0.0, 1.0, ax=ax, color=plots.color(i),
                            title=f"{titles[key]}: {count} linear regions ({bounds[key]})")
        if key == "deep":
            # the last Linear layer is the fold itself, so applying it to h_1 shows one fold
            trace = net.forward(grid, record=True)
            last = net.linears[-1]
            once = trace.activations[1] @ last.weight.data.T + last.bias.data
            ax.plot(grid[:, 0], once[:, 0], "--", color="#888888", linewidth=1.2,
                    label="after layer 1 only: one fold, 3 pieces")
        ax.set_ylim(-0.06, 1.42)
        ax.legend(loc="upper center", ncol=2, fontsize=7.5)
    return fig


def _depth_figure(config, rows, counts):
    from .. import plots

    fig, ax = plots.figure(width=7.8, height=4.6)
    depths = np.array([row["depth K"] for row in rows])
    ax.plot(depths, [row["bound Π(D_k + 1)"] for row in rows], "-", color="#777777", marker="s", markersize=4,
            label="upper bound Π (D_k + 1)")
    ax.plot(depths, [row["folding construction"] for row in rows], "-", color=plots.color(2), marker="^",
            label="constructed folding net: D^K")
    jitter = np.random.default_rng([config.seed, 3])
    for depth in depths:
        values = counts[int(depth)]
        ax.plot(depth * np.exp(jitter.uniform(-0.04, 0.04, values.size)), values, ".", color=plots.color(0),
                alpha=0.35, markersize=5)
    ax.plot(depths, [row["random: mean"] for row in rows], "-o", color=plots.color(0),
            label=f"random nets (He weights, σ²_β = {config.bias_variance:g}): mean and each draw")
    ax.axhline(config.units + 1, color=plots.color(1), linestyle=":", linewidth=1.2,
               label=f"shallow bound: {config.units} units + 1 = {config.units + 1}")
    ax.set_xscale("log")
    ax.set_xticks(depths, [f"{d}\n×{config.units // d}" for d in depths])
    ax.minorticks_off()
    plots.decorate(ax, title=f"Linear regions on a line, {config.units} hidden units split into K layers",
                   xlabel="depth K × width D  (same number of units)", ylabel="number of linear regions (log scale)",
                   logy=True, legend="upper left")
    return fig


def _maps_figure(config, maps):
    from .. import plot, plots

    fig, axes = plots.figure(1, 2, width=10.0, height=5.0,
                             title=f"Activation regions of two random networks with {config.units} hidden units on [−1, 1]²")
    for ax, (key, (depth, region_map)) in zip(axes, maps.items()):
        width = config.units // depth
        shape = " → ".join(["2", *([str(width)] * depth), "1"])
        plot.region_map(region_map, seed=config.seed, ax=ax,
                        title=f"{key.capitalize()} {shape}: {region_map.count} regions")
    return fig


# ----------------------------------------------------------------------------- text

def _summary(config, metrics, rows) -> str:
    best = max(rows, key=lambda row: row["folding construction"])
    lines = [f"{config.units} units: random nets make about {metrics['random_mean_by_depth'][0]:.0f} regions on a line at "
             f"depth 1, {metrics['random_deepest_mean']:.0f} at depth {max(config.depths)}; a folding net reaches "
             f"{best['folding construction']:,}; seed 003's examples give {metrics['shallow_example_regions']} and "
             f"{metrics['deep_example_regions']}.",
             f"  With {config.units} units, depth K: bound / folding construction / random mean:"]
    for row in rows:
        lines.append(f"    K = {row['depth K']:>2} (width {row['width D']:>2}): {row['bound Π(D_k + 1)']:>8} / "
                     f"{row['folding construction']:>6} / {row['random: mean']:6.1f}")
    lines.append(f"  2-D maps: random shallow {metrics['regions_2d_shallow']} regions, random deep "
                 f"{metrics['regions_2d_deep']} on [−1, 1]².")
    return "\n".join(lines)


def _explanation(config, metrics, rows) -> str:
    best = max(rows, key=lambda row: row["folding construction"])
    return f"""
<p>A ReLU unit is off on one side of a line (a hyperplane, in more dimensions) and on at the other side, so a
ReLU network is <b>linear on each region</b> of input space where every unit keeps its on/off state; it bends only
where some unit switches. The number of these <i>linear regions</i> measures how wiggly a function the
network can make.</p>
<p><b>First figure — the seed's two examples.</b> One hidden layer of 6 units has 6 switching points on a line,
so at most 7 pieces: the example reaches {metrics['shallow_example_regions']}. Two layers of 3 units do better:
the first layer <i>folds</i> [0, 1] onto itself three times (dashed: 3 pieces going up, down, up), and the
second layer applies its 3 pieces to each fold, giving 3 × 3 = {metrics['deep_example_regions']} pieces with the
same 6 units. Depth multiplies, width adds. (The upper bound for this shape is (3 + 1)² = 16.) The black dots are
the breakpoints found exactly by <code>dl.count_linear_regions</code>, which walks along the segment from kink
to kink instead of sampling it.</p>
<p><b>Second figure — what depth can do versus what it does.</b> {config.units} units are split into K layers of
{config.units}/K. The grey line is the upper bound Π(D_k + 1), which explodes with depth. The green line is a
network built to fold like the example (each layer a zigzag of D pieces): it reaches D^K regions, up to
{best['folding construction']:,} at K = {best['depth K']} — against {config.units + 1} for any shallow network with
{config.units} units. But the blue points, <b>randomly initialized networks</b> (He weights, biases
N(0, {config.bias_variance:g}), counted on [−{config.segment:g}, {config.segment:g}]), stay near one region per unit
at every depth (mean {metrics['random_mean_by_depth'][0]:.1f} at K = 1, {metrics['random_deepest_mean']:.1f} at
K = {max(config.depths)}); very narrow layers even lose regions, because a unit that is off over the whole
segment never switches. This is the observation of Hanin &amp; Rolnick (2019): the exponential number of regions
is a capacity that training may use, not what a deep network has by default. Every random shallow net stays
within its bound D + 1 = {config.units + 1} (largest seen: {metrics.get('random_shallow_max', 'n/a')}).</p>
<p><b>Third figure — regions on a 2-D input</b>, coloured by region (edges dark). The shallow network's regions
are cut by {config.units} straight lines (at most {metrics['shallow_bound_2d']} regions in the whole plane); it has
{metrics['regions_2d_shallow']} in the square. In the deep network the first layer's lines are straight, but
every later unit's boundary <i>bends</i> wherever it crosses an earlier boundary, since it is linear only within
each earlier region: {metrics['regions_2d_deep']} regions. Counts on a grid of {config.resolution}² points are lower
bounds: regions thinner than the grid spacing are missed.</p>
"""
