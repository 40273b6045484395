"""The tutorials in docs/tutorials/ are stored clean and run top to bottom.

Each notebook is executed in a fresh kernel of the interpreter running the tests (the
``python3`` kernel of the venv's ipykernel), with a time limit per cell. Every tutorial ends
in a cell of asserts on its key numbers, so a tutorial that stops being true fails here.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.ipynb"))
NOTEBOOKS = sorted((ROOT / "docs").rglob("*.ipynb"))
CELL_TIMEOUT_S = 120

# A first cell, added in memory only: which Python and which depthlab the kernel runs.
_WHO = "import sys, depthlab; print(sys.executable); print(depthlab.__file__)"


def test_there_are_at_least_eight_tutorials():
    assert len(TUTORIALS) >= 8, [p.name for p in TUTORIALS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {index} has outputs; clear them before committing"
            assert cell.execution_count is None, f"{path.name}: cell {index} has an execution count"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_ends_with_a_cell_of_checks(path):
    notebook = nbformat.read(path, as_version=4)
    last = [cell for cell in notebook.cells if cell.cell_type == "code"][-1]
    assert "assert" in last.source and "all checks passed" in last.source


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_runs(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(_WHO))
    import depthlab

    # The kernel imports the depthlab under test (a relative PYTHONPATH would not survive the
    # kernel's own working directory), with one BLAS thread, as make test gives every worker.
    source = str(Path(depthlab.__file__).resolve().parents[1])
    python_path = os.pathsep.join([source, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
    env = {**os.environ, "PYTHONPATH": python_path, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, startup_timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)                     # raises CellExecutionError on the first failing cell
    executable, module = notebook.cells[0].outputs[0]["text"].split()
    assert Path(executable).resolve() == Path(sys.executable).resolve()
    assert Path(module).resolve() == Path(depthlab.__file__).resolve()
    last = notebook.cells[-1].outputs
    assert any("all checks passed" in output.get("text", "") for output in last)
