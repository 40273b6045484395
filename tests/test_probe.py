"""``dl.probe``: per-layer statistics, the seed notebook's tables, verdicts, report output."""
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

import depthlab as dl
from depthlab.nn import seeds
from depthlab.signal import theory
from depthlab.nn.activations import Activation
from depthlab.signal.probe import THRESHOLDS


def _seed_net(K, D, sigma2):
    setup = seeds.init_variance_setup(K, D, sigma2)
    return dl.Sequential.from_arrays(setup.weights, setup.biases, activation="relu"), setup


def _seed_probe(K=50, D=80, sigma2=1.0, **kwargs):
    net, setup = _seed_net(K, D, sigma2)
    return dl.probe(net, seeds.forward_data(setup, 1000), **kwargs)


# --------------------------------------------------------------------------- seed 000's tables

@pytest.mark.parametrize("K, D, sigma2", list(seeds.PRINTED_FORWARD))
def test_forward_table_of_the_seed_notebook(K, D, sigma2):
    report = _seed_probe(K, D, sigma2)
    stds = [layer.activation_std for layer in report.layers[:K]]  # std of h_1 … h_K
    for s, printed in zip(stds, seeds.PRINTED_FORWARD[(K, D, sigma2)]):
        assert s == pytest.approx(printed, rel=1e-12, abs=5e-4)


def test_backward_table_of_the_seed_notebook():
    net, setup = _seed_net(50, 80, 1.0)
    x = seeds.backward_data(setup, 100)
    report = dl.probe(net, x, y=np.zeros((100, 1)), loss="sum_squares")
    for layer, printed in seeds.PRINTED_BACKWARD[(50, 80, 1.0)].items():
        assert report.layers[layer].grad_preactivation_std == pytest.approx(printed, rel=1e-12)


# --------------------------------------------------------------------------- against PyTorch

@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_statistics_match_pytorch_autograd(activation):
    net = dl.MLP(6, [9, 7, 5], 3, activation=activation, init="xavier_normal",
                 bias_init={"name": "normal", "std": 0.1}, rng=4)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 3))
    report = dl.probe(net, x, y, loss="mse")

    model = dl.to_torch(net).double()
    xt = torch.tensor(x)
    pre, post, h = [], [], xt
    for module in model:
        h = module(h)
        (pre if isinstance(module, torch.nn.Linear) else post).append(h)
        h.retain_grad()
    loss = torch.nn.functional.mse_loss(h, torch.tensor(y))
    loss.backward()
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    outputs = post + [pre[-1]]  # identity output: h_{K+1} is f_K
    for k, stats in enumerate(report.layers):
        f, out = pre[k].detach().numpy(), outputs[k].detach().numpy()
        assert stats.preactivation_mean == pytest.approx(f.mean(), rel=1e-12, abs=1e-15)
        assert stats.preactivation_std == pytest.approx(f.std(), rel=1e-12)
        assert stats.activation_mean == pytest.approx(out.mean(), rel=1e-12, abs=1e-15)
        assert stats.activation_std == pytest.approx(out.std(), rel=1e-12)
        assert stats.grad_preactivation_std == pytest.approx(pre[k].grad.numpy().std(), rel=1e-10)
        assert stats.weight_grad_norm == pytest.approx(linears[k].weight.grad.norm().item(), rel=1e-10)
        assert stats.weight_norm == pytest.approx(linears[k].weight.norm().item(), rel=1e-12)
        if activation == "relu" and k < len(report.layers) - 1:  # units never active on the batch
            assert stats.dead_fraction == (pre[k] <= 0).all(dim=0).double().mean().item()
    # dL/dh_k for k >= 1 is the gradient w.r.t. the previous layer's activation output
    for k in range(1, len(report.layers)):
        assert report.layers[k].grad_activation_std == pytest.approx(post[k - 1].grad.numpy().std(), rel=1e-10)


def test_growth_factors_are_ratios_of_stds():
    report = _seed_probe(5, 8, 1.0)
    layers = report.layers
    assert layers[0].forward_growth == pytest.approx(layers[0].preactivation_std / report.input_std)
    for k in range(1, len(layers)):
        assert layers[k].forward_growth == pytest.approx(layers[k].preactivation_std / layers[k - 1].preactivation_std)
    for k in range(len(layers) - 1):
        assert layers[k].backward_growth == pytest.approx(
            layers[k].grad_preactivation_std / layers[k + 1].grad_preactivation_std)
    assert layers[-1].backward_growth is None


def test_dead_and_saturated_fractions():
    # layer 0: 4 ReLU units, two of them with biases that keep them off on the whole batch
    weights = [np.ones((4, 1)), np.ones((1, 4))]
    biases = [np.array([-100.0, -50.0, 0.0, 0.5]), np.zeros(1)]
    net = dl.Sequential.from_arrays(weights, biases, activation="relu")
    x = np.linspace(-1, 1, 101).reshape(-1, 1)
    assert dl.probe(net, x, theory=False).layers[0].dead_fraction == 0.5
    # tanh' = 1 - tanh² < 0.05 exactly where |f| > artanh(√0.95)
    tanh_net = dl.Sequential.from_arrays([np.ones((1, 1)), np.ones((1, 1))], activation="tanh")
    x = np.linspace(-4, 4, 8001).reshape(-1, 1)
    saturated = dl.probe(tanh_net, x).layers[0].saturated_fraction
    assert saturated == pytest.approx(np.mean(np.abs(x) > np.arctanh(np.sqrt(0.95))), abs=1e-12)
    # sigmoid's maximum slope is 1/4: saturated where σ'(f) < 0.0125
    sig_net = dl.Sequential.from_arrays([np.ones((1, 1)), np.ones((1, 1))], activation="sigmoid")
    x = np.linspace(-8, 8, 16001).reshape(-1, 1)
    s = 1 / (1 + np.exp(-x))
    assert dl.probe(sig_net, x).layers[0].saturated_fraction == pytest.approx(np.mean(s * (1 - s) < 0.0125), abs=1e-12)
    report = dl.probe(net, np.linspace(-1, 1, 11).reshape(-1, 1), theory=False)
    assert report.layers[0].saturated_fraction is None and report.layers[1].dead_fraction is None


def test_dead_and_saturated_fractions_taken_during_the_passes_equal_a_pass_of_their_own():
    # a user's activation that can die and saturate (hard tanh): its a'(f) is counted during the
    # passes (in halves without parameter gradients); the fractions are those of a'(f) computed here
    from depthlab._fast import pair

    hard = Activation("hard_tanh", lambda f: np.clip(f, -1, 1),
                      lambda f, h: ((f > -1) & (f < 1)).astype(f.dtype), 1.0, can_die=True, saturates=True)
    net = dl.MLP(3, [40] * 6, 2, activation=hard, init=8 / 40, rng=1)
    x = np.random.default_rng(2).standard_normal((500, 3))
    trace = net.forward(x, record=True, detached=True)
    derivatives = [((f > -1) & (f < 1)).astype(float) for f in trace.preactivations[:-1]]
    with pair.one_blas_thread():
        for parameter_grads in (True, False):
            layers = dl.probe(net, x, theory=False, parameter_grads=parameter_grads).layers
            assert [s.saturated_fraction for s in layers[:-1]] == [float(np.mean(d < 0.05)) for d in derivatives]
            assert [s.dead_fraction for s in layers[:-1]] == [float(np.mean(~d.any(axis=0))) for d in derivatives]
    assert 0.3 < layers[3].saturated_fraction < 1 and layers[-1].saturated_fraction is None


def test_relu_dead_fraction_with_non_finite_preactivations():
    # f = x·Ω: unit 0 gets [-inf, nan, inf, inf] (alive), unit 1 all NaN (a' = 0: dead), unit 2 [-1, 0, 1, 2]
    net = dl.Sequential.from_arrays([np.ones((3, 1)), np.ones((1, 3))], activation="relu")
    net.linears[0].weight.data[:2, 0] = [np.inf, np.nan]  # (from_arrays refuses them)
    report = dl.probe(net, np.array([[-1.0], [0.0], [1.0], [2.0]]), theory=False)
    assert report.layers[0].dead_fraction == pytest.approx(1 / 3, abs=0)


def test_gradient_statistics_ignore_gradients_already_accumulated():
    # the probe reads Σ dL/df_k from this pass's dL/dβ_k, never from the parameters' .grad
    net = dl.MLP(4, [16, 16], 2, rng=0)
    x, y = np.random.default_rng(1).normal(size=(30, 4)), np.random.default_rng(2).normal(size=(30, 2))
    fresh = dl.probe(net, x, y)
    net.forward(x * 3 + 1, record=True)
    net.backward(np.full((30, 2), 50.0))
    again = dl.probe(net, x, y)
    for a, b in zip(fresh.layers, again.layers):
        assert asdict(a) == asdict(b)


# --------------------------------------------------------------------------- theory beside measurement

def test_predictions_are_the_theory_module_s():
    net = dl.MLP(20, [64] * 4, 2, activation="tanh", init="xavier_normal", rng=0)
    x = np.random.default_rng(0).normal(size=(300, 20)) * 2.0
    report = dl.probe(net, x, rng=1)
    # without y, dL/d(output) is standard normal from rng; the theory starts from its measured E[g²]
    grad_output = np.random.default_rng(1).standard_normal((300, 2))
    expected = theory.predicted_std(net, input_variance=float(np.mean(x**2)),
                                    grad_output_variance=float(np.mean(grad_output**2)))
    # the probe hands the theory Var(Ω_k), Var(β_k) computed its own way: equal up to rounding
    np.testing.assert_allclose([s.predicted_preactivation_std for s in report.layers],
                               expected.preactivation_std, rtol=1e-13)
    np.testing.assert_allclose([s.predicted_activation_std for s in report.layers[:-1]],
                               expected.activation_std, rtol=1e-13)
    last = report.layers[-1]  # identity output: h_{K+1} = f_K
    assert last.predicted_activation_std == last.predicted_preactivation_std
    np.testing.assert_allclose([s.predicted_backward_std for s in report.layers], expected.backward_std,
                               rtol=1e-13)
    assert report.input_variance == pytest.approx(float(np.mean(x**2)))


def test_predictions_track_measurements_on_a_wide_he_network():
    net = dl.MLP(100, [1000] * 5, 1, rng=3)
    report = dl.probe(net, np.random.default_rng(4).normal(size=(200, 100)))
    for s in report.layers[:-1]:
        assert s.preactivation_std == pytest.approx(s.predicted_preactivation_std, rel=0.15)
        assert s.grad_preactivation_std == pytest.approx(s.predicted_backward_std, rel=0.15)


def test_predictions_off_and_backward_from_loss():
    report = _seed_probe(5, 8, 1.0, theory=False)
    assert all(s.predicted_preactivation_std is None for s in report.layers)
    net, setup = _seed_net(5, 8, 1.0)
    x = seeds.forward_data(setup, 50)
    y = np.ones((50, 1))
    out = net(x)
    with_loss = dl.probe(net, x, y, loss="sum_squares")
    assert with_loss.loss == "sum_squares"
    assert with_loss.layers[-1].grad_preactivation_std == pytest.approx(np.std(2 * (out - y)))
    expected = theory.predicted_std(net, float(np.mean(x**2)), grad_output_variance=float(np.mean((2 * (out - y))**2)))
    assert with_loss.layers[-1].predicted_backward_std == pytest.approx(expected.backward_std[-1])


# --------------------------------------------------------------------------- verdicts

def test_verdict_sigma2_1_explodes_from_layer_1():
    report = _seed_probe(50, 80, 1.0)
    assert (report.verdict, report.verdict_layer) == ("exploding", 1)
    assert "he_normal" in report.diagnosis and "σ² = 2/80" in report.diagnosis


def test_verdict_small_variance_vanishes():
    report = _seed_probe(50, 80, 0.01)
    assert (report.verdict, report.verdict_layer) == ("vanishing", 1)
    assert "shrinks ×0.6" in report.diagnosis


def test_verdict_he_is_healthy():
    assert _seed_probe(50, 80, 2 / 80).verdict == "healthy"


@pytest.mark.parametrize("seed", range(4))
def test_verdict_he_is_healthy_for_random_seeds(seed):
    net = dl.MLP(10, [80] * 50, 1, init="he_normal", rng=seed)
    report = dl.probe(net, np.random.default_rng(seed).normal(size=(500, 10)), theory=False)
    assert report.verdict == "healthy", report.diagnosis


def test_verdict_zero_init_is_dead():
    report = _seed_probe(50, 80, 0.0)
    assert (report.verdict, report.verdict_layer) == ("dead", 0)
    assert report.layers[0].activation_std == 0 and report.layers[0].dead_fraction == 1.0
    assert "all zero" in report.diagnosis


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_seed_004_question_4_theta_zero_is_dead(activation):
    net = dl.MLP(100, [100] * 5, 1, activation=activation, init="zeros", rng=0)
    report = dl.probe(net, np.random.default_rng(0).normal(size=(1000, 100)), theory=False)
    assert (report.verdict, report.verdict_layer) == ("dead", 0)


def test_verdict_sigmoid_with_large_weights_is_saturated():
    # 004 Question 4: 5 sigmoid layers of 100 units, N(0, 1) weights, activations pile up at 0 and 1
    net = dl.MLP(100, [100] * 5, 1, activation="sigmoid", init=1.0, rng=0)
    report = dl.probe(net, np.random.default_rng(0).normal(size=(1000, 100)))
    assert report.verdict == "saturated"
    assert report.layers[report.verdict_layer].saturated_fraction >= THRESHOLDS["saturated_fraction"]


def test_verdict_sigmoid_small_weights_vanishing_gradients():
    net = dl.MLP(100, [80] * 10, 1, activation="sigmoid", init="xavier_normal", rng=0)
    report = dl.probe(net, np.random.default_rng(0).normal(size=(500, 100)))
    assert report.verdict == "vanishing"
    assert "dL/df_k shrinks" in report.diagnosis


def test_verdict_dead_fraction_threshold():
    net = dl.MLP(10, [40, 40], 1, rng=0)
    net.linears[1].bias.data[:36] = -100.0  # 90% of layer 1's units can never fire
    report = dl.probe(net, np.random.default_rng(0).normal(size=(100, 10)), theory=False)
    assert (report.verdict, report.verdict_layer) == ("dead", 1)
    relaxed = dl.probe(net, np.random.default_rng(0).normal(size=(100, 10)), theory=False,
                       thresholds={"dead_fraction": 0.95})
    assert relaxed.verdict != "dead"


# --------------------------------------------------------------------------- side effects

def test_probe_leaves_gradients_and_recorded_pass_alone():
    net = dl.MLP(3, [8, 8], 2, rng=0)
    x1, x2 = np.random.default_rng(1).normal(size=(5, 3)), np.random.default_rng(2).normal(size=(7, 3))
    dl.probe(net, x2, theory=False)
    assert all(p.grad is None for p in net.parameters())
    net.forward(x1, record=True)
    first = net.backward(np.ones((5, 2)))
    grads = [p.grad for p in net.parameters()]
    dl.probe(net, x2, y=np.zeros((7, 2)))
    assert all(p.grad is g for p, g in zip(net.parameters(), grads))
    second = net.backward(np.ones((5, 2)))  # still the x1 pass
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(a, b)


def test_probe_float32():
    net = dl.MLP(10, [32, 32], 1, rng=0, dtype="float32")
    report = dl.probe(net, np.random.default_rng(0).normal(size=(100, 10)).astype(np.float32))
    reference = dl.probe(net.astype("float64"), np.random.default_rng(0).normal(size=(100, 10)))
    for a, b in zip(report.layers, reference.layers):
        assert a.preactivation_std == pytest.approx(b.preactivation_std, rel=1e-5)


def test_probe_survives_float32_overflow():
    net = dl.MLP(1, [80] * 30, 1, init=1.0, rng=0, dtype="float32")
    report = dl.probe(net, np.random.default_rng(0).normal(size=(100, 1)).astype(np.float32), theory=False)
    assert (report.verdict, report.verdict_layer) == ("exploding", 1)
    json.dumps(report.to_dict(), allow_nan=False)


# --------------------------------------------------------------------------- output

def test_printed_report():
    report = _seed_probe(50, 80, 1.0)
    text = str(report)
    assert "verdict: exploding (from layer 1)" in text
    assert "grows ×6." in text and "init='he_normal' (σ² = 2/80)" in text
    table = report.table().splitlines()
    assert len(table) == 2 + 51
    assert len({len(line) for line in table}) == 1  # aligned columns
    assert "e+" in table[-1]  # huge numbers in scientific notation
    assert "(theory)" in table[0]
    assert repr(report).startswith("ProbeReport(")


def test_to_dict_is_json_and_complete():
    report = _seed_probe(5, 8, 1.0)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["verdict"] == report.verdict and len(data["layers"]) == 6
    assert data["layers"][2]["preactivation_std"] == report.layers[2].preactivation_std
    assert set(data["layers"][0]) >= {"dead_fraction", "saturated_fraction", "grad_activation_std",
                                      "weight_grad_norm", "predicted_backward_std", "forward_growth"}


def test_histograms():
    report = _seed_probe(5, 8, 1.0)
    histograms = report.histograms(bins=12)
    assert len(histograms) == 6
    for k, entry in enumerate(histograms):
        counts, edges = entry["preactivation"]
        assert counts.shape == (12,) and edges.shape == (13,)
        assert counts.sum() == 1000 * report.layers[k].units
        assert entry["activation"][0].sum() == 1000 * report.layers[k].units
        assert entry["grad_preactivation"][0].sum() == 1000 * report.layers[k].units


# --------------------------------------------------------------------------- bad input

_net = dl.MLP(3, [8], 1, rng=0)
# finite on the data (|f| < 2.4 here) but infinite at the theory's quadrature nodes (|f| up to 10√q)
_exp_quartic = Activation("exp_quartic", lambda f: np.exp(f**4), lambda f, h: 4 * f**3 * h, 1.0)
_exotic = dl.Sequential([dl.Linear(3, 4, init=0.5, rng=0), _exp_quartic, dl.Linear(4, 1, rng=1)])
_x = np.random.default_rng(0).normal(size=(20, 3))

BAD_INPUT = [
    (lambda: dl.probe(_net, np.ones((1, 3))), ValueError, r"at least 2 samples.*shape \(1, 3\).*more samples"),
    (lambda: dl.probe(_net, _x, input_variance=0.0), ValueError, r"input_variance must be > 0"),
    (lambda: dl.probe(_net, _x, input_variance=-1.0), ValueError, r"input_variance must be > 0"),
    (lambda: dl.probe(_net, np.zeros((5, 3))), ValueError, r"all-zero x.*theory=False"),
    (lambda: dl.probe(_exotic, _x), ValueError, r"theory cannot integrate activation 'exp_quartic' .*theory=False"),
    (lambda: dl.probe(_net, _x, thresholds={"explode": 3}), ValueError, r"unknown keys \['explode'\]"),
    (lambda: dl.probe(_net, _x, thresholds={"rate": -1}), ValueError, r"thresholds\['rate'\] must be in"),
    (lambda: dl.probe(_net, _x, y=np.zeros((20, 1)), loss="hinge"), ValueError, r"Unknown loss 'hinge'"),
    (lambda: dl.probe(_net, _x, y=np.zeros((19, 1))), ValueError, r"target shape"),
    (lambda: dl.probe(_net, np.ones((4, 2))), ValueError, r"3 are expected"),
    (lambda: _seed_probe(5, 8, 1.0).histograms(bins=0), ValueError, r"bins must be >= 1"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUT)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_theory_false_probes_what_theory_cannot_integrate():
    report = dl.probe(_exotic, _x, theory=False)
    assert report.layers[0].activation == "exp_quartic"
    assert dl.probe(_net, np.zeros((5, 3)), theory=False).verdict == "dead"


@pytest.mark.parametrize("offset", [0.0, 3.0, 1e4])
def test_float32_statistics_match_float64_whatever_the_mean(offset):
    """Float32 statistics take BLAS sums where the mean is small against the std and the
    float64 path where it dominates (offset 1e4: a one-pass variance would cancel)."""
    from depthlab.signal.probe import _mean_std
    a = (np.random.default_rng(0).normal(size=(1000, 80)) + offset).astype(np.float32)
    mean, std = _mean_std(a)
    exact = a.astype(np.float64)
    assert mean == pytest.approx(exact.mean(), rel=1e-6, abs=1e-6)
    assert std == pytest.approx(exact.std(), rel=1e-5)
