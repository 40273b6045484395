"""dynamical-isometry: Jacobian spectra of Gaussian and orthogonal networks against free probability.

References: closed forms (ReLU's μ₁ = μ₂ = ½; a linear orthogonal network is exactly
isometric; a product of L Ginibre matrices has Var(s²) = L), SciPy quadrature for tanh's μ_k,
and the quick run's ordering (orthogonal tanh narrower than Gaussian by SPREAD_FACTOR at depth ≥ 50).
"""
import math

import numpy as np
import pytest
from scipy import integrate

import depthlab as dl
from depthlab.lab.experiments import base
from depthlab.lab.experiments import dynamical_isometry as di


def test_relu_moments_are_exact():
    point = di.critical("relu", 0.0)
    assert point.weight_variance == 2.0 and point.bias_variance == 0.0
    assert point.mu1 == pytest.approx(0.5, abs=1e-12) and point.mu2 == pytest.approx(0.5, abs=1e-12)
    assert point.spread("orthogonal", 50) == pytest.approx(math.sqrt(50))       # Var(s²) = L
    assert point.spread("gaussian", 50) == pytest.approx(math.sqrt(100))        # Var(s²) = 2L


@pytest.mark.parametrize("bias_variance", [1e-5, 0.05])
def test_tanh_critical_point_and_moments_against_quadrature(bias_variance):
    point = di.critical("tanh", bias_variance)
    q = point.q_star
    assert q == pytest.approx(dl.theory.fixed_point("tanh", point.weight_variance, bias_variance))

    def moment(power):
        return integrate.quad(lambda z: (1 - np.tanh(math.sqrt(q) * z) ** 2) ** power * np.exp(-z * z / 2)
                              / math.sqrt(2 * math.pi), -np.inf, np.inf, epsabs=1e-13)[0]

    assert point.mu1 == pytest.approx(moment(2), rel=1e-9) and point.mu2 == pytest.approx(moment(4), rel=1e-9)
    assert point.weight_variance * point.mu1 == pytest.approx(1.0, abs=1e-7)      # χ₁ = 1: critical


def test_small_q_star_makes_orthogonal_tanh_nearly_linear():
    point = di.critical("tanh", 1e-5)
    assert point.q_star < 0.03
    assert point.spread("orthogonal", 100) < 0.1 * point.spread("gaussian", 100)


def test_a_linear_orthogonal_network_is_exactly_isometric():
    point = di.Critical(1.0, 0.0, 1.0, 1.0, 1.0)
    net = di.network(di.Setting("identity", "orthogonal", "linear"), point, 30, 40, np.random.default_rng(0))
    s = dl.jacobian_spectrum(net, np.random.default_rng(1).standard_normal((2, 40)))
    np.testing.assert_allclose(s, 1.0, atol=1e-10)
    assert point.spread("orthogonal", 30) == 0.0


def test_a_linear_gaussian_network_spreads_like_the_theory():
    """A product of L Ginibre matrices (variance 1/D): mean s² = 1, Var(s²) = L as D → ∞."""
    point, depth, width = di.Critical(1.0, 0.0, 1.0, 1.0, 1.0), 3, 300
    values = np.concatenate([
        dl.jacobian_spectrum(di.network(di.Setting("identity", "gaussian", "linear"), point, depth, width,
                                        np.random.default_rng(seed)), np.ones((1, width))).ravel()
        for seed in range(4)])
    stats = di.statistics(values)
    assert stats["mean_s2"] == pytest.approx(1.0, abs=0.05)
    assert stats["std_s2"] == pytest.approx(point.spread("gaussian", depth), rel=0.15)


def test_inputs_start_the_first_layer_at_q_star():
    point = di.critical("tanh", 1e-5)
    x = di.inputs_at(point, 3, 50, np.random.default_rng(0))
    q0 = point.weight_variance * np.mean(x * x, axis=1) + point.bias_variance
    np.testing.assert_allclose(q0, point.q_star, rtol=1e-12)


def test_statistics_of_a_known_spectrum():
    stats = di.statistics(np.array([0.5, 1.0, 1.0, 2.0]))
    assert stats["mean_s2"] == pytest.approx((0.25 + 1 + 1 + 4) / 4)
    assert stats["share_near_1"] == pytest.approx(0.5)           # 0.5 and 2 are beyond a factor √2


@pytest.fixture(scope="module")
def quick(quick_runs):
    return quick_runs["dynamical-isometry"]


@pytest.mark.slow
def test_quick_run_orthogonal_tanh_is_narrower_by_the_stated_factor(quick):
    m = quick.metrics
    at = m["compared_depth"]
    assert at >= 50 and max(m["depths"]) == 200        # quick keeps the depths
    j = m["depths"].index(at)
    assert m["std_s2_tanh_gaussian"][j] >= di.SPREAD_FACTOR * m["std_s2_tanh_orthogonal"][j]
    assert m["spread_ratio_at_50"] >= di.SPREAD_FACTOR
    # orthogonal tanh follows the free-probability prediction closely at every depth
    np.testing.assert_allclose(m["std_s2_tanh_orthogonal"], m["predicted_std_s2_tanh_orthogonal"], rtol=0.25)
    # most singular values of orthogonal tanh stay near 1; Gaussian and ReLU lose them
    assert m["share_near_1_tanh_orthogonal"][j] > 0.8
    assert max(m["share_near_1_tanh_gaussian"][j], m["share_near_1_relu_orthogonal"][j]) < 0.5
    assert m["share_near_1_tanh_gaussian"][-1] < m["share_near_1_tanh_gaussian"][0]


@pytest.mark.slow
def test_quick_run_orthogonal_learns_faster(quick):
    steps = quick.metrics["steps_to_target"]
    assert steps["orthogonal"] is not None
    assert steps["gaussian"] is None or steps["orthogonal"] < steps["gaussian"]
    verdicts = {c.source: c.verdict for c in quick.claims}
    assert verdicts["Pennington, Schoenholz & Ganguli 2017"] == "reproduced"
    assert verdicts["Saxe et al. 2014; Pennington et al. 2017"] == "reproduced"
    assert set(quick.figures) == {"spectra", "spread", "learning_speed"}


@pytest.mark.parametrize("overrides, message", [
    ({"depths": "0,10"}, r"depths must be >= 1"),
    ({"depths": "10,10"}, r"depths lists a value twice"),
    ({"bias_variance": "0"}, r"bias_variance must be > 0"),
    ({"train_samples": "10"}, r"train_samples must be >= 64"),
    ({"lr": "-1"}, r"lr must be > 0"),
    ({"width": "0"}, r"width must be >= 1"),
])
def test_bad_config(overrides, message):
    with pytest.raises(base.ConfigError, match=message):
        base.make_config(di, overrides)
