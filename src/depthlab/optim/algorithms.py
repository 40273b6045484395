"""The optimizers, sorted by increasing complexity, with PyTorch 2.13's defaults and checks.

Each class only names its update rule (in :mod:`depthlab.optim.rules`) and its
hyperparameters; :class:`~depthlab.optim.base.Optimizer` does the rest. Every one matches
``torch.optim`` step for step (tested to 1e-10 in float64).

    >>> opt = Adam(net.parameters(), lr=1e-3)
    >>> opt.zero_grad(); ...backward...; opt.step()
    >>> opt.state[net.parameters()[0]].exp_avg      # plain, inspectable state

Differences from PyTorch (deliberate): non-finite hyperparameters are refused; a
parameter listed twice in one group is an error (PyTorch warns); NAdam's ``mu_product``
is always float64 (PyTorch keeps it in the default dtype); there are no ``foreach``,
``fused``, ``capturable`` or ``differentiable`` switches (NumPy has one implementation).
"""
from __future__ import annotations

import inspect

from .._checks import lookup
from . import rules
from .base import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum or Nesterov momentum.

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1e-3
    momentum : float, default 0
        μ. The buffer starts as the first gradient: b₁ = g₁, then b ← μ b + (1 − τ) g.
    dampening : float, default 0
        τ.
    weight_decay : float, default 0
        λ, added to the gradient as λθ (L2 penalty).
    nesterov : bool, default False
        Step along g + μ b. Requires ``momentum > 0`` and ``dampening == 0``.
    maximize : bool, default False
        Ascend instead of descend.

    Notes
    -----
    004's "Momentum" (v ← 0.1 v − γ g; x ← x + v) is exactly ``SGD(lr=γ, momentum=0.1)``
    (v = −γ b while γ is constant). Its "Nesterov" (gradient at the look-ahead point
    x + μ v) is the same algorithm as ``nesterov=True``, which tracks the look-ahead
    point θ = x + μ v itself.
    """

    state_type = rules.SGDState
    init_state = staticmethod(rules.sgd_init)
    update = staticmethod(rules.sgd_update)

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _check_group(self, group):
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening "
                f"(got momentum={group['momentum']}, dampening={group['dampening']})."
            )


class Adagrad(Optimizer):
    """AdaGrad: per-coordinate steps γ_t g / (√Σg² + ε), γ_t = γ / (1 + (t − 1)·lr_decay).

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1e-2
    lr_decay : float, default 0
    weight_decay : float, default 0
    initial_accumulator_value : float, default 0
        Starting value of the accumulated squares ``sum``.
    eps : float, default 1e-10
        Added after the square root.
    maximize : bool, default False

    Notes
    -----
    004's AdaGrad accumulates one scalar Σ‖g‖² for all coordinates; this (like PyTorch)
    accumulates per coordinate.
    """

    state_type = rules.AdagradState
    init_state = staticmethod(rules.adagrad_init)
    update = staticmethod(rules.adagrad_update)

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, *, maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))


class RMSprop(Optimizer):
    """RMSprop: v ← α v + (1 − α) g²,  θ ← θ − γ g / (√v + ε).

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1e-2
    alpha : float, default 0.99
        Smoothing constant α of the squared-gradient average.
    eps : float, default 1e-8
        Added after the square root.
    weight_decay : float, default 0
    momentum : float, default 0
        With μ > 0: b ← μ b + g/(√v + ε), θ ← θ − γ b.
    centered : bool, default False
        Normalize by the estimated variance v − m² (m the running mean of g).
    maximize : bool, default False

    Notes
    -----
    004's RMSProp assigns ``x = lr*grad/...`` instead of subtracting it; here θ moves by
    −γ g/(√v + ε).
    """

    state_type = rules.RMSpropState
    init_state = staticmethod(rules.rmsprop_init)
    update = staticmethod(rules.rmsprop_update)

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))


class Adadelta(Optimizer):
    """Adadelta: steps √(u + ε)/√(v + ε)·g scaled by γ, with running means v of g², u of Δθ².

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1.0
    rho : float, default 0.9
        Decay ρ of both running means, in [0, 1].
    eps : float, default 1e-6
    weight_decay : float, default 0
    maximize : bool, default False
    """

    state_type = rules.AdadeltaState
    init_state = staticmethod(rules.adadelta_init)
    update = staticmethod(rules.adadelta_update)
    work_buffers = 3

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, maximize=False):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))


class Adam(Optimizer):
    """Adam with bias corrections 1 − β₁ᵗ (first moment) and 1 − β₂ᵗ (second moment).

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        (β₁, β₂), each in [0, 1).
    eps : float, default 1e-8
        Added after the square root of the bias-corrected second moment.
    weight_decay : float, default 0
        Coupled (added to g) unless ``decoupled_weight_decay``.
    amsgrad : bool, default False
        Normalize by the running maximum of the raw second moment v.
    maximize : bool, default False
    decoupled_weight_decay : bool, default False
        θ ← θ(1 − γλ) before the step, as AdamW.

    Notes
    -----
    State per parameter: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v), ``max_exp_avg_sq``
    (AMSGrad only). 004's Adam bias-corrects the second moment with ρ₁ instead of ρ₂;
    here it is 1 − β₂ᵗ.
    """

    state_type = rules.AdamState
    init_state = staticmethod(rules.adam_init)
    update = staticmethod(rules.adam_update)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, decoupled_weight_decay=decoupled_weight_decay))


class AdamW(Adam):
    """Adam with decoupled weight decay θ ← θ(1 − γλ), λ = 1e-2 by default.

    Same parameters as :class:`Adam` except ``weight_decay`` (default 1e-2) and no
    ``decoupled_weight_decay`` switch (always on).
    """

    _fixed_hyperparameters = {"decoupled_weight_decay": True}

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)


class Adamax(Optimizer):
    """Adamax: Adam with the infinity norm, u ← max(β₂ u, |g| + ε), θ ← θ − γ/(1 − β₁ᵗ)·m/u.

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    maximize : bool, default False
    """

    state_type = rules.AdamaxState
    init_state = staticmethod(rules.adamax_init)
    update = staticmethod(rules.adamax_update)

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize))


class NAdam(Optimizer):
    """NAdam: Adam with Nesterov momentum and the momentum schedule μ_t = β₁(1 − ½·0.96^(tψ)).

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum_decay : float, default 4e-3
        ψ.
    decoupled_weight_decay : bool, default False
        θ ← θ(1 − γλ) (NAdamW) instead of adding λθ to g.
    maximize : bool, default False
    """

    state_type = rules.NAdamState
    init_state = staticmethod(rules.nadam_init)
    update = staticmethod(rules.nadam_update)
    work_buffers = 3

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))


class RAdam(Optimizer):
    """Rectified Adam: plain momentum steps until the variance estimate is reliable (ρ_t > 5).

    Parameters
    ----------
    params : iterable of Parameter or of dict
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    decoupled_weight_decay : bool, default False
    maximize : bool, default False
    """

    state_type = rules.RAdamState
    init_state = staticmethod(rules.radam_init)
    update = staticmethod(rules.radam_update)
    work_buffers = 3

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.__name__.lower(): cls for cls in (SGD, Adagrad, RMSprop, Adadelta, Adam, AdamW, Adamax, NAdam, RAdam)
}


def resolve(optimizer) -> type[Optimizer]:
    """An optimizer class from a name in :data:`OPTIMIZERS` (case-insensitive) or a class."""
    if isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
        if optimizer.update is None:
            raise TypeError(f"optimizer {optimizer.__name__} has no update rule (Optimizer is the base class); "
                            f"pass one of {', '.join(cls.__name__ for cls in OPTIMIZERS.values())} or its name.")
        return optimizer
    if isinstance(optimizer, type):
        raise TypeError(f"optimizer must be a depthlab optimizer class or name, got the class {optimizer.__module__}."
                        f"{optimizer.__qualname__}. Use dl.optim's own, e.g. 'adam' or dl.optim.Adam.")
    if isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a name or an Optimizer class, got an instance of {type(optimizer).__name__}; "
            f"pass the class ({type(optimizer).__name__}) or its name ({type(optimizer).__name__.lower()!r})."
        )
    return lookup(OPTIMIZERS, optimizer, "optimizer", "optimizer")


def get(name, params, **hyperparameters) -> Optimizer:
    """Build an optimizer by name: ``get("adam", net.parameters(), lr=1e-3)``.

    Parameters
    ----------
    name : str or Optimizer subclass
        One of :data:`OPTIMIZERS`: sgd, adagrad, rmsprop, adadelta, adam, adamw, adamax,
        nadam, radam.
    params : iterable of Parameter or of dict
    **hyperparameters
        Passed to the class; unknown names are refused with the valid list.
    """
    cls = resolve(name)
    valid = [p for p in inspect.signature(cls).parameters if p != "params"]
    unknown = [key for key in hyperparameters if key not in valid]
    if unknown:
        raise TypeError(
            f"{cls.__name__} has no hyperparameter {unknown[0]!r}. Valid hyperparameters: {', '.join(valid)}."
        )
    return cls(params, **hyperparameters)
