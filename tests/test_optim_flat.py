"""The flat path of ``Optimizer.step`` (:mod:`depthlab.optim.flat`).

A group whose parameters tile one flat array, and whose gradients tile another alike, is
updated by one call of the rule on the two flat arrays. The rules are elementwise, so this
must give bit for bit what the per-parameter loop gives — the weights and every
parameter's state — whatever happens around it: a state dict loaded, steps through the
explicit loop in between, parameters at different steps.
"""
import copy

import numpy as np
import pytest

import depthlab as dl
from depthlab._fast import buffers as _buffers
from depthlab._fast import flat as flat_module
from depthlab.nn.parameter import Parameter

SHAPES = [(3, 4), (4,), (2, 3), (2,), (5, 2)]
CASES = {
    "sgd": (dl.optim.SGD, {"lr": 0.05}),
    "sgd-maximize": (dl.optim.SGD, {"lr": 0.05, "maximize": True}),
    "adam": (dl.optim.Adam, {"lr": 0.01}),
    "adam-betas": (dl.optim.Adam, {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-3}),
    "adamw": (dl.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
}


def flat_parameters(dtype, seed=0) -> list[Parameter]:
    """Parameters whose data are consecutive views of one flat array (as ``dl.MLP`` lays them)."""
    rng = np.random.default_rng(seed)
    _, views = _buffers.flat_views(SHAPES, np.dtype(dtype))
    for view in views:
        view[...] = rng.standard_normal(view.shape)
    return [Parameter(view) for view in views]


def gradients(step: int, dtype, into=None) -> list[np.ndarray]:
    """The gradients of a step: written into ``into`` (views of one flat array, reused from
    step to step as TrainStep does), or separate arrays when ``into`` is None."""
    rng = np.random.default_rng(100 + step)
    values = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    if into is None:
        return values
    for view, value in zip(into, values):
        view[...] = value
    return into


def per_parameter(optimizer):
    """The optimizer with its flat path switched off: the reference."""
    optimizer._flat_group = lambda *args: None
    return optimizer


@pytest.fixture
def flat_steps(monkeypatch):
    """How many group updates the flat path made."""
    made = []
    original = flat_module.FlatGroup.ready

    def counting(self, *args):
        done = original(self, *args)
        made.append(done)
        return done

    monkeypatch.setattr(flat_module.FlatGroup, "ready", counting)
    return made


def assert_same(params, optimizer, ref_params, reference):
    for p, q in zip(params, ref_params):
        assert p.data.dtype == q.data.dtype
        np.testing.assert_array_equal(p.data, q.data)
        state, ref = optimizer.state[p], reference.state[q]
        assert type(state) is type(ref) and state.step == ref.step
        for value, expected in zip(state, ref):
            if isinstance(expected, np.ndarray):
                assert value.dtype == expected.dtype and value.shape == expected.shape
                np.testing.assert_array_equal(value, expected)
            else:
                assert value == expected


def run(params, optimizer, steps, flat=lambda step: True, views=None) -> list[np.ndarray]:
    """Steps with the given gradients, in one flat array (``views``, or a new one) reused by
    every step where ``flat(step)``, else in separate arrays (the explicit loop's). Returns
    the views, to go on with the same gradient arrays."""
    dtype = params[0].data.dtype
    views = _buffers.flat_views(SHAPES, dtype)[1] if views is None else views
    for step in steps:
        for p, g in zip(params, gradients(step, dtype, views if flat(step) else None)):
            p.grad = g
        optimizer.step()
    return views


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_flat_path_equals_the_per_parameter_loop(case, dtype, flat_steps):
    kind, options = CASES[case]
    params, ref_params = flat_parameters(dtype), flat_parameters(dtype)
    optimizer, reference = kind(params, **options), per_parameter(kind(ref_params, **options))
    run(params, optimizer, range(6))
    run(ref_params, reference, range(6))
    assert flat_steps == [True] * 6
    assert_same(params, optimizer, ref_params, reference)


def test_each_parameter_state_is_a_view_of_one_flat_state(flat_steps):
    params = flat_parameters("float64")
    optimizer = dl.optim.Adam(params, lr=0.01)
    run(params, optimizer, range(2))
    bases = {id(optimizer.state[p].exp_avg.base) for p in params} | {id(optimizer.state[p].exp_avg_sq.base)
                                                                     for p in params}
    assert len(bases) == 2 and all(optimizer.state[p].exp_avg.shape == p.data.shape for p in params)
    snapshot = optimizer.state_dict()   # copies, in the per-parameter form
    reference_params = flat_parameters("float64")
    reference = per_parameter(dl.optim.Adam(reference_params, lr=0.01))
    run(reference_params, reference, range(2))
    expected = reference.state_dict()
    for index, state in expected["state"].items():
        for field, value in state.items():
            np.testing.assert_array_equal(snapshot["state"][index][field], value)


@pytest.mark.parametrize("case", ["sgd", "adam"])
def test_a_loaded_state_is_gathered_into_the_flat_state(case, flat_steps):
    kind, options = CASES[case]
    params, ref_params = flat_parameters("float64"), flat_parameters("float64")
    optimizer, reference = kind(params, **options), per_parameter(kind(ref_params, **options))
    views = run(params, optimizer, range(3))
    run(ref_params, reference, range(3))
    other = flat_parameters("float64", seed=1)
    elsewhere = kind(other, **options)
    run(other, elsewhere, range(10, 12))  # another history, one step fewer
    saved = copy.deepcopy(elsewhere.state_dict())
    for opt, ps in ((optimizer, params), (reference, ref_params)):
        opt.load_state_dict(saved)   # new arrays, not the flat path's views
        for p, q in zip(ps, other):
            p.data[...] = q.data
    run(params, optimizer, range(3, 6), views=views)   # the same gradient arrays: the same FlatGroup
    run(ref_params, reference, range(3, 6))
    assert flat_steps == [True] * (3 + 2 + 3)
    assert_same(params, optimizer, ref_params, reference)


def test_steps_through_the_per_parameter_loop_in_between_change_nothing(flat_steps):
    """Separate gradient arrays (the explicit loop's) take the per-parameter loop; the flat
    path then gathers the states that loop left."""
    params, ref_params = flat_parameters("float32"), flat_parameters("float32")
    optimizer = dl.optim.Adam(params, lr=0.01)
    reference = per_parameter(dl.optim.Adam(ref_params, lr=0.01))
    flat_on = lambda step: step % 3 != 1
    run(params, optimizer, range(7), flat=flat_on)
    run(ref_params, reference, range(7), flat=flat_on)
    assert flat_steps == [True] * 5
    assert_same(params, optimizer, ref_params, reference)


def test_parameters_at_different_steps_take_the_per_parameter_loop(flat_steps):
    params, ref_params = flat_parameters("float64"), flat_parameters("float64")
    optimizer = dl.optim.Adam(params, lr=0.01)
    reference = per_parameter(dl.optim.Adam(ref_params, lr=0.01))
    for ps, opt in ((params, optimizer), (ref_params, reference)):
        for p, g in zip(ps, gradients(0, "float64")):
            p.grad = g
        ps[0].grad = None   # the first parameter sits this step out: its state stays behind
        opt.step()
        run(ps, opt, range(1, 4))
    assert flat_steps == [False] * 3
    assert optimizer.state[params[0]].step == 3 and optimizer.state[params[1]].step == 4
    assert_same(params, optimizer, ref_params, reference)


def test_groups_beyond_the_flat_size_take_the_per_parameter_loop(flat_steps, monkeypatch):
    monkeypatch.setattr(_buffers, "FLAT_BYTES", 8 * sum(np.prod(shape) for shape in SHAPES) - 8)
    params, ref_params = flat_parameters("float64"), flat_parameters("float64")
    optimizer = dl.optim.Adam(params, lr=0.01)
    reference = per_parameter(dl.optim.Adam(ref_params, lr=0.01))
    run(params, optimizer, range(2))
    run(ref_params, reference, range(2))
    assert flat_steps == [False] * 2
    assert_same(params, optimizer, ref_params, reference)


def test_gradients_the_optimizer_saw_are_not_held():
    """The flat path keeps the gradients by weak reference only: TrainStep's gradient
    memory is reused from step to step with Adam as with plain SGD."""
    rng = np.random.default_rng(2)
    net = dl.MLP(5, [7, 6], 4, rng=3)
    step = dl.TrainStep(net, "cross_entropy", dl.optim.Adam(net.parameters(), lr=1e-2))
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 4, 8)
    step(x, y)
    first = [p.grad.__array_interface__["data"][0] for p in net.parameters()]
    step(x, y)
    assert [p.grad.__array_interface__["data"][0] for p in net.parameters()] == first


# ----------------------------------------------------------------------------- the layout

def test_small_networks_keep_their_parameters_in_one_flat_array():
    for net in (dl.MLP(4, [6, 5], 3, rng=0), dl.Sequential.from_arrays([np.ones((3, 2)), np.ones((1, 3))]),
                dl.MLP(4, [6], 3, dtype="float32").astype("float64")):
        params = net.parameters()
        assert flat_module._span([p.data for p in params]) is not None
        assert [p.data.base is params[0].data.base for p in params] == [True] * len(params)


def test_large_networks_and_given_layers_keep_their_own_arrays(monkeypatch):
    monkeypatch.setattr(_buffers, "FLAT_BYTES", 400)
    assert all(p.data.base is None for p in dl.MLP(4, [6, 5], 3, rng=0).parameters())
    monkeypatch.undo()
    first = dl.Linear(2, 3)
    weight = first.weight.data
    net = dl.Sequential([first, "relu", dl.Linear(3, 1)])
    assert net.linears[0].weight.data is weight   # a user's layer is never moved


def test_the_packed_values_are_the_built_ones(monkeypatch):
    packed = dl.MLP(3, [5, 4], 2, init="glorot_normal", bias_init={"name": "normal", "std": 0.1}, rng=7)
    monkeypatch.setattr(_buffers, "FLAT_BYTES", 0)
    separate = dl.MLP(3, [5, 4], 2, init="glorot_normal", bias_init={"name": "normal", "std": 0.1}, rng=7)
    for p, q in zip(packed.parameters(), separate.parameters()):
        assert q.data.base is None and p.data.base is not None
        np.testing.assert_array_equal(p.data, q.data)


@pytest.mark.parametrize("grouping", ["weights-then-biases", "reversed", "last-two-layers"])
def test_groups_that_do_not_tile_the_flat_array_in_order(grouping, flat_steps):
    """Groups of a packed network's parameters: in layout order and contiguous (the last two
    layers) the flat path runs; interleaved or reversed, the per-parameter loop does — the
    weights come out the same either way."""
    rng = np.random.default_rng(5)
    net = dl.MLP(5, [7, 6], 4, rng=3)
    twin = net.copy()
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 4, 8)

    def groups(params):
        weights, biases = params[0::2], params[1::2]
        return {"weights-then-biases": [{"params": weights}, {"params": biases, "lr": 0.05}],
                "reversed": [{"params": params[::-1]}],
                "last-two-layers": [{"params": params[2:]}]}[grouping]

    step = dl.TrainStep(net, "cross_entropy", dl.optim.Adam(groups(net.parameters()), lr=0.01))
    reference = per_parameter(dl.optim.Adam(groups(twin.parameters()), lr=0.01))
    for _ in range(3):
        step(x, y)
        reference.zero_grad()
        output = twin.forward(x, record=True).output
        twin.backward(dl.losses.cross_entropy.grad(output, y), input_grad=False)
        reference.step()
    for p, q in zip(net.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert any(flat_steps) == (grouping == "last-two-layers")


def test_new_gradient_arrays_keep_the_flat_state(monkeypatch, flat_steps):
    """When only the gradients move (TrainStep lays out new ones while a user keeps the old),
    the flat state carries on: it is gathered once, on the first step, not copied again."""
    gathered = []
    original = flat_module.FlatGroup._gather
    monkeypatch.setattr(flat_module.FlatGroup, "_gather",
                        lambda self, *args: gathered.append(1) or original(self, *args))
    params, ref_params = flat_parameters("float64"), flat_parameters("float64")
    optimizer = dl.optim.Adam(params, lr=0.01)
    reference = per_parameter(dl.optim.Adam(ref_params, lr=0.01))
    for steps in (range(2), range(2, 4), range(4, 6)):   # new gradient arrays for each pair of steps
        run(params, optimizer, steps)
        run(ref_params, reference, steps)
    assert flat_steps == [True] * 6 and gathered == [1]
    assert_same(params, optimizer, ref_params, reference)


def test_the_explicit_loop_takes_the_flat_path_too(flat_steps):
    """net.backward writes the parameter gradients into the same flat array as TrainStep,
    so the loop depthlab teaches gets the flat update, with the same weights."""
    rng = np.random.default_rng(6)
    net = dl.MLP(5, [7, 6], 4, rng=3)
    twin = net.copy()
    optimizer = dl.optim.Adam(net.parameters(), lr=0.01)
    reference = per_parameter(dl.optim.Adam(twin.parameters(), lr=0.01))
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 4, 8)
    for _ in range(3):
        for model, opt in ((net, optimizer), (twin, reference)):
            opt.zero_grad()
            output = model.forward(x, record=True).output
            model.backward(dl.losses.cross_entropy.grad(output, y), input_grad=False, intermediates=False)
            opt.step()
    assert flat_steps == [True] * 3
    assert all(p.grad.base is net.parameters()[0].grad.base for p in net.parameters())
    for p, q in zip(net.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_a_layouts_views_are_recognised_by_identity():
    """span_of finds the run of FlatArrays views a group's gradients are, without addresses,
    and agrees with the address-based search."""
    arrays = _buffers.FlatArrays(SHAPES, np.float64)
    views = arrays.take()
    sizes = [int(np.prod(shape)) for shape in SHAPES]
    flat, begin, end = _buffers.span_of(views)
    assert flat is arrays.flat and (begin, end) == (0, sum(sizes))
    flat, begin, end = _buffers.span_of(views[1:4])
    assert (begin, end) == (sizes[0], sum(sizes[:4]))
    assert flat_module._span(views[1:4])[1:] == (begin, end)
    assert _buffers.span_of([views[0], views[2]]) is None          # not consecutive
    assert _buffers.span_of([views[0].copy(), views[1]]) is None   # not the layout's own object
    assert flat_module._span([views[0], views[2]]) is None
