"""Gradient clipping by global norm, as ``torch.nn.utils.clip_grad_norm_``."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .base import parameter_list


def _norm(array: np.ndarray, norm_type: float) -> float:
    flat = array.reshape(-1)
    if norm_type == math.inf or not flat.size:
        return float(np.max(np.abs(flat))) if flat.size else 0.0
    if norm_type == 2.0:
        norm = math.sqrt(float(np.dot(flat, flat)))
    else:
        norm = float(np.sum(np.abs(flat) ** norm_type)) ** (1.0 / norm_type)
    if norm == math.inf:  # the sum of powers overflowed: scale by the largest entry (finite or not)
        largest = float(np.max(np.abs(flat)))
        if math.isfinite(largest) and largest > 0:
            norm = largest * float(np.sum((np.abs(flat) / largest) ** norm_type)) ** (1.0 / norm_type)
    return norm


def _beyond_float(value):
    """An int too large for a float (10**400) as ±inf, its limit here; anything else as given."""
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool) and abs(value) > 2**1023:
        return math.inf if value > 0 else -math.inf
    return value


def _gradients(params: list) -> list[np.ndarray]:
    """The gradients to scale in place, every one checked before any is touched."""
    grads = []
    for index, param in enumerate(params):
        grad = param.grad
        if grad is None:
            continue
        if isinstance(grad, np.floating) and param.data.ndim == 0:  # arithmetic on a 0-d array gives a scalar
            grad = param.grad = np.array(grad)
        if not isinstance(grad, np.ndarray) or grad.dtype.kind != "f":
            got = f"dtype {grad.dtype}" if isinstance(grad, np.ndarray) else type(grad).__name__
            raise TypeError(f"parameters[{index}].grad must be a float ndarray (it is scaled in place), got {got}.")
        if grad.shape != param.data.shape:
            raise ValueError(f"parameters[{index}].grad has shape {grad.shape}, but the parameter has shape "
                             f"{param.data.shape}; a gradient has its parameter's shape.")
        if not grad.flags.writeable:
            raise ValueError(f"parameters[{index}].grad is read-only, so it cannot be scaled in place; "
                             "give the parameter a writeable copy: param.grad = param.grad.copy().")
        grads.append(grad)
    return grads


def clip_grad_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False) -> float:
    """Scale all gradients together so that their joint norm is at most ``max_norm``.

    The total norm ‖(‖g₁‖, ‖g₂‖, …)‖_p is the p-norm of all gradients seen as one vector;
    every gradient is multiplied in place by min(1, max_norm / (total + 1e-6)).
    Parameters whose ``.grad`` is ``None`` are skipped.

    Parameters
    ----------
    parameters : Parameter or iterable of Parameter
    max_norm : float
        Largest allowed total norm, ≥ 0.
    norm_type : float, default 2.0
        p > 0, or ``float("inf")`` / ``"inf"`` for the largest absolute entry.
    error_if_nonfinite : bool, default False
        Raise when the total norm is NaN or infinite (otherwise the gradients are scaled by
        the non-finite coefficient, as PyTorch does).

    Returns
    -------
    float
        The total norm before clipping.
    """
    params = parameter_list(parameters, "parameters")
    max_norm, norm_type = _beyond_float(max_norm), _beyond_float(norm_type)
    if isinstance(max_norm, bool) or not isinstance(max_norm, (numbers.Real, np.floating, np.integer)) \
            or not max_norm >= 0:
        raise ValueError(f"max_norm must be a number >= 0, got {max_norm!r}.")
    if isinstance(norm_type, str) and norm_type.lower() == "inf":
        norm_type = math.inf
    if isinstance(norm_type, bool) or not isinstance(norm_type, (numbers.Real, np.floating, np.integer)) \
            or not norm_type > 0:
        raise ValueError(f"norm_type must be a number > 0 or 'inf', got {norm_type!r}.")
    norm_type = float(norm_type)
    if not isinstance(error_if_nonfinite, (bool, np.bool_)):
        raise TypeError(f"error_if_nonfinite must be True or False, got {type(error_if_nonfinite).__name__} "
                        f"{error_if_nonfinite!r}.")
    grads = _gradients(params)
    if not grads:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        norms = [_norm(g, norm_type) for g in grads]
        total = _norm(np.array(norms), norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise ValueError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite ({total}), "
            "so it cannot be clipped. Set error_if_nonfinite=False to scale the gradients by the "
            "non-finite norm anyway."
        )
    coefficient = min(float(max_norm) / (total + 1e-6), 1.0)
    if coefficient == 1.0:  # multiplying by 1 changes nothing
        return total
    with np.errstate(invalid="ignore"):
        for g in grads:
            g *= coefficient
    return total

