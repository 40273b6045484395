"""Shared test set-up: hidden floating-point trouble fails loudly.

NumPy overflow, division by zero and invalid operations raise FloatingPointError inside
every test (underflow to zero is normal and allowed). Code that expects overflow must say so
with a local ``np.errstate``.
"""
import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _numpy_errors_raise():
    with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


class QuickRuns(dict):
    """Each experiment run once with --quick, on first use (a test worker runs only what it needs)."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, name):
        from depthlab.lab.experiments import base

        self[name] = base.run_experiment(name, quick=True, out_dir=self.root / name, progress=False)
        return self[name]


@pytest.fixture(scope="session")
def quick_runs(tmp_path_factory):
    """``quick_runs[name]``: the Result of ``depthlab run NAME --quick``, shared by the session."""
    return QuickRuns(tmp_path_factory.mktemp("quick"))
