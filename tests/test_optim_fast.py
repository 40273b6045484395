"""Optimizer.step's fast paths: bit-for-bit the reference rules, and the step's bookkeeping.

``rules.FAST_RULES`` gives plain SGD and Adam shorter updates (scalars as 0-d arrays, no
temporaries, shared scratch arrays). Here each optimizer is compared with its reference
rule (``rules.sgd_update``, ``rules.adam_update``) applied by hand, step by step, with
``assert_array_equal``: the same operations in the same order must give the same bits.
"""
import copy
import pickle
import sys

import numpy as np
import pytest

import depthlab as dl
from depthlab import optim
from depthlab.optim import rules

REFERENCE = {"sgd": (rules.sgd_init, rules.sgd_update), "adam": (rules.adam_init, rules.adam_update),
             "adamw": (rules.adam_init, rules.adam_update)}
FAST_CASES = [
    ("sgd", {"lr": 0.05}), ("sgd", {"lr": 0.05, "maximize": True}),
    ("adam", {}), ("adam", {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-3}),
    ("adam", {"weight_decay": 0.1, "decoupled_weight_decay": True}), ("adamw", {}),
]


def _arrays(seed, dtype):
    """Small, scalar, repeated (shared scratch), above rules._BLOCK (contiguous or not) and
    strided parameters; the same seed gives the same values and layouts."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(3, 4)).astype(dtype), rng.normal(size=5).astype(dtype), np.array(0.5, dtype),
            rng.normal(size=(3, 4)).astype(dtype), rng.normal(size=(200, 300)).astype(dtype),
            rng.normal(size=(300, 200)).astype(dtype).T, rng.normal(size=(4, 6)).astype(dtype)[:, ::2]]


def _reference(name, hyper_group, arrays, grad_steps):
    """The reference rule applied by hand: fresh scratch arrays, the group as ``hyper``."""
    init, update = REFERENCE[name]
    params = [a.copy() for a in arrays]
    states = [init(p, hyper_group) for p in params]
    for grads in grad_steps:
        for i, (p, g) in enumerate(zip(params, grads)):
            states[i] = update(p, g, states[i], hyper_group, [np.empty_like(p) for _ in range(3)])
    return params, states


def _assert_same(params, states, ref_params, ref_states):
    for p, r in zip(params, ref_params):
        assert p.data.dtype == r.dtype
        np.testing.assert_array_equal(p.data, r)
    for state, ref in zip(states, ref_states):
        assert type(state) is type(ref) and state.step == ref.step
        for value, expected in zip(state, ref):
            if isinstance(expected, np.ndarray):
                assert value.dtype == expected.dtype
                np.testing.assert_array_equal(value, expected)
            else:
                assert value == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "hyper"), FAST_CASES, ids=[f"{n}-{h}" for n, h in FAST_CASES])
def test_fast_rules_match_the_reference_rules_bit_for_bit(name, hyper, dtype, rng):
    arrays = _arrays(7, dtype)
    grad_steps = [[rng.normal(size=a.shape).astype(dtype) for a in arrays] for _ in range(12)]
    params = [dl.Parameter(a) for a in _arrays(7, dtype)]
    assert not params[5].data.flags.c_contiguous and not params[6].data.flags.c_contiguous
    opt = optim.OPTIMIZERS[name](params, **hyper)
    # white box: the fast rule is the one that runs (else this test would compare nothing new)
    assert opt._rule(opt.param_groups[0])[0] is rules.FAST_RULES[opt.update].update
    originals = [[g.copy() for g in grads] for grads in grad_steps]
    for grads in grad_steps:
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
    for grads, kept in zip(grad_steps, originals):  # the gradients are only read
        for g, k in zip(grads, kept):
            np.testing.assert_array_equal(g, k)
    ref_params, ref_states = _reference(name, opt.param_groups[0], arrays, grad_steps)
    _assert_same(params, [opt.state[p] for p in params], ref_params, ref_states)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_parameters_are_updated_in_place_even_when_not_contiguous(name, rng):
    base = rng.normal(size=(300, 200))
    before = base.T.copy()
    param = dl.Parameter(base.T)  # 60000 elements in Fortran order
    grad = rng.normal(size=(200, 300))
    opt = optim.OPTIMIZERS[name]([param], lr=0.1)
    param.grad = grad
    opt.step()
    assert np.shares_memory(param.data, base)
    ref_params, _ = _reference(name, opt.param_groups[0], [before], [[grad]])
    np.testing.assert_array_equal(base.T, ref_params[0])


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_mixed_dtypes_in_one_group(name, rng):
    arrays = [rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(3, 2)), rng.normal(size=4)]
    grad_steps = [[rng.normal(size=a.shape).astype(a.dtype) for a in arrays] for _ in range(5)]
    params = [dl.Parameter(a.copy()) for a in arrays]
    opt = optim.OPTIMIZERS[name](params, lr=0.1)
    for grads in grad_steps:
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
    ref_params, ref_states = _reference(name, opt.param_groups[0], arrays, grad_steps)
    _assert_same(params, [opt.state[p] for p in params], ref_params, ref_states)


SCHEDULES = {
    # step -> changes to the group before that step: fast → reference → fast paths and back
    "sgd": {2: {"lr": 0.2}, 4: {"momentum": 0.9}, 6: {"momentum": 0.0}, 7: {"maximize": True},
            8: {"weight_decay": 0.1}, 9: {"weight_decay": 0.0, "lr": 0.01}},
    "adam": {2: {"lr": 0.02}, 3: {"amsgrad": True}, 5: {"amsgrad": False}, 6: {"betas": (0.8, 0.99), "eps": 1e-4},
             7: {"weight_decay": 0.1}, 8: {"decoupled_weight_decay": True}, 9: {"maximize": True},
             10: {"maximize": False, "weight_decay": 0.0}},
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_hyperparameter_changes_between_steps_take_effect(name, rng):
    arrays = [rng.normal(size=(3, 4)), rng.normal(size=4)]
    grad_steps = [[rng.normal(size=a.shape) for a in arrays] for _ in range(12)]
    params = [dl.Parameter(a.copy()) for a in arrays]
    opt = optim.OPTIMIZERS[name](params, lr=0.05)
    init, update = REFERENCE[name]
    hyper = {key: value for key, value in opt.param_groups[0].items() if key != "params"}
    ref = [a.copy() for a in arrays]
    ref_states = [init(p, hyper) for p in ref]
    for step, grads in enumerate(grad_steps):
        opt.param_groups[0].update(SCHEDULES[name].get(step, {}))
        hyper.update(SCHEDULES[name].get(step, {}))
        for i, (p, g) in enumerate(zip(params, grads)):
            p.grad = g
            ref_states[i] = update(ref[i], g, ref_states[i], hyper, [np.empty_like(g) for _ in range(3)])
        opt.step()
        _assert_same(params, [opt.state[p] for p in params], ref, ref_states)


def test_schedules_drive_the_fast_path(rng):
    arrays = [rng.normal(size=(3, 4))]
    grad_steps = [[rng.normal(size=(3, 4))] for _ in range(10)]
    params = [dl.Parameter(arrays[0].copy())]
    opt = optim.Adam(params, lr=0.1)
    schedule = optim.ExponentialLR(opt, gamma=0.5)
    ref, ref_state, hyper = arrays[0].copy(), rules.adam_init(arrays[0], opt.param_groups[0]), dict(opt.defaults)
    for grads in grad_steps:
        params[0].grad = grads[0]
        hyper["lr"] = opt.param_groups[0]["lr"]
        ref_state = rules.adam_update(ref, grads[0], ref_state, hyper, [np.empty_like(ref) for _ in range(2)])
        opt.step()
        schedule.step()
    np.testing.assert_array_equal(params[0].data, ref)
    assert opt.param_groups[0]["lr"] == 0.1 * 0.5**10


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_step_keeps_no_reference_to_gradients(name, rng):
    """A network reuses a gradient's buffer only when nothing else holds it (depthlab._buffers)."""
    param = dl.Parameter(rng.normal(size=(5, 3)))
    opt = optim.OPTIMIZERS[name]([param])
    reused = rng.normal(size=(5, 3))
    for grad in (reused, reused, reused.copy(), reused):  # the same array again, or a new one
        param.grad = grad
        before = sys.getrefcount(grad)
        opt.step()
        assert sys.getrefcount(grad) == before
        param.grad = None


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_copies_and_pickles_continue_identically(name, rng):
    params = [dl.Parameter(rng.normal(size=(3, 4))), dl.Parameter(rng.normal(size=3))]
    opt = optim.OPTIMIZERS[name](params, lr=0.05)
    grad_steps = [[rng.normal(size=p.shape) for p in params] for _ in range(8)]
    for grads in grad_steps[:4]:
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
    copies = [pickle.loads(pickle.dumps(opt)), copy.deepcopy(opt)]
    for grads in grad_steps[4:]:
        for optimizer in [opt, *copies]:
            for p, g in zip(optimizer.param_groups[0]["params"], grads):
                p.grad = g.copy()
            optimizer.step()
    for other in copies:
        for p, q in zip(params, other.param_groups[0]["params"]):
            np.testing.assert_array_equal(p.data, q.data)
            assert other.state[q].step == opt.state[p].step == 8


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_state_dict_round_trip_on_the_fast_path(name, rng):
    arrays = [rng.normal(size=(3, 4)), rng.normal(size=4)]
    grad_steps = [[rng.normal(size=a.shape) for a in arrays] for _ in range(10)]
    straight = [dl.Parameter(a.copy()) for a in arrays]
    resumed = [dl.Parameter(a.copy()) for a in arrays]
    first, second = optim.OPTIMIZERS[name](straight, lr=0.05), optim.OPTIMIZERS[name](resumed, lr=0.05)
    for number, grads in enumerate(grad_steps):
        if number == 5:
            second.load_state_dict(second.state_dict())  # replaces groups and state
        for optimizer, params in ((first, straight), (second, resumed)):
            for p, g in zip(params, grads):
                p.grad = g
            optimizer.step()
    for p, q in zip(straight, resumed):
        np.testing.assert_array_equal(p.data, q.data)
        assert second.state[q].step == 10


def test_plain_sgd_counts_steps_per_parameter(rng):
    params = [dl.Parameter(rng.normal(size=3)) for _ in range(3)]
    opt = optim.SGD(params, lr=0.1)
    for step in range(20):
        for i, p in enumerate(params):
            p.grad = np.ones(3) if step % (i + 1) == 0 else None
        opt.step()
    assert [opt.state[p].step for p in params] == [20, 10, 7]
    assert all(opt.state[p].momentum_buffer is None for p in params)


def test_parameters_of_one_shape_share_scratch_but_not_results(rng):
    params = [dl.Parameter(np.zeros((2, 2))) for _ in range(3)]
    opt = optim.Adam(params, lr=0.1)
    for i, p in enumerate(params):
        p.grad = np.full((2, 2), float(i + 1))
    opt.step()
    assert len(opt._workspaces) == 1  # one shape and dtype: one scratch array for all three
    for p in params:
        np.testing.assert_allclose(p.data, -0.1, rtol=1e-6)  # Adam's first step is −γ·sign(g)
    assert len({id(opt.state[p].exp_avg) for p in params}) == 3


class _Greedy(optim.Optimizer):
    """A rule that asks for more scratch arrays than it declares."""

    state_type = rules.SGDState
    init_state = staticmethod(rules.sgd_init)
    work_buffers = 2

    @staticmethod
    def update(param, grad, state, hyper, work):
        work[0], work[1], work[2]  # noqa: B018 (the third is one too many)
        return state

    def __init__(self, params):
        super().__init__(params, {"lr": 0.1})


def _checked_then(change):
    """A parameter whose gradient passed once; ``change(param)`` then breaks it."""
    param = dl.Parameter(np.zeros(3))
    opt = optim.SGD([param], lr=0.1)
    param.grad = np.ones(3)
    opt.step()
    change(param)
    return opt.step


def _greedy_step():
    param = dl.Parameter(np.zeros(3))
    param.grad = np.ones(3)
    return _Greedy([param]).step


def _set(param, **values):
    for key, value in values.items():
        setattr(param, key, value)


BAD_STEPS = [
    (_checked_then(lambda p: _set(p, grad=np.ones(4))), ValueError, r"gradient of shape \(4,\).*shape \(3,\)"),
    (_checked_then(lambda p: _set(p, grad=np.ones(3, np.float32))), TypeError, r"dtype float32 but the parameter"),
    (_checked_then(lambda p: _set(p, grad=[1.0, 1.0, 1.0])), TypeError, r"ndarray or None, got list"),
    (_checked_then(lambda p: _set(p, data=np.zeros(4))), ValueError, r"gradient of shape \(3,\).*shape \(4,\)"),
    (_checked_then(lambda p: _set(p, data=np.zeros(3, np.float32))), TypeError, r"dtype float64 but the parameter"),
    (_greedy_step(), IndexError, r"more than work_buffers = 2 scratch arrays"),
]


@pytest.mark.parametrize(("step", "error", "message"), BAD_STEPS)
def test_bad_gradients_are_refused_after_earlier_good_steps(step, error, message):
    with pytest.raises(error, match=message):
        step()
