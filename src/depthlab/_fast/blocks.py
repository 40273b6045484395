"""An epoch of minibatches in blocks of rows: gathered once per block, scored once per block.

``fit`` cuts the N samples of an epoch, in the order of one permutation, into batches of
B rows. Gathering each batch's rows (``x[order[i:i + B]]``) and scoring each batch's outputs
cost a few NumPy calls per batch — on a small network a tenth of the training step. Here
both happen once per *block* of consecutive batches (:data:`BLOCK_BYTES` of data,
:data:`SCORE_BYTES` of outputs: small enough to stay in cache):

- :func:`batches` gathers a block's rows of every array with one indexing each; a batch is
  then a view of the block;
- :class:`Scores` copies the batches' outputs side by side and lets each metric compute its
  statistics over the block at once.

Metric statistics combine exactly (:mod:`depthlab.training.metrics`), so the epoch's metrics equal
those computed batch by batch. A metric that is a mean of batch values
(``Metric.batchwise``: a plain function wrapped by :class:`~depthlab.training.metrics.MeanOfBatches`)
still sees each batch alone.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from . import enabled

Array = np.ndarray

BLOCK_BYTES = 256 * 1024
"""Rows of the data are gathered up to this many bytes at a time (never fewer than one batch)."""

SCORE_BYTES = 32 * 1024
"""Outputs are kept for scoring up to this many bytes (never fewer than one batch): small
enough to stay in the processor's fastest caches between the copy and the scoring."""


def block_rows(batch_size: int, row_bytes: int, limit: int) -> int:
    """Rows per block: the most whole batches of ``row_bytes`` per row within ``limit`` bytes, at least one."""
    return batch_size * max(1, limit // max(1, batch_size * row_bytes))


def rows_of(order: Array | None, start: int, stop: int):
    """The samples at epoch positions [start, stop): ``order[start:stop]``, or a slice
    when the samples keep their order (``order`` None)."""
    return slice(start, stop) if order is None else order[start:stop]


def batches(arrays: Sequence[Array], order: Array | None, batch_size: int) -> Iterator[list[Array]]:
    """For each batch of the epoch, its rows of every array, in the order of ``order``.

    Parameters
    ----------
    arrays : sequence of arrays indexed by sample along axis 0 (x (N, D_0), targets)
    order : permutation of range(N), or None for the given order
    batch_size : B; the last batch holds the N mod B remaining rows, if any

    Yields a list with one array per input array: views of a block gathered with one
    ``array[order[start:stop]]`` each (views of the arrays themselves when ``order`` is None).
    The next block is gathered into new arrays, so a batch stays valid after the loop moves on.
    """
    n = len(arrays[0])
    row_bytes = sum(a.itemsize * (a.size // max(1, len(a))) for a in arrays)
    block = block_rows(batch_size, row_bytes, BLOCK_BYTES) if enabled() else batch_size
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = rows_of(order, start, stop)
        gathered = [a[rows] for a in arrays]
        for first in range(0, stop - start, batch_size):
            yield [g[first:first + batch_size] for g in gathered]


class Scores:
    """Each metric's statistics over the outputs an epoch has produced so far.

    ``begin(order)`` at the start of each epoch, ``add(output)`` after each batch, in epoch
    order; ``results()`` at any time gives ``{name: value}`` over all outputs added since
    ``begin``. Outputs are copied (a training step may reuse its output array) into a block
    of :data:`SCORE_BYTES`, scored at once when it is full. The block is allocated once and
    serves every epoch, so it stays in cache.

    Parameters
    ----------
    metrics : list of Metric
    targets : one checked target array per metric, indexed by sample (N first)
    batch_size : B
    width, dtype : of the network's output (N, D_out)
    """

    def __init__(self, metrics: Sequence, targets: Sequence[Array], batch_size: int, width: int, dtype):
        self.metrics, self.targets = list(metrics), list(targets)
        self.batchwise = [i for i, metric in enumerate(self.metrics) if metric.batchwise]
        self.blockwise = [i for i, metric in enumerate(self.metrics) if not metric.batchwise]
        dtype = np.dtype(dtype)
        rows = block_rows(batch_size, width * dtype.itemsize, SCORE_BYTES) if enabled() else batch_size
        self.outputs = np.empty((rows, width), dtype) if self.blockwise else None
        self.begin(None)

    def begin(self, order: Array | None) -> None:
        """A new epoch, its samples in the order of ``order`` (None: as given)."""
        self.order = order
        self.statistics: list = [None] * len(self.metrics)
        self.added = 0    # samples added this epoch
        self.pending = 0  # of which the last ``pending`` wait in ``outputs``

    def add(self, output: Array) -> None:
        """The outputs (n, D_out) of the epoch's next n samples."""
        n = output.shape[0]
        for i in self.batchwise:
            self._combine(i, output, self.added, self.added + n)
        self.added += n
        if self.outputs is None:
            return
        if self.pending + n > self.outputs.shape[0]:
            self._score(self.added - n)
        self.outputs[self.pending:self.pending + n] = output
        self.pending += n

    def results(self) -> dict[str, float]:
        """``{metric name: value}`` over every output added so far."""
        self._score(self.added)
        return {metric.name: metric.result(stats) for metric, stats in zip(self.metrics, self.statistics)}

    def _score(self, stop: int) -> None:
        """Score the pending outputs, those of the samples before epoch position ``stop``."""
        if self.pending:
            block = self.outputs[:self.pending]
            for i in self.blockwise:
                self._combine(i, block, stop - self.pending, stop)
            self.pending = 0

    def _combine(self, i: int, output: Array, start: int, stop: int) -> None:
        metric = self.metrics[i]
        batch = metric.statistics(output, self.targets[i][rows_of(self.order, start, stop)])
        self.statistics[i] = metric.combine(self.statistics[i], batch)
