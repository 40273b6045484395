"""The network math: activations, initializers, layers, networks, losses, parameters, files.

Imports nothing from the other parts (training, signal, lab); ``depthlab/__init__.py``
exports its public names, so users never need this path.
"""
