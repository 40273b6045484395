"""Training: ``fit``, the training step, callbacks (the training monitor among them),
metrics, data sets and the progress display.

Imports the network math (:mod:`depthlab.nn`) and the optimizers (:mod:`depthlab.optim`).
"""
