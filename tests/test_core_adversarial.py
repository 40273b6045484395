"""Adversarial inputs to the network core (issue 14's classes): user layers that break the
layer protocol, wrong calls on Sequential, Parameter, TrainStep and the gradient checks.
Each case is refused with a message naming what was wrong, and leaves the objects usable."""
import numpy as np
import pytest

import depthlab as dl


class Scale(dl.Layer):
    def __init__(self, n):
        super().__init__()
        self.gain = dl.Parameter(np.linspace(0.5, 1.5, n))

    def forward(self, x, cache):
        cache["x"] = x
        return x * self.gain.data

    def backward(self, grad_output, cache):
        self.gain.accumulate((grad_output * cache["x"]).sum(axis=0))
        return grad_output * self.gain.data


class ReturnsList(Scale):
    def forward(self, x, cache):
        return super().forward(x, cache).tolist()


class DropsColumns(Scale):
    def forward(self, x, cache):
        return super().forward(x, cache)[:, :1]


class ReturnsFloat32(Scale):
    def forward(self, x, cache):
        return super().forward(x, cache).astype(np.float32)


class ReturnsIntegers(Scale):
    def forward(self, x, cache):
        super().forward(x, cache)
        return (x > 0).astype(int)


class BackwardReturnsNone(Scale):
    def backward(self, grad_output, cache):
        super().backward(grad_output, cache)


class BackwardWrongShape(Scale):
    def backward(self, grad_output, cache):
        return super().backward(grad_output, cache)[:, :1]


def net_with(layer):
    return dl.Sequential(dl.Linear(3, 3, rng=0), layer, "tanh", dl.Linear(3, 2, rng=1))


X = np.random.default_rng(0).standard_normal((5, 3))
Y = np.random.default_rng(1).standard_normal((5, 2))


def run(net, how):
    """One of the paths every layer runs on."""
    if how == "record":
        return net.forward(X, record=True)
    if how == "backward":
        net.forward(X, record=True)
        return net.backward(np.ones((5, 2)))
    if how == "jacobian":
        return net.input_jacobian(X)
    if how == "gradcheck":
        return dl.gradcheck(net, X, Y)
    return dl.TrainStep(net, "mse", dl.optim.SGD(net.parameters(), lr=0.1))(X, Y)


BROKEN = [
    (ReturnsList, TypeError, r"ReturnsList\.forward returned list"),
    (ReturnsFloat32, TypeError, r"ReturnsFloat32\.forward returned its output of dtype float32"),
    (ReturnsIntegers, TypeError, r"ReturnsIntegers\.forward returned its output of dtype int64"),
    (DropsColumns, ValueError, r"Linear\(3, 2\) got input of shape \(\d+, 1\): the last axis must be 3"),
    (BackwardReturnsNone, TypeError, r"BackwardReturnsNone\.backward returned NoneType"),
    (BackwardWrongShape, ValueError, r"BackwardWrongShape\.backward returned dL/dx of shape \(\d+, 1\)"),
]


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("how", ["record", "backward", "jacobian", "gradcheck", "step"])
@pytest.mark.parametrize("layer, error, pattern", BROKEN)
def test_a_layer_breaking_the_protocol_is_named_on_every_path(layer, error, pattern, how, fast):
    if how == "record" and "backward" in pattern:
        how = "backward"  # a recording forward pass does not run backward
    net = net_with(layer(3))
    before = net.state_dict()
    dl.set_fast_paths(fast)
    try:
        with pytest.raises(error, match=pattern):
            run(net, how)
    finally:
        dl.set_fast_paths(True)
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())


def test_a_prediction_through_a_layer_returning_a_list_names_the_layer():
    net = dl.Sequential(dl.Linear(3, 3, rng=0), ReturnsList(3))
    with pytest.raises(TypeError, match=r"ReturnsList\.forward returned list"):
        net(X)


def test_a_refused_backward_leaves_the_accumulated_gradients_as_they_were():
    net = net_with(BackwardWrongShape(3))
    reference = net_with(Scale(3))
    reference.forward(X, record=True)
    reference.backward(np.ones((5, 2)))
    for p, q in zip(net.parameters(), reference.parameters()):
        p.grad = q.grad.copy()
    net.forward(X, record=True)
    with pytest.raises(ValueError, match="BackwardWrongShape"):
        net.backward(np.ones((5, 2)))
    for p, q in zip(net.parameters(), reference.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)


def test_a_linear_layer_given_the_wrong_width_says_which_width():
    with pytest.raises(ValueError, match=r"Linear\(2, 4\) got input of shape \(1, 3\).*Did you mean Linear\(3, 4\)"):
        dl.Linear(2, 4, rng=0)(np.ones((1, 3)))


def test_backward_trace_must_be_a_trace_of_this_network():
    net, other = dl.MLP(2, [3], 1, rng=0), dl.MLP(2, [3], 1, rng=1)
    x = np.ones((4, 2))
    with pytest.raises(TypeError, match=r"trace=.*got ndarray"):
        net.backward(np.ones((4, 1)), trace=net.forward(x))
    foreign = other.forward(x, record=True, detached=True)
    with pytest.raises(ValueError, match="another network"):
        net.backward(np.ones((4, 1)), trace=foreign)
    own = net.forward(x, record=True, detached=True)
    grads = net.backward(np.ones((4, 1)), trace=own)
    h = np.maximum(x @ net[0].weight.data.T + net[0].bias.data, 0)
    np.testing.assert_allclose(grads.weights[1], np.ones((4, 1)).T @ h)


@pytest.mark.parametrize("gradient, error, pattern", [
    (np.ones(4), ValueError, r"shape \(4,\); it must have the parameter's shape \(3,\)"),
    (np.ones((5, 3)), ValueError, r"Sum it over the batch axis first"),
    (1.0, ValueError, r"shape \(\)"),
    (np.array(["a", "b", "c"]), TypeError, "real numbers"),
])
def test_parameter_accumulate_refuses_what_is_not_its_gradient(gradient, error, pattern):
    p = dl.Parameter(np.ones(3))
    p.accumulate(np.full(3, 2.0))
    with pytest.raises(error, match=pattern):
        p.accumulate(gradient)
    np.testing.assert_array_equal(p.grad, np.full(3, 2.0))


def test_parameter_accumulate_converts_to_its_dtype():
    p = dl.Parameter(np.ones(3, np.float32))
    p.accumulate(np.array([1, 2, 3]))
    p.accumulate([0.5, 0.5, 0.5])
    assert p.grad.dtype == np.float32
    np.testing.assert_array_equal(p.grad, [1.5, 2.5, 3.5])


def test_parameter_data_replaced_by_a_list_is_an_array_and_trains():
    net = dl.MLP(2, [3], 1, rng=0)
    step = dl.TrainStep(net, "mse", dl.optim.SGD(net.parameters(), lr=0.1))
    net[0].weight.data = [[1, 0], [0, 1], [1, 1]]
    assert net[0].weight.data.dtype == np.float64
    step(np.ones((4, 2)), np.zeros((4, 1)))
    assert not np.array_equal(net[0].weight.data, [[1, 0], [0, 1], [1, 1]])
