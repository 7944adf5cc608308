"""train_family on a tiny synthetic panel: artifacts, leakage rules, determinism, resumable tuning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from sepflow.errors import ConfigError, DataValidationError
from sepflow.evaluation.calibration import fit_calibrator
from sepflow.evaluation.metrics import classification_metrics
from sepflow.features.dataset import DatasetBuilder
from sepflow.ranking.targets import panel_frame
from sepflow.training import train as train_module
from sepflow.training import tune as tune_module
from sepflow.training.artifacts import (
    ARTIFACTS,
    calibrator_from_json,
    calibrator_to_json,
    load_trained,
)
from sepflow.training.params import TrainParams
from sepflow.training.segments import segments_by_fraction
from sepflow.training.train import TrainResult, forward_returns_for, train_family

TARGETS = {"dir_5d": "classification", "label3_5d": "multiclass", "return_5d": "regression"}
FAMILIES = ["dummy", "random_forest", "xgboost", "lightgbm", "lstm", "ensemble"]
ASOF = "2018-07-06"
# Optuna flags the heartbeats of its SQLite storage (used to fail trials of killed processes) as experimental.
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


class Interrupted(Exception):
    """Stands in for a process stopped between trials."""


def untuned(params: TrainParams, **update: Any) -> TrainParams:
    return params.model_copy(update={"tuning": params.tuning.model_copy(update={"n_trials": {}}), **update})


def segment_rows(builder: DatasetBuilder, target: str, features: list[str], params: TrainParams):
    """The dataset, its panel (X, y) and the segments ``train_family`` cuts from them."""
    ds = builder.build(target, features)
    X, y, groups = panel_frame(ds)
    segments = segments_by_fraction(
        groups["date"], groups["label_end"], validation_fraction=params.validation_fraction,
        test_fraction=params.test_fraction, embargo_days=params.embargo_for(ds.meta["horizon"]),
    )
    return ds, X[features], y, segments


@pytest.fixture(scope="module")
def trained(builder, features, fast_params, tmp_path_factory) -> dict[tuple[str, str], TrainResult]:
    """Every family on every kind of target, written under one models/ root (the ensemble last)."""
    root = tmp_path_factory.mktemp("models")
    results = {}
    for target in TARGETS:
        ds = builder.build(target, features)
        returns = forward_returns_for(builder, ds)
        for family in FAMILIES:
            results[family, target] = train_family(
                family, target, ds, features, fast_params, 7, asof=ASOF, out_dir=root / family / target,
                optuna_storage=None, forward_returns=returns,
            )
    return results


def test_every_family_writes_its_folder(trained, features) -> None:
    for (family, target), result in trained.items():
        folder = result.out_dir
        assert folder.name == target and folder.parent.name == family
        assert all((folder / name).exists() for name in ARTIFACTS.values())
        assert not list(folder.parent.glob(".*tmp-*")), "staging folders must not survive"
        kind = "reg" if TARGETS[target] == "regression" else "clf"
        metadata = json.loads((folder / "metadata.json").read_text())
        assert metadata["artifact_name"] == result.artifact_name == f"{target}_{kind}_{ASOF}"
        assert metadata["seed"] == 7 and metadata["asof"] == ASOF and metadata["embargo_days"] == 5
        assert metadata["data"]["n_tickers"] > 5 and metadata["data"]["rows_used"] == metadata["data"]["n_rows"]
        assert json.loads((folder / "features.json").read_text())["features"] == features
        metrics = json.loads((folder / "metrics.json").read_text())
        assert set(metrics) == {"train", "validation", "test", "headline", "overfit_margin"}
        headline = metrics["headline"]
        assert headline == ("rank_ic" if kind == "reg" else "roc_auc")
        assert metadata["segments"]["validation"]["n_dates"] > 10
        if family != "dummy":  # a constant prediction has no rank IC
            margin = metrics["train"][headline] - metrics["validation"][headline]
            assert metrics["overfit_margin"] == pytest.approx(margin)
    segments = {json.dumps(r.metadata["segments"], sort_keys=True) for r in trained.values()}
    assert len(segments) == 1, "every family of every target is cut the same way"


def test_classifier_metrics_and_decision_rules(trained) -> None:
    binary = trained["xgboost", "dir_5d"]
    for segment in ("train", "validation", "test"):
        assert {"roc_auc", "balanced_accuracy", "log_loss", "rank_ic", "net_sharpe"} <= set(binary.metrics[segment])
    threshold = json.loads((binary.out_dir / "threshold.json").read_text())
    assert 0.05 <= threshold["threshold"] <= 0.95 and threshold["objective"] == "net_sharpe"
    assert threshold["positive_class"] == 1.0
    for family in ("xgboost", "lstm"):
        assert json.loads((trained[family, "label3_5d"].out_dir / "threshold.json").read_text())["threshold"] is None
        assert trained[family, "label3_5d"].metrics["test"]["roc_auc"] is not None
    regression = trained["lightgbm", "return_5d"]
    assert {"rmse", "mae", "ic", "rank_ic"} <= set(regression.metrics["test"])
    assert json.loads((regression.out_dir / "calibrator.json").read_text()) == {"method": "none"}
    assert trained["random_forest", "dir_5d"].trials is not None and trained["lstm", "dir_5d"].trials is None


def test_ensemble_weights_its_members(trained) -> None:
    for target in TARGETS:
        record = trained["ensemble", target].metadata["ensemble"]
        assert record["members"] == FAMILIES[:-1] and record["skipped"] == {}
        assert sum(record["weights"].values()) == pytest.approx(1.0)
        assert min(record["weights"].values()) >= 0


def test_ensemble_reuses_saved_member_outputs_exactly(trained, builder, features, fast_params, tmp_path) -> None:
    """Members' saved segment outputs stand in for predicting afresh: same weights, same metrics."""
    for target in TARGETS:
        ds = builder.build(target, features)
        member_dirs = {}
        for family in FAMILIES[:-1]:
            copy = shutil.copytree(trained[family, target].out_dir, tmp_path / target / family)
            (copy / "segment_outputs.parquet").unlink()  # forces the members to predict again
            member_dirs[family] = copy
        fresh = train_family("ensemble", target, ds, features, fast_params, 7, asof=ASOF,
                             out_dir=tmp_path / target / "ensemble", optuna_storage=None,
                             forward_returns=forward_returns_for(builder, ds), member_dirs=member_dirs)
        cached = trained["ensemble", target]
        assert fresh.metadata["ensemble"] == cached.metadata["ensemble"]
        assert fresh.metrics == cached.metrics
        assert (pd.read_parquet(fresh.out_dir / "segment_outputs.parquet")
                .equals(pd.read_parquet(cached.out_dir / "segment_outputs.parquet")))


@pytest.mark.parametrize("family", ["xgboost", "lstm", "ensemble"])
def test_saved_folder_reproduces_test_metrics(trained, builder, features, fast_params, family) -> None:
    """load_trained + predict_frame on the whole panel give the test metrics (the LSTM looks back
    into the rows before the test segment, as it did in training)."""
    _, X, y, segments = segment_rows(builder, "dir_5d", features, fast_params)
    loaded = load_trained(trained[family, "dir_5d"].out_dir)
    frame = loaded.predict_frame(X).iloc[segments["test"]]
    assert list(frame.columns) == ["probability", "calibrated_probability", "predicted_class"]
    above = frame["calibrated_probability"] > loaded.threshold
    assert np.array_equal(frame["predicted_class"], np.where(above, 1.0, 0.0))
    y_test = y.iloc[segments["test"]].to_numpy()
    proba = np.column_stack([1 - frame["calibrated_probability"], frame["calibrated_probability"]])
    again = classification_metrics(y_test, frame["predicted_class"].to_numpy(), proba, labels=loaded.model.classes_)
    expected = trained[family, "dir_5d"].metrics["test"]
    for name in ("roc_auc", "balanced_accuracy", "log_loss"):
        assert again[name] == pytest.approx(expected[name], abs=1e-6)


def test_multiclass_and_regression_frames(trained, builder, features) -> None:
    X = panel_frame(builder.build("label3_5d", features))[0][features]
    frame = load_trained(trained["xgboost", "label3_5d"].out_dir).predict_frame(X)
    labels = ["BEARISH", "BULLISH", "NEUTRAL"]
    assert {f"calibrated_probability_{c}" for c in labels} <= set(frame.columns)
    calibrated = frame[[f"calibrated_probability_{c}" for c in labels]].to_numpy()
    assert np.allclose(calibrated.sum(axis=1), 1.0)
    assert set(frame["predicted_class"]) <= set(labels)
    regression = load_trained(trained["xgboost", "return_5d"].out_dir).predict_frame(X)
    assert list(regression.columns) == ["prediction"] and regression.index.equals(X.index)


def test_feature_mismatch_fails_fast(trained, builder, features) -> None:
    loaded = load_trained(trained["xgboost", "dir_5d"].out_dir)
    X = panel_frame(builder.build("dir_5d", features))[0][features]
    with pytest.raises(DataValidationError, match=r"missing \['rvol_20'\]"):
        loaded.predict_frame(X.drop(columns="rvol_20"))
    with pytest.raises(DataValidationError, match=r"extra \['noise'\]"):
        loaded.predict_frame(X.assign(noise=0.0))
    with pytest.raises(DataValidationError, match="reordered: column 0 is 'ret_20d'"):
        loaded.predict_frame(X[[features[1], features[0], *features[2:]]])


def test_same_seed_gives_identical_files(builder, features, fast_params, tmp_path: Path) -> None:
    ds = builder.build("dir_5d", features)
    for run in ("a", "b"):
        train_family("xgboost", "dir_5d", ds, features, fast_params, 3, asof=ASOF,
                     out_dir=tmp_path / run / "xgboost" / "dir_5d", optuna_storage=None)
    for name in ("metrics.json", "metadata.json", "threshold.json", "calibrator.json", "model/model.ubj"):
        first = (tmp_path / "a" / "xgboost" / "dir_5d" / name).read_bytes()
        assert first == (tmp_path / "b" / "xgboost" / "dir_5d" / name).read_bytes(), name


def test_calibrator_and_threshold_see_validation_rows_only(
    builder, features, fast_params, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}
    real_threshold = train_module.tune_threshold

    def spy_calibrator(proba, y, method, *, classes):
        seen["calibrator"] = (np.asarray(proba), np.asarray(y))
        return fit_calibrator(proba, y, method, classes=classes)

    def spy_threshold(proba, y, **kwargs):
        seen["threshold"] = (np.asarray(proba), kwargs)
        return real_threshold(proba, y, **kwargs)

    monkeypatch.setattr(train_module, "fit_calibrator", spy_calibrator)
    monkeypatch.setattr(train_module, "tune_threshold", spy_threshold)
    params = untuned(fast_params)
    ds, X, y, segments = segment_rows(builder, "dir_5d", features, params)
    returns = forward_returns_for(builder, ds)
    result = train_family("xgboost", "dir_5d", ds, features, params, 3, asof=ASOF,
                          out_dir=tmp_path / "xgboost" / "dir_5d", optuna_storage=None, forward_returns=returns)

    validation = segments["validation"]
    proba, labels = seen["calibrator"]
    assert np.array_equal(labels, y.iloc[validation].to_numpy())
    assert np.array_equal(proba, result.model.predict_proba(X.iloc[validation]))

    _, kwargs = seen["threshold"]
    info = result.metadata["segments"]["validation"]
    dates = pd.to_datetime(kwargs["dates"])
    assert dates.min() >= pd.Timestamp(info["start"]) and dates.max() <= pd.Timestamp(info["end"])
    assert len(np.unique(dates)) == -(-info["n_dates"] // 5), "the book trades every 5th validation date"
    assert kwargs["periods_per_year"] == pytest.approx(252 / 5)
    assert json.loads((result.out_dir / "threshold.json").read_text())["objective"] == "net_sharpe"

    without_returns = train_family("xgboost", "dir_5d", ds, features, params, 3, asof=ASOF,
                                   out_dir=tmp_path / "plain" / "dir_5d", optuna_storage=None)
    assert json.loads((without_returns.out_dir / "threshold.json").read_text())["objective"] == "balanced_accuracy"
    assert len(seen["threshold"][0]) == len(validation)


def test_calibrator_json_round_trip_is_exact() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=400)
    y = (rng.uniform(size=400) < p).astype(float)
    three = rng.dirichlet([1.0, 1.0, 1.0], size=400)
    labels = np.array(["A", "B", "C"])[[rng.choice(3, p=row) for row in three]]
    probe = rng.uniform(size=50)
    for method in ("isotonic", "sigmoid"):
        binary = fit_calibrator(p, y, method)
        spec = json.loads(json.dumps(calibrator_to_json(binary)))
        assert np.array_equal(calibrator_from_json(spec).transform(probe), binary.transform(probe))
        multi = fit_calibrator(three, labels, method, classes=["A", "B", "C"])
        spec = json.loads(json.dumps(calibrator_to_json(multi)))
        assert np.array_equal(calibrator_from_json(spec).transform(three[:50]), multi.transform(three[:50]))
    assert calibrator_from_json(calibrator_to_json(None)) is None


def test_interrupted_tuning_resumes_to_n_trials(
    builder, features, fast_params, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    params = fast_params.model_copy(
        update={"tuning": fast_params.tuning.model_copy(update={"n_trials": {"xgboost": 4}})})
    ds = builder.build("dir_5d", features)
    real_tune = tune_module.tune

    def stop_after_two(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number + 1 >= 2:
            raise Interrupted

    def train(out: str, **kwargs: Any) -> TrainResult:
        return train_family("xgboost", "dir_5d", ds, features, params, 3, asof=ASOF,
                            out_dir=tmp_path / out / "xgboost" / "dir_5d", optuna_storage=storage, **kwargs)

    monkeypatch.setattr(tune_module, "tune", lambda *a, **k: real_tune(*a, **{**k, "callbacks": [stop_after_two]}))
    with pytest.raises(Interrupted):
        train("first")
    assert not (tmp_path / "first" / "xgboost" / "dir_5d").exists(), "an interrupted run writes nothing"
    assert len(optuna.load_study(study_name="xgboost-dir_5d", storage=storage).trials) == 2
    monkeypatch.setattr(tune_module, "tune", real_tune)
    result = train("second")
    study = optuna.load_study(study_name="xgboost-dir_5d", storage=storage)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert result.metadata["tuning"]["n_complete_trials"] == 4 and len(result.trials) == 4
    fingerprint = study.user_attrs

    # Other features: the stored trials scored another problem, so the study starts afresh.
    train_family("xgboost", "dir_5d", ds, features[:-1], params, 3, asof=ASOF,
                 out_dir=tmp_path / "third" / "xgboost" / "dir_5d", optuna_storage=storage)
    restarted = optuna.load_study(study_name="xgboost-dir_5d", storage=storage)
    assert len(restarted.trials) == 4 and restarted.user_attrs != fingerprint


def test_ensemble_skips_members_trained_on_other_features(builder, features, fast_params, tmp_path: Path) -> None:
    params = untuned(fast_params, families=["dummy", "xgboost", "ensemble"])
    ds = builder.build("dir_5d", features)

    def train(family: str, inputs: list[str]) -> TrainResult:
        return train_family(family, "dir_5d", ds, inputs, params, 3, asof=ASOF,
                            out_dir=tmp_path / family / "dir_5d", optuna_storage=None)

    with pytest.raises(ConfigError, match="no usable ensemble member"):
        train("ensemble", features)
    train("dummy", features)
    train("xgboost", features[:-1])
    record = train("ensemble", features).metadata["ensemble"]
    assert record["members"] == ["dummy"] and record["skipped"] == {"xgboost": "trained on other features"}


def test_bad_requests_are_refused(builder, features, fast_params, tmp_path: Path) -> None:
    ds = builder.build("dir_5d", features)

    def train(family: str = "dummy", target: str = "dir_5d", inputs: list[str] = features,
              params: TrainParams = fast_params, **kwargs: Any) -> TrainResult:
        return train_family(family, target, ds, inputs, params, 3, asof=kwargs.pop("asof", ASOF),
                            out_dir=tmp_path / family / target, optuna_storage=None, **kwargs)

    with pytest.raises(ConfigError, match="not 'return_5d'"):
        train(target="return_5d")
    with pytest.raises(ConfigError, match=r"unknown \['volume'\]"):
        train(inputs=[*features, "volume"])
    with pytest.raises(ConfigError, match="asof"):
        train(asof="July 6")
    with pytest.raises(DataValidationError, match="forward_returns"):
        train(forward_returns=np.zeros(3))
    clash = fast_params.model_copy(update={"xgboost": {**fast_params.xgboost, "max_depth": 3}})
    with pytest.raises(ConfigError, match=r"fixes \['max_depth'\]"):
        train("xgboost", params=clash)


def test_max_samples_per_symbol_caps_rows(builder, features, fast_params, tmp_path: Path) -> None:
    params = untuned(fast_params, max_samples_per_symbol=60)
    ds = builder.build("return_5d", features)
    result = train_family("dummy", "return_5d", ds, features, params, 3, asof=ASOF,
                          out_dir=tmp_path / "dummy" / "return_5d", optuna_storage=None)
    assert result.metadata["data"]["rows_used"] == ds.tickers.nunique() * 60 < len(ds.y)
    assert sum(s["n_rows"] for s in result.metadata["segments"].values()) < 60 * ds.tickers.nunique()
