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
    "activations": "activations",
    "init": "init",
    "losses": "losses",
    "optim": "optim",
    "theory": "theory",
    "data": "data",
    "metrics": "metrics",
    "callbacks": "callbacks",
    "experiments": "experiments",
    "regions": "regions",
    "spectrum": "spectrum",
    "seeds": "seeds",
    "sweeps": "sweeps",
    "plots": "plots",
    "report": "report",
    # core
    "Parameter": "parameter:Parameter",
    "Linear": "layers:Linear",
    "ActivationLayer": "layers:ActivationLayer",
    "Sequential": "model:Sequential",
    "MLP": "model:MLP",
    "Trace": "model:Trace",
    "Gradients": "model:Gradients",
    "load": "serialization:load",
    "save": "serialization:save",
    "to_torch": "interop:to_torch",
    "from_torch": "interop:from_torch",
    "numerical_gradient": "gradient_check:numerical_gradient",
    "gradcheck": "gradient_check:gradcheck",
    "check_input_jacobian": "gradient_check:check_input_jacobian",
    # training
    "fit": "train:fit",
    "TrainStep": "train_step:TrainStep",
    "evaluate": "train:evaluate",
    "predict": "train:predict",
    "History": "callbacks:History",
    "Callback": "callbacks:Callback",
    "EarlyStopping": "callbacks:EarlyStopping",
    "LambdaCallback": "callbacks:LambdaCallback",
    "TrainingState": "callbacks:TrainingState",
    "TrainingDiverged": "train:TrainingDiverged",
    # signal propagation
    "probe": "probing:probe",
    "ProbeReport": "probing:ProbeReport",
    "TrainingMonitor": "monitor:TrainingMonitor",
    "TrainingMonitorWarning": "monitor:TrainingMonitorWarning",
    "jacobian_spectrum": "spectrum:jacobian_spectrum",
    "count_linear_regions": "regions:count_linear_regions",
    "linear_regions_2d": "regions:linear_regions_2d",
    # scale
    "sweep": "sweeps:sweep",
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
