"""Input checks shared by every module: arrays, dtypes, random generators, names, extras.

Every message names the argument, says what was expected and what came, and hints at
the fix. These helpers raise ``TypeError`` for the wrong kind of thing (including a masked
array whose mask would be ignored, and complex values) and ``ValueError`` for the right kind
with the wrong value (NaN/Inf, or a finite value that overflows float32). :func:`require`
imports an optional dependency or raises :class:`MissingExtra` naming the extra to install.
"""
from __future__ import annotations

import difflib
import functools
import importlib
import numbers
from collections.abc import Iterable, Mapping

import numpy as np

FLOAT_DTYPES = {"float64": np.float64, "float32": np.float32}


def resolve_dtype(dtype, name: str = "dtype") -> np.dtype:
    """Return ``np.float64`` or ``np.float32`` for a name, NumPy dtype or Python type."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved not in (np.float64, np.float32):
        raise ValueError(
            f"{name} must be 'float64' or 'float32', got {dtype!r}. "
            "depthlab computes in float64 by default; use dtype='float32' for speed."
        )
    return resolved


def resolve_rng(rng, name: str = "rng") -> np.random.Generator:
    """An ``np.random.Generator`` from a Generator, an int seed or None (fresh entropy).

    The global NumPy random state is never touched.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"{name} must be a non-negative int seed, got {rng}.")
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"{name} must be an np.random.Generator, an int seed or None, got {type(rng).__name__}. "
        "Example: rng=0 or rng=np.random.default_rng(0)."
    )


def as_float_array(x, name: str, *, dtype=None, ndim: int | None = None,
                   finite: bool = True, copy: bool = False) -> np.ndarray:
    """Convert ``x`` to a floating array, refusing what cannot be trusted.

    Integers and booleans are converted to ``dtype`` (float64 when None); object, string
    and complex arrays are refused; NaN/Inf are refused when ``finite``.
    """
    if isinstance(x, np.ma.MaskedArray):
        x = unmasked(x, name)
    if (type(x) is np.ndarray and not copy and x.dtype in FLOATING
            and (dtype is None or x.dtype == dtype)):
        array = x  # the common case on hot paths: nothing to convert
    elif isinstance(x, np.ndarray):
        array = _converted(x, name, dtype, copy)
    else:
        try:
            array = np.asarray(x)
        except (ValueError, TypeError) as error:  # ragged lists and the like
            raise TypeError(f"{name} must be an array of numbers, could not convert it: {error}") from None
        array = _converted(array, name, dtype, copy)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}.")
    if finite and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(
            f"{name} contains NaN or Inf (first at index {tuple(int(i) for i in bad)}). "
            "Clean or impute the data before passing it."
        )
    return array


FLOATING = (np.dtype(np.float64), np.dtype(np.float32))


def unmasked(x: np.ma.MaskedArray, name: str) -> np.ndarray:
    """The data of a masked array with nothing masked; a mask that hides entries is refused."""
    mask = np.ma.getmaskarray(x)
    if mask.any():
        first = tuple(int(i) for i in np.argwhere(mask)[0])
        raise TypeError(
            f"{name} is a masked array with {int(mask.sum())} masked entr{'y' if mask.sum() == 1 else 'ies'} "
            f"(first at index {first}); depthlab does not read masks, so they would be silently ignored. "
            "Pass array.filled(value) to fill them, or array.compressed() to drop them (1-D), "
            "or select the unmasked rows yourself."
        )
    return np.ma.getdata(x)


def _converted(array: np.ndarray, name: str, dtype, copy: bool) -> np.ndarray:
    """``array`` as float64/float32 (``dtype``, else its own float type, else float64)."""
    kind = array.dtype.kind
    if kind == "c":
        raise TypeError(
            f"{name} must hold real numbers, got complex values (dtype {array.dtype}); the imaginary part "
            "would be lost. Pass x.real if it is zero, or np.abs(x) for magnitudes."
        )
    if kind not in "fiub":
        raise TypeError(
            f"{name} must hold real numbers, got an array of dtype {array.dtype}. "
            "Convert it first, e.g. np.asarray(x, dtype=float)."
        )
    target = np.dtype(dtype) if dtype is not None else (array.dtype if kind == "f" else np.dtype(np.float64))
    if target not in (np.float64, np.float32):
        target = np.dtype(np.float64)
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf: said below
        converted = np.array(array, dtype=target, copy=True) if copy else np.asarray(array, dtype=target)
    if kind in "fiu" and array.dtype.itemsize > target.itemsize and not np.isfinite(converted).all():
        overflowed = np.isinf(converted) & np.isfinite(array)
        if overflowed.any():
            where = tuple(int(i) for i in np.argwhere(overflowed)[0])
            raise ValueError(
                f"{name} holds {array[where].item()!r} at index {where}, which overflows {target} "
                f"(largest {np.finfo(target).max:.4g}). Rescale the data, or use dtype='float64'."
            )
    return converted


def as_batch(x, name: str, features: int | None, *, dtype=None, finite: bool = True,
             owner: str = "") -> np.ndarray:
    """A 2-D batch ``(N, features)``; explains how to reshape a 1-D vector."""
    array = as_float_array(x, name, dtype=dtype, finite=finite)
    where = f"{owner} " if owner else ""
    if array.ndim == 1:
        hint = ("x.reshape(-1, 1) for N samples of one feature" if features == 1
                else f"x.reshape(1, -1) for one sample of {array.shape[0]} features")
        raise ValueError(
            f"{where}{name} must be 2-D (N, {features if features is not None else 'D'}), "
            f"got a 1-D array of shape {array.shape}. Use {hint}."
        )
    if array.ndim != 2:
        raise ValueError(
            f"{where}{name} must be 2-D (N, {features if features is not None else 'D'}), got shape {array.shape}."
        )
    if features is not None and array.shape[1] != features:
        raise ValueError(
            f"{where}{name} has {array.shape[1]} features per sample (shape {array.shape}), "
            f"but {features} are expected (the last axis must be {features})."
        )
    if array.shape[0] == 0:
        raise ValueError(f"{where}{name} is empty (shape {array.shape}); pass at least one sample.")
    return array


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """An ``int >= minimum`` (bools refused)."""
    if type(value) is int and value >= minimum:       # the common case, without the ABC checks below
        return value
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


MAX_BINS = 100_000  # more histogram bins than a screen has pixels, and still a small array


def check_bins(bins, name: str = "bins") -> int:
    """A histogram's bin count: an int in [1, MAX_BINS] (a huge one would only exhaust memory)."""
    bins = check_positive_int(bins, name)
    if bins > MAX_BINS:
        raise ValueError(f"{name} must be at most {MAX_BINS:,}, got {bins:,}; a few dozen bins show a distribution.")
    return bins


def check_index(k, count: int, name: str = "k") -> int:
    """A row index into ``count`` rows, as Python indexes a list (negative counts from the end)."""
    if isinstance(k, bool) or not isinstance(k, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int row index, got {type(k).__name__} {k!r}.")
    if not -count <= k < count:
        raise ValueError(f"{name} must be a row index in [0, {count - 1}] (or from -{count} counting from the end), got {k}.")
    return int(k)


def check_real(value, name: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number inside the given bounds."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}.")
    try:
        value = float(value)
    except OverflowError:  # an int past float64, e.g. 10**400
        raise ValueError(f"{name} must be finite, got an integer of {len(str(abs(int(value))))} digits, beyond "
                         "float64's range.") from None
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}.")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value:g}.")
    return value


def lookup(table: Mapping, key, name: str, what: str):
    """``table[key]`` with an error listing the valid keys (and the closest one)."""
    if not isinstance(key, str):
        raise TypeError(f"{name} must be a string naming a {what}, got {type(key).__name__} {key!r}.")
    normalized = key.lower().replace("-", "_")
    if normalized in table:
        return table[normalized]
    valid = ", ".join(sorted(table))
    close = difflib.get_close_matches(normalized, list(table), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown {what} {key!r} for {name}. Valid names: {valid}.{hint}")


def as_list(value, length: int, name: str) -> list:
    """Broadcast a single value to ``length`` entries, or check a list has ``length`` entries."""
    if isinstance(value, (list, tuple)):
        if len(value) != length:
            raise ValueError(f"{name} must have one entry per layer ({length}), got {len(value)}.")
        return list(value)
    return [value] * length


def is_iterable(value) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes))


# ----------------------------------------------------------------------------- optional extras

# module imported -> (the package pip installs, the depthlab extra that brings it)
EXTRAS = {
    "matplotlib": ("matplotlib", "lab"),
    "cycler": ("matplotlib", "lab"),
    "tqdm": ("tqdm", "lab"),
    "threadpoolctl": ("threadpoolctl", "lab"),
    "sklearn": ("scikit-learn", "data"),
    "mnist1d": ("mnist1d", "data"),
    "torch": ("torch", "torch"),
    "dask": ("dask[distributed]", "dask"),
    "distributed": ("dask[distributed]", "dask"),
}


class MissingExtra(ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra that installs it.

    Attributes: ``name`` (the module), ``package`` (what pip installs), ``extra`` and ``feature``.
    """

    def __init__(self, message: str, *, name: str, package: str, extra: str, feature: str):
        super().__init__(message, name=name)
        self.package, self.extra, self.feature = package, extra, feature


def require(module: str, feature: str):
    """Import the optional ``module`` for ``feature``, or raise :class:`MissingExtra`.

    >>> Figure = require("matplotlib.figure", "figures").Figure     # doctest: +SKIP

    The message says what needs it and how to install it, e.g. "Drawing figures uses
    matplotlib, which is not installed. Install the 'lab' extra: pip install 'depthlab[lab]'".
    """
    top = module.partition(".")[0]
    package, extra = EXTRAS[top]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        found = "is not installed" if isinstance(error, ModuleNotFoundError) and error.name == top \
            else f"cannot be imported ({error})"
        raise MissingExtra(f"{feature} uses {package}, which {found}. "
                           f"Install the '{extra}' extra: pip install 'depthlab[{extra}]'",
                           name=top, package=package, extra=extra, feature=feature) from None


def optional(module: str):
    """The optional ``module`` if it can be imported, else None (for features that fall back:
    progress bars become lines, BLAS threads stay at their defaults)."""
    try:
        return require(module, "")
    except MissingExtra:
        return None


@functools.cache
def physical_memory() -> int | None:
    """Bytes of RAM on this machine (None where the platform does not say); read once."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if count < 1024 or unit == "EiB":
            return f"{count:.3g} {unit}"
        count /= 1024
    return f"{count:.3g} EiB"  # pragma: no cover


MAX_ENTRIES = int(np.iinfo(np.intp).max)  # the most entries an array can index


def check_fits_in_memory(entries: int, itemsize: int, what: str, hint: str = "use smaller sizes") -> None:
    """Refuse, with a ``ValueError`` naming ``what``, an array of ``entries`` numbers that cannot
    fit in this machine's memory (or that no NumPy array can hold), before NumPy tries.

    NumPy's own errors for these ("Maximum allowed dimension exceeded", "Unable to allocate
    7.28 TiB ...") come from deep inside an initializer and do not say which argument asked.
    """
    needed = int(entries) * int(itemsize)
    if entries > MAX_ENTRIES:
        raise ValueError(f"{what} would hold {int(entries):.3g} numbers, more than any array can index "
                         f"(at most {MAX_ENTRIES:.3g}); {hint}.")
    memory = physical_memory()
    if memory is not None and needed > memory:
        raise ValueError(f"{what} would need {_bytes(needed)}, more than this machine's {_bytes(memory)} "
                         f"of memory; {hint}.")
