"""``TrainingMonitor``: per-layer gradient norms, update ratios and dead units during ``fit``."""
import math
import warnings

import numpy as np
import pytest

import depthlab as dl
from depthlab.training.callbacks import LambdaCallback
from depthlab.training.monitor import TrainingMonitor, TrainingMonitorWarning


def _data(n=120, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, np.sin(x.sum(axis=1, keepdims=True))


def _fit(net, monitor, lr=0.01, epochs=3, batch_size=40, **kwargs):
    x, y = _data()
    return dl.fit(net, x, y, loss="mse", optimizer=dl.optim.SGD(net.parameters(), lr=lr),
                  epochs=epochs, batch_size=batch_size, callbacks=[monitor], verbose=0, **kwargs)


def test_records_one_entry_per_epoch_and_layer():
    net = dl.MLP(4, [16, 16], 1, rng=0)
    monitor = TrainingMonitor(warn=False)
    history = _fit(net, monitor, epochs=4)
    assert [r["epoch"] for r in monitor.records] == [0, 1, 2, 3]
    assert all(r["steps"] == 3 for r in monitor.records)
    for record in monitor.records:
        assert len(record["grad_norm"]) == len(record["update_ratio"]) == len(record["dead_fraction"]) == 3
        assert record["dead_fraction"][-1] is None  # the output layer
    arrays = monitor.arrays()
    assert {k: v.shape for k, v in arrays.items()} == {k: (4, 3) for k in ("grad_norm", "update_ratio", "dead_fraction")}
    assert np.isnan(arrays["dead_fraction"][:, -1]).all()
    for name in ("monitor/grad_norm_min", "monitor/grad_norm_max", "monitor/update_ratio_min",
                 "monitor/update_ratio_max", "monitor/dead_fraction_max"):
        assert len(history.history[name]) == 4
    assert history.history["monitor/update_ratio_max"][-1] == max(monitor.records[-1]["update_ratio"])


def test_full_batch_sgd_values_match_a_hand_computation():
    # one full-batch step per epoch: grad_norm = ‖dL/dΩ_k‖ and the ratio = lr‖g‖ / ‖Ω − lr g‖
    x, y = _data()
    net = dl.MLP(4, [8, 8], 1, activation="tanh", rng=1)
    reference = net.copy()
    trace = reference.forward(x, record=True)
    grads = reference.backward(dl.losses.mse.grad(trace.output, y)).weights
    lr = 0.05
    monitor = TrainingMonitor(warn=False)
    dl.fit(net, x, y, loss="mse", optimizer=dl.optim.SGD(net.parameters(), lr=lr), epochs=1,
           batch_size=None, callbacks=[monitor], verbose=0)
    record = monitor.records[0]
    for k, (g, linear) in enumerate(zip(grads, reference.linears)):
        after = linear.weight.data - lr * g
        assert record["grad_norm"][k] == pytest.approx(np.linalg.norm(g), rel=1e-12)
        assert record["update_ratio"][k] == pytest.approx(lr * np.linalg.norm(g) / np.linalg.norm(after), rel=1e-10)


def test_update_ratio_averages_over_steps():
    net = dl.MLP(4, [8], 1, rng=2)
    weights, ratios = [], []

    def before(batch, logs):
        weights.append([l.weight.data.copy() for l in net.linears])

    def after(batch, logs):
        ratios.append([np.linalg.norm(l.weight.data - w) / np.linalg.norm(l.weight.data)
                       for l, w in zip(net.linears, weights[-1])])

    x, y = _data()
    monitor = TrainingMonitor(warn=False)
    dl.fit(net, x, y, loss="mse", optimizer=dl.optim.Adam(net.parameters(), lr=1e-3), epochs=1, batch_size=30,
           callbacks=[LambdaCallback(on_batch_begin=before, on_batch_end=after), monitor], verbose=0)
    np.testing.assert_allclose(monitor.records[0]["update_ratio"], np.mean(ratios, axis=0), rtol=1e-12)


def test_dead_fraction_on_a_given_probe_batch():
    net = dl.MLP(4, [10, 10], 1, rng=3)
    net.linears[0].bias.data[:3] = -100.0  # three units of layer 0 never fire
    x_probe = np.random.default_rng(9).normal(size=(50, 4))
    monitor = TrainingMonitor(x_probe, warn=False)
    _fit(net, monitor, lr=1e-3, epochs=1)
    f = x_probe @ net.linears[0].weight.data.T + net.linears[0].bias.data
    h = np.maximum(f, 0)
    f1 = h @ net.linears[1].weight.data.T + net.linears[1].bias.data
    expected = [np.mean(np.all(f <= 0, axis=0)), np.mean(np.all(f1 <= 0, axis=0))]
    assert monitor.records[0]["dead_fraction"][:2] == pytest.approx(expected)
    assert monitor.records[0]["dead_fraction"][0] >= 0.3


def test_tanh_layers_have_no_dead_fraction():
    monitor = TrainingMonitor(warn=False)
    history = _fit(dl.MLP(4, [8], 1, activation="tanh", rng=0), monitor, epochs=1)
    assert monitor.records[0]["dead_fraction"] == [None, None]
    assert math.isnan(history.history["monitor/dead_fraction_max"][0])


# --------------------------------------------------------------------------- warnings

def test_warns_once_when_updates_are_too_large():
    net = dl.MLP(4, [16], 1, rng=0)
    with pytest.warns(TrainingMonitorWarning, match=r"update-to-weight ratio .* above the healthy band") as caught:
        _fit(net, TrainingMonitor(), lr=0.5, epochs=3)
    keys = [str(w.message).split(":")[1] for w in caught if "above" in str(w.message)]
    assert len(keys) == len(set(keys))  # once per layer, not once per epoch


def test_warns_when_updates_are_too_small():
    with pytest.warns(TrainingMonitorWarning, match=r"below the healthy band.*barely learns"):
        _fit(dl.MLP(4, [16], 1, rng=0), TrainingMonitor(), lr=1e-9, epochs=1)


def test_warns_once_when_a_layer_dies():
    net = dl.MLP(4, [12, 12], 1, rng=0)
    net.linears[1].bias.data[:] = -100.0  # layer 1 is dead on every input
    monitor = TrainingMonitor(update_band=(1e-12, 1e3))
    with pytest.warns(TrainingMonitorWarning) as caught:
        _fit(net, monitor, lr=1e-3, epochs=3)
    dead = [w for w in caught if "has died" in str(w.message)]
    assert len(dead) == 1 and "layer 1" in str(dead[0].message) and "100%" in str(dead[0].message)
    assert all(r["dead_fraction"][1] == 1.0 for r in monitor.records)


def test_healthy_training_is_quiet_and_warn_false_silences():
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingMonitorWarning)
        _fit(dl.MLP(4, [16, 16], 1, rng=0), TrainingMonitor(), lr=0.003, epochs=2)
        _fit(dl.MLP(4, [16], 1, rng=0), TrainingMonitor(warn=False), lr=1e-9, epochs=1)


# --------------------------------------------------------------------------- bad input

BAD_INPUT = [
    (lambda: TrainingMonitor(update_band=(1e-2, 1e-4)), ValueError, r"low < high"),
    (lambda: TrainingMonitor(update_band=1e-3), TypeError, r"update_band must be a pair"),
    (lambda: TrainingMonitor(update_band=(0, 1e-2)), ValueError, r"update_band\[0\] must be in \(0"),
    (lambda: TrainingMonitor(dead_threshold=0), ValueError, r"dead_threshold must be in \(0, 1\]"),
    (lambda: TrainingMonitor(probe_size=0), ValueError, r"probe_size must be >= 1"),
    (lambda: _fit(dl.MLP(4, [8], 1, rng=0), TrainingMonitor(np.ones((5, 3)))), ValueError, r"4 are expected"),
    (lambda: TrainingMonitor().net, RuntimeError, r"not attached to a training run"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUT)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
