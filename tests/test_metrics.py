"""Metrics against independent references (NumPy by hand, scikit-learn), and exact in batches."""
import numpy as np
import pytest
from sklearn.metrics import r2_score

import depthlab as dl
from depthlab.training import metrics


@pytest.fixture
def regression(rng):
    output = rng.standard_normal((37, 3))
    target = output + 0.5 * rng.standard_normal((37, 3)) + np.array([0.0, 5.0, -3.0])
    return output, target


def test_accuracy_multiclass_labels_and_one_hot(rng):
    logits = rng.standard_normal((50, 4))
    labels = rng.integers(0, 4, 50)
    expected = np.mean([np.argmax(row) == label for row, label in zip(logits, labels)])
    assert metrics.accuracy(logits, labels) == expected
    assert metrics.accuracy(logits, np.eye(4)[labels]) == expected        # one-hot rows
    assert metrics.accuracy(logits, labels.astype(float)) == expected     # integral floats


def test_accuracy_single_column_thresholds_logits_at_zero():
    logits = np.array([[-2.0], [0.5], [0.0], [3.0]])
    labels = np.array([0, 1, 1, 0])
    # predictions f > 0: 0, 1, 0, 1 -> correct, correct, wrong, wrong
    assert metrics.accuracy(logits, labels) == 0.5
    assert metrics.accuracy(logits, labels.reshape(-1, 1)) == 0.5
    probabilities = 1 / (1 + np.exp(-logits))
    assert metrics.Accuracy(threshold=0.5)(probabilities, labels) == 0.5


def test_mse_mae_by_hand(regression):
    output, target = regression
    assert metrics.mse(output, target) == pytest.approx(np.mean((output - target) ** 2), rel=1e-14)
    assert metrics.mae(output, target) == pytest.approx(np.mean(np.abs(output - target)), rel=1e-14)
    column = output[:, :1]
    assert metrics.mse(column, target[:, 0]) == pytest.approx(np.mean((column[:, 0] - target[:, 0]) ** 2))


def test_r2_matches_scikit_learn(regression):
    output, target = regression
    assert metrics.r2(output, target) == pytest.approx(r2_score(target, output), rel=1e-12)
    assert metrics.r2(output[:, :1], target[:, 0]) == pytest.approx(r2_score(target[:, 0], output[:, 0]), rel=1e-12)


def test_r2_constant_targets_follow_scikit_learn():
    target = np.full((5, 2), 3.0)
    exact = target.copy()
    off = target + np.array([0.0, 1.0])
    assert metrics.r2(exact, target) == r2_score(target, exact) == 1.0
    assert metrics.r2(off, target) == pytest.approx(r2_score(target, off))  # columns score 1 and 0


@pytest.mark.parametrize("name", ["accuracy", "mse", "mae", "r2"])
def test_statistics_combine_exactly_across_batches(name, rng):
    metric = metrics.get(name)
    if name == "accuracy":
        output, target = rng.standard_normal((101, 5)), rng.integers(0, 5, 101)
    else:
        output = rng.standard_normal((101, 2))
        target = 1e6 + output + rng.standard_normal((101, 2))  # large mean: no cancellation allowed
    checked = metric.check_target(target, output.shape)
    combined = None
    for rows in np.array_split(rng.permutation(101), [7, 40, 41, 90]):
        combined = metric.combine(combined, metric.statistics(output[rows], checked[rows]))
    assert metric.result(combined) == pytest.approx(metric(output, target), rel=1e-10, abs=1e-12)


def test_float32_outputs_give_python_floats(rng):
    output = rng.standard_normal((20, 3)).astype(np.float32)
    value = metrics.mse(output, np.zeros((20, 3), dtype=np.float32))
    assert isinstance(value, float)
    assert value == pytest.approx(float(np.mean(output.astype(np.float64) ** 2)), rel=1e-6)


def test_get_resolves_names_aliases_objects_and_functions():
    assert metrics.get("ACC") is metrics.accuracy
    assert metrics.get("mean_squared_error") is metrics.mse
    assert metrics.get(metrics.r2) is metrics.r2
    assert set(metrics.names()) == {"accuracy", "mse", "mae", "r2"}

    def max_error(output, target):
        return float(np.max(np.abs(output - target)))

    wrapped = metrics.get(max_error)
    assert wrapped.name == "max_error"
    assert wrapped(np.array([[1.0], [4.0]]), np.array([[0.0], [0.0]])) == 4.0


def test_directions_for_early_stopping():
    assert metrics.accuracy.higher_is_better and metrics.r2.higher_is_better
    assert not metrics.mse.higher_is_better and not metrics.mae.higher_is_better


def test_dl_exports_metrics_module():
    assert dl.metrics.accuracy is metrics.accuracy


BAD_CALLS = [
    ("unknown name", lambda: metrics.get("acuracy"), ValueError,
     r"Unknown metric 'acuracy'.*Valid names: accuracy, mae, mse, r2.*Did you mean 'accuracy'"),
    ("not a metric", lambda: metrics.get(3), TypeError, r"a metric must be a name"),
    ("a class", lambda: metrics.get(metrics.Accuracy), TypeError, r"pass a metric instance, e.g. Accuracy\(\)"),
    ("1-D output", lambda: metrics.mse(np.zeros(3), np.zeros(3)), ValueError, r"reshape\(-1, 1\)"),
    ("shape mismatch", lambda: metrics.mse(np.zeros((3, 2)), np.zeros((3, 3))), ValueError,
     r"mse: target shape \(3, 3\) does not match output shape \(3, 2\)"),
    ("NaN target", lambda: metrics.mae(np.zeros((2, 1)), np.array([[0.0], [np.nan]])), ValueError, r"NaN or Inf"),
    ("fractional labels", lambda: metrics.accuracy(np.zeros((2, 3)), np.array([0.5, 1.0])), ValueError,
     r"integer class labels"),
    ("label out of range", lambda: metrics.accuracy(np.zeros((2, 3)), np.array([0, 3])), ValueError,
     r"labels must be integers in \[0, 2\]"),
    ("binary label out of range", lambda: metrics.accuracy(np.zeros((2, 1)), np.array([0, 2])), ValueError,
     r"\[0, 1\]"),
    ("label count", lambda: metrics.accuracy(np.zeros((3, 4)), np.array([0, 1])), ValueError,
     r"expected \(3,\) \(labels\) or \(3, 4\) \(one-hot\)"),
    ("string labels", lambda: metrics.accuracy(np.zeros((2, 2)), np.array(["a", "b"])), TypeError,
     r"targets must be numbers"),
    ("empty output", lambda: metrics.r2(np.zeros((0, 2)), np.zeros((0, 2))), ValueError, r"empty"),
    ("abstract base", lambda: metrics.Metric(), TypeError, r"abstract"),
]


@pytest.mark.parametrize("label, call, error, pattern", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input(label, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


@pytest.mark.parametrize("threshold, error", [("x", TypeError), (None, TypeError), (float("nan"), ValueError)])
def test_accuracy_threshold_must_be_a_finite_number(threshold, error):
    with pytest.raises(error, match="threshold"):
        metrics.Accuracy(threshold)


@pytest.mark.parametrize("returned", ["x", np.ones(3), None])
def test_a_metric_function_returning_no_number_is_named_in_the_error(returned):
    def odd(output, target):
        return returned

    with pytest.raises(TypeError, match="metric 'odd'.*one real number"):
        metrics.get(odd)(np.ones((4, 2)), np.ones((4, 2)))
    with pytest.raises(TypeError, match="name must be a string"):
        metrics.MeanOfBatches(odd, name=3)
