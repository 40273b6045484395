"""``Optimizer``: parameter groups, per-parameter state and ``step`` around a pure update rule.

An optimizer holds

- ``param_groups``: a list of dicts, each with ``"params"`` (a list of
  :class:`~depthlab.Parameter`) and that group's hyperparameters (``"lr"``, ...). Schedules
  change ``group["lr"]`` between steps.
- ``state``: a dict ``Parameter -> State`` (a ``NamedTuple`` of a step count and arrays,
  see :mod:`depthlab.optim.rules`), keyed by the parameter object itself, so one optimizer
  can serve any number of layers.

A subclass names its rule (``init_state``, ``update``, ``work_buffers``) and its
hyperparameters with their defaults; everything else lives here. Where
:data:`~depthlab.optim.rules.FAST_RULES` has a shorter rule for the optimizer's ``update``
and a group's settings (plain SGD, Adam), ``step`` runs that one: the same arithmetic, bit
for bit, with less Python per parameter.
"""
from __future__ import annotations

import difflib
import math
import numbers
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from itertools import repeat

import numpy as np

from ..nn.parameter import Parameter
from .. import _fast
from .._fast.flat import FlatGroup, workspace
from .rules import FAST_RULES

# keys a parameter group may carry besides "params" and the optimizer's hyperparameters
EXTRA_GROUP_KEYS = ("initial_lr", "name")
_MAX_STEP = 2**53  # the largest step count a loaded state may hold
# state fields that hold a number rather than an array
_SCALAR_FIELDS = ("step", "mu_product")
# state arrays that are sums or running means of squares (or of magnitudes): never negative
_NON_NEGATIVE_FIELDS = ("sum", "square_avg", "acc_delta", "exp_avg_sq", "max_exp_avg_sq", "exp_inf")


def _scalar_field(field: str, value, where: str):
    """A loaded ``step`` (an integer >= 0; PyTorch saves it as a float tensor) or ``mu_product``
    (a finite float)."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # a 0-d array or tensor, a NumPy scalar
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{where} must be a number, got {type(value).__name__} {value!r}.")
    if field == "step":  # a count, exact in float64 (PyTorch keeps it as a float tensor)
        whole = isinstance(value, (numbers.Integral, np.integer)) or float(value).is_integer()
        if not (whole and 0 <= value <= _MAX_STEP):
            raise ValueError(f"{where} must be a whole number of steps in [0, 2**53], got {str(value)[:40]}.")
        return int(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{where} must be finite, got {value!r}.")
    return number


# ----------------------------------------------------------------- hyperparameter checks
def _real(value, name: str) -> float:
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
        value = value[()]  # a 0-d array holds one number
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}. "
                        f"Example: {name}=0.01.")
    try:
        return float(value)
    except OverflowError:  # an int beyond float64's range
        raise ValueError(f"{name} must be a finite number, got an integer of {len(str(value))} digits.") from None


def _non_negative(what: str, name: str):
    """A check ``Invalid <what>: <value>`` for a finite number >= 0 (PyTorch's wording)."""

    def check(value):
        number = _real(value, name)
        if not (math.isfinite(number) and number >= 0.0):
            raise ValueError(f"Invalid {what}: {value} ({name} must be a finite number >= 0).")
        return number

    return check


def _any_real(name: str):
    def check(value):
        number = _real(value, name)
        if not math.isfinite(number):
            raise ValueError(f"Invalid {name} value: {value} ({name} must be finite).")
        return number

    return check


def _unit_interval(value):
    number = _real(value, "rho")
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"Invalid rho value: {value} (rho must be in [0, 1]).")
    return number


def _betas(value):
    if isinstance(value, np.ndarray) and value.shape == (2,):
        value = tuple(value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(
            f"betas must be a pair of numbers (β₁, β₂), got {value!r}. Example: betas=(0.9, 0.999)."
        )
    checked = []
    for index, beta in enumerate(value):
        number = _real(beta, f"betas[{index}]")
        if not 0.0 <= number < 1.0:
            raise ValueError(
                f"Invalid beta parameter at index {index}: {beta} (betas must be in [0, 1), "
                "e.g. betas=(0.9, 0.999))."
            )
        checked.append(number)
    return tuple(checked)


def _flag(name: str):
    def check(value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}.")
        return bool(value)

    return check


# hyperparameter name -> check returning the normalized value (Python float/bool/tuple)
HYPERPARAMETER_CHECKS = {
    "lr": _non_negative("learning rate", "lr"),
    "eps": _non_negative("epsilon value", "eps"),
    "weight_decay": _non_negative("weight_decay value", "weight_decay"),
    "momentum": _non_negative("momentum value", "momentum"),
    "dampening": _any_real("dampening"),
    "alpha": _non_negative("alpha value", "alpha"),
    "rho": _unit_interval,
    "lr_decay": _non_negative("lr_decay value", "lr_decay"),
    "initial_accumulator_value": _non_negative("initial_accumulator_value value", "initial_accumulator_value"),
    "momentum_decay": _non_negative("momentum_decay value", "momentum_decay"),
    "betas": _betas,
    "initial_lr": _non_negative("initial learning rate", "initial_lr"),  # set by a schedule
    "nesterov": _flag("nesterov"),
    "amsgrad": _flag("amsgrad"),
    "centered": _flag("centered"),
    "maximize": _flag("maximize"),
    "decoupled_weight_decay": _flag("decoupled_weight_decay"),
}


# ----------------------------------------------------------------------- parameter lists
def _describe(thing) -> str:
    if isinstance(thing, np.ndarray):
        return f"an ndarray of shape {thing.shape}"
    return f"a {type(thing).__name__}"


def parameter_list(params, where: str) -> list[Parameter]:
    if isinstance(params, Parameter):
        return [params]
    if isinstance(params, (set, frozenset)):
        raise TypeError(
            f"{where} must be an ordered collection (a list), got a set: the order of a set changes "
            "between runs and state dicts refer to parameters by position."
        )
    if isinstance(params, np.ndarray) or not isinstance(params, Iterable):
        raise TypeError(
            f"{where} must be a list of depthlab Parameters, got {_describe(params)}. "
            "Wrap arrays as parameters: dl.Parameter(array)."
        )
    if callable(getattr(params, "parameters", None)):
        raise TypeError(f"{where} must be a list of depthlab Parameters, got a {type(params).__name__} (a network "
                        "or layer). Pass its parameters: net.parameters().")
    params = list(params)
    for index, param in enumerate(params):
        if not isinstance(param, Parameter):
            if callable(getattr(param, "parameters", None)):
                hint = "a layer: pass net.parameters() (or layer.parameters()), not the layers"
            elif isinstance(param, tuple) and len(param) == 2 and isinstance(param[1], Parameter):
                hint = "a (name, parameter) pair, as named_parameters() gives: pass net.parameters()"
            else:
                hint = "wrap arrays first: dl.Parameter(array) (the optimizer updates parameter.data in place)"
            raise TypeError(
                f"optimizer can only optimize depthlab Parameters, but {where}[{index}] is "
                f"{_describe(param)}: {hint}."
            )
    seen: set[int] = set()
    for index, param in enumerate(params):
        if id(param) in seen:
            raise ValueError(
                f"{where}[{index}] ({param!r}) appears more than once in {where}; pass each parameter once."
            )
        seen.add(id(param))
    return params


class _Known:
    """What ``step`` keeps about one parameter's data array: its shape and dtype (to check
    gradients against) and the workspace for them; valid while ``.data`` is that array."""

    __slots__ = ("data", "shape", "dtype", "work")

    def __init__(self, data: np.ndarray, work: defaultdict):
        self.data, self.shape, self.dtype, self.work = data, data.shape, data.dtype, work


class Optimizer:
    """Base class: parameter groups, state keyed by parameter, ``step`` over an update rule.

    Parameters
    ----------
    params : iterable of Parameter, or iterable of dict
        The parameters to optimize (e.g. ``net.parameters()``), or parameter groups in
        PyTorch's form ``[{"params": [w1, b1]}, {"params": [w2], "lr": 0.1}]``, where each
        group may override any hyperparameter. Plain arrays are refused: wrap them with
        ``dl.Parameter(array)``.
    defaults : dict
        Every hyperparameter and its default value.

    Notes
    -----
    Subclasses set ``state_type`` (the state's NamedTuple), ``init_state(param, hyper) ->
    State``, ``update(param, grad, state, hyper, work) -> State`` and ``work_buffers``
    (how many parameter-sized scratch arrays ``update`` needs), and may override
    ``_check_group`` for checks across hyperparameters.

    ``step`` skips parameters whose ``.grad`` is ``None`` (as PyTorch does): a layer that
    received no gradient is neither moved nor has its state (e.g. its step count)
    advanced. A gradient must have the parameter's shape and dtype (a NumPy scalar is taken
    for a 0-d parameter); every gradient is checked before any parameter moves, so a refused
    ``step`` changes nothing. The optimizer keeps no reference to a gradient between steps.
    ``state[p]`` reads by field name too (``state[p]["exp_avg"]``), as PyTorch's dicts do.
    """

    state_type = None
    init_state = None
    update = None
    work_buffers = 2
    _fixed_hyperparameters: Mapping = {}

    def __init__(self, params, defaults: Mapping):
        if self.update is None or self.init_state is None or self.state_type is None:
            raise TypeError(
                f"{type(self).__name__} has no update rule: Optimizer is a base class. Use SGD, Adam, ... "
                "or subclass it and set state_type, init_state, update and work_buffers."
            )
        self.defaults = self._check_hyperparameters(dict(defaults), "optimizer")
        self.param_groups: list[dict] = []
        self.state: dict[Parameter, tuple] = {}
        self._clear_caches()
        if isinstance(params, (Parameter, np.ndarray)) or not isinstance(params, Iterable):
            raise TypeError(
                f"params must be an iterable of depthlab Parameters or of parameter-group dicts, "
                f"got {_describe(params)}. Example: {type(self).__name__}(net.parameters()) or "
                f"{type(self).__name__}([dl.Parameter(array)])."
            )
        if isinstance(params, Mapping):
            raise TypeError(
                "params must be a list of parameters or a list of parameter-group dicts; got a single dict. "
                "Wrap it in a list: [{'params': [...], 'lr': ...}]."
            )
        if isinstance(params, (set, frozenset)):
            parameter_list(params, "params")  # refuses sets with an explanation
        groups = list(params)
        if len(groups) == 0:
            raise ValueError(f"optimizer got an empty parameter list; pass the parameters to train, e.g. "
                             f"{type(self).__name__}(net.parameters()) (a generator can be read only once).")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------ configuration
    def _check_hyperparameters(self, hyper: dict, where: str) -> dict:
        """Normalize and check every hyperparameter; errors say where the value came from."""
        try:
            for name, value in hyper.items():
                check = HYPERPARAMETER_CHECKS.get(name)
                if check is not None:
                    hyper[name] = check(value)
            hyper.update(self._fixed_hyperparameters)
            self._check_group(hyper)
        except (TypeError, ValueError) as error:
            if where == "optimizer":
                raise
            raise type(error)(f"{error} (in {where})") from None
        return hyper

    def _check_group(self, group: Mapping) -> None:
        """Checks that involve several hyperparameters (none by default)."""

    def _check_keys(self, group: Mapping, where: str) -> None:
        valid = set(self.defaults) | set(EXTRA_GROUP_KEYS) | {"params"}
        for key in group:
            if key not in valid:
                close = difflib.get_close_matches(str(key), sorted(self.defaults), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"{where} has an unknown key {key!r} for {type(self).__name__}. "
                    f"Valid hyperparameters: {', '.join(self.defaults)}.{hint}"
                )

    def _settings(self, index: int, group: dict):
        """``(update, hyper)`` for group ``index`` (see :meth:`_rule`), checking the group again
        when any of its values changed since it was last checked.

        A schedule, a callback or the user may write ``group["lr"]`` (or any hyperparameter)
        between steps; a NaN, negative or non-numeric value would turn every weight into NaN
        at the next step. The check runs at the point of use, but only when the group's values
        differ (by identity, then equality and type) from those last checked, or a parameter
        in its list was replaced: a step with unchanged settings pays a few tuple comparisons
        per group.
        """
        params = group.get("params")
        # the types too: True == 1.0 and an array == its value, but neither is a learning rate
        values = (tuple(group.items()), tuple(map(type, group.values())),
                  tuple(params) if isinstance(params, list) else None, _fast.enabled())
        seen = self._checked.get(id(group))
        try:
            if seen is not None and seen[0] is group and seen[1] == values:
                return seen[2]
        except (ValueError, TypeError):  # e.g. an array put where a number belongs: check it
            pass
        where = f"param_groups[{index}], changed after construction, at step {self._steps + 1}"
        self._check_keys(group, where)
        if not isinstance(params, list):
            raise TypeError(f"param_groups[{index}]['params'] must stay a list of Parameters, got {_describe(params)} "
                            f"(changed after construction; checked at step {self._steps + 1}).")
        try:
            parameter_list(params, f"param_groups[{index}]['params']")
        except (TypeError, ValueError) as error:
            raise type(error)(f"{error} (changed after construction; checked at step {self._steps + 1})") from None
        mine = {id(p) for p in params}
        for other, group_ in enumerate(self.param_groups):
            shared = [p for p in group_["params"] if id(p) in mine] if group_ is not group else []
            if shared:
                raise ValueError(
                    f"param_groups[{index}]['params'] and param_groups[{other}]['params'] both hold {shared[0]!r} "
                    f"(changed after construction; checked at step {self._steps + 1}); a parameter belongs to one "
                    "group, or it would be updated twice per step. Remove it from one of them."
                )
        missing = [name for name in self.defaults if name not in group]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(map(repr, missing))}; a group needs every hyperparameter of "
                             f"{type(self).__name__} ({', '.join(self.defaults)}).")
        checked = self._check_hyperparameters({k: v for k, v in group.items() if k != "params"}, where)
        group.update(checked)  # plain Python numbers, as at construction (a 0-d array's value, not the array)
        values = (tuple(group.items()), tuple(map(type, group.values())), tuple(params), _fast.enabled())
        rule = self._rule(group)
        self._checked[id(group)] = (group, values, rule)
        return rule

    def add_param_group(self, param_group: Mapping) -> None:
        """Add a group ``{"params": [...], <hyperparameter>: value, ...}``.

        Missing hyperparameters take the optimizer's defaults. Useful to unfreeze layers
        during training.
        """
        if not isinstance(param_group, Mapping):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}.")
        if "params" not in param_group:
            raise ValueError(
                "param_group must have a 'params' entry listing its parameters, e.g. "
                "{'params': [w, b], 'lr': 0.1}."
            )
        index = len(self.param_groups)
        group = dict(param_group)
        group["params"] = parameter_list(group["params"], f"param_groups[{index}]['params']")
        self._check_keys(group, f"param_groups[{index}]")
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        params = group.pop("params")
        group = self._check_hyperparameters(group, f"param_groups[{index}]")
        group = {"params": params, **group}
        taken = {id(p): number for number, g in enumerate(self.param_groups) for p in g["params"]}
        for position, param in enumerate(params):
            if id(param) in taken:
                raise ValueError(
                    f"some parameters appear in more than one parameter group: param_groups[{index}]['params']"
                    f"[{position}] ({param!r}) is already in param_groups[{taken[id(param)]}]. A parameter "
                    "belongs to one group; move it by editing the groups' 'params' lists instead."
                )
        self.param_groups.append(group)

    # ------------------------------------------------------------------------ stepping
    def step(self, closure=None):
        """Update every parameter that has a gradient, in place.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the loss (and writes the gradients); called first, its value is
            returned.

        Returns
        -------
        The closure's value, or None.
        """
        if closure is not None and not callable(closure):
            raise TypeError(
                f"closure must be a callable that recomputes the loss (and the gradients), or None; got "
                f"{type(closure).__name__} {closure!r}. Example: opt.step(lambda: loss_and_backward())."
            )
        loss = closure() if closure is not None else None
        rules = [self._settings(index, group) for index, group in enumerate(self.param_groups)]
        # every gradient is checked before any parameter moves: a refused step changes nothing
        plan = []
        try:
            for group, (update, hyper) in zip(self.param_groups, rules):
                flat = self._flat_group(group) if update is not self.update else None
                plan.append((update, hyper, flat, None if flat is not None else self._gradients(group)))
        except BaseException:
            for _, _, flat, _ in plan:  # a flat state gathered for this step was not used: gather it again next time
                if flat is not None:
                    flat.regather()
            raise
        self._steps += 1
        states, init_state = self.state, self.init_state
        for group, (update, hyper, flat, todo) in zip(self.param_groups, plan):
            if flat is not None:
                flat.step(update, hyper, states)
                continue
            for param, data, grad, work in todo:
                try:
                    state = states[param]
                except KeyError:
                    state = init_state(data, group)
                states[param] = update(data, grad, state, hyper, work)
        return loss

    def _gradients(self, group: dict) -> list[tuple]:
        """``(param, data, grad, workspace)`` for each parameter of ``group`` with a gradient,
        after checking that gradient's type, shape and dtype."""
        memory, ndarray, todo = self._known, np.ndarray, []
        for param in group["params"]:
            grad = param.grad
            if grad is None:
                continue
            data = param.data
            known = memory.get(param)
            if known is None or known.data is not data:
                known = self._know(param, data)
            if type(grad) is not ndarray or grad.shape != known.shape or grad.dtype != known.dtype:
                grad = self._odd_gradient(param)  # a usable one (a NumPy scalar for a 0-d parameter), or refused
            todo.append((param, data, grad, known.work))
        return todo

    def _rule(self, group: dict):
        """``(update, hyper)`` for a group: the fast rule with its scalars when ``rules.FAST_RULES``
        has one for this optimizer's rule and the group's settings, else ``(self.update, group)``.

        The scalars are remade only when one of the hyperparameters they read has changed
        (a schedule sets ``group["lr"]`` between steps).
        """
        fast = self._fast_rule if _fast.enabled() else None
        if fast is not None:
            values = fast.read(group)
            cached = self._scalars.get(id(group))
            if cached is None or cached[0] is not group or cached[1] != values:
                cached = self._scalars[id(group)] = (group, values, fast.scalars(*values))
            if cached[2] is not None:
                return fast.update, cached[2]
        return self.update, group

    def _flat_group(self, group: dict) -> FlatGroup | None:
        """The group's layout when its parameters and gradients lie end to end (see
        :mod:`depthlab._fast.flat`), its update then one array; None when the per-parameter loop
        must run. (Its gradients were checked when the layout was found.)"""
        params = group["params"]
        first = params[0].grad if params else None
        if first is None or getattr(first, "base", None) is None:  # separate gradient arrays
            return None
        flat = self._flat.get(id(group))
        if flat is None or flat[0] is not group or not flat[1].matches(params):
            previous = flat[1] if flat is not None and flat[0] is group else None
            flat = self._flat[id(group)] = (group, FlatGroup(params, self.work_buffers, previous))
        return flat[1] if flat[1].ready(self.state, self.init_state, group) else None

    def _know(self, param: Parameter, data: np.ndarray) -> _Known:
        """Remember a parameter's (new) data array with the workspace for its shape and dtype,
        after checking it can be updated in place and fits the state kept for it."""
        if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
            got = f"dtype {data.dtype}" if isinstance(data, np.ndarray) else type(data).__name__
            label = f"Parameter {param.name!r}" if param.name else "a parameter"  # its repr reads .data.shape
            raise TypeError(f"{label}'s .data must be a float ndarray (the optimizer updates it in place), got {got}. "
                            "Assign a float array, e.g. param.data = np.asarray(values, dtype=float).")
        if not data.flags.writeable:
            raise ValueError(f"{param!r}.data is read-only, so the optimizer cannot update it in place. "
                             "Give the parameter a writeable array, e.g. param.data = param.data.copy().")
        state = self.state.get(param)
        if state is not None:
            self.state[param] = self._fit_state(param, state, data)
        key = (data.shape, data.dtype)
        work = self._workspaces.get(key)
        if work is None:
            work = self._workspaces[key] = workspace(data.shape, data.dtype, self.work_buffers)
        known = self._known[param] = _Known(data, work)
        return known

    def _clear_caches(self) -> None:
        """Forget known data arrays, workspaces and prepared scalars (they are rebuilt on use)."""
        self._known: dict[Parameter, _Known] = {}
        self._workspaces: dict[tuple, defaultdict] = {}
        self._scalars: dict[int, tuple] = {}  # id(group) -> (group, values read, Scalars or None)
        self._flat: dict[int, tuple] = {}  # id(group) -> (group, its FlatGroup)
        self._checked: dict[int, tuple] = {}  # id(group) -> (group, its values when last checked, its rule)
        self._steps = getattr(self, "_steps", 0)  # step() calls, for messages
        self._fast_rule = FAST_RULES.get(self.update)

    def __getstate__(self) -> dict:
        # copies and pickles start without the caches (the workspaces hold closures)
        return {key: value for key, value in self.__dict__.items()
                if key not in ("_known", "_workspaces", "_scalars", "_flat", "_fast_rule", "_checked")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._clear_caches()

    @staticmethod
    def _fit_state(param: Parameter, state, data: np.ndarray):
        """The state of a parameter whose ``.data`` was replaced: its arrays in the new dtype
        (as ``load_state_dict`` casts them); a new shape is refused (the state would not fit)."""
        fields = state._asdict()
        for field, value in fields.items():
            if isinstance(value, np.ndarray) and value.shape != data.shape:
                raise ValueError(
                    f"{param!r}.data was replaced by an array of another shape ({value.shape} -> {data.shape}) "
                    f"but the optimizer's state for it ({field!r}) has the old shape. Drop the old state first "
                    "(del optimizer.state[param]) or build a new optimizer."
                )
            if isinstance(value, np.ndarray) and value.dtype != data.dtype:
                fields[field] = value.astype(data.dtype)
        return type(state)(**fields)

    @staticmethod
    def _odd_gradient(param: Parameter) -> np.ndarray:
        """A gradient that is not a plain ndarray of the parameter's shape and dtype: a NumPy
        scalar for a 0-d parameter (what arithmetic on a 0-d array gives) as a 0-d array, a
        plain subclass of ndarray as it is; anything else refused with the reason."""
        grad = param.grad
        if isinstance(grad, np.generic) and param.data.ndim == 0 and grad.dtype == param.data.dtype:
            return np.asarray(grad)
        if not isinstance(grad, np.ndarray):
            raise TypeError(f"{param!r}.grad must be an ndarray or None, got {type(grad).__name__}.")
        if isinstance(grad, np.ma.MaskedArray):
            raise TypeError(f"{param!r}.grad is a masked array; an optimizer would ignore its mask. Fill the masked "
                            "entries first: param.grad = grad.filled(0.0).")
        if grad.shape != param.data.shape:
            raise ValueError(
                f"{param!r} has a gradient of shape {grad.shape}; it must have the parameter's "
                f"shape {param.data.shape}."
            )
        if grad.dtype == param.data.dtype:
            return grad
        raise TypeError(
            f"{param!r} has a gradient of dtype {grad.dtype} but the parameter is {param.data.dtype}; "
            "depthlab never mixes dtypes silently. Compute the gradient in the parameter's dtype "
            f"(e.g. grad.astype(np.{param.data.dtype}))."
        )

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient: ``None`` (the default, as PyTorch) or zeros."""
        if not isinstance(set_to_none, (bool, np.bool_)):
            raise TypeError(f"set_to_none must be True (gradients become None) or False (zeroed in place), "
                            f"got {type(set_to_none).__name__} {set_to_none!r}.")
        for index, group in enumerate(self.param_groups):
            try:
                if set_to_none:  # one C-level pass: a Python loop costs more than a small network's update
                    deque(map(setattr, group["params"], repeat("grad"), repeat(None)), maxlen=0)
                else:
                    for param in group["params"]:
                        param.zero_grad(False)
            except AttributeError:  # something other than a Parameter was put in the group: say what
                parameter_list(group["params"], f"param_groups[{index}]['params']")
                raise

    # --------------------------------------------------------------------- state dict
    def state_dict(self) -> dict:
        """A plain, copied snapshot: ``{"state": {index: {...}}, "param_groups": [...]}``.

        Parameters are referred to by their position across ``param_groups`` (as PyTorch
        does); arrays are copies.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {key: value for key, value in group.items() if key != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for param in group["params"]:
                if param in self.state:
                    state[index[id(param)]] = {
                        field: value.copy() if isinstance(value, np.ndarray) else value
                        for field, value in self.state[param]._asdict().items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore hyperparameters and state saved by :meth:`state_dict` (arrays are copied).

        The optimizer must have the same number of groups, each with as many parameters
        as when it was saved; every state array must have its parameter's shape.
        """
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise TypeError("state_dict must be a dict with 'state' and 'param_groups', as made by state_dict().")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)):
            raise TypeError(f"loaded state dict's 'param_groups' must be a list of group dicts (as state_dict() "
                            f"makes), got {type(saved_groups).__name__}.")
        if not isinstance(saved_state, Mapping):
            raise TypeError(f"loaded state dict's 'state' must be a dict {{parameter index: state}} (as state_dict() "
                            f"makes), got {type(saved_state).__name__}.")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has a different number of parameter groups ({len(saved_groups)}) "
                f"than this optimizer ({len(self.param_groups)})."
            )
        by_index: dict[int, Parameter] = {}
        new_groups = []
        for number, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, Mapping) or not isinstance(saved.get("params"), (list, tuple)):
                raise ValueError(f"loaded param_groups[{number}] must be a dict with a 'params' list of indices.")
            for key in saved["params"]:
                if isinstance(key, (bool, np.bool_)) or not isinstance(key, (numbers.Integral, np.integer)) \
                        or key in by_index:
                    raise ValueError(
                        f"loaded param_groups[{number}]['params'] must list distinct integer indices (one per "
                        f"parameter, as state_dict() numbers them), got {list(saved['params'])!r}."
                    )
                by_index[key] = None
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"loaded state dict contains a parameter group that doesn't match the size of "
                    f"optimizer's group: group {number} has {len(saved['params'])} parameters saved, "
                    f"{len(group['params'])} here."
                )
            by_index.update(zip(saved["params"], group["params"]))
            hyper = {key: value for key, value in saved.items() if key != "params"}
            unknown = set(hyper) - set(self.defaults) - set(EXTRA_GROUP_KEYS)
            if unknown:
                raise ValueError(
                    f"loaded parameter group {number} has hyperparameters {sorted(unknown)} that "
                    f"{type(self).__name__} does not have; was it saved from another optimizer?"
                )
            hyper = self._check_hyperparameters({**self.defaults, **hyper}, f"loaded param_groups[{number}]")
            new_groups.append({"params": group["params"], **hyper})
        new_state = {}
        for key, saved in saved_state.items():
            if key not in by_index:
                raise ValueError(f"loaded state refers to parameter {key!r}, which no parameter group lists.")
            param = by_index[key]
            new_state[param] = self._restore_state(param, key, saved)
        self.param_groups[:] = new_groups
        self.state = new_state
        self._clear_caches()

    def _restore_state(self, param: Parameter, key, saved: Mapping):
        state_type = self.state_type
        fields = state_type._fields
        if not isinstance(saved, Mapping) or set(saved) != set(fields):
            got = sorted(saved) if isinstance(saved, Mapping) else type(saved).__name__
            raise ValueError(
                f"loaded state for parameter {key} has fields {got}, but {type(self).__name__} "
                f"keeps {list(fields)}; was it saved from another optimizer?"
            )
        values = {}
        for field in fields:
            value = saved[field]
            where = f"loaded state {field!r} for parameter {key}"
            if field in _SCALAR_FIELDS:
                values[field] = _scalar_field(field, value, where)
            elif value is None:
                values[field] = None
            else:
                array = np.asarray(value)
                if array.dtype.kind not in "fiu":
                    raise TypeError(f"{where} must be an array of real numbers, got dtype {array.dtype}.")
                if array.shape != param.data.shape:
                    raise ValueError(
                        f"{where} has shape {array.shape}, but the "
                        f"parameter {param!r} has shape {param.data.shape}."
                    )
                if not np.isfinite(array).all():
                    raise ValueError(f"{where} holds NaN or infinite values; the next step would spread them into "
                                     "the parameter. Load a state saved before training diverged.")
                if field in _NON_NEGATIVE_FIELDS and (array < 0).any():
                    raise ValueError(f"{where} is a running mean or sum of squares but holds negative values "
                                     f"(min {array.min()}); the next step would take its square root.")
                values[field] = np.array(array, dtype=param.data.dtype, copy=True)
        return state_type(**values)

    # ------------------------------------------------------------------------ display
    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for number, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {number} ({len(group['params'])} parameters)")
            lines.extend(f"    {key}: {value}" for key, value in group.items() if key != "params")
        lines.append(")")
        return "\n".join(lines)
