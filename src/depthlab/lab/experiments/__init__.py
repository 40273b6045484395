"""The lab's named experiments: a registry from CLI name to module.

Each experiment is a module in this package (file name = experiment name with '-' → '_')
defining ``NAME``, ``TITLE``, ``SUMMARY``, ``REPRODUCES``, a ``Config`` dataclass whose
defaults are the full run, a ``QUICK`` dict of overrides for ``--quick`` (smaller widths,
samples and steps, never the quantity a claim is about), an optional ``validate(config)``,
``run(config, progress=None) -> Result`` (see :mod:`.base`) and, for an experiment that
reproduces a paper, ``claims(metrics) -> list[Claim]`` judging it from its own metrics (see
:mod:`depthlab.lab.claims`; the tour's index gathers them into a gallery).

    >>> from depthlab import experiments
    >>> experiments.names()[:2]
    ['init-variance', 'gradient-variance']
    >>> module = experiments.get("init-variance")       # imported on first use
    >>> result = experiments.run_experiment("init-variance", quick=True, out_dir="out/iv")

To add an experiment, write its module and add one line to :data:`EXPERIMENTS` (and its name
to :data:`TOUR` if ``depthlab report`` should run it).
"""
from __future__ import annotations

import difflib
import importlib
from types import ModuleType

# CLI name -> module path, in the order `depthlab list` shows them.
EXPERIMENTS: dict[str, str] = {
    "init-variance": "depthlab.lab.experiments.init_variance",
    "gradient-variance": "depthlab.lab.experiments.gradient_variance",
    "activation-histograms": "depthlab.lab.experiments.activation_histograms",
    "optimizers": "depthlab.lab.experiments.optimizers",
    "fit-1d": "depthlab.lab.experiments.fit_1d",
    "fit-2d": "depthlab.lab.experiments.fit_2d",
    "three-layer": "depthlab.lab.experiments.three_layer",
    "gradcheck": "depthlab.lab.experiments.gradcheck_study",
    "linear-regions": "depthlab.lab.experiments.linear_regions",
    "depth-trainability": "depthlab.lab.experiments.depth_trainability",
    "signal-theory": "depthlab.lab.experiments.signal_theory",
    "edge-of-chaos": "depthlab.lab.experiments.edge_of_chaos",
    "dynamical-isometry": "depthlab.lab.experiments.dynamical_isometry",
    "residual-variance": "depthlab.lab.experiments.residual_variance",
    "shattered-gradients": "depthlab.lab.experiments.shattered_gradients",
    "normalization-vs-init": "depthlab.lab.experiments.normalization_vs_init",
}

# What `depthlab report` runs, in this order: every experiment.
TOUR: list[str] = list(EXPERIMENTS)


def names() -> list[str]:
    """The registered experiment names, in registry order."""
    return list(EXPERIMENTS)


def get(name: str) -> ModuleType:
    """The experiment module registered as ``name`` (imported on first use).

    Raises
    ------
    ValueError
        ``name`` is not registered; the message lists the names (and the closest one).
    """
    if not isinstance(name, str):
        raise TypeError(f"experiment name must be a string, got {type(name).__name__} {name!r}.")
    path = EXPERIMENTS.get(name) or EXPERIMENTS.get(name.strip().lower().replace("_", "-"))
    if path is None:
        close = difflib.get_close_matches(name, names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown experiment {name!r}; choose one of: {', '.join(names())}.{hint}")
    return importlib.import_module(path)


def __getattr__(attribute: str):
    # run_experiment, Result, ... from .base without importing it (and matplotlib) up front
    if attribute in ("run_experiment", "run_tour", "make_config", "Result", "ConfigError", "OutputError"):
        from . import base
        return getattr(base, attribute)
    raise AttributeError(f"module 'depthlab.lab.experiments' has no attribute {attribute!r}")
