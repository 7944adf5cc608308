"""Registry: register trained folders as pyfunc versions, move aliases, gate and audit promotions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sepflow.errors import ConfigError, SepflowError
from sepflow.features.dataset import DatasetBuilder, assemble_features_frame
from sepflow.features.spec import FeatureParams, TargetParams
from sepflow.sep.synthetic import SyntheticParams, generate_market
from sepflow.sep.universe import UniverseParams, filter_universe
from sepflow.tracking.registry import (
    VersionMetrics,
    headline_gate,
    model_name,
    promote,
    register_trained,
    version_metrics,
)
from sepflow.training.artifacts import load_trained
from sepflow.training.params import TrainParams
from sepflow.training.pyfunc import predict_records
from sepflow.training.train import train_family

FEATURES = ["ret_5d", "ret_20d", "ret_60d", "sma_ratio_20", "rsi_14", "rvol_20"]
NAME = model_name("xgboost", "dir_5d")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two trained xgboost folders for dir_5d that differ in tree depth (so their predictions differ)."""
    market = generate_market(SyntheticParams(n_tickers=30, n_days=400, signal_strength=3))
    universe = filter_universe(market.sep, market.tickers, UniverseParams(min_history_days=60, liquidity_window=20))
    frame, manifest = assemble_features_frame(universe.sep, FeatureParams(), TargetParams(horizons=[5]))
    ds = DatasetBuilder.from_frame(frame, manifest).build("dir_5d", FEATURES)
    root = tmp_path_factory.mktemp("models")
    out = []
    for depth in (2, 4):
        params = TrainParams.model_validate({
            "tuning": {"n_trials": {}, "storage": None},
            "xgboost": {"n_estimators": 20, "early_stopping_rounds": 5, "n_jobs": 1, "max_depth": depth},
        })
        folder = root / f"depth{depth}" / "xgboost" / "dir_5d"
        train_family("xgboost", "dir_5d", ds, FEATURES, params, 1, asof="2018-07-06", out_dir=folder,
                     optuna_storage=None)
        out.append(folder)
    return out


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway SQLite tracking store with its artifacts in the same temporary folder."""
    folder = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
        experiment = mlflow.create_experiment("registry", artifact_location=(folder / "artifacts").as_uri())
        mlflow.set_experiment(experiment_id=experiment)
        yield experiment
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def registered(tracking: str, folders: list[Path]) -> list[int]:
    """Version 1 logged to a finished run (resumed), version 2 inside the active run."""
    with mlflow.start_run() as run:
        pass
    versions = [register_trained(folders[0], NAME, run.info.run_id)]
    with mlflow.start_run() as run:
        versions.append(register_trained(folders[1], NAME, run.info.run_id))
    return versions


def test_versions_and_candidate_alias(registered: list[int], folders: list[Path]) -> None:
    assert registered == [1, 2]
    client = MlflowClient()
    assert client.get_model_version_by_alias(NAME, "candidate").version == 2
    tags = client.get_model_version(NAME, "2").tags
    assert tags["sepflow.artifact_name"] == "dir_5d_clf_2018-07-06"
    assert tags["sepflow.family"] == "xgboost" and tags["sepflow.headline_metric"] == "roc_auc"
    saved = load_trained(folders[1]).metrics
    assert version_metrics(NAME, 2).headline_value("test") == saved["test"]["roc_auc"]
    assert version_metrics(NAME, 2).metrics["overfit_margin"] == saved["overfit_margin"]


def test_pyfunc_from_alias_matches_load_trained(registered: list[int], folders: list[Path]) -> None:
    for alias_or_version, folder in (("@candidate", folders[1]), ("/1", folders[0])):
        trained = load_trained(folder)
        example = trained.input_example()
        served = mlflow.pyfunc.load_model(f"models:/{NAME}{alias_or_version}").predict(example)
        expected = predict_records(trained, example)
        pd.testing.assert_frame_equal(served, expected)
        direct = trained.predict_frame(example.set_index(["ticker", "date"]))
        assert np.array_equal(served["calibrated_probability"], direct["calibrated_probability"])
    example = load_trained(folders[0]).input_example()
    one = mlflow.pyfunc.load_model(f"models:/{NAME}/1").predict(example)
    two = mlflow.pyfunc.load_model(f"models:/{NAME}/2").predict(example)
    assert not np.array_equal(one["probability"], two["probability"])


def test_promotion_gate_force_and_audit(registered: list[int]) -> None:
    client = MlflowClient()
    first = promote(NAME, gate=headline_gate(segment="validation"), user="ci")
    assert (first.version, first.previous_version, first.forced) == (2, None, False)
    assert client.get_model_version_by_alias(NAME, "production").version == 2
    tags = client.get_model_version(NAME, "2").tags
    assert tags["sepflow.promoted_by"] == "ci" and tags["sepflow.previous_version"] == "none"
    assert tags["sepflow.promotion_reason"] == "gate passed" and tags["sepflow.promoted_at"]

    def never(candidate: VersionMetrics, production: VersionMetrics | None) -> bool:
        return False

    with pytest.raises(SepflowError, match="refuses") as refused:
        promote(NAME, version=1, gate=never)
    assert "candidate v1" in str(refused.value) and "production v2" in str(refused.value)
    assert "test.roc_auc" in str(refused.value)
    assert client.get_model_version_by_alias(NAME, "production").version == 2
    with pytest.raises(ConfigError, match="non-empty reason"):
        promote(NAME, version=1, gate=never, force=True, reason="  ")

    forced = promote(NAME, version=1, gate=never, force=True, reason="rollback after incident", user="oncall")
    assert (forced.version, forced.previous_version, forced.forced) == (1, 2, True)
    assert client.get_model_version_by_alias(NAME, "production").version == 1
    tags = client.get_model_version(NAME, "1").tags
    assert tags["sepflow.promotion_reason"] == "rollback after incident"
    assert tags["sepflow.previous_version"] == "2" and tags["sepflow.promotion_forced"] == "true"
    assert tags["sepflow.promoted_by"] == "oncall"

    with pytest.raises(SepflowError, match="no version with alias 'staging'"):
        promote(NAME, alias_from="staging")


def test_headline_gate() -> None:
    def version(number: int, auc: float) -> VersionMetrics:
        return VersionMetrics(number, "roc_auc", {"test.roc_auc": auc})

    gate = headline_gate(min_delta=0.01)
    assert gate(version(2, 0.56), None)
    assert not gate(version(2, float("nan")), None)
    assert gate(version(2, 0.575), version(1, 0.56))
    assert gate(version(2, 0.5), version(1, float("nan")))
    assert not gate(version(2, 0.565), version(1, 0.56))
