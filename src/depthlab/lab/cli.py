"""The ``depthlab`` command: experiments, the report tour, the probe and the theory.

    depthlab list
    depthlab run NAME [--set key=value ...] [--seed N] [--out DIR] [--quick]
    depthlab report [--out DIR] [--quick]
    depthlab probe --depth 50 --width 80 --activation relu --init normal --sigma2 1.0
    depthlab theory --activation tanh --bias-variance 0.05
    depthlab explore [--port N] [--host 127.0.0.1] [--no-browser]

Subcommands live in one table, :data:`COMMANDS` (name -> :class:`Command`); adding one is
adding an entry. A user's mistake (unknown experiment, bad ``--set`` key or value, an
unusable output folder) ends with exit code 2 and one line on stderr, never a traceback; a
crash inside an experiment is reported as such (exit code 1). Ctrl-C stops any command with
exit code 130 and one line on stderr; every file written before it stays whole.
"""
from __future__ import annotations

import argparse
import importlib
import math
import sys
from pathlib import Path
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .. import __version__
from .._checks import MissingExtra

PROG = "depthlab"


class UsageError(Exception):
    """A mistake on the command line: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors become one line (no usage dump) and reach :func:`main`."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


# ----------------------------------------------------------------------------- argument types

def _number(kind, text: str, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _number(int, text, "a positive int")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int (>= 1), got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(int, text, "a non-negative int")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative int, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text, "a positive number")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(float, text, "a non-negative number")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value.strip()


# ----------------------------------------------------------------------------- list

def _configure_list(parser):
    parser.add_argument("--keys", action="store_true", help="also list each experiment's --set keys")


def _list(args) -> int:
    from . import experiments
    from .experiments import base

    width = max(map(len, experiments.names()))
    for name in experiments.names():
        try:
            module = experiments.get(name)
            print(f"{name:<{width}}  {module.SUMMARY}")
            if args.keys:
                for key in base.config_keys(module):
                    print(f"{'':<{width}}    --set {key.describe()}")
        except Exception as error:  # an experiment that cannot be imported is still listed
            print(f"{name:<{width}}  (unavailable: {type(error).__name__}: {error})")
    return 0


# ----------------------------------------------------------------------------- run

def _configure_run(parser):
    from . import limits

    parser.description = f"{parser.description}. {limits.RUN_CAPS}."
    parser.add_argument("name", metavar="NAME", help="an experiment (see `depthlab list`)")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", type=key_value, action="append",
                        default=[], help="override a config value (repeatable); tuples as a,b,c")
    parser.add_argument("--seed", type=non_negative_int, help="random seed (default: the experiment's)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: reports/NAME)")
    parser.add_argument("--quick", action="store_true", help="small sizes: runs in a few seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run(args) -> int:
    from .experiments import base

    try:
        module = base.experiment_module(args.name)
    except base.ConfigError as error:
        raise UsageError(f"{PROG} run: {error}") from None
    keys = [key.replace("-", "_") for key, _ in args.overrides]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise UsageError(f"{PROG} run: --set {repeated[0]} is given more than once; give each key once")
    if args.seed is not None and "seed" in keys:
        raise UsageError(f"{PROG} run: the seed is given both with --set seed=… and --seed; keep one")
    try:
        result = base.run_experiment(module.NAME, dict(args.overrides), seed=args.seed, quick=args.quick,
                                     out_dir=args.out, progress=not args.no_progress)
    except base.ConfigError as error:
        raise UsageError(f"{PROG} run: {error}") from None
    except MissingExtra as error:
        raise UsageError(f"{PROG} run: experiment {module.NAME}: {error}") from None
    except MemoryError as error:
        raise UsageError(f"{PROG} run: the sizes given need more memory than this machine has ({_one_line(error)}); "
                         "use smaller values") from None
    except Exception as error:
        traceback.print_exc()
        print(f"{PROG} run: experiment {module.NAME} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(result.summary.rstrip())
    print(f"wrote {result.files['report']} ({result.seconds:.1f} s)")
    return 0


# ----------------------------------------------------------------------------- report

def _configure_report(parser):
    parser.add_argument("--out", metavar="DIR", default="reports", help="output folder (default: reports)")
    parser.add_argument("--quick", action="store_true", help="every experiment at small sizes (seconds each)")
    parser.add_argument("--seed", type=non_negative_int, help="one seed for every experiment")
    parser.add_argument("--only", metavar="NAME", action="append",
                        help="run only these experiments (repeatable; default: the whole tour)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _report(args) -> int:
    from .experiments import base

    def done(position, total, entry, error):
        line = f"[{position:>2}/{total}] {entry.name:<22} "
        if entry.ok:
            line += f"ok {entry.seconds:5.1f} s  "
            room = base.TERMINAL_WIDTH - len(line)     # the finding is cut to fit an 80-column terminal
            line += entry.finding if len(entry.finding) <= room else entry.finding[:room - 1] + "…"
        else:
            line += f"FAILED  {entry.error}"
        print(line, flush=True)
        if error is not None and not isinstance(error, (MissingExtra, base.ConfigError)):  # its line says it all
            traceback.print_exception(error, file=sys.stderr)

    chosen = [name.strip().lower().replace("_", "-") for name in args.only or []]
    repeated = sorted({name for name in chosen if chosen.count(name) > 1})
    if repeated:
        raise UsageError(f"{PROG} report: --only {repeated[0]} is given more than once; name each experiment once")
    try:
        tour = base.run_tour(args.out, quick=args.quick, seed=args.seed, names=args.only,
                             progress=not args.no_progress, on_done=done)
    except base.ConfigError as error:
        raise UsageError(f"{PROG} report: {error}") from None
    if tour.failed:
        print(f"{len(tour.failed)} experiment(s) failed: {', '.join(tour.failed)}", file=sys.stderr)
    print(Path(tour.index).resolve())  # absolute: a terminal makes it a link
    return 1 if tour.failed else 0


# ----------------------------------------------------------------------------- probe

def _configure_probe(parser):
    from . import limits

    parser.description = (f"{parser.description}. Sizes are capped so a typed number cannot take hours or all the "
                          f"memory: {limits.PROBE_CAPS}.")
    parser.add_argument("--depth", type=positive_int, default=50,
                        help=f"hidden layers K (default 50, at most {limits.MAX_UNITS:,})")
    parser.add_argument("--width", type=positive_int, default=80,
                        help=f"units per hidden layer D (default 80, at most {limits.MAX_UNITS:,})")
    parser.add_argument("--activation", default="relu", help="hidden activation (default relu)")
    parser.add_argument("--init", default="normal",
                        help="weight initializer: 'normal' (N(0, σ²) with --sigma2) or a name such as he_normal "
                             "('critical': the edge of chaos of --activation at σ_b² = 0)")
    parser.add_argument("--sigma2", type=positive_float,
                        help=f"σ²_Ω of --init normal (default 1.0, at most {limits.MAX_VARIANCE:g})")
    parser.add_argument("--bias-variance", type=non_negative_float, default=0.0,
                        help=f"biases drawn from N(0, σ_b²) (default 0: zero biases; at most {limits.MAX_VARIANCE:g})")
    parser.add_argument("--samples", type=positive_int, default=1000,
                        help=f"batch of N(0, 1) inputs (default 1000, at least 2, at most {limits.MAX_SAMPLES:,})")
    parser.add_argument("--in-features", type=positive_int, default=1,
                        help=f"input width D_i (default 1, as seed 000; at most {limits.MAX_UNITS:,})")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of weights and inputs (default 0)")
    parser.add_argument("--block", choices=("plain", "preact", "postact"), default="plain",
                        help="plain (an MLP, default) or a residual network of --depth blocks of two layers: "
                             "preact (ResNet v2 order) or postact (the original ResNet order)")
    parser.add_argument("--norm", choices=("none", "batch", "layer"), default="none",
                        help="batch or layer normalization after every Linear layer (in every residual branch); "
                             "default none")
    parser.add_argument("--residual-scale", type=_residual_scale, default=None,
                        help="s, the weight of each residual branch: a number >= 0 (0: SkipInit) or "
                             "'1/sqrt(depth)' (default 1; with --block preact or postact)")


def _residual_scale(text: str):
    from .probe_network import residual_scale

    try:
        return residual_scale(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _check_probe_sizes(args) -> None:
    """The caps of :mod:`depthlab.lab.limits` on what ``probe`` would allocate and compute."""
    from . import limits
    from .probe_network import linear_layers

    try:
        for flag in ("depth", "width", "in_features"):
            limits.check_at_most(getattr(args, flag), limits.MAX_UNITS, "--" + flag.replace("_", "-"))
        limits.check_at_most(args.samples, limits.MAX_SAMPLES, "--samples")
        for flag in ("sigma2", "bias_variance"):
            limits.check_at_most(getattr(args, flag), limits.MAX_VARIANCE, "--" + flag.replace("_", "-"),
                                 "beyond it the signal leaves float64's range within a few layers")
        layers = linear_layers(args.depth, args.block)
        held = layers * max(args.width, args.in_features) * args.samples
        limits.check_product(held, limits.MAX_ENTRIES, "--depth × --width × --samples", "numbers held",
                             "--depth, --width or --samples")
        work = args.samples * (layers * args.width ** 2 + args.in_features * args.width)
        limits.check_product(work, limits.MAX_WORK, "--depth × --width² × --samples", "multiply-adds",
                             "--depth, --width or --samples")
    except ValueError as error:
        raise UsageError(f"{PROG} probe: {error}") from None
    if args.samples < 2:
        raise UsageError(f"{PROG} probe: --samples must be at least 2 (statistics over the batch), got {args.samples}")


def _probe(args) -> int:
    import numpy as np

    import depthlab as dl

    from . import probe_network

    _check_probe_sizes(args)
    if args.init != "normal" and args.sigma2 is not None:
        raise UsageError(f"{PROG} probe: --sigma2 sets σ²_Ω of --init normal; it cannot be combined with "
                         f"--init {args.init}")
    if args.block == "plain" and args.residual_scale is not None:
        raise UsageError(f"{PROG} probe: --residual-scale weighs residual branches; add --block preact or postact")
    rng = np.random.default_rng(args.seed)
    try:
        net = probe_network.build(depth=args.depth, width=args.width, activation=args.activation, init=args.init,
                                  sigma2=args.sigma2, bias_variance=args.bias_variance, block=args.block,
                                  norm=args.norm, in_features=args.in_features, rng=rng,
                                  residual_scale=1.0 if args.residual_scale is None else args.residual_scale)
        x = rng.standard_normal((args.samples, args.in_features))
        report = dl.probe(net, x)
    except (ValueError, TypeError) as error:
        raise UsageError(f"{PROG} probe: {_one_line(error)}") from None
    except ArithmeticError as error:     # a sum of squares beyond float64 (e.g. --residual-scale 1e300)
        raise UsageError(f"{PROG} probe: the network's numbers leave float64's range ({type(error).__name__}: "
                         f"{_one_line(error)}); use a smaller --residual-scale, --sigma2 or --bias-variance") from None
    except MemoryError as error:
        raise UsageError(f"{PROG} probe: --depth, --width and --samples need more memory than this machine has "
                         f"({_one_line(error)}); use smaller values") from None
    print(report)
    return 0


# ----------------------------------------------------------------------------- theory

def _configure_theory(parser):
    parser.add_argument("--activation", default="tanh", help="activation (default tanh)")
    parser.add_argument("--bias-variance", type=non_negative_float, default=0.0, help="σ_b² (default 0)")
    parser.add_argument("--weight-variance", type=positive_float,
                        help="σ_w² = fan_in·Var(Ω) to analyse (default: the critical value)")


def _theory_row(activation, weight_variance: float, bias_variance: float) -> tuple[dict, str | None]:
    """One row of the theory table, and a note when part of it is beyond the theory's limits."""
    from ..signal import theory

    row = {"σ_w²": weight_variance, "q*": math.nan, "c*": math.nan, "ξ_q": math.nan, "ξ_c": math.nan}
    note = None
    try:
        scales = theory.depth_scales(activation, weight_variance, bias_variance)
        row.update({"q*": scales.q_star, "c*": scales.c_star, "ξ_q": scales.xi_q, "ξ_c": scales.xi_c})
        chi = scales.chi1
    except theory.NoFixedPointError:     # the variance grows without bound
        try:                             # ReLU-like: χ₁ does not depend on q
            chi = theory.chi1(activation, weight_variance, bias_variance)
        except ValueError:
            chi = math.inf
        return {**row, "phase": "explodes", "q*": math.inf, "χ₁": chi}, None
    except ValueError as error:          # beyond a limit of the correlation quadrature: c*, ξ unknown
        note = f"c*, ξ_q and ξ_c at σ_w² = {weight_variance:g}: {_one_line(error)}"
        try:
            row["q*"] = theory.fixed_point(activation, weight_variance, bias_variance)
            chi = theory.chi1(activation, weight_variance, bias_variance, q=row["q*"])
        except ValueError as beyond:     # q* itself beyond float64: only the note to show
            return {**row, "phase": "overflow", "χ₁": math.nan}, f"σ_w² = {weight_variance:g}: {_one_line(beyond)}"
    phase = "critical" if abs(chi - 1) <= 1e-9 else ("ordered" if chi < 1 else "chaotic")
    return {**row, "phase": phase, "χ₁": chi}, note


def _theory(args) -> int:
    from ..nn import activations
    from ..signal import theory
    from .report import format_number

    try:
        activation = activations.get(args.activation)
        theory.fixed_point(activation, 1.0, args.bias_variance)    # can theory integrate it?
    except theory.NoFixedPointError:     # unbounded at σ_w² = 1 (identity with a bias): other rows may not be
        pass
    except (ValueError, TypeError) as error:
        raise UsageError(f"{PROG} theory: {_one_line(error)}") from None
    sb2 = args.bias_variance
    print(f"mean-field theory for {activation!r} with σ_b² = {sb2:g} "
          "(σ_w² = fan_in·Var(Ω), σ_b² = Var(β); infinite width)")
    try:
        critical = theory.critical_weight_variance(activation, sb2)
        print(f"edge of chaos: σ_w² = {critical:.6g}  (χ₁ = 1; Var(Ω) = {critical:.4g}/fan_in)")
    except ValueError as error:
        critical = None
        print(f"edge of chaos: none — {_one_line(error)}")
    chosen = args.weight_variance if args.weight_variance is not None else critical
    grid = [w for w in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0) if chosen is None or not math.isclose(w, chosen, rel_tol=1e-9)]
    grid = sorted(grid + ([chosen] if chosen is not None else []))  # the chosen value replaces a grid value it equals
    rows, notes = zip(*[_theory_row(activation, w, sb2) for w in grid])
    columns = ["σ_w²", "phase", "q*", "c*", "χ₁", "ξ_q", "ξ_c"]
    print()
    print("".join(f"{c:>11}" for c in columns))
    for row in rows:
        mark = "  ←" if chosen is not None and row["σ_w²"] == chosen else ""
        print("".join(f"{row[c] if isinstance(row[c], str) else format_number(row[c]):>11}" for c in columns) + mark)
    for note in filter(None, notes):
        print(f"nan = not computed: {note}")
    print()
    print("q*: fixed point of the pre-activation variance; χ₁: growth of ‖dL/dh‖² per layer (< 1 ordered, "
          "> 1 chaotic);")
    print("ξ_q, ξ_c: depth scales (layers) of the variance and of correlations; trainable depth ≈ 6·ξ_c "
          "(Schoenholz et al. 2017).")
    return 0


# ----------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Command:
    """A subcommand: its one-line help, how it adds its arguments, and what it runs.

    ``configure`` and ``handler`` may be callables or ``"module:function"`` strings (imported
    when the subcommand is used), so a command can live in its own module.
    """

    help: str
    configure: Callable | str
    handler: Callable | str


COMMANDS: dict[str, Command] = {
    "list": Command("list the experiments, one line each", _configure_list, _list),
    "run": Command("run one experiment and write its HTML report", _configure_run, _run),
    "report": Command("run the tour of every experiment and write reports/index.html", _configure_report, _report),
    "probe": Command("per-layer signal statistics of a random network at initialization", _configure_probe, _probe),
    "theory": Command("mean-field theory: critical point, χ₁ and depth scales", _configure_theory, _theory),
    "sweep": Command("run an experiment over a grid of configurations, on every core or a Dask cluster",
                     "depthlab.lab.sweeps:configure_cli", "depthlab.lab.sweeps:cli_main"),
    "explore": Command("an interactive explorer in the browser: the real network beside the theory",
                       "depthlab.lab.explore.server:configure_cli", "depthlab.lab.explore.server:cli_main"),
}


def _resolve(reference):
    if callable(reference):
        return reference
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per entry of :data:`COMMANDS`."""
    parser = _Parser(prog=PROG, description="depthlab: build, train and diagnose deep fully-connected networks "
                                            "from first principles. Run `depthlab report` for the whole lab.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, command in COMMANDS.items():
        child = sub.add_parser(name, help=command.help, description=command.help)
        _resolve(command.configure)(child)
        child.set_defaults(handler=command.handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 an experiment failed, 2 a usage error,
    130 Ctrl-C)."""
    command = ""
    try:
        args = build_parser().parse_args(argv)
        command = f" {args.command}"
        return int(_resolve(args.handler)(args) or 0)
    except UsageError as error:
        print(_one_line(error), file=sys.stderr)
        return 2
    except MissingExtra as error:  # an optional dependency a command needs: one line naming the extra
        print(f"{PROG}{command}: {_one_line(error)}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    except KeyboardInterrupt:  # Ctrl-C: files are written atomically, so what is on disk is whole
        print(f"{PROG}{command}: interrupted (Ctrl-C); files written before it are kept, none is half-written",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # `depthlab list | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
