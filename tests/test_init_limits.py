"""Initializers at the edges of memory and of the float range: clear refusals, never inf weights."""
import numpy as np
import pytest
import torch

import depthlab as dl

INIT = dl.init


@pytest.mark.parametrize("name", ["normal", "uniform", "zeros", "he_normal", "xavier_uniform", "orthogonal",
                                  "truncated_normal", "variance_scaling", "constant"])
def test_a_shape_beyond_memory_is_refused_before_numpy_tries(name):
    with pytest.raises(ValueError, match=r"shape \(1000000, 1000000\).*memory"):
        getattr(INIT, name)((10**6, 10**6), rng=0)


@pytest.mark.parametrize("name", ["he_normal", "xavier_normal", "lecun_uniform", "variance_scaling"])
def test_a_fan_too_large_for_any_layer_is_refused(name):
    with pytest.raises(ValueError, match="fan_in must be at most 2\\*\\*62"):
        getattr(INIT, name)((4, 3), rng=0, fan_in=10**400)


@pytest.mark.parametrize("call", [
    lambda: INIT.normal((3, 3), std=1e300, dtype="float32", rng=0),
    lambda: INIT.normal((3, 3), mean=1e308, std=1e308, rng=0),
    lambda: INIT.constant((2, 2), value=1e300, dtype="float32"),
    lambda: INIT.truncated_normal((2, 2), mean=0.0, std=1e300, low=-1e300, high=1e300, dtype="float32", rng=0),
    lambda: INIT.variance_scaling((2, 2), scale=1e300, rng=0, dtype="float32"),
    lambda: dl.MLP(2, [3], 1, init=1e300, dtype="float32"),
])
def test_values_beyond_the_dtype_are_refused_not_made_inf(call):
    with pytest.raises(ValueError, match="beyond the range of float"):
        call()


def test_uniform_range_wider_than_float64_is_refused():
    with pytest.raises(ValueError, match="high − low must be within float64's range"):
        INIT.uniform((2, 2), low=-1e308, high=1e308, rng=0)


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 1 / 3, 2.5, -0.7, 1e100])
def test_leaky_relu_gain_is_pytorchs_bit_for_bit(slope):
    assert INIT.calculate_gain("leaky_relu", slope) == torch.nn.init.calculate_gain("leaky_relu", slope)


def test_leaky_relu_gain_of_a_huge_slope_does_not_overflow():
    # √(2 / (1 + s²)) → √2 / s; PyTorch's formula overflows squaring s = 1e200
    assert INIT.calculate_gain("leaky_relu", 1e200) == pytest.approx(np.sqrt(2.0) / 1e200, rel=1e-15)
