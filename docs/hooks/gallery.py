"""MkDocs hook: the experiments gallery, generated at build time.

Runs every registered experiment with its ``--quick`` sizes (``depthlab run NAME --quick``),
writes its report into ``build/docs-gallery/NAME/`` and adds a page, ``gallery.md``, with each
experiment's figures, its explanation and the numbers it printed. Nothing generated lands in
``docs/``; a failing experiment fails the build.

``DEPTHLAB_DOCS_GALLERY=list`` lists the experiments (title, what each reproduces, the
command) without running them: the test suite's quick build of the site uses it.
"""
from __future__ import annotations

import html
import os
from pathlib import Path

from mkdocs.structure.files import File

OUT = Path("build") / "docs-gallery"
_results: dict = {}          # name -> Result, so `mkdocs serve` rebuilds do not rerun everything


def _run_all():
    from depthlab import experiments

    if not _results:
        for name in experiments.names():
            _results[name] = experiments.run_experiment(name, quick=True, out_dir=OUT / name, progress=False)
    return _results


def _section(name: str, result, module) -> str:
    seconds = "" if result is None else f" · {result.seconds:.1f} s"
    lines = [f"## {html.escape(module.TITLE)}", "",
             f"`depthlab run {name} --quick` · reproduces {html.escape(module.REPRODUCES)}{seconds}", "",
             html.escape(module.SUMMARY), ""]
    if result is None:
        return "\n".join(lines)
    for figure in result.figures:
        lines += [f"![{name}: {figure}](gallery/{name}/{figure}.png)", ""]
    if result.explanation:
        lines += ['<div class="gallery-explanation">', result.explanation, "</div>", ""]
    if result.summary:
        lines += ["```text", result.summary.rstrip(), "```", ""]
    return "\n".join(lines)


def on_files(files, config):
    from depthlab import experiments

    run = os.environ.get("DEPTHLAB_DOCS_GALLERY", "run")
    if run not in ("run", "list"):
        raise ValueError(f"DEPTHLAB_DOCS_GALLERY must be 'run' or 'list', got {run!r}.")
    results = _run_all() if run == "run" else dict.fromkeys(experiments.names())
    page = ["# Experiments gallery", "",
            "Every experiment of the lab, run with its quick sizes while this site was built "
            "(`depthlab run NAME --quick`; drop `--quick` for the full study, and `depthlab report` "
            "runs the whole tour into one HTML report). Each shows a seed's figure, or a "
            "result the seeds lead to, with depthlab's own numbers.", ""]
    modules = {name: experiments.get(name) for name in results}
    page += [f"- [{html.escape(m.TITLE)}](#{_anchor(m.TITLE)}) (`{name}`)" for name, m in modules.items()]
    page.append("")
    for name, result in results.items():
        page.append(_section(name, result, modules[name]))
        for figure in (result.figures if result is not None else ()):
            png = (OUT / name / f"{figure}.png").resolve()
            files.append(File.generated(config, f"gallery/{name}/{figure}.png", abs_src_path=str(png)))
    files.append(File.generated(config, "gallery.md", content="\n".join(page)))
    return files


def _anchor(title: str) -> str:
    from markdown.extensions.toc import slugify

    return slugify(title, "-")
