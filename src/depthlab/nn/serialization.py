"""Save and load networks as ``.npz`` files: the architecture as JSON beside the arrays.

The file holds ``__depthlab__`` (a JSON header: format version, dtype, layer list) and one
array per parameter (``weights_0``, ``biases_0``, ...). Loading never unpickles anything,
and it checks the header against the arrays, so a corrupted or foreign file is refused
with a message instead of giving a silently wrong network. The round trip is exact.
"""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from . import activations as _activations
from .layers import ActivationLayer, Linear

FORMAT = "depthlab.network"
VERSION = 1


def _describe(net) -> dict:
    layers = []
    for layer in net.layers:
        if isinstance(layer, Linear):
            layers.append({"type": "linear", "in_features": layer.in_features,
                           "out_features": layer.out_features})
        else:
            layers.append({"type": "activation", "activation": layer.activation.spec()})
    return {"format": FORMAT, "version": VERSION, "dtype": str(net.dtype), "layers": layers}


def save(net, path) -> None:
    """Write ``net`` to ``path`` (``.npz``; the suffix is added by NumPy if missing)."""
    from .model import Sequential

    if not isinstance(net, Sequential):
        raise TypeError(f"save() needs a depthlab Sequential network, got {type(net).__name__}.")
    arrays = {}
    for k, linear in enumerate(net.linears):
        arrays[f"weights_{k}"] = linear.weight.data
        arrays[f"biases_{k}"] = linear.bias.data
    header = np.frombuffer(json.dumps(_describe(net)).encode(), dtype=np.uint8)
    np.savez(os.fspath(path), __depthlab__=header, **arrays)


def _corrupt(path, why: str) -> ValueError:
    return ValueError(f"{os.fspath(path)!r} is not a valid depthlab network file: {why}. "
                      "Files are written by net.save(path).")


def load(path):
    """Read a network written by :func:`save` / ``net.save``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is not an .npz archive, lacks the depthlab header, or its arrays do not
        match the architecture it declares.
    """
    from .model import Sequential

    if not os.path.exists(os.fspath(path)):
        raise FileNotFoundError(f"no network file at {os.fspath(path)!r}.")
    try:
        archive = np.load(os.fspath(path), allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise _corrupt(path, f"it cannot be read as .npz ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _corrupt(path, "it holds a single array, not an .npz archive")
    with archive:
        try:
            if "__depthlab__" not in archive.files:
                raise _corrupt(path, "it has no '__depthlab__' header (a foreign .npz file?)")
            try:
                header = json.loads(archive["__depthlab__"].tobytes().decode())
            except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as error:
                raise _corrupt(path, f"its header is unreadable ({error})") from None
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise _corrupt(path, "its header does not describe a depthlab network")
            if header.get("version") != VERSION:
                raise _corrupt(path, f"format version {header.get('version')!r} is not supported "
                                     f"(this depthlab reads version {VERSION})")
            dtype = np.dtype(header["dtype"])
            layers, k = [], 0
            for spec in header["layers"]:
                if spec["type"] == "linear":
                    weight = archive[f"weights_{k}"]
                    bias = archive[f"biases_{k}"]
                    expected = (spec["out_features"], spec["in_features"])
                    if weight.shape != expected or bias.shape != expected[:1]:
                        raise _corrupt(path, f"layer {k} declares weight shape {expected} but stores "
                                             f"{weight.shape} and bias {bias.shape}")
                    if weight.dtype != dtype or bias.dtype != dtype:
                        raise _corrupt(path, f"layer {k} stores {weight.dtype} arrays in a {dtype} network")
                    layers.append(Linear.from_arrays(weight, bias, dtype=dtype))
                    k += 1
                elif spec["type"] == "activation":
                    layers.append(ActivationLayer(_activations.get(spec["activation"])))
                else:
                    raise _corrupt(path, f"unknown layer type {spec['type']!r}")
        except (KeyError, TypeError, zipfile.BadZipFile, OSError, EOFError) as error:
            raise _corrupt(path, f"it is incomplete or damaged ({type(error).__name__}: {error})") from None
    return Sequential(layers)
