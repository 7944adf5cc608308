"""`mlflow run . -e STAGE --env-manager local`: the stage logs into the run `mlflow run` creates."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from sepflow.io import read_json


@pytest.mark.slow
def test_mlflow_run_entry_point_logs_into_the_project_run(repo_copy: Callable) -> None:
    repo = repo_copy()
    repo.run("dvc", "repro", "filter_sep")
    uri = f"sqlite:///{repo.root / 'mlflow.db'}"
    repo.env["MLFLOW_TRACKING_URI"] = uri
    repo.run("mlflow", "run", ".", "-e", "build_features", "--env-manager", "local")

    assert (repo.root / "data/processed/features.parquet").is_file()
    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = client.search_runs(experiments, "tags.`mlflow.project.entryPoint` = 'build_features'")
    assert len(runs) == 1  # one run: the stage resumed the project run instead of opening a second
    (run,) = runs
    assert run.info.status == "FINISHED" and run.info.run_name == "build_features"
    assert run.data.tags["sepflow.stage"] == "build_features" and "sepflow.git_commit" in run.data.tags
    # The entry point's parameter (as given) beside the stage's own params and metrics.
    assert run.data.params["params"] == "params.yaml" and run.data.params["targets.horizons"] == "[1, 5]"
    assert run.data.metrics["rows"] > 0 and run.data.metrics["features"] > 0
    # The report the run logged is the tracked one, and the tracked one names no run (a fresh clone reproduces it).
    (repo.root / "logged").mkdir()
    logged = client.download_artifacts(run.info.run_id, "build_features.json", str(repo.root / "logged"))
    assert read_json(logged) == read_json(repo.root / "reports/build_features.json")
    assert "mlflow_run_id" not in read_json(logged)
    # Nothing left RUNNING anywhere (the project run, the stage run, the earlier DVC stages' runs).
    everything = client.search_runs(experiments, run_view_type=ViewType.ALL)
    assert everything and all(r.info.status == "FINISHED" for r in everything)
