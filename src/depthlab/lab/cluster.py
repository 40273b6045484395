"""A sweep on a Dask distributed cluster: connect to its scheduler, run points, notice when it is gone.

A user's cluster is a scheduler and workers started as their own processes, on one machine or
many::

    dask scheduler --host 10.0.0.5 --port 8786           # once
    dask worker tcp://10.0.0.5:8786                      # on every machine that computes
    depthlab sweep optimizers --grid steps=10,20 --scheduler tcp://10.0.0.5:8786 --out r.jsonl

:func:`connect` makes its own ``distributed.Client`` for an address (never the process's
default client, and it never becomes one) and the sweep closes it at the end; a ``Client``
given by the caller is used as it is and left open.

**Lost workers.** When a worker dies, the scheduler runs its points again on the others;
nothing is lost. When the cluster has no worker at all — the last one died, or none has
joined — :func:`run_points` waits ``no_workers_timeout`` seconds (``--no-workers-timeout``,
default :data:`NO_WORKERS_TIMEOUT`) for one to (re)join, then raises :class:`ClusterLost`;
the records of the points that finished are already in the results file, and running the same
sweep again continues. A scheduler that stops answering, or a lost connection to it, ends the
sweep the same way. (A worker whose machine vanishes without closing its connections counts
as present until the scheduler drops it: ``distributed.scheduler.worker-ttl``, 5 minutes by
default.)
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import time
from collections.abc import Iterator, Mapping

CONNECT_TIMEOUT = 5.0          # seconds to reach a Dask scheduler
NO_WORKERS_TIMEOUT = 120.0     # seconds a sweep waits while its cluster has no worker
CHECK_INTERVAL = 1.0           # seconds between two looks at the cluster while no point finishes
POLL = 0.1                     # seconds between two looks for finished points
QUIET_WHILE_CLOSING = ("distributed.client", "distributed.comm", "distributed.core", "distributed.utils",
                       "distributed.batched")
CANCELLED = (asyncio.CancelledError, concurrent.futures.CancelledError)   # what distributed raises, by version


class SchedulerUnreachable(ConnectionError, ValueError):
    """No Dask scheduler answered at the given address (a ``ValueError`` too: bad input)."""


class _NotAScheduler(Exception):
    """A Dask server answered, but not a scheduler (a worker, a nanny)."""


class ClusterLost(RuntimeError):
    """The cluster has had no worker (or no answering scheduler) for longer than the timeout."""


def _one_line(error: BaseException) -> str:
    from .sweeps import one_line

    return one_line(error)


def describe_failure(error: BaseException) -> str:
    """One line for a point the cluster itself could not run, with what to do about it."""
    missing = next((e for e in (error, error.__cause__, error.__context__) if isinstance(e, ImportError)), None)
    if missing is not None:   # e.g. "Error during deserialization of the task graph", caused by this
        return (f"{_one_line(missing)} (on the Dask cluster: its scheduler and workers need depthlab and the module "
                "of the swept function installed, as on this machine)")
    if type(error).__name__ == "KilledWorker":
        return (f"{_one_line(error)} (the point killed every worker that ran it: a crash, or more memory than a "
                "worker has)")
    return _one_line(error)


def check_timeout(value, name: str = "no_workers_timeout") -> float:
    """A finite number of seconds > 0 (``TypeError``/``ValueError`` naming ``name`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__} {value!r}.")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}; e.g. {NO_WORKERS_TIMEOUT:g}.")
    return float(value)


def connect(client, timeout: float = CONNECT_TIMEOUT):
    """A ``dask.distributed.Client`` from a client or a scheduler address; ``(client, owned)``.

    For an address, a new ``Client`` of our own (``owned`` is True: the caller closes it); it
    is never made the default client, so neither the sweep nor the caller's code depends on
    which clients exist elsewhere in the process.

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
                            f"'tcp://127.0.0.1:8786', got {type(client).__name__} {client!r}.")
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
    except _NotAScheduler as error:
        raise SchedulerUnreachable(f"{address!r} is not a Dask scheduler's address: {error}. Give the scheduler's "
                                   "(the one its workers were started with; `dask scheduler` prints it as "
                                   "'Scheduler at:').") from None
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
    scheduler — e.g. a web server — on that port).
    """
    reply = scheduler_identity(address, timeout)
    if isinstance(reply, Mapping) and reply.get("type") not in (None, "Scheduler"):
        raise _NotAScheduler(f"a Dask {reply['type']} answers there")
    if not isinstance(reply, Mapping) or reply.get("type") != "Scheduler":
        raise ConnectionError(f"the server there is not a Dask scheduler (it answered {str(reply)[:80]!r})")


def scheduler_identity(address: str, timeout: float):
    """What the server at ``address`` answers to Dask's ``identity`` request, within ``timeout`` seconds.

    No Client is made: one connection, one request, one reply (a scheduler's holds ``type``
    "Scheduler" and ``n_workers``). It runs its own event loop in a thread, so it also works
    where a loop is already running (Jupyter).
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
        return thread.submit(asyncio.run, within_timeout()).result()


def worker_count(client, timeout: float = CONNECT_TIMEOUT) -> int | None:
    """How many workers the scheduler has now; None when it does not answer within ``timeout``."""
    if client.status not in ("running", "connecting"):
        return None
    try:
        info = client.sync(client.scheduler.identity, callback_timeout=timeout)
    except Exception:  # noqa: BLE001 - closed, refused, timed out: no answer is what matters
        return None
    if not isinstance(info, Mapping):
        return None
    count = info.get("n_workers")   # older schedulers list the workers only
    return count if isinstance(count, int) else len(info.get("workers") or ())


class _Watch:
    """Measures how long the cluster has been without a worker; raises :class:`ClusterLost` past the timeout."""

    def __init__(self, client, timeout: float):
        self.client, self.timeout = client, timeout
        self.address = getattr(getattr(client, "scheduler", None), "address", None) or "the scheduler"
        self.last_look = -math.inf
        self.alone_since = None       # when a look first found no worker (or no answer)

    def look(self, finished: int, total: int) -> None:
        started = time.monotonic()
        if started - self.last_look < CHECK_INTERVAL:
            return
        self.last_look = started
        count = worker_count(self.client, timeout=min(CONNECT_TIMEOUT, self.timeout))
        if count:
            self.alone_since = None
            return
        self.alone_since = self.alone_since if self.alone_since is not None else started
        if time.monotonic() - self.alone_since >= self.timeout:
            why, remedy = {None: ("the scheduler does not answer", "Check the scheduler (stopped? overloaded?)"),
                           0: ("it has no workers", f"Start workers (`dask worker {self.address}`)")}[count]
            raise ClusterLost(
                f"the Dask cluster at {self.address} has had no usable worker for {self.timeout:g} s ({why}); "
                f"stopped with {finished} of {total} point(s) finished. {remedy} and run the same sweep again to "
                "continue, or allow a longer wait (no_workers_timeout, --no-workers-timeout).")

    def lost_scheduler(self, finished: int, total: int) -> ClusterLost:
        return ClusterLost(
            f"lost the connection to the Dask scheduler at {self.address}; stopped with {finished} of {total} point(s) "
            "finished. Restart the scheduler and its workers, then run the same sweep again to continue.")


def run_points(execute, failed, task, pending: list, client, no_workers_timeout: float = NO_WORKERS_TIMEOUT
               ) -> Iterator[tuple[int, dict]]:
    """Yield ``(index, outcome)`` as the cluster finishes points.

    Parameters
    ----------
    execute : callable
        ``execute(task, point) -> outcome``, run on a worker.
    failed : callable
        ``failed(point, error) -> outcome`` for a point whose task itself failed on the
        cluster (e.g. ``KilledWorker``: the point killed every worker that ran it).
    task, pending
        The sweep's task and its ``[(index, point), ...]`` still to run.
    client : distributed.Client
    no_workers_timeout : float
        Seconds to wait while the cluster has no worker (or its scheduler does not answer).

    Raises
    ------
    ClusterLost
        No worker for ``no_workers_timeout`` seconds, or the scheduler was lost. Unfinished
        points are cancelled; those that finished were yielded.
    """
    from distributed import as_completed

    futures = {client.submit(execute, task, point, pure=False): (index, point) for index, point in pending}
    finished = 0
    watch = _Watch(client, no_workers_timeout)
    lost = False
    try:
        queue = as_completed(futures, loop=client.loop)   # this client's loop: no default client needed
        while not queue.is_empty():
            batch = queue.next_batch(block=False)
            if not batch:
                try:
                    watch.look(finished, len(futures))
                except ClusterLost:
                    lost = True
                    raise
                time.sleep(POLL)
                continue
            for future in batch:
                index, point = futures[future]
                try:
                    outcome = future.result()
                except CANCELLED:   # the client lost its scheduler and cancelled every future
                    lost = True
                    raise watch.lost_scheduler(finished, len(futures)) from None
                except Exception as error:  # noqa: BLE001 - e.g. KilledWorker: the point killed its workers
                    outcome = failed(point, error)
                finished += 1
                yield index, outcome
    finally:
        unfinished = [future for future in futures if not future.done()]
        if unfinished and not lost and client.status == "running":   # stop the rest (Ctrl-C, an error here)
            try:
                client.cancel(unfinished)
            except Exception:  # noqa: BLE001 - the scheduler may be gone: nothing left to cancel
                pass


def close(client, timeout: float = 2.0) -> None:
    """Close a client of our own, waiting at most ``timeout`` seconds for a scheduler that may be gone or hung.

    Quietly: closing a client whose scheduler is gone makes distributed log the cancelled
    reconnection, traceback and all, which would bury the sweep's own one-line message.
    """
    loggers = [logging.getLogger(name) for name in QUIET_WHILE_CLOSING]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        client.close(timeout=timeout)
    except Exception:  # noqa: BLE001 - a lost scheduler cannot say goodbye; the client is closed on our side
        pass
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
