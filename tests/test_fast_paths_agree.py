"""The fast paths agree with their references, however a user holds arrays or mixes calls:
reused buffers and flat gradients (``_buffers``), the fused ``TrainStep``, the flat
optimizer path (``optim.flat``) and the epoch machinery of ``fit`` (``epoch``).

Every test compares against an independent reference: a twin network trained by the
explicit loop with the flat optimizer path switched off, copies taken at the time, PyTorch,
or metrics recomputed from outputs recorded batch by batch. Section 6 holds the regression
tests of bugs such attacks found (each was wrong before its fix).
"""
import copy
import pickle

import numpy as np
import pytest
import torch

import depthlab as dl
from depthlab._fast import buffers as _buffers, blocks as epoch
from depthlab.training import metrics
from depthlab.training.callbacks import LambdaCallback
from depthlab.nn.parameter import Parameter
from depthlab.training.step import TrainStep

CE, MSE = dl.losses.cross_entropy, dl.losses.mse


# ----------------------------------------------------------------------------- helpers

def per_parameter(optimizer):
    """The optimizer with its flat path switched off: the reference."""
    optimizer._flat_group = lambda *args: None
    return optimizer


def explicit_step(net, loss, optimizer, x, y, **backward):
    optimizer.zero_grad()
    trace = net.forward(x, record=True)
    net.backward(loss.grad(trace.output, y), **({"input_grad": False, "intermediates": False} | backward))
    optimizer.step()


def assert_same_weights(net, twin):
    for p, q in zip(net.parameters(), twin.parameters()):
        assert p.data.dtype == q.data.dtype
        assert np.array_equal(p.data, q.data), p.name


def assert_same_states(optimizer, params, reference, ref_params):
    for p, q in zip(params, ref_params):
        state, ref = optimizer.state[p], reference.state[q]
        assert type(state) is type(ref)
        for value, expected in zip(state, ref):
            if isinstance(expected, np.ndarray):
                assert value.shape == expected.shape and value.dtype == expected.dtype
                assert np.array_equal(value, expected)
            else:
                assert value == expected


def adam_twins():
    """A network with Adam and its TrainStep, and a twin with the per-parameter Adam loop."""
    net = dl.MLP(5, [7, 6], 4, rng=3)
    twin = net.copy()
    optimizer = dl.optim.Adam(net.parameters(), lr=1e-2)
    reference = per_parameter(dl.optim.Adam(twin.parameters(), lr=1e-2))
    return net, twin, optimizer, reference, TrainStep(net, CE, optimizer)


OPTIMIZERS = {
    "sgd": lambda params: dl.optim.SGD(params, lr=0.05),
    "sgd-nesterov-wd": lambda params: dl.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adam": lambda params: dl.optim.Adam(params, lr=1e-2),
    "adamw": lambda params: dl.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
    "adam-amsgrad": lambda params: dl.optim.Adam(params, lr=1e-2, amsgrad=True),
}


# ----------------------------------------------------------------------------- 1. kept arrays

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kept_gradient_views_survive_later_fused_and_explicit_steps(dtype):
    """p.grad, a slice, .T, a reshape and the flat base itself, kept across steps of both
    kinds and every batch size, stay as they were; the weights stay those of a twin that
    keeps nothing and takes the per-parameter optimizer path."""
    rng = np.random.default_rng(0)
    net = dl.MLP(5, [7, 6], 4, rng=3, dtype=dtype)
    twin = net.copy()
    optimizer = dl.optim.Adam(net.parameters(), lr=1e-2)
    reference = per_parameter(dl.optim.Adam(twin.parameters(), lr=1e-2))
    step = TrainStep(net, "mse", optimizer)
    kept = []
    for i, n in enumerate([8, 8, 3, 1, 8, 8, 5, 8]):
        x, y = rng.standard_normal((n, 5)).astype(dtype), rng.standard_normal((n, 4))
        if i % 3 == 2:
            explicit_step(net, MSE, optimizer, x, y)
        else:
            step(x, y)
        explicit_step(twin, MSE, reference, x, y)
        p = net.parameters()[i % 4]
        view = [p.grad, p.grad[:1], p.grad.T, p.grad.reshape(-1), p.grad.base][i % 5]
        kept.append((view, view.copy()))
        for a, b in zip(net.parameters(), twin.parameters()):
            assert np.array_equal(a.data, b.data) and np.array_equal(a.grad, b.grad), (i, a.name)
    for view, snapshot in kept:
        assert np.array_equal(view, snapshot)
    assert_same_states(optimizer, net.parameters(), reference, twin.parameters())


def test_kept_traces_and_gradients_are_never_overwritten_by_reused_buffers():
    """Batches large enough for the reusable buffers; traces and Gradients kept (with and
    without intermediates, with and without dL/dx) stay equal to copies taken at the time."""
    rng = np.random.default_rng(1)
    net = dl.MLP(20, [256, 256], 3, rng=1)
    twin = net.copy()
    optimizer = dl.optim.SGD(net.parameters(), lr=1e-3)
    reference = per_parameter(dl.optim.SGD(twin.parameters(), lr=1e-3))
    assert 300 * 256 * 8 >= _buffers.REUSE_BYTES
    kept = []
    for i, n in enumerate([300, 300, 7, 300, 150, 300]):
        x, y = rng.standard_normal((n, 20)), rng.standard_normal((n, 3))
        optimizer.zero_grad()
        trace = net.forward(x, record=True)
        grads = net.backward(MSE.grad(trace.output, y), input_grad=i % 2 == 0, intermediates=i % 3 != 0)
        optimizer.step()
        if i in (0, 1, 3):
            kept.append((trace, copy.deepcopy(trace), grads, copy.deepcopy(grads)))
        explicit_step(twin, MSE, reference, x, y)
        assert_same_weights(net, twin)
    for trace, trace_copy, grads, grads_copy in kept:
        for a, b in zip([trace.output, *trace.preactivations, *trace.activations],
                        [trace_copy.output, *trace_copy.preactivations, *trace_copy.activations]):
            assert np.array_equal(a, b)
        for a, b in zip(grads.weights + grads.biases, grads_copy.weights + grads_copy.biases):
            assert np.array_equal(a, b)
        for name in ("preactivations", "activations"):
            if getattr(grads, name) is not None:
                for a, b in zip(getattr(grads, name), getattr(grads_copy, name)):
                    assert (a is None and b is None) or np.array_equal(a, b)


# ----------------------------------------------------------------------------- 2. fused and explicit mixed

@pytest.mark.parametrize("case", ["sgd", "adam", "adamw", "sgd-nesterov-wd"])
def test_explicit_and_fused_steps_mixed_on_one_optimizer_equal_the_per_parameter_loop(case):
    rng = np.random.default_rng(2)
    net = dl.MLP(5, [7, 6], 4, rng=3, dtype="float32")
    twin = net.copy()
    optimizer, reference = OPTIMIZERS[case](net.parameters()), per_parameter(OPTIMIZERS[case](twin.parameters()))
    step = TrainStep(net, CE, optimizer)
    for i, n in enumerate([8, 8, 5, 1, 8, 3, 8, 8, 1]):
        x, y = rng.standard_normal((n, 5)).astype("float32"), rng.integers(0, 4, n)
        if i % 3 == 1:
            explicit_step(net, CE, optimizer, x, y)
        elif i % 3 == 2:
            step.gradients(x, y)
            optimizer.step()
        else:
            step(x, y)
        explicit_step(twin, CE, reference, x, y)
        assert_same_weights(net, twin)
    assert_same_states(optimizer, net.parameters(), reference, twin.parameters())


def test_two_networks_share_one_optimizer_with_groups_of_different_lr():
    rng = np.random.default_rng(3)
    a, b = dl.MLP(5, [7], 4, rng=1), dl.MLP(5, [6, 3], 4, rng=2)
    ta, tb = a.copy(), b.copy()

    def groups(first, second):
        return [{"params": first.parameters()}, {"params": second.parameters()[:2], "lr": 0.05},
                {"params": second.parameters()[2:], "lr": 0.002}]

    optimizer = dl.optim.Adam(groups(a, b), lr=1e-2)
    reference = per_parameter(dl.optim.Adam(groups(ta, tb), lr=1e-2))
    steps = {id(a): TrainStep(a, CE, optimizer), id(b): TrainStep(b, CE, optimizer)}
    for i in range(8):
        x, y = rng.standard_normal((8 - i % 3, 5)), rng.integers(0, 4, 8 - i % 3)
        net, twin = (a, ta) if i % 3 else (b, tb)
        if i == 5:
            explicit_step(net, CE, optimizer, x, y)
        else:
            steps[id(net)](x, y)
        explicit_step(twin, CE, reference, x, y)
        assert_same_weights(a, ta)
        assert_same_weights(b, tb)
    assert_same_states(optimizer, a.parameters() + b.parameters(), reference, ta.parameters() + tb.parameters())


# ----------------------------------------------------------------------------- 3. state round trips

@pytest.mark.parametrize("case", list(OPTIMIZERS))
def test_state_dict_saved_mid_training_continues_bit_for_bit(case):
    """Save after 3 steps, load (through a pickle) into a fresh optimizer on a copied
    network, continue both: identical weights; the saved dict is not aliased by either."""
    rng = np.random.default_rng(4)
    net = dl.MLP(5, [7, 6], 4, rng=3)
    optimizer = OPTIMIZERS[case](net.parameters())
    step = TrainStep(net, CE, optimizer)
    data = [(rng.standard_normal((8, 5)), rng.integers(0, 4, 8)) for _ in range(7)]
    for x, y in data[:3]:
        step(x, y)
    saved = optimizer.state_dict()
    snapshot = copy.deepcopy(saved)
    clone = net.copy()
    loaded = OPTIMIZERS[case](clone.parameters())
    loaded.load_state_dict(pickle.loads(pickle.dumps(saved)))
    clone_step = TrainStep(clone, CE, loaded)
    for i, (x, y) in enumerate(data[3:]):
        step(x, y)
        if i % 2:
            explicit_step(clone, CE, loaded, x, y)
        else:
            clone_step(x, y)
    assert_same_weights(net, clone)
    assert_same_states(optimizer, net.parameters(), loaded, clone.parameters())
    for index, state in snapshot["state"].items():
        for field, value in state.items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(saved["state"][index][field], value)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_network_and_optimizer_copied_together_mid_training_continue_alike(how):
    rng = np.random.default_rng(5)
    net = dl.MLP(5, [7, 6], 4, rng=3, dtype="float32")
    optimizer = dl.optim.Adam(net.parameters(), lr=1e-2)
    step = TrainStep(net, CE, optimizer)
    data = [(rng.standard_normal((8, 5)), rng.integers(0, 4, 8)) for _ in range(6)]
    for x, y in data[:3]:
        step(x, y)
    clone, cloned = copy.deepcopy((net, optimizer)) if how == "deepcopy" else pickle.loads(pickle.dumps((net, optimizer)))
    assert cloned.param_groups[0]["params"][0] is clone.parameters()[0]
    clone_step = TrainStep(clone, CE, cloned)
    for x, y in data[3:]:
        step(x, y)
        clone_step(x, y)
    assert_same_weights(net, clone)
    assert_same_states(optimizer, net.parameters(), cloned, clone.parameters())


def test_parameter_data_replaced_between_steps():
    """``set_weights`` (in place), then ``p.data`` of one parameter replaced by a new array
    (the group no longer tiles a flat array), then all replaced: always the per-parameter
    loop's numbers."""
    rng = np.random.default_rng(6)
    net, twin, optimizer, reference, step = adam_twins()
    new_weights = dl.MLP(5, [7, 6], 4, rng=9).get_weights()
    for i in range(9):
        x, y = rng.standard_normal((8, 5)), rng.integers(0, 4, 8)
        if i == 2:
            net.set_weights(new_weights)
            twin.set_weights(new_weights)
        if i == 4:
            for model in (net, twin):
                model.linears[1].weight.data = model.linears[1].weight.data.copy()
        if i == 6:
            for model in (net, twin):
                for p in model.parameters():
                    p.data = p.data.copy()
        step(x, y)
        explicit_step(twin, CE, reference, x, y)
        assert_same_weights(net, twin)
    assert_same_states(optimizer, net.parameters(), reference, twin.parameters())


def test_optimizer_state_edited_from_outside_is_gathered():
    """A state replaced for one parameter (``_replace``) and one deleted: the flat state
    must be regathered (or the loop used), as the per-parameter loop sees it."""
    rng = np.random.default_rng(7)
    net, twin, optimizer, reference, step = adam_twins()
    for i in range(8):
        x, y = rng.standard_normal((8, 5)), rng.integers(0, 4, 8)
        if i == 3:
            for opt, model in ((optimizer, net), (reference, twin)):
                p = model.parameters()[2]
                opt.state[p] = opt.state[p]._replace(exp_avg=opt.state[p].exp_avg * 0.5)
        if i == 5:
            for opt, model in ((optimizer, net), (reference, twin)):
                del opt.state[model.parameters()[1]]
        step(x, y)
        explicit_step(twin, CE, reference, x, y)
        assert_same_weights(net, twin)
    assert_same_states(optimizer, net.parameters(), reference, twin.parameters())


# ----------------------------------------------------------------------------- 4. PyTorch

TORCH_CASES = {
    "sgd": ("sgd", dict(lr=0.05)),
    "sgd-momentum-nesterov-wd": ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    "sgd-momentum-dampening": ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    "adam": ("adam", dict(lr=1e-2)),
    "adam-amsgrad-wd": ("adam", dict(lr=1e-2, amsgrad=True, weight_decay=1e-2)),
    "adamw": ("adamw", dict(lr=1e-2, weight_decay=0.1)),
}


@pytest.mark.parametrize("case", list(TORCH_CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_training_with_groups_and_lr_changes_matches_torch(dtype, case):
    kind, hyper = TORCH_CASES[case]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(8)
        net = dl.MLP(5, [16, 12], 3, activation="tanh", rng=2, dtype=dtype)
        model = dl.to_torch(net).to(torch.float32 if dtype == "float32" else torch.float64)
        ours = {"sgd": dl.optim.SGD, "adam": dl.optim.Adam, "adamw": dl.optim.AdamW}[kind]
        theirs = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]
        params, tensors = net.parameters(), list(model.parameters())
        optimizer = ours([{"params": params[:2]}, {"params": params[2:], "lr": hyper["lr"] / 2}], **hyper)
        topt = theirs([{"params": tensors[:2]}, {"params": tensors[2:], "lr": hyper["lr"] / 2}], **hyper)
        step = TrainStep(net, "mse", optimizer)
        for i, n in enumerate([16, 16, 7, 1, 16, 16, 9, 16, 16, 16]):
            x, y = rng.standard_normal((n, 5)).astype(dtype), rng.standard_normal((n, 3)).astype(dtype)
            if i == 5:  # a schedule's change of lr mid-training
                for group, tgroup in zip(optimizer.param_groups, topt.param_groups):
                    group["lr"] *= 0.3
                    tgroup["lr"] *= 0.3
            if i == 7:
                explicit_step(net, MSE, optimizer, x, y)
            else:
                step(x, y)
            topt.zero_grad()
            torch.nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
            topt.step()
    finally:
        torch.set_num_threads(threads)
    rtol, atol = (2e-5, 2e-6) if dtype == "float32" else (1e-12, 1e-14)
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- 5. fit

def max_error(output, target):
    return float(np.max(np.abs(output - target)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("case", ["adam", "sgd-nesterov-wd"])
def test_fit_fused_and_explicit_agree_and_metrics_are_the_recorded_outputs(dtype, shuffle, case):
    rng = np.random.default_rng(9)
    n, batch = 103, 10
    x, y = rng.standard_normal((n, 4)), rng.standard_normal((n, 2))
    kwargs = dict(loss="mse", epochs=3, batch_size=batch, verbose=0, shuffle=shuffle, rng=4,
                  metrics=["mse", "mae", "r2", max_error], validation_split=0.25)
    fused_net = dl.MLP(4, [9, 7], 2, rng=1, dtype=dtype)
    explicit_net = fused_net.copy()
    fused = dl.fit(fused_net, x, y, optimizer=OPTIMIZERS[case](fused_net.parameters()), **kwargs)
    outputs = []
    recorder = LambdaCallback(on_batch_end=lambda b, logs: outputs.append(recorder.state.trace.output.copy()))
    explicit = dl.fit(explicit_net, x, y, optimizer=OPTIMIZERS[case](explicit_net.parameters()),
                      callbacks=[recorder], **kwargs)
    assert fused.history == explicit.history
    assert_same_weights(fused_net, explicit_net)
    cut = int(np.ceil(n * 0.75))
    order_rng, steps = np.random.default_rng(4), -(-cut // batch)
    for e in range(3):
        order = order_rng.permutation(cut) if shuffle else np.arange(cut)
        seen = np.concatenate(outputs[e * steps:(e + 1) * steps]).astype(np.float64)
        target = y[:cut][order]
        for name in ("mse", "mae", "r2"):
            assert explicit.history[name][e] == pytest.approx(metrics.get(name)(seen, target), rel=1e-12)
        per_batch = [max_error(seen[i:i + batch], target[i:i + batch]) * len(seen[i:i + batch])
                     for i in range(0, cut, batch)]
        assert explicit.history["max_error"][e] == pytest.approx(sum(per_batch) / cut, rel=1e-13)


def test_fit_stopped_mid_epoch_scores_the_batches_it_had():
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((60, 4)), rng.integers(0, 3, 60)
    net = dl.MLP(4, [8], 3, rng=0)
    outputs, losses = [], []

    def on_batch_end(batch, logs):
        outputs.append(stopper.state.trace.output.copy())
        losses.append((logs["loss"], logs["size"]))
        if stopper.state.epoch == 1 and batch == 2:
            stopper.state.stop_training = True

    stopper = LambdaCallback(on_batch_end=on_batch_end)
    history = dl.fit(net, x, y, loss="cross_entropy", optimizer=dl.optim.Adam(net.parameters(), lr=1e-2),
                     epochs=5, batch_size=7, metrics=["accuracy"], callbacks=[stopper], rng=3, verbose=0,
                     validation_data=(x[:10], y[:10]))
    assert history.epoch == [0, 1] and len(outputs) == 9 + 3
    order = np.random.default_rng(3)
    order.permutation(60)
    rows = order.permutation(60)[:21]
    seen = np.concatenate(outputs[9:])
    assert history["accuracy"][1] == float(np.mean(np.argmax(seen, axis=1) == y[rows]))
    assert history["loss"][1] == pytest.approx(sum(v * s for v, s in losses[9:]) / 21, rel=1e-14)
    assert history["val_loss"][1] == pytest.approx(dl.evaluate(net, x[:10], y[:10], loss="cross_entropy")["loss"],
                                                   rel=1e-14)


def test_fit_never_overwrites_gradients_traces_or_gradients_callbacks_keep():
    """A batch callback keeps state.trace and state.gradients (no copy) with batches large
    enough for the reusable buffers, an epoch callback keeps every p.grad: all stay as they
    were, and the run equals one whose callbacks keep copies only."""
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((1100, 6)), rng.standard_normal((1100, 2))

    def run(keep):
        net = dl.MLP(6, [160, 160], 2, rng=2)
        assert 512 * 160 * 8 >= _buffers.REUSE_BYTES
        kept = []

        def batch_end(batch, logs):
            state = cb.state
            arrays = [state.trace.output, *state.trace.preactivations, *state.trace.activations,
                      *state.gradients.weights, *state.gradients.biases, *state.gradients.preactivations]
            kept.append((arrays if keep else None, [a.copy() for a in arrays]))

        def epoch_end(epoch, logs):
            grads = [p.grad for p in cb.state.net.parameters()]
            kept.append((grads if keep else None, [g.copy() for g in grads]))

        cb = LambdaCallback(on_batch_end=batch_end, on_epoch_end=epoch_end)
        dl.fit(net, x, y, optimizer=dl.optim.Adam(net.parameters(), lr=1e-3), epochs=2, batch_size=512,
               callbacks=[cb], rng=0, verbose=0)
        return net, kept

    net, kept = run(keep=True)
    twin, copies = run(keep=False)
    assert_same_weights(net, twin)
    for (arrays, snapshot), (_, expected) in zip(kept, copies):
        for a, b, c in zip(arrays, snapshot, expected):
            assert np.array_equal(a, b) and np.array_equal(b, c)


def test_epoch_callback_keeping_grads_in_the_fused_path():
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((50, 4)), rng.integers(0, 3, 50)
    net = dl.MLP(4, [8], 3, rng=0)
    twin = net.copy()
    kept = []
    keeper = LambdaCallback(on_epoch_end=lambda e, logs: kept.append(
        [(p.grad, p.grad.copy(), p.grad.T, p.grad.base) for p in net.parameters()]))
    dl.fit(net, x, y, loss="cross_entropy", optimizer=dl.optim.Adam(net.parameters(), lr=1e-2), epochs=3,
           batch_size=8, callbacks=[keeper], rng=1, verbose=0)
    dl.fit(twin, x, y, loss="cross_entropy", optimizer=dl.optim.Adam(twin.parameters(), lr=1e-2), epochs=3,
           batch_size=8, rng=1, verbose=0)
    assert_same_weights(net, twin)
    for epoch_kept in kept:
        for grad, snapshot, transposed, base in epoch_kept:
            assert np.array_equal(grad, snapshot) and np.array_equal(transposed, snapshot.T)
            assert base is not None
    assert not np.array_equal(kept[0][0][0], kept[2][0][0])


@pytest.mark.parametrize("size", [1, 4, 7])
def test_scores_over_blocks_equal_batch_by_batch_statistics(size, monkeypatch):
    rng = np.random.default_rng(13)
    n = 61
    output, target = rng.standard_normal((n, 3)), rng.standard_normal((n, 3))
    labels = rng.integers(0, 3, n)
    chosen = [metrics.get(name) for name in ("mse", "mae", "r2")]
    order = rng.permutation(n)
    for block in (1, 200, 32 * 1024):
        monkeypatch.setattr(epoch, "SCORE_BYTES", block)
        scores = epoch.Scores(chosen + [metrics.accuracy], [target] * 3 + [labels], size, 3, np.float64)
        scores.begin(order)
        stats = [None] * 4
        buffer = np.empty((size, 3))
        for start in range(0, n, size):
            rows = order[start:start + size]
            chunk = buffer[:len(rows)]
            chunk[...] = output[rows]
            scores.add(chunk)
            for i, (metric, t) in enumerate(zip(chosen + [metrics.accuracy], [target] * 3 + [labels])):
                stats[i] = metric.combine(stats[i], metric.statistics(output[rows], t[rows]))
        results = scores.results()
        for metric, s in zip(chosen + [metrics.accuracy], stats):
            assert results[metric.name] == pytest.approx(metric.result(s), rel=1e-12)


# ----------------------------------------------------------------------------- 6. bugs found here, fixed

def test_fit_with_batch_callbacks_clears_the_optimizers_gradients_as_the_fused_path_does():
    """A parameter the optimizer holds outside the network is cleared every batch on both of
    fit's paths. (The explicit path, taken when a batch callback is given, cleared only the
    network's parameters, so a stale gradient was applied at every step.)"""
    rng = np.random.default_rng(14)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((40, 2))

    def run(callbacks):
        net = dl.MLP(3, [5], 2, rng=1)
        extra = Parameter(np.zeros(4))
        extra.grad = np.ones(4)  # left from earlier work, e.g. another model's backward pass
        optimizer = dl.optim.SGD(net.parameters() + [extra], lr=0.1)
        dl.fit(net, x, y, optimizer=optimizer, epochs=2, batch_size=8, verbose=0, callbacks=callbacks)
        return net, extra

    fused_net, fused_extra = run(None)
    explicit_net, explicit_extra = run([LambdaCallback(on_batch_end=lambda batch, logs: None)])
    assert_same_weights(fused_net, explicit_net)
    np.testing.assert_array_equal(explicit_extra.data, fused_extra.data)


def test_a_shared_activation_layer_gives_the_explicit_backward_the_right_gradients():
    """One ActivationLayer object in several blocks (as one nn.ReLU is often reused in
    PyTorch) gives the explicit backward the right gradients: Sequential copies it per
    block. (It recorded f and h on the object, so block 0 was differentiated at block 1's
    values, silently.)"""
    rng = np.random.default_rng(15)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))

    def network(shared):
        act = dl.ActivationLayer("tanh")
        acts = (act, act) if shared else (act, dl.ActivationLayer("tanh"))
        return dl.Sequential([dl.Linear(3, 6, rng=0), acts[0], dl.Linear(6, 6, rng=1), acts[1],
                              dl.Linear(6, 2, rng=2)])

    separate, shared = network(False), network(True)
    expected = separate.backward(MSE.grad(separate.forward(x, record=True).output, y))
    fused = network(True)
    TrainStep(fused, "mse", dl.optim.SGD(fused.parameters(), lr=0.0)).gradients(x, y)
    np.testing.assert_allclose(fused.linears[0].weight.grad, expected.weights[0], rtol=1e-12)  # TrainStep: right
    got = shared.backward(MSE.grad(shared.forward(x, record=True).output, y))
    np.testing.assert_allclose(got.weights[0], expected.weights[0], rtol=1e-12)
    assert shared.layers[1] is shared.layers[3]  # one object in two places: each call has its own cache


@pytest.mark.parametrize("make", ["frombuffer", "ctypes", "torch"])
def test_flat_path_detection_accepts_arrays_whose_base_is_not_an_ndarray(make):
    """A parameter whose array was made from a buffer (np.frombuffer, ctypes, a torch
    tensor's .numpy()) has a base that is not an ndarray; the flat-path detection treats it
    as not flat. (It crashed with AttributeError in optim/flat.py's _span.)"""
    import ctypes

    if make == "frombuffer":
        first = np.frombuffer(bytearray(8 * 4), dtype=np.float64)
    elif make == "ctypes":
        first = np.ctypeslib.as_array((ctypes.c_double * 4)())
    else:
        first = torch.zeros(4, dtype=torch.float64).numpy()
    assert not isinstance(first.base, np.ndarray)
    params = [Parameter(first), Parameter(np.zeros(3))]
    reference = [Parameter(np.zeros(4)), Parameter(np.zeros(3))]
    gradient = np.arange(1.0, 8.0)
    for ps in (params, reference):
        ps[0].grad, ps[1].grad = gradient[:4], gradient[4:]
    per_parameter(dl.optim.SGD(reference, lr=0.1)).step()
    dl.optim.SGD(params, lr=0.1).step()
    for p, q in zip(params, reference):
        np.testing.assert_array_equal(p.data, q.data)


def test_mse_statistics_of_float32_outputs_are_accumulated_in_float64():
    """mse of float32 outputs and targets is accumulated in float64, as metrics.py promises.
    (The residual's dot product ran in float32: 1.7e-5 relative error over 100 000 values,
    and block-wise scoring no longer equalled batch-by-batch scoring.)"""
    rng = np.random.default_rng(16)
    output = (rng.standard_normal((100_000, 1)) * 0.01 + 1000).astype(np.float32)
    target = np.full((100_000, 1), 1000, np.float32)
    expected = float(np.mean(np.square(output.astype(np.float64) - target.astype(np.float64))))
    assert metrics.mse(output, target) == pytest.approx(expected, rel=1e-12)


def test_r2_of_a_constant_target_column_follows_the_documented_rule_whatever_the_grouping():
    """A constant target column scores 1 if predicted exactly, else 0, however the samples are
    grouped. (R2 took Σ (y − mean)² == 0 for constant; the rounded mean of 30 copies of 0.1
    made that sum 1e-33 and the score about -1e28.)"""
    n = 30
    output = np.full((n, 1), 0.11)
    target = np.full((n, 1), 0.1)
    statistics = None
    for start in range(n):
        statistics = metrics.r2.combine(statistics, metrics.r2.statistics(output[start:start + 1],
                                                                          target[start:start + 1]))
    assert metrics.r2.result(statistics) == 0.0  # one sample per batch: the documented value
    assert metrics.r2(output, target) == 0.0
