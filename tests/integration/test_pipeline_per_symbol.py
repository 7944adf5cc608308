"""`dvc repro train@dummy` with `train.scope: per_symbol` on a tiny market: the stage's MLflow records
and registered routing model, and `train.scope` as a parameter DVC reruns the stage for."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mlflow.tracking import MlflowClient

from sepflow.io import read_json

pytestmark = pytest.mark.slow


def test_per_symbol_stage_logs_every_ticker_and_registers_the_router(
    repo_copy: Callable, named_research: Callable,
) -> None:
    repo = repo_copy({"train": {"families": ["dummy"], "scope": "per_symbol", "max_workers": 2},
                      **named_research("dir_5d")})
    repo.run("dvc", "repro", "train@dummy")
    root = repo.root
    targets = read_json(root / "data/processed/selected_targets.json")["targets"]
    report = read_json(root / "reports/train/dummy_models.json")
    assert [m["target"] for m in report["models"]] == targets and not report["failed"]

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    (parent,) = repo.stage_runs("train@dummy")
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.data.tags["sepflow.target"] for r in children) == sorted(targets)
    for child, row in zip(sorted(children, key=lambda r: targets.index(r.data.tags["sepflow.target"])),
                          report["models"], strict=True):
        target = row["target"]
        index = read_json(root / "models/dummy" / target / "per_symbol/index.json")
        assert row["tickers"] == len(index["tickers"]) > 1
        logged = {a.path for a in client.list_artifacts(child.info.run_id, "per_symbol")}
        assert {"per_symbol/index.json", "per_symbol/metrics.csv", "per_symbol/metrics_table.json"} <= logged
        assert {f"per_symbol/{entry['folder']}" for entry in index["tickers"].values()} <= logged
        assert child.data.metrics["n_tickers"] == len(index["tickers"])
        version = client.get_model_version_by_alias(f"dummy-{target}", "candidate")
        assert version.run_id == child.info.run_id and version.tags["sepflow.scope"] == "per_symbol"

    # How many workers ran changes no output, so DVC has nothing to redo; the scope does.
    repo.set_params({"train": {"max_workers": 1}})
    assert "Running stage 'train@dummy'" not in repo.run("dvc", "repro", "train@dummy").stdout
    repo.set_params({"train": {"scope": "pooled"}})
    assert "Running stage 'train@dummy'" in repo.run("dvc", "repro", "train@dummy").stdout
    folder = root / "models/dummy" / targets[0]
    assert (folder / "metrics.json").exists() and not (folder / "per_symbol").exists()
