"""Helper A's experiments run (quick) and their metrics hold what their reports claim.

init-variance, gradient-variance, activation-histograms, optimizers, gradcheck and
signal-theory, plus the shared machinery of ``experiments.base``: typed configs, validation,
outputs and reproducibility.
"""
import json
import math
import types
import typing
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import integrate, optimize
from test_report import check_page

from depthlab.lab import experiments
from depthlab.signal import theory
from depthlab.lab.experiments import base

MINE = ["init-variance", "gradient-variance", "activation-histograms", "optimizers", "gradcheck", "signal-theory"]


# ----------------------------------------------------------------------------- every experiment

@pytest.mark.parametrize("name", MINE)
def test_quick_run_writes_report_metrics_and_figures(quick_runs, name):
    result = quick_runs[name]
    assert result.name == name and result.title
    assert (result.out_dir / "report.html").is_file()
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    assert metrics == base.jsonable(result.metrics)
    assert result.figures, "every experiment draws at least one figure"
    for stem in result.figures:
        png = (result.out_dir / f"{stem}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    html = (result.out_dir / "report.html").read_text()
    checker = check_page(html)                       # well-formed, every figure embedded
    assert len(checker.images) == len(result.figures)
    for key in result.metrics:
        assert f'<td class="mono">{key}</td>' in html
    assert result.summary.strip() and result.config["seed"] == 0


@pytest.mark.parametrize("name", MINE)
def test_module_follows_the_contract(name):
    module = experiments.get(name)
    assert module.NAME == name
    assert module.TITLE and module.SUMMARY and module.REPRODUCES
    config = module.Config()
    assert config.seed == 0
    quick = module.Config(**module.QUICK)
    module.validate(quick)
    for key in getattr(module, "KEY_METRICS", ()):
        assert isinstance(key, str)


# ----------------------------------------------------------------------------- what each one claims

def test_init_variance_explodes_with_unit_variance_and_he_stays_flat(quick_runs):
    m = quick_runs["init-variance"].metrics
    assert m["deepest"] == 50
    assert m["growth_sigma2_1"] > 1e6                 # σ² = 1 explodes over 50 layers
    assert m["max_min_ratio_2_over_D"] < 3            # He keeps the signal within a factor 3
    assert m["growth_1_over_D"] < 1e-4 and m["growth_xavier"] < 1e-4
    assert m["theory_log10_error_2_over_D"] < 0.15    # measured within ~40% of the mean-field line
    assert m["seed_tables_match"] and m["seed_values_compared"] == 5 + 22 + 26


def test_init_variance_theory_line_is_the_relu_recursion():
    # independent of depthlab.theory: Var(f_0) = σ², Var(f_k) = D σ² Var(f_{k-1}) / 2, std(h) = sqrt(q (1/2 − 1/2π))
    module = experiments.get("init-variance")
    config = module.Config(depths=(6,), width=20)
    predicted = theory.predicted_std(module.nominal_spec(config, 6, module.SCHEMES["1"])).activation_std
    q = 1.0 * np.array([10.0 ** k for k in range(6)])
    np.testing.assert_allclose(predicted, np.sqrt(q * (0.5 - 0.5 / np.pi)), rtol=1e-12)


def test_gradient_variance_explodes_backward_and_reproduces_the_seed(quick_runs):
    m = quick_runs["gradient-variance"].metrics
    assert m["growth_sigma2_1"] > 1e6
    assert m["max_min_ratio_2_over_D"] < 3
    assert m["growth_1_over_D"] < 1e-4
    assert m["seed_table_match"] and m["seed_values_compared"] == 13
    assert m["seed_max_relative_difference"] < 1e-12


def test_activation_histograms_zero_init_and_saturation(quick_runs):
    m = quick_runs["activation-histograms"].metrics
    assert m["sigmoid_zero_value_h5"] == 0.5          # the seed says 0: it is σ(0) = 0.5
    assert m["relu_zero_value_h5"] == 0.0
    assert m["sigmoid_normal_1_saturated_h5"] > 0.3   # N(0, 1) saturates the sigmoid
    assert m["sigmoid_normal_var_0.01_saturated_h5"] == 0.0
    assert 0.3 < m["relu_he_std_h5"] < 3              # He keeps ReLU outputs at the input's scale
    assert m["relu_normal_1_std_h5"] > 1e3            # ×√50 per layer
    assert 0.4 < m["relu_he_zero_fraction_h5"] < 0.6


def test_activation_histograms_xavier_equals_variance_reading_for_square_layers():
    module = experiments.get("activation-histograms")
    net = module.network(module.Config(layers=1), "sigmoid", module.INITS["xavier"], np.random.default_rng(0))
    assert np.var(net.linears[0].weight.data) == pytest.approx(0.01, rel=0.05)


def test_optimizers_all_six_reach_the_minimum(quick_runs):
    m = quick_runs["optimizers"].metrics
    assert m["all_reach_minimum"] is True
    for name in ("gd", "adagrad", "rmsprop", "momentum", "nesterov", "adam"):
        assert m[f"final_distance_{name}"] < 1e-3
        assert isinstance(m[f"steps_to_tolerance_{name}"], int)
    assert m["seed_rmsprop_shifted_bowl_error"] > 1.0  # the seed's RMSProp ignores where the minimum is
    assert m["seed_adam_first_step"] == pytest.approx(10 * m["adam_first_step"], rel=0.01)


def test_seed_rmsprop_reproduction_assigns_instead_of_subtracting():
    module = experiments.get("optimizers")
    grad = lambda p: np.array([p[0] / 10, 2 * p[1]])  # noqa: E731
    path = module.seed_rmsprop(grad, (-7.0, 2.0), 1)
    g = grad(np.array([-7.0, 2.0]))
    np.testing.assert_allclose(path[1], 1e-2 * g / (np.sqrt(0.1 * np.sum(g * g)) + 1e-9))


def test_steps_to_reach_counts_from_the_last_exit():
    module = experiments.get("optimizers")
    path = np.array([[1.0, 0], [1e-4, 0], [0.1, 0], [1e-5, 0], [0, 0]])
    assert module.steps_to_reach(path, 1e-3) == 3
    assert module.steps_to_reach(path[:3], 1e-3) is None


def test_gradcheck_errors_are_below_1e_minus_6(quick_runs):
    m = quick_runs["gradcheck"].metrics
    assert m["all_passed"] is True
    assert m["max_rel_error"] < 1e-6
    assert m["input_jacobian_max_rel_error"] < 1e-6
    assert m["entries_checked"] > 300


def _tanh_critical_point_by_quadrature(bias_variance: float) -> float:
    """σ_w² with σ_w² E[tanh'(√q z)²] = 1 and q = σ_w² E[tanh(√q z)²] + σ_b² (scipy.quad, independent)."""
    def expect(g, q):
        return integrate.quad(lambda z: g(math.sqrt(q) * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
                              -12, 12, epsabs=1e-14, epsrel=1e-13, limit=200)[0]

    def gap(q):
        slope = expect(lambda f: (1 - math.tanh(f) ** 2) ** 2, q)
        return q - expect(lambda f: math.tanh(f) ** 2, q) / slope - bias_variance

    q = optimize.brentq(gap, 1e-6, 10.0, xtol=1e-15)
    return 1.0 / expect(lambda f: (1 - math.tanh(f) ** 2) ** 2, q)


def test_signal_theory_critical_point_is_consistent(quick_runs):
    m = quick_runs["signal-theory"].metrics
    assert m["critical_weight_variance"] == pytest.approx(_tanh_critical_point_by_quadrature(0.05), rel=1e-7)
    assert m["chi1_at_critical"] == pytest.approx(1.0, abs=1e-8)
    assert m["critical_relative_difference"] < 0.05    # random networks cross χ₁ = 1 where theory says
    assert m["chi1_measured_max_relative_error"] < 0.05
    assert m["critical_weight_variance_at_zero_bias"] == pytest.approx(1.0, abs=1e-6)
    assert m["max_finite_xi_c"] > 10 * max(m["xi_c_far_ordered"], m["xi_c_far_chaotic"])


def test_signal_theory_crossing_interpolates():
    module = experiments.get("signal-theory")
    assert module.crossing(np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.9, 1.3])) == pytest.approx(2.25)
    assert math.isnan(module.crossing(np.array([1.0, 2.0]), np.array([0.5, 0.6])))


# ----------------------------------------------------------------------------- reproducibility

@pytest.mark.slow
@pytest.mark.parametrize("name, overrides", [
    ("init-variance", {"depths": "3,12", "width": "16", "samples": "50", "repeats": "2"}),
    ("activation-histograms", {"layers": "2", "width": "12", "samples": "30", "inits": "normal-1,he"}),
    ("gradcheck", {"activations": "tanh", "hidden": "4", "batch": "3"}),
])
def test_same_seed_gives_identical_metrics_json(tmp_path, name, overrides):
    first = base.run_experiment(name, overrides, seed=3, out_dir=tmp_path / "a", progress=False)
    second = base.run_experiment(name, overrides, seed=3, out_dir=tmp_path / "b", progress=False)
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()
    assert first.metrics == second.metrics
    module = experiments.get(name)
    other = module.run(base.make_config(module, overrides, seed=4))     # another seed, other numbers
    assert base.metrics_json(other.metrics) != base.metrics_json(first.metrics)


def test_metrics_json_is_sorted_and_plain(tmp_path):
    text = base.metrics_json({"b": np.float64(1.5), "a": [np.int64(2), math.inf], "c": np.bool_(True), "d": None})
    assert text == '{\n  "a": [\n    2,\n    "inf"\n  ],\n  "b": 1.5,\n  "c": true,\n  "d": null\n}\n'
    with pytest.raises(TypeError, match=r"metrics\['x'\] is a object"):
        base.metrics_json({"x": object()})


# ----------------------------------------------------------------------------- typed configs

@dataclass
class _Config:
    count: int = 3
    rate: float = 0.5
    flag: bool = False
    name: str = "relu"
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[float, float] = (0.0, 1.0)
    mode: typing.Literal["a", "b"] = "a"
    limit: int | None = None
    seed: int = 0


def _validate(config):
    base.check_range(config, "count", low=1)
    base.check_range(config, "rate", low=0, low_open=True)


def _fake():
    """A stand-in experiment module with one field of every supported type."""
    module = types.ModuleType("fake_experiment")
    module.NAME, module.Config, module.QUICK, module.validate = "fake", _Config, {"count": 1}, _validate
    return module


@pytest.mark.parametrize("key, raw, expected", [
    ("count", "7", 7), ("count", 7, 7), ("rate", "2/80", 0.025), ("rate", "1e-3", 1e-3), ("rate", 2, 2.0),
    ("flag", "yes", True), ("flag", "0", False), ("name", " tanh ", "tanh"), ("sizes", "5,50", (5, 50)),
    ("sizes", "(3)", (3,)), ("sizes", [4, 5], (4, 5)), ("pair", "1,2.5", (1.0, 2.5)), ("mode", "b", "b"),
    ("limit", "none", None), ("limit", "4", 4),
])
def test_set_values_are_parsed_by_the_field_type(key, raw, expected):
    config = base.make_config(_fake(), {key: raw})
    assert getattr(config, key) == expected
    assert type(getattr(config, key)) is type(expected)


@pytest.mark.parametrize("overrides, seed, pattern", [
    ({"bogus": "1"}, None, r"unknown --set key 'bogus' for fake; valid keys: count \(int, default 3\), "
                           r"rate \(float, default 0\.5\).*sizes \(tuple\[int, \.\.\.\], default 1,2\)"),
    ({"count": "abc"}, None, r"--set count=abc: expected an int \(count is int\)"),
    ({"count": True}, None, r"expected an int, not a boolean"),
    ({"count": "2.5"}, None, r"expected an int"),
    ({"count": "0"}, None, r"invalid configuration for fake: count must be >= 1, got 0"),
    ({"rate": "0"}, None, r"rate must be > 0, got 0"),
    ({"rate": "nan"}, None, r"expected a finite number"),
    ({"flag": "maybe"}, None, r"expected true or false"),
    ({"sizes": ""}, None, r"expected at least one comma-separated value"),
    ({"pair": "1"}, None, r"expected 2 comma-separated values"),
    ({"mode": "c"}, None, r"expected one of a, b"),
    ({}, -1, r"seed must be a non-negative int"),
    ({}, "x", r"--seed must be a non-negative int"),
])
def test_bad_config_values_raise_one_line_config_errors(overrides, seed, pattern):
    with pytest.raises(base.ConfigError, match=pattern) as info:
        base.make_config(_fake(), overrides, seed=seed)
    assert "\n" not in str(info.value)


def test_quick_then_set_then_seed():
    module = _fake()
    assert base.make_config(module, quick=True).count == 1
    assert base.make_config(module, {"count": "5"}, quick=True).count == 5
    assert base.make_config(module, {"seed": "2"}, seed=9).seed == 9


def test_unknown_experiment_lists_the_names():
    with pytest.raises(ValueError, match=r"unknown experiment 'init-varience'; choose one of: init-variance, "
                                         r".*Did you mean 'init-variance'\?"):
        experiments.get("init-varience")
    assert experiments.get("init_variance").NAME == "init-variance"


def test_registry_is_ordered_and_the_tour_covers_it():
    assert experiments.names()[:4] == ["init-variance", "gradient-variance", "activation-histograms", "optimizers"]
    assert set(experiments.TOUR) <= set(experiments.names())
    assert experiments.EXPERIMENTS["gradcheck"].endswith("gradcheck_study")


@pytest.mark.parametrize("make_path, pattern", [
    (lambda tmp: (tmp / "file.txt", tmp / "file.txt"), r"output folder '.*file\.txt' is a file"),
    (lambda tmp: (tmp / "file.txt", tmp / "file.txt" / "sub"), r"cannot create output folder .*: a file is in the way"),
])
def test_output_folder_problems(tmp_path, make_path, pattern):
    blocker, target = make_path(tmp_path)
    blocker.write_text("x")
    with pytest.raises(base.OutputError, match=pattern):
        base.prepare_out_dir(target)


def test_command_line_reproduces_the_config():
    module = experiments.get("init-variance")
    config = base.make_config(module, {"width": "40", "depths": "5,20"}, seed=2, quick=True)
    assert base.command_line("init-variance", config, quick=True) == \
        "depthlab run init-variance --quick --set depths=5,20 --set width=40 --seed 2"
