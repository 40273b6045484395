"""Optimizers: step-by-step parity with torch.optim, state, groups, state dicts, bad input."""
import inspect

import numpy as np
import pytest
import torch

import depthlab as dl
from depthlab import optim

SHAPES = [(3, 4), (5,), (2, 3, 2)]
TORCH = {
    "sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop,
    "adadelta": torch.optim.Adadelta, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax, "nadam": torch.optim.NAdam, "radam": torch.optim.RAdam,
}
GRID = {
    "sgd": [
        {}, {"momentum": 0.9}, {"momentum": 0.9, "dampening": 0.5}, {"momentum": 0.9, "nesterov": True},
        {"weight_decay": 0.1}, {"momentum": 0.5, "weight_decay": 0.1, "nesterov": True},
        {"momentum": 0.9, "maximize": True},
        {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01, "maximize": True},
    ],
    "adagrad": [
        {}, {"lr_decay": 0.05}, {"weight_decay": 0.1}, {"initial_accumulator_value": 0.5}, {"maximize": True},
        {"lr": 0.05, "lr_decay": 0.01, "weight_decay": 0.01, "initial_accumulator_value": 0.1, "eps": 1e-3},
    ],
    "rmsprop": [
        {}, {"momentum": 0.9}, {"centered": True}, {"centered": True, "momentum": 0.5}, {"weight_decay": 0.1},
        {"alpha": 0.9, "eps": 1e-4}, {"maximize": True, "centered": True},
    ],
    "adadelta": [{}, {"rho": 0.5}, {"weight_decay": 0.1}, {"lr": 0.5, "eps": 1e-4, "maximize": True}],
    "adam": [
        {}, {"amsgrad": True}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True},
        {"maximize": True, "amsgrad": True}, {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-3},
    ],
    "adamw": [{}, {"amsgrad": True}, {"weight_decay": 0.1, "maximize": True}],
    "adamax": [{}, {"weight_decay": 0.1}, {"betas": (0.5, 0.9)}, {"maximize": True}],
    "nadam": [
        {}, {"momentum_decay": 0.01}, {"weight_decay": 0.1},
        {"weight_decay": 0.1, "decoupled_weight_decay": True}, {"maximize": True},
    ],
    "radam": [
        {}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True},
        {"betas": (0.9, 0.99)}, {"maximize": True},
    ],
}
CASES = [(name, hyper) for name, grid in GRID.items() for hyper in grid]
# options that exercise every state buffer, per optimizer
FULL = {"sgd": {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}, "adagrad": {"weight_decay": 0.1},
        "rmsprop": {"momentum": 0.5, "centered": True, "weight_decay": 0.1}, "adadelta": {"weight_decay": 0.1},
        "adam": {"amsgrad": True, "weight_decay": 0.1}, "adamw": {"amsgrad": True},
        "adamax": {"weight_decay": 0.1}, "nadam": {"weight_decay": 0.1}, "radam": {"weight_decay": 0.1}}


@pytest.fixture(autouse=True)
def _torch_float64():
    # torch keeps NAdam's mu_product in the default dtype; depthlab keeps it in float64
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _pair(name, hyper, rng, dtype=np.float64):
    arrays = [rng.normal(size=shape).astype(dtype) for shape in SHAPES]
    params = [dl.Parameter(a.copy()) for a in arrays]
    tensors = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    return params, tensors, optim.OPTIMIZERS[name](params, **hyper), TORCH[name](tensors, foreach=False, **hyper)


def _set_grads(params, tensors, grads):
    for p, t, g in zip(params, tensors, grads):
        p.grad = g.copy()
        t.grad = torch.tensor(g.copy())


def _assert_same_state(opt, topt, params, tensors):
    for p, t in zip(params, tensors):
        theirs = topt.state[t]
        for field, value in opt.state[p]._asdict().items():
            if field not in theirs:  # SGD keeps a step count; torch does not
                assert field == "step" or value is None
                continue
            expected = theirs[field]
            expected = expected.item() if expected.ndim == 0 else expected.detach().numpy()
            np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-14, err_msg=field)


@pytest.mark.parametrize(("name", "hyper"), CASES, ids=[f"{n}-{h}" for n, h in CASES])
def test_parity_with_torch_on_random_gradients(name, hyper, rng):
    params, tensors, opt, topt = _pair(name, hyper, rng)
    for step in range(200):
        _set_grads(params, tensors, [rng.normal(size=shape) for shape in SHAPES])
        opt.step()
        topt.step()
        if step % 50 == 49:
            for p, t in zip(params, tensors):
                np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-10, atol=1e-14)
    _assert_same_state(opt, topt, params, tensors)


@pytest.mark.parametrize("name", sorted(TORCH))
def test_parity_with_torch_when_gradients_depend_on_parameters(name, rng):
    """f(θ) = Σ ½ a θ² + b θ per tensor: each library computes its own gradient a θ + b + ξ.

    The shared noise ξ keeps gradients away from 0, where Adam-like rules divide 0 by 0 and
    amplify rounding (both libraries would be right, yet differ).
    """
    hyper = {**FULL[name], "lr": 0.05} if name != "adadelta" else FULL[name]
    params, tensors, opt, topt = _pair(name, hyper, rng)
    curvature = [rng.uniform(0.5, 2.0, size=shape) for shape in SHAPES]
    shift = [rng.normal(size=shape) for shape in SHAPES]
    for _ in range(200):
        for p, t, a, b in zip(params, tensors, curvature, shift):
            noise = 0.1 * rng.normal(size=a.shape)
            p.grad = a * p.data + b + noise
            t.grad = torch.tensor(a) * t.detach() + torch.tensor(b) + torch.tensor(noise)
        opt.step()
        topt.step()
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-10, atol=1e-14)
    _assert_same_state(opt, topt, params, tensors)


def test_param_groups_with_their_own_hyperparameters_match_torch(rng):
    arrays = [rng.normal(size=shape) for shape in SHAPES]
    params = [dl.Parameter(a.copy()) for a in arrays]
    tensors = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    opt = optim.Adam([{"params": params[:2], "lr": 0.1}, {"params": params[2:], "amsgrad": True}], lr=0.01)
    topt = torch.optim.Adam([{"params": tensors[:2], "lr": 0.1}, {"params": tensors[2:], "amsgrad": True}],
                            lr=0.01, foreach=False)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    assert [g["amsgrad"] for g in opt.param_groups] == [False, True]
    for _ in range(100):
        _set_grads(params, tensors, [rng.normal(size=shape) for shape in SHAPES])
        opt.step()
        topt.step()
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-10)


def test_add_param_group_later(rng):
    first, second = dl.Parameter(rng.normal(size=3)), dl.Parameter(rng.normal(size=2))
    opt = optim.SGD([first], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": second, "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["momentum"] == 0.9
    before = second.data.copy()
    second.grad = np.ones(2)
    opt.step()
    np.testing.assert_allclose(second.data, before - 0.5)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [first]})


def test_defaults_are_torch_defaults():
    for name, cls in optim.OPTIMIZERS.items():
        ours = inspect.signature(cls).parameters
        theirs = inspect.signature(TORCH[name]).parameters
        for key, parameter in ours.items():
            if key != "params":
                assert parameter.default == theirs[key].default, (name, key)


@pytest.mark.parametrize("name", sorted(TORCH))
def test_state_dict_round_trip_continues_identically(name, rng):
    hyper = FULL[name]
    arrays = [rng.normal(size=shape) for shape in SHAPES]
    grads = [[rng.normal(size=shape) for shape in SHAPES] for _ in range(40)]
    straight = [dl.Parameter(a.copy()) for a in arrays]
    opt = optim.OPTIMIZERS[name](straight, **hyper)
    for step_grads in grads:
        for p, g in zip(straight, step_grads):
            p.grad = g.copy()
        opt.step()

    resumed = [dl.Parameter(a.copy()) for a in arrays]
    first = optim.OPTIMIZERS[name](resumed, **hyper)
    for step_grads in grads[:20]:
        for p, g in zip(resumed, step_grads):
            p.grad = g.copy()
        first.step()
    saved = first.state_dict()
    assert sorted(saved["state"]) == [0, 1, 2] and saved["param_groups"][0]["params"] == [0, 1, 2]
    for entry in saved["state"].values():  # copies, not views of the live state
        for value in entry.values():
            if isinstance(value, np.ndarray):
                value += 1000.0
    saved = first.state_dict()
    copies = [dl.Parameter(p.data.copy()) for p in resumed]
    second = optim.OPTIMIZERS[name](copies, lr=123.0)  # hyperparameters come back from the state dict
    second.load_state_dict(saved)
    assert second.param_groups[0]["lr"] == first.param_groups[0]["lr"]
    for step_grads in grads[20:]:
        for p, g in zip(copies, step_grads):
            p.grad = g.copy()
        second.step()
    for p, q in zip(straight, copies):
        np.testing.assert_array_equal(p.data, q.data)


def test_load_state_dict_refuses_mismatches(rng):
    params = [dl.Parameter(rng.normal(size=shape)) for shape in SHAPES]
    opt = optim.Adam(params)
    for p in params:
        p.grad = np.ones(p.shape)
    opt.step()
    saved = opt.state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.Adam([{"params": params[:1]}, {"params": params[1:]}]).load_state_dict(saved)
    with pytest.raises(ValueError, match="doesn't match the size"):
        optim.Adam(params[:2]).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 2\)"):
        optim.Adam([params[0], params[1], dl.Parameter(np.zeros(7))]).load_state_dict(saved)
    with pytest.raises(ValueError, match="another optimizer"):
        optim.SGD(params).load_state_dict(saved)
    with pytest.raises(TypeError, match="state_dict"):
        opt.load_state_dict({"state": {}})


def test_one_optimizer_serves_many_parameters_with_the_same_name(rng):
    """numpy-ml keyed state by name and broke here: depthlab keys it by the parameter."""
    params = [dl.Parameter(rng.normal(size=(i + 1, 2)), name="weight") for i in range(12)]
    tensors = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt, topt = optim.Adam(params, lr=0.01), torch.optim.Adam(tensors, lr=0.01, foreach=False)
    for _ in range(30):
        _set_grads(params, tensors, [rng.normal(size=p.shape) for p in params])
        opt.step()
        topt.step()
    assert len(opt.state) == 12
    for p, t in zip(params, tensors):
        assert opt.state[p].exp_avg.shape == p.shape
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-10)


@pytest.mark.parametrize("name", sorted(TORCH))
def test_step_skips_parameters_without_gradient(name, rng):
    params, tensors, opt, topt = _pair(name, FULL[name], rng)
    frozen = params[1].data.copy()
    for step in range(6):
        grads = [rng.normal(size=shape) for shape in SHAPES]
        for i, (p, t, g) in enumerate(zip(params, tensors, grads)):
            if i == 1 and step < 3:
                p.grad, t.grad = None, None
            else:
                p.grad, t.grad = g.copy(), torch.tensor(g.copy())
        opt.step()
        topt.step()
        if step < 3:
            np.testing.assert_array_equal(params[1].data, frozen)
            assert params[1] not in opt.state
    assert opt.state[params[0]].step == 6 and opt.state[params[1]].step == 3
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-10)


@pytest.mark.parametrize("name", sorted(TORCH))
def test_float32_stays_float32_and_updates_in_place(name, rng):
    params64, _, opt64, _ = _pair(name, FULL[name], np.random.default_rng(1))
    params, _, opt, _ = _pair(name, FULL[name], np.random.default_rng(1), dtype=np.float32)
    arrays = [p.data for p in params]
    for _ in range(5):
        grads = [rng.normal(size=shape) for shape in SHAPES]
        for p, q, g in zip(params, params64, grads):
            p.grad, q.grad = g.astype(np.float32), g
        opt.step()
        opt64.step()
    for p, q, array in zip(params, params64, arrays):
        assert p.data is array and p.data.dtype == np.float32
        for value in opt.state[p]:
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32
        np.testing.assert_allclose(p.data, q.data, rtol=1e-4, atol=1e-5)


def test_state_arrays_are_updated_in_place(rng):
    param = dl.Parameter(rng.normal(size=(4, 3)))
    opt = optim.Adam([param], amsgrad=True)
    param.grad = rng.normal(size=(4, 3))
    opt.step()
    buffers = [v for v in opt.state[param] if isinstance(v, np.ndarray)]
    for _ in range(3):
        param.grad = rng.normal(size=(4, 3))
        opt.step()
    assert all(a is b for a, b in zip(buffers, [v for v in opt.state[param] if isinstance(v, np.ndarray)]))
    assert opt.state[param].step == 4


def test_state_uses_torch_names():
    assert optim.AdamState._fields == ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    assert optim.SGDState._fields == ("step", "momentum_buffer")
    assert optim.AdagradState._fields == ("step", "sum")


def test_sgd_momentum_buffer_starts_as_first_gradient():
    param = dl.Parameter(np.zeros(2))
    opt = optim.SGD([param], lr=1.0, momentum=0.9, dampening=0.5)
    param.grad = np.array([1.0, -2.0])
    opt.step()
    np.testing.assert_array_equal(opt.state[param].momentum_buffer, [1.0, -2.0])
    np.testing.assert_array_equal(param.data, [-1.0, 2.0])


def test_zero_grad_closure_and_repr(rng):
    params = [dl.Parameter(rng.normal(size=3)) for _ in range(2)]
    opt = optim.SGD(params, lr=0.1)
    for p in params:
        p.grad = np.ones(3)
    opt.zero_grad(set_to_none=False)
    assert all(np.array_equal(p.grad, np.zeros(3)) for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    assert opt.step(lambda: 1.5) == 1.5
    assert "lr: 0.1" in repr(opt) and "Parameter Group 0" in repr(opt)


def test_registry_and_get(rng):
    assert sorted(optim.OPTIMIZERS) == sorted(TORCH)
    param = dl.Parameter(rng.normal(size=3))
    opt = optim.get("Adam", [param], lr=0.1, amsgrad=True)
    assert isinstance(opt, optim.Adam) and opt.param_groups[0]["lr"] == 0.1
    assert isinstance(optim.get(optim.RMSprop, [param]), optim.RMSprop)
    assert optim.AdamW([param]).param_groups[0]["decoupled_weight_decay"] is True


@pytest.mark.parametrize("name", sorted(TORCH))
def test_hyperparameters_do_not_promote_numpy_scalars(name):
    param = dl.Parameter(np.ones(3, dtype=np.float32))
    opt = optim.OPTIMIZERS[name]([param], lr=np.float64(0.1))
    assert type(opt.param_groups[0]["lr"]) is float
    param.grad = np.ones(3, dtype=np.float32)
    opt.step()
    assert param.data.dtype == np.float32


def _params():
    return [dl.Parameter(np.zeros(3))]


BAD_INPUTS = [
    (lambda: optim.SGD(_params(), lr=-1), ValueError, r"Invalid learning rate: -1"),
    (lambda: optim.Adam(_params(), lr=float("nan")), ValueError, r"Invalid learning rate: nan"),
    (lambda: optim.Adam(_params(), lr=float("inf")), ValueError, r"Invalid learning rate: inf"),
    (lambda: optim.Adam(_params(), lr="0.1"), TypeError, r"lr must be a real number"),
    (lambda: optim.Adam(_params(), betas=(1.0, 0.999)), ValueError, r"Invalid beta parameter at index 0: 1.0"),
    (lambda: optim.Adam(_params(), betas=(0.9, -0.1)), ValueError, r"Invalid beta parameter at index 1: -0.1"),
    (lambda: optim.NAdam(_params(), betas=(0.9,)), TypeError, r"betas must be a pair"),
    (lambda: optim.Adam(_params(), eps=-1e-8), ValueError, r"Invalid epsilon value: -1e-08"),
    (lambda: optim.Adagrad(_params(), eps=-1.0), ValueError, r"Invalid epsilon value"),
    (lambda: optim.RMSprop(_params(), alpha=-0.5), ValueError, r"Invalid alpha value: -0.5"),
    (lambda: optim.RMSprop(_params(), momentum=-0.5), ValueError, r"Invalid momentum value: -0.5"),
    (lambda: optim.Adadelta(_params(), rho=1.5), ValueError, r"Invalid rho value: 1.5"),
    (lambda: optim.Adagrad(_params(), lr_decay=-1), ValueError, r"Invalid lr_decay value: -1"),
    (lambda: optim.Adagrad(_params(), initial_accumulator_value=-1), ValueError,
     r"Invalid initial_accumulator_value value: -1"),
    (lambda: optim.NAdam(_params(), momentum_decay=-1), ValueError, r"Invalid momentum_decay value: -1"),
    (lambda: optim.SGD(_params(), weight_decay=-0.1), ValueError, r"Invalid weight_decay value: -0.1"),
    (lambda: optim.SGD(_params(), nesterov=True), ValueError,
     r"Nesterov momentum requires a momentum and zero dampening"),
    (lambda: optim.SGD(_params(), momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     r"Nesterov momentum requires"),
    (lambda: optim.Adam(_params(), amsgrad="yes"), TypeError, r"amsgrad must be True or False"),
    (lambda: optim.SGD([], lr=0.1), ValueError, r"optimizer got an empty parameter list"),
    (lambda: optim.SGD([np.zeros(3)]), TypeError, r"dl\.Parameter\(array\)"),
    (lambda: optim.SGD(np.zeros(3)), TypeError, r"dl\.Parameter\(array\)"),
    (lambda: optim.SGD(dl.Parameter(np.zeros(3))), TypeError, r"iterable of depthlab Parameters"),
    (lambda: optim.SGD(set(_params())), TypeError, r"ordered collection"),
    (lambda: (lambda p: optim.SGD([p, p]))(dl.Parameter(np.zeros(2))), ValueError, r"appears more than once"),
    (lambda: (lambda p: optim.SGD([{"params": [p]}, {"params": [p]}]))(dl.Parameter(np.zeros(2))), ValueError,
     r"some parameters appear in more than one parameter group"),
    (lambda: optim.SGD([{"lr": 0.1}]), ValueError, r"'params' entry"),
    (lambda: optim.SGD([{"params": _params(), "lrr": 0.1}]), ValueError, r"unknown key 'lrr'.*Did you mean 'lr'"),
    (lambda: optim.SGD([{"params": _params(), "lr": -2}]), ValueError,
     r"Invalid learning rate: -2 .*param_groups\[0\]"),
    (lambda: optim.SGD({"params": _params()}), TypeError, r"got a single dict"),
    (lambda: optim.get("adamm", _params()), ValueError, r"Unknown optimizer 'adamm'.*Did you mean 'adam'"),
    (lambda: optim.get("sgd", _params(), betas=(0.9, 0.99)), TypeError, r"SGD has no hyperparameter 'betas'"),
    (lambda: optim.get(optim.SGD(_params()), _params()), TypeError, r"pass the class"),
    (lambda: optim.Optimizer(_params(), {"lr": 0.1}), TypeError, r"base class"),
]


@pytest.mark.parametrize(("build", "error", "message"), BAD_INPUTS)
def test_bad_inputs(build, error, message):
    with pytest.raises(error, match=message):
        build()


@pytest.mark.parametrize(("grad", "error", "message"), [
    (np.zeros(4), ValueError, r"shape \(4,\).*shape \(3,\)"),
    (np.zeros(3, dtype=np.float32), TypeError, r"dtype float32 but the parameter is float64"),
    ([0.0, 0.0, 0.0], TypeError, r"ndarray or None"),
])
def test_bad_gradients(grad, error, message):
    param = dl.Parameter(np.zeros(3))
    opt = optim.Adam([param])
    param.grad = grad
    with pytest.raises(error, match=message):
        opt.step()


# ----------------------------------------------------------------------------- clipping
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, rng):
    grads = [rng.normal(size=shape) for shape in SHAPES]
    params = [dl.Parameter(np.zeros(shape)) for shape in SHAPES]
    tensors = [torch.zeros(shape, requires_grad=True) for shape in SHAPES]
    _set_grads(params, tensors, grads)
    params.append(dl.Parameter(np.zeros(2)))  # no gradient: skipped
    total = optim.clip_grad_norm(params, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type, foreach=False)
    assert total == pytest.approx(expected.item(), rel=1e-12)
    for p, t in zip(params, tensors):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)
    assert params[-1].grad is None


def test_clip_grad_norm_non_finite():
    param = dl.Parameter(np.zeros(3))
    param.grad = np.array([1.0, np.inf, 2.0])
    with pytest.raises(ValueError, match="non-finite"):
        optim.clip_grad_norm([param], 1.0, error_if_nonfinite=True)
    tensor = torch.zeros(3, requires_grad=True)
    tensor.grad = torch.tensor([1.0, np.inf, 2.0])
    total = optim.clip_grad_norm(param, 1.0)
    expected = torch.nn.utils.clip_grad_norm_([tensor], 1.0, foreach=False)
    assert total == expected.item() == np.inf
    np.testing.assert_array_equal(param.grad, tensor.grad.numpy())  # 0, nan, 0 as in torch


@pytest.mark.parametrize(("call", "message"), [
    (lambda p: optim.clip_grad_norm(p, -1.0), r"max_norm must be a number >= 0"),
    (lambda p: optim.clip_grad_norm(p, 1.0, norm_type=0), r"norm_type must be a number > 0"),
    (lambda p: optim.clip_grad_norm([np.zeros(3)], 1.0), r"dl\.Parameter"),
])
def test_clip_grad_norm_bad_inputs(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call([dl.Parameter(np.zeros(3))])
