"""The explorer's web application (Starlette): one page, its scripts, and a small JSON API.

Routes
------
``GET /``                      the page (controls, figures; the state comes from the query string)
``GET /static/plotly.min.js``  plotly's bundled script, served from the installed package (no CDN)
``GET /static/explore.js``     the page's script; ``/static/explore.css`` its style
``GET /favicon.ico``           204 (no icon; keeps the browser's console clean)
``GET /api/view?<state>[&layer=k]``  per-layer statistics, verdict and theory (JSON); with
                               ``layer``, that row's histograms too (from the same pass)
``GET /api/ahead?<state>[&layer=k]``  compute that view now in a worker process (paused while
                               views asked for are computed) and keep it (the page asks for
                               the states it expects next while it is idle); answers
                               ``{"kept": true}`` when done (after the one being computed, if
                               any: one at a time)
``GET /api/histogram?<state>&layer=k``  histograms of f_k and h_{k+1} over the batch (JSON);
                               the page asks for it when the layer slider moves
``GET /api/phase?activation=&w_max=&b_max=``  log10 χ₁ on a 100×100 grid of (σ_w², σ_b²)
``POST /api/train?<state>``    start training on MNIST-1D; ``GET /api/train/{id}`` polls it,
                               ``POST /api/train/{id}/stop`` stops it

A bad query value is answered with HTTP 400 and ``{"error": message}``; an unknown job with 404.
Compute runs in Starlette's thread pool, so a slow request does not block the others. The page
reads no file: the only files served are the three static assets named above.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import json
from pathlib import Path

from ...nn import activations
from . import compute
from .state import INITS, OPTIMIZERS, StateError, caps_text, parse, shortened

STATIC = Path(__file__).with_name("static")


def plotly_script() -> Path:
    """plotly.min.js inside the installed plotly package (the 'web' extra)."""
    import plotly

    path = Path(plotly.__file__).with_name("package_data") / "plotly.min.js"
    if not path.is_file():
        raise RuntimeError(f"plotly's bundled script is missing at {path}; reinstall: pip install 'depthlab[web]'")
    return path


def _options(values, selected=None) -> str:
    return "".join(f'<option value="{html.escape(v)}"{" selected" if v == selected else ""}>{html.escape(v)}</option>'
                   for v in values)


def page() -> str:
    """The page's HTML with the choices and the caps filled in."""
    text = (STATIC / "index.html").read_text(encoding="utf-8")
    return (text.replace("{{activations}}", _options(activations.names()))
                .replace("{{inits}}", _options(INITS))
                .replace("{{optimizers}}", _options(OPTIMIZERS))
                .replace("{{caps}}", html.escape(caps_text())))


@functools.lru_cache(maxsize=64)
def phase_body(activation: str, w_max: float, b_max: float) -> bytes:
    """/api/phase's answer, encoded once per grid (the last 64 kept): a 100 × 100 diagram is
    190 KB of JSON, ~7 ms to encode, which the page asks for again at each activation switch
    (while the server probes the new network)."""
    return json.dumps(compute.phase_diagram(activation, w_max, b_max), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


def create_app():
    """The Starlette application (import needs the 'web' extra)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    jobs = compute.TrainingJobs()
    compute.start_warming()         # the theory every activation's first view asks for, in the background

    def error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def index(request: Request) -> Response:
        return HTMLResponse(page())

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "plotly.min.js":
            return FileResponse(plotly_script(), media_type="text/javascript")
        files = {"explore.js": "text/javascript", "explore.css": "text/css"}
        if name not in files:
            return error(f"no asset {name!r}", 404)
        return FileResponse(STATIC / name, media_type=files[name])

    async def view(request: Request) -> Response:
        compute.LOOK_AHEAD.hold()           # the look-ahead's worker yields the processors at once
        try:
            state, layer = _state_and_layer(request)
            return JSONResponse(await run_in_threadpool(compute.view, state, layer))
        except StateError as problem:
            return error(str(problem))

    async def ahead(request: Request) -> Response:
        try:
            state, layer = _state_and_layer(request)
            while True:                      # one at a time: after the one being computed, this one
                future, started = await run_in_threadpool(compute.look_ahead, state, layer)
                if started:
                    await asyncio.wrap_future(future)
                    return JSONResponse({"kept": True})
                await asyncio.wait([asyncio.wrap_future(future)])     # its error is its own
        except StateError as problem:
            return error(str(problem))
        except Exception as problem:        # the worker process died (killed, out of memory): the next starts anew
            return error(f"the look-ahead failed ({type(problem).__name__}); views are computed when asked for.", 500)

    async def histogram(request: Request) -> Response:
        compute.LOOK_AHEAD.hold()
        try:
            state, layer = _state_and_layer(request)
            layer = state.depth - 1 if layer is None else layer
            return JSONResponse(await run_in_threadpool(compute.histogram, state, layer))
        except StateError as problem:
            return error(str(problem))

    async def phase(request: Request) -> Response:
        try:
            query = _single(request.query_params)
            unknown = sorted(set(query) - {"activation", "w_max", "b_max"})
            if unknown:
                return error(f"unknown key {shortened(repr(unknown[0]))}; valid keys: activation, w_max, b_max.")
            activation = parse({"activation": query.get("activation", "relu")}).activation
            w_max, b_max = (_positive(query, key, default, low, cap) for key, default, low, cap in
                            (("w_max", "4", 1e-300, 1e8), ("b_max", "0.5", 0.0, 1e5)))
            body = await run_in_threadpool(phase_body, activation, w_max, b_max)
            return Response(body, media_type="application/json")
        except StateError as problem:
            return error(str(problem))
        except ValueError as problem:           # the theory refused this range
            return error(" ".join(str(problem).split()))

    async def train(request: Request) -> Response:
        try:
            job = jobs.start(parse(_single(request.query_params)))
        except StateError as problem:
            return error(str(problem))
        return JSONResponse(job.snapshot(), status_code=202)

    async def train_status(request: Request) -> Response:
        job = jobs.get(request.path_params["job"])
        if job is None:
            return error(f"no training job {shortened(repr(request.path_params['job']))} (finished jobs are kept a "
                         "while).", 404)
        return JSONResponse(job.snapshot())

    async def train_stop(request: Request) -> Response:
        job = jobs.get(request.path_params["job"])
        if job is None:
            return error(f"no training job {shortened(repr(request.path_params['job']))}.", 404)
        job.stop_requested.set()
        return JSONResponse(job.snapshot())

    async def http_error(request: Request, problem: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return error(problem.detail, problem.status_code)
        return HTMLResponse(f"<p>{html.escape(str(problem.detail))}</p><p><a href='/'>the explorer</a></p>",
                            status_code=problem.status_code)

    routes = [
        Route("/", index),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/static/{name}", asset),
        Route("/api/view", view),
        Route("/api/ahead", ahead),
        Route("/api/histogram", histogram),
        Route("/api/phase", phase),
        Route("/api/train", train, methods=["POST"]),
        Route("/api/train/{job}", train_status),
        Route("/api/train/{job}/stop", train_stop, methods=["POST"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        jobs.stop_all()                  # training threads end at their next step
        compute.HELPER.stop()            # the look-ahead's worker process

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.state.jobs = jobs
    return app


def _single(query) -> dict:
    """The query as a dict, refusing a key given twice (a link must mean one thing)."""
    seen = {}
    for key, value in query.multi_items():
        if key in seen:
            raise StateError(f"{shortened(key)} is given twice in the link ({shortened(repr(seen[key]))} and "
                             f"{shortened(repr(value))}); keep one.")
        seen[key] = value
    return seen


def _state_and_layer(request) -> tuple:
    """The checked state of a request's query and its ``layer`` (None when not given)."""
    query = _single(request.query_params)
    layer = query.pop("layer", None)
    return parse(query), None if layer is None else _layer(layer)


def _layer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        if text.strip().lstrip("+-").isdigit():      # beyond int()'s 4300 digits
            raise StateError(f"layer must be between 0 and the last layer, got {shortened(text.strip())}.") from None
        raise StateError(f"layer must be a whole number (0 … depth), got {shortened(repr(text))}.") from None


def _positive(query, key: str, default: str, low: float, cap: float) -> float:
    """``query[key]`` as a number in (0, cap], and >= ``low`` (the grid's first σ_w² must not round to 0)."""
    text = query.get(key, default)
    try:
        value = float(text)
    except ValueError:
        raise StateError(f"{key} must be a number, got {shortened(repr(text))}.") from None
    if not (0 < value <= cap and value >= low):
        bound = f" (at least {low:g})" if low > 0 else ""
        raise StateError(f"{key} must be > 0{bound} and <= {cap:g}, got {shortened(json.dumps(text))}.")
    return value
