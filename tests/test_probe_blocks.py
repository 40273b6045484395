"""``probe`` on residual and normalized networks: per-block measurements against PyTorch, the branch
share, the mean-field theory beside them (against dl.theory's closed forms, and against measurements
over several seeds), the two residual-era verdicts, modes and buffers, bad input."""
import json
import math

import numpy as np
import pytest
import torch

import depthlab as dl
from depthlab.signal.block_theory import SignalMoments, predicted_block_std, walk
from depthlab.signal.probe import is_plain_mlp
from depthlab.signal.probe_blocks import BlockProbeReport

X = np.random.default_rng(100).standard_normal((48, 6))

NETWORKS = {
    "preact": lambda: dl.ResMLP(6, 12, 3, 2, rng=1),
    "preact-batch": lambda: dl.ResMLP(6, 12, 3, 2, norm="batch", rng=2),
    "preact-layer-scaled": lambda: dl.ResMLP(6, 12, 3, 2, norm="layer", residual_scale="1/sqrt(depth)", rng=3),
    "postact-batch": lambda: dl.ResMLP(6, 12, 2, 2, block="postact", norm="batch", rng=4),
    "skipinit": lambda: dl.ResMLP(6, 12, 3, 2, residual_scale=0, rng=5),
    "shortcut-dropout": lambda: dl.Sequential(
        dl.Residual(dl.Linear(6, 9, rng=8), "tanh", shortcut=dl.Linear(6, 9, rng=9), scale=0.5),
        dl.Dropout(0.3, rng=0), dl.BatchNorm(9), dl.Linear(9, 2, rng=10)),
}


def _torch_per_block(net, x, grad_output):
    """Each top-level layer's output and dL/d(output) from PyTorch autograd (hooks on to_torch's children)."""
    module = dl.to_torch(net)
    outputs = []

    def keep(_, __, out):
        out.retain_grad()
        outputs.append(out)

    for child in module.children():
        child.register_forward_hook(keep)
    module(torch.tensor(x)).backward(torch.tensor(grad_output))
    return [o.detach().numpy() for o in outputs], [o.grad.numpy() for o in outputs]


@pytest.mark.parametrize("name", [n for n in NETWORKS if n != "shortcut-dropout"])
def test_one_row_per_top_level_layer_matches_pytorch(name):
    net = NETWORKS[name]()
    report = dl.probe(net, X, rng=7)
    assert isinstance(report, BlockProbeReport) and not is_plain_mlp(net)
    assert len(report.layers) == len(net.layers)
    grad_output = np.random.default_rng(7).standard_normal((X.shape[0], 2))   # what probe draws from rng=7
    outputs, grads = _torch_per_block(net, X, grad_output)
    for stats, out, grad in zip(report.layers, outputs, grads):
        assert stats.units == out.shape[1]
        assert stats.output_std == pytest.approx(out.std(), rel=1e-9)
        assert stats.output_mean == pytest.approx(out.mean(), rel=1e-9, abs=1e-12)
        assert stats.grad_std == pytest.approx(grad.std(), rel=1e-9)


def test_branch_share_is_measured_on_the_branch_itself():
    net = NETWORKS["shortcut-dropout"]()
    report = dl.probe(net, X, training=False)
    block = net.layers[0]
    skip, branch = block.shortcut(X), 0.5 * block.branch(X)
    expected = branch.var() / (skip.var() + branch.var())
    assert report.layers[0].branch_fraction == pytest.approx(expected, rel=1e-9)
    assert [s.branch_fraction for s in report.layers[1:]] == [None] * 3
    assert dl.probe(NETWORKS["skipinit"](), X).layers[1].branch_fraction == 0


@pytest.mark.parametrize("scale, share", [(1.0, 0.5), ("1/sqrt(depth)", 1 / 17)])
def test_branch_share_follows_the_variance_recursion(scale, share):
    # pre-activation, He ReLU branches: Var(s F) = s² q_b, Var(skip) = q_b, so the share is s² / (1 + s²)
    x = np.random.default_rng(1).standard_normal((128, 32))
    shares = [s.branch_fraction for seed in range(3)
              for s in dl.probe(dl.ResMLP(32, 128, 16, 2, residual_scale=scale, rng=seed), x).layers
              if s.branch_fraction is not None]
    assert np.mean(shares) == pytest.approx(share, rel=0.08)


def test_plain_mlps_keep_the_plain_report():
    net = dl.MLP(3, [8, 8], 1, rng=0)
    assert is_plain_mlp(net)
    report = dl.probe(net, np.random.default_rng(0).standard_normal((20, 3)))
    assert type(report) is dl.ProbeReport and report.layers[0].preactivation_std > 0


# --------------------------------------------------------------------------- theory

def _exact_he(net):
    """Every Linear's fan_in · E[Ω²] exactly 2 (the theory's σ_w²), biases zero."""
    for layer in net.layers_within():
        if isinstance(layer, dl.Linear):
            layer.weight.data *= math.sqrt(2 / (layer.in_features * np.mean(layer.weight.data ** 2)))
    return net


@pytest.mark.parametrize("scale", [1.0, 0.3, 0.0])
def test_walk_reproduces_the_residual_recursions(scale):
    depth = 6
    net = _exact_he(dl.ResMLP(5, 40, depth, 3, residual_scale=scale, rng=0))
    x = np.random.default_rng(2).standard_normal((30, 5))
    forward, backward = predicted_block_std(net, x, 1.0)
    stream = np.array(forward[:depth + 1]) ** 2          # h_0 (the stem's output) … h_D
    np.testing.assert_allclose(stream, dl.theory.residual_variance(depth, scale, q0=stream[0]), rtol=1e-10)
    gradient = np.array(backward[:depth + 1]) ** 2
    np.testing.assert_allclose(gradient / gradient[-1], dl.theory.residual_gradient_variance(depth, scale, q0=stream[0]),
                               rtol=1e-10)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_walk_with_normalized_branches_grows_linearly(norm):
    depth = 5
    net = _exact_he(dl.ResMLP(5, 40, depth, 3, norm=norm, residual_scale=0.5, rng=0))
    forward, _ = predicted_block_std(net, np.random.default_rng(2).standard_normal((30, 5)), 1.0)
    stream = np.array(forward[:depth + 1]) ** 2
    np.testing.assert_allclose(stream, dl.theory.residual_variance(depth, 0.5, q0=stream[0], norm=True), rtol=1e-10)


def test_walk_gives_batch_norms_gradient_growth():
    layers = [dl.Linear(20, 30, rng=0)]
    for k in range(3):
        layers += [dl.BatchNorm(30, eps=1e-14), "relu", dl.Linear(30, 30, rng=k + 1)]
    net = _exact_he(dl.Sequential(layers))
    _, gains = walk(net.layers, SignalMoments(1.0, 0.0), batch=10 ** 9)
    per_layer = np.prod(gains[4:7])   # BatchNorm → relu → Linear, after the first
    assert per_layer == pytest.approx(dl.theory.batchnorm_gradient_growth("relu"), rel=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"residual_scale": "1/sqrt(depth)"}, {"norm": "batch"}, {"norm": "layer"},
                                    {"init": "fixup"}],
                         ids=["scale-1", "scale-1/sqrt(depth)", "batch-norm", "layer-norm", "fixup"])
def test_theory_matches_measurement_over_seeds(kwargs):
    # the stem and every residual block (the stream): measured / mean-field, averaged over 4 seeds;
    # observed at width 128, batch 128: within 5% forward, 9% backward (batch norm near the input)
    forward, backward = [], []
    for seed in range(4):
        net = dl.ResMLP(32, 128, 8, 4, rng=seed, **kwargs)
        report = dl.probe(net, np.random.default_rng(100 + seed).standard_normal((128, 32)), rng=seed)
        rows = [report.layers[0]] + [s for s in report.layers if s.kind.startswith("Residual")]
        forward.append([s.output_std / s.predicted_output_std for s in rows])
        backward.append([s.grad_std / s.predicted_grad_std for s in rows])
    np.testing.assert_allclose(np.mean(forward, axis=0), 1, atol=0.12)
    np.testing.assert_allclose(np.mean(backward, axis=0), 1, atol=0.12)


def test_batch_norm_gradient_growth_measured_against_theory():
    measured = []
    for seed in range(4):
        layers = [dl.Linear(32, 128, rng=seed)]
        for k in range(12):
            layers += [dl.BatchNorm(128), "relu", dl.Linear(128, 128, rng=1000 * seed + k)]
        report = dl.probe(dl.Sequential(layers), np.random.default_rng(100 + seed).standard_normal((128, 32)), rng=seed)
        linears = [s for s in report.layers if s.kind == "Linear"][1:-1]
        measured.append((linears[0].grad_std / linears[-1].grad_std) ** (2 / (len(linears) - 1)))
        predicted = (linears[0].predicted_grad_std / linears[-1].predicted_grad_std) ** (2 / (len(linears) - 1))
        assert predicted == pytest.approx(dl.theory.batchnorm_gradient_growth("relu"), rel=0.01)  # batch 128
    # observed 1.47 … 1.50 per layer (E‖dL/dh‖²); π/(π − 1) ≈ 1.467
    assert np.mean(measured) == pytest.approx(math.pi / (math.pi - 1), rel=0.04)
    assert min(measured) > 1.35


def test_input_variance_starts_the_theory():
    net = NETWORKS["preact"]()
    measured = dl.probe(net, X)
    doubled = dl.probe(net, X, input_variance=2 * float(np.mean(X ** 2)))
    for a, b in zip(measured.layers[:4], doubled.layers[:4]):   # the stem and the blocks scale with x: ×√2
        assert b.predicted_output_std == pytest.approx(math.sqrt(2) * a.predicted_output_std, rel=1e-12)


def test_post_activation_blocks_get_theory_only_where_it_holds():
    report = dl.probe(NETWORKS["postact-batch"](), X)
    kinds = [s.kind for s in report.layers]
    first_sum_activation = kinds.index("relu", kinds.index("Residual(s=1)"))
    assert all(s.predicted_output_std is not None for s in report.layers[:first_sum_activation])
    assert all(s.predicted_output_std is None for s in report.layers[first_sum_activation:])
    assert report.layers[-1].predicted_grad_std is not None


# --------------------------------------------------------------------------- verdicts

def test_residual_variance_growth_is_diagnosed_with_its_fix():
    x = np.random.default_rng(0).standard_normal((128, 16))
    report = dl.probe(dl.ResMLP(16, 64, 50, 2, rng=0), x)
    assert report.verdict == "exploding" and report.verdict_layer is not None
    assert "residual variance grows" in report.diagnosis and "1/sqrt(depth)" in report.diagnosis
    stream = [s.output_std for s in report.layers if s.kind.startswith("Residual")]
    assert (stream[-1] / stream[0]) ** (2 / (len(stream) - 1)) == pytest.approx(2, rel=0.1)   # ×(1 + s²)
    for fix in ({"residual_scale": "1/sqrt(depth)"}, {"residual_scale": 0}, {"norm": "layer"}):
        assert dl.probe(dl.ResMLP(16, 64, 50, 2, rng=0, **fix), x).verdict == "healthy", fix


def test_batch_norm_gradient_explosion_is_diagnosed_and_residuals_fix_it():
    x = np.random.default_rng(0).standard_normal((64, 16))
    layers = [dl.Linear(16, 64, rng=0)]
    for k in range(30):
        layers += [dl.BatchNorm(64), "relu", dl.Linear(64, 64, rng=k + 1)]
    report = dl.probe(dl.Sequential(layers), x)
    assert report.verdict == "exploding"
    assert "batch norm makes gradients explode toward the input" in report.diagnosis
    assert "residual connections" in report.diagnosis
    forward = [s.output_std for s in report.layers if s.kind == "Linear"]
    assert max(forward) / min(forward) < 2      # the forward signal stays normalized
    assert dl.probe(dl.ResMLP(16, 64, 30, 2, norm="batch", rng=0), x).verdict == "healthy"


def test_dead_block_and_overflow():
    net = dl.ResMLP(4, 8, 2, 1, rng=0)
    net.layers[0].weight.data[...] = 0
    report = dl.probe(net, X[:, :4], theory=False)
    assert report.verdict == "dead" and report.verdict_layer == 0
    big = dl.ResMLP(4, 8, 200, 1, init=60.0, rng=0)
    report = dl.probe(big, X[:, :4], theory=False)
    assert report.verdict == "exploding" and "leaves the range" in report.diagnosis


# --------------------------------------------------------------------------- modes, output, bad input

def test_modes_buffers_and_gradients_are_left_alone():
    net = dl.ResMLP(6, 12, 2, 2, norm="batch", rng=0)
    with net.mode(True):
        net.forward(X + 1)
    net.eval()
    before = net.state_dict()
    net.zero_grad()
    train_report = dl.probe(net, X)                      # batch statistics
    eval_report = dl.probe(net, X, training=False)       # running statistics
    assert net.training is False and all(p.grad is None for p in net.parameters())
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    assert eval_report.layers[-1].output_std == pytest.approx(net(X).std(), rel=1e-12)
    assert train_report.layers[1].output_std != pytest.approx(eval_report.layers[1].output_std, rel=1e-3)


def test_parameter_gradient_norms_are_this_passs_own():
    net = NETWORKS["preact-layer-scaled"]()
    fresh = dl.probe(net, X, rng=3)
    for p in net.parameters():
        p.grad = np.full_like(p.data, 5.0)
    again = dl.probe(net, X, rng=3)
    assert [s.parameter_grad_norm for s in again.layers] == [s.parameter_grad_norm for s in fresh.layers]
    assert all(np.all(p.grad == 5.0) for p in net.parameters())
    net.forward(X, record=True)
    net.zero_grad()
    net.backward(np.random.default_rng(3).standard_normal((X.shape[0], 2)))
    block = net.layers[2]
    assert fresh.layers[2].parameter_grad_norm == pytest.approx(
        math.sqrt(sum(np.sum(p.grad ** 2) for p in block.parameters())), rel=1e-12)


def test_text_dict_and_html():
    report = dl.probe(NETWORKS["preact-batch"](), X)
    text = str(report)
    assert "blocks" in text and "Residual(s=1)" in text and "branch" in text and "verdict: healthy" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert len(data["layers"]) == 7 and data["layers"][1]["branch_fraction"] is not None
    assert "<svg" in report._repr_html_() and "branch share" in report._repr_html_()
    histograms = report.histograms(bins=5)
    assert len(histograms) == 7 and histograms[0]["output"][0].sum() == X.shape[0] * 12


def test_unknown_layer_gets_no_theory_but_a_report():
    class Twice(dl.Layer):
        def forward(self, x, cache):
            return 2 * x

        def backward(self, grad_output, cache):
            return 2 * grad_output

    net = dl.Sequential(dl.Linear(6, 8, rng=0), Twice(), "relu", dl.Linear(8, 1, rng=1))
    report = dl.probe(net, X)
    assert report.layers[0].predicted_output_std is not None
    assert [s.predicted_output_std for s in report.layers[1:]] == [None] * 3
    assert report.layers[1].output_std == pytest.approx(2 * report.layers[0].output_std)


@pytest.mark.parametrize("net, x, error, pattern", [
    (dl.Linear(6, 2), X, TypeError, r"probe needs a network .*dl.Sequential\(layer\)"),
    (NETWORKS["preact-batch"](), X[:1], ValueError, r"at least 2 samples"),
    (NETWORKS["preact"](), X[:, :5], ValueError, r"6"),
])
def test_bad_input(net, x, error, pattern):
    with pytest.raises(error, match=pattern):
        dl.probe(net, x)


# --------------------------------------------------------------------------- jacobian_spectrum

def _eval_with_running_statistics(net):
    with net.mode(True):
        for shift in range(3):
            net.forward(X + 0.3 * shift)
    return net.eval()


@pytest.mark.parametrize("name", ["preact-batch", "preact-layer-scaled", "postact-batch", "shortcut-dropout"])
def test_jacobian_spectrum_matches_torch_autograd(name):
    net = _eval_with_running_statistics(NETWORKS[name]())
    module = dl.to_torch(net).eval()
    x = X[:4]
    whole = dl.jacobian_spectrum(net, x)
    per_block = dl.jacobian_spectrum(net, x, blocks=True)
    assert len(per_block) == len(net.layers)
    children, h = list(module.children()), torch.tensor(x)
    for i, xi in enumerate(torch.tensor(x)):
        reference = torch.autograd.functional.jacobian(lambda v: module(v[None])[0], xi).numpy()
        np.testing.assert_allclose(whole[i], np.linalg.svd(reference, compute_uv=False), rtol=1e-9, atol=1e-12)
    for values, child in zip(per_block, children):
        for i in range(x.shape[0]):
            reference = torch.autograd.functional.jacobian(lambda v: child(v[None])[0], h[i]).numpy()
            np.testing.assert_allclose(values[i], np.linalg.svd(reference, compute_uv=False), rtol=1e-9, atol=1e-12)
        h = child(h).detach()


def test_skipinit_blocks_are_isometries():
    net = NETWORKS["skipinit"]()
    per_block = dl.jacobian_spectrum(net, X[:5], blocks=True)
    for values in per_block[1:4]:     # the three residual blocks: I + 0 · ∂F/∂h
        np.testing.assert_allclose(values, 1.0, rtol=1e-14)


@pytest.mark.parametrize("build, pattern", [
    (NETWORKS["preact-batch"], r"batch norm .*Call net.eval\(\) first"),
    (lambda: dl.Sequential(dl.Linear(6, 4), dl.Dropout(0.3), dl.Linear(4, 2)),
     r"Dropout\(p=0.3\) is in train mode.*net.eval\(\)")])
def test_jacobian_spectrum_refuses_samples_that_mix(build, pattern):
    for blocks in (False, True):
        with pytest.raises(ValueError, match=pattern):
            dl.jacobian_spectrum(build(), X[:3], blocks=blocks)
    with pytest.raises(TypeError, match="blocks must be True or False"):
        dl.jacobian_spectrum(NETWORKS["preact"](), X[:3], blocks="yes")
    with pytest.raises(TypeError, match=r"needs a network .*dl.Sequential\(layer\)"):
        dl.jacobian_spectrum(dl.Residual(dl.Linear(6, 6)), X[:3])


# --------------------------------------------------------------------------- TrainingMonitor

def test_monitor_records_one_row_per_block_and_leaves_training_alone():
    x = np.random.default_rng(3).standard_normal((60, 6))
    y = np.sin(x[:, :2])

    def train(callbacks):
        net = dl.Sequential(dl.Linear(6, 12, rng=0), dl.BatchNorm(12), "relu", dl.Dropout(0.2, rng=1),
                            dl.Residual(dl.LayerNorm(12), "relu", dl.Linear(12, 12, rng=2), scale=0.5),
                            "relu", dl.Linear(12, 2, rng=3))
        dl.fit(net, x, y, loss="mse", optimizer="sgd", epochs=3, batch_size=20, verbose=0, callbacks=callbacks)
        return net

    monitor = dl.TrainingMonitor(warn=False)
    monitored, plain = train([monitor]), train([])
    for a, b in zip(monitored.state_dict().values(), plain.state_dict().values()):
        np.testing.assert_array_equal(a, b)        # no random draws, no running-statistic updates
    assert monitor.blocks == ["0: Linear", "1: BatchNorm", "4: Residual", "6: Linear"]
    assert all(len(r[name]) == 4 for r in monitor.records for name in ("grad_norm", "update_ratio", "dead_fraction"))
    assert monitor.arrays()["grad_norm"].shape == (3, 4)
    dead = monitor.records[-1]["dead_fraction"]
    assert dead[0] is None and dead[1] is not None and dead[2] is not None and dead[3] is None


def test_monitor_block_norms_cover_every_weight_of_the_block():
    x = np.random.default_rng(3).standard_normal((40, 6))
    y = x[:, :2]
    net = dl.ResMLP(6, 8, 2, 2, rng=0)
    reference = dl.ResMLP(6, 8, 2, 2, rng=0)
    trace = reference.forward(x, record=True)
    reference.backward(dl.losses.mse.grad(trace.output, y))
    monitor = dl.TrainingMonitor(warn=False)
    dl.fit(net, x, y, loss="mse", optimizer=dl.optim.SGD(net.parameters(), lr=0.01), epochs=1, batch_size=None,
           verbose=0, callbacks=[monitor])
    block = reference.layers[1]
    weights = [block.branch.layers[1].weight, block.branch.layers[3].weight]
    expected = math.sqrt(sum(np.sum(w.grad ** 2) for w in weights))
    assert monitor.records[0]["grad_norm"][1] == pytest.approx(expected, rel=1e-10)
    size = math.sqrt(sum(np.sum((w.data - 0.01 * w.grad) ** 2) for w in weights))
    assert monitor.records[0]["update_ratio"][1] == pytest.approx(0.01 * expected / size, rel=1e-8)
