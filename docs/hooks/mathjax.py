"""MkDocs hook: typeset the tutorials' LaTeX with a local copy of MathJax, so pages need no network.

The notebooks' markdown cells keep their ``$…$`` math as text; this hook copies MathJax 2 (the
files the Jupyter project ships in ``jupyter_server_mathjax``) into ``site/assets/mathjax/`` and
adds it to the pages made from notebooks only (the other pages have no math).
"""
from __future__ import annotations

import shutil
from pathlib import Path

_CONFIG = """<script>
window.MathJax = {
  config: ["TeX-AMS-MML_HTMLorMML-full.js"],
  tex2jax: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], processEscapes: true},
  "HTML-CSS": {availableFonts: ["TeX"], preferredFont: "TeX", webFont: "TeX", imageFont: null},
  messageStyle: "none",
  menuSettings: {zoom: "None"}
};
</script>
<script src="{root}assets/mathjax/MathJax.js"></script>
"""


def _static() -> Path:
    try:
        import jupyter_server_mathjax
    except ImportError:
        raise ImportError("the documentation needs MathJax from jupyter-server-mathjax: "
                          "pip install 'depthlab[docs]'") from None
    return Path(jupyter_server_mathjax.__file__).parent / "static"


def on_config(config):
    _static()                      # fail early, before anything is built, if it is missing
    return config


def on_post_page(output: str, page, config) -> str:
    if not page.file.src_uri.endswith(".ipynb"):
        return output
    root = "../" * page.url.count("/")
    return output.replace("</head>", _CONFIG.replace("{root}", root) + "</head>", 1)


def on_post_build(config):
    target = Path(config["site_dir"]) / "assets" / "mathjax"
    shutil.copytree(_static(), target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.py", "__pycache__", "unpacked"))
