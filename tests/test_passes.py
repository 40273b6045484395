"""The forward and backward passes: watch callbacks, and what a failed or refused pass leaves behind."""
import numpy as np
import pytest

import depthlab as dl


def _net_and_batch():
    net = dl.Sequential([dl.Linear(3, 6, rng=0), dl.ActivationLayer("tanh"), dl.Linear(6, 6, rng=1),
                         dl.ActivationLayer("relu"), dl.Linear(6, 2, rng=2)])
    return net, np.random.default_rng(0).normal(size=(9, 3))


@pytest.mark.parametrize("fast", [True, False])
def test_forward_watch_sees_each_layer_output_in_order(fast):
    net, x = _net_and_batch()
    seen = []
    plain = []
    with dl.set_fast_paths(fast):
        trace = net.forward(x, record=True, watch=lambda i, out: seen.append((i, out.copy())))
        net.forward(x, watch=lambda i, out: plain.append((i, out.copy())))
    assert [i for i, _ in seen] == list(range(5)) == [i for i, _ in plain]
    for (_, out), kept, (_, again) in zip(seen, trace.layer_outputs, plain):
        np.testing.assert_array_equal(out, kept)
        np.testing.assert_array_equal(again, kept)


@pytest.mark.parametrize("fast", [True, False])
def test_backward_watch_sees_input_gradients_with_parameter_gradients_set(fast):
    net, x = _net_and_batch()
    g = np.random.default_rng(1).normal(size=(9, 2))
    with dl.set_fast_paths(fast):
        net.forward(x, record=True)
        seen = []

        def watch(i, grad_input):
            layer = net.layers[i]
            grads_ready = all(p.grad is not None for p in layer.parameters())
            seen.append((i, grad_input.copy(), grads_ready))

        grads = net.backward(g, watch=watch)
    assert [i for i, _, _ in seen] == [4, 3, 2, 1, 0]
    assert all(ready for _, _, ready in seen)
    expected = {i: grads.layer_outputs[i - 1] for i in range(1, 5)} | {0: grads.input}
    for i, grad_input, _ in seen:
        np.testing.assert_array_equal(grad_input, expected[i])


@pytest.mark.parametrize("fast", [True, False])
def test_backward_watch_without_input_gradient_skips_layer_0(fast):
    net, x = _net_and_batch()
    seen = []
    with dl.set_fast_paths(fast):
        net.forward(x, record=True)
        net.backward(np.ones((9, 2)), input_grad=False, intermediates=False, watch=lambda i, g: seen.append(i))
    assert seen == [4, 3, 2, 1]


def test_watch_refusals():
    net, x = _net_and_batch()
    with pytest.raises(TypeError, match="watch must be a function"):
        net.forward(x, record=True, watch=3)
    with pytest.raises(ValueError, match="keep='backward'"):
        net.forward(x, keep="backward", watch=lambda i, out: None)
    net.forward(x, record=True)
    with pytest.raises(TypeError, match="watch must be a function"):
        net.backward(np.ones((9, 2)), watch="no")


def test_probe_numbers_do_not_depend_on_where_the_sums_are_taken():
    """The probe takes its sums in cache during the passes; the same statistics from the
    finished trace by NumPy agree to rounding."""
    net = dl.MLP(2, [20] * 6, 1, activation="tanh", init=1.5, rng=0)
    x = np.random.default_rng(3).normal(size=(200, 2))
    report = dl.probe(net, x)
    trace = net.forward(x, record=True)
    for s, f, h in zip(report.layers, trace.preactivations, trace.activations[1:] + [trace.output]):
        np.testing.assert_allclose([s.preactivation_mean, s.preactivation_std, s.activation_std],
                                   [f.mean(), f.std(), h.std()], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("accumulated", [False, True])
def test_an_error_inside_backward_leaves_the_gradients_as_they_were(accumulated):
    net, x = _net_and_batch()
    if accumulated:
        net.forward(x, record=True)
        net.backward(np.ones((9, 2)))
    before = [None if p.grad is None else p.grad.copy() for p in net.parameters()]

    def fail_midway(i, grad):
        if i == 2:
            raise KeyboardInterrupt

    net.forward(x, record=True)
    with pytest.raises(KeyboardInterrupt):
        net.backward(np.ones((9, 2)), watch=fail_midway)
    for p, old in zip(net.parameters(), before):
        if old is None:
            assert p.grad is None
        else:
            np.testing.assert_array_equal(p.grad, old)


def _bn_net_that_overflows():
    net = dl.Sequential([dl.Linear(2, 4, rng=0), dl.BatchNorm(4), dl.ActivationLayer("relu"), dl.Linear(4, 3, rng=1),
                         dl.ActivationLayer("relu"), dl.Linear(3, 1, rng=2)])
    net.layers[3].weight.data[...] = 1e200
    net.layers[5].weight.data[...] = 1e200      # f_2 = Ω_2 h_2 overflows to inf
    return net


@pytest.mark.parametrize("how", ["forward", "trace", "step"])
def test_a_refused_pass_leaves_batch_norms_running_statistics_unchanged(how):
    net = _bn_net_that_overflows()
    bn = net.layers[1]
    mean, var = bn.running_mean, bn.running_var
    x = np.random.default_rng(0).normal(size=(8, 2))
    calls = {"forward": lambda: net(x), "trace": lambda: net.forward(x, record=True),
             "step": lambda: dl.TrainStep(net, "mse", dl.optim.SGD(net.parameters(), lr=0.1))(x, np.zeros((8, 1)))}
    with pytest.raises(dl.NonFiniteError, match="layer 2"):
        calls[how]()
    assert bn.num_batches_tracked == 0
    np.testing.assert_array_equal(bn.running_mean, 0.0)
    np.testing.assert_array_equal(bn.running_var, 1.0)
    assert bn.running_mean is mean and bn.running_var is var     # the same arrays, restored in place


def test_an_error_in_a_later_layer_leaves_the_running_statistics_unchanged():
    class Broken(dl.Layer):
        def forward(self, x, cache):
            raise RuntimeError("broken layer")

        def backward(self, grad, cache):
            return grad

    net = dl.Sequential([dl.Linear(2, 4, rng=0), dl.BatchNorm(4), Broken()])
    with pytest.raises(RuntimeError, match="broken layer"):
        net.forward(np.random.default_rng(0).normal(size=(8, 2)), record=True)
    assert net.layers[1].num_batches_tracked == 0
    np.testing.assert_array_equal(net.layers[1].running_mean, 0.0)


def test_a_finite_pass_still_updates_the_running_statistics_once():
    net = dl.Sequential([dl.Linear(2, 4, rng=0), dl.BatchNorm(4), dl.ActivationLayer("relu"), dl.Linear(4, 1, rng=1)])
    x = np.random.default_rng(0).normal(size=(8, 2))
    net.forward(x, record=True)
    bn = net.layers[1]
    f = x @ net.layers[0].weight.data.T + net.layers[0].bias.data
    assert bn.num_batches_tracked == 1
    np.testing.assert_allclose(bn.running_mean, 0.1 * f.mean(axis=0), rtol=1e-12)


# --------------------------------------------------------------------------- dL/dx alone

def _networks():
    """A plain MLP, a batch-normed one, a residual network with a learnable scale, in float64 and float32."""
    yield "mlp", dl.MLP(3, [7, 7], 2, activation="tanh", rng=0), 3
    yield "mlp32", dl.MLP(3, [7, 7], 2, activation="relu", rng=0, dtype="float32"), 3
    yield "batchnorm", dl.Sequential([dl.Linear(3, 7, rng=0), dl.BatchNorm(7), "relu", dl.Linear(7, 2, rng=1)]), 3
    block = dl.Residual([dl.Linear(5, 5, rng=2), "relu", dl.Linear(5, 5, rng=3)], learnable_scale=True)
    yield "residual", dl.Sequential([dl.Linear(3, 5, rng=4), block, dl.LayerNorm(5), dl.Linear(5, 2, rng=5)]), 3


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("accumulated", [False, True])
def test_backward_without_parameter_grads_gives_the_same_signal_and_leaves_every_grad(fast, accumulated):
    for name, net, d_in in _networks():
        x = np.random.default_rng(1).normal(size=(8, d_in)).astype(net.dtype)
        g = np.random.default_rng(2).normal(size=(8, 2)).astype(net.dtype)
        with dl.set_fast_paths(fast):
            trace = net.forward(x, record=True, detached=True)
            full = net.backward(g, trace=trace)
            if not accumulated:
                net.zero_grad()
            before = [p.grad for p in net.parameters()]
            copies = [None if b is None else b.copy() for b in before]
            trace = net.forward(x, record=True, detached=True)
            seen = []
            alone = net.backward(g, trace=trace, parameter_grads=False, watch=lambda i, a: seen.append(i))
        assert alone.weights is None and alone.biases is None and alone.parameters is None, name
        assert "no parameter gradients" in repr(alone)
        for a, b in zip(alone.layer_outputs, full.layer_outputs):
            np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_array_equal(alone.input, full.input, err_msg=name)
        assert seen == list(range(len(net.layers) - 1, -1, -1))
        for p, b, c in zip(net.parameters(), before, copies):
            assert p.grad is b, (name, p.name)          # the very array it held (or None)
            if c is not None:
                np.testing.assert_array_equal(p.grad, c)


def test_the_training_plan_computes_parameter_grads_again_after_a_pass_without_them():
    net = dl.MLP(3, [6, 6], 2, rng=0)
    reference = dl.MLP(3, [6, 6], 2, rng=0)
    x, g = np.random.default_rng(0).normal(size=(5, 3)), np.random.default_rng(1).normal(size=(5, 2))
    net.forward(x, keep="backward")
    assert net.backward(g, intermediates=False, parameter_grads=False).weights is None
    assert all(p.grad is None for p in net.parameters())
    net.forward(x, keep="backward")                       # the same kept program, told to compute them again
    got = net.backward(g, intermediates=False)
    reference.forward(x, record=True)
    want = reference.backward(g)
    for a, b in zip(got.parameters, want.parameters):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_linear_fast_backward_skips_its_parameter_products_when_told():
    layer = dl.Linear(4, 3, rng=0)
    h = np.random.default_rng(0).normal(size=(6, 4))
    work = {"overwrite_input": False, "overwrite_grad": False, "input_grad": True, "gradients": None,
            "parameter_grads": False, "kept": None, "take": None}
    layer.forward_fast(h, work)
    grad = np.random.default_rng(1).normal(size=(6, 3))
    np.testing.assert_allclose(layer.backward_fast(grad, work), grad @ layer.weight.data, rtol=1e-14)
    assert layer.weight.grad is None and layer.bias.grad is None


def test_parameter_grads_must_be_a_bool_and_an_error_leaves_the_grads():
    net, x = _net_and_batch()
    net.forward(x, record=True)
    with pytest.raises(TypeError, match="parameter_grads must be True or False"):
        net.backward(np.ones((9, 2)), parameter_grads="no")
    net.zero_grad()

    def fails(i, grad):
        if i == 1:
            raise RuntimeError("stop")
    with pytest.raises(RuntimeError, match="stop"):
        net.backward(np.ones((9, 2)), parameter_grads=False, watch=fails)
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("case", ["relu", "tanh_loss", "residual"])
def test_probe_without_parameter_grads_reports_the_same_numbers(case):
    rng = np.random.default_rng(0)
    if case == "residual":
        net, x = dl.ResMLP(4, 8, 3, 1, rng=0), rng.normal(size=(50, 4))
    else:
        net, x = dl.MLP(4, [12] * 6, 1, activation=case.split("_")[0], init=1.0, rng=0), rng.normal(size=(50, 4))
    y = rng.normal(size=(50, 1)) if case == "tanh_loss" else None
    full, alone = dl.probe(net, x, y), dl.probe(net, x, y, parameter_grads=False)
    norm = "parameter_grad_norm" if case == "residual" else "weight_grad_norm"
    assert all(getattr(s, norm) is None for s in alone.layers)
    assert all(getattr(s, norm) is not None for s in full.layers if case != "residual")
    a, b = full.to_dict(), alone.to_dict()
    for row in a["layers"] + b["layers"]:
        row.pop(norm)
    assert a == b
    assert alone.verdict == full.verdict and alone.diagnosis == full.diagnosis
    assert "—" in str(alone)
    with pytest.raises(TypeError, match="parameter_grads must be True or False"):
        dl.probe(net, x, parameter_grads=None)
