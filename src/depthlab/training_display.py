"""What ``fit`` shows while it trains, and how it lets Ctrl-C end training cleanly.

``verbose=1`` draws a tqdm bar per epoch with the running loss and metrics (tqdm is the
optional 'lab' extra; without it, lines), ``verbose=2`` prints one line per epoch, ``0``
nothing; all on stderr. :class:`DeferredInterrupt` turns a first Ctrl-C into a request that
the training loop honours after the current step.
"""
from __future__ import annotations

import numbers
import signal
import sys
import threading
import time
from collections.abc import Mapping


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
    ``DELAY`` seconds: a bar that would be replaced sooner could not be read. An epoch
    shorter than that prints only its final line, and does not pay for drawing a bar at
    its start (about 0.1 ms a draw, 1–2% of an MNIST-1D epoch of 40 batches).
    """

    DELAY = 0.1

    def __init__(self, tqdm, epochs: int, steps: int):
        self.tqdm, self.epochs, self.steps = tqdm, epochs, steps
        self.bar = None

    def begin(self, epoch: int) -> None:
        # leave=False: the bar is cleared at the end and the final line printed in its place
        # (a bar never drawn leaves nothing to clear); smoothing=0: the rate is the epoch's average
        self.bar = self.tqdm(total=self.steps, desc=f"Epoch {epoch + 1}/{self.epochs}", unit="batch",
                             file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=self.DELAY,
                             delay=self.DELAY, smoothing=0)
        self.last = time.perf_counter()

    def advance(self, running) -> None:
        self.bar.update(1)
        now = time.perf_counter()
        if now - self.last >= self.DELAY:
            self.last = now
            self.bar.set_postfix_str(format_logs(running()), refresh=False)

    def end(self, epoch: int, logs: Mapping) -> None:
        self.bar.set_postfix_str(format_logs(logs), refresh=False)
        self.close()

    def close(self) -> None:
        """Replace the bar by its final line (also after Ctrl-C: the epoch so far)."""
        if self.bar is not None:
            bar, self.bar = self.bar, None
            line = str(bar)
            bar.close()
            print(line, file=bar.fp)


def progress_display(verbose: int, epochs: int, steps: int):
    if verbose == 0:
        return None
    if verbose == 1:
        try:
            from tqdm import tqdm
        except ImportError:  # the optional 'lab' extra is missing: fall back to lines
            tqdm = None
        if tqdm is not None:
            return ProgressBar(tqdm, epochs, steps)
    return EpochLines(epochs, steps)


# ----------------------------------------------------------------------------- Ctrl-C

class DeferredInterrupt:
    """While active (main thread only), a first Ctrl-C sets ``requested``; a second raises."""

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
