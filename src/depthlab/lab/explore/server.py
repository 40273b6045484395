"""Serving the explorer: ``depthlab explore`` (foreground, uvicorn) and ``dl.explore()`` (Jupyter).

Both run the same Starlette application (:func:`depthlab.lab.explore.app.create_app`) with
uvicorn on a socket bound here, so a free port is known before the URL is printed.
"""
from __future__ import annotations

import asyncio
import logging
import numbers
import signal
import socket
import sys
import threading
import time
import urllib.parse
import warnings
from dataclasses import dataclass

from ..._fast import pair
from .state import KEYS, StateError, parse

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
EXTRA_HINT = "pip install 'depthlab[web]'"


class MissingExtra(ImportError):
    """The 'web' extra (starlette, uvicorn, plotly, contourpy) is not installed."""


def require_web() -> None:
    """Import the web extra's packages, or say which extra to install."""
    missing = []
    for module in ("starlette", "uvicorn", "plotly", "contourpy"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingExtra(f"the explorer needs {', '.join(missing)} (the 'web' extra): {EXTRA_HINT}")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one.

    Made with its protocol named (IPPROTO_TCP), as asyncio makes its own: asyncio turns off
    Nagle's algorithm (TCP_NODELAY) only on connections whose socket says TCP, and with it on,
    a response written in two pieces (uvicorn writes the headers, then the body) waits for the
    client's delayed acknowledgement of the first: ~40 ms added to every request."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    return sock


def url_of(sock: socket.socket, host: str, query: str = "") -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else shown
    return f"http://{shown}:{port}/" + (f"?{query}" if query else "")


def make_server(sock: socket.socket):
    """A uvicorn server for the explorer's app (quiet: warnings only)."""
    import uvicorn

    from .app import create_app

    from . import compute

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            # at the signal, before uvicorn waits for the requests under way: a look-ahead paused
            # by a view would keep its request (and so the shutdown) waiting
            compute.HELPER.resume()
            self.config.app.state.jobs.stop_all()
            super().handle_exit(sig, frame)

    # lifespan off: a second Ctrl-C (uvicorn's force exit) cancels the lifespan task, which uvicorn
    # logs with a traceback; what the app's lifespan would stop is stopped by stop_work
    config = uvicorn.Config(create_app(), log_level="warning", access_log=False, lifespan="off")
    server = Server(config)
    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _CancelledByShutdown) for f in error_log.filters):
        error_log.addFilter(_CancelledByShutdown())
    return server


class _CancelledByShutdown(logging.Filter):
    """Drops uvicorn's report of a request cancelled by a forced shutdown (a second Ctrl-C): the
    request was abandoned on purpose, and its traceback is no error of the user's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def stop_work(server) -> None:
    """Stop the training jobs of ``server``'s app (at their next step; None: a server not made,
    whose app may have started warming the theory), the look-ahead's worker process (after the
    view it is computing) and the background computing, and wait for them (a few seconds at
    most; see :func:`.compute.stop_background`)."""
    from . import compute

    if server is not None:
        server.config.app.state.jobs.stop_all(wait=10.0)
    compute.HELPER.stop()
    compute.stop_background()


# ----------------------------------------------------------------------------- the command

def configure_cli(parser) -> None:
    parser.add_argument("--port", type=_port, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--host", default=None,
                        help="address to bind (default 127.0.0.1: this machine only; anything else warns)")
    parser.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")


def _port(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0-65535 (0: a free port), got {value}")
    return value


def cli_main(args) -> int:
    """``depthlab explore``: print the URL, open a browser, serve until Ctrl-C (exit 130; SIGTERM 143)."""
    from ..cli import PROG, UsageError

    try:
        require_web()
    except MissingExtra as error:
        raise UsageError(f"{PROG} explore: {error}") from None
    try:
        host = host_name(args.host, "--host") if args.host is not None else "127.0.0.1"
    except ValueError as error:
        raise UsageError(f"{PROG} explore: {error}") from None
    if args.host is not None and host not in LOCAL_HOSTS:
        print(f"{PROG} explore: warning: serving on {host}: anyone who can reach this machine on port "
              f"{args.port or '(free)'} can use the explorer (and its CPU). Use --host 127.0.0.1 to keep it local.",
              file=sys.stderr)
    try:
        sock = bind(host, args.port)
    except OSError as error:
        raise UsageError(f"{PROG} explore: cannot listen on {host}:{args.port}: {error.strerror or error}") from None
    url = url_of(sock, host)
    server = opener = None
    signals = _StopSignals()
    try:              # from here on a Ctrl-C stops what the app has started (it warms the theory at once)
        with signals:
            server = signals.server = make_server(sock)
            print(f"depthlab explore: serving on {url} (Ctrl-C stops it)", flush=True)
            if not args.no_browser:
                import webbrowser

                opener = threading.Timer(0.5, webbrowser.open, args=(url,))
                opener.daemon = True      # a Ctrl-C within 0.5 s neither opens a stopped page nor waits for it
                opener.start()
            if signals.received is None:  # a signal from now on reaches the server
                with pair.one_blas_thread():  # the probes run in halves on two threads (depthlab.nn.halves)
                    server.run(sockets=[sock])      # uvicorn shuts down cleanly on SIGINT/SIGTERM
    except KeyboardInterrupt:             # raised by code, not by a signal (see _StopSignals)
        signals.received = signals.received or signal.SIGINT
    finally:
        if opener is not None:
            opener.cancel()
        sock.close()
        stop_work(server)                 # a second Ctrl-C meanwhile interrupts it as usual
    print(f"{PROG} explore: stopped", file=sys.stderr, flush=True)
    return 128 + signals.received if signals.received else 0


class _StopSignals:
    """SIGINT and SIGTERM, while the command serves, as a request to stop: never an exception.

    Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread happens to be;
    raised in a weakref callback or a ``__del__`` (as the server starts, collecting garbage), it
    is printed and dropped, and the server would serve on. This handler only records the signal
    and tells the server (:meth:`uvicorn.Server.handle_exit`) — before the server runs too, when
    it then stops as soon as it has started. While the server runs, uvicorn's handler takes over,
    then gives back this one and raises the signal again, which lands here. Leaving the block
    puts the previous handlers back."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None      # the first signal's number
        self.server = None
        self._previous: dict = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def _handle(self, number: int, frame) -> None:
        self.received = self.received or number
        if self.server is not None and not self.server.should_exit:
            self.server.handle_exit(number, frame)

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


# ----------------------------------------------------------------------------- Jupyter

@dataclass
class Explorer:
    """A running explorer; displays inline in Jupyter (an iframe) and stops with :meth:`stop`."""

    url: str
    height: int = 1100
    _server: object = None
    _thread: threading.Thread | None = None

    def _repr_html_(self) -> str:
        return (f'<iframe src="{self.url}" width="100%" height="{self.height}" style="border:1px solid #ddd">'
                f'</iframe><p><a href="{self.url}" target="_blank">open the explorer in a new tab</a></p>')

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Explorer({self.url!r}, {state})"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server thread (finished training jobs are dropped)."""
        if self._server is not None:
            self._server.should_exit = True
            stop_work(self._server)
        if self._thread is not None:
            self._thread.join(timeout)


_RUNNING: dict[tuple, Explorer] = {}


def _checked_place(port, host, height) -> tuple[int, str, int]:
    """explore()'s port (0-65535), host (an address) and frame height (pixels), or a TypeError/ValueError."""
    for name, value in (("port", port), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"explore() {name} must be an int, got {type(value).__name__} {value!r}.")
    if not 0 <= port <= 65535:
        raise ValueError(f"explore() port must be in 0-65535 (0: a free port), got {port}.")
    if not 100 <= height <= 100_000:
        raise ValueError(f"explore() height must be between 100 and 100000 pixels, got {height}.")
    return int(port), host_name(host, "explore() host"), int(height)


def host_name(host, what: str) -> str:
    """An address to bind: a non-empty string; IPv6 may come in brackets ("[::1]")."""
    if not isinstance(host, str):
        raise TypeError(f"{what} must be a string such as '127.0.0.1', got {type(host).__name__} {host!r}.")
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if not name:
        raise ValueError(f"{what} must name an address, e.g. '127.0.0.1' (this machine only) or '0.0.0.0' "
                         f"(every interface), got {host!r}.")
    return name


def explore(*, port: int = 0, host: str = "127.0.0.1", height: int = 1100, **state) -> Explorer:
    """Start the explorer in a background thread and return it; in Jupyter it shows inline.

    Parameters
    ----------
    port : int, default 0
        TCP port; 0 picks a free one. A second call with the same host and port 0 reuses the
        running server.
    host : str, default "127.0.0.1"
        Address to bind (keep the default unless the notebook runs on another machine; any
        other address warns, as ``depthlab explore --host`` does).
    height : int
        Height of the inline frame in pixels.
    **state
        The starting view, with the keys of ``depthlab probe``'s flags, e.g.
        ``dl.explore(depth=50, width=80, activation="tanh", init="normal", sigma2=0.0125)``.

    Returns
    -------
    Explorer
        ``.url`` the link of this view; ``.stop()`` ends the server.

    Raises
    ------
    ImportError
        Without the 'web' extra (``pip install 'depthlab[web]'``).
    ValueError
        For a state value the explorer refuses (the message names the key), a port outside
        0-65535, or an address that cannot be listened on (a port in use, an unknown host).
    TypeError
        For an unknown state key, or a port, host or height of the wrong type.
    """
    port, host, height = _checked_place(port, host, height)
    if host not in LOCAL_HOSTS:
        warnings.warn(f"explore(): serving on {host}: anyone who can reach this machine can use the explorer (and its "
                      "CPU). Keep host='127.0.0.1' unless the notebook runs on another machine.", UserWarning,
                      stacklevel=2)
    require_web()
    unknown = sorted(set(state) - set(KEYS))
    if unknown:
        raise TypeError(f"explore() got an unexpected keyword {unknown[0]!r}; valid: {', '.join(KEYS)}.")
    query_values = {key: str(value) for key, value in state.items()}
    try:
        parse(query_values)
    except StateError as error:
        raise ValueError(str(error)) from None
    query = urllib.parse.urlencode(query_values)
    key = (host, port)
    running = _RUNNING.get(key)
    if port and (running is None or not running.running):      # the port a free-port server got
        running = next((e for (h, _), e in _RUNNING.items()
                        if h == host and e.running and urllib.parse.urlsplit(e.url).port == port), None)
    if running is None or not running.running:
        try:
            sock = bind(host, port)
        except OSError as error:
            raise ValueError(f"explore() cannot listen on {host}:{port}: {error.strerror or error}. Pass port=0 for a "
                             "free port, or another host.") from None
        server = make_server(sock)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="depthlab-explore",
                                  daemon=True)
        thread.start()
        deadline = time.monotonic() + 10.0
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        running = Explorer(url_of(sock, host), height, server, thread)
        _RUNNING[key] = running
    base = running.url.split("?")[0]
    return Explorer(base + (f"?{query}" if query else ""), height, running._server, running._thread)
