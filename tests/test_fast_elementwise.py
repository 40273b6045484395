"""Smooth activations computed block by block (``depthlab._fast.elementwise``): bitwise the
numbers of the whole-array computation, in every layout the engine hands them."""
import numpy as np
import pytest

import depthlab as dl
from depthlab._fast import elementwise as blocks
from depthlab.nn import activations

BLOCKED = [name for name in activations.names() if activations.get(name).blocked]
SPECIAL = np.array([0.0, -0.0, 1e-310, -1e-310, 1e-8, -1e-8, 0.5, -0.5, 3.0, -3.0, 20.0, -20.0, 40.0, -40.0,
                    700.0, -700.0, 1e300, -1e300, np.inf, -np.inf, np.nan])


def _batch(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal(shape) * rng.choice([0.1, 1.0, 5.0, 30.0], size=shape)).astype(dtype)
    flat = values.reshape(-1)
    with np.errstate(over="ignore"):                                    # 1e300 is inf in float32
        flat[::997][:SPECIAL.size] = SPECIAL[:flat[::997].size].astype(dtype)   # special values across the blocks
    return values


def _same(a, b):
    """Bitwise equal but for a NaN's sign (which SIMD and scalar loops set differently, and
    which means nothing): the same values, NaNs in the same places, the same signs of zero."""
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True) \
        and np.array_equal(np.signbit(a) & ~np.isnan(a), np.signbit(b) & ~np.isnan(b))


def test_the_smooth_built_ins_are_blocked_and_the_others_and_a_users_activation_are_not():
    assert set(BLOCKED) == {"sigmoid", "tanh", "gelu", "silu", "elu", "softplus", "selu"}
    custom = activations.Activation("cube", lambda f: f ** 3, lambda f, h: 3 * f * f, 1.0)
    assert not custom.blocked and not activations.get("relu").blocked


@pytest.mark.parametrize("size", [1, 64, blocks.BLOCK, blocks.BLOCK + 1, 2 * blocks.BLOCK + 63, 80_000, 10 ** 6 + 7])
def test_blocks_cover_the_array_once_start_on_whole_cache_lines_and_fit_the_block(size):
    cuts = blocks._cuts(size)
    assert cuts[0] == 0 and cuts[-1] == size
    lengths = np.diff(cuts)
    assert (lengths > 0).all() and (lengths <= blocks.BLOCK).all()
    assert all(c % 64 == 0 for c in cuts[:-1])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", BLOCKED)
@pytest.mark.parametrize("shape", [(1000, 80), (blocks.BLOCK + 1,), (3, blocks.BLOCK // 2 + 5, 3)])
def test_blocked_forward_and_backward_equal_the_whole_array_bit_for_bit(name, dtype, shape):
    act = activations.get(name)
    f = _batch(shape, dtype)
    grad_h = _batch(shape, dtype, seed=1)
    with np.errstate(all="ignore"):
        h = act.forward(f, np.empty_like(f))
        blocked_h = blocks.elementwise(act.forward, (f,), np.empty_like(f))
        assert _same(blocked_h, h)
        assert _same(blocks.elementwise(act.forward, (f,), None), h)            # a new array
        whole = act.backward(grad_h, f, h, np.empty_like(f))
        assert _same(blocks.elementwise(act.backward, (grad_h, f, h), np.empty_like(f)), whole)
        in_place = grad_h.copy()                                               # dL/df over dL/dh
        assert blocks.elementwise(act.backward, (in_place, f, h), in_place) is in_place
        assert _same(in_place, whole)
        if act.function_out is not None:                                       # h over f (tanh, sigmoid)
            over = f.copy()
            assert blocks.elementwise(act.function_out, (over,), over) is over
            assert _same(over, h)


def test_other_layouts_and_small_arrays_go_whole_to_the_function():
    calls = []

    def double(x, out):
        calls.append(x.shape)
        return np.multiply(x, 2, out=out)

    big = np.ones((400, 100))
    assert _same(blocks.elementwise(double, (big.T,), None), 2 * big.T) and calls == [(100, 400)]   # not C-contiguous
    calls.clear()
    out = np.empty((100, 400)).T                                                  # out not C-contiguous
    assert blocks.elementwise(double, (big,), out) is out and _same(out, 2 * big) and calls == [(400, 100)]
    calls.clear()
    blocks.elementwise(double, (np.ones(blocks.BLOCK),), None)
    assert calls == [(blocks.BLOCK,)]
    calls.clear()
    blocks.elementwise(double, (big,), None)
    assert len(calls) == 3 and sum(n for (n,) in calls) == big.size


def test_an_answer_the_function_allocates_is_copied_into_the_output():
    x = np.arange(50_000, dtype=float)
    out = np.zeros_like(x)
    assert blocks.elementwise(lambda v, o: v + 1.0, (x,), out) is out
    assert _same(out, x + 1.0)


def test_an_error_in_a_block_reaches_the_caller_under_its_error_state():
    f = np.zeros(50_000)
    f[-1] = 1e300
    act = activations.get("gelu")
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        blocks.elementwise(act.backward, (np.ones_like(f), f, f), np.empty_like(f))   # f·f overflows


@pytest.mark.parametrize("name", BLOCKED)
def test_a_probe_and_a_fit_read_the_same_numbers_as_without_blocks(name, monkeypatch):
    from depthlab.nn import layers
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 3))
    y = rng.integers(0, 2, 1000)

    def run():
        net = dl.MLP(3, [40, 40, 40], 2, activation=name, init="xavier_normal", rng=1)
        report = dl.probe(net, x)
        dl.fit(net, x, y, loss="cross_entropy", optimizer="adam", epochs=1, batch_size=500, verbose=0, rng=2)
        return report, [p.data.copy() for p in net.parameters()]

    blocked_report, blocked_params = run()
    monkeypatch.setattr(layers, "elementwise", lambda function, arrays, out: function(*arrays, out))
    whole_report, whole_params = run()
    assert [vars(s) for s in blocked_report.layers] == [vars(s) for s in whole_report.layers]
    assert all(_same(a, b) for a, b in zip(blocked_params, whole_params))
