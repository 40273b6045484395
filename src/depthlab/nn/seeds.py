"""The seed notebook's exact set-ups (000_0ecac5a268934f2f.txt, "initialization").

The notebook seeds NumPy's legacy generator with ``np.random.seed(0)`` and draws, in order,
Ω_0 (D × 1), Ω_K (1 × D), then Ω_1 … Ω_{K−1} (D × D), each N(0, 1)·√σ²_Ω, biases zero; the
data come next from the same stream. :func:`init_variance_setup` replays that order with a
private ``np.random.RandomState(0)`` — the same numbers, without touching NumPy's global
state — so depthlab's tables can be compared with the notebook's printed ones digit by digit.

Printed values from the notebook (``%3.3f``) are kept here as the reference the tests and
the ``init-variance`` experiment compare against.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checks import check_positive_int, check_real


@dataclass
class SeedSetup:
    """Weights, biases and the generator positioned where the notebook draws its data next."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    state: np.random.RandomState


def init_variance_setup(K: int, D: int, sigma_sq_omega: float) -> SeedSetup:
    """The notebook's ``init_params(K, D, sigma_sq_omega)``: K hidden layers of width D, 1 → 1.

    Returns weights Ω_k (shapes (D, 1), (D, D) …, (1, D)) and zero biases (D, 1) in the
    notebook's column layout, which :meth:`Sequential.from_arrays` accepts as they are.
    """
    K = check_positive_int(K, "K")
    D = check_positive_int(D, "D")
    sigma_sq_omega = check_real(sigma_sq_omega, "sigma_sq_omega", low=0)
    state = np.random.RandomState(0)
    scale = np.sqrt(sigma_sq_omega)
    weights: list = [None] * (K + 1)
    weights[0] = state.normal(size=(D, 1)) * scale
    weights[-1] = state.normal(size=(1, D)) * scale
    for layer in range(1, K):
        weights[layer] = state.normal(size=(D, D)) * scale
    biases = [np.zeros((D, 1)) for _ in range(K)] + [np.zeros((1, 1))]
    return SeedSetup(weights, biases, state)


def forward_data(setup: SeedSetup, n_data: int = 1000) -> np.ndarray:
    """The notebook's ``data_in = np.random.normal(size=(1, n_data))``, as a batch (n_data, 1)."""
    return setup.state.normal(size=(1, n_data)).T


def backward_data(setup: SeedSetup, n_data: int = 100) -> np.ndarray:
    """The notebook's per-sample ``np.random.normal(size=(1, 1))`` draws, as a batch (n_data, 1)."""
    return setup.state.normal(size=(n_data, 1))


# The notebook's printed per-layer "std of hidden units" (layers 1, 2, …; the printout of the
# deep runs is cut off in the document after the values below).
PRINTED_FORWARD = {
    (5, 8, 1.0): [0.811, 1.472, 4.547, 8.896, 10.106],
    (50, 80, 1.0): [0.622, 3.108, 21.075, 161.638, 1125.582, 6319.072, 37275.665, 243387.814,
                    1339835.231, 7366234.399, 49006173.785, 272845366.658, 1682043584.115,
                    10666632256.715, 66098343304.232, 429669007251.536, 2889209957356.916,
                    19621779417283.500, 121787762396578.984, 999886829483868.875,
                    5334411928004678.000, 33827620837739412.000],
    (50, 80, 2 / 80): [0.098, 0.078, 0.083, 0.101, 0.111, 0.099, 0.092, 0.095, 0.083, 0.072,
                       0.076, 0.067, 0.065, 0.065, 0.064, 0.066, 0.070, 0.075, 0.073, 0.095,
                       0.080, 0.081, 0.085, 0.097, 0.106, 0.101],
}

# The notebook's printed backward table for K = 50, D = 80, σ²_Ω = 1 (100 samples, y = 0,
# least-squares loss): std of dL/df_k for layers 49, 48, …, 37.
PRINTED_BACKWARD = {
    (50, 80, 1.0): {
        49: 18817849764518896023941902245604242751488.000,
        48: 140118487856732239819583266458026790354944.000,
        47: 966020560711593611954353793080976121790464.000,
        46: 5987633018620223252680859241244423494828032.000,
        45: 39500717745074512367426775088265226423894016.000,
        44: 231495044789922184959983952343310884879204352.000,
        43: 1336239794865748360889709863959013995287937024.000,
        42: 7712581729931044545150107431487218057337634816.000,
        41: 40450451143651953145051042083546508464165486592.000,
        40: 258241445087590776207952401654968831493980291072.000,
        39: 1461454311950454565864275500814865356181534146560.000,
        38: 10332488588890049713609937944320962320259371499520.000,
        37: 67762952239536214087718500711727746678730564567040.000,
    }
}
