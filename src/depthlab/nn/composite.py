"""Fast variants of layers made of layers: a chain of sublayers run as the engine runs a network.

A layer that holds other layers (``Residual``'s branch F) runs them itself. In its plain
``forward(x, cache)`` it calls their plain methods; in its fast variant ``forward_fast(x, work)``
it calls :func:`chain_forward`, which gives each sublayer its own ``work`` dict (the entries of
:data:`~depthlab.nn.layer.WORK_KEYS`) and the same permissions the engine gives the layers of
a network:

=====================  =====================================================================
entry                  a sublayer's, inside the chain
=====================  =====================================================================
``overwrite_input``    sublayer j > 0 may write over its input when sublayer j − 1 runs fast,
                       keeps no reference to its output (``keeps_output = False``) and the pass
                       is a training step's (the backward plan); sublayer 0 never (the
                       composite layer still needs its input, e.g. for the skip connection)
``overwrite_grad``     dL/d(output) is the chain's own array: the one a fast sublayer after it
                       returned, or the composite's when it says so
``input_grad``         True, except for sublayer 0 when the composite needs no dL/dx
``kept``, ``take``     the composite's, with keys of their own (``kept`` per sublayer; ``take``
                       keyed by (chain, j, key)), so arrays are kept or reused as for any layer
``gradients``          the composite's: each parameter's view of the network's flat gradient array
=====================  =====================================================================

Sublayers without a fast variant run their plain methods with a fresh cache, as in the engine.
Under the backward plan the composite's ``work`` dict lives from step to step, and so do the
sublayers' dicts stored in it.
"""
from __future__ import annotations

import numpy as np

from .layer import checked_input_grad, checked_output


def runs_fast(layer) -> bool:
    """Whether ``layer`` has a fast variant (``forward_fast`` and ``backward_fast``) of its own
    math: one defined beside or below the ``forward`` / ``backward`` it runs. A subclass that
    overrides ``forward`` (``class Shifted(dl.Linear)``) but inherits ``forward_fast``, or a
    ``forward`` set on the instance, runs its plain methods: the inherited variant computes
    another function."""
    cls = type(layer)
    if "forward" in vars(layer) or "backward" in vars(layer):
        return False
    return _beside(cls, "forward_fast", "forward") and _beside(cls, "backward_fast", "backward")


def _beside(cls: type, fast: str, plain: str) -> bool:
    """Whether ``cls`` defines ``fast`` in the class that defines its ``plain`` or in a subclass of it."""
    fast_owner = next((c for c in cls.__mro__ if fast in vars(c)), None)
    plain_owner = next((c for c in cls.__mro__ if plain in vars(c)), None)
    return fast_owner is not None and (plain_owner is None or issubclass(fast_owner, plain_owner))


class _Taken:
    """The composite's ``take`` for sublayer ``j`` of chain ``name``: its keys prefixed."""

    __slots__ = ("take", "prefix")

    def __init__(self, take, name: str, j: int):
        self.take, self.prefix = take, (name, j)

    def __call__(self, key: str, shape: tuple, dtype) -> np.ndarray | None:
        return self.take((self.prefix, key), shape, dtype)


def plain_forward(layer):
    """``run(x, work)``: the layer's plain forward with a fresh cache, kept in ``work["cache"]``
    (the engine's and a chain's way to run a layer without a fast variant); what it returns is
    checked (:func:`~depthlab.nn.layer.checked_output`), so a user layer's slip is named."""
    def run(x, work):
        cache = work["cache"] = {}
        work["input_spec"] = (x.shape, x.dtype)
        return checked_output(layer, x, layer.forward(x, cache))
    return run


def plain_backward(layer):
    """``run(grad, work)``: the layer's plain backward on the cache :func:`plain_forward` kept;
    dL/dx must have the input's shape and dtype (:func:`~depthlab.nn.layer.checked_input_grad`)."""
    def run(grad, work):
        shape, dtype = work["input_spec"]
        return checked_input_grad(layer, layer.backward(grad, work["cache"]), shape, dtype, work["input_grad"])
    return run


def _chain(layers, work: dict, name: str) -> tuple:
    """(which sublayers run fast, their work dicts, their forward and backward methods): stored
    in ``work`` under ``name`` on the first call of a pass (the backward plan's ``work`` keeps
    them from step to step)."""
    chain = work.get(name)
    if chain is None:
        fast = [runs_fast(layer) for layer in layers]
        kept, take = work["kept"], work["take"]
        training_step = kept is not None
        works = [{"overwrite_input": training_step and j > 0 and fast[j - 1]
                  and not getattr(layers[j - 1], "keeps_output", True),
                  "overwrite_grad": False, "input_grad": True, "gradients": None, "parameter_grads": True,
                  "kept": {} if training_step else None,
                  "take": None if take is None else _Taken(take, name, j)}
                 for j in range(len(layers))]
        forwards = [layer.forward_fast if run_fast else plain_forward(layer) for layer, run_fast in zip(layers, fast)]
        backwards = [layer.backward_fast if run_fast else plain_backward(layer)
                     for layer, run_fast in zip(layers, fast)]
        chain = work[name] = (fast, works, forwards, backwards)
    return chain


def chain_forward(layers, x: np.ndarray, work: dict, name: str = "chain") -> np.ndarray:
    """The output of ``layers`` applied in order to x, each through its fast variant where it
    has one; what their backward passes need stays in ``work[name]``."""
    _, works, forwards, _ = _chain(layers, work, name)
    for run, sub in zip(forwards, works):
        x = run(x, sub)
    return x


def chain_backward(grad: np.ndarray, work: dict, grad_owned: bool, input_grad: bool,
                   name: str = "chain") -> tuple[np.ndarray | None, bool]:
    """(dL/dx of the chain, whether that array is the chain's own to overwrite) from dL/d(output)
    ``grad`` (the chain may overwrite it when ``grad_owned``), after :func:`chain_forward` stored
    the chain in ``work[name]``. Each sublayer adds its parameters' gradients; dL/dx is None
    when not ``input_grad`` (or whatever a plain sublayer returns)."""
    fast, works, _, backwards = work[name]
    gradients, parameter_grads = work["gradients"], work.get("parameter_grads", True)
    owned = grad_owned
    for j in range(len(works) - 1, -1, -1):
        sub = works[j]
        sub["overwrite_grad"], sub["input_grad"], sub["gradients"] = owned, input_grad or j > 0, gradients
        sub["parameter_grads"] = parameter_grads
        grad = backwards[j](grad, sub)
        owned = fast[j]
    return grad, owned
