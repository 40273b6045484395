"""What every experiment shares: the ``Result`` record, typed configs, running and writing.

An experiment module (see :mod:`depthlab.lab.experiments`) defines a ``Config`` dataclass whose
field annotations are the types ``--set key=value`` is parsed into, and ``run(config,
progress) -> Result``. :func:`run_experiment` builds the config (defaults, then ``QUICK``
when ``quick``, then the overrides, then the seed), validates it, runs the experiment and
writes into its output folder::

    report.html     self-contained: figures inline, explanation, configuration, metrics, tables
    metrics.json    sorted keys, no timestamps: the same seed gives the same file, byte for byte
    NAME.png        every figure

Mistakes in what a user asked for raise :class:`ConfigError` (a ``ValueError``) with a
one-line message; anything raised inside ``run`` is the experiment's own failure and
propagates unchanged, so the command line can tell the two apart.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import numbers
import platform
import re
import sys
import tempfile
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import _files
from ..._checks import optional, require
from ..._fast import pair
from ...training.display import DeferredInterrupt
from .. import claims
from . import get as _get_module
from . import names as _names

DEFAULT_OUT = Path("reports")


class ConfigError(ValueError):
    """A user asked for something an experiment cannot do (bad key, type or value)."""


class OutputError(ConfigError):
    """The output folder cannot be used (it is a file, or it cannot be written)."""


@dataclass
class Result:
    """What an experiment's ``run`` returns.

    Attributes
    ----------
    name, title : str
        The experiment's CLI name and human title.
    config : dict
        ``dataclasses.asdict`` of the config it ran with (filled in when left empty).
    metrics : dict
        JSON-serializable scalars and short lists: the numbers tests check and the index shows.
    figures : dict of str -> matplotlib.figure.Figure
        Saved as ``NAME.png``, embedded in the report, then closed.
    tables : dict of str -> list of dict
        Optional tables for the report (rows as dicts, columns in first-seen order).
    explanation : str
        A few paragraphs for a student; simple HTML (<p>, <b>, <i>, <code>, <ul>, <li>).
    summary : str
        Plain text printed to the terminal: a few lines with the key numbers.
    out_dir : Path or None
        Set by :func:`run_experiment`: where the files went.
    files : dict of str -> Path
        Set by :func:`run_experiment`: ``"report"``, ``"metrics"`` and one entry per figure.
    seconds : float or None
        Set by :func:`run_experiment`: wall time of ``run`` (kept out of metrics.json).
    thumbnail : bytes or None
        Set by :func:`run_experiment`: a small PNG of the first figure, for the tour's index.
    headline : str
        Set by :func:`run_experiment`: the summary's first line before it was wrapped.
    claims : list of Claim
        Set by :func:`run_experiment`: the papers' claims this run tested, with verdicts
        (:mod:`depthlab.lab.claims`).
    thumbnails : dict of str -> bytes
        Set by :func:`run_experiment`: small PNGs of the figures the claims name.
    """

    name: str
    title: str
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    explanation: str = ""
    summary: str = ""
    out_dir: Path | None = None
    files: dict = field(default_factory=dict)
    seconds: float | None = None
    thumbnail: bytes | None = None
    headline: str = ""
    claims: list = field(default_factory=list)
    thumbnails: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        from ..result_html import result_text
        return result_text(self)

    def _repr_html_(self) -> str:  # Jupyter: summary, metrics and the figures
        from ..result_html import result_html
        return result_html(self)


# ----------------------------------------------------------------------------- progress

def no_progress(iterable=None, *, desc: str | None = None, total: int | None = None, **_):
    """The progress factory that shows nothing: returns ``iterable`` as it is."""
    return iterable if iterable is not None else range(total or 0)


def tqdm_progress(iterable=None, *, desc: str | None = None, total: int | None = None, **options):
    """A tqdm bar on stderr that appears only when the loop lasts longer than two seconds.

    ``delay=`` (seconds, default 2) changes when it appears; :func:`run_progress` lowers it
    for the later loops of a run that has already lasted that long.
    """
    package = optional("tqdm")
    if package is None:  # the 'lab' extra is missing: run silently
        return no_progress(iterable, desc=desc, total=total)
    tqdm = package.tqdm
    settings = {"file": sys.stderr, "delay": 2.0, "leave": False, "dynamic_ncols": True,
                "disable": None, **options}   # disable=None: no bar when stderr is not a terminal
    return tqdm(iterable, desc=desc, total=total, **settings)


SHOW_AFTER = 2.0   # seconds: a run that lasts longer shows a progress bar


def run_progress(started: float | None = None, clock=time.perf_counter):
    """A progress factory for one run: bars appear once the *run* has lasted ``SHOW_AFTER`` s.

    tqdm's own delay counts from each loop's start, so an experiment made of several short
    loops (depth-trainability's six trainings of 1.5 s each) would never show a bar. Here
    every bar opened after the run's first ``SHOW_AFTER`` seconds shows at once, and an
    earlier one after what is left of them.

    Parameters
    ----------
    started : float, optional
        ``clock()`` when the run began (default: now).
    clock : callable
        Seconds, monotonic (``time.perf_counter``; tests pass a fake one).
    """
    origin = clock() if started is None else started

    def progress(iterable=None, *, desc: str | None = None, total: int | None = None, **options):
        delay = max(0.0, SHOW_AFTER - (clock() - origin))
        return tqdm_progress(iterable, desc=desc, total=total, **{"delay": delay, **options})

    return progress


@contextlib.contextmanager
def ticks(progress, total: int, desc: str):
    """One bar advanced by hand over work that is not one loop: ``tick()`` after each unit.

    ``with base.ticks(progress, 90, NAME) as tick: ... tick()``; units left over when the
    block ends (a run that stopped early) are counted then, so the bar always closes.
    """
    bar = iter(iterate(progress, range(total), desc=desc, total=total))

    def tick() -> None:
        next(bar, None)

    try:
        yield tick
    finally:
        for _ in bar:
            pass


def iterate(progress, iterable, desc: str, total: int | None = None):
    """``progress(iterable, desc=..., total=...)``, or the iterable itself when progress is None."""
    return (progress or no_progress)(iterable, desc=desc, total=total)


def _resolve_progress(progress):
    if progress is True:
        return run_progress()
    if progress is False or progress is None:
        return None
    if callable(progress):
        return progress
    raise TypeError(f"progress must be True, False, None or a callable factory, got {type(progress).__name__}.")


# ----------------------------------------------------------------------------- typed configs

@dataclass(frozen=True)
class Key:
    """One configurable field: its name, annotation and default."""

    name: str
    type: object
    default: object

    def describe(self) -> str:
        return f"{self.name} ({type_name(self.type)}, default {format_value(self.default)})"


def config_keys(module) -> list[Key]:
    """The ``--set`` keys of an experiment module, from its ``Config`` annotations."""
    hints = typing.get_type_hints(module.Config)
    keys = []
    for f in dataclasses.fields(module.Config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        keys.append(Key(f.name, hints[f.name], default))
    return keys


def describe_keys(module) -> str:
    """"width (int, default 80), depths (tuple[int, ...], default 5,50), ...": one line."""
    return ", ".join(key.describe() for key in config_keys(module))


def type_name(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + "|".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else type_name(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"tuple[{type_name(args[0])}, ...]"
        return f"tuple[{', '.join(type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def format_value(value) -> str:
    """How a config value is written on the command line: tuples as ``a,b,c``."""
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(v) for v in value)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _parse_bool(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("expected true or false")


def _parse_int(value):
    if isinstance(value, (bool, np.bool_)):
        raise ValueError("expected an int, not a boolean")
    if isinstance(value, (numbers.Integral, np.integer)):
        return int(value)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
    raise ValueError("expected an int")


def parse_float(value):
    if isinstance(value, (bool, np.bool_)):
        raise ValueError("expected a number, not a boolean")
    if isinstance(value, (numbers.Real, np.floating, np.integer)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(_fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise ValueError("expected a number (e.g. 0.5, 1e-3 or 2/80)") from None
    else:
        raise ValueError("expected a number")
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _fraction(text: str) -> float:
    """'2/80' -> 0.025; plain numbers as float()."""
    if "/" in text:
        top, bottom = text.split("/", 1)
        return float(top) / float(bottom)
    return float(text)


def _parse_str(value):
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ValueError("expected a non-empty string")


_SCALAR_PARSERS = {bool: _parse_bool, int: _parse_int, float: parse_float, str: _parse_str}


def _split(value) -> list:
    if isinstance(value, str):
        text = value.strip().strip("()[]")
        return [part for part in (p.strip() for p in text.split(",")) if part] if text else []
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    return [value]


def parse_value(annotation, value):
    """Convert ``value`` (a string from ``--set`` or a Python object) to ``annotation``.

    Raises ``ValueError`` saying what was expected.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _SCALAR_PARSERS:
        return _SCALAR_PARSERS[annotation](value)
    if origin is typing.Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and value.strip() == str(choice)):
                return choice
        raise ValueError(f"expected one of {', '.join(map(str, args))}")
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            if type(None) in args:
                return None
        for option in (a for a in args if a is not type(None)):
            try:
                return parse_value(option, value)
            except ValueError:
                continue
        raise ValueError(f"expected {type_name(annotation)}")
    if origin is tuple:
        items = _split(value)
        if len(args) == 2 and args[1] is Ellipsis:
            if not items:
                raise ValueError("expected at least one comma-separated value")
            return tuple(parse_value(args[0], item) for item in items)
        if len(items) != len(args):
            raise ValueError(f"expected {len(args)} comma-separated values")
        return tuple(parse_value(a, item) for a, item in zip(args, items))
    raise TypeError(f"config fields of type {type_name(annotation)} are not supported by --set")


def check_range(config, name: str, *, low=None, high=None, low_open: bool = False) -> None:
    """For ``validate(config)``: every value of field ``name`` (or of its tuple) within bounds.

    Raises ``ValueError`` such as "depth must be >= 1, got -3".
    """
    value = getattr(config, name)
    for item in value if isinstance(value, tuple) else (value,):
        if item is None:
            continue
        if low is not None and (item <= low if low_open else item < low):
            raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {format_value(value)}")
        if high is not None and item > high:
            raise ValueError(f"{name} must be <= {high:g}, got {format_value(value)}")


def check_choices(config, name: str, choices) -> None:
    """For ``validate(config)``: every value of field ``name`` (or of its tuple) is one of ``choices``."""
    value = getattr(config, name)
    for item in value if isinstance(value, tuple) else (value,):
        if item not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {item!r}")


def experiment_module(name_or_module):
    if isinstance(name_or_module, types.ModuleType):
        return name_or_module
    try:
        return _get_module(name_or_module)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def make_config(experiment, overrides: dict | None = None, seed: int | None = None, quick: bool = False):
    """Build and validate an experiment's Config: defaults, QUICK, overrides, then seed.

    Parameters
    ----------
    experiment : str or module
    overrides : dict of str -> str or value
        ``--set`` pairs; strings are parsed by the field's type (``"5,50"`` for a tuple).
    seed : int, optional
        Replaces ``config.seed``.
    quick : bool
        Apply the module's ``QUICK`` overrides first.

    Raises
    ------
    ConfigError
        An unknown key (the message lists every key with its type and default), a value of
        the wrong type, or a value the experiment's ``validate`` refuses.
    """
    module = experiment_module(experiment)
    keys = {key.name: key for key in config_keys(module)}
    values = {}
    layers = ([("QUICK", getattr(module, "QUICK", {}))] if quick else []) + [("--set", overrides or {})]
    for origin, pairs in layers:
        for key, raw in pairs.items():
            if key not in keys:
                dashed = key.replace("-", "_")
                if dashed in keys:
                    key = dashed
                else:
                    raise ConfigError(f"unknown --set key {key!r} for {module.NAME}; valid keys: {describe_keys(module)}")
            try:
                values[key] = parse_value(keys[key].type, raw)
            except ValueError as error:
                raise ConfigError(f"{origin} {key}={format_value(raw)}: {error} "
                                  f"({key} is {type_name(keys[key].type)})") from None
    if seed is not None:
        if "seed" not in keys:
            raise ConfigError(f"experiment {module.NAME} has no seed")
        try:
            values["seed"] = _parse_int(seed)
        except ValueError:
            raise ConfigError(f"--seed must be a non-negative int, got {seed!r}") from None
    config = module.Config(**values)
    if "seed" in keys and config.seed < 0:
        raise ConfigError(f"seed must be a non-negative int, got {config.seed}")
    validate = getattr(module, "validate", None)
    if validate is not None:
        try:
            validate(config)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"invalid configuration for {module.NAME}: {error}") from None
    return config


# ----------------------------------------------------------------------------- output folder

def prepare_out_dir(path) -> Path:
    """Create ``path`` if needed and check that files can be written there.

    Raises
    ------
    OutputError
        ``path`` is a file, cannot be created, or cannot be written.
    """
    if not str(path).strip():
        raise OutputError(f"the output folder is empty ({str(path)!r}); give a folder name, e.g. --out reports/run1 "
                          "(use --out . for the current folder)")
    path = Path(path)
    try:
        is_file = path.exists() and not path.is_dir()
    except (OSError, ValueError) as error:   # a name too long for the file system, a NUL byte
        raise OutputError(f"cannot use output folder {_shown(path)}: {getattr(error, 'strerror', None) or error}; "
                          "choose a shorter or plainer --out name") from None
    if is_file:
        raise OutputError(f"output folder {str(path)!r} is a file; choose another --out folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"cannot create output folder {str(path)!r}: a file is in the way") from None
    except OSError as error:
        raise OutputError(f"cannot create output folder {_shown(path)}: {error.strerror or error}") from None
    except ValueError as error:   # a NUL byte in the name
        raise OutputError(f"cannot create output folder {_shown(path)}: {error}; choose a plainer --out name") from None
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".depthlab-write-test-"):
            pass
    except OSError as error:
        raise OutputError(f"cannot write into output folder {str(path)!r}: {error.strerror or error}") from None
    return path


def _shown(path) -> str:
    """A path for a one-line message: quoted, its middle elided beyond 80 characters."""
    text = repr(str(path))
    return text if len(text) <= 80 else f"{text[:38]}…{text[-38:]} ({len(str(path))} characters)"


# ----------------------------------------------------------------------------- JSON and figures

def jsonable(value, where: str = "metrics"):
    """Plain JSON data: numpy scalars to Python, tuples to lists, non-finite floats to strings."""
    if isinstance(value, dict):
        converted = {}
        for k, v in value.items():
            if str(k) in converted:  # JSON keys are strings: 1 and "1" would become one key
                raise TypeError(f"{where} has two keys that are both {str(k)!r} as text (JSON's keys are strings); "
                                "rename one of them.")
            converted[str(k)] = jsonable(v, f"{where}[{k!r}]")
        return converted
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return jsonable(value.item(), where)
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(list(value))]
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (numbers.Integral, np.integer)):
        return int(value)
    if isinstance(value, (numbers.Real, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else ("nan" if math.isnan(number) else ("inf" if number > 0 else "-inf"))
    raise TypeError(f"{where} is a {type(value).__name__}, which metrics.json cannot hold; "
                    "use numbers, strings, booleans and short lists.")


def metrics_json(metrics: dict) -> str:
    """metrics.json's text: sorted keys, two-space indent, a final newline."""
    return json.dumps(jsonable(metrics), sort_keys=True, indent=2, allow_nan=False) + "\n"


def _file_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._")
    return stem or "figure"


def _close(figure) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(figure)


def versions() -> dict:
    """Versions of what produced a report."""
    from ... import __version__
    found = {"depthlab": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for package in ("scipy", "matplotlib"):
        module = sys.modules.get(package)
        if module is not None:
            found[package] = module.__version__
    return found


def command_line(name: str, config, quick: bool) -> str:
    """The ``depthlab run`` command that reproduces a config."""
    module = experiment_module(name)
    base = module.Config(**{k: v for k, v in (getattr(module, "QUICK", {}) if quick else {}).items()})
    parts = ["depthlab", "run", name] + (["--quick"] if quick else [])
    for key in config_keys(module):
        value = getattr(config, key.name)
        if key.name == "seed":
            parts += ["--seed", str(value)]
        elif value != getattr(base, key.name):
            parts += ["--set", f"{key.name}={format_value(value)}"]
    return " ".join(parts)


def write_outputs(result: Result, module, out_dir: Path, *, config=None, quick: bool = False,
                  index_href: str | None = None, progress=None) -> dict:
    """Write ``report.html``, ``metrics.json`` and the figures of ``result`` into ``out_dir``.

    Everything is rendered first and then written, each file atomically (see
    :mod:`depthlab._files`) and with Ctrl-C held until the last one is written: an earlier
    report in ``out_dir`` is replaced whole or not at all, never left half-written.
    """
    from .. import plots, report

    contents, pngs = {}, {}
    claimed = {claim.figure for claim in result.claims}
    figures = iterate(progress, list(result.figures.items()), desc=f"{result.name}: drawing figures")
    for index, (name, figure) in enumerate(figures):
        stem = _file_stem(name)
        pixels = plots.render(figure)
        pngs[stem] = plots.encode_png(pixels)
        if index == 0:
            result.thumbnail = plots.encode_png(pixels, max_width=420)
        if name in claimed or stem in claimed:
            result.thumbnails[stem] = plots.encode_png(pixels, max_width=420)
        _close(figure)
        contents[stem] = (f"{stem}.png", pngs[stem])
    contents["metrics"] = ("metrics.json", metrics_json(result.metrics))
    context = {
        "summary_line": getattr(module, "SUMMARY", ""),
        "reproduces": getattr(module, "REPRODUCES", ""),
        "versions": versions(),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "seed": result.config.get("seed"),
        "command": command_line(result.name, config, quick) if config is not None else "",
        "seconds": result.seconds,
        "quick": quick,
        "index_href": index_href,
    }
    contents["report"] = ("report.html", report.render_experiment(result, pngs, context))
    files = {}
    with DeferredInterrupt() as interrupt:
        for key, (name, data) in contents.items():
            write = _files.write_bytes if isinstance(data, bytes) else _files.write_text
            files[key] = write(out_dir / name, data)
    interrupt.honour()
    return files


def finished(history):
    """``history`` of a :func:`~depthlab.fit` that ran to its end; after Ctrl-C, ``KeyboardInterrupt``.

    ``fit`` returns the history so far when Ctrl-C stops it (as Keras does), marked
    ``history.interrupted``; an experiment must stop then, not read a short (or empty) history.
    """
    if getattr(history, "interrupted", False):
        raise KeyboardInterrupt(history.message)
    return history


# ----------------------------------------------------------------------------- running

@contextlib.contextmanager
def one_blas_thread():
    """Run with a single BLAS thread (threadpoolctl), restoring the previous limits after.

    The experiments multiply small matrices (at most ~1000 wide), where a second BLAS thread
    gains little and costs much once PyTorch's OpenMP threads share the cores too: measured on
    2 cores, the whole tour took 66 s with one thread and 175 s with two. Parallelism across
    runs comes from :func:`depthlab.sweep`'s worker processes instead.
    """
    with pair.one_blas_thread():  # an optional speed-up: without threadpoolctl the defaults stay
        yield


def run_experiment(name: str, overrides: dict | None = None, seed: int | None = None, quick: bool = False,
                   out_dir=None, progress=True, index_href: str | None = None) -> Result:
    """Run one experiment and write its report.

    Parameters
    ----------
    name : str
        A name from :func:`depthlab.lab.experiments.names`.
    overrides : dict, optional
        Config values by key (strings are parsed as ``--set`` does).
    seed : int, optional
        Replaces the config's seed.
    quick : bool
        Small sizes (the module's ``QUICK``): seconds instead of tens of seconds.
    out_dir : path, optional
        Default ``reports/NAME``.
    progress : bool or callable
        True: tqdm bars on stderr for loops longer than ~2 s; False: silent; or a factory
        ``progress(iterable, desc=..., total=...)``.
    index_href : str, optional
        A link from the report back to a tour's index (set by :func:`run_tour`).

    Returns
    -------
    Result
        With ``out_dir``, ``files`` and ``seconds`` filled in (figures already written and closed).

    Raises
    ------
    ConfigError
        Unknown experiment, bad overrides or seed, unusable output folder, or (as
        :class:`OutputError`) a report that could not be written (e.g. a full disk), each file
        left as it was or replaced whole. Anything the experiment itself raises propagates
        unchanged.
    """
    module = experiment_module(name)
    config = make_config(module, overrides, seed, quick)
    _require_figures()
    out = prepare_out_dir(DEFAULT_OUT / module.NAME if out_dir is None else out_dir)
    progress = _resolve_progress(progress)
    start = time.perf_counter()
    with one_blas_thread():
        result = module.run(config, progress=progress)
    result.seconds = time.perf_counter() - start
    if not isinstance(result, Result):
        raise TypeError(f"{module.NAME}.run returned {type(result).__name__}, not a Result")
    if not result.config:
        result.config = dataclasses.asdict(config)
    record_run(result, config)
    result.claims = claims.of(module, result.metrics)
    result.headline = next((line.strip() for line in result.summary.splitlines() if line.strip()), "")
    result.summary = fit_lines(result.summary)
    result.out_dir = out
    try:
        result.files = write_outputs(result, module, out, config=config, quick=quick, index_href=index_href,
                                     progress=progress)
    except OSError as error:  # a full disk, a folder removed meanwhile: the user's to fix, not a crash
        raise OutputError(f"cannot write the report into {str(out)!r}: {error.strerror or error}; no file there "
                          "was left half-written (each is the previous one or the new one)") from None
    return result


def _require_figures() -> None:
    """Reports are made of figures: without matplotlib, say so before computing anything."""
    from .. import plots

    require("matplotlib.figure", plots.FIGURES)


TERMINAL_WIDTH = 80


def record_run(result: Result, config) -> None:
    """Put the full configuration and the seed into ``result.metrics`` (so into metrics.json).

    ``metrics["config"]`` is every config field (``dataclasses.asdict``) and
    ``metrics["seed"]`` the seed (None for an experiment without one): a metrics.json alone
    says what produced it. An experiment's own metric of either name is refused.
    """
    for key in ("config", "seed"):
        if key in result.metrics:
            raise ValueError(f"{result.name}'s metrics already hold {key!r}, which run_experiment fills in with "
                             "the run's configuration; rename that metric.")
    settings = dataclasses.asdict(config)
    result.metrics["config"] = settings
    result.metrics["seed"] = settings.get("seed")


def fit_lines(text: str, width: int = TERMINAL_WIDTH) -> str:
    """``text`` with every line wrapped to ``width`` columns (a terminal's 80).

    A wrapped line's continuation keeps its indentation plus two spaces; a word longer than
    the line is broken.
    """
    import textwrap

    lines = []
    for line in text.splitlines():
        if len(line) <= width:
            lines.append(line)
            continue
        indent = line[:len(line) - len(line.lstrip())]
        lines += textwrap.wrap(line.strip(), width=width, initial_indent=indent, subsequent_indent=indent + "  ",
                               break_on_hyphens=False)
    return "\n".join(lines)


@dataclass
class TourEntry:
    """One experiment of a tour: what the index shows about it."""

    name: str
    title: str
    summary_line: str
    reproduces: str
    ok: bool
    seconds: float = 0.0
    finding: str = ""
    key_metrics: dict = field(default_factory=dict)
    report: str = ""           # path of report.html relative to the index
    thumbnail: bytes | None = None
    error: str = ""
    claims: list = field(default_factory=list)       # Claim objects
    thumbnails: dict = field(default_factory=dict)   # figure stem -> small PNG


@dataclass
class Tour:
    """What :func:`run_tour` did: the index path and one entry per experiment."""

    index: Path
    entries: list[TourEntry]

    @property
    def failed(self) -> list[str]:
        return [entry.name for entry in self.entries if not entry.ok]


def key_metrics(module, metrics: dict, limit: int = 4) -> dict:
    """The metrics the index shows: the module's ``KEY_METRICS``, else its first scalar ones."""
    chosen = getattr(module, "KEY_METRICS", None)
    if chosen:
        return {k: metrics[k] for k in chosen if k in metrics}
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, (list, tuple, dict, np.ndarray))}
    return dict(list(scalars.items())[:limit])




def run_tour(out_dir=None, *, quick: bool = False, seed: int | None = None, names=None, progress=True,
             on_done=None) -> Tour:
    """Run every experiment of the tour into ``out_dir/NAME`` and write ``out_dir/index.html``.

    An experiment that raises is recorded as failed (with its error) and the others go on.

    Parameters
    ----------
    out_dir : path, default ``reports``
    quick, seed, progress
        As in :func:`run_experiment`.
    names : list of str, optional
        Default :data:`depthlab.lab.experiments.TOUR`.
    on_done : callable, optional
        ``on_done(position, total, entry, exception)`` after each experiment (the CLI prints
        a line; ``exception`` is None unless it failed).

    Raises
    ------
    ConfigError
        The output folder cannot be used, or ``names`` holds an unknown name.
    """
    from .. import report
    from . import TOUR

    names = list(TOUR if names is None else names)
    for name in names:  # before the folder is made: a typo leaves nothing behind
        _module_path_exists(name)
    _require_figures()
    out = prepare_out_dir(DEFAULT_OUT if out_dir is None else out_dir)
    started = time.perf_counter()
    entries = []
    for position, name in enumerate(names, start=1):
        entry = TourEntry(name, name, "", "", ok=False, report=f"{name}/report.html")
        failure = None
        try:
            module = _get_module(name)      # an experiment that cannot be imported is a failed entry
            entry.title = getattr(module, "TITLE", name)
            entry.summary_line = getattr(module, "SUMMARY", "")
            entry.reproduces = getattr(module, "REPRODUCES", "")
            result = run_experiment(name, seed=seed, quick=quick, out_dir=out / name, progress=progress,
                                    index_href="../index.html")
            entry.ok = True
            entry.seconds = result.seconds or 0.0
            entry.finding = result.headline
            entry.key_metrics = jsonable(key_metrics(module, result.metrics))
            entry.thumbnail = getattr(result, "thumbnail", None)
            entry.claims = list(result.claims)
            entry.thumbnails = dict(result.thumbnails)
        except Exception as error:  # one experiment's crash must not stop the tour
            failure = error
            entry.error = f"{type(error).__name__}: {error}".splitlines()[0]
            entry.report = ""
        entries.append(entry)
        if on_done is not None:
            on_done(position, len(names), entry, failure)
    meta = {
        "versions": versions(),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "quick": quick,
        "seed": seed,
        "seconds": time.perf_counter() - started,
    }
    with DeferredInterrupt() as interrupt:
        index = _files.write_text(out / "index.html", report.render_index(entries, meta))
    interrupt.honour()
    return Tour(index, entries)


def _module_path_exists(name: str) -> None:
    if name not in _names():
        experiment_module(name)  # raises ConfigError listing the names
