"""Mean-field theory of residual networks and batch norm, against closed forms and against
measurements of real networks over several seeds."""
import math

import numpy as np
import pytest

import depthlab as dl
from depthlab.signal import residual_theory as rt


@pytest.mark.parametrize("scale, depth, expected", [
    (1.0, 10, 2.0 ** 10),                       # ×(1 + s²) per block: ×2 at s = 1
    (1 / math.sqrt(50), 50, (1 + 1 / 50) ** 50),  # bounded: → e
    (0.0, 30, 1.0),                             # SkipInit: the identity
    (0.5, 4, 1.25 ** 4),
])
def test_he_relu_blocks_grow_the_variance_by_one_plus_scale_squared(scale, depth, expected):
    q = rt.residual_variance(depth, scale, q0=3.0)
    assert q[-1] == pytest.approx(3.0 * expected, rel=1e-12)
    np.testing.assert_allclose(q[1:] / q[:-1], 1 + scale ** 2, rtol=1e-12)


def test_normalized_branches_grow_the_variance_linearly():
    q = rt.residual_variance(20, 1.0, q0=1.0, norm=True)
    np.testing.assert_allclose(np.diff(q), 1.0, rtol=1e-12)   # He ReLU after a norm: V = M(M(1)) = 1


def test_gradient_variance_grows_by_the_same_factor_for_he_relu():
    g = rt.residual_gradient_variance(8, 1.0)
    np.testing.assert_allclose(g[:-1] / g[1:], 2.0, rtol=1e-12)


def test_batchnorm_gradient_growth_closed_form_and_refusal():
    assert rt.batchnorm_gradient_growth("relu") == pytest.approx(math.pi / (math.pi - 1), rel=1e-15)
    with pytest.raises(ValueError, match="closed form for \\['relu'\\].*measure it with dl.probe"):
        rt.batchnorm_gradient_growth("tanh")


@pytest.mark.parametrize("scale", [1.0, 1 / math.sqrt(10)])
def test_residual_variance_matches_measurement(scale):
    depth, ratios = 10, []
    for seed in range(4):
        net = dl.ResMLP(64, 1024, depth, 1, residual_scale=scale, rng=seed)
        x = np.random.default_rng(seed + 10).standard_normal((128, 64))
        trace = net.forward(x, record=True)
        q = np.array([np.mean(h ** 2) for h in trace.layer_outputs[:depth + 1]])
        ratios.append(q[-1] / rt.residual_variance(depth, scale, q0=q[0])[-1])
    assert np.mean(ratios) == pytest.approx(1.0, rel=0.15)


def test_batchnorm_gradient_explosion_matches_measurement():
    """Linear → BatchNorm → ReLU, width 512, batch 512: E‖dL/dh‖² per layer toward the input."""
    growth = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        layers = []
        for _ in range(8):
            layers += [dl.Linear(512, 512, rng=rng), dl.BatchNorm(512), "relu"]
        net = dl.Sequential(*layers, dl.Linear(512, 1, rng=rng))
        net.forward(rng.standard_normal((512, 512)), record=True)
        grads = net.backward(rng.standard_normal((512, 1)))
        energy = [np.mean(np.sum(g ** 2, axis=1)) for g in grads.activations]
        growth += [energy[k] / energy[k + 1] for k in range(1, 7)]
    assert np.mean(growth) == pytest.approx(rt.batchnorm_gradient_growth("relu"), rel=0.03)


def test_residual_variance_experiment_quick_holds_its_claims(tmp_path):
    from depthlab.lab import experiments

    result = experiments.run_experiment("residual-variance", quick=True, out_dir=tmp_path / "rv")
    m = result.metrics
    assert m["growth_per_block_s1"] == pytest.approx(2.0, rel=0.1)
    assert m["growth_per_block_skipinit"] == pytest.approx(1.0, abs=1e-12)     # the identity, exactly
    assert m["final_variance_ratio_scaled"] == pytest.approx(m["theory_final_variance_ratio_scaled"], rel=0.25)
    assert m["batch_norm_linear_growth"] == pytest.approx(m["theory_batch_norm_linear_growth"], rel=0.2)
    assert m["growth_per_block_s1"] > m["growth_per_block_scaled"] > m["growth_per_block_skipinit"]
    assert (tmp_path / "rv" / "forward.png").exists() and (tmp_path / "rv" / "report.html").exists()


def test_shattered_gradients_quick_plain_shatters_and_scaled_residual_does_not(tmp_path):
    from depthlab.lab import experiments

    result = experiments.run_experiment("shattered-gradients", quick=True, out_dir=tmp_path / "sg")
    m = result.metrics
    plain, scaled = m["autocorrelation_plain"], m["autocorrelation_scaled"]
    assert plain[-1] < plain[0] - 0.3            # the plain network's gradient decorrelates with depth
    assert scaled[-1] > 0.9                      # the scaled residual network's stays smooth
    assert scaled[-1] > m["autocorrelation_residual_deepest"] > plain[-1]


def test_normalization_vs_init_forward_scale_and_batch_norm_gradient(tmp_path):
    from depthlab.lab import experiments

    result = experiments.run_experiment("normalization-vs-init", {"depth": 20, "steps": 5, "samples": 200},
                                        quick=True, out_dir=tmp_path / "nvi")
    m = result.metrics
    assert m["forward_spread_none"] > 1e10        # without norm the signal's scale follows σ² geometrically
    assert m["forward_spread_batch"] < 1.5 and m["forward_spread_layer"] < 1.5
    assert m["gradient_growth_batch"] == pytest.approx(m["theory_gradient_growth_batch"], rel=0.08)
