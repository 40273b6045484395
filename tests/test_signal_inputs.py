"""The instruments (probe, region maps) on inputs at the edges: clear refusals, no NumPy warnings, no huge allocations."""
import warnings

import numpy as np
import pytest

import depthlab as dl


@pytest.fixture
def plain_report():
    x = np.random.default_rng(0).normal(size=(20, 3))
    return dl.probe(dl.MLP(3, [8, 8], 2, rng=0), x)


@pytest.fixture
def block_report():
    x = np.random.default_rng(0).normal(size=(20, 3))
    return dl.probe(dl.ResMLP(3, 8, 2, 2, rng=0), x)


@pytest.mark.parametrize("which", ["plain_report", "block_report"])
def test_values_row_index_is_checked(which, request):
    report = request.getfixturevalue(which)
    name = "activation" if which == "plain_report" else "output"
    rows = len(report.layers)
    np.testing.assert_array_equal(report.values(name, -1), report.values(name, rows - 1))
    with pytest.raises(ValueError, match=rf"row index in \[0, {rows - 1}\]"):
        report.values(name, rows)
    with pytest.raises(ValueError, match="row index"):
        report.values(name, -rows - 1)
    for bad in ("0", 1.0, True, None):
        with pytest.raises(TypeError, match="k must be an int"):
            report.values(name, bad)


@pytest.mark.parametrize("which", ["plain_report", "block_report"])
def test_histogram_bins_are_capped(which, request):
    report = request.getfixturevalue(which)
    with pytest.raises(ValueError, match="bins must be at most"):
        report.histograms(10**9)          # would allocate gigabytes
    counts, edges = next(iter(report.histograms(7)[0].values()))
    assert counts.shape == (7,) and edges.shape == (8,)


def test_theory_and_thresholds_types_are_checked():
    net, x = dl.MLP(3, [8], 2, rng=0), np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(TypeError, match="theory must be True or False"):
        dl.probe(net, x, theory="no")
    with pytest.raises(TypeError, match="thresholds must be a dict"):
        dl.probe(net, x, thresholds=[("rate", 1.2)])
    assert dl.probe(net, x, theory=np.bool_(False)).layers[0].predicted_preactivation_std is None


def test_an_input_whose_square_overflows_is_refused_by_the_theory_only():
    net = dl.MLP(3, [8, 8], 2, rng=0)
    x = np.random.default_rng(0).normal(size=(20, 3)) * 1e300      # finite, but E[x²] is not
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="second moment E\\[x²\\] overflows"):
            dl.probe(net, x)
        report = dl.probe(net, x, theory=False)
    assert report.input_variance == np.inf
    small = dl.probe(net, x / 1e300, theory=False)      # zero biases: f(c·x) = c·f(x) for c > 0
    assert report.layers[-1].preactivation_std == pytest.approx(1e300 * small.layers[-1].preactivation_std, rel=1e-12)


def test_an_overflowing_loss_gradient_leaves_only_the_backward_prediction_out():
    x = np.random.default_rng(0).normal(size=(20, 3))
    net = dl.MLP(3, [8] * 200, 2, init=100.0, rng=0)   # the output overflows to inf, and so does dL/d(output)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = dl.probe(net, x, np.zeros((20, 2)))
    assert report.verdict == "exploding"
    assert all(s.predicted_backward_std is None for s in report.layers)
    assert report.layers[0].predicted_preactivation_std is not None


@pytest.mark.parametrize("make", [lambda: dl.ResMLP(2, 8, 2, 2, rng=0),
                                  lambda: dl.Sequential([dl.Linear(2, 4, rng=0), dl.BatchNorm(4), "relu", dl.Linear(4, 1, rng=1)])])
def test_region_tools_refuse_layers_they_cannot_walk(make):
    net = make()
    with pytest.raises(ValueError, match="walks plain networks of Linear and activation layers"):
        dl.count_linear_regions(net, [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="walks plain networks"):
        dl.linear_regions_2d(net)


def test_region_map_resolution_beyond_memory_is_refused():
    with pytest.raises(ValueError, match="linear_regions_2d's grid of resolution 1000000"):
        dl.linear_regions_2d(dl.MLP(2, [8], 1, rng=0), resolution=10**6)


def test_a_residual_network_exploding_beyond_float64_is_probed_not_crashed():
    from depthlab.lab import probe_network

    x = np.random.default_rng(0).normal(size=(50, 1))
    for net in (probe_network.build(depth=40, width=16, activation="identity", init="normal", sigma2=1e4,
                                    block="preact", rng=0),      # parameter-gradient norms past 1e154
                probe_network.build(depth=4, width=6, block="postact", norm="batch", residual_scale=1e300, rng=0)):
        report = dl.probe(net, x)
        assert report.verdict == "exploding"


def test_residual_theory_past_float64_is_inf_or_a_clear_refusal():
    from depthlab.signal import residual_theory

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = residual_theory.residual_variance(5, 1e100)
    assert q[1] == pytest.approx(1e200) and np.isinf(q[2:]).all()
    with pytest.raises(ValueError, match="leaves float64's range at block 2"):
        residual_theory.residual_gradient_variance(5, 1e100)
