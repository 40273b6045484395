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

__all__ = ["jacobian_spectrum", "isometry"]


def jacobian_spectrum(net, x) -> np.ndarray:
    """Singular values of ∂output/∂x for every sample.

    Parameters
    ----------
    net : Sequential
    x : array_like, shape (N, D_0)

    Returns
    -------
    np.ndarray, shape (N, min(D_out, D_0))
        Singular values of each sample's Jacobian (from :meth:`Sequential.input_jacobian`,
        exact, in the network's dtype), in decreasing order.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        jacobian = net.input_jacobian(x)  # (N, D_out, D_0)
    finite = np.isfinite(jacobian).all(axis=(1, 2))
    if not finite.all():
        sample = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"jacobian_spectrum: the Jacobian of sample {sample} (and of {int((~finite).sum())} of the "
            f"{finite.size} samples in all) has entries beyond float64's range (inf or NaN): the product of the "
            "layers' gains D_k Ω_k overflows, i.e. the network explodes, so its singular values cannot be "
            "computed. Use smaller weight variances or fewer layers (dl.probe shows where the signal grows).")
    return np.linalg.svd(jacobian, compute_uv=False)


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
