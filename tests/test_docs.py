"""The documentation: every public name documented, the recipes run, the site builds strictly.

The full site (``make docs``) executes the tutorials and every experiment; here a quick
build renders the same pages with the tutorials unexecuted (``tests/test_tutorials.py`` runs
them) and the gallery listed without running the experiments, in strict mode, so a broken
link, a docstring mkdocstrings cannot parse, or a missing page fails the suite.
"""
from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import depthlab

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PUBLIC = [name for name in depthlab.__all__ if name != "__version__"]


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_has_its_own_docstring(name):
    value = getattr(depthlab, name)
    doc = value.__doc__
    if inspect.isclass(value):
        doc = value.__dict__.get("__doc__")          # its own, not a base class's
    assert doc and doc.strip(), f"depthlab.{name} has no docstring; the API reference would be empty"


def _export_paths() -> dict[str, str]:
    from depthlab import _EXPORTS

    return {name: "depthlab." + target.replace(":", ".") for name, target in _EXPORTS.items()}


def test_api_page_documents_every_public_name():
    page = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: (\S+)$", page, flags=re.M))
    paths = _export_paths()
    missing = sorted(name for name, path in paths.items() if path not in documented)
    assert not missing, f"add these to docs/api.md: {missing}"
    unknown = sorted(documented - set(paths.values()))
    assert not unknown, f"docs/api.md documents names depthlab does not export: {unknown}"


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


@pytest.mark.parametrize("index", range(len(_python_blocks((DOCS / "recipes.md").read_text(encoding="utf-8")))))
def test_recipe_code_runs(index, monkeypatch):
    # the initializer recipe registers a name: keep that out of the registry other tests see
    monkeypatch.setattr(depthlab.init, "INITIALIZERS", dict(depthlab.init.INITIALIZERS))
    code = _python_blocks((DOCS / "recipes.md").read_text(encoding="utf-8"))[index]
    exec(compile(code, f"recipes.md block {index}", "exec"), {"__name__": "recipes"})


def test_recipe_examples_do_what_they_say():
    blocks = _python_blocks((DOCS / "recipes.md").read_text(encoding="utf-8"))
    namespace: dict = {}
    exec(compile(blocks[2], "recipes.md SignSGD", "exec"), namespace)
    # sign descent moves each coordinate by exactly lr per step, so it ends within lr of (0, 0)
    assert max(abs(namespace["result"].x)) <= 0.05 + 1e-12
    steps = abs(namespace["result"].trajectory[1] - namespace["result"].trajectory[0])
    assert steps == pytest.approx([0.05, 0.05], abs=1e-15)


class _Collect(HTMLParser):
    """Ids, headings' text and image sources of an HTML page."""

    def __init__(self):
        super().__init__()
        self.ids, self.images, self.text = set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Collect:
    parser = _Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.mark.slow
def test_quick_strict_site_build(tmp_path):
    site = tmp_path / "site"
    source = str(Path(depthlab.__file__).resolve().parents[1])
    env = {**os.environ, "DEPTHLAB_DOCS_EXECUTE": "false", "DEPTHLAB_DOCS_GALLERY": "list",
           "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join([source, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])}
    completed = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]

    api = _parse(site / "api.html")
    for name, path in _export_paths().items():
        assert path in api.ids, f"the API page has no entry for depthlab.{name} ({path})"
    text = " ".join(api.text)
    assert "Build a" in text or "fully-connected network" in text        # MLP's docstring rendered

    tutorial = _parse(site / "tutorials" / "01-initialization.html")
    text = " ".join(tutorial.text)
    assert "Initialization and the forward and backward signal" in text
    assert "init_variance_setup" in text                                  # the code cells are there
    for page in ["index.html", "getting-started.html", "gallery.html", "recipes.html", "benchmarks.html",
                 "tutorials/index.html"]:
        assert (site / page).stat().st_size > 1000, page
    assert "make demo" in " ".join(_parse(site / "getting-started.html").text)          # the README
    assert "Targets" in " ".join(_parse(site / "benchmarks.html").text)                # RESULTS.md
    gallery = " ".join(_parse(site / "gallery.html").text)
    from depthlab import experiments
    for name in experiments.names():
        assert f"depthlab run {name} --quick" in gallery
