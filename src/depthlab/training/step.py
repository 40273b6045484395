"""``TrainStep``: forward, loss gradient, backward and optimizer step, fused into one call.

The explicit loop is what depthlab teaches, and it stays the reference::

    optimizer.zero_grad()
    trace = net.forward(x, record=True)
    net.backward(loss.grad(trace.output, y), input_grad=False, intermediates=False)
    optimizer.step()

``step = TrainStep(net, loss, optimizer); step(x, y)`` does exactly that — the same
operations in the same order, so the weights come out bit for bit the same (tested) — and
is what ``fit`` runs. It is faster for two reasons:

- it builds no :class:`~depthlab.nn.model.Trace` or :class:`~depthlab.nn.model.Gradients` and
  keeps no f_k or dL/dh_k for inspection, so an activation that can differentiate from its
  output alone (``Activation.derivative_from_output``: ReLU, sigmoid, tanh) computes
  h_{k+1} in place of f_k, and every dL/df_k is formed in place of dL/dh_{k+1};
- its working arrays (f_k, h_{k+1}, dL/dh_k) belong to it and are reused from step to step
  without any bookkeeping: nothing outside ever sees them. The parameter gradients, which
  are seen, are views of the network's flat gradient array, as in the explicit loop
  (:class:`~depthlab._fast.buffers.FlatArrays`, reused when no one keeps any of them).

On small networks the per-call Python overhead of the explicit loop (checks, objects,
method dispatch) costs about as much as the arithmetic; on large ones the in-place
activations save memory traffic. Only the parameters' ``grad`` arrays are visible after a
step, as in PyTorch.
"""
from __future__ import annotations

import numpy as np

from .._fast import buffers as _buffers
from ..nn import losses as _losses
from .._fast.buffers import batch_sum
from .._checks import as_float_array


class TrainStep:
    """One training step of ``net`` on a batch: ``step(x, y)``.

    Parameters
    ----------
    net : Sequential
    loss : name or loss object
        See :func:`depthlab.nn.losses.get`; user losses with ``value`` and ``grad`` work too.
    optimizer : depthlab.optim.Optimizer
        Updates the parameters it holds (usually ``net.parameters()``).

    Notes
    -----
    Calling ``step(x, y)`` with x of shape (N, D_0) and targets y (whatever the loss takes)
    clears the optimizer's gradients, sets each network parameter's ``grad`` to dL/dΩ_k,
    dL/dβ_k of this batch and takes one optimizer step. With ``return_loss=True`` it
    returns L(output, y) of the batch, before the step, as a float (computed with the
    gradient, sharing its intermediate arrays); otherwise None.

    Raises
    ------
    NonFiniteError
        The forward pass overflowed (the message names the layer); the weights are unchanged.

    Examples
    --------
    >>> net = dl.MLP(40, [100, 100], 10, dtype="float32")
    >>> step = dl.TrainStep(net, "cross_entropy", dl.optim.SGD(net.parameters(), lr=0.05))
    >>> for xb, yb in batches:
    ...     step(xb, yb)
    """

    def __init__(self, net, loss, optimizer):
        from ..nn.model import Sequential
        from ..optim import Optimizer
        if not isinstance(net, Sequential):
            raise TypeError(f"TrainStep needs a depthlab Sequential network (e.g. dl.MLP(...)), got "
                            f"{type(net).__name__}.")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a depthlab.optim optimizer, got {type(optimizer).__name__}. "
                "Example: dl.optim.SGD(net.parameters(), lr=0.1)."
            )
        self.net, self.loss, self.optimizer = net, _losses.get(loss), optimizer
        self._output: np.ndarray | None = None
        self._plans: dict = {}  # (N, dtype) -> per block parameters and working arrays (see _plan)
        self._gradients_in = None  # the FlatArrays that hold every grad of the last step, if one does

    def __call__(self, x, y, *, return_loss: bool = False):
        value = self.gradients(x, y, return_loss=return_loss)
        self.optimizer.step()
        return value

    def gradients(self, x, y, *, return_loss: bool = False):
        """The step without the update: clear the optimizer's gradients, then forward, loss
        gradient and backward, leaving dL/dΩ_k, dL/dβ_k in the parameters' ``grad`` (to clip
        or inspect them before ``optimizer.step()``, as ``fit`` does). Returns L or None.
        """
        return self._gradients(x, y, return_loss, True)

    def _gradients(self, x, y, return_loss: bool, check_target: bool):
        """``gradients``, with the check of the targets optional."""
        x = self.net._check_input(x, "x", finite=False)
        with np.errstate(over="ignore", invalid="ignore"):
            return self._checked_gradients(x, y, return_loss, check_target)

    def _checked_gradients(self, x: np.ndarray, y, return_loss: bool, check_target: bool):
        """``_gradients`` of an x already checked, under the caller's ``np.errstate`` that
        ignores overflow and invalid values (``fit``'s loop: it checks its data once per run)."""
        self._gradients_in = None
        self.optimizer.zero_grad()
        plan = self._plan(x.shape[0], x.dtype)
        inputs, kept, output = _forward(x, plan)
        if not np.isfinite(output).all():
            self._output = None
            self.net._raise_non_finite(x)
        self._output = output
        value, grad = loss_gradient(self.loss, output, y, return_loss, check_target)
        arrays = self.net._parameter_gradients()  # the same arrays as the explicit loop's
        self._gradients_in = arrays if _backward(grad, inputs, kept, plan, arrays.take()) else None
        return value

    def _gradient_sum(self) -> float | None:
        """Σ of every entry of every parameter gradient of the last step, as one dot product
        (non-finite if any entry is); None when some parameter's ``grad`` is not the step's own
        array (a parameter outside the optimizer accumulates), so the caller checks them one by one."""
        return None if self._gradients_in is None else _buffers.entry_sum(self._gradients_in.flat)

    @property
    def output(self) -> np.ndarray | None:
        """The network's output (N, D_out) for the last batch, before its update; None before
        the first step. It lives in this step's working memory: the next call overwrites
        it, so copy it to keep it."""
        return self._output

    def _plan(self, n: int, dtype: np.dtype) -> list:
        """Per block ``[Ω_k, β_k, activation layers, f_k, h_{k+1}, dL/dh_k]`` for batches of n:
        the parameters and the block's own arrays (None where not needed: h_{k+1} when it is
        computed in place of f_k or its activation allocates, dL/dh_0 always).

        Plans for two batch sizes are kept: an epoch's full batches and its last, shorter one.
        """
        key = (n, dtype)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= 2:
                self._plans.clear()
            plan = self._plans[key] = [
                [linear.weight, linear.bias, acts,
                 np.empty((n, linear.out_features), dtype),
                 np.empty((n, linear.out_features), dtype) if _needs_output_array(acts) else None,
                 np.empty((n, linear.in_features), dtype) if k else None]
                for k, (linear, acts) in enumerate(self.net._blocks)]
        return plan

    def __repr__(self) -> str:
        return f"TrainStep({self.net.widths}, loss={self.loss!r}, optimizer={type(self.optimizer).__name__})"


def loss_gradient(loss, output: np.ndarray, y, return_loss: bool,
                  check_target: bool) -> tuple[float | None, np.ndarray]:
    """(L or None, dL/d(output)) in an array the caller may overwrite.

    A built-in loss checks ``y`` when ``check_target`` (``fit`` checks its targets once for
    the whole run) and always returns a fresh gradient; a user loss's gradient is copied,
    converted to the output's dtype and checked for shape.
    """
    if isinstance(loss, _losses.Loss):
        target = loss._target(y, output) if check_target else y
        if return_loss:
            value, grad = loss._value_and_grad(output, target)
            return float(value), grad
        return None, loss._grad(output, target)
    if return_loss and hasattr(loss, "value_and_grad"):
        value, grad = loss.value_and_grad(output, y)
    else:
        value, grad = (loss.value(output, y) if return_loss else None), loss.grad(output, y)
    grad = as_float_array(grad, "loss.grad(output, y)", dtype=output.dtype, finite=False, copy=True)
    if grad.shape != output.shape:
        raise ValueError(
            f"the loss {loss!r} returned a gradient of shape {grad.shape} for an output of shape "
            f"{output.shape}; grad(output, target) must return dL/d(output) with the output's shape."
        )
    return (None if value is None else float(value)), grad


def _forward(x: np.ndarray, plan: list) -> tuple[list, list, np.ndarray]:
    """f_k = h_k Ω_kᵀ + β_k and h_{k+1} = a[f_k] into the plan's arrays.

    Returns the inputs h_k of the linear layers, what each block's activations read in the
    backward pass (an ``(activation, f, h)`` triple per activation) and the output.
    """
    inputs, kept = [], []
    h = x
    for weight, bias, acts, f_out, h_out, _ in plan:
        inputs.append(h)
        h = np.matmul(h, weight.data.T, out=f_out)
        h += bias.data
        triples = []
        for j, layer in enumerate(acts):
            activation = layer.activation
            if j == 0 and activation.derivative_from_output and activation.function_out is not None:
                out = activation.function_out(h, h)      # f_k is needed no more: h_{k+1} replaces it
                triples.append((activation, out, out))
            else:
                out = activation.forward(h, h_out if j == 0 else None)
                triples.append((activation, h, out))
            h = out
        kept.append(triples)
    return inputs, kept, h


def _backward(grad: np.ndarray, inputs: list, kept: list, plan: list, gradients: list) -> bool:
    """dL/df_k in place of dL/dh_{k+1}; dL/dΩ_k, dL/dβ_k written into ``gradients`` (views
    of one flat array, in the order Ω_0, β_0, Ω_1, …) and added to the parameters' grad
    (``Parameter.accumulate``, written out: this loop runs on every training step).

    Returns whether every parameter's grad is now its view in ``gradients`` (no parameter
    held a gradient to add to).
    """
    own = True
    for k in range(len(plan) - 1, -1, -1):
        weight, bias, _, _, _, grad_input = plan[k]
        for activation, f, h in reversed(kept[k]):
            grad = activation.backward(grad, f, h, grad)
        gradient = np.matmul(grad.T, inputs[k], out=gradients[2 * k])
        if weight.grad is None:
            weight.grad = gradient
        else:
            weight.grad, own = weight.grad + gradient, False
        gradient = batch_sum(grad, gradients[2 * k + 1])
        if bias.grad is None:
            bias.grad = gradient
        else:
            bias.grad, own = bias.grad + gradient, False
        if k:
            grad = np.matmul(grad, weight.data, out=grad_input)
    return own


def _needs_output_array(acts: list) -> bool:
    """Whether a block's first activation writes h_{k+1} into an array apart from f_k: it can
    write into a given array but cannot differentiate from its output alone (else
    :func:`_forward` computes h_{k+1} in f_k's own buffer)."""
    first = acts[0].activation if acts else None
    return first is not None and first.function_out is not None and not first.derivative_from_output
