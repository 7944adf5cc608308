"""notebooks/: stored without outputs (test_pipeline_walk_forward executes both on a tiny pipeline run)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ["01_explore_data", "02_compare_runs"]


def _code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    cells = _code_cells(notebook)
    assert cells and all(cell.outputs == [] and cell.execution_count is None for cell in cells)


def test_notebook_kernel_is_this_interpreter() -> None:
    # ipykernel's spec says `python`, which jupyter_client replaces with sys.executable: the venv's.
    assert KernelManager(kernel_name="python3").format_kernel_cmd()[0] == sys.executable
