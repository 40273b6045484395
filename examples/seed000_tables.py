"""Seed notebook 000: per-layer std of the hidden units of a 50-layer, 80-wide ReLU network.

With σ²_Ω = 1 the signal grows by about sqrt(80/2) ≈ 6.3 per layer; with He's σ²_Ω = 2/80
it keeps its size. Run: python examples/seed000_tables.py
"""
import numpy as np

import depthlab as dl
from depthlab.nn import seeds

K, D = 50, 80
for sigma2, label in [(1.0, "σ²_Ω = 1"), (2 / D, "σ²_Ω = 2/80 (He)")]:
    setup = seeds.init_variance_setup(K, D, sigma2)
    net = dl.Sequential.from_arrays(setup.weights, setup.biases, activation="relu")
    trace = net.forward(seeds.forward_data(setup, 1000), record=True)
    print(f"\n{K}-layer, {D}-wide ReLU network, {label}")
    for layer, h in enumerate(trace.activations[1:], start=1):
        print("Layer %d, std of hidden units = %3.3f" % (layer, np.std(h)))
