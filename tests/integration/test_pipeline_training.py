"""`dvc repro train_ensemble` on a tiny market: every family trained, registered as candidate."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mlflow.tracking import MlflowClient

from sepflow.io import read_json

pytestmark = pytest.mark.slow
FAMILIES = ("dummy", "random_forest", "xgboost", "lightgbm", "lstm", "ensemble")


def test_repro_trains_and_registers_every_family(repo_copy: Callable, named_research: Callable) -> None:
    repo = repo_copy(named_research("dir_5d", "label3_5d", "return_1d"))  # a target of every task
    repo.run("dvc", "repro", "train_ensemble")
    root = repo.root
    targets = read_json(root / "data/processed/selected_targets.json")["targets"]
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    for family in FAMILIES:
        report = read_json(root / f"reports/train/{family}_models.json")
        assert [m["target"] for m in report["models"]] == targets
        # DVC metrics: per target and segment, numbers only.
        metrics = read_json(root / f"reports/train/{family}.json")
        assert sorted(metrics) == sorted(targets)
        for target in targets:
            segments = metrics[target]
            assert all(isinstance(v, float) for segment in ("validation", "test") for v in segments[segment].values())
            if family != "dummy":  # constant predictions leave the dummy's ranking metrics undefined (left out)
                assert segments["test"]
        for target in targets:
            folder = root / "models" / family / target
            for name in ("model", "calibrator.json", "threshold.json", "features.json", "metrics.json",
                         "metadata.json"):
                assert (folder / name).exists(), folder / name
            metrics = read_json(folder / "metrics.json")
            assert {"train", "validation", "test", "overfit_margin"} <= set(metrics)
            version = client.get_model_version_by_alias(f"{family}-{target}", "candidate")
            assert version.tags["sepflow.family"] == family and version.tags["sepflow.target"] == target
        (run,) = repo.stage_runs(f"train@{family}")
        assert run.info.status == "FINISHED"
    ensemble = read_json(root / "models/ensemble" / targets[0] / "metadata.json")
    assert "ensemble" in ensemble and ensemble["ensemble"]["members"]

    # One family's hyperparameter reruns that family (and the ensemble over it), nothing upstream.
    repo.set_params({"train": {"xgboost": {"n_estimators": 50, "early_stopping_rounds": 10, "n_jobs": 1}}})
    out = repo.run("dvc", "repro", "train_ensemble").stdout
    assert "Running stage 'train@xgboost'" in out and "Running stage 'train_ensemble'" in out
    for stage in ("rank_targets", "select_features", "train@lightgbm", "train@lstm", "build_features"):
        assert f"Running stage '{stage}'" not in out
