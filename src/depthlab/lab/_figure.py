"""The lab's Figure: a matplotlib ``Figure`` that a notebook shows by itself.

Figures are made without ``pyplot`` (see :mod:`depthlab.lab.plots`), so Jupyter's inline
backend may never have been loaded; :meth:`LabFigure._repr_png_` lets IPython display a
returned figure anyway (where the inline backend is active, its own formatter is used).
"""
from __future__ import annotations

from matplotlib.figure import Figure


class LabFigure(Figure):
    """``matplotlib.figure.Figure`` with a PNG display for notebooks."""

    def _repr_png_(self) -> bytes:
        from .plots import png_bytes

        return png_bytes(self)
