"""Reused buffers: a network writes over the last pass's arrays only when nobody holds them."""
import copy
import pickle

import numpy as np
import pytest

import depthlab as dl
from depthlab._fast import buffers as _buffers
from depthlab._fast.buffers import _UNREFERENCED, Buffers


@pytest.fixture(autouse=True)
def reuse_every_array(monkeypatch):
    """Small test networks: keep every array, not only those of REUSE_BYTES and more."""
    monkeypatch.setattr(_buffers, "REUSE_BYTES", 0)


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def fresh_pass(net, x, grad_output):
    """Trace and gradients from an independent copy of the network (nothing shared)."""
    twin = net.copy()
    trace = twin.forward(x, record=True)
    return trace, twin.backward(grad_output)


@pytest.fixture
def setup(rng):
    net = dl.MLP(3, [5, 4], 2, activation="tanh", init="xavier_normal",
                 bias_init={"name": "normal", "std": 0.3}, rng=1)
    xs = [rng.standard_normal((6, 3)) for _ in range(2)]
    gs = [rng.standard_normal((6, 2)) for _ in range(2)]
    return net, xs, gs


def test_reference_counting_is_calibrated():
    assert _UNREFERENCED >= 2  # CPython: at least the buffer slot and getrefcount's argument


def test_take_reuses_an_unreferenced_array_and_never_a_held_one():
    buffers = Buffers()
    first = buffers.take("a", (3, 2), np.dtype(np.float64))
    pointer = address(first)
    del first
    again = buffers.take("a", (3, 2), np.dtype(np.float64))
    assert address(again) == pointer
    held = again  # a second name: the array is in use
    other = buffers.take("a", (3, 2), np.dtype(np.float64))
    assert other is not held
    assert not np.shares_memory(other, held)


def test_arrays_under_reuse_bytes_are_left_to_numpy(monkeypatch):
    monkeypatch.setattr(_buffers, "REUSE_BYTES", 1 << 18)
    buffers = Buffers()
    assert buffers.take("small", (255, 128), np.dtype(np.float64)) is None
    assert buffers.take("large", (256, 128), np.dtype(np.float64)).nbytes == 1 << 18
    assert len(buffers) == 1


@pytest.mark.parametrize("shape, dtype", [((2, 3), np.float64), ((3, 2), np.float32)])
def test_take_replaces_an_array_of_another_shape_or_dtype(shape, dtype):
    buffers = Buffers()
    buffers.take("a", (3, 2), np.dtype(np.float64))
    array = buffers.take("a", shape, np.dtype(dtype))
    assert array.shape == shape and array.dtype == dtype


def test_a_second_recorded_pass_reuses_the_first_ones_arrays(setup):
    net, (x1, x2), (g1, g2) = setup
    trace = net.forward(x1, record=True)
    grads = net.backward(g1)
    reused = trace.preactivations + trace.activations[1:] + grads.weights + grads.preactivations[:-1]
    pointers = [address(a) for a in reused]
    del trace, grads, reused
    net.zero_grad()
    trace = net.forward(x2, record=True)
    grads = net.backward(g2)
    reused = trace.preactivations + trace.activations[1:] + grads.weights + grads.preactivations[:-1]
    assert [address(a) for a in reused] == pointers
    expected_trace, expected_grads = fresh_pass(net, x2, g2)
    for a, b in zip(trace.preactivations + grads.weights, expected_trace.preactivations + expected_grads.weights):
        np.testing.assert_array_equal(a, b)


def test_a_kept_trace_and_gradients_are_never_overwritten(setup):
    net, (x1, x2), (g1, g2) = setup
    expected_trace, expected_grads = fresh_pass(net, x1, g1)
    trace = net.forward(x1, record=True)
    grads = net.backward(g1)
    net.zero_grad()
    net.forward(x2, record=True)
    net.backward(g2)
    for kept, expected in [(trace.preactivations, expected_trace.preactivations),
                           (trace.activations, expected_trace.activations),
                           (grads.weights, expected_grads.weights), (grads.biases, expected_grads.biases),
                           (grads.preactivations, expected_grads.preactivations),
                           (grads.activations, expected_grads.activations)]:
        for a, b in zip(kept, expected):
            np.testing.assert_array_equal(a, b)


def test_a_kept_view_or_parameter_gradient_is_never_overwritten(setup):
    net, (x1, x2), (g1, g2) = setup
    expected_trace, expected_grads = fresh_pass(net, x1, g1)
    view = net.forward(x1, record=True).preactivations[1][:, :2]
    net.backward(g1)
    weight_grad = net.linears[0].weight.grad
    output = net.forward(x1, record=True).output
    net.zero_grad()
    net.forward(x2, record=True)
    net.backward(g2)
    np.testing.assert_array_equal(view, expected_trace.preactivations[1][:, :2])
    np.testing.assert_array_equal(output, expected_trace.output)
    np.testing.assert_array_equal(weight_grad, expected_grads.weights[0])


def test_backward_after_a_reused_forward_matches_a_fresh_network(setup):
    net, (x1, x2), (g1, g2) = setup
    for x, g in [(x1, g1), (x2, g2), (x1, g2)]:
        net.zero_grad()
        net.forward(x, record=True)
        got = net.backward(g)
        _, expected = fresh_pass(net, x, g)
        for a, b in zip(got.weights + got.activations, expected.weights + expected.activations):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda net: pickle.loads(pickle.dumps(net))])
def test_copies_start_with_empty_buffers(setup, clone):
    net, (x1, _), _ = setup
    kept = net.forward(x1, record=True)
    twin = clone(net)
    np.testing.assert_array_equal(twin(x1), net(x1))
    with pytest.raises(RuntimeError, match="needs a recorded forward pass"):
        twin.backward(np.ones_like(kept.output))   # the copy has no pass of the original's
    twin_trace = twin.forward(x1, record=True)
    assert not any(np.shares_memory(a, b) for a in twin_trace.layer_outputs for b in kept.layer_outputs)


@pytest.mark.parametrize("reuse_bytes", [0, 1 << 60])
@pytest.mark.parametrize("output_activation", [None, "tanh"])
def test_backward_without_intermediates_gives_the_same_parameter_gradients(setup, output_activation, reuse_bytes,
                                                                           monkeypatch):
    monkeypatch.setattr(_buffers, "REUSE_BYTES", reuse_bytes)
    net, (x1, _), (g1, _) = setup
    net = dl.Sequential.from_arrays([p.data for p in net.parameters()][::2], [p.data for p in net.parameters()][1::2],
                                    activation="relu", output_activation=output_activation)
    _, expected = fresh_pass(net, x1, g1)
    kept = g1.copy()
    net.forward(x1, record=True)
    got = net.backward(g1, input_grad=True, intermediates=False)
    assert got.preactivations is None and got.activations is None
    np.testing.assert_array_equal(g1, kept)  # the caller's grad_output is never written over
    for a, b in zip(got.weights + got.biases + [got.input], expected.weights + expected.biases + [expected.input]):
        np.testing.assert_array_equal(a, b)
    for p, b in zip(net.parameters(), [w for pair in zip(expected.weights, expected.biases) for w in pair]):
        np.testing.assert_array_equal(p.grad, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blas_sums_agree_with_numpy_and_keep_the_dtype(dtype):
    from depthlab._fast.buffers import batch_sum, entry_sum, ones
    g = np.random.default_rng(0).normal(size=(300, 7)).astype(dtype)
    column_sums = batch_sum(g)
    assert column_sums.dtype == dtype and column_sums.shape == (7,)
    np.testing.assert_allclose(column_sums, g.astype(np.float64).sum(axis=0), rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert entry_sum(g) == pytest.approx(float(g.astype(np.float64).sum()), rel=1e-5, abs=1e-4)
    assert not ones(4, np.dtype(dtype)).flags.writeable


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_entry_sum_is_non_finite_when_an_entry_is(bad):
    from depthlab._fast.buffers import entry_sum
    g = np.ones((10, 10), np.float32)
    g[3, 4] = bad
    assert not np.isfinite(entry_sum(g))
