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
    jacobian = net.input_jacobian(x)  # (N, D_out, D_0)
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
        ``max``, ``min`` and ``condition`` (max s / min s, inf if some s = 0).
    """
    s = np.asarray(singular_values, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("isometry needs at least one singular value, got an empty array.")
    squared = s * s
    smallest = float(s.min())
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        spread = float(np.std(np.log(squared))) if smallest > 0 else float("inf")
        condition = float(s.max() / smallest) if smallest > 0 else float("inf")
    return {"mean_squared": float(squared.mean()), "std_squared": float(squared.std()),
            "std_log_squared": spread, "max": float(s.max()), "min": smallest,
            "condition": condition}
