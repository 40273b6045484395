"""Class 8 of the faults issue: a missing extra names itself.

``pip install depthlab`` brings NumPy and SciPy only. Each case runs depthlab in a fresh Python
subprocess whose import system refuses the optional packages, as an install without the
extras does: a meta-path finder raises ``ModuleNotFoundError`` for them before any other
finder is asked (so nothing installed in the test environment leaks in). This is faster and
more exact than building a virtual environment per session; it blocks the same top-level
modules a missing extra would leave out.
"""
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import depthlab as dl
from depthlab import _checks

SRC = str(Path(dl.__file__).resolve().parents[1])
ALL_EXTRAS = ("matplotlib", "cycler", "tqdm", "threadpoolctl", "sklearn", "mnist1d", "torch", "dask", "distributed")

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = set(sys.argv[1].split(","))

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    del sys.argv[1]
""")

# Runs every case of one blocked set in one process (each in its own folder), recording for each
# the exit code, stdout and stderr: one interpreter start per blocked set instead of per case.
RUNNER = BLOCKER + textwrap.dedent("""
    import contextlib, io, json, os, textwrap, traceback
    cases = json.loads(sys.argv[1])
    results = {}
    for name, (folder, what) in cases.items():
        os.makedirs(folder)
        os.chdir(folder)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                if isinstance(what, list):
                    from depthlab.lab.cli import main
                    status = main(what)
                else:
                    exec(compile(textwrap.dedent(what), name, "exec"), {})
                    status = 0
            except BaseException:
                traceback.print_exc()
                status = "raised"
        os.chdir("..")
        results[name] = [status, out.getvalue(), err.getvalue()]
    print(json.dumps(results))
""")


def run_group(tmp_path, blocked, cases: dict) -> dict:
    """``{case: (exit code, stdout, stderr)}`` for ``cases`` (``{case: argv list or code}``)."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "DEPTHLAB_CACHE": str(tmp_path / "cache")}          # no MNIST-1D cached from another test
    folders = {name: (f"case{i}", what) for i, (name, what) in enumerate(cases.items())}
    done = subprocess.run([sys.executable, "-c", RUNNER, ",".join(blocked), json.dumps(folders)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: (*results[name], tmp_path / folders[name][0]) for name in cases}


LAB = r"uses matplotlib, which is not installed\. Install the 'lab' extra: pip install 'depthlab\[lab\]'"
DATA = r"uses mnist1d, which is not installed\. Install the 'data' extra: pip install 'depthlab\[data\]'"


def nothing_written(name):
    return lambda folder: not (folder / name).exists()


API_MNIST1D = """
    import depthlab as dl
    try:
        dl.data.mnist1d()
    except ImportError as error:
        print(type(error).__name__, error)
"""
API_DIGITS = """
    import depthlab as dl
    try:
        dl.data.digits()
    except ModuleNotFoundError as error:
        print(type(error).__name__, error.name, error)
"""
API_TORCH = """
    import depthlab as dl
    try:
        dl.to_torch(dl.MLP(2, [3], 1, rng=0))
    except ImportError as error:
        print(type(error).__name__, error)
"""
API_PLOTS = """
    import depthlab as dl
    try:
        dl.plots.figure()
    except ImportError as error:
        print(type(error).__name__, error)
"""
API_EXPERIMENT = """
    from depthlab.lab.experiments import base
    try:
        base.run_experiment("gradcheck", quick=True, out_dir="out", progress=False)
    except ImportError as error:
        print(type(error).__name__, error)
"""
API_FIT = """
    import numpy as np, depthlab as dl
    x = np.linspace(-1, 1, 20).reshape(-1, 1)
    history = dl.fit(dl.MLP(1, [4], 1, rng=0), x, x ** 2, epochs=2, verbose=1)     # no tqdm: epoch lines
    print(len(history.epoch), "epochs")
"""
API_EXPORTS = """
    import depthlab as dl
    for name in dl._EXPORTS:
        getattr(dl, name)                      # every public name imports without the extras
    print(len(dl._EXPORTS), "names")
"""

CASES = [  # id, blocked, argv or code, exit code, pattern on stderr (a failing command) or stdout, check(folder)
    ("run init-variance", ALL_EXTRAS, ["run", "init-variance", "--quick", "--out", "iv"], 2,
     rf"^depthlab run: experiment init-variance: Drawing figures \(depthlab's reports and plots\) {LAB}\n$",
     nothing_written("iv")),
    ("report", ALL_EXTRAS, ["report", "--quick", "--out", "reports"], 2, rf"^depthlab report: Drawing figures .*{LAB}\n$",
     nothing_written("reports")),
    ("run depth-trainability without the data extra", ("mnist1d",),
     ["run", "depth-trainability", "--quick", "--out", "dt", "--no-progress"], 2,
     rf"^depthlab run: experiment depth-trainability: The MNIST-1D data set \(depthlab.data.mnist1d\) {DATA}\n$", None),
    ("report: one experiment lacks its data, the others run", ("mnist1d", "sklearn"),
     ["report", "--quick", "--only", "gradcheck", "--only", "depth-trainability", "--out", "r", "--no-progress"], 1,
     r"^1 experiment\(s\) failed: depth-trainability\n$",
     lambda folder: (folder / "r" / "gradcheck" / "report.html").exists() and (folder / "r" / "index.html").exists()),
    ("probe needs no extra", ALL_EXTRAS, ["probe", "--depth", "5", "--width", "8"], 0, r"^probe: 6 layers", None),
    ("theory needs no extra", ALL_EXTRAS, ["theory"], 0, r"edge of chaos: σ_w² = 1  \(χ₁ = 1", None),
    ("list needs no extra", ALL_EXTRAS, ["list"], 0, r"^(?!.*unavailable)(?s:.*)edge-of-chaos ", None),
    ("sweep on a cluster without dask", ALL_EXTRAS,
     ["sweep", "gradcheck", "--grid", "seed=0,1", "--scheduler", "tcp://127.0.0.1:9", "--out", "s.jsonl"], 2,
     r"depthlab\[dask\]", nothing_written("s.jsonl")),
    ("API mnist1d", ALL_EXTRAS, API_MNIST1D, 0, rf"^MissingExtra The MNIST-1D data set .*{DATA}\n$", None),
    ("API digits", ALL_EXTRAS, API_DIGITS, 0,
     r"^MissingExtra sklearn .*uses scikit-learn, which is not installed.*pip install 'depthlab\[data\]'\n$", None),
    ("API to_torch", ALL_EXTRAS, API_TORCH, 0,
     r"^MissingExtra PyTorch interop \(to_torch, from_torch\) uses torch, which is not installed\. "
     r"Install the 'torch' extra: pip install 'depthlab\[torch\]'\n$", None),
    ("API plots", ALL_EXTRAS, API_PLOTS, 0, rf"^MissingExtra Drawing figures .*{LAB}\n$", None),
    ("API run_experiment", ALL_EXTRAS, API_EXPERIMENT, 0, rf"^MissingExtra .*{LAB}\n$", nothing_written("out")),
    ("API fit without tqdm", ALL_EXTRAS, API_FIT, 0, r"^2 epochs\n$", None),
    ("API every public name", ALL_EXTRAS, API_EXPORTS, 0, r"^\d+ names\n$", None),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case of CASES, run once per blocked set."""
    results = {}
    groups = {}
    for name, blocked, what, *_ in CASES:
        groups.setdefault(blocked, {})[name] = what
    for index, (blocked, cases) in enumerate(groups.items()):
        results.update(run_group(tmp_path_factory.mktemp(f"extras{index}"), blocked, cases))
    return results


@pytest.mark.parametrize("name, code, pattern, check", [(c[0], *c[3:]) for c in CASES], ids=[c[0] for c in CASES])
def test_a_missing_extra_names_itself(outcomes, name, code, pattern, check):
    status, out, err, folder = outcomes[name]
    is_command = isinstance(next(c[2] for c in CASES if c[0] == name), list)
    assert status == code, err
    assert "Traceback" not in err, err
    text = err if is_command and code != 0 else out
    assert re.search(pattern, text), (text, err)
    if check is not None:
        assert check(folder)


def test_the_report_names_the_missing_extra_on_its_line(outcomes):
    status, out, err, _ = outcomes["report: one experiment lacks its data, the others run"]
    assert "FAILED  MissingExtra: The MNIST-1D data set" in out and "pip install 'depthlab[data]'" in out


def test_the_table_of_extras_matches_pyproject():
    """Every extra require() names exists in pyproject.toml and lists the package it names."""
    text = (Path(SRC).parent / "pyproject.toml").read_text()
    for module, (package, extra) in _checks.EXTRAS.items():
        line = next(line for line in text.splitlines() if line.startswith(f"{extra} = ["))
        assert package.partition("[")[0] in line, (module, package, extra)


def test_the_blocker_really_blocks(tmp_path):
    outcome = run_group(tmp_path, ("scipy",), {"scipy": "import scipy.special"})["scipy"]
    assert outcome[0] == "raised" and "No module named 'scipy'" in outcome[2]


def test_a_sweep_point_names_the_missing_extra(tmp_path):
    """Worker processes start from the main script, so the blocker is a script here (guarded main)."""
    script = tmp_path / "no_extras.py"
    script.write_text(BLOCKER.replace('set(sys.argv[1].split(","))', repr(set(ALL_EXTRAS)))
                      .replace("del sys.argv[1]", "") + textwrap.dedent("""
        if __name__ == "__main__":
            from depthlab.lab.cli import main
            sys.exit(main(sys.argv[1:]))
    """))
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, str(script), "sweep", "gradcheck", "--quick",
                           "--grid", "seed=0", "--workers", "1", "--out", "r.jsonl", "--no-progress"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    record = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])
    assert record["status"] == "failed"
    assert re.match(rf"MissingExtra: Drawing figures .*{LAB}$", record["error"]), record["error"]
