"""edge-of-chaos: tanh networks near σ*_w² train deeper than ordered or chaotic ones; the theory beside it."""
import json

import numpy as np
import pytest

import depthlab as dl
from depthlab.lab.experiments import base
from depthlab.lab.experiments import edge_of_chaos as eoc


@pytest.fixture(scope="module")
def quick(quick_runs):
    return quick_runs["edge-of-chaos"]


def test_defaults_follow_the_paper():
    config = eoc.Config()
    assert config.optimizer == "sgd" and config.width >= 64 and max(config.depths) >= 100
    quick = eoc.Config(**eoc.QUICK)
    assert quick.optimizer == "sgd" and max(quick.depths) >= 50    # quick keeps the depths the claim is about


@pytest.mark.slow
def test_quick_run_near_critical_trains_deepest(quick):
    m = quick.metrics
    assert m["config"]["optimizer"] == "sgd"
    assert m["near_critical_sigma_w2"] == 1.75 and m["critical_sigma_w2"] == pytest.approx(1.761, abs=2e-3)
    # at the deepest quick depth (50) only the near-critical networks still learn
    assert m["accuracy_deepest_near_critical"] > max(m["accuracy_deepest_ordered"], m["accuracy_deepest_chaotic"]) + 0.05
    # near critical trains strictly deeper than both the ordered and the chaotic phase
    assert m["trainable_depth_near_critical"] > max(m["trainable_depth_ordered"], m["trainable_depth_chaotic"])
    # shallow networks train in every phase, far above chance
    assert min(row[0] for row in m["accuracy"]) > 2 * eoc.CHANCE
    assert m["agreement_with_6xi_c"] >= 0.75
    (claim,) = quick.claims
    assert claim.checks[0][1], claim.checks[0]           # the ordering half of the claim holds at quick size


@pytest.mark.slow
def test_quick_run_reports_the_theory_and_is_json(quick):
    m = quick.metrics
    for s, bound in zip(m["sigma_w2"], m["six_xi_c"]):
        assert bound == pytest.approx(6 * dl.theory.depth_scales("tanh", s, 0.05).xi_c)
    assert m["six_xi_c"][0] < 30 and m["six_xi_c"][1] > 1000          # ordered σ_w² = 1 vs near critical
    assert np.array(m["accuracy"]).shape == (3, 4)
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
    ({"workers": "2", "scheduler": "tcp://127.0.0.1:8786"}, r"give one of them"),
])
def test_bad_config(overrides, message):
    with pytest.raises(base.ConfigError, match=message):
        base.make_config(eoc, overrides)


@pytest.mark.slow
def test_quick_run_writes_a_report(quick):
    files = quick.files
    html = files["report"].read_text()
    assert html.count("<img") >= 1 and "Claims tested" in html and "Schoenholz et al. 2017" in html
    assert files["trainability"].read_bytes()[:4] == b"\x89PNG"
    assert json.loads(files["metrics"].read_text())["accuracy"] == quick.metrics["accuracy"]


def test_an_unreachable_scheduler_is_a_config_error():
    config = base.make_config(eoc, {"sigma_w2": "1.75", "depths": "2", "steps": "1", "samples": "64", "width": "4",
                                    "scheduler": "tcp://127.0.0.1:1"})
    with pytest.raises(base.ConfigError, match="scheduler=tcp://127.0.0.1:1: cannot reach a Dask scheduler"):
        eoc.run(config)


@pytest.mark.parametrize("agreement, near, verdict", [(0.9, 100, "reproduced"), (0.8, 100, "partly"),
                                                     (0.9, 35, "partly"), (0.5, 20, "not reproduced")])
def test_the_claim_is_judged_from_the_metrics(agreement, near, verdict):
    metrics = {"trainable_depth_near_critical": near, "trainable_depth_ordered": 35, "trainable_depth_chaotic": 20,
               "trainable_depth": [35, near, 20], "sigma_w2": [1.0, 1.75, 4.0], "near_critical_sigma_w2": 1.75,
               "agreement_with_6xi_c": agreement, "config": {"width": 64, "steps": 1000, "optimizer": "sgd"}}
    (claim,) = eoc.claims(metrics)
    assert claim.verdict == verdict and "width 64, 1000 sgd steps" in claim.budget


def test_scheduler_runs_the_grid_on_a_dask_cluster_with_the_local_numbers():
    from distributed import LocalCluster

    tiny = {"sigma_w2": "1,1.75", "depths": "2,3", "steps": "3", "samples": "64", "width": "4"}
    local = eoc.run(base.make_config(eoc, {**tiny, "workers": "1"})).metrics
    with LocalCluster(n_workers=1, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        remote = eoc.run(base.make_config(eoc, {**tiny, "scheduler": cluster.scheduler_address})).metrics
    assert remote["accuracy"] == local["accuracy"] and remote["loss"] == local["loss"]
