"""Residual blocks and normalization layers on the fast paths against the plain reference,
through the public switch ``dl.set_fast_paths`` (as tests/test_fast_switch.py does for MLPs),
and float32 kept float32 through a training step of a residual network."""
import numpy as np
import pytest

import depthlab as dl

RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 6)) * 1.5 + 0.3
LABELS = RNG.integers(0, 3, 64)

NETWORKS = {
    "preact-plain": lambda: dl.ResMLP(6, 10, 3, 3, rng=1),
    "preact-batch": lambda: dl.ResMLP(6, 10, 3, 3, norm="batch", rng=2),
    "preact-layer": lambda: dl.ResMLP(6, 10, 3, 3, norm="layer", rng=3),
    "postact-batch": lambda: dl.ResMLP(6, 10, 2, 3, block="postact", norm="batch", rng=4),
    "postact-layer-scaled": lambda: dl.ResMLP(6, 10, 4, 3, block="postact", norm="layer",
                                              residual_scale="1/sqrt(depth)", rng=5),
    "learnable-scale": lambda: dl.ResMLP(6, 10, 2, 3, residual_scale=0.5, learnable_scale=True, rng=6),
    # a shortcut, a sublayer without a fast variant (dropout, in train mode), norms without affine
    # parameters, a tanh branch end (it keeps its output), a residual block nested in a branch
    "mixed": lambda: dl.Sequential(
        dl.Residual(dl.Linear(6, 9, rng=8), dl.Dropout(0.3, rng=0), dl.LayerNorm(9, elementwise_affine=False), "tanh",
                    shortcut=dl.Linear(6, 9, rng=9), scale=0.5),
        dl.BatchNorm(9, affine=False),
        dl.Residual(dl.Residual(dl.Linear(9, 9, rng=11), "relu"), dl.BatchNorm(9), dl.Linear(9, 9, rng=12), "tanh"),
        dl.Linear(9, 3, rng=10)),
}


def _train(name: str, fast: bool, optimizer: str):
    net = NETWORKS[name]()
    opt = dl.optim.get(optimizer, net.parameters(), lr=0.05)
    with dl.set_fast_paths(fast):
        history = dl.fit(net, X, LABELS, loss="cross_entropy", optimizer=opt, epochs=3, batch_size=16, verbose=0,
                         rng=2)
    return net, history


# Adam only without batch norm: a bias before a batch norm has a true gradient of 0, and Adam
# turns the rounding noise there (different sums on the two paths) into steps of size lr.
CASES = [(name, "sgd") for name in NETWORKS] + [(name, "adam") for name in ("preact-plain", "preact-layer",
                                                                             "learnable-scale")]


@pytest.mark.parametrize("name, optimizer", CASES)
def test_training_on_the_fast_and_plain_paths_agree(name, optimizer):
    fast_net, fast_history = _train(name, True, optimizer)
    plain_net, plain_history = _train(name, False, optimizer)
    fast_state, plain_state = fast_net.state_dict(), plain_net.state_dict()
    assert list(fast_state) == list(plain_state)
    for key in fast_state:   # every parameter and running statistic
        np.testing.assert_allclose(fast_state[key], plain_state[key], rtol=1e-11, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(fast_history.history["loss"], plain_history.history["loss"], rtol=1e-11)
    first = next(iter(fast_state))
    assert not np.allclose(fast_state[first], NETWORKS[name]().state_dict()[first])   # training moved it


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", ["preact-batch", "preact-layer", "learnable-scale", "mixed"])
def test_trace_and_backward_agree_with_the_plain_path(name, mode):
    x = np.random.default_rng(3).standard_normal((4000, 6))   # large enough for the reused buffers
    grad_output = np.random.default_rng(4).standard_normal((4000, 3))
    results = []
    for fast in (True, False):
        net = NETWORKS[name]()
        if mode == "eval":
            with net.mode(True):
                net.forward(x)          # running statistics of one batch
                net.forward(x[::-1] * 2)
            net.eval()
        with dl.set_fast_paths(fast):
            trace = net.forward(x, record=True)
            grads = net.backward(grad_output)
            net.forward(x * 0.5, record=True)     # the first trace is held: its arrays stay as they were
            net.zero_grad()
            net.backward(grad_output * 2)
            third = net.forward(x * 0.25, record=True)   # the second is not: its arrays may be reused
            third_grads = net.backward(grad_output * 3)
        results.append((trace, grads, third, third_grads, net.state_dict()))
    (trace, grads, third, third_grads, state), (trace_p, grads_p, third_p, third_grads_p, state_p) = results
    for a, b in zip(trace.layer_outputs + third.layer_outputs, trace_p.layer_outputs + third_p.layer_outputs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    for ours, plain in ((grads, grads_p), (third_grads, third_grads_p)):
        for a, b in zip(ours.layer_outputs + [ours.input] + ours.parameters,
                        plain.layer_outputs + [plain.input] + plain.parameters):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)
    for key in state:
        np.testing.assert_allclose(state[key], state_p[key], rtol=1e-12, atol=1e-14, err_msg=key)


def test_dL_dx_matches_central_differences_on_the_fast_path():
    net = NETWORKS["mixed"]().eval()   # dropout off: a deterministic function of x
    x = np.random.default_rng(5).standard_normal((5, 6))
    weights = np.random.default_rng(6).standard_normal((5, 3))
    trace = net.forward(x, record=True)
    grads = net.backward(weights)
    step = 1e-6
    numeric = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        shifted = x.copy()
        shifted[index] += step
        up = np.sum(net(shifted) * weights)
        shifted[index] -= 2 * step
        numeric[index] = (up - np.sum(net(shifted) * weights)) / (2 * step)
    np.testing.assert_allclose(grads.input, numeric, rtol=1e-6, atol=1e-8)
    assert trace.output.shape == (5, 3)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_float32_stays_float32_through_a_training_step(norm, fast):
    net = dl.ResMLP(6, 10, 2, 3, norm=norm, rng=0, dtype="float32")
    x = X.astype(np.float32)
    step = dl.TrainStep(net, "cross_entropy", dl.optim.Adam(net.parameters(), lr=1e-3))
    with dl.set_fast_paths(fast):
        for _ in range(2):
            step(x, LABELS)
        assert step.output.dtype == np.float32
        for name, p in net.named_parameters():
            assert p.data.dtype == np.float32 and p.grad.dtype == np.float32, name
        for name, value in net.named_buffers():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32, name
        trace = net.forward(x, record=True)
        grads = net.backward(np.ones((64, 3), np.float32))
        arrays = [*trace.layer_outputs, *grads.layer_outputs, grads.input, *grads.parameters]
        for block, h in zip(net.layers[1:3], trace.layer_outputs):   # every activation inside the blocks
            branch = block.branch.forward(h, record=True)
            arrays += [*branch.layer_outputs, *block.branch.backward(np.ones_like(h)).layer_outputs]
    assert all(a.dtype == np.float32 for a in arrays), sorted({str(a.dtype) for a in arrays})


class PassThrough(dl.Layer):
    """The identity, with a fast variant that hands back the very arrays it was given."""

    keeps_output = False

    def forward(self, x, cache):
        return x

    def backward(self, grad_output, cache):
        return grad_output

    def forward_fast(self, x, work):
        return x

    def backward_fast(self, grad_output, work):
        return grad_output


@pytest.mark.parametrize("shortcut", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_a_branch_that_returns_its_input_is_never_written_over(scale, shortcut):
    """shortcut(h) + s·F(h) with F(h) = h itself: the sum may not go in place of F(h) (h, which
    the shortcut keeps), nor dL/dh in place of the branch's dL/d(input) (dL/d(output) itself)."""
    results = []
    for fast in (True, False):
        skip = dl.Linear(4, 4, rng=2) if shortcut else None
        net = dl.Sequential(dl.Linear(6, 4, rng=0), dl.Residual(PassThrough(), scale=scale, shortcut=skip),
                            dl.Linear(4, 3, rng=1))
        step = dl.TrainStep(net, "cross_entropy", dl.optim.SGD(net.parameters(), lr=0.1))
        with dl.set_fast_paths(fast):
            for _ in range(3):
                step(X, LABELS)
            trace = net.forward(X, record=True)
        results.append([p.data.copy() for p in net.parameters()])
        h = trace.layer_outputs[0]
        np.testing.assert_allclose(trace.layer_outputs[1], (skip(h) if shortcut else h) + scale * h, rtol=1e-14)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def _one_sample_step():
    net = dl.ResMLP(6, 10, 2, 3, norm="batch", rng=0)
    dl.TrainStep(net, "cross_entropy", dl.optim.SGD(net.parameters(), lr=0.1))(X[:1], LABELS[:1])


def _mismatched_width_trace():
    net = dl.Sequential(dl.Linear(6, 9, rng=0), dl.Residual(dl.BatchNorm(9), "relu", dl.Linear(9, 4, rng=1),
                                                            shortcut=dl.Linear(9, 5, rng=2)))
    net.forward(X, record=True)


def _layer_norm_width_trace():
    dl.Sequential(PassThrough(), dl.LayerNorm(4)).forward(X, record=True)   # x has 6 features


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("action, pattern", [
    (_one_sample_step, r"more than 1 value per feature.*net.eval\(\)"),
    (_mismatched_width_trace, r"the branch gives shape \(64, 4\) but the shortcut \(64, 5\)"),
    (_layer_norm_width_trace, r"LayerNorm\(4.*expects inputs of shape \(N, 4\), got \(64, 6\)"),
])
def test_bad_input_is_refused_alike_on_both_paths(action, pattern, fast):
    with dl.set_fast_paths(fast), pytest.raises(ValueError, match=pattern):
        action()


@pytest.mark.parametrize("fast", [True, False])
def test_a_refused_non_finite_training_step_leaves_the_running_statistics(fast):
    net = dl.Sequential(dl.Linear(6, 4, rng=0), dl.BatchNorm(4), dl.Linear(4, 3, rng=1))
    step = dl.TrainStep(net, "cross_entropy", dl.optim.SGD(net.parameters(), lr=0.1))
    bad = X.copy()
    bad[0, 0] = np.nan
    with dl.set_fast_paths(fast):
        step(X, LABELS)
        bn = net.layers[1]
        before = bn.running_mean.copy(), bn.running_var.copy(), bn.num_batches_tracked
        with pytest.raises((ValueError, FloatingPointError), match="NaN|non-finite"):
            step(bad, LABELS)
    np.testing.assert_array_equal(bn.running_mean, before[0])
    np.testing.assert_array_equal(bn.running_var, before[1])
    assert bn.num_batches_tracked == before[2] == 1
