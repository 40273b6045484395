"""depthlab: build, train and diagnose deep fully-connected networks from first principles.

    >>> import depthlab as dl
    >>> net = dl.MLP(1, [80] * 50, 1, activation="relu", init="he_normal", rng=0)
    >>> report = dl.probe(net, x)            # how signals grow or die with depth, and why

Names are imported on first use (PEP 562), so ``import depthlab`` is quick and the optional
extras (matplotlib, PyTorch, scikit-learn, Dask) load only when a feature needs them.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> "module" (a submodule) or "module:attribute"
_EXPORTS = {
    # submodules
    "activations": "nn.activations",
    "init": "nn.init",
    "losses": "nn.losses",
    "optim": "optim",
    "theory": "signal.theory",
    "data": "training.data",
    "metrics": "training.metrics",
    "callbacks": "training.callbacks",
    "experiments": "lab.experiments",
    "regions": "signal.regions",
    "spectrum": "signal.spectrum",
    "seeds": "nn.seeds",
    "sweeps": "lab.sweeps",
    "plots": "lab.plots",
    "plot": "lab.plot",
    "report": "lab.report",
    # core
    "Parameter": "nn.parameter:Parameter",
    "Layer": "nn.layer:Layer",
    "BatchNorm": "nn.normalization:BatchNorm",
    "LayerNorm": "nn.normalization:LayerNorm",
    "Dropout": "nn.residual:Dropout",
    "Residual": "nn.residual:Residual",
    "ResMLP": "nn.residual:ResMLP",
    "Linear": "nn.layers:Linear",
    "ActivationLayer": "nn.layers:ActivationLayer",
    "Sequential": "nn.model:Sequential",
    "MLP": "nn.model:MLP",
    "Trace": "nn.model:Trace",
    "Gradients": "nn.model:Gradients",
    "NonFiniteError": "nn.model:NonFiniteError",
    "load": "nn.serialization:load",
    "save": "nn.serialization:save",
    "to_torch": "nn.interop:to_torch",
    "from_torch": "nn.interop:from_torch",
    "numerical_gradient": "nn.gradient_check:numerical_gradient",
    "gradcheck": "nn.gradient_check:gradcheck",
    "check_input_jacobian": "nn.gradient_check:check_input_jacobian",
    # training
    "fit": "training.fit:fit",
    "TrainStep": "training.step:TrainStep",
    "evaluate": "training.fit:evaluate",
    "predict": "training.fit:predict",
    "History": "training.callbacks:History",
    "Callback": "training.callbacks:Callback",
    "EarlyStopping": "training.callbacks:EarlyStopping",
    "LambdaCallback": "training.callbacks:LambdaCallback",
    "TrainingState": "training.callbacks:TrainingState",
    "TrainingDiverged": "training.fit:TrainingDiverged",
    # signal propagation
    "probe": "signal.probe:probe",
    "ProbeReport": "signal.probe:ProbeReport",
    "TrainingMonitor": "training.monitor:TrainingMonitor",
    "TrainingMonitorWarning": "training.monitor:TrainingMonitorWarning",
    "jacobian_spectrum": "signal.spectrum:jacobian_spectrum",
    "count_linear_regions": "signal.regions:count_linear_regions",
    "linear_regions_2d": "signal.regions:linear_regions_2d",
    # scale
    "sweep": "lab.sweeps:sweep",
    "set_fast_paths": "_fast:set_fast_paths",
    # the explorer
    "explore": "lab.explore:explore",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'depthlab' has no attribute {name!r}")
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
