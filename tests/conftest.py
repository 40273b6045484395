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
