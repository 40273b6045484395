"""dl.sweep and `depthlab sweep`: parallel points, one JSON line each, resume, crashes, Dask, bad input.

The functions swept here live at the top level of this module, so worker processes (and Dask
workers) import them by name.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import depthlab as dl
from depthlab.lab import cli, sweeps

HERE = Path(__file__).resolve().parent
GRID = {"x": [0, 1, 2, 3], "y": [10, 20]}   # 8 points


def square(x, y=0):
    return {"value": x * x + y, "half": x / 2}


def slow_square(x, y=0):
    time.sleep(0.25)
    return {"value": x * x + y, "pid": os.getpid()}


def fail_on_three(x, y=0):
    if x == 3:
        raise ValueError("three is refused")
    return {"value": x + y}


def die_on_two(x, y=0):
    if x == 2 and y == 10:
        os._exit(3)
    return {"value": x + y}


def interrupt_on_two(x, y=0):
    if x == 2:
        raise KeyboardInterrupt
    return {"value": x * x + y}


def lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def points_of(records):
    return [json.dumps(r["point"], sort_keys=True) for r in records]


# ----------------------------------------------------------------------------- local pool

def test_eight_points_two_workers_eight_lines_then_resume_runs_nothing(tmp_path):
    out = tmp_path / "results.jsonl"
    records = dl.sweep(square, GRID, workers=2, out=out, progress=False)
    assert [r["point"] for r in records] == [{"x": x, "y": y} for x in GRID["x"] for y in GRID["y"]]
    assert all(r["status"] == "ok" and r["experiment"] == "test_sweeps:square" for r in records)
    assert [r["metrics"]["value"] for r in records] == [x * x + y for x in GRID["x"] for y in GRID["y"]]
    assert all(r["config"] == r["point"] and r["seconds"] >= 0 for r in records)
    written = lines(out)
    assert len(written) == 8 and sorted(points_of(written)) == sorted(points_of(records))
    before = out.read_bytes()
    again = dl.sweep(square, GRID, workers=2, out=out, progress=False)
    assert out.read_bytes() == before                     # nothing ran, nothing appended
    assert [r["metrics"] for r in again] == [r["metrics"] for r in records]


def test_interrupted_sweep_resumes_without_repeating_points(tmp_path):
    out = tmp_path / "results.jsonl"
    with pytest.raises(KeyboardInterrupt):
        dl.sweep(interrupt_on_two, GRID, workers=2, out=out, progress=False, name="interrupted")
    first = lines(out)
    assert 0 < len(first) < 8 and all(r["point"]["x"] != 2 for r in first)
    records = dl.sweep(square, GRID, workers=2, out=out, progress=False, name="interrupted")
    written = lines(out)
    assert len(written) == 8 and len(set(points_of(written))) == 8   # each point exactly once
    assert points_of(written[:len(first)]) == points_of(first)      # the first run's lines kept as they were
    assert all(r["status"] == "ok" for r in records)


@pytest.mark.slow
def test_killed_process_leaves_whole_lines_and_the_rerun_completes(tmp_path):
    out = tmp_path / "results.jsonl"
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import depthlab as dl, test_sweeps as t; "
              "dl.sweep(t.slow_square, t.GRID, workers=2, out=sys.argv[2], progress=False)")
    process = subprocess.Popen([sys.executable, "-c", script, str(HERE), str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(lines(out)) < 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    first = lines(out)                 # parses: every line whole
    assert 2 <= len(first) < 8
    workers = {r["metrics"]["pid"] for r in first}
    deadline = time.monotonic() + 15  # orphaned workers notice their sweep is gone and end
    while time.monotonic() < deadline and any(sweeps._alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(sweeps._alive(pid) for pid in workers)
    dl.sweep(slow_square, GRID, workers=2, out=out, progress=False)
    written = lines(out)
    assert len(written) == 8 and len(set(points_of(written))) == 8


def test_a_point_that_raises_is_recorded_as_failed_and_the_rest_finish(tmp_path):
    out = tmp_path / "results.jsonl"
    records = dl.sweep(fail_on_three, GRID, workers=2, out=out, progress=False)
    failed = [r for r in records if r["status"] == "failed"]
    assert [r["point"]["x"] for r in failed] == [3, 3]
    assert all(r["error"] == "ValueError: three is refused" for r in failed)
    assert all("fail_on_three" in r["traceback"] and r["metrics"] == {} for r in failed)
    assert sum(r["status"] == "ok" for r in records) == 6 and len(lines(out)) == 8


def test_a_worker_that_dies_costs_only_its_point(tmp_path):
    out = tmp_path / "results.jsonl"
    records = dl.sweep(die_on_two, GRID, workers=2, out=out, progress=False)
    failed = [r for r in records if r["status"] == "failed"]
    assert [r["point"] for r in failed] == [{"x": 2, "y": 10}]
    assert "died (exit code 3)" in failed[0]["error"]
    assert [r["metrics"]["value"] for r in records if r["status"] == "ok"] == \
        [x + y for x in GRID["x"] for y in GRID["y"] if (x, y) != (2, 10)]
    assert len(lines(out)) == 8


def test_retry_failed_reruns_only_failed_points_and_the_last_line_counts(tmp_path):
    out = tmp_path / "results.jsonl"
    dl.sweep(fail_on_three, GRID, workers=2, out=out, progress=False, name="retry")
    records = dl.sweep(square, GRID, workers=2, out=out, progress=False, name="retry", retry_failed=True)
    assert len(lines(out)) == 10                           # 8 + the two failed points again
    assert all(r["status"] == "ok" for r in records)
    assert [r["metrics"]["value"] for r in records if r["point"]["x"] == 3] == [19, 29]


def test_explicit_list_of_points_and_results_reader(tmp_path):
    out = tmp_path / "results.jsonl"
    points = [{"x": 5}, {"x": 1, "y": 2}]
    records = dl.sweep(square, points, workers=1, out=out, progress=False)
    assert [r["metrics"]["value"] for r in records] == [25, 3]
    assert sweeps.read_results(out, experiment="test_sweeps:square") == lines(out)


# ----------------------------------------------------------------------------- Dask

def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_unreachable_scheduler_is_a_clear_error_within_ten_seconds():
    start = time.monotonic()
    with pytest.raises(sweeps.SchedulerUnreachable, match=r"cannot reach a Dask scheduler at 'tcp://127\.0\.0\.1:\d+'"):
        dl.sweep(square, {"x": [1]}, client=f"tcp://127.0.0.1:{_closed_port()}", progress=False)
    assert time.monotonic() - start < 10


# ----------------------------------------------------------------------------- experiments and the CLI

def _cli(argv, monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "sweep", cli.Command(
        "run an experiment over a grid of configurations", "depthlab.lab.sweeps:configure_cli", "depthlab.lab.sweeps:cli_main"))
    return cli.main(argv)


def test_cli_sweeps_an_experiment_and_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "opt.jsonl"
    argv = ["sweep", "optimizers", "--quick", "--grid", "steps=40,60", "--set", "tolerance=0.01", "--out", str(out),
            "--workers", "2", "--no-progress"]
    assert _cli(argv, monkeypatch) == 0
    written = lines(out)
    assert sorted(r["point"]["steps"] for r in written) == [40, 60]
    assert all(r["experiment"] == "optimizers" and r["status"] == "ok" for r in written)
    assert all(r["config"]["tolerance"] == 0.01 and r["config"]["steps"] == r["point"]["steps"] for r in written)
    assert "2 run now" in capsys.readouterr().out
    assert _cli(argv, monkeypatch) == 0
    assert len(lines(out)) == 2 and "2 already in" in capsys.readouterr().out


def test_experiment_grid_parses_with_the_config_types():
    grid, keys = sweeps.experiment_grid("optimizers", {"steps": "10:30:3", "tolerance": "1e-3,0.01",
                                                       "start": "1,2;3,4"})
    assert grid == {"steps": [10, 20, 30], "tolerance": [0.001, 0.01], "start": [(1.0, 2.0), (3.0, 4.0)]}
    assert "seed" in keys


def _write(path, text):
    path.write_text(text)
    return path


def _other_experiment(tmp_path):
    return _write(tmp_path / "other.jsonl", json.dumps({"experiment": "three-layer", "point": {"steps": 1},
                                                        "config": {}, "metrics": {}, "status": "ok"}) + "\n")


def _corrupted(tmp_path):
    good = json.dumps({"experiment": "optimizers", "point": {"steps": 5}, "config": {}, "metrics": {},
                       "status": "ok"})
    return _write(tmp_path / "corrupt.jsonl", good + "\n{not json\n" + good + "\n")


BAD_CALLS = [
    (lambda p: dl.sweep(square, {}), ValueError, r"grid is empty"),
    (lambda p: dl.sweep(square, {"x": []}), ValueError, r"grid\['x'\] has no values"),
    (lambda p: dl.sweep(square, {"z": [1]}), ValueError, r"unknown grid key\(s\) 'z' for test_sweeps:square: its "
                                                         r"parameters are x, y"),
    (lambda p: dl.sweep(square, {"y": [1]}), ValueError, r"gives no value for .*parameter\(s\) x"),
    (lambda p: dl.sweep(square, {"x": "123"}), TypeError, r"must be a list of values, got the string '123'"),
    (lambda p: dl.sweep(square, {"x": 3}), TypeError, r"must be a list of values.*write \[3\]"),
    (lambda p: dl.sweep(square, {"x": [1, 1]}), ValueError, r"lists 1 twice"),
    (lambda p: dl.sweep(square, [1, 2]), TypeError, r"grid\[0\] must be a dict"),
    (lambda p: dl.sweep(square, "x=1"), TypeError, r"grid must be a dict"),
    (lambda p: dl.sweep(square, {"x": [1]}, workers=0), ValueError, r"workers must be >= 1, got 0"),
    (lambda p: dl.sweep(square, {"x": [1]}, workers=2.5), TypeError, r"workers must be an int, got float 2.5"),
    (lambda p: dl.sweep(square, {"x": [1]}, workers=2, client="tcp://127.0.0.1:1"), ValueError, r"either workers"),
    (lambda p: dl.sweep(lambda x: {}, {"x": [1]}), TypeError, r"fn must be picklable"),
    (lambda p: dl.sweep(42, {"x": [1]}), TypeError, r"fn must be a function"),
    (lambda p: dl.sweep(square, {"x": [object()]}), TypeError, r"grid\['x'\] holds object"),
    (lambda p: dl.sweep(square, {"x": [1]}, out=_other_experiment(p)), ValueError,
     r"holds results of 'three-layer' \(line 1\), not of 'test_sweeps:square'"),
    (lambda p: dl.sweep(square, {"x": [1]}, out=p), ValueError, r"is a directory"),
    (lambda p: dl.sweep(square, {"x": [1]}, resume="yes"), TypeError, r"resume must be True or False"),
    (lambda p: dl.sweep(square, {"x": [1]}, client=3), TypeError, r"client must be a dask.distributed.Client"),
    (lambda p: dl.sweep(square, {"x": [1]}, client="nonsense::"), ValueError, r"invalid scheduler address"),
    (lambda p: sweeps.sweep_experiment("optimizers", {"bogus": "1"}), ValueError,
     r"unknown grid key 'bogus' for optimizers; valid keys: steps \(int, default 300\), start \(tuple\[float, "
     r"float\]"),
    (lambda p: sweeps.sweep_experiment("optimizers", {}), ValueError, r"the grid is empty"),
    (lambda p: sweeps.sweep_experiment("optimizers", {"steps": ","}), ValueError, r"grid key 'steps' has no values"),
    (lambda p: sweeps.sweep_experiment("optimizers", {"steps": "ten"}), ValueError,
     r"--grid steps=ten: expected an int \(steps is int\)"),
    (lambda p: sweeps.sweep_experiment("optimizers", {"steps": "5:1:0"}), ValueError, r"COUNT must be >= 1"),
    (lambda p: sweeps.sweep_experiment("no-such-thing", {"steps": "1"}), ValueError, r"unknown experiment"),
    (lambda p: sweeps.sweep_experiment("optimizers", {"steps": "10"}, overrides={"steps": "5"}), ValueError,
     r"steps given both as a fixed value"),
    (lambda p: sweeps.sweep_experiment("optimizers", {"seed": "1,2"}, seed=3), ValueError, r"seed is both in the grid"),
    (lambda p: sweeps.sweep_experiment("optimizers", {"steps": "10"}, out=_corrupted(p)), ValueError,
     r"corrupt.jsonl, line 2: is not a JSON record"),
]


@pytest.mark.parametrize("call, error, message", BAD_CALLS)
def test_bad_input(call, error, message, tmp_path):
    before = {path: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(error, match=message):
        call(tmp_path)
    for path in tmp_path.iterdir():     # a refused results file is never modified
        if path in before:
            assert path.read_bytes() == before[path]


BAD_COMMANDS = [
    (["--grid", "steps=10", "--workers", "0"], r"--workers: must be a positive int \(>= 1\), got 0"),
    (["--grid", "bogus=1"], r"unknown grid key 'bogus' for optimizers; valid keys: steps \(int"),
    ([], r"give at least one --grid"),
    (["--grid", "steps="], r"grid key 'steps' has no values"),
    (["--grid", "steps=1", "--grid", "steps=2"], r"--grid steps is given twice"),
    (["--grid", "steps=10", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], r"not allowed with argument"),
    (["--grid", "steps=10", "--scheduler", "nonsense::"], r"invalid scheduler address 'nonsense::'"),
]


@pytest.mark.parametrize("extra, message", BAD_COMMANDS)
def test_cli_bad_input_exits_2_with_one_line(extra, message, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.jsonl"
    code = _cli(["sweep", "optimizers", "--out", str(out), "--no-progress", *extra], monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert __import__("re").search(message, err), err
    assert not out.exists()


def test_cli_refuses_a_corrupted_results_file_and_leaves_it_alone(tmp_path, monkeypatch, capsys):
    path = _corrupted(tmp_path)
    before = path.read_bytes()
    code = _cli(["sweep", "optimizers", "--grid", "steps=10", "--out", str(path), "--no-progress"], monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "line 2" in err and len(err.splitlines()) == 1
    assert path.read_bytes() == before
