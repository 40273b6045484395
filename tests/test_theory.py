"""Mean-field theory against independent references.

References: closed forms written out here, scipy.integrate.quad, a Gauss–Hermite product rule
(a different quadrature from the module's graded Gauss–Legendre), central differences, and
measurements on wide random networks built directly in NumPy (not depthlab's model code).
Finite-width fluctuations of a depth-L, width-n ReLU net have Var(ln ‖h_L‖²) ≈ 5L/n, which
sets the tolerances of the measurement tests.
"""
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import integrate, optimize, special

from depthlab.nn import activations
from depthlab.signal import theory
from depthlab.nn.activations import Activation


# --------------------------------------------------------------------------------------
# independent references
# --------------------------------------------------------------------------------------

def quad_expectation(g, q):
    """E[g(√q z)] by adaptive quadrature, split at 0 where kinked activations bend."""
    root = math.sqrt(q)

    def integrand(z):
        return float(g(np.asarray(root * z))) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    left = integrate.quad(integrand, -np.inf, 0.0, epsabs=1e-14, epsrel=1e-12, limit=200)[0]
    right = integrate.quad(integrand, 0.0, np.inf, epsabs=1e-14, epsrel=1e-12, limit=200)[0]
    return left + right


def hermite_joint(g, q, c, nodes=150):
    """E[g(u1) g(u2)] by a Gauss–Hermite product rule (smooth g only)."""
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / math.sqrt(2 * math.pi)
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    u1 = math.sqrt(q) * z1
    u2 = math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
    return float(np.einsum("i,j,ij->", w, w, g(u1) * g(u2)))


def by_quadrature(activation):
    """The same activation under a name without a closed form, forcing the quadrature path."""
    return Activation(activation.name + "_by_quadrature", activation.function, activation.derivative,
                      activation.gain, kinks=(0.0,))


def tanh_moments(q):
    return (quad_expectation(lambda f: np.tanh(f) ** 2, q),
            quad_expectation(lambda f: (1 - np.tanh(f) ** 2) ** 2, q))


def sech4(f):
    return (1 - np.tanh(f) ** 2) ** 2


# --------------------------------------------------------------------------------------
# closed forms (ReLU family) and the quadrature path
# --------------------------------------------------------------------------------------

CLOSED = [activations.get("relu"), activations.get("leaky_relu", negative_slope=0.2), activations.get("identity")]


@pytest.mark.parametrize("act", CLOSED, ids=repr)
def test_closed_forms_match_quadrature(act):
    plain = by_quadrature(act)
    for q in (1e-4, 0.7, 30.0, 1e5):
        assert theory.chi1(act, 1.3, 0.2, q=q) == pytest.approx(theory.chi1(plain, 1.3, 0.2, q=q), rel=1e-12)
    np.testing.assert_allclose(theory.variance_map(act, 1.7, 0.3, 0.5, 6),
                               theory.variance_map(plain, 1.7, 0.3, 0.5, 6), rtol=1e-12)
    c = np.array([-1.0, -0.95, -0.3, 0.0, 0.4, 0.9, 0.999, 0.999999, 1.0])
    for q in (0.05, 2.0, 400.0):
        np.testing.assert_allclose(theory.correlation_map(act, 1.5, 0.1, c, q=q),
                                   theory.correlation_map(plain, 1.5, 0.1, c, q=q), rtol=0, atol=1e-12)


def test_relu_closed_forms_against_scipy_and_arc_cosine_kernel():
    for q in (0.3, 4.0):
        assert quad_expectation(lambda f: np.maximum(f, 0) ** 2, q) == pytest.approx(q / 2, rel=1e-11)
        assert theory.variance_map("relu", 1.0, 0.0, q, 1)[1] == pytest.approx(q / 2, rel=1e-15)
        assert theory.chi1("relu", 2.0, 0.0, q=q) == 1.0
    # Cho & Saul: c' = (√(1 − c²) + (π − arccos c) c) / π for σ_b² = 0
    c = np.linspace(-1, 1, 41)
    expected = (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c) / np.pi
    np.testing.assert_allclose(theory.correlation_map("relu", 2.0, 0.0, c, q=1.0), expected, atol=1e-14)


def test_relu_closed_form_is_the_limit_of_a_sharp_softplus():
    beta = 2000.0
    smooth = Activation("sharp_softplus", lambda f: np.logaddexp(0.0, beta * f) / beta,
                        lambda f, h: special.expit(beta * f), 1.0)
    for q in (0.5, 3.0):
        assert theory.variance_map(smooth, 2.0, 0.0, q, 1)[1] == pytest.approx(q, rel=1e-4)
        assert theory.chi1(smooth, 2.0, 0.0, q=q) == pytest.approx(1.0, abs=2e-3)
    assert theory.correlation_map(smooth, 2.0, 0.0, 0.3, q=1.0) == pytest.approx(
        theory.correlation_map("relu", 2.0, 0.0, 0.3, q=1.0), abs=1e-3)


def test_relu_he_keeps_the_variance_constant():
    np.testing.assert_array_equal(theory.variance_map("relu", 2.0, 0.0, 1.7, 30), np.full(31, 1.7))
    q = theory.variance_map("relu", 1.0, 0.0, 1.0, 10)
    np.testing.assert_allclose(q, 0.5 ** np.arange(11), rtol=1e-15)


@pytest.mark.parametrize("name, params, q", [
    ("tanh", {}, 0.8), ("sigmoid", {}, 5.0), ("gelu", {}, 0.8), ("silu", {}, 40.0),
    ("elu", {"alpha": 0.5}, 0.8), ("selu", {}, 60.0), ("softplus", {}, 0.8), ("tanh", {}, 400.0),
])
def test_quadrature_matches_scipy(name, params, q):
    act = activations.get(name, **params)
    second = quad_expectation(lambda f: act.function(f) ** 2, q)
    grad_second = quad_expectation(lambda f: act.grad(f) ** 2, q)
    assert theory.variance_map(act, 1.3, 0.1, q, 1)[1] == pytest.approx(1.3 * second + 0.1, rel=1e-11)
    assert theory.chi1(act, 1.3, 0.1, q=q) == pytest.approx(1.3 * grad_second, rel=1e-11)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_quadrature_stays_accurate_for_steep_activations_at_large_q(name):
    # reference in f-space, where φ' lives on |f| < 40 whatever q is
    act = activations.get(name)
    for q in (1e3, 1e6, 1e12):
        density = lambda f: math.exp(-f * f / (2 * q)) / math.sqrt(2 * math.pi * q)  # noqa: E731
        expected = integrate.quad(lambda f: float(act.grad(np.asarray(f))) ** 2 * density(f), -40, 40,
                                  points=[0.0], epsabs=0, epsrel=1e-13, limit=200)[0]
        assert theory.chi1(act, 1.0, 0.0, q=q) == pytest.approx(expected, rel=1e-12)


def test_gaussian_expectation_closed_forms():
    for q in (0.01, 1.0, 9.0):
        assert theory.gaussian_expectation(np.cos, q) == pytest.approx(math.exp(-q / 2), rel=1e-12, abs=1e-15)
        assert theory.gaussian_expectation(np.abs, q, kinks=[0.0]) == pytest.approx(math.sqrt(2 * q / math.pi),
                                                                                   rel=1e-13)
        assert theory.gaussian_expectation(lambda f: f**4, q) == pytest.approx(3 * q * q, rel=1e-12)
    # E[(f − 1)⁺] for f ~ N(0, 4) is 2 ϕ(1/2) − Φ(−1/2)
    expected = 2.0 * math.exp(-0.125) / math.sqrt(2 * math.pi) - special.ndtr(-0.5)
    assert theory.gaussian_expectation(lambda f: np.maximum(f - 1.0, 0.0), 4.0, kinks=[1.0]) == pytest.approx(
        expected, rel=1e-13)


# --------------------------------------------------------------------------------------
# fixed points
# --------------------------------------------------------------------------------------

def test_tanh_fixed_point_solves_the_map():
    q_star = theory.fixed_point("tanh", 1.5, 0.05)
    second, _ = tanh_moments(q_star)
    assert 1.5 * second + 0.05 == pytest.approx(q_star, rel=1e-10)
    assert theory.variance_map("tanh", 1.5, 0.05, 1.0, 200)[-1] == pytest.approx(q_star, rel=1e-11)
    assert theory.fixed_point("tanh", 1.5, 0.05, q0=50.0) == pytest.approx(q_star, rel=1e-11)


def test_fixed_point_special_cases():
    assert theory.fixed_point("relu", 2.0, 0.0, q0=3.7) == 3.7          # every q is fixed at He
    assert theory.fixed_point("relu", 1.0, 0.3) == pytest.approx(0.6, rel=1e-15)
    assert theory.fixed_point("relu", 1.0, 0.0) == 0.0
    assert theory.fixed_point("tanh", 0.5, 0.0) == 0.0                   # the signal dies out
    assert theory.fixed_point("selu", 1.0, 0.0) == pytest.approx(1.0, abs=1e-6)   # self-normalizing
    # near criticality iteration crawls; the bracketing root finder does not
    q = theory.fixed_point("relu", 1.999, 0.01)
    assert q == pytest.approx(0.01 / (1 - 1.999 / 2), rel=1e-12)


@pytest.mark.parametrize("name, sw2, sb2", [("relu", 2.5, 0.0), ("relu", 2.0, 0.1), ("gelu", 3.0, 0.0),
                                            ("elu", 2.5, 0.2), ("identity", 1.0, 0.5)])
def test_fixed_point_refuses_unbounded_growth(name, sw2, sb2):
    with pytest.raises(ValueError, match="grows without bound"):
        theory.fixed_point(name, sw2, sb2)


# --------------------------------------------------------------------------------------
# the edge of chaos
# --------------------------------------------------------------------------------------

def test_relu_family_critical_points_are_exact():
    assert theory.critical_weight_variance("relu", 0.0) == 2.0
    assert theory.critical_weight_variance("relu") == 2.0
    assert theory.critical_weight_variance("identity") == 1.0
    assert theory.critical_weight_variance({"name": "leaky_relu", "negative_slope": 0.2}) == pytest.approx(2 / 1.04)
    np.testing.assert_array_equal(theory.critical_line("relu", [0.0, 0.0]), [2.0, 2.0])


def test_tanh_critical_point_matches_independent_quadrature():
    bias = 0.05

    def fixed(sw2):
        return optimize.brentq(lambda q: sw2 * tanh_moments(q)[0] + bias - q, 1e-3, 10.0, xtol=1e-14, rtol=1e-14)

    expected = optimize.brentq(lambda sw2: sw2 * tanh_moments(fixed(sw2))[1] - 1.0, 1.2, 2.5, xtol=1e-12)
    assert theory.critical_weight_variance("tanh", bias) == pytest.approx(expected, abs=1e-6)
    assert theory.critical_weight_variance("tanh", 0.0) == pytest.approx(1.0, abs=1e-12)


def test_critical_line_is_where_chi1_is_one():
    biases = np.array([0.0, 0.05, 0.3, 1.0])
    line = theory.critical_line("tanh", biases)
    assert np.all(np.diff(line) > 0)
    for sw2, sb2 in zip(line[1:], biases[1:]):
        assert theory.chi1("tanh", sw2, sb2) == pytest.approx(1.0, abs=1e-9)
    assert theory.critical_weight_variance("elu", 0.1) == pytest.approx(
        theory.critical_line("elu", [0.1])[0], rel=1e-14)
    # sigmoid does have one, far out: E[σ'²] is small, so σ_w² must be large
    sigmoid = theory.critical_weight_variance("sigmoid")
    assert 90 < sigmoid < 120
    assert theory.chi1("sigmoid", sigmoid, 0.0) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name, bias", [("relu", 0.1), ("softplus", 0.0), ("gelu", 0.0), ("silu", 0.1)])
def test_no_edge_of_chaos(name, bias):
    with pytest.raises(ValueError, match="no edge of chaos"):
        theory.critical_weight_variance(name, bias)


# --------------------------------------------------------------------------------------
# chi1 against a Monte-Carlo measurement
# --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_chi1_tanh_matches_monte_carlo():
    sw2, sb2, width, burn_in, layers, batch = 1.5, 0.05, 1000, 5, 10, 32
    ratios = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        h = rng.standard_normal((batch, width))
        weights, preactivations = [], []
        for layer in range(burn_in + layers):           # the first layers carry q to q*
            weight = rng.standard_normal((width, width)) * math.sqrt(sw2 / width)
            f = h @ weight.T + rng.standard_normal(width) * math.sqrt(sb2)
            h = np.tanh(f)
            if layer >= burn_in:
                weights.append(weight)
                preactivations.append(f)
        grad = rng.standard_normal((batch, width))      # dL/dh at the top
        previous = np.sum(grad * grad, axis=1)
        for weight, f in zip(weights[::-1], preactivations[::-1]):
            grad = (grad * (1 - np.tanh(f) ** 2)) @ weight
            current = np.sum(grad * grad, axis=1)
            ratios.append(current / previous)
            previous = current
    measured = float(np.mean(ratios))
    assert measured == pytest.approx(theory.chi1("tanh", sw2, sb2), rel=0.01)


# --------------------------------------------------------------------------------------
# the correlation map and depth scales
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, sw2, sb2", [("tanh", 1.5, 0.05), ("tanh", 4.0, 0.05), ("relu", 1.5, 0.2),
                                            ("gelu", 1.5, 0.1), ("elu", 1.2, 0.1), ("sigmoid", 4.0, 0.1)])
def test_correlation_map_fixes_one_and_is_monotone(name, sw2, sb2):
    c = np.linspace(-1, 1, 81)
    mapped = theory.correlation_map(name, sw2, sb2, c)
    assert mapped[-1] == 1.0
    assert theory.correlation_map(name, sw2, sb2, 1.0) == 1.0
    assert np.all(np.diff(mapped) > 0)
    assert np.all(np.abs(mapped) <= 1.0)
    assert mapped.shape == c.shape
    assert isinstance(theory.correlation_map(name, sw2, sb2, 0.5), float)


def test_tanh_correlation_map_matches_hermite_product_rule():
    q = theory.fixed_point("tanh", 2.5, 0.1)
    for c in (-0.7, 0.0, 0.35, 0.97):
        expected = (2.5 * hermite_joint(np.tanh, q, c) + 0.1) / q
        assert theory.correlation_map("tanh", 2.5, 0.1, c) == pytest.approx(expected, abs=1e-10)


def test_depth_scales_ordered_phase():
    scales = theory.depth_scales("tanh", 1.5, 0.05)
    assert scales.c_star == 1.0
    assert scales.chi_c == scales.chi1 < 1
    assert scales.xi_c == pytest.approx(-1 / math.log(scales.chi1), rel=1e-14)
    assert 0 < scales.xi_q < scales.xi_c < math.inf
    # χ_q is the slope of the variance map at q*: compare with a central difference of it
    step = 1e-4

    def length_map(q):
        return 1.5 * tanh_moments(q)[0] + 0.05

    slope = (length_map(scales.q_star + step) - length_map(scales.q_star - step)) / (2 * step)
    assert scales.chi_q == pytest.approx(slope, abs=1e-7)
    assert scales.xi_q == pytest.approx(-1 / math.log(slope), rel=1e-6)
    with pytest.raises(AttributeError):
        scales.xi_c = 0.0                                  # frozen


def test_depth_scales_chaotic_phase_use_the_slope_at_c_star():
    scales = theory.depth_scales("tanh", 4.0, 0.05)
    assert scales.chi1 > 1 and 0 < scales.c_star < 1
    q, c = scales.q_star, scales.c_star
    # c* is a fixed point of the map, checked with an independent product rule
    assert (4.0 * hermite_joint(np.tanh, q, c) + 0.05) / q == pytest.approx(c, abs=1e-10)
    step = 1e-5
    slope = (theory.correlation_map("tanh", 4.0, 0.05, c + step)
             - theory.correlation_map("tanh", 4.0, 0.05, c - step)) / (2 * step)
    assert scales.chi_c == pytest.approx(slope, rel=1e-6)
    assert scales.chi_c < 1 < scales.chi1
    assert scales.xi_c == pytest.approx(-1 / math.log(scales.chi_c), rel=1e-12)
    assert theory.correlation_fixed_point("tanh", 4.0, 0.05) == c
    # without bias the odd map keeps c* = 0
    assert theory.depth_scales("tanh", 2.0, 0.0).c_star == pytest.approx(0.0, abs=1e-12)


def test_depth_scales_diverge_at_criticality():
    critical = theory.critical_weight_variance("tanh", 0.05)
    scales = theory.depth_scales("tanh", critical, 0.05)
    assert scales.xi_c > 1e6
    assert scales.chi1 == pytest.approx(1.0, abs=1e-9)
    near = [theory.depth_scales("tanh", critical * factor, 0.05).xi_c for factor in (0.8, 0.95, 0.99)]
    assert near[0] < near[1] < near[2] < scales.xi_c
    relu = theory.depth_scales("relu", 2.0, 0.0)
    assert relu.xi_q == relu.xi_c == math.inf and relu.chi1 == 1.0


def test_depth_scales_when_the_signal_dies_out():
    scales = theory.depth_scales("tanh", 0.5, 0.0)
    assert scales.q_star == 0.0 and scales.c_star == 1.0
    assert scales.chi1 == pytest.approx(0.5, rel=1e-12)
    assert scales.xi_q == pytest.approx(-1 / math.log(0.5), rel=1e-9)
    assert scales.xi_c == math.inf and scales.chi_c == 1.0


# --------------------------------------------------------------------------------------
# mean field against plain NumPy ReLU networks
# --------------------------------------------------------------------------------------

def relu_second_moments(widths, weight_variance, rng, batch, dtype=np.float64):
    """Per-layer mean of f_k² of a bias-free ReLU net with weights N(0, weight_variance/fan_in)."""
    h = rng.standard_normal((batch, widths[0]), dtype=dtype)
    moments = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        weight = rng.standard_normal((fan_out, fan_in), dtype=dtype) * dtype(math.sqrt(weight_variance / fan_in))
        f = h @ weight.T
        moments.append(float(np.mean(np.square(f, dtype=np.float64))))
        h = np.maximum(f, 0)
    return np.array(moments)


@pytest.mark.slow
def test_relu_he_mean_field_matches_measurement():
    seeds, depth, width = 20, 20, 512
    measured = np.array([relu_second_moments([width] * (depth + 1), 2.0, np.random.default_rng(seed), 32,
                                             np.float32) for seed in range(seeds)])
    predicted = theory.variance_map("relu", 2.0, 0.0, 2.0, depth - 1)      # q_0 = 2·Var(x) = 2
    mean = measured.mean(axis=0)
    assert mean.mean() / predicted.mean() == pytest.approx(1.0, abs=0.10)
    # per layer: within 4 standard errors (finite-width fluctuations grow like depth/width)
    error = measured.std(axis=0) / math.sqrt(seeds)
    assert np.all(np.abs(mean - predicted) <= 4 * error + 0.02 * predicted)
    # one step of the map: q_{k+1}/q_k = σ_w²/2 = 1 from each measured layer
    ratios = measured[:, 1:] / measured[:, :-1]
    assert ratios.mean() == pytest.approx(1.0, abs=0.015)


@pytest.mark.slow
def test_relu_half_variance_vanishes_at_the_predicted_rate():
    measured = np.array([relu_second_moments([500] * 31, 1.0, np.random.default_rng(100 + seed), 32)
                         for seed in range(3)])
    log_ratio = np.log(measured[:, 29] / measured[:, 0]).mean()
    predicted = theory.variance_map("relu", 1.0, 0.0, 1.0, 29)
    assert math.log(predicted[-1] / predicted[0]) == pytest.approx(29 * math.log(0.5), rel=1e-14)
    assert abs(log_ratio - 29 * math.log(0.5)) < 1.5


def measure_relu_net(widths, weight_variances, rng, batch):
    """Forward and backward pass of a bias-free ReLU net (identity output), pooled statistics."""
    h = rng.standard_normal((batch, widths[0]))
    weights, preactivations, hidden = [], [], []
    last = len(widths) - 2
    for k, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        weight = rng.standard_normal((fan_out, fan_in)) * math.sqrt(weight_variances[k])
        f = h @ weight.T
        weights.append(weight)
        preactivations.append(f)
        if k < last:
            h = np.maximum(f, 0)
            hidden.append(h)
    grad = rng.standard_normal(preactivations[-1].shape)      # dL/d output, variance 1
    grads = [grad]
    for k in range(last - 1, -1, -1):
        grad = (grad @ weights[k + 1]) * (preactivations[k] > 0)
        grads.append(grad)
    return (np.array([np.mean(f * f) for f in preactivations]), np.array([h.var() for h in hidden]),
            np.array([np.mean(g * g) for g in grads[::-1]]))


@pytest.mark.slow
def test_predicted_std_matches_a_he_initialized_width_80_net():
    depth, width, seeds = 50, 80, 32
    widths = [width] * (depth + 1) + [1]
    spec = [("relu", 2 / width, 0.0, width)] * depth + [("identity", 2 / width, 0.0, width, 1)]
    predicted = theory.predicted_std(spec)
    runs = [measure_relu_net(widths, [2 / width] * (depth + 1), np.random.default_rng(seed), 64)
            for seed in range(seeds)]
    for i, expected in enumerate((predicted.preactivation_std, predicted.activation_std, predicted.backward_std)):
        measured = np.array([run[i] for run in runs])
        # every layer's seed-averaged std within 40% (ln-variance wanders ~√(5·depth/width) per net) ...
        np.testing.assert_allclose(np.sqrt(measured.mean(axis=0)), expected, rtol=0.4)
        # ... the three layers nearest the start of the pass within 10%, one step of the map
        # within 2% on average
        forward = i < 2
        near = slice(0, 3) if forward else slice(-3, None)
        np.testing.assert_allclose(np.sqrt(measured.mean(axis=0))[near], expected[near], rtol=0.1)
        steps = measured[:, 1:] / measured[:, :-1] if forward else measured[:, :-1] / measured[:, 1:]
        expected_steps = (expected[1:] / expected[:-1]) ** 2 if forward else (expected[:-1] / expected[1:]) ** 2
        assert (steps / expected_steps).mean() == pytest.approx(1.0, abs=0.02)
    np.testing.assert_allclose(predicted.activation_std, math.sqrt(1 - 1 / math.pi), rtol=1e-12)


def seed_notebook_hidden_stds(K, D, sigma_sq_omega):
    """Seed 000's init_params + compute_network_output, with its own RandomState(0) stream."""
    stream = np.random.RandomState(0)
    weights = [None] * (K + 1)
    weights[0] = stream.normal(size=(D, 1)) * np.sqrt(sigma_sq_omega)
    weights[-1] = stream.normal(size=(1, D)) * np.sqrt(sigma_sq_omega)
    for layer in range(1, K):
        weights[layer] = stream.normal(size=(D, D)) * np.sqrt(sigma_sq_omega)
    h = stream.normal(size=(1, 1000))
    stds = []
    for layer in range(K):
        h = np.maximum(weights[layer] @ h, 0.0)
        stds.append(np.std(h))
    return np.array(stds)


def test_seed_notebook_regimes():
    spec = [("relu", 1.0, 0.0, 1)] + [("relu", 1.0, 0.0, 80)] * 49 + [("identity", 1.0, 0.0, 80, 1)]
    predicted = theory.predicted_std(spec)
    measured = seed_notebook_hidden_stds(50, 80, 1.0)
    np.testing.assert_allclose(measured[:5], [0.622, 3.108, 21.075, 161.638, 1125.582], atol=6e-4)  # as printed
    rate = math.log(math.sqrt(80 / 2))                   # std grows by sqrt(D σ²_Ω / 2) per layer
    np.testing.assert_allclose(np.diff(np.log(predicted.activation_std)), rate, rtol=1e-12)
    assert np.diff(np.log(measured)).mean() == pytest.approx(rate, rel=0.03)
    assert predicted.activation_std[0] == pytest.approx(math.sqrt(0.5 - 0.5 / math.pi))
    # gradients grow by the same factor going backward; the last hidden layer sees fan_out = 1
    np.testing.assert_allclose(np.diff(np.log(predicted.backward_std[:-1])), -rate, rtol=1e-12)
    assert predicted.backward_std[-2] == pytest.approx(math.sqrt(0.5))
    # σ²_Ω = 2/D: the printed stds hover around the prediction, which is constant
    he = theory.predicted_std([("relu", 2 / 80, 0.0, 1)] + [("relu", 2 / 80, 0.0, 80)] * 49
                              + [("identity", 2 / 80, 0.0, 80, 1)])
    np.testing.assert_allclose(he.activation_std, math.sqrt(2 / 80 * (0.5 - 0.5 / math.pi)), rtol=1e-12)
    measured = seed_notebook_hidden_stds(50, 80, 2 / 80)
    np.testing.assert_allclose(measured[:3], [0.098, 0.078, 0.083], atol=6e-4)
    assert measured.mean() == pytest.approx(he.activation_std[0], rel=0.25)


def test_backward_uses_the_fan_out_of_the_next_layer():
    widths = [100, 400, 50, 300, 200, 10]
    variances = [2.0 / fan_in for fan_in in widths[:-1]]
    spec = [{"activation": "relu", "weight_variance": v, "fan_in": n} for v, n in zip(variances[:-1], widths)]
    spec.append({"activation": "identity", "weight_variance": variances[-1], "fan_in": widths[-2],
                 "fan_out": widths[-1]})
    predicted = theory.predicted_std(spec)
    runs = [measure_relu_net(widths, variances, np.random.default_rng(seed), 32) for seed in range(40)]
    gradients = np.array([run[2] for run in runs]).mean(axis=0)
    np.testing.assert_allclose(np.sqrt(gradients), predicted.backward_std, rtol=0.08)
    forward = np.array([run[0] for run in runs]).mean(axis=0)
    np.testing.assert_allclose(np.sqrt(forward), predicted.preactivation_std, rtol=0.08)
    # the same recursion with the fan-in of Ω_{k+1} in place of its fan-out misses by factors up to 8
    wrong = [1.0]
    for k in range(len(widths) - 3, -1, -1):
        wrong.append(0.5 * widths[k + 1] * variances[k + 1] * wrong[-1])
    assert np.max(np.abs(np.log(gradients / np.array(wrong[::-1])))) > math.log(4)


def fake_net(weights, biases, names):
    linears = [SimpleNamespace(weight=SimpleNamespace(data=w), bias=None if b is None else SimpleNamespace(data=b))
               for w, b in zip(weights, biases)]
    return SimpleNamespace(linears=linears, layer_activations=[activations.get(n) for n in names])


def test_predicted_std_net_form_equals_spec_form():
    rng = np.random.default_rng(3)
    widths = [6, 40, 30, 3]
    weights = [rng.normal(0, 0.3, size=(o, i)) for i, o in zip(widths[:-1], widths[1:])]
    biases = [rng.normal(0, 0.1, size=o) for o in widths[1:-1]] + [None]
    names = ["tanh", "relu", "identity"]
    from_net = theory.predicted_std(fake_net(weights, biases, names), input_variance=2.0,
                                    grad_output_variance=0.5)
    spec = [{"activation": n, "weight_variance": float(np.var(w)),
             "bias_variance": 0.0 if b is None else float(np.var(b)), "fan_in": w.shape[1], "fan_out": w.shape[0]}
            for w, b, n in zip(weights, biases, names)]
    from_spec = theory.predicted_std(spec, input_variance=2.0, grad_output_variance=0.5)
    for field in ("preactivation_std", "activation_std", "backward_std"):
        np.testing.assert_array_equal(getattr(from_net, field), getattr(from_spec, field))
    assert from_net.preactivation_std.shape == (3,) and from_net.activation_std.shape == (2,)
    assert from_net.backward_std.shape == (3,)
    q0 = 6 * float(np.var(weights[0])) * 2.0 + float(np.var(biases[0]))
    assert from_net.preactivation_std[0] == pytest.approx(math.sqrt(q0), rel=1e-15)
    assert from_net.backward_std[-1] == pytest.approx(math.sqrt(0.5), rel=1e-15)
    # input_dim only fills in a missing first fan_in
    short = [dict(spec[0], fan_in=None)] + spec[1:]
    np.testing.assert_array_equal(theory.predicted_std(short, 2.0, input_dim=6, grad_output_variance=0.5)
                                  .backward_std, from_spec.backward_std)


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------

def overflowing():
    return Activation("blows_up", lambda f: np.exp(f * f), lambda f, h: 2 * f * h, 1.0)


def not_a_number():
    return Activation("sqrt_of_f", np.sqrt, lambda f, h: 0.5 / h, 1.0)


def zero():
    return Activation("zero", lambda f: 0.0 * f, lambda f, h: 0.0 * f, 1.0)


def not_elementwise():
    return Activation("summing", lambda f: np.sum(f), lambda f, h: np.ones_like(f), 1.0)


SPEC = [("relu", 0.1, 0.0, 10, 20), ("identity", 0.1, 0.0, 20, 5)]
BAD_INPUT = [
    (lambda: theory.variance_map("relu", 0.0, 0.0, 1.0, 3), ValueError, "weight_variance must be > 0"),
    (lambda: theory.variance_map("relu", -2.0, 0.0, 1.0, 3), ValueError, "weight_variance must be > 0"),
    (lambda: theory.variance_map("relu", float("nan"), 0.0, 1.0, 3), ValueError, "weight_variance must be finite"),
    (lambda: theory.variance_map("relu", "2", 0.0, 1.0, 3), TypeError, "weight_variance must be a real number"),
    (lambda: theory.variance_map("relu", 2.0, -0.1, 1.0, 3), ValueError, "bias_variance must be >= 0"),
    (lambda: theory.variance_map("relu", 2.0, 0.0, 0.0, 3), ValueError, "q0 must be > 0"),
    (lambda: theory.variance_map("relu", 2.0, 0.0, -1.0, 3), ValueError, "q0 must be > 0"),
    (lambda: theory.variance_map("relu", 2.0, 0.0, 1.0, -1), ValueError, "depth must be >= 0"),
    (lambda: theory.variance_map("relu", 2.0, 0.0, 1.0, 2.5), TypeError, "depth must be an int"),
    (lambda: theory.variance_map("rleu", 2.0, 0.0, 1.0, 3), ValueError, "Unknown activation 'rleu'.*relu"),
    (lambda: theory.chi1(overflowing(), 1.0, 0.0, q=10.0), ValueError, "quadrature failed for activation blows_up"),
    (lambda: theory.chi1(overflowing(), 1.0, 0.0, q=1.0), ValueError, "blows_up.*does not converge"),
    (lambda: theory.gaussian_expectation(lambda f: np.exp(f), 100.0), ValueError, "does not converge"),
    (lambda: theory.variance_map(not_a_number(), 1.0, 0.0, 1.0, 2), ValueError,
     "quadrature failed for activation sqrt_of_f.*not finite"),
    (lambda: theory.fixed_point(overflowing(), 1.0, 0.1), ValueError, "quadrature failed for activation blows_up"),
    (lambda: theory.correlation_map(not_a_number(), 1.0, 0.1, 0.5, q=1.0), ValueError, "quadrature failed"),
    (lambda: theory.chi1(not_elementwise(), 1.0, 0.0, q=1.0), ValueError, "summing.*must be elementwise"),
    (lambda: theory.chi1("tanh", 1.0, 0.0, q=-1.0), ValueError, "q must be >= 0"),
    (lambda: theory.fixed_point("relu", 2.5, 0.0), ValueError, "relu.*grows without bound"),
    (lambda: theory.fixed_point("tanh", 1.0, 0.1, q0=0.0), ValueError, "q0 must be > 0"),
    (lambda: theory.fixed_point("tanh", 1.0, 0.1, tol=0.0), ValueError, "tol must be in"),
    (lambda: theory.fixed_point("tanh", 1.0, 0.1, max_iter=0), ValueError, "max_iter must be >= 1"),
    (lambda: theory.fixed_point("tanh", 1.5, 0.05, max_iter=1), ValueError, "did not converge in max_iter=1"),
    (lambda: theory.correlation_map("tanh", 1.5, 0.05, 1.5), ValueError, r"c must hold correlations in \[-1, 1\]"),
    (lambda: theory.correlation_map("tanh", 1.5, 0.05, [0.2, np.nan]), ValueError, "c contains NaN"),
    (lambda: theory.correlation_map("tanh", 1.5, 0.05, "0.5"), TypeError, "c must hold real numbers"),
    (lambda: theory.correlation_map(zero(), 0.5, 0.0, 0.5, q=1.0), ValueError, "correlation is undefined"),
    (lambda: theory.critical_weight_variance("relu", 0.1), ValueError, "no edge of chaos at bias_variance=0.1"),
    (lambda: theory.critical_weight_variance("tanh", -0.1), ValueError, "bias_variance must be >= 0"),
    (lambda: theory.critical_line("tanh", [[0.1]]), ValueError, "bias_variances must be a 1-D"),
    (lambda: theory.depth_scales("relu", 3.0, 0.0), ValueError, "grows without bound"),
    (lambda: theory.predicted_std([]), ValueError, "spec is empty"),
    (lambda: theory.predicted_std("relu"), TypeError, "net_or_spec must be a network"),
    (lambda: theory.predicted_std([("relu", 0.1)]), ValueError, "first layer needs a fan_in"),
    (lambda: theory.predicted_std([("relu", 0.1, 0.0, 10)]), ValueError, "last layer's fan_out"),
    (lambda: theory.predicted_std([("relu", 0.1, 0.0, 10, 20), ("identity", 0.1, 0.0, 30, 5)]), ValueError,
     "layer 0 has fan_out=20 but layer 1 has fan_in=30"),
    (lambda: theory.predicted_std([{"activation": "relu", "weight_variance": 0.1, "fan": 3}]), ValueError,
     "unknown keys"),
    (lambda: theory.predicted_std([{"activation": "relu", "fan_in": 3, "fan_out": 2}]), ValueError,
     "needs a weight_variance"),
    (lambda: theory.predicted_std([("relu", -0.1, 0.0, 10, 5)]), ValueError, r"layers\[0\].weight_variance"),
    (lambda: theory.predicted_std(SPEC, input_variance=-1.0), ValueError, "input_variance"),
    (lambda: theory.predicted_std(SPEC, grad_output_variance=float("inf")), ValueError, "grad_output_variance"),
    (lambda: theory.predicted_std(SPEC, input_dim=5), ValueError, "input_dim=5 disagrees"),
    (lambda: theory.predicted_std([3]), TypeError, "layer 0 of the spec must be"),
    (lambda: theory.predicted_std(fake_net([np.ones((4, 3)), np.ones((2, 5))], [None, None], ["relu", "identity"])),
     ValueError, r"net.linears\[1\] expects 5 inputs but layer 0 gives 4"),
    (lambda: theory.predicted_std(fake_net([np.ones((4, 3))], [None], ["relu", "identity"])), ValueError,
     "equal length"),
    (lambda: theory.predicted_std(fake_net([np.full((4, 3), np.nan)], [None], ["relu"])), ValueError,
     r"net.linears\[0\].weight contains NaN"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUT)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("weight_variance", [1.765, 1.77, 1.8, 1.83, 2.0])
def test_chaotic_correlation_fixed_point_just_above_criticality(weight_variance):
    # rounding noise next to c = 1 must not be mistaken for the fixed point
    c_star = theory.correlation_fixed_point("tanh", weight_variance, 0.05)
    assert c_star < 0.9999
    gap = theory.correlation_map("tanh", weight_variance, 0.05, np.array([c_star]))[0] - c_star
    assert abs(gap) < 1e-12
    slope = theory.depth_scales("tanh", weight_variance, 0.05).chi_c
    assert slope < 1 and np.isfinite(theory.depth_scales("tanh", weight_variance, 0.05).xi_c)
