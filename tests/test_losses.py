"""Losses: values and gradients against PyTorch (float64) and central differences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import depthlab as dl
from depthlab.nn import losses

N, D, C = 7, 3, 5


def _regression(rng, shape=(N, D)):
    return rng.standard_normal(shape), rng.standard_normal(shape)


def _labels(rng):
    return rng.standard_normal((N, C)) * 3, rng.integers(0, C, size=N)


def _probabilities(rng):
    logits = rng.standard_normal((N, C)) * 3
    target = rng.dirichlet(np.ones(C), size=N)
    target[0] *= 0.7                       # a row not summing to 1: PyTorch's general formula
    return logits, target


def _binary(rng):
    return rng.standard_normal((N, D)) * 4, rng.uniform(0, 1, size=(N, D))


# name, depthlab loss, data maker, PyTorch reference on float64 tensors
CASES = [
    ("sum_squares", losses.sum_squares, _regression, lambda o, t: F.mse_loss(o, t, reduction="sum")),
    ("mse", losses.mse, _regression, lambda o, t: F.mse_loss(o, t)),
    ("half_sum_squares", losses.half_sum_squares, _regression, lambda o, t: 0.5 * F.mse_loss(o, t, reduction="sum")),
    ("cross_entropy_labels", losses.cross_entropy, _labels, F.cross_entropy),
    ("cross_entropy_probabilities", losses.cross_entropy, _probabilities, F.cross_entropy),
    ("bce_with_logits", losses.binary_cross_entropy_with_logits, _binary, F.binary_cross_entropy_with_logits),
]
IDS = [case[0] for case in CASES]


def _torch_value_and_grad(reference, output, target):
    o = torch.tensor(output, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(target)
    value = reference(o, t)
    value.backward()
    return value.item(), o.grad.numpy()


@pytest.mark.parametrize("name, loss, make, reference", CASES, ids=IDS)
def test_matches_torch(name, loss, make, reference, rng):
    output, target = make(rng)
    expected_value, expected_grad = _torch_value_and_grad(reference, output, target)
    np.testing.assert_allclose(loss.value(output, target), expected_value, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loss.grad(output, target), expected_grad, rtol=1e-12, atol=1e-12)
    value, grad = loss.value_and_grad(output, target)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-12)
    assert isinstance(value, float) and grad.shape == output.shape and grad.dtype == np.float64


@pytest.mark.parametrize("name, loss, make, reference", CASES, ids=IDS)
def test_grad_matches_central_differences(name, loss, make, reference, rng):
    output, target = make(rng)
    step = 1e-6
    numerical = np.empty_like(output)
    for index in np.ndindex(output.shape):
        plus, minus = output.copy(), output.copy()
        plus[index] += step
        minus[index] -= step
        numerical[index] = (loss.value(plus, target) - loss.value(minus, target)) / (2 * step)
    np.testing.assert_allclose(loss.grad(output, target), numerical, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name, loss, make, reference", CASES, ids=IDS)
def test_inputs_are_not_modified(name, loss, make, reference, rng):
    output, target = make(rng)
    output_before, target_before = output.copy(), target.copy()
    loss.value_and_grad(output, target)
    loss.grad(output, target)
    loss.value(output, target)
    np.testing.assert_array_equal(output, output_before)
    np.testing.assert_array_equal(target, target_before)


@pytest.mark.parametrize("name, loss, make, reference", CASES, ids=IDS)
def test_float32_in_float32_out(name, loss, make, reference, rng):
    output, target = make(rng)
    value64, grad64 = loss.value_and_grad(output, target)
    output32 = output.astype(np.float32)
    value32, grad32 = loss.value_and_grad(output32, target)      # float64 target is cast down
    assert grad32.dtype == np.float32 and loss.grad(output32, target).dtype == np.float32
    assert isinstance(value32, float)
    np.testing.assert_allclose(value32, value64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad32, grad64, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape", [(600, 10), (600, 1), (600, 40), (2, 17)])
def test_cross_entropy_shapes_match_torch(shape, rng):
    """Wide and narrow class counts, small and large batches (the row reductions differ)."""
    logits = rng.standard_normal(shape) * 5
    labels = rng.integers(0, shape[1], size=shape[0])
    soft = rng.dirichlet(np.ones(shape[1]), size=shape[0])
    for target in (labels, soft):
        expected_value, expected_grad = _torch_value_and_grad(F.cross_entropy, logits, target)
        value, grad = losses.cross_entropy.value_and_grad(logits, target)
        np.testing.assert_allclose(value, expected_value, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)
        assert losses.cross_entropy.value(logits, target) == pytest.approx(value, rel=1e-14, abs=1e-15)


def test_extreme_logits_cross_entropy():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]])
    labels = np.array([1, 1, 2, 0])
    value, grad = losses.cross_entropy.value_and_grad(logits, labels)
    assert np.isfinite(value) and np.isfinite(grad).all()
    expected_value, expected_grad = _torch_value_and_grad(F.cross_entropy, logits, labels)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)
    # closed form: row 0 puts all mass on class 0, label 1 costs 2e4
    assert value == pytest.approx((2e4 + 0 + np.log(3) + np.log(2)) / 4, rel=1e-12)
    probabilities = np.eye(3)[labels]
    np.testing.assert_allclose(losses.cross_entropy.value_and_grad(logits, probabilities)[1], grad, atol=1e-15)
    value32, grad32 = losses.cross_entropy.value_and_grad(logits.astype(np.float32), labels)
    assert np.isfinite(value32) and np.isfinite(grad32).all() and grad32.dtype == np.float32
    many = np.tile(logits, (200, 1))                               # a large batch: other row reductions
    value, grad = losses.cross_entropy.value_and_grad(many, np.tile(labels, 200))
    assert value == pytest.approx(expected_value, rel=1e-12)
    np.testing.assert_allclose(grad * 200, np.tile(expected_grad, (200, 1)), rtol=1e-12, atol=1e-15)


def test_extreme_logits_bce():
    logits = np.array([[1e4, -1e4], [-1e4, 1e4], [0.0, 30.0]])
    target = np.array([[0.0, 1.0], [0.25, 1.0], [0.5, 0.0]])
    value, grad = losses.binary_cross_entropy_with_logits.value_and_grad(logits, target)
    assert np.isfinite(value) and np.isfinite(grad).all()
    expected_value, expected_grad = _torch_value_and_grad(F.binary_cross_entropy_with_logits, logits, target)
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)


def test_one_hot_and_float_labels_equal_integer_labels(rng):
    logits, labels = _labels(rng)
    expected = losses.cross_entropy.value_and_grad(logits, labels)
    for target in (np.eye(C)[labels], np.eye(C, dtype=int)[labels], labels.astype(float),
                   labels.astype(np.uint8), labels.tolist()):
        value, grad = losses.cross_entropy.value_and_grad(logits, target)
        assert value == pytest.approx(expected[0], rel=1e-14)
        np.testing.assert_allclose(grad, expected[1], rtol=1e-14, atol=1e-17)


def test_regression_target_forms(rng):
    output = rng.standard_normal((N, 1))
    integer_target = rng.integers(-3, 3, size=(N, 1))
    for loss in (losses.sum_squares, losses.mse, losses.half_sum_squares):
        expected = loss.value_and_grad(output, integer_target.astype(float))
        for target in (integer_target, integer_target.ravel(), integer_target.ravel().astype(float)):
            value, grad = loss.value_and_grad(output, target)
            assert value == expected[0] and grad.shape == (N, 1)
            np.testing.assert_array_equal(grad, expected[1])


def test_seed_conventions(rng):
    output, target = _regression(rng)
    residual = output - target
    assert losses.sum_squares.value(output, target) == pytest.approx(np.square(residual).sum(), rel=1e-14)
    assert losses.half_sum_squares.value(output, target) == pytest.approx(0.5 * np.square(residual).sum(), rel=1e-14)
    np.testing.assert_allclose(losses.half_sum_squares.grad(output, target), residual, rtol=1e-15)
    np.testing.assert_allclose(losses.sum_squares.grad(output, target), 2 * residual, rtol=1e-15)
    np.testing.assert_allclose(losses.mse.grad(output, target), 2 * residual / residual.size, rtol=1e-15)


def test_fortran_ordered_and_strided_output(rng):
    output, target = _regression(rng, (N, 2 * D))
    for view in (np.asfortranarray(output), output[:, ::2]):
        expected = losses.mse.value_and_grad(np.ascontiguousarray(view), target[:, : view.shape[1]])
        value, grad = losses.mse.value_and_grad(view, target[:, : view.shape[1]])
        assert value == pytest.approx(expected[0], rel=1e-14)
        np.testing.assert_allclose(grad, expected[1], rtol=1e-14)


@pytest.mark.parametrize("shape", [(40, 10), (3, 8), (9, 1), (1, 6)])
def test_cross_entropy_any_memory_layout(shape, rng):
    """Fortran-ordered and strided logits give the C-ordered result (labels and probabilities)."""
    wide = rng.standard_normal((shape[0], 2 * shape[1])) * 4
    labels = rng.integers(0, shape[1], size=shape[0])
    soft = rng.dirichlet(np.ones(shape[1]), size=shape[0])
    contiguous = np.ascontiguousarray(wide[:, ::2])
    for target in (labels, soft):
        expected_value, expected_grad = _torch_value_and_grad(F.cross_entropy, contiguous, target)
        for view in (contiguous, np.asfortranarray(contiguous), wide[:, ::2], wide[::-1, ::2][::-1]):
            loss = losses.cross_entropy
            for value, grad in (loss.value_and_grad(view, target), (loss.value(view, target), loss.grad(view, target))):
                assert value == pytest.approx(expected_value, rel=1e-12)
                np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)


def test_cross_entropy_label_dtypes(rng):
    logits, labels = _labels(rng)
    expected = losses.cross_entropy.value_and_grad(logits, labels)
    for dtype in (np.intp, np.int64, np.int32, np.int8, np.uint8, np.uint64):
        target = labels.astype(dtype)
        for value, grad in (losses.cross_entropy.value_and_grad(logits, target),
                            (losses.cross_entropy.value(logits, target), losses.cross_entropy.grad(logits, target))):
            assert value == expected[0]
            np.testing.assert_array_equal(grad, expected[1])
    strided = np.repeat(labels, 2)[::2]                     # a non-contiguous label vector
    np.testing.assert_array_equal(losses.cross_entropy.grad(logits, strided), expected[1])


def test_gradients_are_fresh_writable_arrays(rng):
    """Cached helpers (ones, index vectors) never leak: writing into a result changes nothing later."""
    logits, labels = _labels(rng)
    for loss, target in ((losses.cross_entropy, labels), (losses.mse, np.zeros_like(logits))):
        first = loss.grad(logits, target)
        expected = first.copy()
        first[...] = 7.0
        second, third = loss.grad(logits, target), loss.value_and_grad(logits, target)[1]
        assert second.flags.writeable and not np.shares_memory(second, first)
        np.testing.assert_array_equal(second, expected)
        np.testing.assert_array_equal(third, expected)


def test_registry_and_get():
    assert set(losses.LOSSES) == {"sum_squares", "mse", "half_sum_squares", "cross_entropy",
                                  "binary_cross_entropy_with_logits"}
    for name, loss in losses.LOSSES.items():
        assert loss.name == name and losses.get(name) is loss and getattr(losses, name) is loss
        assert "Reduction:" in loss.__doc__
        assert losses.get(name.upper()) is loss
    assert losses.get("mean_squared_error") is losses.mse
    assert losses.get("least_squares") is losses.sum_squares
    assert losses.get("CE") is losses.cross_entropy
    assert losses.get("softmax-cross-entropy") is losses.cross_entropy
    assert losses.get("bce_with_logits") is losses.binary_cross_entropy_with_logits
    assert losses.get(losses.mse) is losses.mse
    assert losses.names() == list(losses.LOSSES)
    assert {name: loss.reduction for name, loss in losses.LOSSES.items()} == {
        "sum_squares": "sum", "mse": "mean", "half_sum_squares": "sum", "cross_entropy": "mean",
        "binary_cross_entropy_with_logits": "mean"}

    class Custom:
        def value(self, output, target):
            return 0.0

        def grad(self, output, target):
            return np.zeros_like(output)

    custom = Custom()
    assert losses.get(custom) is custom


def test_user_subclass_gets_validation(rng):
    class MeanAbsolute(losses.Loss):
        name = "mean_absolute"

        def _value_and_grad(self, output, target):
            residual = output - target
            return float(np.abs(residual).mean()), np.sign(residual) / residual.size

    loss = MeanAbsolute()
    output, target = _regression(rng)
    assert losses.get(loss) is loss
    assert loss.value(output, target) == pytest.approx(np.abs(output - target).mean(), rel=1e-14)
    np.testing.assert_array_equal(loss.grad(output, target), np.sign(output - target) / output.size)
    with pytest.raises(ValueError, match=r"mean_absolute: target shape \(7, 2\) does not match"):
        loss.value(output, target[:, :2])
    with pytest.raises(TypeError, match="abstract"):
        losses.Loss()


def test_package_attribute_access(rng):
    logits, labels = _labels(rng)
    np.testing.assert_array_equal(dl.losses.cross_entropy.grad(logits, labels),
                                  losses.cross_entropy.grad(logits, labels))
    assert losses.mse(np.ones((2, 1)), np.zeros((2, 1))) == 1.0     # __call__ is value


ONES = np.ones((4, 2))
LOGITS = np.zeros((4, 3))
BAD_INPUTS = [
    (lambda: losses.mse.value(np.ones(4), np.ones(4)), ValueError, r"mse output must be 2-D.*shape \(4,\).*output\.reshape\(-1, 1\)"),
    (lambda: losses.mse.value(np.ones((2, 3, 1)), np.ones((2, 3, 1))), ValueError, r"output must be 2-D.*\(2, 3, 1\)"),
    (lambda: losses.mse.value(np.ones((0, 2)), np.ones((0, 2))), ValueError, r"output is empty"),
    (lambda: losses.mse.value(np.array([["a", "b"]]), ONES), TypeError, r"output must hold real numbers"),
    (lambda: losses.mse.value(ONES, np.ones((4, 3))), ValueError,
     r"target shape \(4, 3\) does not match output shape \(4, 2\)"),
    (lambda: losses.mse.grad(ONES, np.ones(4)), ValueError, r"target shape \(4,\) does not match output shape \(4, 2\)"),
    (lambda: losses.sum_squares.value(ONES, np.ones((2, 4))), ValueError, r"target shape \(2, 4\).*\(4, 2\)"),
    (lambda: losses.sum_squares.value(ONES, np.full((4, 2), np.nan)), ValueError, r"target contains NaN or Inf"),
    (lambda: losses.half_sum_squares.grad(ONES, np.full((4, 2), np.inf)), ValueError, r"NaN or Inf"),
    (lambda: losses.mse.value(ONES, np.full((4, 2), None, dtype=object)), TypeError, r"target must hold real numbers"),
    (lambda: losses.cross_entropy.value(LOGITS, [0, 1, 2, 3]), ValueError,
     r"label 3 at index 3 is out of range.*\[0, 2\].*3 classes"),
    (lambda: losses.cross_entropy.grad(LOGITS, [0, -1, 2, 1]), ValueError, r"label -1 at index 1 .*\[0, 2\]"),
    (lambda: losses.cross_entropy.grad(LOGITS, np.array([0, 1, 2, 3])), ValueError, r"label 3 at index 3 is out of range"),
    (lambda: losses.cross_entropy.grad(LOGITS, np.array([0, np.iinfo(np.int64).min, 1, 2])), ValueError,
     r"label -9.2\d*e\+18 at index 1 is out of range"),
    (lambda: losses.cross_entropy.grad(LOGITS, np.array([2, 1, 0, -1], dtype=np.int32)), ValueError,
     r"label -1 at index 3 is out of range"),
    (lambda: losses.cross_entropy.grad(LOGITS, np.array([0, 1, 2, 3], dtype=np.uint8)), ValueError, r"label 3 at index 3"),
    (lambda: losses.cross_entropy.value(LOGITS, [0, 1.5, 2, 1]), ValueError, r"label 1.5 at index 1 is not an integer.*\[0, 2\]"),
    (lambda: losses.cross_entropy.value(LOGITS, [0, 7.0, 2, 1]), ValueError, r"label 7 at index 1 is out of range"),
    (lambda: losses.cross_entropy.value(LOGITS, [0, np.nan, 2, 1]), ValueError, r"NaN or Inf"),
    (lambda: losses.cross_entropy.value(LOGITS, [0, 1, 2]), ValueError, r"target shape \(3,\) does not match output shape \(4, 3\)"),
    (lambda: losses.cross_entropy.value(LOGITS, np.zeros((4, 1), int)), ValueError, r"\(4, 1\).*y\.ravel\(\)"),
    (lambda: losses.cross_entropy.value(LOGITS, np.full((4, 3), -0.5)), ValueError, r"probabilities in \[0, 1\], got -0.5"),
    (lambda: losses.cross_entropy.value(LOGITS, np.array(["a", "b", "c", "d"])), TypeError, r"labels must be integers"),
    (lambda: losses.cross_entropy.value(np.zeros(3), [0]), ValueError, r"output must be 2-D"),
    (lambda: losses.binary_cross_entropy_with_logits.value(ONES, np.full((4, 2), 1.5)), ValueError,
     r"probabilities in \[0, 1\], got 1.5 at index \(0, 0\)"),
    (lambda: losses.binary_cross_entropy_with_logits.grad(ONES, -ONES), ValueError, r"\[0, 1\], got -1"),
    (lambda: losses.binary_cross_entropy_with_logits.value(ONES, np.ones((4, 3))), ValueError, r"target shape"),
    (lambda: losses.get("hinge"), ValueError, r"Unknown loss 'hinge'.*Valid names:.*cross_entropy.*mse"),
    (lambda: losses.get(3), TypeError, r"loss must be a name.*got int"),
    (lambda: losses.get(None), TypeError, r"loss must be a name"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()
