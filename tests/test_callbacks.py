"""Callbacks: hook order, stopping, History, EarlyStopping with Keras 3's semantics."""
import math

import numpy as np
import pytest

import depthlab as dl
from depthlab.training.callbacks import LambdaCallback, TrainingState


def problem(n=24, rng=0):
    x, y = dl.data.sine(n, rng=rng)
    return dl.MLP(1, [6], 1, rng=0), x, y


def fit(net, x, y, **kwargs):
    kwargs.setdefault("optimizer", dl.optim.SGD(net.parameters(), lr=1e-2))
    kwargs.setdefault("verbose", 0)
    return dl.fit(net, x, y, **kwargs)


def scores_callback(scores, name="score"):
    """Puts a made-up monitored value into each epoch's logs (listed before EarlyStopping)."""
    def add(epoch, logs):
        logs[name] = scores[epoch]
    return LambdaCallback(on_epoch_end=add)


class Recorder(dl.Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append("train_begin")

    def on_train_end(self, logs=None):
        self.events.append("train_end")

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(f"epoch_end {epoch} {sorted(logs)}")

    def on_batch_begin(self, batch, logs=None):
        self.events.append(f"batch_begin {batch}")

    def on_batch_end(self, batch, logs=None):
        self.events.append(f"batch_end {batch} size={logs['size']}")


def test_hooks_are_called_in_order_with_logs():
    net, x, y = problem(10)
    recorder = Recorder()
    fit(net, x, y, epochs=2, batch_size=6, callbacks=[recorder], validation_data=(x, y))
    epoch_logs = "['loss', 'lr', 'val_loss']"
    assert recorder.events == [
        "train_begin",
        "epoch_begin 0", "batch_begin 0", "batch_end 0 size=6", "batch_begin 1", "batch_end 1 size=4",
        f"epoch_end 0 {epoch_logs}",
        "epoch_begin 1", "batch_begin 0", "batch_end 0 size=6", "batch_begin 1", "batch_end 1 size=4",
        f"epoch_end 1 {epoch_logs}",
        "train_end",
    ]


def test_callback_sees_state_net_optimizer_and_batch_passes():
    net, x, y = problem(12)
    optimizer = dl.optim.SGD(net.parameters(), lr=1e-2)
    seen = {}

    class Spy(dl.Callback):
        def on_batch_end(self, batch, logs=None):
            seen["net"], seen["model"], seen["optimizer"] = self.net, self.model, self.optimizer
            seen["trace"], seen["grad"] = self.state.trace, self.net.parameters()[0].grad
            seen["gradients"], seen["step"] = self.state.gradients, self.state.step

        def on_epoch_end(self, epoch, logs=None):
            seen["history"], seen["params"] = self.history, self.state.params

    history = fit(net, x, y, optimizer=optimizer, epochs=1, batch_size=12, callbacks=[Spy()])
    assert seen["net"] is net and seen["model"] is net and seen["optimizer"] is optimizer
    assert seen["history"] is history and seen["step"] == 1
    assert seen["trace"].output.shape == (12, 1)
    assert seen["gradients"].weights[0] is seen["grad"]      # .grad still holds this batch's gradient
    assert seen["params"]["samples"] == 12 and seen["params"]["steps"] == 1


def test_stop_training_from_epoch_end():
    net, x, y = problem()

    class StopAfterThird(dl.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.state.stop_training = epoch == 2

    history = fit(net, x, y, epochs=10, batch_size=8, callbacks=[StopAfterThird()])
    assert history.epoch == [0, 1, 2] and len(history.history["loss"]) == 3
    assert not history.interrupted
    assert history.message == "Training stopped by StopAfterThird in epoch 2, after 3 of 10 epochs."


def test_stop_training_from_batch_end_records_partial_epoch():
    net, x, y = problem(24)
    steps = []

    class StopAtStep(dl.Callback):
        def on_batch_end(self, batch, logs=None):
            steps.append(logs["loss"])
            if self.state.step == 4:        # epoch 1 (3 batches per epoch), batch 0
                self.state.stop_training = True

    history = fit(net, x, y, epochs=10, batch_size=8, callbacks=[StopAtStep()], shuffle=False)
    assert len(steps) == 4 and history.epoch == [0, 1]
    # the partial epoch's loss is its one batch's loss (as Keras records it)
    assert history.history["loss"][1] == steps[3]


def test_history_records_callback_entries_and_pads_with_nan():
    net, x, y = problem()

    def late(epoch, logs):
        if epoch >= 1:
            logs["late"] = 10.0 * epoch

    history = fit(net, x, y, epochs=3, batch_size=8, callbacks=[LambdaCallback(on_epoch_end=late)])
    assert math.isnan(history["late"][0]) and history["late"][1:] == [10.0, 20.0]
    assert all(len(values) == 3 for values in history.history.values())
    assert len(history) == 3 and "3 epochs" in repr(history)
    with pytest.raises(KeyError, match=r"no 'val_loss' in this history; it has loss"):
        history["val_loss"]


def test_history_params():
    net, x, y = problem(20)
    history = fit(net, x, y, epochs=2, batch_size=8, validation_split=0.25, metrics=["mae"])
    assert history.params == {"epochs": 2, "steps": 2, "batch_size": 8, "samples": 15, "validation_samples": 5,
                              "verbose": 0, "metrics": ["loss", "mae", "val_loss", "val_mae", "lr"]}


# EarlyStopping — expected epochs worked out by hand from Keras 3's rules:
# wait += 1 each epoch; an improvement (value beats best by more than |min_delta|) records the
# best and resets wait only if it also beats the baseline; otherwise stop when wait >= patience.
EARLY_STOPPING_CASES = [
    # scores, keyword arguments, epochs run, best epoch
    ([5, 4, 4.5, 4.2, 3.9, 3.0, 2.0], dict(patience=2), 4, 1),
    ([5, 4.8, 4.6, 4.4, 4.2, 4.0, 3.8], dict(patience=1, min_delta=0.3), 2, 0),
    ([5, 4.8, 4.6, 4.4, 4.2, 4.0, 3.8], dict(patience=1, min_delta=-0.1), 7, 6),  # |min_delta| used
    ([5, 6, 7, 8, 9, 10, 11], dict(patience=0), 2, 0),
    ([0.5, 0.6, 0.55, 0.7, 0.65, 0.6, 0.59], dict(patience=2, mode="max"), 6, 3),
    ([5, 4, 4.5, 3.9, 4.0, 3.8, 3.7], dict(patience=2), 7, 6),
    ([5, 4, 4.5, 3.9, 4.0, 3.8, 3.7], dict(patience=2, baseline=3.0), 3, 1),
    ([1, 2, 3, 4, 5, 6, 7], dict(patience=0, start_from_epoch=2), 4, 2),
    ([5, float("nan"), 4, 3, 2, 1, 0], dict(patience=1), 2, 0),
]


@pytest.mark.parametrize("scores, kwargs, epochs_run, best_epoch", EARLY_STOPPING_CASES)
def test_early_stopping_follows_keras(scores, kwargs, epochs_run, best_epoch):
    net, x, y = problem()
    kwargs = {"mode": "min", **kwargs}
    stopper = dl.EarlyStopping(monitor="score", **kwargs)
    history = fit(net, x, y, epochs=len(scores), batch_size=8, callbacks=[scores_callback(scores), stopper])
    assert len(history.epoch) == epochs_run
    assert (history.message is None) == (epochs_run == len(scores))
    assert stopper.stopped_epoch == (epochs_run - 1 if epochs_run < len(scores) else 0)
    assert stopper.best_epoch == best_epoch


@pytest.mark.parametrize("stops_early", [True, False])
def test_restore_best_weights_after_stop_and_after_last_epoch(stops_early):
    net, x, y = problem()
    scores = [5, 3, 4, 4.5, 6] if stops_early else [5, 3, 4, 3.5, 3.2]
    snapshots = []
    keep = LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(net.get_weights()))
    stopper = dl.EarlyStopping(monitor="score", mode="min", patience=2 if stops_early else 5,
                               restore_best_weights=True)
    history = fit(net, x, y, epochs=5, batch_size=8, callbacks=[scores_callback(scores), keep, stopper])
    assert len(history.epoch) == (4 if stops_early else 5)
    assert stopper.best_epoch == 1
    for restored, best in zip(net.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(restored, best)
    assert not np.array_equal(snapshots[1][0], snapshots[-1][0])  # training did move on


def test_without_restore_the_last_weights_stay():
    net, x, y = problem()
    snapshots = []
    keep = LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(net.get_weights()))
    fit(net, x, y, epochs=4, batch_size=8,
        callbacks=[scores_callback([5, 3, 4, 4.5]), keep, dl.EarlyStopping(monitor="score", mode="min", patience=2)])
    np.testing.assert_array_equal(net.get_weights()[0], snapshots[-1][0])


def test_early_stopping_on_real_validation_loss():
    x, y = dl.data.sine(64, rng=0)
    x_val, y_val = dl.data.sine(32, rng=1)
    net = dl.MLP(1, [16], 1, rng=0)
    stopper = dl.EarlyStopping(patience=2, restore_best_weights=True)
    history = dl.fit(net, x, y, optimizer=dl.optim.Adam(net.parameters(), lr=0.3), epochs=40, batch_size=16,
                     validation_data=(x_val, y_val), verbose=0, rng=0, callbacks=[stopper])
    assert stopper.best == min(history["val_loss"])
    assert history["val_loss"][stopper.best_epoch] == stopper.best
    # the restored network scores the best validation loss seen
    assert dl.evaluate(net, x_val, y_val)["loss"] == pytest.approx(stopper.best, rel=1e-12)


@pytest.mark.parametrize("monitor, direction", [("val_loss", "min"), ("loss", "min"), ("accuracy", "max"),
                                                ("val_acc", "max"), ("val_r2", "max"), ("mae", "min")])
def test_auto_mode_from_the_metric_tables(monitor, direction):
    assert dl.EarlyStopping(monitor=monitor)._resolved_mode == direction


def test_auto_mode_for_a_custom_metric_comes_from_the_run():
    class Score(dl.metrics.MeanOfBatches):
        pass

    metric = Score(lambda output, target: 1.0, name="score", higher_is_better=True)
    stopper = dl.EarlyStopping(monitor="score")
    net, x, y = problem()
    fit(net, x, y, epochs=2, batch_size=8, metrics=[metric], callbacks=[stopper])
    assert stopper._resolved_mode == "max"


def test_early_stopping_is_reusable():
    stopper = dl.EarlyStopping(monitor="score", mode="min", patience=0)
    for _ in range(2):
        net, x, y = problem()
        history = fit(net, x, y, epochs=5, batch_size=8, callbacks=[scores_callback([5, 6, 7, 8, 9]), stopper])
        assert len(history.epoch) == 2


def test_lambda_callback_runs_only_given_hooks():
    calls = []
    callback = LambdaCallback(on_train_begin=lambda logs: calls.append("begin"),
                              on_batch_end=lambda batch, logs: calls.append(batch))
    assert callback.handles("on_batch_end") and not callback.handles("on_batch_begin")
    net, x, y = problem(10)
    fit(net, x, y, epochs=1, batch_size=5, callbacks=[callback])
    assert calls == ["begin", 0, 1]


def test_detached_callback_explains():
    with pytest.raises(RuntimeError, match=r"not attached to a training run"):
        dl.Callback().net


def test_training_state_repr():
    state = TrainingState(None, None, None, [], dl.History(), {})
    assert "stop_training=False" in repr(state)


def _missing_monitor():
    net, x, y = problem()
    fit(net, x, y, epochs=2, batch_size=8, callbacks=[dl.EarlyStopping()])


def _unknown_direction():
    net, x, y = problem()
    fit(net, x, y, epochs=2, batch_size=8, callbacks=[dl.EarlyStopping(monitor="score")])


BAD_CALLS = [
    ("missing monitor", _missing_monitor, ValueError,
     r"monitors 'val_loss', which is not in the epoch's logs \(available: loss, lr\)\. Pass validation_data"),
    ("unknown direction", _unknown_direction, ValueError, r"cannot tell whether 'score'.*mode='min' or mode='max'"),
    ("bad mode", lambda: dl.EarlyStopping(mode="up"), ValueError, r"mode must be 'auto', 'min' or 'max'"),
    ("negative patience", lambda: dl.EarlyStopping(patience=-1), ValueError, r"patience must be >= 0"),
    ("float patience", lambda: dl.EarlyStopping(patience=1.5), TypeError, r"patience must be an int"),
    ("monitor not a string", lambda: dl.EarlyStopping(monitor=3), TypeError, r"monitor must be a log name"),
    ("NaN baseline", lambda: dl.EarlyStopping(baseline=float("nan")), ValueError, r"baseline must be finite"),
    ("unknown lambda hook", lambda: LambdaCallback(on_step=print), TypeError, r"unknown hooks \['on_step'\]"),
    ("lambda not callable", lambda: LambdaCallback(on_epoch_end=3), TypeError, r"on_epoch_end must be callable"),
]


@pytest.mark.parametrize("label, call, error, pattern", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input(label, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_history_answers_in_and_iterates_over_its_log_names():
    history = dl.callbacks.History()
    history.record(0, {"loss": 1.0, "lr": 0.1})
    assert "loss" in history and "val_loss" not in history and 0 not in history
    assert list(history) == ["loss", "lr"] and list(history.keys()) == ["loss", "lr"]
    assert len(history) == 1


def test_early_stopping_refuses_a_non_bool_restore_best_weights():
    with pytest.raises(TypeError, match="restore_best_weights must be True or False"):
        dl.callbacks.EarlyStopping(restore_best_weights="no")


def test_history_display_survives_values_no_axis_can_span():
    history = dl.callbacks.History()
    history.record(0, {"loss": 1e308, "note": "text"})
    history.record(1, {"loss": -1e308})
    html = history._repr_html_()
    assert "too far apart to draw" in html and "History: 2 epochs" in html


@pytest.mark.parametrize("hooks", [{"on_epoch_end": lambda: None}, {"on_train_begin": lambda epoch, logs: None},
                                   {"on_batch_end": lambda batch, logs, extra: None}])
def test_lambda_callback_refuses_a_function_with_the_wrong_arguments_at_construction(hooks):
    with pytest.raises(TypeError, match="is called as"):
        LambdaCallback(**hooks)


def test_lambda_callback_takes_functions_with_defaults_or_star_args():
    LambdaCallback(on_epoch_end=lambda *args: None, on_batch_end=lambda batch, logs=None, *, extra=1: None,
                   on_train_end=print)
