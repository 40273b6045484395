"""edge-of-chaos: tanh networks near σ*_w² train deeper than ordered or chaotic ones; the theory beside it."""
import json

import numpy as np
import pytest

import depthlab as dl
from depthlab.lab.experiments import base
from depthlab.lab.experiments import edge_of_chaos as eoc


@pytest.fixture(scope="module")
def quick():
    with np.errstate(all="ignore"):   # the experiment manages its own floating-point state
        return eoc.run(base.make_config(eoc, quick=True), progress=None)


@pytest.mark.slow
def test_quick_run_near_critical_trains_deepest(quick):
    m = quick.metrics
    assert m["near_critical_sigma_w2"] == 1.75 and m["critical_sigma_w2"] == pytest.approx(1.761, abs=2e-3)
    # at the deepest quick depth (40) only the near-critical networks still learn
    assert m["accuracy_deepest_near_critical"] > max(m["accuracy_deepest_ordered"], m["accuracy_deepest_chaotic"]) + 0.05
    assert m["trainable_depth_near_critical"] >= max(m["trainable_depth_ordered"], m["trainable_depth_chaotic"])
    assert m["trainable_depth_near_critical"] > min(m["trainable_depth_ordered"], m["trainable_depth_chaotic"])
    # shallow networks train in every phase, far above chance
    assert min(row[0] for row in m["accuracy"]) > 2 * eoc.CHANCE
    assert m["agreement_with_6xi_c"] >= 0.6


@pytest.mark.slow
def test_quick_run_reports_the_theory_and_is_json(quick):
    m = quick.metrics
    for s, bound in zip(m["sigma_w2"], m["six_xi_c"]):
        assert bound == pytest.approx(6 * dl.theory.depth_scales("tanh", s, 0.05).xi_c)
    assert m["six_xi_c"][0] < 30 and m["six_xi_c"][1] > 1000          # ordered σ_w² = 1 vs near critical
    assert np.array(m["accuracy"]).shape == (3, 3)
    assert json.loads(base.metrics_json(m))["trainable_depth"] == m["trainable_depth"]
    assert set(quick.figures) == {"trainability"}
    assert len(quick.tables["training accuracy per σ_w² and depth"]) == 3
    assert "6·ξ_c" in quick.explanation and "trainable" in quick.summary


def test_one_point_is_reproducible_and_learns():
    kwargs = dict(width=8, bias_variance=0.05, optimizer="adam", lr=1e-2, steps=30, batch=32, samples=200, seed=5)
    first = eoc.train_point(1.75, 3, **kwargs)
    assert first == eoc.train_point(1.75, 3, **kwargs)
    assert first["loss"] < first["initial_loss"] and 0.0 <= first["accuracy"] <= 1.0


def test_point_seeds_are_distinct_and_stable():
    seeds = {eoc.point_seed(0, i, j) for i in range(9) for j in range(7)}
    assert len(seeds) == 63 and eoc.point_seed(0, 1, 2) == eoc.point_seed(0, 1, 2) != eoc.point_seed(1, 1, 2)


def test_trainable_depth():
    assert eoc.trainable_depth([10, 20, 40], [0.5, 0.3, 0.1], 0.25) == 20
    assert eoc.trainable_depth([10, 20, 40], [0.5, 0.1, 0.3], 0.25) == 40   # the deepest that reaches it
    assert eoc.trainable_depth([10, 20], [0.1, 0.1], 0.25) == 0


def test_the_6xi_c_curve_diverges_at_the_critical_point():
    critical = dl.theory.critical_weight_variance("tanh", 0.05)
    sigmas, bound = eoc._bound_curve((1.0, 4.0), 0.05, critical)
    assert sigmas.min() == pytest.approx(1.0) and sigmas.max() == pytest.approx(4.0)
    distance = np.abs(sigmas - critical)
    assert np.nanmin(bound[distance < 0.01]) > 1000 and np.nanmax(bound[distance > 0.25]) < 160
    ordered = np.isfinite(bound) & (sigmas < critical)
    chaotic = np.isfinite(bound) & (sigmas > critical)
    assert np.all(np.diff(bound[ordered]) > 0) and np.all(np.diff(bound[chaotic]) < 0)   # rising towards σ*


@pytest.mark.parametrize("overrides, message", [
    ({"sigma_w2": "0,1"}, r"sigma_w2 must be > 0"),
    ({"depths": "0,10"}, r"depths must be >= 1"),
    ({"optimizer": "lbfgs"}, r"optimizer must be one of sgd, .*adam"),
    ({"samples": "5000"}, r"samples must be <= 4000"),
    ({"samples": "10", "batch": "64"}, r"samples must be >= 64"),
    ({"threshold": "1.5"}, r"threshold must be <= 1"),
    ({"depths": "10,10"}, r"depths lists a value twice"),
    ({"workers": "-1"}, r"workers must be >= 0"),
    ({"lr": "0"}, r"lr must be > 0"),
])
def test_bad_config(overrides, message):
    with pytest.raises(base.ConfigError, match=message):
        base.make_config(eoc, overrides)


@pytest.mark.slow
def test_quick_run_writes_a_report(quick, tmp_path):
    files = base.write_outputs(quick, eoc, tmp_path)
    assert files["report"].read_text().count("<img") >= 1
    assert files["trainability"].read_bytes()[:4] == b"\x89PNG"
    assert json.loads(files["metrics"].read_text())["accuracy"] == quick.metrics["accuracy"]
