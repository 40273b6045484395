"""Optimizers, learning-rate schedules, gradient clipping and ``minimize`` for test functions.

- :mod:`.rules`: each algorithm's update as a small function over arrays, with its state
  (a NamedTuple using PyTorch's names: ``step``, ``exp_avg``, ``exp_avg_sq``, ...).
- :mod:`.base` / :mod:`.algorithms`: PyTorch-shaped classes (``SGD``, ``Adam``, ...) with
  parameter groups, state keyed by parameter, ``step``, ``zero_grad`` and state dicts.
- :mod:`.flat`: a group whose parameters and gradients lie end to end in two flat arrays
  (a small ``dl.MLP`` trained by ``fit`` or ``TrainStep``) updated as one array, number
  for number what the per-parameter loop does.
- :mod:`.schedules`: ``StepLR``, ``ExponentialLR``, ``CosineAnnealingLR``, ``LinearLR``,
  ``ReduceLROnPlateau``.
- :mod:`.clip`: ``clip_grad_norm``.
- :mod:`.functions` / :mod:`.minimize`: 2-D test functions and trajectories on them.

Everything matches ``torch.optim`` numerically (tested against PyTorch in float64).
"""
from .algorithms import (OPTIMIZERS, SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, NAdam, RAdam, RMSprop, get, resolve)
from .base import Optimizer
from .clip import clip_grad_norm
from .functions import FUNCTIONS, Objective
from .minimize import SEED_004_SETTINGS, MinimizeResult, compare, minimize
from .rules import (AdadeltaState, AdagradState, AdamaxState, AdamState, NAdamState, RAdamState, RMSpropState, SGDState)
from .schedules import CosineAnnealingLR, ExponentialLR, LinearLR, LRScheduler, ReduceLROnPlateau, StepLR

__all__ = [
    "Optimizer", "SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam", "RAdam",
    "OPTIMIZERS", "get", "resolve",
    "SGDState", "AdagradState", "RMSpropState", "AdadeltaState", "AdamState", "AdamaxState", "NAdamState",
    "RAdamState",
    "LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "ReduceLROnPlateau",
    "clip_grad_norm",
    "minimize", "MinimizeResult", "compare", "SEED_004_SETTINGS", "FUNCTIONS", "Objective",
]
