"""``dl.plot``: every figure of the lab as a function of plain arrays and depthlab objects.

Each function draws one kind of figure the experiments draw, and the experiments call these
same functions. Without ``ax`` a function returns a new ``matplotlib.figure.Figure`` in the
lab's style (no pyplot state: nothing to close, no display needed, and Jupyter shows it);
with ``ax=`` it draws into that axes and returns it, so figures can be composed::

    >>> import depthlab as dl
    >>> report = dl.probe(net, x)
    >>> dl.plot.probe_std(report)                               # std per layer, theory as lines
    >>> dl.plot.training_curves(history, keys=["loss", "val_loss"], logy=True)
    >>> dl.plot.optimizer_paths(dl.optim.compare("elliptic"))   # seed 004's six paths
    >>> fig, axes = dl.plots.figure(1, 2)                       # compose: draw into given axes
    >>> dl.plot.fitted_function(net, target=dl.data.sine_function, ax=axes[0])
    >>> dl.plot.region_map(net2d, ax=axes[1])

Conventions (those of :mod:`depthlab.lab.plots`): measurements are markers, theory a line
of the same colour; quantities that grow geometrically go on log axes; axes name their
quantity in the seeds' notation (h_k, f_k, dL/df_k, σ²_Ω). matplotlib is imported only when a
function draws (``pip install 'depthlab[lab]'``).

Functions, by subject:

- signals: :func:`measured_and_theory`, :func:`signal_std`, :func:`probe_std`,
  :func:`probe_histograms`, :func:`histogram`, :func:`histogram_grid`, :func:`jacobian_spectrum`;
- mean-field theory: :func:`phase_diagram`, :func:`depth_scales`, :func:`trainability`;
- optimization and training: :func:`contours`, :func:`optimizer_paths`, :func:`curves`,
  :func:`optimizer_losses`, :func:`training_curves`;
- learned functions: :func:`fitted_function`, :func:`function_map`, :func:`fit_maps`,
  :func:`linear_regions`, :func:`region_map`.
"""
from __future__ import annotations

from .signals import (histogram, histogram_grid, jacobian_spectrum, measured_and_theory, probe_histograms, probe_std,
                      signal_std)
from .meanfield import phase_diagram, depth_scales, trainability
from .training import contours, optimizer_paths, curves, optimizer_losses, training_curves
from .functions import fitted_function, function_map, fit_maps, linear_regions, region_map

__all__ = [
    'measured_and_theory', 'signal_std', 'probe_std', 'probe_histograms', 'histogram', 'histogram_grid',
    'jacobian_spectrum',
    'phase_diagram', 'depth_scales', 'trainability',
    'contours', 'optimizer_paths', 'curves', 'optimizer_losses', 'training_curves',
    'fitted_function', 'function_map', 'fit_maps', 'linear_regions', 'region_map',
]
