"""``Buffers``: arrays a network reuses from one pass to the next, when nobody else holds them.

A training step allocates the same arrays every time: f_k and h_{k+1} in the forward pass,
dL/dh_k, dL/df_k, dL/dΩ_k and dL/dβ_k in the backward pass. Allocating them afresh costs
more than the arithmetic suggests: glibc hands a freed heap back to the operating system, so
each step page-faults its arrays in again (64 MB per step for the seed notebook's 50-layer,
80-wide network on 1000 samples in float64, about a quarter of the step's time).

``Buffers.take(key, shape, dtype)`` returns the array kept under ``key`` when nothing outside
still refers to it — CPython's reference count says so — and a fresh one otherwise. A trace,
a gradient or a view of one that a user kept is therefore never overwritten: the next pass
simply writes elsewhere. (NumPy's own temporary elision rests on the same reference counts.)

Small arrays are not kept (``take`` returns None: let NumPy allocate). Below
``REUSE_BYTES`` malloc serves them from its free lists, whose memory is still in cache, and
a fixed buffer per array is measurably slower on small networks.

``FlatArrays`` is the one exception: a network's backward pass (the explicit loop's and
:class:`~depthlab.training.step.TrainStep`'s alike) writes every parameter gradient, small or
large, into views of one flat array kept between steps. One array of all of them is worth
its upkeep: ``fit`` checks every gradient for divergence with one dot product instead of
one per array, an optimizer updates a small network as one array
(:mod:`depthlab._fast.flat`), and the backward pass runs as fast as with fresh arrays.
"""
from __future__ import annotations

import functools
import math
import sys
import weakref

import numpy as np

REUSE_BYTES = 1 << 18  # 256 KiB: arrays from this size on are reused
FLAT_BYTES = 1 << 20   # 1 MiB: parameters up to this size in all are laid out and updated as one array


@functools.lru_cache(maxsize=64)
def ones(size: int, dtype: np.dtype) -> np.ndarray:
    """A read-only vector of ``size`` ones, kept: sums written as BLAS products with it
    (``ones(N) @ g`` for Σ_n g[n, :], ``g @ ones(C)`` for row sums) run 2–4× faster than
    ``g.sum(axis=…)`` on a network's arrays, and in float32 accumulate more accurately."""
    vector = np.ones(size, dtype=dtype)
    vector.flags.writeable = False
    return vector


def batch_sum(g: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Σ_n g[n, :] of a batch ``g`` (N, D): shape (D,), one matrix–vector product (into ``out``)."""
    return np.matmul(ones(g.shape[0], g.dtype), g, out=out)


def entry_sum(a: np.ndarray) -> float:
    """Σ of every entry of a float array, as one dot product (non-finite if any entry is;
    a cheap first test of finiteness, since only an overflow makes finite entries sum to inf)."""
    flat = a.reshape(-1)
    return float(np.dot(flat, ones(flat.size, flat.dtype)))


class Buffers:
    """One reusable array per key (e.g. ``("f", k)`` for f_k)."""

    __slots__ = ("_arrays",)

    def __init__(self):
        self._arrays: dict = {}

    def take(self, key, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
        """An array of ``shape`` and ``dtype`` (contents undefined) that no one else references,
        or None for an array under ``REUSE_BYTES`` (pass it on as ``out=None``)."""
        array = self._arrays.get(key)
        if (array is not None and sys.getrefcount(array) == _UNREFERENCED
                and array.shape == shape and array.dtype == dtype):
            return array
        if math.prod(shape) * dtype.itemsize < REUSE_BYTES:
            return None
        array = self._arrays[key] = np.empty(shape, dtype)
        return array

    def parameter_gradients(self, shapes: list[tuple[int, ...]], dtype: np.dtype) -> FlatArrays:
        """The :class:`FlatArrays` for dL/dΩ_0, dL/dβ_0, dL/dΩ_1, … (kept under its own key;
        a new one when the shapes or the dtype change)."""
        arrays = self._arrays.get("parameter gradients")
        if arrays is None or arrays.shapes != shapes or arrays.dtype != dtype:
            arrays = self._arrays["parameter gradients"] = FlatArrays(shapes, dtype)
        return arrays

    def _count(self, key) -> int:
        """The reference count ``take`` sees for the array under ``key`` (same statements)."""
        array = self._arrays.get(key)
        return sys.getrefcount(array)

    def clear(self) -> None:
        """Let go of every array (they are freed once no one else holds them)."""
        self._arrays.clear()

    def __len__(self) -> int:
        return len(self._arrays)

    def __reduce__(self):
        return Buffers, ()  # copies and pickles start empty: buffers are a cache, not state


def flat_views(shapes, dtype) -> tuple[np.ndarray, list[np.ndarray]]:
    """A new flat array (contents undefined) and views of it of the given shapes, laid end to
    end in order: C-contiguous, each the next slice of the flat array."""
    sizes = [math.prod(shape) for shape in shapes]
    flat = np.empty(sum(sizes), dtype)
    ends = np.cumsum(sizes, dtype=np.int64).tolist()
    return flat, [flat[end - size:end].reshape(shape) for size, end, shape in zip(sizes, ends, shapes)]


class FlatArrays:
    """Arrays of given shapes laid end to end in one flat array, reused as a whole.

    A training step's parameter gradients dL/dΩ_0, dL/dβ_0, dL/dΩ_1, … live here: the
    step writes into ``take()``'s views, and ``flat`` holds all of them, so one dot product
    tells whether every gradient is finite (see :func:`entry_sum`). ``take`` hands out the
    same views again only when no one outside holds any of them, nor any view of one (the
    reference counts of the views and of ``flat`` say so); otherwise it lays out a fresh
    flat array and the held gradients stay as they were.

    Parameters
    ----------
    shapes : sequence of tuples
        The arrays' shapes, in order.
    dtype : np.dtype
    keys : sequence, optional
        One key per array (e.g. the parameters): ``by_key`` then maps each key to its view.
    """

    __slots__ = ("shapes", "dtype", "flat", "views", "keys", "by_key", "_free", "_index", "_ends", "__weakref__")

    def __init__(self, shapes, dtype, keys=None):
        self.keys = None if keys is None else list(keys)
        self.shapes, self.dtype = [tuple(shape) for shape in shapes], np.dtype(dtype)
        self._ends = np.cumsum([math.prod(shape) for shape in self.shapes], dtype=np.int64).tolist()
        self.flat = None
        self._lay_out()
        self._free = self._counts() if _UNREFERENCED else None  # nothing held yet

    def _lay_out(self) -> None:
        if self.flat is not None:
            _LAYOUTS.pop(id(self.flat), None)  # held views of the old array are found by address
        self.flat, self.views = flat_views(self.shapes, self.dtype)
        self.by_key = None if self.keys is None else dict(zip(self.keys, self.views))
        self._index = {id(view): i for i, view in enumerate(self.views)}
        _LAYOUTS[id(self.flat)] = self

    def span(self, arrays: list) -> tuple[np.ndarray, int, int] | None:
        """``(flat, begin, end)`` if ``arrays`` are consecutive views of this layout (the
        objects ``take`` handed out), so that they tile ``flat[begin:end]``; else None."""
        i = self._index.get(id(arrays[0]))
        if i is None or self.views[i] is not arrays[0]:
            return None
        views = self.views[i:i + len(arrays)]
        if len(views) != len(arrays) or any(a is not v for a, v in zip(arrays, views)):
            return None
        return self.flat, self._ends[i] - views[0].size, self._ends[i + len(arrays) - 1]

    def _counts(self) -> tuple[int, int]:
        """(the largest reference count of a view, the count of ``flat``), as ``take`` sees them."""
        return max(map(sys.getrefcount, self.views)), sys.getrefcount(self.flat)

    def take(self) -> list[np.ndarray]:
        """The views to write into (contents undefined)."""
        if self._counts() != self._free:
            self._lay_out()
        return self.views


# id(flat array) -> the live FlatArrays that laid it out (an entry goes with its FlatArrays)
_LAYOUTS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def span_of(arrays: list) -> tuple[np.ndarray, int, int] | None:
    """``(flat, begin, end)`` when ``arrays`` are consecutive views handed out by a live
    :class:`FlatArrays` (found by identity, without reading addresses), else None."""
    base = arrays[0].base if isinstance(arrays[0], np.ndarray) else None
    layout = None if base is None else _LAYOUTS.get(id(base))
    if layout is None or layout.flat is not base:
        return None
    return layout.span(arrays)


def _calibrate() -> int:
    """The count ``take`` sees for an array only the buffers hold; 0 (never reuse) without
    reference counting (e.g. PyPy), so an interpreter that counts differently stays safe."""
    if not hasattr(sys, "getrefcount"):
        return 0
    probe = Buffers()
    probe._arrays["probe"] = np.empty(1)
    count = probe._count("probe")
    held = probe._arrays["probe"]
    if probe._count("probe") != count + 1:  # one more holder must show
        return 0
    del held
    return count


_UNREFERENCED = _calibrate()
