"""Adversarial inputs to the network core (issue 14's classes): user layers that break the
layer protocol, wrong calls on Sequential, Parameter, TrainStep and the gradient checks.
Each case is refused with a message naming what was wrong, and leaves the objects usable."""
import numpy as np
import pytest
import torch

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
    with dl.set_fast_paths(fast), pytest.raises(error, match=pattern):
        run(net, how)
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


class Holder(dl.Layer):
    """Parameters and a sublayer kept in containers (PyTorch's ParameterList / ModuleList)."""

    def __init__(self):
        super().__init__()
        self.gains = [dl.Parameter(np.full(3, 2.0)), dl.Parameter(np.full(3, 0.5))]
        self.inner = {"scale": Scale(3)}

    def forward(self, x, cache):
        cache["x"] = x
        return self.inner["scale"].forward(x * self.gains[0].data * self.gains[1].data, cache.setdefault("inner", {}))

    def backward(self, grad_output, cache):
        grad = self.inner["scale"].backward(grad_output, cache["inner"])
        a, b = self.gains[0].data, self.gains[1].data
        self.gains[0].accumulate((grad * cache["x"] * b).sum(axis=0))
        self.gains[1].accumulate((grad * cache["x"] * a).sum(axis=0))
        return grad * a * b


def test_parameters_and_layers_in_lists_and_dicts_are_found_trained_and_saved():
    holder = Holder()
    net = dl.Sequential(dl.Linear(3, 3, rng=0), holder, "tanh", dl.Linear(3, 2, rng=1))
    names = [name for name, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.gains.0", "1.gains.1", "1.inner.scale.gain", "3.weight", "3.bias"]
    assert dl.gradcheck(net, X, Y).passed
    net.eval()
    assert not holder.inner["scale"].training
    before = holder.gains[0].data.copy()
    dl.TrainStep(net, "mse", dl.optim.SGD(net.parameters(), lr=0.1))(X, Y)
    assert not np.array_equal(holder.gains[0].data, before)
    state = net.state_dict()
    fresh = dl.Sequential(dl.Linear(3, 3, rng=5), Holder(), "tanh", dl.Linear(3, 2, rng=6))
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh(X), net(X))


def test_a_layer_that_forgot_super_init_still_has_a_mode():
    class NoInit(dl.Layer):
        def __init__(self):
            self.gain = dl.Parameter(np.ones(3))

        def forward(self, x, cache):
            return x * self.gain.data

        def backward(self, grad_output, cache):
            self.gain.accumulate(np.zeros(3))
            return grad_output * self.gain.data

    net = dl.Sequential(dl.Linear(3, 3, rng=0), NoInit())
    with net.mode(False):
        assert not net[1].training
    assert net[1].training


@pytest.mark.parametrize("build, pattern", [
    (lambda a: dl.Sequential(a, dl.Sequential(a)), r"'1\.0\.weight' is the one already at '0\.weight'"),
    (lambda a: dl.Sequential(a, "tanh", dl.Residual(a, "tanh")), r"'2\.branch\.0\.weight' is the one already"),
])
def test_a_layer_with_parameters_nested_twice_is_refused(build, pattern):
    with pytest.raises(ValueError, match=pattern):
        build(dl.Linear(2, 2, rng=0))


@pytest.mark.parametrize("build, pattern", [
    (lambda: dl.Sequential(dl.Linear(2, 3), dl.Sequential(dl.Linear(4, 1))),
     r"layers\[1\] \(Sequential\) cannot take the 3 features.*Linear\(4, 1\) expects 4"),
    (lambda: dl.Sequential(dl.Sequential(dl.Linear(2, 3)), dl.Linear(4, 1)),
     r"layers\[1\] \(Linear\(4, 1\)\) expects 4 input features.*give 3"),
    (lambda: dl.Sequential(dl.Linear(2, 3), dl.Sequential(dl.Linear(3, 5)), dl.Linear(4, 1)),
     r"layers\[2\] \(Linear\(4, 1\)\) expects 4 input features.*give 5"),
])
def test_nested_networks_that_do_not_chain_are_refused_when_built(build, pattern):
    with pytest.raises(ValueError, match=pattern):
        build()


def test_a_network_without_linear_layers_has_no_widths_and_a_repr():
    net = dl.Sequential(Scale(3), "tanh")
    assert net.widths == []
    assert "TrainStep" in repr(dl.TrainStep(net, "mse", dl.optim.SGD(net.parameters(), lr=0.1)))


def test_load_state_dict_strict_must_be_a_bool():
    net = dl.MLP(2, [3], 1, rng=0)
    with pytest.raises(TypeError, match=r"strict=.*True or False, got str 'no'"):
        net.load_state_dict({}, strict="no")


def test_a_user_loss_with_a_non_finite_gradient_leaves_the_weights_unchanged():
    class NanGrad:
        def value(self, output, target):
            return 1.0

        def grad(self, output, target):
            return np.full_like(output, np.nan)

    net = dl.MLP(3, [4], 2, rng=0)
    before = net.state_dict()
    with pytest.raises(ValueError, match="NaN or Inf.*the step was not taken"):
        dl.TrainStep(net, NanGrad(), dl.optim.SGD(net.parameters(), lr=0.1))(X, Y)
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())


def test_a_user_loss_whose_value_is_not_one_number_is_named():
    class ArrayValue:
        def value(self, output, target):
            return (output - target) ** 2

        def grad(self, output, target):
            return 2 * (output - target)

    net = dl.MLP(3, [4], 2, rng=0)
    with pytest.raises(TypeError, match="must be one number"):
        dl.TrainStep(net, ArrayValue(), dl.optim.SGD(net.parameters(), lr=0.1))(X, Y, return_loss=True)


def test_an_optimizer_of_another_network_is_refused():
    net, other = dl.MLP(3, [4], 2, rng=0), dl.MLP(3, [4], 2, rng=1)
    with pytest.raises(ValueError, match="holds none of this network's 4 parameters"):
        dl.TrainStep(net, "mse", dl.optim.SGD(other.parameters(), lr=0.1))


def test_numerical_gradient_in_float32_uses_the_step_x_took():
    x = np.array([1.0, 3.0, -7.0], np.float32)
    grad = dl.numerical_gradient(lambda v: float((v.astype(np.float64) ** 2).sum()), x, eps=1e-6)
    np.testing.assert_allclose(grad, 2 * x.astype(np.float64), rtol=1e-6)


@pytest.mark.parametrize("f, x, error, pattern", [
    (lambda v: v, np.ones(2), TypeError, r"f\(x\) must return one number.*shape \(2,\)"),
    (3, np.ones(2), TypeError, "f must be a function"),
    (lambda v: float(v.sum()), np.full(2, 1e20), ValueError, "below the resolution"),
])
def test_numerical_gradient_refuses_what_it_cannot_difference(f, x, error, pattern):
    with pytest.raises(error, match=pattern):
        dl.numerical_gradient(f, x, eps=1e-6)


def test_gradcheck_refuses_a_layer_and_dropout_in_train_mode():
    with pytest.raises(TypeError, match="needs a depthlab network.*got Linear"):
        dl.gradcheck(dl.Linear(3, 2), X, Y)
    with pytest.raises(TypeError, match="needs a depthlab network.*got Linear"):
        dl.check_input_jacobian(dl.Linear(3, 2), X)
    net = dl.Sequential(dl.Linear(3, 4, rng=0), "tanh", dl.Dropout(0.5, rng=0), dl.Linear(4, 2, rng=1))
    with pytest.raises(ValueError, match="dropout.*net.eval"):
        dl.gradcheck(net, X, Y)
    assert dl.gradcheck(net.eval(), X, Y).passed


def test_gradcheck_keeps_the_users_gradients_and_counts_an_unused_parameter_as_zero():
    class Unused(Scale):
        def backward(self, grad_output, cache):
            return grad_output * self.gain.data  # gain does not change the output's gradient... nor gets one

        def forward(self, x, cache):
            return x * 1.0

    net = dl.Sequential(dl.Linear(3, 3, rng=0), Unused(3), "tanh", dl.Linear(3, 2, rng=1))
    net[1].gain.data[...] = 1.0
    net[0].weight.grad = np.full((3, 3), 7.0)
    result = dl.gradcheck(net, X, Y)
    assert result["1.gain"].max_abs_error == 0.0 and result.passed
    np.testing.assert_array_equal(net[0].weight.grad, np.full((3, 3), 7.0))
    assert net[1].gain.grad is None


def test_gradcheck_perturbs_parameters_whose_data_is_not_contiguous():
    net = dl.Sequential(dl.Linear(3, 3, rng=0), "tanh", dl.Linear(3, 2, rng=1))
    net[0].weight.data = np.asfortranarray(net[0].weight.data)
    result = dl.gradcheck(net, X, Y)
    assert result.passed and result["weights[0]"].scale > 0


def test_gradcheck_leaves_the_weights_as_they_were_when_the_loss_raises():
    class Raises:
        def value(self, output, target):
            raise RuntimeError("boom")

        def grad(self, output, target):
            return output - target

    net = dl.MLP(3, [4], 2, activation="tanh", rng=0)
    before = net.state_dict()
    with pytest.raises(RuntimeError, match="boom"):
        dl.gradcheck(net, X, Y, loss=Raises())
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())


def _trained(fast: bool, make, optimizer: str):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((40, 2))
    with dl.set_fast_paths(fast):
        net = make()
        dl.fit(net, x, y, epochs=2, batch_size=16, optimizer=optimizer, verbose=0, rng=0)
        trace = net.forward(x, record=True)
        grads = net.backward(np.ones_like(trace.output))
    return [p.data for p in net.parameters()] + trace.layer_outputs + grads.parameters + [grads.input]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("make", [
    lambda: dl.MLP(3, [5, 5], 2, activation="tanh", rng=1),
    lambda: dl.MLP(3, [5], 2, activation="relu", rng=1, dtype="float32"),
    lambda: dl.Sequential(dl.Sequential(dl.Linear(3, 4, rng=0), "gelu"), Scale(4), dl.Linear(4, 2, rng=1)),
], ids=["mlp", "mlp-float32", "nested-with-user-layer"])
def test_the_fast_paths_give_the_same_numbers_bit_for_bit(make, optimizer):
    fast, plain = _trained(True, make, optimizer), _trained(False, make, optimizer)
    for a, b in zip(fast, plain):
        np.testing.assert_array_equal(a, b)


def test_to_torch_and_from_torch_keep_modes_and_refuse_non_layers():
    net = dl.Sequential(dl.Linear(3, 4, rng=0), "relu", dl.Dropout(0.5, rng=0), dl.Linear(4, 2, rng=1)).eval()
    module = dl.to_torch(net)
    assert not module.training and not any(m.training for m in module.modules())
    back = dl.from_torch(module)
    assert not back.training and not back[2].training
    np.testing.assert_array_equal(back(X), net(X))
    with pytest.raises(TypeError, match="to_torch needs a depthlab network or layer.*got NoneType"):
        dl.to_torch(None)


def test_from_torch_reads_bfloat16_and_matches_torch():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LeakyReLU(0.3), torch.nn.Linear(4, 2)).bfloat16()
    net = dl.from_torch(module)
    reference = module.double()(torch.tensor(X)).detach().numpy()
    np.testing.assert_allclose(net(X), reference, rtol=1e-12, atol=1e-12)


def test_a_linear_layer_called_alone_converts_lists_and_names_a_wrong_width():
    layer = dl.Linear(2, 3, rng=0)
    np.testing.assert_array_equal(layer([[1, 2]]), np.array([[1.0, 2.0]]) @ layer.weight.data.T + layer.bias.data)
    with pytest.raises(ValueError, match=r"got input of shape \(2,\): the last axis must be 3.*Linear\(2, 3\)"):
        dl.Linear(3, 3)(np.ones(2))


def test_save_with_its_arguments_swapped_says_so(tmp_path):
    net = dl.MLP(2, [3], 1, rng=0)
    with pytest.raises(TypeError, match=r"other way round: dl\.save\(net, path\)"):
        dl.save(str(tmp_path / "net.npz"), net)
    assert not list(tmp_path.iterdir())


def test_an_input_jacobian_too_large_for_memory_is_refused_before_allocating():
    net = dl.MLP(2, [2], 100_000, rng=0)
    with pytest.raises(ValueError, match=r"input_jacobian of 100000 samples.*would need.*pass fewer samples"):
        net.input_jacobian(np.zeros((100_000, 2)))


@pytest.mark.parametrize("count, error", [("abc", TypeError), (None, TypeError), ([1, 2], TypeError),
                                          (-5, ValueError), (2.5, ValueError), (np.nan, ValueError)])
def test_load_state_dict_refuses_a_counter_that_is_not_a_count_and_loads_nothing(count, error):
    net = dl.Sequential(dl.Linear(2, 3, rng=0), dl.BatchNorm(3), dl.Linear(3, 1, rng=1))
    state = net.state_dict()
    changed = {name: value + 1 if name.endswith(("weight", "bias")) else value for name, value in state.items()}
    with pytest.raises(error, match=r"num_batches_tracked'\] must be"):
        net.load_state_dict({**changed, "1.num_batches_tracked": count})
    assert all(np.array_equal(state[k], v) for k, v in net.state_dict().items())
    net.load_state_dict({**changed, "1.num_batches_tracked": np.int64(7)})
    assert net[1].num_batches_tracked == 7


def test_training_monitor_before_fit_has_empty_arrays_and_refuses_a_non_bool_warn():
    monitor = dl.TrainingMonitor()
    assert {name: a.shape for name, a in monitor.arrays().items()} == {
        "grad_norm": (0, 0), "update_ratio": (0, 0), "dead_fraction": (0, 0)}
    with pytest.raises(TypeError, match="warn must be True or False, got str 'no'"):
        dl.TrainingMonitor(warn="no")


def test_a_refused_overflowing_pass_leaves_batch_norm_statistics_and_names_the_layer():
    net = dl.Sequential(dl.Linear(2, 3, rng=0), dl.BatchNorm(3), dl.Linear(3, 3, rng=1), dl.Linear(3, 1, rng=2))
    net[2].weight.data[...] = 1e200
    net[3].weight.data[...] = 1e200
    with pytest.raises(dl.NonFiniteError, match="overflowed at layer 2"):
        net.forward(X[:, :2], record=True)
    assert net[1].num_batches_tracked == 0
    np.testing.assert_array_equal(net[1].running_mean, np.zeros(3))


def test_an_overflow_of_mixed_signs_is_a_non_finite_error_under_strict_numpy_errors():
    net = dl.Sequential(dl.Linear(1, 2, rng=0))
    net[0].weight.data[...] = [[1e308], [-1e308]]
    with pytest.raises(dl.NonFiniteError, match="overflowed at layer 0"):
        net(np.full((1, 1), 10.0))  # the conftest makes NumPy raise on invalid operations


def test_parameter_data_set_to_float16_or_a_masked_array_becomes_a_plain_float_array():
    p = dl.Parameter(np.ones(2))
    p.data = np.array([1.5, 2.5], np.float16)
    assert p.data.dtype == np.float64 and type(p.data) is np.ndarray
    np.testing.assert_array_equal(p.data, [1.5, 2.5])
    p.data = np.ma.masked_array([3.0, 4.0], mask=[False, False])
    assert type(p.data) is np.ndarray
    with pytest.raises(TypeError, match="masked"):
        p.data = np.ma.masked_array([3.0, 4.0], mask=[True, False])
    np.testing.assert_array_equal(p.data, [3.0, 4.0])


class Shifted(dl.Linear):
    """A subclass that changes the math but inherits Linear's fast variant."""

    def forward(self, h, cache):
        return super().forward(h + 1.0, cache)


@pytest.mark.parametrize("fast", [True, False])
def test_a_subclass_overriding_forward_runs_its_own_forward_on_every_path(fast):
    x = np.zeros((2, 3))
    with dl.set_fast_paths(fast):
        net = dl.Sequential(Shifted(3, 2, rng=0))
        expected = np.ones((2, 3)) @ net[0].weight.data.T + net[0].bias.data
        np.testing.assert_allclose(net(x), expected, rtol=1e-15)
        np.testing.assert_allclose(net.forward(x, record=True).output, expected, rtol=1e-15)
        np.testing.assert_allclose(net.copy()(x), expected, rtol=1e-15)
        net.backward(np.ones((2, 2)))
        np.testing.assert_allclose(net[0].weight.grad, np.full((2, 3), 2.0))
    with pytest.raises(TypeError, match="overrides Linear.forward"):
        dl.to_torch(net)


def test_slicing_a_network_gives_a_network_of_the_same_layers():
    net = dl.MLP(3, [4, 5], 2, activation="tanh", rng=0)
    head, tail = net[:2], net[2:]
    assert isinstance(head, dl.Sequential) and head[0] is net[0]
    assert [p.name for p in net.parameters()] == ["weights[0]", "biases[0]", "weights[1]", "biases[1]",
                                                  "weights[2]", "biases[2]"]
    np.testing.assert_allclose(tail(head(X)), net(X), rtol=1e-15)
    with pytest.raises(IndexError, match="selects none"):
        net[5:1]
    with pytest.raises(TypeError, match=r"indexed by an int or a slice.*got str '0'"):
        net["0"]
    assert net[-1] is net.layers[-1] and net[np.int64(0)] is net.layers[0]


def test_train_accepts_a_numpy_bool_and_refuses_other_values():
    net = dl.MLP(2, [3], 1, rng=0)
    assert net.train(np.bool_(False)).training is False and net[0].training is False
    with pytest.raises(TypeError, match="mode must be True or False, got int 0"):
        net.train(0)
    assert net.training is False


def test_a_layer_listing_its_own_sublayers_again_is_not_a_second_place():
    class TwoSteps(dl.Layer):
        def __init__(self):
            super().__init__()
            self.first, self.second = dl.Linear(3, 3, rng=0), dl.Linear(3, 3, rng=1)
            self.steps = [self.first, self.second, self.first]  # aliases: first runs twice (tied)

        def forward(self, x, cache):
            caches = cache["steps"] = []
            for step in self.steps:
                caches.append({})
                x = step.forward(x, caches[-1])
            return x

        def backward(self, grad, cache):
            for step, step_cache in zip(reversed(self.steps), reversed(cache["steps"])):
                grad = step.backward(grad, step_cache)
            return grad

    net = dl.Sequential(TwoSteps(), "tanh", dl.Linear(3, 2, rng=2))
    assert [name for name, _ in net.named_parameters()] == [
        "0.first.weight", "0.first.bias", "0.second.weight", "0.second.bias", "2.weight", "2.bias"]
    assert dl.gradcheck(net, X, Y).passed


def test_a_user_loss_whose_value_and_grad_is_not_a_pair_is_named():
    class Triple:
        def value(self, output, target):
            return float(((output - target) ** 2).sum())

        def grad(self, output, target):
            return 2 * (output - target)

        def value_and_grad(self, output, target):
            return self.value(output, target), self.grad(output, target), None

    net = dl.MLP(3, [4], 2, rng=0)
    step = dl.TrainStep(net, Triple(), dl.optim.SGD(net.parameters(), lr=0.1))
    with pytest.raises(TypeError, match=r"value_and_grad\(output, target\) must return a pair.*tuple of 3 items"):
        step(X, Y, return_loss=True)
    step(X, Y)  # without return_loss only grad is called


def test_changing_a_networks_layer_list_is_refused_with_a_recipe():
    net = dl.MLP(2, [3], 1, rng=0)
    for change in (lambda: net.layers.append(dl.Linear(1, 1)), lambda: net.layers.__setitem__(1, "tanh"),
                   lambda: net.layers.pop(), lambda: net.layers.extend([])):
        with pytest.raises(TypeError, match=r"fixed when it is built.*dl\.Sequential\(\[\*net\.layers, new_layer\]\)"):
            change()
    assert len(net) == 3
    longer = dl.Sequential([*net.layers, "tanh"])
    np.testing.assert_array_equal(longer(np.ones((2, 2))), np.tanh(net(np.ones((2, 2)))))


def test_a_buffer_name_without_its_attribute_is_named():
    class Counting(Scale):
        buffer_names = ("seen",)

    net = dl.Sequential(Counting(3))
    with pytest.raises(AttributeError, match=r"Counting\.buffer_names lists 'seen'.*set self\.seen in __init__"):
        net.state_dict()


def test_a_weight_replaced_by_another_shape_is_named_when_the_network_runs():
    net = dl.MLP(2, [3], 1, rng=0)
    net[0].weight.data = np.ones((4, 2))
    with pytest.raises(ValueError, match=r"layers\[0\] \(Linear\) has a weight of shape \(4, 2\) but a bias of shape"):
        net(np.ones((5, 2)))


def test_gradcheck_leaves_the_users_recorded_pass_for_backward():
    net = dl.MLP(3, [4], 2, activation="tanh", rng=0)
    trace = net.forward(X, record=True)
    assert dl.gradcheck(net, X[:2], Y[:2]).passed
    grads = net.backward(np.ones((5, 2)))  # the pass recorded before gradcheck, 5 samples
    h = np.tanh(X @ net[0].weight.data.T + net[0].bias.data)
    np.testing.assert_allclose(grads.weights[1], np.ones((5, 2)).T @ h, rtol=1e-12)
    assert trace.output.shape == (5, 2)


def test_the_summary_of_a_network_without_linear_layers_says_what_it_knows():
    net = dl.Sequential(Scale(3), "tanh")
    assert net.depth == 0
    text = str(net.summary())
    assert "Input (N, ?) → output (N, ?), 0 hidden layers." in text


def test_a_trace_built_by_hand_is_data_and_is_refused_by_backward():
    trace = dl.Trace(np.ones((2, 1)), [np.ones((2, 1))], np.ones((2, 3)))
    assert trace.layer_outputs[0].shape == (2, 1)
    with pytest.raises(ValueError, match="use layer_outputs instead"):
        trace.preactivations
    with pytest.raises(ValueError, match="built by hand, which holds no recorded pass"):
        dl.MLP(3, [2], 1, rng=0).backward(np.ones((2, 1)), trace=trace)


def test_a_state_of_parameters_loads_as_their_values():
    source, target = dl.MLP(3, [4], 2, rng=0), dl.MLP(3, [4], 2, rng=1)
    target.load_state_dict(dict(source.named_parameters()))
    np.testing.assert_array_equal(target(X), source(X))
    assert target[0].weight.data is not source[0].weight.data
    np.testing.assert_array_equal(np.asarray(source[0].bias), source[0].bias.data)


@pytest.mark.parametrize("dtype", ["float16", "int", "abc"])
def test_linear_from_arrays_refuses_a_dtype_it_does_not_compute_in(dtype):
    with pytest.raises(ValueError, match=r"dtype must be 'float64' or 'float32'"):
        dl.Linear.from_arrays(np.ones((2, 2)), dtype=dtype)
    with pytest.raises(ValueError, match=r"dtype must be 'float64' or 'float32'"):
        dl.Sequential.from_arrays([np.ones((2, 2))], dtype=dtype)


def test_check_input_jacobian_of_a_float32_network_measures_the_jacobian_not_float32_rounding():
    net = dl.MLP(3, [8], 2, activation="tanh", rng=0, dtype="float32")
    absolute, relative = dl.check_input_jacobian(net, X)
    assert relative < 1e-5  # float32's own rounding of the analytic Jacobian; differences in float32 gave ~4e-2
    assert net.dtype == np.float32 and absolute > 0


@pytest.mark.parametrize("layer, pattern", [
    (torch.nn.Linear(2, 3), r"got Linear .*dl\.from_torch\(module\)"),
    (dl.Linear, r"Pass an instance: dl\.Linear\(3, 4\), not dl\.Linear"),
    (None, r"layers\[1\] must be a depthlab Layer.*got NoneType None\.$"),
])
def test_sequential_names_what_is_not_a_layer_with_a_hint(layer, pattern):
    with pytest.raises(TypeError, match=pattern):
        dl.Sequential(dl.Linear(3, 2, rng=0), layer)


def test_set_weights_names_an_unnamed_parameter_by_its_position():
    net = dl.Sequential(dl.Linear(3, 3, rng=0), Scale(3))
    with pytest.raises(ValueError, match=r"3 arrays \(one per parameter: weights\[0\], biases\[0\], parameter 2\), got 1"):
        net.set_weights([np.ones((3, 3))])
    with pytest.raises(ValueError, match=r"set_weights: parameter 2 has shape \(3,\), got an array of shape \(4,\)"):
        net.set_weights([np.ones((3, 3)), np.ones(3), np.ones(4)])


def test_a_nested_network_backpropagated_with_a_cache_its_forward_never_filled_says_so():
    inner = dl.Sequential(dl.Linear(3, 3, rng=0), "tanh")
    with pytest.raises(RuntimeError, match=r"needs the cache that forward\(x, cache\) filled"):
        inner.backward(np.ones((5, 3)), {})
    cache = {}
    out = inner.forward(X, cache)
    grad = inner.backward(np.ones_like(out), cache)
    np.testing.assert_allclose(grad, ((1 - out ** 2)) @ inner[0].weight.data, rtol=1e-12)


@pytest.mark.parametrize("layer", [dl.Linear(3, 3, rng=0), dl.ActivationLayer("tanh"), dl.Dropout(0.5, rng=0)])
def test_a_layer_backpropagated_with_an_empty_cache_says_so(layer):
    with pytest.raises(RuntimeError, match=r"backward\(grad_output, cache\) needs the cache that its forward"):
        layer.backward(np.ones((5, 3)), {})


def test_an_overflowing_output_is_an_error_without_a_numpy_warning_first():
    import warnings

    net = dl.MLP(2, [4], 1, rng=0)
    net.layers[0].weight.data[...] = 1e300
    net.layers[2].weight.data[:] = [[1e300, -1e300, 1e300, -1e300]]     # inf − inf in the output's sum
    with warnings.catch_warnings(), np.errstate(all="warn"):
        warnings.simplefilter("error")
        with pytest.raises(dl.NonFiniteError, match="layer 1"):
            net(np.ones((3, 2)))


def test_set_fast_paths_takes_a_numpy_bool():
    with dl.set_fast_paths(np.False_):
        assert not dl._fast.enabled()
    assert dl._fast.enabled()


def test_an_integer_beyond_float64_is_refused_as_not_finite():
    with pytest.raises(ValueError, match="mean must be finite, got an integer of 401 digits"):
        dl.init.normal((2, 2), mean=10**400, rng=0)          # was OverflowError from float()
