"""Initializations that need data or theory: LSUV and the edge-of-chaos ("critical") init.

- :func:`lsuv` — layer-sequential unit variance (Mishkin & Matas 2015, "All you need is a good
  init"): start from orthonormal weights, then, layer by layer from the input, divide Ω_k by
  the standard deviation of its pre-activations f_k on a data batch until Var(f_k) is within
  ``tol`` of 1 (at most ``max_iter`` rescalings per layer, the paper's T_max = 10).
- :func:`critical` — an initializer (registered as ``"critical"`` in :mod:`depthlab.nn.init`)
  that draws Ω with fan_in·Var(Ω) = σ_w*², the weight variance at which the mean-field
  gradient growth χ₁ is 1 (:func:`depthlab.signal.theory.critical_weight_variance`): 2 for ReLU with
  σ_b² = 0 (He), about 1 for tanh with small σ_b². Initializers are called with shape, rng,
  dtype and fans only, so the activation is named in the spec:
  ``dl.MLP(..., activation="tanh", init={"name": "critical", "activation": "tanh",
  "bias_variance": 0.05}, bias_init=0.05)`` (a number as ``bias_init`` draws β ~ N(0, σ_b²);
  use ``"zeros"`` for σ_b² = 0). :func:`critical_init` does the same to an existing network and
  reads the activations off it.

This module imports :mod:`depthlab.nn.init` and :mod:`depthlab.signal.theory` only inside its functions,
so ``depthlab.nn.init`` can import it (and register ``critical``) without an import cycle.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .._checks import check_positive_int, check_real, lookup, resolve_rng

__all__ = ["lsuv", "critical", "critical_init"]


# --------------------------------------------------------------------------- LSUV

def _variance(f: np.ndarray) -> float:
    return float(np.var(f))


def lsuv(net, x, *, tol: float = 0.1, max_iter: int = 10, rng=0, orthogonal: bool = True,
         return_record: bool = False):
    """Layer-sequential unit-variance initialization, in place.

    Parameters
    ----------
    net : Sequential
        Modified in place: every weight Ω_k, the output layer's included (biases are left as
        they are — zero for depthlab's default ``bias_init``, as in the paper).
    x : array_like, shape (N, D_0)
        A data batch (the paper uses one minibatch).
    tol : float in (0, 1)
        Stop rescaling layer k once |Var(f_k) − 1| < tol, Var over all N·D_{k+1} entries.
    max_iter : int
        Most rescalings per layer (the paper's T_max). With zero biases one rescaling is
        exact, since f_k is linear in Ω_k; with other biases it may take several. A layer still
        outside the band after ``max_iter`` triggers a ``RuntimeWarning``.
    rng : np.random.Generator or int
        Draws the orthonormal start.
    orthogonal : bool
        Start from :func:`depthlab.nn.init.orthogonal` weights (the paper); False keeps the
        current weights and only rescales them.
    return_record : bool
        Also return one dict per layer: ``layer``, ``iterations``, ``variance_before``,
        ``variance`` (after).

    Returns
    -------
    Sequential (the same object), or ``(net, record)``.

    Raises
    ------
    ValueError
        A layer's pre-activations have zero variance on the batch (e.g. all zero): no scale
        of Ω_k can give them unit variance. The message names the layer.
    """
    from ..nn import init as _init
    from ..nn.layers import Linear

    tol = check_real(tol, "tol", low=0, high=1, low_open=True, high_open=True)
    max_iter = check_positive_int(max_iter, "max_iter")
    x = net.check_input(x, "x", finite=True)
    rng = resolve_rng(rng)
    if orthogonal:
        for linear in net.linears:
            linear.weight.data[...] = _init.orthogonal(linear.weight.shape, rng=rng, dtype=net.dtype)
    record, h, k = [], x, 0
    with np.errstate(over="ignore", invalid="ignore"):
        for layer in net.layers:
            if not isinstance(layer, Linear):
                h = layer(h)
                continue
            f = layer(h)
            before = variance = _variance(f)
            iterations = 0
            while abs(variance - 1.0) >= tol and iterations < max_iter:
                if not variance > 0 or not math.isfinite(variance):
                    raise ValueError(_flat_layer_message(k, f, variance))
                layer.weight.data *= layer.weight.dtype.type(1.0 / math.sqrt(variance))
                f = layer(h)
                variance = _variance(f)
                iterations += 1
            if abs(variance - 1.0) >= tol:
                warnings.warn(f"lsuv: layer {k} reached Var(f_{k}) = {variance:.4g} after {max_iter} "
                              f"rescalings, outside 1 ± {tol:g} (non-zero biases dominate its "
                              "variance?). Raise max_iter or use bias_init='zeros'.",
                              RuntimeWarning, stacklevel=2)
            record.append({"layer": k, "iterations": iterations, "variance_before": before,
                           "variance": variance})
            h, k = f, k + 1
    return (net, record) if return_record else net


def _flat_layer_message(k: int, f: np.ndarray, variance: float) -> str:
    if not math.isfinite(variance):
        return (f"lsuv cannot rescale layer {k}: its pre-activations f_{k} are not finite on the "
                "batch x (they overflowed). Pass data of moderate scale, or use dtype='float64'.")
    what = "are all zero" if not np.any(f) else f"have variance {variance:g}"
    return (f"lsuv cannot rescale layer {k}: its pre-activations f_{k} {what} on the batch x, so "
            f"no scale of Ω_{k} gives them unit variance. The input to layer {k} carries no "
            "signal (an all-zero batch, or every unit of the layer before is dead on it); pass a "
            "batch of real data with several distinct samples.")


# --------------------------------------------------------------------------- critical init

def _orthogonal_gain(weight_variance: float, fan_in: int, fan_out: int) -> float:
    # rows ≤ cols: Ω Ωᵀ = g² I gives entries of variance g²/fan_in; rows > cols (an embedding)
    # needs g² = σ_w² · fan_out / fan_in for the same mean-field variance.
    return math.sqrt(weight_variance * max(1.0, fan_out / fan_in))


# distribution -> draw(dims, weight_variance σ_w², fan_in, fan_out, rng, dtype)
_CRITICAL_DRAWS = {
    "normal": lambda init, dims, v, fi, fo, rng, dtype: init.normal(
        dims, rng=rng, dtype=dtype, std=math.sqrt(v / fi)),
    "uniform": lambda init, dims, v, fi, fo, rng, dtype: init.uniform(
        dims, rng=rng, dtype=dtype, low=-math.sqrt(3 * v / fi), high=math.sqrt(3 * v / fi)),
    "orthogonal": lambda init, dims, v, fi, fo, rng, dtype: init.orthogonal(
        dims, rng=rng, dtype=dtype, gain=_orthogonal_gain(v, fi, fo)),
}


def critical(shape, *, rng=None, dtype="float64", fan_in=None, fan_out=None, activation="tanh",
             bias_variance: float = 0.0, distribution: str = "normal") -> np.ndarray:
    """Edge-of-chaos weights: fan_in·Var(Ω) = σ_w*², where χ₁(σ_w*², σ_b²) = 1.

    Parameters
    ----------
    shape : tuple of int
        ``(D_out, D_in)`` (fan_in = D_in unless given).
    rng, dtype, fan_in, fan_out
        The initializer protocol of :mod:`depthlab.nn.init`.
    activation : name or Activation
        The nonlinearity φ applied to this layer's *input* (the network's hidden activation).
    bias_variance : float ≥ 0
        σ_b², the variance the biases are drawn with (draw them yourself, e.g.
        ``bias_init=σ_b²``); it moves the critical point (tanh's critical line σ_w²(σ_b²)).
    distribution : "normal", "uniform" or "orthogonal"
        N(0, σ_w*²/fan_in); the uniform of that variance; or a scaled (semi-)orthogonal
        matrix with entries of that variance (Pennington et al. 2017's choice for dynamical
        isometry).

    Returns
    -------
    np.ndarray of ``shape`` and ``dtype``
    """
    from ..nn import init as _init
    from . import theory

    dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if len(dims) < 2 and fan_in is None:
        raise ValueError(f"critical needs a weight shape (D_out, D_in) or an explicit fan_in, got "
                         f"shape {dims}; for biases draw N(0, σ_b²), e.g. bias_init=0.05.")
    shape_fans = _init.fans(dims) if len(dims) >= 2 else (None, None)
    fan_in = check_positive_int(fan_in if fan_in is not None else shape_fans[0], "fan_in")
    fan_out = check_positive_int(fan_out if fan_out is not None else (shape_fans[1] or fan_in),
                                 "fan_out")
    bias_variance = check_real(bias_variance, "bias_variance", low=0)
    draw = lookup(_CRITICAL_DRAWS, distribution, "distribution", "critical distribution")
    weight_variance = float(theory.critical_weight_variance(activation, bias_variance))
    return draw(_init, dims, weight_variance, fan_in, fan_out, rng, dtype)


def critical_init(net, *, bias_variance: float = 0.0, distribution: str = "normal", rng=0):
    """Re-initialize ``net`` in place at the edge of chaos for its own activations.

    Linear layer k ≥ 1 gets fan_in·Var(Ω_k) = σ_w*² for the activation of its input h_k; the
    first layer (acting on the raw input) uses the first hidden activation's value, as mean-field
    theory assumes one σ_w² throughout; a network without hidden layers uses identity's.
    Biases are drawn from N(0, σ_b²) (zeros when ``bias_variance`` is 0).

    Returns
    -------
    Sequential (the same object)
    """
    bias_variance = check_real(bias_variance, "bias_variance", low=0)
    rng = resolve_rng(rng)
    acts = net.layer_activations
    inputs = [acts[0] if len(acts) > 1 else "identity"] + acts[:-1]
    for linear, activation in zip(net.linears, inputs):
        linear.weight.data[...] = critical(linear.weight.shape, rng=rng, dtype=net.dtype,
                                           activation=activation, bias_variance=bias_variance,
                                           distribution=distribution)
        if bias_variance > 0:
            linear.bias.data[...] = (rng.standard_normal(linear.bias.shape)
                                     * math.sqrt(bias_variance)).astype(net.dtype)
        else:
            linear.bias.data[...] = 0
    return net
