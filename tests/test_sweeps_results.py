"""Results files are safe to share: one table of hostile and unlucky results files.

Each row is a case id, what it does (most run `depthlab sweep optimizers --grid steps=10 --out
FILE`, some call the API), the exit code (1 for an API exception, which is then shown as
'Name: message') and a pattern of the one line on stderr. A file that is refused is never
modified; a crash's torn last line is repaired, not fatal. Every record the cases write or
expect to be skipped is a real one (the optimizers experiment at steps=10, run here once).
"""
import contextlib
import errno
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

import depthlab as dl
from depthlab.lab import cli, results, sweeps

BOUND = 60.0     # seconds: a hang guard (a FIFO used to block forever), not a timing


def slow_square(x):
    time.sleep(0.3)
    return {"value": x * x}


def delete_the_results_file(x, path):
    if x == 1:
        os.unlink(path)
    return {"value": x}


@functools.cache
def good_record() -> dict:
    """The record `depthlab sweep optimizers --grid steps=10` writes (run in this process, no pool)."""
    config, metrics = sweeps.ExperimentTask("optimizers").run({"steps": 10})
    return {"experiment": "optimizers", "point": {"steps": 10}, "config": config,
            "metrics": sweeps._jsonable(metrics, "metrics"), "seconds": 0.1, "status": "ok"}


def good_line(**changes) -> str:
    return json.dumps({**good_record(), **changes})


def records_in(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").split("\n") if line.strip()]


def sweep_cli(out, capsys, *extra) -> tuple[int, str]:
    code = cli.main(["sweep", "optimizers", "--grid", "steps=10", "--out", str(out), "--workers", "1", "--no-progress",
                     *extra])
    return code, capsys.readouterr().err.strip()


def api(call) -> tuple[int, str]:
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the table names which
        return 1, f"{type(error).__name__}: {error}"
    return 0, ""


def file_with(text: str | bytes, name="r.jsonl"):
    """A setup: the file ``name`` holding ``text``."""
    def make(tmp_path):
        out = tmp_path / name
        out.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return out
    return make


def refused(make):
    """The CLI on the file ``make(tmp_path)``, which must be left exactly as it was."""
    def case(tmp_path, capsys):
        out = make(tmp_path)
        before = out.read_bytes()
        code, message = sweep_cli(out, capsys)
        assert out.read_bytes() == before, "a refused results file was modified"
        return code, message
    return case


def second_line(text: str | bytes = "", **wrong_fields):
    """A file whose first line is a good record and whose second is ``text``, or a good record with
    ``wrong_fields`` (built when the case runs: the good record comes from running the experiment)."""
    def make(tmp_path):
        line = good_line(**wrong_fields) if wrong_fields else text
        data = (good_line() + "\n").encode() + (line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n"
        return file_with(data)(tmp_path)
    return refused(make)


# ----------------------------------------------------------------------------- sharing: the lock

def hold_lock_in_another_process(tmp_path, capsys):
    """A process (another sweep, or `flock FILE`) holds the file's lock."""
    out = tmp_path / "r.jsonl"
    out.write_text(good_line() + "\n")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = out.read_bytes()
        code, message = sweep_cli(out, capsys)
        assert out.read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    return code, message


def lock_of_a_killed_process_is_released(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    out.write_text(good_line() + "\n")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)       # a sweep killed by the out-of-memory killer, say
    holder.wait()
    return sweep_cli(out, capsys)


def two_identical_sweeps_at_once(tmp_path, capsys):
    """The issue's case: both used to record every point; now the second is refused and each point is recorded once."""
    out = tmp_path / "r.jsonl"
    first: dict = {}
    runner = threading.Thread(target=lambda: first.update(records=dl.sweep(
        slow_square, {"x": [0, 1, 2, 3]}, workers=1, out=out, progress=False)))
    runner.start()
    try:
        deadline = time.monotonic() + BOUND
        while not (out.exists() and out.read_bytes().count(b"\n")) and time.monotonic() < deadline:
            time.sleep(0.02)                  # the first sweep is running: it has written a record
        code, message = api(lambda: dl.sweep(slow_square, {"x": [0, 1, 2, 3]}, workers=1, out=out, progress=False))
    finally:
        runner.join()
    assert [r["status"] for r in first["records"]] == ["ok"] * 4
    assert sorted(r["point"]["x"] for r in records_in(out)) == [0, 1, 2, 3]     # each point once
    return code, message


def another_experiment_while_a_sweep_runs(tmp_path, capsys):
    """The issue's other case: a second experiment into the file of a running sweep is refused by the lock."""
    out = tmp_path / "r.jsonl"
    runner = threading.Thread(target=lambda: dl.sweep(slow_square, {"x": [0, 1, 2]}, workers=1, out=out,
                                                      progress=False))
    runner.start()
    try:
        deadline = time.monotonic() + BOUND
        while not (out.exists() and out.read_bytes().count(b"\n")) and time.monotonic() < deadline:
            time.sleep(0.02)
        code, message = sweep_cli(out, capsys)
    finally:
        runner.join()
    assert {r["experiment"] for r in records_in(out)} == {"test_sweeps_results:slow_square"}
    return code, message


# ----------------------------------------------------------------------------- special and impossible paths

def fifo(tmp_path):
    os.mkfifo(tmp_path / "r.fifo")
    return tmp_path / "r.fifo"


def unix_socket(tmp_path, capsys):
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "r.sock"))
        return sweep_cli(tmp_path / "r.sock", capsys)


def symlink_to_fifo(tmp_path):
    (tmp_path / "link.jsonl").symlink_to(fifo(tmp_path))
    return tmp_path / "link.jsonl"


def path_case(make):
    """The CLI with ``--out make(tmp_path)``."""
    def case(tmp_path, capsys):
        return sweep_cli(make(tmp_path), capsys)
    return case


def symlink_loop(tmp_path):
    (tmp_path / "a.jsonl").symlink_to(tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").symlink_to(tmp_path / "a.jsonl")
    return tmp_path / "a.jsonl"


def dangling_symlink_into_no_folder(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "gone" / "r.jsonl")
    return tmp_path / "link"


def below_a_file(depth: int):
    def make(tmp_path):
        (tmp_path / "notes.txt").write_text("mine\n")
        out = tmp_path / "notes.txt" / Path(*["sub"] * depth, "r.jsonl")
        return out
    return make


@contextlib.contextmanager
def cannot_write(path, writing_only=False):
    """Opening ``path`` (for writing only, when ``writing_only``) fails with EACCES, as for a user without write
    permission (simulated: the tests may run as root, who may write anywhere)."""
    real_open = os.open

    def deny(name, flags, *args, **kwargs):
        if os.fspath(name) == str(path) and (not writing_only or flags & (os.O_WRONLY | os.O_RDWR)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(name, flags, *args, **kwargs)

    os.open = deny
    try:
        yield
    finally:
        os.open = real_open


def read_only_folder(tmp_path, capsys):
    out = tmp_path / "ro" / "r.jsonl"
    out.parent.mkdir()
    with cannot_write(out):
        return sweep_cli(out, capsys)


def read_only_file(*grid):
    """A read-only results file holding the record of steps=10, swept over ``grid``."""
    def case(tmp_path, capsys):
        out = file_with(good_line() + "\n")(tmp_path)
        before = out.read_bytes()
        with cannot_write(out, writing_only=True):
            code = cli.main(["sweep", "optimizers", "--grid", *grid, "--out", str(out), "--workers", "1",
                             "--no-progress"])
        captured = capsys.readouterr()
        assert out.read_bytes() == before
        if code == 0:
            assert "1 already in" in captured.out
        return code, captured.err.strip()
    return case


def filelock_where_fcntl_is_missing(tmp_path, capsys):
    """Where fcntl is missing (Windows), the filelock library holds FILE.lock; another holder refuses the sweep."""
    out = tmp_path / "r.jsonl"
    out.write_text(good_line() + "\n")
    holder = subprocess.Popen([sys.executable, "-c", "import filelock, sys, time; "
                               "lock = filelock.FileLock(sys.argv[1]); lock.acquire(); print('locked', flush=True); "
                               "time.sleep(60)", f"{out}.lock"],
                              stdout=subprocess.PIPE, text=True)
    real_fcntl = results.fcntl
    try:
        assert holder.stdout.readline().strip() == "locked"
        results.fcntl = None
        busy = sweep_cli(out, capsys)
    finally:
        results.fcntl = real_fcntl
        holder.kill()
        holder.wait()
    results.fcntl = None
    try:
        assert sweep_cli(out, capsys) == (0, "")      # once it is free, the same lock is taken and given back
    finally:
        results.fcntl = real_fcntl
    return busy


def full_disk_mid_sweep(tmp_path, capsys):
    """The file may grow by the first record and 100 bytes (RLIMIT_FSIZE, as a full disk): the second record is cut
    short, the sweep stops with one line, and the next run repairs the file and finishes."""
    out = tmp_path / "r.jsonl"
    grid = ["--grid", "steps=10,11,12"]
    script = ("import resource, sys; from depthlab.lab import cli; limit = int(sys.argv[1]); "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
              "sys.exit(cli.main(['sweep', 'optimizers', *sys.argv[2:], '--workers', '1', '--no-progress']))")
    done = subprocess.run([sys.executable, "-c", script, str(len(good_line()) + 100), *grid, "--out", str(out)],
                          capture_output=True, text=True, timeout=BOUND)
    data = out.read_bytes()
    assert data.count(b"\n") == 1 and len(data) == len(good_line()) + 100, data     # a torn second line
    code, message = cli.main(["sweep", "optimizers", *grid, "--out", str(out), "--workers", "1", "--no-progress"]), \
        capsys.readouterr().err.strip()
    assert code == 0 and re.search(r"warning: .*line 2: the last record was cut short", message), message
    assert sorted(r["point"]["steps"] for r in records_in(out)) == [10, 11, 12]
    return done.returncode, done.stderr.strip()


def deleted_mid_sweep(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    return api(lambda: dl.sweep(delete_the_results_file, {"x": [0, 1, 2], "path": [str(out)]}, workers=1, out=out,
                                progress=False))


def file_system_without_locks(tmp_path, capsys):
    """flock fails with ENOLCK (as on some network and parallel file systems): a one-line warning, and the sweep
    runs instead of failing on every such file system."""
    out = file_with(good_line() + "\n")(tmp_path)

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    real_fcntl = results.fcntl
    results.fcntl = types.SimpleNamespace(LOCK_EX=real_fcntl.LOCK_EX, LOCK_NB=real_fcntl.LOCK_NB, flock=no_locks)
    try:
        return sweep_cli(out, capsys)
    finally:
        results.fcntl = real_fcntl


def new_folders_are_removed_when_nothing_was_written(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "r.jsonl"
    results.ResultsFile(out).close()
    assert not (tmp_path / "new").exists()
    return 0, ""


def read_results_refuses_a_fifo(tmp_path, capsys):
    return api(lambda: dl.sweeps.read_results(fifo(tmp_path)))


# ----------------------------------------------------------------------------- files that are tolerated or repaired

def runs(make, check=None):
    """The CLI runs (or resumes) on the file ``make(tmp_path)`` and exits 0; ``check(out)`` then."""
    def case(tmp_path, capsys):
        out = make(tmp_path)
        code, message = sweep_cli(out, capsys)
        if code == 0 and check is not None:
            check(tmp_path, out)
        return code, message
    return case


def only_the_good_record(tmp_path, out):
    assert [r["point"] for r in records_in(out)] == [{"steps": 10}]


def torn_last_line(tmp_path):
    return file_with(good_line() + "\n" + good_line()[:57])(tmp_path)


def repaired(tmp_path, out):
    assert out.read_text() == good_line() + "\n"             # the torn tail is gone, the good line untouched


def unicode_folder(tmp_path):
    return tmp_path / "résultats σ_w² ✓" / "r.jsonl"


def symlink_to_file(tmp_path):
    target = file_with(good_line() + "\n", "target.jsonl")(tmp_path)
    (tmp_path / "link.jsonl").symlink_to(target)
    return tmp_path / "link.jsonl"


def dangling_symlink(tmp_path):
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "made.jsonl")
    return tmp_path / "link.jsonl"


def link_kept_target_written(tmp_path, out):
    assert out.is_symlink() and [r["point"] for r in records_in(out.resolve())] == [{"steps": 10}]


NESTED = "[" * 100_000 + "]" * 100_000
REFUSED = r"^depthlab sweep: .*r\.jsonl, line 2: {}.*\. The file is left as it is"
CASES = [  # id, case(tmp_path, capsys) -> (exit code, one line), expected code, pattern of that line
    # sharing
    ("lock-held-by-another-process", hold_lock_in_another_process, 2,
     r"^depthlab sweep: results file '.*r\.jsonl' is in use: another sweep holds its lock"),
    ("two-identical-sweeps-at-once", two_identical_sweeps_at_once, 1,
     r"^ResultsFileBusy: results file '.*r\.jsonl' is in use: another sweep holds its lock"),
    ("another-experiment-while-a-sweep-runs", another_experiment_while_a_sweep_runs, 2, r"is in use: another sweep"),
    ("lock-of-a-killed-sweep-released", lock_of_a_killed_process_is_released, 0, r"^$"),
    ("file-system-without-locks", file_system_without_locks, 0,
     r"^depthlab sweep: warning: the file system of '.*r\.jsonl' cannot lock it \(No locks available\); the sweep "
     r"goes on unlocked"),
    ("filelock-where-fcntl-is-missing", filelock_where_fcntl_is_missing, 2, r"r\.jsonl' is in use: another sweep"),
    ("another-experiments-file", refused(file_with(json.dumps(
        {"experiment": "three-layer", "point": {"steps": 1}, "config": {}, "metrics": {}, "status": "ok"}) + "\n")), 2,
     r"holds results of 'three-layer' \(line 1\), not of 'optimizers'"),
    # special files and impossible paths
    ("fifo", path_case(fifo), 2, r"results file '.*r\.fifo' is a named pipe \(FIFO\), not a regular file"),
    ("symlink-to-fifo", path_case(symlink_to_fifo), 2, r"link\.jsonl' is a named pipe \(FIFO\)"),
    ("character-device", path_case(lambda p: Path(os.devnull)), 2, r"'/dev/null' is a character device"),
    ("socket", unix_socket, 2, r"r\.sock' is a socket"),
    ("directory", path_case(lambda p: p), 2, r"is a directory, not a regular file.*results\.jsonl"),
    ("trailing-separator", path_case(lambda p: str(p / "new") + "/"), 2, r"ends with a separator, as a folder does"),
    ("below-a-file", path_case(below_a_file(0)), 2, r"cannot exist: '.*notes\.txt' is a file, not a folder"),
    ("two-below-a-file", path_case(below_a_file(2)), 2, r"cannot exist: '.*notes\.txt' is a file, not a folder"),
    ("read-only-folder", read_only_folder, 2, r"^depthlab sweep: cannot use .*ro/r\.jsonl: Permission denied$"),
    ("read-only-file-all-recorded", read_only_file("steps=10"), 0, r"^$"),
    ("read-only-file-points-pending", read_only_file("steps=10,11"), 2,
     r"^depthlab sweep: cannot use .*r\.jsonl: Permission denied$"),
    ("name-too-long", path_case(lambda p: p / ("r" * 300 + ".jsonl")), 2, r"cannot use .*: File name too long$"),
    ("dangling-symlink-no-folder", path_case(dangling_symlink_into_no_folder), 2,
     r"is a symbolic link to '.*gone/r\.jsonl', which cannot be created: its folder does not exist"),
    ("full-disk-mid-sweep", full_disk_mid_sweep, 2, r"^depthlab sweep: cannot use .*r\.jsonl: File too large$"),
    ("deleted-mid-sweep", deleted_mid_sweep, 1,
     r"^FileNotFoundError: \[Errno 2\] it was deleted or replaced while the sweep ran.*: '.*r\.jsonl'$"),
    ("symlink-loop", path_case(symlink_loop), 2,
     r"^depthlab sweep: cannot use .*a\.jsonl: Too many levels of symbolic"),
    ("nul-in-the-name", lambda p, capsys: api(lambda: dl.sweep(slow_square, {"x": [1]}, out=str(p / "r\0.jsonl"))), 1,
     r"^ValueError: results file '.*r\\x00\.jsonl' holds a NUL character"),
    ("out-not-a-path", lambda p, capsys: api(lambda: dl.sweep(slow_square, {"x": [1]}, out=3)), 1,
     r"^TypeError: out must be a file path \(str or Path\) or None, got int 3"),
    ("new-folders-removed-if-unused", new_folders_are_removed_when_nothing_was_written, 0, r"^$"),
    ("read-results-fifo", read_results_refuses_a_fifo, 1, r"^ValueError: results file .* is a named pipe"),
    # lines with the wrong content
    ("invalid-json", second_line("{not json"), 2, REFUSED.format(r"is not a JSON record \(Expecting property name")),
    ("invalid-utf8", second_line(b'{"experiment": "\xff"}'), 2, REFUSED.format(r"is not a JSON record \('utf-8'")),
    ("json-list", second_line("[1, 2]"), 2, REFUSED.format(r"is JSON but a list, not a sweep record")),
    ("json-null", second_line("null"), 2, REFUSED.format(r"is JSON but null, not a sweep record")),
    ("nested-too-deeply", second_line(NESTED), 2, REFUSED.format(r"is not a JSON record \(nested too deeply\)")),
    ("missing-keys", second_line('{"experiment": "optimizers", "point": {"steps": 5}, "status": "ok"}'), 2,
     REFUSED.format(r"is not a sweep record: it lacks 'config', 'metrics'")),
    ("config-a-list", second_line(config=[1, 2]), 2,
     REFUSED.format(r"field 'config' is a list \(\[1, 2\]\), expected an object")),
    ("metrics-a-string", second_line(metrics="0.5"), 2,
     REFUSED.format(r"field 'metrics' is a string .* expected an object")),
    ("point-null", second_line(point=None), 2, REFUSED.format(r"field 'point' is null \(null\), expected an object")),
    ("fixed-a-list", second_line(fixed=["quick"]), 2, REFUSED.format(r"field 'fixed' is a list")),
    ("experiment-a-number", second_line(experiment=7), 2, REFUSED.format(r"field 'experiment' is a number")),
    ("status-unknown", second_line(status="done"), 2, REFUSED.format(r"field 'status' is 'done', expected one of 'ok', "
                                                                 r"'failed'")),
    ("seconds-a-string", second_line(seconds="1.5"), 2,
     REFUSED.format(r"field 'seconds' is a string .*a number or null")),
    ("seconds-a-boolean", second_line(seconds=True), 2, REFUSED.format(r"field 'seconds' is a boolean")),
    ("torn-line-in-the-middle", second_line('{"experiment": "optimizers", "poi'), 2,
     REFUSED.format(r"is not a JSON record")),
    ("garbage-last-line-without-newline", refused(lambda p: file_with(good_line() + "\nPK\x03\x04 zip?")(p)), 2,
     r"line 2: is not a JSON record"),
    # tolerated or repaired
    ("empty-file", runs(file_with(""), only_the_good_record), 0, r"^$"),
    ("blank-lines-only", runs(file_with("\n\n  \n"), only_the_good_record), 0, r"^$"),
    ("torn-last-line-repaired", runs(torn_last_line, repaired), 0,
     r"^depthlab sweep: warning: .*r\.jsonl, line 2: the last record was cut short \(57 bytes.*removed it"),
    ("last-record-without-newline", runs(file_with(good_line()), repaired), 0, r"^$"),
    ("utf8-text-in-records", runs(lambda p: file_with(json.dumps({**good_record(), "error": "σ_w² ✓ \u2028"},
                                                                  ensure_ascii=False) + "\n")(p), only_the_good_record),
     0, r"^$"),
    ("byte-order-mark", runs(file_with("\ufeff" + good_line() + "\n")), 0, r"^$"),
    ("crlf-line-ends", runs(file_with(good_line() + "\r\n")), 0, r"^$"),
    ("unicode-folder", runs(unicode_folder, only_the_good_record), 0, r"^$"),
    ("symlink-to-a-file", runs(symlink_to_file, lambda p, out: only_the_good_record(p, out.resolve())), 0, r"^$"),
    ("dangling-symlink", runs(dangling_symlink, link_kept_target_written), 0, r"^$"),
]

SLOW = {"two-identical-sweeps-at-once", "another-experiment-while-a-sweep-runs", "full-disk-mid-sweep",  # pools
        "deleted-mid-sweep", "empty-file", "blank-lines-only", "unicode-folder", "dangling-symlink"}


@pytest.mark.parametrize("case, expected_code, pattern", [
    pytest.param(*row[1:], id=row[0], marks=[pytest.mark.slow] if row[0] in SLOW else []) for row in CASES])
def test_results_file_case(case, expected_code, pattern, tmp_path, capsys):
    started = time.monotonic()
    code, message = case(tmp_path, capsys)
    assert time.monotonic() - started < BOUND
    assert code == expected_code, message
    assert len(message.splitlines()) <= 1 and "Traceback" not in message, message
    assert re.search(pattern, message), message
