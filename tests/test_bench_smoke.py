"""The benchmark script runs end to end in smoke mode (tiny sizes, one repetition).

The real numbers live in benchmarks/RESULTS.md (``make bench``); here only that every
section runs, checks its contenders agree, and writes its table — no timing is asserted.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench.py"


def run(*args, timeout=600, env=None):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)


@pytest.mark.slow
def test_smoke_run_writes_every_section(tmp_path):
    out = tmp_path / "RESULTS.md"
    done = run("--smoke", "--threads", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for heading in ("## Machine", "## Targets", "## Training step", "## Training step: residual MLP",
                    "## fit: one epoch of MNIST-1D", "## probe",
                    "## Peak memory: training the wide network", "## Where the time goes", "## Method"):
        assert heading in text
    assert "**Smoke mode**" in text
    for network in ("002", "mnist1d", "wide", "deep", "resmlp", "resmlp-bn"):
        for dtype in ("float32", "float64"):
            for optimizer in ("sgd", "adam"):
                assert re.search(rf"\| {network} \| {dtype} \| {optimizer} \| [\d.]+ \(", text), (network, dtype)
    # every target row carries a verdict, and the count in the summary matches the rows
    rows = re.findall(r"^\| .+ \| (PASS|\*\*MISS\*\*) \|$", text, flags=re.MULTILINE)
    summary = re.search(r"(\d+) of (\d+) targets met", text)
    assert summary and int(summary.group(2)) == len(rows) > 20
    assert "All weights stayed finite during timing." in text
    assert "All weights stayed finite and in their dtype during timing." in text   # the residual MLP's section
    for network in ("resmlp", "resmlp-bn"):
        assert re.search(rf"^\| {network} float32 sgd: depthlab/hand ≤ 1\.15 \| [\d.]+ \| (PASS|\*\*MISS\*\*) \|$",
                         text, flags=re.MULTILINE), network
    # the contenders compute the same update (float32 rounding at most)
    differences = [float(v) for v in re.findall(r"(?:hand|torch|sklearn) (\d\.\de[+-]\d+)", text)]
    assert differences and max(differences) < 1e-4


@pytest.mark.slow
def test_smoke_writes_to_a_temporary_file_unless_told(tmp_path):
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_bytes() if results.exists() else None
    done = run("--smoke", "--threads", "1", "--only", "probe")
    assert done.returncode == 0, done.stderr
    written = Path(done.stdout.strip().splitlines()[-1])
    assert written.exists() and written.resolve() != results.resolve() and "## probe" in written.read_text()
    assert (results.read_bytes() if results.exists() else None) == before


def test_unknown_section_is_refused():
    done = run("--smoke", "--only", "nonsense", timeout=120)
    assert done.returncode == 2 and "--only 'nonsense': choose from 002, mnist1d, wide, deep, steps" in done.stderr


@pytest.mark.parametrize("dtypes", ["float16", "", "float32,x"])
def test_unknown_dtypes_are_refused(dtypes):
    done = run("--smoke", "--dtypes", dtypes, timeout=120)
    assert done.returncode == 2 and "--dtypes: expected some of float32,float64" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("coretype", [None, "Haswell"])
def test_the_results_say_which_openblas_kernels_ran(tmp_path, coretype):
    """A kernel forced by OPENBLAS_CORETYPE (which `make bench` unsets) is named as forced."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_CORE")}
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    out = tmp_path / "RESULTS.md"
    done = run("--smoke", "--threads", "1", "--only", "probe", "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    forced = f"forced by OPENBLAS_CORETYPE={coretype}"
    assert (forced in text) == (f"**Note**: OpenBLAS ran the kernels {forced}" in text) == bool(coretype)
    assert ("detected)" in text) == (not coretype) == ("OPENBLAS_CORETYPE" not in done.stderr)


@pytest.mark.slow
def test_fit_measured_in_fresh_processes(tmp_path):
    """--processes N times the fit section in N fresh processes and reports the median."""
    out = tmp_path / "RESULTS.md"
    done = run("--smoke", "--threads", "1", "--only", "fit", "--processes", "2", "--dtypes", "float64", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("fit: float64, process") == 2 and "float32" not in done.stderr
    rows = re.findall(r"^\| (float32|float64) \| \d+ / \d+ \| (\d+) \| (.+)$", out.read_text(), flags=re.MULTILINE)
    assert [(dtype, processes) for dtype, processes, _ in rows] == [("float64", "2")]
    for *_, cells in rows:
        assert re.search(r"\| \d\.\d\d (PASS|\*\*MISS\*\*) \|", cells)
