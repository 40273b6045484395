"""Speed machinery that is not a layer's own math, behind one switch.

- :mod:`.buffers`: arrays a network reuses from one pass to the next, and the flat array of
  every parameter gradient;
- :mod:`.flat`: an optimizer's update of a whole parameter group as one array;
- :mod:`.rules`: plain SGD's and Adam's fast update rules (the reference rules are in
  :mod:`depthlab.optim.rules`), and the blocked in-place axpy every rule uses;
- :mod:`.blocks`: an epoch's batches gathered, and its metrics scored, in blocks of rows;
- :mod:`.elementwise`: a smooth activation and its derivative computed block by block, in cache;
- :mod:`.pair`: two pieces of work on two threads at once, BLAS held at one thread meanwhile
  (a recorded pass in halves of the batch, :mod:`depthlab.nn.halves`).

:func:`set_fast_paths` turns all of it off — and the layers' own fast variants
(``forward_fast`` / ``backward_fast``) with it — so the plain code is the reference the fast
paths are tested against, through the public API. Private; imports no other part of depthlab.
"""
from __future__ import annotations

import numpy as np

_state = {"enabled": True}


def enabled() -> bool:
    """Whether the fast paths are on (the default)."""
    return _state["enabled"]


class set_fast_paths:
    """Turn depthlab's fast paths on or off; works as a call and as a context manager.

    The fast paths are layers' in-place variants, reused arrays, flat parameter gradients,
    the optimizer's one-array update and blocked epochs. Off, every pass runs the layers'
    plain ``forward`` / ``backward`` on fresh arrays, and optimizers update one parameter at
    a time: slower, and the same numbers up to rounding (sums taken in another order).

    >>> dl.set_fast_paths(False)            # off from here on
    >>> with dl.set_fast_paths(False):      # off inside the block only
    ...     history = dl.fit(net, x, y, ...)
    """

    def __init__(self, enabled: bool):
        if not isinstance(enabled, (bool, np.bool_)):
            raise TypeError(f"set_fast_paths(enabled): enabled must be True or False, got {enabled!r}.")
        self.previous = _state["enabled"]
        _state["enabled"] = bool(enabled)

    def __enter__(self) -> set_fast_paths:
        return self

    def __exit__(self, *exc) -> None:
        _state["enabled"] = self.previous
