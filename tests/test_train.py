"""fit / evaluate / predict: learning, PyTorch parity, conventions, divergence, Ctrl-C, bad input."""
import signal
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import depthlab as dl
from depthlab.training.callbacks import LambdaCallback
from depthlab.nn.model import NonFiniteError


def sine_problem(n=40, rng=0):
    x, y = dl.data.sine(n, rng=rng)
    return dl.MLP(1, [8, 8], 1, rng=0), x, y


def quiet_fit(net, x, y, **kwargs):
    kwargs.setdefault("verbose", 0)
    return dl.fit(net, x, y, **kwargs)


# ----------------------------------------------------------------------------- it learns

def test_sine_3x24_relu_reaches_test_mse_below_001():
    x, y = dl.data.sine(1000, rng=0)
    x_test, y_test = dl.data.sine(1000, rng=1)
    net = dl.MLP(1, [24, 24, 24], 1, activation="relu", rng=0)
    optimizer = dl.optim.Adam(net.parameters(), lr=1e-2)
    start = time.perf_counter()
    history = quiet_fit(net, x, y, loss="mse", optimizer=optimizer, epochs=50, batch_size=32, rng=0,
                        lr_scheduler=dl.optim.StepLR(optimizer, step_size=30, gamma=0.1))
    elapsed = time.perf_counter() - start
    test_mse = dl.evaluate(net, x_test, y_test, "mse")["loss"]
    print(f"sine: test MSE {test_mse:.2e} after 50 epochs in {elapsed:.2f} s")
    assert test_mse < 0.01
    assert history["lr"][0] == 1e-2 and history["lr"][-1] == pytest.approx(1e-3)


@pytest.mark.slow
def test_mnist1d_mlp_100_100_adam_reaches_065_test_accuracy():
    x, y, x_test, y_test = dl.data.mnist1d()
    net = dl.MLP(40, [100, 100], 10, activation="relu", rng=0)
    optimizer = dl.optim.Adam(net.parameters(), lr=1e-2)
    start = time.perf_counter()
    history = quiet_fit(net, x, y, loss="cross_entropy", optimizer=optimizer, epochs=30, batch_size=50, rng=0,
                        metrics=["accuracy"], lr_scheduler=lambda opt: dl.optim.CosineAnnealingLR(opt, T_max=30))
    elapsed = time.perf_counter() - start
    accuracy = dl.evaluate(net, x_test, y_test, "cross_entropy", ["accuracy"])["accuracy"]
    print(f"MNIST-1D: test accuracy {accuracy:.3f} after 30 epochs in {elapsed:.1f} s")
    assert accuracy >= 0.65
    assert history["accuracy"][-1] > 0.8  # training accuracy, as the epochs saw it


# ----------------------------------------------------------------------------- PyTorch parity

def _torch_optimizer(kind, parameters):
    if kind == "sgd_momentum":
        return torch.optim.SGD(parameters, lr=0.05, momentum=0.9)
    if kind == "adam":
        return torch.optim.Adam(parameters, lr=1e-2)
    return torch.optim.SGD(parameters, lr=1e-6)


def _depthlab_optimizer(kind, parameters):
    if kind == "sgd_momentum":
        return dl.optim.SGD(parameters, lr=0.05, momentum=0.9)
    if kind == "adam":
        return dl.optim.Adam(parameters, lr=1e-2)
    return dl.optim.SGD(parameters, lr=1e-6)


TORCH_LOSSES = {
    "mse": lambda output, target: F.mse_loss(output, target),
    "cross_entropy": lambda output, target: F.cross_entropy(output, target),
    "sum_squares": lambda output, target: ((output - target) ** 2).sum(),
}

PARITY_CASES = [
    # optimizer, loss, (N, D_in, hidden, D_out), batch size, epochs  -> 50 steps each
    ("sgd_momentum", "mse", (100, 5, [16, 16], 3), 10, 5),
    ("adam", "mse", (100, 5, [16, 16], 3), 10, 5),
    ("sgd_momentum", "cross_entropy", (100, 5, [16, 16], 4), 20, 10),
    ("adam", "cross_entropy", (100, 5, [16, 16], 4), 20, 10),
    # seed 002: 128 × 1000 → 100 → 100 → 10, sum of squares, plain gradient descent at lr 1e-6
    ("sgd", "sum_squares", (128, 1000, [100, 100], 10), None, 50),
]


@pytest.fixture
def one_torch_thread():
    """PyTorch's and OpenBLAS's thread pools spin against each other on small problems."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("kind, loss, sizes, batch_size, epochs", PARITY_CASES)
def test_loss_curve_matches_pytorch_step_by_step(kind, loss, sizes, batch_size, epochs, one_torch_thread):
    n, d_in, hidden, d_out = sizes
    data = np.random.default_rng(5)
    x = data.standard_normal((n, d_in))
    y = data.integers(0, d_out, n) if loss == "cross_entropy" else data.standard_normal((n, d_out))
    net = dl.MLP(d_in, hidden, d_out, activation="relu", rng=1)
    model = dl.to_torch(net)
    ours = []
    dl.fit(net, x, y, loss=loss, optimizer=_depthlab_optimizer(kind, net.parameters()), epochs=epochs,
           batch_size=batch_size, rng=7, verbose=0,
           callbacks=[LambdaCallback(on_batch_end=lambda batch, logs: ours.append(logs["loss"]))])

    # the same batches: fit draws exactly one rng.permutation(N) per epoch (none for a full batch)
    order = np.random.default_rng(7)
    optimizer = _torch_optimizer(kind, model.parameters())
    theirs = []
    for _ in range(epochs):
        batches = [np.arange(n)] if batch_size is None else np.split(order.permutation(n), n // batch_size)
        for rows in batches:
            optimizer.zero_grad()
            value = TORCH_LOSSES[loss](model(torch.from_numpy(x[rows])), torch.from_numpy(y[rows]))
            value.backward()
            optimizer.step()
            theirs.append(value.item())
    assert len(ours) == len(theirs) == 50
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=0)
    for ours_w, theirs_w in zip(net.get_weights(), [p.detach().numpy() for p in model.parameters()]):
        np.testing.assert_allclose(ours_w, theirs_w, rtol=1e-8, atol=1e-12)


# ----------------------------------------------------------------------------- conventions

def _sum_loss():
    return dl.losses.get("sum_squares")


@pytest.mark.parametrize("loss", ["mse", "sum_squares", "half_sum_squares"])
def test_epoch_loss_is_the_per_sample_mean_over_batches(loss):
    # lr = 0: every batch sees the same weights, so the epoch's loss is the whole set's loss
    net, x, y = sine_problem(25)
    history = quiet_fit(net, x, y, loss=loss, optimizer=dl.optim.SGD(net.parameters(), lr=0.0), epochs=1,
                        batch_size=10, validation_data=(x, y))
    output = net(x)
    whole = dl.losses.get(loss).value(output, y)
    per_sample = whole if loss == "mse" else whole / 25
    assert history["loss"][0] == pytest.approx(per_sample, rel=1e-13)
    assert history["val_loss"][0] == pytest.approx(per_sample, rel=1e-13)
    assert dl.evaluate(net, x, y, loss)["loss"] == pytest.approx(per_sample, rel=1e-13)


def test_epoch_loss_weights_batches_by_size_while_training():
    net, x, y = sine_problem(25)
    reference = net.copy()
    history = quiet_fit(net, x, y, loss="mse", optimizer=dl.optim.SGD(net.parameters(), lr=0.1), epochs=2,
                        batch_size=10, shuffle=False)
    optimizer = dl.optim.SGD(reference.parameters(), lr=0.1)
    for epoch in range(2):
        total = 0.0
        for start in (0, 10, 20):
            xb, yb = x[start:start + 10], y[start:start + 10]
            optimizer.zero_grad()
            trace = reference.forward(xb, record=True)
            value, grad = dl.losses.mse.value_and_grad(trace.output, yb)
            reference.backward(grad)
            optimizer.step()
            total += value * len(xb)
        assert history["loss"][epoch] == pytest.approx(total / 25, rel=1e-13)
    for a, b in zip(net.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("watch", [False, True], ids=["fused step", "batch callbacks"])
def test_a_parameter_outside_the_optimizer_holds_its_last_batch_gradient(watch):
    """fit clears every gradient before each batch, also those the optimizer does not hold."""
    net, x, y = sine_problem()
    frozen = net.linears[0].weight
    before = frozen.data.copy()
    callbacks = [LambdaCallback(on_batch_end=lambda batch, logs: None)] if watch else None
    quiet_fit(net, x, y, optimizer=dl.optim.SGD(net.parameters()[2:], lr=0.0), epochs=2, batch_size=16,
              shuffle=False, callbacks=callbacks)
    last = net.copy()  # lr 0: the weights of every batch
    trace = last.forward(x[32:], record=True)
    last.backward(dl.losses.mse.grad(trace.output, y[32:]))
    np.testing.assert_array_equal(frozen.data, before)
    np.testing.assert_array_equal(frozen.grad, last.linears[0].weight.grad)


def test_training_metrics_are_over_the_epochs_outputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 4))
    y = rng.integers(0, 3, 30)
    net = dl.MLP(4, [8], 3, rng=0)
    history = quiet_fit(net, x, y, loss="cross_entropy", optimizer=dl.optim.SGD(net.parameters(), lr=0.0),
                        epochs=1, batch_size=7, metrics=["accuracy"], validation_data=(x, y))
    expected = float(np.mean(np.argmax(net(x), axis=1) == y))
    assert history["accuracy"][0] == history["val_accuracy"][0] == expected


def test_history_contents():
    net, x, y = sine_problem()
    x_val, y_val = dl.data.sine(10, rng=3)
    history = quiet_fit(net, x, y, optimizer=dl.optim.Adam(net.parameters(), lr=1e-2), epochs=3, batch_size=16,
                        metrics=["mae", "r2"], validation_data=(x_val, y_val))
    assert list(history.history) == ["loss", "mae", "r2", "val_loss", "val_mae", "val_r2", "lr"]
    assert history.epoch == [0, 1, 2]
    assert all(len(values) == 3 and all(isinstance(v, float) for v in values) for values in history.history.values())
    assert history["loss"][-1] < history["loss"][0]
    assert history["lr"] == [1e-2] * 3
    final = dl.evaluate(net, x_val, y_val, "mse", ["mae", "r2"])
    assert final == {"loss": history["val_loss"][-1], "mae": history["val_mae"][-1], "r2": history["val_r2"][-1]}


def test_validation_split_holds_out_the_last_fraction():
    net, x, y = sine_problem(40)
    history = quiet_fit(net, x, y, epochs=2, batch_size=8, validation_split=0.25)
    assert history.params["samples"] == 30 and history.params["validation_samples"] == 10
    assert history["val_loss"][-1] == dl.evaluate(net, x[30:], y[30:])["loss"]
    # Keras's rounding: N − ceil(N·(1 − split)) samples validate
    net, x, y = sine_problem(10)
    assert quiet_fit(net, x, y, validation_split=0.15).params["validation_samples"] == 1


def test_same_rng_reproduces_the_run_exactly():
    runs = []
    for seed in (3, 3, np.random.default_rng(3), 4):
        net, x, y = sine_problem()
        history = quiet_fit(net, x, y, epochs=3, batch_size=8, rng=seed)
        runs.append((history.history, net.get_weights()))
    (h0, w0), (h1, w1), (h2, w2), (h3, w3) = runs
    assert h0 == h1 == h2
    assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(w0, w1, w2))
    assert h3 != h0


def test_shuffle_false_keeps_order_and_ignores_rng():
    results = []
    for seed in (0, 1):
        net, x, y = sine_problem()
        results.append(quiet_fit(net, x, y, epochs=2, batch_size=8, rng=seed, shuffle=False).history)
    assert results[0] == results[1]


class RecordingLoss:
    """A user loss (value/grad object) that records the targets of every batch."""

    def __init__(self):
        self.batches = []

    def value(self, output, target):
        self.batches.append(target[:, 0].astype(int).tolist())
        return float(np.sum((output - target) ** 2))

    def grad(self, output, target):
        return 2 * (output - target)


@pytest.mark.parametrize("shuffle", [True, False])
def test_minibatches_without_replacement_last_partial_kept(shuffle):
    x = np.linspace(-1, 1, 23).reshape(-1, 1)
    y = np.arange(23.0).reshape(-1, 1)          # the target is the sample's index
    net = dl.MLP(1, [4], 1, rng=0)
    recorder = RecordingLoss()
    quiet_fit(net, x, y, loss=recorder, optimizer=dl.optim.SGD(net.parameters(), lr=0.0), epochs=3,
              batch_size=5, shuffle=shuffle, rng=11)
    order = np.random.default_rng(11)
    for epoch in range(3):
        batches = recorder.batches[5 * epoch:5 * epoch + 5]
        assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
        expected = order.permutation(23) if shuffle else np.arange(23)
        assert sum(batches, []) == expected.tolist()


@pytest.mark.parametrize("batch_size", [None, 40, 1000])
def test_full_batch(batch_size):
    net, x, y = sine_problem(40)
    steps = []
    history = quiet_fit(net, x, y, epochs=2, batch_size=batch_size,
                        callbacks=[LambdaCallback(on_batch_end=lambda b, logs: steps.append(logs["size"]))])
    assert steps == [40, 40] and history.params["batch_size"] == 40 and history.params["steps"] == 1


def test_float32_stays_float32():
    x, y = dl.data.sine(40, rng=0, dtype="float32")
    net = dl.MLP(1, [8], 1, rng=0, dtype="float32")
    optimizer = dl.optim.Adam(net.parameters(), lr=1e-2)
    history = quiet_fit(net, x, y, optimizer=optimizer, epochs=3, batch_size=16, validation_data=(x, y),
                        metrics=["r2"])
    assert all(p.data.dtype == np.float32 for p in net.parameters())
    assert all(p.grad.dtype == np.float32 for p in net.parameters())
    assert all(s.exp_avg.dtype == np.float32 for s in optimizer.state.values())
    assert dl.predict(net, x).dtype == np.float32
    assert history["loss"][-1] < history["loss"][0]
    # float64 data are converted once to the network's dtype
    quiet_fit(net, x.astype(np.float64), y.astype(np.float64), optimizer=optimizer, epochs=1)
    assert all(p.data.dtype == np.float32 for p in net.parameters())


def test_predict_and_evaluate_in_batches():
    net, x, y = sine_problem(45)
    whole = dl.predict(net, x)
    np.testing.assert_array_equal(whole, net(x))
    np.testing.assert_allclose(dl.predict(net, x, batch_size=7), whole, rtol=1e-14)
    full = dl.evaluate(net, x, y, "sum_squares", ["mse", "mae", "r2"])
    chunked = dl.evaluate(net, x, y, "sum_squares", ["mse", "mae", "r2"], batch_size=8)
    assert chunked == pytest.approx(full, rel=1e-12)
    assert full["loss"] == pytest.approx(full["mse"], rel=1e-13)  # per-sample sum of squares, D = 1


def test_optimizer_by_name_and_the_state_is_kept_between_fits():
    net, x, y = sine_problem()
    history = quiet_fit(net, x, y, optimizer="sgd", epochs=1)
    assert history["lr"] == [1e-3]                      # dl.optim.SGD's default
    optimizer = dl.optim.Adam(net.parameters(), lr=1e-2)
    quiet_fit(net, x, y, optimizer=optimizer, epochs=1, batch_size=40)
    quiet_fit(net, x, y, optimizer=optimizer, epochs=1, batch_size=40)
    assert optimizer.state[net.parameters()[0]].step == 2


def test_lr_scheduler_steps_once_per_epoch():
    net, x, y = sine_problem()
    history = quiet_fit(net, x, y, optimizer=dl.optim.SGD(net.parameters(), lr=0.1), epochs=5, batch_size=8,
                        lr_scheduler=lambda opt: dl.optim.StepLR(opt, step_size=2, gamma=0.5))
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


@pytest.mark.parametrize("validation", [True, False])
def test_reduce_on_plateau_gets_val_loss_or_loss(validation):
    seen = []

    class Spy(dl.optim.ReduceLROnPlateau):
        def step(self, metric):
            seen.append(metric)
            super().step(metric)

    net, x, y = sine_problem()
    optimizer = dl.optim.SGD(net.parameters(), lr=0.1)
    history = quiet_fit(net, x, y, optimizer=optimizer, epochs=3, batch_size=8, lr_scheduler=Spy(optimizer),
                        validation_data=(x[:10], y[:10]) if validation else None)
    assert seen == history["val_loss" if validation else "loss"]


def test_clip_grad_norm_matches_a_manual_loop():
    net, x, y = sine_problem(16)
    reference = net.copy()
    quiet_fit(net, x, y, optimizer=dl.optim.SGD(net.parameters(), lr=0.1), epochs=3, batch_size=None,
              clip_grad_norm=0.05)
    optimizer = dl.optim.SGD(reference.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        trace = reference.forward(x, record=True)
        reference.backward(dl.losses.mse.grad(trace.output, y))
        assert dl.optim.clip_grad_norm(reference.parameters(), 0.05) > 0.05  # it does clip
        optimizer.step()
    for a, b in zip(net.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-14)


# ----------------------------------------------------------------------------- progress output

def test_verbose_2_prints_one_line_per_epoch(capsys):
    net, x, y = sine_problem()
    dl.fit(net, x, y, epochs=2, batch_size=8, verbose=2, metrics=["mae"])
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Epoch 1/2 - ") and "loss: " in lines[0] and "mae: " in lines[0]


def test_verbose_1_draws_a_progress_bar(capsys):
    """Epochs shorter than the bar's delay print only their final line, one per epoch."""
    net, x, y = sine_problem()
    dl.fit(net, x, y, epochs=2, batch_size=8, verbose=1)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 2 and "\r" not in captured.err
    for epoch, line in enumerate(lines, 1):
        assert line.startswith(f"Epoch {epoch}/2: 100%") and "5/5" in line and "loss: " in line


def test_verbose_1_replaces_a_drawn_bar_by_the_final_line(capsys):
    """A slow epoch draws its bar while it runs; its final line takes the bar's place."""
    net, x, y = sine_problem()
    slow = dl.LambdaCallback(on_batch_end=lambda batch, logs: time.sleep(0.03))
    dl.fit(net, x, y, epochs=1, batch_size=8, verbose=1, callbacks=[slow])
    err = capsys.readouterr().err
    assert "\r" in err and err.endswith("\n")                        # drawn while running
    final = err.rstrip("\n").split("\r")[-1]
    assert final.startswith("Epoch 1/1: 100%") and "5/5" in final and "loss: " in final


def test_verbose_1_without_tqdm_falls_back_to_lines(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    net, x, y = sine_problem()
    dl.fit(net, x, y, epochs=2, batch_size=8, verbose=1)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2 - ")


def test_verbose_0_is_silent(capsys):
    net, x, y = sine_problem()
    quiet_fit(net, x, y, epochs=2)
    assert capsys.readouterr() == ("", "")


# ----------------------------------------------------------------------------- Ctrl-C

class Snapshots(dl.Callback):
    """Keeps the weights after every step; at (epoch, batch) interrupts the run."""

    def __init__(self, at, how):
        self.at, self.how, self.weights, self.ended = at, how, [], False

    def on_batch_end(self, batch, logs=None):
        self.weights.append(self.net.get_weights())
        if (self.state.epoch, batch) == self.at:
            if self.how == "raise":
                raise KeyboardInterrupt
            signal.raise_signal(signal.SIGINT)   # a real Ctrl-C: the step in progress finishes

    def on_train_end(self, logs=None):
        self.ended = True


@pytest.mark.parametrize("how", ["raise", "signal"])
def test_ctrl_c_returns_the_history_so_far(how, capsys):
    net, x, y = sine_problem(40)
    spy = Snapshots(at=(2, 1), how=how)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        history = quiet_fit(net, x, y, epochs=10, batch_size=8, callbacks=[spy])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    finally:
        signal.signal(signal.SIGINT, previous)
    assert history.interrupted and history.epoch == [0, 1] and len(history["loss"]) == 2
    assert "interrupted" in history.message and "2 completed epoch(s)" in history.message
    assert capsys.readouterr().err == ""  # verbose=0 prints nothing: history.interrupted and .message say it
    assert len(spy.weights) == 5 + 5 + 2 and spy.ended
    for now, after_last_step in zip(net.get_weights(), spy.weights[-1]):
        np.testing.assert_array_equal(now, after_last_step)


def test_ctrl_c_with_the_progress_bar_leaves_the_epoch_so_far(capsys):
    net, x, y = sine_problem(40)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        dl.fit(net, x, y, epochs=10, batch_size=8, callbacks=[Snapshots(at=(2, 1), how="signal")], verbose=1)
    finally:
        signal.signal(signal.SIGINT, previous)
    lines = capsys.readouterr().err.splitlines()
    assert [line[:15] for line in lines[:3]] == ["Epoch 1/10: 100", "Epoch 2/10: 100", "Epoch 3/10:  40"]
    assert "2/5" in lines[2] and lines[3].startswith("Training interrupted")


def test_ctrl_c_in_an_epochs_last_batch_completes_that_epoch():
    net, x, y = sine_problem(40)
    spy = Snapshots(at=(1, 3), how="signal")          # 32 training samples: 4 batches
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        history = quiet_fit(net, x, y, epochs=10, batch_size=8, callbacks=[spy], validation_split=0.2)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert history.interrupted and history.epoch == [0, 1] and len(spy.weights) == 8
    assert history["val_loss"][-1] == dl.evaluate(net, x[32:], y[32:])["loss"]


# ----------------------------------------------------------------------------- divergence

def _diverge(net, x, y, lr, **kwargs):
    snapshots = []
    keep = LambdaCallback(on_batch_end=lambda batch, logs: snapshots.append(net.get_weights()))
    with pytest.raises(dl.TrainingDiverged) as caught:
        quiet_fit(net, x, y, optimizer=dl.optim.SGD(net.parameters(), lr=lr), callbacks=[keep], **kwargs)
    return caught.value, snapshots


def test_divergence_names_epoch_step_and_first_non_finite_layer():
    x, y = dl.data.sine(200, rng=0)
    net = dl.MLP(1, [50] * 5, 1, init=1.0, rng=0)          # σ² = 1: no variance preservation
    error, snapshots = _diverge(net, x, y, lr=1e3, epochs=5, batch_size=50, shuffle=False)
    assert isinstance(error, FloatingPointError) and isinstance(error, NonFiniteError)
    assert error.phase == "forward" and error.epoch == 0
    assert error.step == error.batch == len(snapshots) >= 1
    # the weights are those after the last completed step, i.e. from before the failing one
    for now, before in zip(net.get_weights(), snapshots[-1]):
        np.testing.assert_array_equal(now, before)
    # an independent replay of the failing batch finds the same first non-finite f_k
    rows = slice(50 * error.batch, 50 * error.batch + 50)
    h, first = x[rows], None
    with np.errstate(over="ignore", invalid="ignore"):
        for k, (weight, bias) in enumerate(zip(net.get_weights()[::2], net.get_weights()[1::2])):
            f = h @ weight.T + bias
            if not np.isfinite(f).all():
                first = k
                break
            h = np.maximum(f, 0)
    assert first is not None
    assert error.layer == first
    message = str(error)
    assert f"epoch 0, batch {error.batch}" in message and f"at layer {first}" in message
    assert "lower learning rate (lr=1000 now)" in message and "clip_grad_norm" in message
    assert error.history.epoch == []


def test_divergence_when_only_the_loss_overflows():
    x, y = dl.data.sine(200, rng=0)
    net = dl.MLP(1, [20] * 3, 1, init=1.0, rng=0)
    error, snapshots = _diverge(net, x, y, lr=1e3, epochs=5, batch_size=50, shuffle=False)
    assert error.phase in ("loss", "forward")
    for now, before in zip(net.get_weights(), snapshots[-1] if snapshots else []):
        np.testing.assert_array_equal(now, before)


class InfiniteGradientLoss:
    """Finite loss, non-finite dL/d(output) from the second call on: the backward pass fails."""

    def __init__(self):
        self.calls = 0

    def value(self, output, target):
        return float(np.mean((output - target) ** 2))

    def grad(self, output, target):
        self.calls += 1
        grad = 2 * (output - target) / output.size
        if self.calls == 2:
            grad[0, 0] = np.inf
        return grad


def test_divergence_in_the_backward_pass_names_the_parameter():
    net, x, y = sine_problem(20)
    error, snapshots = _diverge(net, x, y, lr=0.1, epochs=2, batch_size=10, loss=InfiniteGradientLoss())
    assert (error.phase, error.epoch, error.batch, error.step) == ("backward", 0, 1, 1)
    assert error.layer == 2 and error.parameter == "weights[2]"   # backprop starts at the last layer
    assert "non-finite gradient dL/dweights[2] at layer 2" in str(error)
    assert not np.isfinite(net.parameters()[-2].grad).all()         # the failing step's gradients
    for now, before in zip(net.get_weights(), snapshots[0]):
        np.testing.assert_array_equal(now, before)


@pytest.mark.parametrize("batch_size", [16, None])   # found at the next step / at the end of the epoch
def test_an_overflowing_update_is_reported_as_such(batch_size):
    x, y = dl.data.sine(32, rng=0)
    net = dl.MLP(1, [4], 1, rng=0)
    error, snapshots = _diverge(net, x, y * 1e100, lr=1e300, epochs=2, batch_size=batch_size, loss="sum_squares")
    assert error.phase == "update" and error.step == 0 and error.batch == 0 and len(snapshots) == 1
    assert error.parameter.startswith(("weights", "biases"))
    assert "the update overflowed" in str(error) and "cannot be undone" in str(error)


def test_divergence_in_float32():
    x, y = dl.data.sine(64, rng=0, dtype="float32")
    net = dl.MLP(1, [32] * 4, 1, init=1.0, rng=0, dtype="float32")
    error, snapshots = _diverge(net, x, y, lr=1e3, epochs=20, batch_size=16)
    assert error.phase in ("forward", "loss", "backward")
    for now, before in zip(net.get_weights(), snapshots[-1] if snapshots else []):
        np.testing.assert_array_equal(now, before)


# ----------------------------------------------------------------------------- bad input

class WrongGradientShape:
    def value(self, output, target):
        return 0.0

    def grad(self, output, target):
        return np.zeros(output.shape[0])


NET = dl.MLP(1, [4], 1, rng=0)
X, Y = dl.data.sine(10, rng=0)
LABELS_NET = dl.MLP(1, [4], 3, rng=0)


def bad_fit(**kwargs):
    net = kwargs.pop("net", NET)
    x, y = kwargs.pop("x", X), kwargs.pop("y", Y)
    kwargs.setdefault("verbose", 0)
    return lambda: dl.fit(net, x, y, **kwargs)


BAD_CALLS = [
    ("epochs 0", bad_fit(epochs=0), ValueError, r"epochs must be >= 1, got 0"),
    ("epochs negative", bad_fit(epochs=-2), ValueError, r"epochs must be >= 1"),
    ("epochs float", bad_fit(epochs=2.5), TypeError, r"epochs must be an int"),
    ("batch_size 0", bad_fit(batch_size=0), ValueError, r"batch_size must be >= 1, got 0"),
    ("batch_size negative", bad_fit(batch_size=-5), ValueError, r"batch_size must be >= 1"),
    ("lengths differ", bad_fit(y=Y[:7]), ValueError,
     r"x and y must have the same number of samples.*x has 10 \(shape \(10, 1\)\), y has 7"),
    ("scalar y", bad_fit(y=1.0), ValueError, r"same number of samples"),
    ("validation_split 0", bad_fit(validation_split=0.0), ValueError, r"validation_split must be in \(0, 1\)"),
    ("validation_split 1", bad_fit(validation_split=1), ValueError, r"validation_split must be in \(0, 1\)"),
    ("validation_split 1.5", bad_fit(validation_split=1.5), ValueError, r"validation_split must be in \(0, 1\)"),
    ("validation_split negative", bad_fit(validation_split=-0.1), ValueError, r"in \(0, 1\)"),
    ("validation_split empty part", bad_fit(validation_split=0.01), ValueError,
     r"leaves 10 for training and 0 for validation"),
    ("both validations", bad_fit(validation_split=0.2, validation_data=(X, Y)), ValueError,
     r"either validation_data or validation_split, not both"),
    ("validation_data triple", bad_fit(validation_data=(X, Y, Y)), ValueError,
     r"validation_data must be a pair \(x_val, y_val\), got tuple of length 3"),
    ("validation lengths", bad_fit(validation_data=(X, Y[:3])), ValueError,
     r"x and validation_data\[1\] \(y_val\) must have the same number of samples"),
    ("validation width", bad_fit(validation_data=(np.zeros((3, 2)), np.zeros((3, 1)))), ValueError,
     r"validation_data\[0\] \(x_val\) has 2 features"),
    ("unknown loss", bad_fit(loss="hinge"), ValueError, r"Unknown loss 'hinge'.*Valid names:.*mse"),
    ("loss not a loss", bad_fit(loss=42), TypeError, r"loss must be a name"),
    ("user loss gradient shape", bad_fit(loss=WrongGradientShape()), ValueError,
     r"returned a gradient of shape \(10,\) for an output of shape \(10, 1\)"),
    ("unknown metric", bad_fit(metrics=["acuracy"]), ValueError,
     r"Unknown metric 'acuracy'.*Valid names: accuracy, mae, mse, r2.*Did you mean 'accuracy'"),
    ("metric twice", bad_fit(metrics=["mse", "mean_squared_error"]), ValueError, r"lists 'mse' twice"),
    ("metrics not a list", bad_fit(metrics=3), TypeError, r"metrics must be a list"),
    ("NaN in y", bad_fit(y=np.where(np.arange(10)[:, None] == 4, np.nan, Y)), ValueError,
     r"y contains NaN or Inf \(first at index \(4, 0\)\)"),
    ("Inf in x", bad_fit(x=np.where(np.arange(10)[:, None] == 2, np.inf, X)), ValueError, r"x contains NaN or Inf"),
    ("NaN in y_val", bad_fit(validation_data=(X, np.full((10, 1), np.nan))), ValueError,
     r"validation_data\[1\] \(y_val\) contains NaN"),
    ("string y", bad_fit(y=np.array(["a"] * 10)), TypeError, r"y must hold numbers"),
    ("1-D x", bad_fit(x=X[:, 0]), ValueError, r"x\.reshape\(-1, 1\)"),
    ("target shape", bad_fit(y=np.zeros((10, 2))), ValueError, r"target shape \(10, 2\) does not match output shape"),
    ("label out of range", bad_fit(net=LABELS_NET, y=np.arange(10) % 4, loss="cross_entropy"), ValueError,
     r"label 3 at index 3 is out of range"),
    ("accuracy on regression", bad_fit(metrics=["accuracy"]), ValueError, r"accuracy: targets must be integer"),
    ("verbose 3", bad_fit(verbose=3), ValueError, r"verbose must be 0 \(silent\), 1 \(progress bar\) or 2"),
    ("shuffle string", bad_fit(shuffle="yes"), TypeError, r"shuffle must be True or False"),
    ("rng string", bad_fit(rng="seed"), TypeError, r"rng must be an np.random.Generator"),
    ("callback not a callback", bad_fit(callbacks=[print]), TypeError,
     r"callbacks\[0\] must be a dl.Callback.*LambdaCallback"),
    ("callbacks not a list", bad_fit(callbacks="early"), TypeError, r"callbacks must be a list"),
    ("unknown optimizer", bad_fit(optimizer="adamm"), ValueError, r"Unknown optimizer 'adamm'.*adam"),
    ("optimizer of another net", bad_fit(optimizer=dl.optim.SGD(dl.MLP(1, [4], 1).parameters())), ValueError,
     r"does not update any of this network's parameters"),
    ("optimizer wrong type", bad_fit(optimizer=0.1), TypeError, r"optimizer must be a name"),
    ("scheduler without step", bad_fit(lr_scheduler=3), TypeError, r"lr_scheduler must be a schedule"),
    ("scheduler class", bad_fit(lr_scheduler=dl.optim.StepLR), TypeError,
     r"got the class StepLR; e.g. lr_scheduler=lambda opt: dl.optim.StepLR\(opt, ...\)"),
    ("scheduler of another optimizer", bad_fit(
        optimizer="sgd", lr_scheduler=dl.optim.StepLR(dl.optim.SGD(NET.parameters()), 2)), ValueError,
     r"lr_scheduler drives another optimizer"),
    ("clip 0", bad_fit(clip_grad_norm=0), ValueError, r"clip_grad_norm must be in \(0, inf\)"),
    ("not a network", lambda: dl.fit(lambda x: x, X, Y), TypeError, r"net must be a depthlab network"),
    ("evaluate lengths", lambda: dl.evaluate(NET, X, Y[:3]), ValueError, r"same number of samples"),
    ("evaluate unknown loss", lambda: dl.evaluate(NET, X, Y, "l2"), ValueError, r"Unknown loss 'l2'"),
    ("evaluate batch_size", lambda: dl.evaluate(NET, X, Y, batch_size=0), ValueError, r"batch_size must be >= 1"),
    ("predict NaN", lambda: dl.predict(NET, np.full((2, 1), np.nan)), ValueError, r"x contains NaN"),
    ("predict width", lambda: dl.predict(NET, np.zeros((2, 3))), ValueError, r"x has 3 features"),
    ("predict batch_size", lambda: dl.predict(NET, X, batch_size=-1), ValueError, r"batch_size must be >= 1"),
]


@pytest.mark.parametrize("label, call, error, pattern", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input(label, call, error, pattern):
    before = NET.get_weights()
    with pytest.raises(error, match=pattern):
        call()
    for now, then in zip(NET.get_weights(), before):   # refused before any training
        np.testing.assert_array_equal(now, then)


@pytest.mark.parametrize("name", ["lr", "val_loss", "loss", "size"])
def test_a_metric_named_like_a_log_fit_writes_is_refused_not_overwritten(name):
    x, y = np.ones((6, 2)), np.zeros((6, 1))
    metric = dl.metrics.MeanOfBatches(lambda output, target: 1.0, name=name)
    with pytest.raises(ValueError, match="another name"):
        dl.fit(dl.MLP(2, [3], 1), x, y, metrics=[metric], validation_split=0.5, verbose=0)


def test_clip_grad_norm_in_fit_covers_only_the_trained_parameters_as_pytorch_with_a_frozen_layer():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    net = dl.MLP(3, [4], 2, activation="tanh")
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    with torch.no_grad():
        for param, value in zip([model[0].weight, model[0].bias, model[2].weight, model[2].bias], net.get_weights()):
            param.copy_(torch.tensor(value))
    model[0].weight.requires_grad_(False)
    model[0].bias.requires_grad_(False)  # frozen: torch gives them no gradient, so no share of the norm
    trained = net.parameters()[2:]
    dl.fit(net, x, y, optimizer=dl.optim.SGD(trained, lr=0.1), epochs=3, batch_size=8, clip_grad_norm=0.01,
           verbose=0)
    reference = torch.optim.SGD([model[2].weight, model[2].bias], lr=0.1)
    for _ in range(3):
        reference.zero_grad()
        F.mse_loss(model(torch.tensor(x)), torch.tensor(y)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
        reference.step()
    np.testing.assert_allclose(net.parameters()[2].data, model[2].weight.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(net.parameters()[0].data, model[0].weight.numpy())


@pytest.mark.parametrize("returned", ["x", np.ones(3)])
def test_evaluate_names_a_custom_loss_whose_value_is_not_a_number(returned):
    class Odd:
        def value(self, output, target):
            return returned

        def grad(self, output, target):
            return output - target

    with pytest.raises(TypeError, match="Odd.value.*one real number"):
        dl.evaluate(dl.MLP(2, [3], 1), np.ones((4, 2)), np.zeros((4, 1)), loss=Odd())


def test_a_network_without_fixed_width_evaluates_predicts_and_fit_says_it_has_nothing_to_train():
    net = dl.Sequential([dl.ActivationLayer("relu")])  # no Linear: no out_features
    x = np.random.default_rng(0).standard_normal((5, 3))
    y = np.ones((5, 3))
    expected = np.maximum(x, 0.0)
    np.testing.assert_array_equal(dl.predict(net, x, batch_size=2), expected)
    logs = dl.evaluate(net, x, y, metrics=["mae"], batch_size=2)
    assert logs["loss"] == pytest.approx(np.mean((expected - y) ** 2), rel=1e-12)
    assert logs["mae"] == pytest.approx(np.mean(np.abs(expected - y)), rel=1e-12)
    with pytest.raises(ValueError, match="no parameters to train"):
        dl.fit(net, x, y, verbose=0)


@pytest.mark.parametrize("y, error, message", [
    ([[1.0, 2.0], [3.0], [4.0, 5.0]], ValueError, "rows of different lengths"),
    ((value for value in range(3)), TypeError, "got generator"),
])
def test_fit_names_ragged_or_non_array_targets(y, error, message):
    with pytest.raises(error, match=message):
        dl.fit(dl.MLP(2, [3], 1), np.ones((3, 2)), y, verbose=0)


def test_fit_says_a_pytorch_scheduler_is_not_depthlab_s():
    torch_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(TypeError, match="PyTorch scheduler"):
        dl.fit(dl.MLP(2, [3], 1), np.ones((4, 2)), np.zeros((4, 1)), verbose=0,
               lr_scheduler=torch.optim.lr_scheduler.StepLR(torch_opt, 1))
