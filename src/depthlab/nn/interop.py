"""Convert networks to and from PyTorch (``torch.nn.Sequential``); PyTorch is imported lazily.

Weights keep their layout — depthlab's Ω_k of shape (D_out, D_in) is ``nn.Linear.weight`` —
and their dtype, so a converted network computes the same function to rounding.
"""
from __future__ import annotations

import numpy as np

from . import activations as _activations
from .._checks import require
from .layers import ActivationLayer, Linear


def _torch():
    return require("torch", "PyTorch interop (to_torch, from_torch)")


def _torch_module(nn, activation: _activations.Activation):
    """The torch module the activation table names for ``activation``."""
    if activation.torch is None:
        raise ValueError(f"to_torch: the activation {activation!r} has no PyTorch counterpart in the activation table.")
    name, kwargs = activation.torch
    return getattr(nn, name)(**kwargs)


def _from_torch_module(module) -> _activations.Activation | None:
    """The depthlab activation whose table entry names ``module``'s class, or None."""
    name = type(module).__name__
    for factory_name in _activations.names():
        template = _activations.get(factory_name)
        if template.torch is None or template.torch[0] != name:
            continue
        if any(getattr(module, key, None) != value for key, value in template.torch_requires.items()):
            return None
        return _activations.get(factory_name, **{key: getattr(module, key) for key in template.params})
    return None


def _torch_names() -> list[str]:
    return [_activations.get(name).torch[0] for name in _activations.names() if _activations.get(name).torch]


def _torch_residual_class(torch):
    """``Residual``'s torch counterpart: ``forward(h) = shortcut(h) + scale * branch(h)``, with
    ``branch`` an ``nn.Sequential``, ``shortcut`` a module or None (identity) and ``scale`` a
    float or an ``nn.Parameter`` of one entry (the learnable scalar)."""
    class Residual(torch.nn.Module):
        def __init__(self, branch, shortcut=None, scale=1.0):
            super().__init__()
            self.branch, self.shortcut, self.scale = branch, shortcut, scale

        def forward(self, h):
            skip = h if self.shortcut is None else self.shortcut(h)
            return skip + self.scale * self.branch(h)

    return Residual


def _to_torch_layer(layer, torch, dtype):
    """One depthlab layer as a torch module in the layer's mode (its own flag: a Sequential in
    eval mode may hold a layer in train mode, and so may the module)."""
    module = _to_torch_module(layer, torch, dtype)
    module.training = layer.training
    return module


def _to_torch_module(layer, torch, dtype):
    """One depthlab layer as a torch module (recursively for Sequential and Residual)."""
    from .model import Sequential
    from .normalization import BatchNorm, LayerNorm
    from .residual import Dropout, Residual

    nn = torch.nn
    kinds = (Linear, ActivationLayer, Sequential, BatchNorm, LayerNorm, Dropout, Residual)
    kind = next((k for k in kinds if isinstance(layer, k)), None)
    if kind is not None and (type(layer).forward is not kind.forward or "forward" in vars(layer)):
        raise TypeError(f"to_torch cannot convert {type(layer).__name__}: it overrides {kind.__name__}.forward, so "
                        f"torch's {kind.__name__} would compute another function.")

    def copy(target, array):
        with torch.no_grad():
            target.copy_(torch.from_numpy(np.ascontiguousarray(array)))

    if isinstance(layer, Linear):
        module = nn.Linear(layer.in_features, layer.out_features, dtype=dtype)
        copy(module.weight, layer.weight.data)
        copy(module.bias, layer.bias.data)
        return module
    if isinstance(layer, ActivationLayer):
        return _torch_module(nn, layer.activation)
    if isinstance(layer, Sequential):
        return nn.Sequential(*(_to_torch_layer(child, torch, dtype) for child in layer))
    if isinstance(layer, BatchNorm):
        module = nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum, affine=layer.affine,
                                track_running_stats=layer.track_running_stats, dtype=dtype)
        if layer.affine:
            copy(module.weight, layer.weight.data)
            copy(module.bias, layer.bias.data)
        if layer.track_running_stats:
            copy(module.running_mean, layer.running_mean)
            copy(module.running_var, layer.running_var)
            module.num_batches_tracked.fill_(layer.num_batches_tracked)
        return module.train(layer.training)
    if isinstance(layer, LayerNorm):
        module = nn.LayerNorm(layer.num_features, eps=layer.eps, elementwise_affine=layer.elementwise_affine,
                              dtype=dtype)
        if layer.elementwise_affine:
            copy(module.weight, layer.weight.data)
            copy(module.bias, layer.bias.data)
        return module
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.p).train(layer.training)
    if isinstance(layer, Residual):
        shortcut = None if layer.shortcut is None else _to_torch_layer(layer.shortcut, torch, dtype)
        scale = layer.scale
        if not isinstance(scale, float):
            scale = nn.Parameter(torch.tensor(scale.data.copy()))
        return _torch_residual_class(torch)(_to_torch_layer(layer.branch, torch, dtype), shortcut, scale)
    raise TypeError(f"to_torch converts Linear, activation, Sequential, BatchNorm, LayerNorm, Dropout and "
                    f"Residual layers, not {type(layer).__name__}.")


def to_torch(net):
    """A torch module computing the same function as ``net`` (same dtype and modes).

    Linear, activation, Sequential (``nn.Sequential``), BatchNorm (``nn.BatchNorm1d``, with its
    running statistics), LayerNorm, Dropout and Residual layers; a Residual becomes a small
    module ``forward(h) = shortcut(h) + scale * branch(h)`` (``branch`` an ``nn.Sequential``,
    ``shortcut`` None for the identity, ``scale`` a float or a one-entry ``nn.Parameter``).
    """
    from .layer import Layer

    if not isinstance(net, Layer):
        raise TypeError(f"to_torch needs a depthlab network or layer (e.g. dl.MLP(...)), got {type(net).__name__}.")
    torch = _torch()
    dtypes = {p.dtype for p in net.parameters()}
    dtype = torch.float32 if dtypes == {np.dtype(np.float32)} else torch.float64
    return _to_torch_layer(net, torch, dtype)


def _from_torch_layer(child, torch, where: str):
    """One torch module as a depthlab layer in the module's mode (its own flag, as to_torch)."""
    layer = _depthlab_layer(child, torch, where)
    layer.training = child.training
    return layer


def _depthlab_layer(child, torch, where: str):
    from .model import Sequential
    from .normalization import BatchNorm, LayerNorm
    from .residual import Dropout, Residual

    nn = torch.nn

    def array(tensor):
        tensor = tensor.detach().cpu()
        if tensor.dtype not in (torch.float32, torch.float64):  # float16, bfloat16: NumPy has no bfloat16
            tensor = tensor.to(torch.float64)
        return tensor.numpy()

    if isinstance(child, nn.Linear):
        weight = array(child.weight)
        bias = array(child.bias) if child.bias is not None else None
        dtype = "float32" if weight.dtype == np.float32 else "float64"
        return Linear.from_arrays(weight, bias, dtype=dtype, name=f"{where}.weight")
    if isinstance(child, nn.Sequential):
        return Sequential([_from_torch_layer(grandchild, torch, f"{where}[{i}]") for i, grandchild in enumerate(child)])
    if isinstance(child, nn.BatchNorm1d):
        layer = BatchNorm(child.num_features, eps=child.eps, momentum=child.momentum, affine=child.affine,
                          track_running_stats=child.track_running_stats,
                          dtype="float32" if child.running_mean is not None and child.running_mean.dtype == torch.float32
                          else "float64")
        state = {name: array(value) for name, value in child.state_dict().items()}
        layer.load_state_dict(state)
        return layer.train(child.training)
    if isinstance(child, nn.LayerNorm):
        if len(child.normalized_shape) != 1:
            raise ValueError(f"from_torch: {where} normalizes over {child.normalized_shape}; depthlab's LayerNorm "
                             "normalizes over the last axis only.")
        layer = LayerNorm(child.normalized_shape[0], eps=child.eps, elementwise_affine=child.elementwise_affine)
        if child.elementwise_affine:
            layer.load_state_dict({name: array(value) for name, value in child.state_dict().items()})
        return layer
    if isinstance(child, nn.Dropout):
        return Dropout(child.p).train(child.training)
    if type(child).__name__ == "Residual" and hasattr(child, "branch"):
        branch = _from_torch_layer(child.branch, torch, f"{where}.branch")
        shortcut = None if child.shortcut is None else _from_torch_layer(child.shortcut, torch, f"{where}.shortcut")
        learnable = isinstance(child.scale, nn.Parameter)
        scale = float(child.scale.detach()[0]) if learnable else float(child.scale)
        return Residual(*branch, scale=scale, shortcut=shortcut, learnable_scale=learnable)
    activation = _from_torch_module(child)
    if activation is None:
        supported = ", ".join(["Linear", "Sequential", "BatchNorm1d", "LayerNorm", "Dropout", "Residual",
                               *_torch_names()])
        raise ValueError(f"from_torch cannot convert {where} ({child!r}); supported modules: {supported}.")
    return ActivationLayer(activation)


def from_torch(module):
    """A depthlab network from a torch module: an ``nn.Sequential`` (or one module) of the
    kinds :func:`to_torch` writes — ``nn.Linear``, the activation modules of the activation
    table (Identity, ReLU, LeakyReLU, Sigmoid, Tanh, GELU (exact), SiLU, ELU, Softplus
    (beta=1), SELU), ``nn.BatchNorm1d``, ``nn.LayerNorm``, ``nn.Dropout``, nested
    ``nn.Sequential`` and to_torch's ``Residual``. Anything else is refused with its name.
    """
    torch = _torch()
    from .model import Sequential

    if isinstance(module, torch.nn.Linear):
        module = torch.nn.Sequential(module)
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"from_torch needs a torch.nn.Sequential (or nn.Linear), got {type(module).__name__}.")
    net = Sequential([_from_torch_layer(child, torch, f"module[{i}]") for i, child in enumerate(module)])
    net.training = module.training
    return net
