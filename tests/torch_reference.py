"""PyTorch's functional form of every depthlab activation, for parity tests."""
import torch

TORCH_ACTIVATION = {
    "identity": lambda t: t,
    "relu": torch.relu,
    "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, 0.01),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": torch.nn.functional.gelu,
    "silu": torch.nn.functional.silu,
    "elu": torch.nn.functional.elu,
    # torch turns softplus linear above `threshold` (20 by default: off by up to 2e-9);
    # depthlab's is exact everywhere, so compare with a threshold where e^-x is below rounding
    "softplus": lambda t: torch.nn.functional.softplus(t, threshold=50),
    "selu": torch.selu,
}
