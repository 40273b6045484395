"""depthlab._fast.blocks: batches gathered and outputs scored in blocks give exactly what batch by
batch indexing and scoring give."""
import weakref

import numpy as np
import pytest

import depthlab as dl
from depthlab._fast import blocks as epoch
from depthlab.training import metrics
from depthlab.training.callbacks import LambdaCallback

N = 30


@pytest.fixture(params=["one batch per block", "default blocks"])
def block_bytes(request, monkeypatch):
    """Blocks so small that every block is one batch, or the default sizes (one block here)."""
    if request.param == "one batch per block":
        monkeypatch.setattr(epoch, "BLOCK_BYTES", 1)
        monkeypatch.setattr(epoch, "SCORE_BYTES", 1)
    return epoch.BLOCK_BYTES


def naive_batches(arrays, order, size):
    rows = np.arange(N) if order is None else order
    return [[a[rows[start:start + size]] for a in arrays] for start in range(0, N, size)]


@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("size", [1, 7, 10, N])
def test_batches_are_the_rows_of_each_batch(block_bytes, shuffled, size, rng):
    x, y = rng.standard_normal((N, 4)), rng.integers(0, 3, N)
    order = rng.permutation(N) if shuffled else None
    got = list(epoch.batches((x, y), order, size))  # all kept: earlier blocks must stay valid
    expected = naive_batches((x, y), order, size)
    assert len(got) == len(expected) == -(-N // size)
    for (xb, yb), (x_expected, y_expected) in zip(got, expected):
        np.testing.assert_array_equal(xb, x_expected)
        np.testing.assert_array_equal(yb, y_expected)
        assert xb.flags.c_contiguous and xb.dtype == x.dtype and yb.dtype == y.dtype


def test_a_block_is_gathered_once_and_its_batches_are_views(rng):
    x, y = rng.standard_normal((N, 4)), rng.integers(0, 3, N)
    (x0, _), (x1, _), *_ = epoch.batches((x, y), rng.permutation(N), 7)
    assert x0.base is x1.base and x0.base is not x  # one gather, then slices
    unshuffled, *_ = epoch.batches((x, y), None, 7)
    assert np.shares_memory(unshuffled[0], x)  # the given order needs no copy


def test_block_rows_are_whole_batches_within_the_limit():
    assert epoch.block_rows(100, 168, 256 * 1024) == 1500
    assert epoch.block_rows(256, 784 * 4, 256 * 1024) == 256  # a batch larger than a block: one batch
    assert epoch.block_rows(5, 0, 1024) % 5 == 0


def outputs_and_targets(name, rng, n=N):
    if name == "accuracy":
        return rng.standard_normal((n, 5)), rng.integers(0, 5, n)
    output = rng.standard_normal((n, 2))
    return output, 3.0 + output + rng.standard_normal((n, 2))


@pytest.mark.parametrize("name", ["accuracy", "mse", "mae", "r2"])
@pytest.mark.parametrize("shuffled", [False, True])
def test_scores_are_the_metric_of_every_output_added(block_bytes, name, shuffled, rng):
    metric = metrics.get(name)
    output, target = outputs_and_targets(name, rng)
    order = rng.permutation(N) if shuffled else None
    rows = np.arange(N) if order is None else order
    scores = epoch.Scores([metric], [metric.check_target(target, output.shape)], 7, output.shape[1], output.dtype)
    scores.begin(rng.permutation(N))
    scores.add(output[:7])  # an earlier epoch, forgotten by begin
    scores.begin(order)
    buffer = np.empty((7, output.shape[1]))  # one reused array, like a training step's output
    for start in range(0, N, 7):
        chunk = buffer[:len(rows[start:start + 7])]
        chunk[...] = output[rows[start:start + 7]]
        scores.add(chunk)
        if start == 14:  # running values midway: the outputs so far
            seen = rows[:21]
            assert scores.results()[name] == pytest.approx(metric(output[seen], target[seen]), rel=1e-12)
    chunk[...] = np.nan  # the scores hold their own copies
    expected = metric(output[rows], target[rows])
    if name == "accuracy":
        assert scores.results() == {name: expected}
    else:
        assert scores.results()[name] == pytest.approx(expected, rel=1e-12)


def test_a_mean_of_batch_values_sees_each_batch_alone(block_bytes, rng):
    def max_error(output, target):
        return float(np.max(np.abs(output - target)))

    metric = metrics.get(max_error)
    output, target = outputs_and_targets("mse", rng)
    scores = epoch.Scores([metric, metrics.mse], [target, target], 10, 2, np.float64)
    for start in range(0, N, 10):
        scores.add(output[start:start + 10])
    per_batch = [max_error(output[s:s + 10], target[s:s + 10]) for s in range(0, N, 10)]
    results = scores.results()
    assert results["max_error"] == pytest.approx(np.mean(per_batch), rel=1e-15)
    assert results["max_error"] < max_error(output, target)  # not the metric of the whole epoch
    assert results["mse"] == pytest.approx(metrics.mse(output, target), rel=1e-12)


@pytest.mark.parametrize("watch", [False, True], ids=["fused step", "batch callbacks"])
def test_fit_metrics_are_those_of_the_batches_outputs(block_bytes, watch, rng):
    x, y = rng.standard_normal((N, 4)), rng.integers(0, 3, N)
    net = dl.MLP(4, [8], 3, rng=0)
    outputs = []
    recorder = LambdaCallback(on_batch_end=lambda batch, logs: outputs.append(recorder.state.trace.output.copy()))

    def first_column_mean(output, target):
        return float(output[:, 0].mean())

    history = dl.fit(net, x, y, loss="cross_entropy", optimizer=dl.optim.SGD(net.parameters(), lr=0.0), epochs=1,
                     batch_size=7, metrics=["accuracy", first_column_mean], rng=5, verbose=0,
                     callbacks=[recorder] if watch else None)
    order = np.random.default_rng(5).permutation(N)
    every = net(x[order])  # lr 0: the outputs seen during the epoch
    if watch:
        np.testing.assert_array_equal(np.concatenate(outputs), every)
    assert history["accuracy"][0] == float(np.mean(np.argmax(every, axis=1) == y[order]))
    assert history["first_column_mean"][0] == pytest.approx(every[:, 0].mean(), rel=1e-14)


def test_fit_keeps_one_flat_gradient_array_from_step_to_step():
    """fit's divergence check reads the flat gradient array and lets go of it, so every backward
    pass writes into the same array (held by nobody else) instead of laying out a new one."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 5)), rng.integers(0, 3, 64)
    net = dl.MLP(5, [8], 3, rng=0)
    seen = []

    def remember(epoch, logs):
        flat = net.flat_gradients()
        assert flat is not None
        if seen:
            assert seen[-1]() is flat, f"epoch {epoch}: a new flat gradient array was laid out"
        seen.append(weakref.ref(flat))

    dl.fit(net, x, y, loss="cross_entropy", optimizer=dl.optim.SGD(net.parameters(), lr=0.1), epochs=3,
           batch_size=8, verbose=0, rng=0, callbacks=[LambdaCallback(on_epoch_end=remember)])
    assert len(seen) == 3
