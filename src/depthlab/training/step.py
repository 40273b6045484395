"""``TrainStep``: clear, forward, loss gradient, backward and optimizer step in one call.

The training step is the explicit loop depthlab teaches, with the engine's training plan::

    optimizer.zero_grad()
    output = net.forward(x, keep="backward")           # keeps only what backward needs
    net.backward(loss.grad(output, y), input_grad=False, intermediates=False)
    optimizer.step()

``step = TrainStep(net, loss, optimizer); step(x, y)`` runs exactly that (``fit`` runs it on
every batch). Under the "backward" plan the engine keeps its working arrays from step to step
and lets the layers' fast variants work in place (see :mod:`depthlab.nn.engine`); only the
parameters' ``grad`` arrays are visible after a step, as in PyTorch.
"""
from __future__ import annotations

import numpy as np

from ..nn import losses as _losses
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
            got = ("list of layers; wrap it: dl.Sequential(layers)" if isinstance(net, list) else
                   f"{type(net).__name__}")
            raise TypeError(f"TrainStep needs a depthlab Sequential network (e.g. dl.MLP(...)), got {got}.")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a depthlab.optim optimizer, got {type(optimizer).__name__}. "
                "Example: dl.optim.SGD(net.parameters(), lr=0.1)."
            )
        loss = _losses.get(loss)
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        own = net.parameters()
        if own and not any(id(p) in held for p in own):
            raise ValueError(
                f"the optimizer holds none of this network's {len(own)} parameters, so a step would change nothing "
                "(was it built for another network, or for a copy?). Build it with this network's parameters: "
                "dl.optim.SGD(net.parameters(), lr=0.1).")
        self.net, self.loss, self.optimizer = net, loss, optimizer
        self._output: np.ndarray | None = None

    def __call__(self, x, y, *, return_loss: bool = False):
        value = self.gradients(x, y, return_loss=return_loss)
        if not isinstance(self.loss, _losses.Loss):  # a user loss's gradient is not known to be finite
            bad = next((name for name, p in self.net.named_parameters()
                        if p.grad is not None and not np.isfinite(p.grad).all()), None)
            if bad is not None:
                raise ValueError(f"the gradient of {bad!r} holds NaN or Inf (the loss {self.loss!r} returned a "
                                 "non-finite dL/d(output), or backward overflowed); the step was not taken, the "
                                 "weights are unchanged. Check grad(output, target) and the targets.")
        self.optimizer.step()
        return value

    def gradients(self, x, y, *, return_loss: bool = False, check_target: bool = True):
        """The step without the update: clear the optimizer's gradients, then forward, loss
        gradient and backward, leaving dL/dΩ_k, dL/dβ_k in the parameters' ``grad`` (to clip
        or inspect them before ``optimizer.step()``, as ``fit`` does). Returns L or None.

        ``check_target=False`` skips checking ``y`` (a loop that checked its targets once with
        ``loss.check_target``, as ``fit`` does).
        """
        self.optimizer.zero_grad()
        self._output = None
        with np.errstate(over="ignore", invalid="ignore"):   # an overflow is reported by the checks, not by NumPy
            output = self.net.forward(x, keep="backward")
            self._output = output
            value, grad = loss_gradient(self.loss, output, y, return_loss, check_target)
            self.net.backward(grad, input_grad=False, intermediates=False, allow_nonfinite=True)
        return value

    @property
    def output(self) -> np.ndarray | None:
        """The network's output (N, D_out) for the last batch, before its update; None before
        the first step. It lives in the network's working memory: the next pass overwrites
        it, so copy it to keep it."""
        return self._output

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
        target = loss.check_target(y, output) if check_target else y
        if return_loss:
            value, grad = loss.compute_value_and_grad(output, target)
            return float(value), grad
        return None, loss.compute_grad(output, target)
    if return_loss and hasattr(loss, "value_and_grad"):
        pair = loss.value_and_grad(output, y)
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            items = f" of {len(pair)} items" if isinstance(pair, (tuple, list)) else ""
            raise TypeError(f"the loss {loss!r}'s value_and_grad(output, target) must return a pair (L, dL/d(output)), "
                            f"got {type(pair).__name__}{items}.")
        value, grad = pair
    else:
        value, grad = (loss.value(output, y) if return_loss else None), loss.grad(output, y)
    grad = as_float_array(grad, "loss.grad(output, y)", dtype=output.dtype, finite=False, copy=True)
    if grad.shape != output.shape:
        raise ValueError(
            f"the loss {loss!r} returned a gradient of shape {grad.shape} for an output of shape "
            f"{output.shape}; grad(output, target) must return dL/d(output) with the output's shape."
        )
    return (None if value is None else _scalar(value, loss)), grad


def _scalar(value, loss) -> float:
    """A user loss's value as a float, or a TypeError saying what came instead."""
    try:
        return float(np.asarray(value, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        raise TypeError(f"the loss {loss!r} returned {type(value).__name__} {value!r:.80} from value(output, target); "
                        "it must be one number (e.g. return float(((output - target) ** 2).sum())).") from None
