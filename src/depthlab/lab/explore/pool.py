"""Networks lent to one request at a time and kept for the next request of the same shape.

A network's engine keeps the arrays of its last recorded pass and reuses them when no one
holds them any more. A view probes a new network (a new seed is a new network), so without
reuse every view allocates every f_k, h_{k+1} and dL/df_k afresh (about 100 MB at 50×80
with 1000 samples) and the operating system zeroes those pages before the probe writes them:
about a third of a view's time. The explorer therefore builds each network exactly as
``depthlab probe`` does (same seed, same weights) and copies its parameters into a kept
network of the same shape (``load_state_dict``), whose arrays are ready. The numbers are the
fresh network's: the probe reads only the parameters and the architecture.
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict


class NetworkPool:
    """At most one idle network per shape, and idle networks of at most ``budget`` cells in all.

    A shape is anything hashable that fixes the architecture and the batch (e.g. depth,
    width, activation, inputs, samples); its cells, depth · width · samples, measure the
    arrays its engine keeps (three float64 arrays of that many entries for a probe).
    """

    def __init__(self, budget: int):
        self.budget = budget
        self.idle: OrderedDict[object, tuple] = OrderedDict()      # shape -> (network, cells)
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def lend(self, shape, built, cells: int):
        """A network equal to ``built`` (a kept one with ``built``'s parameters, or ``built``).

        Drop what holds the network's arrays (a probe report, a trace) before the block ends,
        or the next borrower allocates new ones.
        """
        with self.lock:
            kept = self.idle.pop(shape, None)
        net = built
        if kept is not None:
            net = kept[0]
            net.load_state_dict(built.state_dict())
        try:
            yield net
        finally:
            self._keep(shape, net, cells)

    def _keep(self, shape, net, cells: int) -> None:
        if cells > self.budget:
            return
        with self.lock:
            self.idle[shape] = (net, cells)
            self.idle.move_to_end(shape)
            while sum(c for _, c in self.idle.values()) > self.budget:
                self.idle.popitem(last=False)
