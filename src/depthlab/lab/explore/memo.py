"""Results kept by their arguments and computed once, even when several threads ask at once.

The explorer's server answers requests in a thread pool, and the page asks for a view, its
histogram and its phase diagram at the same moment. :class:`Memo` lets a view start the
theory it needs in the background (:meth:`Memo.start`) while the network is probed, and lets a
request that arrives while a result is being computed wait for it instead of computing it
again. Like ``functools.lru_cache`` it keeps the last ``size`` results; an exception is
raised to every caller that waited for it and is not kept.
"""
from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import Future


class Memo:
    """``function(*args)`` computed once per ``args`` (hashable), the last ``size`` kept."""

    def __init__(self, function, size: int):
        self.function = function
        self.size = size
        self.results: OrderedDict[tuple, Future] = OrderedDict()
        self.lock = threading.Lock()

    def __call__(self, *args):
        """The result for ``args``: kept, being computed (then waited for), or computed now."""
        future, owner = self._claim(args)
        if owner:
            self._compute(args, future)
        return future.result()

    def start(self, *args, via=None) -> Future:
        """Compute the result for ``args`` in a background thread, unless it is kept or on its
        way; the future of the result. With ``via``, the thread computes it as
        ``via(function, *args)`` (e.g. in another process: :meth:`.ahead.Helper.run`)."""
        future, owner = self._claim(args)
        if owner:
            thread = threading.Thread(target=self._compute, args=(args, future, via), daemon=True,
                                      name=f"depthlab-{getattr(self.function, '__name__', 'memo')}")
            _STARTED.add(thread)
            thread.start()
        return future

    def _claim(self, args) -> tuple[Future, bool]:
        with self.lock:
            future = self.results.get(args)
            if future is not None:
                self.results.move_to_end(args)
                return future, False
            future = self.results[args] = Future()
            future.set_running_or_notify_cancel()      # no caller can cancel what others wait for
            while len(self.results) > self.size:
                self.results.popitem(last=False)
            return future, True

    def _compute(self, args, future: Future, via=None) -> None:
        try:
            future.set_result(self.function(*args) if via is None else via(self.function, *args))
        except BaseException as error:     # handed to every caller; not kept
            with self.lock:
                if self.results.get(args) is future:
                    del self.results[args]
            future.set_exception(error)


_STARTED: weakref.WeakSet[threading.Thread] = weakref.WeakSet()   # the threads of every Memo.start


def join_started(deadline: float) -> None:
    """Wait, until ``deadline`` (time.monotonic()), for the threads that :meth:`Memo.start` started.

    They are daemon threads; one still inside a C++ library when the interpreter ends would
    abort the process: Python 3.11 ends a daemon thread that wants the GIL back with
    pthread_exit, whose unwinding through a C++ frame that allows no exception calls
    std::terminate ("terminate called without an active exception", SIGABRT; contourpy's
    contours and scipy.special's functions are C++)."""
    for thread in list(_STARTED):
        thread.join(max(0.0, deadline - time.monotonic()))
