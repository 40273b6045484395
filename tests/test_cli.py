"""The `depthlab` command: help, exit codes, and one-line messages for every user mistake."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_report import fake_experiments  # noqa: F401  (the fixture registering experiments tiny and boom)

from depthlab.lab import cli, experiments


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- help and list

@pytest.mark.parametrize("argv", [["--help"], *[[name, "--help"] for name in cli.COMMANDS]])
def test_help_everywhere(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 0 and err == ""
    assert out.startswith("usage: depthlab")


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip().startswith("depthlab ")


def test_list_names_every_experiment_on_one_line_each(capsys):
    code, out, err = run(capsys, "list")
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == experiments.names()


def test_list_keys_shows_types_and_defaults(capsys):
    code, out, _ = run(capsys, "list", "--keys")
    assert code == 0
    assert "--set width (int, default 80)" in out and "--set depths (tuple[int, ...], default 5,50)" in out


def test_python_dash_m_depthlab_list():
    completed = subprocess.run([sys.executable, "-m", "depthlab", "list"], capture_output=True, text=True,
                               timeout=120, env={**os.environ, "MPLBACKEND": "Agg"})
    assert completed.returncode == 0, completed.stderr
    assert "init-variance" in completed.stdout and "signal-theory" in completed.stdout


def test_subcommands_come_from_one_table():
    assert list(cli.COMMANDS) == ["list", "run", "report", "probe", "theory", "sweep", "explore"]
    parser = cli.build_parser()
    assert all(name in parser.format_help() for name in cli.COMMANDS)


# ----------------------------------------------------------------------------- user mistakes: exit 2, one line

def _unwritable(tmp_path) -> str:
    """A folder nobody may write into: a read-only one, or /proc when running as root."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    return str(folder) if not os.access(folder, os.W_OK) else "/proc"


BAD_INPUT = [
    (["frobnicate"], r"invalid choice: 'frobnicate'"),
    ([], r"the following arguments are required: COMMAND"),
    (["run"], r"the following arguments are required: NAME"),
    (["run", "init-varience"], r"unknown experiment 'init-varience'; choose one of: init-variance, gradient-variance"),
    (["run", "init-variance", "--set", "bogus=1"],
     r"unknown --set key 'bogus' for init-variance; valid keys: depths \(tuple\[int, \.\.\.\], default 5,50\), "
     r"width \(int, default 80\)"),
    (["run", "init-variance", "--set", "width"], r"argument --set: expected key=value, got 'width'"),
    (["run", "init-variance", "--set", "width=abc"], r"--set width=abc: expected an int \(width is int\)"),
    (["run", "init-variance", "--set", "width=-3"], r"width must be >= 1, got -3"),
    (["run", "init-variance", "--set", "depths=5,-1"], r"depths must be >= 1, got 5,-1"),
    (["run", "init-variance", "--set", "schemes=1,-2"], r"schemes: '-2' is neither a scheme"),
    (["run", "activation-histograms", "--set", "inits=zero,bogus"], r"inits must be one of zero, normal-1"),
    (["run", "gradcheck", "--set", "eps=0"], r"eps must be > 0, got 0"),
    (["run", "gradcheck", "--set", "activations=relu,bogus"], r"Unknown activation 'bogus'"),
    (["run", "signal-theory", "--set", "weight_variance_range=3,1"], r"low < high"),
    (["run", "optimizers", "--set", "steps=1.5"], r"--set steps=1.5: expected an int"),
    (["run", "init-variance", "--seed", "-1"], r"argument --seed: must be a non-negative int, got -1"),
    (["run", "init-variance", "--seed", "x"], r"argument --seed: expected a non-negative int, got 'x'"),
    (["run", "init-variance", "--out", "{file}"], r"output folder '.*' is a file"),
    (["run", "init-variance", "--out", "{file}/sub"], r"cannot create output folder .*a file is in the way"),
    (["run", "init-variance", "--out", "{unwritable}"], r"cannot (write into|create) output folder"),
    (["report", "--out", "{file}"], r"output folder '.*' is a file"),
    (["report", "--out", "{unwritable}"], r"cannot (write into|create) output folder"),
    (["report", "--only", "nope"], r"unknown experiment 'nope'"),
    (["probe", "--depth", "-3"], r"argument --depth: must be a positive int \(>= 1\), got -3"),
    (["probe", "--width", "0"], r"argument --width: must be a positive int"),
    (["probe", "--sigma2", "0"], r"argument --sigma2: must be a finite number > 0, got 0"),
    (["probe", "--sigma2", "-1"], r"argument --sigma2: must be a finite number > 0, got -1"),
    (["probe", "--sigma2", "inf"], r"argument --sigma2: must be a finite number > 0"),
    (["probe", "--bias-variance", "-0.5"], r"argument --bias-variance: must be a finite number >= 0"),
    (["probe", "--activation", "bogus"], r"Unknown activation 'bogus'"),
    (["probe", "--init", "bogus"], r"Unknown initializer 'bogus'"),
    (["probe", "--init", "he_normal", "--sigma2", "2"], r"--sigma2 sets σ²_Ω of --init normal"),
    (["probe", "--depth", "3", "--samples", "1"], r"depthlab probe: .*sample"),
    (["probe", "--block", "dense"], r"argument --block: invalid choice: 'dense'"),
    (["probe", "--norm", "group"], r"argument --norm: invalid choice: 'group'"),
    (["probe", "--block", "preact", "--residual-scale", "-1"], r"argument --residual-scale: .*>= 0 or '1/sqrt"),
    (["probe", "--block", "preact", "--residual-scale", "nan"], r"argument --residual-scale"),
    (["probe", "--residual-scale", "0.5"], r"--residual-scale weighs residual branches; add --block"),
    (["probe", "--block", "preact", "--depth", "5000", "--width", "1000"], r"depthlab probe: .*numbers held exceeds"),
    (["probe", "--block", "preact", "--depth", "5", "--width", "5000", "--samples", "500"],
     r"depthlab probe: .*multiply-adds exceeds"),
    (["theory", "--bias-variance", "-0.1"], r"argument --bias-variance: must be a finite number >= 0"),
    (["theory", "--weight-variance", "0"], r"argument --weight-variance: must be a finite number > 0"),
    (["theory", "--activation", "bogus"], r"Unknown activation 'bogus'"),
]


@pytest.mark.parametrize("argv, pattern", BAD_INPUT, ids=[" ".join(a) or "(none)" for a, _ in BAD_INPUT])
def test_user_mistakes_exit_2_with_one_line(capsys, tmp_path, argv, pattern):
    (tmp_path / "file.txt").write_text("not a folder")
    fill = {"file": str(tmp_path / "file.txt"), "unwritable": _unwritable(tmp_path)}
    code, out, err = run(capsys, *[a.format(**fill) for a in argv])
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert err.startswith("depthlab")
    assert re.search(pattern, err), err


# ----------------------------------------------------------------------------- commands that work

def test_run_quick_writes_the_report_and_prints_a_summary(capsys, tmp_path):
    code, out, err = run(capsys, "run", "gradcheck", "--quick", "--out", str(tmp_path / "g"), "--no-progress",
                         "--set", "activations=tanh,relu")
    assert code == 0, err
    assert "gradcheck PASSED" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"wrote {tmp_path / 'g' / 'report.html'}")
    assert {p.name for p in (tmp_path / "g").iterdir()} >= {"report.html", "metrics.json", "errors.png", "dydx.png"}


def test_run_defaults_to_reports_name(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "run", "gradcheck", "--quick", "--no-progress", "--seed", "1",
                       "--set", "activations=tanh", "--set", "hidden=4")
    assert code == 0
    assert (tmp_path / "reports" / "gradcheck" / "report.html").is_file()
    assert "gradcheck PASSED" in out


def test_probe_prints_the_table_and_verdict(capsys):
    code, out, err = run(capsys, "probe", "--depth", "20", "--width", "32", "--activation", "relu", "--init",
                         "normal", "--sigma2", "1.0", "--samples", "200")
    assert code == 0, err
    assert "verdict: exploding" in out
    code, out, _ = run(capsys, "probe", "--depth", "20", "--width", "32", "--init", "he_normal", "--samples", "200")
    assert code == 0 and "verdict: healthy" in out


@pytest.mark.parametrize("flags, verdict", [
    (["--block", "preact"], "verdict: exploding"),                                   # ×(1 + 1²) per block
    (["--block", "preact", "--residual-scale", "1/sqrt(depth)"], "verdict: healthy"),
    (["--block", "postact", "--norm", "layer"], "verdict: healthy"),
    (["--norm", "batch", "--depth", "30"], "batch norm makes gradients explode toward the input"),
])
def test_probe_residual_and_normalized_networks(capsys, flags, verdict):
    """The same network as dl.ResMLP / a normalized MLP with these settings, probed per block."""
    code, out, err = run(capsys, "probe", "--depth", "16", "--width", "32", "--init", "he_normal", "--samples", "200",
                         *flags)
    assert code == 0, err
    assert verdict in out and "block" in out.splitlines()[1]


def test_theory_prints_the_critical_point(capsys):
    code, out, err = run(capsys, "theory", "--activation", "tanh", "--bias-variance", "0.05")
    assert code == 0, err
    assert "edge of chaos: σ_w² = 1.76095" in out
    assert "critical" in out and "chaotic" in out and "ordered" in out
    code, out, _ = run(capsys, "theory", "--activation", "relu")
    assert code == 0 and "edge of chaos: σ_w² = 2 " in out


# ----------------------------------------------------------------------------- crashes inside experiments

def test_a_crash_in_run_is_exit_1_not_a_usage_error(capsys, tmp_path, fake_experiments):
    code, out, err = run(capsys, "run", "boom", "--out", str(tmp_path), "--no-progress")
    assert code == 1
    assert err.strip().splitlines()[-1] == "depthlab run: experiment boom failed: RuntimeError: the experiment broke"


def test_report_marks_the_failure_keeps_the_rest_and_prints_the_index_last(capsys, tmp_path, fake_experiments):
    out_dir = tmp_path / "tour"
    code, out, err = run(capsys, "report", "--out", str(out_dir), "--quick", "--no-progress",
                         "--only", "tiny", "--only", "boom")
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[-1] == str(out_dir / "index.html")
    assert "FAILED  RuntimeError: the experiment broke" in lines[1]
    assert (out_dir / "tiny" / "report.html").is_file()
    index = Path(lines[-1]).read_text()
    assert 'href="tiny/report.html"' in index and "the experiment broke" in index
    assert "1 experiment(s) failed: boom" in err


def test_report_exit_0_when_all_succeed(capsys, tmp_path, fake_experiments):
    code, out, _ = run(capsys, "report", "--out", str(tmp_path), "--only", "tiny", "--no-progress")
    assert code == 0 and out.strip().splitlines()[-1] == str(tmp_path / "index.html")

