"""Sweeps: run a function or an experiment over a grid of settings, on every core or a Dask cluster.

Studies of deep networks are grids — depth × σ_w² × activation × seed. :func:`sweep` runs
every point of a grid in parallel worker processes and returns one record per point::

    >>> def train(depth, sigma_w2):                  # a top-level function, so workers can import it
    ...     return {"accuracy": ...}
    >>> records = dl.sweep(train, {"depth": [10, 20, 40], "sigma_w2": [1.0, 1.76, 3.0]},
    ...                    out="runs.jsonl")         # 9 points, one JSON line each
    >>> records[0]["metrics"]["accuracy"]

and the command line runs any registered experiment the same way::

    depthlab sweep edge-of-chaos --grid bias_variance=0:0.1:3 --grid seed=0,1 --out runs.jsonl --quick

**Records.** One JSON object per point, appended to ``out`` as one line when the point
finishes::

    {"experiment": ..., "point": {...}, "config": {...}, "metrics": {...}, "seconds": 1.23,
     "status": "ok"}                                   # or "failed" with "error" and "traceback"

``experiment`` names what ran (the experiment, or ``module:function``); ``point`` holds the
grid's values; ``config`` the full configuration (the point itself for a function); ``fixed``,
present when there are any, the settings every point shares (an experiment's ``--set``,
``--seed`` and ``--quick``, a ``functools.partial``'s bound arguments).

**Resuming.** The file is only ever appended to (each line written whole, flushed and
fsynced). Running the same sweep again skips the points the file already holds (matched on
experiment, point and fixed settings: other fixed settings run the points again), so an
interrupted sweep — Ctrl-C, a killed job, a lost machine — continues where it stopped.
``retry_failed=True`` (``--retry-failed``) runs the failed points again; ``resume=False``
(``--no-resume``) runs every point again. When a point is recorded more than once, its last
line counts.

**Failures.** A point whose function raises is recorded as failed with the error and the
last frames of its traceback; a worker process that dies outright (``os._exit``, a
segfault, the out-of-memory killer) costs only the points it was running: those are run
again one by one in a fresh process to find the culprit, which is recorded as failed with
its exit code or signal, and the pool is restarted for the rest.

**Where it runs.** ``workers=None`` uses every usable core, each worker with
``cores // workers`` BLAS threads so the machine is not oversubscribed (worker processes
start from a fork server, Python's ``forkserver`` method, or ``spawn`` where that is
missing — functions must therefore be importable: defined at the top level of a module,
and scripts need the ``if __name__ == "__main__":`` guard). ``client=`` (``--scheduler``)
sends the points to a Dask distributed cluster instead: a ``dask.distributed.Client`` or a
scheduler address such as ``"tcp://10.0.0.5:8786"`` (needs the ``dask`` extra, and
depthlab installed on the workers).
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import inspect
import itertools
import json
import multiprocessing
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from .._checks import check_positive_int

RECORD_ORDER = ("experiment", "point", "fixed", "config", "metrics", "seconds", "status", "error", "traceback")
TRACEBACK_FRAMES = 6
CONNECT_TIMEOUT = 5.0      # seconds to reach a Dask scheduler


class SchedulerUnreachable(ConnectionError, ValueError):
    """No Dask scheduler answered at the given address (a ``ValueError`` too: bad input)."""


# ============================================================================= grids

def _describe(value) -> str:
    return f"{type(value).__name__} {value!r}"


def _jsonable(value, where: str):
    from .experiments.base import jsonable

    return jsonable(value, where)


def point_key(experiment: str, point: Mapping, fixed: Mapping | None = None) -> str:
    """The identity of a point in a results file: canonical JSON of experiment, point and the
    sweep's fixed settings (see :func:`fixed_settings`; none for most sweeps)."""
    identity = [experiment, _jsonable(dict(point), "point")]
    return json.dumps(identity + [_jsonable(dict(fixed), "fixed")] if fixed else identity, sort_keys=True)


def fixed_settings(task) -> dict:
    """What every point of a sweep shares besides its grid values: an experiment's ``--set``
    values, ``--seed`` and ``--quick``, or a ``functools.partial``'s bound arguments. Recorded
    as ``fixed`` and part of a point's identity, so that resuming with other fixed settings
    runs the points again instead of returning results made with the old ones."""
    fixed = {}
    if isinstance(task, ExperimentTask):
        if task.overrides:
            fixed["set"] = dict(task.overrides)
        if task.seed is not None:
            fixed["seed"] = task.seed
        if task.quick:
            fixed["quick"] = True
    elif isinstance(task, functools.partial):
        if task.args:
            fixed["args"] = list(task.args)
        if task.keywords:
            fixed["keywords"] = dict(task.keywords)
    try:
        return _jsonable(fixed, "fixed")
    except TypeError:  # bound arguments JSON cannot hold: their repr still tells runs apart
        return {"repr": repr(fixed)}


def _check_values(key, values) -> list:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"grid[{key!r}] must be a list of values, got the string {values!r}; "
                        f"write [{values!r}] for a single value.")
    if isinstance(values, Mapping) or not isinstance(values, Iterable):
        raise TypeError(f"grid[{key!r}] must be a list of values, got {_describe(values)}; "
                        f"write [{values!r}] for a single value.")
    values = list(values)
    if not values:
        raise ValueError(f"grid[{key!r}] has no values; give at least one, e.g. grid[{key!r}] = [1, 2].")
    seen = set()
    for value in values:
        try:
            canonical = json.dumps(_jsonable(value, f"grid[{key!r}]"), sort_keys=True)
        except TypeError:
            raise TypeError(f"grid[{key!r}] holds {_describe(value)}; grid values must be JSON-friendly (numbers, "
                            "strings, booleans, None or lists of them) so that records can be written and "
                            "matched when resuming.") from None
        if canonical in seen:
            raise ValueError(f"grid[{key!r}] lists {value!r} twice; each point must appear once.")
        seen.add(canonical)
    return values


def grid_points(grid) -> list[dict]:
    """The points of a grid, in order.

    Parameters
    ----------
    grid : dict of str -> list, or list of dict
        ``{"depth": [10, 20], "sigma_w2": [1.0, 2.0]}``: the cartesian product (the last key
        varies fastest), 4 points here; or an explicit list of points ``[{"depth": 10,
        "sigma_w2": 1.0}, ...]``.

    Raises
    ------
    TypeError, ValueError
        Not a dict or list of dicts, an empty grid, a key with no values, a value listed twice,
        values that JSON cannot hold.
    """
    if isinstance(grid, Mapping):
        if not grid:
            raise ValueError("grid is empty: give at least one key with its values, e.g. {'depth': [10, 20]}.")
        for key in grid:
            if not isinstance(key, str):
                raise TypeError(f"grid keys must be strings (parameter names), got {_describe(key)}.")
        columns = {key: _check_values(key, values) for key, values in grid.items()}
        return [dict(zip(columns, combination)) for combination in itertools.product(*columns.values())]
    if isinstance(grid, (list, tuple)):
        if not grid:
            raise ValueError("grid is an empty list of points; give at least one point, e.g. [{'depth': 10}].")
        points, seen = [], set()
        for index, point in enumerate(grid):
            if not isinstance(point, Mapping):
                raise TypeError(f"grid[{index}] must be a dict (one point), got {_describe(point)}.")
            canonical = point_key("", point)
            if canonical in seen:
                raise ValueError(f"grid[{index}] repeats an earlier point {dict(point)!r}; each point must appear once.")
            seen.add(canonical)
            points.append(dict(point))
        return points
    raise TypeError(f"grid must be a dict {{name: [values]}} or a list of points (dicts), got {_describe(grid)}.")


def _check_function(fn, points: list[dict], local: bool) -> None:
    """Refuse what workers cannot run: non-callables, unknown or missing parameters, unpicklables."""
    if not callable(fn):
        raise TypeError(f"fn must be a function fn(**point) -> dict of metrics, got {_describe(fn)}.")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        parameters = signature.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        named = {name: p for name, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        keys = set().union(*points)
        unknown = sorted(keys - set(named)) if not takes_any else []
        if unknown:
            valid = ", ".join(named) or "none"
            raise ValueError(f"unknown grid key(s) {', '.join(map(repr, unknown))} for {_label(fn)}: "
                             f"its parameters are {valid}.")
        required = [name for name, p in named.items() if p.default is p.empty]
        for point in points:
            missing = [name for name in required if name not in point]
            if missing:
                raise ValueError(f"point {point!r} gives no value for {_label(fn)}'s parameter(s) "
                                 f"{', '.join(missing)}; add them to the grid or give them defaults "
                                 "(functools.partial(fn, name=value)).")
    if local:
        target = fn.func if isinstance(fn, functools.partial) else fn
        if getattr(target, "__module__", None) == "__main__" and not getattr(sys.modules.get("__main__"), "__file__",
                                                                             None):
            raise TypeError(
                f"fn {_label(fn)} is defined in an interactive session (a REPL, a notebook, python -c or stdin), "
                "which worker processes cannot import. Put it in a module file and import it from there (or run a "
                "script with the if __name__ == '__main__': guard)."
            )
        try:
            pickle.dumps(fn)
        except Exception as error:  # noqa: BLE001 - any pickling failure means the same thing
            raise TypeError(
                f"fn must be picklable to run in worker processes ({type(error).__name__}: {error}). Use a function "
                "defined at the top level of a module (not a lambda, a nested function or a method of a local "
                "class); functools.partial of such a function works."
            ) from None


def _label(fn) -> str:
    target = fn.func if isinstance(fn, functools.partial) else fn
    module = getattr(target, "__module__", None) or "?"
    name = getattr(target, "__qualname__", None) or type(target).__name__
    return f"{module}:{name}"


# ============================================================================= experiments as tasks

@dataclasses.dataclass(frozen=True)
class ExperimentTask:
    """A registered experiment as a sweep task: ``run(point) -> (config dict, metrics)``.

    Picklable (plain data), so it travels to worker processes and Dask workers. Each point's
    config is built as ``depthlab run`` builds one: defaults, ``QUICK`` when ``quick``,
    ``overrides``, the point, then ``seed``. No report is written.
    """

    name: str
    overrides: tuple = ()          # ((key, value), ...) applied before each point
    quick: bool = False
    seed: int | None = None

    def config(self, point: Mapping):
        from .experiments import base

        return base.make_config(self.name, {**dict(self.overrides), **point}, seed=self.seed, quick=self.quick)

    def run(self, point: Mapping) -> tuple[dict, dict]:
        from . import experiments

        module = experiments.get(self.name)
        config = self.config(point)
        result = module.run(config, progress=None)
        return dataclasses.asdict(config), result.metrics


def _split_values(text: str, is_tuple: bool) -> list[str]:
    """'1,2,3' -> ['1', '2', '3']; a tuple-typed field separates its values with ';'."""
    separator = ";" if is_tuple or ";" in text else ","
    return [part.strip() for part in text.split(separator) if part.strip()]


def _expand_range(text: str, annotation, key: str):
    """'START:STOP:COUNT' -> COUNT evenly spaced values from START to STOP (ints or floats)."""
    parts = text.split(":")
    if len(parts) != 3 or annotation not in (int, float):
        return None
    try:
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"--grid {key}={text}: a range is START:STOP:COUNT with numbers, e.g. 1:4:7") from None
    if count < 1:
        raise ValueError(f"--grid {key}={text}: COUNT must be >= 1, got {count}")
    values = [start + (stop - start) * i / (count - 1) for i in range(count)] if count > 1 else [start]
    if annotation is int:
        values = sorted({int(round(v)) for v in values}, key=lambda v: (v - start) * (1 if stop >= start else -1))
        if len(values) < count:
            raise ValueError(f"--grid {key}={text}: only {len(values)} distinct integers lie in that range "
                             f"({', '.join(map(str, values))}), not {count}; ask for at most {len(values)} or list "
                             "the values")
    return values


def experiment_grid(name: str, grid: Mapping) -> tuple[dict, list]:
    """Parse a grid for an experiment: keys are Config fields, values are parsed to their types.

    Parameters
    ----------
    name : str
        A registered experiment.
    grid : dict of str -> str or list
        ``{"depth": "10,20,40", "sigma_w2": "1:4:7"}`` as the command line gives it, or lists
        of values. A string holds comma-separated values (``;``-separated for a tuple-typed
        field, e.g. ``depths=5,50;10,100``) or, for int/float fields, a range
        ``START:STOP:COUNT`` of COUNT evenly spaced values.

    Returns
    -------
    (grid, keys) : the parsed grid (dict of lists) and the experiment's config keys.

    Raises
    ------
    ValueError
        Unknown experiment, unknown key (the message lists every key with its type), a value
        its field cannot hold, an empty value list.
    """
    from .experiments import base

    module = base._module(name)
    keys = {key.name: key for key in base.config_keys(module)}
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a dict {{key: values}}, got {_describe(grid)}.")
    if not grid:
        raise ValueError(f"the grid is empty: give at least one --grid KEY=V1,V2,... for {module.NAME}; "
                         f"keys: {base.describe_keys(module)}")
    parsed = {}
    for raw_key, raw_values in grid.items():
        key = raw_key if raw_key in keys else str(raw_key).replace("-", "_")
        if key not in keys:
            raise ValueError(f"unknown grid key {raw_key!r} for {module.NAME}; valid keys: {base.describe_keys(module)}")
        if key in parsed:
            raise ValueError(f"grid key {key!r} is given twice; list all its values once: --grid {key}=V1,V2,...")
        annotation = keys[key].type
        is_tuple = getattr(annotation, "__origin__", None) is tuple
        if isinstance(raw_values, str):
            values = _expand_range(raw_values.strip(), annotation, key)
            if values is None:
                values = _split_values(raw_values, is_tuple)
        else:
            values = list(_check_values(key, raw_values))
        if not values:
            raise ValueError(f"grid key {key!r} has no values; write --grid {key}=V1,V2,...")
        try:
            parsed[key] = [base.parse_value(annotation, value) for value in values]
        except ValueError as error:
            raise ValueError(f"--grid {key}={raw_values if isinstance(raw_values, str) else values}: {error} "
                             f"({key} is {base.type_name(annotation)})") from None
        _check_values(key, parsed[key])
    return parsed, list(keys)


# ============================================================================= results files

def _record_error(path: Path, number: int, problem: str) -> ValueError:
    return ValueError(f"{path}, line {number}: {problem}. The file is left as it is; fix or delete that line, "
                      "or write to another file.")


def read_results(path, experiment: str | None = None) -> list[dict]:
    """The records of a sweep's results file, in file order.

    Parameters
    ----------
    path : str or Path
        A JSON-lines file written by :func:`sweep` (blank lines are ignored).
    experiment : str, optional
        Refuse a file that holds records of another experiment.

    Raises
    ------
    ValueError
        A line that is not a JSON record of a sweep (its number is given), or a record of
        another experiment. The file is never modified.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"results file {str(path)!r} is a directory; give a file path such as {path / 'results.jsonl'}.")
    records = []
    with open(path, "rb") as handle:
        data = handle.read()
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        incomplete = number == len(lines) and not data.endswith(b"\n")
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            problem = ("is an incomplete record (the writing process was killed mid-line?)" if incomplete
                       else f"is not a JSON record ({error})")
            raise _record_error(path, number, problem) from None
        if not isinstance(record, dict) or any(key not in record for key in ("experiment", "point", "status")) \
                or not isinstance(record.get("point"), dict):
            raise _record_error(path, number, "is JSON but not a sweep record (it needs 'experiment', 'point' and "
                                              "'status')")
        if experiment is not None and record["experiment"] != experiment:
            raise ValueError(
                f"{path} holds results of {record['experiment']!r} (line {number}), not of {experiment!r}; "
                "a results file serves one experiment. Write to another file (--out).")
        records.append(record)
    return records


class _Appender:
    """Appends whole lines to a results file: one write per line, then flush and fsync."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(self.fd).st_size
        if size:  # a complete last record without its newline (edited by hand): end it first
            with open(path, "rb") as handle:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    self._write(b"\n")

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        os.fsync(self.fd)

    def append(self, record: dict) -> None:
        self._write((json.dumps(record, allow_nan=False) + "\n").encode("utf-8"))

    def close(self) -> None:
        os.close(self.fd)


# ============================================================================= running one point

def _execute(task, point: dict) -> dict:
    """Run one point (in a worker): an outcome dict that pickles and serializes to JSON."""
    start = time.perf_counter()
    try:
        if isinstance(task, ExperimentTask):
            config, metrics = task.run(point)
        else:
            config, metrics = point, task(**point)
        if not isinstance(metrics, Mapping):
            raise TypeError(f"the sweep function must return a dict of metrics, got {_describe(metrics)}")
        return {"config": _jsonable(config, "config"), "metrics": _jsonable(dict(metrics), "metrics"),
                "seconds": time.perf_counter() - start, "status": "ok"}
    except KeyboardInterrupt:
        return {"status": "interrupted"}
    except BaseException as error:  # noqa: BLE001 - SystemExit, CancelledError…: a point's failure is data
        return {"config": _safe_json(_full_config(task, point)), "metrics": {}, "seconds": time.perf_counter() - start,
                "status": "failed", "error": _one_line(error),
                "traceback": "".join(traceback.format_exception(error, limit=-TRACEBACK_FRAMES)).rstrip()}


def _full_config(task, point: dict):
    """The configuration a failed point ran with (the point itself if it cannot be built)."""
    if isinstance(task, ExperimentTask):
        try:
            return dataclasses.asdict(task.config(point))
        except Exception:  # noqa: BLE001 - the point's own values are what is left to record
            return point
    return point


def _one_line(error: BaseException) -> str:
    try:
        text = " ".join(str(error).split())
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails still gets recorded
        text = "(its message could not be printed)"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _safe_json(value):
    try:
        return _jsonable(value, "point")
    except TypeError:
        return repr(value)


def _died(point: dict, how: str) -> dict:
    return {"config": _safe_json(point), "metrics": {}, "seconds": None, "status": "failed",
            "error": f"WorkerDied: the worker process running this point died ({how})", "traceback": ""}


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie — dead, not yet reaped — counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _watch_parent(pid: int, interval: float = 1.0) -> None:
    """End this worker when the sweeping process ``pid`` is gone (killed, not shut down).

    Pool workers would otherwise wait for work forever: they hold copies of their own task
    queue, so its closing never reaches them.
    """
    import threading

    def watch():
        while _alive(pid):
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="depthlab-sweep-watchdog", daemon=True).start()


def _init_worker(blas_threads: int | None, parent: int | None = None) -> None:
    """In each worker: Ctrl-C is the parent's business; BLAS gets its share of the cores;
    the worker ends if the sweeping process ``parent`` dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None:
        _watch_parent(parent)
    if blas_threads:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(blas_threads)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # the variables above still govern libraries loaded from now on
            return
        threadpool_limits(blas_threads)


def _isolated_main(connection, task, point, blas_threads, parent) -> None:
    _init_worker(blas_threads, parent)
    connection.send(_execute(task, point))
    connection.close()


def _run_isolated(context, task, point: dict, blas_threads) -> dict:
    """Run one point alone in a fresh process; a hard death becomes a failed outcome."""
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_isolated_main, args=(sender, task, point, blas_threads, os.getpid()))
    process.start()
    sender.close()
    try:
        outcome = receiver.recv()
    except EOFError:
        outcome = None
    finally:
        receiver.close()
        process.join()
    if outcome is not None:
        return outcome
    code = process.exitcode
    if code is not None and code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exit code {code}"
    return _died(point, how)


# ============================================================================= backends

def _context():
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["numpy", "depthlab.lab.sweeps"])
        return context
    return multiprocessing.get_context("spawn")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _run_local(task, pending: list, workers: int) -> Iterator[tuple[int, dict]]:
    """Yield ``(index, outcome)`` as points finish, on a pool of ``workers`` processes."""
    if multiprocessing.current_process().daemon:  # cannot start processes here (e.g. inside a Dask worker)
        for index, point in pending:
            yield index, _execute(task, point)
        return
    context = _context()
    blas_threads = max(1, _usable_cores() // workers)
    queue = collections.deque(pending)
    while queue:
        pool = ProcessPoolExecutor(max_workers=min(workers, len(queue)), mp_context=context,
                                   initializer=_init_worker, initargs=(blas_threads, os.getpid()))
        running: dict = {}
        suspects: list = []
        broken = False
        try:
            while (queue or running) and not broken:
                while queue and len(running) < workers:   # never more in flight than workers
                    index, point = queue.popleft()
                    try:
                        running[pool.submit(_execute, task, point)] = (index, point)
                    except BrokenProcessPool:
                        queue.appendleft((index, point))
                        broken = True
                        break
                if broken:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    index, point = running.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        suspects.append((index, point))
                        broken = True
                        continue
                    yield index, outcome
            suspects += list(running.values())   # after a break: what the dead pool was running
        except BaseException:
            _stop(pool)
            raise
        pool.shutdown(wait=True, cancel_futures=True)
        # a worker died: rerun each point it may have been running alone, to find the culprit
        for index, point in sorted(suspects):
            yield index, _run_isolated(context, task, point, blas_threads)


def _stop(pool: ProcessPoolExecutor) -> None:
    """End our pool's worker processes now (Ctrl-C or an error in the parent)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=5)


def connect(client, timeout: float = CONNECT_TIMEOUT):
    """A ``dask.distributed.Client`` from a client or a scheduler address; ``(client, owned)``.

    Raises
    ------
    SchedulerUnreachable
        No scheduler answered within ``timeout`` seconds.
    ImportError
        The ``dask`` extra is not installed.
    """
    if not isinstance(client, str):
        if not (hasattr(client, "submit") and hasattr(client, "scheduler")):
            raise TypeError(f"client must be a dask.distributed.Client or a scheduler address such as "
                            f"'tcp://127.0.0.1:8786', got {_describe(client)}.")
        return client, False
    address = client.strip()
    if not address:
        raise ValueError("the scheduler address is empty; give one such as 'tcp://127.0.0.1:8786'.")
    try:
        from distributed import Client
    except ImportError:
        raise ImportError("running a sweep on a Dask cluster needs dask.distributed: "
                          "pip install 'depthlab[dask]'") from None
    port = address.rpartition(":")[2]
    if port.lstrip("-").isdigit() and not 0 < int(port) < 65536:
        raise ValueError(f"invalid scheduler address {address!r}: port {port} is not in 1–65535; write it as "
                         "tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786.")
    try:
        _probe_scheduler(address, timeout)
        return Client(address, timeout=f"{timeout}s", set_as_default=False), True
    except ValueError as error:
        raise ValueError(f"invalid scheduler address {address!r}: {_one_line(error)}; write it as "
                         "tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786.") from None
    except Exception as error:  # noqa: BLE001 - refused, timed out, or not a scheduler
        reason = _one_line(error) if isinstance(error, OSError) else \
            f"the server there does not answer as a Dask scheduler: {_one_line(error)[:120]}"
        raise SchedulerUnreachable(
            f"cannot reach a Dask scheduler at {address!r} within {timeout:g} s ({reason}). "
            "Start one (`dask scheduler`, then `dask worker ADDRESS` on each machine) or drop the scheduler to use "
            "this machine's cores.") from None


def _probe_scheduler(address: str, timeout: float) -> None:
    """Ask ``address`` for its identity before building a Client.

    A Client whose connection fails half-way blocks for tens of seconds when it is garbage
    collected; this probe fails fast instead (refused, timed out, or something that is not a
    scheduler — e.g. a web server — on that port). It runs its own event loop in a thread,
    so it also works where a loop is already running (Jupyter).
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect as open_comm

    async def identity():
        comm = await open_comm(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    async def within_timeout():  # the whole exchange, handshake included: a silent server cannot hang it
        return await asyncio.wait_for(identity(), timeout)

    with ThreadPoolExecutor(1) as thread:
        reply = thread.submit(asyncio.run, within_timeout()).result()
    if not isinstance(reply, Mapping) or reply.get("type") != "Scheduler":
        raise ConnectionError(f"the server there is not a Dask scheduler (it answered {str(reply)[:80]!r})")


def _run_dask(task, pending: list, client) -> Iterator[tuple[int, dict]]:
    """Yield ``(index, outcome)`` as the cluster finishes points."""
    from distributed import as_completed

    futures = {client.submit(_execute, task, point, pure=False): (index, point) for index, point in pending}
    try:
        for future in as_completed(futures, loop=client.loop):   # the client's loop: it need not be the default
            index, point = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # noqa: BLE001 - e.g. KilledWorker: the point killed its workers
                outcome = {"config": _safe_json(point), "metrics": {}, "seconds": None, "status": "failed",
                           "error": _one_line(error), "traceback": ""}
            yield index, outcome
    finally:
        unfinished = [future for future in futures if not future.done()]
        if unfinished:
            client.cancel(unfinished)


# ============================================================================= the sweep

def _progress(progress, iterable, total: int, initial: int, desc: str):
    if progress is False or progress is None:
        return iterable
    if callable(progress) and progress is not True:
        return progress(iterable, desc=desc, total=total)
    try:
        from tqdm import tqdm
    except ImportError:  # the 'lab' extra is missing: no bar
        return iterable
    return tqdm(iterable, desc=desc, total=total + initial, initial=initial, file=sys.stderr, dynamic_ncols=True,
                unit="point", leave=False)


def _check_workers(workers) -> int:
    """None → every usable core; else an int >= 1."""
    return _usable_cores() if workers is None else check_positive_int(workers, "workers")


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}.")
    return value


def _run(task, points: list[dict], label: str, *, workers, client, out, resume: bool, retry_failed: bool,
         progress, summary: dict | None = None) -> list[dict]:
    resume = _check_flag(resume, "resume")
    retry_failed = _check_flag(retry_failed, "retry_failed")
    if client is not None and workers is not None:
        raise ValueError("give either workers (processes on this machine) or client (a Dask cluster), not both.")
    workers = _check_workers(workers) if client is None else None
    fixed = fixed_settings(task)
    keys = [point_key(label, point, fixed) for point in points]
    latest: dict = {}
    path = None
    if out is not None:
        if not isinstance(out, (str, os.PathLike)):
            raise TypeError(f"out must be a file path (str or Path) or None, got {_describe(out)}.")
        path = Path(out)
        if path.exists():
            for record in read_results(path, experiment=label):
                latest[point_key(label, record["point"], record.get("fixed"))] = record
    wanted = set(keys)
    done = {key: record for key, record in latest.items() if key in wanted}

    def skip(key: str) -> bool:
        record = done.get(key)
        if record is None or not resume:
            return False
        return not (retry_failed and record.get("status") != "ok")

    pending = [(index, point) for index, (point, key) in enumerate(zip(points, keys)) if not skip(key)]
    results = {index: done[key] for index, key in enumerate(keys) if skip(key)}
    if summary is not None:
        summary.update(total=len(points), skipped=len(results), ran=0, failed_now=0)
    owned_client = appender = stream = shown = None
    try:
        if pending:
            if client is not None:
                client, owned = connect(client)
                owned_client = client if owned else None
                stream = _run_dask(task, pending, client)
            else:
                stream = _run_local(task, pending, workers)
            appender = _Appender(path) if path is not None else None
            by_index = dict(pending)
            shown = _progress(progress, stream, len(pending), len(results), label)
            for index, outcome in shown:
                if outcome.get("status") == "interrupted":
                    raise KeyboardInterrupt
                point = by_index[index]
                record = {"experiment": label, "point": _jsonable(point, "point"), **outcome}
                if fixed:
                    record["fixed"] = fixed
                record = {key: record[key] for key in RECORD_ORDER if key in record}
                if appender is not None:
                    appender.append(record)
                results[index] = record
                if summary is not None:
                    summary["ran"] += 1
                    summary["failed_now"] += record["status"] != "ok"
    finally:
        if shown is not stream and callable(getattr(shown, "close", None)):
            shown.close()           # the progress bar
        if stream is not None:
            stream.close()          # stops the workers if the loop ended early (Ctrl-C, an error)
        if appender is not None:
            appender.close()
        if owned_client is not None:
            owned_client.close()
    return [results[index] for index in range(len(points))]


def sweep(fn, grid, workers=None, client=None, out=None, resume=True, *, retry_failed=False, progress=True,
          name: str | None = None) -> list[dict]:
    """Run ``fn(**point)`` for every point of ``grid`` in parallel; one record per point.

    Parameters
    ----------
    fn : callable or str
        ``fn(**point) -> dict`` of JSON-friendly metrics (numbers, strings, short lists;
        NumPy scalars are converted). Must be picklable: a function defined at the top level
        of a module (or a ``functools.partial`` of one). A string names a registered
        experiment and is run by :func:`sweep_experiment` (grid keys are its config keys).
    grid : dict of str -> list, or list of dict
        ``{"depth": [10, 20], "sigma_w2": [1.0, 2.0]}`` (cartesian product, 4 points) or an
        explicit list of points.
    workers : int, optional
        Worker processes on this machine (default: every usable core).
    client : dask.distributed.Client or str, optional
        Run on a Dask cluster instead (a client or a scheduler address ``"tcp://host:port"``).
    out : str or Path, optional
        A JSON-lines file: one record appended per finished point; points it already holds
        are skipped (see ``resume``).
    resume : bool, default True
        Skip points already recorded in ``out``; False runs every point again (appending).
    retry_failed : bool, default False
        Run points recorded as failed again.
    progress : bool or callable, default True
        A tqdm bar over the points on stderr, or a factory ``progress(iterable, desc=, total=)``.
    name : str, optional
        The ``experiment`` field of the records (default ``module:function`` of ``fn``).

    Returns
    -------
    list of dict
        One record per point, in grid order: ``experiment``, ``point``, ``config``,
        ``metrics``, ``seconds``, ``status`` ("ok" or "failed", then with ``error`` and
        ``traceback``). Points skipped from ``out`` come back as recorded there.

    Raises
    ------
    ValueError, TypeError
        A bad grid (empty, a key with no values, a key ``fn`` does not take — the message
        lists its parameters), ``workers`` < 1, both ``workers`` and ``client``, an
        unpicklable ``fn``, a results file of another experiment or with a corrupted line (its
        number is given; the file is never modified), an unreachable scheduler
        (:class:`SchedulerUnreachable`, within a few seconds).
    KeyboardInterrupt
        On Ctrl-C, after stopping the workers; what finished is in ``out``, and running the
        same call again continues.
    """
    if isinstance(fn, str):
        return sweep_experiment(fn, grid, workers=workers, client=client, out=out, resume=resume,
                                retry_failed=retry_failed, progress=progress)
    points = grid_points(grid)
    _check_function(fn, points, local=client is None)
    label = name if name is not None else _label(fn)
    if not isinstance(label, str) or not label:
        raise TypeError(f"name must be a non-empty string, got {_describe(label)}.")
    return _run(fn, points, label, workers=workers, client=client, out=out, resume=resume,
                retry_failed=retry_failed, progress=progress)


def sweep_experiment(experiment: str, grid: Mapping, *, overrides: Mapping | None = None, quick: bool = False,
                     seed: int | None = None, workers=None, client=None, out=None, resume=True,
                     retry_failed=False, progress=True, summary: dict | None = None) -> list[dict]:
    """Run a registered experiment at every point of ``grid`` (what ``depthlab sweep`` does).

    Parameters
    ----------
    experiment : str
        A name from ``depthlab list``.
    grid : dict of str -> str or list
        Config keys and their values (strings are parsed as ``--grid`` parses them, see
        :func:`experiment_grid`).
    overrides : dict, optional
        Fixed config values for every point (as ``--set``).
    quick : bool
        Start from the experiment's ``QUICK`` sizes.
    seed : int, optional
        The config seed of every point (to vary it, put ``seed`` in the grid instead).
    workers, client, out, resume, retry_failed, progress
        As in :func:`sweep`.
    summary : dict, optional
        Filled with counts: ``total``, ``skipped`` (already in ``out``), ``ran``, ``failed_now``.

    Returns
    -------
    list of dict
        One record per point (``config`` is the point's full configuration).
    """
    from .experiments import base

    parsed, _ = experiment_grid(experiment, grid)
    module = base._module(experiment)
    overrides = {str(key).replace("-", "_"): value for key, value in dict(overrides or {}).items()}
    clash = sorted(set(overrides) & set(parsed))
    if clash:
        raise ValueError(f"{', '.join(clash)} given both as a fixed value (--set) and in the grid; keep one.")
    if seed is not None and "seed" in parsed:
        raise ValueError("seed is both in the grid and given with --seed; keep one.")
    task = ExperimentTask(module.NAME, tuple(overrides.items()), bool(quick), seed)
    points = grid_points(parsed)
    for point in points:  # every configuration is checked here, before any worker starts
        task.config(point)
    return _run(task, points, module.NAME, workers=workers, client=client, out=out, resume=resume,
                retry_failed=retry_failed, progress=progress, summary=summary)


# ============================================================================= command line

def configure_cli(parser) -> None:
    """Arguments of ``depthlab sweep`` (added to its subparser by :mod:`depthlab.lab.cli`)."""
    from .cli import key_value, non_negative_int, positive_int

    parser.add_argument("name", metavar="EXPERIMENT", help="an experiment (see `depthlab list --keys`)")
    parser.add_argument("--grid", metavar="KEY=V1,V2,...", type=key_value, action="append", default=[],
                        help="a grid axis (repeatable): comma-separated values, START:STOP:COUNT for evenly spaced "
                             "numbers, ';' between tuples (depths=5,50;10,100)")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", type=key_value, action="append", default=[],
                        help="a fixed config value for every point (repeatable)")
    parser.add_argument("--out", metavar="FILE", required=True,
                        help="results file (JSON lines, appended; points already in it are skipped)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, metavar="N", help="worker processes (default: every core)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--quick", action="store_true", help="start every point from the experiment's quick sizes")
    parser.add_argument("--seed", type=non_negative_int, help="the seed of every point (or put seed in the grid)")
    parser.add_argument("--retry-failed", action="store_true", help="run points recorded as failed again")
    parser.add_argument("--no-resume", action="store_true", help="run every point again (still appending)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def cli_main(args) -> int:
    """``depthlab sweep``: 0 when every point is ok, 1 when some failed, 2 for bad input, 130 on Ctrl-C."""
    from .cli import PROG, UsageError

    if not args.grid:
        raise UsageError(f"{PROG} sweep: give at least one --grid KEY=V1,V2,... (see `{PROG} list --keys`)")
    grid: dict = {}
    for key, values in args.grid:
        if key in grid:
            raise UsageError(f"{PROG} sweep: --grid {key} is given twice; list all its values once: --grid {key}=V1,V2,...")
        grid[key] = values
    summary: dict = {}
    started = time.perf_counter()
    try:
        records = sweep_experiment(args.name, grid, overrides=dict(args.overrides), quick=args.quick, seed=args.seed,
                                   workers=args.workers, client=args.scheduler, out=args.out,
                                   resume=not args.no_resume, retry_failed=args.retry_failed,
                                   progress=not args.no_progress, summary=summary)
    except (ValueError, TypeError) as error:
        raise UsageError(f"{PROG} sweep: {' '.join(str(error).split())}") from None
    except ImportError as error:
        raise UsageError(f"{PROG} sweep: {error}") from None
    except OSError as error:   # the results file cannot be read or written
        raise UsageError(f"{PROG} sweep: cannot use {error.filename or args.out}: {error.strerror or error}") from None
    except KeyboardInterrupt:
        print(f"{PROG} sweep: interrupted after {summary.get('ran', 0)} new point(s); finished points are in "
              f"{args.out} — run the same command again to continue.", file=sys.stderr)
        return 130
    failed = [r for r in records if r["status"] != "ok"]
    for record in failed:
        print(f"failed {json.dumps(record['point'])}: {record.get('error', '')}", file=sys.stderr)
    seconds = time.perf_counter() - started
    print(f"{args.name}: {summary['total']} point(s) — {summary['ran']} run now ({summary['failed_now']} failed), "
          f"{summary['skipped']} already in {args.out}; {len(failed)} failed in all ({seconds:.1f} s). "
          f"Results: {args.out}")
    return 1 if failed else 0


__all__ = ["sweep", "sweep_experiment", "read_results", "grid_points", "experiment_grid", "ExperimentTask",
           "SchedulerUnreachable", "point_key", "fixed_settings", "connect", "configure_cli", "cli_main"]
