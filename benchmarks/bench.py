"""depthlab's benchmark: a training step against the NumPy floor, PyTorch and scikit-learn.

    python benchmarks/bench.py                    # the full run (a few minutes); writes benchmarks/RESULTS.md
    python benchmarks/bench.py --smoke            # tiny sizes, one repetition (the test suite's check)
    python benchmarks/bench.py --only mnist1d --only fit --repeats 21 --out /tmp/r.md
    python benchmarks/bench.py --only fit --dtypes float32   # one dtype (default both)

Sections (names for ``--only``): the training step on each network (``002``, ``mnist1d``,
``wide``, ``deep``, or ``steps`` for all four), ``resmlp`` (the training step of a residual
MLP with and without batch norm), ``fit``, ``probe``, ``memory`` and ``profile``. How the
timings are made fair is written into RESULTS.md ("Method").
"""
from __future__ import annotations

import argparse
import cProfile
import contextlib
import datetime
import gc
import io
import itertools
import json
import math
import os
import platform
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import contenders as C  # noqa: E402  (a sibling module of this script)

import depthlab as dl  # noqa: E402

SECTIONS = ("steps", "resmlp", "fit", "probe", "memory", "profile")
# cpu: the CPU time of this process (all its threads), which a neighbour on a shared machine (another
# process, another virtual machine's steal) does not add to; wall: elapsed time
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
FIT_TARGET, PROBE_TARGET_MS, HAND_TARGET = 1.15, 50.0, 1.10


# ============================================================================= settings

@dataclass
class Settings:
    smoke: bool
    repeats: int
    min_block: float          # seconds of steps per timed block
    warmup: float             # seconds of warm-up per contender before timing
    networks: dict
    dtypes: tuple
    sections: set
    threads: int
    processes: int = 1        # fresh processes the fit section is measured in (median of their medians)
    clock: object = time.process_time   # what a timed block reads: this process's CPU time, or wall time
    res_networks: dict = field(default_factory=dict)   # the resmlp section's networks

    @classmethod
    def from_args(cls, args, threads: int) -> "Settings":
        only = {name for entry in (args.only or []) for name in entry.split(",") if name}
        networks = C.SMOKE_NETWORKS if args.smoke else C.NETWORKS
        chosen_networks = {n for n in only if n in networks}
        sections = {s for s in only if s in SECTIONS}
        if chosen_networks:
            sections.add("steps")
        if not only:
            sections = set(SECTIONS)
        if "steps" in sections and not chosen_networks:
            chosen_networks = set(networks)
        if "profile" in sections and not chosen_networks:
            chosen_networks = set(networks)
        repeats = args.repeats if args.repeats is not None else (1 if args.smoke else 15)
        return cls(
            smoke=args.smoke, repeats=repeats,
            min_block=0.0 if args.smoke else args.min_block,
            warmup=0.0 if args.smoke else 0.3,
            networks={name: net for name, net in networks.items() if name in chosen_networks},
            dtypes=tuple(np.dtype(name).type for name in args.dtypes), sections=sections, threads=threads,
            processes=args.processes or (1 if args.smoke else 5),
            res_networks=C.SMOKE_RES_NETWORKS if args.smoke else C.RES_NETWORKS,
            clock=CLOCKS[args.clock],
        )


# ============================================================================= machine

def blas_threads() -> tuple[int, str]:
    """NumPy's BLAS thread count and a description of the library."""
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("user_api") == "blas" and "numpy" in info.get("filepath", ""):
            kernel = info.get("architecture", "?")
            forced = os.environ.get("OPENBLAS_CORETYPE")
            kernel += f", forced by OPENBLAS_CORETYPE={forced}" if forced else ", detected"
            name = f"{info.get('internal_api')} {info.get('version')} ({kernel})"
            return int(info["num_threads"]), name
    return 1, "unknown BLAS"


def set_threads(n: int) -> None:
    """Give NumPy's BLAS (every loaded BLAS/OpenMP pool) and PyTorch the same ``n`` threads."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    import torch

    torch.set_num_threads(n)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_average() -> str:
    with contextlib.suppress(OSError, AttributeError):
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    return "n/a"


def versions() -> dict:
    import scipy
    import sklearn
    import torch

    return {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "torch": torch.__version__, "scikit-learn": sklearn.__version__, "depthlab": dl.__version__}


# ============================================================================= timing

@dataclass
class Timing:
    """Seconds per step (or per call) over the repeated blocks."""

    samples: list = field(default_factory=list)
    per_block: int = 1

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range / median: how noisy the blocks were."""
        if len(self.samples) < 4:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4)
        return (q3 - q1) / self.median


def cycling(step, batches):
    """A no-argument step that walks through ``batches`` (the same cost for every contender)."""
    order = itertools.cycle(batches)

    def run():
        step(*next(order))

    return run


def measure(calls: dict, settings: Settings) -> dict[str, Timing]:
    """Time every no-argument callable of ``calls``: warmed up, interleaved, median of blocks.

    Each callable is first run for ``settings.warmup`` seconds (caches, lazy imports,
    allocator pools); from that, the number of calls per block is chosen so that a block
    lasts ``settings.min_block`` seconds. Then ``settings.repeats`` rounds run one block of
    each callable, in an order rotated every round so that no contender always runs first
    or right after the same one. The garbage collector runs before every block and is off
    during it (timeit's convention), so no contender pays for another's garbage; objects
    alive before timing are frozen out of the collector (``gc.freeze``), so a collection
    costs the same whichever libraries are loaded.
    """
    gc.collect()
    gc.freeze()   # everything alive now (PyTorch's many module objects) is left out of collections
    timings = {}
    for name, call in calls.items():
        clock = settings.clock
        count, start = 0, clock()
        while True:
            call()
            count += 1
            elapsed = clock() - start
            if count >= 2 and elapsed >= settings.warmup or settings.smoke:
                break
        per_call = elapsed / count
        timings[name] = Timing(per_block=max(1, math.ceil(settings.min_block / per_call)))
    names = list(calls)
    for round_ in range(settings.repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            call, timing = calls[name], timings[name]
            gc.collect()
            gc.disable()
            try:
                start = clock()
                for _ in range(timing.per_block):
                    call()
                elapsed = clock() - start
            finally:
                gc.enable()
            timing.samples.append(elapsed / timing.per_block)
    return timings


# ============================================================================= the training step

@dataclass
class StepRow:
    network: object
    dtype: str
    optimizer: str
    timings: dict             # kind -> Timing
    agreement: dict           # kind -> relative difference of one SGD step from depthlab's
    finite: bool


def bench_steps(settings: Settings, log) -> list[StepRow]:
    rows = []
    for network in settings.networks.values():
        for dtype in settings.dtypes:
            batches = C.make_data(network, dtype, n_batches=2 if settings.smoke else 8)
            agreement = C.check_agreement(network, dtype, batches)
            built = {(kind, opt): C.build(kind, network, dtype, opt, batches)
                     for opt in C.OPTIMIZERS for kind in C.kinds_for(network)}
            calls = {key: cycling(contender.step, batches) for key, contender in built.items()}
            log(f"steps: {network.name} {dtype.__name__} ({len(calls)} contenders)")
            timings = measure(calls, settings)
            for opt in C.OPTIMIZERS:
                finite = all(np.isfinite(w).all() for (kind, o), c in built.items() if o == opt for w in c.weights())
                rows.append(StepRow(network, np.dtype(dtype).name, opt,
                                    {kind: t for (kind, o), t in timings.items() if o == opt}, agreement, finite))
    return rows


# ============================================================================= the residual MLP's step

def bench_resmlp(settings: Settings, log) -> list[StepRow]:
    """The training step of ``dl.ResMLP`` (with and without batch norm) against the hand-written
    NumPy loop and PyTorch, per dtype and optimizer, timed as :func:`bench_steps` does."""
    rows = []
    for network in settings.res_networks.values():
        for dtype in settings.dtypes:
            batches = C.make_data(network, dtype, n_batches=2 if settings.smoke else 8)
            agreement = C.check_res_agreement(network, dtype, batches)
            built = {(kind, opt): C.build_res(kind, network, dtype, opt)
                     for opt in C.OPTIMIZERS for kind in C.RES_KINDS}
            calls = {key: cycling(contender.step, batches) for key, contender in built.items()}
            log(f"resmlp: {network.name} {dtype.__name__} ({len(calls)} contenders)")
            timings = measure(calls, settings)
            for opt in C.OPTIMIZERS:
                weights = [w for (kind, o), c in built.items() if o == opt for w in c.weights()]
                finite = all(np.isfinite(w).all() for w in weights)
                kept = all(w.dtype == dtype for w in weights)
                rows.append(StepRow(network, np.dtype(dtype).name, opt,
                                    {kind: t for (kind, o), t in timings.items() if o == opt}, agreement,
                                    finite and kept))
    return rows


# ============================================================================= fit

def _fit_data(settings: Settings, dtype):
    data = dl.data.mnist1d()
    n = 400 if settings.smoke else data.x_train.shape[0]
    return np.ascontiguousarray(data.x_train[:n], dtype=dtype), data.y_train[:n].copy()


def bench_fit(settings: Settings, log) -> list[dict]:
    """One epoch of ``dl.fit`` on MNIST-1D vs the bare step loop vs PyTorch's DataLoader loop,
    per dtype, in ``settings.processes`` fresh processes one after another: each gives the
    median of its blocks, and a contender's time is the median over the processes.

    Memory placement differs from process to process (ASLR, the allocator's history), and
    moves these ratios by up to ±0.05 between processes — more than the blocks within one
    process do — so one process would report its own placement rather than fit's cost.
    """
    network = (C.SMOKE_NETWORKS if settings.smoke else C.NETWORKS)["mnist1d"]
    rows = []
    for dtype in settings.dtypes:
        name = np.dtype(dtype).name
        if settings.processes == 1:
            log(f"fit: {name}")
            timings = fit_timings(settings, name)  # the blocks' times
        else:
            medians = []
            for i in range(settings.processes):
                log(f"fit: {name}, process {i + 1} of {settings.processes}")
                medians.append(_fit_process(settings, name))
            timings = {kind: Timing(samples=[m[kind] for m in medians]) for kind in medians[0]}
        rows.append({"dtype": name, "samples": _fit_data(settings, dtype)[0].shape[0], "batch": network.batch,
                     "timings": timings, "processes": settings.processes})
    return rows


def _fit_ratio(row: dict, kind: str, reference: str) -> float:
    """Time of ``kind`` / time of ``reference``: the median of the per-process ratios (each
    from blocks interleaved in one process, so a slower or faster stretch of the machine
    cancels), or the ratio of the block medians with one process."""
    t = row["timings"]
    if row["processes"] == 1:
        return t[kind].median / t[reference].median
    return statistics.median(a / b for a, b in zip(t[kind].samples, t[reference].samples))


def _fit_process(settings: Settings, dtype: str) -> dict[str, float]:
    """:func:`fit_timings` in a fresh process: each contender's median seconds per epoch."""
    command = [sys.executable, str(Path(__file__).resolve()), "--fit-process", dtype, "--threads",
               str(settings.threads), "--repeats", str(settings.repeats), "--min-block", str(settings.min_block),
               "--clock", next(name for name, clock in CLOCKS.items() if clock is settings.clock)]
    command += ["--smoke"] if settings.smoke else []
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"fit measurement process ({dtype}) failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fit_timings(settings: Settings, dtype: str) -> dict[str, Timing]:
    """The fit section's contenders for one dtype, timed in this process by :func:`measure`."""
    import torch

    dtype = np.dtype(dtype).type
    network = (C.SMOKE_NETWORKS if settings.smoke else C.NETWORKS)["mnist1d"]
    batch = network.batch
    x, y = _fit_data(settings, dtype)
    n = x.shape[0]
    nets = {kind: C.build("depthlab", network, dtype, "sgd", None) for kind in ("fit", "fit_full", "bare")}
    hand = C.build("hand", network, dtype, "sgd", None)
    torch_net = C.build("torch", network, dtype, "sgd", None)

    def fit(kind, **options):
        contender, rng = nets[kind], np.random.default_rng(1)

        def run():
            dl.fit(contender.net, x, y, loss="cross_entropy", optimizer=contender.opt, epochs=1,
                   batch_size=batch, rng=rng, **options)
        return run

    def fit_with_bar(devnull):
        inner = fit("fit_full", metrics=["accuracy"], verbose=1)

        def run():
            with contextlib.redirect_stderr(devnull):
                inner()
        return run

    def loop(contender):
        rng = np.random.default_rng(1)

        def run():
            order = rng.permutation(n)
            for start in range(0, n, batch):
                rows_ = order[start:start + batch]
                contender.step(x[rows_], y[rows_])
        return run

    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True,
                                         generator=torch.Generator().manual_seed(1))

    def torch_loop():
        model, loss, opt = torch_net.model, torch_net.loss, torch_net.opt
        for xb, yb in loader:
            opt.zero_grad(set_to_none=True)
            loss(model(xb), yb).backward()
            opt.step()

    with open(os.devnull, "w") as devnull:
        calls = {"fit": fit("fit", verbose=0), "fit_full": fit_with_bar(devnull), "bare": loop(nets["bare"]),
                 "hand": loop(hand), "torch": torch_loop}
        return measure(calls, settings)


# ============================================================================= probe

def bench_probe(settings: Settings, log) -> list[dict]:
    """``dl.probe`` of the 50×80 ReLU network on 1000 samples, per dtype: the cold first call,
    the warm median, its forward + backward passes alone and their matrix products alone."""
    depth, width, samples = (5, 8, 50) if settings.smoke else (50, 80, 1000)
    network = C.Network("probe", "probe network", (1,) + (width,) * depth + (1,), samples, "regression", {}, 1.0)
    rows = []
    for dtype in sorted(settings.dtypes, key=lambda d: np.dtype(d).itemsize, reverse=True):  # float64 first
        name = np.dtype(dtype).name
        net = dl.MLP(1, [width] * depth, 1, activation="relu", init="he_normal", rng=0, dtype=dtype)
        x = np.random.default_rng(0).standard_normal((samples, 1)).astype(dtype)
        grad_output = np.random.default_rng(1).standard_normal((samples, 1)).astype(dtype)
        log(f"probe: {depth}×{width}, {samples} samples, {name}")
        start = time.perf_counter()
        dl.probe(net, x)
        cold = time.perf_counter() - start

        def passes():
            net.zero_grad()
            net.forward(x, record=True)
            net.backward(grad_output)
        timings = measure({"probe": lambda: dl.probe(net, x), "passes": passes}, settings)
        floor = _matmul_floor(network, dtype, [(x, None)], settings)
        every_core = None
        if _usable_cores() > settings.threads:  # what a user gets with BLAS's default threads
            from threadpoolctl import threadpool_limits

            with threadpool_limits(_usable_cores()):   # several threads: their CPU times add, so the wall clock
                every_core = measure({"probe": lambda: dl.probe(net, x)},
                                     replace(settings, clock=time.perf_counter))["probe"].median
        rows.append({"depth": depth, "width": width, "samples": samples, "dtype": name, "cold": cold,
                     "timing": timings["probe"], "passes": timings["passes"].median, "floor": floor,
                     "every_core": every_core, "cores": _usable_cores()})
    return rows


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ============================================================================= memory

MEMORY_KINDS = ("depthlab", "hand", "torch")


def _proc_status(key: str) -> int:
    """A value in KiB from /proc/self/status (VmRSS, VmHWM)."""
    match = re.search(rf"^{key}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1))


def memory_probe(kind: str, network_name: str, dtype: str, optimizer: str, steps: int, smoke: bool,
                 threads: int) -> dict:
    """In a fresh process: peak RSS above the baseline while training ``network_name``.

    Baseline: the resident set after imports (and a few steps of a tiny network of the same
    kind, so that lazily imported modules are loaded), the data and the initial weight
    arrays exist. The peak counter (VmHWM) is reset there by writing 5 to
    /proc/self/clear_refs, so the peak covers only building the model and optimizer and
    training ``steps`` steps.
    """
    if kind == "torch":
        import torch

        torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    network = (C.SMOKE_NETWORKS if smoke else C.NETWORKS)[network_name]
    kinds = {"depthlab": C.Depthlab, "hand": C.Hand, "torch": C.Torch}
    # a few steps of a tiny network first: lazy imports (torch.optim loads torch._dynamo) and
    # one-time caches land in the baseline, not in the peak
    tiny = C.SMOKE_NETWORKS["deep"]
    tiny_batches = C.make_data(tiny, np.dtype(dtype).type, n_batches=1)
    warm = kinds[kind](tiny, np.dtype(dtype).type, optimizer)
    for _ in range(2):
        warm.step(*tiny_batches[0])
    del warm, tiny_batches
    batches = C.make_data(network, np.dtype(dtype).type, n_batches=2)
    weights = C.initial_weights(network, np.dtype(dtype).type)
    gc.collect()
    method = "VmHWM after clear_refs"
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        method = "VmHWM (not resettable: includes imports)"
    baseline = _proc_status("VmRSS")
    contender = kinds[kind](network, np.dtype(dtype).type, optimizer, weights)
    del weights
    for i in range(steps):
        contender.step(*batches[i % len(batches)])
    peak = _proc_status("VmHWM")
    return {"kind": kind, "baseline_kib": baseline, "peak_kib": peak, "extra_kib": peak - baseline, "method": method}


def bench_memory(settings: Settings, log) -> list[dict]:
    rows = []
    optimizers = ("adam",) if settings.smoke else C.OPTIMIZERS
    dtypes = ("float32",) if settings.smoke else ("float32", "float64")
    steps = 3 if settings.smoke else 10
    for dtype in dtypes:
        for optimizer in optimizers:
            row = {"dtype": dtype, "optimizer": optimizer, "results": {}}
            for kind in (("depthlab", "torch") if settings.smoke else MEMORY_KINDS):
                log(f"memory: {kind} {dtype} {optimizer} (fresh process)")
                command = [sys.executable, str(Path(__file__).resolve()), "--memory-probe", kind, "--network", "wide",
                           "--dtype", dtype, "--optimizer", optimizer, "--steps", str(steps),
                           "--threads", str(settings.threads)] + (["--smoke"] if settings.smoke else [])
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise RuntimeError(f"memory probe {kind} failed:\n{done.stderr}")
                row["results"][kind] = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
    return rows


# ============================================================================= profile

def _phase_times(contender, batches, network, settings) -> dict[str, float]:
    """Median seconds of each phase of the depthlab step: zero_grad, forward, loss.grad, backward, step."""
    net, loss, opt = contender.net, contender.loss, contender.opt
    phases = {"opt.zero_grad": [], "net.forward(record=True)": [], "loss.grad": [], "net.backward": [],
              "opt.step": []}
    count = 3 if settings.smoke else max(20, settings.repeats * 4)
    clock = time.perf_counter
    gc.collect()
    gc.disable()
    try:
        for i in range(count):
            x, y = batches[i % len(batches)]
            t0 = clock()
            opt.zero_grad()
            t1 = clock()
            trace = net.forward(x, record=True)
            t2 = clock()
            grad = loss.grad(trace.output, y)
            t3 = clock()
            net.backward(grad, input_grad=False, intermediates=False)
            t4 = clock()
            opt.step()
            t5 = clock()
            for name, value in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                phases[name].append(value)
    finally:
        gc.enable()
    return {name: statistics.median(values) for name, values in phases.items()}


def _matmul_floor(network, dtype, batches, settings) -> float:
    """Median seconds of only the step's matrix products, into preallocated outputs."""
    weights, _ = C.initial_weights(network, dtype)
    x = batches[0][0]
    n = x.shape[0]
    hs = [x] + [np.empty((n, w.shape[0]), dtype=dtype) for w in weights]
    grads_h = [np.empty((n, w.shape[1]), dtype=dtype) for w in weights]
    grads_w = [np.empty_like(w) for w in weights]
    g = np.ones((n, weights[-1].shape[0]), dtype=dtype)

    def products():
        for k, w in enumerate(weights):
            np.matmul(hs[k], w.T, out=hs[k + 1])
        for k in range(len(weights) - 1, -1, -1):
            gk = g if k == len(weights) - 1 else hs[k + 1]
            np.matmul(gk.T, hs[k], out=grads_w[k])
            if k > 0:
                np.matmul(gk, weights[k], out=grads_h[k])
    return measure({"matmul": products}, settings)["matmul"].median


def _top_functions(contender, batches, settings, limit: int = 10) -> list[dict]:
    """cProfile of the step: the functions with the largest own time (tottime) and their share."""
    step = cycling(contender.step, batches)
    count = 3 if settings.smoke else 300
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        step()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = sum(entry[2] for entry in stats.stats.values()) or 1.0
    rows = []
    for (filename, line, function), (calls, _, tottime, cumtime, _) in stats.stats.items():
        rows.append({"function": _label(filename, line, function), "calls_per_step": calls / count,
                     "own_us": 1e6 * tottime / count, "share": tottime / total, "cum_us": 1e6 * cumtime / count})
    rows.sort(key=lambda row: -row["own_us"])
    return rows[:limit]


def _label(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function
    path = Path(filename)
    parts = path.parts
    if "depthlab" in parts:
        inside = "/".join(parts[parts.index("depthlab"):])
        return f"{inside}:{line} {function}"
    return f"{path.name}:{line} {function}"


def bench_profile(settings: Settings, log) -> list[dict]:
    """Phase times for both dtypes; cProfile's function table for float32."""
    rows = []
    for network in settings.networks.values():
        for dtype in settings.dtypes:
            batches = C.make_data(network, dtype, n_batches=2 if settings.smoke else 8)
            log(f"profile: {network.name} {np.dtype(dtype).name}")
            floor = _matmul_floor(network, dtype, batches, settings)
            for optimizer in C.OPTIMIZERS:
                contender = C.build("depthlab", network, dtype, optimizer, batches)
                measure({"warm": cycling(contender.step, batches)}, settings)
                phases = _phase_times(contender, batches, network, settings)
                top = _top_functions(contender, batches, settings) if dtype == np.float32 else None
                rows.append({"network": network, "dtype": np.dtype(dtype).name, "optimizer": optimizer,
                             "phases": phases, "matmul": floor, "top": top})
    return rows


# ============================================================================= report

def _ms(seconds: float) -> str:
    if seconds is None:
        return "—"
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else (f"{ms:.2f}" if ms < 100 else f"{ms:.0f}")


def _mark(ok: bool) -> str:
    return "PASS" if ok else "**MISS**"


@dataclass
class Check:
    target: str
    measured: str
    ok: bool


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def render(results: dict, meta: dict, settings: Settings) -> str:
    checks: list[Check] = []
    out = ["# depthlab benchmarks", ""]
    out.append(f"Generated by `python benchmarks/bench.py{' ' + meta['argv'] if meta['argv'] else ''}` on "
               f"{meta['date']}; {meta['seconds']:.0f} s.")
    if settings.smoke:
        out += ["", "**Smoke mode**: tiny networks, one repetition — these numbers only show that the script runs."]
    busy = meta["busy"]
    if busy:
        out += ["", f"**Warning**: the machine was busy (load average {meta['load_start']} at the start, "
                    f"{meta['load_end']} at the end, on {meta['cores']} cores): timings are unreliable."]
    if meta.get("forced_kernel"):
        out += ["", f"**Note**: OpenBLAS ran the kernels forced by OPENBLAS_CORETYPE={meta['forced_kernel']}, not "
                    "those it detects for this processor; `make bench` unsets the variable for the benchmark."]
    out += ["", "## Machine", ""]
    out += _table(["", ""], [
        ["CPU", meta["cpu"]],
        ["logical cores (usable)", f"{meta['cores']} ({meta['usable_cores']})"],
        ["BLAS (NumPy)", f"{meta['blas']}, {settings.threads} threads"],
        ["clock", "this process's CPU time (time.process_time)" if settings.clock is time.process_time
         else "wall time (time.perf_counter)"],
        ["PyTorch intra-op threads", f"{meta['torch_threads']} (set to NumPy's BLAS threads)"],
        ["load average (1/5/15 min) at start; at end", f"{meta['load_start']}; {meta['load_end']}"],
        ["versions", ", ".join(f"{k} {v}" for k, v in meta["versions"].items())],
        ["platform", meta["platform"]],
    ])

    sections = []
    if "steps" in results:
        sections += _render_steps(results["steps"], checks, settings)
    if "resmlp" in results:
        sections += _render_resmlp(results["resmlp"], checks)
    if "fit" in results:
        sections += _render_fit(results["fit"], checks)
    if "probe" in results:
        sections += _render_probe(results["probe"], checks)
    if "memory" in results:
        sections += _render_memory(results["memory"], checks)
    if "profile" in results:
        sections += _render_profile(results["profile"])

    passed = sum(check.ok for check in checks)
    out += ["", "## Targets", "", f"{passed} of {len(checks)} targets met.", ""]
    out += _table(["target", "measured", ""], [[c.target, c.measured, _mark(c.ok)] for c in checks])
    out += sections
    out += ["", "## Method", "", METHOD.strip(), ""]
    return "\n".join(out)


def _render_steps(rows: list[StepRow], checks: list[Check], settings: Settings) -> list[str]:
    out = ["", "## Training step", "",
           "Median time of one step (clear gradients, forward, loss gradient, backward, optimizer update) in "
           "milliseconds; in brackets the interquartile range of the blocks as a fraction of the median. "
           "*depthlab* is the training step `fit` runs, `dl.TrainStep(net, loss, opt)(x, y)`; *explicit loop* is "
           "the same step written with the public API's four calls (`opt.zero_grad()`, `net.forward(x, record=True)`, "
           "`loss.grad`, `net.backward(...)`, `opt.step()`), which gives bit-for-bit the same weights and is shown "
           "for reference (no target); *hand / PyTorch* shows how far the NumPy floor itself is from PyTorch. "
           "Ratios below 1 favour depthlab. Targets: depthlab ≤ 1.10 × hand-written NumPy everywhere; "
           "≤ 0.8 × PyTorch on MNIST-1D and 002, ≤ 1.0 × on wide and deep; ≥ 3× (float32) / 2× (float64) "
           "scikit-learn's steps per second on MNIST-1D.", ""]
    table = []
    for row in rows:
        t = row.timings
        d = t["depthlab"].median
        cell = lambda kind: (f"{_ms(t[kind].median)} ({t[kind].spread:.0%})" if kind in t else "—")  # noqa: E731
        vs_hand = d / t["hand"].median
        vs_torch = d / t["torch"].median
        vs_sklearn = t["sklearn"].median / d if "sklearn" in t else None
        where = f"{row.network.name} {row.dtype} {row.optimizer}"
        checks.append(Check(f"{where}: depthlab/hand ≤ {HAND_TARGET:.2f}", f"{vs_hand:.2f}", vs_hand <= HAND_TARGET))
        hand_vs_torch = t["hand"].median / t["torch"].median
        floor_note = (f" (the hand-written NumPy loop itself: {hand_vs_torch:.2f})"
                      if hand_vs_torch > row.network.vs_torch else "")
        checks.append(Check(f"{where}: depthlab/PyTorch ≤ {row.network.vs_torch:.1f}", f"{vs_torch:.2f}{floor_note}",
                            vs_torch <= row.network.vs_torch))
        sklearn_text = "—"
        if vs_sklearn is not None:
            sklearn_text = f"{vs_sklearn:.1f}×"
            goal = (row.network.sklearn_target or {}).get(row.dtype)
            if goal is not None:
                checks.append(Check(f"{where}: ≥ {goal:.0f}× scikit-learn's steps/s", f"{vs_sklearn:.1f}×",
                                    vs_sklearn >= goal))
                sklearn_text += f" {_mark(vs_sklearn >= goal)}"
        loop_vs_hand = f"{t['loop'].median / t['hand'].median:.2f}" if "loop" in t else "—"
        table.append([row.network.name, row.dtype, row.optimizer, cell("depthlab"), cell("loop"), cell("hand"),
                      cell("torch"), cell("sklearn"), f"{vs_hand:.2f} {_mark(vs_hand <= HAND_TARGET)}", loop_vs_hand,
                      f"{vs_torch:.2f} {_mark(vs_torch <= row.network.vs_torch)}", f"{hand_vs_torch:.2f}",
                      sklearn_text])
    out += _table(["network", "dtype", "optimizer", "depthlab ms", "explicit loop ms", "hand NumPy ms", "PyTorch ms",
                   "scikit-learn ms", "depthlab / hand", "loop / hand", "depthlab / PyTorch", "hand / PyTorch",
                   "speed-up vs scikit-learn"], table)
    out += ["", "Networks (ReLU hidden layers, He-normal initialization, linear output):", ""]
    seen = {}
    for row in rows:
        seen.setdefault(row.network.name, row)
    for name, row in seen.items():
        net = row.network
        lrs = ", ".join(f"{k} lr {v:g}" for k, v in net.lr.items())
        out.append(f"- **{name}**: {net.title}, {net.label}; {net.loss_name} loss on "
                   f"{'MNIST-1D inputs' if net.data == 'mnist1d' else 'Gaussian inputs'}; {lrs}.")
    agreement = []
    for row in rows:
        if row.optimizer == "sgd":
            parts = ", ".join(f"{k} {v:.1e}" for k, v in row.agreement.items())
            agreement.append(f"{row.network.name} {row.dtype}: {parts}")
    out += ["", "Same computation: relative difference of one SGD update from depthlab's, from the same weights on "
                "the same batch — " + "; ".join(agreement) + "."]
    bad = [f"{r.network.name} {r.dtype} {r.optimizer}" for r in rows if not r.finite]
    out += ["", "All weights stayed finite during timing." if not bad else
            f"**Non-finite weights after timing**: {', '.join(bad)} (those timings are not comparable)."]
    return out


def _render_resmlp(rows: list[StepRow], checks: list[Check]) -> list[str]:
    out = ["", "## Training step: residual MLP", "",
           "Median time of one training step of `dl.ResMLP(..., block=\"preact\", norm=None | \"batch\")` in "
           "milliseconds (in brackets the interquartile range of the blocks / the median), measured as the training "
           "step above: *depthlab* is `dl.TrainStep(net, \"cross_entropy\", opt)(x, y)`; *hand* the hand-written "
           "NumPy loop for the same network (preallocated arrays, in-place ReLU, batch norm by the textbook "
           "formulas, in-place updates); *PyTorch* the same blocks as `torch.nn` modules (each `h + branch(h)`, "
           "`branch` an `nn.Sequential`; `nn.BatchNorm1d` in train mode) with `torch.optim`. Batch norm "
           "updates its running statistics in every contender. Targets (issue 15): depthlab ≤ 1.15 × hand and "
           "≤ 0.8 × PyTorch; float32 stays float32.", ""]
    table = []
    for row in rows:
        t, network = row.timings, row.network
        d = t["depthlab"].median
        vs_hand, vs_torch = d / t["hand"].median, d / t["torch"].median
        where = f"{network.name} {row.dtype} {row.optimizer}"
        checks.append(Check(f"{where}: depthlab/hand ≤ {network.vs_hand:.2f}", f"{vs_hand:.2f}",
                            vs_hand <= network.vs_hand))
        checks.append(Check(f"{where}: depthlab/PyTorch ≤ {network.vs_torch:.1f}", f"{vs_torch:.2f}",
                            vs_torch <= network.vs_torch))
        cells = [f"{_ms(t[kind].median)} ({t[kind].spread:.0%})" for kind in ("depthlab", "hand", "torch")]
        table.append([network.name, row.dtype, row.optimizer, *cells,
                      f"{vs_hand:.2f} {_mark(vs_hand <= network.vs_hand)}",
                      f"{vs_torch:.2f} {_mark(vs_torch <= network.vs_torch)}",
                      f"{t['hand'].median / t['torch'].median:.2f}"])
    out += _table(["network", "dtype", "optimizer", "depthlab ms", "hand NumPy ms", "PyTorch ms", "depthlab / hand",
                   "depthlab / PyTorch", "hand / PyTorch"], table)
    out += ["", "Networks (ReLU, He-normal initialization, cross-entropy on MNIST-1D inputs):", ""]
    seen = {row.network.name: row.network for row in rows}
    for name, network in seen.items():
        lrs = ", ".join(f"{k} lr {v:g}" for k, v in network.lr.items())
        out.append(f"- **{name}**: {network.label}; {lrs}.")
    agreement = [f"{row.network.name} {row.dtype}: " + ", ".join(f"{k} {v:.1e}" for k, v in row.agreement.items())
                 for row in rows if row.optimizer == "sgd"]
    out += ["", "Same computation: relative difference of one SGD update of every parameter from depthlab's, from "
                "the same weights on the same batch — " + "; ".join(agreement) + "."]
    bad = [f"{r.network.name} {r.dtype} {r.optimizer}" for r in rows if not r.finite]
    out += ["", "All weights stayed finite and in their dtype during timing." if not bad else
            f"**Non-finite weights or a changed dtype after timing**: {', '.join(bad)}."]
    return out


def _render_fit(rows: list[dict], checks: list[Check]) -> list[str]:
    out = ["", "## fit: one epoch of MNIST-1D", "",
           "Median time of one epoch, SGD, batch 100, cross-entropy. *fit* is `dl.fit(..., epochs=1, verbose=0)`; "
           "*fit + accuracy + bar* adds `metrics=['accuracy']` and the tqdm progress bar (`verbose=1`, written to "
           "/dev/null); *bare loop* is the public-API step over the same shuffled batches (x[order[i:i+100]]); "
           "*hand* the hand-written NumPy step over the same batches; *PyTorch* a `DataLoader(TensorDataset, "
           "shuffle=True)` loop. Each time is the median over fresh processes of each process's median of "
           "blocks (*processes* below); in brackets the spread, interquartile range / median, of the process "
           "medians (of the blocks, with one process). A ratio is the median of the processes' ratios. "
           "Target: fit with metrics and bar ≤ 1.15 × the bare loop.", ""]
    table = []
    for row in rows:
        t = row["timings"]
        ratio_full, ratio = _fit_ratio(row, "fit_full", "bare"), _fit_ratio(row, "fit", "bare")
        checks.append(Check(f"fit epoch {row['dtype']} (accuracy + progress bar) / bare loop ≤ {FIT_TARGET}",
                            f"{ratio_full:.2f}", ratio_full <= FIT_TARGET))
        table.append([row["dtype"], f"{row['samples']} / {row['batch']}", row["processes"],
                      *(_ms(t[kind].median) + (f" ({t[kind].spread:.0%})" if len(t[kind].samples) >= 4 else "")
                        for kind in ("fit", "fit_full", "bare", "hand", "torch")),
                      f"{ratio:.2f}", f"{ratio_full:.2f} {_mark(ratio_full <= FIT_TARGET)}",
                      f"{_fit_ratio(row, 'fit_full', 'torch'):.2f}"])
    out += _table(["dtype", "samples / batch", "processes", "fit ms", "fit + accuracy + bar ms", "bare loop ms", "hand ms",
                   "PyTorch DataLoader ms", "fit / bare", "fit + accuracy + bar / bare", "fit + accuracy + bar / PyTorch"],
                  table)
    return out


def _render_probe(rows: list[dict], checks: list[Check]) -> list[str]:
    first = rows[0]
    label = f"probe {first['depth']}×{first['width']}, {first['samples']} samples"
    table = []
    for row in rows:
        warm = row["timing"].median * 1e3
        checks.append(Check(f"{label}, {row['dtype']} < {PROBE_TARGET_MS:g} ms", f"{warm:.1f} ms",
                            warm < PROBE_TARGET_MS))
        table.append([row["dtype"], f"{warm:.1f} {_mark(warm < PROBE_TARGET_MS)}", f"{row['cold'] * 1e3:.1f}",
                      f"{row['passes'] * 1e3:.1f}", f"{row['floor'] * 1e3:.1f}",
                      f"{(row['timing'].median - row['passes']) * 1e3:.1f}",
                      "—" if row.get("every_core") is None else f"{row['every_core'] * 1e3:.1f}"])
    return ["", "## probe", "",
            f"`dl.probe(net, x)` of a {first['depth']}-layer, {first['width']}-wide ReLU network (He-normal) on "
            f"{first['samples']} samples: forward and backward statistics of every layer, with the mean-field "
            f"theory beside them. Target: < {PROBE_TARGET_MS:g} ms. *passes*: the forward and backward pass alone "
            "(`net.forward(x, record=True)`, `net.backward(g)`); *matmul floor*: only their three matrix products "
            "per layer, into preallocated arrays — no probe can be faster; *statistics*: probe − passes. The cold "
            "call is the first in the process (it fills the theory's caches). The target is judged on one BLAS "
            "thread, like every other row; *all cores* is the same probe with BLAS's default thread count, one per "
            f"usable core ({first.get('cores', 1)} here), which is what a user running it gets (no target; — "
            "on one core).", "",
            *_table(["dtype", "probe ms (median)", "cold ms", "passes ms", "matmul floor ms", "statistics ms",
                     "probe ms, all cores"], table)]


def _render_memory(rows: list[dict], checks: list[Check]) -> list[str]:
    out = ["", "## Peak memory: training the wide network", "",
           "Peak resident memory above the baseline, in MiB, each in a fresh process: the baseline is taken after "
           "the imports, the data and the initial weight arrays exist (the peak counter VmHWM is reset there via "
           "/proc/self/clear_refs); the peak covers building the model and optimizer and 10 training steps. "
           "Target: depthlab ≤ PyTorch.", ""]
    table = []
    for row in rows:
        r = row["results"]
        mib = {k: v["extra_kib"] / 1024 for k, v in r.items()}
        ok = mib["depthlab"] <= mib["torch"]
        checks.append(Check(f"peak memory wide {row['dtype']} {row['optimizer']}: depthlab ≤ PyTorch",
                            f"{mib['depthlab']:.1f} vs {mib['torch']:.1f} MiB", ok))
        table.append([row["dtype"], row["optimizer"], f"{mib['depthlab']:.1f}",
                      f"{mib['hand']:.1f}" if "hand" in mib else "—",
                      f"{mib['torch']:.1f}", f"{mib['depthlab'] / mib['torch']:.2f} {_mark(ok)}"
                      if mib["torch"] > 0 else "—"])
    out += _table(["dtype", "optimizer", "depthlab MiB", "hand NumPy MiB", "PyTorch MiB", "depthlab / PyTorch"], table)
    methods = {v["method"] for row in rows for v in row["results"].values()}
    out += ["", f"Measured as: {', '.join(sorted(methods))}."]
    return out


def _render_profile(rows: list[dict]) -> list[str]:
    out = ["", "## Where the time goes (depthlab)", "",
           "Per phase of the explicit loop: median microseconds (share of the step). *matmul floor*: only the step's "
           "3 matrix products per layer, into preallocated arrays; *overhead* = step − floor.", ""]
    table = []
    for row in rows:
        phases = row["phases"]
        total = sum(phases.values())
        cells = [f"{v * 1e6:.0f} ({v / total:.0%})" for v in phases.values()]
        table.append([row["network"].name, row["dtype"], row["optimizer"], *cells, f"{total * 1e6:.0f}",
                      f"{row['matmul'] * 1e6:.0f}",
                      f"{(total - row['matmul']) * 1e6:.0f} ({(total - row['matmul']) / total:.0%})"])
    names = list(rows[0]["phases"]) if rows else []
    out += _table(["network", "dtype", "optimizer", *names, "step µs", "matmul floor µs", "overhead µs"], table)
    out += ["", "cProfile, own time per step (tottime; a NumPy operator such as `@` or `+=` is charged to the Python "
                "function that executes it, so `Linear.forward` includes its matrix product):"]
    for row in rows:
        if row["top"] is None:
            continue
        out += ["", f"**{row['network'].name}, {row['dtype']}, {row['optimizer']}**", ""]
        out += _table(["function", "calls/step", "own µs/step", "share", "cumulative µs/step"],
                      [[f"`{r['function']}`", f"{r['calls_per_step']:.0f}", f"{r['own_us']:.1f}", f"{r['share']:.0%}",
                        f"{r['cum_us']:.1f}"] for r in row["top"]])
    return out


METHOD = """
- **One process, interleaved.** Every contender of a network is built in the same process from the same
  initial weights (depthlab's `dl.MLP(..., init="he_normal", rng=0)`, copied) and trained on the same
  batches (8 batches, cycled; C-contiguous arrays of the benchmark's dtype; PyTorch wraps the same
  buffers with `torch.from_numpy`, converted once before timing). Each round times one block of every
  contender; the order rotates every round.
- **Warm-up.** Each contender first runs for 0.3 s (caches, lazy imports, allocator pools); the number
  of steps per block is then chosen so that a block lasts about `--min-block` seconds (default 0.1 s).
- **Median of blocks.** The time per step is the median over `--repeats` blocks (default 15); the
  interquartile range of the blocks is shown as a fraction of the median.
- **CPU time.** A block is timed by the process's CPU time (`time.process_time`, every thread of the
  process), not by the wall clock: on a shared or virtual machine another tenant's work (or the
  hypervisor's steal) stretches wall time by 10-60% at random, and would decide ratios of a few
  percent; it does not add to this process's CPU time. Each contender runs on one thread here, so
  its CPU time is its time. `--clock wall` times by the wall clock instead.
- **Fresh processes for fit.** An epoch of `fit` allocates and frees more than a step, and where the
  allocator places things differs from process to process: one process's fit ratio moves by up to ±0.05.
  As pyperf does for every benchmark, the fit section therefore runs
  in `--processes` fresh processes one after another (default 5), each timing its interleaved blocks as
  above; a time is the median of the process medians, a ratio the median of the per-process ratios.
- **Garbage collector.** `gc.collect()` before every block, collector off during it (timeit's convention),
  so no contender pays for another's garbage; objects alive before timing are frozen out of the
  collector (`gc.freeze()`), so the collection costs microseconds instead of PyTorch's half a second.
- **Threads.** NumPy's BLAS thread count (threadpoolctl) is what PyTorch gets through
  `torch.set_num_threads`; `--threads N` sets both.
- **BLAS kernels.** `make bench` unsets `OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE`, which some
  machines set to pin old OpenBLAS builds to an older processor's kernels, so that NumPy's
  OpenBLAS uses the kernels it detects, as PyTorch's MKL does; the machine table names the
  kernel that ran and whether it was detected or forced.
- **Same computation.** One SGD step from the same weights on the same batch gives the same update in every
  implementation (the relative differences are printed under the step table), and all weights are checked
  to be finite after timing (subnormal or NaN arithmetic would distort timings).
- **Contenders.** *depthlab*: public API only (`opt.zero_grad()`, `net.forward(x, record=True)`,
  `dl.losses.<loss>.grad`, `net.backward(g, input_grad=False, intermediates=False)`, `opt.step()`), including
  its input checks. *hand*: the minimal
  NumPy loop — `h @ W.T`, `+= b`, in-place ReLU, the loss gradient in place, `g.T @ h`, `g.sum(0)`,
  `g @ W`, `g *= h > 0`, in-place SGD/Adam updates with scratch buffers — the floor for a NumPy library.
  *PyTorch*: `nn.Sequential` of `nn.Linear`/`nn.ReLU`, `nn.CrossEntropyLoss`/`nn.MSELoss`, `torch.optim.SGD`
  /`Adam` (default single-tensor CPU path), `zero_grad(set_to_none=True)`. *scikit-learn*:
  `MLPClassifier(solver=..., alpha=0, momentum=0).partial_fit(x, y)` — one update per call, with its own
  input validation (its per-call cost is part of what a user pays).
- **Residual MLP.** The same rules for `dl.ResMLP` (pre-activation blocks, with and without batch norm):
  *hand* is the NumPy loop written for that network (batch norm's forward and backward by the textbook
  formulas, running statistics updated), *PyTorch* the same blocks as `torch.nn` modules; every contender
  starts from depthlab's initial parameters (γ, β of batch norm included) and the agreement of one SGD
  update covers all of them.
- **Memory.** Each framework in a fresh subprocess; peak resident set (VmHWM, reset with
  `/proc/self/clear_refs` after imports, two steps of a tiny network of the same kind — so lazy imports
  such as `torch._dynamo`, loaded by `torch.optim`, are not counted — and the data) minus the resident
  set at that point. It counts the
  model, gradients, optimizer state, activations and allocator caches.
- **Profile.** Phase times from `time.perf_counter` around each public call; function shares from cProfile
  over 300 steps (cProfile's own overhead inflates Python-heavy functions; use it for shares, the step
  table for times).
"""


# ============================================================================= main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition; writes to a temporary file "
                                                             "unless --out is given")
    parser.add_argument("--out", metavar="PATH", help="where to write the Markdown results "
                                                      "(default benchmarks/RESULTS.md)")
    parser.add_argument("--repeats", type=_positive_int, metavar="N", help="timed blocks per contender (default 15)")
    parser.add_argument("--min-block", type=float, default=0.1, metavar="SECONDS",
                        help="length of one timed block (default 0.1 s)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only these sections/networks (repeatable or comma-separated): "
                             + ", ".join([*C.NETWORKS, *SECTIONS]))
    parser.add_argument("--threads", type=_positive_int, metavar="N",
                        help="BLAS and PyTorch threads (default: NumPy's current BLAS thread count)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="cpu",
                        help="cpu: this process's CPU time (default; what other tenants of a shared machine do "
                             "not add to), wall: elapsed time")
    parser.add_argument("--processes", type=_positive_int, metavar="N",
                        help="fresh processes the fit section is measured in (default 5; 1 with --smoke)")
    parser.add_argument("--dtypes", type=_dtypes, default=DTYPES, metavar="LIST",
                        help="the dtypes the sections measure, comma-separated (default float32,float64)")
    # internal: one fresh-process memory measurement, one fresh-process fit measurement
    parser.add_argument("--fit-process", choices=("float32", "float64"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-probe", choices=MEMORY_KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--network", default="wide", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--optimizer", default="adam", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    valid = set(C.NETWORKS) | set(SECTIONS)
    for entry in args.only or []:
        for name in filter(None, entry.split(",")):
            if name not in valid:
                parser.error(f"--only {name!r}: choose from {', '.join([*C.NETWORKS, *SECTIONS])}")
    return args


DTYPES = ("float32", "float64")


def _dtypes(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    wrong = [name for name in names if name not in DTYPES]
    if wrong or not names:
        raise argparse.ArgumentTypeError(f"expected some of {','.join(DTYPES)} (comma-separated), got {text!r}")
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {value}")
    return value


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.network, args.dtype, args.optimizer, args.steps,
                                      args.smoke, args.threads or 1)))
        return 0
    if args.fit_process:
        threads = args.threads or 1
        set_threads(threads)
        settings = Settings.from_args(args, threads)
        medians = {kind: t.median for kind, t in fit_timings(settings, args.fit_process).items()}
        print(json.dumps(medians))
        return 0
    started = time.perf_counter()
    load_start = load_average()
    threads = args.threads or blas_threads()[0]
    set_threads(threads)
    if os.environ.get("OPENBLAS_CORETYPE"):
        print(f"note: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} forces OpenBLAS's kernels; "
              "`make bench` unsets it (see RESULTS.md, Method)", file=sys.stderr)
    import torch

    settings = Settings.from_args(args, threads)
    if args.out:
        out = Path(args.out)
    elif args.smoke:
        out = Path(tempfile.mkdtemp(prefix="depthlab-bench-")) / "RESULTS.md"
    else:
        out = HERE / "RESULTS.md"

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    results = {}
    runners = {"steps": bench_steps, "resmlp": bench_resmlp, "fit": bench_fit, "probe": bench_probe,
               "memory": bench_memory, "profile": bench_profile}
    for name in SECTIONS:
        if name in settings.sections:
            results[name] = runners[name](settings, log)
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    load_end = load_average()
    loads = [float(v) for v in (load_start.split(" / ")[0], load_end.split(" / ")[0]) if v != "n/a"]
    meta = {
        "argv": " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "seconds": time.perf_counter() - started,
        "cpu": cpu_model(), "cores": cores, "usable_cores": usable,
        "blas": blas_threads()[1], "torch_threads": torch.get_num_threads(),
        "load_start": load_start, "load_end": load_end,
        "busy": bool(loads) and max(loads) > 0.5 * usable + 0.25,
        "forced_kernel": os.environ.get("OPENBLAS_CORETYPE"),
        "versions": versions(), "platform": platform.platform(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results, meta, settings), encoding="utf-8")
    log(f"wrote {out}")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
