"""Save and load networks as ``.npz`` files: the architecture as JSON beside the arrays.

The file holds ``__depthlab__`` (a JSON header: format version, dtype, layer list) and the
arrays. A plain network of Linear and activation layers is written as format 1 (that of
0.1.0: one array per parameter, ``weights_0``, ``biases_0``, ...); any other network of
depthlab's layer kinds (batch and layer norm, dropout, residual blocks, nested Sequentials)
as format 2: the layers as nested specs with their modes, and every entry of
``state_dict()`` (parameters and running statistics) under its name. The round trip is exact.

Saving never destroys the last good file: the archive is written to a temporary file in the
same folder, synced and renamed over the target (see :mod:`depthlab._files`), so a save that
fails half-way (a full disk, Ctrl-C) leaves the previous file as it was. A network holding
NaN or Inf (the state after a divergence) is refused before anything is written: such a file
could not be loaded, since a depthlab network never holds non-finite weights.

Loading never unpickles anything and checks the header against the arrays: a truncated,
foreign or inconsistent file (a dtype other than float64/float32, an unknown activation or
layer type, no layers, shapes that do not chain, arrays the header does not declare) is
refused with a ``ValueError`` that names the file, instead of giving a silently wrong network.

Paths: like NumPy's ``savez``, ``save("ckpt")`` writes ``ckpt.npz``, and ``load("ckpt")``
finds it (it reads ``ckpt`` itself when that file exists). A path that is a folder is refused.
"""
from __future__ import annotations

import json
import numbers
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .. import _files
from . import activations as _activations
from .layers import ActivationLayer, Linear

FORMAT = "depthlab.network"
VERSION = 1            # files written by depthlab 0.1.0 are version 1 too
VERSIONS = (1, 2)      # 2: any network of depthlab's layer kinds, arrays by state_dict name
SUFFIX = ".npz"
DTYPES = ("float64", "float32")
HEADER = "__depthlab__"


def _plain(net) -> bool:
    return all(type(layer) in (Linear, ActivationLayer) for layer in net.layers) and isinstance(net.layers[0], Linear)


def _spec(layer) -> dict:
    """A layer as JSON (format 2), with its mode."""
    from .model import Sequential
    from .normalization import BatchNorm, LayerNorm
    from .residual import Dropout, Residual

    if type(layer) is Linear:
        spec = {"type": "linear", "in_features": layer.in_features, "out_features": layer.out_features}
    elif type(layer) is ActivationLayer:
        spec = {"type": "activation", "activation": layer.activation.spec()}
    elif type(layer) is Sequential:
        spec = {"type": "sequential", "layers": [_spec(child) for child in layer]}
    elif type(layer) is BatchNorm:
        spec = {"type": "batchnorm", "num_features": layer.num_features, "eps": layer.eps, "momentum": layer.momentum,
                "affine": layer.affine, "track_running_stats": layer.track_running_stats}
    elif type(layer) is LayerNorm:
        spec = {"type": "layernorm", "num_features": layer.num_features, "eps": layer.eps,
                "elementwise_affine": layer.elementwise_affine}
    elif type(layer) is Dropout:
        spec = {"type": "dropout", "p": layer.p}
    elif type(layer) is Residual:
        learnable = not isinstance(layer.scale, float)
        spec = {"type": "residual", "branch": _spec(layer.branch),
                "shortcut": None if layer.shortcut is None else _spec(layer.shortcut),
                "scale": float(layer.scale.data[0]) if learnable else layer.scale, "learnable_scale": learnable}
    else:
        raise TypeError(
            f"save() writes depthlab's own layer kinds (Linear, activations, Sequential, BatchNorm, LayerNorm, Dropout, "
            f"Residual), not {type(layer).__name__}; save net.state_dict() with np.savez and load it into a new "
            "network with net.load_state_dict().")
    spec["training"] = layer.training
    return spec


def _layer(spec, dtype, path, where: str):
    """The layer a format-2 spec describes (its arrays are loaded afterwards, by name)."""
    from .model import Sequential
    from .normalization import BatchNorm, LayerNorm
    from .residual import Dropout, Residual

    if not isinstance(spec, dict):
        raise _corrupt(path, f"{where} is {spec!r}, not a layer spec")
    kind = spec.get("type")
    builders = {
        "linear": lambda: Linear(spec["in_features"], spec["out_features"], init="zeros", dtype=dtype),
        "activation": lambda: ActivationLayer(_activations.get(spec["activation"])),
        "sequential": lambda: Sequential([_layer(child, dtype, path, f"{where}.{i}")
                                          for i, child in enumerate(spec["layers"])]),
        "batchnorm": lambda: BatchNorm(spec["num_features"], spec["eps"], spec["momentum"], spec["affine"],
                                       spec["track_running_stats"], dtype=dtype),
        "layernorm": lambda: LayerNorm(spec["num_features"], spec["eps"], spec["elementwise_affine"], dtype=dtype),
        "dropout": lambda: Dropout(spec["p"]),
        "residual": lambda: _residual(spec, dtype, path, where),
    }
    if kind not in builders:
        raise _corrupt(path, f"{where} has unknown type {kind!r}")
    try:
        layer = builders[kind]()
    except _Refused:
        raise
    except (KeyError, TypeError, ValueError) as error:
        raise _corrupt(path, f"{where} ({kind}) cannot be built ({type(error).__name__}: "
                             f"{' '.join(str(error).split())})") from None
    training = spec.get("training", True)
    if not isinstance(training, bool):
        raise _corrupt(path, f"{where} declares training={training!r}; it must be true or false")
    layer.training = training
    return layer


def _residual(spec: dict, dtype, path, where: str):
    from .residual import Residual

    branch = _layer(spec["branch"], dtype, path, f"{where}.branch")
    shortcut = None if spec["shortcut"] is None else _layer(spec["shortcut"], dtype, path, f"{where}.shortcut")
    block = Residual(*branch, scale=spec["scale"], learnable_scale=spec["learnable_scale"], shortcut=shortcut)
    block.branch.training = branch.training   # the branch's own mode, not a fresh Sequential's
    return block


def _describe(net) -> dict:
    if not _plain(net):
        return {"format": FORMAT, "version": 2, "dtype": str(net.dtype), "training": net.training,
                "layers": [_spec(layer) for layer in net.layers]}
    layers = []
    for layer in net.layers:
        if isinstance(layer, Linear):
            layers.append({"type": "linear", "in_features": layer.in_features,
                           "out_features": layer.out_features})
        else:
            layers.append({"type": "activation", "activation": layer.activation.spec()})
    return {"format": FORMAT, "version": VERSION, "dtype": str(net.dtype), "layers": layers}


def _as_path(path, verb: str) -> str:
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{verb}() needs a file path (str or os.PathLike), got {type(path).__name__} {path!r}.")
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{verb}() needs a file name, got {text!r}; e.g. 'checkpoints/net.npz'.")
    return text


def _refuse_folder(text: str, verb: str) -> None:
    """Refuse a folder, and a special file (a FIFO or device would block or be replaced)."""
    if os.path.isdir(text):
        raise IsADirectoryError(f"{verb}(): {text!r} is a folder, not a network file; "
                                f"give a file name inside it, e.g. {os.path.join(text, 'net.npz')!r}.")
    if os.path.exists(text) and not os.path.isfile(text):
        raise ValueError(f"{verb}(): {text!r} is not a regular file (a pipe, socket or device); "
                         "give the name of a network file.")


def save_path(path) -> Path:
    """Where :func:`save` writes ``path``: ``.npz`` appended when missing (as ``np.savez`` does)."""
    text = _as_path(path, "save")
    _refuse_folder(text, "save")
    if not text.endswith(SUFFIX):
        text += SUFFIX
        _refuse_folder(text, "save")
    folder = os.path.dirname(text) or "."
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(f"save(): {folder!r} is a file, so {text!r} cannot be made inside it; "
                                 "choose another folder.")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save(): the folder {folder!r} does not exist; create it first "
                                f"(os.makedirs({folder!r}, exist_ok=True)).")
    return Path(text)


def _check_finite(net) -> None:
    top = {id(p): k for k, linear in enumerate(net.linears) for p in linear.parameters()}
    for name, parameter in net.named_parameters():
        values = parameter.data
        if not np.isfinite(values).all():
            count = int(values.size - np.isfinite(values).sum())
            first = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
            where = f"{parameter.name} (Linear layer {top[id(parameter)]})" if id(parameter) in top else name
            if True:
                raise ValueError(
                    f"save(): {where} holds {count} NaN/Inf value(s) (first at index "
                    f"{first}), so the network cannot be saved: a depthlab network file holds finite weights "
                    "only. Nothing was written; an earlier checkpoint is unchanged. Save before training "
                    "diverges (e.g. from a callback), or lower the learning rate and train again."
                )


def save(net, path) -> Path:
    """Write ``net`` to ``path`` atomically and return the path written.

    Parameters
    ----------
    net : Sequential
    path : str or os.PathLike
        A file name; ``.npz`` is appended when missing. Its folder must exist.

    Returns
    -------
    pathlib.Path
        The file written (``path`` with the ``.npz`` suffix).

    Raises
    ------
    ValueError
        The network holds NaN or Inf (nothing is written).
    IsADirectoryError, FileNotFoundError
        ``path`` is a folder, or its folder does not exist.
    OSError
        The write failed (e.g. a full disk); the previous file at ``path`` is unchanged.
    """
    from .layer import Layer
    from .model import Sequential

    if not isinstance(net, Sequential):
        hint = (" The arguments are the other way round: dl.save(net, path)." if isinstance(path, Sequential) else
                " Wrap a single layer as dl.Sequential(layer)." if isinstance(net, Layer) else "")
        raise TypeError(f"save() needs a depthlab Sequential network, got {type(net).__name__}.{hint}")
    target = save_path(path)
    _check_finite(net)
    description = _describe(net)  # refuses layers of other kinds before anything is written
    arrays = {}
    if description["version"] == 1:
        for k, linear in enumerate(net.linears):
            arrays[f"weights_{k}"] = linear.weight.data
            arrays[f"biases_{k}"] = linear.bias.data
    else:
        arrays = {f"state.{name}": value for name, value in net.state_dict().items()}
    header = np.frombuffer(json.dumps(description).encode(), dtype=np.uint8)
    with _files.atomic_writer(target, "wb") as file:
        np.savez(file, **{HEADER: header}, **arrays)
    return target


# ----------------------------------------------------------------------------- loading

class _Refused(ValueError):
    """A file that is not a valid depthlab network (the message names the file)."""


def _corrupt(path, why: str) -> _Refused:
    return _Refused(f"{os.fspath(path)!r} is not a valid depthlab network file: {why}. "
                    "Files are written by net.save(path).")


def load_path(path) -> str:
    """The file :func:`load` reads for ``path``: ``path`` itself, else ``path + ".npz"``."""
    text = _as_path(path, "load")
    _refuse_folder(text, "load")
    if os.path.exists(text):
        return text
    if not text.endswith(SUFFIX) and os.path.isfile(text + SUFFIX):
        return text + SUFFIX
    tried = f"{text!r}" + ("" if text.endswith(SUFFIX) else f" or {text + SUFFIX!r}")
    raise FileNotFoundError(f"load(): no network file at {tried}.")


def _positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def _read_header(archive, path) -> dict:
    raw = archive[HEADER]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _corrupt(path, f"its header is a {raw.dtype} array of shape {raw.shape}, not JSON text")
    try:
        header = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise _corrupt(path, f"its header is unreadable ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _corrupt(path, "its header does not describe a depthlab network")
    version = header.get("version")
    if isinstance(version, bool) or version not in VERSIONS:
        raise _corrupt(path, f"format version {version!r} is not supported (this depthlab reads versions "
                             f"{', '.join(map(str, VERSIONS))})")
    if header.get("dtype") not in DTYPES:
        raise _corrupt(path, f"its header declares dtype {header.get('dtype')!r}; a network is float64 or float32")
    layers = header.get("layers")
    if not isinstance(layers, list) or not layers:
        raise _corrupt(path, f"its header lists no layers (got {layers!r})")
    return header


def _linear(archive, spec: dict, k: int, dtype: np.dtype, path) -> Linear:
    out_features, in_features = spec.get("out_features"), spec.get("in_features")
    if not (_positive_int(out_features) and _positive_int(in_features)):
        raise _corrupt(path, f"Linear layer {k} declares in_features={in_features!r}, out_features={out_features!r}; "
                             "both must be positive ints")
    weight, bias = archive[f"weights_{k}"], archive[f"biases_{k}"]
    expected = (out_features, in_features)
    if weight.shape != expected or bias.shape != expected[:1]:
        raise _corrupt(path, f"Linear layer {k} declares weight shape {expected} but stores "
                             f"{weight.shape} and bias {bias.shape}")
    if weight.dtype != dtype or bias.dtype != dtype:
        raise _corrupt(path, f"Linear layer {k} stores {weight.dtype}/{bias.dtype} arrays in a {dtype} network")
    for name, values in (("weight", weight), ("bias", bias)):
        if not np.isfinite(values).all():
            raise _corrupt(path, f"Linear layer {k}'s {name} holds NaN or Inf")
    return Linear.from_arrays(weight, bias, dtype=dtype)


def _activation(spec: dict, position: int, path) -> ActivationLayer:
    try:
        return ActivationLayer(_activations.get(spec.get("activation")))
    except (ValueError, TypeError) as error:
        raise _corrupt(path, f"layer {position} has an activation depthlab cannot build "
                             f"({spec.get('activation')!r}: {' '.join(str(error).split())})") from None


def _build_version_2(archive, header: dict, path):
    from .model import Sequential

    dtype = np.dtype(header["dtype"])
    layers = [_layer(spec, dtype, path, f"layer {i}") for i, spec in enumerate(header["layers"])]
    try:
        net = Sequential(layers)
    except (ValueError, TypeError) as error:
        raise _corrupt(path, f"its layers do not form a network ({' '.join(str(error).split())})") from None
    expected = {f"state.{name}" for name in net.state_dict()}
    stored = set(archive.files) - {HEADER}
    if stored != expected:
        raise _corrupt(path, f"its arrays do not match its layers (missing {sorted(expected - stored)}, "
                             f"undeclared {sorted(stored - expected)})")
    state = {name[len("state."):]: archive[name] for name in expected}
    for name, values in state.items():
        if values.dtype.kind == "f" and values.dtype != dtype:
            raise _corrupt(path, f"{name} is stored as {values.dtype} in a {dtype} network")
    try:
        net.load_state_dict(state)
    except (ValueError, TypeError) as error:
        raise _corrupt(path, f"its arrays do not fit its layers ({' '.join(str(error).split())})") from None
    training = header.get("training", True)
    net.training = training if isinstance(training, bool) else True
    return net


def _build(archive, header: dict, path):
    from .model import Sequential

    if header["version"] == 2:
        return _build_version_2(archive, header, path)
    dtype = np.dtype(header["dtype"])
    layers, k = [], 0
    for position, spec in enumerate(header["layers"]):
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind == "linear":
            layers.append(_linear(archive, spec, k, dtype, path))
            k += 1
        elif kind == "activation":
            layers.append(_activation(spec, position, path))
        else:
            raise _corrupt(path, f"layer {position} has unknown type {kind if kind is not None else spec!r}")
    if not isinstance(layers[0], Linear):
        raise _corrupt(path, "its layers do not form a network (a format-1 network starts with a Linear layer)")
    declared = {HEADER} | {f"{name}_{i}" for i in range(k) for name in ("weights", "biases")}
    extra = sorted(set(archive.files) - declared)
    if extra:
        raise _corrupt(path, f"it stores arrays its header does not declare: {', '.join(extra)}")
    try:
        return Sequential(layers)
    except (ValueError, TypeError) as error:
        raise _corrupt(path, f"its layers do not form a network ({' '.join(str(error).split())})") from None


def load(path):
    """Read a network written by :func:`save` / ``net.save`` (any depthlab since 0.1.0).

    Parameters
    ----------
    path : str or os.PathLike
        The file; ``path + ".npz"`` is tried when ``path`` does not exist (as ``save`` writes it).

    Raises
    ------
    FileNotFoundError
        No such file (the message names what was tried).
    IsADirectoryError
        ``path`` is a folder.
    ValueError
        The file is not an .npz archive, lacks the depthlab header, or its header and
        arrays disagree (the message names the file and what is wrong).
    """
    path = load_path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise _corrupt(path, f"it cannot be read as .npz ({' '.join(str(error).split())})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _corrupt(path, "it holds a single array, not an .npz archive")
    with archive:
        try:
            if HEADER not in archive.files:
                raise _corrupt(path, f"it has no {HEADER!r} header (a foreign .npz file?)")
            return _build(archive, _read_header(archive, path), path)
        except _Refused:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, zipfile.BadZipFile, zlib.error, OSError, EOFError,
                MemoryError) as error:
            raise _corrupt(path, f"it is incomplete or damaged ({type(error).__name__}: "
                                 f"{' '.join(str(error).split())})") from None
