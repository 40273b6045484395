"""The public layer protocol: a layer written here, with no change to the library, is
gradchecked, trained by ``fit``, probed and recorded in a trace — the same code on every path."""
import copy

import numpy as np
import pytest
import torch

import depthlab as dl


class Scale(dl.Layer):
    """y = x ⊙ g, the example of the one-engine issue (written outside the library)."""

    def __init__(self, n):
        super().__init__()
        self.gain = dl.Parameter(np.ones(n))

    def forward(self, x, cache):
        cache["x"] = x
        return x * self.gain.data

    def backward(self, grad_output, cache):
        self.gain.accumulate((grad_output * cache["x"]).sum(axis=0))
        return grad_output * self.gain.data


def scaled_net(seed=0):
    rng = np.random.default_rng(seed)
    scale = Scale(6)
    scale.gain.data[...] = rng.uniform(0.5, 1.5, 6)
    return dl.Sequential(dl.Linear(3, 6, rng=seed), scale, "tanh", dl.Linear(6, 2, rng=seed + 1))


def data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)), rng.standard_normal((n, 2))


def test_scale_is_gradchecked_in_a_network():
    net = scaled_net()
    x, y = data()
    result = dl.gradcheck(net, x, y, loss="mse")
    assert result.passed, result
    names = [row.name for row in result.rows]
    assert "1.gain" in names and "input" in names


def test_scale_trains_with_fit_and_its_gain_moves():
    net = scaled_net()
    x, _ = data(64)
    y = np.tanh(x[:, :2])          # a target the network can learn
    before = net[1].gain.data.copy()
    history = dl.fit(net, x, y, loss="mse", optimizer=dl.optim.SGD(net.parameters(), lr=0.1), epochs=60,
                     batch_size=16, verbose=0, rng=0)
    assert history.history["loss"][-1] < 0.3 * history.history["loss"][0]
    assert not np.array_equal(net[1].gain.data, before)


def test_scale_is_probed_and_recorded_in_a_trace():
    net = scaled_net()
    x, _ = data(200)
    report = dl.probe(net, x, theory=False)
    trace = net.forward(x, record=True)
    assert len(report.layers) == len(trace.layer_outputs) == 4   # one row per top-level layer, Scale's included
    assert report.layers[1].output_std == pytest.approx(trace.layer_outputs[1].std(), rel=1e-12)
    np.testing.assert_allclose(trace.layer_outputs[1], trace.layer_outputs[0] * net[1].gain.data)
    grads = net.backward(np.ones((200, 2)))
    assert grads.layer_outputs[1].shape == (200, 6)
    np.testing.assert_allclose(net[1].gain.grad, (grads.layer_outputs[1] * trace.layer_outputs[0]).sum(axis=0))


def test_scale_network_matches_pytorch_autograd():
    net = scaled_net()
    x, y = data()
    trace = net.forward(x, record=True)
    grads = net.backward(dl.losses.mse.grad(trace.output, y))
    weights = [torch.tensor(a, requires_grad=True) for a in (net[0].weight.data, net[0].bias.data,
                                                              net[1].gain.data, net[3].weight.data, net[3].bias.data)]
    w0, b0, gain, w1, b1 = weights
    xt = torch.tensor(x, requires_grad=True)
    out = torch.tanh((xt @ w0.T + b0) * gain) @ w1.T + b1
    torch.nn.functional.mse_loss(out, torch.tensor(y)).backward()
    np.testing.assert_allclose(trace.output, out.detach().numpy(), rtol=1e-12)
    for parameter, tensor in zip(net.parameters(), weights):
        np.testing.assert_allclose(parameter.grad, tensor.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grads.input, xt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_input_jacobian_of_any_network_matches_central_differences():
    net = scaled_net()
    x, _ = data(5)
    worst_absolute, _ = dl.check_input_jacobian(net, x)
    assert worst_absolute < 1e-8


def test_nested_sequentials_compose_as_one_layer():
    inner = dl.Sequential(dl.Linear(3, 4, rng=0), "relu", dl.Linear(4, 4, rng=1), "relu")
    outer = dl.Sequential(inner, dl.Linear(4, 1, rng=2))
    flat = dl.Sequential(*[copy.deepcopy(layer) for layer in inner], copy.deepcopy(outer[1]))
    x, _ = data(9)
    np.testing.assert_allclose(outer(x), flat(x), rtol=1e-14)
    assert [name for name, _ in outer.named_parameters()] == [
        "0.0.weight", "0.0.bias", "0.2.weight", "0.2.bias", "1.weight", "1.bias"]
    assert dl.gradcheck(outer, x, np.zeros((9, 1)), loss="mse").passed


def test_one_activation_layer_in_two_places_is_differentiated_at_each():
    relu = dl.ActivationLayer("relu")
    shared = dl.Sequential(dl.Linear(3, 5, rng=0), relu, dl.Linear(5, 5, rng=1), relu, dl.Linear(5, 1, rng=2))
    x, _ = data(11)
    assert dl.gradcheck(shared, x, np.zeros((11, 1)), loss="mse").passed


# --------------------------------------------------------------------------- the network protocol

def test_named_parameters_state_dict_and_modes():
    net = dl.MLP(2, [3], 1, rng=0)
    assert [name for name, _ in net.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    state = net.state_dict()
    other = dl.MLP(2, [3], 1, rng=1)
    other.load_state_dict(state)
    x = np.ones((4, 2))
    np.testing.assert_array_equal(other(x), net(x))
    state["0.weight"][...] = 0  # a copy: the network is untouched
    assert net[0].weight.data.any()
    assert net.training and all(layer.training for layer in net)
    net.eval()
    assert not net.training and not any(layer.training for layer in net)
    net.train()
    assert net.training and all(layer.training for layer in net)
    assert len(net) == 3 and list(net) == net.layers


@pytest.mark.parametrize("state, pattern", [
    ({"0.weight": np.ones((3, 2))}, r"missing keys \['0.bias'"),
    ({"0.weight": np.ones((3, 2)), "0.bias": np.ones(3), "2.weight": np.ones((1, 3)), "2.bias": np.ones(1),
      "9.gain": np.ones(1)}, r"unexpected keys \['9.gain'\]"),
    ({"0.weight": np.ones((2, 3)), "0.bias": np.ones(3), "2.weight": np.ones((1, 3)), "2.bias": np.ones(1)},
     r"state\['0.weight'\] has shape \(2, 3\).*\(3, 2\)"),
    ({"0.weight": np.full((3, 2), np.nan), "0.bias": np.ones(3), "2.weight": np.ones((1, 3)), "2.bias": np.ones(1)},
     r"NaN"),
])
def test_load_state_dict_refuses_what_does_not_fit_and_loads_nothing(state, pattern):
    net = dl.MLP(2, [3], 1, rng=0)
    before = net.state_dict()
    with pytest.raises(ValueError, match=pattern):
        net.load_state_dict(state)
    for name, array in net.state_dict().items():
        np.testing.assert_array_equal(array, before[name])


def test_a_layer_without_forward_says_so():
    class Empty(dl.Layer):
        pass

    with pytest.raises(NotImplementedError, match="Empty must define forward"):
        dl.Sequential(dl.Linear(2, 2), Empty())(np.ones((1, 2)))


def test_a_layer_with_parameters_given_twice_is_refused():
    scale = Scale(2)
    with pytest.raises(ValueError, match=r"layers\[2\] is the Scale layer already given as layers\[0\]"):
        dl.Sequential(scale, "relu", scale)


def test_a_non_layer_is_refused_with_its_type():
    with pytest.raises(TypeError, match=r"layers\[1\] must be a depthlab Layer.*got int 3"):
        dl.Sequential(dl.Linear(2, 2), 3)


# --------------------------------------------------------------------------- one entry per activation

def test_an_activation_is_one_table_entry(monkeypatch):
    """A new activation added to the table alone works in a network, in calculate_gain, in
    gradcheck and in both directions of the PyTorch interop."""
    def softsign():
        return dl.activations.Activation(
            "softsign", lambda f: f / (1 + np.abs(f)), lambda f, h: 1 / (1 + np.abs(f)) ** 2, 1.0,
            torch=("Softsign", {}))

    dl.init.calculate_gain("relu")  # the gain table exists before the entry is added
    monkeypatch.setitem(dl.activations.ACTIVATIONS, "softsign", softsign)
    net = dl.MLP(3, [5], 2, activation="softsign", rng=0)
    x, y = data(8)
    assert dl.gradcheck(net, x, y, loss="mse").passed
    assert dl.init.calculate_gain("softsign") == 1.0
    module = dl.to_torch(net)
    assert isinstance(module[1], torch.nn.Softsign)
    np.testing.assert_allclose(module(torch.tensor(x)).detach().numpy(), net(x), rtol=1e-13)
    back = dl.from_torch(module)
    assert back.layers[1].activation.name == "softsign"
