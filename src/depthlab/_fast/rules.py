"""The optimizers' fast rules: plain SGD and Adam as shorter updates, and the blocked axpy.

:mod:`depthlab.optim.rules` holds the reference rule of every algorithm; for the common
settings of SGD (no momentum, no weight decay) and Adam (no AMSGrad, no coupled weight
decay, not maximizing) its ``FAST_RULES`` table points here: the same operations in the same
order, so bit-for-bit the same result, with the scalars prepared once per step as 0-d
arrays (:class:`Scalars`) and no temporary arrays. ``Optimizer.step`` runs them only while
the fast paths are on (:func:`depthlab.set_fast_paths`); ``tests/test_optim_fast.py``
compares them with the reference rules bit for bit.

The rules build their new state as ``type(state)`` (the reference rule's ``NamedTuple``)
through ``tuple.__new__``: NamedTuple's own ``__new__`` is a Python function, and this part
imports nothing from the optimizers. Hot-path note: subscripting a *subclass* of dict goes
through a slower generic slot, so the memos are plain dicts, read as
``try: memo[key] except KeyError: <fill>``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

BLOCK = 1 << 15  # elements: the largest temporary an update makes (256 KiB in float64)
_new_state = tuple.__new__


def axpy(y, alpha, x):
    """y ← y + α·x in place, with a temporary of at most ``BLOCK`` elements.

    Large arrays go block by block, so an update never holds a second parameter-sized array
    (PyTorch's ``add_(x, alpha=α)`` needs none either) and each block stays in cache. Plain
    ufuncs rather than BLAS axpy: a threaded BLAS level-1 call fights with PyTorch's OpenMP
    threads when both live in one process.
    """
    if y.size <= BLOCK or not (y.flags.c_contiguous and x.flags.c_contiguous):
        y += alpha * x
        return
    flat_y, flat_x = y.reshape(-1), x.reshape(-1)
    block = np.empty(BLOCK, dtype=y.dtype)
    for start in range(0, flat_y.size, BLOCK):
        stop = min(start + BLOCK, flat_y.size)
        part = block[: stop - start]
        np.multiply(flat_x[start:stop], alpha, part)
        flat_y[start:stop] += part



class Scalars:
    """A rule's scalars as 0-d arrays per key (a dtype, or a pair ``(step, dtype)``).

    ``scalars.made[key]`` once ``scalars.make(key)`` has filled it. A ufunc takes a 0-d
    array of its operand's dtype about twice as fast as a Python float, which it converts
    on every call; the values are the same, since NumPy casts the Python float to the
    array's dtype too (float32 stays float32).
    """

    __slots__ = ("made", "_make")

    def __init__(self, make: Callable):
        self.made: dict = {}
        self._make = make

    def make(self, key):
        if len(self.made) >= 8:  # step-dependent keys come and go: keep the memo small
            self.made.clear()
        value = self.made[key] = self._make(key)
        return value


def sgd_fast_scalars(lr, momentum, weight_decay, maximize) -> Scalars | None:
    """The rate ∓γ per dtype, or None when momentum or weight decay need :func:`~depthlab.optim.rules.sgd_update`."""
    if momentum != 0 or weight_decay != 0:
        return None
    rate = lr if maximize else -lr
    return Scalars(lambda dtype: np.array(rate, dtype))


def sgd_fast_update(param, grad, state, rates: Scalars, work):
    """θ ← θ ∓ γ g: :func:`~depthlab.optim.rules.sgd_update` without momentum and weight decay.

    γ·g is rounded, then added, as in ``axpy`` (and PyTorch's ``add_(g, alpha=-γ)``);
    negating γ instead of g for ``maximize`` is exact. ``grad`` is only read.
    """
    try:
        rate = rates.made[param.dtype]
    except KeyError:
        rate = rates.make(param.dtype)
    if param.size <= BLOCK:
        scratch = work[0]
        np.multiply(grad, rate, scratch)
        np.add(param, scratch, param)
    else:
        axpy(param, rate, grad)
    step, buffer = state  # unpacking is cheaper than two field lookups
    return _new_state(type(state), (step + 1, buffer))  # the rule's SGDState, built by tuple.__new__


def adam_fast_scalars(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay) -> Scalars | None:
    """Adam's scalars per (step, dtype), or None when AMSGrad, ``maximize`` or coupled weight
    decay need :func:`~depthlab.optim.rules.adam_update`.

    Each is computed by the same Python expression as in :func:`~depthlab.optim.rules.adam_update`.
    """
    if amsgrad or maximize or (weight_decay != 0 and not decoupled_weight_decay):
        return None
    beta1, beta2 = betas
    shrink = 1 - lr * weight_decay if weight_decay != 0 else None
    constants: dict = {}  # dtype -> the step-independent scalars

    def make(key):
        step, dtype = key
        if dtype not in constants:
            constants[dtype] = (None if shrink is None else np.array(shrink, dtype), np.array(1 - beta1, dtype),
                                np.array(beta2, dtype), np.array(1 - beta2, dtype), np.array(eps, dtype))
        shrink_, weight1, beta2_, weight2, eps_ = constants[dtype]
        return (shrink_, weight1, beta2_, weight2, np.array((1 - beta2**step) ** 0.5, dtype), eps_,
                np.array(-lr / (1 - beta1**step), dtype))

    return Scalars(make)


def adam_fast_update(param, grad, state, scalars: Scalars, work):
    """:func:`~depthlab.optim.rules.adam_update` without AMSGrad, ``maximize`` and coupled weight decay: the same
    13 ufunc calls (14 with decoupled decay) in the same order, in place in one scratch array.
    """
    step, m, v, max_sq = state
    step += 1
    try:
        shrink, weight1, beta2, weight2, root_correction2, eps, rate = scalars.made[step, param.dtype]
    except KeyError:
        shrink, weight1, beta2, weight2, root_correction2, eps, rate = scalars.make((step, param.dtype))
    scratch = work[0]
    if shrink is not None:
        np.multiply(param, shrink, param)  # θ ← θ(1 − γλ)
    np.subtract(grad, m, scratch)  # m ← m + (1 − β₁)(g − m)
    np.multiply(scratch, weight1, scratch)
    np.add(m, scratch, m)
    np.multiply(v, beta2, v)  # v ← β₂ v + (1 − β₂) g²
    np.multiply(grad, grad, scratch)
    np.multiply(scratch, weight2, scratch)
    np.add(v, scratch, v)
    np.sqrt(v, scratch)  # d = √v / √(1 − β₂ᵗ) + ε
    np.divide(scratch, root_correction2, scratch)
    np.add(scratch, eps, scratch)
    np.divide(m, scratch, scratch)  # θ ← θ − γ/(1 − β₁ᵗ) · m/d
    np.multiply(scratch, rate, scratch)
    np.add(param, scratch, param)
    return _new_state(type(state), (step, m, v, max_sq))


class FastRule(NamedTuple):
    """A fast rule: ``scalars(*read(group))`` gives its :class:`Scalars`, or None when the
    group's settings need the reference rule; ``update`` takes them in place of the group."""

    read: Callable  # group -> tuple of the hyperparameters the scalars depend on
    scalars: Callable
    update: Callable
