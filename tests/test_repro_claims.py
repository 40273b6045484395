"""Claims and their verdicts, the gallery of the tour's index, config recording, 80-column
summaries and progress bars that appear once a run has lasted two seconds."""
import dataclasses
import json

import numpy as np
import pytest
from test_report import check_page

from depthlab.lab import claims, report
from depthlab.lab import experiments
from depthlab.lab.experiments import base

ALL = experiments.names()


def claim(*held, figure=""):
    return claims.Claim("Someone 2020", "a thing holds", tuple((f"check {i}", h) for i, h in enumerate(held)),
                        "x = 1", "tiny", figure=figure)


# ----------------------------------------------------------------------------- verdicts

@pytest.mark.parametrize("held, verdict", [
    ((True,), "reproduced"), ((True, True, True), "reproduced"), ((True, False), "partly"),
    ((False, True, False), "partly"), ((False,), "not reproduced"), ((False, False), "not reproduced"),
])
def test_verdict_follows_the_checks(held, verdict):
    found = claim(*held)
    assert found.verdict == verdict
    assert found.line() == f"Someone 2020: {verdict} — x = 1 (tiny)"
    plain = found.as_dict()
    assert plain["verdict"] == verdict and [c["held"] for c in plain["checks"]] == list(held)
    json.dumps(plain)   # plain data


def test_a_claim_without_checks_is_refused():
    with pytest.raises(ValueError, match="needs at least one check"):
        claims.Claim("Someone 2020", "a thing", (), "x", "tiny")


def test_numpy_booleans_become_plain_ones():
    found = claims.Claim("S", "t", (("c", np.bool_(True)),), "m", "b")
    assert found.checks == (("c", True),) and type(found.checks[0][1]) is bool


def test_claims_of_a_module_must_be_claims():
    module = type("M", (), {"NAME": "fake", "claims": staticmethod(lambda metrics: ["not a claim"])})
    with pytest.raises(TypeError, match="fake.claims returned a str"):
        claims.of(module, {})
    assert claims.of(type("N", (), {"NAME": "none"}), {}) == []


# ----------------------------------------------------------------------------- every experiment, quick

@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_metrics_record_the_full_config_and_seed(quick_runs, name):
    result = quick_runs[name]
    module = experiments.get(name)
    config = base.make_config(module, quick=True)
    assert base.jsonable(result.metrics["config"]) == base.jsonable(dataclasses.asdict(config))
    assert result.metrics["seed"] == config.seed == 0
    written = json.loads((result.out_dir / "metrics.json").read_text())
    assert written["config"] == base.jsonable(dataclasses.asdict(config)) and written["seed"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_summary_lines_fit_80_columns(quick_runs, name):
    lines = quick_runs[name].summary.splitlines()
    assert lines and max(map(len, lines)) <= 80, max(lines, key=len)
    assert quick_runs[name].headline   # the index's one-line finding, before wrapping


@pytest.mark.slow
@pytest.mark.parametrize("name", ["init-variance", "gradient-variance", "depth-trainability", "edge-of-chaos",
                                  "dynamical-isometry"])
def test_landmark_experiments_judge_their_claims_at_quick_size(quick_runs, name):
    found = quick_runs[name].claims
    assert found and all(isinstance(c, claims.Claim) for c in found)
    for c in found:
        assert c.verdict in claims.VERDICTS and c.measured and c.budget
        assert not c.figure or c.figure in quick_runs[name].figures


@pytest.mark.slow
def test_quick_depth_trainability_keeps_the_papers_depth_and_he_learns(quick_runs):
    result = quick_runs["depth-trainability"]
    assert result.metrics["config"]["depth"] == 30
    he = result.claims[0]          # then the depth-100 comparison's claims (tests/test_experiments_b.py)
    assert he.source == "He et al. 2015, Fig. 3" and len(result.claims) == 4
    assert he.verdict == "reproduced", he.checks
    assert result.metrics["final_loss_sgd_he"] < 0.85 * np.log(10)


# ----------------------------------------------------------------------------- run_experiment's helpers

def test_fit_lines_wraps_with_indentation_and_keeps_short_lines():
    text = "short\n" + "  " + "word " * 30 + "\n" + "x" * 100
    lines = base.fit_lines(text).splitlines()
    assert lines[0] == "short" and all(len(line) <= 80 for line in lines)
    assert lines[1].startswith("  word") and lines[2].startswith("    word")
    assert "".join(lines).replace(" ", "").count("word") == 30 and "x" * 80 in lines[-2] + lines[-1]


def test_record_run_refuses_a_metric_named_config():
    result = base.Result("x", "X", metrics={"config": 1})
    config = type("C", (), {})()
    with pytest.raises(ValueError, match="already hold 'config'"):
        base.record_run(result, config)


# ----------------------------------------------------------------------------- progress

class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_bars_opened_after_two_seconds_of_a_run_show_at_once(monkeypatch):
    seen = []
    monkeypatch.setattr(base, "tqdm_progress", lambda iterable=None, **kw: seen.append(kw["delay"]) or iterable)
    clock = FakeClock()
    progress = base.run_progress(clock=clock)
    progress(range(3), desc="first")
    clock.now += 1.5
    progress(range(3), desc="second")
    clock.now += 1.0
    progress(range(3), desc="third")
    assert seen == [pytest.approx(2.0), pytest.approx(0.5), 0.0]


def test_ticks_count_every_unit_and_close_early_runs():
    calls = []

    def progress(iterable=None, *, desc=None, total=None):
        calls.append((desc, total))
        for item in iterable:
            calls.append(item)
            yield item

    with base.ticks(progress, 4, "work") as tick:
        tick()
        tick()
    assert calls == [("work", 4), 0, 1, 2, 3]     # the two units never ticked are counted at the end


def test_depth_trainability_shows_one_bar_over_all_its_epochs():
    calls = []

    def progress(iterable=None, *, desc=None, total=None):
        calls.append((desc, total))
        return iterable

    module = experiments.get("depth-trainability")
    config = base.make_config(module, {"depth": 3, "width": 4, "epochs": 2, "train_samples": 40, "batch_size": 20,
                                       "compare_depth": 4, "compare_width": 4, "compare_epochs": 1})
    with np.errstate(all="ignore"):
        module.run(config, progress=progress)
    assert calls == [("depth-trainability: epochs", 3 * 2 * 2 + 6 * 1)]   # + the depth-100 comparison's six networks


# ----------------------------------------------------------------------------- the gallery

def test_index_shows_a_gallery_of_claims_with_verdicts():
    png = b"\x89PNG\r\n\x1a\nfake"
    entries = [base.TourEntry("a", "A", "", "", ok=True, report="a/report.html", thumbnail=png,
                              claims=[claim(True), claim(True, False, figure="fig")], thumbnails={"fig": png}),
               base.TourEntry("b", "B", "", "", ok=True, report="b/report.html", claims=[claim(False)])]
    html = report.render_index(entries, {"seconds": 1.0})
    check_page(html)
    assert "Claims: what the tour reproduces" in html
    for verdict in ("reproduced", "partly", "not reproduced"):
        assert f'<span class="pill {verdict.replace(" ", "-")}">{verdict}</span>' in html
    assert html.count('<tr><td><a href="a/report.html"><img') == 2 and "budget: tiny" in html


def test_index_without_claims_has_no_gallery():
    html = report.render_index([base.TourEntry("a", "A", "", "", ok=True)], {"seconds": 1.0})
    assert "Claims:" not in html
