"""Class 6 of the faults issue: values changed after construction are checked too, at the point of
use, and messages say what the user typed.

One table, CASES: (id, action, expected exception or None, message pattern). An action returns
nothing or raises; where it succeeds, the expected effect is asserted inside it.
"""
import numpy as np
import pytest

import depthlab as dl
from depthlab.optim import base as optim_base


def net(dtype="float64", outputs=1):
    return dl.MLP(2, [3], outputs, rng=0, dtype=dtype)


def with_grads(network):
    for p in network.parameters():
        p.grad = np.ones_like(p.data)
    return network


# ----------------------------------------------------------------------------- set_weights

def set_weights(change, *, expect_unchanged=True):
    """set_weights with get_weights() changed by ``change``; a refused call must change nothing."""
    def action():
        network = net()
        before = network.get_weights()
        arrays = change([w.copy() for w in before])
        try:
            network.set_weights(arrays)
        finally:
            if expect_unchanged:
                for a, b in zip(network.get_weights(), before):
                    np.testing.assert_array_equal(a, b)
    return action


def nan_in(index, where=(0,)):
    def change(arrays):
        arrays[index][where] = np.nan
        return arrays
    return change


def inf_in_last(arrays):
    arrays[-1][0] = np.inf
    return arrays


def generator_is_read():
    network, source = net(), dl.MLP(2, [3], 1, rng=5)
    network.set_weights(w for w in source.get_weights())
    for a, b in zip(network.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)


def float64_into_float32():
    network = net("float32")
    arrays = [w.astype(np.float64) + 1e-12 for w in network.get_weights()]
    network.set_weights(arrays)
    assert all(w.dtype == np.float32 for w in network.get_weights())
    np.testing.assert_array_equal(network.get_weights()[0], arrays[0].astype(np.float32))


def masked_without_masked_entries():
    network = net()
    arrays = [np.ma.masked_array(w + 1.0) for w in network.get_weights()]
    network.set_weights(arrays)
    np.testing.assert_array_equal(network.get_weights()[1], np.ma.getdata(arrays[1]))


# ----------------------------------------------------------------------------- optimizers

def step_after(change, optimizer=lambda ps: dl.optim.SGD(ps, lr=0.1), groups=None):
    """One good step, then ``change(opt)``, then another step: refused before any weight moves."""
    def action():
        network = with_grads(net())
        params = network.parameters()
        opt = optimizer(params if groups is None else groups(params))
        opt.step()
        change(opt)
        before = network.get_weights()
        try:
            opt.step()
        finally:
            for a, b in zip(network.get_weights(), before):
                np.testing.assert_array_equal(a, b)
    return action


def set_group(key, value, index=0):
    return lambda opt: opt.param_groups[index].__setitem__(key, value)


def two_groups(params):
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.01}]


def a_valid_change_is_used():
    network = with_grads(net())
    opt = dl.optim.SGD(network.parameters(), lr=0.1)
    before = network.get_weights()
    opt.param_groups[0]["lr"] = 0.5
    opt.step()
    for a, b in zip(network.get_weights(), before):
        np.testing.assert_allclose(a, b - 0.5, rtol=0, atol=1e-15)    # w ← w − lr·g with g = 1


def checked_only_when_changed(monkeypatch_counter):
    network = with_grads(net())
    opt = dl.optim.Adam(network.parameters(), lr=0.1)
    calls = monkeypatch_counter(opt)
    for _ in range(3):
        opt.step()
    assert calls == [1]                     # the first step checks once, unchanged steps do not
    opt.param_groups[0]["lr"] = 0.05
    opt.step()
    opt.step()
    assert calls == [2]


# ----------------------------------------------------------------------------- schedules

def schedule(make, steps, change=None):
    def action():
        opt = dl.optim.SGD(with_grads(net()).parameters(), lr=0.1)
        sched = make(opt)
        if change is not None:
            change(opt, sched)
        last_epoch = sched.last_epoch
        lrs = []
        try:
            for _ in range(steps):
                sched.step()
                last_epoch = sched.last_epoch
                lrs = [g["lr"] for g in opt.param_groups]
        finally:
            if lrs:
                assert [g["lr"] for g in opt.param_groups] == lrs    # the rates before the refused step
            assert sched.last_epoch == last_epoch
    return action


# ----------------------------------------------------------------------------- regions

def regions_of_numbers():
    one_input = dl.MLP(1, [6], 1, rng=3)
    expected = dl.count_linear_regions(one_input, np.array([-5.0]), np.array([5.0]))
    assert dl.count_linear_regions(one_input, -5.0, 5.0) == expected
    assert dl.count_linear_regions(one_input, np.float32(-5), np.array(5.0)) == expected
    assert dl.count_linear_regions(one_input, -5, 5) == expected


def early_stopping(setting, value):
    callback = dl.EarlyStopping(monitor="loss")
    setattr(callback, setting, value)
    dl.fit(net(), np.ones((8, 2)), np.ones((8, 1)), epochs=3, verbose=0, callbacks=[callback])


def fit_nan_network():
    network = net()
    network.linears[1].weight.data[0, 2] = np.nan
    dl.fit(network, np.ones((8, 2)), np.ones((8, 1)), verbose=0)


CASES = [
    # set_weights
    ("set_weights NaN", set_weights(nan_in(0)), ValueError, r"set_weights: weights\[0\] contains NaN or Inf \(first at index \(0, 0\)\)"),
    ("set_weights Inf in the last array", set_weights(inf_in_last),
     ValueError, r"set_weights: biases\[1\] contains NaN or Inf"),
    ("set_weights complex", set_weights(lambda a: [a[0] + 1j] + a[1:]), TypeError, r"complex values.*imaginary part would be lost"),
    ("set_weights generator", generator_is_read, None, None),
    ("set_weights too few", set_weights(lambda a: a[:3]), ValueError, r"needs 4 arrays \(one per parameter: weights\[0\], biases\[0\].*got 3"),
    ("set_weights one array", set_weights(lambda a: a[0]), TypeError, r"needs a list of 4 arrays.*got an ndarray of shape \(3, 2\)"),
    ("set_weights a dict", set_weights(lambda a: {"weights[0]": a[0]}), TypeError, r"got dict"),
    ("set_weights a number", set_weights(lambda a: 3.0), TypeError, r"got float"),
    ("set_weights transposed", set_weights(lambda a: [a[0].T] + a[1:]), ValueError, r"weights\[0\] has shape \(3, 2\), got an array of shape \(2, 3\)"),
    ("set_weights strings", set_weights(lambda a: [a[0].astype(str)] + a[1:]), TypeError, r"weights\[0\] must hold real numbers"),
    ("set_weights masked", set_weights(lambda a: [np.ma.masked_array(a[0], mask=np.eye(3, 2))] + a[1:]), TypeError,
     r"weights\[0\] is a masked array with 2 masked entries.*\.filled\(value\).*\.compressed\(\)"),
    ("set_weights masked, nothing masked", masked_without_masked_entries, None, None),
    ("set_weights float64 into float32", float64_into_float32, None, None),
    # optimizer hyperparameters changed after construction
    ("lr NaN", step_after(set_group("lr", float("nan"))), ValueError,
     r"Invalid learning rate: nan .*param_groups\[0\], changed after construction, at step 2"),
    ("lr negative", step_after(set_group("lr", -0.1)), ValueError, r"Invalid learning rate: -0.1"),
    ("lr inf", step_after(set_group("lr", float("inf"))), ValueError, r"Invalid learning rate: inf"),
    ("lr a string", step_after(set_group("lr", "0.1")), TypeError, r"lr must be a real number, got str '0.1'"),
    ("lr None", step_after(set_group("lr", None)), TypeError, r"lr must be a real number, got NoneType None"),
    ("lr True", step_after(set_group("lr", True)), TypeError, r"got bool True"),
    ("momentum negative", step_after(set_group("momentum", -1)), ValueError, r"Invalid momentum value: -1"),
    ("nesterov with dampening", step_after(lambda o: o.param_groups[0].update(momentum=0.9, nesterov=True, dampening=0.5)),
     ValueError, r"Nesterov momentum requires a momentum and zero dampening"),
    ("Adam betas", step_after(set_group("betas", (0.9, 1.5)), lambda ps: dl.optim.Adam(ps)), ValueError,
     r"Invalid beta parameter at index 1: 1.5"),
    ("Adam eps NaN", step_after(set_group("eps", float("nan")), lambda ps: dl.optim.Adam(ps)), ValueError,
     r"Invalid epsilon value: nan"),
    ("a typo adds a key", step_after(set_group("lrr", 0.5)), ValueError, r"unknown key 'lrr' for SGD.*Did you mean 'lr'"),
    ("a key deleted", step_after(lambda o: o.param_groups[0].pop("lr")), ValueError, r"lacks 'lr'"),
    ("second group", step_after(set_group("lr", -2.0, index=1), groups=two_groups), ValueError,
     r"Invalid learning rate: -2.0 .*param_groups\[1\]"),
    ("params replaced by an array", step_after(set_group("params", np.ones(3))), TypeError,
     r"\['params'\] must stay a list of Parameters"),
    ("an array appended to params", step_after(lambda o: o.param_groups[0]["params"].append(np.ones(3))), TypeError,
     r"param_groups\[0\]\['params'\]\[4\] is an ndarray of shape \(3,\).*checked at step 2"),
    ("a parameter appended twice", step_after(lambda o: o.param_groups[0]["params"].append(o.param_groups[0]["params"][0])),
     ValueError, r"appears more than once"),
    ("a valid change is used", a_valid_change_is_used, None, None),
    # schedules
    ("ExponentialLR gamma 1e300", schedule(lambda o: dl.optim.ExponentialLR(o, gamma=1e300), 3), ValueError,
     r"ExponentialLR\(gamma=1e\+300\) at step 2 \(last_epoch\) computes a learning rate of inf for param_groups\[0\]"
     r".*rates stay 1e\+299"),
    ("StepLR gamma 1e200", schedule(lambda o: dl.optim.StepLR(o, step_size=1, gamma=1e200), 3), ValueError,
     r"StepLR\(step_size=1, gamma=1e\+200\) at step 2"),
    ("gamma changed to inf", schedule(lambda o: dl.optim.ExponentialLR(o, gamma=0.5), 2,
                                      lambda o, s: setattr(s, "gamma", float("inf"))), ValueError,
     r"ExponentialLR\(gamma=inf\) at step 1 .*learning rate of inf"),
    ("gamma changed to -1", schedule(lambda o: dl.optim.ExponentialLR(o, gamma=0.5), 2,
                                     lambda o, s: setattr(s, "gamma", -1.0)), ValueError, r"learning rate of -0.1"),
    ("lr a string before schedule.step", schedule(lambda o: dl.optim.CosineAnnealingLR(o, T_max=5), 1,
                                                  lambda o, s: o.param_groups[0].__setitem__("lr", "x")), TypeError,
     r"CosineAnnealingLR.step\(\): param_groups\[0\]\['lr'\] is 'x', not a number"),
    ("lr NaN before plateau step", lambda: (lambda o: (o.param_groups[0].__setitem__("lr", float("nan")),
                                                       dl.optim.ReduceLROnPlateau(o).step(1.0)))(
        dl.optim.SGD(net().parameters(), lr=0.1)), ValueError, r"ReduceLROnPlateau.step\(\): param_groups\[0\]\['lr'\] is nan"),
    ("T_max changed to 0", schedule(lambda o: dl.optim.CosineAnnealingLR(o, T_max=5), 2,
                                    lambda o, s: setattr(s, "T_max", 0)), ValueError,
     r"CosineAnnealingLR\(T_max=0, eta_min=0.0\) cannot compute the rate at step 1 .*changed after construction"),
    ("gamma changed to a string", schedule(lambda o: dl.optim.ExponentialLR(o, gamma=0.5), 2,
                                           lambda o, s: setattr(s, "gamma", "x")), TypeError,
     r"ExponentialLR\(gamma='x'\) cannot compute the rate"),
    ("total_iters changed to a string", schedule(lambda o: dl.optim.LinearLR(o), 2,
                                                 lambda o, s: setattr(s, "total_iters", "5")),
     TypeError, r"LinearLR\(.*total_iters='5'\) cannot compute the rate at step 1"),
    # callbacks: checked again when each fit begins
    ("EarlyStopping.patience = -1", lambda: early_stopping("patience", -1), ValueError, r"^patience must be >= 0, got -1"),
    ("EarlyStopping.patience = '3'", lambda: early_stopping("patience", "3"), TypeError, r"patience must be an int, got str '3'"),
    ("EarlyStopping.min_delta = nan", lambda: early_stopping("min_delta", float("nan")), ValueError,
     r"min_delta must be finite, got nan"),
    ("EarlyStopping.mode = 'maxx'", lambda: early_stopping("mode", "maxx"), ValueError, r"mode must be 'auto', 'min' or 'max', got 'maxx'"),
    # layers with nothing in them
    ("from_arrays zero rows", lambda: dl.Linear.from_arrays(np.ones((0, 3))), ValueError,
     r"weight has shape \(0, 3\): a layer needs at least one output"),
    ("from_arrays zero columns", lambda: dl.Sequential.from_arrays([np.ones((2, 0))]), ValueError,
     r"weights\[0\] has shape \(2, 0\)"),
    ("bias named biases[0], not biass[0]", lambda: dl.Sequential.from_arrays([np.ones((3, 2))], [np.ones(4)]),
     ValueError, r"^biases\[0\] has shape \(4,\)"),
    # masked arrays
    ("masked input", lambda: net()(np.ma.masked_array(np.ones((2, 2)), mask=[[0, 1], [0, 0]])), TypeError,
     r"x is a masked array with 1 masked entry \(first at index \(0, 1\)\)"),
    ("masked labels", lambda: dl.fit(net(outputs=3), np.ones((4, 2)), np.ma.masked_array([0, 1, 2, 1], mask=[0, 1, 0, 0]),
                                     loss="cross_entropy", verbose=0), TypeError, r"cross_entropy target is a masked array"),
    ("masked regression target", lambda: dl.evaluate(net(), np.ones((2, 2)), np.ma.masked_array([[1.0], [2.0]], mask=[[1], [0]])),
     TypeError, r"y is a masked array with 1 masked entry"),
    ("masked segment end", lambda: dl.count_linear_regions(net(), np.zeros(2), np.ma.masked_array([1.0, 1.0], mask=[0, 1])),
     TypeError, r"end is a masked array"),
    # plain numbers where the input has one feature
    ("regions of plain numbers", regions_of_numbers, None, None),
    ("a number for two inputs", lambda: dl.count_linear_regions(net(), -5.0, 5.0), ValueError,
     r"start must be one input point of shape \(2,\).*got the number -5.0"),
    # messages that misnamed things
    ("float32 label 1.0000001", lambda: dl.losses.cross_entropy.value(np.zeros((2, 3)), np.array([1.0000001, 0], np.float32)),
     ValueError, r"label 1.0000001192092896 at index 0 is not an integer \(a float32 label must be a whole number"),
    ("finite 1e300 target in float32", lambda: dl.fit(net("float32"), np.ones((4, 2)), np.full((4, 1), 1e300), verbose=0),
     ValueError, r"target holds 1e\+300 at index \(0, 0\), which overflows float32 \(largest 3.403e\+38\)"),
    ("finite 1e300 input to a float32 network", lambda: net("float32")(np.full((2, 2), 1e300)), ValueError,
     r"^x holds 1e\+300 at index \(0, 0\), which overflows float32"),
    ("NaN network handed to fit", fit_nan_network, dl.TrainingDiverged,
     r"^fit cannot train this network: its parameter weights\[1\] \(layer 1\) held NaN or Inf before fit took its first step"),
]


@pytest.mark.parametrize("action, error, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_values_changed_after_construction(action, error, pattern):
    if error is None:
        action()
    else:
        with pytest.raises(error, match=pattern) as caught:
            action()
        assert "batch -1" not in str(caught.value) and "biass" not in str(caught.value)


def test_the_step_checks_a_group_only_when_it_changed(monkeypatch):
    calls = [0]
    real = optim_base.Optimizer._check_hyperparameters

    def counting(self, hyper, where):
        calls[0] += 1
        return real(self, hyper, where)

    def counter(opt):
        calls[0] = 0
        monkeypatch.setattr(optim_base.Optimizer, "_check_hyperparameters", counting)
        return calls
    checked_only_when_changed(counter)


def test_fit_interrupt_history_is_not_a_nan_message():
    """The NaN-network message names no step that never ran."""
    with pytest.raises(dl.TrainingDiverged) as caught:
        fit_nan_network()
    assert caught.value.step == 0 and caught.value.batch == 0 and caught.value.phase == "input"
