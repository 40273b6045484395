"""Claims: what a landmark paper says, and whether one run of the lab reproduced it.

An experiment declares the claims it tests with ``claims(metrics) -> list[Claim]``, computed
from its own ``metrics`` (which hold its configuration under ``"config"``, see
:func:`depthlab.lab.experiments.base.run_experiment`), so a verdict is never written by hand:

    >>> Claim("He et al. 2015, Fig. 3", "a 30-layer ReLU net trains with He's init",
    ...       checks=(("He's loss < 0.8 · ln 10", True), ("Xavier's loss ≥ 0.9 · ln 10", False)),
    ...       measured="He 1.10, Xavier 1.62", budget="15 epochs").verdict
    'partly'

The tour's index gathers every claim into a gallery (:func:`depthlab.lab.report.render_index`).
Experiments that do not declare their own claims may have them here, in :data:`EXTERNAL`.
"""
from __future__ import annotations

from dataclasses import dataclass

VERDICTS = ("reproduced", "partly", "not reproduced")


@dataclass(frozen=True)
class Claim:
    """One claim of a paper and how one run tested it.

    Attributes
    ----------
    source : str
        Who claimed it, where: ``"He et al. 2015, Fig. 3"``.
    statement : str
        The claim in one line.
    checks : tuple of (str, bool)
        What was checked, in words with its numbers, and whether it held. The verdict is
        "reproduced" when all hold, "partly" when some do, "not reproduced" when none does.
    measured : str
        The numbers measured, in one line.
    budget : str
        The size of the run that measured them (width, depth, steps, samples).
    figure : str
        The stem of the experiment's figure that shows it ("" for the first figure).
    """

    source: str
    statement: str
    checks: tuple
    measured: str
    budget: str
    figure: str = ""

    def __post_init__(self):
        checks = tuple((str(text), bool(held)) for text, held in self.checks)
        if not checks:
            raise ValueError(f"Claim({self.source!r}) needs at least one check (text, held); got none.")
        object.__setattr__(self, "checks", checks)

    @property
    def verdict(self) -> str:
        held = sum(held for _, held in self.checks)
        return VERDICTS[0] if held == len(self.checks) else (VERDICTS[1] if held else VERDICTS[2])

    def line(self) -> str:
        """``source: verdict — measured (budget)``, one line."""
        return f"{self.source}: {self.verdict} — {self.measured} ({self.budget})"

    def as_dict(self) -> dict:
        """Plain data for metrics.json and the index."""
        return {"source": self.source, "statement": self.statement, "verdict": self.verdict,
                "checks": [{"check": text, "held": held} for text, held in self.checks],
                "measured": self.measured, "budget": self.budget, "figure": self.figure}


def of(module, metrics: dict) -> list[Claim]:
    """The claims ``module`` tests, judged on ``metrics`` ([] when it declares none, or when the
    run's configuration does not produce the numbers a claim is judged on: a grid without a
    near-critical column, a single depth)."""
    declare = getattr(module, "claims", None) or EXTERNAL.get(getattr(module, "NAME", ""))
    if declare is None:
        return []
    try:
        found = list(declare(metrics))
    except (KeyError, IndexError, ValueError):   # a metric the claim needs was not measured in this run
        return []
    for claim in found:
        if not isinstance(claim, Claim):
            raise TypeError(f"{module.NAME}.claims returned a {type(claim).__name__}, not a Claim.")
    return found


# ----------------------------------------------------------------------------- seed 000's tables

def _seed_tables(kind: str, match_key: str, figure: str):
    def claims(metrics: dict) -> list[Claim]:
        config = metrics.get("config", {})
        if match_key not in metrics:
            return []
        budget = (f"width {config.get('width', '?')}, depths {_listed(config.get('depths', ()))}, "
                  f"{config.get('samples', '?')} inputs")
        checks = [(f"{metrics.get('seed_values_compared', '?')} printed values recomputed from the seed's own "
                   f"weights agree (largest relative difference {metrics.get('seed_max_relative_difference', 0):.1e})",
                   metrics[match_key])]
        explodes, vanishes, steady = (metrics.get("growth_sigma2_1"), metrics.get("growth_1_over_D"),
                                      metrics.get("max_min_ratio_2_over_D"))
        if None not in (explodes, vanishes, steady):
            checks.append((f"σ²_Ω = 1 explodes (×{explodes:.3g}), 1/D vanishes (×{vanishes:.3g}), He's 2/D stays "
                           f"within ×{steady:.2f}", explodes > 1e3 and vanishes < 1e-3 and steady < 3.0))
        measured = (f"{metrics.get('seed_values_compared', '?')} values agree; growth over depth: σ²=1 ×"
                    f"{_g(explodes)}, 1/D ×{_g(vanishes)}, 2/D within ×{_g(steady)}")
        return [Claim("seed 000, " + kind, f"the notebook's printed {kind} (std of each layer's "
                      f"{'activations' if kind == 'forward tables' else 'gradients'}): σ²_Ω = 1 explodes, "
                      "1/D vanishes, He's 2/D keeps the scale", tuple(checks), measured, budget, figure=figure)]

    return claims


def _g(value) -> str:
    return "?" if value is None else f"{value:.3g}"


def _listed(values) -> str:
    return ",".join(str(v) for v in values) if isinstance(values, (list, tuple)) else str(values)


EXTERNAL = {
    "init-variance": _seed_tables("forward tables", "seed_tables_match", "seed_000_tables"),
    "gradient-variance": _seed_tables("backward table", "seed_table_match", "backward_std"),
}
