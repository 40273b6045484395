"""Initializers against their closed forms, torch.nn.init and scipy; the registry; bad input."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import depthlab as dl
from depthlab.nn import init

SHAPE = (400, 1000)  # fan_in = 1000, fan_out = 400: the modes give different stds
FAN_IN, FAN_OUT = 1000, 400
SQRT3 = math.sqrt(3.0)


def torch_draw(function, shape=SHAPE, seed=0, **kwargs) -> np.ndarray:
    tensor = torch.empty(shape, dtype=torch.float64)
    function(tensor, generator=torch.Generator().manual_seed(seed), **kwargs)
    return tensor.numpy()


def kaiming_std(nonlinearity, a, mode):
    gain = {"linear": 1.0, "conv2d": 1.0, "sigmoid": 1.0, "tanh": 5 / 3, "relu": math.sqrt(2),
            "leaky_relu": math.sqrt(2 / (1 + a * a)), "selu": 0.75}[nonlinearity]
    return gain / math.sqrt(FAN_IN if mode == "fan_in" else FAN_OUT)


# (depthlab name, hyperparameters, torch function, torch kwargs, "normal"/"uniform", std)
SCHEMES = [
    ("xavier_normal", {}, torch.nn.init.xavier_normal_, {}, "normal", math.sqrt(2 / 1400)),
    ("xavier_normal", {"gain": 2.0}, torch.nn.init.xavier_normal_, {"gain": 2.0}, "normal",
     2 * math.sqrt(2 / 1400)),
    ("glorot_normal", {}, torch.nn.init.xavier_normal_, {}, "normal", math.sqrt(2 / 1400)),
    ("xavier_uniform", {}, torch.nn.init.xavier_uniform_, {}, "uniform", math.sqrt(2 / 1400)),
    ("glorot_uniform", {"gain": 0.5}, torch.nn.init.xavier_uniform_, {"gain": 0.5}, "uniform",
     0.5 * math.sqrt(2 / 1400)),
    ("he_normal", {}, torch.nn.init.kaiming_normal_, {"nonlinearity": "relu"}, "normal",
     math.sqrt(2 / FAN_IN)),
    ("he_uniform", {}, torch.nn.init.kaiming_uniform_, {"nonlinearity": "relu"}, "uniform",
     math.sqrt(2 / FAN_IN)),
    ("he_normal", {"mode": "fan_out"}, torch.nn.init.kaiming_normal_,
     {"mode": "fan_out", "nonlinearity": "relu"}, "normal", math.sqrt(2 / FAN_OUT)),
    ("lecun_normal", {}, torch.nn.init.kaiming_normal_, {"nonlinearity": "linear"}, "normal",
     math.sqrt(1 / FAN_IN)),
    ("lecun_uniform", {}, torch.nn.init.kaiming_uniform_, {"nonlinearity": "linear"}, "uniform",
     math.sqrt(1 / FAN_IN)),
    ("variance_scaling", {"scale": 2.0}, torch.nn.init.kaiming_normal_,
     {"nonlinearity": "relu"}, "normal", math.sqrt(2 / FAN_IN)),
    ("variance_scaling", {"mode": "fan_avg", "distribution": "uniform"},
     torch.nn.init.xavier_uniform_, {}, "uniform", math.sqrt(2 / 1400)),
    ("normal", {}, torch.nn.init.normal_, {}, "normal", 1.0),
    ("normal", {"mean": 0.5, "std": 0.1}, torch.nn.init.normal_, {"mean": 0.5, "std": 0.1},
     "normal", 0.1),
    ("normal", {"variance": 2 / 80}, torch.nn.init.normal_, {"std": math.sqrt(2 / 80)},
     "normal", math.sqrt(2 / 80)),
]
for _distribution in ("normal", "uniform"):
    for _mode in ("fan_in", "fan_out"):
        for _nonlinearity, _a in [("linear", 0), ("conv2d", 0), ("sigmoid", 0), ("tanh", 0),
                                  ("relu", 0), ("leaky_relu", 0), ("leaky_relu", 0.2),
                                  ("selu", 0)]:
            _kwargs = {"a": _a, "mode": _mode, "nonlinearity": _nonlinearity}
            SCHEMES.append((f"kaiming_{_distribution}", _kwargs,
                            getattr(torch.nn.init, f"kaiming_{_distribution}_"), _kwargs,
                            _distribution, kaiming_std(_nonlinearity, _a, _mode)))


@pytest.mark.parametrize("name, params, torch_fn, torch_kwargs, distribution, std", SCHEMES,
                         ids=[f"{s[0]}-{s[1]}" for s in SCHEMES])
def test_scheme_matches_formula_and_torch(name, params, torch_fn, torch_kwargs, distribution, std):
    ours = getattr(init, name)(SHAPE, rng=0, **params)
    theirs = torch_draw(torch_fn, **torch_kwargs)
    mean = params.get("mean", 0.0)
    assert ours.shape == SHAPE and ours.dtype == np.float64
    standard_error = std / math.sqrt(ours.size)
    for sample in (ours, theirs):
        assert abs(sample.mean() - mean) < 5 * standard_error
        assert sample.std() == pytest.approx(std, rel=0.01)
    assert ours.std() == pytest.approx(theirs.std(), rel=0.015)
    if distribution == "uniform":
        bound = SQRT3 * std
        assert np.abs(ours).max() <= bound
        assert np.abs(ours).max() > 0.999 * bound
        assert np.abs(theirs).max() <= bound * (1 + 1e-12)


def test_uniform_matches_bounds_and_torch():
    ours = init.uniform(SHAPE, rng=0, low=-0.5, high=1.5)
    theirs = torch_draw(torch.nn.init.uniform_, a=-0.5, b=1.5)
    for sample in (ours, theirs):
        assert sample.min() >= -0.5 and sample.max() < 1.5
        assert sample.mean() == pytest.approx(0.5, abs=0.01)
        assert sample.std() == pytest.approx(2 / math.sqrt(12), rel=0.01)
    default = init.uniform((1000,), rng=1)
    assert default.min() >= 0 and default.max() < 1  # torch's uniform_ default a=0, b=1


def test_constants():
    assert np.array_equal(init.zeros((3, 2)), np.zeros((3, 2)))
    assert np.array_equal(init.ones((4,), dtype="float32"), np.ones(4, dtype=np.float32))
    filled = init.constant((2, 5), value=0.25)
    assert filled.dtype == np.float64 and np.all(filled == 0.25)
    assert np.all(init.get("constant", value=-3)((3,)) == -3)


def test_seed_normal_matches_the_seeds_formula():
    # The seeds draw Ω as standard normals times sqrt(σ²_Ω).
    expected = np.random.default_rng(7).standard_normal((80, 80)) * math.sqrt(2 / 80)
    np.testing.assert_allclose(init.get(2 / 80)((80, 80), rng=7), expected, rtol=1e-15)
    np.testing.assert_allclose(init.normal((80, 80), variance=2 / 80, rng=7), expected, rtol=1e-15)


# ------------------------------------------------------------------------------ orthogonal

class _GivenNormal(np.random.Generator):
    """A Generator whose standard_normal returns a given matrix (torch's own draw)."""

    def __init__(self, matrix):
        super().__init__(np.random.PCG64(0))
        self.matrix = matrix

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        assert tuple(size) == self.matrix.shape
        return self.matrix.copy()


@pytest.mark.parametrize("shape", [(6, 6), (9, 4), (4, 9), (5, 2, 3), (1, 7), (7, 1)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_is_orthogonal_and_equals_torch(shape, gain):
    rows, cols = shape[0], math.prod(shape[1:])
    generator = torch.Generator().manual_seed(3)
    normal = torch.empty((rows, cols), dtype=torch.float64).normal_(0, 1, generator=generator)
    expected = torch_draw(torch.nn.init.orthogonal_, shape=shape, seed=3, gain=gain)
    ours = init.orthogonal(shape, rng=_GivenNormal(normal.numpy()), gain=gain)
    assert ours.shape == shape
    np.testing.assert_allclose(ours, expected, atol=1e-12)  # same draw, same sign convention
    flat = ours.reshape(rows, cols) / gain
    gram = flat @ flat.T if rows <= cols else flat.T @ flat
    np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-12)


def test_orthogonal_with_a_seed():
    q = init.orthogonal((50, 20), rng=0, gain=math.sqrt(2))
    np.testing.assert_allclose(q.T @ q, 2 * np.eye(20), atol=1e-12)
    np.testing.assert_array_equal(q, init.orthogonal((50, 20), rng=0, gain=math.sqrt(2)))


# ------------------------------------------------------------------------------ gains

TORCH_NONLINEARITIES = [
    ("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None),
    ("conv_transpose1d", None), ("conv_transpose2d", None), ("conv_transpose3d", None),
    ("sigmoid", None), ("tanh", None), ("relu", None), ("selu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 0), ("leaky_relu", 3),
    ("leaky_relu", 1.0), ("relu", 0.5),  # torch ignores param for relu
]


@pytest.mark.parametrize("nonlinearity, param", TORCH_NONLINEARITIES)
def test_calculate_gain_equals_torch(nonlinearity, param):
    expected = torch.nn.init.calculate_gain(nonlinearity, param)
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-15)
    assert init.calculate_gain(nonlinearity.upper(), param) == pytest.approx(expected, rel=1e-15)


def _second_moment_gain(function):
    """1/sqrt(E[a(z)²]), z ~ N(0, 1), by adaptive quadrature split at the kink z = 0."""
    def integrand(z):
        return function(z) ** 2 * stats.norm.pdf(z)
    moment = sum(integrate.quad(integrand, low, high, epsabs=1e-14, epsrel=1e-13)[0]
                 for low, high in [(-np.inf, 0.0), (0.0, np.inf)])
    return 1 / math.sqrt(moment)


# ELU's table gain comes from fixed-order Gauss-Hermite quadrature, which converges slowly across
# its kink at 0 (about 3e-5 relative error); the smooth activations agree to 1e-8.
@pytest.mark.parametrize("name, param, function, rel", [
    ("gelu", None, lambda z: z * stats.norm.cdf(z), 1e-8),
    ("silu", None, lambda z: z / (1 + math.exp(-z)) if z > -700 else 0.0, 1e-8),
    ("softplus", None, lambda z: math.log1p(math.exp(-abs(z))) + max(z, 0.0), 1e-8),
    ("elu", None, lambda z: z if z > 0 else math.expm1(z), 1e-4),
    ("elu", 0.5, lambda z: z if z > 0 else 0.5 * math.expm1(z), 1e-4),
])
def test_calculate_gain_extension_is_the_second_moment_gain(name, param, function, rel):
    gain = init.calculate_gain(name, param)
    assert gain == pytest.approx(_second_moment_gain(function), rel=rel)
    assert gain == dl.activations.get(name, **({} if param is None else {"alpha": param})).gain


def test_calculate_gain_identity_and_activation_objects():
    assert init.calculate_gain("identity") == 1.0
    assert init.calculate_gain(dl.activations.get("leaky_relu", negative_slope=0.2)) == \
        pytest.approx(torch.nn.init.calculate_gain("leaky_relu", 0.2), rel=1e-15)
    assert init.calculate_gain(dl.activations.get("tanh")) == pytest.approx(5 / 3)
    relu_std = init.kaiming_normal(SHAPE, rng=0, nonlinearity=dl.activations.get("relu")).std()
    assert relu_std == pytest.approx(math.sqrt(2 / FAN_IN), rel=0.01)


# ------------------------------------------------------------------------------ truncated normal

@pytest.mark.parametrize("mean, std, low, high", [
    (0.0, 1.0, -2.0, 2.0),      # torch's defaults
    (0.5, 2.0, -1.0, 4.0),
    (0.0, 1.0, 3.0, 5.0),       # upper tail
    (0.0, 1.0, -9.0, -7.5),     # deep lower tail
    (1.0, 0.1, 1.0, 1.05),      # one-sided, narrow
    (10.0, 1.0, -1.0, 1.0),     # mean far outside the bounds
])
def test_truncated_normal_matches_scipy(mean, std, low, high):
    samples = init.truncated_normal((100_000,), rng=0, mean=mean, std=std, low=low, high=high)
    assert samples.min() >= low and samples.max() <= high
    reference = stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)
    standard_error = reference.std() / math.sqrt(samples.size)
    assert abs(samples.mean() - reference.mean()) < 5 * standard_error
    assert samples.std() == pytest.approx(reference.std(), rel=0.01)
    assert stats.kstest(samples, reference.cdf).pvalue > 1e-3


def test_truncated_normal_matches_torch_and_float32_bounds():
    ours = init.truncated_normal(SHAPE, rng=0, std=0.5, low=-0.75, high=1.0)
    theirs = torch_draw(torch.nn.init.trunc_normal_, std=0.5, a=-0.75, b=1.0)
    assert ours.std() == pytest.approx(theirs.std(), rel=0.01)
    assert ours.mean() == pytest.approx(theirs.mean(), abs=0.005)
    single = init.truncated_normal(SHAPE, rng=0, std=3.0, dtype="float32")
    assert single.dtype == np.float32 and single.min() >= -2 and single.max() <= 2


def test_keras_truncated_variance_scaling():
    assert init._TRUNCATED_2_STD == pytest.approx(0.87962566103423978, rel=1e-15)  # Keras' constant
    w = init.variance_scaling(SHAPE, rng=0, distribution="truncated_normal")
    std = math.sqrt(1 / FAN_IN)
    assert w.std() == pytest.approx(std, rel=0.01)
    assert np.abs(w).max() <= 2 * std / 0.87962566103423978 * (1 + 1e-12)


# ------------------------------------------------------------------------------ fans

@pytest.mark.parametrize("shape", [(3, 5), (8, 4, 3), (8, 4, 3, 3), (2, 6, 2, 2, 2)])
def test_fans_match_torch(shape):
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.fans(shape) == expected


def test_explicit_fans_override_and_serve_biases():
    w = init.kaiming_normal(SHAPE, rng=0, fan_in=4)
    assert w.std() == pytest.approx(math.sqrt(2 / 4), rel=0.01)
    # PyTorch's Linear bias: U(±1/sqrt(fan_in)) is kaiming_uniform with a = sqrt(5).
    bias = init.get("kaiming_uniform", a=math.sqrt(5))((20_000,), rng=0, fan_in=250, fan_out=20_000)
    assert np.abs(bias).max() <= 1 / math.sqrt(250) and np.abs(bias).max() > 0.99 / math.sqrt(250)
    b = init.xavier_normal((200_000,), rng=0, fan_in=300, fan_out=100)
    assert b.std() == pytest.approx(math.sqrt(2 / 400), rel=0.01)
    assert init.lecun_uniform((5,), rng=0, fan_in=3).shape == (5,)


# ------------------------------------------------------------------------------ registry

def test_names_hold_every_scheme_and_alias():
    expected = {"zeros", "ones", "constant", "normal", "uniform", "truncated_normal",
                "xavier_normal", "xavier_uniform", "glorot_normal", "glorot_uniform",
                "kaiming_normal", "kaiming_uniform", "he_normal", "he_uniform", "lecun_normal",
                "lecun_uniform", "orthogonal", "variance_scaling"}
    assert expected <= set(init.names())
    assert init.names() == sorted(init.INITIALIZERS)
    assert init.INITIALIZERS["glorot_normal"] is init.xavier_normal
    assert init.glorot_uniform is init.xavier_uniform


def test_get_by_name_number_dict_and_function():
    expected = init.kaiming_uniform(SHAPE, rng=5, mode="fan_out")
    for spec, params in [("kaiming_uniform", {"mode": "fan_out"}),
                         ("Kaiming-Uniform", {"mode": "FAN_OUT"}),
                         ({"name": "kaiming_uniform", "mode": "fan_out"}, {}),
                         ({"name": "kaiming_uniform"}, {"mode": "fan_out"}),
                         (init.kaiming_uniform, {"mode": "fan_out"})]:
        np.testing.assert_array_equal(init.get(spec, **params)(SHAPE, rng=5), expected)
    he = init.get("he_normal")
    assert repr(he) == "he_normal()" and repr(init.get(0.5)) == "normal(variance=0.5)"
    assert init.get(he) is not he and repr(init.get(he, mode="fan_out")) == "he_normal(mode='fan_out')"
    assert init.get(1)((3, 3), rng=0).std() > 0 and init.get(np.float32(0.5))((2,), rng=0).shape == (2,)


def test_get_callables_in_every_form():
    seen = {}

    def full(shape, *, rng, dtype, fan_in, fan_out):
        seen.update(dtype=dtype, fan_in=fan_in, fan_out=fan_out)
        return rng.standard_normal(shape)

    def kwargs_only(shape, **kwargs):
        seen.update(kwargs)
        return np.ones(shape)

    expected = np.random.default_rng(3).standard_normal((4, 6))
    np.testing.assert_array_equal(init.get(lambda shape, g: g.standard_normal(shape))((4, 6), rng=3),
                                  expected)
    np.testing.assert_array_equal(init.get(lambda shape, rng: rng.standard_normal(shape))((4, 6), rng=3),
                                  expected)
    np.testing.assert_array_equal(init.get(full)((4, 6), rng=3), expected)
    assert seen == {"dtype": np.float64, "fan_in": 6, "fan_out": 4}
    out = init.get(full)((7,), rng=3, dtype="float32", fan_in=2, fan_out=7)
    assert out.dtype == np.float32 and seen["fan_in"] == 2 and seen["dtype"] == np.float32
    init.get(kwargs_only)((2, 3), rng=0)
    assert set(seen) >= {"rng", "dtype", "fan_in", "fan_out"}
    assert init.get(lambda shape: np.zeros(shape))((2,)).shape == (2,)
    scaled = init.get(lambda shape, rng, scale: scale * np.ones(shape), scale=3.0)((2, 2), rng=0)
    assert np.all(scaled == 3.0)
    cached = np.zeros((2, 2))
    returned = init.get(lambda shape, rng: cached)((2, 2), rng=0)
    assert returned is not cached and not np.shares_memory(returned, cached)
    assert init.get(lambda shape, rng: [[1, 2], [3, 4]])((2, 2), rng=0).dtype == np.float64


def test_seeds_reproduce_and_dtypes_are_honored():
    for name in init.names():
        function = init.INITIALIZERS[name]
        a = function((30, 20), rng=11)
        b = function((30, 20), rng=np.random.default_rng(11))
        single = function((30, 20), rng=11, dtype="float32")
        assert a.dtype == np.float64 and single.dtype == np.float32, name
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(single, a.astype(np.float32))  # drawn in float64, then cast
        assert a is not function((30, 20), rng=11)
    assert not np.array_equal(init.normal((5,), rng=1), init.normal((5,), rng=2))


def test_register(monkeypatch):
    monkeypatch.setattr(init, "INITIALIZERS", dict(init.INITIALIZERS))

    def my_scaled(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None, sigma=1.0):
        return init.normal(shape, rng=rng, dtype=dtype, std=sigma / math.sqrt(fan_in))

    init.register("My_Scaled", my_scaled)
    init.register("my_scaled", my_scaled)  # the same function again is fine
    assert "my_scaled" in init.names()
    w = init.get("my_scaled", sigma=2.0)((10, 100), rng=0)
    np.testing.assert_allclose(w, init.normal((10, 100), rng=0, std=0.2))
    with pytest.raises(ValueError, match="already registered"):
        init.register("my_scaled", lambda shape, rng: np.zeros(shape))
    init.register("my_scaled", lambda shape, rng: np.zeros(shape), replace=True)
    assert np.all(init.get("my_scaled")((3, 3), rng=0) == 0)
    with pytest.raises(ValueError, match="already registered"):  # another lambda, same place
        init.register("my_scaled", lambda shape, rng: np.ones(shape))
    simple = init.INITIALIZERS["my_scaled"]
    init.register("my_scaled", simple.__wrapped__)  # re-registering the adapted one is fine
    assert np.all(init.get("my_scaled")((2,), rng=0, dtype="float32") == np.zeros(2, np.float32))


# ------------------------------------------------------------------------------ bad input

def _bad_register_duplicate():
    init.register("zeros", lambda shape, rng: np.ones(shape))


BAD = [
    (lambda: init.kaiming_normal((3, 4), mode="fan_avg"), ValueError, "fan mode 'fan_avg'.*fan_in, fan_out"),
    (lambda: init.kaiming_uniform((3, 4), nonlinearity="swishy"), ValueError, "Valid names:.*relu"),
    (lambda: init.kaiming_normal((3, 4), a="x"), TypeError, "a must be a real number"),
    (lambda: init.normal((3,), std=-1.0), ValueError, r"std must be in \[0, inf\)"),
    (lambda: init.normal((3,), std=1.0, variance=1.0), ValueError, "not both"),
    (lambda: init.normal((3,), variance=-0.1), ValueError, "variance must be in"),
    (lambda: init.uniform((3,), low=1.0, high=1.0), ValueError, "low must be < high"),
    (lambda: init.truncated_normal((3,), low=2.0, high=1.0), ValueError, "low must be < high"),
    (lambda: init.truncated_normal((3,), std=0.0), ValueError, r"std must be in \(0"),
    (lambda: init.truncated_normal((3,), high=math.inf), ValueError, "high must be finite"),
    (lambda: init.xavier_normal((3, 4), gain="big"), TypeError, "gain must be a real number"),
    (lambda: init.xavier_uniform((3, 4), gain=-1.0), ValueError, r"gain must be in \(0"),
    (lambda: init.orthogonal((3, 4), gain=math.nan), ValueError, "gain must be finite"),
    (lambda: init.kaiming_normal((10,)), ValueError, "needs fan_in.*Pass fan_in= and fan_out="),
    (lambda: init.xavier_uniform((10,), fan_in=3), ValueError, "needs fan_out"),
    (lambda: init.lecun_normal((10,), fan_out=3), ValueError, "needs fan_in"),
    (lambda: init.fans((10,)), ValueError, "at least 2 dimensions.*fan_in=/fan_out="),
    (lambda: init.orthogonal((10,)), ValueError, "at least 2 dimensions"),
    (lambda: init.zeros((3, 0)), ValueError, "positive ints"),
    (lambda: init.zeros((3, 2.0)), ValueError, "positive ints"),
    (lambda: init.zeros(3.5), TypeError, "shape must be a tuple"),
    (lambda: init.ones((3,), dtype="int32"), ValueError, "dtype must be 'float64' or 'float32'"),
    (lambda: init.normal((3,), rng="seed"), TypeError, "rng must be an np.random.Generator"),
    (lambda: init.kaiming_normal((3, 4), fan_in=0), ValueError, "fan_in must be >= 1"),
    (lambda: init.kaiming_normal((3, 4), fan_out=2.5), TypeError, "fan_out must be an int"),
    (lambda: init.constant((3,), value=math.nan), ValueError, "value must be finite"),
    (lambda: init.variance_scaling((3, 4), distribution="cauchy"), ValueError, "Unknown distribution"),
    (lambda: init.variance_scaling((3, 4), scale=0.0), ValueError, "scale must be in"),
    (lambda: init.calculate_gain("foo"), ValueError, "Unknown nonlinearity 'foo'.*Valid names:.*tanh"),
    (lambda: init.calculate_gain("leaky_relu", "x"), TypeError, "negative_slope"),
    (lambda: init.calculate_gain("leaky_relu", True), TypeError, "negative_slope"),
    (lambda: init.calculate_gain(3), TypeError, "nonlinearity must be a string"),
    (lambda: init.calculate_gain(dl.activations.get("relu"), 0.1), ValueError, "param must be None"),
    (lambda: init.get("nope"), ValueError, "Unknown initializer 'nope'.*Valid names:.*he_normal"),
    (lambda: init.get("he_norml"), ValueError, "Did you mean 'he_normal'"),
    (lambda: init.get(0), ValueError, "variance σ²_Ω .* must be > 0.*init='zeros'"),
    (lambda: init.get(-0.5), ValueError, "must be > 0"),
    (lambda: init.get(math.nan), ValueError, "must be > 0 and finite"),
    (lambda: init.get(math.inf), ValueError, "must be > 0 and finite"),
    (lambda: init.get(0.5, mean=1.0), TypeError, "a number takes no hyperparameters"),
    (lambda: init.get(True), TypeError, "init must be a name"),
    (lambda: init.get(None), TypeError, "init must be a name"),
    (lambda: init.get([0.1]), TypeError, "init must be a name"),
    (lambda: init.get("normal", sigma=1.0), TypeError, r"unexpected hyperparameters \['sigma'\].*std"),
    (lambda: init.get("kaiming_normal", mode="fan_sideways"), ValueError, "fan mode 'fan_sideways'"),
    (lambda: init.get("orthogonal", gain=0), ValueError, "gain must be in"),
    (lambda: init.get("normal", rng=0), TypeError, "given when the initializer is called"),
    (lambda: init.get({"mode": "fan_in"}), ValueError, "needs a 'name' key"),
    (lambda: init.get({"name": 3}), TypeError, "'name' must be a string"),
    (lambda: init.get(lambda: 0), TypeError, "cannot be called as an initializer"),
    (lambda: init.get(lambda shape, rng: np.zeros(3), )((2, 2), rng=0), ValueError,
     r"returned an array of shape \(3,\) for the requested shape \(2, 2\)"),
    (lambda: init.get(lambda shape, rng: "abc")((2, 2), rng=0), TypeError, "must return an array of real"),
    (lambda: init.get(lambda shape, rng: np.full(shape, np.nan))((2, 2), rng=0), ValueError, "NaN or Inf"),
    (lambda: init.register("x", 3), TypeError, "function must be callable"),
    (lambda: init.register("", init.zeros), TypeError, "name must be a non-empty string"),
    (_bad_register_duplicate, ValueError, "'zeros' is already registered.*replace=True"),
]


@pytest.mark.parametrize("call, error, pattern", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_an_unhashable_callable_initializer_works_and_settings_are_checked_every_time():
    """Initializers' signatures are kept per function, but an unhashable callable is read each time;
    a bad hyperparameter value of a built-in is refused however often the same setting is asked."""
    class Scaled:
        __hash__ = None

        def __init__(self, scale):
            self.scale = scale

        def __call__(self, shape, rng):
            return self.scale * rng.standard_normal(shape)

    net = dl.MLP(3, [4], 2, init=Scaled(0.5), rng=0)
    assert net.linears[0].weight.data.shape == (4, 3)
    for _ in range(2):
        with pytest.raises(ValueError):
            dl.nn.init.get("normal", variance=-1.0)
