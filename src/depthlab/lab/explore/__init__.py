"""``depthlab explore``: an interactive explorer in the browser, computed by the real network and the theory.

    depthlab explore                 # prints http://127.0.0.1:PORT/ and opens it
    >>> dl.explore(depth=50, activation="tanh")   # the same explorer inline in Jupyter

Modules: :mod:`.state` (the query string, checked and capped), :mod:`.compute` (views from
dl.MLP, dl.probe and dl.theory; training jobs), :mod:`.memo` (results kept per key, computed
once even when several requests ask at once), :mod:`.app` (the Starlette application),
:mod:`.server` (uvicorn in the foreground or in a thread). The web packages (the 'web' extra)
are imported only when a server starts.
"""
from .server import Explorer, explore

__all__ = ["Explorer", "explore"]
