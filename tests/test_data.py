"""Data sets: shapes, formulas, seeds, MNIST-1D caching, digits split, minibatch indices."""
import sys

import numpy as np
import pytest

from depthlab.training import data


def _seed_piecewise(x, y):
    """003's function exactly as the seed writes it (scalar, Python ``and``)."""
    return 25 * x + 17.8 * y + 0.25 * x * y + x * x * 15.0 - y * y * 5.0 - 25 * (x < 0.0 and y < 0.0)


# ----------------------------------------------------------------------------- synthetic tasks

def test_sine_shapes_and_formula():
    x, y = data.sine(500, rng=3)
    assert x.shape == (500, 1) and y.shape == (500, 1)
    assert x.dtype == np.float64 and y.dtype == np.float64
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.9 and x.max() > 0.9
    np.testing.assert_array_equal(y, np.sin(10 * x) + 0.75)
    np.testing.assert_array_equal(data.sine_function(x), y)


def test_sine_noise_has_the_requested_std():
    x, y = data.sine(20000, rng=0, noise=0.3)
    residual = y - (np.sin(10 * x) + 0.75)
    assert abs(residual.mean()) < 0.01
    assert residual.std() == pytest.approx(0.3, rel=0.03)
    x_clean, _ = data.sine(20000, rng=0)
    np.testing.assert_array_equal(x, x_clean)          # x is drawn before the noise


def test_piecewise_2d_matches_the_seed_formula():
    x, y = data.piecewise_2d(400, rng=1)
    assert x.shape == (400, 2) and y.shape == (400, 1) and y.dtype == np.float64
    assert x.min() >= -1 and x.max() <= 1
    expected = np.array([[_seed_piecewise(a, b)] for a, b in x])
    np.testing.assert_allclose(y, expected, rtol=1e-14, atol=1e-13)
    quadrant = (x[:, 0] < 0) & (x[:, 1] < 0)
    assert 50 < quadrant.sum() < 150                   # about a quarter of the points jump
    corner = data.piecewise_2d_function(np.array([[-1e-12, -1e-12], [1e-12, -1e-12]]))
    np.testing.assert_allclose(corner.ravel(), [-25, 0], atol=1e-9)


def test_gaussian_tasks():
    x, y = data.gaussian_regression()
    assert x.shape == (128, 1000) and y.shape == (128, 10)
    assert abs(x.mean()) < 0.01 and x.std() == pytest.approx(1, rel=0.01)
    inputs = data.gaussian_inputs()
    assert inputs.shape == (1000, 100) and inputs.dtype == np.float64
    assert abs(inputs.mean()) < 0.01 and inputs.std() == pytest.approx(1, rel=0.01)
    x2, y2 = data.gaussian_regression(n=4, d_in=3, d_out=2, rng=5)
    assert x2.shape == (4, 3) and y2.shape == (4, 2)


@pytest.mark.parametrize("make", [
    lambda **kw: data.sine(50, noise=0.1, **kw),
    lambda **kw: data.piecewise_2d(50, **kw),
    lambda **kw: data.gaussian_regression(8, 6, 3, **kw),
    lambda **kw: (data.gaussian_inputs(8, 6, **kw),),
], ids=["sine", "piecewise_2d", "gaussian_regression", "gaussian_inputs"])
def test_seeds_and_dtypes(make):
    first, again, other = make(rng=7), make(rng=7), make(rng=8)
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    from_generator = make(rng=np.random.default_rng(7))
    for a, b in zip(first, from_generator):
        np.testing.assert_array_equal(a, b)
    single = make(rng=7, dtype="float32")
    for a, b in zip(first, single):
        assert b.dtype == np.float32
        np.testing.assert_array_equal(b, a.astype(np.float32))   # same samples, cast


def test_global_random_state_untouched():
    np.random.seed(99)
    expected = np.random.random_sample(3)
    np.random.seed(99)
    data.sine(10, rng=None)
    data.gaussian_regression(4, 3, 2, rng=None)
    np.testing.assert_array_equal(np.random.random_sample(3), expected)


# ----------------------------------------------------------------------------- splits and batches

def test_train_test_split_partitions_the_samples():
    x = np.arange(100) * 10
    y = np.arange(100)
    x_train, y_train, x_test, y_test = data.train_test_split(x, y, 0.25, rng=0)
    assert len(x_test) == 25 and len(x_train) == 75
    np.testing.assert_array_equal(x_train, y_train * 10)
    np.testing.assert_array_equal(x_test, y_test * 10)
    assert sorted(np.concatenate([y_train, y_test]).tolist()) == list(range(100))
    assert np.all(np.diff(y_train) > 0) and np.all(np.diff(y_test) > 0)      # original order kept
    again = data.train_test_split(x, y, 0.25, rng=0)
    np.testing.assert_array_equal(again.y_test, y_test)
    assert not np.array_equal(data.train_test_split(x, y, 0.25, rng=1).y_test, y_test)


def test_train_test_split_stratified_and_multicolumn_targets():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [40, 100, 60])
    rng.shuffle(labels)
    split = data.train_test_split(np.arange(200), labels, 0.2, rng=3, stratify=True)
    np.testing.assert_array_equal(np.bincount(split.y_test), [8, 20, 12])
    np.testing.assert_array_equal(np.bincount(split.y_train), [32, 80, 48])
    np.testing.assert_array_equal(labels[split.x_test], split.y_test)
    targets = rng.standard_normal((30, 2))
    split = data.train_test_split(rng.standard_normal((30, 4)), targets, 0.5, rng=0)
    assert split.x_train.shape == (15, 4) and split.y_test.shape == (15, 2)


@pytest.mark.parametrize("n, batch_size", [(10, 3), (10, 5), (10, 10), (7, 100), (1, 1)])
def test_batches_cover_every_index_once(n, batch_size):
    parts = list(data.batches(n, batch_size, rng=0))
    sizes = [len(p) for p in parts]
    full, rest = divmod(n, batch_size)
    assert sizes == [batch_size] * full + ([rest] if rest else [])
    joined = np.concatenate(parts)
    assert joined.dtype.kind == "i"
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))


def test_batches_order():
    assert [b.tolist() for b in data.batches(5, 2, shuffle=False)] == [[0, 1], [2, 3], [4]]
    generator = np.random.default_rng(0)
    first = np.concatenate(list(data.batches(50, 8, rng=generator)))
    second = np.concatenate(list(data.batches(50, 8, rng=generator)))
    assert not np.array_equal(first, second)                    # a new order each epoch
    np.testing.assert_array_equal(np.concatenate(list(data.batches(50, 8, rng=4))),
                                  np.concatenate(list(data.batches(50, 8, rng=4))))
    batch = next(data.batches(50, 8, rng=4))
    with pytest.raises(ValueError):
        batch[0] = 3                                             # read-only view


# ----------------------------------------------------------------------------- MNIST-1D

@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory):
    """Generate MNIST-1D once (a few seconds) into a private cache directory."""
    cache = tmp_path_factory.mktemp("mnist1d_cache")
    np.random.seed(1234)
    expected_global = np.random.random_sample(4)
    np.random.seed(1234)
    dataset = data.mnist1d(seed=42, cache_dir=cache)
    after_global = np.random.random_sample(4)
    return cache, dataset, expected_global, after_global


@pytest.mark.slow
def test_mnist1d_generated(mnist1d_cache):
    cache, dataset, expected_global, after_global = mnist1d_cache
    x_train, y_train, x_test, y_test = dataset
    assert x_train.shape == (4000, 40) and x_test.shape == (1000, 40)
    assert y_train.shape == (4000,) and y_test.shape == (1000,)
    assert x_train.dtype == np.float64 and y_train.dtype == np.int64
    assert set(np.unique(y_train)) == set(range(10)) and set(np.unique(y_test)) == set(range(10))
    assert np.bincount(np.concatenate([y_train, y_test])).tolist() == [500] * 10
    everything = np.concatenate([x_train, x_test])
    assert abs(everything.mean()) < 1e-12 and everything.std() == pytest.approx(1, rel=1e-12)
    assert (cache / "mnist1d_seed42.npz").is_file()
    np.testing.assert_array_equal(after_global, expected_global)     # caller's global state restored


@pytest.mark.slow
def test_mnist1d_loads_from_cache(mnist1d_cache, monkeypatch):
    cache, dataset, _, _ = mnist1d_cache

    def refuse(seed):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(data, "_generate_mnist1d", refuse)
    again = data.mnist1d(seed=42, cache_dir=str(cache))
    for a, b in zip(dataset, again):
        np.testing.assert_array_equal(a, b)
    single = data.mnist1d(seed=42, cache_dir=cache, dtype="float32")
    assert single.x_train.dtype == np.float32 and single.y_train.dtype == np.int64
    np.testing.assert_array_equal(single.x_test, dataset.x_test.astype(np.float32))


def _fake_arrays(fill):
    return {key: np.full(shape, fill, dtype=np.int64 if key.startswith("y") else np.float64)
            for key, shape in data.MNIST1D_SHAPES.items()}


def test_mnist1d_env_cache_dir_and_corrupt_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTHLAB_CACHE", str(tmp_path))
    assert data.default_cache_dir() == tmp_path
    np.savez(tmp_path / "mnist1d_seed7.npz", **_fake_arrays(3))
    monkeypatch.setattr(data, "_generate_mnist1d", lambda seed: _fake_arrays(seed))
    assert data.mnist1d(seed=7).y_train[0] == 3                      # found through $DEPTHLAB_CACHE
    (tmp_path / "mnist1d_seed7.npz").write_bytes(b"not a zip file")
    assert data.mnist1d(seed=7).y_train[0] == 7                      # unreadable: rebuilt ...
    monkeypatch.setattr(data, "_generate_mnist1d", lambda seed: _fake_arrays(-1))
    assert data.mnist1d(seed=7).y_train[0] == 7                      # ... and cached again
    np.savez(tmp_path / "mnist1d_seed8.npz", x_train=np.zeros((3, 40)))
    assert data.mnist1d(seed=8).y_train[0] == -1                     # wrong content: rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist1d_seed7.npz", "mnist1d_seed8.npz"]


# ----------------------------------------------------------------------------- digits

def test_digits_scaling_and_stratified_split():
    x_train, y_train, x_test, y_test = data.digits()
    assert x_train.shape[1] == 64 and len(x_train) + len(x_test) == 1797
    assert len(x_test) == pytest.approx(0.25 * 1797, abs=5)
    assert x_train.dtype == np.float64 and y_train.dtype == np.int64
    assert x_train.min() == 0 and max(x_train.max(), x_test.max()) == 1
    counts = np.bincount(np.concatenate([y_train, y_test]), minlength=10)
    test_counts = np.bincount(y_test, minlength=10)
    assert np.all(np.abs(test_counts - 0.25 * counts) <= 0.5)         # each class split alike
    again = data.digits()
    np.testing.assert_array_equal(again.x_test, x_test)
    assert not np.array_equal(data.digits(rng=1).y_test, y_test)
    assert data.digits(dtype="float32", test_fraction=0.5).x_test.dtype == np.float32


@pytest.mark.parametrize("call, module", [
    (lambda: data.mnist1d(seed=123456, cache_dir="/nonexistent-depthlab-cache"), "mnist1d"),
    (lambda: data.digits(), "sklearn.datasets"),
])
def test_missing_optional_dependency(call, module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)                    # makes the import fail
    data._digits_arrays.cache_clear()                                 # digits are parsed once per process
    with pytest.raises(ImportError, match=r"pip install 'depthlab\[data\]'"):
        call()


# ----------------------------------------------------------------------------- bad input

X10, Y10 = np.zeros((10, 2)), np.arange(10)
BAD_INPUTS = [
    (lambda: data.sine(0), ValueError, r"n must be >= 1, got 0"),
    (lambda: data.sine(-5), ValueError, r"n must be >= 1"),
    (lambda: data.sine(2.5), TypeError, r"n must be an int"),
    (lambda: data.sine(10, noise=-0.1), ValueError, r"noise must be in \[0, inf\)"),
    (lambda: data.sine(10, rng=-1), ValueError, r"rng must be a non-negative int seed"),
    (lambda: data.sine(10, rng="seed"), TypeError, r"rng must be an np.random.Generator"),
    (lambda: data.sine(10, dtype="int32"), ValueError, r"dtype must be 'float64' or 'float32'"),
    (lambda: data.piecewise_2d(0), ValueError, r"n must be >= 1"),
    (lambda: data.gaussian_regression(d_in=0), ValueError, r"d_in must be >= 1"),
    (lambda: data.gaussian_regression(d_out=True), TypeError, r"d_out must be an int"),
    (lambda: data.gaussian_inputs(d=0), ValueError, r"d must be >= 1"),
    (lambda: data.train_test_split(X10, Y10, 0), ValueError, r"test_fraction must be in \(0, 1\), got 0"),
    (lambda: data.train_test_split(X10, Y10, 1), ValueError, r"test_fraction must be in \(0, 1\)"),
    (lambda: data.train_test_split(X10, Y10, 1.5), ValueError, r"test_fraction must be in \(0, 1\)"),
    (lambda: data.train_test_split(X10, Y10, "a"), TypeError, r"test_fraction must be a real number"),
    (lambda: data.train_test_split(X10, Y10[:9], 0.2), ValueError, r"same number of samples.*\(10, 2\) and \(9,\)"),
    (lambda: data.train_test_split(X10, X10, 0.2, stratify=True), ValueError, r"stratify=True needs 1-D labels"),
    (lambda: data.train_test_split(X10[:2], Y10[:2], 0.1), ValueError, r"leaves 2 for training and 0 for testing"),
    (lambda: data.batches(0, 1), ValueError, r"n must be >= 1"),
    (lambda: data.batches(5, 0), ValueError, r"batch_size must be >= 1"),
    (lambda: data.batches(5, 2, rng="x"), TypeError, r"rng must be"),
    (lambda: data.digits(test_fraction=1.0), ValueError, r"test_fraction must be in \(0, 1\)"),
    (lambda: data.mnist1d(seed=-1), ValueError, r"seed must be in \[0, 2\*\*32\)"),
    (lambda: data.mnist1d(seed=2**32), ValueError, r"seed must be in \[0, 2\*\*32\)"),
    (lambda: data.mnist1d(seed=np.random.default_rng(0)), TypeError, r"seed must be an int.*Generator"),
    (lambda: data.mnist1d(seed=1, dtype="float16"), ValueError, r"dtype must be"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUTS)
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("make", [lambda: data.sine(10**12), lambda: data.gaussian_inputs(10**9, 10**3),
                                  lambda: data.gaussian_regression(10**6, 10**6), lambda: data.piecewise_2d(10**11),
                                  lambda: data.batches(10**12, 2)])
def test_absurd_sizes_are_refused_before_allocating(make):
    with pytest.raises(ValueError, match="would allocate"):
        make()


def test_flags_must_be_bools_so_a_string_does_not_shuffle():
    with pytest.raises(TypeError, match="shuffle must be True or False"):
        data.batches(5, 2, shuffle="no")
    with pytest.raises(TypeError, match="stratify must be True or False"):
        data.train_test_split(np.ones((4, 1)), [0, 1, 0, 1], 0.5, stratify="yes")


@pytest.mark.parametrize("x, y, error, message", [
    ((i for i in range(4)), [0, 1, 0, 1], TypeError, "generator"),
    ([[1, 2], [3], [4, 5], [6, 7]], [0, 1, 0, 1], ValueError, "different lengths"),
    (np.ma.masked_array(np.ones((4, 1)), mask=[[0], [1], [0], [0]]), [0, 1, 0, 1], TypeError, "masked"),
    (np.ones((4, 1)), np.array([0.0, np.nan, 1.0, 1.0]), TypeError, "NaN"),
    (np.ones((4, 1)), np.array([None, 1, None, 1], dtype=object), TypeError, "class labels"),
])
def test_train_test_split_refuses_what_it_cannot_split_faithfully(x, y, error, message):
    with pytest.raises(error, match=message):
        data.train_test_split(x, y, 0.5, stratify=True)


def test_mnist1d_refuses_a_cache_dir_that_is_not_a_path():
    with pytest.raises(TypeError, match="cache_dir must be a folder path"):
        data.mnist1d(cache_dir=5)
