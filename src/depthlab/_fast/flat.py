"""A parameter group updated as one array, when its parameters and gradients are laid end to end.

The update rules are elementwise: entry i of θ moves by an amount that depends only on entry
i of g and of the state. So when a group's parameters are consecutive views of one flat
array, and their gradients consecutive views of another laid out alike, one call of the
rule on the two flat arrays does exactly what one call per parameter does, number for
number. On small networks it is much faster: a NumPy call costs about as much as the
arithmetic on a few thousand entries, and Adam makes 13 of them per array (timings in
benchmarks/RESULTS.md).

Only up to ``FLAT_BYTES`` (1 MiB) of parameters: the rule makes a dozen passes over its
arrays, and one parameter's arrays stay in cache from one pass to the next while larger
flat ones do not.

``dl.MLP``, ``Sequential.from_arrays`` and ``copy``/``astype`` lay out a small network's
parameters so (:func:`pack`), and its backward pass its gradients
(:class:`~depthlab._fast.buffers.FlatArrays`). So the explicit loop, ``TrainStep`` and ``fit``
take this path for the rules that have a fast form
(:data:`~depthlab.optim.rules.FAST_RULES`: plain SGD and Adam); anything else — gradients
set by hand as separate arrays, a parameter without a gradient, another rule — goes
through the per-parameter loop.

Each parameter keeps its own state in ``optimizer.state[param]``, as views of the group's
flat state arrays, so ``state_dict`` and inspection see the usual per-parameter arrays. A
state loaded or set from outside is noticed (it is not the object this path stored) and
gathered into new flat arrays.
"""
from __future__ import annotations

import weakref
from collections import defaultdict, deque
from itertools import repeat
from operator import attrgetter, is_, setitem

import numpy as np

from . import buffers as _buffers

_new_state = tuple.__new__
DATA, GRAD = attrgetter("data"), attrgetter("grad")


def _address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def _span(arrays: list) -> tuple[np.ndarray, int, int] | None:
    """``(base, begin, end)`` if ``arrays`` tile ``base[begin:end]`` of their common 1-D base,
    in order and without gaps; else None. The gradients a network lays out are recognised
    by identity (:func:`depthlab._fast.buffers.span_of`); other arrays by their addresses."""
    found = _buffers.span_of(arrays)
    if found is not None:
        return found
    base = arrays[0].base  # None, an ndarray, or a buffer (memoryview, torch tensor…): only a 1-D ndarray will do
    if not isinstance(base, np.ndarray) or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    origin, itemsize = _address(base), base.itemsize
    begin = end = None
    for array in arrays:
        if array.base is not base or not array.flags.c_contiguous:
            return None
        offset, misaligned = divmod(_address(array) - origin, itemsize)
        if misaligned or (end is not None and offset != end):
            return None
        begin = offset if begin is None else begin
        end = offset + array.size
    return base, begin, end


class FlatGroup:
    """One parameter group's layout: the flat arrays its parameters and gradients tile
    (``data``, ``grad``: None when they do not), and the flat state with each parameter's
    views of it.

    It describes the ``data`` and ``grad`` arrays it was made from: while every parameter
    still has those (:meth:`matches`), the answer stands without looking again.
    """

    __slots__ = ("params", "datas", "grads", "data", "grad", "offsets", "work", "state", "rows", "rows_of",
                 "given")

    def __init__(self, params: list, work_buffers: int, previous: FlatGroup | None = None):
        self.params = list(params)
        self.datas, grads = [p.data for p in params], [p.grad for p in params]
        self.grads = [weakref.ref(g) if isinstance(g, np.ndarray) else (lambda g=g: g) for g in grads]
        self.grad = self.offsets = self.work = None
        self.state = None    # the flat state: the rule's NamedTuple over flat arrays
        self.rows = None     # per parameter, the fields of its state (views of the flat arrays)
        self.rows_of = None  # the flat state the rows were sliced from
        self.given = None    # the per-parameter states stored last (to notice outside changes)
        same = (previous is not None and previous.params == self.params
                and all(d is e for d, e in zip(previous.datas, self.datas)))
        if same:  # only the gradients moved (new ones were laid out): keep the layout and the flat state
            self.data, self.offsets, self.work = previous.data, previous.offsets, previous.work
            self.state, self.rows, self.rows_of, self.given = (previous.state, previous.rows, previous.rows_of,
                                                               previous.given)
        else:
            found = _span(self.datas) if len(params) >= 2 else None
            self.data = None if found is None else found[0][found[1]:found[2]]
        if self.data is None or self.data.nbytes > _buffers.FLAT_BYTES or not all(
                isinstance(g, np.ndarray) and g.shape == d.shape and g.dtype == d.dtype
                for d, g in zip(self.datas, grads)):  # else the per-parameter loop runs (or refuses them)
            return
        found = _span(grads)
        if found is None or found[2] - found[1] != self.data.size:
            return
        # the gradients only by weak reference: the backward pass reuses their memory only
        # while no one else holds them (see depthlab._fast.buffers.FlatArrays)
        base, begin, end = found
        self.grad = (weakref.ref(base), begin, end - begin)
        if self.offsets is None:
            ends = np.cumsum([d.size for d in self.datas]).tolist()
            self.offsets = [(end - d.size, end) for d, end in zip(self.datas, ends)]
            self.work = workspace(self.data.shape, self.data.dtype, work_buffers)

    def matches(self, params: list) -> bool:
        """Whether ``params`` are still the parameters, data and gradients found."""
        if len(params) != len(self.params) or not all(map(is_, params, self.params)):
            return False
        if not all(map(is_, map(DATA, params), self.datas)):
            return False
        grads = list(map(GRAD, params))
        return not any(map(is_, grads, repeat(None))) and all(map(is_, grads, [g() for g in self.grads]))

    def step(self, update, hyper, states: dict) -> None:
        """One update of the whole group, each parameter's state set to its views of the new
        flat state. Only after :meth:`ready` said yes."""
        params = self.params
        base, begin, size = self.grad
        self.state = new = update(self.data, base()[begin:begin + size], self.state, hyper, self.work)
        arrays = [j for j, value in enumerate(new) if isinstance(value, np.ndarray)]
        if not arrays:  # a state without arrays (plain SGD): one object serves every parameter
            given = [new] * len(params)
        else:
            if self.rows is None or any(new[j] is not self.rows_of[j] for j in arrays):
                self.rows, self.rows_of = self._views(new), new
            for j in range(len(new)):  # the fields shared by every parameter (the step), in each row
                if j not in arrays:
                    deque(map(setitem, self.rows, repeat(j), repeat(new[j])), maxlen=0)
            given = list(map(_new_state, repeat(type(new)), self.rows))
        states.update(zip(params, given))
        self.given = given

    def ready(self, states: dict, init_state, group: dict) -> bool:
        """Whether :meth:`step` can update the group as one array: the gradients lie end to end
        and the parameters' states gather into one flat state (gathered now if they changed);
        False when, e.g., the parameters are at different steps."""
        if self.grad is None:
            return False
        if self.given is None or not all(map(is_, map(states.get, self.params), self.given)):
            if not self._gather(states, init_state, group):
                return False
            self.given = [states.get(p) for p in self.params]  # what was gathered
        return True

    def regather(self) -> None:
        """Gather the flat state from the parameters' own states again at the next :meth:`ready`
        (a step that gathered it was refused before it ran)."""
        self.given = None

    def _views(self, state) -> list[list]:
        """Per parameter, the fields of ``state`` with its arrays sliced to the parameter."""
        return [[value[begin:end].reshape(p.data.shape) if isinstance(value, np.ndarray) else value
                 for value in state]
                for p, (begin, end) in zip(self.params, self.offsets)]

    def _gather(self, states: dict, init_state, group: dict) -> bool:
        """Make the flat state from the parameters' own states (none yet: a fresh one)."""
        own = [states.get(p) for p in self.params]
        self.rows = self.rows_of = self.given = None
        if all(state is None for state in own):
            self.state = init_state(self.data, group)
            return True
        if any(state is None for state in own) or len({type(state) for state in own}) != 1:
            return False
        fields = []
        for j, first in enumerate(own[0]):
            values = [state[j] for state in own]
            if all(isinstance(value, np.ndarray) and value.shape == d.shape and value.dtype == d.dtype
                   for value, d in zip(values, self.datas)):
                fields.append(np.concatenate([value.reshape(-1) for value in values]))
            elif all(not isinstance(value, np.ndarray) and value == first for value in values):
                fields.append(first)
            else:
                return False  # different steps, a buffer only some have, or of another shape or dtype
        self.state = _new_state(type(own[0]), tuple(fields))
        return True


def workspace(shape: tuple[int, ...], dtype, count: int) -> defaultdict:
    """At most ``count`` scratch arrays of one shape and dtype, each allocated on first use:
    ``work[i]``.

    A rule that never touches a buffer (plain SGD on a large parameter touches none) costs
    no memory for it. Parameters of the same shape and dtype share one workspace: a rule
    uses its scratch only during one update and keeps none of it in its state. (A plain
    ``defaultdict``: subscripting a subclass of dict would be slower.)
    """
    work: defaultdict = defaultdict()

    def new_buffer() -> np.ndarray:
        if len(work) >= count:
            raise IndexError(f"the update rule asked for more than work_buffers = {count} scratch arrays.")
        return np.empty(shape, dtype)

    work.default_factory = new_buffer
    return work


def pack(parameters: list) -> None:
    """Move the parameters' arrays into one flat array, laid end to end in order (that of
    ``net.parameters()`` and of the flat gradient array), so that an optimizer updates them
    all as one array. Only up to ``FLAT_BYTES`` in all and for one dtype (beyond, it does not
    pay); only for parameters just built: ``Parameter.data`` becomes a view, and an array
    taken from it earlier would no longer be the parameter's."""
    if not parameters or len({p.data.dtype for p in parameters}) != 1:
        return
    if sum(p.data.nbytes for p in parameters) > _buffers.FLAT_BYTES:
        return
    _, views = _buffers.flat_views([p.data.shape for p in parameters], parameters[0].data.dtype)
    for p, view in zip(parameters, views):
        view[...] = p.data
        p.data = view
