"""HTML reports: well-formed, self-contained (every figure embedded), with the metrics table; the index links all."""
import base64
import re
import sys
import textwrap
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from depthlab.lab import experiments, plots, report
from depthlab.lab.experiments import base

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class BalanceChecker(HTMLParser):
    """Checks HTML the way a browser's parser sees it: every non-void tag closed, in order."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.images, self.links = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "a":
            self.links.append(attrs.get("href", ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))
        if tag not in VOID:
            self.errors.append(f"<{tag}/> is not a void element")

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def check_page(text: str) -> BalanceChecker:
    """Assert ``text`` is a well-formed, self-contained page; return what the checker saw."""
    assert text.startswith("<!DOCTYPE html>")
    ET.fromstring(text.split("\n", 1)[1])     # strict XML parse: balanced, quoted, escaped
    checker = BalanceChecker()
    checker.feed(text)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    for src in checker.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_SIGNATURE
    assert not re.search(r"""(src|href)=["']https?://""", text), "a report must not load anything from outside"
    return checker


def _figure():
    fig, ax = plots.figure(width=3, height=2)
    ax.plot([1, 2, 3], [1, 4, 9], label="x²")
    plots.decorate(ax, title="t", xlabel="x", ylabel="y", logy=True, legend=True)
    return fig


def _result(**changes):
    fields = dict(
        name="demo", title="A <demo> & more", config={"width": 80, "depths": [5, 50], "seed": 0},
        metrics={"growth": 1.2e39, "ratio": 1.5, "ok": True, "steps": 94, "none": None, "series": [1, 2, 3]},
        figures={"first figure": _figure(), "second": _figure()},
        tables={"per layer": [{"layer k": 1, "std": 0.5}, {"layer k": 2, "std": 0.25, "extra": "x"}]},
        explanation="<p>Unclosed <b>bold<br>line<ul><li>item</ul>", summary="line 1\nline 2 <with> markup",
    )
    fields.update(changes)
    return base.Result(**fields)


def _context():
    return {"summary_line": "one line", "reproduces": "seed 000", "versions": {"depthlab": "0.1.0"},
            "date": "2024-01-01", "seed": 0, "command": "depthlab run demo --seed 0", "seconds": 1.5,
            "quick": True, "index_href": "../index.html"}


def test_experiment_page_is_well_formed_and_embeds_every_figure():
    result = _result()
    pngs = {name: plots.png_bytes(fig) for name, fig in result.figures.items()}
    text = report.render_experiment(result, pngs, _context())
    checker = check_page(text)
    assert len(checker.images) == 2
    assert "A &lt;demo&gt; &amp; more" in text and "line 2 &lt;with&gt; markup" in text
    assert '<table class="metrics">' in text
    for key in result.metrics:
        assert f'<td class="mono">{key}</td>' in text
    assert "1.200e+39" in text and ">yes<" in text and ">94<" in text and ">—<" in text
    assert "<h3>per layer</h3>" in text and "<th>extra</th>" in text
    assert "depthlab run demo --seed 0" in text and "../index.html" in checker.links
    assert "<h2>Configuration</h2>" in text and "5, 50" in text


def test_explanations_are_tidied_into_well_formed_markup():
    assert report.tidy("<p>a<br>b<ul><li>x</ul>") == "<p>a<br/>b<ul><li>x</li></ul></p>"
    assert report.tidy("x &lt; y & z</p>") == "x &lt; y &amp; z"
    assert report.tidy('<a href="u?a=1&b=2">l</a>') == '<a href="u?a=1&amp;b=2">l</a>'


@pytest.mark.parametrize("value, text", [
    (0, "0"), (94, "94"), (True, "yes"), (False, "no"), (0.5, "0.5"), (1 / 3, "0.3333"), (12345.678, "1.235e+04"),
    (1.2e39, "1.200e+39"), (2.5e-8, "2.500e-08"), (float("inf"), "∞"), (float("nan"), "nan"), (0.0, "0"),
    (12_345_678_901, "1.235e+10"),
])
def test_numbers_are_formatted_for_people(value, text):
    assert report.format_number(value) == text


def test_cells_shorten_lists_and_show_missing_values():
    assert report.format_cell(list(range(10))) == "[0, 1, 2, 3, 4, 5, 6, 7, …]"
    assert report.format_cell(None) == "—"
    assert report.format_cell({"a": 1.5}) == "a: 1.5"


def test_png_bytes_are_deterministic():
    assert plots.png_bytes(_figure()) == plots.png_bytes(_figure())
    assert plots.png_bytes(_figure())[:8] == PNG_SIGNATURE


def _entry(name, ok=True, **changes):
    fields = dict(name=name, title=f"Title {name}", summary_line=f"summary {name}", reproduces="seed", ok=ok,
                  seconds=1.0, finding=f"finding {name}", key_metrics={"m": 1.5} if ok else {},
                  report=f"{name}/report.html" if ok else "", thumbnail=plots.png_bytes(_figure()) if ok else None,
                  error="" if ok else "RuntimeError: boom <here>")
    fields.update(changes)
    return base.TourEntry(**fields)


def test_index_links_every_experiment_and_marks_failures():
    entries = [_entry("alpha"), _entry("beta", ok=False), _entry("gamma")]
    text = report.render_index(entries, {"versions": {"depthlab": "0"}, "date": "d", "quick": True, "seconds": 3})
    checker = check_page(text)
    assert "alpha/report.html" in checker.links and "gamma/report.html" in checker.links
    assert not any("beta" in link for link in checker.links)
    assert "RuntimeError: boom &lt;here&gt;" in text and "1 experiment(s) failed: beta" in text
    assert "2 of 3 experiments ran" in text and "finding alpha" in text
    assert len(checker.images) == 2


FAKE_EXPERIMENTS = {
    "tiny": '''
        from dataclasses import dataclass
        from depthlab.lab import plots
        from depthlab.lab.experiments import base
        NAME, TITLE, SUMMARY, REPRODUCES = "tiny", "Tiny study", "a tiny study", "nothing"
        KEY_METRICS = ("answer",)

        @dataclass
        class Config:
            size: int = 3
            seed: int = 0

        QUICK = {"size": 2}

        def validate(config):
            base.check_range(config, "size", low=1)

        def run(config, progress=None):
            for _ in base.iterate(progress, range(config.size), desc=NAME):
                pass
            fig, ax = plots.figure(width=2, height=2)
            ax.plot(range(config.size))
            return base.Result(NAME, TITLE, metrics={"answer": 42, "size": config.size}, figures={"line": fig},
                               explanation="<p>tiny</p>", summary=f"the answer is 42 (size {config.size})")
    ''',
    "boom": '''
        from dataclasses import dataclass
        NAME, TITLE, SUMMARY, REPRODUCES = "boom", "Boom", "always fails", "nothing"

        @dataclass
        class Config:
            seed: int = 0

        QUICK = {}

        def run(config, progress=None):
            raise RuntimeError("the experiment broke")
    ''',
}


@pytest.fixture
def fake_experiments(tmp_path, monkeypatch):
    """Two experiments registered for the test: ``tiny`` works, ``boom`` raises."""
    package = tmp_path / "fake_lab_experiments"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in FAKE_EXPERIMENTS.items():
        (package / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in FAKE_EXPERIMENTS:
        monkeypatch.setitem(experiments.EXPERIMENTS, name, f"fake_lab_experiments.{name}")
    yield list(FAKE_EXPERIMENTS)
    for name in list(sys.modules):
        if name.startswith("fake_lab_experiments"):
            del sys.modules[name]


def test_tour_keeps_going_past_a_crash_and_marks_it(tmp_path, fake_experiments):
    done = []
    tour = base.run_tour(tmp_path / "out", quick=True, names=["tiny", "boom", "tiny"], progress=False,
                         on_done=lambda i, n, entry, error: done.append((i, n, entry.name, error)))
    assert tour.failed == ["boom"]
    assert [(i, n, name) for i, n, name, _ in done] == [(1, 3, "tiny"), (2, 3, "boom"), (3, 3, "tiny")]
    assert isinstance(done[1][3], RuntimeError)
    text = tour.index.read_text()
    checker = check_page(text)
    assert "tiny/report.html" in checker.links
    assert "RuntimeError: the experiment broke" in text
    assert "the answer is 42 (size 2)" in text
    report_page = (tmp_path / "out" / "tiny" / "report.html").read_text()
    check_page(report_page)
    assert (tmp_path / "out" / "tiny" / "line.png").read_bytes()[:8] == PNG_SIGNATURE
    assert '"answer": 42' in (tmp_path / "out" / "tiny" / "metrics.json").read_text()


def test_tour_refuses_unknown_names_and_bad_folders(tmp_path, fake_experiments):
    with pytest.raises(base.ConfigError, match="unknown experiment 'nope'"):
        base.run_tour(tmp_path / "out", names=["nope"], progress=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(base.OutputError, match="is a file"):
        base.run_tour(tmp_path / "file", names=["tiny"], progress=False)
