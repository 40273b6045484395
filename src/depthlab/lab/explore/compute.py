"""What the explorer shows, computed by the real network (dl.MLP, dl.probe) and by dl.theory.

Every function here takes a checked :class:`~depthlab.lab.explore.state.State` and returns
plain JSON-ready data (non-finite numbers become ``None``). The web layer only moves it.
"""
from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

import numpy as np

from ..._fast import pair
from ...nn import activations
from ...signal import theory
from .. import probe_network
from .ahead import Helper, WorkerDied, lower_priority
from .memo import Memo, join_started
from .pool import NetworkPool
from .state import CAPS, State, StateError

HISTOGRAM_BINS = 40
PHASE_POINTS = 100                 # the phase diagram is PHASE_POINTS × PHASE_POINTS


def _finite(value):
    """A JSON number, or None for NaN/±inf."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _finite_list(values) -> list:
    return [_finite(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


# ----------------------------------------------------------------------------- the network

def build_network(state: State, in_features: int, out_features: int, rng):
    """The state's network, as ``depthlab probe`` builds it (:func:`depthlab.lab.probe_network.build`):
    an MLP of ``depth`` hidden layers, or a residual network of ``depth`` blocks."""
    return probe_network.build(depth=state.depth, width=state.width, activation=state.activation,
                               init="normal" if state.init == "normal" else state.weight_init, sigma2=state.sigma2,
                               bias_variance=state.bias_variance, block=state.block, norm=state.norm,
                               residual_scale=state.residual_scale, in_features=in_features,
                               out_features=out_features, rng=rng)


def network_and_input(state: State):
    """The network and its input batch, as ``depthlab probe`` makes them (same seed, same numbers)."""
    rng = np.random.default_rng(state.seed)
    try:
        net = build_network(state, state.in_features, 1, rng)
    except (ValueError, TypeError) as error:
        raise StateError(" ".join(str(error).split())) from None
    return net, rng.standard_normal((state.samples, state.in_features))


# the networks the views and histograms probe, kept by shape so that their arrays are reused
# (numbers held: 24M float64, 192 MB: a 50×80 network probed on 1000 samples holds 12M, and
# the one its histograms run forward 8M)
NETWORKS = NetworkPool(budget=24_000_000)
# a state's network as built (read only), shared by its view and its histograms (the page asks
# for one as soon as the view has come); only networks of up to SHARED_PARAMETERS parameters
# (32 MB) are kept
_BUILT = Memo(network_and_input, 2)
SHARED_PARAMETERS = 4_000_000
# Every initialization but "critical" draws the same parameters and input whatever the activation
# (tested for every scheme and architecture), and every activation layer of these networks
# computes the state's activation: such states share the network built for BUILT_ACTIVATION,
# and the network lent to them is given their activation (an activation switch builds nothing).
BUILT_ACTIVATION = "relu"


def built_network(state: State):
    """(the network built for ``state``'s parameters and input, the input): ``state``'s own, or
    with an activation-free initialization the one built for :data:`BUILT_ACTIVATION`."""
    return _BUILT(state if state.init == "critical" else replace(state, activation=BUILT_ACTIVATION))


# arrays of (depth + 1) · width · samples numbers (about) that a network keeps after each use
KEPT_ARRAYS = {"probe": 3, "forward": 2}          # f, h and dL/df of every layer; f and h


def network_size(state: State) -> tuple[int, int]:
    """(parameters, about the numbers of one array of every layer's outputs on the batch)."""
    layers, w = state.linear_layers, state.width
    per_layer = 2 if state.norm != "none" else 1          # a normalization layer keeps its own outputs
    return (layers - 2) * w * w + (state.in_features + layers) * w + 1, per_layer * layers * w * state.samples


@contextlib.contextmanager
def lend_network(state: State, purpose: str):
    """``with lend_network(state, purpose) as (net, x)``: the state's network and input (a fresh
    build's numbers, in a kept network of the same shape whose arrays are reused; see
    :mod:`.pool`). Each purpose ("probe", "forward") keeps its own networks: a view and a
    histogram of the same state may run at the same time."""
    parameters, cells = network_size(state)
    size = parameters + KEPT_ARRAYS[purpose] * cells
    shared = parameters <= SHARED_PARAMETERS
    source, x = built_network(state) if shared else network_and_input(state)
    family = (purpose, state.width, state.in_features, state.samples, state.block, state.norm)  # same arrays per layer
    kin = (*family, state.depth, state.residual_scale)                                       # all but the activation
    shape = (*kin, state.activation)
    with NETWORKS.lend(shape, source, size, shared=shared, family=family, kin=kin,
                       activation=activations.get(state.activation)) as net:
        yield net, x


def probe(net, x):
    """``dl.probe(net, x)``, its refusals (and an overflow it does not catch) as :class:`StateError`.
    Without parameter gradients (the page shows none): every number the page shows is the same."""
    import depthlab as dl

    try:
        return dl.probe(net, x, parameter_grads=False)
    except (ValueError, TypeError) as error:
        raise StateError(" ".join(str(error).split())) from None
    except ArithmeticError as error:      # a sum of squares beyond float64 (e.g. residual_scale=1e300)
        raise StateError(f"the network's numbers leave float64's range ({type(error).__name__}: "
                         f"{' '.join(str(error).split())}); use a smaller residual_scale, sigma2 or bias_variance.") from None


# σ_w² = fan_in · Var(Ω) of each named scheme on a square hidden layer (PyTorch's gains)
NOMINAL_WEIGHT_VARIANCE = {
    "he_normal": 2.0, "he_uniform": 2.0,               # kaiming, a = 0: gain² = 2
    "xavier_normal": 1.0, "xavier_uniform": 1.0,       # 2 / (fan_in + fan_out) · fan_in
    "lecun_normal": 1.0, "lecun_uniform": 1.0,
    "orthogonal": 1.0,                                 # orthonormal rows: Var(Ω) = 1 / fan_in
    "zeros": 0.0,
}


def weight_variance(state: State) -> float:
    """σ_w² = fan_in · Var(Ω) of the hidden-to-hidden layers that the state's init draws from."""
    if state.init == "normal":
        return state.width * state.sigma2
    if state.init == "critical":
        return _critical_weight_variance(state.activation)
    return NOMINAL_WEIGHT_VARIANCE[state.init]


@functools.lru_cache(maxsize=None)
def _critical_weight_variance(activation: str) -> float:
    """dl.theory.critical_weight_variance at σ_b² = 0, once per activation (a root search: ~40 ms)."""
    return float(theory.critical_weight_variance(activation, 0.0))


def rows(state: State) -> int:
    """How many rows a view has: the Linear layers f_0 … f_depth of a plain MLP, else the
    top-level layers (blocks) of the network."""
    if state.plain:
        return state.depth + 1
    return len(built_network(state)[0].layers)


def check_layer(state: State, layer: int) -> int:
    """``layer`` if the state's network has that row (0 … rows − 1), else a StateError."""
    last = rows(state) - 1
    if not 0 <= layer <= last:
        what = f"f_0 … f_{last}" if state.plain else "its blocks"
        raise StateError(f"layer must be between 0 and {last} ({what}), got {layer}.")
    return layer


def histogram(state: State, layer: int, bins: int = HISTOGRAM_BINS) -> dict:
    """Histograms of f_k and h_{k+1} = a[f_k] at layer k over the batch, as np.histogram bins them.

    The page asks for one layer at a time, after the view (the network it built is shared, and
    run forward once more here while the page draws the view), so a view does not wait for the
    histograms of layers nobody looks at.

    Returns ``{"layer": k, "preactivation": {"counts", "edges"}, "activation": {...},
    "seconds": ...}``: ``bins`` counts and ``bins + 1`` edges each, over the finite values.
    The last 256 are kept, as views are.
    """
    started = time.perf_counter()
    with LOOK_AHEAD.asked(None), pair.one_blas_thread():
        data = dict(_histogram_of_layer(state.without_training(), check_layer(state, layer), bins))
    data["seconds"] = time.perf_counter() - started
    return data


@functools.lru_cache(maxsize=256)
def _histogram_of_layer(state: State, layer: int, bins: int) -> dict:
    with lend_network(state, "forward") as (net, x):
        trace = net.forward(x, record=True, allow_nonfinite=True)
        if state.plain:
            outputs = trace.activations[1:] + [trace.output]
            out = _layer_histograms(state, net, layer, trace.preactivations[layer], outputs[layer], bins)
        else:
            inputs = [x] + trace.layer_outputs[:-1]
            out = _layer_histograms(state, net, layer, inputs[layer], trace.layer_outputs[layer], bins)
        del trace                                   # the network's arrays are free for the next pass
    return out


def _layer_histograms(state: State, net, layer: int, first: np.ndarray, second: np.ndarray, bins: int) -> dict:
    """Row ``layer``'s two histograms: f_k and h_{k+1} = a[f_k] of a plain MLP, a block's input and
    output otherwise."""
    out = {"layer": layer}
    if state.plain:
        out["names"] = [f"f_{layer}", f"h_{layer + 1} = a[f_{layer}]"]
    else:
        out["names"] = [f"input of block {layer}", f"output of block {layer} ({net.layers[layer]!r})"[:60]]
    for kind, values in (("preactivation", first), ("activation", second)):
        counts, edges = _histogram(values, bins)
        out[kind] = {"counts": [int(c) for c in counts], "edges": _finite_list(edges)}
    return out


def _report_histograms(state: State, net, x: np.ndarray, report, layer: int) -> dict:
    """:func:`_histogram_of_layer` from a probe report's arrays (the view's own pass: no second one)."""
    if state.plain:
        first, second = report.values("preactivation", layer), report.values("activation", layer)
    else:
        first = x if layer == 0 else report.values("output", layer - 1)
        second = report.values("output", layer)
    return _layer_histograms(state, net, layer, first, second, HISTOGRAM_BINS)


def _histogram(values: np.ndarray, bins: int):
    """np.histogram of the finite values; where they are equal to rounding (np.histogram then
    cannot make ``bins`` distinct edges, e.g. a saturated sigmoid), over a range widened to
    1e-9 of their size; where their range exceeds float64 (±1e308 in one layer), of their
    halves with the edges doubled (both exact)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = np.isfinite(values)
    if not finite.all():
        values = values[finite]
    if not values.size:
        return np.histogram(values, bins=bins)
    low, high = float(values.min()), float(values.max())
    if math.isinf(high - low):   # a range beyond float64: halves (exact), edges doubled
        counts, edges = _chunked_histogram(values * 0.5, bins, (0.5 * low, 0.5 * high))
        return counts, edges * 2.0
    try:
        return _chunked_histogram(values, bins, (low, high))
    except ValueError:
        pass
    spread = 1e-9 * max(abs(low), abs(high), 1e-300)
    if high - low < spread:
        low, high = low - spread, high + spread
    return _chunked_histogram(values, bins, (low, high))


HISTOGRAM_CHUNK = 8192     # values per np.histogram call: its temporaries stay in malloc's free lists


def _chunked_histogram(values: np.ndarray, bins: int, span: tuple):
    """``np.histogram(values, bins, range=span)``, counted a chunk at a time into the same
    edges (the same counts, each value binned alike).
    One call makes temporaries of the whole array's size, which malloc maps afresh on every
    call (a page fault per 4 KiB: ~4 ms for a layer of 80 000 values on this kind of machine)."""
    counts, edges = np.histogram(values[:HISTOGRAM_CHUNK], bins=bins, range=span)
    for start in range(HISTOGRAM_CHUNK, values.size, HISTOGRAM_CHUNK):
        counts += np.histogram(values[start:start + HISTOGRAM_CHUNK], bins=bins, range=span)[0]
    return counts, edges


# ----------------------------------------------------------------------------- the theory

def mean_field(activation: str, sw2: float, sb2: float) -> dict:
    """χ₁, q*, c*, ξ_q, ξ_c and the phase at (σ_w², σ_b²); a note where the theory refuses.

    Computed once per (activation, σ_w², σ_b²) (the last 256 kept), also when a view has
    started it in the background.
    """
    return _MEAN_FIELD(activation, sw2, sb2)


def _mean_field(activation: str, sw2: float, sb2: float) -> dict:
    out = {"sigma_w2": sw2, "sigma_b2": sb2, "chi1": None, "q_star": None, "c_star": None,
           "xi_q": None, "xi_c": None, "phase": None, "note": None}
    if sw2 <= 0:                       # all-zero weights: no signal, nothing to predict
        out.update(phase="dead", note="σ_w² = 0: every weight is zero, the signal dies at the first layer.")
        return out
    try:
        scales = theory.depth_scales(activation, sw2, sb2)
    except theory.NoFixedPointError:
        out["q_star"], out["phase"] = None, "explodes"
        out["note"] = "no finite fixed point q*: the variance grows without bound with depth."
        try:
            out["chi1"] = _finite(theory.chi1(activation, sw2, sb2))
        except ValueError:
            pass
        return out
    except ValueError as error:
        out["note"] = " ".join(str(error).split())
        try:
            out["chi1"] = _finite(theory.chi1(activation, sw2, sb2))
        except ValueError:
            return out
        out["phase"] = _phase(out["chi1"])
        return out
    out.update(chi1=_finite(scales.chi1), q_star=_finite(scales.q_star), c_star=_finite(scales.c_star),
               xi_q=_finite(scales.xi_q), xi_c=_finite(scales.xi_c), phase=_phase(scales.chi1))
    if scales.xi_c == math.inf:
        out["xi_c_infinite"] = True
    if scales.xi_q == math.inf:
        out["xi_q_infinite"] = True
    return out


_MEAN_FIELD = Memo(_mean_field, 256)


def _phase(chi: float | None) -> str | None:
    if chi is None:
        return None
    return "critical" if abs(chi - 1.0) <= 1e-9 else ("ordered" if chi < 1.0 else "chaotic")


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 4, 5 × 10^k that is >= value."""
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 4.0, 5.0, 10.0):
        if step * 10.0**exponent >= value * (1 - 1e-12):
            return step * 10.0**exponent
    return 10.0 ** (exponent + 1)


def phase_ranges(sw2: float, sb2: float) -> tuple[float, float]:
    """The σ_w² and σ_b² extents of the phase diagram that show (σ_w², σ_b²) with room around it."""
    return _nice_ceiling(max(4.0, 1.25 * sw2)), _nice_ceiling(max(0.5, 1.25 * sb2))


def phase_diagram(activation: str, w_max: float, b_max: float) -> dict:
    """log10 χ₁ on a PHASE_POINTS² grid of (σ_w², σ_b²) ∈ (0, w_max] × [0, b_max], by dl.theory.

    Computed once per grid (the last 64 kept); a view starts the grid it shows in the
    background, so the page's request for it finds it ready or on its way.
    """
    return _PHASE_DIAGRAM(activation, w_max, b_max)


def _phase_diagram(activation: str, w_max: float, b_max: float) -> dict:
    w = np.linspace(w_max / PHASE_POINTS, w_max, PHASE_POINTS)
    b = np.linspace(0.0, b_max, PHASE_POINTS)
    started = time.perf_counter()
    diagram = theory.phase_diagram(activation, w, b)
    seconds = time.perf_counter() - started
    with np.errstate(divide="ignore", invalid="ignore"):
        log_chi = np.log10(diagram.chi1)
    explodes = ~np.isfinite(diagram.q_star)
    log_chi = np.where(explodes | ~np.isfinite(log_chi), np.nan, log_chi)
    return {"activation": activation, "sigma_w2": _finite_list(w), "sigma_b2": _finite_list(b),
            "log10_chi1": [_finite_list(row) for row in log_chi],
            "explodes": [[bool(v) for v in row] for row in explodes],
            "edge_of_chaos": edge_of_chaos(w, b, log_chi),
            "seconds": seconds}


def edge_of_chaos(w: np.ndarray, b: np.ndarray, log_chi: np.ndarray) -> dict:
    """The line χ₁ = 1 of a phase diagram (log10 χ₁ on the grid w × b, NaN where no fixed point
    exists), by contourpy on the grid cells where χ₁ is known: ``{"sigma_w2": [...],
    "sigma_b2": [...]}``, its pieces separated by None (as plotly draws gaps).

    None of it crosses the grey cells (no fixed point q*: there χ₁ says nothing), so ReLU,
    leaky ReLU and identity have no line, only their edge of chaos's single point on the
    axis σ_b² = 0 (dl.theory.critical_weight_variance). Drawn as a plain line, the page does
    not ask plotly to contour the grid (which fills the grey cells by relaxation first:
    0.2-0.6 s in the browser for the activations with grey regions).
    """
    import contourpy

    pieces = contourpy.contour_generator(w, b, np.ma.masked_invalid(log_chi), line_type="Separate").lines(0.0)
    line = {"sigma_w2": [], "sigma_b2": []}
    for piece in pieces:
        if line["sigma_w2"]:
            line["sigma_w2"].append(None)
            line["sigma_b2"].append(None)
        line["sigma_w2"] += _finite_list(piece[:, 0])
        line["sigma_b2"] += _finite_list(piece[:, 1])
    return line


_PHASE_DIAGRAM = Memo(_phase_diagram, 64)

# σ_w² of the schemes a page starts from (He: 2; Xavier, LeCun, orthogonal: 1), with σ_b² = 0
WARM_WEIGHT_VARIANCES = (2.0, 1.0)


def warm_theory(stop: threading.Event | None = None) -> None:
    """Compute, one after another, what switching the activation menu asks of the theory: every
    activation's phase diagram at the page's first range (σ_w² ≤ 4, σ_b² ≤ 0.5) and its χ₁, q*,
    ξ at the common schemes' σ_w². Kept as a request keeps them; an activation the theory
    cannot integrate is skipped. The server runs this once, in a background thread of the
    lowest priority (:func:`start_warming`), so that a switch does not wait for 100 × 100
    integrals (tanh: ~0.2 s) while its own network is probed. ``stop``, once set, ends it before
    the next entry."""
    w_max, b_max = phase_ranges(0.0, 0.0)
    for name in activations.names():
        for memo, args in [(_PHASE_DIAGRAM, (name, w_max, b_max))] + [(_MEAN_FIELD, (name, sw2, 0.0))
                                                                     for sw2 in WARM_WEIGHT_VARIANCES]:
            if stop is not None and stop.is_set():
                return
            _quietly(memo, *args)
    _WARMED.set()


def _quietly(memo: Memo, *args) -> None:
    """``memo(*args)``, best effort: a failure is left for a request to compute and report."""
    try:
        with np.errstate(all="ignore"):
            memo(*args)
    except Exception:
        pass


_WARMING: list[threading.Thread] = []      # the warming thread, once started
_WARMING_LOCK = threading.Lock()
_WARM_STOP = threading.Event()              # set by stop_background: warming ends at its next step
_WARMED = threading.Event()                 # set when warm_theory has been through every activation


def start_warming() -> None:
    """:func:`warm_theory` in a daemon thread at the lowest scheduling priority (where the system
    lets one thread lower its own: Linux), once per process (again after :func:`stop_background`
    stopped it before it was done)."""
    def run():
        lower_priority()
        warm_theory(_WARM_STOP)

    with _WARMING_LOCK:
        if _WARMED.is_set() or (_WARMING and _WARMING[0].is_alive()):
            return
        _WARM_STOP.clear()
        _WARMING[:] = [threading.Thread(target=run, name="depthlab-warm-theory", daemon=True)]
        _WARMING[0].start()


def stop_background(timeout: float = 10.0) -> None:
    """Stop warming the theory and wait, at most ``timeout`` seconds in all, for it and for the
    views' background threads (their theory and phase diagrams) to end: what a server does as
    it stops, so that no thread is inside a C++ library when the interpreter ends (see
    :func:`.memo.join_started`)."""
    deadline = time.monotonic() + timeout
    _WARM_STOP.set()
    with _WARMING_LOCK:
        warming = list(_WARMING)
    for thread in warming:
        thread.join(max(0.0, deadline - time.monotonic()))
    join_started(deadline)


# ----------------------------------------------------------------------------- the view

def view(state: State, layer: int | None = None) -> dict:
    """Per-layer statistics, verdict and theory of the state's network, and with ``layer`` that
    row's histograms (as :func:`histogram` gives them, from the view's own pass).

    A view is computed once and kept (the last 256: a link reproduces the same numbers, so
    going back to a setting costs nothing, and the page's look-ahead fills it); ``seconds`` is
    the time of this call. It is computed with BLAS held at one thread, so that the probe runs
    in halves of the batch on two threads (:mod:`depthlab.nn.halves`; in Jupyter only while a
    view or a histogram is computed).
    """
    started = time.perf_counter()
    _PHASE_DIAGRAM.start(*phase_grid(state))       # what the page asks for next, if the grid is new
    key = view_key(state, layer)
    with LOOK_AHEAD.asked(key), pair.one_blas_thread():     # the probe in halves, on two threads
        try:
            data = dict(_VIEW(*key))
        except WorkerDied:                          # the look-ahead it waited for died with its worker
            data = dict(_VIEW(*key))                # (not kept): computed here
    data["state"] = state.query()
    data["seconds"] = time.perf_counter() - started
    return data


def view_key(state: State, layer: int | None) -> tuple[State, int | None]:
    """What a view is computed and kept by: the state without what only training reads (the
    steps, lr and optimizer controls ask for no new view), and the row whose histograms it
    brings (a row past the network's last, as the slider's after the depth went down: the last)."""
    if layer is not None:
        last = rows(state) - 1
        layer = layer if 0 <= layer <= last else last
    return state.without_training(), layer


def look_ahead(state: State, layer: int | None = None) -> tuple[Future, bool]:
    """Start computing the view of a state the page expects to be asked for next (a step of the
    control moved last, a new seed, the depth slider's neighbours), to be kept as :func:`view`
    keeps it, so that the page's next change finds it computed: ``(its future, True)``. While
    another look-ahead is being computed: ``(that one's future, False)``; ask again when it is done.

    It is computed in a worker process (:class:`.ahead.Helper`) that the views asked for
    pause (:meth:`LookAhead.asked`); the page asks for a look-ahead only while it is idle, and
    that lets a paused one go on.
    """
    return LOOK_AHEAD.start(view_key(state, layer))


class LookAhead:
    """The view computed ahead (one at a time), and the views asked for that wait on it."""

    def __init__(self, helper: Helper):
        self.helper = helper
        self.key = self.future = None
        self.joined = 0                          # views asked for that wait on the worker
        self.asking = 0                          # views and histograms asked for, being computed
        self.timer: threading.Timer | None = None    # resumes paused work no page asks for again
        self.lock = threading.Lock()

    def _pending(self) -> bool:
        return self.future is not None and not self.future.done()

    def start(self, key) -> tuple[Future, bool]:
        """The page is idle (it asks for a look-ahead only then): let the worker go on, unless
        a view asked for is being computed; a look-ahead that arrives during one (the page sent
        it just before a control moved) waits, paused, for the page's next."""
        with self.lock:
            if not self.asking:
                self.helper.resume()
            elif not self.joined:
                self.helper.pause()
            if self._pending():
                return self.future, False
            self.key, self.future = key, _VIEW.start(*key, via=self.helper.run)
            return self.future, True

    @contextlib.contextmanager
    def asked(self, key):
        """``with look_ahead.asked(key):`` around the computing of what a request asks for: the
        worker is paused, so that it takes no processor from this request nor from the browser
        drawing its answer, unless it is computing this very view (``key``), which the request
        then waits for (it goes on; and stays paused by no one while any request waits on it).
        It stays paused after the request, until the page asks for a look-ahead again
        (:meth:`start`: the page then has drawn the answer), or :data:`RESUME_AFTER` seconds."""
        with self.lock:
            self.asking += 1
            joins = self._pending() and self.key == key
            if joins:
                self.joined += 1
                self.helper.resume()
            elif not self.joined:
                self.helper.pause()
        try:
            yield
        finally:
            with self.lock:
                self.asking -= 1
                if joins:
                    self.joined -= 1
                if not self.asking and self._pending():
                    self._resume_later()

    def hold(self) -> None:
        """A view or a histogram has been asked for: pause the worker now, on the server's event
        loop, not once the request's thread runs (meanwhile the worker's two threads would
        share the processors with it: 30–40 ms measured); :meth:`asked` lets it go on if the
        request waits for the worker's view. A request that is refused before it gets there
        leaves it paused :data:`RESUME_AFTER` seconds at most."""
        with self.lock:
            if not self.joined:
                self.helper.pause()
            self._resume_later()

    def _resume_later(self) -> None:
        """Resume in :data:`RESUME_AFTER` seconds if nothing is asked for then: a page that asks
        for no more (closed, or all foreseen) must not leave the worker paused. Under the lock."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = threading.Timer(RESUME_AFTER, self._resume_if_idle)
        self.timer.daemon = True
        self.timer.start()

    def _resume_if_idle(self) -> None:
        with self.lock:
            if not self.asking:
                self.helper.resume()


# a paused look-ahead goes on this long after the last request asked for, if no page asked for a
# look-ahead before (a page that has drawn asks at once; a closed one never does)
RESUME_AFTER = 0.3
HELPER = Helper()                  # the look-ahead's worker process, started by the first one
LOOK_AHEAD = LookAhead(HELPER)


def phase_grid(state: State) -> tuple[str, float, float]:
    """(activation, w_max, b_max): the phase diagram that the state's view shows."""
    return (activations.get(state.activation).name,
            *phase_ranges(float(weight_variance(state)), state.bias_variance))


def _view(state: State, layer: int | None) -> dict:
    sw2, sb2 = float(weight_variance(state)), state.bias_variance
    act_name, (w_max, b_max) = activations.get(state.activation).name, phase_ranges(sw2, sb2)
    _MEAN_FIELD.start(act_name, sw2, sb2)         # the theory, while the network is probed
    with lend_network(state, "probe") as (net, x):
        report = probe(net, x)
        verdict, verdict_layer, diagnosis = report.verdict, report.verdict_layer, report.diagnosis
        layers = report.to_dict()["layers"]
        histograms = None if layer is None else _report_histograms(state, net, x, report, layer)
        del report                                  # the network's arrays are free for the next probe
    plain = state.plain
    columns = PLAIN_COLUMNS if plain else BLOCK_COLUMNS
    return {
        "verdict": verdict,
        "verdict_layer": verdict_layer,
        "diagnosis": diagnosis,
        "rows": "layer" if plain else "block",
        "layers": {key: [s[name] for s in layers] for key, name in columns.items()},
        "theory": mean_field(act_name, sw2, sb2) if plain else {**mean_field(act_name, sw2, sb2), "note": BLOCK_NOTE},
        "phase_range": {"activation": act_name, "w_max": w_max, "b_max": b_max},
        **({} if histograms is None else {"histogram": histograms}),
    }


_VIEW = Memo(_view, 256)

BLOCK_NOTE = ("These numbers and the phase diagram describe a plain network of this activation and initialization; "
              "the theory lines of the figures follow this network's blocks (a residual block adds its branch: "
              "the stream's variance grows ×(1 + s²) per block with He-initialized ReLU branches).")

# the view's per-row series: its key -> the probe report's field (a plain MLP: per Linear layer k;
# a residual or normalized network: per top-level layer, as dl.probe reports it)
PLAIN_COLUMNS = {key: key for key in (
    "index", "preactivation_std", "predicted_preactivation_std", "activation_std", "predicted_activation_std",
    "grad_preactivation_std", "predicted_backward_std", "dead_fraction", "saturated_fraction")}
BLOCK_COLUMNS = {"index": "index", "kind": "kind", "preactivation_std": "output_std",
                 "predicted_preactivation_std": "predicted_output_std", "grad_preactivation_std": "grad_std",
                 "predicted_backward_std": "predicted_grad_std", "branch_fraction": "branch_fraction",
                 "dead_fraction": "dead_fraction", "saturated_fraction": "saturated_fraction"}


# ----------------------------------------------------------------------------- training

TRAIN_BATCH = 64
PROBE_SAMPLES = 256
TRAIN_COST_CAP = 2 * 200 * 50 * 80 * 80        # steps · depth · width², twice the default run
SNAPSHOTS = 40                                # per-layer statistics recorded this many times


def check_training(state: State) -> None:
    cost = state.steps * state.linear_layers * state.width ** 2
    if cost > TRAIN_COST_CAP:
        raise StateError(f"training steps × Linear layers × width² = {cost:,} exceeds the explorer's cap of "
                         f"{TRAIN_COST_CAP:,} (about half a minute of compute); use fewer steps or a smaller network.")


@dataclass
class TrainingJob:
    """One training run on MNIST-1D in a background thread; read it with :meth:`snapshot`."""

    state: State
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: str = "starting"
    message: str | None = None
    steps_done: int = 0
    losses: list = field(default_factory=list)
    snapshot_steps: list = field(default_factory=list)
    forward_std: list = field(default_factory=list)       # one list per layer snapshot
    backward_std: list = field(default_factory=list)
    accuracy: float | None = None
    stop_requested: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> dict:
        with self.lock:
            return {"id": self.id, "status": self.status, "message": self.message,
                    "steps": self.state.steps, "steps_done": self.steps_done,
                    "loss": _finite_list(self.losses), "snapshot_steps": list(self.snapshot_steps),
                    "forward_std": [_finite_list(row) for row in self.forward_std],
                    "backward_std": [_finite_list(row) for row in self.backward_std],
                    "test_accuracy": self.accuracy}

    def _record(self, net, probe_x) -> None:
        import depthlab as dl

        report = dl.probe(net, probe_x, theory=False, rng=0, parameter_grads=False)
        plain = self.state.plain
        forward, backward = ("preactivation_std", "grad_preactivation_std") if plain else ("output_std", "grad_std")
        with self.lock:
            self.snapshot_steps.append(self.steps_done)
            self.forward_std.append([getattr(s, forward) for s in report.layers])
            self.backward_std.append([getattr(s, backward) for s in report.layers])

    def run(self) -> None:
        """Train (cross-entropy, minibatches of 64) and record the loss and per-layer stds."""
        import depthlab as dl

        try:
            data = dl.data.mnist1d()
            rng = np.random.default_rng(self.state.seed)
            net = build_network(self.state, data.x_train.shape[1], 10, rng)
            optimizer = dl.optim.get(self.state.optimizer, net.parameters(), lr=self.state.lr)
            probe_x = data.x_train[:PROBE_SAMPLES]
            every = max(1, self.state.steps // SNAPSHOTS)
            with self.lock:
                self.status = "running"
            self._record(net, probe_x)
            for step in range(self.state.steps):
                if self.stop_requested.is_set():
                    with self.lock:
                        self.status, self.message = "stopped", f"stopped after {self.steps_done} steps"
                    return
                batch = rng.integers(0, data.x_train.shape[0], TRAIN_BATCH)
                history = dl.fit(net, data.x_train[batch], data.y_train[batch], loss="cross_entropy",
                                 optimizer=optimizer, epochs=1, batch_size=None, verbose=0, shuffle=False)
                with self.lock:
                    self.losses.append(history.history["loss"][-1])
                    self.steps_done = step + 1
                if (step + 1) % every == 0 or step + 1 == self.state.steps:
                    self._record(net, probe_x)
            predictions = np.argmax(dl.predict(net, data.x_test), axis=1)
            with self.lock:
                self.accuracy = float(np.mean(predictions == data.y_test))
                self.status = "done"
        except dl.TrainingDiverged as error:
            with self.lock:
                self.status, self.message = "diverged", " ".join(str(error).split())
        except Exception as error:    # shown in the page; the server keeps serving
            with self.lock:
                self.status, self.message = "failed", f"{type(error).__name__}: {' '.join(str(error).split())}"


class TrainingJobs:
    """The running and finished jobs, at most ``limit`` kept (the oldest finished ones dropped)."""

    def __init__(self, limit: int = 8):
        self.limit = limit
        self.jobs: dict[str, TrainingJob] = {}
        self.lock = threading.Lock()

    def start(self, state: State) -> TrainingJob:
        check_training(state)
        job = TrainingJob(state)
        with self.lock:
            running = [j for j in self.jobs.values() if j.status in ("starting", "running")]
            if len(running) >= 2:
                raise StateError("two trainings are already running; stop one first (press stop).")
            self.jobs[job.id] = job
            while len(self.jobs) > self.limit:
                oldest = next((k for k, j in self.jobs.items() if j.status not in ("starting", "running")), None)
                if oldest is None:
                    break
                del self.jobs[oldest]
        job.thread = threading.Thread(target=job.run, name=f"depthlab-train-{job.id}", daemon=True)
        job.thread.start()
        return job

    def get(self, job_id: str) -> TrainingJob | None:
        with self.lock:
            return self.jobs.get(job_id)

    def stop_all(self, wait: float = 0.0) -> None:
        """Ask every job to stop (at its next step); with ``wait``, wait that many seconds at most
        for their threads to end."""
        deadline = time.monotonic() + wait
        with self.lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            job.stop_requested.set()
        for job in jobs:
            if wait and job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))


__all__ = ["view", "look_ahead", "histogram", "phase_diagram", "mean_field", "TrainingJob", "TrainingJobs", "CAPS"]
