"""``Parameter``: an array that an optimizer may update, with the gradient beside it."""
from __future__ import annotations

import numpy as np

from .._checks import as_float_array


class Parameter:
    """A trainable array and its gradient.

    Parameters
    ----------
    data : array_like of float
        The values, e.g. a weight Ω_k of shape ``(D_out, D_in)`` or a bias β_k of shape
        ``(D_out,)``. Integer input is converted to float64; the array is kept, not copied,
        when it already is a float array (so optimizers update it in place).
    name : str, optional
        A label for messages and state dicts, e.g. ``"layers.0.weight"``.

    Attributes
    ----------
    data : np.ndarray
    grad : np.ndarray or None
        dL/d(data), the same shape and dtype as ``data``; ``None`` until a backward pass
        writes it. Backward passes *add* to it; ``zero_grad`` clears it.

    Notes
    -----
    Parameters hash by identity, so optimizer state is keyed by the parameter itself and one
    optimizer can serve any number of layers.
    """

    __slots__ = ("data", "grad", "name", "__weakref__")

    def __init__(self, data, name: str | None = None):
        self.data = as_float_array(data, "Parameter data", finite=False)
        self.grad: np.ndarray | None = None
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradient: ``None`` (the default, as PyTorch) or zeros in place."""
        if set_to_none or self.grad is None:
            self.grad = None
        else:
            self.grad.fill(0)

    def accumulate(self, gradient: np.ndarray) -> None:
        """Add ``gradient`` to ``grad`` (the first call stores it without a copy)."""
        self.grad = gradient if self.grad is None else self.grad + gradient

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"Parameter({label}shape={self.data.shape}, dtype={self.data.dtype})"
