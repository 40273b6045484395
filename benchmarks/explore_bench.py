"""The explorer's speed: the theory's 100×100 phase diagram, one view on the server, one update in the browser.

    python benchmarks/explore_bench.py             # prints a small Markdown table (about two minutes)
    python benchmarks/explore_bench.py --out benchmarks/EXPLORE_RESULTS.md

Targets (issue 17): after a control changes, the views update in < 200 ms in the browser for
50×80 with 1000 samples on two cores; dl.theory.phase_diagram on a 100×100 grid in < 100 ms.

The browser numbers are what the page itself measures (``performance.now()`` from the control's
change event to the last figure drawn: the layers' three panels (forward, backward, histograms) and the phase diagram; its
``data-update-ms``), in headless Chromium (/usr/bin/chromium) driven by Playwright, against
``depthlab explore`` running in a process of its own, as a user runs it. While it is
idle the page asks the server to compute the states it expects next (the control moved last one
step on, the seed + 1, the depth slider's neighbours, then every other activation), so the rows come in two kinds, named in
each: moves the page foresaw (the seed's and the depth slider's steps of the ReLU network, 50×80,
1000 samples; the seed's steps of a tanh network; the activation menu's next option) and moves it
could not (a seed typed; an activation picked that is not the next in the menu, after a typed
seed), each to a state not seen before; and last, activations picked after the page rested until
its look-ahead was done. The last column counts the moves the server answered from
a look-ahead (in under 3 ms). Between an update drawn and the next change the page rests
``--pause`` seconds (0.3: a hand's pace; the page's look-ahead runs in that pause, one view at a
time, ~0.1 s for ReLU). The server rows time a
view (in this process) and, inside the same calls, its two big parts; BLAS keeps its default
threads (one per core) but while a view or a histogram is computed, which holds it at one
thread (``depthlab explore`` holds it so throughout): the probe then runs in halves of the
batch on the two cores. The issue's target is on this machine's two cores. Times are the median (and best) of the
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
PICKING = 0.6  # seconds from opening a menu to choosing in it: a quick hand with a mouse
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


class Served:
    """``depthlab explore --no-browser`` in a process of its own, as a user runs it (the browser
    and this script's Playwright client are other processes; in one process with the server,
    the client's threads would take turns with the server's)."""

    def __init__(self):
        import re
        import subprocess

        self.process = subprocess.Popen([sys.executable, "-m", "depthlab", "explore", "--no-browser"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=dict(os.environ, PYTHONUNBUFFERED="1"))
        line = self.process.stdout.readline()
        found = re.search(r"http://[^ ]+/", line)
        if not found:
            self.process.kill()
            raise RuntimeError(f"depthlab explore did not start: {line!r} {self.process.stderr.read()[-2000:]}")
        self.url = found.group(0)

    def stop(self) -> None:
        import signal

        self.process.send_signal(signal.SIGINT)
        self.process.communicate(timeout=60)


MENU_STEPS = ("leaky_relu", "sigmoid", "tanh", "gelu", "silu", "elu", "softplus", "selu")  # the menu's order, from relu
JUMPS = ("elu", "sigmoid", "softplus", "gelu", "selu", "leaky_relu", "silu", "identity")   # never the next option
FOREWARNED = "foreseen: a step the page looked ahead to"
UNFORESEEN = "not foreseen: computed when asked"
ANSWERED_AHEAD = 3.0   # ms: a view the server took less time over was kept from a look-ahead


def browser_rows(repeats: int, pause: float) -> list[tuple[str, list[float]]]:
    """The page's update times, each move timed by the page itself; the row names say whether
    the page could have foreseen the move (its look-ahead asks the server for the neighbours of
    what it shows while it is idle) or not (a value typed, a menu choice that is not the next)."""
    from playwright.sync_api import sync_playwright

    explorer = Served()
    base = explorer.url.split("?")[0]
    rows = {key: (name, []) for key, name in (
        ("seed", f"browser: seed + 1 (ReLU) → the layers' figure redrawn; {FOREWARNED}"),
        ("depth", f"browser: depth slider one step → every figure redrawn; {FOREWARNED}"),
        ("menu", f"browser: activation → the next in the menu (a new phase diagram); {FOREWARNED}"),
        ("tanh", f"browser: seed + 1, tanh network; {FOREWARNED}"),
        ("far", f"browser: seed typed (ReLU); {UNFORESEEN}"),
        ("far_tanh", f"browser: seed typed, tanh network (its tanh: ~14 ns a value); {UNFORESEEN}"),
        ("jump", f"browser: activation → one not next in the menu (a new phase diagram); {UNFORESEEN}"),
        ("picked", f"browser: activation → one not next in the menu, the menu opened {PICKING} s before (a hand "
                   "with a mouse; the page looks ahead at an open menu's options first)"),
        ("rested", "browser: activation → one not next in the menu, after the page rested until its look-ahead "
                   "was done (a second's rest, then every activation: 3–5 s)"))}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(f"{base}?{VIEW}")
            page.wait_for_function("document.body.dataset.state === 'ready'")

            def move(row, control, value, event):
                page.wait_for_timeout(1000 * pause)             # the hand rests; the page looks ahead
                ms = float(page.evaluate(MOVE, [control, value, event]))
                if row is not None:
                    rows[row][1].append((ms, float(page.evaluate("document.body.dataset.serverMs"))))

            fresh = iter(range(10_000, 1_000_000, 7919))         # seeds no one has asked for
            for round_ in range(1, repeats + 1):                 # ReLU, He: the 50×80, 1000 samples
                move("seed", "seed", str(round_), "change")
                move("depth", "depth", str(50 - round_), "input")   # 49, 48, …: its axis moves now and then
            move(None, "depth", "50", "input")
            for _ in range(repeats):
                move("far", "seed", str(next(fresh)), "change")
            for i, activation in enumerate(MENU_STEPS[:repeats + 1]):   # the first step tells the page the direction
                move(None if i == 0 else "menu", "activation", activation, "change")
            move(None, "activation", "tanh", "change")
            for _ in range(repeats):                              # tanh, 50×80: the seed notebook's other network
                move("tanh", "seed", str(int(page.input_value("#seed")) + 1), "change")
            for _ in range(repeats):
                move("far_tanh", "seed", str(next(fresh)), "change")
            for activation in JUMPS[:repeats]:
                move(None, "seed", str(next(fresh)), "change")    # a state whose look-ahead is not a menu step
                move("jump", "activation", activation, "change")
            for activation in JUMPS[:repeats]:
                move(None, "seed", str(next(fresh)), "change")
                page.wait_for_timeout(1000 * pause)
                page.focus("#activation")                           # the hand opens the menu …
                page.wait_for_timeout(1000 * max(0.0, PICKING - pause))
                move("picked", "activation", activation, "change")  # … and picks (move waits `pause` first)
                page.evaluate("document.activeElement.blur()")
            for activation in JUMPS[:repeats]:
                move(None, "seed", str(next(fresh)), "change")
                page.wait_for_function("document.body.dataset.lookAhead === 'idle'")
                move("rested", "activation", activation, "change")
            browser.close()
    finally:
        explorer.stop()
    return [(name, [ms for ms, _ in moves], sum(server < ANSWERED_AHEAD for _, server in moves))
            for name, moves in rows.values()]


TARGETS = [("dl.theory.phase_diagram('tanh'", 100), ("browser: ", 200)]


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
    rows = [(name, times, None) for name, times in theory_rows(args.repeats) + server_rows(args.repeats)]
    if not args.no_browser:
        rows += browser_rows(args.repeats, args.pause)
    lines = [f"## explorer ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"{_blas_threads()} BLAS threads, load {os.getloadavg()[0]:.1f}, CPU steal {_steal(before, _cpu_times())} "
             f"during the run, {time.strftime('%Y-%m-%d')})", "",
             "| what | median ms | best ms | answered from a look-ahead |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {statistics.median(t):.1f} | {min(t):.1f} | {ahead} of {len(t)} |" if ahead is not None
              else f"| {name} | {statistics.median(t):.1f} | {min(t):.1f} | |" for name, t, ahead in rows]
    medians = {name: statistics.median(t) for name, t, _ in rows}
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
