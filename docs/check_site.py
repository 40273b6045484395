"""Render pages of the built site in headless Chromium and check what a reader would see.

    python docs/check_site.py site build/docs-check        (make docs-check runs it)

For the API page and a tutorial page (and the home page and the gallery), Chromium loads the
file with networking off, and the rendered DOM (after scripts ran) must contain the page's
content: the API entries of MLP and probe with their docstrings; the tutorial's printed table
and its figures as images. A screenshot of each is written to the output folder and must not
be blank. Exits 1 with a list of what failed.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-default-apps", "--hide-scrollbars"]

# page -> strings its rendered DOM must contain
EXPECTED = {
    "api.html": ['id="depthlab.nn.model.MLP"', "fully-connected network", 'id="depthlab.signal.probe.probe"',
                 "Measure forward and backward signal statistics"],
    "tutorials/01-initialization.html": ["Initialization and the forward and backward signal",
                                         "Layer 1, std of hidden units = 0.811", "all checks passed",
                                         "data:image/png;base64"],
    "index.html": ["Where to go", "Tutorials"],
    "gallery.html": ["Experiments gallery", 'src="gallery/init-variance/'],
}


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("check_site: no chromium on PATH; install Debian's package: apt-get install -y chromium")


def _run(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def _blank(png: Path) -> bool:
    from matplotlib import image

    pixels = image.imread(png)
    return pixels.size == 0 or float(pixels[..., :3].std()) < 0.01


def check(site: Path, out: Path) -> list[str]:
    browser = _chromium()
    out.mkdir(parents=True, exist_ok=True)
    problems = []
    for page, needles in EXPECTED.items():
        path = (site / page).resolve()
        if not path.is_file():
            problems.append(f"{page}: not built")
            continue
        url = path.as_uri()
        dom = _run([browser, *CHROMIUM_FLAGS, "--virtual-time-budget=5000", "--dump-dom", url]).stdout
        problems += [f"{page}: rendered page lacks {needle!r}" for needle in needles if needle not in dom]
        shot = out / (page.replace("/", "_").replace(".html", ".png"))
        _run([browser, *CHROMIUM_FLAGS, "--window-size=1280,1600", f"--screenshot={shot}", url])
        if not shot.is_file():
            problems.append(f"{page}: no screenshot")
        elif _blank(shot):
            problems.append(f"{page}: the screenshot is blank")
        else:
            print(f"ok  {page}  ({len(dom)} characters of DOM, screenshot {shot})")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    problems = check(Path(argv[0]), Path(argv[1]))
    for problem in problems:
        print("FAIL", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
