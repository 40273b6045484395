"""Sweeps on a real Dask cluster: a scheduler and workers started as their own processes.

As a user's cluster is: `python -m distributed.cli.dask_scheduler` (what `dask scheduler`
runs) on 127.0.0.1 and a free port, and `dask worker ADDRESS --nworkers 1 --nthreads 1 --no-nanny`
processes, each in its own process group that the fixture kills at the end whatever happens.
No LocalCluster and no default client: the sweep must make (and close) its own client.

Every case is one row of CASES: its id, what it does, the exit code of `depthlab sweep` (or
the exception of the API) and a pattern of its one-line message. The functions swept live at
the top level of this module, so the workers import them (the fixture puts tests/ on their path).
"""
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import depthlab
import depthlab as dl
from depthlab.lab import cli, cluster as dask_cluster, sweeps

HERE = Path(__file__).resolve().parent
SRC = Path(depthlab.__file__).resolve().parents[1]
START_TIMEOUT = 90.0     # seconds for a scheduler or a worker to come up on a busy machine
BOUND = 60.0             # seconds within which every case must end (a hang guard, not a timing)


# ----------------------------------------------------------------------------- swept functions (run on the workers)

def square_after(x, pause=0.0):
    time.sleep(pause)
    return {"value": x * x, "root": math.sqrt(x)}


def kill_own_worker_once(x, marker):
    """At x == 1, the first time only: kill the worker's whole process group mid-point."""
    if x == 1 and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        time.sleep(0.3)                         # the earlier points' results reach the client first
        os.killpg(os.getpgrp(), signal.SIGKILL)
    time.sleep(0.2)
    return {"value": x * x}


def stop_process_group(x, victim, how="KILL"):
    """At x == 1: kill (or freeze with SIGSTOP) the process group ``victim`` — the scheduler, or the worker itself."""
    if x == 1:
        time.sleep(0.3)
        os.killpg(victim if victim else os.getpgrp(), getattr(signal, f"SIG{how}"))
        time.sleep(5)
    return {"value": x * x}


# ----------------------------------------------------------------------------- the cluster fixture

class Cluster:
    """A scheduler and workers as subprocesses, each its own process group; :meth:`close` kills them all."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.processes: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.address = None
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(SRC), str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "DASK_TEMPORARY_DIRECTORY": str(folder)}     # scratch space in the test's folder, not /tmp

    def _start(self, module: str, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{module.rpartition('.')[2]}-{len(self.processes)}.log", "wb")
        process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=self.folder, env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.processes.append(process)
        return process

    def _wait(self, ready, what: str, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                logs = "\n".join(path.read_text(errors="replace")[-2000:] for path in self.folder.glob("*.log"))
                raise RuntimeError(f"{what} did not start (exit code {process.poll()}):\n{logs}")
            time.sleep(0.1)

    def start(self, workers: int = 0) -> "Cluster":
        """The scheduler and ``workers`` workers, all started at once (the workers find the scheduler's address
        in its scheduler file as soon as it is written)."""
        self.scheduler_file = self.folder / "scheduler.json"
        self.scheduler = self._start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                     "--no-dashboard", "--scheduler-file", str(self.scheduler_file),
                                     "--idle-timeout", "300")   # a safety net should this test process be killed
        self._launch_workers(workers)
        self._wait(lambda: _address(self.scheduler_file), "the scheduler", self.scheduler)
        self.address = _address(self.scheduler_file)
        self._wait_for_workers()
        return self

    def _launch_workers(self, count: int) -> None:
        for _ in range(count):
            self.workers.append(self._start("distributed.cli.dask_worker", "--scheduler-file", str(self.scheduler_file),
                                            "--nworkers", "1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                            "--death-timeout", "60"))

    def _wait_for_workers(self) -> None:
        wanted = len([worker for worker in self.workers if worker.poll() is None])
        self._wait(lambda: self.worker_count() == wanted, f"the scheduler and {wanted} worker(s)",
                   self.workers[-1] if self.workers else self.scheduler)

    def add_workers(self, count: int = 1) -> "Cluster":
        self._launch_workers(count)
        self._wait_for_workers()
        return self

    def worker_count(self) -> int | None:
        try:
            return dask_cluster.scheduler_identity(self.address, 2.0)["n_workers"]
        except Exception:  # noqa: BLE001 - not up yet
            return None

    def kill(self, process: subprocess.Popen, how=signal.SIGKILL) -> None:
        try:
            os.killpg(process.pid, how)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        for process in reversed(self.processes):
            self.kill(process)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL of a group does not fail
                pass


def _address(scheduler_file: Path) -> str | None:
    try:
        return json.loads(scheduler_file.read_text())["address"]
    except (OSError, ValueError, KeyError):   # not written yet, or half-written
        return None


@pytest.fixture
def cluster(tmp_path):
    folder = tmp_path / "cluster"
    folder.mkdir()
    running = Cluster(folder)
    try:
        yield running
    finally:
        running.close()


def clients_of(cluster) -> list[str]:
    """The clients the scheduler knows, besides the one asking and Dask's own 'fire-and-forget' (a client's
    goodbye may take a moment to arrive)."""
    from distributed import Client

    with Client(cluster.address, set_as_default=False) as asking:
        deadline = time.monotonic() + 10
        while True:
            others = [name for name in asking.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.clients))
                      if name not in (asking.id, "fire-and-forget")]
            if not others or time.monotonic() > deadline:
                return others
            time.sleep(0.1)


def no_default_client() -> bool:
    from distributed import default_client

    try:
        default_client()
    except ValueError:
        return True
    return False


# ----------------------------------------------------------------------------- the cases

def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(["sweep", *args, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def _api(call) -> tuple[int, str, str]:
    """An API call as (0, '', '') or (1, '', 'ExceptionName: message')."""
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the table names which
        return 1, "", f"{type(error).__name__}: {error}"
    return 0, "", ""


def cli_on_a_cluster_gives_the_local_metrics(cluster, tmp_path, capsys):
    """The issue's command, on a scheduler and worker started as processes (exited 2, "No clients found")."""
    cluster.start(workers=1)
    out = tmp_path / "r.jsonl"
    result = _cli(["optimizers", "--grid", "steps=10,20", "--scheduler", cluster.address, "--out", str(out)], capsys)
    local = sweeps.sweep_experiment("optimizers", {"steps": "10,20"}, workers=1, progress=False)
    remote = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["point"]["steps"] for r in remote) == [10, 20]
    remote.sort(key=lambda r: r["point"]["steps"])
    assert [r["metrics"] for r in remote] == [r["metrics"] for r in local]
    assert [r["config"] for r in remote] == [r["config"] for r in local]
    assert local[0]["metrics"] != local[1]["metrics"]                   # the grid mattered
    assert no_default_client()                  # the sweep neither needed one nor left one behind
    assert clients_of(cluster) == []            # and it closed its own
    return result


def api_with_a_client_object_leaves_it_open(cluster, tmp_path, capsys):
    from distributed import Client

    cluster.start(workers=1)
    with Client(cluster.address, set_as_default=False) as client:
        records = dl.sweep(square_after, {"x": [0, 4]}, client=client, progress=False)
        assert client.status == "running"       # the caller's client, used and not closed
    assert [r["metrics"] for r in records] == [square_after(0), square_after(4)]
    assert no_default_client()
    return 0, "", ""


def a_worker_killed_mid_sweep_loses_nothing(cluster, tmp_path, capsys):
    cluster.start(workers=2)
    out, marker = tmp_path / "k.jsonl", tmp_path / "killed"
    records = dl.sweep(kill_own_worker_once, {"x": [0, 1, 2, 3, 4, 5], "marker": [str(marker)]},
                       client=cluster.address, out=out, progress=False)
    assert marker.exists()                                      # a worker did die mid-point
    assert sum(worker.poll() is not None for worker in cluster.workers) == 1
    assert [r["status"] for r in records] == ["ok"] * 6
    assert sorted(r["point"]["x"] for r in map(json.loads, out.read_text().splitlines())) == [0, 1, 2, 3, 4, 5]
    assert [r["metrics"]["value"] for r in records] == [x * x for x in range(6)]
    return 0, "", ""


def the_last_worker_killed_mid_sweep_ends_within_the_bound(cluster, tmp_path, capsys):
    cluster.start(workers=1)
    out, marker = tmp_path / "l.jsonl", tmp_path / "killed"

    def the_sweep():
        return dl.sweep(kill_own_worker_once, {"x": [0, 1, 2], "marker": [str(marker)]}, client=cluster.address,
                        out=out, progress=False, no_workers_timeout=1)

    result = _api(the_sweep)
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["point"]["x"], r["status"]) for r in kept] == [(0, "ok")]       # the finished point is kept
    cluster.add_workers(1)                                                      # and the same call continues
    assert [r["metrics"]["value"] for r in the_sweep()] == [0, 1, 4]
    assert [r["point"]["x"] for r in map(json.loads, out.read_text().splitlines())] == [0, 1, 2]
    return result


def cli_on_a_cluster_without_workers_exits_1_within_the_bound(cluster, tmp_path, capsys):
    cluster.start()
    out = tmp_path / "n.jsonl"
    result = _cli(["optimizers", "--grid", "steps=10", "--scheduler", cluster.address, "--out", str(out),
                   "--no-workers-timeout", "1"], capsys)
    assert not out.exists()                     # nothing finished: no file is left behind
    return result


def cli_all_workers_killed_mid_sweep_keeps_finished_records(cluster, tmp_path, capsys):
    """The CLI's path when the last worker dies mid-sweep: a kill from outside once the first record is written."""
    cluster.start(workers=1)
    out = tmp_path / "c.jsonl"

    def kill_after_the_first_record():
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 1):
            time.sleep(0.05)
        cluster.kill(cluster.workers[0])

    killer = threading.Thread(target=kill_after_the_first_record)
    killer.start()
    result = _cli(["optimizers", "--grid", "steps=300:310:6", "--scheduler", cluster.address, "--out", str(out),
                   "--no-workers-timeout", "1"], capsys)
    killer.join()
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert 1 <= len(kept) < 6 and all(r["status"] == "ok" for r in kept)
    assert f"The {len(kept)} finished point(s) are in {out}" in result[2]
    return result


def a_killed_scheduler_ends_the_command_with_one_line(cluster, tmp_path, capsys):
    """`depthlab sweep` as its own process, its scheduler killed once a record is written: one line on stderr (the
    client's closing used to print distributed's traceback of the cancelled reconnection)."""
    cluster.start(workers=1)
    out = tmp_path / "s.jsonl"
    command = subprocess.Popen([sys.executable, "-m", "depthlab", "sweep", "optimizers", "--grid", "steps=300:310:6",
                                "--scheduler", cluster.address, "--out", str(out), "--no-progress",
                                "--no-workers-timeout", "1"], env=cluster.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 1):
            time.sleep(0.05)
        cluster.kill(cluster.scheduler)
        _, err = command.communicate(timeout=BOUND)
    finally:
        command.kill()
    assert 1 <= out.read_text().count("\n") < 6
    return command.returncode, "", err.strip()


def a_frozen_scheduler_ends_the_sweep_within_the_bound(cluster, tmp_path, capsys):
    cluster.start(workers=1)
    out = tmp_path / "f.jsonl"
    result = _api(lambda: dl.sweep(stop_process_group, {"x": [0, 1, 2], "victim": [cluster.scheduler.pid],
                                                        "how": ["STOP"]},
                                   client=cluster.address, out=out, progress=False, no_workers_timeout=1))
    assert [r["point"]["x"] for r in map(json.loads, out.read_text().splitlines())] == [0]
    return result


def a_bare_host_port_address_works(cluster, tmp_path, capsys):
    """`--scheduler 127.0.0.1:PORT`, without tcp://, as `dask worker` accepts it."""
    cluster.start(workers=1)
    bare = cluster.address.removeprefix("tcp://")
    records = dl.sweep(square_after, {"x": [9]}, client=bare, progress=False)
    assert records[0]["metrics"] == {"value": 81, "root": 3.0}
    return 0, "", ""


def ctrl_c_on_a_cluster_stops_and_keeps_finished_records(cluster, tmp_path, capsys):
    """Ctrl-C (SIGINT to this process once a record is written): exit 130, one line, the record kept, and the same
    command then continues with the rest. SIGINT counts only while the sweep runs (a late one is ignored, never
    turned into an interrupt of the test session)."""
    cluster.start(workers=1)
    out = tmp_path / "i.jsonl"
    args = ["optimizers", "--grid", "steps=400:410:3", "--scheduler", cluster.address, "--out", str(out)]
    sweeping = threading.Event()

    def interrupt_after_the_first_record():
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 1):
            time.sleep(0.05)
        time.sleep(0.1)                         # while the next point computes (each takes a second or more)
        if sweeping.is_set() and out.read_text().count("\n") < 3:
            os.kill(os.getpid(), signal.SIGINT)

    def only_while_sweeping(signum, frame):
        if sweeping.is_set():
            raise KeyboardInterrupt

    interrupter = threading.Thread(target=interrupt_after_the_first_record)
    previous = signal.signal(signal.SIGINT, only_while_sweeping)
    try:
        sweeping.set()
        interrupter.start()
        result = _cli(args, capsys)
    finally:
        sweeping.clear()
        interrupter.join()
        signal.signal(signal.SIGINT, previous)
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert 1 <= len(kept) < 3 and no_default_client()
    assert _cli(args, capsys)[0] == 0
    assert sorted(r["point"]["steps"] for r in map(json.loads, out.read_text().splitlines())) == [400, 405, 410]
    return result


def a_workers_address_is_not_a_schedulers(cluster, tmp_path, capsys):
    """A user copies a worker's address instead of the scheduler's."""
    cluster.start(workers=1)
    worker_address = next(iter(dask_cluster.scheduler_identity(cluster.address, 5.0)["workers"]))
    return _cli(["optimizers", "--grid", "steps=10", "--scheduler", worker_address, "--out",
                 str(tmp_path / "w.jsonl")], capsys)


def a_function_the_workers_cannot_import(cluster, tmp_path, capsys):
    """A function from a module only this machine has: each point is recorded as failed, naming the module and
    what to do (it must not hang, nor kill the workers)."""
    cluster.start(workers=1)
    name = f"only_here_{os.getpid()}_{time.monotonic_ns()}"
    (tmp_path / f"{name}.py").write_text("def echo(x):\n    return {'x': x}\n")
    sys.path.insert(0, str(tmp_path))
    try:
        echo = __import__(name).echo
    finally:
        sys.path.remove(str(tmp_path))
    records = dl.sweep(echo, {"x": [1, 2]}, client=cluster.address, out=tmp_path / "m.jsonl", progress=False)
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert cluster.worker_count() == 1
    errors = {r["error"] for r in records}
    return 1, "", errors.pop() if len(errors) == 1 else str(errors)


def cli_bad_timeout(value):
    def case(cluster, tmp_path, capsys):
        return _cli(["optimizers", "--grid", "steps=10", "--scheduler", "tcp://127.0.0.1:8786", "--out",
                     str(tmp_path / "t.jsonl"), "--no-workers-timeout", value], capsys)
    return case


def api_bad_timeout(value):
    def case(cluster, tmp_path, capsys):
        return _api(lambda: dl.sweep(square_after, {"x": [1]}, client="tcp://127.0.0.1:8786",
                                     no_workers_timeout=value, progress=False))
    return case


LOST = r"has had no usable worker for 1 s \(it has no workers\); stopped with {} of {} point\(s\) finished"
SLOW = pytest.mark.slow   # starts a scheduler and workers: a few seconds


def row(case_id, case, code, pattern, slow=True):
    return pytest.param(case, code, pattern, id=case_id, marks=[SLOW] if slow else [])


CASES = [  # id, case, expected exit code, pattern of the one-line message (stderr, or 'Exception: message')
    ("real-cluster-cli", cli_on_a_cluster_gives_the_local_metrics, 0, r"^$"),
    ("bare-host-port-address", a_bare_host_port_address_works, 0, r"^$"),
    ("ctrl-c-on-a-cluster", ctrl_c_on_a_cluster_stops_and_keeps_finished_records, 130,
     r"^depthlab sweep: interrupted after 1 new point\(s\); finished points are in .*i\.jsonl"),
    ("client-object-left-open", api_with_a_client_object_leaves_it_open, 0, r"^$"),
    ("worker-killed-mid-sweep", a_worker_killed_mid_sweep_loses_nothing, 0, r"^$"),
    ("last-worker-killed", the_last_worker_killed_mid_sweep_ends_within_the_bound, 1,
     r"^ClusterLost: the Dask cluster at tcp://127\.0\.0\.1:\d+ " + LOST.format(1, 3)),
    ("cli-no-workers", cli_on_a_cluster_without_workers_exits_1_within_the_bound, 1,
     r"^depthlab sweep: the Dask cluster at tcp://127\.0\.0\.1:\d+ " + LOST.format(0, 1) + r".*--no-workers-timeout"),
    ("cli-all-workers-killed", cli_all_workers_killed_mid_sweep_keeps_finished_records, 1,
     r"^depthlab sweep: the Dask cluster .* no usable worker for 1 s .*finished point\(s\) are in "),
    ("cli-scheduler-killed", a_killed_scheduler_ends_the_command_with_one_line, 1,
     r"^depthlab sweep: (lost the connection to the Dask scheduler at tcp://127\.0\.0\.1:\d+|the Dask cluster .* "
     r"\(the scheduler does not answer\)); stopped with \d of 6 point\(s\) finished.*finished point\(s\) are in"),
    ("scheduler-frozen", a_frozen_scheduler_ends_the_sweep_within_the_bound, 1,
     r"^ClusterLost: the Dask cluster at tcp://127\.0\.0\.1:\d+ has had no usable worker for 1 s \(the scheduler "
     r"does not answer\); stopped with 1 of 3"),
    ("cli-timeout-zero", cli_bad_timeout("0"), 2, r"--no-workers-timeout: must be a finite number > 0, got 0"),
    ("cli-timeout-negative", cli_bad_timeout("-5"), 2, r"--no-workers-timeout: must be a finite number > 0, got -5"),
    ("cli-timeout-inf", cli_bad_timeout("inf"), 2, r"--no-workers-timeout: must be a finite number > 0, got inf"),
    ("cli-timeout-nan", cli_bad_timeout("nan"), 2, r"--no-workers-timeout: must be a finite number > 0, got nan"),
    ("cli-timeout-text", cli_bad_timeout("soon"), 2, r"--no-workers-timeout: expected a positive number, got 'soon'"),
    ("cli-timeout-without-scheduler", lambda cluster, tmp_path, capsys: _cli(
        ["optimizers", "--grid", "steps=10", "--out", str(tmp_path / "t.jsonl"), "--no-workers-timeout", "5"], capsys),
     2, r"^depthlab sweep: --no-workers-timeout applies to a Dask cluster; give --scheduler ADDRESS too"),
    ("a-workers-address", a_workers_address_is_not_a_schedulers, 2,
     r"^depthlab sweep: 'tcp://127\.0\.0\.1:\d+' is not a Dask scheduler's address: a Dask Worker answers there\. "
     r"Give the scheduler's"),
    ("function-not-on-the-workers", a_function_the_workers_cannot_import, 1,
     r"^ModuleNotFoundError: No module named 'only_here_\d+_\d+' \(on the Dask cluster: its scheduler and workers "
     r"need depthlab and the module of the swept function installed"),
    ("api-timeout-string", api_bad_timeout("5"), 1, r"^TypeError: no_workers_timeout must be a number of seconds"),
    ("api-timeout-bool", api_bad_timeout(True), 1, r"^TypeError: no_workers_timeout must be a number of seconds"),
    ("api-timeout-zero", api_bad_timeout(0), 1, r"^ValueError: no_workers_timeout must be a finite number of "
                                                 r"seconds > 0, got 0"),
]


@pytest.mark.parametrize("case, expected_code, pattern",
                         [row(*case, slow="timeout" not in case[0]) for case in CASES])
def test_cluster_case(case, expected_code, pattern, cluster, tmp_path, capsys):
    started = time.monotonic()
    code, _, message = case(cluster, tmp_path, capsys)
    assert time.monotonic() - started < BOUND, "a hang guard: every case ends well within a minute"
    assert code == expected_code, message
    assert len(message.splitlines()) <= 1 and "Traceback" not in message, message
    assert re.search(pattern, message), message
