"""A recorded pass in halves of the batch (depthlab.nn.halves, Engine._forward_halves) against
one whole pass: the same numbers, whole arrays, its refusals; and the pair of threads under it."""
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import depthlab as dl
from depthlab._fast import pair
from depthlab.nn.halves import ALIGN, halves


def blas_threads() -> list[int]:
    return [entry["num_threads"] for entry in threadpool_info() if entry["user_api"] == "blas"]


def cube() -> dl.activations.Activation:
    """A user's activation without function_out (NumPy allocates its outputs: the halves are joined by a copy)."""
    return dl.activations.Activation("cube", lambda f: f ** 3, lambda f, h: 3 * f ** 2, gain=1.0)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())


def passes(net, x, g, **halves):
    trace = net.forward(x, record=True, detached=True, **halves)
    grads = net.backward(g, trace=trace, parameter_grads=False)
    return trace, grads


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "gelu", "sigmoid", "identity", "cube"])
@pytest.mark.parametrize("n", [2, 3, 40, 333, 1001])
def test_halves_give_the_numbers_of_one_pass_float64(activation, n):
    act = cube() if activation == "cube" else activation
    net = dl.MLP(3, [24] * 6, 2, activation=act, init="xavier_normal", bias_init=0.1, rng=0)
    rng = np.random.default_rng(n)
    x, g = rng.standard_normal((n, 3)), rng.standard_normal((n, 2))
    with threadpool_limits(1, user_api="blas"):
        whole, whole_grads = passes(net, x, g)
        parts, part_grads = passes(net, x, g, halves=True)
    assert len(parts.layer_outputs) == len(whole.layer_outputs) == len(net.layers)
    # halves of a row or a few: BLAS's vector kernels may round otherwise
    check = np.testing.assert_array_equal if n >= 2 * ALIGN else close
    for a, b in zip(parts.layer_outputs, whole.layer_outputs):
        assert a.shape == b.shape
        check(a, b)
    for a, b in zip(part_grads.layer_outputs, whole_grads.layer_outputs):
        check(a, b)
    check(part_grads.input, whole_grads.input)
    assert part_grads.weights is None and part_grads.parameters is None


def test_halves_float32_agree_to_rounding():
    net = dl.MLP(5, [64] * 8, 3, activation="tanh", dtype="float32", rng=1)
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((500, 5)).astype(np.float32), rng.standard_normal((500, 3)).astype(np.float32)
    whole, whole_grads = passes(net, x, g)
    parts, part_grads = passes(net, x, g, halves=True)
    for a, b in zip(parts.layer_outputs + part_grads.layer_outputs, whole.layer_outputs + whole_grads.layer_outputs):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_halves_meet_at_a_multiple_of_align():
    assert halves(2) == (slice(0, 1), slice(1, 2))
    assert halves(31) == (slice(0, 15), slice(15, 31))
    assert halves(32) == (slice(0, ALIGN), slice(ALIGN, 32))
    first, second = halves(1000)
    assert first.stop % ALIGN == 0 and first.stop <= 500 < first.stop + ALIGN and second.stop == 1000
    with pytest.raises(ValueError, match="at least 2"):
        halves(1)


def test_a_halves_trace_holds_whole_arrays_which_the_next_pass_reuses():
    net = dl.MLP(1, [80] * 4, 1, activation="gelu", rng=0)
    x = np.random.default_rng(0).standard_normal((1000, 1))
    trace = net.forward(x, record=True, detached=True, halves=True)
    arrays = [a for a in trace.layer_outputs if a.nbytes >= 1 << 18]
    assert arrays and all(a.base is None and a.flags.c_contiguous for a in arrays)   # not copies of halves
    addresses = {a.ctypes.data for a in arrays}
    del trace, arrays
    again = net.forward(x, record=True, detached=True, halves=True)
    assert addresses <= {a.ctypes.data for a in again.layer_outputs}      # the same memory, reused


def test_watch_sees_each_half_from_its_own_thread():
    net = dl.MLP(2, [32] * 3, 1, activation="tanh", rng=0)
    x = np.random.default_rng(0).standard_normal((200, 2))
    seen, threads = {}, set()

    def watch(i, rows, half):
        seen[(i, half)] = rows.copy()
        threads.add(threading.get_ident())

    trace = net.forward(x, record=True, detached=True, watch=watch, halves=True)
    first, second = halves(200)
    for i, output in enumerate(trace.layer_outputs):
        np.testing.assert_array_equal(seen[(i, 0)], output[first])
        np.testing.assert_array_equal(seen[(i, 1)], output[second])
    assert len(threads) == (2 if pair.parallel() else 1)
    grads_seen = {}
    net.backward(np.ones((200, 1)), trace=trace, parameter_grads=False,
                 watch=lambda i, rows, half: grads_seen.setdefault((i, half), rows.shape[0]))
    assert {grads_seen[(0, 0)], grads_seen[(0, 1)]} == {first.stop, 200 - first.stop}


def test_halves_refusals_name_the_fix():
    net = dl.MLP(2, [8, 8], 1, rng=0)
    x = np.ones((10, 2))
    with pytest.raises(TypeError, match="halves must be True or False"):
        net.forward(x, record=True, halves="yes")
    with pytest.raises(ValueError, match="record=True"):
        net.forward(x, halves=True)
    with pytest.raises(ValueError, match="at least 2 samples"):
        net.forward(np.ones((1, 2)), record=True, halves=True)
    trace = net.forward(x, record=True, detached=True, halves=True)
    with pytest.raises(ValueError, match="parameter_grads=False"):
        net.backward(np.ones((10, 1)), trace=trace)
    net.forward(x, record=True, halves=True)           # the network's last pass
    with pytest.raises(ValueError, match="parameter_grads=False"):
        net.backward(np.ones((10, 1)))
    assert all(p.grad is None for p in net.parameters())
    normed = dl.Sequential(dl.Linear(2, 8, rng=0), dl.BatchNorm(8), "relu", dl.Linear(8, 1, rng=0))
    with pytest.raises(ValueError, match=r"layers\[1\].*not rowwise"):
        normed.forward(x, record=True, halves=True)
    assert normed.forward(x, record=True, halves=False).output.shape == (10, 1)


def test_a_subclass_with_its_own_forward_is_not_rowwise_unless_it_says_so():
    class Centered(dl.Linear):                       # mixes the batch's rows
        def forward(self, x, cache):
            return super().forward(x - x.mean(axis=0), cache)

    class Scaled(dl.Linear):
        rowwise = True

        def forward(self, x, cache):
            return 2.0 * super().forward(x, cache)

    assert dl.Linear.rowwise and dl.ActivationLayer.rowwise and not Centered.rowwise and Scaled.rowwise
    assert not dl.Layer.rowwise and not dl.BatchNorm.rowwise and not dl.Dropout.rowwise
    x = np.random.default_rng(0).standard_normal((64, 3))
    with pytest.raises(ValueError, match="not rowwise"):
        dl.Sequential(Centered(3, 4, rng=0)).forward(x, record=True, halves=True)
    scaled = dl.Sequential(Scaled(3, 4, rng=0), "relu")
    np.testing.assert_array_equal(scaled.forward(x, record=True, halves=True).output, scaled(x))

    class Pooled(dl.ActivationLayer):                 # its backward mixes the batch's rows
        def backward(self, grad_h, cache):
            return super().backward(grad_h, cache).mean(axis=0, keepdims=True) + 0 * grad_h

    assert not Pooled.rowwise
    patched = dl.Sequential(dl.Linear(3, 4, rng=0), "tanh")
    patched.layers[1].forward = lambda f, cache: np.tanh(f)          # a pass of its own, on the instance
    with pytest.raises(ValueError, match=r"layers\[1\].*not rowwise"):
        patched.forward(x, record=True, halves=True)


def test_probe_numbers_do_not_depend_on_halves(monkeypatch):
    import depthlab.signal.probe as probe_module

    net = dl.MLP(1, [80] * 12, 1, activation="gelu", init="he_normal", rng=3)
    x = np.random.default_rng(4).standard_normal((1000, 1))
    with threadpool_limits(1, user_api="blas"):
        with_grads = dl.probe(net, x).to_dict()["layers"]
        in_halves = dl.probe(net, x, parameter_grads=False).to_dict()["layers"]
        monkeypatch.setattr(probe_module, "_halves_pay", lambda net, n: False)
        whole = dl.probe(net, x, parameter_grads=False).to_dict()["layers"]
    for a, b, c in zip(with_grads, in_halves, whole):
        for key, value in a.items():
            if key in ("weight_grad_norm",):
                continue
            assert b[key] == value == c[key], key


def test_run_pair_raises_either_error_and_keeps_the_error_settings():
    def boom(message):
        raise RuntimeError(message)

    with pytest.raises(RuntimeError, match="second"):
        pair.run_pair(lambda: None, lambda: boom("second"))
    with pytest.raises(RuntimeError, match="first"):
        pair.run_pair(lambda: boom("first"), lambda: boom("second"))
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        pair.run_pair(lambda: None, lambda: np.exp(np.full(4, 1000.0)))
    done = []
    pair.run_pair(lambda: done.append(1), lambda: done.append(2))
    assert sorted(done) == [1, 2]


def test_blas_is_held_at_one_thread_while_a_pair_runs_then_put_back():
    with threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        inside = []
        with pair.one_blas_thread():
            with pair.one_blas_thread():                       # nested holders share the limit
                inside.append(blas_threads())
            inside.append(blas_threads())
        assert all(set(counts) == {1} for counts in inside)
        assert blas_threads() == before


def test_halves_with_the_fast_paths_off_join_fresh_arrays():
    net = dl.MLP(2, [40] * 5, 1, activation="elu", rng=2)
    rng = np.random.default_rng(5)
    x, g = rng.standard_normal((300, 2)), rng.standard_normal((300, 1))
    with threadpool_limits(1, user_api="blas"):
        whole, whole_grads = passes(net, x, g)
        with dl.set_fast_paths(False):
            parts, part_grads = passes(net, x, g, halves=True)
    for a, b in zip(parts.layer_outputs + part_grads.layer_outputs, whole.layer_outputs + whole_grads.layer_outputs):
        np.testing.assert_array_equal(a, b)


def test_a_probe_in_halves_of_a_network_that_overflows_reports_as_one_pass_does():
    net = dl.MLP(1, [80] * 30, 1, init=1e3, rng=0)            # σ² = 1000: inf by layer ~10
    x = np.random.default_rng(0).standard_normal((1000, 1))
    with threadpool_limits(1, user_api="blas"):
        one = dl.probe(net, x)
        two = dl.probe(net, x, parameter_grads=False)
    assert (one.verdict, one.verdict_layer, one.diagnosis) == (two.verdict, two.verdict_layer, two.diagnosis)
    for a, b in zip(one.layers, two.layers):
        np.testing.assert_array_equal([a.preactivation_std, a.grad_preactivation_std, a.dead_fraction],
                                      [b.preactivation_std, b.grad_preactivation_std, b.dead_fraction])


def test_a_ctrl_c_while_the_second_half_runs_is_raised_once_it_has_ended():
    import _thread
    import signal
    import time

    finished = threading.Event()

    def second():
        time.sleep(0.3)
        finished.set()

    thread = threading.Thread(target=second)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        thread.start()
        threading.Timer(0.05, _thread.interrupt_main).start()       # Ctrl-C while the first waits
        with pytest.raises(KeyboardInterrupt):
            pair._join(thread)
        assert finished.is_set() and not thread.is_alive()         # not left inside NumPy as Python ends
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_probe_s_suggested_fix_is_computed_once_per_activation_function():
    from depthlab.signal import probe as probe_module

    def scaled_tanh(scale):
        return dl.activations.Activation("mine", lambda f: scale * np.tanh(f),
                                         lambda f, h: scale * (1 - np.tanh(f) ** 2), gain=1.0)

    first, second = probe_module._critical_variance(scaled_tanh(1.0)), probe_module._critical_variance(scaled_tanh(2.0))
    assert first == pytest.approx(1.0, rel=1e-6) and second == pytest.approx(0.25, rel=1e-6)   # σ_w² s² = 1 at q* = 0
    assert probe_module._critical_variance(scaled_tanh(1.0)) == first
    assert probe_module._function_key(dl.activations.get("gelu").derivative) == \
        probe_module._function_key(dl.activations.get("gelu").derivative)
