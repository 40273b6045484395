"""Run any optimizer on a function of a vector and keep the whole trajectory.

    >>> result = minimize("elliptic", [-7.0, 2.0], optimizer="adam", steps=300, lr=0.5)
    >>> result.x, result.trajectory.shape               # (2,), (301, 2)

:data:`SEED_004_SETTINGS` are hyperparameters with which seed 004's six algorithms all
reach the minimum of its f(x, y) = x²/20 + y² from (−7, 2); :func:`compare` runs a set of
settings side by side (the data of 004's figure of six trajectories).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checks import as_float_array, check_positive_int, check_real, lookup
from ..nn.parameter import Parameter
from .algorithms import get, resolve
from .base import Optimizer
from .functions import FUNCTIONS, Objective


@dataclass
class MinimizeResult:
    """What :func:`minimize` returns.

    Attributes
    ----------
    x : np.ndarray, shape (D,)
        The final point.
    value : float
        f(x) at the final point.
    trajectory : np.ndarray, shape (steps + 1, D)
        Every point visited, starting with x0.
    values : np.ndarray, shape (steps + 1,)
        f at every point of the trajectory (float64).
    grads : np.ndarray, shape (steps + 1, D)
        The gradient used at every point (the last one is evaluated but not used).
    converged : bool
        Whether the final gradient's Euclidean norm is at most ``gtol``.
    optimizer : Optimizer
        The optimizer after the run (its ``state`` can be inspected).
    """

    x: np.ndarray
    value: float
    trajectory: np.ndarray
    values: np.ndarray
    grads: np.ndarray
    converged: bool
    optimizer: Optimizer

    def __repr__(self) -> str:
        return (f"MinimizeResult({type(self.optimizer).__name__}, {len(self.values) - 1} steps, f = {self.value:.6g}, "
                f"x = {np.array2string(np.asarray(self.x), precision=4)}, converged={self.converged})")

    def _repr_html_(self) -> str:
        from .. import _html

        start, end = self.trajectory[0], self.trajectory[-1]
        rows = [["optimizer", type(self.optimizer).__name__], ["steps", len(self.values) - 1],
                ["f(x₀)", float(self.values[0])], ["f(x) at the end", float(self.value)],
                ["lowest f on the way", float(np.min(self.values))], ["x₀", str(start)], ["x at the end", str(end)],
                ["‖∇f‖ at the end", float(np.linalg.norm(self.grads[-1]))], ["converged", self.converged]]
        return _html.container(_html.heading("MinimizeResult", _html.badge("converged" if self.converged else "not converged",
                                                                             "ok" if self.converged else "saturated")),
                               _html.table(["", "value"], rows))


# the most memory minimize may use to record the trajectory and the gradients
_MAX_RECORD_BYTES = 2**30


def _resolve_function(f, grad):
    if isinstance(f, str):
        f = lookup(FUNCTIONS, f, "f", "test function")
    if isinstance(f, Objective):
        return f.value, f.grad if grad is None else grad
    if not callable(f):
        raise TypeError(
            f"f must be a callable f(x) -> float, a test-function name or an Objective, got {type(f).__name__}."
        )
    if grad is not None and not callable(grad):
        raise TypeError(f"grad must be a callable grad(x) -> array or None, got {type(grad).__name__}.")
    return f, grad


def _scalar(value, step: int) -> float:
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "fiub":
        raise TypeError(
            f"f(x) must return one real number, got {type(value).__name__} of shape {array.shape} at step {step}."
        )
    return float(array.reshape(()))


def minimize(f, x0, optimizer="adam", steps: int = 1000, grad=None, *, gtol: float = 1e-6,
             **hyperparameters) -> MinimizeResult:
    """Minimize ``f`` from ``x0`` with a depthlab optimizer, recording every step.

    Parameters
    ----------
    f : callable, str or Objective
        ``f(x) -> float`` for ``x`` of shape ``(D,)``, or a name in
        :data:`~depthlab.optim.functions.FUNCTIONS` (then its analytic gradient is used).
    x0 : array_like, shape (D,)
        Starting point; its dtype (float64 or float32) is kept.
    optimizer : str or Optimizer subclass, default "adam"
        A name in :data:`~depthlab.optim.algorithms.OPTIMIZERS` or a class.
    steps : int, default 1000
        Number of optimizer steps.
    grad : callable, optional
        ``grad(x) -> array (D,)``, the analytic gradient. Without it,
        :func:`depthlab.nn.gradient_check.numerical_gradient` (central differences, ε = 1e-6,
        in float64) is used: 2·D evaluations of ``f`` per step. The step is absolute, so
        far from the origin (|x| ≳ 1e10) it no longer resolves f.
    gtol : float, default 1e-6
        ``converged`` is true when the final gradient norm is at most ``gtol``.
    **hyperparameters
        Passed to the optimizer, e.g. ``lr=0.1, momentum=0.9``.

    Returns
    -------
    MinimizeResult

    Raises
    ------
    FloatingPointError
        When f or its gradient becomes NaN or infinite; the message names the step.
    """
    from ..nn.gradient_check import numerical_gradient

    value_of, grad_of = _resolve_function(f, grad)
    x = as_float_array(x0, "x0", ndim=1, copy=True)
    if x.size == 0:
        raise ValueError("x0 is empty; pass a starting point with at least one coordinate.")
    steps = check_positive_int(steps, "steps", minimum=0)
    gtol = check_real(gtol, "gtol", low=0.0)
    if (steps + 1) * x.size * x.itemsize * 2 > _MAX_RECORD_BYTES:
        raise ValueError(
            f"steps={str(steps)[:30]} would record a trajectory and gradients of more than "
            f"{_MAX_RECORD_BYTES / 2**30:g} GiB. Use fewer steps, or call minimize in chunks, "
            "each starting from the previous result's x."
        )
    cls = resolve(optimizer)
    param = Parameter(x)
    opt = get(cls, [param], **hyperparameters)
    trajectory = np.empty((steps + 1, x.size), dtype=x.dtype)
    grads = np.empty((steps + 1, x.size), dtype=x.dtype)
    values = np.empty(steps + 1, dtype=np.float64)
    for step in range(steps + 1):
        point = trajectory[step]
        point[:] = param.data
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            value = _scalar(value_of(point.copy()), step)
            if np.isfinite(value) and np.isfinite(point).all():
                if grad_of is None:  # central differences in float64 (ε = 1e-6 is below float32's resolution)
                    gradient = numerical_gradient(value_of, point.astype(np.float64)).astype(x.dtype)
                else:
                    gradient = np.asarray(grad_of(point.copy()))
                if gradient.dtype.kind not in "fiu":
                    raise TypeError(f"grad(x) must return an array of real numbers, got dtype {gradient.dtype} "
                                    f"at step {step}.")
                if gradient.shape != x.shape:
                    raise ValueError(f"grad(x) must return an array of shape {x.shape}, got shape {gradient.shape}.")
                finite = bool(np.isfinite(gradient).all())
                what = "the gradient"
            else:
                finite, what = False, "f(x)"
        if not finite:
            raise FloatingPointError(
                f"minimize: {what} is not finite at step {step} (x = {point}, f = {value}); "
                f"{cls.__name__} diverged. Try a smaller learning rate (lr={opt.param_groups[0]['lr']})."
            )
        values[step], grads[step] = value, gradient
        if step < steps:
            param.grad = gradient.astype(x.dtype, copy=True)
            opt.step()
    final_norm = float(np.linalg.norm(grads[-1].astype(np.float64)))
    return MinimizeResult(x=param.data.copy(), value=float(values[-1]), trajectory=trajectory, values=values,
                          grads=grads, converged=final_norm <= gtol, optimizer=opt)


# Seed 004's six algorithms on f(x, y) = x²/20 + y² from (−7, 2): name -> (optimizer, hyperparameters, steps).
# After `steps` steps every one is within |x|, |y| < 1e-3 of the minimum (0, 0). Measured (float64): the
# point enters that box for good after 94 (gd), 69 (adagrad), 216 (rmsprop), 29 (momentum), 65 (nesterov)
# and 164 (adam) steps. RMSProp needs eps = 0.1: with PyTorch's eps = 1e-8 its effective rate
# lr/√v grows as the gradient shrinks and it ends in a limit cycle of amplitude ≈ lr/2 around the
# minimum; eps caps the rate at lr/eps, so near the minimum it becomes plain gradient descent.
SEED_004_SETTINGS: dict[str, tuple[str, dict, int]] = {
    "gd": ("sgd", {"lr": 0.9}, 100),
    "adagrad": ("adagrad", {"lr": 1.5}, 100),
    "rmsprop": ("rmsprop", {"lr": 0.1, "eps": 0.1}, 250),
    "momentum": ("sgd", {"lr": 0.9, "momentum": 0.5}, 50),
    "nesterov": ("sgd", {"lr": 0.6, "momentum": 0.5, "nesterov": True}, 100),
    "adam": ("adam", {"lr": 0.3}, 200),
}


def compare(f="elliptic", x0=(-7.0, 2.0), settings=None, steps: int | None = None, grad=None
            ) -> dict[str, MinimizeResult]:
    """Run several optimizers from the same start; ``{name: MinimizeResult}``.

    Parameters
    ----------
    f, x0, grad
        As in :func:`minimize`.
    settings : dict, optional
        ``{name: (optimizer, hyperparameters, steps)}``; default :data:`SEED_004_SETTINGS`.
    steps : int, optional
        Overrides every setting's number of steps (e.g. to draw equally long paths).
    """
    settings = SEED_004_SETTINGS if settings is None else settings
    if not isinstance(settings, dict):
        raise TypeError(f"settings must be a dict {{name: (optimizer, hyperparameters, steps)}}, got "
                        f"{type(settings).__name__}. Example: {{'adam': ('adam', {{'lr': 0.1}}, 100)}}.")
    for name, setting in settings.items():
        if not (isinstance(setting, (tuple, list)) and len(setting) == 3 and isinstance(setting[1], dict)):
            raise TypeError(f"settings[{name!r}] must be a triple (optimizer, hyperparameters dict, steps), got "
                            f"{setting!r}. Example: ('adam', {{'lr': 0.1}}, 100).")
    return {
        name: minimize(f, x0, optimizer, own_steps if steps is None else steps, grad, **hyper)
        for name, (optimizer, hyper, own_steps) in settings.items()
    }
