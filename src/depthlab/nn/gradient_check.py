"""Gradient checking: backpropagation against central differences.

The central difference (004, Question 2)

    ∂L/∂θ_i ≈ (L(θ + ε e_i) − L(θ − ε e_i)) / 2ε

has truncation error O(ε²) and rounding error O(u·|L|/ε) (u the unit roundoff), so in
float64 with ε = 1e-6 it agrees with an exact gradient to about 1e-9 relative; in float32
(u ≈ 6e-8) it cannot do better than about 1e-2 and is no test at all. At a kink of the
activation (ReLU at 0) the two sides see different slopes: a mismatch there is expected,
not a bug, and :func:`gradcheck` says when a sample sits that close to one.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from . import losses as _losses
from .._checks import as_float_array, check_positive_int, check_real, resolve_rng


def numerical_gradient(f, x, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of a scalar function.

    Parameters
    ----------
    f : callable
        ``f(x) -> float`` for an array x of the given shape.
    x : array_like, any shape
    eps : float
        The step ε.

    Returns
    -------
    np.ndarray, same shape (and float dtype) as x
    """
    eps = check_real(eps, "eps", low=0, low_open=True)
    if not callable(f):
        raise TypeError(f"numerical_gradient(f, x): f must be a function of x returning a number, got "
                        f"{type(f).__name__}.")
    point = as_float_array(x, "x", copy=True)
    grad = np.empty_like(point)
    flat, out = point.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        upper, high = _number(f(point), "f(x)"), float(flat[i])
        flat[i] = original - eps
        lower, low = _number(f(point), "f(x)"), float(flat[i])
        flat[i] = original
        if high == low:
            raise ValueError(f"numerical_gradient: eps={eps:g} is below the resolution of x's {point.dtype} at "
                             f"x.flat[{i}] = {float(original):g} (x ± eps rounds to x); use a larger eps.")
        out[i] = (upper - lower) / (high - low)  # the step x actually took (float32 rounds x ± eps)
    return grad


def _number(value, name: str) -> float:
    """``value`` as a float, or a TypeError saying that a function must return one number."""
    try:
        return float(np.asarray(value, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        shape = f" of shape {np.shape(value)}" if isinstance(value, np.ndarray) else ""
        raise TypeError(f"{name} must return one number (a scalar loss), got {type(value).__name__}{shape}; "
                        "reduce it first, e.g. float(values.sum()).") from None


def numerical_jacobian(f, x, eps: float = 1e-6) -> np.ndarray:
    """Central-difference Jacobian of a vector function: shape ``f(x).shape + x.shape``."""
    eps = check_real(eps, "eps", low=0, low_open=True)
    point = as_float_array(x, "x", copy=True)
    flat = point.reshape(-1)
    columns = []
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        upper, high = np.asarray(f(point), dtype=float), float(flat[i])
        flat[i] = original - eps
        lower, low = np.asarray(f(point), dtype=float), float(flat[i])
        flat[i] = original
        columns.append((upper - lower) / (high - low))
    out_shape = columns[0].shape
    return np.stack(columns, axis=-1).reshape(out_shape + point.shape)


def _errors(analytic: np.ndarray, numeric: np.ndarray) -> tuple[float, float, float]:
    """(max absolute error, that error relative to the tensor's scale, the scale).

    The scale is the larger of max|analytic| and max|numeric|.
    """
    difference = float(np.max(np.abs(analytic - numeric))) if analytic.size else 0.0
    scale = max(float(np.max(np.abs(analytic), initial=0.0)), float(np.max(np.abs(numeric), initial=0.0)))
    return difference, (difference / scale if scale > 0 else difference), scale


@dataclass
class GradcheckRow:
    """The comparison for one tensor: ``name`` is e.g. ``weights[0]`` or ``input``.

    ``resolution`` is the rounding noise of the central difference itself, about
    100·u·max(|L|, 1)/(2ε) with u the dtype's unit roundoff: a gradient error below it cannot
    be seen by this method, so a tensor passes when
    ``max_abs_error <= tolerance·scale + resolution``.
    """

    name: str
    shape: tuple[int, ...]
    checked: int
    max_abs_error: float
    max_rel_error: float
    scale: float = 0.0
    resolution: float = 0.0

    def passes(self, tolerance: float) -> bool:
        return self.max_abs_error <= tolerance * self.scale + self.resolution


@dataclass
class GradcheckResult:
    """Per-tensor errors of backpropagation against central differences.

    ``passed`` is True when every tensor's error is below ``tolerance`` relative to its scale,
    up to the resolution of central differences (see :class:`GradcheckRow`).
    ``near_kinks`` counts pre-activations within reach of a kink of their activation (a
    central difference there is unreliable).
    """

    rows: list[GradcheckRow]
    tolerance: float
    near_kinks: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(row.passes(self.tolerance) for row in self.rows)

    @property
    def max_rel_error(self) -> float:
        return max(row.max_rel_error for row in self.rows)

    def __getitem__(self, name: str) -> GradcheckRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no tensor named {name!r}; have {[r.name for r in self.rows]}")

    def to_dict(self) -> dict:
        return {"passed": self.passed, "tolerance": self.tolerance, "near_kinks": self.near_kinks,
                "rows": [vars(row) for row in self.rows], "notes": list(self.notes)}

    def __str__(self) -> str:
        lines = [f"{'tensor':<14}{'shape':>14}{'checked':>9}{'max abs err':>14}{'max rel err':>14}"]
        for r in self.rows:
            lines.append(f"{r.name:<14}{str(r.shape):>14}{r.checked:>9}{r.max_abs_error:>14.3e}{r.max_rel_error:>14.3e}")
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(f"{verdict}: largest relative error {self.max_rel_error:.3e} (tolerance {self.tolerance:g})")
        lines += self.notes
        return "\n".join(lines)


def gradcheck(net, x, y, loss="sum_squares", eps: float = 1e-6, tolerance: float = 1e-6,
              max_entries: int | None = None, rng=0) -> GradcheckResult:
    """Compare every parameter gradient and dL/dx with central differences.

    Parameters
    ----------
    net : Sequential
    x : array_like, shape (N, D_0)
    y : array_like
        Targets for ``loss``.
    loss : name or loss object, default "sum_squares"
    eps : float
        Central-difference step.
    tolerance : float
        ``result.passed`` requires every relative error below it.
    max_entries : int, optional
        Check at most this many randomly chosen entries per tensor (all when None) — a
        full check costs two forward passes per entry.
    rng : seed or Generator for choosing the entries.

    Returns
    -------
    GradcheckResult
    """
    _check_network(net, "gradcheck")
    loss = _losses.get(loss)
    eps = check_real(eps, "eps", low=0, low_open=True)
    tolerance = check_real(tolerance, "tolerance", low=0, low_open=True)
    if max_entries is not None:
        max_entries = check_positive_int(max_entries, "max_entries")
    rng = resolve_rng(rng)
    x = net.check_input(x, "x", finite=True)
    if net.stochastic:
        raise ValueError("gradcheck compares forward passes, but this network's dropout draws a new mask on every "
                         "pass (train mode), so the differences would measure the masks; call net.eval() first.")
    notes = []
    if net.dtype == np.float32:
        message = ("gradcheck in float32 is unreliable: central differences keep only ~3 digits "
                   "(rounding error ≈ 6e-8·|L|/eps). Check net.astype('float64') instead.")
        warnings.warn(message, stacklevel=2)
        notes.append(message)

    saved_buffers = {name: np.array(value, copy=True) for name, value in net.named_buffers()}
    saved_grads = [(p, p.grad) for p in net.parameters()]
    try:
        rows, trace = _compare(net, x, y, loss, eps, max_entries, rng)
    finally:  # the user's gradients and batch norm's running statistics as they were
        for p, grad in saved_grads:
            p.grad = grad
        if saved_buffers:
            net.load_state_dict(saved_buffers, strict=False)
    resolution = rows[0].resolution
    unresolved = [row.name for row in rows if 0 < row.scale < 1e3 * resolution]
    if unresolved:
        notes.append(
            f"gradients of {', '.join(unresolved)} are within 1000× of the resolution of central "
            f"differences ({resolution:.1e}): their relative errors measure rounding noise, not backprop."
        )

    near = _count_near_kinks(net, trace, eps)
    if near:
        notes.append(
            f"{near} pre-activation value(s) lie within reach of an activation kink (e.g. ReLU at 0): "
            "a perturbation of ±eps moves them across it, so the central difference mixes two slopes. "
            "Large errors there are expected, not a bug; use another batch or a smaller eps."
        )
    return GradcheckResult(rows, tolerance, near, notes)


def _check_network(net, owner: str) -> None:
    if not all(hasattr(net, name) for name in ("check_input", "input_jacobian", "named_parameters")):
        got = "list" if isinstance(net, list) else type(net).__name__
        raise TypeError(f"{owner} needs a depthlab network (dl.Sequential or dl.MLP), got {got}; "
                        "wrap a single layer or a list of layers as dl.Sequential(...).")


def _compare(net, x: np.ndarray, y, loss, eps: float, max_entries, rng) -> tuple[list, object]:
    """The rows of :func:`gradcheck` (every parameter, then the input) and the recorded trace."""
    net.zero_grad()
    trace = net.forward(x, record=True, detached=True)  # the user's last recorded pass stays theirs
    grads = net.backward(loss.grad(trace.output, y), trace=trace)
    top = {id(p) for linear in net.linears for p in (linear.weight, linear.bias)}
    named = [(param.name if id(param) in top else name, param,
              np.zeros(param.shape) if param.grad is None else param.grad.copy())  # unused by backward: zero
             for name, param in net.named_parameters()]

    def loss_at(point=x):
        return _number(loss.value(net.forward(point, allow_nonfinite=True), y), "loss.value(output, y)")

    resolution = 100 * np.finfo(net.dtype).eps * max(abs(loss_at()), 1.0) / (2 * eps)
    rows = []
    for name, param, analytic in named:
        values = param.data.reshape(-1) if param.data.flags.c_contiguous else param.data.flat
        indices = np.arange(param.size)
        if max_entries is not None and param.size > max_entries:
            indices = np.sort(rng.choice(param.size, size=max_entries, replace=False))
        numeric = np.empty(indices.size)
        for j, i in enumerate(indices):
            original = values[i]
            try:
                values[i] = original + eps
                upper, high = loss_at(), float(values[i])
                values[i] = original - eps
                lower, low = loss_at(), float(values[i])
            finally:
                values[i] = original
            numeric[j] = (upper - lower) / (high - low)  # the step the entry took (rounded in float32)
        errors = _errors(analytic.reshape(-1)[indices], numeric)
        rows.append(GradcheckRow(name, param.shape, int(indices.size), *errors, resolution))
    numeric_input = numerical_gradient(loss_at, x, eps)
    rows.append(GradcheckRow("input", x.shape, int(x.size), *_errors(grads.input, numeric_input), resolution))
    return rows, trace


def _count_near_kinks(net, trace, eps: float) -> int:
    """Inputs of activation layers closer to a kink than a ±eps perturbation of any weight
    can move them (the reach grows with the Linear layers above, as Σ of |h| times eps)."""
    count, inputs = 0, [trace.input] + trace.layer_outputs[:-1]
    linear_inputs = [inputs[i] for i, layer in enumerate(net.layers) if layer in net.linears]
    k = -1  # the Linear layer that feeds the activation
    for i, layer in enumerate(net.layers):
        if layer in net.linears:
            k += 1
        kinks = getattr(getattr(layer, "activation", None), "kinks", ())
        if not kinks:
            continue
        scale = float(np.max(np.abs(linear_inputs[max(k, 0)]))) if linear_inputs else 1.0
        reach = 10 * eps * (1.0 + scale * max(1, len(net.linears) - k))
        for kink in kinks:
            count += int(np.count_nonzero(np.abs(inputs[i] - kink) < reach))
    return count


def check_input_jacobian(net, x, eps: float = 1e-6) -> tuple[float, float]:
    """Max absolute and relative error of ``net.input_jacobian(x)`` against central differences.

    The numerical Jacobian perturbs one input coordinate for the whole batch at once
    (samples are independent), costing 2·D_0 forward passes. It is taken in float64 (on a
    float64 copy of a float32 network), where central differences keep ~9 digits; in float32
    they keep ~3 and would blame a correct Jacobian.
    """
    _check_network(net, "check_input_jacobian")
    eps = check_real(eps, "eps", low=0, low_open=True)
    x = net.check_input(x, "x", finite=True)
    analytic = net.input_jacobian(x)
    reference = net if net.dtype == np.float64 else net.astype("float64")
    point = x.astype(np.float64)
    numeric = np.empty(analytic.shape)
    for j in range(x.shape[1]):
        point[:, j] = x[:, j] + eps
        high = point[:, j].copy()
        upper = reference.forward(point, allow_nonfinite=True)
        point[:, j] = x[:, j] - eps
        step = high - point[:, j]  # what x ± eps became (a large x rounds it)
        lower = reference.forward(point, allow_nonfinite=True)
        point[:, j] = x[:, j]
        if not step.all():
            raise ValueError(f"check_input_jacobian: eps={eps:g} is below the resolution of x in column {j} "
                             "(x ± eps rounds to x); use a larger eps.")
        numeric[:, :, j] = (upper - lower) / step[:, None]
    return _errors(analytic.astype(np.float64), numeric)[:2]
