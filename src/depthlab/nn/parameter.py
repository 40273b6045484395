"""``Parameter``: an array that an optimizer may update, with the gradient beside it."""
from __future__ import annotations

import numpy as np

from .._checks import FLOATING, as_float_array


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

    __slots__ = ("_data", "grad", "name", "__weakref__")

    def __init__(self, data, name: str | None = None):
        self._data = as_float_array(data, "Parameter data", finite=False)
        self.grad: np.ndarray | None = None
        self.name = name

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value) -> None:
        """Replace the values (as PyTorch's ``p.data = ...``): a float array is kept as is, anything
        else converted as in the constructor (a list or an integer array becomes float64)."""
        if type(value) is not np.ndarray or value.dtype not in FLOATING:  # float16 becomes float64, as in __init__
            value = as_float_array(value, "Parameter.data", finite=False)
        self._data = value

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The values as an array (``np.asarray(p)``; ``load_state_dict(dict(other.named_parameters()))``)."""
        if copy:
            return np.array(self._data, dtype=dtype, copy=True)
        return np.asarray(self._data, dtype=dtype)

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
        """Add ``gradient`` (an array of the parameter's shape) to ``grad``; the first call stores
        it without a copy. Another float dtype or an integer array is converted to the
        parameter's dtype; another shape is refused (nothing is added)."""
        data = self._data
        if type(gradient) is not np.ndarray or gradient.dtype != data.dtype or gradient.shape != data.shape:
            gradient = self._checked(gradient)
        self.grad = gradient if self.grad is None else self.grad + gradient

    def _checked(self, gradient) -> np.ndarray:
        label = f"{self!r}.accumulate(gradient)"
        gradient = as_float_array(gradient, label, dtype=self._data.dtype, finite=False)
        if gradient.shape != self._data.shape:
            hint = (" Sum it over the batch axis first: gradient.sum(axis=0)."
                    if gradient.shape[1:] == self._data.shape else "")
            raise ValueError(f"{label} got an array of shape {gradient.shape}; it must have the parameter's shape "
                             f"{self._data.shape} (dL/dθ summed over the batch).{hint}")
        return gradient

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"Parameter({label}shape={self.data.shape}, dtype={self.data.dtype})"


def new_values(arrays, params: list[Parameter], owner: str = "set_weights") -> list[np.ndarray]:
    """Check ``arrays`` as new values for ``params`` (Keras's ``set_weights``); returns them as arrays.

    Parameters
    ----------
    arrays : iterable of array_like
        One array per parameter, in order ([Ω_0, β_0, Ω_1, β_1, ...]); a list, a tuple or any
        iterable (a generator is read once).
    params : list of Parameter
        The parameters they replace; each array must have its parameter's shape.
    owner : str
        The calling method, for messages.

    Returns
    -------
    list of np.ndarray
        In each parameter's dtype (float64 values written into a float32 network are rounded,
        as ``Parameter.data[...] = a`` would). Nothing is written: the caller copies the values
        only after every array passed, so a refused call changes no parameter.

    Raises
    ------
    TypeError
        Not an iterable of arrays (a dict, a single array, a string), or an array of complex,
        object or string values, or a masked array with masked entries.
    ValueError
        The wrong number of arrays, a shape that differs from the parameter's, NaN or Inf.
    """
    if isinstance(arrays, np.ndarray) or isinstance(arrays, (str, bytes, dict)) or not hasattr(arrays, "__iter__"):
        kind = f"an ndarray of shape {arrays.shape}" if isinstance(arrays, np.ndarray) else type(arrays).__name__
        raise TypeError(f"{owner} needs a list of {len(params)} arrays [Ω_0, β_0, Ω_1, β_1, ...] "
                        f"(as get_weights returns), got {kind}.")
    arrays = list(arrays)
    if len(arrays) != len(params):
        raise ValueError(f"{owner} needs {len(params)} arrays (one per parameter: "
                         f"{', '.join(_label(p, i) for i, p in enumerate(params))}), got {len(arrays)}.")
    checked = []
    for i, (param, array) in enumerate(zip(params, arrays)):
        value = as_float_array(array, f"{owner}: {_label(param, i)}", dtype=param.data.dtype)
        if value.shape != param.shape:
            raise ValueError(f"{owner}: {_label(param, i)} has shape {param.shape}, got an array of shape {value.shape}.")
        checked.append(value)
    return checked


def _label(param: Parameter, i: int) -> str:
    """A parameter's name for messages, or its position when it has none (a user layer's)."""
    return param.name if param.name else f"parameter {i}"
