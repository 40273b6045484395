"""The input–output Jacobian's singular values: dynamical isometry.

For a network y = F(x) the Jacobian J(x) = ∂y/∂x = D_K Ω_K · … · D_1 Ω_1 · D_0 Ω_0, with
D_k = diag(a'[f_k]), maps a small change of the input to a change of the output, and Jᵀ maps
the output gradient back to the input. When all singular values of J are near 1 (*dynamical
isometry*, Saxe et al. 2013; Pennington, Schoenholz & Ganguli 2017) every direction of the
signal and of the gradient passes through the depth undistorted. Criticality (χ₁ = 1) only
fixes the *mean* squared singular value; its spread depends on the weights: orthogonal weights
with tanh at σ_w² ≈ 1 and small σ_b² keep the spectrum concentrated at any depth, Gaussian
weights at the same variance spread it out (for ReLU no initialization achieves it).
"""
from __future__ import annotations

import numpy as np

from ..nn.layer import input_jacobian
from ..nn.model import Sequential

__all__ = ["jacobian_spectrum", "isometry", "layer_jacobian"]


def _refuse_mixed_samples(net) -> None:
    """Per-sample Jacobians need each sample's output to depend on that sample alone, and not at random."""
    if net.couples_samples:
        raise ValueError(
            "jacobian_spectrum is per sample, but this network's batch norm normalizes with the batch's own "
            "statistics (train mode, or track_running_stats=False), so each output depends on every sample of the "
            "batch. Call net.eval() first (batch norm then uses its running statistics), and net.train() after.")
    if net.stochastic:
        dropping = next(layer for layer in net.layers_within() if getattr(layer, "draws_random", False))
        raise ValueError(
            f"jacobian_spectrum needs a deterministic network, but {dropping!r} is in train mode and drops entries "
            "at random. Call net.eval() first (dropout is then the identity), and net.train() after.")


layer_jacobian = input_jacobian  # ∂layer(h)/∂h per sample, (N, D_out, D_in): see depthlab.nn.layer.input_jacobian


def _singular_values(jacobian: np.ndarray, what: str) -> np.ndarray:
    finite = np.isfinite(jacobian).all(axis=(1, 2))
    if not finite.all():
        sample = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"jacobian_spectrum: the Jacobian of {what} at sample {sample} (and at {int((~finite).sum())} of the "
            f"{finite.size} samples in all) has entries beyond float64's range (inf or NaN): the product of the "
            "layers' gains D_k Ω_k overflows, i.e. the network explodes, so its singular values cannot be "
            "computed. Use smaller weight variances or fewer layers (dl.probe shows where the signal grows).")
    return np.linalg.svd(jacobian, compute_uv=False)


def jacobian_spectrum(net, x, *, blocks: bool = False):
    """Singular values of ∂output/∂x for every sample, or of each block's own Jacobian.

    Parameters
    ----------
    net : Sequential
        Any network of the layer protocol (residual blocks, norms, dropout included), in its
        current mode. A per-sample Jacobian needs each output to depend on its own sample only
        and deterministically, so batch norm with batch statistics (train mode) and dropout in
        train mode are refused: call ``net.eval()`` first.
    x : array_like, shape (N, D_0)
    blocks : bool, default False
        False: the whole network's Jacobian. True: one result per top-level layer i
        (``net.layers[i]``): the singular values of ∂h_{i+1}/∂h_i, its output with respect to
        its input, at the h_i a forward pass of x gives it (for a residual block I + s ∂F/∂h,
        whose singular values are all 1 at SkipInit).

    Returns
    -------
    np.ndarray, shape (N, min(D_out, D_0)), or with ``blocks=True`` a list of such arrays,
    one per top-level layer (shape (N, min(D_{i+1}, D_i)))
        Singular values of each sample's Jacobian (exact, in the network's dtype), in
        decreasing order.

    Raises
    ------
    TypeError
        ``net`` is not a Sequential network; ``blocks`` is not a bool.
    ValueError
        x of the wrong shape or with NaN/Inf; a network whose samples mix (see above); a Jacobian
        that overflows.
    """
    if not isinstance(blocks, bool):
        raise TypeError(f"jacobian_spectrum: blocks must be True or False, got {blocks!r}.")
    if not isinstance(net, Sequential):
        raise TypeError(f"jacobian_spectrum needs a network (dl.Sequential, dl.MLP or dl.ResMLP), got "
                        f"{type(net).__name__}; wrap a single layer as dl.Sequential(layer).")
    x = net.check_input(x, "x", finite=True)
    _refuse_mixed_samples(net)
    with np.errstate(over="ignore", invalid="ignore"):
        if not blocks:
            return _singular_values(net.input_jacobian(x), "the network")  # (N, D_out, D_0)
        values, h = [], x
        for i, layer in enumerate(net.layers):
            values.append(_singular_values(layer_jacobian(layer, h), f"block {i} ({type(layer).__name__})"))
            h = layer(h)
    return values


def isometry(singular_values) -> dict[str, float]:
    """How far a Jacobian spectrum is from isometry, as plain numbers.

    Parameters
    ----------
    singular_values : array_like, shape (N, M) or (M,)
        E.g. the result of :func:`jacobian_spectrum`; all values are pooled.

    Returns
    -------
    dict
        ``mean_squared`` (mean of s², 1 at criticality), ``std_squared`` (std of s²),
        ``std_log_squared`` (std of log s², the spread on a log scale; inf if some s = 0),
        ``max``, ``min`` and ``condition`` (max s / min s, inf if some s = 0). The moments
        of s² are computed on s / max s, so they overflow only where the value itself
        exceeds float64's range.

    Raises
    ------
    ValueError
        An empty array, or inf / NaN among the singular values.
    """
    s = np.asarray(singular_values, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("isometry needs at least one singular value, got an empty array.")
    if not np.isfinite(s).all():
        raise ValueError("isometry needs finite singular values, got inf or NaN (an overflowed Jacobian); "
                         "see jacobian_spectrum.")
    largest = float(s.max())
    scale = largest if largest > 0 else 1.0
    scaled = (s / scale) ** 2    # s² / max s²: the moments of s² without overflow or underflow
    smallest = float(s.min())
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        spread = float(np.std(2 * np.log(s))) if smallest > 0 else float("inf")
        condition = float(largest / smallest) if smallest > 0 else float("inf")
        mean_squared, std_squared = float(scaled.mean()) * scale * scale, float(scaled.std()) * scale * scale
    return {"mean_squared": mean_squared, "std_squared": std_squared,
            "std_log_squared": spread, "max": float(s.max()), "min": smallest,
            "condition": condition}
