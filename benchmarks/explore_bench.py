"""The explorer's speed: the theory's 100×100 phase diagram, one view on the server, one update in the browser.

    python benchmarks/explore_bench.py             # prints a small Markdown table (about two minutes)
    python benchmarks/explore_bench.py --out benchmarks/EXPLORE_RESULTS.md

Targets (issue 17): after a control changes, the views update in < 200 ms in the browser for
50×80 with 1000 samples on two cores; dl.theory.phase_diagram on a 100×100 grid in < 100 ms.

The browser numbers are what the page itself measures (``performance.now()`` from the control's
change event to the last figure drawn: the layers' three panels (forward, backward, histograms) and the phase diagram; its
``data-update-ms``), in headless Chromium (/usr/bin/chromium) driven by Playwright. Each
round moves two controls of the ReLU network in turn, each to a state not seen before (so no
cache answers): the seed (the phase diagram stays as drawn) and the depth
slider (one step down each round: 49, 48, …, as a hand moves it); then seeds of a tanh network;
then the activation is switched to one not seen before, several times (a new phase diagram,
sent and drawn in full: the server computed every activation's first one in the background
when it started; the probe of tanh, GELU, … costs more than ReLU's). Between an update drawn and the
next change the page rests ``--pause`` seconds (0.3: a hand's pace; the browser finishes
what the last change left it, such as writing the address). The server rows time a
view and, inside the same calls, its two big parts. BLAS keeps its default threads (one per
core), as ``depthlab explore`` runs: the issue's target is on this machine's two cores. Times are the median (and best) of the
repetitions; the scalar χ₁ row is a yardstick of how loaded the machine was, and the header
gives the CPU steal (the share of time a virtual machine's host ran other machines instead).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEW = "depth=50&width=80&activation=relu&init=he_normal&samples=1000&seed=0"
PAUSE = 0.3   # seconds between one update drawn and the next change: a hand's pace, not a script's
ACTIVATIONS = ("tanh", "gelu", "silu", "elu", "softplus", "selu", "sigmoid", "leaky_relu", "identity")


def _times(function, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        out.append(1000 * (time.perf_counter() - started))
    return out


def theory_rows(repeats: int) -> list[tuple[str, list[float]]]:
    from depthlab.signal import theory

    w, b = np.linspace(0.04, 4.0, 100), np.linspace(0.0, 0.5, 100)
    rows = []
    for name in ("tanh", "relu", "gelu"):
        theory.phase_diagram(name, w, b)                      # warm the quadrature rules
        rows.append((f"dl.theory.phase_diagram('{name}', 100 σ_w² × 100 σ_b²)",
                     _times(lambda: theory.phase_diagram(name, w, b), repeats)))
    started = time.perf_counter()
    for i in range(0, 100, 10):
        for j in range(0, 100, 10):
            theory.chi1("tanh", float(w[j]), float(b[i]))
    per_point = 1000 * (time.perf_counter() - started) / 100
    rows.append(("scalar dl.theory.chi1('tanh') per point (for comparison)", [per_point]))
    return rows


def server_rows(repeats: int) -> list[tuple[str, list[float]]]:
    """A view (new seed each time: no cache), with its parts timed inside the same call."""
    import depthlab as dl
    from depthlab.lab.explore import compute, state

    def parse(seed):
        return state.parse({"init": "he_normal", "seed": str(seed)})

    names = ("server: /api/view compute, 50×80, 1000 samples (network, probe, theory)",
             "  of which building the network (dl.MLP)",
             "  of which dl.probe (the lead's: target < 50 ms)",
             "server: /api/histogram compute after its view, one layer (forward, np.histogram)")
    times = {name: [] for name in names}

    def timed(name, function):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                times[name].append(1000 * (time.perf_counter() - started))
        return run

    for seed in range(2):
        compute.view(parse(seed))
        compute.histogram(parse(seed), 49)
    probe, build = dl.probe, compute.build_network
    dl.probe, compute.build_network = timed(names[2], probe), timed(names[1], build)
    try:
        for seed in range(100, 100 + repeats):
            timed(names[0], compute.view)(parse(seed))
            dl.probe, compute.build_network = probe, build
            timed(names[3], compute.histogram)(parse(seed), 49)     # as the page asks: the view's network
            dl.probe, compute.build_network = timed(names[2], probe), timed(names[1], build)
    finally:
        dl.probe, compute.build_network = probe, build
    return [(name, times[name]) for name in names]


# Set a control, fire its event, and resolve with the page's own measurement once it has drawn
# everything (data-updates counts up). Waiting on a MutationObserver, not by polling: Playwright's
# default polling runs a callback every animation frame, which keeps the browser busy on the
# cores the server computes on (views took 20–40% longer under it).
MOVE = """([id, value, type]) => new Promise((resolve) => {
  const n = Number(document.body.dataset.updates);
  const watcher = new MutationObserver(() => {
    if (Number(document.body.dataset.updates) > n) { watcher.disconnect(); resolve(document.body.dataset.updateMs); }
  });
  watcher.observe(document.body, { attributes: true, attributeFilter: ["data-updates"] });
  const control = document.getElementById(id);
  control.value = value;
  control.dispatchEvent(new Event(type, { bubbles: true }));
})"""


def browser_rows(repeats: int, pause: float) -> list[tuple[str, list[float]]]:
    from playwright.sync_api import sync_playwright

    import depthlab as dl

    explorer = dl.explore()
    base = explorer.url.split("?")[0]
    names = ("browser: seed changed → the layers' figure redrawn (the phase diagram stays: σ_w², σ_b² unchanged)",
             "browser: depth slider moved → every figure redrawn",
             "browser: activation changed → every figure redrawn (a new phase diagram, sent and drawn in full)",
             "browser: seed changed, tanh network (its tanh costs ~14 ns a value, a third of the probe)")
    times = {name: [] for name in names}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(f"{base}?{VIEW}")
            page.wait_for_function("document.body.dataset.state === 'ready'")

            def move(name, control, value, event):
                page.wait_for_timeout(1000 * pause)             # the hand rests; the page finishes its last change
                times[name].append(float(page.evaluate(MOVE, [control, value, event])))

            for round_ in range(1, repeats + 1):             # ReLU, He: the 50×80, 1000 samples
                move(names[0], "seed", str(round_), "change")
                move(names[1], "depth", str(50 - round_), "input")   # 49, 48, …: its axis moves now and then
            page.evaluate(MOVE, ["depth", "50", "input"])
            move(names[2], "activation", ACTIVATIONS[0], "change")
            for round_ in range(repeats + 1, 2 * repeats + 1):   # tanh, 50×80: the seed notebook's other network
                move(names[3], "seed", str(round_), "change")
            for activation in ACTIVATIONS[1:repeats]:              # then each a new phase diagram
                move(names[2], "activation", activation, "change")
            browser.close()
    finally:
        explorer.stop()
    return [(name, times[name]) for name in names]


TARGETS = [("dl.theory.phase_diagram('tanh'", 100), ("browser: seed changed →", 200), ("browser: depth slider", 200),
           ("browser: seed changed, tanh", 200)]


def _cpu_times() -> list[int]:
    """The machine's CPU times (/proc/stat's first line: user … steal), or [] where there is none."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return []


def _steal(before: list[int], after: list[int]) -> str:
    """The share of CPU time the hypervisor gave to other machines between two _cpu_times."""
    if len(before) < 8 or len(after) < 8 or sum(after) == sum(before):
        return "?"
    return f"{100 * (after[7] - before[7]) / (sum(after) - sum(before)):.0f}%"


def _blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "?"
    return str(max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default="?"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--no-browser", action="store_true", help="skip the browser measurement")
    parser.add_argument("--pause", type=float, default=PAUSE,
                        help=f"seconds between a drawn update and the next change (default {PAUSE})")
    args = parser.parse_args(argv)
    before = _cpu_times()
    rows = theory_rows(args.repeats) + server_rows(args.repeats)
    if not args.no_browser:
        rows += browser_rows(args.repeats, args.pause)
    lines = [f"## explorer ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"{_blas_threads()} BLAS threads, load {os.getloadavg()[0]:.1f}, CPU steal {_steal(before, _cpu_times())} "
             f"during the run, {time.strftime('%Y-%m-%d')})", "",
             "| what | median ms | best ms |", "|---|---:|---:|"]
    lines += [f"| {name} | {statistics.median(t):.1f} | {min(t):.1f} |" for name, t in rows]
    medians = {name: statistics.median(t) for name, t in rows}
    lines += ["", "Targets (issue 17), judged on the medians:"]
    for prefix, limit in TARGETS:
        for name, value in medians.items():
            if name.startswith(prefix):
                lines.append(f"- {name}: {value:.1f} ms < {limit} ms: {'PASS' if value < limit else 'MISS'}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
