"""dl.theory's array forms against its scalar calls, and the inputs they must refuse clearly."""
import math

import numpy as np
import pytest

from depthlab.signal import theory

W = [0.5, 1.5, 2.5]          # ordered, chaotic; for ReLU 2.5 has no fixed point
B = [0.0, 0.05]


def _scalar(function, *args):
    """The scalar call, NaN where it raises NoFixedPointError (the array forms' rule)."""
    try:
        return function(*args)
    except theory.NoFixedPointError:
        return math.nan


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu"])
def test_correlation_fixed_point_array_is_nan_where_the_scalar_call_has_no_fixed_point(activation):
    got = theory.correlation_fixed_point(activation, np.array(W)[None, :], np.array(B)[:, None])
    expected = np.array([[_scalar(theory.correlation_fixed_point, activation, w, b) for w in W] for b in B])
    assert got.shape == (2, 3)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)
    scales = theory.depth_scales(activation, np.array(W)[None, :], np.array(B)[:, None])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(scales.c_star))      # as depth_scales says


@pytest.mark.parametrize("convert", [
    lambda v: np.asarray(v, dtype=np.float32),
    lambda v: list(v),
    lambda v: tuple(v),
    lambda v: np.asfortranarray(np.asarray(v, dtype=np.float64).reshape(1, -1)),
], ids=["float32", "list", "tuple", "fortran-2d"])
def test_array_kinds_give_the_scalar_numbers(convert):
    w = np.array([0.5, 1.0, 1.75], dtype=np.float32).astype(np.float64)   # exact in float32 too
    q = theory.fixed_point("tanh", convert(w), 0.0)
    chi = theory.chi1("tanh", convert(w), 0.0)
    assert q.shape == chi.shape == np.shape(convert(w))
    np.testing.assert_allclose(q.reshape(-1), [theory.fixed_point("tanh", float(v), 0.0) for v in w],
                               rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(chi.reshape(-1), [theory.chi1("tanh", float(v), 0.0) for v in w], rtol=1e-10)


def test_zero_dimensional_arrays_give_zero_dimensional_arrays():
    for activation in ("relu", "tanh"):
        chi = theory.chi1(activation, np.array(1.5), np.array(0.1))
        assert isinstance(chi, np.ndarray) and chi.shape == ()
        assert float(chi) == pytest.approx(theory.chi1(activation, 1.5, 0.1), rel=1e-12)


def test_negative_zero_bias_is_zero():
    assert not np.signbit(theory.fixed_point("relu", 1.5, -0.0))
    assert not np.signbit(theory.fixed_point("relu", [1.5], [-0.0])).any()


@pytest.mark.parametrize("call, error, message", [
    (lambda: theory.fixed_point("tanh", np.array([True]), 0.0), TypeError, r"weight_variance must hold real numbers, got booleans"),
    (lambda: theory.chi1("tanh", [1.5], [False]), TypeError, r"bias_variance must hold real numbers, got booleans"),
    (lambda: theory.phase_diagram("tanh", [True], [0.0]), TypeError, r"weight_variances must hold real numbers, got bool"),
    (lambda: theory.variance_map("tanh", 1.5, 0.0, 1.0, 10**30), ValueError, r"variance_map would return .* depth=1,000"),
    (lambda: theory.variance_map("tanh", np.ones(1000), 0.0, 1.0, 10**6), ValueError, r"more than its limit"),
    (lambda: theory.critical_line("tanh", [None]), TypeError, r"bias_variances must hold real numbers"),
    (lambda: theory.critical_line("tanh", ["a"]), TypeError, r"bias_variances must hold real numbers"),
    (lambda: theory.gaussian_expectation(3, 1.0), TypeError, r"function must be a callable"),
    (lambda: theory.gaussian_expectation(np.abs, 1.0, kinks=5), TypeError, r"kinks must be a sequence of numbers"),
    (lambda: theory.gaussian_expectation(np.abs, 1.0, kinks="0"), TypeError, r"kinks must be a sequence of numbers"),
    (lambda: theory.gaussian_expectation(np.abs, 1.0, kinks=[math.inf]), ValueError, r"kinks\[0\] must be finite"),
])
def test_bad_inputs_are_refused_by_name(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_gaussian_expectation_with_a_kink_is_exact():
    # E|√q z| = √(2q/π)
    assert theory.gaussian_expectation(np.abs, 2.0, kinks=np.array([0.0])) == pytest.approx(math.sqrt(4 / math.pi),
                                                                                             rel=1e-12)


@pytest.mark.parametrize("call", [
    lambda: theory.fixed_point("relu", 1.0, 1e308),             # σ_b² / (1 − σ_w²/2) = 2e308
    lambda: theory.fixed_point("identity", [0.5], 1e308),
    lambda: theory.phase_diagram("leaky_relu", [1.0], [1e308]),
])
def test_a_closed_form_fixed_point_beyond_float64_is_refused_not_inf(call):
    with pytest.raises(ValueError, match="beyond the largest float64"):
        call()
    assert theory.fixed_point("relu", 0.5, 1e308) == pytest.approx(1e308 / 0.75, rel=1e-15)   # still in range


def test_zero_dimensional_results_can_be_passed_back_as_scalars():
    q = theory.fixed_point("tanh", np.array(1.5), np.array(0.05))           # a 0-d array
    assert theory.chi1("tanh", 1.5, 0.05, q=q) == theory.chi1("tanh", 1.5, 0.05, q=float(q))
    assert theory.variance_map("tanh", 1.5, 0.05, q, 2)[0] == float(q)
    spec = [("tanh", np.array(0.02), np.array(0.01), 50, 50), ("tanh", 0.02, 0.01, 50, 1)]
    expected = theory.predicted_std([("tanh", 0.02, 0.01, 50, 50), ("tanh", 0.02, 0.01, 50, 1)], input_variance=2.0)
    got = theory.predicted_std(spec, input_variance=np.array(2.0))
    np.testing.assert_array_equal(got.preactivation_std, expected.preactivation_std)
    np.testing.assert_array_equal(got.backward_std, expected.backward_std)


@pytest.mark.parametrize("w", [[], [1.0, 3.0], np.ones((2, 3))], ids=["empty", "two", "2x3"])
def test_depth_scales_of_arrays_print_and_show_in_jupyter(w):
    scales = theory.depth_scales("tanh", w, 0.05)
    text = repr(scales)
    assert text.startswith(f"DepthScales(shape {np.shape(w)}:") and "xi_c=" in text
    assert scales._repr_html_().startswith("<pre>DepthScales(shape")


def test_depth_scales_at_the_edge_of_chaos_are_infinite_not_rounding_noise():
    # tanh at σ_w² = 1, σ_b² = 0: q* = 0 and χ_q = χ1 = φ'(0)² = 1 exactly; the quadrature gives 1 − 1.3e-14
    scalar = theory.depth_scales("tanh", 1.0, 0.0)
    array = theory.depth_scales("tanh", [1.0, 0.5], 0.0)
    assert scalar.xi_q == math.inf and array.xi_q[0] == math.inf
    assert array.xi_q[1] == pytest.approx(theory.depth_scales("tanh", 0.5, 0.0).xi_q, rel=1e-12)
    assert array.xi_q[1] == pytest.approx(-1 / math.log(0.5), rel=1e-9)          # q* = 0: χ_q = σ_w² φ'(0)²


def test_correlation_map_takes_one_point_and_says_where_arrays_go():
    assert theory.correlation_map("tanh", np.array(1.5), np.array(0.0), 0.5) == \
        theory.correlation_map("tanh", 1.5, 0.0, 0.5)
    with pytest.raises(TypeError, match="correlation_map takes one weight_variance .* use correlation_fixed_point"):
        theory.correlation_map("tanh", [1.5, 2.0], 0.0, 0.5)


@pytest.mark.parametrize("call", [
    lambda: theory.phase_diagram("tanh", np.linspace(0.1, 4, 4000), np.linspace(0, 1, 4000)),
    lambda: theory.chi1("relu", np.ones((1, 100_000)), np.zeros((1000, 1))),
])
def test_a_grid_too_large_for_memory_is_refused_before_it_is_built(call):
    with pytest.raises(ValueError, match=r"points: more than the 10,000,000"):
        call()


def test_depth_scales_compare_equal_in_the_array_form():
    w = np.array([1.0, 1.5, 3.0])
    a, b = theory.depth_scales("tanh", w, 0.05), theory.depth_scales("tanh", w.copy(), 0.05)
    assert a == b                                     # raised "truth value ambiguous"
    assert not a == theory.depth_scales("tanh", w + 0.1, 0.05)
    assert theory.depth_scales("tanh", 1.5, 0.05) == theory.depth_scales("tanh", 1.5, 0.05)
