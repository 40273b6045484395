"""What ``fit`` shows while it trains, and how it lets Ctrl-C end training cleanly.

``verbose=1`` draws a tqdm bar per epoch with the running loss and metrics, replaced by the
epoch's final line (tqdm is the optional 'lab' extra; without it, lines), ``verbose=2``
prints one line per epoch, ``0`` nothing; all on stderr. :class:`DeferredInterrupt` turns a first Ctrl-C into a request that
the training loop honours after the current step.
"""
from __future__ import annotations

import numbers
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping

from .._checks import optional


# ----------------------------------------------------------------------------- progress output

def format_logs(logs: Mapping) -> str:
    return " - ".join(f"{name}: {value:.4g}" if isinstance(value, numbers.Real) else f"{name}: {value}"
                      for name, value in logs.items())


class EpochLines:
    """verbose=2 (or 1 without tqdm): one line per epoch on stderr."""

    def __init__(self, epochs: int, steps: int):
        self.epochs = epochs

    def begin(self, epoch: int) -> None:
        self.start = time.perf_counter()

    def advance(self, running) -> None:
        """Per-batch update (lines print nothing per batch)."""

    def end(self, epoch: int, logs: Mapping) -> None:
        seconds = time.perf_counter() - self.start
        print(f"Epoch {epoch + 1}/{self.epochs} - {seconds:.2f}s - {format_logs(logs)}", file=sys.stderr)

    def close(self) -> None:
        """Nothing to release."""


class ProgressBar:
    """verbose=1: a tqdm bar per epoch with the running loss and metrics, and the epoch's
    final line, which stays.

    The bar appears once the epoch has run for ``DELAY`` seconds and is redrawn at most every
    ``DELAY`` seconds: a bar replaced sooner could not be read. An epoch shorter than that
    makes no bar at all, only its final line (``tqdm.format_meter``), and so costs almost
    nothing per batch (an MNIST-1D epoch of 40 batches lasts a few milliseconds).
    """

    DELAY = 0.1

    def __init__(self, tqdm, epochs: int, steps: int):
        self.tqdm, self.epochs, self.steps = tqdm, epochs, steps
        self.bar, self.in_epoch = None, False

    def begin(self, epoch: int) -> None:
        self.desc, self.done, self.bar, self.in_epoch = f"Epoch {epoch + 1}/{self.epochs}", 0, None, True
        self.start = self.last = time.perf_counter()

    def advance(self, running) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self.last < self.DELAY:
            return
        self.last = now
        if self.bar is None:  # leave=False: at the end the final line takes its place
            self.bar = self.tqdm(total=self.steps, initial=self.done, desc=self.desc, unit="batch", file=sys.stderr,
                                 leave=False, dynamic_ncols=True, mininterval=0, smoothing=0,
                                 postfix=format_logs(running()))
        else:
            self.bar.set_postfix_str(format_logs(running()), refresh=False)
            self.bar.update(self.done - self.bar.n)

    def end(self, epoch: int, logs: Mapping) -> None:
        self._finish(format_logs(logs))

    def close(self) -> None:
        """After Ctrl-C (or an error): the line of the epoch so far."""
        if self.in_epoch:
            self._finish(None)

    def _finish(self, postfix: str | None) -> None:
        elapsed, self.in_epoch = time.perf_counter() - self.start, False
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        stream = sys.stderr
        line = self.tqdm.format_meter(self.done, self.steps, elapsed, ncols=_terminal_width(stream), prefix=self.desc,
                                      ascii=not _can_encode(stream, "█"), unit="batch", postfix=postfix)
        print(line, file=stream)


def _terminal_width(stream) -> int | None:
    """The width of the terminal ``stream`` writes to; None when it is not a terminal."""
    try:
        return os.get_terminal_size(stream.fileno()).columns if stream.isatty() else None
    except (AttributeError, OSError, ValueError):
        return None


def _can_encode(stream, text: str) -> bool:
    """Whether ``stream``'s encoding can write ``text`` (the bar's block characters)."""
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def progress_display(verbose: int, epochs: int, steps: int):
    if verbose == 0:
        return None
    if verbose == 1:
        package = optional("tqdm")  # the optional 'lab' extra; without it, lines
        if package is not None:
            return ProgressBar(package.tqdm, epochs, steps)
    return EpochLines(epochs, steps)


# ----------------------------------------------------------------------------- Ctrl-C

class DeferredInterrupt:
    """While active (main thread only), a first Ctrl-C sets ``requested``; a second raises.

    The code inside checks ``requested`` at points where stopping leaves a consistent state
    (``fit``: between steps) and ends there; :meth:`honour` raises the deferred
    ``KeyboardInterrupt`` after the block. Outside the main thread, or when SIGINT already has
    a handler other than Python's default, nothing is deferred.

    >>> with DeferredInterrupt() as interrupt:
    ...     write_every_file()          # Ctrl-C here waits for the files to be written
    >>> interrupt.honour()
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False

    def honour(self) -> None:
        """Raise the ``KeyboardInterrupt`` a Ctrl-C asked for while the block ran, if any."""
        if self.requested:
            raise KeyboardInterrupt
