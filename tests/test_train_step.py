"""``TrainStep``: the fused training step must equal the explicit loop bit for bit.

The reference is the loop depthlab teaches, written out here with public calls only::

    optimizer.zero_grad()
    trace = net.forward(x, record=True)
    net.backward(loss.grad(trace.output, y), input_grad=False, intermediates=False)
    optimizer.step()

Every comparison is exact (``np.array_equal``): the fused step runs the same operations in
the same order, only into other arrays.
"""
import numpy as np
import pytest

import depthlab as dl
from depthlab._fast import buffers as _buffers
from depthlab.nn.model import NonFiniteError
from depthlab.training.step import TrainStep

D_IN, HIDDEN, D_OUT = 5, [7, 6], 4
BATCH_SIZES = [8, 8, 8, 5, 3, 8, 5]  # full batches, a shorter last one, a third size, back again


# ----------------------------------------------------------------------------- helpers

def explicit_step(net, loss, optimizer, x, y):
    """The explicit loop; returns (L of the batch before the update, output before the update)."""
    optimizer.zero_grad()
    trace = net.forward(x, record=True)
    value = loss.value(trace.output, y)
    output = trace.output.copy()
    net.backward(loss.grad(trace.output, y), input_grad=False, intermediates=False)
    optimizer.step()
    return value, output


def assert_same_state(net, twin):
    """Weights and gradients of two networks are bit-for-bit equal (and of the same dtype)."""
    for p, q in zip(net.parameters(), twin.parameters()):
        assert p.data.dtype == q.data.dtype
        assert np.array_equal(p.data, q.data), p.name
        assert (p.grad is None) == (q.grad is None), p.name
        if p.grad is not None:
            assert p.grad.dtype == q.grad.dtype
            assert np.array_equal(p.grad, q.grad), p.name


def make_net(activation="relu", dtype="float64", output_activation=None, rng=3):
    return dl.MLP(D_IN, HIDDEN, D_OUT, activation=activation, init="he_normal",
                  bias_init={"name": "normal", "std": 0.3}, output_activation=output_activation,
                  rng=rng, dtype=dtype)


def softsign() -> dl.activations.Activation:
    """A user activation that writes into a given buffer but differentiates from f: the fused
    step must give it an output array apart from f_k."""
    return dl.activations.Activation(
        "softsign", lambda f: f / (1 + np.abs(f)), lambda f, h: 1 / np.square(1 + np.abs(f)), 1.0,
        function_out=lambda f, out: np.divide(f, 1 + np.abs(f), out=out),
    )


# name -> network builder (dtype -> Sequential)
NETWORKS = {
    "relu": lambda dtype: make_net("relu", dtype),
    "tanh": lambda dtype: make_net("tanh", dtype),
    "sigmoid": lambda dtype: make_net("sigmoid", dtype),
    "gelu": lambda dtype: make_net("gelu", dtype),
    "leaky_relu": lambda dtype: make_net(dl.activations.get("leaky_relu", negative_slope=0.1), dtype),
    "identity": lambda dtype: make_net("identity", dtype),
    "relu+sigmoid_output": lambda dtype: make_net("relu", dtype, output_activation="sigmoid"),
}


def labels(rng, n):
    return rng.integers(0, D_OUT, n)


def one_hot(rng, n):
    return np.eye(D_OUT)[rng.integers(0, D_OUT, n)]


def values(rng, n):
    return rng.standard_normal((n, D_OUT))


def probabilities(rng, n):
    return rng.uniform(0.0, 1.0, (n, D_OUT))


# case -> (loss name, targets for n samples)
LOSSES = {
    "cross_entropy-labels": ("cross_entropy", labels),
    "cross_entropy-one_hot": ("cross_entropy", one_hot),
    "mse": ("mse", values),
    "sum_squares": ("sum_squares", values),
    "half_sum_squares": ("half_sum_squares", values),
    "bce_with_logits": ("binary_cross_entropy_with_logits", probabilities),
}

# name -> optimizer builder (parameters -> Optimizer)
OPTIMIZERS = {
    "sgd": lambda params: dl.optim.SGD(params, lr=1e-3),
    "sgd-momentum-wd": lambda params: dl.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-3),
    "adam": lambda params: dl.optim.Adam(params, lr=1e-2),
    "rmsprop-centered": lambda params: dl.optim.RMSprop(params, lr=1e-2, momentum=0.5, centered=True),
    "nadam": lambda params: dl.optim.NAdam(params, lr=1e-2, weight_decay=1e-2),
}


def batches(rng, target, dtype, sizes=BATCH_SIZES, features=D_IN):
    return [(rng.standard_normal((n, features)).astype(dtype), target(rng, n)) for n in sizes]


def test_the_tables_cover_the_registered_losses():
    assert {name for name, _ in LOSSES.values()} == set(dl.losses.names())


# ----------------------------------------------------------------------------- 1. bit for bit

@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("loss_case", list(LOSSES))
@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_the_explicit_loop_bit_for_bit(dtype, network, loss_case, optimizer):
    rng = np.random.default_rng(7)
    net = NETWORKS[network](dtype)
    twin = net.copy()
    loss_name, target = LOSSES[loss_case]
    loss = dl.losses.get(loss_name)
    step = dl.TrainStep(net, loss_name, OPTIMIZERS[optimizer](net.parameters()))
    reference = OPTIMIZERS[optimizer](twin.parameters())
    for i, (x, y) in enumerate(batches(rng, target, dtype)):
        return_loss = i % 2 == 0  # both the value-and-gradient and the gradient-only paths
        value = step(x, y, return_loss=return_loss)
        expected, output = explicit_step(twin, loss, reference, x, y)
        if return_loss:
            assert type(value) is float
            assert value == expected
        else:
            assert value is None
        assert np.array_equal(step.output, output)
        assert_same_state(net, twin)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_non_contiguous_inputs_and_integer_labels_of_another_width(dtype):
    """x as a strided view or Fortran-ordered, labels as int32: converted as the explicit loop does."""
    rng = np.random.default_rng(2)
    net = make_net("tanh", dtype)
    twin = net.copy()
    step = dl.TrainStep(net, "cross_entropy", dl.optim.Adam(net.parameters(), lr=1e-2))
    reference = dl.optim.Adam(twin.parameters(), lr=1e-2)
    wide = rng.standard_normal((9, 2 * D_IN)).astype(dtype)
    for x in (wide[:, ::2], np.asfortranarray(wide[:, :D_IN]), wide[::2, 1::2]):
        y = rng.integers(0, D_OUT, x.shape[0]).astype(np.int32)
        value = step(x, y, return_loss=True)
        expected, _ = explicit_step(twin, dl.losses.cross_entropy, reference, x, y)
        assert value == expected
        assert_same_state(net, twin)


def test_optimizer_over_some_parameters_accumulates_the_others_like_the_loop():
    """Parameters the optimizer does not hold are not cleared: their grads add up, as in the loop."""
    rng = np.random.default_rng(4)
    net = make_net("relu")
    twin = net.copy()
    step = dl.TrainStep(net, "mse", dl.optim.SGD(net.parameters()[2:], lr=0.1))
    reference = dl.optim.SGD(twin.parameters()[2:], lr=0.1)
    for x, y in batches(rng, values, "float64", sizes=[6, 6, 4]):
        step(x, y)
        explicit_step(twin, dl.losses.mse, reference, x, y)
        assert_same_state(net, twin)
    first = net.linears[0].weight
    assert first.grad is not None and not np.array_equal(first.data, first.grad)


# ----------------------------------------------------------------------------- 2. several activations per block

def stacked_network(dtype, first="tanh"):
    """Blocks with two or three activation layers; the in-place rule only concerns the first."""
    rng = np.random.default_rng(11)
    bias = {"name": "normal", "std": 0.3}

    def linear(a, b):
        return dl.Linear(a, b, init="xavier_normal", bias_init=bias, rng=rng, dtype=dtype)

    return dl.Sequential([
        linear(D_IN, 7), dl.ActivationLayer(first), dl.ActivationLayer("relu"),
        linear(7, 6), dl.ActivationLayer("relu"), dl.ActivationLayer("tanh"), dl.ActivationLayer("gelu"),
        linear(6, 6), dl.ActivationLayer("gelu"), dl.ActivationLayer("sigmoid"),
        linear(6, 6), dl.ActivationLayer(softsign()), dl.ActivationLayer("sigmoid"),
        linear(6, 6),
        linear(6, D_OUT), dl.ActivationLayer("sigmoid"), dl.ActivationLayer("tanh"),
    ])


@pytest.mark.parametrize("network", [
    "stacked-tanh-first", "stacked-softsign-first", "stacked-leaky_relu-first", "linear-model",
])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_several_activation_layers_per_block_match_the_explicit_loop(dtype, network):
    builders = {
        "stacked-tanh-first": lambda: stacked_network(dtype, "tanh"),
        "stacked-softsign-first": lambda: stacked_network(dtype, softsign()),
        "stacked-leaky_relu-first": lambda: stacked_network(dtype, "leaky_relu"),
        "linear-model": lambda: dl.MLP(D_IN, [], D_OUT, rng=5, dtype=dtype),
    }
    net = builders[network]()
    twin = net.copy()
    step = dl.TrainStep(net, "mse", dl.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
    reference = dl.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(8)
    for i, (x, y) in enumerate(batches(rng, values, dtype)):
        value = step(x, y, return_loss=i % 2 == 1)
        expected, output = explicit_step(twin, dl.losses.mse, reference, x, y)
        assert value is None if i % 2 == 0 else value == expected
        assert np.array_equal(step.output, output)
        assert_same_state(net, twin)


# ----------------------------------------------------------------------------- 3. gradients() and output

@pytest.mark.parametrize("network", ["relu", "tanh", "relu+sigmoid_output"])
def test_gradients_leaves_the_explicit_grads_and_keeps_the_weights(network):
    rng = np.random.default_rng(5)
    net = NETWORKS[network]("float64")
    twin = net.copy()
    optimizer = dl.optim.Adam(net.parameters(), lr=1e-2)
    step = dl.TrainStep(net, "cross_entropy", optimizer)
    assert step.output is None
    x, y = rng.standard_normal((9, D_IN)), rng.integers(0, D_OUT, 9)
    before = net.get_weights()
    output = net(x)

    value = step.gradients(x, y, return_loss=True)

    for p, w in zip(net.parameters(), before):
        assert np.array_equal(p.data, w)
    assert np.array_equal(step.output, output)
    twin.zero_grad()
    trace = twin.forward(x, record=True)
    grads = twin.backward(dl.losses.cross_entropy.grad(trace.output, y), input_grad=False, intermediates=False)
    assert value == dl.losses.cross_entropy.value(trace.output, y)
    for linear, dw, db in zip(net.linears, grads.weights, grads.biases):
        assert np.array_equal(linear.weight.grad, dw)
        assert np.array_equal(linear.bias.grad, db)
    assert step.gradients(x, y) is None

    # the step after gradients() is the loop's step; step.output is the output before it
    optimizer.step()
    reference = dl.optim.Adam(twin.parameters(), lr=1e-2)
    reference.step()
    assert_same_state(net, twin)
    output = net(x)
    step(x, y)
    assert np.array_equal(step.output, output)
    assert not np.array_equal(net(x), output)


def test_gradients_clears_what_an_earlier_pass_left():
    """gradients() twice on one batch gives the single-pass gradients, not twice them."""
    rng = np.random.default_rng(6)
    net = make_net("relu")
    step = dl.TrainStep(net, "mse", dl.optim.SGD(net.parameters(), lr=0.1))
    x, y = rng.standard_normal((6, D_IN)), rng.standard_normal((6, D_OUT))
    step.gradients(x, y)
    once = [p.grad.copy() for p in net.parameters()]
    step.gradients(x, y)
    for p, g in zip(net.parameters(), once):
        assert np.array_equal(p.grad, g)


# ----------------------------------------------------------------------------- 4. float32

@pytest.mark.parametrize("loss_case", ["cross_entropy-labels", "cross_entropy-one_hot", "mse", "bce_with_logits"])
@pytest.mark.parametrize("network", ["relu", "gelu", "relu+sigmoid_output"])
def test_float32_stays_float32(network, loss_case):
    rng = np.random.default_rng(9)
    net = NETWORKS[network]("float32")
    loss_name, target = LOSSES[loss_case]
    step = dl.TrainStep(net, loss_name, dl.optim.Adam(net.parameters(), lr=1e-2))
    for x_dtype in (np.float32, np.float64, np.float32):  # float64 data is converted, not promoted to
        x = rng.standard_normal((7, D_IN)).astype(x_dtype)
        value = step(x, target(rng, 7), return_loss=True)
        assert type(value) is float and np.isfinite(value)
        assert step.output.dtype == np.float32
        for p in net.parameters():
            assert p.data.dtype == np.float32, p.name
            assert p.grad.dtype == np.float32, p.name


# ----------------------------------------------------------------------------- 5. large arrays

def _addresses(net):
    return [p.grad.__array_interface__["data"][0] for p in net.parameters()]


def test_parameter_gradients_share_one_flat_array_reused_from_step_to_step():
    """Every grad is a view of one flat array; when no one keeps them the next step writes
    into the same memory (this reuse is what makes fit's gradient check one dot product)."""
    rng = np.random.default_rng(21)
    net = make_net("relu")
    step = dl.TrainStep(net, "cross_entropy", dl.optim.SGD(net.parameters(), lr=0.1))
    x, y = rng.standard_normal((8, D_IN)), labels(rng, 8)
    step(x, y)
    first = _addresses(net)
    assert first == sorted(first) and len(set(first)) == len(first)   # laid end to end: Ω_0, β_0, Ω_1, …
    flat = net.parameters()[0].grad.base
    assert all(p.grad.base is flat for p in net.parameters())
    expected = sum(float(p.grad.sum()) for p in net.parameters())
    assert float(net.flat_gradients().sum()) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    del flat
    step(x, y)
    assert _addresses(net) == first


def _kept_gradient_case(size: str, dtype: str, rng):
    """(net, loss, optimizer class and options, batches, the grad to keep, a view of it)."""
    if size == "large":  # dL/dΩ_0 of 256 KiB
        net = dl.MLP(128, [256], 3, activation="tanh", rng=1, dtype=dtype)
        assert net.linears[0].weight.data.nbytes >= _buffers.REUSE_BYTES
        data = [(rng.standard_normal((16, 128)).astype(dtype), rng.integers(0, 3, 16)) for _ in range(4)]
        return (net, dl.losses.cross_entropy, (dl.optim.SGD, {"lr": 0.1, "momentum": 0.9}), data,
                lambda: net.linears[0].weight.grad, lambda grad: grad[3:50, ::2])
    net = make_net("tanh", dtype)
    data = list(batches(rng, values, dtype, sizes=[6, 6, 6, 4]))
    return (net, dl.losses.mse, (dl.optim.Adam, {"lr": 1e-2}), data,
            lambda: net.linears[1].bias.grad, lambda grad: grad[1::2])


@pytest.mark.parametrize("keep", ["array", "view", "copy"])
@pytest.mark.parametrize("case", ["small-float32", "small-float64", "large-float64"])
def test_a_kept_gradient_is_never_overwritten(case, keep):
    """A grad (or a view of one) a user keeps from one step is never written by the next;
    a copy holds nothing, so the memory is reused."""
    rng = np.random.default_rng(22)
    net, loss, (optimizer, options), data, gradient, view = _kept_gradient_case(*case.split("-"), rng)
    twin = net.copy()
    step = dl.TrainStep(net, loss, optimizer(net.parameters(), **options))
    reference = optimizer(twin.parameters(), **options)
    step(*data[0])
    explicit_step(twin, loss, reference, *data[0])
    before = _addresses(net)
    grad = gradient()
    kept = {"array": grad, "view": view(grad), "copy": grad.copy()}[keep]
    del grad
    copy = kept.copy()
    for x, y in data[1:]:
        step(x, y)
        explicit_step(twin, loss, reference, x, y)
        assert_same_state(net, twin)
        assert np.array_equal(kept, copy)
    assert (_addresses(net) == before) == (keep == "copy")
    assert keep == "copy" or not np.shares_memory(kept, gradient())


def test_gradient_sum_is_none_when_a_parameter_accumulates():
    """A parameter outside the optimizer adds this step's gradient to its last one: its grad is
    not the step's array, so fit must check the arrays one by one."""
    rng = np.random.default_rng(23)
    net = make_net("relu")
    step = dl.TrainStep(net, "mse", dl.optim.SGD(net.parameters()[2:], lr=0.1))
    x, y = rng.standard_normal((6, D_IN)), values(rng, 6)
    step(x, y)
    assert net.flat_gradients() is not None   # the first step: every grad was None before it
    step(x, y)
    assert net.flat_gradients() is None
    net.linears[0].weight.grad = net.linears[0].bias.grad = None
    step(x, y)
    assert net.flat_gradients() is not None


@pytest.mark.parametrize("network", ["relu", "gelu", "relu+sigmoid_output", "stacked"])
def test_reusing_every_array_changes_nothing(network, monkeypatch):
    """With every array reused (REUSE_BYTES = 0, in both the step and the explicit loop), the
    results are the same and gradients a user keeps from each step stay intact."""
    monkeypatch.setattr(_buffers, "REUSE_BYTES", 0)
    rng = np.random.default_rng(19)
    net = stacked_network("float64") if network == "stacked" else NETWORKS[network]("float64")
    twin = net.copy()
    step = dl.TrainStep(net, "cross_entropy", dl.optim.Adam(net.parameters(), lr=1e-2))
    reference = dl.optim.Adam(twin.parameters(), lr=1e-2)
    kept = []
    for x, y in batches(rng, labels, "float64"):
        step(x, y)
        explicit_step(twin, dl.losses.cross_entropy, reference, x, y)
        assert_same_state(net, twin)
        kept.append([(p.grad, p.grad.copy()) for p in net.parameters()])
    for grads in kept:
        for grad, copy in grads:
            assert np.array_equal(grad, copy)


def test_large_arrays_of_every_kind_match_the_explicit_loop():
    """Batch and widths large enough that the explicit loop's f_k, h_k and dL/dh_k are reused
    buffers too, over full and short batches."""
    rng = np.random.default_rng(12)
    net = dl.MLP(64, [160, 160], 10, activation=["relu", "sigmoid"], rng=2)
    twin = net.copy()
    step = dl.TrainStep(net, "cross_entropy", dl.optim.Adam(net.parameters(), lr=1e-3))
    reference = dl.optim.Adam(twin.parameters(), lr=1e-3)
    for n in (256, 256, 100, 256):
        x, y = rng.standard_normal((n, 64)), rng.integers(0, 10, n)
        value = step(x, y, return_loss=True)
        expected, output = explicit_step(twin, dl.losses.cross_entropy, reference, x, y)
        assert value == expected
        assert np.array_equal(step.output, output)
        assert_same_state(net, twin)


# ----------------------------------------------------------------------------- 6. user losses

class HalfSquares:
    """½ Σ (f − y)², not a dl.losses.Loss; remembers every gradient it handed out (and a copy)."""

    def __init__(self, shape=None):
        self.handed_out = []
        self.shape = shape

    def value(self, output, target):
        return 0.5 * float(np.sum(np.square(output - target)))

    def grad(self, output, target):
        grad = output - target
        if self.shape is not None:
            grad = grad.reshape(self.shape)
        self.handed_out.append((grad, grad.copy()))
        return grad


class HalfSquaresAsLists(HalfSquares):
    """The same loss answering with nested lists of float64 (converted to the output's dtype)."""

    def grad(self, output, target):
        return (np.asarray(output, dtype=np.float64) - target).tolist()


@pytest.mark.parametrize("loss_class", [HalfSquares, HalfSquaresAsLists])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output_activation", [None, "tanh"])
def test_user_loss_matches_the_loop_and_its_arrays_stay_untouched(output_activation, dtype, loss_class):
    rng = np.random.default_rng(13)
    net = make_net("relu", dtype, output_activation=output_activation)
    twin = net.copy()
    loss, reference_loss = loss_class(), loss_class()
    step = dl.TrainStep(net, loss, dl.optim.SGD(net.parameters(), lr=0.01))
    reference = dl.optim.SGD(twin.parameters(), lr=0.01)
    assert step.loss is loss
    for i, (x, y) in enumerate(batches(rng, values, dtype, sizes=[6, 6, 4])):
        value = step(x, y, return_loss=i != 1)
        expected, output = explicit_step(twin, reference_loss, reference, x, y)
        assert value is None if i == 1 else value == expected
        assert np.array_equal(step.output, output)
        assert_same_state(net, twin)
    for grad, copy in loss.handed_out:
        assert np.array_equal(grad, copy)


def test_user_loss_with_value_and_grad_is_used_for_the_value():
    class Counted(HalfSquares):
        calls = 0

        def value_and_grad(self, output, target):
            Counted.calls += 1
            return self.value(output, target), self.grad(output, target)

    rng = np.random.default_rng(14)
    net = make_net("tanh")
    step = dl.TrainStep(net, Counted(), dl.optim.SGD(net.parameters(), lr=0.01))
    x, y = rng.standard_normal((5, D_IN)), rng.standard_normal((5, D_OUT))
    output = net(x)
    assert step(x, y, return_loss=True) == HalfSquares().value(output, y)
    assert Counted.calls == 1
    step(x, y)
    assert Counted.calls == 1


@pytest.mark.parametrize("shape", [(6 * D_OUT,), (D_OUT, 6), (6, D_OUT, 1)])
def test_user_loss_gradient_of_the_wrong_shape_is_refused(shape):
    rng = np.random.default_rng(15)
    net = make_net("relu")
    before = net.get_weights()
    step = dl.TrainStep(net, HalfSquares(shape), dl.optim.SGD(net.parameters(), lr=0.1))
    x, y = rng.standard_normal((6, D_IN)), rng.standard_normal((6, D_OUT))
    pattern = rf"gradient of shape {re_shape(shape)} for an output of shape \(6, {D_OUT}\)"
    with pytest.raises(ValueError, match=pattern):
        step(x, y)
    for p, w in zip(net.parameters(), before):
        assert np.array_equal(p.data, w)


def re_shape(shape) -> str:
    return "\\" + repr(tuple(shape)).replace(")", "\\)")


# ----------------------------------------------------------------------------- 7. bad input

def _net():
    return make_net("relu")


def _step(loss="mse"):
    net = _net()
    return dl.TrainStep(net, loss, dl.optim.SGD(net.parameters(), lr=0.1))


def _y(n=4):
    return np.zeros((n, D_OUT))


BAD_INPUT = [
    (lambda: dl.TrainStep(_net().layers, "mse", dl.optim.SGD(_net().parameters())), TypeError,
     r"Sequential.*got list"),
    (lambda: dl.TrainStep("net", "mse", dl.optim.SGD(_net().parameters())), TypeError, r"Sequential.*got str"),
    (lambda: dl.TrainStep(_net(), "mse", [1, 2]), TypeError, r"optimizer.*got list.*dl\.optim\.SGD"),
    (lambda: dl.TrainStep(_net(), "mse", "adam"), TypeError, r"optimizer.*got str.*dl\.optim\.SGD"),
    (lambda: dl.TrainStep(_net(), "no_such_loss", dl.optim.SGD(_net().parameters())), ValueError,
     r"Unknown loss 'no_such_loss'.*cross_entropy"),
    (lambda: dl.TrainStep(_net(), 3, dl.optim.SGD(_net().parameters())), TypeError, r"loss must be a name"),
    (lambda: _step()(np.zeros((4, D_IN + 1)), _y()), ValueError,
     rf"x has {D_IN + 1} features per sample.*{D_IN} are expected"),
    (lambda: _step()(np.zeros(D_IN), _y(1)), ValueError, r"x must be 2-D"),
    (lambda: _step()(np.zeros((0, D_IN)), _y(0)), ValueError, r"x is empty"),
    (lambda: _step()(np.full((4, D_IN), np.nan), _y()), ValueError, r"x contains NaN or Inf"),
    (lambda: _step()(np.zeros((4, D_IN)), np.zeros((4, D_OUT + 1))), ValueError, r"target shape"),
    (lambda: _step("cross_entropy")(np.zeros((4, D_IN)), [0, 1, 2, D_OUT]), ValueError,
     r"label 4 at index 3 is out of range"),
]


@pytest.mark.parametrize("call, error, pattern", BAD_INPUT)
def test_bad_input_is_refused(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


@pytest.mark.parametrize("method", ["__call__", "gradients"])
def test_forward_overflow_names_the_layer_and_keeps_the_weights(method):
    rng = np.random.default_rng(16)
    net = make_net("relu", "float32")
    for p in net.parameters():
        p.data *= np.float32(1e30)
    twin = net.copy()
    before = net.get_weights()
    optimizer = dl.optim.Adam(net.parameters(), lr=1e-2)
    step = dl.TrainStep(net, "mse", optimizer)
    x, y = rng.standard_normal((6, D_IN)).astype(np.float32), rng.standard_normal((6, D_OUT))
    with pytest.raises(NonFiniteError, match=r"overflowed at layer 1: f_1"):
        getattr(step, method)(x, y)
    with pytest.raises(NonFiniteError, match=r"overflowed at layer 1: f_1"):  # the explicit loop says the same
        twin.forward(x, record=True)
    for p, w in zip(net.parameters(), before):
        assert np.array_equal(p.data, w)
    assert step.output is None

    # with sane weights again, the same step object trains as the loop does
    net.set_weights([w / np.float32(1e30) for w in before])
    twin.set_weights(net.get_weights())
    reference = dl.optim.Adam(twin.parameters(), lr=1e-2)
    for _ in range(2):
        step(x, y)
        explicit_step(twin, dl.losses.mse, reference, x, y)
        assert_same_state(net, twin)


def test_output_activation_overflow_is_reported():
    """A finite f_K through an activation that overflows: the output activation is named."""
    explode = dl.activations.Activation("exp", np.exp, lambda f, h: h, 1.0)
    net = dl.Sequential([dl.Linear(D_IN, 3, rng=0), dl.ActivationLayer(explode)])
    net.linears[0].weight.data[...] = 500.0
    step = dl.TrainStep(net, "mse", dl.optim.SGD(net.parameters(), lr=0.1))
    before = net.get_weights()
    with pytest.raises(NonFiniteError, match="output activation"):
        step(np.ones((2, D_IN)), np.zeros((2, 3)))
    for p, w in zip(net.parameters(), before):
        assert np.array_equal(p.data, w)


# ----------------------------------------------------------------------------- 8. fit

FIT_CASES = {
    "cross_entropy-adam-relu": dict(
        net=lambda: make_net("relu"), loss="cross_entropy", target=labels,
        optimizer=lambda params: dl.optim.Adam(params, lr=1e-2), kwargs=dict(metrics=["accuracy"])),
    "mse-sgd-tanh-float32-clip": dict(
        net=lambda: make_net("tanh", "float32"), loss="mse", target=values,
        optimizer=lambda params: dl.optim.SGD(params, lr=0.05, momentum=0.9),
        kwargs=dict(clip_grad_norm=0.5, validation_split=0.2, metrics=["mse"])),
    "sum_squares-rmsprop-sigmoid-output": dict(
        net=lambda: make_net("gelu", output_activation="sigmoid"), loss="sum_squares", target=probabilities,
        optimizer=lambda params: dl.optim.RMSprop(params, lr=1e-3), kwargs=dict()),
    "user-loss-stacked": dict(
        net=lambda: stacked_network("float64"), loss=HalfSquares(), target=values,
        optimizer=lambda params: dl.optim.NAdam(params, lr=1e-2), kwargs=dict()),
}


@pytest.mark.parametrize("case", list(FIT_CASES))
def test_fit_through_train_step_equals_fit_through_the_explicit_passes(case, monkeypatch):
    spec = FIT_CASES[case]
    rng = np.random.default_rng(17)
    x, y = rng.standard_normal((45, D_IN)), spec["target"](rng, 45)
    fused_net = spec["net"]()
    explicit_net = fused_net.copy()

    calls = []
    original = TrainStep.gradients

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TrainStep, "gradients", counting)

    def run(net, callbacks):
        return dl.fit(net, x, y, loss=spec["loss"], optimizer=spec["optimizer"](net.parameters()), epochs=3,
                      batch_size=8, shuffle=True, rng=np.random.default_rng(0), verbose=0,
                      callbacks=callbacks, **spec["kwargs"])

    fused = run(fused_net, [])
    fused_calls = len(calls)
    hook = dl.LambdaCallback(on_batch_end=lambda batch, logs: None)
    explicit = run(explicit_net, [hook])

    batches_per_epoch = -(-(36 if "validation_split" in spec["kwargs"] else 45) // 8)
    assert fused_calls == 3 * batches_per_epoch   # the first fit ran TrainStep every batch
    assert len(calls) == fused_calls              # the second never did
    assert fused.history.keys() == explicit.history.keys()
    for name in fused.history:
        assert fused.history[name] == explicit.history[name], name
    for p, q in zip(fused_net.parameters(), explicit_net.parameters()):
        assert p.data.dtype == q.data.dtype
        assert np.array_equal(p.data, q.data), p.name


# ----------------------------------------------------------------------------- 9. derivative_from_output

FROM_OUTPUT = [name for name in dl.activations.names() if dl.activations.get(name).derivative_from_output]


def test_the_in_place_activations_are_registered():
    assert {"relu", "sigmoid", "tanh"} <= set(FROM_OUTPUT)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FROM_OUTPUT)
def test_derivative_from_output_needs_only_the_output(name, dtype):
    act = dl.activations.get(name)
    rng = np.random.default_rng(18)
    f = (rng.standard_normal((20, 9)) * 3).astype(dtype)
    f[0] = 0.0
    f[1, :3] = -0.0
    f[2] = -np.abs(f[2])
    f[3, :4] = [1e-30, -1e-30, 40.0, -40.0]
    h = act.function(f)
    g = rng.standard_normal(f.shape).astype(dtype)
    assert np.array_equal(act.backward(g, h, h), act.backward(g, f, h))
    assert np.array_equal(act.derivative(h, h), act.derivative(f, h))
    # written into a given gradient buffer, and computing h in f's own buffer
    into = g.copy()
    assert np.array_equal(act.backward(into, h, h, into), act.backward(g, f, h))
    buffer = f.copy()
    assert act.function_out is not None
    out = act.function_out(buffer, buffer)
    assert np.shares_memory(out, buffer)
    assert np.array_equal(out, h)


def test_flagged_activation_without_function_out_allocates_its_output():
    """``derivative_from_output`` without ``function_out``: h is allocated, results as the loop."""
    act = dl.activations.Activation("mytanh", np.tanh, lambda f, h: 1 - h * h, 5 / 3, derivative_from_output=True)

    def build():
        return dl.Sequential([dl.Linear(3, 4, rng=0), dl.ActivationLayer(act), dl.Linear(4, 2, rng=1)])

    fused, explicit = build(), build()
    x, y = np.random.default_rng(0).normal(size=(5, 3)), np.zeros((5, 2))
    dl.TrainStep(fused, "mse", dl.optim.SGD(fused.parameters(), lr=0.1))(x, y)
    opt = dl.optim.SGD(explicit.parameters(), lr=0.1)
    trace = explicit.forward(x, record=True)
    explicit.backward(dl.losses.mse.grad(trace.output, y), input_grad=False, intermediates=False)
    opt.step()
    for p, q in zip(fused.parameters(), explicit.parameters()):
        assert np.array_equal(p.data, q.data)
