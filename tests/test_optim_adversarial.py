"""Optimizers under hostile input: a refused call changes nothing, settings edited between steps
are checked by type as well as value, state dicts are checked before they are trusted."""
import copy

import numpy as np
import pytest
import torch

import depthlab as dl
from depthlab import optim
from depthlab._fast.buffers import flat_views


def params_and_grads(dtype=np.float64):
    rng = np.random.default_rng(0)
    params = [dl.Parameter(rng.standard_normal(shape).astype(dtype)) for shape in [(2, 3), (3,)]]
    for p in params:
        p.grad = rng.standard_normal(p.data.shape).astype(dtype)
    return params


def snapshot(params, opt):
    return [p.data.copy() for p in params], copy.deepcopy(opt.state_dict())


def assert_unchanged(params, opt, before):
    datas, state = before
    for p, data in zip(params, datas):
        np.testing.assert_array_equal(p.data, data)
    after = opt.state_dict()
    assert after["state"].keys() == state["state"].keys()
    for key, fields in state["state"].items():
        for name, value in fields.items():
            np.testing.assert_array_equal(after["state"][key][name], value)


@pytest.mark.parametrize("bad", [np.ones(3, np.float32), np.ones(4), [1.0, 2.0, 3.0]])
@pytest.mark.parametrize("kind", [optim.SGD, optim.Adam, optim.RMSprop])
def test_a_refused_gradient_moves_no_parameter(kind, bad):
    params = params_and_grads()
    opt = kind(params, lr=0.1)
    opt.step()
    before = snapshot(params, opt)
    params[1].grad = bad  # the second parameter's gradient is wrong; the first one's is fine
    with pytest.raises((TypeError, ValueError), match="gradient|grad"):
        opt.step()
    assert_unchanged(params, opt, before)


def test_a_refused_gradient_in_a_later_group_leaves_the_flat_group_unmoved():
    shapes = [(2, 3), (3,)]
    _, datas = flat_views(shapes, np.dtype(np.float64))
    _, grads = flat_views(shapes, np.dtype(np.float64))
    flat = [dl.Parameter(view) for view in datas]  # parameters and gradients end to end: one flat update
    for p, g in zip(flat, grads):
        p.data[...] = 1.0
        g[...] = 0.5
        p.grad = g
    extra = dl.Parameter(np.ones(2))
    opt = optim.Adam([{"params": flat}, {"params": [extra]}], lr=0.1)
    extra.grad = np.ones(2)
    opt.step()
    before = snapshot(flat + [extra], opt)
    extra.grad = np.ones(3)
    with pytest.raises(ValueError, match="shape"):
        opt.step()
    assert_unchanged(flat + [extra], opt, before)


def test_an_array_or_bool_written_into_a_group_is_checked_like_a_number():
    params = params_and_grads()
    opt = optim.SGD(params, lr=1.0)
    opt.step()
    opt.param_groups[0]["lr"] = True  # == 1.0, but not a learning rate
    with pytest.raises(TypeError, match="lr must be a real number, got bool"):
        opt.step()
    opt.param_groups[0]["lr"] = np.array([1.0])  # == 1.0 as an array of one
    with pytest.raises(TypeError, match="lr must be a real number"):
        opt.step()
    opt.param_groups[0]["lr"] = np.array(0.5)  # a 0-d array is a number: used as its value
    opt.step()
    assert type(opt.param_groups[0]["lr"]) is float and opt.param_groups[0]["lr"] == 0.5


def test_zero_d_arrays_and_numpy_scalars_as_hyperparameters_match_floats():
    a, b = params_and_grads(), params_and_grads()
    ours = optim.Adam(a, lr=np.array(0.1), betas=np.array([0.8, 0.9]), eps=np.float32(1e-3))
    plain = optim.Adam(b, lr=0.1, betas=(0.8, 0.9), eps=float(np.float32(1e-3)))
    for _ in range(3):
        ours.step()
        plain.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)


def test_a_parameter_moved_into_a_second_group_is_refused():
    params = params_and_grads()
    opt = optim.SGD([{"params": [params[0]]}, {"params": [params[1]]}], lr=0.1)
    opt.param_groups[1]["params"].append(params[0])
    before = [p.data.copy() for p in params]
    with pytest.raises(ValueError, match="both hold"):
        opt.step()
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.data, b)


def test_add_param_group_names_the_parameter_already_in_a_group():
    params = params_and_grads()
    opt = optim.SGD([params[0]])
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[1\].*already in param_groups\[0\]"):
        opt.add_param_group({"params": [params[1], params[0]]})
    assert len(opt.param_groups) == 1


def test_step_refuses_a_closure_that_is_not_callable_and_zero_grad_a_non_bool():
    params = params_and_grads()
    opt = optim.SGD(params, lr=0.1)
    before = snapshot(params, opt)
    with pytest.raises(TypeError, match="closure must be a callable"):
        opt.step(5)
    assert_unchanged(params, opt, before)
    with pytest.raises(TypeError, match="set_to_none must be True"):
        opt.zero_grad(set_to_none="no")
    assert params[0].grad is not None


def trained_state(kind=optim.Adam, **options):
    params = params_and_grads()
    opt = kind(params, **options)
    opt.step()
    return params, opt, opt.state_dict()


def corrupt(edit):
    def make(sd):
        sd = copy.deepcopy(sd)
        edit(sd)
        return sd
    return make


BAD_STATE_DICTS = {
    "param_groups not a list": (corrupt(lambda sd: sd.update(param_groups=5)), TypeError, "param_groups"),
    "state not a dict": (corrupt(lambda sd: sd.update(state=[1])), TypeError, "'state' must be a dict"),
    "params not a list": (corrupt(lambda sd: sd["param_groups"][0].update(params=2)), ValueError, "'params' list"),
    "repeated index": (corrupt(lambda sd: sd["param_groups"][0].update(params=[0, 0])), ValueError, "distinct"),
    "step a string": (corrupt(lambda sd: sd["state"][0].update(step="1")), TypeError, "'step'.*number"),
    "step fractional": (corrupt(lambda sd: sd["state"][0].update(step=1.5)), ValueError, "whole number"),
    "step negative": (corrupt(lambda sd: sd["state"][0].update(step=-1)), ValueError, "whole number"),
    "step None": (corrupt(lambda sd: sd["state"][0].update(step=None)), TypeError, "'step'"),
    "step huge": (corrupt(lambda sd: sd["state"][0].update(step=10**400)), ValueError, "2\\*\\*53"),
    "step inf": (corrupt(lambda sd: sd["state"][0].update(step=float("inf"))), ValueError, "whole number"),
    "complex moment": (corrupt(lambda sd: sd["state"][0].update(exp_avg=np.ones((2, 3), complex))), TypeError,
                       "real numbers"),
    "NaN moment": (corrupt(lambda sd: sd["state"][0].update(exp_avg=np.full((2, 3), np.nan))), ValueError, "NaN"),
    "negative second moment": (corrupt(lambda sd: sd["state"][0].update(exp_avg_sq=-np.ones((2, 3)))),
                               ValueError, "negative"),
}


@pytest.mark.parametrize("case", list(BAD_STATE_DICTS))
def test_load_state_dict_refuses_a_corrupt_state_and_changes_nothing(case):
    make, error, message = BAD_STATE_DICTS[case]
    params, opt, saved = trained_state()
    opt.param_groups[0]["lr"] = 0.5
    with pytest.raises(error, match=message):
        opt.load_state_dict(make(saved))
    assert opt.param_groups[0]["lr"] == 0.5 and opt.state[params[0]].step == 1


def test_load_state_dict_takes_a_step_saved_as_a_tensor_or_numpy_integer():
    params, opt, saved = trained_state()
    for step in (torch.tensor(1.0), np.int64(1), np.array(1.0)):
        sd = copy.deepcopy(saved)
        sd["state"][0]["step"] = step
        opt.load_state_dict(sd)
        assert type(opt.state[params[0]].step) is int and opt.state[params[0]].step == 1


@pytest.mark.parametrize("kind", [optim.SGD, optim.Adam, optim.RMSprop])
def test_a_parameter_given_data_of_another_shape_is_refused_before_its_state_is_touched(kind):
    param = dl.Parameter(np.ones(3))
    opt = kind([param], lr=0.1, **({"momentum": 0.9} if kind is not optim.Adam else {}))
    param.grad = np.ones(3)
    opt.step()
    before = [np.array(v, copy=True) for v in opt.state[param] if isinstance(v, np.ndarray)]
    param.data, param.grad = np.ones(5), np.ones(5)
    with pytest.raises(ValueError, match="replaced by an array of another shape"):
        opt.step()
    after = [v for v in opt.state[param] if isinstance(v, np.ndarray)]
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)


def test_a_parameter_turned_float32_takes_its_state_along():
    param = dl.Parameter(np.ones(3))
    opt = optim.Adam([param], lr=0.1)
    param.grad = np.ones(3)
    opt.step()
    param.data, param.grad = param.data.astype(np.float32), np.ones(3, np.float32)
    opt.step()
    assert param.data.dtype == opt.state[param].exp_avg.dtype == np.float32


def test_parameter_data_that_cannot_be_updated_in_place_is_refused():
    param = dl.Parameter(np.zeros(3))
    opt = optim.SGD([param], lr=0.1)
    data = np.ones(3)
    data.flags.writeable = False
    param.data, param.grad = data, np.ones(3)
    with pytest.raises(ValueError, match="read-only"):
        opt.step()


def test_parameter_data_set_to_a_list_becomes_a_float_array_the_optimizer_updates():
    param = dl.Parameter(np.zeros(3))
    opt = optim.SGD([param], lr=0.1)
    param.data, param.grad = [1.0, 2.0, 3.0], np.ones(3)     # converted as the constructor converts
    opt.step()
    np.testing.assert_allclose(param.data, [0.9, 1.9, 2.9], rtol=1e-15)


def test_a_masked_gradient_is_refused_and_a_plain_subclass_taken():
    param = dl.Parameter(np.zeros(3))
    opt = optim.SGD([param], lr=0.1)
    param.grad = np.ma.masked_array(np.ones(3), mask=[0, 1, 0])
    with pytest.raises(TypeError, match="masked"):
        opt.step()
    np.testing.assert_array_equal(param.data, 0.0)

    class Grad(np.ndarray):
        pass

    param.grad = np.ones(3).view(Grad)
    opt.step()
    np.testing.assert_allclose(param.data, -0.1)


def test_get_refuses_the_base_class_and_foreign_classes_and_groups_refuse_a_bad_initial_lr():
    with pytest.raises(TypeError, match="no update rule"):
        optim.get(optim.Optimizer, [dl.Parameter(np.ones(1))])
    with pytest.raises(TypeError, match="torch.optim.*dl.optim"):
        optim.resolve(torch.optim.Adam)
    with pytest.raises(TypeError, match="initial_lr"):
        optim.SGD([{"params": [dl.Parameter(np.ones(1))], "initial_lr": "x"}])


def test_clip_grad_norm_of_huge_gradients_is_their_norm_not_inf():
    param = dl.Parameter(np.zeros(3))
    param.grad = np.array([3e200, 4e200, 0.0])
    total = optim.clip_grad_norm([param], 1.0)
    assert total == pytest.approx(5e200, rel=1e-12)
    np.testing.assert_allclose(param.grad, [0.6, 0.8, 0.0], rtol=1e-5)
    param.grad = np.array([3e200, 4e200, 0.0])
    assert optim.clip_grad_norm([param], 1.0, norm_type=3) == pytest.approx((27 + 64) ** (1 / 3) * 1e200, rel=1e-12)


@pytest.mark.parametrize("grad, error, message", [
    ([1.0, 2.0, 3.0], TypeError, "float ndarray"), (np.ones(3, int), TypeError, "int64"),
    (np.ones(4), ValueError, "shape"), ("readonly", ValueError, "read-only")])
def test_clip_grad_norm_checks_every_gradient_before_scaling_any(grad, error, message):
    first, second = dl.Parameter(np.zeros(3)), dl.Parameter(np.zeros(3))
    first.grad = np.full(3, 10.0)
    if isinstance(grad, str):
        grad = np.ones(3)
        grad.flags.writeable = False
    second.grad = grad
    with pytest.raises(error, match=message):
        optim.clip_grad_norm([first, second], 1.0)
    np.testing.assert_array_equal(first.grad, 10.0)
    with pytest.raises(TypeError, match="error_if_nonfinite"):
        optim.clip_grad_norm([first], 1.0, error_if_nonfinite="yes")


def test_passing_a_network_or_its_named_parameters_says_to_pass_parameters():
    net = dl.MLP(2, [3], 1)
    for wrong in (net, list(net), net.named_parameters()):
        with pytest.raises(TypeError, match=r"net\.parameters\(\)"):
            optim.SGD(wrong)
    with pytest.raises(TypeError, match=r"net\.parameters\(\)"):
        optim.clip_grad_norm(net, 1.0)


def test_state_reads_by_field_name_as_pytorch_dicts_do():
    param = dl.Parameter(np.ones(3))
    opt = optim.Adam([param], lr=0.1)
    param.grad = np.ones(3)
    opt.step()
    state = opt.state[param]
    assert state["step"] == state.step == 1 and state["exp_avg"] is state.exp_avg and state[0] == 1
    assert list(state.keys()) == ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    with pytest.raises(KeyError, match="no field 'momentum_buffer'"):
        state["momentum_buffer"]


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "nadam"])
def test_float32_and_float64_parameters_in_one_optimizer_each_match_pytorch(name):
    rng = np.random.default_rng(3)
    options = {"lr": 0.05, **({"momentum": 0.9} if name in ("sgd", "rmsprop") else {})}
    values = [rng.standard_normal((2, 3)), rng.standard_normal(3)]
    dtypes = [np.float32, np.float64]
    ours = [dl.Parameter(v.astype(d)) for v, d in zip(values, dtypes)]
    theirs = [torch.tensor(v.astype(d), requires_grad=True) for v, d in zip(values, dtypes)]
    opt = optim.get(name, ours, **options)
    reference = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop,
                 "nadam": torch.optim.NAdam}[name](theirs, **options)
    for _ in range(4):
        for p, t in zip(ours, theirs):
            g = rng.standard_normal(p.data.shape).astype(p.data.dtype)
            p.grad, t.grad = g, torch.tensor(g)
        opt.step()
        reference.step()
    for p, t, dtype in zip(ours, theirs, dtypes):
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_integers_beyond_float_range_are_refused_or_read_as_infinite_not_overflow_errors():
    param = dl.Parameter(np.ones(3))
    with pytest.raises(ValueError, match="lr must be a finite number"):
        optim.SGD([param], lr=10**400)
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        optim.Adam([param], betas=(10**400, 0.9))
    param.grad = np.full(3, 2.0)
    assert optim.clip_grad_norm([param], 10**400) == pytest.approx(12**0.5)  # no clipping, as for inf
    assert optim.clip_grad_norm([param], 1.0, norm_type=10**400) == 2.0      # the largest entry, as for inf
    schedule = optim.ReduceLROnPlateau(optim.SGD([param]), patience=0)
    schedule.step(10**400)  # as large as a metric gets: no improvement on inf, no error
    with pytest.raises(ValueError, match="GiB"):
        optim.minimize("elliptic", [1.0, 2.0], steps=10**400)


def test_a_parameter_replaced_inside_a_group_list_is_checked_again():
    params = params_and_grads()
    opt = optim.Adam(params, lr=0.1)
    opt.step()
    group = opt.param_groups[0]["params"]
    group[0] = np.ones((2, 3))  # same list, same length: an array where a Parameter was
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[0\] is an ndarray"):
        opt.zero_grad()
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[0\] is an ndarray"):
        opt.step()
    group[0] = params[1]  # now listed twice
    with pytest.raises(ValueError, match="more than once"):
        opt.step()
    group[0] = params[0]
    opt.step()
    assert opt.state[params[0]].step == opt.state[params[1]].step == 2


def test_state_edited_after_a_refused_step_is_what_the_next_flat_step_uses():
    shapes = [(2, 3), (3,)]
    datas, grads = flat_views(shapes, np.dtype(np.float64))[1], flat_views(shapes, np.dtype(np.float64))[1]
    flat = [dl.Parameter(view) for view in datas]
    for p, g in zip(flat, grads):
        p.data[...], g[...], p.grad = 1.0, 0.5, g
    extra = dl.Parameter(np.ones(2))
    opt = optim.Adam([{"params": flat}, {"params": [extra]}], lr=0.1)
    extra.grad = np.ones(2)
    opt.step()
    opt.load_state_dict(opt.state_dict())  # per-parameter arrays again, to be gathered by the next step
    extra.grad = np.ones(3)
    with pytest.raises(ValueError, match="shape"):
        opt.step()  # refused after the flat group gathered its state
    opt.state[flat[0]].exp_avg[...] = 0.0  # an edit in the window between
    opt.state[flat[0]].exp_avg_sq[...] = 0.0
    reference = [dl.Parameter(flat[0].data.copy())]
    check = optim.Adam(reference, lr=0.1)
    reference[0].grad = np.full((2, 3), 0.5)
    check.load_state_dict({"state": {0: opt.state_dict()["state"][0]}, "param_groups": [
        {**opt.state_dict()["param_groups"][0], "params": [0]}]})
    extra.grad = np.ones(2)
    opt.step()
    check.step()
    np.testing.assert_array_equal(flat[0].data, reference[0].data)


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_a_zero_d_parameter_takes_the_numpy_scalar_its_arithmetic_gives_as_gradient(name):
    param = dl.Parameter(np.array(2.0))
    reference = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    opt = optim.get(name, [param], lr=0.1)
    torch_opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}[name](
        [reference], lr=0.1)
    for _ in range(3):
        param.grad = 2 * param.data  # a NumPy float64, not a 0-d array
        assert type(param.grad) is np.float64
        reference.grad = 2 * reference.detach().clone()
        opt.step()
        torch_opt.step()
    assert param.data.shape == () and param.data == pytest.approx(reference.item(), rel=1e-12)
    param.grad = np.float32(1.0)  # the wrong dtype is still refused
    with pytest.raises(TypeError, match="float32"):
        opt.step()
    param.grad = np.float64(30.0)
    assert optim.clip_grad_norm([param], 1.0) == 30.0 and param.grad == pytest.approx(1.0, rel=1e-6)
