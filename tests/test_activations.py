"""The activation table: values and derivatives against PyTorch, gains, resolution by name."""
import math

import numpy as np
import pytest
import torch

import depthlab as dl
from depthlab.nn import activations as A
from torch_reference import TORCH_ACTIVATION

TORCH = TORCH_ACTIVATION
POINTS = np.concatenate([np.linspace(-30, 30, 601), [-1e-12, 0.0, 1e-12, -700.0, 700.0]])


@pytest.mark.parametrize("name", A.names())
def test_value_and_derivative_match_torch(name):
    act = A.get(name)
    t = torch.tensor(POINTS, requires_grad=True)
    out = TORCH[name](t)
    out.sum().backward()
    with np.errstate(over="ignore"):  # exp(700) in a branch np.where discards is fine to overflow
        value = act(POINTS)
        derivative = act.derivative(POINTS, value)
    np.testing.assert_allclose(value, out.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(derivative, t.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(act.grad(POINTS), derivative, rtol=0, atol=0)


@pytest.mark.parametrize("name", A.names())
def test_float32_stays_float32(name):
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    act = A.get(name)
    h = act(x)
    assert h.dtype == np.float32 and act.derivative(x, h).dtype == np.float32


def test_gains_equal_torch_where_torch_has_them():
    for name, torch_name, param in [("identity", "linear", None), ("sigmoid", "sigmoid", None),
                                    ("tanh", "tanh", None), ("relu", "relu", None),
                                    ("selu", "selu", None)]:
        assert A.get(name).gain == pytest.approx(torch.nn.init.calculate_gain(torch_name, param), rel=1e-15)
    assert A.get("leaky_relu", negative_slope=0.2).gain == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.2), rel=1e-15)


@pytest.mark.parametrize("name", ["gelu", "silu", "elu", "softplus"])
def test_other_gains_preserve_the_second_moment(name):
    act = A.get(name)
    z = np.random.default_rng(0).standard_normal(2_000_000)
    assert act.gain == pytest.approx(1 / math.sqrt(np.mean(act(z) ** 2)), rel=5e-3)


def test_second_moment_gain_of_elu_matches_a_closed_form():
    # E[elu(z)²] = ½ + E[(e^z − 1)²; z < 0] = ½ + e²Φ(−2) − 2e^{1/2}Φ(−1) + ½
    from scipy.special import ndtr
    second = 1 + math.e**2 * ndtr(-2) - 2 * math.exp(0.5) * ndtr(-1)
    assert A.get("elu").gain == pytest.approx(1 / math.sqrt(second), rel=1e-10)


def test_resolution_by_name_spec_and_object():
    leaky = A.get("Leaky-ReLU", negative_slope=0.2)
    assert leaky.params == {"negative_slope": 0.2}
    assert A.get(leaky.spec()) == leaky
    assert A.get(leaky) is leaky
    assert A.get(None).name == "identity" and A.get("linear").name == "identity"
    assert A.get("swish").name == "silu"
    assert repr(A.get("elu", alpha=0.5)) == "elu(alpha=0.5)"


@pytest.mark.parametrize("call, error, pattern", [
    (lambda: A.get("rectifier"), ValueError, r"Unknown activation 'rectifier'.*Valid names"),
    (lambda: A.get(3), TypeError, r"activation must be a name"),
    (lambda: A.get("relu", alpha=2), TypeError, r"unexpected hyperparameters \['alpha'\]"),
    (lambda: A.get("leaky_relu", negative_slope="x"), TypeError, r"negative_slope must be a real number"),
    (lambda: A.get("elu", alpha=float("nan")), ValueError, r"alpha must be finite"),
])
def test_bad_activation_specs(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_activation_flags():
    assert A.get("relu").can_die and not A.get("leaky_relu").can_die
    assert A.get("tanh").saturates and A.get("sigmoid").saturates and not A.get("relu").saturates
    assert A.get("relu").piecewise_linear and not A.get("gelu").piecewise_linear
    assert dl.activations is A


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_gated_derivatives_read_the_gate_off_the_output_to_a_few_ulps(name, dtype):
    # a[f] = f·g(f): g(f) = h / f where h is a normal number, g(f) itself elsewhere (0, subnormal, NaN)
    from scipy import special

    rng = np.random.default_rng(1)
    tiny = np.finfo(dtype).smallest_subnormal * 4
    f = np.concatenate([rng.standard_normal(20_000) * scale for scale in (0.01, 1, 10, 40)] +
                       [[0.0, -0.0, tiny, -tiny, 700, -700, 1e30, -1e30, -37.5, -38.5, np.inf, -np.inf, np.nan]]).astype(dtype)
    gate = special.ndtr(f) if name == "gelu" else special.expit(f)
    with np.errstate(all="ignore"):
        if name == "gelu":
            slope = f * np.exp(-0.5 * f * f) * dtype(1 / np.sqrt(2 * np.pi))
            reference, size = gate + slope, np.abs(gate) + np.abs(slope)
        else:
            reference, size = gate * (1 + f * (1 - gate)), gate * (1 + np.abs(f) * (1 - gate))
        activation = dl.activations.get(name)
        derivative = activation.derivative(f, activation.function(f))
    assert derivative.dtype == dtype and derivative.shape == f.shape
    np.testing.assert_array_equal(np.isnan(derivative), np.isnan(reference.astype(dtype)))
    known = np.isfinite(reference)
    spacing = np.spacing(np.maximum(size[known], np.finfo(dtype).tiny).astype(dtype))
    error = np.abs(derivative[known] - reference[known]) / spacing
    assert error.max() <= 24                                    # ulps of the terms' size (cancellation near a' = 0)
    assert derivative[np.flatnonzero(f == 0)].tolist() == [0.5, 0.5]    # h = 0: the gate itself
    point = f[:1].reshape(())                                            # a 0-d array: the gate computed
    assert activation.derivative(point, activation.function(point)) == pytest.approx(reference[0], rel=1e-6)


@pytest.mark.parametrize("slope", [0.01, 0.2, 1.0, 1.5, 0.0, -0.5, 1e-300, 5e-324])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_leaky_relu_written_into_a_buffer_equals_its_function_bit_for_bit(slope, dtype):
    # max(f, slope·f) (min above 1, a masked copy at slope <= 0) where np.where's form made three
    # temporaries: the same values, sign of zero, NaN and infinities included, at the slope as
    # the dtype rounds it (1e-300 is 0 in float32, where 0·inf would be NaN under max)
    leaky = A.leaky_relu(slope)
    tiny = np.finfo(dtype).smallest_subnormal
    f = np.concatenate([np.random.default_rng(7).standard_normal(200) * 10,
                        [0.0, -0.0, np.nan, np.inf, -np.inf, tiny, -tiny, np.finfo(dtype).max, -np.finfo(dtype).max]])
    f = f.astype(dtype)
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        expected, out = leaky.function(f), np.full_like(f, 7.0)
        written = leaky.forward(f, out)
    assert written is out and written.dtype == dtype
    np.testing.assert_array_equal(np.signbit(written), np.signbit(expected))
    np.testing.assert_array_equal(written, expected)
    in_place = f.copy()                               # written over f itself: the same values
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        assert leaky.forward(in_place, in_place) is in_place
    np.testing.assert_array_equal(in_place, expected)
