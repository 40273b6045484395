"""Issue 13, classes 4 and 5: instruments never misname an overflow; no typed value reaches a traceback.

Each class is a table: (case id, call, expected outcome, message pattern). Class 4's
references are independent of the code under test: the layer where the forward signal of
a net overflows is read from the net's own forward pass (the first f_k or h_{k+1} with an
inf or NaN entry, or one whose std in float64 would overflow), region counts from a fine grid
of activation patterns, the moments of s² from NumPy on values that do not overflow.
Class 5 runs ``depthlab.lab.cli.main`` in-process: exit 2 and one line on stderr, no traceback.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import depthlab as dl
from depthlab.lab import cli, experiments, limits
from depthlab.lab.experiments import base
from depthlab.signal.regions import activation_patterns, count_linear_regions
from depthlab.signal.spectrum import isometry, jacobian_spectrum


def run_cli(capsys, *argv):
    try:
        with np.errstate(over="warn", divide="warn", invalid="warn", under="ignore"):
            code = cli.main([str(a) for a in argv])
    except BaseException as error:  # noqa: BLE001 - escaping main() is a traceback for the user
        pytest.fail(f"{type(error).__name__} escaped cli.main: {error}")
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_exit_2(code, out, err, pattern):
    assert code == 2, (code, err[-600:])
    assert "Traceback" not in err and "Maximum allowed dimension" not in err, err[-600:]
    assert err.count("\n") == 1 and err.startswith("depthlab"), err[-600:]
    assert re.search(pattern, err), err


# ============================================================================= class 4: overflow is named

def overflow_window(net, x) -> tuple[int, int]:
    """Reference: (first layer whose values are large enough that their sum over the N·D entries can
    overflow float64, first layer with an inf or NaN entry) — the probe's overflow layer lies within."""
    with np.errstate(over="ignore", invalid="ignore"):
        trace = net.forward(x, record=True, allow_nonfinite=True)
    outputs = trace.activations[1:] + [trace.output]
    pairs = list(zip(trace.preactivations, outputs))
    first_inf = next(k for k, (f, h) in enumerate(pairs) if not (np.isfinite(f).all() and np.isfinite(h).all()))
    first_large = next(k for k, (f, h) in enumerate(pairs)
                       if max(np.max(np.abs(f)), np.max(np.abs(h))) >= np.finfo(np.float64).max / f.size)
    return first_large, first_inf


PROBE_OVERFLOWS = [  # (case id, hidden widths, init σ², bias variance)
    ("issue: depth 400, width 80, σ² = 1", [80] * 400, 1.0, 0.0),
    ("σ² = 1e300 overflows at once", [80] * 3, 1e300, 0.0),
    ("tanh saturates, the identity output overflows", [16] * 3, 1e300, 0.0),
    ("identity, width 20, depth 400, σ² = 4, with biases", [20] * 400, 4.0, 0.1),
]


@pytest.mark.parametrize("case, hidden, sigma2, bias", PROBE_OVERFLOWS, ids=[c[0] for c in PROBE_OVERFLOWS])
def test_probe_calls_an_overflow_explosion_and_names_the_layer(case, hidden, sigma2, bias):
    activation = next((a for a in ("tanh", "identity") if a in case), "relu")
    net = dl.MLP(1, hidden, 1, activation=activation, init=sigma2,
                 bias_init={"name": "normal", "variance": bias} if bias else "zeros", rng=0)
    x = np.random.default_rng(0).standard_normal((50, 1))
    if activation == "tanh":       # bounded hidden units cannot overflow: saturated is the right verdict
        report = dl.probe(net, x)
        assert report.verdict == "saturated", report.diagnosis
        return
    with np.errstate(over="ignore", invalid="ignore"):
        report = dl.probe(net, x)
    low, high = overflow_window(net, x)
    assert report.verdict == "exploding", report.diagnosis
    named = int(re.search(r"limit of float64 \(about 1.8e308\) at layer (\d+),", report.diagnosis).group(1))
    assert low <= named <= high, (low, named, high)
    assert "verdict: exploding" in str(report) and report.verdict_layer <= named


def test_probe_names_biases_that_round_the_input_away():
    """Constant layers after random weights are not 'zero or constant weights': the bias swamps Ω h."""
    net = dl.MLP(1, [40] * 3, 1, init=1.0, bias_init={"name": "normal", "variance": 1e300}, rng=0)
    with np.errstate(over="ignore", invalid="ignore"):
        report = dl.probe(net, np.random.default_rng(0).standard_normal((100, 1)))
    assert (report.verdict, report.verdict_layer) == ("dead", 0)
    assert "rounds the input's contribution away" in report.diagnosis
    assert "Zero or constant weights" not in report.diagnosis


def _grid_regions(net, low, high, points=400_001) -> int:
    patterns = activation_patterns(net, np.linspace(low, high, points).reshape(-1, 1))
    return 1 + int(np.count_nonzero(np.any(patterns[1:] != patterns[:-1], axis=1)))


REGION_NET = dl.MLP(1, [8, 8], 1, bias_init={"name": "normal", "std": 0.5}, rng=0)
REGION_CASES = [  # (case id, start, end, expected: "grid" = the fine grid over [-10, 10], or an error pattern)
    ("±10", -10.0, 10.0, "grid"),
    ("±1e6", -1e6, 1e6, "grid"),
    ("±1e9 (eps no longer merges the kinks)", -1e9, 1e9, "grid"),
    ("1e9 → −1e8 (asymmetric)", 1e9, -1e8, "grid"),
    ("±1e12", -1e12, 1e12, "grid"),
    ("issue: ±1e308", -1e308, 1e308, r"float64|float precision|cannot resolve"),
    ("±1e300", -1e300, 1e300, r"cannot resolve a segment with end points as large as 1e\+300"),
    ("1e307 → −3e306", 1e307, -3e306, r"cannot resolve"),
    ("beyond float max", -1.7e308, 1.7e308, r"cannot resolve"),
]


@pytest.mark.parametrize("case, start, end, expected", REGION_CASES, ids=[c[0] for c in REGION_CASES])
def test_count_linear_regions_counts_long_segments_or_refuses(case, start, end, expected):
    if expected == "grid":   # every kink of this net lies well within ±10 (checked by the ±10 case)
        assert count_linear_regions(REGION_NET, [start], [end]) == _grid_regions(REGION_NET, -10.0, 10.0)
    else:
        with pytest.raises(ValueError, match=expected):
            count_linear_regions(REGION_NET, [start], [end])


def test_count_linear_regions_overflow_inside_the_net_is_refused():
    net = dl.MLP(1, [4, 4], 1, init=1e300, bias_init={"name": "normal", "std": 0.5}, rng=0)
    with pytest.raises(ValueError, match=r"exceed float64's range|cannot resolve"):
        count_linear_regions(net, [-1e10], [1e10])


def test_jacobian_spectrum_refuses_an_overflowed_jacobian():
    """Was: LinAlgError 'SVD did not converge' for an exploding network."""
    net = dl.MLP(4, [16] * 3, 4, init=1e300, rng=0)
    with pytest.raises(ValueError, match=r"beyond float64's range .* the network explodes"):
        jacobian_spectrum(net, np.random.default_rng(0).standard_normal((3, 4)))


def test_isometry_moments_do_not_overflow_before_the_values_do():
    """Was: std_squared = inf for singular values near 1e145 (s² fits, its squares do not)."""
    small = np.array([1.0, 2.0, 3.0, 0.5])
    scale = 1e145
    stats = isometry(small * scale)
    reference = isometry(small)
    assert stats["mean_squared"] == pytest.approx(reference["mean_squared"] * scale ** 2, rel=1e-12)
    assert stats["std_squared"] == pytest.approx(np.std(small ** 2) * scale ** 2, rel=1e-12)
    assert stats["std_log_squared"] == pytest.approx(np.std(np.log(small ** 2)), rel=1e-12)
    with pytest.raises(ValueError, match="finite singular values"):
        isometry([1.0, np.inf])


def test_init_variance_reports_the_overflow_layer_not_nan(tmp_path):
    """Was: 'std(h_K)/std(h_1) nan' and tables of nan; the std also 'overflowed' at ~1e154 by squaring."""
    with np.errstate(over="ignore"):   # matplotlib's log axis overflows internally near 1e308
        result = base.run_experiment("init-variance", {"depths": "3,400", "schemes": "1,2/D", "repeats": "1",
                                                      "samples": "50", "width": "80"},
                                     out_dir=tmp_path / "iv", progress=False)
    from depthlab.lab.experiments import init_variance
    config = base.make_config("init-variance", {"depths": "3,400", "schemes": "1", "repeats": "1",
                                                "samples": "50", "width": "80"})
    x = init_variance.inputs(config)
    net = init_variance.build(config, 400, init_variance.scheme("1"), init_variance.rng_for(config, 1, 0, 0))
    with np.errstate(over="ignore", invalid="ignore"):
        trace = net.forward(x, record=True, allow_nonfinite=True)
    hs = trace.activations[1:]
    reference = next(k + 1 for k, h in enumerate(hs) if not np.isfinite(h).all())
    assert result.metrics["overflow_layer_sigma2_1"] == reference
    assert result.metrics["growth_sigma2_1"] == np.inf
    assert result.metrics["overflow_layer_2_over_D"] is None
    summary = " ".join(result.summary.split())
    assert "nan" not in summary and f"overflows float64 (beyond 1.8e308) at layer {reference}" in summary
    # below the overflow, the measured std equals np.std where its squares still fit
    k = next(k for k, h in enumerate(hs) if np.max(np.abs(h)) > 1e160)
    assert init_variance.finite_std(hs[k]) == pytest.approx(1e160 * np.std(hs[k] / 1e160), rel=1e-12)
    assert np.isfinite(init_variance.finite_std(hs[k]))


# ============================================================================= class 5: typed values

PLENTY = "9" * 25
CLI_CASES = [  # (case id, argv, message pattern)
    ("issue: probe --depth 1e20", ["probe", "--depth", "99999999999999999999"], r"--depth must be <= 10,000"),
    ("closing note: probe --depth 1e6", ["probe", "--depth", "1000000", "--width", "1", "--samples", "2"],
     r"--depth must be <= 10,000"),
    ("issue: probe --bias-variance 1e308", ["probe", "--bias-variance", "1e308"], r"--bias-variance must be <= 1e\+06"),
    ("probe --sigma2 1e300", ["probe", "--sigma2", "1e300"], r"--sigma2 must be <= 1e\+06"),
    ("probe --width huge", ["probe", "--width", PLENTY], r"--width must be <= 10,000"),
    ("probe --samples 1", ["probe", "--samples", "1", "--depth", "2"], r"--samples must be at least 2"),
    ("probe --samples huge", ["probe", "--samples", PLENTY], r"--samples must be <= 1,000,000"),
    ("probe --in-features huge", ["probe", "--in-features", "100000"], r"--in-features must be <= 10,000"),
    ("probe memory product", ["probe", "--depth", "10000", "--width", "100", "--samples", "1000"],
     r"--depth × --width × --samples = 1e\+09 numbers held exceeds the cap 5e\+07"),
    ("probe work product", ["probe", "--depth", "1000", "--width", "10000", "--samples", "2"],
     r"--depth × --width² × --samples = 2e\+11 multiply-adds exceeds the cap"),
    ("issue: width=1e23 (float text)", ["run", "init-variance", "--set", "width=1e23"], r"--set width=1e23: expected an int"),
    ("closing note: width=10^23", ["run", "init-variance", "--set", "width=" + "1" + "0" * 23],
     r"width must be <= 10,000"),
    ("init-variance samples·width·depth", ["run", "init-variance", "--set", "width=5000"], r"samples·width·depth"),
    ("init-variance schemes=1e300", ["run", "init-variance", "--set", "schemes=1e300"], r"outside \[1e-06, 1e\+06\]"),
    ("init-variance schemes=1e-300", ["run", "init-variance", "--set", "schemes=1e-300"], r"outside \[1e-06, 1e\+06\]"),
    ("init-variance repeats huge", ["run", "init-variance", "--set", "repeats=" + PLENTY], r"repeats must be <= 100"),
    ("gradient-variance depths huge", ["run", "gradient-variance", "--set", "depths=5," + PLENTY],
     r"depths must be <= 10,000"),
    ("issue: optimizers start=1e308", ["run", "optimizers", "--set", "start=1e308,1"], r"start must lie within ±1e\+06"),
    ("optimizers steps huge", ["run", "optimizers", "--set", "steps=" + PLENTY], r"steps must be <= 100,000"),
    ("issue: gradcheck loss=cross_entropy out_features=1", ["run", "gradcheck", "--set", "loss=cross_entropy",
                                                            "--set", "out_features=1"], r"needs out_features >= 2"),
    ("gradcheck eps=1e300", ["run", "gradcheck", "--set", "eps=1e300"], r"eps must be <= 0.1"),
    ("gradcheck eps=1e-300", ["run", "gradcheck", "--set", "eps=1e-300"], r"eps must be >= 1e-12"),
    ("gradcheck tolerance=1e300 (was: matplotlib OverflowError)", ["run", "gradcheck", "--set", "tolerance=1e300"],
     r"tolerance must be <= 1"),
    ("gradcheck hidden huge", ["run", "gradcheck", "--set", "hidden=" + PLENTY], r"hidden must be <= 10,000"),
    ("gradcheck parameters", ["run", "gradcheck", "--set", "hidden=500,500"], r"parameter count must be <= 20,000"),
    ("issue: signal-theory bias_variance=1e300", ["run", "signal-theory", "--set", "bias_variance=1e300"],
     r"bias_variance must be <= 1e\+06"),
    ("signal-theory relu has no edge of chaos", ["run", "signal-theory", "--set", "activation=relu"],
     r"has no edge of chaos to study"),
    ("signal-theory range misses the critical point", ["run", "signal-theory", "--set", "bias_variance=10"],
     r"must contain the critical σ_w² = 7.6"),
    ("signal-theory grid huge", ["run", "signal-theory", "--set", "grid=100000,2"], r"grid must be <= 200"),
    ("linear-regions segment=1e308", ["run", "linear-regions", "--set", "segment=1e308"], r"segment must be <= 1e\+06"),
    ("linear-regions folding count", ["run", "linear-regions", "--set", "units=600", "--set", "depths=1,2",
                                      "--set", "depth_2d=1", "--set", "resolution=100"], r"more than the 65536"),
    ("activation-histograms layers", ["run", "activation-histograms", "--set", "layers=500"], r"layers must be <= 20"),
    ("fit-1d epochs huge", ["run", "fit-1d", "--set", "epochs=" + PLENTY], r"epochs must be <= 100,000"),
    ("fit-1d work", ["run", "fit-1d", "--set", "width=2000", "--set", "epochs=1000"], r"multiply-adds exceeds the cap"),
    ("fit-2d resolution", ["run", "fit-2d", "--set", "resolution=100000"], r"resolution must be <= 2,000"),
    ("three-layer in_features", ["run", "three-layer", "--set", "in_features=" + PLENTY], r"in_features must be <= 10,000"),
    ("depth-trainability work", ["run", "depth-trainability", "--set", "width=10000"], r"multiply-adds exceeds the cap"),
    ("edge-of-chaos workers", ["run", "edge-of-chaos", "--set", "workers=100000"], r"workers must be <= 256"),
    ("edge-of-chaos lr=1e300 (was: every grid point failed, exit 1)", ["run", "edge-of-chaos", "--set", "lr=1e300"],
     r"lr must be <= 10"),
    ("edge-of-chaos sigma_w2", ["run", "edge-of-chaos", "--set", "sigma_w2=1e300"], r"sigma_w2 must be <= 1e\+06"),
    ("closing note: repeated --only", ["report", "--only", "gradcheck", "--only", "gradcheck"],
     r"--only gradcheck is given more than once"),
    ("repeated --only, two spellings", ["report", "--only", "fit-1d", "--only", "fit_1d"], r"--only fit-1d is given"),
]


@pytest.mark.parametrize("case, argv, pattern", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_typed_values_are_one_line_usage_errors(capsys, tmp_path, case, argv, pattern):
    if argv[0] in ("run", "report"):
        argv = [*argv, "--out", tmp_path / "out", "--no-progress"]
    assert_one_line_exit_2(*run_cli(capsys, *argv), pattern)
    assert not (tmp_path / "out" / "report.html").exists()


@pytest.mark.parametrize("name", ["a" * 300, "a" * 300 + "/inner", "x\0y"], ids=["300 chars", "300-char parent", "NUL"])
def test_an_out_name_the_file_system_refuses_is_a_usage_error(capsys, tmp_path, name):
    code, out, err = run_cli(capsys, "run", "gradcheck", "--quick", "--no-progress", "--out", tmp_path / name)
    assert_one_line_exit_2(code, out, err, r"--out|output folder")


API_CASES = [  # (case id, call, exception, message pattern)
    ("issue: MLP(3, [2**70], 2)", lambda: dl.MLP(3, [2 ** 70], 2), ValueError, r"more than any array can index"),
    ("MLP(3, [2**40], 2)", lambda: dl.MLP(3, [2 ** 40], 2), ValueError, r"more than this machine's .* of memory"),
    ("MLP(10**6 wide, 3 layers)", lambda: dl.MLP(3, [10 ** 6] * 3, 2), ValueError, r"use narrower layers"),
    ("Linear(2**62, 2**62)", lambda: dl.nn.layers.Linear(2 ** 62, 2 ** 62), ValueError, r"Linear\(4611686018427387904"),
    ("count_linear_regions ±1e308", lambda: count_linear_regions(REGION_NET, [-1e308], [1e308]), ValueError,
     r"cannot resolve"),
    ("make_config width=10^23", lambda: base.make_config("init-variance", {"width": 10 ** 23}), ValueError,
     r"width must be <= 10,000"),
]


@pytest.mark.parametrize("case, call, exception, pattern", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_sizes_and_values_are_clear_errors(case, call, exception, pattern):
    with pytest.raises(exception, match=pattern):
        call()


ACCEPTED = [  # (case id, experiment, overrides): values validate() accepts, run at --quick to the end
    ("gradcheck loss=cross_entropy (issue: was a traceback)", "gradcheck", {"loss": "cross_entropy"}),
    ("gradcheck binary cross-entropy", "gradcheck", {"loss": "binary_cross_entropy_with_logits"}),
    ("fit-1d seed_samples=1 (was: x is empty)", "fit-1d", {"seed_samples": "1", "epochs": "1"}),
    ("optimizers start at the cap", "optimizers", {"start": "1e6,-1e6", "steps": "20"}),
]


@pytest.mark.parametrize("case, name, overrides", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_values_validate_accepts_run(tmp_path, case, name, overrides):
    with np.errstate(over="warn", divide="warn", invalid="warn", under="ignore"):
        result = base.run_experiment(name, overrides, quick=True, out_dir=tmp_path / "o", progress=False)
    assert (tmp_path / "o" / "report.html").exists() and result.summary


@pytest.mark.parametrize("command", ["probe", "run"])
def test_caps_are_stated_in_help(capsys, command):
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0
    text = " ".join(out.split())
    assert f"{limits.MAX_UNITS:,}" in text and f"{limits.MAX_SAMPLES:,}" in text and "multiply-adds" in text


SUMMARIES = [  # (case id, experiment, overrides, pattern): an overflow or divergence is named, never "nan"
    ("fit-1d: the seed recipe diverges (was 'test MSE nan')", "fit-1d",
     {"seed_lr": "1000", "epochs": "2", "train_samples": "64", "seed_samples": "64", "test_samples": "32"},
     r"seed 003's recipe .*: diverged \(its weights overflowed float64"),
    ("three-layer: He at lr 1e300 (was 'loss inf')", "three-layer", {"lr_he": "1e300", "torch": "false", "steps": "5"},
     r"He \(lr 1e\+300\) loss diverged"),
    ("init-variance: σ² = 1e6 overflows", "init-variance",
     {"depths": "3,90", "schemes": "1e6,2/D", "repeats": "1", "samples": "20"}, r"σ²_Ω = 1e6 overflows float64"),
    ("gradient-variance: σ² = 1e6 (was a crash in the theory)", "gradient-variance",
     {"depths": "3,90", "schemes": "1e6,2/D", "repeats": "1", "samples": "20"}, r"σ²_Ω = 1e6 overflows float64"),
]


@pytest.mark.parametrize("case, name, overrides, pattern", SUMMARIES, ids=[c[0] for c in SUMMARIES])
def test_experiment_summaries_name_overflow_and_divergence(tmp_path, case, name, overrides, pattern):
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):   # what a user's NumPy does: warn
        result = base.run_experiment(name, overrides, quick=True, out_dir=tmp_path / "o", progress=False)
    assert re.search(pattern, " ".join(result.summary.split())), result.summary
    assert "nan" not in result.summary.lower().replace("nan)", ""), result.summary


@pytest.mark.parametrize("name", experiments.names())
def test_every_experiments_default_and_quick_configs_pass_its_own_caps(name):
    """The caps of validate() must admit the runs the tour and --quick make (a cap below the
    default configuration fails `make demo`)."""
    module = experiments.get(name)
    for quick in (False, True):
        base.make_config(module, quick=quick)
