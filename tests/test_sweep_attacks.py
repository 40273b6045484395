"""Adversarial tests of dl.sweep, `depthlab sweep` and the edge-of-chaos experiment it drives.

Tests whose docstring starts "Was a bug" are the regression tests of defects found this way
(each failed before its fix); the others pin down behaviour that held already (torn files,
crashes, odd values, grid parsing, Dask).

The functions swept here live at the top level of this module, so worker processes import
them by name.
"""
import asyncio
import ctypes
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import depthlab as dl
from depthlab.lab import cli, sweeps

ROOT = Path(__file__).resolve().parent.parent
X4 = {"x": [0, 1, 2, 3]}

# The smallest edge-of-chaos configuration that still trains: ~1 s per point.
TINY_EOC = {"samples": "64", "width": "4", "depths": "2,3", "workers": "1"}


# ----------------------------------------------------------------------------- swept functions

def odd_values(x):
    return {"nan": float("nan"), "inf": math.inf, "ninf": -math.inf, "f64": np.float64(x) / 3,
            "i32": np.int32(x), "arr": np.arange(3) * x, "b": np.bool_(x % 2), "text": "σ_w² ✓ \u2028 \"q\"",
            "nested": {"a": [np.float32(0.5), (1, 2)]}, "none": None}


def zero_d_metric(x):
    return {"accuracy": np.array(0.25 * x)}         # a 0-d array, e.g. np.asarray(loss)


def exits_kills_segfaults(x):
    if x == 1:
        sys.exit(3)
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    if x == 3:
        ctypes.string_at(0)                         # SIGSEGV
    return {"x": x}


def ok_after_all(x):
    return {"x": x, "again": True}


def cancelled_on_two(x):
    if x == 2:
        raise asyncio.CancelledError("the point's event loop was cancelled")
    return {"x": x}


def echo(**point):
    return {"n": len(point)}


def lines(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def strict_json(line: str):
    """json.loads refusing NaN/Infinity (which are not JSON)."""
    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")
    return json.loads(line, parse_constant=refuse)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ============================================================================= bugs


def colliding_keys(x):
    return {1: x, "1": x + 1}

def test_resume_with_other_fixed_settings_does_not_silently_return_stale_points(tmp_path, capsys):
    """Was a bug: sweeps.py _run (lines 711-715, point_key) match resumed records on (experiment, point) only. The fixed
    settings of an experiment sweep (--set, --seed, --quick: ExperimentTask.overrides/seed/quick) are not part
    of the identity, so re-running into the same file with a different --set skips every point and reports the
    OLD configuration's results as if they were the new ones ("2 already in ...", exit 0). The same happens with
    dl.sweep(functools.partial(fn, a=1)) then partial(fn, a=2). Expected: those points run again (or a clear
    ValueError about the mismatch); never records whose config differs from what was asked."""
    out = tmp_path / "opt.jsonl"
    base = ["sweep", "optimizers", "--grid", "steps=10,20", "--out", str(out), "--workers", "2", "--no-progress"]
    assert cli.main(base + ["--set", "tolerance=0.01"]) == 0
    code = cli.main(base + ["--set", "tolerance=0.5"])
    capsys.readouterr()
    if code == 2:
        return                                       # refused with a usage error: acceptable
    latest = {}
    for record in lines(out):
        latest[record["point"]["steps"]] = record
    assert [latest[s]["config"]["tolerance"] for s in (10, 20)] == [0.5, 0.5], \
        "asked for tolerance=0.5; the file's latest records (what a resume returns) hold another tolerance"


def test_set_with_dashes_and_the_same_grid_key_is_refused_like_the_underscore_form(tmp_path):
    """Was a bug: sweeps.py sweep_experiment (line 858): the clash check compares the raw --set keys with the normalized
    grid keys, so `--set bias-variance=0.2 --grid bias_variance=0.1` is not detected (while
    `--set bias_variance=0.2` is) and the --set value is silently dropped (the grid wins in make_config).
    out= is a directory so that, when the clash is missed, the call stops at "is a directory" instead of running."""
    with pytest.raises(ValueError, match="given both"):         # the underscore form is caught (control)
        sweeps.sweep_experiment("edge-of-chaos", {"bias_variance": "0.1"}, overrides={"bias_variance": "0.2"},
                                out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="given both"):
        sweeps.sweep_experiment("edge-of-chaos", {"bias_variance": "0.1"}, overrides={"bias-variance": "0.2"},
                                out=tmp_path, progress=False)


def test_every_documented_sweep_command_parses():
    """The `depthlab sweep` commands in sweeps.py's docstring and the README name real config
    keys with values of their types. (The docstring's example used edge-of-chaos keys it does
    not have — depth, and a range for the tuple sigma_w2 — and exited 2.)"""
    root = Path(__file__).resolve().parents[1]
    texts = [sweeps.__doc__, (root / "README.md").read_text(encoding="utf-8")]
    commands = [line.strip() for text in texts for line in text.splitlines() if "depthlab sweep " in line
                and "--grid" in line and "…" not in line]
    assert len(commands) >= 2
    for command in commands:
        words = command[command.index("depthlab sweep "):].split()
        experiment = words[2]
        grid = dict(words[i + 1].split("=", 1) for i, word in enumerate(words) if word == "--grid")
        parsed, _ = sweeps.experiment_grid(experiment, grid)
        assert set(parsed) == {key.replace("-", "_") for key in grid}, command


def test_an_int_range_never_silently_yields_fewer_than_count_points():
    """Was a bug: sweeps.py _expand_range (line 251) rounds an int range and drops duplicates with a set: steps=1:2:5 asks
    for 5 evenly spaced values and silently gets [1, 2] (and 5:5:3 gives [5] while the float lr=5:5:3 is refused
    as "lists 5.0 twice"). Expected: COUNT values, or a ValueError saying the range holds fewer distinct ints."""
    try:
        grid, _ = sweeps.experiment_grid("edge-of-chaos", {"steps": "1:2:5"})
    except ValueError as error:
        assert "1:2:5" in str(error)
        return
    assert len(grid["steps"]) == 5, f"asked for 5 values, got {grid['steps']}"


def test_a_zero_d_array_metric_is_converted_not_a_failed_point():
    """Was a bug: experiments/base.py jsonable (line 404) treats every np.ndarray as a sequence: list(np.array(0.25))
    raises "TypeError: iteration over a 0-d array", so _execute records a point that finished as FAILED and its
    metrics are lost, with a message that does not say which metric. (NumPy scalars are converted; 0-d arrays,
    e.g. from np.asarray(loss), are not.)"""
    records = dl.sweep(zero_d_metric, {"x": [1, 2]}, workers=1, progress=False)
    assert [(r["status"], r.get("error")) for r in records] == [("ok", None), ("ok", None)]
    assert [r["metrics"]["accuracy"] for r in records] == [0.25, 0.5]


def test_a_point_raising_a_base_exception_is_recorded_and_the_rest_go_on(tmp_path):
    """Was a bug: sweeps.py _execute (line 409) catches only (Exception, SystemExit). asyncio.CancelledError is a
    BaseException (since 3.8): it escapes the worker, future.result() re-raises it in the parent, _run_local
    stops the pool and the WHOLE sweep aborts with it; unfinished points never run. (Same for an exception whose
    __str__ raises: _one_line inside the except clause raises again.) Expected: that point recorded as failed,
    the others finish."""
    out = tmp_path / "r.jsonl"
    try:
        records = dl.sweep(cancelled_on_two, X4, workers=2, out=out, progress=False)
    except BaseException as error:  # noqa: BLE001 - the bug is that this escapes
        pytest.fail(f"one point's {type(error).__name__} aborted the whole sweep; {len(lines(out))} of 4 recorded")
    assert [r["status"] for r in records] == ["ok", "ok", "failed", "ok"]
    assert "CancelledError" in records[2]["error"]


def test_a_function_of_an_interactive_main_gets_a_clear_error_not_worker_died():
    """Was a bug: sweeps.py _check_function (line 186) only checks pickle.dumps(fn), which succeeds for a function of
    __main__ by reference; when __main__ is not importable (python -c, stdin, a REPL or a Jupyter kernel) the
    forkserver children cannot unpickle it, the pool breaks, every point is re-run alone and recorded as
    "WorkerDied: ... (exit code 1)" — as if it had crashed. Expected: a TypeError up front saying the function
    cannot be imported by worker processes (as for a lambda), or the points run."""
    script = textwrap.dedent("""
        import json, depthlab as dl
        def f(x):
            return {"y": x}
        try:
            records = dl.sweep(f, {"x": [0, 1]}, workers=2, progress=False)
            print(json.dumps([[r["status"], r.get("error")] for r in records]))
        except (TypeError, ValueError) as error:
            print(json.dumps({"refused": str(error)}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if isinstance(result, dict):
        assert "__main__" in result["refused"] or "import" in result["refused"]
    else:
        assert result == [["ok", None], ["ok", None]], result


def test_scheduler_that_accepts_but_never_answers_fails_within_ten_seconds():
    """Was a bug: sweeps.py _probe_scheduler (line 639): only the identity reply is bounded by asyncio.wait_for; the
    distributed.comm.connect handshake (`await comm.read()` in distributed/comm/core.py, no timeout in this
    distributed version) waits forever when the port accepts TCP but never speaks (a hung/stopped scheduler, a
    half-open tunnel). dl.sweep(client=...) / `depthlab sweep --scheduler` then hangs indefinitely (observed:
    > 10 minutes) instead of raising SchedulerUnreachable within ~5 s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)                    # the kernel completes the TCP handshake; nobody ever answers
    address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    script = textwrap.dedent(f"""
        import time, depthlab as dl
        from depthlab.lab import sweeps
        start = time.monotonic()
        try:
            dl.sweep(lambda x: {{}}, {{"x": [1]}}, client={address!r}, progress=False)
            print("NO ERROR")
        except sweeps.SchedulerUnreachable as error:
            print("UNREACHABLE", time.monotonic() - start)
    """)
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=12, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dl.sweep(client={address!r}) still hangs after 12 s (a silent port, no error)")
    finally:
        listener.close()
    word, *rest = done.stdout.split()
    assert word == "UNREACHABLE" and float(rest[0]) < 10, done.stdout + done.stderr


@pytest.fixture(scope="module")
def eoc_two_sigmas(tmp_path_factory):
    """edge-of-chaos swept over steps with sigma_w2=1,4 fixed (valid: validate accepts it)."""
    out = tmp_path_factory.mktemp("eoc") / "eoc.jsonl"
    records = sweeps.sweep_experiment("edge-of-chaos", {"steps": "2"}, overrides={**TINY_EOC, "sigma_w2": "1,4"},
                                      quick=True, workers=1, out=out, progress=False)
    return records, out


def test_edge_of_chaos_with_two_widely_spaced_sigmas_runs(eoc_two_sigmas):
    """Was a bug: experiments/edge_of_chaos.py _figure (lines 219-220): pad = (sigmas[1] - sigmas[0]) / 2 = 1.5 for
    sigma_w2=1,4, so _bound_curve is asked for σ_w² down to 1 - 1.5 = -0.5 and theory.depth_scales raises
    "weight_variance must be > 0, got -0.5" — after every network was trained. Any grid whose smallest σ_w² is
    below half its first gap fails (also `depthlab run edge-of-chaos --set sigma_w2=1,4`; a single σ_w² < 0.25)."""
    records, _ = eoc_two_sigmas
    assert records[0]["status"] == "ok", records[0].get("error")


def test_a_failed_experiment_point_records_its_full_config(monkeypatch):
    """Was a bug: sweeps.py _execute (line 410) records `config` = the point for every failure, so a failed experiment
    point loses its full configuration (--set/--quick/--seed values) although the docstring promises "config the
    full configuration (the point itself for a function)". Checked in-process on _execute itself."""
    from depthlab.lab import experiments

    module = experiments.get("optimizers")

    def broken(config, progress=None):
        raise RuntimeError("diverged")

    monkeypatch.setattr(module, "run", broken)
    task = sweeps.ExperimentTask("optimizers", (("tolerance", "0.05"),), False, 7)
    outcome = sweeps._execute(task, {"steps": 10})
    assert outcome["status"] == "failed" and outcome["error"] == "RuntimeError: diverged"
    assert outcome["config"].get("tolerance") == 0.05 and outcome["config"].get("seed") == 7, outcome["config"]


# ============================================================================= what already holds

def test_odd_metric_values_give_strict_json_lines_that_resume_reads(tmp_path):
    out = tmp_path / "odd.jsonl"
    records = dl.sweep(odd_values, {"x": [1, 2]}, workers=2, out=out, progress=False)
    raw = out.read_text(encoding="utf-8").splitlines()
    assert len(raw) == 2
    parsed = [strict_json(line) for line in raw]              # no NaN/Infinity tokens, one record per line
    first = next(r for r in parsed if r["point"] == {"x": 1})
    assert first["metrics"] == {"nan": "nan", "inf": "inf", "ninf": "-inf", "f64": 1 / 3, "i32": 1, "arr": [0, 1, 2],
                                "b": True, "text": "σ_w² ✓ \u2028 \"q\"", "nested": {"a": [0.5, [1, 2]]},
                                "none": None}
    assert [r["metrics"] for r in records] == [r["metrics"] for r in sorted(parsed, key=lambda r: r["point"]["x"])]
    before = out.read_bytes()
    again = dl.sweep(odd_values, {"x": [1, 2]}, workers=2, out=out, progress=False)
    assert out.read_bytes() == before and [r["metrics"] for r in again] == [r["metrics"] for r in records]


def test_exit_kill_and_segfault_are_failed_points_the_rest_finish_and_resume_is_consistent(tmp_path):
    out = tmp_path / "crash.jsonl"
    records = dl.sweep(exits_kills_segfaults, X4, workers=2, out=out, progress=False, name="crashy")
    assert [r["status"] for r in records] == ["ok", "failed", "failed", "failed"]
    assert records[1]["error"] == "SystemExit: 3"
    assert records[2]["error"].endswith("died (killed by SIGKILL)")
    assert records[3]["error"].endswith("died (killed by SIGSEGV)")
    assert [r["point"]["x"] for r in records] == [0, 1, 2, 3] and records[0]["metrics"] == {"x": 0}
    assert sorted(r["point"]["x"] for r in lines(out)) == [0, 1, 2, 3]    # each point exactly once
    # resuming skips failed points (documented) ...
    skipped = dl.sweep(ok_after_all, X4, workers=2, out=out, progress=False, name="crashy")
    assert [r["status"] for r in skipped] == ["ok", "failed", "failed", "failed"] and len(lines(out)) == 4
    # ... and --retry-failed reruns exactly them; the last line counts
    retried = dl.sweep(ok_after_all, X4, workers=2, out=out, progress=False, name="crashy", retry_failed=True)
    assert [r["status"] for r in retried] == ["ok"] * 4 and len(lines(out)) == 7
    assert [r["metrics"].get("again") for r in retried] == [None, True, True, True]


def _record(x):
    return json.dumps({"experiment": "test_sweep_attacks:echo", "point": {"x": x}, "config": {"x": x},
                       "metrics": {"n": 1}, "seconds": 0.1, "status": "ok"})


@pytest.mark.parametrize("resume, retry", [(True, False), (False, False), (True, True)])
def test_a_torn_last_line_from_a_crash_is_removed_and_its_point_runs_again(tmp_path, resume, retry):
    """Was refused as fatal ("line 3: is an incomplete record"), so a sweep killed mid-write could not be resumed
    without editing the file by hand. The torn tail is now cut off (with a TornLastLine warning) under the lock."""
    out = tmp_path / "torn.jsonl"
    complete = (_record(0) + "\n" + _record(1) + "\n").encode()
    out.write_bytes(complete + _record(2)[:37].encode())
    with pytest.warns(sweeps.TornLastLine, match=r"torn\.jsonl, line 3: the last record was cut short \(37 bytes"):
        records = dl.sweep(echo, {"x": [0, 1, 2, 3]}, workers=1, out=out, progress=False, resume=resume,
                           retry_failed=retry)
    assert [r["status"] for r in records] == ["ok"] * 4
    assert out.read_bytes().startswith(complete)                       # the good lines are untouched
    assert [r["point"]["x"] for r in lines(out)] == ([0, 1, 2, 3] if resume else [0, 1, 0, 1, 2, 3])


def test_cli_torn_line_in_the_middle_is_refused_with_its_number(tmp_path, capsys):
    out = tmp_path / "mid.jsonl"
    good = json.dumps({"experiment": "optimizers", "point": {"steps": 5}, "config": {}, "metrics": {},
                       "status": "ok"})
    out.write_text(good + "\n" + good[:25] + "\n" + good + "\n", encoding="utf-8")
    before = out.read_bytes()
    code = cli.main(["sweep", "optimizers", "--grid", "steps=10", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "line 2: is not a JSON record" in err, err
    assert out.read_bytes() == before


def test_a_complete_last_record_without_newline_is_kept_and_the_next_goes_on_its_own_line(tmp_path):
    out = tmp_path / "nonl.jsonl"
    out.write_text(_record(0), encoding="utf-8")               # e.g. an editor dropped the final newline
    before = out.read_bytes()
    records = dl.sweep(echo, {"x": [0, 1]}, workers=1, out=out, progress=False)
    assert records[0]["seconds"] == 0.1                        # point 0 resumed from the file, not rerun
    assert out.read_bytes().startswith(before + b"\n")
    assert [r["point"]["x"] for r in lines(out)] == [0, 1]


@pytest.mark.parametrize("grid, message", [
    ({"lr": "1,1.0,1e0"}, r"lists 1\.0 twice"),
    ({"steps": "7,07"}, r"lists 7 twice"),
    ({"optimizer": "adam,adam"}, r"lists 'adam' twice"),
    ({"sigma_w2": "1,2;1.0,2"}, r"lists \(1\.0, 2\.0\) twice"),
    ({"bias-variance": "0.1", "bias_variance": "0.2"}, r"grid key 'bias_variance' is given twice"),
    ({"lr": "1:2:3:4"}, r"lr is float"),
    ({"steps": "1:4:2.5"}, r"a range is START:STOP:COUNT"),
    ({"steps": "true"}, r"expected an int"),
    ({"Steps": "10"}, r"unknown grid key 'Steps' for edge-of-chaos; valid keys: sigma_w2 .*steps \(int"),
])
def test_values_that_parse_equal_and_malformed_grids_are_refused(grid, message):
    with pytest.raises(ValueError, match=message):
        sweeps.sweep_experiment("edge-of-chaos", grid, progress=False)


def test_booleans_strings_with_separators_and_unicode_parse_as_written():
    grid, _ = sweeps.experiment_grid("three-layer", {"torch": "yes,off"})
    assert grid == {"torch": [True, False]}
    with pytest.raises(ValueError, match="lists True twice"):
        sweeps.experiment_grid("three-layer", {"torch": "true,1"})
    grid, _ = sweeps.experiment_grid("edge-of-chaos", {"optimizer": "a=b;c,d;σ"})   # ';' keeps commas in values
    assert grid == {"optimizer": ["a=b", "c,d", "σ"]}
    assert sweeps.grid_points({"x": [1, 1.0, True]}) == [{"x": 1}, {"x": 1.0}, {"x": True}]   # distinct JSON values


def test_cli_duplicate_key_spellings_and_bad_workers_exit_2_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "never" / "r.jsonl"
    for extra, message in [(["--grid", "bias-variance=0.1", "--grid", "bias_variance=0.2"], "given twice"),
                           (["--grid", "steps=2", "--workers", "-1"], "must be a positive int"),
                           (["--grid", "steps=2", "--workers", "2.5"], "expected a positive int, got '2.5'"),
                           (["--grid", "steps=2", "--workers", "1e3"], "expected a positive int, got '1e3'"),
                           (["--grid", "steps=2", "--set", "sigma_w2=1,1"], "sigma_w2 lists a value twice")]:
        code = cli.main(["sweep", "edge-of-chaos", "--out", str(out), "--no-progress", *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and message in err, (extra, err)
    assert not out.parent.exists()


def test_out_in_a_missing_directory_is_created_and_huge_workers_are_capped(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "runs.jsonl"
    code = cli.main(["sweep", "optimizers", "--grid", "steps=10,20", "--out", str(out), "--workers", "100000",
                     "--no-progress"])
    assert code == 0 and "2 run now (0 failed)" in capsys.readouterr().out
    assert sorted(r["point"]["steps"] for r in lines(out)) == [10, 20]


def test_python_api_inputs(tmp_path):
    def local(x):
        return {"x": x}
    with pytest.raises(TypeError, match="fn must be picklable"):
        dl.sweep(local, {"x": [1]})
    with pytest.raises(TypeError, match="grid must be a dict"):
        dl.sweep(echo, ({"x": i} for i in range(2)))
    with pytest.raises(ValueError, match=r"grid\['x'\] has no values"):
        dl.sweep(echo, {"x": [], "y": [1]})
    with pytest.raises(TypeError, match="workers must be an int, got bool True"):
        dl.sweep(echo, {"x": [1]}, workers=True)
    with pytest.raises(ValueError, match="workers must be >= 1, got -3"):
        dl.sweep(echo, {"x": [1]}, workers=-3)
    records = dl.sweep(echo, {"x": (v for v in "ab"), "y": ["é,=;"]}, workers=np.int64(2), out=tmp_path / "g.jsonl",
                       progress=False)
    assert [r["point"] for r in records] == [{"x": "a", "y": "é,=;"}, {"x": "b", "y": "é,=;"}]
    assert lines(tmp_path / "g.jsonl") and all(r["status"] == "ok" for r in records)


def test_cli_unreachable_scheduler_on_a_closed_port_is_one_line_within_ten_seconds(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    start = time.monotonic()
    code = cli.main(["sweep", "optimizers", "--grid", "steps=10", "--out", str(out), "--no-progress",
                     "--scheduler", f"tcp://127.0.0.1:{_closed_port()}"])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err.strip()
    assert code == 2 and elapsed < 10 and len(err.splitlines()) == 1, (elapsed, err)
    assert "cannot reach a Dask scheduler at 'tcp://127.0.0.1:" in err and not out.exists()



def test_metric_keys_that_collide_as_json_text_are_refused():
    """Was a bug: metrics {1: …, "1": …} were written as one key, silently losing a value."""
    records = dl.sweep(colliding_keys, {"x": [1]}, workers=1, progress=False)
    assert records[0]["status"] == "failed" and "'1' as text" in records[0]["error"]


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_a_scheduler_port_out_of_range_is_an_invalid_address_not_unreachable(port):
    """Was a bug: tcp://127.0.0.1:99999 waited for the connect timeout and said "unreachable"."""
    start = time.perf_counter()
    with pytest.raises(ValueError, match="invalid scheduler address.*not in 1–65535") as caught:
        sweeps.connect(f"tcp://127.0.0.1:{port}")
    assert not isinstance(caught.value, sweeps.SchedulerUnreachable)
    assert time.perf_counter() - start < 1.0
