"""The explorer's speed: the theory's 100×100 phase diagram, one view on the server, one update in the browser.

    python benchmarks/explore_bench.py             # prints a small Markdown table (about a minute)
    python benchmarks/explore_bench.py --out benchmarks/EXPLORE_RESULTS.md

Targets (issue 17): a view updates in < 200 ms in the browser for 50×80 with 1000 samples on
two cores; dl.theory.phase_diagram on a 100×100 grid in < 100 ms. The browser number is what
the page itself measures (``performance.now()`` from the request to the last figure drawn,
its ``data-update-ms``), in headless Chromium (/usr/bin/chromium) driven by Playwright, after
moving the seed control. Times are the median (and best) of several repetitions.
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
    from depthlab.lab.explore import compute, state

    for seed in range(2):
        compute.view(state.parse({"init": "he_normal", "seed": str(seed)}))
    seeds = iter(range(100, 100 + repeats))
    return [("server: /api/view compute, 50×80, 1000 samples (probe, histograms, theory)",
             _times(lambda: compute.view(state.parse({"init": "he_normal", "seed": str(next(seeds))})), repeats))]


def browser_rows(repeats: int) -> list[tuple[str, list[float]]]:
    from playwright.sync_api import sync_playwright

    import depthlab as dl

    explorer = dl.explore()
    base = explorer.url.split("?")[0]
    times = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(f"{base}?{VIEW}")
            page.wait_for_function("document.body.dataset.state === 'ready'")
            for seed in range(1, repeats + 1):
                updates = int(page.evaluate("document.body.dataset.updates"))
                page.fill("#seed", str(seed))
                page.dispatch_event("#seed", "change")
                page.wait_for_function(f"Number(document.body.dataset.updates) > {updates}")
                times.append(float(page.evaluate("document.body.dataset.updateMs")))
            browser.close()
    finally:
        explorer.stop()
    return [("browser: control moved → figures redrawn, 50×80, 1000 samples (headless Chromium)", times)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--no-browser", action="store_true", help="skip the browser measurement")
    args = parser.parse_args(argv)
    rows = theory_rows(args.repeats) + server_rows(args.repeats)
    if not args.no_browser:
        rows += browser_rows(args.repeats)
    lines = [f"## explorer ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d')})", "",
             "| what | median ms | best ms |", "|---|---:|---:|"]
    lines += [f"| {name} | {statistics.median(t):.1f} | {min(t):.1f} |" for name, t in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
