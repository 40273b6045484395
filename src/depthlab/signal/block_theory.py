"""Mean-field theory through a network of blocks, one top-level layer at a time.

What :func:`depthlab.probe` puts beside its measurements on residual and normalized networks.
The walk follows three numbers of the signal that leaves each layer, over its N samples and
D features, at infinite width:

- q, the second moment E[h²] of an entry;
- m, the covariance E[h_n h_n'] of one feature on two different samples (what the batch
  shares; batch norm divides by the per-feature batch variance c = (N − 1)/N · (q − m));
- its global mean, and whether an entry is a zero-mean Gaussian (so that an activation's
  Gaussian integrals apply to it).

and, going back, the gain G of each layer: E[(dL/d input)²] = G · E[(dL/d output)²].

=================  ============================================  ==========================================
layer              forward                                       gain G
=================  ============================================  ==========================================
Linear             q' = σ_w² q + σ_b², m' = σ_w² m + σ_b²        fan_out · E[Ω²]
activation φ       q' = E[φ(√q z)²], m' = E[φ(u)φ(u')] (corr m/q)  E[φ'(√q z)²]
BatchNorm (batch)  q' = E[γ²] + E[β²], m' = E[β²] − E[γ²]/(N − 1)  E[γ²] / c
LayerNorm          q' = E[γ²] + E[β²], m' = E[γ²] m/q + E[β²]      E[γ²] / (q (1 − 1/D))
Dropout (train)    q' = q/(1 − p)                                1/(1 − p)
Residual           q' = q_skip + s² q_F (and m alike)            G_skip + s² G_F
=================  ============================================  ==========================================

(σ_w² = fan_in · E[Ω²] and σ_b² = E[β²] are read from the layer's actual weights; batch norm
with running statistics is an affine map per feature.) The branch F of a residual block adds
to its shortcut independently (its last weights are independent of the stream), so second
moments and gains add. This gives the residual recursion q_{b+1} = q_b + s² V(q_b) of
:func:`depthlab.theory.residual_variance` for pre-activation blocks, and batch norm's gradient
growth π/(π − 1) per Linear → BatchNorm → ReLU layer (:func:`depthlab.theory.batchnorm_gradient_growth`).

Where the assumptions fail the walk stops (None from there on): an activation whose input is
not a zero-mean Gaussian (e.g. a ReLU after a post-activation residual sum, whose skip carries
the previous ReLU's non-negative output), a layer type the table does not know, or a shortcut
that is not a Linear layer. A learnable residual scale enters with its current value. The theory
takes one variance per layer: where features (batch norm) or samples (layer norm) differ much
in variance — e.g. right after a stem that sees very few input features — a norm's gain
E[1/c] exceeds 1/E[c] and the gradient near the input is larger than predicted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..nn.layers import ActivationLayer, Linear
from ..nn.model import Sequential
from ..nn.normalization import BatchNorm, LayerNorm
from ..nn.parameter import Parameter
from ..nn.residual import Dropout, Residual
from .gaussian import joint_moments, moments

__all__ = ["SignalMoments", "walk", "predicted_block_std"]


@dataclass(frozen=True)
class SignalMoments:
    """The mean-field state of a signal (N, D): q = E[h²], m = E[h_n h_n'] (n ≠ n'), its
    global mean, and whether each entry is a zero-mean Gaussian."""

    second: float
    covariance: float
    mean: float = 0.0
    gaussian: bool = True

    @property
    def std(self) -> float:
        """The std over every entry of the batch."""
        return math.sqrt(max(self.second - self.mean * self.mean, 0.0))


def _mean_square(array: np.ndarray) -> float:
    return float(np.mean(np.square(array, dtype=np.float64)))


def _linear(layer: Linear, s: SignalMoments, batch: int):
    weight = _mean_square(layer.weight.data)
    sw2, sb2 = layer.in_features * weight, _mean_square(layer.bias.data)
    out = SignalMoments(sw2 * s.second + sb2, sw2 * s.covariance + sb2)
    return out, layer.out_features * weight


def _activation(layer: ActivationLayer, s: SignalMoments, batch: int):
    if not s.gaussian:
        return None
    phi = layer.activation
    correlation = min(max(s.covariance / s.second, -1.0), 1.0) if s.second > 0 else 0.0
    try:
        one = moments(phi, s.second)
        shared = float(joint_moments(phi, s.second, np.array([correlation]))[0][0])
    except ValueError:  # an activation the Gaussian integrals cannot handle at this variance
        return None
    return SignalMoments(one.second, shared, one.mean, gaussian=phi.name == "identity"), one.grad_second


def _affine(layer, affine: bool) -> tuple[float, float]:
    """(E[γ²], E[β²]) of a normalization layer (1, 0 without affine parameters)."""
    if not affine:
        return 1.0, 0.0
    return _mean_square(layer.weight.data), _mean_square(layer.bias.data)


def _batch_norm(layer: BatchNorm, s: SignalMoments, batch: int):
    gamma2, beta2 = _affine(layer, layer.affine)
    if not layer.batch_statistics:  # running statistics: x ↦ γ (x − μ)/√(σ² + ε) + β per feature
        scale = float(np.mean(gamma2 / (layer.running_var + layer.eps)))
        shift = gamma2 * float(np.mean(layer.running_mean ** 2 / (layer.running_var + layer.eps)))
        out = SignalMoments(scale * s.second + shift + beta2, scale * s.covariance + shift + beta2, gaussian=s.gaussian)
        return out, scale
    variance = (batch - 1) / batch * (s.second - s.covariance)
    if not variance > 0:
        return None
    out = SignalMoments(gamma2 + beta2, beta2 - gamma2 / (batch - 1), gaussian=s.gaussian)
    return out, gamma2 / (variance + layer.eps)


def _layer_norm(layer: LayerNorm, s: SignalMoments, batch: int):
    gamma2, beta2 = _affine(layer, layer.elementwise_affine)
    variance = s.second * (1 - 1 / layer.num_features)
    if not variance > 0:
        return None
    out = SignalMoments(gamma2 + beta2, gamma2 * s.covariance / s.second + beta2, gaussian=s.gaussian)
    return out, gamma2 / (variance + layer.eps)


def _dropout(layer: Dropout, s: SignalMoments, batch: int):
    if not layer.training or layer.p == 0:
        return s, 1.0
    keep = 1 - layer.p
    return SignalMoments(s.second / keep, s.covariance, s.mean, gaussian=False), 1 / keep


def _sequence(layers, s: SignalMoments, batch: int):
    """Walk ``layers`` in order: (the signal after them, their product of gains), or None."""
    gain = 1.0
    for layer in layers:
        step = step_of(layer, s, batch)
        if step is None:
            return None
        s, layer_gain = step
        gain *= layer_gain
    return s, gain


def _residual(layer: Residual, s: SignalMoments, batch: int):
    if isinstance(layer.scale, Parameter):
        scale = float(layer.scale.data[0])
    else:
        scale = float(layer.scale)
    if layer.shortcut is None:
        skip = (s, 1.0)
    elif isinstance(layer.shortcut, Linear):
        skip = _linear(layer.shortcut, s, batch)
    else:
        return None
    branch = _sequence(layer.branch, s, batch)
    if branch is None:
        return None
    (k, skip_gain), (f, branch_gain) = skip, branch
    s2 = scale * scale
    out = SignalMoments(k.second + s2 * f.second, k.covariance + s2 * f.covariance, k.mean + scale * f.mean,
                        gaussian=k.gaussian and f.gaussian)
    return out, skip_gain + s2 * branch_gain


# layer type -> step(layer, signal, batch) -> (signal after it, gain) or None where the theory stops
STEPS = {
    Linear: _linear,
    ActivationLayer: _activation,
    BatchNorm: _batch_norm,
    LayerNorm: _layer_norm,
    Dropout: _dropout,
    Residual: _residual,
    Sequential: lambda layer, s, batch: _sequence(layer, s, batch),
}


def step_of(layer, s: SignalMoments, batch: int):
    """One layer's step (see :data:`STEPS`): (the signal after it, its gain), or None."""
    step = STEPS.get(type(layer))
    if step is None:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        result = step(layer, s, batch)
    if result is None or not all(map(math.isfinite, (result[0].second, result[0].covariance, result[1]))):
        return None
    return result


def walk(layers, x_moments: SignalMoments, batch: int) -> tuple[list, list]:
    """The signal after each layer and each layer's gain (None from where the theory stops).

    Parameters
    ----------
    layers : sequence of Layer
        E.g. a network's top-level ``net.layers``.
    x_moments : SignalMoments
        The input's.
    batch : int
        N, the number of samples (batch norm's statistics are over it).

    Returns
    -------
    (list of SignalMoments or None, list of float or None), one entry per layer.
    """
    signals, gains, s = [], [], x_moments
    for layer in layers:
        step = step_of(layer, s, batch) if s is not None else None
        s, gain = step if step is not None else (None, None)
        signals.append(s)
        gains.append(gain)
    return signals, gains


def input_moments(x: np.ndarray) -> SignalMoments:
    """The :class:`SignalMoments` of a batch x (N, D), measured: E[x²] and the mean over features
    of the products of two different samples' values (Σ_n x_n)² − Σ_n x_n², over N (N − 1) D."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    total, squares = x.sum(axis=0), np.einsum("nd,nd->", x, x)
    covariance = (float(total @ total) - float(squares)) / (n * (n - 1) * d)
    return SignalMoments(float(squares) / (n * d), covariance, float(x.mean()), gaussian=False)


def predicted_block_std(net, x, grad_output_second_moment: float, input_variance: float | None = None
                        ) -> tuple[list, list]:
    """The mean-field std of each top-level layer's output and of dL/d(that output).

    Parameters
    ----------
    net : Sequential
        Walked in its current modes (batch norm with batch statistics in train mode).
    x : np.ndarray, shape (N, D_0)
        The input whose measured moments start the walk (:func:`input_moments`).
    grad_output_second_moment : float
        E[(dL/d output)²] measured, where the backward walk starts.
    input_variance : float > 0, optional
        E[x²] to start from instead of the measured one (the measured covariance and mean are
        scaled with it).

    Returns
    -------
    (forward, backward) : two lists of float or None, one entry per layer of ``net.layers``
        None where the theory does not apply (see the module docstring). The first layer must
        be a Linear layer (x itself is not assumed Gaussian).
    """
    start = input_moments(x)
    if input_variance is not None and start.second > 0:
        ratio = input_variance / start.second
        start = SignalMoments(input_variance, start.covariance * ratio, start.mean * math.sqrt(ratio), gaussian=False)
    signals, gains = walk(net.layers, start, x.shape[0])
    forward = [None if s is None else s.std for s in signals]
    backward = [None] * len(gains)
    second = grad_output_second_moment
    for i in range(len(gains) - 1, -1, -1):
        if second is None:
            break
        backward[i] = math.sqrt(second)
        second = None if gains[i] is None else second * gains[i]
    return forward, backward
