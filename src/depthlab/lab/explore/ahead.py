"""Work done ahead of the page's asking, in a worker process that yields to the work asked for.

While the page is idle it names the states it expects to be asked for next (``/api/ahead``),
and the server computes their views so that the page's next change finds them kept. That
work must not slow what a hand asks for meanwhile (a typed seed, a menu choice no one could
foresee) nor the browser drawing it. A thread of the server's own process would: it shares the
interpreter's lock and BLAS's threads with the views asked for (measured, with the thread at
the lowest priority: a typed seed of a ReLU network 160 → 282 ms, of a tanh network 324 →
387). :class:`Helper` runs it in one worker process instead, which the server stops
(:meth:`Helper.pause`, SIGSTOP) while it computes a view asked for, and lets go on
(:meth:`Helper.resume`) when the page says it is idle again, or when a view asked for is the
one the worker is computing. A lowest-priority worker would not need stopping, but a view
asked for that waits on it would wait as long as anything else keeps the processors busy.
The process starts at the first piece of work and stops with the server.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path

LOWEST = 19           # nice: the lowest scheduling priority
# the worker's BLAS on one thread, as the server's (its probes then run in halves on two threads,
# depthlab.nn.halves, and no BLAS thread spins on the processor a view asked for needs)
BLAS_ON_ONE_THREAD = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def lower_priority() -> None:
    """Give the calling thread the lowest scheduling priority, where the system lets one
    thread lower its own (Linux; elsewhere nothing changes). Threads it starts inherit it."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST)


class WorkerDied(RuntimeError):
    """The worker process ended (killed, out of memory) before it answered."""


class Helper:
    """One worker process, ``python -m depthlab.lab.explore.ahead`` (started by the first
    :meth:`run`), that computes ``function(*args)`` for module-level functions and picklable
    arguments, one at a time, and can be paused.

    Not multiprocessing: its "spawn" start runs the parent's main script again in the child,
    so a user's script that calls ``dl.explore()`` without a ``__main__`` guard would start a
    second explorer. The two processes speak pickle through the worker's stdin and a private
    copy of its stdout (its ``print`` goes to stderr).
    """

    def __init__(self):
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._paused = False                 # held by pause() until resume(), also for work sent meanwhile
        self._signals = threading.Lock()     # a pause and the start of a piece of work, one after the other

    def run(self, function, *args):
        """``function(*args)``, computed in the worker process (the caller waits; callers take
        turns; while the worker is paused, the work waits in its input until :meth:`resume`).
        Its exception is raised here; a worker that died raises :class:`WorkerDied`, and the
        next call starts another."""
        request = pickle.dumps((function, args))        # what does not pickle is the caller's error
        with self._lock:
            with self._signals:
                process = self._process
                if process is None or process.poll() is not None:
                    process = self._process = _start_worker()
                    if self._paused:                     # a new worker starts paused too
                        self._signal(getattr(signal, "SIGSTOP", None))
            try:
                process.stdin.write(request)
                process.stdin.flush()
                done, result = pickle.load(process.stdout)
            except Exception as error:                   # it ended, or its answer cannot be read: a new one next time
                self._process = None
                with contextlib.suppress(OSError):
                    process.kill()
                raise WorkerDied(f"the look-ahead's worker process ended ({type(error).__name__})") from None
        if not done:
            raise result
        return result

    def pause(self) -> None:
        """Stop the worker where it is (a signal: POSIX only; elsewhere it goes on), until
        :meth:`resume`; work sent meanwhile waits too."""
        with self._signals:
            self._paused = True
            self._signal(getattr(signal, "SIGSTOP", None))

    def resume(self) -> None:
        """Let a paused worker go on."""
        with self._signals:
            self._paused = False
            self._signal(getattr(signal, "SIGCONT", None))

    def _signal(self, number) -> None:
        process = self._process
        if number is not None and process is not None and process.returncode is None:
            with contextlib.suppress(OSError):           # it has just ended
                process.send_signal(number)

    def stop(self) -> None:
        """Stop the worker process; the next :meth:`run` starts another."""
        self.resume()
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()           # the worker ends at the end of its input
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()


def _start_worker() -> subprocess.Popen:
    package_root = str(Path(__file__).resolve().parents[3])       # where `import depthlab` finds this copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
           **BLAS_ON_ONE_THREAD}
    # its own process group, so the terminal's Ctrl-C is the server's alone; not its own session,
    # which Linux would schedule as a group of its own, as much as the server's whole session
    apart = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if sys.platform == "win32"
             else {"process_group": 0})
    return subprocess.Popen([sys.executable, "-m", "depthlab.lab.explore.ahead"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, **apart)


def serve() -> None:
    """The worker's loop: read ``(function, args)``, write ``(True, result)`` or ``(False, exception)``,
    until its input ends."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")     # the protocol's own copy of stdout
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())            # a print in the work goes to stderr
    requests = sys.stdin.buffer
    while True:
        try:
            function, args = pickle.load(requests)
        except EOFError:
            return
        try:
            answer = (True, function(*args))
        except Exception as error:
            answer = (False, error)
        try:
            message = pickle.dumps(answer)
        except Exception as error:          # an answer that does not pickle
            message = pickle.dumps((False, RuntimeError(f"{type(error).__name__}: {error}")))
        answers.write(message)
        answers.flush()


if __name__ == "__main__":
    serve()
