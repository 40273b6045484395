"""Data sets of the seeds, and the two index tools a training loop needs.

Synthetic tasks (NumPy only; every function takes ``rng``, an int seed or an
``np.random.Generator``, and returns plain arrays, float64 unless ``dtype="float32"``):

- :func:`sine` — 003's f(x) = sin(10x) + 0.75 on x ~ U[−1, 1];
- :func:`piecewise_2d` — 003's 2-D function with a jump of −25 in the quadrant x, y < 0;
- :func:`gaussian_regression` — 002's standard-normal batch, 128 × 1000 inputs, 128 × 10 targets;
- :func:`gaussian_inputs` — 004's 1000 × 100 standard-normal input for the activation histograms.

Classification sets (optional extra ``depthlab[data]``, imported on first use), returned as a
:class:`Dataset` ``(x_train, y_train, x_test, y_test)`` with integer labels:

- :func:`mnist1d` — MNIST-1D (Greydanus 2020), generated offline and cached as ``.npz``;
- :func:`digits` — scikit-learn's bundled 8 × 8 digits, scaled to [0, 1], stratified split.

Tools: :func:`train_test_split` and :func:`batches` (minibatch indices drawn without
replacement, one permutation per epoch, as 003 describes SGD).
"""
from __future__ import annotations

import functools
import os
import random
import warnings
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import _files
from .._checks import require, check_positive_int, check_real, resolve_dtype, resolve_rng, unmasked

Array = np.ndarray


class Dataset(NamedTuple):
    """A train/test split; unpacks as ``x_train, y_train, x_test, y_test = dataset``.

    Attributes
    ----------
    x_train : np.ndarray, shape (N_train, D)
    y_train : np.ndarray, shape (N_train,) integer labels, or (N_train, D_out) targets
    x_test : np.ndarray, shape (N_test, D)
    y_test : np.ndarray, shape (N_test,) or (N_test, D_out)
    """

    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array




# the most entries a generator or an index permutation here may allocate (8 GiB of float64)
MAX_ENTRIES = 2**30


def _check_size(what: str, *sizes: int) -> None:
    """Refuse, before allocating, a request of more than ``MAX_ENTRIES`` numbers."""
    total = 1
    for size in sizes:
        total *= size
    if total > MAX_ENTRIES:
        raise ValueError(f"{what} would allocate {float(min(total, 10**300)):.3g} numbers (shape "
                         f"{str(sizes)[:60]}), more than the {MAX_ENTRIES:.3g} this function makes at once; ask for "
                         "fewer samples or features.")


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}.")
    return bool(value)


def _samples(value, name: str) -> Array:
    """An array of samples (first axis N) from an array or nested lists; masks and ragged rows refused."""
    if isinstance(value, np.ma.MaskedArray):
        value = unmasked(value, name)
    if not isinstance(value, (np.ndarray, list, tuple)) and not hasattr(value, "__array__"):
        raise TypeError(f"{name} must be an array or a list of samples, got {type(value).__name__}. "
                        "Convert it first, e.g. np.asarray(list(values)).")
    try:
        return np.asarray(value)
    except ValueError:
        raise ValueError(f"{name} has rows of different lengths; every sample must have the same shape.") from None


# ----------------------------------------------------------------------------- synthetic tasks

def sine_function(x: Array) -> Array:
    """003's target f(x) = sin(10x) + 0.75, elementwise."""
    return np.sin(10 * x) + 0.75


def piecewise_2d_function(x: Array) -> Array:
    """003's target on points ``x`` of shape (N, 2), returning shape (N, 1).

    f(x, y) = 25x + 17.8y + 0.25xy + 15x² − 5y² − 25·[x < 0 and y < 0]
    """
    u, v = x[:, 0:1], x[:, 1:2]
    jump = (u < 0) & (v < 0)
    return 25 * u + 17.8 * v + 0.25 * u * v + 15 * u * u - 5 * v * v - 25 * jump


def sine(n: int = 1000, rng=0, noise: float = 0.0, dtype=np.float64) -> tuple[Array, Array]:
    """003's 1-D regression task: y = sin(10x) + 0.75 (+ Gaussian noise).

    Parameters
    ----------
    n : int
        Number of samples.
    rng : int, np.random.Generator or None
        Seed or generator; x is drawn first, then the noise.
    noise : float
        Standard deviation of the Gaussian noise added to y (0: exact values).
    dtype : 'float64' or 'float32'

    Returns
    -------
    x : np.ndarray, shape (n, 1)
        Uniform on [−1, 1].
    y : np.ndarray, shape (n, 1)
    """
    n = check_positive_int(n, "n")
    _check_size("sine", n, 1)
    noise = check_real(noise, "noise", low=0)
    dtype = resolve_dtype(dtype)
    generator = resolve_rng(rng)
    x = generator.uniform(-1.0, 1.0, size=(n, 1))
    y = sine_function(x)
    if noise > 0:
        y += noise * generator.standard_normal((n, 1))
    return x.astype(dtype, copy=False), y.astype(dtype, copy=False)


def piecewise_2d(n: int = 1000, rng=0, dtype=np.float64) -> tuple[Array, Array]:
    """003's 2-D regression task (see :func:`piecewise_2d_function`).

    Returns
    -------
    x : np.ndarray, shape (n, 2)
        Uniform on [−1, 1]²; column 0 is the function's x, column 1 its y.
    y : np.ndarray, shape (n, 1)
    """
    n = check_positive_int(n, "n")
    _check_size("piecewise_2d", n, 2)
    dtype = resolve_dtype(dtype)
    x = resolve_rng(rng).uniform(-1.0, 1.0, size=(n, 2))
    return x.astype(dtype, copy=False), piecewise_2d_function(x).astype(dtype, copy=False)


def gaussian_regression(n: int = 128, d_in: int = 1000, d_out: int = 10, rng=0,
                        dtype=np.float64) -> tuple[Array, Array]:
    """002's task: standard-normal inputs and (unrelated) standard-normal targets.

    Returns
    -------
    x : np.ndarray, shape (n, d_in)
    y : np.ndarray, shape (n, d_out)
        Drawn after x from the same generator.
    """
    n = check_positive_int(n, "n")
    d_in = check_positive_int(d_in, "d_in")
    d_out = check_positive_int(d_out, "d_out")
    _check_size("gaussian_regression", n, d_in + d_out)
    dtype = resolve_dtype(dtype)
    generator = resolve_rng(rng)
    x = generator.standard_normal((n, d_in))
    y = generator.standard_normal((n, d_out))
    return x.astype(dtype, copy=False), y.astype(dtype, copy=False)


def gaussian_inputs(n: int = 1000, d: int = 100, rng=0, dtype=np.float64) -> Array:
    """004's Question 4 input: x ∈ R^{1000×100}, standard normal.

    Returns
    -------
    x : np.ndarray, shape (n, d)
    """
    n = check_positive_int(n, "n")
    d = check_positive_int(d, "d")
    _check_size("gaussian_inputs", n, d)
    dtype = resolve_dtype(dtype)
    return resolve_rng(rng).standard_normal((n, d)).astype(dtype, copy=False)


# ----------------------------------------------------------------------------- splits and batches

def train_test_split(x, y, test_fraction: float = 0.25, rng=0, *, stratify: bool = False) -> Dataset:
    """Split samples at random into a training and a test part.

    Parameters
    ----------
    x : array_like, shape (N, ...)
    y : array_like, shape (N, ...)
        Same number of samples as ``x``; 1-D labels when ``stratify``.
    test_fraction : float in (0, 1)
        round(test_fraction·N) samples go to the test part (with ``stratify``: that fraction
        of each class, rounded per class).
    rng : int, np.random.Generator or None
    stratify : bool
        Keep each label's proportion equal in both parts.

    Returns
    -------
    Dataset
        Both parts keep the samples' original order; arrays are copies (fancy indexing).
    """
    x, y = _samples(x, "x"), _samples(y, "y")
    stratify = _check_flag(stratify, "stratify")
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same number of samples (first axis), got shapes {x.shape} and {y.shape}."
        )
    fraction = check_real(test_fraction, "test_fraction", low=0, high=1, low_open=True, high_open=True)
    n = x.shape[0]
    order = resolve_rng(rng).permutation(n)
    if stratify:
        if y.ndim != 1:
            raise ValueError(f"stratify=True needs 1-D labels y, got shape {y.shape}.")
        if y.dtype.kind not in "biuUS" and not (y.dtype.kind == "f" and np.isfinite(y).all()):
            raise TypeError(f"stratify=True needs class labels (integers or strings), got y of dtype {y.dtype}"
                            f"{' with NaN or Inf' if y.dtype.kind == 'f' else ''}.")
        order = order[np.argsort(y[order], kind="stable")]          # grouped by class, random within
        _, counts = np.unique(y, return_counts=True)
        starts = np.cumsum(counts) - counts
        rank = np.arange(n) - np.repeat(starts, counts)
        n_test = np.floor(fraction * counts + 0.5).astype(np.intp)
        is_test = rank < np.repeat(n_test, counts)
    else:
        is_test = np.arange(n) < int(np.floor(fraction * n + 0.5))
    test = np.sort(order[is_test])
    train = np.sort(order[~is_test])
    if test.size == 0 or train.size == 0:
        raise ValueError(
            f"test_fraction={fraction:g} of {n} samples leaves {train.size} for training and {test.size} "
            "for testing; both parts need at least one sample. Use more samples or another fraction."
        )
    return Dataset(x[train], y[train], x[test], y[test])


def batches(n: int, batch_size: int, rng=None, shuffle: bool = True):
    """Minibatch indices for one epoch, drawn without replacement.

    One permutation of ``range(n)`` per call, cut into consecutive slices of ``batch_size``;
    the last, partial batch is kept. Every index appears exactly once per epoch.

    Parameters
    ----------
    n : int
        Number of samples.
    batch_size : int
        Samples per batch (at most ``n`` are used: a larger value gives one full batch).
    rng : int, np.random.Generator or None
        Pass the same Generator every epoch for a fresh order each epoch (an int seed gives
        the same order every time).
    shuffle : bool
        ``False``: the batches are ``0..n−1`` in order and ``rng`` is not used.

    Returns
    -------
    iterator of np.ndarray, shape (batch_size,) (the last possibly shorter), dtype intp
        Read-only views into the epoch's permutation.

    >>> [b.tolist() for b in batches(5, 2, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    """
    n = check_positive_int(n, "n")
    batch_size = check_positive_int(batch_size, "batch_size")
    _check_size("batches", n)
    shuffle = _check_flag(shuffle, "shuffle")
    order = resolve_rng(rng).permutation(n) if shuffle else np.arange(n)
    order.flags.writeable = False
    return (order[start:start + batch_size] for start in range(0, n, batch_size))


# ----------------------------------------------------------------------------- MNIST-1D

MNIST1D_SHAPES = {"x_train": (4000, 40), "y_train": (4000,), "x_test": (1000, 40), "y_test": (1000,)}


def default_cache_dir() -> Path:
    """``$DEPTHLAB_CACHE`` if set, else ``~/.cache/depthlab``."""
    return Path(os.environ.get("DEPTHLAB_CACHE") or Path.home() / ".cache" / "depthlab")


def _generate_mnist1d(seed: int) -> dict[str, Array]:
    """Run the authors' generator with their default arguments and ``seed``.

    ``mnist1d.data.make_dataset`` seeds NumPy's and Python's global generators; their states
    are saved and restored so the caller's global randomness is untouched.
    """
    package = require("mnist1d", "The MNIST-1D data set (depthlab.data.mnist1d)")
    args = package.data.get_dataset_args()
    args.seed = seed
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        raw = package.data.make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {"x_train": np.asarray(raw["x"], dtype=np.float64), "y_train": np.asarray(raw["y"], dtype=np.int64),
            "x_test": np.asarray(raw["x_test"], dtype=np.float64), "y_test": np.asarray(raw["y_test"], dtype=np.int64)}


def _load_cached(path: Path) -> dict[str, Array] | None:
    """The cached arrays, or None when the file is missing, unreadable or not MNIST-1D."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in MNIST1D_SHAPES}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if any(arrays[key].shape != shape for key, shape in MNIST1D_SHAPES.items()):
        return None
    return arrays


def _store(path: Path, arrays: dict[str, Array]) -> None:
    """Write atomically (temporary file, then rename), so parallel runs never see half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _files.atomic_writer(path, "wb") as file:
            np.savez(file, **arrays)
    except OSError as error:
        warnings.warn(f"could not cache MNIST-1D at {path} ({error}); it will be generated again next time.",
                      stacklevel=3)


def mnist1d(seed: int = 42, cache_dir=None, dtype=np.float64) -> Dataset:
    """MNIST-1D: 5000 one-dimensional "digit" signals of 40 samples, 10 classes.

    Generated offline by the ``mnist1d`` package's ``make_dataset`` with its default
    arguments (those of the authors' reported results; seed 42 is their published set),
    split 4000 train / 1000 test, inputs standardized over the whole set. The first call
    with a given seed takes about a second and writes ``mnist1d_seed{seed}.npz`` to the
    cache; later calls load it.

    Parameters
    ----------
    seed : int in [0, 2**32)
        The generator's seed (the package seeds NumPy's legacy global generator, so an int
        is needed; the caller's global random state is restored afterwards).
    cache_dir : str or Path, optional
        Default: ``$DEPTHLAB_CACHE`` or ``~/.cache/depthlab``.
    dtype : 'float64' or 'float32'
        dtype of the inputs; labels are int64.

    Returns
    -------
    Dataset
        x_train (4000, 40), y_train (4000,), x_test (1000, 40), y_test (1000,), labels 0..9.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"seed must be an int in [0, 2**32), got {type(seed).__name__} {seed!r}. The mnist1d "
            "generator seeds NumPy's legacy global state, so a Generator cannot be used; pass e.g. seed=42."
        )
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}.")
    dtype = resolve_dtype(dtype)
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a folder path (str or Path) or None, got {type(cache_dir).__name__} "
                        f"{cache_dir!r}.")
    path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"mnist1d_seed{int(seed)}.npz"
    arrays = _load_cached(path)
    if arrays is None:
        arrays = _generate_mnist1d(int(seed))
        _store(path, arrays)
    return Dataset(arrays["x_train"].astype(dtype, copy=False), arrays["y_train"],
                   arrays["x_test"].astype(dtype, copy=False), arrays["y_test"])


# ----------------------------------------------------------------------------- scikit-learn digits

def digits(test_fraction: float = 0.25, rng=0, dtype=np.float64) -> Dataset:
    """scikit-learn's bundled 8 × 8 handwritten digits (1797 images, no download).

    Pixels (0..16 in the original) are divided by 16, so inputs lie in [0, 1]; the split is
    stratified by class (see :func:`train_test_split`).

    Returns
    -------
    Dataset
        x_train (N_train, 64), y_train (N_train,) int64 labels 0..9, x_test (N_test, 64),
        y_test (N_test,); N_test ≈ test_fraction · 1797.
    """
    dtype = resolve_dtype(dtype)
    pixels, labels = _digits_arrays()
    return train_test_split((pixels / 16.0).astype(dtype, copy=False), labels, test_fraction, rng,
                            stratify=True)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[Array, Array]:
    """scikit-learn's digits as read-only arrays, parsed once per process (it reads a CSV)."""
    bunch = require("sklearn.datasets", "The digits data set (scikit-learn's load_digits)").load_digits()
    pixels, labels = np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)
    pixels.flags.writeable = labels.flags.writeable = False
    return pixels, labels
