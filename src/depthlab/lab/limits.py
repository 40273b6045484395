"""Size caps for what a typed number may ask of the lab: seconds to minutes, never all memory.

Every ``depthlab`` command and experiment checks its sizes against these caps before it
allocates anything, and says which cap a value broke and how to stay under it. The caps are
generous for the studies here (the defaults sit far below them) and stop a typo such as
``--depth 1000000`` or ``--set width=1e23`` from running for hours or exhausting memory:

==================  ==============================================================  ===========
cap                 what it bounds                                                   value
==================  ==============================================================  ===========
``MAX_UNITS``       a network's width, depth, input or output features               10 000
``MAX_SAMPLES``     samples of a batch or data set                                   1 000 000
``MAX_ENTRIES``     numbers one run keeps at once (every f_k, h_k and gradient)      50 000 000
``MAX_WORK``        multiply-adds one run performs (a few minutes on one core)     10^11
``MAX_STEPS``       optimizer steps one run takes (each has a fixed cost)             300 000
==================  ==============================================================  ===========

The variance caps keep the floating-point arithmetic meaningful: ``MAX_VARIANCE`` (10^6) for a
σ² of weights or biases (beyond it the statistics of a deep network overflow float64 within a
few layers and say nothing a smaller value does not).
"""
from __future__ import annotations

import math

MAX_UNITS = 10_000
MAX_SAMPLES = 1_000_000
MAX_ENTRIES = 50_000_000
MAX_WORK = 1e11
MAX_VARIANCE = 1e6
MAX_STEPS = 300_000     # optimizer steps of one run: each costs ~0.1–1 ms of Python however small

RUN_CAPS = (f"--set values are capped so a typed number cannot take hours or all the memory: network sizes "
            f"<= {MAX_UNITS:,}, samples <= {MAX_SAMPLES:,}, variances <= {MAX_VARIANCE:g}, at most "
            f"{MAX_ENTRIES:.0e} numbers held, {MAX_WORK:.0e} multiply-adds and {MAX_STEPS:,} optimizer steps per run "
            "(each experiment's validate() states its own, e.g. histogram panels or grid points)")
PROBE_CAPS = (f"--depth, --width and --in-features <= {MAX_UNITS:,}, --samples <= {MAX_SAMPLES:,}, "
              f"--sigma2 and --bias-variance <= {MAX_VARIANCE:g}, depth × width × samples <= {MAX_ENTRIES:.0e} "
              f"numbers held and depth × width² × samples <= {MAX_WORK:.0e} multiply-adds")


def check_at_most(value, cap: float, name: str, why: str = "") -> None:
    """``value`` (a number, or every number of a tuple) must be <= ``cap``."""
    for item in value if isinstance(value, (tuple, list)) else (value,):
        if item is not None and item > cap:
            reason = f" ({why})" if why else ""
            shown = f"{cap:,}" if isinstance(cap, int) else f"{cap:g}"
            raise ValueError(f"{name} must be <= {shown}{reason}, got {_text(item)}")


def check_product(amount: float, cap: float, formula: str, what: str, lower: str) -> None:
    """Refuse when ``amount`` (a product of sizes, described by ``formula``) exceeds ``cap``.

    The message reads e.g. "depth·width·samples = 8e+08 numbers held exceeds the cap 5e+07;
    lower depth, width or samples".
    """
    if amount > cap:
        raise ValueError(f"{formula} = {float(amount):.3g} {what} exceeds the cap {cap:.0e} "
                         f"(a run must fit in memory and finish in minutes); lower {lower}")


def check_steps(steps: int, formula: str, lower: str) -> None:
    """Refuse a run of more than ``MAX_STEPS`` optimizer steps (``formula`` says how they add up)."""
    check_product(steps, MAX_STEPS, formula, "optimizer steps", lower)


def check_units(config, *names: str) -> None:
    """For ``validate(config)``: each named int field (or tuple of ints) within ``MAX_UNITS``."""
    for name in names:
        check_at_most(getattr(config, name), MAX_UNITS, name, "the cap on a network's sizes")


def check_samples(config, *names: str) -> None:
    """For ``validate(config)``: each named field within ``MAX_SAMPLES``."""
    for name in names:
        check_at_most(getattr(config, name), MAX_SAMPLES, name, "the cap on samples")


def check_variance(config, *names: str) -> None:
    """For ``validate(config)``: each named variance within ``MAX_VARIANCE``."""
    for name in names:
        check_at_most(getattr(config, name), MAX_VARIANCE, name,
                      "larger variances overflow float64 within a few layers")


def _text(value) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def check_items(config, name: str, cap: int, why: str = "one panel or curve each") -> None:
    """For ``validate(config)``: the tuple field ``name`` holds at most ``cap`` values."""
    count = len(getattr(config, name))
    if count > cap:
        raise ValueError(f"{name} may list at most {cap} values ({why}), got {count}")
