"""A recorded pass computed as two halves of the batch, each on its own thread.

Every row of a Linear or activation layer's output depends on the same row of its input
alone (:attr:`~depthlab.nn.layer.Layer.rowwise`), so a network of them can run rows 0 … m−1
and m … N−1 apart: two threads, two processors (:func:`depthlab._fast.pair.run_pair`). Each
half writes into its rows of the same whole arrays (f_k, h_{k+1}, dL/df_k, one per layer, from
the network's reused :class:`~depthlab._fast.buffers.Buffers`), so the trace and the gradients
hold whole arrays as after one pass. The halves meet only at the end.

The numbers: each value is computed by the same arithmetic as in one pass. Measured with
OpenBLAS on one thread, float64 products of a half batch split at a multiple of ``ALIGN``
rows are bitwise those of the whole batch; float32 ones may differ in the last bit (OpenBLAS
rounds their row tails differently), as products on two BLAS threads may.

The engine runs the halves (:meth:`~depthlab.nn.engine.Engine.forward` with ``halves``);
this module says where they meet and holds their arrays.

A halves pass backpropagates dL/dx and the intermediates only (``parameter_grads=False``):
dL/dΩ = Σ_n over the batch would be a sum of two halves' products, rounded differently.
"""
from __future__ import annotations

import threading

import numpy as np

ALIGN = 16              # the halves meet at a multiple of this many rows


def halves(n: int) -> tuple[slice, slice]:
    """The two halves' rows of a batch of n ≥ 2: (rows 0 … m−1, rows m … n−1), m the multiple
    of ``ALIGN`` nearest below n/2 (n/2 rounded down below 2·ALIGN rows)."""
    if n < 2:
        raise ValueError(f"a pass in halves needs a batch of at least 2 samples, got {n}.")
    m = (n // 2) // ALIGN * ALIGN or n // 2
    return slice(0, m), slice(m, n)


class HalvesPass:
    """What a forward pass in halves kept: one :class:`~depthlab.nn.engine.Pass` per half."""

    __slots__ = ("parts", "rows", "output_shape", "plan")

    def __init__(self, parts: tuple, rows: tuple[slice, slice], output_shape: tuple):
        self.parts, self.rows, self.output_shape, self.plan = parts, rows, output_shape, "trace"


class WholeArrays:
    """The arrays a halves pass writes into: for each key a whole array (reused from the
    network's Buffers where it can be), of which each half takes its rows."""

    def __init__(self, take, n: int):
        self.take, self.n = take, n
        self.arrays: dict = {}
        self.lock = threading.Lock()

    def for_half(self, i: int, rows: slice):
        """The ``work["take"]`` of layer i in the half of ``rows``."""
        def take(key: str, shape: tuple, dtype) -> np.ndarray | None:
            whole_shape, dtype = (self.n, *shape[1:]), np.dtype(dtype)
            with self.lock:
                array = self.arrays.get((i, key))
                if array is None:
                    array = None if self.take is None else self.take((i, key), whole_shape, dtype)
                    array = self.arrays[(i, key)] = np.empty(whole_shape, dtype) if array is None else array
            if array.shape != whole_shape or array.dtype != dtype or shape[0] != rows.stop - rows.start:
                return None                     # not a half of this array: NumPy allocates (joined by a copy)
            return array[rows]
        return take


def joined(first: np.ndarray | None, second: np.ndarray | None, rows: tuple[slice, slice]) -> np.ndarray | None:
    """The whole array of which ``first`` and ``second`` are the halves' rows: the array they are
    views of, when they are, else the two stacked (a copy)."""
    if first is None or second is None:
        return None
    whole = first.base
    if (isinstance(whole, np.ndarray) and whole is second.base and whole.flags.c_contiguous
            and whole.shape == (rows[1].stop, *first.shape[1:]) and whole.dtype == first.dtype
            and first.ctypes.data == whole[rows[0]].ctypes.data and second.ctypes.data == whole[rows[1]].ctypes.data
            and first.shape == whole[rows[0]].shape and second.shape == whole[rows[1]].shape):
        return whole
    return np.concatenate((first, second))
