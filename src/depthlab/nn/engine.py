"""The engine: runs a network's layers forward and backward under a plan.

Every pass calls the layers' own methods (:class:`~depthlab.nn.layer.Layer`). The plan says
what the pass keeps:

=========  ===============================================  =====================================
plan       keeps                                            used by
=========  ===============================================  =====================================
nothing    nothing (each layer's cache is dropped at once)  ``net(x)``, ``predict``, ``evaluate``
backward   each layer's cache, for one backward pass        ``TrainStep`` and ``fit``
trace      each layer's cache and output                    ``net.forward(x, record=True)``
=========  ===============================================  =====================================

Under the backward plan (with the fast paths on) the engine leaves NumPy's floating-point
warnings to its caller, which silences them once for the whole step (``TrainStep`` does);
the other plans silence overflow warnings themselves. With the fast paths on
(:func:`depthlab.set_fast_paths`), layers that have a fast variant run
it (``forward_fast(x, work)`` / ``backward_fast(g, work)``) and the engine hands each of them a
``work`` dict (:data:`~depthlab.nn.layer.WORK_KEYS`) that says what it may overwrite and where
to write: under the backward plan the arrays are the engine's own, kept from step to step;
under the trace plan they are reused only when no one outside still holds them
(:class:`~depthlab._fast.buffers.Buffers`); the parameter gradients go into views of one flat
array (:class:`~depthlab._fast.buffers.FlatArrays`). Layers without a fast variant, and every
layer with the fast paths off, run ``forward(x, cache)`` / ``backward(g, cache)`` with a fresh
dict per call.
"""
from __future__ import annotations

from operator import attrgetter, is_not

import numpy as np

from .. import _fast
from .._fast.buffers import Buffers, FlatArrays
from .._fast.pair import run_pair
from . import halves as _halves
from .composite import plain_backward, plain_forward, runs_fast

PLANS = ("nothing", "backward", "trace")
DATA = attrgetter("data")


class Pass:
    """What a forward pass kept for the backward pass: one entry per layer."""

    __slots__ = ("plan", "works", "fast", "output_shape", "backwards", "flags")

    def __init__(self, plan: str, works: list, fast: list, output_shape: tuple):
        self.plan, self.works, self.fast, self.output_shape = plan, works, fast, output_shape
        self.backwards = None  # [(layer's backward run, its work dict)] from the output layer down
        self.flags = None      # (input_grad, intermediates, gradients, parameter_grads) last written into the works


class Engine:
    """Runs ``layers`` (a list of :class:`~depthlab.nn.layer.Layer`) under a plan.

    Parameters
    ----------
    layers : list of Layer
    parameters : list of Parameter
        The layers' parameters in order (the layout of the flat gradient array).
    """

    def __init__(self, layers: list, parameters: list):
        self.layers = layers
        self.parameters = parameters
        self.has_fast = [runs_fast(layer) for layer in layers]
        # layer i may write over its input when layer i - 1 runs fast and keeps no reference to its output
        self.input_is_free = [i > 0 and self.has_fast[i - 1] and not getattr(layers[i - 1], "keeps_output", True)
                              for i in range(len(layers))]
        self.buffers = Buffers()       # trace passes: reused while no one else holds them
        self.programs: dict = {}       # backward plan: (N, dtype) -> per-layer work dicts
        self.runners: dict = {}        # ("forward" | "backward", which layers run fast) -> per-layer methods
        self.last: Pass | None = None  # what the last forward pass kept for backward
        self.flat: FlatArrays | None = None
        self.flat_datas: list = []
        self.flat_dtype = parameters[0].data.dtype if parameters else None

    def __getstate__(self):  # copies and pickles start afresh: the engine's arrays are a cache
        return {"layers": self.layers, "parameters": self.parameters}

    def __setstate__(self, state):
        self.__init__(state["layers"], state["parameters"])

    def adopt_arrays(self, other: "Engine") -> None:
        """Take over the arrays ``other`` keeps for its recorded passes (its :class:`Buffers`);
        ``other`` starts afresh. Each array is reused only where a pass here asks for one of
        its shape and dtype under the same key (layer index and name), and no one holds it."""
        if other is not self:
            self.buffers, other.buffers = other.buffers, Buffers()

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: np.ndarray, plan: str, remember: bool = True, watch=None, halves: bool = False):
        """(output, every layer's output under the trace plan, the :class:`Pass`). With
        ``remember`` the pass becomes the one ``backward`` uses by default; ``watch(i, output)``
        is called after layer i (not under the backward plan). With ``halves`` (the trace
        plan, every layer ``rowwise``) the batch runs as two halves on two threads
        (:mod:`.halves`; ``watch(i, rows_output, half)``)."""
        if halves:
            return self._forward_halves(x, remember, watch)
        if plan == "nothing":
            h = x
            with np.errstate(over="ignore", invalid="ignore"):
                for i, layer in enumerate(self.layers):
                    h = layer.forward(h, {})
                    if watch is not None:
                        watch(i, h)
            return h, None, None
        if remember:
            self.last = None  # release the last pass: its arrays may be reused now
        if plan == "backward" and _fast.enabled():  # the training step: everything prepared once per batch size
            done, runs = self._program(x.shape[0], x.dtype)
            h = x
            for run, work in zip(runs, done.works):  # NumPy's warnings: the caller's errstate (one per step)
                h = run(h, work)
            done.output_shape = h.shape
            if remember:
                self.last = done
            return h, None, done
        fast = self.has_fast if _fast.enabled() else [False] * len(self.layers)
        works = self._fresh(plan)
        outputs = [] if plan == "trace" else None
        h = x
        with np.errstate(over="ignore", invalid="ignore"):
            for i, (run, work) in enumerate(zip(self._forwards(fast), works)):
                h = run(h, work)
                if outputs is not None:
                    outputs.append(h)
                if watch is not None:
                    watch(i, h)
        done = Pass(plan, works, fast, h.shape)
        if remember:
            self.last = done
        return h, outputs, done

    def _forwards(self, fast: list[bool]) -> list:
        """Per layer, ``run(x, work)``: its fast variant, or its plain forward with a fresh cache."""
        key = tuple(fast)
        runs = self.runners.get(("forward", key))
        if runs is None:
            runs = self.runners[("forward", key)] = [
                layer.forward_fast if run_fast else plain_forward(layer) for layer, run_fast in zip(self.layers, fast)]
        return runs

    def _backwards(self, fast: list[bool]) -> list:
        """Per layer, ``run(grad, work)``: its fast variant, or its plain backward on its cache."""
        key = tuple(fast)
        runs = self.runners.get(("backward", key))
        if runs is None:
            runs = self.runners[("backward", key)] = [
                layer.backward_fast if run_fast else plain_backward(layer) for layer, run_fast in zip(self.layers, fast)]
        return runs

    def _fresh(self, plan: str) -> list[dict]:
        """Work dicts for one pass: arrays reused only when no one else holds them (trace)."""
        take = self.buffers.take if plan == "trace" and _fast.enabled() else None
        return [{"overwrite_input": False, "overwrite_grad": False, "input_grad": True, "gradients": None,
                 "parameter_grads": True, "kept": None, "take": None if take is None else _Keyed(take, i)}
                for i in range(len(self.layers))]

    def _program(self, n: int, dtype) -> tuple[Pass, list]:
        """The backward plan for batches of n: its :class:`Pass` (work dicts holding the engine's
        own arrays, kept from step to step) and each layer's forward method.

        Two batch sizes are kept (an epoch's full batches and its last, shorter one).
        """
        key = (n, dtype)
        program = self.programs.get(key)
        if program is None:
            if len(self.programs) >= 2:
                self.programs.clear()
            works = [{"overwrite_input": self.input_is_free[i], "overwrite_grad": False, "input_grad": True,
                      "gradients": None, "parameter_grads": True, "kept": {}, "take": None}
                     for i in range(len(self.layers))]
            program = self.programs[key] = (Pass("backward", works, self.has_fast, None), self._forwards(self.has_fast))
        return program

    def _forward_halves(self, x: np.ndarray, remember: bool, watch):
        """:meth:`forward` under the trace plan as two halves of the batch, each on its own thread
        (:mod:`.halves`), writing into the rows of the same whole arrays; ``watch(i, rows_output,
        half)`` from the half's thread."""
        rows = _halves.halves(x.shape[0])
        fast = self.has_fast if _fast.enabled() else [False] * len(self.layers)
        runs = self._forwards(fast)
        if remember:
            self.last = None  # release the last pass: its arrays may be reused now
        whole = _halves.WholeArrays(self.buffers.take if _fast.enabled() else None, x.shape[0])
        works = [self._fresh("trace") for _ in rows]
        for half, part in enumerate(works):
            for i, work in enumerate(part):
                work["take"] = whole.for_half(i, rows[half])
        outputs = [[None] * len(self.layers) for _ in rows]

        def run(half: int) -> None:
            h = x[rows[half]]
            for i, (run_layer, work) in enumerate(zip(runs, works[half])):
                h = outputs[half][i] = run_layer(h, work)
                if watch is not None:
                    watch(i, h, half)

        with np.errstate(over="ignore", invalid="ignore"):
            run_pair(lambda: run(0), lambda: run(1))
        outputs = [_halves.joined(first, second, rows) for first, second in zip(*outputs)]
        done = _halves.HalvesPass(tuple(Pass("trace", part, fast, None) for part in works), rows, outputs[-1].shape)
        if remember:
            self.last = done
        return outputs[-1], outputs, done

    def _backward_halves(self, grad: np.ndarray, input_grad: bool, intermediates: bool, done, watch):
        """:meth:`backward` of a pass in halves, in halves: dL/dx and the intermediates only
        (``watch(i, rows_grad_input, half)`` from the half's thread)."""
        rows, results = done.rows, [None, None]
        self._backwards(done.parts[0].fast)  # made once, before the threads read it
        whole = _halves.WholeArrays(self.buffers.take if _fast.enabled() else None, grad.shape[0])
        for half, part in enumerate(done.parts):
            for i, work in enumerate(part.works):
                work["take"] = whole.for_half(i, rows[half])

        def run(half: int) -> None:
            seen = None if watch is None else (lambda i, g: watch(i, g, half))
            results[half] = self._backward(grad[rows[half]], input_grad, intermediates, done.parts[half], seen,
                                           parameter_grads=False)

        with np.errstate(over="ignore", invalid="ignore"):
            run_pair(lambda: run(0), lambda: run(1))
        (first, first_grads), (second, second_grads) = results
        output_grads = [_halves.joined(a, b, rows) for a, b in zip(first_grads, second_grads)] if intermediates else None
        return _halves.joined(first, second, rows), output_grads

    # -- backward --------------------------------------------------------------------------
    def backward(self, grad: np.ndarray, input_grad: bool, intermediates: bool, done: Pass | None = None,
                 watch=None, parameter_grads: bool = True):
        """dL/dx (or None) and, with ``intermediates``, dL/d(each layer's output).

        Runs each layer's backward with the caches of the last forward pass; a backward pass
        uses them up only under the backward plan's permissions (in place), so a trace can be
        backpropagated once per forward pass. ``watch(i, grad_input)`` is called after layer i's
        backward with dL/d(its input) (and its parameters' gradients set); for i = 0 only with
        ``input_grad``. Without ``parameter_grads`` the layers are told that only dL/dx is
        wanted (their parameters' grads are the caller's to put back).
        """
        last = self.last if done is None else done
        if isinstance(last, _halves.HalvesPass):  # dL/dx and the intermediates only (see .halves)
            return self._backward_halves(grad, input_grad, intermediates, last, watch)
        if last.plan == "backward":  # the training step: NumPy's warnings are its caller's
            result = self._backward(grad, input_grad, intermediates, last, watch, parameter_grads)
            if last is self.last:
                self.last = None
            return result
        with np.errstate(over="ignore", invalid="ignore"):
            return self._backward(grad, input_grad, intermediates, last, watch, parameter_grads)

    def _backward(self, grad: np.ndarray, input_grad: bool, intermediates: bool, last: Pass, watch,
                  parameter_grads: bool):
        gradients = self._gradient_map() if parameter_grads and True in last.fast else None
        flags = last.flags
        if (flags is None or flags[0] != input_grad or flags[1] != intermediates or flags[2] is not gradients
                or flags[3] != parameter_grads):
            self._prepare_backward(last, (input_grad, intermediates, gradients, parameter_grads))
        if not intermediates and watch is None:
            for run, work in last.backwards:
                grad = run(grad, work)
            return grad, None
        output_grads = [None] * len(last.works)
        for i, (run, work) in zip(range(len(last.works) - 1, -1, -1), last.backwards):
            output_grads[i] = grad
            grad = run(grad, work)
            if watch is not None and (i > 0 or input_grad):
                watch(i, grad)
        return grad, output_grads if intermediates else None

    def _prepare_backward(self, last: Pass, flags: tuple) -> None:
        """Write into each layer's work dict what its backward may do (``flags``: input_grad,
        intermediates, gradients, parameter_grads), and list the layers' backward methods from
        the output down (the training plan does this once)."""
        input_grad, intermediates, gradients, parameter_grads = flags
        works, fast = last.works, last.fast
        for i, work in enumerate(works):
            # dL/d(output) of layer i is the engine's own array when layer i + 1 ran fast
            work["overwrite_grad"] = i + 1 < len(works) and fast[i + 1] and not intermediates
            work["input_grad"] = input_grad or i > 0
            work["gradients"] = gradients
            work["parameter_grads"] = parameter_grads
        last.backwards = list(zip(reversed(self._backwards(fast)), reversed(works)))
        last.flags = flags

    def _gradient_map(self) -> dict | None:
        """Parameter -> its view of the flat gradient array (a new flat array when someone
        still holds the last one; see :class:`FlatArrays`); None without parameters or when
        their dtypes or shapes changed since the engine was made (then NumPy allocates)."""
        flat = self.flat
        if flat is None:
            parameters = self.parameters
            if not parameters or any(p.data.dtype != self.flat_dtype for p in parameters):
                return None
            flat = self.flat = FlatArrays([p.data.shape for p in parameters], self.flat_dtype, keys=parameters)
            self.flat_datas = [p.data for p in parameters]
        if any(map(is_not, map(DATA, self.parameters), self.flat_datas)):  # arrays replaced since the layout
            if any(p.data.shape != shape or p.data.dtype != flat.dtype for p, shape in zip(self.parameters, flat.shapes)):
                self.flat = None
                return self._gradient_map()
            self.flat_datas = [p.data for p in self.parameters]
        flat.take()
        return flat.by_key

    def flat_gradients(self) -> np.ndarray | None:
        """The flat array holding every parameter's gradient, when each ``grad`` is exactly
        its view from the last backward pass (nothing accumulated onto it), else None."""
        flat = self.flat
        if flat is None or any(p.grad is not v for p, v in zip(self.parameters, flat.views)):
            return None
        return flat.flat


class _Keyed:
    """A trace pass's arrays for layer ``i``: :meth:`Buffers.take` under ``(i, key)``."""

    __slots__ = ("take", "i")

    def __init__(self, take, i: int):
        self.take, self.i = take, i

    def __call__(self, key: str, shape: tuple, dtype) -> np.ndarray | None:
        return self.take((self.i, key), shape, np.dtype(dtype))
