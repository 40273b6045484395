"""Helper B's experiments run (quick) and their metrics hold what their reports claim.

fit-1d, fit-2d, three-layer, linear-regions and depth-trainability: each runs with --quick
through ``run_experiment``; the numbers are checked against independent references (the
target's closed form, PyTorch's own training loop, exact region counts, Σy² of a dead net).
"""
import json
import math
import sys

import numpy as np
import pytest
import torch  # always installed in CI: the three-layer overlay must run
from test_report import check_page

from depthlab.lab import experiments
from depthlab.signal import regions
from depthlab.lab import claims
from depthlab.lab.experiments import base, depth_trainability_residual, fit_1d, linear_regions, three_layer

MINE = ["fit-1d", "fit-2d", "three-layer", "linear-regions", "depth-trainability"]


# ----------------------------------------------------------------------------- every experiment

@pytest.mark.parametrize("name", MINE)
def test_quick_run_writes_report_metrics_and_figures(quick_runs, name):
    result = quick_runs[name]
    assert result.name == name and result.title and result.summary.strip()
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    assert metrics == base.jsonable(result.metrics)
    assert result.figures
    for stem in result.figures:
        assert (result.out_dir / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (result.out_dir / "report.html").read_text()
    assert len(check_page(html).images) == len(result.figures)
    for key in getattr(experiments.get(name), "KEY_METRICS", ()):
        assert key in result.metrics


# Tiny settings for the reproducibility checks: every random draw of the full run, in seconds less.
TINY = {
    "fit-1d": {"train_samples": 100, "test_samples": 50, "epochs": 2, "seed_samples": 50},
    "fit-2d": {"train_samples": 100, "test_samples": 50, "epochs": 2, "seed_samples": 50, "resolution": 10},
    "three-layer": {"samples": 16, "in_features": 40, "width": 8, "out_features": 3, "steps": 5},
    "linear-regions": {"depths": "1,2", "draws": 2, "resolution": 30},
    "depth-trainability": {"depth": 4, "width": 8, "epochs": 1, "train_samples": 100, "batch_size": 50,
                           "compare_depth": 4, "compare_width": 8, "compare_epochs": 1, "compare_batch_size": 50},
}


def _tiny_metrics(name, seed):
    config = base.make_config(name, TINY[name], seed=seed)
    return base.metrics_json(experiments.get(name).run(config).metrics)


@pytest.mark.parametrize("name", MINE)
def test_same_seed_gives_identical_metrics_and_another_seed_does_not(name):
    first = _tiny_metrics(name, 0)
    assert _tiny_metrics(name, 0) == first
    assert _tiny_metrics(name, 1) != first        # config.seed reaches the random draws


# ----------------------------------------------------------------------------- fit-1d

def test_fit_1d_quick_fits_the_sine_and_beats_the_seed_recipe(quick_runs):
    m = quick_runs["fit-1d"].metrics
    assert m["test_mse"] < 0.03 and not m["diverged"]
    assert m["test_mse"] < m["test_mse_seed_recipe"]
    assert 2 <= m["linear_pieces"] <= m["linear_pieces_bound"] == 25 ** 3
    assert m["steps_seed_recipe"] == 2000


@pytest.mark.slow
def test_fit_1d_full_size_reaches_test_mse_below_001():
    config = base.make_config("fit-1d", {"seed_samples": 0})       # the seed's recipe is not needed here
    result = fit_1d.run(config)
    assert result.metrics["test_mse"] < 0.01
    assert result.metrics["grid_max_error"] < 0.2       # max |net − sin(10x) − 0.75| on 801 points
    assert "test_mse_seed_recipe" not in result.metrics


def test_fit_1d_divergence_is_reported_not_raised():
    config = base.make_config("fit-1d", {"lr": "1e6", "optimizer": "sgd", "epochs": "2", "train_samples": "200",
                                         "seed_samples": "0"})
    result = fit_1d.run(config)
    assert result.metrics["diverged"] and math.isnan(result.metrics["test_mse"])
    assert "diverged" in result.summary


def test_seed_init_is_2_over_fan_out():
    assert fit_1d.seed_init([1, 24, 24, 24, 1]) == [2 / 24, 2 / 24, 2 / 24, 2.0]


# ----------------------------------------------------------------------------- fit-2d

def test_fit_2d_quick_explains_most_of_the_variance_and_errs_on_the_cliff(quick_runs):
    m = quick_runs["fit-2d"].metrics
    assert m["relative_test_mse"] < 0.05
    assert m["relative_test_mse"] == pytest.approx(m["test_mse"] / m["target_variance"])
    assert 500 < m["target_variance"] < 1000                       # Var f on [-1, 1]² is about 725
    assert m["error_share_near_cliff"] > 3 * m["area_share_near_cliff"]


def test_fit_2d_cliff_band_and_grid_orientation():
    from depthlab.lab.experiments import fit_2d

    xs, ys, points = fit_2d.grid(5)
    assert points.shape == (25, 2)
    assert np.array_equal(points[:5, 0], xs) and np.all(points[:5, 1] == ys[0])   # row i holds y_i
    mask = fit_2d.near_cliff(np.array([[0.01, -0.5], [-0.5, 0.01], [0.5, 0.01], [0.01, 0.5], [-0.5, -0.5]]))
    assert mask.tolist() == [True, True, False, False, False]


# ----------------------------------------------------------------------------- three-layer

def test_three_layer_depthlab_and_pytorch_curves_agree(quick_runs):
    threads = torch.get_num_threads()
    m = quick_runs["three-layer"].metrics
    assert torch.get_num_threads() == threads          # the overlay runs on one thread and restores the setting
    assert m["torch_overlay"] == "done"
    assert m["torch_max_rel_diff"] <= 1e-8
    assert m["torch_steps_compared_he"] == m["torch_steps_compared_normal"] == m["steps"] == 60
    assert "pytorch_overlay" in quick_runs["three-layer"].figures


def test_three_layer_he_beats_normal_and_the_seed_recipe_kills_layer_2(quick_runs):
    m = quick_runs["three-layer"].metrics
    config = base.make_config("three-layer", quick=True)
    _, y = three_layer.data(config)
    assert m["he_beats_normal"] and m["final_loss_he"] < 0.01 * m["initial_loss_he"]
    assert m["final_loss_he"] < m["final_loss_normal"]
    assert m["output_rms_normal"] > 300 * m["output_rms_he"]
    assert m["lr_max_normal"] < config.lr_normal * 2 < config.seed_lr / 2   # the seed's step is far too large
    # The bias-free seed network with every h_2 unit dead outputs 0: its loss is Σ y² exactly.
    assert m["seed_recipe_dead_fraction"] == 1.0
    assert m["final_loss_seed_recipe"] == pytest.approx(float(np.sum(y ** 2)), rel=1e-12)


def test_three_layer_replays_the_seeds_half_gradient_exactly():
    # One step of the seed's update Ω ← Ω − lr·(its gradient with (f − y) instead of 2(f − y)),
    # written out in NumPy as the seed does, equals descend(gradient_scale=0.5, train_biases=False).
    config = three_layer.Config(samples=8, in_features=12, width=5, out_features=3)
    x, y = three_layer.data(config)
    net = three_layer.network(config, "normal")
    w1, w2, w3 = (linear.weight.data.T.copy() for linear in net.linears)
    lr = 1e-4
    h1 = x @ w1
    r1 = np.maximum(h1, 0)
    h2 = r1 @ w2
    r2 = np.maximum(h2, 0)
    g = r2 @ w3 - y
    g3 = r2.T @ g
    d2 = g @ w3.T
    d2[h2 < 0] = 0
    g2 = r1.T @ d2
    d1 = d2 @ w2.T
    d1[h1 < 0] = 0
    g1 = x.T @ d1
    three_layer.descend(net, x, y, lr, 1, gradient_scale=0.5, train_biases=False)
    for linear, w, grad in zip(net.linears, (w1, w2, w3), (g1, g2, g3)):
        np.testing.assert_allclose(linear.weight.data.T, w - lr * grad, rtol=1e-13, atol=1e-13)
        assert not linear.bias.data.any()


def test_three_layer_without_torch_skips_the_overlay_and_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)          # `import torch` now raises ImportError
    config = three_layer.Config(samples=16, in_features=30, width=8, out_features=2, steps=5)
    result = three_layer.run(config)
    assert result.metrics["torch_overlay"] == "skipped: torch is not installed"
    assert "torch_max_rel_diff" not in result.metrics and set(result.figures) == {"loss_curves"}
    assert "skipped because torch is not installed" in result.explanation


def test_power_of_ten_above():
    assert three_layer.power_of_ten_above(3e-15) == 1e-14
    assert three_layer.power_of_ten_above(1e-12) == pytest.approx(1e-12)
    assert three_layer.power_of_ten_above(0.0) == 0.0


# ----------------------------------------------------------------------------- linear-regions

def test_linear_regions_constructed_examples_and_random_shallow_bound(quick_runs):
    m = quick_runs["linear-regions"].metrics
    assert m["shallow_example_regions"] == 7 == m["shallow_example_bound"]
    assert m["deep_example_regions"] == 9 and m["deep_example_bound"] == 16
    assert m["random_shallow_max"] <= m["units"] + 1 and m["random_shallow_within_bound"]
    config = base.make_config("linear-regions", quick=True)
    widths = [config.units // k for k in config.depths]
    assert m["folding_by_depth"] == [w ** k for w, k in zip(widths, config.depths)]
    assert m["bound_by_depth"] == [(w + 1) ** k for w, k in zip(widths, config.depths)]
    assert all(r <= b for r, b in zip(m["random_mean_by_depth"], m["bound_by_depth"]))
    assert m["regions_2d_shallow"] <= m["shallow_bound_2d"] == 1 + 24 + 24 * 23 // 2


@pytest.mark.parametrize("width,depth", [(3, 2), (2, 4), (4, 3), (5, 1)])
def test_folding_network_has_width_to_the_depth_pieces(width, depth):
    net = linear_regions.folding_network(width, depth)
    exact = regions.count_linear_regions(net, [0.0], [1.0])
    assert exact == width ** depth == linear_regions.grid_count(net, 2 ** 14)
    # it maps [0, 1] onto [0, 1], touching 0 and 1 alternately at the breakpoints k / width^depth
    knots = np.arange(width ** depth + 1).reshape(-1, 1) / width ** depth
    np.testing.assert_allclose(net(knots)[:, 0], np.arange(width ** depth + 1) % 2, atol=1e-9)


def test_folding_network_generalizes_the_deep_example():
    ours, theirs = linear_regions.folding_network(3, 2), regions.deep_example()
    x = np.linspace(0, 1, 101).reshape(-1, 1)
    np.testing.assert_allclose(ours(x), theirs(x), atol=1e-12)


# ----------------------------------------------------------------------------- depth-trainability

def test_depth_trainability_quick_he_learns_xavier_stalls_and_sigma1_diverges(quick_runs):
    m = quick_runs["depth-trainability"].metrics
    assert m["final_loss_sgd_he"] < m["final_loss_sgd_xavier"]
    assert m["final_loss_sgd_xavier"] == pytest.approx(math.log(10), abs=0.02)      # stuck at chance
    assert m["diverged_sgd_sigma2_1"] and m["final_loss_sgd_sigma2_1"] is None       # caught, not raised
    assert m["test_accuracy_sgd_sigma2_1"] is None
    assert m["final_loss_adam_xavier"] < m["final_loss_sgd_xavier"] - 0.1            # Adam rescues Xavier
    assert m["grad_norm_first_layer_xavier"] < 1e-3 * m["grad_norm_first_layer_he"]
    assert m["grad_norm_first_layer_sigma2_1"] > 1e6 * m["grad_norm_first_layer_he"]
    for key in ("test_accuracy_sgd_he", "test_accuracy_adam_he", "test_accuracy_adam_xavier"):
        assert 0.0 <= m[key] <= 1.0


DEPTH_100 = "depth 100: plain vs residual vs normalized"


def test_depth_trainability_quick_depth_100_table_and_theory(quick_runs):
    result = quick_runs["depth-trainability"]
    m, config = result.metrics, base.make_config("depth-trainability", quick=True)
    rows = result.tables[DEPTH_100]
    assert [row["network"] for row in rows] == [label for label, _, _ in depth_trainability_residual.NETWORKS.values()]
    assert all(set(row) == {"network", "loss at init", "final training loss", "training accuracy", "test accuracy",
                            "stopped"} for row in rows)
    steps = config.compare_epochs * math.ceil(config.train_samples / config.compare_batch_size)
    assert m["compare_steps"] == steps == 40 and config.compare_depth == 100      # --quick keeps the depth
    assert all(row["stopped"] == f"{steps} steps" for row in rows)
    # the closed forms: ×2 per block at s = 1, ×(1 + 1/B) at s = 1/√B (B = 50 blocks), π/(π − 1) for batch norm
    assert m["theory_stream_growth_s1"] == 2.0 ** 50
    assert m["theory_stream_growth_scaled"] == pytest.approx((1 + 1 / 50) ** 50, rel=1e-12)
    assert m["theory_gradient_growth_batch"] == pytest.approx(math.pi / (math.pi - 1), rel=1e-12)
    # measured at initialization: batch norm's gradient growth near its mean-field value, He's plain net near 1
    assert m["compare_gradient_growth_plain_batch"] == pytest.approx(math.pi / (math.pi - 1), rel=0.1)
    assert m["compare_gradient_growth_plain"] == pytest.approx(1.0, abs=0.1)
    assert m["compare_init_loss_res_s1"] > 1e4 * m["compare_init_loss_res_scaled"]       # the stream exploded
    # after training: the plain network stays at chance, the controlled residual networks are well below it
    assert m["compare_final_loss_plain"] == pytest.approx(math.log(10), abs=0.02)
    for key in depth_trainability_residual.CONTROLLED:
        assert m[f"compare_final_loss_{key}"] < m["compare_final_loss_plain"] - 0.2, key
        assert 0.15 < m[f"compare_test_accuracy_{key}"] <= 1.0
    assert "plain_vs_residual" in result.figures


def test_depth_trainability_quick_claims_are_judged_from_the_metrics(quick_runs):
    result = quick_runs["depth-trainability"]
    m, chance = result.metrics, math.log(10)
    found = {claim.source: claim for claim in result.claims}
    assert list(found) == ["He et al. 2015, Fig. 3", "He et al. 2016; Prince, ch. 11", "Prince, ch. 11.4; De & Smith 2020",
                           "Yang et al. 2019"]
    loss = {key: m[f"compare_final_loss_{key}"] for key in depth_trainability_residual.NETWORKS}

    def learned(key):
        return loss[key] is not None and loss[key] <= 0.85 * chance

    def stalled(key):
        return loss[key] is None or loss[key] >= 0.97 * chance

    expected = {
        "He et al. 2016; Prince, ch. 11": [all(learned(k) for k in ("res_scaled", "res_batch", "res_layer")),
                                           stalled("plain"), True],
        "Prince, ch. 11.4; De & Smith 2020": [m["compare_init_loss_res_s1"] >= 100 * m["compare_init_loss_res_scaled"],
                                              stalled("res_s1"), learned("res_scaled")],
        "Yang et al. 2019": [m["compare_gradient_growth_plain_batch"] > 1.2, stalled("plain_batch"),
                             learned("res_batch")],
    }
    for source, held in expected.items():
        claim = found[source]
        assert [h for _, h in claim.checks] == held, claim.checks
        assert claim.verdict in claims.VERDICTS and claim.figure == "plain_vs_residual"
        assert "depth 100" in claim.budget and "40 Adam steps" in claim.budget
    # robust at this size: s = 1 explodes at init and does not learn, batch norm explodes the gradient
    assert [h for _, h in found["Yang et al. 2019"].checks][:2] == [True, True]
    assert [h for _, h in found["Prince, ch. 11.4; De & Smith 2020"].checks][:2] == [True, True]
    # metrics from before the depth-100 comparison (an older metrics.json) still judge He et al. 2015
    older = {k: v for k, v in m.items() if not k.startswith(("compare_", "theory_"))}
    assert [c.source for c in claims.of(experiments.get("depth-trainability"), older)] == ["He et al. 2015, Fig. 3"]


def test_depth_trainability_comparison_records_a_diverged_network_and_still_draws():
    config = base.make_config("depth-trainability", TINY["depth-trainability"])
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((100, 40)), rng.integers(0, 10, 100), rng.standard_normal((20, 40)),
            rng.integers(0, 10, 20))
    net = depth_trainability_residual.build(config, "res_batch")
    next(iter(net.parameters())).data[0, 0] = np.nan          # fit refuses a network that holds NaN: phase "input"
    runs = {key: depth_trainability_residual.train(net if key == "res_batch" else
                                                   depth_trainability_residual.build(config, key), config, data)
            for key in depth_trainability_residual.NETWORKS}
    broken = runs["res_batch"]
    assert broken.diverged_step == 0 and broken.diverged_phase == "input" and broken.final_loss is None
    assert all(run.diverged_step is None and run.final_loss is not None for key, run in runs.items() if key != "res_batch")
    row = depth_trainability_residual.table(runs)[4]
    assert row["final training loss"] == "diverged" and row["stopped"] == "diverged at step 0 (input)"
    metrics = depth_trainability_residual.metrics(config, runs)
    assert metrics["compare_diverged_res_batch"] and metrics["compare_final_loss_res_batch"] is None
    assert depth_trainability_residual.figure(config, runs).axes


# ----------------------------------------------------------------------------- bad configurations

BAD = [
    ("linear-regions", {"depths": "1,5"}, r"every depth must divide units = 24"),
    ("linear-regions", {"units": "0"}, r"units must be >= 1"),
    ("three-layer", {"steps": "0"}, r"steps must be >= 1"),
    ("three-layer", {"lr_he": "-1e-4"}, r"lr_he must be > 0"),
    ("fit-1d", {"lr": "0"}, r"lr must be > 0"),
    ("fit-1d", {"optimizer": "lbfgs"}, r"expected one of adam, sgd"),
    ("fit-2d", {"hidden": "12,0"}, r"hidden must be >= 1"),
    ("fit-2d", {"resolution": "1"}, r"resolution must be >= 2"),
    ("depth-trainability", {"train_samples": "5000"}, r"train_samples must be <= 4000"),
    ("depth-trainability", {"momentum": "1.5"}, r"momentum must be <= 0.999"),
    ("depth-trainability", {"compare_depth": "99"}, r"compare_depth must be even .* try 100"),
    ("depth-trainability", {"compare_depth": "2000"}, r"compare_depth must be <= 1,000, got 2,000"),
    ("depth-trainability", {"compare_lr": "0"}, r"compare_lr must be > 0"),
    ("depth-trainability", {"compare_batch_size": "1"}, r"compare_batch_size must be >= 2"),
    ("depth-trainability", {"train_samples": "201"}, r"a last minibatch of one .* try compare_batch_size=101"),
    ("depth-trainability", {"compare_width": "1000"}, r"compare_width² = .* multiply-adds exceeds the cap 1e\+12"),
    ("depth-trainability", {"compare_epochs": "5000", "compare_batch_size": "2"},
     r"optimizer steps exceeds the cap .*; lower compare_epochs \(or raise compare_batch_size\)"),
]


@pytest.mark.parametrize("name,overrides,message", BAD)
def test_bad_configurations_are_refused(name, overrides, message):
    with pytest.raises(base.ConfigError, match=message):
        base.make_config(name, overrides)
