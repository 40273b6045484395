"""The fast paths against the plain reference, through the public switch ``dl.set_fast_paths``.

Off, every pass runs the layers' plain ``forward`` / ``backward`` on fresh arrays and the
optimizers update one parameter at a time; on, the layers' fast variants, reused arrays, flat
gradients, the one-array optimizer update and blocked epochs. The numbers agree up to
rounding (sums taken in another order)."""
import numpy as np
import pytest

import depthlab as dl


def _train(fast: bool, optimizer: str, activation: str, dtype: str):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((130, 8)).astype(dtype)
    y = rng.integers(0, 3, 130)
    net = dl.MLP(8, [16, 16], 3, activation=activation, rng=1, dtype=dtype)
    opt = dl.optim.get(optimizer, net.parameters(), lr=0.01)
    with dl.set_fast_paths(fast):
        history = dl.fit(net, x, y, loss="cross_entropy", optimizer=opt, epochs=3, batch_size=32,
                         metrics=["accuracy"], verbose=0, rng=2)
    return net, history


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_fit_fast_and_plain_agree(optimizer, activation):
    fast_net, fast_history = _train(True, optimizer, activation, "float64")
    plain_net, plain_history = _train(False, optimizer, activation, "float64")
    for a, b in zip(fast_net.parameters(), plain_net.parameters()):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fast_history.history["loss"], plain_history.history["loss"], rtol=1e-10)
    assert fast_history.history["accuracy"] == plain_history.history["accuracy"]


def test_float32_stays_float32_on_both_paths():
    for fast in (True, False):
        net, _ = _train(fast, "adam", "relu", "float32")
        assert all(p.data.dtype == np.float32 for p in net.parameters())


@pytest.mark.parametrize("fast", [True, False])
def test_trace_and_backward_agree_with_the_other_path(fast):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 5))   # large enough for the reused buffers
    net = dl.MLP(5, [200, 200], 2, activation="sigmoid", rng=0)
    with dl.set_fast_paths(fast):
        trace = net.forward(x, record=True)
        grads = net.backward(np.ones((300, 2)))
    with dl.set_fast_paths(not fast):
        other = net.forward(x, record=True)
        net.zero_grad()
        other_grads = net.backward(np.ones((300, 2)))
    for a, b in zip(trace.layer_outputs, other.layer_outputs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(grads.layer_outputs + [grads.input], other_grads.layer_outputs + [other_grads.input]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(grads.weights, other_grads.weights):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_the_switch_is_a_context_manager_and_a_call():
    net = dl.MLP(2, [3], 1, rng=0)
    with dl.set_fast_paths(False):
        with dl.set_fast_paths(True):
            pass
        net.forward(np.ones((2, 2)), record=True)
        net.backward(np.ones((2, 1)))
        assert net.flat_gradients() is None          # plain path: no flat gradient array
    net.forward(np.ones((2, 2)), record=True)
    net.zero_grad()
    net.backward(np.ones((2, 1)))
    flat = net.flat_gradients()
    assert flat is not None and flat.size == net.n_parameters()
    with pytest.raises(TypeError, match="enabled must be True or False"):
        dl.set_fast_paths("no")


def test_a_kept_trace_is_never_overwritten_by_the_next_pass():
    rng = np.random.default_rng(0)
    net = dl.MLP(10, [400, 400], 1, rng=0)
    x1, x2 = rng.standard_normal((500, 10)), rng.standard_normal((500, 10))
    first = net.forward(x1, record=True)
    kept = [h.copy() for h in first.layer_outputs]
    net.forward(x2, record=True)
    for a, b in zip(first.layer_outputs, kept):
        np.testing.assert_array_equal(a, b)


def test_trainstep_output_and_gradients_match_the_explicit_loop_bit_for_bit():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 6)), rng.integers(0, 4, 64)
    nets = [dl.MLP(6, [32, 32], 4, rng=0) for _ in range(2)]
    opts = [dl.optim.Adam(net.parameters(), lr=1e-3) for net in nets]
    step = dl.TrainStep(nets[0], "cross_entropy", opts[0])
    for _ in range(5):
        step(x, y)
        opts[1].zero_grad()
        trace = nets[1].forward(x, record=True)
        nets[1].backward(dl.losses.cross_entropy.grad(trace.output, y), input_grad=False, intermediates=False)
        opts[1].step()
    for a, b in zip(*(net.parameters() for net in nets)):
        np.testing.assert_array_equal(a.data, b.data)
