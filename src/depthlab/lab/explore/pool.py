"""Networks lent to one request at a time and kept for the next request of the same shape.

A network's engine keeps the arrays of its last recorded pass and reuses them when no one
holds them any more. A view probes a new network (a new seed is a new network), so without
reuse every view allocates every f_k, h_{k+1} and dL/df_k afresh (about 100 MB at 50×80
with 1000 samples) and the operating system zeroes those pages before the probe writes them:
about a third of a view's time. The explorer therefore builds each network exactly as
``depthlab probe`` does (same seed, same weights) and copies its parameters into a kept
network of the same shape (:func:`_copy_state`), whose arrays are ready. The numbers are the
fresh network's: the probe reads only the parameters and the architecture. The built network
is only read (a view and its histogram may share it); a shape seen for the first time gets a
copy of it, which takes over the arrays of an idle network of the same family (the same
widths and batch at another depth: the depth slider's neighbours), so that it too writes into
memory already paged in (``Sequential.adopt_arrays``).
"""
from __future__ import annotations

import contextlib
import copy
import threading
from collections import OrderedDict

import numpy as np

from ...nn.layers import ActivationLayer


def _same_layers(net, built) -> bool:
    """Whether the two networks have layers of the same types, in the same places."""
    targets, sources = list(net.layers_within()), list(built.layers_within())
    return len(targets) == len(sources) and all(type(a) is type(b) for a, b in zip(targets, sources))


def _give_activations(net, built, activation) -> None:
    """Each activation layer of ``net`` computes ``activation``, or (None) that of its place in
    ``built`` (a network of the same layers)."""
    for target, source in zip(net.layers_within(), built.layers_within()):
        if isinstance(target, ActivationLayer):
            target.activation = source.activation if activation is None else activation


def _copy_state(net, built) -> None:
    """``built``'s parameters and buffers into ``net``'s arrays, in place (two networks of one
    architecture: their parameters in the same order). What ``net.load_state_dict(built.state_dict())``
    does, without its per-name checks and copies (5× faster: a view builds a new network)."""
    for target, source in zip(net.parameters(), built.parameters()):
        np.copyto(target.data, source.data)
    buffers = dict(built.named_buffers())
    if buffers:                           # batch norm's running statistics
        net.load_state_dict(buffers, strict=False)


class NetworkPool:
    """At most one idle network per shape, and idle networks of at most ``budget`` in all.

    A shape is anything hashable that fixes the architecture and the batch (e.g. depth,
    width, activation, inputs, samples); its size is what a kept network holds, in numbers
    (its parameters and the arrays its engine keeps: for a probe, f, h and dL/df of every layer).
    """

    def __init__(self, budget: int):
        self.budget = budget
        self.idle: OrderedDict[object, tuple] = OrderedDict()      # shape -> (network, cells, family, kin)
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def lend(self, shape, built, size: int, *, shared: bool = True, family=None, kin=None, activation=None):
        """A network equal to ``built``, for this block only: a kept one given ``built``'s
        parameters — of this ``shape``, or else of the same ``kin`` (any hashable: networks of
        the same layers but for their activations), given ``built``'s activations too — or else
        a copy of ``built`` (``built`` itself when it is not ``shared`` with another thread; a
        shared one is only read) with the arrays of an idle network of the same ``family`` (any
        hashable: networks whose arrays have the same shapes layer by layer), if one is kept.
        With ``activation``, every activation layer of the network lent computes it instead
        (``built`` then gives only the parameters: the explorer builds one network for all
        activations). An activation switch takes the network kept for the last one: no copy.

        Drop what holds the network's arrays (a probe report, a trace) before the block ends,
        or the next borrower allocates new ones.
        """
        with self.lock:
            kept = self.idle.pop(shape, None)
            if kept is None and kin is not None:
                relative = next((key for key, entry in self.idle.items() if entry[3] == kin), None)
                kept = None if relative is None else self.idle.pop(relative)
                if kept is not None and not _same_layers(kept[0], built):
                    kept = None                        # not the same layers after all: dropped
            donor = None
            if kept is None and family is not None:
                relative = next((key for key, entry in self.idle.items() if entry[2] == family), None)
                donor = None if relative is None else self.idle.pop(relative)[0]
        if kept is None:
            net = copy.deepcopy(built) if shared else built
            if donor is not None:
                net.adopt_arrays(donor)
        else:
            net = kept[0]
            _copy_state(net, built)
        _give_activations(net, built, activation)   # a kin's network computes another activation
        try:
            yield net
        finally:
            self._keep(shape, net, size, family, kin)

    def _keep(self, shape, net, size: int, family, kin) -> None:
        if size > self.budget:
            return
        with self.lock:
            self.idle[shape] = (net, size, family, kin)
            self.idle.move_to_end(shape)
            while sum(entry[1] for entry in self.idle.values()) > self.budget:
                self.idle.popitem(last=False)
