"""float32 stays float32: forward, backward, every loss, every optimizer (and its state), fit.

Nothing in a float32 training step may be silently promoted to float64 — a promotion doubles
memory traffic and makes float32 pointless. Each test checks every array that comes out.
"""
import numpy as np
import pytest

import depthlab as dl

F32 = np.dtype(np.float32)


def arrays_of(value):
    """Every ndarray inside a (nested) dataclass / NamedTuple / list / dict."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from arrays_of(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from arrays_of(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            yield from arrays_of(getattr(value, name))


def assert_float32(value, what, required=True):
    found = list(arrays_of(value))
    assert found or not required, f"{what}: no arrays found"
    for array in found:
        assert array.dtype == F32, f"{what}: an array of shape {array.shape} is {array.dtype}"


def net32(activation="tanh", rng=0):
    return dl.MLP(5, [7, 6], 3, activation=activation, init="glorot_normal", bias_init={"name": "normal", "std": 0.1},
                  rng=rng, dtype="float32")


def batch(n=9, d=5, rng=1, dtype=np.float32):
    return np.random.default_rng(rng).standard_normal((n, d)).astype(dtype)


@pytest.mark.parametrize("activation", list(dl.activations.ACTIVATIONS))
def test_forward_and_backward_stay_float32(activation):
    net = net32(activation)
    assert_float32([p.data for p in net.parameters()], "parameters")
    x = batch()
    assert net(x).dtype == F32
    trace = net.forward(x, record=True)
    assert_float32(trace, f"{activation} trace")
    grads = net.backward(np.ones((9, 3), dtype=np.float32))
    assert_float32(grads, f"{activation} gradients")
    assert_float32([p.grad for p in net.parameters()], "Parameter.grad")
    assert net.input_jacobian(x).dtype == F32


def test_float64_input_is_converted_not_promoting_the_network():
    net = net32()
    trace = net.forward(batch(dtype=np.float64), record=True)
    assert_float32(trace, "trace from float64 input")
    assert_float32(net.backward(np.ones((9, 3))), "gradients from a float64 grad_output")


@pytest.mark.parametrize("loss", dl.losses.names())
def test_losses_give_float32_gradients(loss):
    output = batch(6, 3, rng=2)
    if loss == "cross_entropy":
        target = np.array([0, 1, 2, 0, 1, 2])
    elif loss == "binary_cross_entropy_with_logits":
        target = np.random.default_rng(3).uniform(size=(6, 3))        # float64 targets
    else:
        target = np.random.default_rng(3).standard_normal((6, 3))      # float64 targets
    objective = dl.losses.get(loss)
    assert objective.grad(output, target).dtype == F32
    value, grad = objective.value_and_grad(output, target)
    assert grad.dtype == F32 and np.isfinite(value)


# every optimizer, with the options that take other code paths
OPTIMIZER_SETTINGS = [
    ("sgd", {}), ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("sgd", {"momentum": 0.9, "dampening": 0.1, "maximize": True}),
    ("adagrad", {"lr_decay": 0.01, "weight_decay": 1e-3, "initial_accumulator_value": 0.1}),
    ("rmsprop", {}), ("rmsprop", {"momentum": 0.9, "centered": True, "weight_decay": 1e-3}),
    ("adadelta", {"weight_decay": 1e-3}),
    ("adam", {}), ("adam", {"amsgrad": True, "weight_decay": 1e-3}), ("adam", {"decoupled_weight_decay": True,
                                                                              "weight_decay": 1e-2}),
    ("adamw", {"amsgrad": True}), ("adamax", {"weight_decay": 1e-3}),
    ("nadam", {}), ("nadam", {"decoupled_weight_decay": True, "weight_decay": 1e-2}),
    ("radam", {}), ("radam", {"decoupled_weight_decay": True, "weight_decay": 1e-2}),
]


def test_every_optimizer_is_covered():
    assert {name for name, _ in OPTIMIZER_SETTINGS} == set(dl.optim.OPTIMIZERS)


@pytest.mark.parametrize("name, options", OPTIMIZER_SETTINGS, ids=[f"{n}-{i}" for i, (n, _) in
                                                                      enumerate(OPTIMIZER_SETTINGS)])
def test_every_optimizer_updates_float32_in_place_with_float32_state(name, options):
    net = net32()
    params = net.parameters()
    originals = [p.data for p in params]
    before = [p.data.copy() for p in params]
    opt = dl.optim.get(name, params, lr=1e-2, **options)
    x, y = batch(), np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    for _ in range(8):          # past RAdam's warm-up (ρ_t > 5 from step 6)
        opt.zero_grad()
        trace = net.forward(x, record=True)
        net.backward(dl.losses.cross_entropy.grad(trace.output, y))
        opt.step()
    for p, original, old in zip(params, originals, before):
        assert p.data is original, f"{name} replaced {p!r} instead of updating it in place"
        assert p.data.dtype == F32 and not np.array_equal(p.data, old)
    stateless = name == "sgd" and not options.get("momentum")        # plain SGD keeps no arrays
    assert_float32([list(state) for state in opt.state.values()], f"{name} state", required=not stateless)


def test_fit_trains_in_float32_with_every_feature():
    net = net32("relu")
    data = np.random.default_rng(4)
    x = data.standard_normal((60, 5))                       # float64 data: converted once by fit
    y = data.integers(0, 3, 60)
    opt = dl.optim.Adam(net.parameters(), lr=1e-2)
    history = dl.fit(net, x, y, loss="cross_entropy", optimizer=opt, epochs=3, batch_size=16, metrics=["accuracy"],
                     validation_split=0.2, verbose=0, clip_grad_norm=5.0,
                     lr_scheduler=dl.optim.StepLR(opt, step_size=1, gamma=0.5))
    assert len(history.history["loss"]) == 3
    assert_float32([p.data for p in net.parameters()], "parameters after fit")
    assert_float32([p.grad for p in net.parameters()], "gradients after fit")
    assert_float32([list(state) for state in opt.state.values()], "Adam state after fit")
    assert dl.predict(net, x).dtype == F32


@pytest.mark.parametrize("optimizer", list(dl.optim.OPTIMIZERS))
def test_fit_by_optimizer_name_stays_float32(optimizer):
    net = dl.MLP(2, [4], 1, activation="tanh", rng=0, dtype="float32")
    x = np.random.default_rng(5).standard_normal((20, 2)).astype(np.float32)
    dl.fit(net, x, x[:, :1] * 2.0, loss="mse", optimizer=optimizer, epochs=2, batch_size=8, verbose=0)
    assert_float32([p.data for p in net.parameters()], f"parameters after fit with {optimizer}")
