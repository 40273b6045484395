"""Networks: forward/backward against PyTorch autograd and central differences, Jacobians, I/O."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import depthlab as dl
from depthlab.nn.gradient_check import check_input_jacobian
from torch_reference import TORCH_ACTIVATION

ACTIVATIONS = dl.activations.names()
LOSSES = ["sum_squares", "mse", "half_sum_squares", "cross_entropy", "binary_cross_entropy_with_logits"]


def targets_for(loss, n, d, rng):
    if loss == "cross_entropy":
        return rng.integers(0, d, size=n)
    if loss == "binary_cross_entropy_with_logits":
        return rng.uniform(0, 1, size=(n, d))
    return rng.standard_normal((n, d))


def test_every_activation_has_a_torch_reference():
    assert set(TORCH_ACTIVATION) == set(ACTIVATIONS)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_and_backward_match_torch_autograd(activation, rng):
    net = dl.MLP(7, [9, 8, 6], 4, activation=activation, init="xavier_normal",
                 bias_init={"name": "normal", "std": 0.3}, rng=3)
    x = rng.standard_normal((11, 7))
    grad_out = rng.standard_normal((11, 4))
    trace = net.forward(x, record=True)
    grads = net.backward(grad_out)

    phi = TORCH_ACTIVATION[activation]
    xt = torch.tensor(x, requires_grad=True)
    params = [torch.tensor(p.data, requires_grad=True) for p in net.parameters()]
    h, fs = xt, []
    for k in range(len(net.linears)):
        f = h @ params[2 * k].T + params[2 * k + 1]
        f.retain_grad()
        fs.append(f)
        h = phi(f) if k < len(net.linears) - 1 else f
    h.backward(torch.tensor(grad_out))

    def close(a, t):
        np.testing.assert_allclose(a, t.detach().numpy(), rtol=1e-10, atol=1e-13 * max(1, np.abs(a).max()))

    close(trace.output, h)
    close(grads.input, xt.grad)
    for k in range(len(net.linears)):
        close(trace.preactivations[k], fs[k])
        close(grads.preactivations[k], fs[k].grad)
        close(grads.weights[k], params[2 * k].grad)
        close(grads.biases[k], params[2 * k + 1].grad)
        close(net.linears[k].weight.grad, params[2 * k].grad)


def test_to_torch_and_back_computes_the_same_function(rng):
    net = dl.MLP(5, [6, 6], 3, activation=["elu", "leaky_relu"], rng=0, bias_init=0.1)
    module = dl.to_torch(net)
    x = rng.standard_normal((4, 5))
    np.testing.assert_allclose(module(torch.tensor(x)).detach().numpy(), net(x), rtol=1e-13)
    back = dl.from_torch(module)
    np.testing.assert_array_equal(back(x), net(x))
    assert [a.spec() for a in back.layer_activations] == [a.spec() for a in net.layer_activations]


def test_from_torch_refuses_unknown_modules():
    with pytest.raises(ValueError, match=r"Softmax.*supported modules: Linear, Sequential, BatchNorm1d"):
        dl.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Softmax(dim=1)))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("depth", [1, 3, 20])
def test_gradients_match_central_differences(activation, loss, depth, rng):
    width = 3
    net = dl.MLP(2, [width] * depth, 3, activation=activation, init="xavier_normal",
                 bias_init={"name": "normal", "std": 0.5}, rng=depth)
    y = targets_for(loss, 4, 3, rng)
    for attempt in range(20):  # a batch whose pre-activations keep clear of every kink
        result = dl.gradcheck(net, rng.standard_normal((4, 2)), y, loss=loss, max_entries=12)
        if result.near_kinks == 0:
            break
    assert result.near_kinks == 0
    assert result.passed, str(result)  # relative error < 1e-6, down to the resolution of differences


def test_gradcheck_catches_a_wrong_gradient(rng):
    net = dl.MLP(2, [4], 1, activation="tanh", rng=0)
    act = net.layers[1].activation
    wrong = dl.activations.Activation("tanh", np.tanh, lambda f, h: 1 - 0.9 * h * h, 1.0)
    net.layers[1].activation = wrong
    result = dl.gradcheck(net, rng.standard_normal((3, 2)), rng.standard_normal((3, 1)))
    assert not result.passed and result.max_rel_error > 1e-3
    assert "FAILED" in str(result)
    net.layers[1].activation = act


def test_gradcheck_explains_relu_kinks():
    net = dl.Sequential.from_arrays([np.array([[1.0]]), np.array([[1.0]])], [np.array([0.0]), np.array([0.0])])
    result = dl.gradcheck(net, np.array([[1e-9]]), np.array([[1.0]]))
    assert result.near_kinks == 1
    assert any("kink" in note for note in result.notes)


def test_gradcheck_warns_in_float32(rng):
    net = dl.MLP(2, [3], 1, rng=0, dtype="float32")
    with pytest.warns(UserWarning, match="float32"):
        dl.gradcheck(net, rng.standard_normal((2, 2)), rng.standard_normal((2, 1)))


def test_numerical_gradient_of_a_closed_form():
    grad = dl.numerical_gradient(lambda v: v[0] ** 2 / 20 + v[1] ** 2, np.array([-7.0, 2.0]))
    np.testing.assert_allclose(grad, [-0.7, 4.0], rtol=1e-9)


@pytest.mark.parametrize("widths", [(3, [5, 4], 2), (2, [6], 7)])  # reverse and forward mode
@pytest.mark.parametrize("activation", ["tanh", "gelu", "relu"])
def test_input_jacobian_matches_central_differences(widths, activation, rng):
    d_in, hidden, d_out = widths
    net = dl.MLP(d_in, hidden, d_out, activation=activation, output_activation="sigmoid",
                 bias_init=0.2, rng=1)
    x = rng.standard_normal((5, d_in))
    assert net.input_jacobian(x).shape == (5, d_out, d_in)
    abs_err, rel_err = check_input_jacobian(net, x)
    assert rel_err < 1e-7


def test_input_jacobian_equals_backward_rows(rng):
    net = dl.MLP(4, [6, 6], 3, activation="silu", rng=2)
    x = rng.standard_normal((5, 4))
    jac = net.input_jacobian(x)
    for j in range(3):
        net.forward(x, record=True)
        seed = np.zeros((5, 3))
        seed[:, j] = 1
        np.testing.assert_allclose(net.backward(seed).input, jac[:, j, :], rtol=1e-12, atol=1e-15)


def test_trace_layout_follows_the_seeds_notation(rng):
    net = dl.MLP(2, [5, 4], 3, activation="relu", output_activation="sigmoid", rng=0)
    x = rng.standard_normal((6, 2))
    trace = net.forward(x, record=True)
    assert [f.shape for f in trace.preactivations] == [(6, 5), (6, 4), (6, 3)]
    assert [h.shape for h in trace.activations] == [(6, 2), (6, 5), (6, 4)]
    assert trace.activations[0] is x or np.array_equal(trace.activations[0], x)
    np.testing.assert_array_equal(trace.activations[1], np.maximum(trace.preactivations[0], 0))
    np.testing.assert_allclose(trace.output, 1 / (1 + np.exp(-trace.preactivations[2])))
    np.testing.assert_array_equal(net(x), trace.output)
    grads = net.backward(np.ones((6, 3)))
    assert [g.shape for g in grads.weights] == [(5, 2), (4, 5), (3, 4)]
    assert [g.shape for g in grads.activations] == [(6, 2), (6, 5), (6, 4)]
    assert grads.input is grads.activations[0]


def test_backward_accumulates_into_parameters_and_zero_grad_clears(rng):
    net = dl.MLP(3, [4], 2, rng=0)
    x, g = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    net.forward(x, record=True)
    first = net.backward(g).weights[0].copy()
    net.forward(x, record=True)
    net.backward(g)
    np.testing.assert_allclose(net.linears[0].weight.grad, 2 * first)
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_backward_without_recorded_forward_is_an_error(rng):
    net = dl.MLP(3, [4], 2, rng=0)
    with pytest.raises(RuntimeError, match="record=True"):
        net.backward(np.ones((1, 2)))
    net(rng.standard_normal((2, 3)))  # an unrecorded forward keeps nothing
    with pytest.raises(RuntimeError, match="record=True"):
        net.backward(np.ones((2, 2)))


def test_from_arrays_accepts_the_seeds_column_biases():
    weights = [np.ones((3, 1)), np.ones((1, 3))]
    biases = [np.full((3, 1), 0.5), np.zeros((1, 1))]
    net = dl.Sequential.from_arrays(weights, biases, activation="relu")
    np.testing.assert_allclose(net(np.array([[1.0]])), [[4.5]])
    weights[0][0, 0] = 100  # copied, not aliased
    np.testing.assert_allclose(net(np.array([[1.0]])), [[4.5]])


def test_mlp_is_reproducible_and_per_layer_activations(rng):
    a = dl.MLP(3, [4, 4], 2, activation=["tanh", "relu"], rng=5)
    b = dl.MLP(3, [4, 4], 2, activation=["tanh", "relu"], rng=5)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert [act.name for act in a.layer_activations] == ["tanh", "relu", "identity"]
    assert a.depth == 2 and a.widths == [3, 4, 4, 2]


def test_init_as_variance_number_gives_that_variance():
    net = dl.MLP(400, [400], 1, init=0.25, rng=0)
    assert np.var(net.linears[0].weight.data) == pytest.approx(0.25, rel=0.02)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_save_load_round_trip_is_exact(tmp_path, dtype, rng):
    net = dl.MLP(3, [5, 4], 2, activation=["gelu", {"name": "leaky_relu", "negative_slope": 0.2}],
                 output_activation="tanh", bias_init=0.1, rng=0, dtype=dtype)
    net.save(tmp_path / "net.npz")
    back = dl.load(tmp_path / "net.npz")
    assert back.dtype == net.dtype
    x = rng.standard_normal((4, 3)).astype(dtype)
    np.testing.assert_array_equal(back(x), net(x))
    assert repr(back) == repr(net)


def test_float32_stays_float32_through_forward_and_backward(rng):
    net = dl.MLP(4, [8, 8], 3, activation="gelu", rng=0, dtype="float32")
    x = rng.standard_normal((5, 4)).astype(np.float32)
    trace = net.forward(x, record=True)
    assert all(a.dtype == np.float32 for a in trace.preactivations + trace.activations + [trace.output])
    grads = net.backward(np.ones((5, 3), dtype=np.float32))
    arrays = grads.weights + grads.biases + grads.preactivations + grads.activations
    assert all(a.dtype == np.float32 for a in arrays)


def test_overflow_names_the_layer_where_it_started():
    net = dl.MLP(1, [80] * 50, 1, init=1.0, rng=0, dtype="float32")
    with pytest.raises(dl.NonFiniteError, match=r"overflowed at layer \d+"):
        net(np.ones((10, 1), dtype=np.float32))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), widths=st.lists(st.integers(1, 5), min_size=0, max_size=3),
       d_in=st.integers(1, 4), d_out=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_shapes_for_any_architecture(n, widths, d_in, d_out, seed):
    net = dl.MLP(d_in, widths, d_out, activation="tanh", rng=seed)
    x = np.random.default_rng(seed).standard_normal((n, d_in))
    trace = net.forward(x, record=True)
    assert trace.output.shape == (n, d_out)
    grads = net.backward(np.ones((n, d_out)))
    assert grads.input.shape == (n, d_in)
    assert [w.shape for w in grads.weights] == [(b, a) for a, b in zip([d_in, *widths], [*widths, d_out])]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_backward_is_linear_in_grad_output(seed, a, b):
    rng = np.random.default_rng(seed)
    net = dl.MLP(3, [4, 4], 2, activation="gelu", rng=seed)
    x = rng.standard_normal((5, 3))
    g1, g2 = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))

    def grads(g):
        net.forward(x, record=True)
        out = net.backward(g)
        return np.concatenate([w.ravel() for w in out.weights + out.biases] + [out.input.ravel()])

    np.testing.assert_allclose(grads(a * g1 + b * g2), a * grads(g1) + b * grads(g2), rtol=1e-9, atol=1e-12)


def test_backward_can_skip_the_input_gradient(rng):
    net = dl.MLP(5, [4, 4], 2, rng=0)
    x, g = rng.standard_normal((3, 5)), rng.standard_normal((3, 2))
    net.forward(x, record=True)
    full = net.backward(g)
    net.zero_grad()
    net.forward(x, record=True)
    lean = net.backward(g, input_grad=False)
    assert lean.input is None and lean.activations[0] is None
    for a, b in zip(full.weights + full.biases, lean.weights + lean.biases):
        np.testing.assert_array_equal(a, b)
