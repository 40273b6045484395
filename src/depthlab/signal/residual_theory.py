"""Mean-field theory of residual networks and batch normalization.

A pre-activation residual block adds a branch of two layers, a → Linear → a → Linear, to the
stream: h_{b+1} = h_b + s F(h_b). At infinite width the branch's output is independent of
the stream (its last weights are), so the second moments add::

    q_{b+1} = q_b + s² V(q_b),        V(q) = M(M(q)),   M(q) = σ_w² E[φ(√q z)²] + σ_b²

With He-initialized ReLU branches (σ_w² = 2, σ_b² = 0) M(q) = q, so q grows ×(1 + s²) per
block: ×2 at s = 1, ×(1 + 1/D)^D → e over D blocks at s = 1/√D, not at all at s = 0
(SkipInit). Normalizing each branch's input (batch or layer norm) makes V = M(M(1)) a
constant, and q grows linearly: q_b = q_0 + b s² V (De & Smith 2020).

Backward, dL/dh_b = (I + s J_F)ᵀ dL/dh_{b+1} and E‖dL/dh_b‖² = (1 + s² χ_F) E‖dL/dh_{b+1}‖²,
χ_F = χ₁(q₁) χ₁(q₂) the branch's two layers' gradient growth (χ₁ = σ_w² E[φ'(√q z)²]).

Batch norm in a plain network makes gradients explode toward the input at initialization
even though the forward signal is normalized: for ReLU and large batches E‖dL/dh‖² grows by
π/(π − 1) ≈ 1.467 per layer (Yang et al. 2019).
"""
from __future__ import annotations

import math

import numpy as np

from .._checks import check_positive_int, check_real
from .theory import chi1, variance_map


def _branch_variance(activation, sw2: float, sb2: float, q: float) -> tuple[float, float, float]:
    """(V(q), q₁, q₂): the branch's output variance and the variances its two layers see."""
    q1 = variance_map(activation, sw2, sb2, q, 1)[1] if q > 0 else sb2
    q2 = variance_map(activation, sw2, sb2, q1, 1)[1] if q1 > 0 else sb2
    return q2, q, q1


def _scale(value) -> float:
    return check_real(value, "scale")


def _squared_scale(value) -> float:
    """s² of a checked scale s, as a float product (inf past float64, where ``s ** 2`` raises OverflowError)."""
    s = _scale(value)
    return s * s


def residual_variance(depth: int, scale=1.0, *, activation="relu", weight_variance: float = 2.0,
                      bias_variance: float = 0.0, q0: float = 1.0, norm: bool = False) -> np.ndarray:
    """The second moment q_b of the residual stream after each of ``depth`` pre-activation blocks.

    Parameters
    ----------
    depth : int
        D, the number of blocks.
    scale : float
        s, the branch's weight (1, 1/√D, or 0 for SkipInit).
    activation, weight_variance, bias_variance
        The branch's nonlinearity and σ_w², σ_b² of its two Linear layers (He: σ_w² = 2 for ReLU).
    q0 : float
        The stream's second moment entering the first block.
    norm : bool
        Each branch normalizes its input (and its hidden layer) first: V = M(M(1)).

    Returns
    -------
    np.ndarray, shape (depth + 1,)
        q_0, ..., q_D.
    """
    depth = check_positive_int(depth, "depth", minimum=0)
    s2 = _squared_scale(scale)
    q0 = check_real(q0, "q0", low=0, low_open=True)
    out = np.empty(depth + 1)
    out[0] = q = q0
    normalized = _branch_variance(activation, weight_variance, bias_variance, 1.0)[0] if norm else None
    for b in range(1, depth + 1):
        branch = normalized if norm else _branch_variance(activation, weight_variance, bias_variance, q)[0]
        q = float(q) + s2 * float(branch)       # Python floats: past float64's range q is inf, silently
        if not math.isfinite(q):                # beyond float64 from here on
            out[b:] = math.inf
            break
        out[b] = q
    return out


def residual_gradient_variance(depth: int, scale=1.0, *, activation="relu", weight_variance: float = 2.0,
                               bias_variance: float = 0.0, q0: float = 1.0) -> np.ndarray:
    """E‖dL/dh_b‖² relative to the output's, b = 0 .. D (index D is the output: 1), for
    pre-activation blocks without normalization: each block multiplies it by 1 + s² χ_F."""
    stream = residual_variance(depth, scale, activation=activation, weight_variance=weight_variance,
                               bias_variance=bias_variance, q0=q0)
    overflow = np.flatnonzero(~np.isfinite(stream))
    if overflow.size:
        raise ValueError(f"residual_gradient_variance: the stream's second moment leaves float64's range at block "
                         f"{overflow[0]} (scale {_scale(scale):.3g}), where no gradient growth can be evaluated. "
                         "Use a smaller scale (1/sqrt(depth) keeps it near q0).")
    s2 = _squared_scale(scale)
    out = np.ones(depth + 1)
    for b in range(depth - 1, -1, -1):
        _, q_in, q_hidden = _branch_variance(activation, weight_variance, bias_variance, stream[b])
        growth = chi1(activation, weight_variance, bias_variance, q_in) * chi1(
            activation, weight_variance, bias_variance, q_hidden)
        out[b] = out[b + 1] * (1 + s2 * growth)
    return out


# activation name -> the large-batch growth of E‖dL/dh‖² per layer of a batch-normalized
# plain network at initialization (Yang et al. 2019; closed form known for ReLU)
BATCHNORM_GRADIENT_GROWTH = {"relu": math.pi / (math.pi - 1)}


def batchnorm_gradient_growth(activation="relu") -> float:
    """The factor by which E‖dL/dh‖² grows per layer toward the input in a deep plain network
    of Linear → BatchNorm → a layers at initialization, for large width and batch.

    ReLU: π/(π − 1) ≈ 1.467 (Yang et al. 2019, "A mean field theory of batch normalization").
    Only the closed forms of :data:`BATCHNORM_GRADIENT_GROWTH` are given; other activations are
    refused (measure them with ``dl.probe``).
    """
    name = activation if isinstance(activation, str) else getattr(activation, "name", None)
    if name not in BATCHNORM_GRADIENT_GROWTH:
        raise ValueError(f"batchnorm_gradient_growth knows the closed form for {sorted(BATCHNORM_GRADIENT_GROWTH)}, "
                         f"not {activation!r}; measure it with dl.probe on a batch-normalized network.")
    return BATCHNORM_GRADIENT_GROWTH[name]


__all__ = ["BATCHNORM_GRADIENT_GROWTH", "batchnorm_gradient_growth", "residual_gradient_variance",
           "residual_variance"]
