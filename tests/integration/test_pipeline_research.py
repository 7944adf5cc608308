"""`dvc repro select_features` on a tiny market: features, ranking, selection, precise reruns."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sepflow.io import read_json, read_panel

pytestmark = pytest.mark.slow


def test_repro_through_select_features(repo_copy: Callable) -> None:
    repo = repo_copy()
    repo.run("dvc", "repro", "select_features")
    root = repo.root

    manifest = read_json(root / "data/processed/features_manifest.json")
    features = read_panel(root / "data/processed/features.parquet")
    assert list(features.columns[:3]) == ["ticker", "date", "in_universe"]
    assert manifest["feature_names"] == [c for c in features.columns if c in set(manifest["feature_names"])]

    rankings = pd.read_csv(root / "reports/ranking/target_predictability_rankings.csv")
    assert set(rankings["target"]) == set(manifest["targets"])
    selected = read_json(root / "data/processed/selected_targets.json")["targets"]
    assert selected == rankings.loc[rankings["selected"], "target"].tolist() and len(selected) == 2
    chosen = read_json(root / "data/processed/selected_features.json")
    assert set(chosen) == set(selected)
    for target, names in chosen.items():
        folder = root / "reports/selection" / target
        assert (folder / "selected_features.txt").read_text().split() == names
        assert (folder / "feature_importance_multi_model.csv").exists()
        assert (folder / "model_agreement_matrix.csv").exists()

    for stage in ("build_features", "rank_targets", "select_features"):
        (run,) = repo.stage_runs(stage)
        assert run.info.status == "FINISHED"
    (rank_run,) = repo.stage_runs("rank_targets")
    artifacts = {a.path for a in MlflowClient(f"sqlite:///{root / 'mlflow.db'}").list_artifacts(rank_run.info.run_id)}
    assert {"target_predictability_rankings.csv", "target_scores.png"} <= artifacts

    # A selection param reruns select_features only; an unrelated section reruns neither.
    repo.set_params({"selection": {"top_m": 4}})
    out = repo.run("dvc", "repro", "select_features").stdout
    assert "Running stage 'select_features'" in out and "Running stage 'rank_targets'" not in out
    repo.set_params({"ingest": {"asof": None}})  # rewritten, unchanged: nothing reruns
    assert "Running stage" not in repo.run("dvc", "repro", "select_features").stdout
