"""minimize, the 2-D test functions and seed 004's six optimizers on x²/20 + y²."""
import numpy as np
import pytest

from depthlab import optim
from depthlab.nn.gradient_check import numerical_gradient
from depthlab.optim.functions import FUNCTIONS

START = np.array([-7.0, 2.0])


def _elliptic(x):
    return x[0] ** 2 / 20 + x[1] ** 2


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_analytic_gradients_match_central_differences(name, rng):
    function = FUNCTIONS[name]
    (x_lo, x_hi), (y_lo, y_hi) = function.box
    for point in rng.uniform([x_lo, y_lo], [x_hi, y_hi], size=(10, 2)):
        numerical = numerical_gradient(function.value, point)
        np.testing.assert_allclose(function.grad(point), numerical, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_evaluate_grids_and_know_their_minimum(name):
    function = FUNCTIONS[name]
    grid = np.stack(np.meshgrid(np.linspace(*function.box[0], 7), np.linspace(*function.box[1], 5)), axis=-1)
    assert function.value(grid).shape == (5, 7)
    assert function.grad(grid).shape == (5, 7, 2)
    assert function(np.array(function.start)) == function.value(np.array(function.start))
    if function.minimum is not None:
        minimum = np.array(function.minimum)
        assert function.value(minimum) == pytest.approx(0.0, abs=1e-12)
        np.testing.assert_allclose(function.grad(minimum), 0.0, atol=1e-12)
        assert np.all(function.value(grid) >= function.value(minimum))
    else:  # the saddle: stationary at the origin, unbounded below
        np.testing.assert_array_equal(function.grad(np.zeros(2)), 0.0)
        assert function.value(np.array([0.0, 10.0])) < 0


def test_functions_refuse_points_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        FUNCTIONS["rosenbrock"].value(np.zeros(3))


@pytest.mark.parametrize("name", sorted(optim.SEED_004_SETTINGS))
def test_seed_004_optimizers_reach_the_minimum(name):
    optimizer, hyper, steps = optim.SEED_004_SETTINGS[name]
    result = optim.minimize("elliptic", START, optimizer, steps, **hyper)
    assert result.trajectory.shape == (steps + 1, 2) and result.values.shape == (steps + 1,)
    assert result.grads.shape == (steps + 1, 2)
    np.testing.assert_array_equal(result.trajectory[0], START)
    np.testing.assert_array_equal(result.trajectory[-1], result.x)
    assert np.all(np.abs(result.x) < 1e-3)
    assert result.value < 1e-6 and result.values[-1] < result.values[0]
    np.testing.assert_allclose(result.values, [_elliptic(x) for x in result.trajectory], rtol=1e-12)


def test_compare_runs_all_six_settings():
    results = optim.compare(steps=30)
    assert list(results) == ["gd", "adagrad", "rmsprop", "momentum", "nesterov", "adam"]
    assert all(r.trajectory.shape == (31, 2) for r in results.values())


def test_momentum_is_seed_004s_momentum():
    """004's loop (v ← 0.1 v − γ g; x ← x + v), written out by hand, gives the same points."""
    lr, x, v, path = 0.5, START.copy(), np.zeros(2), [START.copy()]
    for _ in range(40):
        v = 0.1 * v - lr * np.array([x[0] / 10, 2 * x[1]])
        x = x + v
        path.append(x)
    result = optim.minimize("elliptic", START, "sgd", 40, lr=lr, momentum=0.1)
    np.testing.assert_allclose(result.trajectory, path, rtol=1e-12, atol=1e-15)


def test_nesterov_is_seed_004s_nesterov_at_the_look_ahead_point():
    """004 evaluates the gradient at y = x + μ v; torch-style Nesterov tracks θ = y itself."""
    lr, mu, x, v, look_ahead = 0.5, 0.4, START.copy(), np.zeros(2), [START.copy()]
    for _ in range(40):
        y = x + mu * v
        v = mu * v - lr * np.array([y[0] / 10, 2 * y[1]])
        x = x + v
        look_ahead.append(x + mu * v)
    result = optim.minimize("elliptic", START, "sgd", 40, lr=lr, momentum=mu, nesterov=True)
    np.testing.assert_allclose(result.trajectory, look_ahead, rtol=1e-12, atol=1e-15)


def test_adam_corrects_the_second_moment_with_beta2():
    """With 1 − β₂ᵗ, Adam's first step is lr·sign(g) (004's ρ1 correction gives about 10× less)."""
    result = optim.minimize("elliptic", START, "adam", 1, lr=0.3)
    np.testing.assert_allclose(result.trajectory[1] - START, [0.3, -0.3], rtol=1e-6)


def test_rmsprop_moves_against_the_gradient():
    """004's RMSProp assigned x = lr·g/... instead of subtracting it."""
    result = optim.minimize("elliptic", START, "rmsprop", 1, lr=0.01)
    assert np.all(np.sign(result.trajectory[1] - START) == -np.sign(result.grads[0]))
    assert np.all(np.abs(result.trajectory[1]) > 1.0)


def test_numerical_gradient_gives_the_same_trajectory():
    analytic = optim.minimize("rosenbrock", [-1.2, 1.0], "adam", 200, lr=0.01)
    numerical = optim.minimize(FUNCTIONS["rosenbrock"].value, [-1.2, 1.0], "adam", 200, lr=0.01)
    np.testing.assert_allclose(numerical.grads, analytic.grads, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(numerical.trajectory, analytic.trajectory, rtol=1e-6, atol=1e-8)


def test_any_vector_function_class_or_name(rng):
    target = rng.normal(size=5)
    result = optim.minimize(lambda x: float(np.sum((x - target) ** 2)), np.zeros(5), optim.SGD, 100,
                            grad=lambda x: 2 * (x - target), lr=0.2)
    np.testing.assert_allclose(result.x, target, atol=1e-9)
    assert result.converged and isinstance(result.optimizer, optim.SGD)
    slow = optim.minimize("rosenbrock", [-1.2, 1.0], "sgd", 10, lr=1e-4)
    assert not slow.converged


def test_float32_start_gives_float32_trajectory():
    result = optim.minimize("elliptic", START.astype(np.float32), "adam", 50, lr=0.1)
    assert result.x.dtype == result.trajectory.dtype == result.grads.dtype == np.float32
    numerical = optim.minimize(_elliptic, START.astype(np.float32), "adam", 50, lr=0.1)
    np.testing.assert_allclose(numerical.trajectory, result.trajectory, rtol=1e-4, atol=1e-5)


def test_saddle_is_escaped_along_its_negative_curvature():
    result = optim.minimize("saddle", FUNCTIONS["saddle"].start, "sgd", 30, lr=0.1)
    assert abs(result.x[0]) < 1e-2 and abs(result.x[1]) > 0.1
    assert result.values[-1] < result.values[0]


def test_divergence_stops_with_the_step():
    with pytest.raises(FloatingPointError, match=r"not finite at step \d+.*smaller learning rate"):
        optim.minimize("elliptic", START, "sgd", 3000, lr=1.5)


BAD_INPUTS = [
    (lambda: optim.minimize("elliptic", [[1.0, 2.0]]), ValueError, r"x0 must be 1-D"),
    (lambda: optim.minimize(_elliptic, []), ValueError, r"x0 is empty"),
    (lambda: optim.minimize("elliptic", START, steps=-1), ValueError, r"steps must be >= 0"),
    (lambda: optim.minimize("elliptic", START, "adamm"), ValueError, r"Unknown optimizer 'adamm'"),
    (lambda: optim.minimize("elliptc", START), ValueError, r"Unknown test function.*Did you mean 'elliptic'"),
    (lambda: optim.minimize(3.0, START), TypeError, r"f must be a callable"),
    (lambda: optim.minimize(_elliptic, START, grad=5), TypeError, r"grad must be a callable"),
    (lambda: optim.minimize(lambda x: x, START, steps=1), TypeError, r"f\(x\) must return one real number"),
    (lambda: optim.minimize(_elliptic, START, grad=lambda x: x[:1]), ValueError, r"shape \(2,\)"),
    (lambda: optim.minimize("elliptic", START, "sgd", momentum=0.9, betas=(0.9, 0.9)), TypeError,
     r"SGD has no hyperparameter 'betas'"),
    (lambda: optim.minimize("elliptic", START, "adam", lr=-1), ValueError, r"Invalid learning rate: -1"),
    (lambda: optim.minimize("elliptic", START, gtol=-1), ValueError, r"gtol must be in"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_divergence_with_numerical_gradient_also_names_the_step():
    with pytest.raises(FloatingPointError, match=r"f\(x\) is not finite at step 2"):
        optim.minimize(lambda x: np.exp(np.sum(x**2)), np.ones(2), "sgd", 10, lr=1.0)


def test_non_finite_gradient_is_reported():
    with pytest.raises(FloatingPointError, match=r"the gradient is not finite at step 0"):
        optim.minimize(_elliptic, START, "sgd", 5, grad=lambda x: np.array([np.nan, 0.0]))


def test_minimize_refuses_an_absurd_number_of_steps_and_a_gradient_that_is_not_real():
    with pytest.raises(ValueError, match="GiB"):
        optim.minimize("elliptic", [1.0, 2.0], steps=10**12)
    for bad in (np.array([1j, 1j]), np.array([None, None])):
        with pytest.raises(TypeError, match="real numbers"):
            optim.minimize(lambda x: float(x @ x), [1.0, 2.0], steps=2, grad=lambda x, bad=bad: bad)


@pytest.mark.parametrize("settings", [[1, 2], {"a": ("sgd",)}, {"a": ("sgd", 0.1, 10)}])
def test_compare_refuses_malformed_settings_with_an_example(settings):
    with pytest.raises(TypeError, match="Example"):
        optim.compare(settings=settings)


@pytest.mark.parametrize("point", [[1 + 1j, 2.0], np.array([1, 2], dtype=object), "ab"])
def test_test_functions_refuse_points_that_are_not_real(point):
    with pytest.raises((TypeError, ValueError), match="real points|shape"):
        FUNCTIONS["rosenbrock"](point)
    with pytest.raises((TypeError, ValueError), match="real points|shape"):
        FUNCTIONS["rosenbrock"].grad(point)
