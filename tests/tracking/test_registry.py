"""Registry: register trained folders as pyfunc versions, move aliases, gate and audit promotions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sepflow.config import load_params
from sepflow.errors import ConfigError, SepflowError
from sepflow.features.dataset import DatasetBuilder, assemble_features_frame
from sepflow.features.spec import FeatureParams, TargetParams
from sepflow.sep.synthetic import SyntheticParams, generate_market
from sepflow.sep.universe import UniverseParams, filter_universe
from sepflow.tracking.gate import PromotionParams, VersionMetrics, judge, side_by_side
from sepflow.tracking.registry import (
    PromotionRefused,
    model_name,
    promote,
    register_trained,
    version_metrics,
    walk_forward_gate,
)
from sepflow.training.artifacts import load_trained
from sepflow.training.params import TrainParams
from sepflow.training.pyfunc import predict_records
from sepflow.training.train import train_family

FEATURES = ["ret_5d", "ret_20d", "ret_60d", "sma_ratio_20", "rsi_14", "rvol_20"]
NAME = model_name("xgboost", "dir_5d")
REPO = Path(__file__).resolve().parents[2]


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
    assert version_metrics(NAME, 2).metrics["test.roc_auc"] == saved["test"]["roc_auc"]
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


def _tag_walk_forward(name: str, version: int, **metrics: float) -> None:
    """What the walk-forward stage leaves on the version it evaluated."""
    client = MlflowClient()
    for metric, value in metrics.items():
        client.set_model_version_tag(name, str(version), f"sepflow.wf.{metric}", repr(float(value)))
    client.set_model_version_tag(name, str(version), "sepflow.wf.run_id", "0123456789abcdef")


def test_promotion_gate_force_audit_and_rollback(registered: list[int]) -> None:
    client = MlflowClient()
    gate = walk_forward_gate(PromotionParams())
    with pytest.raises(PromotionRefused, match=r"run `dvc repro walk_forward@xgboost` first"):
        promote(NAME, gate=gate)

    _tag_walk_forward(NAME, 1, net_sharpe=0.4, rank_ic=0.02, n_folds=4)
    _tag_walk_forward(NAME, 2, net_sharpe=0.9, rank_ic=0.05, n_folds=4)
    dummy = model_name("dummy", "dir_5d")  # the baseline: no production version of NAME yet
    client.create_registered_model(dummy)
    source = client.get_model_version(NAME, "1").source  # any model files do: the gate reads tags only
    client.create_model_version(dummy, source=source, tags={"sepflow.family": "dummy"})
    client.set_registered_model_alias(dummy, "candidate", "1")
    _tag_walk_forward(dummy, 1, net_sharpe=0.1, n_folds=4)  # constant predictions: no rank IC tag

    first = promote(NAME, gate=gate, user="ci")
    assert (first.version, first.previous_version, first.forced) == (2, None, False)
    assert "dummy-dir_5d v1 (@candidate)" in first.comparison and "0.0000*" in first.comparison
    assert client.get_model_version_by_alias(NAME, "production").version == 2
    tags = client.get_model_version(NAME, "2").tags
    assert tags["sepflow.promoted_by"] == "ci" and tags["sepflow.previous_version"] == "none"
    assert tags["sepflow.promotion_reason"] == "gate passed" and tags["sepflow.promoted_at"]
    assert tags["sepflow.promotion_reference"] == "dummy-dir_5d v1"

    with pytest.raises(PromotionRefused, match="net_sharpe, rank_ic not better than") as refused:
        promote(NAME, version=1, gate=gate)
    table = refused.value.comparison
    assert "xgboost-dir_5d v1" in table and "xgboost-dir_5d v2 (@production)" in table
    assert "-0.5000" in table and table.count("FAIL") == 2
    assert client.get_model_version_by_alias(NAME, "production").version == 2
    with pytest.raises(ConfigError, match="non-empty reason"):
        promote(NAME, version=1, gate=gate, force=True, reason="  ")

    # Rolling back is promoting the older version; it is worse, so it takes force and a reason.
    rollback = promote(NAME, version=1, gate=gate, force=True, reason="rollback after incident", user="oncall")
    assert (rollback.version, rollback.previous_version, rollback.forced) == (1, 2, True)
    assert client.get_model_version_by_alias(NAME, "production").version == 1
    tags = client.get_model_version(NAME, "1").tags
    assert tags["sepflow.promotion_reason"] == "rollback after incident"
    assert tags["sepflow.previous_version"] == "2" and tags["sepflow.promotion_forced"] == "true"
    assert tags["sepflow.promoted_by"] == "oncall" and tags["sepflow.promotion_reference"] == NAME + " v2"
    # ...and forward again: v2 beats production v1, so the gate alone lets it back.
    again = promote(NAME, gate=gate)
    assert (again.version, again.previous_version, again.forced) == (2, 1, False)
    assert not promote(NAME, gate=gate).changed  # already production: nothing to do, nothing tagged

    with pytest.raises(SepflowError, match="no version with alias 'staging'"):
        promote(NAME, alias_from="staging", gate=gate)
    with pytest.raises(SepflowError, match="has no version 7"):
        promote(NAME, version=7, gate=gate)


def _version(number: int, name: str = "xgboost-dir_5d", **walk_forward: float) -> VersionMetrics:
    return VersionMetrics(name, number, name.split("-")[0], "dir_5d", "roc_auc", {}, walk_forward)


def test_judge_margins_directions_and_undefined_values() -> None:
    params = PromotionParams(metrics=["net_sharpe", "rank_ic"], min_delta={"net_sharpe": 0.1})
    production = _version(1, net_sharpe=0.5, rank_ic=0.02)
    assert judge(_version(2, net_sharpe=0.61, rank_ic=0.03), production, params).allowed
    short = judge(_version(2, net_sharpe=0.59, rank_ic=0.03), production, params)  # better, not by the margin
    assert not short.allowed and [c.passed for c in short.checks] == [False, True]
    assert not judge(_version(2, net_sharpe=0.7, rank_ic=0.02), production, params).allowed  # a tie is no win

    undefined = judge(_version(2, net_sharpe=0.7, rank_ic=float("nan")), production, params)
    assert not undefined.allowed and "no defined walk-forward rank_ic" in undefined.summary()

    # The dummy's constant predictions have no rank IC: no skill (0) stands in for it.
    dummy = _version(1, "dummy-dir_5d", net_sharpe=0.0, rank_ic=float("nan"))
    versus_dummy = judge(_version(2, net_sharpe=0.2, rank_ic=0.01), dummy, params, reference_alias="candidate")
    assert versus_dummy.allowed and versus_dummy.checks[1].no_skill and versus_dummy.checks[1].reference == 0.0
    assert "no-skill value 0 stands in" in side_by_side(_version(2, net_sharpe=0.2, rank_ic=0.01), versus_dummy)

    errors = PromotionParams(metrics=["rmse"], min_delta={"rmse": 0.01})  # smaller is better
    assert judge(_version(2, rmse=0.08), _version(1, rmse=0.1), errors).allowed
    assert not judge(_version(2, rmse=0.095), _version(1, rmse=0.1), errors).allowed
    unknown = judge(_version(2, rmse=0.08), _version(1, net_sharpe=1.0), errors)  # no rmse, no stand-in
    assert not unknown.allowed and unknown.summary() == "xgboost-dir_5d v1 has no defined walk-forward rmse to compare with"

    alone = judge(_version(2, net_sharpe=1.0, rank_ic=0.1), None, params)
    assert not alone.allowed and "nothing to compare with" in alone.notes


def test_walk_forward_gate_chooses_its_reference(add_version) -> None:
    gate = walk_forward_gate(PromotionParams())
    xgb = "xgboost-dir_5d"
    add_version("dummy", walk_forward={"net_sharpe": 0.3, "rank_ic": 0.0})  # dummy v1
    add_version("dummy")  # dummy v2, the candidate, never walk-forward tested
    add_version("xgboost", walk_forward={"net_sharpe": 0.5, "rank_ic": 0.02})
    decision = gate(version_metrics(xgb, 1))
    assert decision.reference is None and not decision.allowed  # dummy@candidate untested, v1 unnamed
    assert "dummy-dir_5d v2 (@candidate) has no walk-forward metrics" in decision.notes

    MlflowClient().set_registered_model_alias("dummy-dir_5d", "production", "1")
    decision = gate(version_metrics(xgb, 1))
    assert decision.allowed and decision.reference_label == "dummy-dir_5d v1 (@production)"

    # Once the model serves, its production version is the reference, whatever the baseline says.
    promote(xgb, gate=gate)
    add_version("xgboost", walk_forward={"net_sharpe": 0.4, "rank_ic": 0.03})
    decision = gate(version_metrics(xgb, 2))
    assert decision.reference_label == "xgboost-dir_5d v1 (@production)" and not decision.allowed

    # The baseline is not judged against itself: dummy v1 (its own production) has nothing to beat.
    decision = gate(version_metrics("dummy-dir_5d", 1))
    assert decision.reference is None and "nothing to compare with" in decision.notes
    no_baseline = walk_forward_gate(PromotionParams(baseline_family=None))
    assert no_baseline(version_metrics("lightgbm-dir_5d", add_version("lightgbm", walk_forward={
        "net_sharpe": 2.0, "rank_ic": 0.2}))).reference is None


def test_promotion_params_in_params_yaml(tmp_path: Path) -> None:
    assert load_params(REPO / "params.yaml").promotion == PromotionParams()  # params.yaml states the defaults
    for section, complaint in (
        ("{min_delta: {roc_auc: 0.01}}", r"promotion: .*min_delta names metrics the gate does not use: \['roc_auc'\]"),
        ("{baseline_family: naive}", "promotion.baseline_family"),
        ("{metrics: []}", "promotion.metrics"),
        ("{min_delta: {net_sharpe: .nan}}", "promotion.min_delta"),
    ):
        path = tmp_path / "params.yaml"
        path.write_text(f"promotion: {section}\n")
        with pytest.raises(ConfigError, match=complaint):
            load_params(path)
