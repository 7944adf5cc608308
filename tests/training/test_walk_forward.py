"""Walk-forward: folds tile the evaluation window, train only on the past, and carry error bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sepflow.errors import ConfigError
from sepflow.features.dataset import Dataset
from sepflow.training.params import WalkForwardParams
from sepflow.training.walk_forward import (
    PREDICTION_COLUMNS,
    Evidence,
    WalkForwardResult,
    walk_forward,
    walk_forward_ensemble,
)

WF = WalkForwardParams(train_days=120, test_days=40, n_folds=3, max_samples_per_symbol=None)  # as conftest's
LAG = 1


@pytest.fixture(scope="module")
def xgb_dir(developed, tmp_path_factory):
    return developed("xgboost", "dir_5d", tmp_path_factory.mktemp("xgb") / "m")


@pytest.fixture(scope="module")
def xgb_result(xgb_dir, fast_params) -> WalkForwardResult:
    trained, ds, evidence = xgb_dir
    return walk_forward(trained, ds, evidence, WF, fast_params)


def test_folds_tile_the_evaluation_window_and_train_only_before_it(xgb_dir, xgb_result) -> None:
    trained, ds, evidence = xgb_dir
    folds, window = xgb_result.folds, evidence.window
    unique = np.unique(ds.dates)
    embargo = WF.embargo_for(5 + LAG)
    assert len(folds) == WF.n_folds
    assert folds["test_start"].iloc[0] == window.start and folds["test_end"].iloc[-1] == window.end
    for fold in folds.to_dict(orient="records"):
        start = np.searchsorted(unique, np.datetime64(fold["test_start"]))
        assert fold["train_end"] <= unique[start - embargo - 1]
        assert fold["train_label_end"] < fold["test_start"]  # purged: no training label reaches the test block
        # The validation tail is embargoed in trading dates, not in sampled dates.
        validation_start = np.searchsorted(unique, np.datetime64(fold["validation_start"]))
        assert fold["fit_end"] <= unique[validation_start - embargo - 1]


def test_predictions_cover_every_test_row_and_carry_error_bars(xgb_dir, xgb_result) -> None:
    trained, ds, evidence = xgb_dir
    predictions = xgb_result.predictions
    assert list(predictions.columns) == PREDICTION_COLUMNS
    assert not predictions.duplicated(["ticker", "date"]).any()
    assert predictions["probability"].between(0, 1).all()
    in_window = (ds.dates >= evidence.window.start) & (ds.dates <= evidence.window.end)
    assert len(predictions) == int(in_window.sum())
    overall = xgb_result.overall
    for key in ("accuracy", "roc_auc", "ic", "rank_ic", "rank_ic_se", "rank_ic_tstat", "net_sharpe",
                "net_sharpe_se", "psr", "dsr", "gross_sharpe", "sortino", "max_drawdown", "turnover"):
        assert np.isfinite(overall[key]), key
    assert overall["n_dates"] == evidence.window.n_dates  # every test date counts
    # The daily book: every test date is a signal date, held h days after a lag of one date.
    assert overall["n_periods"] == evidence.window.n_dates + 5 + LAG - 1 - LAG
    assert 0 <= overall["dsr"] <= overall["psr"] <= 1
    assert overall["rank_ic_tstat"] == pytest.approx(overall["rank_ic"] / overall["rank_ic_se"])
    assert {"gross", "net", "benchmark"} <= set(xgb_result.equity.columns)
    assert set(xgb_result.outputs["segment"]) == {"validation", "test"}


def test_row_budget_thins_fitting_rows_never_test_rows(xgb_dir, xgb_result, fast_params) -> None:
    trained, ds, evidence = xgb_dir
    thinned = walk_forward(trained, ds, evidence, WF.model_copy(update={"max_samples_per_symbol": 60}), fast_params)
    assert (thinned.folds["n_fit"] == xgb_result.folds["n_fit"]).all()  # the plan counts trading-daily rows
    assert len(thinned.outputs) < len(xgb_result.outputs)  # the decision rule sees the grid of the tail
    pd.testing.assert_frame_equal(thinned.predictions[["ticker", "date", "fold"]],
                                  xgb_result.predictions[["ticker", "date", "fold"]])


def test_changing_labels_and_returns_after_a_fold_leaves_its_predictions_unchanged(xgb_dir, xgb_result,
                                                                                    fast_params) -> None:
    """The future-perturbation test for walk-forward: scramble every label and return from the
    last fold's test start on; the earlier folds must predict exactly the same numbers."""
    trained, ds, evidence = xgb_dir
    last_start = xgb_result.folds["test_start"].max()
    future = np.asarray(ds.dates >= last_start)
    rng = np.random.default_rng(0)
    y = ds.y.copy()
    y[future] = rng.permutation(y[future].to_numpy())
    returns = evidence.forward_returns.copy()
    returns[future] = rng.normal(0, 0.05, future.sum())
    daily = evidence.daily_returns.copy()
    later = daily["date"] >= last_start
    daily.loc[later, "return"] = rng.normal(0, 0.02, later.sum()).astype(daily["return"].dtype)
    changed = Dataset(X=ds.X, y=y, dates=ds.dates, tickers=ds.tickers, label_end=ds.label_end,
                      feature_names=ds.feature_names, meta=ds.meta)
    after = walk_forward(trained, changed, Evidence(evidence.window, returns, daily, LAG, 4), WF, fast_params)
    earlier = xgb_result.predictions["date"] < last_start
    pd.testing.assert_frame_equal(xgb_result.predictions[earlier],
                                  after.predictions[after.predictions["date"] < last_start])


def test_walk_forward_is_deterministic(xgb_dir, xgb_result, fast_params) -> None:
    trained, ds, evidence = xgb_dir
    again = walk_forward(trained, ds, evidence, WF, fast_params)
    pd.testing.assert_frame_equal(xgb_result.predictions, again.predictions)
    assert xgb_result.overall == again.overall


def test_sliding_window_holds_train_days(xgb_dir, fast_params) -> None:
    trained, ds, evidence = xgb_dir
    result = walk_forward(trained, ds, evidence, WF.model_copy(update={"window": "sliding", "train_days": 100}),
                          fast_params)
    unique = np.unique(ds.dates)
    for fold in result.folds.to_dict(orient="records"):
        span = np.searchsorted(unique, np.datetime64(fold["train_end"])) - np.searchsorted(
            unique, np.datetime64(fold["train_start"])) + 1
        assert span <= 100


def test_a_sequence_model_predicts_every_test_date_the_same_in_any_number_of_processes(
    developed, fast_params, tmp_path,
) -> None:
    trained, ds, evidence = developed("lstm", "return_5d", tmp_path / "m")
    wf = WF.model_copy(update={"max_samples_per_symbol": 40})
    result = walk_forward(trained, ds, evidence, wf.model_copy(update={"n_jobs": 1}), fast_params)
    assert result.predictions["date"].nunique() == evidence.window.n_dates  # no 1-in-k date grid
    assert result.overall["n_dates"] == evidence.window.n_dates
    in_two = walk_forward(trained, ds, evidence, wf.model_copy(update={"n_jobs": 2}), fast_params)
    pd.testing.assert_frame_equal(in_two.outputs, result.outputs, check_exact=True)
    pd.testing.assert_frame_equal(in_two.predictions, result.predictions, check_exact=True)


@pytest.mark.parametrize(("family", "target"), [("dummy", "label3_5d"), ("lightgbm", "return_5d")])
def test_every_task_reports_its_metrics(family, target, developed, fast_params, daily, tmp_path) -> None:
    trained, ds, evidence = developed(family, target, tmp_path / "m")
    close = np.full(len(ds.y), 50.0)
    evidence = Evidence(evidence.window, evidence.forward_returns, daily, LAG, 4, prices=close)
    result = walk_forward(trained, ds, evidence, WF, fast_params)
    if target.startswith("return"):
        assert result.overall["rmse_price"] == pytest.approx(50.0 * result.overall["rmse"])
        assert 0 <= result.overall["direction_accuracy"] <= 1
        assert result.predictions["probability"].isna().all()
    else:
        assert set(result.predictions["prediction"].unique()) <= {-1.0, 0.0, 1.0}
        assert np.isfinite(result.overall["roc_auc"])


def test_the_ensemble_walks_forward_on_its_members_fold_outputs(xgb_dir, xgb_result, developed,
                                                               fast_params, daily, tmp_path) -> None:
    member, ds, evidence = xgb_dir
    dummy, _, _ = developed("dummy", "dir_5d", tmp_path / "dummy")
    params = fast_params.model_copy(update={"families": ["dummy", "xgboost", "ensemble"]})
    ensemble, _, _ = developed("ensemble", "dir_5d", tmp_path / "ensemble", params,
                               member_dirs={"dummy": tmp_path / "dummy", "xgboost": member.folder})
    dummy_walk = walk_forward(dummy, ds, evidence, WF, fast_params)
    outputs = {"dummy": dummy_walk.outputs, "xgboost": xgb_result.outputs}
    result, skipped = walk_forward_ensemble(ensemble, ds, outputs, evidence, WF, fast_params)
    assert skipped == {}
    pd.testing.assert_frame_equal(result.predictions[["ticker", "date", "fold"]],
                                  xgb_result.predictions[["ticker", "date", "fold"]])
    assert np.isfinite(result.overall["rank_ic"]) and np.isfinite(result.overall["net_sharpe_se"])
    # A member without walk-forward outputs is skipped and named; with none left it is an error.
    _, skipped = walk_forward_ensemble(ensemble, ds, {"xgboost": xgb_result.outputs}, evidence, WF, fast_params)
    assert skipped == {"dummy": "no walk-forward outputs"}
    with pytest.raises(ConfigError, match="no member"):
        walk_forward_ensemble(ensemble, ds, {}, evidence, WF, fast_params)


def test_params_refuse_overlapping_test_blocks() -> None:
    with pytest.raises(ValueError, match="step_days"):
        WalkForwardParams(test_days=40, step_days=20)


def test_too_short_a_history_before_the_window_is_a_config_error(xgb_dir, fast_params) -> None:
    trained, ds, evidence = xgb_dir
    with pytest.raises(ConfigError, match="first test date"):
        walk_forward(trained, ds, evidence, WF.model_copy(update={"train_days": 5000}), fast_params)
