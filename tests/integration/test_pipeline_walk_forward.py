"""`dvc repro walk_forward@FAMILY` on a tiny market: reports, DVC metrics/plots/params diffs,
version tags read by the promotion gate, and experiments logging to the same MLflow database."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mlflow.tracking import MlflowClient

from sepflow.io import read_json, read_panel
from sepflow.training.walk_forward import PREDICTION_COLUMNS

pytestmark = pytest.mark.slow


def test_walk_forward_stage_reports_tags_and_diffs(repo_copy: Callable, named_research: Callable) -> None:
    repo = repo_copy({"train": {"families": ["dummy", "xgboost"]}, **named_research("dir_5d", "return_5d")})
    repo.run("dvc", "repro", "walk_forward@xgboost", "walk_forward@dummy")
    root = repo.root
    targets = read_json(root / "data/processed/selected_targets.json")["targets"]
    out = root / "reports/walk_forward/xgboost"
    predictions = read_panel(out / "predictions.parquet")
    assert list(predictions.columns) == PREDICTION_COLUMNS
    assert sorted(predictions["target"].unique()) == sorted(targets)
    report = read_json(out / "metrics.json")
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    for target in targets:
        overall = report["targets"][target]["overall"]
        assert overall["n_folds"] == 2 and {"rank_ic", "ic", "icir", "net_sharpe", "gross_sharpe", "sortino",
                                            "max_drawdown", "turnover"} <= set(overall)
        assert len(report["targets"][target]["folds"]) == 2
        for plot in ("equity", "rolling_ic", "folds"):
            assert (out / "plots" / plot / f"{target}.csv").exists()
        # The gate's input: the evaluated candidate carries the walk-forward summary.
        version = client.get_model_version_by_alias(f"xgboost-{target}", "candidate")
        assert float(version.tags["sepflow.wf.rank_ic"]) == pytest.approx(overall["rank_ic"])
        assert version.tags["sepflow.wf.run_id"] == report["mlflow_run_id"]
    (run,) = repo.stage_runs("walk_forward@xgboost")
    assert run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "walk_forward")}
    assert f"walk_forward/equity_{targets[0]}.png" in artifacts
    assert "walk_forward/predictions.parquet" in artifacts

    metrics = repo.run("dvc", "metrics", "show").stdout
    assert "reports/walk_forward/xgboost/metrics.json" in metrics
    repo.run("dvc", "plots", "show", "-o", str(root / "plots_html"))
    assert (root / "plots_html" / "index.html").exists()

    # Another test length: DVC's diffs across two commits show the walk-forward numbers.
    repo.commit("first walk-forward")
    repo.set_params({"walk_forward": {"test_days": 30}})
    rerun = repo.run("dvc", "repro", "walk_forward@xgboost").stdout
    assert "Running stage 'walk_forward@xgboost'" in rerun and "Running stage 'train@xgboost'" not in rerun
    repo.commit("shorter test blocks")
    params_diff = repo.run("dvc", "params", "diff", "HEAD~1", "HEAD").stdout
    assert "walk_forward.test_days" in params_diff
    metrics_diff = repo.run("dvc", "metrics", "diff", "HEAD~1", "HEAD").stdout
    assert "reports/walk_forward/xgboost/metrics.json" in metrics_diff and "rank_ic" in metrics_diff
    repo.run("dvc", "plots", "diff", "HEAD~1", "HEAD", "-o", str(root / "plots_diff"))
    assert (root / "plots_diff" / "index.html").exists()

    # An experiment logs to the same database as a plain `dvc repro`.
    before = len(repo.stage_runs("walk_forward@xgboost"))
    repo.run("dvc", "exp", "run", "-S", "walk_forward.max_folds=1", "walk_forward@xgboost")
    assert len(repo.stage_runs("walk_forward@xgboost")) == before + 1
