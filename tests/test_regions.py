"""Linear regions: exact counts along segments, 2-D maps, seed 003's shallow vs deep examples."""
import math

import numpy as np
import pytest

import depthlab as dl
from depthlab.signal import regions


def _grid_count(net, start, end, points=200_001):
    """Brute force: activation-pattern changes between consecutive points of a fine grid,
    with the pattern read from a recorded forward pass (f_k > 0 for every ReLU layer)."""
    t = np.linspace(0.0, 1.0, points)
    x = start[None, :] + t[:, None] * (end - start)[None, :]
    trace = net.forward(x, record=True)
    hidden = np.concatenate([f > 0 for f in trace.preactivations[:-1]], axis=1)
    changes = np.any(hidden[1:] != hidden[:-1], axis=1)
    return int(changes.sum()) + 1, t[1:][changes]


def _random_net(seed, widths, d_in, activation="relu"):
    return dl.MLP(d_in, widths, 1, activation=activation, init="he_normal",
                  bias_init={"name": "normal", "std": 0.5}, rng=seed)


# --------------------------------------------------------------------------- seed 003's examples

def test_shallow_example_has_seven_regions_at_the_sevenths():
    count, breaks = dl.count_linear_regions(regions.shallow_example(), [0.0], [1.0], return_breakpoints=True)
    assert count == 7 == regions.max_regions_shallow(6)
    np.testing.assert_allclose(breaks, np.arange(1, 7) / 7, atol=1e-12)


def test_deep_example_has_nine_regions_at_the_ninths():
    net = regions.deep_example()
    count, breaks = dl.count_linear_regions(net, [0.0], [1.0], return_breakpoints=True)
    assert count == 9
    np.testing.assert_allclose(breaks, np.arange(1, 9) / 9, atol=1e-12)
    assert regions.max_regions_1d([3, 3]) == 16 >= count  # the bound is not reached here


def test_deep_example_is_the_folded_tent_map():
    x = np.linspace(0.0, 1.0, 37).reshape(-1, 1)

    def tent(u):
        return np.where(u < 1 / 3, 3 * u, np.where(u < 2 / 3, 2 - 3 * u, 3 * u - 2))

    np.testing.assert_allclose(regions.deep_example()(x), tent(tent(x)), atol=1e-12)


def test_examples_agree_with_brute_force():
    for net, expected in ((regions.shallow_example(), 7), (regions.deep_example(), 9)):
        # 10^5 + 2 points: no grid point lands on a breakpoint k/7 or k/9
        assert _grid_count(net, np.array([0.0]), np.array([1.0]), points=100_002)[0] == expected


# --------------------------------------------------------------------------- bounds

def test_bounds():
    assert regions.max_regions_shallow(6) == 7
    assert regions.max_regions_shallow(5, input_dim=2) == 1 + 5 + 10
    assert regions.max_regions_shallow(3, input_dim=5) == 8  # 2^3: every pattern
    assert regions.max_regions_1d([3, 3]) == 16
    assert regions.max_regions_1d(6) == 7


@pytest.mark.parametrize("seed", range(8))
def test_random_shallow_net_count_is_one_plus_kinks_inside(seed):
    width = 12
    net = _random_net(seed, [width], 1)
    start, end = np.array([-2.0]), np.array([2.0])
    weight, bias = net.linears[0].weight.data[:, 0], net.linears[0].bias.data
    kinks = -bias / weight
    inside = int(np.sum((kinks > start[0]) & (kinks < end[0])))
    count = dl.count_linear_regions(net, start, end)
    assert count == inside + 1 <= regions.max_regions_shallow(width)


# --------------------------------------------------------------------------- exact vs brute force

@pytest.mark.parametrize("seed, widths, d_in", [
    (0, [5, 5], 1), (1, [6, 4, 5], 1), (2, [8, 8], 3), (3, [4, 6, 4], 2), (4, [7], 4),
    (5, [10, 10, 10], 2),
])
def test_exact_count_equals_fine_grid_count(seed, widths, d_in):
    net = _random_net(seed, widths, d_in)
    direction = np.random.default_rng(seed).normal(size=d_in)
    start = -3.0 * direction / np.linalg.norm(direction)  # a diameter of the ball of radius 3
    end = -start
    count, breaks = dl.count_linear_regions(net, start, end, return_breakpoints=True)
    grid_count, grid_breaks = _grid_count(net, start, end)
    assert count == grid_count >= 6
    assert count <= regions.max_regions_1d(widths)
    np.testing.assert_allclose(breaks, grid_breaks, atol=1e-5)  # within one grid step
    assert np.all(np.diff(breaks) > 0) and np.all((breaks > 0) & (breaks < 1))


def test_leaky_relu_and_relu_output_activation_count_too():
    net = dl.MLP(1, [6, 6], 1, activation="leaky_relu", output_activation="relu",
                 bias_init={"name": "normal", "std": 0.5}, rng=3)
    start, end = np.array([-2.0]), np.array([2.0])
    t = np.linspace(0, 1, 200_001)
    trace = net.forward(start + t[:, None] * (end - start), record=True)
    pattern = np.concatenate([f > 0 for f in trace.preactivations], axis=1)
    expected = int(np.any(pattern[1:] != pattern[:-1], axis=1).sum()) + 1
    assert dl.count_linear_regions(net, start, end) == expected


def test_counting_is_symmetric_and_additive():
    net = _random_net(5, [6, 6], 2)
    a, b, c = np.array([-1.0, 0.3]), np.array([1.2, -0.4]), np.array([0.1, -0.05])
    assert dl.count_linear_regions(net, a, b) == dl.count_linear_regions(net, b, a)
    mid = a + 0.5 * (b - a)
    # splitting a segment at a point inside a region: the halves share that region
    whole = dl.count_linear_regions(net, a, b)
    halves = dl.count_linear_regions(net, a, mid) + dl.count_linear_regions(net, mid, b) - 1
    assert whole == halves
    assert dl.count_linear_regions(net, a, c) >= 1


def test_float32_network_counts_like_float64():
    net = _random_net(6, [6, 6], 1)
    net32 = net.astype("float32")
    start, end = [-1.0], [1.0]
    assert abs(dl.count_linear_regions(net32, start, end) - dl.count_linear_regions(net, start, end)) <= 1


# --------------------------------------------------------------------------- 2-D maps

def test_linear_regions_2d_single_kink_splits_the_box():
    net = dl.Sequential.from_arrays([np.array([[1.0, 0.0]]), np.array([[1.0]])], activation="relu")
    result = dl.linear_regions_2d(net, box=((-1, 1), (-1, 1)), resolution=50)
    assert result.ids.shape == (50, 50) and result.count == 2
    assert np.all(result.ids[:, :25] == 0) and np.all(result.ids[:, 25:] == 1)


def test_linear_regions_2d_map_is_consistent():
    net = _random_net(7, [5, 5], 2)
    ids, count = dl.linear_regions_2d(net, resolution=120)
    assert ids.shape == (120, 120) and ids.dtype.kind == "i"
    assert set(np.unique(ids)) == set(range(count))
    assert ids[0, 0] == 0
    # along each grid row, the regions met cannot exceed the exact count on that segment
    ys = np.linspace(-1, 1, 120)
    for i in (0, 60, 119):
        row_changes = int(np.sum(ids[i, 1:] != ids[i, :-1])) + 1
        assert row_changes <= dl.count_linear_regions(net, [-1.0, ys[i]], [1.0, ys[i]])
    # the grid count is a lower bound that grows with the resolution
    assert dl.linear_regions_2d(net, resolution=40).count <= count


def test_linear_regions_2d_shallow_bound():
    width = 6
    net = _random_net(8, [width], 2)
    _, count = dl.linear_regions_2d(net, box=((-4, 4), (-4, 4)), resolution=150)
    assert count <= regions.max_regions_shallow(width, input_dim=2)


# --------------------------------------------------------------------------- bad input

_tanh_net = dl.MLP(1, [4], 1, activation="tanh", rng=0)
_relu_net = dl.MLP(1, [4], 1, rng=0)
_relu_net_2d = dl.MLP(2, [4], 1, rng=0)

BAD_INPUT = [
    (lambda: dl.count_linear_regions(_tanh_net, [0.0], [1.0]), ValueError, r"piecewise-linear.*tanh"),
    (lambda: dl.linear_regions_2d(dl.MLP(2, [3], 1, activation="gelu", rng=0)), ValueError, r"piecewise-linear.*gelu"),
    (lambda: dl.count_linear_regions(_relu_net, [0.5], [0.5]), ValueError, r"positive length.*start == end"),
    (lambda: dl.count_linear_regions(_relu_net, [0.0, 1.0], [1.0, 1.0]), ValueError, r"start must be one input point of shape \(1,\)"),
    (lambda: dl.count_linear_regions(_relu_net, [0.0], [np.nan]), ValueError, r"end contains NaN"),
    (lambda: dl.count_linear_regions(_relu_net, [0.0], [1.0], eps=0), ValueError, r"eps must be in"),
    (lambda: dl.linear_regions_2d(_relu_net), ValueError, r"2 inputs.*in_features = 1"),
    (lambda: dl.linear_regions_2d(_relu_net_2d, resolution=1), ValueError, r"resolution must be >= 2"),
    (lambda: dl.linear_regions_2d(_relu_net_2d, box=(1, 2)), ValueError, r"box must be"),
    (lambda: dl.linear_regions_2d(_relu_net_2d, box=((1, -1), (0, 1))), ValueError, r"x_min < x_max"),
    (lambda: regions.max_regions_shallow(0), ValueError, r"width must be >= 1"),
    (lambda: regions.max_regions_1d([3, 0]), ValueError, r"widths\[1\] must be >= 1"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUT)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_region_count_grows_with_depth_for_constructed_folds():
    # composing the tent map k times gives 3^k pieces: exponential in depth, linear in width
    fold = np.array([[3.0, -6.0, 6.0]])
    for depth in (1, 2, 3):
        weights = [np.ones((3, 1))] + [np.repeat(fold, 3, axis=0)] * (depth - 1) + [fold]
        first = np.array([1.0, -1 / 3, -2 / 3])
        biases = [first] + [first - 3.0] * (depth - 1) + [np.array([-3.0])]
        net = dl.Sequential.from_arrays(weights, biases, activation="relu")
        assert dl.count_linear_regions(net, [0.0], [1.0]) == 3 ** depth
    assert math.prod([4, 4, 4]) == regions.max_regions_1d([3, 3, 3])
