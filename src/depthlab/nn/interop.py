"""Convert networks to and from PyTorch (``torch.nn.Sequential``); PyTorch is imported lazily.

Weights keep their layout — depthlab's Ω_k of shape (D_out, D_in) is ``nn.Linear.weight`` —
and their dtype, so a converted network computes the same function to rounding.
"""
from __future__ import annotations

import numpy as np

from . import activations as _activations
from .layers import ActivationLayer, Linear


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("PyTorch interop needs torch: pip install 'depthlab[torch]' "
                          "(torch==2.13.0, the CPU build).") from None
    return torch


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


def to_torch(net):
    """A ``torch.nn.Sequential`` computing the same function as ``net`` (same dtype)."""
    torch = _torch()
    nn = torch.nn
    dtype = torch.float64 if net.dtype == np.float64 else torch.float32
    modules = []
    for layer in net.layers:
        if isinstance(layer, Linear):
            module = nn.Linear(layer.in_features, layer.out_features, dtype=dtype)
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(layer.weight.data))
                module.bias.copy_(torch.from_numpy(layer.bias.data))
            modules.append(module)
        elif isinstance(layer, ActivationLayer):
            modules.append(_torch_module(nn, layer.activation))
        else:
            raise TypeError(f"to_torch converts Linear and activation layers; layers[{len(modules)}] is a "
                            f"{type(layer).__name__}.")
    return nn.Sequential(*modules)


def from_torch(module):
    """A depthlab network from a ``torch.nn.Sequential`` of ``nn.Linear`` and activation modules.

    Supported activations: Identity, ReLU, LeakyReLU, Sigmoid, Tanh, GELU (exact),
    SiLU, ELU, Softplus (beta=1), SELU. Anything else is refused with its name.
    """
    torch = _torch()
    from .model import Sequential

    if isinstance(module, torch.nn.Linear):
        module = torch.nn.Sequential(module)
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"from_torch needs a torch.nn.Sequential (or nn.Linear), got {type(module).__name__}.")
    layers = []
    for i, child in enumerate(module):
        name = type(child).__name__
        if isinstance(child, torch.nn.Linear):
            weight = child.weight.detach().cpu().numpy()
            bias = child.bias.detach().cpu().numpy() if child.bias is not None else None
            dtype = "float32" if weight.dtype == np.float32 else "float64"
            layers.append(Linear.from_arrays(weight, bias, dtype=dtype, name=f"module[{i}].weight"))
            continue
        activation = _from_torch_module(child)
        if activation is None:
            supported = ", ".join(["Linear", *_torch_names()])
            raise ValueError(f"from_torch cannot convert module {i} ({child!r}); supported modules: {supported}.")
        layers.append(ActivationLayer(activation))
    return Sequential(layers)
