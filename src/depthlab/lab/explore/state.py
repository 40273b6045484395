"""The explorer's state: the query string of a link, checked, with the caps that keep it safe.

The keys and meanings are those of ``depthlab probe``'s flags (``--bias-variance`` is
``bias_variance``), so ``?depth=50&width=80&activation=relu&init=normal&sigma2=1`` shows what
``depthlab probe --depth 50 --width 80 --activation relu --init normal --sigma2 1`` prints.
Residual and normalized networks add ``block``, ``norm`` and ``residual_scale`` (``--block``,
``--norm``, ``--residual-scale``; :mod:`depthlab.lab.probe_network` builds the network for both).
Training adds ``steps``, ``lr`` and ``optimizer``. Every value a user can type is either
accepted or refused with a message that names the key, what came and what is allowed.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

from ...nn import activations, init as initializers
from ...signal import theory
from .. import probe_network

# Caps: a link cannot ask for a network that exhausts memory or minutes of compute.
CAPS = {
    "depth": 200,
    "width": 512,
    "samples": 5000,
    "in_features": 64,
    "cells": 8_000_000,           # Linear layers · width · samples (the probe keeps f, h, dL/df: ~200 MB)
    "weights": 16_000_000,        # Linear layers · width² (each request builds its network: ~130 MB a copy)
    "variance": 1e4,              # sigma2 and bias_variance
    "seed": 2**32 - 1,
    "steps": 2000,
    "lr": 10.0,
}

INITS = ("normal", "he_normal", "he_uniform", "xavier_normal", "xavier_uniform", "lecun_normal",
         "lecun_uniform", "orthogonal", "critical", "zeros")
OPTIMIZERS = ("sgd", "adam")


class StateError(ValueError):
    """A query value the explorer refuses; its message is shown in the page as is."""


@dataclass(frozen=True)
class State:
    """Everything a view depends on (the same names as ``depthlab probe``'s flags)."""

    depth: int = 50
    width: int = 80
    activation: str = "relu"
    init: str = "normal"
    sigma2: float = 1.0
    bias_variance: float = 0.0
    samples: int = 1000
    in_features: int = 1
    seed: int = 0
    steps: int = 200
    lr: float = 0.01
    optimizer: str = "sgd"
    block: str = "plain"
    norm: str = "none"
    residual_scale: float | str = 1.0

    def query(self) -> dict:
        """The state as query parameters (``sigma2`` only with ``init=normal``, ``residual_scale``
        only with a residual ``block``)."""
        data = asdict(self)
        if self.init != "normal":
            data.pop("sigma2")
        if self.block == "plain":
            data.pop("residual_scale")
        return data

    def without_training(self) -> State:
        """The state with the training controls (steps, lr, optimizer) at their defaults: what a
        view depends on."""
        return replace(self, steps=State.steps, lr=State.lr, optimizer=State.optimizer)

    @property
    def plain(self) -> bool:
        """Whether the network is a plain MLP (rows: its Linear layers), not one of blocks."""
        return self.block == "plain" and self.norm == "none"

    @property
    def linear_layers(self) -> int:
        return probe_network.linear_layers(self.depth, self.block)

    @property
    def weight_init(self):
        """What :class:`depthlab.MLP` takes as ``init``: σ²_Ω for 'normal', else the name."""
        if self.init == "normal":
            return self.sigma2
        if self.init == "critical":
            return {"name": "critical", "activation": self.activation}
        return self.init

    @property
    def bias_init(self):
        return {"name": "normal", "variance": self.bias_variance} if self.bias_variance > 0 else "zeros"


def shortened(text: str, limit: int = 40) -> str:
    """``text`` for a message, cut after ``limit`` characters (a link may carry a 5000-digit number)."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _integer(key: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        if text.strip().lstrip("+-").isdigit():      # beyond int()'s 4300 digits: a whole number, far too large
            raise StateError(f"{key} must be between {low} and {high} (the explorer's cap), got "
                             f"{shortened(text.strip())}.") from None
        raise StateError(f"{key} must be a whole number, got {shortened(repr(text))}.") from None
    if not low <= value <= high:
        raise StateError(f"{key} must be between {low} and {high} (the explorer's cap), got {shortened(str(value))}.")
    return value


def _real(key: str, text: str, *, low: float, high: float, low_open: bool = False) -> float:
    try:
        value = float(text) + 0.0          # + 0.0: '-0' is 0.0, one state with one link
    except ValueError:
        raise StateError(f"{key} must be a number, got {shortened(repr(text))}.") from None
    if not math.isfinite(value):
        raise StateError(f"{key} must be finite, got {shortened(repr(text))}.")
    if value > high or value < low or (low_open and value == low):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise StateError(f"{key} must be {bound} and <= {high:g} (the explorer's cap), got {value!r}.")
    return value


def _choice(key: str, text: str, options) -> str:
    name = text.strip().lower().replace("-", "_")
    if name not in options:
        raise StateError(f"{key} must be one of {', '.join(options)}; got {shortened(repr(text))}.")
    return name


def _residual_scale(text: str) -> float | str:
    try:
        return probe_network.residual_scale(text.strip())
    except ValueError as error:
        raise StateError(str(error)) from None


_PARSERS = {
    "depth": lambda t: _integer("depth", t, 1, CAPS["depth"]),
    "width": lambda t: _integer("width", t, 1, CAPS["width"]),
    "activation": lambda t: _choice("activation", t, activations.names()),
    "init": lambda t: _choice("init", t, INITS),
    "sigma2": lambda t: _real("sigma2", t, low=0.0, high=CAPS["variance"], low_open=True),
    "bias_variance": lambda t: _real("bias_variance", t, low=0.0, high=CAPS["variance"]),
    "samples": lambda t: _integer("samples", t, 2, CAPS["samples"]),
    "in_features": lambda t: _integer("in_features", t, 1, CAPS["in_features"]),
    "seed": lambda t: _integer("seed", t, 0, CAPS["seed"]),
    "steps": lambda t: _integer("steps", t, 1, CAPS["steps"]),
    "lr": lambda t: _real("lr", t, low=0.0, high=CAPS["lr"], low_open=True),
    "optimizer": lambda t: _choice("optimizer", t, OPTIMIZERS),
    "block": lambda t: _choice("block", t, probe_network.BLOCKS),
    "norm": lambda t: _choice("norm", t, tuple(probe_network.NORMS)),
    "residual_scale": lambda t: _residual_scale(t),
}
KEYS = tuple(f.name for f in fields(State))


def parse(query: Mapping[str, str]) -> State:
    """The :class:`State` a query asks for; missing keys take the defaults of ``depthlab probe``.

    Raises
    ------
    StateError
        For an unknown key, a value of the wrong kind, a value beyond a cap, ``sigma2`` with a
        named ``init``, or a network of more than ``CAPS['cells']`` Linear layers·width·samples or
        ``CAPS['weights']`` Linear layers·width².
    """
    unknown = sorted(set(query) - set(KEYS))
    if unknown:
        raise StateError(f"unknown key {shortened(repr(unknown[0]))} in the link; valid keys: {', '.join(KEYS)}.")
    values = {key: _PARSERS[key](str(text)) for key, text in query.items()}
    if values.get("init", "normal") != "normal" and "sigma2" in values:
        raise StateError(f"sigma2 sets σ²_Ω of init=normal; it cannot be combined with init={values['init']} "
                         "(as in depthlab probe). Remove sigma2 or use init=normal.")
    if values.get("block", "plain") == "plain" and "residual_scale" in values:
        raise StateError("residual_scale weighs residual branches; it needs block=preact or block=postact "
                         "(as in depthlab probe).")
    state = State(**values)
    cells = state.linear_layers * state.width * state.samples
    if cells > CAPS["cells"]:
        raise StateError(f"Linear layers × width × samples = {cells:,} exceeds the explorer's cap of "
                         f"{CAPS['cells']:,} (the probe keeps every layer's activations and gradients); use fewer "
                         "samples or layers.")
    weights = state.linear_layers * state.width ** 2
    if weights > CAPS["weights"]:
        raise StateError(f"Linear layers × width² = {weights:,} exceeds the explorer's cap of {CAPS['weights']:,} "
                         "weights (every request builds the network afresh); use fewer layers or a smaller width.")
    if state.init not in ("normal", "critical", "zeros"):
        initializers.get(state.init)          # registered (a typo is caught by _choice already)
    if state.init == "critical" and (problem := _no_edge_of_chaos(state.activation)):
        raise StateError(f"init=critical puts the weights at the edge of chaos of the activation, but {problem} "
                         "Choose another init (e.g. he_normal) or activation (e.g. tanh).")
    return state


@functools.lru_cache(maxsize=None)
def _no_edge_of_chaos(activation: str) -> str | None:
    """Why ``activation`` has no critical σ_w² at σ_b² = 0 (dl.theory's words), or None."""
    try:
        theory.critical_weight_variance(activation, 0.0)
    except ValueError as error:
        return " ".join(str(error).split())
    return None


def caps_text() -> str:
    """The caps as one sentence for the page."""
    return (f"Caps: depth ≤ {CAPS['depth']}, width ≤ {CAPS['width']}, samples ≤ {CAPS['samples']}, "
            f"Linear layers × width × samples ≤ {CAPS['cells']:,} (a residual block has two), "
            f"Linear layers × width² ≤ {CAPS['weights']:,}, "
            f"σ² and σ_b² ≤ {CAPS['variance']:g}, "
            f"training steps ≤ {CAPS['steps']}.")
