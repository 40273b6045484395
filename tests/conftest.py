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
    """Each experiment run once with --quick, on first use, for the whole test run: the first test
    worker that needs one runs it (one file lock per experiment) and leaves its Result, pickled,
    beside its files in a folder every worker shares; the others read it (a worker runs only what
    its tests need). Run on each worker instead, the quick runs took twice their 75 s of CPU."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, name):
        import pickle

        from filelock import FileLock

        from depthlab.lab.experiments import base

        saved = self.root / f"{name}.pickle"
        with FileLock(str(self.root / f"{name}.lock")):
            if saved.exists():
                result = pickle.loads(saved.read_bytes())
            else:
                result = base.run_experiment(name, quick=True, out_dir=self.root / name, progress=False)
                saved.write_bytes(pickle.dumps(result))
        self[name] = result
        return result


def pytest_collection_modifyitems(config, items):
    """The tests of the quick runs first (the rest keep their order). pytest-xdist sends each
    worker its first tests as one run of consecutive tests (an eighth of all: ~480), so these
    ~200 go to the first worker, which computes each run once while the other works through the
    rest; spread among the rest, both workers computed most runs, or waited for each other's."""
    items.sort(key=lambda item: "quick_runs" not in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def quick_runs(tmp_path_factory):
    """``quick_runs[name]``: the Result of ``depthlab run NAME --quick``, shared by the test run."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):     # pytest-xdist: each worker's folder is inside the run's
        root = root.parent
    shared = root / "quick"
    shared.mkdir(exist_ok=True)
    return QuickRuns(shared)

