"""LSUV (Mishkin & Matas 2015) and the edge-of-chaos ("critical") initializer."""
import math
import warnings

import numpy as np
import pytest

import depthlab as dl
from depthlab.signal import theory
from depthlab.signal.lsuv import critical, critical_init, lsuv



@pytest.fixture(autouse=True)
def _critical_registered(monkeypatch):
    """depthlab.init registers "critical" when it imports depthlab.lsuv; registering the same
    function again is allowed, so these tests also run against an init.py that does not (yet).
    The registry is restored afterwards."""
    monkeypatch.setattr(dl.init, "INITIALIZERS", dict(dl.init.INITIALIZERS))
    dl.init.register("critical", critical)


def _batch(n=256, d=10, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def _variances(net, x):
    return [float(np.var(f)) for f in net.forward(x, record=True).preactivations]


# --------------------------------------------------------------------------- LSUV

@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu"])
def test_lsuv_gives_unit_variance_in_every_layer(activation):
    x = _batch()
    net = dl.MLP(10, [64] * 8, 3, activation=activation, init=1.0, rng=0)  # a bad start
    assert lsuv(net, x) is net
    variances = _variances(net, x)
    assert len(variances) == 9
    assert all(abs(v - 1.0) < 0.1 for v in variances)


def test_lsuv_starts_from_orthonormal_weights_and_only_rescales_them():
    x = _batch(d=32)
    net = dl.MLP(32, [48, 32, 16], 4, rng=0)
    lsuv(net, x)
    for linear in net.linears:
        w = linear.weight.data
        rows, cols = w.shape
        gram = w @ w.T if rows <= cols else w.T @ w
        scale = gram[0, 0]
        np.testing.assert_allclose(gram, scale * np.eye(min(rows, cols)), atol=1e-12 * max(1.0, scale))


def test_lsuv_record_and_orthogonal_false_keeps_directions():
    x = _batch()
    net = dl.MLP(10, [20, 20], 2, init=3.0, rng=1)
    directions = [l.weight.data / np.linalg.norm(l.weight.data) for l in net.linears]
    _, record = lsuv(net, x, orthogonal=False, tol=0.01, return_record=True)
    for linear, direction, entry in zip(net.linears, directions, record):
        np.testing.assert_allclose(linear.weight.data / np.linalg.norm(linear.weight.data), direction, atol=1e-12)
        assert entry["iterations"] >= 1 and abs(entry["variance"] - 1) < 0.01
    assert [entry["layer"] for entry in record] == [0, 1, 2]


def test_lsuv_with_biases_converges_in_a_few_iterations():
    x = _batch()
    net = dl.MLP(10, [32] * 4, 2, bias_init={"name": "normal", "std": 0.3}, rng=2)
    _, record = lsuv(net, x, tol=0.02, return_record=True)
    assert all(abs(v - 1) < 0.02 for v in _variances(net, x))
    assert max(entry["iterations"] for entry in record) <= 10


def test_lsuv_warns_when_biases_alone_exceed_the_band():
    x = _batch()
    net = dl.MLP(10, [32], 2, bias_init=[{"name": "normal", "std": 3.0}, "zeros"], rng=3)  # Var(β_0) ≈ 9
    with pytest.warns(RuntimeWarning, match=r"layer 0 reached Var\(f_0\).*after 10 rescalings"):
        lsuv(net, x)


def test_lsuv_float32_stays_float32():
    x = _batch().astype(np.float32)
    net = dl.MLP(10, [16, 16], 2, rng=0, dtype="float32")
    lsuv(net, x)
    assert all(l.weight.data.dtype == np.float32 for l in net.linears)
    assert all(abs(v - 1) < 0.1 for v in _variances(net, x))


def test_lsuv_is_reproducible():
    x = _batch()
    a = lsuv(dl.MLP(10, [16], 2, rng=0), x, rng=5)
    b = lsuv(dl.MLP(10, [16], 2, rng=1), x, rng=5)
    for la, lb in zip(a.linears, b.linears):
        np.testing.assert_array_equal(la.weight.data, lb.weight.data)


# --------------------------------------------------------------------------- critical

@pytest.mark.parametrize("activation, bias_variance", [("tanh", 0.0), ("tanh", 0.05), ("relu", 0.0), ("elu", 0.05)])
def test_critical_draws_the_edge_of_chaos_variance(activation, bias_variance):
    fan_in = 400
    w = critical((300, fan_in), rng=0, activation=activation, bias_variance=bias_variance)
    expected = theory.critical_weight_variance(activation, bias_variance)
    assert w.shape == (300, fan_in)
    assert fan_in * w.var() == pytest.approx(expected, rel=0.03)
    assert abs(w.mean()) < 0.01


def test_critical_relu_is_he():
    assert theory.critical_weight_variance("relu", 0.0) == 2.0
    w = critical((500, 200), rng=1, activation="relu")
    assert 200 * w.var() == pytest.approx(2.0, rel=0.03)


@pytest.mark.parametrize("shape", [(100, 100), (50, 120), (120, 50)])
def test_critical_orthogonal_has_the_same_mean_field_variance(shape):
    sw2 = theory.critical_weight_variance("tanh", 0.0)
    w = critical(shape, rng=0, activation="tanh", distribution="orthogonal")
    rows, cols = shape
    assert np.sum(w * w) / rows == pytest.approx(sw2, rel=1e-12)  # fan_in·Var(Ω) = σ_w*² per row
    if rows <= cols:
        np.testing.assert_allclose(w @ w.T, sw2 * np.eye(rows), atol=1e-12)


def test_critical_uniform_and_float32():
    w = critical((300, 300), rng=0, activation="tanh", distribution="uniform", dtype="float32")
    assert w.dtype == np.float32
    bound = math.sqrt(3 * theory.critical_weight_variance("tanh", 0.0) / 300)
    assert np.abs(w).max() <= bound
    assert 300 * w.var() == pytest.approx(theory.critical_weight_variance("tanh", 0.0), rel=0.03)


def test_critical_through_the_registry_and_mlp():
    init = dl.init.get({"name": "critical", "activation": "tanh", "bias_variance": 0.05})
    a = init((64, 64), rng=0, fan_in=64, fan_out=64)
    b = critical((64, 64), rng=0, activation="tanh", bias_variance=0.05)
    np.testing.assert_array_equal(a, b)
    net = dl.MLP(64, [64] * 3, 8, activation="tanh",
                 init={"name": "critical", "activation": "tanh", "bias_variance": 0.05}, bias_init=0.05, rng=0)
    assert net.linears[1].weight.data.shape == (64, 64)


def _log_gradient_growth(net, x, rng):
    net.forward(x, record=True)
    grads = net.backward(rng.normal(size=(x.shape[0], net.out_features)))
    variances = [np.var(g) for g in grads.preactivations[:-1]]
    return math.log(variances[0] / variances[-1]) / (len(variances) - 1)


@pytest.mark.parametrize("scale", [1.0, 1.5])
def test_critical_network_keeps_gradient_variance_per_layer(scale):
    # at the fixed point q*, Var(dL/df) grows by χ1 per layer: 1 at the edge of chaos
    width, depth, sb2 = 300, 20, 0.05
    sw2 = scale * theory.critical_weight_variance("tanh", sb2)
    q = theory.fixed_point("tanh", sw2, sb2)
    rng = np.random.default_rng(0)
    net = dl.MLP(width, [width] * depth, width, activation="tanh", bias_init=sb2,
                 init={"name": "critical", "activation": "tanh", "bias_variance": sb2}, rng=0)
    for linear in net.linears:
        linear.weight.data *= math.sqrt(scale)
    x = rng.normal(size=(100, width)) * math.sqrt((q - sb2) / sw2)
    growth = _log_gradient_growth(net, x, rng)
    assert growth == pytest.approx(math.log(theory.chi1("tanh", sw2, sb2)), abs=0.02)
    if scale == 1.0:
        assert abs(growth) < 0.02


def test_critical_init_on_an_existing_network():
    net = dl.MLP(50, [200, 200, 200], 10, activation="tanh", init=1.0, rng=0)
    assert critical_init(net, bias_variance=0.05, rng=1) is net
    sw2 = theory.critical_weight_variance("tanh", 0.05)
    for linear in net.linears:
        fan_in = linear.in_features
        assert fan_in * linear.weight.data.var() == pytest.approx(sw2, rel=0.1)
    assert net.linears[1].bias.data.var() == pytest.approx(0.05, rel=0.5)
    critical_init(net)
    assert all(not np.any(l.bias.data) for l in net.linears)


def test_critical_init_mixed_activations_use_each_input_activation():
    net = dl.MLP(30, [400, 400], 5, activation=["relu", "tanh"], rng=0)
    critical_init(net, rng=0)
    variances = [l.in_features * l.weight.data.var() for l in net.linears]
    assert variances[0] == pytest.approx(2.0, rel=0.05)   # first layer: first hidden activation
    assert variances[1] == pytest.approx(2.0, rel=0.05)   # input h_1 = relu(f_0)
    assert variances[2] == pytest.approx(theory.critical_weight_variance("tanh", 0.0), rel=0.05)


# --------------------------------------------------------------------------- bad input

def _dead_second_layer():
    net = dl.MLP(10, [8, 8], 2, rng=0)
    net.linears[0].bias.data[:] = -100.0  # h_1 = relu(f_0) = 0 on any reasonable batch
    return net


BAD_INPUT = [
    (lambda: lsuv(dl.MLP(10, [8], 2, rng=0), np.zeros((5, 10))), ValueError, r"cannot rescale layer 0.*all zero"),
    (lambda: lsuv(_dead_second_layer(), _batch()), ValueError, r"cannot rescale layer 1.*all zero"),
    (lambda: lsuv(dl.MLP(10, [8], 2, rng=0), _batch(), tol=0), ValueError, r"tol must be in \(0, 1\)"),
    (lambda: lsuv(dl.MLP(10, [8], 2, rng=0), _batch(), tol=1.5), ValueError, r"tol must be in"),
    (lambda: lsuv(dl.MLP(10, [8], 2, rng=0), _batch(), max_iter=0), ValueError, r"max_iter must be >= 1"),
    (lambda: lsuv(dl.MLP(10, [8], 2, rng=0), _batch(d=3)), ValueError, r"10 are expected"),
    (lambda: critical((4, 4), rng=0, bias_variance=-1.0), ValueError, r"bias_variance must be in \[0, inf\)"),
    (lambda: critical((4,), rng=0), ValueError, r"weight shape .* or an explicit fan_in"),
    (lambda: critical((4, 4), rng=0, distribution="cauchy"), ValueError, r"Unknown critical distribution 'cauchy'"),
    (lambda: critical((4, 4), rng=0, activation="relu", bias_variance=0.1), ValueError, r"no edge of chaos"),
    (lambda: critical((4, 4), rng=0, activation="swishy"), ValueError, r"Unknown activation"),
    (lambda: critical_init(dl.MLP(3, [4], 1, rng=0), bias_variance=-0.1), ValueError, r"bias_variance must be in"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUT)
def test_bad_input(call, error, message):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(error, match=message):
            call()
