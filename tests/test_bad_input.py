"""Bad input to the core gets a ValueError/TypeError naming the argument — never a silent result."""
import numpy as np
import pytest

import depthlab as dl

NET = dl.MLP(3, [4], 2, rng=0)
X = np.zeros((5, 3))


def corrupted_file(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"this is not a zip archive")
    return path


def foreign_file(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, a=np.ones(3))
    return path


def truncated_file(tmp_path):
    path = tmp_path / "net.npz"
    NET.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def tampered_file(tmp_path):
    path = tmp_path / "net.npz"
    NET.save(path)
    arrays = dict(np.load(path))
    arrays["weights_0"] = np.ones((2, 2))
    np.savez(path, **arrays)
    return path


BAD_CALLS = [
    ("wrong width", lambda: NET(np.zeros((5, 4))), ValueError, r"x has 4 features .* 3 are expected"),
    ("wrong rank", lambda: NET(np.zeros((5, 3, 1))), ValueError, r"x must be 2-D"),
    ("1-D input", lambda: NET(np.zeros(3)), ValueError, r"x\.reshape\(1, -1\)"),
    ("1-D input, one feature", lambda: dl.MLP(1, [2], 1)(np.zeros(7)), ValueError, r"x\.reshape\(-1, 1\)"),
    ("NaN input", lambda: NET(np.array([[0.0, np.nan, 0.0]])), ValueError, r"x contains NaN or Inf"),
    ("Inf input", lambda: NET.forward(np.array([[np.inf, 0.0, 0.0]]), record=True), ValueError, r"NaN or Inf"),
    ("object input", lambda: NET(np.array([[1, "a", None]], dtype=object)), TypeError, r"x must hold real numbers"),
    ("string input", lambda: NET([["a", "b", "c"]]), TypeError, r"real numbers"),
    ("empty batch", lambda: NET(np.zeros((0, 3))), ValueError, r"empty"),
    ("unknown activation", lambda: dl.MLP(3, [4], 2, activation="rellu"), ValueError,
     r"Unknown activation 'rellu'.*Valid names:.*relu.*Did you mean 'relu'"),
    ("unknown init", lambda: dl.MLP(3, [4], 2, init="kaiming"), ValueError, r"kaiming.*(Valid|valid)"),
    ("unknown loss", lambda: dl.gradcheck(NET, X, np.zeros((5, 2)), loss="hinge"), ValueError,
     r"hinge.*(Valid|valid)"),
    ("zero width", lambda: dl.MLP(3, [0], 2), ValueError, r"hidden\[0\] must be >= 1, got 0"),
    ("negative width", lambda: dl.MLP(3, [4, -2], 2), ValueError, r"hidden\[1\]"),
    ("zero inputs", lambda: dl.MLP(0, [4], 2), ValueError, r"in_features must be >= 1"),
    ("float width", lambda: dl.MLP(3, [4.5], 2), TypeError, r"hidden\[0\] must be an int"),
    ("activation list length", lambda: dl.MLP(3, [4, 4], 2, activation=["relu"]), ValueError,
     r"activation must have one entry per layer \(2\), got 1"),
    ("bad dtype", lambda: dl.MLP(3, [4], 2, dtype="int32"), ValueError, r"dtype must be 'float64' or 'float32'"),
    ("bad rng", lambda: dl.MLP(3, [4], 2, rng="seed"), TypeError, r"rng must be"),
    ("bias shape", lambda: dl.Sequential.from_arrays([np.ones((3, 2))], [np.ones(4)]), ValueError,
     r"bias.* shape \(4,\).*weights\[0\] has shape \(3, 2\)"),
    ("weights do not chain", lambda: dl.Sequential.from_arrays([np.ones((3, 2)), np.ones((1, 4))]), ValueError,
     r"do not chain.*gives 3 features.*expects 4"),
    ("one Linear twice", lambda: (lambda lin: dl.Sequential([lin, "relu", lin]))(dl.Linear(3, 3)), ValueError,
     r"layers\[2\] is the Linear layer already given as layers\[0\].*Build a new Linear"),
    ("bias count", lambda: dl.Sequential.from_arrays([np.ones((3, 2))], [np.ones(3), np.ones(3)]), ValueError,
     r"one entry per weight matrix"),
    ("weights not a list", lambda: dl.Sequential.from_arrays(np.ones((3, 2))), TypeError, r"weights must be a non-empty list"),
    ("1-D weight", lambda: dl.Sequential.from_arrays([np.ones(3)]), ValueError, r"weights\[0\] must be 2-D"),
    ("NaN weight allowed? no: object weight", lambda: dl.Sequential.from_arrays([np.array([[None]])]), TypeError,
     r"real numbers"),
    ("grad_output shape", lambda: (NET.forward(X, record=True), NET.backward(np.ones((5, 3)))), ValueError,
     r"grad_output must have the output's shape \(5, 2\)"),
    ("grad_output NaN", lambda: (NET.forward(X, record=True), NET.backward(np.full((5, 2), np.nan))), ValueError,
     r"grad_output contains NaN"),
    ("labels out of range", lambda: dl.losses.cross_entropy.value(np.zeros((2, 3)), np.array([0, 3])), ValueError,
     r"label.*3.*range|range.*3"),
    ("negative label", lambda: dl.losses.cross_entropy.grad(np.zeros((2, 3)), np.array([-1, 0])), ValueError,
     r"-1"),
    ("NaN target", lambda: dl.losses.mse.value(np.zeros((2, 1)), np.array([[np.nan], [0.0]])), ValueError,
     r"NaN or Inf"),
    ("target shape", lambda: dl.losses.mse.value(np.zeros((2, 3)), np.zeros((2, 2))), ValueError, r"\(2, 3\).*\(2, 2\)|\(2, 2\).*\(2, 3\)"),
    ("not a network", lambda: dl.save("net", "x.npz"), TypeError, r"Sequential"),
]


@pytest.mark.parametrize("call, error, pattern", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_is_refused_clearly(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


@pytest.mark.parametrize("make", [corrupted_file, foreign_file, truncated_file, tampered_file])
def test_load_refuses_corrupted_or_foreign_files(tmp_path, make):
    with pytest.raises(ValueError, match="not a valid depthlab network file"):
        dl.load(make(tmp_path))


def test_load_of_a_missing_file():
    with pytest.raises(FileNotFoundError, match="no network file"):
        dl.load("/nonexistent/net.npz")


def test_integer_input_is_converted_to_float():
    out = NET(np.zeros((2, 3), dtype=int))
    assert out.dtype == np.float64
