"""Integration fixtures: running the notebooks on a pipeline run (see test_pipeline_walk_forward)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

# Appended to each notebook under test: what its sections computed, as one JSON line.
FACTS = {
    "01_explore_data": """
import json
print(json.dumps({"target": TARGET, "tickers": int(sep["ticker"].nunique()), "days": len(per_day),
                  "coverage": len(coverage), "returns": sorted(returns), "feature_ic": sorted(feature_ic.index),
                  "shown": list(shown), "rankings": rankings["target"].tolist(),
                  "importance": importance["feature"].tolist()}))
""",
    "02_compare_runs": """
import json
print(json.dumps({"stages": sorted(set(stage_runs["tags.sepflow.stage"])),
                  "train": sorted(zip(train_table["family"], train_table["target"], train_table["commit"])),
                  "walk_forward": sorted(zip(wf_table["family"], wf_table["target"], wf_table["commit"])),
                  "net_sharpe": {f: v for f, v in zip(wf_table["family"], wf_table["net_sharpe"]) if v == v},
                  "curves": {family: source["commit"] for family, source in sources.items()},
                  "models": sorted(zip(registry["model"], registry["aliases"]))}))
""",
}



@pytest.fixture()
def execute_notebook(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, str], tuple[dict[str, Any], int, str]]:
    """Run a copy's notebook with the repository as cwd; return its facts, figure count and printed text."""
    # The kernel inherits this environment: the copy's own mlflow.db, inline (not Agg) figures.
    for variable in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "MPLBACKEND"):
        monkeypatch.delenv(variable, raising=False)

    def execute(root: Path, name: str) -> tuple[dict[str, Any], int, str]:
        notebook = nbformat.read(root / "notebooks" / f"{name}.ipynb", as_version=4)
        notebook.cells.append(nbformat.v4.new_code_cell(FACTS[name]))
        client = NotebookClient(notebook, kernel_name="python3", resources={"metadata": {"path": str(root)}},
                                startup_timeout=300)  # a loaded CI machine starts kernels slowly
        client.execute()
        outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
        assert not [o for o in outputs if o.output_type == "error" or o.get("name") == "stderr"]
        figures = sum("image/png" in output.get("data", {}) for output in outputs)
        printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
        return json.loads(printed.strip().splitlines()[-1]), figures, printed

    return execute
