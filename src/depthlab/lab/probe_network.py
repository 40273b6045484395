"""The network ``depthlab probe`` and ``depthlab explore`` look at, from their shared settings.

Both take the same keys (the command's flags, the explorer's URL query), so a link and a
command line describe one network:

=================  =======================================================================
setting            meaning
=================  =======================================================================
depth              hidden layers K of a plain network; residual blocks with ``block``
width              units per hidden layer (the stream's width of a residual network)
activation         the hidden activation
init               ``"normal"`` (N(0, σ²_Ω) with ``sigma2``) or an initializer's name
sigma2             σ²_Ω of ``init="normal"``
bias_variance      biases drawn from N(0, σ_b²) (0: zero biases)
block              ``"plain"`` (an MLP), ``"preact"`` or ``"postact"`` (:func:`depthlab.ResMLP`)
norm               ``"none"``, ``"batch"`` or ``"layer"``: after every Linear layer of a plain
                   network; in every branch of a residual one
residual_scale     s, a residual branch's weight: a number, or ``"1/sqrt(depth)"``
in_features        the input's width (1, as seed 000)
=================  =======================================================================
"""
from __future__ import annotations

import math

from ..nn.layers import Linear
from ..nn.model import MLP, Sequential
from ..nn.normalization import BatchNorm, LayerNorm
from ..nn.residual import ResMLP

BLOCKS = ("plain", "preact", "postact")
NORMS = {"none": None, "batch": BatchNorm, "layer": LayerNorm}
SCALE_NAMES = ("1/sqrt(depth)",)


def residual_scale(text) -> float | str:
    """A residual scale from a flag or a query value: a finite number ≥ 0 or "1/sqrt(depth)"."""
    if isinstance(text, str) and text.replace(" ", "") in SCALE_NAMES:
        return SCALE_NAMES[0]
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"residual_scale must be a number >= 0 or '1/sqrt(depth)', got {text!r}.")
    return value + 0.0                      # '-0' is 0.0


def linear_layers(depth: int, block: str) -> int:
    """How many Linear layers the network has (its hidden ones and the output layer)."""
    return depth + 1 if block == "plain" else 2 * depth + 2


def build(*, depth: int, width: int, activation="relu", init="normal", sigma2: float | None = None,
          bias_variance: float = 0.0, block: str = "plain", norm: str = "none", residual_scale=1.0,
          in_features: int = 1, out_features: int = 1, rng=0) -> Sequential:
    """The network of these settings (one output unit, as ``depthlab probe``, unless told).
    ``init`` is ``"normal"`` or anything :func:`depthlab.nn.init.get` takes; ``"critical"`` is
    the edge of chaos (σ_b² = 0) of ``activation``."""
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(BLOCKS)}, got {block!r}.")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}.")
    weights = (1.0 if sigma2 is None else sigma2) if init == "normal" else init
    if weights == "critical":          # the edge of chaos of this network's activation, not the default's (tanh)
        weights = {"name": "critical", "activation": activation}
    bias = {"name": "normal", "variance": bias_variance} if bias_variance > 0 else "zeros"
    if block != "plain":
        return ResMLP(in_features, width, depth, out_features, activation=activation, block=block,
                      norm=None if norm == "none" else norm, residual_scale=residual_scale, init=weights, rng=rng,
                      bias_init=bias)
    if norm == "none":
        return MLP(in_features, [width] * depth, out_features, activation=activation, init=weights, bias_init=bias, rng=rng)
    layers = []
    for k in range(depth):  # Linear → normalization → activation, as a normalized MLP
        layers += [Linear(in_features if k == 0 else width, width, init=weights, bias_init=bias, rng=rng),
                   NORMS[norm](width), activation]
    layers.append(Linear(width if depth else in_features, out_features, init=weights, bias_init=bias, rng=rng))
    return Sequential(layers)
