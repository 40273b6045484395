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


# activation name -> (build the torch module from the activation's params)
def _to_torch_table(nn):
    return {
        "identity": lambda p: nn.Identity(),
        "relu": lambda p: nn.ReLU(),
        "leaky_relu": lambda p: nn.LeakyReLU(p["negative_slope"]),
        "sigmoid": lambda p: nn.Sigmoid(),
        "tanh": lambda p: nn.Tanh(),
        "gelu": lambda p: nn.GELU(),
        "silu": lambda p: nn.SiLU(),
        "elu": lambda p: nn.ELU(p["alpha"]),
        # torch's default threshold=20 makes softplus linear above 20 (off by up to 2e-9);
        # at 50 the switch is below rounding, so the torch module equals depthlab's exact one
        "softplus": lambda p: nn.Softplus(threshold=50),
        "selu": lambda p: nn.SELU(),
    }


# torch module class name -> (depthlab activation from the module)
_FROM_TORCH = {
    "Identity": lambda m: _activations.get("identity"),
    "ReLU": lambda m: _activations.get("relu"),
    "LeakyReLU": lambda m: _activations.get("leaky_relu", negative_slope=m.negative_slope),
    "Sigmoid": lambda m: _activations.get("sigmoid"),
    "Tanh": lambda m: _activations.get("tanh"),
    "GELU": lambda m: _activations.get("gelu") if m.approximate == "none" else None,
    "SiLU": lambda m: _activations.get("silu"),
    "ELU": lambda m: _activations.get("elu", alpha=m.alpha),
    "Softplus": lambda m: _activations.get("softplus") if m.beta == 1 else None,
    "SELU": lambda m: _activations.get("selu"),
}


def to_torch(net):
    """A ``torch.nn.Sequential`` computing the same function as ``net`` (same dtype)."""
    torch = _torch()
    nn = torch.nn
    table = _to_torch_table(nn)
    dtype = torch.float64 if net.dtype == np.float64 else torch.float32
    modules = []
    for layer in net.layers:
        if isinstance(layer, Linear):
            module = nn.Linear(layer.in_features, layer.out_features, dtype=dtype)
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(layer.weight.data))
                module.bias.copy_(torch.from_numpy(layer.bias.data))
            modules.append(module)
        else:
            modules.append(table[layer.activation.name](layer.activation.params))
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
        convert = _FROM_TORCH.get(name)
        activation = convert(child) if convert else None
        if activation is None:
            supported = ", ".join(["Linear", *_FROM_TORCH])
            raise ValueError(f"from_torch cannot convert module {i} ({child!r}); supported modules: {supported}.")
        layers.append(ActivationLayer(activation))
    return Sequential(layers)
