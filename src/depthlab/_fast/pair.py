"""Two pieces of work at once: one on the calling thread, one on a second thread.

A probe of the seed notebook's network (50 layers of 80 on 1000 samples) is two passes of
small matrix products and elementwise maps; one thread leaves the second processor idle,
and OpenBLAS's own threads do not help products this small (80 × 80). Two halves of the
batch, each on its own thread with BLAS on one thread, use both (:mod:`depthlab.nn.halves`).
Measured on this project's 2-core machine: a forward and backward pass of that network,
GELU 168 → 122 ms, tanh 165 → 99.

While a pair runs, BLAS is held at one thread (threadpoolctl, process-wide): two threads
calling a two-thread OpenBLAS at once wait on each other (the same passes: 178 → 250 ms).
Without threadpoolctl, or on one processor, the pair runs one piece after the other.

A pair pays only in a process whose BLAS already runs on one thread (:func:`blas_on_one_thread`:
``make test``, ``depthlab explore``'s server, a sweep's workers): OpenBLAS's own threads spin
for a while after each product on more threads, on the processors the pair needs (measured: a
ReLU network's passes in halves 53 ms against 33 whole when the whole passes ran on two BLAS
threads just before, 32 against 48 with BLAS on one thread throughout).
"""
from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

_blas = {"holders": 0, "limiter": None, "controller": None}
_blas_lock = threading.Lock()


def two_processors() -> bool:
    """Whether this process may run on at least two processors."""
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except AttributeError:                       # not Linux
        return (os.cpu_count() or 1) >= 2


def _controller():
    """threadpoolctl's view of the loaded BLAS libraries (made once: ~50 ms), or None without it."""
    if _blas["controller"] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _blas["controller"] = False
        else:
            _blas["controller"] = ThreadpoolController()
    return _blas["controller"] or None


def blas_on_one_thread() -> bool:
    """Whether threadpoolctl is installed and every BLAS library it sees runs on one thread."""
    controller = _controller()
    return controller is not None and all(library.num_threads == 1 for library in controller.lib_controllers
                                          if library.user_api == "blas")


def parallel() -> bool:
    """Whether :func:`run_pair` runs its two pieces at once (two processors, and BLAS can be
    held at one thread)."""
    return two_processors() and _controller() is not None


@contextlib.contextmanager
def one_blas_thread():
    """BLAS at one thread while the block runs (nested and concurrent holders share one limit;
    the last to leave puts the earlier limits back)."""
    with _blas_lock:
        if _blas["holders"] == 0:
            controller = _controller()
            _blas["limiter"] = None if controller is None else controller.limit(limits=1, user_api="blas")
        _blas["holders"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas["holders"] -= 1
            if _blas["holders"] == 0 and _blas["limiter"] is not None:
                _blas["limiter"].restore_original_limits()
                _blas["limiter"] = None


def run_pair(first, second) -> None:
    """``first()`` on this thread and ``second()`` on another, at once where :func:`parallel`
    (BLAS held at one thread meanwhile), else one after the other. The second thread runs
    under this thread's NumPy error settings. Returns when both are done; an exception of
    either is raised here (the first's if both raise)."""
    if not parallel():
        first()
        second()
        return
    settings, failed = np.geterr(), []

    def other():
        try:
            with np.errstate(**settings):
                second()
        except BaseException as error:          # raised on the caller's thread below
            failed.append(error)

    with one_blas_thread():
        thread = threading.Thread(target=other, name="depthlab-second-half", daemon=True)
        thread.start()
        try:
            first()
        finally:
            _join(thread)
    if failed:
        raise failed[0]


def _join(thread: threading.Thread) -> None:
    """Wait for ``thread`` to end, through a Ctrl-C too (raised once it has ended): a piece left
    running could still be inside NumPy or SciPy's C++ code as the interpreter ends, which
    aborts the process."""
    interrupted = None
    while thread.is_alive():
        try:
            thread.join()
        except BaseException as error:       # KeyboardInterrupt: the piece ends in ~0.1 s
            interrupted = error
    if interrupted is not None:
        raise interrupted
