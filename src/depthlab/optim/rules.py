"""The optimizers' mathematics: one small update rule per algorithm, sorted by complexity.

Each algorithm has a state (a ``NamedTuple`` of a step count and arrays, with PyTorch's
names so values can be compared with ``torch.optim``'s ``state[p]``), an ``*_init``
function that builds it, and an ``*_update`` function::

    new_state = adam_update(param, grad, state, hyper, work)

``param`` (shape ``S``) and the state arrays are updated **in place** (the returned state
shares those arrays; only its step count is new); ``grad`` (shape ``S``) is only read;
``hyper`` is a mapping of hyperparameters (an optimizer's parameter group); ``work[i]``
(i < k) are scratch arrays of shape ``S`` in the parameter's dtype, so a step allocates
nothing large. Ufuncs receive their output array as the last positional argument
(``np.multiply(a, b, out)``), which NumPy dispatches faster than ``out=`` (except
``np.maximum``, where NumPy 2.4 deprecates it).
Scalars are Python floats, so float32 parameters stay float32.

Every rule follows PyTorch 2.13's single-tensor implementation, including the order of
weight decay, ``maximize`` and bias corrections. Notation: g = gradient (negated when
maximizing, plus λ·θ with coupled weight decay λ), θ = parameter, γ = learning rate, t =
step count after this update (1 on the first step).

The common settings of SGD (no momentum, no weight decay) and Adam (no AMSGrad, no
coupled weight decay, not maximizing) also have a *fast rule* (:data:`FAST_RULES`), which
``Optimizer.step`` runs instead (they live with the rest of the speed machinery, in
:mod:`depthlab._fast.rules`): the same operations in the same order, so bit-for-bit the
same result. ``tests/test_optim_fast.py`` compares them with the reference rules bit for bit.
"""
from __future__ import annotations

from operator import itemgetter
from typing import NamedTuple

import numpy as np

from .._fast.rules import FastRule, adam_fast_scalars, adam_fast_update, axpy, sgd_fast_scalars, sgd_fast_update


def _effective_grad(param, grad, weight_decay, maximize, out):
    """g = ±grad + weight_decay·θ, written to ``out`` (``grad`` itself when nothing changes)."""
    if weight_decay == 0:
        return np.negative(grad, out) if maximize else grad
    np.multiply(param, weight_decay, out)
    if maximize:
        out -= grad
    else:
        out += grad
    return out


def _lerp_(average, target, weight, scratch):
    """average ← average + weight·(target − average), in place (PyTorch's ``lerp_``)."""
    np.subtract(target, average, scratch)
    axpy(average, weight, scratch)


def _ema_square_(average, grad, decay, scratch):
    """average ← decay·average + (1 − decay)·g², in place."""
    average *= decay
    np.multiply(grad, grad, scratch)
    axpy(average, 1 - decay, scratch)




def _field(state, key):
    """``state["exp_avg"]`` as ``state.exp_avg`` (PyTorch keeps a dict per parameter), and
    ``state[0]`` as for any tuple."""
    if isinstance(key, str):
        try:
            return getattr(state, key)
        except AttributeError:
            raise KeyError(f"{type(state).__name__} has no field {key!r}; it has {', '.join(state._fields)}.") from None
    return tuple.__getitem__(state, key)


def _keys(state):
    """The field names, as ``dict.keys()`` of PyTorch's per-parameter state."""
    return state._fields


def _zeros_if_none(buffer, param):
    return np.zeros_like(param) if buffer is None else buffer


def _decoupled_or_coupled_grad(param, grad, hyper, out):
    """AdamW-style decay θ ← θ(1 − γλ) when decoupled, else the usual g + λθ."""
    weight_decay = hyper["weight_decay"]
    if hyper.get("decoupled_weight_decay", False):
        if weight_decay != 0:
            param *= 1 - hyper["lr"] * weight_decay
        return _effective_grad(param, grad, 0, hyper["maximize"], out)
    return _effective_grad(param, grad, weight_decay, hyper["maximize"], out)


# ----------------------------------------------------------------------------- SGD
class SGDState(NamedTuple):
    step: int
    momentum_buffer: np.ndarray | None  # None until the first step with momentum

    __getitem__, keys = _field, _keys  # state['exp_avg'], as in PyTorch


def sgd_init(param, hyper) -> SGDState:
    return SGDState(0, None)


def sgd_update(param, grad, state: SGDState, hyper, work) -> SGDState:
    """SGD with optional (Nesterov) momentum μ and dampening τ.

    b ← g on the first step, then b ← μ b + (1 − τ) g;  d = g + μ b (Nesterov) or b;
    θ ← θ − γ d  (d = g without momentum).
    """
    g = _effective_grad(param, grad, hyper["weight_decay"], hyper["maximize"], work[0])
    momentum, buffer = hyper["momentum"], state.momentum_buffer
    if momentum != 0:
        if buffer is None:
            buffer = np.array(g, dtype=param.dtype)  # PyTorch: the buffer starts as g itself
        else:
            buffer *= momentum
            if hyper["dampening"] == 0:
                buffer += g
            else:
                axpy(buffer, 1 - hyper["dampening"], g)
        if hyper["nesterov"]:
            scratch = work[1]
            np.multiply(buffer, momentum, scratch)
            g = np.add(g, scratch, scratch)
        else:
            g = buffer
    axpy(param, -hyper["lr"], g)
    return SGDState(state.step + 1, buffer)


# ------------------------------------------------------------------------- Adagrad
class AdagradState(NamedTuple):
    step: int
    sum: np.ndarray  # Σ g², started at initial_accumulator_value

    __getitem__, keys = _field, _keys  # state['exp_avg'], as in PyTorch


def adagrad_init(param, hyper) -> AdagradState:
    return AdagradState(0, np.full_like(param, hyper["initial_accumulator_value"]))


def adagrad_update(param, grad, state: AdagradState, hyper, work) -> AdagradState:
    """s ← s + g²;  θ ← θ − γ_t g / (√s + ε) with γ_t = γ / (1 + (t − 1)·lr_decay)."""
    step = state.step + 1
    g = _effective_grad(param, grad, hyper["weight_decay"], hyper["maximize"], work[0])
    step_lr = hyper["lr"] / (1 + (step - 1) * hyper["lr_decay"])
    total, scratch = state.sum, work[1]
    np.multiply(g, g, scratch)
    total += scratch
    np.sqrt(total, scratch)
    scratch += hyper["eps"]
    np.divide(g, scratch, scratch)
    scratch *= step_lr
    param -= scratch
    return AdagradState(step, state.sum)


# ------------------------------------------------------------------------- RMSprop
class RMSpropState(NamedTuple):
    step: int
    square_avg: np.ndarray
    momentum_buffer: np.ndarray | None  # only with momentum > 0
    grad_avg: np.ndarray | None  # only when centered

    __getitem__, keys = _field, _keys  # state['exp_avg'], as in PyTorch


def rmsprop_init(param, hyper) -> RMSpropState:
    return RMSpropState(
        0,
        np.zeros_like(param),
        np.zeros_like(param) if hyper["momentum"] > 0 else None,
        np.zeros_like(param) if hyper["centered"] else None,
    )


def rmsprop_update(param, grad, state: RMSpropState, hyper, work) -> RMSpropState:
    """v ← α v + (1 − α) g²;  centered: m ← lerp(m, g, 1 − α), v̂ = v − m²;
    d = g / (√v̂ + ε)  (ε added after the square root);
    with momentum μ: b ← μ b + d, θ ← θ − γ b;  else θ ← θ − γ d.
    """
    g = _effective_grad(param, grad, hyper["weight_decay"], hyper["maximize"], work[0])
    alpha, scratch = hyper["alpha"], work[1]
    _ema_square_(state.square_avg, g, alpha, scratch)
    grad_avg = state.grad_avg
    if hyper["centered"]:
        grad_avg = _zeros_if_none(grad_avg, param)
        _lerp_(grad_avg, g, 1 - alpha, scratch)
        np.multiply(grad_avg, grad_avg, scratch)
        np.subtract(state.square_avg, scratch, scratch)
        np.sqrt(scratch, scratch)
    else:
        np.sqrt(state.square_avg, scratch)
    scratch += hyper["eps"]
    np.divide(g, scratch, scratch)
    buffer = state.momentum_buffer
    if hyper["momentum"] > 0:
        buffer = _zeros_if_none(buffer, param)
        buffer *= hyper["momentum"]
        buffer += scratch
        np.multiply(buffer, hyper["lr"], scratch)
    else:
        scratch *= hyper["lr"]
    param -= scratch
    return RMSpropState(state.step + 1, state.square_avg, buffer, grad_avg)


# ------------------------------------------------------------------------ Adadelta
class AdadeltaState(NamedTuple):
    step: int
    square_avg: np.ndarray  # running mean of g²
    acc_delta: np.ndarray  # running mean of Δθ²

    __getitem__, keys = _field, _keys  # state['exp_avg'], as in PyTorch


def adadelta_init(param, hyper) -> AdadeltaState:
    return AdadeltaState(0, np.zeros_like(param), np.zeros_like(param))


def adadelta_update(param, grad, state: AdadeltaState, hyper, work) -> AdadeltaState:
    """v ← ρ v + (1 − ρ) g²;  Δ = √(u + ε) / √(v + ε) · g;  u ← ρ u + (1 − ρ) Δ²;
    θ ← θ − γ Δ.
    """
    g = _effective_grad(param, grad, hyper["weight_decay"], hyper["maximize"], work[0])
    rho, eps, std, delta = hyper["rho"], hyper["eps"], work[1], work[2]
    _ema_square_(state.square_avg, g, rho, std)
    np.add(state.square_avg, eps, std)
    np.sqrt(std, std)
    np.add(state.acc_delta, eps, delta)
    np.sqrt(delta, delta)
    delta /= std
    delta *= g
    _ema_square_(state.acc_delta, delta, rho, std)
    delta *= hyper["lr"]
    param -= delta
    return AdadeltaState(state.step + 1, state.square_avg, state.acc_delta)


# ---------------------------------------------------------------------------- Adam
class AdamState(NamedTuple):
    step: int
    exp_avg: np.ndarray  # m, first moment
    exp_avg_sq: np.ndarray  # v, second moment
    max_exp_avg_sq: np.ndarray | None  # max of the raw v over time (AMSGrad only)

    __getitem__, keys = _field, _keys  # state['exp_avg'], as in PyTorch


def adam_init(param, hyper) -> AdamState:
    return AdamState(0, np.zeros_like(param), np.zeros_like(param),
                     np.zeros_like(param) if hyper["amsgrad"] else None)


def adam_update(param, grad, state: AdamState, hyper, work) -> AdamState:
    """m ← lerp(m, g, 1 − β₁);  v ← β₂ v + (1 − β₂) g²;  AMSGrad: v_max ← max(v_max, v);
    θ ← θ − γ/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)  (v_max in place of v with AMSGrad).

    Decoupled weight decay (AdamW) first shrinks θ ← θ(1 − γλ); coupled adds λθ to g.
    """
    step = state.step + 1
    g = _decoupled_or_coupled_grad(param, grad, hyper, work[0])
    beta1, beta2 = hyper["betas"]
    scratch = work[1]
    _lerp_(state.exp_avg, g, 1 - beta1, scratch)
    _ema_square_(state.exp_avg_sq, g, beta2, scratch)
    second, max_sq = state.exp_avg_sq, state.max_exp_avg_sq
    if hyper["amsgrad"]:
        max_sq = _zeros_if_none(max_sq, param)
        np.maximum(max_sq, state.exp_avg_sq, out=max_sq)
        second = max_sq
    np.sqrt(second, scratch)
    scratch /= (1 - beta2**step) ** 0.5
    scratch += hyper["eps"]
    np.divide(state.exp_avg, scratch, scratch)
    axpy(param, -hyper["lr"] / (1 - beta1**step), scratch)
    return AdamState(step, state.exp_avg, state.exp_avg_sq, max_sq)


# -------------------------------------------------------------------------- Adamax
class AdamaxState(NamedTuple):
    step: int
    exp_avg: np.ndarray  # m
    exp_inf: np.ndarray  # u, exponentially weighted infinity norm

    __getitem__, keys = _field, _keys  # state['exp_avg'], as in PyTorch


def adamax_init(param, hyper) -> AdamaxState:
    return AdamaxState(0, np.zeros_like(param), np.zeros_like(param))


def adamax_update(param, grad, state: AdamaxState, hyper, work) -> AdamaxState:
    """m ← lerp(m, g, 1 − β₁);  u ← max(β₂ u, |g| + ε);
    θ ← θ − γ/(1 − β₁ᵗ) · m / u.
    """
    step = state.step + 1
    g = _effective_grad(param, grad, hyper["weight_decay"], hyper["maximize"], work[0])
    beta1, beta2 = hyper["betas"]
    scratch = work[1]
    _lerp_(state.exp_avg, g, 1 - beta1, scratch)
    exp_inf = state.exp_inf
    exp_inf *= beta2
    np.abs(g, scratch)
    scratch += hyper["eps"]
    np.maximum(exp_inf, scratch, out=exp_inf)
    np.divide(state.exp_avg, exp_inf, scratch)
    scratch *= hyper["lr"] / (1 - beta1**step)
    param -= scratch
    return AdamaxState(step, state.exp_avg, state.exp_inf)


# --------------------------------------------------------------------------- NAdam
class NAdamState(NamedTuple):
    step: int
    mu_product: float  # Π μ_i (a Python float, i.e. float64)
    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray

    __getitem__, keys = _field, _keys  # state['exp_avg'], as in PyTorch


def nadam_init(param, hyper) -> NAdamState:
    return NAdamState(0, 1.0, np.zeros_like(param), np.zeros_like(param))


def nadam_update(param, grad, state: NAdamState, hyper, work) -> NAdamState:
    """μ_t = β₁(1 − ½·0.96^(t·ψ)) with ψ = momentum_decay;  m, v as in Adam;
    θ ← θ − γ(1 − μ_t)/(1 − Πμ_{≤t}) · g/d − γ μ_{t+1}/(1 − Πμ_{≤t+1}) · m/d,
    d = √(v / (1 − β₂ᵗ)) + ε.
    """
    step = state.step + 1
    g = _decoupled_or_coupled_grad(param, grad, hyper, work[0])
    beta1, beta2 = hyper["betas"]
    lr, decay = hyper["lr"], hyper["momentum_decay"]
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * decay))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * decay))
    mu_product = state.mu_product * mu
    denom, scratch = work[1], work[2]
    _lerp_(state.exp_avg, g, 1 - beta1, scratch)
    _ema_square_(state.exp_avg_sq, g, beta2, scratch)
    np.divide(state.exp_avg_sq, 1 - beta2**step, denom)
    np.sqrt(denom, denom)
    denom += hyper["eps"]
    np.divide(g, denom, scratch)
    scratch *= lr * (1.0 - mu) / (1.0 - mu_product)
    param -= scratch
    np.divide(state.exp_avg, denom, scratch)
    scratch *= lr * mu_next / (1.0 - mu_product * mu_next)
    param -= scratch
    return NAdamState(step, mu_product, state.exp_avg, state.exp_avg_sq)


# --------------------------------------------------------------------------- RAdam
class RAdamState(NamedTuple):
    step: int
    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray

    __getitem__, keys = _field, _keys  # state['exp_avg'], as in PyTorch


def radam_init(param, hyper) -> RAdamState:
    return RAdamState(0, np.zeros_like(param), np.zeros_like(param))


def radam_update(param, grad, state: RAdamState, hyper, work) -> RAdamState:
    """m, v as in Adam;  ρ_∞ = 2/(1 − β₂) − 1,  ρ_t = ρ_∞ − 2t β₂ᵗ/(1 − β₂ᵗ);
    if ρ_t > 5:  θ ← θ − γ m̂ · r_t · √(1 − β₂ᵗ)/(√v + ε)  with the rectifier
    r_t = √((ρ_t − 4)(ρ_t − 2)ρ_∞ / ((ρ_∞ − 4)(ρ_∞ − 2)ρ_t));  else θ ← θ − γ m̂;
    m̂ = m/(1 − β₁ᵗ).
    """
    step = state.step + 1
    g = _decoupled_or_coupled_grad(param, grad, hyper, work[0])
    beta1, beta2 = hyper["betas"]
    update, scratch = work[1], work[2]
    _lerp_(state.exp_avg, g, 1 - beta1, scratch)
    _ema_square_(state.exp_avg_sq, g, beta2, scratch)
    correction2 = 1 - beta2**step
    np.divide(state.exp_avg, 1 - beta1**step, update)
    update *= hyper["lr"]
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2**step) / correction2
    if rho_t > 5.0:
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        np.sqrt(state.exp_avg_sq, scratch)
        scratch += hyper["eps"]
        np.divide(correction2**0.5, scratch, scratch)
        update *= scratch
        update *= rect
    param -= update
    return RAdamState(step, state.exp_avg, state.exp_avg_sq)


# reference rule -> its fast rule (Optimizer.step looks up its own ``update`` here)
FAST_RULES = {
    sgd_update: FastRule(itemgetter("lr", "momentum", "weight_decay", "maximize"), sgd_fast_scalars,
                         sgd_fast_update),
    adam_update: FastRule(itemgetter("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize",
                                     "decoupled_weight_decay"), adam_fast_scalars, adam_fast_update),
}
