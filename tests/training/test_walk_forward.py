"""Walk-forward: folds train only on the past, predictions are out of sample and deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sepflow.errors import ConfigError
from sepflow.features.dataset import Dataset, DatasetBuilder
from sepflow.training.artifacts import TrainedModel, load_trained
from sepflow.training.params import TrainParams
from sepflow.training.train import forward_returns_for, train_family
from sepflow.training.walk_forward import (
    PREDICTION_COLUMNS,
    WalkForwardParams,
    walk_forward,
    wf_tags,
)

WF = WalkForwardParams(train_days=120, test_days=40, max_folds=3, max_samples_per_symbol=None)


def _trained(family: str, target: str, builder: DatasetBuilder, features: list[str], params: TrainParams,
             folder: Path) -> tuple[TrainedModel, Dataset, np.ndarray]:
    ds = builder.build(target, features)
    returns = forward_returns_for(builder, ds)
    train_family(family, target, ds, features, params, 7, asof="2020-01-02", out_dir=folder,
                 optuna_storage=None, forward_returns=returns)
    return load_trained(folder), ds, returns


@pytest.fixture(scope="module")
def xgb_dir(builder, features, fast_params, tmp_path_factory):
    return _trained("xgboost", "dir_5d", builder, features, fast_params, tmp_path_factory.mktemp("xgb") / "m")


def test_folds_train_only_before_test_start_minus_embargo(xgb_dir, fast_params) -> None:
    trained, ds, returns = xgb_dir
    result = walk_forward(trained, ds, returns, WF, fast_params)
    unique = np.unique(ds.dates)
    embargo = max(WF.embargo_days, 5)
    assert len(result.folds) == 3
    for fold in result.folds.to_dict(orient="records"):
        start = np.searchsorted(unique, np.datetime64(fold["test_start"]))
        last_allowed = unique[start - embargo - 1]
        assert fold["train_end"] <= last_allowed
        assert fold["fit_end"] < fold["train_end"]  # the validation tail comes after the fitted rows
        assert fold["train_label_end"] < fold["test_start"]  # purged: no training label reaches the test block


def test_predictions_are_out_of_sample_and_complete(xgb_dir, fast_params) -> None:
    trained, ds, returns = xgb_dir
    result = walk_forward(trained, ds, returns, WF, fast_params)
    predictions = result.predictions
    assert list(predictions.columns) == PREDICTION_COLUMNS
    assert not predictions.duplicated(["ticker", "date"]).any()
    assert predictions["probability"].between(0, 1).all()
    assert set(predictions["prediction"].unique()) <= {0.0, 1.0}
    for fold in result.folds.to_dict(orient="records"):
        rows = predictions[predictions["fold"] == fold["fold"]]
        assert rows["date"].min() == fold["test_start"] and rows["date"].max() == fold["test_end"]
        in_block = (ds.dates >= fold["test_start"]) & (ds.dates <= fold["test_end"])
        assert len(rows) == int(in_block.sum())  # every row of the block, no sampling with max_samples null
    for key in ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "ic", "rank_ic", "icir",
                "net_sharpe", "gross_sharpe", "sortino", "max_drawdown", "turnover"):
        assert np.isfinite(result.overall[key]), key
    assert result.overall["n_folds"] == 3
    assert {"gross", "net", "buy_and_hold"} <= set(result.equity.columns)
    tags = wf_tags(result.overall)
    assert float(tags["sepflow.wf.rank_ic"]) == result.overall["rank_ic"]


def test_row_budget_thins_fitting_rows_never_test_rows(xgb_dir, fast_params) -> None:
    trained, ds, returns = xgb_dir
    full = walk_forward(trained, ds, returns, WF, fast_params)
    thinned = walk_forward(trained, ds, returns, WF.model_copy(update={"max_samples_per_symbol": 60}), fast_params)
    assert (thinned.folds["n_fit"] < full.folds["n_fit"]).all()
    pd.testing.assert_frame_equal(thinned.predictions[["ticker", "date", "fold"]], full.predictions[["ticker", "date", "fold"]])


def test_changing_labels_after_a_fold_leaves_its_predictions_unchanged(xgb_dir, fast_params) -> None:
    """The future-perturbation test for walk-forward: scramble every label and return from the
    last fold's test start on; the earlier folds must predict exactly the same numbers."""
    trained, ds, returns = xgb_dir
    before = walk_forward(trained, ds, returns, WF, fast_params)
    last_start = before.folds["test_start"].max()
    future = np.asarray(ds.dates >= last_start)
    rng = np.random.default_rng(0)
    y = ds.y.copy()
    y[future] = rng.permutation(y[future].to_numpy())
    scrambled_returns = returns.copy()
    scrambled_returns[future] = rng.normal(0, 0.05, future.sum())
    changed = Dataset(X=ds.X, y=y, dates=ds.dates, tickers=ds.tickers, label_end=ds.label_end,
                      feature_names=ds.feature_names, meta=ds.meta)
    after = walk_forward(trained, changed, scrambled_returns, WF, fast_params)
    earlier = before.predictions["date"] < last_start
    pd.testing.assert_frame_equal(before.predictions[earlier], after.predictions[after.predictions["date"] < last_start])


def test_walk_forward_is_deterministic(xgb_dir, fast_params) -> None:
    trained, ds, returns = xgb_dir
    first = walk_forward(trained, ds, returns, WF, fast_params)
    second = walk_forward(trained, ds, returns, WF, fast_params)
    pd.testing.assert_frame_equal(first.predictions, second.predictions)
    assert first.overall == second.overall


def test_sliding_window_holds_train_days(xgb_dir, fast_params) -> None:
    trained, ds, returns = xgb_dir
    sliding = WF.model_copy(update={"window": "sliding", "train_days": 100})
    result = walk_forward(trained, ds, returns, sliding, fast_params)
    unique = np.unique(ds.dates)
    for fold in result.folds.to_dict(orient="records"):
        span = np.searchsorted(unique, np.datetime64(fold["train_end"])) - np.searchsorted(
            unique, np.datetime64(fold["train_start"])) + 1
        assert span <= 100


@pytest.mark.parametrize(("family", "target"), [("dummy", "label3_5d"), ("lightgbm", "return_5d")])
def test_every_task_reports_its_metrics(family, target, builder, features, fast_params, tmp_path) -> None:
    trained, ds, returns = _trained(family, target, builder, features, fast_params, tmp_path / "m")
    close = np.full(len(ds.y), 50.0)
    result = walk_forward(trained, ds, returns, WF, fast_params, prices=close)
    if target.startswith("return"):
        assert result.overall["rmse_price"] == pytest.approx(50.0 * result.overall["rmse"])
        assert 0 <= result.overall["direction_accuracy"] <= 1
        assert result.predictions["probability"].isna().all()
    else:
        assert set(result.predictions["prediction"].unique()) <= {-1.0, 0.0, 1.0}
        assert np.isfinite(result.overall["roc_auc"])


def test_params_refuse_overlapping_test_blocks() -> None:
    with pytest.raises(ValueError, match="step_days"):
        WalkForwardParams(test_days=40, step_days=20)


def test_too_short_a_history_is_a_config_error(xgb_dir, fast_params) -> None:
    trained, ds, returns = xgb_dir
    with pytest.raises(ConfigError):
        walk_forward(trained, ds, returns, WF.model_copy(update={"train_days": 5000}), fast_params)
