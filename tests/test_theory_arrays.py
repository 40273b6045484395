"""Mean-field theory on arrays of (σ_w², σ_b²), and at the edges of float64 (issue 13, class 4).

References: the scalar functions of :mod:`depthlab.signal.theory` (themselves checked against
scipy and closed forms in test_theory.py) for every array result, and large-q asymptotics
written out here for tanh: with u = √q z,

    E[sech⁴(√q z)]            = (4/3) / √(2π q)        (1 + O(1/q))    so χ1 ≈ σ_w² · 4 / (3 √(2π q))
    E[z tanh(√q z) sech²(√q z)] = 1 / (q √(2π))       (1 + O(1/q))    so χ_q ≈ σ_w² / (q^{3/2} √(2π))

(∫ sech⁴ = 4/3 and ∫ u tanh u sech² u du = 1, by parts.)
"""
import math
import subprocess
import sys

import numpy as np
import pytest

from depthlab.nn import activations
from depthlab.signal import theory

ROOT_2PI = math.sqrt(2 * math.pi)
ROOT_TOL = 2e-12      # two answers each within the root finder's 1e-12 (relative) of q*


# --------------------------------------------------------------------------------------
# arrays agree with the scalar path, point by point
# --------------------------------------------------------------------------------------

def _scalar_or_inf(function, *args):
    try:
        return function(*args)
    except theory.NoFixedPointError:
        return math.inf


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu", "selu", "relu", "identity"])
def test_phase_diagram_equals_scalar_calls(name):
    w = np.array([0.05, 0.5, 0.99, 1.0, 1.3, 2.0, 2.5, 4.0, 12.0])
    b = np.array([0.0, 1e-6, 0.05, 0.3, 2.0])
    diagram = theory.phase_diagram(name, w, b)
    assert diagram.q_star.shape == diagram.chi1.shape == (b.size, w.size)
    for i, sb2 in enumerate(b):
        for j, sw2 in enumerate(w):
            q = _scalar_or_inf(theory.fixed_point, name, sw2, sb2)
            if math.isinf(q):
                assert diagram.q_star[i, j] == math.inf
                continue
            assert diagram.q_star[i, j] == pytest.approx(q, rel=ROOT_TOL, abs=1e-300)
            assert diagram.chi1[i, j] == pytest.approx(theory.chi1(name, sw2, sb2), rel=ROOT_TOL)


@pytest.mark.parametrize("name, w_max, b_max", [("tanh", 4.0, 0.5), ("tanh", 100.0, 20.0), ("gelu", 4.0, 5.0),
                                                ("sigmoid", 200.0, 0.5)])
def test_explorer_grids_equal_scalar_calls_at_sampled_points(name, w_max, b_max):
    """The explorer's 100×100 grids (brackets walked up and down, Newton from interpolated starts)."""
    w, b = np.linspace(w_max / 100, w_max, 100), np.linspace(0.0, b_max, 100)
    diagram = theory.phase_diagram(name, w, b)
    rng = np.random.default_rng(17)
    for i, j in zip(rng.integers(0, 100, 8), rng.integers(0, 100, 8)):
        q = _scalar_or_inf(theory.fixed_point, name, float(w[j]), float(b[i]))
        if math.isinf(q):
            assert diagram.q_star[i, j] == math.inf
            continue
        assert diagram.q_star[i, j] == pytest.approx(q, rel=ROOT_TOL, abs=1e-300)
        assert diagram.chi1[i, j] == pytest.approx(theory.chi1(name, float(w[j]), float(b[i])), rel=ROOT_TOL)


def test_fixed_point_and_chi1_broadcast_like_numpy():
    w = np.linspace(0.5, 3.0, 4)
    b = np.array([[0.0], [0.1]])
    q = theory.fixed_point("tanh", w, b)
    chi = theory.chi1("tanh", w, b)
    assert q.shape == chi.shape == (2, 4)
    assert q[1, 2] == pytest.approx(theory.fixed_point("tanh", float(w[2]), 0.1), rel=ROOT_TOL)
    assert theory.fixed_point("tanh", [1.5, 2.0], 0.05).shape == (2,)   # lists take the array path
    assert isinstance(theory.fixed_point("tanh", 1.5, 0.05), float)     # scalars keep the scalar API


def test_chi1_array_at_a_given_q():
    w = np.array([0.7, 1.9])
    got = theory.chi1("tanh", w, 0.0, q=2.5)
    want = [theory.chi1("tanh", float(s), 0.0, q=2.5) for s in w]
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_depth_scales_on_arrays_equal_scalar_calls():
    w = np.array([0.8, 1.0, 1.8, 3.0])        # ordered, critical, chaotic (c* < 1)
    got = theory.depth_scales("tanh", w, 0.05)
    for j, sw2 in enumerate(w):
        want = theory.depth_scales("tanh", float(sw2), 0.05)
        for field in ("q_star", "chi1", "chi_q", "xi_q"):
            assert getattr(got, field)[j] == pytest.approx(getattr(want, field), rel=1e-10), field
        assert got.c_star[j] == pytest.approx(want.c_star, abs=1e-9)
        assert got.xi_c[j] == pytest.approx(want.xi_c, rel=1e-6)


def test_depth_scales_array_marks_unbounded_points_nan():
    got = theory.depth_scales("relu", np.array([1.0, 3.0]), 0.0)
    assert got.q_star[0] == 0.0 and got.q_star[1] == math.inf
    assert math.isnan(got.c_star[1]) and math.isnan(got.xi_c[1])


def test_variance_map_and_correlation_fixed_point_on_arrays():
    w, b = np.array([0.9, 1.7]), np.array([[0.0], [0.2]])
    maps = theory.variance_map("tanh", w, b, 1.3, 5)
    assert maps.shape == (2, 2, 6)
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(maps[i, j], theory.variance_map("tanh", float(w[j]), float(b[i, 0]), 1.3, 5),
                                       rtol=1e-14)
    c = theory.correlation_fixed_point("tanh", w, 0.2)
    assert c == pytest.approx([theory.correlation_fixed_point("tanh", float(s), 0.2) for s in w], abs=1e-15)


def test_critical_weight_variance_on_an_array_of_biases():
    b = np.array([0.0, 0.05, 0.2])
    np.testing.assert_array_equal(theory.critical_weight_variance("tanh", b), theory.critical_line("tanh", b))


BAD_ARRAYS = [  # (call, error type, message pattern)
    (lambda: theory.fixed_point("tanh", np.array([1.0, -1.0]), 0.0), ValueError, r"weight_variance must be > 0.*-1"),
    (lambda: theory.chi1("tanh", np.array([1.0]), np.array([-0.5])), ValueError, r"bias_variance must be >= 0.*-0\.5"),
    (lambda: theory.fixed_point("tanh", np.array([1.0, np.nan]), 0.0), ValueError, r"weight_variance contains NaN"),
    (lambda: theory.fixed_point("tanh", np.ones(3), np.ones(2)), ValueError, r"shape \(3,\).*shape \(2,\).*broadcast"),
    (lambda: theory.depth_scales("tanh", np.array(["1"]), 0.0), TypeError, r"weight_variance must hold real numbers"),
    (lambda: theory.phase_diagram("tanh", np.ones((2, 2)), [0.0]), ValueError, r"weight_variances must be 1-D"),
    (lambda: theory.phase_diagram("tanh", [1.0], [0.0, -1.0]), ValueError, r"bias_variance must be >= 0"),
]


@pytest.mark.parametrize("call, error, message", BAD_ARRAYS)
def test_bad_arrays(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --------------------------------------------------------------------------------------
# issue 13, class 4: the exact answer or a clear refusal naming the limit
# --------------------------------------------------------------------------------------

def _tanh_chi1_far(sw2, q):
    return sw2 / math.sqrt(q) * 4.0 / (3.0 * ROOT_2PI)


EDGES = [  # (call, expected value or (error type, message pattern))
    # the chaotic phase at astronomical σ_w²: q* and χ1 exact, c* and ξ_c refused with the limit
    (lambda: theory.fixed_point("tanh", 1e20, 0.0), pytest.approx(1e20, rel=1e-9)),
    (lambda: theory.chi1("tanh", 1e20, 0.0), pytest.approx(_tanh_chi1_far(1e20, 1e20), rel=1e-9)),
    (lambda: theory.depth_scales("tanh", 1e20, 0.0), (ValueError, r"q = 1e\+20.*limit q <= 1e\+12")),
    (lambda: theory.depth_scales("tanh", 1e100, 0.0), (ValueError, r"limit q <= 1e\+12")),
    (lambda: theory.correlation_fixed_point("tanh", 1e100, 0.0), (ValueError, r"limit q <= 1e\+12")),
    (lambda: theory.correlation_map("tanh", 2.0, 0.0, 0.5, q=1e13), (ValueError, r"limit q <= 1e\+12")),
    (lambda: theory.fixed_point("tanh", 1e308, 1e308), (ValueError, r"beyond the largest float64, 1\.798e\+308")),
    (lambda: theory.fixed_point("tanh", np.array([1e308]), 1e308), (ValueError, r"beyond the largest float64")),
    # just inside the correlation limit the chaotic c* of an odd activation is exactly 0
    (lambda: theory.correlation_fixed_point("tanh", 1e12, 0.0), 0.0),
    # a huge bias: the ordered phase; the depth scales are small but exact, not 0
    (lambda: theory.fixed_point("tanh", 1.0, 1e300), pytest.approx(1e300, rel=1e-12)),
    (lambda: theory.depth_scales("tanh", 1.0, 1e300).xi_q,
     pytest.approx(1.0 / (1.5 * math.log(1e300) + math.log(ROOT_2PI)), rel=1e-9)),
    (lambda: theory.depth_scales("tanh", 1.0, 1e300).xi_c,
     pytest.approx(-1.0 / math.log(_tanh_chi1_far(1.0, 1e300)), rel=1e-9)),
    (lambda: theory.depth_scales("tanh", np.array([1.0]), 1e300).xi_q[0],
     pytest.approx(1.0 / (1.5 * math.log(1e300) + math.log(ROOT_2PI)), rel=1e-9)),
    # χ1 of the ReLU family does not need q*: σ_w² (1 + a²) / 2 for every q
    (lambda: theory.chi1("relu", 3.0, 0.0), 1.5),
    (lambda: theory.chi1("relu", 2.0, 0.5), 1.0),
    (lambda: theory.chi1(activations.get("leaky_relu", negative_slope=0.2), 3.0, 0.0), pytest.approx(1.56, rel=1e-15)),
    (lambda: theory.chi1("identity", 3.0, 1.0), 3.0),
    (lambda: theory.chi1("relu", 3.0, 0.0, q=7.0), 1.5),
    (lambda: theory.chi1("relu", np.array([1.0, 3.0]), 0.0).tolist(), [0.5, 1.5]),
    (lambda: theory.chi1("relu", 3.0, 0.0, q=-1.0), (ValueError, r"q must be >= 0")),
    # without a closed form χ1 needs q*, which does not exist here: refused, naming why
    (lambda: theory.chi1("gelu", 3.0, 0.0), (theory.NoFixedPointError, r"grows without bound")),
    (lambda: theory.fixed_point("relu", 3.0, 0.0), (theory.NoFixedPointError, r"grows without bound")),
]


# at 1e308 the bracketing walk climbs ~500 factors of 4 with ever finer quadrature: seconds
EDGES_FAR = [
    (lambda: theory.fixed_point("tanh", 1e308, 0.0), pytest.approx(1e308, rel=1e-12)),
    (lambda: theory.chi1("tanh", 1e308, 0.0), pytest.approx(_tanh_chi1_far(1e308, 1e308), rel=1e-12)),
    (lambda: theory.depth_scales("tanh", 1e308, 0.0), (ValueError, r"limit q <= 1e\+12")),
]


@pytest.mark.parametrize("call, expected", EDGES + [pytest.param(*case, marks=pytest.mark.slow) for case in EDGES_FAR])
def test_theory_at_the_edges(call, expected):
    if isinstance(expected, tuple):
        error, message = expected
        with pytest.raises(error, match=message):
            call()
    else:
        assert call() == expected


def _theory_cli(*args):
    return subprocess.run([sys.executable, "-W", "error", "-m", "depthlab", "theory", *args],
                          capture_output=True, text=True, timeout=300)


def _row(stdout: str, first: str) -> list[str]:
    return next(line.split() for line in stdout.splitlines() if line.split()[:1] == [first])


@pytest.mark.slow
def test_theory_cli_at_astronomical_variances():
    done = _theory_cli("--weight-variance", "1e308")
    assert done.returncode == 0 and done.stderr == ""
    row = _row(done.stdout, "1.000e+308")
    assert row[1] == "chaotic" and row[2] == "1.000e+308" and row[4] == "5.319e+153"   # not "explodes"
    assert "limit q <= 1e+12" in done.stdout

    done = _theory_cli("--bias-variance", "1e300")
    assert done.returncode == 0 and done.stderr == ""          # no overflow warning (-W error)
    row = _row(done.stdout, "1")
    assert row[1] == "ordered" and row[5] == "9.642e-04"        # ξ_q is small, not 0

    done = _theory_cli("--activation", "relu", "--weight-variance", "3")
    assert done.returncode == 0
    assert _row(done.stdout, "3")[1:2] == ["explodes"] and _row(done.stdout, "3")[4] == "1.5"
