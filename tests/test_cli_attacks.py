"""Adversarial command lines for `depthlab list/run/report/probe/theory` (sweep is reviewed elsewhere).

The rule: bad input ends with exit code 2 and one line on stderr (no traceback) naming the argument,
what was expected and what came; nothing is silently lost, and no output is written where the user
did not ask. Tests whose docstring starts "Was a bug" failed before their fix.
"""
import re

import pytest

from depthlab.lab import cli


def run(capsys, *argv):
    """cli.main(argv) -> (code, out, err); an exception escaping main() is itself a failure."""
    try:
        code = cli.main(list(argv))
    except BaseException as error:  # noqa: BLE001  - escaping main() means a traceback for the user
        pytest.fail(f"{type(error).__name__} escaped cli.main (the user sees a traceback): {error}")
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, out, err, pattern=None):
    assert code == 2, (code, err[-500:])
    assert "Traceback" not in err, err[-500:]
    assert err.count("\n") == 1 and err.startswith("depthlab"), err[-500:]
    if pattern:
        assert re.search(pattern, err), err


# ----------------------------------------------------------------------------- already good (not in test_cli.py)

GOOD_REJECTIONS = [
    (["run", "init-varience"], r"Did you mean 'init-variance'\?"),
    (["run", "init-variance", "--set", "=3"], r"argument --set: expected key=value, got '=3'"),
    (["run", "init-variance", "--set", "width=nan"], r"--set width=nan: expected an int"),
    (["run", "init-variance", "--set", "width="], r"--set width=: expected an int"),
    (["run", "init-variance", "--set", "depths="], r"--set depths=: expected at least one comma-separated value"),
    (["run", "gradcheck", "--set", "eps=nan"], r"--set eps=nan: expected a finite number \(eps is float\)"),
    (["run", "gradcheck", "--set", "eps=-inf"], r"--set eps=-inf: expected a finite number"),
    (["run", "gradcheck", "--set", "eps=1/0"], r"--set eps=1/0: expected a number"),
    (["probe", "--sigma2", "nan"], r"argument --sigma2: must be a finite number > 0, got nan"),
    (["probe", "--bias-variance", "nan"], r"argument --bias-variance: must be a finite number >= 0, got nan"),
    (["probe", "--depth", "1e3"], r"argument --depth: expected a positive int, got '1e3'"),
    (["probe", "--in-features", "0"], r"argument --in-features: must be a positive int"),
    (["probe", "--activation", ""], r"Unknown activation ''"),
    (["theory", "--weight-variance", "nan"], r"argument --weight-variance: must be a finite number > 0, got nan"),
    (["theory", "--weight-variance", "inf"], r"argument --weight-variance: must be a finite number > 0"),
    (["list", "extra"], r"unrecognized arguments: extra"),
]


@pytest.mark.parametrize("argv, pattern", GOOD_REJECTIONS, ids=[" ".join(a) for a, _ in GOOD_REJECTIONS])
def test_more_bad_input_is_one_line_exit_2(capsys, argv, pattern):
    assert_usage_error(*run(capsys, *argv), pattern)


@pytest.mark.parametrize("argv", [
    ["probe", "--width", "10000000", "--depth", "2", "--samples", "2"],
    ["probe", "--depth", "2", "--samples", "100000000000"],
], ids=["width=1e7", "samples=1e11"])
def test_probe_sizes_that_cannot_fit_in_memory_are_usage_errors(capsys, argv):
    """Was a bug: cli._probe (cli.py ~l.180) catches only ValueError/TypeError around dl.MLP/dl.probe, and
    cli.main catches neither MemoryError nor anything else: numpy's _ArrayMemoryError ("Unable to
    allocate 728. TiB ...") escapes as a raw traceback (exit 1). No size guard on --width/--samples
    (positive_int has no upper bound) and no hint to lower them."""
    assert_usage_error(*run(capsys, *argv), r"--(width|samples)")


# ----------------------------------------------------------------------------- bugs: output folders

def test_report_with_an_unknown_only_name_leaves_no_folder_behind(capsys, tmp_path):
    """Was a bug: base.run_tour (experiments/base.py, `out = prepare_out_dir(...)` before the
    `_module_path_exists(name)` loop) creates --out (and its parents) before checking the --only names,
    so a typo leaves an empty folder tree behind. Validate names first."""
    target = tmp_path / "new" / "tour"
    assert_usage_error(*run(capsys, "report", "--only", "nope", "--out", str(target)), r"unknown experiment 'nope'")
    assert not (tmp_path / "new").exists()


def test_run_with_an_empty_out_does_not_write_into_the_current_folder(capsys, tmp_path, monkeypatch):
    """Was a bug: `--out ""` is accepted (cli.py _configure_run, no type check) and Path("") is ".", so
    prepare_out_dir/write_outputs (experiments/base.py) silently write report.html, metrics.json and the
    PNGs into the current directory, overwriting any files of those names there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.html").write_text("mine")
    code, out, err = run(capsys, "run", "gradcheck", "--quick", "--no-progress", "--out", "",
                         "--set", "activations=tanh", "--set", "hidden=4")
    assert (tmp_path / "report.html").read_text() == "mine"
    assert_usage_error(code, out, err, r"--out")


# ----------------------------------------------------------------------------- bugs: conflicting flags

def test_repeated_set_key_is_not_silently_dropped(capsys, tmp_path):
    """Was a bug: cli._run (cli.py ~l.123) passes dict(args.overrides) to run_experiment, so
    `--set hidden=4 --set hidden=5` keeps only the last value and the first is dropped without a word."""
    code, out, err = run(capsys, "run", "gradcheck", "--quick", "--no-progress", "--out", str(tmp_path / "o"),
                         "--set", "activations=tanh", "--set", "hidden=4", "--set", "hidden=5")
    assert_usage_error(code, out, err, r"hidden")


def test_set_seed_and_seed_together_conflict(capsys, tmp_path):
    """Was a bug: make_config (experiments/base.py, `if seed is not None: values["seed"] = ...` after the --set
    layer) lets --seed silently override --set seed=..., so `--set seed=3 --seed 4` runs seed 4 and the
    user's seed=3 is lost without a message."""
    code, out, err = run(capsys, "run", "gradcheck", "--quick", "--no-progress", "--out", str(tmp_path / "o"),
                         "--set", "activations=tanh", "--set", "hidden=4", "--set", "seed=3", "--seed", "4")
    assert_usage_error(code, out, err, r"seed")


# ----------------------------------------------------------------------------- bugs: misleading output

def test_theory_default_table_has_one_row_per_weight_variance(capsys):
    """Was a bug: cli._theory (cli.py ~l.230) builds the grid as {0.5, 1.0, ...} | {critical}; for tanh
    critical_weight_variance returns 0.9999999999999998, so the table prints two rows labelled "1"
    (both "critical", with different ξ_q 7.38e13 vs 7.51e13) and the arrow marks one at random-looking."""
    code, out, err = run(capsys, "theory")
    assert code == 0, err
    labels = [line.split()[0] for line in out.splitlines() if re.match(r"\s+\S+\s+(ordered|critical|chaotic|explodes)",
                                                                         line)]
    assert len(labels) == len(set(labels)), labels


def test_unknown_activation_message_echoes_what_the_user_typed(capsys):
    """Was a bug: activations.get (activations.py ~l.317) normalizes the name ('-' -> '_') before
    _checks.lookup builds the message, so `--activation 'leaky_relu(negative_slope=-1)'` is reported as
    "Unknown activation 'leaky_relu(negative_slope=_1)'", a string the user never typed. (The CLI also has
    no way to pass negative_slope/alpha, and the message gives no hint about it.)"""
    code, out, err = run(capsys, "probe", "--depth", "2", "--activation", "leaky_relu(negative_slope=-1)")
    assert_usage_error(code, out, err, re.escape("'leaky_relu(negative_slope=-1)'"))
