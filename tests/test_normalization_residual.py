"""Batch norm, layer norm, dropout and residual blocks: PyTorch parity in float64 (outputs,
every parameter gradient, dL/dx; train and eval mode), running statistics, central
differences, modes, state and bad input."""
import numpy as np
import pytest
import torch

import depthlab as dl

RNG = np.random.default_rng(0)
X = RNG.standard_normal((24, 6)) * 1.5 + 0.3
Y = RNG.standard_normal((24, 3))

NETWORKS = {
    "preact-plain": lambda: dl.ResMLP(6, 10, 3, 3, rng=1),
    "preact-batch": lambda: dl.ResMLP(6, 10, 3, 3, norm="batch", rng=2),
    "preact-layer": lambda: dl.ResMLP(6, 10, 3, 3, norm="layer", rng=3),
    "postact-batch": lambda: dl.ResMLP(6, 10, 2, 3, block="postact", norm="batch", rng=4),
    "postact-layer-scaled": lambda: dl.ResMLP(6, 10, 4, 3, block="postact", norm="layer",
                                              residual_scale="1/sqrt(depth)", rng=5),
    "skipinit-learnable": lambda: dl.ResMLP(6, 10, 2, 3, residual_scale=0, learnable_scale=True, rng=6),
    "fixup": lambda: dl.ResMLP(6, 10, 3, 3, init="fixup", rng=7),
    "shortcut-and-dropout-eval": lambda: dl.Sequential(
        dl.Residual(dl.Linear(6, 9, rng=8), "tanh", dl.LayerNorm(9, elementwise_affine=False),
                    shortcut=dl.Linear(6, 9, rng=9), scale=0.5),
        dl.Dropout(0.3, rng=0), dl.BatchNorm(9, affine=False), dl.Linear(9, 3, rng=10)).eval(),
}


def _perturb_affine(net):
    """Non-trivial γ, β (they start at 1 and 0) so their gradients and effect are tested."""
    rng = np.random.default_rng(42)
    for layer in net.layers_within():
        if isinstance(layer, (dl.BatchNorm, dl.LayerNorm)) and layer.parameters():
            layer.weight.data[...] = rng.uniform(0.5, 1.5, layer.num_features)
            layer.bias.data[...] = rng.normal(0, 0.3, layer.num_features)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_outputs_and_every_gradient_match_pytorch(name, mode):
    net = NETWORKS[name]()
    _perturb_affine(net)
    if name.endswith("eval") or mode == "eval":  # running statistics of a few batches first
        with net.mode(True):
            for shift in range(3):
                net.forward(X + shift)
        net.eval()
    module = dl.to_torch(net)
    trace = net.forward(X, record=True)
    grads = net.backward(dl.losses.mse.grad(trace.output, Y))
    xt = torch.tensor(X, requires_grad=True)
    out = module(xt)
    torch.nn.functional.mse_loss(out, torch.tensor(Y)).backward()
    np.testing.assert_allclose(trace.output, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads.input, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    torch_grads = [p.grad for p in module.parameters()]
    ours = net.parameters()
    assert len(torch_grads) == len(ours)
    for ours_p, theirs in zip(ours, torch_grads):
        np.testing.assert_allclose(ours_p.grad, theirs.numpy(), rtol=1e-10, atol=1e-12)


def test_running_statistics_after_training_steps_match_pytorch():
    net = dl.ResMLP(6, 10, 2, 3, norm="batch", rng=0)
    module = dl.to_torch(net)
    opt = dl.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    step = dl.TrainStep(net, "mse", opt)
    for i in range(5):
        rows = slice(4 * i, 4 * i + 8)
        step(X[rows], Y[rows])
        topt.zero_grad()
        torch.nn.functional.mse_loss(module(torch.tensor(X[rows])), torch.tensor(Y[rows])).backward()
        topt.step()
    state, theirs = net.state_dict(), module.state_dict()
    running = [name for name in state if "running" in name or "num_batches" in name]
    assert len(running) == 3 * 5
    for name in state:
        np.testing.assert_allclose(np.asarray(state[name], dtype=float), theirs[name].numpy().astype(float),
                                   rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("momentum", [0.3, None])
def test_batchnorm_running_variance_is_unbiased_and_momentum_none_averages(momentum):
    bn = dl.BatchNorm(6, momentum=momentum)
    batches = [X[:8], X[8:20], X[20:]]
    for batch in batches:
        bn.forward(batch, {})
    if momentum is None:
        expected_mean = np.mean([b.mean(axis=0) for b in batches], axis=0)
        expected_var = np.mean([b.var(axis=0, ddof=1) for b in batches], axis=0)
    else:
        expected_mean, expected_var = np.zeros(6), np.ones(6)
        for b in batches:
            expected_mean = (1 - momentum) * expected_mean + momentum * b.mean(axis=0)
            expected_var = (1 - momentum) * expected_var + momentum * b.var(axis=0, ddof=1)
    np.testing.assert_allclose(bn.running_mean, expected_mean, rtol=1e-13)
    np.testing.assert_allclose(bn.running_var, expected_var, rtol=1e-13)
    assert bn.num_batches_tracked == 3


@pytest.mark.parametrize("layer, mode", [
    (lambda: dl.BatchNorm(6), "train"),
    (lambda: dl.BatchNorm(6), "eval"),
    (lambda: dl.BatchNorm(6, affine=False, track_running_stats=False), "eval"),
    (lambda: dl.LayerNorm(6), "train"),
    (lambda: dl.Residual(dl.Linear(6, 4, rng=0), "gelu", dl.Linear(4, 6, rng=1), scale=0.7, learnable_scale=True),
     "train"),
    (lambda: dl.Residual(dl.Linear(6, 4, rng=0), "tanh", shortcut=dl.Linear(6, 4, rng=2)), "train"),
])
def test_every_new_layer_passes_gradcheck(layer, mode):
    built = layer()
    net = dl.Sequential(dl.Linear(6, 6, rng=3), built, dl.Linear(built.output_features(6), 2, rng=4))
    _perturb_affine(net)
    net.train(mode == "train")
    before = net.state_dict()
    result = dl.gradcheck(net, X[:10], Y[:10, :2], loss="mse")
    assert result.passed, result
    for name, value in net.state_dict().items():   # the checks' passes left the running statistics alone
        np.testing.assert_array_equal(value, before[name])


def test_dropout_is_inverted_and_only_active_in_train_mode():
    drop = dl.Dropout(0.25, rng=0)
    x = np.ones((4000, 50))
    cache = {}
    y = drop.forward(x, cache)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    np.testing.assert_array_equal(drop.backward(np.ones_like(x), cache), y)   # the same mask
    drop.eval()
    assert drop.forward(x, {}) is x


def test_fit_trains_in_train_mode_and_predict_uses_eval_mode():
    net = dl.Sequential(dl.Linear(6, 16, rng=0), "relu", dl.Dropout(0.5, rng=1), dl.Linear(16, 3, rng=2))
    net.eval()
    modes = []
    dl.fit(net, X, Y, loss="mse", optimizer="sgd", epochs=2, batch_size=8, verbose=0,
           callbacks=[dl.LambdaCallback(on_batch_end=lambda batch, logs: modes.append(net.training))])
    assert modes and all(modes)
    assert net.training is False                                    # the caller's mode comes back
    net.train()
    np.testing.assert_array_equal(dl.predict(net, X), dl.predict(net, X))   # eval: no dropout
    assert net.training is True


def test_state_dict_round_trip_keeps_running_statistics():
    net = dl.ResMLP(6, 10, 2, 3, norm="batch", rng=0)
    with net.mode(True):
        net.forward(X)
    twin = dl.ResMLP(6, 10, 2, 3, norm="batch", rng=9)
    twin.load_state_dict(net.state_dict())
    net.eval(), twin.eval()
    np.testing.assert_array_equal(twin(X), net(X))


def test_probe_leaves_running_statistics_and_modes_alone():
    net = dl.ResMLP(6, 10, 2, 3, norm="batch", rng=0).eval()
    before = net.state_dict()
    dl.probe(net, X, theory=False)
    assert net.training is False
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


BAD = [
    ("one sample in train mode", lambda: dl.BatchNorm(3).forward(np.ones((1, 3)), {}), ValueError,
     r"more than 1 value per feature.*net.eval\(\)"),
    ("feature count", lambda: dl.Sequential(dl.Linear(2, 4), dl.BatchNorm(5)), ValueError, r"expects 5 features, got 4"),
    ("layer norm width", lambda: dl.LayerNorm(4).forward(np.ones((3, 5)), {}), ValueError, r"\(N, 4\), got \(3, 5\)"),
    ("branch changes width", lambda: dl.Residual(dl.Linear(4, 6)), ValueError,
     r"maps 4 features to 6.*shortcut=dl.Linear\(4, 6\)"),
    ("dropout p = 1", lambda: dl.Dropout(1.0), ValueError, r"p must be in \[0, 1\)"),
    ("dropout p < 0", lambda: dl.Dropout(-0.1), ValueError, r"p must be in \[0, 1\)"),
    ("residual scale string", lambda: dl.ResMLP(2, 4, 2, 1, residual_scale="half"), ValueError,
     r"residual_scale must be a number, '1/sqrt\(depth\)'"),
    ("norm name", lambda: dl.ResMLP(2, 4, 2, 1, norm="group"), ValueError, r"norm must be None, 'batch' or 'layer'"),
    ("block name", lambda: dl.ResMLP(2, 4, 2, 1, block="dense"), ValueError, r"block must be one of"),
    ("jacobian with batch statistics", lambda: dl.ResMLP(2, 4, 1, 1, norm="batch").input_jacobian(np.ones((3, 2))),
     ValueError, r"call net.eval\(\) first"),
]


@pytest.mark.parametrize("case, action, error, pattern", BAD, ids=[case[0] for case in BAD])
def test_bad_input_is_refused_clearly(case, action, error, pattern):
    with pytest.raises(error, match=pattern):
        action()


def test_eval_without_running_statistics_uses_the_batch_as_pytorch():
    bn = dl.BatchNorm(6, track_running_stats=False).eval()
    tb = torch.nn.BatchNorm1d(6, track_running_stats=False, dtype=torch.float64).eval()
    np.testing.assert_allclose(bn.forward(X, {}), tb(torch.tensor(X)).detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", ["preact-batch", "postact-layer-scaled", "skipinit-learnable",
                                  "shortcut-and-dropout-eval"])
def test_save_and_load_round_trip_keeps_weights_running_statistics_and_modes(name, tmp_path):
    net = NETWORKS[name]()
    _perturb_affine(net)
    with net.mode(True):
        net.forward(X)                                   # running statistics move
    net.eval()
    net.layers[0].train()                                # a mixed mode survives too
    back = dl.load(net.save(tmp_path / "net"))
    for (name_a, a), (name_b, b) in zip(net.state_dict().items(), back.state_dict().items()):
        assert name_a == name_b
        np.testing.assert_array_equal(a, b)
    assert [layer.training for layer in back.layers_within()] == [layer.training for layer in net.layers_within()]
    np.testing.assert_array_equal(back(X), net(X))


def test_a_layer_of_another_kind_is_refused_before_anything_is_written(tmp_path):
    class Twice(dl.Layer):
        def forward(self, x, cache):
            return 2 * x

        def backward(self, grad, cache):
            return 2 * grad

    with pytest.raises(TypeError, match="not Twice; save net.state_dict"):
        dl.Sequential(dl.Linear(2, 2), Twice()).save(tmp_path / "net")
    assert not list(tmp_path.iterdir())


def test_input_jacobian_refuses_dropout_in_train_mode_and_is_exact_in_eval():
    """Each replicated copy would draw its own dropout mask: refused in train mode; in eval
    mode dropout is the identity and the Jacobian matches central differences."""
    net = dl.Sequential(dl.Linear(3, 5, rng=0), "tanh", dl.Dropout(0.5, rng=1), dl.Linear(5, 2, rng=2))
    x = np.random.default_rng(3).standard_normal((4, 3))
    with pytest.raises(ValueError, match="dropout draws a new mask"):
        net.input_jacobian(x)
    net.eval()
    jacobian = net.input_jacobian(x)
    step = 1e-6
    for j in range(3):
        shift = np.zeros(3)
        shift[j] = step
        numeric = (net(x + shift) - net(x - shift)) / (2 * step)
        np.testing.assert_allclose(jacobian[:, :, j], numeric, atol=1e-8)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_copy_and_astype_of_a_network_with_batch_norm_dropout_and_residuals(dtype):
    """copy/astype work for any layers: parameters and running statistics converted, modes
    kept, the copy independent of the original."""
    net = dl.Sequential(dl.Linear(4, 8, rng=0), dl.BatchNorm(8), dl.Residual(dl.Linear(8, 8, rng=1), "relu",
                                                                            learnable_scale=True),
                        dl.Dropout(0.2, rng=2), dl.Linear(8, 2, rng=3))
    x = np.random.default_rng(4).standard_normal((16, 4))
    dl.fit(net, x, np.arange(16) % 2, loss="cross_entropy", epochs=2, batch_size=4, verbose=0, rng=0)
    net.eval()
    copied = net.copy() if dtype == "float64" else net.astype(dtype)
    assert not copied.training and not copied.layers[1].training
    assert all(p.dtype == np.dtype(dtype) and p.grad is None for p in copied.parameters())
    assert copied.layers[1].running_var.dtype == np.dtype(dtype)
    assert copied.layers[1].num_batches_tracked == net.layers[1].num_batches_tracked == 8
    tolerance = 0 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(copied(x.astype(dtype)), net(x), atol=tolerance, rtol=tolerance)
    copied.layers[1].running_mean[...] = 7.0
    copied.parameters()[0].data[...] = 0.0
    assert not np.any(net.layers[1].running_mean == 7.0) and np.any(net.parameters()[0].data != 0)


def test_batch_norm_keeps_its_running_statistics_through_a_refused_batch():
    """A batch with NaN is refused (non-finite) and leaves the running statistics as they were."""
    net = dl.Sequential(dl.Linear(3, 4, rng=0), dl.BatchNorm(4))
    x = np.random.default_rng(1).standard_normal((8, 3))
    net(x)
    mean, var, count = net.layers[1].running_mean.copy(), net.layers[1].running_var.copy(), 1
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net(bad)
    np.testing.assert_array_equal(net.layers[1].running_mean, mean)
    np.testing.assert_array_equal(net.layers[1].running_var, var)
    assert net.layers[1].num_batches_tracked == count
    net.eval()
    assert np.isfinite(net(x[:1])).all()


def test_residual_refuses_a_shortcut_of_the_wrong_width_when_built():
    with pytest.raises(ValueError, match="the shortcut .* to 5"):
        dl.Residual(dl.Linear(4, 6), shortcut=dl.Linear(4, 5))
    with pytest.raises(ValueError, match="cannot take the branch's 4 input features"):
        dl.Residual(dl.Linear(4, 6), shortcut=dl.Linear(3, 6))


@pytest.mark.parametrize("make", [lambda: dl.BatchNorm(2**40), lambda: dl.LayerNorm(10**30),
                                  lambda: dl.ResMLP(4, 8, 10**9, 3)])
def test_sizes_beyond_memory_are_refused_before_allocating(make):
    with pytest.raises(ValueError, match="memory|index"):
        make()


def test_fit_refuses_an_epoch_ending_in_a_one_sample_batch_before_any_step():
    net = dl.ResMLP(4, 8, 2, 2, norm="batch", rng=0)
    before = [p.data.copy() for p in net.parameters()]
    x = np.random.default_rng(0).standard_normal((8, 4))
    with pytest.raises(ValueError, match="last batch of each epoch holds 1 sample.*batch_size=8"):
        dl.fit(net, x, np.arange(8) % 2, loss="cross_entropy", epochs=1, batch_size=7, verbose=0)
    assert all(np.array_equal(p.data, b) for p, b in zip(net.parameters(), before))
    dl.fit(dl.ResMLP(4, 8, 2, 2, norm="layer", rng=0), x, np.arange(8) % 2, loss="cross_entropy", epochs=1,
           batch_size=7, verbose=0)  # layer norm works on one sample


@pytest.mark.parametrize("samples, batch_size, message", [(1, 4, "got x with 1 sample"), (6, 1, "batch_size=1")])
def test_fit_refuses_batch_norm_batches_of_one(samples, batch_size, message):
    net = dl.ResMLP(4, 8, 1, 2, norm="batch", rng=0)
    x = np.random.default_rng(0).standard_normal((samples, 4))
    with pytest.raises(ValueError, match=message):
        dl.fit(net, x, np.arange(samples) % 2, loss="cross_entropy", batch_size=batch_size, verbose=0)
