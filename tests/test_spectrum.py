"""Input–output Jacobian spectra: exactness and dynamical isometry (Saxe 2013, Pennington 2017)."""
import numpy as np
import pytest
import torch

import depthlab as dl
from depthlab.signal import spectrum
from depthlab.nn.init import orthogonal


def _central_difference_jacobian(net, x, step=1e-6):
    n, d = x.shape
    columns = []
    for i in range(d):
        shift = np.zeros(d)
        shift[i] = step
        columns.append((net(x + shift) - net(x - shift)) / (2 * step))
    return np.stack(columns, axis=2)  # (N, D_out, D_in)


@pytest.mark.parametrize("d_in, d_out, activation", [(4, 3, "tanh"), (3, 5, "gelu"), (6, 6, "sigmoid")])
def test_singular_values_match_central_differences(d_in, d_out, activation):
    net = dl.MLP(d_in, [7, 5], d_out, activation=activation, init="xavier_normal", rng=1)
    x = np.random.default_rng(2).normal(size=(6, d_in))
    s = dl.jacobian_spectrum(net, x)
    assert s.shape == (6, min(d_in, d_out))
    reference = np.linalg.svd(_central_difference_jacobian(net, x), compute_uv=False)
    np.testing.assert_allclose(s, reference, rtol=1e-7, atol=1e-9)
    assert np.all(np.diff(s, axis=1) <= 0)  # decreasing


def test_singular_values_match_torch_autograd():
    net = dl.MLP(5, [8, 8], 4, activation="tanh", rng=3)
    x = np.random.default_rng(4).normal(size=(3, 5))
    model = dl.to_torch(net).double()
    for i in range(3):
        jac = torch.autograd.functional.jacobian(model, torch.tensor(x[i:i + 1])).reshape(4, 5)
        expected = torch.linalg.svdvals(jac).numpy()
        np.testing.assert_allclose(dl.jacobian_spectrum(net, x[i:i + 1])[0], expected, rtol=1e-10)


def test_linear_orthogonal_network_is_an_exact_isometry():
    rng = np.random.default_rng(0)
    weights = [orthogonal((20, 20), rng=rng) for _ in range(10)]
    net = dl.Sequential.from_arrays(weights, activation="identity")
    s = dl.jacobian_spectrum(net, rng.normal(size=(3, 20)))
    np.testing.assert_allclose(s, 1.0, atol=1e-12)
    summary = spectrum.isometry(s)
    assert summary["condition"] == pytest.approx(1.0, abs=1e-10)
    assert summary["std_log_squared"] < 1e-10


def test_float32_stays_float32():
    net = dl.MLP(4, [6], 4, activation="tanh", rng=0, dtype="float32")
    s = dl.jacobian_spectrum(net, np.ones((2, 4), dtype=np.float32))
    assert s.dtype == np.float32


def _deep_tanh(weights_kind, depth=32, width=100, seed=0):
    """tanh at criticality: σ_w² = 1 (fan_in·Var(Ω) = 1), σ_b² = 0."""
    rng = np.random.default_rng(seed)
    draw = {
        "orthogonal": lambda: orthogonal((width, width), rng=rng),
        "gaussian": lambda: rng.normal(size=(width, width)) / np.sqrt(width),
    }[weights_kind]
    return dl.Sequential.from_arrays([draw() for _ in range(depth + 1)], activation="tanh")


def test_dynamical_isometry_orthogonal_tanh_vs_gaussian():
    # small inputs keep tanh in its linear regime (q* = 0 at σ_w² = 1, σ_b² = 0): the mean
    # squared singular value stays near χ1^depth ≈ 1 for both, but only orthogonal weights keep
    # the spectrum concentrated; the Gaussian product spreads it over many decades.
    x = np.random.default_rng(9).normal(size=(8, 100)) * 0.03
    orth = spectrum.isometry(dl.jacobian_spectrum(_deep_tanh("orthogonal"), x))
    gauss = spectrum.isometry(dl.jacobian_spectrum(_deep_tanh("gaussian"), x))
    assert 0.85 < orth["mean_squared"] < 1.05
    assert orth["std_log_squared"] < 0.1 and orth["condition"] < 1.5
    assert gauss["std_log_squared"] > 2.0 and gauss["condition"] > 1e3
    assert gauss["std_squared"] > 10 * orth["std_squared"]


def test_orthogonal_spread_does_not_grow_with_depth_but_gaussian_does():
    x = np.random.default_rng(10).normal(size=(4, 100)) * 0.03
    spread = {kind: [spectrum.isometry(dl.jacobian_spectrum(_deep_tanh(kind, depth=d), x))["std_log_squared"]
                     for d in (4, 32)] for kind in ("orthogonal", "gaussian")}
    assert spread["orthogonal"][1] < 0.1
    assert spread["gaussian"][1] > 2 * spread["gaussian"][0]


def test_isometry_summary_values():
    summary = spectrum.isometry(np.array([[1.0, 2.0], [0.5, 1.0]]))
    squared = np.array([1.0, 4.0, 0.25, 1.0])
    assert summary["mean_squared"] == pytest.approx(squared.mean())
    assert summary["std_squared"] == pytest.approx(squared.std())
    assert summary["std_log_squared"] == pytest.approx(np.log(squared).std())
    assert summary["condition"] == pytest.approx(4.0)
    assert summary["max"] == 2.0 and summary["min"] == 0.5
    singular = spectrum.isometry([1.0, 0.0])
    assert singular["condition"] == np.inf and singular["std_log_squared"] == np.inf


BAD_INPUT = [
    (lambda: spectrum.isometry([]), ValueError, r"at least one singular value"),
    (lambda: dl.jacobian_spectrum(dl.MLP(3, [4], 2, rng=0), np.ones((2, 4))), ValueError, r"3 are expected"),
    (lambda: dl.jacobian_spectrum(dl.MLP(3, [4], 2, rng=0), np.full((2, 3), np.nan)), ValueError, r"NaN"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUT)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
